/* pdoc: see pdoc.h. libyaml's document API loads one document at a time;
 * its nodes are copied into our tree with their start marks (0-based in
 * libyaml, 1-based here). Aliases share nodes in libyaml's graph: the copy
 * expands them, bounded by PDOC_MAX_NODES and PDOC_MAX_DEPTH per document
 * (a document that refers to itself is refused by them) and by
 * PDOC_MAX_EXPANDED bytes per file: every node copied is charged what it
 * takes before it is allocated, and a document may take what its tree
 * takes without aliases (tree_size, proportional to its text) plus what is
 * left of the file's expansion budget. So a few KiB that alias a large
 * scalar 100,000 times, or 80,000 small alias bombs in one 16 MiB file,
 * are refused at the copy that crosses the budget, before its memory is
 * taken. Duplicate keys are found by sorting a mapping's keys when it has
 * more than 8 (a mapping of 100,000 keys was 5e9 comparisons pairwise;
 * for the small ones pairwise is faster); the error names the first
 * key, in document order, that repeats an earlier one, after the pairs
 * before it and its own value are copied, as the pairwise check did.
 * A tree's nodes and texts are carved from blocks its root holds, the
 * first sized from libyaml's node list, so one document is one allocation
 * and one free (20,000 documents were over a million mallocs and frees). */
#include "pdoc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define PDOC_MAX_FILE  (16 << 20)
#define PDOC_MAX_DEPTH 64
/* Bytes of tree a file may take beyond its documents' alias-free trees:
 * shared lists (ports, peers) aliased a few times take kilobytes; a fixed
 * sum, not a multiple of the file's size, so a small file may still use
 * aliases freely while no file costs more than its own tree (at most ~32
 * bytes a byte of text) plus this. */
#define PDOC_MAX_EXPANDED (64 << 20)

static void pdoc_err(struct policy_error *err, const char *file, int line, int col, const char *msg)
{
	memset(err, 0, sizeof(*err));
	policy_error_set_file(err, file);
	err->line = line;
	err->column = col;
	snprintf(err->msg, sizeof(err->msg), "%s", msg);
}

/* The blocks a tree is carved from: the first of the size the tree is
 * expected to need (`hint`), each next one twice the last (up to 1 MiB) or
 * the size asked when more. Everything in a tree is pointers, ints and
 * chars: 8-byte alignment is enough. */
struct pblock {
	struct pblock *next;
	size_t used, size;
	void *data[];
};

struct parena {
	struct pblock *head;
	size_t hint;
};

#define PALIGN(n) (((n) + sizeof(void *) - 1) & ~(sizeof(void *) - 1))

static void *palloc(struct parena *a, size_t n)
{
	struct pblock *b = a->head;

	n = PALIGN(n);
	if (!b || b->size - b->used < n) {
		size_t size = !b ? (a->hint ? a->hint : 1024) : 2 * b->size;
		if (size > (1 << 20) && b)
			size = 1 << 20;
		if (size < n)
			size = n;
		if (!(b = malloc(sizeof(*b) + size)))
			return NULL;
		b->next = a->head;
		b->used = 0;
		b->size = size;
		a->head = b;
	}
	void *p = (char *)b->data + b->used;
	b->used += n;
	return memset(p, 0, n);
}

