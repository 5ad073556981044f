/*
 * check.c - `pmpgate check USER ROLE [TICKET]`: the daemon's decision for
 * USER, explained rule by rule, issuing and recording nothing.
 *
 * The daemon runs the same gathering and decide() as for an issue, but
 * neither reserves, records nor issues; only root and members of
 * [daemon] admin_group may ask.  Exit 0 when it would allow, 1 when it
 * would refuse, 3 when a service is unavailable (R9), 2 usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../client/output.h"
#include "admincmd.h"
#include "cli.h"

static void
check_help(void)
{
	printf("Usage: pmpgate check USER ROLE [TICKET] [--json] "
	       "[--socket PATH]\n\n"
	       "Ask pmpgated whether USER would get credentials for ROLE "
	       "with TICKET,\nand why: every rule R1..R9 with pass, fail or "
	       "not-evaluated, and the\nevidence (group path, ticket, "
	       "approvers, ledger).  Nothing is reserved,\nrecorded or "
	       "issued.  For root and members of [daemon] admin_group.\n\n"
	       "  --json         print the daemon's answer as one JSON object\n"
	       "  --socket PATH  the daemon's socket (default $PMPGATE_SOCKET "
	       "or %s)\n\n"
	       "Exit: 0 would allow, 1 would refuse, 2 usage, 3 unavailable, "
	       "4 internal.\n", PG_DEFAULT_SOCKET);
}

/* Print "  label: text" with the text made safe. */
static void
line(const char *label, const char *text)
{
	char safe[1024];

	pg_sanitize_text(text ? text : "-", safe, sizeof(safe));
	printf("  %-14s %s\n", label, safe);
}

static const char *
str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void
print_explained(const json_t *ans)
{
	const json_t *checks = json_object_get(ans, "checks");
	const json_t *ev = json_object_get(ans, "evidence"), *t, *x, *v;
	char a[512], b[1024], c[512];
	size_t i;

	pg_sanitize_text(str(ans, "user"), a, sizeof(a));
	pg_sanitize_text(str(ans, "role"), c, sizeof(c));
	printf("%s %s%s%s: %s\n", a, c, str(ans, "ticket") ? " " : "",
	       str(ans, "ticket") ? str(ans, "ticket") : "",
	       strcmp(str(ans, "status"), "allow") == 0 ? "ALLOW" :
	       strcmp(str(ans, "status"), "deny") == 0 ? "DENY" : "ERROR");
	printf("rules:\n");
	json_array_foreach(checks, i, x) {
		pg_sanitize_text(str(x, "detail"), b, sizeof(b));
		printf("  %-3s %-21s %-13s%s%s\n",
		       str(x, "id") ? str(x, "id") : "?",
		       str(x, "name") ? str(x, "name") : "?",
		       str(x, "result") ? str(x, "result") : "?",
		       b[0] ? " " : "", b);
	}
	if (!json_is_object(ev))
		goto reason;
	printf("evidence:\n");
	line("user entry:", str(ev, "user_dn"));
	x = json_object_get(ev, "group_path");
	if (json_array_size(x) > 0) {
		size_t off = 0;

		b[0] = '\0';
		json_array_foreach(x, i, v)
			off += (size_t)snprintf(b + off, off < sizeof(b) ?
				sizeof(b) - off : 0, "%s%s", i ? " > " : "",
				json_string_value(v) ? json_string_value(v) :
				"?");
		line("group path:", b);
	} else {
		line("group path:", "(not a member)");
	}
	t = json_object_get(ev, "ticket");
	if (json_is_object(t)) {
		snprintf(b, sizeof(b), "%s state=%s requested_for=%s "
			 "requester=%s role=%s category=%s",
			 str(t, "id") ? str(t, "id") : "?",
			 str(t, "state") ? str(t, "state") : "-",
			 str(t, "requested_for") ? str(t, "requested_for") : "-",
			 str(t, "requester") ? str(t, "requester") : "-",
			 str(t, "role") ? str(t, "role") : "-",
			 str(t, "category") ? str(t, "category") : "-");
		line("ticket:", b);
		snprintf(b, sizeof(b), "%s .. %s",
			 str(t, "window_start") ? str(t, "window_start") :
			 "(open)", str(t, "window_end") ? str(t, "window_end") :
			 "(open)");
		line("window:", b);
		if (json_is_integer(json_object_get(t, "min_approvals"))) {
			snprintf(b, sizeof(b), "%lld", (long long)
				 json_integer_value(json_object_get(
					 t, "min_approvals")));
			line("min approvals:", b);
		}
	}
	x = json_object_get(ev, "approvers");
	json_array_foreach(x, i, v) {
		snprintf(b, sizeof(b), "%s%s%s%s: %s",
			 str(v, "name") ? str(v, "name") : "?",
			 str(v, "dn") ? " (" : "", str(v, "dn") ? str(v, "dn") :
			 "", str(v, "dn") ? ")" : "",
			 str(v, "why") ? str(v, "why") : "?");
		line(i == 0 ? "approvers:" : "", b);
	}
	x = json_object_get(ev, "conflicting_issuance");
	if (json_is_object(x)) {
		snprintf(b, sizeof(b), "role %s issued at %lld (epoch)",
			 str(x, "role") ? str(x, "role") : "?",
			 (long long)json_integer_value(json_object_get(x, "ts")));
		line("ledger R6:", b);
	}
	x = json_object_get(ev, "ticket_bound");
	if (json_is_object(x)) {
		snprintf(b, sizeof(b), "ticket bound to user %s role %s, "
			 "%lld use(s)", str(x, "user") ? str(x, "user") : "?",
			 str(x, "role") ? str(x, "role") : "?", (long long)
			 json_integer_value(json_object_get(x, "uses")));
		line("ledger R7:", b);
	}
reason:
	pg_sanitize_text(str(ans, "reason"), b, sizeof(b));
	printf("decision: %s\n", b);
}

