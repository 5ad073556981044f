/*
 * proto.c - the client <-> daemon protocol; see proto.h.
 *
 * Decoding is strict: the daemon never trusts a member it did not expect,
 * so every member is checked for its name, its type and its content, and
 * anything else is refused before a request reaches the policy.
 */
#include "proto.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *const op_names[] = {
	[PG_OP_ISSUE] = "issue",
	[PG_OP_DECIDE] = "decide",
	[PG_OP_CHECK] = "check",
	[PG_OP_REVIEW] = "review",
	[PG_OP_STATUS] = "status",
	[PG_OP_DOCTOR] = "doctor",
};
#define N_OPS (sizeof(op_names) / sizeof(op_names[0]))

const char *
pg_op_name(pg_op op)
{
	if ((size_t)op >= N_OPS)
		return "unknown";
	return op_names[op];
}

/* ---- field rules ---------------------------------------------------------- */

/* 1 when S (of LEN bytes) holds no NUL and no control character. */
static int
clean_bytes(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return 0;
	}
	return 1;
}

int
pg_proto_role_valid(const char *name)
{
	size_t n = 0;

	if (name == NULL)
		return 0;
	for (; name[n] != '\0'; n++) {
		char c = name[n];
		if (n >= PG_PROTO_MAX_ROLE)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return 0;
	}
	return n > 0;
}

/* Check an optional string field: NULL is fine, else 1..max (or 0..max
 * when may_be_empty) clean bytes. */
static pg_err
check_str(const char *what, const char *s, size_t max, bool may_be_empty,
	  char *err, size_t errlen)
{
	size_t len;

	if (s == NULL)
		return PG_OK;
	len = strnlen(s, max + 1);
	if (len > max) {
		snprintf(err, errlen, "request: %s is longer than %zu bytes",
			 what, max);
		return PG_EUSAGE;
	}
	if (len == 0 && !may_be_empty) {
		snprintf(err, errlen, "request: %s is empty", what);
		return PG_EUSAGE;
	}
	if (!clean_bytes(s, len)) {
		snprintf(err, errlen, "request: %s contains control characters",
			 what);
		return PG_EUSAGE;
	}
	return PG_OK;
}

pg_err
pg_proto_check_req(const pg_proto_req *req, char *err, size_t errlen)
{
	pg_err rc;
	bool full;

	if (req == NULL || (size_t)req->op >= N_OPS) {
		snprintf(err, errlen, "request: unknown op");
		return PG_EUSAGE;
	}
	full = req->op == PG_OP_ISSUE || req->op == PG_OP_DECIDE ||
	       req->op == PG_OP_CHECK;
	if (!full) {
		if (req->user || req->role || req->ticket || req->duration ||
		    req->service || req->tty || req->rhost) {
			snprintf(err, errlen, "request: %s takes no arguments",
				 pg_op_name(req->op));
			return PG_EUSAGE;
		}
		return PG_OK;
	}
	if (req->role == NULL) {
		snprintf(err, errlen, "request: role is missing");
		return PG_EUSAGE;
	}
	if (!pg_proto_role_valid(req->role)) {
		snprintf(err, errlen,
			 "request: role must be 1-%d characters of a-z, 0-9 and '-'",
			 PG_PROTO_MAX_ROLE);
		return PG_EUSAGE;
	}
	if (req->ticket == NULL && req->op != PG_OP_CHECK) {
		snprintf(err, errlen, "request: ticket is missing");
		return PG_EUSAGE;
	}
	if (req->duration < 0 || req->duration > PG_PROTO_MAX_DURATION) {
		snprintf(err, errlen,
			 "request: duration must be 0..%d seconds",
			 PG_PROTO_MAX_DURATION);
		return PG_EUSAGE;
	}
	if ((rc = check_str("ticket", req->ticket, PG_PROTO_MAX_NAME, false,
			    err, errlen)) != PG_OK ||
	    (rc = check_str("user", req->user, PG_PROTO_MAX_NAME, false,
			    err, errlen)) != PG_OK ||
	    (rc = check_str("context.service", req->service, PG_PROTO_MAX_CTX,
			    true, err, errlen)) != PG_OK ||
	    (rc = check_str("context.tty", req->tty, PG_PROTO_MAX_CTX, true,
			    err, errlen)) != PG_OK ||
	    (rc = check_str("context.rhost", req->rhost, PG_PROTO_MAX_CTX,
			    true, err, errlen)) != PG_OK)
		return rc;
	return PG_OK;
}

