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

pg_err
pg_auditchain_hash(const char *prev, const char *canon, size_t len,
		   char out[PG_AUDIT_HASH_HEX + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	int ok;

	out[0] = '\0';
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return PG_EINTERNAL;
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, prev, strlen(prev)) == 1 &&
	     EVP_DigestUpdate(ctx, "\n", 1) == 1 &&
	     EVP_DigestUpdate(ctx, canon, len) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		ERR_clear_error();
		return PG_EINTERNAL;
	}
	hex32(md, out);
	return PG_OK;
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
pg_auditchain_sig_ok(const pg_auditkey *key, const char *hash,
		     const char *sig)
{
	unsigned char raw[SIG_BYTES + 3];
	char again[PG_AUDIT_SIG_B64 + 1];
	EVP_MD_CTX *ctx;
	int ok;

	if (key == NULL || hash == NULL || sig == NULL ||
	    strlen(hash) != PG_AUDIT_HASH_HEX ||
	    strlen(sig) != PG_AUDIT_SIG_B64)
		return 0;
	/* 88 characters decode to 66 bytes, the last two from "==" */
	if (EVP_DecodeBlock(raw, (const unsigned char *)sig,
			    PG_AUDIT_SIG_B64) != SIG_BYTES + 2)
		return 0;
	/* only the one canonical encoding of the 64 bytes */
	EVP_EncodeBlock((unsigned char *)again, raw, SIG_BYTES);
	if (strcmp(again, sig) != 0)
		return 0;
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

pg_err
pg_auditchain_parse(const char *line, size_t len, pg_audit_parsed *out,
		    char *err, size_t errlen)
{
	char calc[PG_AUDIT_HASH_HEX + 1];
	char *full = NULL, *canon = NULL;
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
	full = json_dumps(doc, JFLAGS);
	canon = pg_auditchain_canonical(doc);
	if (full == NULL || canon == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = PG_ENOMEM;
		goto out;
	}
	out->hash_ok = strlen(full) == len && memcmp(full, line, len) == 0 &&
		       pg_auditchain_hash(out->prev, canon, strlen(canon),
					  calc) == PG_OK &&
		       strcmp(calc, out->hash) == 0;
	rc = PG_OK;
out:
	free(full);
	free(canon);
	if (rc != PG_OK)
		pg_audit_parsed_free(out);
	return rc;
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

/* One input line; the checks that need no order are made on a batch of
 * them in parallel (parse, hash, signature), the rest in order. */
struct item {
	char *line;
	size_t len;
	int nl;
	size_t file;
	unsigned long long lineno, off;
	pg_err rc;			/* of pg_auditchain_parse */
	pg_audit_parsed r;
	int sig_ok;
};

#define BATCH 2048
#define MAX_THREADS 64

struct witness {
	unsigned long long seq;
	char hash[PG_AUDIT_HASH_HEX + 1];
};

/* Where the first failure stands: ST_NEXT waits for the next line to
 * classify it, ST_SEQ looks for missing seqs further on. */
enum stage { ST_NONE, ST_NEXT, ST_SEQ, ST_DONE };
enum fkind { F_HASH, F_SIG, F_PREV };

struct pg_auditverify {
	const pg_auditkey *const *keys;
	size_t n_keys;

	struct witness *w;
	size_t nw, capw;
	int w_sorted;

	char **files;
	size_t nfiles;
	unsigned long long in_line, in_off;	/* input position */

	/* lines read but not judged yet: checked in parallel, then in order */
	struct item *batch;
	size_t n_batch;
	unsigned threads;

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
};

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
	v->batch = calloc(BATCH, sizeof(*v->batch));
	if (v->batch == NULL) {
		free(v);
		return PG_ENOMEM;
	}
	*out = v;
	return PG_OK;
}

void
pg_auditverify_free(pg_auditverify *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n_batch; i++) {
		free(v->batch[i].line);
		pg_audit_parsed_free(&v->batch[i].r);
	}
	free(v->batch);
	for (size_t i = 0; i < v->nfiles; i++)
		free(v->files[i]);
	free(v->files);
	free(v->w);
	free(v);
}

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
	return v->stage == ST_DONE;
}

