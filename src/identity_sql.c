/*
 * identity_sql.c
 *	  The identity graph's SQL functions: resolve, identify (one identifier
 *	  or an event's jsonb), link, split and forget, and the identifiers
 *	  they take as arguments.
 *
 * What is here is the SQL side: arguments checked and normalized into
 * identifiers (ERRORs with hints for NULL, unknown namespaces, unusable or
 * blocked values), privileges, SPI connections, and results.  The graph's
 * rules are identity_graph.c's; forget() is here whole because it is a
 * list of deletes in SQL, over the graph's tables, the audiences' and the
 * caller's own source tables, whose statement triggers keep the caches
 * true.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "audience.h"
#include "identity_internal.h"
#include "state.h"

/* ---- identifiers from arguments ---- */

/*
 * Normalize a value of a namespace into *id.  Returns false if the value
 * is not usable (the normalizer found nothing); blocked values are
 * returned, marked by *blocked.
 */
static bool
identifier_make(PzIdentifier *id, const PzNamespace *ns, const char *value, int32 len,
				bool *blocked, const char *fname)
{
	pz_check_value_length(len, fname);
	id->ns = ns;
	id->value = pz_namespace_normalize(ns, value, len, &id->len);
	if (id->value == NULL)
		return false;
	*blocked = pz_namespace_is_blocked(ns, id->value, id->len);
	return true;
}

/*
 * An identifier from a namespace name and a value (NULL pointers: SQL
 * NULLs); ERRORs for NULL, unknown, unusable.
 */
static void
identifier_from_text(text *nstext, text *v, PzIdentifier *id, bool *blocked, const char *fname)
{
	char *nsname;

	if (nstext == NULL)
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("%s: namespace must not be NULL", fname)));
	nsname = text_to_cstring(nstext);
	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s: the %s value must not be NULL", fname, nsname),
				 errhint("Skip rows without an identifier, e.g. WHERE %s IS NOT NULL.", nsname)));
	if (!identifier_make(id, pz_namespace_by_name(nsname), VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v),
						 blocked, fname))
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: \"%s\" is not a usable %s identifier", fname, text_to_cstring(v), nsname),
			 errdetail("The namespace's normalizer found no value in it (empty, blank, or not "
					   "of the namespace's form)."),
			 errhint("Check the value with personalize.normalize_identifier('%s', value).",
					 nsname)));
}

/* an identifier from two SQL arguments; ERRORs for NULL, unknown, unusable */
static void
identifier_arg(FunctionCallInfo fcinfo, int argno, PzIdentifier *id, bool *blocked,
			   const char *fname)
{
	identifier_from_text(PG_ARGISNULL(argno) ? NULL : PG_GETARG_TEXT_PP(argno),
						 PG_ARGISNULL(argno + 1) ? NULL : PG_GETARG_TEXT_PP(argno + 1), id, blocked,
						 fname);
}

/* ---- SQL functions ---- */

/* Reading through the cache must not skip the table's privilege check. */
static void
check_read_privilege(void)
{
	static Oid rel = InvalidOid;

	/* a dropped and recreated extension has a new table: look it up again then */
	if (!OidIsValid(rel) || !SearchSysCacheExists1(RELOID, ObjectIdGetDatum(rel)))
		rel = get_relname_relid("identities", get_namespace_oid("personalize", false));
	if (OidIsValid(rel) && pg_class_aclcheck(rel, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, "identities");
}

int64
pz_identity_resolve(text *nsname, text *value, const char *fname)
{
	PzIdentifier id;
	bool blocked;
	int64 pid;

	check_read_privilege();
	identifier_from_text(nsname, value, &id, &blocked, fname);
	if (blocked)
		return 0;
	pz_cache_check();
	pid = pz_cache_get(&id);
	if (pid == 0)
	{
		pz_store_open(false);
		pid = pz_identity_lookup(&id);
		pz_store_close();
	}
	return pid;
}

PG_FUNCTION_INFO_V1(pz_resolve);
Datum
pz_resolve(PG_FUNCTION_ARGS)
{
	int64 pid = pz_identity_resolve(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0),
									PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1), "resolve");

	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(pid);
}

