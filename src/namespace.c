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
 *
 * The identity graph's files use namespaces (namespace.h); this file uses
 * nothing of the graph but its shared change counter (identity.h), on
 * which the list is kept across transactions.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "citus.h"
#include "identity.h" /* pz_identity_changes only: the graph's shared change counter */
#include "namespace.h"
#include "security.h"
#include "state.h"

/* set when an ERROR came out of a user's normalizer; the worker resets it */
bool pz_error_in_user_code = false;

static MemoryContext ns_cxt = NULL;
static MemoryContext ns_retired = NULL; /* lists replaced in this transaction */
static PzNamespace *ns_list = NULL;
static int ns_count = 0;
static int ns_limited = 0;
static bool ns_valid = false;
static LocalTransactionId ns_lxid = InvalidLocalTransactionId;
static SPIPlanPtr ns_plan = NULL; /* the read of the list, planned once */

/*
 * The list is kept across transactions while nothing it was read from can
 * have changed: the identity graph's shared change counter (which every
 * committed change of personalize.namespaces moves) is where it was before
 * the read, no pg_proc row changed (a normalizer replaced or altered), and
 * the table is the same one.  ns_changes == 0: not reusable (a standby,
 * parallel mode, no shared memory), read again in the next transaction.
 */
static uint64 ns_changes = 0;
static Oid ns_relid = InvalidOid;
static bool ns_procs_changed = false;

void
pz_namespace_relation_changed(Oid relid)
{
	if (relid == InvalidOid || (OidIsValid(ns_relid) && relid == ns_relid))
		ns_valid = false;
}

static void
ns_proc_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	ns_procs_changed = true;
}

static Oid
ns_table_relid(void)
{
	Oid nsp = get_namespace_oid("personalize", true);

	return OidIsValid(nsp) ? get_relname_relid("namespaces", nsp) : InvalidOid;
}

void
pz_namespace_invalidate(void)
{
	ns_valid = false;
}

/*
 * A rolled-back (sub)transaction may have created, changed or dropped
 * namespaces that the list was read with: read it again.  Only one that
 * wrote (and so had a transaction id: a subtransaction has one if any of
 * its children wrote) can have.  The worker's logical decoding ends the
 * replay of every decoded transaction with an abort of a transaction that
 * wrote nothing; reading the list again after each made the worker run a
 * query per batch, a few percent of its time under single-row writers.
 */
static void
ns_xact_callback(XactEvent event, void *arg)
{
	if ((event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) &&
		(event == XACT_EVENT_PARALLEL_ABORT || TransactionIdIsValid(GetTopTransactionIdIfAny())))
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
	if (event == SUBXACT_EVENT_ABORT_SUB && TransactionIdIsValid(GetCurrentTransactionIdIfAny()))
		ns_valid = false;
}

static int
blocked_cmp(const void *a, const void *b)
{
	const char *sa = *(const char *const *) a;
	const char *sb = *(const char *const *) b;

	return pz_value_cmp(sa, strlen(sa), sb, strlen(sb));
}

