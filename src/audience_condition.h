/*
 * audience_condition.h
 *	  An audience's condition (audience_condition.c): a boolean SQL
 *	  expression over the profile view's columns, checked, compiled as its
 *	  owner, and analysed for the passing of time.
 *
 * A compiled condition is evaluated against one view row in a virtual
 * slot (econtext->ecxt_scantuple) with the clock as parameter 1 (a
 * timestamptz): so the same expression answers "now" and "at time t",
 * which is how the next moment its result can change is found.
 */
#ifndef PERSONALIZE_AUDIENCE_CONDITION_H
#define PERSONALIZE_AUDIENCE_CONDITION_H

#include "postgres.h"

#include "executor/executor.h"
#include "nodes/bitmapset.h"

#include "profile_columns.h"

/* the view's columns before the traits' (profile_id ... updated_at) */
#define PZ_VIEW_NBASE 6

typedef struct PzCondition
{
	Expr *expr;         /* the condition, planned, the clock as parameter 1 */
	Bitmapset *attrs;   /* the view's columns it reads (attribute numbers) */
	bool reads_clock;   /* now() and its kin */
	bool reads_windows; /* a windowed column, which changes with time */
	List *atoms;        /* its comparisons with the clock (OpExpr), each monotone in it */
} PzCondition;

/*
 * Parse and check condition text against the view (relation view, whose
 * trait columns spec describes) as role owner: ERROR with a hint if it is
 * not a boolean expression over the view's columns that owner may read,
 * calls a function owner may not execute, holds a subquery, an aggregate,
 * a window or set-returning function, a volatile function other than the
 * clock, or reads time in a way that cannot be scheduled exactly.  The
 * result is a plain node tree (in CurrentMemoryContext), kept across
 * transactions; ExecInitExpr it as owner for each run, which checks
 * EXECUTE again.
 */
extern PzCondition *pz_condition_compile(const char *text, Oid owner, Oid view, const PcSpec *spec);

/*
 * ERROR unless owner may SELECT every column of the view the condition
 * reads: checked when it is compiled and again at every run.
 */
extern void pz_condition_check_columns(const PzCondition *c, Oid view, Oid owner);

/* whether a (compiled) expression reads the clock */
extern bool pz_condition_reads_clock(Node *node);

/* the view's attribute number of trait column i of spec */
#define PZ_VIEW_TRAIT_ATTNO(i) ((AttrNumber) (PZ_VIEW_NBASE + 1 + (i)))

#endif /* PERSONALIZE_AUDIENCE_CONDITION_H */