pg_err
pg_proto_parse_duration(const char *text, int64_t *seconds)
{
	int64_t n = 0, mult = 1;
	const char *p = text;

	if (text == NULL || *text < '0' || *text > '9')
		return PG_EUSAGE;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (*p - '0');
		if (n > PG_PROTO_MAX_DURATION)
			return PG_EUSAGE;
	}
	switch (*p) {
	case '\0':
		break;
	case 's':
		p++;
		break;
	case 'm':
		mult = 60;
		p++;
		break;
	case 'h':
		mult = 3600;
		p++;
		break;
	default:
		return PG_EUSAGE;
	}
	if (*p != '\0')
		return PG_EUSAGE;
	n *= mult;
	if (n < 1 || n > PG_PROTO_MAX_DURATION)
		return PG_EUSAGE;
	*seconds = n;
	return PG_OK;
}

/* ---- encoding --------------------------------------------------------------- */

/* Set KEY to a new string VAL when VAL is not NULL; 0 on failure. */
static int
set_str(json_t *obj, const char *key, const char *val)
{
	if (val == NULL)
		return 1;
	return json_object_set_new(obj, key, json_string(val)) == 0;
}

char *
pg_proto_encode_req(const pg_proto_req *req)
{
	char err[128];
	const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
	json_t *o = NULL, *ctx = NULL;
	char *text = NULL, *line = NULL;
	size_t len;

	if (pg_proto_check_req(req, err, sizeof(err)) != PG_OK)
		goto out;
	o = json_object();
	if (o == NULL ||
	    json_object_set_new(o, "v", json_integer(PG_PROTO_VERSION)) != 0 ||
	    !set_str(o, "op", pg_op_name(req->op)) ||
	    !set_str(o, "role", req->role) ||
	    !set_str(o, "ticket", req->ticket) ||
	    !set_str(o, "user", req->user))
		goto out;
	if (req->duration > 0 &&
	    json_object_set_new(o, "duration", json_integer(req->duration)) != 0)
		goto out;
	if (req->service || req->tty || req->rhost) {
		ctx = json_object();
		if (ctx == NULL || !set_str(ctx, "service", req->service) ||
		    !set_str(ctx, "tty", req->tty) ||
		    !set_str(ctx, "rhost", req->rhost))
			goto out;
		if (json_object_set(o, "context", ctx) != 0)
			goto out;
	}
	/* json_dumpb into our own buffer: the result is free()able whatever
	 * allocator Jansson was given. */
	len = json_dumpb(o, NULL, 0, flags);
	if (len == 0 || len + 1 > PG_PROTO_MAX)
		goto out;
	text = malloc(len + 2);
	if (text == NULL || json_dumpb(o, text, len, flags) != len)
		goto out;
	text[len] = '\n';
	text[len + 1] = '\0';
	line = text;
	text = NULL;
out:
	free(text);
	json_decref(ctx);
	json_decref(o);
	return line;
}

/* ---- decoding --------------------------------------------------------------- */

/* Name KEY in a message only when it is short, printable ASCII. */
static const char *
printable_key(const char *key)
{
	size_t n = strlen(key);

	if (n == 0 || n > 32)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (key[i] < 0x21 || key[i] > 0x7e || key[i] == '"' ||
		    key[i] == '\\')
			return NULL;
	return key;
}

