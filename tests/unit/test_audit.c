/*
 * test_audit.c - core/audit.c, the writer: opening (keys, paths, modes),
 * the chain across restarts and rotation, torn tails and their
 * "recovered" records, several handles and threads on one file, and
 * failures that must refuse.  Every file written is checked with the
 * verifier of core/auditchain.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../core/audit.h"
#include "../../core/auditchain.h"
#include "../../core/config.h"

/* Ed25519 key whose 32-byte seed is 01 02 .. 20 (hex). */
static const char VEC_PRIV[] =
	"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAECAwQFBgcICQo"
	"LDA0ODxAREhMUFRYXGBkaGxwdHh8g\n-----END PRIVATE KEY-----\n";
static const char VEC_PUB[] =
	"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAebVWLo/mVPlAeLES6KmL"
	"p5AfhTrmlb7X4OORC60ElmQ=\n-----END PUBLIC KEY-----\n";
static const char EC_PRIV[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgrRnDS8ut97n9xw7i\n"
	"WyMAuqh2gSeM5V2DdjCICgBZcpmhRANCAAQiruoZ/XrJ8ykSjUiON2FYJGfdDQ17\n"
	"H2ylj48G6VTh9lJZYkvh2x2/5T6qCjIYrHfvR1Aq41Dja3i7fRVz6SXi\n"
	"-----END PRIVATE KEY-----\n";

struct fx {
	char dir[64];
	char log[128];
	char key[128];
	pg_config cfg;
};

static void
write_file(const char *path, const char *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void
append_raw(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_APPEND);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0;

	assert_non_null(f);
	*len = 0;
	for (;;) {
		size_t n;

		buf = realloc(buf, cap + 4097);
		n = fread(buf + cap, 1, 4096, f);
		*len += n;
		cap += n;
		if (n < 4096)
			break;
	}
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static off_t
size_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* Verify FILES (NULL-terminated) with the vector key. */
static void
verify(const char *const *files, pg_av_result *res)
{
	pg_auditkey *pub = NULL;
	pg_auditverify *v = NULL;
	const pg_auditkey *keys[1];
	char err[256];

	assert_int_equal(pg_auditkey_load_public(VEC_PUB, strlen(VEC_PUB), &pub,
						 err, sizeof(err)), PG_OK);
	keys[0] = pub;
	assert_int_equal(pg_auditverify_new(keys, 1, &v), PG_OK);
	for (; *files != NULL; files++) {
		size_t len, i, start = 0;
		char *buf = slurp(*files, &len);

		assert_int_equal(pg_auditverify_file(v, *files), PG_OK);
		for (i = 0; i <= len; i++) {
			if (i < len && buf[i] != '\n')
				continue;
			if (i == len && start == len)
				break;
			assert_int_equal(pg_auditverify_line(v, buf + start,
							     i - start, i < len),
					 PG_OK);
			start = i + 1;
		}
		free(buf);
	}
	assert_int_equal(pg_auditverify_finish(v, res), PG_OK);
	print_message("verdict: %s line %llu: %s (%llu records)\n",
		      pg_av_class_name(res->cls), res->line, res->detail,
		      res->records);
	res->file = NULL;
	pg_auditverify_free(v);
	pg_auditkey_free(pub);
}

static void
verify_one(const char *path, pg_av_result *res)
{
	const char *files[] = { path, NULL };

	verify(files, res);
}

/* The last line of PATH, parsed. */
static void
last_record(const char *path, pg_audit_parsed *p)
{
	size_t len;
	char *buf = slurp(path, &len), *start, err[256];

	assert_true(len > 0 && buf[len - 1] == '\n');
	buf[len - 1] = '\0';
	start = strrchr(buf, '\n');
	start = start ? start + 1 : buf;
	assert_int_equal(pg_auditchain_parse(start, strlen(start), p, err,
					     sizeof(err)), PG_OK);
	free(buf);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/pg-audit-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->log, sizeof(f->log), "%s/audit.jsonl", f->dir);
	snprintf(f->key, sizeof(f->key), "%s/signing.pem", f->dir);
	write_file(f->key, VEC_PRIV, strlen(VEC_PRIV), 0600);
	f->cfg.audit.path = f->log;
	f->cfg.audit.signing_key = f->key;
	f->cfg.audit.syslog = 0;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static pg_audit *
open_ok(struct fx *f)
{
	pg_audit *a = NULL;
	char err[512] = "";

	if (pg_audit_open(&f->cfg, &a, err, sizeof(err)) != PG_OK)
		fail_msg("pg_audit_open: %s", err);
	return a;
}

static const char *const rules2[] = { "R4", "R6" };
static const char *const appr[] = { "erin", "frank" };

static pg_audit_receipt
append_ok(pg_audit *a, const char *event)
{
	pg_audit_rec r = { .event = event, .user = "alice", .uid = 20001,
			   .role = "pmp-administrator", .ticket = "CHG0000001",
			   .approvers = appr, .n_approvers = 2,
			   .duration = 3600, .service = "sshd", .pid = 99 };
	pg_audit_receipt rc;
	char err[512] = "";

	if (strcmp(event, "deny") == 0) {
		r.rules = rules2;
		r.n_rules = 2;
		r.reason = "refused";
	}
	if (strcmp(event, "issued") == 0) {
		r.expiration = 1772372096;
		r.access_key_id = "ASIAEXAMPLE0000001";
	}
	if (pg_audit_append_receipt(a, &r, &rc, err, sizeof(err)) != PG_OK)
		fail_msg("pg_audit_append: %s", err);
	return rc;
}

/* ---- opening -------------------------------------------------------------- */

static void
expect_open_fails(struct fx *f, const char *needle)
{
	pg_audit *a = (pg_audit *)1;
	char err[512] = "";

	assert_int_equal(pg_audit_open(&f->cfg, &a, err, sizeof(err)),
			 PG_EAUDIT);
	print_message("refused: %s\n", err);
	assert_null(a);
	assert_non_null(strstr(err, needle));
	assert_null(strstr(err, "MC4CAQ"));	/* never the key */
}

static void
test_open_errors(void **state)
{
	struct fx *f = *state;
	char path[192];

	f->cfg.audit.signing_key = NULL;
	expect_open_fails(f, "signing_key is not set");
	f->cfg.audit.signing_key = f->key;

	f->cfg.audit.path = NULL;
	expect_open_fails(f, "path is not set");
	f->cfg.audit.path = f->log;

	snprintf(path, sizeof(path), "%s/missing.pem", f->dir);
	f->cfg.audit.signing_key = path;
	expect_open_fails(f, "missing.pem");
	f->cfg.audit.signing_key = f->key;

	chmod(f->key, 0644);
	expect_open_fails(f, "readable by others");
	chmod(f->key, 0600);

	snprintf(path, sizeof(path), "%s/ec.pem", f->dir);
	write_file(path, EC_PRIV, strlen(EC_PRIV), 0600);
	f->cfg.audit.signing_key = path;
	expect_open_fails(f, "not an Ed25519 key");
	f->cfg.audit.signing_key = f->key;

	snprintf(path, sizeof(path), "%s/no/such/dir/audit.jsonl", f->dir);
	f->cfg.audit.path = path;
	expect_open_fails(f, "directory does not exist");

	snprintf(path, sizeof(path), "%s/link.jsonl", f->dir);
	assert_int_equal(symlink(f->log, path), 0);
	expect_open_fails(f, "symbolic link");

	snprintf(path, sizeof(path), "%s/adir", f->dir);
	assert_int_equal(mkdir(path, 0755), 0);
	expect_open_fails(f, "adir");

	snprintf(path, sizeof(path), "%s/groupw.jsonl", f->dir);
	write_file(path, "", 0, 0660);
	expect_open_fails(f, "writable by group");
	f->cfg.audit.path = f->log;

	/* none of the refusals above created the log */
	assert_int_equal(access(f->log, F_OK), -1);
}

/* ---- the chain ------------------------------------------------------------ */

static void
test_fresh_chain(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	pg_audit_receipt r1, r2, r3;
	pg_audit_parsed p;
	pg_av_result res;
	struct stat st;

	assert_int_equal(size_of(f->log), 0);
	assert_int_equal(stat(f->log, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	r1 = append_ok(a, "permit");
	r2 = append_ok(a, "grant");
	r3 = append_ok(a, "issued");
	assert_int_equal(r1.seq, 1);
	assert_int_equal(r2.seq, 2);
	assert_int_equal(r3.seq, 3);
	pg_audit_close(a);

	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_OK);
	assert_int_equal(res.records, 3);
	assert_true(res.genesis);
	assert_string_equal(res.last_hash, r3.hash);

	last_record(f->log, &p);
	assert_string_equal(p.event, "issued");
	assert_string_equal(p.prev, r2.hash);
	assert_string_equal(json_string_value(json_object_get(p.doc,
			    "expiration")), "2026-03-01T13:34:56Z");
	assert_string_equal(json_string_value(json_object_get(p.doc,
			    "access_key_id")), "ASIAEXAMPLE0000001");
	assert_true(json_is_string(json_object_get(p.doc, "host")));
	pg_audit_parsed_free(&p);
}

static void
test_append_invalid(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	static const char *const events[] = { "recovered", "bogus", "" };
	char err[512];

	append_ok(a, "deny");
	for (size_t i = 0; i < 4; i++) {
		pg_audit_rec r = { .event = i < 3 ? events[i] : NULL,
				   .uid = -1 };

		assert_int_equal(pg_audit_append(a, &r, err, sizeof(err)),
				 PG_EINVAL);
	}
	assert_int_equal(pg_audit_append(a, NULL, err, sizeof(err)), PG_EINVAL);
	/* nothing was written; the chain goes on */
	assert_int_equal(append_ok(a, "deny").seq, 2);
	pg_audit_close(a);
}

static void
test_restart_continues(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	pg_av_result res;

	append_ok(a, "permit");
	append_ok(a, "deny");
	pg_audit_close(a);
	a = open_ok(f);
	assert_int_equal(append_ok(a, "error").seq, 3);
	pg_audit_close(a);
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_OK);
	assert_int_equal(res.records, 3);
	assert_int_equal(res.recovered, 0);
}

/* ---- damaged tails ---------------------------------------------------------- */

static void
check_recovered(struct fx *f, off_t off, long long len, unsigned long long seq)
{
	pg_audit_parsed p;
	pg_av_result res;

	last_record(f->log, &p);
	assert_string_equal(p.event, "recovered");
	assert_true(p.torn);
	assert_int_equal(p.torn_offset, off);
	assert_int_equal(p.torn_length, len);
	assert_int_equal(p.seq, seq);
	assert_non_null(strstr(json_string_value(json_object_get(p.doc,
				"reason")), "damaged bytes"));
	pg_audit_parsed_free(&p);
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_OK);
	assert_int_equal(res.recovered, 1);
}

static void
test_torn_tail(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	pg_av_result res;
	off_t good;

	append_ok(a, "grant");
	append_ok(a, "issued");
	pg_audit_close(a);
	good = size_of(f->log);
	append_raw(f->log, "{\"access_key_id\":\"AS");	/* a crash mid-write */
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_TORN);
	assert_int_equal(res.line, 3);

	a = open_ok(f);
	/* newline added after the torn bytes, then the recovered record */
	check_recovered(f, good, 20, 3);
	assert_int_equal(append_ok(a, "deny").seq, 4);
	pg_audit_close(a);
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_OK);
	assert_int_equal(res.records, 4);

	/* opening again changes nothing */
	good = size_of(f->log);
	a = open_ok(f);
	pg_audit_close(a);
	assert_int_equal(size_of(f->log), good);
}

