/*
 * timefmt.c - strict parsing of ticket window times; see timefmt.h.
 *
 * Hand-written on purpose: strptime depends on the locale, accepts
 * leading blanks and partial input, and does not range-check the way a
 * policy decision needs.  The calendar arithmetic is the proleptic
 * Gregorian days-from-civil algorithm (H. Hinnant).
 */
#include "timefmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* 9999-12-31T23:59:59Z */
#define PG_TIME_MAX INT64_C(253402300799)

/* Read exactly N decimal digits at *P into *V and advance. */
static int
digits(const char **p, int n, int *v)
{
	int r = 0, i;

	for (i = 0; i < n; i++) {
		char c = (*p)[i];

		if (c < '0' || c > '9')
			return 0;
		r = r * 10 + (c - '0');
	}
	*p += n;
	*v = r;
	return 1;
}

static int
is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int y, int m)
{
	static const int dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
				     30, 31 };

	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 of a valid civil date. */
static int64_t
days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * Zone designator at P: "Z"/"z", "+HH:MM", "+HHMM" or "+HH" (or '-').
 * Sets *offset in seconds east of UTC and returns the end, or NULL.
 */
static const char *
parse_zone(const char *p, int64_t *offset)
{
	int sign, hh, mm = 0;

	if (*p == 'Z' || *p == 'z') {
		*offset = 0;
		return p + 1;
	}
	if (*p != '+' && *p != '-')
		return NULL;
	sign = *p == '-' ? -1 : 1;
	p++;
	if (!digits(&p, 2, &hh) || hh > 23)
		return NULL;
	if (*p == ':') {
		p++;
		if (!digits(&p, 2, &mm))
			return NULL;
	} else if (*p >= '0' && *p <= '9') {
		if (!digits(&p, 2, &mm))
			return NULL;
	}
	if (mm > 59)
		return NULL;
	*offset = sign * (int64_t)(hh * 3600 + mm * 60);
	return p;
}

pg_err
pg_time_parse(const char *s, int64_t *epoch)
{
	const char *p = s;
	int y, mo, d, h, mi, sec, nfrac = 0;
	int64_t offset = 0, t;
	char sep;

	if (!s || !epoch)
		return PG_EINVAL;
	if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) ||
	    *p++ != '-' || !digits(&p, 2, &d))
		return PG_EINVAL;
	sep = *p++;
	if (sep != 'T' && sep != 't' && sep != ' ')
		return PG_EINVAL;
	if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) ||
	    *p++ != ':' || !digits(&p, 2, &sec))
		return PG_EINVAL;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 ||
	    d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
		return PG_EINVAL;
	if (sep == ' ') {
		/* ServiceNow: "YYYY-MM-DD HH:MM:SS", UTC, nothing after. */
		if (*p != '\0')
			return PG_EINVAL;
	} else {
		if (*p == '.') {
			p++;
			while (*p >= '0' && *p <= '9' && nfrac <= 9) {
				p++;
				nfrac++;
			}
			if (nfrac < 1 || nfrac > 9)
				return PG_EINVAL;
		}
		/* A zone is required: a time without one is ambiguous. */
		p = parse_zone(p, &offset);
		if (!p || *p != '\0')
			return PG_EINVAL;
	}
	/* A leap second is counted as the last second of its minute. */
	if (sec == 60)
		sec = 59;
	t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
	    offset;
	if (t < 0 || t > PG_TIME_MAX)
		return PG_EINVAL;
	*epoch = t;
	return PG_OK;
}

pg_err
pg_time_from_number(double v, int64_t *epoch)
{
	if (!epoch || !isfinite(v) || v < 0.0 || v >= (double)PG_TIME_MAX + 1.0)
		return PG_EINVAL;
	/* v is non-negative here: truncation is rounding down. */
	*epoch = (int64_t)v;
	return PG_OK;
}

void
pg_time_format(int64_t epoch, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)epoch;

	if (!buf || len == 0)
		return;
	buf[0] = '\0';
	if ((int64_t)tt != epoch || !gmtime_r(&tt, &tm))
		return;
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
