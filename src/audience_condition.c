/*
 * audience_condition.c
 *	  An audience's condition: a boolean SQL expression over the columns of
 *	  personalize.profile_view, such as
 *
 *		cart_adds_4h > 0 AND orders_4h = 0
 *		last_order_at < now() - interval '30 days'
 *
 * It is user code (docs/security.md): it is parsed, checked and compiled
 * as the role that owns the audience, with search_path pg_catalog,
 * pg_temp, so that its names mean at every evaluation what they meant
 * when it was checked; and it is run by audience.c as that role, in a
 * security-restricted operation.
 *
 * The passing of time.  The view reads time in two ways: windowed columns
 * (counted against now()) and the clock in the condition itself.  The
 * clock (now(), current_timestamp, transaction_timestamp(),
 * statement_timestamp(), clock_timestamp()) is replaced by a parameter, so
 * the condition can be evaluated at any moment t, and every clock
 * reference must sit in an "atom": a comparison (<, <=, >, >=) of an
 * expression free of the clock with the clock moved by + and - (and casts
 * among date and timestamps), which is monotone in the clock and so flips
 * at most once.  Between the moments an atom flips or a windowed column
 * changes, the condition's result cannot change: audience.c evaluates it
 * at those moments, in order, to find exactly when it does.  A condition
 * that reads time any other way (extract(hour from now()), now() = x,
 * current_date, age(x)) cannot be scheduled exactly and is refused.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "parser/parsetree.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

#include "audience_condition.h"
#include "security.h"

#define CONDITION_HINT                                                                             \
	"Write a boolean expression over personalize.profile_view's columns, e.g. "                    \
	"'cart_adds_4h > 0 AND orders_4h = 0'."
#define TIME_HINT                                                                                  \
	"Compare a column with now() moved by an interval, e.g. "                                      \
	"'last_order_at < now() - interval ''30 days''': only such comparisons, and windowed "         \
	"columns, change with time at moments that can be scheduled."

/* the clock's parameter */
#define CLOCK_PARAM 1

/* ---- parse errors point into the condition, not into the SQL around it ---- */

typedef struct ParseErrorContext
{
	const char *text; /* the condition */
	int offset;       /* where it starts in the SQL parsed */
} ParseErrorContext;

static void
condition_error_callback(void *arg)
{
	ParseErrorContext *c = arg;
	int pos = geterrposition();

	if (pos > c->offset)
	{
		errposition(0);
		internalerrposition(pos - c->offset);
		internalerrquery(c->text);
	}
	errcontext("audience condition");
}

static pg_attribute_noreturn() void condition_refused(const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", msg), errhint("%s", hint)));
}

/*
 * The text is one expression and nothing else: "SELECT <text>" parses as
 * a SELECT of one unnamed target, no FROM, WHERE, set operation, ... So
 * the text cannot end the expression early and add clauses of its own
 * when it is put between parentheses in the query that analyses it.
 */
static void
check_one_expression(const char *text)
{
	ErrorContextCallback cb;
	ParseErrorContext ctx = {text, 7};
	List *raw;
	SelectStmt *s;
	ResTarget *rt;

	cb.callback = condition_error_callback;
	cb.arg = &ctx;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	raw = raw_parser(psprintf("SELECT %s", text), RAW_PARSE_DEFAULT);
	error_context_stack = cb.previous;

	if (list_length(raw) != 1 || !IsA(linitial_node(RawStmt, raw)->stmt, SelectStmt))
		condition_refused("an audience's condition must be one expression", CONDITION_HINT);
	s = (SelectStmt *) linitial_node(RawStmt, raw)->stmt;
	if (s->op != SETOP_NONE || s->fromClause != NIL || s->whereClause != NULL ||
		s->groupClause != NIL || s->havingClause != NULL || s->windowClause != NIL ||
		s->sortClause != NIL || s->limitCount != NULL || s->limitOffset != NULL ||
		s->lockingClause != NIL || s->withClause != NULL || s->intoClause != NULL ||
		s->distinctClause != NIL || s->valuesLists != NIL || list_length(s->targetList) != 1)
		condition_refused("an audience's condition must be one expression, without clauses",
						  CONDITION_HINT);
	rt = linitial_node(ResTarget, s->targetList);
	if (rt->name != NULL ||
		(IsA(rt->val, ColumnRef) && IsA(llast(((ColumnRef *) rt->val)->fields), A_Star)))
		condition_refused("an audience's condition must be one expression", CONDITION_HINT);
}

