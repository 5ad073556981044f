/*
 * secret.c - secret files and secret memory (see secret.h).
 *
 * A secret file is opened without following a symbolic link, checked on
 * the open descriptor (never again by name), read whole into one buffer
 * and copied into an exactly sized one; every buffer that held secret
 * bytes is wiped with OPENSSL_cleanse before it is freed, on success and
 * on every error path.  Messages name the file, never its contents.
 */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

pg_err pg_check_fd_perms(int fd, const char *what, int secret, char *err,
			 size_t errlen)
{
	struct stat st;
	unsigned mode;
	uid_t euid = geteuid();

	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: cannot stat: %s", what,
			 strerror(errno));
		return PG_ECONFIG;
	}
	mode = (unsigned)(st.st_mode & 07777);
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", what);
		return PG_ECONFIG;
	}
	if (st.st_uid != 0 && st.st_uid != euid) {
		snprintf(err, errlen,
			 "%s: must be owned by root or uid %lu (owner is uid %lu)",
			 what, (unsigned long)euid, (unsigned long)st.st_uid);
		return PG_ECONFIG;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
			 "%s: must not be writable by group or others (mode %04o)",
			 what, mode);
		return PG_ECONFIG;
	}
	if (secret && (st.st_mode & S_IROTH)) {
		snprintf(err, errlen,
			 "%s: must not be readable by others (mode %04o)", what,
			 mode);
		return PG_ECONFIG;
	}
	return PG_OK;
}

pg_err pg_secret_read_file(const char *path, pg_secret *out, char *err,
			   size_t errlen)
{
	pg_err rc = PG_ECONFIG;
	int fd = -1;
	char *raw = NULL;		/* PG_SECRET_MAX + 1 bytes, wiped */
	const size_t rawcap = (size_t)PG_SECRET_MAX + 1;
	size_t len = 0;

	out->buf = NULL;
	out->len = 0;

	/* O_NONBLOCK: opening a FIFO must not hang; it is refused below. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
			O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(err, errlen,
				 "%s: is a symbolic link (refused for a secret file)",
				 path);
		else
			snprintf(err, errlen, "%s: cannot open: %s", path,
				 strerror(errno));
		goto out;
	}
	rc = pg_check_fd_perms(fd, path, 1, err, errlen);
	if (rc != PG_OK)
		goto out;
	rc = PG_ECONFIG;

	raw = malloc(rawcap);
	if (raw == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		rc = PG_ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n;

		if (len == rawcap) {
			snprintf(err, errlen,
				 "%s: secret file is larger than %d bytes", path,
				 PG_SECRET_MAX);
			goto out;
		}
		n = read(fd, raw + len, rawcap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "%s: cannot read: %s", path,
				 strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}

	/* Exactly one trailing line end ("\n" or "\r\n") is not part of it. */
	if (len > 0 && raw[len - 1] == '\n') {
		len--;
		if (len > 0 && raw[len - 1] == '\r')
			len--;
	}
	if (len == 0) {
		snprintf(err, errlen, "%s: secret file is empty", path);
		goto out;
	}
	if (memchr(raw, '\0', len) != NULL) {
		snprintf(err, errlen, "%s: secret file contains a NUL byte",
			 path);
		goto out;
	}
	rc = pg_secret_from(out, raw, len);
	if (rc != PG_OK)
		snprintf(err, errlen, "%s: out of memory", path);

out:
	if (raw != NULL) {
		OPENSSL_cleanse(raw, rawcap);
		free(raw);
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

pg_err pg_secret_from(pg_secret *out, const char *s, size_t len)
{
	out->buf = NULL;
	out->len = 0;
	if (len == 0)
		return PG_OK;
	if (len == SIZE_MAX)
		return PG_ENOMEM;
	out->buf = malloc(len + 1);
	if (out->buf == NULL)
		return PG_ENOMEM;
	memcpy(out->buf, s, len);
	out->buf[len] = '\0';
	out->len = len;
	return PG_OK;
}

void pg_secret_wipe(pg_secret *s)
{
	if (s == NULL)
		return;
	if (s->buf != NULL) {
		OPENSSL_cleanse(s->buf, s->len + 1);
		free(s->buf);
	}
	s->buf = NULL;
	s->len = 0;
}

void pg_free_secret_str(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}
