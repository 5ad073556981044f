/*
 * err.h - the one error enum of pmpgate.
 *
 * Every core/ call returns a pg_err.  The mapping to process exit codes
 * lives in one place (pg_err_exit, core/err.c); the mapping to PAM codes
 * lives in one place in module/.
 *
 * Exit codes (DESIGN.md, "Helper"): 0 issued/allowed; 1 refused by policy;
 * 2 usage or configuration error; 3 a dependency is unavailable;
 * 4 internal or audit failure.
 */
#ifndef PMPGATE_ERR_H
#define PMPGATE_ERR_H

typedef enum pg_err {
	PG_OK = 0,
	PG_DENIED,	/* refused by policy                                  -> 1 */
	PG_ENOTFOUND,	/* the thing looked up does not exist (user, ticket)  -> 1 */
	PG_EAMBIGUOUS,	/* a lookup that must name one thing named several    -> 1 */
	PG_EINVAL,	/* bad input from a caller (user name, ticket id)     -> 1 */
	PG_EUSAGE,	/* bad command line or request                        -> 2 */
	PG_ECONFIG,	/* configuration (or a file it names) is wrong        -> 2 */
	PG_EUNAVAIL,	/* a dependency cannot be reached or failed           -> 3 */
	PG_ETIMEOUT,	/* the request deadline passed                        -> 3 */
	PG_EPROTO,	/* a dependency answered something we cannot accept   -> 3 */
	PG_EBUSY,	/* the daemon is overloaded                           -> 3 */
	PG_ENOMEM,	/* out of memory                                      -> 4 */
	PG_EAUDIT,	/* the audit trail cannot be written                  -> 4 */
	PG_EINTERNAL,	/* anything else                                      -> 4 */
} pg_err;

/* Process exit codes, DESIGN.md. */
enum {
	PG_EXIT_OK = 0,
	PG_EXIT_DENIED = 1,
	PG_EXIT_USAGE = 2,
	PG_EXIT_UNAVAIL = 3,
	PG_EXIT_INTERNAL = 4,
};

/* A short, stable, lowercase name for an error ("unavailable"). */
const char *pg_err_name(pg_err e);

/* The exit code for an error; the only such mapping in the project. */
int pg_err_exit(pg_err e);

#endif
