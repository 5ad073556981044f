/*
 * ledger.c - the issuance ledger (see ledger.h for the semantics and the
 * file format).
 *
 * The front end validates arguments, owns reservations and turns a view of
 * the ledger into facts or a verdict; a backend (a table of operations,
 * chosen by [ledger] backend) stores and retrieves: the file backend (one
 * host) and the etcd backend (several hosts, over etcd.h).  Both keep the
 * records of the file format and judge them with the same evaluate() and
 * judge().
 */
#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "etcd.h"
#include "secret.h"
#include "timefmt.h"

/* ---- the front end's types ----------------------------------------------- */

/* One question to the ledger. */
typedef struct query {
	const char *user, *role, *ticket;	/* ticket NULL: none */
	const char *const *conflicts;
	size_t n_conflicts;
	int max_uses;
	int64_t now;
} query;

/* The ledger's answer for a query; strings belong to the backend's state
 * and are valid until it is released. */
typedef struct view {
	const char *conflict_role;
	int64_t conflict_ts;
	const char *bound_user, *bound_role;
	int uses;
} view;

struct pg_reservation {
	pg_ledger *ledger;
	char id[33];		/* 128 random bits, hex */
	char *user, *role, *ticket;
	int64_t ts;		/* `now` of the reserve */
};

/* What pg_ledger_facts_get's strings point into. */
struct facts_hold {
	char *conflict_role, *bound_user, *bound_role;
};

struct ledger_ops {
	const char *name;
	pg_err (*open)(const pg_config *cfg, void **impl, char *err,
		       size_t errlen);
	void (*close)(void *impl);
	/* Fill a view for Q and copy it into F/HOLD with copy_view(). */
	pg_err (*facts)(void *impl, const query *q, pg_ledger_facts *f,
			struct facts_hold *hold, char *err, size_t errlen);
	/* Atomically: judge() Q against the ledger, record RES when it
	 * passes. */
	pg_err (*reserve)(void *impl, const query *q,
			  const pg_reservation *res, int *rule_out, char *err,
			  size_t errlen);
	pg_err (*commit)(void *impl, const pg_reservation *res,
			 int64_t expiration, const char *access_key_id,
			 char *err, size_t errlen);
	pg_err (*release)(void *impl, const pg_reservation *res, char *err,
			  size_t errlen);
	pg_err (*last)(void *impl, const char *user, const char *role,
		       int64_t *when, char *err, size_t errlen);
};

struct pg_ledger {
	const struct ledger_ops *ops;
	void *impl;
};

/* ---- shared by every backend ------------------------------------------- */

/* The latest `now` accepted (9999-12-31T23:59:59Z): no sum overflows. */
#define MAX_TIME 253402300799LL

static int
in_list(const char *s, const char *const *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] != NULL && strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

/* Copy V into F, the strings into HOLD. */
static pg_err
copy_view(const view *v, pg_ledger_facts *f, struct facts_hold *hold,
	  char *err, size_t errlen)
{
	if ((v->conflict_role != NULL &&
	     (hold->conflict_role = strdup(v->conflict_role)) == NULL) ||
	    (v->bound_user != NULL &&
	     (hold->bound_user = strdup(v->bound_user)) == NULL) ||
	    (v->bound_role != NULL &&
	     (hold->bound_role = strdup(v->bound_role)) == NULL)) {
		snprintf(err, errlen, "ledger: out of memory");
		return PG_ENOMEM;
	}
	f->conflict_role = hold->conflict_role;
	f->conflict_ts = v->conflict_ts;
	f->bound_user = hold->bound_user;
	f->bound_role = hold->bound_role;
	f->uses = v->uses;
	return PG_OK;
}

/*
 * R6 and R7 for Q as seen in V.  Returns -1 when both pass, else the first
 * failing rule (PG_R6 before PG_R7) with the reasons in ERR.  The wording
 * follows pg_decide()'s.
 */
static int
judge(const query *q, const view *v, char *err, size_t errlen)
{
	char r6[320] = "", r7[320] = "", when[32];
	int rule = -1;

	if (v->conflict_role != NULL) {
		pg_time_format(v->conflict_ts, when, sizeof(when));
		snprintf(r6, sizeof(r6), "%s was issued conflicting role %s "
			 "at %s, within the separation window", q->user,
			 v->conflict_role, when[0] ? when : "?");
		rule = PG_R6;
	}
	if (q->ticket != NULL && v->bound_user != NULL &&
	    strcmp(v->bound_user, q->user) != 0)
		snprintf(r7, sizeof(r7), "ticket %s is already bound to "
			 "another user", q->ticket);
	else if (q->ticket != NULL && v->bound_role != NULL &&
		 strcmp(v->bound_role, q->role) != 0)
		snprintf(r7, sizeof(r7), "ticket %s is already bound to role "
			 "%s", q->ticket, v->bound_role);
	else if (q->ticket != NULL && q->max_uses > 0 &&
		 v->uses >= q->max_uses)
		snprintf(r7, sizeof(r7), "ticket %s has been used %d times "
			 "(max_uses %d)", q->ticket, v->uses, q->max_uses);
	if (r7[0] != '\0' && rule < 0)
		rule = PG_R7;
	if (r6[0] != '\0' && r7[0] != '\0')
		snprintf(err, errlen, "%s; %s (R7 ticket-bound)", r6, r7);
	else if (rule >= 0)
		snprintf(err, errlen, "%s", r6[0] != '\0' ? r6 : r7);
	return rule;
}

/* A user, role or ticket: non-empty, bounded, UTF-8 (stored as a JSON
 * string). */
static pg_err
check_value(const char *what, const char *s, char *err, size_t errlen)
{
	size_t len;
	json_t *j;

	if (s == NULL || s[0] == '\0') {
		snprintf(err, errlen, "ledger: %s is missing", what);
		return PG_EINVAL;
	}
	len = strlen(s);
	if (len > PG_LEDGER_MAX_VALUE) {
		snprintf(err, errlen, "ledger: %s is longer than %d bytes",
			 what, PG_LEDGER_MAX_VALUE);
		return PG_EINVAL;
	}
	if ((j = json_stringn(s, len)) == NULL) {
		snprintf(err, errlen, "ledger: %s is not valid UTF-8", what);
		return PG_EINVAL;
	}
	json_decref(j);
	return PG_OK;
}

static pg_err
check_query(const query *q, int need_ticket, char *err, size_t errlen)
{
	pg_err e;
	size_t i;

	if ((e = check_value("user", q->user, err, errlen)) != PG_OK ||
	    (e = check_value("role", q->role, err, errlen)) != PG_OK)
		return e;
	if ((need_ticket || q->ticket != NULL) &&
	    (e = check_value("ticket", q->ticket, err, errlen)) != PG_OK)
		return e;
	if (q->n_conflicts > 0 && q->conflicts == NULL) {
		snprintf(err, errlen, "ledger: conflicts missing");
		return PG_EINVAL;
	}
	for (i = 0; i < q->n_conflicts; i++)
		if ((e = check_value("conflicting role", q->conflicts[i], err,
				     errlen)) != PG_OK)
			return e;
	if (q->now < 0 || q->now > MAX_TIME || q->max_uses < 0) {
		snprintf(err, errlen, "ledger: time out of range or negative "
			 "max_uses");
		return PG_EINVAL;
	}
	return PG_OK;
}

static void
reservation_free(pg_reservation *r)
{
	if (r == NULL)
		return;
	free(r->user);
	free(r->role);
	free(r->ticket);
	free(r);
}

/* ---- the file backend: process identity ---------------------------------- */

#define LEDGER_FILE "ledger.json"
#define LOCK_FILE "ledger.lock"
#define TMP_FILE "ledger.json.tmp"
#define JOURNAL_FILE "ledger.journal"
#define JOURNAL_TMP "ledger.journal.tmp"
/* The snapshot format written; version 1 (without "compacted") is still
 * read, as "compacted": null. */
#define FORMAT_VERSION 2
/* The lock file is empty and only ever opened for reading (flock needs no
 * more), so whoever created it, the daemon's user can lock it. */
#define LOCK_MODE 0644
/* Lowercase hex SHA-256 and its NUL. */
#define HASH_HEX (2 * 32 + 1)
/* A journal's id: 128 random bits as lowercase hex, and its NUL. */
#define JID_BYTES 16
#define JID_HEX (2 * JID_BYTES + 1)
/* Longest reservation id in a journal operation (the front end's are 32
 * hex digits). */
#define ID_MAX 32
/* A reader that finds the snapshot replaced while it read the journal
 * (a compaction) reads again, this many times at most. */
#define LOAD_ATTEMPTS 16

/* What every backend judges records by. */
typedef struct rules {
	int64_t window;		/* [separation] window */
	int64_t lease;		/* reservation lease, seconds */
	int64_t ticket_keep;	/* binding retention after last use */
	char boot_id[64];	/* "" = unknown */
	long long pidns;	/* inode of our pid namespace; 0 = unknown */
	/* A reservation made under another boot id: 1 = its owner is gone
	 * (one host: it rebooted since); 0 = cannot tell (several hosts: it
	 * may be another host's; only the lease applies, and so it does when
	 * either boot id is unknown). */
	int other_boot_gone;
} rules;

/*
 * The state as this handle last saw it: ledger.json (the snapshot) with
 * the operations of ledger.journal applied, and what it was read from.
 *
 * Descriptors of both files are held open, so their inodes cannot be
 * freed and reused while they are cached: a file at the same name with the
 * same device and inode number is the same file.  The state is current
 * when lstat() of ledger.json shows the cached snapshot unchanged (device,
 * inode, size, mode, owner, links, mtime, ctime) and lstat() of
 * ledger.journal the journal as it was when last read (or both are still
 * missing).  A journal that only grew is read from the end of the last
 * complete line applied (j_off); any other change of either file reads
 * both again from the start (state_load).
 *
 * Threads: rw guards every field.  Readers evaluate under the read lock;
 * reading new bytes of the files and applying them (state_refresh), and
 * replacing files (journal_start), happen under the write lock, so a
 * reader never sees an operation half applied.
 */
typedef struct file_state {
	pthread_rwlock_t rw;
	json_t *root;		/* the state; NULL = nothing cached */
	/* No issuance, binding or last entry of root lapses before this
	 * time (a lower bound: state_flush skips their scan before it). */
	int64_t next_death;
	/* The purge of issuances, bindings and last entries deferred while
	 * operations are applied (see state_purge): at this time, if set. */
	int64_t pending;
	int pending_set;
	/* root's last entries by user and role (see last_key), the same
	 * objects: note_last without a scan. */
	json_t *last_idx;
	int snap_fd;		/* ledger.json; -1 = it was missing */
	struct stat snap_st;	/* its identity */
	char snap_hash[HASH_HEX];	/* SHA-256 of its bytes */
	/* the id of the journal whose compaction wrote it; "" = none */
	char snap_compacted[JID_HEX];
	int j_fd;		/* ledger.journal; -1 = none */
	struct stat j_st;	/* as it was when last read */
	char j_id[JID_HEX];	/* its id, from its header */
	int j_stale;		/* the snapshot is its compaction's */
	off_t j_off;		/* end of the last complete line applied */
	size_t j_ops;		/* operations applied from it */
} file_state;

typedef struct file_ledger {
	char *dir;		/* [ledger] path */
	rules r;
	pthread_mutex_t mu;	/* serialises this process's writers */
	file_state st;
} file_ledger;

static void
read_boot_id(char *buf, size_t len)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	buf[0] = '\0';
	if (f == NULL)
		return;
	if (fgets(buf, (int)len, f) == NULL)
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

static long long
self_pidns(void)
{
	struct stat st;

	if (stat("/proc/self/ns/pid", &st) != 0)
		return 0;
	return (long long)st.st_ino;
}

static void
rules_init(rules *r, const pg_config *cfg, int other_boot_gone)
{
	r->window = cfg->separation.window;
	r->lease = (cfg->daemon.deadline_ms > 0 ?
		    (cfg->daemon.deadline_ms + 999) / 1000 : 10) +
		   PG_LEDGER_LEASE_MARGIN;
	r->ticket_keep = r->window > PG_LEDGER_TICKET_KEEP ? r->window :
			 PG_LEDGER_TICKET_KEEP;
	read_boot_id(r->boot_id, sizeof(r->boot_id));
	r->pidns = self_pidns();
	r->other_boot_gone = other_boot_gone;
}

/*
 * State and start time (field 22, clock ticks since boot) of PID from
 * /proc/PID/stat.  Returns 0, or -1 when it cannot be read.
 */
static int
proc_stat(long long pid, char *state, long long *start)
{
	char path[64], buf[1024], *p, *save = NULL, *tok;
	unsigned long long v;
	size_t n;
	FILE *f;
	int field;

	snprintf(path, sizeof(path), "/proc/%lld/stat", pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "PID (COMM) S ..." where COMM may hold spaces and parentheses. */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	p++;
	for (field = 3, tok = strtok_r(p, " ", &save); tok != NULL;
	     field++, tok = strtok_r(NULL, " ", &save)) {
		if (field == 3)
			*state = tok[0];
		if (field == 22) {
			errno = 0;
			v = strtoull(tok, NULL, 10);
			if (errno != 0 || v > (unsigned long long)INT64_MAX)
				return -1;
			*start = (long long)v;
			return 0;
		}
	}
	return -1;
}

/* Is the owner of reservation R certainly gone?  0 when alive or when it
 * cannot be told (then only the lease applies). */
static int
owner_gone(const rules *rl, json_t *r)
{
	const char *boot = json_string_value(json_object_get(r, "boot_id"));
	long long pid = json_integer_value(json_object_get(r, "pid"));
	long long start = json_integer_value(json_object_get(r, "start"));
	long long ns = json_integer_value(json_object_get(r, "pidns"));
	long long now_start = 0;
	char state = '?';

	if (boot[0] != '\0' && rl->boot_id[0] != '\0' &&
	    strcmp(boot, rl->boot_id) != 0)
		return rl->other_boot_gone;	/* rebooted, or another host */
	if (!rl->other_boot_gone && (boot[0] == '\0' || rl->boot_id[0] == '\0'))
		return 0;	/* several hosts: the same host cannot be told */
	if (ns == 0 || rl->pidns == 0 || ns != rl->pidns)
		return 0;	/* another pid namespace: cannot tell */
	if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
		return 1;
	/* It exists (or we may not signal it); /proc may hide it (hidepid):
	 * only a readable, contradicting entry counts. */
	if (proc_stat(pid, &state, &now_start) != 0)
		return 0;
	if (state == 'Z' || state == 'X')
		return 1;
	return start != 0 && now_start != start;
}

/* ---- the file backend: the state document --------------------------------- */

static const char *
S(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static int64_t
I(json_t *o, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(o, key));
}

static json_t *
empty_state(void)
{
	return json_pack("{s:i, s:[], s:{}, s:[], s:[]}", "version",
			 FORMAT_VERSION, "issued", "tickets", "last",
			 "reservations");
}

/* Is S exactly N lowercase hex digits? */
static int
lower_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[n] == '\0';
}

/* The message and code for the damaged file NAME of the ledger in DIR. */
static pg_err __attribute__((format(printf, 5, 6)))
corrupt(const char *dir, const char *name, char *err, size_t errlen,
	const char *fmt, ...)
{
	char what[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "ledger %s/%s is damaged: %s (refused; repair "
		 "or restore it)", dir, name, what);
	return PG_EPROTO;
}

static int
nonneg(json_t *o, const char *const *keys)
{
	for (; *keys != NULL; keys++)
		if (I(o, *keys) < 0)
			return 0;
	return 1;
}

static int
nonempty(json_t *o, const char *const *keys)
{
	const char *s;

	for (; *keys != NULL; keys++)
		if ((s = S(o, *keys)) == NULL || s[0] == '\0')
			return 0;
	return 1;
}

/* The kinds of record, each with exactly its keys (see ledger.h). */
enum rec { REC_ISSUED, REC_BINDING, REC_LAST, REC_RESERVATION };

