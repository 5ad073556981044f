/*
 * test_etcd.c - core/etcd.c without a cluster: base64 and int64 as the
 * JSON gateway writes them, option checks, and calls that cannot reach
 * anything (the cluster itself: tests/integration/test_ledger_etcd.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../core/etcd.h"
#include "../../core/http.h"

/* RFC 4648 section 10, and bytes that are not text. */
static void
test_b64(void **state)
{
	static const struct {
		const char *plain;
		size_t len;
		const char *b64;
	} v[] = {
		{ "", 0, "" },
		{ "f", 1, "Zg==" },
		{ "fo", 2, "Zm8=" },
		{ "foo", 3, "Zm9v" },
		{ "foob", 4, "Zm9vYg==" },
		{ "fooba", 5, "Zm9vYmE=" },
		{ "foobar", 6, "Zm9vYmFy" },
		{ "\x00\xff\xfe/", 4, "AP/+Lw==" },
		{ "/pmpgate/u/alice/", 17, "L3BtcGdhdGUvdS9hbGljZS8=" },
	};
	char *enc, *dec;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		enc = pg_etcd_b64enc(v[i].plain, v[i].len);
		assert_non_null(enc);
		assert_string_equal(enc, v[i].b64);
		assert_int_equal(pg_etcd_b64dec(enc, &dec, &len), PG_OK);
		assert_int_equal(len, v[i].len);
		assert_memory_equal(dec, v[i].plain, len);
		assert_int_equal(dec[len], '\0');
		free(enc);
		free(dec);
	}
}

static void
test_b64_bad(void **state)
{
	static const char *const bad[] = {
		"Zg=", "Zg", "Z", "Zm9v\n", "Zm 9", "Zm9v!A==", "====",
		"Zg==Zg==", "Z===", "Zm9-", "Zm9_",
	};
	char *dec = (char *)1;
	size_t i, len = 9;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (pg_etcd_b64dec(bad[i], &dec, &len) != PG_EPROTO)
			fail_msg("accepted '%s'", bad[i]);
		assert_null(dec);
		assert_int_equal(len, 0);
	}
	assert_int_equal(pg_etcd_b64dec(NULL, &dec, &len), PG_EPROTO);
}

static void
test_int(void **state)
{
	static const struct {
		const char *json;
		int ok;
		int64_t v;
	} v[] = {
		{ "\"0\"", 0, 0 },
		{ "\"42\"", 0, 42 },
		{ "\"-7\"", 0, -7 },
		{ "\"9223372036854775807\"", 0, INT64_MAX },
		{ "17", 0, 17 },
		{ "\"9223372036854775808\"", -1, 0 },
		{ "\"\"", -1, 0 },
		{ "\"-\"", -1, 0 },
		{ "\" 1\"", -1, 0 },
		{ "\"1 \"", -1, 0 },
		{ "\"0x10\"", -1, 0 },
		{ "\"+1\"", -1, 0 },
		{ "1.5", -1, 0 },
		{ "true", -1, 0 },
		{ "null", -1, 0 },
		{ "[]", -1, 0 },
	};
	json_error_t je;
	json_t *j;
	int64_t out;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		j = json_loads(v[i].json, JSON_DECODE_ANY, &je);
		assert_non_null(j);
		out = 99;
		if (pg_etcd_int(j, &out) != v[i].ok)
			fail_msg("%s", v[i].json);
		if (v[i].ok == 0)
			assert_int_equal(out, v[i].v);
		json_decref(j);
	}
	/* absent: the gateway omits zero values */
	out = 5;
	assert_int_equal(pg_etcd_int(NULL, &out), 0);
	assert_int_equal(out, 0);
}

static void
test_open_checks(void **state)
{
	const char *https[] = { "https://127.0.0.1:1" };
	const char *http[] = { "http://127.0.0.1:1" };
	const char *junk[] = { "ftp://127.0.0.1:1" };
	char err[512], dir[] = "/tmp/pg-etcd-XXXXXX", path[128];
	pg_etcd_opts o;
	pg_etcd *e = NULL;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));

	memset(&o, 0, sizeof(o));
	assert_int_equal(pg_etcd_open(&o, &e, err, sizeof(err)), PG_ECONFIG);
	assert_null(e);
	o.endpoints = http;
	o.n_endpoints = 1;
	assert_int_equal(pg_etcd_open(&o, &e, err, sizeof(err)), PG_ECONFIG);
	assert_non_null(strstr(err, "http://127.0.0.1:1"));
	o.endpoints = junk;
	o.allow_plaintext = 1;
	assert_int_equal(pg_etcd_open(&o, &e, err, sizeof(err)), PG_ECONFIG);
	o.endpoints = https;
	o.cert_file = "/c.pem";
	assert_int_equal(pg_etcd_open(&o, &e, err, sizeof(err)), PG_ECONFIG);
	assert_non_null(strstr(err, "go together"));
	o.cert_file = NULL;

	/* password files: user:password, one line, a secret */
	static const char *const bad_pw[] = { "nocolon\n", ":pw\n", "user:\n",
					      "user:pw\nmore\n" };
	size_t i;

	snprintf(path, sizeof(path), "%s/pw", dir);
	for (i = 0; i < sizeof(bad_pw) / sizeof(bad_pw[0]); i++) {
		f = fopen(path, "w");
		assert_non_null(f);
		fputs(bad_pw[i], f);
		fclose(f);
		chmod(path, 0600);
		o.password_file = path;
		if (pg_etcd_open(&o, &e, err, sizeof(err)) != PG_ECONFIG)
			fail_msg("accepted password file %zu", i);
		assert_null(e);
		assert_null(strstr(err, "pw\n"));
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("user:pw\n", f);
	fclose(f);
	chmod(path, 0644);	/* others may read it */
	assert_int_equal(pg_etcd_open(&o, &e, err, sizeof(err)), PG_ECONFIG);
	chmod(path, 0600);
	assert_int_equal(pg_etcd_open(&o, &e, err, sizeof(err)), PG_OK);
	pg_etcd_close(e);
	pg_etcd_close(NULL);
	unlink(path);
	rmdir(dir);
	pg_http_global_cleanup();
}

/* Nothing listens on any endpoint: PG_EUNAVAIL naming the last one; a
 * deadline already passed: PG_ETIMEOUT; never an answer. */
static void
test_unreachable(void **state)
{
	const char *eps[] = { "http://127.0.0.1:1", "http://127.0.0.1:2/" };
	char err[512];
	pg_etcd_opts o;
	pg_etcd *e;
	json_t *body = json_object(), *resp = (json_t *)1;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.endpoints = eps;
	o.n_endpoints = 2;
	o.allow_plaintext = 1;
	assert_int_equal(pg_etcd_open(&o, &e, err, sizeof(err)), PG_OK);
	assert_int_equal(pg_etcd_call(e, "/v3/kv/range", body,
				      pg_deadline_in(2000), &resp, err,
				      sizeof(err)), PG_EUNAVAIL);
	assert_null(resp);
	assert_non_null(strstr(err, "no endpoint could serve"));
	assert_non_null(strstr(err, "127.0.0.1"));
	assert_int_equal(pg_etcd_call(e, "/v3/kv/range", body,
				      pg_deadline_in(0), &resp, err,
				      sizeof(err)), PG_ETIMEOUT);
	assert_null(resp);
	pg_etcd_close(e);
	json_decref(body);
	pg_http_global_cleanup();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64),
		cmocka_unit_test(test_b64_bad),
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_open_checks),
		cmocka_unit_test(test_unreachable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
