/*
 * review.c - `pmpgate review`: the periodic access review.
 *
 * For each role: the members of its group (nested resolved) with their
 * last issuance of the role; members who are also in the group of a role
 * it conflicts with (R2 refuses them both roles); members without an
 * issuance within --stale-days (default 180) as candidates for removal;
 * members who are also in the role's own approver group (they could
 * approve tickets for their peers' use of the role they hold).  The
 * daemon gathers (directory and ledger); this command formats.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../client/output.h"
#include "../core/ledger.h"
#include "admincmd.h"
#include "cli.h"

#define DEFAULT_STALE_DAYS 180
/* The ledger keeps last issuances PG_LEDGER_LAST_KEEP (400 days). */
#define MAX_STALE_DAYS (PG_LEDGER_LAST_KEEP / 86400)

enum fmt { FMT_TABLE, FMT_JSON, FMT_CSV };

static void
review_help(void)
{
	printf("Usage: pmpgate review [--stale-days N] "
	       "[--format table|json|csv] [--socket PATH]\n\n"
	       "List the members of each role's group (nested groups "
	       "resolved) with their last\nissuance, and flag: stale (no "
	       "issuance within N days, default %d: candidates\nfor removal), "
	       "conflict (also in the group of a role this one conflicts "
	       "with:\nR2 refuses them both), approver (also in the role's "
	       "approver_group).\nFor root and members of [daemon] "
	       "admin_group.\n\n"
	       "Exit: 0 listed, 2 usage, 3 unavailable, 4 internal.\n",
	       DEFAULT_STALE_DAYS);
}

static void
fmt_time(json_int_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || gmtime_r(&tt, &tm) == NULL)
		snprintf(buf, len, "never");
	else
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *
str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* The conflicting roles of a member as "a b" (safe). */
static void
join_roles(const json_t *arr, char *buf, size_t len)
{
	size_t i, off = 0;
	json_t *v;

	buf[0] = '\0';
	json_array_foreach(arr, i, v) {
		char safe[128];

		pg_sanitize_text(json_string_value(v) ? json_string_value(v) :
				 "?", safe, sizeof(safe));
		off += (size_t)snprintf(buf + off, off < len ? len - off : 0,
					"%s%s", i ? " " : "", safe);
	}
}

static int
print_review(const json_t *ans, enum fmt fmt, long stale_days)
{
	json_int_t now = json_integer_value(json_object_get(ans, "now"));
	json_int_t cutoff = now - (json_int_t)stale_days * 86400;
	const json_t *roles = json_object_get(ans, "roles"), *r, *m;
	json_t *out = NULL, *rows = NULL;
	char when[32], gen[32], conf[512], u[300], dn[1100];
	size_t i, j;
	int ex = PG_EXIT_OK;

	fmt_time(now, gen, sizeof(gen));
	if (fmt == FMT_JSON) {
		rows = json_array();
		out = json_pack("{s:s, s:i, s:o}", "generated", gen,
				"stale_days", (int)stale_days, "members", rows);
		if (out == NULL)
			return PG_EXIT_INTERNAL;
	} else if (fmt == FMT_CSV) {
		printf("role,user,dn,last_issuance,stale,conflicting_roles,"
		       "approver,via\n");
	} else {
		printf("Review generated %s; stale = no issuance within %ld "
		       "days.\n", gen, stale_days);
	}
	json_array_foreach(roles, i, r) {
		const json_t *members = json_object_get(r, "members");
		size_t n_stale = 0, n_conf = 0, n_appr = 0;
		char role[128];

		pg_sanitize_text(str(r, "role"), role, sizeof(role));
		if (fmt == FMT_TABLE) {
			pg_sanitize_text(str(r, "group"), dn, sizeof(dn));
			printf("\n%s (group %s)\n", role, dn);
			printf("  %-20s %-20s %s\n", "USER", "LAST ISSUANCE",
			       "FLAGS");
		}
		json_array_foreach(members, j, m) {
			json_int_t last = json_integer_value(
				json_object_get(m, "last_issuance"));
			int stale = last < cutoff;
			int appr = json_is_true(json_object_get(m, "approver"));
			const json_t *cr = json_object_get(m,
							   "conflicting_roles");
			char flags[700];

			n_stale += (size_t)stale;
			n_conf += json_array_size(cr) > 0;
			n_appr += (size_t)appr;
			fmt_time(last, when, sizeof(when));
			join_roles(cr, conf, sizeof(conf));
			pg_sanitize_text(str(m, "user") ? str(m, "user") : "-",
					 u, sizeof(u));
			pg_sanitize_text(str(m, "dn") ? str(m, "dn") : "",
					 dn, sizeof(dn));
			if (fmt == FMT_JSON) {
				json_t *row = json_pack(
					"{s:s, s:s?, s:s?, s:s?, s:b, s:O, "
					"s:b, s:s?}", "role", str(r, "role"),
					"user", str(m, "user"), "dn",
					str(m, "dn"), "last_issuance",
					last > 0 ? when : NULL, "stale", stale,
					"conflicting_roles", cr, "approver",
					appr, "via",
					str(m, "via"));

				if (row == NULL ||
				    json_array_append_new(rows, row) != 0) {
					ex = PG_EXIT_INTERNAL;
					goto out;
				}
				continue;
			}
			if (fmt == FMT_CSV) {
				pg_cli_csv_field(stdout, str(r, "role"));
				putchar(',');
				pg_cli_csv_field(stdout, str(m, "user"));
				putchar(',');
				pg_cli_csv_field(stdout, str(m, "dn"));
				putchar(',');
				pg_cli_csv_field(stdout, last > 0 ? when : "");
				printf(",%s,", stale ? "yes" : "no");
				pg_cli_csv_field(stdout, conf);
				printf(",%s,", appr ? "yes" : "no");
				pg_cli_csv_field(stdout, str(m, "via"));
				putchar('\n');
				continue;
			}
			snprintf(flags, sizeof(flags), "%s%s%s%s%s",
				 stale ? "stale " : "",
				 conf[0] ? "conflict:" : "", conf,
				 conf[0] ? " " : "",
				 appr ? "approver" : "");
			while (flags[0] != '\0' &&
			       flags[strlen(flags) - 1] == ' ')
				flags[strlen(flags) - 1] = '\0';
			printf("  %-20s %-20s %s\n", u, when, flags);
		}
		if (fmt == FMT_TABLE)
			printf("  %zu member(s), %zu stale, %zu conflicting, "
			       "%zu also approver(s)%s\n",
			       json_array_size(members), n_stale, n_conf,
			       n_appr, json_integer_value(json_object_get(
				       r, "skipped")) > 0 ?
			       "; some member values named no user or group" :
			       "");
	}
	if (fmt == FMT_JSON &&
	    (json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0
	     || putchar('\n') == EOF))
		ex = PG_EXIT_INTERNAL;
out:
	json_decref(out);
	return ex;
}

