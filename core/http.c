/*
 * http.c - HTTPS requests over libcurl; see http.h.
 *
 * One CURLSH shared by every handle (DNS cache, TLS sessions, connection
 * pool), guarded by one pthread mutex per lock data kind.  Each pg_http
 * wraps one easy handle owned by one worker; it is reset before every
 * request and every option is set again, so nothing of a previous request
 * (in particular no credential) carries over.  After each call the handle
 * is reset again and the buffers that held a bearer token or a security
 * token header are wiped.  (libcurl itself keeps the CURLOPT_USERPWD pair
 * with a live pooled connection until that connection closes; those are
 * the base keys the daemon holds in memory for its whole life anyway.)
 */
#include "http.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PG_VERSION
#define PG_VERSION "0"
#endif

#define HTTP_DEFAULT_MAX (1024 * 1024)
#define HTTP_BEARER_MAX 8192

struct pg_http {
	CURL *curl;
	char errbuf[CURL_ERROR_SIZE];
};

/* ---- shared handle -------------------------------------------------------- */

static CURLSH *g_share;
static pthread_mutex_t g_locks[CURL_LOCK_DATA_LAST];
static int g_ready;

static void
share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *u)
{
	(void)c;
	(void)access;
	(void)u;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&g_locks[data]);
}

static void
share_unlock(CURL *c, curl_lock_data data, void *u)
{
	(void)c;
	(void)u;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&g_locks[data]);
}

pg_err
pg_http_global_init(void)
{
	pg_err rc = PG_EINTERNAL;
	int i, nlocks = 0;

	if (g_ready)
		return PG_OK;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return PG_EINTERNAL;
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++) {
		if (pthread_mutex_init(&g_locks[i], NULL) != 0)
			goto out;
		nlocks++;
	}
	g_share = curl_share_init();
	if (!g_share) {
		rc = PG_ENOMEM;
		goto out;
	}
	if (curl_share_setopt(g_share, CURLSHOPT_LOCKFUNC, share_lock) ||
	    curl_share_setopt(g_share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
	    curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
	    curl_share_setopt(g_share, CURLSHOPT_SHARE,
			      CURL_LOCK_DATA_SSL_SESSION) ||
	    curl_share_setopt(g_share, CURLSHOPT_SHARE,
			      CURL_LOCK_DATA_CONNECT))
		goto out;
	g_ready = 1;
	rc = PG_OK;
out:
	if (rc != PG_OK) {
		if (g_share)
			curl_share_cleanup(g_share);
		g_share = NULL;
		for (i = 0; i < nlocks; i++)
			pthread_mutex_destroy(&g_locks[i]);
		curl_global_cleanup();
	}
	return rc;
}

void
pg_http_global_cleanup(void)
{
	int i;

	if (!g_ready)
		return;
	curl_share_cleanup(g_share);
	g_share = NULL;
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&g_locks[i]);
	curl_global_cleanup();
	g_ready = 0;
}

/* ---- handles -------------------------------------------------------------- */

pg_http *
pg_http_new(void)
{
	pg_http *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->curl = curl_easy_init();
	if (!h->curl) {
		free(h);
		return NULL;
	}
	return h;
}

void
pg_http_free(pg_http *h)
{
	if (!h)
		return;
	if (h->curl) {
		curl_easy_setopt(h->curl, CURLOPT_USERPWD, NULL);
		curl_easy_cleanup(h->curl);
	}
	OPENSSL_cleanse(h->errbuf, sizeof(h->errbuf));
	free(h);
}

/* ---- response buffer ------------------------------------------------------ */

