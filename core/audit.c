/*
 * audit.c - the daemon's audit writer; see audit.h (behaviour) and
 * auditchain.h (the record, its hash and signature).
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "secret.h"
#include "timefmt.h"

/* How far back from the end the last good record is looked for. */
#define TAIL_FIRST (16 * 1024)
#define TAIL_MAX (4 * 1024 * 1024)

struct pg_audit {
	pthread_mutex_t mu;
	int fd;				/* -1 after a failed reopen */
	char *path;
	pg_auditkey *key;
	int syslog;
	char host[256];

	/* the chain head: the last record written (seq 0: none yet) */
	int have_head;			/* head is known (from any file) */
	unsigned long long seq;
	char hash[PG_AUDIT_HASH_HEX + 1];
	/* the head is the file's last record when the size is still end */
	int valid;
	off_t end;
};

/* What the end of a file holds. */
struct tail {
	int found;			/* a good record */
	unsigned long long seq;
	char hash[PG_AUDIT_HASH_HEX + 1];
	char sig[PG_AUDIT_SIG_B64 + 1];	/* its sig ("" if not 88 chars) */
	int hash_ok;			/* its hash matches its content */
	int complete_unterminated;	/* ... which lacks only its newline */
	off_t size;
	off_t torn_off;			/* damaged bytes: [torn_off, size) */
	int torn;
	int ends_nl;			/* the file ends with '\n' */
};

static int
good_line(const char *p, size_t n, struct tail *t)
{
	pg_audit_parsed r;
	char err[64];

	/* By shape: a record whose content was changed is not a tear; the
	 * chain goes on from the hash it carries, and verify names the
	 * edit.  Only what is not a record at all is named as torn. */
	if (pg_auditchain_parse(p, n, &r, err, sizeof(err)) != PG_OK)
		return 0;
	t->seq = r.seq;
	memcpy(t->hash, r.hash, PG_AUDIT_HASH_HEX + 1);
	t->hash_ok = r.hash_ok;
	t->sig[0] = '\0';
	if (strlen(r.sig) == PG_AUDIT_SIG_B64)
		memcpy(t->sig, r.sig, PG_AUDIT_SIG_B64 + 1);
	pg_audit_parsed_free(&r);
	return 1;
}

/* Read the tail of FD (SIZE bytes long) back to the last good record. */
static pg_err
scan_tail(int fd, off_t size, const char *path, struct tail *t, char *err,
	  size_t errlen)
{
	size_t window = TAIL_FIRST, have;
	char *buf = NULL;
	off_t start;
	pg_err rc = PG_EAUDIT;

	memset(t, 0, sizeof(*t));
	t->size = size;
	if (size == 0)
		return PG_OK;
	for (;;) {
		size_t i, le;
		ssize_t n;

		start = size > (off_t)window ? size - (off_t)window : 0;
		have = (size_t)(size - start);
		free(buf);
		buf = malloc(have ? have : 1);
		if (buf == NULL) {
			snprintf(err, errlen, "%s: out of memory", path);
			rc = PG_ENOMEM;
			goto out;
		}
		for (i = 0; i < have; i += (size_t)n) {
			n = pread(fd, buf + i, have - i, start + (off_t)i);
			if (n < 0 && errno == EINTR) {
				n = 0;
				continue;
			}
			if (n <= 0) {
				snprintf(err, errlen, "%s: cannot read the end "
					 "of the audit log: %s", path,
					 n < 0 ? strerror(errno) :
					 "file shrank");
				goto out;
			}
		}
		t->ends_nl = buf[have - 1] == '\n';
		/* a last line without its newline */
		le = have;
		if (!t->ends_nl) {
			size_t ls = le;

			while (ls > 0 && buf[ls - 1] != '\n')
				ls--;
			if (ls == 0 && start > 0)
				goto grow;
			if (good_line(buf + ls, le - ls, t)) {
				t->found = 1;
				t->complete_unterminated = 1;
				rc = PG_OK;
				goto out;
			}
			le = ls;	/* le: just past a '\n' (or 0) */
		}
		/* complete lines, from the last one backwards */
		while (le > 0) {
			size_t ls = le - 1;	/* buf[ls] == '\n' */

			while (ls > 0 && buf[ls - 1] != '\n')
				ls--;
			if (ls == 0 && start > 0)
				break;		/* may start before the window */
			if (good_line(buf + ls, le - 1 - ls, t)) {
				t->found = 1;
				t->torn_off = start + (off_t)le;
				t->torn = t->torn_off < size;
				rc = PG_OK;
				goto out;
			}
			le = ls;
		}
		if (start == 0) {	/* no good record at all */
			t->torn_off = 0;
			t->torn = 1;
			rc = PG_OK;
			goto out;
		}
grow:
		if (window >= TAIL_MAX) {
			snprintf(err, errlen, "%s: no valid audit record in its "
				 "last %d bytes (run pmpgate audit verify)", path,
				 TAIL_MAX);
			goto out;
		}
		window *= 4;
	}
out:
	free(buf);
	return rc;
}