int
pg_cmd_review(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "stale-days", required_argument, NULL, 'd' },
		{ "format", required_argument, NULL, 'f' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	pg_proto_req req = { .op = PG_OP_REVIEW };
	const char *socket_path = pg_cli_socket();
	enum fmt fmt = FMT_TABLE;
	long stale_days = DEFAULT_STALE_DAYS;
	json_t *ans = NULL;
	char *end;
	int c, ex;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:f:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			stale_days = strtol(optarg, &end, 10);
			if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' ||
			    stale_days < 1 || stale_days > MAX_STALE_DAYS) {
				char msg[128];

				snprintf(msg, sizeof(msg), "review: --stale-days "
					 "must be 1..%d", MAX_STALE_DAYS);
				return pg_cli_usage("review", msg);
			}
			break;
		case 'f':
			if (strcmp(optarg, "table") == 0)
				fmt = FMT_TABLE;
			else if (strcmp(optarg, "json") == 0)
				fmt = FMT_JSON;
			else if (strcmp(optarg, "csv") == 0)
				fmt = FMT_CSV;
			else
				return pg_cli_usage("review", "review: --format "
						    "must be table, json or csv");
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'h':
			review_help();
			return pg_cli_flush();
		case ':':
			return pg_cli_usage("review", "review: an option is "
					    "missing its argument");
		default:
			return pg_cli_usage("review", "review: unknown option");
		}
	}
	if (optind < argc)
		return pg_cli_usage("review", "review takes no arguments");
	ex = pg_cli_call(socket_path, &req, PG_PROTO_MAX_REVIEW, &ans);
	if (ex >= 0)
		return ex;
	if (strcmp(json_string_value(json_object_get(ans, "status")),
		   "allow") != 0) {
		ex = pg_cli_answer_exit(ans);
		goto out;
	}
	if (!json_is_array(json_object_get(ans, "roles")) ||
	    !json_is_integer(json_object_get(ans, "now"))) {
		pg_cli_error("malformed answer from pmpgated: no roles");
		ex = PG_EXIT_INTERNAL;
		goto out;
	}
	ex = print_review(ans, fmt, stale_days);
	if (ex == PG_EXIT_OK)
		ex = pg_cli_flush();
out:
	json_decref(ans);
	return ex;
}
