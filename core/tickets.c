/*
 * tickets.c - the ticket client; see tickets.h for the contract.
 *
 * Order of work in pg_ticket_fetch: check the id (no request for a bad
 * one), build the URL, read the token, perform the request, wipe the
 * token, map the status, parse the JSON, then read each field through its
 * JSON Pointer.  Any failure discards everything: no partial ticket.
 */
#include "tickets.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonptr.h"
#include "secret.h"
#include "timefmt.h"

#define PG_STR_(x) #x
#define PG_XSTR(x) PG_STR_(x)

/*
 * Copy untrusted text into DST for a message: printable ASCII as is,
 * every other byte as \xNN, at most PG_SHOW_MAX input bytes ("..."
 * after).  Backslash is always escaped, and so is the quote when QUOTE
 * (text shown between quotes), so that the shown text is unambiguous.
 */
#define PG_SHOW_MAX 64
#define PG_SHOW_LEN (PG_SHOW_MAX * 4 + 4)

static void
show_q(char *dst, size_t dstlen, const char *s, size_t len, int quote)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (dstlen == 0)
		return;
	for (i = 0; i < len && i < PG_SHOW_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' &&
		    !(quote && c == '\'')) {
			if (o + 1 >= dstlen)
				break;
			dst[o++] = (char)c;
		} else {
			if (o + 4 >= dstlen)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		}
	}
	if (i < len && o + 3 < dstlen) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

static void
show(char *dst, size_t dstlen, const char *s, size_t len)
{
	show_q(dst, dstlen, s, len, 1);
}

static void
show_str(char *dst, size_t dstlen, const char *s)
{
	show(dst, dstlen, s ? s : "", s ? strlen(s) : 0);
}

pg_err
pg_ticket_id_check(const pg_config *cfg, const char *id, char *err,
		   size_t errlen)
{
	char shown[PG_SHOW_LEN];
	size_t len, i;
	int rc;

	if (!id || id[0] == '\0') {
		snprintf(err, errlen, "ticket id is empty");
		return PG_EINVAL;
	}
	len = strlen(id);
	show(shown, sizeof(shown), id, len);
	if (len > PG_TICKET_ID_MAX) {
		snprintf(err, errlen,
			 "ticket id '%s' is longer than %d bytes", shown,
			 PG_TICKET_ID_MAX);
		return PG_EINVAL;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)id[i];

		if (c <= 0x20 || c >= 0x7f) {
			snprintf(err, errlen,
				 "ticket id '%s' contains a space, control or "
				 "non-ASCII character", shown);
			return PG_EINVAL;
		}
	}
	/* "." and ".." would be path segments once in the URL. */
	if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
		snprintf(err, errlen, "ticket id '%s' is not an id", shown);
		return PG_EINVAL;
	}
	if (!cfg || !cfg->tickets.id_pattern) {
		snprintf(err, errlen, "[tickets] id_pattern is not set");
		return PG_ECONFIG;
	}
	rc = regexec(&cfg->tickets.id_re, id, 0, NULL, 0);
	if (rc == REG_NOMATCH) {
		snprintf(err, errlen,
			 "ticket id '%s' does not match [tickets] id_pattern",
			 shown);
		return PG_EINVAL;
	}
	if (rc != 0) {
		snprintf(err, errlen,
			 "ticket id '%s': [tickets] id_pattern cannot be "
			 "evaluated", shown);
		return PG_EINTERNAL;
	}
	return PG_OK;
}

/*
 * A string from the ticket: at most PG_TICKET_STR_MAX bytes, valid UTF-8
 * (shortest form, no surrogates), no NUL and no control characters (C0,
 * DEL, C1).  Returns NULL when acceptable, else the reason.
 */
static const char *
string_problem(json_t *v)
{
	const unsigned char *s = (const unsigned char *)json_string_value(v);
	size_t len = json_string_length(v), i = 0;

	if (len > PG_TICKET_STR_MAX)
		return "is longer than " PG_XSTR(PG_TICKET_STR_MAX) " bytes";
	while (i < len) {
		unsigned c = s[i], cp, n, k;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return "contains a control character";
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return "is not valid UTF-8";
		}
		if (n >= len - i)
			return "is not valid UTF-8";
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return "is not valid UTF-8";
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return "is not valid UTF-8";
		if (cp >= 0x80 && cp <= 0x9f)
			return "contains a control character";
		i += n + 1;
	}
	return NULL;
}

