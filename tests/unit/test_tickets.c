/* test_tickets.c - ticket ids, the field map over ServiceNow and Jira
 * shaped documents, bad values in every field, and the fetch checks that
 * happen before any request. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../core/tickets.h"

/* ---- configuration built by hand ------------------------------------ */

enum map_kind { MAP_SERVICENOW, MAP_JIRA };

static char *sn_states[] = { "approved", NULL };
static char *jira_states[] = { "Approved", "Done", NULL };

static void
cfg_init(pg_config *c, enum map_kind kind, const char *pattern)
{
	char re[512];

	memset(c, 0, sizeof(*c));
	if (kind == MAP_SERVICENOW) {
		c->tickets.provider = PG_TICKETS_SERVICENOW;
		c->tickets.field[PG_FIELD_STATE] = "/result/*/approval";
		c->tickets.field[PG_FIELD_REQUESTED_FOR] =
			"/result/*/u_requested_for";
		c->tickets.field[PG_FIELD_REQUESTER] = "/result/*/requested_by";
		c->tickets.field[PG_FIELD_APPROVERS] = "/result/*/u_approvers";
		c->tickets.field[PG_FIELD_ROLE] = "/result/*/u_aws_role";
		c->tickets.field[PG_FIELD_CATEGORY] = "/result/*/category";
		c->tickets.field[PG_FIELD_WINDOW_START] =
			"/result/*/start_date";
		c->tickets.field[PG_FIELD_WINDOW_END] = "/result/*/end_date";
		c->tickets.approved_states.v = sn_states;
		c->tickets.approved_states.n = 1;
	} else {
		c->tickets.provider = PG_TICKETS_JIRA;
		c->tickets.field[PG_FIELD_STATE] = "/fields/status/name";
		c->tickets.field[PG_FIELD_REQUESTED_FOR] =
			"/fields/customfield_10100/name";
		c->tickets.field[PG_FIELD_REQUESTER] = "/fields/reporter/name";
		c->tickets.field[PG_FIELD_APPROVERS] =
			"/fields/customfield_10200/*/name";
		c->tickets.field[PG_FIELD_ROLE] =
			"/fields/customfield_10300/value";
		c->tickets.field[PG_FIELD_CATEGORY] = "/fields/issuetype/name";
		c->tickets.field[PG_FIELD_WINDOW_START] =
			"/fields/customfield_10400";
		c->tickets.field[PG_FIELD_WINDOW_END] =
			"/fields/customfield_10401";
		c->tickets.approved_states.v = jira_states;
		c->tickets.approved_states.n = 2;
	}
	c->tickets.url = "https://127.0.0.1:1/tickets/{ticket}";
	c->tickets.auth = PG_AUTH_NONE;
	c->tickets.timeout_ms = 2000;
	c->tickets.id_pattern = (char *)pattern;
	snprintf(re, sizeof(re), "^(%s)$", pattern);
	if (regcomp(&c->tickets.id_re, re, REG_EXTENDED | REG_NOSUB) != 0)
		fail_msg("bad test pattern %s", pattern);
}

static void
cfg_done(pg_config *c)
{
	regfree(&c->tickets.id_re);
}

/* ---- helpers ---------------------------------------------------------- */

