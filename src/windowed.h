/*
 * windowed.h
 *	  windowed count/sum: events counted (and their values summed) into
 *	  sparse time buckets whose width grows with age, so that "how many in the
 *	  last hour / day / week / month" is answered at read time against any
 *	  "now".  Relative to the state's head (its latest event time):
 *
 *		minute buckets  from the start of the hour before head's hour
 *		hour buckets    from midnight (UTC) two days before head's day
 *		day buckets     from midnight (UTC) 90 days before head's day
 *		older events    only in the lifetime totals
 *
 *	  Zone edges fall on whole hours and days, so re-bucketing a bucket
 *	  under a later head gives the bucket its events would have had anyway:
 *	  the state is a function of the events alone, and merge is exact.
 *	  A read counts the buckets that start at or after now - window (and not
 *	  after now): exact when now - window falls on a bucket edge, otherwise
 *	  the partly covered bucket at the far edge is left out.
 */
#ifndef PERSONALIZE_WINDOWED_H
#define PERSONALIZE_WINDOWED_H

#include "state.h"

/*
 * events an aggregate buffers before it buckets them (see windowed_buffer);
 * few, so that the whole state fits a 128-byte chunk: a hash aggregate over
 * many groups is bound by cache and TLB misses, and they grow with memory
 */
#define WINDOWED_PENDING 4

typedef struct WindowEvent
{
	TimestampTz ts;
	double value;
} WindowEvent;

/*
 * The buckets, by start ascending, are held as columns: a count-only bucket
 * takes 12 bytes (its count, and its start as a 32-bit distance back from
 * zones_until in minutes, which the zones keep under 92 days), its sum only
 * once some bucket's is not 0.  A hash aggregate over many groups is bound
 * by the memory it touches.
 */
typedef struct WindowedState
{
	PzState hdr;
	int32 nbuckets;
	TimestampTz head;        /* latest event time */
	TimestampTz zones_until; /* end of head's hour: the zone edges move when head passes it */
	int64 count;             /* lifetime totals */
	double sum;
	int32 cap;
	int32 npending; /* buffered events, not yet in totals or buckets */
	int64 *counts;  /* [cap] counts, then [cap] int32 starts (windowed_mins) */
	double *sums;   /* [cap] sums, or NULL while every bucket's is 0 */
	WindowEvent pending[WINDOWED_PENDING];
} WindowedState;

extern WindowedState *windowed_new(TimestampTz first_event);
extern void windowed_add(WindowedState *s, TimestampTz ts, double value);
/* buffer an event; it reaches the buckets by the next windowed_settle */
extern void windowed_buffer(WindowedState *s, TimestampTz ts, double value);
extern void windowed_settle(PzState *s);
extern void windowed_read(const WindowedState *s, TimestampTz at, int64 window_us, int64 *count,
						  double *sum);

/*
 * The moments after `after` at which a read over window_us changes (a
 * bucket enters the window or leaves it), ascending, at most max of them
 * into out; returns how many, *more whether there are later ones.
 */
extern int windowed_changes(const WindowedState *s, int64 window_us, TimestampTz after,
							TimestampTz *out, int max, bool *more);

/*
 * windowed_count(s, span, at) as bigint and windowed_sum(s, span, at) as
 * float8: window_us is the span in microseconds (> 0), at is finite.
 */
extern Datum windowed_count_datum(const WindowedState *s, int64 window_us, TimestampTz at);
extern Datum windowed_sum_datum(const WindowedState *s, int64 window_us, TimestampTz at);

#endif /* PERSONALIZE_WINDOWED_H */
