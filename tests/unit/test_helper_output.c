/*
 * test_helper_output.c - what the thin clients print (client/output.c):
 * credential validation, the process/env/ini formats, shell quoting,
 * sanitising untrusted text, "key: value" answers, wiping allocation.
 *
 * Runs with pg_json_wipe_on_free() in force, as pmpgate-credentials does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../client/output.h"

#define AKID "ASIAEXAMPLEKEY123456"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN "FwoGZXIvYXdzEXAMPLE+token/with=padding=="
#define EXP "2030-01-02T03:04:05Z"

static void
test_fmt_parse(void **state)
{
	pg_fmt f = PG_FMT_ENV;

	(void)state;
	assert_int_equal(pg_fmt_parse("process", &f), PG_OK);
	assert_int_equal(f, PG_FMT_PROCESS);
	assert_int_equal(pg_fmt_parse("env", &f), PG_OK);
	assert_int_equal(f, PG_FMT_ENV);
	assert_int_equal(pg_fmt_parse("ini", &f), PG_OK);
	assert_int_equal(f, PG_FMT_INI);
	assert_int_equal(pg_fmt_parse("json", &f), PG_EUSAGE);
	assert_int_equal(pg_fmt_parse("ENV", &f), PG_EUSAGE);
	assert_int_equal(pg_fmt_parse("", &f), PG_EUSAGE);
	assert_int_equal(pg_fmt_parse(NULL, &f), PG_EUSAGE);
	assert_int_equal(f, PG_FMT_INI);
}

/* ---- credentials in answers --------------------------------------------------- */

struct cred_case {
	const char *name;
	const char *json;	/* the whole answer */
	pg_err want;
};

#define ANS(creds) "{\"v\":1,\"status\":\"allow\",\"reason\":\"\",\"exit\":0," \
	"\"role\":\"procurement-manager\",\"credentials\":" creds "}"
#define CREDS4(a, s, t, e) "{\"AccessKeyId\":" a ",\"SecretAccessKey\":" s \
	",\"SessionToken\":" t ",\"Expiration\":" e "}"
#define Q(x) "\"" x "\""
#define GOOD CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q(EXP))

