/*
 * test_directory.c - the batched lookups of core/directory.c that need no
 * server: memberOf answers taken from the entry, the whole batch failing
 * on a directory error, and argument checks.
 *
 * The configured directory is a loopback port nobody listens on, so any
 * request fails at once (PG_EUNAVAIL): a case that passes made no
 * request, and a case that needs one shows how a failure is reported.
 * Lookups against a real slapd are in tests/integration/test_directory.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../../core/config.h"
#include "../../core/deadline.h"
#include "../../core/directory.h"
#include "../../core/err.h"

#define USER_DN "uid=alice,ou=people,dc=example,dc=com"
#define G1 "cn=procurement-managers,ou=groups,dc=example,dc=com"
#define G2 "cn=catalogue-team,ou=teams,dc=example,dc=com"
#define G3 "cn=pmp-administrators,ou=groups,dc=example,dc=com"
#define DL_MS 5000

struct fx {
	char dir[64];
	char path[128];
	pg_config *cfg;
	pg_dir *d;
};

/* A loopback port with no listener (bound, then closed). */
static int
dead_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(s >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(s);
	return port;
}

/* A handle on a config whose [directory] has KEYS added. */
static struct fx *
fx_new(const char *keys)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[512];
	FILE *fp;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/pg-test-dir-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/pmpgate.conf", f->dir);
	fp = fopen(f->path, "w");
	assert_non_null(fp);
	fprintf(fp,
		"[directory]\n"
		"uri = ldap://127.0.0.1:%d/\n"
		"allow_plaintext = yes\n"
		"base = dc=example,dc=com\n"
		"timeout = 2s\n"
		"%s\n"
		"[tickets]\n"
		"provider = servicenow\n"
		"url = https://127.0.0.1:9/api/now/table/change_request?"
		"number={ticket}\n"
		"id_pattern = CHG[0-9]{7}\n"
		"[aws]\n"
		"region = eu-west-1\n"
		"credentials = env\n"
		"[role procurement-manager]\n"
		"group = " G1 "\n"
		"role_arn = arn:aws:iam::123456789012:role/procurement-manager\n",
		dead_port(), keys);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(f->path, 0600), 0);
	if (pg_config_load(f->path, &f->cfg, err, sizeof(err)) != PG_OK)
		fail_msg("config: %s", err);
	f->d = pg_dir_new(f->cfg);
	assert_non_null(f->d);
	return f;
}

static void
fx_free(struct fx *f)
{
	pg_dir_free(f->d);
	pg_config_free(f->cfg);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
}

/* ---- memberOf values in the entry answer without a request ---------------- */

struct mo_case {
	const char *name;
	const char *keys;		/* [directory] additions */
	const char *values[3];		/* the entry's memberOf values */
	const char *group;
	pg_err want;			/* the call's result */
	pg_err result;			/* results[0] when the call succeeds */
	const char *path;		/* path[0] of a member */
};

static const struct mo_case mo_cases[] = {
	{ "direct hit", "group_membership = memberOf",
	  { G1, G2, NULL }, G2, PG_OK, PG_OK, G2 },
	{ "hit, other spelling", "group_membership = memberOf",
	  { G1, NULL, NULL }, "CN=Procurement-Managers, OU=groups,"
	  "DC=example,DC=com", PG_OK, PG_OK, G1 },
	{ "flat miss", "group_membership = memberOf\nnested_groups = no",
	  { G1, G2, NULL }, G3, PG_OK, PG_ENOTFOUND, NULL },
	{ "flat, no values", "group_membership = memberOf\nnested_groups = no",
	  { NULL, NULL, NULL }, G1, PG_OK, PG_ENOTFOUND, NULL },
	{ "nested, no values", "group_membership = memberOf",
	  { NULL, NULL, NULL }, G1, PG_OK, PG_ENOTFOUND, NULL },
	/* a miss with nesting must ask the directory for G1's groups */
	{ "nested miss needs the server", "group_membership = memberOf",
	  { G1, NULL, NULL }, G3, PG_EUNAVAIL, PG_EUNAVAIL, NULL },
	/* member kinds always ask */
	{ "member asks", "", { G1, NULL, NULL }, G1, PG_EUNAVAIL,
	  PG_EUNAVAIL, NULL },
};

static void
test_memberof_from_entry(void **state)
{
	size_t i, k;

	(void)state;
	for (i = 0; i < sizeof(mo_cases) / sizeof(mo_cases[0]); i++) {
		const struct mo_case *c = &mo_cases[i];
		struct fx *f = fx_new(c->keys);
		char *vals[3] = { NULL, NULL, NULL };
		pg_dir_entry ent = { (char *)USER_DN, vals, 0, 1, NULL };
		const char *groups[1] = { c->group };
		pg_dir_path path = { (char **)1, 7 };	/* must be reset */
		pg_err res = PG_EINTERNAL;
		char err[512] = "";
		pg_err e;

		for (k = 0; k < 3 && c->values[k] != NULL; k++)
			vals[ent.n_memberof++] = (char *)c->values[k];
		e = pg_dir_is_member_many(f->d, "alice", &ent, groups, 1, &res,
					  &path, pg_deadline_in(DL_MS), err,
					  sizeof(err));
		if (e != c->want)
			fail_msg("%s: %s (%s)", c->name, pg_err_name(e), err);
		assert_int_equal(res, c->result);
		if (c->path != NULL) {
			assert_int_equal(path.n, 1);
			assert_string_equal(path.dn[0], c->path);
		} else {
			assert_int_equal(path.n, 0);
			assert_null(path.dn);
		}
		if (e != PG_OK)
			assert_non_null(strstr(err, "127.0.0.1"));
		pg_dir_path_free(&path);
		fx_free(f);
	}
}

