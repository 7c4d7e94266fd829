/*
 * profile_read.c
 *	  get_profile(profile_id) and get_profile(namespace, value): one row of
 *	  personalize.profile_view as jsonb, equal to to_jsonb() of the view's
 *	  row, read without the executor.
 *
 * The view (personalize--0.2.0--0.3.0.sql, _regenerate_view) is
 *
 *	  SELECT p.id AS profile_id, n.name AS key_namespace, p.key_value,
 *	         p.first_seen, p.last_seen, p.updated_at, c.*
 *	    FROM personalize.profiles p
 *	    LEFT JOIN personalize.namespaces n ON n.id = p.key_namespace_id
 *	    LEFT JOIN LATERAL personalize.profile_columns(p.states, '<spec>') AS c(...) ON true
 *
 * with one trait column per entry of the spec.  A point read through it
 * costs an executor run per call, more than the work; so these functions
 * do what it does directly: the profile's row by the primary key of
 * personalize.profiles (and the key namespace's name by that of
 * personalize.namespaces), with the statement's snapshot, and every trait
 * column through the code profile_columns() runs (profile_columns.h).
 *
 * The trait columns, (name, spec entry) by trait id and then the order
 * _trait_columns() gives, are loaded with SPI once per backend and kept
 * until the view changes: every trait change drops and creates the view
 * again, so the view's OID and the xmin of its pg_class row, read from the
 * syscache on every call, tell when to load them again.  They are loaded
 * as the view's owner with a safe search_path, as _regenerate_view (whose
 * owner the view's is) computed them, and checked against the view's own
 * columns, so that the jsonb has exactly the view's keys and types.
 *
 * Privileges and locks are those of a SELECT on the view: the caller needs
 * SELECT on personalize.profile_view, the view's owner on the tables
 * behind it; each relation is locked AccessShareLock to the end of the
 * transaction.  Tables with row-level security enabled for the view's
 * owner are refused, as the identity store refuses them.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "audience.h"
#include "identity.h"
#include "profile.h"
#include "profile_columns.h"

/* the view's first columns, before the traits' */
#define GP_NBASE 6
static const char *const gp_base_names[GP_NBASE] = {"profile_id", "key_namespace", "key_value",
													"first_seen", "last_seen",     "updated_at"};
static const Oid gp_base_types[GP_NBASE] = {INT8OID,        TEXTOID,        TEXTOID,
											TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};

/* The trait columns of one version of the view, in a context of their own. */
typedef struct GpColumns
{
	MemoryContext cxt;
	Oid view;           /* the view they are of */
	TransactionId xmin; /* of its pg_class row */
	PcSpec *spec;       /* NULL: no trait; spec->colnames are the view's column names */
	int *name_len;
	/*
	 * Every column (0 .. GP_NBASE - 1 the base ones, then the traits') in
	 * the order of jsonb's object keys, shorter first, then by bytes: the
	 * order in which the object is built, as JsonbValueToJsonb needs it.
	 */
	int *key_order;
} GpColumns;

static GpColumns *gp_columns = NULL;

/* where personalize.profiles' columns are, for one relid */
enum
{
	GP_P_ID,
	GP_P_KEY_NAMESPACE_ID,
	GP_P_KEY_VALUE,
	GP_P_STATES,
	GP_P_FIRST_SEEN,
	GP_P_LAST_SEEN,
	GP_P_UPDATED_AT,
	GP_P_COUNT
};
static const char *const gp_profiles_columns[GP_P_COUNT] = {
	"id", "key_namespace_id", "key_value", "states", "first_seen", "last_seen", "updated_at"};
static const Oid gp_profiles_types[GP_P_COUNT] = {
	INT8OID,        INT4OID,        TEXTOID,       InvalidOid /* profile */,
	TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
static Oid gp_profiles_relid = InvalidOid;
static AttrNumber gp_profiles_attr[GP_P_COUNT];

/* and personalize.namespaces' id and name */
static Oid gp_namespaces_relid = InvalidOid;
static AttrNumber gp_namespaces_attr[2];

static pg_attribute_noreturn() void gp_layout_error(const char *table)
{
	ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					errmsg("personalize.%s does not have the columns get_profile reads", table),
					errhint("Is the extension up to date (ALTER EXTENSION personalize UPDATE)?")));
}

