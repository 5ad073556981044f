/*
 * directory.h - the LDAP directory, through libldap.
 *
 * A pg_dir is one connection, used by one worker thread at a time (the
 * daemon keeps one per worker).  It connects lazily, tries the configured
 * URIs in order, uses ldaps:// or StartTLS with the configured CA file and
 * no other (TLS certificate checking is "demand"; plain ldap:// without
 * StartTLS is refused unless allow_plaintext), binds with bind_dn and the
 * password read from bind_password_file (wiped right after the bind), and
 * reconnects once, transparently, when the server has dropped it.
 *
 * Every filter is built from the configured templates with values escaped
 * by libldap (ldap_bv2escaped_filter_value); no whole member list is ever
 * read: membership is a compare or a filtered search per group, so the
 * cost does not grow with group size.  Nested groups are walked upward
 * (from the user towards the group) with a depth bound and a visited set.
 *
 * Every call takes the request deadline; operations are bounded by
 * min([directory] timeout, deadline).  Errors: PG_EUNAVAIL (no server
 * reachable, TLS failure, bind failure, server error), PG_ETIMEOUT,
 * PG_ENOTFOUND, PG_EAMBIGUOUS, PG_EINVAL (a value that cannot be looked
 * up, e.g. empty or longer than 256 bytes), with a message in err that
 * never contains the password.
 */
#ifndef PMPGATE_DIRECTORY_H
#define PMPGATE_DIRECTORY_H

#include <stddef.h>

#include "config.h"
#include "deadline.h"
#include "err.h"

typedef struct pg_dir pg_dir;

/* A new, unconnected handle using CFG (which must outlive it). */
pg_dir *pg_dir_new(const pg_config *cfg);
void pg_dir_free(pg_dir *d);

/*
 * Find USER by [directory] user_filter ("%u" = escaped name) under base.
 * On PG_OK *dn is the entry's DN (free()).  PG_ENOTFOUND when no entry,
 * PG_EAMBIGUOUS when more than one.
 */
pg_err pg_dir_find_user(pg_dir *d, const char *user, pg_deadline dl,
			char **dn, char *err, size_t errlen);

/* How a member reached the group: the chain of group DNs from the group
 * holding the user directly up to the target group (for explanations). */
typedef struct pg_dir_path {
	char **dn;
	size_t n;
} pg_dir_path;

void pg_dir_path_free(pg_dir_path *p);

/*
 * Is the user (login USER, entry USER_DN) a member of GROUP_DN, by the
 * configured group_membership, nested when nested_groups = yes?
 * PG_OK = member (path filled when non-NULL), PG_ENOTFOUND = not a member
 * (also when the group does not exist), errors as above.
 */
pg_err pg_dir_is_member(pg_dir *d, const char *user, const char *user_dn,
			const char *group_dn, pg_dir_path *path, pg_deadline dl,
			char *err, size_t errlen);

/*
 * Resolve N people named in a ticket through [directory] ticket_user_attr
 * (matching as the directory matches, e.g. case-insensitively for mail),
 * all searches in flight at once.  dns[i] becomes the DN of names[i]'s one
 * entry, or NULL when none or several match (status[i] says which:
 * PG_OK, PG_ENOTFOUND, PG_EAMBIGUOUS, PG_EINVAL).  The call itself fails
 * only when the directory fails.  Free dns[i] with free().
 */
pg_err pg_dir_resolve(pg_dir *d, const char *const *names, size_t n,
		      char **dns, pg_err *status, pg_deadline dl, char *err,
		      size_t errlen);

/* Two DNs name the same entry (normalised, case-insensitive compare). */
int pg_dn_equal(const char *a, const char *b);

/* Bind and search the bind account's own entry (for doctor/status). */
pg_err pg_dir_ping(pg_dir *d, pg_deadline dl, char *err, size_t errlen);

#endif
