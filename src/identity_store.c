/*
 * identity_store.c
 *	  The identity graph's tables: identities, profiles, merge_log and
 *	  refused_links, opened, checked, read and written.
 *
 * Storage (personalize--0.1.0--0.2.0.sql): identities maps every identifier
 * straight to its profile (a union-find whose paths are always fully
 * compressed, so resolving is one probe); profiles has one row per profile
 * with its key identifier and its trait states; merge_log and
 * refused_links record what the rules did.
 *
 * Everything that touches those tables for the graph is here, under the
 * rules that identity_graph.c applies: the statements that stay SQL
 * (look-up without an open store, a profile's key, re-key, refusal), and
 * the direct heap and index access of the hot path (look-up, new
 * identifiers and profiles, moving identifiers, merging profile rows, the
 * merge log).  The streaming worker's profile write
 * (pz_profiles_merge_deltas) is here too, beside the graph's own direct
 * writes of profile rows: it shares their open relations, their column
 * layout and the places where rows were last written.
 *
 * The cache (identity_cache.c) follows what is written here: a move of
 * identifiers puts their new profile into it and counts the change for the
 * other backends' caches.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "audience.h"
#include "identity_internal.h"
#include "profile.h"
#include "security.h"

/* ---- statements: what stays SQL ---- */

typedef enum Stmt
{
	ST_LOOKUP,
	ST_PROFILE_KEY,
	ST_REKEY_PROFILE,
	ST_REFUSE,
	ST_REFUSE_MANY,
	ST_COUNT
} Stmt;

static const struct
{
	const char *sql;
	int nargs;
	Oid types[9];
} stmt_def[ST_COUNT] = {
	[ST_LOOKUP] =
		{"SELECT profile_id FROM personalize.identities WHERE namespace_id = $1 AND value "
		 "= $2",
		 2,
		 {INT4OID, TEXTOID}},
	[ST_PROFILE_KEY] =
		{"SELECT key_namespace_id, key_value FROM personalize.profiles WHERE id = $1",
		 1,
		 {INT8OID}},
	[ST_REKEY_PROFILE] = {"UPDATE personalize.profiles SET id = $2, key_namespace_id = $3, "
						  "key_value = $4, updated_at = now() WHERE id = $1",
						  4,
						  {INT8OID, INT8OID, INT4OID, TEXTOID}},
	[ST_REFUSE] = {"INSERT INTO personalize.refused_links AS r (rule, rule_namespace, namespace_a, "
				   "value_a, namespace_b, value_b, profile_a, profile_b) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
				   "ON CONFLICT (namespace_a, value_a, namespace_b, value_b) DO UPDATE SET "
				   "times = r.times + 1, last_refused_at = now(), rule = excluded.rule, "
				   "rule_namespace = excluded.rule_namespace, profile_a = excluded.profile_a, "
				   "profile_b = excluded.profile_b",
				   8,
				   {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID}},
	/* many pairs, each once, with how many times: as many ST_REFUSE in their order */
	[ST_REFUSE_MANY] = {"INSERT INTO personalize.refused_links AS r (rule, rule_namespace, "
						"namespace_a, value_a, namespace_b, value_b, profile_a, profile_b, times) "
						"SELECT u.rule, u.rule_ns, u.ns_a, u.value_a, u.ns_b, u.value_b, "
						"nullif(u.pa, 0), nullif(u.pb, 0), u.times "
						"FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
						"$6::text[], $7::int8[], $8::int8[], $9::int8[]) WITH ORDINALITY "
						"AS u(rule, rule_ns, ns_a, value_a, ns_b, value_b, pa, pb, times, o) "
						"ORDER BY u.o "
						"ON CONFLICT (namespace_a, value_a, namespace_b, value_b) DO UPDATE SET "
						"times = r.times + excluded.times, last_refused_at = now(), "
						"rule = excluded.rule, rule_namespace = excluded.rule_namespace, "
						"profile_a = excluded.profile_a, profile_b = excluded.profile_b",
						9,
						{TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
						 TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID}},
};

static SPIPlanPtr stmt_plan[ST_COUNT];

