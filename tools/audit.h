/*
 * audit.h - `pmpgate audit verify|show|keygen`, the auditor's commands
 * (DESIGN.md, "Audit record"; docs/auditor-guide.md).
 *
 *   pmpgate audit verify [--public-key F]... [--syslog FILE]
 *                        [--signatures every|chain-end] [FILE...]
 *   pmpgate audit show [--user U] [--role R] [--ticket T] [--event E]
 *                      [--since T] [--until T] [--decision allow|deny]
 *                      [--format table|json|csv] [FILE...]
 *   pmpgate audit keygen [--out-private F] [--out-public F]
 *
 * They read files only (no daemon, no configuration): an auditor needs
 * read access to the log and the public key, nothing else.
 */
#ifndef PMPGATE_TOOLS_AUDIT_H
#define PMPGATE_TOOLS_AUDIT_H

#include "../core/config.h"	/* PG_SYSCONFDIR, PG_DEFAULT_AUDIT */

/* The default public key `verify` reads. */
#define PG_DEFAULT_AUDIT_PUBKEY PG_SYSCONFDIR "/pmpgate/audit-signing.pub"
/* The default private key `keygen` writes ([audit] signing_key). */
#define PG_DEFAULT_AUDIT_KEY PG_SYSCONFDIR "/pmpgate/audit-signing.pem"

/*
 * Run `pmpgate audit ...`: argv[0] is "audit", argv[1] the subcommand.
 * Returns the exit code: verify 0 intact, 1 damage found (one line
 * "FAIL: FILE:LINE: CLASS: detail" on stdout), 2 usage or unreadable
 * input; show 0, 2 usage or unreadable input, 4 cannot write; keygen 0,
 * 2 usage or a file exists already, 4 cannot write.
 */
int pg_cmd_audit(int argc, char **argv);

#endif
