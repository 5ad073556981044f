/*
 * ledger.c - the issuance ledger (see ledger.h for the semantics and the
 * file format).
 *
 * The front end validates arguments, owns reservations and turns a view of
 * the ledger into facts or a verdict; a backend (a table of operations,
 * chosen by [ledger] backend) stores and retrieves.  Only the file backend
 * exists; an etcd backend adds a table, callers do not change.
 */
#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
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
#define FORMAT_VERSION 1
/* The lock file is empty and only ever opened for reading (flock needs no
 * more), so whoever created it, the daemon's user can lock it. */
#define LOCK_MODE 0644

typedef struct file_ledger {
	char *dir;		/* [ledger] path */
	int64_t window;		/* [separation] window */
	int64_t lease;		/* reservation lease, seconds */
	int64_t ticket_keep;	/* binding retention after last use */
	char boot_id[64];	/* "" = unknown */
	long long pidns;	/* inode of our pid namespace; 0 = unknown */
	pthread_mutex_t mu;	/* serialises this process's writers */
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
owner_gone(const file_ledger *fl, json_t *r)
{
	const char *boot = json_string_value(json_object_get(r, "boot_id"));
	long long pid = json_integer_value(json_object_get(r, "pid"));
	long long start = json_integer_value(json_object_get(r, "start"));
	long long ns = json_integer_value(json_object_get(r, "pidns"));
	long long now_start = 0;
	char state = '?';

	if (boot[0] != '\0' && fl->boot_id[0] != '\0' &&
	    strcmp(boot, fl->boot_id) != 0)
		return 1;	/* the host rebooted since */
	if (ns == 0 || fl->pidns == 0 || ns != fl->pidns)
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

static pg_err __attribute__((format(printf, 4, 5)))
corrupt(const char *dir, char *err, size_t errlen, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "ledger %s/%s is damaged: %s (refused; repair "
		 "or restore it)", dir, LEDGER_FILE, what);
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

/* Check ROOT against the version-1 format, strictly. */
static pg_err
validate(const file_ledger *fl, json_t *root, char *err, size_t errlen)
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
	json_t *issued, *tickets, *last, *res, *e;
	json_int_t version, n;
	json_error_t je;
	const char *key, *s;
	size_t i;

	if (json_unpack_ex(root, &je, JSON_STRICT, "{s:I, s:o, s:o, s:o, s:o}",
			   "version", &version, "issued", &issued, "tickets",
			   &tickets, "last", &last, "reservations", &res) != 0)
		return corrupt(fl->dir, err, errlen, "%s", je.text);
	if (version != FORMAT_VERSION)
		return corrupt(fl->dir, err, errlen, "version %lld, expected %d",
			       (long long)version, FORMAT_VERSION);
	if (!json_is_array(issued) || !json_is_object(tickets) ||
	    !json_is_array(last) || !json_is_array(res))
		return corrupt(fl->dir, err, errlen, "issued, last and "
			       "reservations must be arrays, tickets an object");
	json_array_foreach(issued, i, e) {
		if (json_unpack_ex(e, &je, JSON_STRICT,
				   "{s:s, s:s, s:s, s:I, s:I, s:s}", "user",
				   &s, "role", &s, "ticket", &s, "ts",
				   &n, "expiration", &n,
				   "access_key_id", &s) != 0)
			return corrupt(fl->dir, err, errlen, "issued[%zu]: %s", i,
				       je.text);
		if (!nonneg(e, issued_n) || !nonempty(e, urt))
			return corrupt(fl->dir, err, errlen, "issued[%zu]: negative "
				       "time or empty name", i);
	}
	json_object_foreach(tickets, key, e) {
		if (key[0] == '\0' ||
		    json_unpack_ex(e, &je, JSON_STRICT,
				   "{s:s, s:s, s:I, s:I, s:I}", "user", &s,
				   "role", &s, "first", &n, "last",
				   &n, "uses", &n) != 0 ||
		    !nonneg(e, ticket_n) || !nonempty(e, ur) ||
		    I(e, "uses") < 1)
			return corrupt(fl->dir, err, errlen, "tickets: the binding "
				       "of a ticket is malformed");
	}
	json_array_foreach(last, i, e) {
		if (json_unpack_ex(e, &je, JSON_STRICT, "{s:s, s:s, s:I}",
				   "user", &s, "role", &s, "ts",
				   &n) != 0)
			return corrupt(fl->dir, err, errlen, "last[%zu]: %s", i,
				       je.text);
		if (!nonneg(e, last_n) || !nonempty(e, ur))
			return corrupt(fl->dir, err, errlen, "last[%zu]: negative "
				       "time or empty name", i);
	}
	json_array_foreach(res, i, e) {
		if (json_unpack_ex(e, &je, JSON_STRICT,
				   "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, "
				   "s:s, s:I}", "id", &s, "user", &s,
				   "role", &s, "ticket", &s, "ts", &n,
				   "expires", &n, "pid", &n,
				   "start", &n, "boot_id", &s,
				   "pidns", &n) != 0)
			return corrupt(fl->dir, err, errlen,
				       "reservations[%zu]: %s", i, je.text);
		if (!nonneg(e, res_n) || !nonempty(e, urti) || I(e, "pid") < 1)
			return corrupt(fl->dir, err, errlen,
				       "reservations[%zu]: bad pid, negative "
				       "time or empty name", i);
	}
	return PG_OK;
}

/* ---- the file backend: liveness and evaluation ----------------------------- */

static int
issue_live(const file_ledger *fl, json_t *e, int64_t now)
{
	return now - I(e, "ts") < fl->window;
}

static int
binding_live(const file_ledger *fl, json_t *t, int64_t now)
{
	return now - I(t, "last") < fl->ticket_keep;
}

static int
last_live(json_t *e, int64_t now)
{
	return now - I(e, "ts") < PG_LEDGER_LAST_KEEP;
}

static int
reservation_live(const file_ledger *fl, json_t *r, int64_t now)
{
	return now < I(r, "expires") && !owner_gone(fl, r);
}

/* R6/R7 view of ROOT for Q (see ledger.h, "Rules"). */
static void
evaluate(const file_ledger *fl, json_t *root, const query *q, view *v)
{
	json_t *issued = json_object_get(root, "issued");
	json_t *res = json_object_get(root, "reservations");
	json_t *e, *t = NULL;
	int64_t ts;
	size_t i;

	memset(v, 0, sizeof(*v));
	json_array_foreach(issued, i, e) {
		ts = I(e, "ts");
		if (!issue_live(fl, e, q->now) ||
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
		if (t != NULL && binding_live(fl, t, q->now)) {
			v->bound_user = S(t, "user");
			v->bound_role = S(t, "role");
			v->uses = (int)(I(t, "uses") > 1000000000 ?
					1000000000 : I(t, "uses"));
		}
	}
	json_array_foreach(res, i, e) {
		if (!reservation_live(fl, e, q->now))
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

/* Drop every record that no longer matters at NOW. */
static void
purge(const file_ledger *fl, json_t *root, int64_t now)
{
	json_t *issued = json_object_get(root, "issued");
	json_t *last = json_object_get(root, "last");
	json_t *res = json_object_get(root, "reservations");
	json_t *tickets = json_object_get(root, "tickets");
	const char *key;
	json_t *e;
	void *tmp;
	size_t i;

	for (i = json_array_size(issued); i-- > 0;)
		if (!issue_live(fl, json_array_get(issued, i), now))
			json_array_remove(issued, i);
	for (i = json_array_size(last); i-- > 0;)
		if (!last_live(json_array_get(last, i), now))
			json_array_remove(last, i);
	for (i = json_array_size(res); i-- > 0;)
		if (!reservation_live(fl, json_array_get(res, i), now))
			json_array_remove(res, i);
	json_object_foreach_safe(tickets, tmp, key, e)
		if (!binding_live(fl, e, now))
			json_object_del(tickets, key);
}

/* Remove the reservation ID; 1 if it was there. */
static int
remove_reservation(json_t *root, const char *id)
{
	json_t *res = json_object_get(root, "reservations");
	size_t i;

	for (i = 0; i < json_array_size(res); i++)
		if (strcmp(S(json_array_get(res, i), "id"), id) == 0) {
			json_array_remove(res, i);
			return 1;
		}
	return 0;
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

/* Read and validate the state; a missing file is an empty ledger. */
static pg_err
read_state(const file_ledger *fl, int dfd, json_t **out, char *err,
	   size_t errlen)
{
	json_error_t je;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;
	json_t *root = NULL;
	pg_err rc;
	int fd;

	*out = NULL;
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
	for (;;) {
		if (len == cap) {
			char *nb;

			cap = cap ? cap * 2 : 65536;
			if ((nb = realloc(buf, cap)) == NULL) {
				snprintf(err, errlen, "ledger: out of memory");
				rc = PG_ENOMEM;
				goto out;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "ledger %s/%s: cannot read: %s",
				 fl->dir, LEDGER_FILE, strerror(errno));
			rc = PG_EUNAVAIL;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > PG_LEDGER_MAX_FILE) {
			rc = corrupt(fl->dir, err, errlen, "larger than %u "
				     "bytes", PG_LEDGER_MAX_FILE);
			goto out;
		}
	}
	root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		rc = corrupt(fl->dir, err, errlen, "%s (line %ld)", je.text,
			     (long)je.line);
		goto out;
	}
	if ((rc = validate(fl, root, err, errlen)) != PG_OK)
		goto out;
	*out = root;
	root = NULL;
out:
	json_decref(root);
	free(buf);
	close(fd);
	return rc;
}

/* Write ROOT to the temp file, fsync, rename over the ledger, fsync the
 * directory.  Called with the lock held. */
static pg_err
write_state(const file_ledger *fl, int dfd, json_t *root, char *err,
	    size_t errlen)
{
	char *buf = NULL;
	size_t len, off = 0;
	ssize_t n;
	pg_err rc = PG_EUNAVAIL;
	int fd = -1, created = 0;

	buf = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	if (buf == NULL) {
		snprintf(err, errlen, "ledger: out of memory");
		return PG_ENOMEM;
	}
	len = strlen(buf);
	/* A leftover from a writer that died: we hold the lock, so it is
	 * nobody's. */
	if (unlinkat(dfd, TMP_FILE, 0) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "ledger %s/%s: cannot remove: %s",
			 fl->dir, TMP_FILE, strerror(errno));
		goto out;
	}
	fd = openat(dfd, TMP_FILE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "ledger %s/%s: cannot create: %s",
			 fl->dir, TMP_FILE, strerror(errno));
		goto out;
	}
	created = 1;
	while (off < len + 1) {
		/* the document, then one newline */
		n = off < len ? write(fd, buf + off, len - off) :
				write(fd, "\n", 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "ledger %s/%s: cannot write: %s",
				 fl->dir, TMP_FILE, n < 0 ? strerror(errno) :
				 "short write");
			goto out;
		}
		off += (size_t)n;
	}
	if (fsync(fd) != 0) {
		snprintf(err, errlen, "ledger %s/%s: fsync: %s", fl->dir,
			 TMP_FILE, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(err, errlen, "ledger %s/%s: close: %s", fl->dir,
			 TMP_FILE, strerror(errno));
		goto out;
	}
	fd = -1;
	if (renameat(dfd, TMP_FILE, dfd, LEDGER_FILE) != 0) {
		snprintf(err, errlen, "ledger %s/%s: rename: %s", fl->dir,
			 LEDGER_FILE, strerror(errno));
		goto out;
	}
	created = 0;
	if (fsync(dfd) != 0) {
		snprintf(err, errlen, "ledger directory %s: fsync: %s",
			 fl->dir, strerror(errno));
		goto out;
	}
	rc = PG_OK;
out:
	if (fd >= 0)
		close(fd);
	if (created)
		(void)unlinkat(dfd, TMP_FILE, 0);
	free(buf);
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

/* A read-modify-write: mutex, directory, lock, current state. */
typedef struct txn {
	file_ledger *fl;
	int dfd, lfd;
	json_t *root;
} txn;

static pg_err
txn_begin(file_ledger *fl, txn *t, char *err, size_t errlen)
{
	pg_err rc;

	t->fl = fl;
	t->dfd = t->lfd = -1;
	t->root = NULL;
	if (pthread_mutex_lock(&fl->mu) != 0) {
		snprintf(err, errlen, "ledger: cannot take the mutex");
		t->fl = NULL;
		return PG_EINTERNAL;
	}
	if ((rc = open_dir(fl, &t->dfd, err, errlen)) == PG_OK &&
	    (rc = lock_file(fl, t->dfd, &t->lfd, err, errlen)) == PG_OK)
		rc = read_state(fl, t->dfd, &t->root, err, errlen);
	return rc;
}

static void
txn_end(txn *t)
{
	json_decref(t->root);
	if (t->lfd >= 0)
		close(t->lfd);	/* releases the flock */
	if (t->dfd >= 0)
		close(t->dfd);
	if (t->fl != NULL)
		pthread_mutex_unlock(&t->fl->mu);
}

/* A read: directory and current state, no lock (rename is atomic). */
static pg_err
snapshot(const file_ledger *fl, json_t **root, char *err, size_t errlen)
{
	pg_err rc;
	int dfd;

	*root = NULL;
	if ((rc = open_dir(fl, &dfd, err, errlen)) != PG_OK)
		return rc;
	rc = read_state(fl, dfd, root, err, errlen);
	close(dfd);
	return rc;
}

/* ---- the file backend: operations ------------------------------------------- */

static void
file_close(void *impl)
{
	file_ledger *fl = impl;

	if (fl == NULL)
		return;
	pthread_mutex_destroy(&fl->mu);
	free(fl->dir);
	free(fl);
}

static pg_err
file_open(const pg_config *cfg, void **impl, char *err, size_t errlen)
{
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
	fl->window = cfg->separation.window;
	fl->lease = (cfg->daemon.deadline_ms > 0 ?
		     (cfg->daemon.deadline_ms + 999) / 1000 : 10) +
		    PG_LEDGER_LEASE_MARGIN;
	fl->ticket_keep = fl->window > PG_LEDGER_TICKET_KEEP ? fl->window :
			  PG_LEDGER_TICKET_KEEP;
	read_boot_id(fl->boot_id, sizeof(fl->boot_id));
	fl->pidns = self_pidns();

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
		if (mu)
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
	json_t *root;
	view v;
	pg_err rc;

	if ((rc = snapshot(fl, &root, err, errlen)) != PG_OK)
		return rc;
	evaluate(fl, root, q, &v);
	rc = copy_view(&v, f, hold, err, errlen);
	json_decref(root);
	return rc;
}

static pg_err
file_reserve(void *impl, const query *q, const pg_reservation *res,
	     int *rule_out, char *err, size_t errlen)
{
	file_ledger *fl = impl;
	long long start = 0;
	char state;
	json_t *r;
	view v;
	txn t;
	pg_err rc;
	int rule;

	if ((rc = txn_begin(fl, &t, err, errlen)) != PG_OK)
		goto out;
	evaluate(fl, t.root, q, &v);
	if ((rule = judge(q, &v, err, errlen)) >= 0) {
		*rule_out = rule;
		rc = PG_DENIED;
		goto out;
	}
	purge(fl, t.root, q->now);
	if (proc_stat((long long)getpid(), &state, &start) != 0)
		start = 0;
	r = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:I}",
		      "id", res->id, "user", res->user, "role", res->role,
		      "ticket", res->ticket, "ts", (json_int_t)q->now,
		      "expires", (json_int_t)(q->now + fl->lease),
		      "pid", (json_int_t)getpid(), "start", (json_int_t)start,
		      "boot_id", fl->boot_id, "pidns", (json_int_t)fl->pidns);
	if (r == NULL ||
	    json_array_append_new(json_object_get(t.root, "reservations"),
				  r) != 0) {
		snprintf(err, errlen, "ledger: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	rc = write_state(fl, t.dfd, t.root, err, errlen);
out:
	txn_end(&t);
	return rc;
}

/* The ticket's binding after an issuance by RES at its ts. */
static int
bind_ticket(const file_ledger *fl, json_t *root, const pg_reservation *res)
{
	json_t *tickets = json_object_get(root, "tickets");
	json_t *t = json_object_get(tickets, res->ticket);

	if (t != NULL && binding_live(fl, t, res->ts)) {
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

/* The user's last issuance of the role. */
static int
note_last(json_t *root, const pg_reservation *res)
{
	json_t *last = json_object_get(root, "last");
	json_t *e;
	size_t i;

	json_array_foreach(last, i, e) {
		if (strcmp(S(e, "user"), res->user) != 0 ||
		    strcmp(S(e, "role"), res->role) != 0)
			continue;
		if (res->ts > I(e, "ts"))
			return json_object_set_new(e, "ts",
						   json_integer(res->ts));
		return 0;
	}
	return json_array_append_new(last, json_pack("{s:s, s:s, s:I}",
				     "user", res->user, "role", res->role,
				     "ts", (json_int_t)res->ts));
}

static pg_err
file_commit(void *impl, const pg_reservation *res, int64_t expiration,
	    const char *access_key_id, char *err, size_t errlen)
{
	file_ledger *fl = impl;
	json_t *rec;
	txn t;
	pg_err rc;
	int found;

	if ((rc = txn_begin(fl, &t, err, errlen)) != PG_OK)
		goto out;
	found = remove_reservation(t.root, res->id);
	rec = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "user", res->user,
			"role", res->role, "ticket", res->ticket, "ts",
			(json_int_t)res->ts, "expiration",
			(json_int_t)expiration, "access_key_id",
			access_key_id ? access_key_id : "");
	if (rec == NULL ||
	    json_array_append_new(json_object_get(t.root, "issued"), rec) != 0 ||
	    bind_ticket(fl, t.root, res) != 0 || note_last(t.root, res) != 0) {
		snprintf(err, errlen, "ledger: out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	purge(fl, t.root, res->ts);
	if ((rc = write_state(fl, t.dfd, t.root, err, errlen)) != PG_OK)
		goto out;
	if (!found) {
		snprintf(err, errlen, "ledger: the reservation of %s for %s "
			 "with ticket %s lapsed before it was committed (lease "
			 "%lld s); the issuance is recorded", res->user,
			 res->role, res->ticket, (long long)fl->lease);
		rc = PG_ETIMEOUT;
	}
out:
	txn_end(&t);
	return rc;
}

static pg_err
file_release(void *impl, const pg_reservation *res, char *err, size_t errlen)
{
	file_ledger *fl = impl;
	txn t;
	pg_err rc;

	if ((rc = txn_begin(fl, &t, err, errlen)) != PG_OK)
		goto out;
	if (!remove_reservation(t.root, res->id))
		goto out;	/* lapsed already: nothing to undo */
	purge(fl, t.root, res->ts);
	rc = write_state(fl, t.dfd, t.root, err, errlen);
out:
	txn_end(&t);
	return rc;
}

static pg_err
file_last(void *impl, const char *user, const char *role, int64_t *when,
	  char *err, size_t errlen)
{
	file_ledger *fl = impl;
	json_t *root, *e;
	size_t i;
	pg_err rc;

	if ((rc = snapshot(fl, &root, err, errlen)) != PG_OK)
		return rc;
	json_array_foreach(json_object_get(root, "last"), i, e)
		if (strcmp(S(e, "user"), user) == 0 &&
		    strcmp(S(e, "role"), role) == 0)
			*when = I(e, "ts");
	json_decref(root);
	return PG_OK;
}

static const struct ledger_ops file_ops = {
	"file", file_open, file_close, file_facts, file_reserve, file_commit,
	file_release, file_last,
};

/* ---- the front end ------------------------------------------------------------ */

static const struct ledger_ops *const backends[] = { &file_ops };

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
			 "yet (use file)", name);
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