/*
 * The attribute numbers of columns (by name) of rel, checked against their
 * types (InvalidOid: any varlena), and that rel's primary key is its first
 * column's alone.
 */
static void
gp_layout(Relation rel, const char *table, const char *const *names, const Oid *types, int n,
		  AttrNumber *attrs)
{
	TupleDesc td = RelationGetDescr(rel);
	Oid pk = RelationGetPrimaryKeyIndex(rel);
	HeapTuple tup;
	bool ok;

	for (int i = 0; i < n; i++)
	{
		attrs[i] = InvalidAttrNumber;
		for (int a = 0; a < td->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(td, a);

			if (!att->attisdropped && strcmp(NameStr(att->attname), names[i]) == 0 &&
				(OidIsValid(types[i]) ? att->atttypid == types[i] : att->attlen == -1))
				attrs[i] = a + 1;
		}
		if (attrs[i] == InvalidAttrNumber)
			gp_layout_error(table);
	}
	if (!OidIsValid(pk))
		gp_layout_error(table);
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pk));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for index %u", pk);
	ok = ((Form_pg_index) GETSTRUCT(tup))->indnkeyatts == 1 &&
		 ((Form_pg_index) GETSTRUCT(tup))->indkey.values[0] == attrs[0];
	ReleaseSysCache(tup);
	if (!ok)
		gp_layout_error(table);
}

/*
 * Open a table behind the view, as the view's owner would read it: the
 * owner needs SELECT, and row-level security that applies to the owner is
 * refused (the index read below would skip it).
 */
static Relation
gp_open_table(const char *table, Oid owner)
{
	Oid relid = get_relname_relid(table, get_namespace_oid("personalize", false));
	Relation rel;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE), errmsg("personalize.%s does not exist", table),
				 errhint("Is the extension installed in this database?")));
	rel = table_open(relid, AccessShareLock);
	if (pg_class_aclcheck(relid, owner, ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, table);
	if (check_enable_rls(relid, owner, true) == RLS_ENABLED)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("row-level security on personalize.%s is not supported", table),
						errhint("Grant personalize_reader or personalize_admin instead.")));
	return rel;
}

/* One row by the primary key (its first column, bigint or integer) into slot; false if none. */
static bool
gp_fetch(Relation rel, Relation pk, Datum key, Oid eqproc, TupleTableSlot *slot)
{
	ScanKeyData skey[1];
	IndexScanDesc scan;
	bool found;

	ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, eqproc, key);
	scan = index_beginscan(rel, pk, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, skey, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
		slot_getallattrs(slot);
	index_endscan(scan);
	return found;
}

/* ---- the view and its trait columns ---- */

static pg_attribute_noreturn() void gp_view_mismatch(const char *detail)
{
	ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					errmsg("personalize.profile_view does not have the columns of the traits"),
					errdetail("%s", detail),
					errhint("The view is made by personalize.add_trait(), alter_trait() and "
							"drop_trait(): it must not be changed by hand.")));
}

/* Check the loaded columns against the view's own. */
static void
gp_check_view(Oid view, const GpColumns *c)
{
	Relation rel = relation_open(view, NoLock); /* locked by the caller */
	TupleDesc td = RelationGetDescr(rel);
	int ntraits = c->spec ? c->spec->ncols : 0;
	int col = 0;

	for (int a = 0; a < td->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(td, a);
		const char *name;
		Oid type;

		if (att->attisdropped)
			continue;
		if (col >= GP_NBASE + ntraits)
			gp_view_mismatch(
				psprintf("It has a column \"%s\" that no trait makes.", NameStr(att->attname)));
		if (col < GP_NBASE)
			name = gp_base_names[col], type = gp_base_types[col];
		else
			name = c->spec->colnames[col - GP_NBASE],
			type = pc_column_type(c->spec, col - GP_NBASE);
		if (strcmp(NameStr(att->attname), name) != 0 || att->atttypid != type)
			gp_view_mismatch(psprintf(
				"Its column %d is \"%s\" %s, where the traits make \"%s\" %s.", col + 1,
				NameStr(att->attname), format_type_be(att->atttypid), name, format_type_be(type)));
		col++;
	}
	if (col != GP_NBASE + ntraits)
		gp_view_mismatch(
			psprintf("It has %d columns, the traits make %d.", col, GP_NBASE + ntraits));
	relation_close(rel, NoLock);
}

