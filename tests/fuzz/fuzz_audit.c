/*
 * fuzz_audit.c - libFuzzer harness for the audit line parser and the
 * chain verifier (core/auditchain.c): pg_auditchain_parse on every line,
 * pg_auditchain_syslog_parse, and the streaming verifier over the whole
 * input as one log file, with the public half of a fixed test key (the
 * seed corpus under corpus/audit/ is signed with it).
 *
 * Invariants: a parsed line has seq >= 1, 64-hex prev and hash, a known
 * event, and the torn members only in "recovered" records; a failed parse
 * leaves *out zeroed with a message; the verdict is a known class, and an
 * "ok" verdict never comes from a line that does not parse with a matching
 * hash or a record that does not verify.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/auditchain.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fuzzing key: signs tests/fuzz/corpus/audit/, guards nothing. */
static const char TEST_KEY[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MC4CAQAwBQYDK2VwBCIEIBNyPk33WFhbdlkxc32n38a+uM4BDY2S7EvXhTGwzgNp\n"
	"-----END PRIVATE KEY-----\n";

static pg_auditkey *pub;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	pg_auditkey *priv = NULL;
	char err[256], *pem = NULL;
	size_t len = 0;

	(void)argc;
	(void)argv;
	if (pg_auditkey_load_private(TEST_KEY, sizeof(TEST_KEY) - 1, &priv,
				     err, sizeof(err)) != PG_OK ||
	    pg_auditkey_pem(priv, 0, &pem, &len) != PG_OK ||
	    pg_auditkey_load_public(pem, len, &pub, err, sizeof(err))
	    != PG_OK)
		abort();
	pg_auditkey_pem_free(pem, len);
	pg_auditkey_free(priv);
	return 0;
}

static int
hex64(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != PG_AUDIT_HASH_HEX)
		return 0;
	for (i = 0; i < PG_AUDIT_HASH_HEX; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int
zeroed(const pg_audit_parsed *p)
{
	return p->doc == NULL && p->seq == 0 && p->ts == NULL &&
	       p->event == NULL && p->prev == NULL && p->hash == NULL &&
	       p->sig == NULL && p->torn == 0 && p->hash_ok == 0;
}

/* Parse one line; 1 when it is a record whose hash and signature hold. */
static int
one_line(const char *line, size_t len)
{
	pg_audit_parsed p;
	char err[256], hash[PG_AUDIT_HASH_HEX + 1];
	unsigned long long seq;
	char *copy;
	int good = 0;

	memset(&p, 0x5a, sizeof(p));
	err[0] = '\0';
	if (pg_auditchain_parse(line, len, &p, err, sizeof(err)) == PG_OK) {
		if (p.doc == NULL || p.seq < 1 || !hex64(p.prev) ||
		    !hex64(p.hash) || p.ts == NULL || p.event == NULL ||
		    p.sig == NULL ||
		    (p.torn != 0) != (strcmp(p.event, "recovered") == 0))
			abort();
		good = p.hash_ok && pg_auditchain_sig_ok(pub, p.hash, p.sig);
		pg_audit_parsed_free(&p);
	} else if (!zeroed(&p) || err[0] == '\0') {
		abort();
	}
	copy = malloc(len + 1);
	if (copy != NULL) {
		memcpy(copy, line, len);
		copy[len] = '\0';
		if (pg_auditchain_syslog_parse(copy, &seq, hash) &&
		    !hex64(hash))
			abort();
		free(copy);
	}
	return good;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	const pg_auditkey *keys[1];
	pg_auditverify *v = NULL;
	pg_av_result res;
	int all_good = 1;

	if (size > 1024 * 1024)
		return 0;
	keys[0] = pub;
	if (pg_auditverify_new(keys, 1, &v) != PG_OK ||
	    pg_auditverify_file(v, "fuzz.jsonl") != PG_OK)
		abort();
	while (p < end) {
		size_t len;
		int has_nl;

		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		has_nl = nl != NULL;
		if (!one_line(p, len))
			all_good = 0;
		if (pg_auditverify_line(v, p, len, has_nl) != PG_OK)
			abort();
		p += len + (has_nl ? 1 : 0);
	}
	memset(&res, 0, sizeof(res));
	if (pg_auditverify_finish(v, &res) != PG_OK)
		abort();
	if (res.cls > PG_AV_BADSIG || pg_av_class_name(res.cls) == NULL)
		abort();
	/* An intact chain is made of good records only (a torn stretch is
	 * accepted only when a recovered record names it). */
	if (res.cls == PG_AV_OK && !all_good && res.recovered == 0)
		abort();
	pg_auditverify_free(v);
	return 0;
}
