/* test_awscreds.c - base AWS credentials from a file, the environment and
 * the instance profile (IMDSv2: the answers' parsing, refusals, deadline). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "../../core/awscreds.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

#define GOOD "[default]\naws_access_key_id = A\naws_secret_access_key = " \
	SECRET "\n"
#define WITH_NUL "[default]\naws_access_key_id = A\0B\n" \
	"aws_secret_access_key = S\n"

static char tmpdir[64];

static int
setup(void **state)
{
	(void)state;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pg-awscreds-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	pg_aws_creds_cache_clear();
	curl_global_cleanup();
	return rmdir(tmpdir);
}

static void
write_file(const char *path, const char *data, size_t len, mode_t mode)
{
	FILE *f;

	unlink(path);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void
cfg_file(pg_config *cfg, const char *path, const char *profile)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->aws.credentials = PG_CREDS_FILE;
	cfg->aws.credentials_path = (char *)path;
	cfg->aws.profile = (char *)profile;
}

/* ---- files ---------------------------------------------------------------- */

static const struct {
	const char *name;
	const char *text;
	mode_t mode;
	const char *profile;	/* NULL = default */
	pg_err rc;
	const char *key, *secret, *token;	/* on success */
	const char *errsub;			/* on failure */
} file_vec[] = {
	{ "default", "[default]\naws_access_key_id = AKIDDEFAULT\n"
		     "aws_secret_access_key = " SECRET "\n",
	  0600, NULL, PG_OK, "AKIDDEFAULT", SECRET, NULL, NULL },
	{ "named profile among others",
	  "# shared file\n[default]\naws_access_key_id = AKIDOTHER\n"
	  "aws_secret_access_key = other\n\n[broker]\nregion = eu-west-1\n"
	  "aws_access_key_id=AKIDBROKER\naws_secret_access_key=" SECRET "\n"
	  "aws_session_token = FwoGZXIvYXdzEXAMPLE==\n[later]\n"
	  "aws_access_key_id = AKIDLATER\n",
	  0600, "broker", PG_OK, "AKIDBROKER", SECRET,
	  "FwoGZXIvYXdzEXAMPLE==", NULL },
	{ "blanks, comments, CRLF, group-readable",
	  "; comment\r\n  [ default ]  \r\n\t aws_access_key_id =  AKIDCRLF \r\n"
	  "# another\r\naws_secret_access_key\t=\t" SECRET "\r\n",
	  0640, NULL, PG_OK, "AKIDCRLF", SECRET, NULL, NULL },
	{ "no trailing newline",
	  "[default]\naws_access_key_id = AKIDNONL\naws_secret_access_key = "
	  SECRET, 0400, NULL, PG_OK, "AKIDNONL", SECRET, NULL, NULL },
	{ "missing profile", "[default]\naws_access_key_id = A\n"
			     "aws_secret_access_key = " SECRET "\n",
	  0600, "broker", PG_ECONFIG, NULL, NULL, NULL, "no profile [broker]" },
	{ "missing secret", "[default]\naws_access_key_id = A\n", 0600, NULL,
	  PG_ECONFIG, NULL, NULL, NULL, "no aws_secret_access_key" },
	{ "missing key id", "[default]\naws_secret_access_key = " SECRET "\n",
	  0600, NULL, PG_ECONFIG, NULL, NULL, NULL, "no aws_access_key_id" },
	{ "keys only in another profile",
	  "[other]\naws_access_key_id = A\naws_secret_access_key = " SECRET
	  "\n[default]\nregion = us-east-1\n",
	  0600, NULL, PG_ECONFIG, NULL, NULL, NULL, "no aws_access_key_id" },
	{ "key outside a section",
	  "aws_secret_access_key = " SECRET "\n[default]\n"
	  "aws_access_key_id = A\n",
	  0600, NULL, PG_ECONFIG, NULL, NULL, NULL, ":1: key outside a section" },
	{ "junk line", "[default]\naws_access_key_id = A\n" SECRET "\n",
	  0600, NULL, PG_ECONFIG, NULL, NULL, NULL, ":3: expected" },
	{ "bad section", "[default\naws_access_key_id = A\n", 0600, NULL,
	  PG_ECONFIG, NULL, NULL, NULL, ":1: bad section line" },
	{ "key twice", "[default]\naws_access_key_id = A\n"
		       "aws_access_key_id = B\naws_secret_access_key = " SECRET
		       "\n",
	  0600, NULL, PG_ECONFIG, NULL, NULL, NULL, ":3: key given twice" },
	{ "profile twice", "[default]\naws_access_key_id = A\n[default]\n"
			   "aws_secret_access_key = " SECRET "\n",
	  0600, NULL, PG_ECONFIG, NULL, NULL, NULL, "given twice" },
	{ "empty value", "[default]\naws_access_key_id = A\n"
			 "aws_secret_access_key =\n",
	  0600, NULL, PG_ECONFIG, NULL, NULL, NULL, ":3: empty value" },
	{ "world-readable", "[default]\naws_access_key_id = A\n"
			    "aws_secret_access_key = " SECRET "\n",
	  0644, NULL, PG_ECONFIG, NULL, NULL, NULL, "readable by others" },
	{ "group-writable", "[default]\naws_access_key_id = A\n"
			    "aws_secret_access_key = " SECRET "\n",
	  0620, NULL, PG_ECONFIG, NULL, NULL, NULL, "writable" },
	{ "empty file", "", 0600, NULL, PG_ECONFIG, NULL, NULL, NULL,
	  "no profile [default]" },
};

