/*
 * profile_columns_scan.c
 *	  Custom Scan (ProfileColumns): the profile view's trait columns
 *	  computed on the rows they belong to, without a join.
 *
 * personalize.profile_view reads its trait columns from one call per row,
 *
 *	  FROM personalize.profiles p ...
 *	  LEFT JOIN LATERAL personalize.profile_columns(p.states, '<spec>') AS c(...) ON true
 *
 * which PostgreSQL plans as a Nested Loop whose inner side is a Function
 * Scan, run again for every outer row: it puts the call's one row into a
 * tuplestore and reads it back.  For a point read the machinery cost more
 * than the decoding: each execution builds the function scan's tuple
 * descriptor from the column definition list (a type look-up per column),
 * parses the spec and sets up the tuplestore, the join and the scan.
 *
 * A planner hook replaces each such Nested Loop, once the plan is made, by
 * this node.  For every row of the join's outer side it computes the
 * function's columns itself (profile_columns.h, the code profile_columns()
 * runs), then applies what the join and the function scan applied: the
 * function scan's filter and projection, the join's filter (a row that
 * fails it is dropped, or for a LEFT join kept with the columns NULL), the
 * join's other filter and its projection, with the outer and inner tuples
 * where the Nested Loop had them.  So the node above sees the same rows
 * and the same columns; the targetlist and filters are the Nested Loop's,
 * unchanged.
 *
 * The function scan stays in the plan as the node's inner plan, never
 * run: EXPLAIN names the function's columns through it.  EXPLAIN VERBOSE
 * shows the call ("Function Call"), with the spec the projection hook
 * (profile_scan.c) rewrote.  personalize.view_custom_scan = off keeps the
 * Nested Loop (for comparison).
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "executor/nodeCustom.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/planner.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"

#include "profile.h"
#include "profile_columns.h"
#include "profile_scan.h"

#define NODE_NAME "ProfileColumns"

bool pz_view_custom_scan = true;

static planner_hook_type prev_planner_hook = NULL;

/* custom_private: the join type, the join filter, the Nested Loop's parameters */
enum
{
	PRIV_JOINTYPE,
	PRIV_JOINQUAL,
	PRIV_NESTPARAMS,
	PRIV_COUNT
};

typedef struct ColumnsScanState
{
	CustomScanState css;
	JoinType jointype;
	List *nest_params;          /* NestLoopParam: set from each outer row */
	ExprState *joinqual;        /* the join's own filter, or NULL */
	ExprState *states_arg;      /* the call's first argument */
	ExprState *fqual;           /* the function scan's filter, or NULL */
	ProjectionInfo *fproj;      /* its projection, NULL if it returns the columns as they are */
	PcSpec *spec;               /* the call's spec, parsed */
	PzState **states;           /* per trait of the spec */
	TupleTableSlot *columns;    /* the function's row */
	TupleTableSlot *null_inner; /* the inner side of a LEFT join's row with no match */
	TimestampTz now;            /* windows are evaluated at the transaction's start */
} ColumnsScanState;

