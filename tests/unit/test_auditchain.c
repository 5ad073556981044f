/*
 * test_auditchain.c - core/auditchain.c: canonical form and line vectors
 * (computed independently with Python's hashlib and cryptography from a
 * fixed Ed25519 key), hashing, signing, key loading, record parsing,
 * syslog lines, and every class of damage the verifier names, on chains
 * built in memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../core/auditchain.h"

#define JFLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)

/* ---- vectors --------------------------------------------------------------- */

/* Ed25519 key whose 32-byte seed is 01 02 .. 20 (hex). */
static const char VEC_PRIV[] =
	"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAECAwQFBgcICQo"
	"LDA0ODxAREhMUFRYXGBkaGxwdHh8g\n-----END PRIVATE KEY-----\n";
static const char VEC_PUB[] =
	"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAebVWLo/mVPlAeLES6KmL"
	"p5AfhTrmlb7X4OORC60ElmQ=\n-----END PUBLIC KEY-----\n";
static const char VEC_CANON[] =
	"{\"access_key_id\":\"ASIAEXAMPLE0000001\",\"approvers\":[\"erin"
	"\",\"fr\\u00E4nk\"],\"client\":{\"pid\":4242,\"rhost\":null,\"se"
	"rvice\":\"sshd\",\"tty\":\"pts/0\"},\"duration\":3600,\"event\":"
	"\"issued\",\"expiration\":\"2026-03-01T13:34:56Z\",\"host\":\"ba"
	"stion-1\",\"prev\":\"abababababababababababababababababababababa"
	"babababababababababab\",\"reason\":\"ok \\\"quoted\\\" \\\\ back"
	"\\nline\\u0001 \177 \\uD83D\\uDE00 /\",\"role\":\"pmp-administra"
	"tor\",\"rules\":[],\"seq\":7,\"sts_request_id\":\"c0ffee00-0000-"
	"4000-8000-000000000001\",\"ticket\":\"CHG0000042\",\"ts\":\"2026"
	"-03-01T12:34:56Z\",\"uid\":20001,\"user\":\"al\\u00EFce\"}";
static const char VEC_LINE[] =
	"{\"access_key_id\":\"ASIAEXAMPLE0000001\",\"approvers\":[\"erin"
	"\",\"fr\\u00E4nk\"],\"client\":{\"pid\":4242,\"rhost\":null,\"se"
	"rvice\":\"sshd\",\"tty\":\"pts/0\"},\"duration\":3600,\"event\":"
	"\"issued\",\"expiration\":\"2026-03-01T13:34:56Z\",\"hash\":\"c8"
	"f5f017f3707f80df0e811c81e62e720655c9a0d19ced78c2f3ca2521b633d2\""
	",\"host\":\"bastion-1\",\"prev\":\"ababababababababababababababa"
	"bababababababababababababababababab\",\"reason\":\"ok \\\"quoted"
	"\\\" \\\\ back\\nline\\u0001 \177 \\uD83D\\uDE00 /\",\"role\":\""
	"pmp-administrator\",\"rules\":[],\"seq\":7,\"sig\":\"eTAR134R+oV"
	"z2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawuKbVtpuO5FdQML9G01hXrJZq2uNJ"
	"rKANve+chCg==\",\"sts_request_id\":\"c0ffee00-0000-4000-8000-000"
	"000000001\",\"ticket\":\"CHG0000042\",\"ts\":\"2026-03-01T12:34:"
	"56Z\",\"uid\":20001,\"user\":\"al\\u00EFce\"}";
static const char VEC_LINE2[] =
	"{\"access_key_id\":null,\"approvers\":[],\"client\":{\"pid\":nul"
	"l,\"rhost\":null,\"service\":null,\"tty\":null},\"duration\":nul"
	"l,\"event\":\"recovered\",\"expiration\":null,\"hash\":\"c5f220a"
	"f43ed4b20b56bfeb5a2420c40196357f70569e5f40010fa4437bec9fe\",\"ho"
	"st\":\"bastion-1\",\"prev\":\"c8f5f017f3707f80df0e811c81e62e7206"
	"55c9a0d19ced78c2f3ca2521b633d2\",\"reason\":null,\"role\":null,"
	"\"rules\":[],\"seq\":8,\"sig\":\"vfZlEL5aE8OT+is+aGokd+Imlo2C8+X"
	"rfar5GIaQwipXZ2mGudWxZuJJ0Evb9k+toOaFkoPlWea/R7VWx9kJDA==\",\"st"
	"s_request_id\":null,\"ticket\":null,\"torn\":{\"length\":56,\"of"
	"fset\":1234},\"ts\":\"2026-03-01T12:35:00Z\",\"uid\":null,\"user"
	"\":null}";

static const char VEC_HASH[] =
	"c8f5f017f3707f80df0e811c81e62e720655c9a0d19ced78c2f3ca2521b633d2";
static const char VEC_HASH2[] =
	"c5f220af43ed4b20b56bfeb5a2420c40196357f70569e5f40010fa4437bec9fe";
/* SHA-256 of 64 zeros, "\n", "{}" */
static const char EMPTY_HASH[] =
	"5649d09ed68c17156095d175eef152856c5b1a81c117c409c1e00f096aa6838e";

