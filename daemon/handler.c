/* handler.c - one request, start to answer; see handler.h. */
#include "handler.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../client/proto.h"
#include "admin.h"
#include "../core/awscreds.h"
#include "../core/deadline.h"
#include "../core/gather.h"
#include "../core/log.h"
#include "../core/policy.h"
#include "../core/secret.h"
#include "../core/sts.h"
#include "../core/timefmt.h"

/* Largest session policy file read. */
#define PG_POLICY_MAX 65536

/* Longest wait for the request line (within the deadline). */
#define PG_REQUEST_READ_MS 2000

/* Slack for writing the answer after the deadline has been spent. */
#define ANSWER_MS 1000

int
pg_worker_bind(pg_worker *w, const pg_config *cfg, unsigned gen)
{
	if (w->http == NULL && (w->http = pg_http_new()) == NULL)
		return -1;
	if (w->fetch == NULL && (w->fetch = pg_fetcher_new()) == NULL)
		return -1;
	if (w->gen == gen && w->dir != NULL)
		return 0;
	pg_dir_free(w->dir);
	w->dir = pg_dir_new(cfg);
	w->gen = gen;
	return w->dir != NULL ? 0 : -1;
}

void
pg_worker_release(pg_worker *w)
{
	pg_dir_free(w->dir);
	pg_http_free(w->http);
	pg_fetcher_free(w->fetch);
	w->dir = NULL;
	w->http = NULL;
	w->fetch = NULL;
	w->gen = 0;
}

/* Overwrite a JSON string's bytes in place before the value is freed. */
static void
wipe_json_string(json_t *s)
{
	if (json_is_string(s))
		OPENSSL_cleanse((char *)json_string_value(s),
				json_string_length(s));
}

static void
send_answer(int fd, json_t *ans, pg_deadline dl)
{
	char *buf;
	size_t len;
	int64_t left = pg_deadline_left(dl);

	buf = json_dumps(ans, JSON_COMPACT);
	if (buf == NULL)
		return;
	len = strlen(buf);
	buf[len] = '\0';
	/* one line: json_dumps never emits a raw newline in compact form */
	if (pg_proto_write_all(fd, buf, len, (int)(left > ANSWER_MS ?
			       left : ANSWER_MS)) == PG_OK)
		(void)pg_proto_write_all(fd, "\n", 1, ANSWER_MS);
	OPENSSL_cleanse(buf, len);
	free(buf);
}

static void
answer_simple(int fd, const char *status, int rule, const char *reason,
	      int exit_code, pg_deadline dl)
{
	const char *rules[1];
	json_t *ans;

	if (rule >= 0)
		rules[0] = pg_rule_id(rule);
	ans = pg_proto_answer(status, rule >= 0 ? rules : NULL,
			      rule >= 0 ? 1 : 0, reason, exit_code);
	if (ans == NULL)
		return;
	send_answer(fd, ans, dl);
	json_decref(ans);
}

void
pg_answer_busy(int fd, const char *why)
{
	char reason[256];

	snprintf(reason, sizeof(reason), "pmpgated is busy (%s): try again "
		 "shortly (R9 unavailable)", why);
	answer_simple(fd, "error", PG_R9, reason, pg_err_exit(PG_EBUSY),
		      pg_deadline_in(ANSWER_MS));
}

/* The answer for a refusal: every failing rule, one reason. */
static json_t *
refusal(const pg_decision *d)
{
	const char *rules[PG_RULE_COUNT];
	size_t n = 0;
	int r;

	for (r = 0; r < PG_RULE_COUNT; r++)
		if (d->failed & (1u << r))
			rules[n++] = pg_rule_id(r);
	return pg_proto_answer(d->err == PG_DENIED ? "deny" : "error", rules,
			       n, d->reason, pg_err_exit(d->err));
}