/* jsonb's order of object keys: shorter first, then by bytes */
static const char *const *gp_sort_names;
static const int *gp_sort_lens;

static int
gp_key_cmp(const void *a, const void *b)
{
	int x = *(const int *) a, y = *(const int *) b;

	if (gp_sort_lens[x] != gp_sort_lens[y])
		return gp_sort_lens[x] < gp_sort_lens[y] ? -1 : 1;
	return memcmp(gp_sort_names[x], gp_sort_names[y], gp_sort_lens[x]);
}

/*
 * Load the trait columns of the view: as _regenerate_view computes them,
 * as its owner, search_path pg_catalog, pg_temp, with the latest snapshot
 * (the view is read from the catalogs, which are always the latest).
 */
static GpColumns *
gp_load(Oid view, TransactionId xmin, Oid owner)
{
	static const char *const sql =
		"SELECT x.column_name, x.spec FROM personalize.traits t, personalize._trait_columns(t) "
		"WITH ORDINALITY x(column_name, spec, column_type, description, ord) ORDER BY t.id, x.ord";
	MemoryContext cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize get_profile", ALLOCSET_SMALL_SIZES);
	GpColumns *c = MemoryContextAllocZero(cxt, sizeof(GpColumns));

	c->cxt = cxt;
	c->view = view;
	c->xmin = xmin;
	PG_TRY();
	{
		Oid save_userid;
		int save_sec;
		int save_nestlevel;
		SPIPlanPtr plan;
		int ret;
		StringInfoData spec;
		char **names;
		uint64 n;
		MemoryContext old;

		GetUserIdAndSecContext(&save_userid, &save_sec);
		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
										  SECURITY_RESTRICTED_OPERATION);
		save_nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "get_profile: SPI_connect failed");
		plan = SPI_prepare(sql, 0, NULL);
		if (plan == NULL)
			elog(ERROR, "get_profile: could not plan \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		ret = SPI_execute_snapshot(plan, NULL, NULL,
								   /* a parallel query may not take a new snapshot */
								   IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot(),
								   InvalidSnapshot, true, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "get_profile: \"%s\" failed: %s", sql, SPI_result_code_string(ret));

		n = SPI_processed;
		old = MemoryContextSwitchTo(cxt);
		initStringInfo(&spec);
		names = palloc0(sizeof(char *) * Max(n, 1));
		c->name_len = palloc0(sizeof(int) * Max(n, 1));
		for (uint64 i = 0; i < n; i++)
		{
			HeapTuple tup = SPI_tuptable->vals[i];
			TupleDesc td = SPI_tuptable->tupdesc;
			bool isnull1, isnull2;
			Datum name = SPI_getbinval(tup, td, 1, &isnull1);
			Datum entry = SPI_getbinval(tup, td, 2, &isnull2);

			if (isnull1 || isnull2)
				elog(ERROR, "get_profile: personalize._trait_columns() returned a NULL");
			names[i] = TextDatumGetCString(name);
			c->name_len[i] = strlen(names[i]);
			if (i > 0)
				appendStringInfoChar(&spec, ';');
			appendStringInfoString(&spec, TextDatumGetCString(entry));
		}
		if (n > 0)
		{
			c->spec = pc_spec_parse(spec.data, spec.len);
			if (c->spec->ncols != (int) n)
				elog(ERROR,
					 "get_profile: the spec of the traits has %d entries for " UINT64_FORMAT
					 " columns",
					 c->spec->ncols, n);
			c->spec->colnames = (const char **) names;
		}
		{
			int ncols = GP_NBASE + (int) n;
			const char **all = palloc(sizeof(char *) * ncols);
			int *lens = palloc(sizeof(int) * ncols);

			for (int i = 0; i < ncols; i++)
			{
				all[i] = i < GP_NBASE ? gp_base_names[i] : names[i - GP_NBASE];
				lens[i] = strlen(all[i]);
			}
			c->key_order = palloc(sizeof(int) * ncols);
			for (int i = 0; i < ncols; i++)
				c->key_order[i] = i;
			gp_sort_names = all;
			gp_sort_lens = lens;
			qsort(c->key_order, ncols, sizeof(int), gp_key_cmp);
		}
		MemoryContextSwitchTo(old);
		SPI_finish();
		AtEOXact_GUC(true, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_sec);

		gp_check_view(view, c);
	}
	PG_CATCH();
	{
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return c;
}