static const char EC_PRIV[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgrRnDS8ut97n9xw7i\n"
	"WyMAuqh2gSeM5V2DdjCICgBZcpmhRANCAAQiruoZ/XrJ8ykSjUiON2FYJGfdDQ17\n"
	"H2ylj48G6VTh9lJZYkvh2x2/5T6qCjIYrHfvR1Aq41Dja3i7fRVz6SXi\n"
	"-----END PRIVATE KEY-----\n";
static const char EC_PUB[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIq7qGf16yfMpEo1IjjdhWCRn3Q0N\n"
	"ex9spY+PBulU4fZSWWJL4dsdv+U+qgoyGKx370dQKuNQ42t4u30Vc+kl4g==\n"
	"-----END PUBLIC KEY-----\n";
/* VEC_PRIV encrypted with a passphrase */
static const char ENC_PRIV[] =
	"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
	"MIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAh/kAXlZu/vKQICCAAw\n"
	"DAYIKoZIhvcNAgkFADAdBglghkgBZQMEAQIEEMlRVL7AJ6RTCeNXR0wvNswEQCdb\n"
	"2XvZm39ziHqtZQBmDa96ZdJ1Jfyyk/9ywiYioiG8Y7LjHL2dR5S0VuCgj397xNIY\n"
	"30D36uvFr77DGA1Af+g=\n"
	"-----END ENCRYPTED PRIVATE KEY-----\n";

static pg_auditkey *
load_priv(const char *pem)
{
	pg_auditkey *k = NULL;
	char err[256];

	assert_int_equal(pg_auditkey_load_private(pem, strlen(pem), &k, err,
						  sizeof(err)), PG_OK);
	return k;
}

static pg_auditkey *
load_pub(const char *pem)
{
	pg_auditkey *k = NULL;
	char err[256];

	assert_int_equal(pg_auditkey_load_public(pem, strlen(pem), &k, err,
						 sizeof(err)), PG_OK);
	return k;
}

static const char *const vec_approvers[] = { "erin", "fr\xc3\xa4" "nk" };

static void
vec_record(pg_audit_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->event = "issued";
	r->user = "al\xc3\xaf" "ce";
	r->uid = 20001;
	r->role = "pmp-administrator";
	r->ticket = "CHG0000042";
	r->reason = "ok \"quoted\" \\ back\nline\x01 \x7f \xf0\x9f\x98\x80 /";
	r->approvers = vec_approvers;
	r->n_approvers = 2;
	r->duration = 3600;
	r->expiration = 1772372096;	/* 2026-03-01T13:34:56Z */
	r->access_key_id = "ASIAEXAMPLE0000001";
	r->sts_request_id = "c0ffee00-0000-4000-8000-000000000001";
	r->service = "sshd";
	r->tty = "pts/0";
	r->rhost = NULL;
	r->pid = 4242;
}

#define PREV_AB "abababababababababababababababababababababababababababababababab"
#define PREV_UP "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"

static void
test_build_vector(void **state)
{
	pg_auditkey *k = load_priv(VEC_PRIV);
	pg_audit_link link = { .seq = 7, .prev = PREV_AB,
			       .ts = "2026-03-01T12:34:56Z",
			       .host = "bastion-1" };
	char hash[PG_AUDIT_HASH_HEX + 1], err[256];
	pg_audit_rec r;
	char *line = NULL;
	size_t len = 0;

	(void)state;
	vec_record(&r);
	assert_int_equal(pg_auditchain_build(&r, &link, k, &line, &len, hash,
					     err, sizeof(err)), PG_OK);
	assert_int_equal(len, strlen(VEC_LINE) + 1);
	assert_memory_equal(line, VEC_LINE, len - 1);
	assert_int_equal(line[len - 1], '\n');
	assert_string_equal(hash, VEC_HASH);
	free(line);
	pg_auditkey_free(k);
}

static void
test_recovered_vector(void **state)
{
	pg_auditkey *k = load_priv(VEC_PRIV);
	pg_audit_link link = { .seq = 8, .prev = VEC_HASH,
			       .ts = "2026-03-01T12:35:00Z",
			       .host = "bastion-1", .torn = 1,
			       .torn_offset = 1234, .torn_length = 56 };
	pg_audit_rec r = { .event = "ignored", .uid = -1 };
	char hash[PG_AUDIT_HASH_HEX + 1], err[256];
	char *line = NULL;
	size_t len = 0;

	(void)state;
	assert_int_equal(pg_auditchain_build(&r, &link, k, &line, &len, hash,
					     err, sizeof(err)), PG_OK);
	assert_string_equal(line + len - 1, "\n");
	line[len - 1] = '\0';
	assert_string_equal(line, VEC_LINE2);
	assert_string_equal(hash, VEC_HASH2);
	free(line);
	pg_auditkey_free(k);
}

static void
test_canonical_vector(void **state)
{
	pg_audit_parsed p;
	char err[256], *canon;

	(void)state;
	assert_int_equal(pg_auditchain_parse(VEC_LINE, strlen(VEC_LINE), &p,
					     err, sizeof(err)), PG_OK);
	assert_true(p.hash_ok);
	assert_int_equal(p.seq, 7);
	assert_string_equal(p.event, "issued");
	assert_string_equal(p.hash, VEC_HASH);
	assert_false(p.torn);
	canon = pg_auditchain_canonical(p.doc);
	assert_non_null(canon);
	assert_string_equal(canon, VEC_CANON);
	free(canon);
	/* the members are data: the user name came back byte for byte */
	assert_string_equal(json_string_value(json_object_get(p.doc, "user")),
			    "al\xc3\xaf" "ce");
	pg_audit_parsed_free(&p);

	assert_int_equal(pg_auditchain_parse(VEC_LINE2, strlen(VEC_LINE2), &p,
					     err, sizeof(err)), PG_OK);
	assert_true(p.hash_ok);
	assert_true(p.torn);
	assert_int_equal(p.torn_offset, 1234);
	assert_int_equal(p.torn_length, 56);
	pg_audit_parsed_free(&p);

	assert_null(pg_auditchain_canonical(NULL));
	{
		json_t *a = json_array();

		assert_null(pg_auditchain_canonical(a));
		json_decref(a);
	}
}

static void
test_hash_vector(void **state)
{
	char out[PG_AUDIT_HASH_HEX + 1];

	(void)state;
	assert_int_equal(pg_auditchain_hash(PG_AUDIT_GENESIS, "{}", 2, out),
			 PG_OK);
	assert_string_equal(out, EMPTY_HASH);
	/* prev is part of it */
	assert_int_equal(pg_auditchain_hash(PREV_AB, "{}", 2, out), PG_OK);
	assert_string_not_equal(out, EMPTY_HASH);
}

static void
test_sign_verify(void **state)
{
	pg_auditkey *priv = load_priv(VEC_PRIV), *pub = load_pub(VEC_PUB);
	pg_auditkey *other = NULL;
	char sig[PG_AUDIT_SIG_B64 + 1], bad[PG_AUDIT_SIG_B64 + 1];
	char hash[PG_AUDIT_HASH_HEX + 1], err[256];

	(void)state;
	memcpy(hash, VEC_HASH, sizeof(hash));
	assert_int_equal(pg_auditchain_sign(priv, hash, sig), PG_OK);
	assert_int_equal(strlen(sig), PG_AUDIT_SIG_B64);
	assert_true(pg_auditchain_sig_ok(pub, hash, sig));
	assert_true(pg_auditchain_sig_ok(priv, hash, sig));
	/* a public key cannot sign */
	assert_int_equal(pg_auditchain_sign(pub, hash, bad), PG_EINVAL);

	assert_int_equal(pg_auditkey_generate(&other, err, sizeof(err)), PG_OK);
	assert_false(pg_auditchain_sig_ok(other, hash, sig));

	hash[0] = hash[0] == 'c' ? 'd' : 'c';
	assert_false(pg_auditchain_sig_ok(pub, hash, sig));
	hash[0] = VEC_HASH[0];

	memcpy(bad, sig, sizeof(bad));
	bad[10] = bad[10] == 'A' ? 'B' : 'A';
	assert_false(pg_auditchain_sig_ok(pub, hash, bad));
	/* the same 64 bytes, but not the canonical encoding: the low bits
	 * of the last character before "==" must be zero */
	memcpy(bad, sig, sizeof(bad));
	{
		static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"
					  "ghijklmnopqrstuvwxyz0123456789+/";
		const char *p = strchr(b64, bad[85]);

		assert_non_null(p);
		bad[85] = b64[((p - b64) | 1)];
	}
	assert_false(pg_auditchain_sig_ok(pub, hash, bad));
	assert_false(pg_auditchain_sig_ok(pub, hash, "short"));
	assert_false(pg_auditchain_sig_ok(pub, "abc", sig));
	assert_false(pg_auditchain_sig_ok(NULL, hash, sig));
	pg_auditkey_free(other);
	pg_auditkey_free(priv);
	pg_auditkey_free(pub);
}

static void
test_key_pem_roundtrip(void **state)
{
	pg_auditkey *priv = load_priv(VEC_PRIV), *gen = NULL, *again;
	char *pem = NULL, err[256];
	size_t len = 0;

	(void)state;
	assert_true(pg_auditkey_is_private(priv));
	/* the public half, as openssl pkey -pubout writes it */
	assert_int_equal(pg_auditkey_pem(priv, 0, &pem, &len), PG_OK);
	assert_string_equal(pem, VEC_PUB);
	assert_int_equal(len, strlen(VEC_PUB));
	pg_auditkey_pem_free(pem, len);
	assert_int_equal(pg_auditkey_pem(priv, 1, &pem, &len), PG_OK);
	assert_string_equal(pem, VEC_PRIV);
	pg_auditkey_pem_free(pem, len);

	/* a generated pair works both ways */
	assert_int_equal(pg_auditkey_generate(&gen, err, sizeof(err)), PG_OK);
	assert_int_equal(pg_auditkey_pem(gen, 1, &pem, &len), PG_OK);
	assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
	again = load_priv(pem);
	pg_auditkey_pem_free(pem, len);
	assert_int_equal(pg_auditkey_pem(gen, 0, &pem, &len), PG_OK);
	{
		pg_auditkey *pub = load_pub(pem);
		char sig[PG_AUDIT_SIG_B64 + 1], none[8];
		char *p2 = NULL;
		size_t l2 = 0;

		assert_false(pg_auditkey_is_private(pub));
		assert_int_equal(pg_auditchain_sign(again, VEC_HASH, sig), PG_OK);
		assert_true(pg_auditchain_sig_ok(pub, VEC_HASH, sig));
		assert_int_equal(pg_auditkey_pem(pub, 1, &p2, &l2), PG_EINVAL);
		assert_null(p2);
		(void)none;
		pg_auditkey_free(pub);
	}
	pg_auditkey_pem_free(pem, len);
	pg_auditkey_free(again);
	pg_auditkey_free(gen);
	pg_auditkey_free(priv);
	pg_auditkey_free(NULL);
	pg_auditkey_pem_free(NULL, 0);
}

static void
test_key_errors(void **state)
{
	static const struct {
		int priv;
		const char *pem;
		const char *msg;
	} cases[] = {
		{ 1, "", "empty" },
		{ 1, "garbage", "not a PEM private key" },
		{ 1, EC_PRIV, "not an Ed25519 key" },
		{ 1, ENC_PRIV, "encrypted" },
		{ 1, VEC_PUB, "not a PEM private key" },
		{ 0, "", "empty" },
		{ 0, "garbage", "not a PEM public key" },
		{ 0, EC_PUB, "not an Ed25519 key" },
		{ 0, VEC_PRIV, "not a PEM public key" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pg_auditkey *k = (pg_auditkey *)1;
		char err[256] = "";
		size_t len = strlen(cases[i].pem);
		pg_err rc = cases[i].priv ?
			pg_auditkey_load_private(cases[i].pem, len, &k, err,
						 sizeof(err)) :
			pg_auditkey_load_public(cases[i].pem, len, &k, err,
						sizeof(err));

		print_message("key case %zu\n", i);
		assert_int_equal(rc, PG_ECONFIG);
		assert_null(k);
		assert_non_null(strstr(err, cases[i].msg));
		/* never the key material */
		assert_null(strstr(err, "MC4CAQ"));
		assert_null(strstr(err, "MIGH"));
	}
}

static void
test_build_errors(void **state)
{
	pg_auditkey *priv = load_priv(VEC_PRIV), *pub = load_pub(VEC_PUB);
	static char big[PG_AUDIT_MAX_LINE + 10];
	struct {
		const char *event;
		unsigned long long seq;
		const char *prev, *ts, *host;
		int use_pub, big_reason;
	} cases[] = {
		{ NULL, 1, PG_AUDIT_GENESIS, "2026-01-01T00:00:00Z", "h", 0, 0 },
		{ "bogus", 1, PG_AUDIT_GENESIS, "2026-01-01T00:00:00Z", "h", 0, 0 },
		{ "recovered", 1, PG_AUDIT_GENESIS, "2026-01-01T00:00:00Z", "h", 0, 0 },
		{ "deny", 0, PG_AUDIT_GENESIS, "2026-01-01T00:00:00Z", "h", 0, 0 },
		{ "deny", 1, "ABAB", "2026-01-01T00:00:00Z", "h", 0, 0 },
		{ "deny", 1, "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB",
		  "2026-01-01T00:00:00Z", "h", 0, 0 },
		{ "deny", 1, PG_AUDIT_GENESIS, "2026-01-01 00:00:00", "h", 0, 0 },
		{ "deny", 1, PG_AUDIT_GENESIS, NULL, "h", 0, 0 },
		{ "deny", 1, PG_AUDIT_GENESIS, "2026-01-01T00:00:00Z", NULL, 0, 0 },
		{ "deny", 1, PG_AUDIT_GENESIS, "2026-01-01T00:00:00Z", "h", 1, 0 },
		{ "deny", 1, PG_AUDIT_GENESIS, "2026-01-01T00:00:00Z", "h", 0, 1 },
	};

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pg_audit_link link = { .seq = cases[i].seq,
				       .prev = cases[i].prev,
				       .ts = cases[i].ts,
				       .host = cases[i].host };
		pg_audit_rec r = { .event = cases[i].event, .uid = -1,
				   .reason = cases[i].big_reason ? big : NULL };
		char hash[PG_AUDIT_HASH_HEX + 1], err[256] = "";
		char *line = (char *)1;
		size_t len = 1;

		print_message("build case %zu\n", i);
		assert_int_equal(pg_auditchain_build(&r, &link,
						     cases[i].use_pub ? pub : priv,
						     &line, &len, hash, err,
						     sizeof(err)), PG_EINVAL);
		assert_null(line);
		assert_int_equal(len, 0);
		assert_string_equal(hash, "");
		assert_true(err[0] != '\0');
	}
	pg_auditkey_free(priv);
	pg_auditkey_free(pub);
}

/* Untrusted text is stored as data; bytes that are not UTF-8 as "\xNN". */
static void
test_build_untrusted(void **state)
{
	pg_auditkey *priv = load_priv(VEC_PRIV);
	pg_audit_link link = { .seq = 1, .prev = PG_AUDIT_GENESIS,
			       .ts = "2026-01-01T00:00:00Z", .host = "h" };
	pg_audit_rec r = { .event = "deny", .uid = -1,
			   .user = "a\xff" "b\xc3", .tty = "\x1b[2J\n{\"x\":1}",
			   .ticket = "\xe2\x80\xae" "CHG" };
	char hash[PG_AUDIT_HASH_HEX + 1], err[256];
	pg_audit_parsed p;
	char *line;
	size_t len;

	(void)state;
	assert_int_equal(pg_auditchain_build(&r, &link, priv, &line, &len, hash,
					     err, sizeof(err)), PG_OK);
	/* one line: the newline in tty is escaped */
	assert_ptr_equal(strchr(line, '\n'), line + len - 1);
	assert_int_equal(pg_auditchain_parse(line, len - 1, &p, err,
					     sizeof(err)), PG_OK);
	assert_true(p.hash_ok);
	assert_string_equal(json_string_value(json_object_get(p.doc, "user")),
			    "a\\xffb\\xc3");
	assert_string_equal(json_string_value(json_object_get(
		json_object_get(p.doc, "client"), "tty")), "\x1b[2J\n{\"x\":1}");
	assert_string_equal(json_string_value(json_object_get(p.doc, "ticket")),
			    "\xe2\x80\xae" "CHG");
	assert_true(json_is_null(json_object_get(p.doc, "uid")));
	assert_true(json_is_null(json_object_get(p.doc, "duration")));
	assert_int_equal(json_array_size(json_object_get(p.doc, "rules")), 0);
	pg_audit_parsed_free(&p);
	free(line);
	pg_auditkey_free(priv);
}

/* ---- parsing: every shape that is not a record --------------------------- */

typedef void (*mutate_fn)(json_t *doc);

static void m_del_client_pid(json_t *d) { json_object_del(json_object_get(d, "client"), "pid"); }
static void m_client_extra(json_t *d) { json_object_set_new(json_object_get(d, "client"), "x", json_null()); }
static void m_client_str(json_t *d) { json_object_set_new(d, "client", json_string("x")); }
static void m_extra(json_t *d) { json_object_set_new(d, "extra", json_true()); }
static void m_seq_str(json_t *d) { json_object_set_new(d, "seq", json_string("7")); }
static void m_seq_zero(json_t *d) { json_object_set_new(d, "seq", json_integer(0)); }
static void m_seq_neg(json_t *d) { json_object_set_new(d, "seq", json_integer(-3)); }
static void m_seq_real(json_t *d) { json_object_set_new(d, "seq", json_real(7.0)); }
static void m_uid_str(json_t *d) { json_object_set_new(d, "uid", json_string("0")); }
static void m_user_int(json_t *d) { json_object_set_new(d, "user", json_integer(1)); }
static void m_host_null(json_t *d) { json_object_set_new(d, "host", json_null()); }
static void m_rules_num(json_t *d) { json_array_append_new(json_object_get(d, "rules"), json_integer(4)); }
static void m_appr_obj(json_t *d) { json_object_set_new(d, "approvers", json_object()); }
static void m_ts_bad(json_t *d) { json_object_set_new(d, "ts", json_string("2026-03-01 12:34:56")); }
static void m_exp_bad(json_t *d) { json_object_set_new(d, "expiration", json_string("soon")); }
static void m_prev_upper(json_t *d) { json_object_set_new(d, "prev", json_string(PREV_UP)); }
static void m_prev_short(json_t *d) { json_object_set_new(d, "prev", json_string("abab")); }
static void m_hash_null(json_t *d) { json_object_set_new(d, "hash", json_null()); }
static void m_sig_int(json_t *d) { json_object_set_new(d, "sig", json_integer(1)); }
static void m_event_bad(json_t *d) { json_object_set_new(d, "event", json_string("allow")); }
static void m_torn_extra(json_t *d) { json_object_set_new(d, "torn", json_pack("{s:i,s:i}", "offset", 1, "length", 2)); }
static void m_recovered_no_torn(json_t *d) { json_object_set_new(d, "event", json_string("recovered")); }

static void
test_parse_shapes(void **state)
{
	static const char *const names[] = {
		"ts", "seq", "host", "event", "user", "uid", "role", "ticket",
		"rules", "reason", "approvers", "duration", "expiration",
		"access_key_id", "sts_request_id", "client", "prev", "hash",
		"sig",
	};
	static const mutate_fn muts[] = {
		m_del_client_pid, m_client_extra, m_client_str, m_extra,
		m_seq_str, m_seq_zero, m_seq_neg, m_seq_real, m_uid_str,
		m_user_int, m_host_null, m_rules_num, m_appr_obj, m_ts_bad,
		m_exp_bad, m_prev_upper, m_prev_short, m_hash_null, m_sig_int,
		m_event_bad, m_torn_extra, m_recovered_no_torn,
	};
	static const char *const raw[] = {
		"", "not json", "[1,2]", "\"string\"", "{}", "null",
		"{\"seq\":1,\"seq\":2}",
	};
	json_error_t jerr;
	size_t i;

	(void)state;
	/* each member missing */
	for (i = 0; i < sizeof(names) / sizeof(names[0]) + sizeof(muts) /
	     sizeof(muts[0]); i++) {
		json_t *d = json_loads(VEC_LINE, 0, &jerr);
		pg_audit_parsed p;
		char err[256] = "", *s;

		assert_non_null(d);
		if (i < sizeof(names) / sizeof(names[0]))
			json_object_del(d, names[i]);
		else
			muts[i - sizeof(names) / sizeof(names[0])](d);
		s = json_dumps(d, JFLAGS);
		print_message("shape case %zu: %s\n", i, s);
		assert_int_equal(pg_auditchain_parse(s, strlen(s), &p, err,
						     sizeof(err)), PG_EPROTO);
		assert_null(p.doc);
		assert_true(err[0] != '\0');
		free(s);
		json_decref(d);
	}
	for (i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		pg_audit_parsed p;
		char err[256] = "";

		assert_int_equal(pg_auditchain_parse(raw[i], strlen(raw[i]), &p,
						     err, sizeof(err)), PG_EPROTO);
		assert_true(err[0] != '\0');
	}
	/* a duplicate member in an otherwise good record */
	{
		char *dup = malloc(strlen(VEC_LINE) + 32);
		pg_audit_parsed p;
		char err[256];

		sprintf(dup, "{\"seq\":8,%s", VEC_LINE + 1);
		assert_int_equal(pg_auditchain_parse(dup, strlen(dup), &p, err,
						     sizeof(err)), PG_EPROTO);
		free(dup);
	}
	/* a recovered record with a negative length */
	{
		json_t *d = json_loads(VEC_LINE2, 0, &jerr);
		pg_audit_parsed p;
		char err[256], *s;

		json_object_set_new(d, "torn", json_pack("{s:i,s:i}", "offset",
							 1, "length", -1));
		s = json_dumps(d, JFLAGS);
		assert_int_equal(pg_auditchain_parse(s, strlen(s), &p, err,
						     sizeof(err)), PG_EPROTO);
		free(s);
		json_decref(d);
	}
}

/* A record that parses, but is not what was signed: hash_ok = 0. */
static void
test_parse_hash_ok(void **state)
{
	static const struct {
		const char *from, *to;
	} edits[] = {
		{ "\"user\":\"al", "\"user\":\"xl" },	/* content */
		{ "\"seq\":7", "\"seq\":8" },		/* seq */
		{ "\"seq\":7", "\"seq\": 7" },		/* blank */
		{ "\"uid\":20001", "\"uid\":20001.0" },	/* not canonical */
		{ "\\u00EF", "\\u00ef" },		/* not canonical */
		{ "\"prev\":\"abab", "\"prev\":\"baab" },	/* prev */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		const char *at = strstr(VEC_LINE, edits[i].from);
		char buf[sizeof(VEC_LINE) + 16], err[256];
		pg_audit_parsed p;
		size_t pre;
		pg_err rc;

		assert_non_null(at);
		pre = (size_t)(at - VEC_LINE);
		memcpy(buf, VEC_LINE, pre);
		strcpy(buf + pre, edits[i].to);
		strcat(buf, at + strlen(edits[i].from));
		rc = pg_auditchain_parse(buf, strlen(buf), &p, err,
					 sizeof(err));
		print_message("edit case %zu\n", i);
		if (i == 3) {
			/* a real where an integer belongs is not a record */
			assert_int_equal(rc, PG_EPROTO);
			continue;
		}
		assert_int_equal(rc, PG_OK);
		assert_false(p.hash_ok);
		pg_audit_parsed_free(&p);
	}
}

/* ---- syslog lines ----------------------------------------------------------- */

static void
test_syslog(void **state)
{
	char buf[512], hash[PG_AUDIT_HASH_HEX + 1];
	unsigned long long seq = 0;
	static const char *const bad[] = {
		"",
		"nothing here",
		"pmpgate-audit seq= hash=" PREV_AB,
		"pmpgate-audit seq=0 hash=" PREV_AB,
		"pmpgate-audit seq=5 hash=abab",
		"pmpgate-audit seq=5 hash=" PREV_AB "x",
		"pmpgate-audit seq=5 hash=ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB",
		"pmpgate-audit seq=99999999999999999999999 hash=" PREV_AB,
		"pmpgate-audit seq=5  hash=" PREV_AB,
	};

	(void)state;
	pg_auditchain_syslog_text(42, VEC_HASH, "issued", "al ice\n", buf,
				  sizeof(buf));
	assert_string_equal(buf, "pmpgate-audit seq=42 hash=" "c8f5f017f3707f80"
			    "df0e811c81e62e720655c9a0d19ced78c2f3ca2521b633d2"
			    " event=issued user=al?ice?");
	pg_auditchain_syslog_text(1, VEC_HASH, "recovered", NULL, buf,
				  sizeof(buf));
	assert_non_null(strstr(buf, " user=-"));
	/* as rsyslog stores it */
	snprintf(buf, sizeof(buf), "Mar  1 12:34:56 bastion-1 pmpgated[812]: "
		 "pmpgate-audit seq=42 hash=%s event=issued user=alice\n",
		 VEC_HASH);
	assert_int_equal(pg_auditchain_syslog_parse(buf, &seq, hash), 1);
	assert_int_equal(seq, 42);
	assert_string_equal(hash, VEC_HASH);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("syslog case %zu\n", i);
		assert_int_equal(pg_auditchain_syslog_parse(bad[i], &seq, hash),
				 0);
	}
}

/* ---- the verifier ------------------------------------------------------------ */

#define NBASE 8
#define NBIG 300

struct fx {
	pg_auditkey *priv, *pub, *other, *other_pub;
	char *base[NBIG];		/* lines without "\n", seq 1.. */
	char hash[NBIG][PG_AUDIT_HASH_HEX + 1];
};

typedef struct {
	const char *line;
	int nl;
	int file;
} in_line;

static char *
make_line(pg_auditkey *k, unsigned long long seq, const char *prev,
	  int torn, unsigned long long off, unsigned long long len,
	  const char *user, char hash[PG_AUDIT_HASH_HEX + 1])
{
	static const char *const events[] = { "permit", "grant", "issued",
					      "deny", "error" };
	pg_audit_link link = { .seq = seq, .prev = prev,
			       .ts = "2026-03-01T12:00:00Z", .host = "h",
			       .torn = torn, .torn_offset = off,
			       .torn_length = len };
	pg_audit_rec r = { .event = events[seq % 5], .user = user,
			   .uid = 20001, .role = "procurement-manager",
			   .ticket = "CHG0000001" };
	char err[256], *line;
	size_t n;

	assert_int_equal(pg_auditchain_build(&r, &link, k, &line, &n, hash,
					     err, sizeof(err)), PG_OK);
	line[n - 1] = '\0';
	return line;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char *pem;
	size_t len;
	char err[256];

	f->priv = load_priv(VEC_PRIV);
	f->pub = load_pub(VEC_PUB);
	assert_int_equal(pg_auditkey_generate(&f->other, err, sizeof(err)),
			 PG_OK);
	assert_int_equal(pg_auditkey_pem(f->other, 0, &pem, &len), PG_OK);
	f->other_pub = load_pub(pem);
	pg_auditkey_pem_free(pem, len);
	for (int i = 0; i < NBIG; i++)
		f->base[i] = make_line(f->priv, (unsigned long long)i + 1,
				       i ? f->hash[i - 1] : PG_AUDIT_GENESIS,
				       0, 0, 0, "alice", f->hash[i]);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	for (int i = 0; i < NBIG; i++)
		free(f->base[i]);
	pg_auditkey_free(f->priv);
	pg_auditkey_free(f->pub);
	pg_auditkey_free(f->other);
	pg_auditkey_free(f->other_pub);
	free(f);
	return 0;
}

struct wit {
	unsigned long long seq;
	const char *hash;
};

/* Verify IN with KEYS in MODE, BATCH lines a batch (0: the default). */
static void
run_keys(const pg_auditkey *const *keys, size_t n_keys, const in_line *in,
	 size_t n, const struct wit *w, size_t nw, unsigned threads,
	 pg_av_sigmode mode, size_t batch, pg_av_result *res, char name[8])
{
	static const char *const names[] = { "f0", "f1", "f2" };
	pg_auditverify *v = NULL;
	int file = -1;

	assert_int_equal(pg_auditverify_new(keys, n_keys, &v), PG_OK);
	pg_auditverify_threads(v, threads);
	pg_auditverify_sigmode(v, mode);
	if (batch > 0)
		pg_auditverify_batch(v, batch);
	for (size_t i = 0; i < nw; i++)
		assert_int_equal(pg_auditverify_witness(v, w[i].seq, w[i].hash),
				 PG_OK);
	for (size_t i = 0; i < n; i++) {
		while (file < in[i].file)
			assert_int_equal(pg_auditverify_file(v, names[++file]),
					 PG_OK);
		assert_int_equal(pg_auditverify_line(v, in[i].line,
						     strlen(in[i].line),
						     in[i].nl), PG_OK);
	}
	assert_int_equal(pg_auditverify_finish(v, res), PG_OK);
	/* res->file borrows from the verifier */
	name[0] = '\0';
	if (res->file != NULL) {
		snprintf(name, 8, "%s", res->file);
		res->file = name;
	}
	pg_auditverify_free(v);
}

/* The ways every verdict below is reached: both signature modes, with
 * the default batch and with batches of a few lines (the chain-end
 * checkpoints and the judging again then fall inside and across
 * batches). */
static const struct {
	pg_av_sigmode mode;
	size_t batch;
} ways[] = {
	{ PG_AV_SIGS_EVERY, 0 },
	{ PG_AV_SIGS_CHAIN_END, 0 },
	{ PG_AV_SIGS_CHAIN_END, 3 },
	{ PG_AV_SIGS_CHAIN_END, 1 },
	{ PG_AV_SIGS_EVERY, 2 },
};

static void
same_verdict(const pg_av_result *a, const pg_av_result *b)
{
	assert_int_equal(a->cls, b->cls);
	if (a->cls != PG_AV_OK) {
		assert_string_equal(a->file, b->file);
		assert_int_equal(a->line, b->line);
		assert_string_equal(a->detail, b->detail);
	}
	assert_int_equal(a->records, b->records);
	assert_int_equal(a->first_seq, b->first_seq);
	assert_int_equal(a->last_seq, b->last_seq);
	assert_string_equal(a->last_hash, b->last_hash);
	assert_int_equal(a->genesis, b->genesis);
	assert_int_equal(a->recovered, b->recovered);
	assert_int_equal(a->witnessed, b->witnessed);
}

/* Verify IN with KEY every way; all must agree.  RES: the every mode's. */
static void
run(const pg_auditkey *key, const in_line *in, size_t n,
    const struct wit *w, size_t nw, unsigned threads, pg_av_result *res)
{
	static char name[8];
	const pg_auditkey *keys[1] = { key };
	pg_av_result other;
	char oname[8];

	run_keys(keys, 1, in, n, w, nw, threads, ways[0].mode, ways[0].batch,
		 res, name);
	for (size_t i = 1; i < sizeof(ways) / sizeof(ways[0]); i++) {
		print_message("  way %zu\n", i);
		run_keys(keys, 1, in, n, w, nw, threads, ways[i].mode,
			 ways[i].batch, &other, oname);
		same_verdict(res, &other);
		/* the every mode verifies each record it accepts */
		if (ways[i].mode == PG_AV_SIGS_EVERY)
			assert_true(other.sigs_checked >= other.records);
	}
}

/* Offset of input line K within its file. */
static unsigned long long
offset_of(const in_line *in, size_t k)
{
	unsigned long long off = 0;

	for (size_t i = 0; i < k; i++)
		if (in[i].file == in[k].file)
			off += strlen(in[i].line) + (in[i].nl ? 1 : 0);
	return off;
}

static size_t
base_input(struct fx *f, in_line *in, size_t first, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		in[i].line = f->base[first + i];
		in[i].nl = 1;
		in[i].file = 0;
	}
	return n;
}