/* Is E a well-formed record of KIND?  1, or 0 with the reason in WHY. */
static int
record_ok(enum rec kind, json_t *e, char *why, size_t whylen)
{
	static const char *const issued_n[] = { "ts", "expiration", NULL };
	static const char *const ticket_n[] = { "first", "last", "uses", NULL };
	static const char *const last_n[] = { "ts", NULL };
	static const char *const res_n[] = { "ts", "expires", "pid", "start",
					     "pidns", NULL };
	static const char *const urt[] = { "user", "role", "ticket", NULL };
	static const char *const ur[] = { "user", "role", NULL };
	static const char *const urti[] = { "user", "role", "ticket", "id",
					    NULL };
	json_error_t je;
	json_int_t n;
	const char *s;
	int r = -1;

	switch (kind) {
	case REC_ISSUED:
		r = json_unpack_ex(e, &je, JSON_STRICT,
				   "{s:s, s:s, s:s, s:I, s:I, s:s}", "user",
				   &s, "role", &s, "ticket", &s, "ts",
				   &n, "expiration", &n,
				   "access_key_id", &s);
		if (r == 0 && (!nonneg(e, issued_n) || !nonempty(e, urt))) {
			snprintf(why, whylen, "negative time or empty name");
			return 0;
		}
		break;
	case REC_BINDING:
		r = json_unpack_ex(e, &je, JSON_STRICT,
				   "{s:s, s:s, s:I, s:I, s:I}", "user", &s,
				   "role", &s, "first", &n, "last",
				   &n, "uses", &n);
		if (r == 0 && (!nonneg(e, ticket_n) || !nonempty(e, ur) ||
			       I(e, "uses") < 1)) {
			snprintf(why, whylen, "negative time or count, or "
				 "empty name");
			return 0;
		}
		break;
	case REC_LAST:
		r = json_unpack_ex(e, &je, JSON_STRICT, "{s:s, s:s, s:I}",
				   "user", &s, "role", &s, "ts", &n);
		if (r == 0 && (!nonneg(e, last_n) || !nonempty(e, ur))) {
			snprintf(why, whylen, "negative time or empty name");
			return 0;
		}
		break;
	case REC_RESERVATION:
		r = json_unpack_ex(e, &je, JSON_STRICT,
				   "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, "
				   "s:s, s:I}", "id", &s, "user", &s,
				   "role", &s, "ticket", &s, "ts", &n,
				   "expires", &n, "pid", &n,
				   "start", &n, "boot_id", &s,
				   "pidns", &n);
		if (r == 0 && (!nonneg(e, res_n) || !nonempty(e, urti) ||
			       I(e, "pid") < 1)) {
			snprintf(why, whylen, "bad pid, negative time or empty "
				 "name");
			return 0;
		}
		break;
	}
	if (r != 0) {
		snprintf(why, whylen, "%s", je.text);
		return 0;
	}
	return 1;
}

/*
 * Check ROOT against the snapshot format, strictly: version 1, or version
 * 2 (the keys of version 1 and "compacted").  COMPACTED receives the id of
 * the journal whose compaction wrote it ("" for null, and for version 1).
 */
static pg_err
validate(const file_ledger *fl, json_t *root, char compacted[JID_HEX],
	 char *err, size_t errlen)
{
	json_t *issued, *tickets, *last, *res, *e, *comp = NULL;
	json_int_t version;
	json_error_t je;
	const char *key, *d = fl->dir, *f = LEDGER_FILE;
	char why[200];
	size_t i;
	int r;

	compacted[0] = '\0';
	if (json_unpack_ex(root, &je, 0, "{s:I}", "version", &version) != 0)
		return corrupt(d, f, err, errlen, "%s", je.text);
	if (version == 1)
		r = json_unpack_ex(root, &je, JSON_STRICT,
				   "{s:I, s:o, s:o, s:o, s:o}", "version",
				   &version, "issued", &issued, "tickets",
				   &tickets, "last", &last, "reservations",
				   &res);
	else if (version == FORMAT_VERSION)
		r = json_unpack_ex(root, &je, JSON_STRICT,
				   "{s:I, s:o, s:o, s:o, s:o, s:o}", "version",
				   &version, "issued", &issued, "tickets",
				   &tickets, "last", &last, "reservations",
				   &res, "compacted", &comp);
	else
		return corrupt(d, f, err, errlen, "version %lld, expected 1 or "
			       "%d", (long long)version, FORMAT_VERSION);
	if (r != 0)
		return corrupt(d, f, err, errlen, "%s", je.text);
	if (comp != NULL && !json_is_null(comp)) {
		if (!json_is_string(comp) ||
		    json_string_length(comp) != JID_HEX - 1 ||
		    !lower_hex(json_string_value(comp), JID_HEX - 1))
			return corrupt(d, f, err, errlen, "compacted: neither "
				       "null nor a journal id (%d lowercase hex "
				       "digits)", JID_HEX - 1);
		memcpy(compacted, json_string_value(comp), JID_HEX);
	}
	if (!json_is_array(issued) || !json_is_object(tickets) ||
	    !json_is_array(last) || !json_is_array(res))
		return corrupt(d, f, err, errlen, "issued, last and "
			       "reservations must be arrays, tickets an object");
	json_array_foreach(issued, i, e)
		if (!record_ok(REC_ISSUED, e, why, sizeof(why)))
			return corrupt(d, f, err, errlen, "issued[%zu]: %s",
				       i, why);
	json_object_foreach(tickets, key, e)
		if (key[0] == '\0' || !record_ok(REC_BINDING, e, why,
						  sizeof(why)))
			return corrupt(d, f, err, errlen, "tickets: the "
				       "binding of a ticket is malformed");
	json_array_foreach(last, i, e)
		if (!record_ok(REC_LAST, e, why, sizeof(why)))
			return corrupt(d, f, err, errlen, "last[%zu]: %s", i,
				       why);
	json_array_foreach(res, i, e)
		if (!record_ok(REC_RESERVATION, e, why, sizeof(why)))
			return corrupt(d, f, err, errlen,
				       "reservations[%zu]: %s", i, why);
	return PG_OK;
}

/* ---- the file backend: liveness and evaluation ----------------------------- */

static int
issue_live(const rules *rl, json_t *e, int64_t now)
{
	return now - I(e, "ts") < rl->window;
}

static int
binding_live(const rules *rl, json_t *t, int64_t now)
{
	return now - I(t, "last") < rl->ticket_keep;
}

static int
last_live(json_t *e, int64_t now)
{
	return now - I(e, "ts") < PG_LEDGER_LAST_KEEP;
}

static int
reservation_live(const rules *rl, json_t *r, int64_t now)
{
	return now < I(r, "expires") && !owner_gone(rl, r);
}

/* R6/R7 view of ROOT for Q (see ledger.h, "Rules"). */
static void
evaluate(const rules *rl, json_t *root, const query *q, view *v)
{
	json_t *issued = json_object_get(root, "issued");
	json_t *res = json_object_get(root, "reservations");
	json_t *e, *t = NULL;
	int64_t ts;
	size_t i;

	memset(v, 0, sizeof(*v));
	json_array_foreach(issued, i, e) {
		ts = I(e, "ts");
		if (!issue_live(rl, e, q->now) ||
		    strcmp(S(e, "user"), q->user) != 0 ||
		    !in_list(S(e, "role"), q->conflicts, q->n_conflicts))
			continue;
		if (v->conflict_role == NULL || ts > v->conflict_ts) {
			v->conflict_role = S(e, "role");
			v->conflict_ts = ts;
		}
	}
	if (q->ticket != NULL) {
		t = json_object_get(json_object_get(root, "tickets"),
				    q->ticket);
		if (t != NULL && binding_live(rl, t, q->now)) {
			v->bound_user = S(t, "user");
			v->bound_role = S(t, "role");
			v->uses = (int)(I(t, "uses") > 1000000000 ?
					1000000000 : I(t, "uses"));
		}
	}
	json_array_foreach(res, i, e) {
		if (!reservation_live(rl, e, q->now))
			continue;
		ts = I(e, "ts");
		if (strcmp(S(e, "user"), q->user) == 0 &&
		    in_list(S(e, "role"), q->conflicts, q->n_conflicts) &&
		    (v->conflict_role == NULL || ts > v->conflict_ts)) {
			v->conflict_role = S(e, "role");
			v->conflict_ts = ts;
		}
		if (q->ticket == NULL || strcmp(S(e, "ticket"), q->ticket) != 0)
			continue;
		if (v->bound_user == NULL) {
			v->bound_user = S(e, "user");
			v->bound_role = S(e, "role");
		}
		if (v->uses < 1000000000)
			v->uses++;
	}
}

/* Drop the issuances, bindings and last entries that no longer matter at
 * NOW. */
static void
purge_records(const rules *rl, json_t *root, int64_t now)
{
	json_t *issued = json_object_get(root, "issued");
	json_t *last = json_object_get(root, "last");
	json_t *tickets = json_object_get(root, "tickets");
	const char *key;
	json_t *e;
	void *tmp;
	size_t i;

	for (i = json_array_size(issued); i-- > 0;)
		if (!issue_live(rl, json_array_get(issued, i), now))
			json_array_remove(issued, i);
	for (i = json_array_size(last); i-- > 0;)
		if (!last_live(json_array_get(last, i), now))
			json_array_remove(last, i);
	json_object_foreach_safe(tickets, tmp, key, e)
		if (!binding_live(rl, e, now))
			json_object_del(tickets, key);
}

/* Drop the reservations that are void at NOW. */
static void
purge_reservations(const rules *rl, json_t *root, int64_t now)
{
	json_t *res = json_object_get(root, "reservations");
	size_t i;

	for (i = json_array_size(res); i-- > 0;)
		if (!reservation_live(rl, json_array_get(res, i), now))
			json_array_remove(res, i);
}

/* A + B for B >= 0, INT64_MAX when it would overflow. */
static int64_t
sat_add(int64_t a, int64_t b)
{
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* The shortest time any issuance, binding or last entry is kept. */
static int64_t
min_keep(const rules *rl)
{
	return rl->window < PG_LEDGER_LAST_KEEP ? rl->window :
	       PG_LEDGER_LAST_KEEP;
}

/* The earliest time at which purge_records() would drop a record of ROOT
 * (INT64_MAX when there is none). */
static int64_t
records_next_death(const rules *rl, json_t *root)
{
	int64_t t = INT64_MAX, d;
	const char *key;
	json_t *e;
	size_t i;

	json_array_foreach(json_object_get(root, "issued"), i, e)
		if ((d = sat_add(I(e, "ts"), rl->window)) < t)
			t = d;
	json_array_foreach(json_object_get(root, "last"), i, e)
		if ((d = sat_add(I(e, "ts"), PG_LEDGER_LAST_KEEP)) < t)
			t = d;
	json_object_foreach(json_object_get(root, "tickets"), key, e)
		if ((d = sat_add(I(e, "last"), rl->ticket_keep)) < t)
			t = d;
	return t;
}

/* The index of the reservation ID, or -1. */
static ssize_t
find_reservation(json_t *root, const char *id)
{
	json_t *res = json_object_get(root, "reservations");
	size_t i;

	for (i = 0; i < json_array_size(res); i++)
		if (strcmp(S(json_array_get(res, i), "id"), id) == 0)
			return (ssize_t)i;
	return -1;
}

/* The ticket's binding after an issuance by RES at its ts. */
static int
bind_ticket(const rules *rl, json_t *root, const pg_reservation *res)
{
	json_t *tickets = json_object_get(root, "tickets");
	json_t *t = json_object_get(tickets, res->ticket);

	if (t != NULL && binding_live(rl, t, res->ts)) {
		if (strcmp(S(t, "user"), res->user) != 0 ||
		    strcmp(S(t, "role"), res->role) != 0)
			return 0;	/* bound to the first use, it stays */
		if (I(t, "uses") < INT32_MAX &&
		    json_object_set_new(t, "uses",
					json_integer(I(t, "uses") + 1)) != 0)
			return -1;
		if (res->ts > I(t, "last") &&
		    json_object_set_new(t, "last", json_integer(res->ts)) != 0)
			return -1;
		return 0;
	}
	t = json_pack("{s:s, s:s, s:I, s:I, s:i}", "user", res->user, "role",
		      res->role, "first", (json_int_t)res->ts, "last",
		      (json_int_t)res->ts, "uses", 1);
	return t == NULL || json_object_set_new(tickets, res->ticket, t) != 0 ?
	       -1 : 0;
}

/* The last-issuance entry of RES's user and role in ROOT, or NULL. */
static json_t *
last_find(json_t *root, const pg_reservation *res)
{
	json_t *e;
	size_t i;

	json_array_foreach(json_object_get(root, "last"), i, e)
		if (strcmp(S(e, "user"), res->user) == 0 &&
		    strcmp(S(e, "role"), res->role) == 0)
			return e;
	return NULL;
}

/* Note RES in E, the last-issuance entry of its user and role (NULL:
 * there is none yet, append one). */
static int
last_note(json_t *root, json_t *e, const pg_reservation *res)
{
	if (e != NULL)
		return res->ts > I(e, "ts") ?
		       json_object_set_new(e, "ts", json_integer(res->ts)) : 0;
	return json_array_append_new(json_object_get(root, "last"),
				     json_pack("{s:s, s:s, s:I}", "user",
					       res->user, "role", res->role,
					       "ts", (json_int_t)res->ts));
}

/* The user's last issuance of the role. */
static int
note_last(json_t *root, const pg_reservation *res)
{
	return last_note(root, last_find(root, res), res);
}

/* ---- the file backend: files ------------------------------------------------ */

/* Open and check the directory. */
static pg_err
open_dir(const file_ledger *fl, int *dfd, char *err, size_t errlen)
{
	struct stat st;
	uid_t euid = geteuid();
	int fd;

	*dfd = -1;
	fd = open(fl->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen, "ledger directory %s: %s", fl->dir,
			 e == ELOOP || e == ENOTDIR ? "not a directory (or a "
			 "symbolic link)" : strerror(e));
		return e == ELOOP || e == ENOTDIR ? PG_ECONFIG : PG_EUNAVAIL;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "ledger directory %s: %s", fl->dir,
			 strerror(errno));
		close(fd);
		return PG_EUNAVAIL;
	}
	if (!S_ISDIR(st.st_mode) || (st.st_uid != 0 && st.st_uid != euid) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		snprintf(err, errlen, "ledger directory %s must be a directory "
			 "owned by root or uid %lu and not writable by group or "
			 "others (owner uid %lu, mode %04o)", fl->dir,
			 (unsigned long)euid, (unsigned long)st.st_uid,
			 (unsigned)(st.st_mode & 07777));
		close(fd);
		return PG_ECONFIG;
	}
	*dfd = fd;
	return PG_OK;
}

/* Open NAME in the directory with FLAGS (O_NOFOLLOW added; MODE when
 * created) and check it. */
static pg_err
open_file(const file_ledger *fl, int dfd, const char *name, int flags,
	  mode_t mode, int *out, char *err, size_t errlen)
{
	char what[512];
	int fd, e;
	pg_err rc;

	*out = -1;
	snprintf(what, sizeof(what), "ledger %s/%s", fl->dir, name);
	fd = openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
		    O_NONBLOCK, mode);
	if (fd < 0) {
		e = errno;
		if (e == ENOENT)
			return PG_ENOTFOUND;
		snprintf(err, errlen, "%s: %s", what, e == ELOOP ?
			 "is a symbolic link (refused)" : strerror(e));
		return e == ELOOP ? PG_ECONFIG : PG_EUNAVAIL;
	}
	if ((rc = pg_check_fd_perms(fd, what, 0, err, errlen)) != PG_OK) {
		close(fd);
		return rc;
	}
	*out = fd;
	return PG_OK;
}

/*
 * Read WANT bytes of NAME (open on FD) from offset OFF, or up to its end
 * when it is shorter, into *OUT (NUL-terminated; free it), *OUTLEN bytes.
 * A file larger than PG_LEDGER_MAX_FILE is refused as damaged.
 */
