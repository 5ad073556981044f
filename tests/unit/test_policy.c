/* test_policy.c - table-driven tests of pg_decide(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../core/policy.h"

#define NOW 1800000000LL	/* 2027-01-15 */
#define B(r) (1u << (r))

static char *pm_conflicts[] = { "pmp-administrator", NULL };
static char *adm_conflicts[] = { "procurement-manager", NULL };
static char *approved[] = { "approved", NULL };
static pg_category_min pm_cat[] = { { "private-offer", 2 },
				    { "public-offer", 1 } };

static pg_config cfg;

struct world {
	pg_request req;
	pg_facts f;
	pg_ticket t;
	pg_person ap[4];
	char *approver_names[4];
	int map_window;		/* the config maps field.window_start/end */
};

static void
setup_cfg(void)
{
	pg_role_cfg *pm = &cfg.roles[0], *adm = &cfg.roles[1];

	memset(&cfg, 0, sizeof(cfg));
	cfg.n_roles = 2;
	pm->name = "procurement-manager";
	pm->group = "cn=procurement-managers,ou=groups,dc=example,dc=com";
	pm->role_arn = "arn:aws:iam::123456789012:role/procurement-manager";
	pm->max_duration = 3600;
	pm->approver_group = "cn=procurement-approvers,ou=groups,dc=example,dc=com";
	pm->min_approvals = 1;
	pm->min_by_category = pm_cat;
	pm->n_min_by_category = 2;
	pm->requester_may_hold = 1;
	pm->conflicts.v = pm_conflicts;
	pm->conflicts.n = 1;
	adm->name = "pmp-administrator";
	adm->group = "cn=pmp-administrators,ou=groups,dc=example,dc=com";
	adm->role_arn = "arn:aws:iam::123456789012:role/pmp-administrator";
	adm->max_duration = 43200;
	adm->min_approvals = 1;
	adm->requester_may_hold = 0;
	adm->conflicts.v = adm_conflicts;
	adm->conflicts.n = 1;
	adm->max_uses = 2;
	cfg.tickets.approved_states.v = approved;
	cfg.tickets.approved_states.n = 1;
}

/* The base world: alice, procurement-manager, approved ticket, one
 * approver (erin) from the approver group: allowed for 3600 s. */
static void
base(struct world *w)
{
	memset(w, 0, sizeof(*w));
	w->req.user = "alice";
	w->req.role = "procurement-manager";
	w->req.ticket = "CHG0012345";
	w->f.now = NOW;
	w->f.dir_status = PG_OK;
	w->f.user_status = PG_OK;
	w->f.in_group = PG_FACT_YES;
	w->f.n_conflicts = 1;
	w->f.conflicts[0].role = "pmp-administrator";
	w->f.conflicts[0].member = PG_FACT_NO;
	w->t.id = "CHG0012345";
	w->t.state = "approved";
	w->t.requested_for = "alice";
	w->t.requester = "carol";
	w->t.role = "procurement-manager";
	w->t.has_start = 1;
	w->t.window_start = NOW - 3600;
	w->t.has_end = 1;
	w->t.window_end = NOW + 86400;
	w->f.ticket_status = PG_OK;
	w->f.ticket = &w->t;
	w->f.for_user = PG_FACT_YES;
	w->f.requester_is_user = PG_FACT_NO;
	w->ap[0] = (pg_person){ "erin", PG_OK, "uid=erin", PG_FACT_NO,
				PG_FACT_NO, PG_FACT_YES, 0 };
	w->f.approvers = w->ap;
	w->f.n_approvers = 1;
	w->f.ledger_status = PG_OK;
	w->f.audit_status = PG_OK;
}

static const pg_person frank = { "frank", PG_OK, "uid=frank", PG_FACT_NO,
				 PG_FACT_NO, PG_FACT_YES, 0 };

