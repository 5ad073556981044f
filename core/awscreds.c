/*
 * awscreds.c - the daemon's base AWS credentials; see awscreds.h.
 *
 * The shared-credentials file is opened with O_NOFOLLOW, checked on the
 * descriptor as a secret file, read whole into a buffer that is wiped
 * before it is freed, and parsed as INI:
 *
 *   [profile-name]
 *   aws_access_key_id = AKIA...
 *   aws_secret_access_key = ...
 *   aws_session_token = ...        (optional)
 *
 * Blank lines and lines starting with '#' or ';' are ignored, other keys
 * (region, output...) are ignored, a key outside any section, a line that
 * is neither a section nor "key = value", a key given twice in the chosen
 * profile and a missing profile or key are errors.  Messages name the file
 * and line, never a value.
 *
 * The instance profile is read through IMDSv2 with one private libcurl
 * easy handle per refresh (the three requests share its connection; it is
 * not part of the daemon's connection share, so nothing of IMDS outlives
 * the refresh).  Each response lands in a size-bounded buffer that is wiped
 * before it is freed; the IMDS token and its header line are wiped too.
 */
#include "awscreds.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "secret.h"
#include "timefmt.h"

#ifndef PG_VERSION
#define PG_VERSION "0"
#endif

static char *
dup_secret(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void
free_str(char **s)
{
	if (*s) {
		OPENSSL_cleanse(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

void
pg_aws_creds_wipe(pg_aws_creds *c)
{
	if (!c)
		return;
	free_str(&c->access_key_id);
	free_str(&c->secret_access_key);
	free_str(&c->session_token);
	OPENSSL_cleanse(c, sizeof(*c));
}

static int
is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Trim [*b, *e) of blanks in place. */
static void
trim(const char **b, const char **e)
{
	while (*b < *e && is_blank(**b))
		(*b)++;
	while (*e > *b && is_blank((*e)[-1]))
		(*e)--;
}

static int
span_eq(const char *b, const char *e, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(e - b) == n && memcmp(b, s, n) == 0;
}

/* Read the whole open descriptor (at most PG_SECRET_MAX bytes). */
static pg_err
read_all(int fd, const char *path, char **out, size_t *outlen, char *err,
	 size_t errlen)
{
	pg_err rc = PG_ECONFIG;
	size_t cap = PG_SECRET_MAX + 1, len = 0;
	char *buf = malloc(cap + 1);
	ssize_t n;

	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		return PG_ENOMEM;
	}
	for (;;) {
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "%s: read: %s", path,
				 strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > PG_SECRET_MAX) {
			snprintf(err, errlen, "%s: larger than %d bytes", path,
				 PG_SECRET_MAX);
			goto out;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	buf = NULL;
	rc = PG_OK;
out:
	if (buf) {
		OPENSSL_cleanse(buf, cap + 1);
		free(buf);
	}
	return rc;
}

static pg_err
parse_ini(const char *path, const char *buf, size_t len, const char *profile,
	  pg_aws_creds *out, char *err, size_t errlen)
{
	const char *p = buf, *end = buf + len;
	const char *nl, *b, *e, *eq, *kb, *ke, *vb, *ve;
	int line = 0, in_section = 0, in_profile = 0, found = 0;
	char **slot;

	if (memchr(buf, '\0', len)) {
		snprintf(err, errlen, "%s: contains a NUL byte", path);
		return PG_ECONFIG;
	}
	while (p < end) {
		line++;
		nl = memchr(p, '\n', (size_t)(end - p));
		b = p;
		e = nl ? nl : end;
		p = nl ? nl + 1 : end;
		trim(&b, &e);
		if (b == e || *b == '#' || *b == ';')
			continue;
		if (*b == '[') {
			if (e[-1] != ']' || e - b < 3) {
				snprintf(err, errlen, "%s:%d: bad section line",
					 path, line);
				return PG_ECONFIG;
			}
			kb = b + 1;
			ke = e - 1;
			trim(&kb, &ke);
			in_section = 1;
			in_profile = span_eq(kb, ke, profile);
			if (in_profile) {
				if (found) {
					snprintf(err, errlen,
						 "%s:%d: profile [%s] given twice",
						 path, line, profile);
					return PG_ECONFIG;
				}
				found = 1;
			}
			continue;
		}
		eq = memchr(b, '=', (size_t)(e - b));
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected \"key = value\"",
				 path, line);
			return PG_ECONFIG;
		}
		if (!in_section) {
			snprintf(err, errlen, "%s:%d: key outside a section",
				 path, line);
			return PG_ECONFIG;
		}
		if (!in_profile)
			continue;
		kb = b;
		ke = eq;
		vb = eq + 1;
		ve = e;
		trim(&kb, &ke);
		trim(&vb, &ve);
		if (span_eq(kb, ke, "aws_access_key_id"))
			slot = &out->access_key_id;
		else if (span_eq(kb, ke, "aws_secret_access_key"))
			slot = &out->secret_access_key;
		else if (span_eq(kb, ke, "aws_session_token"))
			slot = &out->session_token;
		else
			continue;
		if (*slot) {
			snprintf(err, errlen, "%s:%d: key given twice", path,
				 line);
			return PG_ECONFIG;
		}
		if (vb == ve) {
			snprintf(err, errlen, "%s:%d: empty value", path, line);
			return PG_ECONFIG;
		}
		*slot = dup_secret(vb, (size_t)(ve - vb));
		if (!*slot) {
			snprintf(err, errlen, "%s: out of memory", path);
			return PG_ENOMEM;
		}
	}
	if (!found) {
		snprintf(err, errlen, "%s:0: no profile [%s]", path, profile);
		return PG_ECONFIG;
	}
	if (!out->access_key_id) {
		snprintf(err, errlen,
			 "%s:0: profile [%s] has no aws_access_key_id", path,
			 profile);
		return PG_ECONFIG;
	}
	if (!out->secret_access_key) {
		snprintf(err, errlen,
			 "%s:0: profile [%s] has no aws_secret_access_key",
			 path, profile);
		return PG_ECONFIG;
	}
	return PG_OK;
}

static pg_err
load_file(const char *path, const char *profile, pg_aws_creds *out, char *err,
	  size_t errlen)
{
	pg_err rc;
	char *buf = NULL;
	size_t len = 0;
	int fd;

	/* O_NONBLOCK: a FIFO must not hang the open; it is refused below. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
			O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(err, errlen,
				 "%s: is a symbolic link (refused for a secret "
				 "file)", path);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return PG_ECONFIG;
	}
	rc = pg_check_fd_perms(fd, path, 1, err, errlen);
	if (rc != PG_OK)
		goto out;
	rc = read_all(fd, path, &buf, &len, err, errlen);
	if (rc != PG_OK)
		goto out;
	rc = parse_ini(path, buf, len, profile, out, err, errlen);
out:
	if (buf) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	close(fd);
	return rc;
}

static pg_err
env_dup(const char *name, int required, char **slot, char *err, size_t errlen)
{
	const char *v = getenv(name);

	if (!v || !*v) {
		if (!required)
			return PG_OK;
		snprintf(err, errlen, "credentials = env: %s is not set", name);
		return PG_ECONFIG;
	}
	*slot = dup_secret(v, strlen(v));
	if (!*slot) {
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	return PG_OK;
}

static pg_err
load_env(pg_aws_creds *out, char *err, size_t errlen)
{
	pg_err rc;

	rc = env_dup("AWS_ACCESS_KEY_ID", 1, &out->access_key_id, err, errlen);
	if (rc == PG_OK)
		rc = env_dup("AWS_SECRET_ACCESS_KEY", 1,
			     &out->secret_access_key, err, errlen);
	if (rc == PG_OK)
		rc = env_dup("AWS_SESSION_TOKEN", 0, &out->session_token, err,
			     errlen);
	return rc;
}

/* ---- instance profile: IMDSv2 --------------------------------------------- */

#define IMDS_TOKEN_TTL_S "60"	/* used at once for two GETs, then wiped */
#define IMDS_TOKEN_MAX 1024
#define IMDS_SECRET_MAX 1024
#define IMDS_TOKEN_HDR "X-aws-ec2-metadata-token: "
#define IMDS_TOKEN_PATH "/latest/api/token"
#define IMDS_CREDS_PATH "/latest/meta-data/iam/security-credentials/"

static int
is_role_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("+=,.@_-", ch) != NULL);
}

static int
is_alnum_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9');
}

