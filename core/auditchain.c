/*
 * auditchain.c - canonical records, hashes, Ed25519 signatures, parsing
 * and the streaming verifier of the audit chain; see auditchain.h.
 *
 * Everything here is pure: no files, no clock, no globals.  JSON is
 * Jansson's, cryptography OpenSSL's (EVP).
 */
#include "auditchain.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define JFLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)
#define SIG_BYTES 64

struct pg_auditkey {
	EVP_PKEY *pkey;
	int priv;
};

/* ---- keys --------------------------------------------------------------- */

/* Never prompt for a passphrase: an encrypted key is refused. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static pg_err
key_wrap(EVP_PKEY *pkey, int priv, pg_auditkey **out, const char *what,
	 char *err, size_t errlen)
{
	pg_auditkey *k;

	if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
		snprintf(err, errlen, "%s is not an Ed25519 key", what);
		EVP_PKEY_free(pkey);
		return PG_ECONFIG;
	}
	k = calloc(1, sizeof(*k));
	if (k == NULL) {
		snprintf(err, errlen, "out of memory");
		EVP_PKEY_free(pkey);
		return PG_ENOMEM;
	}
	k->pkey = pkey;
	k->priv = priv;
	*out = k;
	return PG_OK;
}

static int
contains(const char *buf, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(buf + i, needle, n) == 0)
			return 1;
	return 0;
}

pg_err
pg_auditkey_load_private(const char *pem, size_t len, pg_auditkey **out,
			 char *err, size_t errlen)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	pg_err rc = PG_ECONFIG;

	*out = NULL;
	if (pem == NULL || len == 0 || len > INT_MAX) {
		snprintf(err, errlen, "signing key: empty or too large");
		return PG_ECONFIG;
	}
	if (contains(pem, len, "ENCRYPTED")) {
		snprintf(err, errlen, "signing key: encrypted keys are not "
			 "supported (store it unencrypted, readable by the "
			 "daemon's user only)");
		return PG_ECONFIG;
	}
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	if (pkey == NULL) {
		snprintf(err, errlen, "signing key: not a PEM private key "
			 "(expected \"BEGIN PRIVATE KEY\", PKCS#8)");
		goto out;
	}
	rc = key_wrap(pkey, 1, out, "signing key", err, errlen);
	pkey = NULL;
out:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return rc;
}

pg_err
pg_auditkey_load_public(const char *pem, size_t len, pg_auditkey **out,
			char *err, size_t errlen)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	pg_err rc = PG_ECONFIG;

	*out = NULL;
	if (pem == NULL || len == 0 || len > INT_MAX) {
		snprintf(err, errlen, "public key: empty or too large");
		return PG_ECONFIG;
	}
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	if (pkey == NULL) {
		snprintf(err, errlen, "public key: not a PEM public key "
			 "(expected \"BEGIN PUBLIC KEY\", as openssl pkey "
			 "-pubout writes it)");
		goto out;
	}
	rc = key_wrap(pkey, 0, out, "public key", err, errlen);
	pkey = NULL;
out:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return rc;
}

pg_err
pg_auditkey_generate(pg_auditkey **out, char *err, size_t errlen)
{
	EVP_PKEY *pkey;

	*out = NULL;
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (pkey == NULL) {
		ERR_clear_error();
		snprintf(err, errlen, "cannot generate an Ed25519 key");
		return PG_EINTERNAL;
	}
	return key_wrap(pkey, 1, out, "generated key", err, errlen);
}

pg_err
pg_auditkey_pem(const pg_auditkey *key, int priv, char **pem, size_t *len)
{
	BIO *bio = NULL;
	char *data, *buf = NULL;
	long n;
	pg_err rc = PG_ENOMEM;
	int ok;

	*pem = NULL;
	*len = 0;
	if (priv && !key->priv)
		return PG_EINVAL;
	/* secmem: the BIO's buffer is wiped when it is freed */
	bio = BIO_new(priv ? BIO_s_secmem() : BIO_s_mem());
	if (bio == NULL)
		goto out;
	if (priv)
		ok = PEM_write_bio_PKCS8PrivateKey(bio, key->pkey, NULL, NULL,
						   0, NULL, NULL);
	else
		ok = PEM_write_bio_PUBKEY(bio, key->pkey);
	if (!ok) {
		rc = PG_EINTERNAL;
		goto out;
	}
	n = BIO_get_mem_data(bio, &data);
	if (n <= 0) {
		rc = PG_EINTERNAL;
		goto out;
	}
	buf = malloc((size_t)n + 1);
	if (buf == NULL)
		goto out;
	memcpy(buf, data, (size_t)n);
	buf[n] = '\0';
	*pem = buf;
	*len = (size_t)n;
	rc = PG_OK;
out:
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}

void
pg_auditkey_pem_free(char *pem, size_t len)
{
	if (pem == NULL)
		return;
	OPENSSL_cleanse(pem, len);
	free(pem);
}

int
pg_auditkey_is_private(const pg_auditkey *key)
{
	return key != NULL && key->priv;
}

void
pg_auditkey_free(pg_auditkey *key)
{
	if (key == NULL)
		return;
	EVP_PKEY_free(key->pkey);
	free(key);
}

/* ---- hashing and signing -------------------------------------------------- */

char *
pg_auditchain_canonical(const json_t *rec)
{
	json_t *copy;
	char *s;

	if (!json_is_object(rec))
		return NULL;
	/* shallow: the members are shared, the copy's key set is its own */
	copy = json_copy((json_t *)rec);
	if (copy == NULL)
		return NULL;
	json_object_del(copy, "hash");
	json_object_del(copy, "sig");
	s = json_dumps(copy, JFLAGS);
	json_decref(copy);
	return s;
}

static void
hex32(const unsigned char *d, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[64] = '\0';
}

/*
 * What one thread reuses from record to record: SHA-256 fetched once
 * from the provider and one digest context (fetching on every record
 * costs as much as hashing it), and the key that verified last.  A
 * NULL context, or one whose members are NULL, makes the functions
 * below allocate their own.
 */
struct pctx {
	EVP_MD *sha256;
	EVP_MD_CTX *md;
	size_t hint;			/* try this key first */
	unsigned long long sigs;	/* Ed25519 verifications made */
};

static void
pctx_init(struct pctx *c)
{
	memset(c, 0, sizeof(*c));
	c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	c->md = EVP_MD_CTX_new();
	ERR_clear_error();
}

static void
pctx_done(struct pctx *c)
{
	EVP_MD_free(c->sha256);
	EVP_MD_CTX_free(c->md);
	memset(c, 0, sizeof(*c));
}

/* OUT = hex SHA-256 of PREV "\n" and the N pieces P[i] of LEN[i] bytes. */
static pg_err
hash_pieces(struct pctx *c, const char *prev, const char *const *p,
	    const size_t *len, size_t n, char out[PG_AUDIT_HASH_HEX + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = c != NULL ? c->md : NULL, *own = NULL;
	const EVP_MD *sha = c != NULL && c->sha256 != NULL ? c->sha256 :
			    EVP_sha256();
	int ok;

	out[0] = '\0';
	if (ctx == NULL && (ctx = own = EVP_MD_CTX_new()) == NULL)
		return PG_EINTERNAL;
	ok = EVP_DigestInit_ex(ctx, sha, NULL) == 1 &&
	     EVP_DigestUpdate(ctx, prev, strlen(prev)) == 1 &&
	     EVP_DigestUpdate(ctx, "\n", 1) == 1;
	for (size_t i = 0; ok && i < n; i++)
		ok = EVP_DigestUpdate(ctx, p[i], len[i]) == 1;
	ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
	EVP_MD_CTX_free(own);
	if (!ok) {
		ERR_clear_error();
		return PG_EINTERNAL;
	}
	hex32(md, out);
	return PG_OK;
}

pg_err
pg_auditchain_hash(const char *prev, const char *canon, size_t len,
		   char out[PG_AUDIT_HASH_HEX + 1])
{
	return hash_pieces(NULL, prev, &canon, &len, 1, out);
}

pg_err
pg_auditchain_sign(const pg_auditkey *key, const char *hash,
		   char out[PG_AUDIT_SIG_B64 + 1])
{
	unsigned char sig[SIG_BYTES];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *ctx;
	int ok;

	out[0] = '\0';
	if (key == NULL || !key->priv)
		return PG_EINVAL;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return PG_EINTERNAL;
	ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
	     EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)hash,
			    PG_AUDIT_HASH_HEX) == 1 && siglen == SIG_BYTES;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		ERR_clear_error();
		return PG_EINTERNAL;
	}
	EVP_EncodeBlock((unsigned char *)out, sig, SIG_BYTES);
	return PG_OK;
}