static pg_attribute_noreturn() void blocked_error(const PzIdentifier *id, const char *fname)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: %s \"%s\" is blocked", fname, id->ns->name, id->value),
			 errdetail("A blocked value never links and never gets a profile."),
			 errhint("Unblock it with personalize.unblock_value('%s', value).", id->ns->name)));
}

PG_FUNCTION_INFO_V1(pz_identify);
Datum
pz_identify(PG_FUNCTION_ARGS)
{
	PzIdentifier id;
	bool blocked, linked;
	int64 pid;

	identifier_arg(fcinfo, 0, &id, &blocked, "identify");
	if (blocked)
		blocked_error(&id, "identify");
	SPI_connect();
	pid = pz_identity_attribute(&id, 1, &linked);
	SPI_finish();
	PG_RETURN_INT64(pid);
}

PG_FUNCTION_INFO_V1(pz_link);
Datum
pz_link(PG_FUNCTION_ARGS)
{
	PzIdentifier ids[2];
	bool blocked_a, blocked_b, linked;

	identifier_arg(fcinfo, 0, &ids[0], &blocked_a, "link");
	identifier_arg(fcinfo, 2, &ids[1], &blocked_b, "link");
	SPI_connect();
	if (blocked_a || blocked_b)
	{
		/* a (the kept side) is the better of the two, as for any refusal */
		PzIdentifier *a = pz_identifier_rank_cmp(&ids[0], &ids[1]) <= 0 ? &ids[0] : &ids[1];
		PzIdentifier *b = a == &ids[0] ? &ids[1] : &ids[0];

		pz_graph_write_begin();
		pz_graph_refuse("blocked", blocked_a ? ids[0].ns : ids[1].ns, a, b, pz_identity_lookup(a),
						pz_identity_lookup(b));
		pz_store_close();
		linked = false;
	}
	else
		(void) pz_identity_attribute(ids, 2, &linked);
	SPI_finish();
	PG_RETURN_BOOL(linked);
}

/*
 * identify(jsonb): the identifiers of one event.  Values that are not usable
 * (NULL, empty, not of the namespace's form) are skipped; blocked ones are
 * skipped and their refused links recorded; at least one must remain.
 */
/*
 * An event's identifiers from its jsonb: usable ones into *ids, blocked
 * ones into *blocked (both palloc'd); ERRORs if the jsonb is not an object
 * of strings and numbers, or if no usable identifier remains.
 */
static void
identifiers_from_jsonb(Jsonb *jb, PzIdentifier **ids, int *n, PzIdentifier **blocked_ids,
					   int *nblocked)
{
	JsonbIterator *it;
	JsonbValue v;
	JsonbIteratorToken tok;
	const PzNamespace *ns = NULL;
	int cap;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("identify: identifiers must be a JSON object"),
						errhint("Pass {\"namespace\": \"value\", ...}, e.g. "
								"'{\"email\": \"ann@example.com\", \"customer_id\": \"42\"}'.")));
	cap = Max(JsonContainerSize(&jb->root), 1);
	*ids = palloc(cap * sizeof(PzIdentifier));
	*blocked_ids = palloc(cap * sizeof(PzIdentifier));
	*n = *nblocked = 0;

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			ns = pz_namespace_by_name(pnstrdup(v.val.string.val, v.val.string.len));
		else if (tok == WJB_VALUE)
		{
			char *s;
			int32 len;
			bool blocked;
			PzIdentifier *id = &(*ids)[*n];

			if (v.type == jbvNull)
				continue;
			if (v.type == jbvString)
			{
				s = v.val.string.val;
				len = v.val.string.len;
			}
			else if (v.type == jbvNumeric)
			{
				s = DatumGetCString(
					DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
				len = strlen(s);
			}
			else
				ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								errmsg("identify: the %s identifier must be a string or a number",
									   ns->name)));
			if (!identifier_make(id, ns, s, len, &blocked, "identify"))
				continue;
			if (blocked)
				(*blocked_ids)[(*nblocked)++] = *id;
			else
				(*n)++;
		}
	}
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("identify: no usable identifier in %s",
						JsonbToCString(NULL, &jb->root, VARSIZE(jb))),
				 errdetail("Every value is NULL, empty, blocked, or not of its namespace's form."),
				 errhint("Check values with personalize.normalize_identifier(namespace, value).")));
}

