/* err.c - names and exit codes for pg_err; see err.h. */
#include "err.h"

const char *
pg_err_name(pg_err e)
{
	switch (e) {
	case PG_OK:		return "ok";
	case PG_DENIED:		return "denied";
	case PG_ENOTFOUND:	return "not-found";
	case PG_EAMBIGUOUS:	return "ambiguous";
	case PG_EINVAL:		return "invalid-input";
	case PG_EUSAGE:		return "usage";
	case PG_ECONFIG:	return "configuration";
	case PG_EUNAVAIL:	return "unavailable";
	case PG_ETIMEOUT:	return "timeout";
	case PG_EPROTO:		return "protocol";
	case PG_EBUSY:		return "busy";
	case PG_ENOMEM:		return "out-of-memory";
	case PG_EAUDIT:		return "audit";
	case PG_EINTERNAL:	return "internal";
	}
	return "internal";
}

int
pg_err_exit(pg_err e)
{
	switch (e) {
	case PG_OK:
		return PG_EXIT_OK;
	case PG_DENIED:
	case PG_ENOTFOUND:
	case PG_EAMBIGUOUS:
	case PG_EINVAL:
		return PG_EXIT_DENIED;
	case PG_EUSAGE:
	case PG_ECONFIG:
		return PG_EXIT_USAGE;
	case PG_EUNAVAIL:
	case PG_ETIMEOUT:
	case PG_EPROTO:
	case PG_EBUSY:
		return PG_EXIT_UNAVAIL;
	case PG_ENOMEM:
	case PG_EAUDIT:
	case PG_EINTERNAL:
		return PG_EXIT_INTERNAL;
	}
	return PG_EXIT_INTERNAL;
}
