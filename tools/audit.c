/*
 * audit.c - `pmpgate audit verify|show|keygen`; see audit.h.
 *
 * verify feeds the files to the streaming verifier of core/auditchain.c;
 * show parses records without judging them (verify does that) and
 * prints them as an aligned table, CSV or JSON lines; keygen writes an
 * Ed25519 key pair.  Text from the log is untrusted: the table escapes
 * control and invisible characters, CSV neutralises formulas.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../client/output.h"
#include "../core/auditchain.h"
#include "../core/config.h"
#include "../core/err.h"

#define PROG "pmpgate"
#define MAX_KEYS 8
#define KEY_FILE_MAX 65536
/* Widest table cell, in characters; json and csv are never cut. */
#define CELL_MAX 40

static void
usage_error(const char *msg)
{
	fprintf(stderr, "%s: usage: %s (try %s --help)\n", PROG, msg, PROG);
}

static void
error_line(const char *what, const char *msg)
{
	char a[512], b[512];

	pg_sanitize_text(what, a, sizeof(a));
	pg_sanitize_text(msg, b, sizeof(b));
	fprintf(stderr, "%s: error: %s: %s\n", PROG, a, b);
}

/* ---- verify --------------------------------------------------------------- */

/* Read a public key file (not a secret; at most KEY_FILE_MAX bytes). */
static pg_err
read_public_key(const char *path, pg_auditkey **out)
{
	char buf[KEY_FILE_MAX + 1], err[256];
	size_t len = 0;
	ssize_t n;
	pg_err rc = PG_ECONFIG;
	int fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		error_line(path, strerror(errno));
		return PG_ECONFIG;
	}
	while (len < sizeof(buf) &&
	       (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			error_line(path, strerror(errno));
			goto out;
		}
		len += (size_t)n;
	}
	if (len > KEY_FILE_MAX) {
		error_line(path, "larger than a public key can be");
		goto out;
	}
	rc = pg_auditkey_load_public(buf, len, out, err, sizeof(err));
	if (rc != PG_OK)
		error_line(path, err);
out:
	close(fd);
	return rc;
}

static pg_err
load_witnesses(pg_auditverify *v, const char *path)
{
	unsigned long long seq;
	char hash[PG_AUDIT_HASH_HEX + 1];
	char *line = NULL;
	size_t cap = 0;
	FILE *f;
	pg_err rc = PG_OK;

	f = fopen(path, "re");
	if (f == NULL) {
		error_line(path, strerror(errno));
		return PG_ECONFIG;
	}
	while (getline(&line, &cap, f) >= 0) {
		if (!pg_auditchain_syslog_parse(line, &seq, hash))
			continue;
		if (pg_auditverify_witness(v, seq, hash) != PG_OK) {
			error_line(path, "out of memory");
			rc = PG_ENOMEM;
			break;
		}
	}
	if (rc == PG_OK && ferror(f)) {
		error_line(path, "read error");
		rc = PG_ECONFIG;
	}
	free(line);
	fclose(f);
	return rc;
}

/* Feed one file to the verifier. */
static pg_err
verify_file(pg_auditverify *v, const char *path)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	pg_err rc;

	f = fopen(path, "re");
	if (f == NULL) {
		error_line(path, strerror(errno));
		return PG_ECONFIG;
	}
	/* large reads: the log is read once, from start to end */
	setvbuf(f, NULL, _IOFBF, 1u << 20);
	rc = pg_auditverify_file(v, path);
	while (rc == PG_OK && !pg_auditverify_decided(v) &&
	       (n = getline(&line, &cap, f)) >= 0) {
		int nl = n > 0 && line[n - 1] == '\n';

		rc = pg_auditverify_line(v, line, (size_t)n - (nl ? 1 : 0), nl);
	}
	if (rc == PG_OK && ferror(f)) {
		error_line(path, "read error");
		rc = PG_ECONFIG;
	} else if (rc != PG_OK) {
		error_line(path, "out of memory");
	}
	free(line);
	fclose(f);
	return rc;
}

