/*
 * directory.c - the LDAP directory through libldap; see directory.h.
 *
 * Connection: one LDAP handle per pg_dir.  The configured URIs are tried
 * in order; each attempt (TCP connect, TLS, bind) is bounded by
 * min([directory] timeout, request deadline).  TLS options are set on the
 * handle itself (the CA file and no CA directory, certificate checking
 * "demand", TLS >= 1.2) followed by LDAP_OPT_X_TLS_NEWCTX, so neither a
 * global libldap context nor ldap.conf can widen what is trusted.  The
 * TLS handshake, which libldap does not bound, is bounded by a watchdog
 * (see struct watchdog).  When an operation finds the
 * server gone (LDAP_SERVER_DOWN, LDAP_CONNECT_ERROR) the handle is
 * dropped and the operation is retried once on a new connection, within
 * the same deadline.  After a timeout the handle is dropped as well: an
 * answer that arrives late must not be taken for the next one.
 *
 * Lookups: every filter value is escaped by ldap_bv2escaped_filter_value;
 * searches ask for no attributes ("1.1") except the user's search (the
 * attributes that confirm the name, and memberOf) and where entries'
 * memberOf values are read.  A decision never reads a group's member
 * list; only pg_dir_group_members (the review report) does.
 *
 * Round trips: requests go out in rounds (dir_window): every request of a
 * round is sent, then every answer collected, so a round costs one round
 * trip however many requests it holds.  pg_dir_batch groups a decision's
 * lookups into as few rounds as their dependencies allow (see "batches"
 * below); pg_dir_is_member and pg_dir_resolve are batches of their own.
 *
 * Nesting: the walk goes upward from the user.  Level 1 is the groups
 * that hold the user directly; level k+1 the groups that hold a group of
 * level k.  max_depth bounds the number of nesting steps, so groups up to
 * level max_depth + 1 are reached (max_depth = 1: a group inside the
 * target group counts, a group two levels down does not).  A visited set
 * of normalised DNs makes cycles harmless.  memberUid groups (posixGroup)
 * hold user names, not DNs, and therefore cannot nest: with
 * group_membership = memberUid only direct membership counts.
 *
 * The memberOf kind reads the memberOf values of the user's own entry
 * and, when nesting, of each group's own entry (BFS, same bounds).
 *
 * Thread safety: a pg_dir is used by one thread at a time; there is no
 * global state here.  libldap may write to a socket whose peer has gone:
 * the process must ignore SIGPIPE.
 */
#include "directory.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <lber.h>
#include <ldap.h>

#include "secret.h"

/* Longest user or ticket name looked up. */
#define DIR_NAME_MAX 256

/* A connection attempt that fails with less than this left of its budget
 * is reported as a timeout. */
#define DIR_TIMEOUT_SLACK_MS 20

/*
 * The connect watchdog.  libldap bounds the TCP connect (NETWORK_TIMEOUT)
 * and every wait for a result (our ldap_result timeouts), but the TLS
 * handshake of an ldaps:// connection (and the one after StartTLS) runs
 * on a blocking socket with no timeout: a server that accepts and then
 * says nothing would hold the caller forever.  While a connection is being
 * set up, a watchdog thread holds a duplicate of its socket (taken in a
 * libldap connect callback) and shuts the socket down when the attempt's
 * budget runs out, which makes the blocked handshake fail at once.  The
 * duplicate belongs to the watchdog, so the descriptor it shuts down can
 * never be one that was closed and reused meanwhile.
 */
struct watchdog {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	int active;		/* a connection attempt is being watched */
	int done;		/* the attempt finished: stop watching */
	int expired;		/* the budget ran out */
	int fired;		/* ... and the socket was shut down */
	int fd;			/* our duplicate of the socket, or -1 */
	pg_deadline until;
};

struct pg_dir {
	const pg_config *cfg;
	LDAP *ld;		/* NULL while not connected */
	const char *uri;	/* the URI ld is connected to (in cfg) */
	int retries;		/* reconnects left in the current call */
	struct watchdog wd;
	struct ldap_conncb cb;	/* must live as long as the handle */
	char login[64];		/* the login attribute (see login_attr) */
};

/* ---- small helpers ---------------------------------------------------- */

static void
ms_to_tv(int64_t ms, struct timeval *tv)
{
	if (ms < 1)
		ms = 1;		/* 0 would mean "poll" or "forever" */
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

/* min(dl, now + [directory] timeout): the budget of one operation. */
static pg_deadline
op_deadline(const pg_dir *d, pg_deadline dl)
{
	return pg_deadline_in(pg_deadline_cap(dl, d->cfg->directory.timeout_ms));
}

static int
is_down(int rc)
{
	return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR;
}

/* The handle's diagnostic message (for TLS errors), or "". */
static void
ld_diag(LDAP *ld, char *buf, size_t len)
{
	char *msg = NULL;

	buf[0] = '\0';
	if (ld != NULL &&
	    ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg) ==
	    LDAP_OPT_SUCCESS && msg != NULL && msg[0] != '\0')
		snprintf(buf, len, msg[0] == '(' ? " %s" : " (%s)", msg);
	if (msg != NULL)
		ldap_memfree(msg);
}

/* A TLS setup that failed with a diagnostic from the TLS library: say
 * so, and what the certificate is checked against. */
static int
set_tls_err(char *err, size_t errlen, const char *uri, const char *what,
	    LDAP *ld, int rc, const char *ca_file)
{
	char diag[256];

	ld_diag(ld, diag, sizeof(diag));
	if (diag[0] == '\0')
		return 0;
	snprintf(err, errlen, "%s: %s: TLS handshake failed: %s%s; the server "
		 "certificate must chain to %s and name the host of the URI",
		 uri, what, ldap_err2string(rc), diag,
		 ca_file ? ca_file : "the system CAs");
	return 1;
}

/* err = "URI: WHAT: LDAP error string (diagnostic)". */
static void
set_ld_err(char *err, size_t errlen, const char *uri, const char *what,
	   LDAP *ld, int rc)
{
	char diag[256];

	ld_diag(ld, diag, sizeof(diag));
	snprintf(err, errlen, "%s: %s: %s%s", uri ? uri : "directory", what,
		 ldap_err2string(rc), diag);
}

static void
dir_drop(pg_dir *d)
{
	if (d->ld != NULL)
		ldap_unbind_ext_s(d->ld, NULL, NULL);
	d->ld = NULL;
	d->uri = NULL;
}

/* Is S valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)? */
static int
utf8_valid(const unsigned char *s)
{
	while (*s) {
		unsigned c = *s;
		size_t n, i;
		unsigned long cp;

		if (c < 0x80) {
			s++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1; cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2; cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3; cp = c & 0x07;
		} else {
			return 0;
		}
		for (i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i] & 0x3f);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
		    (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		s += n + 1;
	}
	return 1;
}

/* A name that may be looked up: 1..256 bytes of UTF-8, no control
 * characters.  WHAT names it in the message ("user name"). */
static pg_err
check_name(const char *s, const char *what, char *err, size_t errlen)
{
	size_t len;
	const unsigned char *p;

	if (s == NULL || s[0] == '\0') {
		snprintf(err, errlen, "%s is empty", what);
		return PG_EINVAL;
	}
	len = strnlen(s, DIR_NAME_MAX + 1);
	if (len > DIR_NAME_MAX) {
		snprintf(err, errlen, "%s is longer than %d bytes", what,
			 DIR_NAME_MAX);
		return PG_EINVAL;
	}
	for (p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(err, errlen, "%s contains a control character",
				 what);
			return PG_EINVAL;
		}
	}
	if (!utf8_valid((const unsigned char *)s)) {
		snprintf(err, errlen, "%s is not valid UTF-8", what);
		return PG_EINVAL;
	}
	return PG_OK;
}

/* An attribute description we may put in a filter (letters, digits, '-',
 * '.', ';'), so that a config value cannot change a filter's shape. */
static int
attr_ok(const char *a)
{
	if (a == NULL || a[0] == '\0')
		return 0;
	for (; *a; a++)
		if (!isalnum((unsigned char)*a) && *a != '-' && *a != '.' &&
		    *a != ';')
			return 0;
	return 1;
}

/* *out = libldap's filter escape of VALUE (free with ber_memfree). */
static pg_err
escape_value(const char *value, char **out, char *err, size_t errlen)
{
	struct berval in, esc = { 0, NULL };

	in.bv_val = (char *)value;
	in.bv_len = strlen(value);
	if (ldap_bv2escaped_filter_value(&in, &esc) != 0 || esc.bv_val == NULL) {
		snprintf(err, errlen, "out of memory escaping a filter value");
		return PG_ENOMEM;
	}
	*out = esc.bv_val;
	return PG_OK;
}

/* *out = TEMPLATE with every "%u" replaced by VALUE escaped (free()). */
static pg_err
build_filter(const char *tmpl, const char *value, char **out, char *err,
	     size_t errlen)
{
	char *esc = NULL, *buf = NULL;
	const char *p;
	size_t n = 0, elen, need = 1;
	pg_err e;

	*out = NULL;
	e = escape_value(value, &esc, err, errlen);
	if (e != PG_OK)
		goto out;
	elen = strlen(esc);
	for (p = tmpl; *p; p++) {
		if (p[0] == '%' && p[1] == 'u') {
			need += elen;
			p++;
		} else {
			need++;
		}
	}
	buf = malloc(need);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory building a filter");
		e = PG_ENOMEM;
		goto out;
	}
	for (p = tmpl; *p; p++) {
		if (p[0] == '%' && p[1] == 'u') {
			memcpy(buf + n, esc, elen);
			n += elen;
			p++;
		} else {
			buf[n++] = *p;
		}
	}
	buf[n] = '\0';
	*out = buf;
	buf = NULL;
	e = PG_OK;
out:
	if (esc != NULL)
		ber_memfree(esc);
	free(buf);
	return e;
}

/* "(ATTR=escaped VALUE)" (free()). */
static pg_err
attr_filter(const char *attr, const char *value, char **out, char *err,
	    size_t errlen)
{
	char *esc = NULL;
	pg_err e;
	int n;

	*out = NULL;
	e = escape_value(value, &esc, err, errlen);
	if (e != PG_OK)
		return e;
	n = asprintf(out, "(%s=%s)", attr, esc);
	ber_memfree(esc);
	if (n < 0) {
		*out = NULL;
		snprintf(err, errlen, "out of memory building a filter");
		return PG_ENOMEM;
	}
	return PG_OK;
}

