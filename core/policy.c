/* policy.c - the one decision; see policy.h. */
#include "policy.h"
#include "timefmt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const rule_ids[PG_RULE_COUNT] = {
	"R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9",
};

static const char *const rule_names[PG_RULE_COUNT] = {
	"not-in-group", "conflicting-groups", "ticket-not-approved",
	"four-eyes", "requester-holds", "conflicting-issuance",
	"ticket-bound", "duration", "unavailable",
};

const char *
pg_rule_id(int rule)
{
	return (rule >= 0 && rule < PG_RULE_COUNT) ? rule_ids[rule] : "R?";
}

const char *
pg_rule_name(int rule)
{
	return (rule >= 0 && rule < PG_RULE_COUNT) ? rule_names[rule] : "unknown";
}

static const char *
nz(const char *s)
{
	return (s != NULL && s[0] != '\0') ? s : "?";
}

/* Mark RULE failed with a reason; the first reason given is kept. */
static void __attribute__((format(printf, 3, 4)))
fail(pg_decision *d, int rule, const char *fmt, ...)
{
	va_list ap;

	if (d->failed & (1u << rule))
		return;
	d->failed |= 1u << rule;
	d->rule[rule].failed = 1;
	va_start(ap, fmt);
	vsnprintf(d->rule[rule].reason, sizeof(d->rule[rule].reason), fmt, ap);
	va_end(ap);
}

/* Record the evidence for a rule that passed (for `pmpgate check`). */
static void __attribute__((format(printf, 3, 4)))
pass(pg_decision *d, int rule, const char *fmt, ...)
{
	va_list ap;

	if (d->failed & (1u << rule))
		return;
	va_start(ap, fmt);
	vsnprintf(d->rule[rule].reason, sizeof(d->rule[rule].reason), fmt, ap);
	va_end(ap);
}

/* A fact a rule needs could not be established. */
static void
unknown(pg_decision *d, const pg_facts *f, const char *what)
{
	const char *why = f->dir_error;

	if (f->dir_status == PG_OK)
		why = "lookup incomplete";
	fail(d, PG_R9, "directory unavailable while checking %s: %s", what,
	     nz(why));
}

static void
rule_membership(const pg_role_cfg *role, const pg_request *req,
		const pg_facts *f, pg_decision *d)
{
	size_t i;

	/* R1 */
	if (f->user_status == PG_ENOTFOUND)
		fail(d, PG_R1, "user %s is not in the directory", req->user);
	else if (f->user_status == PG_EAMBIGUOUS)
		fail(d, PG_R1, "user %s matches several directory entries",
		     req->user);
	else if (f->user_status != PG_OK)
		unknown(d, f, "the user");
	else if (f->in_group == PG_FACT_NO)
		fail(d, PG_R1, "%s is not a member of %s (the group of role %s)",
		     req->user, role->group, role->name);
	else if (f->in_group == PG_FACT_YES)
		pass(d, PG_R1, "%s is a member of %s%s%s", req->user,
		     role->group, f->group_via ? " via " : "",
		     f->group_via ? f->group_via : "");
	else
		unknown(d, f, "group membership");

	/* R2: every role this one conflicts with needs a membership fact. */
	for (i = 0; i < role->conflicts.n; i++) {
		const char *other = role->conflicts.v[i];
		pg_fact m = PG_FACT_UNKNOWN;
		size_t j;

		for (j = 0; j < f->n_conflicts; j++)
			if (f->conflicts[j].role != NULL &&
			    strcmp(f->conflicts[j].role, other) == 0)
				m = f->conflicts[j].member;
		if (m == PG_FACT_YES)
			fail(d, PG_R2, "%s is a member of the groups of both %s "
			     "and %s, which conflict", req->user, role->name,
			     other);
		else if (m == PG_FACT_UNKNOWN && f->user_status == PG_OK)
			unknown(d, f, "conflicting group membership");
	}
	if (f->user_status == PG_OK)
		pass(d, PG_R2, "%s is in no group of a role conflicting with %s",
		     req->user, role->name);
}

/*
 * Inside the ticket's window: start <= now < end.  A window field the
 * configuration maps but the ticket leaves empty (null, "", missing) is
 * a window nobody approved: refused, never read as "open-ended".
 */