static Node *create_state(CustomScan *cscan);
static void begin_scan(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *exec_scan(CustomScanState *node);
static void end_scan(CustomScanState *node);
static void rescan(CustomScanState *node);
static void explain_scan(CustomScanState *node, List *ancestors, ExplainState *es);

static const CustomScanMethods scan_methods = {
	.CustomName = NODE_NAME,
	.CreateCustomScanState = create_state,
};

static const CustomExecMethods exec_methods = {
	.CustomName = NODE_NAME,
	.BeginCustomScan = begin_scan,
	.ExecCustomScan = exec_scan,
	.EndCustomScan = end_scan,
	.ReScanCustomScan = rescan,
	.ExplainCustomScan = explain_scan,
};

/* ---- planning: the Nested Loops to replace ---- */

/*
 * The call of a Function Scan that reads profile_columns(states, '<spec>')
 * alone, with a constant spec whose columns the column definition list
 * declares with the spec's types; NULL otherwise.
 */
static FuncExpr *
columns_call(Plan *plan)
{
	FunctionScan *fs;
	RangeTblFunction *rtf;
	FuncExpr *f;
	Const *spec;
	PcSpec *parsed;
	ListCell *t, *m;
	int i = 0;

	if (plan == NULL || !IsA(plan, FunctionScan) || plan->initPlan != NIL)
		return NULL;
	fs = (FunctionScan *) plan;
	if ((f = pz_profile_columns_call(fs->functions, fs->funcordinality)) == NULL)
		return NULL;
	rtf = linitial_node(RangeTblFunction, fs->functions);
	spec = lsecond_node(Const, f->args);
	/* a spec that is not valid ERRORs here as the call would when run */
	parsed = pc_spec_parse_cached(VARDATA_ANY(DatumGetPointer(spec->constvalue)),
								  VARSIZE_ANY_EXHDR(DatumGetPointer(spec->constvalue)), NULL);
	/* a column definition list that does not fit: the call's ERROR, when run */
	if (list_length(rtf->funccoltypes) != parsed->ncols)
		return NULL;
	forboth(t, rtf->funccoltypes, m, rtf->funccoltypmods)
	{
		if (lfirst_oid(t) != pc_column_type(parsed, i++) || lfirst_int(m) != -1)
			return NULL;
	}
	return f;
}

static Plan *
columns_scan_from(NestLoop *nl)
{
	CustomScan *cs;
	Plan *inner = innerPlan(nl);

	if (nl->join.jointype != JOIN_INNER && nl->join.jointype != JOIN_LEFT)
		return (Plan *) nl;
	if (columns_call(inner) == NULL)
		return (Plan *) nl;

	cs = makeNode(CustomScan);
	cs->scan.plan.startup_cost = nl->join.plan.startup_cost;
	cs->scan.plan.total_cost = nl->join.plan.total_cost;
	cs->scan.plan.plan_rows = nl->join.plan.plan_rows;
	cs->scan.plan.plan_width = nl->join.plan.plan_width;
	cs->scan.plan.parallel_aware = false;
	cs->scan.plan.parallel_safe = nl->join.plan.parallel_safe;
	cs->scan.plan.async_capable = false;
	cs->scan.plan.plan_node_id = nl->join.plan.plan_node_id;
	cs->scan.plan.targetlist = nl->join.plan.targetlist;
	cs->scan.plan.qual = nl->join.plan.qual;
	cs->scan.plan.lefttree = outerPlan(nl);
	cs->scan.plan.righttree = inner; /* never run: EXPLAIN names the columns through it */
	cs->scan.plan.initPlan = nl->join.plan.initPlan;
	cs->scan.plan.extParam = nl->join.plan.extParam;
	cs->scan.plan.allParam = nl->join.plan.allParam;
	cs->scan.scanrelid = 0;
	cs->flags = 0;
	cs->custom_plans = NIL;
	cs->custom_exprs = NIL;
	cs->custom_private =
		list_make3(makeInteger(nl->join.jointype), nl->join.joinqual, nl->nestParams);
	cs->custom_scan_tlist = NIL;
	cs->custom_relids = bms_make_singleton(((Scan *) inner)->scanrelid);
	cs->methods = &scan_methods;
	return (Plan *) cs;
}

static List *rewrite_list(List *plans);

/* the plan with every Nested Loop over a profile_columns() scan replaced, bottom up */
static Plan *
rewrite_plan(Plan *plan)
{
	if (plan == NULL)
		return NULL;
	check_stack_depth();
	plan->lefttree = rewrite_plan(plan->lefttree);
	plan->righttree = rewrite_plan(plan->righttree);
	switch (nodeTag(plan))
	{
		case T_Append:
			((Append *) plan)->appendplans = rewrite_list(((Append *) plan)->appendplans);
			break;
		case T_MergeAppend:
			((MergeAppend *) plan)->mergeplans = rewrite_list(((MergeAppend *) plan)->mergeplans);
			break;
		case T_BitmapAnd:
			((BitmapAnd *) plan)->bitmapplans = rewrite_list(((BitmapAnd *) plan)->bitmapplans);
			break;
		case T_BitmapOr:
			((BitmapOr *) plan)->bitmapplans = rewrite_list(((BitmapOr *) plan)->bitmapplans);
			break;
		case T_SubqueryScan:
			((SubqueryScan *) plan)->subplan = rewrite_plan(((SubqueryScan *) plan)->subplan);
			break;
		case T_CustomScan:
			((CustomScan *) plan)->custom_plans = rewrite_list(((CustomScan *) plan)->custom_plans);
			break;
		case T_NestLoop:
			return columns_scan_from((NestLoop *) plan);
		default:
			break;
	}
	return plan;
}

static List *
rewrite_list(List *plans)
{
	ListCell *lc;

	foreach (lc, plans)
		lfirst(lc) = rewrite_plan((Plan *) lfirst(lc));
	return plans;
}

static PlannedStmt *
columns_scan_planner(Query *parse, const char *query_string, int cursorOptions,
					 ParamListInfo boundParams)
{
	PlannedStmt *stmt = prev_planner_hook
							? prev_planner_hook(parse, query_string, cursorOptions, boundParams)
							: standard_planner(parse, query_string, cursorOptions, boundParams);

	if (pz_view_custom_scan && stmt->commandType != CMD_UTILITY)
	{
		stmt->planTree = rewrite_plan(stmt->planTree);
		stmt->subplans = rewrite_list(stmt->subplans);
	}
	return stmt;
}

/* ---- execution ---- */

static Node *
create_state(CustomScan *cscan)
{
	ColumnsScanState *s = palloc0(sizeof(ColumnsScanState));

	NodeSetTag(s, T_CustomScanState);
	s->css.methods = &exec_methods;
	return (Node *) s;
}

/* whether a function scan's targetlist returns the function's columns as they are */
static bool
returns_columns(FunctionScan *fs, int ncols)
{
	ListCell *lc;
	int i = 0;

	if (list_length(fs->scan.plan.targetlist) != ncols)
		return false;
	foreach (lc, fs->scan.plan.targetlist)
	{
		Var *v = (Var *) lfirst_node(TargetEntry, lc)->expr;

		if (!IsA(v, Var) || v->varno != fs->scan.scanrelid || v->varattno != ++i ||
			v->varlevelsup != 0)
			return false;
	}
	return true;
}

static void
begin_scan(CustomScanState *node, EState *estate, int eflags)
{
	ColumnsScanState *s = (ColumnsScanState *) node;
	CustomScan *cs = (CustomScan *) node->ss.ps.plan;
	FunctionScan *fs = (FunctionScan *) innerPlan(cs);
	RangeTblFunction *rtf = linitial_node(RangeTblFunction, fs->functions);
	FuncExpr *f = (FuncExpr *) rtf->funcexpr;
	Const *spec = lsecond_node(Const, f->args);
	TupleDesc desc;
	TupleDesc inner_desc;
	ListCell *lc;
	int i = 0;

	s->jointype = (JoinType) intVal(list_nth(cs->custom_private, PRIV_JOINTYPE));
	s->nest_params = list_nth(cs->custom_private, PRIV_NESTPARAMS);
	s->joinqual = ExecInitQual(list_nth(cs->custom_private, PRIV_JOINQUAL), &node->ss.ps);
	outerPlanState(node) = ExecInitNode(outerPlan(cs), estate, eflags);

	s->spec = pc_spec_parse_cached(VARDATA_ANY(DatumGetPointer(spec->constvalue)),
								   VARSIZE_ANY_EXHDR(DatumGetPointer(spec->constvalue)), &desc);
	s->spec->colnames = palloc(sizeof(char *) * Max(s->spec->ncols, 1));
	foreach (lc, rtf->funccolnames)
		s->spec->colnames[i++] = strVal(lfirst(lc));
	s->states = palloc0(sizeof(PzState *) * Max(s->spec->ntraits, 1));
	s->columns = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
	s->states_arg = ExecInitExpr(linitial(f->args), &node->ss.ps);
	s->fqual = ExecInitQual(fs->scan.plan.qual, &node->ss.ps);
	inner_desc = desc;
	if (!returns_columns(fs, s->spec->ncols))
	{
		inner_desc = ExecTypeFromTL(fs->scan.plan.targetlist);
		s->fproj = ExecBuildProjectionInfo(
			fs->scan.plan.targetlist, node->ss.ps.ps_ExprContext,
			ExecInitExtraTupleSlot(estate, inner_desc, &TTSOpsVirtual), &node->ss.ps, desc);
	}
	if (s->jointype == JOIN_LEFT)
		s->null_inner = ExecInitNullTupleSlot(estate, inner_desc, &TTSOpsVirtual);
	s->now = GetCurrentTransactionStartTimestamp();
}

/* the function's row for the current outer row; NULL if its scan's filter drops it */
static TupleTableSlot *
inner_row(ColumnsScanState *s, ExprContext *econtext)
{
	const PcSpec *spec = s->spec;
	TupleTableSlot *slot = s->columns;
	bool isnull;
	Datum states = ExecEvalExpr(s->states_arg, econtext, &isnull);
	Profile *p = isnull ? NULL : profile_from_datum(states);

	ExecClearTuple(slot);
	pc_spec_read(spec, p, s->states);
	for (int i = 0; i < spec->ncols; i++)
	{
		const PcColumn *col = &spec->cols[i];

		if (col->skip)
		{
			slot->tts_values[i] = (Datum) 0;
			slot->tts_isnull[i] = true;
		}
		else
			slot->tts_values[i] =
				pc_column_value(col, s->states[col->slot], s->now, &slot->tts_isnull[i], NULL);
	}
	ExecStoreVirtualTuple(slot);
	econtext->ecxt_scantuple = slot;
	if (s->fqual != NULL && !ExecQual(s->fqual, econtext))
		return NULL;
	return s->fproj != NULL ? ExecProject(s->fproj) : slot;
}

static TupleTableSlot *
exec_scan(CustomScanState *node)
{
	ColumnsScanState *s = (ColumnsScanState *) node;
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	ExprState *otherqual = node->ss.ps.qual;

	for (;;)
	{
		TupleTableSlot *outer;
		TupleTableSlot *inner;
		MemoryContext old;
		ListCell *lc;

		CHECK_FOR_INTERRUPTS();
		ResetExprContext(econtext);
		outer = ExecProcNode(outerPlanState(node));
		if (TupIsNull(outer))
			return NULL;
		econtext->ecxt_outertuple = outer;
		/* the parameters the Nested Loop passed to its inner side */
		foreach (lc, s->nest_params)
		{
			NestLoopParam *nlp = lfirst_node(NestLoopParam, lc);
			ParamExecData *prm = &econtext->ecxt_param_exec_vals[nlp->paramno];

			prm->value = slot_getattr(outer, nlp->paramval->varattno, &prm->isnull);
		}

		old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
		inner = inner_row(s, econtext);
		MemoryContextSwitchTo(old);
		if (inner != NULL)
		{
			econtext->ecxt_innertuple = inner;
			if (s->joinqual != NULL && !ExecQual(s->joinqual, econtext))
			{
				InstrCountFiltered2(node, 1);
				inner = NULL;
			}
		}
		if (inner == NULL)
		{
			if (s->jointype != JOIN_LEFT)
				continue;
			econtext->ecxt_innertuple = s->null_inner;
		}
		if (otherqual != NULL && !ExecQual(otherqual, econtext))
		{
			InstrCountFiltered1(node, 1);
			continue;
		}
		if (node->ss.ps.ps_ProjInfo != NULL)
			return ExecProject(node->ss.ps.ps_ProjInfo);
		/* no column at all (SELECT count(*) ...): an empty row */
		ExecClearTuple(node->ss.ss_ScanTupleSlot);
		return ExecStoreVirtualTuple(node->ss.ss_ScanTupleSlot);
	}
}

static void
end_scan(CustomScanState *node)
{
	ExecEndNode(outerPlanState(node));
}

static void
rescan(CustomScanState *node)
{
	PlanState *outer = outerPlanState(node);

	/* with changed parameters, the outer plan is rescanned when next run */
	if (outer->chgParam == NULL)
		ExecReScan(outer);
}

/* the call as the Function Scan showed it: its parameters as the outer columns they are */
static Node *
params_as_outer(Node *node, List *nest_params)
{
	ListCell *lc;

	if (node == NULL)
		return NULL;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXEC)
		foreach (lc, nest_params)
		{
			NestLoopParam *nlp = lfirst_node(NestLoopParam, lc);

			if (nlp->paramno == ((Param *) node)->paramid)
				return (Node *) copyObject(nlp->paramval);
		}
	return expression_tree_mutator(node, params_as_outer, nest_params);
}