static const char *
type_name(json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:	return "an object";
	case JSON_ARRAY:	return "an array";
	case JSON_STRING:	return "a string";
	case JSON_INTEGER:	/* fallthrough */
	case JSON_REAL:		return "a number";
	case JSON_TRUE:		/* fallthrough */
	case JSON_FALSE:	return "a boolean";
	case JSON_NULL:		return "null";
	}
	return "of an unknown type";
}

/* Context for the messages of one field. */
typedef struct field_ctx {
	const char *name;
	const char *ptr;
	char ptr_shown[PG_SHOW_LEN];
	char *err;
	size_t errlen;
} field_ctx;

/* Check a string value and duplicate it into *OUT. */
static pg_err
take_string(field_ctx *fc, json_t *v, char **out)
{
	const char *why;

	if (!json_is_string(v)) {
		snprintf(fc->err, fc->errlen,
			 "ticket field %s (%s) is %s, expected a string",
			 fc->name, fc->ptr_shown, type_name(v));
		return PG_EPROTO;
	}
	why = string_problem(v);
	if (why) {
		snprintf(fc->err, fc->errlen, "ticket field %s (%s) %s",
			 fc->name, fc->ptr_shown, why);
		return PG_EPROTO;
	}
	*out = strdup(json_string_value(v));
	if (!*out) {
		snprintf(fc->err, fc->errlen, "out of memory");
		return PG_ENOMEM;
	}
	return PG_OK;
}

/*
 * Evaluate field F of the map into a new array *MATCHES (NULL when the
 * field is not mapped).  Bounds the matches at PG_TICKET_MAX_APPROVERS.
 */
static pg_err
field_eval(const pg_config *cfg, pg_ticket_field f, json_t *doc,
	   field_ctx *fc, json_t **matches)
{
	pg_err rc;

	*matches = NULL;
	fc->name = pg_field_name(f);
	fc->ptr = cfg->tickets.field[f];
	show_str(fc->ptr_shown, sizeof(fc->ptr_shown), fc->ptr);
	if (!fc->ptr)
		return PG_OK;
	if (pg_jsonptr_valid(fc->ptr) != PG_OK) {
		snprintf(fc->err, fc->errlen,
			 "[tickets] field.%s '%s' is not a JSON Pointer",
			 fc->name, fc->ptr_shown);
		return PG_ECONFIG;
	}
	*matches = json_array();
	if (!*matches) {
		snprintf(fc->err, fc->errlen, "out of memory");
		return PG_ENOMEM;
	}
	rc = pg_jsonptr_eval(doc, fc->ptr, *matches, PG_TICKET_MAX_APPROVERS);
	if (rc == PG_EPROTO) {
		snprintf(fc->err, fc->errlen,
			 "ticket field %s (%s) has more than %d values",
			 fc->name, fc->ptr_shown, PG_TICKET_MAX_APPROVERS);
	} else if (rc == PG_ENOMEM) {
		snprintf(fc->err, fc->errlen, "out of memory");
	} else if (rc != PG_OK) {
		snprintf(fc->err, fc->errlen,
			 "ticket field %s (%s) cannot be evaluated", fc->name,
			 fc->ptr_shown);
	}
	if (rc != PG_OK) {
		json_decref(*matches);
		*matches = NULL;
		return rc;
	}
	/* null is how ticket systems say "not set" (Jira's unset custom
	 * fields): a null value is an absent one. */
	for (size_t i = json_array_size(*matches); i > 0; i--)
		if (json_is_null(json_array_get(*matches, i - 1)))
			json_array_remove(*matches, i - 1);
	return PG_OK;
}

/* A field that holds at most one string; *OUT stays NULL when absent. */
static pg_err
scalar_field(const pg_config *cfg, pg_ticket_field f, json_t *doc,
	     field_ctx *fc, char **out)
{
	json_t *m = NULL;
	pg_err rc;

	rc = field_eval(cfg, f, doc, fc, &m);
	if (rc != PG_OK || !m)
		goto out;
	if (json_array_size(m) > 1) {
		snprintf(fc->err, fc->errlen,
			 "ticket field %s (%s) has %zu values, expected one",
			 fc->name, fc->ptr_shown, json_array_size(m));
		rc = PG_EPROTO;
		goto out;
	}
	if (json_array_size(m) == 1)
		rc = take_string(fc, json_array_get(m, 0), out);
out:
	json_decref(m);
	return rc;
}