static int
cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "public-key", required_argument, NULL, 'k' },
		{ "syslog", required_argument, NULL, 's' },
		{ "signatures", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_paths[MAX_KEYS], *syslog_path = NULL;
	pg_av_sigmode sigmode = PG_AV_SIGS_EVERY;
	const char *deflt[] = { PG_DEFAULT_AUDIT };
	const char *const *files;
	pg_auditkey *keys[MAX_KEYS];
	pg_auditverify *v = NULL;
	pg_av_result res;
	size_t n_keys = 0, n_loaded = 0, n_files, i;
	char safe[512];
	long ncpu;
	int c, ex = PG_EXIT_USAGE;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (n_keys == MAX_KEYS) {
				usage_error("audit verify: at most 8 --public-key");
				return PG_EXIT_USAGE;
			}
			key_paths[n_keys++] = optarg;
			break;
		case 's':
			syslog_path = optarg;
			break;
		case 'S':
			if (strcmp(optarg, "every") == 0) {
				sigmode = PG_AV_SIGS_EVERY;
			} else if (strcmp(optarg, "chain-end") == 0) {
				sigmode = PG_AV_SIGS_CHAIN_END;
			} else {
				usage_error("audit verify: --signatures is every "
					    "or chain-end");
				return PG_EXIT_USAGE;
			}
			break;
		case 'h':
			printf("Usage: %s audit verify [--public-key F]... "
			       "[--syslog FILE] [--signatures every|chain-end] "
			       "[FILE...]\n", PROG);
			return PG_EXIT_OK;
		case ':':
			usage_error("audit verify: an option is missing its "
				    "argument");
			return PG_EXIT_USAGE;
		default:
			usage_error("audit verify: unknown option");
			return PG_EXIT_USAGE;
		}
	}
	if (n_keys == 0)
		key_paths[n_keys++] = PG_DEFAULT_AUDIT_PUBKEY;
	files = optind < argc ? (const char *const *)argv + optind : deflt;
	n_files = optind < argc ? (size_t)(argc - optind) : 1;

	for (i = 0; i < n_keys; i++) {
		if (read_public_key(key_paths[i], &keys[n_loaded]) != PG_OK)
			goto out;
		n_loaded++;
	}
	if (pg_auditverify_new((const pg_auditkey *const *)keys, n_loaded,
			       &v) != PG_OK) {
		error_line("audit verify", "out of memory");
		ex = PG_EXIT_INTERNAL;
		goto out;
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	pg_auditverify_threads(v, ncpu > 0 ? (unsigned)(ncpu > 16 ? 16 : ncpu)
					   : 1);
	pg_auditverify_sigmode(v, sigmode);
	if (syslog_path != NULL && load_witnesses(v, syslog_path) != PG_OK)
		goto out;
	for (i = 0; i < n_files && !pg_auditverify_decided(v); i++)
		if (verify_file(v, files[i]) != PG_OK)
			goto out;
	if (pg_auditverify_finish(v, &res) != PG_OK) {
		error_line("audit verify", "out of memory");
		ex = PG_EXIT_INTERNAL;
		goto out;
	}
	if (res.cls != PG_AV_OK) {
		pg_sanitize_text(res.file, safe, sizeof(safe));
		printf("FAIL: %s:%llu: %s: %s\n", safe, res.line,
		       pg_av_class_name(res.cls), res.detail);
		ex = PG_EXIT_DENIED;
	} else {
		if (res.records > 0)
			printf("OK: %llu records, seq %llu..%llu, last hash "
			       "%s\n", res.records, res.first_seq,
			       res.last_seq, res.last_hash);
		else
			printf("OK: 0 records\n");
		if (res.records > 0 && !res.genesis)
			printf("note: the chain starts at seq %llu, continuing "
			       "a file not given\n", res.first_seq);
		if (res.recovered > 0)
			printf("note: %llu torn stretch(es), each named by a "
			       "signed recovered record\n", res.recovered);
		if (syslog_path != NULL)
			printf("note: %llu syslog witness line(s) checked\n",
			       res.witnessed);
		if (sigmode == PG_AV_SIGS_CHAIN_END && res.records > 0)
			printf("note: --signatures chain-end: %llu Ed25519 "
			       "signature(s) verified at checkpoints (ends of "
			       "files, batches and signed runs); the other sig "
			       "fields were checked for form only, their "
			       "records' content through the chain\n",
			       res.sigs_checked);
		ex = PG_EXIT_OK;
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "%s: error: cannot write to stdout\n", PROG);
		ex = PG_EXIT_INTERNAL;
	}
out:
	pg_auditverify_free(v);
	for (i = 0; i < n_loaded; i++)
		pg_auditkey_free(keys[i]);
	return ex;
}

/* ---- show ----------------------------------------------------------------- */

