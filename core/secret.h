/*
 * secret.h - secret files and secret memory.
 *
 * A secret file holds the secret alone; one trailing newline is ignored.
 * It is opened with O_NOFOLLOW|O_CLOEXEC and checked on the descriptor:
 * a regular file, owned by root or the effective uid, not writable by
 * group or others and not readable by others.  Secrets live in buffers
 * that are wiped (OPENSSL_cleanse) before they are freed; they are never
 * logged.
 */
#ifndef PMPGATE_SECRET_H
#define PMPGATE_SECRET_H

#include <stddef.h>
#include <sys/stat.h>

#include "err.h"

typedef struct pg_secret {
	char *buf;	/* NUL-terminated; NULL when empty */
	size_t len;
} pg_secret;

/* Largest secret file accepted. */
#define PG_SECRET_MAX 65536

/*
 * Check an open descriptor's metadata: regular file, owner root or
 * geteuid(), no group/other write; when secret != 0 also no other read.
 * Returns PG_OK or PG_ECONFIG with a message naming WHAT (e.g. the path).
 */
pg_err pg_check_fd_perms(int fd, const char *what, int secret, char *err,
			 size_t errlen);

/* Read a secret file into *out (see above).  PG_ECONFIG with a message on
 * any problem (missing, bad mode/owner, empty, too large). */
pg_err pg_secret_read_file(const char *path, pg_secret *out, char *err,
			   size_t errlen);

/* Copy LEN bytes into a new secret. */
pg_err pg_secret_from(pg_secret *out, const char *s, size_t len);

/* Wipe and free; safe on an empty or already-wiped secret. */
void pg_secret_wipe(pg_secret *s);

/* Wipe then free a NUL-terminated heap string; NULL is fine. */
void pg_free_secret_str(char *s);

#endif
