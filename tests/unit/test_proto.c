/*
 * test_proto.c - the client <-> daemon protocol (client/proto.c).
 *
 * Request decoding vectors, encode/decode round trips, answers, line I/O
 * over socketpairs, and pg_proto_call against a small in-process server.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../client/proto.h"

/* ---- request decoding vectors ---------------------------------------------- */

struct dec_case {
	const char *name;
	const char *json;
	size_t len;		/* 0 = strlen(json) */
	pg_err want;
	/* expected fields when want == PG_OK */
	pg_op op;
	const char *role, *ticket, *user;
	int64_t duration;
	const char *service, *tty, *rhost;
};

#define OK_(n, j, o, r, t, u, d, s, ty, rh) \
	{ n, j, 0, PG_OK, o, r, t, u, d, s, ty, rh }
#define BAD(n, j) { n, j, 0, PG_EUSAGE, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL }
/* With bytes after an embedded NUL: the literal's full length. */
#define BAD_LEN(n, j) \
	{ n, j, sizeof(j) - 1, PG_EUSAGE, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL }

static const struct dec_case dec_cases[] = {
	OK_("issue, every member",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"procurement-manager\","
	    "\"ticket\":\"CHG0012345\",\"duration\":3600,\"context\":"
	    "{\"service\":\"sshd\",\"tty\":\"pts/0\",\"rhost\":\"10.0.0.1\"}}",
	    PG_OP_ISSUE, "procurement-manager", "CHG0012345", NULL, 3600,
	    "sshd", "pts/0", "10.0.0.1"),
	OK_("issue, minimal",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"pmp-administrator\","
	    "\"ticket\":\"T1\"}",
	    PG_OP_ISSUE, "pmp-administrator", "T1", NULL, 0, NULL, NULL, NULL),
	OK_("decide with user",
	    "{\"op\":\"decide\",\"v\":1,\"user\":\"alice\",\"role\":\"r1\","
	    "\"ticket\":\"T1\",\"context\":{\"service\":\"sudo\"}}",
	    PG_OP_DECIDE, "r1", "T1", "alice", 0, "sudo", NULL, NULL),
	OK_("check without ticket",
	    "{\"v\":1,\"op\":\"check\",\"user\":\"bob\",\"role\":\"r-2\"}",
	    PG_OP_CHECK, "r-2", NULL, "bob", 0, NULL, NULL, NULL),
	OK_("check with ticket",
	    "{\"v\":1,\"op\":\"check\",\"role\":\"r\",\"ticket\":\"X\"}",
	    PG_OP_CHECK, "r", "X", NULL, 0, NULL, NULL, NULL),
	OK_("status", "{\"v\":1,\"op\":\"status\"}",
	    PG_OP_STATUS, NULL, NULL, NULL, 0, NULL, NULL, NULL),
	OK_("review", "{\"v\":1,\"op\":\"review\"}",
	    PG_OP_REVIEW, NULL, NULL, NULL, 0, NULL, NULL, NULL),
	OK_("doctor", "{\"v\":1,\"op\":\"doctor\"}",
	    PG_OP_DOCTOR, NULL, NULL, NULL, 0, NULL, NULL, NULL),
	OK_("trailing newline", "{\"v\":1,\"op\":\"status\"}\n",
	    PG_OP_STATUS, NULL, NULL, NULL, 0, NULL, NULL, NULL),
	OK_("whitespace around", "  {\"v\" : 1 , \"op\" : \"status\"}  ",
	    PG_OP_STATUS, NULL, NULL, NULL, 0, NULL, NULL, NULL),
	OK_("duration 0 is not given",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"duration\":0}",
	    PG_OP_ISSUE, "r", "T", NULL, 0, NULL, NULL, NULL),
	OK_("duration at the maximum",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"duration\":43200}",
	    PG_OP_ISSUE, "r", "T", NULL, 43200, NULL, NULL, NULL),
	OK_("empty context strings",
	    "{\"v\":1,\"op\":\"decide\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"context\":{\"rhost\":\"\"}}",
	    PG_OP_DECIDE, "r", "T", NULL, 0, NULL, NULL, ""),
	OK_("UTF-8 in a ticket",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"CHG-\\u00e9\"}",
	    PG_OP_ISSUE, "r", "CHG-\xc3\xa9", NULL, 0, NULL, NULL, NULL),

	BAD("missing v", "{\"op\":\"status\"}"),
	BAD("v is 2", "{\"v\":2,\"op\":\"status\"}"),
	BAD("v is a string", "{\"v\":\"1\",\"op\":\"status\"}"),
	BAD("v is a real", "{\"v\":1.0,\"op\":\"status\"}"),
	BAD("v is true", "{\"v\":true,\"op\":\"status\"}"),
	BAD("v is null", "{\"v\":null,\"op\":\"status\"}"),
	BAD("unknown op", "{\"v\":1,\"op\":\"delete\"}"),
	BAD("op in upper case", "{\"v\":1,\"op\":\"STATUS\"}"),
	BAD("op missing", "{\"v\":1}"),
	BAD("op is a number", "{\"v\":1,\"op\":1}"),
	BAD("unknown top-level member",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"admin\":true}"),
	BAD("unknown context member",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"context\":{\"pid\":\"1\"}}"),
	BAD("status with a role", "{\"v\":1,\"op\":\"status\",\"role\":\"r\"}"),
	BAD("review with a user", "{\"v\":1,\"op\":\"review\",\"user\":\"a\"}"),
	BAD("doctor with a role", "{\"v\":1,\"op\":\"doctor\",\"role\":\"r\"}"),
	BAD("doctor with a context",
	    "{\"v\":1,\"op\":\"doctor\",\"context\":{}}"),
	BAD("doctor in capitals", "{\"v\":1,\"op\":\"DOCTOR\"}"),
	BAD("duplicate key",
	    "{\"v\":1,\"op\":\"status\",\"op\":\"status\"}"),
	BAD("duplicate role",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"a\",\"role\":\"b\","
	    "\"ticket\":\"T\"}"),
	BAD("duplicate key in context",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"context\":{\"tty\":\"a\",\"tty\":\"b\"}}"),
	BAD("top level string", "\"status\""),
	BAD("top level array", "[{\"v\":1,\"op\":\"status\"}]"),
	BAD("top level number", "1"),
	BAD("empty line", ""),
	BAD("not JSON", "v=1&op=status"),
	BAD("truncated JSON", "{\"v\":1,\"op\":"),
	BAD("trailing garbage", "{\"v\":1,\"op\":\"status\"} x"),
	BAD("two objects", "{\"v\":1,\"op\":\"status\"}{\"v\":1,\"op\":\"status\"}"),
	BAD("role is a number",
	    "{\"v\":1,\"op\":\"issue\",\"role\":7,\"ticket\":\"T\"}"),
	BAD("ticket is null",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":null}"),
	BAD("user is an array",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"user\":[\"alice\"]}"),
	BAD("context is a string",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"context\":\"sshd\"}"),
	BAD("context.service is a number",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"context\":{\"service\":1}}"),
	BAD("duration is a string",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"duration\":\"3600\"}"),
	BAD("duration is a real",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"duration\":3600.0}"),
	BAD("duration is negative",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"duration\":-1}"),
	BAD("duration above 12 h",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"duration\":43201}"),
	BAD("duration beyond int64",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"duration\":99999999999999999999}"),
	BAD("duration with exponent",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"duration\":1e3}"),
	BAD("control character in ticket",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"CHG\\u0001\"}"),
	BAD("DEL in user",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"user\":\"al\\u007fice\"}"),
	BAD("newline in context.tty",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"context\":{\"tty\":\"a\\nb\"}}"),
	BAD("escape in context.rhost",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"context\":{\"rhost\":\"\\u001b[2J\"}}"),
	BAD("escaped NUL in ticket",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\\u0000X\"}"),
	BAD("escaped NUL in a key",
	    "{\"v\":1,\"op\":\"status\",\"op\\u0000\":\"status\"}"),
	BAD("invalid UTF-8", "{\"v\":1,\"op\":\"issue\",\"role\":\"r\","
	    "\"ticket\":\"\xff\xfe\"}"),
	BAD("empty role",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"\",\"ticket\":\"T\"}"),
	BAD("role in upper case",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"Procurement-Manager\","
	    "\"ticket\":\"T\"}"),
	BAD("role with a space",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"procurement manager\","
	    "\"ticket\":\"T\"}"),
	BAD("role with an underscore",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"pmp_admin\",\"ticket\":\"T\"}"),
	BAD("role with a slash",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"../x\",\"ticket\":\"T\"}"),
	BAD("issue without role", "{\"v\":1,\"op\":\"issue\",\"ticket\":\"T\"}"),
	BAD("issue without ticket", "{\"v\":1,\"op\":\"issue\",\"role\":\"r\"}"),
	BAD("decide without ticket",
	    "{\"v\":1,\"op\":\"decide\",\"role\":\"r\"}"),
	BAD("check without role", "{\"v\":1,\"op\":\"check\",\"user\":\"a\"}"),
	BAD("empty ticket",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"\"}"),
	BAD("empty user",
	    "{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"T\","
	    "\"user\":\"\"}"),
	BAD_LEN("raw NUL byte in the line",
		"{\"v\":1,\"op\":\"status\"}\0junk"),
	BAD_LEN("raw NUL byte inside a string",
		"{\"v\":1,\"op\":\"issue\",\"role\":\"r\",\"ticket\":\"A\0B\"}"),
};