static void
expect(const pg_av_result *res, pg_av_class cls, const char *file,
       unsigned long long line)
{
	print_message("verdict: %s %s:%llu %s\n", pg_av_class_name(res->cls),
		      res->file ? res->file : "-", res->line, res->detail);
	assert_int_equal(res->cls, cls);
	if (cls != PG_AV_OK) {
		assert_string_equal(res->file, file);
		assert_int_equal(res->line, line);
		assert_true(res->detail[0] != '\0');
	}
}

static void
test_verify_intact(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE];
	pg_av_result res;

	run(f->pub, in, base_input(f, in, 0, NBASE), NULL, 0, 1, &res);
	expect(&res, PG_AV_OK, NULL, 0);
	assert_int_equal(res.records, NBASE);
	assert_int_equal(res.first_seq, 1);
	assert_int_equal(res.last_seq, NBASE);
	assert_string_equal(res.last_hash, f->hash[NBASE - 1]);
	assert_true(res.genesis);
	assert_int_equal(res.recovered, 0);

	/* empty input */
	run(f->pub, in, 0, NULL, 0, 1, &res);
	expect(&res, PG_AV_OK, NULL, 0);
	assert_int_equal(res.records, 0);

	/* a chain that continues a file not given */
	run(f->pub, in, base_input(f, in, 2, NBASE - 2), NULL, 0, 1, &res);
	expect(&res, PG_AV_OK, NULL, 0);
	assert_false(res.genesis);
	assert_int_equal(res.first_seq, 3);

	/* deleting the last line is invisible without the syslog copy */
	run(f->pub, in, base_input(f, in, 0, NBASE - 1), NULL, 0, 1, &res);
	expect(&res, PG_AV_OK, NULL, 0);
}

