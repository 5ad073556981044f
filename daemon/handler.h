/*
 * handler.h - one request, start to answer.
 *
 * A worker owns a pg_worker (its LDAP connection and HTTP handle, rebuilt
 * when the configuration generation changes) and calls pg_handle() for
 * each accepted connection: read one line within the deadline, decode it
 * strictly, establish who is asking, gather, decide, issue, answer.
 */
#ifndef PMPGATED_HANDLER_H
#define PMPGATED_HANDLER_H

#include <stdint.h>
#include <sys/types.h>

#include "../core/config.h"
#include "../core/credcache.h"
#include "../core/directory.h"
#include "../core/gather.h"
#include "../core/http.h"
#include "../core/audit.h"
#include "../core/ledger.h"

typedef struct pg_worker {
	int id;
	pg_dir *dir;
	pg_http *http;		/* STS */
	pg_fetcher *fetch;	/* fetches the ticket while dir is asked */
	unsigned gen;		/* the config generation dir was built for */
} pg_worker;

/* What the server knows about a connection. */
typedef struct pg_conn {
	int fd;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int64_t accepted_ms;	/* pg_mono_ms() at accept: the deadline
				   counts from here, queueing included */
} pg_conn;

/* Process info for "status". */
typedef struct pg_daemon_info {
	const char *config_path;
	int workers;
	long started;		/* epoch seconds */
} pg_daemon_info;

/* What one request may use: the configuration and the services opened
 * for it (they live as long as the configuration generation does). */
typedef struct pg_ctx {
	const pg_config *cfg;
	pg_ledger *ledger;
	const pg_daemon_info *info;
	pg_credcache *cache;	/* issued credentials for reuse, or NULL */
	pg_audit *audit;	/* the audit trail (one per daemon) */
} pg_ctx;

/* Bring W up to date with CFG of generation GEN (rebuilding its
 * directory connection when the generation changed).  0 or -1. */
int pg_worker_bind(pg_worker *w, const pg_config *cfg, unsigned gen);
void pg_worker_release(pg_worker *w);

/* Serve one connection; does not close c->fd. */
void pg_handle(pg_worker *w, const pg_ctx *ctx, const pg_conn *c);

/* 1 when the peer of C (user PW, NULL when it has no name) may make
 * administrative requests (check, review, doctor): uid 0, or a member of
 * [daemon] admin_group (primary or supplementary group). */
struct passwd;
int pg_is_admin(const pg_config *cfg, const pg_conn *c,
		const struct passwd *pw);

/* Answer "busy" without reading (the server is overloaded). */
void pg_answer_busy(int fd, const char *why);

#endif