/*
 * Append one audit record for REQ: EVENT, the failing rules (bit mask),
 * REASON, and for issued credentials RES (never its secret parts).
 * PG_OK or PG_EAUDIT with a message in err.
 */
static pg_err
record(const pg_ctx *ctx, const char *event, const pg_request *req,
       unsigned failed, const char *reason, int64_t duration,
       const char *const *approvers, size_t n_approvers,
       const pg_sts_result *res, char *err, size_t errlen)
{
	const char *rules[PG_RULE_COUNT];
	pg_audit_rec r;
	size_t n = 0;
	int i;

	for (i = 0; i < PG_RULE_COUNT; i++)
		if (failed & (1u << i))
			rules[n++] = pg_rule_id(i);
	memset(&r, 0, sizeof(r));
	r.event = event;
	r.user = req->user;
	r.uid = (long)req->ctx.uid;
	r.role = req->role;
	r.ticket = req->ticket;
	r.rules = rules;
	r.n_rules = n;
	r.reason = reason;
	r.approvers = approvers;
	r.n_approvers = n_approvers;
	r.duration = duration;
	r.service = req->ctx.service;
	r.tty = req->ctx.tty;
	r.rhost = req->ctx.rhost;
	r.pid = (long)req->ctx.pid;
	if (res != NULL) {
		r.expiration = res->creds.expiration;
		r.access_key_id = res->creds.access_key_id;
		r.sts_request_id = res->request_id;
	}
	if (ctx->audit == NULL) {
		snprintf(err, errlen, "the audit trail is not open");
		return PG_EAUDIT;
	}
	return pg_audit_append(ctx->audit, &r, err, errlen);
}

/* The answer when a record that must precede it cannot be written. */
static void
answer_audit_failure(const pg_request *req, const char *event,
		     const char *err, int fd, pg_deadline dl)
{
	char reason[640];

	pg_log(LOG_ERR, "audit %s record for user=%s role=%s ticket=%s not "
	       "written: %s", event, req->user, req->role,
	       req->ticket ? req->ticket : "-", err);
	snprintf(reason, sizeof(reason), "refused: the audit trail cannot be "
		 "written (%s); ask the administrator (R9 unavailable)", err);
	answer_simple(fd, "error", PG_R9, reason, pg_err_exit(PG_EAUDIT), dl);
}

/* Names of the approvers that counted, for the pmpgate:approvers tag. */
static size_t
counted_approvers(const pg_role_cfg *role, const pg_facts *f,
		  const char **out, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < f->n_approvers && n < max; i++) {
		const pg_person *p = &f->approvers[i];

		if (p->resolved != PG_OK || p->duplicate ||
		    p->is_user != PG_FACT_NO || p->is_requester != PG_FACT_NO)
			continue;
		if (role->approver_group != NULL &&
		    p->approver_member != PG_FACT_YES)
			continue;
		out[n++] = p->name;
	}
	return n;
}

/* Read a session policy file: not a secret, but checked like the config
 * (regular, owner root or us, not writable by group or others). */
static pg_err
read_policy(const char *path, char **out, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	pg_err e = PG_OK;
	int fd;

	*out = NULL;
	if (path == NULL)
		return PG_OK;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return PG_ECONFIG;
	}
	e = pg_check_fd_perms(fd, path, 0, err, errlen);
	if (e != PG_OK)
		goto out;
	if ((buf = malloc(PG_POLICY_MAX + 1)) == NULL) {
		e = PG_ENOMEM;
		goto out;
	}
	while ((n = read(fd, buf + len, PG_POLICY_MAX + 1 - len)) > 0)
		len += (size_t)n;
	if (n < 0 || len > PG_POLICY_MAX || len == 0 ||
	    memchr(buf, '\0', len) != NULL) {
		snprintf(err, errlen, "%s: unreadable, empty, binary or larger "
			 "than %d bytes", path, PG_POLICY_MAX);
		e = PG_ECONFIG;
		goto out;
	}
	buf[len] = '\0';
	*out = buf;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return e;
}