static void
test_junk_lines_tail(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	off_t good;

	append_ok(a, "grant");
	pg_audit_close(a);
	good = size_of(f->log);
	append_raw(f->log, "junk\nmore junk\n");
	a = open_ok(f);
	check_recovered(f, good, 14, 2);
	pg_audit_close(a);
}

static void
test_whole_file_junk(void **state)
{
	struct fx *f = *state;
	pg_audit *a;
	pg_audit_parsed p;

	write_file(f->log, "xyz", 3, 0640);
	a = open_ok(f);
	check_recovered(f, 0, 3, 1);
	last_record(f->log, &p);
	assert_string_equal(p.prev, PG_AUDIT_GENESIS);
	pg_audit_parsed_free(&p);
	pg_audit_close(a);
}

/* A complete record that lacks only its newline gets it. */
static void
test_unterminated_record(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	pg_av_result res;
	off_t size;

	append_ok(a, "permit");
	append_ok(a, "grant");
	pg_audit_close(a);
	size = size_of(f->log);
	assert_int_equal(truncate(f->log, size - 1), 0);
	a = open_ok(f);
	assert_int_equal(size_of(f->log), size);
	assert_int_equal(append_ok(a, "issued").seq, 3);
	pg_audit_close(a);
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_OK);
	assert_int_equal(res.records, 3);
	assert_int_equal(res.recovered, 0);
}

