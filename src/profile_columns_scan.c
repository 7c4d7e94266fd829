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
 * Only a call that reads the outer row (the join passes it parameters)
 * and has no volatile argument is replaced: a Function Scan whose
 * parameters do not change computes its row once.  The node does what the
 * Function Scan's start did (EXECUTE on the function checked, the execute
 * hook called), and raises the call's errors where the call raised them:
 * a spec that is not valid, or a column definition list that does not
 * fit it, on the first row computed.  Under EvalPlanQual (a row locked by
 * FOR UPDATE that another transaction changed) the columns are computed
 * again from the row as rechecked, where the Function Scan returned the
 * copy of its row it had kept.
 *
 * The function scan stays in the plan as the node's inner plan, never
 * run: EXPLAIN names the function's columns through it.  EXPLAIN VERBOSE
 * shows the call ("Function Call"), with the spec the projection hook
 * (profile_scan.c) rewrote.  personalize.view_custom_scan = off keeps the
 * Nested Loop (for comparison).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "executor/nodeCustom.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "utils/acl.h"
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
 * alone, with a constant spec; NULL otherwise.  The spec and the column
 * definition list are checked when the node first computes a row, where
 * the call would have raised their errors (not in an EXPLAIN, nor when the
 * outer side returns no row).
 */
static FuncExpr *
columns_call(Plan *plan)
{
	FunctionScan *fs;

	if (plan == NULL || !IsA(plan, FunctionScan) || plan->initPlan != NIL)
		return NULL;
	fs = (FunctionScan *) plan;
	return pz_profile_columns_call(fs->functions, fs->funcordinality);
}

static Plan *
columns_scan_from(NestLoop *nl)
{
	CustomScan *cs;
	Plan *inner = innerPlan(nl);
	FuncExpr *f;

	if (nl->join.jointype != JOIN_INNER && nl->join.jointype != JOIN_LEFT)
		return (Plan *) nl;
	/*
	 * Only a call that reads the outer row (LATERAL): a Function Scan whose
	 * parameters do not change computes its row once and reads it back from
	 * its tuplestore for every outer row, where this node computes it for
	 * each (and a volatile argument would then give other rows).
	 */
	if ((f = columns_call(inner)) == NULL || nl->nestParams == NIL ||
		contain_volatile_functions((Node *) f))
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
	FuncExpr *f = (FuncExpr *) linitial_node(RangeTblFunction, fs->functions)->funcexpr;
	AclResult acl;

	/* what the Function Scan's initialization checked (init_sexpr) */
	acl = pg_proc_aclcheck(f->funcid, GetUserId(), ACL_EXECUTE);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_FUNCTION, get_func_name(f->funcid));
	InvokeFunctionExecuteHook(f->funcid);

	s->jointype = (JoinType) intVal(list_nth(cs->custom_private, PRIV_JOINTYPE));
	s->nest_params = list_nth(cs->custom_private, PRIV_NESTPARAMS);
	s->joinqual = ExecInitQual(list_nth(cs->custom_private, PRIV_JOINQUAL), &node->ss.ps);
	s->states_arg = ExecInitExpr(linitial(f->args), &node->ss.ps);
	s->fqual = ExecInitQual(fs->scan.plan.qual, &node->ss.ps);
	s->now = GetCurrentTransactionStartTimestamp();
	outerPlanState(node) = ExecInitNode(outerPlan(cs), estate, eflags);
}

/*
 * On the first outer row, as the call would on its first: the spec parsed
 * and the column definition list checked against it (the call's ERRORs),
 * the function's row and the null row of a LEFT join.
 */
static void
columns_setup(ColumnsScanState *s)
{
	CustomScanState *node = &s->css;
	EState *estate = node->ss.ps.state;
	FunctionScan *fs = (FunctionScan *) innerPlan(node->ss.ps.plan);
	RangeTblFunction *rtf = linitial_node(RangeTblFunction, fs->functions);
	text *spec =
		DatumGetTextPP(lsecond_node(Const, ((FuncExpr *) rtf->funcexpr)->args)->constvalue);
	int n = list_length(rtf->funccoltypes);
	MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);
	const char **names = palloc(sizeof(char *) * Max(n, 1));
	Oid *types = palloc(sizeof(Oid) * Max(n, 1));
	int32 *typmods = palloc(sizeof(int32) * Max(n, 1));
	TupleDesc desc;
	TupleDesc inner_desc;

	s->spec = pc_spec_parse_cached(VARDATA_ANY(spec), VARSIZE_ANY_EXHDR(spec), &desc);
	for (int i = 0; i < n; i++)
	{
		names[i] = strVal(list_nth(rtf->funccolnames, i));
		types[i] = list_nth_oid(rtf->funccoltypes, i);
		typmods[i] = list_nth_int(rtf->funccoltypmods, i);
	}
	pc_check_columns(s->spec, n, names, types, typmods);
	s->spec->colnames = names;
	s->states = palloc0(sizeof(PzState *) * Max(s->spec->ntraits, 1));
	s->columns = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
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
	MemoryContextSwitchTo(old);
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
	{
		InstrCountFiltered2(&s->css, 1);
		return NULL;
	}
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

		if (s->spec == NULL)
			columns_setup(s);
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
	if ((joinqual != NIL || fs->scan.plan.qual != NIL) && es->analyze &&
		node->ss.ps.instrument != NULL)
	{
		/* as EXPLAIN shows a Nested Loop's and a Function Scan's (both counted in nfiltered2) */
		double nloops = node->ss.ps.instrument->nloops;
		double removed = node->ss.ps.instrument->nfiltered2;

		if (removed > 0 || es->format != EXPLAIN_FORMAT_TEXT)
			ExplainPropertyFloat(joinqual == NIL ? "Rows Removed by Function Filter"
								 : fs->scan.plan.qual == NIL
									 ? "Rows Removed by Join Filter"
									 : "Rows Removed by Join or Function Filter",
								 NULL, nloops > 0 ? removed / nloops : 0.0, 0, es);
	}
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
