/*
 * gather.c - facts for one request; see gather.h.
 *
 * The ticket lookup and the user's directory lookups are independent, so
 * they run at the same time: the worker's fetcher thread performs
 * pg_ticket_fetch() while the worker talks to the directory.  Only the
 * people the ticket names need both.
 *
 * The directory is asked in as few round trips as the facts allow (a
 * pg_dir_batch sends each step's requests together):
 *   1. the user's entry (with what membership needs of it);
 *   2. the memberships of the role group and of every conflicting group,
 *      and, when the ticket is in by then, the people it names;
 *   3. the approvers' approver-group memberships, together with whatever
 *      nested levels the user's memberships still need.
 * When the ticket arrives only after step 2 was sent, the people and then
 * the approvers follow in a second batch.  The facts are exactly those of
 * doing every lookup one after the other; a failed batch leaves its facts
 * UNKNOWN with the error recorded.
 */
#include "gather.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the fetcher ---------------------------------------------------------- */

enum { F_IDLE, F_JOB, F_DONE, F_STOP };

struct pg_fetcher {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t tid;
	pg_http *http;
	int state;
	/* the job: borrowed from the pg_gather() that waits for it */
	const pg_config *cfg;
	const char *id;
	pg_deadline dl;
	pg_ticket *out;
	char *err;
	size_t errlen;
	pg_err rc;
};

static void *
fetcher_main(void *arg)
{
	pg_fetcher *f = arg;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		while (f->state != F_JOB && f->state != F_STOP)
			pthread_cond_wait(&f->cond, &f->lock);
		if (f->state == F_STOP)
			break;
		pthread_mutex_unlock(&f->lock);
		/* f->http and the job fields are ours until F_DONE. */
		f->rc = pg_ticket_fetch(f->http, f->cfg, f->id, f->dl, f->out,
					f->err, f->errlen);
		pthread_mutex_lock(&f->lock);
		f->state = F_DONE;
		pthread_cond_broadcast(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

pg_fetcher *
pg_fetcher_new(void)
{
	pg_fetcher *f = calloc(1, sizeof(*f));
	int have_lock = 0, have_cond = 0;

	if (f == NULL)
		return NULL;
	if (pthread_mutex_init(&f->lock, NULL) != 0)
		goto fail;
	have_lock = 1;
	if (pthread_cond_init(&f->cond, NULL) != 0)
		goto fail;
	have_cond = 1;
	f->state = F_IDLE;
	if ((f->http = pg_http_new()) == NULL)
		goto fail;
	if (pthread_create(&f->tid, NULL, fetcher_main, f) != 0)
		goto fail;
	return f;
fail:
	pg_http_free(f->http);
	if (have_cond)
		pthread_cond_destroy(&f->cond);
	if (have_lock)
		pthread_mutex_destroy(&f->lock);
	free(f);
	return NULL;
}

void
pg_fetcher_free(pg_fetcher *f)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->lock);
	while (f->state == F_JOB)	/* never abandon a job in flight */
		pthread_cond_wait(&f->cond, &f->lock);
	f->state = F_STOP;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->tid, NULL);
	pg_http_free(f->http);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* Hand the fetch of ID to F; the results land in OUT and ERR. */