static pg_err
read_at(const file_ledger *fl, const char *name, int fd, off_t off,
	size_t want, char **out, size_t *outlen, char *err, size_t errlen)
{
	char *buf;
	size_t len = 0;
	ssize_t n;

	*out = NULL;
	*outlen = 0;
	if ((uint64_t)off + want > PG_LEDGER_MAX_FILE)
		return corrupt(fl->dir, name, err, errlen, "larger than %u "
			       "bytes", PG_LEDGER_MAX_FILE);
	if ((buf = malloc(want + 1)) == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		return PG_ENOMEM;
	}
	while (len < want) {
		n = pread(fd, buf + len, want - len, off + (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "ledger %s/%s: cannot read: %s",
				 fl->dir, name, strerror(errno));
			free(buf);
			return PG_EUNAVAIL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return PG_OK;
}

/* Lowercase hex SHA-256 of BUF.  0, or -1 when it cannot be computed. */
static int
hash_hex(const char *buf, size_t len, char out[HASH_HEX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;

	out[0] = '\0';
	if (EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL) != 1 ||
	    n * 2 + 1 != HASH_HEX)
		return -1;
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/*
 * Read and validate the snapshot; a missing file is an empty ledger (the
 * caller decides whether it may be missing).  *FDP receives the open
 * descriptor of the file read (-1 for a missing one), HASH the SHA-256 of
 * its bytes ("" for a missing one), COMPACTED its "compacted" ("" for
 * null or a missing file).  *OUT holds the records (and "version"), not
 * "compacted": dump_state writes that anew.
 */
static pg_err
read_state(const file_ledger *fl, int dfd, json_t **out, int *fdp,
	   char hash[HASH_HEX], char compacted[JID_HEX], char *err,
	   size_t errlen)
{
	json_error_t je;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	json_t *root = NULL;
	pg_err rc;
	int fd;

	*out = NULL;
	*fdp = -1;
	hash[0] = '\0';
	compacted[0] = '\0';
	rc = open_file(fl, dfd, LEDGER_FILE, O_RDONLY, 0, &fd, err, errlen);
	if (rc == PG_ENOTFOUND) {
		if ((*out = empty_state()) == NULL) {
			snprintf(err, errlen, "ledger: out of memory");
			return PG_ENOMEM;
		}
		return PG_OK;
	}
	if (rc != PG_OK)
		return rc;
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "ledger %s/%s: %s", fl->dir, LEDGER_FILE,
			 strerror(errno));
		rc = PG_EUNAVAIL;
		goto out;
	}
	/* One byte more than the limit, so that a larger file is seen. */
	if ((rc = read_at(fl, LEDGER_FILE, fd, 0, (size_t)st.st_size >
			  PG_LEDGER_MAX_FILE ? PG_LEDGER_MAX_FILE + 1 :
			  (size_t)st.st_size, &buf, &len, err,
			  errlen)) != PG_OK)
		goto out;
	if (len > PG_LEDGER_MAX_FILE) {
		rc = corrupt(fl->dir, LEDGER_FILE, err, errlen, "larger than "
			     "%u bytes", PG_LEDGER_MAX_FILE);
		goto out;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		rc = corrupt(fl->dir, LEDGER_FILE, err, errlen, "%s (line %ld)",
			     je.text, (long)je.line);
		goto out;
	}
	if ((rc = validate(fl, root, compacted, err, errlen)) != PG_OK)
		goto out;
	(void)json_object_del(root, "compacted");	/* absent in version 1 */
	if (hash_hex(buf, len, hash) != 0) {
		snprintf(err, errlen, "ledger: cannot compute SHA-256");
		rc = PG_EINTERNAL;
		goto out;
	}
	*out = root;
	root = NULL;
	*fdp = fd;
	fd = -1;
out:
	json_decref(root);
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * The state ROOT as ledger.json holds it, in the format version written,
 * naming COMPACTED (NULL: null) as the journal whose operations it holds:
 * compact, keys sorted, one newline.  NULL when out of memory.
 */
static char *
dump_state(json_t *root, const char *compacted, size_t *len)
{
	char *text = NULL, *buf;
	json_t *doc;

	/* A shallow copy: the records are shared, not copied. */
	if ((doc = json_copy(root)) != NULL &&
	    json_object_set_new(doc, "version",
				json_integer(FORMAT_VERSION)) == 0 &&
	    json_object_set_new(doc, "compacted", compacted != NULL ?
				json_string(compacted) : json_null()) == 0)
		text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(doc);
	if (text == NULL)
		return NULL;
	*len = strlen(text);
	if ((buf = realloc(text, *len + 2)) == NULL) {
		free(text);
		return NULL;
	}
	buf[(*len)++] = '\n';
	buf[*len] = '\0';
	return buf;
}

/*
 * Replace NAME by a file holding BUF: write it to TMP (O_CREAT|O_EXCL|
 * O_NOFOLLOW, 0600), fsync it, rename it over NAME, fsync the directory.
 * Called with the lock held (a leftover TMP is a dead writer's, and
 * removed).  On PG_OK *FDP is an open (read-write) descriptor of the new
 * file.  The file is synced before the rename, so whatever a crash leaves
 * under NAME is whole; the directory sync makes the rename itself last.
 */
static pg_err
replace_file(const file_ledger *fl, int dfd, const char *tmp,
	     const char *name, const char *buf, size_t len, int *fdp,
	     char *err, size_t errlen)
{
	size_t off = 0;
	ssize_t n;
	pg_err rc = PG_EUNAVAIL;
	int fd = -1, created = 0;

	*fdp = -1;
	if (unlinkat(dfd, tmp, 0) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "ledger %s/%s: cannot remove: %s",
			 fl->dir, tmp, strerror(errno));
		goto out;
	}
	fd = openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "ledger %s/%s: cannot create: %s",
			 fl->dir, tmp, strerror(errno));
		goto out;
	}
	created = 1;
	while (off < len) {
		n = write(fd, buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "ledger %s/%s: cannot write: %s",
				 fl->dir, tmp, n < 0 ? strerror(errno) :
				 "short write");
			goto out;
		}
		off += (size_t)n;
	}
	if (fsync(fd) != 0) {
		snprintf(err, errlen, "ledger %s/%s: fsync: %s", fl->dir, tmp,
			 strerror(errno));
		goto out;
	}
	if (renameat(dfd, tmp, dfd, name) != 0) {
		snprintf(err, errlen, "ledger %s/%s: rename: %s", fl->dir,
			 name, strerror(errno));
		goto out;
	}
	created = 0;
	if (fsync(dfd) != 0) {
		snprintf(err, errlen, "ledger directory %s: fsync: %s",
			 fl->dir, strerror(errno));
		goto out;
	}
	*fdp = fd;
	fd = -1;
	rc = PG_OK;
out:
	if (fd >= 0)
		close(fd);
	if (created)
		(void)unlinkat(dfd, tmp, 0);
	return rc;
}

/* Take the file lock on a descriptor of our own, waiting a bounded time. */
static pg_err
lock_file(const file_ledger *fl, int dfd, int *lfd, char *err, size_t errlen)
{
	struct timespec ts;
	long waited = 0, step = 1;
	pg_err rc;
	int fd;

	rc = open_file(fl, dfd, LOCK_FILE, O_RDONLY | O_CREAT, LOCK_MODE, &fd,
		       err, errlen);
	if (rc == PG_ENOTFOUND) {
		snprintf(err, errlen, "ledger %s/%s: vanished", fl->dir,
			 LOCK_FILE);
		rc = PG_EUNAVAIL;
	}
	if (rc != PG_OK)
		return rc;
	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			snprintf(err, errlen, "ledger %s/%s: flock: %s",
				 fl->dir, LOCK_FILE, strerror(errno));
			close(fd);
			return PG_EUNAVAIL;
		}
		if (waited >= PG_LEDGER_LOCK_WAIT_MS) {
			snprintf(err, errlen, "ledger %s/%s: still locked after "
				 "%d ms", fl->dir, LOCK_FILE,
				 PG_LEDGER_LOCK_WAIT_MS);
			close(fd);
			return PG_EBUSY;
		}
		ts.tv_sec = 0;
		ts.tv_nsec = step * 1000000L;
		nanosleep(&ts, NULL);
		waited += step;
		if (step < 8)
			step *= 2;
	}
	*lfd = fd;
	return PG_OK;
}

/* ---- the file backend: the journal ------------------------------------- */

/* The operations of the journal (see ledger.h). */
enum jop { JOP_RESERVE, JOP_COMMIT, JOP_RELEASE };

/* Is S a reservation id a journal operation may name? */
static int
id_ok(const char *s)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= ID_MAX;
}

/*
 * Parse and check one journal line LINE (LEN bytes, without its newline).
 * 0 with *OP the operation ({"reserve": {...}}, {"commit": {...}} or
 * {"release": {...}}; the caller releases it) and *KIND its kind, or -1
 * with the reason in WHY.
 */
static int
parse_op(const char *line, size_t len, json_t **op, enum jop *kind,
	 char *why, size_t whylen)
{
	static const char *const commit_n[] = { "ts", "expiration", NULL };
	static const char *const commit_s[] = { "id", "user", "role", "ticket",
						NULL };
	json_error_t je;
	json_int_t n;
	json_t *root, *v;
	const char *key, *s;
	int ok = 0;

	*op = NULL;
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		snprintf(why, whylen, "%s", je.text);
		return -1;
	}
	if (!json_is_object(root) || json_object_size(root) != 1) {
		snprintf(why, whylen, "not an object with one operation");
		goto out;
	}
	key = json_object_iter_key(json_object_iter(root));
	v = json_object_iter_value(json_object_iter(root));
	if (strcmp(key, "reserve") == 0) {
		*kind = JOP_RESERVE;
		if (!record_ok(REC_RESERVATION, v, why, whylen))
			goto out;
		if (!id_ok(S(v, "id"))) {
			snprintf(why, whylen, "reservation id too long");
			goto out;
		}
	} else if (strcmp(key, "commit") == 0) {
		*kind = JOP_COMMIT;
		if (json_unpack_ex(v, &je, JSON_STRICT,
				   "{s:s, s:s, s:s, s:s, s:I, s:I, s:s}",
				   "id", &s, "user", &s, "role", &s, "ticket",
				   &s, "ts", &n, "expiration", &n,
				   "access_key_id", &s) != 0) {
			snprintf(why, whylen, "commit: %s", je.text);
			goto out;
		}
		if (!nonneg(v, commit_n) || !nonempty(v, commit_s) ||
		    !id_ok(S(v, "id"))) {
			snprintf(why, whylen, "commit: negative time, empty "
				 "name or bad id");
			goto out;
		}
	} else if (strcmp(key, "release") == 0) {
		*kind = JOP_RELEASE;
		if (json_unpack_ex(v, &je, JSON_STRICT, "{s:s}", "id",
				   &s) != 0) {
			snprintf(why, whylen, "release: %s", je.text);
			goto out;
		}
		if (!id_ok(s)) {
			snprintf(why, whylen, "release: bad id");
			goto out;
		}
	} else {
		snprintf(why, whylen, "unknown operation");
		goto out;
	}
	ok = 1;
out:
	if (ok)
		*op = root;
	else
		json_decref(root);
	return ok ? 0 : -1;
}

/*
 * Parse the header line LINE (LEN bytes, without its newline),
 * {"id": ID, "snapshot": HASH}, into HASH (the SHA-256 of the snapshot
 * the journal follows) and ID (the journal's own).  0, or -1 with the
 * reason in WHY.
 */
static int
parse_header(const char *line, size_t len, char hash[HASH_HEX],
	     char id[JID_HEX], char *why, size_t whylen)
{
	json_error_t je;
	json_t *root, *h = NULL, *j = NULL;
	int ok = 0;

	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		snprintf(why, whylen, "header: %s", je.text);
		return -1;
	}
	if (json_unpack_ex(root, &je, JSON_STRICT, "{s:o, s:o}", "id", &j,
			   "snapshot", &h) != 0) {
		snprintf(why, whylen, "header: %s", je.text);
		goto out;
	}
	if (!json_is_string(h) || json_string_length(h) != HASH_HEX - 1 ||
	    !lower_hex(json_string_value(h), HASH_HEX - 1)) {
		snprintf(why, whylen, "header: snapshot is not a lowercase hex "
			 "SHA-256");
		goto out;
	}
	if (!json_is_string(j) || json_string_length(j) != JID_HEX - 1 ||
	    !lower_hex(json_string_value(j), JID_HEX - 1)) {
		snprintf(why, whylen, "header: id is not %d lowercase hex "
			 "digits", JID_HEX - 1);
		goto out;
	}
	memcpy(hash, json_string_value(h), HASH_HEX);
	memcpy(id, json_string_value(j), JID_HEX);
	ok = 1;
out:
	json_decref(root);
	return ok ? 0 : -1;
}

/* The key of a user and role in last_idx: "<length of user>:<user><role>"
 * (unambiguous whatever the names hold).  NULL when out of memory. */
static char *
last_key(const char *user, const char *role)
{
	size_t len = strlen(user) + strlen(role) + 24;
	char *k = malloc(len);

	if (k != NULL)
		snprintf(k, len, "%zu:%s%s", strlen(user), user, role);
	return k;
}

/* Index root's last entries anew.  0, or -1 out of memory. */
static int
last_index(file_state *s)
{
	json_t *e;
	size_t i;
	char *k;
	int rc = 0;

	json_decref(s->last_idx);
	if ((s->last_idx = json_object()) == NULL)
		return -1;
	json_array_foreach(json_object_get(s->root, "last"), i, e) {
		if ((k = last_key(S(e, "user"), S(e, "role"))) == NULL ||
		    json_object_set(s->last_idx, k, e) != 0)
			rc = -1;
		free(k);
		if (rc != 0)
			break;
	}
	return rc;
}

/* Do the deferred purge of issuances, bindings and last entries, scanning
 * them only when one may have lapsed (pending >= next_death).  0, or -1
 * out of memory (the state must then be dropped). */
static int
state_flush(file_ledger *fl)
{
	file_state *s = &fl->st;
	size_t n;

	if (!s->pending_set)
		return 0;
	s->pending_set = 0;
	if (s->pending < s->next_death)
		return 0;
	n = json_array_size(json_object_get(s->root, "last"));
	purge_records(&fl->r, s->root, s->pending);
	s->next_death = records_next_death(&fl->r, s->root);
	if (json_array_size(json_object_get(s->root, "last")) != n)
		return last_index(s);
	return 0;
}

/*
 * Drop what no longer matters at NOW, for an operation being applied:
 * the void reservations at once; the lapsed issuances, bindings and last
 * entries at the end of the batch of operations being applied
 * (state_flush), or before the first operation of the batch whose time
 * is earlier than one before it.  The result is the same as purging
 * everything at every operation: while times do not go back, a record
 * that lapsed by one operation's time has lapsed by every later one's,
 * so it goes by the last time all the same; and the operations in
 * between treat it as if it were gone (bind_ticket replaces a binding
 * that lapsed by its time, last_note moves a lapsed last entry to its
 * time, which is what a new entry holds; issuances are only added).
 * Nothing evaluates the state in the middle of a batch.  0, or -1 out of
 * memory.
 */
static int
state_purge(file_ledger *fl, int64_t now)
{
	file_state *s = &fl->st;

	purge_reservations(&fl->r, s->root, now);
	if (s->pending_set && now < s->pending && state_flush(fl) != 0)
		return -1;
	if (!s->pending_set || now > s->pending)
		s->pending = now;
	s->pending_set = 1;
	return 0;
}