enum fmt { FMT_TABLE, FMT_JSON, FMT_CSV };

struct filter {
	const char *user, *role, *ticket, *event;
	int decision;		/* 0 any, 1 allow, 2 deny */
	int64_t since, until;	/* INT64_MIN / INT64_MAX when open */
};

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int
digits(const char *s, int n, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 1;
}

/*
 * A time for --since/--until and the records' ts: "YYYY-MM-DD" (00:00
 * UTC), "YYYY-MM-DDTHH:MM:SS" followed by "Z" or "+HH:MM"/"-HH:MM", or
 * "YYYY-MM-DD HH:MM:SS" (UTC).  0 on anything else.
 */
static int
parse_time(const char *s, int64_t *out)
{
	static const unsigned mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30,
					  31, 30, 31 };
	unsigned y, mo, d, h = 0, mi = 0, se = 0, oh = 0, om = 0;
	int64_t t, sign = 0;
	size_t n = strlen(s);

	if (n < 10 || !digits(s, 4, &y) || s[4] != '-' ||
	    !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d))
		return 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 ||
						    y % 400 == 0))))
		return 0;
	if (n > 10) {
		if ((s[10] != 'T' && s[10] != ' ') || n < 19 ||
		    !digits(s + 11, 2, &h) || s[13] != ':' ||
		    !digits(s + 14, 2, &mi) || s[16] != ':' ||
		    !digits(s + 17, 2, &se) || h > 23 || mi > 59 || se > 60)
			return 0;
		if (s[10] == ' ' && n != 19)
			return 0;
		if (s[10] == 'T') {
			if (n == 20 && (s[19] == 'Z' || s[19] == 'z'))
				sign = 0;
			else if (n == 25 && (s[19] == '+' || s[19] == '-') &&
				 digits(s + 20, 2, &oh) && s[22] == ':' &&
				 digits(s + 23, 2, &om) && oh < 24 && om < 60)
				sign = s[19] == '+' ? 1 : -1;
			else
				return 0;
		}
	}
	t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 +
	    (se == 60 ? 59 : se);
	t -= sign * (int64_t)(oh * 3600 + om * 60);
	*out = t;
	return 1;
}

