/*
 * components.c
 *	  connected_components(edges text): batch identity resolution of
 *	  historical data in one pass.
 *
 * The edge query runs through a read-only SPI cursor, a batch of rows at a
 * time; every end is interned into an in-memory union-find (unionfind.c)
 * and the two ends are joined.  Then each component is named by its
 * smallest identifier in byte order, which depends only on the partition,
 * not on the order of the edges, and one row per identifier goes out
 * through a tuplestore (so the output may exceed memory; the graph may not,
 * and is bounded by personalize.components_memory_limit).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"

#include "identity.h"
#include "unionfind.h"

#define COMPONENTS_FETCH 10000

/* personalize.components_memory_limit, in kB */
int pz_components_memory_limit = 1024 * 1024;

/* How one column of the edge query becomes text. */
typedef struct EdgeColumn
{
	bool is_text; /* text or varchar: bytes as they are */
	FmgrInfo out; /* otherwise, the type's output function */
} EdgeColumn;

static void
edge_column_init(EdgeColumn *col, Oid typid)
{
	Oid outfn;
	bool varlena;

	col->is_text = (typid == TEXTOID || typid == VARCHAROID);
	if (!col->is_text)
	{
		getTypeOutputInfo(typid, &outfn, &varlena);
		fmgr_info(outfn, &col->out);
	}
}

/*
 * The bytes of one end, or NULL for NULL.  A detoasted copy or an output
 * string is allocated in the batch's memory, which is reset per batch.
 */
static const char *
edge_end(EdgeColumn *col, Datum d, bool isnull, int32 *len)
{
	if (isnull)
	{
		*len = 0;
		return NULL;
	}
	if (col->is_text)
	{
		text *t = (text *) PG_DETOAST_DATUM_PACKED(d);

		*len = VARSIZE_ANY_EXHDR(t);
		return VARDATA_ANY(t);
	}
	else
	{
		char *s = OutputFunctionCall(&col->out, d);

		*len = strlen(s);
		return s;
	}
}

/* one SELECT, without data-modifying CTEs */
static bool
edge_query_is_select(SPIPlanPtr plan)
{
	List *sources = SPI_plan_get_plan_sources(plan);

	CachedPlanSource *ps;
	ListCell *lc;

	if (list_length(sources) != 1)
		return false;
	ps = linitial(sources);
	if (ps->commandTag != CMDTAG_SELECT)
		return false;
	foreach (lc, ps->query_list)
		if (((Query *) lfirst(lc))->hasModifyingCTE)
			return false;
	return true;
}