static void
fail_at(pg_auditverify *v, enum stage st, pg_av_class cls, size_t file,
	unsigned long long line, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void
fail_at(pg_auditverify *v, enum stage st, pg_av_class cls, size_t file,
	unsigned long long line, const char *fmt, ...)
{
	va_list ap;

	v->stage = st;
	v->cls = cls;
	v->f_file = file;
	v->f_line = line;
	va_start(ap, fmt);
	vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
	va_end(ap);
}

/* The first failure waited for the next record R (NULL: there is none,
 * or the next line is not a record). */
static void
classify_with_next(pg_auditverify *v, const pg_audit_parsed *r)
{
	int links = r != NULL && v->b_have_state && r->seq == v->b_exp_seq &&
		    strcmp(r->prev, v->b_exp_prev) == 0;

	switch (v->fkind) {
	case F_HASH:
		v->cls = links ? PG_AV_INSERTED : PG_AV_EDITED;
		break;
	case F_SIG:
		if (links)
			v->cls = PG_AV_INSERTED;
		else if (r != NULL && strcmp(r->prev, v->f_hash) != 0)
			v->cls = PG_AV_EDITED;
		else
			v->cls = PG_AV_BADSIG;
		break;
	case F_PREV:
		v->cls = links ? PG_AV_INSERTED : PG_AV_DELETED;
		break;
	}
	if (v->cls == PG_AV_INSERTED)
		snprintf(v->detail, sizeof(v->detail), "a line that is not "
			 "part of the chain: the record after it continues "
			 "from the record before it");
	v->stage = ST_DONE;
}

static void
wait_next(pg_auditverify *v, enum fkind k, const pg_audit_parsed *r,
	  pg_av_class provisional, const char *detail)
{
	fail_at(v, ST_NEXT, provisional, v->cur, v->line, "%s", detail);
	v->fkind = k;
	v->f_seq = r->seq;
	memcpy(v->f_hash, r->hash, sizeof(v->f_hash));
	v->b_have_state = v->have_state;
	v->b_exp_seq = v->exp_seq;
	memcpy(v->b_exp_prev, v->exp_prev, sizeof(v->b_exp_prev));
}

static int
any_key_signed(const pg_auditverify *v, const pg_audit_parsed *r)
{
	for (size_t i = 0; i < v->n_keys; i++)
		if (pg_auditchain_sig_ok(v->keys[i], r->hash, r->sig))
			return 1;
	return 0;
}

/* The stretch of non-record lines ends at record R (NULL at the end). */
static int
region_closed_by(pg_auditverify *v, const pg_audit_parsed *r)
{
	size_t cur = v->cur;
	unsigned long long tlen = v->r_bytes - (v->r_last_nl ? 1 : 0);
	int same_file = v->r_file == cur;

	if (r != NULL && r->torn && r->torn_offset == v->r_off &&
	    r->torn_length == tlen && (same_file || v->line == 1)) {
		v->region = 0;
		v->recovered++;
		return 1;
	}
	if (r == NULL || !same_file)
		fail_at(v, ST_DONE, PG_AV_TORN, v->r_file, v->r_line,
			"%llu damaged bytes at offset %llu end the file and no "
			"recovered record names them", tlen, v->r_off);
	else if (r->torn)
		fail_at(v, ST_DONE, PG_AV_TORN, v->r_file, v->r_line,
			"%llu damaged bytes at offset %llu, but the recovered "
			"record after them names %llu bytes at offset %llu",
			tlen, v->r_off, r->torn_length, r->torn_offset);
	else if (v->have_state && r->seq == v->exp_seq &&
		 strcmp(r->prev, v->exp_prev) == 0)
		fail_at(v, ST_DONE, PG_AV_INSERTED, v->r_file, v->r_line,
			"%llu bytes that are not a record, between two records "
			"that link", tlen);
	else
		fail_at(v, ST_DONE, PG_AV_EDITED, v->r_file, v->r_line,
			"%llu bytes that are not a record (damaged) and no "
			"recovered record names them", tlen);
	v->region = 0;
	return 0;
}

static void
accept(pg_auditverify *v, const pg_audit_parsed *r)
{
	if (v->records == 0) {
		v->first_seq = r->seq;
		v->genesis = strcmp(r->prev, PG_AUDIT_GENESIS) == 0;
	}
	v->records++;
	v->have_state = 1;
	v->exp_seq = r->seq + 1;
	memcpy(v->exp_prev, r->hash, sizeof(v->exp_prev));
	memcpy(v->last_hash, r->hash, sizeof(v->last_hash));
}

static void
record(pg_auditverify *v, const pg_audit_parsed *r, int sig_ok)
{
	size_t cur = v->cur;

	if (v->region) {
		if (!region_closed_by(v, r))
			return;
	} else if (r->torn && v->have_state) {
		fail_at(v, ST_DONE, PG_AV_DELETED, cur, v->line,
			"recovered record names %llu damaged bytes at offset "
			"%llu that are not there", r->torn_length,
			r->torn_offset);
		return;
	} else if (r->torn) {
		v->recovered++;	/* names bytes in a file not given */
	}
	if (!r->hash_ok) {
		wait_next(v, F_HASH, r, PG_AV_EDITED, "the record does not "
			  "match its hash: changed after it was written");
		return;
	}
	if (!sig_ok) {
		wait_next(v, F_SIG, r, PG_AV_BADSIG, "no given public key "
			  "signed this record");
		return;
	}
	if (v->have_state && r->seq < v->exp_seq) {
		fail_at(v, ST_DONE, PG_AV_INSERTED, cur, v->line,
			"seq %llu appears again after seq %llu", r->seq,
			v->exp_seq - 1);
		return;
	}
	if (v->have_state && r->seq > v->exp_seq) {
		fail_at(v, ST_SEQ, PG_AV_DELETED, cur, v->line,
			"seq %llu follows seq %llu: records %llu..%llu are "
			"missing", r->seq, v->exp_seq - 1, v->exp_seq,
			r->seq - 1);
		v->miss_lo = v->exp_seq;
		v->miss_hi = r->seq - 1;
		return;
	}
	if (v->have_state && strcmp(r->prev, v->exp_prev) != 0) {
		wait_next(v, F_PREV, r, PG_AV_DELETED, "the record does not "
			  "continue from the record before it (prev differs)");
		return;
	}
	if (v->nw > 0 && witness_check(v, r->seq, r->hash) == 0) {
		fail_at(v, ST_DONE, PG_AV_TRUNCATED, cur, v->line,
			"the syslog copy witnessed another record with seq "
			"%llu: the records it saw from here on were cut off "
			"and replaced", r->seq);
		return;
	}
	accept(v, r);
}

/* The checks of one line that need no other line. */
static void
check_item(const pg_auditverify *v, struct item *it)
{
	char err[128];

	it->rc = PG_EPROTO;
	it->sig_ok = 0;
	if (it->nl)
		it->rc = pg_auditchain_parse(it->line, it->len, &it->r, err,
					     sizeof(err));
	if (it->rc == PG_OK && it->r.hash_ok)
		it->sig_ok = any_key_signed(v, &it->r);
}

struct share {
	const pg_auditverify *v;
	size_t first, step;
};

static void *
check_share(void *arg)
{
	const struct share *sh = arg;

	for (size_t i = sh->first; i < sh->v->n_batch; i += sh->step)
		check_item(sh->v, &sh->v->batch[i]);
	return NULL;
}

/* Judge one line, in order. */
static void
step(pg_auditverify *v, struct item *it)
{
	pg_audit_parsed *r = it->rc == PG_OK ? &it->r : NULL;

	v->cur = it->file;
	v->line = it->lineno;
	if (v->stage == ST_DONE)
		return;
	if (v->stage == ST_SEQ) {
		if (r != NULL && r->seq >= v->miss_lo && r->seq <= v->miss_hi) {
			v->cls = PG_AV_REORDERED;
			snprintf(v->detail, sizeof(v->detail), "records out of "
				 "order: seq %llu..%llu come later in the input",
				 v->miss_lo, v->miss_hi);
			v->stage = ST_DONE;
		}
	} else if (v->stage == ST_NEXT) {
		classify_with_next(v, r);
	} else if (r == NULL) {
		if (v->region && v->r_file != v->cur) {
			region_closed_by(v, NULL);
		} else if (v->region) {
			v->r_bytes += it->len + (it->nl ? 1 : 0);
			v->r_last_nl = it->nl;
		} else {
			v->region = 1;
			v->r_file = v->cur;
			v->r_line = v->line;
			v->r_off = it->off;
			v->r_bytes = it->len + (it->nl ? 1 : 0);
			v->r_last_nl = it->nl;
		}
	} else {
		record(v, r, it->sig_ok);
	}
}

/* Check the batch (in parallel with several threads), then judge it. */
static pg_err
flush(pg_auditverify *v)
{
	pthread_t tid[MAX_THREADS];
	struct share sh[MAX_THREADS];
	size_t i, started = 0, n = v->threads;
	pg_err rc = PG_OK;

	if (v->n_batch == 0)
		return PG_OK;
	if (n > v->n_batch / 64)
		n = v->n_batch / 64;	/* small batches: not worth it */
	if (n < 1)
		n = 1;
	for (i = 0; i < n; i++) {
		sh[i].v = v;
		sh[i].first = i;
		sh[i].step = n;
	}
	for (i = 1; i < n; i++) {
		if (pthread_create(&tid[i], NULL, check_share, &sh[i]) != 0)
			break;
		started++;
	}
	if (started + 1 < n) {
		/* fewer threads than planned: the rest is done here */
		for (; i < n; i++)
			check_share(&sh[i]);
	}
	check_share(&sh[0]);
	for (i = 1; i <= started; i++)
		pthread_join(tid[i], NULL);
	for (i = 0; i < v->n_batch; i++) {
		struct item *it = &v->batch[i];

		if (it->rc == PG_ENOMEM)
			rc = PG_ENOMEM;
		else if (rc == PG_OK)
			step(v, it);
		free(it->line);
		pg_audit_parsed_free(&it->r);
		memset(it, 0, sizeof(*it));
	}
	v->n_batch = 0;
	return rc;
}

void
pg_auditverify_threads(pg_auditverify *v, unsigned n)
{
	v->threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

pg_err
pg_auditverify_line(pg_auditverify *v, const char *line, size_t len,
		    int has_newline)
{
	struct item *it;

	if (v->nfiles == 0 && pg_auditverify_file(v, "-") != PG_OK)
		return PG_ENOMEM;
	it = &v->batch[v->n_batch];
	memset(it, 0, sizeof(*it));
	it->line = malloc(len + 1);
	if (it->line == NULL)
		return PG_ENOMEM;
	memcpy(it->line, line, len);
	it->line[len] = '\0';
	it->len = len;
	it->nl = has_newline;
	it->file = v->nfiles - 1;
	it->lineno = ++v->in_line;
	it->off = v->in_off;
	v->in_off += len + (has_newline ? 1 : 0);
	if (++v->n_batch == BATCH)
		return flush(v);
	return PG_OK;
}

pg_err
pg_auditverify_finish(pg_auditverify *v, pg_av_result *res)
{
	unsigned long long max_w = 0;
	size_t i;

	memset(res, 0, sizeof(*res));
	if (flush(v) != PG_OK)
		return PG_ENOMEM;
	if (v->stage == ST_NONE && v->region)
		region_closed_by(v, NULL);
	else if (v->stage == ST_NEXT)
		classify_with_next(v, NULL);
	else if (v->stage == ST_SEQ)
		v->stage = ST_DONE;	/* the missing records never came */

	if (v->stage == ST_NONE) {
		for (i = 0; i < v->nw; i++)
			if (v->w[i].seq > max_w)
				max_w = v->w[i].seq;
		if (v->nw > 0 && (v->records == 0 || max_w >= v->exp_seq))
			fail_at(v, ST_DONE, PG_AV_TRUNCATED,
				v->nfiles ? v->nfiles - 1 : 0, v->in_line + 1,
				"the syslog copy witnessed records up to seq "
				"%llu; the log ends %s%llu", max_w,
				v->records ? "at seq " : "with no record, ",
				v->records ? v->exp_seq - 1 : 0ULL);
	}

	memset(res, 0, sizeof(*res));
	res->cls = v->stage == ST_NONE ? PG_AV_OK : v->cls;
	if (res->cls != PG_AV_OK) {
		res->file = v->f_file < v->nfiles ? v->files[v->f_file] : "-";
		res->line = v->f_line;
		snprintf(res->detail, sizeof(res->detail), "%s", v->detail);
	}
	res->records = v->records;
	res->first_seq = v->first_seq;
	res->last_seq = v->records ? v->exp_seq - 1 : 0;
	memcpy(res->last_hash, v->last_hash, sizeof(res->last_hash));
	res->genesis = v->genesis;
	res->recovered = v->recovered;
	res->witnessed = v->nw;
	v->stage = ST_DONE;
	return PG_OK;
}
