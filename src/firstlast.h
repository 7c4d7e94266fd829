/*
 * firstlast.h
 *	  first and last: the value of the earliest (or latest) event by event
 *	  time, not by arrival, so late events land where they belong.  Ties on
 *	  time are broken by value bytes: first keeps the smallest value, last the
 *	  largest, so either is simply the minimum (maximum) of (time, value).
 */
#ifndef PERSONALIZE_FIRSTLAST_H
#define PERSONALIZE_FIRSTLAST_H

#include "state.h"

typedef struct TimedValueState
{
	PzState hdr; /* PZ_KIND_FIRST or PZ_KIND_LAST */
	TimestampTz ts;
	int32 len;
	char *val;
} TimedValueState;

extern TimedValueState *timed_value_new(PzKind kind, const char *val, int32 len, TimestampTz ts);
extern void timed_value_add(TimedValueState *s, const char *val, int32 len, TimestampTz ts);

/* event_value(s) as text and event_time(s) as timestamptz, first or last */
extern Datum event_value_datum(const TimedValueState *s);
extern Datum event_time_datum(const TimedValueState *s);

#endif /* PERSONALIZE_FIRSTLAST_H */