static void
assert_str_eq_or_null(const char *want, const char *got)
{
	if (want == NULL)
		assert_null(got);
	else {
		assert_non_null(got);
		assert_string_equal(want, got);
	}
}

static void
test_decode_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(dec_cases) / sizeof(dec_cases[0]); i++) {
		const struct dec_case *c = &dec_cases[i];
		size_t len = c->len ? c->len : strlen(c->json);
		char err[256] = "";
		json_t *doc = (json_t *)1;
		pg_proto_req req;
		pg_err rc;

		rc = pg_proto_decode_req(c->json, len, &doc, &req, err,
					 sizeof(err));
		if (rc != c->want)
			fail_msg("case \"%s\": got %s (%s), want %s", c->name,
				 pg_err_name(rc), err, pg_err_name(c->want));
		if (rc != PG_OK) {
			assert_null(doc);
			if (err[0] == '\0')
				fail_msg("case \"%s\": no message", c->name);
			continue;
		}
		assert_non_null(doc);
		assert_int_equal(req.op, c->op);
		assert_str_eq_or_null(c->role, req.role);
		assert_str_eq_or_null(c->ticket, req.ticket);
		assert_str_eq_or_null(c->user, req.user);
		assert_int_equal(req.duration, c->duration);
		assert_str_eq_or_null(c->service, req.service);
		assert_str_eq_or_null(c->tty, req.tty);
		assert_str_eq_or_null(c->rhost, req.rhost);
		json_decref(doc);
	}
}

/* An issue request with one string member (or context member) of N
 * bytes of FILL. */