/* ---- the clock ---- */

static Node *
make_clock(void)
{
	Param *p = makeNode(Param);

	p->paramkind = PARAM_EXTERN;
	p->paramid = CLOCK_PARAM;
	p->paramtype = TIMESTAMPTZOID;
	p->paramtypmod = -1;
	p->paramcollid = InvalidOid;
	p->location = -1;
	return (Node *) p;
}

static bool
is_clock(Node *n)
{
	return n != NULL && IsA(n, Param) && ((Param *) n)->paramkind == PARAM_EXTERN &&
		   ((Param *) n)->paramid == CLOCK_PARAM;
}

/* now() and its kin become the clock parameter; what reads time otherwise is refused */
static Node *
replace_clock(Node *node, bool *reads_clock)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, FuncExpr))
	{
		FuncExpr *f = (FuncExpr *) node;

		switch (f->funcid)
		{
			case F_NOW:
			case F_TRANSACTION_TIMESTAMP:
			case F_STATEMENT_TIMESTAMP:
			case F_CLOCK_TIMESTAMP:
				*reads_clock = true;
				return make_clock();
			case F_AGE_TIMESTAMPTZ:
			case F_AGE_TIMESTAMP:
				condition_refused("an audience's condition cannot call age() with one argument",
								  "It reads the session's current date: write now() - x, "
								  "or compare x with now() - interval '...'.");
			default:
				break;
		}
	}
	if (IsA(node, SQLValueFunction))
	{
		SQLValueFunction *v = (SQLValueFunction *) node;

		switch (v->op)
		{
			case SVFOP_CURRENT_TIMESTAMP:
				*reads_clock = true;
				return make_clock();
			case SVFOP_CURRENT_DATE:
			case SVFOP_CURRENT_TIME:
			case SVFOP_CURRENT_TIME_N:
			case SVFOP_CURRENT_TIMESTAMP_N:
			case SVFOP_LOCALTIME:
			case SVFOP_LOCALTIME_N:
			case SVFOP_LOCALTIMESTAMP:
			case SVFOP_LOCALTIMESTAMP_N:
				condition_refused(
					"an audience's condition cannot read current_date, local times or a rounded "
					"current_timestamp",
					"They depend on the session's TimeZone or round the clock: compare with now() "
					"moved by an interval instead.");
			default:
				break;
		}
	}
	return expression_tree_mutator(node, replace_clock, reads_clock);
}

static bool
count_clock_walker(Node *node, int *count)
{
	if (node == NULL)
		return false;
	if (is_clock(node))
		(*count)++;
	return expression_tree_walker(node, count_clock_walker, count);
}

static int
count_clock(Node *node)
{
	int n = 0;

	(void) count_clock_walker(node, &n);
	return n;
}

bool
pz_condition_reads_clock(Node *node)
{
	return count_clock(node) > 0;
}

static bool
is_time_type(Oid t)
{
	return t == TIMESTAMPTZOID || t == TIMESTAMPOID || t == DATEOID;
}

/*
 * node holds the clock once, on a path of + and - with operands free of
 * the clock and casts among date and timestamps: its value is monotone in
 * the clock (increasing, or decreasing through x - now()).
 */
