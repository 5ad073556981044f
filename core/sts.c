/*
 * sts.c - AWS STS AssumeRole and GetCallerIdentity; see sts.h.
 *
 * Requests: a POST form body (every value percent-encoded, RFC 3986
 * unreserved characters kept), signed by libcurl (CURLOPT_AWS_SIGV4).  The
 * signing keys are handed to libcurl in a buffer that is wiped after the
 * call; the session token of the base credentials travels as the
 * X-Amz-Security-Token header, which libcurl signs with the others.
 *
 * Answers are parsed with Expat, through an allocator that wipes every
 * block it frees (the answer carries secrets).  A DOCTYPE or an entity
 * declaration stops the parser at once; external entities are never
 * loaded.  Only the documented element paths are read, each at most once,
 * each text bounded; everything else is ignored.
 */
#include "sts.h"

#include <errno.h>
#include <expat.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "timefmt.h"

#define STS_VERSION "2011-06-15"
#define STS_MAX_RESPONSE (256 * 1024)
#define STS_MAX_DEPTH 16
#define STS_TEXT_CAP 4096
#define STS_TOKEN_CAP 8192
#define STS_BACKOFF_BASE_MS 100
#define STS_BACKOFF_CAP_MS 2000
#define STS_MAX_ATTEMPTS 6
#define STS_MIN_ATTEMPT_MS 50

#define TAG_TICKET "pmpgate:ticket"
#define TAG_USER "pmpgate:user"
#define TAG_APPROVERS "pmpgate:approvers"

/* ---- names and tag values ------------------------------------------------- */

/* Length of the UTF-8 sequence starting at S (1 for ASCII or a stray
 * byte), never past the terminating NUL. */
static size_t
utf8_char_len(const unsigned char *s)
{
	size_t n = 1, want;

	if (*s < 0xC0 || *s > 0xF7)
		return 1;
	want = *s >= 0xF0 ? 4 : *s >= 0xE0 ? 3 : 2;
	while (n < want && (s[n] & 0xC0) == 0x80)
		n++;
	return n;
}

static int
in_set(unsigned char c, const char *extra)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr(extra, c) != NULL;
}

/*
 * Copy the strings of PARTS into OUT, each character outside
 * [A-Za-z0-9] + EXTRA replaced by REPL (a multi-byte UTF-8 character counts
 * as one), stopping at MAX bytes or outlen - 1.
 */
static void
sanitize(const char *const *parts, size_t nparts, const char *extra,
	 char repl, size_t max, char *out, size_t outlen)
{
	size_t o = 0, i;

	if (!out || outlen == 0)
		return;
	if (max > outlen - 1)
		max = outlen - 1;
	for (i = 0; i < nparts && o < max; i++) {
		const unsigned char *s = (const unsigned char *)parts[i];

		while (s && *s && o < max) {
			if (in_set(*s, extra)) {
				out[o++] = (char)*s;
				s++;
			} else {
				out[o++] = repl;
				s += utf8_char_len(s);
			}
		}
	}
	out[o] = '\0';
}

void
pg_sts_session_name(const char *user, const char *ticket, char *out,
		    size_t outlen)
{
	const char *parts[3] = { user ? user : "", "@", ticket ? ticket : "" };

	sanitize(parts, 3, "+=,.@-", '-', 64, out, outlen);
}

void
pg_sts_tag_value(const char *in, char *out, size_t outlen)
{
	const char *parts[1] = { in ? in : "" };

	sanitize(parts, 1, " _.:/=+@-", '_', 256, out, outlen);
}

/* ---- the form body -------------------------------------------------------- */

typedef struct form {
	char *buf;
	size_t len;
	size_t cap;
	int failed;
} form;

static void
form_raw(form *f, const char *s)
{
	size_t n = strlen(s);
	char *nb;
	size_t ncap;

	if (f->failed)
		return;
	if (f->len + n + 1 > f->cap) {
		ncap = f->cap ? f->cap : 512;
		while (ncap < f->len + n + 1)
			ncap *= 2;
		nb = realloc(f->buf, ncap);
		if (!nb) {
			f->failed = 1;
			return;
		}
		f->buf = nb;
		f->cap = ncap;
	}
	memcpy(f->buf + f->len, s, n + 1);
	f->len += n;
}

