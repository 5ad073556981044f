/*
 * doctor.c - `pmpgate doctor`: what is misconfigured, before users find
 * out.  One line per check, "OK", "WARN", "SKIP" or "FAIL", the check's
 * name, what was found, and for a FAIL how to fix it.
 *
 * Offline (this process, as the invoking user, normally root):
 *   config       `pmpgated -t -c CONF` (the daemon's own loader is the
 *                judge of every key, type, range and unknown name; it
 *                prints FILE:LINE: message)
 *   conflicts    every `conflicts` is declared on both roles (R2 and R6
 *                only protect the role that names the other)
 *   principal    [aws] base_principal is set (the trust policies need it)
 *                and in the account of the role ARNs
 *   daemon-user  [daemon] user exists
 *   files        ownership and modes, checked on an O_PATH|O_NOFOLLOW
 *                descriptor: the config and every file it names must
 *                belong to root or the daemon's user and not be writable
 *                by group or others, and be readable by the daemon's
 *                user; secret files (bind password, ticket token, AWS
 *                credentials, audit signing key) also not readable by
 *                others; the ledger directory belongs to the daemon's
 *                user; the audit log's directory exists and is not
 *                writable by others; the socket is a socket in a
 *                directory only root or the daemon's user can write.
 * Live (through the daemon, op "doctor", admins only; daemon/admin.h):
 *   directory, tickets, sts, ledger, audit-key.
 *
 * Exit: 0 no FAIL, 1 at least one FAIL, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../client/output.h"
#include "../core/config.h"
#include "admincmd.h"
#include "cli.h"

/* Most output read from `pmpgated -t`. */
#define LINT_MAX 16384

struct doctor {
	int failed;
	const char *conf;
	const pg_ini *ini;
	const struct passwd *pw;	/* the daemon's user, or NULL */
	gid_t groups[64];		/* its groups */
	int n_groups;
};

static void
doctor_help(void)
{
	printf("Usage: pmpgate doctor [-c CONF] [--socket PATH] "
	       "[--pmpgated PATH] [--offline]\n\n"
	       "Check the configuration, the ownership and modes of every "
	       "file it names, and,\nthrough the running daemon, every "
	       "service it needs (directory bind and search,\nticket "
	       "service TLS and credentials, STS GetCallerIdentity, the "
	       "ledger, the audit\nsigning key).  One line per check: OK, "
	       "WARN, SKIP or FAIL, with how to fix a FAIL.\n\n"
	       "  -c, --config CONF  the configuration (default "
	       "$PMPGATE_CONFIG or %s)\n"
	       "  --socket PATH      the daemon's socket (default: [daemon] "
	       "socket)\n"
	       "  --pmpgated PATH    the daemon binary that checks the "
	       "configuration\n"
	       "                     (default: next to pmpgate, ../sbin, "
	       "then $PATH)\n"
	       "  --offline          skip the live checks\n\n"
	       "Exit: 0 nothing failed, 1 a check failed, 2 usage.\n",
	       PG_DEFAULT_CONFIG);
}

static void
report(struct doctor *d, const char *result, const char *check,
       const char *detail, const char *fix)
{
	char a[1024], b[1024];

	pg_sanitize_text(detail, a, sizeof(a));
	printf("%-4s %-12s %s", result, check, a);
	if (fix != NULL && fix[0] != '\0' && strcmp(result, "OK") != 0) {
		pg_sanitize_text(fix, b, sizeof(b));
		printf(" -- fix: %s", b);
	}
	putchar('\n');
	if (strcmp(result, "FAIL") == 0)
		d->failed = 1;
}

/* ---- config: pmpgated -t ------------------------------------------------ */

/* The pmpgated to run: GIVEN, else next to this program, else its
 * ../sbin, else "pmpgated" on PATH (NULL path: execvp). */
static void
find_pmpgated(const char *given, char *out, size_t len)
{
	char self[PATH_MAX], *dir;
	ssize_t n;

	if (given != NULL) {
		snprintf(out, len, "%s", given);
		return;
	}
	out[0] = '\0';
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		goto path;
	self[n] = '\0';
	dir = dirname(self);
	snprintf(out, len, "%s/pmpgated", dir);
	if (access(out, X_OK) == 0)
		return;
	snprintf(out, len, "%s/../sbin/pmpgated", dir);
	if (access(out, X_OK) == 0)
		return;
path:
	snprintf(out, len, "pmpgated");
}