static int
window_ok(const pg_config *cfg, const pg_ticket *t, const pg_facts *f,
	  pg_decision *d)
{
	char when[32];

	if (cfg->tickets.field[PG_FIELD_WINDOW_START] != NULL &&
	    !t->has_start) {
		fail(d, PG_R3, "ticket %s has no start of its change window "
		     "(field.window_start is empty)", t->id);
		return 0;
	}
	if (cfg->tickets.field[PG_FIELD_WINDOW_END] != NULL && !t->has_end) {
		fail(d, PG_R3, "ticket %s has no end of its change window "
		     "(field.window_end is empty)", t->id);
		return 0;
	}
	if (t->has_start && f->now < t->window_start) {
		pg_time_format(t->window_start, when, sizeof(when));
		fail(d, PG_R3, "ticket %s's window has not opened yet "
		     "(opens %s)", t->id, when);
		return 0;
	}
	if (t->has_end && f->now >= t->window_end) {
		pg_time_format(t->window_end, when, sizeof(when));
		fail(d, PG_R3, "ticket %s's window closed at %s", t->id, when);
		return 0;
	}
	return 1;
}

static void
rule_ticket(const pg_config *cfg, const pg_role_cfg *role,
	    const pg_request *req, const pg_facts *f, pg_decision *d)
{
	const pg_ticket *t = f->ticket;

	if (req->ticket == NULL || req->ticket[0] == '\0') {
		fail(d, PG_R3, "no ticket given: name an approved ticket "
		     "(--ticket or PMPGATE_TICKET)");
		return;
	}
	switch (f->ticket_status) {
	case PG_OK:
		break;
	case PG_EINVAL:
		fail(d, PG_R3, "%s", nz(f->ticket_error));
		return;
	case PG_ENOTFOUND:
		fail(d, PG_R3, "ticket %s was not found in the ticket system",
		     req->ticket);
		return;
	default:
		fail(d, PG_R9, "ticket system unavailable: %s",
		     nz(f->ticket_error));
		return;
	}
	if (t == NULL) {
		fail(d, PG_R9, "ticket %s could not be read", req->ticket);
		return;
	}
	if (!pg_ticket_state_approved(cfg, t->state))
		fail(d, PG_R3, "ticket %s is not approved (state: %s)", t->id,
		     t->state ? t->state : "none");
	else if (t->role == NULL || strcmp(t->role, role->name) != 0)
		fail(d, PG_R3, "ticket %s is for role %s, not %s", t->id,
		     t->role ? t->role : "(none)", role->name);
	else if (window_ok(cfg, t, f, d)) {
		if (f->for_user == PG_FACT_NO)
			fail(d, PG_R3, "ticket %s is for %s, not for %s", t->id,
			     t->requested_for ? t->requested_for : "nobody",
			     req->user);
		else if (f->for_user == PG_FACT_UNKNOWN)
			unknown(d, f, "the person the ticket is for");
		else
			pass(d, PG_R3, "ticket %s is %s, for %s, role %s, "
			     "inside its window", t->id, t->state, req->user,
			     role->name);
	}
}