/* A normalised, lower-cased copy of DN for the visited set (free()). */
static char *
dn_key(const char *dn)
{
	char *norm = NULL, *k, *p;

	if (ldap_dn_normalize(dn, LDAP_DN_FORMAT_LDAPV3, &norm,
			      LDAP_DN_FORMAT_LDAPV3) == LDAP_SUCCESS &&
	    norm != NULL) {
		k = strdup(norm);
		ldap_memfree(norm);
	} else {
		if (norm != NULL)
			ldap_memfree(norm);
		k = strdup(dn);
	}
	if (k != NULL)
		for (p = k; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return k;
}

int
pg_dn_equal(const char *a, const char *b)
{
	char *na = NULL, *nb = NULL;
	int eq;

	if (a == NULL || b == NULL)
		return 0;
	if (ldap_dn_normalize(a, LDAP_DN_FORMAT_LDAPV3, &na,
			      LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS ||
	    ldap_dn_normalize(b, LDAP_DN_FORMAT_LDAPV3, &nb,
			      LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS ||
	    na == NULL || nb == NULL)
		eq = strcasecmp(a, b) == 0;
	else
		eq = strcasecmp(na, nb) == 0;
	if (na != NULL)
		ldap_memfree(na);
	if (nb != NULL)
		ldap_memfree(nb);
	return eq;
}

/* ---- connect watchdog ------------------------------------------------------ */

static void *
wd_main(void *arg)
{
	struct watchdog *w = arg;
	struct timespec ts;
	int64_t until;

	pthread_mutex_lock(&w->mu);
	until = w->until;
	ts.tv_sec = (time_t)(until / 1000);
	ts.tv_nsec = (long)(until % 1000) * 1000000L;
	while (!w->done) {
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT &&
		    !w->done) {
			w->expired = 1;
			if (w->fd >= 0) {
				shutdown(w->fd, SHUT_RDWR);
				w->fired = 1;
			}
			break;
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* libldap's connect callback: keep a duplicate of the new socket. */
static int
wd_conn_add(LDAP *ld, Sockbuf *sb, LDAPURLDesc *srv, struct sockaddr *addr,
	    struct ldap_conncb *ctx)
{
	struct watchdog *w = ctx->lc_arg;
	ber_socket_t fd = -1;
	int rc = 0;

	(void)ld;
	(void)srv;
	(void)addr;
	pthread_mutex_lock(&w->mu);
	if (w->active && !w->done) {
		if (w->expired) {
			rc = -1;	/* too late: fail this connection */
		} else if (w->fd < 0 &&
			   ber_sockbuf_ctrl(sb, LBER_SB_OPT_GET_FD, &fd) == 1 &&
			   fd >= 0) {
			w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return rc;
}

static void
wd_conn_del(LDAP *ld, Sockbuf *sb, struct ldap_conncb *ctx)
{
	(void)ld;
	(void)sb;
	(void)ctx;
}

/* Watch a connection attempt until UNTIL.  Returns 0, or -1 when no
 * thread could be started (the attempt then goes unwatched). */
static int
wd_start(struct watchdog *w, pg_deadline until)
{
	int rc;

	w->active = 1;
	w->done = w->expired = w->fired = 0;
	w->fd = -1;
	w->until = until;
	rc = pthread_create(&w->th, NULL, wd_main, w);
	if (rc != 0)
		w->active = 0;
	return rc == 0 ? 0 : -1;
}

/* Stop watching; returns whether the watchdog shut the socket down. */
static int
wd_stop(struct watchdog *w)
{
	int fired;

	if (!w->active)
		return 0;
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->th, NULL);
	fired = w->fired || w->expired;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	w->active = 0;
	return fired;
}

/* ---- connection --------------------------------------------------------- */

static void login_attr(const char *tmpl, char *buf, size_t len);

pg_dir *
pg_dir_new(const pg_config *cfg)
{
	pthread_condattr_t ca;
	int have_ca = 0, have_cv = 0, ok = 0;
	pg_dir *d = NULL;

	if (cfg == NULL)
		goto out;
	d = calloc(1, sizeof(*d));
	if (d == NULL || pthread_condattr_init(&ca) != 0)
		goto out;
	have_ca = 1;
	/* The watchdog waits on CLOCK_MONOTONIC, the clock of deadlines. */
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&d->wd.cv, &ca) != 0)
		goto out;
	have_cv = 1;
	if (pthread_mutex_init(&d->wd.mu, NULL) != 0)
		goto out;
	d->cfg = cfg;
	login_attr(cfg->directory.user_filter, d->login, sizeof(d->login));
	d->wd.fd = -1;
	d->cb.lc_add = wd_conn_add;
	d->cb.lc_del = wd_conn_del;
	d->cb.lc_arg = &d->wd;
	ok = 1;
out:
	if (have_ca)
		pthread_condattr_destroy(&ca);
	if (!ok && d != NULL) {
		if (have_cv)
			pthread_cond_destroy(&d->wd.cv);
		free(d);
		d = NULL;
	}
	return d;
}

void
pg_dir_free(pg_dir *d)
{
	if (d == NULL)
		return;
	dir_drop(d);
	pthread_mutex_destroy(&d->wd.mu);
	pthread_cond_destroy(&d->wd.cv);
	free(d);
}

enum uri_kind { URI_BAD, URI_LDAPS, URI_LDAP };

static enum uri_kind
uri_kind(const char *uri)
{
	if (strncasecmp(uri, "ldaps://", 8) == 0)
		return URI_LDAPS;
	if (strncasecmp(uri, "ldap://", 7) == 0)
		return URI_LDAP;
	return URI_BAD;
}

/* Options of a fresh handle; BUDGET_MS bounds network waits. */
static int
set_options(LDAP *ld, const pg_config *cfg, int tls, int64_t budget_ms,
	    const char **what)
{
	int v3 = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND;
	int tlsmin = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2, server = 0;
	struct timeval tv;
	int rc;

	ms_to_tv(budget_ms, &tv);
	*what = "setting options";
	if ((rc = ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3)) != 0 ||
	    (rc = ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF)) != 0 ||
	    (rc = ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON)) != 0 ||
	    (rc = ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv)) != 0 ||
	    (rc = ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv)) != 0)
		return rc;
	if (!tls)
		return LDAP_SUCCESS;
	*what = "setting TLS options";
	/* Only the configured CA: drop any CA directory, client certificate
	 * or key that ldap.conf, .ldaprc or LDAPTLS_* may have set. */
	if ((rc = ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTDIR, NULL)) != 0 ||
	    (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_CERTFILE, NULL)) != 0 ||
	    (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_KEYFILE, NULL)) != 0)
		return rc;
	if (cfg->directory.ca_file != NULL &&
	    (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE,
				  cfg->directory.ca_file)) != 0)
		return rc;
	if ((rc = ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT,
				  &demand)) != 0 ||
	    (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN,
				  &tlsmin)) != 0)
		return rc;
	*what = "creating the TLS context";
	return ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &server);
}

/* Refresh the handle's timeouts to what is left of ADL. */
static void
set_timeouts(LDAP *ld, pg_deadline adl)
{
	struct timeval tv;

	ms_to_tv(pg_deadline_left(adl), &tv);
	ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
}

/* Simple bind as bind_dn with the password from its file, wiped after. */
static pg_err
dir_bind(LDAP *ld, const pg_config *cfg, const char *uri, pg_deadline adl,
	 char *err, size_t errlen)
{
	pg_secret pw = { NULL, 0 };
	struct berval cred;
	struct timeval tv;
	LDAPMessage *res = NULL;
	int rc, lrc = LDAP_OTHER, msgid = -1, r;
	char *diag = NULL;
	pg_err e;

	e = pg_secret_read_file(cfg->directory.bind_password_file, &pw, err,
				errlen);
	if (e != PG_OK)
		goto out;
	if (pw.buf == NULL || pw.len == 0) {
		snprintf(err, errlen, "%s: bind password file is empty",
			 cfg->directory.bind_password_file);
		e = PG_ECONFIG;
		goto out;
	}
	cred.bv_val = pw.buf;
	cred.bv_len = pw.len;
	set_timeouts(ld, adl);
	rc = ldap_sasl_bind(ld, cfg->directory.bind_dn, LDAP_SASL_SIMPLE, &cred,
			    NULL, NULL, &msgid);
	pg_secret_wipe(&pw);
	if (rc != LDAP_SUCCESS) {
		set_ld_err(err, errlen, uri, "bind", ld, rc);
		e = PG_EUNAVAIL;
		goto out;
	}
	ms_to_tv(pg_deadline_left(adl), &tv);
	r = ldap_result(ld, msgid, LDAP_MSG_ALL, &tv, &res);
	if (r == 0) {
		snprintf(err, errlen, "%s: bind: no answer in time", uri);
		e = PG_ETIMEOUT;
		goto out;
	}
	if (r < 0) {
		ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &rc);
		set_ld_err(err, errlen, uri, "bind", ld, rc);
		e = PG_EUNAVAIL;
		goto out;
	}
	rc = ldap_parse_result(ld, res, &lrc, NULL, &diag, NULL, NULL, 0);
	if (rc != LDAP_SUCCESS || lrc != LDAP_SUCCESS) {
		snprintf(err, errlen, "%s: bind as %s: %s%s%s%s", uri,
			 cfg->directory.bind_dn,
			 ldap_err2string(rc != LDAP_SUCCESS ? rc : lrc),
			 diag && *diag ? " (" : "", diag && *diag ? diag : "",
			 diag && *diag ? ")" : "");
		e = PG_EUNAVAIL;
		goto out;
	}
	e = PG_OK;
out:
	pg_secret_wipe(&pw);
	if (diag != NULL)
		ldap_memfree(diag);
	if (res != NULL)
		ldap_msgfree(res);
	return e;
}

/* One URI: handle, options, connect (+ TLS), StartTLS, bind; the whole
 * attempt is bounded by min([directory] timeout, DL).  *local is set when
 * the failure has nothing to do with this URI (another would fail too). */
static pg_err
dir_connect_one(pg_dir *d, const char *uri, pg_deadline dl, int *local,
		char *err, size_t errlen)
{
	const pg_config *cfg = d->cfg;
	enum uri_kind kind = uri_kind(uri);
	int starttls = kind == URI_LDAP && cfg->directory.starttls;
	int tls = kind == URI_LDAPS || starttls;
	pg_deadline adl = op_deadline(d, dl);
	int64_t budget = pg_deadline_left(adl);
	const char *what = "", *step = "connect";
	LDAP *ld = NULL;
	int rc;
	pg_err e;

	if (kind == URI_BAD) {
		snprintf(err, errlen, "%s: not an ldap:// or ldaps:// URI", uri);
		e = PG_ECONFIG;
		goto out;
	}
	if (kind == URI_LDAP && !starttls && !cfg->directory.allow_plaintext) {
		snprintf(err, errlen, "%s: plain ldap:// refused (use ldaps://, "
			 "starttls = yes, or allow_plaintext = yes)", uri);
		e = PG_ECONFIG;
		goto out;
	}
	if (tls && cfg->directory.ca_file == NULL &&
	    !cfg->directory.allow_plaintext) {
		snprintf(err, errlen, "%s: TLS needs [directory] ca_file", uri);
		e = PG_ECONFIG;
		goto out;
	}
	rc = ldap_initialize(&ld, uri);
	if (rc != LDAP_SUCCESS) {
		snprintf(err, errlen, "%s: %s", uri, ldap_err2string(rc));
		e = rc == LDAP_NO_MEMORY ? PG_ENOMEM : PG_ECONFIG;
		*local = rc == LDAP_NO_MEMORY;
		goto out;
	}
	rc = set_options(ld, cfg, tls, budget, &what);
	if (rc == LDAP_OPT_SUCCESS) {
		what = "setting the connect callback";
		rc = ldap_set_option(ld, LDAP_OPT_CONNECT_CB, &d->cb);
	}
	if (rc != LDAP_OPT_SUCCESS) {
		set_ld_err(err, errlen, uri, what, ld, rc);
		e = PG_EUNAVAIL;
		goto out;
	}
	if (wd_start(&d->wd, adl) != 0) {
		snprintf(err, errlen, "%s: cannot start the connect watchdog",
			 uri);
		e = PG_EINTERNAL;
		*local = 1;
		goto out;
	}
	step = kind == URI_LDAPS ? "connect (TLS)" : "connect";
	rc = ldap_connect(ld);
	if (rc != LDAP_SUCCESS) {
		if (kind != URI_LDAPS ||
		    !set_tls_err(err, errlen, uri, step, ld, rc,
				 cfg->directory.ca_file))
			set_ld_err(err, errlen, uri, step, ld, rc);
		e = pg_deadline_left(adl) <= DIR_TIMEOUT_SLACK_MS ?
			PG_ETIMEOUT : PG_EUNAVAIL;
		goto out;
	}
	if (starttls) {
		step = "StartTLS";
		set_timeouts(ld, adl);
		rc = ldap_start_tls_s(ld, NULL, NULL);
		if (rc != LDAP_SUCCESS) {
			if (rc == LDAP_TIMEOUT || is_down(rc) == 0 ||
			    !set_tls_err(err, errlen, uri, step, ld, rc,
					 cfg->directory.ca_file))
				set_ld_err(err, errlen, uri, step, ld, rc);
			e = (rc == LDAP_TIMEOUT ||
			     pg_deadline_left(adl) <= DIR_TIMEOUT_SLACK_MS) ?
				PG_ETIMEOUT : PG_EUNAVAIL;
			goto out;
		}
	}
	if (cfg->directory.bind_dn != NULL) {
		step = "bind";
		e = dir_bind(ld, cfg, uri, adl, err, errlen);
		/* The password file is the same for every URI. */
		*local = e == PG_ECONFIG || e == PG_ENOMEM;
		if (e != PG_OK)
			goto out;
	}
	e = PG_OK;
out:
	if (wd_stop(&d->wd)) {
		snprintf(err, errlen, "%s: %s: no answer within %lld ms", uri,
			 step, (long long)budget);
		e = PG_ETIMEOUT;
	}
	if (e == PG_OK) {
		dir_drop(d);
		d->ld = ld;
		d->uri = uri;
		ld = NULL;
	}
	if (ld != NULL)
		ldap_unbind_ext_s(ld, NULL, NULL);
	return e;
}

/* Connect to the first URI that works.  On failure err lists every URI's
 * error; the result is PG_ECONFIG when every URI was refused by the
 * configuration, PG_ETIMEOUT when the deadline passed or every attempt
 * timed out, else PG_EUNAVAIL.  A failure that is not about the server
 * (the bind password file, memory) ends the loop at once. */
