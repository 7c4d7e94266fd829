/*
 * profile_scan.c
 *	  Scans of the profile view read only the trait columns the query
 *	  names: a planner hook marks the others skipped in the spec of the
 *	  view's profile_columns() call.
 *
 * personalize.profile_view reads every trait column of a row from one call,
 * LEFT JOIN LATERAL profile_columns(p.states, '<spec>') AS c(...), which
 * decodes each state the spec names (profile_columns.c).  A query that
 * names a few columns (SELECT category_affinity[1], count(*) FROM
 * profile_view GROUP BY 1, as BI tools write) still paid for every trait:
 * the function cannot know which of its columns the plan reads.  The
 * planner does: once the view is pulled up into the query, the function
 * is a base relation whose target list holds the columns needed above it
 * and whose restrictions name the columns its filters read.  This hook
 * (set_rel_pathlist_hook) rewrites the spec constant of that call, '-'
 * before each entry nobody reads: profile_columns() returns NULL there and
 * reads the trait only if another column needs it.  The plan then carries
 * the rewritten spec (EXPLAIN VERBOSE shows it); the function's cache is
 * keyed by the spec, so each plan gets its own.
 *
 * It touches only a call of personalize.profile_columns(profile, text)
 * whose spec is a constant, in a relation with one function and no
 * ORDINALITY; a whole-row reference to it reads everything.
 * personalize.view_projection = off turns it off (for comparison).
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/paths.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "profile_columns.h"
#include "profile_scan.h"

bool pz_view_projection = true;

static set_rel_pathlist_hook_type prev_set_rel_pathlist_hook = NULL;

/*
 * By what the function runs, not by its name: a function of the same name
 * that a user made (in a schema "personalize" of a database without the
 * extension, say) is not ours to rewrite or to run as ours.  Only a
 * superuser can declare a C function of this library's symbol.
 */
bool
pz_is_profile_columns(Oid funcid)
{
	char *name = get_func_name(funcid);
	FmgrInfo flinfo;

	if (name == NULL || strcmp(name, "profile_columns") != 0 || get_func_nargs(funcid) != 2)
		return false;
	fmgr_info(funcid, &flinfo);
	return flinfo.fn_addr == pz_profile_columns;
}

/* the spec with '-' before entry i for each i not in needed (1-based columns) */
static text *
spec_projected(const char *spec, int len, const Bitmapset *needed, bool *changed)
{
	StringInfoData out;
	int col = 1;
	bool at_start = true;

	*changed = false;
	initStringInfo(&out);
	for (int i = 0; i < len; i++)
	{
		if (at_start)
		{
			if (spec[i] != '-' && !bms_is_member(col, needed))
			{
				appendStringInfoChar(&out, '-');
				*changed = true;
			}
			at_start = false;
		}
		appendStringInfoChar(&out, spec[i]);
		if (spec[i] == ';')
		{
			col++;
			at_start = true;
		}
	}
	return cstring_to_text_with_len(out.data, out.len);
}

FuncExpr *
pz_profile_columns_call(List *functions, bool ordinality)
{
	RangeTblFunction *rtf;
	FuncExpr *fexpr;
	Const *spec;

	if (list_length(functions) != 1 || ordinality)
		return NULL;
	rtf = linitial_node(RangeTblFunction, functions);
	if (!IsA(rtf->funcexpr, FuncExpr))
		return NULL;
	fexpr = (FuncExpr *) rtf->funcexpr;
	if (fexpr->funcretset || list_length(fexpr->args) != 2 || !IsA(lsecond(fexpr->args), Const))
		return NULL;
	spec = lsecond_node(Const, fexpr->args);
	if (spec->constisnull || spec->consttype != TEXTOID || !pz_is_profile_columns(fexpr->funcid))
		return NULL;
	return fexpr;
}

static void
project_profile_columns(PlannerInfo *root, RelOptInfo *rel, Index rti, RangeTblEntry *rte)
{
	RangeTblFunction *rtf;
	FuncExpr *fexpr;
	Const *spec;
	Bitmapset *attrs = NULL, *needed = NULL;
	ListCell *lc;
	int attno = -1;
	bool changed;
	text *t;

	if (rte->rtekind != RTE_FUNCTION ||
		(fexpr = pz_profile_columns_call(rte->functions, rte->funcordinality)) == NULL)
		return;
	rtf = linitial_node(RangeTblFunction, rte->functions);
	spec = lsecond_node(Const, fexpr->args);

	/* the columns read above the scan, and by its own filters */
	pull_varattnos((Node *) rel->reltarget->exprs, rti, &attrs);
	foreach (lc, rel->baserestrictinfo)
		pull_varattnos((Node *) lfirst_node(RestrictInfo, lc)->clause, rti, &attrs);
	while ((attno = bms_next_member(attrs, attno)) >= 0)
	{
		AttrNumber a = attno + FirstLowInvalidHeapAttributeNumber;

		if (a == InvalidAttrNumber)
			return; /* the whole row */
		if (a > 0)
			needed = bms_add_member(needed, a);
	}

	t = DatumGetTextPP(spec->constvalue); /* a constant may be compressed */
	t = spec_projected(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), needed, &changed);
	if (!changed)
		return;
	/* a new call with a new spec: the query's other nodes are left as they were */
	fexpr = copyObject(fexpr);
	lsecond(fexpr->args) =
		makeConst(TEXTOID, -1, spec->constcollid, -1, PointerGetDatum(t), false, false);
	rtf->funcexpr = (Node *) fexpr;
}

static void
profile_scan_set_rel_pathlist(PlannerInfo *root, RelOptInfo *rel, Index rti, RangeTblEntry *rte)
{
	if (prev_set_rel_pathlist_hook)
		prev_set_rel_pathlist_hook(root, rel, rti, rte);
	if (pz_view_projection && rte->rtekind == RTE_FUNCTION)
		project_profile_columns(root, rel, rti, rte);
}

void
pz_profile_scan_init(void)
{
	DefineCustomBoolVariable(
		"personalize.view_projection",
		"Scans of the profile view read only the trait columns the query names.",
		"With off, every row's every trait is decoded, whatever the query reads (for comparison).",
		&pz_view_projection, true, PGC_USERSET, 0, NULL, NULL, NULL);
	prev_set_rel_pathlist_hook = set_rel_pathlist_hook;
	set_rel_pathlist_hook = profile_scan_set_rel_pathlist;
}
