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
 *   instance-profile  the EC2 instance profile's role credentials through
 *              IMDSv2 at [aws] metadata_endpoint (default
 *              PG_IMDS_DEFAULT_ENDPOINT):
 *                PUT  /latest/api/token
 *                     (X-aws-ec2-metadata-token-ttl-seconds: 60)
 *                GET  /latest/meta-data/iam/security-credentials/
 *                GET  /latest/meta-data/iam/security-credentials/ROLE
 *              the GETs with X-aws-ec2-metadata-token.  Plain HTTP to the
 *              link-local endpoint (as IMDS is), never through a proxy,
 *              no redirects, at most PG_IMDS_TIMEOUT_MS for the three
 *              requests (PG_IMDS_CONNECT_TIMEOUT_MS to connect), each answer
 *              size-bounded.  The session token of IMDS is a secret: it is
 *              used for those two GETs only and wiped.  No AWS_EC2_METADATA_*
 *              environment variable is read.
 *
 * Instance-profile credentials are cached process-wide (one mutex): a load
 * hands out a copy of the cached ones while they remain valid for more than
 * PG_IMDS_REFRESH_S seconds (AWS rotates them at least five minutes before
 * they expire), so an issuance normally costs no IMDS request.  Closer to
 * their expiration, or when the endpoint changed (a reload), they are
 * fetched again; a failed refresh is an error (the stale ones are wiped,
 * never used).
 *
 * Errors: PG_ECONFIG for configuration problems; PG_EUNAVAIL when IMDS is
 * unreachable, times out or answers an HTTP error (the message names the
 * step and the status); PG_EPROTO for an answer that cannot be accepted;
 * PG_ETIMEOUT when the caller's deadline passed first.  Messages never
 * carry the IMDS token, a secret key or a session token.
 */
#ifndef PMPGATE_AWSCREDS_H
#define PMPGATE_AWSCREDS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "deadline.h"
#include "err.h"

typedef struct pg_aws_creds {
	char *access_key_id;
	char *secret_access_key;
	char *session_token;	/* NULL when none */
	int64_t expiration;	/* epoch seconds, 0 when none */
} pg_aws_creds;

#define PG_IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"
#define PG_IMDS_TIMEOUT_MS 2000		/* the three requests together */
#define PG_IMDS_CONNECT_TIMEOUT_MS 1000
#define PG_IMDS_REFRESH_S 300		/* refresh this long before expiry */
#define PG_IMDS_MIN_VALIDITY_S 60	/* fetched ones must outlast this */
#define PG_IMDS_ROLE_MAX 64		/* an IAM role name's length bound */
#define PG_IMDS_LIST_MAX 1024		/* the role listing answer's bound */
#define PG_IMDS_CREDS_MAX 16384		/* the credentials answer's bound */

/* Load the base credentials.  PG_ECONFIG with a message (never the
 * secret) when missing or malformed; for instance-profile, the errors
 * above, with the deadline PG_IMDS_TIMEOUT_MS from now. */
pg_err pg_aws_creds_load(const pg_config *cfg, pg_aws_creds *out, char *err,
			 size_t errlen);

/* As pg_aws_creds_load, never beyond the request deadline DL (IMDS
 * requests are bounded by min(DL, PG_IMDS_TIMEOUT_MS)).  *out is the
 * caller's own copy: wipe it with pg_aws_creds_wipe. */
pg_err pg_aws_creds_load_by(const pg_config *cfg, pg_deadline dl,
			    pg_aws_creds *out, char *err, size_t errlen);

/* Wipe and free every member; safe on a zeroed struct. */
void pg_aws_creds_wipe(pg_aws_creds *c);

/* Wipe the cached instance-profile credentials (at exit; safe to call
 * at any time, the next load fetches again). */
void pg_aws_creds_cache_clear(void);

/*
 * The pure parts of the IMDS exchange, for tests.
 *
 * pg_imds_parse_role: BODY (LEN bytes, not necessarily NUL-terminated) is
 * the answer to GET .../iam/security-credentials/.  Its first line (a
 * trailing "\r" dropped) must be an IAM role name: 1 to PG_IMDS_ROLE_MAX
 * characters of [A-Za-z0-9+=,.@_-] (so no '/', blank or control
 * character).  It is copied to ROLE (ROLELEN > PG_IMDS_ROLE_MAX).
 * PG_EPROTO otherwise, or when LEN exceeds PG_IMDS_LIST_MAX.
 *
 * pg_imds_parse_creds: BODY (LEN bytes) is the answer to
 * GET .../iam/security-credentials/ROLE: one JSON object (nothing after
 * it, no duplicate key) with "Code": "Success" and non-empty strings
 * "AccessKeyId" (16 to 128 letters and digits), "SecretAccessKey" and
 * "Token" (printable ASCII without blanks), "Expiration" (RFC 3339) later
 * than NOW + PG_IMDS_MIN_VALIDITY_S; other members are ignored.  On
 * success *out holds new copies (session_token set, expiration set).
 * PG_EPROTO otherwise (nothing in *out), or when LEN exceeds
 * PG_IMDS_CREDS_MAX; PG_ENOMEM.
 */
pg_err pg_imds_parse_role(const char *body, size_t len, char *role,
			  size_t rolelen, char *err, size_t errlen);
pg_err pg_imds_parse_creds(const char *body, size_t len, int64_t now,
			   pg_aws_creds *out, char *err, size_t errlen);

#endif
