/* deadline.c - see deadline.h. */
#include "deadline.h"

#include <time.h>

int64_t
pg_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pg_deadline
pg_deadline_in(int64_t ms)
{
	return pg_mono_ms() + ms;
}

int64_t
pg_deadline_left(pg_deadline d)
{
	int64_t left = d - pg_mono_ms();

	return left > 0 ? left : 0;
}

int64_t
pg_deadline_cap(pg_deadline d, int64_t cap_ms)
{
	int64_t left = pg_deadline_left(d);

	return (cap_ms > 0 && cap_ms < left) ? cap_ms : left;
}
