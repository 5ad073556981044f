/*
 * auditchain.h - the audit chain: what a record is, how it is hashed,
 * signed, parsed and verified (DESIGN.md, "Audit record").
 *
 * These pieces are pure (no files, no clock, no globals) and shared by
 * the daemon's writer (core/audit.c) and the auditor's verifier
 * (`pmpgate audit`, tools/audit.c).  They use OpenSSL (SHA-256, Ed25519
 * through EVP) and Jansson only.
 *
 * A record is one JSON object on one line with exactly these members:
 *
 *   ts              "YYYY-MM-DDTHH:MM:SSZ" (RFC 3339, UTC)
 *   seq             1, 2, 3 ... (one more than the previous record's)
 *   host            the writer's host name
 *   event           "permit" | "grant" | "issued" | "deny" | "error" |
 *                   "recovered"
 *   user, role, ticket, reason, access_key_id, sts_request_id
 *                   string or null
 *   uid, duration   integer or null
 *   expiration      "YYYY-MM-DDTHH:MM:SSZ" or null
 *   rules           array of strings (failing rule ids; [] on allow)
 *   approvers       array of strings
 *   client          {"service", "tty", "rhost": string or null,
 *                    "pid": integer or null}
 *   prev            the previous record's hash; PG_AUDIT_GENESIS (64
 *                   zeros) in the first record of a new chain
 *   hash            see below
 *   sig             see below
 * and, in "recovered" records only:
 *   torn            {"offset": N, "length": M}: the damaged bytes the
 *                   writer found after the last good record (below)
 *
 * Canonical form: the record without "hash" and "sig", serialised by
 * Jansson with JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII: keys
 * sorted by byte value at every level; no blanks; integers in decimal;
 * in strings '"' and '\' escaped with a backslash, \b \f \n \r \t for
 * those controls, other characters below U+0020 as \u00XX, every
 * character above U+007F as \uXXXX (upper-case hex; a surrogate pair
 * above U+FFFF), everything else (DEL and '/' included) as it is.  One
 * byte sequence per record, reproducible by an independent verifier.
 *
 *   hash = lowercase hex SHA-256 of  prev || "\n" || canonical
 *   sig  = standard base64 (with padding, no line breaks) of the
 *          Ed25519 signature of the 64 ASCII characters of hash
 *
 * The line written to the log is the whole record (with hash and sig)
 * serialised the same way, followed by "\n"; a line that is not exactly
 * that serialisation of its own content counts as edited.
 *
 * Torn bytes: when a writer finds bytes after the last good record (a
 * line cut short by a crash, or lines that are not valid records), it
 * leaves them in place, ends them with "\n" if they lack one, and
 * appends a "recovered" record naming them: offset = the byte offset in
 * the file where they start, length = their number of bytes, not
 * counting the newline that ends them.  The recovered record continues
 * the chain from the last good record.
 */
#ifndef PMPGATE_AUDITCHAIN_H
#define PMPGATE_AUDITCHAIN_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"

/* Hex characters of a hash, and the prev of the first record. */
#define PG_AUDIT_HASH_HEX 64
#define PG_AUDIT_GENESIS \
	"0000000000000000000000000000000000000000000000000000000000000000"
/* Characters of a base64 Ed25519 signature (64 bytes), without NUL. */
#define PG_AUDIT_SIG_B64 88
/* Longest record line accepted, newline included. */
#define PG_AUDIT_MAX_LINE 65536

/*
 * What a caller records; the writer adds ts, seq, host, prev, hash and
 * sig.  NULL strings and the "absent" numbers below become JSON null.
 * There is no field for a secret, a password or a session token, and
 * none may be smuggled into reason: records are read by auditors.
 * Untrusted strings (user names, client context, ticket ids) are stored
 * as data: Jansson escapes them; bytes that are not valid UTF-8 are
 * stored as the four characters "\xNN".
 */
typedef struct pg_audit_rec {
	const char *event;	/* permit|grant|issued|deny|error (required) */
	const char *user;
	long uid;		/* < 0: absent */
	const char *role;
	const char *ticket;
	const char *const *rules;	/* failing rule ids, e.g. "R4" */
	size_t n_rules;
	const char *reason;
	const char *const *approvers;	/* approvers that counted */
	size_t n_approvers;
	long long duration;	/* seconds; <= 0: absent */
	long long expiration;	/* epoch seconds; <= 0: absent */
	const char *access_key_id;	/* never the secret key or token */
	const char *sts_request_id;
	const char *service, *tty, *rhost;	/* client context */
	long pid;		/* <= 0: absent */
} pg_audit_rec;

