/*
 * dirbatch - drive the batched lookups of core/directory.c (pg_dir_batch,
 * pg_dir_is_member_many, pg_dir_find_user_entry) against a real directory.
 *
 *   dirbatch [-d DEADLINE_MS] [-p] CONF COMMAND ARGS...
 *
 *   many USER GROUPDN...     the user's entry, then every group in one
 *                            pg_dir_is_member_many call:
 *                            "GROUPDN<TAB>yes via G1 > G2 ..." | "GROUPDN<TAB>no"
 *   people USER APPROVERGROUP GROUPDN... -- NAME...
 *                            as a decision does: the user's groups and the
 *                            names in one batch; after its first round each
 *                            resolved name's membership of APPROVERGROUP
 *                            joins the batch.  Lines as for many, then per
 *                            name "NAME<TAB>ok DN" | "NAME<TAB>notfound" |
 *                            "ambiguous" | "invalid", and for each resolved
 *                            one "NAME<TAB>approver yes" | "approver no"
 *   entry USER               "dn DN", then "memberof G" per value when the
 *                            entry carries them ("memberof-read 0|1")
 *
 * With -p, many and people run the batch step by step (pg_dir_batch_step),
 * print "step N done" after each step that leaves work, and wait for a
 * line on stdin before the next, so that a test can change the server in
 * between.
 *
 * Failures print "error KIND: message" (KIND = pg_err_name) and exit with
 * pg_err_exit(); a failed batch prints nothing else.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/config.h"
#include "../../core/deadline.h"
#include "../../core/directory.h"
#include "../../core/err.h"

#define MAX_ITEMS 256

static int pause_steps;

static void
usage(void)
{
	fprintf(stderr, "usage: dirbatch [-d MS] [-p] CONF many USER GROUPDN... "
		"| people USER APPROVERGROUP GROUPDN... -- NAME... "
		"| entry USER\n");
}

static pg_err
fail(pg_err e, const char *msg)
{
	printf("error %s: %s\n", pg_err_name(e), msg);
	fflush(stdout);
	return e;
}

static void
print_member(const char *what, pg_err st, const pg_dir_path *path)
{
	size_t i;

	if (st != PG_OK) {
		printf("%s\tno\n", what);
		return;
	}
	printf("%s\tyes via", what);
	for (i = 0; i < path->n; i++)
		printf("%s%s", i ? " > " : " ", path->dn[i]);
	printf("\n");
}

/* One step; *steps counts it.  With -p, wait for a line after it. */
static pg_err
step_once(pg_dir_batch *b, pg_deadline dl, int *more, int *steps,
	  char *err, size_t errlen)
{
	char line[16];
	pg_err e;

	e = pg_dir_batch_step(b, dl, more, err, errlen);
	(*steps)++;
	if (e == PG_OK && pause_steps && *more) {
		printf("step %d done\n", *steps);
		fflush(stdout);
		if (fgets(line, sizeof(line), stdin) == NULL) {
			snprintf(err, errlen, "no line on stdin");
			return PG_EUSAGE;
		}
	}
	return e;
}

/* The user's entry; prints "notfound"/"ambiguous"/an error otherwise. */
static pg_err
find(pg_dir *d, const char *user, pg_deadline dl, pg_dir_entry *ent)
{
	char err[1024];
	pg_err e = pg_dir_find_user_entry(d, user, dl, ent, err, sizeof(err));

	if (e == PG_ENOTFOUND)
		printf("notfound\n");
	else if (e == PG_EAMBIGUOUS)
		printf("ambiguous\n");
	else if (e != PG_OK)
		fail(e, err);
	return e;
}

static pg_err
cmd_entry(pg_dir *d, char **args, int n, pg_deadline dl)
{
	pg_dir_entry ent = { NULL, NULL, 0, 0, NULL };
	size_t i;
	pg_err e;

	if (n != 1) {
		usage();
		return PG_EUSAGE;
	}
	e = find(d, args[0], dl, &ent);
	if (e == PG_OK) {
		printf("dn %s\nmemberof-read %d\n", ent.dn, ent.have_memberof);
		for (i = 0; i < ent.n_memberof; i++)
			printf("memberof %s\n", ent.memberof[i]);
	}
	pg_dir_entry_free(&ent);
	return e;
}

/* many: pg_dir_is_member_many, but round by round through a batch when
 * -p is given (the same calls underneath). */
