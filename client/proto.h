/*
 * proto.h - the client <-> daemon protocol (DESIGN.md, "Protocol").
 *
 * One JSON object per line over a SOCK_STREAM unix socket, one request per
 * connection, at most PG_PROTO_MAX bytes each way including the newline,
 * with "v":1.  Shared by pmpgated (decoding requests, encoding answers)
 * and by the thin clients (encoding requests, decoding answers).  Uses
 * libc and Jansson only.
 *
 * Request:  {"v":1,"op":"issue|decide|check|review|status",
 *            "role":S,"ticket":S,"duration":N,"user":S (honoured from uid 0
 *            only),"context":{"service":S,"tty":S,"rhost":S}}
 * Answer:   {"v":1,"status":"allow|deny|error","rules":["R1",...],
 *            "reason":S,"exit":N, ...op-specific members...}
 *            issue adds "credentials":{"AccessKeyId","SecretAccessKey",
 *            "SessionToken","Expiration"} and "role","user","ticket",
 *            "duration".
 */
#ifndef PMPGATE_PROTO_H
#define PMPGATE_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/err.h"

#define PG_PROTO_VERSION 1
#define PG_PROTO_MAX 65536
/* Field limits enforced on both sides. */
#define PG_PROTO_MAX_NAME 256	/* user, role, ticket */
#define PG_PROTO_MAX_CTX 256	/* each context string */

typedef enum { PG_OP_ISSUE, PG_OP_DECIDE, PG_OP_CHECK, PG_OP_REVIEW,
	       PG_OP_STATUS } pg_op;

const char *pg_op_name(pg_op op);

/* A decoded request.  Strings are borrowed from the JSON the request was
 * decoded from (keep it alive) or owned by the caller when encoding. */
typedef struct pg_proto_req {
	pg_op op;
	const char *user;	/* NULL = the caller */
	const char *role;
	const char *ticket;
	int64_t duration;	/* 0 = not given */
	const char *service, *tty, *rhost;
} pg_proto_req;

/* Encode REQ as one line (with '\n'); free() the result. */
char *pg_proto_encode_req(const pg_proto_req *req);

/*
 * Decode one request line.  Rejects: not an object, wrong or missing "v",
 * unknown "op", unknown members anywhere, wrong types, strings with NUL or
 * control characters or longer than the limits, negative or huge durations.
 * On PG_OK *out borrows from *doc (json_decref(*doc) when done).  On
 * PG_EUSAGE err holds a message for the answer.
 */
pg_err pg_proto_decode_req(const char *line, size_t len, json_t **doc,
			   pg_proto_req *out, char *err, size_t errlen);

/* Start an answer object: {"v":1,"status":...,"rules":[...],"reason":...,
 * "exit":N}.  rules may be NULL.  Returns a new reference. */
json_t *pg_proto_answer(const char *status, const char *const *rules,
			size_t n_rules, const char *reason, int exit_code);

/*
 * Connect to the daemon at SOCKET_PATH, send REQ, read one answer line,
 * all within timeout_ms.  PG_OK with *answer (a JSON object with at least
 * a string "status", an integer "exit" and a string "reason");
 * PG_EUNAVAIL when the daemon is not running or not reachable (err says
 * so and names the socket); PG_ETIMEOUT; PG_EPROTO on a malformed answer.
 */
pg_err pg_proto_call(const char *socket_path, const pg_proto_req *req,
		     int timeout_ms, json_t **answer, char *err,
		     size_t errlen);

/* Read one line of at most max bytes from FD within timeout_ms into a new
 * NUL-terminated buffer (without the newline).  PG_EPROTO when too long or
 * the peer closed before a newline; PG_ETIMEOUT. */
pg_err pg_proto_read_line(int fd, size_t max, int timeout_ms, char **line,
			  size_t *len);

/* Write all of BUF within timeout_ms. */
pg_err pg_proto_write_all(int fd, const char *buf, size_t len, int timeout_ms);

#endif
