/* test_sts.c - table-driven tests of the pure steps of core/sts.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../core/deadline.h"
#include "../../core/http.h"
#include "../../core/sts.h"

#define NOW 1800000000LL	/* 2027-01-15T08:00:00Z */

/* ---- helpers -------------------------------------------------------------- */

static char *
read_data(const char *name, size_t *len)
{
	const char *dir = getenv("PG_TEST_DATA");
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	assert_non_null(dir);
	snprintf(path, sizeof(path), "%s/sts/%s", dir, name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
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

static void
assert_zero_result(const pg_sts_result *r)
{
	assert_null(r->creds.access_key_id);
	assert_null(r->creds.secret_access_key);
	assert_null(r->creds.session_token);
	assert_int_equal(r->creds.expiration, 0);
	assert_string_equal(r->assumed_role_arn, "");
	assert_string_equal(r->request_id, "");
}

/* ---- session names -------------------------------------------------------- */

#define U100 "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu" \
	     "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"
#define U58 "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"
#define U64 "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"

static const struct {
	const char *user, *ticket;
	size_t outlen;
	const char *want;
} name_vec[] = {
	{ "alice", "CHG0012345", 80, "alice@CHG0012345" },
	{ "john.doe@example.com", "INC-1", 80, "john.doe@example.com@INC-1" },
	{ "a b", "T 1", 80, "a-b@T-1" },
	{ "j\xc3\xb6rg", "X", 80, "j-rg@X" },			/* one char */
	{ "\xe6\x97\xa5\xe6\x9c\xac", "X", 80, "--@X" },	/* two chars */
	{ "\xf0\x9f\x98\x80!", "X", 80, "--@X" },		/* emoji + '!' */
	{ "\x80\x80", "X", 80, "--@X" },			/* stray bytes */
	{ "u", "T/1:2;3", 80, "u@T-1-2-3" },
	{ "a+b=c,d", "x_y", 80, "a+b=c,d@x-y" },
	{ "u", "t\n\r\t", 80, "u@t---" },
	{ U100, "T", 80, U64 },
	{ "alice", U100, 80, "alice@" U58 },
	{ "alice", "CHG0012345", 8, "alice@C" },
	{ "", "", 80, "@" },
};

static void
test_session_name(void **state)
{
	char out[80];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(name_vec) / sizeof(name_vec[0]); i++) {
		memset(out, 'Z', sizeof(out));
		pg_sts_session_name(name_vec[i].user, name_vec[i].ticket, out,
				    name_vec[i].outlen);
		if (strcmp(out, name_vec[i].want) != 0)
			fail_msg("session name %zu: got \"%s\" want \"%s\"", i,
				 out, name_vec[i].want);
		assert_true(strlen(out) <= 64);
	}
}

/* ---- tag values ----------------------------------------------------------- */

#define X100 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
	     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define X50 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define X6 "xxxxxx"

static const struct {
	const char *in;
	const char *want;
} tag_vec[] = {
	{ "CHG0012345", "CHG0012345" },
	{ "bob,carol", "bob_carol" },
	{ "bob carol", "bob carol" },
	{ "j\xc3\xb6rg", "j_rg" },
	{ "a b:c/d=e+f@g-h_i.j", "a b:c/d=e+f@g-h_i.j" },
	{ "tab\there", "tab_here" },
	{ "emoji \xf0\x9f\x98\x80", "emoji _" },
	{ "semi;colon\"quote'<>&", "semi_colon_quote____" },
	{ "", "" },
	{ X100 X100 X100, X100 X100 X50 X6 },	/* 300 -> 256 */
};

static void
test_tag_value(void **state)
{
	char out[300];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(tag_vec) / sizeof(tag_vec[0]); i++) {
		pg_sts_tag_value(tag_vec[i].in, out, sizeof(out));
		if (strcmp(out, tag_vec[i].want) != 0)
			fail_msg("tag value %zu: got \"%s\" want \"%s\"", i,
				 out, tag_vec[i].want);
		assert_true(strlen(out) <= 256);
	}
	/* A short output buffer cuts, never overflows. */
	pg_sts_tag_value("abcdef", out, 4);
	assert_string_equal(out, "abc");
}

/* ---- form bodies ---------------------------------------------------------- */