static void
test_file_vectors(void **state)
{
	char path[128], err[512];
	pg_aws_creds c;
	pg_config cfg;
	size_t i;

	(void)state;
	snprintf(path, sizeof(path), "%s/credentials", tmpdir);
	for (i = 0; i < sizeof(file_vec) / sizeof(file_vec[0]); i++) {
		write_file(path, file_vec[i].text, strlen(file_vec[i].text),
			   file_vec[i].mode);
		cfg_file(&cfg, path, file_vec[i].profile);
		err[0] = '\0';
		memset(&c, 0x5A, sizeof(c));
		pg_err rc = pg_aws_creds_load(&cfg, &c, err, sizeof(err));
		if (rc != file_vec[i].rc)
			fail_msg("%s: rc %d (%s)", file_vec[i].name, rc, err);
		if (rc == PG_OK) {
			assert_string_equal(c.access_key_id, file_vec[i].key);
			assert_string_equal(c.secret_access_key,
					    file_vec[i].secret);
			if (file_vec[i].token)
				assert_string_equal(c.session_token,
						    file_vec[i].token);
			else
				assert_null(c.session_token);
			assert_int_equal(c.expiration, 0);
		} else {
			assert_null(c.access_key_id);
			assert_null(c.secret_access_key);
			assert_null(c.session_token);
			if (!strstr(err, file_vec[i].errsub))
				fail_msg("%s: err \"%s\" lacks \"%s\"",
					 file_vec[i].name, err,
					 file_vec[i].errsub);
			assert_non_null(strstr(err, path));
			assert_null(strstr(err, SECRET));
		}
		pg_aws_creds_wipe(&c);
		assert_null(c.secret_access_key);
	}
	unlink(path);
}