static char *
request_with(const char *member, const char *ctxmember, size_t n, char fill)
{
	size_t cap = n + 256;
	char *val = malloc(n + 1), *line = malloc(cap);

	assert_non_null(val);
	assert_non_null(line);
	memset(val, fill, n);
	val[n] = '\0';
	if (ctxmember != NULL)
		snprintf(line, cap, "{\"v\":1,\"op\":\"issue\",\"role\":\"r\","
			 "\"ticket\":\"T\",\"context\":{\"%s\":\"%s\"}}",
			 ctxmember, val);
	else if (strcmp(member, "ticket") == 0)
		snprintf(line, cap, "{\"v\":1,\"op\":\"issue\",\"role\":\"r\","
			 "\"ticket\":\"%s\"}", val);
	else if (strcmp(member, "role") == 0)
		snprintf(line, cap, "{\"v\":1,\"op\":\"issue\",\"role\":\"%s\","
			 "\"ticket\":\"T\"}", val);
	else
		snprintf(line, cap, "{\"v\":1,\"op\":\"issue\",\"role\":\"r\","
			 "\"ticket\":\"T\",\"%s\":\"%s\"}", member, val);
	free(val);
	return line;
}

static pg_err
decode_str(const char *line)
{
	char err[256];
	json_t *doc = NULL;
	pg_proto_req req;
	pg_err rc;

	rc = pg_proto_decode_req(line, strlen(line), &doc, &req, err,
				 sizeof(err));
	json_decref(doc);
	return rc;
}

static void
test_decode_lengths(void **state)
{
	static const struct {
		const char *member, *ctx;
		size_t max;
		char fill;
	} lim[] = {
		{ "user", NULL, PG_PROTO_MAX_NAME, 'u' },
		{ "ticket", NULL, PG_PROTO_MAX_NAME, 't' },
		{ "role", NULL, PG_PROTO_MAX_ROLE, 'r' },
		{ NULL, "service", PG_PROTO_MAX_CTX, 's' },
		{ NULL, "tty", PG_PROTO_MAX_CTX, 't' },
		{ NULL, "rhost", PG_PROTO_MAX_CTX, 'h' },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
		char *ok = request_with(lim[i].member, lim[i].ctx, lim[i].max,
					lim[i].fill);
		char *bad = request_with(lim[i].member, lim[i].ctx,
					 lim[i].max + 1, lim[i].fill);
		if (decode_str(ok) != PG_OK)
			fail_msg("%s%s of %zu bytes refused", lim[i].member ?
				 lim[i].member : "context.", lim[i].ctx ?
				 lim[i].ctx : "", lim[i].max);
		if (decode_str(bad) != PG_EUSAGE)
			fail_msg("%s%s of %zu bytes accepted", lim[i].member ?
				 lim[i].member : "context.", lim[i].ctx ?
				 lim[i].ctx : "", lim[i].max + 1);
		free(ok);
		free(bad);
	}
}

/* A status request padded with spaces to exactly N bytes. */
static char *
padded_status(size_t n)
{
	const char *base = "{\"v\":1,\"op\":\"status\"}";
	char *line = malloc(n + 1);

	assert_non_null(line);
	memset(line, ' ', n);
	memcpy(line, base, strlen(base));
	line[n] = '\0';
	return line;
}

static void
test_decode_size_limit(void **state)
{
	char err[256];
	json_t *doc = NULL;
	pg_proto_req req;
	char *line;

	(void)state;
	/* PG_PROTO_MAX counts the newline: PG_PROTO_MAX - 1 bytes of JSON. */
	line = padded_status(PG_PROTO_MAX - 1);
	assert_int_equal(pg_proto_decode_req(line, PG_PROTO_MAX - 1, &doc,
					     &req, err, sizeof(err)), PG_OK);
	json_decref(doc);
	free(line);

	line = padded_status(PG_PROTO_MAX);
	assert_int_equal(pg_proto_decode_req(line, PG_PROTO_MAX, &doc, &req,
					     err, sizeof(err)), PG_EUSAGE);
	assert_null(doc);
	free(line);

	line = padded_status(PG_PROTO_MAX + 4096);
	assert_int_equal(pg_proto_decode_req(line, PG_PROTO_MAX + 4096, &doc,
					     &req, err, sizeof(err)),
			 PG_EUSAGE);
	free(line);
}

/* Messages never repeat untrusted values. */
static void
test_decode_message_hides_values(void **state)
{
	const char *line = "{\"v\":1,\"op\":\"issue\",\"role\":\"SECRETROLE\","
			   "\"ticket\":\"T\"}";
	const char *line2 = "{\"v\":1,\"op\":\"issue\",\"role\":\"r\","
			    "\"ticket\":\"T\",\"x\\u001b[31m\":1}";
	char err[256];
	json_t *doc = NULL;
	pg_proto_req req;

	(void)state;
	assert_int_equal(pg_proto_decode_req(line, strlen(line), &doc, &req,
					     err, sizeof(err)), PG_EUSAGE);
	assert_null(strstr(err, "SECRETROLE"));
	assert_int_equal(pg_proto_decode_req(line2, strlen(line2), &doc, &req,
					     err, sizeof(err)), PG_EUSAGE);
	assert_null(strchr(err, '\x1b'));
	assert_non_null(strstr(err, "unknown member"));

	/* Syntax errors describe, never quote, the input. */
	line = "{\"v\":1,\"op\":\"status\"} SECRETGARBAGE\x1b";
	assert_int_equal(pg_proto_decode_req(line, strlen(line), &doc, &req,
					     err, sizeof(err)), PG_EUSAGE);
	assert_null(strstr(err, "SECRETGARBAGE"));
	assert_null(strchr(err, '\x1b'));
	assert_non_null(strstr(err, "not valid JSON"));
	line = "{\"v\":1,\"op\":\"status\",\"op\":\"SECRETDUP\"}";
	assert_int_equal(pg_proto_decode_req(line, strlen(line), &doc, &req,
					     err, sizeof(err)), PG_EUSAGE);
	assert_null(strstr(err, "SECRETDUP"));
}