static pg_err
dir_connect(pg_dir *d, pg_deadline dl, char *err, size_t errlen)
{
	const pg_list *uris = &d->cfg->directory.uri;
	char one[512];
	size_t i, used = 0, tried = 0, n_config = 0, n_timeout = 0;
	pg_err e = PG_EUNAVAIL;

	dir_drop(d);
	err[0] = '\0';
	if (uris->n == 0) {
		snprintf(err, errlen, "no [directory] uri configured");
		return PG_ECONFIG;
	}
	for (i = 0; i < uris->n && pg_deadline_left(dl) > 0; i++) {
		int local = 0;

		tried++;
		one[0] = '\0';
		e = dir_connect_one(d, uris->v[i], dl, &local, one, sizeof(one));
		if (e == PG_OK)
			return PG_OK;
		if (local) {
			snprintf(err, errlen, "%s", one);
			return e;
		}
		if (e == PG_ECONFIG)
			n_config++;
		if (e == PG_ETIMEOUT)
			n_timeout++;
		if (used < errlen) {
			int k = snprintf(err + used, errlen - used, "%s%s",
					 used ? "; " : "", one);
			if (k > 0)
				used += (size_t)k;
		}
	}
	if (tried < uris->n || pg_deadline_left(dl) == 0) {
		if (used < errlen)
			snprintf(err + used, errlen - used, "%sdeadline passed",
				 used ? "; " : "");
		return PG_ETIMEOUT;
	}
	if (n_config == tried)
		return PG_ECONFIG;
	if (n_timeout == tried)
		return PG_ETIMEOUT;
	return PG_EUNAVAIL;
}

/* ---- requests ------------------------------------------------------------ */

/*
 * The most requests a round puts on the connection before it reads the
 * answers.  A round with more goes out in windows of this many (one round
 * trip each), so that neither side can ever block writing while the other
 * is writing too.
 */
#define DIR_WINDOW 64

enum req_kind { REQ_SEARCH, REQ_COMPARE };

struct req {
	enum req_kind kind;
	const char *base;	/* search base or compare DN */
	int scope;
	const char *filter;
	char **attrs;
	int sizelimit;
	const char *attr;	/* compare */
	const char *value;	/* compare */
};

/* A request in a round, and once answered its result. */
struct op {
	struct req rq;
	int msgid;
	int done;		/* answered: lrc and res are set */
	int lrc;		/* the LDAP result code */
	LDAPMessage *res;	/* the whole answer (ldap_msgfree()) */
};

static const char *
req_what(const struct req *rq)
{
	return rq->kind == REQ_SEARCH ? "search" : "compare";
}

/*
 * Run OPS[0..N) (N <= DIR_WINDOW) to completion at once: every request
 * that has no answer yet is sent, then every answer is collected whole
 * (libldap keeps the answers to other requests queued meanwhile).  Connects
 * first when needed; when the server has gone, reconnects once and sends
 * again what is still unanswered.  One budget, min([directory] timeout,
 * DL), bounds the whole window.  After a timeout, or whenever requests may
 * still be in flight after an error, the handle is dropped: a late answer
 * must not be taken for the next one.
 */
static pg_err
dir_window(pg_dir *d, struct op *ops, size_t n, pg_deadline dl, char *err,
	   size_t errlen)
{
	struct berval val;
	struct timeval tv;
	pg_deadline adl;
	int64_t budget;
	const char *what;
	size_t i, pending;
	int rc, r;
	pg_err e;

	for (;;) {
		if (pg_deadline_left(dl) == 0) {
			snprintf(err, errlen, "directory: deadline passed");
			return PG_ETIMEOUT;
		}
		if (d->ld == NULL) {
			e = dir_connect(d, dl, err, errlen);
			if (e != PG_OK)
				return e;
		}
		adl = op_deadline(d, dl);
		budget = pg_deadline_left(adl);
		set_timeouts(d->ld, adl);
		ms_to_tv(budget, &tv);
		rc = LDAP_SUCCESS;
		what = "search";
		pending = 0;
		for (i = 0; i < n && rc == LDAP_SUCCESS; i++) {
			const struct req *rq = &ops[i].rq;

			if (ops[i].done)
				continue;
			what = req_what(rq);
			ops[i].msgid = -1;
			if (rq->kind == REQ_SEARCH) {
				rc = ldap_search_ext(d->ld, rq->base, rq->scope,
						     rq->filter, rq->attrs, 0,
						     NULL, NULL, &tv,
						     rq->sizelimit,
						     &ops[i].msgid);
			} else {
				val.bv_val = (char *)rq->value;
				val.bv_len = strlen(rq->value);
				rc = ldap_compare_ext(d->ld, rq->base, rq->attr,
						      &val, NULL, NULL,
						      &ops[i].msgid);
			}
			if (rc == LDAP_SUCCESS)
				pending++;
		}
		for (i = 0; i < n && rc == LDAP_SUCCESS; i++) {
			if (ops[i].done)
				continue;
			what = req_what(&ops[i].rq);
			ms_to_tv(pg_deadline_left(adl), &tv);
			r = ldap_result(d->ld, ops[i].msgid, LDAP_MSG_ALL, &tv,
					&ops[i].res);
			if (r == 0) {
				snprintf(err, errlen, "%s: %s: no answer within "
					 "%lld ms", d->uri, what,
					 (long long)budget);
				dir_drop(d);
				return PG_ETIMEOUT;
			}
			if (r > 0)
				rc = ldap_parse_result(d->ld, ops[i].res,
						       &ops[i].lrc, NULL, NULL,
						       NULL, NULL, 0);
			else if (ldap_get_option(d->ld, LDAP_OPT_RESULT_CODE,
						 &rc) != LDAP_OPT_SUCCESS ||
				 rc == LDAP_SUCCESS)
				rc = LDAP_OTHER;
			if (rc != LDAP_SUCCESS) {
				if (ops[i].res != NULL)
					ldap_msgfree(ops[i].res);
				ops[i].res = NULL;
				break;
			}
			ops[i].done = 1;
			pending--;
		}
		if (rc == LDAP_SUCCESS)
			return PG_OK;
		if (rc == LDAP_TIMEOUT) {
			snprintf(err, errlen, "%s: no answer within %lld ms",
				 d->uri, (long long)budget);
			dir_drop(d);
			return PG_ETIMEOUT;
		}
		if (is_down(rc) && d->retries > 0) {
			d->retries--;
			dir_drop(d);
			continue;
		}
		set_ld_err(err, errlen, d->uri, what, d->ld, rc);
		if (is_down(rc) || pending > 0)
			dir_drop(d);
		return PG_EUNAVAIL;
	}
}

/* Run all of OPS, DIR_WINDOW requests per round trip. */
static pg_err
dir_ops(pg_dir *d, struct op *ops, size_t n, pg_deadline dl, char *err,
	size_t errlen)
{
	size_t at, k;
	pg_err e;

	for (at = 0; at < n; at += k) {
		k = n - at < DIR_WINDOW ? n - at : DIR_WINDOW;
		e = dir_window(d, ops + at, k, dl, err, errlen);
		if (e != PG_OK)
			return e;
	}
	return PG_OK;
}

/*
 * Run one request to completion (see dir_window).  On PG_OK *lrc is the
 * LDAP result code and *res the whole answer (ldap_msgfree()); the caller
 * decides what the code means.
 */
static pg_err
dir_request(pg_dir *d, const struct req *rq, pg_deadline dl,
	    LDAPMessage **res, int *lrc, char *err, size_t errlen)
{
	struct op op;
	pg_err e;

	memset(&op, 0, sizeof(op));
	op.rq = *rq;
	*res = NULL;
	*lrc = LDAP_OTHER;
	e = dir_ops(d, &op, 1, dl, err, errlen);
	if (e == PG_OK) {
		*res = op.res;
		*lrc = op.lrc;
		op.res = NULL;
	}
	if (op.res != NULL)
		ldap_msgfree(op.res);
	return e;
}

/* Describe an unexpected LDAP result code of a request on BASE. */
static pg_err
bad_result(pg_dir *d, const char *what, const char *base, int lrc,
	   char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: %s %s: %s", d->uri ? d->uri : "directory",
		 what, base, ldap_err2string(lrc));
	if (lrc == LDAP_FILTER_ERROR)
		return PG_ECONFIG;
	if (lrc == LDAP_TIMELIMIT_EXCEEDED)
		return PG_ETIMEOUT;
	return PG_EUNAVAIL;
}

static void
strv_free(char **v, size_t n)
{
	while (n > 0)
		free(v[--n]);
	free(v);
}

/* The values of ATTR in entry M as strdup'd strings. */
static pg_err
entry_values(pg_dir *d, LDAPMessage *m, const char *attr, char ***out,
	     size_t *n, char *err, size_t errlen)
{
	struct berval **bv = ldap_get_values_len(d->ld, m, attr);
	size_t cnt = bv ? (size_t)ldap_count_values_len(bv) : 0, k;
	char **v = NULL;
	pg_err e = PG_OK;

	*out = NULL;
	*n = 0;
	if (cnt == 0)
		goto out;
	v = calloc(cnt, sizeof(*v));
	if (v == NULL)
		goto nomem;
	for (k = 0; k < cnt; k++)
		if ((v[k] = strndup(bv[k]->bv_val, bv[k]->bv_len)) == NULL)
			goto nomem;
	*out = v;
	*n = cnt;
	v = NULL;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	e = PG_ENOMEM;
out:
	if (v != NULL)
		strv_free(v, cnt);
	if (bv != NULL)
		ldap_value_free_len(bv);
	return e;
}

/* The DN of entry M (strdup'd), or NULL with *e set (PG_ENOMEM) or not
 * (the entry carries no DN). */
static char *
entry_dn(pg_dir *d, LDAPMessage *m, pg_err *e, char *err, size_t errlen)
{
	char *s = ldap_get_dn(d->ld, m), *c;

	*e = PG_OK;
	if (s == NULL)
		return NULL;
	c = strdup(s);
	ldap_memfree(s);
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		*e = PG_ENOMEM;
	}
	return c;
}

static int
memberof_mode(const pg_dir *d)
{
	return d->cfg->directory.membership == PG_MEMBER_MEMBEROF;
}

static int
memberuid_mode(const pg_dir *d)
{
	return d->cfg->directory.membership == PG_MEMBER_MEMBERUID;
}

/* ---- public: users --------------------------------------------------------- */

#define EXACT_ATTRS_MAX 8

void
pg_dir_entry_free(pg_dir_entry *e)
{
	if (e == NULL)
		return;
	free(e->dn);
	free(e->name);
	strv_free(e->memberof, e->n_memberof);
	memset(e, 0, sizeof(*e));
}

/* The attributes of every "(ATTR=%u)" assertion of TMPL (strndup'd into
 * ATTRS, at most EXACT_ATTRS_MAX, *n of them). */
static pg_err
exact_attrs(const char *tmpl, char **attrs, size_t *n, char *err,
	    size_t errlen)
{
	const char *p, *a;

	*n = 0;
	for (p = strstr(tmpl, "=%u)"); p != NULL && *n < EXACT_ATTRS_MAX;
	     p = strstr(p + 4, "=%u)")) {
		for (a = p; a > tmpl && (isalnum((unsigned char)a[-1]) ||
					 a[-1] == '-' || a[-1] == '.' ||
					 a[-1] == ';'); a--)
			;
		if (a == p || a == tmpl || a[-1] != '(')
			continue;
		if ((attrs[*n] = strndup(a, (size_t)(p - a))) == NULL) {
			snprintf(err, errlen, "out of memory");
			return PG_ENOMEM;
		}
		(*n)++;
	}
	return PG_OK;
}

/* The least of N strings in byte order (NULL when N is 0): a
 * multi-valued attribute's values come in no defined order (replicas
 * may differ), so a name taken from one must not depend on it. */
static const char *
least(char *const *v, size_t n)
{
	const char *m = NULL;
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] != NULL && (m == NULL || strcmp(v[i], m) < 0))
			m = v[i];
	return m;
}

/* *out = the least value of ATTR in ENT (free()), NULL when it has none
 * (values holding a NUL byte do not count). */
static pg_err
least_value(pg_dir *d, LDAPMessage *ent, const char *attr, char **out,
	    char *err, size_t errlen)
{
	char **v = NULL;
	size_t n = 0;
	const char *m;
	pg_err e;

	*out = NULL;
	e = entry_values(d, ent, attr, &v, &n, err, errlen);
	if (e == PG_OK && (m = least(v, n)) != NULL &&
	    (*out = strdup(m)) == NULL) {
		snprintf(err, errlen, "out of memory");
		e = PG_ENOMEM;
	}
	strv_free(v, n);
	return e;
}

/* Does entry ENT hold USER, byte for byte, in one of ATTRS? */
static int
exact_match(pg_dir *d, LDAPMessage *ent, char *const *attrs, size_t n,
	    const char *user)
{
	size_t i, ulen = strlen(user);
	int k, match = 0;

	for (i = 0; i < n && !match; i++) {
		struct berval **bv = ldap_get_values_len(d->ld, ent, attrs[i]);

		for (k = 0; bv != NULL && bv[k] != NULL && !match; k++)
			match = bv[k]->bv_len == ulen &&
				memcmp(bv[k]->bv_val, user, ulen) == 0;
		if (bv != NULL)
			ldap_value_free_len(bv);
	}
	return match;
}