static const char *
str_member(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int
matches(const json_t *rec, const char *event, const struct filter *f)
{
	const char *ts = str_member(rec, "ts"), *exp;
	int64_t start, end;

	if (f->user && (str_member(rec, "user") == NULL ||
			strcmp(str_member(rec, "user"), f->user) != 0))
		return 0;
	if (f->role && (str_member(rec, "role") == NULL ||
			strcmp(str_member(rec, "role"), f->role) != 0))
		return 0;
	if (f->ticket && (str_member(rec, "ticket") == NULL ||
			  strcmp(str_member(rec, "ticket"), f->ticket) != 0))
		return 0;
	if (f->event && strcmp(event, f->event) != 0)
		return 0;
	if (f->decision == 1 && strcmp(event, "permit") != 0 &&
	    strcmp(event, "grant") != 0 && strcmp(event, "issued") != 0)
		return 0;
	if (f->decision == 2 && strcmp(event, "deny") != 0 &&
	    strcmp(event, "error") != 0)
		return 0;
	if (f->since != INT64_MIN || f->until != INT64_MAX) {
		/* the record's span: its time, up to its expiration */
		if (ts == NULL || !parse_time(ts, &start))
			return 0;
		end = start;
		exp = str_member(rec, "expiration");
		if (exp != NULL && parse_time(exp, &end) && end < start)
			end = start;
		if (end < f->since || start >= f->until)
			return 0;
	}
	return 1;
}

/* A growing text buffer. */
struct sbuf {
	char *s;
	size_t len, cap;
	int oom;
};

static void
sb_add(struct sbuf *b, const char *p, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *s;

		while (cap < b->len + n + 1)
			cap *= 2;
		s = realloc(b->s, cap);
		if (s == NULL) {
			b->oom = 1;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* Length of the valid UTF-8 character at P and its code point, or 0. */
static size_t
utf8_char(const unsigned char *p, size_t left, uint32_t *cp)
{
	size_t n, i;
	uint32_t c;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		c = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		c = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		c = p[0] & 0x07;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10ffff ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* Characters that change how a terminal shows text: C1 controls,
 * zero-width and bidirectional formatting, BOM, line separators. */
static int
invisible(uint32_t c)
{
	return (c >= 0x80 && c <= 0x9f) || c == 0x61c ||
	       (c >= 0x200b && c <= 0x200f) || (c >= 0x2028 && c <= 0x202e) ||
	       (c >= 0x2060 && c <= 0x2069) || c == 0xfeff;
}

/*
 * S escaped for one terminal cell: a backslash as "\\", C0 controls and
 * DEL as "\xNN", bytes that are not UTF-8 as "\xNN", invisible
 * characters as "\u{XXXX}"; cut after CELL_MAX characters with "...".
 * *width receives the number of characters.
 */
static void
cell_escape(const char *s, struct sbuf *out, size_t *width)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), w = 0;
	char esc[16];

	while (n > 0) {
		uint32_t c = 0;
		size_t k = utf8_char(p, n, &c);

		if (w >= CELL_MAX) {
			sb_str(out, "...");
			w += 3;
			break;
		}
		if (k == 0 || c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", p[0]);
			sb_str(out, esc);
			w += 4;
			k = 1;
		} else if (c == '\\') {
			sb_str(out, "\\\\");
			w += 2;
		} else if (invisible(c)) {
			snprintf(esc, sizeof(esc), "\\u{%04x}", (unsigned)c);
			sb_str(out, esc);
			w += strlen(esc);
		} else {
			sb_add(out, (const char *)p, k);
			w++;
		}
		p += k;
		n -= k;
	}
	*width = w;
}

/* The text of a member for table and CSV: strings as they are, numbers
 * in decimal, arrays of strings joined with ",", null as NULL. */
static char *
member_text(const json_t *v)
{
	struct sbuf b = { 0 };
	char num[32];
	size_t i;
	json_t *e;

	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(num, sizeof(num), "%lld",
			 (long long)json_integer_value(v));
		return strdup(num);
	}
	if (json_is_array(v)) {
		sb_str(&b, "");
		json_array_foreach(v, i, e) {
			if (i > 0)
				sb_str(&b, ",");
			if (json_is_string(e))
				sb_str(&b, json_string_value(e));
		}
		if (b.oom) {
			free(b.s);
			return NULL;
		}
		return b.s;
	}
	return NULL;
}

struct column {
	const char *title;
	const char *member;	/* top level, or in "client" when client */
	int client;
};

static const struct column table_cols[] = {
	{ "TIME", "ts", 0 }, { "SEQ", "seq", 0 }, { "EVENT", "event", 0 },
	{ "USER", "user", 0 }, { "ROLE", "role", 0 },
	{ "TICKET", "ticket", 0 }, { "APPROVED BY", "approvers", 0 },
	{ "UNTIL", "expiration", 0 }, { "RULES", "rules", 0 },
};
#define N_TABLE (sizeof(table_cols) / sizeof(table_cols[0]))

static const struct column csv_cols[] = {
	{ "ts", "ts", 0 }, { "seq", "seq", 0 }, { "host", "host", 0 },
	{ "event", "event", 0 }, { "user", "user", 0 }, { "uid", "uid", 0 },
	{ "role", "role", 0 }, { "ticket", "ticket", 0 },
	{ "rules", "rules", 0 }, { "reason", "reason", 0 },
	{ "approvers", "approvers", 0 }, { "duration", "duration", 0 },
	{ "expiration", "expiration", 0 },
	{ "access_key_id", "access_key_id", 0 },
	{ "sts_request_id", "sts_request_id", 0 },
	{ "service", "service", 1 }, { "tty", "tty", 1 },
	{ "rhost", "rhost", 1 }, { "pid", "pid", 1 },
};
#define N_CSV (sizeof(csv_cols) / sizeof(csv_cols[0]))

static const json_t *
column_value(const json_t *rec, const struct column *c)
{
	if (c->client)
		return json_object_get(json_object_get(rec, "client"),
				       c->member);
	return json_object_get(rec, c->member);
}

/* One CSV field (RFC 4180): always quoted, quotes doubled; a leading
 * = + - @ TAB or CR (a spreadsheet formula) gets a ' in front. */
static void
csv_field(struct sbuf *b, const char *s)
{
	const char *q;

	sb_str(b, "\"");
	if (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' ||
	    s[0] == '\t' || s[0] == '\r')
		sb_str(b, "'");
	while ((q = strchr(s, '"')) != NULL) {
		sb_add(b, s, (size_t)(q - s));
		sb_str(b, "\"\"");
		s = q + 1;
	}
	sb_str(b, s);
	sb_str(b, "\"");
}

/* The table: rows are kept until the end, to align the columns. */
struct table {
	char **cells;		/* N_TABLE per row */
	size_t *widths;
	size_t rows, cap;
	size_t colw[N_TABLE];
};

static int
table_add(struct table *t, const json_t *rec)
{
	size_t i;

	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **c = realloc(t->cells, cap * N_TABLE * sizeof(*c));
		size_t *w;

		if (c == NULL)
			return -1;
		t->cells = c;
		w = realloc(t->widths, cap * N_TABLE * sizeof(*w));
		if (w == NULL)
			return -1;
		t->widths = w;
		t->cap = cap;
	}
	for (i = 0; i < N_TABLE; i++) {
		struct sbuf b = { 0 };
		char *text = member_text(column_value(rec, &table_cols[i]));
		size_t w = 0;

		if (text == NULL || text[0] == '\0') {
			sb_str(&b, "-");
			w = 1;
		} else {
			cell_escape(text, &b, &w);
		}
		free(text);
		if (b.oom) {
			free(b.s);
			while (i-- > 0)
				free(t->cells[t->rows * N_TABLE + i]);
			return -1;
		}
		t->cells[t->rows * N_TABLE + i] = b.s;
		t->widths[t->rows * N_TABLE + i] = w;
		if (w > t->colw[i])
			t->colw[i] = w;
	}
	t->rows++;
	return 0;
}