static pg_err
unknown_member(const char *where, const char *key, char *err, size_t errlen)
{
	const char *k = printable_key(key);

	if (k != NULL)
		snprintf(err, errlen, "request: unknown member \"%s\"%s", k,
			 where);
	else
		snprintf(err, errlen, "request: unknown member%s", where);
	return PG_EUSAGE;
}

/* Take a string member: a JSON string without NUL bytes. */
static pg_err
take_str(const char *what, json_t *val, const char **dst, char *err,
	 size_t errlen)
{
	const char *s;

	if (!json_is_string(val)) {
		snprintf(err, errlen, "request: %s must be a string", what);
		return PG_EUSAGE;
	}
	s = json_string_value(val);
	if (strlen(s) != json_string_length(val)) {
		snprintf(err, errlen, "request: %s contains a NUL character",
			 what);
		return PG_EUSAGE;
	}
	*dst = s;
	return PG_OK;
}

static pg_err
decode_context(json_t *ctx, pg_proto_req *out, char *err, size_t errlen)
{
	const char *key;
	json_t *val;
	pg_err rc;

	if (!json_is_object(ctx)) {
		snprintf(err, errlen, "request: context must be an object");
		return PG_EUSAGE;
	}
	json_object_foreach(ctx, key, val) {
		if (strcmp(key, "service") == 0)
			rc = take_str("context.service", val, &out->service,
				      err, errlen);
		else if (strcmp(key, "tty") == 0)
			rc = take_str("context.tty", val, &out->tty, err,
				      errlen);
		else if (strcmp(key, "rhost") == 0)
			rc = take_str("context.rhost", val, &out->rhost, err,
				      errlen);
		else
			rc = unknown_member(" in context", key, err, errlen);
		if (rc != PG_OK)
			return rc;
	}
	return PG_OK;
}

pg_err
pg_proto_decode_req(const char *line, size_t len, json_t **doc,
		    pg_proto_req *out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = NULL, *val;
	const char *key, *op = NULL;
	pg_proto_req req = { .op = PG_OP_STATUS };
	bool have_op = false, full;
	pg_err rc = PG_EUSAGE;

	*doc = NULL;
	memset(out, 0, sizeof(*out));
	if (line == NULL) {
		snprintf(err, errlen, "request: empty");
		goto out;
	}
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len + 1 > PG_PROTO_MAX) {
		snprintf(err, errlen, "request: longer than %d bytes",
			 PG_PROTO_MAX);
		goto out;
	}
	if (memchr(line, '\0', len) != NULL) {
		snprintf(err, errlen, "request: contains a NUL byte");
		goto out;
	}
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		/* Jansson ends its messages with " near '<input>'": keep the
		 * description, never the input. */
		char *near = strstr(jerr.text, " near ");
		if (near != NULL)
			*near = '\0';
		snprintf(err, errlen, "request: not valid JSON (%s at byte %d)",
			 jerr.text, jerr.position);
		goto out;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "request: not a JSON object");
		goto out;
	}

	/* First pass: the version and the op decide what else may appear. */
	val = json_object_get(root, "v");
	if (val == NULL) {
		snprintf(err, errlen, "request: \"v\" is missing");
		goto out;
	}
	if (!json_is_integer(val) ||
	    json_integer_value(val) != PG_PROTO_VERSION) {
		snprintf(err, errlen, "request: unsupported protocol version "
			 "(this daemon speaks \"v\":%d)", PG_PROTO_VERSION);
		goto out;
	}
	val = json_object_get(root, "op");
	if (val == NULL) {
		snprintf(err, errlen, "request: \"op\" is missing");
		goto out;
	}
	if (take_str("op", val, &op, err, errlen) != PG_OK)
		goto out;
	for (size_t i = 0; i < N_OPS; i++)
		if (strcmp(op, op_names[i]) == 0) {
			req.op = (pg_op)i;
			have_op = true;
		}
	if (!have_op) {
		snprintf(err, errlen, "request: unknown op");
		goto out;
	}
	full = req.op == PG_OP_ISSUE || req.op == PG_OP_DECIDE ||
	       req.op == PG_OP_CHECK;

	/* Second pass: every member must be one this op takes. */
	json_object_foreach(root, key, val) {
		if (strcmp(key, "v") == 0 || strcmp(key, "op") == 0)
			continue;
		if (!full) {
			rc = unknown_member("", key, err, errlen);
			goto out;
		}
		if (strcmp(key, "role") == 0)
			rc = take_str("role", val, &req.role, err, errlen);
		else if (strcmp(key, "ticket") == 0)
			rc = take_str("ticket", val, &req.ticket, err, errlen);
		else if (strcmp(key, "user") == 0)
			rc = take_str("user", val, &req.user, err, errlen);
		else if (strcmp(key, "context") == 0)
			rc = decode_context(val, &req, err, errlen);
		else if (strcmp(key, "duration") == 0) {
			if (!json_is_integer(val)) {
				snprintf(err, errlen,
					 "request: duration must be an integer");
				rc = PG_EUSAGE;
			} else {
				req.duration = json_integer_value(val);
				rc = PG_OK;
			}
		} else
			rc = unknown_member("", key, err, errlen);
		if (rc != PG_OK)
			goto out;
	}
	rc = pg_proto_check_req(&req, err, errlen);
	if (rc != PG_OK)
		goto out;
	*out = req;
	*doc = root;
	root = NULL;
	rc = PG_OK;