/*
 * One search finds the user and brings back what the decision needs of
 * the entry: the attributes that confirm the name and, with memberOf, the
 * memberOf values.
 *
 * The login name must be the entry's own value, byte for byte: the
 * directory's matching rules fold case, spaces and Unicode compatibility
 * forms ("ALICE", " alice", fullwidth letters all find uid=alice), and a
 * caller must not obtain another account's decision by such a spelling.
 * The attributes of every "(ATTR=%u)" assertion of user_filter are read
 * and the name is accepted when one value equals it exactly; a template
 * with no such assertion confirms nobody (PG_ENOTFOUND).
 */
pg_err
pg_dir_find_user_entry(pg_dir *d, const char *user, pg_deadline dl,
		       pg_dir_entry *out, char *err, size_t errlen)
{
	char *exact[EXACT_ATTRS_MAX] = { NULL };
	char *attrs[EXACT_ATTRS_MAX + 2] = { NULL };
	char *no_attrs[] = { LDAP_NO_ATTRS, NULL };
	struct req rq;
	LDAPMessage *res = NULL, *ent;
	const char *tmpl;
	char *filter = NULL;
	size_t n_exact = 0, i, k = 0;
	int lrc, count;
	pg_err e;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (d == NULL || out == NULL) {
		snprintf(err, errlen, "directory: bad arguments");
		return PG_EINTERNAL;
	}
	d->retries = 1;
	e = check_name(user, "user name", err, errlen);
	if (e != PG_OK)
		goto out;
	tmpl = d->cfg->directory.user_filter ? d->cfg->directory.user_filter
		: "(&(objectClass=posixAccount)(uid=%u))";
	e = build_filter(tmpl, user, &filter, err, errlen);
	if (e != PG_OK)
		goto out;
	e = exact_attrs(tmpl, exact, &n_exact, err, errlen);
	if (e != PG_OK)
		goto out;
	for (i = 0; i < n_exact; i++)
		attrs[k++] = exact[i];
	if (memberof_mode(d))
		attrs[k++] = "memberOf";
	rq = (struct req){ REQ_SEARCH, d->cfg->directory.base,
			   LDAP_SCOPE_SUBTREE, filter, k ? attrs : no_attrs, 2,
			   NULL, NULL };
	e = dir_request(d, &rq, dl, &res, &lrc, err, errlen);
	if (e != PG_OK)
		goto out;
	if (lrc != LDAP_SUCCESS && lrc != LDAP_SIZELIMIT_EXCEEDED) {
		e = bad_result(d, "search under", rq.base, lrc, err, errlen);
		goto out;
	}
	count = ldap_count_entries(d->ld, res);
	if (lrc == LDAP_SIZELIMIT_EXCEEDED)
		count = 2;	/* more entries than the limit: the server said so */
	ent = ldap_first_entry(d->ld, res);
	if (count <= 0 || ent == NULL) {
		snprintf(err, errlen, "user %s not found in the directory",
			 user);
		e = PG_ENOTFOUND;
		goto out;
	}
	if (count > 1) {
		snprintf(err, errlen, "user %s matches more than one directory "
			 "entry", user);
		e = PG_EAMBIGUOUS;
		goto out;
	}
	out->dn = entry_dn(d, ent, &e, err, errlen);
	if (e != PG_OK)
		goto out;
	if (out->dn == NULL) {
		snprintf(err, errlen, "user %s: entry without a DN", user);
		e = PG_EPROTO;
		goto out;
	}
	if (n_exact == 0) {
		snprintf(err, errlen, "user %s: [directory] user_filter has no "
			 "(ATTR=%%u) assertion to confirm the name by", user);
		e = PG_ENOTFOUND;
		goto out;
	}
	if (!exact_match(d, ent, exact, n_exact, user)) {
		snprintf(err, errlen, "user %s not found in the directory "
			 "(no entry holds the name exactly)", user);
		e = PG_ENOTFOUND;
		goto out;
	}
	if (memberof_mode(d)) {
		e = entry_values(d, ent, "memberOf", &out->memberof,
				 &out->n_memberof, err, errlen);
		if (e != PG_OK)
			goto out;
		out->have_memberof = 1;
	}
	e = least_value(d, ent, exact[0], &out->name, err, errlen);
out:
	if (e != PG_OK && out != NULL)
		pg_dir_entry_free(out);
	for (i = 0; i < n_exact; i++)
		free(exact[i]);
	free(filter);
	if (res != NULL)
		ldap_msgfree(res);
	return e;
}

pg_err
pg_dir_find_user(pg_dir *d, const char *user, pg_deadline dl, char **dn,
		 char *err, size_t errlen)
{
	pg_dir_entry ent;
	pg_err e;

	if (dn != NULL)
		*dn = NULL;
	if (d == NULL || dn == NULL) {
		snprintf(err, errlen, "directory: bad arguments");
		return PG_EINTERNAL;
	}
	e = pg_dir_find_user_entry(d, user, dl, &ent, err, errlen);
	if (e == PG_OK) {
		*dn = ent.dn;
		ent.dn = NULL;
	}
	pg_dir_entry_free(&ent);
	return e;
}

/* ---- membership: walks ------------------------------------------------------ */

void
pg_dir_path_free(pg_dir_path *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++)
		free(p->dn[i]);
	free(p->dn);
	p->dn = NULL;
	p->n = 0;
}

/* The nodes of an upward walk: a group, the node it was reached from,
 * and its key in the visited set. */
struct node {
	char *dn;
	char *key;
	long parent;		/* index, -1 for the start */
};

struct walk {
	struct node *v;
	size_t n, cap;
};

static void
walk_free(struct walk *w)
{
	size_t i;

	for (i = 0; i < w->n; i++) {
		free(w->v[i].dn);
		free(w->v[i].key);
	}
	free(w->v);
	w->v = NULL;
	w->n = w->cap = 0;
}

static int
walk_seen(const struct walk *w, const char *key)
{
	size_t i;

	for (i = 0; i < w->n; i++)
		if (strcmp(w->v[i].key, key) == 0)
			return 1;
	return 0;
}

/* Add DN (taken over) reached from PARENT unless visited.  *added = 1
 * when it was new. */
static pg_err
walk_add(struct walk *w, char *dn, long parent, int *added, char *err,
	 size_t errlen)
{
	char *key = dn != NULL ? dn_key(dn) : NULL;

	*added = 0;
	if (key == NULL)
		goto nomem;
	if (walk_seen(w, key)) {
		free(key);
		free(dn);
		return PG_OK;
	}
	if (w->n == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 16;
		struct node *nv = realloc(w->v, ncap * sizeof(*nv));

		if (nv == NULL)
			goto nomem;
		w->v = nv;
		w->cap = ncap;
	}
	w->v[w->n].dn = dn;
	w->v[w->n].key = key;
	w->v[w->n].parent = parent;
	w->n++;
	*added = 1;
	return PG_OK;
nomem:
	free(key);
	free(dn);
	snprintf(err, errlen, "out of memory");
	return PG_ENOMEM;
}

/* path = the groups from the user's direct group up to node AT; the start
 * node (the user, when it is in the walk) is left out. */
static pg_err
walk_path(const struct walk *w, size_t at, int skip_root, pg_dir_path *path,
	  char *err, size_t errlen)
{
	size_t n = 0, i;
	long j;

	if (path == NULL)
		return PG_OK;
	for (j = (long)at; j >= 0; j = w->v[j].parent)
		n++;
	if (skip_root)
		n--;
	path->dn = calloc(n ? n : 1, sizeof(*path->dn));
	if (path->dn == NULL)
		goto nomem;
	path->n = n;
	for (i = n, j = (long)at; i > 0; j = w->v[j].parent) {
		path->dn[--i] = strdup(w->v[j].dn);
		if (path->dn[i] == NULL)
			goto nomem;
	}
	return PG_OK;
nomem:
	pg_dir_path_free(path);
	snprintf(err, errlen, "out of memory");
	return PG_ENOMEM;
}

static pg_err
path_one(pg_dir_path *path, const char *dn, char *err, size_t errlen)
{
	if (path == NULL)
		return PG_OK;
	path->dn = calloc(1, sizeof(*path->dn));
	if (path->dn != NULL)
		path->dn[0] = strdup(dn);
	if (path->dn == NULL || path->dn[0] == NULL) {
		free(path->dn);
		path->dn = NULL;
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	path->n = 1;
	return PG_OK;
}

/* The number of walk levels: 1 (direct) plus max_depth nesting steps. */
static int
walk_levels(const pg_dir *d)
{
	return d->cfg->directory.nested_groups ?
		d->cfg->directory.max_depth + 1 : 1;
}

/* ---- batches ---------------------------------------------------------------- */

/*
 * A batch holds membership questions and people to resolve, and answers
 * them in rounds: each round sends every request that is due at once and
 * collects the answers (one round trip).
 *
 *   member, uniqueMember   round 1: a compare on every group; with
 *                nesting, also the search for the groups holding each
 *                user (walk level 1), needed for every group the compare
 *                finds the user not directly in.  Each later round: the
 *                next walk level, one search per group of the level.
 *   memberUid  round 1: a compare on every group (no nesting).
 *   memberOf   the user's own memberOf values (from the entry when it
 *                was read with them, else read in round 1); with nesting,
 *                each later round reads the memberOf values of the groups
 *                of the level.
 *   people     round 1: one search per name.
 *
 * The questions of one user added before its walk starts share that walk:
 * one walk, level by level, answers them all.  Each question's answer
 * and path are those of walking for it alone (the walk visits the same
 * nodes in the same order, and a group's path is fixed the first time it
 * is reached).  Any failure fails the whole batch: every status becomes
 * the error, every path and entry is freed.
 */
enum mq_state { MQ_COMPARE, MQ_WALK, MQ_DONE };
enum mq_why { WHY_NONE, WHY_NOT_MEMBER, WHY_NO_GROUP, WHY_NO_USER };

#define NO_WALK ((size_t)-1)

/* One membership question. */
struct mq {
	char *user;		/* login name (memberUid) */
	char *user_dn;
	char *group_dn;
	char *target;		/* dn_key(group_dn) */
	size_t walk;		/* its walk, or NO_WALK */
	enum mq_state state;
	enum mq_why why;	/* why the answer is "no" */
	pg_err *status;		/* the caller's */
	pg_dir_path *path;	/* the caller's, or NULL */
};

/* The upward walk from one user entry (node 0). */
struct uwalk {
	struct walk w;
	char **preset;		/* the user's memberOf values, read already */
	size_t n_preset;
	int have_preset;
	int started;		/* level 1 requested or applied */
	int level;		/* levels expanded */
	size_t lo, hi;		/* the nodes the next level expands */
	int expanded;		/* this round expanded [lo, hi) */
};

/* One person to resolve. */
struct rv {
	char *filter;		/* NULL when the name was invalid */
	int done;
	pg_err *status;		/* the caller's */
	pg_dir_entry *out;	/* the caller's */
};

struct pg_dir_batch {
	pg_dir *d;
	pg_err failed;		/* PG_OK until the batch fails */
	char why[256];		/* the failure's message */
	struct mq *q;
	size_t nq, capq;
	struct uwalk *wk;
	size_t nw, capw;
	struct rv *r;
	size_t nr, capr;
};

/* V (N used of *CAP elements of SIZE) with room for one more: V itself,
 * or a larger copy (V freed), or NULL when out of memory (V kept). */
static void *
grow(void *v, size_t n, size_t *cap, size_t size)
{
	size_t ncap;
	void *nv;

	if (n < *cap)
		return v;
	ncap = *cap ? *cap * 2 : 8;
	nv = realloc(v, ncap * size);
	if (nv != NULL)
		*cap = ncap;
	return nv;
}

pg_dir_batch *
pg_dir_batch_new(pg_dir *d)
{
	pg_dir_batch *b;

	if (d == NULL)
		return NULL;
	b = calloc(1, sizeof(*b));
	if (b != NULL)
		b->d = d;
	return b;
}

void
pg_dir_batch_free(pg_dir_batch *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->nq; i++) {
		free(b->q[i].user);
		free(b->q[i].user_dn);
		free(b->q[i].group_dn);
		free(b->q[i].target);
	}
	for (i = 0; i < b->nw; i++) {
		walk_free(&b->wk[i].w);
		strv_free(b->wk[i].preset, b->wk[i].n_preset);
	}
	for (i = 0; i < b->nr; i++)
		free(b->r[i].filter);
	free(b->q);
	free(b->wk);
	free(b->r);
	free(b);
}

/* Fail the whole batch with E (message in ERR): no partial results. */
static pg_err
batch_fail(pg_dir_batch *b, pg_err e, const char *err)
{
	size_t i;

	if (b->failed == PG_OK) {
		b->failed = e;
		snprintf(b->why, sizeof(b->why), "%s", err);
	}
	for (i = 0; i < b->nq; i++) {
		*b->q[i].status = b->failed;
		pg_dir_path_free(b->q[i].path);
		b->q[i].state = MQ_DONE;
	}
	for (i = 0; i < b->nr; i++) {
		*b->r[i].status = b->failed;
		pg_dir_entry_free(b->r[i].out);
		b->r[i].done = 1;
	}
	return b->failed;
}

