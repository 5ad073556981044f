/*
 * auditprobe - append audit records through core/audit.c, without the
 * daemon: for crash, concurrency, rotation and disk-full tests.
 *
 *   auditprobe [options] LOG KEY
 *     -n N       append N generated records (default 1; 0 only opens;
 *                -1 appends until killed)
 *     -j         append the records read from stdin instead: one JSON
 *                object a line with the members of pg_audit_rec
 *                (event, user, uid, role, ticket, rules, reason,
 *                approvers, duration, expiration (epoch), access_key_id,
 *                sts_request_id, service, tty, rhost, pid)
 *     -S         [audit] syslog = yes (default no)
 *     -s COPY    after each append, add the syslog line a syslog daemon
 *                would store ("Mon DD HH:MM:SS HOST auditprobe[PID]:
 *                pmpgate-audit seq=... hash=...") to the file COPY
 *     -F BYTES   RLIMIT_FSIZE (SIGXFSZ ignored, as in the daemon)
 *     -m MOVED   halfway through -n, rename LOG to MOVED and reopen
 *     -q         quiet: no "ok" line per record
 *     -G N       generate N signed records into LOG with core/auditchain.c
 *                directly, buffered, without fsync (benchmarks only)
 *
 * Prints "ok seq=N hash=H" per record; on failure "error KIND: message"
 * and exits with pg_err_exit() (4 for the audit trail).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../../core/audit.h"
#include "../../core/auditchain.h"
#include "../../core/config.h"
#include "../../core/err.h"
#include "../../core/secret.h"

static int quiet;

static pg_err
fail(pg_err e, const char *msg)
{
	printf("error %s: %s\n", pg_err_name(e), msg);
	fflush(stdout);
	return e;
}

static void
syslog_copy(const char *path, unsigned long long seq, const char *hash,
	    const char *event, const char *user)
{
	char text[512], host[128], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	FILE *f;

	if (path == NULL)
		return;
	pg_auditchain_syslog_text(seq, hash, event, user, text, sizeof(text));
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
	f = fopen(path, "a");
	if (f == NULL)
		return;
	fprintf(f, "%s %s auditprobe[%ld]: %s\n", stamp, host, (long)getpid(),
		text);
	fclose(f);
}

static const char *
jget_s(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static long long
jget_i(json_t *o, const char *k, long long dflt)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

/* An array of strings as a borrowed vector (at most 64). */
static size_t
jget_v(json_t *o, const char *k, const char **v)
{
	json_t *a = json_object_get(o, k), *e;
	size_t i, n = 0;

	json_array_foreach(a, i, e)
		if (json_is_string(e) && n < 64)
			v[n++] = json_string_value(e);
	return n;
}

static pg_err
append_one(pg_audit *a, const pg_audit_rec *r, const char *copy)
{
	pg_audit_receipt rc;
	char err[1024];
	pg_err e;

	e = pg_audit_append_receipt(a, r, &rc, err, sizeof(err));
	if (e != PG_OK)
		return fail(e, err);
	syslog_copy(copy, rc.seq, rc.hash, r->event, r->user);
	if (!quiet) {
		printf("ok seq=%llu hash=%s\n", rc.seq, rc.hash);
		fflush(stdout);
	}
	return PG_OK;
}

/* A plausible record number I (events cycle through the five). */
static void
generated(long long i, pg_audit_rec *r, const char **rules,
	  const char **approvers)
{
	static const char *const events[] = { "permit", "grant", "issued",
					      "deny", "error" };
	static char ticket[32];

	memset(r, 0, sizeof(*r));
	snprintf(ticket, sizeof(ticket), "CHG%07lld", i % 10000000);
	r->event = events[i % 5];
	r->user = i % 2 ? "alice" : "bob";
	r->uid = 20001 + (i % 2);
	r->role = i % 3 ? "procurement-manager" : "pmp-administrator";
	r->ticket = ticket;
	rules[0] = "R4";
	rules[1] = "R6";
	approvers[0] = "erin";
	approvers[1] = "frank";
	if (strcmp(r->event, "deny") == 0 || strcmp(r->event, "error") == 0) {
		r->rules = rules;
		r->n_rules = strcmp(r->event, "deny") == 0 ? 2 : 1;
		if (r->n_rules == 1)
			rules[0] = "R9";
		r->reason = "refused by the probe";
	} else {
		r->reason = "allowed by the probe";
		r->approvers = approvers;
		r->n_approvers = 2;
		r->duration = 3600;
	}
	if (strcmp(r->event, "issued") == 0) {
		r->expiration = (long long)time(NULL) + 3600;
		r->access_key_id = "ASIAPROBE0000000000";
		r->sts_request_id = "0f1e2d3c-0000-4000-8000-000000000000";
	}
	r->service = "sshd";
	r->tty = "pts/1";
	r->rhost = "192.0.2.10";
	r->pid = 4242;
}

static pg_err
from_stdin(pg_audit *a, const char *copy)
{
	char *line = NULL;
	size_t cap = 0;
	pg_err e = PG_OK;

	while (e == PG_OK && getline(&line, &cap, stdin) >= 0) {
		const char *rules[64], *approvers[64];
		json_error_t jerr;
		pg_audit_rec r;
		json_t *o = json_loads(line, 0, &jerr);

		if (!json_is_object(o)) {
			json_decref(o);
			e = fail(PG_EUSAGE, "stdin: not a JSON object");
			break;
		}
		memset(&r, 0, sizeof(r));
		r.event = jget_s(o, "event");
		r.user = jget_s(o, "user");
		r.uid = (long)jget_i(o, "uid", -1);
		r.role = jget_s(o, "role");
		r.ticket = jget_s(o, "ticket");
		r.n_rules = jget_v(o, "rules", rules);
		r.rules = rules;
		r.reason = jget_s(o, "reason");
		r.n_approvers = jget_v(o, "approvers", approvers);
		r.approvers = approvers;
		r.duration = jget_i(o, "duration", 0);
		r.expiration = jget_i(o, "expiration", 0);
		r.access_key_id = jget_s(o, "access_key_id");
		r.sts_request_id = jget_s(o, "sts_request_id");
		r.service = jget_s(o, "service");
		r.tty = jget_s(o, "tty");
		r.rhost = jget_s(o, "rhost");
		r.pid = (long)jget_i(o, "pid", 0);
		e = append_one(a, &r, copy);
		json_decref(o);
	}
	free(line);
	return e;
}