out:
	json_decref(root);
	if (rc != PG_OK)
		rc = PG_EUSAGE;
	return rc;
}

/* ---- answers ---------------------------------------------------------------- */

/* A copy of REASON with control characters replaced by '?' and, unless
 * it is valid UTF-8, every non-ASCII byte too. */
static json_t *
reason_string(const char *reason)
{
	size_t n = strlen(reason);
	char *copy = malloc(n + 1);
	json_t *s = NULL;

	if (copy == NULL)
		return NULL;
	for (size_t i = 0; i <= n; i++) {
		unsigned char c = (unsigned char)reason[i];
		copy[i] = (i < n && (c < 0x20 || c == 0x7f)) ? '?' : (char)c;
	}
	s = json_string(copy);
	if (s == NULL) {
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)copy[i] >= 0x80)
				copy[i] = '?';
		s = json_string(copy);
	}
	free(copy);
	return s;
}

json_t *
pg_proto_answer(const char *status, const char *const *rules,
		size_t n_rules, const char *reason, int exit_code)
{
	json_t *o = NULL, *arr = NULL, *r = NULL;
	bool allow;

	if (status == NULL)
		return NULL;
	allow = strcmp(status, "allow") == 0;
	if (!allow && strcmp(status, "deny") != 0 &&
	    strcmp(status, "error") != 0)
		return NULL;
	if (exit_code < 0 || exit_code > PG_EXIT_INTERNAL ||
	    (exit_code == 0) != allow)
		return NULL;
	arr = json_array();
	if (arr == NULL)
		goto fail;
	for (size_t i = 0; rules != NULL && i < n_rules; i++)
		if (rules[i] == NULL ||
		    json_array_append_new(arr, json_string(rules[i])) != 0)
			goto fail;
	r = reason_string(reason ? reason : "");
	o = json_object();
	if (r == NULL || o == NULL ||
	    json_object_set_new(o, "v", json_integer(PG_PROTO_VERSION)) != 0 ||
	    json_object_set_new(o, "status", json_string(status)) != 0 ||
	    json_object_set(o, "rules", arr) != 0 ||
	    json_object_set(o, "reason", r) != 0 ||
	    json_object_set_new(o, "exit", json_integer(exit_code)) != 0)
		goto fail;
	json_decref(arr);
	json_decref(r);
	return o;
fail:
	json_decref(o);
	json_decref(arr);
	json_decref(r);
	return NULL;
}

