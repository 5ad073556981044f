/* test_http.c - core/http.c against a loopback HTTP server in a thread. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../core/deadline.h"
#include "../../core/http.h"

/* ---- pg_url_encode -------------------------------------------------------- */

static void
test_url_encode(void **state)
{
	static const struct {
		const char *in, *want;
	} vec[] = {
		{ "", "" },
		{ "CHG0012345", "CHG0012345" },
		{ "AZaz09-._~", "AZaz09-._~" },
		{ "a b", "a%20b" },
		{ "a+b=c&d", "a%2Bb%3Dc%26d" },
		{ "/?#[]@!$'()*,;:", "%2F%3F%23%5B%5D%40%21%24%27%28%29%2A%2C%3B%3A" },
		{ "100%", "100%25" },
		{ "j\xc3\xb6rg", "j%C3%B6rg" },
		{ "\n\t\x7f", "%0A%09%7F" },
		{ "{ticket}", "%7Bticket%7D" },
	};
	size_t i;
	char *s;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		s = pg_url_encode(vec[i].in);
		assert_non_null(s);
		if (strcmp(s, vec[i].want) != 0)
			fail_msg("encode %zu: got %s want %s", i, s, vec[i].want);
		free(s);
	}
	assert_null(pg_url_encode(NULL));
}

/* ---- a loopback server ---------------------------------------------------- */

typedef struct server {
	int lfd;
	int port;
	int nconn;		/* connections to serve */
	const char *reply;	/* NULL: read the request, never answer */
	size_t reply_len;
	char seen[4][8192];	/* raw requests, one per connection */
	pthread_t th;
} server;

static void *
serve(void *arg)
{
	server *s = arg;
	int i;

	for (i = 0; i < s->nconn; i++) {
		int fd = accept(s->lfd, NULL, NULL);
		size_t len = 0;
		ssize_t n;
		char *hend;
		long clen = 0;

		if (fd < 0)
			break;
		/* Headers, then Content-Length bytes of body. */
		for (;;) {
			n = read(fd, s->seen[i] + len, sizeof(s->seen[i]) - 1 - len);
			if (n <= 0)
				break;
			len += (size_t)n;
			s->seen[i][len] = '\0';
			hend = strstr(s->seen[i], "\r\n\r\n");
			if (hend) {
				char *cl = strcasestr(s->seen[i], "content-length:");

				clen = cl && cl < hend ? strtol(cl + 15, NULL, 10) : 0;
				if ((long)len >= (hend + 4 - s->seen[i]) + clen)
					break;
			}
		}
		if (s->reply) {
			size_t off = 0;

			while (off < s->reply_len) {
				n = write(fd, s->reply + off, s->reply_len - off);
				if (n <= 0)
					break;
				off += (size_t)n;
			}
		} else {
			char c;

			/* Hold the connection until the client gives up. */
			while (read(fd, &c, 1) > 0)
				;
		}
		close(fd);
	}
	return NULL;
}

static void
server_start(server *s, int nconn, const char *reply, size_t reply_len)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int one = 1;

	memset(s, 0, sizeof(*s));
	s->nconn = nconn;
	s->reply = reply;
	s->reply_len = reply_len;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->lfd >= 0);
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 8), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

static void
server_stop(server *s)
{
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->th, NULL);
	close(s->lfd);
}

static void
req_init(pg_http_req *r, const char *url)
{
	memset(r, 0, sizeof(*r));
	r->method = "GET";
	r->url = url;
	r->allow_plaintext = 1;
	r->timeout_ms = 3000;
	r->deadline = pg_deadline_in(5000);
}

#define OK_REPLY "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" \
		 "Connection: close\r\n\r\nhello"

static int
setup(void **state)
{
	(void)state;
	return pg_http_global_init() == PG_OK ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	pg_http_global_cleanup();
	return 0;
}

/* ---- requests ------------------------------------------------------------- */

static void
test_get_post_and_no_secret_kept(void **state)
{
	static const char *const hdrs[] = { "Accept: application/json",
					    "X-Test: 1", NULL };
	pg_http *h = pg_http_new();
	pg_http_resp resp;
	pg_http_req r;
	server s;
	char url[128], err[256];

	(void)state;
	assert_non_null(h);
	server_start(&s, 3, OK_REPLY, strlen(OK_REPLY));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/a/b?x=1", s.port);

	/* 1: GET with a bearer token and headers. */
	req_init(&r, url);
	r.headers = hdrs;
	r.bearer = "tok-SECRET-1";
	assert_int_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)), PG_OK);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.len, 5);
	assert_string_equal(resp.body, "hello");
	pg_http_resp_free(&resp);

	/* 2: POST with basic credentials. */
	req_init(&r, url);
	r.method = "POST";
	r.body = "a=1&b=2";
	r.body_len = 7;
	r.userpwd = "user:pw-SECRET-2";
	assert_int_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)), PG_OK);
	pg_http_resp_free(&resp);

	/* 3: a plain GET on the same handle carries nothing of the above. */
	req_init(&r, url);
	assert_int_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)), PG_OK);
	pg_http_resp_free(&resp);
	server_stop(&s);

	assert_non_null(strstr(s.seen[0], "GET /a/b?x=1 HTTP/1.1\r\n"));
	assert_non_null(strstr(s.seen[0], "Authorization: Bearer tok-SECRET-1\r\n"));
	assert_non_null(strstr(s.seen[0], "Accept: application/json\r\n"));
	assert_non_null(strstr(s.seen[0], "X-Test: 1\r\n"));
	assert_non_null(strstr(s.seen[1], "POST /a/b?x=1 HTTP/1.1\r\n"));
	assert_non_null(strstr(s.seen[1], "Authorization: Basic "));
	assert_non_null(strstr(s.seen[1], "\r\n\r\na=1&b=2"));
	assert_null(strstr(s.seen[1], "Bearer"));
	assert_null(strstr(s.seen[1], "X-Test"));
	assert_non_null(strstr(s.seen[2], "GET /a/b?x=1 HTTP/1.1\r\n"));
	assert_null(strstr(s.seen[2], "Authorization"));
	assert_null(strstr(s.seen[2], "X-Test"));
	pg_http_free(h);
}