static void
test_file_refusals(void **state)
{
	char path[128], link[128], big[128], err[512];
	pg_aws_creds c;
	pg_config cfg;
	char *data;
	size_t n = 70000;

	(void)state;
	snprintf(path, sizeof(path), "%s/real", tmpdir);
	snprintf(link, sizeof(link), "%s/link", tmpdir);
	snprintf(big, sizeof(big), "%s/big", tmpdir);
	write_file(path, GOOD, strlen(GOOD), 0600);

	/* A symbolic link is refused, even to a good file. */
	assert_int_equal(symlink(path, link), 0);
	cfg_file(&cfg, link, NULL);
	assert_int_equal(pg_aws_creds_load(&cfg, &c, err, sizeof(err)),
			 PG_ECONFIG);
	assert_non_null(strstr(err, "symbolic link"));

	/* A directory, a missing file. */
	cfg_file(&cfg, tmpdir, NULL);
	assert_int_equal(pg_aws_creds_load(&cfg, &c, err, sizeof(err)),
			 PG_ECONFIG);
	cfg_file(&cfg, "/nonexistent/pmpgate/credentials", NULL);
	assert_int_equal(pg_aws_creds_load(&cfg, &c, err, sizeof(err)),
			 PG_ECONFIG);
	assert_non_null(strstr(err, "/nonexistent/pmpgate/credentials"));
	cfg_file(&cfg, NULL, NULL);
	assert_int_equal(pg_aws_creds_load(&cfg, &c, err, sizeof(err)),
			 PG_ECONFIG);

	/* Too large. */
	data = malloc(n);
	assert_non_null(data);
	memset(data, '#', n);
	write_file(big, data, n, 0600);
	cfg_file(&cfg, big, NULL);
	assert_int_equal(pg_aws_creds_load(&cfg, &c, err, sizeof(err)),
			 PG_ECONFIG);
	assert_non_null(strstr(err, "larger"));

	/* A NUL byte. */
	write_file(big, WITH_NUL, sizeof(WITH_NUL) - 1, 0600);
	assert_int_equal(pg_aws_creds_load(&cfg, &c, err, sizeof(err)),
			 PG_ECONFIG);
	assert_non_null(strstr(err, "NUL"));
	free(data);


	unlink(link);
	unlink(path);
	unlink(big);
}

/* ---- environment ---------------------------------------------------------- */

static void
test_env(void **state)
{
	static const struct {
		const char *key, *secret, *token;
		pg_err rc;
		const char *errsub;
	} vec[] = {
		{ "AKIDENV", SECRET, NULL, PG_OK, NULL },
		{ "AKIDENV", SECRET, "IQoJtoken", PG_OK, NULL },
		{ "AKIDENV", SECRET, "", PG_OK, NULL },
		{ NULL, SECRET, NULL, PG_ECONFIG, "AWS_ACCESS_KEY_ID" },
		{ "", SECRET, NULL, PG_ECONFIG, "AWS_ACCESS_KEY_ID" },
		{ "AKIDENV", NULL, NULL, PG_ECONFIG, "AWS_SECRET_ACCESS_KEY" },
	};
	pg_aws_creds c;
	pg_config cfg;
	char err[256];
	size_t i;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.aws.credentials = PG_CREDS_ENV;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		unsetenv("AWS_ACCESS_KEY_ID");
		unsetenv("AWS_SECRET_ACCESS_KEY");
		unsetenv("AWS_SESSION_TOKEN");
		if (vec[i].key)
			setenv("AWS_ACCESS_KEY_ID", vec[i].key, 1);
		if (vec[i].secret)
			setenv("AWS_SECRET_ACCESS_KEY", vec[i].secret, 1);
		if (vec[i].token)
			setenv("AWS_SESSION_TOKEN", vec[i].token, 1);
		err[0] = '\0';
		pg_err rc = pg_aws_creds_load(&cfg, &c, err, sizeof(err));
		if (rc != vec[i].rc)
			fail_msg("env %zu: rc %d (%s)", i, rc, err);
		if (rc == PG_OK) {
			assert_string_equal(c.access_key_id, vec[i].key);
			assert_string_equal(c.secret_access_key, vec[i].secret);
			if (vec[i].token && *vec[i].token)
				assert_string_equal(c.session_token,
						    vec[i].token);
			else
				assert_null(c.session_token);
		} else {
			assert_null(c.access_key_id);
			assert_null(c.secret_access_key);
			assert_non_null(strstr(err, vec[i].errsub));
			assert_null(strstr(err, SECRET));
		}
		pg_aws_creds_wipe(&c);
	}
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
}

/* ---- instance profile: the role listing ------------------------------------ */