static char *
read_fixture(const char *name, size_t *len)
{
	const char *dir = getenv("PG_TEST_DATA");
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	if (!dir)
		fail_msg("PG_TEST_DATA is not set");
	snprintf(path, sizeof(path), "%s/tickets/%s", dir, name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static json_t *
load_fixture(const char *name)
{
	size_t len;
	char *buf = read_fixture(name, &len);
	json_error_t e;
	json_t *j = json_loadb(buf, len, 0, &e);

	free(buf);
	if (!j)
		fail_msg("%s: %s", name, e.text);
	return j;
}

static void
assert_empty_ticket(const pg_ticket *t)
{
	assert_null(t->id);
	assert_null(t->state);
	assert_null(t->requested_for);
	assert_null(t->requester);
	assert_null(t->approvers.v);
	assert_int_equal(t->approvers.n, 0);
	assert_null(t->role);
	assert_null(t->category);
	assert_int_equal(t->has_start, 0);
	assert_int_equal(t->has_end, 0);
}

/* Messages never carry raw control characters. */
static void
assert_clean_message(const char *err)
{
	const unsigned char *p;

	for (p = (const unsigned char *)err; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			fail_msg("raw byte 0x%02x in message: %s", *p, err);
}

static pg_err
parse_file(const pg_config *c, const char *id, const char *name,
	   pg_ticket *t, char *err, size_t errlen)
{
	size_t len;
	char *buf = read_fixture(name, &len);
	pg_err rc = pg_ticket_parse(c, id, buf, len, t, err, errlen);

	free(buf);
	return rc;
}

/* ---- documents from the fixtures -------------------------------------- */

static void
test_servicenow_approved(void **state)
{
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	assert_int_equal(parse_file(&c, "CHG0012345", "sn_approved.json", &t,
				    err, sizeof(err)), PG_OK);
	assert_string_equal(t.id, "CHG0012345");
	assert_string_equal(t.state, "approved");
	assert_true(pg_ticket_state_approved(&c, t.state));
	assert_string_equal(t.requested_for, "alice");
	assert_string_equal(t.requester, "bob");
	assert_int_equal(t.approvers.n, 2);
	assert_string_equal(t.approvers.v[0], "carol");
	assert_string_equal(t.approvers.v[1], "dave");
	assert_null(t.approvers.v[2]);
	assert_string_equal(t.role, "procurement-manager");
	assert_string_equal(t.category, "Software");
	assert_int_equal(t.has_start, 1);
	assert_int_equal(t.window_start, 1795946400);
	assert_int_equal(t.has_end, 1);
	assert_int_equal(t.window_end, 1795975200);
	pg_ticket_free(&t);
	assert_empty_ticket(&t);
	pg_ticket_free(&t);	/* twice is harmless */
	cfg_done(&c);
}

static void
test_servicenow_pending(void **state)
{
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	assert_int_equal(parse_file(&c, "CHG0012346", "sn_pending.json", &t,
				    err, sizeof(err)), PG_OK);
	assert_string_equal(t.state, "requested");
	assert_false(pg_ticket_state_approved(&c, t.state));
	assert_int_equal(t.approvers.n, 0);
	assert_non_null(t.approvers.v);
	assert_null(t.approvers.v[0]);
	pg_ticket_free(&t);
	cfg_done(&c);
}

static void
test_servicenow_not_found(void **state)
{
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	assert_int_equal(parse_file(&c, "CHG0099999", "sn_empty.json", &t, err,
				    sizeof(err)), PG_ENOTFOUND);
	assert_string_equal(err, "ticket CHG0099999 not found");
	assert_empty_ticket(&t);
	cfg_done(&c);
}

static void
test_servicenow_minimal(void **state)
{
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	assert_int_equal(parse_file(&c, "CHG0012347", "sn_minimal.json", &t,
				    err, sizeof(err)), PG_OK);
	assert_string_equal(t.state, "approved");
	assert_null(t.requested_for);
	assert_null(t.requester);
	assert_int_equal(t.approvers.n, 0);
	assert_null(t.role);
	assert_null(t.category);
	assert_int_equal(t.has_start, 0);
	assert_int_equal(t.has_end, 0);
	pg_ticket_free(&t);
	cfg_done(&c);
}

/* Two records for one number: several values where one is expected. */
static void
test_servicenow_two_results(void **state)
{
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	assert_int_equal(parse_file(&c, "CHG0012345", "sn_two_results.json",
				    &t, err, sizeof(err)), PG_EPROTO);
	assert_non_null(strstr(err, "ticket field state (/result/*/approval)"
			       " has 2 values, expected one"));
	assert_empty_ticket(&t);
	cfg_done(&c);
}

static void
test_duplicate_key(void **state)
{
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	assert_int_equal(parse_file(&c, "CHG0012345", "sn_duplicate_key.json",
				    &t, err, sizeof(err)), PG_EPROTO);
	assert_non_null(strstr(err, "invalid JSON"));
	assert_non_null(strstr(err, "duplicate"));
	assert_empty_ticket(&t);
	cfg_done(&c);
}

static void
test_jira_approved(void **state)
{
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_JIRA, "[A-Z]+-[0-9]+");
	assert_int_equal(parse_file(&c, "PROC-42", "jira_approved.json", &t,
				    err, sizeof(err)), PG_OK);
	assert_string_equal(t.state, "Approved");
	assert_true(pg_ticket_state_approved(&c, t.state));
	assert_string_equal(t.requested_for, "alice@example.com");
	assert_string_equal(t.requester, "bob");
	assert_int_equal(t.approvers.n, 2);
	assert_string_equal(t.approvers.v[0], "carol");
	assert_string_equal(t.approvers.v[1], "dave");
	assert_string_equal(t.role, "pmp-administrator");
	assert_string_equal(t.category, "Private offer");
	assert_int_equal(t.window_start, 1795946400);
	/* 18:30 at +01:00 is 17:30Z */
	assert_int_equal(t.window_end, 1795946400 + 7 * 3600 + 1800);
	pg_ticket_free(&t);
	cfg_done(&c);
}

/* Null approvers match nothing below them; windows as epoch numbers. */
static void
test_jira_pending(void **state)
{
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_JIRA, "[A-Z]+-[0-9]+");
	assert_int_equal(parse_file(&c, "PROC-43", "jira_pending.json", &t,
				    err, sizeof(err)), PG_OK);
	assert_string_equal(t.state, "Waiting for approval");
	assert_false(pg_ticket_state_approved(&c, t.state));
	assert_int_equal(t.approvers.n, 0);
	assert_int_equal(t.has_start, 1);
	assert_int_equal(t.window_start, 1795946400);
	assert_int_equal(t.has_end, 1);
	assert_int_equal(t.window_end, 1795975200);
	pg_ticket_free(&t);
	cfg_done(&c);
}

/* Jira's 404 body, should it arrive with a 200: no state, not found. */
static void
test_jira_error_body(void **state)
{
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_JIRA, "[A-Z]+-[0-9]+");
	assert_int_equal(parse_file(&c, "PROC-44", "jira_not_found.json", &t,
				    err, sizeof(err)), PG_ENOTFOUND);
	assert_string_equal(err, "ticket PROC-44 not found");
	cfg_done(&c);
}

