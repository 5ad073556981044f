/*
 * dirprobe - drive core/directory.c against a real directory.
 *
 *   dirprobe [-d DEADLINE_MS] [-o KEY=VALUE]... CONF COMMAND ARGS...
 *
 *   find USER               "found DN" | "notfound" | "ambiguous"
 *   member USER GROUPDN     "member yes via G1 > G2 ..." | "member no: why"
 *   twice COMMAND ARGS...   runs COMMAND, waits for a line on stdin, and
 *                           runs it again with the same handle (to show
 *                           reconnection across a server restart)
 *   member-twice USER GROUPDN   twice member USER GROUPDN
 *   resolve NAME...         one line per name: "NAME<TAB>ok DN" |
 *                           "NAME<TAB>notfound" | "ambiguous" | "invalid"
 *   ping                    "ok"
 *
 * Failures print "error KIND: message" (KIND = pg_err_name) and exit with
 * pg_err_exit().  -o changes a [directory] setting after the config is
 * loaded (uri, starttls, allow_plaintext), to reach states the config
 * loader itself refuses.  The deadline defaults to [daemon] deadline.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/config.h"
#include "../../core/deadline.h"
#include "../../core/directory.h"
#include "../../core/err.h"

static void
usage(void)
{
	fprintf(stderr, "usage: dirprobe [-d MS] [-o KEY=VALUE]... CONF "
		"find USER | member USER GROUPDN | member-twice USER GROUPDN | "
		"resolve NAME... | ping\n");
}

static pg_err
fail(pg_err e, const char *msg)
{
	printf("error %s: %s\n", pg_err_name(e), msg);
	fflush(stdout);
	return e;
}

/* Split VALUE on blanks into LIST (replacing it; the old strings are
 * kept by the caller's config and freed with it). */
static int
set_list(pg_list *list, char *value, char ***keep)
{
	size_t n = 0;
	char *save = NULL, *tok;
	char **v = calloc(strlen(value) / 2 + 2, sizeof(*v));

	if (v == NULL)
		return -1;
	for (tok = strtok_r(value, " ", &save); tok != NULL;
	     tok = strtok_r(NULL, " ", &save))
		v[n++] = tok;
	v[n] = NULL;
	*keep = list->v;	/* restored before pg_config_free */
	list->v = v;
	list->n = n;
	return 0;
}

static int
apply_override(pg_config *cfg, char *kv, char ***keep, size_t *keep_n)
{
	char *eq = strchr(kv, '=');

	if (eq == NULL)
		return -1;
	*eq++ = '\0';
	if (strcmp(kv, "starttls") == 0)
		cfg->directory.starttls = strcmp(eq, "yes") == 0;
	else if (strcmp(kv, "allow_plaintext") == 0)
		cfg->directory.allow_plaintext = strcmp(eq, "yes") == 0;
	else if (strcmp(kv, "uri") == 0 && *keep == NULL) {
		*keep_n = cfg->directory.uri.n;
		return set_list(&cfg->directory.uri, eq, keep);
	} else
		return -1;
	return 0;
}

static pg_err
find(pg_dir *d, const char *user, pg_deadline dl, char **dn)
{
	char err[1024];
	pg_err e = pg_dir_find_user(d, user, dl, dn, err, sizeof(err));

	if (e == PG_ENOTFOUND)
		printf("notfound\n");
	else if (e == PG_EAMBIGUOUS)
		printf("ambiguous\n");
	else if (e != PG_OK)
		fail(e, err);
	return e;
}

static pg_err
member(pg_dir *d, const char *user, const char *group, pg_deadline dl)
{
	char err[1024], *dn = NULL;
	pg_dir_path path = { NULL, 0 };
	size_t i;
	pg_err e;

	e = pg_dir_find_user(d, user, dl, &dn, err, sizeof(err));
	if (e != PG_OK) {
		if (e == PG_ENOTFOUND)
			printf("notfound\n");
		else if (e == PG_EAMBIGUOUS)
			printf("ambiguous\n");
		else
			fail(e, err);
		goto out;
	}
	e = pg_dir_is_member(d, user, dn, group, &path, dl, err, sizeof(err));
	if (e == PG_OK) {
		printf("member yes via");
		for (i = 0; i < path.n; i++)
			printf("%s%s", i ? " > " : " ", path.dn[i]);
		printf("\n");
	} else if (e == PG_ENOTFOUND) {
		printf("member no: %s\n", err);
	} else {
		fail(e, err);
	}
out:
	fflush(stdout);
	pg_dir_path_free(&path);
	free(dn);
	return e;
}