#define ROLE64 "r123456789012345678901234567890123456789012345678901234567890123"

static void
test_imds_role(void **state)
{
	static const struct {
		const char *name;
		const char *body;
		size_t len;		/* 0: strlen(body) */
		pg_err rc;
		const char *role;	/* on success */
		const char *errsub;	/* on failure */
	} vec[] = {
		{ "plain", "pmpgate-broker", 0, PG_OK, "pmpgate-broker", NULL },
		{ "newline", "pmpgate-broker\n", 0, PG_OK, "pmpgate-broker",
		  NULL },
		{ "CRLF", "pmpgate-broker\r\n", 0, PG_OK, "pmpgate-broker",
		  NULL },
		{ "first line only", "first\nsecond\n", 0, PG_OK, "first", NULL },
		{ "every IAM character", "Ab9+=,.@_-", 0, PG_OK, "Ab9+=,.@_-",
		  NULL },
		{ "64 characters", ROLE64, 0, PG_OK, ROLE64, NULL },
		{ "empty", "", 0, PG_EPROTO, NULL, "names no role" },
		{ "empty first line", "\nrole\n", 0, PG_EPROTO, NULL,
		  "names no role" },
		{ "65 characters", ROLE64 "x", 0, PG_EPROTO, NULL,
		  "longer than an IAM role name" },
		{ "slash", "a/b", 0, PG_EPROTO, NULL, "not an IAM role name" },
		{ "dot-dot path", "../../latest/api/token", 0, PG_EPROTO, NULL,
		  "not an IAM role name" },
		{ "blank", "a b", 0, PG_EPROTO, NULL, "not an IAM role name" },
		{ "percent", "a%2fb", 0, PG_EPROTO, NULL, "not an IAM role name" },
		{ "query", "a?x=1", 0, PG_EPROTO, NULL, "not an IAM role name" },
		{ "control", "a\x01", 0, PG_EPROTO, NULL, "not an IAM role name" },
		{ "lone CR inside", "a\rb", 0, PG_EPROTO, NULL,
		  "not an IAM role name" },
		{ "UTF-8", "r\xc3\xb4le", 0, PG_EPROTO, NULL,
		  "not an IAM role name" },
		{ "NUL", "ab\0cd", 5, PG_EPROTO, NULL, "not an IAM role name" },
	};
	char role[PG_IMDS_ROLE_MAX + 1], err[256];
	char small[8];
	char *big;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		size_t len = vec[i].len ? vec[i].len : strlen(vec[i].body);
		pg_err rc;

		err[0] = '\0';
		memset(role, 'Z', sizeof(role));
		rc = pg_imds_parse_role(vec[i].body, len, role, sizeof(role),
					err, sizeof(err));
		if (rc != vec[i].rc)
			fail_msg("%s: rc %d (%s)", vec[i].name, rc, err);
		if (rc == PG_OK) {
			assert_string_equal(role, vec[i].role);
		} else {
			assert_string_equal(role, "");
			if (!strstr(err, vec[i].errsub))
				fail_msg("%s: err \"%s\" lacks \"%s\"",
					 vec[i].name, err, vec[i].errsub);
		}
	}

	/* An oversize listing, even with a good first line. */
	big = malloc(PG_IMDS_LIST_MAX + 2);
	assert_non_null(big);
	memset(big, 'a', PG_IMDS_LIST_MAX + 1);
	memcpy(big, "role\n", 5);
	assert_int_equal(pg_imds_parse_role(big, PG_IMDS_LIST_MAX + 1, role,
					    sizeof(role), err, sizeof(err)),
			 PG_EPROTO);
	assert_non_null(strstr(err, "larger than"));
	assert_int_equal(pg_imds_parse_role(big, PG_IMDS_LIST_MAX, role,
					    sizeof(role), err, sizeof(err)),
			 PG_OK);
	assert_string_equal(role, "role");
	free(big);

	/* A buffer too small for any role name is the caller's bug. */
	assert_int_equal(pg_imds_parse_role("r", 1, small, sizeof(small), err,
					    sizeof(err)), PG_EINTERNAL);
}