/* Replace the first FROM in LINE with TO (same length): a new string. */
static char *
edit(const char *line, const char *from, const char *to)
{
	char *s = strdup(line), *at = strstr(s, from);

	assert_non_null(at);
	assert_int_equal(strlen(from), strlen(to));
	memcpy(at, to, strlen(to));
	return s;
}

static void
test_verify_edited(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE];
	pg_av_result res;
	pg_audit_parsed p;
	char err[256], *canon, *forged, *e;

	/* a field changed */
	base_input(f, in, 0, NBASE);
	e = edit(f->base[2], "\"alice\"", "\"mallo\"");
	in[2].line = e;
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_EDITED, "f0", 3);
	free(e);

	/* a field changed and the hash recomputed: the signature fails and
	 * the next record still names the old hash */
	e = edit(f->base[2], "\"alice\"", "\"mallo\"");
	assert_int_equal(pg_auditchain_parse(e, strlen(e), &p, err,
					     sizeof(err)), PG_OK);
	canon = pg_auditchain_canonical(p.doc);
	{
		char h[PG_AUDIT_HASH_HEX + 1];

		assert_int_equal(pg_auditchain_hash(p.prev, canon,
						    strlen(canon), h), PG_OK);
		json_object_set_new(p.doc, "hash", json_string(h));
	}
	forged = json_dumps(p.doc, JFLAGS);
	in[2].line = forged;
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_EDITED, "f0", 3);
	free(forged);
	free(canon);
	free(e);
	pg_audit_parsed_free(&p);

	/* a record replaced by junk */
	base_input(f, in, 0, NBASE);
	in[3].line = "garbage";
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_EDITED, "f0", 4);
}