/* Run a statement (prepared once per backend); the caller is connected to SPI. */
static uint64
stmt_run(Stmt st, Datum *values, const char *nulls, int expect)
{
	int ret;

	if (stmt_plan[st] == NULL)
	{
		SPIPlanPtr plan =
			SPI_prepare(stmt_def[st].sql, stmt_def[st].nargs, (Oid *) stmt_def[st].types);

		if (plan == NULL)
			elog(ERROR, "personalize: could not prepare \"%s\": %s", stmt_def[st].sql,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		stmt_plan[st] = plan;
	}
	/* not read-only: each statement must see the ones before it */
	ret = SPI_execute_plan(stmt_plan[st], values, nulls, false, 0);
	if (ret != expect)
		elog(ERROR, "personalize: \"%s\" failed: %s", stmt_def[st].sql,
			 SPI_result_code_string(ret));
	return SPI_processed;
}

static int64
result_int8(int col)
{
	bool isnull;
	Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* ---- direct access to identities and profiles ----
 *
 * The hot path of linking (look up an identifier, add an identifier, add a
 * profile) goes to the heap and its indexes directly, as catalog code
 * does, rather than through SPI: the executor's per-statement set-up cost
 * more than the work.  Updates and deletes (merges, re-keys, split,
 * forget) stay SQL.  Direct access skips the table's privilege checks, so
 * store_open does them, and writes no statement trigger would see (inserts
 * need none).  Writers hold the graph's lock and read with SnapshotSelf:
 * every committed row and every row of their own, including rows SPI
 * statements of this same call just wrote.
 */
typedef struct IdentityStore
{
	bool open;
	SubTransactionId subid; /* where it was opened */
	bool writing;
	Relation identities;
	Relation identities_pk;
	CatalogIndexState identities_ind;
	Relation identities_by_profile; /* (profile_id, namespace_id), among identities_ind */
	Relation profiles;
	Relation profiles_pk;
	Relation merge_log; /* opened on first use */
	CatalogIndexState merge_log_ind;
	Oid merge_log_seq;
	CatalogIndexState profiles_ind;
	Datum empty_states;          /* the profiles.states default */
	AttrNumber profiles_attr[8]; /* see profile_columns */
} IdentityStore;

static IdentityStore store;

/* where profiles' columns are, by profile_columns order; for this relid */
static AttrNumber profiles_attr[8];
static Oid profiles_layout_relid = InvalidOid;

/* an abort closed the relations (the transaction's, or subtransaction aborted's) */
void
pz_store_forget_open(SubTransactionId aborted)
{
	if (aborted == InvalidSubTransactionId || aborted == store.subid)
		store.open = false;
}

/* profiles' columns, by name: the store writes whole rows */
static const char *const profile_columns[] = {"id",         "key_namespace_id", "key_value",
											  "states",     "first_seen",       "last_seen",
											  "updated_at", "rebuild_pending"};

static Oid
store_relid(const char *name)
{
	Oid relid = get_relname_relid(name, get_namespace_oid("personalize", false));

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE), errmsg("personalize.%s does not exist", name),
				 errhint("Is the extension installed in this database?")));
	return relid;
}

/* every privilege in mode (pg_class_aclcheck alone accepts any one of them) */
static void
store_check_acl(Relation rel, AclMode mode)
{
	if (!pz_table_privileges_all(RelationGetRelid(rel), GetUserId(), mode))
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, RelationGetRelationName(rel));
}

/* identities' columns, in order: the store writes whole rows */
static const char *const identity_columns[] = {"profile_id", "namespace_id", "value", "first_seen"};

/*
 * The store writes rows and index entries as catalog code does, which
 * knows nothing of row-level security, expression or partial indexes or
 * deferred constraints: refuse a table that has any of them (or, given
 * columns, a column layout other than this library's).  The indexes are
 * those CatalogOpenIndexes already opened for writing (NULL for reading,
 * which goes through the primary key only).
 */
static void
store_check_plain(Relation rel, const char *const *columns, int ncolumns, CatalogIndexState ind)
{
	const char *name = RelationGetRelationName(rel);

	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("row-level security on personalize.%s is not supported", name),
						errhint("Grant personalize_reader or personalize_admin instead.")));
	if (columns != NULL)
	{
		TupleDesc td = RelationGetDescr(rel);
		bool ok = td->natts == ncolumns;

		for (int i = 0; ok && i < ncolumns; i++)
			ok = strcmp(NameStr(TupleDescAttr(td, i)->attname), columns[i]) == 0;
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("personalize.%s does not have the columns this library writes", name),
					 errhint("Is the extension up to date (ALTER EXTENSION personalize UPDATE)?")));
	}
	if (ind != NULL && !pz_indexes_catalog_maintained(ind))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("personalize.%s has an index with expressions, a predicate, an "
						"exclusion or a deferred check, which this library does not maintain",
						name),
				 errhint("Drop that index; personalize's own indexes are plain.")));
}

