/*
 * gather.h - gathering the facts for one request (the I/O before
 * pg_decide()).
 *
 * Looks the user up in the directory, checks membership of the role's
 * group and of the groups of every conflicting role, fetches the ticket,
 * and resolves every person the ticket names (requested-for, requester,
 * approvers) through the directory in one round trip, comparing people as
 * resolved entries, and reads the issuance ledger.  Directory requests go
 * out in batches (pg_dir_batch): a decision costs a few round trips, not
 * one per request.  Nothing here decides: a lookup that fails leaves its
 * fact PG_FACT_UNKNOWN (every fact of its batch) and the error in the
 * facts, and pg_decide() refuses (R9).
 */
#ifndef PMPGATE_GATHER_H
#define PMPGATE_GATHER_H

#include "config.h"
#include "deadline.h"
#include "directory.h"
#include "http.h"
#include "ledger.h"
#include "policy.h"
#include "tickets.h"

#define PG_MAX_APPROVERS 64

typedef struct pg_gathered {
	pg_facts facts;		/* points into the members below */
	pg_ticket ticket;
	pg_dir_entry user;	/* the user's entry */
	const char *user_dn;	/* user.dn once found, else NULL */
	/* Who the ledger and the credential cache know the user as: the
	   entry's own login name (user.name) once found, else the name the
	   request gave.  One person is one key, however the request spelled
	   the name (user_filter may match several attributes). */
	const char *ledger_user;
	pg_dir_path path;	/* how the user reached the role's group */
	pg_person approvers[PG_MAX_APPROVERS];
	/* the entries of requested-for [0], requester [1] and approvers
	   [2..]: the person facts point into them */
	pg_dir_entry people[PG_MAX_APPROVERS + 2];
	char dir_err[256];
	char ticket_err[256];
	void *ledger_hold;	/* what the ledger facts point into */
	char ledger_err[256];
} pg_gathered;

/*
 * A ticket fetcher: one helper thread with its own HTTP handle (its own
 * keep-alive connection; TLS sessions and connections are shared through
 * http.h's share), owned by one worker and used by one pg_gather() at a
 * time.  pg_gather() hands it the ticket lookup and works on the
 * directory meanwhile, so a request waits for the slower of the two, not
 * their sum.  The fetch is bounded by the request deadline (http.h), so
 * the wait for it is too.
 */
typedef struct pg_fetcher pg_fetcher;

/* Start a fetcher (thread and HTTP handle); NULL when either cannot be
 * made.  Create it from a thread that blocks the signals the process
 * handles elsewhere: the helper thread inherits its signal mask. */
pg_fetcher *pg_fetcher_new(void);

/* Stop the helper thread and free the fetcher; NULL is fine.  Must not
 * be called while a pg_gather() that uses it runs. */
void pg_fetcher_free(pg_fetcher *f);

/* Gather the facts for REQ into G (always initialised; free with
 * pg_gathered_free even after errors).  facts.now is the wall clock.
 * The ledger's view (R6/R7) is read without reserving anything.  The
 * ticket is fetched by FETCH while the user's directory lookups (entry,
 * role group, conflicting groups) run in the calling thread; the people
 * the ticket names are resolved once both the ticket and the user's entry
 * are in (with the user's memberships when the ticket is in first).  A
 * NULL FETCH leaves the ticket unavailable (R9). */
void pg_gather(pg_dir *dir, pg_fetcher *fetch, pg_ledger *ledger,
	       const pg_config *cfg, const pg_request *req, pg_deadline dl,
	       pg_gathered *g);

void pg_gathered_free(pg_gathered *g);

#endif