/* ---- I/O --------------------------------------------------------------------- */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until DEADLINE, 0 when passed, capped for poll(). */
static int
left_ms(int64_t deadline)
{
	int64_t left = deadline - mono_ms();

	if (left < 0)
		return 0;
	if (left > 0x7fffffff)
		return 0x7fffffff;
	return (int)left;
}

/* Wait until FD is ready for EVENTS or DEADLINE passes. */
static pg_err
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int n;

	for (;;) {
		n = poll(&pfd, 1, left_ms(deadline));
		if (n > 0)
			return PG_OK;
		if (n == 0)
			return PG_ETIMEOUT;
		if (errno != EINTR)
			return PG_EUNAVAIL;
	}
}

/* read_line with the number of bytes received reported in *got. */
static pg_err
read_line_counted(int fd, size_t max, int timeout_ms, char **line,
		  size_t *len, size_t *got)
{
	int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	char *buf = NULL, *nl = NULL;
	size_t used = 0;
	pg_err rc;

	*line = NULL;
	*len = 0;
	*got = 0;
	if (fd < 0)
		return PG_EUNAVAIL;
	if (max == 0)
		return PG_EPROTO;
	buf = malloc(max + 1);
	if (buf == NULL)
		return PG_ENOMEM;
	while (nl == NULL) {
		ssize_t n;

		if (used == max) {
			rc = PG_EPROTO;
			goto out;
		}
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc != PG_OK)
			goto out;
		n = read(fd, buf + used, max - used);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == EWOULDBLOCK)
				continue;
			rc = PG_EUNAVAIL;
			goto out;
		}
		if (n == 0) {
			rc = PG_EPROTO;
			goto out;
		}
		nl = memchr(buf + used, '\n', (size_t)n);
		used += (size_t)n;
		*got = used;
	}
	*len = (size_t)(nl - buf);
	if (memchr(buf, '\0', *len) != NULL) {
		rc = PG_EPROTO;
		goto out;
	}
	/* Drop whatever followed the newline. */
	explicit_bzero(nl, used - *len);
	*nl = '\0';
	*line = buf;
	buf = NULL;
	rc = PG_OK;
out:
	if (buf != NULL) {
		explicit_bzero(buf, max + 1);
		free(buf);
	}
	if (rc != PG_OK)
		*len = 0;
	return rc;
}

pg_err
pg_proto_read_line(int fd, size_t max, int timeout_ms, char **line,
		   size_t *len)
{
	size_t got;

	return read_line_counted(fd, max, timeout_ms, line, len, &got);
}

/* Write within an absolute deadline. */
/* Bytes per send(): small enough that POLLOUT means it will not block. */
#define PG_SEND_CHUNK 4096

static pg_err
write_all_until(int fd, const char *buf, size_t len, int64_t deadline)
{
	size_t off = 0;
	bool sock = true;
	pg_err rc;

	if (fd < 0)
		return PG_EUNAVAIL;

	while (off < len) {
		ssize_t n;

		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc != PG_OK)
			return rc;
		if (sock) {
			/* MSG_DONTWAIT: a blocking socket must not hold us
			 * past the deadline with a large buffer. */
			size_t chunk = len - off < PG_SEND_CHUNK ? len - off :
								    PG_SEND_CHUNK;

			n = send(fd, buf + off, chunk,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno == ENOTSOCK) {
				sock = false;
				continue;
			}
		} else {
			/* After POLLOUT a pipe takes PIPE_BUF bytes without
			 * blocking. */
			size_t chunk = len - off < PIPE_BUF ? len - off :
							      PIPE_BUF;
			n = write(fd, buf + off, chunk);
		}
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == EWOULDBLOCK)
				continue;
			return PG_EUNAVAIL;
		}
		off += (size_t)n;
	}
	return PG_OK;
}