/* ---- instance profile: the credentials answer ------------------------------ */

/* 2023-11-14T22:13:20Z */
#define NOW 1700000000
#define KID "ASIAEXAMPLE7KEYID000"
#define SKEY "iEV9yci/tR2WNHLTEI5/eR63BT+71zCzKC+JMMGR"
#define STOK "IQoJb3JpZ2luX2VjEPr//////////wEaCXVzLXdlc3QtMiJIMEYCIQCOCq=="
#define LATER "2023-11-15T04:25:48Z"
#define LATER_EPOCH 1700022348

#define CREDS(code, kid, skey, tok, exp)				\
	"{\n  \"Code\" : " code ",\n"					\
	"  \"LastUpdated\" : \"2023-11-14T22:00:00Z\",\n"		\
	"  \"Type\" : \"AWS-HMAC\",\n"					\
	"  \"AccessKeyId\" : " kid ",\n"				\
	"  \"SecretAccessKey\" : " skey ",\n"				\
	"  \"Token\" : " tok ",\n"					\
	"  \"Expiration\" : " exp "\n}"
#define Q(x) "\"" x "\""
#define GOODJSON CREDS(Q("Success"), Q(KID), Q(SKEY), Q(STOK), Q(LATER))

static const struct {
	const char *name;
	const char *body;
	size_t len;		/* 0: strlen(body) */
	pg_err rc;
	int64_t expiration;	/* on success */
	const char *errsub;	/* on failure */
} creds_vec[] = {
	{ "AWS's answer", GOODJSON, 0, PG_OK, LATER_EPOCH, NULL },
	{ "trailing newline", GOODJSON "\n", 0, PG_OK, LATER_EPOCH, NULL },
	{ "milliseconds and an offset",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q(STOK),
		Q("2023-11-15T05:25:48.250+01:00")), 0, PG_OK, LATER_EPOCH,
	  NULL },
	{ "members in another order, no extras",
	  "{\"Expiration\":\"" LATER "\",\"Token\":\"" STOK "\","
	  "\"SecretAccessKey\":\"" SKEY "\",\"AccessKeyId\":\"" KID "\","
	  "\"Code\":\"Success\"}", 0, PG_OK, LATER_EPOCH, NULL },
	{ "Code Failure",
	  "{\"Code\":\"Failure\",\"Message\":\"Instance profile not ready\","
	  "\"LastUpdated\":\"2023-11-14T22:00:00Z\"}", 0, PG_EPROTO, 0,
	  "Code \"Failure\", not \"Success\": Instance profile not ready" },
	{ "Code Failure with keys",
	  CREDS(Q("Failure"), Q(KID), Q(SKEY), Q(STOK), Q(LATER)), 0,
	  PG_EPROTO, 0, "Code \"Failure\"" },
	{ "Code in another case",
	  CREDS(Q("success"), Q(KID), Q(SKEY), Q(STOK), Q(LATER)), 0,
	  PG_EPROTO, 0, "Code \"success\"" },
	{ "Code with control characters",
	  CREDS(Q("Bad\\nLine\\u001b[31m"), Q(KID), Q(SKEY), Q(STOK),
		Q(LATER)), 0, PG_EPROTO, 0, "Code \"Bad?Line?[31m\"" },
	{ "Code missing",
	  "{\"AccessKeyId\":\"" KID "\",\"SecretAccessKey\":\"" SKEY "\","
	  "\"Token\":\"" STOK "\",\"Expiration\":\"" LATER "\"}", 0,
	  PG_EPROTO, 0, "has no Code" },
	{ "Code a boolean",
	  CREDS("true", Q(KID), Q(SKEY), Q(STOK), Q(LATER)), 0, PG_EPROTO, 0,
	  "Code is not a string" },
	{ "Token missing",
	  "{\"Code\":\"Success\",\"AccessKeyId\":\"" KID "\","
	  "\"SecretAccessKey\":\"" SKEY "\",\"Expiration\":\"" LATER "\"}", 0,
	  PG_EPROTO, 0, "has no Token" },
	{ "AccessKeyId missing",
	  "{\"Code\":\"Success\",\"Token\":\"" STOK "\","
	  "\"SecretAccessKey\":\"" SKEY "\",\"Expiration\":\"" LATER "\"}", 0,
	  PG_EPROTO, 0, "has no AccessKeyId" },
	{ "SecretAccessKey missing",
	  "{\"Code\":\"Success\",\"Token\":\"" STOK "\","
	  "\"AccessKeyId\":\"" KID "\",\"Expiration\":\"" LATER "\"}", 0,
	  PG_EPROTO, 0, "has no SecretAccessKey" },
	{ "Expiration missing",
	  "{\"Code\":\"Success\",\"Token\":\"" STOK "\","
	  "\"AccessKeyId\":\"" KID "\",\"SecretAccessKey\":\"" SKEY "\"}", 0,
	  PG_EPROTO, 0, "has no Expiration" },
	{ "Token a number", CREDS(Q("Success"), Q(KID), Q(SKEY), "12345",
				  Q(LATER)), 0, PG_EPROTO, 0,
	  "Token is not a string" },
	{ "Token null", CREDS(Q("Success"), Q(KID), Q(SKEY), "null",
			      Q(LATER)), 0, PG_EPROTO, 0,
	  "Token is not a string" },
	{ "Token empty", CREDS(Q("Success"), Q(KID), Q(SKEY), Q(""),
			       Q(LATER)), 0, PG_EPROTO, 0, "Token is empty" },
	{ "Token with a newline (header injection)",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q("IQoJ\\r\\nX-Evil: 1"),
		Q(LATER)), 0, PG_EPROTO, 0, "Token is not a session token" },
	{ "Token with a blank",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q("IQoJ abc"), Q(LATER)), 0,
	  PG_EPROTO, 0, "Token is not a session token" },
	{ "Token not ASCII",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q("IQoJ\\u00e9"), Q(LATER)), 0,
	  PG_EPROTO, 0, "Token is not a session token" },
	{ "Token with an escaped NUL",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q("IQoJ\\u0000x"), Q(LATER)), 0,
	  PG_EPROTO, 0, "not one JSON object" },
	{ "AccessKeyId an object",
	  CREDS(Q("Success"), "{}", Q(SKEY), Q(STOK), Q(LATER)), 0, PG_EPROTO,
	  0, "AccessKeyId is not a string" },
	{ "AccessKeyId too short",
	  CREDS(Q("Success"), Q("ASIA123"), Q(SKEY), Q(STOK), Q(LATER)), 0,
	  PG_EPROTO, 0, "AccessKeyId is not an access key id" },
	{ "AccessKeyId with a slash",
	  CREDS(Q("Success"), Q("ASIAEXAMPLE/KEYID000"), Q(SKEY), Q(STOK),
		Q(LATER)), 0, PG_EPROTO, 0,
	  "AccessKeyId is not an access key id" },
	{ "SecretAccessKey a number",
	  CREDS(Q("Success"), Q(KID), "7", Q(STOK), Q(LATER)), 0, PG_EPROTO, 0,
	  "SecretAccessKey is not a string" },
	{ "SecretAccessKey with a tab",
	  CREDS(Q("Success"), Q(KID), Q("abc\\tdef"), Q(STOK), Q(LATER)), 0,
	  PG_EPROTO, 0, "SecretAccessKey is not a secret key" },
	{ "Expiration not a time",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q(STOK), Q("tomorrow")), 0,
	  PG_EPROTO, 0, "Expiration is not an RFC 3339 time" },
	{ "Expiration without a zone",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q(STOK),
		Q("2023-11-15T04:25:48")), 0, PG_EPROTO, 0,
	  "Expiration is not an RFC 3339 time" },
	{ "Expiration a number",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q(STOK), "1700022348"), 0,
	  PG_EPROTO, 0, "Expiration is not a string" },
	{ "already expired",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q(STOK),
		Q("2023-11-14T21:13:20Z")), 0, PG_EPROTO, 0,
	  "expired at 2023-11-14T21:13:20Z" },
	{ "expires now",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q(STOK),
		Q("2023-11-14T22:13:20Z")), 0, PG_EPROTO, 0, "expired at" },
	{ "expires within a minute",
	  CREDS(Q("Success"), Q(KID), Q(SKEY), Q(STOK),
		Q("2023-11-14T22:14:10Z")), 0, PG_EPROTO, 0,
	  "expire at 2023-11-14T22:14:10Z, less than 60 s" },
	{ "trailing garbage", GOODJSON " x", 0, PG_EPROTO, 0,
	  "not one JSON object" },
	{ "two objects", GOODJSON GOODJSON, 0, PG_EPROTO, 0,
	  "not one JSON object" },
	{ "duplicate key",
	  "{\"Code\":\"Success\",\"AccessKeyId\":\"" KID "\","
	  "\"AccessKeyId\":\"ASIAOTHER0000000000\","
	  "\"SecretAccessKey\":\"" SKEY "\",\"Token\":\"" STOK "\","
	  "\"Expiration\":\"" LATER "\"}", 0, PG_EPROTO, 0,
	  "not one JSON object" },
	{ "an array", "[" GOODJSON "]", 0, PG_EPROTO, 0,
	  "not a JSON object" },
	{ "a string", "\"Success\"", 0, PG_EPROTO, 0, "not one JSON object" },
	{ "empty", "", 0, PG_EPROTO, 0, "not one JSON object" },
	{ "HTML", "<html><body>Unauthorized</body></html>", 0, PG_EPROTO, 0,
	  "not one JSON object" },
	{ "truncated", "{\"Code\":\"Success\",\"Token\":\"IQo", 0, PG_EPROTO,
	  0, "not one JSON object" },
	{ "raw NUL inside", "{\"Code\":\"Success\"\0}", 19, PG_EPROTO, 0,
	  "not one JSON object" },
};