static const char *const appr2[] = { "bob", "carol" };
static const char *const appr3[] = { "a,b", "", "\xc3\xb6" };

#define ARN_PM "arn:aws:iam::123456789012:role/procurement-manager"
#define ARN_PM_ENC "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fprocurement-manager"
#define TRANS2 "&TransitiveTagKeys.member.1=pmpgate%3Aticket" \
	       "&TransitiveTagKeys.member.2=pmpgate%3Auser"

static const struct {
	pg_sts_assume req;
	const char *want;	/* NULL = refused */
} body_vec[] = {
	{ { ARN_PM, "alice", "CHG0012345", appr2, 2, 3600, NULL, NULL },
	  "Action=AssumeRole&Version=2011-06-15&RoleArn=" ARN_PM_ENC
	  "&RoleSessionName=alice%40CHG0012345&DurationSeconds=3600"
	  "&SourceIdentity=alice"
	  "&Tags.member.1.Key=pmpgate%3Aticket&Tags.member.1.Value=CHG0012345"
	  "&Tags.member.2.Key=pmpgate%3Auser&Tags.member.2.Value=alice"
	  "&Tags.member.3.Key=pmpgate%3Aapprovers"
	  "&Tags.member.3.Value=bob%20carol" TRANS2
	  "&TransitiveTagKeys.member.3=pmpgate%3Aapprovers" },
	{ { ARN_PM, "alice", "CHG1", NULL, 0, 900,
	    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
	    "\"Action\":\"s3:Get*\",\"Resource\":\"*\"}]}",
	    "ext-1/2 3" },
	  "Action=AssumeRole&Version=2011-06-15&RoleArn=" ARN_PM_ENC
	  "&RoleSessionName=alice%40CHG1&DurationSeconds=900"
	  "&SourceIdentity=alice"
	  "&Tags.member.1.Key=pmpgate%3Aticket&Tags.member.1.Value=CHG1"
	  "&Tags.member.2.Key=pmpgate%3Auser&Tags.member.2.Value=alice" TRANS2
	  "&Policy=%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B"
	  "%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGet%2A%22"
	  "%2C%22Resource%22%3A%22%2A%22%7D%5D%7D"
	  "&ExternalId=ext-1%2F2%203" },
	{ { ARN_PM, "j\xc3\xb6rg", "CHG 1,2", appr3, 3, 43200, NULL, NULL },
	  "Action=AssumeRole&Version=2011-06-15&RoleArn=" ARN_PM_ENC
	  "&RoleSessionName=j-rg%40CHG-1%2C2&DurationSeconds=43200"
	  "&SourceIdentity=j%C3%B6rg"
	  "&Tags.member.1.Key=pmpgate%3Aticket"
	  "&Tags.member.1.Value=CHG%201_2"
	  "&Tags.member.2.Key=pmpgate%3Auser&Tags.member.2.Value=j_rg"
	  "&Tags.member.3.Key=pmpgate%3Aapprovers"
	  "&Tags.member.3.Value=a_b%20_" TRANS2
	  "&TransitiveTagKeys.member.3=pmpgate%3Aapprovers" },
	{ { ARN_PM, "a&b=c", "T+1", NULL, 0, 3600, NULL, "x&Action=Evil" },
	  "Action=AssumeRole&Version=2011-06-15&RoleArn=" ARN_PM_ENC
	  "&RoleSessionName=a-b%3Dc%40T%2B1&DurationSeconds=3600"
	  "&SourceIdentity=a%26b%3Dc"
	  "&Tags.member.1.Key=pmpgate%3Aticket&Tags.member.1.Value=T%2B1"
	  "&Tags.member.2.Key=pmpgate%3Auser&Tags.member.2.Value=a_b%3Dc"
	  TRANS2 "&ExternalId=x%26Action%3DEvil" },
	{ { NULL, "alice", "T", NULL, 0, 3600, NULL, NULL }, NULL },
	{ { ARN_PM, NULL, "T", NULL, 0, 3600, NULL, NULL }, NULL },
	{ { ARN_PM, "alice", NULL, NULL, 0, 3600, NULL, NULL }, NULL },
	{ { ARN_PM, "alice", "T", NULL, 2, 3600, NULL, NULL }, NULL },
};