static void
check_lint(struct doctor *d, const char *pmpgated)
{
	char buf[LINT_MAX + 1], msg[LINT_MAX + 64];
	size_t len = 0;
	ssize_t r;
	int fds[2], status = 0;
	pid_t pid;
	char *line, *save = NULL;

	if (pipe2(fds, O_CLOEXEC) != 0) {
		report(d, "FAIL", "config", strerror(errno), "");
		return;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		report(d, "FAIL", "config", strerror(errno), "");
		return;
	}
	if (pid == 0) {
		char *argv[] = { (char *)pmpgated, "-t", "-c",
				 (char *)d->conf, NULL };

		if (dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0)
			_exit(127);
		if (strchr(pmpgated, '/') != NULL)
			execv(pmpgated, argv);
		else
			execvp(pmpgated, argv);
		fprintf(stderr, "cannot run %s: %s\n", pmpgated,
			strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	while ((r = read(fds[0], buf + len, LINT_MAX - len)) > 0 ||
	       (r < 0 && errno == EINTR))
		if (r > 0)
			len += (size_t)r;
	/* drain what does not fit */
	while (len == LINT_MAX && read(fds[0], msg, sizeof(msg)) > 0)
		;
	close(fds[0]);
	buf[len] = '\0';
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		snprintf(msg, sizeof(msg), "%s: pmpgated -t: configuration OK",
			 d->conf);
		report(d, "OK", "config", msg, "");
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		snprintf(msg, sizeof(msg), "cannot run %s", pmpgated);
		report(d, "FAIL", "config", msg, "install pmpgated or name it "
		       "with --pmpgated PATH");
		return;
	}
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "pmpgated: ", 10) == 0)
			line += 10;
		report(d, "FAIL", "config", line, "correct the line named "
		       "(see pmpgate.conf(5)) and run pmpgate doctor again");
	}
	if (len == 0)
		report(d, "FAIL", "config", "pmpgated -t failed without a "
		       "message", "");
}

/* ---- configuration rules pmpgated -t does not judge ---------------------- */

/* Is NAME one of the blank-separated words of LIST? */
static int
in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p = list;

	while (p != NULL && *p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, name, n) == 0 &&
		    (p[n] == '\0' || p[n] == ' ' || p[n] == '\t'))
			return 1;
		p = strpbrk(p, " \t");
	}
	return 0;
}

/* The 12-digit account of an IAM ARN into ACCT (13 bytes), or "". */
static void
arn_account(const char *arn, char *acct)
{
	const char *p = arn ? strstr(arn, ":iam::") : NULL;

	acct[0] = '\0';
	if (p != NULL && strlen(p + 6) >= 12)
		snprintf(acct, 13, "%.12s", p + 6);
}

static void
check_rules(struct doctor *d)
{
	const char *roles[64], *base;
	char sec[160], other[160], msg[1024], fix[512], acct[13], racct[13];
	size_t n, i, problems = 0;

	n = pg_ini_roles(d->ini, roles, 64);
	for (i = 0; i < n; i++) {
		const char *list, *p;

		snprintf(sec, sizeof(sec), "role %s", roles[i]);
		list = pg_ini_get(d->ini, sec, "conflicts");
		for (p = list; p != NULL && *p;) {
			char name[128];
			size_t k = strcspn(p, " \t");

			if (k == 0) {
				p++;
				continue;
			}
			snprintf(name, sizeof(name), "%.*s", (int)k, p);
			p += k;
			snprintf(other, sizeof(other), "role %s", name);
			if (in_list(pg_ini_get(d->ini, other, "conflicts"),
				    roles[i]))
				continue;
			snprintf(msg, sizeof(msg), "[role %s] conflicts names "
				 "%s, but [role %s] does not name %s: a member "
				 "of both groups may still get %s", roles[i],
				 name, name, roles[i], name);
			snprintf(fix, sizeof(fix), "add %s to [role %s] "
				 "conflicts", roles[i], name);
			report(d, "FAIL", "conflicts", msg, fix);
			problems++;
		}
	}
	if (problems == 0)
		report(d, "OK", "conflicts", "every conflicts is declared on "
		       "both roles", "");

	base = pg_ini_get(d->ini, "aws", "base_principal");
	if (base == NULL) {
		report(d, "WARN", "principal", "[aws] base_principal is not set",
		       "set it to the ARN of the base credentials' principal "
		       "to generate trust policies (pmpgate iam trust-policy)");
		return;
	}
	arn_account(base, acct);
	for (i = 0; i < n; i++) {
		snprintf(sec, sizeof(sec), "role %s", roles[i]);
		arn_account(pg_ini_get(d->ini, sec, "role_arn"), racct);
		if (acct[0] != '\0' && racct[0] != '\0' &&
		    strcmp(acct, racct) != 0) {
			snprintf(msg, sizeof(msg), "[role %s] role_arn is in "
				 "account %s, [aws] base_principal in %s: the "
				 "role's trust policy must name the other "
				 "account", roles[i], racct, acct);
			report(d, "WARN", "principal", msg, "");
			return;
		}
	}
	snprintf(msg, sizeof(msg), "[aws] base_principal %s", base);
	report(d, "OK", "principal", msg, "");
}

