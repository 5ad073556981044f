/*
 * ledger.h - the issuance ledger: the history behind R6 conflicting-issuance
 * and R7 ticket-bound (DESIGN.md, "The decision", "Scale").
 *
 * One interface, several backends, selected by [ledger] backend:
 *   file  a directory on this host ([ledger] path), correct for any number
 *         of daemons and tools on the host sharing it (flock, a snapshot
 *         replaced by atomic rename and an append-only journal), and for
 *         any number of threads in each;
 *   etcd  several hosts: one etcd v3 cluster shared by every daemon
 *         ([ledger] endpoints, prefix, ...; below).
 * Callers see only the functions below; a backend is a table of operations
 * inside ledger.c.  Both backends keep the same records and judge them by
 * the same code, so they behave alike (tests/integration/test_ledger.py
 * runs one suite against both).
 *
 * ---- What the ledger knows -------------------------------------------------
 *
 * issuance  (user, role, ticket, ts, expiration, access key id): credentials
 *           of ROLE were issued to USER with TICKET at ts (the time of the
 *           reservation that became the issuance).  Kept while
 *           now < ts + [separation] window; that is all R6 needs.
 * binding   ticket -> (user, role, first, last, uses): the first issuance
 *           made with a ticket binds it to that user and role; uses counts
 *           the issuances made with it.  Kept while
 *           now < last + max([separation] window, PG_LEDGER_TICKET_KEEP).
 *           Why that long: R3 already refuses a ticket outside its approved
 *           window, so a binding only has to outlive the ticket's window.
 *           The ledger is not told that window; change windows are hours
 *           to weeks, so 90 days after the ticket's LAST use is well past
 *           any realistic one, while the snapshot stays small enough to
 *           be rewritten at every compaction.  A ticket whose window is longer
 *           and which lies unused for 90 days loses its binding (R3 still
 *           applies to it).
 * last      (user, role) -> the time of the last issuance, for
 *           `pmpgate review`.  Kept for PG_LEDGER_LAST_KEEP after it.
 * reservation  (id, user, role, ticket, ts, expires, owner): an issuance in
 *           progress (between pg_ledger_reserve and pg_ledger_commit or
 *           pg_ledger_release).  A LIVE reservation counts exactly like an
 *           issuance for R6 (a conflicting role reserved for the user), binds
 *           its ticket for R7 when the ticket is not bound yet, and counts as
 *           a use for max_uses: so two requests racing for conflicting roles,
 *           or for one ticket, cannot both pass.  A reservation is VOID (as
 *           if it never happened) once
 *             - now >= expires: its lease, the daemon's request deadline
 *               ([daemon] deadline) + PG_LEDGER_LEASE_MARGIN seconds, has
 *               run out (the owner, if alive, no longer issues for it), or
 *             - its owner is gone: the owner is recorded as (pid, process
 *               start time from /proc/PID/stat, kernel boot id, pid
 *               namespace); a reservation whose boot id differs from the
 *               current one, or whose pid no longer exists, is a zombie, or
 *               belongs to a process started at another time (pid reused)
 *               is void at once.  When the owner's pid namespace differs
 *               from ours (another container), liveness cannot be judged
 *               and only the lease applies.
 *           So a daemon killed with -9 between reserve and commit blocks
 *           nothing: its reservations are void as soon as it is dead.
 *           A released reservation is removed: the ticket it would have
 *           bound is not bound, its use is not counted.
 *
 * ---- Rules as the ledger evaluates them -----------------------------------
 *
 * For USER asking ROLE with TICKET at NOW, CONFLICTS being ROLE's
 * `conflicts`:
 *   R6 fails when a live issuance or a live reservation names USER and a
 *      role in CONFLICTS (issuance live: ts > now - window, i.e. a request
 *      at exactly ts + window passes).  The most recent such one is reported.
 *   R7 fails when TICKET is bound (by a live binding, else by the earliest
 *      live reservation with it) to another user or another role, or when
 *      max_uses > 0 and the uses (issuances recorded + live reservations)
 *      are >= max_uses.
 * Users, roles and tickets are compared byte for byte, stored as JSON
 * strings, never interpreted (the daemon names a user by the login name
 * of the user's directory entry, pg_gathered.ledger_user, so one person
 * is one user here however a request spelled the name).  A user issued the SAME role again is not a
 * conflict.  The window is measured from issuance: it should be at least
 * the longest role max_duration, or a user could hold credentials of two
 * conflicting roles at once.
 *
 * ---- The file backend ------------------------------------------------------
 *
 * [ledger] path is a directory, created 0700 by pg_ledger_open when missing
 * (its parent must exist; call pg_ledger_open as the user that will use the
 * ledger, i.e. after dropping privileges).  Every operation opens it again
 * (O_DIRECTORY|O_NOFOLLOW) and refuses unless it is a directory owned by
 * root or the effective uid and not writable by group or others; every file
 * in it is opened with O_NOFOLLOW relative to that descriptor and checked
 * on the descriptor (regular file, owner root or euid, not writable by
 * group or others).  Files:
 *   ledger.json      the snapshot: the state as of the journal's start, one
 *                    JSON document (format below);
 *   ledger.journal   the operations since the snapshot, one JSON object per
 *                    line (format below);
 *   ledger.lock      empty, 0644, opened read-only; flock(LOCK_EX) around
 *                    every read-modify-write;
 *   ledger.json.tmp, ledger.journal.tmp  a new snapshot or journal while
 *                    it is written (under the lock; a leftover one is a
 *                    dead writer's and removed).
 * The state is the snapshot with the journal's operations applied in
 * order, by the same code that applies them when they are made, so every
 * process reading the files judges alike.  Neither file present is an
 * empty ledger (a new installation); ledger.json without ledger.journal is
 * the snapshot's state.  ledger.journal without ledger.json is damage
 * (below), whatever the journal holds, even only its header: writers
 * never remove ledger.json and write it before any journal, so its
 * absence means it was removed, and the history it held is unknown.
 *
 * A write (reserve, commit, release): a process-wide mutex, then flock on a
 * descriptor opened for this operation (waiting at most
 * PG_LEDGER_LOCK_WAIT_MS); read the operations appended since this handle
 * last looked; when there is no journal, or it is stale (below), start
 * one: write the snapshot first if there is none (and so no journal),
 * then the journal's header; when the journal holds
 * PG_LEDGER_JOURNAL_MAX_OPS operations or PG_LEDGER_JOURNAL_MAX_BYTES
 * bytes, compact it (below); cut off a torn
 * last line (below); judge; append the operation as one line with one
 * write(2) (O_APPEND); unlock.  A commit, the record of an issuance, is
 * then fdatasync'd: only the journal, no rename and no directory sync
 * (the journal exists already; creating one syncs the directory).  A
 * reservation or a release is not synced: a crash that loses one loses
 * nothing that matters, because a crash ends the reservation's owner, so
 * it would be void at once (see "reservation"), and a lost release leaves
 * a reservation that is void for the same reason.  A denied reserve, and a
 * release or commit that fails, appends nothing.
 *
 * A read (facts, last issuance) takes no lock.  Lines are only ever
 * appended, and a file is only ever replaced whole by rename, so a reader
 * sees whole lines and whole files.  A last line without its newline is
 * being written right now (or was left by a writer that crashed in the
 * middle of its append): readers ignore it; the next writer, holding the
 * lock, cuts the file back to the end of the last complete line before it
 * appends.  That is safe: such a line was never synced, so its operation
 * was never acknowledged (a commit returns only after its line is synced).
 * A complete line that is not a valid operation (not JSON, not one object
 * with one known operation, missing, extra or duplicate keys, a value of
 * the wrong type, a negative time, an empty or over-long id) makes the
 * ledger damaged, as does a journal whose first line is not a header.
 *
 * Compaction: under the lock, the state (records that lapsed dropped)
 * becomes the new ledger.json, naming the journal it compacts in
 * "compacted" (temp file, fsync, rename, directory fsync; skipped when
 * those are exactly the bytes it holds, which a compaction never finds:
 * the snapshot a journal follows never names that journal, so the new
 * bytes differ in "compacted" at least), then a new journal holding only
 * its header, with a new id, replaces ledger.journal (temp file, fsync,
 * rename, directory fsync).  A crash between the two renames leaves the
 * new snapshot with the old journal: that journal is stale, see below.
 *
 * Which journal applies: each journal's header names the SHA-256 of the
 * exact bytes of the ledger.json it follows and the journal's own id (128
 * random bits, from RAND_bytes, fresh for every journal); a snapshot
 * written by a compaction names the id of the journal it compacted
 * ("compacted"; null when it compacted none).  With ledger.json present:
 *   - the header names its SHA-256 and it does not name the journal as
 *     compacted: the journal applies (the state is the snapshot with the
 *     journal's operations);
 *   - it names the journal as compacted and the header names other bytes:
 *     the journal is STALE, ignored (the state is the snapshot's), and
 *     the next writer replaces it, leaving ledger.json as it is;
 *   - anything else (the header names other bytes and the snapshot does
 *     not name the journal; or, which no writer produces, both match):
 *     the ledger is damaged (PG_EPROTO, R9), and neither file is written.
 * Why stale is safe: ledger.json names a journal only when a compaction
 * wrote it from a state that held all of that journal's operations
 * (applied under the lock, after cutting a torn tail, which was never
 * acknowledged); ids are random and fresh, so no other journal bears
 * that id.  So a stale journal is exactly one whose compaction was
 * interrupted between its two renames, and applying it again would count
 * its operations twice.  Why everything else is refused: a journal that
 * neither follows the snapshot nor was compacted into it holds
 * operations the snapshot may lack (acknowledged issuances, bindings);
 * ledger.json was deleted, replaced, edited, or restored from an older
 * copy or another ledger, and dropping the journal would silently forget
 * what it records (a ticket bound to one user would become free for
 * another).  Since every snapshot but a new ledger's names a distinct
 * random id, a journal's header can never match a later snapshot than
 * its own.  A journal whose header has no id is refused as damaged: it
 * could not be told from one whose snapshot was replaced.
 *
 * Backups and restores: copy both files together with the lock held
 * (e.g. flock ledger.lock tar -cf ... ledger.json ledger.journal), so
 * that the copy of the journal belongs to the copy of the snapshot.
 * Restoring ledger.json alone from an older copy (or deleting it) makes
 * the ledger refuse every request until an operator restores BOTH files
 * from one such copy (what the copy does not hold is then forgotten, as
 * with any older copy), puts the matching ledger.json back, or removes
 * ledger.journal deliberately (its operations are then forgotten; the
 * state is the snapshot's).  The journal alone cannot be checked that
 * way: a missing ledger.journal is an empty journal, and an older copy of
 * it put back (a prefix of the current one, or the journal the snapshot
 * compacted) reads as a consistent ledger without what came later; never
 * restore or remove one file alone by accident.
 *
 * Each handle keeps the state it last read, parsed and checked, with
 * descriptors of both files held open (so their inodes cannot be reused),
 * and uses it while lstat of ledger.json shows the same file unchanged
 * (device, inode, size, mode, owner, links, mtime, ctime) and lstat of
 * ledger.journal the journal as last read.  When only the journal grew,
 * only its new bytes are read and applied; any other change (another
 * file at either name, a mode or owner change, a journal shorter than
 * what was applied or changed without growing: an edit in place) reads
 * both again from the start.  When ledger.json is replaced while a reader
 * reads the journal (a compaction), it reads again.  An edit in place of
 * ledger.json that keeps its size within one tick of the file system's
 * clock after the last write, or an edit in place of ledger.journal that
 * also makes it longer, are the changes that could go unseen; nothing but
 * a person with write access to the files edits them in place.  Threads
 * of one process share the handle's state under a read-write lock:
 * readers evaluate under the read lock, reading and applying new
 * operations takes the write lock, so no thread sees an operation half
 * applied.  A read of an unchanged ledger costs two lstat; a write one
 * appended line and the reading back of it (plus, for a commit, one
 * fdatasync).
 *
 * Snapshot format, version 2 (all times epoch seconds; objects have exactly
 * these keys, no others):
 *   {"version": 2,
 *    "compacted": ID or null,  (the journal whose compaction wrote it: 32
 *                               lowercase hex digits)
 *    "issued": [{"user": S, "role": S, "ticket": S, "ts": N,
 *                "expiration": N, "access_key_id": S}, ...],
 *    "tickets": {TICKET: {"user": S, "role": S, "first": N, "last": N,
 *                         "uses": N}, ...},
 *    "last": [{"user": S, "role": S, "ts": N}, ...],
 *    "reservations": [{"id": S, "user": S, "role": S, "ticket": S,
 *                      "ts": N, "expires": N, "pid": N, "start": N,
 *                      "boot_id": S, "pidns": N}, ...]}
 * Written compact with keys sorted, one newline at the end.  Version 1,
 * the same without "compacted", is still read (as "compacted": null) and
 * stays as it is until a compaction writes version 2.
 * Journal format: the header, then one operation per line, each line one
 * JSON object with exactly the keys shown, nothing else (an operation has
 * exactly one key):
 *   {"id": "<32 lowercase hex digits: this journal's id>",
 *    "snapshot": "<lowercase hex SHA-256 of the ledger.json it follows>"}
 *   {"reserve": {...a reservation, as in "reservations" above...}}
 *   {"commit": {"id": S, "user": S, "role": S, "ticket": S, "ts": N,
 *               "expiration": N, "access_key_id": S}}
 *   {"release": {"id": S}}
 * Applied in order: reserve drops what lapsed by its ts, then adds the
 * reservation; commit removes the reservation ID when present, adds the
 * issuance (user, role, ticket, ts, expiration, access_key_id), binds the
 * ticket or counts its use, notes the last issuance and drops what lapsed
 * by ts; it carries the reservation's user, role, ticket and ts because a
 * reservation that lapsed before its commit is gone from the state, and
 * its issuance is recorded all the same.  release removes the reservation
 * ID, when present, and drops what lapsed by its ts.  Ids are at most 32
 * bytes.
 *
 * A ledger whose snapshot or journal cannot be read or parsed, has another
 * version, a missing or extra key, a value of the wrong type, duplicate
 * keys, a negative number, or is a symbolic link or not a regular file, or
 * whose journal neither follows the snapshot nor is named by it (above),
 * is refused with an error (R9): it never allows and is never reset.
 * Whoever repairs it decides what its history was.
 *
 * ---- The etcd backend ------------------------------------------------------
 *
 * The same records as JSON values under [ledger] prefix (P), one key each,
 * user, role and ticket written with '%', '/', blanks and control bytes
 * as %XX:
 *   P u/USER/ROLE/r/ID   a reservation (also at P t/TICKET/r/ID)
 *   P u/USER/ROLE/i/ID   an issuance (ID: its reservation's)
 *   P t/TICKET/b         the ticket's binding
 *   P l/USER/ROLE/       the last issuance
 * pg_ledger_reserve is one etcd transaction per attempt: it compares that
 * no key under P u/USER/C/ (each conflicting role C) and P t/TICKET/
 * changed since the revision its verdict was made on, and puts the
 * reservation; a failed compare returns those ranges as they are now,
 * the verdict is made again (a refusal ends it) and the transaction is
 * tried again (at most 64 times, then PG_EBUSY).  Commit is one
 * transaction (compare: the reservation and the binding unchanged;
 * delete the reservation, put the issuance, binding and last); release
 * deletes the reservation's two keys.  Keys carry etcd leases that only
 * collect garbage (each at least as long as its record matters); every
 * rule is judged on the times in the records, so hosts need synchronised
 * clocks.  A reservation's owner is judged gone only when it ran under our
 * boot id and pid namespace (this host); a reservation of another host
 * lasts until its lease.  A record that is not what the file format
 * allows, or does not match its key, is refused (PG_EPROTO, R9).
 * pg_ledger_open contacts nobody (an unreachable cluster refuses requests,
 * it does not stop the daemon); it reads [ledger] password_file and checks
 * key_file.  Every operation is bounded by [ledger] timeout (the API has
 * no deadline argument: keep it below [daemon] deadline).  HTTP handles
 * come from a pool inside the backend (see etcd.h), so any number of
 * threads may share one pg_ledger.
 *
 * ---- Errors ----------------------------------------------------------------
 *
 * PG_OK; PG_DENIED (reserve only: R6 or R7 fails); PG_EINVAL (a bad
 * argument: empty, too long or not UTF-8); PG_ECONFIG (backend not
 * supported, directory or file with wrong type, owner or mode, a symbolic
 * link; etcd: credentials or permission refused); PG_EPROTO (corrupt
 * ledger or record; etcd: an answer that cannot be read); PG_EUNAVAIL (I/O
 * error; etcd: no member could serve, e.g. no quorum); PG_EBUSY (lock not
 * obtained in time; etcd: records kept changing); PG_ETIMEOUT (commit:
 * the reservation had lapsed; etcd: also [ledger] timeout passed);
 * PG_ENOMEM.  Every error writes a message to err.  Every
 * operation but pg_ledger_reserve returning PG_DENIED is, to decide(), R9.
 *
 * ---- Use (the order of effects of an issue request) -------------------------
 *
 *   pg_ledger_facts_get -> pg_decide -> [allow] pg_ledger_reserve
 *     -> PG_DENIED: refuse with rule_out (R6/R7) and err
 *     -> other error: refuse (R9)
 *     -> PG_OK: audit grant -> STS -> ok: pg_ledger_commit; failed:
 *        pg_ledger_release
 * Exactly one of pg_ledger_commit / pg_ledger_release is called for every
 * reservation; both free it, whatever they return.
 */
