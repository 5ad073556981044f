/*
 * sts.h - AWS STS AssumeRole over the Query API (DESIGN.md, "Issuing").
 *
 * POST form body to [aws] sts_endpoint, signed with SigV4 by libcurl
 * (CURLOPT_AWS_SIGV4 "aws:amz:REGION:sts"), X-Amz-Security-Token when the
 * base credentials carry a session token, TLS verified with [aws] ca_file.
 * The answer is parsed with Expat (no DTD, no entities: a document with a
 * DOCTYPE is rejected).  Throttling and 5xx are retried with capped,
 * jittered backoff while the deadline allows.
 */
#ifndef PMPGATE_STS_H
#define PMPGATE_STS_H

#include <stddef.h>
#include <stdint.h>

#include "awscreds.h"
#include "config.h"
#include "deadline.h"
#include "err.h"
#include "http.h"

typedef struct pg_sts_assume {
	const char *role_arn;
	const char *user;		/* SourceIdentity and pmpgate:user */
	const char *ticket;		/* pmpgate:ticket */
	const char *const *approvers;	/* pmpgate:approvers, may be NULL */
	size_t n_approvers;
	int64_t duration;		/* DurationSeconds, 900..43200 */
	const char *policy;		/* session policy JSON or NULL */
	const char *external_id;	/* or NULL */
} pg_sts_assume;

typedef struct pg_sts_result {
	pg_aws_creds creds;		/* the issued credentials (secret) */
	char request_id[128];		/* from the answer's RequestId */
	char assumed_role_arn[512];
	char error_code[64];		/* STS <Code> on an error answer */
} pg_sts_result;

/*
 * AssumeRole.  PG_OK with out filled; PG_EUNAVAIL/PG_ETIMEOUT when STS
 * cannot be reached or refuses (err names the STS error code and message,
 * e.g. "STS AccessDenied: ..."); PG_EPROTO on an answer we cannot accept
 * (malformed XML, missing credentials, an Expiration already past).
 */
pg_err pg_sts_assume_role(pg_http *h, const pg_config *cfg,
			  const pg_aws_creds *base, const pg_sts_assume *req,
			  pg_deadline dl, pg_sts_result *out, char *err,
			  size_t errlen);

/* GetCallerIdentity with the base credentials (doctor, status). */
pg_err pg_sts_caller_identity(pg_http *h, const pg_config *cfg,
			      const pg_aws_creds *base, pg_deadline dl,
			      char *arn, size_t arnlen, char *err,
			      size_t errlen);

/* Pure steps, each tested with tables of vectors. */

/* RoleSessionName: "<user>@<ticket>", characters outside
 * [A-Za-z0-9+=,.@-] replaced by '-', cut to 64 bytes. */
void pg_sts_session_name(const char *user, const char *ticket, char *out,
			 size_t outlen);

/* A session tag value: characters outside [A-Za-z0-9 _.:/=+@-] replaced
 * by '_', cut to 256 bytes (shortened, never rejected). */
void pg_sts_tag_value(const char *in, char *out, size_t outlen);

/* The form body of an AssumeRole request (free()). */
char *pg_sts_assume_body(const pg_sts_assume *req);

/* Parse an AssumeRoleResponse.  now = current epoch for the expiry check. */
pg_err pg_sts_parse_assume(const char *xml, size_t len, int64_t now,
			   pg_sts_result *out, char *err, size_t errlen);

/* Parse an <ErrorResponse> into code and message. */
pg_err pg_sts_parse_error(const char *xml, size_t len, char *code,
			  size_t codelen, char *msg, size_t msglen);

void pg_sts_result_wipe(pg_sts_result *r);

#endif