static void
test_status_and_limits(void **state)
{
	static const struct {
		const char *reply;
		size_t max;
		pg_err rc;
		long status;
		const char *errsub;
	} vec[] = {
		{ "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n"
		  "Connection: close\r\n\r\nnope", 0, PG_OK, 404, NULL },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
		  "Connection: close\r\n\r\n", 0, PG_OK, 200, NULL },
		{ OK_REPLY, 5, PG_OK, 200, NULL },
		{ OK_REPLY, 4, PG_EPROTO, 0, "response larger than 4 bytes" },
		{ "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\n"
		  "Content-Length: 0\r\nConnection: close\r\n\r\n", 0, PG_OK,
		  302, NULL },
		{ "garbage\r\n\r\n", 0, PG_EUNAVAIL, 0, "127.0.0.1" },
	};
	pg_http *h = pg_http_new();
	pg_http_resp resp;
	pg_http_req r;
	server s;
	char url[128], err[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		server_start(&s, 1, vec[i].reply, strlen(vec[i].reply));
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
		req_init(&r, url);
		r.max_response = vec[i].max;
		err[0] = '\0';
		pg_err rc = pg_http_perform(h, &r, &resp, err, sizeof(err));
		server_stop(&s);
		if (rc != vec[i].rc)
			fail_msg("reply %zu: rc %d (%s)", i, rc, err);
		if (rc == PG_OK) {
			assert_int_equal(resp.status, vec[i].status);
			assert_non_null(resp.body);
			assert_int_equal(strlen(resp.body), resp.len);
		} else {
			assert_null(resp.body);
			if (!strstr(err, vec[i].errsub))
				fail_msg("reply %zu: err \"%s\"", i, err);
		}
		pg_http_resp_free(&resp);
	}
	pg_http_free(h);
}

static void
test_failures(void **state)
{
	pg_http *h = pg_http_new();
	pg_http_resp resp;
	pg_http_req r;
	server s;
	char url[128], err[256];
	int64_t t0;

	(void)state;
	/* The deadline has passed: no request at all. */
	req_init(&r, "http://127.0.0.1:1/");
	r.deadline = pg_deadline_in(0);
	assert_int_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)),
			 PG_ETIMEOUT);

	/* Nothing listening; the userinfo never reaches the message. */
	req_init(&r, "http://user:pw-SECRET@127.0.0.1:1/x");
	assert_int_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)),
			 PG_EUNAVAIL);
	assert_non_null(strstr(err, "127.0.0.1:1"));
	assert_null(strstr(err, "SECRET"));

	/* http:// is refused unless allowed; so are other schemes. */
	req_init(&r, "http://127.0.0.1:1/");
	r.allow_plaintext = 0;
	assert_int_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)),
			 PG_EUNAVAIL);
	req_init(&r, "file:///etc/passwd");
	assert_int_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)),
			 PG_EUNAVAIL);

	/* A server that never answers: the dependency timeout applies. */
	server_start(&s, 1, NULL, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
	req_init(&r, url);
	r.timeout_ms = 300;
	t0 = pg_mono_ms();
	assert_int_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)),
			 PG_ETIMEOUT);
	assert_true(pg_mono_ms() - t0 < 2000);
	assert_null(resp.body);
	server_stop(&s);

	/* ... and so does the request deadline when it is shorter. */
	server_start(&s, 1, NULL, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
	req_init(&r, url);
	r.timeout_ms = 0;
	r.deadline = pg_deadline_in(300);
	t0 = pg_mono_ms();
	assert_int_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)),
			 PG_ETIMEOUT);
	assert_true(pg_mono_ms() - t0 < 2000);
	server_stop(&s);

	/* An unsupported method. */
	req_init(&r, "http://127.0.0.1:1/");
	r.method = "DELETE";
	assert_int_not_equal(pg_http_perform(h, &r, &resp, err, sizeof(err)),
			     PG_OK);
	pg_http_free(h);
	pg_http_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_encode),
		cmocka_unit_test(test_get_post_and_no_secret_kept),
		cmocka_unit_test(test_status_and_limits),
		cmocka_unit_test(test_failures),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