#ifndef PMPGATE_LEDGER_H
#define PMPGATE_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "policy.h"

/* Bindings are kept this long after a ticket's last use (or the
 * separation window, if longer). */
#define PG_LEDGER_TICKET_KEEP (90 * 86400)
/* Last-issuance entries (for review) are kept this long. */
#define PG_LEDGER_LAST_KEEP (400 * 86400)
/* Reservation lease = [daemon] deadline (rounded up to seconds) + this. */
#define PG_LEDGER_LEASE_MARGIN 30
/* Longest wait for the file lock before PG_EBUSY. */
#define PG_LEDGER_LOCK_WAIT_MS 5000
/* Largest ledger file read (a bigger one is refused as corrupt). */
#define PG_LEDGER_MAX_FILE (64u * 1024 * 1024)
/* File backend: a writer that finds ledger.journal holding this many
 * operations, or this many bytes, compacts it into ledger.json first. */
#define PG_LEDGER_JOURNAL_MAX_OPS 4096
#define PG_LEDGER_JOURNAL_MAX_BYTES (1024u * 1024)
/* Longest user, role or ticket accepted. */
#define PG_LEDGER_MAX_VALUE 1024

typedef struct pg_ledger pg_ledger;	/* opaque; thread-safe; one per daemon */
typedef struct pg_reservation pg_reservation;	/* opaque */

