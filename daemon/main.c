/*
 * pmpgated - the pmpgate broker daemon.
 *
 *   pmpgated [-c CONF] [-f] [-t] [-d]
 *
 * Starts as root only to create its socket, then drops to [daemon] user
 * for good (or starts as that user under systemd).  See pmpgated(8).
 */
#include <errno.h>
#include <grp.h>
#include <jansson.h>
#include <libgen.h>
#include <malloc.h>
#include <signal.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/audit.h"
#include "../core/awscreds.h"
#include "../core/config.h"
#include "../core/err.h"
#include "../core/http.h"
#include "../core/log.h"
#include "server.h"

static void
usage(FILE *f)
{
	fprintf(f, "usage: pmpgated [-c CONF] [-f] [-t] [-d]\n"
		"  -c CONF  configuration file (default %s)\n"
		"  -f       stay in the foreground and log to stderr\n"
		"  -t       check the configuration and exit\n"
		"  -d       debug logging\n", PG_DEFAULT_CONFIG);
}

/* No core dumps, no ptrace by other users, nothing inherited. */
static int
harden(void)
{
	struct rlimit rl = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &rl) != 0 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return -1;
	umask(077);
	/* The daemon's own settings are the only LDAP settings. */
	return setenv("LDAPNOINIT", "1", 1);
}

/*
 * A directory for the daemon's user (as root, before dropping): created
 * with MODE and given to PW when it does not exist; an existing one is
 * never chowned or chmodded (it may be /run or /var/log), only checked:
 * a directory, not a symlink, not writable by group or others.
 */
static int
make_dir_for(const char *dir, mode_t mode, const struct passwd *pw)
{
	struct stat st;
	int created;

	created = mkdir(dir, mode) == 0;
	if (!created && errno != EEXIST)
		return -1;
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		errno = EPERM;
		return -1;
	}
	if (created && pw != NULL &&
	    (chown(dir, pw->pw_uid, pw->pw_gid) != 0 ||
	     chmod(dir, mode) != 0))
		return -1;
	return 0;
}

/* The directory that holds PATH (a socket or a log file). */
static int
make_parent_for(const char *path, mode_t mode, const struct passwd *pw)
{
	char *copy = strdup(path);
	int rc;

	if (copy == NULL)
		return -1;
	rc = make_dir_for(dirname(copy), mode, pw);
	free(copy);
	return rc;
}

/* Jansson's memory: every block it frees is wiped first, so that the
 * buffers it grows while encoding an answer with credentials, and its
 * parse buffers, leave no copy of a secret behind. */
static void *
wiping_malloc(size_t n)
{
	return malloc(n);
}

