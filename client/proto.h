/*
 * proto.h - the client <-> daemon protocol (DESIGN.md, "Protocol").
 *
 * One JSON object per line over a SOCK_STREAM unix socket, one request per
 * connection, at most PG_PROTO_MAX bytes each way including the newline,
 * with "v":1.  Shared by pmpgated (decoding requests, encoding answers)
 * and by the thin clients (encoding requests, decoding answers).  Uses
 * libc and Jansson only.
 *
 * Request:  {"v":1,"op":"issue|decide|check|review|status|doctor",
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
#define PG_PROTO_MAX_ROLE 64	/* role names are [a-z0-9-]{1,64} */
#define PG_PROTO_MAX_DURATION 43200	/* seconds (12 h, the STS maximum) */

/* The compiled-in socket path ($RUNSTATEDIR/pmpgate/socket). */
#ifndef PG_RUNSTATEDIR
#define PG_RUNSTATEDIR "/run"
#endif
#define PG_DEFAULT_SOCKET PG_RUNSTATEDIR "/pmpgate/socket"

typedef enum { PG_OP_ISSUE, PG_OP_DECIDE, PG_OP_CHECK, PG_OP_REVIEW,
	       PG_OP_STATUS, PG_OP_DOCTOR } pg_op;

/*
 * The answer to "review" lists every member of every role group and may
 * be longer than PG_PROTO_MAX: it is the one answer allowed up to
 * PG_PROTO_MAX_REVIEW bytes (read it with pg_proto_call_max).  Requests
 * stay within PG_PROTO_MAX.  "doctor" (the daemon's live checks of its
 * services, admins only) takes no members, like review and status.
 */
#define PG_PROTO_MAX_REVIEW (16 * 1024 * 1024)

/* The wire name of an op ("issue"); "unknown" for a value out of range. */
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

/*
 * Check REQ by the rules pg_proto_decode_req applies: role [a-z0-9-]{1,64}
 * (required for issue, decide, check), ticket (required for issue and
 * decide), user and ticket non-empty and at most PG_PROTO_MAX_NAME bytes,
 * context strings at most PG_PROTO_MAX_CTX bytes, no control characters
 * anywhere, duration 0..PG_PROTO_MAX_DURATION; review, status and doctor carry
 * nothing but the op (every other field NULL or 0).  PG_OK or PG_EUSAGE
 * with a message in err that never repeats the offending value.
 */
pg_err pg_proto_check_req(const pg_proto_req *req, char *err, size_t errlen);

/* 1 when NAME is a valid role name ([a-z0-9-]{1,64}), else 0. */
int pg_proto_role_valid(const char *name);

/*
 * Parse a duration as clients accept it: a whole number of seconds, or a
 * number with one unit s, m or h ("900", "900s", "15m", "12h"), between 1
 * and PG_PROTO_MAX_DURATION seconds.  PG_OK with *seconds, else PG_EUSAGE.
 */
pg_err pg_proto_parse_duration(const char *text, int64_t *seconds);

/* Encode REQ as one line (with '\n'); free() the result.  NULL when REQ
 * fails pg_proto_check_req or memory runs out.  Members that are NULL/0
 * are left out; review, status and doctor encode only "v" and "op". */
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
 * "exit":N}.  rules may be NULL.  Returns a new reference.  status must be
 * "allow", "deny" or "error" and exit_code 0..4 (0 exactly for "allow"),
 * else NULL; NULL also when memory runs out.  Control characters in
 * reason are replaced by '?' (the reason is one line) and a reason that is
 * not valid UTF-8 is sent with its non-ASCII bytes replaced; a NULL reason
 * is sent as "". */
json_t *pg_proto_answer(const char *status, const char *const *rules,
			size_t n_rules, const char *reason, int exit_code);

/*
 * Connect to the daemon at SOCKET_PATH, send REQ, read one answer line,
 * all within timeout_ms.  PG_OK with *answer (a JSON object with at least
 * a string "status", an integer "exit" and a string "reason");
 * PG_EUNAVAIL when the daemon is not running or not reachable (err says
 * so and names the socket), or closed the connection without a byte of
 * answer; PG_ETIMEOUT; PG_EBUSY when the daemon's listen queue stays full;
 * PG_EPROTO on a malformed answer; PG_EUSAGE when REQ fails
 * pg_proto_check_req or the socket path does not fit a sockaddr_un.
 *
 * An answer is accepted only when it is one line of at most PG_PROTO_MAX
 * bytes, a JSON object without duplicate keys, "v" is the integer 1,
 * "status" is "allow", "deny" or "error", "exit" is an integer 0..4 that
 * is 0 exactly when status is "allow", "reason" is a string and "rules",
 * when present, is an array of strings.  Every buffer that held the
 * answer line is wiped before it is freed (answers to issue carry
 * credentials).
 */
pg_err pg_proto_call(const char *socket_path, const pg_proto_req *req,
		     int timeout_ms, json_t **answer, char *err,
		     size_t errlen);

/* pg_proto_call accepting an answer line of up to MAX bytes (counting its
 * newline) instead of PG_PROTO_MAX; MAX is clamped to
 * PG_PROTO_MAX..PG_PROTO_MAX_REVIEW.  For "review". */
pg_err pg_proto_call_max(const char *socket_path, const pg_proto_req *req,
			 int timeout_ms, size_t max, json_t **answer,
			 char *err, size_t errlen);

/* Read one line of at most max bytes, counting its newline, from FD within
 * timeout_ms into a new NUL-terminated buffer (without the newline); the
 * caller wipes and frees it.  Bytes after the newline are discarded.
 * PG_EPROTO when too long, when the line holds a NUL byte, or when the
 * peer closed before a newline; PG_ETIMEOUT; PG_EUNAVAIL on a read error;
 * PG_ENOMEM.  On error *line is NULL. */
pg_err pg_proto_read_line(int fd, size_t max, int timeout_ms, char **line,
			  size_t *len);

/* Write all of BUF within timeout_ms, without raising SIGPIPE on sockets.
 * PG_ETIMEOUT; PG_EUNAVAIL when the peer has gone or on a write error. */
pg_err pg_proto_write_all(int fd, const char *buf, size_t len, int timeout_ms);

#endif
