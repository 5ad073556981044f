/*
 * fuzz_ticket.c - libFuzzer harness for the ticket field map
 * (core/tickets.c pg_ticket_parse, pg_ticket_id_check) and the window
 * time parser (core/timefmt.c pg_time_parse, pg_time_from_number).
 *
 * The first input byte picks the field map (ServiceNow preset, Jira
 * preset, or a generic map with '*' walks at the top); the rest is the
 * answer body.  Invariants: on success every string field is at most
 * PG_TICKET_STR_MAX bytes without control characters, at most
 * PG_TICKET_MAX_APPROVERS approvers, the approver list NULL-terminated,
 * window times in range; on failure the ticket is empty and err says why.
 * Parsed times format back and parse to the same instant.
 */
#include <regex.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/tickets.h"
#include "../../core/timefmt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EPOCH 253402300799LL

static char *sn_states[] = { "approved", NULL };
static char *jira_states[] = { "Approved", "Done", NULL };
static char *gen_states[] = { "ok", NULL };

static pg_config cfgs[3];

static void
init_cfg(pg_config *c, int kind)
{
	memset(c, 0, sizeof(*c));
	if (kind == 0) {
		c->tickets.provider = PG_TICKETS_SERVICENOW;
		c->tickets.field[PG_FIELD_STATE] = "/result/*/approval";
		c->tickets.field[PG_FIELD_REQUESTED_FOR] =
			"/result/*/requested_for";
		c->tickets.field[PG_FIELD_REQUESTER] = "/result/*/opened_by";
		c->tickets.field[PG_FIELD_APPROVERS] = "/result/*/u_approvers";
		c->tickets.field[PG_FIELD_ROLE] = "/result/*/u_aws_role";
		c->tickets.field[PG_FIELD_CATEGORY] = "/result/*/category";
		c->tickets.field[PG_FIELD_WINDOW_START] =
			"/result/*/start_date";
		c->tickets.field[PG_FIELD_WINDOW_END] = "/result/*/end_date";
		c->tickets.approved_states.v = sn_states;
		c->tickets.approved_states.n = 1;
	} else if (kind == 1) {
		c->tickets.provider = PG_TICKETS_JIRA;
		c->tickets.field[PG_FIELD_STATE] = "/fields/status/name";
		c->tickets.field[PG_FIELD_REQUESTED_FOR] =
			"/fields/customfield_10100/name";
		c->tickets.field[PG_FIELD_REQUESTER] = "/fields/reporter/name";
		c->tickets.field[PG_FIELD_APPROVERS] =
			"/fields/customfield_10200/*/name";
		c->tickets.field[PG_FIELD_ROLE] =
			"/fields/customfield_10300/value";
		c->tickets.field[PG_FIELD_CATEGORY] = "/fields/issuetype/name";
		c->tickets.field[PG_FIELD_WINDOW_START] =
			"/fields/customfield_10400";
		c->tickets.field[PG_FIELD_WINDOW_END] =
			"/fields/customfield_10401";
		c->tickets.approved_states.v = jira_states;
		c->tickets.approved_states.n = 2;
	} else {
		c->tickets.provider = PG_TICKETS_GENERIC;
		c->tickets.field[PG_FIELD_STATE] = "/state";
		c->tickets.field[PG_FIELD_REQUESTED_FOR] = "/for";
		c->tickets.field[PG_FIELD_REQUESTER] = "/by";
		c->tickets.field[PG_FIELD_APPROVERS] = "/*/approvers";
		c->tickets.field[PG_FIELD_ROLE] = "/a~1b/~0";
		c->tickets.field[PG_FIELD_CATEGORY] = "/*";
		c->tickets.field[PG_FIELD_WINDOW_START] = "/w/0";
		c->tickets.field[PG_FIELD_WINDOW_END] = "/w/1";
		c->tickets.approved_states.v = gen_states;
		c->tickets.approved_states.n = 1;
	}
	c->tickets.url = "https://127.0.0.1:1/tickets/{ticket}";
	c->tickets.auth = PG_AUTH_NONE;
	c->tickets.timeout_ms = 1000;
	c->tickets.max_response = 1 << 20;
	c->tickets.id_pattern = "[A-Z]+-?[0-9]{1,10}";
	if (regcomp(&c->tickets.id_re, "^([A-Z]+-?[0-9]{1,10})$",
		    REG_EXTENDED | REG_NOSUB) != 0)
		abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int i;

	(void)argc;
	(void)argv;
	for (i = 0; i < 3; i++)
		init_cfg(&cfgs[i], i);
	return 0;
}