static void
test_assume_body(void **state)
{
	size_t i;
	char *b;

	(void)state;
	for (i = 0; i < sizeof(body_vec) / sizeof(body_vec[0]); i++) {
		b = pg_sts_assume_body(&body_vec[i].req);
		if (!body_vec[i].want) {
			if (b)
				fail_msg("body %zu: expected refusal, got %s",
					 i, b);
			continue;
		}
		if (!b)
			fail_msg("body %zu: refused", i);
		if (strcmp(b, body_vec[i].want) != 0)
			fail_msg("body %zu:\n got  %s\n want %s", i, b,
				 body_vec[i].want);
		free(b);
	}
	assert_null(pg_sts_assume_body(NULL));
}

/* ---- AssumeRole answers --------------------------------------------------- */

static const struct {
	const char *file;
	int64_t now;
	pg_err rc;
	const char *errsub;	/* expected in err, or NULL */
	const char *key, *arn, *reqid;
	int64_t exp;
} assume_file_vec[] = {
	{ "assume_ok.xml", NOW, PG_OK, NULL, "ASIAIOSFODNN7EXAMPLE",
	  "arn:aws:sts::123456789012:assumed-role/procurement-manager/"
	  "alice@CHG0012345",
	  "c6104cbe-af31-11e0-8154-cbc7ccf896c7", NOW + 3600 },
	{ "assume_ms.xml", NOW, PG_OK, NULL, "ASIAIOSFODNN7EXAMPLE", NULL,
	  NULL, NOW + 3600 },
	{ "assume_prefixed.xml", NOW, PG_OK, NULL, "ASIAPREFIXEDEXAMPLE1",
	  "arn:aws:sts::123456789012:assumed-role/pmp-administrator/bob@CHG1",
	  "0f7c9a2e-1111-2222-3333-444455556666", NOW + 900 },
	{ "assume_ok.xml", NOW + 3599, PG_OK, NULL, "ASIAIOSFODNN7EXAMPLE",
	  NULL, NULL, NOW + 3600 },
	{ "assume_ok.xml", NOW + 3600, PG_EPROTO, "already expired", NULL, NULL, NULL, 0 },
	{ "assume_ms.xml", NOW + 7200, PG_EPROTO, "already expired", NULL, NULL, NULL, 0 },
	{ "billion_laughs.xml", NOW, PG_EPROTO, "DOCTYPE", NULL, NULL, NULL, 0 },
	{ "external_entity.xml", NOW, PG_EPROTO, "DOCTYPE", NULL, NULL, NULL, 0 },
	{ "undeclared_entity.xml", NOW, PG_EPROTO, "malformed XML", NULL, NULL, NULL, 0 },
	{ "truncated.xml", NOW, PG_EPROTO, "malformed XML", NULL, NULL, NULL, 0 },
	{ "not_xml.txt", NOW, PG_EPROTO, "malformed XML", NULL, NULL, NULL, 0 },
	{ "error_access_denied.xml", NOW, PG_EPROTO,
	  "unexpected document element", NULL, NULL, NULL, 0 },
};

static void
test_parse_assume_files(void **state)
{
	pg_sts_result r;
	char err[256];
	size_t i, len;
	char *xml;
	int64_t t0;

	(void)state;
	for (i = 0; i < sizeof(assume_file_vec) / sizeof(assume_file_vec[0]);
	     i++) {
		xml = read_data(assume_file_vec[i].file, &len);
		err[0] = '\0';
		memset(&r, 0xA5, sizeof(r));
		t0 = pg_mono_ms();
		pg_err rc = pg_sts_parse_assume(xml, len, assume_file_vec[i].now,
						&r, err, sizeof(err));
		/* Rejections are immediate (no entity expansion). */
		assert_true(pg_mono_ms() - t0 < 2000);
		if (rc != assume_file_vec[i].rc)
			fail_msg("%s: rc %d want %d (%s)",
				 assume_file_vec[i].file, rc,
				 assume_file_vec[i].rc, err);
		if (rc == PG_OK) {
			assert_string_equal(r.creds.access_key_id,
					    assume_file_vec[i].key);
			assert_non_null(r.creds.secret_access_key);
			assert_true(strlen(r.creds.secret_access_key) > 0);
			assert_non_null(r.creds.session_token);
			assert_true(strlen(r.creds.session_token) > 0);
			assert_int_equal(r.creds.expiration,
					 assume_file_vec[i].exp);
			if (assume_file_vec[i].arn)
				assert_string_equal(r.assumed_role_arn,
						    assume_file_vec[i].arn);
			if (assume_file_vec[i].reqid)
				assert_string_equal(r.request_id,
						    assume_file_vec[i].reqid);
		} else {
			assert_zero_result(&r);
			if (!strstr(err, assume_file_vec[i].errsub))
				fail_msg("%s: err \"%s\" lacks \"%s\"",
					 assume_file_vec[i].file, err,
					 assume_file_vec[i].errsub);
		}
		pg_sts_result_wipe(&r);
		free(xml);
	}
}

