/* output.c - formatting for the thin clients; see output.h. */
#include "output.h"

#include <errno.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

pg_err
pg_fmt_parse(const char *name, pg_fmt *out)
{
	if (name == NULL)
		return PG_EUSAGE;
	if (strcmp(name, "process") == 0)
		*out = PG_FMT_PROCESS;
	else if (strcmp(name, "env") == 0)
		*out = PG_FMT_ENV;
	else if (strcmp(name, "ini") == 0)
		*out = PG_FMT_INI;
	else
		return PG_EUSAGE;
	return PG_OK;
}

/* ---- validation ------------------------------------------------------------- */

static bool
is_alnum(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9');
}

/* A string member of CREDS of min..max bytes, each accepted by KIND:
 * 'k' = [A-Za-z0-9_], 's' = [A-Za-z0-9/+=._-]. */
static const char *
cred_str(const json_t *creds, const char *key, size_t max, char kind)
{
	const json_t *v = json_object_get(creds, key);
	const char *s;
	size_t n;

	if (!json_is_string(v))
		return NULL;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n < PG_CREDS_MIN || n > max || strlen(s) != n)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (is_alnum(c))
			continue;
		if (kind == 'k' && c == '_')
			continue;
		if (kind == 's' && (c == '/' || c == '+' || c == '=' ||
				    c == '.' || c == '_' || c == '-'))
			continue;
		return NULL;
	}
	return s;
}

/* Two decimal digits at S, or -1. */
static int
two_digits(const char *s)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* 1 when S is exactly YYYY-MM-DDTHH:MM:SSZ and a valid UTC time. */
static int
valid_expiration(const char *s)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
				     30, 31 };
	int y, mo, d, h, mi, se, dim;

	if (strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
	    s[13] != ':' || s[16] != ':' || s[19] != 'Z')
		return 0;
	if (two_digits(s) < 0 || two_digits(s + 2) < 0)
		return 0;
	y = two_digits(s) * 100 + two_digits(s + 2);
	mo = two_digits(s + 5);
	d = two_digits(s + 8);
	h = two_digits(s + 11);
	mi = two_digits(s + 14);
	se = two_digits(s + 17);
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 ||
	    mi < 0 || mi > 59 || se < 0 || se > 59)
		return 0;
	dim = mdays[mo - 1];
	if (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		dim = 29;
	return d <= dim;
}

pg_err
pg_creds_from_answer(const json_t *answer, const char *role, pg_creds *out,
		     char *err, size_t errlen)
{
	const json_t *creds, *r, *exp;
	const char *key;
	json_t *val;
	pg_creds c = { 0 };

	memset(out, 0, sizeof(*out));
	if (!json_is_object(answer)) {
		snprintf(err, errlen, "malformed answer from pmpgated: "
			 "not an object");
		return PG_EPROTO;
	}
	r = json_object_get(answer, "role");
	if (role != NULL && r != NULL &&
	    (!json_is_string(r) || strcmp(json_string_value(r), role) != 0)) {
		snprintf(err, errlen, "malformed answer from pmpgated: "
			 "credentials for another role");
		return PG_EPROTO;
	}
	creds = json_object_get(answer, "credentials");
	if (!json_is_object(creds)) {
		snprintf(err, errlen, "malformed answer from pmpgated: "
			 "no credentials");
		return PG_EPROTO;
	}
	json_object_foreach((json_t *)creds, key, val) {
		if (strcmp(key, "AccessKeyId") != 0 &&
		    strcmp(key, "SecretAccessKey") != 0 &&
		    strcmp(key, "SessionToken") != 0 &&
		    strcmp(key, "Expiration") != 0) {
			snprintf(err, errlen, "malformed answer from pmpgated: "
				 "unexpected member in credentials");
			return PG_EPROTO;
		}
	}
	c.access_key_id = cred_str(creds, "AccessKeyId", PG_CREDS_MAX_KEY_ID,
				   'k');
	c.secret_access_key = cred_str(creds, "SecretAccessKey",
				       PG_CREDS_MAX_SECRET, 's');
	c.session_token = cred_str(creds, "SessionToken", PG_CREDS_MAX_TOKEN,
				   's');
	exp = json_object_get(creds, "Expiration");
	if (json_is_string(exp) &&
	    strlen(json_string_value(exp)) == json_string_length(exp) &&
	    valid_expiration(json_string_value(exp)))
		c.expiration = json_string_value(exp);
	if (c.access_key_id == NULL || c.secret_access_key == NULL ||
	    c.session_token == NULL) {
		snprintf(err, errlen, "malformed answer from pmpgated: "
			 "credentials missing or not well-formed");
		return PG_EPROTO;
	}
	if (c.expiration == NULL) {
		snprintf(err, errlen, "malformed answer from pmpgated: "
			 "Expiration is not YYYY-MM-DDTHH:MM:SSZ");
		return PG_EPROTO;
	}
	*out = c;
	return PG_OK;
}

