/*
 * metric.h
 *	  metric: the exact numeric traits count, sum, min and max.  A state
 *	  holds its op, the number of events folded into it (for every op) and,
 *	  for sum, min and max, the sum, minimum or maximum as a numeric, so sums
 *	  are exact.  Merge adds the counts and adds the sums or takes the
 *	  minimum or maximum; states of different ops do not merge.  Values equal
 *	  as numbers but written with different scales (1.5 and 1.50) are told
 *	  apart by scale: min and max keep the one with more digits after the
 *	  point, so merge is associative and commutative on the stored form too.
 *
 * Flat body: 1 byte op, varint count (>= 1), then for sum, min and max the
 * value as its canonical text (what numeric_out writes), length-prefixed.
 */
#ifndef PERSONALIZE_METRIC_H
#define PERSONALIZE_METRIC_H

#include "utils/numeric.h"

#include "state.h"

#define METRIC_COUNT 1
#define METRIC_SUM   2
#define METRIC_MIN   3
#define METRIC_MAX   4

typedef struct MetricState
{
	PzState hdr;   /* PZ_KIND_METRIC */
	uint8 op;      /* METRIC_COUNT .. METRIC_MAX */
	int64 count;   /* events folded in, for every op */
	Numeric value; /* sum, min or max (finite); NULL for op count or while count is 0 */
} MetricState;

/* an empty state (count 0) of op, in CurrentMemoryContext */
extern MetricState *metric_new(uint8 op);

/*
 * Fold one event into s, allocating in CurrentMemoryContext (where s lives).
 * v is ignored for op count (it may be NULL); for sum, min and max it must
 * be a finite, non-NULL numeric (ERROR otherwise): skip events without a
 * value, as metric_agg does.  v is copied, never kept.
 */
extern void metric_add(MetricState *s, Numeric v);

/* "count", "sum", "min" or "max" -> its op; ERROR for anything else */
extern uint8 metric_op_from_name(const char *name);

/* the op's name */
extern const char *metric_op_name(uint8 op);

/* metric_value(s) as numeric (for op count, the count) and metric_count(s) as bigint */
extern Datum metric_value_datum(const MetricState *s);
extern Datum metric_count_datum(const MetricState *s);

#endif /* PERSONALIZE_METRIC_H */