/* One write of the whole buffer, then fsync.  On a short write the
 * bytes written are truncated away (best effort) and the head is marked
 * unknown, so the next append looks at the file again. */
static pg_err
write_sync(pg_audit *a, const char *buf, size_t len, off_t at, char *err,
	   size_t errlen)
{
	ssize_t n;

	do {
		n = write(a->fd, buf, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0 || (size_t)n != len) {
		int e = errno, cut = 1;

		a->valid = 0;
		/* remove the partial record; if that fails too, the next
		 * append (or start) names its bytes as torn */
		if (n > 0)
			cut = ftruncate(a->fd, at) == 0;
		if (n < 0)
			snprintf(err, errlen, "%s: cannot write the audit "
				 "record: %s", a->path, strerror(e));
		else
			snprintf(err, errlen, "%s: cannot write the audit "
				 "record: only %zd of %zu bytes written (disk "
				 "full or file size limit)%s", a->path, n, len,
				 cut ? "" : "; the partial record stays and "
				 "will be named as torn");
		return PG_EAUDIT;
	}
	if (fsync(a->fd) != 0) {
		a->valid = 0;
		snprintf(err, errlen, "%s: cannot fsync the audit log: %s",
			 a->path, strerror(errno));
		return PG_EAUDIT;
	}
	return PG_OK;
}

static void
now_ts(char *buf, size_t len)
{
	pg_time_format((int64_t)time(NULL), buf, len);
}

/* Build, write and fsync one record at the head; advance the head. */
static pg_err
put_record(pg_audit *a, const pg_audit_rec *r, const pg_audit_link *proto,
	   int lead_nl, off_t size, pg_audit_receipt *receipt, char *err,
	   size_t errlen)
{
	char ts[32], hash[PG_AUDIT_HASH_HEX + 1];
	pg_audit_link link = *proto;
	char *line = NULL;
	size_t len;
	pg_err rc;

	now_ts(ts, sizeof(ts));
	link.seq = a->seq + 1;
	link.prev = a->hash;
	link.ts = ts;
	link.host = a->host;
	rc = pg_auditchain_build(r, &link, a->key, &line, &len, hash, err,
				 errlen);
	if (rc != PG_OK)
		goto out;
	if (lead_nl) {
		/* end torn bytes with a newline, in the same write */
		char *l2 = malloc(len + 2);

		if (l2 == NULL) {
			snprintf(err, errlen, "out of memory");
			rc = PG_ENOMEM;
			goto out;
		}
		l2[0] = '\n';
		memcpy(l2 + 1, line, len + 1);
		free(line);
		line = l2;
		len++;
	}
	rc = write_sync(a, line, len, size, err, errlen);
	if (rc != PG_OK)
		goto out;
	a->seq = link.seq;
	memcpy(a->hash, hash, sizeof(a->hash));
	a->have_head = 1;
	a->end = size + (off_t)len;
	a->valid = 1;
	if (receipt != NULL) {
		receipt->seq = link.seq;
		memcpy(receipt->hash, hash, sizeof(receipt->hash));
	}
	if (a->syslog) {
		char text[512];

		pg_auditchain_syslog_text(link.seq, hash,
					  link.torn ? "recovered" : r->event,
					  r->user, text, sizeof(text));
		syslog(LOG_AUTHPRIV | LOG_INFO, "%s", text);
	}
out:
	free(line);
	return rc;
}

/* The head of the chain in "PATH.1", for a new empty log. */
static pg_err
predecessor(pg_audit *a, struct tail *t, char *err, size_t errlen)
{
	char *prev = NULL;
	struct stat st;
	pg_err rc = PG_OK;
	int fd = -1;

	memset(t, 0, sizeof(*t));
	if (asprintf(&prev, "%s.1", a->path) < 0) {
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	fd = open(prev, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
		  O_NONBLOCK);
	if (fd < 0) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "%s: cannot open the previous "
				 "audit log: %s", prev, strerror(errno));
			rc = PG_EAUDIT;
		}
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", prev);
		rc = PG_EAUDIT;
		goto out;
	}
	rc = scan_tail(fd, st.st_size, prev, t, err, errlen);