static void
test_verify_deleted(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE];
	pg_av_result res;
	size_t n = 0;

	for (size_t i = 0; i < NBASE; i++)
		if (i != 3) {
			in[n].line = f->base[i];
			in[n].nl = 1;
			in[n++].file = 0;
		}
	run(f->pub, in, n, NULL, 0, 1, &res);
	expect(&res, PG_AV_DELETED, "f0", 4);
	/* several */
	n = 0;
	for (size_t i = 0; i < NBASE; i++)
		if (i < 2 || i > 4) {
			in[n].line = f->base[i];
			in[n].nl = 1;
			in[n++].file = 0;
		}
	run(f->pub, in, n, NULL, 0, 1, &res);
	expect(&res, PG_AV_DELETED, "f0", 3);
}

static void
test_verify_inserted(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE + 1];
	char h[PG_AUDIT_HASH_HEX + 1], *forged;
	pg_av_result res;

	/* a copy of an earlier record */
	base_input(f, in, 0, 5);
	in[5] = (in_line){ f->base[1], 1, 0 };
	in[6] = (in_line){ f->base[5], 1, 0 };
	in[7] = (in_line){ f->base[6], 1, 0 };
	run(f->pub, in, 8, NULL, 0, 1, &res);
	expect(&res, PG_AV_INSERTED, "f0", 6);

	/* a made-up record, signed with another key, between two that link */
	forged = make_line(f->other, 4, f->hash[2], 0, 0, 0, "mallory", h);
	base_input(f, in, 0, 3);
	in[3] = (in_line){ forged, 1, 0 };
	for (size_t i = 3; i < NBASE; i++)
		in[i + 1] = (in_line){ f->base[i], 1, 0 };
	run(f->pub, in, NBASE + 1, NULL, 0, 1, &res);
	expect(&res, PG_AV_INSERTED, "f0", 4);
	free(forged);

	/* a line of text between two records that link */
	base_input(f, in, 0, 3);
	in[3] = (in_line){ "{\"note\":\"harmless\"}", 1, 0 };
	for (size_t i = 3; i < NBASE; i++)
		in[i + 1] = (in_line){ f->base[i], 1, 0 };
	run(f->pub, in, NBASE + 1, NULL, 0, 1, &res);
	expect(&res, PG_AV_INSERTED, "f0", 4);
}

static void
test_verify_reordered(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE];
	pg_av_result res;

	base_input(f, in, 0, NBASE);
	in[3].line = f->base[4];
	in[4].line = f->base[3];
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_REORDERED, "f0", 4);
	/* the last two */
	base_input(f, in, 0, NBASE);
	in[6].line = f->base[7];
	in[7].line = f->base[6];
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_REORDERED, "f0", 7);
}

static void
test_verify_torn(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE + 2];
	char h[PG_AUDIT_HASH_HEX + 1], *cut, *rec;
	pg_av_result res;

	cut = strndup(f->base[7], 30);
	/* a last line cut short */
	base_input(f, in, 0, NBASE - 1);
	in[7] = (in_line){ cut, 0, 0 };
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_TORN, "f0", 8);
	/* a whole record that lacks only its newline is still torn */
	in[7] = (in_line){ f->base[7], 0, 0 };
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_TORN, "f0", 8);

	/* the writer's recovery: newline, then a recovered record naming
	 * the 30 bytes, continuing from seq 7 */
	in[7] = (in_line){ cut, 1, 0 };
	rec = make_line(f->priv, 8, f->hash[6], 1, offset_of(in, 7), 30, NULL,
			h);
	in[8] = (in_line){ rec, 1, 0 };
	run(f->pub, in, NBASE + 1, NULL, 0, 1, &res);
	expect(&res, PG_AV_OK, NULL, 0);
	assert_int_equal(res.recovered, 1);
	assert_int_equal(res.records, NBASE);
	assert_string_equal(res.last_hash, h);
	free(rec);

	/* a recovered record that names other bytes */
	rec = make_line(f->priv, 8, f->hash[6], 1, offset_of(in, 7), 29, NULL,
			h);
	in[8] = (in_line){ rec, 1, 0 };
	run(f->pub, in, NBASE + 1, NULL, 0, 1, &res);
	expect(&res, PG_AV_TORN, "f0", 8);
	free(rec);

	/* a recovered record that names bytes that are not there */
	rec = make_line(f->priv, 8, f->hash[6], 1, offset_of(in, 7), 30, NULL,
			h);
	in[7] = (in_line){ rec, 1, 0 };
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_DELETED, "f0", 8);
	free(rec);

	/* torn at the end of a rotated file, named at the start of the next */
	base_input(f, in, 0, 4);
	in[4] = (in_line){ cut, 0, 0 };
	rec = make_line(f->priv, 5, f->hash[3], 1, offset_of(in, 4), 30, NULL,
			h);
	in[5] = (in_line){ rec, 1, 1 };
	run(f->pub, in, 6, NULL, 0, 1, &res);
	expect(&res, PG_AV_OK, NULL, 0);
	assert_int_equal(res.recovered, 1);
	/* ... but not when the next file starts otherwise */
	in[5] = (in_line){ f->base[4], 1, 1 };
	run(f->pub, in, 6, NULL, 0, 1, &res);
	expect(&res, PG_AV_TORN, "f0", 5);
	free(rec);
	free(cut);
}