/* ---- formatting ------------------------------------------------------------- */

size_t
pg_shell_quote(const char *s, char *out)
{
	size_t n = 0;

#define PUT(ch) do { if (out) out[n] = (ch); n++; } while (0)
	PUT('\'');
	for (; *s != '\0'; s++) {
		if (*s == '\'') {
			PUT('\'');
			PUT('\\');
			PUT('\'');
			PUT('\'');
		} else {
			PUT(*s);
		}
	}
	PUT('\'');
#undef PUT
	if (out)
		out[n] = '\0';
	return n;
}

/* Append S at OUT+*off when OUT is not NULL; advance *off either way. */
static void
emit(char *out, size_t *off, const char *s)
{
	size_t n = strlen(s);

	if (out)
		memcpy(out + *off, s, n);
	*off += n;
}

static void
emit_quoted(char *out, size_t *off, const char *s)
{
	*off += pg_shell_quote(s, out ? out + *off : NULL);
}

/* One pass of the env or ini format: measures (OUT NULL) or writes. */
static size_t
text_format(const pg_creds *c, pg_fmt fmt, const char *role, char *out)
{
	size_t off = 0;

	if (fmt == PG_FMT_ENV) {
		emit(out, &off, "export AWS_ACCESS_KEY_ID=");
		emit_quoted(out, &off, c->access_key_id);
		emit(out, &off, "\nexport AWS_SECRET_ACCESS_KEY=");
		emit_quoted(out, &off, c->secret_access_key);
		emit(out, &off, "\nexport AWS_SESSION_TOKEN=");
		emit_quoted(out, &off, c->session_token);
		emit(out, &off, "\nexport AWS_CREDENTIAL_EXPIRATION=");
		emit_quoted(out, &off, c->expiration);
		emit(out, &off, "\n");
	} else {
		emit(out, &off, "[");
		emit(out, &off, role);
		emit(out, &off, "]\naws_access_key_id = ");
		emit(out, &off, c->access_key_id);
		emit(out, &off, "\naws_secret_access_key = ");
		emit(out, &off, c->secret_access_key);
		emit(out, &off, "\naws_session_token = ");
		emit(out, &off, c->session_token);
		emit(out, &off, "\n");
	}
	return off;
}

/* Wipe the string values of OBJ in place (Jansson's own copies). */
static void
wipe_strings(json_t *obj)
{
	const char *key;
	json_t *val;

	json_object_foreach(obj, key, val)
		if (json_is_string(val))
			explicit_bzero((char *)json_string_value(val),
				       json_string_length(val));
}

static char *
process_format(const pg_creds *c, size_t *len)
{
	const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
	json_t *o;
	char *buf = NULL;
	size_t need = 0;

	o = json_pack("{s:i,s:s,s:s,s:s,s:s}", "Version", 1,
		      "AccessKeyId", c->access_key_id,
		      "SecretAccessKey", c->secret_access_key,
		      "SessionToken", c->session_token,
		      "Expiration", c->expiration);
	if (o == NULL)
		goto out;
	need = json_dumpb(o, NULL, 0, flags);
	if (need == 0)
		goto out;
	buf = malloc(need + 2);
	if (buf == NULL)
		goto out;
	if (json_dumpb(o, buf, need, flags) != need) {
		pg_wipe_free(buf, need + 2);
		buf = NULL;
		goto out;
	}
	buf[need] = '\n';
	buf[need + 1] = '\0';
	*len = need + 1;
out:
	if (o != NULL) {
		wipe_strings(o);
		json_decref(o);
	}
	return buf;
}

