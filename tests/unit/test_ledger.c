/*
 * test_ledger.c - the issuance ledger (core/ledger.c), file backend.
 *
 * Each test works on a fresh ledger directory under a private temp dir.
 * Times are passed as `now` (the API takes it), so windows and leases are
 * crossed without sleeping.  Sequences of issuances are a table: every
 * step states the verdict it must get, and before every reserve the
 * read-only facts are checked to predict exactly that verdict.
 *
 * The file backend keeps a snapshot (ledger.json) and a journal of the
 * operations since (ledger.journal): the tests that look into or damage
 * the files address the one that holds what they look for.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "../../core/http.h"
#include "../../core/ledger.h"

#define PM "procurement-manager"
#define ADMIN "pmp-administrator"
#define AUDITOR "auditor"		/* conflicts with nothing */
#define WINDOW 10
#define DEADLINE_MS 5000
#define LEASE (DEADLINE_MS / 1000 + PG_LEDGER_LEASE_MARGIN)
#define T0 1700000000LL

static char tmpdir[64];
static unsigned dir_seq;

/* ---- helpers ----------------------------------------------------------- */

static const char *const pm_conflicts[] = { ADMIN };
static const char *const admin_conflicts[] = { PM };

static const char *const *
conflicts_of(const char *role, size_t *n)
{
	if (strcmp(role, PM) == 0) {
		*n = 1;
		return pm_conflicts;
	}
	if (strcmp(role, ADMIN) == 0) {
		*n = 1;
		return admin_conflicts;
	}
	*n = 0;
	return NULL;
}

typedef struct env {
	char dir[128];
	char backend[16];
	pg_config cfg;
	pg_ledger *l;
	/* 1: every facts and last query of the sequences goes through a
	 * handle opened for it (the state read from the files, cold) */
	int fresh_reads;
} env;

/* A config naming a new ledger directory (not created yet). */
static void
env_init(env *e, int64_t window)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "%s/l%u", tmpdir, dir_seq++);
	snprintf(e->backend, sizeof(e->backend), "file");
	e->cfg.ledger.backend = e->backend;
	e->cfg.ledger.path = e->dir;
	e->cfg.separation.window = window;
	e->cfg.daemon.deadline_ms = DEADLINE_MS;
}

static void
env_open(env *e, int64_t window)
{
	char err[512] = "";
	pg_err rc;

	env_init(e, window);
	rc = pg_ledger_open(&e->cfg, &e->l, err, sizeof(err));
	if (rc != PG_OK)
		fail_msg("pg_ledger_open: %s: %s", pg_err_name(rc), err);
}

static void
env_close(env *e)
{
	pg_ledger_close(e->l);
	e->l = NULL;
}

static void
path_in(const env *e, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", e->dir, name);
}

