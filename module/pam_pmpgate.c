/*
 * pam_pmpgate.c - pam_pmpgate.so, the PAM client of pmpgated
 * (DESIGN.md, "PAM module"; pam_pmpgate(8)).
 *
 *   auth      collects the ticket (and the role with role=prompt) through
 *             the conversation, keeps them with pam_set_data and returns
 *             PAM_IGNORE: it proves nothing, another module authenticates.
 *   account   asks the daemon to "decide" for PAM_USER with the service,
 *             tty and rhost as context and maps the answer to a PAM code
 *             (outcome(), the one such mapping).
 *   session   with "issue": asks the daemon to "issue" and writes the
 *             credentials to CREDS_DIR/<uid>/credentials for the user;
 *             close_session removes them.
 *
 * PAM glue only: libc, libpam and Jansson.  No LDAP, TLS, threads or
 * secrets inside sshd or sudo; the policy and every connection live in
 * pmpgated, which honours the user this module names because the module
 * runs as root.  Every failure is a refusal.
 */
#define PAM_SM_AUTH
#define PAM_SM_ACCOUNT
#define PAM_SM_SESSION

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <syslog.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

#include "../client/output.h"
#include "../client/proto.h"
#include "../core/err.h"

/* Client timeout: the daemon's deadline (10 s by default) plus a margin. */
#define DEFAULT_TIMEOUT_S 15
#define MAX_TIMEOUT_S 300
/* Where session credentials go: CREDS_DIR/<uid>/credentials. */
#define DEFAULT_CREDS_DIR PG_RUNSTATEDIR "/pmpgate"
#define CREDS_NAME "credentials"
#define MAX_DIR 200	/* longest credentials_dir= */
/* The name of the module data that carries role and ticket across phases. */
#define DATA_NAME "pam_pmpgate.request"
/* The PAM environment variables this module reads and sets. */
#define ENV_TICKET "PMPGATE_TICKET"
#define ENV_ROLE "PMPGATE_ROLE"
/* Roles listed in a role prompt, and the longest prompt. */
#define MAX_ROLES 32
#define MAX_PROMPT 1024
/* Messages to the user and to syslog. */
#define MAX_MSG 1024

typedef enum { PHASE_AUTH, PHASE_ACCOUNT, PHASE_SESSION } phase;

static const char *const phase_names[] = {
	[PHASE_AUTH] = "auth",
	[PHASE_ACCOUNT] = "account",
	[PHASE_SESSION] = "session",
};

typedef enum { TICKET_PROMPT, TICKET_ENV } ticket_source;

/* The module's options for one stack line; strings borrow from argv. */
typedef struct opts {
	const char *role;	/* role=NAME; NULL with role=prompt or unset */
	bool role_prompt;	/* role=prompt */
	ticket_source ticket;	/* ticket=prompt (default) | ticket=env */
	const char *socket;	/* socket=PATH */
	const char *creds_dir;	/* credentials_dir=PATH */
	int timeout_ms;		/* timeout=SECONDS */
	bool debug;
	bool issue;
	bool silent;		/* PAM_SILENT was passed */
} opts;

/* Role and ticket as collected, kept with pam_set_data between phases. */
typedef struct request_data {
	char *role;
	char *ticket;
} request_data;

/* ---- small helpers ----------------------------------------------------------- */

