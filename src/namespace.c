/*
 * namespace.c
 *	  Identifier namespaces: configuration functions, and the backend's
 *	  cache of the personalize.namespaces table.
 *
 * Every identity operation needs each namespace's priority, limit,
 * normalizer and blocked values, so they are read once per transaction
 * (and again after the table changes, which its statement trigger reports)
 * into a small array rather than looked up per event.  Reading them per
 * transaction, not per session, means a change committed elsewhere is seen
 * by the next transaction without any cross-backend signalling.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "identity.h"
#include "state.h"

static MemoryContext ns_cxt = NULL;
static MemoryContext ns_retired = NULL; /* lists replaced in this transaction */
static PzNamespace *ns_list = NULL;
static int ns_count = 0;
static int ns_limited = 0;
static bool ns_valid = false;
static LocalTransactionId ns_lxid = InvalidLocalTransactionId;
static SPIPlanPtr ns_plan = NULL; /* the read of the list, planned once */

void
pz_namespace_invalidate(void)
{
	ns_valid = false;
}

/*
 * A rolled-back (sub)transaction may have created, changed or dropped
 * namespaces that the list was read with: read it again.
 */
static void
ns_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		ns_valid = false;
	if ((event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		 event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		 event == XACT_EVENT_PREPARE) &&
		ns_retired != NULL)
		MemoryContextDeleteChildren(ns_retired);
}

static void
ns_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid,
					void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		ns_valid = false;
}

static int
blocked_cmp(const void *a, const void *b)
{
	const char *sa = *(const char *const *) a;
	const char *sb = *(const char *const *) b;

	return pz_value_cmp(sa, strlen(sa), sb, strlen(sb));
}

/*
 * One namespace from a row of the list's columns, in the order of the
 * query below: id, name, priority, coalesce(max_per_profile, 0),
 * coalesce(normalizer::oid, 0), blocked.
 */
static void
ns_fill(PzNamespace *ns, const Datum *v, const bool *isnull)
{
	Datum *elems;
	bool *nulls;
	int nelems;

	ns->id = DatumGetInt32(v[0]);
	ns->name = MemoryContextStrdup(ns_cxt, TextDatumGetCString(v[1]));
	ns->priority = DatumGetInt32(v[2]);
	ns->max_per_profile = isnull[3] ? 0 : DatumGetInt32(v[3]);
	ns->normalizer = isnull[4] ? InvalidOid : DatumGetObjectId(v[4]);
	/*
	 * A dropped normalizer breaks its own namespace only, and only when
	 * a value is normalized: the others, and drop_namespace, still work.
	 */
	if (OidIsValid(ns->normalizer))
	{
		if (SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(ns->normalizer)))
			fmgr_info_cxt(ns->normalizer, &ns->normalizer_fn, ns_cxt);
		else
			ns->normalizer_missing = true;
	}
	if (ns->max_per_profile > 0)
		ns_limited++;

	deconstruct_array(DatumGetArrayTypeP(v[5]), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls,
					  &nelems);
	ns->blocked = MemoryContextAlloc(ns_cxt, Max(nelems, 1) * sizeof(char *));
	ns->blocked_len = MemoryContextAlloc(ns_cxt, Max(nelems, 1) * sizeof(int32));
	for (int j = 0; j < nelems; j++)
		if (!nulls[j])
			ns->blocked[ns->nblocked++] =
				MemoryContextStrdup(ns_cxt, TextDatumGetCString(elems[j]));
	qsort(ns->blocked, ns->nblocked, sizeof(char *), blocked_cmp);
	for (int j = 0; j < ns->nblocked; j++)
		ns->blocked_len[j] = strlen(ns->blocked[j]);
}

