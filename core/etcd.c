/*
 * etcd.c - a client for etcd v3's JSON gateway; see etcd.h.
 */
#include "etcd.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "secret.h"

/* Idle HTTP handles kept for reuse (more may exist while busy). */
#define POOL_MAX 16
/* Smallest share of the time left that one endpoint gets while others
 * remain to be tried. */
#define MIN_SHARE_MS 300
/* Rounds over all endpoints per call, and the pause before round N
 * (N * this): a leader election takes about one election timeout. */
#define PASSES 3
#define PASS_PAUSE_MS 150
/* Longest etcd token accepted. */
#define TOKEN_MAX 4096

/* gRPC status codes etcd answers with. */
enum {
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_UNAVAILABLE = 14,
	GRPC_UNAUTHENTICATED = 16,
};

struct pg_etcd {
	char **endpoints;	/* base URLs without a trailing '/' */
	size_t n;
	char *ca_file, *cert_file, *key_file;
	int allow_plaintext;
	char *user;		/* NULL: no password authentication */
	pg_secret password;
	int mu_ok;		/* mu was initialised */
	pthread_mutex_t mu;	/* guards everything below */
	size_t current;		/* the endpoint that answered last */
	char *token;		/* secret; NULL until authenticated */
	pg_http *pool[POOL_MAX];
	size_t npool;
};

/* ---- base64 and numbers ------------------------------------------------- */

char *
pg_etcd_b64enc(const void *p, size_t len)
{
	size_t n = 4 * ((len + 2) / 3) + 1;
	char *out;

	if (len > (size_t)INT32_MAX / 2 || (out = malloc(n)) == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, p, (int)len);
	return out;
}

static int
b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/';
}

pg_err
pg_etcd_b64dec(const char *s, char **out, size_t *len)
{
	size_t n, i, pad = 0;
	unsigned char *buf;
	int r;

	*out = NULL;
	*len = 0;
	if (s == NULL)
		return PG_EPROTO;
	n = strlen(s);
	if (n % 4 != 0 || n > (size_t)INT32_MAX / 2)
		return PG_EPROTO;
	if (n > 0 && s[n - 1] == '=')
		pad++;
	if (n > 1 && s[n - 2] == '=')
		pad++;
	for (i = 0; i < n - pad; i++)
		if (!b64_char((unsigned char)s[i]))
			return PG_EPROTO;
	if ((buf = malloc(n / 4 * 3 + 1)) == NULL)
		return PG_ENOMEM;
	r = n ? EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n) : 0;
	if (r < 0 || (size_t)r < pad) {
		free(buf);
		return PG_EPROTO;
	}
	*len = (size_t)r - pad;
	buf[*len] = '\0';
	*out = (char *)buf;
	return PG_OK;
}

int
pg_etcd_int(const json_t *j, int64_t *out)
{
	const char *s, *p;
	long long v;
	char *end;

	*out = 0;
	if (j == NULL)
		return 0;
	if (json_is_integer(j)) {
		*out = (int64_t)json_integer_value(j);
		return 0;
	}
	if (!json_is_string(j))
		return -1;
	s = json_string_value(j);
	p = s[0] == '-' ? s + 1 : s;
	if (*p < '0' || *p > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* ---- open / close --------------------------------------------------------- */

static char *
dup_or_null(const char *s, int *oom)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*oom = 1;
	return d;
}

/* KEY_FILE must be a file of ours that others cannot read (a secret). */
static pg_err
check_key_file(const char *path, char *err, size_t errlen)
{
	pg_err rc;
	int fd;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "[ledger] key_file %s: %s", path,
			 errno == ELOOP ? "is a symbolic link" :
			 strerror(errno));
		return PG_ECONFIG;
	}
	rc = pg_check_fd_perms(fd, path, 1, err, errlen);
	close(fd);
	return rc;
}

