/*
 * config.c - load and check pmpgate.conf (see config.h and pmpgate.conf(5)).
 *
 * The file is opened once, its descriptor checked (pg_check_fd_perms),
 * read whole (at most PG_CONFIG_MAX_FILE bytes) and parsed line by line
 * from memory.  Every value is checked where it is read, so that an error
 * names its line; checks that need several keys (plaintext transports,
 * required keys, role cross-references, the ticket field map) run after
 * the whole file is read and name the line of the key they are about, or
 * line 0 for a key that is missing.  Nothing is returned unless every
 * check passed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ldap.h>

#include "secret.h"

#define PG_CONFIG_MAX_LINE 4096
#define PG_CONFIG_MAX_FILE (1024 * 1024)
#define PG_ROLE_NAME_MAX 64
#define PG_MAX_APPROVALS 32
#define PG_MAX_CATEGORIES 64	/* min_approvals.CATEGORY keys per role */

/* The config with what only the loader and pg_config_free need. */
struct cfg_priv {
	pg_config pub;		/* first: a pg_config * is a cfg_priv * */
	int re_compiled;	/* tickets.id_re holds a compiled regex */
};

enum sect { S_NONE = -1, S_DAEMON, S_DIRECTORY, S_TICKETS, S_AWS, S_ROLE,
	    S_SEPARATION, S_LEDGER, S_AUDIT, S_COUNT };

static const char *const sect_names[S_COUNT] = {
	"daemon", "directory", "tickets", "aws", "role", "separation",
	"ledger", "audit",
};

static const char *const field_names[PG_FIELD_COUNT] = {
	[PG_FIELD_STATE] = "state",
	[PG_FIELD_REQUESTED_FOR] = "requested_for",
	[PG_FIELD_REQUESTER] = "requester",
	[PG_FIELD_APPROVERS] = "approvers",
	[PG_FIELD_ROLE] = "role",
	[PG_FIELD_CATEGORY] = "category",
	[PG_FIELD_WINDOW_START] = "window_start",
	[PG_FIELD_WINDOW_END] = "window_end",
};

/* Field map presets (pmpgate.conf(5), "Ticket providers"). */
struct preset {
	const char *field[PG_FIELD_COUNT];
	const char *approved_states;
};

static const struct preset preset_servicenow = {
	.field = {
		[PG_FIELD_STATE] = "/result/*/approval",
		[PG_FIELD_REQUESTED_FOR] = "/result/*/requested_for",
		[PG_FIELD_REQUESTER] = "/result/*/opened_by",
		[PG_FIELD_APPROVERS] = "/result/*/u_approvers/*",
		[PG_FIELD_ROLE] = "/result/*/u_aws_role",
		[PG_FIELD_CATEGORY] = "/result/*/category",
		[PG_FIELD_WINDOW_START] = "/result/*/start_date",
		[PG_FIELD_WINDOW_END] = "/result/*/end_date",
	},
	.approved_states = "approved",
};

static const struct preset preset_jira = {
	.field = {
		[PG_FIELD_STATE] = "/fields/status/name",
		[PG_FIELD_REQUESTED_FOR] = "/fields/customfield_10100/name",
		[PG_FIELD_REQUESTER] = "/fields/reporter/name",
		[PG_FIELD_APPROVERS] = "/fields/customfield_10101/*/name",
		[PG_FIELD_ROLE] = "/fields/customfield_10102/value",
		[PG_FIELD_CATEGORY] = "/fields/customfield_10103/value",
		[PG_FIELD_WINDOW_START] = "/fields/customfield_10104",
		[PG_FIELD_WINDOW_END] = "/fields/customfield_10105",
	},
	.approved_states = "Approved",
};

struct seen_key {
	char *key;
	unsigned line;
};

/* Parser state; everything here is freed by parser_free. */
struct parser {
	const char *path;
	char *err;
	size_t errlen;
	struct cfg_priv *priv;
	pg_config *cfg;
	unsigned line;			/* current line, 1-based */

	enum sect sect;
	pg_role_cfg *role;		/* current [role NAME] */
	unsigned sect_line[S_COUNT];	/* 0 = not seen (roles: unused) */

	/* Every key given, as "[section] key" with its line. */
	struct seen_key *seen;
	size_t n_seen, cap_seen;

	/* Values settled after the whole file is read. */
	char *field_override[PG_FIELD_COUNT];
	unsigned char field_none[PG_FIELD_COUNT];	/* field.X = none */
	int auth;			/* -1 = not given */
	int creds_set;
};

__attribute__((format(printf, 3, 4)))
static pg_err perr(struct parser *p, unsigned line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->errlen == 0)
		return PG_ECONFIG;
	n = snprintf(p->err, p->errlen, "%s:%u: ", p->path, line);
	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return PG_ECONFIG;
}

static pg_err pnomem(struct parser *p)
{
	snprintf(p->err, p->errlen, "%s:%u: out of memory", p->path, p->line);
	return PG_ENOMEM;
}

/* ---- small checks ------------------------------------------------------ */

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || is_digit(c);
}

static int is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* Role names: [a-z0-9-]{1,64}. */
static int valid_role_name(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++)
		if (!is_lower_alnum(s[n]) && s[n] != '-')
			return 0;
	return n >= 1 && n <= PG_ROLE_NAME_MAX;
}

/* A category in "min_approvals.CATEGORY": [A-Za-z0-9_.-]+. */
static int valid_category(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!is_alnum(*s) && *s != '_' && *s != '.' && *s != '-')
			return 0;
	return 1;
}

/*
 * JSON Pointer syntax (RFC 6901): "" or "/..." where '~' is only ever
 * followed by '0' or '1'.  '*' as a whole token walks an array.
 */
static int valid_json_pointer(const char *s)
{
	if (*s == '\0')
		return 1;
	if (*s != '/')
		return 0;
	for (; *s != '\0'; s++)
		if (*s == '~' && s[1] != '0' && s[1] != '1')
			return 0;
	return 1;
}

/* arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,64} */
static int valid_role_arn(const char *s)
{
	size_t n;

	if (strncmp(s, "arn:aws", 7) != 0)
		return 0;
	s += 7;
	while ((*s >= 'a' && *s <= 'z') || *s == '-')
		s++;
	if (strncmp(s, ":iam::", 6) != 0)
		return 0;
	s += 6;
	for (n = 0; n < 12; n++, s++)
		if (!is_digit(*s))
			return 0;
	if (strncmp(s, ":role/", 6) != 0)
		return 0;
	s += 6;
	for (n = 0; s[n] != '\0'; n++)
		if (!is_alnum(s[n]) && strchr("_+=,.@/-", s[n]) == NULL)
			return 0;
	return n >= 1 && n <= 64;
}

/* The principal of the base credentials, as a trust policy names it:
 * arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[\w+=,.@/-]{1,512} or
 * arn:aws[a-z-]*:iam::[0-9]{12}:root. */
static int valid_principal_arn(const char *s)
{
	size_t n;

	if (strncmp(s, "arn:aws", 7) != 0)
		return 0;
	s += 7;
	while ((*s >= 'a' && *s <= 'z') || *s == '-')
		s++;
	if (strncmp(s, ":iam::", 6) != 0)
		return 0;
	s += 6;
	for (n = 0; n < 12; n++, s++)
		if (!is_digit(*s))
			return 0;
	if (strcmp(s, ":root") == 0)
		return 1;
	if (strncmp(s, ":role/", 6) != 0 && strncmp(s, ":user/", 6) != 0)
		return 0;
	s += 6;
	for (n = 0; s[n] != '\0'; n++)
		if (!is_alnum(s[n]) && strchr("_+=,.@/-", s[n]) == NULL)
			return 0;
	return n >= 1 && n <= 512 && s[n - 1] != '/';
}

/* STS ExternalId: 2..1224 characters of [\w+=,.@:/-]. */
static int valid_external_id(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (!is_alnum(s[n]) && strchr("_+=,.@:/-", s[n]) == NULL)
			return 0;
	return n >= 2 && n <= 1224;
}

/* A local user or group name: [A-Za-z0-9._@-]{1,256}, not "-..." */
static int valid_account_name(const char *s)
{
	size_t n;

	if (*s == '-')
		return 0;
	for (n = 0; s[n] != '\0'; n++)
		if (!is_alnum(s[n]) && strchr("._@-", s[n]) == NULL)
			return 0;
	return n >= 1 && n <= 256;
}

/* An LDAP attribute description: a name or a numeric OID. */
static int valid_ldap_attr(const char *s)
{
	const char *q;

	if (is_digit(*s)) {
		for (q = s; *q != '\0'; q++) {
			if (is_digit(*q))
				continue;
			if (*q == '.' && is_digit(q[1]) && q > s)
				continue;
			return 0;
		}
		return 1;
	}
	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
		return 0;
	for (q = s; *q != '\0'; q++)
		if (!is_alnum(*q) && *q != '-')
			return 0;
	return 1;
}