/* The list through SPI: the statement is planned once per backend. */
static void
ns_read_spi(void)
{
	int ret;

	SPI_connect();

	/*
	 * The statement is planned once per backend: the list is read again in
	 * every transaction that uses it, and planning would cost more than
	 * reading the few rows.  The plan cache replans it after DDL.
	 */
	if (ns_plan == NULL)
	{
		SPIPlanPtr plan = SPI_prepare("SELECT id, name, priority, coalesce(max_per_profile, 0), "
									  "coalesce(normalizer::oid, 0), blocked "
									  "FROM personalize.namespaces ORDER BY id",
									  0, NULL);

		if (plan == NULL)
			elog(ERROR, "could not plan the read of personalize.namespaces: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep the plan of the read of personalize.namespaces");
		ns_plan = plan;
	}
	ret = SPI_execute_plan(ns_plan, NULL, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read personalize.namespaces: %s", SPI_result_code_string(ret));

	ns_list = MemoryContextAllocZero(ns_cxt, Max(SPI_processed, 1) * sizeof(PzNamespace));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum v[6];
		bool isnull[6];

		for (int c = 0; c < 6; c++)
			v[c] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c + 1, &isnull[c]);
		ns_fill(&ns_list[i], v, isnull);
	}
	ns_count = SPI_processed;
	SPI_finish();
}

/* the table's columns the list reads, in ns_fill's order, with their types */
static const char *const ns_columns[6] = {"id",         "name",   "priority", "max_per_profile",
										  "normalizer", "blocked"};
static const Oid ns_column_types[6] = {INT4OID, TEXTOID,         INT4OID,
									   INT4OID, REGPROCEDUREOID, TEXTARRAYOID};
static Oid ns_layout_relid = InvalidOid;
static AttrNumber ns_attr[6];

/*
 * Which row versions the list was built from, by the table's file (a
 * TRUNCATE or a rewrite makes a new one), TID and inserting transaction: a
 * row version never changes, and no other takes its TID with the same
 * inserting transaction once that has ended, so when a transaction's
 * snapshot shows exactly these, the list (built by ns_read_direct) is
 * still what reading them would build, and is kept.  Not when this
 * transaction wrote any of them: it may truncate and write the table
 * again in place.
 */
typedef struct NsRowVersion
{
	ItemPointerData tid;
	TransactionId xmin;
} NsRowVersion;

static NsRowVersion *ns_versions = NULL; /* NULL: the list was not read directly */
static int ns_nversions = 0;
static Oid ns_versions_relid = InvalidOid; /* and the table and its file they are of */
static Oid ns_versions_relfile = InvalidOid;

static int
ns_version_cmp(const void *a, const void *b)
{
	const NsRowVersion *x = a, *y = b;
	BlockNumber bx = ItemPointerGetBlockNumberNoCheck(&x->tid),
				by = ItemPointerGetBlockNumberNoCheck(&y->tid);
	OffsetNumber ox = ItemPointerGetOffsetNumberNoCheck(&x->tid),
				 oy = ItemPointerGetOffsetNumberNoCheck(&y->tid);

	if (bx != by)
		return bx < by ? -1 : 1;
	return (ox > oy) - (ox < oy);
}

typedef struct NsRow
{
	int32 id;
	HeapTuple tuple;
} NsRow;

static int
ns_row_cmp(const void *a, const void *b)
{
	int32 x = ((const NsRow *) a)->id, y = ((const NsRow *) b)->id;

	return (x > y) - (x < y);
}

/*
 * Open the table for a direct read, as the statement of ns_read_spi would
 * read it (the active snapshot, the caller's SELECT privilege); NULL, having
 * read nothing, where that may not be the same: no active snapshot, no
 * SELECT on the whole table (column grants), row-level security, or columns
 * other than this library's; then the statement reads it (or raises its
 * error).
 */