/* ---- encoding ---------------------------------------------------------------- */

static void
test_round_trip(void **state)
{
	const pg_proto_req reqs[] = {
		{ .op = PG_OP_ISSUE, .role = "procurement-manager",
		  .ticket = "CHG0012345", .duration = 900,
		  .service = "credential_process", .tty = "/dev/pts/3" },
		{ .op = PG_OP_DECIDE, .user = "alice", .role = "pmp-administrator",
		  .ticket = "RITM 42 \"quoted\" \\ back", .service = "sshd",
		  .tty = "ssh", .rhost = "192.0.2.7" },
		{ .op = PG_OP_CHECK, .user = "bob", .role = "r" },
		{ .op = PG_OP_REVIEW },
		{ .op = PG_OP_STATUS },
		{ .op = PG_OP_ISSUE, .role = "r", .ticket = "\xc3\xa9t\xc3\xa9",
		  .duration = 43200, .rhost = "" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		char *line = pg_proto_encode_req(&reqs[i]);
		char err[256];
		json_t *doc = NULL;
		pg_proto_req got;
		size_t n;

		assert_non_null(line);
		n = strlen(line);
		assert_true(n > 1);
		assert_int_equal(line[n - 1], '\n');
		assert_null(memchr(line, '\n', n - 1));
		assert_int_equal(pg_proto_decode_req(line, n, &doc, &got, err,
						     sizeof(err)), PG_OK);
		assert_int_equal(got.op, reqs[i].op);
		assert_str_eq_or_null(reqs[i].user, got.user);
		assert_str_eq_or_null(reqs[i].role, got.role);
		assert_str_eq_or_null(reqs[i].ticket, got.ticket);
		assert_int_equal(got.duration, reqs[i].duration);
		assert_str_eq_or_null(reqs[i].service, got.service);
		assert_str_eq_or_null(reqs[i].tty, got.tty);
		assert_str_eq_or_null(reqs[i].rhost, got.rhost);
		json_decref(doc);
		free(line);
	}
}

static void
test_encode_exact(void **state)
{
	pg_proto_req r = { .op = PG_OP_ISSUE, .role = "procurement-manager",
			   .ticket = "CHG1", .duration = 3600,
			   .service = "credential_process" };
	pg_proto_req s = { .op = PG_OP_STATUS };
	char *line;

	(void)state;
	line = pg_proto_encode_req(&r);
	assert_non_null(line);
	assert_string_equal(line,
		"{\"v\":1,\"op\":\"issue\",\"role\":\"procurement-manager\","
		"\"ticket\":\"CHG1\",\"duration\":3600,\"context\":"
		"{\"service\":\"credential_process\"}}\n");
	free(line);
	line = pg_proto_encode_req(&s);
	assert_non_null(line);
	assert_string_equal(line, "{\"v\":1,\"op\":\"status\"}\n");
	free(line);
}

static void
test_encode_refuses_invalid(void **state)
{
	const pg_proto_req bad[] = {
		{ .op = PG_OP_ISSUE, .ticket = "T" },			/* no role */
		{ .op = PG_OP_ISSUE, .role = "r" },			/* no ticket */
		{ .op = PG_OP_ISSUE, .role = "R", .ticket = "T" },	/* role */
		{ .op = PG_OP_ISSUE, .role = "r", .ticket = "a\nb" },
		{ .op = PG_OP_ISSUE, .role = "r", .ticket = "T",
		  .duration = -5 },
		{ .op = PG_OP_ISSUE, .role = "r", .ticket = "T",
		  .duration = 43201 },
		{ .op = PG_OP_ISSUE, .role = "r", .ticket = "T",
		  .user = "" },
		{ .op = PG_OP_ISSUE, .role = "r", .ticket = "T",
		  .tty = "\x1b]0;x\x07" },
		{ .op = PG_OP_STATUS, .role = "r" },
		{ .op = PG_OP_REVIEW, .duration = 1 },
		{ .op = (pg_op)99 },
		{ .op = PG_OP_ISSUE, .role = "r", .ticket = "\xff" }, /* UTF-8 */
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *line = pg_proto_encode_req(&bad[i]);
		if (line != NULL)
			fail_msg("bad request %zu was encoded: %s", i, line);
		if (i + 1 < sizeof(bad) / sizeof(bad[0]))
			assert_int_equal(pg_proto_check_req(&bad[i], err,
							    sizeof(err)),
					 PG_EUSAGE);
	}
	assert_null(pg_proto_encode_req(NULL));
}

static void
test_op_names(void **state)
{
	(void)state;
	assert_string_equal(pg_op_name(PG_OP_ISSUE), "issue");
	assert_string_equal(pg_op_name(PG_OP_DECIDE), "decide");
	assert_string_equal(pg_op_name(PG_OP_CHECK), "check");
	assert_string_equal(pg_op_name(PG_OP_REVIEW), "review");
	assert_string_equal(pg_op_name(PG_OP_STATUS), "status");
	assert_string_equal(pg_op_name(PG_OP_DOCTOR), "doctor");
	assert_string_equal(pg_op_name((pg_op)42), "unknown");
}

static void
test_role_valid(void **state)
{
	static const struct { const char *s; int ok; } v[] = {
		{ "procurement-manager", 1 }, { "pmp-administrator", 1 },
		{ "a", 1 }, { "0-9", 1 },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1 },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0 },
		{ "", 0 }, { "A", 0 }, { "a b", 0 }, { "a_b", 0 }, { "a.b", 0 },
		{ "a\n", 0 }, { "\xc3\xa9", 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (pg_proto_role_valid(v[i].s) != v[i].ok)
			fail_msg("role \"%s\": want %d", v[i].s, v[i].ok);
	assert_int_equal(pg_proto_role_valid(NULL), 0);
}

static void
test_parse_duration(void **state)
{
	static const struct { const char *s; pg_err rc; int64_t want; } v[] = {
		{ "900", PG_OK, 900 }, { "900s", PG_OK, 900 },
		{ "15m", PG_OK, 900 }, { "1h", PG_OK, 3600 },
		{ "12h", PG_OK, 43200 }, { "43200", PG_OK, 43200 },
		{ "1", PG_OK, 1 }, { "720m", PG_OK, 43200 },
		{ "0", PG_EUSAGE, 0 }, { "0h", PG_EUSAGE, 0 },
		{ "43201", PG_EUSAGE, 0 }, { "13h", PG_EUSAGE, 0 },
		{ "721m", PG_EUSAGE, 0 }, { "1d", PG_EUSAGE, 0 },
		{ "", PG_EUSAGE, 0 }, { "h", PG_EUSAGE, 0 },
		{ "-900", PG_EUSAGE, 0 }, { "+900", PG_EUSAGE, 0 },
		{ " 900", PG_EUSAGE, 0 }, { "900 ", PG_EUSAGE, 0 },
		{ "1hm", PG_EUSAGE, 0 }, { "1.5h", PG_EUSAGE, 0 },
		{ "99999999999999999999999", PG_EUSAGE, 0 },
		{ "0x10", PG_EUSAGE, 0 }, { "15M", PG_EUSAGE, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		int64_t got = -1;
		pg_err rc = pg_proto_parse_duration(v[i].s, &got);
		if (rc != v[i].rc)
			fail_msg("duration \"%s\": got %s", v[i].s,
				 pg_err_name(rc));
		if (rc == PG_OK)
			assert_int_equal(got, v[i].want);
		else
			assert_int_equal(got, -1);
	}
	assert_int_equal(pg_proto_parse_duration(NULL, NULL), PG_EUSAGE);
}

/* ---- answers ------------------------------------------------------------------ */

static void
test_answer(void **state)
{
	const char *rules[] = { "R3", "R4" };
	json_t *a;
	char *text;

	(void)state;
	a = pg_proto_answer("deny", rules, 2, "ticket CHG1 is not approved "
			    "(R3 ticket-not-approved)", 1);
	assert_non_null(a);
	text = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_non_null(text);
	assert_string_equal(text, "{\"v\":1,\"status\":\"deny\",\"rules\":"
			    "[\"R3\",\"R4\"],\"reason\":\"ticket CHG1 is not "
			    "approved (R3 ticket-not-approved)\",\"exit\":1}");
	free(text);
	json_decref(a);

	a = pg_proto_answer("allow", NULL, 0, NULL, 0);
	assert_non_null(a);
	assert_string_equal(json_string_value(json_object_get(a, "reason")), "");
	assert_int_equal(json_array_size(json_object_get(a, "rules")), 0);
	json_decref(a);

	/* One line, whatever the reason holds. */
	a = pg_proto_answer("error", NULL, 0, "line1\nline2\x1b[0m\x7f", 3);
	assert_non_null(a);
	assert_string_equal(json_string_value(json_object_get(a, "reason")),
			    "line1?line2?[0m?");
	json_decref(a);

	a = pg_proto_answer("error", NULL, 0, "bad \xff utf8 \xc3\xa9", 4);
	assert_non_null(a);
	assert_string_equal(json_string_value(json_object_get(a, "reason")),
			    "bad ? utf8 ??");
	json_decref(a);

	assert_null(pg_proto_answer("maybe", NULL, 0, "x", 1));
	assert_null(pg_proto_answer(NULL, NULL, 0, "x", 1));
	assert_null(pg_proto_answer("allow", NULL, 0, "x", 1));
	assert_null(pg_proto_answer("deny", NULL, 0, "x", 0));
	assert_null(pg_proto_answer("error", NULL, 0, "x", 5));
	assert_null(pg_proto_answer("error", NULL, 0, "x", -1));
}

/* ---- line I/O ------------------------------------------------------------------ */

static void
make_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				    sv), 0);
}