/* An edited last record is not a tear: the writer goes on after it, and
 * verify still names the edit. */
static void
test_edited_tail_still_detected(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	pg_av_result res;
	size_t len;
	char *buf, *at;

	append_ok(a, "permit");
	append_ok(a, "grant");
	pg_audit_close(a);
	buf = slurp(f->log, &len);
	at = strrchr(buf, '\n');
	*at = '\0';
	at = strrchr(buf, '\n');
	at = strstr(at, "\"alice\"");
	memcpy(at, "\"mallo\"", 7);
	buf[len - 1] = '\n';
	write_file(f->log, buf, len, 0640);
	free(buf);
	a = open_ok(f);
	append_ok(a, "issued");
	pg_audit_close(a);
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_EDITED);
	assert_int_equal(res.line, 2);
}

/* ---- rotation ----------------------------------------------------------------- */

static void
test_reopen_rotation(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	char old[192], err[512];
	pg_audit_receipt last, first;
	pg_audit_parsed p;
	pg_av_result res;

	append_ok(a, "permit");
	last = append_ok(a, "grant");
	snprintf(old, sizeof(old), "%s.old", f->log);
	assert_int_equal(rename(f->log, old), 0);
	assert_int_equal(pg_audit_reopen(a, err, sizeof(err)), PG_OK);
	assert_int_equal(size_of(f->log), 0);
	first = append_ok(a, "issued");
	assert_int_equal(first.seq, 3);
	append_ok(a, "deny");
	pg_audit_close(a);

	last_record(old, &p);
	assert_string_equal(p.hash, last.hash);
	pg_audit_parsed_free(&p);
	{
		const char *files[] = { old, f->log, NULL };

		verify(files, &res);
		assert_int_equal(res.cls, PG_AV_OK);
		assert_int_equal(res.records, 4);
		assert_true(res.genesis);
	}
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_OK);
	assert_false(res.genesis);
	assert_int_equal(res.first_seq, 3);
}