static void m_none(struct world *w) { (void)w; }
static void m_unknown_role(struct world *w) { w->req.role = "root"; }
static void m_not_member(struct world *w) { w->f.in_group = PG_FACT_NO; }
static void m_no_user(struct world *w) { w->f.user_status = PG_ENOTFOUND; w->f.in_group = PG_FACT_UNKNOWN; }
static void m_ambiguous(struct world *w) { w->f.user_status = PG_EAMBIGUOUS; w->f.in_group = PG_FACT_UNKNOWN; }
static void m_dir_down(struct world *w)
{
	w->f.dir_status = PG_EUNAVAIL;
	w->f.dir_error = "ldaps://127.0.0.1:1: Can't contact LDAP server";
	w->f.user_status = PG_EUNAVAIL;
	w->f.in_group = PG_FACT_UNKNOWN;
	w->f.conflicts[0].member = PG_FACT_UNKNOWN;
	w->f.for_user = PG_FACT_UNKNOWN;
	w->ap[0].resolved = PG_EUNAVAIL;
}
static void m_dir_down_early(struct world *w)
{
	m_dir_down(w);
	w->f.n_approvers = 0;	/* people never resolved */
}
static void m_membership_unknown(struct world *w) { w->f.in_group = PG_FACT_UNKNOWN; }
static void m_conflict(struct world *w) { w->f.conflicts[0].member = PG_FACT_YES; }
static void m_conflict_unknown(struct world *w) { w->f.conflicts[0].member = PG_FACT_UNKNOWN; }
static void m_conflict_missing(struct world *w) { w->f.n_conflicts = 0; }
static void m_no_ticket(struct world *w) { w->req.ticket = NULL; }
static void m_empty_ticket(struct world *w) { w->req.ticket = ""; }
static void m_bad_id(struct world *w) { w->f.ticket_status = PG_EINVAL; w->f.ticket_error = "ticket id '../x' does not match [tickets] id_pattern"; w->f.ticket = NULL; }
static void m_ticket_missing(struct world *w) { w->f.ticket_status = PG_ENOTFOUND; w->f.ticket = NULL; }
static void m_tickets_down(struct world *w) { w->f.ticket_status = PG_EUNAVAIL; w->f.ticket_error = "HTTP 503"; w->f.ticket = NULL; }
static void m_tickets_timeout(struct world *w) { w->f.ticket_status = PG_ETIMEOUT; w->f.ticket_error = "timed out"; w->f.ticket = NULL; }
static void m_tickets_garbage(struct world *w) { w->f.ticket_status = PG_EPROTO; w->f.ticket_error = "not JSON"; w->f.ticket = NULL; }
static void m_pending(struct world *w) { w->t.state = "requested"; }
static void m_no_state(struct world *w) { w->t.state = NULL; }
static void m_state_case(struct world *w) { w->t.state = "Approved"; }
static void m_other_role(struct world *w) { w->t.role = "pmp-administrator"; }
static void m_no_role(struct world *w) { w->t.role = NULL; }
static void m_other_person(struct world *w) { w->f.for_user = PG_FACT_NO; w->t.requested_for = "bob"; }
static void m_person_unknown(struct world *w) { w->f.for_user = PG_FACT_UNKNOWN; }
static void m_not_open(struct world *w) { w->t.window_start = NOW + 60; }
static void m_closed(struct world *w) { w->t.window_end = NOW - 1; }
static void m_closes_now(struct world *w) { w->t.window_end = NOW; }
static void m_no_window(struct world *w) { w->t.has_start = 0; w->t.has_end = 0; }
static void m_mapped_window(struct world *w) { w->map_window = 1; }
static void m_mapped_no_end(struct world *w) { w->map_window = 1; w->t.has_end = 0; }
static void m_mapped_no_start(struct world *w) { w->map_window = 1; w->t.has_start = 0; }
static void m_mapped_no_window(struct world *w) { m_no_window(w); w->map_window = 1; }
static void m_closing_soon(struct world *w) { w->t.window_end = NOW + 899; }
static void m_closing_1000(struct world *w) { w->t.window_end = NOW + 1000; }
static void m_req_1200(struct world *w) { w->req.duration = 1200; }
static void m_req_600(struct world *w) { w->req.duration = 600; }
static void m_req_huge(struct world *w) { w->req.duration = 7200; }
static void m_req_neg(struct world *w) { w->req.duration = -5; }
static void m_req_too_big(struct world *w) { w->req.duration = 100000; }
static void m_self_approved(struct world *w) { w->ap[0].is_user = PG_FACT_YES; }
static void m_requester_approved(struct world *w) { w->ap[0].is_requester = PG_FACT_YES; }
static void m_outsider(struct world *w) { w->ap[0].approver_member = PG_FACT_NO; }
static void m_no_approvers(struct world *w) { w->f.n_approvers = 0; }
static void m_approver_unresolved(struct world *w) { w->ap[0].resolved = PG_ENOTFOUND; }
static void m_approver_unknown(struct world *w) { w->ap[0].approver_member = PG_FACT_UNKNOWN; }
static void m_private_one(struct world *w) { w->t.category = "private-offer"; }
static void m_private_two(struct world *w) { w->t.category = "private-offer"; w->ap[1] = frank; w->f.n_approvers = 2; }
static void m_private_dup(struct world *w) { w->t.category = "private-offer"; w->ap[1] = w->ap[0]; w->ap[1].name = "ERIN"; w->ap[1].duplicate = 1; w->f.n_approvers = 2; }
static void m_private_self(struct world *w) { w->t.category = "private-offer"; w->ap[1] = frank; w->ap[1].is_user = PG_FACT_YES; w->f.n_approvers = 2; }
static void m_public_one(struct world *w) { w->t.category = "public-offer"; }
static void m_admin(struct world *w) { w->req.role = "pmp-administrator"; w->t.role = "pmp-administrator"; w->f.conflicts[0].role = "procurement-manager"; }
static void m_admin_requester(struct world *w) { m_admin(w); w->f.requester_is_user = PG_FACT_YES; }
static void m_admin_requester_unknown(struct world *w) { m_admin(w); w->f.requester_is_user = PG_FACT_UNKNOWN; }
static void m_pm_requester(struct world *w) { w->f.requester_is_user = PG_FACT_YES; }
static void m_admin_12h(struct world *w) { m_admin(w); w->t.window_end = NOW + 100000; }
static void m_ledger_down(struct world *w) { w->f.ledger_status = PG_EUNAVAIL; w->f.ledger_error = "corrupt"; }
static void m_issued_conflict(struct world *w) { w->f.ledger.conflict_role = "pmp-administrator"; w->f.ledger.conflict_ts = NOW - 60; }
static void m_bound_other_user(struct world *w) { w->f.ledger.bound_user = "bob"; w->f.ledger.bound_role = "procurement-manager"; }
static void m_bound_other_role(struct world *w) { w->f.ledger.bound_user = "alice"; w->f.ledger.bound_role = "pmp-administrator"; }
static void m_bound_same(struct world *w) { w->f.ledger.bound_user = "alice"; w->f.ledger.bound_role = "procurement-manager"; w->f.ledger.uses = 5; }
static void m_admin_max_uses(struct world *w) { m_admin(w); w->f.ledger.bound_user = "alice"; w->f.ledger.bound_role = "pmp-administrator"; w->f.ledger.uses = 2; }
static void m_requester_unknown(struct world *w) { w->f.requester_status = PG_ENOTFOUND; w->t.requester = "ghost"; }
static void m_admin_requester_unknown_dir(struct world *w) { m_admin(w); w->f.requester_status = PG_ENOTFOUND; w->t.requester = NULL; }
static void m_requester_ambiguous(struct world *w) { w->f.requester_status = PG_EAMBIGUOUS; w->t.requester = "dup@example.com"; }
static void m_audit_down(struct world *w) { w->f.audit_status = PG_EAUDIT; w->f.audit_error = "disk full"; }
static void m_both_groups_self_private(struct world *w) { m_conflict(w); m_private_self(w); w->ap[1] = w->ap[0]; w->ap[1].name = "alice"; w->ap[1].is_user = PG_FACT_YES; w->ap[0].is_user = PG_FACT_YES; }
static void m_admin_all_sod(struct world *w) { m_admin_requester(w); w->f.conflicts[0].member = PG_FACT_YES; w->ap[0].is_user = PG_FACT_YES; w->f.ledger.conflict_role = "procurement-manager"; w->f.ledger.bound_user = "bob"; w->f.ledger.bound_role = "pmp-administrator"; }
static void m_everything(struct world *w) { m_not_member(w); m_pending(w); m_audit_down(w); m_issued_conflict(w); }