/* Empty lines (the very first one too, before any buffer exists) are
 * no records: damage, named alike in every mode, never a crash. */
static void
test_verify_empty_lines(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE + 1];
	pg_av_result res;

	in[0] = (in_line){ "", 1, 0 };
	base_input(f, in + 1, 0, NBASE);
	run(f->pub, in, NBASE + 1, NULL, 0, 1, &res);
	assert_int_not_equal(res.cls, PG_AV_OK);
	run(f->pub, in, 1, NULL, 0, 2, &res);
	assert_int_not_equal(res.cls, PG_AV_OK);
	base_input(f, in, 0, NBASE);
	in[3] = (in_line){ "", 1, 0 };
	run(f->pub, in, NBASE, NULL, 0, 2, &res);
	assert_int_not_equal(res.cls, PG_AV_OK);
}

static void
test_verify_bad_signature(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE];
	pg_av_result res;
	char *chain[NBASE], h[NBASE][PG_AUDIT_HASH_HEX + 1];

	run(f->other_pub, in, base_input(f, in, 0, NBASE), NULL, 0, 1, &res);
	expect(&res, PG_AV_BADSIG, "f0", 1);

	/* a whole chain signed by another key, mixed into ours */
	for (int i = 0; i < NBASE; i++)
		chain[i] = make_line(f->other, (unsigned long long)i + 1,
				     i ? h[i - 1] : PG_AUDIT_GENESIS, 0, 0, 0,
				     "alice", h[i]);
	base_input(f, in, 0, NBASE);
	for (int i = 4; i < NBASE; i++)
		in[i].line = chain[i];
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	/* from line 5 on the records are another signer's */
	expect(&res, PG_AV_BADSIG, "f0", 5);
	for (int i = 0; i < NBASE; i++) {
		in[i].line = chain[i];
		in[i].nl = 1;
	}
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_BADSIG, "f0", 1);
	for (int i = 0; i < NBASE; i++)
		free(chain[i]);
}

static void
test_verify_syslog(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE];
	struct wit w[NBASE];
	pg_av_result res;

	for (int i = 0; i < NBASE; i++)
		w[i] = (struct wit){ (unsigned long long)i + 1, f->hash[i] };
	run(f->pub, in, base_input(f, in, 0, NBASE), w, NBASE, 1, &res);
	expect(&res, PG_AV_OK, NULL, 0);
	assert_int_equal(res.witnessed, NBASE);

	/* the tail cut off */
	run(f->pub, in, base_input(f, in, 0, NBASE - 2), w, NBASE, 1, &res);
	expect(&res, PG_AV_TRUNCATED, "f0", NBASE - 1);
	/* everything gone */
	run(f->pub, in, 0, w, NBASE, 1, &res);
	assert_int_equal(res.cls, PG_AV_TRUNCATED);

	/* cut, and the writer went on: seq 6 was witnessed with another hash */
	w[5].hash = f->hash[0];
	run(f->pub, in, base_input(f, in, 0, NBASE), w, NBASE, 1, &res);
	expect(&res, PG_AV_TRUNCATED, "f0", 6);
	w[5].hash = f->hash[5];

	/* witnesses of earlier files do not matter */
	run(f->pub, in, base_input(f, in, 2, NBASE - 2), w, 2, 1, &res);
	expect(&res, PG_AV_OK, NULL, 0);
}

static void
test_verify_rotation(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE];
	pg_av_result res;
	size_t n;

	base_input(f, in, 0, NBASE);
	for (int i = 4; i < NBASE; i++)
		in[i].file = 1;
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	expect(&res, PG_AV_OK, NULL, 0);
	assert_int_equal(res.records, NBASE);

	/* the new file's first record missing */
	n = base_input(f, in, 0, 4);
	for (int i = 5; i < NBASE; i++)
		in[n++] = (in_line){ f->base[i], 1, 1 };
	run(f->pub, in, n, NULL, 0, 1, &res);
	expect(&res, PG_AV_DELETED, "f1", 1);

	/* files given in the wrong order */
	base_input(f, in, 4, 4);
	for (int i = 0; i < 4; i++)
		in[i + 4] = (in_line){ f->base[i], 1, 1 };
	run(f->pub, in, NBASE, NULL, 0, 1, &res);
	assert_int_equal(res.cls, PG_AV_INSERTED);
	assert_string_equal(res.file, "f1");
}

/* Checked by several threads: the same verdicts. */
static void
test_verify_threads(void **state)
{
	struct fx *f = *state;
	static in_line in[NBIG];
	pg_av_result res;
	size_t n;

	for (unsigned t = 1; t <= 4; t += 3) {
		run(f->pub, in, base_input(f, in, 0, NBIG), NULL, 0, t, &res);
		expect(&res, PG_AV_OK, NULL, 0);
		assert_int_equal(res.records, NBIG);
		assert_string_equal(res.last_hash, f->hash[NBIG - 1]);

		n = 0;
		for (size_t i = 0; i < NBIG; i++)
			if (i != 249)
				in[n++] = (in_line){ f->base[i], 1, 0 };
		run(f->pub, in, n, NULL, 0, t, &res);
		expect(&res, PG_AV_DELETED, "f0", 250);

		base_input(f, in, 0, NBIG);
		in[120].line = f->base[200];
		in[200].line = f->base[120];
		run(f->pub, in, NBIG, NULL, 0, t, &res);
		expect(&res, PG_AV_REORDERED, "f0", 121);
	}
}

/* ---- signature modes ---------------------------------------------------------- */

/* The sig of line K replaced with SIG: a new string. */
static char *
with_sig(const char *line, const char *sig)
{
	const char *at = strstr(line, "\"sig\":\"");
	const char *end;
	char *s;
	size_t pre;

	assert_non_null(at);
	at += 7;
	end = strchr(at, '"');
	assert_non_null(end);
	pre = (size_t)(at - line);
	s = malloc(pre + strlen(sig) + strlen(end) + 1);
	assert_non_null(s);
	memcpy(s, line, pre);
	strcpy(s + pre, sig);
	strcat(s, end);
	return s;
}

/* Another record's sig: well-formed, valid, but not for this hash. */
static char *
wrong_sig(const char *line, const char *donor)
{
	pg_audit_parsed p;
	char err[256], *s;

	assert_int_equal(pg_auditchain_parse(donor, strlen(donor), &p, err,
					     sizeof(err)), PG_OK);
	s = with_sig(line, p.sig);
	pg_audit_parsed_free(&p);
	return s;
}

static void
run_mode(const pg_auditkey *key, const in_line *in, size_t n,
	 pg_av_sigmode mode, size_t batch, pg_av_result *res)
{
	static char name[2][8];
	const pg_auditkey *keys[1] = { key };

	run_keys(keys, 1, in, n, NULL, 0, 2, mode, batch, res,
		 name[mode == PG_AV_SIGS_CHAIN_END]);
}

static void
test_sig_decode(void **state)
{
	static const char good[] = "eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQh"
		"TElaawuKbVtpuO5FdQML9G01hXrJZq2uNJrKANve+chCg==";
	static const char *const bad[] = {
		"",
		"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawuKbVtpuO5FdQ"
		"ML9G01hXrJZq2uNJrKANve+chCg=",		/* 87 characters */
		"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawuKbVtpuO5FdQ"
		"ML9G01hXrJZq2uNJrKANve+chCg===",	/* 89 */
		"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawuKbVtpuO5FdQ"
		"ML9G01hXrJZq2uNJrKANve+chCh==",	/* not canonical */
		"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawuKbVtpuO5FdQ"
		"ML9G01hXrJZq2uNJrKANve+ch===",	/* 63 bytes */
		"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawuKbVtpuO5FdQ"
		"ML9G01hXrJZq2uNJrKANve+c-Cg==",	/* base64url */
		"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawuKbVtpuO5FdQ"
		"ML9G01hXrJZq2uNJrKANve+c Cg==",	/* blank */
		"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawuKbVtpuO5FdQ"
		"ML9G01hXrJZq2uNJrKANve+chCgAA",	/* no padding, 66 bytes */
	};
	unsigned char raw[64], again[64];

	(void)state;
	memset(raw, 0x5a, sizeof(raw));
	assert_int_equal(pg_auditchain_sig_decode(good, raw), 1);
	assert_int_equal(raw[0], 0x79);		/* "eTAR": 79 30 11 */
	assert_int_equal(raw[1], 0x30);
	assert_int_equal(raw[63], 0x0a);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("sig case %zu\n", i);
		memset(again, 0x5a, sizeof(again));
		assert_int_equal(pg_auditchain_sig_decode(bad[i], again), 0);
		assert_int_equal(again[0], 0x5a);	/* untouched */
	}
	assert_int_equal(pg_auditchain_sig_decode(NULL, again), 0);
}

