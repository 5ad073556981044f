/* test_awscreds.c - base AWS credentials from a file and the environment. */
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
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pg-awscreds-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
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

	/* Instance profile: not supported yet. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.aws.credentials = PG_CREDS_INSTANCE_PROFILE;
	assert_int_equal(pg_aws_creds_load(&cfg, &c, err, sizeof(err)),
			 PG_ECONFIG);
	assert_non_null(strstr(err, "not supported"));

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
		cmocka_unit_test(test_wipe_zeroed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