static void
wipe_free_str(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Send one message to the user through the conversation, unless silent. */
static void __attribute__((format(printf, 4, 5)))
tell(pam_handle_t *pamh, const opts *o, int style, const char *fmt, ...)
{
	char msg[MAX_MSG];
	va_list ap;

	if (o->silent)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(void)pam_prompt(pamh, style, NULL, "%s", msg);
}

/*
 * 1 when S is usable as one field of a request: 1..max bytes, valid
 * UTF-8, no control characters (the text survives pg_sanitize_text
 * unchanged).
 */
static int
field_ok(const char *s, size_t max)
{
	char safe[PG_PROTO_MAX_NAME + 8];
	size_t n;

	if (s == NULL || max > PG_PROTO_MAX_NAME)
		return 0;
	n = strnlen(s, max + 1);
	if (n == 0 || n > max)
		return 0;
	pg_sanitize_text(s, safe, sizeof(safe));
	return strcmp(safe, s) == 0;
}

/* Strip blanks around S in place. */
static void
trim(char *s)
{
	size_t n = strlen(s), start = 0;

	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	while (s[start] == ' ' || s[start] == '\t')
		start++;
	if (start > 0)
		memmove(s, s + start, n - start + 1);
}

/* pam_putenv(NAME=VALUE). */
static int
put_env(pam_handle_t *pamh, const char *name, const char *value)
{
	size_t len = strlen(name) + strlen(value) + 2;
	char *buf = malloc(len);
	int rc;

	if (buf == NULL)
		return PAM_BUF_ERR;
	snprintf(buf, len, "%s=%s", name, value);
	rc = pam_putenv(pamh, buf);
	explicit_bzero(buf, len);
	free(buf);
	return rc;
}

/* Overwrite the credential strings of an issue answer, then release it. */
static void
answer_free(json_t *answer)
{
	json_t *creds, *v;
	const char *k;

	if (answer == NULL)
		return;
	creds = json_object_get(answer, "credentials");
	json_object_foreach(creds, k, v)
		if (json_is_string(v))
			explicit_bzero((char *)json_string_value(v),
				       json_string_length(v));
	json_decref(answer);
}

/* ---- options ------------------------------------------------------------------- */

/* Log a bad option without echoing more than a short, printable part. */
static int
bad_option(pam_handle_t *pamh, const char *arg, const char *why)
{
	char safe[80];

	pg_sanitize_text(arg, safe, sizeof(safe));
	pam_syslog(pamh, LOG_ERR, "option \"%s\": %s; refusing", safe, why);
	return PAM_SERVICE_ERR;
}

/*
 * Parse the stack line's options into *o.  Unknown options, options given
 * twice and bad values are logged and refuse (PAM_SERVICE_ERR): a typo
 * must not silently weaken the policy.
 */
static int
parse_opts(pam_handle_t *pamh, int flags, int argc, const char **argv,
	   opts *o)
{
	bool have_role = false, have_ticket = false, have_socket = false,
	     have_dir = false, have_timeout = false;

	memset(o, 0, sizeof(*o));
	o->ticket = TICKET_PROMPT;
	o->socket = PG_DEFAULT_SOCKET;
	o->creds_dir = DEFAULT_CREDS_DIR;
	o->timeout_ms = DEFAULT_TIMEOUT_S * 1000;
	o->silent = (flags & PAM_SILENT) != 0;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (a == NULL)
			return bad_option(pamh, "(null)", "empty");
		if (strcmp(a, "debug") == 0) {
			o->debug = true;
		} else if (strcmp(a, "issue") == 0) {
			o->issue = true;
		} else if (strncmp(a, "role=", 5) == 0) {
			if (have_role)
				return bad_option(pamh, a, "given twice");
			have_role = true;
			if (strcmp(a + 5, "prompt") == 0)
				o->role_prompt = true;
			else if (pg_proto_role_valid(a + 5))
				o->role = a + 5;
			else
				return bad_option(pamh, a, "a role name is "
						  "1-64 characters of a-z, 0-9 "
						  "and '-', or \"prompt\"");
		} else if (strncmp(a, "ticket=", 7) == 0) {
			if (have_ticket)
				return bad_option(pamh, a, "given twice");
			have_ticket = true;
			if (strcmp(a + 7, "prompt") == 0)
				o->ticket = TICKET_PROMPT;
			else if (strcmp(a + 7, "env") == 0)
				o->ticket = TICKET_ENV;
			else
				return bad_option(pamh, a,
						  "takes prompt or env");
		} else if (strncmp(a, "socket=", 7) == 0) {
			if (have_socket)
				return bad_option(pamh, a, "given twice");
			have_socket = true;
			o->socket = a + 7;
			if (o->socket[0] != '/')
				return bad_option(pamh, a,
						  "needs an absolute path");
		} else if (strncmp(a, "credentials_dir=", 16) == 0) {
			if (have_dir)
				return bad_option(pamh, a, "given twice");
			have_dir = true;
			o->creds_dir = a + 16;
			if (o->creds_dir[0] != '/' ||
			    strlen(o->creds_dir) > MAX_DIR)
				return bad_option(pamh, a, "needs an absolute "
						  "path of at most 200 bytes");
		} else if (strncmp(a, "timeout=", 8) == 0) {
			long s = 0;
			const char *p = a + 8;

			if (have_timeout)
				return bad_option(pamh, a, "given twice");
			have_timeout = true;
			if (*p == '\0')
				return bad_option(pamh, a, "needs seconds");
			for (; *p; p++) {
				if (*p < '0' || *p > '9')
					return bad_option(pamh, a,
							  "needs whole seconds");
				s = s * 10 + (*p - '0');
				if (s > MAX_TIMEOUT_S)
					break;
			}
			if (s < 1 || s > MAX_TIMEOUT_S)
				return bad_option(pamh, a, "must be 1..300 "
						  "seconds");
			o->timeout_ms = (int)s * 1000;
		} else {
			return bad_option(pamh, a, "unknown option");
		}
	}
	return PAM_SUCCESS;
}

/* ---- the daemon ---------------------------------------------------------------- */

/*
 * 1 when a denial says that USER has no directory entry: R1 is among the
 * failing rules and the reason holds the daemon's wording for that fact,
 * "user USER is not in the directory (R1 ", naming this very user.
 */
static int
user_unknown(const json_t *answer, const char *user, const char *reason)
{
	const json_t *rules = json_object_get(answer, "rules"), *v;
	char phrase[PG_PROTO_MAX_NAME + 64];
	bool r1 = false;
	size_t i;

	json_array_foreach(rules, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), "R1") == 0)
			r1 = true;
	if (!r1)
		return 0;
	snprintf(phrase, sizeof(phrase), "user %s is not in the directory "
		 "(R1 ", user);
	return strstr(reason, phrase) != NULL;
}

