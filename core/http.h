/*
 * http.h - HTTPS requests for the ticket and STS clients, over libcurl.
 *
 * pg_http_global_init() once at start (before threads).  Each worker owns
 * one pg_http (a reused CURL easy handle: keep-alive); all pg_http share
 * one CURLSH for DNS, TLS sessions and connections (thread-safe locks).
 * TLS is always verified (peer and host); the CA is ca_file when given,
 * else the system store.  Redirects are not followed.  A response larger
 * than max_response is an error, never truncated silently.  The request
 * timeout is min(timeout_ms, deadline).  A client certificate is presented
 * when cert_file (and key_file) are given (the etcd ledger uses them).
 */
#ifndef PMPGATE_HTTP_H
#define PMPGATE_HTTP_H

#include <stddef.h>

#include "deadline.h"
#include "err.h"

typedef struct pg_http pg_http;

pg_err pg_http_global_init(void);
void pg_http_global_cleanup(void);

pg_http *pg_http_new(void);
void pg_http_free(pg_http *h);

typedef struct pg_http_req {
	const char *method;		/* "GET" or "POST" */
	const char *url;
	const char *ca_file;		/* NULL = system store */
	int allow_plaintext;		/* permit http:// */
	const char *const *headers;	/* NULL-terminated "Name: value" */
	const char *body;		/* POST body or NULL */
	size_t body_len;
	const char *aws_sigv4;		/* CURLOPT_AWS_SIGV4 or NULL */
	const char *userpwd;		/* CURLOPT_USERPWD (secret) or NULL */
	const char *bearer;		/* Authorization: Bearer (secret) or NULL */
	long timeout_ms;		/* dependency's own timeout, 0 = none */
	pg_deadline deadline;
	size_t max_response;		/* 0 = 1 MiB */
	const char *cert_file;		/* TLS client certificate (PEM) or NULL */
	const char *key_file;		/* its private key (PEM), with cert_file */
	long connect_timeout_ms;	/* connect + TLS handshake, 0 = as the
					   whole request; never beyond it */
} pg_http_req;

typedef struct pg_http_resp {
	long status;		/* HTTP status; 0 when no answer */
	char *body;		/* NUL-terminated, free() it */
	size_t len;
} pg_http_resp;

/*
 * Perform REQ.  PG_OK when an HTTP answer arrived (any status: the caller
 * judges it); PG_ETIMEOUT when the deadline or timeout passed;
 * PG_EUNAVAIL for connection and TLS failures (message in err, e.g.
 * "TLS: certificate verify failed"); PG_EPROTO when the answer exceeded
 * max_response.  Secrets in REQ are not logged nor kept by the handle
 * beyond the call.
 */
pg_err pg_http_perform(pg_http *h, const pg_http_req *req, pg_http_resp *resp,
		       char *err, size_t errlen);

void pg_http_resp_free(pg_http_resp *resp);

/* URL-encode S into a new string (free()). */
char *pg_url_encode(const char *s);

#endif