/*
 * Open the ledger of CFG ([ledger] backend, path or the etcd keys;
 * [separation] window; [daemon] deadline for the reservation lease).  The
 * file backend creates the directory (0700) when missing and checks it,
 * and checks or creates ledger.lock; it does not read ledger.json (a
 * damaged ledger refuses requests, it does not stop the daemon).  The etcd
 * backend checks its options and secret files and contacts nobody; it
 * calls pg_http_global_init() (a no-op when done): open before starting
 * threads.  PG_ECONFIG for an unsupported backend, a bad directory or bad
 * etcd options.  Free with pg_ledger_close.
 */
pg_err pg_ledger_open(const pg_config *cfg, pg_ledger **out, char *err,
		      size_t errlen);

/* Close; NULL is fine.  Every reservation must have been committed or
 * released before. */
void pg_ledger_close(pg_ledger *l);

/*
 * The read-only view for decide() and `check`: fills F for USER asking ROLE
 * with TICKET at NOW.  conflict_role/conflict_ts: a role in CONFLICTS
 * (N_CONFLICTS names; NULL with 0) issued or reserved to USER within the
 * window (the most recent); bound_user/bound_role: the ticket's binding
 * (NULL when unbound); uses: issuances made with the ticket plus live
 * reservations of it.  TICKET may be NULL or "" (no ticket facts).  The
 * strings in F point into *HOLD, which the caller frees with
 * pg_ledger_facts_free (also after an error; *HOLD is NULL then and F is
 * zeroed).  Records nothing.
 */
