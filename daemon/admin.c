/* admin.c - the administrative requests "review" and "doctor"; see admin.h. */
#include "admin.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../client/proto.h"
#include "../core/auditchain.h"
#include "../core/awscreds.h"
#include "../core/directory.h"
#include "../core/http.h"
#include "../core/ledger.h"
#include "../core/log.h"
#include "../core/secret.h"
#include "../core/sts.h"

/* Slack for writing the answer after the deadline has been spent. */
#define ANSWER_MS 1000

/* Write ANS as one line (any size up to PG_PROTO_MAX_REVIEW). */
static void
admin_send(int fd, json_t *ans, pg_deadline dl)
{
	int64_t left = pg_deadline_left(dl);
	char *buf = json_dumps(ans, JSON_COMPACT);
	size_t len;

	if (buf == NULL)
		return;
	len = strlen(buf);
	if (len + 1 > PG_PROTO_MAX_REVIEW) {
		pg_log(LOG_ERR, "admin answer of %zu bytes is over the "
		       "protocol's limit", len);
		free(buf);
		buf = NULL;
		ans = pg_proto_answer("error", NULL, 0, "the answer would be "
				      "larger than the protocol allows",
				      pg_err_exit(PG_EINTERNAL));
		if (ans == NULL || (buf = json_dumps(ans, JSON_COMPACT)) == NULL) {
			json_decref(ans);
			return;
		}
		json_decref(ans);
		len = strlen(buf);
	}
	if (pg_proto_write_all(fd, buf, len, (int)(left > ANSWER_MS ? left :
						       ANSWER_MS)) == PG_OK)
		(void)pg_proto_write_all(fd, "\n", 1, ANSWER_MS);
	free(buf);
}

static void
admin_error(int fd, pg_err e, const char *reason, pg_deadline dl)
{
	json_t *ans = pg_proto_answer("error", NULL, 0, reason,
				      pg_err_exit(e == PG_OK ? PG_EINTERNAL :
						  e));

	if (ans != NULL)
		admin_send(fd, ans, dl);
	json_decref(ans);
}

/* ---- review ------------------------------------------------------------------ */

/* The member lists of the configured groups, each read once. */
struct lists {
	const char *dn[2 * PG_MAX_ROLES];
	pg_dir_members m[2 * PG_MAX_ROLES];
	size_t n;
};

static void
lists_free(struct lists *l)
{
	while (l->n > 0)
		pg_dir_members_free(&l->m[--l->n]);
}

/* The members of group DN (read on first use).  NULL on error (err). */
static const pg_dir_members *
lists_get(struct lists *l, pg_dir *dir, const char *dn, pg_deadline dl,
	  pg_err *e, char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (pg_dn_equal(l->dn[i], dn))
			return &l->m[i];
	if (l->n == sizeof(l->dn) / sizeof(l->dn[0])) {
		*e = PG_EINTERNAL;
		snprintf(err, errlen, "too many groups");
		return NULL;
	}
	*e = pg_dir_group_members(dir, dn, 0, &l->m[l->n], dl, err, errlen);
	if (*e == PG_ENOTFOUND) {
		/* a group that does not exist has no members; the decision
		 * says the same (R1) */
		memset(&l->m[l->n], 0, sizeof(l->m[l->n]));
		*e = PG_OK;
	}
	if (*e != PG_OK)
		return NULL;
	l->dn[l->n] = dn;
	return &l->m[l->n++];
}