/* The user's last issuance of the role, found through last_idx. */
static int
state_note_last(file_state *s, const pg_reservation *res)
{
	json_t *e, *last = json_object_get(s->root, "last");
	char *k;
	int rc = -1;

	if ((k = last_key(res->user, res->role)) == NULL)
		return -1;
	e = json_object_get(s->last_idx, k);
	if (last_note(s->root, e, res) != 0)
		goto out;
	if (e == NULL &&
	    json_object_set(s->last_idx, k,
			    json_array_get(last, json_array_size(last) - 1)) != 0)
		goto out;
	rc = 0;
out:
	free(k);
	return rc;
}

/*
 * A commit: the reservation C names becomes an issuance, its ticket is
 * bound or its use counted, the last issuance noted, and records that
 * lapsed by the reservation's time dropped.  0, or -1 out of memory.
 */
static int
apply_commit(file_ledger *fl, json_t *c)
{
	json_t *root = fl->st.root, *rec;
	pg_reservation *res;
	ssize_t i;
	int rc = -1;

	if ((res = calloc(1, sizeof(*res))) == NULL ||
	    (res->user = strdup(S(c, "user"))) == NULL ||
	    (res->role = strdup(S(c, "role"))) == NULL ||
	    (res->ticket = strdup(S(c, "ticket"))) == NULL)
		goto out;
	snprintf(res->id, sizeof(res->id), "%s", S(c, "id"));
	res->ts = I(c, "ts");
	if ((i = find_reservation(root, res->id)) >= 0)
		json_array_remove(json_object_get(root, "reservations"),
				  (size_t)i);
	rec = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "user", res->user,
			"role", res->role, "ticket", res->ticket, "ts",
			(json_int_t)res->ts, "expiration",
			(json_int_t)I(c, "expiration"), "access_key_id",
			S(c, "access_key_id"));
	if (rec == NULL ||
	    json_array_append_new(json_object_get(root, "issued"), rec) != 0 ||
	    bind_ticket(&fl->r, root, res) != 0 ||
	    state_note_last(&fl->st, res) != 0)
		goto out;
	/* What was added lapses at res->ts + min_keep at the earliest. */
	if (sat_add(res->ts, min_keep(&fl->r)) < fl->st.next_death)
		fl->st.next_death = sat_add(res->ts, min_keep(&fl->r));
	if (state_purge(fl, res->ts) != 0)
		goto out;
	rc = 0;
out:
	reservation_free(res);
	return rc;
}

/* Apply OP (checked by parse_op) to the state.  0, or -1 out of memory:
 * the state is then half changed and must be dropped. */
static int
apply_op(file_ledger *fl, json_t *op, enum jop kind)
{
	json_t *v = json_object_iter_value(json_object_iter(op));
	json_t *res = json_object_get(fl->st.root, "reservations");
	int64_t ts;
	ssize_t i;

	switch (kind) {
	case JOP_RESERVE:
		if (state_purge(fl, I(v, "ts")) != 0)
			return -1;
		return json_array_append(res, v);
	case JOP_COMMIT:
		return apply_commit(fl, v);
	case JOP_RELEASE:
		if ((i = find_reservation(fl->st.root, S(v, "id"))) < 0)
			return 0;	/* lapsed already */
		ts = I(json_array_get(res, (size_t)i), "ts");
		json_array_remove(res, (size_t)i);
		return state_purge(fl, ts);
	}
	return -1;
}

/*
 * Apply the complete lines of BUF (LEN bytes of the journal, read at
 * offset BASE) to the state; *USED: the bytes up to the end of the last
 * complete line.  What follows it is a line being written (or left by a
 * writer that crashed): not read.  A complete line that is not an
 * operation: PG_EPROTO.  On an error the state is half changed.
 */
static pg_err
consume(file_ledger *fl, const char *buf, size_t len, off_t base,
	size_t *used, char *err, size_t errlen)
{
	const char *p = buf, *nl;
	enum jop kind;
	char why[256];
	json_t *op;
	int r;

	*used = 0;
	while ((nl = memchr(p, '\n', len - (size_t)(p - buf))) != NULL) {
		if (parse_op(p, (size_t)(nl - p), &op, &kind, why,
			     sizeof(why)) != 0)
			return corrupt(fl->dir, JOURNAL_FILE, err, errlen,
				       "the operation at byte %lld: %s",
				       (long long)(base + (p - buf)), why);
		r = apply_op(fl, op, kind);
		json_decref(op);
		if (r != 0) {
			snprintf(err, errlen, "ledger: out of memory");
			return PG_ENOMEM;
		}
		fl->st.j_ops++;
		p = nl + 1;
		*used = (size_t)(p - buf);
	}
	if (state_flush(fl) != 0) {
		snprintf(err, errlen, "ledger: out of memory");
		return PG_ENOMEM;
	}
	return PG_OK;
}

/* ---- the file backend: the cached state ---------------------------------- */

static int
same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Is B (an lstat of the name now) the file A was when it was cached? */
static int
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size && a->st_mode == b->st_mode &&
	       a->st_uid == b->st_uid && a->st_gid == b->st_gid &&
	       a->st_nlink == b->st_nlink &&
	       same_time(&a->st_mtim, &b->st_mtim) &&
	       same_time(&a->st_ctim, &b->st_ctim);
}

/* Does NAME in DFD name the file cached as FD/ST (FD -1: is it still
 * missing)? */
static int
name_unchanged(int dfd, const char *name, int fd, const struct stat *st)
{
	struct stat now;

	if (fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0)
		return fd < 0 && errno == ENOENT;
	return fd >= 0 && same_file(st, &now);
}

/* Is the cached state that of the files now?  (A lock on rw held.) */
static int
state_fresh(const file_state *s, int dfd)
{
	return s->root != NULL &&
	       name_unchanged(dfd, LEDGER_FILE, s->snap_fd, &s->snap_st) &&
	       name_unchanged(dfd, JOURNAL_FILE, s->j_fd, &s->j_st);
}

static void
state_init(file_state *s)
{
	s->root = NULL;
	s->next_death = 0;
	s->pending = 0;
	s->pending_set = 0;
	s->last_idx = NULL;
	s->snap_fd = s->j_fd = -1;
	memset(&s->snap_st, 0, sizeof(s->snap_st));
	memset(&s->j_st, 0, sizeof(s->j_st));
	s->snap_hash[0] = '\0';
	s->snap_compacted[0] = '\0';
	s->j_id[0] = '\0';
	s->j_stale = 0;
	s->j_off = 0;
	s->j_ops = 0;
}

/* Forget the cached state (rw held for writing, or no other user). */
static void
state_reset(file_state *s)
{
	json_decref(s->root);
	json_decref(s->last_idx);
	if (s->snap_fd >= 0)
		close(s->snap_fd);
	if (s->j_fd >= 0)
		close(s->j_fd);
	state_init(s);
}

/*
 * Read the state from the start: the snapshot, then the journal's
 * operations when its header names the snapshot's SHA-256 (and the
 * snapshot does not name the journal as compacted).  A journal the
 * snapshot names as compacted is stale (see ledger.h) and ignored.  Any
 * other journal is damage, as is a journal without a snapshot: refused,
 * unless ledger.json was created or replaced while it was read (a first
 * writer, or a compaction that renamed a new snapshot and then a new
 * journal in between); then read again.
 * rw held for writing; on an error nothing is cached.
 */
static pg_err
state_load(file_ledger *fl, int dfd, char *err, size_t errlen)
{
	file_state *s = &fl->st;
	char *buf = NULL, hash[HASH_HEX], why[256];
	int follows, compacted;
	const char *nl;
	size_t len = 0, used, hl;
	pg_err rc = PG_OK;
	int attempt;

	for (attempt = 0; attempt < LOAD_ATTEMPTS; attempt++) {
		state_reset(s);
		free(buf);
		buf = NULL;
		rc = read_state(fl, dfd, &s->root, &s->snap_fd, s->snap_hash,
				s->snap_compacted, err, errlen);
		if (rc != PG_OK)
			goto out;
		if (s->snap_fd >= 0 && fstat(s->snap_fd, &s->snap_st) != 0) {
			snprintf(err, errlen, "ledger %s/%s: %s", fl->dir,
				 LEDGER_FILE, strerror(errno));
			rc = PG_EUNAVAIL;
			goto out;
		}
		s->next_death = records_next_death(&fl->r, s->root);
		if (last_index(s) != 0) {
			snprintf(err, errlen, "ledger: out of memory");
			rc = PG_ENOMEM;
			goto out;
		}
		rc = open_file(fl, dfd, JOURNAL_FILE, O_RDONLY, 0, &s->j_fd,
			       err, errlen);
		if (rc == PG_ENOTFOUND) {
			rc = PG_OK;	/* no journal */
			goto out;
		}
		if (rc != PG_OK)
			goto out;
		if (fstat(s->j_fd, &s->j_st) != 0) {
			snprintf(err, errlen, "ledger %s/%s: %s", fl->dir,
				 JOURNAL_FILE, strerror(errno));
			rc = PG_EUNAVAIL;
			goto out;
		}
		rc = read_at(fl, JOURNAL_FILE, s->j_fd, 0,
			     (size_t)s->j_st.st_size > PG_LEDGER_MAX_FILE ?
			     PG_LEDGER_MAX_FILE + 1 : (size_t)s->j_st.st_size,
			     &buf, &len, err, errlen);
		if (rc != PG_OK)
			goto out;
		if ((nl = memchr(buf, '\n', len)) == NULL) {
			rc = corrupt(fl->dir, JOURNAL_FILE, err, errlen,
				     "no complete header line");
			goto out;
		}
		hl = (size_t)(nl - buf) + 1;
		if (parse_header(buf, hl - 1, hash, s->j_id, why,
				 sizeof(why)) != 0) {
			rc = corrupt(fl->dir, JOURNAL_FILE, err, errlen, "%s",
				     why);
			goto out;
		}
		follows = s->snap_fd >= 0 && strcmp(hash, s->snap_hash) == 0;
		compacted = s->snap_fd >= 0 &&
			    strcmp(s->j_id, s->snap_compacted) == 0;
		if (!follows || compacted) {
			if (!name_unchanged(dfd, LEDGER_FILE, s->snap_fd,
					    &s->snap_st))
				continue;	/* written meanwhile */
			if (s->snap_fd < 0)
				rc = corrupt(fl->dir, JOURNAL_FILE, err, errlen,
					     "%s is missing, so the journal's "
					     "operations have no snapshot to "
					     "follow", LEDGER_FILE);
			else if (follows)
				rc = corrupt(fl->dir, JOURNAL_FILE, err, errlen,
					     "%s is the snapshot it follows and "
					     "also names it as compacted "
					     "(contradictory)", LEDGER_FILE);
			else if (!compacted)
				rc = corrupt(fl->dir, JOURNAL_FILE, err, errlen,
					     "it follows another %s (SHA-256 "
					     "%.16s...), and the present one "
					     "(%.16s...) was not written by its "
					     "compaction: %s was replaced or "
					     "restored without its journal",
					     LEDGER_FILE, hash, s->snap_hash,
					     LEDGER_FILE);
			else
				s->j_stale = 1;	/* its compaction's snapshot */
			goto out;
		}
		s->j_off = (off_t)hl;
		rc = consume(fl, buf + hl, len - hl, s->j_off, &used, err,
			     errlen);
		if (rc != PG_OK)
			goto out;
		s->j_off += (off_t)used;
		goto out;
	}
	snprintf(err, errlen, "ledger %s: ledger.json kept being replaced "
		 "while it was read", fl->dir);
	rc = PG_EBUSY;
out:
	free(buf);
	if (rc != PG_OK)
		state_reset(s);
	return rc;
}

/*
 * Bring the cached state up to the files (rw held for writing): nothing
 * to do when it is fresh; the journal's new complete lines when only the
 * journal grew; else everything from the start.  On an error nothing is
 * cached.
 */
static pg_err
state_refresh(file_ledger *fl, int dfd, char *err, size_t errlen)
{
	file_state *s = &fl->st;
	struct stat cur;
	char *buf = NULL;
	size_t len, used;
	pg_err rc;
	int fd;

	if (state_fresh(s, dfd))
		return PG_OK;
	if (s->root == NULL ||
	    !name_unchanged(dfd, LEDGER_FILE, s->snap_fd, &s->snap_st))
		return state_load(fl, dfd, err, errlen);
	/* The snapshot is unchanged: what became of the journal? */
	rc = open_file(fl, dfd, JOURNAL_FILE, O_RDONLY, 0, &fd, err, errlen);
	if (rc == PG_ENOTFOUND)
		return s->j_fd < 0 ? PG_OK : state_load(fl, dfd, err, errlen);
	if (rc != PG_OK) {
		state_reset(s);
		return rc;
	}
	if (fstat(fd, &cur) != 0) {
		snprintf(err, errlen, "ledger %s/%s: %s", fl->dir,
			 JOURNAL_FILE, strerror(errno));
		close(fd);
		state_reset(s);
		return PG_EUNAVAIL;
	}
	close(fd);	/* checked; the cached descriptor is the same file */
	/* Another file, a stale one changed, shorter than what was applied,
	 * or changed without growing (an edit in place): from the start. */
	if (s->j_fd < 0 || cur.st_dev != s->j_st.st_dev ||
	    cur.st_ino != s->j_st.st_ino || s->j_stale ||
	    cur.st_size < s->j_off || cur.st_size == s->j_st.st_size)
		return state_load(fl, dfd, err, errlen);
	rc = read_at(fl, JOURNAL_FILE, s->j_fd, s->j_off,
		     (size_t)(cur.st_size - s->j_off), &buf, &len, err,
		     errlen);
	if (rc == PG_OK)
		rc = consume(fl, buf, len, s->j_off, &used, err, errlen);
	free(buf);
	if (rc != PG_OK) {
		state_reset(s);
		return rc;
	}
	s->j_off += (off_t)used;
	s->j_st = cur;
	return PG_OK;
}

/*
 * Take rw with the state current: for reading when the cached state is
 * fresh, else for writing after state_refresh.  On PG_OK the caller
 * evaluates fl->st.root and unlocks rw.
 */
static pg_err
state_lock(file_ledger *fl, int dfd, char *err, size_t errlen)
{
	pg_err rc;

	if (pthread_rwlock_rdlock(&fl->st.rw) != 0) {
		snprintf(err, errlen, "ledger: cannot take the state lock");
		return PG_EINTERNAL;
	}
	if (state_fresh(&fl->st, dfd))
		return PG_OK;
	pthread_rwlock_unlock(&fl->st.rw);
	if (pthread_rwlock_wrlock(&fl->st.rw) != 0) {
		snprintf(err, errlen, "ledger: cannot take the state lock");
		return PG_EINTERNAL;
	}
	if ((rc = state_refresh(fl, dfd, err, errlen)) != PG_OK)
		pthread_rwlock_unlock(&fl->st.rw);
	return rc;
}

/* ---- the file backend: writing ------------------------------------------ */

/* A write: mutex, directory, lock, and the journal open for appending. */
typedef struct txn {
	file_ledger *fl;
	int dfd, lfd, wfd;
	off_t end;		/* the journal's size before our append */
} txn;

/*
 * Start a new journal (rw held for writing, lock held).  When SNAPSHOT,
 * first write the state as the new ledger.json, naming as "compacted" the
 * journal whose operations the state holds last: the current one when it
 * applies (a compaction), else the one the snapshot read named (none for
 * a new ledger).  That is skipped when those are exactly the bytes
 * ledger.json holds (nothing would change).  Since the snapshot names
 * the journal it compacted, a compaction never finds them so: it only
 * compacts a journal that applies, and the snapshot a journal applies to
 * never names it (state_load refuses that as damage), so the new bytes
 * differ in "compacted" at least; a journal's header therefore never
 * matches a later snapshot than its own.  Then ledger.journal with a
 * header naming ledger.json's SHA-256 and a new random id.  Both
 * through replace_file (temp file, fsync, rename,
 * directory fsync): a crash between the two renames leaves the old
 * journal with a snapshot that names it as compacted: stale, its
 * operations are in the snapshot.  On an error the caller drops the
 * cached state.
 */
