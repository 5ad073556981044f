/* test_jsonptr.c - JSON Pointer vectors (RFC 6901 and the '*' wildcard). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../core/jsonptr.h"

/* RFC 6901 section 5. */
static const char rfc_doc[] =
	"{\"foo\":[\"bar\",\"baz\"],\"\":0,\"a/b\":1,\"c%d\":2,\"e^f\":3,"
	"\"g|h\":4,\"i\\\\j\":5,\"k\\\"l\":6,\" \":7,\"m~n\":8,"
	"\"~1\":9,\"-\":10,\"*\":11}";

static const char wild_doc[] =
	"{\"a\":[{\"n\":\"x\",\"r\":[{\"n\":\"p\"},{\"n\":\"q\"}]},"
	"{\"n\":\"y\"},{\"m\":1},5,[{\"n\":\"z\"}],null],"
	"\"o\":{\"k\":{\"n\":\"w\"}},"
	"\"deep\":[[[\"d0\",\"d1\"]],[[\"d2\"]]]}";

struct vec {
	const char *doc;
	const char *ptr;
	size_t max;
	pg_err rc;
	const char *want;	/* JSON array of matches; NULL = whole doc */
};

static const struct vec vecs[] = {
	/* RFC 6901 examples */
	{ rfc_doc, "", 8, PG_OK, NULL },
	{ rfc_doc, "/foo", 8, PG_OK, "[[\"bar\",\"baz\"]]" },
	{ rfc_doc, "/foo/0", 8, PG_OK, "[\"bar\"]" },
	{ rfc_doc, "/foo/1", 8, PG_OK, "[\"baz\"]" },
	{ rfc_doc, "/", 8, PG_OK, "[0]" },
	{ rfc_doc, "/a~1b", 8, PG_OK, "[1]" },
	{ rfc_doc, "/c%d", 8, PG_OK, "[2]" },
	{ rfc_doc, "/e^f", 8, PG_OK, "[3]" },
	{ rfc_doc, "/g|h", 8, PG_OK, "[4]" },
	{ rfc_doc, "/i\\j", 8, PG_OK, "[5]" },
	{ rfc_doc, "/k\"l", 8, PG_OK, "[6]" },
	{ rfc_doc, "/ ", 8, PG_OK, "[7]" },
	{ rfc_doc, "/m~0n", 8, PG_OK, "[8]" },
	/* "~01" is "~1", not "/" */
	{ rfc_doc, "/~01", 8, PG_OK, "[9]" },
	{ rfc_doc, "/a~0b", 8, PG_OK, "[]" },
	/* "-" is an ordinary member name in an object */
	{ rfc_doc, "/-", 8, PG_OK, "[10]" },
	/* array indexes */
	{ rfc_doc, "/foo/2", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/01", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/00", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/-", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/+1", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/ 1", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/1x", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/18446744073709551617", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/99999999999999999999999", 8, PG_OK, "[]" },
	/* tokens below a scalar match nothing */
	{ rfc_doc, "/foo/0/x", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/0/0", 8, PG_OK, "[]" },
	{ rfc_doc, "/missing", 8, PG_OK, "[]" },
	{ rfc_doc, "/missing/deeper/still", 8, PG_OK, "[]" },
	/* '*' on an object matches nothing, even a member named "*" */
	{ rfc_doc, "/*", 8, PG_OK, "[]" },
	{ rfc_doc, "/foo/*", 8, PG_OK, "[\"bar\",\"baz\"]" },
	{ rfc_doc, "/foo/*/*", 8, PG_OK, "[]" },
	/* '*' at several levels */
	{ wild_doc, "/a/*/n", 8, PG_OK, "[\"x\",\"y\"]" },
	{ wild_doc, "/a/*/r/*/n", 8, PG_OK, "[\"p\",\"q\"]" },
	{ wild_doc, "/a/*/*/n", 8, PG_OK, "[\"z\"]" },
	{ wild_doc, "/a/0/r/1/n", 8, PG_OK, "[\"q\"]" },
	{ wild_doc, "/o/*/n", 8, PG_OK, "[]" },
	{ wild_doc, "/o/k/n", 8, PG_OK, "[\"w\"]" },
	{ wild_doc, "/deep/*/*/*", 8, PG_OK, "[\"d0\",\"d1\",\"d2\"]" },
	{ wild_doc, "/deep/*/0/1", 8, PG_OK, "[\"d1\"]" },
	{ wild_doc, "/a/5", 8, PG_OK, "[null]" },
	{ wild_doc, "/a/5/n", 8, PG_OK, "[]" },
	{ wild_doc, "/a/*", 8, PG_OK,
	  "[{\"n\":\"x\",\"r\":[{\"n\":\"p\"},{\"n\":\"q\"}]},{\"n\":\"y\"},"
	  "{\"m\":1},5,[{\"n\":\"z\"}],null]" },
	/* the match bound */
	{ wild_doc, "/deep/*/*/*", 3, PG_OK, "[\"d0\",\"d1\",\"d2\"]" },
	{ wild_doc, "/deep/*/*/*", 2, PG_EPROTO, "[]" },
	{ wild_doc, "/a/*/n", 1, PG_EPROTO, "[]" },
	{ wild_doc, "/o/k/n", 0, PG_EPROTO, "[]" },
	{ wild_doc, "/o/k/zz", 0, PG_OK, "[]" },
	/* bad pointers */
	{ rfc_doc, "foo", 8, PG_EINVAL, "[]" },
	{ rfc_doc, "foo/0", 8, PG_EINVAL, "[]" },
	{ rfc_doc, "/~2", 8, PG_EINVAL, "[]" },
	{ rfc_doc, "/~", 8, PG_EINVAL, "[]" },
	{ rfc_doc, "/a~", 8, PG_EINVAL, "[]" },
	{ rfc_doc, "/foo/~a", 8, PG_EINVAL, "[]" },
	{ rfc_doc, "#/foo", 8, PG_EINVAL, "[]" },
	{ rfc_doc, " /foo", 8, PG_EINVAL, "[]" },
};

static json_t *
load(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &e);

	if (!j)
		fail_msg("bad test JSON: %s: %s", s, e.text);
	return j;
}