static const struct cred_case cred_cases[] = {
	{ "valid", ANS(GOOD), PG_OK },
	{ "valid, leap day", ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN),
					Q("2028-02-29T23:59:59Z"))), PG_OK },
	{ "valid, key id with underscore",
	  ANS(CREDS4(Q("ASIA_EXAMPLE_KEY_12"), Q(SECRET), Q(TOKEN), Q(EXP))),
	  PG_OK },
	{ "valid, no role named",
	  "{\"v\":1,\"status\":\"allow\",\"reason\":\"\",\"exit\":0,"
	  "\"credentials\":" GOOD "}", PG_OK },
	{ "no credentials",
	  "{\"v\":1,\"status\":\"allow\",\"reason\":\"\",\"exit\":0}",
	  PG_EPROTO },
	{ "credentials null", ANS("null"), PG_EPROTO },
	{ "credentials an array", ANS("[" Q(AKID) "]"), PG_EPROTO },
	{ "credentials a string", ANS(Q(AKID)), PG_EPROTO },
	{ "empty credentials", ANS("{}"), PG_EPROTO },
	{ "AccessKeyId missing",
	  ANS("{\"SecretAccessKey\":" Q(SECRET) ",\"SessionToken\":" Q(TOKEN)
	      ",\"Expiration\":" Q(EXP) "}"), PG_EPROTO },
	{ "SecretAccessKey missing",
	  ANS("{\"AccessKeyId\":" Q(AKID) ",\"SessionToken\":" Q(TOKEN)
	      ",\"Expiration\":" Q(EXP) "}"), PG_EPROTO },
	{ "SessionToken missing",
	  ANS("{\"AccessKeyId\":" Q(AKID) ",\"SecretAccessKey\":" Q(SECRET)
	      ",\"Expiration\":" Q(EXP) "}"), PG_EPROTO },
	{ "Expiration missing",
	  ANS("{\"AccessKeyId\":" Q(AKID) ",\"SecretAccessKey\":" Q(SECRET)
	      ",\"SessionToken\":" Q(TOKEN) "}"), PG_EPROTO },
	{ "extra member",
	  ANS("{\"AccessKeyId\":" Q(AKID) ",\"SecretAccessKey\":" Q(SECRET)
	      ",\"SessionToken\":" Q(TOKEN) ",\"Expiration\":" Q(EXP)
	      ",\"Version\":1}"), PG_EPROTO },
	{ "AccessKeyId a number", ANS(CREDS4("12345678901234567", Q(SECRET),
					     Q(TOKEN), Q(EXP))), PG_EPROTO },
	{ "AccessKeyId too short", ANS(CREDS4(Q("ASIA123"), Q(SECRET),
					      Q(TOKEN), Q(EXP))), PG_EPROTO },
	{ "AccessKeyId with a space",
	  ANS(CREDS4(Q("ASIA EXAMPLE KEY 123"), Q(SECRET), Q(TOKEN), Q(EXP))),
	  PG_EPROTO },
	{ "AccessKeyId with a slash",
	  ANS(CREDS4(Q("ASIA/EXAMPLEKEY1234"), Q(SECRET), Q(TOKEN), Q(EXP))),
	  PG_EPROTO },
	{ "SecretAccessKey with a quote",
	  ANS(CREDS4(Q(AKID), Q("abc'def$(id)ghijklmnop"), Q(TOKEN), Q(EXP))),
	  PG_EPROTO },
	{ "SecretAccessKey with a newline",
	  ANS(CREDS4(Q(AKID), Q("abcdefghijklmnop\\nq"), Q(TOKEN), Q(EXP))),
	  PG_EPROTO },
	{ "SecretAccessKey empty", ANS(CREDS4(Q(AKID), Q(""), Q(TOKEN),
					      Q(EXP))), PG_EPROTO },
	{ "SessionToken with a space",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q("abcdefgh ijklmnopq"), Q(EXP))),
	  PG_EPROTO },
	{ "SessionToken non-ASCII",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q("abcdefghijklmnop\\u00e9"), Q(EXP))),
	  PG_EPROTO },
	{ "Expiration with fractions",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN),
		     Q("2030-01-02T03:04:05.000Z"))), PG_EPROTO },
	{ "Expiration with an offset",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN),
		     Q("2030-01-02T03:04:05+00:00"))), PG_EPROTO },
	{ "Expiration with a space",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q("2030-01-02 03:04:05Z"))),
	  PG_EPROTO },
	{ "Expiration month 13",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q("2030-13-02T03:04:05Z"))),
	  PG_EPROTO },
	{ "Expiration February 29 of a common year",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q("2030-02-29T03:04:05Z"))),
	  PG_EPROTO },
	{ "Expiration day 0",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q("2030-01-00T03:04:05Z"))),
	  PG_EPROTO },
	{ "Expiration hour 24",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q("2030-01-02T24:00:00Z"))),
	  PG_EPROTO },
	{ "Expiration second 60",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q("2030-01-02T23:59:60Z"))),
	  PG_EPROTO },
	{ "Expiration lower-case z",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q("2030-01-02T03:04:05z"))),
	  PG_EPROTO },
	{ "Expiration with letters",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q("20x0-01-02T03:04:05Z"))),
	  PG_EPROTO },
	{ "Expiration as epoch seconds",
	  ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), "1893553445")), PG_EPROTO },
	{ "Expiration empty", ANS(CREDS4(Q(AKID), Q(SECRET), Q(TOKEN), Q(""))),
	  PG_EPROTO },
	{ "credentials for another role",
	  "{\"v\":1,\"status\":\"allow\",\"reason\":\"\",\"exit\":0,"
	  "\"role\":\"pmp-administrator\",\"credentials\":" GOOD "}",
	  PG_EPROTO },
	{ "role not a string",
	  "{\"v\":1,\"status\":\"allow\",\"reason\":\"\",\"exit\":0,"
	  "\"role\":1,\"credentials\":" GOOD "}", PG_EPROTO },
};