/*
 * The one mapping from the outcome of a call to pmpgated to a PAM code.
 * It also tells the user (PAM_ERROR_MSG) and syslog why, for every
 * outcome but an allow.
 *
 *   allow                                     PAM_SUCCESS
 *   deny, the user has no directory entry     PAM_USER_UNKNOWN
 *   deny, anything else                       PAM_PERM_DENIED
 *   error answer (exit 2, 3, 4)               PAM_AUTHINFO_UNAVAIL
 *   daemon down, timeout, busy, malformed     PAM_AUTHINFO_UNAVAIL
 *   the request cannot be built (options)     PAM_SERVICE_ERR
 *   out of memory                             PAM_BUF_ERR
 *   socket() failed                           PAM_SYSTEM_ERR
 *
 * In the session phase every refusal is PAM_SESSION_ERR (what
 * pam_open_session reports), the message is the same.
 *
 * When the user has no directory entry other rules fail with R1 (a
 * ticket cannot be for a person the directory does not know), so "no
 * directory entry" is recognised by user_unknown(); if the daemon's
 * wording ever changes the result is PAM_PERM_DENIED, which refuses just
 * the same.
 */
static int
outcome(pam_handle_t *pamh, const opts *o, phase ph, const char *user,
	const char *role, const char *ticket, pg_err rc,
	const json_t *answer, const char *err)
{
	char safe[MAX_MSG - 32];
	const char *status, *reason;
	int code;

	if (rc != PG_OK) {
		switch (rc) {
		case PG_ENOMEM:
			code = PAM_BUF_ERR;
			break;
		case PG_EUSAGE:
			code = PAM_SERVICE_ERR;
			break;
		case PG_EINTERNAL:
			code = PAM_SYSTEM_ERR;
			break;
		default:	/* unavailable, timeout, busy, malformed */
			code = PAM_AUTHINFO_UNAVAIL;
			break;
		}
		pg_sanitize_text(err, safe, sizeof(safe));
		pam_syslog(pamh, LOG_ERR, "%s user=%s role=%s ticket=%s: %s",
			   phase_names[ph], user, role, ticket, safe);
		tell(pamh, o, PAM_ERROR_MSG, "pmpgate: error: %s", safe);
		goto out;
	}
	status = json_string_value(json_object_get(answer, "status"));
	reason = json_string_value(json_object_get(answer, "reason"));
	if (status == NULL || reason == NULL) {
		/* pg_proto_call guarantees both; refuse anyway. */
		code = PAM_AUTHINFO_UNAVAIL;
		pam_syslog(pamh, LOG_ERR, "%s user=%s: malformed answer",
			   phase_names[ph], user);
		tell(pamh, o, PAM_ERROR_MSG,
		     "pmpgate: error: malformed answer from pmpgated");
		goto out;
	}
	if (strcmp(status, "allow") == 0) {
		code = PAM_SUCCESS;
		if (o->debug)
			pam_syslog(pamh, LOG_DEBUG, "%s user=%s role=%s "
				   "ticket=%s: allowed", phase_names[ph], user,
				   role, ticket);
		goto out;
	}
	pg_sanitize_text(reason[0] != '\0' ? reason : "(no reason given)",
			 safe, sizeof(safe));
	if (strcmp(status, "deny") == 0) {
		code = user_unknown(answer, user, reason) ? PAM_USER_UNKNOWN :
							   PAM_PERM_DENIED;
		pam_syslog(pamh, LOG_NOTICE, "%s user=%s role=%s ticket=%s: "
			   "refused: %s", phase_names[ph], user, role, ticket,
			   safe);
		tell(pamh, o, PAM_ERROR_MSG, "pmpgate: refused: %s", safe);
	} else {
		code = PAM_AUTHINFO_UNAVAIL;
		pam_syslog(pamh, LOG_ERR, "%s user=%s role=%s ticket=%s: "
			   "error: %s", phase_names[ph], user, role, ticket,
			   safe);
		tell(pamh, o, PAM_ERROR_MSG, "pmpgate: error: %s", safe);
	}
out:
	if (ph == PHASE_SESSION && code != PAM_SUCCESS && code != PAM_BUF_ERR)
		code = PAM_SESSION_ERR;
	return code;
}

/*
 * The roles the daemon offers (its status answer's "roles"), as a
 * comma-separated list in OUT, and the array in *roles (new reference).
 * Returns 0 on success; -1 (OUT empty, *roles NULL) when the daemon
 * cannot be asked: the prompt then goes without a list and the account
 * check reports the daemon's state.
 */