/*
 * Issue: decided already; assume the role and answer the credentials.
 * Any failure is an error answer (R9): no partial result leaves.
 */
static void
issue(pg_worker *w, const pg_ctx *ctx, const pg_request *req,
      const pg_gathered *g, const pg_decision *d, int fd, pg_deadline dl)
{
	const pg_config *cfg = ctx->cfg;
	const pg_role_cfg *role = pg_config_role(cfg, req->role);
	pg_reservation *resv = NULL;
	pg_aws_creds base = { 0 };
	int rule = PG_R9;
	pg_sts_result res;
	pg_sts_assume a;
	const char *approvers[PG_MAX_APPROVERS];
	char err[512], reason[640], expiration[32];
	char *policy = NULL;
	json_t *ans = NULL, *creds = NULL;
	int cached = 0, handed_out = 0;
	size_t n_approvers = 0;
	int64_t now = 0;
	pg_err e;

	memset(&res, 0, sizeof(res));

	/* The atomic check-and-record for R6/R7: another request may have
	 * been issued since the facts were read. */
	e = pg_ledger_reserve(ctx->ledger, g->ledger_user, req->role,
			      req->ticket,
			      (const char *const *)role->conflicts.v,
			      role->conflicts.n, role->max_uses,
			      (int64_t)time(NULL), &resv, &rule, err,
			      sizeof(err));
	if (e == PG_DENIED) {
		snprintf(reason, sizeof(reason), "%s (%s %s)", err,
			 pg_rule_id(rule), pg_rule_name(rule));
		pg_log(LOG_WARNING, "issue user=%s role=%s ticket=%s "
		       "decision=deny rules=%s reason=%s", req->user, req->role,
		       req->ticket, pg_rule_id(rule), reason);
		if (record(ctx, "deny", req, 1u << rule, reason, 0, NULL, 0,
			   NULL, err, sizeof(err)) != PG_OK)
			pg_log(LOG_ERR, "audit deny record not written: %s", err);
		answer_simple(fd, "deny", rule, reason, pg_err_exit(PG_DENIED),
			      dl);
		goto out;
	}
	if (e != PG_OK) {
		snprintf(reason, sizeof(reason), "issuance ledger unavailable: "
			 "%s (R9 unavailable)", err);
		pg_log(LOG_ERR, "issue user=%s role=%s: %s", req->user,
		       req->role, reason);
		if (record(ctx, "error", req, 1u << PG_R9, reason, 0, NULL, 0,
			   NULL, err, sizeof(err)) != PG_OK)
			pg_log(LOG_ERR, "audit error record not written: %s",
			       err);
		answer_simple(fd, "error", PG_R9, reason, pg_err_exit(e), dl);
		goto out;
	}

	/* No credentials without their grant record, written first. */
	n_approvers = counted_approvers(role, &g->facts, approvers,
					PG_MAX_APPROVERS);
	if (record(ctx, "grant", req, 0, d->reason, d->duration, approvers,
		   n_approvers, NULL, err, sizeof(err)) != PG_OK) {
		answer_audit_failure(req, "grant", err, fd, dl);
		goto out;
	}

	/* Credentials issued earlier for this user, role and ticket, while
	 * they stay valid and end no later than R8 allows now (give or take
	 * STS's clock); else STS. */
	now = (int64_t)time(NULL);
	if (pg_credcache_get(ctx->cache, g->ledger_user, req->role, req->ticket,
			     now, now + d->duration + PG_CREDCACHE_SKEW,
			     &res.creds) == PG_OK) {
		cached = 1;
		snprintf(res.request_id, sizeof(res.request_id), "cached");
		goto commit;
	}
	e = pg_aws_creds_load_by(cfg, dl, &base, err, sizeof(err));
	if (e == PG_OK)
		e = read_policy(role->session_policy_file, &policy, err,
				sizeof(err));
	if (e != PG_OK) {
		snprintf(reason, sizeof(reason), "cannot issue: %s "
			 "(R9 unavailable)", err);
		pg_log(LOG_ERR, "issue user=%s role=%s: %s", req->user,
		       req->role, err);
		if (record(ctx, "error", req, 1u << PG_R9, reason, 0, NULL, 0,
			   NULL, err, sizeof(err)) != PG_OK)
			pg_log(LOG_ERR, "audit error record not written: %s",
			       err);
		answer_simple(fd, "error", PG_R9, reason,
			      pg_err_exit(PG_EUNAVAIL), dl);
		goto out;
	}
	memset(&a, 0, sizeof(a));
	a.role_arn = role->role_arn;
	a.user = req->user;
	a.ticket = req->ticket;
	a.approvers = approvers;
	a.n_approvers = n_approvers;
	a.duration = d->duration;
	a.policy = policy;
	a.external_id = role->external_id;
	e = pg_sts_assume_role(w->http, cfg, &base, &a, dl, &res, err,
			       sizeof(err));
	if (e != PG_OK) {
		snprintf(reason, sizeof(reason), "STS did not issue "
			 "credentials: %s (R9 unavailable)", err);
		pg_log(LOG_ERR, "issue user=%s role=%s ticket=%s: %s",
		       req->user, req->role, req->ticket, err);
		if (record(ctx, "error", req, 1u << PG_R9, reason, 0, NULL, 0,
			   NULL, err, sizeof(err)) != PG_OK)
			pg_log(LOG_ERR, "audit error record not written: %s",
			       err);
		answer_simple(fd, "error", PG_R9, reason, pg_err_exit(e), dl);
		goto out;
	}
commit:
	e = pg_ledger_commit(ctx->ledger, resv, res.creds.expiration,
			     res.creds.access_key_id, err, sizeof(err));
	resv = NULL;	/* committed or not, it is spent */
	if (e != PG_OK) {
		snprintf(reason, sizeof(reason), "issuance could not be "
			 "recorded: %s (R9 unavailable)", err);
		pg_log(LOG_ERR, "issue user=%s role=%s ticket=%s: %s; the "
		       "credentials (access key id %s) were not handed out",
		       req->user, req->role, req->ticket, reason,
		       res.creds.access_key_id);
		if (record(ctx, "error", req, 1u << PG_R9, reason, 0, NULL, 0,
			   NULL, err, sizeof(err)) != PG_OK)
			pg_log(LOG_ERR, "audit error record not written: %s",
			       err);
		answer_simple(fd, "error", PG_R9, reason, pg_err_exit(e), dl);
		goto out;
	}
	if (!cached)
		(void)pg_credcache_put(ctx->cache, g->ledger_user, req->role,
				       req->ticket, now, &res.creds);
	pg_time_format(res.creds.expiration, expiration, sizeof(expiration));
	ans = pg_proto_answer("allow", NULL, 0, d->reason, 0);
	creds = json_pack("{s:s, s:s, s:s, s:s}",
			  "AccessKeyId", res.creds.access_key_id,
			  "SecretAccessKey", res.creds.secret_access_key,
			  "SessionToken", res.creds.session_token ?
			  res.creds.session_token : "",
			  "Expiration", expiration);
	if (ans == NULL || creds == NULL ||
	    json_object_set(ans, "credentials", creds) != 0 ||
	    json_object_set_new(ans, "user", json_string(req->user)) != 0 ||
	    json_object_set_new(ans, "role", json_string(req->role)) != 0 ||
	    json_object_set_new(ans, "ticket", json_string(req->ticket)) != 0 ||
	    json_object_set_new(ans, "duration", json_integer(cached ?
				res.creds.expiration - now : d->duration)) != 0) {
		answer_simple(fd, "error", -1, "out of memory",
			      pg_err_exit(PG_ENOMEM), dl);
		goto out;
	}
	/* ... nor without their issued record. */
	if (record(ctx, "issued", req, 0, d->reason, d->duration, approvers,
		   n_approvers, &res, err, sizeof(err)) != PG_OK) {
		answer_audit_failure(req, "issued", err, fd, dl);
		goto out;
	}
	pg_log(LOG_NOTICE, "issued user=%s role=%s ticket=%s duration=%lld "
	       "access_key_id=%s expiration=%s sts_request_id=%s source=%s",
	       req->user, req->role, req->ticket, (long long)d->duration,
	       res.creds.access_key_id, expiration, res.request_id,
	       cached ? "cache" : "sts");
	send_answer(fd, ans, dl);
	handed_out = 1;
out:
	/* Refused or failed for this key: its cached credentials go. */
	if (!handed_out)
		(void)pg_credcache_drop(ctx->cache, g->ledger_user, req->role,
					req->ticket);
	if (resv != NULL &&
	    pg_ledger_release(ctx->ledger, resv, err, sizeof(err)) != PG_OK)
		pg_log(LOG_ERR, "releasing the reservation of user=%s role=%s "
		       "ticket=%s: %s", req->user, req->role, req->ticket, err);
	if (creds != NULL) {
		wipe_json_string(json_object_get(creds, "SecretAccessKey"));
		wipe_json_string(json_object_get(creds, "SessionToken"));
		json_decref(creds);
	}
	json_decref(ans);
	free(policy);
	pg_sts_result_wipe(&res);
	pg_aws_creds_wipe(&base);
}