struct tcase {
	const char *name;
	void (*mutate)(struct world *);
	unsigned failed;
	int64_t duration;	/* when allowed */
	pg_err err;
	const char *reason;	/* substring of the one-line reason */
};

static const struct tcase cases[] = {
	{ "allow", m_none, 0, 3600, PG_OK, "allowed: alice as procurement-manager" },
	{ "unknown role", m_unknown_role, B(PG_R1), 0, PG_DENIED, "no role named root" },
	{ "not in group", m_not_member, B(PG_R1), 0, PG_DENIED, "not a member of cn=procurement-managers" },
	{ "user not in directory", m_no_user, B(PG_R1), 0, PG_DENIED, "not in the directory" },
	{ "user ambiguous", m_ambiguous, B(PG_R1), 0, PG_DENIED, "several directory entries" },
	{ "directory down", m_dir_down, B(PG_R9), 0, PG_EUNAVAIL, "directory unavailable: ldaps://" },
	{ "directory down before people", m_dir_down_early, B(PG_R9), 0, PG_EUNAVAIL, "directory unavailable" },
	{ "membership unknown", m_membership_unknown, B(PG_R9), 0, PG_EUNAVAIL, "(R9 unavailable)" },
	{ "conflicting groups", m_conflict, B(PG_R2), 0, PG_DENIED, "both procurement-manager and pmp-administrator" },
	{ "conflict unknown", m_conflict_unknown, B(PG_R9), 0, PG_EUNAVAIL, "conflicting group" },
	{ "conflict fact missing", m_conflict_missing, B(PG_R9), 0, PG_EUNAVAIL, "conflicting group" },
	{ "no ticket", m_no_ticket, B(PG_R3), 0, PG_DENIED, "no ticket given" },
	{ "empty ticket", m_empty_ticket, B(PG_R3), 0, PG_DENIED, "no ticket given" },
	{ "malformed id", m_bad_id, B(PG_R3), 0, PG_DENIED, "does not match [tickets] id_pattern (R3 ticket-not-approved)" },
	{ "unknown ticket", m_ticket_missing, B(PG_R3), 0, PG_DENIED, "was not found" },
	{ "tickets down", m_tickets_down, B(PG_R9), 0, PG_EUNAVAIL, "ticket system unavailable: HTTP 503" },
	{ "tickets timeout", m_tickets_timeout, B(PG_R9), 0, PG_EUNAVAIL, "timed out" },
	{ "tickets garbage", m_tickets_garbage, B(PG_R9), 0, PG_EUNAVAIL, "not JSON" },
	{ "pending", m_pending, B(PG_R3), 0, PG_DENIED, "not approved (state: requested)" },
	{ "no state", m_no_state, B(PG_R3), 0, PG_DENIED, "state: none" },
	{ "state case differs", m_state_case, B(PG_R3), 0, PG_DENIED, "not approved" },
	{ "other role", m_other_role, B(PG_R3), 0, PG_DENIED, "is for role pmp-administrator, not procurement-manager" },
	{ "no role in ticket", m_no_role, B(PG_R3), 0, PG_DENIED, "(none)" },
	{ "other person", m_other_person, B(PG_R3), 0, PG_DENIED, "is for bob, not for alice" },
	{ "person unknown", m_person_unknown, B(PG_R9), 0, PG_EUNAVAIL, "person the ticket is for" },
	{ "not yet open", m_not_open, B(PG_R3), 0, PG_DENIED, "not opened yet (opens 2027-01-15T08:01:00Z)" },
	{ "closed", m_closed, B(PG_R3), 0, PG_DENIED, "window closed at 2027-01-15T07:59:59Z" },
	{ "closes exactly now", m_closes_now, B(PG_R3), 0, PG_DENIED, "window closed at" },
	{ "no window", m_no_window, 0, 3600, PG_OK, "allowed" },
	{ "window mapped and given", m_mapped_window, 0, 3600, PG_OK, "allowed" },
	{ "window mapped, no end", m_mapped_no_end, B(PG_R3), 0, PG_DENIED, "has no end of its change window" },
	{ "window mapped, no start", m_mapped_no_start, B(PG_R3), 0, PG_DENIED, "has no start of its change window" },
	{ "window mapped, neither", m_mapped_no_window, B(PG_R3), 0, PG_DENIED, "has no start" },
	{ "window too short", m_closing_soon, B(PG_R8), 0, PG_DENIED, "only 899 s remain" },
	{ "window caps duration", m_closing_1000, 0, 1000, PG_OK, "for 1000 s" },
	{ "requested shorter", m_req_1200, 0, 1200, PG_OK, "for 1200 s" },
	{ "requested below minimum", m_req_600, B(PG_R8), 0, PG_DENIED, "below the STS minimum" },
	{ "requested above role max", m_req_huge, 0, 3600, PG_OK, "for 3600 s" },
	{ "negative duration", m_req_neg, B(PG_R8), 0, PG_DENIED, "outside" },
	{ "duration above STS max", m_req_too_big, B(PG_R8), 0, PG_DENIED, "outside" },
	{ "self approved", m_self_approved, B(PG_R4), 0, PG_DENIED, "approved only by you (R4 four-eyes)" },
	{ "requester approved", m_requester_approved, B(PG_R4), 0, PG_DENIED, "approved only by its requester (R4 four-eyes)" },
	{ "approver outside group", m_outsider, B(PG_R4), 0, PG_DENIED, "1 outside the approver group" },
	{ "no approvers", m_no_approvers, B(PG_R4), 0, PG_DENIED, "0 approvals that count, 1 needed" },
	{ "approver not in directory", m_approver_unresolved, B(PG_R4), 0, PG_DENIED, "1 unknown" },
	{ "approver group unknown", m_approver_unknown, B(PG_R9), 0, PG_EUNAVAIL, "approver's group" },
	{ "private offer, one approval", m_private_one, B(PG_R4), 0, PG_DENIED, "1 approval that counts, 2 needed" },
	{ "private offer, two approvals", m_private_two, 0, 3600, PG_OK, "allowed" },
	{ "private offer, same person twice", m_private_dup, B(PG_R4), 0, PG_DENIED, "2 needed" },
	{ "private offer, one self", m_private_self, B(PG_R4), 0, PG_DENIED, "1 self" },
	{ "public offer, one approval", m_public_one, 0, 3600, PG_OK, "allowed" },
	{ "admin allowed", m_admin, 0, 43200 < 86400 ? 43200 : 86400, PG_OK, "as pmp-administrator" },
	{ "admin requester holds", m_admin_requester, B(PG_R5), 0, PG_DENIED, "requested ticket CHG0012345 and may not also hold" },
	{ "admin requester unknown", m_admin_requester_unknown, B(PG_R9), 0, PG_EUNAVAIL, "requester" },
	{ "manager requester may hold", m_pm_requester, 0, 3600, PG_OK, "allowed" },
	{ "admin 12h", m_admin_12h, 0, 43200, PG_OK, "for 43200 s" },
	{ "ledger down", m_ledger_down, B(PG_R9), 0, PG_EUNAVAIL, "ledger unavailable: corrupt" },
	{ "conflicting issuance", m_issued_conflict, B(PG_R6), 0, PG_DENIED, "issued conflicting role pmp-administrator" },
	{ "bound to other user", m_bound_other_user, B(PG_R7), 0, PG_DENIED, "bound to another user" },
	{ "bound to other role", m_bound_other_role, B(PG_R7), 0, PG_DENIED, "bound to role pmp-administrator" },
	{ "bound to same, no max", m_bound_same, 0, 3600, PG_OK, "allowed" },
	{ "max uses reached", m_admin_max_uses, B(PG_R7), 0, PG_DENIED, "max_uses 2" },
	{ "requester not in the directory", m_requester_unknown, B(PG_R4), 0, PG_DENIED, "requester (ghost) is not in the directory" },
	{ "requester ambiguous", m_requester_ambiguous, B(PG_R4), 0, PG_DENIED, "matches several directory entries" },
	{ "admin ticket without requester", m_admin_requester_unknown_dir, B(PG_R4) | B(PG_R5), 0, PG_DENIED, "requester (none)" },
	{ "audit down", m_audit_down, B(PG_R9), 0, PG_EUNAVAIL, "audit trail unavailable: disk full" },
	{ "self-approved private offer, both groups", m_both_groups_self_private, B(PG_R2) | B(PG_R4), 0, PG_DENIED, "(R2 conflicting-groups); ticket CHG0012345 was approved only by you (R4 four-eyes)" },
	{ "every separation rule at once", m_admin_all_sod, B(PG_R2) | B(PG_R4) | B(PG_R5) | B(PG_R6) | B(PG_R7), 0, PG_DENIED, "(R7 ticket-bound)" },
	{ "every failing rule", m_everything, B(PG_R1) | B(PG_R3) | B(PG_R6) | B(PG_R9), 0, PG_DENIED, "not a member" },
};