static void
write_file(const char *path, const char *text, size_t len, mode_t mode)
{
	int fd;

	(void)unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Lowercase hex SHA-256 of the file PATH. */
static void
sha256_file(const char *path, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	size_t len;
	char *text = slurp(path, &len);

	assert_int_equal(EVP_Digest(text, len, md, &n, EVP_sha256(), NULL), 1);
	assert_int_equal(n, 32);
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	free(text);
}

/* The number of complete lines of PATH. */
static size_t
count_lines(const char *path)
{
	size_t len, i, n = 0;
	char *text = slurp(path, &len);

	for (i = 0; i < len; i++)
		n += text[i] == '\n';
	free(text);
	return n;
}

/* Append LEN bytes to PATH, in place. */
static void
append_bytes(const char *path, const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

/* Replace PATH by a new file (a new inode) holding TEXT, as an editor
 * that writes a copy and renames it does. */
static void
replace_with(const char *path, const char *text, size_t len)
{
	char tmp[300];

	snprintf(tmp, sizeof(tmp), "%s.edit", path);
	write_file(tmp, text, len, 0600);
	assert_int_equal(rename(tmp, path), 0);
}

/* Is S exactly N lowercase hex digits? */
static int
is_lower_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[n] == '\0';
}

/* The journal's id, from its header (which must be one: an id and the
 * snapshot's hash, nothing else). */
static void
journal_id(const env *e, char id[33])
{
	char path[256];
	json_error_t je;
	json_t *h;
	const char *s;
	size_t len;
	char *text, *nl;

	path_in(e, "ledger.journal", path, sizeof(path));
	text = slurp(path, &len);
	nl = strchr(text, '\n');
	assert_non_null(nl);
	h = json_loadb(text, (size_t)(nl - text), JSON_REJECT_DUPLICATES, &je);
	assert_non_null(h);
	assert_int_equal(json_object_size(h), 2);
	s = json_string_value(json_object_get(h, "id"));
	assert_non_null(s);
	if (!is_lower_hex(s, 32))
		fail_msg("journal id %s is not 32 lowercase hex digits", s);
	memcpy(id, s, 33);
	json_decref(h);
	free(text);
}

/* The "compacted" of the snapshot, which must be format version 2: "" for
 * null. */
static void
snapshot_compacted(const env *e, char out[33])
{
	char path[256];
	json_error_t je;
	json_t *root, *c;

	path_in(e, "ledger.json", path, sizeof(path));
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	assert_non_null(root);
	assert_int_equal(json_integer_value(json_object_get(root, "version")),
			 2);
	c = json_object_get(root, "compacted");
	assert_non_null(c);
	out[0] = '\0';
	if (!json_is_null(c)) {
		assert_true(json_is_string(c));
		assert_true(is_lower_hex(json_string_value(c), 32));
		memcpy(out, json_string_value(c), 33);
	}
	json_decref(root);
}

/* The journal's header must name the snapshot's SHA-256 (and an id). */
static void
assert_header_names_snapshot(const env *e)
{
	char path[256], hash[65], want[160], id[33];
	size_t len;
	char *text;

	journal_id(e, id);
	path_in(e, "ledger.json", path, sizeof(path));
	sha256_file(path, hash);
	snprintf(want, sizeof(want), "{\"id\":\"%s\",\"snapshot\":\"%s\"}\n",
		 id, hash);
	path_in(e, "ledger.journal", path, sizeof(path));
	text = slurp(path, &len);
	if (len < strlen(want) || memcmp(text, want, strlen(want)) != 0)
		fail_msg("journal header is not %s", want);
	free(text);
}

/* The handle for a read of the sequences: E's own, or a new one. */
static pg_ledger *
reader_open(env *e)
{
	pg_ledger *l;
	char err[512] = "";

	if (!e->fresh_reads)
		return e->l;
	if (pg_ledger_open(&e->cfg, &l, err, sizeof(err)) != PG_OK)
		fail_msg("pg_ledger_open: %s", err);
	return l;
}

static void
reader_close(env *e, pg_ledger *l)
{
	if (l != e->l)
		pg_ledger_close(l);
}

/* The verdict the read-only facts predict for a reserve (-1 = allow). */
static int
predict(const pg_ledger_facts *f, const char *user, const char *role,
	int max_uses)
{
	if (f->conflict_role != NULL)
		return PG_R6;
	if (f->bound_user != NULL && (strcmp(f->bound_user, user) != 0 ||
				      strcmp(f->bound_role, role) != 0))
		return PG_R7;
	if (max_uses > 0 && f->uses >= max_uses)
		return PG_R7;
	return -1;
}

/* Reserve, after checking that the facts predict the verdict.  Returns
 * the pg_err; *RES set on PG_OK, *RULE the rule on PG_DENIED. */
static pg_err
reserve(env *e, const char *user, const char *role, const char *ticket,
	int max_uses, int64_t now, pg_reservation **res, int *rule, char *err,
	size_t errlen)
{
	const char *const *c;
	pg_ledger_facts f;
	pg_ledger *rl;
	void *hold = NULL;
	size_t n;
	pg_err rc;
	int want;

	c = conflicts_of(role, &n);
	rl = reader_open(e);
	rc = pg_ledger_facts_get(rl, user, role, ticket, c, n, now, &f,
				 &hold, err, errlen);
	if (rc != PG_OK)
		fail_msg("facts_get: %s: %s", pg_err_name(rc), err);
	want = predict(&f, user, role, max_uses);
	pg_ledger_facts_free(hold);
	reader_close(e, rl);

	*rule = -1;
	rc = pg_ledger_reserve(e->l, user, role, ticket, c, n, max_uses, now,
			       res, rule, err, errlen);
	if (want < 0 && rc != PG_OK)
		fail_msg("facts predicted allow, reserve gave %s: %s",
			 pg_err_name(rc), err);
	if (want >= 0 && (rc != PG_DENIED || *rule != want))
		fail_msg("facts predicted %s, reserve gave %s (rule %d): %s",
			 pg_rule_id(want), pg_err_name(rc), *rule, err);
	if (rc == PG_OK)
		assert_non_null(*res);
	else
		assert_null(*res);
	return rc;
}

/* ---- table-driven sequences ------------------------------------------------ */

enum op {
	ISSUE,		/* reserve + commit */
	HOLD,		/* reserve, keep the reservation in slot `slot` */
	COMMIT,		/* commit slot */
	RELEASE,	/* release slot */
	LAST,		/* last issuance of role to user == when */
	FACTS,		/* facts: conflict_role (role field), bound (ticket
			   field as "user/role" or NULL), uses (max_uses) */
	END
};

struct step {
	enum op op;
	const char *user, *role, *ticket;
	int64_t now;
	int max_uses;
	pg_err want;
	int rule;		/* with PG_DENIED */
	int slot;
	int64_t when;		/* LAST */
	const char *facts_conflict;	/* FACTS */
};

struct sequence {
	const char *name;
	int64_t window;
	struct step steps[12];
};

#define OK PG_OK
#define DENY PG_DENIED
#define ISS(u, r, t, now, mu, want, rule) \
	{ ISSUE, u, r, t, now, mu, want, rule, 0, 0, NULL }
#define HLD(u, r, t, now, mu, want, rule, slot) \
	{ HOLD, u, r, t, now, mu, want, rule, slot, 0, NULL }
#define CMT(slot, want) { COMMIT, NULL, NULL, NULL, 0, 0, want, -1, slot, 0, NULL }
#define REL(slot) { RELEASE, NULL, NULL, NULL, 0, 0, OK, -1, slot, 0, NULL }
#define LST(u, r, when) { LAST, u, r, NULL, 0, 0, OK, -1, 0, when, NULL }
#define FCT(u, r, t, now, conflict, bound, uses) \
	{ FACTS, u, r, t, now, uses, OK, -1, 0, 0, conflict }, \
	{ FACTS, u, r, bound, now, -1, OK, -1, 0, 0, NULL }
#define ENDS { END, NULL, NULL, NULL, 0, 0, OK, -1, 0, 0, NULL }

static const struct sequence sequences[] = {
	{ "R6 within the window, not after it", WINDOW, {
		ISS("alice", PM, "T1", T0, 0, OK, -1),
		ISS("alice", ADMIN, "T2", T0 + 1, 0, DENY, PG_R6),
		ISS("alice", ADMIN, "T2", T0 + WINDOW - 1, 0, DENY, PG_R6),
		ISS("alice", ADMIN, "T2", T0 + WINDOW, 0, OK, -1),
		/* and now the other way round */
		ISS("alice", PM, "T3", T0 + WINDOW + 1, 0, DENY, PG_R6),
		ISS("alice", PM, "T3", T0 + 2 * WINDOW, 0, OK, -1),
		ENDS } },
	{ "R6 is per user; the same role again is no conflict", WINDOW, {
		ISS("alice", PM, "T1", T0, 0, OK, -1),
		ISS("bob", ADMIN, "T2", T0 + 1, 0, OK, -1),
		ISS("alice", PM, "T3", T0 + 2, 0, OK, -1),
		ISS("alice", AUDITOR, "T4", T0 + 3, 0, OK, -1),
		ISS("bob", PM, "T5", T0 + 4, 0, DENY, PG_R6),
		ENDS } },
	{ "R7 a ticket for another user", WINDOW, {
		ISS("alice", PM, "T1", T0, 0, OK, -1),
		ISS("bob", PM, "T1", T0 + 1, 0, DENY, PG_R7),
		/* long after the separation window: still bound */
		ISS("bob", PM, "T1", T0 + 86400, 0, DENY, PG_R7),
		ENDS } },
	{ "R7 a ticket for another role", WINDOW, {
		ISS("alice", PM, "T1", T0, 0, OK, -1),
		ISS("alice", AUDITOR, "T1", T0 + 1, 0, DENY, PG_R7),
		/* both fail: R6 reported first */
		ISS("alice", ADMIN, "T1", T0 + 2, 0, DENY, PG_R6),
		ISS("alice", ADMIN, "T1", T0 + WINDOW + 1, 0, DENY, PG_R7),
		ENDS } },
	{ "same user, role and ticket again", WINDOW, {
		ISS("alice", PM, "T1", T0, 0, OK, -1),
		ISS("alice", PM, "T1", T0 + 1, 0, OK, -1),
		ISS("alice", PM, "T1", T0 + 100000, 0, OK, -1),
		FCT("alice", PM, "T1", T0 + 100001, NULL, "alice/" PM, 3),
		ENDS } },
	{ "max_uses", WINDOW, {
		ISS("alice", PM, "T1", T0, 2, OK, -1),
		ISS("alice", PM, "T1", T0 + 1, 2, OK, -1),
		ISS("alice", PM, "T1", T0 + 2, 2, DENY, PG_R7),
		ISS("alice", PM, "T2", T0 + 3, 2, OK, -1),
		ISS("alice", PM, "T1", T0 + 4, 0, OK, -1),	/* unlimited */
		ENDS } },
	{ "a reservation binds, counts for R6, and release frees it", WINDOW, {
		HLD("alice", PM, "T1", T0, 0, OK, -1, 0),
		ISS("bob", PM, "T1", T0 + 1, 0, DENY, PG_R7),
		ISS("alice", ADMIN, "T2", T0 + 1, 0, DENY, PG_R6),
		FCT("bob", PM, "T1", T0 + 1, NULL, "alice/" PM, 1),
		REL(0),
		FCT("bob", PM, "T1", T0 + 2, NULL, NULL, 0),
		ISS("bob", PM, "T1", T0 + 2, 0, OK, -1),
		ISS("alice", ADMIN, "T2", T0 + 3, 0, OK, -1),
		ENDS } },
	{ "a reservation counts as a use", WINDOW, {
		HLD("alice", PM, "T1", T0, 1, OK, -1, 0),
		ISS("alice", PM, "T1", T0 + 1, 1, DENY, PG_R7),
		CMT(0, OK),
		ISS("alice", PM, "T1", T0 + 2, 1, DENY, PG_R7),
		LST("alice", PM, T0),
		ENDS } },
	{ "a reservation lapses with its lease", WINDOW, {
		HLD("alice", PM, "T1", T0, 0, OK, -1, 0),
		ISS("bob", PM, "T1", T0 + LEASE - 1, 0, DENY, PG_R7),
		ISS("bob", PM, "T1", T0 + LEASE, 0, OK, -1),
		/* committed after its lease: recorded, but not OK */
		CMT(0, PG_ETIMEOUT),
		FCT("carol", PM, "T1", T0 + LEASE + 1, NULL, "bob/" PM, 1),
		LST("alice", PM, T0),
		ENDS } },
	{ "a ticket binding outlives the window, then expires", WINDOW, {
		ISS("alice", PM, "T1", T0, 0, OK, -1),
		ISS("bob", PM, "T1", T0 + PG_LEDGER_TICKET_KEEP - 1, 0, DENY,
		    PG_R7),
		ISS("bob", PM, "T1", T0 + PG_LEDGER_TICKET_KEEP, 0, OK, -1),
		ENDS } },
	{ "last issuance", WINDOW, {
		LST("alice", PM, 0),
		ISS("alice", PM, "T1", T0, 0, OK, -1),
		ISS("alice", PM, "T2", T0 + 5, 0, OK, -1),
		ISS("alice", ADMIN, "T3", T0 + 6, 0, DENY, PG_R6),
		LST("alice", PM, T0 + 5),
		LST("alice", ADMIN, 0),
		LST("bob", PM, 0),
		ENDS } },
	{ "what lapsed is gone, also when time goes back", WINDOW, {
		ISS("alice", PM, "T1", T0, 0, OK, -1),
		/* a write long after: alice's issuance and binding lapse */
		ISS("bob", AUDITOR, "T9", T0 + PG_LEDGER_TICKET_KEEP + 5, 0,
		    OK, -1),
		/* then a clock set back: they are not there any more */
		ISS("carol", PM, "T1", T0 + 2, 0, OK, -1),
		FCT("dave", PM, "T1", T0 + 3, NULL, "carol/" PM, 1),
		FCT("alice", ADMIN, "T5", T0 + 3, NULL, NULL, 0),
		LST("alice", PM, T0),
		ENDS } },
	{ "facts name the latest conflict", WINDOW, {
		ISS("alice", PM, "T1", T0, 0, OK, -1),
		ISS("alice", PM, "T2", T0 + 4, 0, OK, -1),
		FCT("alice", ADMIN, "T3", T0 + 5, PM, NULL, 0),
		FCT("alice", ADMIN, "T1", T0 + 5, PM, "alice/" PM, 1),
		ENDS } },
};

static void
check_facts(env *e, const struct step *s, const struct step *s2,
	    const char *name, size_t k)
{
	const char *const *c;
	pg_ledger_facts f;
	pg_ledger *rl;
	void *hold = NULL;
	char err[512] = "", bound[256] = "";
	size_t n;
	pg_err rc;

	c = conflicts_of(s->role, &n);
	rl = reader_open(e);
	rc = pg_ledger_facts_get(rl, s->user, s->role, s->ticket, c, n,
				 s->now, &f, &hold, err, sizeof(err));
	reader_close(e, rl);
	if (rc != PG_OK)
		fail_msg("%s step %zu: facts: %s", name, k, err);
	if (f.bound_user != NULL)
		snprintf(bound, sizeof(bound), "%s/%s", f.bound_user,
			 f.bound_role);
	if ((s->facts_conflict == NULL) != (f.conflict_role == NULL) ||
	    (s->facts_conflict != NULL &&
	     strcmp(s->facts_conflict, f.conflict_role) != 0) ||
	    strcmp(s2->ticket ? s2->ticket : "", bound) != 0 ||
	    f.uses != s->max_uses)
		fail_msg("%s step %zu: facts conflict=%s bound=%s uses=%d", name,
			 k, f.conflict_role ? f.conflict_role : "-", bound,
			 f.uses);
	pg_ledger_facts_free(hold);
}

/* How a sequence is run: one handle; one handle writing and a new handle
 * for every read (the state replayed from the files each time); two
 * handles taking turns, as two processes (each applies the other's
 * operations from the journal). */
enum seq_mode { SEQ_ONE, SEQ_FRESH_READS, SEQ_TWO_HANDLES, SEQ_MODES };

static void
run_sequence(const struct sequence *q, enum seq_mode mode)
{
	pg_reservation *slots[4] = { NULL };
	pg_ledger *owner[4] = { NULL }, *h[2], *rl;
	pg_reservation *res;
	char err[512];
	int64_t when;
	env e;
	size_t k;
	pg_err rc;
	int rule;

	env_open(&e, q->window);
	e.fresh_reads = mode == SEQ_FRESH_READS;
	h[0] = h[1] = e.l;
	if (mode == SEQ_TWO_HANDLES &&
	    pg_ledger_open(&e.cfg, &h[1], err, sizeof(err)) != PG_OK)
		fail_msg("pg_ledger_open: %s", err);
	for (k = 0; q->steps[k].op != END; k++) {
		const struct step *s = &q->steps[k];

		err[0] = '\0';
		e.l = h[k % 2];
		switch (s->op) {
		case ISSUE:
		case HOLD:
			rc = reserve(&e, s->user, s->role, s->ticket,
				     s->max_uses, s->now, &res, &rule, err,
				     sizeof(err));
			if (rc != s->want || (rc == PG_DENIED && rule != s->rule))
				fail_msg("%s step %zu: %s rule %d (%s), want %s "
					 "rule %d", q->name, k, pg_err_name(rc),
					 rule, err, pg_err_name(s->want),
					 s->rule);
			if (rc == PG_DENIED)
				assert_non_null(strstr(err, s->rule == PG_R6 ?
					"conflicting role" : "ticket"));
			if (rc != PG_OK)
				break;
			if (s->op == HOLD) {
				slots[s->slot] = res;
				owner[s->slot] = e.l;
				break;
			}
			rc = pg_ledger_commit(e.l, res, s->now + 3600,
					      "ASIATESTKEY", err, sizeof(err));
			if (rc != PG_OK)
				fail_msg("%s step %zu: commit: %s", q->name, k,
					 err);
			break;
		case COMMIT:
			rc = pg_ledger_commit(owner[s->slot], slots[s->slot],
					      T0 + 3600,
					      NULL, err, sizeof(err));
			slots[s->slot] = NULL;
			if (rc != s->want)
				fail_msg("%s step %zu: commit %s (%s)", q->name,
					 k, pg_err_name(rc), err);
			break;
		case RELEASE:
			rc = pg_ledger_release(owner[s->slot], slots[s->slot],
					       err, sizeof(err));
			slots[s->slot] = NULL;
			if (rc != PG_OK)
				fail_msg("%s step %zu: release: %s", q->name, k,
					 err);
			break;
		case LAST:
			rl = reader_open(&e);
			rc = pg_ledger_last_issuance(rl, s->user, s->role,
						     &when, err, sizeof(err));
			reader_close(&e, rl);
			if (rc != PG_OK || when != s->when)
				fail_msg("%s step %zu: last %s %lld, want %lld",
					 q->name, k, pg_err_name(rc),
					 (long long)when, (long long)s->when);
			break;
		case FACTS:
			check_facts(&e, s, &q->steps[k + 1], q->name, k);
			k++;
			break;
		case END:
			break;
		}
	}
	for (k = 0; k < 4; k++)
		assert_null(slots[k]);
	e.l = h[0];
	if (h[1] != h[0])
		pg_ledger_close(h[1]);
	env_close(&e);
}

static void
test_sequences(void **state)
{
	size_t i;
	int mode;

	(void)state;
	for (mode = 0; mode < SEQ_MODES; mode++)
		for (i = 0; i < sizeof(sequences) / sizeof(sequences[0]); i++)
			run_sequence(&sequences[i], (enum seq_mode)mode);
}

/* ---- state survives: two handles (as two processes) share the directory -- */

static void
test_two_handles(void **state)
{
	pg_reservation *res;
	pg_ledger *other;
	char err[512];
	env e;
	int rule;

	(void)state;
	env_open(&e, WINDOW);
	assert_int_equal(pg_ledger_open(&e.cfg, &other, err, sizeof(err)),
			 PG_OK);
	assert_int_equal(reserve(&e, "alice", PM, "T1", 0, T0, &res, &rule,
				 err, sizeof(err)), PG_OK);
	assert_int_equal(pg_ledger_commit(e.l, res, T0 + 900, "AKID", err,
					  sizeof(err)), PG_OK);
	assert_int_equal(pg_ledger_reserve(other, "alice", ADMIN, "T2",
					   admin_conflicts, 1, 0, T0 + 1, &res,
					   &rule, err, sizeof(err)), PG_DENIED);
	assert_int_equal(rule, PG_R6);
	assert_null(res);
	pg_ledger_close(other);
	env_close(&e);
}

/* ---- dead and foreign owners ------------------------------------------------ */

/* Rewrite the only reservation in the ledger (its reserve line in the
 * journal): KEY = VALUE. */
static void
edit_reservation(env *e, const char *key, json_t *value)
{
	char path[256], *text, *line, *end, *dump, *out;
	json_error_t je;
	json_t *op, *r;
	size_t len, n = 0;

	path_in(e, "ledger.journal", path, sizeof(path));
	text = slurp(path, &len);
	line = strstr(text, "\n{\"reserve\":");
	assert_non_null(line);
	line++;
	end = strchr(line, '\n');
	assert_non_null(end);
	op = json_loadb(line, (size_t)(end - line), 0, &je);
	assert_non_null(op);
	r = json_object_get(op, "reserve");
	assert_non_null(r);
	assert_int_equal(json_object_set_new(r, key, value), 0);
	dump = json_dumps(op, JSON_COMPACT);
	assert_non_null(dump);
	out = malloc(len + strlen(dump) + 1);
	assert_non_null(out);
	memcpy(out, text, (size_t)(line - text));
	n = (size_t)(line - text);
	memcpy(out + n, dump, strlen(dump));
	n += strlen(dump);
	memcpy(out + n, end, len - (size_t)(end - text));
	n += len - (size_t)(end - text);
	replace_with(path, out, n);
	free(out);
	free(dump);
	json_decref(op);
	free(text);
}

static pid_t
dead_pid(void)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return pid;
}

struct owner_case {
	const char *what;
	const char *key;
	int blocks;		/* the reservation still counts */
};