/* Where a record sits in its chain: the writer's part of a record. */
typedef struct pg_audit_link {
	unsigned long long seq;		/* >= 1 */
	const char *prev;		/* 64 lowercase hex */
	const char *ts;			/* "YYYY-MM-DDTHH:MM:SSZ" */
	const char *host;
	int torn;			/* a "recovered" record: below apply */
	unsigned long long torn_offset, torn_length;
} pg_audit_link;

/* ---- keys --------------------------------------------------------------- */

/* An Ed25519 key: private (signs and verifies) or public (verifies). */
typedef struct pg_auditkey pg_auditkey;

/*
 * Load a private key from PEM text (PKCS#8 "BEGIN PRIVATE KEY", as
 * `openssl genpkey -algorithm ed25519` and `pmpgate audit keygen` write
 * it).  Encrypted keys are refused (there is nobody to ask for a
 * passphrase); any other algorithm is refused.  The caller wipes PEM.
 * PG_OK with *out, else PG_ECONFIG (or PG_ENOMEM) and a message that
 * never quotes the key.
 */
pg_err pg_auditkey_load_private(const char *pem, size_t len,
				pg_auditkey **out, char *err, size_t errlen);

/* Load a public key from PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY",
 * as `openssl pkey -pubout` writes it).  Ed25519 only.  PG_OK with *out,
 * else PG_ECONFIG or PG_ENOMEM with a message. */
pg_err pg_auditkey_load_public(const char *pem, size_t len,
			       pg_auditkey **out, char *err, size_t errlen);

/* Generate a new private key.  PG_OK with *out or PG_EINTERNAL. */
pg_err pg_auditkey_generate(pg_auditkey **out, char *err, size_t errlen);

/*
 * The key as PEM: with priv != 0 the private key as unencrypted PKCS#8
 * (only for a private key), else the public key as SubjectPublicKeyInfo.
 * *pem is a new NUL-terminated buffer of *len bytes; release it with
 * pg_auditkey_pem_free(*pem, *len) (it wipes).  PG_OK, PG_EINVAL (a
 * private PEM asked of a public key) or PG_ENOMEM.
 */
pg_err pg_auditkey_pem(const pg_auditkey *key, int priv, char **pem,
		       size_t *len);

/* Wipe LEN bytes of PEM and free it; NULL is fine. */
void pg_auditkey_pem_free(char *pem, size_t len);

/* 1 if KEY holds a private key. */
int pg_auditkey_is_private(const pg_auditkey *key);

/* Free a key (its private part is wiped by OpenSSL); NULL is fine. */
void pg_auditkey_free(pg_auditkey *key);

/* ---- hashing and signing -------------------------------------------------- */

/* The canonical form of REC (a JSON object): REC without "hash" and
 * "sig", serialised as above.  A new string (free()), NULL when REC is
 * not an object or memory runs out. */
char *pg_auditchain_canonical(const json_t *rec);

/* OUT (65 bytes) = lowercase hex SHA-256 of PREV "\n" CANON[0..len).
 * PG_OK or PG_EINTERNAL. */
pg_err pg_auditchain_hash(const char *prev, const char *canon, size_t len,
			  char out[PG_AUDIT_HASH_HEX + 1]);

/* OUT (89 bytes) = base64 Ed25519 signature of the 64 characters of HASH
 * with private KEY.  PG_OK, PG_EINVAL (not a private key) or
 * PG_EINTERNAL. */
pg_err pg_auditchain_sign(const pg_auditkey *key, const char *hash,
			  char out[PG_AUDIT_SIG_B64 + 1]);

/* 1 if SIG (base64, canonical encoding of 64 bytes) is KEY's Ed25519
 * signature of HASH (64 characters); 0 otherwise. */
int pg_auditchain_sig_ok(const pg_auditkey *key, const char *hash,
			 const char *sig);

/* 1 if SIG is a well-formed signature field: exactly 88 characters, the
 * canonical standard base64 (with "==") of 64 bytes, which RAW receives;
 * 0 otherwise (RAW untouched).  Says nothing about who signed. */
int pg_auditchain_sig_decode(const char *sig, unsigned char raw[64]);

/* ---- building ------------------------------------------------------------- */

