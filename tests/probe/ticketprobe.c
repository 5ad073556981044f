/*
 * ticketprobe - drive core/tickets.c against a real ticket service.
 *
 *   ticketprobe [-d DEADLINE_MS] CONF ID
 *
 * Fetches ticket ID as [tickets] of CONF describes and prints one field a
 * line: "id=", "state=", "approved=yes|no", "requested_for=",
 * "requester=", "approvers=N" then "approver=" for each, "role=",
 * "category=", "window_start=EPOCH", "window_end=EPOCH" (absent fields
 * are not printed).  Failures print "error KIND: message" (KIND =
 * pg_err_name) and exit with pg_err_exit().  The deadline defaults to
 * [daemon] deadline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../core/config.h"
#include "../../core/deadline.h"
#include "../../core/err.h"
#include "../../core/http.h"
#include "../../core/log.h"
#include "../../core/tickets.h"

static pg_err
fail(pg_err e, const char *msg)
{
	printf("error %s: %s\n", pg_err_name(e), msg);
	fflush(stdout);
	return e;
}

static void
print_opt(const char *key, const char *value)
{
	if (value)
		printf("%s=%s\n", key, value);
}

static void
print_ticket(const pg_config *cfg, const pg_ticket *t)
{
	size_t i;

	print_opt("id", t->id);
	print_opt("state", t->state);
	printf("approved=%s\n",
	       pg_ticket_state_approved(cfg, t->state) ? "yes" : "no");
	print_opt("requested_for", t->requested_for);
	print_opt("requester", t->requester);
	printf("approvers=%zu\n", t->approvers.n);
	for (i = 0; i < t->approvers.n; i++)
		print_opt("approver", t->approvers.v[i]);
	print_opt("role", t->role);
	print_opt("category", t->category);
	if (t->has_start)
		printf("window_start=%lld\n", (long long)t->window_start);
	if (t->has_end)
		printf("window_end=%lld\n", (long long)t->window_end);
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	pg_config *cfg = NULL;
	pg_http *h = NULL;
	pg_ticket t;
	char err[1024] = "";
	long deadline_ms = -1;
	int opt, http_init = 0;
	pg_err rc;

	memset(&t, 0, sizeof(t));
	while ((opt = getopt(argc, argv, "d:")) != -1) {
		switch (opt) {
		case 'd':
			deadline_ms = strtol(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 2)
		goto usage;
	pg_log_init("ticketprobe", 1, 0);
	rc = pg_config_load(argv[optind], &cfg, err, sizeof(err));
	if (rc != PG_OK) {
		fail(rc, err);
		goto out;
	}
	rc = pg_http_global_init();
	if (rc != PG_OK) {
		fail(rc, "cannot initialise libcurl");
		goto out;
	}
	http_init = 1;
	h = pg_http_new();
	if (!h) {
		rc = fail(PG_ENOMEM, "cannot create an HTTP handle");
		goto out;
	}
	if (deadline_ms < 0)
		deadline_ms = (long)cfg->daemon.deadline_ms;
	rc = pg_ticket_fetch(h, cfg, argv[optind + 1],
			     pg_deadline_in(deadline_ms), &t, err,
			     sizeof(err));
	if (rc != PG_OK)
		fail(rc, err);
	else
		print_ticket(cfg, &t);
out:
	pg_ticket_free(&t);
	pg_http_free(h);
	if (http_init)
		pg_http_global_cleanup();
	pg_config_free(cfg);
	return pg_err_exit(rc);
usage:
	fprintf(stderr, "usage: ticketprobe [-d DEADLINE_MS] CONF ID\n");
	return PG_EXIT_USAGE;
}
