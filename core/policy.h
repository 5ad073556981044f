/*
 * policy.h - the decision (DESIGN.md, "The decision").
 *
 * pg_decide() is a pure function: no I/O, no clock, no globals.  Facts are
 * gathered before it (directory, ticket, ledger) and recorded after it.
 * It is deny-by-default: every rule R1..R9 is evaluated, every failing
 * rule is reported, and allow is set only at the end when none failed.
 * A fact that could not be established (PG_FACT_UNKNOWN, a dependency
 * error) never passes a rule: it fails R9 `unavailable`.
 */
#ifndef PMPGATE_POLICY_H
#define PMPGATE_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "err.h"
#include "tickets.h"

enum {
	PG_R1 = 0,	/* not-in-group */
	PG_R2,		/* conflicting-groups */
	PG_R3,		/* ticket-not-approved */
	PG_R4,		/* four-eyes */
	PG_R5,		/* requester-holds */
	PG_R6,		/* conflicting-issuance */
	PG_R7,		/* ticket-bound */
	PG_R8,		/* duration */
	PG_R9,		/* unavailable */
	PG_RULE_COUNT
};

/* "R1".."R9" and "not-in-group".."unavailable". */
const char *pg_rule_id(int rule);
const char *pg_rule_name(int rule);

/* The STS minimum and maximum for DurationSeconds. */
#define PG_MIN_DURATION 900
#define PG_MAX_DURATION 43200

typedef enum { PG_FACT_UNKNOWN = 0, PG_FACT_YES, PG_FACT_NO } pg_fact;

typedef struct pg_context {
	const char *service, *tty, *rhost, *host;
	uid_t uid;
	pid_t pid;
} pg_context;

typedef struct pg_request {
	const char *user;
	const char *role;
	const char *ticket;
	int64_t duration;	/* requested seconds; 0 = as long as allowed */
	pg_context ctx;
} pg_request;

/* A person a ticket names as approver, resolved through the directory. */
typedef struct pg_person {
	const char *name;	/* as the ticket names them */
	pg_err resolved;	/* PG_OK, PG_ENOTFOUND, PG_EAMBIGUOUS, PG_EINVAL,
				   or a dependency error */
	const char *dn;		/* when resolved == PG_OK */
	pg_fact is_user;	/* same entry as the user */
	pg_fact is_requester;	/* same entry as the ticket's requester */
	pg_fact approver_member;	/* member of the role's approver_group */
	int duplicate;		/* same entry as an earlier approver */
} pg_person;

/* Ledger facts for R6/R7 (the ledger's view within the window). */
typedef struct pg_ledger_facts {
	const char *conflict_role;	/* a conflicting role issued to the user
					   within the window, or NULL */
	int64_t conflict_ts;		/* when */
	const char *bound_user;		/* the ticket's first user, or NULL */
	const char *bound_role;		/* the ticket's first role */
	int uses;			/* issuances already made with it */
} pg_ledger_facts;

typedef struct pg_facts {
	int64_t now;			/* epoch seconds */

	/* Directory.  dir_status != PG_OK means some lookup failed. */
	pg_err dir_status;
	const char *dir_error;
	pg_err user_status;		/* PG_OK, PG_ENOTFOUND, PG_EAMBIGUOUS */
	pg_fact in_group;		/* R1 */
	const char *group_via;		/* group DN that gave membership */
	/* R2: membership of each role this role conflicts with. */
	struct { const char *role; pg_fact member; } conflicts[PG_MAX_ROLES];
	size_t n_conflicts;

	/* Ticket.  PG_OK, PG_EINVAL (malformed id), PG_ENOTFOUND, or a
	 * dependency error. */
	pg_err ticket_status;
	const char *ticket_error;
	const pg_ticket *ticket;	/* when ticket_status == PG_OK */
	pg_fact for_user;		/* requested_for resolves to the user */
	pg_fact requester_is_user;	/* requester resolves to the user */
	pg_err requester_status;	/* resolving the requester: PG_OK, or
					   PG_ENOTFOUND/PG_EAMBIGUOUS/PG_EINVAL
					   (also when the ticket names none) */
	const pg_person *approvers;
	size_t n_approvers;

	/* Ledger (R6/R7) */
	pg_err ledger_status;
	const char *ledger_error;
	pg_ledger_facts ledger;

	/* Audit trail */
	pg_err audit_status;
	const char *audit_error;
} pg_facts;

typedef struct pg_rule_result {
	int failed;
	char reason[256];	/* why it failed, or the evidence it passed */
} pg_rule_result;

typedef struct pg_decision {
	int allow;			/* set only when no rule failed */
	unsigned failed;		/* bit (1u << PG_Rn) per failing rule */
	pg_rule_result rule[PG_RULE_COUNT];
	int64_t duration;		/* granted seconds (R8) when allowed */
	int approvals;			/* approvals that counted (R4) */
	char reason[512];		/* one line a user can act on */
	pg_err err;			/* PG_OK, PG_DENIED, or PG_EUNAVAIL when
					   R9 is the only failing rule */
} pg_decision;

void pg_decide(const pg_config *cfg, const pg_request *req,
	       const pg_facts *facts, pg_decision *out);

/* Rule ids of the failing rules as "R1 R3" (for logs). */
void pg_decision_rules(const pg_decision *d, char *buf, size_t len);

#endif