/* ---- bad values in every field ---------------------------------------- */

enum { V_JSON, V_RAW };

struct bad {
	const char *key;	/* member of result[0] in sn_approved.json */
	int how;
	const char *value;	/* JSON text, or raw bytes for V_RAW */
	size_t rawlen;
	pg_err rc;
	const char *msg;	/* expected substring */
};

#define LONG257 \
	"\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\""
#define LONG256 \
	"\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\""

#define SCALAR_BAD(k, name, ptr) \
	{ k, V_JSON, "{\"a\":1}", 0, PG_EPROTO, \
	  "ticket field " name " (" ptr ") is an object, expected a string" }, \
	{ k, V_JSON, "[\"alice\"]", 0, PG_EPROTO, "is an array" }, \
	{ k, V_JSON, "42", 0, PG_EPROTO, \
	  "ticket field " name " (" ptr ") is a number, expected a string" }, \
	{ k, V_JSON, "1.5", 0, PG_EPROTO, "is a number" }, \
	{ k, V_JSON, "true", 0, PG_EPROTO, "is a boolean" }, \
	{ k, V_JSON, "false", 0, PG_EPROTO, "is a boolean" }, \
	{ k, V_JSON, "null", 0, PG_OK, NULL }, /* null = not set */ \
	{ k, V_JSON, LONG257, 0, PG_EPROTO, "is longer than 256 bytes" }, \
	{ k, V_JSON, LONG256, 0, PG_OK, NULL }, \
	{ k, V_JSON, "\"al\\u0001ice\"", 0, PG_EPROTO, "control character" }, \
	{ k, V_JSON, "\"al\\nice\"", 0, PG_EPROTO, "control character" }, \
	{ k, V_JSON, "\"al\\u001b[31mice\"", 0, PG_EPROTO, \
	  "control character" }, \
	{ k, V_JSON, "\"al\\u007fice\"", 0, PG_EPROTO, "control character" }, \
	{ k, V_JSON, "\"al\\u0085ice\"", 0, PG_EPROTO, "control character" }, \
	{ k, V_RAW, "al\0ice", 6, PG_EPROTO, "control character" }, \
	{ k, V_RAW, "al\xffice", 6, PG_EPROTO, "not valid UTF-8" }, \
	{ k, V_RAW, "al\xc3", 3, PG_EPROTO, "not valid UTF-8" }, \
	{ k, V_RAW, "al\xc0\xafice", 7, PG_EPROTO, "not valid UTF-8" }, \
	{ k, V_RAW, "\xed\xa0\x80", 3, PG_EPROTO, "not valid UTF-8" }, \
	{ k, V_JSON, "\"J\\u00f6rg \\u00c5str\\u00f6m\"", 0, PG_OK, NULL }, \
	{ k, V_JSON, "\"\\ud83d\\ude00\"", 0, PG_OK, NULL }, \
	{ k, V_JSON, "\"\"", 0, PG_OK, NULL }

