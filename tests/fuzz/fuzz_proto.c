/*
 * fuzz_proto.c - libFuzzer harness for the request protocol
 * (client/proto.c): pg_proto_decode_req on the raw line, the line reader
 * pg_proto_read_line over a socket pair, pg_proto_parse_duration and
 * pg_proto_role_valid.
 *
 * Invariants: a decoded request passes pg_proto_check_req, encodes, and
 * decodes again to the same request; an error always carries a message;
 * a line read back never holds a NUL nor exceeds the limit.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../client/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void
roundtrip(const pg_proto_req *r)
{
	char err[256];
	char *line;
	json_t *doc = NULL;
	pg_proto_req back;

	if (pg_proto_check_req(r, err, sizeof(err)) != PG_OK)
		abort();	/* decode accepted what check refuses */
	line = pg_proto_encode_req(r);
	if (line == NULL)
		abort();
	if (pg_proto_decode_req(line, strlen(line), &doc, &back, err,
				sizeof(err)) != PG_OK)
		abort();
	if (back.op != r->op || back.duration != r->duration ||
	    !same(back.user, r->user) || !same(back.role, r->role) ||
	    !same(back.ticket, r->ticket) || !same(back.service, r->service) ||
	    !same(back.tty, r->tty) || !same(back.rhost, r->rhost))
		abort();
	json_decref(doc);
	free(line);
}

static void
read_back(const uint8_t *data, size_t size)
{
	int sv[2];
	char *line = NULL;
	size_t len = 0;
	pg_err e;

	/* small inputs fit the socket buffer: write all, then read */
	if (size > 32768 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return;
	if (size > 0 && write(sv[1], data, size) != (ssize_t)size)
		abort();
	close(sv[1]);
	e = pg_proto_read_line(sv[0], 4096, 100, &line, &len);
	if (e == PG_OK) {
		if (line == NULL || len + 1 > 4096 ||
		    memchr(line, '\0', len) != NULL || line[len] != '\0' ||
		    memchr(data, '\n', size) == NULL)
			abort();
		free(line);
	} else if (line != NULL) {
		abort();
	}
	close(sv[0]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], *text;
	json_t *doc = NULL;
	pg_proto_req req;
	int64_t secs = -1;
	pg_err e;

	if (size > 2 * PG_PROTO_MAX)
		return 0;
	err[0] = '\0';
	e = pg_proto_decode_req((const char *)data, size, &doc, &req, err,
				sizeof(err));
	if (e == PG_OK) {
		if (doc == NULL)
			abort();
		roundtrip(&req);
		json_decref(doc);
	} else if (doc != NULL || err[0] == '\0') {
		abort();
	}

	read_back(data, size);

	/* the same bytes as a NUL-terminated string */
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (pg_proto_parse_duration(text, &secs) == PG_OK &&
	    (secs < 1 || secs > PG_PROTO_MAX_DURATION))
		abort();
	if (pg_proto_role_valid(text)) {
		size_t i, n = strlen(text);

		if (n < 1 || n > PG_PROTO_MAX_ROLE)
			abort();
		for (i = 0; i < n; i++)
			if (!((text[i] >= 'a' && text[i] <= 'z') ||
			      (text[i] >= '0' && text[i] <= '9') ||
			      text[i] == '-'))
				abort();
	}
	free(text);
	return 0;
}