/* open for reading (resolve) or writing (the caller holds the graph's lock) */
void
pz_store_open(bool writing)
{
	LOCKMODE mode = writing ? RowExclusiveLock : AccessShareLock;

	if (store.open)
		ereport(
			ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the identity graph cannot be used from inside one of its own operations"),
			 errhint("Do not call personalize functions from triggers on personalize's tables.")));
	store.identities = table_open(store_relid("identities"), mode);
	store_check_plain(store.identities, identity_columns, lengthof(identity_columns), NULL);
	store.identities_pk = index_open(RelationGetPrimaryKeyIndex(store.identities), mode);
	store_check_acl(store.identities, writing ? ACL_SELECT | ACL_INSERT : ACL_SELECT);
	store.writing = writing;
	if (writing)
	{
		TupleDesc td;

		store.identities_ind = CatalogOpenIndexes(store.identities);
		store_check_plain(store.identities, NULL, 0, store.identities_ind);
		store.identities_by_profile = NULL;
		for (int i = 0; i < store.identities_ind->ri_NumIndices; i++)
		{
			Relation idx = store.identities_ind->ri_IndexRelationDescs[i];

			/* (profile_id, namespace_id), as the extension made it */
			if (idx->rd_index->indnkeyatts == 2 && idx->rd_index->indkey.values[0] == 1 &&
				idx->rd_index->indkey.values[1] == 2)
				store.identities_by_profile = idx;
		}
		if (store.identities_by_profile == NULL)
			elog(ERROR, "personalize.identities has no index on (profile_id, namespace_id): is the "
						"extension up to date?");
		store.merge_log = NULL;
		store.profiles = table_open(store_relid("profiles"), mode);
		store.profiles_pk = index_open(RelationGetPrimaryKeyIndex(store.profiles), mode);
		store.profiles_ind = CatalogOpenIndexes(store.profiles);
		store_check_plain(store.profiles, NULL, 0, store.profiles_ind);
		store_check_acl(store.profiles, ACL_SELECT | ACL_INSERT);

		/* the column layout, once per backend (and again if the table is new) */
		td = RelationGetDescr(store.profiles);
		if (profiles_layout_relid != RelationGetRelid(store.profiles))
		{
			if (td->natts != lengthof(profile_columns))
				elog(ERROR,
					 "personalize.profiles has %d columns, this library writes %d: is the "
					 "extension up to date (ALTER EXTENSION personalize UPDATE)?",
					 td->natts, (int) lengthof(profile_columns));
			for (int i = 0; i < (int) lengthof(profile_columns); i++)
			{
				profiles_attr[i] = InvalidAttrNumber;
				for (int a = 0; a < td->natts; a++)
					if (strcmp(NameStr(TupleDescAttr(td, a)->attname), profile_columns[i]) == 0)
						profiles_attr[i] = a + 1;
				if (profiles_attr[i] == InvalidAttrNumber)
					elog(ERROR,
						 "personalize.profiles has no column %s: is the extension up to date?",
						 profile_columns[i]);
			}
			profiles_layout_relid = RelationGetRelid(store.profiles);
		}
		memcpy(store.profiles_attr, profiles_attr, sizeof(profiles_attr));
		store.empty_states = PointerGetDatum(profile_flatten(profile_new()));
	}
	store.open = true;
	store.subid = GetCurrentSubTransactionId();
}

void
pz_store_close(void)
{
	if (!store.open)
		return;
	if (store.writing)
	{
		if (store.merge_log != NULL)
		{
			CatalogCloseIndexes(store.merge_log_ind);
			table_close(store.merge_log, NoLock);
		}
		CatalogCloseIndexes(store.identities_ind);
		CatalogCloseIndexes(store.profiles_ind);
		index_close(store.profiles_pk, NoLock);
		table_close(store.profiles, NoLock);
	}
	index_close(store.identities_pk, NoLock);
	table_close(store.identities, NoLock);
	store.open = false;
}

/* open for reading: look-ups see the statement's snapshot, not the latest */
bool
pz_store_reads_snapshot(void)
{
	return store.open && !store.writing;
}

