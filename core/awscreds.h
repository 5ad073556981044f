/*
 * awscreds.h - AWS credentials: the daemon's base credentials and the
 * short-lived ones STS issues.  All three strings are secrets (the access
 * key id is not, but is kept with them) and are wiped by pg_aws_creds_wipe.
 *
 * Base credential sources ([aws] credentials):
 *   file:PATH  an AWS shared-credentials INI file (profile [aws] profile,
 *              default "default"; keys aws_access_key_id,
 *              aws_secret_access_key, optional aws_session_token), checked
 *              as a secret file (secret.h);
 *   env        AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *              of the daemon's environment (tests only);
 *   instance-profile  IMDSv2 (not yet: PG_ECONFIG "not supported").
 */
#ifndef PMPGATE_AWSCREDS_H
#define PMPGATE_AWSCREDS_H

#include <stdint.h>

#include "config.h"
#include "err.h"

typedef struct pg_aws_creds {
	char *access_key_id;
	char *secret_access_key;
	char *session_token;	/* NULL when none */
	int64_t expiration;	/* epoch seconds, 0 when none */
} pg_aws_creds;

/* Load the base credentials.  PG_ECONFIG with a message (never the
 * secret) when missing or malformed. */
pg_err pg_aws_creds_load(const pg_config *cfg, pg_aws_creds *out, char *err,
			 size_t errlen);

/* Wipe and free every member; safe on a zeroed struct. */
void pg_aws_creds_wipe(pg_aws_creds *c);

#endif