/* A daemon restarted after logrotate renamed the log to PATH.1 */
static void
test_predecessor(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	char old[192];
	pg_av_result res;

	append_ok(a, "permit");
	append_ok(a, "grant");
	pg_audit_close(a);
	snprintf(old, sizeof(old), "%s.1", f->log);
	assert_int_equal(rename(f->log, old), 0);
	a = open_ok(f);
	assert_int_equal(append_ok(a, "issued").seq, 3);
	pg_audit_close(a);
	{
		const char *files[] = { old, f->log, NULL };

		verify(files, &res);
		assert_int_equal(res.cls, PG_AV_OK);
		assert_int_equal(res.records, 3);
	}
}

static void
test_reopen_failure_refuses(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	char moved[96], err[512];
	pg_audit_rec r = { .event = "deny", .uid = -1 };

	append_ok(a, "deny");
	snprintf(moved, sizeof(moved), "%s-moved", f->dir);
	assert_int_equal(rename(f->dir, moved), 0);
	assert_int_equal(pg_audit_reopen(a, err, sizeof(err)), PG_EAUDIT);
	print_message("reopen: %s\n", err);
	assert_int_equal(pg_audit_append(a, &r, err, sizeof(err)), PG_EAUDIT);
	assert_non_null(strstr(err, "not open"));
	assert_int_equal(rename(moved, f->dir), 0);
	assert_int_equal(pg_audit_reopen(a, err, sizeof(err)), PG_OK);
	assert_int_equal(append_ok(a, "deny").seq, 2);
	pg_audit_close(a);
}

