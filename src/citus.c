/*
 * citus.c
 *	  Citus, as this release meets it (docs/scale-out.md).
 *
 * On a Citus cluster, the inserts into a distributed, reference or Citus
 * local table go to its shards.  Here:
 *   - which distributed table a shard relation belongs to, so that the
 *     output plugin reads a shard's inserts as events of its table's source
 *     (pz_citus_shard_table);
 *   - which replication origins are Citus's own copies of rows that exist
 *     already (shard moves, splits, rebalancing), which are not events
 *     (pz_citus_origin_is_copy);
 *   - a source whose inserts no worker streams, so that the waits do not
 *     say that its events were applied (pz_citus_unstreamed_source);
 *   - on the coordinator, the configuration sent to every worker node in
 *     the transaction that changed it (pz_citus_send_config), and the waits
 *     for every node (pz_citus_wait_nodes).
 * Where Citus is not installed, each looks for its catalog and stops.
 */
#include "postgres.h"

#include <ctype.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "replication/origin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "citus.h"
#include "security.h"

/* personalize.<name>(argtypes), or InvalidOid (a schema older than this library) */
static Oid
personalize_function(const char *name, int nargs, Oid *argtypes)
{
	return LookupFuncName(list_make2(makeString("personalize"), makeString(pstrdup(name))), nargs,
						  argtypes, true);
}

static char *owner_query(const char *query);

/* whether this database has Citus's metadata */
static bool
citus_here(void)
{
	return OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE));
}

/* whether this is a Citus worker node: a group of its own other than the coordinator's 0 */
static bool
citus_worker_node(void)
{
	Oid local_group = get_relname_relid("pg_dist_local_group", PG_CATALOG_NAMESPACE);
	AttrNumber att;
	Relation rel;
	SysScanDesc scan;
	HeapTuple tup;
	bool worker = false;

	if (!citus_here() || !OidIsValid(local_group) ||
		(att = get_attnum(local_group, "groupid")) == InvalidAttrNumber)
		return false;
	rel = table_open(local_group, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool isnull;
		Datum d = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);

		worker = !isnull && DatumGetInt32(d) != 0;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return worker;
}

void
pz_citus_refuse_on_worker_node(const char *action)
{
	if (citus_worker_node())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot %s on a Citus worker node", action),
				 errdetail("A worker node's configuration is the coordinator's, which the "
						   "coordinator sends it with every change: a change made here would be "
						   "replaced by the next one."),
				 errhint("Call it on the coordinator.")));
}

char *
pz_citus_unstreamed_source(void)
{
	Oid sources;
	char *found;

	/* no Citus in this database, or a schema before 0.8.0: nothing to look at (and no query) */
	if (!citus_here() ||
		!OidIsValid(personalize_function("_citus_table_kind", 1, (Oid[]){REGCLASSOID})))
		return NULL;
	/* since 0.10.0: a distributed table is streamed by the nodes that hold its shards */
	found = owner_query(
		OidIsValid(personalize_function("_citus_unstreamed_reason", 1, (Oid[]){REGCLASSOID}))
			? "SELECT format('source %s is %s', s.relation, r.reason) "
			  "FROM personalize.sources s, personalize._citus_unstreamed_reason(s.relation) "
			  "r(reason) WHERE r.reason IS NOT NULL ORDER BY s.id LIMIT 1"
			: "SELECT format('source %s is a Citus %s table', s.relation, k.kind) "
			  "FROM personalize.sources s, personalize._citus_table_kind(s.relation) "
			  "k(kind) WHERE k.kind IS NOT NULL ORDER BY s.id LIMIT 1");
	/* a caller who may not read the sources learns that one is not streamed, not which */
	sources = get_relname_relid("sources", get_namespace_oid("personalize", false));
	if (found != NULL && !(OidIsValid(sources) &&
						   pg_class_aclcheck(sources, GetUserId(), ACL_SELECT) == ACLCHECK_OK))
		found = pstrdup("a registered source is a Citus table");
	return found;
}

/* a relation's owner, or InvalidOid */
static Oid
rel_owner(Oid relid)
{
	HeapTuple tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid owner = InvalidOid;

	if (HeapTupleIsValid(tup))
	{
		owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
		ReleaseSysCache(tup);
	}
	return owner;
}