static void
wiping_free(void *p)
{
	if (p != NULL)
		explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

/* Drop to PW for good and prove root cannot be regained. */
static int
drop_privileges(const struct passwd *pw)
{
	uid_t r, e, s;

	if (setgroups(1, &pw->pw_gid) != 0 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0)
		return -1;
	if (getresuid(&r, &e, &s) != 0 || r != pw->pw_uid ||
	    e != pw->pw_uid || s != pw->pw_uid)
		return -1;
	if (setuid(0) == 0 || seteuid(0) == 0)
		return -1;
	/* setresuid clears it again on some kernels: set it after. */
	return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int
main(int argc, char **argv)
{
	const char *conf = PG_DEFAULT_CONFIG;
	int foreground = 0, test = 0, debug = 0, opt, lfd = -1;
	struct passwd *pw = NULL;
	pg_config *cfg = NULL;
	pg_audit *audit = NULL;
	char err[512];

	/* Close every descriptor we did not open ourselves, first. */
	closefrom(3);
	/* A file-size limit must fail the audit write, not kill us. */
	signal(SIGXFSZ, SIG_IGN);
	json_set_alloc_funcs(wiping_malloc, wiping_free);
	if (harden() != 0) {
		fprintf(stderr, "pmpgated: cannot harden the process: %s\n",
			strerror(errno));
		return PG_EXIT_INTERNAL;
	}
	while ((opt = getopt(argc, argv, "c:ftdh")) != -1) {
		switch (opt) {
		case 'c': conf = optarg; break;
		case 'f': foreground = 1; break;
		case 't': test = 1; break;
		case 'd': debug = 1; break;
		case 'h': usage(stdout); return PG_EXIT_OK;
		default: usage(stderr); return PG_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return PG_EXIT_USAGE;
	}
	pg_log_init("pmpgated", foreground || test, debug);

	if (pg_config_load(conf, &cfg, err, sizeof(err)) != PG_OK) {
		fprintf(stderr, "pmpgated: %s\n", err);
		return PG_EXIT_USAGE;
	}
	if (test) {
		printf("pmpgated: %s: configuration OK\n", conf);
		pg_config_free(cfg);
		return PG_EXIT_OK;
	}

	if (geteuid() == 0) {
		pw = getpwnam(cfg->daemon.user);
		if (pw == NULL) {
			fprintf(stderr, "pmpgated: [daemon] user %s does not "
				"exist\n", cfg->daemon.user);
			goto fail_usage;
		}
		if (pw->pw_uid == 0) {
			fprintf(stderr, "pmpgated: refusing to run as root: set "
				"[daemon] user to an unprivileged user\n");
			goto fail_usage;
		}
	}
	if (make_parent_for(cfg->daemon.socket, 0755, pw) != 0) {
		fprintf(stderr, "pmpgated: socket directory for %s: %s\n",
			cfg->daemon.socket, strerror(errno));
		goto fail_usage;
	}
	if (pw != NULL && make_parent_for(cfg->audit.path, 0750, pw) != 0) {
		fprintf(stderr, "pmpgated: audit log directory for %s: %s\n",
			cfg->audit.path, strerror(errno));
		goto fail_usage;
	}
	if (pw != NULL && strcmp(cfg->ledger.backend, "file") == 0 &&
	    make_dir_for(cfg->ledger.path, 0700, pw) != 0) {
		fprintf(stderr, "pmpgated: ledger directory %s: %s\n",
			cfg->ledger.path, strerror(errno));
		goto fail_usage;
	}
	if (pg_server_listen(cfg->daemon.socket, &lfd, err, sizeof(err))
	    != PG_OK) {
		fprintf(stderr, "pmpgated: %s\n", err);
		goto fail_usage;
	}
	if (pw != NULL && drop_privileges(pw) != 0) {
		fprintf(stderr, "pmpgated: cannot drop privileges to %s\n",
			cfg->daemon.user);
		close(lfd);
		pg_config_free(cfg);
		return PG_EXIT_INTERNAL;
	}
	/* Opened as the daemon's user, so that a reopen can write it too. */
	if (pg_audit_open(cfg, &audit, err, sizeof(err)) != PG_OK) {
		fprintf(stderr, "pmpgated: audit trail: %s\n", err);
		close(lfd);
		pg_config_free(cfg);
		return PG_EXIT_INTERNAL;
	}
	if (!foreground && daemon(0, 0) != 0) {
		fprintf(stderr, "pmpgated: daemon: %s\n", strerror(errno));
		pg_audit_close(audit);
		close(lfd);
		pg_config_free(cfg);
		return PG_EXIT_INTERNAL;
	}
	if (pg_http_global_init() != PG_OK) {
		pg_log(LOG_ERR, "cannot initialise libcurl");
		pg_audit_close(audit);
		close(lfd);
		pg_config_free(cfg);
		return PG_EXIT_INTERNAL;
	}
	{
		char *socket_path = strdup(cfg->daemon.socket);
		int rc = pg_server_run(lfd, cfg, conf, audit);

		if (socket_path != NULL)
			(void)unlink(socket_path);
		free(socket_path);
		pg_aws_creds_cache_clear();	/* wipes the cached base keys */
		pg_http_global_cleanup();
		pg_audit_close(audit);
		pg_log(LOG_NOTICE, "stopped");
		return rc == 0 ? PG_EXIT_OK : PG_EXIT_INTERNAL;
	}

fail_usage:
	pg_config_free(cfg);
	return PG_EXIT_USAGE;
}
