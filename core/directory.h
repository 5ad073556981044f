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
 * by libldap (ldap_bv2escaped_filter_value); no decision ever reads a
 * whole member list: membership is a compare or a filtered search per
 * group, so the cost does not grow with group size (only the review
 * report, pg_dir_group_members below, reads member lists).  Nested groups
 * are walked upward (from the user towards the group) with a depth bound
 * and a visited set.
 *
 * Round trips: the requests of one step of a decision go out together and
 * their answers are collected together (see pg_dir_batch below), so a
 * decision waits for a few round trips, not one per request.
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
 * PG_EAMBIGUOUS when more than one.  The name must also be the entry's
 * own value of an attribute user_filter asserts with "(ATTR=%u)", byte
 * for byte (the directory's matching folds case, spaces and compatibility
 * forms); otherwise PG_ENOTFOUND.
 */
pg_err pg_dir_find_user(pg_dir *d, const char *user, pg_deadline dl,
			char **dn, char *err, size_t errlen);

/* An entry as a decision needs it: its DN and, with group_membership =
 * memberOf, the entry's memberOf values read in the same search
 * (have_memberof = 1, also when it holds none).  For a user found by
 * pg_dir_find_user_entry, name is the entry's own login name: the least
 * value (in byte order, so no server's value order matters) of the
 * attribute of user_filter's first (ATTR=%u) assertion, as `pmpgate
 * review` names members (NULL when the entry holds none).  It is the same
 * whichever spelling or attribute found the entry, so the ledger keys a
 * person by it: that attribute must be one only administrators change
 * (uid, sAMAccountName), never one users edit themselves.  With
 * group_membership = memberUid, people resolved by pg_dir_batch_resolve
 * get their name the same way (memberUid groups list login names). */
typedef struct pg_dir_entry {
	char *dn;
	char **memberof;
	size_t n_memberof;
	int have_memberof;
	char *name;
} pg_dir_entry;

/* Free what E holds and zero it; safe on a zeroed entry and on NULL. */
void pg_dir_entry_free(pg_dir_entry *e);

/*
 * pg_dir_find_user, handing back the entry (*out, zeroed on error; free
 * with pg_dir_entry_free): one search finds the entry and brings back the
 * attributes that confirm the name and, with memberOf, the memberOf
 * values, so membership needs no further read of the user's entry.
 */
pg_err pg_dir_find_user_entry(pg_dir *d, const char *user, pg_deadline dl,
			      pg_dir_entry *out, char *err, size_t errlen);

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
 * Is the user (login USER, entry ENTRY) a member of each of GROUPS[0..N)?
 * The same answers as N calls of pg_dir_is_member, in as few round trips
 * as the kind allows (see pg_dir_batch): results[i] is PG_OK (member;
 * paths[i] filled when PATHS is non-NULL) or PG_ENOTFOUND (not a member,
 * also when the group does not exist).  Any directory error fails the
 * whole call: every results[i] is that error and no path is filled.  With
 * memberOf, ENTRY's memberOf values are used when it has them
 * (pg_dir_find_user_entry), else read.
 */
pg_err pg_dir_is_member_many(pg_dir *d, const char *user,
			     const pg_dir_entry *entry,
			     const char *const *groups, size_t n,
			     pg_err *results, pg_dir_path *paths,
			     pg_deadline dl, char *err, size_t errlen);

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

/*
 * ---- Batches: the lookups of a decision, together -------------------------
 *
 * A batch collects membership questions and people to resolve and
 * answers them in rounds.  A round sends every request that is due at
 * once and then collects every answer: one round trip, whatever the
 * number of requests (up to 64 per round trip).
 *
 *   member, uniqueMember  round 1: a compare on each group; with
 *             nested_groups, also the search for the groups that hold
 *             each user directly (walk level 1).  Each further round: the
 *             next level of every walk still needed, one search per group
 *             of the level.  Not a member after a compare "false" and no
 *             walk to the group within max_depth.
 *   memberUid round 1: a compare on each group; no nesting.
 *   memberOf  level 1 is the user's memberOf values: from the entry when
 *             it carries them (no request), else read in round 1; with
 *             nesting each further round reads the memberOf values of the
 *             groups of the level.
 *   people    round 1: one search per name, as pg_dir_resolve; with
 *             memberOf each entry's memberOf values come with it.
 *
 * Questions about one user added before that user's walk has started
 * share one walk.  Each answer (and path) is the one pg_dir_is_member
 * gives.  The first directory error fails the whole batch: every status
 * becomes that error, paths and entries are freed, and later calls
 * return the same error; a batch never hands out a partial result.
 *
 * The STATUS, PATH and OUT arguments are the caller's and must stay valid
 * until the batch is freed; they are written as answers arrive.  Until a
 * question is answered its status is PG_EINTERNAL.  Strings and entries
 * passed in are copied.  Questions and people may be added between
 * rounds (e.g. people once a ticket has arrived, approvers once
 * resolved): they join the next round.
 */