/* Why an approver counted or not, for `pmpgate check`. */
static const char *
approver_why(const pg_role_cfg *role, const pg_person *p, int *counted)
{
	*counted = 0;
	switch (p->resolved) {
	case PG_OK:
		break;
	case PG_ENOTFOUND:
		return "not found in the directory";
	case PG_EAMBIGUOUS:
		return "matches several directory entries";
	case PG_EINVAL:
		return "not a name the directory can hold";
	default:
		return "directory unavailable";
	}
	if (p->duplicate)
		return "the same person as an earlier approver";
	if (p->is_user == PG_FACT_YES)
		return "is the user (self-approval)";
	if (p->is_requester == PG_FACT_YES)
		return "is the ticket's requester";
	if (p->is_user != PG_FACT_NO || p->is_requester != PG_FACT_NO)
		return "could not be compared";
	if (role->approver_group != NULL && p->approver_member == PG_FACT_NO)
		return "not a member of the approver group";
	if (role->approver_group != NULL && p->approver_member != PG_FACT_YES)
		return "approver group membership unknown";
	*counted = 1;
	return "counted";
}

/* The decision explained rule by rule, with the evidence behind it. */
static json_t *
explain(const pg_config *cfg, const pg_request *req, const pg_gathered *g,
	const pg_decision *d)
{
	const pg_role_cfg *role = pg_config_role(cfg, req->role);
	const pg_facts *f = &g->facts;
	json_t *checks = json_array(), *ev = json_object(), *path, *aps, *t;
	char when[32];
	size_t i;
	int r;

	if (checks == NULL || ev == NULL)
		goto fail;
	for (r = 0; r < PG_RULE_COUNT; r++)
		json_array_append_new(checks, json_pack("{s:s, s:s, s:s, s:s}",
			"id", pg_rule_id(r), "name", pg_rule_name(r),
			"result", d->rule[r].failed ? "fail" :
				  d->rule[r].reason[0] ? "pass" : "not-evaluated",
			"detail", d->rule[r].reason));
	if (g->user_dn != NULL)
		json_object_set_new(ev, "user_dn", json_string(g->user_dn));
	path = json_array();
	for (i = 0; path != NULL && i < g->path.n; i++)
		json_array_append_new(path, json_string(g->path.dn[i]));
	json_object_set_new(ev, "group_path", path);
	if (f->ticket != NULL) {
		const pg_ticket *tk = f->ticket;

		t = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?}",
			      "id", tk->id, "state", tk->state,
			      "requested_for", tk->requested_for,
			      "requester", tk->requester, "role", tk->role,
			      "category", tk->category);
		if (t != NULL && tk->has_start) {
			pg_time_format(tk->window_start, when, sizeof(when));
			json_object_set_new(t, "window_start", json_string(when));
		}
		if (t != NULL && tk->has_end) {
			pg_time_format(tk->window_end, when, sizeof(when));
			json_object_set_new(t, "window_end", json_string(when));
		}
		if (t != NULL && role != NULL)
			json_object_set_new(t, "min_approvals", json_integer(
				pg_role_min_approvals(role, tk->category)));
		json_object_set_new(ev, "ticket", t);
	}
	aps = json_array();
	for (i = 0; aps != NULL && role != NULL && i < f->n_approvers; i++) {
		const pg_person *p = &f->approvers[i];
		int counted;
		const char *why = approver_why(role, p, &counted);

		json_array_append_new(aps, json_pack("{s:s, s:s?, s:b, s:s}",
			"name", p->name, "dn", p->dn, "counted", counted,
			"why", why));
	}
	json_object_set_new(ev, "approvers", aps);
	if (f->ledger.conflict_role != NULL)
		json_object_set_new(ev, "conflicting_issuance", json_pack(
			"{s:s, s:I}", "role", f->ledger.conflict_role, "ts",
			(json_int_t)f->ledger.conflict_ts));
	if (f->ledger.bound_user != NULL)
		json_object_set_new(ev, "ticket_bound", json_pack(
			"{s:s, s:s?, s:i}", "user", f->ledger.bound_user,
			"role", f->ledger.bound_role, "uses", f->ledger.uses));
	return json_pack("{s:o, s:o}", "checks", checks, "evidence", ev);