/* ---- one failure fails everything ------------------------------------------ */

static void
test_failure_fails_every_answer(void **state)
{
	struct fx *f = fx_new("group_membership = memberOf");
	char *vals[2] = { (char *)G1, (char *)G2 };
	pg_dir_entry ent = { (char *)USER_DN, vals, 2, 1, NULL };
	/* G1 and G2 are answered from the entry; G3 needs the server */
	const char *groups[3] = { G1, G3, G2 };
	pg_dir_path paths[3];
	pg_err res[3];
	char err[512];
	size_t i;
	pg_err e;

	(void)state;
	e = pg_dir_is_member_many(f->d, "alice", &ent, groups, 3, res, paths,
				  pg_deadline_in(DL_MS), err, sizeof(err));
	assert_int_equal(e, PG_EUNAVAIL);
	for (i = 0; i < 3; i++) {
		assert_int_equal(res[i], PG_EUNAVAIL);
		assert_int_equal(paths[i].n, 0);
		assert_null(paths[i].dn);
	}
	/* without the miss, the same call succeeds without the server */
	groups[1] = G1;
	e = pg_dir_is_member_many(f->d, "alice", &ent, groups, 3, res, paths,
				  pg_deadline_in(DL_MS), err, sizeof(err));
	assert_int_equal(e, PG_OK);
	for (i = 0; i < 3; i++) {
		assert_int_equal(res[i], PG_OK);
		assert_int_equal(paths[i].n, 1);
		pg_dir_path_free(&paths[i]);
	}
	fx_free(f);
}

static void
test_failed_batch_stays_failed(void **state)
{
	struct fx *f = fx_new("");
	pg_dir_entry ent = { (char *)USER_DN, NULL, 0, 0, NULL };
	pg_dir_entry people[2];
	const char *names[2] = { "erin", "frank" };
	pg_err st[2], st1 = PG_OK, st2 = PG_OK;
	pg_dir_path path;
	pg_dir_batch *b = pg_dir_batch_new(f->d);
	char err[512];
	int more = 7;

	(void)state;
	assert_non_null(b);
	assert_int_equal(pg_dir_batch_member(b, "alice", &ent, G1, &st1, &path,
					     err, sizeof(err)), PG_OK);
	assert_int_equal(st1, PG_EINTERNAL);	/* not answered yet */
	assert_int_equal(pg_dir_batch_resolve(b, names, 2, people, st, err,
					      sizeof(err)), PG_OK);
	assert_int_equal(pg_dir_batch_step(b, pg_deadline_in(DL_MS), &more,
					   err, sizeof(err)), PG_EUNAVAIL);
	assert_int_equal(more, 0);
	assert_int_equal(st1, PG_EUNAVAIL);
	assert_int_equal(st[0], PG_EUNAVAIL);
	assert_int_equal(st[1], PG_EUNAVAIL);
	assert_null(people[0].dn);
	assert_int_equal(path.n, 0);
	/* later calls report the same failure */
	err[0] = '\0';
	assert_int_equal(pg_dir_batch_member(b, "alice", &ent, G2, &st2, NULL,
					     err, sizeof(err)), PG_EUNAVAIL);
	assert_int_equal(st2, PG_EUNAVAIL);
	assert_non_null(strstr(err, "127.0.0.1"));
	assert_int_equal(pg_dir_batch_run(b, pg_deadline_in(DL_MS), err,
					  sizeof(err)), PG_EUNAVAIL);
	pg_dir_batch_free(b);
	fx_free(f);
}

static void
test_deadline_passed(void **state)
{
	struct fx *f = fx_new("");
	pg_dir_entry ent = { (char *)USER_DN, NULL, 0, 0, NULL };
	const char *groups[2] = { G1, G2 };
	pg_err res[2];
	char err[512];

	(void)state;
	assert_int_equal(pg_dir_is_member_many(f->d, "alice", &ent, groups, 2,
					       res, NULL, pg_deadline_in(0),
					       err, sizeof(err)), PG_ETIMEOUT);
	assert_int_equal(res[0], PG_ETIMEOUT);
	assert_int_equal(res[1], PG_ETIMEOUT);
	assert_non_null(strstr(err, "deadline"));
	fx_free(f);
}

/* ---- nothing to ask: no request ----------------------------------------------- */

