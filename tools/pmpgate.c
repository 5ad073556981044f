/*
 * pmpgate - the admin and auditor CLI of pmpgated.
 *
 *   pmpgate status [--socket PATH] [--json]
 *
 * Each subcommand is one entry of the command table below: a name, a
 * one-line summary for --help, and a function that takes the
 * subcommand's own argv (argv[0] is the subcommand) and returns the
 * process exit code (DESIGN.md: 0 ok, 1 refused, 2 usage, 3 unavailable,
 * 4 internal).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../client/output.h"
#include "../client/proto.h"
#include "../core/err.h"
#include "audit.h"
#include "admincmd.h"
#include "cli.h"

#ifndef PG_VERSION
#define PG_VERSION "unknown"
#endif

#define PROG "pmpgate"

typedef int (*command_fn)(int argc, char **argv);

struct command {
	const char *name;
	const char *synopsis;
	const char *summary;
	command_fn fn;
};

static int cmd_status(int argc, char **argv);

static const struct command commands[] = {
	{ "status", "status [--socket PATH] [--json]",
	  "show the state of the running pmpgated", cmd_status },
	{ "check", "check USER ROLE [TICKET] [--json]",
	  "explain the decision for USER rule by rule (admins)",
	  pg_cmd_check },
	{ "doctor", "doctor [-c CONF] [--offline]",
	  "lint the config, check file modes and every service",
	  pg_cmd_doctor },
	{ "review", "review [--stale-days N] [--format table|json|csv]",
	  "role members, last issuance, stale and conflicting (admins)",
	  pg_cmd_review },
	{ "iam", "iam trust-policy ROLE | iam scp [-c CONF]",
	  "write the IAM trust policy or the SCP from the config",
	  pg_cmd_iam },
	/* one function for the three; the first entry dispatches */
	{ "audit", "audit verify [--public-key F] [--syslog FILE] "
	  "[--signatures every|chain-end] [FILE...]",
	  "check the audit log's hash chain and signatures", pg_cmd_audit },
	{ "audit", "audit show [--user U] [--role R] [--ticket T] "
	  "[--event E] [--since T] [--until T] [--decision allow|deny] "
	  "[--format table|json|csv] [FILE...]",
	  "list audit records", pg_cmd_audit },
	{ "audit", "audit keygen [--out-private F] [--out-public F]",
	  "create the audit signing key pair", pg_cmd_audit },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
usage_line(const char *msg)
{
	char safe[512];

	pg_sanitize_text(msg, safe, sizeof(safe));
	fprintf(stderr, "%s: usage: %s (try %s --help)\n", PROG, safe, PROG);
}

static void
print_help(void)
{
	printf("Usage: %s COMMAND [OPTIONS]\n"
	       "       %s --help | --version\n\nCommands:\n", PROG, PROG);
	for (size_t i = 0; i < N_COMMANDS; i++)
		printf("  %-36s %s\n", commands[i].synopsis,
		       commands[i].summary);
	printf("\nThe socket defaults to $PMPGATE_SOCKET or %s;\n"
	       "PMPGATE_TIMEOUT sets the client timeout in seconds (default %d).\n"
	       "Exit: 0 ok, 1 refused, 2 usage, 3 unavailable, 4 internal.\n",
	       PG_DEFAULT_SOCKET, PG_CLIENT_TIMEOUT_DEFAULT_S);
}

/*
 * Send REQ and print the answer: with as_json the raw answer object as one
 * line of JSON, else (for an allow) its members as "key: value" lines.  A
 * deny or error answer puts its reason on stderr.  Returns the exit code
 * the answer carries.
 */
static int
call_and_print(const char *socket_path, const pg_proto_req *req, int as_json)
{
	char err[512], safe[1024];
	json_t *answer = NULL;
	const char *status;
	char *text = NULL;
	int timeout_ms, ex = PG_EXIT_INTERNAL;
	pg_err rc;

	if (pg_cli_timeout(&timeout_ms) != PG_OK) {
		usage_line("PMPGATE_TIMEOUT must be 1..3600 seconds");
		return PG_EXIT_USAGE;
	}
	rc = pg_proto_call(socket_path, req, timeout_ms, &answer, err,
			   sizeof(err));
	if (rc != PG_OK) {
		pg_sanitize_text(err, safe, sizeof(safe));
		fprintf(stderr, "%s: error: %s\n", PROG, safe);
		ex = rc == PG_EPROTO ? PG_EXIT_INTERNAL : pg_err_exit(rc);
		goto out;
	}
	status = json_string_value(json_object_get(answer, "status"));
	/* The raw answer always; key: value lines only for an allow. */
	if (as_json || strcmp(status, "allow") == 0) {
		int bad;

		if (as_json) {
			bad = json_dumpf(answer, stdout, JSON_COMPACT |
					 JSON_PRESERVE_ORDER) != 0 ||
			      putchar('\n') == EOF;
		} else {
			text = pg_format_kv(answer);
			if (text == NULL) {
				fprintf(stderr, "%s: error: out of memory\n",
					PROG);
				goto out;
			}
			bad = fputs(text, stdout) == EOF;
		}
		if (bad || fflush(stdout) != 0) {
			fprintf(stderr, "%s: error: cannot write to stdout\n",
				PROG);
			goto out;
		}
	}
	ex = (int)json_integer_value(json_object_get(answer, "exit"));
	if (strcmp(status, "allow") != 0) {
		pg_sanitize_text(json_string_value(json_object_get(answer,
								   "reason")),
				 safe, sizeof(safe));
		fprintf(stderr, "%s: %s: %s\n", PROG,
			strcmp(status, "deny") == 0 ? "refused" : "error", safe);
	}
out:
	free(text);
	json_decref(answer);
	return ex;
}

static int
cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	pg_proto_req req = { .op = PG_OP_STATUS };
	const char *socket_path = pg_cli_socket();
	int c, as_json = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:j", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
		case 'j':
			as_json = 1;
			break;
		case ':':
			usage_line("status: an option is missing its argument");
			return PG_EXIT_USAGE;
		default:
			usage_line("status: unknown option");
			return PG_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		usage_line("status takes no arguments");
		return PG_EXIT_USAGE;
	}
	return call_and_print(socket_path, &req, as_json);
}

int
main(int argc, char **argv)
{
	const char *name;

	if (argc < 2) {
		usage_line("a command is required");
		return PG_EXIT_USAGE;
	}
	name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
	    strcmp(name, "help") == 0) {
		print_help();
		return fflush(stdout) == 0 ? PG_EXIT_OK : PG_EXIT_INTERNAL;
	}
	if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
		printf("%s %s\n", PROG, PG_VERSION);
		return fflush(stdout) == 0 ? PG_EXIT_OK : PG_EXIT_INTERNAL;
	}
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(name, commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	usage_line(name[0] == '-' ? "unknown option" : "unknown command");
	return PG_EXIT_USAGE;
}