#define TIME_BAD(k, name, ptr) \
	{ k, V_JSON, "\"garbage\"", 0, PG_EPROTO, \
	  "ticket field " name " (" ptr ") is not a valid time: 'garbage'" }, \
	{ k, V_JSON, "\"\"", 0, PG_OK, NULL }, /* "" = not set */ \
	{ k, V_JSON, "\"2026-02-30 10:00:00\"", 0, PG_EPROTO, \
	  "is not a valid time" }, \
	{ k, V_JSON, "\"2026-11-29T10:00:00\"", 0, PG_EPROTO, \
	  "is not a valid time" }, \
	{ k, V_JSON, "\"2026-11-29 10:00:00'\"", 0, PG_EPROTO, \
	  "'2026-11-29 10:00:00\\x27'" }, \
	{ k, V_JSON, "\"2026-11-29 10:00:00\\u001b\"", 0, PG_EPROTO, \
	  "control character" }, \
	{ k, V_JSON, "{\"value\":\"2026-11-29 10:00:00\"}", 0, PG_EPROTO, \
	  "is an object, expected a time" }, \
	{ k, V_JSON, "[\"2026-11-29 10:00:00\"]", 0, PG_EPROTO, \
	  "is an array, expected a time" }, \
	{ k, V_JSON, "true", 0, PG_EPROTO, "is a boolean, expected a time" }, \
	{ k, V_JSON, "null", 0, PG_OK, NULL }, \
	{ k, V_JSON, "-1", 0, PG_EPROTO, "is a number out of range" }, \
	{ k, V_JSON, "1e300", 0, PG_EPROTO, "is a number out of range" }, \
	{ k, V_JSON, "253402300800", 0, PG_EPROTO, "out of range" }, \
	{ k, V_JSON, LONG257, 0, PG_EPROTO, "is longer than 256 bytes" }, \
	{ k, V_JSON, "1795946400", 0, PG_OK, NULL }, \
	{ k, V_JSON, "1795946400.9", 0, PG_OK, NULL }, \
	{ k, V_JSON, "\"2026-11-29T10:00:00Z\"", 0, PG_OK, NULL }

static const struct bad bads[] = {
	SCALAR_BAD("approval", "state", "/result/*/approval"),
	SCALAR_BAD("u_requested_for", "requested_for",
		   "/result/*/u_requested_for"),
	SCALAR_BAD("requested_by", "requester", "/result/*/requested_by"),
	SCALAR_BAD("u_aws_role", "role", "/result/*/u_aws_role"),
	SCALAR_BAD("category", "category", "/result/*/category"),
	TIME_BAD("start_date", "window_start", "/result/*/start_date"),
	TIME_BAD("end_date", "window_end", "/result/*/end_date"),
	/* approvers: strings, or an array of strings */
	{ "u_approvers", V_JSON, "\"carol\"", 0, PG_OK, NULL },
	{ "u_approvers", V_JSON, "[]", 0, PG_OK, NULL },
	{ "u_approvers", V_JSON, "42", 0, PG_EPROTO,
	  "ticket field approvers (/result/*/u_approvers) is a number, "
	  "expected a string" },
	{ "u_approvers", V_JSON, "{\"name\":\"carol\"}", 0, PG_EPROTO,
	  "is an object" },
	{ "u_approvers", V_JSON, "null", 0, PG_OK, NULL },
	{ "u_approvers", V_JSON, "true", 0, PG_EPROTO, "is a boolean" },
	{ "u_approvers", V_JSON, "[\"carol\", 7]", 0, PG_EPROTO,
	  "is a number" },
	{ "u_approvers", V_JSON, "[\"carol\", null]", 0, PG_EPROTO,
	  "is null" },
	{ "u_approvers", V_JSON, "[[\"carol\"]]", 0, PG_EPROTO,
	  "is an array" },
	{ "u_approvers", V_JSON, "[{\"name\":\"carol\"}]", 0, PG_EPROTO,
	  "is an object" },
	{ "u_approvers", V_JSON, "[\"carol\", " LONG257 "]", 0, PG_EPROTO,
	  "is longer than 256 bytes" },
	{ "u_approvers", V_JSON, "[\"carol\", \"da\\u0000ve\"]", 0, PG_EPROTO,
	  "control character" },
	{ "u_approvers", V_JSON, "[\"carol\", \"da\\rve\"]", 0, PG_EPROTO,
	  "control character" },
};