static void
put(int fd, const char *buf, size_t len)
{
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
test_read_line_limits(void **state)
{
	const size_t max = 64;
	char buf[200];
	char *line = NULL;
	size_t len = 99;
	int sv[2];

	(void)state;
	/* max - 1 bytes and the newline: exactly max. */
	make_pair(sv);
	memset(buf, 'x', max - 1);
	buf[max - 1] = '\n';
	put(sv[1], buf, max);
	assert_int_equal(pg_proto_read_line(sv[0], max, 1000, &line, &len),
			 PG_OK);
	assert_int_equal(len, max - 1);
	assert_int_equal(strlen(line), max - 1);
	free(line);
	close(sv[0]);
	close(sv[1]);

	/* max bytes and the newline: one too many. */
	make_pair(sv);
	memset(buf, 'x', max);
	buf[max] = '\n';
	put(sv[1], buf, max + 1);
	line = (char *)1;
	assert_int_equal(pg_proto_read_line(sv[0], max, 1000, &line, &len),
			 PG_EPROTO);
	assert_null(line);
	close(sv[0]);
	close(sv[1]);

	/* An endless line without a newline stops at max. */
	make_pair(sv);
	memset(buf, 'y', sizeof(buf));
	put(sv[1], buf, sizeof(buf));
	assert_int_equal(pg_proto_read_line(sv[0], max, 1000, &line, &len),
			 PG_EPROTO);
	close(sv[0]);
	close(sv[1]);
}

static void
test_read_line_content(void **state)
{
	char *line = NULL;
	size_t len = 0;
	int sv[2];

	(void)state;
	/* Bytes after the newline are dropped. */
	make_pair(sv);
	put(sv[1], "abc\ndef\n", 8);
	assert_int_equal(pg_proto_read_line(sv[0], 100, 1000, &line, &len),
			 PG_OK);
	assert_int_equal(len, 3);
	assert_string_equal(line, "abc");
	free(line);
	close(sv[0]);
	close(sv[1]);

	/* An empty line. */
	make_pair(sv);
	put(sv[1], "\n", 1);
	assert_int_equal(pg_proto_read_line(sv[0], 100, 1000, &line, &len),
			 PG_OK);
	assert_int_equal(len, 0);
	assert_string_equal(line, "");
	free(line);
	close(sv[0]);
	close(sv[1]);

	/* A NUL byte inside the line. */
	make_pair(sv);
	put(sv[1], "a\0b\n", 4);
	assert_int_equal(pg_proto_read_line(sv[0], 100, 1000, &line, &len),
			 PG_EPROTO);
	assert_null(line);
	close(sv[0]);
	close(sv[1]);

	/* EOF in the middle of a line. */
	make_pair(sv);
	put(sv[1], "{\"v\":1", 6);
	close(sv[1]);
	assert_int_equal(pg_proto_read_line(sv[0], 100, 1000, &line, &len),
			 PG_EPROTO);
	assert_null(line);
	close(sv[0]);

	/* EOF before any byte. */
	make_pair(sv);
	close(sv[1]);
	assert_int_equal(pg_proto_read_line(sv[0], 100, 1000, &line, &len),
			 PG_EPROTO);
	close(sv[0]);

	/* A zero max never accepts a line. */
	make_pair(sv);
	put(sv[1], "\n", 1);
	assert_int_equal(pg_proto_read_line(sv[0], 0, 1000, &line, &len),
			 PG_EPROTO);
	close(sv[0]);
	close(sv[1]);

	/* Read errors: no descriptor, a closed descriptor. */
	assert_int_equal(pg_proto_read_line(-1, 100, 100, &line, &len),
			 PG_EUNAVAIL);
	make_pair(sv);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(pg_proto_read_line(sv[0], 100, 100, &line, &len),
			 PG_EUNAVAIL);
	assert_null(line);
}

struct slow_writer {
	int fd;
};

static void *
slow_writer_main(void *arg)
{
	struct slow_writer *w = arg;
	struct timespec d = { 0, 30 * 1000 * 1000 };

	(void)!write(w->fd, "{\"v\":", 5);
	nanosleep(&d, NULL);
	(void)!write(w->fd, "1}", 2);
	nanosleep(&d, NULL);
	(void)!write(w->fd, "\n", 1);
	return NULL;
}

static void
test_read_line_pieces(void **state)
{
	struct slow_writer w;
	pthread_t th;
	char *line = NULL;
	size_t len = 0;
	int sv[2];

	(void)state;
	make_pair(sv);
	w.fd = sv[1];
	assert_int_equal(pthread_create(&th, NULL, slow_writer_main, &w), 0);
	assert_int_equal(pg_proto_read_line(sv[0], 100, 2000, &line, &len),
			 PG_OK);
	assert_string_equal(line, "{\"v\":1}");
	free(line);
	pthread_join(th, NULL);
	close(sv[0]);
	close(sv[1]);
}

static void
test_read_line_timeout(void **state)
{
	char *line = NULL;
	size_t len = 0;
	int64_t t0;
	int sv[2];

	(void)state;
	make_pair(sv);
	put(sv[1], "partial", 7);
	t0 = now_ms();
	assert_int_equal(pg_proto_read_line(sv[0], 100, 100, &line, &len),
			 PG_ETIMEOUT);
	assert_true(now_ms() - t0 >= 90);
	assert_true(now_ms() - t0 < 2000);
	assert_null(line);
	close(sv[0]);
	close(sv[1]);
}

static void
test_write_all(void **state)
{
	char *big, *line = NULL;
	size_t len = 0, n = 4 << 20;
	int64_t t0;
	int sv[2];

	(void)state;
	make_pair(sv);
	assert_int_equal(pg_proto_write_all(sv[0], "hello\n", 6, 1000), PG_OK);
	assert_int_equal(pg_proto_read_line(sv[1], 100, 1000, &line, &len),
			 PG_OK);
	assert_string_equal(line, "hello");
	free(line);

	/* A peer that never reads: the deadline stops the writer. */
	big = calloc(1, n);
	assert_non_null(big);
	t0 = now_ms();
	assert_int_equal(pg_proto_write_all(sv[0], big, n, 100), PG_ETIMEOUT);
	assert_true(now_ms() - t0 < 2000);
	close(sv[0]);
	close(sv[1]);

	/* A peer that has gone: no SIGPIPE, an error. */
	make_pair(sv);
	close(sv[1]);
	assert_int_equal(pg_proto_write_all(sv[0], big, n, 1000), PG_EUNAVAIL);
	close(sv[0]);
	free(big);

	/* Not a socket: a pipe. */
	assert_int_equal(pipe(sv), 0);
	assert_int_equal(pg_proto_write_all(sv[1], "x\n", 2, 1000), PG_OK);
	assert_int_equal(pg_proto_read_line(sv[0], 100, 1000, &line, &len),
			 PG_OK);
	assert_string_equal(line, "x");
	free(line);
	close(sv[0]);
	close(sv[1]);
}

/* ---- pg_proto_call against a small server ------------------------------------- */

enum srv_mode { SRV_ANSWER, SRV_CLOSE, SRV_HANG };

struct server {
	char dir[64], path[128];
	int lfd;
	pthread_t th;
	enum srv_mode mode;
	const char *answer;
	size_t answer_len;
	char request[4096];
	size_t request_len;
};

static void *
server_main(void *arg)
{
	struct server *s = arg;
	char *line = NULL;
	size_t len = 0;
	int fd;

	fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	if (pg_proto_read_line(fd, PG_PROTO_MAX, 5000, &line, &len) == PG_OK &&
	    len < sizeof(s->request)) {
		memcpy(s->request, line, len + 1);
		s->request_len = len;
	}
	free(line);
	if (s->mode == SRV_ANSWER)
		pg_proto_write_all(fd, s->answer, s->answer_len, 5000);
	if (s->mode == SRV_HANG) {
		/* Until the client gives up and closes. */
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char c;
		while (poll(&p, 1, 5000) > 0 && read(fd, &c, 1) > 0)
			;
	}
	close(fd);
	return NULL;
}

static void
server_start(struct server *s, enum srv_mode mode, const char *answer,
	     size_t answer_len)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	memset(s, 0, sizeof(*s));
	strcpy(s->dir, "/tmp/pgproto.XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/socket", s->dir);
	strcpy(a.sun_path, s->path);
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 4), 0);
	s->mode = mode;
	s->answer = answer;
	s->answer_len = answer ? (answer_len ? answer_len : strlen(answer)) : 0;
	assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void
