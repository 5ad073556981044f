/*
 * test_secret.c - secret files and secret memory (core/secret.c).
 *
 * Files are made in a private temp dir with exact modes; each case says
 * whether the read must succeed and with what value, or which message
 * the refusal must carry.  Refusals must never echo the secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
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

#include "../../core/secret.h"

static char tmpdir[64];
static unsigned file_seq;

static void write_file(char *path, size_t pathlen, const char *data,
		       size_t len, mode_t mode)
{
	int fd;

	snprintf(path, pathlen, "%s/s%u", tmpdir, file_seq++);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

/* Read PATH expecting a refusal that contains NEEDLE. */
static void expect_refused(const char *path, const char *needle)
{
	pg_secret s = { (char *)&s, 12345 };	/* must be reset */
	char err[512] = "";

	assert_int_equal(pg_secret_read_file(path, &s, err, sizeof(err)),
			 PG_ECONFIG);
	assert_null(s.buf);
	assert_int_equal(s.len, 0);
	if (strstr(err, needle) == NULL)
		fail_msg("expected '%s' in '%s'", needle, err);
	if (strstr(err, path) == NULL)
		fail_msg("message '%s' does not name the file", err);
	if (strstr(err, "SECRET") != NULL)
		fail_msg("message '%s' shows the secret", err);
}

struct content_case {
	const char *name;
	const char *data;
	size_t len;		/* 0: strlen(data) */
	const char *want;	/* NULL: refused */
	size_t want_len;	/* 0: strlen(want) */
	const char *needle;
};

static const struct content_case contents[] = {
	{ "plain", "SECRET-1", 0, "SECRET-1", 0, NULL },
	{ "trailing LF", "SECRET-2\n", 0, "SECRET-2", 0, NULL },
	{ "trailing CRLF", "SECRET-3\r\n", 0, "SECRET-3", 0, NULL },
	{ "one LF only", "SECRET\n\n", 0, "SECRET\n", 0, NULL },
	{ "CR alone stays", "SECRET\r", 0, "SECRET\r", 0, NULL },
	{ "blanks kept", " SECRET \n", 0, " SECRET ", 0, NULL },
	{ "inner LF kept", "user:SECRET\nmore\n", 0, "user:SECRET\nmore", 0,
	  NULL },
	{ "binary ok", "\x01\xff\x7fSECRET", 0, "\x01\xff\x7fSECRET", 0, NULL },
	{ "empty", "", 0, NULL, 0, "empty" },
	{ "only LF", "\n", 0, NULL, 0, "empty" },
	{ "only CRLF", "\r\n", 0, NULL, 0, "empty" },
	{ "NUL inside", "abc\0SECRET", 10, NULL, 0, "NUL byte" },
	{ "NUL at end", "SECRET\0\n", 8, NULL, 0, "NUL byte" },
	{ "NUL alone", "\0", 1, NULL, 0, "NUL byte" },
};

static void test_contents(void **state)
{
	size_t i;
	char path[PATH_MAX], err[512];

	(void)state;
	for (i = 0; i < sizeof(contents) / sizeof(contents[0]); i++) {
		const struct content_case *c = &contents[i];
		size_t len = c->len ? c->len : strlen(c->data);
		pg_secret s;
		pg_err rc;

		write_file(path, sizeof(path), c->data, len, 0600);
		if (c->want == NULL) {
			expect_refused(path, c->needle);
			continue;
		}
		rc = pg_secret_read_file(path, &s, err, sizeof(err));
		if (rc != PG_OK)
			fail_msg("%s: %s", c->name, err);
		{
			size_t wl = c->want_len ? c->want_len : strlen(c->want);

			if (s.len != wl || memcmp(s.buf, c->want, wl) != 0)
				fail_msg("%s: wrong secret (len %zu)", c->name,
					 s.len);
			assert_int_equal(s.buf[s.len], '\0');
		}
		pg_secret_wipe(&s);
		assert_null(s.buf);
		assert_int_equal(s.len, 0);
	}
}

static void test_sizes(void **state)
{
	char path[PATH_MAX], err[512];
	char *big = malloc(PG_SECRET_MAX + 2);
	pg_secret s;

	(void)state;
	assert_non_null(big);
	memset(big, 'k', PG_SECRET_MAX + 1);

	/* exactly PG_SECRET_MAX bytes: fine */
	write_file(path, sizeof(path), big, PG_SECRET_MAX, 0600);
	assert_int_equal(pg_secret_read_file(path, &s, err, sizeof(err)), PG_OK);
	assert_int_equal(s.len, PG_SECRET_MAX);
	pg_secret_wipe(&s);

	/* one more: refused, also when that byte is the newline */
	write_file(path, sizeof(path), big, PG_SECRET_MAX + 1, 0600);
	expect_refused(path, "larger than 65536 bytes");
	big[PG_SECRET_MAX] = '\n';
	write_file(path, sizeof(path), big, PG_SECRET_MAX + 1, 0600);
	expect_refused(path, "larger than");
	free(big);
}