/* the profile of an identifier by the primary key, 0 if none */
static int64
store_lookup(const PzIdentifier *id)
{
	ScanKeyData key[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Snapshot snap = store.writing ? SnapshotSelf : GetActiveSnapshot();
	text *value = cstring_to_text_with_len(id->value, id->len);
	int64 pid = 0;

	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(id->ns->id));
	ScanKeyEntryInitialize(&key[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   store.identities_pk->rd_indcollation[1], F_TEXTEQ,
						   PointerGetDatum(value));
	slot = table_slot_create(store.identities, NULL);
	scan = index_beginscan(store.identities, store.identities_pk, snap, 2, 0);
	index_rescan(scan, key, 2, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool isnull;

		pid = DatumGetInt64(slot_getattr(slot, 1, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	pfree(value);
	return pid;
}

/*
 * The profile of an identifier in the table, 0 if none: through the primary
 * key when the store is open, else by a statement (the caller is connected
 * to SPI).
 */
int64
pz_store_lookup(const PzIdentifier *id)
{
	Datum values[2];

	if (store.open)
		return store_lookup(id);
	values[0] = Int32GetDatum(id->ns->id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(id->value, id->len));
	if (stmt_run(ST_LOOKUP, values, NULL, SPI_OK_SELECT) == 0)
		return 0;
	return result_int8(1);
}

/* neither identities nor profiles has a row (SnapshotSelf); the store is open for writing */
bool
pz_store_is_empty(void)
{
	Relation rels[2] = {store.identities, store.profiles};

	for (int i = 0; i < 2; i++)
	{
		TableScanDesc scan = table_beginscan(rels[i], SnapshotSelf, 0, NULL);
		TupleTableSlot *slot = table_slot_create(rels[i], NULL);
		bool found = table_scan_getnextslot(scan, ForwardScanDirection, slot);

		table_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		if (found)
			return false;
	}
	return true;
}

bool
pz_store_profile_exists(int64 profile_id)
{
	ScanKeyData key[1];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(store.profiles, NULL);
	bool found;

	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(profile_id));
	scan = index_beginscan(store.profiles, store.profiles_pk, SnapshotSelf, 1, 0);
	index_rescan(scan, key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * The identifiers of namespace ns that profile_id holds, counted through
 * the (profile_id, namespace_id) index directly.  (A prepared statement
 * would keep the plan it made while the table was small: a sequential scan
 * that makes a long load of links quadratic.)  Called by writers, with the
 * store open.
 */
int64
pz_store_count_in_namespace(int64 profile_id, const PzNamespace *ns)
{
	ScanKeyData key[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64 n = 0;

	Assert(store.open && store.writing);
	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(profile_id));
	ScanKeyInit(&key[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(ns->id));
	slot = table_slot_create(store.identities, NULL);
	scan = index_beginscan(store.identities, store.identities_by_profile, SnapshotSelf, 2, 0);
	index_rescan(scan, key, 2, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
		n++;
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return n;
}

/* the key identifier of a profile from its row, into *key (value palloc'd) */
void
pz_store_profile_key(int64 profile_id, PzIdentifier *key)
{
	Datum values[1] = {Int64GetDatum(profile_id)};
	bool isnull;

	if (stmt_run(ST_PROFILE_KEY, values, NULL, SPI_OK_SELECT) != 1)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
						errmsg("profile %lld has identifiers but no row in personalize.profiles",
							   (long long) profile_id)));
	key->ns = pz_namespace_by_id(
		DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	key->value = TextDatumGetCString(
		SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	key->len = strlen(key->value);
}

void
pz_store_insert_identity(const PzIdentifier *id, int64 profile_id)
{
	Datum values[4];
	bool nulls[4] = {false, false, false, false};
	HeapTuple tup;

	values[0] = Int64GetDatum(profile_id);
	values[1] = Int32GetDatum(id->ns->id);
	values[2] = PointerGetDatum(cstring_to_text_with_len(id->value, id->len));
	values[3] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()); /* now() */
	tup = heap_form_tuple(RelationGetDescr(store.identities), values, nulls);
	CatalogTupleInsertWithInfo(store.identities, tup, store.identities_ind);
	heap_freetuple(tup);
}

/*
 * Where the worker last wrote each profile's row (created, updated or
 * merged into): the next batch reads the row there instead of probing the
 * primary key (an index descent and a heap fetch were a sixth of the
 * worker's time).  A remembered place is only a hint: the row found there
 * must be visible (SnapshotSelf: no one updated or deleted it since) and
 * carry the profile's id, else the primary key is probed.  So a rebuild, a
 * user's UPDATE, VACUUM FULL or an aborted batch cannot mislead it.  At
 * most personalize.identity_cache_size places are kept
 * (personalize.worker_identity_cache_size in the worker); when full, they
 * are forgotten all at once.
 */
typedef struct ProfilePlace
{
	int64 id; /* hash key */
	ItemPointerData tid;
} ProfilePlace;

static HTAB *profile_places = NULL;

/* set by the worker: only it reads rows by their places */
bool pz_profile_places = false;

static void
profile_place_remember(int64 id, ItemPointer tid)
{
	ProfilePlace *pl;

	if (!pz_profile_places || pz_identity_cache_size <= 0)
		return;
	if (profile_places == NULL || hash_get_num_entries(profile_places) >= pz_identity_cache_size)
	{
		HASHCTL info = {0};

		if (profile_places != NULL)
			hash_destroy(profile_places);
		info.keysize = sizeof(int64);
		info.entrysize = sizeof(ProfilePlace);
		profile_places =
			hash_create("personalize profile places", 1024, &info, HASH_ELEM | HASH_BLOBS);
	}
	pl = hash_search(profile_places, &id, HASH_ENTER, NULL);
	pl->tid = *tid;
}

/* a profile merged away: its row is gone */
static void
profile_place_forget(int64 id)
{
	if (profile_places != NULL)
		(void) hash_search(profile_places, &id, HASH_REMOVE, NULL);
}

/*
 * Whether the page of the row at tid (pinned in buf) may lack the room for
 * that row's next version: less free space than the row and a quarter more
 * (a batch's merge seldom grows a profile by that much; if it does, the
 * update is merely not HOT).
 */
static bool
profile_page_short_of_room(Buffer buf, ItemPointer tid)
{
	Page page;
	OffsetNumber off = ItemPointerGetOffsetNumber(tid);
	Size len = 0, room;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	room = PageGetHeapFreeSpace(page);
	if (off >= FirstOffsetNumber && off <= PageGetMaxOffsetNumber(page))
	{
		ItemId lp = PageGetItemId(page, off);

		if (ItemIdIsNormal(lp))
			len = ItemIdGetLength(lp);
	}
	LockBuffer(buf, BUFFER_LOCK_UNLOCK);
	return len == 0 || room < MAXALIGN(len + len / 4);
}

/*
 * Profile id's row where it was last written, pinned in *buf; false if it
 * is not there any more.  The page is pruned first if it may be short of
 * room for the row's next version, as an index fetch would prune it: that
 * keeps the update HOT.  Only then: with room to spare the update stays
 * HOT anyway, and a page pruned when it runs short frees the dead versions
 * of several updates at once.  An index fetch prunes whenever the page is
 * below its fill factor, which at the profiles' 70 meant one prune (a pass
 * over the page, a compaction, a WAL record) for nearly every update.
 */
static bool
profile_place_fetch(int64 id, BlockNumber nblocks, HeapTuple tuple, Buffer *buf)
{
	ProfilePlace *pl;
	bool isnull;

	if (profile_places == NULL ||
		(pl = hash_search(profile_places, &id, HASH_FIND, NULL)) == NULL ||
		ItemPointerGetBlockNumber(&pl->tid) >= nblocks)
		return false;
	*buf = ReadBuffer(store.profiles, ItemPointerGetBlockNumber(&pl->tid));
	if (profile_page_short_of_room(*buf, &pl->tid))
		heap_page_prune_opt(store.profiles, *buf);
	ReleaseBuffer(*buf);
	tuple->t_self = pl->tid;
	if (!heap_fetch(store.profiles, SnapshotSelf, tuple, buf, false))
		return false;
	if (DatumGetInt64(heap_getattr(tuple, store.profiles_attr[0], RelationGetDescr(store.profiles),
								   &isnull)) != id ||
		isnull)
	{
		ReleaseBuffer(*buf);
		*buf = InvalidBuffer;
		return false;
	}
	return true;
}

void
pz_store_insert_profile(int64 profile_id, const PzIdentifier *key)
{
	Datum values[8];
	bool nulls[8];
	Datum row[8];
	bool rownulls[8];
	HeapTuple tup;

	values[0] = Int64GetDatum(profile_id);
	values[1] = Int32GetDatum(key->ns->id);
	values[2] = PointerGetDatum(cstring_to_text_with_len(key->value, key->len));
	values[3] = store.empty_states;
	values[6] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[7] = BoolGetDatum(false);
	memset(nulls, 0, sizeof(nulls));
	nulls[4] = nulls[5] = true; /* first and last seen: no event yet */
	for (int i = 0; i < 8; i++)
	{
		row[store.profiles_attr[i] - 1] = values[i];
		rownulls[store.profiles_attr[i] - 1] = nulls[i];
	}
	tup = heap_form_tuple(RelationGetDescr(store.profiles), row, rownulls);
	CatalogTupleInsertWithInfo(store.profiles, tup, store.profiles_ind);
	profile_place_remember(profile_id, &tup->t_self);
	heap_freetuple(tup);
}

/*
 * Point every identifier of profile from at profile into; the cache
 * follows.  The statement trigger does not see this, so the change is
 * counted here for the other backends' caches.
 */
void
pz_store_move_identities(int64 from, int64 into)
{
	ScanKeyData key[1];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(store.identities, NULL);
	List *tids = NIL;
	ListCell *lc;

	store_check_acl(store.identities, ACL_UPDATE);

	/* rows this same command inserted can only be updated by a later command */
	CommandCounterIncrement();

	/* collect first: the updates add entries to the index being scanned */
	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(from));
	scan = index_beginscan(store.identities, store.identities_by_profile, SnapshotSelf, 1, 0);
	index_rescan(scan, key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		ItemPointer tid = palloc(sizeof(ItemPointerData));

		ItemPointerCopy(&slot->tts_tid, tid);
		tids = lappend(tids, tid);
	}
	index_endscan(scan);

	foreach (lc, tids)
	{
		ItemPointer tid = lfirst(lc);
		Datum values[4];
		bool nulls[4];
		HeapTuple newtup;
		text *value;

		if (!table_tuple_fetch_row_version(store.identities, tid, SnapshotSelf, slot))
			elog(ERROR, "personalize: an identity row of profile %lld vanished", (long long) from);
		slot_getallattrs(slot);
		memcpy(values, slot->tts_values, sizeof(values));
		memcpy(nulls, slot->tts_isnull, sizeof(nulls));
		values[0] = Int64GetDatum(into);
		newtup = heap_form_tuple(RelationGetDescr(store.identities), values, nulls);
		CatalogTupleUpdateWithInfo(store.identities, tid, newtup, store.identities_ind);
		value = DatumGetTextPP(values[2]);
		{
			char *v = text_to_cstring(value);

			pz_cache_put_raw(DatumGetInt32(values[1]), v, strlen(v), into);
			pfree(v);
		}
		heap_freetuple(newtup);
	}
	ExecDropSingleTupleTableSlot(slot);
	list_free_deep(tids);
	pz_cache_changes_made();
}

/* the row of a profile: its tid and a copy of its values (SnapshotSelf) */
static void
store_fetch_profile(int64 profile_id, ItemPointer tid, Datum *values, bool *nulls)
{
	ScanKeyData key[1];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(store.profiles, NULL);
	int natts = RelationGetDescr(store.profiles)->natts;

	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(profile_id));
	scan = index_beginscan(store.profiles, store.profiles_pk, SnapshotSelf, 1, 0);
	index_rescan(scan, key, 1, NULL, 0);
	if (!index_getnext_slot(scan, ForwardScanDirection, slot))
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
						errmsg("profile %lld has identifiers but no row in personalize.profiles",
							   (long long) profile_id)));
	ItemPointerCopy(&slot->tts_tid, tid);
	slot_getallattrs(slot);
	for (int i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(store.profiles), i);

		nulls[i] = slot->tts_isnull[i];
		values[i] =
			nulls[i] ? (Datum) 0 : datumCopy(slot->tts_values[i], att->attbyval, att->attlen);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * Merge profile row from into profile row into: their trait states by the
 * profile type's merge, first and last seen widened, and from's row gone.
 */
void
pz_store_merge_profiles(int64 from, int64 into)
{
	ItemPointerData from_tid, into_tid;
	Datum fv[8], iv[8];
	bool fn[8], in[8];
	int st = store.profiles_attr[3] - 1, first = store.profiles_attr[4] - 1,
		last = store.profiles_attr[5] - 1, upd = store.profiles_attr[6] - 1,
		pending = store.profiles_attr[7] - 1;
	HeapTuple newtup;

	store_check_acl(store.profiles, ACL_UPDATE | ACL_DELETE);
	/* rows this same command wrote can only be changed by a later command */
	CommandCounterIncrement();
	store_fetch_profile(from, &from_tid, fv, fn);
	store_fetch_profile(into, &into_tid, iv, in);

	iv[st] = PointerGetDatum(
		profile_flatten(profile_merge(profile_from_datum(iv[st]), profile_from_datum(fv[st]))));
	if (!fn[first] &&
		(in[first] || DatumGetTimestampTz(fv[first]) < DatumGetTimestampTz(iv[first])))
		iv[first] = fv[first], in[first] = false;
	if (!fn[last] && (in[last] || DatumGetTimestampTz(fv[last]) > DatumGetTimestampTz(iv[last])))
		iv[last] = fv[last], in[last] = false;
	iv[pending] = BoolGetDatum(DatumGetBool(iv[pending]) || DatumGetBool(fv[pending]));
	iv[upd] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());

	newtup = heap_form_tuple(RelationGetDescr(store.profiles), iv, in);
	CatalogTupleUpdateWithInfo(store.profiles, &into_tid, newtup, store.profiles_ind);
	profile_place_remember(into, &newtup->t_self);
	heap_freetuple(newtup);
	simple_heap_delete(store.profiles, &from_tid);
	profile_place_forget(from);
	/* from leaves its audiences; into's are evaluated again */
	pz_audiences_profile_merged(from, into);
}

/*
 * The streaming worker's write: merge deltas[i] into profile ids[i]'s
 * states (the profile type's merge, without flattening the delta), widen
 * first and last seen, and set updated_at, each row updated once, directly
 * (no executor).  Every profile must exist: the caller resolved the events
 * to them under the graph's lock, which it still holds, so no merge or
 * re-key can remove one meanwhile.  A row updated concurrently by another
 * kind of writer (a user's UPDATE) fails the update with an ERROR; the
 * caller retries in a new transaction.
 */
void
pz_profiles_merge_deltas(int n, const int64 *ids, Profile *const *deltas,
						 const TimestampTz *first_seen, const TimestampTz *last_seen,
						 PzAudienceRun *audiences)
{
	Datum values[8];
	bool nulls[8];
	MemoryContext row_cxt, old;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	ScanKeyData key[1];
	TupleDesc desc;
	BlockNumber nblocks;
	int st, first, last, upd;
	/* the run takes the merged profiles if its conditions read traits */
	bool hold = audiences != NULL && pz_audience_run_reads_traits(audiences);

	if (n == 0)
		return;
	pz_store_open(true);
	store_check_acl(store.profiles, ACL_UPDATE);
	/* profiles this transaction created can only be changed by a later command */
	CommandCounterIncrement();
	desc = RelationGetDescr(store.profiles);
	st = store.profiles_attr[3] - 1;
	first = store.profiles_attr[4] - 1;
	last = store.profiles_attr[5] - 1;
	upd = store.profiles_attr[6] - 1;
	/* no one truncates the table while this transaction holds its lock */
	nblocks = RelationGetNumberOfBlocks(store.profiles);
	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "personalize profile write",
									ALLOCSET_DEFAULT_SIZES);
	/* one scan, rescanned per profile not found where it was written */
	slot = table_slot_create(store.profiles, NULL);
	scan = index_beginscan(store.profiles, store.profiles_pk, SnapshotSelf, 1, 0);
	for (int i = 0; i < n; i++)
	{
		HeapTupleData placed;
		Buffer buf = InvalidBuffer;
		ItemPointerData tid;
		HeapTuple newtup;
		Profile *p;
		struct varlena *flat;

		/* (the index scan allocates what must outlive a row: not in row_cxt) */
		if (profile_place_fetch(ids[i], nblocks, &placed, &buf))
		{
			heap_deform_tuple(&placed, desc, values, nulls);
			tid = placed.t_self;
		}
		else
		{
			ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(ids[i]));
			index_rescan(scan, key, 1, NULL, 0);
			if (!index_getnext_slot(scan, ForwardScanDirection, slot))
				ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
								errmsg("profile %lld has events but no row in personalize.profiles",
									   (long long) ids[i])));
			slot_getallattrs(slot);
			memcpy(values, slot->tts_values, sizeof(Datum) * desc->natts);
			memcpy(nulls, slot->tts_isnull, sizeof(bool) * desc->natts);
			tid = slot->tts_tid;
		}
		/*
		 * With audiences that read traits, the merged profile goes to the
		 * run, which evaluates it later on the states merged here: it is read
		 * (and merges) in the run's context, and the rest is garbage once
		 * written.
		 */
		old = MemoryContextSwitchTo(row_cxt);
		flat = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(values[st]));
		if (hold)
			MemoryContextSwitchTo(pz_audience_run_row_context(audiences, desc));
		p = profile_from_flat(flat);
		MemoryContextSwitchTo(row_cxt);
		profile_merge(p, deltas[i]);
		values[st] = PointerGetDatum(profile_flatten(p));
		if (nulls[first] || first_seen[i] < DatumGetTimestampTz(values[first]))
			values[first] = TimestampTzGetDatum(first_seen[i]), nulls[first] = false;
		if (nulls[last] || last_seen[i] > DatumGetTimestampTz(values[last]))
			values[last] = TimestampTzGetDatum(last_seen[i]), nulls[last] = false;
		values[upd] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		newtup = heap_form_tuple(desc, values, nulls);
		CatalogTupleUpdateWithInfo(store.profiles, &tid, newtup, store.profiles_ind);
		MemoryContextSwitchTo(old);
		if (hold)
			pz_audience_run_add_profile(audiences, newtup, desc, p);
		else if (audiences != NULL)
			pz_audience_run_add(audiences, newtup, desc);
		profile_place_remember(ids[i], &newtup->t_self);
		if (BufferIsValid(buf))
			ReleaseBuffer(buf);
		ExecClearTuple(slot);
		MemoryContextReset(row_cxt);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(row_cxt);
	pz_store_close();
}

