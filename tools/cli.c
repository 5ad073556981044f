/* cli.c - what the subcommands of pmpgate share; see cli.h. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../client/output.h"
#include "../core/config.h"

#define INI_MAX (1024 * 1024)
#define INI_MAX_ROLES 64

const char *
pg_cli_socket(void)
{
	const char *s = getenv("PMPGATE_SOCKET");

	return (s != NULL && s[0] != '\0') ? s : PG_DEFAULT_SOCKET;
}

pg_err
pg_cli_timeout(int *ms)
{
	return pg_client_timeout(ms);
}

int
pg_cli_usage(const char *cmd, const char *msg)
{
	char safe[512];

	pg_sanitize_text(msg, safe, sizeof(safe));
	fprintf(stderr, "%s: usage: %s (try %s%s%s --help)\n", PG_CLI_PROG,
		safe, PG_CLI_PROG, cmd ? " " : "", cmd ? cmd : "");
	return PG_EXIT_USAGE;
}

void
pg_cli_error(const char *msg)
{
	char safe[1024];

	pg_sanitize_text(msg, safe, sizeof(safe));
	fprintf(stderr, "%s: error: %s\n", PG_CLI_PROG, safe);
}

int
pg_cli_call(const char *socket_path, const pg_proto_req *req, size_t max,
	    json_t **answer)
{
	char err[512];
	int timeout_ms;
	pg_err rc;

	*answer = NULL;
	if (pg_cli_timeout(&timeout_ms) != PG_OK)
		return pg_cli_usage(NULL, "PMPGATE_TIMEOUT must be 1..3600 "
				    "seconds");
	rc = pg_proto_call_max(socket_path, req, timeout_ms, max, answer, err,
			       sizeof(err));
	if (rc != PG_OK) {
		pg_cli_error(err);
		return rc == PG_EPROTO ? PG_EXIT_INTERNAL : pg_err_exit(rc);
	}
	return -1;
}

int
pg_cli_answer_exit(const json_t *answer)
{
	const char *status = json_string_value(json_object_get(answer,
								"status"));
	char safe[1024];

	if (strcmp(status, "allow") != 0) {
		pg_sanitize_text(json_string_value(json_object_get(answer,
								   "reason")),
				 safe, sizeof(safe));
		fprintf(stderr, "%s: %s: %s\n", PG_CLI_PROG,
			strcmp(status, "deny") == 0 ? "refused" : "error", safe);
	}
	return (int)json_integer_value(json_object_get(answer, "exit"));
}

void
pg_cli_csv_field(FILE *f, const char *s)
{
	int quote;

	if (s == NULL)
		return;
	quote = strpbrk(s, ",\"\r\n") != NULL;
	if (quote)
		fputc('"', f);
	if (strchr("=+-@", s[0]) != NULL && s[0] != '\0')
		fputc('\'', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	if (quote)
		fputc('"', f);
}

int
pg_cli_flush(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "%s: error: cannot write to stdout\n",
			PG_CLI_PROG);
		return PG_EXIT_INTERNAL;
	}
	return PG_EXIT_OK;
}

const char *
pg_cli_config_path(const char *given)
{
	const char *e = getenv("PMPGATE_CONFIG");

	if (given != NULL)
		return given;
	return (e != NULL && e[0] != '\0') ? e : PG_DEFAULT_CONFIG;
}

/* ---- the offline config reader ------------------------------------------ */

struct ini_kv {
	char *section, *key, *value;
};

struct pg_ini {
	struct ini_kv *v;
	size_t n, cap;
	char *roles[INI_MAX_ROLES];
	size_t n_roles;
};

void
pg_ini_free(pg_ini *ini)
{
	size_t i;

	if (ini == NULL)
		return;
	for (i = 0; i < ini->n; i++) {
		free(ini->v[i].section);
		free(ini->v[i].key);
		free(ini->v[i].value);
	}
	for (i = 0; i < ini->n_roles; i++)
		free(ini->roles[i]);
	free(ini->v);
	free(ini);
}

