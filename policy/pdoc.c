/* pdoc: see pdoc.h. libyaml's document API loads one document at a time;
 * its nodes are copied into our tree with their start marks (0-based in
 * libyaml, 1-based here). Aliases share nodes in libyaml's graph: the copy
 * expands them, bounded by PDOC_MAX_NODES, and a document that refers to
 * itself is refused by the same bound. */
#include "pdoc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define PDOC_MAX_FILE  (16 << 20)
#define PDOC_MAX_DEPTH 64

static void pdoc_err(struct policy_error *err, const char *file, int line, int col, const char *msg)
{
	memset(err, 0, sizeof(*err));
	policy_error_set_file(err, file);
	err->line = line;
	err->column = col;
	snprintf(err->msg, sizeof(err->msg), "%s", msg);
}

void pdoc_free(struct pdoc *d)
{
	if (!d)
		return;
	size_t n = d->kind == PDOC_MAP ? 2 * d->n : d->kind == PDOC_SEQ ? d->n : 0;
	for (size_t i = 0; i < n && d->items; i++)
		pdoc_free(d->items[i]);
	free(d->items);
	free(d->text);
	free(d);
}

static struct pdoc *pdoc_new(enum pdoc_kind kind, int line, int col, size_t n)
{
	struct pdoc *d = calloc(1, sizeof(*d));
	size_t slots = kind == PDOC_MAP ? 2 * n : n;

	if (!d)
		return NULL;
	d->kind = kind;
	d->line = line;
	d->column = col;
	d->n = n;
	if (slots && !(d->items = calloc(slots, sizeof(*d->items)))) {
		free(d);
		return NULL;
	}
	return d;
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

struct pdoc_ctx {
	yaml_document_t *doc;
	const char *file;
	struct policy_error *err;
	size_t nodes;
};

static struct pdoc *pdoc_copy(struct pdoc_ctx *c, yaml_node_t *y, int depth)
{
	int line = (int)y->start_mark.line + 1, col = (int)y->start_mark.column + 1;
	struct pdoc *d = NULL;