static void parena_free(struct parena *a)
{
	for (struct pblock *b = a->head, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	a->head = NULL;
}

/* Hands the blocks to the tree's root (NULL: they are freed). */
static struct pdoc *parena_give(struct parena *a, struct pdoc *root)
{
	if (root)
		root->blocks = a->head;
	else
		parena_free(a);
	a->head = NULL;
	return root;
}

void pdoc_free(struct pdoc *d)
{
	if (d) {
		struct parena a = {d->blocks, 0};
		parena_free(&a); /* d is in one of them */
	}
}

static struct pdoc *pdoc_new(struct parena *a, enum pdoc_kind kind, int line, int col, size_t n)
{
	struct pdoc *d = palloc(a, sizeof(*d));
	size_t slots = kind == PDOC_MAP ? 2 * n : n;

	if (!d)
		return NULL;
	d->kind = kind;
	d->line = line;
	d->column = col;
	d->n = n;
	if (slots && !(d->items = palloc(a, slots * sizeof(*d->items))))
		return NULL;
	return d;
}

/* A NUL-terminated copy of n bytes. */
static char *pstrndup(struct parena *a, const char *s, size_t n)
{
	char *t = palloc(a, n + 1);
	return t ? memcpy(t, s, n) : NULL;
}

void policy_error_set_file(struct policy_error *err, const char *file)
{
	size_t n = strlen(file);
	if (n >= sizeof(err->file)) /* keep the end: the file name matters most */
		file += n - (sizeof(err->file) - 1);
	memcpy(err->file, file, strlen(file) + 1);
}

const struct pdoc *pdoc_get(const struct pdoc *map, const char *key)
{
	if (!map || map->kind != PDOC_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (!strcmp(map->items[2 * i]->text, key))
			return map->items[2 * i + 1];
	return NULL;
}

/* ---- from libyaml */

/* One document's copy. */
struct pdoc_ctx {
	yaml_document_t *doc;
	const char *file;
	struct policy_error *err;
	size_t nodes;
	size_t used, budget; /* bytes charged to the tree, and its bound */
	struct parena a;     /* the tree's memory, freed whole on an error */
};

/* What a copy of node y takes in a tree (without its items' nodes). */
static size_t node_size(const yaml_node_t *y)
{
	size_t items =
		y->type == YAML_SEQUENCE_NODE
			? (size_t)(y->data.sequence.items.top - y->data.sequence.items.start)
		: y->type == YAML_MAPPING_NODE
			? 2 * (size_t)(y->data.mapping.pairs.top - y->data.mapping.pairs.start)
			: 0;
	return PALIGN(sizeof(struct pdoc)) + PALIGN(items * sizeof(struct pdoc *)) +
	       (y->type == YAML_SCALAR_NODE ? PALIGN(y->data.scalar.length + 1) : 0);
}

struct pkey {
	const unsigned char *s;
	size_t len, i;
};

static int pkey_cmp(const void *a, const void *b)
{
	const struct pkey *x = a, *y = b;
	int r = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);

	if (r)
		return r;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static int pkey_eq(const struct pkey *x, const struct pkey *y)
{
	return x->len == y->len && !memcmp(x->s, y->s, x->len);
}

/* *dup: the index of the first key of mapping y (n pairs) equal to an
 * earlier one, or n. Keys that are not scalars are left out: the copy
 * refuses them when it reaches them. The same keys as strcmp of the copied
 * texts: a key holding a NUL byte is refused before it is compared. */
static int first_dup_key(yaml_document_t *doc, const yaml_node_t *y, size_t n, size_t *dup)
{
	struct pkey small[16], *keys = n <= 16 ? small : malloc(n * sizeof(*keys));
	size_t m = 0;

	*dup = n;
	if (!keys)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *k = yaml_document_get_node(doc, y->data.mapping.pairs.start[i].key);
		if (k && k->type == YAML_SCALAR_NODE)
			keys[m++] = (struct pkey){k->data.scalar.value, k->data.scalar.length, i};
	}
	if (m <= 8) { /* the common case: pairwise is faster than qsort */
		for (size_t i = 1; i < m && *dup == n; i++)
			for (size_t j = 0; j < i; j++)
				if (pkey_eq(&keys[i], &keys[j])) {
					*dup = keys[i].i;
					break;
				}
	} else {
		qsort(keys, m, sizeof(*keys), pkey_cmp);
		/* equal keys are adjacent, in document order: the second of
		 * each run repeats the first */
		for (size_t i = 1; i < m; i++)
			if (keys[i].i < *dup && pkey_eq(&keys[i], &keys[i - 1]))
				*dup = keys[i].i;
	}
	if (keys != small)
		free(keys);
	return 0;
}

static struct pdoc *pdoc_copy(struct pdoc_ctx *c, yaml_node_t *y, int depth)
{
	int line = (int)y->start_mark.line + 1, col = (int)y->start_mark.column + 1;
	struct pdoc *d = NULL;

	if (++c->nodes > PDOC_MAX_NODES || depth > PDOC_MAX_DEPTH) {
		pdoc_err(c->err, c->file, line, col,
			 "document too large or too deeply nested (aliases expanded)");
		return NULL;
	}
	c->used += node_size(y);
	if (c->used > c->budget) {
		char msg[100];
		snprintf(msg, sizeof(msg),
			 "document too large: aliases expand to more than %d MiB in this file",
			 PDOC_MAX_EXPANDED >> 20);
		pdoc_err(c->err, c->file, line, col, msg);
		return NULL;
	}
	switch (y->type) {
	case YAML_SCALAR_NODE:
		if (memchr(y->data.scalar.value, '\0', y->data.scalar.length)) {
			pdoc_err(c->err, c->file, line, col, "a NUL byte inside a value");
			return NULL;
		}
		d = pdoc_new(&c->a, PDOC_SCALAR, line, col, 0);
		if (d && !(d->text = pstrndup(&c->a, (const char *)y->data.scalar.value,
					      y->data.scalar.length)))
			d = NULL;
		if (d)
			d->quoted = y->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
		break;
	case YAML_SEQUENCE_NODE: {
		size_t n = (size_t)(y->data.sequence.items.top - y->data.sequence.items.start);
		d = pdoc_new(&c->a, PDOC_SEQ, line, col, n);
		for (size_t i = 0; d && i < n; i++) {
			yaml_node_t *it =
				yaml_document_get_node(c->doc, y->data.sequence.items.start[i]);
			if (!it || !(d->items[i] = pdoc_copy(c, it, depth + 1)))
				return NULL;
		}
		break;
	}
	case YAML_MAPPING_NODE: {
		size_t n = (size_t)(y->data.mapping.pairs.top - y->data.mapping.pairs.start), dup;
		if (first_dup_key(c->doc, y, n, &dup) < 0)
			break; /* out of memory */
		d = pdoc_new(&c->a, PDOC_MAP, line, col, n);
		for (size_t i = 0; d && i < n; i++) {
			yaml_node_pair_t *p = &y->data.mapping.pairs.start[i];
			yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
			yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
			if (!k || !v || k->type != YAML_SCALAR_NODE) {
				pdoc_err(c->err, c->file, line, col,
					 "a mapping key must be a plain string");
				return NULL;
			}
			if (!(d->items[2 * i] = pdoc_copy(c, k, depth + 1)) ||
			    !(d->items[2 * i + 1] = pdoc_copy(c, v, depth + 1)))
				return NULL;
			if (i == dup) {
				char msg[200];
				snprintf(msg, sizeof(msg), "duplicate key \"%.100s\"",
					 d->items[2 * i]->text);
				pdoc_err(c->err, c->file, (int)k->start_mark.line + 1,
					 (int)k->start_mark.column + 1, msg);
				return NULL;
			}
		}
		break;
	}
	default:
		pdoc_err(c->err, c->file, line, col, "unsupported YAML node");
		return NULL;
	}
	if (!d && !c->err->msg[0])
		pdoc_err(c->err, c->file, line, col, "out of memory");
	return d;
}

/* What a document's tree takes when no alias is expanded. */
static size_t tree_size(const yaml_document_t *doc)
{
	size_t size = 0;

	for (const yaml_node_t *y = doc->nodes.start; y < doc->nodes.top; y++)
		size += node_size(y);
	return size;
}

int pdoc_parse_buf_each(const char *name, const char *buf, size_t len, pdoc_each_fn each,
			void *ctx, struct policy_error *err)
{
	yaml_parser_t parser;
	struct policy_error each_err;
	size_t expanded = 0; /* bytes of the file's trees beyond their alias-free size */
	int rc = -EINVAL, each_rc = 0;

	memset(err, 0, sizeof(*err));
	if (!yaml_parser_initialize(&parser)) {
		pdoc_err(err, name, 0, 0, "out of memory");
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	for (;;) {
		yaml_document_t doc;
		if (!yaml_parser_load(&parser, &doc)) {
			char msg[256];
			snprintf(msg, sizeof(msg), "%s%s%s",
				 parser.problem ? parser.problem : "syntax error",
				 parser.context ? " " : "", parser.context ? parser.context : "");
			pdoc_err(err, name, (int)parser.problem_mark.line + 1,
				 (int)parser.problem_mark.column + 1, msg);
			goto out;
		}
		yaml_node_t *root = yaml_document_get_root_node(&doc);
		if (!root) { /* the end of the stream */
			yaml_document_delete(&doc);
			break;
		}
		struct pdoc_ctx c = {.doc = &doc, .file = name, .err = err};
		c.a.hint = tree_size(&doc);
		c.budget = c.a.hint + (PDOC_MAX_EXPANDED - expanded);
		struct pdoc *d = parena_give(&c.a, pdoc_copy(&c, root, 0));
		yaml_document_delete(&doc);
		if (!d)
			goto out;
		expanded += c.used > c.a.hint ? c.used - c.a.hint : 0;
		/* An empty document ("---" alone, or only a comment) is a plain
		 * empty scalar: skipped. After an error of `each`, the rest is
		 * still read: an error in the file itself is the one reported. */
		if ((d->kind == PDOC_SCALAR && !d->quoted && !d->text[0]) || each_rc < 0)
			pdoc_free(d);
		else
			each_rc = each(ctx, d, &each_err);
	}
	rc = each_rc;
	if (rc < 0)
		*err = each_err;
out:
	yaml_parser_delete(&parser);
	return rc;
}

/* pdoc_parse_buf's and pdoc_parse_file's `each`: the documents in an array. */
struct pdoc_list {
	const char *name;
	struct pdoc **docs;
	size_t n, cap;
};

static int pdoc_list_add(void *ctx, struct pdoc *d, struct policy_error *err)
{
	struct pdoc_list *l = ctx;

	if (l->n == l->cap) { /* doubling: no O(n^2) copying for many documents */
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct pdoc **grown = realloc(l->docs, sizeof(*grown) * cap);
		if (!grown) {
			pdoc_free(d);
			pdoc_err(err, l->name, 0, 0, "out of memory");
			return -EINVAL;
		}
		l->docs = grown;
		l->cap = cap;
	}
	l->docs[l->n++] = d;
	return 0;
}

static int pdoc_list_done(struct pdoc_list *l, int rc, struct pdoc ***docs, size_t *n_docs)
{
	if (rc < 0) {
		for (size_t i = 0; i < l->n; i++)
			pdoc_free(l->docs[i]);
		free(l->docs);
		return rc;
	}
	*docs = l->docs;
	*n_docs = l->n;
	return 0;
}

int pdoc_parse_buf(const char *name, const char *buf, size_t len, struct pdoc ***docs,
		   size_t *n_docs, struct policy_error *err)
{
	struct pdoc_list l = {name, NULL, 0, 0};
	return pdoc_list_done(&l, pdoc_parse_buf_each(name, buf, len, pdoc_list_add, &l, err),
			      docs, n_docs);
}

int pdoc_parse_file_each(const char *path, pdoc_each_fn each, void *ctx, struct policy_error *err)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	int rc = -EINVAL;

	memset(err, 0, sizeof(*err));
	if (!f) {
		pdoc_err(err, path, 0, 0, strerror(errno));
		return -EINVAL;
	}
	buf = malloc(PDOC_MAX_FILE + 1);
	if (buf)
		len = fread(buf, 1, PDOC_MAX_FILE + 1, f);
	if (!buf || ferror(f))
		pdoc_err(err, path, 0, 0, buf ? "cannot read the file" : "out of memory");
	else if (len > PDOC_MAX_FILE)
		pdoc_err(err, path, 0, 0, "file larger than 16 MiB");
	else
		rc = pdoc_parse_buf_each(path, buf, len, each, ctx, err);
	fclose(f);
	free(buf);
	return rc;
}

int pdoc_parse_file(const char *path, struct pdoc ***docs, size_t *n_docs, struct policy_error *err)
{
	struct pdoc_list l = {path, NULL, 0, 0};
	return pdoc_list_done(&l, pdoc_parse_file_each(path, pdoc_list_add, &l, err), docs,
			      n_docs);
}

/* ---- from jansson */

static struct pdoc *from_json(struct parena *a, const json_t *v)
{
	struct pdoc *d = NULL;
	char num[64];

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *x;
		size_t i = 0;
		d = pdoc_new(a, PDOC_MAP, 0, 0, json_object_size(v));
		json_object_foreach((json_t *)v, k, x)
		{
			if (!d)
				break;
			struct pdoc *key = pdoc_new(a, PDOC_SCALAR, 0, 0, 0);
			d->items[2 * i] = key;
			if (!key || !(key->text = pstrndup(a, k, strlen(k))) ||
			    !(d->items[2 * i + 1] = from_json(a, x)))
				return NULL;
			key->quoted = 1;
			i++;
		}
		return d;
	}
	case JSON_ARRAY:
		d = pdoc_new(a, PDOC_SEQ, 0, 0, json_array_size(v));
		for (size_t i = 0; d && i < d->n; i++)
			if (!(d->items[i] = from_json(a, json_array_get(v, i))))
				return NULL;
		return d;
	case JSON_STRING:
	case JSON_INTEGER:
	case JSON_TRUE:
	case JSON_FALSE:
	case JSON_NULL: {
		d = pdoc_new(a, PDOC_SCALAR, 0, 0, 0);
		if (!d)
			return NULL;
		d->quoted = json_is_string(v);
		if (json_is_integer(v))
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
		const char *t = json_is_string(v)    ? json_string_value(v)
				: json_is_integer(v) ? num
				: json_is_true(v)    ? "true"
				: json_is_false(v)   ? "false"
						     : "null";
		return (d->text = pstrndup(a, t, strlen(t))) ? d : NULL;
	}
	default:
		return NULL; /* reals have no place in a policy */
	}
}

struct pdoc *pdoc_from_json(const json_t *v)
{
	struct parena a = {NULL, 0};
	return parena_give(&a, from_json(&a, v));
}