/* password_file: "user:password" (both non-empty). */
static pg_err
read_password(pg_etcd *e, const char *path, char *err, size_t errlen)
{
	pg_secret s = { 0 };
	const char *colon;
	pg_err rc;

	if ((rc = pg_secret_read_file(path, &s, err, errlen)) != PG_OK)
		return rc;
	colon = s.buf != NULL ? memchr(s.buf, ':', s.len) : NULL;
	if (colon == NULL || colon == s.buf || (size_t)(colon - s.buf) + 1 ==
	    s.len || memchr(s.buf, '\n', s.len) != NULL) {
		snprintf(err, errlen, "[ledger] password_file %s must hold "
			 "one line user:password", path);
		rc = PG_ECONFIG;
		goto out;
	}
	if ((e->user = strndup(s.buf, (size_t)(colon - s.buf))) == NULL ||
	    pg_secret_from(&e->password, colon + 1,
			   s.len - (size_t)(colon - s.buf) - 1) != PG_OK) {
		snprintf(err, errlen, "etcd: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	rc = PG_OK;
out:
	pg_secret_wipe(&s);
	return rc;
}

pg_err
pg_etcd_open(const pg_etcd_opts *o, pg_etcd **out, char *err, size_t errlen)
{
	pg_etcd *e = NULL;
	pg_err rc = PG_ENOMEM;
	size_t i, n;
	int oom = 0;

	*out = NULL;
	if (o->n_endpoints == 0 || o->endpoints == NULL) {
		snprintf(err, errlen, "[ledger] endpoints: none given");
		return PG_ECONFIG;
	}
	if ((o->cert_file == NULL) != (o->key_file == NULL)) {
		snprintf(err, errlen, "[ledger] cert_file and key_file go "
			 "together");
		return PG_ECONFIG;
	}
	for (i = 0; i < o->n_endpoints; i++) {
		const char *u = o->endpoints[i];

		if (u == NULL || (strncasecmp(u, "https://", 8) != 0 &&
				  (strncasecmp(u, "http://", 7) != 0 ||
				   !o->allow_plaintext))) {
			snprintf(err, errlen, "[ledger] endpoint '%s' is not "
				 "https://%s", u ? u : "",
				 o->allow_plaintext ? " or http://" : "");
			return PG_ECONFIG;
		}
	}
	if (pg_http_global_init() != PG_OK) {
		snprintf(err, errlen, "etcd: cannot initialise libcurl");
		return PG_EINTERNAL;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL ||
	    (e->endpoints = calloc(o->n_endpoints, sizeof(char *))) == NULL) {
		snprintf(err, errlen, "etcd: out of memory");
		goto out;
	}
	if (pthread_mutex_init(&e->mu, NULL) != 0) {
		snprintf(err, errlen, "etcd: cannot create a mutex");
		rc = PG_EINTERNAL;
		goto out;
	}
	e->mu_ok = 1;
	for (i = 0; i < o->n_endpoints; i++) {
		if ((e->endpoints[i] = strdup(o->endpoints[i])) == NULL) {
			snprintf(err, errlen, "etcd: out of memory");
			goto out;
		}
		e->n++;
		n = strlen(e->endpoints[i]);
		if (n > 0 && e->endpoints[i][n - 1] == '/')
			e->endpoints[i][n - 1] = '\0';
	}
	e->ca_file = dup_or_null(o->ca_file, &oom);
	e->cert_file = dup_or_null(o->cert_file, &oom);
	e->key_file = dup_or_null(o->key_file, &oom);
	if (oom) {
		snprintf(err, errlen, "etcd: out of memory");
		goto out;
	}
	e->allow_plaintext = o->allow_plaintext;
	if (e->key_file != NULL &&
	    (rc = check_key_file(e->key_file, err, errlen)) != PG_OK)
		goto out;
	if (o->password_file != NULL &&
	    (rc = read_password(e, o->password_file, err, errlen)) != PG_OK)
		goto out;
	*out = e;
	e = NULL;
	rc = PG_OK;
out:
	pg_etcd_close(e);
	return rc;
}

void
pg_etcd_close(pg_etcd *e)
{
	size_t i;

	if (e == NULL)
		return;
	for (i = 0; i < e->n; i++)
		free(e->endpoints[i]);
	if (e->endpoints != NULL)
		free(e->endpoints);
	free(e->ca_file);
	free(e->cert_file);
	free(e->key_file);
	free(e->user);
	pg_secret_wipe(&e->password);
	pg_free_secret_str(e->token);
	for (i = 0; i < e->npool; i++)
		pg_http_free(e->pool[i]);
	if (e->mu_ok)
		pthread_mutex_destroy(&e->mu);
	free(e);
}

/* ---- handles and shared state -------------------------------------------- */

static pg_http *
pool_take(pg_etcd *e)
{
	pg_http *h = NULL;

	pthread_mutex_lock(&e->mu);
	if (e->npool > 0)
		h = e->pool[--e->npool];
	pthread_mutex_unlock(&e->mu);
	return h != NULL ? h : pg_http_new();
}

static void
pool_give(pg_etcd *e, pg_http *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&e->mu);
	if (e->npool < POOL_MAX) {
		e->pool[e->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&e->mu);
	pg_http_free(h);
}

/* "Authorization: TOKEN" for the current token (a secret), or NULL with
 * *none = 1 when there is no token yet. */
static char *
auth_header(pg_etcd *e, int *none)
{
	char *h = NULL;
	size_t n;

	*none = 0;
	pthread_mutex_lock(&e->mu);
	if (e->token == NULL) {
		*none = 1;
	} else {
		n = strlen(e->token) + sizeof("Authorization: ");
		if ((h = malloc(n)) != NULL)
			snprintf(h, n, "Authorization: %s", e->token);
	}
	pthread_mutex_unlock(&e->mu);
	return h;
}

/* Forget TOKEN if it is still the current one. */
static void
drop_token(pg_etcd *e, const char *hdr)
{
	pthread_mutex_lock(&e->mu);
	if (e->token != NULL && hdr != NULL &&
	    strcmp(hdr + sizeof("Authorization: ") - 1, e->token) == 0) {
		pg_free_secret_str(e->token);
		e->token = NULL;
	}
	pthread_mutex_unlock(&e->mu);
}

/* ---- one request to one endpoint ----------------------------------------- */

/* Outcome of one attempt. */
enum attempt { A_OK, A_NEXT, A_REAUTH, A_FAIL };

static void
wipe_json_str(json_t *j)
{
	const char *s = json_string_value(j);

	if (s != NULL)
		OPENSSL_cleanse((char *)s, strlen(s));
}

/*
 * POST BODY to endpoint IDX + PATH before DL, connected within CONNECT_MS.
 * A_OK: *RESP set; A_NEXT: the
 * member cannot serve, try another (message in err, *RC the class);
 * A_REAUTH: the token was refused; A_FAIL: give up with *RC.
 */
static enum attempt
attempt(pg_etcd *e, pg_http *h, size_t idx, const char *path,
	const char *body, const char *auth, pg_deadline dl, int64_t connect_ms,
	json_t **resp, pg_err *rc, char *err, size_t errlen)
{
	static const char *const base_hdrs[] = {
		"Content-Type: application/json",
		"Grpc-Metadata-hasleader: true",
	};
	const char *hdrs[4];
	char url[1024], msg[320];
	pg_http_resp r = { 0 };
	pg_http_req req;
	json_error_t je;
	json_t *j = NULL, *m;
	int64_t code = 0;
	enum attempt a = A_FAIL;
	pg_err e2;
	int n;

	*resp = NULL;
	n = snprintf(url, sizeof(url), "%s%s", e->endpoints[idx], path);
	if (n < 0 || (size_t)n >= sizeof(url)) {
		snprintf(err, errlen, "etcd: endpoint URL too long");
		*rc = PG_ECONFIG;
		return A_FAIL;
	}
	hdrs[0] = base_hdrs[0];
	hdrs[1] = base_hdrs[1];
	hdrs[2] = auth;
	hdrs[3] = NULL;
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = url;
	req.ca_file = e->ca_file;
	req.cert_file = e->cert_file;
	req.key_file = e->key_file;
	req.allow_plaintext = e->allow_plaintext;
	req.headers = hdrs;
	req.body = body;
	req.body_len = strlen(body);
	req.deadline = dl;
	req.connect_timeout_ms = (long)connect_ms;
	req.max_response = PG_ETCD_MAX_RESPONSE;
	e2 = pg_http_perform(h, &req, &r, err, errlen);
	if (e2 == PG_ETIMEOUT || e2 == PG_EUNAVAIL) {
		*rc = e2;
		return A_NEXT;
	}
	if (e2 != PG_OK) {
		*rc = e2;
		return A_FAIL;
	}
	j = json_loadb(r.body, r.len, 0, &je);
	if (r.status == 200) {
		if (!json_is_object(j)) {
			snprintf(err, errlen, "etcd %s: the answer to %s is not "
				 "a JSON object", e->endpoints[idx], path);
			*rc = PG_EPROTO;
			goto out;
		}
		*resp = j;
		j = NULL;
		*rc = PG_OK;
		a = A_OK;
		goto out;
	}
	/* {"error": "etcdserver: ...", "code": N} */
	m = json_object_get(j, "error");
	if (!json_is_string(m))
		m = json_object_get(j, "message");
	if (json_is_string(m)) {
		snprintf(msg, sizeof(msg), "%s", json_string_value(m));
	} else {
		/* not the gateway's JSON: its text, printable, shortened */
		size_t i, k = r.len < sizeof(msg) - 1 ? r.len : sizeof(msg) - 1;

		for (i = 0; i < k; i++)
			msg[i] = r.body[i] >= 0x20 && r.body[i] < 0x7f ?
				 r.body[i] : ' ';
		msg[k] = '\0';
		while (k > 0 && msg[k - 1] == ' ')
			msg[--k] = '\0';
		if (k == 0)
			snprintf(msg, sizeof(msg), "(no message)");
	}
	if (pg_etcd_int(json_object_get(j, "code"), &code) != 0)
		code = -1;
	snprintf(err, errlen, "etcd %s: HTTP %ld: %s", e->endpoints[idx],
		 r.status, msg);
	if (code == GRPC_UNAUTHENTICATED && e->user != NULL && auth != NULL) {
		*rc = PG_ECONFIG;
		a = A_REAUTH;
	} else if (code == GRPC_UNAVAILABLE || code == GRPC_DEADLINE_EXCEEDED ||
		   r.status == 502 || r.status == 503 || r.status == 504) {
		*rc = PG_EUNAVAIL;
		a = A_NEXT;
	} else if (code == GRPC_NOT_FOUND) {
		*rc = PG_ENOTFOUND;
	} else if (code == GRPC_UNAUTHENTICATED ||
		   code == GRPC_PERMISSION_DENIED) {
		*rc = PG_ECONFIG;
	} else {
		*rc = PG_EPROTO;
	}
out:
	json_decref(j);
	pg_http_resp_free(&r);
	return a;
}

/* Obtain a token from endpoint IDX with the user and password. */
static enum attempt
authenticate(pg_etcd *e, pg_http *h, size_t idx, pg_deadline dl,
	     int64_t connect_ms, pg_err *rc, char *err, size_t errlen)
{
	json_t *req = NULL, *resp = NULL, *tok;
	char *body = NULL, *copy = NULL;
	enum attempt a = A_FAIL;

	req = json_pack("{s:s, s:s%}", "name", e->user, "password",
			e->password.buf, e->password.len);
	if (req == NULL || (body = json_dumps(req, JSON_COMPACT)) == NULL) {
		snprintf(err, errlen, "etcd: out of memory");
		*rc = PG_ENOMEM;
		goto out;
	}
	a = attempt(e, h, idx, "/v3/auth/authenticate", body, NULL, dl,
		    connect_ms, &resp, rc, err, errlen);
	if (a != A_OK) {
		if (a == A_FAIL && *rc != PG_ENOMEM) {
			char why[256];

			snprintf(why, sizeof(why), "%s", err);
			snprintf(err, errlen, "authentication as %s refused: "
				 "%s", e->user, why);
			*rc = PG_ECONFIG;
		}
		goto out;
	}
	tok = json_object_get(resp, "token");
	if (!json_is_string(tok) || json_string_length(tok) == 0 ||
	    json_string_length(tok) > TOKEN_MAX ||
	    strpbrk(json_string_value(tok), "\r\n") != NULL) {
		snprintf(err, errlen, "etcd %s: authentication gave no token "
			 "(is authentication enabled?)", e->endpoints[idx]);
		*rc = PG_EPROTO;
		a = A_FAIL;
		goto out;
	}
	if ((copy = strdup(json_string_value(tok))) == NULL) {
		snprintf(err, errlen, "etcd: out of memory");
		*rc = PG_ENOMEM;
		a = A_FAIL;
		goto out;
	}
	pthread_mutex_lock(&e->mu);
	pg_free_secret_str(e->token);
	e->token = copy;
	pthread_mutex_unlock(&e->mu);
	a = A_OK;
out:
	if (resp != NULL) {
		wipe_json_str(json_object_get(resp, "token"));
		json_decref(resp);
	}
	if (req != NULL) {
		wipe_json_str(json_object_get(req, "password"));
		json_decref(req);
	}
	pg_free_secret_str(body);
	return a;
}

/* ---- calls ---------------------------------------------------------------- */

/* Sleep MS milliseconds (less when interrupted: only a pause). */
static void
pause_ms(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

pg_err
pg_etcd_call(pg_etcd *e, const char *path, json_t *body, pg_deadline dl,
	     json_t **resp, char *err, size_t errlen)
{
	char last[512] = "", *text = NULL, *auth = NULL;
	pg_http *h = NULL;
	size_t start, k, idx;
	int64_t left, share, req_ms;
	enum attempt a;
	pg_err rc = PG_EUNAVAIL;
	int reauthed, none, pass;

	*resp = NULL;
	if ((text = json_dumps(body, JSON_COMPACT)) == NULL ||
	    (h = pool_take(e)) == NULL) {
		snprintf(err, errlen, "etcd: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&e->mu);
	start = e->current;
	pthread_mutex_unlock(&e->mu);
	for (pass = 0; pass < PASSES; pass++) {
		if (pass > 0) {
			/* every member refused or hung: a leader may be in
			 * election; pause briefly, then once more */
			left = pg_deadline_left(dl);
			pause_ms(left < PASS_PAUSE_MS * pass ? left :
				 PASS_PAUSE_MS * pass);
		}
		for (k = 0; k < e->n; k++) {
			idx = (start + k) % e->n;
			if ((left = pg_deadline_left(dl)) <= 0)
				goto done;
			/* connecting: a share of what is left; answering:
			 * half of it (all of it on the very last try), so that
			 * a member that hangs leaves time for another */
			share = left;
			if (k + 1 < e->n) {
				share = left / (int64_t)(e->n - k);
				if (share < MIN_SHARE_MS)
					share = left < MIN_SHARE_MS ? left :
						MIN_SHARE_MS;
			}
			req_ms = left;
			if (pass + 1 < PASSES || k + 1 < e->n) {
				req_ms = left / 2;
				if (req_ms < MIN_SHARE_MS)
					req_ms = left < MIN_SHARE_MS ? left :
						 MIN_SHARE_MS;
			}
			reauthed = 0;
again:
			pg_free_secret_str(auth);
			auth = NULL;
			if (e->user != NULL) {
				auth = auth_header(e, &none);
				if (auth == NULL && none) {
					a = authenticate(e, h, idx,
							 pg_deadline_in(req_ms),
							 share, &rc, err,
							 errlen);
					if (a == A_FAIL)
						goto out;
					if (a != A_OK) {
						snprintf(last, sizeof(last),
							 "%s", err);
						continue;
					}
					auth = auth_header(e, &none);
				}
				if (auth == NULL) {
					snprintf(err, errlen, "etcd: out of "
						 "memory");
					rc = PG_ENOMEM;
					goto out;
				}
			}
			a = attempt(e, h, idx, path, text, auth,
				    pg_deadline_in(req_ms), share, resp, &rc,
				    err, errlen);
			if (a == A_OK) {
				pthread_mutex_lock(&e->mu);
				e->current = idx;
				pthread_mutex_unlock(&e->mu);
				goto out;
			}
			if (a == A_REAUTH && !reauthed) {
				drop_token(e, auth);
				reauthed = 1;
				goto again;
			}
			if (a != A_NEXT)
				goto out;
			snprintf(last, sizeof(last), "%s", err);
		}
	}
done:
	if (pg_deadline_left(dl) <= 0) {
		snprintf(err, errlen, "etcd: no answer within the time allowed "
			 "(%s)", last[0] ? last : "no endpoint tried");
		rc = PG_ETIMEOUT;
	} else {
		snprintf(err, errlen, "etcd: no endpoint could serve the "
			 "request (last: %s)", last);
		rc = PG_EUNAVAIL;
	}
out:
	pg_free_secret_str(auth);
	pg_free_secret_str(text);
	pool_give(e, h);
	return rc;
}
