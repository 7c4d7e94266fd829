/*
 * session.h
 *	  session: a shopper's current visit, cut by an inactivity gap (30 minutes
 *	  by default): its start, last activity, event count, dominant category
 *	  and last item.  This is the intent an anonymous visitor shows before
 *	  they ever log in.
 *
 *	  Events may be folded in any order and partial states merged, so the
 *	  state keeps every session that ended within the horizon (24 hours, or
 *	  twice the gap if that is longer) of its latest activity, not only the
 *	  current one: a late event can then still join or bridge the sessions it
 *	  belongs to.  The current session is exact for any order of events and
 *	  any split into merged parts as long as it lasts less than the horizon.
 *	  The oldest kept session may differ between splits: a part may already
 *	  have dropped its share of a session that, merged, still reaches into the
 *	  horizon.  No bounded state can avoid that; the horizon keeps it far from
 *	  the session anyone reads.
 *	  A session counts its 16 most frequent categories (ties by value bytes);
 *	  its dominant category is exact while it has no more than 16.
 */
#ifndef PERSONALIZE_SESSION_H
#define PERSONALIZE_SESSION_H

#include "state.h"

#define SESSION_DEFAULT_GAP    (30 * USECS_PER_MINUTE)
#define SESSION_MIN_HORIZON    (24 * USECS_PER_HOUR)
#define SESSION_MAX_SESSIONS   64
#define SESSION_MAX_CATEGORIES 16

typedef struct SessionCategory
{
	int64 count;
	int32 len;
	char *val;
} SessionCategory;

typedef struct Session
{
	TimestampTz start;
	TimestampTz end; /* last activity */
	int64 events;
	TimestampTz item_time; /* time of last_item; valid if item != NULL */
	char *item;
	int32 item_len;
	int32 ncat;
	int32 catcap;
	SessionCategory *cats; /* up to SESSION_MAX_CATEGORIES, plus one while adding */
} Session;

typedef struct SessionState
{
	PzState hdr;
	int64 gap; /* microseconds */
	int32 count;
	int32 cap;
	Session *sessions; /* by start; separated by more than gap */
} SessionState;

extern SessionState *session_new(int64 gap);
extern void session_add(SessionState *s, TimestampTz ts, const char *category, int32 catlen,
						const char *item, int32 itemlen);

/*
 * session_info(s) as jsonb: the current session, all fields; *isnull when
 * s holds no session.  Sorts the current session's categories in place.
 */
extern Datum session_info_datum(SessionState *s, bool *isnull);
/* the same as the JsonbValue tree (an object) it serializes; NULL when no session */
extern JsonbValue *session_info_value(SessionState *s);

#endif /* PERSONALIZE_SESSION_H */