fail:
	json_decref(checks);
	json_decref(ev);
	return NULL;
}

/* uid 0 and members of [daemon] admin_group may ask administrative
 * questions. */
int
pg_is_admin(const pg_config *cfg, const pg_conn *c, const struct passwd *pw)
{
	struct group gr, *grp = NULL;
	char buf[8192];
	gid_t groups[256];
	int n = 256, i;

	if (c->uid == 0)
		return 1;
	if (cfg->daemon.admin_group == NULL || pw == NULL)
		return 0;
	if (getgrnam_r(cfg->daemon.admin_group, &gr, buf, sizeof(buf),
		       &grp) != 0 || grp == NULL)
		return 0;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
		return 0;
	for (i = 0; i < n; i++)
		if (groups[i] == grp->gr_gid)
			return 1;
	return 0;
}

static void
access_request(pg_worker *w, const pg_ctx *ctx, const pg_proto_req *pr,
	       const pg_request *req, int fd, pg_deadline dl)
{
	const pg_config *cfg = ctx->cfg;
	pg_gathered g;
	pg_decision d;
	char rules[64], err[512];
	json_t *ans;

	pg_gather(w->dir, w->fetch, ctx->ledger, cfg, req, dl, &g);
	pg_decide(cfg, req, &g.facts, &d);
	pg_decision_rules(&d, rules, sizeof(rules));
	/* A refusal for this key wipes the credentials cached for it. */
	if (!d.allow && req->ticket != NULL) {
		(void)pg_credcache_drop(ctx->cache, g.ledger_user, req->role,
					req->ticket);
		if (strcmp(g.ledger_user, req->user) != 0)
			(void)pg_credcache_drop(ctx->cache, req->user,
						req->role, req->ticket);
	}
	pg_log(d.allow ? LOG_NOTICE : LOG_WARNING, "%s user=%s uid=%u role=%s "
	       "ticket=%s service=%s decision=%s rules=%s reason=%s",
	       pg_op_name(pr->op), req->user, (unsigned)req->ctx.uid,
	       req->role, req->ticket ? req->ticket : "-",
	       req->ctx.service ? req->ctx.service : "-",
	       d.allow ? "allow" : "deny", rules[0] ? rules : "-", d.reason);
	if (pr->op == PG_OP_CHECK) {
		json_t *x = explain(cfg, req, &g, &d);

		ans = d.allow ? pg_proto_answer("allow", NULL, 0, d.reason, 0) :
				refusal(&d);
		if (ans != NULL && x != NULL) {
			json_object_update(ans, x);
			json_object_set_new(ans, "user", json_string(req->user));
			json_object_set_new(ans, "role", json_string(req->role));
			if (req->ticket != NULL)
				json_object_set_new(ans, "ticket",
						    json_string(req->ticket));
			send_answer(fd, ans, dl);
		} else {
			answer_simple(fd, "error", -1, "out of memory",
				      pg_err_exit(PG_ENOMEM), dl);
		}
		json_decref(x);
		json_decref(ans);
	} else if (!d.allow) {
		/* The refusal stands even if its record cannot be written. */
		if (record(ctx, d.err == PG_DENIED ? "deny" : "error", req,
			   d.failed, d.reason, 0, NULL, 0, NULL, err,
			   sizeof(err)) != PG_OK)
			pg_log(LOG_ERR, "audit deny record not written: %s", err);
		ans = refusal(&d);
		if (ans != NULL)
			send_answer(fd, ans, dl);
		json_decref(ans);
	} else if (pr->op == PG_OP_ISSUE) {
		issue(w, ctx, req, &g, &d, fd, dl);
	} else if (record(ctx, "permit", req, 0, d.reason, d.duration, NULL,
			  0, NULL, err, sizeof(err)) != PG_OK) {
		answer_audit_failure(req, "permit", err, fd, dl);
	} else {
		ans = pg_proto_answer("allow", NULL, 0, d.reason, 0);
		if (ans != NULL) {
			json_object_set_new(ans, "duration",
					    json_integer(d.duration));
			send_answer(fd, ans, dl);
		}
		json_decref(ans);
	}
	pg_gathered_free(&g);
}

