/*
 * cli.h - what the subcommands of pmpgate share: the socket and timeout
 * (PMPGATE_SOCKET, PMPGATE_TIMEOUT), usage and error lines, one call to
 * the daemon, CSV fields, and a small reader of pmpgate.conf for the
 * commands that work offline (`iam`, `doctor`'s file checks).
 *
 * The reader is not the daemon's config loader (pmpgate links neither
 * libldap nor libcurl): it reads "[section]" and "key = value" lines the
 * way pmpgate.conf is written and validates nothing; `pmpgated -t` is the
 * judge of a configuration (doctor runs it first).  It never reads the
 * files the config names.
 */
#ifndef PMPGATE_TOOLS_CLI_H
#define PMPGATE_TOOLS_CLI_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "../client/proto.h"
#include "../core/err.h"

#define PG_CLI_PROG "pmpgate"

/* The socket: PMPGATE_SOCKET, else the compiled-in default. */
const char *pg_cli_socket(void);

/* The client timeout in ms from PMPGATE_TIMEOUT (1..3600 whole seconds,
 * default 60).  PG_OK or PG_EUSAGE. */
pg_err pg_cli_timeout(int *ms);

/* "pmpgate: usage: MSG (try pmpgate CMD --help)" on stderr; returns
 * PG_EXIT_USAGE.  CMD may be NULL. */
int pg_cli_usage(const char *cmd, const char *msg);

/* "pmpgate: error: MSG" on stderr (sanitised, one line). */
void pg_cli_error(const char *msg);

/*
 * Send REQ to the daemon at SOCKET_PATH and return its answer in *answer
 * (accepting up to MAX bytes, see pg_proto_call_max).  On a transport or
 * protocol failure prints the error and returns the exit code (3 or 4)
 * with *answer NULL; else returns -1 and the caller judges the answer.
 */
int pg_cli_call(const char *socket_path, const pg_proto_req *req, size_t max,
		json_t **answer);

/* The answer's exit code, and its reason on stderr as
 * "pmpgate: refused: ..." or "pmpgate: error: ..." unless it is an
 * allow. */
int pg_cli_answer_exit(const json_t *answer);

/* Write S as one CSV field (RFC 4180: quoted when it holds a comma, a
 * quote, CR or LF; quotes doubled; a leading = + - @ is prefixed with '
 * so that spreadsheets do not run it).  NULL is an empty field. */
void pg_cli_csv_field(FILE *f, const char *s);

/* Flush stdout; 0, or prints an error and returns PG_EXIT_INTERNAL. */
int pg_cli_flush(void);

/* ---- the offline config reader ------------------------------------------ */

typedef struct pg_ini pg_ini;

/*
 * Read PATH: "[section]" (blanks inside the brackets trimmed, "role NAME"
 * with one blank), "key = value" (blanks around both trimmed), '#' and
 * ';' comment lines.  The first value of a key counts.  PG_OK with *out;
 * PG_ECONFIG with "PATH: why" (cannot open, not a regular file, larger
 * than 1 MiB, a line that is neither) in err.
 */
pg_err pg_ini_load(const char *path, pg_ini **out, char *err, size_t errlen);

/* The value of KEY in SECTION ("aws", "role pmp-administrator"), or
 * NULL. */
const char *pg_ini_get(const pg_ini *ini, const char *section,
		       const char *key);

/* The names of the [role NAME] sections, in file order: *n names, the
 * strings belong to INI.  At most 64. */
size_t pg_ini_roles(const pg_ini *ini, const char **names, size_t max);

void pg_ini_free(pg_ini *ini);

/* The config path from -c, else PMPGATE_CONFIG, else the compiled-in
 * default. */
const char *pg_cli_config_path(const char *given);

#endif
