/*
 * security.c
 *	  Trust boundaries (docs/security.md).
 *
 * Three rules live here, each used by the SQL functions and the worker
 * alike, so that no path is checked more loosely than another:
 *
 * 1. User code runs with the rights of the role that configured it.  A
 *    normalizer runs as its namespace's owner, inside a security-restricted
 *    operation, never as the worker's bootstrap superuser or as whoever
 *    happens to call resolve().
 * 2. The configuration tables are written only by superusers and by the
 *    extension's own functions.  The functions that PL/pgSQL implements run
 *    as SECURITY DEFINER behind pz_configure(), which records who called
 *    them: that role becomes the owner of what they configure.
 * 3. A source is read only while its owner may read every column the
 *    stream and rebuild() take from it, and sees every row (row-level
 *    security would hide rows from a SELECT by that role).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_language.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "citus.h"
#include "security.h"

/* ---- running as another role ---- */

void
pz_run_as_begin(Oid role, PzUserContext *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(role, saved->sec_context | SECURITY_LOCAL_USERID_CHANGE |
									 SECURITY_RESTRICTED_OPERATION);
	saved->guc_level = NewGUCNestLevel();
	/*
	 * A fixed search_path, as PostgreSQL 17 gives maintenance operations:
	 * with the caller's, a normalizer's unqualified names would resolve to
	 * the caller's objects, which would then run as the owner.
	 */
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
pz_run_as_end(const PzUserContext *saved)
{
	if (saved->guc_level > 0)
		AtEOXact_GUC(false, saved->guc_level);
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

Oid
pz_extension_owner(void)
{
	Oid ext = get_extension_oid("personalize", false);
	Relation rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple tup;
	Oid owner = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(owner))
		elog(ERROR, "personalize: the extension has no owner");
	return owner;
}

void
pz_as_extension_owner_begin(PzUserContext *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(pz_extension_owner(), saved->sec_context | SECURITY_LOCAL_USERID_CHANGE);
	saved->guc_level = 0;
}

void
pz_require_admin(const char *action)
{
	Oid admin = get_role_oid("personalize_admin", true);

	if (InSecurityRestrictedOperation())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("cannot %s inside a security-restricted operation", action),
						errdetail("Code the extension runs for a role (a normalizer) cannot "
								  "change personalize's configuration.")));
	if (!OidIsValid(admin) || !has_privs_of_role(GetUserId(), admin))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("permission denied to %s", action),
				 errhint("Changing personalize's configuration needs the personalize_admin role: "
						 "GRANT personalize_admin TO %s.",
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
}

/* ---- privileges ---- */

bool
pz_table_privileges_all(Oid relid, Oid role, AclMode mode)
{
	for (AclMode bit = 1; bit != 0 && bit <= mode; bit <<= 1)
		if ((mode & bit) && pg_class_aclcheck(relid, role, bit) != ACLCHECK_OK)
			return false;
	return true;
}

bool
pz_indexes_catalog_maintained(CatalogIndexState ind)
{
	for (int i = 0; i < ind->ri_NumIndices; i++)
	{
		IndexInfo *info = ind->ri_IndexRelationInfo[i];

		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL ||
			info->ii_ExclusionOps != NULL || !ind->ri_IndexRelationDescs[i]->rd_index->indimmediate)
			return false;
	}
	return true;
}

/* ---- normalizers ---- */

bool
pz_is_own_c_function(Oid fn)
{
	Oid ext = get_extension_oid("personalize", true);
	HeapTuple tup;
	bool c;

	if (!OidIsValid(ext) || getExtensionOfObject(ProcedureRelationId, fn) != ext)
		return false;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		return false;
	c = ((Form_pg_proc) GETSTRUCT(tup))->prolang == ClanguageId;
	ReleaseSysCache(tup);
	return c;
}