/*
 * Build the line for record R at LINK, signed with private KEY: the JSON
 * record (with hash and sig) and a final "\n".  *line is a new buffer
 * (free()) of *len bytes plus a NUL; HASH (65 bytes) receives the
 * record's hash.  With link->torn the event is "recovered" and R's
 * event is ignored; otherwise R->event must be one of permit, grant,
 * issued, deny, error.  PG_OK, or PG_EINVAL (bad event, seq, prev or
 * ts; a line longer than PG_AUDIT_MAX_LINE) / PG_ENOMEM / PG_EINTERNAL
 * with a message; never a partial line.
 */
pg_err pg_auditchain_build(const pg_audit_rec *r, const pg_audit_link *link,
			   const pg_auditkey *key, char **line, size_t *len,
			   char hash[PG_AUDIT_HASH_HEX + 1], char *err,
			   size_t errlen);

/* ---- parsing -------------------------------------------------------------- */

/* A parsed record; strings borrow from doc. */
typedef struct pg_audit_parsed {
	json_t *doc;			/* owned: pg_audit_parsed_free */
	unsigned long long seq;
	const char *ts, *event, *prev, *hash, *sig;
	int torn;			/* a "recovered" record */
	unsigned long long torn_offset, torn_length;
	int hash_ok;	/* hash matches, and the line is exactly the
			   serialisation of its content */
} pg_audit_parsed;

/*
 * Parse one line (LEN bytes, without its "\n") into *out and check its
 * shape: exactly the members above, each of its type, seq >= 1, prev and
 * hash 64 lowercase hex, ts in the form above, event known, "torn"
 * present exactly in "recovered" records.  Then recompute the hash and
 * set out->hash_ok.  The signature is NOT checked (pg_auditchain_sig_ok).
 * PG_OK, or PG_EPROTO ("not a record", *out zeroed) / PG_ENOMEM with a
 * message.
 */
pg_err pg_auditchain_parse(const char *line, size_t len,
			   pg_audit_parsed *out, char *err, size_t errlen);

/* Release a parsed record; safe on a zeroed one. */
void pg_audit_parsed_free(pg_audit_parsed *p);

/* ---- syslog copies -------------------------------------------------------- */

/*
 * The text of a record's syslog line: "pmpgate-audit seq=N hash=H
 * event=E user=U" (U "-" when absent; characters of E and U other than
 * [A-Za-z0-9._@+=,-] become '?', so one record is one harmless line).
 */
void pg_auditchain_syslog_text(unsigned long long seq, const char *hash,
			       const char *event, const char *user,
			       char *buf, size_t buflen);

/* Find "pmpgate-audit seq=N hash=H" anywhere in a syslog line (as syslog
 * daemons prefix it with a time, host and tag).  1 with *seq and HASH
 * (65 bytes) filled, 0 if the line holds no such text. */
int pg_auditchain_syslog_parse(const char *line, unsigned long long *seq,
			       char hash[PG_AUDIT_HASH_HEX + 1]);

/* ---- verifying ------------------------------------------------------------ */

/* Classes of damage, in the words `pmpgate audit verify` prints. */
typedef enum {
	PG_AV_OK = 0,
	PG_AV_EDITED,		/* "edited": content changed after signing */
	PG_AV_DELETED,		/* "deleted": records missing from the chain */
	PG_AV_INSERTED,		/* "inserted": a line that is not part of it */
	PG_AV_REORDERED,	/* "reordered": records out of order */
	PG_AV_TORN,		/* "torn": a damaged line no recovered record names */
	PG_AV_TRUNCATED,	/* "truncated": the syslog copy holds records the
				   log does not */
	PG_AV_BADSIG,		/* "bad-signature": no given key signed it */
} pg_av_class;

/* "ok", "edited", ..., "bad-signature". */
const char *pg_av_class_name(pg_av_class c);

/* The verdict.  Strings borrow from the verifier. */
typedef struct pg_av_result {
	pg_av_class cls;
	const char *file;		/* first bad line's file (or NULL) */
	unsigned long long line;	/* ... and 1-based line number */
	char detail[256];		/* one line on what was found */
	unsigned long long records;	/* valid records read */
	unsigned long long first_seq, last_seq;
	char last_hash[PG_AUDIT_HASH_HEX + 1];
	int genesis;			/* the first record starts a chain */
	unsigned long long recovered;	/* torn stretches a record names */
	unsigned long long witnessed;	/* syslog entries given */
	unsigned long long sigs_checked;	/* Ed25519 verifications made */
} pg_av_result;

