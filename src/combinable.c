/*
 * combinable.c
 *	  The trait aggregates in the form Citus combines across nodes: the
 *	  state type itself as the aggregate's STYPE, held while the aggregate
 *	  runs as an expanded object that the transition updates in place.
 *
 * Citus combines a user-defined aggregate over any GROUP BY only if it has
 * a COMBINEFUNC and a STYPE that is not a pseudo-type (docs/scale-out.md,
 * "Aggregates Citus can combine"): each worker then runs the transition
 * over its shards and ships the partial state as text (the state type's
 * output function), and the coordinator combines them.  The trait
 * aggregates (recent_agg, top_agg, ...) keep their state as `internal`,
 * which Citus never combines: every raw row would go to the coordinator.
 * So each has a combinable twin, <name>_combinable, with the same
 * arguments and the same result, whose STYPE is the result's state type.
 *
 * With a STYPE that is a real type, PostgreSQL hands the transition a
 * datum of that type at every row.  Flattening and reading the state at
 * every row would cost the aggregate its speed; so the state lives in an
 * expanded object (as array_agg's arrays do): the transition receives the
 * read-write pointer, folds the event into the in-memory state with the
 * very transition function of the local aggregate (called with the state
 * as its `internal` argument), and returns the same pointer.  The flat
 * form is made only when PostgreSQL or Citus needs it: a partial state
 * sent to the leader or to the coordinator, the final result.
 *
 * The combine function merges two states of one kind with the kind's
 * merge, in place into the first when it is the aggregate's own expanded
 * object.  It also works outside an aggregate (Citus's coordinator calls
 * it from its own aggregate), and it is the transition of
 * merge_agg_combinable(state) too.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/expandeddatum.h"
#include "utils/memutils.h"

#include "state.h"

/* the local aggregates' transition functions, whose state is `internal` */
extern Datum recent_agg_trans(PG_FUNCTION_ARGS);
extern Datum top_agg_trans(PG_FUNCTION_ARGS);
extern Datum windowed_agg_trans(PG_FUNCTION_ARGS);
extern Datum distinct_agg_trans(PG_FUNCTION_ARGS);
extern Datum first_agg_trans(PG_FUNCTION_ARGS);
extern Datum last_agg_trans(PG_FUNCTION_ARGS);
extern Datum session_agg_trans(PG_FUNCTION_ARGS);
extern Datum metric_agg_trans(PG_FUNCTION_ARGS);

/* the longest argument list of those transitions: top_agg with a weight */
#define COMBINABLE_MAX_ARGS 6

typedef struct PzExpandedState
{
	ExpandedObjectHeader hdr;
	PzState *state;          /* in state_cxt */
	MemoryContext state_cxt; /* the aggregate's context (or the caller's) */
	struct varlena *flat;    /* the flat form, made on demand, in the object's context */
} PzExpandedState;

static Size expanded_get_flat_size(ExpandedObjectHeader *eohptr);
static void expanded_flatten_into(ExpandedObjectHeader *eohptr, void *result, Size allocated_size);

static const ExpandedObjectMethods expanded_state_methods = {expanded_get_flat_size,
															 expanded_flatten_into};

static Size
expanded_get_flat_size(ExpandedObjectHeader *eohptr)
{
	PzExpandedState *es = (PzExpandedState *) eohptr;

	if (es->flat == NULL)
	{
		const PzKindOps *ops = pz_kind_ops(es->state->kind);
		MemoryContext old;

		/* what the state buffered is folded in first, where the state lives */
		if (ops->settle != NULL)
		{
			old = MemoryContextSwitchTo(es->state_cxt);
			ops->settle(es->state);
			MemoryContextSwitchTo(old);
		}
		old = MemoryContextSwitchTo(es->hdr.eoh_context);
		es->flat = pz_state_flatten(es->state);
		MemoryContextSwitchTo(old);
	}
	return VARSIZE(es->flat);
}

static void
expanded_flatten_into(ExpandedObjectHeader *eohptr, void *result, Size allocated_size)
{
	PzExpandedState *es = (PzExpandedState *) eohptr;

	Assert(es->flat != NULL && allocated_size == VARSIZE(es->flat));
	memcpy(result, es->flat, allocated_size);
}

#define EXPANDED_CXT_NAME "personalize expanded states"

/*
 * The context of the expanded objects under cxt: one child for all of
 * them.  An object must live in a child of the aggregate's context, or
 * nodeAgg copies it at every row; but a context for each (as expanded
 * arrays have) made a hash aggregate of many groups quadratic, since it
 * measures its memory by walking every child context at each new group.
 * The objects are never deleted one by one: an aggregate keeps its one
 * object to the end, and the aggregate's context goes with all of them.
 */
static MemoryContext
expanded_context(MemoryContext cxt)
{
	for (MemoryContext c = cxt->firstchild; c != NULL; c = c->nextchild)
		if (strcmp(c->name, EXPANDED_CXT_NAME) == 0)
			return c;
	return AllocSetContextCreate(cxt, EXPANDED_CXT_NAME, ALLOCSET_DEFAULT_SIZES);
}

/* a new expanded object under cxt holding s (which lives in cxt) */
static PzExpandedState *
expanded_new(PzState *s, MemoryContext cxt)
{
	MemoryContext objcxt = expanded_context(cxt);
	PzExpandedState *es = MemoryContextAllocZero(objcxt, sizeof(PzExpandedState));

	EOH_init_header(&es->hdr, &expanded_state_methods, objcxt);
	es->state = s;
	es->state_cxt = cxt;
	return es;
}