static void
test_owner_gone(void **state)
{
	static const struct owner_case cases[] = {
		{ "alive (ourselves)", NULL, 1 },
		{ "pid gone", "pid", 0 },
		{ "pid reused (other start time)", "start", 0 },
		{ "before a reboot (other boot id)", "boot_id", 0 },
		{ "other pid namespace: only the lease", "pidns", 1 },
	};
	pg_reservation *held, *res;
	pg_ledger_facts f;
	void *hold;
	char err[512];
	size_t i;
	int rule;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct owner_case *c = &cases[i];
		env e;

		env_open(&e, WINDOW);
		assert_int_equal(pg_ledger_reserve(e.l, "alice", PM, "T1",
						   pm_conflicts, 1, 0, T0,
						   &held, &rule, err,
						   sizeof(err)), PG_OK);
		if (c->key == NULL)
			;
		else if (strcmp(c->key, "pid") == 0)
			edit_reservation(&e, "pid", json_integer(dead_pid()));
		else if (strcmp(c->key, "start") == 0)
			edit_reservation(&e, "start", json_integer(1));
		else if (strcmp(c->key, "boot_id") == 0)
			edit_reservation(&e, "boot_id",
					 json_string("00000000-dead-beef"));
		else
			edit_reservation(&e, "pidns", json_integer(1));
		/* what the read-only view sees, before any write purges */
		assert_int_equal(pg_ledger_facts_get(e.l, "bob", PM, "T1",
						     pm_conflicts, 1, T0 + 1,
						     &f, &hold, err,
						     sizeof(err)), PG_OK);
		if ((f.bound_user != NULL) != c->blocks)
			fail_msg("%s: facts bound %s", c->what,
				 f.bound_user ? f.bound_user : "-");
		pg_ledger_facts_free(hold);
		assert_int_equal(pg_ledger_facts_get(e.l, "alice", ADMIN, "T2",
						     admin_conflicts, 1, T0 + 1,
						     &f, &hold, err,
						     sizeof(err)), PG_OK);
		if ((f.conflict_role != NULL) != c->blocks)
			fail_msg("%s: facts conflict %s", c->what,
				 f.conflict_role ? f.conflict_role : "-");
		pg_ledger_facts_free(hold);
		/* R7 (ticket) and R6 (conflicting role) */
		rule = -1;
		if (reserve(&e, "bob", PM, "T1", 0, T0 + 1, &res, &rule, err,
			    sizeof(err)) == PG_OK)
			assert_int_equal(pg_ledger_release(e.l, res, err,
							   sizeof(err)), PG_OK);
		if ((rule == PG_R7) != c->blocks)
			fail_msg("%s: rule %d", c->what, rule);
		rule = -1;
		if (reserve(&e, "alice", ADMIN, "T2", 0, T0 + 1, &res, &rule,
			    err, sizeof(err)) == PG_OK)
			assert_int_equal(pg_ledger_release(e.l, res, err,
							   sizeof(err)), PG_OK);
		if ((rule == PG_R6) != c->blocks)
			fail_msg("%s: rule %d", c->what, rule);
		/* releasing a reservation that was voided is fine */
		assert_int_equal(pg_ledger_release(e.l, held, err,
						   sizeof(err)), PG_OK);
		env_close(&e);
	}
}

/* A child reserves and exits without commit or release (a crash).  Its
 * handles are kept reachable, as a crashed process does not free them. */
static pg_ledger *child_ledger;
static pg_reservation *child_res;

static void
test_crashed_child(void **state)
{
	pg_reservation *res;
	char err[512];
	int status, rule;
	pid_t pid;
	env e;

	(void)state;
	env_open(&e, WINDOW);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (pg_ledger_open(&e.cfg, &child_ledger, err, sizeof(err)) !=
		    PG_OK ||
		    pg_ledger_reserve(child_ledger, "alice", PM, "T1",
				      pm_conflicts, 1, 0, T0, &child_res, &rule,
				      err, sizeof(err)) != PG_OK)
			_exit(1);
		_exit(0);	/* neither commit nor release */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(reserve(&e, "bob", PM, "T1", 0, T0 + 1, &res, &rule,
				 err, sizeof(err)), PG_OK);
	assert_int_equal(pg_ledger_commit(e.l, res, T0 + 900, NULL, err,
					  sizeof(err)), PG_OK);
	env_close(&e);
}

/* ---- threads of one process ---------------------------------------------------- */

#define NTHREADS 8

struct racer {
	env *e;
	int i;
	pg_err rc;
	int rule;
};

static void *
race_main(void *arg)
{
	struct racer *r = arg;
	const char *role = r->i % 2 ? ADMIN : PM;
	const char *const *c = r->i % 2 ? admin_conflicts : pm_conflicts;
	pg_reservation *res = NULL;
	char err[512], ticket[16];

	snprintf(ticket, sizeof(ticket), "T%d", r->i);
	r->rc = pg_ledger_reserve(r->e->l, "alice", role, ticket, c, 1, 0, T0,
				  &res, &r->rule, err, sizeof(err));
	if (r->rc == PG_OK)
		r->rc = pg_ledger_commit(r->e->l, res, T0 + 900, NULL, err,
					 sizeof(err));
	return NULL;
}

static void
test_threads(void **state)
{
	struct racer r[NTHREADS];
	pthread_t th[NTHREADS];
	int ok[2] = { 0, 0 }, round, i;
	env e;

	(void)state;
	for (round = 0; round < 5; round++) {
		env_open(&e, WINDOW);
		for (i = 0; i < NTHREADS; i++) {
			r[i].e = &e;
			r[i].i = i;
			assert_int_equal(pthread_create(&th[i], NULL, race_main,
							&r[i]), 0);
		}
		ok[0] = ok[1] = 0;
		for (i = 0; i < NTHREADS; i++) {
			assert_int_equal(pthread_join(th[i], NULL), 0);
			if (r[i].rc == PG_OK)
				ok[i % 2]++;
			else if (r[i].rc != PG_DENIED || r[i].rule != PG_R6)
				fail_msg("thread %d: %s", i,
					 pg_err_name(r[i].rc));
		}
		/* every one of the first role that got in, none of the other */
		assert_true((ok[0] == NTHREADS / 2 && ok[1] == 0) ||
			    (ok[1] == NTHREADS / 2 && ok[0] == 0));
		env_close(&e);
	}
}

/* ---- a damaged ledger refuses, and stays as it was ---------------------------- */

struct corrupt_case {
	const char *what;
	const char *text;
	size_t len;		/* 0 = strlen(text) */
};

#define GOOD_RES "{\"id\":\"ab\",\"user\":\"u\",\"role\":\"r\",\"ticket\":\"t\"," \
	"\"ts\":1,\"expires\":2,\"pid\":1,\"start\":0,\"boot_id\":\"\",\"pidns\":0}"
#define DOC(issued, tickets, last, res) \
	"{\"version\":1,\"issued\":" issued ",\"tickets\":" tickets \
	",\"last\":" last ",\"reservations\":" res "}"
/* The same in format version 2, naming COMPACTED (JSON text). */
#define DOC2(compacted, issued, tickets, last, res) \
	"{\"compacted\":" compacted ",\"issued\":" issued ",\"last\":" last \
	",\"reservations\":" res ",\"tickets\":" tickets ",\"version\":2}"
#define JID_A "\"0123456789abcdef0123456789abcdef\""

static const struct corrupt_case corrupt_cases[] = {
	{ "garbage", "this is not json", 0 },
	{ "empty file", "", 0 },
	{ "binary", "\x00\x01\x02\xff", 4 },
	{ "truncated", "{\"version\":1,\"issued\":[{\"user\":\"alice\",\"ro", 0 },
	{ "trailing garbage", DOC("[]", "{}", "[]", "[]") "x", 0 },
	{ "not an object", "[1,2,3]", 0 },
	{ "version 2 without compacted", "{\"version\":2,\"issued\":[],"
	  "\"tickets\":{},\"last\":[],\"reservations\":[]}", 0 },
	{ "version 1 with compacted", "{\"version\":1,\"compacted\":null,"
	  "\"issued\":[],\"tickets\":{},\"last\":[],\"reservations\":[]}",
	  0 },
	{ "version 3", "{\"version\":3,\"compacted\":null,\"issued\":[],"
	  "\"tickets\":{},\"last\":[],\"reservations\":[]}", 0 },
	{ "version 0", "{\"version\":0,\"issued\":[],\"tickets\":{},"
	  "\"last\":[],\"reservations\":[]}", 0 },
	{ "no version", "{\"issued\":[],\"tickets\":{},\"last\":[],"
	  "\"reservations\":[]}", 0 },
	{ "compacted a number", DOC2("7", "[]", "{}", "[]", "[]"), 0 },
	{ "compacted empty", DOC2("\"\"", "[]", "{}", "[]", "[]"), 0 },
	{ "compacted short", DOC2("\"0123456789abcdef0123456789abcde\"", "[]",
	  "{}", "[]", "[]"), 0 },
	{ "compacted long", DOC2("\"0123456789abcdef0123456789abcdef0\"",
	  "[]", "{}", "[]", "[]"), 0 },
	{ "compacted uppercase", DOC2("\"0123456789ABCDEF0123456789abcdef\"",
	  "[]", "{}", "[]", "[]"), 0 },
	{ "compacted with a NUL", DOC2("\"0123456789abcdef0123456789abcdef"
	  "\\u0000\"", "[]", "{}", "[]", "[]"), 0 },
	{ "compacted an object", DOC2("{}", "[]", "{}", "[]", "[]"), 0 },
	{ "version 2 with extra key", "{\"version\":2,\"compacted\":null,"
	  "\"issued\":[],\"tickets\":{},\"last\":[],\"reservations\":[],"
	  "\"x\":1}", 0 },
	{ "version 2 record malformed", DOC2("null", "[{\"user\":\"a\"}]",
	  "{}", "[]", "[]"), 0 },
	{ "version as string", "{\"version\":\"1\",\"issued\":[],\"tickets\":{},"
	  "\"last\":[],\"reservations\":[]}", 0 },
	{ "missing key", "{\"version\":1,\"issued\":[],\"tickets\":{},"
	  "\"last\":[]}", 0 },
	{ "extra key", "{\"version\":1,\"issued\":[],\"tickets\":{},\"last\":[],"
	  "\"reservations\":[],\"x\":1}", 0 },
	{ "duplicate key", "{\"version\":1,\"version\":1,\"issued\":[],"
	  "\"tickets\":{},\"last\":[],\"reservations\":[]}", 0 },
	{ "issued not an array", DOC("{}", "{}", "[]", "[]"), 0 },
	{ "tickets not an object", DOC("[]", "[]", "[]", "[]"), 0 },
	{ "ts as string", DOC("[{\"user\":\"a\",\"role\":\"r\",\"ticket\":\"t\","
	  "\"ts\":\"1\",\"expiration\":2,\"access_key_id\":\"\"}]", "{}", "[]",
	  "[]"), 0 },
	{ "ts as real", DOC("[{\"user\":\"a\",\"role\":\"r\",\"ticket\":\"t\","
	  "\"ts\":1.5,\"expiration\":2,\"access_key_id\":\"\"}]", "{}", "[]",
	  "[]"), 0 },
	{ "negative ts", DOC("[{\"user\":\"a\",\"role\":\"r\",\"ticket\":\"t\","
	  "\"ts\":-1,\"expiration\":2,\"access_key_id\":\"\"}]", "{}", "[]",
	  "[]"), 0 },
	{ "user null", DOC("[{\"user\":null,\"role\":\"r\",\"ticket\":\"t\","
	  "\"ts\":1,\"expiration\":2,\"access_key_id\":\"\"}]", "{}", "[]",
	  "[]"), 0 },
	{ "empty user", DOC("[{\"user\":\"\",\"role\":\"r\",\"ticket\":\"t\","
	  "\"ts\":1,\"expiration\":2,\"access_key_id\":\"\"}]", "{}", "[]",
	  "[]"), 0 },
	{ "issued entry missing a key", DOC("[{\"user\":\"a\",\"role\":\"r\","
	  "\"ts\":1,\"expiration\":2,\"access_key_id\":\"\"}]", "{}", "[]",
	  "[]"), 0 },
	{ "binding with uses 0", DOC("[]", "{\"T1\":{\"user\":\"a\",\"role\":"
	  "\"r\",\"first\":1,\"last\":1,\"uses\":0}}", "[]", "[]"), 0 },
	{ "binding not an object", DOC("[]", "{\"T1\":\"alice\"}", "[]", "[]"),
	  0 },
	{ "last entry with extra key", DOC("[]", "{}", "[{\"user\":\"a\","
	  "\"role\":\"r\",\"ts\":1,\"x\":0}]", "[]"), 0 },
	{ "reservation with pid 0", DOC("[]", "{}", "[]", "[{\"id\":\"ab\","
	  "\"user\":\"u\",\"role\":\"r\",\"ticket\":\"t\",\"ts\":1,"
	  "\"expires\":2,\"pid\":0,\"start\":0,\"boot_id\":\"\",\"pidns\":0}]"),
	  0 },
	{ "reservation without id", DOC("[]", "{}", "[]", "[{\"user\":\"u\","
	  "\"role\":\"r\",\"ticket\":\"t\",\"ts\":1,\"expires\":2,\"pid\":1,"
	  "\"start\":0,\"boot_id\":\"\",\"pidns\":0}]"), 0 },
	{ "NUL escape in a string", DOC("[{\"user\":\"a\\u0000b\",\"role\":"
	  "\"r\",\"ticket\":\"t\",\"ts\":1,\"expiration\":2,"
	  "\"access_key_id\":\"\"}]", "{}", "[]", "[]"), 0 },
};