static void
test_nothing_to_ask(void **state)
{
	struct fx *f = fx_new("");
	pg_dir_batch *b = pg_dir_batch_new(f->d);
	const char *names[4] = { "", "al\tice", "bad\x7f", NULL };
	char long_name[300];
	pg_dir_entry people[4];
	pg_err st[4];
	char err[512];
	size_t i;
	int more = 7;

	(void)state;
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	names[3] = long_name;
	assert_non_null(b);
	assert_int_equal(pg_dir_batch_run(b, pg_deadline_in(DL_MS), err,
					  sizeof(err)), PG_OK);
	/* names that cannot be looked up are answered at once */
	assert_int_equal(pg_dir_batch_resolve(b, names, 4, people, st, err,
					      sizeof(err)), PG_OK);
	for (i = 0; i < 4; i++) {
		assert_int_equal(st[i], PG_EINVAL);
		assert_null(people[i].dn);
	}
	assert_int_equal(pg_dir_batch_step(b, pg_deadline_in(DL_MS), &more,
					   err, sizeof(err)), PG_OK);
	assert_int_equal(more, 0);
	pg_dir_batch_free(b);
	fx_free(f);
}

/* ---- bad arguments ---------------------------------------------------------------- */

struct arg_case {
	const char *name;
	const char *keys;
	const char *user;
	const char *user_dn;
	const char *group;
	pg_err want;
};

static const struct arg_case arg_cases[] = {
	{ "no user DN", "", "alice", NULL, G1, PG_EINVAL },
	{ "empty user DN", "", "alice", "", G1, PG_EINVAL },
	{ "no group", "", "alice", USER_DN, NULL, PG_EINVAL },
	{ "empty group", "", "alice", USER_DN, "", PG_EINVAL },
	{ "empty group, memberOf", "group_membership = memberOf", "alice",
	  USER_DN, "", PG_EINVAL },
	{ "memberUid, control character",
	  "group_membership = memberUid", "al\nice", USER_DN, G1, PG_EINVAL },
	{ "memberUid, empty name", "group_membership = memberUid", "",
	  USER_DN, G1, PG_EINVAL },
};

static void
test_bad_arguments(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(arg_cases) / sizeof(arg_cases[0]); i++) {
		const struct arg_case *c = &arg_cases[i];
		struct fx *f = fx_new(c->keys);
		pg_dir_entry ent = { (char *)c->user_dn, NULL, 0, 0, NULL };
		const char *groups[2] = { G2, c->group };
		pg_dir_path paths[2];
		pg_err res[2];
		char err[512] = "";
		pg_err e;

		e = pg_dir_is_member_many(f->d, c->user, &ent, groups, 2, res,
					  paths, pg_deadline_in(DL_MS), err,
					  sizeof(err));
		if (e != c->want)
			fail_msg("%s: %s (%s)", c->name, pg_err_name(e), err);
		assert_int_equal(res[0], c->want);
		assert_int_equal(res[1], c->want);
		assert_int_equal(paths[0].n, 0);
		assert_true(err[0] != '\0');
		fx_free(f);
	}
}

static void
test_null_handles(void **state)
{
	pg_err st;
	char err[128];

	(void)state;
	assert_null(pg_dir_batch_new(NULL));
	pg_dir_batch_free(NULL);
	pg_dir_entry_free(NULL);
	assert_int_equal(pg_dir_batch_member(NULL, "a", NULL, G1, &st, NULL,
					     err, sizeof(err)), PG_EINTERNAL);
	assert_int_equal(pg_dir_batch_step(NULL, pg_deadline_in(DL_MS), NULL,
					   err, sizeof(err)), PG_EINTERNAL);
	assert_int_equal(pg_dir_batch_run(NULL, pg_deadline_in(DL_MS), err,
					  sizeof(err)), PG_EINTERNAL);
	assert_int_equal(pg_dir_is_member_many(NULL, "a", NULL, NULL, 0, NULL,
					       NULL, pg_deadline_in(DL_MS),
					       err, sizeof(err)),
			 PG_EINTERNAL);
	assert_int_equal(pg_dir_find_user_entry(NULL, "a",
						pg_deadline_in(DL_MS), NULL,
						err, sizeof(err)),
			 PG_EINTERNAL);
}

static void
test_entry_free(void **state)
{
	pg_dir_entry e = { NULL, NULL, 0, 0, NULL };

	(void)state;
	pg_dir_entry_free(&e);			/* zeroed: fine */
	e.dn = strdup(USER_DN);
	e.memberof = calloc(2, sizeof(*e.memberof));
	assert_non_null(e.dn);
	assert_non_null(e.memberof);
	e.memberof[0] = strdup(G1);
	e.memberof[1] = strdup(G2);
	e.n_memberof = 2;
	e.have_memberof = 1;
	pg_dir_entry_free(&e);
	assert_null(e.dn);
	assert_null(e.memberof);
	assert_int_equal(e.n_memberof, 0);
	assert_int_equal(e.have_memberof, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memberof_from_entry),
		cmocka_unit_test(test_failure_fails_every_answer),
		cmocka_unit_test(test_failed_batch_stays_failed),
		cmocka_unit_test(test_deadline_passed),
		cmocka_unit_test(test_nothing_to_ask),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_null_handles),
		cmocka_unit_test(test_entry_free),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