out:
	if (fd >= 0)
		close(fd);
	free(prev);
	return rc;
}

/*
 * A head this handle did not write (another writer's, or found at start
 * or after a rotation) is continued whatever it is: the chain must go on,
 * and `pmpgate audit verify` names any damage.  But a record that does
 * not match its hash, or that this daemon's key did not sign, is worth a
 * line in the log at once: after the signing key was replaced that is
 * expected once; otherwise someone else wrote to the audit log.
 */
static void
check_head(const pg_audit *a, const struct tail *t, const char *path)
{
	if (t->hash_ok && t->sig[0] != '\0' &&
	    pg_auditchain_sig_ok(a->key, t->hash, t->sig))
		return;
	pg_log(LOG_WARNING, "%s: the last audit record (seq %llu) %s; the "
	       "chain continues from it.  Unless the signing key was just "
	       "replaced, someone else wrote to the audit log: run pmpgate "
	       "audit verify", path, t->seq, t->hash_ok ? "is not signed "
	       "by this daemon's key" : "does not match its hash");
}

/*
 * Under the file lock: make the head the file's real last record,
 * appending a "recovered" record for damaged bytes at its end.
 */
static pg_err
sync_head(pg_audit *a, char *err, size_t errlen)
{
	pg_audit_rec rec = { .event = "recovered", .uid = -1 };
	pg_audit_link link = { 0 };
	char reason[256];
	struct tail t;
	struct stat st;
	pg_err rc;
	int lead_nl = 0;

	if (fstat(a->fd, &st) != 0) {
		snprintf(err, errlen, "%s: cannot stat: %s", a->path,
			 strerror(errno));
		return PG_EAUDIT;
	}
	if (a->valid && st.st_size == a->end)
		return PG_OK;
	rc = scan_tail(a->fd, st.st_size, a->path, &t, err, errlen);
	if (rc != PG_OK)
		return rc == PG_ENOMEM ? rc : PG_EAUDIT;
	if (t.found) {
		if (!a->have_head || t.seq != a->seq ||
		    memcmp(t.hash, a->hash, sizeof(a->hash)) != 0)
			check_head(a, &t, a->path);
		a->seq = t.seq;
		memcpy(a->hash, t.hash, sizeof(a->hash));
		a->have_head = 1;
	} else if (!a->have_head) {
		struct tail p;

		/* nothing good here and nothing carried: a new chain, or
		 * the chain of the file this one replaced */
		a->seq = 0;
		memcpy(a->hash, PG_AUDIT_GENESIS, sizeof(a->hash));
		if (st.st_size == 0) {
			rc = predecessor(a, &p, err, errlen);
			if (rc != PG_OK)
				return rc == PG_ENOMEM ? rc : PG_EAUDIT;
			if (p.found) {
				check_head(a, &p, "the previous audit log");
				a->seq = p.seq;
				memcpy(a->hash, p.hash, sizeof(a->hash));
			}
			if (p.found && p.torn) {
				/* its damaged end is named here */
				t.torn = 1;
				t.torn_off = p.torn_off;
				t.size = p.size;
				t.ends_nl = p.ends_nl;
				st.st_size = 0;
			}
		}
		a->have_head = 1;
	}
	a->end = st.st_size;
	a->valid = 1;
	if (t.complete_unterminated) {
		rc = write_sync(a, "\n", 1, st.st_size, err, errlen);
		if (rc == PG_OK)
			a->end = st.st_size + 1;
		return rc;
	}
	if (!t.torn)
		return PG_OK;
	link.torn = 1;
	link.torn_offset = (unsigned long long)t.torn_off;
	link.torn_length = (unsigned long long)(t.size - t.torn_off) -
			   (t.ends_nl ? 1 : 0);
	lead_nl = st.st_size > 0 && !t.ends_nl;
	snprintf(reason, sizeof(reason), "%llu damaged bytes at offset %llu "
		 "of %s follow the last good record (seq %llu): a write cut "
		 "short, left in place", link.torn_length, link.torn_offset,
		 st.st_size > 0 ? "this file" : "the previous file", a->seq);
	rec.reason = reason;
	return put_record(a, &rec, &link, lead_nl, st.st_size, NULL, err,
			  errlen);
}