/* Printable ASCII without blanks (what may go into a header line). */
static int
is_token_text(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return 0;
	return n > 0;
}

/* Untrusted, non-secret text (Code, Message) shown in a message:
 * printable ASCII only, at most outlen - 1 bytes. */
static void
shown_text(const char *s, size_t n, char *out, size_t outlen)
{
	size_t i, j = 0;

	for (i = 0; i < n && j + 1 < outlen; i++)
		out[j++] = ((unsigned char)s[i] >= 0x20 &&
			    (unsigned char)s[i] <= 0x7e) ? s[i] : '?';
	out[j] = '\0';
}

pg_err
pg_imds_parse_role(const char *body, size_t len, char *role, size_t rolelen,
		   char *err, size_t errlen)
{
	const char *nl;
	size_t n, i;

	if (role && rolelen > 0)
		role[0] = '\0';
	if (!body || !role || rolelen <= PG_IMDS_ROLE_MAX) {
		snprintf(err, errlen, "instance metadata: invalid role buffer");
		return PG_EINTERNAL;
	}
	if (len > PG_IMDS_LIST_MAX) {
		snprintf(err, errlen, "instance metadata: the role listing is "
			 "larger than %d bytes", PG_IMDS_LIST_MAX);
		return PG_EPROTO;
	}
	nl = memchr(body, '\n', len);
	n = nl ? (size_t)(nl - body) : len;
	if (n > 0 && body[n - 1] == '\r')
		n--;
	if (n == 0) {
		snprintf(err, errlen, "instance metadata: the role listing "
			 "names no role (no IAM role attached to the instance "
			 "profile?)");
		return PG_EPROTO;
	}
	if (n > PG_IMDS_ROLE_MAX) {
		snprintf(err, errlen, "instance metadata: the role listing's "
			 "first line is longer than an IAM role name (%d "
			 "characters)", PG_IMDS_ROLE_MAX);
		return PG_EPROTO;
	}
	for (i = 0; i < n; i++) {
		if (!is_role_char(body[i])) {
			snprintf(err, errlen, "instance metadata: the role "
				 "listing's first line is not an IAM role name "
				 "([A-Za-z0-9+=,.@_-])");
			return PG_EPROTO;
		}
	}
	memcpy(role, body, n);
	role[n] = '\0';
	return PG_OK;
}