/* An AWS profile name in a shared-credentials file. */
static int valid_profile(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!is_alnum(*s) && strchr("._@+-", *s) == NULL)
			return 0;
	return 1;
}

static int has_blank(const char *s)
{
	for (; *s != '\0'; s++)
		if (is_blank(*s))
			return 1;
	return 0;
}

/*
 * An absolute http:// or https:// URL with a host and no blanks.  Sets
 * *https.  The scheme is compared case-insensitively.
 */
static int valid_url(const char *s, int *https)
{
	const char *rest;

	if (has_blank(s))
		return 0;
	if (strncasecmp(s, "https://", 8) == 0) {
		*https = 1;
		rest = s + 8;
	} else if (strncasecmp(s, "http://", 7) == 0) {
		*https = 0;
		rest = s + 7;
	} else {
		return 0;
	}
	return *rest != '\0' && *rest != '/' && *rest != '?' && *rest != '#';
}

/* A DN as RFC 4514 has it (parsed by libldap). */
static int valid_dn(const char *s)
{
	LDAPDN dn = NULL;
	int rc = ldap_str2dn(s, &dn, LDAP_DN_FORMAT_LDAPV3);

	if (dn != NULL)
		ldap_dnfree(dn);
	return rc == LDAP_SUCCESS && *s != '\0';
}

/*
 * An LDAP filter template: parenthesised, balanced, with "%u" at least
 * once and no other '%' sequence.
 */
static int valid_user_filter(const char *s, const char **why)
{
	int depth = 0, has_u = 0;
	const char *q;

	if (*s != '(') {
		*why = "must start with '('";
		return 0;
	}
	for (q = s; *q != '\0'; q++) {
		if (*q == '(') {
			depth++;
		} else if (*q == ')') {
			if (--depth < 0) {
				*why = "has unbalanced parentheses";
				return 0;
			}
			if (depth == 0 && q[1] != '\0') {
				*why = "has text after the closing ')'";
				return 0;
			}
		} else if (*q == '%') {
			if (q[1] != 'u') {
				*why = "may contain no '%' sequence but %u";
				return 0;
			}
			has_u = 1;
			q++;
		}
	}
	if (depth != 0) {
		*why = "has unbalanced parentheses";
		return 0;
	}
	if (!has_u) {
		*why = "must contain %u (the user name)";
		return 0;
	}
	return 1;
}

/*
 * Valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF) and no
 * control characters but TAB.  Returns the offset of the first bad byte
 * or len.
 */
static size_t check_text(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t need, k;
		unsigned long cp;

		if (c < 0x80) {
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return i;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return i;
		}
		if (len - i <= need)
			return i;
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		/* C1 controls (U+0080..U+009F) are controls too. */
		if (cp >= 0x80 && cp <= 0x9f)
			return i;
		i += need + 1;
	}
	return len;
}

/* Decimal digits only, no sign; PG_EINVAL on junk or overflow. */
static pg_err parse_uint(const char *s, const char **end, uint64_t max,
			 uint64_t *out)
{
	uint64_t v = 0;

	if (!is_digit(*s))
		return PG_EINVAL;
	for (; is_digit(*s); s++) {
		uint64_t d = (uint64_t)(*s - '0');

		if (v > (max - d) / 10)
			return PG_EINVAL;
		v = v * 10 + d;
	}
	*end = s;
	*out = v;
	return PG_OK;
}

pg_err pg_parse_duration(const char *s, int64_t *seconds)
{
	const char *end;
	uint64_t v, mul = 1;

	if (s == NULL || seconds == NULL)
		return PG_EINVAL;
	if (parse_uint(s, &end, (uint64_t)INT64_MAX, &v) != PG_OK)
		return PG_EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 's':
		break;
	case 'm':
		mul = 60;
		break;
	case 'h':
		mul = 3600;
		break;
	case 'd':
		mul = 86400;
		break;
	default:
		return PG_EINVAL;
	}
	if (*end != '\0' && end[1] != '\0')
		return PG_EINVAL;
	if (v > (uint64_t)INT64_MAX / mul)
		return PG_EINVAL;
	*seconds = (int64_t)(v * mul);
	return PG_OK;
}

/* A size: digits with an optional k/K (KiB) or M (MiB) suffix. */
static pg_err parse_size(const char *s, uint64_t *out)
{
	const char *end;
	uint64_t v, mul = 1;

	if (parse_uint(s, &end, UINT64_MAX, &v) != PG_OK)
		return PG_EINVAL;
	if (*end == 'k' || *end == 'K')
		mul = 1024;
	else if (*end == 'M')
		mul = 1024 * 1024;
	else if (*end != '\0')
		return PG_EINVAL;
	if (*end != '\0' && end[1] != '\0')
		return PG_EINVAL;
	if (v > UINT64_MAX / mul)
		return PG_EINVAL;
	*out = v * mul;
	return PG_OK;
}

/* ---- lists ------------------------------------------------------------- */

/* Give an empty list a NULL-terminated (empty) vector. */
static pg_err list_ensure(pg_list *l)
{
	if (l->v != NULL)
		return PG_OK;
	l->v = calloc(1, sizeof(*l->v));
	l->n = 0;
	return l->v == NULL ? PG_ENOMEM : PG_OK;
}

static void list_free(pg_list *l)
{
	size_t i;

	if (l->v != NULL) {
		for (i = 0; i < l->n; i++)
			free(l->v[i]);
		free(l->v);
	}
	l->v = NULL;
	l->n = 0;
}

/* Split S on blanks into a new list (replacing *L). */
static pg_err list_split(const char *s, pg_list *l)
{
	pg_list nl = { NULL, 0 };
	size_t cap = 0;

	while (*s != '\0') {
		size_t n;

		while (is_blank(*s))
			s++;
		if (*s == '\0')
			break;
		for (n = 0; s[n] != '\0' && !is_blank(s[n]); n++)
			;
		if (nl.n + 2 > cap) {
			size_t ncap = cap ? cap * 2 : 4;
			char **nv = realloc(nl.v, ncap * sizeof(*nv));

			if (nv == NULL)
				goto fail;
			nl.v = nv;
			cap = ncap;
		}
		nl.v[nl.n] = strndup(s, n);
		if (nl.v[nl.n] == NULL)
			goto fail;
		nl.n++;
		nl.v[nl.n] = NULL;
		s += n;
	}
	list_free(l);
	*l = nl;
	return PG_OK;
fail:
	list_free(&nl);
	return PG_ENOMEM;
}

/* ---- keys -------------------------------------------------------------- */

enum ktype {
	K_STR,		/* any non-empty text */
	K_DN,		/* an LDAP DN */
	K_NAME,		/* a local account or group name */
	K_PATH,		/* an absolute path */
	K_BOOL,		/* yes | no -> int */
	K_INT,		/* decimal in [min, max] -> int */
	K_DUR,		/* duration in [min, max] seconds -> int64_t seconds */
	K_DUR_MS,	/* duration in [min, max] seconds -> int64_t ms */
	K_SIZE,		/* size in [min, max] bytes -> size_t */
	K_LIST,		/* blank-separated words -> pg_list */
	K_FN,		/* its own handler */
};

struct keydef;
typedef pg_err (*key_fn)(struct parser *p, const struct keydef *k,
			 void *base, const char *val);

struct keydef {
	const char *name;
	enum ktype type;
	size_t off;		/* into pg_config, or pg_role_cfg for roles */
	int64_t min, max;
	key_fn fn;
};

#define FIELD(base, off) ((void *)((char *)(base) + (off)))

static pg_err set_str(struct parser *p, void *base, size_t off,
		      const char *val)
{
	char **dst = FIELD(base, off);
	char *copy = strdup(val);

	if (copy == NULL)
		return pnomem(p);
	free(*dst);
	*dst = copy;
	return PG_OK;
}

static pg_err fn_uri(struct parser *p, const struct keydef *k, void *base,
		     const char *val)
{
	pg_list *l = FIELD(base, k->off);
	size_t i;

	if (list_split(val, l) != PG_OK)
		return pnomem(p);
	for (i = 0; i < l->n; i++) {
		const char *u = l->v[i];
		LDAPURLDesc *d = NULL;
		int ok;

		if (strncasecmp(u, "ldaps://", 8) != 0 &&
		    strncasecmp(u, "ldap://", 7) != 0)
			return perr(p, p->line,
				    "[directory] uri: '%s' is not an ldap:// or ldaps:// URI",
				    u);
		ok = ldap_url_parse(u, &d) == LDAP_URL_SUCCESS && d != NULL &&
		     d->lud_host != NULL && d->lud_host[0] != '\0';
		if (d != NULL)
			ldap_free_urldesc(d);
		if (!ok)
			return perr(p, p->line,
				    "[directory] uri: '%s' is not a valid URI with a host",
				    u);
	}
	return PG_OK;
}

