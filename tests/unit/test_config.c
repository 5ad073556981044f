/*
 * test_config.c - pmpgate.conf loading (core/config.c).
 *
 * Every config is written to a private temp dir with mode 0600 (fixtures
 * are copied there too, so a checkout's umask does not matter) and loaded
 * with pg_config_load.  Bad configs are a table: each names the line the
 * error must be reported on and a piece of the message.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../core/config.h"

static char tmpdir[64];
static unsigned file_seq;

/* ---- helpers ----------------------------------------------------------- */

/* Write LEN bytes of TEXT to a new file in tmpdir with MODE; returns its
 * path in PATH. */
static void write_file(char *path, size_t pathlen, const char *text,
		       size_t len, mode_t mode)
{
	int fd;

	snprintf(path, pathlen, "%s/c%u.conf", tmpdir, file_seq++);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

/* Read a file whole (fixtures). */
static char *slurp(const char *path, size_t *len)
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

/* Copy the file at PG_TEST_DATA/REL into tmpdir (mode 0600). */
static void fixture(char *path, size_t pathlen, const char *rel)
{
	const char *data = getenv("PG_TEST_DATA");
	char src[PATH_MAX];
	size_t len;
	char *text;

	if (data == NULL)
		fail_msg("PG_TEST_DATA is not set");
	snprintf(src, sizeof(src), "%s/%s", data, rel);
	text = slurp(src, &len);
	write_file(path, pathlen, text, len, 0600);
	free(text);
}

static pg_config *load_ok(const char *text)
{
	char path[PATH_MAX], err[1024] = "";
	pg_config *cfg = NULL;
	pg_err rc;

	write_file(path, sizeof(path), text, strlen(text), 0600);
	rc = pg_config_load(path, &cfg, err, sizeof(err));
	if (rc != PG_OK)
		fail_msg("expected the config to load, got %d: %s", rc, err);
	assert_non_null(cfg);
	return cfg;
}

/*
 * Load PATH expecting PG_ECONFIG with "PATH:LINE: " and NEEDLE in the
 * message.  Returns 0 when so, else 1 after printing why.
 */
static int expect_error_at(const char *name, const char *path,
			   unsigned line, const char *needle)
{
	char err[1024] = "", prefix[PATH_MAX + 32];
	pg_config *cfg = (pg_config *)&cfg;	/* must be reset to NULL */
	pg_err rc;

	rc = pg_config_load(path, &cfg, err, sizeof(err));
	if (rc != PG_ECONFIG || cfg != NULL) {
		print_error("%s: expected PG_ECONFIG and no config, got %d (%s)\n",
			    name, rc, err);
		if (rc == PG_OK && cfg != NULL)
			pg_config_free(cfg);
		return 1;
	}
	snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
	if (strncmp(err, prefix, strlen(prefix)) != 0) {
		print_error("%s: expected prefix '%s', got '%s'\n", name,
			    prefix, err);
		return 1;
	}
	if (strstr(err + strlen(prefix), needle) == NULL) {
		print_error("%s: expected '%s' in '%s'\n", name, needle, err);
		return 1;
	}
	return 0;
}

static void expect_error(const char *text, size_t len, unsigned line,
			 const char *needle)
{
	char path[PATH_MAX];

	write_file(path, sizeof(path), text, len, 0600);
	if (expect_error_at("config", path, line, needle) != 0)
		fail();
}

/* ---- building blocks of test configs ------------------------------------ */

#define DIR_BODY \
	"uri = ldaps://ldap.example.com\n" \
	"base = dc=example,dc=com\n" \
	"ca_file = /etc/pmpgate/ca.pem\n"
#define TIX_BODY \
	"url = https://t.example.com/api/{ticket}\n" \
	"id_pattern = CHG[0-9]+\n" \
	"provider = servicenow\n"
#define AWS_BODY \
	"region = us-east-1\n" \
	"credentials = env\n"
#define ROLE_BODY \
	"group = cn=pm,dc=example,dc=com\n" \
	"role_arn = arn:aws:iam::123456789012:role/pm\n"
#define DIR "[directory]\n" DIR_BODY
#define TIX "[tickets]\n" TIX_BODY
#define AWS "[aws]\n" AWS_BODY
#define ROLE "[role pm]\n" ROLE_BODY
#define NOROLE DIR TIX AWS
#define MIN DIR TIX AWS ROLE

/* ---- valid configs ----------------------------------------------------- */

/* [aws] base_principal: the forms a trust policy may name. */
static void test_base_principal_forms(void **state)
{
	static const char *const ok[] = {
		"arn:aws:iam::123456789012:role/pmpgate-broker",
		"arn:aws:iam::123456789012:role/path/to/broker",
		"arn:aws:iam::123456789012:user/pmpgate",
		"arn:aws:iam::123456789012:root",
		"arn:aws-cn:iam::123456789012:role/b+=,.@_-x",
	};
	char text[1024];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		pg_config *c;

		snprintf(text, sizeof(text), "[aws]\nbase_principal = %s\n"
			 AWS_BODY DIR TIX ROLE, ok[i]);
		c = load_ok(text);
		assert_string_equal(c->aws.base_principal, ok[i]);
		pg_config_free(c);
	}
}

/* [aws] metadata_endpoint: the IMDS endpoints one may name. */
static void test_metadata_endpoint_forms(void **state)
{
	static const char *const ok[] = {
		"http://169.254.169.254",
		"http://[fd00:ec2::254]",
		"http://127.0.0.1:8080",
		"http://[::1]:65535",
		"http://imds.example-internal:80",
	};
	char text[1024];
	pg_config *c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), "[aws]\nmetadata_endpoint = %s\n"
			 "region = us-east-1\ncredentials = instance-profile\n"
			 DIR TIX ROLE, ok[i]);
		c = load_ok(text);
		assert_int_equal(c->aws.credentials, PG_CREDS_INSTANCE_PROFILE);
		assert_string_equal(c->aws.metadata_endpoint, ok[i]);
		pg_config_free(c);
	}
	/* Not set: NULL (the link-local default is awscreds.h's). */
	c = load_ok("[aws]\nregion = us-east-1\ncredentials = instance-profile\n"
		    DIR TIX ROLE);
	assert_null(c->aws.metadata_endpoint);
	pg_config_free(c);
}