static void
table_print(struct table *t)
{
	size_t r, i;

	for (i = 0; i < N_TABLE; i++)
		if (strlen(table_cols[i].title) > t->colw[i])
			t->colw[i] = strlen(table_cols[i].title);
	for (i = 0; i < N_TABLE; i++)
		printf("%-*s%s", (int)t->colw[i], table_cols[i].title,
		       i + 1 < N_TABLE ? "  " : "\n");
	for (r = 0; r < t->rows; r++) {
		for (i = 0; i < N_TABLE; i++) {
			size_t k = r * N_TABLE + i;

			fputs(t->cells[k], stdout);
			if (i + 1 < N_TABLE)
				printf("%*s", (int)(t->colw[i] - t->widths[k] +
						    2), "");
		}
		putchar('\n');
	}
}

static void
table_free(struct table *t)
{
	for (size_t k = 0; k < t->rows * N_TABLE; k++)
		free(t->cells[k]);
	free(t->cells);
	free(t->widths);
}

static int
print_csv_row(const json_t *rec)
{
	struct sbuf b = { 0 };
	int rc;

	for (size_t i = 0; i < N_CSV; i++) {
		char *text = member_text(column_value(rec, &csv_cols[i]));

		if (i > 0)
			sb_str(&b, ",");
		csv_field(&b, text ? text : "");
		free(text);
	}
	sb_str(&b, "\r\n");
	rc = b.oom ? -1 : (fputs(b.s, stdout) == EOF ? -1 : 0);
	free(b.s);
	return rc;
}

/* Read FILE's records and emit those that match; 0 or an exit code. */
static int
show_file(const char *path, const struct filter *f, enum fmt fmt,
	  struct table *t)
{
	pg_audit_parsed r;
	unsigned long long lineno = 0;
	char err[256], where[600], *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *fp;
	int ex = 0;

	fp = fopen(path, "re");
	if (fp == NULL) {
		error_line(path, strerror(errno));
		return PG_EXIT_USAGE;
	}
	while (ex == 0 && (n = getline(&line, &cap, fp)) >= 0) {
		size_t len = (size_t)n;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		if (pg_auditchain_parse(line, len, &r, err, sizeof(err)) !=
		    PG_OK) {
			snprintf(where, sizeof(where), "%s:%llu", path, lineno);
			pg_sanitize_text(where, err, sizeof(err));
			fprintf(stderr, "%s: warning: %s: not an audit record, "
				"skipped (run pmpgate audit verify)\n", PROG,
				err);
			continue;
		}
		if (matches(r.doc, r.event, f)) {
			if (fmt == FMT_TABLE) {
				if (table_add(t, r.doc) != 0)
					ex = PG_EXIT_INTERNAL;
			} else if (fmt == FMT_CSV) {
				if (print_csv_row(r.doc) != 0)
					ex = PG_EXIT_INTERNAL;
			} else if (json_dumpf(r.doc, stdout, JSON_COMPACT |
					      JSON_SORT_KEYS |
					      JSON_ENSURE_ASCII) != 0 ||
				   putchar('\n') == EOF) {
				ex = PG_EXIT_INTERNAL;
			}
		}
		pg_audit_parsed_free(&r);
	}
	if (ex == 0 && ferror(fp)) {
		error_line(path, "read error");
		ex = PG_EXIT_USAGE;
	}
	free(line);
	fclose(fp);
	return ex;
}