typedef struct sink {
	char *buf;
	size_t len;
	size_t cap;
	size_t max;
	int overflow;
	int oom;
} sink;

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
	sink *s = ud;
	size_t n = size * nmemb;
	size_t need;

	if (n == 0)
		return 0;
	if (n > s->max || s->len > s->max - n) {
		s->overflow = 1;
		return 0;	/* aborts the transfer: CURLE_WRITE_ERROR */
	}
	need = s->len + n + 1;
	if (need > s->cap) {
		size_t ncap = s->cap ? s->cap : 4096;
		char *nb;

		while (ncap < need)
			ncap *= 2;
		/* No realloc: the body may hold secrets, the old copy is
		 * wiped before it is freed. */
		nb = malloc(ncap);
		if (!nb) {
			s->oom = 1;
			return 0;
		}
		if (s->buf) {
			memcpy(nb, s->buf, s->len);
			OPENSSL_cleanse(s->buf, s->cap);
			free(s->buf);
		}
		s->buf = nb;
		s->cap = ncap;
	}
	memcpy(s->buf + s->len, ptr, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

/* ---- messages ------------------------------------------------------------- */

/* The host[:port] part of URL without any userinfo, for messages. */
static void
url_host(const char *url, char *out, size_t outlen)
{
	const char *p, *end, *at;
	size_t n;

	out[0] = '\0';
	if (!url || outlen == 0)
		return;
	p = strstr(url, "://");
	p = p ? p + 3 : url;
	end = p + strcspn(p, "/?#");
	at = memchr(p, '@', (size_t)(end - p));
	if (at)
		p = at + 1;
	n = (size_t)(end - p);
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

static int
is_tls_error(CURLcode c)
{
	switch (c) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
		return 1;
	default:
		return 0;
	}
}

/* ---- perform -------------------------------------------------------------- */

#define SETOPT(opt, val)						\
	do {								\
		if (curl_easy_setopt(c, (opt), (val)) != CURLE_OK) {	\
			snprintf(err, errlen, "http: cannot set " #opt); \
			rc = PG_EINTERNAL;				\
			goto out;					\
		}							\
	} while (0)

pg_err
pg_http_perform(pg_http *h, const pg_http_req *req, pg_http_resp *resp,
		char *err, size_t errlen)
{
	pg_err rc = PG_EINTERNAL;
	CURL *c;
	CURLcode cc;
	struct curl_slist *hdrs = NULL, *tmp;
	char *bearer = NULL;
	size_t bearer_cap = 0;
	sink s = { 0 };
	int64_t left;
	long status = 0;
	char host[256];
	const char *method;
	size_t i;

	if (resp) {
		resp->status = 0;
		resp->body = NULL;
		resp->len = 0;
	}
	if (!h || !h->curl || !req || !req->url || !resp) {
		snprintf(err, errlen, "http: invalid request");
		return PG_EINTERNAL;
	}
	c = h->curl;
	url_host(req->url, host, sizeof(host));
	method = req->method ? req->method : "GET";

	left = pg_deadline_cap(req->deadline, req->timeout_ms);
	if (left <= 0) {
		snprintf(err, errlen, "%s: deadline passed before the request",
			 host);
		return PG_ETIMEOUT;
	}

	curl_easy_reset(c);
	h->errbuf[0] = '\0';
	s.max = req->max_response ? req->max_response : HTTP_DEFAULT_MAX;

	SETOPT(CURLOPT_SHARE, g_share);
	SETOPT(CURLOPT_URL, req->url);
	SETOPT(CURLOPT_PROTOCOLS_STR,
	       req->allow_plaintext ? "https,http" : "https");
	SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "https");
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_file) {
		SETOPT(CURLOPT_CAINFO, req->ca_file);
		SETOPT(CURLOPT_CAPATH, (char *)NULL);
	}
	if (req->cert_file) {
		SETOPT(CURLOPT_SSLCERT, req->cert_file);
		SETOPT(CURLOPT_SSLCERTTYPE, "PEM");
	}
	if (req->key_file) {
		SETOPT(CURLOPT_SSLKEY, req->key_file);
		SETOPT(CURLOPT_SSLKEYTYPE, "PEM");
	}
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_TIMEOUT_MS, (long)left);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS,
	       req->connect_timeout_ms > 0 && req->connect_timeout_ms < left ?
	       req->connect_timeout_ms : (long)left);
	SETOPT(CURLOPT_ERRORBUFFER, h->errbuf);
	SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(CURLOPT_WRITEDATA, &s);
	SETOPT(CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
	SETOPT(CURLOPT_USERAGENT, "pmpgate/" PG_VERSION);

	if (strcmp(method, "POST") == 0) {
		SETOPT(CURLOPT_POST, 1L);
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE,
		       (curl_off_t)(req->body ? req->body_len : 0));
		SETOPT(CURLOPT_POSTFIELDS, req->body ? req->body : "");
	} else if (strcmp(method, "GET") == 0) {
		SETOPT(CURLOPT_HTTPGET, 1L);
	} else {
		snprintf(err, errlen, "http: unsupported method");
		rc = PG_EINTERNAL;
		goto out;
	}

	for (i = 0; req->headers && req->headers[i]; i++) {
		tmp = curl_slist_append(hdrs, req->headers[i]);
		if (!tmp) {
			rc = PG_ENOMEM;
			snprintf(err, errlen, "http: out of memory");
			goto out;
		}
		hdrs = tmp;
	}
	if (req->bearer) {
		int n;

		bearer_cap = strlen(req->bearer) + sizeof("Authorization: Bearer ");
		if (bearer_cap > HTTP_BEARER_MAX) {
			snprintf(err, errlen, "http: bearer token too long");
			rc = PG_ECONFIG;
			goto out;
		}
		bearer = malloc(bearer_cap);
		if (!bearer) {
			rc = PG_ENOMEM;
			snprintf(err, errlen, "http: out of memory");
			goto out;
		}
		n = snprintf(bearer, bearer_cap, "Authorization: Bearer %s",
			     req->bearer);
		if (n < 0 || (size_t)n >= bearer_cap) {
			snprintf(err, errlen, "http: bearer header");
			goto out;
		}
		tmp = curl_slist_append(hdrs, bearer);
		if (!tmp) {
			rc = PG_ENOMEM;
			snprintf(err, errlen, "http: out of memory");
			goto out;
		}
		hdrs = tmp;
	}
	/* No "Expect:" override: libcurl 7.88 would sign the empty header
	 * it never sends (SigV4 mismatch); it only asks for 100-continue
	 * above 1 MiB, far beyond any body sent here. */
	SETOPT(CURLOPT_HTTPHEADER, hdrs);

	if (req->aws_sigv4)
		SETOPT(CURLOPT_AWS_SIGV4, req->aws_sigv4);
	if (req->userpwd)
		SETOPT(CURLOPT_USERPWD, req->userpwd);

	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);

	if (s.overflow) {
		snprintf(err, errlen, "%s: response larger than %zu bytes",
			 host, s.max);
		rc = PG_EPROTO;
		goto out;
	}
	if (cc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(err, errlen, "%s: timed out", host);
		rc = PG_ETIMEOUT;
		goto out;
	}
	if (s.oom) {
		snprintf(err, errlen, "%s: out of memory", host);
		rc = PG_ENOMEM;
		goto out;
	}
	if (cc != CURLE_OK) {
		const char *msg = h->errbuf[0] ? h->errbuf
					       : curl_easy_strerror(cc);

		if (is_tls_error(cc))
			snprintf(err, errlen, "%s: TLS: %s", host, msg);
		else
			snprintf(err, errlen, "%s: %s", host, msg);
		rc = PG_EUNAVAIL;
		goto out;
	}

	if (!s.buf) {
		s.buf = malloc(1);
		if (!s.buf) {
			rc = PG_ENOMEM;
			snprintf(err, errlen, "http: out of memory");
			goto out;
		}
		s.buf[0] = '\0';
	}
	resp->status = status;
	resp->body = s.buf;
	resp->len = s.len;
	s.buf = NULL;
	rc = PG_OK;