static void
test_imds_creds(void **state)
{
	pg_aws_creds c;
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(creds_vec) / sizeof(creds_vec[0]); i++) {
		size_t len = creds_vec[i].len ? creds_vec[i].len :
			     strlen(creds_vec[i].body);
		pg_err rc;

		err[0] = '\0';
		memset(&c, 0x5A, sizeof(c));
		rc = pg_imds_parse_creds(creds_vec[i].body, len, NOW, &c, err,
					 sizeof(err));
		if (rc != creds_vec[i].rc)
			fail_msg("%s: rc %d (%s)", creds_vec[i].name, rc, err);
		if (rc == PG_OK) {
			assert_string_equal(c.access_key_id, KID);
			assert_string_equal(c.secret_access_key, SKEY);
			assert_string_equal(c.session_token, STOK);
			assert_int_equal(c.expiration,
					 creds_vec[i].expiration);
		} else {
			assert_null(c.access_key_id);
			assert_null(c.secret_access_key);
			assert_null(c.session_token);
			assert_int_equal(c.expiration, 0);
			if (!strstr(err, creds_vec[i].errsub))
				fail_msg("%s: err \"%s\" lacks \"%s\"",
					 creds_vec[i].name, err,
					 creds_vec[i].errsub);
			/* No secret, not even a fragment of one. */
			assert_null(strstr(err, "iEV9yci"));
			assert_null(strstr(err, "IQoJ"));
		}
		pg_aws_creds_wipe(&c);
	}
}