static void
status(const pg_config *cfg, const pg_daemon_info *info, int fd,
       pg_deadline dl)
{
	json_t *ans, *roles;
	size_t i;

	ans = pg_proto_answer("allow", NULL, 0, "pmpgated is running", 0);
	roles = json_array();
	if (ans == NULL || roles == NULL) {
		json_decref(ans);
		json_decref(roles);
		return;
	}
	for (i = 0; i < cfg->n_roles; i++)
		json_array_append_new(roles, json_string(cfg->roles[i].name));
	json_object_set_new(ans, "version", json_string(PG_VERSION));
	json_object_set_new(ans, "config", json_string(info->config_path));
	json_object_set_new(ans, "workers", json_integer(info->workers));
	json_object_set_new(ans, "uptime",
			    json_integer((long)time(NULL) - info->started));
	json_object_set_new(ans, "roles", roles);
	send_answer(fd, ans, dl);
	json_decref(ans);
}

void
pg_handle(pg_worker *w, const pg_ctx *ctx, const pg_conn *c)
{
	const pg_config *cfg = ctx->cfg;
	pg_deadline dl = (c->accepted_ms > 0 ? c->accepted_ms : pg_mono_ms()) +
			 cfg->daemon.deadline_ms;
	char err[256], reason[512], namebuf[4096], host[256];
	struct passwd pw, *pwp = NULL;
	json_t *doc = NULL;
	pg_proto_req pr;
	pg_request req;
	char *line = NULL;
	size_t len = 0;
	pg_err e;

	/* Clients send their line at once: one that does not is not allowed
	 * to hold a worker for the whole deadline. */
	e = pg_proto_read_line(c->fd, PG_PROTO_MAX,
			       (int)pg_deadline_cap(dl, PG_REQUEST_READ_MS),
			       &line, &len);
	if (e != PG_OK) {
		answer_simple(c->fd, "error", -1, e == PG_ETIMEOUT ?
			      "no complete request line in time" :
			      "request is not one line of at most 64 KiB",
			      pg_err_exit(PG_EUSAGE), dl);
		goto out;
	}
	e = pg_proto_decode_req(line, len, &doc, &pr, err, sizeof(err));
	if (e != PG_OK) {
		snprintf(reason, sizeof(reason), "bad request: %s", err);
		answer_simple(c->fd, "error", -1, reason, pg_err_exit(PG_EUSAGE),
			      dl);
		goto out;
	}
	if (pr.op == PG_OP_STATUS) {
		status(cfg, ctx->info, c->fd, dl);
		goto out;
	}

	/* Identity comes from the kernel; only root may name another user. */
	if (getpwuid_r(c->uid, &pw, namebuf, sizeof(namebuf), &pwp) != 0 ||
	    pwp == NULL) {
		pg_request anon = { .user = NULL, .role = pr.role,
				    .ticket = pr.ticket,
				    .ctx = { .service = pr.service,
					     .tty = pr.tty, .rhost = pr.rhost,
					     .uid = c->uid, .pid = c->pid } };

		snprintf(reason, sizeof(reason), "uid %u has no user name on "
			 "this host (R1 not-in-group)", (unsigned)c->uid);
		if (record(ctx, "deny", &anon, 1u << PG_R1, reason, 0, NULL, 0,
			   NULL, err, sizeof(err)) != PG_OK)
			pg_log(LOG_ERR, "audit deny record not written: %s", err);
		answer_simple(c->fd, "deny", PG_R1, reason,
			      pg_err_exit(PG_DENIED), dl);
		goto out;
	}
	if (pr.op == PG_OP_REVIEW || pr.op == PG_OP_DOCTOR) {
		if (!pg_is_admin(cfg, c, &pw)) {
			snprintf(reason, sizeof(reason), "%s is for root and "
				 "members of [daemon] admin_group",
				 pg_op_name(pr.op));
			answer_simple(c->fd, "error", -1, reason,
				      pg_err_exit(PG_EUSAGE), dl);
			goto out;
		}
		pg_log(LOG_NOTICE, "%s requested by uid %u (%s)",
		       pg_op_name(pr.op), (unsigned)c->uid, pw.pw_name);
		if (pr.op == PG_OP_REVIEW)
			pg_admin_review(w, ctx, c->fd, dl);
		else
			pg_admin_doctor(w, ctx, c->fd, dl);
		goto out;
	}
	memset(&req, 0, sizeof(req));
	req.user = pw.pw_name;
	if (pr.op == PG_OP_CHECK) {
		if (!pg_is_admin(cfg, c, &pw)) {
			answer_simple(c->fd, "error", -1, "check is for root and "
				      "members of [daemon] admin_group",
				      pg_err_exit(PG_EUSAGE), dl);
			goto out;
		}
		if (pr.user != NULL)
			req.user = pr.user;
	} else if (pr.user != NULL && strcmp(pr.user, pw.pw_name) != 0) {
		if (c->uid == 0)
			req.user = pr.user;
		else
			pg_log(LOG_WARNING, "uid %u (%s) named user %s: "
			       "ignored, acting for %s", (unsigned)c->uid,
			       pw.pw_name, pr.user, pw.pw_name);
	}
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	req.role = pr.role;
	req.ticket = pr.ticket;
	req.duration = pr.duration;
	req.ctx.service = pr.service;
	req.ctx.tty = pr.tty;
	req.ctx.rhost = pr.rhost;
	req.ctx.host = host;
	req.ctx.uid = c->uid;
	req.ctx.pid = c->pid;
	access_request(w, ctx, &pr, &req, c->fd, dl);
out:
	json_decref(doc);
	if (line != NULL) {
		OPENSSL_cleanse(line, len);
		free(line);
	}
}