static Relation
ns_open_direct(void)
{
	Oid relid;
	Relation rel;
	TupleDesc td;

	if (!ActiveSnapshotSet())
		return NULL;
	relid = get_relname_relid("namespaces", get_namespace_oid("personalize", false));
	if (!OidIsValid(relid))
		return NULL;
	rel = table_open(relid, AccessShareLock);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK ||
		check_enable_rls(relid, InvalidOid, true) != RLS_NONE)
	{
		table_close(rel, AccessShareLock);
		return NULL;
	}
	td = RelationGetDescr(rel);
	if (ns_layout_relid != relid)
	{
		for (int c = 0; c < 6; c++)
		{
			ns_attr[c] = InvalidAttrNumber;
			for (int a = 0; a < td->natts; a++)
			{
				Form_pg_attribute att = TupleDescAttr(td, a);

				if (!att->attisdropped && strcmp(NameStr(att->attname), ns_columns[c]) == 0 &&
					att->atttypid == ns_column_types[c])
					ns_attr[c] = a + 1;
			}
			if (ns_attr[c] == InvalidAttrNumber)
			{
				table_close(rel, AccessShareLock);
				return NULL;
			}
		}
		ns_layout_relid = relid;
	}
	return rel;
}

/*
 * The visible row versions, sorted by TID, in *versions (palloc'd in
 * CurrentMemoryContext); their number.  *own: this transaction wrote one.
 */
static int
ns_scan_versions(Relation rel, NsRowVersion **versions, bool *own)
{
	TableScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int n = 0, cap = 16;
	NsRowVersion *v = palloc(sizeof(NsRowVersion) * cap);

	*own = false;

	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool shouldfree;
		HeapTuple tup = ExecFetchSlotHeapTuple(slot, false, &shouldfree);

		if (n == cap)
			v = repalloc(v, sizeof(NsRowVersion) * (cap *= 2));
		v[n].tid = tup->t_self;
		v[n].xmin = HeapTupleHeaderGetRawXmin(tup->t_data);
		if (TransactionIdIsCurrentTransactionId(v[n].xmin))
			*own = true;
		n++;
		if (shouldfree)
			heap_freetuple(tup);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	qsort(v, n, sizeof(NsRowVersion), ns_version_cmp);
	*versions = v;
	return n;
}

/* the list in ns_list is still what these row versions of rel give */
static bool
ns_unchanged(Relation rel, const NsRowVersion *versions, int n)
{
	if (ns_versions == NULL || ns_list == NULL || n != ns_nversions ||
		RelationGetRelid(rel) != ns_versions_relid || rel->rd_node.relNode != ns_versions_relfile)
		return false;
	for (int i = 0; i < n; i++)
		if (ns_version_cmp(&versions[i], &ns_versions[i]) != 0 ||
			versions[i].xmin != ns_versions[i].xmin)
			return false;
	/* a normalizer dropped since: read again, to say so when it is used */
	for (int i = 0; i < ns_count; i++)
		if (OidIsValid(ns_list[i].normalizer) &&
			SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(ns_list[i].normalizer)) ==
				ns_list[i].normalizer_missing)
			return false;
	return true;
}

/*
 * Build the list from the table, its rows by id, and remember their
 * versions (versions NULL: none to remember).
 */
static void
ns_read_direct(Relation rel, const NsRowVersion *versions, int nversions)
{
	TupleDesc td = RelationGetDescr(rel);
	TableScanDesc scan;
	TupleTableSlot *slot;
	NsRow *rows;
	int nrows = 0, cap = 16;
	MemoryContext tmp, old;

	/* the rows, copied, then sorted by id */
	tmp = AllocSetContextCreate(CurrentMemoryContext, "personalize namespaces read",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(tmp);
	rows = palloc(sizeof(NsRow) * cap);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool isnull;

		if (nrows == cap)
			rows = repalloc(rows, sizeof(NsRow) * (cap *= 2));
		rows[nrows].id = DatumGetInt32(slot_getattr(slot, ns_attr[0], &isnull));
		rows[nrows].tuple = ExecCopySlotHeapTuple(slot);
		nrows++;
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	qsort(rows, nrows, sizeof(NsRow), ns_row_cmp);

	ns_list = MemoryContextAllocZero(ns_cxt, Max(nrows, 1) * sizeof(PzNamespace));
	for (int i = 0; i < nrows; i++)
	{
		Datum v[6];
		bool isnull[6];

		for (int c = 0; c < 6; c++)
			v[c] = heap_getattr(rows[i].tuple, ns_attr[c], td, &isnull[c]);
		ns_fill(&ns_list[i], v, isnull);
	}
	ns_count = nrows;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);

	/* the same snapshot read the same versions: remember them with the list */
	if (versions == NULL)
		return;
	ns_versions = MemoryContextAlloc(ns_cxt, sizeof(NsRowVersion) * Max(nversions, 1));
	memcpy(ns_versions, versions, sizeof(NsRowVersion) * nversions);
	ns_nversions = nversions;
	ns_versions_relid = RelationGetRelid(rel);
	ns_versions_relfile = rel->rd_node.relNode;
}