pg_err pg_ledger_facts_get(pg_ledger *l, const char *user, const char *role,
			   const char *ticket, const char *const *conflicts,
			   size_t n_conflicts, int64_t now, pg_ledger_facts *f,
			   void **hold, char *err, size_t errlen);

/* Free what pg_ledger_facts_get left in *hold; NULL is fine. */
void pg_ledger_facts_free(void *hold);

/*
 * The atomic check-and-record, after decide() allowed and before STS:
 * under the lock, re-evaluates R6 and R7 as above (another process or
 * thread may have issued or reserved in between) and, when both pass,
 * records a reservation owned by this process.  MAX_USES is the role's
 * max_uses (0 = unlimited).  TICKET must be non-empty.
 *   PG_OK      reserved: *RES is set;
 *   PG_DENIED  *RULE_OUT = PG_R6 or PG_R7 (R6 when both fail; the message
 *              in ERR then gives both reasons), a reason in ERR;
 *   otherwise  the ledger is unavailable or damaged (R9), *RULE_OUT = PG_R9.
 * *RES is NULL unless PG_OK.
 */
pg_err pg_ledger_reserve(pg_ledger *l, const char *user, const char *role,
			 const char *ticket, const char *const *conflicts,
			 size_t n_conflicts, int max_uses, int64_t now,
			 pg_reservation **res, int *rule_out, char *err,
			 size_t errlen);