static pg_err
lock_file(pg_audit *a, int op, char *err, size_t errlen)
{
	while (flock(a->fd, op) != 0) {
		if (errno == EINTR)
			continue;
		snprintf(err, errlen, "%s: cannot lock the audit log: %s",
			 a->path, strerror(errno));
		return PG_EAUDIT;
	}
	return PG_OK;
}

/* fsync the log's directory, so that a file just created stays. */
static pg_err
sync_dir(const char *path, char *err, size_t errlen)
{
	char *copy = strdup(path);
	pg_err rc = PG_OK;
	int dfd;

	if (copy == NULL) {
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		snprintf(err, errlen, "%s: cannot sync the audit log's "
			 "directory: %s", path, strerror(errno));
		rc = PG_EAUDIT;
	}
	if (dfd >= 0)
		close(dfd);
	free(copy);
	return rc;
}

static pg_err
open_log(pg_audit *a, char *err, size_t errlen)
{
	pg_err rc;
	int e;

	a->valid = 0;
	a->fd = open(a->path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW |
		     O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0640);
	if (a->fd < 0) {
		char *copy = strdup(a->path);
		struct stat st;

		e = errno;
		if (e == ENOENT && copy != NULL &&
		    stat(dirname(copy), &st) != 0)
			snprintf(err, errlen, "%s: the audit log's directory "
				 "does not exist", a->path);
		else if (e == ELOOP)
			snprintf(err, errlen, "%s: is a symbolic link "
				 "(refused for the audit log)", a->path);
		else
			snprintf(err, errlen, "%s: cannot open the audit log "
				 "for appending: %s", a->path, strerror(e));
		free(copy);
		return PG_EAUDIT;
	}
	/* O_NONBLOCK only kept a FIFO from blocking the open */
	(void)fcntl(a->fd, F_SETFL, O_APPEND);
	rc = pg_check_fd_perms(a->fd, a->path, 0, err, errlen);
	if (rc == PG_OK)
		rc = sync_dir(a->path, err, errlen);
	if (rc == PG_OK)
		rc = lock_file(a, LOCK_EX, err, errlen);
	if (rc == PG_OK) {
		rc = sync_head(a, err, errlen);
		(void)flock(a->fd, LOCK_UN);
	}
	if (rc != PG_OK) {
		close(a->fd);
		a->fd = -1;
		return rc == PG_ENOMEM ? rc : PG_EAUDIT;
	}
	return PG_OK;
}