static void test_minimal_defaults(void **state)
{
	pg_config *c = load_ok(MIN);
	const pg_role_cfg *r;

	(void)state;
	assert_string_equal(c->daemon.socket, PG_DEFAULT_SOCKET);
	assert_string_equal(c->daemon.user, "pmpgate");
	assert_null(c->daemon.admin_group);
	assert_int_equal(c->daemon.workers, 4);
	assert_int_equal(c->daemon.deadline_ms, 10000);
	assert_int_equal(c->daemon.max_per_uid, 4);

	assert_int_equal(c->directory.uri.n, 1);
	assert_string_equal(c->directory.uri.v[0], "ldaps://ldap.example.com");
	assert_null(c->directory.uri.v[1]);
	assert_string_equal(c->directory.base, "dc=example,dc=com");
	assert_null(c->directory.bind_dn);
	assert_null(c->directory.bind_password_file);
	assert_string_equal(c->directory.ca_file, "/etc/pmpgate/ca.pem");
	assert_int_equal(c->directory.starttls, 0);
	assert_int_equal(c->directory.allow_plaintext, 0);
	assert_string_equal(c->directory.user_filter,
			    "(&(objectClass=posixAccount)(uid=%u))");
	assert_int_equal(c->directory.membership, PG_MEMBER_MEMBER);
	assert_int_equal(c->directory.nested_groups, 1);
	assert_int_equal(c->directory.max_depth, 8);
	assert_string_equal(c->directory.ticket_user_attr, "uid");
	assert_int_equal(c->directory.timeout_ms, 5000);

	assert_int_equal(c->tickets.provider, PG_TICKETS_SERVICENOW);
	assert_null(c->tickets.token_file);
	assert_int_equal(c->tickets.auth, PG_AUTH_NONE);
	assert_null(c->tickets.ca_file);
	assert_int_equal(c->tickets.allow_plaintext, 0);
	assert_int_equal(c->tickets.timeout_ms, 5000);
	assert_int_equal(c->tickets.max_response, 1024 * 1024);

	assert_string_equal(c->aws.region, "us-east-1");
	assert_string_equal(c->aws.sts_endpoint,
			    "https://sts.us-east-1.amazonaws.com");
	assert_int_equal(c->aws.credentials, PG_CREDS_ENV);
	assert_null(c->aws.credentials_path);
	assert_string_equal(c->aws.profile, "default");
	assert_null(c->aws.ca_file);
	assert_int_equal(c->aws.timeout_ms, 5000);
	assert_null(c->aws.base_principal);

	assert_int_equal(c->n_roles, 1);
	r = pg_config_role(c, "pm");
	assert_non_null(r);
	assert_ptr_equal(r, &c->roles[0]);
	assert_string_equal(r->name, "pm");
	assert_string_equal(r->group, "cn=pm,dc=example,dc=com");
	assert_string_equal(r->role_arn, "arn:aws:iam::123456789012:role/pm");
	assert_int_equal(r->max_duration, 3600);
	assert_null(r->approver_group);
	assert_int_equal(r->min_approvals, 1);
	assert_int_equal(r->n_min_by_category, 0);
	assert_int_equal(r->requester_may_hold, 1);
	assert_int_equal(r->conflicts.n, 0);
	assert_non_null(r->conflicts.v);
	assert_null(r->conflicts.v[0]);
	assert_int_equal(r->max_uses, 0);
	assert_null(r->session_policy_file);
	assert_null(r->external_id);

	assert_int_equal(c->separation.window, 12 * 3600);
	assert_string_equal(c->ledger.backend, "file");
	assert_string_equal(c->ledger.path, PG_DEFAULT_STATEDIR);
	assert_int_equal(c->ledger.endpoints.n, 0);
	assert_non_null(c->ledger.endpoints.v);
	assert_null(c->ledger.ca_file);
	assert_null(c->ledger.cert_file);
	assert_null(c->ledger.key_file);
	assert_null(c->ledger.password_file);
	assert_string_equal(c->ledger.prefix, "/pmpgate/");
	assert_int_equal(c->ledger.timeout_ms, 3000);
	assert_int_equal(c->ledger.allow_plaintext, 0);
	assert_string_equal(c->audit.path, PG_DEFAULT_AUDIT);
	assert_null(c->audit.signing_key);
	assert_int_equal(c->audit.syslog, 1);
	assert_non_null(c->path);
	pg_config_free(c);
}

static void test_full(void **state)
{
	char path[PATH_MAX], err[1024] = "";
	pg_config *c = NULL;
	const pg_role_cfg *a, *b, *g;

	(void)state;
	fixture(path, sizeof(path), "config/full.conf");
	if (pg_config_load(path, &c, err, sizeof(err)) != PG_OK)
		fail_msg("full.conf: %s", err);
	assert_string_equal(c->path, path);

	assert_string_equal(c->daemon.socket, "/run/pg-test/socket");
	assert_string_equal(c->daemon.user, "pgd");
	assert_string_equal(c->daemon.admin_group, "wheel");
	assert_int_equal(c->daemon.workers, 8);
	assert_int_equal(c->daemon.deadline_ms, 30000);
	assert_int_equal(c->daemon.max_per_uid, 2);

	assert_int_equal(c->directory.uri.n, 2);
	assert_string_equal(c->directory.uri.v[0], "ldap://a.example.com");
	assert_string_equal(c->directory.uri.v[1], "ldaps://b.example.com:1636");
	assert_null(c->directory.uri.v[2]);
	assert_string_equal(c->directory.base, "ou=People,dc=ex\xc3\xa4mple,dc=com");
	assert_string_equal(c->directory.bind_dn,
			    "cn=pmpgate,ou=services,dc=example,dc=com");
	assert_string_equal(c->directory.bind_password_file,
			    "/etc/pmpgate/ldap.password");
	assert_string_equal(c->directory.ca_file, "/etc/pmpgate/ldap-ca.pem");
	assert_int_equal(c->directory.starttls, 1);
	assert_int_equal(c->directory.allow_plaintext, 0);
	assert_string_equal(c->directory.user_filter,
			    "(&(objectClass=inetOrgPerson)(mail=%u))");
	assert_int_equal(c->directory.membership, PG_MEMBER_MEMBEROF);
	assert_int_equal(c->directory.nested_groups, 0);
	assert_int_equal(c->directory.max_depth, 3);
	assert_string_equal(c->directory.ticket_user_attr, "mail");
	assert_int_equal(c->directory.timeout_ms, 2000);

	assert_int_equal(c->tickets.provider, PG_TICKETS_JIRA);
	assert_string_equal(c->tickets.url,
			    "https://jira.example.com/rest/api/2/issue/{ticket}");
	assert_string_equal(c->tickets.id_pattern, "[A-Z]+-[0-9]+");
	assert_int_equal(regexec(&c->tickets.id_re, "PMP-42", 0, NULL, 0), 0);
	assert_int_not_equal(regexec(&c->tickets.id_re, "PMP-42x", 0, NULL, 0), 0);
	assert_string_equal(c->tickets.token_file, "/etc/pmpgate/jira.token");
	assert_int_equal(c->tickets.auth, PG_AUTH_BASIC);
	assert_string_equal(c->tickets.ca_file, "/etc/pmpgate/jira-ca.pem");
	assert_int_equal(c->tickets.allow_plaintext, 1);
	assert_int_equal(c->tickets.timeout_ms, 60000);
	assert_int_equal(c->tickets.max_response, 512 * 1024);
	assert_int_equal(c->tickets.approved_states.n, 2);
	assert_string_equal(c->tickets.approved_states.v[0], "Approved");
	assert_string_equal(c->tickets.approved_states.v[1], "Done");
	assert_null(c->tickets.approved_states.v[2]);
	/* jira preset with two overrides */
	assert_string_equal(c->tickets.field[PG_FIELD_STATE],
			    "/fields/status/name");
	assert_string_equal(c->tickets.field[PG_FIELD_APPROVERS],
			    "/fields/approvers/*/key");
	assert_string_equal(c->tickets.field[PG_FIELD_WINDOW_END],
			    "/fields/due~1date");
	assert_string_equal(c->tickets.field[PG_FIELD_WINDOW_START],
			    "/fields/customfield_10104");

	assert_string_equal(c->aws.region, "eu-central-1");
	assert_string_equal(c->aws.sts_endpoint, "https://sts.example.test:8443");
	assert_int_equal(c->aws.credentials, PG_CREDS_FILE);
	assert_string_equal(c->aws.credentials_path, "/etc/pmpgate/aws-credentials");
	assert_string_equal(c->aws.profile, "pmpgate");
	assert_string_equal(c->aws.ca_file, "/etc/pmpgate/sts-ca.pem");
	assert_int_equal(c->aws.timeout_ms, 7000);
	assert_string_equal(c->aws.base_principal,
			    "arn:aws:iam::123456789012:role/pmpgate-broker");

	assert_int_equal(c->n_roles, 3);
	a = pg_config_role(c, "alpha");
	b = pg_config_role(c, "beta");
	g = pg_config_role(c, "gamma");
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(g);
	assert_null(pg_config_role(c, "delta"));
	assert_null(pg_config_role(c, "Alpha"));
	assert_null(pg_config_role(c, NULL));
	assert_string_equal(a->group, "cn=alpha,ou=groups,dc=example,dc=com");
	assert_string_equal(a->role_arn,
			    "arn:aws-us-gov:iam::123456789012:role/path/alpha-role");
	assert_int_equal(a->max_duration, 7200);
	assert_string_equal(a->approver_group,
			    "cn=approvers,ou=groups,dc=example,dc=com");
	assert_int_equal(a->min_approvals, 3);
	assert_int_equal(a->n_min_by_category, 2);
	assert_string_equal(a->min_by_category[0].category, "private-offer");
	assert_int_equal(a->min_by_category[0].min, 4);
	assert_string_equal(a->min_by_category[1].category, "Public_Offer.v2");
	assert_int_equal(a->min_by_category[1].min, 0);
	assert_int_equal(pg_role_min_approvals(a, "private-offer"), 4);
	assert_int_equal(pg_role_min_approvals(a, "Public_Offer.v2"), 0);
	assert_int_equal(pg_role_min_approvals(a, "public_offer.v2"), 3);
	assert_int_equal(pg_role_min_approvals(a, NULL), 3);
	assert_int_equal(a->requester_may_hold, 0);
	assert_int_equal(a->conflicts.n, 2);
	assert_string_equal(a->conflicts.v[0], "beta");
	assert_string_equal(a->conflicts.v[1], "gamma");
	assert_null(a->conflicts.v[2]);
	assert_int_equal(a->max_uses, 5);
	assert_string_equal(a->session_policy_file, "/etc/pmpgate/alpha.json");
	assert_string_equal(a->external_id, "ext-id:alpha/1");
	assert_int_equal(b->max_duration, 3600);
	assert_int_equal(b->conflicts.n, 0);
	assert_int_equal(g->conflicts.n, 1);
	assert_string_equal(g->conflicts.v[0], "alpha");

	assert_int_equal(c->separation.window, 90);
	assert_string_equal(c->ledger.backend, "etcd");
	assert_string_equal(c->ledger.path, "/var/lib/pg-test");
	assert_int_equal(c->ledger.endpoints.n, 2);
	assert_string_equal(c->ledger.endpoints.v[0], "http://127.0.0.1:2379");
	assert_string_equal(c->ledger.endpoints.v[1],
			    "https://etcd2.example.com:2379");
	assert_string_equal(c->ledger.ca_file, "/etc/pmpgate/etcd-ca.pem");
	assert_string_equal(c->ledger.cert_file, "/etc/pmpgate/etcd-client.pem");
	assert_string_equal(c->ledger.key_file, "/etc/pmpgate/etcd-client.key");
	assert_string_equal(c->ledger.password_file, "/etc/pmpgate/etcd.pw");
	assert_string_equal(c->ledger.prefix, "/pg-test/ledger/");
	assert_int_equal(c->ledger.timeout_ms, 2000);
	assert_int_equal(c->ledger.allow_plaintext, 1);
	assert_string_equal(c->audit.path, "/var/log/pg-test/audit.jsonl");
	assert_string_equal(c->audit.signing_key, "/etc/pmpgate/audit.pem");
	assert_int_equal(c->audit.syslog, 0);
	pg_config_free(c);
}