static pg_err fn_user_filter(struct parser *p, const struct keydef *k,
			     void *base, const char *val)
{
	const char *why = NULL;

	if (!valid_user_filter(val, &why))
		return perr(p, p->line, "[directory] user_filter %s", why);
	return set_str(p, base, k->off, val);
}

/* A value one of a fixed set of words may take, and what it means. */
struct choice {
	const char *word;
	int value;
};

/*
 * VAL as one of the N words of C (compared ignoring case when FOLD): its
 * value in *out.  Anything else is an error naming every word:
 * "WHAT must be A, B or C, not 'VAL'".
 */
static pg_err pick(struct parser *p, const char *what,
		   const struct choice *c, size_t n, int fold, const char *val,
		   int *out)
{
	char words[256] = "";
	size_t i, len = 0;

	for (i = 0; i < n; i++) {
		if ((fold ? strcasecmp(val, c[i].word) :
			    strcmp(val, c[i].word)) == 0) {
			*out = c[i].value;
			return PG_OK;
		}
	}
	for (i = 0; i < n && len < sizeof(words); i++) {
		int w = snprintf(words + len, sizeof(words) - len, "%s%s",
				 i == 0 ? "" : i + 1 == n ? " or " : ", ",
				 c[i].word);

		if (w < 0)
			break;
		len += (size_t)w;
	}
	return perr(p, p->line, "%s must be %s, not '%s'", what, words, val);
}

#define NCHOICES(c) (sizeof(c) / sizeof((c)[0]))

static pg_err fn_membership(struct parser *p, const struct keydef *k,
			    void *base, const char *val)
{
	static const struct choice kinds[] = {
		{ "member", PG_MEMBER_MEMBER },
		{ "uniqueMember", PG_MEMBER_UNIQUEMEMBER },
		{ "memberUid", PG_MEMBER_MEMBERUID },
		{ "memberOf", PG_MEMBER_MEMBEROF },
	};
	pg_membership_kind *dst = FIELD(base, k->off);
	int v;
	pg_err e;

	e = pick(p, "[directory] group_membership", kinds, NCHOICES(kinds), 1,
		 val, &v);
	if (e == PG_OK)
		*dst = (pg_membership_kind)v;
	return e;
}

static pg_err fn_ldap_attr(struct parser *p, const struct keydef *k,
			   void *base, const char *val)
{
	if (!valid_ldap_attr(val))
		return perr(p, p->line,
			    "[directory] %s: '%s' is not an LDAP attribute name",
			    k->name, val);
	return set_str(p, base, k->off, val);
}

static pg_err fn_provider(struct parser *p, const struct keydef *k,
			  void *base, const char *val)
{
	static const struct choice providers[] = {
		{ "servicenow", PG_TICKETS_SERVICENOW },
		{ "jira", PG_TICKETS_JIRA },
		{ "generic", PG_TICKETS_GENERIC },
	};
	pg_tickets_provider *dst = FIELD(base, k->off);
	int v;
	pg_err e;

	e = pick(p, "[tickets] provider", providers, NCHOICES(providers), 0,
		 val, &v);
	if (e == PG_OK)
		*dst = (pg_tickets_provider)v;
	return e;
}

static pg_err fn_tickets_url(struct parser *p, const struct keydef *k,
			     void *base, const char *val)
{
	int https;

	if (!valid_url(val, &https))
		return perr(p, p->line,
			    "[tickets] url must be an https:// URL with a host");
	if (strstr(val, "{ticket}") == NULL)
		return perr(p, p->line,
			    "[tickets] url must contain {ticket} (where the ticket id goes)");
	return set_str(p, base, k->off, val);
}

/* Longest id_pattern and largest {m,n} bound accepted. */
#define ID_PATTERN_MAX 256
#define ID_PATTERN_BOUND_MAX 255

/*
 * Why PAT is too costly to compile, or NULL.  glibc's regcomp copies the
 * expression tree for every repetition, so a quantifier on a quantified
 * expression ("a++", "(a+)+", "(a{9}){9}") and large bounds ("a{1000}")
 * take memory exponential or linear in what the pattern says (and nested
 * quantifiers are the classic catastrophic-backtracking shape); ticket ids
 * need neither.
 */
static const char *
id_pattern_cost(const char *pat)
{
	unsigned char inner[ID_PATTERN_MAX + 1];	/* per open group */
	int depth = 0, quantified = 0, atom_has_quant = 0, in_bracket = 0;
	const char *c;

	if (strlen(pat) > ID_PATTERN_MAX)
		return "is longer than 256 characters";
	inner[0] = 0;
	for (c = pat; *c != '\0'; c++) {
		if (in_bracket) {
			if (*c == ']' && c[-1] != '[' &&
			    !(c[-1] == '^' && c[-2] == '['))
				in_bracket = 0;
			continue;
		}
		if (*c == '*' || *c == '+' || *c == '?' || *c == '{') {
			if (quantified || atom_has_quant)
				return "nests quantifiers (e.g. 'a++' or "
				       "'(a+)+'), which ticket ids do not need";
			if (*c == '{') {
				unsigned long m = 0;

				for (c++; *c != '\0' && *c != '}'; c++) {
					if (*c >= '0' && *c <= '9') {
						m = m * 10 + (unsigned long)
						    (*c - '0');
						if (m > ID_PATTERN_BOUND_MAX)
							return "has a repetition "
							       "bound above 255";
					} else if (*c == ',') {
						m = 0;
					}
				}
				if (*c == '\0')
					break;	/* regcomp reports it */
			}
			inner[depth] = 1;
			quantified = 1;
			continue;
		}
		quantified = 0;
		atom_has_quant = 0;
		if (*c == '\\' && c[1] != '\0') {
			c++;
		} else if (*c == '[') {
			in_bracket = 1;
		} else if (*c == '(') {
			inner[++depth] = 0;
		} else if (*c == ')' && depth > 0) {
			atom_has_quant = inner[depth--];
			if (atom_has_quant)
				inner[depth] = 1;
		} else if (*c == '|') {
			continue;
		}
	}
	return NULL;
}

static pg_err fn_id_pattern(struct parser *p, const struct keydef *k,
			    void *base, const char *val)
{
	pg_config *cfg = base;
	size_t n = strlen(val) + 5;
	const char *cost = id_pattern_cost(val);
	char *anchored;
	char msg[256];
	int rc;

	if (cost != NULL)
		return perr(p, p->line, "[tickets] id_pattern %s", cost);
	anchored = malloc(n);
	if (anchored == NULL)
		return pnomem(p);
	/*
	 * The pattern must compile on its own first: otherwise "a)|(b"
	 * would become "^(a)|(b)$" and escape the anchors.
	 */
	rc = regcomp(&cfg->tickets.id_re, val, REG_EXTENDED | REG_NOSUB);
	if (rc == 0) {
		regfree(&cfg->tickets.id_re);
		snprintf(anchored, n, "^(%s)$", val);
		rc = regcomp(&cfg->tickets.id_re, anchored,
			     REG_EXTENDED | REG_NOSUB);
	}
	free(anchored);
	if (rc != 0) {
		regerror(rc, &cfg->tickets.id_re, msg, sizeof(msg));
		return perr(p, p->line,
			    "[tickets] id_pattern is not a valid extended regular expression: %s",
			    msg);
	}
	p->priv->re_compiled = 1;
	return set_str(p, base, k->off, val);
}

static pg_err fn_auth(struct parser *p, const struct keydef *k, void *base,
		      const char *val)
{
	static const struct choice kinds[] = {
		{ "bearer", PG_AUTH_BEARER },
		{ "basic", PG_AUTH_BASIC },
		{ "none", PG_AUTH_NONE },
	};

	(void)k;
	(void)base;
	return pick(p, "[tickets] auth", kinds, NCHOICES(kinds), 0, val,
		    &p->auth);
}

static pg_err fn_sts_endpoint(struct parser *p, const struct keydef *k,
			      void *base, const char *val)
{
	int https;

	if (!valid_url(val, &https))
		return perr(p, p->line,
			    "[aws] sts_endpoint must be an https:// URL with a host");
	return set_str(p, base, k->off, val);
}

static pg_err fn_region(struct parser *p, const struct keydef *k,
			void *base, const char *val)
{
	const char *q;

	for (q = val; *q != '\0'; q++)
		if (!is_lower_alnum(*q) && *q != '-')
			return perr(p, p->line,
				    "[aws] region '%s' is not a region name ([a-z0-9-])",
				    val);
	if (q - val > 64)
		return perr(p, p->line, "[aws] region is too long");
	return set_str(p, base, k->off, val);
}