static pg_err
cmd_many(pg_dir *d, char **args, int n, pg_deadline dl)
{
	pg_dir_entry ent = { NULL, NULL, 0, 0, NULL };
	pg_dir_path paths[MAX_ITEMS];
	pg_err st[MAX_ITEMS];
	pg_dir_batch *b = NULL;
	char err[1024];
	size_t ng, i;
	int more = 1, steps = 0;
	pg_err e;

	if (n < 1 || n - 1 > MAX_ITEMS) {
		usage();
		return PG_EUSAGE;
	}
	ng = (size_t)(n - 1);
	memset(paths, 0, sizeof(paths));
	e = find(d, args[0], dl, &ent);
	if (e != PG_OK)
		goto out;
	if (!pause_steps) {
		e = pg_dir_is_member_many(d, args[0], &ent,
					  (const char *const *)args + 1, ng,
					  st, paths, dl, err, sizeof(err));
		if (e != PG_OK) {
			for (i = 0; i < ng; i++)
				if (st[i] != e || paths[i].n != 0)
					printf("BUG: result %zu kept\n", i);
			fail(e, err);
			goto out;
		}
		for (i = 0; i < ng; i++)
			print_member(args[1 + i], st[i], &paths[i]);
		goto out;
	}
	b = pg_dir_batch_new(d);
	if (b == NULL) {
		e = fail(PG_ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0, e = PG_OK; i < ng && e == PG_OK; i++)
		e = pg_dir_batch_member(b, args[0], &ent, args[1 + i], &st[i],
					&paths[i], err, sizeof(err));
	while (e == PG_OK && more)
		e = step_once(b, dl, &more, &steps, err, sizeof(err));
	if (e != PG_OK) {
		for (i = 0; i < ng; i++)
			if (st[i] != e || paths[i].n != 0)
				printf("BUG: result %zu kept\n", i);
		fail(e, err);
		goto out;
	}
	for (i = 0; i < ng; i++)
		print_member(args[1 + i], st[i], &paths[i]);
out:
	for (i = 0; i < MAX_ITEMS; i++)
		pg_dir_path_free(&paths[i]);
	pg_dir_batch_free(b);
	pg_dir_entry_free(&ent);
	return e;
}

static pg_err
cmd_people(pg_dir *d, char **args, int n, pg_deadline dl)
{
	pg_dir_entry ent = { NULL, NULL, 0, 0, NULL };
	pg_dir_entry people[MAX_ITEMS];
	pg_dir_path paths[MAX_ITEMS];
	pg_err st[MAX_ITEMS], pst[MAX_ITEMS], ast[MAX_ITEMS];
	int asked[MAX_ITEMS] = { 0 };
	pg_dir_batch *b = NULL;
	char err[1024];
	const char *appr;
	size_t ng = 0, np = 0, i;
	int sep, more = 1, steps = 0;
	pg_err e;

	memset(paths, 0, sizeof(paths));
	memset(people, 0, sizeof(people));
	for (sep = 2; sep < n && strcmp(args[sep], "--") != 0; sep++)
		;
	if (n < 3 || sep >= n || sep - 2 > MAX_ITEMS ||
	    n - sep - 1 > MAX_ITEMS) {
		usage();
		return PG_EUSAGE;
	}
	appr = args[1];
	ng = (size_t)(sep - 2);
	np = (size_t)(n - sep - 1);
	e = find(d, args[0], dl, &ent);
	if (e != PG_OK)
		goto out;
	b = pg_dir_batch_new(d);
	if (b == NULL) {
		e = fail(PG_ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < ng && e == PG_OK; i++)
		e = pg_dir_batch_member(b, args[0], &ent, args[2 + i], &st[i],
					&paths[i], err, sizeof(err));
	if (e == PG_OK)
		e = pg_dir_batch_resolve(b, (const char *const *)args + sep + 1,
					 np, people, pst, err, sizeof(err));
	if (e == PG_OK)
		e = step_once(b, dl, &more, &steps, err, sizeof(err));
	for (i = 0; i < np && e == PG_OK; i++) {
		if (pst[i] != PG_OK)
			continue;
		asked[i] = 1;
		more = 1;	/* the approvers join the next round */
		e = pg_dir_batch_member(b, args[sep + 1 + i], &people[i], appr,
					&ast[i], NULL, err, sizeof(err));
	}
	while (e == PG_OK && more)
		e = step_once(b, dl, &more, &steps, err, sizeof(err));
	if (e != PG_OK) {
		fail(e, err);
		goto out;
	}
	for (i = 0; i < ng; i++)
		print_member(args[2 + i], st[i], &paths[i]);
	for (i = 0; i < np; i++) {
		const char *name = args[sep + 1 + i];

		if (pst[i] == PG_OK)
			printf("%s\tok %s\n", name, people[i].dn);
		else if (pst[i] == PG_ENOTFOUND)
			printf("%s\tnotfound\n", name);
		else if (pst[i] == PG_EAMBIGUOUS)
			printf("%s\tambiguous\n", name);
		else if (pst[i] == PG_EINVAL)
			printf("%s\tinvalid\n", name);
		else
			printf("%s\t%s\n", name, pg_err_name(pst[i]));
		if (asked[i])
			printf("%s\tapprover %s\n", name,
			       ast[i] == PG_OK ? "yes" : "no");
	}
out:
	for (i = 0; i < MAX_ITEMS; i++) {
		pg_dir_path_free(&paths[i]);
		pg_dir_entry_free(&people[i]);
	}
	pg_dir_batch_free(b);
	pg_dir_entry_free(&ent);
	return e;
}

int
main(int argc, char **argv)
{
	pg_config *cfg = NULL;
	pg_dir *d = NULL;
	char err[1024];
	long deadline_ms = -1;
	const char *cmd;
	int i = 1;
	pg_deadline dl;
	pg_err e = PG_EUSAGE;

	signal(SIGPIPE, SIG_IGN);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-p") == 0)
			pause_steps = 1;
		else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
			deadline_ms = strtol(argv[++i], NULL, 10);
		else
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
	cmd = argv[i + 1];
	i += 2;
	d = pg_dir_new(cfg);
	if (d == NULL) {
		e = fail(PG_ENOMEM, "out of memory");
		goto out;
	}
	if (deadline_ms < 0)
		deadline_ms = cfg->daemon.deadline_ms;
	dl = pg_deadline_in(deadline_ms);
	if (strcmp(cmd, "many") == 0) {
		e = cmd_many(d, argv + i, argc - i, dl);
	} else if (strcmp(cmd, "people") == 0) {
		e = cmd_people(d, argv + i, argc - i, dl);
	} else if (strcmp(cmd, "entry") == 0) {
		e = cmd_entry(d, argv + i, argc - i, dl);
	} else {
		usage();
		e = PG_EUSAGE;
	}
out:
	fflush(stdout);
	pg_dir_free(d);
	pg_config_free(cfg);
	return pg_err_exit(e);
}