/* One role's section of the report. */
static json_t *
review_role(const pg_config *cfg, const pg_role_cfg *role, pg_dir *dir,
	    pg_ledger *ledger, struct lists *l, pg_deadline dl, pg_err *e,
	    char *err, size_t errlen)
{
	const pg_dir_members *mem, *appr = NULL, *other[PG_MAX_ROLES];
	json_t *out = NULL, *rows = NULL, *conf = NULL;
	size_t i, k;

	mem = lists_get(l, dir, role->group, dl, e, err, errlen);
	if (mem == NULL)
		goto fail;
	if (role->approver_group != NULL &&
	    (appr = lists_get(l, dir, role->approver_group, dl, e, err,
			      errlen)) == NULL)
		goto fail;
	for (k = 0; k < role->conflicts.n; k++) {
		const pg_role_cfg *o = pg_config_role(cfg, role->conflicts.v[k]);

		other[k] = NULL;
		if (o != NULL && (other[k] = lists_get(l, dir, o->group, dl, e,
						       err, errlen)) == NULL)
			goto fail;
	}
	rows = json_array();
	conf = json_array();
	if (rows == NULL || conf == NULL)
		goto nomem;
	for (k = 0; k < role->conflicts.n; k++)
		if (json_array_append_new(conf,
					  json_string(role->conflicts.v[k])))
			goto nomem;
	for (i = 0; i < mem->n; i++) {
		const pg_dir_member *m = &mem->v[i];
		json_t *row, *cr = json_array();
		int64_t last = 0;

		if (cr == NULL)
			goto nomem;
		for (k = 0; k < role->conflicts.n; k++)
			if (other[k] != NULL &&
			    pg_dir_members_find(other[k], m->key) != NULL &&
			    json_array_append_new(cr, json_string(
				    role->conflicts.v[k])) != 0) {
				json_decref(cr);
				goto nomem;
			}
		if (m->name != NULL) {
			*e = pg_ledger_last_issuance(ledger, m->name,
						     role->name, &last, err,
						     errlen);
			if (*e != PG_OK) {
				json_decref(cr);
				goto fail;
			}
		}
		row = json_pack("{s:s?, s:s?, s:s, s:I, s:o, s:b}",
				"user", m->name, "dn", m->dn, "via", m->via,
				"last_issuance", (json_int_t)last,
				"conflicting_roles", cr,
				"approver", appr != NULL &&
				pg_dir_members_find(appr, m->key) != NULL);
		if (row == NULL || json_array_append_new(rows, row) != 0)
			goto nomem;
	}
	out = json_pack("{s:s, s:s, s:s?, s:o, s:I, s:o}", "role", role->name,
			"group", role->group, "approver_group",
			role->approver_group, "conflicts", conf, "skipped",
			(json_int_t)mem->skipped, "members", rows);
	if (out == NULL) {
		rows = conf = NULL;	/* json_pack took them */
		goto nomem;
	}
	return out;
nomem:
	*e = PG_ENOMEM;
	snprintf(err, errlen, "out of memory");
fail:
	json_decref(rows);
	json_decref(conf);
	return NULL;
}

void
pg_admin_review(pg_worker *w, const pg_ctx *ctx, int fd, pg_deadline dl)
{
	const pg_config *cfg = ctx->cfg;
	struct lists l;
	json_t *ans = NULL, *roles = NULL, *r;
	char err[512], reason[768];
	size_t i, n_members = 0;
	pg_err e = PG_OK;

	memset(&l, 0, sizeof(l));
	roles = json_array();
	if (roles == NULL) {
		admin_error(fd, PG_ENOMEM, "out of memory", dl);
		goto out;
	}
	for (i = 0; i < cfg->n_roles; i++) {
		r = review_role(cfg, &cfg->roles[i], w->dir, ctx->ledger, &l, dl,
				&e, err, sizeof(err));
		if (r == NULL) {
			snprintf(reason, sizeof(reason), "review of role %s "
				 "failed: %s (R9 unavailable)",
				 cfg->roles[i].name, err);
			pg_log(LOG_ERR, "review: %s", reason);
			admin_error(fd, e, reason, dl);
			goto out;
		}
		n_members += json_array_size(json_object_get(r, "members"));
		if (json_array_append_new(roles, r) != 0) {
			admin_error(fd, PG_ENOMEM, "out of memory", dl);
			goto out;
		}
	}
	snprintf(reason, sizeof(reason), "%zu roles, %zu role memberships",
		 cfg->n_roles, n_members);
	ans = pg_proto_answer("allow", NULL, 0, reason, 0);
	if (ans == NULL ||
	    json_object_set_new(ans, "now", json_integer(time(NULL))) != 0 ||
	    json_object_set(ans, "roles", roles) != 0) {
		admin_error(fd, PG_ENOMEM, "out of memory", dl);
		goto out;
	}
	pg_log(LOG_NOTICE, "review: %s", reason);
	admin_send(fd, ans, dl);
out:
	lists_free(&l);
	json_decref(roles);
	json_decref(ans);
}

/* ---- doctor ------------------------------------------------------------------ */

