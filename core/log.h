/*
 * log.h - one log function for the daemon and the tools.
 *
 * Goes to syslog (LOG_AUTHPRIV facility) or, after pg_log_to_stderr(),
 * to stderr as "IDENT: message".  Never pass a secret to it.
 */
#ifndef PMPGATE_LOG_H
#define PMPGATE_LOG_H

#include <syslog.h>

/* Set the identity and destination.  to_stderr != 0 writes to stderr;
 * debug != 0 lets LOG_DEBUG through.  Safe to call again (reload). */
void pg_log_init(const char *ident, int to_stderr, int debug);

/* Log one line at a syslog priority.  Control characters in the
 * formatted message are replaced so that one call is one line. */
void pg_log(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