static bool
monotone_in_clock(Node *node)
{
	if (is_clock(node))
		return true;
	if (IsA(node, RelabelType))
		return monotone_in_clock((Node *) ((RelabelType *) node)->arg);
	if (IsA(node, FuncExpr))
	{
		FuncExpr *f = (FuncExpr *) node;

		return (f->funcformat == COERCE_IMPLICIT_CAST || f->funcformat == COERCE_EXPLICIT_CAST) &&
			   list_length(f->args) == 1 && is_time_type(f->funcresulttype) &&
			   is_time_type(exprType(linitial(f->args))) && monotone_in_clock(linitial(f->args));
	}
	if (IsA(node, OpExpr))
	{
		OpExpr *op = (OpExpr *) node;
		char *name;
		Node *a, *b;

		if (list_length(op->args) != 2 ||
			!(is_time_type(op->opresulttype) || op->opresulttype == INTERVALOID))
			return false;
		name = get_opname(op->opno);
		if (name == NULL || (strcmp(name, "+") != 0 && strcmp(name, "-") != 0))
			return false;
		a = linitial(op->args);
		b = lsecond(op->args);
		if (count_clock(a) == 1 && count_clock(b) == 0)
			return monotone_in_clock(a);
		if (count_clock(b) == 1 && count_clock(a) == 0)
			return monotone_in_clock(b);
	}
	return false;
}

static bool
is_order_comparison(OpExpr *op)
{
	char *name;

	if (list_length(op->args) != 2 || op->opresulttype != BOOLOID)
		return false;
	name = get_opname(op->opno);
	return name != NULL && (strcmp(name, "<") == 0 || strcmp(name, "<=") == 0 ||
							strcmp(name, ">") == 0 || strcmp(name, ">=") == 0);
}

typedef struct AtomContext
{
	List *atoms;
	const Bitmapset *windowed; /* the view's windowed columns */
} AtomContext;

static bool
vars_walker(Node *node, Bitmapset **attrs)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var))
		*attrs = bms_add_member(*attrs, ((Var *) node)->varattno);
	return expression_tree_walker(node, vars_walker, attrs);
}

/* collect the atoms; ERROR where the clock is read otherwise */
static bool
atom_walker(Node *node, AtomContext *ctx)
{
	if (node == NULL || count_clock(node) == 0)
		return false;
	if (IsA(node, OpExpr) && is_order_comparison((OpExpr *) node) && count_clock(node) == 1)
	{
		OpExpr *op = (OpExpr *) node;
		Node *with_clock = count_clock(linitial(op->args)) ? linitial(op->args) : lsecond(op->args);

		if (monotone_in_clock(with_clock))
		{
			Bitmapset *attrs = NULL;

			(void) vars_walker(node, &attrs);
			if (bms_overlap(attrs, ctx->windowed))
				condition_refused("an audience's condition cannot compare the clock with a "
								  "windowed column",
								  "A windowed column already counts against the clock: compare "
								  "it with a number.");
			ctx->atoms = lappend(ctx->atoms, node);
			return false;
		}
	}
	if (is_clock(node))
		condition_refused("an audience's condition reads the clock in a way that cannot be "
						  "scheduled",
						  TIME_HINT);
	return expression_tree_walker(node, atom_walker, ctx);
}

/* ---- functions and rights ---- */

static bool
collect_function(Oid fn, void *context)
{
	List **fns = context;

	*fns = list_append_unique_oid(*fns, fn);
	return false;
}

static bool
functions_walker(Node *node, List **fns)
{
	if (node == NULL)
		return false;
	(void) check_functions_in_node(node, collect_function, fns);
	return expression_tree_walker(node, functions_walker, fns);
}

/* ---- compile ---- */

void
pz_condition_check_columns(const PzCondition *c, Oid view, Oid owner)
{
	int a = -1;

	if (pg_class_aclcheck(view, owner, ACL_SELECT) == ACLCHECK_OK)
		return;
	while ((a = bms_next_member(c->attrs, a)) >= 0)
		if (pg_attribute_aclcheck(view, (AttrNumber) a, owner, ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
							errmsg("permission denied for column %s of personalize.profile_view",
								   quote_identifier(get_attname(view, (AttrNumber) a, false))),
							errhint("The condition runs with its owner's rights: GRANT "
									"personalize_reader TO %s.",
									quote_identifier(GetUserNameFromId(owner, false)))));
}

