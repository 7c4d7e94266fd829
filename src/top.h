/*
 * top.h
 *	  top(N, half-life): per-value weights that decay with event time, so the
 *	  ranking says what a shopper likes now rather than two years ago.  An
 *	  event at time t adds weight * 2^((t - latest) / half_life); weights are
 *	  kept relative to the latest event time, so a read at any later "now" only
 *	  scales them all alike and never reorders them.
 *
 *	  A stored state keeps the N heaviest values; in memory, while events and
 *	  partial states are folded, it keeps up to 4 N candidates.  A merge sums
 *	  the weights of equal values and keeps the heaviest (ties by value bytes);
 *	  while a trait has no more than N distinct values this is exact,
 *	  associative and commutative (up to floating-point rounding of the
 *	  weights).  Beyond that the state is a Space-Saving summary: a newcomer
 *	  takes the lightest candidate's place and inherits its weight.
 */
#ifndef PERSONALIZE_TOP_H
#define PERSONALIZE_TOP_H

#include "state.h"

#define TOP_MAX_N 1000

typedef struct TopItem
{
	double w;    /* relative to base */
	uint32 hash; /* of the value: finding a value compares hashes first */
	int32 len;
	char *val;
} TopItem;

typedef struct TopState
{
	PzState hdr;
	int32 n;            /* capacity */
	int64 half_life;    /* microseconds */
	TimestampTz latest; /* latest event time */
	TimestampTz base;   /* weights are relative to this time */
	int32 count;
	int32 cap;
	TopItem *items; /* unsorted in memory; sorted when written */
} TopState;

extern TopState *top_new(int32 n, int64 half_life, TimestampTz first_event);
extern void top_add(TopState *s, const char *val, int32 len, TimestampTz ts, double weight);

/*
 * top_values(s [, k]): the first k values (k >= 0; more than the state
 * holds reads them all) as text[], heaviest first.  s is a state read from
 * its flat form, whose values are sorted.
 */
extern Datum top_values_datum(const TopState *s, int32 k);

#endif /* PERSONALIZE_TOP_H */