static void
check_str(const char *s)
{
	size_t i, n;

	if (s == NULL)
		return;
	n = strlen(s);
	if (n > PG_TICKET_STR_MAX)
		abort();
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			abort();
	}
}

static int
ticket_empty(const pg_ticket *t)
{
	return t->id == NULL && t->state == NULL &&
	       t->requested_for == NULL && t->requester == NULL &&
	       t->approvers.v == NULL && t->approvers.n == 0 &&
	       t->role == NULL && t->category == NULL && !t->has_start &&
	       !t->has_end;
}

static void
check_time(const char *text, size_t len)
{
	char buf[64], fmt[32];
	int64_t t = -1, back = -1;

	if (len >= sizeof(buf))
		return;
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (pg_time_parse(buf, &t) != PG_OK)
		return;
	if (t < 0 || t > MAX_EPOCH)
		abort();
	pg_time_format(t, fmt, sizeof(fmt));
	if (pg_time_parse(fmt, &back) != PG_OK || back != t)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], id[PG_TICKET_ID_MAX + 2];
	const pg_config *cfg;
	pg_ticket t;
	pg_err e;
	size_t i;
	int64_t ep;
	double d;

	if (size < 1 || size > 4 * 1024 * 1024)
		return 0;
	cfg = &cfgs[data[0] % 3];
	memset(&t, 0xa5, sizeof(t));	/* the parser must set every member */
	err[0] = '\0';
	e = pg_ticket_parse(cfg, "CHG0000001", (const char *)data + 1,
			    size - 1, &t, err, sizeof(err));
	if (e == PG_OK) {
		if (t.id == NULL || strcmp(t.id, "CHG0000001") != 0)
			abort();
		check_str(t.state);
		check_str(t.requested_for);
		check_str(t.requester);
		check_str(t.role);
		check_str(t.category);
		if (t.approvers.n > PG_TICKET_MAX_APPROVERS ||
		    (t.approvers.n > 0 && t.approvers.v == NULL))
			abort();
		for (i = 0; i < t.approvers.n; i++) {
			if (t.approvers.v[i] == NULL)
				abort();
			check_str(t.approvers.v[i]);
		}
		if (t.approvers.v != NULL && t.approvers.v[t.approvers.n])
			abort();
		if ((t.has_start && (t.window_start < 0 ||
				     t.window_start > MAX_EPOCH)) ||
		    (t.has_end && (t.window_end < 0 ||
				   t.window_end > MAX_EPOCH)))
			abort();
		(void)pg_ticket_state_approved(cfg, t.state);
		pg_ticket_free(&t);
		if (!ticket_empty(&t))
			abort();
	} else if (!ticket_empty(&t) || err[0] == '\0') {
		abort();
	}

	/* the body as a window time, and as a ticket id */
	check_time((const char *)data + 1, size - 1);
	if (size - 1 <= PG_TICKET_ID_MAX + 1) {
		memcpy(id, data + 1, size - 1);
		id[size - 1] = '\0';
		if (pg_ticket_id_check(cfg, id, err, sizeof(err)) == PG_OK) {
			size_t n = strlen(id);

			if (n == 0 || n > PG_TICKET_ID_MAX)
				abort();
			for (i = 0; i < n; i++)
				if (id[i] < 0x21 || id[i] > 0x7e)
					abort();
		}
	}
	if (size - 1 >= sizeof(d)) {
		memcpy(&d, data + 1, sizeof(d));
		if (pg_time_from_number(d, &ep) == PG_OK &&
		    (ep < 0 || ep > MAX_EPOCH))
			abort();
	}
	return 0;
}