/* A document built from parts: each element may be left out, replaced or
 * doubled, to test every required element and every bound. */
enum { P_KEY, P_SECRET, P_TOKEN, P_EXP, P_ARN, P_REQID, P_N };

static const char *const part_default[P_N] = {
	"<AccessKeyId>ASIAGENERATEDEXAMPLE</AccessKeyId>",
	"<SecretAccessKey>c2VjcmV0LWtleQ</SecretAccessKey>",
	"<SessionToken>dG9rZW4tdmFsdWU=</SessionToken>",
	"<Expiration>2027-01-15T08:30:00Z</Expiration>",
	"<Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>",
	"<RequestId>rid-1</RequestId>",
};

static char *
build_doc(int which, const char *replacement)
{
	const char *p[P_N];
	size_t n;
	char *doc;
	int i;

	for (i = 0; i < P_N; i++)
		p[i] = (i == which) ? replacement : part_default[i];
	n = 1024;
	for (i = 0; i < P_N; i++)
		n += strlen(p[i]);
	doc = malloc(n);
	assert_non_null(doc);
	snprintf(doc, n,
		 "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/"
		 "2011-06-15/\"><AssumeRoleResult><AssumedRoleUser>%s"
		 "</AssumedRoleUser><Credentials>%s%s%s%s</Credentials>"
		 "</AssumeRoleResult><ResponseMetadata>%s</ResponseMetadata>"
		 "</AssumeRoleResponse>",
		 p[P_ARN], p[P_KEY], p[P_SECRET], p[P_TOKEN], p[P_EXP],
		 p[P_REQID]);
	return doc;
}

static char *
token_elem(size_t n)
{
	char *s = malloc(n + 64);
	size_t i;

	assert_non_null(s);
	strcpy(s, "<SessionToken>");
	for (i = 0; i < n; i++)
		s[14 + i] = 'T';
	strcpy(s + 14 + n, "</SessionToken>");
	return s;
}