char *
pg_format_creds(const pg_creds *c, pg_fmt fmt, const char *role, size_t *len)
{
	char *buf;
	size_t n;

	*len = 0;
	if (c == NULL || c->access_key_id == NULL ||
	    c->secret_access_key == NULL || c->session_token == NULL ||
	    c->expiration == NULL)
		return NULL;
	switch (fmt) {
	case PG_FMT_PROCESS:
		return process_format(c, len);
	case PG_FMT_ENV:
		break;
	case PG_FMT_INI:
		if (!pg_proto_role_valid(role))
			return NULL;
		break;
	default:
		return NULL;
	}
	n = text_format(c, fmt, role, NULL);
	buf = malloc(n + 1);
	if (buf == NULL)
		return NULL;
	text_format(c, fmt, role, buf);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* ---- untrusted text ----------------------------------------------------------- */

/* Decode one UTF-8 character at S (N bytes available); its length, or 0
 * when the bytes are not valid UTF-8 (overlong, surrogate, > U+10FFFF). */
static size_t
utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		c = s[0] & 0x1f;
		min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		c = s[0] & 0x0f;
		min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		c = s[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

static bool
unsafe_cp(uint32_t c)
{
	return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x061c ||
	       c == 0x200e || c == 0x200f || (c >= 0x202a && c <= 0x202e) ||
	       (c >= 0x2066 && c <= 0x2069);
}

void
pg_sanitize_text(const char *s, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, used = 0, mark = 0;

	if (outlen == 0)
		return;
	if (s == NULL) {
		out[0] = '\0';
		return;
	}
	n = strlen(s);
	while (n > 0) {
		uint32_t cp = 0;
		size_t clen = utf8_char(p, n, &cp);
		size_t olen = (clen == 0 || unsafe_cp(cp)) ? 1 : clen;

		if (used + olen > outlen - 1) {
			/* Cut: end with "..." where it fits. */
			if (outlen > 3) {
				used = mark;
				memcpy(out + used, "...", 3);
				used += 3;
			}
			break;
		}
		if (olen == 1 && (clen != 1 || unsafe_cp(cp)))
			out[used] = '?';
		else
			memcpy(out + used, p, olen);
		used += olen;
		if (used + 3 <= outlen - 1)
			mark = used;
		if (clen == 0)
			clen = 1;
		p += clen;
		n -= clen;
	}
	out[used] = '\0';
}

/* The members every answer carries (proto.h), not part of its content. */
static bool
is_envelope(const char *key)
{
	return strcmp(key, "v") == 0 || strcmp(key, "status") == 0 ||
	       strcmp(key, "rules") == 0 || strcmp(key, "reason") == 0 ||
	       strcmp(key, "exit") == 0;
}

char *
pg_format_kv(const json_t *obj)
{
	char *text = NULL, kbuf[128], vbuf[1025];
	size_t size = 0;
	const char *key;
	json_t *val;
	FILE *f = NULL;
	bool ok = true;

	if (!json_is_object(obj))
		return NULL;
	f = open_memstream(&text, &size);
	if (f == NULL)
		return NULL;
	json_object_foreach((json_t *)obj, key, val) {
		if (is_envelope(key))
			continue;
		pg_sanitize_text(key, kbuf, sizeof(kbuf));
		if (json_is_string(val)) {
			pg_sanitize_text(json_string_value(val), vbuf,
					 sizeof(vbuf));
		} else {
			const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY |
					     JSON_PRESERVE_ORDER;
			size_t need = json_dumpb(val, NULL, 0, flags);
			char *j = need ? malloc(need + 1) : NULL;

			if (j == NULL || json_dumpb(val, j, need, flags) != need) {
				free(j);
				ok = false;
				break;
			}
			j[need] = '\0';
			pg_sanitize_text(j, vbuf, sizeof(vbuf));
			free(j);
		}
		if (fprintf(f, "%s: %s\n", kbuf, vbuf) < 0)
			ok = false;
	}
	if (fclose(f) != 0)
		ok = false;
	if (!ok) {
		free(text);
		text = NULL;
	}
	return text;
}

/* ---- wiping ----------------------------------------------------------------- */

void
pg_wipe_free(void *p, size_t len)
{
	if (p == NULL)
		return;
	explicit_bzero(p, len);
	free(p);
}

/* Each Jansson block carries its size in a header so free can wipe it. */
#define WIPE_HDR (alignof(max_align_t) > sizeof(size_t) ? \
		  alignof(max_align_t) : sizeof(size_t))

static void *
wipe_malloc(size_t n)
{
	unsigned char *p;

	if (n > SIZE_MAX - WIPE_HDR)
		return NULL;
	p = malloc(n + WIPE_HDR);
	if (p == NULL)
		return NULL;
	memcpy(p, &n, sizeof(n));
	return p + WIPE_HDR;
}

static void
wipe_free(void *q)
{
	unsigned char *p;
	size_t n;

	if (q == NULL)
		return;
	p = (unsigned char *)q - WIPE_HDR;
	memcpy(&n, p, sizeof(n));
	explicit_bzero(p, n + WIPE_HDR);
	free(p);
}

void
pg_json_wipe_on_free(void)
{
	json_set_alloc_funcs(wipe_malloc, wipe_free);
}

int
pg_write_fd(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

pg_err
pg_client_timeout(int *ms)
{
	const char *t = getenv("PMPGATE_TIMEOUT");
	long s = 0;

	*ms = PG_CLIENT_TIMEOUT_DEFAULT_S * 1000;
	if (t == NULL || *t == '\0')
		return PG_OK;
	for (const char *p = t; *p; p++) {
		if (*p < '0' || *p > '9')
			return PG_EUSAGE;
		s = s * 10 + (*p - '0');
		if (s > PG_CLIENT_TIMEOUT_MAX_S)
			return PG_EUSAGE;
	}
	if (s < 1)
		return PG_EUSAGE;
	*ms = (int)s * 1000;
	return PG_OK;
}
