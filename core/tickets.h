/*
 * tickets.h - the ticket system, over libcurl (http.h) and Jansson.
 *
 * The ticket id is checked against [tickets] id_pattern (whole match)
 * and for length (<= 128) and characters (printable ASCII) BEFORE any
 * request; it is URL-encoded into "{ticket}" of [tickets] url.  The token
 * from token_file goes in "Authorization: Bearer" (auth = bearer) or as
 * "user:password" basic credentials (auth = basic; the file holds
 * "user:password") and is wiped after the call.  The answer is capped at
 * max_response and parsed with Jansson (JSON_REJECT_DUPLICATES); each
 * field comes from its JSON Pointer in the field map.
 *
 * Status mapping: 200 -> parse; 404 -> PG_ENOTFOUND; 401/403 ->
 * PG_EUNAVAIL ("ticket service refused our credentials"); other 4xx/5xx,
 * timeouts, TLS errors -> PG_EUNAVAIL/PG_ETIMEOUT; unparseable JSON or a
 * field of the wrong type or with several values where one is expected ->
 * PG_EPROTO.  A document whose state field matches nothing (e.g.
 * ServiceNow's empty "result") is PG_ENOTFOUND.
 */
#ifndef PMPGATE_TICKETS_H
#define PMPGATE_TICKETS_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "deadline.h"
#include "err.h"
#include "http.h"

typedef struct pg_ticket {
	char *id;
	char *state;		/* NULL if absent */
	char *requested_for;	/* name as the ticket system gives it */
	char *requester;
	pg_list approvers;	/* every approver value, in order */
	char *role;
	char *category;
	int has_start, has_end;
	int64_t window_start, window_end;	/* epoch seconds */
} pg_ticket;

/* PG_OK when ID may be looked up, else PG_EINVAL with a reason. */
pg_err pg_ticket_id_check(const pg_config *cfg, const char *id, char *err,
			  size_t errlen);

/* Build a ticket from a parsed document with the field map (pure). */
pg_err pg_ticket_from_json(const pg_config *cfg, const char *id, json_t *doc,
			   pg_ticket *out, char *err, size_t errlen);

/* Check the id, fetch, parse.  See the status mapping above. */
pg_err pg_ticket_fetch(pg_http *h, const pg_config *cfg, const char *id,
		       pg_deadline dl, pg_ticket *out, char *err, size_t errlen);

/* Is STATE among approved_states (exact match)? */
int pg_ticket_state_approved(const pg_config *cfg, const char *state);

void pg_ticket_free(pg_ticket *t);

#endif
