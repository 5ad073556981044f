/*
 * admincmd.h - `pmpgate check`, `pmpgate doctor`, `pmpgate review` and
 * `pmpgate iam`: the commands of identity teams and administrators
 * (DESIGN.md, "Tools"; docs/man/pmpgate.8).
 *
 * Each takes its own argv (argv[0] is the command name) and returns the
 * process exit code: 0 ok/allowed, 1 refused (check) or a failed check
 * (doctor), 2 usage or configuration error, 3 the daemon or a service it
 * needs is unavailable, 4 internal error.
 */
#ifndef PMPGATE_TOOLS_ADMINCMD_H
#define PMPGATE_TOOLS_ADMINCMD_H

/* pmpgate check USER ROLE [TICKET] [--json] [--socket PATH] */
int pg_cmd_check(int argc, char **argv);

/* pmpgate doctor [-c CONF] [--socket PATH] [--pmpgated PATH] [--offline] */
int pg_cmd_doctor(int argc, char **argv);

/* pmpgate review [--stale-days N] [--format table|json|csv]
 *                [--socket PATH] */
int pg_cmd_review(int argc, char **argv);

/* pmpgate iam trust-policy ROLE [-c CONF] | pmpgate iam scp [-c CONF]
 *   [--admin-role NAME] [--subscriber-role NAME] */
int pg_cmd_iam(int argc, char **argv);

#endif
