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
 *
 * Fields (pg_ticket_from_json): a JSON null is how ticket systems say
 * "not set" (Jira's unset custom fields), so a null value counts as no
 * match.  state, requested_for, requester, role and category match at
 * most one value, which must be a string (an object, array, number or
 * boolean is PG_EPROTO); no match leaves the field NULL.  Approvers: every
 * match is a string, or an array whose elements are all strings (a null
 * element is PG_EPROTO); at most PG_TICKET_MAX_APPROVERS in all.  Window
 * times: a string (timefmt.h) or a number of epoch seconds; no match, and
 * "" (ServiceNow's unset date), leave has_start/has_end 0 (no bound; the
 * role's max_duration still caps the credentials); anything else is
 * PG_EPROTO.  Every string is at most PG_TICKET_STR_MAX bytes of
 * valid UTF-8 without NUL or control characters (C0, DEL, C1).  Messages
 * name the field and its pointer and show untrusted text escaped
 * (\xNN), shortened to 64 bytes.
 *
 * Ticket ids: non-empty, at most PG_TICKET_ID_MAX bytes, printable ASCII
 * without space (0x21-0x7e), not "." nor "..", and a whole match of
 * id_pattern.
 */
#ifndef PMPGATE_TICKETS_H
#define PMPGATE_TICKETS_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "deadline.h"
#include "err.h"
#include "http.h"

#define PG_TICKET_ID_MAX 128		/* bytes of a ticket id */
#define PG_TICKET_STR_MAX 256		/* bytes of a string field */
#define PG_TICKET_MAX_APPROVERS 64	/* approver values per ticket */

typedef struct pg_ticket {
	char *id;
	char *state;		/* NULL if absent */
	char *requested_for;	/* name as the ticket system gives it */
	char *requester;
	pg_list approvers;	/* every approver value, in order (v is
				   allocated and NULL-terminated, n may be 0) */
	char *role;
	char *category;
	int has_start, has_end;
	int64_t window_start, window_end;	/* epoch seconds */
} pg_ticket;

/* PG_OK when ID may be looked up, else PG_EINVAL with a reason. */
pg_err pg_ticket_id_check(const pg_config *cfg, const char *id, char *err,
			  size_t errlen);

/* Build a ticket from a parsed document with the field map (pure).
 * On error *out is empty (all NULL/0).  A field whose pointer is NULL is
 * absent; a NULL field.state is PG_ECONFIG. */
pg_err pg_ticket_from_json(const pg_config *cfg, const char *id, json_t *doc,
			   pg_ticket *out, char *err, size_t errlen);

/* Parse BODY (LEN bytes) with Jansson (JSON_REJECT_DUPLICATES; Jansson's
 * own nesting limit) and build the ticket as pg_ticket_from_json does.
 * JSON that does not parse is PG_EPROTO.  This is what pg_ticket_fetch
 * does with a 200 answer. */
pg_err pg_ticket_parse(const pg_config *cfg, const char *id, const char *body,
		       size_t len, pg_ticket *out, char *err, size_t errlen);

/*
 * GET the ticket service's answer for ID (URL-encoded into [tickets] url,
 * with the token from token_file, wiped after): PG_OK with any HTTP
 * status in *resp (free with pg_http_resp_free), or the transport error.
 * ID is not checked here: pg_ticket_fetch checks it first; `pmpgate
 * doctor` asks for a ticket that cannot exist.
 */
pg_err pg_ticket_get(pg_http *h, const pg_config *cfg, const char *id,
		     pg_deadline dl, pg_http_resp *resp, char *err,
		     size_t errlen);

/* Check the id, fetch, parse.  See the status mapping above.  A bad id
 * is PG_EINVAL and no request is made.  On error *out is empty. */
pg_err pg_ticket_fetch(pg_http *h, const pg_config *cfg, const char *id,
		       pg_deadline dl, pg_ticket *out, char *err, size_t errlen);

/* Is STATE among approved_states (exact match)? */
int pg_ticket_state_approved(const pg_config *cfg, const char *state);

/* Free every member and zero *t; safe on an empty ticket. */
void pg_ticket_free(pg_ticket *t);

#endif