static void
test_table(void **state)
{
	size_t i;

	(void)state;
	setup_cfg();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *c = &cases[i];
		struct world w;
		pg_decision d;
		char rules[64];

		base(&w);
		c->mutate(&w);
		cfg.tickets.field[PG_FIELD_WINDOW_START] =
			w.map_window ? "/start_date" : NULL;
		cfg.tickets.field[PG_FIELD_WINDOW_END] =
			w.map_window ? "/end_date" : NULL;
		pg_decide(&cfg, &w.req, &w.f, &d);
		pg_decision_rules(&d, rules, sizeof(rules));
		print_message("%-34s -> %s %s | %s\n", c->name,
			      d.allow ? "allow" : "deny", rules, d.reason);
		assert_int_equal(d.failed, c->failed);
		assert_int_equal(d.allow, c->failed == 0);
		assert_int_equal(d.err, c->err);
		assert_int_equal(d.duration, c->failed ? 0 : c->duration);
		assert_non_null(strstr(d.reason, c->reason));
	}
}

/* Every failing rule is named in the one-line reason, policy first. */
static void
test_reason_lists_all(void **state)
{
	struct world w;
	pg_decision d;

	(void)state;
	setup_cfg();
	base(&w);
	m_everything(&w);
	pg_decide(&cfg, &w.req, &w.f, &d);
	assert_non_null(strstr(d.reason, "(R1 not-in-group)"));
	assert_non_null(strstr(d.reason, "(R3 ticket-not-approved)"));
	assert_non_null(strstr(d.reason, "(R6 conflicting-issuance)"));
	assert_non_null(strstr(d.reason, "(R9 unavailable)"));
	assert_true(strstr(d.reason, "R1") < strstr(d.reason, "R9"));
}

/* A zeroed fact set (nothing gathered) never allows. */
static void
test_zero_facts_deny(void **state)
{
	pg_request req = { .user = "alice", .role = "procurement-manager",
			   .ticket = "CHG0012345" };
	pg_facts f;
	pg_decision d;

	(void)state;
	setup_cfg();
	memset(&f, 0, sizeof(f));
	f.dir_status = PG_OK;	/* even claiming success */
	pg_decide(&cfg, &req, &f, &d);
	assert_false(d.allow);
	assert_int_not_equal(d.failed, 0);
}

static void
test_rule_names(void **state)
{
	(void)state;
	assert_string_equal(pg_rule_id(PG_R4), "R4");
	assert_string_equal(pg_rule_name(PG_R4), "four-eyes");
	assert_string_equal(pg_rule_name(PG_R9), "unavailable");
	assert_string_equal(pg_rule_id(42), "R?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_reason_lists_all),
		cmocka_unit_test(test_zero_facts_deny),
		cmocka_unit_test(test_rule_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