pg_err
pg_audit_open(const pg_config *cfg, pg_audit **out, char *err,
	      size_t errlen)
{
	pg_secret pem = { 0 };
	pg_audit *a;
	char kerr[512];
	pg_err rc;

	*out = NULL;
	if (cfg->audit.path == NULL || cfg->audit.path[0] == '\0') {
		snprintf(err, errlen, "[audit] path is not set");
		return PG_EAUDIT;
	}
	if (cfg->audit.signing_key == NULL) {
		snprintf(err, errlen, "[audit] signing_key is not set: the "
			 "audit records cannot be signed (create a key with "
			 "pmpgate audit keygen)");
		return PG_EAUDIT;
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	a->fd = -1;
	if (pthread_mutex_init(&a->mu, NULL) != 0) {
		free(a);
		snprintf(err, errlen, "cannot create a mutex");
		return PG_EAUDIT;
	}
	a->syslog = cfg->audit.syslog;
	a->path = strdup(cfg->audit.path);
	if (a->path == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	if (gethostname(a->host, sizeof(a->host)) != 0 || a->host[0] == '\0')
		snprintf(a->host, sizeof(a->host), "localhost");
	a->host[sizeof(a->host) - 1] = '\0';

	/* the file's name is in kerr; the key's problems are not */
	rc = pg_secret_read_file(cfg->audit.signing_key, &pem, kerr,
				 sizeof(kerr));
	if (rc != PG_OK) {
		snprintf(err, errlen, "[audit] signing_key: %s", kerr);
	} else {
		rc = pg_auditkey_load_private(pem.buf, pem.len, &a->key, kerr,
					      sizeof(kerr));
		if (rc != PG_OK)
			snprintf(err, errlen, "[audit] signing_key %s: %s",
				 cfg->audit.signing_key, kerr);
	}
	pg_secret_wipe(&pem);
	if (rc != PG_OK) {
		rc = rc == PG_ENOMEM ? rc : PG_EAUDIT;
		goto out;
	}
	rc = open_log(a, err, errlen);
out:
	if (rc != PG_OK) {
		pg_audit_close(a);
		return rc;
	}
	*out = a;
	return PG_OK;
}

pg_err
pg_audit_append_receipt(pg_audit *a, const pg_audit_rec *r,
			pg_audit_receipt *receipt, char *err, size_t errlen)
{
	static const pg_audit_link plain = { 0 };
	struct stat st;
	pg_err rc;

	if (receipt != NULL)
		memset(receipt, 0, sizeof(*receipt));
	if (r == NULL || r->event == NULL ||
	    strcmp(r->event, "recovered") == 0) {
		snprintf(err, errlen, "audit record: an event is required "
			 "(permit, grant, issued, deny or error)");
		return PG_EINVAL;
	}
	pthread_mutex_lock(&a->mu);
	if (a->fd < 0) {
		snprintf(err, errlen, "%s: the audit log is not open (a "
			 "reopen failed)", a->path);
		rc = PG_EAUDIT;
		goto unlock;
	}
	rc = lock_file(a, LOCK_EX, err, errlen);
	if (rc != PG_OK)
		goto unlock;
	rc = sync_head(a, err, errlen);
	if (rc == PG_OK && fstat(a->fd, &st) != 0) {
		snprintf(err, errlen, "%s: cannot stat: %s", a->path,
			 strerror(errno));
		rc = PG_EAUDIT;
	}
	if (rc == PG_OK)
		rc = put_record(a, r, &plain, 0, st.st_size, receipt, err,
				errlen);
	(void)flock(a->fd, LOCK_UN);
unlock:
	pthread_mutex_unlock(&a->mu);
	if (rc == PG_ENOMEM)
		rc = PG_EAUDIT;
	return rc;
}

pg_err
pg_audit_append(pg_audit *a, const pg_audit_rec *r, char *err,
		size_t errlen)
{
	return pg_audit_append_receipt(a, r, NULL, err, errlen);
}

pg_err
pg_audit_reopen(pg_audit *a, char *err, size_t errlen)
{
	pg_err rc = PG_OK;

	pthread_mutex_lock(&a->mu);
	if (a->fd >= 0) {
		/* learn the old file's real last record (another process
		 * may have appended to it) */
		rc = lock_file(a, LOCK_EX, err, errlen);
		if (rc == PG_OK) {
			rc = sync_head(a, err, errlen);
			(void)flock(a->fd, LOCK_UN);
		}
		/* on failure the head this handle wrote last still holds */
		close(a->fd);
		a->fd = -1;
	}
	rc = open_log(a, err, errlen);
	pthread_mutex_unlock(&a->mu);
	return rc;
}

void
pg_audit_close(pg_audit *a)
{
	if (a == NULL)
		return;
	if (a->fd >= 0)
		close(a->fd);
	pg_auditkey_free(a->key);
	free(a->path);
	pthread_mutex_destroy(&a->mu);
	free(a);
}
