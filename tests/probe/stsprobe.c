/*
 * stsprobe - drive core/sts.c against a real STS endpoint (the harness's
 * emulator) with the base credentials and [aws] settings of a config file.
 *
 *   stsprobe CONFFILE assume ROLE USER TICKET DURATION [APPROVER...]
 *   stsprobe CONFFILE whoami
 *
 * Prints "key ...", "expiration ...", "request_id ...", "arn ...",
 * "secret_len N", "token_len N" (never the secret or the token), or
 * "error CLASS: message" on stderr; exits with pg_err_exit().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/awscreds.h"
#include "../../core/config.h"
#include "../../core/deadline.h"
#include "../../core/err.h"
#include "../../core/http.h"
#include "../../core/sts.h"
#include "../../core/timefmt.h"

/* The session policy named by the role, read whole (at most 16 KiB). */
static pg_err
read_policy(const char *path, char **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	size_t n;
	char *buf;

	*out = NULL;
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return PG_ECONFIG;
	}
	buf = malloc(16385);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	n = fread(buf, 1, 16385, f);
	fclose(f);
	if (n == 0 || n > 16384) {
		free(buf);
		snprintf(err, errlen, "%s: empty or larger than 16 KiB", path);
		return PG_ECONFIG;
	}
	buf[n] = '\0';
	*out = buf;
	return PG_OK;
}

static int
usage(void)
{
	fprintf(stderr,
		"usage: stsprobe CONFFILE assume ROLE USER TICKET DURATION "
		"[APPROVER...]\n"
		"       stsprobe CONFFILE whoami\n");
	return PG_EXIT_USAGE;
}

int
main(int argc, char **argv)
{
	pg_config *cfg = NULL;
	pg_aws_creds base = { 0 };
	pg_sts_result res;
	pg_http *h = NULL;
	pg_err rc = PG_EINTERNAL;
	char err[1024] = "", exp[32], arn[512];
	const pg_role_cfg *role;
	pg_sts_assume req;
	pg_deadline dl;
	char *end, *policy = NULL;
	long long dur;
	int http_ready = 0;

	memset(&res, 0, sizeof(res));
	if (argc < 3)
		return usage();
	if (strcmp(argv[2], "assume") == 0) {
		if (argc < 7)
			return usage();
	} else if (strcmp(argv[2], "whoami") != 0 || argc != 3) {
		return usage();
	}

	rc = pg_config_load(argv[1], &cfg, err, sizeof(err));
	if (rc != PG_OK)
		goto out;
	rc = pg_aws_creds_load(cfg, &base, err, sizeof(err));
	if (rc != PG_OK)
		goto out;
	rc = pg_http_global_init();
	if (rc != PG_OK) {
		snprintf(err, sizeof(err), "cannot initialise libcurl");
		goto out;
	}
	http_ready = 1;
	h = pg_http_new();
	if (!h) {
		rc = PG_ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	dl = pg_deadline_in(cfg->daemon.deadline_ms > 0 ? cfg->daemon.deadline_ms
							: 10000);

	if (strcmp(argv[2], "whoami") == 0) {
		rc = pg_sts_caller_identity(h, cfg, &base, dl, arn, sizeof(arn),
					    err, sizeof(err));
		if (rc == PG_OK)
			printf("arn %s\n", arn);
		goto out;
	}

	role = pg_config_role(cfg, argv[3]);
	if (!role) {
		rc = PG_EUSAGE;
		snprintf(err, sizeof(err), "no role %s in %s", argv[3], argv[1]);
		goto out;
	}
	errno = 0;
	dur = strtoll(argv[6], &end, 10);
	if (errno || *end || end == argv[6]) {
		rc = PG_EUSAGE;
		snprintf(err, sizeof(err), "bad duration %s", argv[6]);
		goto out;
	}
	memset(&req, 0, sizeof(req));
	req.role_arn = role->role_arn;
	req.user = argv[4];
	req.ticket = argv[5];
	req.duration = dur;
	req.approvers = (const char *const *)(argv + 7);
	req.n_approvers = (size_t)(argc - 7);
	req.external_id = role->external_id;
	if (role->session_policy_file) {
		rc = read_policy(role->session_policy_file, &policy, err,
				 sizeof(err));
		if (rc != PG_OK)
			goto out;
		req.policy = policy;
	}
	rc = pg_sts_assume_role(h, cfg, &base, &req, dl, &res, err,
				sizeof(err));
	if (rc != PG_OK) {
		if (res.error_code[0])
			printf("error_code %s\n", res.error_code);
		goto out;
	}
	pg_time_format(res.creds.expiration, exp, sizeof(exp));
	printf("key %s\n", res.creds.access_key_id);
	printf("expiration %s\n", exp);
	printf("expiration_epoch %lld\n", (long long)res.creds.expiration);
	printf("request_id %s\n", res.request_id);
	printf("arn %s\n", res.assumed_role_arn);
	printf("secret_len %zu\n", strlen(res.creds.secret_access_key));
	printf("token_len %zu\n", strlen(res.creds.session_token));
out:
	if (rc != PG_OK)
		fprintf(stderr, "error %s: %s\n", pg_err_name(rc), err);
	free(policy);
	pg_sts_result_wipe(&res);
	pg_aws_creds_wipe(&base);
	pg_http_free(h);
	if (http_ready)
		pg_http_global_cleanup();
	if (cfg)
		pg_config_free(cfg);
	return pg_err_exit(rc);
}