static void
test_corrupt(void **state)
{
	static const char *const goods[] = {
		DOC("[]", "{}", "[]", "[" GOOD_RES "]"),
		DOC2("null", "[]", "{}", "[]", "[" GOOD_RES "]"),
		DOC2(JID_A, "[]", "{}", "[]", "[" GOOD_RES "]"),
	};
	pg_reservation *res;
	pg_ledger_facts f;
	void *hold;
	char path[256], err[512];
	size_t i, len, before;
	int64_t when;
	char *after;
	pg_err rc;
	int rule;
	env e;

	(void)state;
	/* the well-formed documents the cases are variants of are accepted
	 * (version 1, version 2 compacting nothing or a journal) */
	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		env_open(&e, WINDOW);
		path_in(&e, "ledger.json", path, sizeof(path));
		write_file(path, goods[i], strlen(goods[i]), 0600);
		rc = pg_ledger_facts_get(e.l, "alice", PM, "T1", pm_conflicts,
					 1, T0, &f, &hold, err, sizeof(err));
		if (rc != PG_OK)
			fail_msg("good document %zu: %s: %s", i,
				 pg_err_name(rc), err);
		pg_ledger_facts_free(hold);
		env_close(&e);
	}

	for (i = 0; i < sizeof(corrupt_cases) / sizeof(corrupt_cases[0]);
	     i++) {
		const struct corrupt_case *c = &corrupt_cases[i];

		before = c->len ? c->len : strlen(c->text);
		env_open(&e, WINDOW);
		path_in(&e, "ledger.json", path, sizeof(path));
		write_file(path, c->text, before, 0600);

		err[0] = '\0';
		hold = (void *)1;
		rc = pg_ledger_facts_get(e.l, "alice", PM, "T1", pm_conflicts,
					 1, T0, &f, &hold, err, sizeof(err));
		if (rc != PG_EPROTO || strstr(err, "damaged") == NULL)
			fail_msg("%s: facts %s: %s", c->what, pg_err_name(rc),
				 err);
		assert_null(hold);
		assert_null(f.conflict_role);
		assert_null(f.bound_user);

		res = (pg_reservation *)1;
		rule = -1;
		rc = pg_ledger_reserve(e.l, "alice", PM, "T1", pm_conflicts, 1,
				       0, T0, &res, &rule, err, sizeof(err));
		if (rc != PG_EPROTO || rule != PG_R9 || res != NULL)
			fail_msg("%s: reserve %s rule %d", c->what,
				 pg_err_name(rc), rule);
		assert_int_equal(pg_ledger_last_issuance(e.l, "alice", PM,
							 &when, err,
							 sizeof(err)),
				 PG_EPROTO);

		/* never reset: the file is as it was */
		after = slurp(path, &len);
		if (len != before || memcmp(after, c->text, len) != 0)
			fail_msg("%s: the damaged ledger was rewritten",
				 c->what);
		free(after);
		env_close(&e);
	}
}

/* ---- the cached state ------------------------------------------------------- */

/* R6 facts for bob asking ADMIN at NOW through L: the conflicting role
 * seen, or NULL; *rc the call's result. */
static const char *
bob_conflict(pg_ledger *l, int64_t now, pg_err *rc, char *err, size_t errlen)
{
	static char role[64];
	pg_ledger_facts f;
	void *hold = NULL;

	role[0] = '\0';
	*rc = pg_ledger_facts_get(l, "bob", ADMIN, "T9", admin_conflicts, 1,
				  now, &f, &hold, err, errlen);
	if (*rc == PG_OK && f.conflict_role != NULL)
		snprintf(role, sizeof(role), "%s", f.conflict_role);
	pg_ledger_facts_free(hold);
	return role[0] ? role : NULL;
}

/* Issue ROLE to USER with TICKET at NOW through L. */
static void
issue_with(pg_ledger *l, const char *user, const char *role,
	   const char *ticket, int64_t now)
{
	const char *const *c;
	pg_reservation *res = NULL;
	char err[512] = "";
	size_t n;
	int rule;

	c = conflicts_of(role, &n);
	if (pg_ledger_reserve(l, user, role, ticket, c, n, 0, now, &res, &rule,
			      err, sizeof(err)) != PG_OK)
		fail_msg("reserve %s %s: %s", user, role, err);
	if (pg_ledger_commit(l, res, now + 900, "AKID", err, sizeof(err)) !=
	    PG_OK)
		fail_msg("commit %s %s: %s", user, role, err);
}

/*
 * A handle keeps the state it read or wrote, and must notice every change
 * another writer (another process: here another handle) or an
 * administrator makes to the file, never answering from a stale copy.
 */
static void
test_cache(void **state)
{
	char path[256], jpath[256], link[256], tmp[256], err[512];
	struct timespec times[2];
	pg_ledger *other;
	size_t len;
	char *text, *p;
	pg_err rc;
	env e;

	(void)state;
	env_open(&e, WINDOW);
	path_in(&e, "ledger.json", path, sizeof(path));
	path_in(&e, "ledger.journal", jpath, sizeof(jpath));
	assert_int_equal(pg_ledger_open(&e.cfg, &other, err, sizeof(err)),
			 PG_OK);

	/* cached after a read: no conflict for bob */
	issue_with(e.l, "alice", PM, "T1", T0);
	assert_null(bob_conflict(e.l, T0 + 1, &rc, err, sizeof(err)));
	assert_int_equal(rc, PG_OK);

	/* another writer appends to the journal: seen at once */
	issue_with(other, "bob", PM, "T2", T0 + 1);
	assert_string_equal(bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err)),
			    PM);

	/* an edit in place of the journal with the same size (bob -> bxb,
	 * in his reserve and commit lines) and an older mtime: seen */
	text = slurp(jpath, &len);
	for (p = text; (p = strstr(p, "\"user\":\"bob\"")) != NULL; p++)
		p[9] = 'x';
	{
		int fd = open(jpath, O_WRONLY | O_CLOEXEC);

		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, text, len, 0), (ssize_t)len);
		assert_int_equal(close(fd), 0);
	}
	free(text);
	times[0].tv_sec = times[1].tv_sec = T0;
	times[0].tv_nsec = times[1].tv_nsec = 0;
	assert_int_equal(utimensat(AT_FDCWD, jpath, times, 0), 0);
	assert_null(bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err)));
	assert_int_equal(rc, PG_OK);

	/* made group-writable: refused, not served from the cache; the
	 * snapshot and the journal alike */
	assert_int_equal(chmod(jpath, 0620), 0);
	(void)bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err));
	assert_int_equal(rc, PG_ECONFIG);
	assert_int_equal(chmod(jpath, 0600), 0);
	assert_null(bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err)));
	assert_int_equal(rc, PG_OK);
	assert_int_equal(chmod(path, 0620), 0);
	(void)bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err));
	assert_int_equal(rc, PG_ECONFIG);
	assert_int_equal(chmod(path, 0600), 0);
	assert_null(bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err)));
	assert_int_equal(rc, PG_OK);

	/* the journal grows by another writer's operations: seen */
	issue_with(other, "bob", PM, "T3", T0 + 2);
	assert_string_equal(bob_conflict(e.l, T0 + 3, &rc, err, sizeof(err)),
			    PM);

	/* replaced by a damaged file: refused */
	path_in(&e, "damaged", tmp, sizeof(tmp));
	write_file(tmp, "{\"version\": 1", 13, 0600);
	assert_int_equal(rename(tmp, path), 0);
	(void)bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err));
	assert_int_equal(rc, PG_EPROTO);
	(void)bob_conflict(other, T0 + 2, &rc, err, sizeof(err));
	assert_int_equal(rc, PG_EPROTO);

	/* replaced by a symbolic link to a good state: refused */
	path_in(&e, "good.json", link, sizeof(link));
	{
		const char *const good = DOC("[]", "{}", "[]", "[]");

		write_file(link, good, strlen(good), 0600);
	}
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink(link, path), 0);
	(void)bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err));
	assert_int_equal(rc, PG_ECONFIG);

	/* removed while the journal is there: refused, by the handle that
	 * had it cached and by another, and neither file is written */
	assert_int_equal(unlink(path), 0);
	text = slurp(jpath, &len);
	(void)bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err));
	assert_int_equal(rc, PG_EPROTO);
	assert_non_null(strstr(err, "ledger.json is missing"));
	(void)bob_conflict(other, T0 + 2, &rc, err, sizeof(err));
	assert_int_equal(rc, PG_EPROTO);
	{
		pg_reservation *res = NULL;
		int rule = -1;

		assert_int_equal(pg_ledger_reserve(e.l, "bob", PM, "T1",
						   pm_conflicts, 1, 0, T0 + 2,
						   &res, &rule, err,
						   sizeof(err)), PG_EPROTO);
		assert_null(res);
		assert_int_equal(rule, PG_R9);
	}
	assert_int_equal(access(path, F_OK), -1);
	{
		size_t len2;
		char *text2 = slurp(jpath, &len2);

		assert_true(len == len2 && memcmp(text, text2, len) == 0);
		free(text2);
	}
	free(text);

	/* both removed (deliberately): an empty ledger */
	assert_int_equal(unlink(jpath), 0);
	assert_null(bob_conflict(e.l, T0 + 2, &rc, err, sizeof(err)));
	assert_int_equal(rc, PG_OK);

	pg_ledger_close(other);
	env_close(&e);
}

/* ---- files and directories that are not what they must be ---------------------- */

enum fs_case { LEDGER_SYMLINK, LEDGER_DIR, LEDGER_GROUP_WRITABLE,
	       LEDGER_FOREIGN_OWNER, LOCK_SYMLINK, DIR_GROUP_WRITABLE,
	       DIR_OTHER_WRITABLE, FS_COUNT };

static const char *const fs_names[FS_COUNT] = {
	"ledger.json a symbolic link", "ledger.json a directory",
	"ledger.json group-writable", "ledger.json owned by another uid",
	"ledger.lock a symbolic link", "directory group-writable",
	"directory other-writable",
};

static void
test_bad_files(void **state)
{
	const char *const good = DOC("[]", "{}", "[]", "[]");
	pg_reservation *res;
	pg_ledger_facts f;
	void *hold;
	char path[256], target[256], err[512];
	int64_t when;
	pg_err rc;
	int c, rule;
	env e;

	(void)state;
	for (c = 0; c < FS_COUNT; c++) {
		env_open(&e, WINDOW);
		path_in(&e, "ledger.json", path, sizeof(path));
		snprintf(target, sizeof(target), "%s/elsewhere.json", tmpdir);
		write_file(target, good, strlen(good), 0600);
		switch (c) {
		case LEDGER_SYMLINK:
			assert_int_equal(symlink(target, path), 0);
			break;
		case LEDGER_DIR:
			assert_int_equal(mkdir(path, 0700), 0);
			break;
		case LEDGER_GROUP_WRITABLE:
			write_file(path, good, strlen(good), 0620);
			break;
		case LEDGER_FOREIGN_OWNER:
			write_file(path, good, strlen(good), 0600);
			if (geteuid() != 0) {
				/* only root can give a file away */
				env_close(&e);
				continue;
			}
			assert_int_equal(chown(path, 54321, 54321), 0);
			break;
		case LOCK_SYMLINK:
			path_in(&e, "ledger.lock", path, sizeof(path));
			assert_int_equal(unlink(path), 0);
			assert_int_equal(symlink(target, path), 0);
			break;
		case DIR_GROUP_WRITABLE:
			assert_int_equal(chmod(e.dir, 0770), 0);
			break;
		case DIR_OTHER_WRITABLE:
			assert_int_equal(chmod(e.dir, 0703), 0);
			break;
		}
		rc = pg_ledger_facts_get(e.l, "alice", PM, "T1", pm_conflicts,
					 1, T0, &f, &hold, err, sizeof(err));
		if (c != LOCK_SYMLINK && (rc == PG_OK || rc == PG_DENIED))
			fail_msg("%s: facts %s", fs_names[c], pg_err_name(rc));
		if (rc == PG_OK)
			pg_ledger_facts_free(hold);
		rc = pg_ledger_reserve(e.l, "alice", PM, "T1", pm_conflicts, 1,
				       0, T0, &res, &rule, err, sizeof(err));
		if (rc == PG_OK || rc == PG_DENIED || rule != PG_R9)
			fail_msg("%s: reserve %s", fs_names[c],
				 pg_err_name(rc));
		if (c != LOCK_SYMLINK)
			assert_int_not_equal(pg_ledger_last_issuance(
				e.l, "alice", PM, &when, err, sizeof(err)),
				PG_OK);
		env_close(&e);

		/* and a new handle refuses to open on a bad directory */
		if (c == DIR_GROUP_WRITABLE || c == DIR_OTHER_WRITABLE ||
		    c == LOCK_SYMLINK) {
			assert_int_equal(pg_ledger_open(&e.cfg, &e.l, err,
							sizeof(err)),
					 PG_ECONFIG);
			assert_null(e.l);
		}
	}
}

