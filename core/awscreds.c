/*
 * awscreds.c - the daemon's base AWS credentials; see awscreds.h.
 *
 * The shared-credentials file is opened with O_NOFOLLOW, checked on the
 * descriptor as a secret file, read whole into a buffer that is wiped
 * before it is freed, and parsed as INI:
 *
 *   [profile-name]
 *   aws_access_key_id = AKIA...
 *   aws_secret_access_key = ...
 *   aws_session_token = ...        (optional)
 *
 * Blank lines and lines starting with '#' or ';' are ignored, other keys
 * (region, output...) are ignored, a key outside any section, a line that
 * is neither a section nor "key = value", a key given twice in the chosen
 * profile and a missing profile or key are errors.  Messages name the file
 * and line, never a value.
 */
#include "awscreds.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "secret.h"

static char *
dup_secret(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void
free_str(char **s)
{
	if (*s) {
		OPENSSL_cleanse(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

void
pg_aws_creds_wipe(pg_aws_creds *c)
{
	if (!c)
		return;
	free_str(&c->access_key_id);
	free_str(&c->secret_access_key);
	free_str(&c->session_token);
	OPENSSL_cleanse(c, sizeof(*c));
}

static int
is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Trim [*b, *e) of blanks in place. */
static void
trim(const char **b, const char **e)
{
	while (*b < *e && is_blank(**b))
		(*b)++;
	while (*e > *b && is_blank((*e)[-1]))
		(*e)--;
}

static int
span_eq(const char *b, const char *e, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(e - b) == n && memcmp(b, s, n) == 0;
}

/* Read the whole open descriptor (at most PG_SECRET_MAX bytes). */
static pg_err
read_all(int fd, const char *path, char **out, size_t *outlen, char *err,
	 size_t errlen)
{
	pg_err rc = PG_ECONFIG;
	size_t cap = PG_SECRET_MAX + 1, len = 0;
	char *buf = malloc(cap + 1);
	ssize_t n;

	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		return PG_ENOMEM;
	}
	for (;;) {
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "%s: read: %s", path,
				 strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > PG_SECRET_MAX) {
			snprintf(err, errlen, "%s: larger than %d bytes", path,
				 PG_SECRET_MAX);
			goto out;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	buf = NULL;
	rc = PG_OK;
out:
	if (buf) {
		OPENSSL_cleanse(buf, cap + 1);
		free(buf);
	}
	return rc;
}

static pg_err
parse_ini(const char *path, const char *buf, size_t len, const char *profile,
	  pg_aws_creds *out, char *err, size_t errlen)
{
	const char *p = buf, *end = buf + len;
	const char *nl, *b, *e, *eq, *kb, *ke, *vb, *ve;
	int line = 0, in_section = 0, in_profile = 0, found = 0;
	char **slot;

	if (memchr(buf, '\0', len)) {
		snprintf(err, errlen, "%s: contains a NUL byte", path);
		return PG_ECONFIG;
	}
	while (p < end) {
		line++;
		nl = memchr(p, '\n', (size_t)(end - p));
		b = p;
		e = nl ? nl : end;
		p = nl ? nl + 1 : end;
		trim(&b, &e);
		if (b == e || *b == '#' || *b == ';')
			continue;
		if (*b == '[') {
			if (e[-1] != ']' || e - b < 3) {
				snprintf(err, errlen, "%s:%d: bad section line",
					 path, line);
				return PG_ECONFIG;
			}
			kb = b + 1;
			ke = e - 1;
			trim(&kb, &ke);
			in_section = 1;
			in_profile = span_eq(kb, ke, profile);
			if (in_profile) {
				if (found) {
					snprintf(err, errlen,
						 "%s:%d: profile [%s] given twice",
						 path, line, profile);
					return PG_ECONFIG;
				}
				found = 1;
			}
			continue;
		}
		eq = memchr(b, '=', (size_t)(e - b));
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected \"key = value\"",
				 path, line);
			return PG_ECONFIG;
		}
		if (!in_section) {
			snprintf(err, errlen, "%s:%d: key outside a section",
				 path, line);
			return PG_ECONFIG;
		}
		if (!in_profile)
			continue;
		kb = b;
		ke = eq;
		vb = eq + 1;
		ve = e;
		trim(&kb, &ke);
		trim(&vb, &ve);
		if (span_eq(kb, ke, "aws_access_key_id"))
			slot = &out->access_key_id;
		else if (span_eq(kb, ke, "aws_secret_access_key"))
			slot = &out->secret_access_key;
		else if (span_eq(kb, ke, "aws_session_token"))
			slot = &out->session_token;
		else
			continue;
		if (*slot) {
			snprintf(err, errlen, "%s:%d: key given twice", path,
				 line);
			return PG_ECONFIG;
		}
		if (vb == ve) {
			snprintf(err, errlen, "%s:%d: empty value", path, line);
			return PG_ECONFIG;
		}
		*slot = dup_secret(vb, (size_t)(ve - vb));
		if (!*slot) {
			snprintf(err, errlen, "%s: out of memory", path);
			return PG_ENOMEM;
		}
	}
	if (!found) {
		snprintf(err, errlen, "%s:0: no profile [%s]", path, profile);
		return PG_ECONFIG;
	}
	if (!out->access_key_id) {
		snprintf(err, errlen,
			 "%s:0: profile [%s] has no aws_access_key_id", path,
			 profile);
		return PG_ECONFIG;
	}
	if (!out->secret_access_key) {
		snprintf(err, errlen,
			 "%s:0: profile [%s] has no aws_secret_access_key",
			 path, profile);
		return PG_ECONFIG;
	}
	return PG_OK;
}

static pg_err
load_file(const char *path, const char *profile, pg_aws_creds *out, char *err,
	  size_t errlen)
{
	pg_err rc;
	char *buf = NULL;
	size_t len = 0;
	int fd;

	/* O_NONBLOCK: a FIFO must not hang the open; it is refused below. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
			O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(err, errlen,
				 "%s: is a symbolic link (refused for a secret "
				 "file)", path);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return PG_ECONFIG;
	}
	rc = pg_check_fd_perms(fd, path, 1, err, errlen);
	if (rc != PG_OK)
		goto out;
	rc = read_all(fd, path, &buf, &len, err, errlen);
	if (rc != PG_OK)
		goto out;
	rc = parse_ini(path, buf, len, profile, out, err, errlen);
out:
	if (buf) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	close(fd);
	return rc;
}

static pg_err
env_dup(const char *name, int required, char **slot, char *err, size_t errlen)
{
	const char *v = getenv(name);

	if (!v || !*v) {
		if (!required)
			return PG_OK;
		snprintf(err, errlen, "credentials = env: %s is not set", name);
		return PG_ECONFIG;
	}
	*slot = dup_secret(v, strlen(v));
	if (!*slot) {
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	return PG_OK;
}

static pg_err
load_env(pg_aws_creds *out, char *err, size_t errlen)
{
	pg_err rc;

	rc = env_dup("AWS_ACCESS_KEY_ID", 1, &out->access_key_id, err, errlen);
	if (rc == PG_OK)
		rc = env_dup("AWS_SECRET_ACCESS_KEY", 1,
			     &out->secret_access_key, err, errlen);
	if (rc == PG_OK)
		rc = env_dup("AWS_SESSION_TOKEN", 0, &out->session_token, err,
			     errlen);
	return rc;
}

pg_err
pg_aws_creds_load(const pg_config *cfg, pg_aws_creds *out, char *err,
		  size_t errlen)
{
	pg_err rc = PG_ECONFIG;
	const char *profile;

	if (!out)
		return PG_EINTERNAL;
	memset(out, 0, sizeof(*out));
	if (!cfg) {
		snprintf(err, errlen, "no configuration");
		return PG_EINTERNAL;
	}
	switch (cfg->aws.credentials) {
	case PG_CREDS_FILE:
		if (!cfg->aws.credentials_path || !*cfg->aws.credentials_path) {
			snprintf(err, errlen,
				 "credentials = file: needs a path");
			goto out;
		}
		profile = cfg->aws.profile && *cfg->aws.profile
				  ? cfg->aws.profile
				  : "default";
		rc = load_file(cfg->aws.credentials_path, profile, out, err,
			       errlen);
		break;
	case PG_CREDS_ENV:
		rc = load_env(out, err, errlen);
		break;
	case PG_CREDS_INSTANCE_PROFILE:
		snprintf(err, errlen,
			 "credentials = instance-profile is not supported yet");
		rc = PG_ECONFIG;
		break;
	default:
		snprintf(err, errlen, "unknown credentials source");
		rc = PG_ECONFIG;
		break;
	}
out:
	if (rc != PG_OK)
		pg_aws_creds_wipe(out);
	return rc;
}