/* Records whose strings look like the members the one-serialisation
 * hash relies on: the hash must be the one of the canonical form. */
static void
test_parse_one_serialisation(void **state)
{
	static const char *const tricky[] = {
		"x\",\"hash\":\"" PREV_AB "\",\"host\":\"y",
		"\"sig\":\"AAAA\",",
		"\\\"hash\\\":\\\"",
		"hash\":\"",
		"\"hash\":\"\"sig\":\"",
		"caf\xc3\xa9 \"sig\":\"\xf0\x9f\x98\x80",
	};
	pg_auditkey *k = load_priv(VEC_PRIV);

	(void)state;
	for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
		const char *appr[2] = { tricky[i], "\"sig\":\"" };
		pg_audit_rec r = { .event = "deny", .user = tricky[i],
				   .uid = 1, .role = tricky[i],
				   .ticket = tricky[i], .reason = tricky[i],
				   .approvers = appr, .n_approvers = 2,
				   .service = tricky[i], .tty = "hash",
				   .rhost = tricky[i] };
		pg_audit_link link = { .seq = i + 1, .prev = PREV_AB,
				       .ts = "2026-03-01T12:00:00Z",
				       .host = tricky[i], .torn = (int)(i % 2),
				       .torn_offset = 5, .torn_length = 7 };
		char h[PG_AUDIT_HASH_HEX + 1], calc[PG_AUDIT_HASH_HEX + 1];
		char err[256], *line, *canon;
		pg_audit_parsed p;
		size_t n;

		print_message("tricky case %zu\n", i);
		assert_int_equal(pg_auditchain_build(&r, &link, k, &line, &n,
						     h, err, sizeof(err)),
				 PG_OK);
		assert_int_equal(pg_auditchain_parse(line, n - 1, &p, err,
						     sizeof(err)), PG_OK);
		assert_true(p.hash_ok);
		assert_string_equal(p.hash, h);
		canon = pg_auditchain_canonical(p.doc);
		assert_int_equal(pg_auditchain_hash(PREV_AB, canon,
						    strlen(canon), calc), PG_OK);
		assert_string_equal(calc, h);
		free(canon);
		pg_audit_parsed_free(&p);
		free(line);
	}
	pg_auditkey_free(k);
}

/* Lines that parse as records but are not the canonical serialisation
 * of their content (the hash matches the content): hash_ok = 0; and a
 * canonical line whose sig is not base64 text: hash_ok = 1. */