server_stop(struct server *s)
{
	pthread_join(s->th, NULL);
	close(s->lfd);
	unlink(s->path);
	rmdir(s->dir);
}

static const pg_proto_req issue_req = {
	.op = PG_OP_ISSUE, .role = "procurement-manager", .ticket = "CHG7",
	.duration = 900, .service = "credential_process",
};

static void
test_call_answers(void **state)
{
	static const struct {
		const char *name, *answer;
		pg_err want;
	} v[] = {
		{ "allow", "{\"v\":1,\"status\":\"allow\",\"rules\":[],"
		  "\"reason\":\"\",\"exit\":0,\"credentials\":{}}\n", PG_OK },
		{ "deny", "{\"v\":1,\"status\":\"deny\",\"rules\":[\"R3\"],"
		  "\"reason\":\"no (R3 ticket-not-approved)\",\"exit\":1}\n",
		  PG_OK },
		{ "error 3", "{\"v\":1,\"status\":\"error\",\"reason\":\"ldap "
		  "down\",\"exit\":3}\n", PG_OK },
		{ "not JSON", "hello\n", PG_EPROTO },
		{ "array", "[1]\n", PG_EPROTO },
		{ "no v", "{\"status\":\"deny\",\"reason\":\"x\",\"exit\":1}\n",
		  PG_EPROTO },
		{ "v 2", "{\"v\":2,\"status\":\"deny\",\"reason\":\"x\","
		  "\"exit\":1}\n", PG_EPROTO },
		{ "no status", "{\"v\":1,\"reason\":\"x\",\"exit\":1}\n",
		  PG_EPROTO },
		{ "unknown status", "{\"v\":1,\"status\":\"ok\",\"reason\":\"x\","
		  "\"exit\":0}\n", PG_EPROTO },
		{ "no exit", "{\"v\":1,\"status\":\"deny\",\"reason\":\"x\"}\n",
		  PG_EPROTO },
		{ "exit a string", "{\"v\":1,\"status\":\"deny\",\"reason\":\"x\","
		  "\"exit\":\"1\"}\n", PG_EPROTO },
		{ "no reason", "{\"v\":1,\"status\":\"deny\",\"exit\":1}\n",
		  PG_EPROTO },
		{ "deny with exit 0", "{\"v\":1,\"status\":\"deny\","
		  "\"reason\":\"x\",\"exit\":0}\n", PG_EPROTO },
		{ "allow with exit 1", "{\"v\":1,\"status\":\"allow\","
		  "\"reason\":\"x\",\"exit\":1}\n", PG_EPROTO },
		{ "exit 5", "{\"v\":1,\"status\":\"error\",\"reason\":\"x\","
		  "\"exit\":5}\n", PG_EPROTO },
		{ "rules not an array", "{\"v\":1,\"status\":\"deny\","
		  "\"rules\":\"R1\",\"reason\":\"x\",\"exit\":1}\n", PG_EPROTO },
		{ "rules of numbers", "{\"v\":1,\"status\":\"deny\","
		  "\"rules\":[1],\"reason\":\"x\",\"exit\":1}\n", PG_EPROTO },
		{ "duplicate status", "{\"v\":1,\"status\":\"deny\","
		  "\"status\":\"allow\",\"reason\":\"x\",\"exit\":1}\n",
		  PG_EPROTO },
		{ "no newline", "{\"v\":1,\"status\":\"deny\",\"reason\":\"x\","
		  "\"exit\":1}", PG_EPROTO },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct server s;
		json_t *a = (json_t *)1;
		char err[512] = "";
		pg_err rc;

		server_start(&s, SRV_ANSWER, v[i].answer, 0);
		rc = pg_proto_call(s.path, &issue_req, 3000, &a, err,
				   sizeof(err));
		server_stop(&s);
		if (rc != v[i].want)
			fail_msg("answer \"%s\": got %s (%s)", v[i].name,
				 pg_err_name(rc), err);
		if (rc == PG_OK) {
			assert_non_null(a);
			json_decref(a);
		} else {
			assert_null(a);
			assert_non_null(strstr(err, "malformed answer"));
		}
		/* What the server received: the encoded request, one line. */
		assert_string_equal(s.request,
			"{\"v\":1,\"op\":\"issue\",\"role\":\"procurement-manager\","
			"\"ticket\":\"CHG7\",\"duration\":900,\"context\":"
			"{\"service\":\"credential_process\"}}");
	}
}

