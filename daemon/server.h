/*
 * server.h - the listening socket, the bounded worker pool, the shared
 * configuration (swapped atomically on SIGHUP) and signal handling.
 *
 * The main thread accepts, reads the peer's credentials (SO_PEERCRED) and
 * queues the connection; a fixed number of workers serve the queue.  When
 * the queue is full, or one uid already has [daemon] max_per_uid requests
 * queued or running, the connection gets a "busy" answer at once instead of
 * waiting forever.  SIGHUP loads the configuration again and swaps it in
 * only if it is valid; SIGTERM/SIGINT stop accepting, finish the requests
 * already accepted and return.
 */
#ifndef PMPGATED_SERVER_H
#define PMPGATED_SERVER_H

#include <stddef.h>

#include "../core/audit.h"
#include "../core/config.h"
#include "../core/err.h"

/* Create the unix socket at PATH (removing a stale socket, never another
 * kind of file), mode 0666: the daemon, not the file mode, decides. */
pg_err pg_server_listen(const char *path, int *fd, char *err, size_t errlen);

/* Serve on LISTEN_FD with CFG (taken over: freed by the server) and the
 * audit trail AUDIT (reopened on SIGHUP, still the caller's to close)
 * until SIGTERM/SIGINT.  Returns 0 on a clean stop, -1 on a fatal error. */
int pg_server_run(int listen_fd, pg_config *cfg, const char *config_path,
		  pg_audit *audit);

#endif
