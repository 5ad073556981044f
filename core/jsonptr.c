/*
 * jsonptr.c - JSON Pointer (RFC 6901) with a '*' array wildcard; see
 * jsonptr.h.
 *
 * The pointer is split into reference tokens (unescaped) once, then the
 * document is walked depth-first.  A JSON document is a tree, so every
 * value is visited at most once per pointer; the recursion depth is the
 * number of tokens, bounded by the document's own depth.
 */
#include "jsonptr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A pointer split into unescaped tokens (each NUL-terminated). */
typedef struct ptr_tokens {
	char **tok;
	size_t n;
	char *buf;		/* storage for every token */
} ptr_tokens;

static void
tokens_free(ptr_tokens *t)
{
	free(t->tok);
	free(t->buf);
	t->tok = NULL;
	t->buf = NULL;
	t->n = 0;
}

pg_err
pg_jsonptr_valid(const char *ptr)
{
	const char *p;

	if (!ptr)
		return PG_EINVAL;
	if (*ptr == '\0')
		return PG_OK;
	if (*ptr != '/')
		return PG_EINVAL;
	for (p = ptr; *p; p++) {
		if (*p == '~' && p[1] != '0' && p[1] != '1')
			return PG_EINVAL;
	}
	return PG_OK;
}

/* Split PTR (already valid) into tokens, unescaping "~1" then "~0". */
static pg_err
tokens_split(const char *ptr, ptr_tokens *t)
{
	size_t len = strlen(ptr), n = 0, i;
	const char *p;
	char *w;

	memset(t, 0, sizeof(*t));
	for (p = ptr; *p; p++)
		if (*p == '/')
			n++;
	if (n == 0)
		return PG_OK;
	t->buf = malloc(len + 1);
	t->tok = calloc(n, sizeof(*t->tok));
	if (!t->buf || !t->tok) {
		tokens_free(t);
		return PG_ENOMEM;
	}
	w = t->buf;
	i = 0;
	for (p = ptr; *p; p++) {
		if (*p == '/') {
			if (i > 0)
				*w++ = '\0';
			t->tok[i++] = w;
		} else if (*p == '~') {
			/* pg_jsonptr_valid guarantees p[1] is '0' or '1'. */
			*w++ = p[1] == '1' ? '/' : '~';
			p++;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	t->n = n;
	return PG_OK;
}

/*
 * An array index token: "0" or a decimal without a leading zero, within
 * size_t.  Anything else (including "-", the position after the last
 * element) names no element.
 */
static int
array_index(const char *tok, size_t *idx)
{
	size_t v = 0;
	const char *p;

	if (tok[0] == '\0' || (tok[0] == '0' && tok[1] != '\0'))
		return 0;
	for (p = tok; *p; p++) {
		if (*p < '0' || *p > '9')
			return 0;
		if (v > (SIZE_MAX - (size_t)(*p - '0')) / 10)
			return 0;
		v = v * 10 + (size_t)(*p - '0');
	}
	*idx = v;
	return 1;
}

typedef struct eval_ctx {
	const ptr_tokens *t;
	json_t *out;
	size_t max_matches;
	size_t found;
} eval_ctx;

static pg_err
eval_at(eval_ctx *c, json_t *v, size_t i)
{
	const char *tok;
	size_t idx, k;
	pg_err rc;

	if (!v)
		return PG_OK;
	if (i == c->t->n) {
		if (c->found >= c->max_matches)
			return PG_EPROTO;
		if (json_array_append(c->out, v) != 0)
			return PG_ENOMEM;
		c->found++;
		return PG_OK;
	}
	tok = c->t->tok[i];
	if (json_is_object(v)) {
		/* '*' has no special meaning for objects: it matches nothing. */
		if (strcmp(tok, "*") == 0)
			return PG_OK;
		return eval_at(c, json_object_get(v, tok), i + 1);
	}
	if (!json_is_array(v))
		return PG_OK;
	if (strcmp(tok, "*") == 0) {
		for (k = 0; k < json_array_size(v); k++) {
			rc = eval_at(c, json_array_get(v, k), i + 1);
			if (rc != PG_OK)
				return rc;
		}
		return PG_OK;
	}
	if (!array_index(tok, &idx))
		return PG_OK;
	return eval_at(c, json_array_get(v, idx), i + 1);
}

pg_err
pg_jsonptr_eval(json_t *doc, const char *ptr, json_t *out, size_t max_matches)
{
	ptr_tokens t;
	eval_ctx c;
	size_t before;
	pg_err rc;

	if (!doc || !json_is_array(out) || pg_jsonptr_valid(ptr) != PG_OK)
		return PG_EINVAL;
	rc = tokens_split(ptr, &t);
	if (rc != PG_OK)
		return rc;
	before = json_array_size(out);
	c.t = &t;
	c.out = out;
	c.max_matches = max_matches;
	c.found = 0;
	rc = eval_at(&c, doc, 0);
	if (rc != PG_OK) {
		/* No partial result: drop whatever this call appended. */
		while (json_array_size(out) > before)
			json_array_remove(out, json_array_size(out) - 1);
	}
	tokens_free(&t);
	return rc;
}