static int
offered_roles(pam_handle_t *pamh, const opts *o, json_t **roles, char *out,
	      size_t outlen)
{
	pg_proto_req req = { .op = PG_OP_STATUS };
	char err[512];
	json_t *answer = NULL, *list, *v;
	size_t i, off = 0;
	int ret = -1;

	*roles = NULL;
	out[0] = '\0';
	if (pg_proto_call(o->socket, &req, o->timeout_ms, &answer, err,
			  sizeof(err)) != PG_OK) {
		if (o->debug)
			pam_syslog(pamh, LOG_DEBUG, "status: %s", err);
		goto out;
	}
	list = json_object_get(answer, "roles");
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > MAX_ROLES)
		goto out;
	json_array_foreach(list, i, v) {
		const char *name = json_string_value(v);
		int n;

		if (!pg_proto_role_valid(name))
			goto out;
		n = snprintf(out + off, outlen - off, "%s%s", i ? ", " : "",
			     name);
		if (n < 0 || (size_t)n >= outlen - off)
			goto out;
		off += (size_t)n;
	}
	*roles = json_incref(list);
	ret = 0;
out:
	if (ret != 0)
		out[0] = '\0';
	json_decref(answer);
	return ret;
}

/* ---- collecting role and ticket ------------------------------------------------ */

/* Ask one question with the echo on; *answer is the trimmed reply. */
static int
ask(pam_handle_t *pamh, const char *prompt, char **answer)
{
	char *resp = NULL;
	int rc;

	*answer = NULL;
	rc = pam_prompt(pamh, PAM_PROMPT_ECHO_ON, &resp, "%s", prompt);
	if (rc != PAM_SUCCESS) {
		wipe_free_str(resp);
		return rc;
	}
	if (resp == NULL)
		return PAM_CONV_ERR;
	trim(resp);
	*answer = resp;
	return PAM_SUCCESS;
}

static void
data_cleanup(pam_handle_t *pamh, void *data, int error_status)
{
	request_data *d = data;

	(void)pamh;
	(void)error_status;
	if (d == NULL)
		return;
	wipe_free_str(d->role);
	wipe_free_str(d->ticket);
	explicit_bzero(d, sizeof(*d));
	free(d);
}

/*
 * Collect role and ticket for this line's options, keep them with
 * pam_set_data and put them in the PAM environment (PMPGATE_ROLE,
 * PMPGATE_TICKET).  The role is this line's role=NAME, else PMPGATE_ROLE
 * from the PAM environment, else asked for (listing the daemon's roles);
 * the ticket is PMPGATE_TICKET from the PAM environment, else asked for
 * (ticket=prompt) or missing (ticket=env).  The user chooses both either
 * way: the daemon decides whether they may.
 *
 * PAM_SUCCESS with *out pointing at the kept data; PAM_AUTH_ERR when the
 * user's input cannot be used (the user has been told why); PAM_CONV_ERR,
 * PAM_BUF_ERR, PAM_SERVICE_ERR otherwise.
 */
static int
collect(pam_handle_t *pamh, const opts *o, const request_data **out)
{
	char prompt[MAX_PROMPT], list[MAX_PROMPT - 16];
	request_data *d = NULL;
	json_t *roles = NULL;
	const char *env;
	size_t i;
	int rc;

	*out = NULL;
	if (o->role == NULL && !o->role_prompt) {
		pam_syslog(pamh, LOG_ERR, "no role=NAME or role=prompt option "
			   "on this line; refusing");
		rc = PAM_SERVICE_ERR;
		goto out;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		rc = PAM_BUF_ERR;
		goto out;
	}

	/* The role: this line's, one an earlier phase put in the PAM
	 * environment, or the user's choice among the daemon's roles. */
	env = pam_getenv(pamh, ENV_ROLE);
	if (o->role != NULL || (env != NULL && env[0] != '\0')) {
		d->role = strdup(o->role != NULL ? o->role : env);
		if (d->role == NULL) {
			rc = PAM_BUF_ERR;
			goto out;
		}
	} else {
		if (offered_roles(pamh, o, &roles, list, sizeof(list)) == 0)
			snprintf(prompt, sizeof(prompt), "Role (%s): ", list);
		else
			snprintf(prompt, sizeof(prompt), "Role: ");
		rc = ask(pamh, prompt, &d->role);
		if (rc != PAM_SUCCESS)
			goto out;
	}
	if (!pg_proto_role_valid(d->role)) {
		tell(pamh, o, PAM_ERROR_MSG, "pmpgate: a role name is 1-64 "
		     "characters of a-z, 0-9 and '-'");
		rc = PAM_AUTH_ERR;
		goto out;
	}
	if (roles != NULL) {
		json_t *v;
		bool found = false;

		json_array_foreach(roles, i, v)
			if (strcmp(json_string_value(v), d->role) == 0)
				found = true;
		if (!found) {
			tell(pamh, o, PAM_ERROR_MSG, "pmpgate: role %s is not "
			     "offered here (choose one of: %s)", d->role,
			     list);
			rc = PAM_AUTH_ERR;
			goto out;
		}
	}

	/* The ticket: from the PAM environment when it is there (ticket=env,
	 * or put there by an earlier phase), else asked for. */
	env = pam_getenv(pamh, ENV_TICKET);
	if (env != NULL && env[0] != '\0') {
		d->ticket = strdup(env);
		if (d->ticket == NULL) {
			rc = PAM_BUF_ERR;
			goto out;
		}
		trim(d->ticket);
	} else if (o->ticket == TICKET_ENV) {
		tell(pamh, o, PAM_ERROR_MSG, "pmpgate: no ticket: "
		     ENV_TICKET " is not set");
		rc = PAM_AUTH_ERR;
		goto out;
	} else {
		rc = ask(pamh, "Ticket: ", &d->ticket);
		if (rc != PAM_SUCCESS)
			goto out;
	}
	if (!field_ok(d->ticket, PG_PROTO_MAX_NAME)) {
		tell(pamh, o, PAM_ERROR_MSG, "pmpgate: %s",
		     d->ticket[0] == '\0' ? "a ticket is required" :
		     "the ticket id is too long or holds characters that are "
		     "not allowed");
		rc = PAM_AUTH_ERR;
		goto out;
	}

	/* Carry both in the PAM environment too: sshd authenticates in a
	 * child process and opens the session in its monitor, which sees
	 * the child's PAM environment but not its module data. */
	rc = put_env(pamh, ENV_ROLE, d->role);
	if (rc == PAM_SUCCESS)
		rc = put_env(pamh, ENV_TICKET, d->ticket);
	if (rc != PAM_SUCCESS)
		goto out;

	rc = pam_set_data(pamh, DATA_NAME, d, data_cleanup);
	if (rc != PAM_SUCCESS)
		goto out;
	*out = d;
	d = NULL;
	if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "collected role=%s ticket=%s",
			   (*out)->role, (*out)->ticket);