static void
test_bad_values(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		json_t *doc = load_fixture("sn_approved.json"), *rec, *v;
		json_error_t e;
		pg_config c;
		pg_ticket t;
		char err[512] = "";
		pg_err rc;

		cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
		rec = json_array_get(json_object_get(doc, "result"), 0);
		if (b->how == V_RAW)
			v = json_stringn_nocheck(b->value, b->rawlen);
		else
			v = json_loads(b->value, JSON_DECODE_ANY |
				       JSON_ALLOW_NUL, &e);
		if (!v)
			fail_msg("case %zu: bad test value", i);
		json_object_set_new(rec, b->key, v);
		rc = pg_ticket_from_json(&c, "CHG0012345", doc, &t, err,
					 sizeof(err));
		/* A null state is no state: the ticket is not there. */
		if (strcmp(b->key, "approval") == 0 &&
		    strcmp(b->value, "null") == 0 && rc == PG_ENOTFOUND)
			rc = PG_OK;
		if (rc != b->rc)
			fail_msg("case %zu (%s=%s): rc %d, want %d: %s", i,
				 b->key, b->how == V_RAW ? "raw" : b->value,
				 rc, b->rc, err);
		if (b->msg && !strstr(err, b->msg))
			fail_msg("case %zu (%s): message '%s' lacks '%s'", i,
				 b->key, err, b->msg);
		if (rc != PG_OK)
			assert_empty_ticket(&t);
		assert_clean_message(err);
		pg_ticket_free(&t);
		json_decref(doc);
		cfg_done(&c);
	}
}

/* Values that parse are stored as given. */
static void
test_good_values_stored(void **state)
{
	json_t *doc = load_fixture("sn_approved.json"), *rec;
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	rec = json_array_get(json_object_get(doc, "result"), 0);
	json_object_set_new(rec, "u_approvers", json_string("carol"));
	json_object_set_new(rec, "start_date", json_real(1795946400.9));
	json_object_set_new(rec, "end_date",
			    json_string("2026-11-29T18:00:00.250-01:00"));
	json_object_set_new(rec, "requested_by",
			    json_string("J\xc3\xb6rg \xc3\x85str\xc3\xb6m"));
	assert_int_equal(pg_ticket_from_json(&c, "CHG0012345", doc, &t, err,
					     sizeof(err)), PG_OK);
	assert_int_equal(t.approvers.n, 1);
	assert_string_equal(t.approvers.v[0], "carol");
	assert_int_equal(t.window_start, 1795946400);
	assert_int_equal(t.window_end, 1795975200 + 3600);
	assert_string_equal(t.requester, "J\xc3\xb6rg \xc3\x85str\xc3\xb6m");
	pg_ticket_free(&t);
	json_decref(doc);
	cfg_done(&c);
}

/* Approvers as a list of objects through "/ * /name"; the 64 bound. */
static void
test_approver_bounds(void **state)
{
	json_t *doc, *list;
	pg_config c;
	pg_ticket t;
	char err[256] = "";
	char name[32];
	int i;

	(void)state;
	cfg_init(&c, MAP_JIRA, "[A-Z]+-[0-9]+");
	doc = load_fixture("jira_approved.json");
	list = json_array();
	for (i = 0; i < PG_TICKET_MAX_APPROVERS; i++) {
		snprintf(name, sizeof(name), "approver%d", i);
		json_array_append_new(list, json_pack("{s:s}", "name", name));
	}
	json_object_set(json_object_get(doc, "fields"), "customfield_10200",
			list);
	assert_int_equal(pg_ticket_from_json(&c, "PROC-42", doc, &t, err,
					     sizeof(err)), PG_OK);
	assert_int_equal(t.approvers.n, PG_TICKET_MAX_APPROVERS);
	assert_string_equal(t.approvers.v[63], "approver63");
	pg_ticket_free(&t);

	json_array_append_new(list, json_pack("{s:s}", "name", "one-more"));
	assert_int_equal(pg_ticket_from_json(&c, "PROC-42", doc, &t, err,
					     sizeof(err)), PG_EPROTO);
	assert_non_null(strstr(err, "has more than 64 values"));
	assert_empty_ticket(&t);

	/* The same bound when the values come as one array of strings. */
	json_array_clear(list);
	for (i = 0; i <= PG_TICKET_MAX_APPROVERS; i++)
		json_array_append_new(list, json_string("x"));
	json_decref(list);
	c.tickets.field[PG_FIELD_APPROVERS] = "/fields/customfield_10200";
	assert_int_equal(pg_ticket_from_json(&c, "PROC-42", doc, &t, err,
					     sizeof(err)), PG_EPROTO);
	assert_non_null(strstr(err, "has more than 64 values"));
	json_object_set_new(json_object_get(doc, "fields"),
			    "customfield_10200",
			    json_pack("[ss]", "carol", "dave"));
	assert_int_equal(pg_ticket_from_json(&c, "PROC-42", doc, &t, err,
					     sizeof(err)), PG_OK);
	assert_int_equal(t.approvers.n, 2);
	pg_ticket_free(&t);
	json_decref(doc);
	cfg_done(&c);
}