/*
 * The view, locked as a SELECT locks it, with the caller's SELECT checked;
 * its trait columns, loaded if the view is new to this backend; *owner its
 * owner.  ERROR if it does not exist yet.
 */
static const GpColumns *
gp_view_of(Oid view, Oid *owner)
{
	HeapTuple tup;
	TransactionId xmin;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(view));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", view);
	xmin = HeapTupleHeaderGetXmin(tup->t_data);
	*owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	if (gp_columns == NULL || gp_columns->view != view || gp_columns->xmin != xmin)
	{
		GpColumns *fresh = gp_load(view, xmin, *owner);

		if (gp_columns != NULL)
			MemoryContextDelete(gp_columns->cxt);
		gp_columns = fresh;
	}
	return gp_columns;
}

static const GpColumns *
gp_view(Oid *owner)
{
	Oid view = RangeVarGetRelidExtended(makeRangeVar("personalize", "profile_view", -1),
										AccessShareLock, RVR_MISSING_OK, NULL, NULL);

	if (!OidIsValid(view))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
						errmsg("get_profile: personalize.profile_view does not exist yet"),
						errhint("It is made by the first personalize.register_source() or "
								"personalize.add_trait().")));
	if (pg_class_aclcheck(view, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_VIEW, "profile_view");
	return gp_view_of(view, owner);
}

const PcSpec *
pz_profile_view_spec(Oid *view, TransactionId *xmin)
{
	Oid owner;
	const GpColumns *c;

	*view = RangeVarGetRelidExtended(makeRangeVar("personalize", "profile_view", -1),
									 AccessShareLock, RVR_MISSING_OK, NULL, NULL);
	if (!OidIsValid(*view))
	{
		*xmin = InvalidTransactionId;
		return NULL;
	}
	c = gp_view_of(*view, &owner);
	*xmin = c->xmin;
	return c->spec;
}

/* ---- jsonb, as to_jsonb() renders each column type ----
 *
 * The object is built as a JsonbValue tree and serialized once
 * (JsonbValueToJsonb): its keys in jsonb's order, unique (the view's column
 * names), so it needs none of pushJsonbValue's sorting.
 */

static inline void
gp_string(JsonbValue *v, char *s, int len)
{
	v->type = jbvString;
	v->val.string.val = s;
	v->val.string.len = len;
}

static inline void
gp_numeric(JsonbValue *v, Numeric n)
{
	v->type = jbvNumeric;
	v->val.numeric = n;
}

/* to_jsonb(): a number from its output text, a string if that is not a number (NaN, Infinity) */
static void
gp_number_text(JsonbValue *v, char *out)
{
	if (strchr(out, 'N') != NULL || strchr(out, 'n') != NULL)
		gp_string(v, out, strlen(out));
	else
		gp_numeric(v, DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(out),
														  ObjectIdGetDatum(InvalidOid),
														  Int32GetDatum(-1))));
}