out:
	/* The handle must keep no credential beyond this call. */
	curl_easy_setopt(c, CURLOPT_USERPWD, NULL);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
	curl_easy_reset(c);
	for (tmp = hdrs; tmp; tmp = tmp->next)
		OPENSSL_cleanse(tmp->data, strlen(tmp->data));
	curl_slist_free_all(hdrs);
	if (bearer) {
		OPENSSL_cleanse(bearer, bearer_cap);
		free(bearer);
	}
	if (s.buf) {
		OPENSSL_cleanse(s.buf, s.cap);
		free(s.buf);
	}
	return rc;
}

#undef SETOPT

void
pg_http_resp_free(pg_http_resp *resp)
{
	if (!resp)
		return;
	if (resp->body) {
		OPENSSL_cleanse(resp->body, resp->len);
		free(resp->body);
	}
	resp->body = NULL;
	resp->len = 0;
	resp->status = 0;
}

char *
pg_url_encode(const char *s)
{
	char *esc, *out = NULL;
	size_t n;

	if (!s)
		return NULL;
	esc = curl_easy_escape(NULL, s, (int)strlen(s));
	if (!esc)
		return NULL;
	n = strlen(esc);
	out = malloc(n + 1);
	if (out)
		memcpy(out, esc, n + 1);
	OPENSSL_cleanse(esc, n);
	curl_free(esc);
	return out;
}