static void
test_call_too_long(void **state)
{
	size_t n = PG_PROTO_MAX + 100;
	char *big = malloc(n);
	struct server s;
	json_t *a = NULL;
	char err[512];

	(void)state;
	assert_non_null(big);
	memset(big, ' ', n);
	big[n - 1] = '\n';
	server_start(&s, SRV_ANSWER, big, n);
	assert_int_equal(pg_proto_call(s.path, &issue_req, 3000, &a, err,
				       sizeof(err)), PG_EPROTO);
	server_stop(&s);
	assert_null(a);
	free(big);
}

/* pg_proto_call_max: a review-sized answer passes, one over the given
 * maximum does not, and the maximum is clamped to PG_PROTO_MAX_REVIEW. */
static void
test_call_max(void **state)
{
	static const pg_proto_req review = { .op = PG_OP_REVIEW };
	static const struct {
		size_t answer_len, max;
		pg_err want;
	} v[] = {
		{ PG_PROTO_MAX + 100, PG_PROTO_MAX * 4, PG_OK },
		{ PG_PROTO_MAX + 100, 0, PG_EPROTO },	/* clamped up to 64 KiB */
		{ PG_PROTO_MAX * 4 + 1, PG_PROTO_MAX * 4, PG_EPROTO },
		{ PG_PROTO_MAX * 4, PG_PROTO_MAX * 4, PG_OK },
		{ 200, (size_t)-1, PG_OK },		/* clamped down */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		static const char head[] = "{\"v\":1,\"status\":\"allow\","
			"\"reason\":\"\",\"exit\":0,\"pad\":\"";
		size_t n = v[i].answer_len;
		char *big = malloc(n);
		struct server s;
		json_t *a = NULL;
		char err[512] = "";
		pg_err rc;

		assert_non_null(big);
		memcpy(big, head, sizeof(head) - 1);
		memset(big + sizeof(head) - 1, 'x', n - (sizeof(head) - 1) - 3);
		memcpy(big + n - 3, "\"}\n", 3);
		server_start(&s, SRV_ANSWER, big, n);
		rc = pg_proto_call_max(s.path, &review, 3000, v[i].max, &a, err,
				       sizeof(err));
		server_stop(&s);
		if (rc != v[i].want)
			fail_msg("case %zu: got %s (%s)", i, pg_err_name(rc),
				 err);
		if (rc == PG_OK)
			assert_int_equal(json_string_length(json_object_get(
				a, "pad")), n - (sizeof(head) - 1) - 3);
		else
			assert_non_null(strstr(err, "too long"));
		assert_string_equal(s.request, "{\"v\":1,\"op\":\"review\"}");
		json_decref(a);
		free(big);
	}
}