static pg_err
journal_start(txn *t, int snapshot, char *err, size_t errlen)
{
	file_ledger *fl = t->fl;
	file_state *s = &fl->st;
	char *buf = NULL, hash[HASH_HEX], header[HASH_HEX + JID_HEX + 32];
	char id[JID_HEX];
	const char *compacted;
	unsigned char rnd[JID_BYTES];
	struct stat st;
	size_t len = 0, i;
	pg_err rc = PG_OK;
	int fd = -1;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		snprintf(err, errlen, "ledger: no random bytes for a journal "
			 "id");
		rc = PG_EINTERNAL;
		goto out;
	}
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	if (snapshot) {
		if (s->j_fd >= 0 && !s->j_stale)
			compacted = s->j_id;
		else
			compacted = s->snap_compacted[0] != '\0' ?
				    s->snap_compacted : NULL;
		if ((buf = dump_state(s->root, compacted, &len)) == NULL) {
			snprintf(err, errlen, "ledger: out of memory");
			rc = PG_ENOMEM;
			goto out;
		}
		if (hash_hex(buf, len, hash) != 0) {
			snprintf(err, errlen, "ledger: cannot compute SHA-256");
			rc = PG_EINTERNAL;
			goto out;
		}
		if (s->snap_fd < 0 || strcmp(hash, s->snap_hash) != 0) {
			rc = replace_file(fl, t->dfd, TMP_FILE, LEDGER_FILE,
					  buf, len, &fd, err, errlen);
			if (rc != PG_OK)
				goto out;
			if (fstat(fd, &st) != 0) {
				snprintf(err, errlen, "ledger %s/%s: %s",
					 fl->dir, LEDGER_FILE, strerror(errno));
				rc = PG_EUNAVAIL;
				goto out;
			}
			if (s->snap_fd >= 0)
				close(s->snap_fd);
			s->snap_fd = fd;
			fd = -1;
			s->snap_st = st;
			memcpy(s->snap_hash, hash, HASH_HEX);
			/* COMPACTED is s->j_id, s->snap_compacted or NULL */
			if (compacted == NULL)
				s->snap_compacted[0] = '\0';
			else if (compacted != s->snap_compacted)
				memcpy(s->snap_compacted, compacted, JID_HEX);
		}
	}
	len = (size_t)snprintf(header, sizeof(header),
			       "{\"id\":\"%s\",\"snapshot\":\"%s\"}\n", id,
			       s->snap_hash);
	rc = replace_file(fl, t->dfd, JOURNAL_TMP, JOURNAL_FILE, header, len,
			  &fd, err, errlen);
	if (rc != PG_OK)
		goto out;
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "ledger %s/%s: %s", fl->dir, JOURNAL_FILE,
			 strerror(errno));
		rc = PG_EUNAVAIL;
		goto out;
	}
	if (s->j_fd >= 0)
		close(s->j_fd);
	s->j_fd = fd;
	fd = -1;
	s->j_st = st;
	memcpy(s->j_id, id, JID_HEX);
	s->j_stale = 0;
	s->j_off = (off_t)len;
	s->j_ops = 0;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

/*
 * Under the lock, with rw held for writing: bring the state up to the
 * files; start a journal when there is none or it is stale (and write
 * the snapshot first when there is none); compact when the journal is
 * over its bound; open it for appending and cut off a torn last line
 * (left by a writer that crashed in the middle of its append: never
 * synced, so never acknowledged).
 */
static pg_err
journal_prepare(txn *t, char *err, size_t errlen)
{
	file_ledger *fl = t->fl;
	file_state *s = &fl->st;
	struct stat st;
	pg_err rc;

	if ((rc = state_refresh(fl, t->dfd, err, errlen)) != PG_OK)
		return rc;
	if (s->j_fd < 0 || s->j_stale)
		rc = journal_start(t, s->snap_fd < 0, err, errlen);
	else if (s->j_ops >= PG_LEDGER_JOURNAL_MAX_OPS ||
		 s->j_off >= (off_t)PG_LEDGER_JOURNAL_MAX_BYTES)
		rc = journal_start(t, 1, err, errlen);
	if (rc != PG_OK)
		return rc;
	rc = open_file(fl, t->dfd, JOURNAL_FILE, O_WRONLY | O_APPEND, 0,
		       &t->wfd, err, errlen);
	if (rc == PG_ENOTFOUND) {
		snprintf(err, errlen, "ledger %s/%s: vanished", fl->dir,
			 JOURNAL_FILE);
		return PG_EUNAVAIL;
	}
	if (rc != PG_OK)
		return rc;
	if (fstat(t->wfd, &st) != 0 || st.st_dev != s->j_st.st_dev ||
	    st.st_ino != s->j_st.st_ino || st.st_size < s->j_off) {
		snprintf(err, errlen, "ledger %s/%s: replaced or cut short "
			 "while locked", fl->dir, JOURNAL_FILE);
		return PG_EUNAVAIL;
	}
	if (st.st_size > s->j_off) {
		if (ftruncate(t->wfd, s->j_off) != 0 || fstat(t->wfd, &st) != 0) {
			snprintf(err, errlen, "ledger %s/%s: cannot cut off a "
				 "torn last line: %s", fl->dir, JOURNAL_FILE,
				 strerror(errno));
			return PG_EUNAVAIL;
		}
		s->j_st = st;
	}
	t->end = s->j_off;
	return PG_OK;
}

static pg_err
txn_begin(file_ledger *fl, txn *t, char *err, size_t errlen)
{
	pg_err rc;

	t->fl = fl;
	t->dfd = t->lfd = t->wfd = -1;
	t->end = 0;
	if (pthread_mutex_lock(&fl->mu) != 0) {
		snprintf(err, errlen, "ledger: cannot take the mutex");
		t->fl = NULL;
		return PG_EINTERNAL;
	}
	if ((rc = open_dir(fl, &t->dfd, err, errlen)) != PG_OK ||
	    (rc = lock_file(fl, t->dfd, &t->lfd, err, errlen)) != PG_OK)
		return rc;
	if (pthread_rwlock_wrlock(&fl->st.rw) != 0) {
		snprintf(err, errlen, "ledger: cannot take the state lock");
		return PG_EINTERNAL;
	}
	if ((rc = journal_prepare(t, err, errlen)) != PG_OK)
		state_reset(&fl->st);
	pthread_rwlock_unlock(&fl->st.rw);
	return rc;
}

/* After a failed append: cut the journal back to its size before.  When
 * that fails too, ERR says so: what is left is either a torn line (the
 * next writer cuts it off) or a whole one, which then counts (an
 * issuance recorded that was not acknowledged: refuses more, never
 * less). */
static void
append_undo(txn *t, char *err, size_t errlen)
{
	size_t used = strlen(err);

	if (ftruncate(t->wfd, t->end) != 0 && used < errlen)
		snprintf(err + used, errlen - used, "; cannot cut it back: %s",
			 strerror(errno));
}

/*
 * Append OP to the journal as one line, with one write(2); when DURABLE
 * (a commit), fdatasync it.  The line is checked as a reader would check
 * it first: nothing is written that would make the ledger damaged.  On a
 * failure the journal is cut back to its size before (a reader may have
 * seen a line that is then gone: it sees the journal shorter than what it
 * applied and reads everything again).  Then the cached state takes the
 * line in, like any reader's (another thread may have done so already).
 */
static pg_err
journal_append(txn *t, json_t *op, int durable, char *err, size_t errlen)
{
	char *text = NULL, why[256];
	json_t *check = NULL;
	enum jop kind;
	size_t len;
	ssize_t n;
	pg_err rc = PG_EUNAVAIL;

	if ((text = json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		return PG_ENOMEM;
	}
	len = strlen(text);
	if (parse_op(text, len, &check, &kind, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "ledger: refusing to record a malformed "
			 "operation: %s", why);
		rc = PG_EINTERNAL;
		goto out;
	}
	text[len++] = '\n';	/* over the NUL: the length is known */
	do
		n = write(t->wfd, text, len);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len) {
		snprintf(err, errlen, "ledger %s/%s: cannot append: %s",
			 t->fl->dir, JOURNAL_FILE, n < 0 ? strerror(errno) :
			 "short write");
		append_undo(t, err, errlen);
		goto out;
	}
	if (durable && fdatasync(t->wfd) != 0) {
		snprintf(err, errlen, "ledger %s/%s: fdatasync: %s",
			 t->fl->dir, JOURNAL_FILE, strerror(errno));
		append_undo(t, err, errlen);
		goto out;
	}
	rc = PG_OK;
out:
	if (pthread_rwlock_wrlock(&t->fl->st.rw) == 0) {
		/* The operation is in the journal (or not) whatever this
		 * finds; a failure here only leaves nothing cached. */
		char ignored[256];

		(void)state_refresh(t->fl, t->dfd, ignored, sizeof(ignored));
		pthread_rwlock_unlock(&t->fl->st.rw);
	}
	json_decref(check);
	free(text);
	return rc;
}

static void
txn_end(txn *t)
{
	if (t->wfd >= 0)
		close(t->wfd);
	if (t->lfd >= 0)
		close(t->lfd);	/* releases the flock */
	if (t->dfd >= 0)
		close(t->dfd);
	if (t->fl != NULL)
		pthread_mutex_unlock(&t->fl->mu);
}

/* ---- the file backend: operations ------------------------------------------- */

static void
file_close(void *impl)
{
	file_ledger *fl = impl;

	if (fl == NULL)
		return;
	state_reset(&fl->st);
	pthread_rwlock_destroy(&fl->st.rw);
	pthread_mutex_destroy(&fl->mu);
	free(fl->dir);
	free(fl);
}

