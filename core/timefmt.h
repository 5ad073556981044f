/*
 * timefmt.h - ticket window times and AWS timestamps.
 *
 * Accepted (DESIGN.md): RFC 3339 / ISO 8601 "YYYY-MM-DDTHH:MM:SS" with
 * optional fraction and "Z" or an offset (+HH:MM, +HHMM, +HH); ServiceNow's
 * "YYYY-MM-DD HH:MM:SS" (UTC); epoch seconds as a JSON number (see
 * pg_time_from_number).  Fields are range-checked (month 1-12, day valid
 * for the month, hour 0-23, minute 0-59, second 0-60); anything else is
 * PG_EINVAL.  Years 1970..9999.
 */
#ifndef PMPGATE_TIMEFMT_H
#define PMPGATE_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Parse a text time into epoch seconds (fraction dropped). */
pg_err pg_time_parse(const char *s, int64_t *epoch);

/* Accept a JSON number of epoch seconds (finite, 0..253402300799). */
pg_err pg_time_from_number(double v, int64_t *epoch);

/* Format epoch as "YYYY-MM-DDTHH:MM:SSZ" (buf at least 21 bytes). */
void pg_time_format(int64_t epoch, char *buf, size_t len);

#endif