/* the state changed: its flat form is out of date */
static void
expanded_changed(PzExpandedState *es, PzState *s)
{
	es->state = s;
	if (es->flat != NULL)
	{
		pfree(es->flat);
		es->flat = NULL;
	}
}

/*
 * The state a datum holds, to be changed in place: the aggregate's own
 * expanded object as it is, anything else (a flat state, a read-only
 * pointer) read into a new one under cxt.  expect: the kind, or 0.
 */
static PzExpandedState *
expanded_arg(Datum d, MemoryContext cxt, PzKind expect)
{
	MemoryContext old;
	PzState *s;

	if (VARATT_IS_EXTERNAL_EXPANDED_RW(DatumGetPointer(d)))
	{
		ExpandedObjectHeader *eoh = DatumGetEOHP(d);

		if (eoh->eoh_methods == &expanded_state_methods)
			return (PzExpandedState *) eoh;
	}
	old = MemoryContextSwitchTo(cxt);
	s = pz_state_from_datum(d, expect);
	MemoryContextSwitchTo(old);
	return expanded_new(s, cxt);
}

/*
 * The transition of a combinable aggregate: the local aggregate's
 * transition (inner) over the state held by the expanded object.
 */
static Datum
combinable_trans(FunctionCallInfo fcinfo, PGFunction inner, const char *fname)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, fname);
	PzExpandedState *es = NULL;
	LOCAL_FCINFO(in, COMBINABLE_MAX_ARGS);
	Datum result;

	if (fcinfo->nargs > COMBINABLE_MAX_ARGS)
		elog(ERROR, "%s: too many arguments", fname);
	if (!PG_ARGISNULL(0))
		es = expanded_arg(PG_GETARG_DATUM(0), aggcontext, 0);
	/* the same call, with the in-memory state as the `internal` argument */
	InitFunctionCallInfoData(*in, fcinfo->flinfo, fcinfo->nargs, fcinfo->fncollation,
							 fcinfo->context, NULL);
	for (int i = 1; i < fcinfo->nargs; i++)
		in->args[i] = fcinfo->args[i];
	in->args[0].value = PointerGetDatum(es != NULL ? es->state : NULL);
	in->args[0].isnull = es == NULL;
	result = inner(in);
	if (in->isnull)
	{
		if (es == NULL)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(EOHPGetRWDatum(&es->hdr));
	}
	if (es == NULL)
		es = expanded_new((PzState *) DatumGetPointer(result), aggcontext);
	else
		expanded_changed(es, (PzState *) DatumGetPointer(result));
	PG_RETURN_DATUM(EOHPGetRWDatum(&es->hdr));
}

#define COMBINABLE_TRANS(name, inner)                                                              \
	PG_FUNCTION_INFO_V1(name);                                                                     \
	Datum name(PG_FUNCTION_ARGS)                                                                   \
	{                                                                                              \
		return combinable_trans(fcinfo, inner, #name);                                             \
	}

COMBINABLE_TRANS(pz_recent_combinable_trans, recent_agg_trans)
COMBINABLE_TRANS(pz_top_combinable_trans, top_agg_trans)
COMBINABLE_TRANS(pz_windowed_combinable_trans, windowed_agg_trans)
COMBINABLE_TRANS(pz_distinct_combinable_trans, distinct_agg_trans)
COMBINABLE_TRANS(pz_first_combinable_trans, first_agg_trans)
COMBINABLE_TRANS(pz_last_combinable_trans, last_agg_trans)
COMBINABLE_TRANS(pz_session_combinable_trans, session_agg_trans)
COMBINABLE_TRANS(pz_metric_combinable_trans, metric_agg_trans)

/*
 * combine(state, state): the two merged, in place into the first when it
 * is the aggregate's own expanded object.  NULL is the empty state.
 */
PG_FUNCTION_INFO_V1(pz_combinable_combine);
Datum
pz_combinable_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt;
	MemoryContext old;
	PzExpandedState *es;
	PzState *b;
	const PzKindOps *ops;

	if (!AggCheckCallContext(fcinfo, &cxt))
		cxt = CurrentMemoryContext;
	if (PG_ARGISNULL(1))
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	}
	if (PG_ARGISNULL(0))
	{
		/* the second becomes the accumulator: a copy of its own, here (read flat) */
		old = MemoryContextSwitchTo(cxt);
		b = pz_state_from_datum(PG_GETARG_DATUM(1), 0);
		MemoryContextSwitchTo(old);
		es = expanded_new(b, cxt);
		PG_RETURN_DATUM(EOHPGetRWDatum(&es->hdr));
	}
	es = expanded_arg(PG_GETARG_DATUM(0), cxt, 0);
	/* the second is read, never changed: its flat form, in this call's context */
	b = pz_state_from_datum(PG_GETARG_DATUM(1), es->state->kind);
	ops = pz_kind_ops(es->state->kind);
	old = MemoryContextSwitchTo(cxt);
	if (ops->settle != NULL)
		ops->settle(es->state);
	ops->merge(es->state, b);
	MemoryContextSwitchTo(old);
	expanded_changed(es, es->state);
	PG_RETURN_DATUM(EOHPGetRWDatum(&es->hdr));
}