/*
 * Read the list in each transaction that uses it (and again after a change
 * in this one): the table directly where that reads what the statement
 * would, keeping the list when the same row versions are visible; else the
 * statement.
 */
static void
ns_load(void)
{
	static bool callbacks_registered = false;
	Relation rel;
	NsRowVersion *versions = NULL;
	int nversions = 0;
	bool own = false;

	if (ns_valid && ns_lxid == MyProc->lxid)
		return;
	if (!callbacks_registered)
	{
		RegisterXactCallback(ns_xact_callback, NULL);
		RegisterSubXactCallback(ns_subxact_callback, NULL);
		callbacks_registered = true;
	}

	rel = ns_open_direct();
	if (rel != NULL)
	{
		nversions = ns_scan_versions(rel, &versions, &own);
		if (!own && ns_unchanged(rel, versions, nversions))
		{
			pfree(versions);
			table_close(rel, AccessShareLock);
			ns_valid = true;
			ns_lxid = MyProc->lxid;
			return;
		}
	}

	/*
	 * The previous list may still be pointed at by an operation under way
	 * (a reload after a subtransaction abort inside it): retire it until the
	 * transaction ends rather than free it now.
	 */
	if (ns_retired == NULL)
		ns_retired = AllocSetContextCreate(TopMemoryContext, "personalize retired namespaces",
										   ALLOCSET_SMALL_SIZES);
	if (ns_cxt != NULL)
		MemoryContextSetParent(ns_cxt, ns_retired);
	ns_cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize namespaces", ALLOCSET_SMALL_SIZES);
	ns_list = NULL;
	ns_versions = NULL;
	ns_nversions = 0;
	ns_count = ns_limited = 0;
	ns_valid = false;

	if (rel != NULL)
	{
		ns_read_direct(rel, own ? NULL : versions, nversions);
		pfree(versions);
		table_close(rel, AccessShareLock);
	}
	else
		ns_read_spi();

	ns_valid = true;
	ns_lxid = MyProc->lxid;
}

/* the names of all namespaces, for error hints */
static char *
ns_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < ns_count; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", ns_list[i].name);
	return ns_count ? buf.data : "(none yet)";
}

const PzNamespace *
pz_namespace_by_name(const char *name)
{
	ns_load();
	for (int i = 0; i < ns_count; i++)
		if (strcmp(ns_list[i].name, name) == 0)
			return &ns_list[i];
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("identifier namespace \"%s\" does not exist", name),
			 errhint("Existing namespaces: %s.  Create one with personalize.create_namespace().",
					 ns_names())));
	return NULL; /* keep the compiler quiet */
}

const PzNamespace *
pz_namespace_by_id(int32 id)
{
	ns_load();
	for (int i = 0; i < ns_count; i++)
		if (ns_list[i].id == id)
			return &ns_list[i];
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("identifier namespace %d of personalize.identities does not exist", id)));
	return NULL;
}

int
pz_namespace_limited_count(void)
{
	ns_load();
	return ns_limited;
}