/* identify(jsonb) through the tables: the profile; the caller is connected to SPI */
static int64
identify_in_tables(PzIdentifier *ids, int n, const PzIdentifier *blocked_ids, int nblocked)
{
	bool linked;
	int64 pid = pz_identity_attribute(ids, n, &linked);

	/* ids[0] is now the best usable identifier, the one the event went to */
	for (int i = 0; i < nblocked; i++)
		pz_graph_refuse("blocked", blocked_ids[i].ns, &ids[0], &blocked_ids[i], pid, 0);
	return pid;
}

PG_FUNCTION_INFO_V1(pz_identify_event);
Datum
pz_identify_event(PG_FUNCTION_ARGS)
{
	PzIdentifier *ids, *blocked_ids;
	int n, nblocked;
	int64 pid;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("identify: identifiers must not be NULL")));
	identifiers_from_jsonb(PG_GETARG_JSONB_P(0), &ids, &n, &blocked_ids, &nblocked);
	SPI_connect();
	pid = identify_in_tables(ids, n, blocked_ids, nblocked);
	SPI_finish();
	PG_RETURN_INT64(pid);
}

/*
 * _identify_keys(refcursor): identify(jsonb) for every event key the open
 * cursor returns (one jsonb column), in its order, with the same outcome:
 * rebuild()'s identity resolution.  Keys whose identifiers are all new to
 * the graph are resolved in memory and written together
 * (identity_batch.c); a key that reaches into the graph goes through it
 * as identify() does.  The batch is written before its memory passes
 * maintenance_work_mem.  Returns the number of keys.
 */
#define IDENTIFY_KEYS_FETCH 1000

/*
 * The store stays open across keys, in a context of its own (what opening
 * it allocates lives there), closed and emptied when a key goes through
 * the tables' graph, which opens the store itself.
 */
static void
keys_store_open(MemoryContext store_cxt)
{
	MemoryContext old = MemoryContextSwitchTo(store_cxt);

	pz_graph_write_begin();
	MemoryContextSwitchTo(old);
}

static void
keys_store_close(MemoryContext store_cxt)
{
	pz_store_close();
	MemoryContextReset(store_cxt);
}

static void
keys_batch_write(PzIdBatch *batch, MemoryContext store_cxt)
{
	MemoryContext old = MemoryContextSwitchTo(store_cxt);

	pz_id_batch_write(batch);
	MemoryContextSwitchTo(old);
}