/* The error of a failed batch, again. */
static pg_err
batch_failed(const pg_dir_batch *b, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", b->why);
	return b->failed;
}

/* The walk from the entry USER_DN that has not started yet, or a new one
 * (with the memberOf values of E when it has them). */
static pg_err
walk_for(pg_dir_batch *b, const char *user_dn, const pg_dir_entry *e,
	 size_t *out, char *err, size_t errlen)
{
	struct uwalk *u;
	char *key = dn_key(user_dn);
	size_t i;
	int added;
	pg_err rc = PG_OK;

	if (key == NULL)
		goto nomem;
	for (i = 0; i < b->nw; i++) {
		if (!b->wk[i].started && strcmp(b->wk[i].w.v[0].key, key) == 0)
			break;
	}
	if (i == b->nw) {
		u = grow(b->wk, b->nw, &b->capw, sizeof(*b->wk));
		if (u == NULL)
			goto nomem;
		b->wk = u;
		u = &b->wk[b->nw];
		memset(u, 0, sizeof(*u));
		rc = walk_add(&u->w, strdup(user_dn), -1, &added, err, errlen);
		if (rc != PG_OK)
			goto out;
		u->lo = 0;
		u->hi = 1;
		b->nw++;
	}
	u = &b->wk[i];
	if (memberof_mode(b->d) && e != NULL && e->have_memberof &&
	    !u->have_preset) {
		size_t k;

		if (e->n_memberof > 0) {
			u->preset = calloc(e->n_memberof, sizeof(*u->preset));
			if (u->preset == NULL)
				goto nomem;
			u->n_preset = e->n_memberof;
			for (k = 0; k < e->n_memberof; k++)
				if ((u->preset[k] = strdup(e->memberof[k])) ==
				    NULL)
					goto nomem;
		}
		u->have_preset = 1;
	}
	*out = i;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	rc = PG_ENOMEM;
out:
	free(key);
	return rc;
}

pg_err
pg_dir_batch_member(pg_dir_batch *b, const char *user,
		    const pg_dir_entry *entry, const char *group_dn,
		    pg_err *status, pg_dir_path *path, char *err,
		    size_t errlen)
{
	const pg_config *cfg;
	struct mq *q;
	pg_err e = PG_OK;

	if (path != NULL) {
		path->dn = NULL;
		path->n = 0;
	}
	if (b == NULL || status == NULL) {
		snprintf(err, errlen, "directory: bad arguments");
		return PG_EINTERNAL;
	}
	*status = PG_EINTERNAL;		/* not answered yet */
	if (b->failed != PG_OK) {
		*status = b->failed;
		return batch_failed(b, err, errlen);
	}
	cfg = b->d->cfg;
	if (entry == NULL || entry->dn == NULL || entry->dn[0] == '\0' ||
	    group_dn == NULL || group_dn[0] == '\0') {
		snprintf(err, errlen, "directory: missing user or group DN");
		e = PG_EINVAL;
		goto out;
	}
	switch (cfg->directory.membership) {
	case PG_MEMBER_MEMBER:
	case PG_MEMBER_UNIQUEMEMBER:
	case PG_MEMBER_MEMBEROF:
		break;
	case PG_MEMBER_MEMBERUID:
		e = check_name(user, "user name", err, errlen);
		if (e != PG_OK)
			goto out;
		break;
	default:
		snprintf(err, errlen, "directory: unknown group_membership");
		e = PG_ECONFIG;
		goto out;
	}
	q = grow(b->q, b->nq, &b->capq, sizeof(*b->q));
	if (q == NULL)
		goto nomem;
	b->q = q;
	q = &b->q[b->nq++];
	memset(q, 0, sizeof(*q));
	q->status = status;
	q->path = path;
	q->walk = NO_WALK;
	q->state = memberof_mode(b->d) ? MQ_WALK : MQ_COMPARE;
	q->user = strdup(user != NULL ? user : "");
	q->user_dn = strdup(entry->dn);
	q->group_dn = strdup(group_dn);
	q->target = dn_key(group_dn);
	if (q->user == NULL || q->user_dn == NULL || q->group_dn == NULL ||
	    q->target == NULL)
		goto nomem;
	if (memberof_mode(b->d) ||
	    (cfg->directory.nested_groups &&
	     cfg->directory.membership != PG_MEMBER_MEMBERUID))
		e = walk_for(b, entry->dn, entry, &q->walk, err, errlen);
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	e = PG_ENOMEM;
out:
	if (e != PG_OK)
		return batch_fail(b, e, err);
	return PG_OK;
}

pg_err
pg_dir_batch_resolve(pg_dir_batch *b, const char *const *names, size_t n,
		     pg_dir_entry *out, pg_err *status, char *err,
		     size_t errlen)
{
	const char *attr;
	char one[256];
	size_t i;
	pg_err e = PG_OK;

	if (b == NULL || (n > 0 && (names == NULL || out == NULL ||
				    status == NULL))) {
		snprintf(err, errlen, "directory: bad arguments");
		return PG_EINTERNAL;
	}
	for (i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		status[i] = b->failed != PG_OK ? b->failed : PG_EINTERNAL;
	}
	if (b->failed != PG_OK)
		return batch_failed(b, err, errlen);
	attr = b->d->cfg->directory.ticket_user_attr ?
		b->d->cfg->directory.ticket_user_attr : "uid";
	if (n > 0 && !attr_ok(attr)) {
		snprintf(err, errlen, "[directory] ticket_user_attr is not an "
			 "attribute name");
		e = PG_ECONFIG;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct rv *r = grow(b->r, b->nr, &b->capr, sizeof(*b->r));

		if (r == NULL) {
			snprintf(err, errlen, "out of memory");
			e = PG_ENOMEM;
			goto out;
		}
		b->r = r;
		r = &b->r[b->nr++];
		memset(r, 0, sizeof(*r));
		r->status = &status[i];
		r->out = &out[i];
		if (check_name(names[i], "name", one, sizeof(one)) != PG_OK) {
			status[i] = PG_EINVAL;
			r->done = 1;
			continue;
		}
		e = attr_filter(attr, names[i], &r->filter, err, errlen);
		if (e != PG_OK)
			goto out;
	}
out:
	if (e != PG_OK)
		return batch_fail(b, e, err);
	return PG_OK;
}

/* Question Q is answered: member (path from node AT of its walk, or
 * the group alone when AT < 0) or not (WHY). */
static pg_err
mq_answer(pg_dir_batch *b, struct mq *q, int member, long at,
	  enum mq_why why, char *err, size_t errlen)
{
	pg_err e = PG_OK;

	q->state = MQ_DONE;
	q->why = why;
	if (!member) {
		*q->status = PG_ENOTFOUND;
		return PG_OK;
	}
	if (at < 0)
		e = path_one(q->path, q->group_dn, err, errlen);
	else
		e = walk_path(&b->wk[q->walk].w, (size_t)at, 1, q->path, err,
			      errlen);
	*q->status = e;
	return e;
}

/* Does walk WI still have a question walking (or, WITH_COMPARE, one
 * whose compare may yet send it walking)? */
static int
walk_open(const pg_dir_batch *b, size_t wi, int with_compare)
{
	size_t i;

	for (i = 0; i < b->nq; i++)
		if (b->q[i].walk == wi && (b->q[i].state == MQ_WALK ||
					   (with_compare &&
					    b->q[i].state == MQ_COMPARE)))
			return 1;
	return 0;
}

/* Add the DNs of LIST (taken over, LIST freed) to walk WI, reached from
 * node FROM; every new node answers the walking questions it is the
 * target of. */
static pg_err
walk_grow(pg_dir_batch *b, size_t wi, char **list, size_t n, long from,
	  char *err, size_t errlen)
{
	struct walk *w = &b->wk[wi].w;
	size_t k, i;
	int added;
	pg_err e = PG_OK;

	for (k = 0; k < n; k++) {
		char *g = list[k];

		list[k] = NULL;
		if (e != PG_OK) {
			free(g);
			continue;
		}
		e = walk_add(w, g, from, &added, err, errlen);
		for (i = 0; e == PG_OK && added && i < b->nq; i++) {
			struct mq *q = &b->q[i];

			if (q->walk == wi && q->state == MQ_WALK &&
			    strcmp(w->v[w->n - 1].key, q->target) == 0)
				e = mq_answer(b, q, 1, (long)(w->n - 1),
					      WHY_NONE, err, errlen);
		}
	}
	free(list);
	return e;
}

/* After a level of walk WI: move on, and when the walk can go no
 * further, its walking questions are answered "not a member". */
static void
walk_level_done(pg_dir_batch *b, size_t wi)
{
	struct uwalk *u = &b->wk[wi];
	size_t i;

	u->level++;
	u->lo = u->hi;
	u->hi = u->w.n;
	if (u->level < walk_levels(b->d) && u->lo < u->hi)
		return;
	for (i = 0; i < b->nq; i++)
		if (b->q[i].walk == wi && b->q[i].state == MQ_WALK) {
			b->q[i].state = MQ_DONE;
			b->q[i].why = WHY_NOT_MEMBER;
			*b->q[i].status = PG_ENOTFOUND;
		}
}

/* The memberOf values a walk already has for its user: level 1 without
 * a request. */
static pg_err
walk_preset(pg_dir_batch *b, size_t wi, char *err, size_t errlen)
{
	struct uwalk *u = &b->wk[wi];
	pg_err e;

	u->started = 1;
	e = walk_grow(b, wi, u->preset, u->n_preset, 0, err, errlen);
	u->preset = NULL;
	u->n_preset = 0;
	if (e == PG_OK)
		walk_level_done(b, wi);
	return e;
}

/* What an op of a round answers. */
enum tag_kind { T_COMPARE, T_EXPAND, T_RESOLVE };

struct tag {
	enum tag_kind kind;
	size_t i;		/* question, walk or person */
	size_t node;		/* T_EXPAND: the node expanded */
};

/* A round's requests, what each answers, and the filters they use. */
struct round {
	struct op *ops;
	struct tag *tags;
	char **filters;
	size_t n, cap;
};

static void
round_free(struct round *rd)
{
	size_t i;

	for (i = 0; i < rd->n; i++) {
		if (rd->ops[i].res != NULL)
			ldap_msgfree(rd->ops[i].res);
		free(rd->filters[i]);
	}
	free(rd->ops);
	free(rd->tags);
	free(rd->filters);
	memset(rd, 0, sizeof(*rd));
}

static char *attrs_memberof[] = { "memberOf", NULL };
static char *attrs_none[] = { LDAP_NO_ATTRS, NULL };

/* Append a request (FILTER taken over) answering TAG. */
static pg_err
round_add(struct round *rd, const struct req *rq, char *filter,
	  struct tag tag, char *err, size_t errlen)
{
	if (rd->n == rd->cap) {
		size_t ncap = rd->cap ? rd->cap * 2 : 16;
		struct op *o = realloc(rd->ops, ncap * sizeof(*o));
		struct tag *t;
		char **f;

		if (o != NULL)
			rd->ops = o;
		t = o ? realloc(rd->tags, ncap * sizeof(*t)) : NULL;
		if (t != NULL)
			rd->tags = t;
		f = t ? realloc(rd->filters, ncap * sizeof(*f)) : NULL;
		if (f == NULL) {
			free(filter);
			snprintf(err, errlen, "out of memory");
			return PG_ENOMEM;
		}
		rd->filters = f;
		rd->cap = ncap;
	}
	memset(&rd->ops[rd->n], 0, sizeof(rd->ops[rd->n]));
	rd->ops[rd->n].rq = *rq;
	if (filter != NULL)
		rd->ops[rd->n].rq.filter = filter;
	rd->tags[rd->n] = tag;
	rd->filters[rd->n] = filter;
	rd->n++;
	return PG_OK;
}

/* The request that expands node NODE of walk WI. */
static pg_err
round_expand(pg_dir_batch *b, struct round *rd, size_t wi, size_t node,
	     char *err, size_t errlen)
{
	const pg_config *cfg = b->d->cfg;
	const char *dn = b->wk[wi].w.v[node].dn;
	struct tag tag = { T_EXPAND, wi, node };
	struct req rq;
	char *filter = NULL;
	pg_err e;

	if (memberof_mode(b->d)) {
		rq = (struct req){ REQ_SEARCH, dn, LDAP_SCOPE_BASE,
				   "(objectClass=*)", attrs_memberof, 1, NULL,
				   NULL };
		return round_add(rd, &rq, NULL, tag, err, errlen);
	}
	e = attr_filter(cfg->directory.membership == PG_MEMBER_UNIQUEMEMBER ?
			"uniqueMember" : "member", dn, &filter, err, errlen);
	if (e != PG_OK)
		return e;
	rq = (struct req){ REQ_SEARCH, cfg->directory.base, LDAP_SCOPE_SUBTREE,
			   NULL, attrs_none, 0, NULL, NULL };
	return round_add(rd, &rq, filter, tag, err, errlen);
}