static void
ns_load(void)
{
	int ret;

	static bool callbacks_registered = false;

	uint64 changes;
	Oid relid;

	if (ns_valid && ns_lxid == MyProc->lxid)
		return;
	if (!callbacks_registered)
	{
		RegisterXactCallback(ns_xact_callback, NULL);
		RegisterSubXactCallback(ns_subxact_callback, NULL);
		CacheRegisterSyscacheCallback(PROCOID, ns_proc_changed, (Datum) 0);
		callbacks_registered = true;
	}
	relid = ns_table_relid();
	if (ns_valid && ns_changes != 0 && !ns_procs_changed && relid == ns_relid &&
		pz_identity_changes() == ns_changes)
	{
		ns_lxid = MyProc->lxid;
		return;
	}
	/*
	 * Read the counter first, then the table with a snapshot taken after
	 * it: a change committed before the counter was read is in the list,
	 * one committed later moves the counter past what is recorded.
	 */
	changes = (RecoveryInProgress() || IsInParallelMode()) ? 0 : pz_identity_changes();
	ns_procs_changed = false;

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
	ns_count = ns_limited = 0;
	ns_valid = false;

	SPI_connect();

	/*
	 * The statement is planned once per backend: the list is read again in
	 * every transaction that uses it, and planning would cost more than
	 * reading the few rows.  The plan cache replans it after DDL.
	 */
	if (ns_plan == NULL)
	{
		SPIPlanPtr plan = SPI_prepare("SELECT id, name, priority, coalesce(max_per_profile, 0), "
									  "coalesce(normalizer::oid, 0), blocked, owner::oid "
									  "FROM personalize.namespaces ORDER BY id",
									  0, NULL);

		if (plan == NULL)
			elog(ERROR, "could not plan the read of personalize.namespaces: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep the plan of the read of personalize.namespaces");
		ns_plan = plan;
	}
	if (changes != 0)
		ret = SPI_execute_snapshot(ns_plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot, true,
								   false, 0);
	else
		ret = SPI_execute_plan(ns_plan, NULL, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read personalize.namespaces: %s", SPI_result_code_string(ret));

	ns_list = MemoryContextAllocZero(ns_cxt, Max(SPI_processed, 1) * sizeof(PzNamespace));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple tup = SPI_tuptable->vals[i];
		TupleDesc td = SPI_tuptable->tupdesc;
		PzNamespace *ns = &ns_list[i];
		bool isnull;
		Datum *elems;
		bool *nulls;
		int nelems;

		ns->id = DatumGetInt32(SPI_getbinval(tup, td, 1, &isnull));
		ns->name =
			MemoryContextStrdup(ns_cxt, TextDatumGetCString(SPI_getbinval(tup, td, 2, &isnull)));
		ns->priority = DatumGetInt32(SPI_getbinval(tup, td, 3, &isnull));
		ns->max_per_profile = DatumGetInt32(SPI_getbinval(tup, td, 4, &isnull));
		ns->normalizer = DatumGetObjectId(SPI_getbinval(tup, td, 5, &isnull));
		ns->owner = DatumGetObjectId(SPI_getbinval(tup, td, 7, &isnull));
		if (isnull)
			ns->owner = InvalidOid;
		/*
		 * A normalizer that cannot run (dropped, of another signature, its
		 * owner gone or without EXECUTE: a row restored or edited by hand)
		 * breaks its own namespace only, and only when a value is
		 * normalized: the others, and drop_namespace, still work.
		 */
		if (OidIsValid(ns->normalizer))
		{
			ns->own_normalizer = pz_is_own_c_function(ns->normalizer);
			if (!ns->own_normalizer)
			{
				char *problem = pz_normalizer_problem(ns->normalizer, ns->owner);

				if (problem != NULL)
					ns->normalizer_problem = MemoryContextStrdup(ns_cxt, problem);
			}
			if (ns->normalizer_problem == NULL)
				fmgr_info_cxt(ns->normalizer, &ns->normalizer_fn, ns_cxt);
		}
		if (ns->max_per_profile > 0)
			ns_limited++;

		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 6, &isnull)), TEXTOID, -1,
						  false, TYPALIGN_INT, &elems, &nulls, &nelems);
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
	ns_count = SPI_processed;
	SPI_finish();

	ns_valid = true;
	ns_lxid = MyProc->lxid;
	ns_changes = changes;
	ns_relid = relid;
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
pz_namespace_problem(const PzNamespace *ns)
{
	if (!OidIsValid(ns->normalizer) || ns->own_normalizer)
		return NULL;
	/* a user's normalizer: its owner's rights are checked at every use */
	if (ns->normalizer_problem == NULL)
		return pz_normalizer_problem(ns->normalizer, ns->owner);
	return ns->normalizer_problem;
}