static pg_err
file_open(const pg_config *cfg, void **impl, char *err, size_t errlen)
{
	pthread_rwlockattr_t attr;
	file_ledger *fl = NULL;
	int dfd = -1, lfd = -1, mu = 0;
	pg_err rc = PG_ENOMEM;

	*impl = NULL;
	if (cfg->ledger.path == NULL || cfg->ledger.path[0] == '\0' ||
	    cfg->separation.window <= 0) {
		snprintf(err, errlen, "ledger: [ledger] path and [separation] "
			 "window are required");
		return PG_ECONFIG;
	}
	if ((fl = calloc(1, sizeof(*fl))) == NULL ||
	    (fl->dir = strdup(cfg->ledger.path)) == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		goto out;
	}
	if (pthread_mutex_init(&fl->mu, NULL) != 0) {
		snprintf(err, errlen, "ledger: cannot create a mutex");
		rc = PG_EINTERNAL;
		goto out;
	}
	mu = 1;
	/* Writers first: a thread applying the journal is not starved by a
	 * stream of readers. */
	if (pthread_rwlockattr_init(&attr) != 0) {
		snprintf(err, errlen, "ledger: cannot create a lock");
		rc = PG_EINTERNAL;
		goto out;
	}
	(void)pthread_rwlockattr_setkind_np(&attr,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	if (pthread_rwlock_init(&fl->st.rw, &attr) != 0) {
		pthread_rwlockattr_destroy(&attr);
		snprintf(err, errlen, "ledger: cannot create a lock");
		rc = PG_EINTERNAL;
		goto out;
	}
	pthread_rwlockattr_destroy(&attr);
	mu = 2;
	state_init(&fl->st);
	rules_init(&fl->r, cfg, 1);

	if (mkdir(fl->dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "ledger directory %s: cannot create: %s",
			 fl->dir, strerror(errno));
		rc = PG_ECONFIG;
		goto out;
	}
	if ((rc = open_dir(fl, &dfd, err, errlen)) != PG_OK)
		goto out;
	rc = open_file(fl, dfd, LOCK_FILE, O_RDONLY | O_CREAT, LOCK_MODE, &lfd,
		       err, errlen);
	if (rc != PG_OK) {
		if (rc == PG_ENOTFOUND)
			snprintf(err, errlen, "ledger %s/%s: cannot create",
				 fl->dir, LOCK_FILE);
		rc = PG_ECONFIG;
		goto out;
	}
	*impl = fl;
	fl = NULL;
out:
	if (lfd >= 0)
		close(lfd);
	if (dfd >= 0)
		close(dfd);
	if (fl != NULL) {
		if (mu > 1)
			pthread_rwlock_destroy(&fl->st.rw);
		if (mu > 0)
			pthread_mutex_destroy(&fl->mu);
		free(fl->dir);
		free(fl);
	}
	return rc;
}

static pg_err
file_facts(void *impl, const query *q, pg_ledger_facts *f,
	   struct facts_hold *hold, char *err, size_t errlen)
{
	file_ledger *fl = impl;
	view v;
	pg_err rc;
	int dfd;

	if ((rc = open_dir(fl, &dfd, err, errlen)) != PG_OK)
		return rc;
	rc = state_lock(fl, dfd, err, errlen);
	close(dfd);
	if (rc != PG_OK)
		return rc;
	evaluate(&fl->r, fl->st.root, q, &v);
	rc = copy_view(&v, f, hold, err, errlen);
	pthread_rwlock_unlock(&fl->st.rw);
	return rc;
}

static pg_err
file_reserve(void *impl, const query *q, const pg_reservation *res,
	     int *rule_out, char *err, size_t errlen)
{
	file_ledger *fl = impl;
	long long start = 0;
	json_t *r, *op = NULL;
	char state;
	view v;
	txn t;
	pg_err rc;
	int rule;

	if ((rc = txn_begin(fl, &t, err, errlen)) != PG_OK ||
	    (rc = state_lock(fl, t.dfd, err, errlen)) != PG_OK)
		goto out;
	evaluate(&fl->r, fl->st.root, q, &v);
	rule = judge(q, &v, err, errlen);
	pthread_rwlock_unlock(&fl->st.rw);
	if (rule >= 0) {
		*rule_out = rule;
		rc = PG_DENIED;
		goto out;
	}
	if (proc_stat((long long)getpid(), &state, &start) != 0)
		start = 0;
	r = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:I}",
		      "id", res->id, "user", res->user, "role", res->role,
		      "ticket", res->ticket, "ts", (json_int_t)q->now,
		      "expires", (json_int_t)(q->now + fl->r.lease),
		      "pid", (json_int_t)getpid(), "start", (json_int_t)start,
		      "boot_id", fl->r.boot_id, "pidns", (json_int_t)fl->r.pidns);
	if (r == NULL || (op = json_object()) == NULL ||
	    json_object_set_new(op, "reserve", r) != 0) {
		if (op == NULL)
			json_decref(r);
		snprintf(err, errlen, "ledger: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	rc = journal_append(&t, op, 0, err, errlen);
out:
	json_decref(op);
	txn_end(&t);
	return rc;
}

/* Is the reservation ID in the current state?  (Under the lock.) */
static pg_err
file_has_reservation(txn *t, const char *id, int *found, char *err,
		     size_t errlen)
{
	pg_err rc;

	if ((rc = state_lock(t->fl, t->dfd, err, errlen)) != PG_OK)
		return rc;
	*found = find_reservation(t->fl->st.root, id) >= 0;
	pthread_rwlock_unlock(&t->fl->st.rw);
	return PG_OK;
}

static pg_err
file_commit(void *impl, const pg_reservation *res, int64_t expiration,
	    const char *access_key_id, char *err, size_t errlen)
{
	file_ledger *fl = impl;
	json_t *c, *op = NULL;
	txn t;
	pg_err rc;
	int found = 0;

	if ((rc = txn_begin(fl, &t, err, errlen)) != PG_OK ||
	    (rc = file_has_reservation(&t, res->id, &found, err,
				       errlen)) != PG_OK)
		goto out;
	c = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "id", res->id,
		      "user", res->user, "role", res->role, "ticket",
		      res->ticket, "ts", (json_int_t)res->ts, "expiration",
		      (json_int_t)expiration, "access_key_id",
		      access_key_id ? access_key_id : "");
	if (c == NULL || (op = json_object()) == NULL ||
	    json_object_set_new(op, "commit", c) != 0) {
		if (op == NULL)
			json_decref(c);
		snprintf(err, errlen, "ledger: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	if ((rc = journal_append(&t, op, 1, err, errlen)) != PG_OK)
		goto out;
	if (!found) {
		snprintf(err, errlen, "ledger: the reservation of %s for %s "
			 "with ticket %s lapsed before it was committed (lease "
			 "%lld s); the issuance is recorded", res->user,
			 res->role, res->ticket, (long long)fl->r.lease);
		rc = PG_ETIMEOUT;
	}
out:
	json_decref(op);
	txn_end(&t);
	return rc;
}

static pg_err
file_release(void *impl, const pg_reservation *res, char *err, size_t errlen)
{
	file_ledger *fl = impl;
	json_t *op = NULL;
	txn t;
	pg_err rc;
	int found = 0;

	if ((rc = txn_begin(fl, &t, err, errlen)) != PG_OK ||
	    (rc = file_has_reservation(&t, res->id, &found, err,
				       errlen)) != PG_OK)
		goto out;
	if (!found)
		goto out;	/* lapsed already: nothing to undo */
	if ((op = json_pack("{s:{s:s}}", "release", "id", res->id)) == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	rc = journal_append(&t, op, 0, err, errlen);
out:
	json_decref(op);
	txn_end(&t);
	return rc;
}

static pg_err
file_last(void *impl, const char *user, const char *role, int64_t *when,
	  char *err, size_t errlen)
{
	file_ledger *fl = impl;
	json_t *e;
	size_t i;
	pg_err rc;
	int dfd;

	if ((rc = open_dir(fl, &dfd, err, errlen)) != PG_OK)
		return rc;
	rc = state_lock(fl, dfd, err, errlen);
	close(dfd);
	if (rc != PG_OK)
		return rc;
	json_array_foreach(json_object_get(fl->st.root, "last"), i, e)
		if (strcmp(S(e, "user"), user) == 0 &&
		    strcmp(S(e, "role"), role) == 0)
			*when = I(e, "ts");
	pthread_rwlock_unlock(&fl->st.rw);
	return PG_OK;
}

static const struct ledger_ops file_ops = {
	"file", file_open, file_close, file_facts, file_reserve, file_commit,
	file_release, file_last,
};

/* ---- the etcd backend: layout ----------------------------------------------- */

/*
 * Keys (P = [ledger] prefix; E(x) = x with '%', '/', blanks and control
 * bytes written as %XX, so that '/' only ever separates):
 *   P u/E(user)/E(role)/r/ID   a reservation (the file format's record)
 *   P u/E(user)/E(role)/i/ID   an issuance (ID: its reservation's)
 *   P t/E(ticket)/r/ID         the same reservation, under its ticket
 *   P t/E(ticket)/b            the ticket's binding
 *   P l/E(user)/E(role)/       the last issuance, for review
 * Values are the JSON records of the file format, checked as strictly.
 * Every key carries a lease shared by the keys of its class put within
 * a while (see lease_ttl): the leases only collect garbage, every rule is
 * judged on the times in the records, exactly as in the file backend.
 *
 * Reserve: one transaction per attempt.  It compares that no key in the
 * ranges the verdict depends on (P u/E(user)/E(c)/ for each conflicting
 * role c, P t/E(ticket)/) changed since the revision the verdict was
 * made on, and then puts the reservation under both keys; when a compare
 * fails, its failure branch returns those ranges as they are now, the
 * verdict is made again on them (a refusal ends it), and the transaction
 * is tried again.  The first attempt assumes the ranges are empty (the
 * usual case: one round trip).  Keys that disappear (released, leases)
 * can only turn a refusal into a pass, never the other way round, so a
 * verdict on an older revision without changes since is safe.  Void
 * reservations seen are deleted by the same transaction (the file
 * backend's purge).
 */

enum lease_class { L_RES, L_ISSUED, L_BIND, L_LAST, L_COUNT };

#define ETCD_MAX_ATTEMPTS 64

typedef struct etcd_ledger {
	rules r;
	pg_etcd *etcd;
	char *prefix;
	int64_t timeout_ms;
	int mu_ok;
	pthread_mutex_t mu;	/* guards lease[] */
	struct {
		int64_t id;	/* 0: none */
		int64_t granted_ms;	/* pg_mono_ms() of the grant */
	} lease[L_COUNT];
} etcd_ledger;

/* A growing string. */
typedef struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
} sbuf;

static void
sb_add(sbuf *b, const char *s, size_t n)
{
	char *np;
	size_t cap;

	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 128;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_str(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* E(s), then '/' */
static void
sb_enc(sbuf *b, const char *s)
{
	char hex[4];
	unsigned char c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (c == '%' || c == '/' || c <= 0x20 || c == 0x7f) {
			snprintf(hex, sizeof(hex), "%%%02X", c);
			sb_add(b, hex, 3);
		} else {
			sb_add(b, s, 1);
		}
	}
	sb_add(b, "/", 1);
}

/* The key P KIND/E(a)/[E(b)/]TAIL, or NULL when out of memory. */
static char *
mkkey(const etcd_ledger *el, const char *kind, const char *a, const char *b,
      const char *tail1, const char *tail2)
{
	sbuf s = { 0 };

	sb_str(&s, el->prefix);
	sb_str(&s, kind);
	sb_enc(&s, a);
	if (b != NULL)
		sb_enc(&s, b);
	if (tail1 != NULL)
		sb_str(&s, tail1);
	if (tail2 != NULL)
		sb_str(&s, tail2);
	if (s.oom || s.p == NULL) {
		free(s.p);
		return NULL;
	}
	return s.p;
}

/* The end of the range of keys starting with PREFIX (which ends in '/'). */
static char *
range_end(const char *prefix)
{
	char *e = strdup(prefix);

	if (e != NULL)
		e[strlen(e) - 1] = '/' + 1;
	return e;
}

/* ---- the etcd backend: JSON of the gateway ---------------------------------- */

static json_t *
jb64(const char *s)
{
	char *b = pg_etcd_b64enc(s, strlen(s));
	json_t *j;

	if (b == NULL)
		return NULL;
	j = json_string(b);
	free(b);
	return j;
}

static json_t *
jint(int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	return json_string(buf);
}

/* Append to A: {"request_range": {...}} over [KEY, END) (END NULL: the one
 * key), oldest first. */
static int
op_range(json_t *a, const char *key, const char *end)
{
	json_t *r = end != NULL ?
		json_pack("{s:o, s:o, s:s, s:s}", "key", jb64(key),
			  "range_end", jb64(end), "sort_target", "CREATE",
			  "sort_order", "ASCEND") :
		json_pack("{s:o}", "key", jb64(key));

	return r == NULL ? -1 :
	       json_array_append_new(a, json_pack("{s:o}", "request_range", r));
}

static int
op_put(json_t *a, const char *key, json_t *value, int64_t lease)
{
	char *v = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
	json_t *p = NULL;

	if (v != NULL)
		p = json_pack("{s:o, s:o, s:o}", "key", jb64(key), "value",
			      jb64(v), "lease", jint(lease));
	free(v);
	return p == NULL ? -1 :
	       json_array_append_new(a, json_pack("{s:o}", "request_put", p));
}

static int
op_delete(json_t *a, const char *key)
{
	return json_array_append_new(a, json_pack("{s:{s:o}}",
				     "request_delete_range", "key",
				     jb64(key)));
}

/* No key in [KEY, END) modified after revision REV. */
static int
cmp_unchanged(json_t *a, const char *key, const char *end, int64_t rev)
{
	return json_array_append_new(a, json_pack("{s:s, s:o, s:o, s:s, s:o}",
				     "target", "MOD", "key", jb64(key),
				     "range_end", jb64(end), "result", "LESS",
				     "mod_revision", jint(rev + 1)));
}

/* KEY is at modification revision MOD (0: KEY is absent). */
static int
cmp_key(json_t *a, const char *key, int64_t mod)
{
	return json_array_append_new(a, mod == 0 ?
		json_pack("{s:s, s:o, s:s, s:s}", "target", "CREATE", "key",
			  jb64(key), "result", "EQUAL", "create_revision",
			  "0") :
		json_pack("{s:s, s:o, s:s, s:o}", "target", "MOD", "key",
			  jb64(key), "result", "EQUAL", "mod_revision",
			  jint(mod)));
}

/*
 * One transaction.  *OK: whether the compares held; *REV: the revision of
 * the answer; *RESPS: its responses (borrowed from *RESP, which the
 * caller frees).  PG_ENOTFOUND only when LEASED (its puts name leases,
 * which etcd may no longer know); otherwise that is PG_EPROTO.
 */
static pg_err
etcd_txn(etcd_ledger *el, json_t *compare, json_t *success, json_t *failure,
	 int leased, pg_deadline dl, json_t **resp, int *ok, int64_t *rev,
	 json_t **resps, char *err, size_t errlen)
{
	json_t *body, *s;
	pg_err rc;

	*resp = NULL;
	body = json_pack("{s:O, s:O, s:O}", "compare", compare, "success",
			 success, "failure", failure);
	if (body == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		return PG_ENOMEM;
	}
	rc = pg_etcd_call(el->etcd, "/v3/kv/txn", body, dl, resp, err, errlen);
	json_decref(body);
	if (rc == PG_ENOTFOUND && !leased)
		rc = PG_EPROTO;
	if (rc != PG_OK)
		return rc;
	/* a failed compare omits "succeeded" (it is not false) */
	s = json_object_get(*resp, "succeeded");
	*ok = json_is_true(s);
	*resps = json_object_get(*resp, "responses");
	if (*resps == NULL)
		*resps = json_array();
	else
		json_incref(*resps);
	if ((s != NULL && !json_is_boolean(s)) || !json_is_array(*resps) ||
	    pg_etcd_int(json_object_get(json_object_get(*resp, "header"),
					"revision"), rev) != 0 || *rev < 1) {
		json_decref(*resps);
		*resps = NULL;
		json_decref(*resp);
		*resp = NULL;
		snprintf(err, errlen, "ledger: etcd answered a transaction "
			 "with something else");
		return PG_EPROTO;
	}
	/* keep *resps alive with *resp */
	json_object_set_new(*resp, "responses", *resps);
	return PG_OK;
}

/* The KVS of response I of RESPS (NULL for none). */
static json_t *
range_kvs(json_t *resps, size_t i)
{
	return json_object_get(json_object_get(json_array_get(resps, i),
					       "response_range"), "kvs");
}

/* A key/value of a range: decoded key, value as JSON, revisions. */
typedef struct kv {
	char *key;
	json_t *val;
	int64_t create, mod;
} kv;

static void
kv_free(kv *k)
{
	free(k->key);
	json_decref(k->val);
	memset(k, 0, sizeof(*k));
}

static pg_err __attribute__((format(printf, 4, 5)))
damaged(const char *key, char *err, size_t errlen, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "ledger record %.200s in etcd is damaged: %s "
		 "(refused; repair or remove it)", key ? key : "?", what);
	return PG_EPROTO;
}

static pg_err
kv_parse(json_t *j, kv *out, char *err, size_t errlen)
{
	json_error_t je;
	char *val = NULL;
	size_t klen, vlen;
	pg_err rc;

	memset(out, 0, sizeof(*out));
	rc = pg_etcd_b64dec(json_string_value(json_object_get(j, "key")),
			    &out->key, &klen);
	if (rc == PG_ENOMEM)
		goto nomem;
	if (rc != PG_OK || klen != strlen(out->key))
		return damaged(NULL, err, errlen, "a key is not base64 text");
	if (pg_etcd_int(json_object_get(j, "create_revision"),
			&out->create) != 0 ||
	    pg_etcd_int(json_object_get(j, "mod_revision"), &out->mod) != 0 ||
	    out->mod < 1) {
		rc = damaged(out->key, err, errlen, "bad revisions");
		goto fail;
	}
	rc = pg_etcd_b64dec(json_object_get(j, "value") ?
			    json_string_value(json_object_get(j, "value")) : "",
			    &val, &vlen);
	if (rc == PG_ENOMEM)
		goto nomem;
	if (rc != PG_OK) {
		rc = damaged(out->key, err, errlen, "value is not base64");
		goto fail;
	}
	out->val = json_loadb(val, vlen, JSON_REJECT_DUPLICATES, &je);
	free(val);
	if (!json_is_object(out->val)) {
		rc = damaged(out->key, err, errlen, "not a JSON object (%s)",
			     out->val == NULL ? je.text : "other type");
		goto fail;
	}
	return PG_OK;
nomem:
	snprintf(err, errlen, "ledger: out of memory");
	rc = PG_ENOMEM;
fail:
	kv_free(out);
	return rc;
}

/* ---- the etcd backend: reading the ranges of a query ------------------------- */

/* The ranges a verdict for a query depends on. */
typedef struct readset {
	size_t n;		/* ranges */
	char **start, **end;
	const char **role;	/* the conflicting role of range i, or NULL
				   for the ticket's range (the first) */
	int has_ticket;
} readset;

static void
readset_free(readset *rs)
{
	size_t i;

	for (i = 0; i < rs->n; i++) {
		free(rs->start[i]);
		free(rs->end[i]);
	}
	free(rs->start);
	free(rs->end);
	free(rs->role);
	memset(rs, 0, sizeof(*rs));
}

static pg_err
readset_make(const etcd_ledger *el, const query *q, readset *rs, char *err,
	     size_t errlen)
{
	size_t cap = q->n_conflicts + 1, i;

	memset(rs, 0, sizeof(*rs));
	rs->start = calloc(cap, sizeof(char *));
	rs->end = calloc(cap, sizeof(char *));
	rs->role = calloc(cap, sizeof(char *));
	if (rs->start == NULL || rs->end == NULL || rs->role == NULL)
		goto nomem;
	/* the ticket's range first: its reservations, oldest first, decide
	 * the binding of an unbound ticket */
	if (q->ticket != NULL) {
		rs->has_ticket = 1;
		rs->start[rs->n] = mkkey(el, "t/", q->ticket, NULL, NULL, NULL);
		rs->end[rs->n] = rs->start[rs->n] ?
				 range_end(rs->start[rs->n]) : NULL;
		rs->n++;
		if (rs->end[rs->n - 1] == NULL)
			goto nomem;
	}
	for (i = 0; i < q->n_conflicts; i++) {
		rs->role[rs->n] = q->conflicts[i];
		rs->start[rs->n] = mkkey(el, "u/", q->user, q->conflicts[i],
					 NULL, NULL);
		rs->end[rs->n] = rs->start[rs->n] ?
				 range_end(rs->start[rs->n]) : NULL;
		rs->n++;
		if (rs->end[rs->n - 1] == NULL)
			goto nomem;
	}
	return PG_OK;
nomem:
	readset_free(rs);
	snprintf(err, errlen, "ledger: out of memory");
	return PG_ENOMEM;
}

static int
ops_ranges(json_t *a, const readset *rs)
{
	size_t i;

	for (i = 0; i < rs->n; i++)
		if (op_range(a, rs->start[i], rs->end[i]) != 0)
			return -1;
	return 0;
}

/* TAIL is "r/ID" or "i/ID" with a non-empty ID; the ID, or NULL. */
static const char *
tail_id(const char *tail, char kind)
{
	if (tail[0] != kind || tail[1] != '/' || tail[2] == '\0' ||
	    strchr(tail + 2, '/') != NULL)
		return NULL;
	return tail + 2;
}

/*
 * Build from the range responses RESPS (in the order of RS) the state
 * document evaluate() reads: {"issued": [...], "tickets": {T: binding},
 * "reservations": [...]}, every record checked against its kind and its
 * key.  *MINE is set when the reservation MY_ID (or NULL) is among them.
 */
static pg_err
load_state(const query *q, const readset *rs,
	   json_t *resps, const char *my_id, json_t **out, int *mine,
	   char *err, size_t errlen)
{
	json_t *doc, *seen = NULL, *kvs, *j;
	const char *tail, *id;
	char why[200];
	size_t i, k;
	kv e = { 0 };
	pg_err rc = PG_ENOMEM;

	*out = NULL;
	if (mine != NULL)
		*mine = 0;
	doc = json_pack("{s:[], s:{}, s:[]}", "issued", "tickets",
			"reservations");
	seen = json_object();
	if (doc == NULL || seen == NULL)
		goto nomem;
	if (json_array_size(resps) != rs->n) {
		snprintf(err, errlen, "ledger: etcd answered %zu ranges for %zu",
			 json_array_size(resps), rs->n);
		rc = PG_EPROTO;
		goto out;
	}
	for (i = 0; i < rs->n; i++) {
		kvs = range_kvs(resps, i);
		if (kvs != NULL && !json_is_array(kvs)) {
			snprintf(err, errlen, "ledger: etcd answered a range "
				 "with something else");
			rc = PG_EPROTO;
			goto out;
		}
		json_array_foreach(kvs, k, j) {
			if ((rc = kv_parse(j, &e, err, errlen)) != PG_OK)
				goto out;
			if (strncmp(e.key, rs->start[i], strlen(rs->start[i])))
				goto bad_key;
			tail = e.key + strlen(rs->start[i]);
			if (rs->role[i] == NULL && strcmp(tail, "b") == 0) {
				if (!record_ok(REC_BINDING, e.val, why,
					       sizeof(why)))
					goto bad_rec;
				if (json_object_set(json_object_get(doc,
						"tickets"), q->ticket, e.val))
					goto nomem;
			} else if ((id = tail_id(tail, 'r')) != NULL) {
				if (!record_ok(REC_RESERVATION, e.val, why,
					       sizeof(why)))
					goto bad_rec;
				if (strcmp(S(e.val, "id"), id) != 0 ||
				    (rs->role[i] == NULL ?
				     strcmp(S(e.val, "ticket"), q->ticket) :
				     strcmp(S(e.val, "user"), q->user) ||
				     strcmp(S(e.val, "role"), rs->role[i])))
					goto mismatch;
				if (my_id != NULL && strcmp(id, my_id) == 0 &&
				    mine != NULL)
					*mine = 1;
				if (json_object_get(seen, id) != NULL) {
					kv_free(&e);
					continue;
				}
				if (json_object_set_new(seen, id,
							json_true()) != 0 ||
				    json_array_append(json_object_get(doc,
						"reservations"), e.val) != 0)
					goto nomem;
			} else if (rs->role[i] != NULL &&
				   tail_id(tail, 'i') != NULL) {
				if (!record_ok(REC_ISSUED, e.val, why,
					       sizeof(why)))
					goto bad_rec;
				if (strcmp(S(e.val, "user"), q->user) != 0 ||
				    strcmp(S(e.val, "role"), rs->role[i]) != 0)
					goto mismatch;
				if (json_array_append(json_object_get(doc,
						"issued"), e.val) != 0)
					goto nomem;
			} else {
				goto bad_key;
			}
			kv_free(&e);
		}
	}
	*out = doc;
	doc = NULL;
	rc = PG_OK;
	goto out;
bad_key:
	rc = damaged(e.key, err, errlen, "unexpected key");
	goto out;
bad_rec:
	rc = damaged(e.key, err, errlen, "%s", why);
	goto out;
mismatch:
	rc = damaged(e.key, err, errlen, "the record does not match its key");
	goto out;
nomem:
	snprintf(err, errlen, "ledger: out of memory");
	rc = PG_ENOMEM;
out:
	kv_free(&e);
	json_decref(seen);
	json_decref(doc);
	return rc;
}

/* ---- the etcd backend: leases --------------------------------------------- */

/* How long a class's records matter, in seconds. */
static int64_t
lease_keep(const etcd_ledger *el, enum lease_class c)
{
	switch (c) {
	case L_RES:
		return el->r.lease;
	case L_ISSUED:
		return el->r.window;
	case L_BIND:
		return el->r.ticket_keep;
	case L_LAST:
	case L_COUNT:
		break;
	}
	return PG_LEDGER_LAST_KEEP;
}

/* How long one lease of a class is used for new keys, in seconds. */
static int64_t
lease_reuse(const etcd_ledger *el, enum lease_class c)
{
	int64_t r = lease_keep(el, c) / 16;

	if (c == L_RES)
		return 60;
	return r < 60 ? 60 : r > 3600 ? 3600 : r;
}

/* TTL of a class's lease: a key put with it at most lease_reuse after
 * the grant still lives lease_keep + a minute. */
static int64_t
lease_ttl(const etcd_ledger *el, enum lease_class c)
{
	return lease_keep(el, c) + lease_reuse(el, c) + 60;
}

static pg_err
lease_get(etcd_ledger *el, enum lease_class c, pg_deadline dl, int64_t *id,
	  char *err, size_t errlen)
{
	json_t *body = NULL, *resp = NULL, *e;
	int64_t now = pg_mono_ms(), got = 0;
	pg_err rc = PG_OK;

	pthread_mutex_lock(&el->mu);
	if (el->lease[c].id != 0 &&
	    now - el->lease[c].granted_ms < lease_reuse(el, c) * 1000) {
		*id = el->lease[c].id;
		goto out;
	}
	body = json_pack("{s:o}", "TTL", jint(lease_ttl(el, c)));
	if (body == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	rc = pg_etcd_call(el->etcd, "/v3/lease/grant", body, dl, &resp, err,
			  errlen);
	if (rc == PG_ENOTFOUND)
		rc = PG_EPROTO;
	if (rc != PG_OK)
		goto out;
	e = json_object_get(resp, "error");
	if ((json_is_string(e) && json_string_length(e) > 0) ||
	    pg_etcd_int(json_object_get(resp, "ID"), &got) != 0 || got <= 0) {
		snprintf(err, errlen, "ledger: etcd granted no lease%s%s",
			 json_is_string(e) ? ": " : "",
			 json_is_string(e) ? json_string_value(e) : "");
		rc = PG_EPROTO;
		goto out;
	}
	el->lease[c].id = got;
	el->lease[c].granted_ms = now;
	*id = got;
out:
	pthread_mutex_unlock(&el->mu);
	json_decref(body);
	json_decref(resp);
	return rc;
}

/* Lease ID of class C is gone (etcd said so): grant a new one next time. */
static void
lease_forget(etcd_ledger *el, enum lease_class c, int64_t id)
{
	pthread_mutex_lock(&el->mu);
	if (el->lease[c].id == id)
		el->lease[c].id = 0;
	pthread_mutex_unlock(&el->mu);
}

/* ---- the etcd backend: operations ----------------------------------------- */

static void
etcd_close(void *impl)
{
	etcd_ledger *el = impl;

	if (el == NULL)
		return;
	pg_etcd_close(el->etcd);
	free(el->prefix);
	if (el->mu_ok)
		pthread_mutex_destroy(&el->mu);
	free(el);
}

static pg_err
etcd_open(const pg_config *cfg, void **impl, char *err, size_t errlen)
{
	const pg_config *c = cfg;
	pg_etcd_opts o;
	etcd_ledger *el = NULL;
	pg_err rc = PG_ENOMEM;
	size_t n;

	*impl = NULL;
	if (c->separation.window <= 0 || c->ledger.prefix == NULL ||
	    (n = strlen(c->ledger.prefix)) == 0 ||
	    c->ledger.prefix[n - 1] != '/') {
		snprintf(err, errlen, "ledger: [separation] window and a "
			 "[ledger] prefix ending in '/' are required");
		return PG_ECONFIG;
	}
	if ((el = calloc(1, sizeof(*el))) == NULL ||
	    (el->prefix = strdup(c->ledger.prefix)) == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		goto out;
	}
	if (pthread_mutex_init(&el->mu, NULL) != 0) {
		snprintf(err, errlen, "ledger: cannot create a mutex");
		rc = PG_EINTERNAL;
		goto out;
	}
	el->mu_ok = 1;
	rules_init(&el->r, cfg, 0);
	el->timeout_ms = c->ledger.timeout_ms > 0 ? c->ledger.timeout_ms :
			 3000;
	memset(&o, 0, sizeof(o));
	o.endpoints = (const char *const *)c->ledger.endpoints.v;
	o.n_endpoints = c->ledger.endpoints.n;
	o.ca_file = c->ledger.ca_file;
	o.cert_file = c->ledger.cert_file;
	o.key_file = c->ledger.key_file;
	o.password_file = c->ledger.password_file;
	o.allow_plaintext = c->ledger.allow_plaintext;
	if ((rc = pg_etcd_open(&o, &el->etcd, err, errlen)) != PG_OK)
		goto out;
	*impl = el;
	el = NULL;
out:
	etcd_close(el);
	return rc;
}

/* Read the ranges of Q at one revision into a state document. */
static pg_err
etcd_read(etcd_ledger *el, const query *q, const readset *rs, pg_deadline dl,
	  json_t **doc, char *err, size_t errlen)
{
	json_t *cmp = json_array(), *ops = json_array(), *none = json_array();
	json_t *resp = NULL, *resps = NULL;
	int64_t rev;
	pg_err rc = PG_ENOMEM;
	int ok;

	*doc = NULL;
	if (cmp == NULL || ops == NULL || none == NULL ||
	    ops_ranges(ops, rs) != 0) {
		snprintf(err, errlen, "ledger: out of memory");
		goto out;
	}
	rc = etcd_txn(el, cmp, ops, none, 0, dl, &resp, &ok, &rev, &resps,
		      err, errlen);
	if (rc != PG_OK)
		goto out;
	if (!ok) {
		snprintf(err, errlen, "ledger: etcd failed a read without "
			 "compares");
		rc = PG_EPROTO;
		goto out;
	}
	rc = load_state(q, rs, resps, NULL, doc, NULL, err, errlen);
out:
	json_decref(cmp);
	json_decref(ops);
	json_decref(none);
	json_decref(resp);
	return rc;
}

static pg_err
etcd_facts(void *impl, const query *q, pg_ledger_facts *f,
	   struct facts_hold *hold, char *err, size_t errlen)
{
	etcd_ledger *el = impl;
	json_t *doc = NULL;
	readset rs;
	view v;
	pg_err rc;

	memset(&v, 0, sizeof(v));
	if ((rc = readset_make(el, q, &rs, err, errlen)) != PG_OK)
		return rc;
	/* even with nothing to read (no ticket, no conflicts): a read-only
	 * transaction needs a quorum, so the answer says the ledger works,
	 * as the file backend's read does */
	rc = etcd_read(el, q, &rs, pg_deadline_in(el->timeout_ms), &doc, err,
		       errlen);
	if (rc == PG_OK) {
		evaluate(&el->r, doc, q, &v);
		rc = copy_view(&v, f, hold, err, errlen);
	}
	json_decref(doc);
	readset_free(&rs);
	return rc;
}

/* Append deletes of every reservation in DOC that is void at NOW. */
static int
ops_purge(const etcd_ledger *el, json_t *ops, json_t *doc, int64_t now)
{
	json_t *r;
	char *k1, *k2;
	size_t i;
	int bad = 0;

	json_array_foreach(json_object_get(doc, "reservations"), i, r) {
		if (reservation_live(&el->r, r, now))
			continue;
		k1 = mkkey(el, "u/", S(r, "user"), S(r, "role"), "r/",
			   S(r, "id"));
		k2 = mkkey(el, "t/", S(r, "ticket"), NULL, "r/", S(r, "id"));
		if (k1 == NULL || k2 == NULL || op_delete(ops, k1) != 0 ||
		    op_delete(ops, k2) != 0)
			bad = 1;
		free(k1);
		free(k2);
	}
	return bad ? -1 : 0;
}

static pg_err
etcd_reserve(void *impl, const query *q, const pg_reservation *res,
	     int *rule_out, char *err, size_t errlen)
{
	etcd_ledger *el = impl;
	pg_deadline dl = pg_deadline_in(el->timeout_ms);
	json_t *rec = NULL, *doc = NULL, *cmp = NULL, *ok_ops = NULL;
	json_t *fail_ops = NULL, *resp = NULL, *resps;
	char *ku = NULL, *kt = NULL;
	int64_t rev = 0, lease;
	long long start = 0;
	int attempt, ok, mine, rule;
	size_t i;
	char state;
	readset rs;
	view v;
	pg_err rc;

	if ((rc = readset_make(el, q, &rs, err, errlen)) != PG_OK)
		return rc;
	if (proc_stat((long long)getpid(), &state, &start) != 0)
		start = 0;
	rc = PG_ENOMEM;
	rec = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:I}",
			"id", res->id, "user", res->user, "role", res->role,
			"ticket", res->ticket, "ts", (json_int_t)q->now,
			"expires", (json_int_t)(q->now + el->r.lease),
			"pid", (json_int_t)getpid(), "start", (json_int_t)start,
			"boot_id", el->r.boot_id,
			"pidns", (json_int_t)el->r.pidns);
	ku = mkkey(el, "u/", res->user, res->role, "r/", res->id);
	kt = mkkey(el, "t/", res->ticket, NULL, "r/", res->id);
	fail_ops = json_array();
	if (rec == NULL || ku == NULL || kt == NULL || fail_ops == NULL ||
	    ops_ranges(fail_ops, &rs) != 0) {
		snprintf(err, errlen, "ledger: out of memory");
		goto out;
	}
	for (attempt = 0; attempt < ETCD_MAX_ATTEMPTS; attempt++) {
		if ((rc = lease_get(el, L_RES, dl, &lease, err,
				    errlen)) != PG_OK)
			goto out;
		json_decref(cmp);
		json_decref(ok_ops);
		cmp = json_array();
		ok_ops = json_array();
		rc = PG_ENOMEM;
		if (cmp == NULL || ok_ops == NULL ||
		    op_put(ok_ops, ku, rec, lease) != 0 ||
		    op_put(ok_ops, kt, rec, lease) != 0 ||
		    (doc != NULL && ops_purge(el, ok_ops, doc, q->now) != 0)) {
			snprintf(err, errlen, "ledger: out of memory");
			goto out;
		}
		for (i = 0; i < rs.n; i++)
			if (cmp_unchanged(cmp, rs.start[i], rs.end[i],
					  rev) != 0) {
				snprintf(err, errlen, "ledger: out of memory");
				goto out;
			}
		json_decref(resp);
		rc = etcd_txn(el, cmp, ok_ops, fail_ops, 1, dl, &resp, &ok, &rev,
			      &resps, err, errlen);
		if (rc == PG_ENOTFOUND) {
			/* the lease is gone (e.g. a restored cluster) */
			lease_forget(el, L_RES, lease);
			continue;
		}
		if (rc != PG_OK)
			goto out;
		if (ok)
			goto out;	/* reserved */
		/* changed since: judge again on what is there now */
		json_decref(doc);
		rc = load_state(q, &rs, resps, res->id, &doc, &mine, err,
				errlen);
		if (rc != PG_OK)
			goto out;
		if (mine)
			goto out;	/* an earlier attempt was applied */
		evaluate(&el->r, doc, q, &v);
		if ((rule = judge(q, &v, err, errlen)) >= 0) {
			*rule_out = rule;
			rc = PG_DENIED;
			goto out;
		}
	}
	snprintf(err, errlen, "ledger: etcd: the records of %s and ticket %s "
		 "kept changing (%d attempts)", q->user, q->ticket,
		 ETCD_MAX_ATTEMPTS);
	rc = PG_EBUSY;
out:
	json_decref(resp);
	json_decref(cmp);
	json_decref(ok_ops);
	json_decref(fail_ops);
	json_decref(doc);
	json_decref(rec);
	free(ku);
	free(kt);
	readset_free(&rs);
	return rc;
}

/* The keys a commit reads and writes. */
typedef struct commit_keys {
	char *res_u, *res_t, *issued, *binding, *last;
} commit_keys;

/* What a commit found at one revision. */
typedef struct commit_seen {
	int64_t res_mod, issued_mod, bind_mod, last_mod;	/* 0: absent */
	json_t *binding, *last;					/* or NULL */
} commit_seen;

static void
commit_seen_free(commit_seen *s)
{
	json_decref(s->binding);
	json_decref(s->last);
	memset(s, 0, sizeof(*s));
}

/* The commit's four single-key ranges, in the order of commit_keys. */
static pg_err
commit_parse(const pg_reservation *res, json_t *resps, commit_seen *s,
	     char *err, size_t errlen)
{
	int64_t *mods[4] = { &s->res_mod, &s->issued_mod, &s->bind_mod,
			     &s->last_mod };
	char why[200];
	json_t *kvs;
	kv e = { 0 };
	size_t i;
	pg_err rc;

	commit_seen_free(s);
	if (json_array_size(resps) != 4) {
		snprintf(err, errlen, "ledger: etcd answered %zu ranges for 4",
			 json_array_size(resps));
		return PG_EPROTO;
	}
	for (i = 0; i < 4; i++) {
		kvs = range_kvs(resps, i);
		if (json_array_size(kvs) == 0)
			continue;
		if ((rc = kv_parse(json_array_get(kvs, 0), &e, err,
				   errlen)) != PG_OK)
			return rc;
		*mods[i] = e.mod;
		if ((i == 2 && !record_ok(REC_BINDING, e.val, why,
					  sizeof(why))) ||
		    (i == 3 && !record_ok(REC_LAST, e.val, why, sizeof(why)))) {
			rc = damaged(e.key, err, errlen, "%s", why);
			kv_free(&e);
			return rc;
		}
		if (i == 3 && (strcmp(S(e.val, "user"), res->user) != 0 ||
			       strcmp(S(e.val, "role"), res->role) != 0)) {
			rc = damaged(e.key, err, errlen, "the record does not "
				     "match its key");
			kv_free(&e);
			return rc;
		}
		if (i == 2)
			s->binding = json_incref(e.val);
		if (i == 3)
			s->last = json_incref(e.val);
		kv_free(&e);
	}
	return PG_OK;
}

static pg_err
etcd_commit(void *impl, const pg_reservation *res, int64_t expiration,
	    const char *access_key_id, char *err, size_t errlen)
{
	etcd_ledger *el = impl;
	pg_deadline dl = pg_deadline_in(el->timeout_ms);
	commit_keys k = { 0 };
	commit_seen seen = { 0 };
	json_t *reads = NULL, *none = NULL, *cmp = NULL, *ops = NULL;
	json_t *resp = NULL, *resps, *rec = NULL, *doc = NULL, *before = NULL;
	int64_t rev, lease[L_COUNT];
	int attempt, ok, found = 0, c;
	pg_err rc = PG_ENOMEM;

	k.res_u = mkkey(el, "u/", res->user, res->role, "r/", res->id);
	k.res_t = mkkey(el, "t/", res->ticket, NULL, "r/", res->id);
	k.issued = mkkey(el, "u/", res->user, res->role, "i/", res->id);
	k.binding = mkkey(el, "t/", res->ticket, NULL, "b", NULL);
	k.last = mkkey(el, "l/", res->user, res->role, NULL, NULL);
	reads = json_array();
	none = json_array();
	rec = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "user", res->user,
			"role", res->role, "ticket", res->ticket, "ts",
			(json_int_t)res->ts, "expiration",
			(json_int_t)expiration, "access_key_id",
			access_key_id ? access_key_id : "");
	if (k.res_u == NULL || k.res_t == NULL || k.issued == NULL ||
	    k.binding == NULL || k.last == NULL || reads == NULL ||
	    none == NULL || rec == NULL || op_range(reads, k.res_u, NULL) ||
	    op_range(reads, k.issued, NULL) || op_range(reads, k.binding, NULL)
	    || op_range(reads, k.last, NULL)) {
		snprintf(err, errlen, "ledger: out of memory");
		goto out;
	}
	if ((rc = etcd_txn(el, none, reads, none, 0, dl, &resp, &ok, &rev,
			   &resps, err, errlen)) != PG_OK ||
	    (rc = commit_parse(res, resps, &seen, err, errlen)) != PG_OK)
		goto out;
	for (attempt = 0; attempt < ETCD_MAX_ATTEMPTS; attempt++) {
		if (seen.issued_mod != 0) {
			rc = PG_OK;	/* an earlier attempt was applied */
			goto out;
		}
		found = seen.res_mod != 0;
		for (c = L_ISSUED; c < L_COUNT; c++)
			if ((rc = lease_get(el, (enum lease_class)c, dl,
					    &lease[c], err, errlen)) != PG_OK)
				goto out;
		/* the binding and the last issuance as the file backend
		 * makes them */
		json_decref(doc);
		json_decref(before);
		doc = json_pack("{s:{}, s:[]}", "tickets", "last");
		if (doc == NULL ||
		    (seen.binding != NULL &&
		     json_object_set(json_object_get(doc, "tickets"),
				     res->ticket, seen.binding) != 0) ||
		    (seen.last != NULL &&
		     json_array_append(json_object_get(doc, "last"),
				       seen.last) != 0) ||
		    (before = json_deep_copy(doc)) == NULL ||
		    bind_ticket(&el->r, doc, res) != 0 ||
		    note_last(doc, res) != 0) {
			snprintf(err, errlen, "ledger: out of memory");
			rc = PG_ENOMEM;
			goto out;
		}
		json_decref(cmp);
		json_decref(ops);
		cmp = json_array();
		ops = json_array();
		rc = PG_ENOMEM;
		if (cmp == NULL || ops == NULL ||
		    cmp_key(cmp, k.res_u, seen.res_mod) != 0 ||
		    cmp_key(cmp, k.issued, 0) != 0 ||
		    cmp_key(cmp, k.binding, seen.bind_mod) != 0 ||
		    cmp_key(cmp, k.last, seen.last_mod) != 0 ||
		    op_delete(ops, k.res_u) != 0 ||
		    op_delete(ops, k.res_t) != 0 ||
		    op_put(ops, k.issued, rec, lease[L_ISSUED]) != 0 ||
		    (!json_equal(json_object_get(doc, "tickets"),
				 json_object_get(before, "tickets")) &&
		     op_put(ops, k.binding, json_object_get(json_object_get(
			    doc, "tickets"), res->ticket),
			    lease[L_BIND]) != 0) ||
		    (!json_equal(json_object_get(doc, "last"),
				 json_object_get(before, "last")) &&
		     op_put(ops, k.last, json_array_get(json_object_get(doc,
			    "last"), 0), lease[L_LAST]) != 0)) {
			snprintf(err, errlen, "ledger: out of memory");
			goto out;
		}
		json_decref(resp);
		rc = etcd_txn(el, cmp, ops, reads, 1, dl, &resp, &ok, &rev,
			      &resps, err, errlen);
		if (rc == PG_ENOTFOUND) {
			for (c = L_ISSUED; c < L_COUNT; c++)
				lease_forget(el, (enum lease_class)c, lease[c]);
			continue;
		}
		if (rc != PG_OK)
			goto out;
		if (ok)
			break;
		if ((rc = commit_parse(res, resps, &seen, err,
				       errlen)) != PG_OK)
			goto out;
	}
	if (attempt == ETCD_MAX_ATTEMPTS) {
		snprintf(err, errlen, "ledger: etcd: the records of ticket %s "
			 "kept changing (%d attempts)", res->ticket,
			 ETCD_MAX_ATTEMPTS);
		rc = PG_EBUSY;
		goto out;
	}
	rc = PG_OK;
	if (!found) {
		snprintf(err, errlen, "ledger: the reservation of %s for %s "
			 "with ticket %s lapsed before it was committed (lease "
			 "%lld s); the issuance is recorded", res->user,
			 res->role, res->ticket, (long long)el->r.lease);
		rc = PG_ETIMEOUT;
	}
out:
	commit_seen_free(&seen);
	json_decref(resp);
	json_decref(reads);
	json_decref(none);
	json_decref(cmp);
	json_decref(ops);
	json_decref(rec);
	json_decref(doc);
	json_decref(before);
	free(k.res_u);
	free(k.res_t);
	free(k.issued);
	free(k.binding);
	free(k.last);
	return rc;
}