/*
 * Whether relid (named relname, its shard id suffix at sep) can be a shard of
 * table: in its schema, with its owner (Citus makes shards as the table's
 * owner: a role that may only create tables there cannot pass its own table
 * for a shard), and named as Citus names shards, <table>_<id>, or cut short
 * with a hash before the suffix when that is too long.
 */
static bool
shard_named_for(Oid relid, const char *relname, const char *sep, Oid table)
{
	char *tname = get_rel_name(table);
	size_t tlen = tname != NULL ? strlen(tname) : 0;

	if (tname == NULL || get_rel_namespace(table) != get_rel_namespace(relid) ||
		rel_owner(table) != rel_owner(relid))
		return false;
	if (tlen + strlen(sep) < NAMEDATALEN)
		return strncmp(relname, tname, tlen) == 0 && relname + tlen == sep;
	return strncmp(relname, tname, Min(tlen, 8)) == 0;
}

/* the tables pg_dist_shard gives for shard id (or, by_table, the shards of table id): first match */
static Oid
dist_shard_lookup(int64 id, bool by_table, Oid relid, const char *relname, const char *sep)
{
	Oid dist_shard = get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE);
	AttrNumber att_shard, att_table;
	Oid index, found = InvalidOid;
	Relation rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple tup;

	if (!OidIsValid(dist_shard))
		return InvalidOid;
	att_shard = get_attnum(dist_shard, "shardid");
	att_table = get_attnum(dist_shard, "logicalrelid");
	if (att_shard == InvalidAttrNumber || att_table == InvalidAttrNumber)
		return InvalidOid;
	index = get_relname_relid(by_table ? "pg_dist_shard_logical_relid_index"
									   : "pg_dist_shard_shardid_index",
							  PG_CATALOG_NAMESPACE);
	rel = table_open(dist_shard, AccessShareLock);
	if (by_table)
		ScanKeyInit(&key, att_table, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum((Oid) id));
	else
		ScanKeyInit(&key, att_shard, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	scan = systable_beginscan(rel, index, OidIsValid(index), SnapshotAny, 1, &key);
	while (!OidIsValid(found) && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool isnull;
		Datum d = heap_getattr(tup, att_table, RelationGetDescr(rel), &isnull);

		if (!isnull && (by_table || shard_named_for(relid, relname, sep, DatumGetObjectId(d))))
			found = DatumGetObjectId(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The distributed table whose shard relid is, or InvalidOid.
 *
 * Citus names a shard <table>_<shard id> in its table's schema, and
 * pg_dist_shard, which every node with metadata has, says which table a
 * shard id belongs to: both must agree (shard_named_for), so that a user's
 * table named orders_2024 is no shard of orders.  pg_dist_shard is read
 * under SnapshotAny, every version of the shard id's rows: a row that a
 * split deleted since the change was made, or one that metadata sync
 * inserted in a transaction the historic snapshot does not count (it
 * changed none of PostgreSQL's catalogs), still says whose shard it was.
 * One that VACUUM removed since does not (pg_dist_shard is no catalog, and
 * a slot does not hold it back): a relation named as a shard of a Citus
 * table, with its owner, is then still that table's (*by_name_only set),
 * so that its rows are dead letters that name it, never skipped.
 */
Oid
pz_citus_shard_table(Oid relid, bool *by_name_only)
{
	char *relname = get_rel_name(relid);
	const char *sep;
	uint64 shardid = 0;
	Oid table;
	char *prefix;

	*by_name_only = false;
	if (!citus_here() || relname == NULL || (sep = strrchr(relname, '_')) == NULL ||
		sep == relname || sep[1] == '\0' || sep[1] == '0')
		return InvalidOid;
	for (const char *p = sep + 1; *p != '\0'; p++)
	{
		if (!isdigit((unsigned char) *p) || shardid > (PG_INT64_MAX - 9) / 10)
			return InvalidOid;
		shardid = shardid * 10 + (*p - '0');
	}
	table = dist_shard_lookup((int64) shardid, false, relid, relname, sep);
	if (OidIsValid(table))
		return table;
	/* by its name: a Citus table (one with shards) of the name before the suffix */
	prefix = pnstrdup(relname, sep - relname);
	table = get_relname_relid(prefix, get_rel_namespace(relid));
	if (!OidIsValid(table) || !shard_named_for(relid, relname, sep, table) ||
		!OidIsValid(dist_shard_lookup((int64) table, true, relid, relname, sep)))
		return InvalidOid;
	*by_name_only = true;
	return table;
}

/*
 * Whether the changes of a transaction with this replication origin are a
 * copy of rows that exist elsewhere, not events:
 *   - DoNotReplicateId marks writes that no one is to replicate; Citus
 *     writes its shard copies so (a shard move's or split's initial copy,
 *     create_distributed_table's, with citus.enable_change_data_capture);
 *   - the catch-up of a move or split comes through a subscription of
 *     Citus's (citus_shard_move_subscription_..., _split_), whose origin is
 *     pg_<subscription oid>; where Citus is installed, so is an origin of a
 *     subscription that no longer exists (a finished move drops its own).
 * A user's own subscription into a source, or another tool's origin, brings
 * events: rows written elsewhere are new here.
 */
bool
pz_citus_origin_is_copy(RepOriginId origin)
{
	char *name = NULL;
	char *end;
	unsigned long suboid;
	HeapTuple tup;
	bool copy;

	if (origin == DoNotReplicateId)
		return true;
	if (origin == InvalidRepOriginId || !replorigin_by_oid(origin, true, &name) ||
		strncmp(name, "pg_", 3) != 0)
		return false;
	errno = 0;
	suboid = strtoul(name + 3, &end, 10);
	if (errno != 0 || *end != '\0' || end == name + 3 || suboid > PG_UINT32_MAX)
		return false;
	tup = SearchSysCache1(SUBSCRIPTIONOID, ObjectIdGetDatum((Oid) suboid));
	if (!HeapTupleIsValid(tup))
		return citus_here();
	copy = strncmp(NameStr(((Form_pg_subscription) GETSTRUCT(tup))->subname), "citus_shard_",
				   strlen("citus_shard_")) == 0;
	ReleaseSysCache(tup);
	return copy;
}

/*
 * The text of the first column of query's first row, run as the extension's
 * owner (the functions it calls are not the caller's to execute), or NULL.
 * An ERROR aborts the transaction, which restores the caller's user.
 */
static char *
owner_query(const char *query)
{
	PzUserContext saved;
	MemoryContext caller = CurrentMemoryContext;
	char *result = NULL;

	pz_run_as_begin(pz_extension_owner(), &saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	if (SPI_execute(query, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not run %s", query);
	if (SPI_processed > 0)
	{
		char *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v != NULL)
			result = MemoryContextStrdup(caller, v);
	}
	SPI_finish();
	pz_run_as_end(&saved);
	return result;
}

/*
 * On a Citus coordinator: the configuration (_citus_node_config: namespaces,
 * traits, distributed sources) sent to every worker node with metadata, in
 * this transaction.  Citus's SendCommandToWorkersWithMetadata runs it on
 * each node over the transaction's connections, and commits it there with
 * two-phase commit when this transaction commits: a configuration change
 * is on every node or on none, and a node that cannot take it (down, or a
 * relation it lacks) makes the change fail here.  Sent as the extension's
 * owner, whom _citus_take_config requires.  Every configuration function
 * calls this after its change (pz_configure, the namespace functions).
 */
void
pz_citus_send_config(void)
{
	typedef void (*SendCommand)(const char *command);
	char *command;
	SendCommand send;
	PzUserContext saved;

	if (!citus_here() || !OidIsValid(personalize_function("_citus_node_config", 0, NULL)))
		return;
	command = owner_query("SELECT personalize._citus_node_config()");
	if (command == NULL)
		return;
	send = (SendCommand) load_external_function("$libdir/citus", "SendCommandToWorkersWithMetadata",
												false, NULL);
	pz_run_as_begin(pz_extension_owner(), &saved);
	send(command);
	pz_run_as_end(&saved);
}

/*
 * On a Citus coordinator with distributed sources: whether every worker
 * node's worker has applied what was committed there before this call,
 * within timeout_ms (< 0: no limit), each by its own wait_for_apply() over
 * Citus's connections.  True at once elsewhere.
 */
bool
pz_citus_wait_nodes(long timeout_ms)
{
	char *applied;

	if (!citus_here() ||
		!OidIsValid(personalize_function("_citus_wait_nodes", 1, (Oid[]){INTERVALOID})))
		return true;
	/* (a number of ms, or NULL: no limit, as wait_for_apply takes it) */
	applied = owner_query(
		timeout_ms < 0 ? "SELECT personalize._citus_wait_nodes(NULL)"
					   : psprintf("SELECT personalize._citus_wait_nodes('%ld ms')", timeout_ms));
	return applied != NULL && strcmp(applied, "t") == 0;
}
