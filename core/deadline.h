/*
 * deadline.h - one deadline per request, as an absolute CLOCK_MONOTONIC
 * time in milliseconds.  Every blocking call in core/ takes a deadline and
 * gives up (PG_ETIMEOUT) when it has passed.
 */
#ifndef PMPGATE_DEADLINE_H
#define PMPGATE_DEADLINE_H

#include <stdint.h>

typedef int64_t pg_deadline;

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t pg_mono_ms(void);

/* A deadline ms milliseconds from now. */
pg_deadline pg_deadline_in(int64_t ms);

/* Milliseconds left (0 when passed, never negative). */
int64_t pg_deadline_left(pg_deadline d);

/* min(left, cap_ms) when cap_ms > 0, else left: for per-call timeouts
 * bounded both by a dependency's own timeout and the request deadline. */
int64_t pg_deadline_cap(pg_deadline d, int64_t cap_ms);

#endif