static void
fetch_start(pg_fetcher *f, const pg_config *cfg, const char *id,
	    pg_deadline dl, pg_ticket *out, char *err, size_t errlen)
{
	pthread_mutex_lock(&f->lock);
	f->cfg = cfg;
	f->id = id;
	f->dl = dl;
	f->out = out;
	f->err = err;
	f->errlen = errlen;
	f->rc = PG_EINTERNAL;
	f->state = F_JOB;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/*
 * Wait for the fetch started by fetch_start.  The wait is bounded: the
 * fetch gives up at the request deadline (its HTTP timeout is the time
 * left), and the job borrows the caller's memory, so it is never
 * abandoned half-way.
 */
static pg_err
fetch_wait(pg_fetcher *f)
{
	pg_err rc;

	pthread_mutex_lock(&f->lock);
	while (f->state == F_JOB)
		pthread_cond_wait(&f->cond, &f->lock);
	rc = f->rc;
	f->state = F_IDLE;
	f->cfg = NULL;
	f->id = NULL;
	f->out = NULL;
	f->err = NULL;
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* Has the fetch started by fetch_start finished?  (Never waits.) */
static int
fetch_ready(pg_fetcher *f)
{
	int done;

	pthread_mutex_lock(&f->lock);
	done = f->state == F_DONE;
	pthread_mutex_unlock(&f->lock);
	return done;
}

/* ---- facts ---------------------------------------------------------------- */

/* Remember the first directory failure; later ones add nothing new. */
static void
dir_failed(pg_gathered *g, pg_err e, const char *msg)
{
	if (g->facts.dir_status != PG_OK)
		return;
	g->facts.dir_status = e;
	snprintf(g->dir_err, sizeof(g->dir_err), "%s", msg);
	g->facts.dir_error = g->dir_err;
}

/* Wait for the ticket and record it. */
static void
ticket_join(pg_fetcher *fetch, pg_gathered *g)
{
	pg_err e = fetch_wait(fetch);

	g->facts.ticket_status = e;
	g->facts.ticket_error = g->ticket_err;
	if (e == PG_OK)
		g->facts.ticket = &g->ticket;
}

/*
 * The directory lookups after the user's entry, in one batch (one round
 * trip per step, see directory.h): the user's memberships, and the
 * people the ticket names when the ticket is in, followed by the
 * approvers' memberships once those are resolved.
 */
struct lookups {
	pg_dir_batch *b;
	int members;		/* the user's memberships were asked */
	pg_err st_group;
	pg_err st_conf[PG_MAX_ROLES];
	int conf_asked[PG_MAX_ROLES];
	int people;		/* the people were asked */
	int people_taken;	/* ... and their facts derived */
	pg_err st_people[PG_MAX_APPROVERS + 2];
	pg_err st_appr[PG_MAX_APPROVERS];
	int appr_asked[PG_MAX_APPROVERS];
	pg_err e;		/* PG_OK, or the error that failed the batch */
};

static void
lookups_init(pg_dir *dir, struct lookups *l, char *err, size_t errlen)
{
	memset(l, 0, sizeof(*l));
	l->b = pg_dir_batch_new(dir);
	l->e = PG_OK;
	if (l->b == NULL) {
		snprintf(err, errlen, "directory: out of memory");
		l->e = PG_ENOMEM;
	}
}

/* The user's login name as the directory holds it (what memberUid
 * groups list), else as the request gave it. */
static const char *
login_of(const pg_gathered *g, const pg_request *req)
{
	return g->user.name != NULL ? g->user.name : req->user;
}

/* The user's role group (path kept for the explanation) and the group of
 * every conflicting role. */
static pg_err
ask_user(struct lookups *l, const pg_config *cfg, const pg_role_cfg *role,
	 const pg_request *req, pg_gathered *g, char *err, size_t errlen)
{
	size_t i;
	pg_err e;

	l->members = 1;
	e = pg_dir_batch_member(l->b, login_of(g, req), &g->user, role->group,
				&l->st_group, &g->path, err, errlen);
	for (i = 0; e == PG_OK && i < role->conflicts.n && i < PG_MAX_ROLES;
	     i++) {
		const pg_role_cfg *other = pg_config_role(cfg,
							  role->conflicts.v[i]);

		if (other == NULL)
			continue;
		l->conf_asked[i] = 1;
		e = pg_dir_batch_member(l->b, login_of(g, req), &g->user,
					other->group,
					&l->st_conf[i], NULL, err, errlen);
	}
	return e;
}

/* The user's membership facts from the answers (UNKNOWN when the
 * lookups failed). */
static void
take_user(const struct lookups *l, const pg_role_cfg *role, pg_gathered *g)
{
	pg_facts *f = &g->facts;
	size_t i;

	f->in_group = l->e != PG_OK ? PG_FACT_UNKNOWN :
		      l->st_group == PG_OK ? PG_FACT_YES : PG_FACT_NO;
	if (f->in_group == PG_FACT_YES && g->path.n > 0)
		f->group_via = g->path.dn[0];
	for (i = 0; i < role->conflicts.n && i < PG_MAX_ROLES; i++) {
		f->conflicts[i].role = role->conflicts.v[i];
		if (!l->conf_asked[i] || l->e != PG_OK)
			f->conflicts[i].member = PG_FACT_UNKNOWN;
		else
			f->conflicts[i].member = l->st_conf[i] == PG_OK ?
				PG_FACT_YES : PG_FACT_NO;
	}
	f->n_conflicts = i;
}

static size_t
n_approvers(const pg_ticket *t)
{
	return t->approvers.n < PG_MAX_APPROVERS ? t->approvers.n :
						   PG_MAX_APPROVERS;
}

/* Requested-for, requester and every approver, all in one round. */
static pg_err
ask_people(struct lookups *l, pg_gathered *g, char *err, size_t errlen)
{
	const pg_ticket *t = &g->ticket;
	const char *names[PG_MAX_APPROVERS + 2];
	size_t n = 0, i, na = n_approvers(t);

	names[n++] = t->requested_for ? t->requested_for : "";
	names[n++] = t->requester ? t->requester : "";
	for (i = 0; i < na; i++)
		names[n++] = t->approvers.v[i];
	l->people = 1;
	return pg_dir_batch_resolve(l->b, names, n, g->people, l->st_people,
				    err, errlen);
}

/* Same entry as the user?  UNKNOWN when either side is unresolved. */
static pg_fact
same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return PG_FACT_UNKNOWN;
	return pg_dn_equal(a, b) ? PG_FACT_YES : PG_FACT_NO;
}

/* Is the entry DN the user?  A user absent from the directory is nobody
 * the ticket names; a user we could not look up is unknown. */
static pg_fact
is_user(const pg_gathered *g, const char *dn)
{
	if (g->user_dn != NULL)
		return same(dn, g->user_dn);
	if (g->facts.user_status == PG_ENOTFOUND ||
	    g->facts.user_status == PG_EAMBIGUOUS)
		return PG_FACT_NO;
	return PG_FACT_UNKNOWN;
}

/* The person facts, derived from the resolved entries (comparing people
 * as entries, not as names). */
static void
take_people(struct lookups *l, pg_gathered *g)
{
	pg_facts *f = &g->facts;
	const pg_ticket *t = &g->ticket;
	const pg_err *st = l->st_people;
	const char *requester = st[1] == PG_OK ? g->people[1].dn : NULL;
	size_t na = n_approvers(t), i, j;

	l->people_taken = 1;
	/* An unknown or ambiguous name is not the user. */
	f->for_user = st[0] == PG_OK ? is_user(g, g->people[0].dn) :
				       PG_FACT_NO;
	f->requester_is_user = st[1] == PG_OK ? is_user(g, requester) :
						PG_FACT_NO;
	/* A requester the directory cannot name cannot be told apart from
	 * the user or the approvers: pg_decide() refuses (R4, R5). */
	f->requester_status = (t->requester == NULL || t->requester[0] == '\0')
			      ? PG_ENOTFOUND : st[1];

	for (i = 0; i < na; i++) {
		pg_person *p = &g->approvers[i];

		p->name = t->approvers.v[i];
		p->resolved = st[2 + i];
		if (p->resolved != PG_OK)
			continue;
		p->dn = g->people[2 + i].dn;
		p->is_user = is_user(g, p->dn);
		p->is_requester = st[1] == PG_OK ? same(p->dn, requester) :
						   PG_FACT_NO;
		for (j = 0; j < i; j++)
			if (g->approvers[j].dn != NULL &&
			    pg_dn_equal(g->approvers[j].dn, p->dn))
				p->duplicate = 1;
	}
	f->approvers = g->approvers;
	f->n_approvers = na;
}

/* The approver group of every approver that would count (not a
 * duplicate, not the user, not the requester). */
static pg_err
ask_approvers(struct lookups *l, const pg_role_cfg *role, pg_gathered *g,
	      char *err, size_t errlen)
{
	size_t na = n_approvers(&g->ticket), i;
	pg_err e = PG_OK;

	if (role->approver_group == NULL)
		return PG_OK;
	for (i = 0; e == PG_OK && i < na; i++) {
		const pg_person *p = &g->approvers[i];

		if (p->resolved != PG_OK || p->duplicate ||
		    p->is_user != PG_FACT_NO || p->is_requester != PG_FACT_NO)
			continue;
		l->appr_asked[i] = 1;
		/* memberUid groups list login names: the approver's own (as
		 * resolved), not the ticket's spelling */
		e = pg_dir_batch_member(l->b, g->people[2 + i].name != NULL ?
					g->people[2 + i].name : p->name,
					&g->people[2 + i],
					role->approver_group, &l->st_appr[i],
					NULL, err, errlen);
	}
	return e;
}

/* The approvers' membership facts (UNKNOWN when the lookups failed); when
 * the people could not be resolved at all, every approver says so. */
static void
take_approvers(const struct lookups *l, pg_gathered *g)
{
	pg_facts *f = &g->facts;
	size_t na = n_approvers(&g->ticket), i;

	if (!l->people)
		return;
	if (!l->people_taken) {
		for (i = 0; i < na; i++) {
			g->approvers[i].name = g->ticket.approvers.v[i];
			g->approvers[i].resolved = l->e;
		}
		f->approvers = g->approvers;
		f->n_approvers = na;
		return;
	}
	for (i = 0; i < na; i++) {
		if (!l->appr_asked[i])
			continue;
		g->approvers[i].approver_member = l->e != PG_OK ?
			PG_FACT_UNKNOWN : l->st_appr[i] == PG_OK ?
			PG_FACT_YES : PG_FACT_NO;
	}
}

/*
 * Run the lookups to the end.  With people, the first round resolves
 * them (alongside the user's memberships); the approvers' memberships
 * then join the rounds the user's walks still need.
 */
static void
lookups_run(struct lookups *l, const pg_role_cfg *role, pg_deadline dl,
	    pg_gathered *g, char *err, size_t errlen)
{
	int more = 0;

	if (l->e == PG_OK && l->people) {
		l->e = pg_dir_batch_step(l->b, dl, &more, err, errlen);
		if (l->e == PG_OK) {
			take_people(l, g);
			l->e = ask_approvers(l, role, g, err, errlen);
		}
	}
	if (l->e == PG_OK)
		l->e = pg_dir_batch_run(l->b, dl, err, errlen);
	if (l->e != PG_OK)
		dir_failed(g, l->e, err);
}

static void
lookups_free(struct lookups *l)
{
	pg_dir_batch_free(l->b);
	l->b = NULL;
}

/*
 * The user's entry, then one batch for the memberships of the user and,
 * when the ticket is in by then, the people it names; otherwise the
 * people go in a second batch after the ticket has arrived.
 */
static void
gather_dir(pg_dir *dir, pg_fetcher *fetch, int fetching,
	   const pg_config *cfg, const pg_role_cfg *role,
	   const pg_request *req, pg_deadline dl, pg_gathered *g)
{
	pg_facts *f = &g->facts;
	struct lookups l;
	char err[256];

	f->user_status = pg_dir_find_user_entry(dir, req->user, dl, &g->user,
						err, sizeof(err));
	if (f->user_status == PG_EINVAL)
		f->user_status = PG_ENOTFOUND;	/* no such name can exist */
	if (f->user_status != PG_OK) {
		if (f->user_status != PG_ENOTFOUND &&
		    f->user_status != PG_EAMBIGUOUS)
			dir_failed(g, f->user_status, err);
	} else {
		g->user_dn = g->user.dn;
		lookups_init(dir, &l, err, sizeof(err));
		if (l.e == PG_OK)
			l.e = ask_user(&l, cfg, role, req, g, err, sizeof(err));
		if (l.e == PG_OK && fetching && fetch_ready(fetch)) {
			ticket_join(fetch, g);
			fetching = 0;
			if (f->ticket_status == PG_OK)
				l.e = ask_people(&l, g, err, sizeof(err));
		}
		lookups_run(&l, role, dl, g, err, sizeof(err));
		take_user(&l, role, g);
		take_approvers(&l, g);
		lookups_free(&l);
	}
	if (!fetching)
		return;
	ticket_join(fetch, g);
	if (f->ticket_status != PG_OK || f->dir_status != PG_OK)
		return;
	lookups_init(dir, &l, err, sizeof(err));
	if (l.e == PG_OK)
		l.e = ask_people(&l, g, err, sizeof(err));
	lookups_run(&l, role, dl, g, err, sizeof(err));
	take_approvers(&l, g);
	lookups_free(&l);
}

void
pg_gather(pg_dir *dir, pg_fetcher *fetch, pg_ledger *ledger,
	  const pg_config *cfg, const pg_request *req, pg_deadline dl,
	  pg_gathered *g)
{
	pg_facts *f = &g->facts;
	const pg_role_cfg *role;
	int fetching = 0;

	memset(g, 0, sizeof(*g));
	f->now = (int64_t)time(NULL);
	f->dir_status = PG_OK;
	f->audit_status = PG_OK;
	f->ticket_status = PG_EINVAL;
	f->ledger_error = g->ledger_err;
	g->ledger_user = req->user;

	role = pg_config_role(cfg, req->role);
	if (role == NULL)
		return;		/* pg_decide() refuses an unknown role */

	/* The ticket first: it travels while the directory is asked. */
	if (req->ticket != NULL && req->ticket[0] != '\0') {
		if (fetch != NULL) {
			fetch_start(fetch, cfg, req->ticket, dl, &g->ticket,
				    g->ticket_err, sizeof(g->ticket_err));
			fetching = 1;
		} else {
			f->ticket_status = PG_EINTERNAL;
			snprintf(g->ticket_err, sizeof(g->ticket_err),
				 "ticket: no fetcher");
			f->ticket_error = g->ticket_err;
		}
	}

	gather_dir(dir, fetch, fetching, cfg, role, req, dl, g);

	/* The ledger knows people by their entry's login name (the file
	 * backend answers from memory: nothing to overlap).  An entry
	 * without one cannot be told apart from another spelling of the
	 * same person: no ledger facts, so no allow (R9). */
	if (g->user_dn != NULL && g->user.name == NULL) {
		f->ledger_status = PG_EPROTO;
		snprintf(g->ledger_err, sizeof(g->ledger_err), "the directory "
			 "entry of %s holds no value of the first (ATTR=%%u) "
			 "attribute of [directory] user_filter, which names "
			 "people in the ledger", req->user);
		return;
	}
	if (g->user_dn != NULL)
		g->ledger_user = g->user.name;
	if (ledger == NULL) {
		f->ledger_status = PG_EUNAVAIL;
		snprintf(g->ledger_err, sizeof(g->ledger_err), "not open");
	} else {
		f->ledger_status = pg_ledger_facts_get(ledger, g->ledger_user,
			req->role, req->ticket,
			(const char *const *)role->conflicts.v,
			role->conflicts.n, f->now, &f->ledger, &g->ledger_hold,
			g->ledger_err, sizeof(g->ledger_err));
	}
}

void
pg_gathered_free(pg_gathered *g)
{
	size_t i;

	pg_ticket_free(&g->ticket);
	pg_ledger_facts_free(g->ledger_hold);
	pg_dir_entry_free(&g->user);
	pg_dir_path_free(&g->path);
	for (i = 0; i < PG_MAX_APPROVERS + 2; i++)
		pg_dir_entry_free(&g->people[i]);
	memset(g, 0, sizeof(*g));
}