/* Append one check line to CHECKS; *failed set when RESULT is "fail". */
static void
add_check(json_t *checks, const char *name, const char *result,
	  const char *detail, const char *fix, int *failed)
{
	json_t *d = json_string(detail);

	/* a message that is not UTF-8 must not make the line disappear */
	if (d == NULL)
		d = json_string("(message not shown: not valid UTF-8)");
	json_array_append_new(checks, json_pack("{s:s, s:s, s:o, s:s}",
		"check", name, "result", result, "detail", d,
		"fix", fix ? fix : ""));
	if (strcmp(result, "fail") == 0)
		*failed = 1;
}

static void
check_directory(const pg_config *cfg, json_t *checks, pg_deadline dl,
		int *failed)
{
	char err[512], detail[768];
	const char *fix;
	pg_dir *d = pg_dir_new(cfg);
	pg_err e;

	if (d == NULL) {
		add_check(checks, "directory", "fail", "out of memory", "",
			  failed);
		return;
	}
	/* a connection of its own: the check binds now, with the secrets
	 * as they are on disk now */
	e = pg_dir_ping(d, dl, err, sizeof(err));
	pg_dir_free(d);
	if (e == PG_OK) {
		snprintf(detail, sizeof(detail), "bound as %s over %s and read "
			 "its entry", cfg->directory.bind_dn ?
			 cfg->directory.bind_dn : "anonymous",
			 cfg->directory.uri.n > 0 ? cfg->directory.uri.v[0] :
			 "?");
		add_check(checks, "directory", "ok", detail, "", failed);
		return;
	}
	if (strstr(err, "TLS") != NULL || strstr(err, "certificate") != NULL)
		fix = "the server certificate must chain to [directory] "
		      "ca_file and name the host of the URI (use the IP "
		      "address or name the certificate carries)";
	else if (strstr(err, "nvalid credentials") != NULL ||
		 strstr(err, "bind") != NULL ||
		 strstr(err, "password") != NULL)
		fix = "the directory refused the bind: check [directory] "
		      "bind_dn and the password in bind_password_file (the "
		      "password alone, one trailing newline at most)";
	else if (e == PG_ECONFIG)
		fix = "correct the [directory] settings named in the message";
	else
		fix = "check that a server of [directory] uri is up and "
		      "reachable from this host, and [directory] timeout";
	add_check(checks, "directory", "fail", err, fix, failed);
}

static void
check_tickets(pg_worker *w, const pg_config *cfg, json_t *checks,
	      pg_deadline dl, int *failed)
{
	pg_http_resp resp = { 0, NULL, 0 };
	char err[512], detail[768];
	pg_err e;

	e = pg_ticket_get(w->http, cfg, PG_DOCTOR_PROBE_TICKET, dl, &resp,
			  err, sizeof(err));
	if (e != PG_OK) {
		snprintf(detail, sizeof(detail), "%s", err);
		add_check(checks, "tickets", "fail", detail,
			  strstr(err, "TLS") || strstr(err, "certificate") ||
			  strstr(err, "SSL") ?
			  "the ticket service's certificate must chain to "
			  "[tickets] ca_file (or the system CAs when unset)" :
			  "check [tickets] url and that the service is "
			  "reachable from this host", failed);
	} else if (resp.status == 401 || resp.status == 403) {
		snprintf(detail, sizeof(detail), "the ticket service refused "
			 "our credentials (HTTP %ld)", resp.status);
		add_check(checks, "tickets", "fail", detail, "check [tickets] "
			  "auth and the token in token_file (bearer: the token "
			  "alone; basic: user:password)", failed);
	} else if (resp.status == 200 || resp.status == 404) {
		snprintf(detail, sizeof(detail), "GET for ticket %s answered "
			 "HTTP %ld: TLS and credentials accepted",
			 PG_DOCTOR_PROBE_TICKET, resp.status);
		add_check(checks, "tickets", "ok", detail, "", failed);
	} else {
		snprintf(detail, sizeof(detail), "the ticket service answered "
			 "HTTP %ld", resp.status);
		add_check(checks, "tickets", "fail", detail, "check [tickets] "
			  "url: a lookup of a ticket that does not exist "
			  "should answer 200 or 404", failed);
	}
	pg_http_resp_free(&resp);
}