static int
cmd_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "user", required_argument, NULL, 'u' },
		{ "role", required_argument, NULL, 'r' },
		{ "ticket", required_argument, NULL, 't' },
		{ "event", required_argument, NULL, 'e' },
		{ "since", required_argument, NULL, 'S' },
		{ "until", required_argument, NULL, 'U' },
		{ "decision", required_argument, NULL, 'd' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct filter f = { .since = INT64_MIN, .until = INT64_MAX };
	const char *deflt[] = { PG_DEFAULT_AUDIT };
	const char *const *files;
	struct table t = { 0 };
	enum fmt fmt = FMT_TABLE;
	size_t n_files, i;
	int c, ex = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":u:r:t:e:S:U:d:f:h", opts,
				NULL)) != -1) {
		switch (c) {
		case 'u': f.user = optarg; break;
		case 'r': f.role = optarg; break;
		case 't': f.ticket = optarg; break;
		case 'e':
			if (strcmp(optarg, "permit") && strcmp(optarg, "grant") &&
			    strcmp(optarg, "issued") && strcmp(optarg, "deny") &&
			    strcmp(optarg, "error") &&
			    strcmp(optarg, "recovered")) {
				usage_error("audit show: --event is permit, "
					    "grant, issued, deny, error or "
					    "recovered");
				return PG_EXIT_USAGE;
			}
			f.event = optarg;
			break;
		case 'S':
		case 'U':
			if (!parse_time(optarg, c == 'S' ? &f.since :
					&f.until)) {
				usage_error("audit show: --since/--until take "
					    "YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ "
					    "(or +HH:MM) or \"YYYY-MM-DD "
					    "HH:MM:SS\" (UTC)");
				return PG_EXIT_USAGE;
			}
			break;
		case 'd':
			if (strcmp(optarg, "allow") == 0)
				f.decision = 1;
			else if (strcmp(optarg, "deny") == 0)
				f.decision = 2;
			else {
				usage_error("audit show: --decision is allow "
					    "or deny");
				return PG_EXIT_USAGE;
			}
			break;
		case 'f':
			if (strcmp(optarg, "table") == 0)
				fmt = FMT_TABLE;
			else if (strcmp(optarg, "json") == 0)
				fmt = FMT_JSON;
			else if (strcmp(optarg, "csv") == 0)
				fmt = FMT_CSV;
			else {
				usage_error("audit show: --format is table, "
					    "json or csv");
				return PG_EXIT_USAGE;
			}
			break;
		case 'h':
			printf("Usage: %s audit show [--user U] [--role R] "
			       "[--ticket T] [--event E] [--since T] "
			       "[--until T] [--decision allow|deny] "
			       "[--format table|json|csv] [FILE...]\n", PROG);
			return PG_EXIT_OK;
		case ':':
			usage_error("audit show: an option is missing its "
				    "argument");
			return PG_EXIT_USAGE;
		default:
			usage_error("audit show: unknown option");
			return PG_EXIT_USAGE;
		}
	}
	files = optind < argc ? (const char *const *)argv + optind : deflt;
	n_files = optind < argc ? (size_t)(argc - optind) : 1;

	if (fmt == FMT_CSV) {
		struct sbuf b = { 0 };

		for (i = 0; i < N_CSV; i++) {
			if (i > 0)
				sb_str(&b, ",");
			sb_str(&b, csv_cols[i].title);
		}
		sb_str(&b, "\r\n");
		if (b.oom || fputs(b.s, stdout) == EOF)
			ex = PG_EXIT_INTERNAL;
		free(b.s);
	}
	for (i = 0; i < n_files && ex == 0; i++)
		ex = show_file(files[i], &f, fmt, &t);
	if (ex == 0 && fmt == FMT_TABLE)
		table_print(&t);
	table_free(&t);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "%s: error: cannot write to stdout\n", PROG);
		return PG_EXIT_INTERNAL;
	}
	if (ex == PG_EXIT_INTERNAL)
		fprintf(stderr, "%s: error: out of memory\n", PROG);
	return ex;
}