static void
test_vectors(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		const struct vec *v = &vecs[i];
		json_t *doc = load(v->doc), *out, *want, *marker;
		pg_err rc;

		/* A value already in OUT must survive, errors or not. */
		out = json_array();
		marker = json_string("marker");
		json_array_append_new(out, marker);
		rc = pg_jsonptr_eval(doc, v->ptr, out, v->max);
		if (rc != v->rc)
			fail_msg("vector %zu (%s): rc %d, want %d", i, v->ptr,
				 rc, v->rc);
		if (v->want) {
			want = load(v->want);
			json_array_insert(want, 0, marker);
		} else {
			want = json_pack("[sO]", "marker", doc);
		}
		if (!json_equal(out, want)) {
			char *got = json_dumps(out, JSON_COMPACT);

			fail_msg("vector %zu (%s): got %s", i, v->ptr, got);
		}
		json_decref(want);
		json_decref(out);
		json_decref(doc);
	}
}

static void
test_valid(void **state)
{
	(void)state;
	assert_int_equal(pg_jsonptr_valid(""), PG_OK);
	assert_int_equal(pg_jsonptr_valid("/"), PG_OK);
	assert_int_equal(pg_jsonptr_valid("/result/0/approvers/*/name"), PG_OK);
	assert_int_equal(pg_jsonptr_valid("/a~0~1b"), PG_OK);
	assert_int_equal(pg_jsonptr_valid(NULL), PG_EINVAL);
	assert_int_equal(pg_jsonptr_valid("result"), PG_EINVAL);
	assert_int_equal(pg_jsonptr_valid("/a~"), PG_EINVAL);
	assert_int_equal(pg_jsonptr_valid("/a~3"), PG_EINVAL);
}

static void
test_bad_arguments(void **state)
{
	json_t *doc = load(rfc_doc), *obj = json_object(), *out = json_array();

	(void)state;
	assert_int_equal(pg_jsonptr_eval(NULL, "/foo", out, 8), PG_EINVAL);
	assert_int_equal(pg_jsonptr_eval(doc, "/foo", obj, 8), PG_EINVAL);
	assert_int_equal(pg_jsonptr_eval(doc, "/foo", NULL, 8), PG_EINVAL);
	assert_int_equal(pg_jsonptr_eval(doc, NULL, out, 8), PG_EINVAL);
	assert_int_equal(json_array_size(out), 0);
	assert_int_equal(json_object_size(obj), 0);
	json_decref(doc);
	json_decref(obj);
	json_decref(out);
}

/* Matches are the document's own values (references), not copies. */
static void
test_references(void **state)
{
	json_t *doc = load(wild_doc), *out = json_array();

	(void)state;
	assert_int_equal(pg_jsonptr_eval(doc, "/o/k", out, 8), PG_OK);
	assert_int_equal(json_array_size(out), 1);
	assert_ptr_equal(json_array_get(out, 0),
			 json_object_get(json_object_get(doc, "o"), "k"));
	json_decref(doc);
	/* OUT keeps its own reference: still readable after the doc. */
	assert_string_equal(json_string_value(json_object_get(
		json_array_get(out, 0), "n")), "w");
	json_decref(out);
}

/* A wide array: the bound stops the walk, and a generous bound does not. */
static void
test_wide(void **state)
{
	json_t *doc = json_object(), *arr = json_array(), *out = json_array();
	size_t i;

	(void)state;
	for (i = 0; i < 10000; i++)
		json_array_append_new(arr, json_pack("{s:i}", "v", (int)i));
	json_object_set_new(doc, "a", arr);
	assert_int_equal(pg_jsonptr_eval(doc, "/a/*/v", out, 64), PG_EPROTO);
	assert_int_equal(json_array_size(out), 0);
	assert_int_equal(pg_jsonptr_eval(doc, "/a/*/v", out, 10000), PG_OK);
	assert_int_equal(json_array_size(out), 10000);
	assert_int_equal(json_integer_value(json_array_get(out, 9999)), 9999);
	json_decref(out);
	json_decref(doc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_references),
		cmocka_unit_test(test_wide),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