static pg_err
resolve(pg_dir *d, char **names, size_t n, pg_deadline dl)
{
	char err[1024];
	char **dns = calloc(n ? n : 1, sizeof(*dns));
	pg_err *st = calloc(n ? n : 1, sizeof(*st));
	size_t i;
	pg_err e;

	if (dns == NULL || st == NULL) {
		e = fail(PG_ENOMEM, "out of memory");
		goto out;
	}
	e = pg_dir_resolve(d, (const char *const *)names, n, dns, st, dl, err,
			   sizeof(err));
	if (e != PG_OK) {
		fail(e, err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (st[i] == PG_OK)
			printf("%s\tok %s\n", names[i], dns[i]);
		else if (st[i] == PG_ENOTFOUND)
			printf("%s\tnotfound\n", names[i]);
		else if (st[i] == PG_EAMBIGUOUS)
			printf("%s\tambiguous\n", names[i]);
		else if (st[i] == PG_EINVAL)
			printf("%s\tinvalid\n", names[i]);
		else
			printf("%s\t%s\n", names[i], pg_err_name(st[i]));
		if (st[i] != PG_OK && dns[i] != NULL)
			printf("%s\tBUG: DN set with status %s\n", names[i],
			       pg_err_name(st[i]));
	}
out:
	if (dns != NULL)
		for (i = 0; i < n; i++)
			free(dns[i]);
	free(dns);
	free(st);
	return e;
}

/* Run one command; ARGS are its N arguments. */
static pg_err
run(pg_dir *d, const char *cmd, char **args, int n, pg_deadline dl)
{
	char err[1024], *dn = NULL;
	pg_err e;

	if (strcmp(cmd, "find") == 0 && n == 1) {
		e = find(d, args[0], dl, &dn);
		if (e == PG_OK)
			printf("found %s\n", dn);
		free(dn);
	} else if (strcmp(cmd, "member") == 0 && n == 2) {
		e = member(d, args[0], args[1], dl);
	} else if (strcmp(cmd, "resolve") == 0) {
		e = resolve(d, args, (size_t)n, dl);
	} else if (strcmp(cmd, "ping") == 0 && n == 0) {
		e = pg_dir_ping(d, dl, err, sizeof(err));
		if (e == PG_OK)
			printf("ok\n");
		else
			fail(e, err);
	} else {
		usage();
		e = PG_EUSAGE;
	}
	fflush(stdout);
	return e;
}

int
main(int argc, char **argv)
{
	pg_config *cfg = NULL;
	pg_dir *d = NULL;
	char err[1024], **keep = NULL, line[16];
	size_t keep_n = 0;
	long deadline_ms = -1;
	const char *cmd;
	int twice = 0, i = 1;
	pg_err e = PG_EUSAGE;

	signal(SIGPIPE, SIG_IGN);
	for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
		if (strcmp(argv[i], "-d") == 0)
			deadline_ms = strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "-o") != 0)
			break;
	}
	if (argc - i < 2 || argv[i][0] == '-') {
		usage();
		goto out;
	}
	e = pg_config_load(argv[i], &cfg, err, sizeof(err));
	if (e != PG_OK) {
		fail(e, err);
		goto out;
	}
	for (int j = 1; j < i; j += 2) {
		if (strcmp(argv[j], "-o") == 0 &&
		    apply_override(cfg, argv[j + 1], &keep, &keep_n) != 0) {
			usage();
			e = PG_EUSAGE;
			goto out;
		}
	}
	cmd = argv[i + 1];
	i += 2;
	if (strcmp(cmd, "member-twice") == 0) {
		cmd = "member";
		twice = 1;
	} else if (strcmp(cmd, "twice") == 0 && i < argc) {
		cmd = argv[i++];
		twice = 1;
	}
	d = pg_dir_new(cfg);
	if (d == NULL) {
		e = fail(PG_ENOMEM, "out of memory");
		goto out;
	}
	if (deadline_ms < 0)
		deadline_ms = cfg->daemon.deadline_ms;
	e = run(d, cmd, argv + i, argc - i, pg_deadline_in(deadline_ms));
	if (twice && e != PG_EUSAGE) {
		/* Same handle, after whatever happened meanwhile. */
		if (fgets(line, sizeof(line), stdin) == NULL) {
			e = fail(PG_EUSAGE, "no line on stdin");
			goto out;
		}
		e = run(d, cmd, argv + i, argc - i,
			pg_deadline_in(deadline_ms));
	}
out:
	fflush(stdout);
	pg_dir_free(d);
	if (keep != NULL) {
		free(cfg->directory.uri.v);
		cfg->directory.uri.v = keep;
		cfg->directory.uri.n = keep_n;
	}
	pg_config_free(cfg);
	return pg_err_exit(e);
}