static pg_err
etcd_release(void *impl, const pg_reservation *res, char *err, size_t errlen)
{
	etcd_ledger *el = impl;
	json_t *none = json_array(), *ops = json_array(), *resp = NULL, *resps;
	char *ku = mkkey(el, "u/", res->user, res->role, "r/", res->id);
	char *kt = mkkey(el, "t/", res->ticket, NULL, "r/", res->id);
	int64_t rev;
	pg_err rc = PG_ENOMEM;
	int ok;

	if (none == NULL || ops == NULL || ku == NULL || kt == NULL ||
	    op_delete(ops, ku) != 0 || op_delete(ops, kt) != 0) {
		snprintf(err, errlen, "ledger: out of memory");
		goto out;
	}
	rc = etcd_txn(el, none, ops, none, 0, pg_deadline_in(el->timeout_ms),
		      &resp, &ok, &rev, &resps, err, errlen);
out:
	json_decref(resp);
	json_decref(none);
	json_decref(ops);
	free(ku);
	free(kt);
	return rc;
}

static pg_err
etcd_last(void *impl, const char *user, const char *role, int64_t *when,
	  char *err, size_t errlen)
{
	etcd_ledger *el = impl;
	json_t *none = json_array(), *ops = json_array(), *resp = NULL, *resps;
	json_t *kvs;
	char *key = mkkey(el, "l/", user, role, NULL, NULL), why[200];
	int64_t rev;
	kv e = { 0 };
	pg_err rc = PG_ENOMEM;
	int ok;

	if (none == NULL || ops == NULL || key == NULL ||
	    op_range(ops, key, NULL) != 0) {
		snprintf(err, errlen, "ledger: out of memory");
		goto out;
	}
	rc = etcd_txn(el, none, ops, none, 0, pg_deadline_in(el->timeout_ms),
		      &resp, &ok, &rev, &resps, err, errlen);
	if (rc != PG_OK)
		goto out;
	kvs = range_kvs(resps, 0);
	if (json_array_size(kvs) == 0)
		goto out;
	if ((rc = kv_parse(json_array_get(kvs, 0), &e, err, errlen)) != PG_OK)
		goto out;
	if (!record_ok(REC_LAST, e.val, why, sizeof(why)))
		rc = damaged(e.key, err, errlen, "%s", why);
	else if (strcmp(S(e.val, "user"), user) != 0 ||
		 strcmp(S(e.val, "role"), role) != 0)
		rc = damaged(e.key, err, errlen, "the record does not match "
			     "its key");
	else
		*when = I(e.val, "ts");
out:
	kv_free(&e);
	json_decref(resp);
	json_decref(none);
	json_decref(ops);
	free(key);
	return rc;
}