/* A write cut short by a full disk (here RLIMIT_FSIZE, in a child
 * process): refused, and the partial record truncated away. */
static void
test_disk_full(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f);
	pg_av_result res;
	off_t size;
	int status;
	pid_t pid;

	append_ok(a, "grant");
	pg_audit_close(a);
	size = size_of(f->log);
	for (int room = 0; room <= 100; room += 100) {
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct rlimit rl = { (rlim_t)(size + room),
					     (rlim_t)(size + room) };
			pg_audit_rec r = { .event = "issued", .uid = -1 };
			char err[512];
			pg_err rc;

			signal(SIGXFSZ, SIG_IGN);
			if (setrlimit(RLIMIT_FSIZE, &rl) != 0 ||
			    pg_audit_open(&f->cfg, &a, err, sizeof(err)) != PG_OK)
				_exit(10);
			rc = pg_audit_append(a, &r, err, sizeof(err));
			pg_audit_close(a);
			_exit(rc == PG_EAUDIT && strstr(err, "cannot write") ?
			      0 : 11);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_int_equal(size_of(f->log), size);
	}
	a = open_ok(f);
	assert_int_equal(append_ok(a, "issued").seq, 2);
	pg_audit_close(a);
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_OK);
	assert_int_equal(res.recovered, 0);
}

/* ---- several writers ------------------------------------------------------------ */

static void
test_two_handles_one_chain(void **state)
{
	struct fx *f = *state;
	pg_audit *a = open_ok(f), *b = open_ok(f);
	pg_av_result res;

	assert_int_equal(append_ok(a, "permit").seq, 1);
	assert_int_equal(append_ok(b, "permit").seq, 2);
	assert_int_equal(append_ok(b, "grant").seq, 3);
	assert_int_equal(append_ok(a, "grant").seq, 4);
	pg_audit_close(a);
	pg_audit_close(b);
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_OK);
	assert_int_equal(res.records, 4);
}

#define THREADS 4
#define PER_THREAD 25

static void *
appender(void *arg)
{
	pg_audit *a = arg;

	for (int i = 0; i < PER_THREAD; i++) {
		pg_audit_rec r = { .event = "deny", .user = "bob", .uid = -1 };
		char err[512];

		if (pg_audit_append(a, &r, err, sizeof(err)) != PG_OK)
			return (void *)1;
	}
	return NULL;
}

static void
test_threads_one_chain(void **state)
{
	struct fx *f = *state;
	pg_audit *a;
	pthread_t t[THREADS];
	pg_av_result res;
	void *ret;

	f->cfg.audit.syslog = 1;	/* a syslog line each, too */
	a = open_ok(f);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, appender, a), 0);
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
	pg_audit_close(a);
	verify_one(f->log, &res);
	assert_int_equal(res.cls, PG_AV_OK);
	assert_int_equal(res.records, THREADS * PER_THREAD);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fresh_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_continues, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_junk_lines_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_whole_file_junk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unterminated_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edited_tail_still_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_predecessor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_failure_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_handles_one_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_one_chain, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
