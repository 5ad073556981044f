/*
 * config.h - the pmpgate.conf contract (DESIGN.md, "Config").
 *
 * INI: [daemon] [directory] [tickets] [aws] [role NAME]... [separation]
 * [ledger] [audit].  "key = value" lines; '#' or ';' starts a comment line;
 * leading/trailing blanks are trimmed.  Unknown sections and keys, a key
 * given twice, values of the wrong type or range, and missing required
 * keys are errors reported as "FILE:LINE: message" (LINE 0 when the error
 * is about the whole file, e.g. a missing key).
 *
 * The file is opened once, checked on the open descriptor (regular file,
 * owned by root or the calling euid, not writable by group or others) and
 * parsed from that descriptor.  Secret files are NOT read here: see
 * secret.h; the config only names them.
 *
 * Values: durations "N" seconds or "Ns" "Nm" "Nh" "Nd"; booleans yes|no;
 * lists space-separated.
 *
 * The loaded config is immutable and shared read-only by all workers;
 * SIGHUP builds a new one and swaps it.
 */
#ifndef PMPGATE_CONFIG_H
#define PMPGATE_CONFIG_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define PG_MAX_ROLES 16

typedef enum { PG_MEMBER_MEMBER, PG_MEMBER_UNIQUEMEMBER, PG_MEMBER_MEMBERUID,
	       PG_MEMBER_MEMBEROF } pg_membership_kind;
typedef enum { PG_TICKETS_GENERIC, PG_TICKETS_SERVICENOW, PG_TICKETS_JIRA }
	pg_tickets_provider;
typedef enum { PG_AUTH_BEARER, PG_AUTH_BASIC, PG_AUTH_NONE } pg_tickets_auth;
typedef enum { PG_CREDS_FILE, PG_CREDS_ENV, PG_CREDS_INSTANCE_PROFILE }
	pg_creds_source;

/* Ticket fields, each a JSON Pointer (RFC 6901, '*' walks an array). */
typedef enum {
	PG_FIELD_STATE, PG_FIELD_REQUESTED_FOR, PG_FIELD_REQUESTER,
	PG_FIELD_APPROVERS, PG_FIELD_ROLE, PG_FIELD_CATEGORY,
	PG_FIELD_WINDOW_START, PG_FIELD_WINDOW_END,
	PG_FIELD_COUNT
} pg_ticket_field;

typedef struct pg_list {
	char **v;		/* NULL-terminated as well */
	size_t n;
} pg_list;

typedef struct pg_category_min {
	char *category;
	int min;
} pg_category_min;

typedef struct pg_role_cfg {
	char *name;		/* from "[role NAME]" */
	char *group;		/* DN of the role's group (required) */
	char *role_arn;		/* arn:aws:iam::ACCOUNT:role/NAME (required) */
	int64_t max_duration;	/* seconds; default 3600; 900..43200 */
	char *approver_group;	/* DN or NULL */
	int min_approvals;	/* default 1 */
	pg_category_min *min_by_category;	/* min_approvals.CATEGORY */
	size_t n_min_by_category;
	int requester_may_hold;	/* default 1 (yes) */
	pg_list conflicts;	/* role names; each must exist */
	int max_uses;		/* 0 = unlimited (default) */
	char *session_policy_file;	/* or NULL */
	char *external_id;	/* or NULL */
} pg_role_cfg;