static void
test_creds_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cred_cases) / sizeof(cred_cases[0]);
	     i++) {
		const struct cred_case *c = &cred_cases[i];
		json_error_t jerr;
		json_t *a = json_loads(c->json, 0, &jerr);
		char err[256] = "";
		pg_creds cr;
		pg_err rc;

		if (a == NULL)
			fail_msg("case \"%s\": bad test JSON: %s", c->name,
				 jerr.text);
		rc = pg_creds_from_answer(a, "procurement-manager", &cr, err,
					  sizeof(err));
		if (rc != c->want)
			fail_msg("case \"%s\": got %s (%s)", c->name,
				 pg_err_name(rc), err);
		if (rc == PG_OK) {
			assert_non_null(cr.access_key_id);
			assert_non_null(cr.expiration);
		} else {
			assert_null(cr.access_key_id);
			assert_null(cr.secret_access_key);
			assert_null(cr.session_token);
			assert_non_null(strstr(err, "malformed answer"));
			/* The message never repeats a value. */
			assert_null(strstr(err, SECRET));
			assert_null(strstr(err, "abc'def"));
		}
		json_decref(a);
	}
}

static void
test_creds_nul_and_lengths(void **state)
{
	char big[PG_CREDS_MAX_TOKEN + 2];
	json_t *a, *cr;
	pg_creds out;
	char err[256];

	(void)state;
	a = json_loads(ANS(GOOD), 0, NULL);
	assert_non_null(a);
	cr = json_object_get(a, "credentials");

	/* A NUL inside the secret (Jansson can hold one). */
	json_object_set_new(cr, "SecretAccessKey",
			    json_stringn("abcdefgh\0ijklmnopq", 18));
	assert_int_equal(pg_creds_from_answer(a, NULL, &out, err, sizeof(err)),
			 PG_EPROTO);
	json_object_set_new(cr, "SecretAccessKey", json_string(SECRET));
	assert_int_equal(pg_creds_from_answer(a, NULL, &out, err, sizeof(err)),
			 PG_OK);

	/* The session token at its limit and one byte over. */
	memset(big, 'A', sizeof(big));
	big[PG_CREDS_MAX_TOKEN] = '\0';
	json_object_set_new(cr, "SessionToken", json_string(big));
	assert_int_equal(pg_creds_from_answer(a, NULL, &out, err, sizeof(err)),
			 PG_OK);
	assert_int_equal(strlen(out.session_token), PG_CREDS_MAX_TOKEN);
	big[PG_CREDS_MAX_TOKEN] = 'A';
	big[PG_CREDS_MAX_TOKEN + 1] = '\0';
	json_object_set_new(cr, "SessionToken", json_string(big));
	assert_int_equal(pg_creds_from_answer(a, NULL, &out, err, sizeof(err)),
			 PG_EPROTO);

	/* The key id at its limit and over. */
	big[PG_CREDS_MAX_KEY_ID] = '\0';
	json_object_set_new(cr, "SessionToken", json_string(TOKEN));
	json_object_set_new(cr, "AccessKeyId", json_string(big));
	assert_int_equal(pg_creds_from_answer(a, NULL, &out, err, sizeof(err)),
			 PG_OK);
	big[PG_CREDS_MAX_KEY_ID] = 'A';
	big[PG_CREDS_MAX_KEY_ID + 1] = '\0';
	json_object_set_new(cr, "AccessKeyId", json_string(big));
	assert_int_equal(pg_creds_from_answer(a, NULL, &out, err, sizeof(err)),
			 PG_EPROTO);
	json_decref(a);

	assert_int_equal(pg_creds_from_answer(NULL, NULL, &out, err,
					      sizeof(err)), PG_EPROTO);
}