/* ---- the map itself --------------------------------------------------- */

static void
test_map_config(void **state)
{
	json_t *doc = load_fixture("sn_approved.json");
	pg_config c;
	pg_ticket t;
	char err[256] = "";

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	/* unmapped fields are absent */
	c.tickets.field[PG_FIELD_CATEGORY] = NULL;
	c.tickets.field[PG_FIELD_WINDOW_END] = NULL;
	c.tickets.field[PG_FIELD_APPROVERS] = NULL;
	assert_int_equal(pg_ticket_from_json(&c, "CHG0012345", doc, &t, err,
					     sizeof(err)), PG_OK);
	assert_null(t.category);
	assert_int_equal(t.has_end, 0);
	assert_int_equal(t.approvers.n, 0);
	assert_non_null(t.approvers.v);
	pg_ticket_free(&t);
	/* a bad pointer is a configuration error */
	c.tickets.field[PG_FIELD_ROLE] = "result/0/u_aws_role";
	assert_int_equal(pg_ticket_from_json(&c, "CHG0012345", doc, &t, err,
					     sizeof(err)), PG_ECONFIG);
	assert_non_null(strstr(err, "field.role"));
	assert_empty_ticket(&t);
	/* without a state pointer nothing can be decided */
	cfg_done(&c);
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	c.tickets.field[PG_FIELD_STATE] = NULL;
	assert_int_equal(pg_ticket_from_json(&c, "CHG0012345", doc, &t, err,
					     sizeof(err)), PG_ECONFIG);
	assert_empty_ticket(&t);
	cfg_done(&c);
	json_decref(doc);
}

/* ---- documents that do not parse -------------------------------------- */

static void
test_unparseable(void **state)
{
	static const struct {
		const char *body;
		size_t len;
	} cases[] = {
		{ "not json", 8 },
		{ "", 0 },
		{ "{\"result\":[", 11 },
		{ "\"a string\"", 10 },
		{ "42", 2 },
		{ "{\"result\":[]} trailing", 22 },
		{ "{\"a\":\"x\0y\"}", 11 },
		{ "{\"a\":\"\xff\"}", 8 },
		{ "{\"a\":\"\x1b[31m\"}", 13 },
	};
	pg_config c;
	pg_ticket t;
	char err[256];
	size_t i;

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		if (pg_ticket_parse(&c, "CHG0012345", cases[i].body,
				    cases[i].len, &t, err, sizeof(err)) !=
		    PG_EPROTO)
			fail_msg("case %zu parsed", i);
		assert_non_null(strstr(err, "invalid JSON"));
		assert_clean_message(err);
		assert_empty_ticket(&t);
	}
	cfg_done(&c);
}

/* 10 000 levels of arrays and of objects: refused, not a crash. */
static void
test_deep_nesting(void **state)
{
	const size_t depth = 10000;
	pg_config c;
	pg_ticket t;
	char err[256] = "";
	char *buf;
	size_t i, n = 0;

	(void)state;
	cfg_init(&c, MAP_SERVICENOW, "CHG[0-9]{7}");
	buf = malloc(depth * 6 + 16);
	assert_non_null(buf);
	for (i = 0; i < depth; i++)
		buf[n++] = '[';
	for (i = 0; i < depth; i++)
		buf[n++] = ']';
	assert_int_equal(pg_ticket_parse(&c, "CHG0012345", buf, n, &t, err,
					 sizeof(err)), PG_EPROTO);
	assert_non_null(strstr(err, "invalid JSON"));
	n = 0;
	for (i = 0; i < depth; i++) {
		memcpy(buf + n, "{\"a\":", 5);
		n += 5;
	}
	buf[n++] = '1';
	for (i = 0; i < depth; i++)
		buf[n++] = '}';
	assert_int_equal(pg_ticket_parse(&c, "CHG0012345", buf, n, &t, err,
					 sizeof(err)), PG_EPROTO);
	assert_empty_ticket(&t);
	free(buf);
	cfg_done(&c);
}