/* Every request that is due now. */
static pg_err
round_build(pg_dir_batch *b, struct round *rd, char *err, size_t errlen)
{
	const pg_config *cfg = b->d->cfg;
	size_t i, k;
	pg_err e;

	for (i = 0; i < b->nq; i++) {
		struct mq *q = &b->q[i];
		struct tag tag = { T_COMPARE, i, 0 };
		struct req rq = { REQ_COMPARE, q->group_dn, 0, NULL, NULL, 0,
				  NULL, NULL };

		if (q->state != MQ_COMPARE)
			continue;
		switch (cfg->directory.membership) {
		case PG_MEMBER_UNIQUEMEMBER:
			rq.attr = "uniqueMember";
			rq.value = q->user_dn;
			break;
		case PG_MEMBER_MEMBERUID:
			rq.attr = "memberUid";
			rq.value = q->user;
			break;
		default:
			rq.attr = "member";
			rq.value = q->user_dn;
			break;
		}
		e = round_add(rd, &rq, NULL, tag, err, errlen);
		if (e != PG_OK)
			return e;
	}
	for (i = 0; i < b->nw; i++) {
		struct uwalk *u = &b->wk[i];

		u->expanded = 0;
		/* Level 1 goes with the compares that may need it. */
		if (!walk_open(b, i, !u->started) ||
		    u->level >= walk_levels(b->d) || u->lo >= u->hi)
			continue;
		u->started = 1;
		u->expanded = 1;
		for (k = u->lo; k < u->hi; k++) {
			e = round_expand(b, rd, i, k, err, errlen);
			if (e != PG_OK)
				return e;
		}
	}
	for (i = 0; i < b->nr; i++) {
		struct rv *r = &b->r[i];
		struct tag tag = { T_RESOLVE, i, 0 };
		char *attrs_login[] = { b->d->login, NULL };
		struct req rq = { REQ_SEARCH, cfg->directory.base,
				  LDAP_SCOPE_SUBTREE, r->filter,
				  memberof_mode(b->d) ? attrs_memberof :
				  memberuid_mode(b->d) ? attrs_login :
							attrs_none, 2, NULL,
				  NULL };

		if (r->done)
			continue;
		e = round_add(rd, &rq, NULL, tag, err, errlen);
		if (e != PG_OK)
			return e;
	}
	return PG_OK;
}

/* A compare's answer for question Q. */
static pg_err
apply_compare(pg_dir_batch *b, struct mq *q, const struct op *op, char *err,
	      size_t errlen)
{
	switch (op->lrc) {
	case LDAP_COMPARE_TRUE:
		return mq_answer(b, q, 1, -1, WHY_NONE, err, errlen);
	case LDAP_COMPARE_FALSE:
	case LDAP_NO_SUCH_ATTRIBUTE:
	case LDAP_UNDEFINED_TYPE:
		if (q->walk != NO_WALK) {
			q->state = MQ_WALK;	/* nested: the walk decides */
			return PG_OK;
		}
		return mq_answer(b, q, 0, -1, WHY_NOT_MEMBER, err, errlen);
	case LDAP_NO_SUCH_OBJECT:
		return mq_answer(b, q, 0, -1, WHY_NO_GROUP, err, errlen);
	case LDAP_INVALID_DN_SYNTAX:
		snprintf(err, errlen, "%s: compare on %s: %s", b->d->uri,
			 q->group_dn, ldap_err2string(op->lrc));
		return PG_EINVAL;
	default:
		return bad_result(b->d, "compare on", q->group_dn, op->lrc, err,
				  errlen);
	}
}

/* The groups one expansion found: entry DNs (member kinds) or the
 * memberOf values of the node's entry.  *missing = the entry does not
 * exist (memberOf). */
static pg_err
expansion_dns(pg_dir_batch *b, const struct op *op, char ***list,
	      size_t *n, int *missing, char *err, size_t errlen)
{
	LDAPMessage *m;
	char **v = NULL;
	size_t cnt = 0;
	pg_err e = PG_OK;

	*list = NULL;
	*n = 0;
	*missing = 0;
	if (memberof_mode(b->d)) {
		if (op->lrc == LDAP_NO_SUCH_OBJECT) {
			*missing = 1;
			return PG_OK;
		}
		if (op->lrc != LDAP_SUCCESS)
			return bad_result(b->d, "reading memberOf of",
					  op->rq.base, op->lrc, err, errlen);
		m = ldap_first_entry(b->d->ld, op->res);
		if (m == NULL) {
			*missing = 1;
			return PG_OK;
		}
		return entry_values(b->d, m, "memberOf", list, n, err, errlen);
	}
	/*
	 * The groups holding a DN, for a nested walk: only a complete list
	 * will do.  A list cut by the server's size limit, or missing what
	 * it referred to another server (referrals are not followed), could
	 * hide the path to a conflicting group and so pass R2: an error
	 * (the facts become UNKNOWN and the request is refused).
	 */
	if (op->lrc == LDAP_SIZELIMIT_EXCEEDED) {
		snprintf(err, errlen, "%s: search under %s for the groups "
			 "holding %s: more groups than the server's size "
			 "limit returns; the nested walk would be incomplete "
			 "(raise the limit for pmpgate's bind DN)",
			 b->d->uri ? b->d->uri : "directory", op->rq.base,
			 op->rq.filter ? op->rq.filter : "");
		return PG_EUNAVAIL;
	}
	if (op->lrc != LDAP_SUCCESS)
		return bad_result(b->d, "search under", op->rq.base, op->lrc,
				  err, errlen);
	if (ldap_count_references(b->d->ld, op->res) > 0) {
		snprintf(err, errlen, "%s: search under %s: part of the answer "
			 "is a referral to another server, which pmpgate does "
			 "not follow; the nested walk would be incomplete "
			 "(point [directory] uri at a server holding the "
			 "whole base, e.g. a global catalog)",
			 b->d->uri ? b->d->uri : "directory", op->rq.base);
		return PG_EUNAVAIL;
	}
	cnt = (size_t)ldap_count_entries(b->d->ld, op->res);
	if (cnt == 0)
		return PG_OK;
	v = calloc(cnt, sizeof(*v));
	if (v == NULL) {
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	for (m = ldap_first_entry(b->d->ld, op->res); m != NULL && e == PG_OK;
	     m = ldap_next_entry(b->d->ld, m)) {
		char *dn = entry_dn(b->d, m, &e, err, errlen);

		if (dn != NULL && *n < cnt)
			v[(*n)++] = dn;
		else
			free(dn);
	}
	if (e != PG_OK) {
		strv_free(v, *n);
		*n = 0;
		return e;
	}
	*list = v;
	return PG_OK;
}

/* An expansion's answer: node NODE of walk WI. */
static pg_err
apply_expand(pg_dir_batch *b, size_t wi, size_t node, const struct op *op,
	     char *err, size_t errlen)
{
	char **list = NULL;
	size_t n = 0, i;
	int missing;
	pg_err e;

	e = expansion_dns(b, op, &list, &n, &missing, err, errlen);
	if (e != PG_OK)
		return e;
	if (missing && node == 0) {
		/* memberOf: the user's own entry is gone. */
		for (i = 0; i < b->nq; i++)
			if (b->q[i].walk == wi && b->q[i].state == MQ_WALK)
				mq_answer(b, &b->q[i], 0, -1, WHY_NO_USER,
					  err, errlen);
		return PG_OK;
	}
	return walk_grow(b, wi, list, n, (long)node, err, errlen);
}

/* A person's search: one entry, none, or several. */
static pg_err
apply_resolve(pg_dir_batch *b, struct rv *r, const struct op *op, char *err,
	      size_t errlen)
{
	LDAPMessage *m;
	int count;
	pg_err e = PG_OK;

	if (op->lrc != LDAP_SUCCESS && op->lrc != LDAP_SIZELIMIT_EXCEEDED)
		return bad_result(b->d, "search under", op->rq.base, op->lrc,
				  err, errlen);
	r->done = 1;
	count = ldap_count_entries(b->d->ld, op->res);
	if (op->lrc == LDAP_SIZELIMIT_EXCEEDED)
		count = 2;
	if (count != 1) {
		*r->status = count <= 0 ? PG_ENOTFOUND : PG_EAMBIGUOUS;
		return PG_OK;
	}
	m = ldap_first_entry(b->d->ld, op->res);
	if (m != NULL)
		r->out->dn = entry_dn(b->d, m, &e, err, errlen);
	if (e != PG_OK)
		return e;
	if (r->out->dn == NULL) {
		snprintf(err, errlen, "%s: search under %s: an entry without "
			 "a DN", b->d->uri, op->rq.base);
		return PG_EPROTO;
	}
	if (memberof_mode(b->d)) {
		e = entry_values(b->d, m, "memberOf", &r->out->memberof,
				 &r->out->n_memberof, err, errlen);
		if (e != PG_OK)
			return e;
		r->out->have_memberof = 1;
	}
	if (memberuid_mode(b->d)) {
		/* memberUid groups list login names: the person's own */
		e = least_value(b->d, m, b->d->login, &r->out->name, err,
				errlen);
		if (e != PG_OK)
			return e;
	}
	*r->status = PG_OK;
	return PG_OK;
}

/* Apply a round's answers: compares first (they decide which questions
 * walk), then each walk's level in node order, then the people. */
static pg_err
round_apply(pg_dir_batch *b, struct round *rd, char *err, size_t errlen)
{
	size_t i;
	pg_err e;

	for (i = 0; i < rd->n; i++) {
		if (rd->tags[i].kind != T_COMPARE)
			continue;
		e = apply_compare(b, &b->q[rd->tags[i].i], &rd->ops[i], err,
				  errlen);
		if (e != PG_OK)
			return e;
	}
	for (i = 0; i < rd->n; i++) {
		if (rd->tags[i].kind != T_EXPAND)
			continue;
		e = apply_expand(b, rd->tags[i].i, rd->tags[i].node,
				 &rd->ops[i], err, errlen);
		if (e != PG_OK)
			return e;
	}
	for (i = 0; i < b->nw; i++)
		if (b->wk[i].expanded) {
			b->wk[i].expanded = 0;
			walk_level_done(b, i);
		}
	for (i = 0; i < rd->n; i++) {
		if (rd->tags[i].kind != T_RESOLVE)
			continue;
		e = apply_resolve(b, &b->r[rd->tags[i].i], &rd->ops[i], err,
				  errlen);
		if (e != PG_OK)
			return e;
	}
	return PG_OK;
}

static int
batch_pending(const pg_dir_batch *b)
{
	size_t i;

	for (i = 0; i < b->nq; i++)
		if (b->q[i].state != MQ_DONE)
			return 1;
	for (i = 0; i < b->nr; i++)
		if (!b->r[i].done)
			return 1;
	return 0;
}

pg_err
pg_dir_batch_step(pg_dir_batch *b, pg_deadline dl, int *more, char *err,
		  size_t errlen)
{
	struct round rd = { NULL, NULL, NULL, 0, 0 };
	size_t i;
	pg_err e = PG_OK;

	if (more != NULL)
		*more = 0;
	if (b == NULL) {
		snprintf(err, errlen, "directory: bad arguments");
		return PG_EINTERNAL;
	}
	if (b->failed != PG_OK)
		return batch_failed(b, err, errlen);
	b->d->retries = 1;
	/* memberOf values in hand answer level 1 without a request. */
	for (i = 0; i < b->nw && e == PG_OK; i++)
		if (!b->wk[i].started && b->wk[i].have_preset &&
		    walk_open(b, i, 0))
			e = walk_preset(b, i, err, errlen);
	if (e == PG_OK)
		e = round_build(b, &rd, err, errlen);
	if (e == PG_OK && rd.n == 0 && batch_pending(b)) {
		snprintf(err, errlen, "directory: a lookup made no progress");
		e = PG_EINTERNAL;
	}
	if (e == PG_OK && rd.n > 0)
		e = dir_ops(b->d, rd.ops, rd.n, dl, err, errlen);
	if (e == PG_OK)
		e = round_apply(b, &rd, err, errlen);
	round_free(&rd);
	if (e != PG_OK)
		return batch_fail(b, e, err);
	if (more != NULL)
		*more = batch_pending(b);
	return PG_OK;
}

pg_err
pg_dir_batch_run(pg_dir_batch *b, pg_deadline dl, char *err, size_t errlen)
{
	int more = 1;
	pg_err e = PG_OK;

	if (b == NULL) {
		snprintf(err, errlen, "directory: bad arguments");
		return PG_EINTERNAL;
	}
	if (b->failed != PG_OK)
		return batch_failed(b, err, errlen);
	more = batch_pending(b);
	while (e == PG_OK && more)
		e = pg_dir_batch_step(b, dl, &more, err, errlen);
	return e;
}

/* ---- public: membership ---------------------------------------------------- */

/* Why question I of B is answered "no", as pg_dir_is_member says it. */
static void
mq_why_msg(const pg_dir_batch *b, size_t i, char *err, size_t errlen)
{
	const struct mq *q = &b->q[i];

	switch (q->why) {
	case WHY_NO_GROUP:
		snprintf(err, errlen, "group %s does not exist", q->group_dn);
		break;
	case WHY_NO_USER:
		snprintf(err, errlen, "user entry %s does not exist",
			 q->user_dn);
		break;
	default:
		snprintf(err, errlen, "%s is not a member of %s",
			 b->d->cfg->directory.membership == PG_MEMBER_MEMBERUID
			 ? q->user : q->user_dn, q->group_dn);
		break;
	}
}

pg_err
pg_dir_is_member(pg_dir *d, const char *user, const char *user_dn,
		 const char *group_dn, pg_dir_path *path, pg_deadline dl,
		 char *err, size_t errlen)
{
	pg_dir_entry ent = { (char *)user_dn, NULL, 0, 0, NULL };
	pg_dir_batch *b = NULL;
	pg_err e, st = PG_EINTERNAL;

	if (path != NULL) {
		path->dn = NULL;
		path->n = 0;
	}
	if (d == NULL || user_dn == NULL || user_dn[0] == '\0' ||
	    group_dn == NULL || group_dn[0] == '\0') {
		snprintf(err, errlen, "directory: missing user or group DN");
		return PG_EINVAL;
	}
	b = pg_dir_batch_new(d);
	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	e = pg_dir_batch_member(b, user, &ent, group_dn, &st, path, err,
				errlen);
	if (e == PG_OK)
		e = pg_dir_batch_run(b, dl, err, errlen);
	if (e == PG_OK && st != PG_OK) {
		mq_why_msg(b, 0, err, errlen);
		e = st;
	}
	if (e != PG_OK)
		pg_dir_path_free(path);
	pg_dir_batch_free(b);
	return e;
}

pg_err
pg_dir_is_member_many(pg_dir *d, const char *user, const pg_dir_entry *entry,
		      const char *const *groups, size_t n, pg_err *results,
		      pg_dir_path *paths, pg_deadline dl, char *err,
		      size_t errlen)
{
	pg_dir_batch *b = NULL;
	size_t i;
	pg_err e = PG_OK;

	if (d == NULL || (n > 0 && (groups == NULL || results == NULL))) {
		snprintf(err, errlen, "directory: bad arguments");
		return PG_EINTERNAL;
	}
	for (i = 0; i < n; i++) {
		results[i] = PG_EINTERNAL;
		if (paths != NULL)
			memset(&paths[i], 0, sizeof(paths[i]));
	}
	b = pg_dir_batch_new(d);
	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		e = PG_ENOMEM;
	}
	for (i = 0; i < n && e == PG_OK; i++)
		e = pg_dir_batch_member(b, user, entry, groups[i], &results[i],
					paths != NULL ? &paths[i] : NULL, err,
					errlen);
	if (e == PG_OK)
		e = pg_dir_batch_run(b, dl, err, errlen);
	for (i = 0; e != PG_OK && i < n; i++) {
		results[i] = e;
		if (paths != NULL)
			pg_dir_path_free(&paths[i]);
	}
	pg_dir_batch_free(b);
	return e;
}