PG_FUNCTION_INFO_V1(pz_identify_keys);
Datum
pz_identify_keys(PG_FUNCTION_ARGS)
{
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Portal cursor;
	PzIdBatch *batch;
	MemoryContext key_cxt, store_cxt, old;
	Size bound = (Size) maintenance_work_mem * 1024;
	int64 keys = 0;

	SPI_connect();
	cursor = SPI_cursor_find(name);
	if (cursor == NULL)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_CURSOR),
						errmsg("_identify_keys: no cursor \"%s\"", name)));
	key_cxt = AllocSetContextCreate(CurrentMemoryContext, "personalize identify keys",
									ALLOCSET_DEFAULT_SIZES);
	store_cxt = AllocSetContextCreate(CurrentMemoryContext, "personalize identify keys store",
									  ALLOCSET_DEFAULT_SIZES);
	keys_store_open(store_cxt);
	batch = pz_id_batch_begin();
	for (;;)
	{
		SPITupleTable *tt;
		uint64 nrows;

		SPI_cursor_fetch(cursor, true, IDENTIFY_KEYS_FETCH);
		tt = SPI_tuptable;
		nrows = SPI_processed;
		if (nrows == 0)
			break;
		if (tt->tupdesc->natts != 1 || SPI_gettypeid(tt->tupdesc, 1) != JSONBOID)
			ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
							errmsg("_identify_keys: the cursor must return one jsonb column")));
		for (uint64 r = 0; r < nrows; r++)
		{
			PzIdentifier *ids, *blocked_ids;
			int n, nblocked;
			bool isnull;
			Datum d = SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull);

			CHECK_FOR_INTERRUPTS();
			if (isnull)
				ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
								errmsg("identify: identifiers must not be NULL")));
			old = MemoryContextSwitchTo(key_cxt);
			identifiers_from_jsonb(DatumGetJsonbP(d), &ids, &n, &blocked_ids, &nblocked);
			if (!pz_id_batch_attribute(batch, ids, n, blocked_ids, nblocked))
			{
				/* it reaches into the graph: what the batch holds first */
				keys_batch_write(batch, store_cxt);
				keys_store_close(store_cxt);
				(void) identify_in_tables(ids, n, blocked_ids, nblocked);
				keys_store_open(store_cxt);
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(key_cxt);
			keys++;
			if (pz_id_batch_memory(batch) > bound)
				keys_batch_write(batch, store_cxt);
		}
		SPI_freetuptable(tt);
	}
	keys_batch_write(batch, store_cxt);
	keys_store_close(store_cxt);
	pz_id_batch_end(batch);
	MemoryContextDelete(key_cxt);
	MemoryContextDelete(store_cxt);
	SPI_finish();
	PG_RETURN_INT64(keys);
}

/*
 * split(namespace, value): move an identifier into a profile of its own
 * (pz_graph_split); returns that profile.
 */
PG_FUNCTION_INFO_V1(pz_split);
Datum
pz_split(PG_FUNCTION_ARGS)
{
	PzIdentifier id;
	bool blocked, alone;
	int64 p;

	identifier_arg(fcinfo, 0, &id, &blocked, "split");
	SPI_connect();
	p = pz_graph_split(&id, &alone);
	SPI_finish();
	if (alone)
		ereport(NOTICE, (errmsg("split: %s \"%s\" is already alone in profile %lld", id.ns->name,
								id.value, (long long) p)));
	PG_RETURN_INT64(p);
}

/*
 * forget's merge-log rows: those of each id the profile had, over the
 * stretch of the log in which the id was this person's, and those that
 * name one of its identifiers.  An id comes back when a split gives the
 * identifier it hashes from a profile of its own again, so one life of an
 * id runs from the last split into it to the merge or re-key that ended it.
 */
#define FORGET_CHAIN_SQL                                                                           \
	"WITH RECURSIVE chain(id, after, until) AS ("                                                  \
	"  SELECT $1::bigint,"                                                                         \
	"         coalesce((SELECT max(s.id) FROM personalize.merge_log s"                             \
	"                    WHERE s.action = 'split' AND s.into_profile = $1), 0),"                   \
	"         9223372036854775807::bigint"                                                         \
	"  UNION"                                                                                      \
	"  SELECT m.from_profile,"                                                                     \
	"         coalesce((SELECT max(s.id) FROM personalize.merge_log s"                             \
	"                    WHERE s.action = 'split' AND s.into_profile = m.from_profile"             \
	"                      AND s.id < m.id), 0),"                                                  \
	"         m.id"                                                                                \
	"  FROM personalize.merge_log m JOIN chain c"                                                  \
	"    ON m.into_profile = c.id AND m.action <> 'split'"                                         \
	"   AND m.id >= c.after AND m.id < c.until)"
static const char *const forget_merge_log_sql = FORGET_CHAIN_SQL
	", ids(ns, value) AS (SELECT * FROM unnest($2::text[], $3::text[]))"
	"DELETE FROM personalize.merge_log m"
	" WHERE EXISTS (SELECT FROM chain c WHERE (m.from_profile = c.id OR m.into_profile = c.id)"
	"                 AND m.id >= c.after AND m.id <= c.until)"
	"    OR (m.namespace_a, m.value_a) IN (SELECT ns, value FROM ids)"
	"    OR (m.namespace_b, m.value_b) IN (SELECT ns, value FROM ids)";