static int
key_cmp(UnionFind *uf, int32 a, int32 b)
{
	int32 alen, blen;
	const char *ka = uf_key(uf, a, &alen);
	const char *kb = uf_key(uf, b, &blen);
	int c = memcmp(ka, kb, Min(alen, blen));

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

PG_FUNCTION_INFO_V1(pz_connected_components);
Datum
pz_connected_components(PG_FUNCTION_ARGS)
{
	char *query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	UnionFind *uf;
	SPIPlanPtr plan;
	Portal portal;
	EdgeColumn cols[2];
	int32 *smallest;
	int32 *root;
	text **labels;
	text *row;
	int32 max_len;
	int32 n;
	MemoryContext batch_cxt, old;
	const char **keys;
	int32 *lens;
	int32 *nodes;

	InitMaterializedSRF(fcinfo, 0);
	/* before SPI_connect, so the graph outlives SPI's memory */
	uf = uf_create((Size) pz_components_memory_limit * 1024, "personalize.components_memory_limit");

	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "connected_components batch",
									  ALLOCSET_DEFAULT_SIZES);
	keys = palloc(2 * COMPONENTS_FETCH * sizeof(char *));
	lens = palloc(2 * COMPONENTS_FETCH * sizeof(int32));
	nodes = palloc(2 * COMPONENTS_FETCH * sizeof(int32));

	SPI_connect();
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for the edge query: %s",
			 SPI_result_code_string(SPI_result));
	if (!SPI_is_cursor_plan(plan) || !edge_query_is_select(plan))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("the edge query of connected_components must be one SELECT"),
						errhint("Pass a query such as 'SELECT a, b FROM links'.")));
	/* read-only: the edge query cannot change data behind the caller's back */
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);

	for (bool first = true;; first = false)
	{
		SPITupleTable *tt;

		SPI_cursor_fetch(portal, true, COMPONENTS_FETCH);
		tt = SPI_tuptable;
		if (first)
		{
			TupleDesc td = tt->tupdesc;

			if (td->natts != 2)
				ereport(
					ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("the edge query of connected_components returns %d columns, not 2",
							td->natts),
					 errhint("Return the two ends of each edge, e.g. 'SELECT a, b FROM links'.")));
			edge_column_init(&cols[0], TupleDescAttr(td, 0)->atttypid);
			edge_column_init(&cols[1], TupleDescAttr(td, 1)->atttypid);
		}
		/* both ends of the batch's edges, looked up at once (see uf_nodes) */
		old = MemoryContextSwitchTo(batch_cxt);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple tup = tt->vals[i];
			bool isnull;
			Datum d;

			d = heap_getattr(tup, 1, tt->tupdesc, &isnull);
			keys[2 * i] = edge_end(&cols[0], d, isnull, &lens[2 * i]);
			d = heap_getattr(tup, 2, tt->tupdesc, &isnull);
			keys[2 * i + 1] = edge_end(&cols[1], d, isnull, &lens[2 * i + 1]);
		}
		MemoryContextSwitchTo(old);
		uf_nodes(uf, 2 * SPI_processed, keys, lens, nodes);
		for (uint64 i = 0; i < SPI_processed; i++)
			if (nodes[2 * i] >= 0 && nodes[2 * i + 1] >= 0)
				uf_union(uf, nodes[2 * i], nodes[2 * i + 1]);
		MemoryContextReset(batch_cxt);
		if (SPI_processed == 0)
			break;
		SPI_freetuptable(tt);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	SPI_finish();

	/*
	 * Name each component by its smallest identifier.  The first pass keeps
	 * each node's root, so the second reads it in order; a component's
	 * label is made once, as text, and shared by its rows.
	 */
	n = uf_count(uf);
	uf_reserve(uf, (Size) n * (2 * sizeof(int32) + sizeof(text *)));
	smallest = palloc_extended(Max(n, 1) * sizeof(int32), MCXT_ALLOC_HUGE);
	root = palloc_extended(Max(n, 1) * sizeof(int32), MCXT_ALLOC_HUGE);
	for (int32 i = 0; i < n; i++)
		smallest[i] = -1;
	max_len = 0;
	for (int32 i = 0; i < n; i++)
	{
		int32 r = root[i] = uf_find(uf, i);
		int32 len;

		(void) uf_key(uf, i, &len);
		max_len = Max(max_len, len);
		if (smallest[r] < 0 || key_cmp(uf, i, smallest[r]) < 0)
			smallest[r] = i;
	}
	labels = palloc_extended(Max(n, 1) * sizeof(text *), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	row = palloc(VARHDRSZ + max_len);
	for (int32 i = 0; i < n; i++)
	{
		int32 len, r = root[i];
		const char *key = uf_key(uf, i, &len);
		Datum values[2];
		bool nulls[2] = {false, false};

		if (labels[r] == NULL)
		{
			int32 clen;
			const char *ckey = uf_key(uf, smallest[r], &clen);

			uf_reserve(uf, VARHDRSZ + clen);
			labels[r] = cstring_to_text_with_len(ckey, clen);
		}
		SET_VARSIZE(row, VARHDRSZ + len);
		memcpy(VARDATA(row), key, len);
		values[0] = PointerGetDatum(row);
		values[1] = PointerGetDatum(labels[r]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		if ((i & 0xffff) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	pfree(root);
	pfree(row);
	pfree(smallest);
	uf_destroy(uf);
	return (Datum) 0;
}