/* ---- public: resolve --------------------------------------------------------- */

pg_err
pg_dir_resolve(pg_dir *d, const char *const *names, size_t n, char **dns,
	       pg_err *status, pg_deadline dl, char *err, size_t errlen)
{
	pg_dir_entry *ents = NULL;
	pg_dir_batch *b = NULL;
	size_t i;
	pg_err e;

	if (d == NULL || (n > 0 && (names == NULL || dns == NULL ||
				    status == NULL))) {
		snprintf(err, errlen, "directory: bad arguments");
		return PG_EINTERNAL;
	}
	for (i = 0; i < n; i++) {
		dns[i] = NULL;
		status[i] = PG_EINTERNAL;
	}
	if (n == 0)
		return PG_OK;
	ents = calloc(n, sizeof(*ents));
	b = pg_dir_batch_new(d);
	if (ents == NULL || b == NULL) {
		snprintf(err, errlen, "out of memory");
		e = PG_ENOMEM;
		goto out;
	}
	e = pg_dir_batch_resolve(b, names, n, ents, status, err, errlen);
	if (e == PG_OK)
		e = pg_dir_batch_run(b, dl, err, errlen);
	for (i = 0; e == PG_OK && i < n; i++) {
		dns[i] = ents[i].dn;
		ents[i].dn = NULL;
	}
out:
	for (i = 0; i < n; i++) {
		if (e != PG_OK)
			status[i] = e;
		if (ents != NULL)
			pg_dir_entry_free(&ents[i]);
	}
	free(ents);
	pg_dir_batch_free(b);
	return e;
}

/* ---- public: member lists (review) ------------------------------------------ */

/* The attribute of user_filter's first "(ATTR=%u)" assertion: "(uid=%u)"
 * -> "uid"; "uid" when the template has none. */
static void
login_attr(const char *tmpl, char *buf, size_t len)
{
	char *attrs[EXACT_ATTRS_MAX] = { NULL }, e[64];
	size_t n = 0, i;

	/* the attribute pg_dir_find_user_entry takes the name from */
	snprintf(buf, len, "uid");
	if (tmpl != NULL && exact_attrs(tmpl, attrs, &n, e, sizeof(e)) ==
	    PG_OK && n > 0 && strlen(attrs[0]) < len)
		snprintf(buf, len, "%s", attrs[0]);
	for (i = 0; i < n; i++)
		free(attrs[i]);
}

/* user_filter with every "%u" replaced by "*" (a wildcard, not a value):
 * matches every user entry (free()). */
static char *
user_wildcard_filter(const pg_dir *d)
{
	const char *tmpl = d->cfg->directory.user_filter ?
		d->cfg->directory.user_filter :
		"(&(objectClass=posixAccount)(uid=%u))";
	char *out = malloc(strlen(tmpl) + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (; *tmpl; tmpl++) {
		if (tmpl[0] == '%' && tmpl[1] == 'u') {
			*o++ = '*';
			tmpl++;
		} else {
			*o++ = *tmpl;
		}
	}
	*o = '\0';
	return out;
}

/* One entry read by a base search: its DN and the values of two
 * attributes (a1 may be NULL). */
struct entry {
	char *dn;
	char **v0, **v1;
	size_t n0, n1;
};

static void
entry_free(struct entry *en)
{
	free(en->dn);
	strv_free(en->v0, en->n0);
	strv_free(en->v1, en->n1);
	memset(en, 0, sizeof(*en));
}

/* Read entry DN when it matches FILTER.  *found = 0 when DN names no
 * entry or the entry does not match. */
static pg_err
read_entry(pg_dir *d, const char *dn, const char *filter, const char *a0,
	   const char *a1, pg_deadline dl, int *found, struct entry *en,
	   char *err, size_t errlen)
{
	char *attrs[3] = { (char *)a0, (char *)a1, NULL };
	struct req rq = { REQ_SEARCH, dn, LDAP_SCOPE_BASE, filter, attrs, 1,
			  NULL, NULL };
	LDAPMessage *res = NULL, *m;
	char *s;
	int lrc;
	pg_err e;

	*found = 0;
	memset(en, 0, sizeof(*en));
	e = dir_request(d, &rq, dl, &res, &lrc, err, errlen);
	if (e != PG_OK)
		goto out;
	if (lrc == LDAP_NO_SUCH_OBJECT || lrc == LDAP_INVALID_DN_SYNTAX)
		goto out;
	if (lrc != LDAP_SUCCESS) {
		e = bad_result(d, "reading", dn, lrc, err, errlen);
		goto out;
	}
	m = ldap_first_entry(d->ld, res);
	if (m == NULL)
		goto out;
	s = ldap_get_dn(d->ld, m);
	en->dn = strdup(s != NULL ? s : dn);
	if (s != NULL)
		ldap_memfree(s);
	if (en->dn == NULL) {
		snprintf(err, errlen, "out of memory");
		e = PG_ENOMEM;
		goto out;
	}
	e = entry_values(d, m, a0, &en->v0, &en->n0, err, errlen);
	if (e == PG_OK && a1 != NULL)
		e = entry_values(d, m, a1, &en->v1, &en->n1, err, errlen);
	if (e == PG_OK)
		*found = 1;
out:
	if (e != PG_OK || !*found)
		entry_free(en);
	if (res != NULL)
		ldap_msgfree(res);
	return e;
}

/* Users collected so far (duplicates removed at the end). */
struct mlist {
	pg_dir_member *v;
	size_t n, cap, max;
};

/* Add a user (copies of DN, NAME, VIA; KEY from DN or NAME). */
static pg_err
mlist_add(struct mlist *l, const char *dn, const char *name, const char *via,
	  char *err, size_t errlen)
{
	pg_dir_member m = { NULL, NULL, NULL, NULL };

	if (l->n >= l->max) {
		snprintf(err, errlen, "more than %zu member entries: the "
			 "review does not report a partial list", l->max);
		return PG_EPROTO;
	}
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		pg_dir_member *nv = realloc(l->v, ncap * sizeof(*nv));

		if (nv == NULL)
			goto nomem;
		l->v = nv;
		l->cap = ncap;
	}
	m.key = dn != NULL ? dn_key(dn) : strdup(name);
	m.dn = dn != NULL ? strdup(dn) : NULL;
	m.name = name != NULL ? strdup(name) : NULL;
	m.via = strdup(via);
	if (m.key == NULL || (dn != NULL && m.dn == NULL) ||
	    (name != NULL && m.name == NULL) || m.via == NULL)
		goto nomem;
	l->v[l->n++] = m;
	return PG_OK;
nomem:
	free(m.key);
	free(m.dn);
	free(m.name);
	free(m.via);
	snprintf(err, errlen, "out of memory");
	return PG_ENOMEM;
}

static int
member_cmp(const void *a, const void *b)
{
	return strcmp(((const pg_dir_member *)a)->key,
		      ((const pg_dir_member *)b)->key);
}

static void
member_free(pg_dir_member *m)
{
	free(m->key);
	free(m->dn);
	free(m->name);
	free(m->via);
}

static int
rank_cmp(const void *a, const void *b, void *arg)
{
	const pg_dir_member *v = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = strcmp(v[i].key, v[j].key);

	if (c != 0)
		return c;
	return i < j ? -1 : i > j;
}

/* Sort by key and keep the first of each key in the order of discovery
 * (the one reached through the fewest nested groups: users are added
 * level by level). */
static pg_err
mlist_unique(struct mlist *l, char *err, size_t errlen)
{
	pg_dir_member *nv;
	size_t *idx, i, j = 0;

	if (l->n < 2)
		return PG_OK;
	idx = malloc(l->n * sizeof(*idx));
	nv = malloc(l->n * sizeof(*nv));
	if (idx == NULL || nv == NULL) {
		free(idx);
		free(nv);
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	for (i = 0; i < l->n; i++)
		idx[i] = i;
	qsort_r(idx, l->n, sizeof(*idx), rank_cmp, l->v);
	for (i = 0; i < l->n; i++) {
		pg_dir_member *m = &l->v[idx[i]];

		if (j > 0 && strcmp(nv[j - 1].key, m->key) == 0)
			member_free(m);
		else
			nv[j++] = *m;
	}
	free(l->v);
	free(idx);
	l->v = nv;
	l->n = j;
	l->cap = l->n;
	return PG_OK;
}

/* A nested group found at nesting depth LEVEL: remember it for the next
 * level unless visited; bounded by PG_DIR_MAX_GROUPS. */
static pg_err
groups_add(pg_dir *d, struct walk *g, const char *dn, long parent,
	   char *err, size_t errlen)
{
	int added;
	char *c;

	(void)d;
	if (g->n >= PG_DIR_MAX_GROUPS) {
		snprintf(err, errlen, "more than %d nested groups: the review "
			 "does not report a partial list", PG_DIR_MAX_GROUPS);
		return PG_EPROTO;
	}
	c = strdup(dn);
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return PG_ENOMEM;
	}
	return walk_add(g, c, parent, &added, err, errlen);
}

/* member / uniqueMember: read each group's ATTR values, then each member
 * entry, level by level. */