/* Append "&NAME=ENCODED(VALUE)" ("NAME=..." for the first pair). */
static void
form_add(form *f, const char *name, const char *value)
{
	char *enc;

	if (f->failed)
		return;
	if (!value) {
		f->failed = 1;
		return;
	}
	enc = pg_url_encode(value);
	if (!enc) {
		f->failed = 1;
		return;
	}
	if (f->len)
		form_raw(f, "&");
	form_raw(f, name);
	form_raw(f, "=");
	form_raw(f, enc);
	free(enc);
}

static char *
form_done(form *f)
{
	if (f->failed || !f->buf) {
		free(f->buf);
		return NULL;
	}
	return f->buf;
}

/* The approvers joined by single spaces (new string), or NULL. */
static char *
join_approvers(const char *const *v, size_t n)
{
	size_t i, len = 1;
	char *s;

	for (i = 0; i < n; i++)
		len += (v[i] ? strlen(v[i]) : 0) + 1;
	s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (i = 0; i < n; i++) {
		if (!v[i] || !*v[i])
			continue;
		if (s[0])
			strcat(s, " ");
		strcat(s, v[i]);
	}
	return s;
}

char *
pg_sts_assume_body(const pg_sts_assume *req)
{
	form f = { 0 };
	char name[72], tv[257], dur[32], key[48];
	char *joined = NULL;
	const char *tag_keys[3] = { TAG_TICKET, TAG_USER, TAG_APPROVERS };
	size_t ntags = 2, i;

	if (!req || !req->role_arn || !req->user || !req->ticket)
		return NULL;
	if (req->n_approvers > 0 && !req->approvers)
		return NULL;
	pg_sts_session_name(req->user, req->ticket, name, sizeof(name));
	snprintf(dur, sizeof(dur), "%lld", (long long)req->duration);

	form_add(&f, "Action", "AssumeRole");
	form_add(&f, "Version", STS_VERSION);
	form_add(&f, "RoleArn", req->role_arn);
	form_add(&f, "RoleSessionName", name);
	form_add(&f, "DurationSeconds", dur);
	form_add(&f, "SourceIdentity", req->user);

	form_add(&f, "Tags.member.1.Key", TAG_TICKET);
	pg_sts_tag_value(req->ticket, tv, sizeof(tv));
	form_add(&f, "Tags.member.1.Value", tv);
	form_add(&f, "Tags.member.2.Key", TAG_USER);
	pg_sts_tag_value(req->user, tv, sizeof(tv));
	form_add(&f, "Tags.member.2.Value", tv);
	if (req->n_approvers > 0) {
		joined = join_approvers(req->approvers, req->n_approvers);
		if (!joined) {
			f.failed = 1;
		} else {
			pg_sts_tag_value(joined, tv, sizeof(tv));
			form_add(&f, "Tags.member.3.Key", TAG_APPROVERS);
			form_add(&f, "Tags.member.3.Value", tv);
			ntags = 3;
		}
	}
	for (i = 0; i < ntags; i++) {
		snprintf(key, sizeof(key), "TransitiveTagKeys.member.%zu",
			 i + 1);
		form_add(&f, key, tag_keys[i]);
	}
	if (req->policy)
		form_add(&f, "Policy", req->policy);
	if (req->external_id)
		form_add(&f, "ExternalId", req->external_id);
	free(joined);
	return form_done(&f);
}

/* ---- XML ------------------------------------------------------------------ */

/* An allocator for Expat that wipes every block before freeing it. */
typedef struct mm_hdr {
	size_t size;
	size_t pad;	/* keeps the payload 16-byte aligned */
} mm_hdr;

static void *
mm_malloc(size_t size)
{
	mm_hdr *h;

	if (size > SIZE_MAX - sizeof(mm_hdr))
		return NULL;
	h = malloc(sizeof(mm_hdr) + size);
	if (!h)
		return NULL;
	h->size = size;
	return h + 1;
}

static void
mm_free(void *p)
{
	mm_hdr *h;

	if (!p)
		return;
	h = (mm_hdr *)p - 1;
	OPENSSL_cleanse(p, h->size);
	free(h);
}