/* ---- formats -------------------------------------------------------------------- */

static const pg_creds good = { AKID, SECRET, TOKEN, EXP };

static void
check_format(const pg_creds *c, pg_fmt fmt, const char *role,
	     const char *want)
{
	size_t len = 0;
	char *out = pg_format_creds(c, fmt, role, &len);

	assert_non_null(out);
	assert_int_equal(len, strlen(want));
	assert_string_equal(out, want);
	pg_wipe_free(out, len);
}

static void
test_format_process(void **state)
{
	(void)state;
	check_format(&good, PG_FMT_PROCESS, NULL,
		     "{\"Version\":1,\"AccessKeyId\":\"" AKID "\","
		     "\"SecretAccessKey\":\"" SECRET "\","
		     "\"SessionToken\":\"" TOKEN "\","
		     "\"Expiration\":\"" EXP "\"}\n");
}

static void
test_format_env(void **state)
{
	const pg_creds quoted = { "AKID'x", "a'b''c", "$(id)`id`\\n", "e" };

	(void)state;
	check_format(&good, PG_FMT_ENV, NULL,
		     "export AWS_ACCESS_KEY_ID='" AKID "'\n"
		     "export AWS_SECRET_ACCESS_KEY='" SECRET "'\n"
		     "export AWS_SESSION_TOKEN='" TOKEN "'\n"
		     "export AWS_CREDENTIAL_EXPIRATION='" EXP "'\n");
	/* Shell quoting holds for values the validator would refuse. */
	check_format(&quoted, PG_FMT_ENV, NULL,
		     "export AWS_ACCESS_KEY_ID='AKID'\\''x'\n"
		     "export AWS_SECRET_ACCESS_KEY='a'\\''b'\\'''\\''c'\n"
		     "export AWS_SESSION_TOKEN='$(id)`id`\\n'\n"
		     "export AWS_CREDENTIAL_EXPIRATION='e'\n");
}

static void
test_format_ini(void **state)
{
	size_t len = 7;

	(void)state;
	check_format(&good, PG_FMT_INI, "procurement-manager",
		     "[procurement-manager]\n"
		     "aws_access_key_id = " AKID "\n"
		     "aws_secret_access_key = " SECRET "\n"
		     "aws_session_token = " TOKEN "\n");
	assert_null(pg_format_creds(&good, PG_FMT_INI, NULL, &len));
	assert_int_equal(len, 0);
	assert_null(pg_format_creds(&good, PG_FMT_INI, "bad]\n[role", &len));
}

static void
test_format_refuses_missing(void **state)
{
	pg_creds c = good;
	size_t len = 3;

	(void)state;
	c.session_token = NULL;
	assert_null(pg_format_creds(&c, PG_FMT_PROCESS, NULL, &len));
	assert_int_equal(len, 0);
	assert_null(pg_format_creds(NULL, PG_FMT_ENV, NULL, &len));
	assert_null(pg_format_creds(&good, (pg_fmt)9, "r", &len));
}

static void
test_shell_quote(void **state)
{
	static const struct { const char *in, *out; } v[] = {
		{ "", "''" },
		{ "abc", "'abc'" },
		{ "'", "''\\'''" },
		{ "a'b", "'a'\\''b'" },
		{ "$HOME `x` \"y\" \\z", "'$HOME `x` \"y\" \\z'" },
		{ "a\nb", "'a\nb'" },
	};
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = pg_shell_quote(v[i].in, NULL);
		assert_int_equal(n, strlen(v[i].out));
		memset(buf, 'X', sizeof(buf));
		assert_int_equal(pg_shell_quote(v[i].in, buf), n);
		assert_string_equal(buf, v[i].out);
	}
}

/* ---- untrusted text ------------------------------------------------------------- */