static pg_err fn_credentials(struct parser *p, const struct keydef *k,
			     void *base, const char *val)
{
	pg_config *cfg = base;

	(void)k;
	p->creds_set = 1;
	if (strcmp(val, "env") == 0) {
		cfg->aws.credentials = PG_CREDS_ENV;
	} else if (strcmp(val, "instance-profile") == 0) {
		cfg->aws.credentials = PG_CREDS_INSTANCE_PROFILE;
	} else if (strncmp(val, "file:", 5) == 0) {
		if (val[5] != '/')
			return perr(p, p->line,
				    "[aws] credentials = file:PATH needs an absolute path");
		cfg->aws.credentials = PG_CREDS_FILE;
		return set_str(p, base, offsetof(pg_config, aws.credentials_path),
			       val + 5);
	} else {
		return perr(p, p->line,
			    "[aws] credentials must be file:PATH, env or instance-profile, not '%s'",
			    val);
	}
	return PG_OK;
}

static pg_err fn_profile(struct parser *p, const struct keydef *k,
			 void *base, const char *val)
{
	if (!valid_profile(val))
		return perr(p, p->line,
			    "[aws] profile '%s' is not a profile name", val);
	return set_str(p, base, k->off, val);
}

/*
 * The instance metadata service: http://HOST[:PORT] and nothing more.
 * HOST is a name or IPv4 address ([A-Za-z0-9.-], 1 to 253) or a bracketed
 * IPv6 address ([0-9A-Fa-f:.]); PORT is 1 to 65535.  Plain HTTP is how
 * IMDS is served (link-local); no user, path, query or fragment.
 */
static int valid_metadata_endpoint(const char *s)
{
	const char *h, *q;
	unsigned long port = 0;
	size_t n = 0;

	if (strncmp(s, "http://", 7) != 0)
		return 0;
	h = s + 7;
	if (*h == '[') {
		for (q = h + 1; is_digit(*q) || (*q >= 'a' && *q <= 'f') ||
				(*q >= 'A' && *q <= 'F') || *q == ':' ||
				*q == '.'; q++)
			n++;
		if (*q != ']' || n < 2 || n > 45 ||
		    memchr(h + 1, ':', n) == NULL)
			return 0;
		q++;
	} else {
		for (q = h; is_alnum(*q) || *q == '.' || *q == '-'; q++)
			n++;
		if (n == 0 || n > 253 || !is_alnum(*h))
			return 0;
	}
	if (*q == ':') {
		n = 0;
		for (q++; is_digit(*q) && n < 6; q++, n++)
			port = port * 10 + (unsigned long)(*q - '0');
		if (n == 0 || port == 0 || port > 65535)
			return 0;
	}
	return *q == '\0';
}

static pg_err fn_metadata_endpoint(struct parser *p, const struct keydef *k,
				   void *base, const char *val)
{
	if (!valid_metadata_endpoint(val))
		return perr(p, p->line,
			    "[aws] metadata_endpoint must be http://HOST[:PORT] (e.g. http://169.254.169.254 or http://[fd00:ec2::254]), without user, path or query, not '%s'",
			    val);
	return set_str(p, base, k->off, val);
}

static pg_err fn_base_principal(struct parser *p, const struct keydef *k,
				void *base, const char *val)
{
	if (!valid_principal_arn(val))
		return perr(p, p->line,
			    "[aws] base_principal '%s' is not an IAM role, user or account root ARN (arn:aws:iam::ACCOUNT:role/NAME)",
			    val);
	return set_str(p, base, k->off, val);
}

static pg_err fn_role_arn(struct parser *p, const struct keydef *k,
			  void *base, const char *val)
{
	if (!valid_role_arn(val))
		return perr(p, p->line,
			    "[role %s] role_arn '%s' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
			    p->role->name, val);
	return set_str(p, base, k->off, val);
}

static pg_err fn_conflicts(struct parser *p, const struct keydef *k,
			   void *base, const char *val)
{
	pg_list *l = FIELD(base, k->off);
	size_t i, j;

	if (list_split(val, l) != PG_OK)
		return pnomem(p);
	for (i = 0; i < l->n; i++) {
		if (!valid_role_name(l->v[i]))
			return perr(p, p->line,
				    "[role %s] conflicts: '%s' is not a role name",
				    p->role->name, l->v[i]);
		for (j = 0; j < i; j++)
			if (strcmp(l->v[i], l->v[j]) == 0)
				return perr(p, p->line,
					    "[role %s] conflicts names '%s' twice",
					    p->role->name, l->v[i]);
	}
	return PG_OK;
}

static pg_err fn_external_id(struct parser *p, const struct keydef *k,
			     void *base, const char *val)
{
	if (!valid_external_id(val))
		return perr(p, p->line,
			    "[role %s] external_id must be 2 to 1224 characters of [A-Za-z0-9_+=,.@:/-]",
			    p->role->name);
	return set_str(p, base, k->off, val);
}

static pg_err fn_backend(struct parser *p, const struct keydef *k,
			 void *base, const char *val)
{
	static const struct choice kinds[] = { { "file", 0 }, { "etcd", 1 } };
	int v;
	pg_err e;

	e = pick(p, "[ledger] backend", kinds, NCHOICES(kinds), 0, val, &v);
	return e == PG_OK ? set_str(p, base, k->off, val) : e;
}

static pg_err fn_endpoints(struct parser *p, const struct keydef *k,
			   void *base, const char *val)
{
	pg_list *l = FIELD(base, k->off);
	size_t i;
	int https;

	if (list_split(val, l) != PG_OK)
		return pnomem(p);
	for (i = 0; i < l->n; i++) {
		const char *u = l->v[i], *rest;
		size_t n;

		if (!valid_url(u, &https))
			return perr(p, p->line,
				    "[ledger] endpoints: '%s' is not an http:// or https:// URL",
				    u);
		/* scheme://host[:port][/]: the client appends /v3/... */
		rest = u + (https ? 8 : 7);
		n = strcspn(rest, "/?#@");
		if (rest[n] == '@' || (rest[n] != '\0' &&
				       strcmp(rest + n, "/") != 0))
			return perr(p, p->line,
				    "[ledger] endpoints: '%s' must be scheme://host[:port], without user, path or query",
				    u);
	}
	return PG_OK;
}

/* An etcd key prefix: 1 to 128 printable ASCII characters, no blanks,
 * ending in '/' (so that no installation's keys nest in another's). */
static pg_err fn_prefix(struct parser *p, const struct keydef *k,
			void *base, const char *val)
{
	size_t i, n = strlen(val);

	for (i = 0; i < n; i++)
		if ((unsigned char)val[i] < 0x21 || (unsigned char)val[i] > 0x7e)
			break;
	if (n == 0 || n > 128 || i != n || val[n - 1] != '/')
		return perr(p, p->line,
			    "[ledger] prefix must be 1 to 128 printable characters without blanks, ending in '/', not '%s'",
			    val);
	return set_str(p, base, k->off, val);
}

#define CO(m) offsetof(pg_config, m)
#define RO(m) offsetof(pg_role_cfg, m)
#define DUR_MAX_TIMEOUT 3600

static const struct keydef keys_daemon[] = {
	{ "socket", K_PATH, CO(daemon.socket), 0, 0, NULL },
	{ "user", K_NAME, CO(daemon.user), 0, 0, NULL },
	{ "admin_group", K_NAME, CO(daemon.admin_group), 0, 0, NULL },
	{ "workers", K_INT, CO(daemon.workers), 1, 64, NULL },
	{ "deadline", K_DUR_MS, CO(daemon.deadline_ms), 1, DUR_MAX_TIMEOUT, NULL },
	{ "max_per_uid", K_INT, CO(daemon.max_per_uid), 1, 1024, NULL },
	{ NULL, K_STR, 0, 0, 0, NULL },
};

static const struct keydef keys_directory[] = {
	{ "uri", K_FN, CO(directory.uri), 0, 0, fn_uri },
	{ "base", K_DN, CO(directory.base), 0, 0, NULL },
	{ "bind_dn", K_DN, CO(directory.bind_dn), 0, 0, NULL },
	{ "bind_password_file", K_PATH, CO(directory.bind_password_file), 0, 0, NULL },
	{ "ca_file", K_PATH, CO(directory.ca_file), 0, 0, NULL },
	{ "starttls", K_BOOL, CO(directory.starttls), 0, 0, NULL },
	{ "allow_plaintext", K_BOOL, CO(directory.allow_plaintext), 0, 0, NULL },
	{ "user_filter", K_FN, CO(directory.user_filter), 0, 0, fn_user_filter },
	{ "group_membership", K_FN, CO(directory.membership), 0, 0, fn_membership },
	{ "nested_groups", K_BOOL, CO(directory.nested_groups), 0, 0, NULL },
	{ "max_depth", K_INT, CO(directory.max_depth), 1, 64, NULL },
	{ "ticket_user_attr", K_FN, CO(directory.ticket_user_attr), 0, 0, fn_ldap_attr },
	{ "timeout", K_DUR_MS, CO(directory.timeout_ms), 1, DUR_MAX_TIMEOUT, NULL },
	{ NULL, K_STR, 0, 0, 0, NULL },
};