static void test_example(void **state)
{
	char path[PATH_MAX], err[1024] = "";
	pg_config *c = NULL;
	const pg_role_cfg *pm, *pa;

	(void)state;
	fixture(path, sizeof(path), "../../../conf/pmpgate.conf.example");
	if (pg_config_load(path, &c, err, sizeof(err)) != PG_OK)
		fail_msg("pmpgate.conf.example: %s", err);
	assert_int_equal(c->tickets.provider, PG_TICKETS_SERVICENOW);
	assert_int_equal(c->directory.uri.n, 2);
	assert_int_equal(strncmp(c->directory.uri.v[0], "ldaps://", 8), 0);
	assert_int_equal(c->n_roles, 2);
	pm = pg_config_role(c, "procurement-manager");
	pa = pg_config_role(c, "pmp-administrator");
	assert_non_null(pm);
	assert_non_null(pa);
	assert_int_equal(pm->conflicts.n, 1);
	assert_string_equal(pm->conflicts.v[0], "pmp-administrator");
	assert_int_equal(pa->conflicts.n, 1);
	assert_string_equal(pa->conflicts.v[0], "procurement-manager");
	assert_int_equal(pm->requester_may_hold, 1);
	assert_int_equal(pa->requester_may_hold, 0);
	assert_non_null(pa->approver_group);
	assert_int_equal(pg_role_min_approvals(pa, "private-offer"), 2);
	assert_int_equal(pg_role_min_approvals(pa, "public-offer"), 1);
	assert_int_equal(pg_role_min_approvals(pm, "private-offer"), 2);
	assert_int_equal(pg_role_min_approvals(pm, "other"), 1);
	assert_int_equal(regexec(&c->tickets.id_re, "CHG0012345", 0, NULL, 0), 0);
	assert_int_not_equal(regexec(&c->tickets.id_re, "CHG001234", 0, NULL, 0), 0);
	pg_config_free(c);
}

struct preset_case {
	const char *provider;
	const char *field[PG_FIELD_COUNT];
	const char *state;
};

static const struct preset_case presets[] = {
	{ "servicenow", {
		"/result/*/approval", "/result/*/requested_for",
		"/result/*/opened_by", "/result/*/u_approvers/*",
		"/result/*/u_aws_role", "/result/*/category",
		"/result/*/start_date", "/result/*/end_date" }, "approved" },
	{ "jira", {
		"/fields/status/name", "/fields/customfield_10100/name",
		"/fields/reporter/name", "/fields/customfield_10101/*/name",
		"/fields/customfield_10102/value",
		"/fields/customfield_10103/value",
		"/fields/customfield_10104", "/fields/customfield_10105" },
	  "Approved" },
};

static void test_presets(void **state)
{
	size_t i;
	int f;
	char text[2048];

	(void)state;
	for (i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
		pg_config *c;

		snprintf(text, sizeof(text),
			 DIR AWS ROLE "[tickets]\nprovider = %s\n"
			 "url = https://t.example.com/{ticket}\n"
			 "id_pattern = [0-9]+\n", presets[i].provider);
		c = load_ok(text);
		for (f = 0; f < PG_FIELD_COUNT; f++)
			assert_string_equal(c->tickets.field[f],
					    presets[i].field[f]);
		assert_int_equal(c->tickets.approved_states.n, 1);
		assert_string_equal(c->tickets.approved_states.v[0],
				    presets[i].state);
		pg_config_free(c);
	}
}

static void test_overrides_ok(void **state)
{
	static const char *const want[PG_FIELD_COUNT] = {
		"/st", "/for", "/by", "/appr/*", "/role", "/cat", "/a~0b", "",
	};
	pg_config *c;
	int f;

	(void)state;
	c = load_ok(DIR AWS ROLE "[tickets]\n"
		    "field.state = /st\n"
		    "field.requested_for = /for\n"
		    "field.requester = /by\n"
		    "field.approvers = /appr/*\n"
		    "field.role = /role\n"
		    "field.category = /cat\n"
		    "field.window_start = /a~0b\n"
		    "approved_states = ok fine\n"
		    "provider = servicenow\n"
		    "url = https://t.example.com/{ticket}\n"
		    "id_pattern = x|y\n");
	for (f = 0; f < PG_FIELD_WINDOW_END; f++)
		assert_string_equal(c->tickets.field[f], want[f]);
	assert_string_equal(c->tickets.field[PG_FIELD_WINDOW_END],
			    "/result/*/end_date");
	assert_int_equal(c->tickets.approved_states.n, 2);
	assert_string_equal(c->tickets.approved_states.v[1], "fine");
	/* the pattern is anchored as a whole: "^(x|y)$" */
	assert_int_equal(regexec(&c->tickets.id_re, "x", 0, NULL, 0), 0);
	assert_int_equal(regexec(&c->tickets.id_re, "y", 0, NULL, 0), 0);
	assert_int_not_equal(regexec(&c->tickets.id_re, "xy", 0, NULL, 0), 0);
	assert_int_not_equal(regexec(&c->tickets.id_re, "ay", 0, NULL, 0), 0);
	pg_config_free(c);
}

static void test_generic(void **state)
{
	pg_config *c;

	(void)state;
	c = load_ok(DIR AWS ROLE "[tickets]\n"
		    "url = http://127.0.0.1:8080/t/{ticket}\n"
		    "allow_plaintext = yes\n"
		    "id_pattern = T-[0-9]{1,6}\n"
		    "token_file = /etc/pmpgate/t.token\n"
		    "field.state = /state\n"
		    "field.requested_for = /for\n"
		    "field.role = /role\n"
		    "approved_states = approved\n");
	assert_int_equal(c->tickets.provider, PG_TICKETS_GENERIC);
	assert_int_equal(c->tickets.auth, PG_AUTH_BEARER);
	assert_string_equal(c->tickets.field[PG_FIELD_STATE], "/state");
	assert_null(c->tickets.field[PG_FIELD_REQUESTER]);
	assert_null(c->tickets.field[PG_FIELD_APPROVERS]);
	assert_null(c->tickets.field[PG_FIELD_CATEGORY]);
	assert_null(c->tickets.field[PG_FIELD_WINDOW_START]);
	assert_null(c->tickets.field[PG_FIELD_WINDOW_END]);
	pg_config_free(c);
}

