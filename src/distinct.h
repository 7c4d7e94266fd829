/*
 * distinct.h
 *	  distinct count: a HyperLogLog sketch with 2^p one-byte registers
 *	  (p = 4..16, default 12), held sparse (only the non-zero registers: a
 *	  hash set in memory, a sorted list when stored) while that is smaller
 *	  than the dense array.  Merge takes the
 *	  register-wise maximum, so it is exactly associative and commutative.
 *	  The estimate is Ertl's improved estimator ("New cardinality estimation
 *	  algorithms for HyperLogLog sketches", 2017), which needs no empirical
 *	  bias tables and is accurate from 0 upward.  Standard error 1.04/sqrt(2^p):
 *	  1.6 % at p = 12.
 */
#ifndef PERSONALIZE_DISTINCT_H
#define PERSONALIZE_DISTINCT_H

#include "state.h"

#define DISTINCT_MIN_P     4
#define DISTINCT_MAX_P     16
#define DISTINCT_DEFAULT_P 12

/*
 * registers an aggregate buffers before it sets them (see distinct_buffer_hash):
 * as many as fill the state's 128-byte chunk
 */
#define DISTINCT_PENDING 7

typedef struct DistinctState
{
	PzState hdr;
	int32 p;
	uint8 *regs;                      /* dense registers, or NULL while sparse */
	uint32 *table;                    /* sparse: hash set of (index << 8 | rank), 0 = empty slot */
	int32 tsize;                      /* slots in table, a power of two */
	int32 nnz;                        /* entries in table */
	int32 npending;                   /* buffered registers, not yet set */
	uint32 pending[DISTINCT_PENDING]; /* (index << 8 | rank) */
	uint32 inline_table[16];          /* the table while it has 16 slots */
} DistinctState;

extern DistinctState *distinct_new(int32 p);
extern uint64 distinct_hash(const char *val, int32 len);
extern void distinct_add_hash(DistinctState *s, uint64 h);
/* buffer a hashed value; it reaches the registers by the next distinct_settle */
extern void distinct_buffer_hash(DistinctState *s, uint64 h);
extern void distinct_settle(PzState *s);
extern double distinct_estimate(DistinctState *s);

/* distinct_count(s): the estimate as bigint, rounded, saturating */
extern Datum distinct_count_datum(DistinctState *s);

#endif /* PERSONALIZE_DISTINCT_H */