static const struct keydef keys_tickets[] = {
	{ "provider", K_FN, CO(tickets.provider), 0, 0, fn_provider },
	{ "url", K_FN, CO(tickets.url), 0, 0, fn_tickets_url },
	{ "id_pattern", K_FN, CO(tickets.id_pattern), 0, 0, fn_id_pattern },
	{ "token_file", K_PATH, CO(tickets.token_file), 0, 0, NULL },
	{ "auth", K_FN, 0, 0, 0, fn_auth },
	{ "ca_file", K_PATH, CO(tickets.ca_file), 0, 0, NULL },
	{ "allow_plaintext", K_BOOL, CO(tickets.allow_plaintext), 0, 0, NULL },
	{ "timeout", K_DUR_MS, CO(tickets.timeout_ms), 1, DUR_MAX_TIMEOUT, NULL },
	{ "approved_states", K_LIST, CO(tickets.approved_states), 0, 0, NULL },
	{ "max_response", K_SIZE, CO(tickets.max_response), 1024,
	  64 * 1024 * 1024, NULL },
	{ NULL, K_STR, 0, 0, 0, NULL },
};

static const struct keydef keys_aws[] = {
	{ "sts_endpoint", K_FN, CO(aws.sts_endpoint), 0, 0, fn_sts_endpoint },
	{ "region", K_FN, CO(aws.region), 0, 0, fn_region },
	{ "credentials", K_FN, 0, 0, 0, fn_credentials },
	{ "profile", K_FN, CO(aws.profile), 0, 0, fn_profile },
	{ "ca_file", K_PATH, CO(aws.ca_file), 0, 0, NULL },
	{ "timeout", K_DUR_MS, CO(aws.timeout_ms), 1, DUR_MAX_TIMEOUT, NULL },
	{ "metadata_endpoint", K_FN, CO(aws.metadata_endpoint), 0, 0,
	  fn_metadata_endpoint },
	{ "base_principal", K_FN, CO(aws.base_principal), 0, 0,
	  fn_base_principal },
	{ NULL, K_STR, 0, 0, 0, NULL },
};

static const struct keydef keys_role[] = {
	{ "group", K_DN, RO(group), 0, 0, NULL },
	{ "role_arn", K_FN, RO(role_arn), 0, 0, fn_role_arn },
	{ "max_duration", K_DUR, RO(max_duration), 900, 43200, NULL },
	{ "approver_group", K_DN, RO(approver_group), 0, 0, NULL },
	{ "min_approvals", K_INT, RO(min_approvals), 0, PG_MAX_APPROVALS, NULL },
	{ "requester_may_hold", K_BOOL, RO(requester_may_hold), 0, 0, NULL },
	{ "conflicts", K_FN, RO(conflicts), 0, 0, fn_conflicts },
	{ "max_uses", K_INT, RO(max_uses), 0, 1000000, NULL },
	{ "session_policy_file", K_PATH, RO(session_policy_file), 0, 0, NULL },
	{ "external_id", K_FN, RO(external_id), 0, 0, fn_external_id },
	{ NULL, K_STR, 0, 0, 0, NULL },
};

static const struct keydef keys_separation[] = {
	{ "window", K_DUR, CO(separation.window), 1, 366 * 86400, NULL },
	{ NULL, K_STR, 0, 0, 0, NULL },
};

static const struct keydef keys_ledger[] = {
	{ "backend", K_FN, CO(ledger.backend), 0, 0, fn_backend },
	{ "path", K_PATH, CO(ledger.path), 0, 0, NULL },
	{ "endpoints", K_FN, CO(ledger.endpoints), 0, 0, fn_endpoints },
	{ "ca_file", K_PATH, CO(ledger.ca_file), 0, 0, NULL },
	{ "cert_file", K_PATH, CO(ledger.cert_file), 0, 0, NULL },
	{ "key_file", K_PATH, CO(ledger.key_file), 0, 0, NULL },
	{ "password_file", K_PATH, CO(ledger.password_file), 0, 0, NULL },
	{ "prefix", K_FN, CO(ledger.prefix), 0, 0, fn_prefix },
	{ "timeout", K_DUR_MS, CO(ledger.timeout_ms), 1, DUR_MAX_TIMEOUT, NULL },
	{ "allow_plaintext", K_BOOL, CO(ledger.allow_plaintext), 0, 0, NULL },
	{ NULL, K_STR, 0, 0, 0, NULL },
};

static const struct keydef keys_audit[] = {
	{ "path", K_PATH, CO(audit.path), 0, 0, NULL },
	{ "signing_key", K_PATH, CO(audit.signing_key), 0, 0, NULL },
	{ "syslog", K_BOOL, CO(audit.syslog), 0, 0, NULL },
	{ NULL, K_STR, 0, 0, 0, NULL },
};

static const struct keydef *const sect_keys[S_COUNT] = {
	keys_daemon, keys_directory, keys_tickets, keys_aws, keys_role,
	keys_separation, keys_ledger, keys_audit,
};

/* "[tickets]" or "[role NAME]" for messages. */
static const char *sect_label(struct parser *p, char *buf, size_t len)
{
	if (p->sect == S_ROLE)
		snprintf(buf, len, "[role %s]", p->role->name);
	else
		snprintf(buf, len, "[%s]", sect_names[p->sect]);
	return buf;
}

static pg_err set_typed(struct parser *p, const struct keydef *k,
			void *base, const char *val)
{
	char label[96];
	int64_t secs;
	uint64_t u;
	const char *end;

	sect_label(p, label, sizeof(label));
	switch (k->type) {
	case K_STR:
		return set_str(p, base, k->off, val);
	case K_DN:
		if (!valid_dn(val))
			return perr(p, p->line, "%s %s: '%s' is not a valid DN",
				    label, k->name, val);
		return set_str(p, base, k->off, val);
	case K_NAME:
		if (!valid_account_name(val))
			return perr(p, p->line,
				    "%s %s: '%s' is not a user or group name",
				    label, k->name, val);
		return set_str(p, base, k->off, val);
	case K_PATH:
		if (val[0] != '/')
			return perr(p, p->line,
				    "%s %s must be an absolute path", label,
				    k->name);
		return set_str(p, base, k->off, val);
	case K_BOOL: {
		int b;

		if (strcmp(val, "yes") == 0)
			b = 1;
		else if (strcmp(val, "no") == 0)
			b = 0;
		else
			return perr(p, p->line,
				    "%s %s must be yes or no, not '%s'", label,
				    k->name, val);
		*(int *)FIELD(base, k->off) = b;
		return PG_OK;
	}
	case K_INT:
		if (parse_uint(val, &end, (uint64_t)INT64_MAX, &u) != PG_OK ||
		    *end != '\0')
			return perr(p, p->line,
				    "%s %s must be a whole number, not '%s'",
				    label, k->name, val);
		if ((int64_t)u < k->min || (int64_t)u > k->max)
			return perr(p, p->line,
				    "%s %s must be between %lld and %lld, not %s",
				    label, k->name, (long long)k->min,
				    (long long)k->max, val);
		*(int *)FIELD(base, k->off) = (int)u;
		return PG_OK;
	case K_DUR:
	case K_DUR_MS:
		if (pg_parse_duration(val, &secs) != PG_OK)
			return perr(p, p->line,
				    "%s %s must be a duration (e.g. 30s, 5m, 12h, 7d), not '%s'",
				    label, k->name, val);
		if (secs < k->min || secs > k->max)
			return perr(p, p->line,
				    "%s %s must be between %lld and %lld seconds, not %s",
				    label, k->name, (long long)k->min,
				    (long long)k->max, val);
		*(int64_t *)FIELD(base, k->off) =
			k->type == K_DUR_MS ? secs * 1000 : secs;
		return PG_OK;
	case K_SIZE:
		if (parse_size(val, &u) != PG_OK)
			return perr(p, p->line,
				    "%s %s must be a size (e.g. 65536, 512k, 1M), not '%s'",
				    label, k->name, val);
		if (u < (uint64_t)k->min || u > (uint64_t)k->max)
			return perr(p, p->line,
				    "%s %s must be between %lld and %lld bytes, not %s",
				    label, k->name, (long long)k->min,
				    (long long)k->max, val);
		*(size_t *)FIELD(base, k->off) = (size_t)u;
		return PG_OK;
	case K_LIST:
		if (list_split(val, FIELD(base, k->off)) != PG_OK)
			return pnomem(p);
		return PG_OK;
	case K_FN:
		return k->fn(p, k, base, val);
	}
	return perr(p, p->line, "internal error: key type");
}