typedef struct pg_config {
	char *path;

	struct {
		char *socket;		/* default $RUNSTATEDIR/pmpgate/socket */
		char *user;		/* default "pmpgate" */
		char *admin_group;	/* or NULL */
		int workers;		/* default 4; 1..64 */
		int64_t deadline_ms;	/* default 10s */
		int max_per_uid;	/* concurrent requests per uid; default 4 */
	} daemon;

	struct {
		pg_list uri;		/* required; ldap:// or ldaps:// */
		char *base;		/* required */
		char *bind_dn;		/* NULL = anonymous */
		char *bind_password_file;	/* required with bind_dn */
		char *ca_file;		/* required unless allow_plaintext */
		int starttls;		/* default no */
		int allow_plaintext;	/* default no */
		char *user_filter;	/* default "(&(objectClass=posixAccount)(uid=%u))" */
		pg_membership_kind membership;	/* default member */
		int nested_groups;	/* default yes */
		int max_depth;		/* nesting bound; default 8; 1..64 */
		char *ticket_user_attr;	/* default "uid" */
		int64_t timeout_ms;	/* per operation; default 5s */
	} directory;

	struct {
		pg_tickets_provider provider;	/* default generic */
		char *url;		/* required; contains "{ticket}"; https unless
					   allow_plaintext */
		char *id_pattern;	/* POSIX ERE, anchored by us; required */
		regex_t id_re;		/* compiled "^(id_pattern)$" (after compiling alone) */
		char *token_file;	/* or NULL */
		pg_tickets_auth auth;	/* default bearer with token_file, else none */
		char *ca_file;		/* or NULL = system store */
		int allow_plaintext;	/* default no */
		int64_t timeout_ms;	/* default 5s */
		char *field[PG_FIELD_COUNT];	/* from the preset, then overrides */
		pg_list approved_states;	/* preset default or required */
		size_t max_response;	/* bytes; default 1 MiB */
	} tickets;

	struct {
		char *sts_endpoint;	/* default https://sts.REGION.amazonaws.com */
		char *region;		/* required */
		pg_creds_source credentials;
		char *credentials_path;	/* for file:PATH */
		char *profile;		/* default "default" */
		char *ca_file;		/* or NULL = system store */
		int64_t timeout_ms;	/* default 5s */
		char *base_principal;	/* or NULL: the ARN of the principal of
					   the base credentials, the one the
					   role trust policies trust
					   (`pmpgate iam trust-policy`):
					   arn:aws:iam::ACCOUNT:role/NAME,
					   ...:user/NAME or ...:root */
		char *metadata_endpoint;	/* or NULL = http://169.254.169.254:
					   the instance metadata service,
					   http://HOST[:PORT] (no path, user
					   or query); only with credentials =
					   instance-profile */
	} aws;

	pg_role_cfg roles[PG_MAX_ROLES];
	size_t n_roles;		/* at least one */

	struct {
		int64_t window;		/* seconds; default 12h */
	} separation;

	struct {
		char *backend;		/* "file" (default) | "etcd" */
		char *path;		/* default $LOCALSTATEDIR/lib/pmpgate */
		/* etcd only (each refused with backend = file): */
		pg_list endpoints;	/* required; http:// needs allow_plaintext */
		char *ca_file;		/* or NULL = system store */
		char *cert_file;	/* client certificate (PEM), with key_file */
		char *key_file;		/* its key, a secret file */
		char *password_file;	/* secret file "user:password", or NULL */
		char *prefix;		/* key prefix; default "/pmpgate/" */
		int64_t timeout_ms;	/* per ledger operation; default 3s */
		int allow_plaintext;	/* permit http:// endpoints; default no */
	} ledger;

	struct {
		char *path;		/* default $LOCALSTATEDIR/log/pmpgate/audit.jsonl */
		char *signing_key;	/* or NULL */
		int syslog;		/* default yes */
	} audit;
} pg_config;

/* Compiled-in defaults, set by the Makefile from the GNU path variables. */
#ifndef PG_SYSCONFDIR
#define PG_SYSCONFDIR "/etc"
#endif
#ifndef PG_LOCALSTATEDIR
#define PG_LOCALSTATEDIR "/var"
#endif
#ifndef PG_RUNSTATEDIR
#define PG_RUNSTATEDIR "/run"
#endif
#define PG_DEFAULT_CONFIG PG_SYSCONFDIR "/pmpgate/pmpgate.conf"
#define PG_DEFAULT_SOCKET PG_RUNSTATEDIR "/pmpgate/socket"
#define PG_DEFAULT_STATEDIR PG_LOCALSTATEDIR "/lib/pmpgate"
#define PG_DEFAULT_AUDIT PG_LOCALSTATEDIR "/log/pmpgate/audit.jsonl"

/*
 * Load and check PATH.  On success *out is a new config (free with
 * pg_config_free) and PG_OK is returned.  On failure returns PG_ECONFIG
 * (or PG_ENOMEM) and writes "FILE:LINE: message" to err.
 */
pg_err pg_config_load(const char *path, pg_config **out, char *err,
		      size_t errlen);

void pg_config_free(pg_config *cfg);

/* The role called NAME, or NULL. */
const pg_role_cfg *pg_config_role(const pg_config *cfg, const char *name);

/* The min_approvals for a ticket of CATEGORY (NULL = none) in ROLE. */
int pg_role_min_approvals(const pg_role_cfg *role, const char *category);

/* Parse a duration ("90", "30s", "5m", "12h", "7d") into seconds.
 * Returns PG_OK or PG_EINVAL (empty, junk, negative, overflow). */
pg_err pg_parse_duration(const char *s, int64_t *seconds);

/* The JSON Pointer of FIELD's config key name ("field.state" -> "state"). */
const char *pg_field_name(pg_ticket_field field);

#endif
