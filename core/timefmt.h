/*
 * timefmt.h - ticket window times and AWS timestamps.
 *
 * Accepted (DESIGN.md): RFC 3339 / ISO 8601 "YYYY-MM-DDTHH:MM:SS" with
 * optional fraction and "Z" or an offset (+HH:MM, +HHMM, +HH); ServiceNow's
 * "YYYY-MM-DD HH:MM:SS" (UTC); epoch seconds as a JSON number (see
 * pg_time_from_number).  Fields are range-checked (month 1-12, day valid
 * for the month, hour 0-23, minute 0-59, second 0-60); anything else is
 * PG_EINVAL.  Years 1970..9999.
 *
 * Strictly: four-digit year, two-digit month, day, hour, minute, second;
 * 'T' or 't' before the time; a fraction of 1 to 9 digits; the zone is
 * required after 'T' ("Z", "z" or an offset up to 23:59 either way: a
 * time without a zone is ambiguous and refused).  The ServiceNow form
 * (a space instead of 'T') has neither fraction nor zone.  A leap second
 * (":60") counts as ":59".  No leading or trailing characters, no
 * 24:00.  The resulting instant must lie within 0..253402300799.
 */
#ifndef PMPGATE_TIMEFMT_H
#define PMPGATE_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Parse a text time into epoch seconds (fraction dropped). */
pg_err pg_time_parse(const char *s, int64_t *epoch);

/* Accept a JSON number of epoch seconds (finite, 0..253402300799; a
 * fraction is dropped, i.e. rounded down). */
pg_err pg_time_from_number(double v, int64_t *epoch);

/* Format epoch as "YYYY-MM-DDTHH:MM:SSZ" (buf at least 21 bytes; an
 * epoch the C library cannot represent gives ""). */
void pg_time_format(int64_t epoch, char *buf, size_t len);

#endif