static void *
mm_realloc(void *p, size_t size)
{
	mm_hdr *h;
	void *np;

	if (!p)
		return mm_malloc(size);
	h = (mm_hdr *)p - 1;
	np = mm_malloc(size);
	if (!np)
		return NULL;
	memcpy(np, p, h->size < size ? h->size : size);
	mm_free(p);
	return np;
}

static const XML_Memory_Handling_Suite mm_suite = {
	mm_malloc, mm_realloc, mm_free
};

/* One element we read: its path below the document, and its text. */
typedef struct xfield {
	const char *path;	/* "Root/A/B" */
	size_t cap;		/* text bound in bytes */
	int truncate;		/* cut at cap rather than reject */
	char *buf;
	size_t len;
	int seen;
} xfield;

typedef struct xctx {
	XML_Parser parser;
	const char *root;
	xfield *fields;
	size_t nfields;
	char path[512];
	size_t plen[STS_MAX_DEPTH + 1];
	int depth;
	xfield *cur;		/* field whose text is being read */
	const char *fail;	/* why the parser was stopped */
} xctx;

static void
xstop(xctx *x, const char *why)
{
	if (!x->fail)
		x->fail = why;
	XML_StopParser(x->parser, XML_FALSE);
}

/* The local part of a namespace-qualified name "URI|local". */
static const char *
local_name(const XML_Char *name)
{
	const char *bar = strrchr(name, '|');

	return bar ? bar + 1 : name;
}

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	xctx *x = ud;
	const char *ln = local_name(name);
	size_t n = strlen(ln), i;

	(void)atts;
	if (x->cur) {
		xstop(x, "unexpected element inside a value");
		return;
	}
	if (x->depth == 0 && strcmp(ln, x->root) != 0) {
		xstop(x, "unexpected document element");
		return;
	}
	if (x->depth >= STS_MAX_DEPTH ||
	    x->plen[x->depth] + n + 2 > sizeof(x->path)) {
		xstop(x, "document nested too deeply");
		return;
	}
	if (x->depth > 0)
		x->path[x->plen[x->depth]] = '/';
	memcpy(x->path + x->plen[x->depth] + (x->depth > 0), ln, n + 1);
	x->depth++;
	x->plen[x->depth] = x->plen[x->depth - 1] + n + (x->depth > 1);
	for (i = 0; i < x->nfields; i++) {
		if (strcmp(x->fields[i].path, x->path) != 0)
			continue;
		if (x->fields[i].seen) {
			xstop(x, "an element appears twice");
			return;
		}
		x->fields[i].seen = 1;
		x->cur = &x->fields[i];
		break;
	}
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
	xctx *x = ud;

	(void)name;
	x->cur = NULL;
	if (x->depth > 0) {
		x->depth--;
		x->path[x->plen[x->depth]] = '\0';
	}
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
	xctx *x = ud;
	xfield *f = x->cur;
	size_t n = (size_t)len;

	if (!f || len <= 0)
		return;
	if (f->len + n > f->cap) {
		if (!f->truncate) {
			xstop(x, "a value is too long");
			return;
		}
		n = f->cap - f->len;
	}
	memcpy(f->buf + f->len, s, n);
	f->len += n;
	f->buf[f->len] = '\0';
}

static void XMLCALL
on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
	   const XML_Char *pubid, int has_internal_subset)
{
	(void)name;
	(void)sysid;
	(void)pubid;
	(void)has_internal_subset;
	xstop(ud, "a DOCTYPE is not accepted");
}

static void XMLCALL
on_entity(void *ud, const XML_Char *name, int is_param,
	  const XML_Char *value, int value_length, const XML_Char *base,
	  const XML_Char *sysid, const XML_Char *pubid,
	  const XML_Char *notation)
{
	(void)name;
	(void)is_param;
	(void)value;
	(void)value_length;
	(void)base;
	(void)sysid;
	(void)pubid;
	(void)notation;
	xstop(ud, "an entity declaration is not accepted");
}

static int XMLCALL
on_ext_entity(XML_Parser p, const XML_Char *context, const XML_Char *base,
	      const XML_Char *sysid, const XML_Char *pubid)
{
	(void)p;
	(void)context;
	(void)base;
	(void)sysid;
	(void)pubid;
	return XML_STATUS_ERROR;
}