/* forget: one result row */
static void
forget_row(ReturnSetInfo *rsinfo, const char *relation, uint64 removed)
{
	Datum values[2] = {CStringGetTextDatum(relation), Int64GetDatum((int64) removed)};
	bool nulls[2] = {false, false};

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

static uint64
forget_exec(const char *sql, int nargs, Oid *types, Datum *values)
{
	int ret;

	/* not as our own statements: the cache cannot follow deletes, so the trigger empties it */
	ret = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);
	if (ret < 0)
		elog(ERROR, "forget: \"%s\" failed: %s", sql, SPI_result_code_string(ret));
	return SPI_processed;
}

/*
 * forget(namespace, value, source_columns): right to erasure.  The whole
 * profile goes: its identities, its row, the merge-log entries of it and of
 * every profile merged into it (and any that name its identifiers), the
 * refused links that name its identifiers or ids; then, per given source
 * column, the rows whose value, normalized by the column's namespace, is
 * one of its identifiers.  One transaction: the caller's.
 */
PG_FUNCTION_INFO_V1(pz_forget);
Datum
pz_forget(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PzIdentifier id;
	bool blocked;
	int64 p;
	Datum *ns_names, *vals;
	int nids;
	Datum args[3];
	Oid types3[3] = {INT8OID, TEXTARRAYOID, TEXTARRAYOID};
	ArrayType *cols = PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2);
	uint64 audience_events = 0;

	InitMaterializedSRF(fcinfo, 0);
	identifier_arg(fcinfo, 0, &id, &blocked, "forget");
	SPI_connect();
	pz_graph_write_begin();
	p = pz_identity_lookup(&id);
	pz_store_close();

	/* the identifiers to erase: the whole profile's, or just this one */
	if (p != 0)
	{
		Datum v[1] = {Int64GetDatum(p)};
		SPITupleTable *tt;

		if (SPI_execute_with_args("SELECT n.name, i.value FROM personalize.identities i "
								  "JOIN personalize.namespaces n ON n.id = i.namespace_id "
								  "WHERE i.profile_id = $1",
								  1, (Oid[]){INT8OID}, v, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "forget: could not read profile %lld", (long long) p);
		tt = SPI_tuptable;
		nids = SPI_processed;
		ns_names = palloc(nids * sizeof(Datum));
		vals = palloc(nids * sizeof(Datum));
		for (int i = 0; i < nids; i++)
		{
			bool isnull;

			ns_names[i] = PointerGetDatum(
				PG_DETOAST_DATUM_COPY(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull)));
			vals[i] = PointerGetDatum(
				PG_DETOAST_DATUM_COPY(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull)));
		}
	}
	else
	{
		nids = 1;
		ns_names = palloc(sizeof(Datum));
		vals = palloc(sizeof(Datum));
		ns_names[0] = CStringGetTextDatum(id.ns->name);
		vals[0] = PointerGetDatum(cstring_to_text_with_len(id.value, id.len));
	}
	args[0] = Int64GetDatum(p);
	args[1] = PointerGetDatum(construct_array(ns_names, nids, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(vals, nids, TEXTOID, -1, false, TYPALIGN_INT));

	forget_row(
		rsinfo, "personalize.identities",
		forget_exec("DELETE FROM personalize.identities WHERE profile_id = $1", 1, types3, args));
	forget_row(rsinfo, "personalize.profiles",
			   forget_exec("DELETE FROM personalize.profiles WHERE id = $1", 1, types3, args));
	/* every id the profile had: it and, back through merges and re-keys, its predecessors */
	if (p != 0)
	{
		int64 *chain;
		int nchain;

		if (SPI_execute_with_args(FORGET_CHAIN_SQL " SELECT DISTINCT id FROM chain", 1, types3,
								  args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "forget: could not read the ids of profile %lld", (long long) p);
		nchain = (int) SPI_processed;
		chain = palloc(sizeof(int64) * Max(nchain, 1));
		for (int i = 0; i < nchain; i++)
		{
			bool isnull;

			chain[i] = DatumGetInt64(
				SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		}
		/* its audience events go; its memberships end, so that consumers drop it */
		audience_events = pz_audiences_forget(p, nchain, chain);
	}
	forget_row(rsinfo, "personalize.merge_log", forget_exec(forget_merge_log_sql, 3, types3, args));
	forget_row(rsinfo, "personalize.refused_links",
			   forget_exec("WITH ids(ns, value) AS (SELECT * FROM unnest($2::text[], $3::text[]))"
						   "DELETE FROM personalize.refused_links r"
						   " WHERE (r.namespace_a, r.value_a) IN (SELECT ns, value FROM ids)"
						   "    OR (r.namespace_b, r.value_b) IN (SELECT ns, value FROM ids)"
						   "    OR r.profile_a = $1 OR r.profile_b = $1",
						   3, types3, args));
	forget_row(rsinfo, "personalize.audience_events", audience_events);

	/* the source rows */
	if (cols != NULL)
	{
		Datum *elems;
		bool *nulls;
		int nelems;

		deconstruct_array(cols, ARR_ELEMTYPE(cols), -1, false, TYPALIGN_DOUBLE, &elems, &nulls,
						  &nelems);
		for (int i = 0; i < nelems; i++)
		{
			HeapTupleHeader rec;
			bool isnull[3];
			Oid relid;
			char *colname, *nsname, *relname, *qualified;
			AttrNumber attnum;
			const PzNamespace *ns;
			StringInfoData sql;
			Datum v[3];

			if (nulls[i])
				continue;
			rec = DatumGetHeapTupleHeader(elems[i]);
			relid = DatumGetObjectId(GetAttributeByNum(rec, 1, &isnull[0]));
			colname = DatumGetCString(GetAttributeByNum(rec, 2, &isnull[1]));
			{
				Datum d = GetAttributeByNum(rec, 3, &isnull[2]);

				nsname = isnull[2] ? NULL : TextDatumGetCString(d);
			}
			if (isnull[0] || isnull[1] || isnull[2])
				ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
								errmsg("forget: a source column needs a relation, a column and a "
									   "namespace"),
								errhint("e.g. ARRAY[('shop.orders', 'email', "
										"'email')]::personalize.source_column[]")));
			relname = get_rel_name(relid);
			if (relname == NULL)
				ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
								errmsg("forget: relation %u does not exist", relid)));
			attnum = get_attnum(relid, colname);
			if (attnum <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("forget: column \"%s\" of %s does not exist", colname, relname)));
			ns = pz_namespace_by_name(nsname);

			/* names are quoted; values are parameters */
			initStringInfo(&sql);
			qualified =
				quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname);
			appendStringInfo(&sql, "DELETE FROM %s WHERE ", qualified);
			if (OidIsValid(ns->normalizer))
				appendStringInfo(&sql, "%s(%s::text)",
								 quote_qualified_identifier(
									 get_namespace_name(get_func_namespace(ns->normalizer)),
									 get_func_name(ns->normalizer)),
								 quote_identifier(colname));
			else
				appendStringInfo(&sql, "%s::text", quote_identifier(colname));
			appendStringInfoString(&sql, " IN (SELECT v FROM unnest($1::text[], $2::text[]) "
										 "AS ids(ns, v) WHERE ns = $3)");
			v[0] = args[1];
			v[1] = args[2];
			v[2] = CStringGetTextDatum(ns->name);
			forget_row(rsinfo, psprintf("%s.%s", qualified, quote_identifier(colname)),
					   forget_exec(sql.data, 3, (Oid[]){TEXTARRAYOID, TEXTARRAYOID, TEXTOID}, v));
		}
	}
	SPI_finish();
	return (Datum) 0;
}
