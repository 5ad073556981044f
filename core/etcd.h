/*
 * etcd.h - a small client for etcd v3's JSON gateway (POST /v3/...), over
 * libcurl (http.h) and Jansson; what the etcd ledger backend needs.
 *
 * Requests and answers are the gateway's JSON: keys and values are base64
 * (pg_etcd_b64enc / pg_etcd_b64dec), int64 values travel as strings
 * (pg_etcd_int parses both forms), a transaction whose compare failed has
 * no "succeeded" member at all.
 *
 * Endpoints are tried in order, starting with the one that answered last:
 * a connection or TLS failure, a timeout, or an answer saying the member
 * cannot serve (no leader, no quorum: gRPC codes Unavailable and
 * DeadlineExceeded) moves on to the next one.  Every request carries the
 * "hasleader" metadata, so a member cut off from its cluster refuses at
 * once instead of waiting.  All attempts of one call share the call's
 * deadline: connecting (TCP and TLS) to one endpoint may take its share of
 * what is left while others remain to be tried, answering half of what is
 * left (all of it on the last try), so that an endpoint that is down, or
 * a member that hangs (its leader just died), leaves time for another.
 * When every endpoint failed, they are tried again after a short pause
 * (a leader election), three rounds at most.  Retrying a request that may
 * have been applied is the caller's concern: the ledger's transactions
 * are written so that applying one twice is recognised.
 *
 * Authentication: TLS client certificate (cert_file/key_file, used as the
 * etcd user by a cluster with --client-cert-auth) and/or user and password
 * (password_file holds "user:password"): a token is obtained with
 * /v3/auth/authenticate when first needed, sent as the Authorization
 * header, and renewed once when etcd says it is no longer valid.  The
 * password and token are secrets: wiped, never in messages.
 *
 * A pg_etcd is thread-safe: HTTP handles come from a small pool (one per
 * concurrent call), the token and the current endpoint are guarded by a
 * mutex.  pg_etcd_open calls pg_http_global_init() (a no-op when done
 * already): open it before starting threads, as pg_ledger_open is.
 */
#ifndef PMPGATE_ETCD_H
#define PMPGATE_ETCD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "deadline.h"
#include "err.h"

typedef struct pg_etcd pg_etcd;	/* opaque; thread-safe */

typedef struct pg_etcd_opts {
	const char *const *endpoints;	/* "https://host:port", no path */
	size_t n_endpoints;		/* at least one */
	const char *ca_file;		/* NULL = system store */
	const char *cert_file;		/* client certificate or NULL */
	const char *key_file;		/* its key (a secret file) or NULL */
	const char *password_file;	/* "user:password" or NULL */
	int allow_plaintext;		/* permit http:// endpoints */
} pg_etcd_opts;

/* Largest answer accepted from etcd. */
#define PG_ETCD_MAX_RESPONSE (16u * 1024 * 1024)

/*
 * Check O and make a client.  Reads password_file (a secret file, see
 * secret.h) and checks key_file like one (owner, mode); contacts no
 * endpoint.  PG_ECONFIG with a message for a bad option or file.
 */
pg_err pg_etcd_open(const pg_etcd_opts *o, pg_etcd **out, char *err,
		    size_t errlen);

/* Wipe the password and token, free the handles; NULL is fine. */
void pg_etcd_close(pg_etcd *e);

/*
 * POST BODY (a JSON object, not consumed) to PATH (e.g. "/v3/kv/txn") of
 * the first endpoint that serves it, before DL.  PG_OK: *RESP is the
 * answer (a JSON object; json_decref it).  Otherwise *RESP is NULL and:
 *   PG_EUNAVAIL  no endpoint could serve it (unreachable, TLS failure, no
 *                leader or quorum); the message names the last failure;
 *   PG_ETIMEOUT  DL passed;
 *   PG_ENOTFOUND etcd said NotFound (e.g. "requested lease not found");
 *   PG_ECONFIG   etcd refused the credentials or the permission;
 *   PG_EPROTO    any other refusal, or an answer that is not JSON;
 *   PG_ENOMEM.
 * A call that timed out may still have been applied by etcd.
 */
pg_err pg_etcd_call(pg_etcd *e, const char *path, json_t *body,
		    pg_deadline dl, json_t **resp, char *err, size_t errlen);

/* Base64 (standard alphabet, padded) of LEN bytes at P; NULL when out of
 * memory.  free() it. */
char *pg_etcd_b64enc(const void *p, size_t len);

/* Decode base64 S strictly (standard alphabet, padding required, no
 * blanks) into a new NUL-terminated buffer *OUT of *LEN bytes (free()).
 * PG_EPROTO when S is not base64, PG_ENOMEM. */
pg_err pg_etcd_b64dec(const char *s, char **out, size_t *len);

/* An int64 as the gateway sends it: a JSON string of decimal digits
 * (optionally '-') or a JSON integer.  NULL (absent) is 0, like the
 * gateway's omitted zero values.  Returns 0, or -1 when J is neither. */
int pg_etcd_int(const json_t *j, int64_t *out);

#endif