/* Append a copy of V (checked) to the approvers list. */
static pg_err
add_approver(field_ctx *fc, json_t *v, pg_list *l)
{
	char **nv;
	char *s = NULL;
	pg_err rc;

	if (l->n >= PG_TICKET_MAX_APPROVERS) {
		snprintf(fc->err, fc->errlen,
			 "ticket field %s (%s) has more than %d values",
			 fc->name, fc->ptr_shown, PG_TICKET_MAX_APPROVERS);
		return PG_EPROTO;
	}
	rc = take_string(fc, v, &s);
	if (rc != PG_OK)
		return rc;
	nv = realloc(l->v, (l->n + 2) * sizeof(*l->v));
	if (!nv) {
		free(s);
		snprintf(fc->err, fc->errlen, "out of memory");
		return PG_ENOMEM;
	}
	l->v = nv;
	l->v[l->n++] = s;
	l->v[l->n] = NULL;
	return PG_OK;
}

/* Every match a string, or an array of strings (its elements). */
static pg_err
approvers_field(const pg_config *cfg, json_t *doc, field_ctx *fc,
		pg_list *l)
{
	json_t *m = NULL, *v, *e;
	size_t i, k;
	pg_err rc;

	l->v = calloc(1, sizeof(*l->v));
	l->n = 0;
	if (!l->v) {
		snprintf(fc->err, fc->errlen, "out of memory");
		return PG_ENOMEM;
	}
	rc = field_eval(cfg, PG_FIELD_APPROVERS, doc, fc, &m);
	if (rc != PG_OK || !m)
		goto out;
	json_array_foreach(m, i, v) {
		if (json_is_array(v)) {
			json_array_foreach(v, k, e) {
				rc = add_approver(fc, e, l);
				if (rc != PG_OK)
					goto out;
			}
		} else {
			rc = add_approver(fc, v, l);
			if (rc != PG_OK)
				goto out;
		}
	}
out:
	json_decref(m);
	return rc;
}

/* A window time: a string (timefmt.h) or a number of epoch seconds. */
static pg_err
time_field(const pg_config *cfg, pg_ticket_field f, json_t *doc,
	   field_ctx *fc, int *has, int64_t *when)
{
	char shown[PG_SHOW_LEN];
	json_t *m = NULL, *v;
	const char *why;
	pg_err rc;

	*has = 0;
	*when = 0;
	rc = field_eval(cfg, f, doc, fc, &m);
	if (rc != PG_OK || !m || json_array_size(m) == 0)
		goto out;
	rc = PG_EPROTO;
	if (json_array_size(m) > 1) {
		snprintf(fc->err, fc->errlen,
			 "ticket field %s (%s) has %zu values, expected one",
			 fc->name, fc->ptr_shown, json_array_size(m));
		goto out;
	}
	v = json_array_get(m, 0);
	if (json_is_number(v)) {
		if (pg_time_from_number(json_number_value(v), when) != PG_OK) {
			snprintf(fc->err, fc->errlen,
				 "ticket field %s (%s) is a number out of "
				 "range for a time", fc->name, fc->ptr_shown);
			goto out;
		}
	} else if (json_is_string(v) && json_string_length(v) == 0) {
		goto absent;	/* ServiceNow's unset date */
	} else if (json_is_string(v)) {
		why = string_problem(v);
		if (why) {
			snprintf(fc->err, fc->errlen,
				 "ticket field %s (%s) %s", fc->name,
				 fc->ptr_shown, why);
			goto out;
		}
		if (pg_time_parse(json_string_value(v), when) != PG_OK) {
			show(shown, sizeof(shown), json_string_value(v),
			     json_string_length(v));
			snprintf(fc->err, fc->errlen,
				 "ticket field %s (%s) is not a valid time: "
				 "'%s'", fc->name, fc->ptr_shown, shown);
			goto out;
		}
	} else {
		snprintf(fc->err, fc->errlen,
			 "ticket field %s (%s) is %s, expected a time",
			 fc->name, fc->ptr_shown, type_name(v));
		goto out;
	}
	*has = 1;
absent:
	rc = PG_OK;
out:
	if (rc != PG_OK || !*has) {
		*has = 0;
		*when = 0;
	}
	json_decref(m);
	return rc;
}

