/*
 * test_credcache.c - the credential cache (core/credcache.c).
 *
 * Times are passed as `now`, so the reuse margin and expiry are crossed
 * without sleeping.  Lookups are tables: each row states the key, the
 * time, the bound and whether it must hit.  Values read back are checked
 * byte for byte, so a cache that mixed up keys or slots fails.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../core/credcache.h"

#define T0 1700000000LL
#define EXP (T0 + 3600)
#define PM "procurement-manager"
#define ADMIN "pmp-administrator"

/* Credentials whose strings all derive from TAG (so rows differ). */
typedef struct fake {
	char id[64], secret[128], token[256];
	pg_aws_creds c;
} fake;

static void
fake_make(fake *f, const char *tag, int64_t exp, int with_token)
{
	snprintf(f->id, sizeof(f->id), "ASIA%s", tag);
	snprintf(f->secret, sizeof(f->secret), "secret-of-%s", tag);
	snprintf(f->token, sizeof(f->token), "token-of-%s", tag);
	f->c.access_key_id = f->id;
	f->c.secret_access_key = f->secret;
	f->c.session_token = with_token ? f->token : NULL;
	f->c.expiration = exp;
}

static void
assert_same(const pg_aws_creds *got, const fake *want)
{
	assert_string_equal(got->access_key_id, want->id);
	assert_string_equal(got->secret_access_key, want->secret);
	if (want->c.session_token == NULL)
		assert_null(got->session_token);
	else
		assert_string_equal(got->session_token, want->token);
	assert_int_equal(got->expiration, want->c.expiration);
}

static void
assert_miss(pg_credcache *c, const char *u, const char *r, const char *t,
	    int64_t now)
{
	pg_aws_creds out;

	assert_int_equal(pg_credcache_get(c, u, r, t, now, 0, &out),
			 PG_ENOTFOUND);
	assert_null(out.access_key_id);
	assert_null(out.secret_access_key);
	assert_null(out.session_token);
	assert_int_equal(out.expiration, 0);
}

/* ---- lookups ----------------------------------------------------------- */

static void
test_roundtrip_copies(void **state)
{
	pg_credcache *c = pg_credcache_new(4);
	pg_aws_creds out;
	fake f, g;

	(void)state;
	assert_non_null(c);
	fake_make(&f, "A", EXP, 1);
	fake_make(&g, "B", EXP, 0);
	assert_int_equal(pg_credcache_put(c, "alice", PM, "CHG1", T0, &f.c),
			 PG_OK);
	assert_int_equal(pg_credcache_put(c, "bob", PM, "CHG1", T0, &g.c),
			 PG_OK);
	assert_int_equal(pg_credcache_count(c), 2);

	/* The cache holds its own copy: changing ours changes nothing. */
	f.secret[0] = 'X';
	assert_int_equal(pg_credcache_get(c, "alice", PM, "CHG1", T0 + 1, 0,
					  &out), PG_OK);
	f.secret[0] = 's';
	assert_same(&out, &f);
	/* ... and the caller's copy is its own. */
	out.secret_access_key[0] = 'Y';
	pg_aws_creds_wipe(&out);
	assert_int_equal(pg_credcache_get(c, "alice", PM, "CHG1", T0 + 1, 0,
					  &out), PG_OK);
	assert_same(&out, &f);
	pg_aws_creds_wipe(&out);

	assert_int_equal(pg_credcache_get(c, "bob", PM, "CHG1", T0, 0, &out),
			 PG_OK);
	assert_same(&out, &g);
	pg_aws_creds_wipe(&out);
	pg_credcache_free(c);
}

/* Every component of the key counts, and the components cannot run
 * into each other. */
static void
test_key_components(void **state)
{
	static const struct { const char *u, *r, *t; int hit; } rows[] = {
		{ "ab", PM, "CHG1", 1 },
		{ "ab", ADMIN, "CHG1", 0 },	/* other role */
		{ "ab", PM, "CHG2", 0 },	/* other ticket */
		{ "AB", PM, "CHG1", 0 },	/* exact bytes */
		{ "a", "b" PM, "CHG1", 0 },	/* boundary moved */
		{ "ab" PM, "", "CHG1", 0 },
		{ "ab", PM "CHG1", "", 0 },
		{ "", "", "", 0 },
	};
	pg_credcache *c = pg_credcache_new(8);
	pg_aws_creds out;
	size_t i;
	fake f;

	(void)state;
	fake_make(&f, "K", EXP, 1);
	assert_int_equal(pg_credcache_put(c, "ab", PM, "CHG1", T0, &f.c),
			 PG_OK);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		pg_err e = pg_credcache_get(c, rows[i].u, rows[i].r, rows[i].t,
					    T0, 0, &out);

		if (rows[i].hit) {
			assert_int_equal(e, PG_OK);
			assert_same(&out, &f);
			pg_aws_creds_wipe(&out);
		} else {
			assert_int_equal(e, PG_ENOTFOUND);
			assert_null(out.access_key_id);
		}
	}
	pg_credcache_free(c);
}