static void
test_sanitize(void **state)
{
	static const struct {
		const char *in;
		size_t outlen;
		const char *out;
	} v[] = {
		{ "plain reason (R3 ticket-not-approved)", 128,
		  "plain reason (R3 ticket-not-approved)" },
		{ "two\nlines\r", 64, "two?lines?" },
		{ "tab\there", 64, "tab?here" },
		{ "\x1b[31mred\x1b[0m", 64, "?[31mred?[0m" },
		{ "del\x7f", 64, "del?" },
		{ "C1 \xc2\x85 \xc2\x9b", 64, "C1 ? ?" },
		{ "bidi \xe2\x80\xae evil \xe2\x81\xa6", 64, "bidi ? evil ?" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", 64,
		  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91" },
		{ "bad \xff byte", 64, "bad ? byte" },
		{ "overlong \xc0\xaf", 64, "overlong ??" },
		{ "surrogate \xed\xa0\x80", 64, "surrogate ???" },
		{ "cut \xc3", 64, "cut ?" },
		{ "abcdefghij", 11, "abcdefghij" },
		{ "abcdefghijk", 11, "abcdefg..." },
		{ "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10,
		  "\xc3\xa9\xc3\xa9\xc3\xa9..." },
		{ "abc", 1, "" },
		{ "abcdef", 4, "..." },
		{ "abcdef", 3, "ab" },
		{ "", 8, "" },
	};
	char buf[128];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memset(buf, 'Z', sizeof(buf));
		pg_sanitize_text(v[i].in, buf, v[i].outlen);
		if (strcmp(buf, v[i].out) != 0)
			fail_msg("sanitize case %zu: got \"%s\"", i, buf);
		assert_true(strlen(buf) < v[i].outlen);
	}
	pg_sanitize_text(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

static void
test_format_kv(void **state)
{
	const char *j = "{\"v\":1,\"status\":\"allow\",\"rules\":[],\"reason\":\"\","
			"\"exit\":0,\"version\":\"0.1.0\",\"workers\":4,"
			"\"config\":\"/etc/pmpgate/pmpgate.conf\",\"uptime\":12.5,"
			"\"ready\":true,\"note\":null,\"limits\":{\"a\":1},"
			"\"evil\\n\":\"x\\u001b[2Jy\"}";
	json_t *o = json_loads(j, 0, NULL);
	json_t *arr = json_array();
	char *text;

	(void)state;
	assert_non_null(o);
	text = pg_format_kv(o);
	assert_non_null(text);
	assert_string_equal(text,
		"version: 0.1.0\n"
		"workers: 4\n"
		"config: /etc/pmpgate/pmpgate.conf\n"
		"uptime: 12.5\n"
		"ready: true\n"
		"note: null\n"
		"limits: {\"a\":1}\n"
		"evil?: x?[2Jy\n");
	free(text);
	json_decref(o);

	/* Only the envelope: nothing to show. */
	o = json_loads("{\"v\":1,\"status\":\"allow\",\"rules\":[],"
		       "\"reason\":\"\",\"exit\":0}", 0, NULL);
	assert_non_null(o);
	text = pg_format_kv(o);
	assert_non_null(text);
	assert_string_equal(text, "");
	free(text);
	json_decref(o);

	assert_null(pg_format_kv(arr));
	assert_null(pg_format_kv(NULL));
	json_decref(arr);
}

static void
test_wipe_free(void **state)
{
	char *p = malloc(32);

	(void)state;
	assert_non_null(p);
	memset(p, 'S', 32);
	pg_wipe_free(p, 32);
	pg_wipe_free(NULL, 10);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fmt_parse),
		cmocka_unit_test(test_creds_vectors),
		cmocka_unit_test(test_creds_nul_and_lengths),
		cmocka_unit_test(test_format_process),
		cmocka_unit_test(test_format_env),
		cmocka_unit_test(test_format_ini),
		cmocka_unit_test(test_format_refuses_missing),
		cmocka_unit_test(test_shell_quote),
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_format_kv),
		cmocka_unit_test(test_wipe_free),
	};

	/* As in pmpgate-credentials: before any other Jansson call. */
	pg_json_wipe_on_free();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