static pg_err
members_by_dn(pg_dir *d, const char *attr, const char *group_dn,
	      struct mlist *l, size_t *skipped, pg_deadline dl, char *err,
	      size_t errlen)
{
	struct walk g = { NULL, 0, 0 };
	struct entry grp, en;
	char login[64], *uf = NULL, *filter = NULL;
	size_t lo, hi, i, k;
	int level, found;
	pg_err e;

	memset(&grp, 0, sizeof(grp));
	memset(&en, 0, sizeof(en));
	login_attr(d->cfg->directory.user_filter, login, sizeof(login));
	uf = user_wildcard_filter(d);
	if (uf == NULL || asprintf(&filter, "(|%s(%s=*))", uf, attr) < 0) {
		filter = NULL;
		snprintf(err, errlen, "out of memory");
		e = PG_ENOMEM;
		goto out;
	}
	e = groups_add(d, &g, group_dn, -1, err, errlen);
	if (e != PG_OK)
		goto out;
	lo = 0;
	hi = g.n;
	/* level = the nested groups between the target and these groups */
	for (level = 0; lo < hi; level++) {
		int deeper = d->cfg->directory.nested_groups &&
			     level < d->cfg->directory.max_depth;

		for (i = lo; i < hi; i++) {
			e = read_entry(d, g.v[i].dn, "(objectClass=*)", attr,
				       NULL, dl, &found, &grp, err, errlen);
			if (e != PG_OK)
				goto out;
			if (!found && i == 0) {
				snprintf(err, errlen, "group %s does not exist",
					 group_dn);
				e = PG_ENOTFOUND;
				goto out;
			}
			for (k = 0; k < grp.n0; k++) {
				e = read_entry(d, grp.v0[k], filter, login,
					       attr, dl, &found, &en, err,
					       errlen);
				if (e != PG_OK)
					goto out;
				if (!found) {
					(*skipped)++;
				} else if (en.n1 > 0) {
					if (deeper)
						e = groups_add(d, &g, en.dn,
							       (long)i, err,
							       errlen);
				} else {
					e = mlist_add(l, en.dn,
						      least(en.v0, en.n0),
						      g.v[i].dn, err, errlen);
				}
				entry_free(&en);
				if (e != PG_OK)
					goto out;
			}
			entry_free(&grp);
		}
		lo = hi;
		hi = g.n;
	}
	e = PG_OK;
out:
	entry_free(&grp);
	entry_free(&en);
	walk_free(&g);
	free(filter);
	free(uf);
	return e;
}

/* Search under base for entries matching FILTER, reading ATTR (may be
 * NULL): the entries' DNs and ATTR's first values.  At most MAX entries
 * (PG_EPROTO beyond). */
static pg_err
search_entries(pg_dir *d, const char *filter, const char *attr, size_t max,
	       pg_deadline dl, char ***dns, char ***vals, size_t *n,
	       char *err, size_t errlen)
{
	char *attrs[2] = { (char *)(attr ? attr : LDAP_NO_ATTRS), NULL };
	int limit = max >= (size_t)INT32_MAX ? 0 : (int)max + 1;
	struct req rq = { REQ_SEARCH, d->cfg->directory.base,
			  LDAP_SCOPE_SUBTREE, filter, attrs, limit, NULL, NULL };
	LDAPMessage *res = NULL, *m;
	char **dv = NULL, **vv = NULL, **one = NULL;
	size_t cnt = 0, i = 0, n_one = 0;
	int lrc;
	pg_err e;

	*dns = *vals = NULL;
	*n = 0;
	e = dir_request(d, &rq, dl, &res, &lrc, err, errlen);
	if (e != PG_OK)
		goto out;
	if (lrc == LDAP_SIZELIMIT_EXCEEDED ||
	    (size_t)ldap_count_entries(d->ld, res) > max) {
		snprintf(err, errlen, "more than %zu entries match %s: the "
			 "review does not report a partial list", max, filter);
		e = PG_EPROTO;
		goto out;
	}
	if (lrc != LDAP_SUCCESS) {
		e = bad_result(d, "search under", rq.base, lrc, err, errlen);
		goto out;
	}
	cnt = (size_t)ldap_count_entries(d->ld, res);
	dv = calloc(cnt ? cnt : 1, sizeof(*dv));
	vv = calloc(cnt ? cnt : 1, sizeof(*vv));
	if (dv == NULL || vv == NULL)
		goto nomem;
	for (m = ldap_first_entry(d->ld, res); m != NULL && i < cnt;
	     m = ldap_next_entry(d->ld, m)) {
		char *s = ldap_get_dn(d->ld, m);

		if (s == NULL)
			continue;
		dv[i] = strdup(s);
		ldap_memfree(s);
		if (dv[i] == NULL)
			goto nomem;
		if (attr != NULL) {
			e = entry_values(d, m, attr, &one, &n_one, err, errlen);
			if (e != PG_OK)
				goto out;
			if (n_one > 0 && least(one, n_one) != NULL &&
			    (vv[i] = strdup(least(one, n_one))) == NULL) {
				strv_free(one, n_one);
				one = NULL;
				goto nomem;
			}
			strv_free(one, n_one);
			one = NULL;
		}
		i++;
	}
	*dns = dv;
	*vals = vv;
	*n = i;
	dv = vv = NULL;
	e = PG_OK;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	e = PG_ENOMEM;
out:
	if (dv != NULL)
		strv_free(dv, cnt);
	if (vv != NULL)
		strv_free(vv, cnt);
	if (res != NULL)
		ldap_msgfree(res);
	return e;
}

/* memberOf: search for the entries whose memberOf names each group. */
static pg_err
members_by_memberof(pg_dir *d, const char *group_dn, struct mlist *l,
		    pg_deadline dl, char *err, size_t errlen)
{
	struct walk g = { NULL, 0, 0 };
	struct entry root;
	char login[64], *uf = NULL, *filter = NULL, *mo = NULL;
	char **dns = NULL, **vals = NULL;
	size_t lo, hi, i, k, n = 0;
	int level, found;
	pg_err e;

	memset(&root, 0, sizeof(root));
	login_attr(d->cfg->directory.user_filter, login, sizeof(login));
	uf = user_wildcard_filter(d);
	if (uf == NULL) {
		snprintf(err, errlen, "out of memory");
		e = PG_ENOMEM;
		goto out;
	}
	e = read_entry(d, group_dn, "(objectClass=*)", LDAP_NO_ATTRS, NULL,
		       dl, &found, &root, err, errlen);
	if (e != PG_OK)
		goto out;
	if (!found) {
		snprintf(err, errlen, "group %s does not exist", group_dn);
		e = PG_ENOTFOUND;
		goto out;
	}
	e = groups_add(d, &g, group_dn, -1, err, errlen);
	if (e != PG_OK)
		goto out;
	lo = 0;
	hi = g.n;
	for (level = 0; lo < hi; level++) {
		int deeper = d->cfg->directory.nested_groups &&
			     level < d->cfg->directory.max_depth;

		for (i = lo; i < hi; i++) {
			int pass;

			e = attr_filter("memberOf", g.v[i].dn, &mo, err, errlen);
			if (e != PG_OK)
				goto out;
			for (pass = 0; pass < (deeper ? 2 : 1); pass++) {
				free(filter);
				if (asprintf(&filter, pass == 0 ? "(&%s%s)" :
					     "(&%s(!%s))", mo, uf) < 0) {
					filter = NULL;
					snprintf(err, errlen, "out of memory");
					e = PG_ENOMEM;
					goto out;
				}
				e = search_entries(d, filter, pass == 0 ? login
						   : NULL, pass == 0 ? l->max :
						   PG_DIR_MAX_GROUPS, dl, &dns,
						   &vals, &n, err, errlen);
				if (e != PG_OK)
					goto out;
				for (k = 0; k < n && e == PG_OK; k++)
					e = pass == 0 ?
						mlist_add(l, dns[k], vals[k],
							  g.v[i].dn, err,
							  errlen) :
						groups_add(d, &g, dns[k],
							   (long)i, err,
							   errlen);
				strv_free(dns, n);
				strv_free(vals, n);
				dns = vals = NULL;
				n = 0;
				if (e != PG_OK)
					goto out;
			}
			free(mo);
			mo = NULL;
		}
		lo = hi;
		hi = g.n;
	}
	e = PG_OK;
out:
	strv_free(dns, n);
	strv_free(vals, n);
	entry_free(&root);
	walk_free(&g);
	free(filter);
	free(mo);
	free(uf);
	return e;
}

/* memberUid: the values are login names. */
static pg_err
members_by_uid(pg_dir *d, const char *group_dn, struct mlist *l,
	       size_t *skipped, pg_deadline dl, char *err, size_t errlen)
{
	struct entry grp;
	char scratch[128];
	size_t k;
	int found;
	pg_err e;

	e = read_entry(d, group_dn, "(objectClass=*)", "memberUid", NULL, dl,
		       &found, &grp, err, errlen);
	if (e != PG_OK)
		return e;
	if (!found) {
		snprintf(err, errlen, "group %s does not exist", group_dn);
		return PG_ENOTFOUND;
	}
	for (k = 0; k < grp.n0 && e == PG_OK; k++) {
		if (check_name(grp.v0[k], "name", scratch, sizeof(scratch)) !=
		    PG_OK) {
			(*skipped)++;
			continue;
		}
		e = mlist_add(l, NULL, grp.v0[k], group_dn, err, errlen);
	}
	entry_free(&grp);
	return e;
}

pg_err
pg_dir_group_members(pg_dir *d, const char *group_dn, size_t max,
		     pg_dir_members *out, pg_deadline dl, char *err,
		     size_t errlen)
{
	struct mlist l = { NULL, 0, 0, 0 };
	size_t skipped = 0;
	pg_err e;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (d == NULL || out == NULL || group_dn == NULL ||
	    group_dn[0] == '\0') {
		snprintf(err, errlen, "directory: missing group DN");
		return PG_EINVAL;
	}
	d->retries = 1;
	l.max = max == 0 || max > PG_DIR_MAX_MEMBERS ? PG_DIR_MAX_MEMBERS : max;
	/* duplicates (a user in several nested groups) are removed at the
	 * end: allow for them while collecting, within a bound */
	l.max = l.max * 4;
	switch (d->cfg->directory.membership) {
	case PG_MEMBER_MEMBER:
		e = members_by_dn(d, "member", group_dn, &l, &skipped, dl, err,
				  errlen);
		break;
	case PG_MEMBER_UNIQUEMEMBER:
		e = members_by_dn(d, "uniqueMember", group_dn, &l, &skipped, dl,
				  err, errlen);
		break;
	case PG_MEMBER_MEMBERUID:
		e = members_by_uid(d, group_dn, &l, &skipped, dl, err, errlen);
		break;
	case PG_MEMBER_MEMBEROF:
		e = members_by_memberof(d, group_dn, &l, dl, err, errlen);
		break;
	default:
		snprintf(err, errlen, "directory: unknown group_membership");
		e = PG_ECONFIG;
		break;
	}
	if (e != PG_OK)
		goto out;
	e = mlist_unique(&l, err, errlen);
	if (e != PG_OK)
		goto out;
	l.max /= 4;
	if (l.n > l.max) {
		snprintf(err, errlen, "group %s has more than %zu members: the "
			 "review does not report a partial list", group_dn,
			 l.max);
		e = PG_EPROTO;
		goto out;
	}
	out->v = l.v;
	out->n = l.n;
	out->skipped = skipped;
	l.v = NULL;
	l.n = 0;
out:
	while (l.n > 0)
		member_free(&l.v[--l.n]);
	free(l.v);
	return e;
}

void
pg_dir_members_free(pg_dir_members *m)
{
	if (m == NULL)
		return;
	while (m->n > 0)
		member_free(&m->v[--m->n]);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

const pg_dir_member *
pg_dir_members_find(const pg_dir_members *m, const char *key)
{
	pg_dir_member k = { (char *)key, NULL, NULL, NULL };

	if (m == NULL || m->n == 0 || key == NULL)
		return NULL;
	return bsearch(&k, m->v, m->n, sizeof(*m->v), member_cmp);
}

/* ---- public: ping ---------------------------------------------------------- */

pg_err
pg_dir_ping(pg_dir *d, pg_deadline dl, char *err, size_t errlen)
{
	char *no_attrs[] = { LDAP_NO_ATTRS, NULL };
	const char *bind_dn;
	struct req rq;
	LDAPMessage *res = NULL;
	int lrc;
	pg_err e;

	if (d == NULL) {
		snprintf(err, errlen, "directory: bad arguments");
		return PG_EINTERNAL;
	}
	d->retries = 1;
	bind_dn = d->cfg->directory.bind_dn;
	rq = (struct req){ REQ_SEARCH, bind_dn ? bind_dn : "", LDAP_SCOPE_BASE,
			   "(objectClass=*)", no_attrs, 1, NULL, NULL };
	e = dir_request(d, &rq, dl, &res, &lrc, err, errlen);
	if (e != PG_OK)
		goto out;
	if (lrc != LDAP_SUCCESS || ldap_count_entries(d->ld, res) != 1) {
		e = bad_result(d, "reading", bind_dn ? bind_dn : "the root DSE",
			       lrc != LDAP_SUCCESS ? lrc : LDAP_NO_SUCH_OBJECT,
			       err, errlen);
		goto out;
	}
	e = PG_OK;
out:
	if (res != NULL)
		ldap_msgfree(res);
	return e;
}