static void
test_open(void **state)
{
	char path[256], err[512];
	struct stat st;
	pg_ledger *l;
	env e;

	(void)state;
	/* creates the directory 0700 and the lock file */
	env_open(&e, WINDOW);
	assert_int_equal(lstat(e.dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	path_in(&e, "ledger.lock", path, sizeof(path));
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	env_close(&e);

	/* an unknown backend */
	env_init(&e, WINDOW);
	snprintf(e.backend, sizeof(e.backend), "sqlite");
	assert_int_equal(pg_ledger_open(&e.cfg, &l, err, sizeof(err)),
			 PG_ECONFIG);
	assert_non_null(strstr(err, "not supported"));
	assert_null(l);

	/* the directory is a symbolic link */
	env_init(&e, WINDOW);
	assert_int_equal(symlink(tmpdir, e.dir), 0);
	assert_int_equal(pg_ledger_open(&e.cfg, &l, err, sizeof(err)),
			 PG_ECONFIG);

	/* the path is a file */
	env_init(&e, WINDOW);
	write_file(e.dir, "x", 1, 0600);
	assert_int_equal(pg_ledger_open(&e.cfg, &l, err, sizeof(err)),
			 PG_ECONFIG);

	/* its parent does not exist */
	env_init(&e, WINDOW);
	snprintf(e.dir, sizeof(e.dir), "%s/missing/ledger", tmpdir);
	assert_int_equal(pg_ledger_open(&e.cfg, &l, err, sizeof(err)),
			 PG_ECONFIG);

	/* no window */
	env_init(&e, 0);
	assert_int_equal(pg_ledger_open(&e.cfg, &l, err, sizeof(err)),
			 PG_ECONFIG);
	pg_ledger_close(NULL);
}

/* The etcd backend: what pg_ledger_open checks (it contacts nobody), and
 * an unreachable cluster refuses every operation (R9), never allows. */
static void
test_etcd_open(void **state)
{
	static const struct {
		const char *name, *endpoint, *prefix, *cert, *key;
		int plaintext, window;
		const char *needle;
	} bad[] = {
		{ "no endpoints", NULL, "/p/", NULL, NULL, 0, WINDOW,
		  "endpoints" },
		{ "plaintext", "http://127.0.0.1:1", "/p/", NULL, NULL, 0,
		  WINDOW, "is not https://" },
		{ "not a URL", "127.0.0.1:1", "/p/", NULL, NULL, 1, WINDOW,
		  "is not https://" },
		{ "no prefix", "https://127.0.0.1:1", NULL, NULL, NULL, 0,
		  WINDOW, "prefix" },
		{ "prefix without '/'", "https://127.0.0.1:1", "/p", NULL,
		  NULL, 0, WINDOW, "prefix" },
		{ "no window", "https://127.0.0.1:1", "/p/", NULL, NULL, 0, 0,
		  "window" },
		{ "cert without key", "https://127.0.0.1:1", "/p/", "/c.pem",
		  NULL, 0, WINDOW, "go together" },
		{ "missing key file", "https://127.0.0.1:1", "/p/", "/c.pem",
		  "/nonexistent/k.pem", 0, WINDOW, "key_file" },
	};
	const char *conflicts[] = { ADMIN };
	char *eps[2] = { NULL, NULL }, err[512], path[256];
	pg_ledger_facts f;
	pg_reservation *res;
	pg_ledger *l;
	int64_t when;
	void *hold;
	size_t i;
	int rule;
	env e;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		env_init(&e, bad[i].window);
		snprintf(e.backend, sizeof(e.backend), "etcd");
		eps[0] = (char *)bad[i].endpoint;
		e.cfg.ledger.endpoints.v = eps;
		e.cfg.ledger.endpoints.n = bad[i].endpoint ? 1 : 0;
		e.cfg.ledger.prefix = (char *)bad[i].prefix;
		e.cfg.ledger.cert_file = (char *)bad[i].cert;
		e.cfg.ledger.key_file = (char *)bad[i].key;
		e.cfg.ledger.allow_plaintext = bad[i].plaintext;
		err[0] = '\0';
		if (pg_ledger_open(&e.cfg, &l, err, sizeof(err)) != PG_ECONFIG ||
		    l != NULL || strstr(err, bad[i].needle) == NULL)
			fail_msg("%s: '%s'", bad[i].name, err);
	}

	/* a key file others may read, a password file without a user */
	env_init(&e, WINDOW);
	snprintf(e.backend, sizeof(e.backend), "etcd");
	eps[0] = "https://127.0.0.1:1";
	e.cfg.ledger.endpoints.v = eps;
	e.cfg.ledger.endpoints.n = 1;
	e.cfg.ledger.prefix = "/p/";
	snprintf(path, sizeof(path), "%s/etcd-key.pem", tmpdir);
	write_file(path, "key", 3, 0644);
	e.cfg.ledger.cert_file = "/c.pem";
	e.cfg.ledger.key_file = path;
	assert_int_equal(pg_ledger_open(&e.cfg, &l, err, sizeof(err)),
			 PG_ECONFIG);
	e.cfg.ledger.cert_file = e.cfg.ledger.key_file = NULL;
	snprintf(path, sizeof(path), "%s/etcd-pw", tmpdir);
	write_file(path, ":nouser\n", 8, 0600);
	e.cfg.ledger.password_file = path;
	assert_int_equal(pg_ledger_open(&e.cfg, &l, err, sizeof(err)),
			 PG_ECONFIG);
	assert_non_null(strstr(err, "user:password"));
	assert_null(strstr(err, "nouser"));

	/* nothing listens: every operation refuses, none allows */
	snprintf(path, sizeof(path), "%s/etcd-pw2", tmpdir);
	write_file(path, "pmpgate:secret\n", 15, 0600);
	e.cfg.ledger.password_file = path;
	eps[0] = "http://127.0.0.1:1";
	e.cfg.ledger.allow_plaintext = 1;
	e.cfg.ledger.timeout_ms = 1000;
	assert_int_equal(pg_ledger_open(&e.cfg, &l, err, sizeof(err)), PG_OK);
	rule = -1;
	assert_int_equal(pg_ledger_reserve(l, "alice", PM, "T1", conflicts, 1,
					   0, T0, &res, &rule, err,
					   sizeof(err)), PG_EUNAVAIL);
	assert_null(res);
	assert_int_equal(rule, PG_R9);
	assert_null(strstr(err, "secret"));
	assert_int_equal(pg_ledger_facts_get(l, "alice", PM, "T1", conflicts,
					     1, T0, &f, &hold, err,
					     sizeof(err)), PG_EUNAVAIL);
	assert_null(hold);
	assert_null(f.bound_user);
	assert_int_equal(pg_ledger_last_issuance(l, "alice", PM, &when, err,
						 sizeof(err)), PG_EUNAVAIL);
	assert_int_equal(when, 0);
	/* arguments are checked before anything is sent */
	assert_int_equal(pg_ledger_reserve(l, "", PM, "T1", conflicts, 1, 0,
					   T0, &res, &rule, err, sizeof(err)),
			 PG_EINVAL);
	/* no ticket, no conflicts: nothing to read, still asked (the
	 * answer says whether the ledger works) */
	assert_int_equal(pg_ledger_facts_get(l, "alice", PM, NULL, NULL, 0,
					     T0, &f, &hold, err, sizeof(err)),
			 PG_EUNAVAIL);
	assert_null(hold);
	pg_ledger_close(l);
	pg_http_global_cleanup();
}

/*
 * The first write leaves an empty snapshot (format version 2, compacting
 * no journal) and a journal (both 0600, no temp file; leftover temp files
 * of a crashed writer do not get in the way): a header naming the
 * snapshot's SHA-256 and the journal's id, then one line per operation,
 * as ledger.h describes them.
 */
static void
test_write(void **state)
{
	pg_reservation *res;
	char path[256], jpath[256], tmp[256], jtmp[256], err[512];
	char *text, *line, *nl;
	struct stat st;
	json_error_t je;
	json_t *root, *op;
	size_t len, k;
	int rule;
	env e;

	(void)state;
	env_open(&e, WINDOW);
	path_in(&e, "ledger.json.tmp", tmp, sizeof(tmp));
	path_in(&e, "ledger.journal.tmp", jtmp, sizeof(jtmp));
	write_file(tmp, "half a ledg", 11, 0600);
	write_file(jtmp, "{\"snap", 6, 0600);
	assert_int_equal(reserve(&e, "alice", PM, "T1", 0, T0, &res, &rule,
				 err, sizeof(err)), PG_OK);
	assert_int_equal(pg_ledger_commit(e.l, res, T0 + 900, "AKIDEXAMPLE",
					  err, sizeof(err)), PG_OK);
	assert_int_equal(lstat(tmp, &st), -1);
	assert_int_equal(lstat(jtmp, &st), -1);
	path_in(&e, "ledger.json", path, sizeof(path));
	path_in(&e, "ledger.journal", jpath, sizeof(jpath));
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0077, 0);
	assert_int_equal(lstat(jpath, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0077, 0);

	/* the snapshot: the empty state, version 2, compacting nothing */
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	assert_non_null(root);
	assert_int_equal(json_integer_value(json_object_get(root, "version")),
			 2);
	assert_true(json_is_null(json_object_get(root, "compacted")));
	assert_int_equal(json_object_size(root), 6);
	assert_int_equal(json_array_size(json_object_get(root, "issued")), 0);
	json_decref(root);

	/* the journal: header, reserve, commit */
	assert_header_names_snapshot(&e);
	assert_int_equal(count_lines(jpath), 3);
	text = slurp(jpath, &len);
	line = strchr(text, '\n') + 1;
	for (k = 0; k < 2; k++) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		op = json_loadb(line, (size_t)(nl - line),
				JSON_REJECT_DUPLICATES, &je);
		assert_non_null(op);
		assert_int_equal(json_object_size(op), 1);
		if (k == 0) {
			json_t *r = json_object_get(op, "reserve");

			assert_non_null(r);
			assert_string_equal(json_string_value(json_object_get(
				r, "user")), "alice");
			assert_int_equal(json_integer_value(json_object_get(
				r, "ts")), T0);
			assert_int_equal(json_integer_value(json_object_get(
				r, "pid")), getpid());
			assert_int_equal(json_object_size(r), 10);
		} else {
			json_t *c = json_object_get(op, "commit");

			assert_non_null(c);
			assert_string_equal(json_string_value(json_object_get(
				c, "access_key_id")), "AKIDEXAMPLE");
			assert_int_equal(json_integer_value(json_object_get(
				c, "expiration")), T0 + 900);
			assert_int_equal(json_object_size(c), 7);
		}
		json_decref(op);
		line = nl + 1;
	}
	assert_int_equal(line - text, (ptrdiff_t)len);
	free(text);

	/* a release is one more line; a denied reserve none */
	assert_int_equal(reserve(&e, "bob", AUDITOR, "T9", 0, T0 + 1, &res,
				 &rule, err, sizeof(err)), PG_OK);
	assert_int_equal(pg_ledger_release(e.l, res, err, sizeof(err)), PG_OK);
	assert_int_equal(count_lines(jpath), 5);
	assert_int_equal(reserve(&e, "alice", ADMIN, "T2", 0, T0 + 2, &res,
				 &rule, err, sizeof(err)), PG_DENIED);
	assert_int_equal(count_lines(jpath), 5);
	env_close(&e);
}

/* Values are stored as they are, never interpreted. */
static void
test_values(void **state)
{
	static const char *const odd[] = {
		"alice\"},{\"user\":\"mallory", "ticket with spaces\n\t",
		"\xc3\xa9l\xc3\xa8ve", "../../etc/passwd", "%s%n%x",
	};
	pg_reservation *res;
	pg_ledger_facts f;
	char err[512], big[PG_LEDGER_MAX_VALUE + 2];
	void *hold;
	size_t i;
	int rule;
	env e;

	(void)state;
	env_open(&e, WINDOW);
	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		assert_int_equal(reserve(&e, odd[i], PM, odd[i], 0, T0 + i,
					 &res, &rule, err, sizeof(err)),
				 PG_OK);
		assert_int_equal(pg_ledger_commit(e.l, res, T0, NULL, err,
						  sizeof(err)), PG_OK);
		assert_int_equal(pg_ledger_facts_get(e.l, "bob", PM, odd[i],
						     pm_conflicts, 1, T0 + 10,
						     &f, &hold, err,
						     sizeof(err)), PG_OK);
		assert_string_equal(f.bound_user, odd[i]);
		pg_ledger_facts_free(hold);
	}
	/* "alice" is not the user whose name merely starts with it */
	assert_int_equal(reserve(&e, "alice", ADMIN, "T1", 0, T0 + 10, &res,
				 &rule, err, sizeof(err)), PG_OK);
	assert_int_equal(pg_ledger_release(e.l, res, err, sizeof(err)), PG_OK);

	/* bad arguments */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	{
		const struct { const char *u, *r, *t; } bad[] = {
			{ "", PM, "T1" }, { NULL, PM, "T1" }, { "a", "", "T1" },
			{ "a", PM, "" }, { "a", PM, NULL }, { big, PM, "T1" },
			{ "a\xff", PM, "T1" }, { "a", PM, "T\xc3" },
		};

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			res = (pg_reservation *)1;
			assert_int_equal(pg_ledger_reserve(e.l, bad[i].u,
							   bad[i].r, bad[i].t,
							   pm_conflicts, 1, 0,
							   T0, &res, &rule, err,
							   sizeof(err)),
					 PG_EINVAL);
			assert_null(res);
			assert_int_equal(rule, PG_R9);
		}
	}
	/* times no clock gives, and a negative max_uses */
	assert_int_equal(pg_ledger_reserve(e.l, "a", PM, "T1", pm_conflicts, 1,
					   0, -1, &res, &rule, err,
					   sizeof(err)), PG_EINVAL);
	assert_int_equal(pg_ledger_reserve(e.l, "a", PM, "T1", pm_conflicts, 1,
					   0, INT64_MAX, &res, &rule, err,
					   sizeof(err)), PG_EINVAL);
	assert_int_equal(pg_ledger_reserve(e.l, "a", PM, "T1", pm_conflicts, 1,
					   -1, T0, &res, &rule, err,
					   sizeof(err)), PG_EINVAL);
	/* no ticket is fine for facts (no ticket facts) */
	assert_int_equal(pg_ledger_facts_get(e.l, "alice", PM, NULL,
					     pm_conflicts, 1, T0, &f, &hold,
					     err, sizeof(err)), PG_OK);
	assert_null(f.bound_user);
	assert_int_equal(f.uses, 0);
	pg_ledger_facts_free(hold);
	assert_int_equal(pg_ledger_facts_get(e.l, "alice", PM, "T1", NULL, 1,
					     T0, &f, &hold, err, sizeof(err)),
			 PG_EINVAL);
	assert_int_equal(pg_ledger_commit(e.l, NULL, 0, NULL, err,
					  sizeof(err)), PG_EINVAL);
	assert_int_equal(pg_ledger_release(e.l, NULL, err, sizeof(err)),
			 PG_EINVAL);
	env_close(&e);
}