/* min_approvals.CATEGORY = N in a role. */
static pg_err set_category_min(struct parser *p, const char *cat,
			       const char *val)
{
	pg_role_cfg *r = p->role;
	pg_category_min *nv;
	const char *end;
	uint64_t u;
	char *name;

	if (!valid_category(cat))
		return perr(p, p->line,
			    "[role %s] min_approvals.%s: category must be [A-Za-z0-9_.-]+",
			    r->name, cat);
	if (parse_uint(val, &end, (uint64_t)INT64_MAX, &u) != PG_OK ||
	    *end != '\0')
		return perr(p, p->line,
			    "[role %s] min_approvals.%s must be a whole number, not '%s'",
			    r->name, cat, val);
	if (u > PG_MAX_APPROVALS)
		return perr(p, p->line,
			    "[role %s] min_approvals.%s must be between 0 and %d, not %s",
			    r->name, cat, PG_MAX_APPROVALS, val);
	if (r->n_min_by_category == PG_MAX_CATEGORIES)
		return perr(p, p->line,
			    "[role %s] has too many min_approvals.CATEGORY keys (at most %d)",
			    r->name, PG_MAX_CATEGORIES);
	name = strdup(cat);
	if (name == NULL)
		return pnomem(p);
	nv = realloc(r->min_by_category,
		     (r->n_min_by_category + 1) * sizeof(*nv));
	if (nv == NULL) {
		free(name);
		return pnomem(p);
	}
	r->min_by_category = nv;
	nv[r->n_min_by_category].category = name;
	nv[r->n_min_by_category].min = (int)u;
	r->n_min_by_category++;
	return PG_OK;
}

/* field.NAME = POINTER in [tickets]. */
static pg_err set_field(struct parser *p, const char *name, const char *val)
{
	int i;
	char *copy;

	for (i = 0; i < PG_FIELD_COUNT; i++)
		if (strcmp(name, field_names[i]) == 0)
			break;
	if (i == PG_FIELD_COUNT)
		return perr(p, p->line, "unknown key 'field.%s' in [tickets]",
			    name);
	if (strcmp(val, "none") == 0) {
		/* Not read at all; the fields R3 cannot do without stay. */
		if (i == PG_FIELD_STATE || i == PG_FIELD_REQUESTED_FOR ||
		    i == PG_FIELD_ROLE)
			return perr(p, p->line,
				    "[tickets] field.%s cannot be none: the "
				    "decision needs it", name);
		free(p->field_override[i]);
		p->field_override[i] = NULL;
		p->field_none[i] = 1;
		return PG_OK;
	}
	p->field_none[i] = 0;
	if (!valid_json_pointer(val))
		return perr(p, p->line,
			    "[tickets] field.%s: '%s' is not a JSON Pointer (\"\" or \"/...\", '~' only as ~0 or ~1)",
			    name, val);
	copy = strdup(val);
	if (copy == NULL)
		return pnomem(p);
	free(p->field_override[i]);
	p->field_override[i] = copy;
	return PG_OK;
}

/* The line where "[section] key" was given, or 0. */
static unsigned key_line(const struct parser *p, const char *qualified)
{
	size_t i;

	for (i = 0; i < p->n_seen; i++)
		if (strcmp(p->seen[i].key, qualified) == 0)
			return p->seen[i].line;
	return 0;
}

static pg_err remember_key(struct parser *p, const char *key)
{
	char label[96], *q;
	unsigned first;
	size_t n;

	sect_label(p, label, sizeof(label));
	n = strlen(label) + strlen(key) + 2;
	q = malloc(n);
	if (q == NULL)
		return pnomem(p);
	snprintf(q, n, "%s %s", label, key);
	first = key_line(p, q);
	if (first != 0) {
		free(q);
		return perr(p, p->line,
			    "duplicate key '%s' in %s (first given at line %u)",
			    key, label, first);
	}
	if (p->n_seen == p->cap_seen) {
		size_t ncap = p->cap_seen ? p->cap_seen * 2 : 16;
		struct seen_key *ns = realloc(p->seen, ncap * sizeof(*ns));

		if (ns == NULL) {
			free(q);
			return pnomem(p);
		}
		p->seen = ns;
		p->cap_seen = ncap;
	}
	p->seen[p->n_seen].key = q;
	p->seen[p->n_seen].line = p->line;
	p->n_seen++;
	return PG_OK;
}


static pg_err do_key(struct parser *p, const char *key, const char *val)
{
	const struct keydef *k;
	void *base;
	char label[96];
	const char *q;
	pg_err rc;

	if (p->sect == S_NONE)
		return perr(p, p->line,
			    "key '%s' outside a section (start one with [name])",
			    key);
	for (q = key; *q != '\0'; q++)
		if (!is_alnum(*q) && *q != '_' && *q != '.' && *q != '-')
			return perr(p, p->line, "invalid key name '%s'", key);
	if (*val == '\0')
		return perr(p, p->line, "%s %s has an empty value",
			    sect_label(p, label, sizeof(label)), key);
	rc = remember_key(p, key);
	if (rc != PG_OK)
		return rc;

	if (p->sect == S_TICKETS && strncmp(key, "field.", 6) == 0)
		return set_field(p, key + 6, val);
	if (p->sect == S_ROLE && strncmp(key, "min_approvals.", 14) == 0)
		return set_category_min(p, key + 14, val);

	for (k = sect_keys[p->sect]; k->name != NULL; k++)
		if (strcmp(k->name, key) == 0)
			break;
	if (k->name == NULL)
		return perr(p, p->line, "unknown key '%s' in %s", key,
			    sect_label(p, label, sizeof(label)));
	base = p->sect == S_ROLE ? (void *)p->role : (void *)p->cfg;
	return set_typed(p, k, base, val);
}

static pg_err role_defaults(struct parser *p, pg_role_cfg *r,
			    const char *name)
{
	memset(r, 0, sizeof(*r));
	r->name = strdup(name);
	if (r->name == NULL)
		return pnomem(p);
	r->max_duration = 3600;
	r->min_approvals = 1;
	r->requester_may_hold = 1;
	r->max_uses = 0;
	return PG_OK;
}

/* LINE is "[...]" trimmed. */
static pg_err do_section(struct parser *p, char *line, size_t len)
{
	char *in, *name, *arg;
	size_t i;
	int s;
	pg_err rc;

	if (line[len - 1] != ']')
		return perr(p, p->line,
			    "section header must end with ']'");
	line[len - 1] = '\0';
	in = line + 1;
	while (is_blank(*in))
		in++;
	name = in;
	while (*in != '\0' && !is_blank(*in))
		in++;
	if (*in != '\0')
		*in++ = '\0';
	while (is_blank(*in))
		in++;
	arg = in;
	for (i = strlen(arg); i > 0 && is_blank(arg[i - 1]); i--)
		arg[i - 1] = '\0';

	for (s = 0; s < S_COUNT; s++)
		if (strcmp(name, sect_names[s]) == 0)
			break;
	if (s == S_COUNT)
		return perr(p, p->line, "unknown section [%s]", name);

	if (s == S_ROLE) {
		if (*arg == '\0')
			return perr(p, p->line,
				    "[role] needs a name: [role NAME]");
		if (!valid_role_name(arg))
			return perr(p, p->line,
				    "invalid role name '%s' (1 to 64 of a-z 0-9 -)",
				    arg);
		for (i = 0; i < p->cfg->n_roles; i++)
			if (strcmp(p->cfg->roles[i].name, arg) == 0)
				return perr(p, p->line,
					    "duplicate role '%s'", arg);
		if (p->cfg->n_roles == PG_MAX_ROLES)
			return perr(p, p->line,
				    "too many roles (at most %d)",
				    PG_MAX_ROLES);
		p->role = &p->cfg->roles[p->cfg->n_roles];
		rc = role_defaults(p, p->role, arg);
		if (rc != PG_OK)
			return rc;
		p->cfg->n_roles++;
	} else {
		if (*arg != '\0')
			return perr(p, p->line,
				    "unexpected '%s' in section header [%s]",
				    arg, name);
		if (p->sect_line[s] != 0)
			return perr(p, p->line,
				    "duplicate section [%s] (first at line %u)",
				    name, p->sect_line[s]);
		p->sect_line[s] = p->line;
		p->role = NULL;
	}
	p->sect = (enum sect)s;
	return PG_OK;
}

/* One line (without its line end), LEN bytes, NUL-terminated. */
static pg_err do_line(struct parser *p, char *line, size_t len)
{
	size_t bad;
	char *eq, *key, *val, *e;

	if (len > PG_CONFIG_MAX_LINE)
		return perr(p, p->line, "line too long (more than %d bytes)",
			    PG_CONFIG_MAX_LINE);
	if (memchr(line, '\0', len) != NULL)
		return perr(p, p->line, "NUL byte in the file");
	bad = check_text((const unsigned char *)line, len);
	if (bad != len) {
		unsigned char c = (unsigned char)line[bad];

		if (c < 0x80)
			return perr(p, p->line,
				    "control character 0x%02x at column %zu",
				    c, bad + 1);
		return perr(p, p->line,
			    "invalid UTF-8 (or a control character) at column %zu",
			    bad + 1);
	}

	while (is_blank(*line)) {
		line++;
		len--;
	}
	while (len > 0 && is_blank(line[len - 1]))
		line[--len] = '\0';
	if (len == 0 || line[0] == '#' || line[0] == ';')
		return PG_OK;
	if (line[0] == '[')
		return do_section(p, line, len);

	eq = strchr(line, '=');
	if (eq == NULL)
		return perr(p, p->line,
			    "expected 'key = value', '[section]' or a comment");
	*eq = '\0';
	key = line;
	for (e = eq; e > key && is_blank(e[-1]); e--)
		e[-1] = '\0';
	val = eq + 1;
	while (is_blank(*val))
		val++;
	if (*key == '\0')
		return perr(p, p->line, "missing key before '='");
	return do_key(p, key, val);
}