/* ---- files ----------------------------------------------------------------- */

static int
daemon_can(const struct doctor *d, const struct stat *st, mode_t u, mode_t g,
	   mode_t o)
{
	int i;

	if (d->pw == NULL || d->pw->pw_uid == 0)
		return 1;
	if (st->st_uid == d->pw->pw_uid)
		return (st->st_mode & u) != 0;
	for (i = 0; i < d->n_groups; i++)
		if (st->st_gid == d->groups[i])
			return (st->st_mode & g) != 0;
	return (st->st_mode & o) != 0;
}

enum kind { K_FILE, K_SECRET, K_STATEDIR, K_LOGDIR, K_SOCKET, K_SOCKDIR };

static void
check_path(struct doctor *d, const char *what, const char *path,
	   enum kind kind)
{
	char msg[1024], owner[64];
	struct stat st;
	uid_t duid = d->pw ? d->pw->pw_uid : (uid_t)-1;
	const char *problem = NULL, *fix = NULL;
	int fd;

	fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(msg, sizeof(msg), "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		report(d, "FAIL", what, msg, kind == K_SOCKET ?
		       "start pmpgated (systemctl start pmpgated)" :
		       kind == K_LOGDIR ? "create the directory, owned by "
		       "the daemon's user, mode 0750" : "create it or "
		       "correct the path in the configuration");
		return;
	}
	close(fd);
	if (st.st_uid == duid || st.st_uid == 0)
		snprintf(owner, sizeof(owner), "%s", st.st_uid == 0 ? "root" :
			 d->pw->pw_name);
	else
		snprintf(owner, sizeof(owner), "uid %u", (unsigned)st.st_uid);

	if (S_ISLNK(st.st_mode)) {
		problem = "is a symbolic link";
		fix = "name the file itself, not a link to it";
	} else if (kind == K_SOCKET) {
		if (!S_ISSOCK(st.st_mode)) {
			problem = "is not a socket";
			fix = "remove it and restart pmpgated";
		}
	} else if (kind == K_STATEDIR || kind == K_LOGDIR ||
		   kind == K_SOCKDIR) {
		if (!S_ISDIR(st.st_mode)) {
			problem = "is not a directory";
			fix = "correct the path in the configuration";
		}
	} else if (!S_ISREG(st.st_mode)) {
		problem = "is not a regular file";
		fix = "correct the path in the configuration";
	}
	if (problem == NULL && kind != K_SOCKET && st.st_uid != 0 &&
	    st.st_uid != duid) {
		problem = "belongs to neither root nor the daemon's user";
		fix = "chown it to root or to the daemon's user";
	}
	if (problem == NULL && kind == K_STATEDIR && st.st_uid != duid &&
	    duid != (uid_t)-1) {
		problem = "does not belong to the daemon's user";
		fix = "chown the ledger directory to the daemon's user, mode "
		      "0700";
	}
	if (problem == NULL && kind != K_SOCKET &&
	    (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		problem = "is writable by group or others";
		fix = kind == K_SECRET ? "chmod 0600" : kind == K_FILE ?
			"chmod go-w (0644, or 0640 with the daemon's group)" :
			"chmod go-w";
	}
	if (problem == NULL && kind == K_SECRET &&
	    (st.st_mode & S_IROTH) != 0) {
		problem = "is readable by others";
		fix = "chmod 0600 (owner: the daemon's user)";
	}
	if (problem == NULL && (kind == K_FILE || kind == K_SECRET) &&
	    !daemon_can(d, &st, S_IRUSR, S_IRGRP, S_IROTH)) {
		problem = "is not readable by the daemon's user";
		fix = kind == K_SECRET ? "chown it to the daemon's user, mode "
		      "0600" : "chmod a+r, or give the daemon's group read";
	}
	if (problem == NULL && (kind == K_STATEDIR || kind == K_LOGDIR) &&
	    !daemon_can(d, &st, S_IWUSR | S_IXUSR, S_IWGRP | S_IXGRP,
			S_IWOTH | S_IXOTH)) {
		problem = "is not writable by the daemon's user";
		fix = "chown it to the daemon's user";
	}
	if (problem != NULL) {
		snprintf(msg, sizeof(msg), "%s %s (owner %s, mode %04o)", path,
			 problem, owner, (unsigned)(st.st_mode & 07777));
		report(d, "FAIL", what, msg, fix);
		return;
	}
	snprintf(msg, sizeof(msg), "%s (owner %s, mode %04o)", path, owner,
		 (unsigned)(st.st_mode & 07777));
	report(d, "OK", what, msg, "");
}