static void
fields_free(xfield *f, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (f[i].buf) {
			OPENSSL_cleanse(f[i].buf, f[i].cap + 1);
			free(f[i].buf);
			f[i].buf = NULL;
		}
		f[i].len = 0;
		f[i].seen = 0;
	}
}

/*
 * Parse XML (ROOT as document element) and fill FIELDS.  PG_EPROTO with
 * "WHAT: reason" on anything we do not accept.  Fields not present keep
 * seen == 0; the caller decides which are required.
 */
static pg_err
xml_parse(const char *xml, size_t len, const char *root, xfield *fields,
	  size_t nfields, const char *what, char *err, size_t errlen)
{
	pg_err rc = PG_EPROTO;
	xctx x;
	size_t i;
	enum XML_Status st;

	memset(&x, 0, sizeof(x));
	x.root = root;
	x.fields = fields;
	x.nfields = nfields;
	for (i = 0; i < nfields; i++) {
		fields[i].len = 0;
		fields[i].seen = 0;
		fields[i].buf = calloc(1, fields[i].cap + 1);
		if (!fields[i].buf) {
			snprintf(err, errlen, "%s: out of memory", what);
			rc = PG_ENOMEM;
			goto out;
		}
	}
	if (!xml || len == 0) {
		snprintf(err, errlen, "%s: empty answer", what);
		goto out;
	}
	if (len > (size_t)STS_MAX_RESPONSE) {
		snprintf(err, errlen, "%s: answer too large", what);
		goto out;
	}
	x.parser = XML_ParserCreate_MM(NULL, &mm_suite, "|");
	if (!x.parser) {
		snprintf(err, errlen, "%s: out of memory", what);
		rc = PG_ENOMEM;
		goto out;
	}
	XML_SetUserData(x.parser, &x);
	XML_SetElementHandler(x.parser, on_start, on_end);
	XML_SetCharacterDataHandler(x.parser, on_text);
	XML_SetStartDoctypeDeclHandler(x.parser, on_doctype);
	XML_SetEntityDeclHandler(x.parser, on_entity);
	XML_SetExternalEntityRefHandler(x.parser, on_ext_entity);
	XML_SetParamEntityParsing(x.parser, XML_PARAM_ENTITY_PARSING_NEVER);

	st = XML_Parse(x.parser, xml, (int)len, XML_TRUE);
	if (x.fail) {
		snprintf(err, errlen, "%s: %s", what, x.fail);
		goto out;
	}
	if (st != XML_STATUS_OK) {
		snprintf(err, errlen, "%s: malformed XML (line %lu: %s)", what,
			 (unsigned long)XML_GetCurrentLineNumber(x.parser),
			 XML_ErrorString(XML_GetErrorCode(x.parser)));
		goto out;
	}
	rc = PG_OK;
out:
	if (x.parser)
		XML_ParserFree(x.parser);
	if (rc != PG_OK)
		fields_free(fields, nfields);
	return rc;
}

/* Trim ASCII blanks at both ends of F's text, in place. */
static void
field_trim(xfield *f)
{
	size_t b = 0;

	while (f->len > 0 && (f->buf[f->len - 1] == ' ' ||
			      f->buf[f->len - 1] == '\n' ||
			      f->buf[f->len - 1] == '\r' ||
			      f->buf[f->len - 1] == '\t'))
		f->buf[--f->len] = '\0';
	while (b < f->len && (f->buf[b] == ' ' || f->buf[b] == '\n' ||
			      f->buf[b] == '\r' || f->buf[b] == '\t'))
		b++;
	if (b) {
		memmove(f->buf, f->buf + b, f->len - b + 1);
		f->len -= b;
	}
}

/* Printable ASCII only (ARNs, key ids, request ids). */
static int
printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

