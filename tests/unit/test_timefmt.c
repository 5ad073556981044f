/* test_timefmt.c - window time vectors: RFC 3339, ServiceNow, epochs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../core/timefmt.h"

struct tvec {
	const char *s;
	pg_err rc;
	int64_t epoch;		/* when rc == PG_OK */
};

/* Expected epochs computed independently (Python datetime). */
static const struct tvec tvecs[] = {
	/* RFC 3339 with Z */
	{ "2026-11-29T10:00:00Z", PG_OK, 1795946400 },
	{ "2026-11-29t10:00:00z", PG_OK, 1795946400 },
	{ "1970-01-01T00:00:00Z", PG_OK, 0 },
	{ "9999-12-31T23:59:59Z", PG_OK, INT64_C(253402300799) },
	/* offsets, three spellings */
	{ "2026-11-29T10:00:00+00:00", PG_OK, 1795946400 },
	{ "2026-11-29T10:00:00-00:00", PG_OK, 1795946400 },
	{ "2026-11-29T10:00:00+05:30", PG_OK, 1795926600 },
	{ "2026-11-29T10:00:00+0530", PG_OK, 1795926600 },
	{ "2026-11-29T10:00:00-08:00", PG_OK, 1795975200 },
	{ "2026-11-29T10:00:00-08", PG_OK, 1795975200 },
	{ "2026-01-01T00:00:00+23:59", PG_OK, 1767139260 },
	{ "2026-01-01T00:00:00-23:59", PG_OK, 1767311940 },
	{ "2026-03-01T00:30:00+01:00", PG_OK, 1772321400 },
	{ "1970-01-01T01:00:00+01:00", PG_OK, 0 },
	/* fractions are dropped */
	{ "2026-11-29T10:00:00.000+0000", PG_OK, 1795946400 },	/* Jira */
	{ "2026-11-29T10:00:00.999999999Z", PG_OK, 1795946400 },
	{ "2026-11-29T10:00:00.5+00:00", PG_OK, 1795946400 },
	/* ServiceNow */
	{ "2026-11-29 10:00:00", PG_OK, 1795946400 },
	{ "2000-02-29 12:34:56", PG_OK, 951827696 },
	/* leap years */
	{ "2024-02-29T00:00:00Z", PG_OK, 1709164800 },
	{ "2000-02-29T12:34:56Z", PG_OK, 951827696 },
	{ "2023-02-29T00:00:00Z", PG_EINVAL, 0 },
	{ "1900-02-29T00:00:00Z", PG_EINVAL, 0 },
	{ "2100-02-29T00:00:00Z", PG_EINVAL, 0 },
	/* a leap second counts as :59 */
	{ "2016-12-31T23:59:60Z", PG_OK, 1483228799 },
	{ "2016-12-31T23:59:59Z", PG_OK, 1483228799 },
	/* ranges */
	{ "2026-11-29T24:00:00Z", PG_EINVAL, 0 },
	{ "2026-11-29T23:60:00Z", PG_EINVAL, 0 },
	{ "2026-11-29T23:59:61Z", PG_EINVAL, 0 },
	{ "2026-13-01T00:00:00Z", PG_EINVAL, 0 },
	{ "2026-00-01T00:00:00Z", PG_EINVAL, 0 },
	{ "2026-04-31T00:00:00Z", PG_EINVAL, 0 },
	{ "2026-01-32T00:00:00Z", PG_EINVAL, 0 },
	{ "2026-01-00T00:00:00Z", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00+24:00", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00+05:60", PG_EINVAL, 0 },
	{ "1969-12-31T23:59:59Z", PG_EINVAL, 0 },
	{ "1970-01-01T00:00:00+00:01", PG_EINVAL, 0 },	/* before 1970 */
	{ "9999-12-31T23:59:59-00:01", PG_EINVAL, 0 },	/* after 9999 */
	{ "0000-01-01T00:00:00Z", PG_EINVAL, 0 },
	{ "-2026-11-29T10:00:00Z", PG_EINVAL, 0 },
	{ "+2026-11-29T10:00:00Z", PG_EINVAL, 0 },
	{ "12026-11-29T10:00:00Z", PG_EINVAL, 0 },
	/* shapes */
	{ "", PG_EINVAL, 0 },
	{ "2026-11-29", PG_EINVAL, 0 },
	{ "2026-11-29T10:00Z", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00", PG_EINVAL, 0 },	/* no zone */
	{ "2026-11-29T1:00:00Z", PG_EINVAL, 0 },
	{ "2026-1-29T10:00:00Z", PG_EINVAL, 0 },
	{ "2026/11/29T10:00:00Z", PG_EINVAL, 0 },
	{ "2026-11-29X10:00:00Z", PG_EINVAL, 0 },
	{ "2026-11-29 10:00:00Z", PG_EINVAL, 0 },	/* space form: no zone */
	{ "2026-11-29 10:00:00.5", PG_EINVAL, 0 },	/* nor fraction */
	{ "2026-11-29  10:00:00", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00.Z", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00.1234567890Z", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00,5Z", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00+5", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00+05:3", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00+053", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00+05:30:00", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00ZZ", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00Z ", PG_EINVAL, 0 },
	{ " 2026-11-29T10:00:00Z", PG_EINVAL, 0 },
	{ "2026-11-29 10:00:00 ", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00Zjunk", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00UTC", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00\nZ", PG_EINVAL, 0 },
	{ "2026-11-29T10:00:00Z\n", PG_EINVAL, 0 },
	{ "2026-1a-29T10:00:00Z", PG_EINVAL, 0 },
	{ "١٩٧٠-01-01T00:00:00Z", PG_EINVAL, 0 },
	{ "1795946400", PG_EINVAL, 0 },
	{ "tomorrow", PG_EINVAL, 0 },
};

static void
test_parse(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(tvecs) / sizeof(tvecs[0]); i++) {
		int64_t e = -12345;
		pg_err rc = pg_time_parse(tvecs[i].s, &e);

		if (rc != tvecs[i].rc)
			fail_msg("'%s': rc %d, want %d", tvecs[i].s, rc,
				 tvecs[i].rc);
		if (rc == PG_OK && e != tvecs[i].epoch)
			fail_msg("'%s': %lld, want %lld", tvecs[i].s,
				 (long long)e, (long long)tvecs[i].epoch);
		if (rc != PG_OK && e != -12345)
			fail_msg("'%s': output written on error", tvecs[i].s);
	}
	assert_int_equal(pg_time_parse(NULL, NULL), PG_EINVAL);
}

struct nvec {
	double v;
	pg_err rc;
	int64_t epoch;
};

static void
test_number(void **state)
{
	const struct nvec nv[] = {
		{ 0.0, PG_OK, 0 },
		{ -0.0, PG_OK, 0 },
		{ 1795946400.0, PG_OK, 1795946400 },
		{ 1795946400.75, PG_OK, 1795946400 },
		{ 0.999, PG_OK, 0 },
		{ 253402300799.0, PG_OK, INT64_C(253402300799) },
		{ 253402300799.5, PG_OK, INT64_C(253402300799) },
		{ 253402300800.0, PG_EINVAL, 0 },
		{ 1e300, PG_EINVAL, 0 },
		{ -1.0, PG_EINVAL, 0 },
		{ -0.5, PG_EINVAL, 0 },
		{ -1e300, PG_EINVAL, 0 },
		{ NAN, PG_EINVAL, 0 },
		{ INFINITY, PG_EINVAL, 0 },
		{ -INFINITY, PG_EINVAL, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(nv) / sizeof(nv[0]); i++) {
		int64_t e = -1;
		pg_err rc = pg_time_from_number(nv[i].v, &e);

		if (rc != nv[i].rc)
			fail_msg("%g: rc %d, want %d", nv[i].v, rc, nv[i].rc);
		if (rc == PG_OK && e != nv[i].epoch)
			fail_msg("%g: %lld", nv[i].v, (long long)e);
	}
}

static void
test_format(void **state)
{
	char buf[32];
	char small[8];
	int64_t back;

	(void)state;
	pg_time_format(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	pg_time_format(1795946400, buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-29T10:00:00Z");
	pg_time_format(951827696, buf, 21);
	assert_string_equal(buf, "2000-02-29T12:34:56Z");
	pg_time_format(INT64_C(253402300799), buf, sizeof(buf));
	assert_string_equal(buf, "9999-12-31T23:59:59Z");
	/* round trip */
	assert_int_equal(pg_time_parse(buf, &back), PG_OK);
	assert_int_equal(back, INT64_C(253402300799));
	/* a short buffer is truncated and terminated, never overrun */
	memset(small, 'x', sizeof(small));
	pg_time_format(0, small, sizeof(small));
	assert_string_equal(small, "1970-01");
	pg_time_format(0, small, 0);
	assert_int_equal(small[0], '1');
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_number),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
