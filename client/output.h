/*
 * output.h - what the thin clients print: issued credentials in the
 * formats of pmpgate-credentials, daemon answers as "key: value" lines,
 * and untrusted text made safe for one line of a terminal.
 *
 * Credentials pass through here on their way to stdout, so every buffer
 * that held them is wiped before it is freed.  Uses libc and Jansson only.
 */
#ifndef PMPGATE_OUTPUT_H
#define PMPGATE_OUTPUT_H

#include <jansson.h>
#include <stddef.h>

#include "../core/err.h"

/* Limits of what an answer's credentials may look like. */
#define PG_CREDS_MIN 16
#define PG_CREDS_MAX_KEY_ID 128
#define PG_CREDS_MAX_SECRET 1024
#define PG_CREDS_MAX_TOKEN 16384

/* Output formats of pmpgate-credentials --format. */
typedef enum { PG_FMT_PROCESS, PG_FMT_ENV, PG_FMT_INI } pg_fmt;

/* "process", "env" or "ini" -> *out; PG_EUSAGE for anything else. */
pg_err pg_fmt_parse(const char *name, pg_fmt *out);

/* Issued credentials, borrowed from the answer they were read from. */
typedef struct pg_creds {
	const char *access_key_id;	/* [A-Za-z0-9_]{16,128} */
	const char *secret_access_key;	/* [A-Za-z0-9/+=._-]{16,1024} */
	const char *session_token;	/* [A-Za-z0-9/+=._-]{16,16384} */
	const char *expiration;		/* YYYY-MM-DDTHH:MM:SSZ */
} pg_creds;

/*
 * Take the credentials from an "allow" answer to an issue request: the
 * member "credentials" must be an object with exactly AccessKeyId,
 * SecretAccessKey, SessionToken and Expiration, each a string of the
 * charset and length above, Expiration a valid UTC time in exactly the
 * form YYYY-MM-DDTHH:MM:SSZ.  When ROLE is not NULL and the answer names
 * a "role", it must be ROLE.  PG_OK with *out borrowing from ANSWER, else
 * PG_EPROTO (*out zeroed) with a message in err that never quotes a value.
 */
pg_err pg_creds_from_answer(const json_t *answer, const char *role,
			    pg_creds *out, char *err, size_t errlen);

/*
 * Format credentials for stdout, newline-terminated:
 *   PG_FMT_PROCESS  {"Version":1,"AccessKeyId":...,"SecretAccessKey":...,
 *                   "SessionToken":...,"Expiration":...}   (AWS
 *                   credential_process; compact, in this order)
 *   PG_FMT_ENV      export AWS_ACCESS_KEY_ID='...' (and AWS_SECRET_ACCESS_KEY,
 *                   AWS_SESSION_TOKEN, AWS_CREDENTIAL_EXPIRATION), each
 *                   value single-quoted for a POSIX shell
 *   PG_FMT_INI      [ROLE] then aws_access_key_id = ..., aws_secret_access_key
 *                   = ..., aws_session_token = ... (ROLE required)
 * Returns a new buffer of *len bytes plus a NUL; release it with
 * pg_wipe_free(buf, *len).  NULL when memory runs out or an argument is
 * missing.  Does not validate C: use pg_creds_from_answer first.
 */
char *pg_format_creds(const pg_creds *c, pg_fmt fmt, const char *role,
		      size_t *len);

/* Quote S for a POSIX shell as one word: '...' with each ' written as
 * '\''.  Writes the quoted text and a NUL to OUT when OUT is not NULL;
 * returns the length of the quoted text (without the NUL) either way. */
size_t pg_shell_quote(const char *s, char *out);

/*
 * Copy untrusted text S into OUT (outlen > 0) so that it prints as one
 * harmless line: C0 controls, DEL, C1 controls and Unicode bidirectional
 * formatting characters become '?', bytes that are not valid UTF-8 become
 * '?', and text longer than OUT is cut at a character boundary and ends
 * with "...".  Always NUL-terminates.
 */
void pg_sanitize_text(const char *s, char *out, size_t outlen);

/*
 * The members of the object OBJ as "key: value" lines, in the object's
 * order: strings as text, other scalars as JSON, arrays and objects as
 * compact JSON; keys and values passed through pg_sanitize_text (values
 * cut at 1024 bytes).  The envelope every answer carries ("v", "status",
 * "rules", "reason", "exit") is left out.  Returns a new string (free()),
 * "" for an object with nothing else, NULL when OBJ is not an object or
 * memory runs out.
 */
char *pg_format_kv(const json_t *obj);

/* Wipe LEN bytes at P and free it; P may be NULL. */
void pg_wipe_free(void *p, size_t len);

/* Make Jansson wipe every block it frees (its parse buffers and string
 * copies may hold credentials).  Call once, before any other Jansson
 * call in the process.  Afterwards, what json_dumps() returns must be
 * released with the free function of json_get_alloc_funcs(), not free();
 * this library never hands out such memory. */
void pg_json_wipe_on_free(void);

/* Write all of BUF to FD (blocking, EINTR retried).  0 or -1. */
int pg_write_fd(int fd, const char *buf, size_t len);

/* The clients' default and largest timeout for one call, in seconds. */
#define PG_CLIENT_TIMEOUT_DEFAULT_S 60
#define PG_CLIENT_TIMEOUT_MAX_S 3600

/* The client timeout in ms from PMPGATE_TIMEOUT (whole seconds, 1..3600;
 * unset or empty: the default).  PG_EUSAGE when malformed. */
pg_err pg_client_timeout(int *ms);

#endif
