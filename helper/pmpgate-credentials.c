/*
 * pmpgate-credentials - the AWS credential_process client of pmpgated.
 *
 * Asks the daemon over its unix socket to issue credentials for one role
 * and one ticket, and prints them in the form the AWS CLI and SDKs read.
 * Holds no secret of its own and no privilege: the daemon decides from the
 * caller's uid.  Exit codes (DESIGN.md): 0 issued, 1 refused, 2 usage,
 * 3 unavailable, 4 internal failure or a malformed answer.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../client/output.h"
#include "../client/proto.h"
#include "../core/err.h"

#ifndef PG_VERSION
#define PG_VERSION "unknown"
#endif

#define PROG "pmpgate-credentials"

static void
usage_line(const char *msg)
{
	char safe[512];

	pg_sanitize_text(msg, safe, sizeof(safe));
	fprintf(stderr, "%s: usage: %s (try --help)\n", PROG, safe);
}

static void
print_help(void)
{
	printf("Usage: %s --role ROLE [--ticket ID] [--duration S]\n"
	       "       [--format process|env|ini] [--socket PATH]\n"
	       "\n"
	       "Ask pmpgated for short-lived AWS credentials for ROLE, under an\n"
	       "approved ticket, and print them (default: the AWS credential_process\n"
	       "JSON).\n"
	       "\n"
	       "  -r, --role ROLE       the role to assume\n"
	       "  -t, --ticket ID       the approved ticket (default: $PMPGATE_TICKET)\n"
	       "  -d, --duration S      seconds, or with a unit: 900s, 15m, 1h, 12h\n"
	       "  -f, --format FMT      process (default), env or ini\n"
	       "  -s, --socket PATH     the daemon's socket (default: $PMPGATE_SOCKET\n"
	       "                        or %s)\n"
	       "  -h, --help            show this help\n"
	       "  -V, --version         show the version\n"
	       "\n"
	       "Exit: 0 issued, 1 refused, 2 usage, 3 unavailable, 4 internal.\n",
	       PROG, PG_DEFAULT_SOCKET);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "role", required_argument, NULL, 'r' },
		{ "ticket", required_argument, NULL, 't' },
		{ "duration", required_argument, NULL, 'd' },
		{ "format", required_argument, NULL, 'f' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const struct rlimit nocore = { 0, 0 };
	pg_proto_req req = { .op = PG_OP_ISSUE };
	const char *socket_path = getenv("PMPGATE_SOCKET");
	const char *status, *reason;
	char err[512], safe[1024];
	json_t *answer = NULL;
	pg_fmt fmt = PG_FMT_PROCESS;
	pg_creds creds;
	char *out = NULL;
	size_t outlen = 0;
	int timeout_ms, c, ex = PG_EXIT_INTERNAL;
	pg_err rc;

	/* It briefly holds credentials: no core dumps, no ptrace by peers. */
	setrlimit(RLIMIT_CORE, &nocore);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	pg_json_wipe_on_free();

	req.ticket = getenv("PMPGATE_TICKET");
	if (req.ticket != NULL && req.ticket[0] == '\0')
		req.ticket = NULL;
	if (socket_path == NULL || socket_path[0] == '\0')
		socket_path = PG_DEFAULT_SOCKET;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":r:t:d:f:s:hV", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'r':
			req.role = optarg;
			break;
		case 't':
			req.ticket = optarg;
			break;
		case 'd':
			if (pg_proto_parse_duration(optarg, &req.duration) !=
			    PG_OK) {
				snprintf(err, sizeof(err),
					 "--duration takes seconds or 15m/1h/12h "
					 "forms, at most %d seconds",
					 PG_PROTO_MAX_DURATION);
				usage_line(err);
				ex = PG_EXIT_USAGE;
				goto out;
			}
			break;
		case 'f':
			if (pg_fmt_parse(optarg, &fmt) != PG_OK) {
				usage_line("--format takes process, env or ini");
				ex = PG_EXIT_USAGE;
				goto out;
			}
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'h':
			print_help();
			ex = fflush(stdout) == 0 ? PG_EXIT_OK : PG_EXIT_INTERNAL;
			goto out;
		case 'V':
			printf("%s %s\n", PROG, PG_VERSION);
			ex = fflush(stdout) == 0 ? PG_EXIT_OK : PG_EXIT_INTERNAL;
			goto out;
		case ':':
			usage_line("an option is missing its argument");
			ex = PG_EXIT_USAGE;
			goto out;
		default:
			usage_line("unknown option");
			ex = PG_EXIT_USAGE;
			goto out;
		}
	}
	if (optind < argc) {
		usage_line("unexpected argument");
		ex = PG_EXIT_USAGE;
		goto out;
	}
	if (req.role == NULL) {
		usage_line("--role ROLE is required");
		ex = PG_EXIT_USAGE;
		goto out;
	}
	if (req.ticket == NULL) {
		usage_line("a ticket is required (--ticket ID or PMPGATE_TICKET)");
		ex = PG_EXIT_USAGE;
		goto out;
	}
	if (pg_client_timeout(&timeout_ms) != PG_OK) {
		usage_line("PMPGATE_TIMEOUT must be 1..3600 seconds");
		ex = PG_EXIT_USAGE;
		goto out;
	}
	req.service = "credential_process";
	req.tty = ttyname(STDIN_FILENO);
	if (req.tty != NULL && strlen(req.tty) > PG_PROTO_MAX_CTX)
		req.tty = NULL;
	if (pg_proto_check_req(&req, err, sizeof(err)) != PG_OK) {
		/* "request: role ..." -> "role ..." */
		usage_line(strncmp(err, "request: ", 9) == 0 ? err + 9 : err);
		ex = PG_EXIT_USAGE;
		goto out;
	}

	rc = pg_proto_call(socket_path, &req, timeout_ms, &answer, err,
			   sizeof(err));
	if (rc != PG_OK) {
		pg_sanitize_text(err, safe, sizeof(safe));
		fprintf(stderr, "%s: error: %s\n", PROG, safe);
		/* A daemon that answers nonsense is an internal failure. */
		ex = rc == PG_EPROTO ? PG_EXIT_INTERNAL : pg_err_exit(rc);
		goto out;
	}
	status = json_string_value(json_object_get(answer, "status"));
	reason = json_string_value(json_object_get(answer, "reason"));
	pg_sanitize_text(reason[0] ? reason : "(no reason given)", safe,
			 sizeof(safe));
	if (strcmp(status, "allow") != 0) {
		fprintf(stderr, "%s: %s: %s\n", PROG,
			strcmp(status, "deny") == 0 ? "refused" : "error", safe);
		ex = (int)json_integer_value(json_object_get(answer, "exit"));
		goto out;
	}
	if (pg_creds_from_answer(answer, req.role, &creds, err, sizeof(err)) !=
	    PG_OK) {
		fprintf(stderr, "%s: error: %s\n", PROG, err);
		ex = PG_EXIT_INTERNAL;
		goto out;
	}
	out = pg_format_creds(&creds, fmt, req.role, &outlen);
	if (out == NULL) {
		fprintf(stderr, "%s: error: out of memory\n", PROG);
		ex = PG_EXIT_INTERNAL;
		goto out;
	}
	if (pg_write_fd(STDOUT_FILENO, out, outlen) != 0) {
		fprintf(stderr, "%s: error: cannot write the credentials: %s\n",
			PROG, strerror(errno));
		ex = PG_EXIT_INTERNAL;
		goto out;
	}
	ex = PG_EXIT_OK;
out:
	pg_wipe_free(out, outlen);
	if (answer != NULL) {
		json_t *cr = json_object_get(answer, "credentials");
		const char *k;
		json_t *v;

		json_object_foreach(cr, k, v)
			if (json_is_string(v))
				explicit_bzero((char *)json_string_value(v),
					       json_string_length(v));
		json_decref(answer);
	}
	return ex;
}
