/*
 * credcache.c - issued credentials kept for reuse; see credcache.h.
 *
 * One mapping of `capacity` fixed-size slots.  A slot's key is
 * "user\0role\0ticket" (NUL-separated C strings, so the encoding is
 * unambiguous); lookups compare a hash first, then length and bytes.
 * Every string lives inside the slot, so wiping a slot wipes everything
 * it held.
 */
#include "credcache.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct slot {
	int used;
	uint64_t hash;
	uint64_t last_used;	/* tick of the last put or hit (LRU) */
	size_t key_len;
	int64_t expiration;
	char key[PG_CREDCACHE_KEY_MAX + 1];
	char access_key_id[PG_CREDCACHE_ID_MAX + 1];
	char secret_access_key[PG_CREDCACHE_SECRET_MAX + 1];
	int has_token;
	char session_token[PG_CREDCACHE_TOKEN_MAX + 1];
} slot;

struct pg_credcache {
	pthread_mutex_t lock;
	slot *slots;
	size_t capacity;
	size_t map_len;
	int locked;		/* mlock succeeded */
	size_t count;
	uint64_t tick;
};

/* Credentials expiring at EXP may still be handed out at NOW. */
static int
fresh(int64_t exp, int64_t now)
{
	return exp > now && (uint64_t)exp - (uint64_t)now > PG_CREDCACHE_MARGIN;
}

/* "user\0role\0ticket" into KEY; 0 or -1 when it does not fit. */
static int
make_key(const char *user, const char *role, const char *ticket,
	 char key[PG_CREDCACHE_KEY_MAX + 1], size_t *len)
{
	size_t lu = strlen(user), lr = strlen(role), lt = strlen(ticket);

	if (lu > PG_CREDCACHE_KEY_MAX || lr > PG_CREDCACHE_KEY_MAX ||
	    lt > PG_CREDCACHE_KEY_MAX ||
	    lu + lr + lt + 2 > PG_CREDCACHE_KEY_MAX)
		return -1;
	memcpy(key, user, lu + 1);
	memcpy(key + lu + 1, role, lr + 1);
	memcpy(key + lu + 1 + lr + 1, ticket, lt + 1);
	*len = lu + lr + lt + 2;
	return 0;
}