out:
	json_decref(roles);
	if (d != NULL)
		data_cleanup(pamh, d, 0);
	return rc;
}

/*
 * Role and ticket for a request: the ones kept by an earlier phase of
 * this PAM handle, or collected now (sshd opens the session in another
 * process than the one that authenticated; sudo skips auth while its
 * timestamp is fresh).  A role=NAME option on this line wins over a kept
 * role.
 */
static int
get_request(pam_handle_t *pamh, const opts *o, const char **role,
	    const char **ticket)
{
	const void *p = NULL;
	const request_data *d = NULL;
	int rc;

	if (pam_get_data(pamh, DATA_NAME, &p) == PAM_SUCCESS && p != NULL) {
		d = p;
	} else {
		rc = collect(pamh, o, &d);
		if (rc != PAM_SUCCESS)
			return rc;
	}
	*role = o->role != NULL ? o->role : d->role;
	*ticket = d->ticket;
	return PAM_SUCCESS;
}

/* ---- one request ---------------------------------------------------------------- */

/* Buffers for the context strings, made safe for the protocol. */
typedef struct context {
	char service[PG_PROTO_MAX_CTX + 1];
	char tty[PG_PROTO_MAX_CTX + 1];
	char rhost[PG_PROTO_MAX_CTX + 1];
} context;

static const char *
ctx_item(pam_handle_t *pamh, int item, char *buf, size_t len)
{
	const void *v = NULL;

	if (pam_get_item(pamh, item, &v) != PAM_SUCCESS || v == NULL ||
	    ((const char *)v)[0] == '\0')
		return NULL;
	pg_sanitize_text(v, buf, len);
	return buf;
}

/*
 * Gather user, role, ticket and context and ask the daemon OP.  Returns
 * the PAM code of outcome(); with PAM_SUCCESS *answer is the allow answer
 * (release it with answer_free) and *user_out, *role_out, *ticket_out
 * borrow from PAM.
 */
static int
call(pam_handle_t *pamh, const opts *o, phase ph, pg_op op,
     json_t **answer, const char **user_out, const char **role_out,
     const char **ticket_out)
{
	pg_proto_req req = { .op = op };
	const char *user = NULL, *role = NULL, *ticket = NULL;
	char err[512];
	context ctx;
	json_t *a = NULL;
	pg_err e;
	int rc;

	*answer = NULL;
	rc = pam_get_user(pamh, &user, NULL);
	if (rc != PAM_SUCCESS || !field_ok(user, PG_PROTO_MAX_NAME)) {
		pam_syslog(pamh, LOG_ERR, "%s: no usable user name",
			   phase_names[ph]);
		return rc == PAM_SUCCESS || rc == PAM_CONV_AGAIN ?
		       PAM_USER_UNKNOWN : rc;
	}
	rc = get_request(pamh, o, &role, &ticket);
	if (rc != PAM_SUCCESS) {
		if (rc == PAM_BUF_ERR || rc == PAM_SERVICE_ERR)
			return rc;
		pam_syslog(pamh, LOG_NOTICE, "%s user=%s: no usable role and "
			   "ticket: refused", phase_names[ph], user);
		return ph == PHASE_SESSION ? PAM_SESSION_ERR : PAM_PERM_DENIED;
	}
	req.user = user;
	req.role = role;
	req.ticket = ticket;
	req.service = ctx_item(pamh, PAM_SERVICE, ctx.service,
			       sizeof(ctx.service));
	req.tty = ctx_item(pamh, PAM_TTY, ctx.tty, sizeof(ctx.tty));
	req.rhost = ctx_item(pamh, PAM_RHOST, ctx.rhost, sizeof(ctx.rhost));
	if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "%s: %s user=%s role=%s ticket=%s "
			   "via %s", phase_names[ph], pg_op_name(op), user,
			   role, ticket, o->socket);
	e = pg_proto_call(o->socket, &req, o->timeout_ms, &a, err,
			  sizeof(err));
	rc = outcome(pamh, o, ph, user, role, ticket, e, a, err);
	if (rc == PAM_SUCCESS) {
		*answer = a;
		a = NULL;
		*user_out = user;
		*role_out = role;
		*ticket_out = ticket;
	}
	answer_free(a);
	return rc;
}

