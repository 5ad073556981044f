/*
 * fuzz_sts.c - libFuzzer harness for the STS answer parser (core/sts.c):
 * pg_sts_parse_assume and pg_sts_parse_error over Expat, and the pure
 * session-name and tag-value sanitisers.
 *
 * Invariants: a parsed AssumeRole answer has an access key id, a secret,
 * and an expiration after "now"; on error nothing is left in the result
 * and err says why; sanitised names and tags hold only the characters
 * STS allows and fit their limits.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/sts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 2024-01-01T00:00:00Z: the seed corpus expires later than this */
#define NOW 1704067200LL

static void
check_chars(const char *s, size_t max, const char *allowed)
{
	size_t i, n = strlen(s);

	if (n > max)
		abort();
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || strchr(allowed, c) != NULL) ||
		    c == '\0')
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pg_sts_result res;
	char err[512], code[64], msg[256], name[65], tag[257], *text;
	pg_err e;
	size_t half;

	if (size > 1024 * 1024)
		return 0;
	memset(&res, 0, sizeof(res));
	err[0] = '\0';
	e = pg_sts_parse_assume((const char *)data, size, NOW, &res, err,
				sizeof(err));
	if (e == PG_OK) {
		if (res.creds.access_key_id == NULL ||
		    res.creds.access_key_id[0] == '\0' ||
		    res.creds.secret_access_key == NULL ||
		    res.creds.secret_access_key[0] == '\0' ||
		    res.creds.expiration <= NOW)
			abort();
	} else {
		if (err[0] == '\0')
			abort();
		if (res.creds.access_key_id != NULL ||
		    res.creds.secret_access_key != NULL ||
		    res.creds.session_token != NULL)
			abort();
	}
	pg_sts_result_wipe(&res);

	code[0] = msg[0] = '\0';
	if (pg_sts_parse_error((const char *)data, size, code, sizeof(code),
			       msg, sizeof(msg)) == PG_OK) {
		if (memchr(code, '\0', sizeof(code)) == NULL ||
		    memchr(msg, '\0', sizeof(msg)) == NULL)
			abort();
	}

	/* the sanitisers, on the input split in two strings */
	if (size > 4096)
		return 0;
	text = malloc(size + 2);
	if (text == NULL)
		return 0;
	half = size / 2;
	memcpy(text, data, half);
	text[half] = '\0';
	memcpy(text + half + 1, data + half, size - half);
	text[size + 1] = '\0';
	pg_sts_session_name(text, text + half + 1, name, sizeof(name));
	check_chars(name, 64, "+=,.@-");
	pg_sts_tag_value(text, tag, sizeof(tag));
	check_chars(tag, 256, " _.:/=+@-");
	free(text);
	return 0;
}