static void
test_call_unavailable(void **state)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/pgproto.XXXXXX", path[128], err[512], longp[200];
	struct server s;
	json_t *a = NULL;
	int64_t t0;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/socket", dir);

	/* No socket file at all. */
	assert_int_equal(pg_proto_call(path, &issue_req, 1000, &a, err,
				       sizeof(err)), PG_EUNAVAIL);
	assert_non_null(strstr(err, "not running"));
	assert_non_null(strstr(err, path));
	assert_null(a);

	/* A socket file nobody listens on. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(addr.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
	assert_int_equal(pg_proto_call(path, &issue_req, 1000, &a, err,
				       sizeof(err)), PG_EUNAVAIL);
	assert_non_null(strstr(err, "not running"));
	unlink(path);

	/* Not a socket. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(pg_proto_call(path, &issue_req, 1000, &a, err,
				       sizeof(err)), PG_EUNAVAIL);
	assert_non_null(strstr(err, path));
	unlink(path);
	rmdir(dir);

	/* A path that does not fit, and a request that is invalid. */
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(pg_proto_call(longp, &issue_req, 1000, &a, err,
				       sizeof(err)), PG_EUSAGE);
	assert_int_equal(pg_proto_call("", &issue_req, 1000, &a, err,
				       sizeof(err)), PG_EUSAGE);
	{
		pg_proto_req bad = issue_req;
		bad.role = "Bad Role";
		assert_int_equal(pg_proto_call("/nonexistent", &bad, 1000, &a,
					       err, sizeof(err)), PG_EUSAGE);
	}

	/* Closed without a byte of answer. */
	server_start(&s, SRV_CLOSE, NULL, 0);
	assert_int_equal(pg_proto_call(s.path, &issue_req, 3000, &a, err,
				       sizeof(err)), PG_EUNAVAIL);
	assert_non_null(strstr(err, "without answering"));
	server_stop(&s);

	/* Never answers: the client deadline. */
	server_start(&s, SRV_HANG, NULL, 0);
	t0 = now_ms();
	assert_int_equal(pg_proto_call(s.path, &issue_req, 200, &a, err,
				       sizeof(err)), PG_ETIMEOUT);
	assert_true(now_ms() - t0 >= 190);
	assert_true(now_ms() - t0 < 3000);
	assert_non_null(strstr(err, "timed out"));
	server_stop(&s);
	assert_null(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_vectors),
		cmocka_unit_test(test_decode_lengths),
		cmocka_unit_test(test_decode_size_limit),
		cmocka_unit_test(test_decode_message_hides_values),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_encode_exact),
		cmocka_unit_test(test_encode_refuses_invalid),
		cmocka_unit_test(test_op_names),
		cmocka_unit_test(test_role_valid),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_answer),
		cmocka_unit_test(test_read_line_limits),
		cmocka_unit_test(test_read_line_content),
		cmocka_unit_test(test_read_line_pieces),
		cmocka_unit_test(test_read_line_timeout),
		cmocka_unit_test(test_write_all),
		cmocka_unit_test(test_call_answers),
		cmocka_unit_test(test_call_too_long),
		cmocka_unit_test(test_call_max),
		cmocka_unit_test(test_call_unavailable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