/* field.X = none: a preset's field is not read at all. */
static void test_field_none(void **state)
{
	pg_config *c;

	(void)state;
	c = load_ok(DIR AWS ROLE "[tickets]\n" TIX_BODY
		    "field.window_start = none\n"
		    "field.window_end = none\n"
		    "field.category = none\n");
	assert_null(c->tickets.field[PG_FIELD_WINDOW_START]);
	assert_null(c->tickets.field[PG_FIELD_WINDOW_END]);
	assert_null(c->tickets.field[PG_FIELD_CATEGORY]);
	assert_string_equal(c->tickets.field[PG_FIELD_STATE],
			    "/result/*/approval");
	pg_config_free(c);
	/* the last value given wins, as for any override */
	c = load_ok(DIR AWS ROLE "[tickets]\n" TIX_BODY
		    "field.window_end = none\n");
	assert_null(c->tickets.field[PG_FIELD_WINDOW_END]);
	assert_string_equal(c->tickets.field[PG_FIELD_WINDOW_START],
			    "/result/*/start_date");
	pg_config_free(c);
}

static void test_plaintext_allowed(void **state)
{
	pg_config *c;

	(void)state;
	/* ldap:// without StartTLS and without a CA. */
	c = load_ok("[directory]\nuri = ldap://127.0.0.1:3890\n"
		    "base = dc=example,dc=com\nallow_plaintext = yes\n"
		    TIX ROLE "[aws]\nregion = us-east-1\ncredentials = env\n");
	assert_null(c->directory.ca_file);
	pg_config_free(c);

	/* StartTLS makes ldap:// fine without allow_plaintext. */
	c = load_ok("[directory]\nuri = ldap://127.0.0.1:3890\n"
		    "base = dc=example,dc=com\nstarttls = yes\n"
		    "ca_file = /etc/ca.pem\n" TIX AWS ROLE);
	assert_int_equal(c->directory.starttls, 1);
	pg_config_free(c);
}

static void test_syntax_variants(void **state)
{
	pg_config *c;

	(void)state;
	/* CRLF line ends, blanks around everything, comments of both
	 * kinds, a file without a final newline, UTF-8 text. */
	c = load_ok("# comment\r\n; other comment\r\n\r\n"
		    "  [ directory ]  \r\n"
		    "\turi\t=\tldaps://ldap.example.com\t\r\n"
		    "base=cn=J\xc3\xbcrgen M\xc3\xbcller,dc=example,dc=com\r\n"
		    "ca_file =/etc/ca.pem\r\n"
		    "   # indented comment\n"
		    TIX AWS "[role pm]\ngroup = cn=pm,dc=example,dc=com\n"
		    "role_arn = arn:aws:iam::123456789012:role/pm");
	assert_string_equal(c->directory.base,
			    "cn=J\xc3\xbcrgen M\xc3\xbcller,dc=example,dc=com");
	assert_string_equal(c->directory.ca_file, "/etc/ca.pem");
	assert_string_equal(c->roles[0].role_arn,
			    "arn:aws:iam::123456789012:role/pm");
	pg_config_free(c);
}

static void test_limits_ok(void **state)
{
	pg_config *c;
	char *text;
	size_t i, off = 0, cap = 16384;

	(void)state;
	/* exactly PG_MAX_ROLES roles, each conflicting with the next */
	text = malloc(cap);
	assert_non_null(text);
	off += (size_t)snprintf(text + off, cap - off, "%s", NOROLE);
	for (i = 0; i < PG_MAX_ROLES; i++)
		off += (size_t)snprintf(text + off, cap - off,
			"[role r%zu]\ngroup = cn=r%zu,dc=x\n"
			"role_arn = arn:aws:iam::123456789012:role/r%zu\n"
			"conflicts = r%zu\n"
			"max_duration = %s\n",
			i, i, i, (i + 1) % PG_MAX_ROLES,
			i % 2 ? "900" : "12h");
	assert_true(off < cap);
	c = load_ok(text);
	assert_int_equal(c->n_roles, PG_MAX_ROLES);
	assert_int_equal(c->roles[0].max_duration, 43200);
	assert_int_equal(c->roles[1].max_duration, 900);
	pg_config_free(c);

	/* a line of exactly 4096 bytes is fine */
	memset(text, 'a', 4096);
	memcpy(text, "# ", 2);
	snprintf(text + 4096, cap - 4096, "\n%s", MIN);
	c = load_ok(text);
	pg_config_free(c);
	free(text);
}

/* ---- bad configs -------------------------------------------------------- */

struct bad_case {
	const char *name;
	const char *text;
	size_t len;		/* 0: strlen(text) */
	unsigned line;
	const char *needle;
};