/* ---- the journal ------------------------------------------------------------ */

/* USER's R6 facts asking ADMIN and the facts of TICKET, through L at NOW,
 * as one comparable string (or the error's name). */
static void
facts_line(pg_ledger *l, const char *user, const char *ticket, int64_t now,
	   char *out, size_t outlen)
{
	pg_ledger_facts f;
	void *hold = NULL;
	char err[512] = "";
	pg_err rc;

	rc = pg_ledger_facts_get(l, user, ADMIN, ticket, admin_conflicts, 1,
				 now, &f, &hold, err, sizeof(err));
	if (rc != PG_OK)
		snprintf(out, outlen, "error %s", pg_err_name(rc));
	else
		snprintf(out, outlen, "%s@%lld %s/%s %d",
			 f.conflict_role ? f.conflict_role : "-",
			 (long long)f.conflict_ts,
			 f.bound_user ? f.bound_user : "-",
			 f.bound_role ? f.bound_role : "-", f.uses);
	pg_ledger_facts_free(hold);
}

/*
 * A last line without its newline is being written (or was left by a
 * writer that crashed): readers ignore it and leave it; the next writer
 * cuts it off before appending.  Even a whole operation without its
 * newline never counts (it was never synced, so never acknowledged).
 */
static void
test_journal_torn_tail(void **state)
{
	static const char *const torn[] = {
		"{\"commit\":{\"id\":\"0123",
		"{\"reserve\":{\"boot_id\":\"\",\"expires\":9999999999,"
		"\"id\":\"feedfeedfeedfeedfeedfeedfeedfeed\",\"pid\":1,"
		"\"pidns\":0,\"role\":\"" PM "\",\"start\":0,\"ticket\":\"TM\","
		"\"ts\":1700000001,\"user\":\"mallory\"}}",
		"garbage without end",
	};
	pg_reservation *res;
	pg_ledger *other;
	char jpath[256], err[512], line[256];
	size_t i, len, len2;
	char *before, *after;
	int rule;
	env e;

	(void)state;
	for (i = 0; i < sizeof(torn) / sizeof(torn[0]); i++) {
		env_open(&e, WINDOW);
		path_in(&e, "ledger.journal", jpath, sizeof(jpath));
		assert_int_equal(pg_ledger_open(&e.cfg, &other, err,
						sizeof(err)), PG_OK);
		issue_with(e.l, "alice", PM, "T1", T0);
		facts_line(other, "mallory", "TM", T0 + 1, line, sizeof(line));
		assert_string_equal(line, "-@0 -/- 0");
		append_bytes(jpath, torn[i], strlen(torn[i]));
		before = slurp(jpath, &len);

		/* readers: ignored, the file left as it is */
		facts_line(other, "mallory", "TM", T0 + 1, line, sizeof(line));
		assert_string_equal(line, "-@0 -/- 0");
		facts_line(e.l, "alice", "T1", T0 + 1, line, sizeof(line));
		assert_string_equal(line, PM "@1700000000 alice/" PM " 1");
		after = slurp(jpath, &len2);
		assert_true(len == len2 && memcmp(before, after, len) == 0);
		free(after);

		/* a writer: cut off, then its own line appended */
		assert_int_equal(reserve(&e, "bob", PM, "T2", 0, T0 + 2, &res,
					 &rule, err, sizeof(err)), PG_OK);
		after = slurp(jpath, &len2);
		assert_true(len2 > len - strlen(torn[i]));
		assert_memory_equal(after, before, len - strlen(torn[i]));
		assert_memory_equal(after + len - strlen(torn[i]),
				    "{\"reserve\":", 11);
		assert_int_equal(after[len2 - 1], '\n');
		free(after);
		free(before);
		assert_int_equal(pg_ledger_commit(e.l, res, T0 + 900, NULL, err,
						  sizeof(err)), PG_OK);
		/* the other handle, which had seen the torn line, reads on */
		facts_line(other, "bob", "T2", T0 + 3, line, sizeof(line));
		assert_string_equal(line, PM "@1700000002 bob/" PM " 1");
		facts_line(other, "mallory", "TM", T0 + 3, line, sizeof(line));
		assert_string_equal(line, "-@0 -/- 0");
		pg_ledger_close(other);
		env_close(&e);
	}
}

#define RES_OP(extra) "{\"reserve\":{\"boot_id\":\"\",\"expires\":2," \
	"\"id\":\"ab\",\"pid\":1,\"pidns\":0,\"role\":\"r\",\"start\":0," \
	"\"ticket\":\"t\",\"ts\":1,\"user\":\"u\"" extra "}}"
#define COMMIT_OP(id, ts) "{\"commit\":{\"access_key_id\":\"\"," \
	"\"expiration\":2,\"id\":" id ",\"role\":\"r\",\"ticket\":\"t\"," \
	"\"ts\":" ts ",\"user\":\"u\"}}"

/* Complete lines that are not operations: the ledger is damaged. */
static const struct corrupt_case journal_cases[] = {
	{ "garbage", "this is not json", 0 },
	{ "an empty line", "", 0 },
	{ "binary", "\x01\x02\xff", 3 },
	{ "a NUL byte", "{\"release\":{\"id\":\"a\x00\"}}", 24 },
	{ "trailing garbage", "{\"release\":{\"id\":\"ab\"}} x", 0 },
	{ "not an object", "[\"release\",\"ab\"]", 0 },
	{ "no operation", "{}", 0 },
	{ "two operations", "{\"release\":{\"id\":\"ab\"},"
	  "\"release\":{\"id\":\"cd\"}}", 0 },
	{ "two kinds of operation", "{\"release\":{\"id\":\"ab\"},"
	  "\"commit\":{\"id\":\"cd\"}}", 0 },
	{ "unknown operation", "{\"delete\":{\"id\":\"ab\"}}", 0 },
	{ "a header again", "{\"snapshot\":\"0000000000000000000000000000000"
	  "000000000000000000000000000000000\"}", 0 },
	{ "release without id", "{\"release\":{}}", 0 },
	{ "release with extra key", "{\"release\":{\"id\":\"ab\",\"x\":1}}",
	  0 },
	{ "release id a number", "{\"release\":{\"id\":7}}", 0 },
	{ "release id empty", "{\"release\":{\"id\":\"\"}}", 0 },
	{ "release id too long", "{\"release\":{\"id\":\"0123456789abcdef"
	  "0123456789abcdef0\"}}", 0 },
	{ "duplicate key", "{\"release\":{\"id\":\"ab\",\"id\":\"ab\"}}", 0 },
	{ "reservation with extra key", RES_OP(",\"x\":1"), 0 },
	{ "reservation with pid 0", "{\"reserve\":{\"boot_id\":\"\","
	  "\"expires\":2,\"id\":\"ab\",\"pid\":0,\"pidns\":0,\"role\":\"r\","
	  "\"start\":0,\"ticket\":\"t\",\"ts\":1,\"user\":\"u\"}}", 0 },
	{ "reservation without ticket", "{\"reserve\":{\"boot_id\":\"\","
	  "\"expires\":2,\"id\":\"ab\",\"pid\":1,\"pidns\":0,\"role\":\"r\","
	  "\"start\":0,\"ts\":1,\"user\":\"u\"}}", 0 },
	{ "reservation not an object", "{\"reserve\":[1]}", 0 },
	{ "commit with negative ts", COMMIT_OP("\"ab\"", "-1"), 0 },
	{ "commit with ts as string", COMMIT_OP("\"ab\"", "\"1\""), 0 },
	{ "commit with ts as real", COMMIT_OP("\"ab\"", "1.5"), 0 },
	{ "commit with id null", COMMIT_OP("null", "1"), 0 },
	{ "commit without user", "{\"commit\":{\"access_key_id\":\"\","
	  "\"expiration\":2,\"id\":\"ab\",\"role\":\"r\",\"ticket\":\"t\","
	  "\"ts\":1}}", 0 },
	{ "commit with empty role", "{\"commit\":{\"access_key_id\":\"\","
	  "\"expiration\":2,\"id\":\"ab\",\"role\":\"\",\"ticket\":\"t\","
	  "\"ts\":1,\"user\":\"u\"}}", 0 },
};

/* Journals whose header line is not one: damaged. */
#define HASH_Z "\"0000000000000000000000000000000000000000000000000000000000000000\""
#define HDR(id, hash) "{\"id\":" id ",\"snapshot\":" hash "}\n"
static const struct corrupt_case header_cases[] = {
	{ "empty journal", "", 0 },
	{ "header without newline", "{\"id\":\"", 0 },
	{ "header not json", "snapshot\n", 0 },
	{ "header without the keys", "{}\n", 0 },
	{ "header without id (no journal identity)", "{\"snapshot\":" HASH_Z
	  "}\n", 0 },
	{ "header without snapshot", "{\"id\":" JID_A "}\n", 0 },
	{ "header with extra key", "{\"id\":" JID_A ",\"snapshot\":" HASH_Z
	  ",\"x\":1}\n", 0 },
	{ "header with duplicate key", "{\"id\":" JID_A ",\"id\":" JID_A
	  ",\"snapshot\":" HASH_Z "}\n", 0 },
	{ "header not an object", "[" JID_A "," HASH_Z "]\n", 0 },
	{ "header hash short", HDR(JID_A, "\"abc\""), 0 },
	{ "header hash uppercase", HDR(JID_A, "\"ABCDEF0000000000000000000"
	  "000000000000000000000000000000000000000\""), 0 },
	{ "header hash a number", HDR(JID_A, "7"), 0 },
	{ "header id short", HDR("\"0123456789abcdef\"", HASH_Z), 0 },
	{ "header id long", HDR("\"0123456789abcdef0123456789abcdef0\"",
	  HASH_Z), 0 },
	{ "header id uppercase", HDR("\"0123456789ABCDEF0123456789abcdef\"",
	  HASH_Z), 0 },
	{ "header id a number", HDR("7", HASH_Z), 0 },
	{ "header id null", HDR("null", HASH_Z), 0 },
	{ "header id empty", HDR("\"\"", HASH_Z), 0 },
	{ "an operation first", "{\"release\":{\"id\":\"ab\"}}\n", 0 },
};

/* The bytes of PATH, or NULL when it does not exist. */
static char *
slurp_opt(const char *path, size_t *len)
{
	if (access(path, F_OK) != 0) {
		assert_int_equal(errno, ENOENT);
		*len = 0;
		return NULL;
	}
	return slurp(path, len);
}

/* Both NULL (missing), or the same bytes. */
static int
same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
	if (a == NULL || b == NULL)
		return a == NULL && b == NULL;
	return alen == blen && memcmp(a, b, alen) == 0;
}

/*
 * Every operation refuses with PG_EPROTO, saying the journal is damaged
 * (and WANT, unless NULL); neither file is changed (a missing ledger.json
 * stays missing).
 */
static void
assert_refused_unchanged(env *e, const char *what, const char *want)
{
	char path[256], jpath[256], err[512];
	char *snap, *jour, *snap2, *jour2;
	size_t slen, jlen, slen2, jlen2;
	pg_reservation *res;
	pg_ledger *fresh;
	pg_ledger_facts f;
	int64_t when;
	void *hold;
	pg_err rc;
	int rule;

	path_in(e, "ledger.json", path, sizeof(path));
	path_in(e, "ledger.journal", jpath, sizeof(jpath));
	snap = slurp_opt(path, &slen);
	jour = slurp(jpath, &jlen);
	assert_int_equal(pg_ledger_open(&e->cfg, &fresh, err, sizeof(err)),
			 PG_OK);
	err[0] = '\0';
	rc = pg_ledger_facts_get(e->l, "alice", PM, "T1", pm_conflicts, 1, T0,
				 &f, &hold, err, sizeof(err));
	if (rc != PG_EPROTO || strstr(err, "ledger.journal is damaged") ==
	    NULL || (want != NULL && strstr(err, want) == NULL))
		fail_msg("%s: facts %s: %s", what, pg_err_name(rc), err);
	assert_null(hold);
	rc = pg_ledger_facts_get(fresh, "alice", PM, "T1", pm_conflicts, 1, T0,
				 &f, &hold, err, sizeof(err));
	if (rc != PG_EPROTO)
		fail_msg("%s: facts (new handle) %s", what, pg_err_name(rc));
	res = (pg_reservation *)1;
	rc = pg_ledger_reserve(e->l, "alice", PM, "T1", pm_conflicts, 1, 0, T0,
			       &res, &rule, err, sizeof(err));
	if (rc != PG_EPROTO || rule != PG_R9 || res != NULL)
		fail_msg("%s: reserve %s", what, pg_err_name(rc));
	assert_int_equal(pg_ledger_last_issuance(fresh, "alice", PM, &when,
						 err, sizeof(err)), PG_EPROTO);
	pg_ledger_close(fresh);
	snap2 = slurp_opt(path, &slen2);
	jour2 = slurp(jpath, &jlen2);
	if (!same_bytes(snap, slen, snap2, slen2) ||
	    !same_bytes(jour, jlen, jour2, jlen2))
		fail_msg("%s: the damaged ledger was rewritten", what);
	free(snap);
	free(jour);
	free(snap2);
	free(jour2);
}

