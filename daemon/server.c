/* server.c - socket, worker pool, config swap, signals; see server.h. */
#include "server.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../core/deadline.h"
#include "../core/log.h"
#include "handler.h"

/* A configuration in use: freed when retired and no worker holds it. */
typedef struct holder {
	pg_config *cfg;
	pg_ledger *ledger;
	pg_credcache *cache;	/* credentials issued under this config */
	unsigned gen;
	int refs;
	int retired;
} holder;

#define MAX_QUEUE 256

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	holder *current;
	pg_conn queue[MAX_QUEUE];
	size_t head, count, cap;
	struct { uid_t uid; int n; } per_uid[MAX_QUEUE + 64];
	int stopping;
	pg_daemon_info info;
	pg_audit *audit;	/* one trail for the daemon's life */
} S = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

pg_err
pg_server_listen(const char *path, int *fd, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	mode_t old_mask;
	int s = -1, rc;
	pg_err e = PG_ECONFIG;

	*fd = -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: socket path too long", path);
		goto out;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket",
				 path);
			goto out;
		}
		(void)unlink(path);
	}
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* Mode 0666 from bind() itself: no chmod by name that a swapped
	 * path could redirect. */
	old_mask = umask(0111);
	rc = s < 0 ? -1 : bind(s, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_mask);
	if (rc != 0 || listen(s, 128) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		e = PG_EUNAVAIL;
		goto out;
	}
	*fd = s;
	s = -1;
	e = PG_OK;
out:
	if (s >= 0)
		close(s);
	return e;
}

static void
holder_free(holder *h)
{
	pg_credcache_free(h->cache);	/* wipes every entry */
	pg_ledger_close(h->ledger);
	pg_config_free(h->cfg);
	free(h);
}

static holder *
acquire(void)
{
	holder *h;

	pthread_mutex_lock(&S.lock);
	h = S.current;
	h->refs++;
	pthread_mutex_unlock(&S.lock);
	return h;
}

static void
release(holder *h)
{
	int drop;

	pthread_mutex_lock(&S.lock);
	drop = --h->refs == 0 && h->retired;
	pthread_mutex_unlock(&S.lock);
	if (drop)
		holder_free(h);
}

/* Make CFG (and the services opened for it) current; takes both over. */
static int
swap_config(pg_config *cfg, pg_ledger *ledger)
{
	holder *h = calloc(1, sizeof(*h)), *old;
	int drop;

	if (h == NULL)
		return -1;
	h->cfg = cfg;
	h->ledger = ledger;
	/* A new configuration starts with an empty credential cache (roles,
	 * policies or STS may have changed); without one every issuance
	 * simply asks STS. */
	h->cache = pg_credcache_new(PG_CREDCACHE_DEFAULT);
	if (h->cache == NULL)
		pg_log(LOG_WARNING, "no credential cache: out of memory");
	pthread_mutex_lock(&S.lock);
	old = S.current;
	h->gen = old != NULL ? old->gen + 1 : 1;
	S.current = h;
	drop = 0;
	if (old != NULL) {
		old->retired = 1;
		drop = old->refs == 0;
	}
	pthread_mutex_unlock(&S.lock);
	if (drop)
		holder_free(old);
	return 0;
}

/* Per-uid accounting; call with S.lock held.  delta +1 may refuse. */
static int
uid_adjust(uid_t uid, int delta, int max)
{
	size_t i, free_slot = (size_t)-1;
	const size_t n = sizeof(S.per_uid) / sizeof(S.per_uid[0]);

	for (i = 0; i < n; i++) {
		if (S.per_uid[i].n > 0 && S.per_uid[i].uid == uid) {
			if (delta > 0 && S.per_uid[i].n >= max)
				return -1;
			S.per_uid[i].n += delta;
			return 0;
		}
		if (S.per_uid[i].n == 0 && free_slot == (size_t)-1)
			free_slot = i;
	}
	if (delta < 0 || free_slot == (size_t)-1)
		return delta < 0 ? 0 : -1;
	S.per_uid[free_slot].uid = uid;
	S.per_uid[free_slot].n = 1;
	return 0;
}

static void *
worker_main(void *arg)
{
	pg_worker *w = arg;
	pg_conn c;
	holder *h;

	for (;;) {
		pthread_mutex_lock(&S.lock);
		while (S.count == 0 && !S.stopping)
			pthread_cond_wait(&S.cond, &S.lock);
		if (S.count == 0 && S.stopping) {
			pthread_mutex_unlock(&S.lock);
			break;
		}
		c = S.queue[S.head];
		S.head = (S.head + 1) % S.cap;
		S.count--;
		pthread_mutex_unlock(&S.lock);

		h = acquire();
		if (pg_worker_bind(w, h->cfg, h->gen) == 0) {
			pg_ctx ctx = { .cfg = h->cfg, .ledger = h->ledger,
				       .info = &S.info, .cache = h->cache,
				       .audit = S.audit };

			pg_handle(w, &ctx, &c);
		} else
			pg_answer_busy(c.fd, "worker could not start");
		release(h);
		close(c.fd);

		pthread_mutex_lock(&S.lock);
		uid_adjust(c.uid, -1, 0);
		pthread_mutex_unlock(&S.lock);
	}
	pg_worker_release(w);
	return NULL;
}

/*
 * Root speaks for every login (the PAM module runs in sshd, login, su...),
 * so one login must not wait on another's per-uid share: root may fill
 * half the queue (or max_per_uid, if more), and the other half stays for
 * the credential helpers of ordinary users even while root floods.
 */
static int
root_limit(int max_per_uid)
{
	int half = (int)(S.cap / 2);

	return half > max_per_uid ? half : max_per_uid;
}