/* An answer over the bound is refused before it is parsed, even when it
 * is otherwise good; one at the bound is read. */
static void
test_imds_creds_huge(void **state)
{
	size_t n = PG_IMDS_CREDS_MAX + 1, good = strlen(GOODJSON);
	char *body = malloc(n + 1);
	pg_aws_creds c;
	char err[256];

	(void)state;
	assert_non_null(body);
	memcpy(body, GOODJSON, good);
	memset(body + good, ' ', n - good);
	body[n] = '\0';
	assert_int_equal(pg_imds_parse_creds(body, n, NOW, &c, err,
					     sizeof(err)), PG_EPROTO);
	assert_non_null(strstr(err, "larger than"));
	assert_null(c.access_key_id);
	assert_int_equal(pg_imds_parse_creds(body, n - 1, NOW, &c, err,
					     sizeof(err)), PG_OK);
	assert_string_equal(c.session_token, STOK);
	pg_aws_creds_wipe(&c);
	free(body);
}

/* ---- instance profile: unreachable or silent endpoints --------------------- */

static void
cfg_imds(pg_config *cfg, char *endpoint)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->aws.credentials = PG_CREDS_INSTANCE_PROFILE;
	cfg->aws.metadata_endpoint = endpoint;
}

/* A loopback port nothing listens on: bound, then closed. */
static int
closed_port(void)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static void
test_imds_unreachable(void **state)
{
	char endpoint[64], err[512];
	pg_aws_creds c;
	pg_config cfg;

	(void)state;
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d",
		 closed_port());
	cfg_imds(&cfg, endpoint);
	memset(&c, 0x5A, sizeof(c));
	assert_int_equal(pg_aws_creds_load(&cfg, &c, err, sizeof(err)),
			 PG_EUNAVAIL);
	assert_null(c.access_key_id);
	assert_null(c.session_token);
	/* The message names the endpoint and the step. */
	assert_non_null(strstr(err, endpoint));
	assert_non_null(strstr(err, "token (PUT /latest/api/token)"));

	/* A deadline already passed: no request at all. */
	assert_int_equal(pg_aws_creds_load_by(&cfg, pg_deadline_in(0), &c,
					      err, sizeof(err)), PG_ETIMEOUT);
	assert_null(c.access_key_id);
}