static void
check_opt(struct doctor *d, const char *what, const char *section,
	  const char *key, enum kind kind)
{
	const char *v = pg_ini_get(d->ini, section, key);

	if (v != NULL && v[0] != '\0')
		check_path(d, what, v, kind);
}

static void
check_files(struct doctor *d, const char *socket_path)
{
	const char *roles[64], *v;
	char sec[128], dir[PATH_MAX];
	size_t n, i;

	check_path(d, "config-file", d->conf, K_FILE);
	check_opt(d, "secret", "directory", "bind_password_file", K_SECRET);
	check_opt(d, "secret", "tickets", "token_file", K_SECRET);
	v = pg_ini_get(d->ini, "aws", "credentials");
	if (v != NULL && strncmp(v, "file:", 5) == 0)
		check_path(d, "secret", v + 5, K_SECRET);
	check_opt(d, "secret", "audit", "signing_key", K_SECRET);
	check_opt(d, "file", "directory", "ca_file", K_FILE);
	check_opt(d, "file", "tickets", "ca_file", K_FILE);
	check_opt(d, "file", "aws", "ca_file", K_FILE);
	n = pg_ini_roles(d->ini, roles, 64);
	for (i = 0; i < n; i++) {
		snprintf(sec, sizeof(sec), "role %s", roles[i]);
		check_opt(d, "file", sec, "session_policy_file", K_FILE);
	}
	v = pg_ini_get(d->ini, "ledger", "backend");
	if (v == NULL || strcmp(v, "file") == 0) {
		v = pg_ini_get(d->ini, "ledger", "path");
		check_path(d, "state-dir", v ? v : PG_DEFAULT_STATEDIR,
			   K_STATEDIR);
	}
	v = pg_ini_get(d->ini, "audit", "path");
	snprintf(dir, sizeof(dir), "%s", v ? v : PG_DEFAULT_AUDIT);
	check_path(d, "log-dir", dirname(dir), K_LOGDIR);
	snprintf(dir, sizeof(dir), "%s", socket_path);
	check_path(d, "socket-dir", dirname(dir), K_SOCKDIR);
	check_path(d, "socket", socket_path, K_SOCKET);
}

/* ---- live checks through the daemon ------------------------------------------ */