/* ---- ticket ids --------------------------------------------------------- */

struct idvec {
	const char *pattern;
	const char *id;
	pg_err rc;
	const char *msg;
};

#define STRICT "CHG[0-9]{7}"
#define LOOSE "[A-Za-z0-9./%?#&=+-]+"
#define X128 \
	"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX" \
	"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"

static const struct idvec idvecs[] = {
	{ STRICT, "CHG0012345", PG_OK, NULL },
	{ "[A-Z]+-[0-9]+", "PROC-42", PG_OK, NULL },
	{ "[A-Z]+-[0-9]+|CHG[0-9]+", "CHG1", PG_OK, NULL },
	{ STRICT, "CHG001234", PG_EINVAL,
	  "ticket id 'CHG001234' does not match [tickets] id_pattern" },
	{ STRICT, "CHG00123456", PG_EINVAL, "does not match" },
	{ STRICT, "xCHG0012345", PG_EINVAL, "does not match" },
	{ STRICT, "CHG0012345x", PG_EINVAL, "does not match" },
	/* the pattern is anchored as a whole, even with alternation */
	{ "[A-Z]+-[0-9]+|CHG[0-9]+", "PROC-42x", PG_EINVAL, "does not match" },
	{ "[A-Z]+-[0-9]+|CHG[0-9]+", "xCHG1", PG_EINVAL, "does not match" },
	{ STRICT, "../CHG0012345", PG_EINVAL, "does not match" },
	{ STRICT, "CHG0012345?x=1", PG_EINVAL, "does not match" },
	{ STRICT, "CHG0012345#x", PG_EINVAL, "does not match" },
	{ STRICT, "CHG%2F12345", PG_EINVAL, "does not match" },
	/* what the characters rule refuses whatever the pattern */
	{ ".*", "", PG_EINVAL, "ticket id is empty" },
	{ ".*", NULL, PG_EINVAL, "ticket id is empty" },
	{ ".*", "CHG0012345\r\nX-Injected: 1", PG_EINVAL,
	  "'CHG0012345\\x0d\\x0aX-Injected: 1' contains a space, control" },
	{ ".*", "CHG 1", PG_EINVAL, "contains a space" },
	{ ".*", "CHG\t1", PG_EINVAL, "'CHG\\x091'" },
	{ ".*", "CHG\x7f" "1", PG_EINVAL, "'CHG\\x7f1'" },
	{ ".*", "CHG\x1b[31m", PG_EINVAL, "'CHG\\x1b[31m'" },
	{ ".*", "CHG\xc3\xa9" "1", PG_EINVAL, "'CHG\\xc3\\xa91'" },
	{ ".*", "\xe2\x80\xae" "CHG1", PG_EINVAL, "non-ASCII" },
	{ ".*", "CHG'1", PG_OK, NULL },
	{ ".*", ".", PG_EINVAL, "is not an id" },
	{ ".*", "..", PG_EINVAL, "is not an id" },
	{ LOOSE, "...", PG_OK, NULL },
	{ LOOSE, "../x", PG_OK, NULL },	/* encoded: "..%2Fx" */
	{ LOOSE, "a%2Fb?c#d", PG_OK, NULL },
	{ LOOSE, X128, PG_OK, NULL },
	{ LOOSE, X128 "X", PG_EINVAL, "is longer than 128 bytes" },
};

static void
test_id_check(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(idvecs) / sizeof(idvecs[0]); i++) {
		pg_config c;
		char err[512] = "";
		pg_err rc;

		cfg_init(&c, MAP_SERVICENOW, idvecs[i].pattern);
		rc = pg_ticket_id_check(&c, idvecs[i].id, err, sizeof(err));
		if (rc != idvecs[i].rc)
			fail_msg("id %zu: rc %d, want %d (%s)", i, rc,
				 idvecs[i].rc, err);
		if (idvecs[i].msg && !strstr(err, idvecs[i].msg))
			fail_msg("id %zu: message '%s' lacks '%s'", i, err,
				 idvecs[i].msg);
		assert_clean_message(err);
		cfg_done(&c);
	}
}