char *
pz_namespace_normalize(const PzNamespace *ns, const char *value, int32 len, int32 *outlen)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum result;
	text *t;

	if (!OidIsValid(ns->normalizer))
	{
		if (len == 0)
			return NULL;
		*outlen = len;
		return pnstrdup(value, len);
	}

	if (ns->normalizer_missing)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the normalizer of namespace \"%s\" no longer exists", ns->name),
				 errhint("Recreate the function and the namespace, or drop the namespace once its "
						 "identifiers are forgotten.")));

	/* the collation lets normalizers written in SQL call lower() */
	InitFunctionCallInfoData(*fcinfo, unconstify(FmgrInfo *, &ns->normalizer_fn), 1,
							 DEFAULT_COLLATION_OID, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(cstring_to_text_with_len(value, len));
	fcinfo->args[0].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return NULL;
	t = DatumGetTextPP(result);
	if (VARSIZE_ANY_EXHDR(t) == 0)
		return NULL;
	*outlen = VARSIZE_ANY_EXHDR(t);
	return text_to_cstring(t);
}

bool
pz_namespace_is_blocked(const PzNamespace *ns, const char *value, int32 len)
{
	int lo = 0, hi = ns->nblocked - 1;

	while (lo <= hi)
	{
		int mid = (lo + hi) / 2;
		int c = pz_value_cmp(ns->blocked[mid], ns->blocked_len[mid], value, len);

		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return false;
}

/* ---- configuration functions ---- */

static char *
arg_name(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("%s must not be NULL", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static void
check_namespace_name(const char *name)
{
	size_t len = strlen(name);
	bool ok = len >= 1 && len <= 63 && name[0] >= 'a' && name[0] <= 'z';

	for (size_t i = 1; ok && i < len; i++)
		ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
			 name[i] == '_';
	if (!ok)
		ereport(ERROR, (errcode(ERRCODE_INVALID_NAME),
						errmsg("\"%s\" is not a valid namespace name", name),
						errhint("Use 1 to 63 lowercase letters, digits and underscores, starting "
								"with a letter, e.g. customer_id.")));
}

static void
check_max_per_profile(FunctionCallInfo fcinfo, int argno)
{
	if (!PG_ARGISNULL(argno) && PG_GETARG_INT32(argno) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_per_profile must be at least 1, not %d", PG_GETARG_INT32(argno)),
				 errhint("NULL means no limit.")));
}

/* A normalizer takes one text, returns text, and is IMMUTABLE. */
static void
check_normalizer(Oid fn)
{
	HeapTuple tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	bool ok;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
						errmsg("normalizer function %u does not exist", fn)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	ok = proc->pronargs == 1 && proc->proargtypes.values[0] == TEXTOID &&
		 proc->prorettype == TEXTOID && !proc->proretset && proc->prokind == PROKIND_FUNCTION;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("normalizer %s must take one text argument and return text",
						format_procedure(fn)),
				 errhint("Wrap it, e.g. CREATE FUNCTION my_phone(text) RETURNS text IMMUTABLE "
						 "LANGUAGE sql RETURN personalize.normalize_phone($1, '44').")));
	if (proc->provolatile != PROVOLATILE_IMMUTABLE)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("normalizer %s must be IMMUTABLE", format_procedure(fn)),
						errhint("A stored identifier must normalize the same way forever.")));
	ReleaseSysCache(tup);
}

static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (ret != expect)
		elog(ERROR, "personalize: \"%s\" failed: %s", sql, SPI_result_code_string(ret));
}

