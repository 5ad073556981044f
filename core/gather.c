/*
 * gather.c - facts for one request; see gather.h.
 *
 * The ticket lookup and the user's directory lookups are independent, so
 * they run at the same time: the worker's fetcher thread performs
 * pg_ticket_fetch() while the worker talks to the directory.  Only the
 * people the ticket names need both, and are resolved after the join.
 * The facts are exactly those of doing the two one after the other.
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

/* Membership as a fact: YES, NO, or UNKNOWN (error recorded). */
static pg_fact
member_fact(pg_dir *dir, pg_gathered *g, const char *login, const char *dn,
	    const char *group, pg_dir_path *path, pg_deadline dl)
{
	char err[256];
	pg_err e;

	e = pg_dir_is_member(dir, login, dn, group, path, dl, err, sizeof(err));
	if (e == PG_OK)
		return PG_FACT_YES;
	if (e == PG_ENOTFOUND)
		return PG_FACT_NO;
	dir_failed(g, e, err);
	return PG_FACT_UNKNOWN;
}

static void
gather_user(pg_dir *dir, const pg_config *cfg, const pg_role_cfg *role,
	    const pg_request *req, pg_deadline dl, pg_gathered *g)
{
	pg_facts *f = &g->facts;
	char err[256];
	size_t i;

	f->user_status = pg_dir_find_user(dir, req->user, dl, &g->user_dn,
					  err, sizeof(err));
	if (f->user_status == PG_EINVAL)
		f->user_status = PG_ENOTFOUND;	/* no such name can exist */
	if (f->user_status != PG_OK) {
		if (f->user_status != PG_ENOTFOUND &&
		    f->user_status != PG_EAMBIGUOUS)
			dir_failed(g, f->user_status, err);
		return;
	}
	f->in_group = member_fact(dir, g, req->user, g->user_dn, role->group,
				  &g->path, dl);
	if (f->in_group == PG_FACT_YES && g->path.n > 0)
		f->group_via = g->path.dn[0];
	for (i = 0; i < role->conflicts.n && i < PG_MAX_ROLES; i++) {
		const pg_role_cfg *other = pg_config_role(cfg,
							  role->conflicts.v[i]);

		f->conflicts[i].role = role->conflicts.v[i];
		f->conflicts[i].member = other == NULL ? PG_FACT_UNKNOWN :
			member_fact(dir, g, req->user, g->user_dn, other->group,
				    NULL, dl);
	}
	f->n_conflicts = i;
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

/*
 * Resolve requested-for, requester and every approver in one directory
 * round trip, then derive the person facts from resolved entries.
 */
static void
gather_people(pg_dir *dir, const pg_role_cfg *role, pg_deadline dl,
	      pg_gathered *g)
{
	pg_facts *f = &g->facts;
	const pg_ticket *t = &g->ticket;
	const char *names[PG_MAX_APPROVERS + 2];
	char *dns[PG_MAX_APPROVERS + 2] = { 0 };
	pg_err st[PG_MAX_APPROVERS + 2];
	size_t n = 0, na, i, j;
	char err[256];
	pg_err e;

	na = t->approvers.n < PG_MAX_APPROVERS ? t->approvers.n :
						 PG_MAX_APPROVERS;
	names[n++] = t->requested_for ? t->requested_for : "";
	names[n++] = t->requester ? t->requester : "";
	for (i = 0; i < na; i++)
		names[n++] = t->approvers.v[i];

	e = pg_dir_resolve(dir, names, n, dns, st, dl, err, sizeof(err));
	if (e != PG_OK) {
		dir_failed(g, e, err);
		for (i = 0; i < na; i++) {
			g->approvers[i].name = t->approvers.v[i];
			g->approvers[i].resolved = e;
		}
		f->approvers = g->approvers;
		f->n_approvers = na;
		return;
	}

	/* An unknown or ambiguous name is not the user. */
	f->for_user = st[0] == PG_OK ? is_user(g, dns[0]) : PG_FACT_NO;
	f->requester_is_user = st[1] == PG_OK ? is_user(g, dns[1]) : PG_FACT_NO;
	/* A requester the directory cannot name cannot be told apart from
	 * the user or the approvers: pg_decide() refuses (R4, R5). */
	f->requester_status = (t->requester == NULL || t->requester[0] == '\0')
			      ? PG_ENOTFOUND : st[1];

	for (i = 0; i < na; i++) {
		pg_person *p = &g->approvers[i];

		p->name = t->approvers.v[i];
		p->resolved = st[2 + i];
		g->approver_dn[i] = dns[2 + i];
		dns[2 + i] = NULL;
		if (p->resolved != PG_OK)
			continue;
		p->dn = g->approver_dn[i];
		p->is_user = is_user(g, p->dn);
		p->is_requester = st[1] == PG_OK ? same(p->dn, dns[1]) :
						   PG_FACT_NO;
		for (j = 0; j < i; j++)
			if (g->approvers[j].dn != NULL &&
			    pg_dn_equal(g->approvers[j].dn, p->dn))
				p->duplicate = 1;
		if (role->approver_group != NULL && !p->duplicate &&
		    p->is_user == PG_FACT_NO && p->is_requester == PG_FACT_NO)
			p->approver_member = member_fact(dir, g, p->name, p->dn,
							 role->approver_group,
							 NULL, dl);
	}
	f->approvers = g->approvers;
	f->n_approvers = na;
	free(dns[0]);
	free(dns[1]);
}

void
pg_gather(pg_dir *dir, pg_fetcher *fetch, pg_ledger *ledger,
	  const pg_config *cfg, const pg_request *req, pg_deadline dl,
	  pg_gathered *g)
{
	pg_facts *f = &g->facts;
	const pg_role_cfg *role;
	int fetching = 0;
	pg_err e;

	memset(g, 0, sizeof(*g));
	f->now = (int64_t)time(NULL);
	f->dir_status = PG_OK;
	f->audit_status = PG_OK;
	f->ticket_status = PG_EINVAL;
	f->ledger_error = g->ledger_err;

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

	if (ledger == NULL) {
		f->ledger_status = PG_EUNAVAIL;
		snprintf(g->ledger_err, sizeof(g->ledger_err), "not open");
	} else {
		f->ledger_status = pg_ledger_facts_get(ledger, req->user,
			req->role, req->ticket,
			(const char *const *)role->conflicts.v,
			role->conflicts.n, f->now, &f->ledger, &g->ledger_hold,
			g->ledger_err, sizeof(g->ledger_err));
	}

	gather_user(dir, cfg, role, req, dl, g);

	if (!fetching)
		return;
	e = fetch_wait(fetch);
	f->ticket_status = e;
	f->ticket_error = g->ticket_err;
	if (e != PG_OK)
		return;
	f->ticket = &g->ticket;
	if (f->dir_status == PG_OK)
		gather_people(dir, role, dl, g);
}

void
pg_gathered_free(pg_gathered *g)
{
	size_t i;

	pg_ticket_free(&g->ticket);
	pg_ledger_facts_free(g->ledger_hold);
	free(g->user_dn);
	pg_dir_path_free(&g->path);
	for (i = 0; i < PG_MAX_APPROVERS; i++)
		free(g->approver_dn[i]);
	memset(g, 0, sizeof(*g));
}