typedef struct pg_dir_batch pg_dir_batch;

/* An empty batch on D (NULL when out of memory). */
pg_dir_batch *pg_dir_batch_new(pg_dir *d);
void pg_dir_batch_free(pg_dir_batch *b);

/* Ask whether USER (entry ENTRY) is a member of GROUP_DN; the answer in
 * *status (PG_OK / PG_ENOTFOUND) and, for a member, *path (when
 * non-NULL).  Errors (PG_EINVAL for a missing DN or a bad memberUid name)
 * fail the batch. */
pg_err pg_dir_batch_member(pg_dir_batch *b, const char *user,
			   const pg_dir_entry *entry, const char *group_dn,
			   pg_err *status, pg_dir_path *path, char *err,
			   size_t errlen);

/* Resolve NAMES[0..N) as pg_dir_resolve does: out[i] gets the entry of
 * names[i] (DN, and memberOf values with memberOf), status[i] PG_OK,
 * PG_ENOTFOUND, PG_EAMBIGUOUS or PG_EINVAL (at once, for a name that
 * cannot be looked up). */
pg_err pg_dir_batch_resolve(pg_dir_batch *b, const char *const *names,
			    size_t n, pg_dir_entry *out, pg_err *status,
			    char *err, size_t errlen);

/* One round (one round trip; none when nothing is due).  *more (when
 * non-NULL) = questions or people remain unanswered. */
pg_err pg_dir_batch_step(pg_dir_batch *b, pg_deadline dl, int *more,
			 char *err, size_t errlen);

/* Rounds until everything added so far is answered. */
pg_err pg_dir_batch_run(pg_dir_batch *b, pg_deadline dl, char *err,
			size_t errlen);

/* Two DNs name the same entry (normalised, case-insensitive compare). */
int pg_dn_equal(const char *a, const char *b);

/*
 * ---- Member lists (for `pmpgate review` only) ------------------------------
 *
 * pg_dir_group_members is the one call that reads a group's member list:
 * an administrator's report needs every member, a decision never does.
 * It walks DOWN from GROUP_DN by the configured group_membership:
 *   member, uniqueMember  read the group's own member values; read each
 *              member entry (base search, filter "(|U(ATTR=*))" where U is
 *              user_filter with %u as a wildcard): an entry holding ATTR
 *              values is a nested group, any other returned entry a user;
 *              a value naming no entry, or an entry that is neither, is
 *              counted in `skipped`;
 *   memberOf   search under base for "(&(memberOf=G)U)" (users) and, when
 *              nesting, "(&(memberOf=G)(!U))" (nested groups);
 *   memberUid  the group's memberUid values are the users' login names
 *              (no DN, no nesting).
 * Nesting follows the same bounds as pg_dir_is_member: with nested_groups
 * = yes, users reached through at most max_depth nested groups count (a
 * user the decision would count is listed, and no other); a visited set
 * makes cycles harmless; at most PG_DIR_MAX_GROUPS groups are read.
 * A user's login name is the least value of the attribute of user_filter's
 * first (ATTR=%u) assertion ("(uid=%u)" -> uid; "uid" when there is
 * none), the name pg_dir_find_user_entry gives the ledger.
 *
 * Fail closed, never a partial list: more than MAX distinct members
 * (0 = PG_DIR_MAX_MEMBERS), more groups than PG_DIR_MAX_GROUPS, or any
 * directory error fails the whole call (PG_EPROTO for the bounds, else
 * the errors above); PG_ENOTFOUND when GROUP_DN does not exist.
 * Cost: one read per member entry and per group (member kinds), so a
 * review of a large group takes as long as that many lookups and is
 * bounded by the request deadline.
 */
#define PG_DIR_MAX_MEMBERS 100000
#define PG_DIR_MAX_GROUPS 4096

typedef struct pg_dir_member {
	char *key;	/* comparison key: the entry's DN normalised and
			   lower-cased (the login name for memberUid); two
			   members are the same entry exactly when their keys
			   are equal */
	char *dn;	/* the user entry's DN; NULL for memberUid */
	char *name;	/* the login name, NULL when the entry has none */
	char *via;	/* DN of the (nested) group holding it directly */
} pg_dir_member;

typedef struct pg_dir_members {
	pg_dir_member *v;	/* sorted by key, each key once */
	size_t n;
	size_t skipped;	/* member values that named no user or group */
} pg_dir_members;

pg_err pg_dir_group_members(pg_dir *d, const char *group_dn, size_t max,
			    pg_dir_members *out, pg_deadline dl, char *err,
			    size_t errlen);

/* Free every member and zero *m; safe on a zeroed struct. */
void pg_dir_members_free(pg_dir_members *m);

/* The member of M whose key is KEY, or NULL (binary search). */
const pg_dir_member *pg_dir_members_find(const pg_dir_members *m,
					 const char *key);

/* Bind and search the bind account's own entry (for doctor/status). */
pg_err pg_dir_ping(pg_dir *d, pg_deadline dl, char *err, size_t errlen);

#endif