PG_FUNCTION_INFO_V1(pz_create_namespace);
Datum
pz_create_namespace(PG_FUNCTION_ARGS)
{
	char *name = arg_name(fcinfo, 0, "namespace name");
	Oid normalizer = PG_ARGISNULL(3) ? InvalidOid : PG_GETARG_OID(3);
	ArrayType *blocked_in = PG_ARGISNULL(4) ? NULL : PG_GETARG_ARRAYTYPE_P(4);
	Oid types[6] = {TEXTOID, INT4OID, INT4OID, REGPROCEDUREOID, TEXTARRAYOID};
	Datum values[6];
	char nulls[6] = "     ";
	Datum *elems;
	bool *elem_nulls;
	int nelems = 0, nblocked = 0;
	Datum *blocked;
	PzNamespace tmp;

	check_namespace_name(name);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("priority must not be NULL"),
				 errhint("A higher priority wins; the default is 0.")));
	check_max_per_profile(fcinfo, 2);
	if (OidIsValid(normalizer))
		check_normalizer(normalizer);

	/* blocked values are stored as the normalizer writes them */
	memset(&tmp, 0, sizeof(tmp));
	tmp.name = name;
	tmp.normalizer = normalizer;
	if (OidIsValid(normalizer))
		fmgr_info(normalizer, &tmp.normalizer_fn);
	if (blocked_in != NULL)
		deconstruct_array(blocked_in, TEXTOID, -1, false, TYPALIGN_INT, &elems, &elem_nulls,
						  &nelems);
	blocked = palloc(Max(nelems, 1) * sizeof(Datum));
	for (int i = 0; i < nelems; i++)
	{
		text *t;
		char *norm;
		int32 len;

		if (elem_nulls[i])
			continue;
		t = DatumGetTextPP(elems[i]);
		norm = pz_namespace_normalize(&tmp, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &len);
		if (norm != NULL) /* an unusable value never links anyway */
			blocked[nblocked++] = PointerGetDatum(cstring_to_text_with_len(norm, len));
	}

	SPI_connect();
	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("SELECT 1 FROM personalize.namespaces WHERE name = $1", 1, types,
							  values, NULL, true, 0) == SPI_OK_SELECT &&
		SPI_processed > 0)
		ereport(ERROR, (errcode(ERRCODE_DUPLICATE_OBJECT),
						errmsg("identifier namespace \"%s\" already exists", name),
						errhint("Change it with personalize.alter_namespace().")));
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = ObjectIdGetDatum(normalizer);
	nulls[3] = OidIsValid(normalizer) ? ' ' : 'n';
	values[4] =
		PointerGetDatum(construct_array(blocked, nblocked, TEXTOID, -1, false, TYPALIGN_INT));
	spi_exec("INSERT INTO personalize.namespaces (id, name, priority, max_per_profile, normalizer, "
			 "blocked) SELECT coalesce(max(id), 0) + 1, $1, $2, $3, $4, "
			 "ARRAY(SELECT DISTINCT unnest($5) ORDER BY 1) FROM personalize.namespaces",
			 5, types, values, nulls, SPI_OK_INSERT);
	SPI_finish();
	pz_namespace_invalidate();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pz_alter_namespace);
Datum
pz_alter_namespace(PG_FUNCTION_ARGS)
{
	char *name = arg_name(fcinfo, 0, "namespace name");
	bool remove_limit = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	Oid types[4] = {TEXTOID, INT4OID, INT4OID, BOOLOID};
	Datum values[4];
	char nulls[4] = "    ";

	(void) pz_namespace_by_name(name); /* ERROR if unknown */
	check_max_per_profile(fcinfo, 2);
	if (remove_limit && !PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("max_per_profile and remove_limit contradict each other"),
						errhint("Pass one of them.")));
	values[0] = CStringGetTextDatum(name);
	for (int i = 1; i <= 3; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	SPI_connect();
	spi_exec("UPDATE personalize.namespaces SET priority = coalesce($2, priority), "
			 "max_per_profile = CASE WHEN $4 THEN NULL ELSE coalesce($3, max_per_profile) END "
			 "WHERE name = $1",
			 4, types, values, nulls, SPI_OK_UPDATE);
	SPI_finish();
	pz_namespace_invalidate();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pz_drop_namespace);
