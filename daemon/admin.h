/*
 * admin.h - the administrative requests: "review" and "doctor"
 * (DESIGN.md, "Tools"; docs/man/pmpgate.8).
 *
 * Both are for uid 0 and members of [daemon] admin_group only; the caller
 * (pg_handle) has checked that with pg_is_admin before calling.  Neither
 * records anything: no ledger reservation, no audit record, no STS
 * AssumeRole.
 *
 * review: for each configured role, the members of its group (nested
 * resolved by pg_dir_group_members), each with the time of their last
 * issuance of the role (pg_ledger_last_issuance), the roles named in
 * `conflicts` whose group also holds them (R2 would refuse them both), and
 * whether they are also in the role's own approver_group.  The answer:
 *   {"v":1,"status":"allow","reason":S,"exit":0,"now":N,
 *    "roles":[{"role":S,"group":DN,"approver_group":DN|null,
 *              "conflicts":[S...],"skipped":N,
 *              "members":[{"user":S|null,"dn":S|null,"via":DN,
 *                          "last_issuance":N (0 = none recorded),
 *                          "conflicting_roles":[S...],"approver":B}]}]}
 * sorted by role as configured and by member key.  Any directory or
 * ledger failure is an error answer (exit 3): never a partial report.
 * The answer may be up to PG_PROTO_MAX_REVIEW bytes (client/proto.h).
 *
 * doctor: the daemon's live checks, each reaching one service with the
 * daemon's own configuration and secrets, in this order:
 *   directory    a new connection: TLS with [directory] ca_file, bind as
 *                bind_dn, read the bind account's own entry (pg_dir_ping)
 *   tickets      GET [tickets] url for the ticket id
 *                PG_DOCTOR_PROBE_TICKET with the configured auth: any
 *                200 or 404 proves TLS and that the credentials were
 *                accepted; 401/403 means they were refused
 *   sts          GetCallerIdentity with the base credentials; when
 *                [aws] base_principal is set, the caller must be it
 *   ledger       read the ledger's view for a user no one has
 *   audit-key    load [audit] signing_key as an Ed25519 private key
 *                ("skip" when none is configured)
 * The answer: {"v":1,"status":"allow"|"error","reason":S,"exit":0|3,
 *   "config":PATH,"checks":[{"check":S,"result":"ok"|"fail"|"skip",
 *   "detail":S,"fix":S}]}; status "error" (exit 3) when any check failed.
 * No message carries a secret.
 */
#ifndef PMPGATED_ADMIN_H
#define PMPGATED_ADMIN_H

#include "../core/deadline.h"
#include "handler.h"

/* The ticket id doctor asks the ticket service for (it should not exist). */
#define PG_DOCTOR_PROBE_TICKET "PMPGATE-DOCTOR-PROBE"

/* Answer "review" on FD within DL. */
void pg_admin_review(pg_worker *w, const pg_ctx *ctx, int fd, pg_deadline dl);

/* Answer "doctor" on FD within DL. */
void pg_admin_doctor(pg_worker *w, const pg_ctx *ctx, int fd, pg_deadline dl);

#endif