char *
pz_normalizer_problem(Oid fn, Oid owner)
{
	HeapTuple tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	char *problem = NULL;

	if (!HeapTupleIsValid(tup))
		return pstrdup("its normalizer no longer exists (it was dropped)");
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->pronargs != 1 || proc->proargtypes.values[0] != TEXTOID ||
		proc->prorettype != TEXTOID || proc->proretset || proc->prokind != PROKIND_FUNCTION)
		problem = psprintf("its normalizer %s does not take one text and return one text",
						   format_procedure(fn));
	ReleaseSysCache(tup);
	if (problem != NULL)
		return problem;
	if (!OidIsValid(owner) || !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		return pstrdup("the role that configured it no longer exists");
	if (pg_proc_aclcheck(fn, owner, ACL_EXECUTE) != ACLCHECK_OK)
		return psprintf("role %s, which configured it, may not execute its normalizer %s",
						GetUserNameFromId(owner, false), format_procedure(fn));
	return NULL;
}

/* ---- reading sources ---- */

char *
pz_source_read_problem(Oid relid, Oid owner, const int16 *attnums, int nattnums)
{
	char *relname;
	const char *rolname;

	if (!OidIsValid(owner) || !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		return pstrdup("the role that registered the source no longer exists");
	relname = get_rel_name(relid);
	if (relname == NULL)
		return pstrdup("the table no longer exists");
	relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname);
	rolname = quote_identifier(GetUserNameFromId(owner, false));
	if (pg_class_aclcheck(relid, owner, ACL_SELECT) != ACLCHECK_OK)
		for (int i = 0; i < nattnums; i++)
			if (attnums[i] > 0 &&
				pg_attribute_aclcheck(relid, attnums[i], owner, ACL_SELECT) != ACLCHECK_OK)
				return psprintf("role %s may not read column %s of table %s", rolname,
								quote_identifier(get_attname(relid, attnums[i], false)), relname);
	if (check_enable_rls(relid, owner, true) == RLS_ENABLED)
		return psprintf("row-level security of table %s applies to role %s, which registered it",
						relname, rolname);
	return NULL;
}

PG_FUNCTION_INFO_V1(pz_source_read_problem_sql);

/*
 * _source_read_problem(relation, role, columns): why role may not read
 * those columns of relation, or NULL.  The registration functions ask it
 * for their caller, rebuild() for each source's owner.
 */