/* ---- after the file -------------------------------------------------- */

static pg_err need(struct parser *p, const void *v, const char *what)
{
	if (v == NULL)
		return perr(p, 0, "%s is required", what);
	return PG_OK;
}

static pg_err finish_directory(struct parser *p)
{
	pg_config *c = p->cfg;
	int tls = c->directory.starttls;
	size_t i;
	pg_err rc;

	if (c->directory.uri.n == 0)
		return perr(p, 0, "[directory] uri is required");
	if ((rc = need(p, c->directory.base, "[directory] base")) != PG_OK)
		return rc;
	if (c->directory.bind_dn != NULL && c->directory.bind_password_file == NULL)
		return perr(p, 0,
			    "[directory] bind_password_file is required with bind_dn");
	if (c->directory.bind_dn == NULL && c->directory.bind_password_file != NULL)
		return perr(p, key_line(p, "[directory] bind_password_file"),
			    "[directory] bind_password_file given without bind_dn");
	for (i = 0; i < c->directory.uri.n; i++) {
		const char *u = c->directory.uri.v[i];

		if (strncasecmp(u, "ldaps://", 8) == 0) {
			tls = 1;
		} else if (!c->directory.starttls &&
			   !c->directory.allow_plaintext) {
			return perr(p, key_line(p, "[directory] uri"),
				    "[directory] uri '%s' is plaintext: set starttls = yes or use ldaps:// (allow_plaintext = yes permits it)",
				    u);
		}
	}
	if (tls && c->directory.ca_file == NULL)
		return perr(p, 0,
			    "[directory] ca_file is required when TLS (ldaps:// or starttls) is used");
	return PG_OK;
}

static pg_err finish_tickets(struct parser *p)
{
	pg_config *c = p->cfg;
	const struct preset *pre = NULL;
	pg_err rc;
	int i;

	if ((rc = need(p, c->tickets.url, "[tickets] url")) != PG_OK)
		return rc;
	if ((rc = need(p, c->tickets.id_pattern, "[tickets] id_pattern")) != PG_OK)
		return rc;
	if (strncasecmp(c->tickets.url, "https://", 8) != 0 &&
	    !c->tickets.allow_plaintext)
		return perr(p, key_line(p, "[tickets] url"),
			    "[tickets] url must be https:// (allow_plaintext = yes permits http://)");

	if (p->auth < 0) {
		c->tickets.auth = c->tickets.token_file != NULL ? PG_AUTH_BEARER
								: PG_AUTH_NONE;
	} else {
		c->tickets.auth = (pg_tickets_auth)p->auth;
		if (p->auth != PG_AUTH_NONE && c->tickets.token_file == NULL)
			return perr(p, 0,
				    "[tickets] token_file is required with auth = %s",
				    p->auth == PG_AUTH_BASIC ? "basic" : "bearer");
		if (p->auth == PG_AUTH_NONE && c->tickets.token_file != NULL)
			return perr(p, key_line(p, "[tickets] auth"),
				    "[tickets] auth = none but token_file is given");
	}

	if (c->tickets.provider == PG_TICKETS_SERVICENOW)
		pre = &preset_servicenow;
	else if (c->tickets.provider == PG_TICKETS_JIRA)
		pre = &preset_jira;
	for (i = 0; i < PG_FIELD_COUNT; i++) {
		if (p->field_none[i]) {
			continue;
		} else if (p->field_override[i] != NULL) {
			c->tickets.field[i] = p->field_override[i];
			p->field_override[i] = NULL;
		} else if (pre != NULL) {
			c->tickets.field[i] = strdup(pre->field[i]);
			if (c->tickets.field[i] == NULL)
				return pnomem(p);
		}
	}
	if (c->tickets.approved_states.n == 0 && pre != NULL &&
	    list_split(pre->approved_states, &c->tickets.approved_states) != PG_OK)
		return pnomem(p);
	if (pre == NULL) {
		static const pg_ticket_field required[] = {
			PG_FIELD_STATE, PG_FIELD_REQUESTED_FOR, PG_FIELD_ROLE,
		};
		size_t j;

		for (j = 0; j < sizeof(required) / sizeof(required[0]); j++)
			if (c->tickets.field[required[j]] == NULL)
				return perr(p, 0,
					    "[tickets] field.%s is required with provider = generic",
					    field_names[required[j]]);
		if (c->tickets.approved_states.n == 0)
			return perr(p, 0,
				    "[tickets] approved_states is required with provider = generic");
	}
	return PG_OK;
}

static pg_err finish_aws(struct parser *p)
{
	pg_config *c = p->cfg;
	size_t n;
	pg_err rc;

	if ((rc = need(p, c->aws.region, "[aws] region")) != PG_OK)
		return rc;
	if (!p->creds_set)
		return perr(p, 0, "[aws] credentials is required");
	if (c->aws.sts_endpoint == NULL) {
		n = strlen(c->aws.region) + sizeof("https://sts..amazonaws.com");
		c->aws.sts_endpoint = malloc(n);
		if (c->aws.sts_endpoint == NULL)
			return pnomem(p);
		snprintf(c->aws.sts_endpoint, n, "https://sts.%s.amazonaws.com",
			 c->aws.region);
	} else if (strncasecmp(c->aws.sts_endpoint, "https://", 8) != 0) {
		return perr(p, key_line(p, "[aws] sts_endpoint"),
			    "[aws] sts_endpoint must be https://");
	}
	if (c->aws.metadata_endpoint != NULL &&
	    c->aws.credentials != PG_CREDS_INSTANCE_PROFILE)
		return perr(p, key_line(p, "[aws] metadata_endpoint"),
			    "[aws] metadata_endpoint is only used with credentials = instance-profile");
	return PG_OK;
}

static pg_err finish_roles(struct parser *p)
{
	pg_config *c = p->cfg;
	size_t i, j;
	pg_err rc;
	char what[128];
	unsigned line;

	if (c->n_roles == 0)
		return perr(p, 0, "at least one [role NAME] section is required");
	for (i = 0; i < c->n_roles; i++) {
		pg_role_cfg *r = &c->roles[i];

		snprintf(what, sizeof(what), "[role %s] group", r->name);
		if ((rc = need(p, r->group, what)) != PG_OK)
			return rc;
		snprintf(what, sizeof(what), "[role %s] role_arn", r->name);
		if ((rc = need(p, r->role_arn, what)) != PG_OK)
			return rc;
		snprintf(what, sizeof(what), "[role %s] conflicts", r->name);
		line = key_line(p, what);
		for (j = 0; j < r->conflicts.n; j++) {
			const char *other = r->conflicts.v[j];

			if (strcmp(other, r->name) == 0)
				return perr(p, line,
					    "[role %s] conflicts names the role itself",
					    r->name);
			if (pg_config_role(c, other) == NULL)
				return perr(p, line,
					    "[role %s] conflicts names '%s', which is not a defined role",
					    r->name, other);
		}
	}
	return PG_OK;
}

static pg_err finish_ledger(struct parser *p)
{
	static const char *const etcd_only[] = {
		"endpoints", "ca_file", "cert_file", "key_file",
		"password_file", "prefix", "timeout", "allow_plaintext", NULL,
	};
	pg_config *c = p->cfg;
	char what[64];
	unsigned line;
	size_t i;

	if (strcmp(c->ledger.backend, "file") == 0) {
		for (i = 0; etcd_only[i] != NULL; i++) {
			snprintf(what, sizeof(what), "[ledger] %s", etcd_only[i]);
			if ((line = key_line(p, what)) != 0)
				return perr(p, line,
					    "[ledger] %s is only used with backend = etcd",
					    etcd_only[i]);
		}
		return PG_OK;
	}
	if (c->ledger.endpoints.n == 0)
		return perr(p, 0,
			    "[ledger] endpoints is required with backend = etcd");
	for (i = 0; i < c->ledger.endpoints.n; i++)
		if (strncasecmp(c->ledger.endpoints.v[i], "https://", 8) != 0 &&
		    !c->ledger.allow_plaintext)
			return perr(p, key_line(p, "[ledger] endpoints"),
				    "[ledger] endpoint '%s' is plaintext: use https:// (allow_plaintext = yes permits http://)",
				    c->ledger.endpoints.v[i]);
	if ((c->ledger.cert_file == NULL) != (c->ledger.key_file == NULL))
		return perr(p, key_line(p, c->ledger.cert_file != NULL ?
					"[ledger] cert_file" :
					"[ledger] key_file"),
			    "[ledger] cert_file and key_file go together");
	return PG_OK;
}