	if (++c->nodes > PDOC_MAX_NODES || depth > PDOC_MAX_DEPTH) {
		pdoc_err(c->err, c->file, line, col,
			 "document too large or too deeply nested (aliases expanded)");
		return NULL;
	}
	switch (y->type) {
	case YAML_SCALAR_NODE:
		d = pdoc_new(PDOC_SCALAR, line, col, 0);
		if (d && !(d->text = strndup((const char *)y->data.scalar.value,
					     y->data.scalar.length))) {
			free(d);
			d = NULL;
		}
		if (d && memchr(y->data.scalar.value, '\0', y->data.scalar.length)) {
			pdoc_err(c->err, c->file, line, col, "a NUL byte inside a value");
			pdoc_free(d);
			return NULL;
		}
		if (d)
			d->quoted = y->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
		break;
	case YAML_SEQUENCE_NODE: {
		size_t n = (size_t)(y->data.sequence.items.top - y->data.sequence.items.start);
		d = pdoc_new(PDOC_SEQ, line, col, n);
		for (size_t i = 0; d && i < n; i++) {
			yaml_node_t *it =
				yaml_document_get_node(c->doc, y->data.sequence.items.start[i]);
			if (!it || !(d->items[i] = pdoc_copy(c, it, depth + 1))) {
				pdoc_free(d);
				return NULL;
			}
		}
		break;
	}
	case YAML_MAPPING_NODE: {
		size_t n = (size_t)(y->data.mapping.pairs.top - y->data.mapping.pairs.start);
		d = pdoc_new(PDOC_MAP, line, col, n);
		for (size_t i = 0; d && i < n; i++) {
			yaml_node_pair_t *p = &y->data.mapping.pairs.start[i];
			yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
			yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
			if (!k || !v || k->type != YAML_SCALAR_NODE) {
				pdoc_err(c->err, c->file, line, col,
					 "a mapping key must be a plain string");
				pdoc_free(d);
				return NULL;
			}
			if (!(d->items[2 * i] = pdoc_copy(c, k, depth + 1)) ||
			    !(d->items[2 * i + 1] = pdoc_copy(c, v, depth + 1))) {
				pdoc_free(d);
				return NULL;
			}
			for (size_t j = 0; j < i; j++)
				if (!strcmp(d->items[2 * j]->text, d->items[2 * i]->text)) {
					char msg[200];
					snprintf(msg, sizeof(msg), "duplicate key \"%.100s\"",
						 d->items[2 * i]->text);
					pdoc_err(c->err, c->file, (int)k->start_mark.line + 1,
						 (int)k->start_mark.column + 1, msg);
					pdoc_free(d);
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

int pdoc_parse_buf(const char *name, const char *buf, size_t len, struct pdoc ***docs,
		   size_t *n_docs, struct policy_error *err)
{
	yaml_parser_t parser;
	struct pdoc **out = NULL;
	size_t n = 0, cap = 0;
	int rc = -EINVAL;

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
		struct pdoc *d = pdoc_copy(&c, root, 0);
		yaml_document_delete(&doc);
		if (!d)
			goto out;
		/* An empty document ("---" alone, or only a comment) is a plain
		 * empty scalar: skipped. */
		if (d->kind == PDOC_SCALAR && !d->quoted && !d->text[0]) {
			pdoc_free(d);
			continue;
		}
		if (n == cap) { /* doubling: no O(n^2) copying for many documents */
			struct pdoc **grown = realloc(out, sizeof(*out) * (cap = cap ? 2 * cap : 16));
			if (!grown) {
				pdoc_free(d);
				pdoc_err(err, name, 0, 0, "out of memory");
				goto out;
			}
			out = grown;
		}
		out[n++] = d;
	}
	*docs = out;
	*n_docs = n;
	out = NULL;
	n = 0;
	rc = 0;
out:
	for (size_t i = 0; i < n; i++)
		pdoc_free(out[i]);
	free(out);
	yaml_parser_delete(&parser);
	return rc;
}

int pdoc_parse_file(const char *path, struct pdoc ***docs, size_t *n_docs, struct policy_error *err)
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
		rc = pdoc_parse_buf(path, buf, len, docs, n_docs, err);
	fclose(f);
	free(buf);
	return rc;
}

/* ---- from jansson */

struct pdoc *pdoc_from_json(const json_t *v)
{
	struct pdoc *d = NULL;
	char num[64];

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *x;
		size_t i = 0;
		d = pdoc_new(PDOC_MAP, 0, 0, json_object_size(v));
		json_object_foreach((json_t *)v, k, x)
		{
			if (!d)
				break;
			struct pdoc *key = pdoc_new(PDOC_SCALAR, 0, 0, 0);
			d->items[2 * i] = key;
			if (!key || !(key->text = strdup(k)) ||
			    !(d->items[2 * i + 1] = pdoc_from_json(x))) {
				pdoc_free(d);
				return NULL;
			}
			key->quoted = 1;
			i++;
		}
		return d;
	}
	case JSON_ARRAY:
		d = pdoc_new(PDOC_SEQ, 0, 0, json_array_size(v));
		for (size_t i = 0; d && i < d->n; i++)
			if (!(d->items[i] = pdoc_from_json(json_array_get(v, i)))) {
				pdoc_free(d);
				return NULL;
			}
		return d;
	case JSON_STRING:
	case JSON_INTEGER:
	case JSON_TRUE:
	case JSON_FALSE:
	case JSON_NULL:
		d = pdoc_new(PDOC_SCALAR, 0, 0, 0);
		if (!d)
			return NULL;
		d->quoted = json_is_string(v);
		if (json_is_integer(v))
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
		d->text = strdup(json_is_string(v)    ? json_string_value(v)
				 : json_is_integer(v) ? num
				 : json_is_true(v)    ? "true"
				 : json_is_false(v)   ? "false"
						      : "null");
		if (!d->text) {
			free(d);
			return NULL;
		}
		return d;
	default:
		return NULL; /* reals have no place in a policy */
	}
}