pg_err
pg_ticket_from_json(const pg_config *cfg, const char *id, json_t *doc,
		    pg_ticket *out, char *err, size_t errlen)
{
	char shown[PG_SHOW_LEN];
	field_ctx fc;
	pg_err rc;

	if (!out) {
		snprintf(err, errlen, "ticket: invalid arguments");
		return PG_EINTERNAL;
	}
	memset(out, 0, sizeof(*out));
	memset(&fc, 0, sizeof(fc));
	fc.err = err;
	fc.errlen = errlen;
	if (!cfg || !id || !doc) {
		snprintf(err, errlen, "ticket: invalid arguments");
		rc = PG_EINTERNAL;
		goto out;
	}
	show_str(shown, sizeof(shown), id);
	if (!cfg->tickets.field[PG_FIELD_STATE]) {
		snprintf(err, errlen, "[tickets] field.state is not set");
		rc = PG_ECONFIG;
		goto out;
	}
	out->id = strdup(id);
	if (!out->id) {
		snprintf(err, errlen, "out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	rc = scalar_field(cfg, PG_FIELD_STATE, doc, &fc, &out->state);
	if (rc != PG_OK)
		goto out;
	if (!out->state) {
		snprintf(err, errlen, "ticket %s not found", shown);
		rc = PG_ENOTFOUND;
		goto out;
	}
	rc = scalar_field(cfg, PG_FIELD_REQUESTED_FOR, doc, &fc,
			  &out->requested_for);
	if (rc == PG_OK)
		rc = scalar_field(cfg, PG_FIELD_REQUESTER, doc, &fc,
				  &out->requester);
	if (rc == PG_OK)
		rc = approvers_field(cfg, doc, &fc, &out->approvers);
	if (rc == PG_OK)
		rc = scalar_field(cfg, PG_FIELD_ROLE, doc, &fc, &out->role);
	if (rc == PG_OK)
		rc = scalar_field(cfg, PG_FIELD_CATEGORY, doc, &fc,
				  &out->category);
	if (rc == PG_OK)
		rc = time_field(cfg, PG_FIELD_WINDOW_START, doc, &fc,
				&out->has_start, &out->window_start);
	if (rc == PG_OK)
		rc = time_field(cfg, PG_FIELD_WINDOW_END, doc, &fc,
				&out->has_end, &out->window_end);
out:
	if (rc != PG_OK)
		pg_ticket_free(out);
	return rc;
}

pg_err
pg_ticket_parse(const pg_config *cfg, const char *id, const char *body,
		size_t len, pg_ticket *out, char *err, size_t errlen)
{
	char shown[PG_SHOW_LEN], jshown[PG_SHOW_LEN];
	json_error_t jerr;
	json_t *doc = NULL;
	pg_err rc;

	if (!out) {
		snprintf(err, errlen, "ticket: invalid arguments");
		return PG_EINTERNAL;
	}
	memset(out, 0, sizeof(*out));
	if (!body) {
		snprintf(err, errlen, "ticket: invalid arguments");
		rc = PG_EINTERNAL;
		goto out;
	}
	show_str(shown, sizeof(shown), id);
	doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		show_q(jshown, sizeof(jshown), jerr.text, strlen(jerr.text), 0);
		snprintf(err, errlen,
			 "ticket service answered invalid JSON for ticket %s: "
			 "%s (line %d)", shown, jshown, jerr.line);
		rc = PG_EPROTO;
		goto out;
	}
	rc = pg_ticket_from_json(cfg, id, doc, out, err, errlen);
out:
	json_decref(doc);
	return rc;
}

/* Replace every "{ticket}" in TMPL with ENC; NULL on out of memory. */
static char *
build_url(const char *tmpl, const char *enc)
{
	static const char mark[] = "{ticket}";
	size_t ml = sizeof(mark) - 1, el = strlen(enc), tl = strlen(tmpl);
	size_t n = 0, len;
	const char *p, *q;
	char *url, *w;

	for (p = tmpl; (q = strstr(p, mark)) != NULL; p = q + ml)
		n++;
	/* Each mark takes ml bytes of TMPL and becomes el bytes. */
	if (el >= ml) {
		if (n > 0 && el - ml > (SIZE_MAX - tl - 1) / n)
			return NULL;
		len = tl + n * (el - ml);
	} else {
		len = tl - n * (ml - el);
	}
	url = malloc(len + 1);
	if (!url)
		return NULL;
	w = url;
	for (p = tmpl; (q = strstr(p, mark)) != NULL; p = q + ml) {
		memcpy(w, p, (size_t)(q - p));
		w += q - p;
		memcpy(w, enc, el);
		w += el;
	}
	memcpy(w, p, strlen(p) + 1);
	return url;
}

pg_err
pg_ticket_get(pg_http *h, const pg_config *cfg, const char *id,
	      pg_deadline dl, pg_http_resp *resp, char *err, size_t errlen)
{
	static const char *const headers[] = { "Accept: application/json",
					       NULL };
	pg_secret token = { NULL, 0 };
	pg_http_req req;
	char *enc = NULL, *url = NULL, herr[256];
	pg_err rc;

	memset(&req, 0, sizeof(req));
	if (!cfg->tickets.url || !strstr(cfg->tickets.url, "{ticket}")) {
		snprintf(err, errlen, "[tickets] url must contain {ticket}");
		rc = PG_ECONFIG;
		goto out;
	}
	enc = pg_url_encode(id);
	url = enc ? build_url(cfg->tickets.url, enc) : NULL;
	if (!url) {
		snprintf(err, errlen, "out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	if (cfg->tickets.auth != PG_AUTH_NONE) {
		if (!cfg->tickets.token_file) {
			snprintf(err, errlen,
				 "[tickets] auth needs token_file");
			rc = PG_ECONFIG;
			goto out;
		}
		rc = pg_secret_read_file(cfg->tickets.token_file, &token, err,
					 errlen);
		if (rc != PG_OK)
			goto out;
		if (!token.buf || token.len == 0 ||
		    strlen(token.buf) != token.len ||
		    (cfg->tickets.auth == PG_AUTH_BASIC &&
		     !strchr(token.buf, ':'))) {
			snprintf(err, errlen,
				 "[tickets] token_file must hold %s",
				 cfg->tickets.auth == PG_AUTH_BASIC ?
				 "user:password" : "a token");
			rc = PG_ECONFIG;
			goto out;
		}
		if (cfg->tickets.auth == PG_AUTH_BASIC)
			req.userpwd = token.buf;
		else
			req.bearer = token.buf;
	}
	req.method = "GET";
	req.url = url;
	req.ca_file = cfg->tickets.ca_file;
	req.allow_plaintext = cfg->tickets.allow_plaintext;
	req.headers = headers;
	req.timeout_ms = (long)cfg->tickets.timeout_ms;
	req.deadline = dl;
	req.max_response = cfg->tickets.max_response;
	herr[0] = '\0';
	rc = pg_http_perform(h, &req, resp, herr, sizeof(herr));
	if (rc != PG_OK)
		snprintf(err, errlen, "ticket service: %s", herr);
out:
	pg_secret_wipe(&token);
	free(url);
	free(enc);
	return rc;
}

pg_err
pg_ticket_fetch(pg_http *h, const pg_config *cfg, const char *id,
		pg_deadline dl, pg_ticket *out, char *err, size_t errlen)
{
	char shown[PG_SHOW_LEN];
	pg_http_resp resp = { 0, NULL, 0 };
	pg_err rc;

	if (!out) {
		snprintf(err, errlen, "ticket: invalid arguments");
		return PG_EINTERNAL;
	}
	memset(out, 0, sizeof(*out));
	if (!h || !cfg) {
		snprintf(err, errlen, "ticket: invalid arguments");
		rc = PG_EINTERNAL;
		goto out;
	}
	rc = pg_ticket_id_check(cfg, id, err, errlen);
	if (rc != PG_OK)
		goto out;
	show_str(shown, sizeof(shown), id);
	rc = pg_ticket_get(h, cfg, id, dl, &resp, err, errlen);
	if (rc != PG_OK)
		goto out;
	if (resp.status == 404) {
		snprintf(err, errlen, "ticket %s not found", shown);
		rc = PG_ENOTFOUND;
		goto out;
	}
	if (resp.status == 401 || resp.status == 403) {
		snprintf(err, errlen,
			 "ticket service refused our credentials (HTTP %ld)",
			 resp.status);
		rc = PG_EUNAVAIL;
		goto out;
	}
	if (resp.status != 200) {
		snprintf(err, errlen, "ticket service answered HTTP %ld%s",
			 resp.status,
			 resp.status >= 300 && resp.status < 400 ?
			 " (redirects are not followed)" : "");
		rc = PG_EUNAVAIL;
		goto out;
	}
	rc = pg_ticket_parse(cfg, id, resp.body ? resp.body : "", resp.len,
			     out, err, errlen);
out:
	pg_http_resp_free(&resp);
	if (rc != PG_OK)
		pg_ticket_free(out);
	return rc;
}

int
pg_ticket_state_approved(const pg_config *cfg, const char *state)
{
	size_t i;

	if (!cfg || !state)
		return 0;
	for (i = 0; i < cfg->tickets.approved_states.n; i++) {
		const char *a = cfg->tickets.approved_states.v[i];

		if (a && strcmp(a, state) == 0)
			return 1;
	}
	return 0;
}

void
pg_ticket_free(pg_ticket *t)
{
	size_t i;

	if (!t)
		return;
	free(t->id);
	free(t->state);
	free(t->requested_for);
	free(t->requester);
	if (t->approvers.v) {
		for (i = 0; i < t->approvers.n; i++)
			free(t->approvers.v[i]);
		free(t->approvers.v);
	}
	free(t->role);
	free(t->category);
	memset(t, 0, sizeof(*t));
}