/* FNV-1a: only to skip slots quickly; equality is always checked. */
static uint64_t
key_hash(const char *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static void
slot_wipe(pg_credcache *c, slot *s)
{
	if (s->used)
		c->count--;
	OPENSSL_cleanse(s, sizeof(*s));
}

/* The slot holding KEY, or NULL.  Call with the lock held. */
static slot *
find(pg_credcache *c, const char *key, size_t len, uint64_t h)
{
	size_t i;

	for (i = 0; i < c->capacity; i++) {
		slot *s = &c->slots[i];

		if (s->used && s->hash == h && s->key_len == len &&
		    memcmp(s->key, key, len) == 0)
			return s;
	}
	return NULL;
}

/* A slot for a new entry: a free one, else one inside the margin, else
 * the least recently used.  Call with the lock held; the slot is wiped. */
static slot *
free_slot(pg_credcache *c, int64_t now)
{
	slot *lru = NULL;
	size_t i;

	for (i = 0; i < c->capacity; i++)
		if (!c->slots[i].used)
			return &c->slots[i];
	for (i = 0; i < c->capacity; i++) {
		slot *s = &c->slots[i];

		if (!fresh(s->expiration, now)) {
			slot_wipe(c, s);
			return s;
		}
		if (lru == NULL || s->last_used < lru->last_used)
			lru = s;
	}
	slot_wipe(c, lru);
	return lru;
}

pg_credcache *
pg_credcache_new(size_t capacity)
{
	pg_credcache *c;
	void *map;

	if (capacity < 1 || capacity > 65536)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->capacity = capacity;
	c->map_len = capacity * sizeof(slot);
	map = mmap(NULL, c->map_len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		free(c);
		return NULL;
	}
	c->slots = map;
	/* Best effort: never swapped out, never in a core dump. */
	c->locked = mlock(map, c->map_len) == 0;
	(void)madvise(map, c->map_len, MADV_DONTDUMP);
	if (pthread_mutex_init(&c->lock, NULL) != 0) {
		munmap(map, c->map_len);
		free(c);
		return NULL;
	}
	return c;
}

void
pg_credcache_free(pg_credcache *c)
{
	if (c == NULL)
		return;
	OPENSSL_cleanse(c->slots, c->map_len);
	if (c->locked)
		(void)munlock(c->slots, c->map_len);
	munmap(c->slots, c->map_len);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* A heap copy of S into *DST; 0 or -1. */
static int
copy_out(char **dst, const char *s)
{
	size_t n = strlen(s);

	*dst = malloc(n + 1);
	if (*dst == NULL)
		return -1;
	memcpy(*dst, s, n + 1);
	return 0;
}

pg_err
pg_credcache_get(pg_credcache *c, const char *user, const char *role,
		 const char *ticket, int64_t now, int64_t not_after,
		 pg_aws_creds *out)
{
	char key[PG_CREDCACHE_KEY_MAX + 1];
	size_t len;
	uint64_t h;
	slot *s;
	pg_err e = PG_ENOTFOUND;

	if (out == NULL)
		return PG_EINVAL;
	memset(out, 0, sizeof(*out));
	if (c == NULL || user == NULL || role == NULL || ticket == NULL)
		return PG_EINVAL;
	if (make_key(user, role, ticket, key, &len) != 0)
		return PG_ENOTFOUND;	/* such a key is never stored */
	h = key_hash(key, len);

	pthread_mutex_lock(&c->lock);
	s = find(c, key, len, h);
	if (s == NULL)
		goto out;
	if (!fresh(s->expiration, now)) {
		slot_wipe(c, s);
		goto out;
	}
	if (not_after > 0 && s->expiration > not_after)
		goto out;
	if (copy_out(&out->access_key_id, s->access_key_id) != 0 ||
	    copy_out(&out->secret_access_key, s->secret_access_key) != 0 ||
	    (s->has_token &&
	     copy_out(&out->session_token, s->session_token) != 0)) {
		pg_aws_creds_wipe(out);
		e = PG_ENOMEM;
		goto out;
	}
	out->expiration = s->expiration;
	s->last_used = ++c->tick;
	e = PG_OK;
out:
	pthread_mutex_unlock(&c->lock);
	OPENSSL_cleanse(key, sizeof(key));
	return e;
}

pg_err
pg_credcache_put(pg_credcache *c, const char *user, const char *role,
		 const char *ticket, int64_t now, const pg_aws_creds *creds)
{
	char key[PG_CREDCACHE_KEY_MAX + 1];
	size_t len, li, ls, lt = 0;
	uint64_t h;
	slot *s;

	if (c == NULL || user == NULL || role == NULL || ticket == NULL ||
	    creds == NULL || creds->access_key_id == NULL ||
	    creds->secret_access_key == NULL)
		return PG_EINVAL;
	li = strlen(creds->access_key_id);
	ls = strlen(creds->secret_access_key);
	if (creds->session_token != NULL)
		lt = strlen(creds->session_token);
	if (li == 0 || li > PG_CREDCACHE_ID_MAX || ls == 0 ||
	    ls > PG_CREDCACHE_SECRET_MAX || lt > PG_CREDCACHE_TOKEN_MAX ||
	    !fresh(creds->expiration, now) ||
	    make_key(user, role, ticket, key, &len) != 0)
		return PG_EINVAL;
	h = key_hash(key, len);

	pthread_mutex_lock(&c->lock);
	s = find(c, key, len, h);
	if (s != NULL)
		slot_wipe(c, s);
	else
		s = free_slot(c, now);
	s->used = 1;
	s->hash = h;
	s->key_len = len;
	memcpy(s->key, key, len);
	memcpy(s->access_key_id, creds->access_key_id, li + 1);
	memcpy(s->secret_access_key, creds->secret_access_key, ls + 1);
	if (creds->session_token != NULL) {
		memcpy(s->session_token, creds->session_token, lt + 1);
		s->has_token = 1;
	}
	s->expiration = creds->expiration;
	s->last_used = ++c->tick;
	c->count++;
	pthread_mutex_unlock(&c->lock);
	OPENSSL_cleanse(key, sizeof(key));
	return PG_OK;
}

int
pg_credcache_drop(pg_credcache *c, const char *user, const char *role,
		  const char *ticket)
{
	char key[PG_CREDCACHE_KEY_MAX + 1];
	size_t len;
	slot *s;
	int dropped = 0;

	if (c == NULL || user == NULL || role == NULL || ticket == NULL ||
	    make_key(user, role, ticket, key, &len) != 0)
		return 0;
	pthread_mutex_lock(&c->lock);
	s = find(c, key, len, key_hash(key, len));
	if (s != NULL) {
		slot_wipe(c, s);
		dropped = 1;
	}
	pthread_mutex_unlock(&c->lock);
	OPENSSL_cleanse(key, sizeof(key));
	return dropped;
}

size_t
pg_credcache_count(pg_credcache *c)
{
	size_t n;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&c->lock);
	n = c->count;
	pthread_mutex_unlock(&c->lock);
	return n;
}
