/*
 * recent.h
 *	  recent(N): the N most recent distinct values of a trait, with the time
 *	  each was last seen.  Merge keeps, per value, its latest time, then the
 *	  N newest; merging states of different N keeps the smaller N (that is
 *	  what keeps the merge associative).
 */
#ifndef PERSONALIZE_RECENT_H
#define PERSONALIZE_RECENT_H

#include "state.h"

#define RECENT_MAX_N 1000

typedef struct RecentItem
{
	TimestampTz ts;
	int32 len;
	char *val;
} RecentItem;

typedef struct RecentState
{
	PzState hdr;
	int32 n; /* capacity */
	int32 count;
	RecentItem *items; /* newest first; ties by value bytes */
} RecentState;

extern RecentState *recent_new(int32 n);
extern void recent_add(RecentState *s, const char *val, int32 len, TimestampTz ts);

/* recent_values(s): the values as text[], newest first */
extern Datum recent_values_datum(const RecentState *s);

#endif /* PERSONALIZE_RECENT_H */
