/*
 * audit.h - the daemon's audit writer (DESIGN.md, "Audit record" and
 * "Order of effects").
 *
 * One handle per daemon, shared by all workers (thread-safe).  Every
 * record is one line of JSON (core/auditchain.h defines the record, its
 * canonical form, hash and signature), appended with one write(2) and
 * fsync'd before pg_audit_append returns: when it returns PG_OK the
 * record is on disk, and the caller may go on (call STS, answer).  Any
 * failure is PG_EAUDIT with a message, and the caller must refuse (exit 4).
 *
 * Appends are serialised within the process (a mutex) and across
 * processes (flock(2) on the log's descriptor); under the lock the
 * writer compares the file's size with what it last wrote, and when
 * another process has appended in between it reads the real last record
 * from the file's tail, so several writers sharing one file still form
 * one chain.
 *
 * Chain head.  At open (and whenever the file changed under the lock) the
 * writer reads the file's tail backwards to the last good record (a line
 * that parses as a record: members and types right; whether its content
 * matches its hash is for verify to judge) and continues from it:
 * seq + 1, prev = its hash.  A file that ends with damaged bytes (a line
 * torn by a crash mid-write, or lines that are not valid records) is not
 * rewritten: the writer ends them with a newline if they lack one and
 * appends a signed "recovered" record naming their offset and length,
 * then continues the chain from the last good record.  A last line that
 * is a complete, valid record lacking only its newline gets the newline.
 * An empty file continues the chain this handle was writing (after a
 * reopen), else the chain of "PATH.1" (the file logrotate renamed it to,
 * when it exists), else starts a new chain: seq 1, prev = 64 zeros.
 *
 * Rotation: rename the file, then pg_audit_reopen (the daemon does it on
 * SIGHUP); the new file's first record names the previous file's last
 * hash in prev.  Every process writing the file must reopen.  Do not
 * copy-and-truncate.
 *
 * Syslog: with [audit] syslog = yes, each record also gives one line
 * "pmpgate-audit seq=N hash=H event=E user=U" at LOG_AUTHPRIV|LOG_INFO
 * (syslog(3), after the fsync): the witness `pmpgate audit verify
 * --syslog` checks a truncated tail against.
 *
 * Resource limits: a write that would exceed RLIMIT_FSIZE raises SIGXFSZ,
 * which terminates a process by default; the daemon ignores SIGXFSZ so
 * that the write fails (EFBIG) and the record is refused.  A short write
 * (disk full) is truncated away and refused.
 */
#ifndef PMPGATE_AUDIT_H
#define PMPGATE_AUDIT_H

#include <stddef.h>

#include "auditchain.h"	/* pg_audit_rec: what a caller records */
#include "config.h"
#include "err.h"

typedef struct pg_audit pg_audit;

/* What an append wrote: the record's seq and hash. */
typedef struct pg_audit_receipt {
	unsigned long long seq;
	char hash[PG_AUDIT_HASH_HEX + 1];
} pg_audit_receipt;

/*
 * Open cfg->audit.path for appending (O_RDWR|O_APPEND|O_CREAT|O_NOFOLLOW|
 * O_CLOEXEC, mode 0640; read access is for the tail) and check it on the
 * descriptor: a regular file owned by root or the effective uid, not
 * writable by group or others.  Its directory must exist.  Load
 * cfg->audit.signing_key (a secret file: core/secret.h) as an Ed25519
 * private key; the PEM is wiped.  Find the chain head, appending a
 * "recovered" record if the file ends with damaged bytes (above).
 * PG_OK with *out, else PG_EAUDIT (or PG_ENOMEM) with a message: no
 * signing_key configured, key unreadable or not Ed25519, log not
 * writable, tail unreadable.  CFG is not kept.
 */
pg_err pg_audit_open(const pg_config *cfg, pg_audit **out, char *err,
		     size_t errlen);

/*
 * Append record R: ts (now, RFC 3339 UTC), seq, host, prev, hash and sig
 * are added; one write(2) of the whole line, then fsync.  PG_OK once it
 * is on disk; otherwise PG_EAUDIT (nothing is left half-written that the
 * next append would not flag: a short write is truncated away, and if
 * that fails the next append names the torn bytes), or PG_EINVAL for a
 * record that cannot be built (unknown event, a line over
 * PG_AUDIT_MAX_LINE).  R->event must be permit, grant, issued, deny or
 * error.
 */
pg_err pg_audit_append(pg_audit *a, const pg_audit_rec *r, char *err,
		       size_t errlen);

/* pg_audit_append, also telling what was written (receipt may be NULL). */
pg_err pg_audit_append_receipt(pg_audit *a, const pg_audit_rec *r,
			       pg_audit_receipt *receipt, char *err,
			       size_t errlen);

/*
 * After the file was renamed (rotation): close it and open the path
 * anew.  The chain continues: the new file's first record names the old
 * file's last record in prev.  On failure the handle has no file and
 * every append fails with PG_EAUDIT until a reopen succeeds.
 */
pg_err pg_audit_reopen(pg_audit *a, char *err, size_t errlen);

/* Close the file and wipe the key; NULL is fine. */
void pg_audit_close(pg_audit *a);

#endif