static void
rule_four_eyes(const pg_role_cfg *role, const pg_facts *f, pg_decision *d)
{
	const pg_ticket *t = f->ticket;
	int need, have = 0, self = 0, requester = 0, outsider = 0,
	    unresolved = 0, unknowns = 0;
	size_t i;

	if (f->ticket_status != PG_OK || t == NULL)
		return;		/* R3 or R9 already fails */
	need = pg_role_min_approvals(role, t->category);
	if (f->dir_status == PG_OK && f->requester_status != PG_OK) {
		fail(d, PG_R4, "ticket %s's requester (%s) %s, so approvals "
		     "cannot be checked against the requester", t->id,
		     t->requester && t->requester[0] ? t->requester : "none",
		     f->requester_status == PG_EAMBIGUOUS ?
		     "matches several directory entries" :
		     "is not in the directory");
		return;
	}
	for (i = 0; i < f->n_approvers; i++) {
		const pg_person *p = &f->approvers[i];

		if (p->resolved != PG_OK) {
			if (p->resolved == PG_ENOTFOUND ||
			    p->resolved == PG_EAMBIGUOUS ||
			    p->resolved == PG_EINVAL)
				unresolved++;
			else {
				unknown(d, f, "an approver");
				unknowns++;
			}
			continue;
		}
		if (p->duplicate)
			continue;
		if (p->is_user != PG_FACT_NO) {
			if (p->is_user == PG_FACT_YES)
				self++;
			else {
				unknown(d, f, "an approver");
				unknowns++;
			}
			continue;
		}
		if (p->is_requester != PG_FACT_NO) {
			if (p->is_requester == PG_FACT_YES)
				requester++;
			else {
				unknown(d, f, "an approver");
				unknowns++;
			}
			continue;
		}
		if (role->approver_group != NULL &&
		    p->approver_member != PG_FACT_YES) {
			if (p->approver_member == PG_FACT_NO)
				outsider++;
			else {
				unknown(d, f, "an approver's group");
				unknowns++;
			}
			continue;
		}
		have++;
	}
	d->approvals = have;
	if (have >= need) {
		pass(d, PG_R4, "%d of %d required approvals count", have, need);
		return;
	}
	if (unknowns > 0 || f->dir_status != PG_OK)
		return;		/* not established: R9 already fails */
	if (have == 0 && requester > 0 && self == 0 && outsider == 0)
		fail(d, PG_R4, "ticket %s was approved only by its requester",
		     t->id);
	else if (have == 0 && self > 0 && requester == 0 && outsider == 0)
		fail(d, PG_R4, "ticket %s was approved only by you", t->id);
	else
		fail(d, PG_R4, "ticket %s has %d approval%s that count%s, %d "
		     "needed (not counted: %d self, %d requester, %d outside "
		     "the approver group, %d unknown)", t->id, have,
		     have == 1 ? "" : "s", have == 1 ? "s" : "", need, self,
		     requester, outsider, unresolved);
}

static void
rule_requester(const pg_role_cfg *role, const pg_request *req,
	       const pg_facts *f, pg_decision *d)
{
	if (role->requester_may_hold || f->ticket_status != PG_OK ||
	    f->ticket == NULL)
		return;
	if (f->dir_status == PG_OK && f->requester_status != PG_OK)
		fail(d, PG_R5, "ticket %s's requester (%s) cannot be found in "
		     "the directory, so it cannot be told apart from %s",
		     f->ticket->id, f->ticket->requester &&
		     f->ticket->requester[0] ? f->ticket->requester : "none",
		     req->user);
	else if (f->requester_is_user == PG_FACT_YES)
		fail(d, PG_R5, "%s requested ticket %s and may not also hold "
		     "role %s", req->user, f->ticket->id, role->name);
	else if (f->requester_is_user == PG_FACT_UNKNOWN)
		unknown(d, f, "the ticket's requester");
	else
		pass(d, PG_R5, "the ticket's requester is not %s", req->user);
}

static void
rule_ledger(const pg_role_cfg *role, const pg_request *req, const pg_facts *f,
	    pg_decision *d)
{
	const pg_ledger_facts *l = &f->ledger;

	if (f->ledger_status != PG_OK) {
		fail(d, PG_R9, "issuance ledger unavailable: %s",
		     nz(f->ledger_error));
		return;
	}
	if (l->conflict_role != NULL)
		fail(d, PG_R6, "%s was issued conflicting role %s within the "
		     "separation window", req->user, l->conflict_role);
	else
		pass(d, PG_R6, "no conflicting role issued to %s in the window",
		     req->user);
	if (l->bound_user != NULL && strcmp(l->bound_user, req->user) != 0)
		fail(d, PG_R7, "ticket %s is already bound to another user",
		     nz(req->ticket));
	else if (l->bound_role != NULL && strcmp(l->bound_role, role->name) != 0)
		fail(d, PG_R7, "ticket %s is already bound to role %s",
		     nz(req->ticket), l->bound_role);
	else if (role->max_uses > 0 && l->uses >= role->max_uses)
		fail(d, PG_R7, "ticket %s has been used %d times (max_uses %d)",
		     nz(req->ticket), l->uses, role->max_uses);
	else
		pass(d, PG_R7, "ticket %s is not bound elsewhere",
		     nz(req->ticket));
}

