/*
 * credcache.h - issued STS credentials kept for reuse, per (user, role,
 * ticket) (DESIGN.md, "Issuing").
 *
 * The daemon asks STS once and hands the same credentials out again to
 * later requests with the same user, role and ticket until
 * PG_CREDCACHE_MARGIN seconds before they expire.  The cache only saves
 * the AssumeRole round trip: the decision (R1-R9), the ledger and the
 * audit trail run for every request exactly as without it, and the
 * caller drops the key's entry on any refusal for that key.
 *
 * Memory: the entries live in one anonymous mapping of fixed-size slots,
 * locked into RAM when the process may (mlock; best effort) and excluded
 * from core dumps (MADV_DONTDUMP).  Nothing is ever written to disk, and
 * nothing outside the daemon's process can read it.  A slot is wiped with
 * OPENSSL_cleanse when its entry is dropped, replaced, evicted or found
 * expired, and the whole mapping when the cache is freed.  Credentials
 * whose strings do not fit a slot are simply not cached.
 *
 * Bounded: at most `capacity` entries.  A put into a full cache first
 * discards entries that are already inside the margin, then the least
 * recently used one.
 *
 * Thread-safe: every call takes the cache's mutex; callers get copies,
 * never pointers into the cache.
 */
#ifndef PMPGATE_CREDCACHE_H
#define PMPGATE_CREDCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "awscreds.h"
#include "err.h"

/* Reuse credentials until this many seconds before their expiration. */
#define PG_CREDCACHE_MARGIN 300

/* Seconds an expiration set by STS's clock may lie beyond the same
 * duration counted on ours, for the NOT_AFTER bound of
 * pg_credcache_get (fresh credentials differ from ours by as much). */
#define PG_CREDCACHE_SKEW 30

/* Entries a daemon keeps (one per live user, role and ticket). */
#define PG_CREDCACHE_DEFAULT 256

/* Largest strings a slot holds (bytes, without the NUL). */
#define PG_CREDCACHE_KEY_MAX 511	/* user, role and ticket together */
#define PG_CREDCACHE_ID_MAX 127		/* access key id */
#define PG_CREDCACHE_SECRET_MAX 255	/* secret access key */
#define PG_CREDCACHE_TOKEN_MAX 4095	/* session token */

typedef struct pg_credcache pg_credcache;

/* A new, empty cache of CAPACITY entries (1..65536); NULL when out of
 * memory or CAPACITY is out of range. */
pg_credcache *pg_credcache_new(size_t capacity);

/* Wipe every entry and free the cache; NULL is fine. */
void pg_credcache_free(pg_credcache *c);

/*
 * The credentials cached for (USER, ROLE, TICKET), copied into *OUT
 * (release with pg_aws_creds_wipe), when they expire more than
 * PG_CREDCACHE_MARGIN seconds after NOW and, when NOT_AFTER > 0, not
 * after NOT_AFTER (the latest expiration the caller may hand out now,
 * e.g. now + the duration R8 allows: cached credentials never outlive
 * what the policy allows at the time of the request).  An entry found
 * inside the margin is wiped and removed.
 * PG_OK (hit), PG_ENOTFOUND (miss; *out zeroed), PG_ENOMEM, PG_EINVAL
 * (NULL argument).
 */
pg_err pg_credcache_get(pg_credcache *c, const char *user, const char *role,
			const char *ticket, int64_t now, int64_t not_after,
			pg_aws_creds *out);

/*
 * Cache a copy of CREDS for (USER, ROLE, TICKET), replacing (and
 * wiping) an older entry for the key.  PG_OK when stored; PG_EINVAL when
 * not stored because an argument is NULL, a string does not fit a slot,
 * or CREDS expire within PG_CREDCACHE_MARGIN of NOW (nothing to reuse).
 * The caller still owns CREDS.
 */
pg_err pg_credcache_put(pg_credcache *c, const char *user, const char *role,
			const char *ticket, int64_t now,
			const pg_aws_creds *creds);

/* Wipe and remove the entry for (USER, ROLE, TICKET), if any.  Returns 1
 * when an entry was removed, 0 otherwise. */
int pg_credcache_drop(pg_credcache *c, const char *user, const char *role,
		      const char *ticket);

/* Entries held now (for status and tests). */
size_t pg_credcache_count(pg_credcache *c);

#endif