/* one dimension of a text[], nested as to_jsonb() nests them */
static void
gp_array_dim(JsonbValue *v, int dim, int ndims, const int *dims, const Datum *elems,
			 const bool *nulls, int *i)
{
	v->type = jbvArray;
	v->val.array.rawScalar = false;
	v->val.array.nElems = dims[dim];
	v->val.array.elems = palloc(sizeof(JsonbValue) * Max(dims[dim], 1));
	for (int k = 0; k < dims[dim]; k++)
	{
		JsonbValue *e = &v->val.array.elems[k];

		if (dim + 1 < ndims)
			gp_array_dim(e, dim + 1, ndims, dims, elems, nulls, i);
		else
		{
			if (nulls[*i])
				e->type = jbvNull;
			else
			{
				text *t = DatumGetTextPP(elems[*i]);

				gp_string(e, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
			(*i)++;
		}
	}
}

/* a jsonb value as a tree to nest (its object keys come sorted and unique) */
static void
gp_jsonb(JsonbValue *v, Jsonb *j)
{
	JsonbParseState *st = NULL;
	JsonbIterator *it;
	JsonbValue tok_value;
	JsonbValue *res = NULL;
	JsonbIteratorToken tok;

	if (JB_ROOT_IS_SCALAR(j))
	{
		if (!JsonbExtractScalar(&j->root, v))
			elog(ERROR, "get_profile: invalid scalar jsonb");
		return;
	}
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &tok_value, false)) != WJB_DONE)
		res = pushJsonbValue(&st, tok, tok < WJB_BEGIN_ARRAY ? &tok_value : NULL);
	*v = *res;
}