Datum
pz_source_read_problem_sql(PG_FUNCTION_ARGS)
{
	Oid relid = PG_GETARG_OID(0);
	Oid owner = PG_GETARG_OID(1);
	ArrayType *cols = PG_GETARG_ARRAYTYPE_P(2);
	Datum *elems;
	bool *nulls;
	int n, k = 0;
	int16 *attnums;
	char *problem;

	deconstruct_array(cols, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &elems, &nulls, &n);
	attnums = palloc(sizeof(int16) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (!nulls[i])
		{
			AttrNumber a = get_attnum(relid, NameStr(*DatumGetName(elems[i])));

			if (a == InvalidAttrNumber)
				PG_RETURN_TEXT_P(cstring_to_text(psprintf(
					"column %s of table %s does not exist", NameStr(*DatumGetName(elems[i])),
					get_rel_name(relid) ? get_rel_name(relid) : "?")));
			attnums[k++] = a;
		}
	problem = pz_source_read_problem(relid, owner, attnums, k);
	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

/* ---- the extension's own locks ---- */

void
pz_lock(PzLock which)
{
	LOCKTAG tag;

	SET_LOCKTAG_OBJECT(tag, MyDatabaseId, NamespaceRelationId,
					   get_namespace_oid("personalize", false), (uint16) which);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

PG_FUNCTION_INFO_V1(pz_refuse_in_restricted);

/* _refuse_in_restricted(action): ERROR inside a security-restricted operation (a normalizer) */
Datum
pz_refuse_in_restricted(PG_FUNCTION_ARGS)
{
	if (InSecurityRestrictedOperation())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("cannot %s inside a security-restricted operation",
							   text_to_cstring(PG_GETARG_TEXT_PP(0))),
						errdetail("Code the extension runs for a role (a normalizer) cannot "
								  "change personalize's configuration or profiles.")));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pz_rebuild_lock);

/* _rebuild_lock(): one rebuild at a time (see pz_lock) */
Datum
pz_rebuild_lock(PG_FUNCTION_ARGS)
{
	pz_lock(PZ_LOCK_REBUILD);
	PG_RETURN_VOID();
}

/* ---- the configuration functions ---- */

/*
 * The role that called the configuration function under way, InvalidOid
 * outside one.  Only pz_configure() sets it, to GetUserId() at the call:
 * the SECURITY DEFINER implementation it calls cannot see its caller.
 */
static Oid configuring_role = InvalidOid;

typedef struct ConfigureCall
{
	FmgrInfo impl;
	int nargs;
	char *action;      /* "call register_source", for the permission error */
	bool sends_config; /* it changes what every Citus node streams by (not an audience) */
} ConfigureCall;

PG_FUNCTION_INFO_V1(pz_configure);

/*
 * The C entry of every configuration function written in PL/pgSQL:
 * register_source(...) runs personalize._register_source(...), a SECURITY
 * DEFINER function of the same arguments that only the extension's owner
 * may execute, with the caller recorded for personalize._configuring_role().
 * The caller's role is checked here; the implementation checks the rest.
 */
Datum
pz_configure(PG_FUNCTION_ARGS)
{
	ConfigureCall *volatile call = fcinfo->flinfo->fn_extra;
	FunctionCallInfo impl_fcinfo;
	Oid saved = configuring_role;
	Datum result;

	if (call == NULL)
	{
		HeapTuple tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
		Form_pg_proc proc;
		Oid impl;
		List *implname;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
		proc = (Form_pg_proc) GETSTRUCT(tup);
		implname = list_make2(makeString(get_namespace_name(proc->pronamespace)),
							  makeString(psprintf("_%s", NameStr(proc->proname))));
		impl = LookupFuncName(implname, proc->pronargs, proc->proargtypes.values, false);
		call = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(ConfigureCall));
		fmgr_info_cxt(impl, &call->impl, fcinfo->flinfo->fn_mcxt);
		call->nargs = proc->pronargs;
		call->action = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt,
										   psprintf("call %s", NameStr(proc->proname)));
		call->sends_config = strstr(NameStr(proc->proname), "audience") == NULL;
		ReleaseSysCache(tup);
		fcinfo->flinfo->fn_extra = call;
	}
	pz_require_admin(call->action);
	/* a Citus worker node's configuration is the coordinator's (citus.c) */
	if (call->sends_config)
		pz_citus_refuse_on_worker_node(call->action);

	impl_fcinfo = palloc0(SizeForFunctionCallInfo(call->nargs));
	InitFunctionCallInfoData(*impl_fcinfo, &call->impl, call->nargs, fcinfo->fncollation, NULL,
							 NULL);
	for (int i = 0; i < call->nargs; i++)
		impl_fcinfo->args[i] = fcinfo->args[i];
	/*
	 * A configuration function that another one calls runs as the
	 * extension's owner: the role that called the outer one stays the
	 * configuring role.
	 */
	if (!OidIsValid(configuring_role) || GetUserId() != pz_extension_owner())
		configuring_role = GetUserId();
	PG_TRY();
	{
		result = FunctionCallInvoke(impl_fcinfo);
	}
	PG_FINALLY();
	{
		configuring_role = saved;
	}
	PG_END_TRY();
	fcinfo->isnull = impl_fcinfo->isnull;
	/* on a Citus coordinator, every node takes the change in this transaction */
	if (call->sends_config)
		pz_citus_send_config();
	return result;
}

PG_FUNCTION_INFO_V1(pz_configuring_role);

/*
 * _configuring_role(): the caller of the configuration function under way,
 * else the current user (a superuser calling an implementation directly).
 */
Datum
pz_configuring_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(OidIsValid(configuring_role) ? configuring_role : GetUserId());
}