/* OBJ's member NAME, a non-empty string without NUL: *s and *n. */
static pg_err
json_text(json_t *obj, const char *name, const char **s, size_t *n,
	  char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, name);

	if (!v) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer has no %s", name);
		return PG_EPROTO;
	}
	if (!json_is_string(v)) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer's %s is not a string", name);
		return PG_EPROTO;
	}
	*s = json_string_value(v);
	*n = json_string_length(v);
	if (*n == 0 || memchr(*s, '\0', *n) != NULL) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer's %s is %s", name, *n == 0 ? "empty" :
			 "not text");
		return PG_EPROTO;
	}
	return PG_OK;
}

pg_err
pg_imds_parse_creds(const char *body, size_t len, int64_t now,
		    pg_aws_creds *out, char *err, size_t errlen)
{
	pg_err rc = PG_EPROTO;
	json_t *root = NULL, *msg;
	json_error_t jerr;
	const char *code, *kid, *sec, *tok, *exp;
	size_t ncode, nkid, nsec, ntok, nexp, i;
	char shown[64], shown_msg[160], when[32];
	int64_t expiration = 0;

	if (!out)
		return PG_EINTERNAL;
	memset(out, 0, sizeof(*out));
	if (!body) {
		snprintf(err, errlen, "instance metadata: no credentials answer");
		return PG_EINTERNAL;
	}
	if (len > PG_IMDS_CREDS_MAX) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer is larger than %d bytes", PG_IMDS_CREDS_MAX);
		goto out;
	}
	/* Not jerr.text: it may quote a fragment of a secret. */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer is not one JSON object (line %d, column %d)",
			 jerr.line, jerr.column);
		goto out;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer is not a JSON object");
		goto out;
	}
	if ((rc = json_text(root, "Code", &code, &ncode, err, errlen)) != PG_OK)
		goto out;
	rc = PG_EPROTO;
	if (ncode != 7 || memcmp(code, "Success", 7) != 0) {
		shown_text(code, ncode, shown, sizeof(shown));
		msg = json_object_get(root, "Message");
		if (json_is_string(msg))
			shown_text(json_string_value(msg),
				   json_string_length(msg), shown_msg,
				   sizeof(shown_msg));
		else
			shown_msg[0] = '\0';
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer has Code \"%s\", not \"Success\"%s%s", shown,
			 shown_msg[0] ? ": " : "", shown_msg);
		goto out;
	}
	if ((rc = json_text(root, "AccessKeyId", &kid, &nkid, err,
			    errlen)) != PG_OK ||
	    (rc = json_text(root, "SecretAccessKey", &sec, &nsec, err,
			    errlen)) != PG_OK ||
	    (rc = json_text(root, "Token", &tok, &ntok, err, errlen)) != PG_OK ||
	    (rc = json_text(root, "Expiration", &exp, &nexp, err,
			    errlen)) != PG_OK)
		goto out;
	rc = PG_EPROTO;
	for (i = 0; i < nkid && is_alnum_char(kid[i]); i++)
		;
	if (i != nkid || nkid < 16 || nkid > 128) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer's AccessKeyId is not an access key id (16 to "
			 "128 letters and digits)");
		goto out;
	}
	if (!is_token_text(sec, nsec) || nsec > IMDS_SECRET_MAX) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer's SecretAccessKey is not a secret key "
			 "(printable, no blanks, at most %d bytes)",
			 IMDS_SECRET_MAX);
		goto out;
	}
	if (!is_token_text(tok, ntok)) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer's Token is not a session token (printable, "
			 "no blanks)");
		goto out;
	}
	if (pg_time_parse(exp, &expiration) != PG_OK) {
		snprintf(err, errlen, "instance metadata: the credentials "
			 "answer's Expiration is not an RFC 3339 time");
		goto out;
	}
	if (expiration <= now + PG_IMDS_MIN_VALIDITY_S) {
		pg_time_format(expiration, when, sizeof(when));
		snprintf(err, errlen, "instance metadata: the credentials "
			 "expire%s at %s, less than %d s from now",
			 expiration <= now ? "d" : "", when,
			 PG_IMDS_MIN_VALIDITY_S);
		goto out;
	}
	out->access_key_id = dup_secret(kid, nkid);
	out->secret_access_key = dup_secret(sec, nsec);
	out->session_token = dup_secret(tok, ntok);
	if (!out->access_key_id || !out->secret_access_key ||
	    !out->session_token) {
		snprintf(err, errlen, "instance metadata: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	out->expiration = expiration;
	rc = PG_OK;
out:
	json_decref(root);
	if (rc != PG_OK)
		pg_aws_creds_wipe(out);
	return rc;
}

/* A size-bounded response buffer, allocated once, wiped before free. */
typedef struct imds_buf {
	char *buf;
	size_t len;
	size_t max;
	int overflow;
	int oom;
} imds_buf;

static void
imds_buf_free(imds_buf *b)
{
	if (b->buf) {
		OPENSSL_cleanse(b->buf, b->max + 1);
		free(b->buf);
	}
	b->buf = NULL;
	b->len = 0;
	b->overflow = 0;
	b->oom = 0;
}

static size_t
imds_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	imds_buf *b = ud;
	size_t n = size * nmemb;

	if (n == 0)
		return 0;
	if (n > b->max || b->len > b->max - n) {
		b->overflow = 1;
		return 0;	/* aborts the transfer */
	}
	if (!b->buf) {
		b->buf = malloc(b->max + 1);
		if (!b->buf) {
			b->oom = 1;
			return 0;
		}
	}
	memcpy(b->buf + b->len, ptr, n);
	b->len += n;
	b->buf[b->len] = '\0';
	return n;
}