/* ---- the credentials file ------------------------------------------------------- */

/*
 * Open the base directory and check it: a real directory (no symlink),
 * owned by root or by the owner of the daemon's socket (whoever owns the
 * socket is the daemon this module already trusts with every decision;
 * with systemd's RuntimeDirectory= that is the daemon's user), and not
 * writable by group or others.  A descriptor, or -1 with err set.
 */
static int
open_base(const opts *o, char *err, size_t errlen)
{
	struct stat st, sock;
	int fd;

	fd = open(o->creds_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		  O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", o->creds_dir, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", o->creds_dir, strerror(errno));
		goto fail;
	}
	if (st.st_uid != 0 &&
	    !(lstat(o->socket, &sock) == 0 && S_ISSOCK(sock.st_mode) &&
	      sock.st_uid == st.st_uid)) {
		snprintf(err, errlen, "%s is owned by uid %u, neither root nor "
			 "the owner of %s: refusing to write credentials "
			 "there", o->creds_dir, (unsigned)st.st_uid, o->socket);
		goto fail;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s is writable by group or others: "
			 "refusing to write credentials there", o->creds_dir);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/*
 * Open (creating when CREATE) BASEFD/<uid> and make sure it is the user's
 * own directory: not a symlink, a directory, owned by the user (or by
 * root, then handed to the user), mode 0700.  A descriptor, -1 with err
 * set, or -2 when it does not exist and CREATE is false.
 */
static int
open_user_dir(int basefd, const opts *o, uid_t uid, gid_t gid, bool create,
	      char *err, size_t errlen)
{
	char name[32];
	struct stat st;
	int fd;

	snprintf(name, sizeof(name), "%u", (unsigned)uid);
	if (create && mkdirat(basefd, name, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s/%s: cannot create: %s", o->creds_dir,
			 name, strerror(errno));
		return -1;
	}
	fd = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		if (e == ENOENT && !create)
			return -2;
		snprintf(err, errlen, "%s/%s: %s", o->creds_dir, name,
			 e == ELOOP || e == ENOTDIR ?
			 "is a symbolic link or not a directory: refusing" :
			 strerror(e));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s/%s: not a directory", o->creds_dir,
			 name);
		goto fail;
	}
	if (st.st_uid != uid && st.st_uid != 0) {
		snprintf(err, errlen, "%s/%s is owned by uid %u, not by the "
			 "user: refusing", o->creds_dir, name,
			 (unsigned)st.st_uid);
		goto fail;
	}
	if (create) {
		if ((st.st_uid != uid || st.st_gid != gid) &&
		    fchown(fd, uid, gid) != 0) {
			snprintf(err, errlen, "%s/%s: chown: %s", o->creds_dir,
				 name, strerror(errno));
			goto fail;
		}
		if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) != 0) {
			snprintf(err, errlen, "%s/%s: chmod: %s", o->creds_dir,
				 name, strerror(errno));
			goto fail;
		}
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/*
 * Write TEXT as CREDS_DIR/<uid>/credentials, mode 0600, owned by the user:
 * into a new file created with O_EXCL|O_NOFOLLOW, then renamed over the
 * old one.  Anything but a regular file at the credentials path (a planted
 * symlink, a directory, a fifo) refuses.  The path goes to PATH.
 */
static int
write_credentials(const opts *o, uid_t uid, gid_t gid, const char *text,
		  size_t len, char *path, size_t pathlen, char *err,
		  size_t errlen)
{
	char tmp[64];
	struct stat st;
	int basefd = -1, dirfd = -1, fd = -1, ret = -1;
	bool tmp_made = false;

	basefd = open_base(o, err, errlen);
	if (basefd < 0)
		goto out;
	dirfd = open_user_dir(basefd, o, uid, gid, true, err, errlen);
	if (dirfd < 0)
		goto out;
	snprintf(path, pathlen, "%s/%u/%s", o->creds_dir, (unsigned)uid,
		 CREDS_NAME);
	if (fstatat(dirfd, CREDS_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISREG(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a regular "
				 "file (a symbolic link?): refusing", path);
			goto out;
		}
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	snprintf(tmp, sizeof(tmp), ".%s.%ld", CREDS_NAME, (long)getpid());
	for (int attempt = 0; fd < 0; attempt++) {
		fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL |
			    O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0)
			break;
		/* A leftover of a crashed login: remove it once (unlinkat
		 * never follows a symlink) and try again. */
		if (errno != EEXIST || attempt > 0 ||
		    unlinkat(dirfd, tmp, 0) != 0) {
			snprintf(err, errlen, "%s/%u/%s: cannot create: %s",
				 o->creds_dir, (unsigned)uid, tmp,
				 strerror(errno));
			goto out;
		}
	}
	tmp_made = true;
	if (fchown(fd, uid, gid) != 0 || fchmod(fd, 0600) != 0 ||
	    pg_write_fd(fd, text, len) != 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "%s: cannot write: %s", path,
			 strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(err, errlen, "%s: cannot write: %s", path,
			 strerror(errno));
		goto out;
	}
	fd = -1;
	if (renameat(dirfd, tmp, dirfd, CREDS_NAME) != 0) {
		snprintf(err, errlen, "%s: cannot rename into place: %s", path,
			 strerror(errno));
		goto out;
	}
	tmp_made = false;
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp_made)
		(void)unlinkat(dirfd, tmp, 0);
	if (dirfd >= 0)
		close(dirfd);
	if (basefd >= 0)
		close(basefd);
	return ret;
}