/* A server that accepts and never answers: the caller's deadline bounds
 * the wait, and the default bound holds without one. */
static void
test_imds_silent(void **state)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	char endpoint[64], err[512];
	pg_aws_creds c;
	pg_config cfg;
	int64_t t0, took;
	int fd;
	pg_err rc;

	(void)state;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	assert_int_equal(listen(fd, 8), 0);
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d",
		 ntohs(a.sin_port));
	cfg_imds(&cfg, endpoint);

	t0 = pg_mono_ms();
	rc = pg_aws_creds_load_by(&cfg, pg_deadline_in(300), &c, err,
				  sizeof(err));
	took = pg_mono_ms() - t0;
	assert_int_equal(rc, PG_EUNAVAIL);
	assert_null(c.access_key_id);
	assert_non_null(strstr(err, "token (PUT /latest/api/token)"));
	if (took < 250 || took > 1500)
		fail_msg("deadline 300 ms: took %lld ms", (long long)took);

	/* Without a caller's deadline: PG_IMDS_TIMEOUT_MS. */
	t0 = pg_mono_ms();
	rc = pg_aws_creds_load(&cfg, &c, err, sizeof(err));
	took = pg_mono_ms() - t0;
	assert_int_equal(rc, PG_EUNAVAIL);
	if (took < PG_IMDS_TIMEOUT_MS - 100 || took > PG_IMDS_TIMEOUT_MS + 1500)
		fail_msg("default bound: took %lld ms", (long long)took);
	close(fd);
}

static void
test_wipe_zeroed(void **state)
{
	pg_aws_creds c;

	(void)state;
	memset(&c, 0, sizeof(c));
	pg_aws_creds_wipe(&c);
	pg_aws_creds_wipe(&c);
	pg_aws_creds_wipe(NULL);
	assert_null(c.access_key_id);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_vectors),
		cmocka_unit_test(test_file_refusals),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_imds_role),
		cmocka_unit_test(test_imds_creds),
		cmocka_unit_test(test_imds_creds_huge),
		cmocka_unit_test(test_imds_unreachable),
		cmocka_unit_test(test_imds_silent),
		cmocka_unit_test(test_wipe_zeroed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
