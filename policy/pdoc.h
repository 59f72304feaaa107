/* pdoc: policy documents as a small tree that remembers where every node
 * came from, so every error can name the file, line, column and field.
 *
 * YAML and JSON files are both read with libyaml (JSON is YAML's flow
 * syntax; one parser gives line and column for both); documents that come
 * from the Kubernetes API arrive as jansson values and get no positions.
 * Scalars stay text: the validator decides what a field's text means, so
 * YAML 1.1's guesses ("OFF" is false, "010" is octal) never happen behind
 * the author's back; `quoted` says whether the author quoted it.
 *
 * A tree is owned by its root; pdoc_free() frees it all. Its nodes, item
 * arrays and texts are carved from a few blocks the root holds (a document
 * of 30 nodes is one allocation, not 90). */
#ifndef CINCH_POLICY_PDOC_H
#define CINCH_POLICY_PDOC_H

#include <stddef.h>

#include <jansson.h>

#include "policy.h"

#define PDOC_MAX_NODES 200000 /* per document: a bound on alias expansion (pdoc.c) */

enum pdoc_kind {
	PDOC_SCALAR = 0,
	PDOC_SEQ,
	PDOC_MAP,
};

struct pdoc {
	enum pdoc_kind kind;
	int line, column;    /* 1-based; 0 when the source has no positions */
	int quoted;	     /* a scalar the author quoted */
	char *text;	     /* SCALAR: NUL-terminated */
	size_t n;	     /* SEQ: items; MAP: pairs */
	struct pdoc **items; /* SEQ: n nodes; MAP: 2n, key then value */
	void *blocks;	     /* the root: the memory of the whole tree */
};

/* Every document of one file (YAML, several separated by "---", or JSON),
 * in order; empty documents are skipped. 0 and *docs, *n_docs (free each
 * with pdoc_free, then the array), or -EINVAL with *err set. */
int pdoc_parse_file(const char *path, struct pdoc ***docs, size_t *n_docs, struct policy_error *err)
	__attribute__((warn_unused_result));
/* The same from memory; `name` is what errors call it. */
int pdoc_parse_buf(const char *name, const char *buf, size_t len, struct pdoc ***docs,
		   size_t *n_docs, struct policy_error *err) __attribute__((warn_unused_result));
/* The same one document at a time, for a file of many: `each` gets every
 * document in order (it owns it: pdoc_free) and returns 0 or a negative
 * errno with *err set. After an error of `each` the rest of the file is
 * still read, not given to `each`: an error in the file (syntax,
 * duplicate key, ...) is the one returned, as pdoc_parse_file returns it
 * before any document is looked at; else each's error. */
typedef int (*pdoc_each_fn)(void *ctx, struct pdoc *doc, struct policy_error *err);
int pdoc_parse_file_each(const char *path, pdoc_each_fn each, void *ctx, struct policy_error *err)
	__attribute__((warn_unused_result));
int pdoc_parse_buf_each(const char *name, const char *buf, size_t len, pdoc_each_fn each,
			void *ctx, struct policy_error *err) __attribute__((warn_unused_result));
/* A jansson value (borrowed). NULL on ENOMEM or a value that is not
 * object/array/string/number/bool/null. */
struct pdoc *pdoc_from_json(const json_t *v);
/* Frees a tree: `d` must be its root. */
void pdoc_free(struct pdoc *d);

/* Names `file` in an error (its end, when it is too long). */
void policy_error_set_file(struct policy_error *err, const char *file);

/* The value of `key` in a MAP, or NULL. */
const struct pdoc *pdoc_get(const struct pdoc *map, const char *key);

#endif
