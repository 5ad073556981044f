/*
 * ledgerprobe - drive core/ledger.c from a separate process, as a daemon
 * or a tool would, on the ledger a config file names.
 *
 *   ledgerprobe CONF [--now EPOCH] reserve USER ROLE TICKET [CONFLICT...]
 *       reserve and commit (an issuance); prints "ok" or
 *       "denied Rn: reason"
 *   ledgerprobe CONF [--now EPOCH] release-after USER ROLE TICKET [CONFLICT...]
 *       reserve, then release (a failed STS call); prints "released"
 *   ledgerprobe CONF [--now EPOCH] reserve-hold USER ROLE TICKET SECONDS
 *       reserve, print "reserved", wait SECONDS without committing (to be
 *       killed), then commit and print "committed"
 *   ledgerprobe CONF [--now EPOCH] facts USER ROLE TICKET|- [CONFLICT...]
 *       prints "conflict_role R|-", "conflict_ts N", "bound_user U|-",
 *       "bound_role R|-", "uses N"
 *   ledgerprobe CONF last USER ROLE
 *       prints "last N" (0 = none)
 *   ledgerprobe CONF bench N
 *       N reserve+commit pairs (users b0.., tickets B<pid>-0..) in this
 *       process; prints {"n": N, "reserve_us": [...], "commit_us": [...]}
 *
 * The conflicting roles are the role's `conflicts` from the config unless
 * given; max_uses is the role's.  Errors: "error CLASS: message" on
 * stderr.  Exit status: pg_err_exit() of the outcome.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../core/config.h"
#include "../../core/err.h"
#include "../../core/http.h"
#include "../../core/ledger.h"
#include "../../core/policy.h"

static int
usage(void)
{
	fprintf(stderr,
		"usage: ledgerprobe CONF [--now EPOCH] reserve|release-after "
		"USER ROLE TICKET [CONFLICT...]\n"
		"       ledgerprobe CONF [--now EPOCH] reserve-hold USER ROLE "
		"TICKET SECONDS\n"
		"       ledgerprobe CONF [--now EPOCH] facts USER ROLE TICKET|- "
		"[CONFLICT...]\n"
		"       ledgerprobe CONF last USER ROLE\n"
		"       ledgerprobe CONF bench N\n");
	return PG_EXIT_USAGE;
}

static int
parse_int(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && *out >= 0 ? 0 : -1;
}

static long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* N reserve+commit pairs of distinct users and tickets, timed. */
static pg_err
bench(pg_ledger *l, const pg_config *cfg, long long n, char *err,
      size_t errlen)
{
	const pg_role_cfg *role = &cfg->roles[0];
	long long *t = calloc((size_t)n * 2 + 1, sizeof(long long)), i, t0;
	char user[64], ticket[64];
	pg_reservation *res;
	pg_err rc = PG_OK;
	int rule;

	if (t == NULL)
		return PG_ENOMEM;
	for (i = 0; i < n && rc == PG_OK; i++) {
		snprintf(user, sizeof(user), "b%lld", i);
		snprintf(ticket, sizeof(ticket), "B%ld-%lld", (long)getpid(), i);
		t0 = now_us();
		rc = pg_ledger_reserve(l, user, role->name, ticket,
				       (const char *const *)role->conflicts.v,
				       role->conflicts.n, role->max_uses,
				       (int64_t)time(NULL), &res, &rule, err,
				       errlen);
		t[2 * i] = now_us() - t0;
		if (rc != PG_OK)
			break;
		t0 = now_us();
		rc = pg_ledger_commit(l, res, (int64_t)time(NULL) + 3600,
				      "ASIABENCH", err, errlen);
		t[2 * i + 1] = now_us() - t0;
	}
	if (rc == PG_OK) {
		printf("{\"n\": %lld, \"reserve_us\": [", n);
		for (i = 0; i < n; i++)
			printf("%s%lld", i ? ", " : "", t[2 * i]);
		printf("], \"commit_us\": [");
		for (i = 0; i < n; i++)
			printf("%s%lld", i ? ", " : "", t[2 * i + 1]);
		printf("]}\n");
	}
	free(t);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *const *conflicts = NULL;
	const pg_role_cfg *role;
	pg_reservation *res = NULL;
	pg_config *cfg = NULL;
	pg_ledger *l = NULL;
	pg_ledger_facts f;
	const char *cmd, *user, *rolename, *ticket;
	char err[1024] = "";
	long long now, secs = 0;
	size_t n_conflicts = 0;
	void *hold = NULL;
	int64_t when;
	pg_err rc;
	int i = 2, rule = PG_R9, max_uses = 0;

	if (argc < 3)
		return usage();
	now = (long long)time(NULL);
	if (strcmp(argv[i], "--now") == 0) {
		if (argc < 5 || parse_int(argv[i + 1], &now) != 0)
			return usage();
		i += 2;
	}
	cmd = argv[i++];
	if (strcmp(cmd, "bench") == 0) {
		if (i != argc - 1 || parse_int(argv[i], &secs) != 0 || secs < 1)
			return usage();
		if (pg_http_global_init() != PG_OK)
			return PG_EXIT_INTERNAL;
		rc = pg_config_load(argv[1], &cfg, err, sizeof(err));
		if (rc == PG_OK)
			rc = pg_ledger_open(cfg, &l, err, sizeof(err));
		if (rc == PG_OK)
			rc = bench(l, cfg, secs, err, sizeof(err));
		goto out;
	}
	if (argc - i < 2)
		return usage();
	user = argv[i++];
	rolename = argv[i++];
	ticket = i < argc ? argv[i++] : NULL;
	if (strcmp(cmd, "last") != 0 && ticket == NULL)
		return usage();
	if (strcmp(cmd, "reserve-hold") == 0) {
		if (i != argc - 1 || parse_int(argv[i], &secs) != 0)
			return usage();
	} else if (strcmp(cmd, "last") == 0) {
		if (ticket != NULL)
			return usage();
	} else if (strcmp(cmd, "reserve") != 0 &&
		   strcmp(cmd, "release-after") != 0 &&
		   strcmp(cmd, "facts") != 0) {
		return usage();
	} else if (i < argc) {
		conflicts = (const char *const *)&argv[i];
		n_conflicts = (size_t)(argc - i);
	}

	if (pg_http_global_init() != PG_OK) {
		fprintf(stderr, "error internal: cannot initialise libcurl\n");
		return PG_EXIT_INTERNAL;
	}
	rc = pg_config_load(argv[1], &cfg, err, sizeof(err));
	if (rc != PG_OK)
		goto out;
	if ((role = pg_config_role(cfg, rolename)) != NULL) {
		max_uses = role->max_uses;
		if (conflicts == NULL) {
			conflicts = (const char *const *)role->conflicts.v;
			n_conflicts = role->conflicts.n;
		}
	}
	rc = pg_ledger_open(cfg, &l, err, sizeof(err));
	if (rc != PG_OK)
		goto out;

	if (strcmp(cmd, "last") == 0) {
		rc = pg_ledger_last_issuance(l, user, rolename, &when, err,
					     sizeof(err));
		if (rc == PG_OK)
			printf("last %lld\n", (long long)when);
		goto out;
	}
	if (strcmp(cmd, "facts") == 0) {
		rc = pg_ledger_facts_get(l, user, rolename,
					 strcmp(ticket, "-") == 0 ? NULL :
					 ticket, conflicts, n_conflicts, now,
					 &f, &hold, err, sizeof(err));
		if (rc == PG_OK)
			printf("conflict_role %s\nconflict_ts %lld\n"
			       "bound_user %s\nbound_role %s\nuses %d\n",
			       f.conflict_role ? f.conflict_role : "-",
			       (long long)f.conflict_ts,
			       f.bound_user ? f.bound_user : "-",
			       f.bound_role ? f.bound_role : "-", f.uses);
		goto out;
	}

	rc = pg_ledger_reserve(l, user, rolename, ticket, conflicts,
			       n_conflicts, max_uses, now, &res, &rule, err,
			       sizeof(err));
	if (rc == PG_DENIED) {
		printf("denied %s: %s\n", pg_rule_id(rule), err);
		goto out;
	}
	if (rc != PG_OK)
		goto out;
	if (strcmp(cmd, "release-after") == 0) {
		rc = pg_ledger_release(l, res, err, sizeof(err));
		if (rc == PG_OK)
			printf("released\n");
		goto out;
	}
	if (strcmp(cmd, "reserve-hold") == 0) {
		printf("reserved\n");
		fflush(stdout);
		while (secs > 0) {
			unsigned left = sleep((unsigned)(secs > 3600 ? 3600 :
							 secs));

			secs -= (secs > 3600 ? 3600 : secs) - (long long)left;
		}
	}
	rc = pg_ledger_commit(l, res, now + 3600, "ASIAPROBE", err,
			      sizeof(err));
	if (rc == PG_OK)
		printf("%s\n", strcmp(cmd, "reserve-hold") == 0 ? "committed" :
		       "ok");
out:
	if (rc != PG_OK && rc != PG_DENIED)
		fprintf(stderr, "error %s: %s\n", pg_err_name(rc), err);
	fflush(stdout);
	pg_ledger_facts_free(hold);
	pg_ledger_close(l);
	pg_config_free(cfg);
	pg_http_global_cleanup();
	return pg_err_exit(rc);
}