/* Split "arn:PART:SVC::ACCOUNT:RESOURCE": ACCOUNT and RESOURCE. */
static int
arn_parts(const char *arn, char *acct, size_t alen, const char **res,
	  char *svc, size_t slen)
{
	const char *p = arn, *q;

	if (strncmp(p, "arn:", 4) != 0 || (p = strchr(p + 4, ':')) == NULL)
		return 0;
	q = strchr(++p, ':');			/* service */
	if (q == NULL || (size_t)(q - p) >= slen)
		return 0;
	snprintf(svc, slen, "%.*s", (int)(q - p), p);
	p = strchr(q + 1, ':');			/* region (empty) */
	if (p == NULL || (q = strchr(++p, ':')) == NULL ||
	    (size_t)(q - p) >= alen)
		return 0;
	snprintf(acct, alen, "%.*s", (int)(q - p), p);
	*res = q + 1;
	return 1;
}

/* Is the caller STS reported the configured base principal?  The same
 * ARN; an assumed-role session of arn:aws:iam::A:role/[PATH/]NAME; or any
 * principal of A when the configured one is A's root. */
static int
principal_matches(const char *caller, const char *configured)
{
	char ca[32], ka[32], cs[16], ks[16];
	const char *cr, *kr, *name, *end;

	if (strcmp(caller, configured) == 0)
		return 1;
	if (!arn_parts(caller, ca, sizeof(ca), &cr, cs, sizeof(cs)) ||
	    !arn_parts(configured, ka, sizeof(ka), &kr, ks, sizeof(ks)) ||
	    strcmp(ca, ka) != 0)
		return 0;
	if (strcmp(kr, "root") == 0)
		return 1;
	if (strcmp(cs, "sts") != 0 || strncmp(cr, "assumed-role/", 13) != 0 ||
	    strncmp(kr, "role/", 5) != 0)
		return 0;
	cr += 13;
	end = strchr(cr, '/');
	name = strrchr(kr, '/') + 1;
	return end != NULL && (size_t)(end - cr) == strlen(name) &&
	       strncmp(cr, name, strlen(name)) == 0;
}

static void
check_sts(pg_worker *w, const pg_config *cfg, json_t *checks, pg_deadline dl,
	  int *failed)
{
	pg_aws_creds base = { 0 };
	char err[512], arn[512], detail[1024];
	pg_err e;

	e = pg_aws_creds_load_by(cfg, dl, &base, err, sizeof(err));
	if (e != PG_OK) {
		add_check(checks, "sts", "fail", err,
			  cfg->aws.credentials == PG_CREDS_INSTANCE_PROFILE ?
			  "check that the instance has an instance profile "
			  "and that the metadata service ([aws] "
			  "metadata_endpoint) answers IMDSv2 requests" :
			  "check [aws] credentials (file:PATH readable by the "
			  "daemon's user only, with aws_access_key_id and "
			  "aws_secret_access_key in the profile)", failed);
		goto out;
	}
	e = pg_sts_caller_identity(w->http, cfg, &base, dl, arn, sizeof(arn),
				   err, sizeof(err));
	if (e != PG_OK) {
		add_check(checks, "sts", "fail", err, e == PG_ETIMEOUT ||
			  strstr(err, "connect") || strstr(err, "resolve") ||
			  strstr(err, "TLS") || strstr(err, "SSL") ||
			  strstr(err, "certificate") ?
			  "check [aws] sts_endpoint, region and ca_file, and "
			  "that the endpoint is reachable from this host" :
			  "STS refused the base credentials: check the key "
			  "pair in [aws] credentials and that it is active",
			  failed);
		goto out;
	}
	if (cfg->aws.base_principal != NULL &&
	    !principal_matches(arn, cfg->aws.base_principal)) {
		snprintf(detail, sizeof(detail), "the base credentials belong "
			 "to %s, not to [aws] base_principal %s", arn,
			 cfg->aws.base_principal);
		add_check(checks, "sts", "fail", detail, "set [aws] "
			  "base_principal to the principal of the base "
			  "credentials, or the role trust policies will not "
			  "trust pmpgate", failed);
		goto out;
	}
	snprintf(detail, sizeof(detail), "GetCallerIdentity: the base "
		 "credentials are %s%s", arn, cfg->aws.base_principal ?
		 " ([aws] base_principal)" : "");
	add_check(checks, "sts", "ok", detail, cfg->aws.base_principal ? "" :
		  "set [aws] base_principal to generate trust policies",
		  failed);
out:
	pg_aws_creds_wipe(&base);
}