/* Trim blanks at both ends in place. */
static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int
ini_add(pg_ini *ini, const char *section, const char *key, const char *value)
{
	struct ini_kv kv;

	if (pg_ini_get(ini, section, key) != NULL)
		return 0;	/* the first value counts */
	if (ini->n == ini->cap) {
		size_t ncap = ini->cap ? ini->cap * 2 : 32;
		struct ini_kv *nv = realloc(ini->v, ncap * sizeof(*nv));

		if (nv == NULL)
			return -1;
		ini->v = nv;
		ini->cap = ncap;
	}
	kv.section = strdup(section);
	kv.key = strdup(key);
	kv.value = strdup(value);
	if (kv.section == NULL || kv.key == NULL || kv.value == NULL) {
		free(kv.section);
		free(kv.key);
		free(kv.value);
		return -1;
	}
	ini->v[ini->n++] = kv;
	return 0;
}

pg_err
pg_ini_load(const char *path, pg_ini **out, char *err, size_t errlen)
{
	char *buf = NULL, *line, *save = NULL, section[256] = "";
	pg_ini *ini = NULL;
	struct stat st;
	size_t len = 0;
	unsigned lineno = 0;
	ssize_t r;
	pg_err e = PG_ECONFIG;
	int fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return PG_ECONFIG;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > INI_MAX) {
		snprintf(err, errlen, "%s: not a regular file of at most 1 MiB",
			 path);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	ini = calloc(1, sizeof(*ini));
	if (buf == NULL || ini == NULL) {
		snprintf(err, errlen, "out of memory");
		e = PG_ENOMEM;
		goto out;
	}
	while (len < (size_t)st.st_size &&
	       (r = read(fd, buf + len, (size_t)st.st_size - len)) > 0)
		len += (size_t)r;
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		snprintf(err, errlen, "%s: contains a NUL byte", path);
		goto out;
	}
	/* strtok_r skips empty lines, so count lines by hand */
	for (line = buf; line != NULL; line = save) {
		char *nl = strchr(line, '\n'), *s, *eq;

		save = nl ? nl + 1 : NULL;
		if (nl)
			*nl = '\0';
		lineno++;
		s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']'), *name, *sp;

			if (end == NULL || end[1] != '\0') {
				snprintf(err, errlen, "%s:%u: a section line "
					 "must be [NAME]", path, lineno);
				goto out;
			}
			*end = '\0';
			name = trim(s + 1);
			sp = strpbrk(name, " \t");
			if (sp != NULL && strncmp(name, "role", 4) == 0 &&
			    sp == name + 4)
				snprintf(section, sizeof(section), "role %s",
					 trim(sp));
			else
				snprintf(section, sizeof(section), "%s", name);
			if (strncmp(section, "role ", 5) == 0 &&
			    ini->n_roles < INI_MAX_ROLES &&
			    (ini->roles[ini->n_roles++] =
			     strdup(section + 5)) == NULL) {
				ini->n_roles--;
				snprintf(err, errlen, "out of memory");
				e = PG_ENOMEM;
				goto out;
			}
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s:%u: expected key = value",
				 path, lineno);
			goto out;
		}
		*eq = '\0';
		if (ini_add(ini, section, trim(s), trim(eq + 1)) != 0) {
			snprintf(err, errlen, "out of memory");
			e = PG_ENOMEM;
			goto out;
		}
	}
	*out = ini;
	ini = NULL;
	e = PG_OK;
out:
	pg_ini_free(ini);
	free(buf);
	close(fd);
	return e;
}

const char *
pg_ini_get(const pg_ini *ini, const char *section, const char *key)
{
	size_t i;

	for (i = 0; ini != NULL && i < ini->n; i++)
		if (strcmp(ini->v[i].section, section) == 0 &&
		    strcmp(ini->v[i].key, key) == 0)
			return ini->v[i].value;
	return NULL;
}

size_t
pg_ini_roles(const pg_ini *ini, const char **names, size_t max)
{
	size_t i;

	for (i = 0; i < ini->n_roles && i < max; i++)
		names[i] = ini->roles[i];
	return i;
}