/*
 * Remove CREDS_DIR/<uid>/credentials without following a symlink, and the
 * <uid> directory when it is then empty.  0 when gone (or never there).
 */
static int
remove_credentials(const opts *o, uid_t uid, char *err, size_t errlen)
{
	char name[32];
	int basefd, dirfd = -1, ret = -1;

	/* No base directory: nothing was ever written. */
	if (access(o->creds_dir, F_OK) != 0 && errno == ENOENT)
		return 0;
	basefd = open_base(o, err, errlen);
	if (basefd < 0)
		goto out;
	dirfd = open_user_dir(basefd, o, uid, 0, false, err, errlen);
	if (dirfd == -2) {
		ret = 0;
		goto out;
	}
	if (dirfd < 0)
		goto out;
	if (unlinkat(dirfd, CREDS_NAME, 0) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s/%u/%s: cannot remove: %s",
			 o->creds_dir, (unsigned)uid, CREDS_NAME,
			 strerror(errno));
		goto out;
	}
	snprintf(name, sizeof(name), "%u", (unsigned)uid);
	(void)unlinkat(basefd, name, AT_REMOVEDIR);	/* when empty */
	ret = 0;
out:
	if (dirfd >= 0)
		close(dirfd);
	if (basefd >= 0)
		close(basefd);
	return ret;
}

/* The user's uid and gid (through NSS), or -1 with a log line. */
static int
user_ids(pam_handle_t *pamh, const char *user, uid_t *uid, gid_t *gid)
{
	struct passwd *pw = pam_modutil_getpwnam(pamh, user);

	if (pw == NULL) {
		pam_syslog(pamh, LOG_ERR, "session: user %s has no local "
			   "account", user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

/* ---- the PAM service functions --------------------------------------------------- */

PAM_EXTERN int
pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc,
		    const char **argv)
{
	const request_data *d;
	opts o;
	int rc;

	rc = parse_opts(pamh, flags, argc, argv, &o);
	if (rc != PAM_SUCCESS)
		return rc;
	rc = collect(pamh, &o, &d);
	if (rc == PAM_SUCCESS)
		return PAM_IGNORE;
	return rc;
}

PAM_EXTERN int
pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	opts o;
	int rc;

	rc = parse_opts(pamh, flags, argc, argv, &o);
	return rc != PAM_SUCCESS ? rc : PAM_IGNORE;
}

PAM_EXTERN int
pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	const char *user, *role, *ticket;
	json_t *answer = NULL;
	opts o;
	int rc;

	rc = parse_opts(pamh, flags, argc, argv, &o);
	if (rc != PAM_SUCCESS)
		return rc;
	rc = call(pamh, &o, PHASE_ACCOUNT, PG_OP_DECIDE, &answer, &user,
		  &role, &ticket);
	answer_free(answer);
	return rc;
}