int
pg_cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	pg_proto_req req = { .op = PG_OP_CHECK };
	const char *socket_path = pg_cli_socket();
	json_t *ans = NULL;
	char err[256];
	int c, as_json = 0, ex;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
		case 'j':
			as_json = 1;
			break;
		case 'h':
			check_help();
			return pg_cli_flush();
		case ':':
			return pg_cli_usage("check", "check: an option is "
					    "missing its argument");
		default:
			return pg_cli_usage("check", "check: unknown option");
		}
	}
	if (argc - optind < 2 || argc - optind > 3)
		return pg_cli_usage("check", "check USER ROLE [TICKET]");
	req.user = argv[optind];
	req.role = argv[optind + 1];
	req.ticket = argc - optind == 3 ? argv[optind + 2] : NULL;
	if (pg_proto_check_req(&req, err, sizeof(err)) != PG_OK)
		return pg_cli_usage("check", err);
	ex = pg_cli_call(socket_path, &req, PG_PROTO_MAX, &ans);
	if (ex >= 0)
		return ex;
	if (as_json) {
		if (json_dumpf(ans, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER)
		    != 0 || putchar('\n') == EOF)
			ex = PG_EXIT_INTERNAL;
	} else if (json_is_array(json_object_get(ans, "checks"))) {
		print_explained(ans);
	}
	if (ex != PG_EXIT_INTERNAL)
		ex = pg_cli_flush();
	if (ex == PG_EXIT_OK) {
		/* the reason of an error without an explanation (a refused
		 * caller, a bad request) goes to stderr */
		if (json_is_array(json_object_get(ans, "checks")))
			ex = (int)json_integer_value(json_object_get(ans,
								     "exit"));
		else
			ex = pg_cli_answer_exit(ans);
	}
	json_decref(ans);
	return ex;
}