static void
gp_value(JsonbValue *v, Oid type, Datum d, bool isnull)
{
	if (isnull)
	{
		v->type = jbvNull;
		return;
	}
	switch (type)
	{
		case INT8OID:
			gp_numeric(v, int64_to_numeric(DatumGetInt64(d)));
			break;
		case NUMERICOID:
		{
			Numeric n = DatumGetNumeric(d);

			if (numeric_is_nan(n) || numeric_is_inf(n))
				gp_number_text(v, DatumGetCString(DirectFunctionCall1(numeric_out, d)));
			else
				gp_numeric(v, n);
			break;
		}
		case FLOAT8OID:
			/* float8out honours extra_float_digits, as to_jsonb's output call does */
			gp_number_text(v, DatumGetCString(DirectFunctionCall1(float8out, d)));
			break;
		case TEXTOID:
		{
			text *t = DatumGetTextPP(d);

			gp_string(v, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			break;
		}
		case TIMESTAMPTZOID:
		{
			char *s = JsonEncodeDateTime(NULL, d, TIMESTAMPTZOID, NULL);

			gp_string(v, s, strlen(s));
			break;
		}
		case TEXTARRAYOID:
		{
			ArrayType *a = DatumGetArrayTypeP(d);
			Datum *elems;
			bool *nulls;
			int nelems;
			int i = 0;

			deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
			if (ARR_NDIM(a) == 0 || nelems == 0)
			{
				v->type = jbvArray;
				v->val.array.rawScalar = false;
				v->val.array.nElems = 0;
				v->val.array.elems = NULL;
			}
			else
				gp_array_dim(v, 0, ARR_NDIM(a), ARR_DIMS(a), elems, nulls, &i);
			break;
		}
		case JSONBOID:
			gp_jsonb(v, DatumGetJsonbP(d));
			break;
		default:
			elog(ERROR, "get_profile: unexpected column type %u", type);
	}
}

/*
 * "audiences": the names of the audiences the profile is in, sorted, put
 * among the object's pairs in jsonb's order of keys (no trait column may
 * be named so).  Absent where the database has no audiences yet (an
 * extension not updated to 0.7.0) and for a caller who may not read
 * personalize.audience_memberships (SELECT on the view alone).
 */
static void
gp_audiences(JsonbValue *top, int64 profile_id)
{
	static const char key[] = "audiences";
	const int key_len = sizeof(key) - 1;
	bool exists;
	List *names = pz_audience_names_of(profile_id, &exists);
	JsonbPair *pairs = top->val.object.pairs;
	int n = top->val.object.nPairs, at;
	JsonbValue arr;
	ListCell *lc;
	int i = 0;

	if (!exists)
		return;
	arr.type = jbvArray;
	arr.val.array.rawScalar = false;
	arr.val.array.nElems = list_length(names);
	arr.val.array.elems = palloc(sizeof(JsonbValue) * Max(list_length(names), 1));
	foreach (lc, names)
	{
		char *name = lfirst(lc);

		gp_string(&arr.val.array.elems[i++], name, strlen(name));
	}
	for (at = 0; at < n; at++)
	{
		int len = pairs[at].key.val.string.len;

		if (len > key_len ||
			(len == key_len && memcmp(pairs[at].key.val.string.val, key, key_len) > 0))
			break;
	}
	memmove(&pairs[at + 1], &pairs[at], sizeof(JsonbPair) * (n - at));
	gp_string(&pairs[at].key, (char *) key, key_len);
	pairs[at].value = arr;
	top->val.object.nPairs = n + 1;
}

/* ---- get_profile ---- */

/*
 * The view's row of profile_id as jsonb, NULL if there is no such profile.
 * The view's checks are done first, as a query of it would.  With
 * ns_listed, the key namespace's name comes from the backend's list of
 * namespaces, which resolving an identifier read in this transaction (a
 * profile's key namespace holds its key identifier, so it can be neither
 * dropped nor renamed by personalize's functions meanwhile); otherwise
 * from the namespaces table, as the view's owner reads it.
 */
static Datum
gp_read(int64 profile_id, const GpColumns *cols, Oid owner, bool ns_listed, bool *isnull)
{
	Relation profiles = gp_open_table("profiles", owner);
	Relation pk;
	TupleTableSlot *slot;
	JsonbValue top;
	Datum *row;
	bool *rownulls;
	Datum base[GP_NBASE];
	bool basenull[GP_NBASE];
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Jsonb *out;
	int ncols;
	JsonbValue *jv;

	if (gp_profiles_relid != RelationGetRelid(profiles))
	{
		gp_profiles_relid = InvalidOid;
		gp_layout(profiles, "profiles", gp_profiles_columns, gp_profiles_types, GP_P_COUNT,
				  gp_profiles_attr);
		gp_profiles_relid = RelationGetRelid(profiles);
	}
	pk = index_open(RelationGetPrimaryKeyIndex(profiles), AccessShareLock);
	slot = table_slot_create(profiles, NULL);
	if (!gp_fetch(profiles, pk, Int64GetDatum(profile_id), F_INT8EQ, slot))
	{
		ExecDropSingleTupleTableSlot(slot);
		index_close(pk, NoLock);
		table_close(profiles, NoLock);
		*isnull = true;
		return (Datum) 0;
	}
	row = slot->tts_values;
	rownulls = slot->tts_isnull;

	base[0] = row[gp_profiles_attr[GP_P_ID] - 1];
	basenull[0] = false;
	/* key_namespace: LEFT JOIN personalize.namespaces n ON n.id = p.key_namespace_id */
	basenull[1] = true;
	base[1] = (Datum) 0;
	if (ns_listed && !rownulls[gp_profiles_attr[GP_P_KEY_NAMESPACE_ID] - 1])
	{
		int32 id = DatumGetInt32(row[gp_profiles_attr[GP_P_KEY_NAMESPACE_ID] - 1]);
		int n = pz_namespace_count();

		for (int i = 0; i < n; i++)
			if (pz_namespace_at(i)->id == id)
			{
				base[1] = CStringGetTextDatum(pz_namespace_at(i)->name);
				basenull[1] = false;
				break;
			}
	}
	else if (!rownulls[gp_profiles_attr[GP_P_KEY_NAMESPACE_ID] - 1])
	{
		Relation namespaces = gp_open_table("namespaces", owner);
		Relation npk;
		TupleTableSlot *nslot;
		static const char *const names[2] = {"id", "name"};
		static const Oid types[2] = {INT4OID, TEXTOID};

		if (gp_namespaces_relid != RelationGetRelid(namespaces))
		{
			gp_namespaces_relid = InvalidOid;
			gp_layout(namespaces, "namespaces", names, types, 2, gp_namespaces_attr);
			gp_namespaces_relid = RelationGetRelid(namespaces);
		}
		npk = index_open(RelationGetPrimaryKeyIndex(namespaces), AccessShareLock);
		nslot = table_slot_create(namespaces, NULL);
		if (gp_fetch(namespaces, npk, row[gp_profiles_attr[GP_P_KEY_NAMESPACE_ID] - 1], F_INT4EQ,
					 nslot) &&
			!nslot->tts_isnull[gp_namespaces_attr[1] - 1])
		{
			/* a copy: the slot goes before the jsonb is built */
			base[1] =
				PointerGetDatum(DatumGetTextPCopy(nslot->tts_values[gp_namespaces_attr[1] - 1]));
			basenull[1] = false;
		}
		ExecDropSingleTupleTableSlot(nslot);
		index_close(npk, NoLock);
		table_close(namespaces, NoLock);
	}
	for (int i = 2; i < GP_NBASE; i++)
	{
		static const int from[GP_NBASE] = {
			-1, -1, GP_P_KEY_VALUE, GP_P_FIRST_SEEN, GP_P_LAST_SEEN, GP_P_UPDATED_AT};
		int a = gp_profiles_attr[from[i]] - 1;

		base[i] = row[a];
		basenull[i] = rownulls[a];
	}

	/* every column's value, then the object with its keys in order */
	ncols = GP_NBASE + (cols->spec != NULL ? cols->spec->ncols : 0);
	jv = palloc(sizeof(JsonbValue) * ncols);
	for (int i = 0; i < GP_NBASE; i++)
		gp_value(&jv[i], gp_base_types[i], base[i], basenull[i]);
	if (cols->spec != NULL)
	{
		const PcSpec *spec = cols->spec;
		PzState **states = palloc(sizeof(PzState *) * spec->ntraits);
		int sa = gp_profiles_attr[GP_P_STATES] - 1;
		Profile *p = rownulls[sa] ? NULL : profile_from_datum(row[sa]);

		pc_spec_read(spec, p, states);
		for (int i = 0; i < spec->ncols; i++)
		{
			const PcColumn *col = &spec->cols[i];
			JsonbValue *tree;
			bool vnull;
			Datum v = pc_column_value(col, states[col->slot], now, &vnull, &tree);

			if (tree != NULL)
				jv[GP_NBASE + i] = *tree; /* a session, not serialized */
			else
				gp_value(&jv[GP_NBASE + i], pc_column_type(spec, i), v, vnull);
		}
	}
	top.type = jbvObject;
	top.val.object.nPairs = 0;
	top.val.object.pairs = palloc(sizeof(JsonbPair) * (ncols + 1));
	for (int k = 0; k < ncols; k++)
	{
		int i = cols->key_order[k];
		JsonbPair *pair = &top.val.object.pairs[top.val.object.nPairs++];

		if (i < GP_NBASE)
			gp_string(&pair->key, (char *) gp_base_names[i], strlen(gp_base_names[i]));
		else
			gp_string(&pair->key, (char *) cols->spec->colnames[i - GP_NBASE],
					  cols->name_len[i - GP_NBASE]);
		pair->value = jv[i];
	}
	gp_audiences(&top, profile_id);
	for (int k = 0; k < top.val.object.nPairs; k++)
		top.val.object.pairs[k].order = k;
	out = JsonbValueToJsonb(&top);

	ExecDropSingleTupleTableSlot(slot);
	index_close(pk, NoLock);
	table_close(profiles, NoLock);
	*isnull = false;
	return JsonbPGetDatum(out);
}

PG_FUNCTION_INFO_V1(pz_get_profile_by_id);
Datum
pz_get_profile_by_id(PG_FUNCTION_ARGS)
{
	Oid owner;
	const GpColumns *cols = gp_view(&owner);
	bool isnull;
	Datum d = gp_read(PG_GETARG_INT64(0), cols, owner, false, &isnull);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(d);
}

PG_FUNCTION_INFO_V1(pz_get_profile);
Datum
pz_get_profile(PG_FUNCTION_ARGS)
{
	int64 pid = pz_identity_resolve(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0),
									PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1), "get_profile");
	Oid owner;
	const GpColumns *cols = gp_view(&owner);
	bool isnull;
	Datum d;

	/* the view is checked even for an identifier never seen, as a query of it would be */
	if (pid == 0)
		PG_RETURN_NULL();
	d = gp_read(pid, cols, owner, true, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(d);
}