/* The token PUT has an empty body. */
static size_t
imds_read_none(char *buf, size_t size, size_t nitems, void *ud)
{
	(void)buf;
	(void)size;
	(void)nitems;
	(void)ud;
	return 0;
}

#define IMDS_SETOPT(opt, val)						\
	do {								\
		if (curl_easy_setopt(c, (opt), (val)) != CURLE_OK) {	\
			snprintf(err, errlen, "instance metadata: "	\
				 "cannot set " #opt);			\
			rc = PG_EINTERNAL;				\
			goto out;					\
		}							\
	} while (0)

/*
 * One request to URL: a PUT with an empty body when PUT, else a GET, with
 * the header line HEADER (may be a secret).  PG_OK when an HTTP answer
 * arrived (*status, body in RESP); STEP and ENDPOINT name it in messages.
 */
static pg_err
imds_request(CURL *c, const char *endpoint, const char *url, int put,
	     const char *header, const char *step, pg_deadline dl,
	     imds_buf *resp, long *status, char *err, size_t errlen)
{
	pg_err rc = PG_EINTERNAL;
	struct curl_slist *hdrs = NULL, *tmp;
	char errbuf[CURL_ERROR_SIZE];
	int64_t left = pg_deadline_left(dl);
	CURLcode cc;

	*status = 0;
	errbuf[0] = '\0';
	if (left <= 0) {
		snprintf(err, errlen, "instance metadata %s: %s: the deadline "
			 "passed", endpoint, step);
		return PG_ETIMEOUT;
	}
	curl_easy_reset(c);
	IMDS_SETOPT(CURLOPT_URL, url);
	IMDS_SETOPT(CURLOPT_PROTOCOLS_STR, "http");
	IMDS_SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http");
	IMDS_SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	/* Never through a proxy, whatever the environment says. */
	IMDS_SETOPT(CURLOPT_PROXY, "");
	IMDS_SETOPT(CURLOPT_NOPROXY, "*");
	IMDS_SETOPT(CURLOPT_NOSIGNAL, 1L);
	IMDS_SETOPT(CURLOPT_TIMEOUT_MS, (long)left);
	IMDS_SETOPT(CURLOPT_CONNECTTIMEOUT_MS,
		    left < PG_IMDS_CONNECT_TIMEOUT_MS ? (long)left :
		    (long)PG_IMDS_CONNECT_TIMEOUT_MS);
	IMDS_SETOPT(CURLOPT_ERRORBUFFER, errbuf);
	IMDS_SETOPT(CURLOPT_WRITEFUNCTION, imds_write);
	IMDS_SETOPT(CURLOPT_WRITEDATA, resp);
	IMDS_SETOPT(CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
	IMDS_SETOPT(CURLOPT_USERAGENT, "pmpgate/" PG_VERSION);
	if (put) {
		IMDS_SETOPT(CURLOPT_UPLOAD, 1L);
		IMDS_SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)0);
		IMDS_SETOPT(CURLOPT_READFUNCTION, imds_read_none);
	} else {
		IMDS_SETOPT(CURLOPT_HTTPGET, 1L);
	}
	tmp = curl_slist_append(hdrs, header);
	if (tmp)
		hdrs = tmp;
	if (tmp)
		tmp = curl_slist_append(hdrs, "Expect:");
	if (!tmp) {
		snprintf(err, errlen, "instance metadata: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	hdrs = tmp;
	IMDS_SETOPT(CURLOPT_HTTPHEADER, hdrs);

	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (resp->overflow) {
		snprintf(err, errlen, "instance metadata %s: %s: the answer is "
			 "larger than %zu bytes", endpoint, step, resp->max);
		rc = PG_EPROTO;
		goto out;
	}
	if (resp->oom) {
		snprintf(err, errlen, "instance metadata: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "instance metadata %s did not answer: %s: "
			 "%s", endpoint, step,
			 errbuf[0] ? errbuf : curl_easy_strerror(cc));
		rc = PG_EUNAVAIL;
		goto out;
	}
	rc = PG_OK;
out:
	/* Nothing of the request (the token header) stays with the handle. */
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
	curl_easy_reset(c);
	for (tmp = hdrs; tmp; tmp = tmp->next)
		OPENSSL_cleanse(tmp->data, strlen(tmp->data));
	curl_slist_free_all(hdrs);
	return rc;
}

#undef IMDS_SETOPT

/* "ENDPOINT" PATH [ROLE] as a new string. */
static char *
imds_url(const char *endpoint, const char *path, const char *role)
{
	size_t n = strlen(endpoint) + strlen(path) + (role ? strlen(role) : 0)
		   + 1;
	char *u = malloc(n);

	if (u)
		snprintf(u, n, "%s%s%s", endpoint, path, role ? role : "");
	return u;
}

/* The three IMDSv2 requests; *out holds new credentials on PG_OK. */
static pg_err
imds_fetch(const char *endpoint, pg_deadline dl, pg_aws_creds *out,
	   char *err, size_t errlen)
{
	pg_err rc = PG_ENOMEM;
	CURL *c = NULL;
	imds_buf tok = { .max = IMDS_TOKEN_MAX };
	imds_buf list = { .max = PG_IMDS_LIST_MAX };
	imds_buf cred = { .max = PG_IMDS_CREDS_MAX };
	char *url = NULL, *hdr = NULL;
	size_t hdr_cap = 0;
	char role[PG_IMDS_ROLE_MAX + 1], step[PG_IMDS_ROLE_MAX + 64];
	long status = 0;

	memset(out, 0, sizeof(*out));
	c = curl_easy_init();
	if (!c) {
		snprintf(err, errlen, "instance metadata: cannot start libcurl");
		rc = PG_EINTERNAL;
		goto out;
	}

	/* 1. The session token. */
	url = imds_url(endpoint, IMDS_TOKEN_PATH, NULL);
	if (!url) {
		snprintf(err, errlen, "instance metadata: out of memory");
		goto out;
	}
	rc = imds_request(c, endpoint, url, 1,
			  "X-aws-ec2-metadata-token-ttl-seconds: "
			  IMDS_TOKEN_TTL_S, "token (PUT " IMDS_TOKEN_PATH ")",
			  dl, &tok, &status, err, errlen);
	if (rc != PG_OK)
		goto out;
	if (status != 200) {
		snprintf(err, errlen, "instance metadata %s: token (PUT "
			 IMDS_TOKEN_PATH "): HTTP %ld", endpoint, status);
		rc = PG_EUNAVAIL;
		goto out;
	}
	if (!tok.buf || !is_token_text(tok.buf, tok.len)) {
		snprintf(err, errlen, "instance metadata %s: token (PUT "
			 IMDS_TOKEN_PATH "): the answer is not a token",
			 endpoint);
		rc = PG_EPROTO;
		goto out;
	}
	hdr_cap = sizeof(IMDS_TOKEN_HDR) + tok.len;
	hdr = malloc(hdr_cap);
	if (!hdr) {
		snprintf(err, errlen, "instance metadata: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	snprintf(hdr, hdr_cap, IMDS_TOKEN_HDR "%s", tok.buf);

	/* 2. The instance profile's role. */
	free(url);
	url = imds_url(endpoint, IMDS_CREDS_PATH, NULL);
	if (!url) {
		snprintf(err, errlen, "instance metadata: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	rc = imds_request(c, endpoint, url, 0, hdr,
			  "role name (GET " IMDS_CREDS_PATH ")", dl, &list,
			  &status, err, errlen);
	if (rc != PG_OK)
		goto out;
	if (status != 200) {
		snprintf(err, errlen, "instance metadata %s: role name (GET "
			 IMDS_CREDS_PATH "): HTTP %ld%s", endpoint, status,
			 status == 404 ? " (no IAM role is attached to this "
			 "instance)" : "");
		rc = PG_EUNAVAIL;
		goto out;
	}
	rc = pg_imds_parse_role(list.buf ? list.buf : "", list.len, role,
				sizeof(role), err, errlen);
	if (rc != PG_OK)
		goto out;

	/* 3. Its credentials. */
	free(url);
	url = imds_url(endpoint, IMDS_CREDS_PATH, role);
	if (!url) {
		snprintf(err, errlen, "instance metadata: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	snprintf(step, sizeof(step), "credentials (GET " IMDS_CREDS_PATH "%s)",
		 role);
	rc = imds_request(c, endpoint, url, 0, hdr, step, dl, &cred, &status,
			  err, errlen);
	if (rc != PG_OK)
		goto out;
	if (status != 200) {
		snprintf(err, errlen, "instance metadata %s: %s: HTTP %ld",
			 endpoint, step, status);
		rc = PG_EUNAVAIL;
		goto out;
	}
	rc = pg_imds_parse_creds(cred.buf ? cred.buf : "", cred.len,
				 (int64_t)time(NULL), out, err, errlen);
out:
	if (c)
		curl_easy_cleanup(c);
	if (hdr) {
		OPENSSL_cleanse(hdr, hdr_cap);
		free(hdr);
	}
	free(url);
	imds_buf_free(&tok);
	imds_buf_free(&list);
	imds_buf_free(&cred);
	if (rc != PG_OK)
		pg_aws_creds_wipe(out);
	return rc;
}

/* The process-wide cache of instance-profile credentials. */
static pthread_mutex_t imds_mu = PTHREAD_MUTEX_INITIALIZER;
static pg_aws_creds imds_cached;	/* under imds_mu */
static char *imds_cached_endpoint;	/* under imds_mu */

static void
imds_cache_clear_locked(void)
{
	pg_aws_creds_wipe(&imds_cached);
	free(imds_cached_endpoint);
	imds_cached_endpoint = NULL;
}

void
pg_aws_creds_cache_clear(void)
{
	pthread_mutex_lock(&imds_mu);
	imds_cache_clear_locked();
	pthread_mutex_unlock(&imds_mu);
}

static pg_err
copy_creds(const pg_aws_creds *src, pg_aws_creds *dst, char *err,
	   size_t errlen)
{
	memset(dst, 0, sizeof(*dst));
	dst->access_key_id = dup_secret(src->access_key_id,
					strlen(src->access_key_id));
	dst->secret_access_key = dup_secret(src->secret_access_key,
					    strlen(src->secret_access_key));
	if (src->session_token)
		dst->session_token = dup_secret(src->session_token,
						strlen(src->session_token));
	if (!dst->access_key_id || !dst->secret_access_key ||
	    (src->session_token && !dst->session_token)) {
		pg_aws_creds_wipe(dst);
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	dst->expiration = src->expiration;
	return PG_OK;
}

/* Wait for the cache until DL (another worker may be refreshing it). */
static pg_err
imds_lock(pg_deadline dl, char *err, size_t errlen)
{
	struct timespec ts;
	int64_t left = pg_deadline_left(dl);
	int e;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(left / 1000);
	ts.tv_nsec += (long)(left % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	e = pthread_mutex_timedlock(&imds_mu, &ts);
	if (e == 0)
		return PG_OK;
	snprintf(err, errlen, "instance metadata: %s while another request "
		 "refreshed the credentials", e == ETIMEDOUT ?
		 "the deadline passed" : strerror(e));
	return e == ETIMEDOUT ? PG_ETIMEOUT : PG_EINTERNAL;
}

static pg_err
load_instance_profile(const pg_config *cfg, pg_deadline dl,
		      pg_aws_creds *out, char *err, size_t errlen)
{
	const char *endpoint = cfg->aws.metadata_endpoint &&
			       *cfg->aws.metadata_endpoint ?
			       cfg->aws.metadata_endpoint :
			       PG_IMDS_DEFAULT_ENDPOINT;
	pg_deadline fetch_dl;
	pg_aws_creds fresh = { 0 };
	int64_t now;
	pg_err rc;

	rc = imds_lock(dl, err, errlen);
	if (rc != PG_OK)
		return rc;
	now = (int64_t)time(NULL);
	if (imds_cached.access_key_id && imds_cached_endpoint &&
	    strcmp(imds_cached_endpoint, endpoint) == 0 &&
	    imds_cached.expiration - now > PG_IMDS_REFRESH_S) {
		rc = copy_creds(&imds_cached, out, err, errlen);
		goto out;
	}
	/* Stale, absent or from another endpoint: fetch; never fall back. */
	imds_cache_clear_locked();
	fetch_dl = pg_deadline_in(PG_IMDS_TIMEOUT_MS);
	if (dl < fetch_dl)
		fetch_dl = dl;
	rc = imds_fetch(endpoint, fetch_dl, &fresh, err, errlen);
	if (rc != PG_OK)
		goto out;
	imds_cached_endpoint = strdup(endpoint);
	if (!imds_cached_endpoint) {
		snprintf(err, errlen, "out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	imds_cached = fresh;
	memset(&fresh, 0, sizeof(fresh));
	rc = copy_creds(&imds_cached, out, err, errlen);
out:
	if (rc != PG_OK)
		imds_cache_clear_locked();
	pg_aws_creds_wipe(&fresh);
	pthread_mutex_unlock(&imds_mu);
	return rc;
}

pg_err
pg_aws_creds_load(const pg_config *cfg, pg_aws_creds *out, char *err,
		  size_t errlen)
{
	return pg_aws_creds_load_by(cfg, pg_deadline_in(PG_IMDS_TIMEOUT_MS),
				    out, err, errlen);
}

pg_err
pg_aws_creds_load_by(const pg_config *cfg, pg_deadline dl, pg_aws_creds *out,
		     char *err, size_t errlen)
{
	pg_err rc = PG_ECONFIG;
	const char *profile;

	if (!out)
		return PG_EINTERNAL;
	memset(out, 0, sizeof(*out));
	if (!cfg) {
		snprintf(err, errlen, "no configuration");
		return PG_EINTERNAL;
	}
	switch (cfg->aws.credentials) {
	case PG_CREDS_FILE:
		if (!cfg->aws.credentials_path || !*cfg->aws.credentials_path) {
			snprintf(err, errlen,
				 "credentials = file: needs a path");
			goto out;
		}
		profile = cfg->aws.profile && *cfg->aws.profile
				  ? cfg->aws.profile
				  : "default";
		rc = load_file(cfg->aws.credentials_path, profile, out, err,
			       errlen);
		break;
	case PG_CREDS_ENV:
		rc = load_env(out, err, errlen);
		break;
	case PG_CREDS_INSTANCE_PROFILE:
		rc = load_instance_profile(cfg, dl, out, err, errlen);
		break;
	default:
		snprintf(err, errlen, "unknown credentials source");
		rc = PG_ECONFIG;
		break;
	}
out:
	if (rc != PG_OK)
		pg_aws_creds_wipe(out);
	return rc;
}