PAM_EXTERN int
pam_sm_open_session(pam_handle_t *pamh, int flags, int argc,
		    const char **argv)
{
	const char *user = NULL, *role = NULL, *ticket = NULL, *expiration;
	const char *answer_user;
	char err[1024], safe[MAX_MSG - 64], path[MAX_DIR + 64];
	char *ini = NULL, *text = NULL;
	size_t ini_len = 0, text_len = 0;
	json_t *answer = NULL;
	pg_creds creds;
	uid_t uid;
	gid_t gid;
	opts o;
	int rc, n;

	rc = parse_opts(pamh, flags, argc, argv, &o);
	if (rc != PAM_SUCCESS)
		return rc;
	if (!o.issue)
		return PAM_IGNORE;
	rc = pam_get_user(pamh, &user, NULL);
	if (rc != PAM_SUCCESS || user == NULL)
		return PAM_SESSION_ERR;
	if (user_ids(pamh, user, &uid, &gid) != 0) {
		tell(pamh, &o, PAM_ERROR_MSG, "pmpgate: error: no local "
		     "account for this user: no credentials issued");
		return PAM_SESSION_ERR;
	}
	rc = call(pamh, &o, PHASE_SESSION, PG_OP_ISSUE, &answer, &user, &role,
		  &ticket);
	if (rc != PAM_SUCCESS)
		goto out;
	rc = PAM_SESSION_ERR;
	answer_user = json_string_value(json_object_get(answer, "user"));
	if (answer_user != NULL && strcmp(answer_user, user) != 0) {
		pam_syslog(pamh, LOG_ERR, "session user=%s: the daemon issued "
			   "for another user; refusing", user);
		tell(pamh, &o, PAM_ERROR_MSG, "pmpgate: error: malformed "
		     "answer from pmpgated: credentials for another user");
		goto out;
	}
	if (pg_creds_from_answer(answer, role, &creds, err, sizeof(err)) !=
	    PG_OK) {
		pam_syslog(pamh, LOG_ERR, "session user=%s role=%s: %s", user,
			   role, err);
		tell(pamh, &o, PAM_ERROR_MSG, "pmpgate: error: %s", err);
		goto out;
	}
	expiration = creds.expiration;
	ini = pg_format_creds(&creds, PG_FMT_INI, role, &ini_len);
	if (ini == NULL) {
		rc = PAM_BUF_ERR;
		goto out;
	}
	/* A comment first: what these are and when they expire. */
	n = snprintf(NULL, 0, "# pmpgate: role %s, ticket %s, user %s, "
		     "expires %s\n", role, ticket, user, expiration);
	if (n < 0) {
		rc = PAM_SYSTEM_ERR;
		goto out;
	}
	text_len = (size_t)n + ini_len;
	text = malloc(text_len + 1);
	if (text == NULL) {
		rc = PAM_BUF_ERR;
		goto out;
	}
	snprintf(text, (size_t)n + 1, "# pmpgate: role %s, ticket %s, user %s, "
		 "expires %s\n", role, ticket, user, expiration);
	memcpy(text + n, ini, ini_len + 1);
	if (write_credentials(&o, uid, gid, text, text_len, path, sizeof(path),
			      err, sizeof(err)) != 0) {
		pg_sanitize_text(err, safe, sizeof(safe));
		pam_syslog(pamh, LOG_ERR, "session user=%s role=%s: %s", user,
			   role, safe);
		tell(pamh, &o, PAM_ERROR_MSG, "pmpgate: error: cannot store "
		     "the credentials: %s", safe);
		goto out;
	}

	/* The environment of the session: where and which profile. */
	rc = put_env(pamh, "AWS_SHARED_CREDENTIALS_FILE", path);
	if (rc == PAM_SUCCESS)
		rc = put_env(pamh, "AWS_PROFILE", role);
	if (rc == PAM_SUCCESS)
		rc = put_env(pamh, ENV_TICKET, ticket);
	if (rc != PAM_SUCCESS) {
		char rm[512];

		pam_syslog(pamh, LOG_ERR, "session user=%s: pam_putenv: %s",
			   user, pam_strerror(pamh, rc));
		(void)remove_credentials(&o, uid, rm, sizeof(rm));
		rc = PAM_SESSION_ERR;
		goto out;
	}
	pam_syslog(pamh, LOG_INFO, "session user=%s role=%s ticket=%s: "
		   "credentials in %s, expire %s", user, role, ticket, path,
		   expiration);
	tell(pamh, &o, PAM_TEXT_INFO, "pmpgate: credentials for role %s "
	     "(ticket %s) in %s, profile %s, expire %s", role, ticket, path,
	     role, expiration);
	rc = PAM_SUCCESS;
out:
	pg_wipe_free(text, text_len);
	pg_wipe_free(ini, ini_len);
	answer_free(answer);
	return rc;
}

PAM_EXTERN int
pam_sm_close_session(pam_handle_t *pamh, int flags, int argc,
		     const char **argv)
{
	const char *user = NULL;
	char err[1024], safe[MAX_MSG - 64];
	uid_t uid;
	gid_t gid;
	opts o;
	int rc;

	rc = parse_opts(pamh, flags, argc, argv, &o);
	if (rc != PAM_SUCCESS)
		return rc;
	if (!o.issue)
		return PAM_IGNORE;
	rc = pam_get_user(pamh, &user, NULL);
	if (rc != PAM_SUCCESS || user == NULL ||
	    user_ids(pamh, user, &uid, &gid) != 0)
		return PAM_SESSION_ERR;
	if (remove_credentials(&o, uid, err, sizeof(err)) != 0) {
		pg_sanitize_text(err, safe, sizeof(safe));
		pam_syslog(pamh, LOG_ERR, "close session user=%s: %s", user,
			   safe);
		return PAM_SESSION_ERR;
	}
	/* Unset what open_session set (libpam logs deleting an unset name). */
	if (pam_getenv(pamh, "AWS_SHARED_CREDENTIALS_FILE") != NULL)
		(void)pam_putenv(pamh, "AWS_SHARED_CREDENTIALS_FILE");
	if (pam_getenv(pamh, "AWS_PROFILE") != NULL)
		(void)pam_putenv(pamh, "AWS_PROFILE");
	if (o.debug)
		pam_syslog(pamh, LOG_DEBUG, "close session user=%s: "
			   "credentials removed", user);
	return PAM_SUCCESS;
}