/* A very long id is shown shortened, never whole. */
static void
test_id_shown_short(void **state)
{
	pg_config c;
	char id[4096], err[1024] = "";

	(void)state;
	memset(id, 'A', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	cfg_init(&c, MAP_SERVICENOW, STRICT);
	assert_int_equal(pg_ticket_id_check(&c, id, err, sizeof(err)),
			 PG_EINVAL);
	assert_non_null(strstr(err, "AAAA...' is longer than 128 bytes"));
	assert_true(strlen(err) < 200);
	cfg_done(&c);
}

static void
test_state_approved(void **state)
{
	pg_config c;

	(void)state;
	cfg_init(&c, MAP_JIRA, "[A-Z]+-[0-9]+");
	assert_true(pg_ticket_state_approved(&c, "Approved"));
	assert_true(pg_ticket_state_approved(&c, "Done"));
	assert_false(pg_ticket_state_approved(&c, "approved"));
	assert_false(pg_ticket_state_approved(&c, "Approved "));
	assert_false(pg_ticket_state_approved(&c, " Approved"));
	assert_false(pg_ticket_state_approved(&c, "Approve"));
	assert_false(pg_ticket_state_approved(&c, ""));
	assert_false(pg_ticket_state_approved(&c, NULL));
	c.tickets.approved_states.n = 0;
	assert_false(pg_ticket_state_approved(&c, "Approved"));
	cfg_done(&c);
}

/* ---- fetch: what is refused before any request ------------------------ */

static void
test_fetch_refusals(void **state)
{
	pg_http *h;
	pg_config c;
	pg_ticket t;
	char err[512] = "";
	pg_err rc;

	(void)state;
	assert_int_equal(pg_http_global_init(), PG_OK);
	h = pg_http_new();
	assert_non_null(h);
	cfg_init(&c, MAP_SERVICENOW, STRICT);

	/* a bad id: refused as invalid input, not as a connection error */
	rc = pg_ticket_fetch(h, &c, "CHG0012345/../x", pg_deadline_in(2000),
			     &t, err, sizeof(err));
	assert_int_equal(rc, PG_EINVAL);
	assert_non_null(strstr(err, "does not match"));
	assert_empty_ticket(&t);

	/* a url without {ticket} */
	c.tickets.url = "https://127.0.0.1:1/tickets/";
	rc = pg_ticket_fetch(h, &c, "CHG0012345", pg_deadline_in(2000), &t,
			     err, sizeof(err));
	assert_int_equal(rc, PG_ECONFIG);
	assert_non_null(strstr(err, "{ticket}"));

	/* auth without a token file; a token file that does not exist */
	c.tickets.url = "https://127.0.0.1:1/tickets/{ticket}";
	c.tickets.auth = PG_AUTH_BEARER;
	rc = pg_ticket_fetch(h, &c, "CHG0012345", pg_deadline_in(2000), &t,
			     err, sizeof(err));
	assert_int_equal(rc, PG_ECONFIG);
	c.tickets.token_file = "/nonexistent/pmpgate-ticket-token";
	rc = pg_ticket_fetch(h, &c, "CHG0012345", pg_deadline_in(2000), &t,
			     err, sizeof(err));
	assert_int_equal(rc, PG_ECONFIG);
	assert_non_null(strstr(err, "/nonexistent/pmpgate-ticket-token"));

	/* nothing listening: the service is unavailable */
	c.tickets.auth = PG_AUTH_NONE;
	c.tickets.token_file = NULL;
	c.tickets.url = "http://127.0.0.1:1/tickets/{ticket}";
	c.tickets.allow_plaintext = 1;
	rc = pg_ticket_fetch(h, &c, "CHG0012345", pg_deadline_in(2000), &t,
			     err, sizeof(err));
	assert_int_equal(rc, PG_EUNAVAIL);
	assert_non_null(strstr(err, "ticket service: "));
	assert_empty_ticket(&t);

	cfg_done(&c);
	pg_http_free(h);
	pg_http_global_cleanup();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_servicenow_approved),
		cmocka_unit_test(test_servicenow_pending),
		cmocka_unit_test(test_servicenow_not_found),
		cmocka_unit_test(test_servicenow_minimal),
		cmocka_unit_test(test_servicenow_two_results),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_jira_approved),
		cmocka_unit_test(test_jira_pending),
		cmocka_unit_test(test_jira_error_body),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_good_values_stored),
		cmocka_unit_test(test_approver_bounds),
		cmocka_unit_test(test_map_config),
		cmocka_unit_test(test_unparseable),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_id_check),
		cmocka_unit_test(test_id_shown_short),
		cmocka_unit_test(test_state_approved),
		cmocka_unit_test(test_fetch_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