static pg_err finish(struct parser *p)
{
	pg_config *c = p->cfg;
	size_t i;
	pg_err rc;

	if ((rc = finish_directory(p)) != PG_OK)
		return rc;
	if ((rc = finish_tickets(p)) != PG_OK)
		return rc;
	if ((rc = finish_aws(p)) != PG_OK)
		return rc;
	if ((rc = finish_roles(p)) != PG_OK)
		return rc;
	if ((rc = finish_ledger(p)) != PG_OK)
		return rc;
	/* Every list, even an empty one, is NULL-terminated. */
	if (list_ensure(&c->directory.uri) != PG_OK ||
	    list_ensure(&c->tickets.approved_states) != PG_OK ||
	    list_ensure(&c->ledger.endpoints) != PG_OK)
		return pnomem(p);
	for (i = 0; i < c->n_roles; i++)
		if (list_ensure(&c->roles[i].conflicts) != PG_OK)
			return pnomem(p);
	return PG_OK;
}

/* ---- load / free --------------------------------------------------------- */

static void role_free(pg_role_cfg *r)
{
	size_t i;

	free(r->name);
	free(r->group);
	free(r->role_arn);
	free(r->approver_group);
	for (i = 0; i < r->n_min_by_category; i++)
		free(r->min_by_category[i].category);
	free(r->min_by_category);
	list_free(&r->conflicts);
	free(r->session_policy_file);
	free(r->external_id);
	memset(r, 0, sizeof(*r));
}

void pg_config_free(pg_config *cfg)
{
	struct cfg_priv *priv = (struct cfg_priv *)cfg;
	size_t i;

	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->daemon.socket);
	free(cfg->daemon.user);
	free(cfg->daemon.admin_group);
	list_free(&cfg->directory.uri);
	free(cfg->directory.base);
	free(cfg->directory.bind_dn);
	free(cfg->directory.bind_password_file);
	free(cfg->directory.ca_file);
	free(cfg->directory.user_filter);
	free(cfg->directory.ticket_user_attr);
	free(cfg->tickets.url);
	free(cfg->tickets.id_pattern);
	if (priv->re_compiled)
		regfree(&cfg->tickets.id_re);
	free(cfg->tickets.token_file);
	free(cfg->tickets.ca_file);
	for (i = 0; i < PG_FIELD_COUNT; i++)
		free(cfg->tickets.field[i]);
	list_free(&cfg->tickets.approved_states);
	free(cfg->aws.sts_endpoint);
	free(cfg->aws.region);
	free(cfg->aws.credentials_path);
	free(cfg->aws.profile);
	free(cfg->aws.ca_file);
	free(cfg->aws.base_principal);
	free(cfg->aws.metadata_endpoint);
	for (i = 0; i < cfg->n_roles; i++)
		role_free(&cfg->roles[i]);
	free(cfg->ledger.backend);
	free(cfg->ledger.path);
	list_free(&cfg->ledger.endpoints);
	free(cfg->ledger.ca_file);
	free(cfg->ledger.cert_file);
	free(cfg->ledger.key_file);
	free(cfg->ledger.password_file);
	free(cfg->ledger.prefix);
	free(cfg->audit.path);
	free(cfg->audit.signing_key);
	free(priv);
}

static pg_err set_defaults(struct parser *p)
{
	pg_config *c = p->cfg;

	c->daemon.socket = strdup(PG_DEFAULT_SOCKET);
	c->daemon.user = strdup("pmpgate");
	c->daemon.workers = 4;
	c->daemon.deadline_ms = 10000;
	c->daemon.max_per_uid = 4;
	c->directory.user_filter = strdup("(&(objectClass=posixAccount)(uid=%u))");
	c->directory.membership = PG_MEMBER_MEMBER;
	c->directory.nested_groups = 1;
	c->directory.max_depth = 8;
	c->directory.ticket_user_attr = strdup("uid");
	c->directory.timeout_ms = 5000;
	c->tickets.provider = PG_TICKETS_GENERIC;
	c->tickets.auth = PG_AUTH_NONE;
	c->tickets.timeout_ms = 5000;
	c->tickets.max_response = 1024 * 1024;
	c->aws.profile = strdup("default");
	c->aws.timeout_ms = 5000;
	c->separation.window = 12 * 3600;
	c->ledger.backend = strdup("file");
	c->ledger.path = strdup(PG_DEFAULT_STATEDIR);
	c->ledger.prefix = strdup("/pmpgate/");
	c->ledger.timeout_ms = 3000;
	c->audit.path = strdup(PG_DEFAULT_AUDIT);
	c->audit.syslog = 1;
	if (c->daemon.socket == NULL || c->daemon.user == NULL ||
	    c->directory.user_filter == NULL ||
	    c->directory.ticket_user_attr == NULL || c->aws.profile == NULL ||
	    c->ledger.backend == NULL || c->ledger.path == NULL ||
	    c->ledger.prefix == NULL ||
	    c->audit.path == NULL)
		return pnomem(p);
	return PG_OK;
}

/* Read FD whole into a new NUL-terminated buffer. */
static pg_err read_all(struct parser *p, int fd, char **buf, size_t *len)
{
	size_t cap = PG_CONFIG_MAX_FILE + 1, n = 0;
	char *b = malloc(cap + 1);

	*buf = NULL;
	if (b == NULL)
		return pnomem(p);
	for (;;) {
		ssize_t r;

		if (n == cap) {
			free(b);
			return perr(p, 0, "file is larger than %d bytes",
				    PG_CONFIG_MAX_FILE);
		}
		r = read(fd, b + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			free(b);
			return perr(p, 0, "cannot read: %s", strerror(errno));
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return PG_OK;
}

static void parser_free(struct parser *p)
{
	int i;

	size_t j;

	for (j = 0; j < p->n_seen; j++)
		free(p->seen[j].key);
	free(p->seen);
	for (i = 0; i < PG_FIELD_COUNT; i++)
		free(p->field_override[i]);
}

pg_err pg_config_load(const char *path, pg_config **out, char *err,
		      size_t errlen)
{
	struct parser p;
	pg_err rc = PG_ECONFIG;
	int fd = -1;
	char *buf = NULL, *line, *end, what[PATH_MAX + 16];
	size_t len = 0;

	*out = NULL;
	memset(&p, 0, sizeof(p));
	p.path = path;
	p.err = err;
	p.errlen = errlen;
	p.sect = S_NONE;
	p.auth = -1;
	if (errlen > 0)
		err[0] = '\0';

	p.priv = calloc(1, sizeof(*p.priv));
	if (p.priv == NULL) {
		rc = pnomem(&p);
		goto out;
	}
	p.cfg = &p.priv->pub;
	p.cfg->path = strdup(path);
	if (p.cfg->path == NULL) {
		rc = pnomem(&p);
		goto out;
	}
	if ((rc = set_defaults(&p)) != PG_OK)
		goto out;

	/* O_NONBLOCK: a FIFO must not hang the open; it is refused below. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = perr(&p, 0, "cannot open: %s", strerror(errno));
		goto out;
	}
	snprintf(what, sizeof(what), "%s:0", path);
	if ((rc = pg_check_fd_perms(fd, what, 0, err, errlen)) != PG_OK)
		goto out;
	if ((rc = read_all(&p, fd, &buf, &len)) != PG_OK)
		goto out;

	line = buf;
	while (line < buf + len) {
		size_t n;

		p.line++;
		end = memchr(line, '\n', (size_t)(buf + len - line));
		if (end == NULL)
			end = buf + len;
		n = (size_t)(end - line);
		/* A CRLF line end counts as a line end. */
		if (end < buf + len && n > 0 && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		if ((rc = do_line(&p, line, n)) != PG_OK)
			goto out;
		line = end + 1;
	}
	if ((rc = finish(&p)) != PG_OK)
		goto out;

	*out = p.cfg;
	p.priv = NULL;
	rc = PG_OK;
out:
	if (p.priv != NULL)
		pg_config_free(&p.priv->pub);
	parser_free(&p);
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- lookups ------------------------------------------------------------- */

const pg_role_cfg *pg_config_role(const pg_config *cfg, const char *name)
{
	size_t i;

	if (cfg == NULL || name == NULL)
		return NULL;
	for (i = 0; i < cfg->n_roles; i++)
		if (strcmp(cfg->roles[i].name, name) == 0)
			return &cfg->roles[i];
	return NULL;
}

int pg_role_min_approvals(const pg_role_cfg *role, const char *category)
{
	size_t i;

	if (role == NULL)
		return INT_MAX;	/* no role: nothing can satisfy it */
	if (category != NULL)
		for (i = 0; i < role->n_min_by_category; i++)
			if (strcmp(role->min_by_category[i].category,
				   category) == 0)
				return role->min_by_category[i].min;
	return role->min_approvals;
}

const char *pg_field_name(pg_ticket_field field)
{
	if ((int)field < 0 || field >= PG_FIELD_COUNT)
		return NULL;
	return field_names[field];
}