/* -G: N records straight from core/auditchain.c, for benchmarks. */
static pg_err
generate(const char *log, const char *keyfile, long long n, const char *copy)
{
	char hash[PG_AUDIT_HASH_HEX + 1], prev[PG_AUDIT_HASH_HEX + 1];
	char err[512], ts[32];
	pg_auditkey *key = NULL;
	pg_secret pem = { 0 };
	FILE *out = NULL, *cf = NULL;
	pg_err e;

	e = pg_secret_read_file(keyfile, &pem, err, sizeof(err));
	if (e == PG_OK)
		e = pg_auditkey_load_private(pem.buf, pem.len, &key, err,
					     sizeof(err));
	pg_secret_wipe(&pem);
	if (e != PG_OK)
		return fail(e, err);
	out = fopen(log, "wx");
	if (out == NULL) {
		e = fail(PG_EAUDIT, strerror(errno));
		goto out;
	}
	if (copy != NULL && (cf = fopen(copy, "w")) == NULL) {
		e = fail(PG_EAUDIT, strerror(errno));
		goto out;
	}
	memcpy(prev, PG_AUDIT_GENESIS, sizeof(prev));
	snprintf(ts, sizeof(ts), "2026-01-01T00:00:00Z");
	for (long long i = 1; i <= n; i++) {
		const char *rules[2], *approvers[2];
		pg_audit_link link = { .seq = (unsigned long long)i,
				       .prev = prev, .ts = ts,
				       .host = "bench" };
		pg_audit_rec r;
		char *line;
		size_t len;

		generated(i, &r, rules, approvers);
		e = pg_auditchain_build(&r, &link, key, &line, &len, hash, err,
					sizeof(err));
		if (e != PG_OK) {
			fail(e, err);
			goto out;
		}
		fwrite(line, 1, len, out);
		free(line);
		if (cf != NULL) {
			char text[256];

			pg_auditchain_syslog_text((unsigned long long)i, hash,
						  r.event, r.user, text,
						  sizeof(text));
			fprintf(cf, "Jan  1 00:00:00 bench pmpgated[1]: %s\n",
				text);
		}
		memcpy(prev, hash, sizeof(prev));
	}
	if (fflush(out) != 0 || ferror(out))
		e = fail(PG_EAUDIT, "write error");
out:
	if (out != NULL)
		fclose(out);
	if (cf != NULL)
		fclose(cf);
	pg_auditkey_free(key);
	return e;
}

int
main(int argc, char **argv)
{
	pg_config cfg;
	pg_audit *a = NULL;
	const char *copy = NULL, *moved = NULL;
	long long n = 1, gen = -1, fsize = -1;
	int opt, from_json = 0;
	char err[1024];
	pg_err e = PG_OK;

	memset(&cfg, 0, sizeof(cfg));
	while ((opt = getopt(argc, argv, "n:jSs:F:m:qG:")) != -1) {
		switch (opt) {
		case 'n': n = strtoll(optarg, NULL, 10); break;
		case 'j': from_json = 1; break;
		case 'S': cfg.audit.syslog = 1; break;
		case 's': copy = optarg; break;
		case 'F': fsize = strtoll(optarg, NULL, 10); break;
		case 'm': moved = optarg; break;
		case 'q': quiet = 1; break;
		case 'G': gen = strtoll(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	if (argc - optind != 2)
		goto usage;
	if (gen >= 0)
		return pg_err_exit(generate(argv[optind], argv[optind + 1], gen,
					    copy));
	if (fsize >= 0) {
		struct rlimit rl = { (rlim_t)fsize, (rlim_t)fsize };

		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			return pg_err_exit(fail(PG_EINTERNAL, strerror(errno)));
	}
	cfg.audit.path = argv[optind];
	cfg.audit.signing_key = argv[optind + 1];
	e = pg_audit_open(&cfg, &a, err, sizeof(err));
	if (e != PG_OK) {
		fail(e, err);
		goto out;
	}
	if (from_json) {
		e = from_stdin(a, copy);
		goto out;
	}
	for (long long i = 0; n < 0 || i < n; i++) {
		const char *rules[2], *approvers[2];
		pg_audit_rec r;

		if (moved != NULL && i == n / 2) {
			if (rename(argv[optind], moved) != 0) {
				e = fail(PG_EINTERNAL, strerror(errno));
				goto out;
			}
			e = pg_audit_reopen(a, err, sizeof(err));
			if (e != PG_OK) {
				fail(e, err);
				goto out;
			}
		}
		generated(i, &r, rules, approvers);
		e = append_one(a, &r, copy);
		if (e != PG_OK)
			goto out;
	}
out:
	pg_audit_close(a);
	return pg_err_exit(e);
usage:
	fprintf(stderr, "usage: auditprobe [-n N|-j] [-S] [-s COPY] [-F BYTES] "
		"[-m MOVED] [-q] LOG KEY\n       auditprobe -G N [-s COPY] LOG "
		"KEY\n");
	return PG_EXIT_USAGE;
}