/* a row of merge_log: what a merge, re-key or split did */
void
pz_store_log(const char *action, int64 from, int64 into, const PzIdentifier *a,
			 const PzIdentifier *b)
{
	Datum values[9];
	bool nulls[9] = {false};
	HeapTuple tup;

	if (store.merge_log == NULL)
	{
		store.merge_log = table_open(store_relid("merge_log"), RowExclusiveLock);
		store_check_acl(store.merge_log, ACL_INSERT);
		if (RelationGetDescr(store.merge_log)->natts != 9)
			elog(ERROR, "personalize.merge_log does not have the columns this library writes: is "
						"the extension up to date?");
		store.merge_log_ind = CatalogOpenIndexes(store.merge_log);
		store_check_plain(store.merge_log, NULL, 0, store.merge_log_ind);
		store.merge_log_seq = getIdentitySequence(RelationGetRelid(store.merge_log), 1, false);
	}
	values[0] = Int64GetDatum(nextval_internal(store.merge_log_seq, true));
	values[1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[2] = CStringGetTextDatum(action);
	values[3] = Int64GetDatum(from);
	values[4] = Int64GetDatum(into);
	values[5] = CStringGetTextDatum(a->ns->name);
	values[6] = PointerGetDatum(cstring_to_text_with_len(a->value, a->len));
	if (b != NULL)
	{
		values[7] = CStringGetTextDatum(b->ns->name);
		values[8] = PointerGetDatum(cstring_to_text_with_len(b->value, b->len));
	}
	else
		nulls[7] = nulls[8] = true;
	tup = heap_form_tuple(RelationGetDescr(store.merge_log), values, nulls);
	CatalogTupleInsertWithInfo(store.merge_log, tup, store.merge_log_ind);
	heap_freetuple(tup);
}

/* ---- re-keys and refusals: statements ---- */

/* profile from becomes into, keyed by key (its identities move separately) */
void
pz_store_rekey_profile(int64 from, int64 into, const PzIdentifier *key)
{
	Datum values[4];

	values[0] = Int64GetDatum(from);
	values[1] = Int64GetDatum(into);
	values[2] = Int32GetDatum(key->ns->id);
	values[3] = PointerGetDatum(cstring_to_text_with_len(key->value, key->len));
	stmt_run(ST_REKEY_PROFILE, values, NULL, SPI_OK_UPDATE);
}

/* a row of refused_links, or one more time on the pair's row */
void
pz_store_refuse(const char *rule, const PzNamespace *rule_ns, const PzIdentifier *a,
				const PzIdentifier *b, int64 profile_a, int64 profile_b)
{
	Datum values[8];
	char nulls[8] = "        ";

	values[0] = CStringGetTextDatum(rule);
	values[1] = CStringGetTextDatum(rule_ns->name);
	values[2] = CStringGetTextDatum(a->ns->name);
	values[3] = PointerGetDatum(cstring_to_text_with_len(a->value, a->len));
	values[4] = CStringGetTextDatum(b->ns->name);
	values[5] = PointerGetDatum(cstring_to_text_with_len(b->value, b->len));
	values[6] = Int64GetDatum(profile_a);
	values[7] = Int64GetDatum(profile_b);
	nulls[6] = profile_a ? ' ' : 'n';
	nulls[7] = profile_b ? ' ' : 'n';
	stmt_run(ST_REFUSE, values, nulls, SPI_OK_INSERT);
}

/*
 * Refusals of n distinct pairs at once, each counted times[i] and carrying
 * the last refusal's rule and profiles (0: none): what as many
 * pz_store_refuse calls in that order leave in refused_links (the serial
 * ids aside).
 */
void
pz_store_refuse_many(int n, const PzStoredRefusal *r)
{
	Datum *col[9];
	Datum values[9];

	if (n == 0)
		return;
	for (int c = 0; c < 9; c++)
		col[c] = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		col[0][i] = CStringGetTextDatum(r[i].rule);
		col[1][i] = CStringGetTextDatum(r[i].rule_ns->name);
		col[2][i] = CStringGetTextDatum(r[i].a.ns->name);
		col[3][i] = PointerGetDatum(cstring_to_text_with_len(r[i].a.value, r[i].a.len));
		col[4][i] = CStringGetTextDatum(r[i].b.ns->name);
		col[5][i] = PointerGetDatum(cstring_to_text_with_len(r[i].b.value, r[i].b.len));
		col[6][i] = Int64GetDatum(r[i].profile_a);
		col[7][i] = Int64GetDatum(r[i].profile_b);
		col[8][i] = Int64GetDatum(r[i].times);
	}
	for (int c = 0; c < 9; c++)
		values[c] = PointerGetDatum(
			c < 6 ? construct_array(col[c], n, TEXTOID, -1, false, TYPALIGN_INT)
				  : construct_array(col[c], n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	stmt_run(ST_REFUSE_MANY, values, NULL, SPI_OK_INSERT);
}