static void
explain_scan(CustomScanState *node, List *ancestors, ExplainState *es)
{
	ColumnsScanState *s = (ColumnsScanState *) node;
	CustomScan *cs = (CustomScan *) node->ss.ps.plan;
	FunctionScan *fs = (FunctionScan *) innerPlan(cs);
	List *joinqual = list_nth(cs->custom_private, PRIV_JOINQUAL);
	List *context = set_deparse_context_plan(es->deparse_cxt, (Plan *) cs, ancestors);
	bool useprefix = es->verbose || list_length(es->rtable) > 1;

	ExplainPropertyText("Join Type", s->jointype == JOIN_LEFT ? "Left" : "Inner", es);
	if (es->verbose)
	{
		Node *call = params_as_outer(linitial_node(RangeTblFunction, fs->functions)->funcexpr,
									 s->nest_params);

		ExplainPropertyText("Function Call", deparse_expression(call, context, useprefix, false),
							es);
	}
	if (joinqual != NIL)
		ExplainPropertyText(
			"Join Filter",
			deparse_expression((Node *) make_ands_explicit(joinqual), context, useprefix, false),
			es);
	if (fs->scan.plan.qual != NIL)
		ExplainPropertyText(
			"Function Filter",
			deparse_expression(
				params_as_outer((Node *) make_ands_explicit(fs->scan.plan.qual), s->nest_params),
				context, useprefix, false),
			es);
}

void
pz_profile_columns_scan_init(void)
{
	DefineCustomBoolVariable(
		"personalize.view_custom_scan",
		"Scans of the profile view compute its trait columns in a Custom Scan (ProfileColumns) "
		"node.",
		"With off, they come from a Nested Loop over a Function Scan of profile_columns(), as "
		"PostgreSQL plans the view (for comparison).",
		&pz_view_custom_scan, true, PGC_USERSET, 0, NULL, NULL, NULL);
	RegisterCustomScanMethods(&scan_methods);
	prev_planner_hook = planner_hook;
	planner_hook = columns_scan_planner;
}