static void
test_journal_corrupt(void **state)
{
	char jpath[256], line[300];
	size_t i, len;
	env e;

	(void)state;
	/* a damaged line after good ones, read by a handle that had read
	 * the good ones (from where it stopped) and by a new one */
	for (i = 0; i < sizeof(journal_cases) / sizeof(journal_cases[0]);
	     i++) {
		const struct corrupt_case *c = &journal_cases[i];

		env_open(&e, WINDOW);
		path_in(&e, "ledger.journal", jpath, sizeof(jpath));
		issue_with(e.l, "alice", PM, "T1", T0);
		facts_line(e.l, "alice", "T1", T0 + 1, line, sizeof(line));
		len = c->len ? c->len : strlen(c->text);
		append_bytes(jpath, c->text, len);
		append_bytes(jpath, "\n", 1);
		assert_refused_unchanged(&e, c->what, "the operation at byte");
		env_close(&e);
	}
	/* a damaged header */
	for (i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++) {
		const struct corrupt_case *c = &header_cases[i];

		env_open(&e, WINDOW);
		path_in(&e, "ledger.journal", jpath, sizeof(jpath));
		issue_with(e.l, "alice", PM, "T1", T0);
		replace_with(jpath, c->text, strlen(c->text));
		assert_refused_unchanged(&e, c->what, "header");
		env_close(&e);
	}
}

/* The state after alice's issuance of PM with T1 at T0, as a compaction
 * writes it (format version 2), naming the journal %s as compacted. */
#define ALICE_DOC DOC2("\"%s\"", "[{\"access_key_id\":\"AKID\"," \
	"\"expiration\":1700000900,\"role\":\"" PM "\",\"ticket\":\"T1\"," \
	"\"ts\":1700000000,\"user\":\"alice\"}]", "{\"T1\":{\"first\":" \
	"1700000000,\"last\":1700000000,\"role\":\"" PM "\",\"uses\":1," \
	"\"user\":\"alice\"}}", "[{\"role\":\"" PM "\",\"ts\":1700000000," \
	"\"user\":\"alice\"}]", "[]") "\n"

/* Snapshots that are not the one the journal follows, nor its
 * compaction's: another ledger's compaction (naming another journal), one
 * written by hand (naming none), and one naming a journal id that differs
 * from the journal's in its last digit. */
static const char *const foreign_snapshots[] = {
	DOC2(JID_A, "[{\"access_key_id\":\"\",\"expiration\":1700000900,"
	     "\"role\":\"" PM "\",\"ticket\":\"T1\",\"ts\":1700000000,"
	     "\"user\":\"mallory\"}]", "{}", "[]", "[]") "\n",
	DOC2("null", "[]", "{}", "[{\"role\":\"" PM "\",\"ts\":1700000000,"
	     "\"user\":\"mallory\"}]", "[]") "\n",
	DOC("[]", "{}", "[]", "[]") "\n",
};

/*
 * Stale and damaged journals.  A compaction that crashed between its two
 * renames leaves the new snapshot, which names the old journal as the one
 * it compacted, with the old journal: stale, ignored (its operations are
 * in the snapshot; applying them again would count them twice), and
 * replaced by the next writer, who leaves the snapshot as it is.  Any
 * other journal that does not follow the snapshot is damage, never
 * dropped: ledger.json deleted, restored from an older copy, or replaced
 * by another ledger's (or one written by hand) refuses every operation
 * and leaves both files as they are; putting the right snapshot back
 * brings the whole history back.  Both files restored from one copy, or
 * the journal removed on purpose, are a ledger again.
 */