static void
test_parse_assume_generated(void **state)
{
	static const struct {
		int which;
		const char *repl;
		pg_err rc;
		const char *errsub;
	} vec[] = {
		{ -1, NULL, PG_OK, NULL },
		{ P_KEY, "", PG_EPROTO, "no Credentials/AccessKeyId" },
		{ P_SECRET, "", PG_EPROTO, "no Credentials/SecretAccessKey" },
		{ P_TOKEN, "", PG_EPROTO, "no Credentials/SessionToken" },
		{ P_EXP, "", PG_EPROTO, "no Credentials/Expiration" },
		{ P_ARN, "", PG_EPROTO, "no AssumedRoleUser/Arn" },
		{ P_REQID, "", PG_EPROTO, "no ResponseMetadata/RequestId" },
		{ P_KEY, "<AccessKeyId></AccessKeyId>", PG_EPROTO,
		  "no Credentials/AccessKeyId" },
		{ P_KEY, "<AccessKeyId>ASIA BAD</AccessKeyId>", PG_EPROTO,
		  "bad Credentials/AccessKeyId" },
		{ P_KEY, "<AccessKeyId>ASIAONE</AccessKeyId>"
			 "<AccessKeyId>ASIATWO</AccessKeyId>",
		  PG_EPROTO, "appears twice" },
		{ P_SECRET, "<SecretAccessKey>a<b>x</b></SecretAccessKey>",
		  PG_EPROTO, "inside a value" },
		{ P_SECRET, "<SecretAccessKey>a&#10;b</SecretAccessKey>",
		  PG_EPROTO, "unexpected characters" },
		{ P_EXP, "<Expiration>tomorrow</Expiration>", PG_EPROTO,
		  "bad Expiration" },
		{ P_EXP, "<Expiration>2027-02-30T00:00:00Z</Expiration>",
		  PG_EPROTO, "bad Expiration" },
		{ P_EXP, "<Expiration>2027-01-15T07:59:59Z</Expiration>",
		  PG_EPROTO, "already expired" },
		{ P_EXP, "<Expiration>2027-01-15T09:00:00+01:00</Expiration>",
		  PG_EPROTO, "already expired" },
		{ P_EXP, "<Expiration>\n 2027-01-15T08:30:00Z \n</Expiration>",
		  PG_OK, NULL },
		{ P_REQID, "<RequestId>r&amp;1</RequestId>", PG_OK, NULL },
	};
	pg_sts_result r;
	char err[256];
	size_t i;
	char *doc;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		doc = build_doc(vec[i].which, vec[i].repl);
		err[0] = '\0';
		pg_err rc = pg_sts_parse_assume(doc, strlen(doc), NOW, &r, err,
						sizeof(err));
		if (rc != vec[i].rc)
			fail_msg("generated %zu: rc %d want %d (%s)", i, rc,
				 vec[i].rc, err);
		if (rc == PG_OK) {
			assert_string_equal(r.creds.access_key_id,
					    "ASIAGENERATEDEXAMPLE");
			assert_string_equal(r.creds.secret_access_key,
					    "c2VjcmV0LWtleQ");
			assert_string_equal(r.creds.session_token,
					    "dG9rZW4tdmFsdWU=");
			assert_int_equal(r.creds.expiration, NOW + 1800);
		} else {
			assert_zero_result(&r);
			if (!strstr(err, vec[i].errsub))
				fail_msg("generated %zu: err \"%s\" lacks "
					 "\"%s\"", i, err, vec[i].errsub);
			/* Messages never carry the secrets. */
			assert_null(strstr(err, "c2VjcmV0"));
			assert_null(strstr(err, "dG9rZW4"));
		}
		pg_sts_result_wipe(&r);
		free(doc);
	}
}

static void
test_parse_assume_token_bounds(void **state)
{
	static const struct {
		size_t n;
		pg_err rc;
	} vec[] = {
		{ 1500, PG_OK },
		{ 8192, PG_OK },
		{ 8193, PG_EPROTO },
		{ 100000, PG_EPROTO },
	};
	pg_sts_result r;
	char err[256];
	size_t i;
	char *tok, *doc;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		tok = token_elem(vec[i].n);
		doc = build_doc(P_TOKEN, tok);
		pg_err rc = pg_sts_parse_assume(doc, strlen(doc), NOW, &r, err,
						sizeof(err));
		if (rc != vec[i].rc)
			fail_msg("token of %zu: rc %d (%s)", vec[i].n, rc, err);
		if (rc == PG_OK)
			assert_int_equal(strlen(r.creds.session_token),
					 vec[i].n);
		else
			assert_non_null(strstr(err, "too"));
		pg_sts_result_wipe(&r);
		free(doc);
		free(tok);
	}
	/* Nothing at all. */
	assert_int_equal(pg_sts_parse_assume("", 0, NOW, &r, err, sizeof(err)),
			 PG_EPROTO);
	assert_int_equal(pg_sts_parse_assume(NULL, 0, NOW, &r, err,
					     sizeof(err)), PG_EPROTO);
	pg_sts_result_wipe(&r);
}

/* ---- error answers -------------------------------------------------------- */

static void
test_parse_error(void **state)
{
	static const struct {
		const char *file;
		size_t msglen;
		pg_err rc;
		const char *code, *msg;
	} vec[] = {
		{ "error_access_denied.xml", 512, PG_OK, "AccessDenied",
		  "User: arn:aws:iam::123456789012:user/pmpgate-broker is not "
		  "authorized to perform: sts:AssumeRole on resource: "
		  "arn:aws:iam::123456789012:role/procurement-manager" },
		{ "error_access_denied.xml", 10, PG_OK, "AccessDenied",
		  "User: arn" },
		{ "error_throttling.xml", 512, PG_OK, "Throttling",
		  "Rate exceeded" },
		{ "error_control.xml", 512, PG_OK, "ValidationError",
		  "line one line two end !" },
		{ "error_no_code.xml", 512, PG_EPROTO, "", "" },
		{ "not_xml.txt", 512, PG_EPROTO, "", "" },
		{ "assume_ok.xml", 512, PG_EPROTO, "", "" },
		{ "billion_laughs.xml", 512, PG_EPROTO, "", "" },
	};
	char code[64], msg[512];
	size_t i, len;
	char *xml;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		xml = read_data(vec[i].file, &len);
		pg_err rc = pg_sts_parse_error(xml, len, code, sizeof(code),
					       msg, vec[i].msglen);
		if (rc != vec[i].rc)
			fail_msg("%s: rc %d", vec[i].file, rc);
		assert_string_equal(code, vec[i].code);
		assert_string_equal(msg, vec[i].msg);
		free(xml);
	}
}