int
pg_auditchain_sig_decode(const char *sig, unsigned char raw[64])
{
	unsigned char buf[SIG_BYTES + 3];
	char again[PG_AUDIT_SIG_B64 + 1];

	if (sig == NULL || strlen(sig) != PG_AUDIT_SIG_B64)
		return 0;
	/* 88 characters decode to 66 bytes, the last two from "==" */
	if (EVP_DecodeBlock(buf, (const unsigned char *)sig,
			    PG_AUDIT_SIG_B64) != SIG_BYTES + 2)
		return 0;
	/* only the one canonical encoding of the 64 bytes */
	EVP_EncodeBlock((unsigned char *)again, buf, SIG_BYTES);
	if (strcmp(again, sig) != 0)
		return 0;
	memcpy(raw, buf, SIG_BYTES);
	return 1;
}

/* 1 if RAW is KEY's Ed25519 signature of the 64 characters of HASH. */
static int
raw_sig_ok(const pg_auditkey *key, const char *hash,
	   const unsigned char raw[SIG_BYTES])
{
	EVP_MD_CTX *ctx;
	int ok;

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return 0;
	ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
	     EVP_DigestVerify(ctx, raw, SIG_BYTES,
			      (const unsigned char *)hash,
			      PG_AUDIT_HASH_HEX) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

int
pg_auditchain_sig_ok(const pg_auditkey *key, const char *hash,
		     const char *sig)
{
	unsigned char raw[SIG_BYTES];

	if (key == NULL || hash == NULL || strlen(hash) != PG_AUDIT_HASH_HEX ||
	    !pg_auditchain_sig_decode(sig, raw))
		return 0;
	return raw_sig_ok(key, hash, raw);
}

/* ---- shapes --------------------------------------------------------------- */

static int
is_hex64(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i == PG_AUDIT_HASH_HEX;
}

/* "YYYY-MM-DDTHH:MM:SSZ" by shape (the writer's clock is not judged). */
static int
is_ts(const char *s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";
	size_t i;

	for (i = 0; pat[i] != '\0'; i++) {
		if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
			return 0;
	}
	return s[i] == '\0';
}

static const char *const writer_events[] = {
	"permit", "grant", "issued", "deny", "error",
};

static int
is_event(const char *e, int allow_recovered)
{
	for (size_t i = 0; i < sizeof(writer_events) / sizeof(*writer_events);
	     i++)
		if (strcmp(e, writer_events[i]) == 0)
			return 1;
	return allow_recovered && strcmp(e, "recovered") == 0;
}

/* Length of the valid UTF-8 sequence at P (LEFT bytes), 0 if invalid. */
static size_t
utf8_len(const unsigned char *p, size_t left)
{
	unsigned c = p[0];
	size_t n, i;
	unsigned long cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A JSON string of untrusted S (NULL -> null); invalid UTF-8 bytes are
 * stored as the text "\xNN".  NULL only when memory runs out. */
static json_t *
jstr(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len, i, o = 0, k;
	char *buf;
	json_t *j;

	if (s == NULL)
		return json_null();
	len = strlen(s);
	for (i = 0; i < len; i += k)
		if ((k = utf8_len(p + i, len - i)) == 0)
			break;
	if (i == len)
		return json_stringn(s, len);
	if (len > SIZE_MAX / 4 - 1)
		return NULL;
	buf = malloc(len * 4 + 1);
	if (buf == NULL)
		return NULL;
	for (i = 0; i < len; i += k) {
		k = utf8_len(p + i, len - i);
		if (k == 0) {
			snprintf(buf + o, 5, "\\x%02x", p[i]);
			o += 4;
			k = 1;
		} else {
			memcpy(buf + o, p + i, k);
			o += k;
		}
	}
	j = json_stringn(buf, o);
	free(buf);
	return j;
}

static json_t *
jstr_array(const char *const *v, size_t n)
{
	json_t *a = json_array();

	if (a == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (v == NULL || v[i] == NULL ||
		    json_array_append_new(a, jstr(v[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *
jint_or_null(long long v, long long min)
{
	return v >= min ? json_integer(v) : json_null();
}

/* ---- building ------------------------------------------------------------- */

static int
set(json_t *o, const char *k, json_t *v)
{
	return v == NULL || json_object_set_new(o, k, v) != 0;
}

pg_err
pg_auditchain_build(const pg_audit_rec *r, const pg_audit_link *link,
		    const pg_auditkey *key, char **line, size_t *len,
		    char hash[PG_AUDIT_HASH_HEX + 1], char *err,
		    size_t errlen)
{
	char sig[PG_AUDIT_SIG_B64 + 1], exp[32];
	json_t *rec = NULL, *client = NULL, *torn = NULL;
	char *canon = NULL, *full = NULL, *out = NULL;
	const char *event;
	size_t n;
	pg_err rc = PG_ENOMEM;
	int bad;

	*line = NULL;
	*len = 0;
	hash[0] = '\0';
	event = link->torn ? "recovered" : r->event;
	if (event == NULL || !is_event(event, link->torn)) {
		snprintf(err, errlen, "audit record: unknown event \"%s\"",
			 event ? event : "(none)");
		return PG_EINVAL;
	}
	if (link->seq < 1 || link->seq > (unsigned long long)LLONG_MAX ||
	    link->prev == NULL || !is_hex64(link->prev) || link->ts == NULL ||
	    !is_ts(link->ts) || link->host == NULL ||
	    (link->torn && (link->torn_offset > (unsigned long long)LLONG_MAX ||
			    link->torn_length > (unsigned long long)LLONG_MAX))) {
		snprintf(err, errlen, "audit record: bad seq, prev, ts, host "
			 "or torn range");
		return PG_EINVAL;
	}
	if (key == NULL || !key->priv) {
		snprintf(err, errlen, "audit record: no private signing key");
		return PG_EINVAL;
	}
	if (r->expiration > 0) {
		time_t t = (time_t)r->expiration;
		struct tm tm;

		if (gmtime_r(&t, &tm) == NULL ||
		    strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 ||
		    !is_ts(exp)) {
			snprintf(err, errlen, "audit record: expiration %lld "
				 "out of range", r->expiration);
			return PG_EINVAL;
		}
	}

	rec = json_object();
	client = json_object();
	if (rec == NULL || client == NULL)
		goto nomem;
	bad = set(client, "service", jstr(r->service)) ||
	      set(client, "tty", jstr(r->tty)) ||
	      set(client, "rhost", jstr(r->rhost)) ||
	      set(client, "pid", jint_or_null(r->pid, 1));
	if (bad)
		goto nomem;
	bad = set(rec, "ts", json_string(link->ts)) ||
	      set(rec, "seq", json_integer((json_int_t)link->seq)) ||
	      set(rec, "host", jstr(link->host)) ||
	      set(rec, "event", json_string(event)) ||
	      set(rec, "user", jstr(r->user)) ||
	      set(rec, "uid", jint_or_null(r->uid, 0)) ||
	      set(rec, "role", jstr(r->role)) ||
	      set(rec, "ticket", jstr(r->ticket)) ||
	      set(rec, "rules", jstr_array(r->rules, r->n_rules)) ||
	      set(rec, "reason", jstr(r->reason)) ||
	      set(rec, "approvers", jstr_array(r->approvers, r->n_approvers)) ||
	      set(rec, "duration", jint_or_null(r->duration, 1)) ||
	      set(rec, "expiration", r->expiration > 0 ? json_string(exp) :
		  json_null()) ||
	      set(rec, "access_key_id", jstr(r->access_key_id)) ||
	      set(rec, "sts_request_id", jstr(r->sts_request_id)) ||
	      json_object_set(rec, "client", client) != 0 ||
	      set(rec, "prev", json_string(link->prev));
	if (bad)
		goto nomem;
	if (link->torn) {
		torn = json_pack("{s:I, s:I}",
				 "offset", (json_int_t)link->torn_offset,
				 "length", (json_int_t)link->torn_length);
		if (torn == NULL || json_object_set(rec, "torn", torn) != 0)
			goto nomem;
	}
	canon = json_dumps(rec, JFLAGS);
	if (canon == NULL)
		goto nomem;
	if (pg_auditchain_hash(link->prev, canon, strlen(canon), hash) !=
	    PG_OK || pg_auditchain_sign(key, hash, sig) != PG_OK) {
		snprintf(err, errlen, "audit record: cannot hash or sign");
		rc = PG_EINTERNAL;
		goto out;
	}
	if (set(rec, "hash", json_string(hash)) ||
	    set(rec, "sig", json_string(sig)))
		goto nomem;
	full = json_dumps(rec, JFLAGS);
	if (full == NULL)
		goto nomem;
	n = strlen(full);
	if (n + 1 > PG_AUDIT_MAX_LINE) {
		snprintf(err, errlen, "audit record: %zu bytes, longer than "
			 "the limit of %d", n + 1, PG_AUDIT_MAX_LINE);
		rc = PG_EINVAL;
		goto out;
	}
	out = malloc(n + 2);
	if (out == NULL)
		goto nomem;
	memcpy(out, full, n);
	out[n] = '\n';
	out[n + 1] = '\0';
	*line = out;
	*len = n + 1;
	out = NULL;
	rc = PG_OK;
	goto out;
nomem:
	snprintf(err, errlen, "audit record: out of memory");
	rc = PG_ENOMEM;
out:
	if (rc != PG_OK)
		hash[0] = '\0';
	free(out);
	free(full);
	free(canon);
	json_decref(torn);
	json_decref(client);
	json_decref(rec);
	return rc;
}

/* ---- parsing -------------------------------------------------------------- */

enum { T_STR, T_STR_NULL, T_INT_NULL, T_TS_NULL, T_STR_ARRAY, T_CLIENT,
       T_OTHER };

static const struct member {
	const char *name;
	int type;
} members[] = {
	{ "ts", T_OTHER }, { "seq", T_OTHER }, { "host", T_STR },
	{ "event", T_OTHER }, { "user", T_STR_NULL }, { "uid", T_INT_NULL },
	{ "role", T_STR_NULL }, { "ticket", T_STR_NULL },
	{ "rules", T_STR_ARRAY }, { "reason", T_STR_NULL },
	{ "approvers", T_STR_ARRAY }, { "duration", T_INT_NULL },
	{ "expiration", T_TS_NULL }, { "access_key_id", T_STR_NULL },
	{ "sts_request_id", T_STR_NULL }, { "client", T_CLIENT },
	{ "prev", T_OTHER }, { "hash", T_OTHER }, { "sig", T_STR },
};
#define N_MEMBERS (sizeof(members) / sizeof(members[0]))

static int
type_ok(const json_t *v, int type)
{
	size_t i;
	json_t *e;

	switch (type) {
	case T_STR:
		return json_is_string(v);
	case T_STR_NULL:
		return json_is_string(v) || json_is_null(v);
	case T_INT_NULL:
		return json_is_integer(v) || json_is_null(v);
	case T_TS_NULL:
		return json_is_null(v) ||
		       (json_is_string(v) && is_ts(json_string_value(v)));
	case T_STR_ARRAY:
		if (!json_is_array(v))
			return 0;
		json_array_foreach(v, i, e)
			if (!json_is_string(e))
				return 0;
		return 1;
	case T_CLIENT:
		return json_is_object(v) && json_object_size(v) == 4 &&
		       type_ok(json_object_get(v, "service"), T_STR_NULL) &&
		       type_ok(json_object_get(v, "tty"), T_STR_NULL) &&
		       type_ok(json_object_get(v, "rhost"), T_STR_NULL) &&
		       type_ok(json_object_get(v, "pid"), T_INT_NULL);
	default:
		return 1;
	}
}

static int
shape_ok(json_t *doc, pg_audit_parsed *p, char *err, size_t errlen)
{
	json_t *seq, *torn, *v;
	size_t i, want = N_MEMBERS;
	json_int_t off, len;

	if (!json_is_object(doc)) {
		snprintf(err, errlen, "not a JSON object");
		return 0;
	}
	for (i = 0; i < N_MEMBERS; i++) {
		v = json_object_get(doc, members[i].name);
		if (v == NULL || !type_ok(v, members[i].type)) {
			snprintf(err, errlen, "member \"%s\" missing or of the "
				 "wrong type", members[i].name);
			return 0;
		}
	}
	seq = json_object_get(doc, "seq");
	p->ts = json_string_value(json_object_get(doc, "ts"));
	p->event = json_string_value(json_object_get(doc, "event"));
	p->prev = json_string_value(json_object_get(doc, "prev"));
	p->hash = json_string_value(json_object_get(doc, "hash"));
	p->sig = json_string_value(json_object_get(doc, "sig"));
	if (!json_is_integer(seq) || json_integer_value(seq) < 1 ||
	    p->ts == NULL || !is_ts(p->ts) || p->event == NULL ||
	    !is_event(p->event, 1) || p->prev == NULL || !is_hex64(p->prev) ||
	    p->hash == NULL || !is_hex64(p->hash)) {
		snprintf(err, errlen, "seq, ts, event, prev or hash malformed");
		return 0;
	}
	p->seq = (unsigned long long)json_integer_value(seq);
	torn = json_object_get(doc, "torn");
	p->torn = strcmp(p->event, "recovered") == 0;
	if (p->torn) {
		if (json_unpack(torn, "{s:I, s:I !}", "offset", &off,
				"length", &len) != 0 || off < 0 || len < 0) {
			snprintf(err, errlen, "recovered record without a valid "
				 "\"torn\" member");
			return 0;
		}
		p->torn_offset = (unsigned long long)off;
		p->torn_length = (unsigned long long)len;
		want++;
	} else if (torn != NULL) {
		snprintf(err, errlen, "\"torn\" in a record that is not "
			 "\"recovered\"");
		return 0;
	}
	if (json_object_size(doc) != want) {
		snprintf(err, errlen, "unexpected members");
		return 0;
	}
	return 1;
}

/* ---- the line against its hash ----

The hash is over the canonical form, and the line must be exactly the
serialisation of its own content.  The plain way is two serialisations
(the whole record, compared with the line; the record without hash and
sig, hashed): slow_hash() below.  fast_hash() gets both from one, with
the same result, when the record's members are in sorted order at every
level and its sig is 88 characters of the base64 alphabet (what the
writer always produces; anything else takes the plain way):

 1. Jansson keeps an object's members in the order they were read and
    serialises them in that order without JSON_SORT_KEYS.  json_loadb()
    reads them in the order of the line (duplicates are refused), so
    when that order is sorted, serialising without JSON_SORT_KEYS gives
    the same bytes as with it.  When it is not sorted the line is not
    the sorted serialisation: hash_ok = 0 without serialising.
 2. That serialisation is compared with the line as Jansson produces
    it (a callback, no buffer).
 3. The line now is Jansson's compact, sorted serialisation of an object
    with exactly the members of a record: "{" then the members as
    "key":value joined by ",", then "}".  Inside a serialised string
    every '"' is escaped as \", so the bytes "hash":" can only be the
    key "hash" followed by a string value, and only the top-level object
    has such a key (client and torn have fixed other members); the same
    for "sig":".  Neither member is the last ("user" is), so removing
    the text "hash":"H", and "sig":"S", (H 64 hex digits and S the 88
    base64 characters, both written as they are) leaves exactly the
    serialisation of the record without them: the canonical form.  It
    is hashed in three pieces, without a copy.
*/

/* Compares what Jansson writes with the line. */
struct cmp {
	const char *p;
	size_t left;
	int differs;
};

static int
cmp_cb(const char *buf, size_t size, void *data)
{
	struct cmp *c = data;

	if (size > c->left || memcmp(c->p, buf, size) != 0) {
		c->differs = 1;
		return -1;
	}
	c->p += size;
	c->left -= size;
	return 0;
}

/* 1 if the members of O, and of the objects in it, are in sorted order. */
static int
keys_sorted(json_t *o)
{
	const char *key, *last = NULL;
	json_t *val;

	json_object_foreach(o, key, val) {
		if (last != NULL && strcmp(last, key) >= 0)
			return 0;
		if (json_is_object(val) && !keys_sorted(val))
			return 0;
		last = key;
	}
	return 1;
}

static int
is_b64_text(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '+' ||
		      s[i] == '/' || s[i] == '='))
			return 0;
	return i == PG_AUDIT_SIG_B64;
}

/* The plain way: two serialisations.  PG_OK (p->hash_ok set) or
 * PG_ENOMEM. */
static pg_err
slow_hash(struct pctx *c, json_t *doc, const char *line, size_t len,
	  pg_audit_parsed *p)
{
	char calc[PG_AUDIT_HASH_HEX + 1];
	char *full, *canon;
	size_t clen;
	pg_err rc = PG_ENOMEM;

	full = json_dumps(doc, JFLAGS);
	canon = pg_auditchain_canonical(doc);
	if (full != NULL && canon != NULL) {
		clen = strlen(canon);
		p->hash_ok = strlen(full) == len &&
			     memcmp(full, line, len) == 0 &&
			     hash_pieces(c, p->prev, (const char **)&canon,
					 &clen, 1, calc) == PG_OK &&
			     strcmp(calc, p->hash) == 0;
		rc = PG_OK;
	}
	free(full);
	free(canon);
	return rc;
}

#define HASH_MEMBER "\"hash\":\""
#define SIG_MEMBER "\"sig\":\""

/* One serialisation (see above).  PG_OK (p->hash_ok set) or PG_ENOMEM. */
static pg_err
fast_hash(struct pctx *c, json_t *doc, const char *line, size_t len,
	  pg_audit_parsed *p)
{
	const size_t hlen = sizeof(HASH_MEMBER) - 1 + PG_AUDIT_HASH_HEX + 2;
	const size_t slen = sizeof(SIG_MEMBER) - 1 + PG_AUDIT_SIG_B64 + 2;
	char calc[PG_AUDIT_HASH_HEX + 1];
	struct cmp k = { line, len, 0 };
	const char *a, *b, *piece[3];
	size_t plen[3];

	p->hash_ok = 0;
	if (!keys_sorted(doc))
		return PG_OK;		/* not in canonical order */
	if (!is_b64_text(p->sig))
		return slow_hash(c, doc, line, len, p);
	if (json_dump_callback(doc, cmp_cb, &k, JSON_COMPACT |
			       JSON_ENSURE_ASCII) != 0 || k.left != 0)
		return k.differs || k.left != 0 ? PG_OK : PG_ENOMEM;
	a = memmem(line, len, HASH_MEMBER, sizeof(HASH_MEMBER) - 1);
	b = memmem(line, len, SIG_MEMBER, sizeof(SIG_MEMBER) - 1);
	/* as argued above, always so; otherwise the plain way decides */
	if (a == NULL || b == NULL || b < a + hlen ||
	    (size_t)(b - line) + slen >= len ||
	    memcmp(a + hlen - PG_AUDIT_HASH_HEX - 2, p->hash,
		   PG_AUDIT_HASH_HEX) != 0 || memcmp(a + hlen - 2, "\",", 2) ||
	    memcmp(b + slen - PG_AUDIT_SIG_B64 - 2, p->sig,
		   PG_AUDIT_SIG_B64) != 0 || memcmp(b + slen - 2, "\",", 2))
		return slow_hash(c, doc, line, len, p);
	piece[0] = line;
	plen[0] = (size_t)(a - line);
	piece[1] = a + hlen;
	plen[1] = (size_t)(b - piece[1]);
	piece[2] = b + slen;
	plen[2] = len - (size_t)(piece[2] - line);
	p->hash_ok = hash_pieces(c, p->prev, piece, plen, 3, calc) == PG_OK &&
		     strcmp(calc, p->hash) == 0;
	return PG_OK;
}

static pg_err
parse_record(struct pctx *c, const char *line, size_t len,
	     pg_audit_parsed *out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *doc;
	pg_err rc = PG_EPROTO;

	memset(out, 0, sizeof(*out));
	if (len >= PG_AUDIT_MAX_LINE) {
		snprintf(err, errlen, "line longer than %d bytes",
			 PG_AUDIT_MAX_LINE - 1);
		return PG_EPROTO;
	}
	doc = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL) {
		snprintf(err, errlen, "not JSON: %s", jerr.text);
		return PG_EPROTO;
	}
	out->doc = doc;
	if (!shape_ok(doc, out, err, errlen))
		goto out;
	rc = fast_hash(c, doc, line, len, out);
	if (rc != PG_OK)
		snprintf(err, errlen, "out of memory");
out:
	if (rc != PG_OK)
		pg_audit_parsed_free(out);
	return rc;
}

pg_err
pg_auditchain_parse(const char *line, size_t len, pg_audit_parsed *out,
		    char *err, size_t errlen)
{
	return parse_record(NULL, line, len, out, err, errlen);
}

void
pg_audit_parsed_free(pg_audit_parsed *p)
{
	json_decref(p->doc);
	memset(p, 0, sizeof(*p));
}

/* ---- syslog copies -------------------------------------------------------- */

static void
safe_word(const char *s, char *out, size_t outlen)
{
	size_t i;

	if (outlen == 0)
		return;
	if (s == NULL || *s == '\0')
		s = "-";
	for (i = 0; s[i] != '\0' && i + 1 < outlen; i++) {
		char c = s[i];

		out[i] = ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || strchr("._@+=,-", c)) ?
			 c : '?';
	}
	out[i] = '\0';
}

void
pg_auditchain_syslog_text(unsigned long long seq, const char *hash,
			  const char *event, const char *user, char *buf,
			  size_t buflen)
{
	char e[32], u[256];

	safe_word(event, e, sizeof(e));
	safe_word(user, u, sizeof(u));
	snprintf(buf, buflen, "pmpgate-audit seq=%llu hash=%s event=%s user=%s",
		 seq, hash, e, u);
}

int
pg_auditchain_syslog_parse(const char *line, unsigned long long *seq,
			   char hash[PG_AUDIT_HASH_HEX + 1])
{
	static const char tag[] = "pmpgate-audit seq=";
	const char *p = strstr(line, tag), *h;
	unsigned long long v = 0;
	int digits = 0;

	if (p == NULL)
		return 0;
	for (p += sizeof(tag) - 1; *p >= '0' && *p <= '9'; p++, digits++) {
		if (v > (ULLONG_MAX - 9) / 10)
			return 0;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (digits == 0 || v == 0 || strncmp(p, " hash=", 6) != 0)
		return 0;
	h = p + 6;
	for (int i = 0; i < PG_AUDIT_HASH_HEX; i++)
		if (!((h[i] >= '0' && h[i] <= '9') ||
		      (h[i] >= 'a' && h[i] <= 'f')))
			return 0;
	if (h[PG_AUDIT_HASH_HEX] != '\0' && h[PG_AUDIT_HASH_HEX] != ' ' &&
	    h[PG_AUDIT_HASH_HEX] != '\n' && h[PG_AUDIT_HASH_HEX] != '\r')
		return 0;
	memcpy(hash, h, PG_AUDIT_HASH_HEX);
	hash[PG_AUDIT_HASH_HEX] = '\0';
	*seq = v;
	return 1;
}

/* ---- verifying ------------------------------------------------------------ */

const char *
pg_av_class_name(pg_av_class c)
{
	switch (c) {
	case PG_AV_OK:		return "ok";
	case PG_AV_EDITED:	return "edited";
	case PG_AV_DELETED:	return "deleted";
	case PG_AV_INSERTED:	return "inserted";
	case PG_AV_REORDERED:	return "reordered";
	case PG_AV_TORN:	return "torn";
	case PG_AV_TRUNCATED:	return "truncated";
	case PG_AV_BADSIG:	return "bad-signature";
	}
	return "?";
}

/*
 * The verifier.
 *
 * Lines are gathered in batches.  A full batch is handed to a pool of
 * threads that check each line on its own (parse, shape, canonical form,
 * hash, the form of sig and, with PG_AV_SIGS_EVERY, the signature); the
 * caller's thread reads the next batch meanwhile and then helps.  A
 * checked batch is judged in order by the caller's thread (chain links,
 * seq, witnesses, torn stretches, classification), which needs only the
 * few members copied out of each record: the JSON documents are freed by
 * the threads that parsed them.
 *
 * With PG_AV_SIGS_CHAIN_END the judgement takes a well-formed sig as
 * valid and verifies Ed25519 only at checkpoints: the first record of the
 * input, of each file and after each torn stretch (where one writer's run
 * starts); the last accepted record before a stretch of non-record lines,
 * before the first failure, before a line of the next file and at the end
 * of each batch (so at the end of the input); the failing record itself
 * where the every mode checks its signature before naming the failure;
 * and, with several keys, the records on both sides of each change of
 * key, found by bisection between checkpoints signed by different keys.
 * A record's hash covers prev, the previous record's hash, so a valid
 * signature on a record proves the content of every record before it.
 * The unverified records of a batch all lie between two checkpoints of
 * the same batch (or the last one of the batch before).  When any
 * signature checked fails, the batch is judged again from its start with
 * every signature verified: the verdict is then the one of
 * PG_AV_SIGS_EVERY, given the same state at the start of the batch.
 */

/* One input line and what was found out about it. */
struct item {
	size_t at, len;			/* bytes: batch buf + at */
	int nl;				/* ended by "\n" */
	int stored;			/* 0: not kept (no newline, or too long
					   to be a record) */
	size_t file;
	unsigned long long lineno, off;
	pg_err rc;			/* PG_OK: a record; PG_EPROTO: not one */
	int hash_ok, torn, sig_form;	/* sig_form: 88 canonical base64 */
	int sig_ok;			/* 1 verified, 0 no key signed it,
					   -1 not checked */
	size_t key;			/* the key that signed it (sig_ok 1) */
	unsigned long long seq, torn_offset, torn_length;
	char prev[PG_AUDIT_HASH_HEX + 1], hash[PG_AUDIT_HASH_HEX + 1];
	unsigned char sig[SIG_BYTES];
};

#define BATCH_DEFAULT 4096
#define BATCH_MIN 1
#define BATCH_MAX 65536
#define BATCH_BYTES (4u << 20)	/* a batch is full at this many bytes too */
#define CHUNK 16		/* lines a thread takes at a time */
#define MAX_THREADS 64

struct batch {
	struct item *items;
	size_t n;
	char *buf;
	size_t used, cap;
};

struct witness {
	unsigned long long seq;
	char hash[PG_AUDIT_HASH_HEX + 1];
};

/* Where the first failure stands: ST_NEXT waits for the next line to
 * classify it, ST_SEQ looks for missing seqs further on. */
enum stage { ST_NONE, ST_NEXT, ST_SEQ, ST_DONE };
enum fkind { F_HASH, F_SIG, F_PREV };

/* The judgement, in input order: a value, so that a batch can be judged
 * again from its start. */
struct judge {
	size_t cur;			/* the judged line's file ... */
	unsigned long long line;	/* ... and line number */

	int have_state;
	unsigned long long exp_seq;
	char exp_prev[PG_AUDIT_HASH_HEX + 1];

	unsigned long long records, first_seq, recovered;
	char last_hash[PG_AUDIT_HASH_HEX + 1];
	int genesis;

	/* a stretch of lines that are not records */
	int region;
	size_t r_file;
	unsigned long long r_line, r_off, r_bytes;
	int r_last_nl;

	/* the first failure */
	enum stage stage;
	enum fkind fkind;
	pg_av_class cls;
	size_t f_file;
	unsigned long long f_line, f_seq;
	char f_hash[PG_AUDIT_HASH_HEX + 1];
	char detail[256];
	int b_have_state;
	unsigned long long b_exp_seq;
	char b_exp_prev[PG_AUDIT_HASH_HEX + 1];
	unsigned long long miss_lo, miss_hi;

	/* signatures: the accepted records of this batch are acc[0..n_acc);
	 * the last verified one is acc[ck_pos] (-1: in an earlier batch),
	 * signed by key ck_key (-1: none verified yet) */
	size_t n_acc;
	long ck_pos;
	long ck_key;
	int unverified;			/* acc[n_acc - 1] is not verified */
	int seg_start;			/* the next record starts a file or
					   follows a torn stretch */
	int redo;			/* a signature failed: judge the batch
					   again, every signature checked */
};

enum job_kind { JOB_CHECK, JOB_SIGS };

struct worker {
	pg_auditverify *v;
	struct pctx ctx;
	pthread_t tid;
	unsigned long seen;		/* the last job generation taken */
};

struct pg_auditverify {
	const pg_auditkey *const *keys;
	size_t n_keys;
	pg_av_sigmode sigmode;
	size_t batch_max;

	struct witness *w;
	size_t nw, capw;
	int w_sorted;

	char **files;
	size_t nfiles;
	unsigned long long in_line, in_off;	/* input position */

	/* two batches: one filled by the caller, one checked by the pool */
	struct batch bt[2];
	int fill;			/* the batch being filled */
	int inflight;			/* the other one is checked, not judged */
	int failed_enomem;

	struct judge j;
	struct item **acc;		/* batch_max entries */
	unsigned long long sigs;	/* Ed25519 verifications */

	/* the pool: threads - 1 workers and the caller's thread */
	unsigned threads;
	int pool_started;
	struct worker *workers;
	unsigned n_workers;
	struct pctx ctx;		/* the caller's thread's */
	pthread_mutex_t mu;
	pthread_cond_t cv_go, cv_done;
	unsigned long gen;
	int quit;
	struct batch *job;		/* NULL: no job */
	enum job_kind job_kind;
	atomic_size_t job_next;		/* next line to take */
	size_t job_done;		/* lines finished (mu) */
	unsigned job_inside;		/* workers in the job (mu) */
};

static void *worker_main(void *arg);

pg_err
pg_auditverify_new(const pg_auditkey *const *keys, size_t n_keys,
		   pg_auditverify **out)
{
	pg_auditverify *v = calloc(1, sizeof(*v));

	*out = NULL;
	if (v == NULL)
		return PG_ENOMEM;
	v->keys = keys;
	v->n_keys = n_keys;
	v->threads = 1;
	v->batch_max = BATCH_DEFAULT;
	v->sigmode = PG_AV_SIGS_EVERY;
	v->j.ck_pos = -1;
	v->j.ck_key = -1;
	v->j.seg_start = 1;
	atomic_init(&v->job_next, 0);
	if (pthread_mutex_init(&v->mu, NULL) != 0) {
		free(v);
		return PG_ENOMEM;
	}
	if (pthread_cond_init(&v->cv_go, NULL) != 0) {
		pthread_mutex_destroy(&v->mu);
		free(v);
		return PG_ENOMEM;
	}
	if (pthread_cond_init(&v->cv_done, NULL) != 0) {
		pthread_cond_destroy(&v->cv_go);
		pthread_mutex_destroy(&v->mu);
		free(v);
		return PG_ENOMEM;
	}
	pctx_init(&v->ctx);
	*out = v;
	return PG_OK;
}

void
pg_auditverify_threads(pg_auditverify *v, unsigned n)
{
	if (v->pool_started)
		return;
	v->threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

void
pg_auditverify_sigmode(pg_auditverify *v, pg_av_sigmode mode)
{
	if (v->bt[0].items == NULL)
		v->sigmode = mode == PG_AV_SIGS_CHAIN_END ?
			     PG_AV_SIGS_CHAIN_END : PG_AV_SIGS_EVERY;
}

void
pg_auditverify_batch(pg_auditverify *v, size_t n)
{
	if (v->bt[0].items != NULL)
		return;
	v->batch_max = n < BATCH_MIN ? BATCH_MIN : n > BATCH_MAX ? BATCH_MAX :
		       n;
}

/* ---- the pool ---- */

/* The checks of one line that need no other line. */
static int item_key(pg_auditverify *v, struct pctx *c, struct item *it);

static void
check_item(pg_auditverify *v, struct pctx *c, struct batch *b,
	   struct item *it)
{
	pg_audit_parsed p;
	char err[128];

	it->rc = PG_EPROTO;
	it->sig_ok = -1;
	if (!it->stored || it->len == 0)	/* an empty line is no record */
		return;
	it->rc = parse_record(c, b->buf + it->at, it->len, &p, err,
			      sizeof(err));
	if (it->rc != PG_OK)
		return;
	it->hash_ok = p.hash_ok;
	it->torn = p.torn;
	it->seq = p.seq;
	it->torn_offset = p.torn_offset;
	it->torn_length = p.torn_length;
	memcpy(it->prev, p.prev, sizeof(it->prev));
	memcpy(it->hash, p.hash, sizeof(it->hash));
	it->sig_form = pg_auditchain_sig_decode(p.sig, it->sig);
	pg_audit_parsed_free(&p);
	if (v->sigmode == PG_AV_SIGS_EVERY && it->hash_ok)
		item_key(v, c, it);
}

/* Take lines of the current job until none is left. */
static void
run_share(pg_auditverify *v, struct pctx *c)
{
	struct batch *b = v->job;
	size_t i, e, n = b->n;

	for (;;) {
		i = atomic_fetch_add(&v->job_next, CHUNK);
		if (i >= n)
			break;
		e = i + CHUNK < n ? i + CHUNK : n;
		for (size_t k = i; k < e; k++) {
			struct item *it = &b->items[k];

			if (v->job_kind == JOB_CHECK)
				check_item(v, c, b, it);
			else if (it->rc == PG_OK && it->hash_ok)
				item_key(v, c, it);
		}
		pthread_mutex_lock(&v->mu);
		v->job_done += e - i;
		if (v->job_done == n)
			pthread_cond_broadcast(&v->cv_done);
		pthread_mutex_unlock(&v->mu);
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	pg_auditverify *v = w->v;

	pthread_mutex_lock(&v->mu);
	for (;;) {
		while (!v->quit && w->seen == v->gen)
			pthread_cond_wait(&v->cv_go, &v->mu);
		if (v->quit)
			break;
		w->seen = v->gen;
		if (v->job == NULL)
			continue;
		v->job_inside++;
		pthread_mutex_unlock(&v->mu);
		run_share(v, &w->ctx);
		pthread_mutex_lock(&v->mu);
		if (--v->job_inside == 0)
			pthread_cond_broadcast(&v->cv_done);
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

/* Start threads - 1 workers (fewer if the system refuses: the caller's
 * thread does the rest). */
static void
pool_start(pg_auditverify *v)
{
	unsigned want = v->threads - 1;

	v->pool_started = 1;
	if (want == 0)
		return;
	v->workers = calloc(want, sizeof(*v->workers));
	if (v->workers == NULL)
		return;
	for (unsigned i = 0; i < want; i++) {
		struct worker *w = &v->workers[v->n_workers];

		w->v = v;
		pctx_init(&w->ctx);
		if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
			pctx_done(&w->ctx);
			break;
		}
		v->n_workers++;
	}
}

static void
post_job(pg_auditverify *v, struct batch *b, enum job_kind kind)
{
	if (!v->pool_started)
		pool_start(v);
	pthread_mutex_lock(&v->mu);
	v->job = b;
	v->job_kind = kind;
	atomic_store(&v->job_next, 0);
	v->job_done = 0;
	v->gen++;
	pthread_cond_broadcast(&v->cv_go);
	pthread_mutex_unlock(&v->mu);
}

/* Help with the current job, then wait until every line of it is done
 * and no worker is still inside it.  Nothing to do without a job. */
static void
wait_job(pg_auditverify *v)
{
	if (v->job == NULL)
		return;
	run_share(v, &v->ctx);
	pthread_mutex_lock(&v->mu);
	while (v->job_done < v->job->n || v->job_inside > 0)
		pthread_cond_wait(&v->cv_done, &v->mu);
	v->job = NULL;
	pthread_mutex_unlock(&v->mu);
}

/* ---- free ---- */

static void
batch_reset(struct batch *b)
{
	b->n = 0;
	b->used = 0;
}

void
pg_auditverify_free(pg_auditverify *v)
{
	if (v == NULL)
		return;
	if (v->pool_started) {
		wait_job(v);
		pthread_mutex_lock(&v->mu);
		v->quit = 1;
		pthread_cond_broadcast(&v->cv_go);
		pthread_mutex_unlock(&v->mu);
		for (unsigned i = 0; i < v->n_workers; i++) {
			pthread_join(v->workers[i].tid, NULL);
			pctx_done(&v->workers[i].ctx);
		}
	}
	free(v->workers);
	pthread_cond_destroy(&v->cv_done);
	pthread_cond_destroy(&v->cv_go);
	pthread_mutex_destroy(&v->mu);
	pctx_done(&v->ctx);
	for (int i = 0; i < 2; i++) {
		free(v->bt[i].items);
		free(v->bt[i].buf);
	}
	free(v->acc);
	for (size_t i = 0; i < v->nfiles; i++)
		free(v->files[i]);
	free(v->files);
	free(v->w);
	free(v);
}

/* ---- witnesses ---- */

pg_err
pg_auditverify_witness(pg_auditverify *v, unsigned long long seq,
		       const char *hash)
{
	if (hash == NULL || !is_hex64(hash))
		return PG_EINVAL;
	if (v->nw == v->capw) {
		size_t cap = v->capw ? v->capw * 2 : 256;
		struct witness *n = realloc(v->w, cap * sizeof(*n));

		if (n == NULL)
			return PG_ENOMEM;
		v->w = n;
		v->capw = cap;
	}
	v->w[v->nw].seq = seq;
	memcpy(v->w[v->nw].hash, hash, PG_AUDIT_HASH_HEX + 1);
	v->nw++;
	v->w_sorted = 0;
	return PG_OK;
}

static int
witness_cmp(const void *a, const void *b)
{
	const struct witness *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return strcmp(x->hash, y->hash);
}

/* -1: no witness for SEQ; 1: every witness of SEQ names HASH; 0: some
 * witness of SEQ names another record (the one the log lost). */
static int
witness_check(pg_auditverify *v, unsigned long long seq, const char *hash)
{
	size_t lo = 0, hi = v->nw;
	int found = -1;

	if (!v->w_sorted) {
		qsort(v->w, v->nw, sizeof(*v->w), witness_cmp);
		v->w_sorted = 1;
	}
	while (lo < hi) {		/* first entry with .seq >= seq */
		size_t mid = lo + (hi - lo) / 2;

		if (v->w[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < v->nw && v->w[lo].seq == seq; lo++) {
		if (strcmp(v->w[lo].hash, hash) != 0)
			return 0;
		found = 1;
	}
	return found;
}

pg_err
pg_auditverify_file(pg_auditverify *v, const char *name)
{
	char **n, *copy;

	copy = strdup(name ? name : "-");
	if (copy == NULL)
		return PG_ENOMEM;
	n = realloc(v->files, (v->nfiles + 1) * sizeof(*n));
	if (n == NULL) {
		free(copy);
		return PG_ENOMEM;
	}
	v->files = n;
	v->files[v->nfiles++] = copy;
	v->in_line = 0;
	v->in_off = 0;
	return PG_OK;
}

int
pg_auditverify_decided(const pg_auditverify *v)
{
	return v->j.stage == ST_DONE;
}

/* ---- signatures at checkpoints ---- */

/* The key that signed IT (its hash and sig), or -1: tried once, the key
 * that verified last first. */
static int
item_key(pg_auditverify *v, struct pctx *c, struct item *it)
{
	size_t n = v->n_keys;

	if (it->sig_ok >= 0)
		return it->sig_ok ? (int)it->key : -1;
	it->sig_ok = 0;
	if (!it->sig_form)
		return -1;
	for (size_t t = 0; t < n; t++) {
		size_t k = (c->hint + t) % n;

		c->sigs++;
		if (raw_sig_ok(v->keys[k], it->hash, it->sig)) {
			it->sig_ok = 1;
			it->key = k;
			c->hint = k;
			return (int)k;
		}
	}
	return -1;
}

/* Judging: a signature the fast judgement relies on failed. */
static void
redo(pg_auditverify *v)
{
	v->j.redo = 1;
}

/* acc[lo] (key kl) and acc[hi] (key kh) are verified; when the keys
 * differ, find where between them the key changes: the last record of
 * kl's run and the first of the next are verified.  0 when a signature
 * fails on the way. */
static int
find_change(pg_auditverify *v, long lo, long kl, long hi, long kh)
{
	long mid, km;

	if (kl == kh || hi - lo < 2)
		return 1;
	mid = lo + (hi - lo) / 2;
	km = item_key(v, &v->ctx, v->acc[mid]);
	if (km < 0)
		return 0;
	return find_change(v, lo, kl, mid, km) &&
	       find_change(v, mid, km, hi, kh);
}

/* Verify the last accepted record (a checkpoint) if it is not yet, and
 * with several keys the record where the key changed.  0 (and a redo)
 * when a signature fails. */
static int
checkpoint(pg_auditverify *v)
{
	struct judge *j = &v->j;
	long p, k;

	if (!j->unverified)
		return 1;
	p = (long)j->n_acc - 1;
	k = item_key(v, &v->ctx, v->acc[p]);
	if (k < 0)
		goto bad;
	/* the previous checkpoint (a segment's first record at the
	 * latest) was signed by ck_key */
	if (v->n_keys > 1 && j->ck_key >= 0 &&
	    !find_change(v, j->ck_pos, j->ck_key, p, k))
		goto bad;
	j->ck_key = k;
	j->ck_pos = p;
	j->unverified = 0;
	return 1;
bad:
	redo(v);
	return 0;
}

/* The signature of record IT, before a failure is named at it (the
 * every mode checks it before the order).  0 (and a redo) if bad. */
static int
sig_holds(pg_auditverify *v, struct item *it)
{
	if (item_key(v, &v->ctx, it) >= 0)
		return 1;
	redo(v);
	return 0;
}

/* ---- judging ---- */

static void
fail_at(pg_auditverify *v, enum stage st, pg_av_class cls, size_t file,
	unsigned long long line, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* Name the first failure, once the record before it is known signed. */
static void
fail_at(pg_auditverify *v, enum stage st, pg_av_class cls, size_t file,
	unsigned long long line, const char *fmt, ...)
{
	struct judge *j = &v->j;
	va_list ap;

	if (!checkpoint(v))
		return;
	j->stage = st;
	j->cls = cls;
	j->f_file = file;
	j->f_line = line;
	va_start(ap, fmt);
	vsnprintf(j->detail, sizeof(j->detail), fmt, ap);
	va_end(ap);
}

/* The first failure waited for the next record R (NULL: there is none,
 * or the next line is not a record). */
static void
classify_with_next(pg_auditverify *v, const struct item *r)
{
	struct judge *j = &v->j;
	int links = r != NULL && j->b_have_state && r->seq == j->b_exp_seq &&
		    strcmp(r->prev, j->b_exp_prev) == 0;

	switch (j->fkind) {
	case F_HASH:
		j->cls = links ? PG_AV_INSERTED : PG_AV_EDITED;
		break;
	case F_SIG:
		if (links)
			j->cls = PG_AV_INSERTED;
		else if (r != NULL && strcmp(r->prev, j->f_hash) != 0)
			j->cls = PG_AV_EDITED;
		else
			j->cls = PG_AV_BADSIG;
		break;
	case F_PREV:
		j->cls = links ? PG_AV_INSERTED : PG_AV_DELETED;
		break;
	}
	if (j->cls == PG_AV_INSERTED)
		snprintf(j->detail, sizeof(j->detail), "a line that is not "
			 "part of the chain: the record after it continues "
			 "from the record before it");
	j->stage = ST_DONE;
}

static void
wait_next(pg_auditverify *v, enum fkind k, const struct item *r,
	  pg_av_class provisional, const char *detail)
{
	struct judge *j = &v->j;

	fail_at(v, ST_NEXT, provisional, j->cur, j->line, "%s", detail);
	if (j->redo)
		return;
	j->fkind = k;
	j->f_seq = r->seq;
	memcpy(j->f_hash, r->hash, sizeof(j->f_hash));
	j->b_have_state = j->have_state;
	j->b_exp_seq = j->exp_seq;
	memcpy(j->b_exp_prev, j->exp_prev, sizeof(j->b_exp_prev));
}

/* The stretch of non-record lines ends at record R (NULL at the end). */
static int
region_closed_by(pg_auditverify *v, const struct item *r)
{
	struct judge *j = &v->j;
	unsigned long long tlen = j->r_bytes - (j->r_last_nl ? 1 : 0);
	int same_file = j->r_file == j->cur;

	if (r != NULL && r->torn && r->torn_offset == j->r_off &&
	    r->torn_length == tlen && (same_file || j->line == 1)) {
		j->region = 0;
		j->recovered++;
		j->seg_start = 1;
		return 1;
	}
	if (r == NULL || !same_file)
		fail_at(v, ST_DONE, PG_AV_TORN, j->r_file, j->r_line,
			"%llu damaged bytes at offset %llu end the file and no "
			"recovered record names them", tlen, j->r_off);
	else if (r->torn)
		fail_at(v, ST_DONE, PG_AV_TORN, j->r_file, j->r_line,
			"%llu damaged bytes at offset %llu, but the recovered "
			"record after them names %llu bytes at offset %llu",
			tlen, j->r_off, r->torn_length, r->torn_offset);
	else if (j->have_state && r->seq == j->exp_seq &&
		 strcmp(r->prev, j->exp_prev) == 0)
		fail_at(v, ST_DONE, PG_AV_INSERTED, j->r_file, j->r_line,
			"%llu bytes that are not a record, between two records "
			"that link", tlen);
	else
		fail_at(v, ST_DONE, PG_AV_EDITED, j->r_file, j->r_line,
			"%llu bytes that are not a record (damaged) and no "
			"recovered record names them", tlen);
	if (!j->redo)
		j->region = 0;
	return 0;
}

static void
accept(pg_auditverify *v, struct item *r)
{
	struct judge *j = &v->j;

	if (j->records == 0) {
		j->first_seq = r->seq;
		j->genesis = strcmp(r->prev, PG_AUDIT_GENESIS) == 0;
	}
	j->records++;
	j->have_state = 1;
	j->exp_seq = r->seq + 1;
	memcpy(j->exp_prev, r->hash, sizeof(j->exp_prev));
	memcpy(j->last_hash, r->hash, sizeof(j->last_hash));
	v->acc[j->n_acc++] = r;
	j->seg_start = 0;
	if (r->sig_ok == 1) {
		j->ck_key = (long)r->key;
		j->ck_pos = (long)j->n_acc - 1;
		j->unverified = 0;
	} else {
		j->unverified = 1;
	}
}

static void
record(pg_auditverify *v, struct item *r)
{
	struct judge *j = &v->j;
	size_t cur = j->cur;

	if (j->region) {
		if (!region_closed_by(v, r))
			return;
	} else if (r->torn && j->have_state) {
		fail_at(v, ST_DONE, PG_AV_DELETED, cur, j->line,
			"recovered record names %llu damaged bytes at offset "
			"%llu that are not there", r->torn_length,
			r->torn_offset);
		return;
	} else if (r->torn) {
		j->recovered++;	/* names bytes in a file not given */
	}
	if (!r->hash_ok) {
		wait_next(v, F_HASH, r, PG_AV_EDITED, "the record does not "
			  "match its hash: changed after it was written");
		return;
	}
	/* not checked yet (chain-end): well-formed counts as signed here */
	if (!r->sig_form || r->sig_ok == 0) {
		wait_next(v, F_SIG, r, PG_AV_BADSIG, "no given public key "
			  "signed this record");
		return;
	}
	/* the first record of a file or after a torn stretch (a writer's
	 * restart) is a checkpoint: a run starts there */
	if (j->seg_start && !sig_holds(v, r))
		return;
	if (j->have_state && r->seq < j->exp_seq) {
		if (sig_holds(v, r))
			fail_at(v, ST_DONE, PG_AV_INSERTED, cur, j->line,
				"seq %llu appears again after seq %llu", r->seq,
				j->exp_seq - 1);
		return;
	}
	if (j->have_state && r->seq > j->exp_seq) {
		if (!sig_holds(v, r))
			return;
		fail_at(v, ST_SEQ, PG_AV_DELETED, cur, j->line,
			"seq %llu follows seq %llu: records %llu..%llu are "
			"missing", r->seq, j->exp_seq - 1, j->exp_seq,
			r->seq - 1);
		j->miss_lo = j->exp_seq;
		j->miss_hi = r->seq - 1;
		return;
	}
	if (j->have_state && strcmp(r->prev, j->exp_prev) != 0) {
		if (sig_holds(v, r))
			wait_next(v, F_PREV, r, PG_AV_DELETED, "the record "
				  "does not continue from the record before "
				  "it (prev differs)");
		return;
	}
	if (v->nw > 0 && witness_check(v, r->seq, r->hash) == 0) {
		if (sig_holds(v, r))
			fail_at(v, ST_DONE, PG_AV_TRUNCATED, cur, j->line,
				"the syslog copy witnessed another record with "
				"seq %llu: the records it saw from here on were "
				"cut off and replaced", r->seq);
		return;
	}
	accept(v, r);
}

/* Judge one line, in order. */
static void
step(pg_auditverify *v, struct item *it)
{
	struct judge *j = &v->j;
	struct item *r = it->rc == PG_OK ? it : NULL;

	if (j->stage == ST_DONE)
		return;
	/* the last record of a file is a checkpoint, its first starts a
	 * segment */
	if (j->stage == ST_NONE && it->file != j->cur) {
		if (!checkpoint(v))
			return;
		j->seg_start = 1;
	}
	j->cur = it->file;
	j->line = it->lineno;
	if (j->stage == ST_SEQ) {
		if (r != NULL && r->seq >= j->miss_lo && r->seq <= j->miss_hi) {
			j->cls = PG_AV_REORDERED;
			snprintf(j->detail, sizeof(j->detail), "records out of "
				 "order: seq %llu..%llu come later in the input",
				 j->miss_lo, j->miss_hi);
			j->stage = ST_DONE;
		}
	} else if (j->stage == ST_NEXT) {
		classify_with_next(v, r);
	} else if (r == NULL) {
		if (j->region && j->r_file != j->cur) {
			region_closed_by(v, NULL);
		} else if (j->region) {
			j->r_bytes += it->len + (it->nl ? 1 : 0);
			j->r_last_nl = it->nl;
		} else if (checkpoint(v)) {
			/* the record before a torn stretch was a checkpoint */
			j->region = 1;
			j->r_file = j->cur;
			j->r_line = j->line;
			j->r_off = it->off;
			j->r_bytes = it->len + (it->nl ? 1 : 0);
			j->r_last_nl = it->nl;
		}
	} else {
		record(v, r);
	}
}

/* Judge a checked batch; with chain-end signatures, again with every
 * signature if one it relied on fails. */
static void
judge(pg_auditverify *v, struct batch *b)
{
	struct judge snap;
	size_t i;

	if (v->j.stage == ST_DONE)
		return;
	snap = v->j;
	for (i = 0; i < b->n && !v->j.redo; i++)
		step(v, &b->items[i]);
	if (!v->j.redo && v->j.stage == ST_NONE)
		checkpoint(v);		/* the end of the batch */
	if (v->j.redo) {
		v->j = snap;
		wait_job(v);		/* the pool may check the next batch */
		post_job(v, b, JOB_SIGS);
		wait_job(v);
		for (i = 0; i < b->n; i++)
			step(v, &b->items[i]);
	}
	/* every accepted record of the batch is signed or behind a checked
	 * signature: the next batch starts from its last checkpoint */
	v->j.n_acc = 0;
	v->j.ck_pos = -1;
	v->j.unverified = 0;
}

/* The filled batch goes to the pool; the one the pool checked is
 * judged.  PG_OK or PG_ENOMEM. */
static pg_err
cycle(pg_auditverify *v)
{
	struct batch *fb = &v->bt[v->fill], *ib = &v->bt[!v->fill];
	pg_err rc = PG_OK;

	if (v->inflight)
		wait_job(v);
	if (v->j.stage == ST_DONE) {
		/* decided: what is left cannot change the verdict */
		batch_reset(fb);
		batch_reset(ib);
		v->inflight = 0;
		return PG_OK;
	}
	if (fb->n > 0)
		post_job(v, fb, JOB_CHECK);
	if (v->inflight) {
		for (size_t i = 0; i < ib->n; i++)
			if (ib->items[i].rc == PG_ENOMEM)
				rc = PG_ENOMEM;
		if (rc == PG_OK)
			judge(v, ib);
		batch_reset(ib);
		v->inflight = 0;
	}
	if (fb->n > 0) {
		v->inflight = 1;
		v->fill = !v->fill;
	}
	return rc;
}

static pg_err
batch_alloc(pg_auditverify *v)
{
	for (int i = 0; i < 2; i++) {
		v->bt[i].items = calloc(v->batch_max, sizeof(struct item));
		if (v->bt[i].items == NULL)
			return PG_ENOMEM;
	}
	v->acc = calloc(v->batch_max, sizeof(*v->acc));
	return v->acc == NULL ? PG_ENOMEM : PG_OK;
}

pg_err
pg_auditverify_line(pg_auditverify *v, const char *line, size_t len,
		    int has_newline)
{
	struct batch *b;
	struct item *it;

	if (v->failed_enomem)
		return PG_ENOMEM;
	if (v->nfiles == 0 && pg_auditverify_file(v, "-") != PG_OK)
		return PG_ENOMEM;
	if (v->bt[0].items == NULL && batch_alloc(v) != PG_OK) {
		v->failed_enomem = 1;
		return PG_ENOMEM;
	}
	b = &v->bt[v->fill];
	it = &b->items[b->n];
	memset(it, 0, sizeof(*it));
	/* only a line with its newline and within the limit can be a
	 * record: the others count by their length alone */
	if (has_newline && len < PG_AUDIT_MAX_LINE) {
		if (b->used + len > b->cap) {
			size_t cap = b->cap ? b->cap : 1u << 16;
			char *n;

			while (cap < b->used + len)
				cap *= 2;
			n = realloc(b->buf, cap);
			if (n == NULL) {
				v->failed_enomem = 1;
				return PG_ENOMEM;
			}
			b->buf = n;
			b->cap = cap;
		}
		if (len > 0)	/* an empty line: nothing to keep (and no
				   buffer may exist yet) */
			memcpy(b->buf + b->used, line, len);
		it->at = b->used;
		b->used += len;
		it->stored = 1;
	}
	it->len = len;
	it->nl = has_newline;
	it->file = v->nfiles - 1;
	it->lineno = ++v->in_line;
	it->off = v->in_off;
	v->in_off += len + (has_newline ? 1 : 0);
	if (++b->n == v->batch_max || b->used >= BATCH_BYTES) {
		if (cycle(v) != PG_OK) {
			v->failed_enomem = 1;
			return PG_ENOMEM;
		}
	}
	return PG_OK;
}

pg_err
pg_auditverify_finish(pg_auditverify *v, pg_av_result *res)
{
	struct judge *j = &v->j;
	unsigned long long max_w = 0;
	size_t i;

	memset(res, 0, sizeof(*res));
	/* the last batch to the pool, the one before judged; then the last */
	if (v->failed_enomem || cycle(v) != PG_OK || cycle(v) != PG_OK)
		return PG_ENOMEM;
	if (j->stage == ST_NONE && j->region)
		region_closed_by(v, NULL);
	else if (j->stage == ST_NEXT)
		classify_with_next(v, NULL);
	else if (j->stage == ST_SEQ)
		j->stage = ST_DONE;	/* the missing records never came */

	if (j->stage == ST_NONE) {
		for (i = 0; i < v->nw; i++)
			if (v->w[i].seq > max_w)
				max_w = v->w[i].seq;
		if (v->nw > 0 && (j->records == 0 || max_w >= j->exp_seq))
			fail_at(v, ST_DONE, PG_AV_TRUNCATED,
				v->nfiles ? v->nfiles - 1 : 0, v->in_line + 1,
				"the syslog copy witnessed records up to seq "
				"%llu; the log ends %s%llu", max_w,
				j->records ? "at seq " : "with no record, ",
				j->records ? j->exp_seq - 1 : 0ULL);
	}

	res->cls = j->stage == ST_NONE ? PG_AV_OK : j->cls;
	if (res->cls != PG_AV_OK) {
		res->file = j->f_file < v->nfiles ? v->files[j->f_file] : "-";
		res->line = j->f_line;
		snprintf(res->detail, sizeof(res->detail), "%s", j->detail);
	}
	res->records = j->records;
	res->first_seq = j->first_seq;
	res->last_seq = j->records ? j->exp_seq - 1 : 0;
	memcpy(res->last_hash, j->last_hash, sizeof(res->last_hash));
	res->genesis = j->genesis;
	res->recovered = j->recovered;
	res->witnessed = v->nw;
	res->sigs_checked = v->ctx.sigs;
	for (unsigned w = 0; w < v->n_workers; w++)
		res->sigs_checked += v->workers[w].ctx.sigs;
	j->stage = ST_DONE;
	return PG_OK;
}