pg_err
pg_proto_write_all(int fd, const char *buf, size_t len, int timeout_ms)
{
	return write_all_until(fd, buf, len,
			       mono_ms() + (timeout_ms > 0 ? timeout_ms : 0));
}

/* ---- the client call --------------------------------------------------------- */

/* Connect FD to ADDR within DEADLINE. */
static pg_err
connect_until(int fd, const struct sockaddr_un *addr, const char *path,
	      int64_t deadline, char *err, size_t errlen)
{
	int e = 0;
	socklen_t elen = sizeof(e);
	pg_err rc;

	for (;;) {
		if (connect(fd, (const struct sockaddr *)addr,
			    sizeof(*addr)) == 0)
			return PG_OK;
		e = errno;
		if (e == EINTR)
			continue;
		if (e != EAGAIN)
			break;
		/* The listen queue is full: the daemon is overloaded. */
		if (left_ms(deadline) == 0) {
			snprintf(err, errlen,
				 "pmpgated at %s is overloaded (connection "
				 "queue full)", path);
			return PG_EBUSY;
		}
		poll(NULL, 0, left_ms(deadline) < 10 ? left_ms(deadline) : 10);
	}
	if (e == EINPROGRESS) {
		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc == PG_ETIMEOUT) {
			snprintf(err, errlen,
				 "timed out connecting to pmpgated at %s", path);
			return rc;
		}
		if (rc != PG_OK ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0)
			e = errno;
		if (e == 0)
			return PG_OK;
	}
	if (e == ENOENT || e == ECONNREFUSED)
		snprintf(err, errlen,
			 "pmpgated is not running (no daemon at %s)", path);
	else
		snprintf(err, errlen, "cannot connect to pmpgated at %s: %s",
			 path, strerror(e));
	return PG_EUNAVAIL;
}

/* Check the answer's envelope; see proto.h. */
static pg_err
check_answer(json_t *a, char *err, size_t errlen)
{
	json_t *v, *st, *ex, *rs, *rules;
	const char *s;
	json_int_t x;
	bool allow;
	size_t i;

	if (!json_is_object(a)) {
		snprintf(err, errlen,
			 "malformed answer from pmpgated: not a JSON object");
		return PG_EPROTO;
	}
	v = json_object_get(a, "v");
	st = json_object_get(a, "status");
	ex = json_object_get(a, "exit");
	rs = json_object_get(a, "reason");
	rules = json_object_get(a, "rules");
	if (!json_is_integer(v) || json_integer_value(v) != PG_PROTO_VERSION) {
		snprintf(err, errlen, "malformed answer from pmpgated: "
			 "missing or unsupported \"v\"");
		return PG_EPROTO;
	}
	if (!json_is_string(st) || !json_is_integer(ex) ||
	    !json_is_string(rs)) {
		snprintf(err, errlen, "malformed answer from pmpgated: "
			 "missing status, exit or reason");
		return PG_EPROTO;
	}
	s = json_string_value(st);
	allow = strcmp(s, "allow") == 0;
	if (!allow && strcmp(s, "deny") != 0 && strcmp(s, "error") != 0) {
		snprintf(err, errlen,
			 "malformed answer from pmpgated: unknown status");
		return PG_EPROTO;
	}
	x = json_integer_value(ex);
	if (x < 0 || x > PG_EXIT_INTERNAL || (x == 0) != allow) {
		snprintf(err, errlen, "malformed answer from pmpgated: "
			 "exit code does not match the status");
		return PG_EPROTO;
	}
	if (strlen(json_string_value(rs)) != json_string_length(rs)) {
		snprintf(err, errlen, "malformed answer from pmpgated: "
			 "NUL character in reason");
		return PG_EPROTO;
	}
	if (rules != NULL) {
		if (!json_is_array(rules)) {
			snprintf(err, errlen, "malformed answer from pmpgated: "
				 "rules is not an array");
			return PG_EPROTO;
		}
		json_array_foreach(rules, i, v)
			if (!json_is_string(v)) {
				snprintf(err, errlen,
					 "malformed answer from pmpgated: "
					 "rules holds a non-string");
				return PG_EPROTO;
			}
	}
	return PG_OK;
}