/* ---- keygen --------------------------------------------------------------- */

/* Create PATH (it must not exist) with MODE and write LEN bytes. */
static int
write_new_file(const char *path, mode_t mode, const char *data, size_t len,
	       int *created)
{
	size_t off = 0;
	int fd;

	*created = 0;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC |
		  O_NOCTTY, mode);
	if (fd < 0) {
		int e = errno;

		error_line(path, e == EEXIST ? "exists already (refusing to "
			   "overwrite a key)" : strerror(e));
		return e == EEXIST ? PG_EXIT_USAGE : PG_EXIT_INTERNAL;
	}
	*created = 1;
	if (fchmod(fd, mode) != 0)
		goto fail;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		error_line(path, strerror(errno));
		return PG_EXIT_INTERNAL;
	}
	return PG_EXIT_OK;
fail:
	{
		int e = errno;

		close(fd);
		error_line(path, strerror(e));
	}
	return PG_EXIT_INTERNAL;
}

static int
cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out-private", required_argument, NULL, 'p' },
		{ "out-public", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *priv_path = PG_DEFAULT_AUDIT_KEY;
	const char *pub_path = PG_DEFAULT_AUDIT_PUBKEY;
	pg_auditkey *key = NULL;
	char *priv = NULL, *pub = NULL, err[256], safe[2][512];
	size_t priv_len = 0, pub_len = 0;
	int c, ex, made_priv = 0, made_pub = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":p:P:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': priv_path = optarg; break;
		case 'P': pub_path = optarg; break;
		case 'h':
			printf("Usage: %s audit keygen [--out-private F] "
			       "[--out-public F]\n", PROG);
			return PG_EXIT_OK;
		case ':':
			usage_error("audit keygen: an option is missing its "
				    "argument");
			return PG_EXIT_USAGE;
		default:
			usage_error("audit keygen: unknown option");
			return PG_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		usage_error("audit keygen takes no arguments");
		return PG_EXIT_USAGE;
	}
	if (strcmp(priv_path, pub_path) == 0) {
		usage_error("audit keygen: the private and public key need "
			    "two files");
		return PG_EXIT_USAGE;
	}
	ex = PG_EXIT_INTERNAL;
	if (pg_auditkey_generate(&key, err, sizeof(err)) != PG_OK) {
		error_line("audit keygen", err);
		goto out;
	}
	if (pg_auditkey_pem(key, 1, &priv, &priv_len) != PG_OK ||
	    pg_auditkey_pem(key, 0, &pub, &pub_len) != PG_OK) {
		error_line("audit keygen", "cannot encode the key");
		goto out;
	}
	ex = write_new_file(priv_path, 0600, priv, priv_len, &made_priv);
	if (ex == PG_EXIT_OK)
		ex = write_new_file(pub_path, 0644, pub, pub_len, &made_pub);
	if (ex == PG_EXIT_OK) {
		pg_sanitize_text(priv_path, safe[0], sizeof(safe[0]));
		pg_sanitize_text(pub_path, safe[1], sizeof(safe[1]));
		printf("private key: %s (mode 0600: give it to the daemon's "
		       "user, [audit] signing_key)\npublic key:  %s (for "
		       "auditors: pmpgate audit verify --public-key)\n",
		       safe[0], safe[1]);
		if (fflush(stdout) != 0)
			ex = PG_EXIT_INTERNAL;
	}
out:
	if (ex != PG_EXIT_OK) {
		/* no half of a pair is left behind */
		if (made_priv)
			unlink(priv_path);
		if (made_pub)
			unlink(pub_path);
	}
	pg_auditkey_pem_free(priv, priv_len);
	pg_auditkey_pem_free(pub, pub_len);
	pg_auditkey_free(key);
	return ex;
}

int
pg_cmd_audit(int argc, char **argv)
{
	if (argc < 2) {
		usage_error("audit verify|show|keygen");
		return PG_EXIT_USAGE;
	}
	if (strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	if (strcmp(argv[1], "show") == 0)
		return cmd_show(argc - 1, argv + 1);
	if (strcmp(argv[1], "keygen") == 0)
		return cmd_keygen(argc - 1, argv + 1);
	usage_error("audit: the commands are verify, show and keygen");
	return PG_EXIT_USAGE;
}