PzCondition *
pz_condition_compile(const char *text, Oid owner, Oid view, const PcSpec *spec)
{
	PzCondition *c = palloc0(sizeof(PzCondition));
	PzUserContext saved;
	ErrorContextCallback cb;
	ParseErrorContext ctx = {text, 9};
	char *sql;
	List *raw;
	Query *q;
	TargetEntry *tle;
	RangeTblEntry *rte;
	Node *expr;
	Bitmapset *windowed = NULL;
	AtomContext atoms = {NIL, NULL};
	List *functions = NIL;
	ListCell *lc;

	if (text == NULL || text[0] == '\0')
		condition_refused("an audience's condition is empty", CONDITION_HINT);
	pg_verifymbstr(text, strlen(text), false);

	pz_run_as_begin(owner, &saved);
	check_one_expression(text);
	sql = psprintf("SELECT (\n%s\n) FROM personalize.profile_view", text);
	cb.callback = condition_error_callback;
	cb.arg = &ctx;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		condition_refused("an audience's condition must be one expression", CONDITION_HINT);
	q = parse_analyze_fixedparams(linitial_node(RawStmt, raw), sql, NULL, 0, NULL);
	error_context_stack = cb.previous;

	if (q->hasSubLinks)
		condition_refused("an audience's condition cannot hold a subquery",
						  "A condition reads one profile's row: make what the subquery reads a "
						  "trait, or join personalize.audience_members with your tables.");
	if (q->hasAggs || q->hasWindowFuncs)
		condition_refused("an audience's condition cannot call an aggregate or window function",
						  "A condition reads one profile's row: traits aggregate events, and "
						  "windowed traits count them over time.");
	if (q->hasTargetSRFs)
		condition_refused("an audience's condition cannot call a set-returning function",
						  CONDITION_HINT);
	if (list_length(q->rtable) != 1 || list_length(q->targetList) != 1)
		condition_refused("an audience's condition must be one expression", CONDITION_HINT);
	rte = rt_fetch(1, q->rtable);
	if (rte->rtekind != RTE_RELATION || rte->relid != view)
		elog(ERROR, "audience condition: analysed against a relation that is not the profile view");
	tle = linitial_node(TargetEntry, q->targetList);
	expr = (Node *) tle->expr;
	if (exprType(expr) != BOOLOID)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
						errmsg("an audience's condition must be boolean, not %s",
							   format_type_be(exprType(expr))),
						errhint(CONDITION_HINT)));

	(void) vars_walker(expr, &c->attrs);
	if (bms_is_member(0, c->attrs))
		condition_refused("an audience's condition cannot read the whole row of the view",
						  "Name the columns it reads.");

	/* the view's columns and the functions: with the owner's rights */
	pz_condition_check_columns(c, view, owner);

	expr = replace_clock(expr, &c->reads_clock);
	if (contain_volatile_functions(expr))
		condition_refused("an audience's condition cannot call a volatile function",
						  "Only the clock (now(), clock_timestamp(), ...) may change between two "
						  "evaluations of a profile that did not change.");
	(void) functions_walker(expr, &functions);
	foreach (lc, functions)
		if (pg_proc_aclcheck(lfirst_oid(lc), owner, ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s", format_procedure(lfirst_oid(lc))),
					 errhint("The condition runs with its owner's rights.")));

	/* time: windowed columns read, and the clock only in atoms */
	if (spec != NULL)
		for (int i = 0; i < spec->ncols; i++)
			if (spec->cols[i].acc == PC_WCOUNT || spec->cols[i].acc == PC_WSUM)
				windowed = bms_add_member(windowed, PZ_VIEW_TRAIT_ATTNO(i));
	c->reads_windows = bms_overlap(c->attrs, windowed);
	expr = (Node *) expression_planner((Expr *) expr);
	atoms.windowed = windowed;
	(void) atom_walker(expr, &atoms);

	c->expr = (Expr *) expr;
	c->atoms = atoms.atoms;
	pz_run_as_end(&saved);
	return c;
}