static void
test_journal_stale(void **state)
{
	pg_reservation *res;
	pg_ledger *fresh;
	char path[256], jpath[256], err[512], line[256], doc[2048];
	char j1[33], j2[33], near[33], what[64];
	char *s0, *snap, *after, *jcopy, *scopy;
	size_t len, len2, s0len, jclen, sclen, i;
	int64_t when;
	int rule;
	env e;

	(void)state;
	env_open(&e, WINDOW);
	path_in(&e, "ledger.json", path, sizeof(path));
	path_in(&e, "ledger.journal", jpath, sizeof(jpath));
	issue_with(e.l, "alice", PM, "T1", T0);
	facts_line(e.l, "bob", "T1", T0 + 1, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");
	journal_id(&e, j1);
	s0 = slurp(path, &s0len);

	/* ledger.json deleted: refused, not an empty ledger (bob would get
	 * alice's ticket, and alice's issuance would be dropped) */
	assert_int_equal(unlink(path), 0);
	assert_refused_unchanged(&e, "snapshot deleted",
				 "ledger.json is missing");
	res = NULL;
	assert_int_equal(pg_ledger_reserve(e.l, "bob", PM, "T1", pm_conflicts,
					   1, 0, T0 + 1, &res, &rule, err,
					   sizeof(err)), PG_EPROTO);
	assert_null(res);
	assert_int_equal(rule, PG_R9);
	replace_with(path, s0, s0len);
	facts_line(e.l, "bob", "T1", T0 + 1, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");

	/* another snapshot that does not name this journal: refused */
	snprintf(near, sizeof(near), "%.31s%c", j1, j1[31] == '0' ? '1' : '0');
	for (i = 0; i <= sizeof(foreign_snapshots) /
			 sizeof(foreign_snapshots[0]); i++) {
		const char *text = doc;

		if (i < sizeof(foreign_snapshots) / sizeof(foreign_snapshots[0]))
			text = foreign_snapshots[i];
		else
			snprintf(doc, sizeof(doc), ALICE_DOC, near);
		snprintf(what, sizeof(what), "foreign snapshot %zu", i);
		replace_with(path, text, strlen(text));
		assert_refused_unchanged(&e, what, "without its journal");
	}
	replace_with(path, s0, s0len);
	facts_line(e.l, "bob", "T1", T0 + 1, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");

	/* the crash: the new snapshot renamed, the journal not */
	snprintf(doc, sizeof(doc), ALICE_DOC, j1);
	replace_with(path, doc, strlen(doc));
	assert_int_equal(pg_ledger_open(&e.cfg, &fresh, err, sizeof(err)),
			 PG_OK);
	facts_line(fresh, "bob", "T1", T0 + 1, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");	/* not 2 uses */
	facts_line(e.l, "bob", "T1", T0 + 1, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");
	facts_line(fresh, "alice", "T9", T0 + 1, line, sizeof(line));
	assert_string_equal(line, PM "@1700000000 -/- 0");
	assert_int_equal(pg_ledger_last_issuance(fresh, "alice", PM, &when, err,
						 sizeof(err)), PG_OK);
	assert_int_equal(when, T0);
	pg_ledger_close(fresh);

	/* the next writer replaces the journal, keeps the snapshot */
	snap = slurp(path, &len);
	assert_int_equal(reserve(&e, "carol", AUDITOR, "T5", 0, T0 + 2, &res,
				 &rule, err, sizeof(err)), PG_OK);
	assert_int_equal(pg_ledger_release(e.l, res, err, sizeof(err)), PG_OK);
	after = slurp(path, &len2);
	assert_true(len == len2 && memcmp(snap, after, len) == 0);
	free(snap);
	free(after);
	assert_header_names_snapshot(&e);
	journal_id(&e, j2);
	assert_string_not_equal(j1, j2);
	assert_int_equal(count_lines(jpath), 3);
	facts_line(e.l, "bob", "T1", T0 + 3, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");

	/* ledger.json restored from an older copy (the one before the
	 * compaction): refused; the right one back, the ledger goes on */
	issue_with(e.l, "dave", AUDITOR, "T6", T0 + 3);
	replace_with(path, s0, s0len);
	assert_refused_unchanged(&e, "older snapshot", "without its journal");
	replace_with(path, doc, strlen(doc));
	facts_line(e.l, "dave", "T6", T0 + 4, line, sizeof(line));
	assert_string_equal(line, "-@0 dave/" AUDITOR " 1");
	facts_line(e.l, "bob", "T1", T0 + 4, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");

	/* both files restored from one copy: the ledger as it was then */
	scopy = slurp(path, &sclen);
	jcopy = slurp(jpath, &jclen);
	issue_with(e.l, "erin", AUDITOR, "T7", T0 + 4);
	replace_with(path, scopy, sclen);
	replace_with(jpath, jcopy, jclen);
	assert_int_equal(pg_ledger_open(&e.cfg, &fresh, err, sizeof(err)),
			 PG_OK);
	facts_line(fresh, "erin", "T7", T0 + 5, line, sizeof(line));
	assert_string_equal(line, "-@0 -/- 0");
	facts_line(fresh, "dave", "T6", T0 + 5, line, sizeof(line));
	assert_string_equal(line, "-@0 dave/" AUDITOR " 1");
	pg_ledger_close(fresh);
	free(scopy);
	free(jcopy);

	/* the journal removed on purpose: the snapshot's state; the next
	 * writer starts a journal that follows it */
	assert_int_equal(unlink(jpath), 0);
	facts_line(e.l, "dave", "T6", T0 + 5, line, sizeof(line));
	assert_string_equal(line, "-@0 -/- 0");
	facts_line(e.l, "bob", "T1", T0 + 5, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");
	issue_with(e.l, "frank", AUDITOR, "T8", T0 + 5);
	assert_header_names_snapshot(&e);
	after = slurp(path, &len2);
	assert_true(len2 == strlen(doc) && memcmp(doc, after, len2) == 0);
	free(after);
	free(s0);
	env_close(&e);

	/* a journal that follows the snapshot which also names it as
	 * compacted (no writer makes that): refused */
	env_open(&e, WINDOW);
	path_in(&e, "ledger.json", path, sizeof(path));
	path_in(&e, "ledger.journal", jpath, sizeof(jpath));
	snprintf(doc, sizeof(doc), ALICE_DOC, "0123456789abcdef0123456789abcdef");
	write_file(path, doc, strlen(doc), 0600);
	{
		char hash[65], header[160];

		sha256_file(path, hash);
		snprintf(header, sizeof(header), HDR(JID_A, "\"%s\""), hash);
		write_file(jpath, header, strlen(header), 0600);
	}
	assert_refused_unchanged(&e, "followed and compacted",
				 "contradictory");
	env_close(&e);
}

/*
 * A snapshot of format version 1 (no "compacted") is read as compacting
 * no journal: its records count, a journal that follows it applies, and
 * a writer leaves it as it is until a compaction rewrites it.
 */
static void
test_snapshot_v1(void **state)
{
	const char *const v1 = DOC("[{\"access_key_id\":\"AKID\","
		"\"expiration\":1700000900,\"role\":\"" PM "\",\"ticket\":"
		"\"T1\",\"ts\":1700000000,\"user\":\"alice\"}]",
		"{\"T1\":{\"first\":1700000000,\"last\":1700000000,\"role\":"
		"\"" PM "\",\"uses\":1,\"user\":\"alice\"}}",
		"[{\"role\":\"" PM "\",\"ts\":1700000000,\"user\":\"alice\"}]",
		"[]") "\n";
	pg_ledger *fresh;
	char path[256], err[512], line[256];
	size_t len;
	int64_t when;
	char *after;
	env e;

	(void)state;
	env_open(&e, WINDOW);
	path_in(&e, "ledger.json", path, sizeof(path));
	write_file(path, v1, strlen(v1), 0600);
	facts_line(e.l, "bob", "T1", T0 + 1, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");
	facts_line(e.l, "alice", "T9", T0 + 1, line, sizeof(line));
	assert_string_equal(line, PM "@1700000000 -/- 0");

	issue_with(e.l, "bob", AUDITOR, "T2", T0 + 1);
	after = slurp(path, &len);
	assert_true(len == strlen(v1) && memcmp(after, v1, len) == 0);
	free(after);
	assert_header_names_snapshot(&e);

	assert_int_equal(pg_ledger_open(&e.cfg, &fresh, err, sizeof(err)),
			 PG_OK);
	facts_line(fresh, "bob", "T1", T0 + 2, line, sizeof(line));
	assert_string_equal(line, "-@0 alice/" PM " 1");
	facts_line(fresh, "x", "T2", T0 + 2, line, sizeof(line));
	assert_string_equal(line, "-@0 bob/" AUDITOR " 1");
	assert_int_equal(pg_ledger_last_issuance(fresh, "bob", AUDITOR, &when,
						 err, sizeof(err)), PG_OK);
	assert_int_equal(when, T0 + 1);
	pg_ledger_close(fresh);
	env_close(&e);
}

#define CUSERS 48

/* Facts of every user and ticket of test_compaction, and their last
 * issuances, through L at NOW, into BUF. */
static void
all_facts(pg_ledger *l, int64_t now, char *buf, size_t len)
{
	char user[16], ticket[16], line[256], err[512];
	size_t used = 0;
	int64_t when;
	int u, t;

	buf[0] = '\0';
	for (u = 0; u < CUSERS; u++) {
		snprintf(user, sizeof(user), "u%d", u);
		for (t = 0; t < CUSERS; t += 7) {
			snprintf(ticket, sizeof(ticket), "T%d", t);
			facts_line(l, user, ticket, now, line, sizeof(line));
			used += (size_t)snprintf(buf + used, len - used,
						 "%s %s: %s\n", user, ticket,
						 line);
			assert_true(used < len);
		}
		assert_int_equal(pg_ledger_last_issuance(l, user, PM, &when,
							 err, sizeof(err)),
				 PG_OK);
		used += (size_t)snprintf(buf + used, len - used, "last %lld\n",
					 (long long)when);
		assert_true(used < len);
	}
}

/*
 * A writer that finds the journal over its bound compacts it first: the
 * state, records that lapsed dropped, becomes the snapshot (format
 * version 2, naming the old journal as compacted) and the journal starts
 * again with just its header (and a new id).  Every fact is the same
 * after as before, for the handle that compacted, one that had read the
 * old journal, and a new one; also when the old journal is found with the
 * new snapshot (a crash between the two renames: stale).  The snapshot
 * from before the compaction, put back, is refused.
 */
static void
test_compaction(void **state)
{
	static char before[64 * 1024], after[64 * 1024];
	char path[256], jpath[256], err[512], user[16], ticket[16];
	char jold[33], jnew[33], got[33], *oldj, *olds;
	size_t oldjlen, oldslen;
	pg_reservation *res;
	pg_ledger *other, *fresh;
	struct stat st;
	json_error_t je;
	json_t *root, *e2;
	off_t size = 0;
	int64_t now = T0;
	size_t ops = 0, i, k;
	int rule;
	env e;

	(void)state;
	env_open(&e, WINDOW);
	path_in(&e, "ledger.json", path, sizeof(path));
	path_in(&e, "ledger.journal", jpath, sizeof(jpath));
	assert_int_equal(pg_ledger_open(&e.cfg, &other, err, sizeof(err)),
			 PG_OK);
	/* issuances (a reserve and a commit each) and released reservations
	 * until the journal is over its bound; it only grows until then */
	for (i = 0; ops < PG_LEDGER_JOURNAL_MAX_OPS &&
		    size < (off_t)PG_LEDGER_JOURNAL_MAX_BYTES; i++, now++) {
		snprintf(user, sizeof(user), "u%zu", i % CUSERS);
		snprintf(ticket, sizeof(ticket), "T%zu", i % CUSERS);
		assert_int_equal(pg_ledger_reserve(e.l, user, PM, ticket,
						   pm_conflicts, 1, 0, now,
						   &res, &rule, err,
						   sizeof(err)), PG_OK);
		if (i % 5 == 4) {
			assert_int_equal(pg_ledger_release(e.l, res, err,
							   sizeof(err)), PG_OK);
		} else {
			assert_int_equal(pg_ledger_commit(e.l, res, now + 900,
							  "AKID", err,
							  sizeof(err)), PG_OK);
		}
		ops += 2;
		assert_int_equal(stat(jpath, &st), 0);
		assert_true(st.st_size > size);
		size = st.st_size;
	}
	assert_int_equal(count_lines(jpath), ops + 1);
	all_facts(other, now, before, sizeof(before));
	journal_id(&e, jold);
	oldj = slurp(jpath, &oldjlen);
	olds = slurp(path, &oldslen);

	/* a denied reserve (R6: the user issued PM last): compacts first,
	 * records nothing */
	k = i - 1 - ((i - 1) % 5 == 4);		/* committed, not released */
	snprintf(user, sizeof(user), "u%zu", k % CUSERS);
	assert_int_equal(pg_ledger_reserve(e.l, user, ADMIN, "T0",
					   admin_conflicts, 1, 0, now, &res,
					   &rule, err, sizeof(err)),
			 PG_DENIED);
	assert_int_equal(rule, PG_R6);
	assert_int_equal(count_lines(jpath), 1);
	assert_header_names_snapshot(&e);
	snapshot_compacted(&e, got);
	assert_string_equal(got, jold);
	journal_id(&e, jnew);
	assert_string_not_equal(jnew, jold);

	all_facts(e.l, now, after, sizeof(after));
	assert_string_equal(before, after);
	all_facts(other, now, after, sizeof(after));
	assert_string_equal(before, after);
	assert_int_equal(pg_ledger_open(&e.cfg, &fresh, err, sizeof(err)),
			 PG_OK);
	all_facts(fresh, now, after, sizeof(after));
	assert_string_equal(before, after);
	pg_ledger_close(fresh);

	/* a crash between the two renames: the old journal with the new
	 * snapshot, which names it: stale, nothing counted twice */
	replace_with(jpath, oldj, oldjlen);
	all_facts(e.l, now, after, sizeof(after));
	assert_string_equal(before, after);
	assert_int_equal(pg_ledger_open(&e.cfg, &fresh, err, sizeof(err)),
			 PG_OK);
	all_facts(fresh, now, after, sizeof(after));
	assert_string_equal(before, after);
	pg_ledger_close(fresh);

	/* the snapshot holds only what still matters: issuances within the
	 * window, a binding and a last entry per ticket and user */
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	assert_non_null(root);
	json_array_foreach(json_object_get(root, "issued"), i, e2)
		assert_true(json_integer_value(json_object_get(e2, "ts")) >
			    now - 1 - WINDOW);	/* purged at the last write */
	assert_true(json_array_size(json_object_get(root, "issued")) <=
		    WINDOW);
	assert_int_equal(json_array_size(json_object_get(root,
							 "reservations")), 0);
	assert_int_equal(json_object_size(json_object_get(root, "tickets")),
			 CUSERS);
	assert_int_equal(json_array_size(json_object_get(root, "last")),
			 CUSERS);
	json_decref(root);

	/* and the ledger goes on, also through the handle that read the
	 * journal before it was compacted */
	issue_with(other, "newcomer", PM, "TN", now);
	assert_int_equal(count_lines(jpath), 3);
	facts_line(e.l, "newcomer", "TN", now + 1, after, sizeof(after));
	snprintf(before, sizeof(before), PM "@%lld newcomer/" PM " 1",
		 (long long)now);
	assert_string_equal(after, before);

	/* the snapshot from before the compaction put back: refused, not
	 * read with a journal that does not follow it */
	{
		size_t cur_len;
		char *cur = slurp(path, &cur_len);

		replace_with(path, olds, oldslen);
		assert_refused_unchanged(&e, "snapshot from before the "
					 "compaction", "without its journal");
		replace_with(path, cur, cur_len);
		free(cur);
	}
	facts_line(other, "newcomer", "TN", now + 1, after, sizeof(after));
	assert_string_equal(after, before);
	free(oldj);
	free(olds);
	pg_ledger_close(other);
	env_close(&e);
}

/* The journal is checked like the snapshot. */
static void
test_journal_bad_files(void **state)
{
	enum { J_SYMLINK, J_DIR, J_GROUP_WRITABLE, J_OTHER_WRITABLE,
	       J_FOREIGN_OWNER, J_COUNT };
	static const char *const names[J_COUNT] = {
		"a symbolic link", "a directory", "group-writable",
		"other-writable", "owned by another uid",
	};
	pg_reservation *res;
	pg_ledger_facts f;
	char jpath[256], target[256], err[512];
	void *hold;
	size_t len;
	char *text;
	pg_err rc;
	int c, rule;
	env e;

	(void)state;
	for (c = 0; c < J_COUNT; c++) {
		if (c == J_FOREIGN_OWNER && geteuid() != 0)
			continue;	/* only root can give a file away */
		env_open(&e, WINDOW);
		path_in(&e, "ledger.journal", jpath, sizeof(jpath));
		issue_with(e.l, "alice", PM, "T1", T0);
		text = slurp(jpath, &len);
		switch (c) {
		case J_SYMLINK:
			snprintf(target, sizeof(target), "%s/j%d", tmpdir, c);
			write_file(target, text, len, 0600);
			assert_int_equal(unlink(jpath), 0);
			assert_int_equal(symlink(target, jpath), 0);
			break;
		case J_DIR:
			assert_int_equal(unlink(jpath), 0);
			assert_int_equal(mkdir(jpath, 0700), 0);
			break;
		case J_GROUP_WRITABLE:
			assert_int_equal(chmod(jpath, 0620), 0);
			break;
		case J_OTHER_WRITABLE:
			assert_int_equal(chmod(jpath, 0602), 0);
			break;
		case J_FOREIGN_OWNER:
			assert_int_equal(chown(jpath, 54321, 54321), 0);
			break;
		}
		free(text);
		rc = pg_ledger_facts_get(e.l, "alice", ADMIN, "T2",
					 admin_conflicts, 1, T0 + 1, &f, &hold,
					 err, sizeof(err));
		if (rc == PG_OK)
			pg_ledger_facts_free(hold);
		if (rc != PG_ECONFIG && rc != PG_EUNAVAIL)
			fail_msg("%s: facts %s", names[c], pg_err_name(rc));
		rc = pg_ledger_reserve(e.l, "alice", ADMIN, "T2",
				       admin_conflicts, 1, 0, T0 + 1, &res,
				       &rule, err, sizeof(err));
		if ((rc != PG_ECONFIG && rc != PG_EUNAVAIL) || rule != PG_R9)
			fail_msg("%s: reserve %s", names[c], pg_err_name(rc));
		env_close(&e);
	}
}

/* ---- processes ------------------------------------------------------------------ */

#define NPROCS 6
#define PER_PROC 20

/* A child: PER_PROC issuances of its own ticket, then one race for a
 * shared ticket, each through its own handle (its own cached state). */
static int
child_main(env *e, int i)
{
	pg_reservation *res;
	pg_ledger *l;
	char user[16], ticket[16], err[512];
	int k, rule, rc = 1;

	if (pg_ledger_open(&e->cfg, &l, err, sizeof(err)) != PG_OK)
		return 1;
	snprintf(user, sizeof(user), "p%d", i);
	snprintf(ticket, sizeof(ticket), "T%d", i);
	for (k = 0; k < PER_PROC; k++) {
		if (pg_ledger_reserve(l, user, AUDITOR, ticket, NULL, 0, 0,
				      T0 + k, &res, &rule, err,
				      sizeof(err)) != PG_OK ||
		    pg_ledger_commit(l, res, T0 + 900, NULL, err,
				     sizeof(err)) != PG_OK)
			goto out;
	}
	switch (pg_ledger_reserve(l, user, PM, "SHARED", pm_conflicts, 1, 0,
				  T0 + PER_PROC, &res, &rule, err,
				  sizeof(err))) {
	case PG_OK:
		if (pg_ledger_commit(l, res, T0 + 900, NULL, err,
				     sizeof(err)) != PG_OK)
			goto out;
		rc = 0;
		break;
	case PG_DENIED:
		rc = rule == PG_R7 ? 2 : 1;
		break;
	default:
		break;
	}
out:
	pg_ledger_close(l);
	return rc;
}

/* Several processes write at once: every operation of every one is in
 * the journal, once, and one process gets the shared ticket. */
static void
test_processes(void **state)
{
	char line[256], ticket[16], want[128];
	pid_t pids[NPROCS];
	int i, status, won = 0;
	env e;

	(void)state;
	env_open(&e, WINDOW);
	for (i = 0; i < NPROCS; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0)
			_exit(child_main(&e, i));
	}
	for (i = 0; i < NPROCS; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		if (WEXITSTATUS(status) == 0)
			won++;
		else
			assert_int_equal(WEXITSTATUS(status), 2);
	}
	assert_int_equal(won, 1);
	for (i = 0; i < NPROCS; i++) {
		char user[16];

		snprintf(user, sizeof(user), "p%d", i);
		snprintf(ticket, sizeof(ticket), "T%d", i);
		facts_line(e.l, user, ticket, T0 + PER_PROC, line,
			   sizeof(line));
		snprintf(want, sizeof(want), " %s/" AUDITOR " %d", user,
			 PER_PROC);
		if (strlen(line) < strlen(want) ||
		    strcmp(line + strlen(line) - strlen(want), want) != 0)
			fail_msg("%s: %s", user, line);
	}
	env_close(&e);
}

/* ---- setup ---------------------------------------------------------------------- */

static int
setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pg-test-ledger.XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int
teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sequences),
		cmocka_unit_test(test_two_handles),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_owner_gone),
		cmocka_unit_test(test_crashed_child),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_etcd_open),
		cmocka_unit_test(test_write),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_journal_torn_tail),
		cmocka_unit_test(test_journal_corrupt),
		cmocka_unit_test(test_journal_stale),
		cmocka_unit_test(test_snapshot_v1),
		cmocka_unit_test(test_compaction),
		cmocka_unit_test(test_journal_bad_files),
		cmocka_unit_test(test_processes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