/*
 * STS issued: the reservation RES becomes an issuance (with EXPIRATION, the
 * credentials' expiry, and ACCESS_KEY_ID, which may be NULL, for review),
 * the ticket's binding is created or its uses counted, and the user's last
 * issuance of the role updated.  Frees RES.  When the reservation is no
 * longer in the ledger (its lease lapsed: the caller took longer than the
 * lease between reserve and commit), the issuance is still recorded (STS
 * did issue) and PG_ETIMEOUT is returned: the caller must not hand the
 * credentials out, another request may have been let through meanwhile.
 * Any other error: nothing recorded; the reservation lapses with its lease.
 */
pg_err pg_ledger_commit(pg_ledger *l, pg_reservation *res, int64_t expiration,
			const char *access_key_id, char *err, size_t errlen);

/* STS failed: remove the reservation, as if it never happened (no binding,
 * no use).  Frees RES.  On an error the reservation lapses with its lease
 * (or at once when this process ends). */
pg_err pg_ledger_release(pg_ledger *l, pg_reservation *res, char *err,
			 size_t errlen);

/* For `pmpgate review`: the time of the last issuance of ROLE to USER
 * (*WHEN = 0 if none is recorded within PG_LEDGER_LAST_KEEP). */
pg_err pg_ledger_last_issuance(pg_ledger *l, const char *user,
			       const char *role, int64_t *when, char *err,
			       size_t errlen);

#endif