static void
check_ledger(const pg_ctx *ctx, json_t *checks, int *failed)
{
	const pg_config *cfg = ctx->cfg;
	pg_ledger_facts f;
	void *hold = NULL;
	char err[512], detail[768];
	pg_err e;

	if (ctx->ledger == NULL) {
		add_check(checks, "ledger", "fail", "the ledger is not open",
			  "see the daemon's log", failed);
		return;
	}
	e = pg_ledger_facts_get(ctx->ledger, "pmpgate-doctor",
				cfg->roles[0].name, NULL, NULL, 0,
				(int64_t)time(NULL), &f, &hold, err,
				sizeof(err));
	pg_ledger_facts_free(hold);
	if (e != PG_OK) {
		add_check(checks, "ledger", "fail", err, "the ledger directory "
			  "and files must belong to the daemon's user, not be "
			  "writable by group or others, and ledger.json and "
			  "ledger.journal must "
			  "be intact", failed);
		return;
	}
	snprintf(detail, sizeof(detail), "%s ledger at %s is readable",
		 cfg->ledger.backend, cfg->ledger.path ? cfg->ledger.path :
		 "(endpoints)");
	add_check(checks, "ledger", "ok", detail, "", failed);
}

static void
check_audit_key(const pg_config *cfg, json_t *checks, int *failed)
{
	pg_secret pem = { NULL, 0 };
	pg_auditkey *key = NULL;
	char err[512], detail[768];
	pg_err e;

	if (cfg->audit.signing_key == NULL) {
		add_check(checks, "audit-key", "skip", "[audit] signing_key is "
			  "not set", "create a key with `pmpgate audit keygen` "
			  "and set [audit] signing_key", failed);
		return;
	}
	e = pg_secret_read_file(cfg->audit.signing_key, &pem, err,
				sizeof(err));
	if (e == PG_OK)
		e = pg_auditkey_load_private(pem.buf, pem.len, &key, err,
					     sizeof(err));
	pg_secret_wipe(&pem);
	pg_auditkey_free(key);
	if (e != PG_OK) {
		add_check(checks, "audit-key", "fail", err, "[audit] "
			  "signing_key must be an unencrypted Ed25519 private "
			  "key (PKCS#8 PEM) readable by the daemon's user only",
			  failed);
		return;
	}
	snprintf(detail, sizeof(detail), "%s is an Ed25519 private key",
		 cfg->audit.signing_key);
	add_check(checks, "audit-key", "ok", detail, "", failed);
}

void
pg_admin_doctor(pg_worker *w, const pg_ctx *ctx, int fd, pg_deadline dl)
{
	const pg_config *cfg = ctx->cfg;
	json_t *ans = NULL, *checks = json_array();
	int failed = 0;

	if (checks == NULL) {
		admin_error(fd, PG_ENOMEM, "out of memory", dl);
		return;
	}
	check_directory(cfg, checks, dl, &failed);
	check_tickets(w, cfg, checks, dl, &failed);
	check_sts(w, cfg, checks, dl, &failed);
	check_ledger(ctx, checks, &failed);
	check_audit_key(cfg, checks, &failed);
	ans = failed ?
		pg_proto_answer("error", NULL, 0, "a service pmpgated needs "
				"cannot be used (R9 unavailable)",
				pg_err_exit(PG_EUNAVAIL)) :
		pg_proto_answer("allow", NULL, 0, "every service pmpgated "
				"needs answered", 0);
	if (ans == NULL ||
	    json_object_set_new(ans, "config", json_string(
		    ctx->info && ctx->info->config_path ?
		    ctx->info->config_path : "")) != 0 ||
	    json_object_set(ans, "checks", checks) != 0) {
		admin_error(fd, PG_ENOMEM, "out of memory", dl);
		goto out;
	}
	pg_log(failed ? LOG_WARNING : LOG_NOTICE, "doctor: %s",
	       failed ? "some checks failed" : "all checks passed");
	admin_send(fd, ans, dl);
out:
	json_decref(checks);
	json_decref(ans);
}