/* ---- the call, without a network ------------------------------------------ */

static pg_config *
make_cfg(const char *endpoint)
{
	static pg_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.aws.sts_endpoint = (char *)endpoint;
	cfg.aws.region = "us-east-1";
	cfg.aws.credentials = PG_CREDS_ENV;
	cfg.aws.timeout_ms = 2000;
	return &cfg;
}

static void
test_assume_role_refusals(void **state)
{
	static const struct {
		const char *endpoint;
		const char *region;
		int64_t duration;
		int64_t deadline_ms;
		int no_base;
		pg_err rc;
		const char *errsub;
	} vec[] = {
		{ "https://127.0.0.1:1/", "us-east-1", 100, 5000, 0, PG_EINVAL,
		  "duration" },
		{ "https://127.0.0.1:1/", "us-east-1", 50000, 5000, 0,
		  PG_EINVAL, "duration" },
		{ "https://127.0.0.1:1/", NULL, 3600, 5000, 0, PG_ECONFIG,
		  "region" },
		{ "https://127.0.0.1:1/", "us:east", 3600, 5000, 0, PG_ECONFIG,
		  "region" },
		{ NULL, "us-east-1", 3600, 5000, 0, PG_ECONFIG,
		  "sts_endpoint" },
		{ "https://127.0.0.1:1/", "us-east-1", 3600, 5000, 1,
		  PG_ECONFIG, "base AWS credentials" },
		{ "https://127.0.0.1:1/", "us-east-1", 3600, 0, 0, PG_ETIMEOUT,
		  "deadline" },
		{ "https://127.0.0.1:1/", "us-east-1", 3600, 5000, 0,
		  PG_EUNAVAIL, "127.0.0.1:1" },
		{ "http://127.0.0.1:1/", "us-east-1", 3600, 5000, 0,
		  PG_EUNAVAIL, "127.0.0.1:1" },
	};
	pg_aws_creds base = { "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
			      NULL, 0 };
	pg_aws_creds none = { 0 };
	pg_sts_assume req = { ARN_PM, "alice", "CHG1", NULL, 0, 3600, NULL,
			      NULL };
	pg_sts_result r;
	pg_config *cfg;
	pg_http *h;
	char err[256];
	size_t i;

	(void)state;
	assert_int_equal(pg_http_global_init(), PG_OK);
	h = pg_http_new();
	assert_non_null(h);
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		cfg = make_cfg(vec[i].endpoint);
		cfg->aws.region = (char *)vec[i].region;
		req.duration = vec[i].duration;
		err[0] = '\0';
		pg_err rc = pg_sts_assume_role(h, cfg,
					       vec[i].no_base ? &none : &base,
					       &req,
					       pg_deadline_in(vec[i].deadline_ms),
					       &r, err, sizeof(err));
		if (rc != vec[i].rc || !strstr(err, vec[i].errsub))
			fail_msg("refusal %zu: rc %d err \"%s\"", i, rc, err);
		assert_zero_result(&r);
		assert_null(strstr(err, "wJalr"));
		pg_sts_result_wipe(&r);
	}
	pg_http_free(h);
	pg_http_global_cleanup();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_name),
		cmocka_unit_test(test_tag_value),
		cmocka_unit_test(test_assume_body),
		cmocka_unit_test(test_parse_assume_files),
		cmocka_unit_test(test_parse_assume_generated),
		cmocka_unit_test(test_parse_assume_token_bounds),
		cmocka_unit_test(test_parse_error),
		cmocka_unit_test(test_assume_role_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