static void
check_live(struct doctor *d, const char *socket_path)
{
	pg_proto_req req = { .op = PG_OP_DOCTOR };
	char err[512], msg[1024];
	json_t *ans = NULL, *checks, *c;
	int timeout_ms;
	size_t i;
	pg_err rc;

	if (pg_cli_timeout(&timeout_ms) != PG_OK)
		timeout_ms = 60000;
	rc = pg_proto_call(socket_path, &req, timeout_ms, &ans, err,
			   sizeof(err));
	if (rc != PG_OK) {
		report(d, "FAIL", "daemon", err, "start pmpgated, or name its "
		       "socket with --socket");
		return;
	}
	checks = json_object_get(ans, "checks");
	if (!json_is_array(checks)) {
		snprintf(msg, sizeof(msg), "pmpgated did not run the checks: "
			 "%s", json_string_value(json_object_get(ans,
								  "reason")));
		report(d, "FAIL", "daemon", msg, "run pmpgate doctor as root or "
		       "as a member of [daemon] admin_group");
		goto out;
	}
	snprintf(msg, sizeof(msg), "pmpgated answers at %s (configuration "
		 "%s)", socket_path, json_string_value(json_object_get(ans,
			"config")) ? json_string_value(json_object_get(ans,
			"config")) : "?");
	report(d, "OK", "daemon", msg, "");
	json_array_foreach(checks, i, c) {
		const char *res = json_string_value(json_object_get(c,
								     "result"));
		const char *name = json_string_value(json_object_get(c,
								      "check"));

		report(d, res == NULL ? "FAIL" : strcmp(res, "ok") == 0 ?
		       "OK" : strcmp(res, "skip") == 0 ? "SKIP" : "FAIL",
		       name ? name : "?",
		       json_string_value(json_object_get(c, "detail")) ?
		       json_string_value(json_object_get(c, "detail")) : "",
		       json_string_value(json_object_get(c, "fix")));
	}
out:
	json_decref(ans);
}

int
pg_cmd_doctor(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "pmpgated", required_argument, NULL, 'p' },
		{ "offline", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct doctor d;
	const char *given = NULL, *socket_path = NULL, *pmpgated = NULL, *user;
	char bin[PATH_MAX], err[512], msg[600];
	pg_ini *ini = NULL;
	int c, offline = 0, ex;

	memset(&d, 0, sizeof(d));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			given = optarg;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'p':
			pmpgated = optarg;
			break;
		case 'o':
			offline = 1;
			break;
		case 'h':
			doctor_help();
			return pg_cli_flush();
		case ':':
			return pg_cli_usage("doctor", "doctor: an option is "
					    "missing its argument");
		default:
			return pg_cli_usage("doctor", "doctor: unknown option");
		}
	}
	if (optind < argc)
		return pg_cli_usage("doctor", "doctor takes no arguments");
	d.conf = pg_cli_config_path(given);

	find_pmpgated(pmpgated, bin, sizeof(bin));
	check_lint(&d, bin);
	if (pg_ini_load(d.conf, &ini, err, sizeof(err)) != PG_OK) {
		report(&d, "FAIL", "config", err, "");
		goto live;
	}
	d.ini = ini;
	check_rules(&d);
	user = pg_ini_get(ini, "daemon", "user");
	if (user == NULL)
		user = "pmpgate";
	d.pw = getpwnam(user);
	if (d.pw == NULL) {
		snprintf(msg, sizeof(msg), "[daemon] user %s does not exist",
			 user);
		report(&d, "FAIL", "daemon-user", msg, "create the system user "
		       "(useradd --system pmpgate) or set [daemon] user");
	} else {
		d.n_groups = 64;
		if (getgrouplist(d.pw->pw_name, d.pw->pw_gid, d.groups,
				 &d.n_groups) < 0)
			d.n_groups = 0;
		snprintf(msg, sizeof(msg), "%s (uid %u)", d.pw->pw_name,
			 (unsigned)d.pw->pw_uid);
		report(&d, "OK", "daemon-user", msg, "");
	}
	if (socket_path == NULL)
		socket_path = pg_ini_get(ini, "daemon", "socket");
	if (socket_path == NULL)
		socket_path = getenv("PMPGATE_SOCKET") &&
			getenv("PMPGATE_SOCKET")[0] ? getenv("PMPGATE_SOCKET") :
			PG_DEFAULT_SOCKET;
	check_files(&d, socket_path);
live:
	if (socket_path == NULL)
		socket_path = pg_cli_socket();
	if (offline)
		report(&d, "SKIP", "live", "--offline: the services were not "
		       "reached", "");
	else
		check_live(&d, socket_path);
	ex = pg_cli_flush();
	pg_ini_free(ini);
	if (ex != PG_EXIT_OK)
		return ex;
	return d.failed ? 1 : PG_EXIT_OK;
}