static const struct ledger_ops etcd_ops = {
	"etcd", etcd_open, etcd_close, etcd_facts, etcd_reserve, etcd_commit,
	etcd_release, etcd_last,
};

/* ---- the front end ------------------------------------------------------------ */

static const struct ledger_ops *const backends[] = { &file_ops, &etcd_ops };

pg_err
pg_ledger_open(const pg_config *cfg, pg_ledger **out, char *err, size_t errlen)
{
	const char *name = cfg->ledger.backend ? cfg->ledger.backend : "file";
	const struct ledger_ops *ops = NULL;
	pg_ledger *l;
	size_t i;
	pg_err rc;

	*out = NULL;
	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (strcmp(backends[i]->name, name) == 0)
			ops = backends[i];
	if (ops == NULL) {
		snprintf(err, errlen, "[ledger] backend %s is not supported "
			 "(file or etcd)", name);
		return PG_ECONFIG;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		return PG_ENOMEM;
	}
	l->ops = ops;
	if ((rc = ops->open(cfg, &l->impl, err, errlen)) != PG_OK) {
		free(l);
		return rc;
	}
	*out = l;
	return PG_OK;
}

void
pg_ledger_close(pg_ledger *l)
{
	if (l == NULL)
		return;
	l->ops->close(l->impl);
	free(l);
}

pg_err
pg_ledger_facts_get(pg_ledger *l, const char *user, const char *role,
		    const char *ticket, const char *const *conflicts,
		    size_t n_conflicts, int64_t now, pg_ledger_facts *f,
		    void **hold, char *err, size_t errlen)
{
	struct facts_hold *h = NULL;
	query q = { user, role, ticket, conflicts, n_conflicts, 0, now };
	pg_err rc;

	memset(f, 0, sizeof(*f));
	*hold = NULL;
	if (q.ticket != NULL && q.ticket[0] == '\0')
		q.ticket = NULL;
	if ((rc = check_query(&q, 0, err, errlen)) != PG_OK)
		return rc;
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		return PG_ENOMEM;
	}
	rc = l->ops->facts(l->impl, &q, f, h, err, errlen);
	if (rc != PG_OK) {
		memset(f, 0, sizeof(*f));
		pg_ledger_facts_free(h);
		return rc;
	}
	*hold = h;
	return PG_OK;
}

void
pg_ledger_facts_free(void *hold)
{
	struct facts_hold *h = hold;

	if (h == NULL)
		return;
	free(h->conflict_role);
	free(h->bound_user);
	free(h->bound_role);
	free(h);
}

pg_err
pg_ledger_reserve(pg_ledger *l, const char *user, const char *role,
		  const char *ticket, const char *const *conflicts,
		  size_t n_conflicts, int max_uses, int64_t now,
		  pg_reservation **res, int *rule_out, char *err,
		  size_t errlen)
{
	query q = { user, role, ticket, conflicts, n_conflicts, max_uses,
		    now };
	unsigned char rnd[16];
	pg_reservation *r = NULL;
	pg_err rc;
	size_t i;

	*res = NULL;
	*rule_out = PG_R9;
	if ((rc = check_query(&q, 1, err, errlen)) != PG_OK)
		return rc;
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->user = strdup(user)) == NULL ||
	    (r->role = strdup(role)) == NULL ||
	    (r->ticket = strdup(ticket)) == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		snprintf(err, errlen, "ledger: no random bytes for a "
			 "reservation id");
		rc = PG_EINTERNAL;
		goto out;
	}
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(r->id + 2 * i, 3, "%02x", rnd[i]);
	r->ledger = l;
	r->ts = now;
	rc = l->ops->reserve(l->impl, &q, r, rule_out, err, errlen);
	if (rc == PG_OK) {
		*res = r;
		r = NULL;
	} else if (rc != PG_DENIED) {
		*rule_out = PG_R9;
	}
out:
	reservation_free(r);
	return rc;
}

pg_err
pg_ledger_commit(pg_ledger *l, pg_reservation *res, int64_t expiration,
		 const char *access_key_id, char *err, size_t errlen)
{
	pg_err rc;

	if (res == NULL || res->ledger != l) {
		snprintf(err, errlen, "ledger: no reservation to commit");
		reservation_free(res);
		return PG_EINVAL;
	}
	if (access_key_id != NULL &&
	    (rc = check_value("access key id", access_key_id, err,
			      errlen)) != PG_OK) {
		reservation_free(res);
		return rc;
	}
	rc = l->ops->commit(l->impl, res, expiration < 0 ? 0 : expiration,
			    access_key_id, err, errlen);
	reservation_free(res);
	return rc;
}

pg_err
pg_ledger_release(pg_ledger *l, pg_reservation *res, char *err, size_t errlen)
{
	pg_err rc;

	if (res == NULL || res->ledger != l) {
		snprintf(err, errlen, "ledger: no reservation to release");
		reservation_free(res);
		return PG_EINVAL;
	}
	rc = l->ops->release(l->impl, res, err, errlen);
	reservation_free(res);
	return rc;
}

pg_err
pg_ledger_last_issuance(pg_ledger *l, const char *user, const char *role,
			int64_t *when, char *err, size_t errlen)
{
	pg_err rc;

	*when = 0;
	if ((rc = check_value("user", user, err, errlen)) != PG_OK ||
	    (rc = check_value("role", role, err, errlen)) != PG_OK)
		return rc;
	return l->ops->last(l->impl, user, role, when, err, errlen);
}