/* Reuse until PG_CREDCACHE_MARGIN seconds before expiry; an entry found
 * inside the margin is removed. */
static void
test_margin(void **state)
{
	static const struct { int64_t now; int hit; } rows[] = {
		{ T0, 1 },
		{ EXP - PG_CREDCACHE_MARGIN - 1, 1 },
		{ EXP - PG_CREDCACHE_MARGIN, 0 },
		{ EXP, 0 },
		{ EXP + 86400, 0 },
	};
	pg_aws_creds out;
	size_t i;
	fake f;

	(void)state;
	fake_make(&f, "M", EXP, 1);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		pg_credcache *c = pg_credcache_new(2);

		assert_int_equal(pg_credcache_put(c, "alice", PM, "CHG1", T0,
						  &f.c), PG_OK);
		if (rows[i].hit) {
			assert_int_equal(pg_credcache_get(c, "alice", PM,
				"CHG1", rows[i].now, 0, &out), PG_OK);
			assert_same(&out, &f);
			pg_aws_creds_wipe(&out);
			assert_int_equal(pg_credcache_count(c), 1);
		} else {
			assert_miss(c, "alice", PM, "CHG1", rows[i].now);
			/* gone, not just hidden: an earlier time misses too */
			assert_int_equal(pg_credcache_count(c), 0);
			assert_miss(c, "alice", PM, "CHG1", T0);
		}
		pg_credcache_free(c);
	}
}

/* NOT_AFTER: cached credentials never outlive what may be handed out
 * now; a miss for that reason keeps the entry. */
static void
test_not_after(void **state)
{
	static const struct { int64_t not_after; int hit; } rows[] = {
		{ 0, 1 },
		{ EXP, 1 },
		{ EXP + 1, 1 },
		{ EXP - 1, 0 },
		{ T0 + 900, 0 },
	};
	pg_credcache *c = pg_credcache_new(2);
	pg_aws_creds out;
	size_t i;
	fake f;

	(void)state;
	fake_make(&f, "N", EXP, 1);
	assert_int_equal(pg_credcache_put(c, "alice", PM, "CHG1", T0, &f.c),
			 PG_OK);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		pg_err e = pg_credcache_get(c, "alice", PM, "CHG1", T0,
					    rows[i].not_after, &out);

		assert_int_equal(e, rows[i].hit ? PG_OK : PG_ENOTFOUND);
		if (rows[i].hit)
			assert_same(&out, &f);
		else
			assert_null(out.access_key_id);
		pg_aws_creds_wipe(&out);
		assert_int_equal(pg_credcache_count(c), 1);
	}
	pg_credcache_free(c);
}

/* ---- refusals to store --------------------------------------------------- */