static const struct bad_case bad_cases[] = {
	/* structure */
	{ "unknown section", "[foo]\n" MIN, 0, 1, "unknown section [foo]" },
	{ "unknown key", "[daemon]\ncolour = red\n" MIN, 0, 2,
	  "unknown key 'colour' in [daemon]" },
	{ "unknown key in role", ROLE "colour = red\n" NOROLE, 0, 4,
	  "unknown key 'colour' in [role pm]" },
	{ "unknown field", "[tickets]\nfield.colour = /x\n" TIX_BODY DIR AWS ROLE,
	  0, 2, "unknown key 'field.colour'" },
	{ "key outside section", "workers = 4\n" MIN, 0, 1,
	  "outside a section" },
	{ "missing '='", "[daemon]\nworkers 4\n" MIN, 0, 2,
	  "expected 'key = value'" },
	{ "missing key", "[daemon]\n = 4\n" MIN, 0, 2, "missing key" },
	{ "invalid key name", "[daemon]\nwork ers = 4\n" MIN, 0, 2,
	  "invalid key name" },
	{ "empty value", "[daemon]\nuser =\n" MIN, 0, 2, "empty value" },
	{ "duplicate key", "[daemon]\nworkers = 2\nworkers = 3\n" MIN, 0, 3,
	  "duplicate key 'workers' in [daemon] (first given at line 2)" },
	{ "duplicate role", ROLE ROLE NOROLE, 0, 4, "duplicate role 'pm'" },
	{ "duplicate section", "[daemon]\n[audit]\n[daemon]\n" MIN, 0, 3,
	  "duplicate section [daemon]" },
	{ "bad role name", "[role PM]\n" ROLE_BODY NOROLE, 0, 1,
	  "invalid role name 'PM'" },
	{ "long role name",
	  "[role aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n"
	  ROLE_BODY NOROLE, 0, 1, "invalid role name" },
	{ "role without name", "[role]\n" MIN, 0, 1, "needs a name" },
	{ "header without ]", "[daemon\n" MIN, 0, 1, "must end with ']'" },
	{ "header with junk", "[daemon] x\n" MIN, 0, 1, "must end with ']'" },
	{ "header with arg", "[daemon x]\n" MIN, 0, 1, "unexpected 'x'" },
	{ "lone [", "[\n" MIN, 0, 1, "must end with ']'" },
	{ "NUL byte", "[daemon]\nwork\0ers = 4\n" MIN,
	  sizeof("[daemon]\nwork\0ers = 4\n" MIN) - 1, 2, "NUL byte" },
	{ "control char", "[daemon]\nuser = a\x01" "b\n" MIN, 0, 2,
	  "control character 0x01" },
	{ "DEL char", "# x\x7f\n" MIN, 0, 1, "control character 0x7f" },
	{ "lone CR", "[daemon]\ruser = x\n" MIN, 0, 1, "control character 0x0d" },
	{ "invalid UTF-8", "# caf\xe9\n" MIN, 0, 1, "invalid UTF-8" },
	{ "overlong UTF-8", "# \xc0\xaf\n" MIN, 0, 1, "invalid UTF-8" },
	{ "UTF-8 surrogate", "# \xed\xa0\x80\n" MIN, 0, 1, "invalid UTF-8" },
	{ "truncated UTF-8", "# \xe2\x82\n" MIN, 0, 1, "invalid UTF-8" },
	{ "C1 control", "# \xc2\x85\n" MIN, 0, 1, "invalid UTF-8" },

	/* types and ranges */
	{ "bad duration", "[daemon]\ndeadline = 5x\n" MIN, 0, 2,
	  "must be a duration" },
	{ "duration with space", "[daemon]\ndeadline = 5 s\n" MIN, 0, 2,
	  "must be a duration" },
	{ "negative duration", "[separation]\nwindow = -5\n" MIN, 0, 2,
	  "must be a duration" },
	{ "duration overflow", "[separation]\nwindow = 99999999999999999999\n"
	  MIN, 0, 2, "must be a duration" },
	{ "zero timeout", "[directory]\ntimeout = 0\n" DIR_BODY TIX AWS ROLE,
	  0, 2, "between 1 and 3600 seconds" },
	{ "zero window", "[separation]\nwindow = 0s\n" MIN, 0, 2,
	  "between 1 and 31622400 seconds" },
	{ "bad boolean", "[directory]\nstarttls = true\n" DIR_BODY TIX AWS ROLE,
	  0, 2, "must be yes or no, not 'true'" },
	{ "bad boolean case", "[audit]\nsyslog = Yes\n" MIN, 0, 2,
	  "must be yes or no" },
	{ "bad integer", "[daemon]\nworkers = 4a\n" MIN, 0, 2,
	  "must be a whole number" },
	{ "signed integer", "[daemon]\nworkers = +4\n" MIN, 0, 2,
	  "must be a whole number" },
	{ "negative integer", ROLE "max_uses = -1\n" NOROLE, 0, 4,
	  "must be a whole number" },
	{ "integer overflow", ROLE "max_uses = 99999999999999999999999\n"
	  NOROLE, 0, 4, "must be a whole number" },
	{ "workers 0", "[daemon]\nworkers = 0\n" MIN, 0, 2,
	  "between 1 and 64" },
	{ "workers 65", "[daemon]\nworkers = 65\n" MIN, 0, 2,
	  "between 1 and 64" },
	{ "max_depth 0", "[directory]\nmax_depth = 0\n" DIR_BODY TIX AWS ROLE,
	  0, 2, "between 1 and 64" },
	{ "min_approvals 33", ROLE "min_approvals = 33\n" NOROLE, 0, 4,
	  "between 0 and 32" },
	{ "max_duration 899", ROLE "max_duration = 899\n" NOROLE, 0, 4,
	  "between 900 and 43200" },
	{ "max_duration 13h", ROLE "max_duration = 13h\n" NOROLE, 0, 4,
	  "between 900 and 43200" },
	{ "max_response junk", "[tickets]\nmax_response = 1G\n" TIX_BODY DIR
	  AWS ROLE, 0, 2, "must be a size" },
	{ "max_response small", "[tickets]\nmax_response = 100\n" TIX_BODY DIR
	  AWS ROLE, 0, 2, "between 1024 and" },
	{ "relative path", "[daemon]\nsocket = run/socket\n" MIN, 0, 2,
	  "must be an absolute path" },
	{ "bad user name", "[daemon]\nuser = -x\n" MIN, 0, 2,
	  "not a user or group name" },
	{ "bad DN", "[directory]\nbase = not a dn\n" "uri = ldaps://l.example.com\n"
	  "ca_file = /c.pem\n" TIX AWS ROLE, 0, 2, "not a valid DN" },

	/* required keys (line 0) */
	{ "missing uri", "[directory]\nbase = dc=x\nca_file = /c\n" TIX AWS ROLE,
	  0, 0, "[directory] uri is required" },
	{ "missing directory", TIX AWS ROLE, 0, 0,
	  "[directory] uri is required" },
	{ "missing base", "[directory]\nuri = ldaps://l.example.com\nca_file = /c\n"
	  TIX AWS ROLE, 0, 0, "[directory] base is required" },
	{ "missing url", DIR AWS ROLE "[tickets]\nid_pattern = x\n", 0, 0,
	  "[tickets] url is required" },
	{ "missing id_pattern", DIR AWS ROLE
	  "[tickets]\nurl = https://t.example.com/{ticket}\n", 0, 0,
	  "[tickets] id_pattern is required" },
	{ "missing region", DIR TIX ROLE "[aws]\ncredentials = env\n", 0, 0,
	  "[aws] region is required" },
	{ "missing credentials", DIR TIX ROLE "[aws]\nregion = us-east-1\n", 0,
	  0, "[aws] credentials is required" },
	{ "no role", NOROLE, 0, 0, "at least one [role NAME]" },
	{ "role without group", "[role pm]\nrole_arn = "
	  "arn:aws:iam::123456789012:role/pm\n" NOROLE, 0, 0,
	  "[role pm] group is required" },
	{ "role without arn", "[role pm]\ngroup = cn=pm,dc=x\n" NOROLE, 0, 0,
	  "[role pm] role_arn is required" },

	/* roles */
	{ "conflicts unknown role", ROLE "conflicts = nosuch\n" NOROLE, 0, 4,
	  "conflicts names 'nosuch', which is not a defined role" },
	{ "conflicts itself", ROLE "conflicts = pm\n" NOROLE, 0, 4,
	  "conflicts names the role itself" },
	{ "conflicts twice", ROLE "[role b]\n" ROLE_BODY "conflicts = pm pm\n"
	  NOROLE, 0, 7, "names 'pm' twice" },
	{ "conflicts bad name", ROLE "conflicts = Pm\n" NOROLE, 0, 4,
	  "'Pm' is not a role name" },
	{ "base_principal not an arn", "[aws]\nbase_principal = pmpgate\n"
	  AWS_BODY DIR TIX ROLE, 0, 2, "is not an IAM role, user or account" },
	{ "base_principal short account", "[aws]\nbase_principal = "
	  "arn:aws:iam::1234567890:role/x\n" AWS_BODY DIR TIX ROLE, 0, 2,
	  "base_principal" },
	{ "base_principal group", "[aws]\nbase_principal = "
	  "arn:aws:iam::123456789012:group/x\n" AWS_BODY DIR TIX ROLE, 0, 2,
	  "base_principal" },
	{ "base_principal sts session", "[aws]\nbase_principal = "
	  "arn:aws:sts::123456789012:assumed-role/x/y\n" AWS_BODY DIR TIX ROLE,
	  0, 2, "base_principal" },
	{ "base_principal empty name", "[aws]\nbase_principal = "
	  "arn:aws:iam::123456789012:role/\n" AWS_BODY DIR TIX ROLE, 0, 2,
	  "base_principal" },
	{ "base_principal wildcard", "[aws]\nbase_principal = "
	  "arn:aws:iam::123456789012:role/*\n" AWS_BODY DIR TIX ROLE, 0, 2,
	  "base_principal" },
	{ "base_principal twice", "[aws]\nbase_principal = "
	  "arn:aws:iam::123456789012:root\nbase_principal = "
	  "arn:aws:iam::123456789012:root\n" AWS_BODY DIR TIX ROLE, 0, 3,
	  "duplicate key 'base_principal' in [aws]" },
	{ "role_arn short account", "[role pm]\nrole_arn = "
	  "arn:aws:iam::12345:role/pm\n" "group = cn=x\n" NOROLE, 0, 2,
	  "not an IAM role ARN" },
	{ "role_arn user", "[role pm]\nrole_arn = "
	  "arn:aws:iam::123456789012:user/pm\n" NOROLE, 0, 2,
	  "not an IAM role ARN" },
	{ "role_arn not arn", "[role pm]\nrole_arn = pm\n" NOROLE, 0, 2,
	  "not an IAM role ARN" },
	{ "role_arn bad char", "[role pm]\nrole_arn = "
	  "arn:aws:iam::123456789012:role/p*m\n" NOROLE, 0, 2,
	  "not an IAM role ARN" },
	{ "role_arn too long", "[role pm]\nrole_arn = "
	  "arn:aws:iam::123456789012:role/"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	  NOROLE, 0, 2, "not an IAM role ARN" },
	{ "bad category", ROLE "min_approvals.a:b = 1\n" NOROLE, 0, 4,
	  "invalid key name" },
	{ "empty category", ROLE "min_approvals. = 1\n" NOROLE, 0, 4,
	  "category must be" },
	{ "category out of range", ROLE "min_approvals.x = 40\n" NOROLE, 0, 4,
	  "between 0 and 32" },
	{ "duplicate category", ROLE "min_approvals.x = 1\nmin_approvals.x = 2\n"
	  NOROLE, 0, 5, "duplicate key 'min_approvals.x'" },
	{ "bad external_id", ROLE "external_id = x\n" NOROLE, 0, 4,
	  "external_id must be" },
	{ "external_id blank", ROLE "external_id = a b\n" NOROLE, 0, 4,
	  "external_id must be" },

	/* tickets */
	{ "http url", "[tickets]\nurl = http://t.example.com/{ticket}\n"
	  "id_pattern = x\n" DIR AWS ROLE, 0, 2,
	  "url must be https:// (allow_plaintext = yes permits http://)" },
	{ "url without {ticket}", "[tickets]\nurl = https://t.example.com/x\n"
	  "id_pattern = x\n" DIR AWS ROLE, 0, 2, "must contain {ticket}" },
	{ "ftp url", "[tickets]\nurl = ftp://t.example.com/{ticket}\n"
	  "id_pattern = x\n" DIR AWS ROLE, 0, 2, "must be an https:// URL" },
	{ "url without host", "[tickets]\nurl = https:///{ticket}\n"
	  "id_pattern = x\n" DIR AWS ROLE, 0, 2, "must be an https:// URL" },
	{ "bad id_pattern", "[tickets]\nid_pattern = CHG[0-9\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "not a valid extended regular expression" },
	{ "bad id_pattern paren", "[tickets]\nid_pattern = (a\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "not a valid extended regular expression" },
	{ "id_pattern stacking quantifiers", "[tickets]\nid_pattern = a+++++\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "nests quantifiers" },
	{ "id_pattern bound then star", "[tickets]\nid_pattern = CHG[0-9]{7}*\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "nests quantifiers" },
	{ "id_pattern quantified group of quantifiers",
	  "[tickets]\nid_pattern = ((a+)x)+\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "nests quantifiers" },
	{ "id_pattern bounded group of bounds",
	  "[tickets]\nid_pattern = (a{9}){9}\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "nests quantifiers" },
	{ "id_pattern huge bound", "[tickets]\nid_pattern = a{1000}\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "repetition bound above 255" },
	{ "id_pattern huge upper bound", "[tickets]\nid_pattern = a{1,300}\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "repetition bound above 255" },
	{ "id_pattern too long", "[tickets]\nid_pattern = "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "longer than 256" },
	{ "id_pattern escaping its anchors", "[tickets]\nid_pattern = a)|(b\n"
	  "url = https://t.example.com/{ticket}\n" DIR AWS ROLE, 0, 2,
	  "not a valid extended regular expression" },
	{ "pointer without /", "[tickets]\nfield.state = result/0\n" TIX_BODY
	  DIR AWS ROLE, 0, 2, "not a JSON Pointer" },
	{ "pointer bad escape", "[tickets]\nfield.role = /a~2b\n" TIX_BODY
	  DIR AWS ROLE, 0, 2, "not a JSON Pointer" },
	{ "pointer trailing ~", "[tickets]\nfield.role = /a~\n" TIX_BODY
	  DIR AWS ROLE, 0, 2, "not a JSON Pointer" },
	{ "state none", "[tickets]\nfield.state = none\n" TIX_BODY DIR AWS
	  ROLE, 0, 2, "field.state cannot be none" },
	{ "role none", "[tickets]\nfield.role = none\n" TIX_BODY DIR AWS
	  ROLE, 0, 2, "field.role cannot be none" },
	{ "requested_for none", "[tickets]\nfield.requested_for = none\n"
	  TIX_BODY DIR AWS ROLE, 0, 2, "field.requested_for cannot be none" },
	{ "duplicate field", "[tickets]\nfield.role = /a\nfield.role = /b\n"
	  TIX_BODY DIR AWS ROLE, 0, 3, "duplicate key 'field.role'" },
	{ "bad provider", "[tickets]\nprovider = remedy\n"
	  "url = https://t.example.com/{ticket}\nid_pattern = x\n" DIR AWS
	  ROLE, 0, 2, "provider must be servicenow, jira or generic" },
	{ "generic without state", DIR AWS ROLE "[tickets]\n"
	  "url = https://t.example.com/{ticket}\nid_pattern = x\n"
	  "field.requested_for = /f\nfield.role = /r\napproved_states = a\n",
	  0, 0, "field.state is required with provider = generic" },
	{ "generic without role", DIR AWS ROLE "[tickets]\n"
	  "url = https://t.example.com/{ticket}\nid_pattern = x\n"
	  "field.requested_for = /f\nfield.state = /s\napproved_states = a\n",
	  0, 0, "field.role is required with provider = generic" },
	{ "generic without states", DIR AWS ROLE "[tickets]\n"
	  "url = https://t.example.com/{ticket}\nid_pattern = x\n"
	  "field.requested_for = /f\nfield.state = /s\nfield.role = /r\n",
	  0, 0, "approved_states is required with provider = generic" },
	{ "bad membership", "[directory]\ngroup_membership = posix\n" DIR_BODY
	  TIX AWS ROLE, 0, 2, "group_membership must be member, uniqueMember, "
	  "memberUid or memberOf, not 'posix'" },
	{ "bad auth", "[tickets]\nauth = digest\n" TIX_BODY DIR AWS ROLE, 0,
	  2, "auth must be bearer, basic or none" },
	{ "basic without token", "[tickets]\nauth = basic\n" TIX_BODY DIR AWS
	  ROLE, 0, 0, "token_file is required with auth = basic" },
	{ "none with token", "[tickets]\nauth = none\ntoken_file = /t\n"
	  TIX_BODY DIR AWS ROLE, 0, 2, "auth = none but token_file" },

	/* directory */
	{ "ldap:// without starttls", "[directory]\n"
	  "uri = ldaps://a.example.com ldap://b.example.com\n"
	  "base = dc=x\nca_file = /c\n" TIX AWS ROLE, 0, 2,
	  "'ldap://b.example.com' is plaintext" },
	{ "not an ldap uri", "[directory]\nuri = http://a.example.com\n"
	  "base = dc=x\nca_file = /c\n" TIX AWS ROLE, 0, 2,
	  "not an ldap:// or ldaps:// URI" },
	{ "ldapi uri", "[directory]\nuri = ldapi:///run/slapd.sock\n"
	  "base = dc=x\nca_file = /c\n" TIX AWS ROLE, 0, 2,
	  "not an ldap:// or ldaps:// URI" },
	{ "uri without host", "[directory]\nuri = ldaps://\n"
	  "base = dc=x\nca_file = /c\n" TIX AWS ROLE, 0, 2,
	  "not a valid URI with a host" },
	{ "ldaps without ca_file", "[directory]\nuri = ldaps://a.example.com\n"
	  "base = dc=x\n" TIX AWS ROLE, 0, 0, "ca_file is required" },
	{ "starttls without ca_file", "[directory]\n"
	  "uri = ldap://a.example.com\nstarttls = yes\nbase = dc=x\n" TIX AWS
	  ROLE, 0, 0, "ca_file is required" },
	{ "bind_dn without password", "[directory]\nbind_dn = cn=b,dc=x\n"
	  DIR_BODY TIX AWS ROLE, 0, 0,
	  "bind_password_file is required with bind_dn" },
	{ "password without bind_dn", "[directory]\n"
	  "bind_password_file = /etc/pw\n" DIR_BODY TIX AWS ROLE, 0, 2,
	  "bind_password_file given without bind_dn" },
	{ "user_filter without %u", "[directory]\n"
	  "user_filter = (uid=alice)\n" DIR_BODY TIX AWS ROLE, 0, 2,
	  "must contain %u" },
	{ "user_filter unbalanced", "[directory]\n"
	  "user_filter = (&(uid=%u)\n" DIR_BODY TIX AWS ROLE, 0, 2,
	  "unbalanced parentheses" },
	{ "user_filter other %", "[directory]\n"
	  "user_filter = (uid=%s)\n" DIR_BODY TIX AWS ROLE, 0, 2,
	  "no '%' sequence but %u" },
	{ "user_filter no parens", "[directory]\n"
	  "user_filter = uid=%u\n" DIR_BODY TIX AWS ROLE, 0, 2,
	  "must start with '('" },
	{ "bad group_membership", "[directory]\ngroup_membership = owner\n"
	  DIR_BODY TIX AWS ROLE, 0, 2, "group_membership must be" },
	{ "bad ticket_user_attr", "[directory]\nticket_user_attr = 1mail\n"
	  DIR_BODY TIX AWS ROLE, 0, 2, "not an LDAP attribute name" },

	/* aws */
	{ "bad credentials", "[aws]\ncredentials = keychain\nregion = x\n"
	  DIR TIX ROLE, 0, 2,
	  "credentials must be file:PATH, env or instance-profile" },
	{ "relative credentials file", "[aws]\ncredentials = file:creds\n"
	  "region = x\n" DIR TIX ROLE, 0, 2, "needs an absolute path" },
	{ "bad region", "[aws]\nregion = US_EAST_1\ncredentials = env\n"
	  DIR TIX ROLE, 0, 2, "not a region name" },
	{ "http sts", "[aws]\nsts_endpoint = http://127.0.0.1:4566\n" AWS_BODY
	  DIR TIX ROLE, 0, 2, "sts_endpoint must be https://" },
	{ "bad profile", "[aws]\nprofile = a b\n" AWS_BODY DIR TIX ROLE, 0, 2,
	  "not a profile name" },
#define IMDS(url) "[aws]\nmetadata_endpoint = " url "\nregion = us-east-1\n" \
	"credentials = instance-profile\n" DIR TIX ROLE
	{ "metadata_endpoint https", IMDS("https://169.254.169.254"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint no scheme", IMDS("169.254.169.254"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint with a path", IMDS("http://169.254.169.254/latest"),
	  0, 2, "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint trailing slash", IMDS("http://169.254.169.254/"),
	  0, 2, "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint with a user", IMDS("http://u:p@169.254.169.254"),
	  0, 2, "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint with a query", IMDS("http://169.254.169.254?x=1"),
	  0, 2, "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint port 0", IMDS("http://127.0.0.1:0"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint port too big", IMDS("http://127.0.0.1:65536"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint empty port", IMDS("http://127.0.0.1:"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint no host", IMDS("http://:80"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint unclosed IPv6", IMDS("http://[fd00:ec2::254"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint bad IPv6", IMDS("http://[fd00:ec2::zz]"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint empty brackets", IMDS("http://[]"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
	{ "metadata_endpoint blank", IMDS("http://169.254.169.254 x"), 0, 2,
	  "metadata_endpoint must be http://HOST[:PORT]" },
#undef IMDS
	{ "metadata_endpoint with file credentials",
	  "[aws]\nregion = us-east-1\ncredentials = file:/etc/pg/aws\n"
	  "metadata_endpoint = http://169.254.169.254\n" DIR TIX ROLE, 0, 4,
	  "metadata_endpoint is only used with credentials = instance-profile" },
	{ "metadata_endpoint with env credentials",
	  "[aws]\nmetadata_endpoint = http://169.254.169.254\n" AWS_BODY
	  DIR TIX ROLE, 0, 2,
	  "metadata_endpoint is only used with credentials = instance-profile" },

	/* ledger */
	{ "bad backend", "[ledger]\nbackend = sqlite\n" MIN, 0, 2,
	  "backend must be file or etcd" },
	{ "etcd without endpoints", "[ledger]\nbackend = etcd\n" MIN, 0, 0,
	  "endpoints is required with backend = etcd" },
	{ "endpoints with file", "[ledger]\nendpoints = http://127.0.0.1:2379\n"
	  MIN, 0, 2, "only used with backend = etcd" },
	{ "bad endpoint", "[ledger]\nbackend = etcd\nendpoints = 127.0.0.1:2379\n"
	  MIN, 0, 3, "is not an http:// or https:// URL" },
#define ETCD "[ledger]\nbackend = etcd\nendpoints = https://127.0.0.1:2379\n"
	{ "plaintext endpoint", "[ledger]\nbackend = etcd\nendpoints = "
	  "https://a:2379 http://127.0.0.1:2379\n" MIN, 0, 3,
	  "'http://127.0.0.1:2379' is plaintext" },
	{ "endpoint with a path", "[ledger]\nbackend = etcd\nendpoints = "
	  "https://a:2379/v3\n" MIN, 0, 3, "must be scheme://host[:port]" },
	{ "endpoint with a query", "[ledger]\nbackend = etcd\nendpoints = "
	  "https://a:2379?x=1\n" MIN, 0, 3, "must be scheme://host[:port]" },
	{ "endpoint with a user", "[ledger]\nbackend = etcd\nendpoints = "
	  "https://u:p@a:2379\n" MIN, 0, 3, "must be scheme://host[:port]" },
	{ "cert without key", ETCD "cert_file = /etc/c.pem\n" MIN, 0, 4,
	  "cert_file and key_file go together" },
	{ "key without cert", ETCD "key_file = /etc/c.key\n" MIN, 0, 4,
	  "cert_file and key_file go together" },
	{ "relative ca_file", ETCD "ca_file = ca.pem\n" MIN, 0, 4,
	  "ca_file must be an absolute path" },
	{ "relative password_file", ETCD "password_file = pw\n" MIN, 0, 4,
	  "password_file must be an absolute path" },
	{ "prefix without slash", ETCD "prefix = /pmpgate\n" MIN, 0, 4,
	  "prefix must be 1 to 128 printable" },
	{ "prefix with blank", ETCD "prefix = /a b/\n" MIN, 0, 4,
	  "prefix must be" },
	{ "prefix not ASCII", ETCD "prefix = /\xc3\xa9/\n" MIN, 0, 4,
	  "prefix must be" },
	{ "timeout zero", ETCD "timeout = 0\n" MIN, 0, 4,
	  "timeout must be between 1 and 3600" },
	{ "timeout junk", ETCD "timeout = soon\n" MIN, 0, 4,
	  "timeout must be a duration" },
	{ "allow_plaintext junk", ETCD "allow_plaintext = maybe\n" MIN, 0, 4,
	  "must be yes or no" },
	{ "ca_file with file", "[ledger]\nca_file = /etc/ca.pem\n" MIN, 0, 2,
	  "[ledger] ca_file is only used with backend = etcd" },
	{ "prefix with file", "[ledger]\nbackend = file\nprefix = /x/\n" MIN,
	  0, 3, "[ledger] prefix is only used with backend = etcd" },
	{ "timeout with file", "[ledger]\ntimeout = 3s\n" MIN, 0, 2,
	  "[ledger] timeout is only used with backend = etcd" },
	{ "plaintext with file", "[ledger]\nallow_plaintext = yes\n" MIN, 0, 2,
	  "[ledger] allow_plaintext is only used with backend = etcd" },
#undef ETCD
};

static void test_bad_configs(void **state)
{
	size_t i, failed = 0;
	char path[PATH_MAX];

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *b = &bad_cases[i];
		size_t len = b->len ? b->len : strlen(b->text);

		write_file(path, sizeof(path), b->text, len, 0600);
		failed += (size_t)expect_error_at(b->name, path, b->line,
						  b->needle);
	}
	if (failed != 0)
		fail_msg("%zu of %zu bad configs misjudged", failed, i);
}

static void test_too_many_roles(void **state)
{
	char text[8192];
	size_t off, i;

	(void)state;
	off = (size_t)snprintf(text, sizeof(text), "%s", NOROLE);
	for (i = 0; i <= PG_MAX_ROLES; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
					"[role r%zu]\n" ROLE_BODY, i);
	assert_true(off < sizeof(text));
	/* NOROLE is 11 lines, each role 3: the 17th header is line 60 */
	expect_error(text, off, 11 + 3 * PG_MAX_ROLES + 1,
		     "too many roles (at most 16)");
}

static void test_too_many_categories(void **state)
{
	char text[8192];
	size_t off, i;

	(void)state;
	off = (size_t)snprintf(text, sizeof(text), "%s", ROLE);
	for (i = 0; i <= 64; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
					"min_approvals.c%zu = 1\n", i);
	off += (size_t)snprintf(text + off, sizeof(text) - off, "%s", NOROLE);
	assert_true(off < sizeof(text));
	/* ROLE is 3 lines; the 65th category is line 3 + 65 */
	expect_error(text, off, 3 + 65, "too many min_approvals.CATEGORY keys");
}

static void test_overlong_line(void **state)
{
	char *text;
	size_t len;

	(void)state;
	len = strlen(MIN) + 4097 + 16;
	text = malloc(len + 1);
	assert_non_null(text);
	snprintf(text, len + 1, "%s", MIN);
	len = strlen(text);
	text[len++] = '#';
	memset(text + len, 'x', 4096);
	len += 4096;
	text[len++] = '\n';
	text[len] = '\0';
	/* MIN is 14 lines; the comment of 4097 bytes is line 15 */
	expect_error(text, len, 15, "line too long");
	free(text);
}

static void test_too_large(void **state)
{
	size_t len = 1024 * 1024 + 1, i;
	char *text = malloc(len);

	(void)state;
	assert_non_null(text);
	for (i = 0; i < len; i++)
		text[i] = (i % 64 == 63) ? '\n' : '#';
	expect_error(text, len, 0, "file is larger than");
	free(text);
}

static void test_file_perms(void **state)
{
	static const struct {
		mode_t mode;
		const char *needle;
	} modes[] = {
		{ 0664, "must not be writable by group or others (mode 0664)" },
		{ 0620, "must not be writable by group or others (mode 0620)" },
		{ 0602, "must not be writable by group or others (mode 0602)" },
		{ 0666, "must not be writable by group or others (mode 0666)" },
	};
	char path[PATH_MAX], err[1024];
	pg_config *c = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		write_file(path, sizeof(path), MIN, strlen(MIN), modes[i].mode);
		if (expect_error_at("mode", path, 0, modes[i].needle) != 0)
			fail_msg("mode %04o", (unsigned)modes[i].mode);
	}
	/* readable by everyone is fine for the config itself */
	for (i = 0; i < 3; i++) {
		static const mode_t ok[] = { 0644, 0640, 0400 };

		write_file(path, sizeof(path), MIN, strlen(MIN), ok[i]);
		assert_int_equal(pg_config_load(path, &c, err, sizeof(err)),
				 PG_OK);
		pg_config_free(c);
	}
	/* owned by someone else (only root can make such a file) */
	write_file(path, sizeof(path), MIN, strlen(MIN), 0644);
	if (geteuid() == 0) {
		assert_int_equal(chown(path, 65534, 65534), 0);
		if (expect_error_at("owner", path, 0,
				    "must be owned by root or uid 0 (owner is uid 65534)") != 0)
			fail();
	} else {
		assert_int_equal(pg_config_load(path, &c, err, sizeof(err)),
				 PG_OK);
		pg_config_free(c);
	}
}

static void test_not_a_file(void **state)
{
	char path[PATH_MAX], link[PATH_MAX + 8];

	(void)state;
	/* a directory, a FIFO (must not hang), a missing file */
	if (expect_error_at("dir", tmpdir, 0, "not a regular file") != 0)
		fail();
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	if (expect_error_at("fifo", path, 0, "not a regular file") != 0)
		fail();
	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	if (expect_error_at("missing", path, 0, "cannot open") != 0)
		fail();

	/* the config may be a symbolic link (e.g. under /etc) */
	write_file(path, sizeof(path), MIN, strlen(MIN), 0600);
	snprintf(link, sizeof(link), "%s/link", tmpdir);
	assert_int_equal(symlink(path, link), 0);
	{
		pg_config *c = NULL;
		char err[512];

		assert_int_equal(pg_config_load(link, &c, err, sizeof(err)),
				 PG_OK);
		pg_config_free(c);
	}
}

static void test_small_err_buffer(void **state)
{
	char path[PATH_MAX], err[8];
	pg_config *c = NULL;

	(void)state;
	write_file(path, sizeof(path), "[foo]\n", 6, 0600);
	assert_int_equal(pg_config_load(path, &c, err, sizeof(err)), PG_ECONFIG);
	assert_null(c);
	assert_true(strlen(err) < sizeof(err));
	assert_int_equal(pg_config_load(path, &c, err, 0), PG_ECONFIG);
	assert_null(c);
}

/* ---- helpers of the API ----------------------------------------------- */

struct dur_case {
	const char *s;
	pg_err rc;
	int64_t v;
};

static const struct dur_case durations[] = {
	{ "0", PG_OK, 0 },
	{ "90", PG_OK, 90 },
	{ "007", PG_OK, 7 },
	{ "30s", PG_OK, 30 },
	{ "5m", PG_OK, 300 },
	{ "12h", PG_OK, 43200 },
	{ "7d", PG_OK, 604800 },
	{ "9223372036854775807", PG_OK, INT64_MAX },
	{ "9223372036854775807s", PG_OK, INT64_MAX },
	{ "106751991167300d", PG_OK, 106751991167300LL * 86400 },
	{ "", PG_EINVAL, 0 },
	{ "s", PG_EINVAL, 0 },
	{ "-5", PG_EINVAL, 0 },
	{ "+5", PG_EINVAL, 0 },
	{ " 5", PG_EINVAL, 0 },
	{ "5 ", PG_EINVAL, 0 },
	{ "5 s", PG_EINVAL, 0 },
	{ "5x", PG_EINVAL, 0 },
	{ "5ss", PG_EINVAL, 0 },
	{ "5S", PG_EINVAL, 0 },
	{ "5ms", PG_EINVAL, 0 },
	{ "1.5h", PG_EINVAL, 0 },
	{ "1h30m", PG_EINVAL, 0 },
	{ "0x10", PG_EINVAL, 0 },
	{ "9223372036854775808", PG_EINVAL, 0 },
	{ "99999999999999999999999", PG_EINVAL, 0 },
	{ "106751991167301d", PG_EINVAL, 0 },
	{ "153722867280912931m", PG_EINVAL, 0 },
};

static void test_parse_duration(void **state)
{
	size_t i;
	int64_t v;

	(void)state;
	for (i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
		pg_err rc;

		v = -1;
		rc = pg_parse_duration(durations[i].s, &v);
		if (rc != durations[i].rc)
			fail_msg("'%s': rc %d, want %d", durations[i].s, rc,
				 durations[i].rc);
		if (rc == PG_OK && v != durations[i].v)
			fail_msg("'%s': %lld, want %lld", durations[i].s,
				 (long long)v, (long long)durations[i].v);
		if (rc != PG_OK && v != -1)
			fail_msg("'%s': output written on error", durations[i].s);
	}
	assert_int_equal(pg_parse_duration(NULL, &v), PG_EINVAL);
}

static void test_field_names(void **state)
{
	static const char *const want[PG_FIELD_COUNT] = {
		"state", "requested_for", "requester", "approvers", "role",
		"category", "window_start", "window_end",
	};
	int f;

	(void)state;
	for (f = 0; f < PG_FIELD_COUNT; f++)
		assert_string_equal(pg_field_name((pg_ticket_field)f), want[f]);
	assert_null(pg_field_name(PG_FIELD_COUNT));
	assert_null(pg_field_name((pg_ticket_field)-1));
}

static void test_min_approvals_null(void **state)
{
	(void)state;
	assert_int_equal(pg_role_min_approvals(NULL, "x"), INT_MAX);
	assert_null(pg_config_role(NULL, "x"));
	pg_config_free(NULL);
}

/* ---- setup ------------------------------------------------------------- */

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pg-test-config.XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_base_principal_forms),
		cmocka_unit_test(test_metadata_endpoint_forms),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_example),
		cmocka_unit_test(test_presets),
		cmocka_unit_test(test_overrides_ok),
		cmocka_unit_test(test_generic),
		cmocka_unit_test(test_field_none),
		cmocka_unit_test(test_plaintext_allowed),
		cmocka_unit_test(test_syntax_variants),
		cmocka_unit_test(test_limits_ok),
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_too_many_roles),
		cmocka_unit_test(test_too_many_categories),
		cmocka_unit_test(test_overlong_line),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_file_perms),
		cmocka_unit_test(test_not_a_file),
		cmocka_unit_test(test_small_err_buffer),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_field_names),
		cmocka_unit_test(test_min_approvals_null),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