/* Queue an accepted connection or answer busy. */
static void
enqueue(int fd, const struct ucred *uc, int max_per_uid)
{
	const char *busy = NULL;

	pthread_mutex_lock(&S.lock);
	if (S.count >= S.cap)
		busy = "too many requests queued";
	else if (uid_adjust(uc->uid, +1, uc->uid == 0 ?
			    root_limit(max_per_uid) : max_per_uid) != 0)
		busy = "too many requests from your uid";
	else {
		pg_conn *c = &S.queue[(S.head + S.count) % S.cap];

		c->fd = fd;
		c->uid = uc->uid;
		c->gid = uc->gid;
		c->pid = uc->pid;
		c->accepted_ms = pg_mono_ms();
		S.count++;
		pthread_cond_signal(&S.cond);
	}
	pthread_mutex_unlock(&S.lock);
	if (busy != NULL) {
		pg_log(LOG_WARNING, "busy: %s (uid %u)", busy,
		       (unsigned)uc->uid);
		pg_answer_busy(fd, busy);
		close(fd);
	}
}

/* Load PATH and open its services: all or nothing. */
static int
load(const char *path, pg_config **cfg, pg_ledger **ledger, char *err,
     size_t errlen)
{
	*cfg = NULL;
	*ledger = NULL;
	if (pg_config_load(path, cfg, err, errlen) != PG_OK)
		return -1;
	if (pg_ledger_open(*cfg, ledger, err, errlen) != PG_OK) {
		pg_config_free(*cfg);
		*cfg = NULL;
		return -1;
	}
	return 0;
}

static void
reload(const char *path)
{
	char err[512];
	pg_config *cfg = NULL;
	pg_ledger *ledger = NULL;

	/* SIGHUP also follows a rotation: the trail continues in a new
	 * file, whatever becomes of the configuration. */
	if (pg_audit_reopen(S.audit, err, sizeof(err)) != PG_OK)
		pg_log(LOG_ERR, "audit trail: %s: requests are refused until "
		       "it can be written", err);
	if (load(path, &cfg, &ledger, err, sizeof(err)) != 0) {
		pg_log(LOG_ERR, "reload failed, keeping the running "
		       "configuration: %s", err);
		return;
	}
	if (swap_config(cfg, ledger) != 0) {
		pg_ledger_close(ledger);
		pg_config_free(cfg);
		pg_log(LOG_ERR, "reload failed: out of memory");
		return;
	}
	pg_log(LOG_NOTICE, "configuration reloaded from %s", path);
}

int
pg_server_run(int lfd, pg_config *cfg, const char *config_path,
	      pg_audit *audit)
{
	S.audit = audit;
	pthread_t tid[64];
	pg_worker *workers = NULL;
	pg_ledger *ledger = NULL;
	char err[512];
	struct pollfd pfd[2];
	sigset_t set;
	int sfd = -1, i, n = cfg->daemon.workers, started = 0, rc = -1;
	int max_per_uid = cfg->daemon.max_per_uid;

	if (n < 1 || n > 64)
		n = 4;
	S.cap = (size_t)n * 8 < MAX_QUEUE ? (size_t)n * 8 : MAX_QUEUE;
	S.info.config_path = config_path;
	S.info.workers = n;
	S.info.started = (long)time(NULL);
	if (pg_ledger_open(cfg, &ledger, err, sizeof(err)) != PG_OK) {
		pg_log(LOG_ERR, "cannot open the issuance ledger: %s", err);
		pg_config_free(cfg);
		return -1;
	}
	if (swap_config(cfg, ledger) != 0) {
		pg_ledger_close(ledger);
		pg_config_free(cfg);
		return -1;
	}

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	workers = calloc((size_t)n, sizeof(*workers));
	if (sfd < 0 || workers == NULL) {
		pg_log(LOG_ERR, "cannot start: %s", strerror(errno));
		goto out;
	}
	for (i = 0; i < n; i++) {
		workers[i].id = i;
		if (pthread_create(&tid[i], NULL, worker_main, &workers[i]) != 0)
			break;
		started++;
	}
	if (started != n) {
		pg_log(LOG_ERR, "cannot start %d workers", n);
		goto stop;
	}
	pg_log(LOG_NOTICE, "pmpgated %s ready, %d workers", PG_VERSION, n);

	pfd[0].fd = lfd;
	pfd[0].events = POLLIN;
	pfd[1].fd = sfd;
	pfd[1].events = POLLIN;
	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			pg_log(LOG_ERR, "poll: %s", strerror(errno));
			goto stop;
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					reload(config_path);
					continue;
				}
				pg_log(LOG_NOTICE, "signal %u: finishing requests "
				       "in flight and stopping", si.ssi_signo);
				rc = 0;
				goto stop;
			}
		}
		if (pfd[0].revents & POLLIN) {
			struct ucred uc;
			socklen_t ul = sizeof(uc);
			int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (cfd < 0)
				continue;	/* EMFILE etc.: try again */
			if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &uc,
				       &ul) != 0 || ul != sizeof(uc)) {
				close(cfd);
				continue;
			}
			enqueue(cfd, &uc, max_per_uid);
		}
	}
stop:
	close(lfd);
	pthread_mutex_lock(&S.lock);
	S.stopping = 1;
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.lock);
	for (i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
out:
	if (sfd >= 0)
		close(sfd);
	free(workers);
	pthread_mutex_lock(&S.lock);
	if (S.current != NULL) {
		S.current->retired = 1;
		if (S.current->refs == 0)
			holder_free(S.current);
		S.current = NULL;
	}
	pthread_mutex_unlock(&S.lock);
	return rc;
}
