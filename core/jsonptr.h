/*
 * jsonptr.h - JSON Pointer (RFC 6901) over Jansson, with '*' walking
 * every element of an array (the ticket field map, DESIGN.md).
 *
 * "~0" and "~1" are unescaped; array indexes are decimal without leading
 * zeros; "*" on an array yields each element, on anything else nothing.
 * The empty pointer "" is the whole document.
 *
 * On an array, a token that is not an index ("01", "-", "x", an index
 * past the end or beyond size_t) matches nothing; on an object, "*" is
 * the wildcard and so matches nothing (a member literally named "*"
 * cannot be addressed); on a string, number, boolean or null every
 * further token matches nothing.
 */
#ifndef PMPGATE_JSONPTR_H
#define PMPGATE_JSONPTR_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"

/* Check a pointer's syntax (starts with '/' or is ""; valid escapes). */
pg_err pg_jsonptr_valid(const char *ptr);

/*
 * Evaluate PTR on DOC and append every matching value (borrowed
 * references) to OUT, a JSON array the caller owns.  Missing members
 * match nothing.  PG_EINVAL on a bad pointer (or a NULL DOC, or an OUT
 * that is not an array); PG_EPROTO when more than max_matches values
 * match (max_matches 0: any match is too many); PG_ENOMEM.  On any error
 * OUT is left as it was before the call.
 */
pg_err pg_jsonptr_eval(json_t *doc, const char *ptr, json_t *out,
		       size_t max_matches);

#endif