static void
test_put_refused(void **state)
{
	char big_user[PG_CREDCACHE_KEY_MAX + 2];
	char big_id[PG_CREDCACHE_ID_MAX + 2];
	char big_secret[PG_CREDCACHE_SECRET_MAX + 2];
	char big_token[PG_CREDCACHE_TOKEN_MAX + 2];
	char fit_token[PG_CREDCACHE_TOKEN_MAX + 1];
	char half[PG_CREDCACHE_KEY_MAX / 2 + 1];
	pg_credcache *c = pg_credcache_new(4);
	pg_aws_creds cr;
	fake f;

	(void)state;
	memset(big_user, 'u', sizeof(big_user) - 1);
	big_user[sizeof(big_user) - 1] = '\0';
	memset(big_id, 'I', sizeof(big_id) - 1);
	big_id[sizeof(big_id) - 1] = '\0';
	memset(big_secret, 's', sizeof(big_secret) - 1);
	big_secret[sizeof(big_secret) - 1] = '\0';
	memset(big_token, 't', sizeof(big_token) - 1);
	big_token[sizeof(big_token) - 1] = '\0';
	memset(fit_token, 't', sizeof(fit_token) - 1);
	fit_token[sizeof(fit_token) - 1] = '\0';
	memset(half, 'h', sizeof(half) - 1);
	half[sizeof(half) - 1] = '\0';
	fake_make(&f, "R", EXP, 1);

	/* NULL arguments */
	assert_int_equal(pg_credcache_put(NULL, "a", PM, "T", T0, &f.c),
			 PG_EINVAL);
	assert_int_equal(pg_credcache_put(c, NULL, PM, "T", T0, &f.c),
			 PG_EINVAL);
	assert_int_equal(pg_credcache_put(c, "a", NULL, "T", T0, &f.c),
			 PG_EINVAL);
	assert_int_equal(pg_credcache_put(c, "a", PM, NULL, T0, &f.c),
			 PG_EINVAL);
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, NULL),
			 PG_EINVAL);
	cr = f.c;
	cr.access_key_id = NULL;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);
	cr = f.c;
	cr.secret_access_key = NULL;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);
	cr = f.c;
	cr.access_key_id = "";
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);
	cr = f.c;
	cr.secret_access_key = "";
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);

	/* strings that do not fit a slot */
	assert_int_equal(pg_credcache_put(c, big_user, PM, "T", T0, &f.c),
			 PG_EINVAL);
	assert_int_equal(pg_credcache_put(c, half, half, "T", T0, &f.c),
			 PG_EINVAL);
	cr = f.c;
	cr.access_key_id = big_id;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);
	cr = f.c;
	cr.secret_access_key = big_secret;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);
	cr = f.c;
	cr.session_token = big_token;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);

	/* nothing left to reuse */
	cr = f.c;
	cr.expiration = T0 + PG_CREDCACHE_MARGIN;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);
	cr.expiration = T0 - 1;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);
	cr.expiration = 0;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_EINVAL);
	cr.expiration = INT64_MIN;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", INT64_MAX, &cr),
			 PG_EINVAL);
	assert_int_equal(pg_credcache_count(c), 0);

	/* the largest token that fits is kept whole */
	cr = f.c;
	cr.session_token = fit_token;
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &cr), PG_OK);
	{
		pg_aws_creds out;

		assert_int_equal(pg_credcache_get(c, "a", PM, "T", T0, 0, &out),
				 PG_OK);
		assert_string_equal(out.session_token, fit_token);
		pg_aws_creds_wipe(&out);
	}

	/* lookups with bad arguments */
	{
		pg_aws_creds out;

		assert_int_equal(pg_credcache_get(NULL, "a", PM, "T", T0, 0,
						  &out), PG_EINVAL);
		assert_null(out.access_key_id);
		assert_int_equal(pg_credcache_get(c, NULL, PM, "T", T0, 0,
						  &out), PG_EINVAL);
		assert_int_equal(pg_credcache_get(c, "a", PM, "T", T0, 0, NULL),
				 PG_EINVAL);
		assert_int_equal(pg_credcache_get(c, big_user, PM, "T", T0, 0,
						  &out), PG_ENOTFOUND);
	}
	assert_int_equal(pg_credcache_drop(c, NULL, PM, "T"), 0);
	assert_int_equal(pg_credcache_drop(NULL, "a", PM, "T"), 0);
	pg_credcache_free(c);
	pg_credcache_free(NULL);
}

static void
test_capacity_bounds(void **state)
{
	pg_credcache *c;

	(void)state;
	assert_null(pg_credcache_new(0));
	assert_null(pg_credcache_new(65537));
	c = pg_credcache_new(1);
	assert_non_null(c);
	assert_int_equal(pg_credcache_count(c), 0);
	assert_int_equal(pg_credcache_count(NULL), 0);
	pg_credcache_free(c);
}

/* ---- replace, drop, evict ------------------------------------------------- */

static void
test_replace_and_drop(void **state)
{
	pg_credcache *c = pg_credcache_new(2);
	pg_aws_creds out;
	fake f, g;

	(void)state;
	fake_make(&f, "OLD", EXP, 1);
	fake_make(&g, "NEW", EXP + 600, 0);
	assert_int_equal(pg_credcache_put(c, "alice", PM, "CHG1", T0, &f.c),
			 PG_OK);
	assert_int_equal(pg_credcache_put(c, "alice", PM, "CHG1", T0, &g.c),
			 PG_OK);
	assert_int_equal(pg_credcache_count(c), 1);
	assert_int_equal(pg_credcache_get(c, "alice", PM, "CHG1", T0, 0, &out),
			 PG_OK);
	assert_same(&out, &g);	/* the token of the old entry is gone too */
	pg_aws_creds_wipe(&out);

	assert_int_equal(pg_credcache_drop(c, "alice", PM, "CHG2"), 0);
	assert_int_equal(pg_credcache_drop(c, "alice", ADMIN, "CHG1"), 0);
	assert_int_equal(pg_credcache_count(c), 1);
	assert_int_equal(pg_credcache_drop(c, "alice", PM, "CHG1"), 1);
	assert_int_equal(pg_credcache_drop(c, "alice", PM, "CHG1"), 0);
	assert_int_equal(pg_credcache_count(c), 0);
	assert_miss(c, "alice", PM, "CHG1", T0);
	pg_credcache_free(c);
}

/* Full: entries inside the margin go first, then the least recently
 * used; the count never exceeds the capacity. */