/*
 * A streaming verifier: give it the syslog witnesses (optional), then
 * the files in chronological order, line by line; its memory does not
 * grow with the number of records (only with the witnesses).  Every
 * record must carry a valid signature by one of the N_KEYS public keys
 * (borrowed, must outlive the verifier); see pg_auditverify_sigmode for
 * how many of them are checked.
 */
typedef struct pg_auditverify pg_auditverify;

pg_err pg_auditverify_new(const pg_auditkey *const *keys, size_t n_keys,
			  pg_auditverify **out);
void pg_auditverify_free(pg_auditverify *v);

/*
 * Which signatures are verified (Ed25519).  Every other check (form,
 * canonical serialisation, hash, prev, seq, witnesses, torn stretches,
 * and that every sig is 88 characters of canonical base64 of 64 bytes)
 * is made on every record in both modes.
 *
 * PG_AV_SIGS_EVERY (the default): every record's signature.
 *
 * PG_AV_SIGS_CHAIN_END: a record's hash covers the previous record's
 * hash, so one valid signature proves the content of every record
 * before it in the chain.  Signatures are verified at checkpoints only:
 * the first and the last record of each file; the last record before a
 * stretch of damaged (torn) lines and the recovered record after it; the
 * last record before the first damage, and the damaged record itself
 * when its content matches its hash; the last record of each batch of
 * lines (pg_auditverify_batch); and with several keys the last record
 * signed by one key and the first signed by the next wherever the key
 * changes (found by bisection between checkpoints signed by different
 * keys).  When one of them fails, the batch it is in is judged again
 * with every signature verified: the verdict then names the same record
 * and class as PG_AV_SIGS_EVERY.  NOT detected (PG_AV_SIGS_EVERY names
 * both bad-signature), as long as the record is not a checkpoint: a sig
 * replaced by another well-formed value on a record whose content is
 * intact; and a record no holder of a given key wrote that the writer
 * then continued the chain from (appended by someone else who could
 * write to the log, or signed by a key not given).  The content of such
 * a record is still fixed by the signatures after it.  res->sigs_checked
 * counts the verifications.  Call before the first line.
 */
typedef enum {
	PG_AV_SIGS_EVERY = 0,
	PG_AV_SIGS_CHAIN_END = 1,
} pg_av_sigmode;

void pg_auditverify_sigmode(pg_auditverify *v, pg_av_sigmode mode);

/* Lines judged together (1..65536; default 4096): in the chain-end mode
 * at least one signature is verified per batch.  A batch also ends at
 * 4 MiB of lines.  Call before the first line. */
void pg_auditverify_batch(pg_auditverify *v, size_t n);

/*
 * Add one syslog witness (before the first line): the log must hold
 * record SEQ with HASH.  Every witness of a seq counts: a seq witnessed
 * with a hash the log does not hold is damage (truncated), so give the
 * witnesses of one chain (one host's lines).  PG_OK, PG_EINVAL (HASH not
 * 64 lowercase hex) or PG_ENOMEM.
 */
pg_err pg_auditverify_witness(pg_auditverify *v, unsigned long long seq,
			      const char *hash);

/* Start the next file; NAME is copied and used in the verdict. */
pg_err pg_auditverify_file(pg_auditverify *v, const char *name);

/* Feed the file's next line: LEN bytes without the "\n"; has_newline = 0
 * only for a last line that lacks one.  PG_OK or PG_ENOMEM. */
pg_err pg_auditverify_line(pg_auditverify *v, const char *line, size_t len,
			   int has_newline);

/* 1 once the verdict is known (the rest of the input cannot change it:
 * a caller may stop reading).  Lines are judged in batches, so this may
 * become 1 only some lines after the one that decided. */
int pg_auditverify_decided(const pg_auditverify *v);

/* Check lines with N threads (1..64; default 1), the caller's included:
 * parsing, hashing and signature checks of a batch of lines run in
 * parallel while the caller reads the next batch, the judgement in
 * order, so the verdict does not depend on N.  Call before the first
 * line. */
void pg_auditverify_threads(pg_auditverify *v, unsigned n);

/* The verdict after the last line.  Call once.  PG_OK, or PG_ENOMEM
 * (then *res says nothing). */
pg_err pg_auditverify_finish(pg_auditverify *v, pg_av_result *res);

#endif