static void test_modes(void **state)
{
	static const struct {
		mode_t mode;
		const char *needle;	/* NULL: accepted */
	} modes[] = {
		{ 0600, NULL },
		{ 0400, NULL },
		{ 0640, NULL },
		{ 0440, NULL },
		{ 0644, "must not be readable by others (mode 0644)" },
		{ 0604, "must not be readable by others (mode 0604)" },
		{ 0660, "must not be writable by group or others (mode 0660)" },
		{ 0602, "must not be writable by group or others (mode 0602)" },
		{ 0666, "must not be writable by group or others (mode 0666)" },
		{ 0620, "must not be writable by group or others (mode 0620)" },
	};
	char path[PATH_MAX], err[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		pg_secret s;

		write_file(path, sizeof(path), "SECRET\n", 7, modes[i].mode);
		if (modes[i].needle != NULL) {
			expect_refused(path, modes[i].needle);
			continue;
		}
		if (pg_secret_read_file(path, &s, err, sizeof(err)) != PG_OK)
			fail_msg("mode %04o: %s", (unsigned)modes[i].mode, err);
		assert_string_equal(s.buf, "SECRET");
		pg_secret_wipe(&s);
	}
}

static void test_not_plain_files(void **state)
{
	char path[PATH_MAX], link[PATH_MAX + 8];

	(void)state;
	/* a symbolic link to a good secret file is refused (O_NOFOLLOW) */
	write_file(path, sizeof(path), "SECRET", 6, 0600);
	snprintf(link, sizeof(link), "%s.link", path);
	assert_int_equal(symlink(path, link), 0);
	expect_refused(link, "symbolic link");

	/* a directory, a FIFO (must not hang), a missing file */
	expect_refused(tmpdir, "not a regular file");
	snprintf(link, sizeof(link), "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(link, 0600), 0);
	expect_refused(link, "not a regular file");
	snprintf(link, sizeof(link), "%s/missing", tmpdir);
	expect_refused(link, "cannot open");
}

static void test_owner(void **state)
{
	char path[PATH_MAX], err[512];
	pg_secret s;

	(void)state;
	write_file(path, sizeof(path), "SECRET", 6, 0600);
	if (geteuid() == 0) {
		/* root can make a file owned by someone else */
		assert_int_equal(chown(path, 65534, 65534), 0);
		expect_refused(path, "must be owned by root or uid 0 (owner is uid 65534)");
	} else {
		/* our own file is fine */
		assert_int_equal(pg_secret_read_file(path, &s, err, sizeof(err)),
				 PG_OK);
		pg_secret_wipe(&s);
	}
}

static void test_check_fd_perms(void **state)
{
	char path[PATH_MAX], err[512];
	int fd;

	(void)state;
	write_file(path, sizeof(path), "x", 1, 0644);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	/* world-readable is fine for a non-secret file only */
	assert_int_equal(pg_check_fd_perms(fd, "the-file", 0, err, sizeof(err)),
			 PG_OK);
	assert_int_equal(pg_check_fd_perms(fd, "the-file", 1, err, sizeof(err)),
			 PG_ECONFIG);
	assert_string_equal(err,
			    "the-file: must not be readable by others (mode 0644)");
	assert_int_equal(fchmod(fd, 0664), 0);
	assert_int_equal(pg_check_fd_perms(fd, "the-file", 0, err, sizeof(err)),
			 PG_ECONFIG);
	assert_string_equal(err,
			    "the-file: must not be writable by group or others (mode 0664)");
	/* setuid bits show in the mode */
	assert_int_equal(fchmod(fd, 04646), 0);
	assert_int_equal(pg_check_fd_perms(fd, "f", 0, err, sizeof(err)),
			 PG_ECONFIG);
	assert_string_equal(err,
			    "f: must not be writable by group or others (mode 4646)");
	close(fd);
	/* a closed descriptor */
	assert_int_equal(pg_check_fd_perms(fd, "f", 0, err, sizeof(err)),
			 PG_ECONFIG);
	assert_non_null(strstr(err, "cannot stat"));
}

static void test_memory(void **state)
{
	pg_secret s;
	char *str;

	(void)state;
	assert_int_equal(pg_secret_from(&s, "abc\0def", 7), PG_OK);
	assert_int_equal(s.len, 7);
	assert_memory_equal(s.buf, "abc\0def", 7);
	assert_int_equal(s.buf[7], '\0');
	pg_secret_wipe(&s);
	assert_null(s.buf);
	assert_int_equal(s.len, 0);
	pg_secret_wipe(&s);	/* twice is fine */
	pg_secret_wipe(NULL);

	assert_int_equal(pg_secret_from(&s, "", 0), PG_OK);
	assert_null(s.buf);
	assert_int_equal(s.len, 0);
	pg_secret_wipe(&s);

	str = strdup("token-value");
	assert_non_null(str);
	pg_free_secret_str(str);
	pg_free_secret_str(NULL);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pg-test-secret.XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_contents),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_modes),
		cmocka_unit_test(test_not_plain_files),
		cmocka_unit_test(test_owner),
		cmocka_unit_test(test_check_fd_perms),
		cmocka_unit_test(test_memory),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