/* Copy S to OUT, control characters replaced by ' ', cut to outlen. */
static void
copy_clean(const char *s, char *out, size_t outlen)
{
	size_t i;

	if (!out || outlen == 0)
		return;
	for (i = 0; s && s[i] && i + 1 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	out[i] = '\0';
}

static char *
steal(xfield *f)
{
	char *s = malloc(f->len + 1);

	if (s)
		memcpy(s, f->buf, f->len + 1);
	return s;
}

enum {
	AR_KEY, AR_SECRET, AR_TOKEN, AR_EXP, AR_ARN, AR_REQID, AR_N
};

pg_err
pg_sts_parse_assume(const char *xml, size_t len, int64_t now,
		    pg_sts_result *out, char *err, size_t errlen)
{
	xfield f[AR_N] = {
		[AR_KEY] = { .path = "AssumeRoleResponse/AssumeRoleResult/"
				     "Credentials/AccessKeyId", .cap = 128 },
		[AR_SECRET] = { .path = "AssumeRoleResponse/AssumeRoleResult/"
					"Credentials/SecretAccessKey",
				.cap = STS_TEXT_CAP },
		[AR_TOKEN] = { .path = "AssumeRoleResponse/AssumeRoleResult/"
				       "Credentials/SessionToken",
			       .cap = STS_TOKEN_CAP },
		[AR_EXP] = { .path = "AssumeRoleResponse/AssumeRoleResult/"
				     "Credentials/Expiration", .cap = 64 },
		[AR_ARN] = { .path = "AssumeRoleResponse/AssumeRoleResult/"
				     "AssumedRoleUser/Arn", .cap = 511 },
		[AR_REQID] = { .path = "AssumeRoleResponse/ResponseMetadata/"
				       "RequestId", .cap = 127 },
	};
	static const char *const names[AR_N] = {
		"Credentials/AccessKeyId", "Credentials/SecretAccessKey",
		"Credentials/SessionToken", "Credentials/Expiration",
		"AssumedRoleUser/Arn", "ResponseMetadata/RequestId",
	};
	pg_err rc;
	int64_t exp = 0;
	size_t i;

	if (!out)
		return PG_EINTERNAL;
	memset(out, 0, sizeof(*out));
	rc = xml_parse(xml, len, "AssumeRoleResponse", f, AR_N,
		       "STS AssumeRole answer", err, errlen);
	if (rc != PG_OK)
		return rc;
	rc = PG_EPROTO;
	for (i = 0; i < AR_N; i++) {
		field_trim(&f[i]);
		if (!f[i].seen || f[i].len == 0) {
			snprintf(err, errlen,
				 "STS AssumeRole answer: no %s", names[i]);
			goto out;
		}
		if (i != AR_SECRET && i != AR_TOKEN && !printable(f[i].buf)) {
			snprintf(err, errlen,
				 "STS AssumeRole answer: bad %s", names[i]);
			goto out;
		}
	}
	if (memchr(f[AR_SECRET].buf, '\0', f[AR_SECRET].len) ||
	    !printable(f[AR_SECRET].buf) || !printable(f[AR_TOKEN].buf)) {
		snprintf(err, errlen,
			 "STS AssumeRole answer: credentials contain "
			 "unexpected characters");
		goto out;
	}
	if (pg_time_parse(f[AR_EXP].buf, &exp) != PG_OK) {
		snprintf(err, errlen,
			 "STS AssumeRole answer: bad Expiration");
		goto out;
	}
	if (exp <= now) {
		snprintf(err, errlen,
			 "STS returned credentials that are already expired");
		goto out;
	}
	out->creds.access_key_id = steal(&f[AR_KEY]);
	out->creds.secret_access_key = steal(&f[AR_SECRET]);
	out->creds.session_token = steal(&f[AR_TOKEN]);
	if (!out->creds.access_key_id || !out->creds.secret_access_key ||
	    !out->creds.session_token) {
		snprintf(err, errlen, "STS AssumeRole answer: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	out->creds.expiration = exp;
	memcpy(out->assumed_role_arn, f[AR_ARN].buf, f[AR_ARN].len + 1);
	memcpy(out->request_id, f[AR_REQID].buf, f[AR_REQID].len + 1);
	rc = PG_OK;
out:
	fields_free(f, AR_N);
	if (rc != PG_OK)
		pg_sts_result_wipe(out);
	return rc;
}

enum { ER_CODE, ER_MSG, ER_N };

pg_err
pg_sts_parse_error(const char *xml, size_t len, char *code, size_t codelen,
		   char *msg, size_t msglen)
{
	xfield f[ER_N] = {
		[ER_CODE] = { .path = "ErrorResponse/Error/Code", .cap = 128 },
		[ER_MSG] = { .path = "ErrorResponse/Error/Message",
			     .cap = 1024, .truncate = 1 },
	};
	char err[16];
	pg_err rc;
	size_t i;

	if (code && codelen)
		code[0] = '\0';
	if (msg && msglen)
		msg[0] = '\0';
	rc = xml_parse(xml, len, "ErrorResponse", f, ER_N, "x", err,
		       sizeof(err));
	if (rc != PG_OK)
		return rc;
	rc = PG_EPROTO;
	field_trim(&f[ER_CODE]);
	field_trim(&f[ER_MSG]);
	if (!f[ER_CODE].seen || f[ER_CODE].len == 0)
		goto out;
	for (i = 0; i < f[ER_CODE].len; i++) {
		unsigned char c = (unsigned char)f[ER_CODE].buf[i];

		if (!in_set(c, ".:_-"))
			f[ER_CODE].buf[i] = '?';
	}
	copy_clean(f[ER_CODE].buf, code, codelen);
	copy_clean(f[ER_MSG].buf, msg, msglen);
	rc = PG_OK;
out:
	fields_free(f, ER_N);
	return rc;
}

enum { CI_ARN, CI_N };

static pg_err
parse_caller(const char *xml, size_t len, char *arn, size_t arnlen,
	     char *err, size_t errlen)
{
	xfield f[CI_N] = {
		[CI_ARN] = { .path = "GetCallerIdentityResponse/"
				     "GetCallerIdentityResult/Arn",
			     .cap = 511 },
	};
	pg_err rc;

	rc = xml_parse(xml, len, "GetCallerIdentityResponse", f, CI_N,
		       "STS GetCallerIdentity answer", err, errlen);
	if (rc != PG_OK)
		return rc;
	rc = PG_EPROTO;
	field_trim(&f[CI_ARN]);
	if (!f[CI_ARN].seen || f[CI_ARN].len == 0 ||
	    !printable(f[CI_ARN].buf)) {
		snprintf(err, errlen, "STS GetCallerIdentity answer: no Arn");
		goto out;
	}
	if (f[CI_ARN].len >= arnlen) {
		snprintf(err, errlen,
			 "STS GetCallerIdentity answer: Arn too long");
		goto out;
	}
	memcpy(arn, f[CI_ARN].buf, f[CI_ARN].len + 1);
	rc = PG_OK;
out:
	fields_free(f, CI_N);
	return rc;
}

void
pg_sts_result_wipe(pg_sts_result *r)
{
	if (!r)
		return;
	pg_aws_creds_wipe(&r->creds);
	OPENSSL_cleanse(r, sizeof(*r));
}

/* ---- the call, with retries ------------------------------------------------ */

static int
retryable_code(const char *code)
{
	static const char *const codes[] = {
		"Throttling", "ThrottlingException", "RequestLimitExceeded",
		"ServiceUnavailable", "InternalFailure", "RequestThrottled",
		"TooManyRequestsException", "PriorRequestNotComplete",
	};
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(code, codes[i]) == 0)
			return 1;
	return 0;
}

/* Full jitter: a uniform delay in [0, min(cap, base * 2^attempt)]. */
static int64_t
backoff_ms(int attempt)
{
	int64_t ceiling = STS_BACKOFF_BASE_MS;
	uint32_t r;
	int i;

	for (i = 0; i < attempt && ceiling < STS_BACKOFF_CAP_MS; i++)
		ceiling *= 2;
	if (ceiling > STS_BACKOFF_CAP_MS)
		ceiling = STS_BACKOFF_CAP_MS;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return ceiling / 2;
	return (int64_t)(r % (uint32_t)(ceiling + 1));
}

static void
sleep_ms(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The endpoint, or NULL with a message when [aws] is incomplete. */
static const char *
endpoint_ok(const pg_config *cfg, char *err, size_t errlen)
{
	const char *ep = cfg->aws.sts_endpoint;

	if (!cfg->aws.region || !*cfg->aws.region) {
		snprintf(err, errlen, "[aws] region is not set");
		return NULL;
	}
	if (strspn(cfg->aws.region, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
	    strlen(cfg->aws.region)) {
		snprintf(err, errlen, "[aws] region is malformed");
		return NULL;
	}
	if (!ep || !*ep) {
		snprintf(err, errlen, "[aws] sts_endpoint is not set");
		return NULL;
	}
	return ep;
}

/*
 * POST BODY to STS with BASE's keys, retrying throttling and 5xx while the
 * deadline allows.  PG_OK with *resp holding a 200 answer; otherwise an
 * error, with the STS error code (when there is one) in CODE.
 */
static pg_err
sts_call(pg_http *h, const pg_config *cfg, const pg_aws_creds *base,
	 const char *body, pg_deadline dl, pg_http_resp *resp, char *code,
	 size_t codelen, char *err, size_t errlen)
{
	pg_err rc = PG_EINTERNAL;
	const char *ep;
	char sigv4[128];
	char *userpwd = NULL, *tokhdr = NULL;
	size_t userpwd_len = 0, tokhdr_len = 0;
	const char *headers[4];
	size_t nh = 0;
	pg_http_req req;
	char ecode[64], emsg[512], last[768], herr[512] = "";
	int attempt = 0, n;
	int64_t wait, left;
	long status;

	memset(resp, 0, sizeof(*resp));
	if (code && codelen)
		code[0] = '\0';
	last[0] = '\0';
	ep = endpoint_ok(cfg, err, errlen);
	if (!ep) {
		rc = PG_ECONFIG;
		goto out;
	}
	if (!base || !base->access_key_id || !*base->access_key_id ||
	    !base->secret_access_key || !*base->secret_access_key) {
		snprintf(err, errlen, "no base AWS credentials");
		rc = PG_ECONFIG;
		goto out;
	}
	if (strchr(base->access_key_id, ':')) {
		snprintf(err, errlen, "base AWS access key id is malformed");
		rc = PG_ECONFIG;
		goto out;
	}
	n = snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:sts", cfg->aws.region);
	if (n < 0 || (size_t)n >= sizeof(sigv4)) {
		snprintf(err, errlen, "[aws] region is too long");
		rc = PG_ECONFIG;
		goto out;
	}

	userpwd_len = strlen(base->access_key_id) +
		      strlen(base->secret_access_key) + 2;
	userpwd = malloc(userpwd_len);
	if (!userpwd) {
		rc = PG_ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	snprintf(userpwd, userpwd_len, "%s:%s", base->access_key_id,
		 base->secret_access_key);

	headers[nh++] =
		"Content-Type: application/x-www-form-urlencoded; charset=utf-8";
	headers[nh++] = "Accept: text/xml";
	if (base->session_token && *base->session_token) {
		tokhdr_len = strlen(base->session_token) +
			     sizeof("X-Amz-Security-Token: ");
		tokhdr = malloc(tokhdr_len);
		if (!tokhdr) {
			rc = PG_ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		snprintf(tokhdr, tokhdr_len, "X-Amz-Security-Token: %s",
			 base->session_token);
		headers[nh++] = tokhdr;
	}
	headers[nh] = NULL;

	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = ep;
	req.ca_file = cfg->aws.ca_file;
	req.allow_plaintext = 0;
	req.headers = headers;
	req.body = body;
	req.body_len = strlen(body);
	req.aws_sigv4 = sigv4;
	req.userpwd = userpwd;
	req.timeout_ms = cfg->aws.timeout_ms;
	req.deadline = dl;
	req.max_response = STS_MAX_RESPONSE;

	for (;;) {
		attempt++;
		rc = pg_http_perform(h, &req, resp, herr, sizeof(herr));
		if (rc != PG_OK) {
			if (rc == PG_ETIMEOUT && last[0])
				snprintf(err, errlen,
					 "%s; then STS %s (attempt %d)", last,
					 herr, attempt);
			else
				snprintf(err, errlen, "STS %s", herr);
			goto out;
		}
		if (resp->status == 200)
			goto out;
		status = resp->status;
		ecode[0] = emsg[0] = '\0';
		if (pg_sts_parse_error(resp->body, resp->len, ecode,
				       sizeof(ecode), emsg,
				       sizeof(emsg)) == PG_OK) {
			snprintf(last, sizeof(last), "STS %s: %s", ecode,
				 emsg[0] ? emsg : "(no message)");
			if (code && codelen)
				snprintf(code, codelen, "%s", ecode);
		} else {
			snprintf(last, sizeof(last), "STS HTTP %ld", status);
		}
		pg_http_resp_free(resp);
		rc = PG_EUNAVAIL;
		if (!(status >= 500 || (ecode[0] && retryable_code(ecode)))) {
			snprintf(err, errlen, "%s", last);
			goto out;
		}
		if (attempt >= STS_MAX_ATTEMPTS) {
			snprintf(err, errlen, "%s (gave up after %d attempts)",
				 last, attempt);
			goto out;
		}
		wait = backoff_ms(attempt - 1);
		left = pg_deadline_left(dl);
		if (left <= wait + STS_MIN_ATTEMPT_MS) {
			snprintf(err, errlen,
				 "%s (gave up after %d attempts: deadline)",
				 last, attempt);
			goto out;
		}
		sleep_ms(wait);
	}
out:
	if (userpwd) {
		OPENSSL_cleanse(userpwd, userpwd_len);
		free(userpwd);
	}
	if (tokhdr) {
		OPENSSL_cleanse(tokhdr, tokhdr_len);
		free(tokhdr);
	}
	if (rc != PG_OK)
		pg_http_resp_free(resp);
	return rc;
}

pg_err
pg_sts_assume_role(pg_http *h, const pg_config *cfg,
		   const pg_aws_creds *base, const pg_sts_assume *req,
		   pg_deadline dl, pg_sts_result *out, char *err,
		   size_t errlen)
{
	pg_err rc = PG_EINTERNAL;
	pg_http_resp resp = { 0 };
	char code[sizeof(out->error_code)];
	char *body = NULL;
	struct timespec now;

	if (!out)
		return PG_EINTERNAL;
	memset(out, 0, sizeof(*out));
	code[0] = '\0';
	if (!h || !cfg || !req || !req->role_arn || !*req->role_arn ||
	    !req->user || !*req->user || !req->ticket || !*req->ticket) {
		snprintf(err, errlen, "STS AssumeRole: incomplete request");
		rc = PG_EINTERNAL;
		goto out;
	}
	if (req->duration < 900 || req->duration > 43200) {
		snprintf(err, errlen,
			 "STS AssumeRole: duration %lld outside 900..43200",
			 (long long)req->duration);
		rc = PG_EINVAL;
		goto out;
	}
	body = pg_sts_assume_body(req);
	if (!body) {
		snprintf(err, errlen, "STS AssumeRole: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	rc = sts_call(h, cfg, base, body, dl, &resp, code, sizeof(code), err,
		      errlen);
	if (rc != PG_OK)
		goto out;
	clock_gettime(CLOCK_REALTIME, &now);
	rc = pg_sts_parse_assume(resp.body, resp.len, (int64_t)now.tv_sec,
				 out, err, errlen);
out:
	pg_http_resp_free(&resp);
	free(body);
	if (rc != PG_OK) {
		pg_sts_result_wipe(out);
		memcpy(out->error_code, code, sizeof(out->error_code));
	}
	return rc;
}

pg_err
pg_sts_caller_identity(pg_http *h, const pg_config *cfg,
		       const pg_aws_creds *base, pg_deadline dl, char *arn,
		       size_t arnlen, char *err, size_t errlen)
{
	pg_err rc;
	pg_http_resp resp = { 0 };

	if (!arn || arnlen == 0)
		return PG_EINTERNAL;
	arn[0] = '\0';
	if (!h || !cfg) {
		snprintf(err, errlen, "STS GetCallerIdentity: no handle");
		return PG_EINTERNAL;
	}
	rc = sts_call(h, cfg, base,
		      "Action=GetCallerIdentity&Version=" STS_VERSION, dl,
		      &resp, NULL, 0, err, errlen);
	if (rc == PG_OK)
		rc = parse_caller(resp.body, resp.len, arn, arnlen, err,
				  errlen);
	pg_http_resp_free(&resp);
	if (rc != PG_OK)
		arn[0] = '\0';
	return rc;
}