static void
test_eviction(void **state)
{
	pg_credcache *c = pg_credcache_new(3);
	pg_aws_creds out;
	fake a, b, d, e, s;

	(void)state;
	fake_make(&a, "a", EXP, 1);
	fake_make(&b, "b", EXP, 1);
	fake_make(&d, "d", EXP, 1);
	fake_make(&e, "e", EXP, 1);
	assert_int_equal(pg_credcache_put(c, "a", PM, "T", T0, &a.c), PG_OK);
	assert_int_equal(pg_credcache_put(c, "b", PM, "T", T0, &b.c), PG_OK);
	assert_int_equal(pg_credcache_put(c, "d", PM, "T", T0, &d.c), PG_OK);
	/* touch a: b is now the least recently used */
	assert_int_equal(pg_credcache_get(c, "a", PM, "T", T0, 0, &out), PG_OK);
	pg_aws_creds_wipe(&out);
	assert_int_equal(pg_credcache_put(c, "e", PM, "T", T0, &e.c), PG_OK);
	assert_int_equal(pg_credcache_count(c), 3);
	assert_miss(c, "b", PM, "T", T0);
	assert_int_equal(pg_credcache_get(c, "a", PM, "T", T0, 0, &out), PG_OK);
	assert_same(&out, &a);
	pg_aws_creds_wipe(&out);
	assert_int_equal(pg_credcache_get(c, "d", PM, "T", T0, 0, &out), PG_OK);
	assert_same(&out, &d);
	pg_aws_creds_wipe(&out);
	assert_int_equal(pg_credcache_get(c, "e", PM, "T", T0, 0, &out), PG_OK);
	assert_same(&out, &e);
	pg_aws_creds_wipe(&out);

	/* d expires soon; at a later time it goes before the LRU (a). */
	fake_make(&d, "d2", T0 + 1000, 1);
	assert_int_equal(pg_credcache_put(c, "d", PM, "T", T0, &d.c), PG_OK);
	fake_make(&s, "s", EXP, 1);
	assert_int_equal(pg_credcache_put(c, "s", PM, "T", T0 + 800, &s.c),
			 PG_OK);
	assert_int_equal(pg_credcache_count(c), 3);
	assert_miss(c, "d", PM, "T", T0);
	assert_int_equal(pg_credcache_get(c, "a", PM, "T", T0, 0, &out), PG_OK);
	pg_aws_creds_wipe(&out);
	assert_int_equal(pg_credcache_get(c, "s", PM, "T", T0, 0, &out), PG_OK);
	assert_same(&out, &s);
	pg_aws_creds_wipe(&out);
	pg_credcache_free(c);
}

/* ---- threads ------------------------------------------------------------ */

#define THREADS 4
#define ROUNDS 3000
#define USERS 12

static pg_credcache *shared;

/* Each thread puts, gets and drops keys shared with the others; every hit
 * must carry the values derived from its own key (never another key's or
 * a torn mix). */
static void *
hammer(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	int i, bad = 0;

	for (i = 0; i < ROUNDS && !bad; i++) {
		char user[16], tag[32];
		pg_aws_creds out;
		fake f;
		int k;

		k = (int)(rand_r(&seed) % USERS);
		snprintf(user, sizeof(user), "u%d", k);
		snprintf(tag, sizeof(tag), "key%d", k);
		fake_make(&f, tag, EXP, k % 2);
		switch (rand_r(&seed) % 3) {
		case 0:
			if (pg_credcache_put(shared, user, PM, "T", T0, &f.c) !=
			    PG_OK)
				bad = 1;
			break;
		case 1:
			if (pg_credcache_get(shared, user, PM, "T", T0, 0,
					     &out) == PG_OK) {
				if (strcmp(out.access_key_id, f.id) != 0 ||
				    strcmp(out.secret_access_key, f.secret) != 0 ||
				    (k % 2 ? out.session_token == NULL ||
				     strcmp(out.session_token, f.token) != 0 :
				     out.session_token != NULL))
					bad = 1;
				pg_aws_creds_wipe(&out);
			}
			break;
		default:
			(void)pg_credcache_drop(shared, user, PM, "T");
			break;
		}
	}
	return (void *)(uintptr_t)bad;
}

static void
test_threads(void **state)
{
	pthread_t t[THREADS];
	void *bad;
	int i;

	(void)state;
	shared = pg_credcache_new(USERS / 2);	/* evictions happen too */
	assert_non_null(shared);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer,
					(void *)(uintptr_t)(i + 1)), 0);
	for (i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], &bad), 0);
		assert_null(bad);
	}
	assert_true(pg_credcache_count(shared) <= USERS / 2);
	pg_credcache_free(shared);
	shared = NULL;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_copies),
		cmocka_unit_test(test_key_components),
		cmocka_unit_test(test_margin),
		cmocka_unit_test(test_not_after),
		cmocka_unit_test(test_put_refused),
		cmocka_unit_test(test_capacity_bounds),
		cmocka_unit_test(test_replace_and_drop),
		cmocka_unit_test(test_eviction),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