static void
rule_duration(const pg_role_cfg *role, const pg_request *req,
	      const pg_facts *f, pg_decision *d)
{
	int64_t dur = role->max_duration;

	if (req->duration < 0 || req->duration > PG_MAX_DURATION) {
		fail(d, PG_R8, "requested duration %lld s is outside %d..%d s",
		     (long long)req->duration, PG_MIN_DURATION,
		     PG_MAX_DURATION);
		return;
	}
	if (req->duration > 0 && req->duration < PG_MIN_DURATION) {
		fail(d, PG_R8, "requested duration %lld s is below the STS "
		     "minimum of %d s", (long long)req->duration,
		     PG_MIN_DURATION);
		return;
	}
	if (req->duration > 0 && req->duration < dur)
		dur = req->duration;
	if (f->ticket_status == PG_OK && f->ticket != NULL &&
	    f->ticket->has_end && f->now < f->ticket->window_end &&
	    f->ticket->window_end - f->now < dur)
		dur = f->ticket->window_end - f->now;
	if (dur < PG_MIN_DURATION) {
		fail(d, PG_R8, "only %lld s remain in the ticket's window, below "
		     "the STS minimum of %d s", (long long)(dur > 0 ? dur : 0),
		     PG_MIN_DURATION);
		return;
	}
	d->duration = dur;
	pass(d, PG_R8, "%lld s", (long long)dur);
}

static void
summarise(pg_decision *d)
{
	int first = -1, r;
	size_t off;

	/* A policy reason is more useful to the user than R9: show it first. */
	for (r = 0; r < PG_RULE_COUNT && first < 0; r++)
		if ((d->failed & (1u << r)) && r != PG_R9)
			first = r;
	if (first < 0)
		first = PG_R9;
	off = (size_t)snprintf(d->reason, sizeof(d->reason), "%s (%s %s)",
			       d->rule[first].reason, pg_rule_id(first),
			       pg_rule_name(first));
	for (r = 0; r < PG_RULE_COUNT; r++) {
		if (r == first || !(d->failed & (1u << r)) ||
		    off >= sizeof(d->reason))
			continue;
		off += (size_t)snprintf(d->reason + off, sizeof(d->reason) - off,
					"; %s (%s %s)", d->rule[r].reason,
					pg_rule_id(r), pg_rule_name(r));
	}
}

void
pg_decide(const pg_config *cfg, const pg_request *req, const pg_facts *f,
	  pg_decision *d)
{
	const pg_role_cfg *role;

	memset(d, 0, sizeof(*d));
	d->err = PG_DENIED;

	role = (req->role != NULL) ? pg_config_role(cfg, req->role) : NULL;
	if (role == NULL || req->user == NULL || req->user[0] == '\0') {
		fail(d, PG_R1, "no role named %s is configured", nz(req->role));
		goto out;
	}
	if (f->dir_status != PG_OK)
		fail(d, PG_R9, "directory unavailable: %s", nz(f->dir_error));
	if (f->audit_status != PG_OK)
		fail(d, PG_R9, "audit trail unavailable: %s",
		     nz(f->audit_error));

	rule_membership(role, req, f, d);
	rule_ticket(cfg, role, req, f, d);
	rule_four_eyes(role, f, d);
	rule_requester(role, req, f, d);
	rule_ledger(role, req, f, d);
	rule_duration(role, req, f, d);

out:
	if (d->failed != 0) {
		d->duration = 0;
		d->err = (d->failed == (1u << PG_R9)) ? PG_EUNAVAIL : PG_DENIED;
		summarise(d);
		return;
	}
	pass(d, PG_R9, "the directory, ticket system, ledger and audit trail "
	     "answered");
	/* Deny by default: the allow is set here and nowhere else. */
	d->allow = 1;
	d->err = PG_OK;
	snprintf(d->reason, sizeof(d->reason), "allowed: %s as %s for %lld s",
		 req->user, role->name, (long long)d->duration);
}

void
pg_decision_rules(const pg_decision *d, char *buf, size_t len)
{
	size_t off = 0;
	int r;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (r = 0; r < PG_RULE_COUNT; r++) {
		if (!(d->failed & (1u << r)) || off >= len)
			continue;
		off += (size_t)snprintf(buf + off, len - off, "%s%s",
					off ? " " : "", pg_rule_id(r));
	}
}