static void
test_parse_not_canonical(void **state)
{
	static const struct {
		const char *from, *to;
		int hash_ok;
	} cases[] = {
		/* members out of order at the top, in client */
		{ "\"ts\":\"2026-03-01T12:34:56Z\",\"uid\":20001,",
		  "\"uid\":20001,\"ts\":\"2026-03-01T12:34:56Z\",", 0 },
		{ "{\"pid\":4242,\"rhost\":null,",
		  "{\"rhost\":null,\"pid\":4242,", 0 },
		/* the key of hash or sig escaped, a blank in the member */
		{ "\"hash\":\"", "\"h\\u0061sh\":\"", 0 },
		{ "\"sig\":\"", "\"sig\": \"", 0 },
		{ "\"hash\":\"", "\"hash\" :\"", 0 },
		/* a '/' in sig written as an escape */
		{ "Pr/U1", "Pr\\/U1", 0 },
		/* sig not base64: canonical all the same */
		{ "\"sig\":\"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawu"
		  "KbVtpuO5FdQML9G01hXrJZq2uNJrKANve+chCg==\"",
		  "\"sig\":\"not a signature\"", 1 },
		{ "\"sig\":\"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawu"
		  "KbVtpuO5FdQML9G01hXrJZq2uNJrKANve+chCg==\"",
		  "\"sig\":\"caf\\u00E9\"", 1 },
		{ "\"sig\":\"eTAR134R+oVz2pfkPr/U1aFGd0454Q0VOKzEphUQhTElaawu"
		  "KbVtpuO5FdQML9G01hXrJZq2uNJrKANve+chCg==\"",
		  "\"sig\":\"caf\\u00e9\"", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *at = strstr(VEC_LINE, cases[i].from);
		char buf[sizeof(VEC_LINE) + 64], err[256];
		pg_audit_parsed p;
		size_t pre;

		print_message("canonical case %zu\n", i);
		assert_non_null(at);
		pre = (size_t)(at - VEC_LINE);
		memcpy(buf, VEC_LINE, pre);
		strcpy(buf + pre, cases[i].to);
		strcat(buf, at + strlen(cases[i].from));
		assert_int_equal(pg_auditchain_parse(buf, strlen(buf), &p, err,
						     sizeof(err)), PG_OK);
		assert_int_equal(p.hash_ok, cases[i].hash_ok);
		pg_audit_parsed_free(&p);
	}
}

/* What the chain-end mode checks, and the one thing it does not. */
static void
test_verify_chain_end(void **state)
{
	struct fx *f = *state;
	in_line in[NBASE + 1];
	pg_av_result every, fast;
	char h[PG_AUDIT_HASH_HEX + 1], *e, *cut, *rec;
	size_t n;

	/* an intact log: two signatures, the first and the last */
	run_mode(f->pub, in, base_input(f, in, 0, NBASE),
		 PG_AV_SIGS_CHAIN_END, 0, &fast);
	expect(&fast, PG_AV_OK, NULL, 0);
	assert_int_equal(fast.sigs_checked, 2);
	run_mode(f->pub, in, NBASE, PG_AV_SIGS_EVERY, 0, &every);
	assert_int_equal(every.sigs_checked, NBASE);
	/* a batch of 3: also at lines 3 and 6 */
	run_mode(f->pub, in, NBASE, PG_AV_SIGS_CHAIN_END, 3, &fast);
	assert_int_equal(fast.sigs_checked, 4);
	/* two files: the first and last record of each */
	for (int i = 4; i < NBASE; i++)
		in[i].file = 1;
	run_mode(f->pub, in, NBASE, PG_AV_SIGS_CHAIN_END, 0, &fast);
	expect(&fast, PG_AV_OK, NULL, 0);
	assert_int_equal(fast.sigs_checked, 4);

	/* NOT detected: a valid-looking sig on a record in the middle whose
	 * content is intact; the every mode names it */
	base_input(f, in, 0, NBASE);
	e = wrong_sig(f->base[2], f->base[1]);
	in[2].line = e;
	run_mode(f->pub, in, NBASE, PG_AV_SIGS_EVERY, 0, &every);
	expect(&every, PG_AV_BADSIG, "f0", 3);
	run_mode(f->pub, in, NBASE, PG_AV_SIGS_CHAIN_END, 0, &fast);
	expect(&fast, PG_AV_OK, NULL, 0);
	assert_int_equal(fast.records, NBASE);
	/* ... unless it is a checkpoint: here the end of a batch */
	run_mode(f->pub, in, NBASE, PG_AV_SIGS_CHAIN_END, 3, &fast);
	expect(&fast, PG_AV_BADSIG, "f0", 3);
	free(e);

	/* NOT detected either: a record someone without the key appended
	 * (here signed by another key) that the writer then continued
	 * from; its content is covered by the writer's later signatures */
	{
		char *chain[NBASE], hh[NBASE][PG_AUDIT_HASH_HEX + 1];

		for (int i = 0; i < NBASE; i++) {
			chain[i] = make_line(i == 4 ? f->other : f->priv,
					     (unsigned long long)i + 1,
					     i ? hh[i - 1] : PG_AUDIT_GENESIS,
					     0, 0, 0, i == 4 ? "mallory" :
					     "alice", hh[i]);
			in[i] = (in_line){ chain[i], 1, 0 };
		}
		run_mode(f->pub, in, NBASE, PG_AV_SIGS_EVERY, 0, &every);
		expect(&every, PG_AV_BADSIG, "f0", 5);
		run_mode(f->pub, in, NBASE, PG_AV_SIGS_CHAIN_END, 0, &fast);
		expect(&fast, PG_AV_OK, NULL, 0);
		/* ... but at the start of a file it is a checkpoint */
		for (int i = 4; i < NBASE; i++)
			in[i].file = 1;
		run_mode(f->pub, in, NBASE, PG_AV_SIGS_CHAIN_END, 0, &fast);
		expect(&fast, PG_AV_BADSIG, "f1", 1);
		for (int i = 0; i < NBASE; i++)
			free(chain[i]);
	}

	/* detected: the last record's, and a malformed one anywhere */
	base_input(f, in, 0, NBASE);
	e = wrong_sig(f->base[NBASE - 1], f->base[0]);
	in[NBASE - 1].line = e;
	run(f->pub, in, NBASE, NULL, 0, 1, &every);
	expect(&every, PG_AV_BADSIG, "f0", NBASE);
	free(e);
	base_input(f, in, 0, NBASE);
	e = with_sig(f->base[3], "AAAA");
	in[3].line = e;
	run(f->pub, in, NBASE, NULL, 0, 1, &every);
	expect(&every, PG_AV_BADSIG, "f0", 4);
	free(e);

	/* detected: the last record of a file */
	base_input(f, in, 0, NBASE);
	for (int i = 4; i < NBASE; i++)
		in[i].file = 1;
	e = wrong_sig(f->base[3], f->base[0]);
	in[3].line = e;
	run(f->pub, in, NBASE, NULL, 0, 1, &every);
	expect(&every, PG_AV_BADSIG, "f0", 4);
	free(e);

	/* detected: the record before a break (record 5 deleted) */
	n = 0;
	e = wrong_sig(f->base[3], f->base[0]);
	for (size_t i = 0; i < NBASE; i++)
		if (i != 4)
			in[n++] = (in_line){ i == 3 ? e : f->base[i], 1, 0 };
	run(f->pub, in, n, NULL, 0, 1, &every);
	expect(&every, PG_AV_EDITED, "f0", 4);
	free(e);

	/* detected: the record before a torn stretch */
	cut = strndup(f->base[7], 30);
	base_input(f, in, 0, NBASE - 1);
	e = wrong_sig(f->base[6], f->base[0]);
	in[6].line = e;
	in[7] = (in_line){ cut, 1, 0 };
	rec = make_line(f->priv, 8, f->hash[6], 1, offset_of(in, 7), 30, NULL,
			h);
	in[8] = (in_line){ rec, 1, 0 };
	run(f->pub, in, NBASE + 1, NULL, 0, 1, &every);
	expect(&every, PG_AV_BADSIG, "f0", 7);
	/* ... and the recovered record after it */
	in[6].line = f->base[6];
	free(e);
	e = wrong_sig(rec, f->base[0]);
	in[8].line = e;
	run(f->pub, in, NBASE + 1, NULL, 0, 1, &every);
	expect(&every, PG_AV_BADSIG, "f0", 9);
	in[8].line = rec;
	run(f->pub, in, NBASE + 1, NULL, 0, 1, &every);
	expect(&every, PG_AV_OK, NULL, 0);
	free(rec);
	free(e);
	free(cut);

	/* a line too long to be a record, between two that link */
	{
		char *big = malloc(PG_AUDIT_MAX_LINE + 10);

		memset(big, 'x', PG_AUDIT_MAX_LINE + 9);
		big[PG_AUDIT_MAX_LINE + 9] = '\0';
		base_input(f, in, 0, 3);
		in[3] = (in_line){ big, 1, 0 };
		for (size_t i = 3; i < NBASE; i++)
			in[i + 1] = (in_line){ f->base[i], 1, 0 };
		run(f->pub, in, NBASE + 1, NULL, 0, 1, &every);
		expect(&every, PG_AV_INSERTED, "f0", 4);
		free(big);
	}
}

/* A chain whose signing key changes: records 1..K by one key, the rest
 * by the other, and with BACK from record BACK on by the first again. */
static void
rotated_chain(struct fx *f, char **lines, char (*hash)[PG_AUDIT_HASH_HEX + 1],
	      size_t n, size_t k, size_t back)
{
	for (size_t i = 0; i < n; i++) {
		pg_auditkey *key = i < k || (back && i >= back) ? f->priv :
				   f->other;

		lines[i] = make_line(key, i + 1, i ? hash[i - 1] :
				     PG_AUDIT_GENESIS, 0, 0, 0, "alice",
				     hash[i]);
	}
}

static void
both_modes_keys(const pg_auditkey *const *keys, size_t n_keys,
		const in_line *in, size_t n, pg_av_result *every,
		pg_av_result *fast)
{
	static char name[2][8];

	run_keys(keys, n_keys, in, n, NULL, 0, 2, PG_AV_SIGS_EVERY, 0, every,
		 name[0]);
	run_keys(keys, n_keys, in, n, NULL, 0, 2, PG_AV_SIGS_CHAIN_END, 0,
		 fast, name[1]);
	same_verdict(every, fast);
}

static void
test_verify_key_rotation(void **state)
{
	struct fx *f = *state;
	static in_line in[NBIG];
	static char *lines[NBIG];
	static char hash[NBIG][PG_AUDIT_HASH_HEX + 1];
	const pg_auditkey *both[2] = { f->pub, f->other_pub };
	const pg_auditkey *rev[2] = { f->other_pub, f->pub };
	pg_av_result every, fast;
	char *e;

	rotated_chain(f, lines, hash, NBIG, 170, 0);
	for (size_t i = 0; i < NBIG; i++)
		in[i] = (in_line){ lines[i], 1, 0 };
	both_modes_keys(both, 2, in, NBIG, &every, &fast);
	expect(&fast, PG_AV_OK, NULL, 0);
	assert_int_equal(every.sigs_checked >= NBIG, 1);
	/* the end, the start and a bisection to the change */
	assert_true(fast.sigs_checked >= 4 && fast.sigs_checked <= 24);
	both_modes_keys(rev, 2, in, NBIG, &every, &fast);
	expect(&fast, PG_AV_OK, NULL, 0);
	/* one key only: the other run is not signed by a given key */
	both_modes_keys(both, 1, in, NBIG, &every, &fast);
	expect(&fast, PG_AV_BADSIG, "f0", 171);
	both_modes_keys(rev, 1, in, NBIG, &every, &fast);
	expect(&fast, PG_AV_BADSIG, "f0", 1);

	/* the last record of the old key's run and the first of the new
	 * one are checkpoints */
	for (size_t bad = 169; bad <= 170; bad++) {
		e = wrong_sig(lines[bad], lines[bad == 169 ? 10 : 200]);
		in[bad].line = e;
		both_modes_keys(both, 2, in, NBIG, &every, &fast);
		expect(&fast, PG_AV_BADSIG, "f0", bad + 1);
		in[bad].line = lines[bad];
		free(e);
	}
	for (size_t i = 0; i < NBIG; i++)
		free(lines[i]);

	/* back to the first key: three runs */
	rotated_chain(f, lines, hash, NBIG, 100, 220);
	for (size_t i = 0; i < NBIG; i++)
		in[i] = (in_line){ lines[i], 1, 0 };
	both_modes_keys(both, 2, in, NBIG, &every, &fast);
	expect(&fast, PG_AV_OK, NULL, 0);
	/* a key change between batches and inside them */
	{
		static char name[8];
		pg_av_result small;

		run_keys(both, 2, in, NBIG, NULL, 0, 3, PG_AV_SIGS_CHAIN_END,
			 7, &small, name);
		expect(&small, PG_AV_OK, NULL, 0);
		e = wrong_sig(lines[220], lines[0]);
		in[220].line = e;
		run_keys(both, 2, in, NBIG, NULL, 0, 3, PG_AV_SIGS_CHAIN_END,
			 7, &small, name);
		expect(&small, PG_AV_BADSIG, "f0", 221);
		free(e);
	}
	for (size_t i = 0; i < NBIG; i++)
		free(lines[i]);
}

static void
test_class_names(void **state)
{
	static const char *const names[] = { "ok", "edited", "deleted",
		"inserted", "reordered", "torn", "truncated", "bad-signature" };

	(void)state;
	for (int c = PG_AV_OK; c <= PG_AV_BADSIG; c++)
		assert_string_equal(pg_av_class_name((pg_av_class)c), names[c]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_vector),
		cmocka_unit_test(test_recovered_vector),
		cmocka_unit_test(test_canonical_vector),
		cmocka_unit_test(test_hash_vector),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_key_pem_roundtrip),
		cmocka_unit_test(test_key_errors),
		cmocka_unit_test(test_build_errors),
		cmocka_unit_test(test_build_untrusted),
		cmocka_unit_test(test_parse_shapes),
		cmocka_unit_test(test_parse_hash_ok),
		cmocka_unit_test(test_syslog),
		cmocka_unit_test(test_sig_decode),
		cmocka_unit_test(test_parse_one_serialisation),
		cmocka_unit_test(test_parse_not_canonical),
		cmocka_unit_test(test_class_names),
		cmocka_unit_test_setup_teardown(test_verify_intact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_edited, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_inserted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_reordered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_torn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_bad_signature, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_empty_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_syslog, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_chain_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_key_rotation, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