pg_err
pg_proto_call(const char *socket_path, const pg_proto_req *req,
	      int timeout_ms, json_t **answer, char *err, size_t errlen)
{
	return pg_proto_call_max(socket_path, req, timeout_ms, PG_PROTO_MAX,
				 answer, err, errlen);
}

pg_err
pg_proto_call_max(const char *socket_path, const pg_proto_req *req,
		  int timeout_ms, size_t max, json_t **answer, char *err,
		  size_t errlen)
{
	int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char *reqline = NULL, *line = NULL;
	size_t len = 0, got = 0;
	json_error_t jerr;
	json_t *a = NULL;
	int fd = -1, sent;
	pg_err rc;

	*answer = NULL;
	rc = pg_proto_check_req(req, err, errlen);
	if (rc != PG_OK)
		goto out;
	if (socket_path == NULL || socket_path[0] == '\0' ||
	    strlen(socket_path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "socket path is empty or too long");
		rc = PG_EUSAGE;
		goto out;
	}
	memcpy(addr.sun_path, socket_path, strlen(socket_path) + 1);
	reqline = pg_proto_encode_req(req);
	if (reqline == NULL) {
		snprintf(err, errlen, "cannot encode the request");
		rc = PG_ENOMEM;
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		rc = PG_EINTERNAL;
		goto out;
	}
	rc = connect_until(fd, &addr, socket_path, deadline, err, errlen);
	if (rc != PG_OK)
		goto out;
	rc = write_all_until(fd, reqline, strlen(reqline), deadline);
	if (rc == PG_ETIMEOUT) {
		snprintf(err, errlen, "timed out sending to pmpgated at %s",
			 socket_path);
		goto out;
	}
	/* A daemon that answers at once (busy) may close before reading the
	 * request: its answer is still there to read. */
	sent = rc == PG_OK;
	if (max < PG_PROTO_MAX)
		max = PG_PROTO_MAX;
	if (max > PG_PROTO_MAX_REVIEW)
		max = PG_PROTO_MAX_REVIEW;
	rc = read_line_counted(fd, max, left_ms(deadline), &line, &len, &got);
	if (!sent && rc != PG_OK) {
		snprintf(err, errlen, "pmpgated at %s closed the connection",
			 socket_path);
		rc = PG_EUNAVAIL;
		goto out;
	}
	if (rc == PG_ETIMEOUT) {
		snprintf(err, errlen, "timed out waiting for pmpgated at %s",
			 socket_path);
		goto out;
	}
	if (rc == PG_EPROTO && got == 0) {
		snprintf(err, errlen, "pmpgated at %s closed the connection "
			 "without answering", socket_path);
		rc = PG_EUNAVAIL;
		goto out;
	}
	if (rc == PG_EPROTO) {
		snprintf(err, errlen, "malformed answer from pmpgated: %s "
			 "(at most %zu bytes)", got >= max ? "too long" :
			 "not one complete line", max);
		goto out;
	}
	if (rc != PG_OK) {
		snprintf(err, errlen, "cannot read from pmpgated at %s",
			 socket_path);
		goto out;
	}
	a = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (a == NULL) {
		snprintf(err, errlen,
			 "malformed answer from pmpgated: not valid JSON");
		rc = PG_EPROTO;
		goto out;
	}
	rc = check_answer(a, err, errlen);
	if (rc != PG_OK)
		goto out;
	*answer = a;
	a = NULL;
out:
	if (line != NULL) {
		explicit_bzero(line, len);
		free(line);
	}
	free(reqline);
	json_decref(a);
	if (fd >= 0)
		close(fd);
	return rc;
}