char *
pz_namespace_normalize(const PzNamespace *ns, const char *value, int32 len, int32 *outlen)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum result;
	text *t;
	char *problem;

	if (!OidIsValid(ns->normalizer))
	{
		if (len == 0)
			return NULL;
		*outlen = len;
		return pnstrdup(value, len);
	}

	problem = pz_namespace_problem(ns);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("namespace \"%s\" cannot normalize values: %s", ns->name, problem),
				 errhint("Recreate the namespace with a normalizer its owner may execute, or drop "
						 "it once its identifiers are forgotten.")));

	/* the collation lets normalizers written in SQL call lower() */
	InitFunctionCallInfoData(*fcinfo, unconstify(FmgrInfo *, &ns->normalizer_fn), 1,
							 DEFAULT_COLLATION_OID, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(cstring_to_text_with_len(value, len));
	fcinfo->args[0].isnull = false;
	if (ns->own_normalizer)
		result = FunctionCallInvoke(fcinfo);
	else
	{
		/* as its owner, never as the worker or whoever calls resolve() */
		PzUserContext saved;

		pz_run_as_begin(ns->owner, &saved);
		PG_TRY();
		{
			result = FunctionCallInvoke(fcinfo);
		}
		PG_CATCH();
		{
			/* the worker tells a normalizer's own errors from its lock waits */
			pz_error_in_user_code = true;
			PG_RE_THROW();
		}
		PG_END_TRY();
		pz_run_as_end(&saved);
	}
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

/*
 * A normalizer takes one text, returns text, is IMMUTABLE, and the caller
 * may execute it: it will run as the caller (the namespace's owner).
 */
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
	if (pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for normalizer %s", format_procedure(fn)),
				 errdetail("A namespace's normalizer runs with the rights of the role that creates "
						   "the namespace."),
				 errhint("GRANT EXECUTE ON FUNCTION %s TO %s.", format_procedure(fn),
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
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
	Oid types[6] = {TEXTOID, INT4OID, INT4OID, REGPROCEDUREOID, TEXTARRAYOID, OIDOID};
	Datum values[6];
	char nulls[7] = "      ";
	PzUserContext saved;
	Datum *elems;
	bool *elem_nulls;
	int nelems = 0, nblocked = 0;
	Datum *blocked;
	PzNamespace tmp;

	pz_require_admin("create a namespace");
	pz_citus_refuse_on_worker_node("create a namespace");
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
	tmp.owner = GetUserId();
	if (OidIsValid(normalizer))
	{
		tmp.own_normalizer = pz_is_own_c_function(normalizer);
		fmgr_info(normalizer, &tmp.normalizer_fn);
	}
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
	values[5] = ObjectIdGetDatum(GetUserId());
	pz_as_extension_owner_begin(&saved);
	spi_exec("INSERT INTO personalize.namespaces (id, name, priority, max_per_profile, normalizer, "
			 "blocked, owner) SELECT coalesce(max(id), 0) + 1, $1, $2, $3, $4, "
			 "ARRAY(SELECT DISTINCT unnest($5) ORDER BY 1), $6 FROM personalize.namespaces",
			 6, types, values, nulls, SPI_OK_INSERT);
	pz_run_as_end(&saved);
	SPI_finish();
	pz_namespace_invalidate();
	pz_citus_send_config(); /* on a Citus coordinator, to every node */
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
	PzUserContext saved;

	pz_require_admin("alter a namespace");
	pz_citus_refuse_on_worker_node("alter a namespace");
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
	pz_as_extension_owner_begin(&saved);
	spi_exec("UPDATE personalize.namespaces SET priority = coalesce($2, priority), "
			 "max_per_profile = CASE WHEN $4 THEN NULL ELSE coalesce($3, max_per_profile) END "
			 "WHERE name = $1",
			 4, types, values, nulls, SPI_OK_UPDATE);
	pz_run_as_end(&saved);
	SPI_finish();
	pz_namespace_invalidate();
	pz_citus_send_config(); /* on a Citus coordinator, to every node */
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pz_drop_namespace);
Datum
pz_drop_namespace(PG_FUNCTION_ARGS)
{
	char *name = arg_name(fcinfo, 0, "namespace name");
	const PzNamespace *ns;
	Oid types[1] = {INT4OID};
	Datum values[1];
	int32 id;
	PzUserContext saved;

	pz_require_admin("drop a namespace");
	pz_citus_refuse_on_worker_node("drop a namespace");
	ns = pz_namespace_by_name(name);
	id = ns->id;
	values[0] = Int32GetDatum(id);
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
	pz_as_extension_owner_begin(&saved);
	spi_exec("DELETE FROM personalize.namespaces WHERE id = $1", 1, types, values, NULL,
			 SPI_OK_DELETE);
	pz_run_as_end(&saved);
	SPI_finish();
	pz_namespace_invalidate();
	pz_citus_send_config(); /* on a Citus coordinator, to every node */
	PG_RETURN_VOID();
}

/* block_value / unblock_value: the value normalized, or a NOTICE and NULL */
static text *
blocked_arg(FunctionCallInfo fcinfo, const PzNamespace **nsp, const char *fname)
{
	char *name = arg_name(fcinfo, 0, "namespace");
	const PzNamespace *ns;
	text *v;
	char *norm;
	int32 len;

	pz_require_admin(psprintf("call %s", fname));
	pz_citus_refuse_on_worker_node(psprintf("call %s", fname));
	ns = pz_namespace_by_name(name);
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
	PzUserContext saved;

	if (v == NULL)
		PG_RETURN_BOOL(false);
	values[0] = Int32GetDatum(ns->id);
	values[1] = PointerGetDatum(v);
	SPI_connect();
	pz_as_extension_owner_begin(&saved);
	if (block)
		spi_exec("UPDATE personalize.namespaces SET blocked = ARRAY(SELECT unnest(blocked || $2) "
				 "ORDER BY 1) WHERE id = $1 AND NOT $2 = ANY (blocked)",
				 2, types, values, NULL, SPI_OK_UPDATE);
	else
		spi_exec("UPDATE personalize.namespaces SET blocked = array_remove(blocked, $2) "
				 "WHERE id = $1 AND $2 = ANY (blocked)",
				 2, types, values, NULL, SPI_OK_UPDATE);
	changed = SPI_processed > 0;
	pz_run_as_end(&saved);
	SPI_finish();
	pz_namespace_invalidate();
	if (changed)
		pz_citus_send_config(); /* on a Citus coordinator, to every node */
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

PG_FUNCTION_INFO_V1(pz_namespace_problem_sql);

/*
 * _namespace_problem(namespace): why the namespace cannot normalize values
 * (the ERROR its use would raise), or NULL.  rebuild() leaves the events of
 * such identifiers out as dead letters, as the stream does.
 */
Datum
pz_namespace_problem_sql(PG_FUNCTION_ARGS)
{
	const PzNamespace *ns = pz_namespace_by_name(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	char *problem = pz_namespace_problem(ns);

	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(
		psprintf("namespace \"%s\" cannot normalize values: %s", ns->name, problem)));
}

PG_FUNCTION_INFO_V1(pz_normalize_checked);

/*
 * _normalize_checked(namespace, value): (the value as normalize_identifier
 * gives it, NULL) or, when normalizing raises an ERROR, (NULL, its message).
 * A user's normalizer runs in a subtransaction for it, so that rebuild()
 * can turn one bad value into a dead letter instead of failing; the
 * extension's own normalizers never raise and run as they are.
 */
Datum
pz_normalize_checked(PG_FUNCTION_ARGS)
{
	const PzNamespace *ns = pz_namespace_by_name(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	text *v = PG_GETARG_TEXT_PP(1);
	char *norm = NULL;
	char *problem = NULL;
	int32 len = 0;
	TupleDesc td;
	Datum values[2];
	bool nulls[2] = {true, true};

	if (get_call_result_type(fcinfo, NULL, &td) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_normalize_checked: the result type is not a row");
	if (VARSIZE_ANY_EXHDR(v) > pz_max_value_bytes)
		problem = psprintf("the identifier is longer than personalize.max_value_bytes (%d)",
						   pz_max_value_bytes);
	else if (!OidIsValid(ns->normalizer) || ns->own_normalizer)
		norm = pz_namespace_normalize(ns, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), &len);
	else
	{
		MemoryContext cxt = CurrentMemoryContext;
		ResourceOwner owner = CurrentResourceOwner;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			norm = pz_namespace_normalize(ns, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), &len);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			ErrorData *err;

			MemoryContextSwitchTo(cxt);
			err = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			pz_error_in_user_code = false;
			problem = err->message;
			norm = NULL;
		}
		PG_END_TRY();
	}
	if (norm != NULL && !pz_namespace_is_blocked(ns, norm, len))
	{
		values[0] = PointerGetDatum(cstring_to_text_with_len(norm, len));
		nulls[0] = false;
	}
	if (problem != NULL)
	{
		values[1] = CStringGetTextDatum(problem);
		nulls[1] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(td), values, nulls)));
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