Datum
pz_drop_namespace(PG_FUNCTION_ARGS)
{
	char *name = arg_name(fcinfo, 0, "namespace name");
	const PzNamespace *ns = pz_namespace_by_name(name);
	Oid types[1] = {INT4OID};
	Datum values[1] = {Int32GetDatum(ns->id)};
	int32 id = ns->id;

	SPI_connect();
	if (SPI_execute_with_args(
			"SELECT 1 FROM personalize.identities WHERE namespace_id = $1 LIMIT 1", 1, types,
			values, NULL, true, 0) == SPI_OK_SELECT &&
		SPI_processed > 0)
		ereport(ERROR, (errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
						errmsg("identifier namespace \"%s\" still holds identifiers", name),
						errhint("Forget them first: SELECT personalize.forget('%s', value) FROM "
								"personalize.identities WHERE namespace_id = %d.",
								name, id)));
	spi_exec("DELETE FROM personalize.namespaces WHERE id = $1", 1, types, values, NULL,
			 SPI_OK_DELETE);
	SPI_finish();
	pz_namespace_invalidate();
	PG_RETURN_VOID();
}

/* block_value / unblock_value: the value normalized, or a NOTICE and NULL */
static text *
blocked_arg(FunctionCallInfo fcinfo, const PzNamespace **nsp, const char *fname)
{
	char *name = arg_name(fcinfo, 0, "namespace");
	const PzNamespace *ns = pz_namespace_by_name(name);
	text *v;
	char *norm;
	int32 len;

	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("value must not be NULL")));
	v = PG_GETARG_TEXT_PP(1);
	pz_check_value_length(VARSIZE_ANY_EXHDR(v), fname);
	norm = pz_namespace_normalize(ns, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), &len);
	*nsp = ns;
	if (norm == NULL)
	{
		ereport(NOTICE, (errmsg("\"%s\" is not a usable %s identifier, so it never links anyway",
								text_to_cstring(v), ns->name)));
		return NULL;
	}
	return cstring_to_text_with_len(norm, len);
}

static Datum
change_blocked(FunctionCallInfo fcinfo, bool block)
{
	const PzNamespace *ns;
	text *v = blocked_arg(fcinfo, &ns, block ? "block_value" : "unblock_value");
	Oid types[2] = {INT4OID, TEXTOID};
	Datum values[2];
	bool changed;

	if (v == NULL)
		PG_RETURN_BOOL(false);
	values[0] = Int32GetDatum(ns->id);
	values[1] = PointerGetDatum(v);
	SPI_connect();
	if (block)
		spi_exec("UPDATE personalize.namespaces SET blocked = ARRAY(SELECT unnest(blocked || $2) "
				 "ORDER BY 1) WHERE id = $1 AND NOT $2 = ANY (blocked)",
				 2, types, values, NULL, SPI_OK_UPDATE);
	else
		spi_exec("UPDATE personalize.namespaces SET blocked = array_remove(blocked, $2) "
				 "WHERE id = $1 AND $2 = ANY (blocked)",
				 2, types, values, NULL, SPI_OK_UPDATE);
	changed = SPI_processed > 0;
	SPI_finish();
	pz_namespace_invalidate();
	PG_RETURN_BOOL(changed);
}

PG_FUNCTION_INFO_V1(pz_block_value);
Datum
pz_block_value(PG_FUNCTION_ARGS)
{
	return change_blocked(fcinfo, true);
}

PG_FUNCTION_INFO_V1(pz_unblock_value);
Datum
pz_unblock_value(PG_FUNCTION_ARGS)
{
	return change_blocked(fcinfo, false);
}

PG_FUNCTION_INFO_V1(pz_normalize);
Datum
pz_normalize(PG_FUNCTION_ARGS)
{
	char *name = arg_name(fcinfo, 0, "namespace");
	const PzNamespace *ns = pz_namespace_by_name(name);
	text *v;
	char *norm;
	int32 len;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	v = PG_GETARG_TEXT_PP(1);
	pz_check_value_length(VARSIZE_ANY_EXHDR(v), "normalize");
	norm = pz_namespace_normalize(ns, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), &len);
	if (norm == NULL || pz_namespace_is_blocked(ns, norm, len))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(norm, len));
}

int
pz_namespace_count(void)
{
	ns_load();
	return ns_count;
}

const PzNamespace *
pz_namespace_at(int i)
{
	Assert(i >= 0 && i < ns_count);
	return &ns_list[i];
}
