/*
 * identity.c
 *	  The identity graph: look-up, linking under the merge rules, merges,
 *	  re-keying, split and forget; the backend's identity cache; the SQL
 *	  functions over them.
 *
 * Storage (personalize--0.1.0--0.2.0.sql): identities maps every identifier
 * straight to its profile (a union-find whose paths are always fully
 * compressed, so resolving is one probe); profiles has one row per profile
 * with its key identifier; merge_log and refused_links record what the
 * rules did.
 *
 * Deterministic ids.  A profile is keyed by its best identifier: highest
 * namespace priority, then namespace name, then smallest value by bytes.
 * Its id is a 63-bit hash of that identifier.  When two profiles merge, the
 * one with the better key survives; when an identifier better than the key
 * joins, the profile is re-keyed (a new id, logged like a merge).  So the
 * partition and the ids depend only on the set of links, not on their
 * order, as long as no rule refuses a link.  (Should two keys ever hash to
 * the same id, the later one takes the next free id.)
 *
 * Merge rules.  A link that would leave a profile with more identifiers of
 * a namespace than its max_per_profile is refused, and so is any link
 * through a blocked value; refusals are recorded in refused_links (one row
 * per pair, counted).  Which of several conflicting links wins then depends
 * on arrival order: first come, first linked.
 *
 * The identity cache.  Each backend keeps identifier -> profile id for up to
 * personalize.identity_cache_size identifiers.  Entries change only when
 * identities rows are updated or deleted (merge, re-key, split, forget, or
 * a user's own DML); a statement trigger on the table counts such changes
 * in shared memory at commit, and every backend empties its cache when the
 * count moves.  Without shared_preload_libraries there is no shared counter
 * and no cache.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/xlog.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "audience.h"
#include "identity.h"
#include "security.h"
#include "profile.h"
#include "state.h"
#include "stream.h"

int pz_identity_cache_size = 100000;

/* ---- shared memory: the change counter ---- */

typedef struct PzIdentityShared
{
	pg_atomic_uint64 changes;
	/* the transaction of the last change: a reader whose snapshot does not
	 * see it must not cache what it read */
	pg_atomic_uint32 last_change_xid;
} PzIdentityShared;

static PzIdentityShared *pz_shared = NULL;

pz_profile_moved_hook_type pz_profile_moved_hook = NULL;
uint64 pz_identity_refusals = 0;

void
pz_identity_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(PzIdentityShared)));
}

void
pz_identity_shmem_startup(void)
{
	bool found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pz_shared = ShmemInitStruct("personalize identity graph", sizeof(PzIdentityShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&pz_shared->changes, 1);
		pg_atomic_init_u32(&pz_shared->last_change_xid, InvalidTransactionId);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* ---- the identity cache ---- */

typedef struct CacheKey
{
	int32 ns;
	int32 len;
	uint32 hash;
	const char *value;
} CacheKey;

typedef struct CacheEntry
{
	CacheKey key;
	int64 profile_id;
} CacheEntry;

/* and profile id -> key identifier, so that merges and attaches need no look-up */
typedef struct KeyEntry
{
	int64 profile_id;
	int32 ns;
	int32 len;
	char *value;
} KeyEntry;

/*
 * Two generations: entries go into the young one; when it holds half the
 * budget it becomes the old one and the previous old one is dropped.  A hit
 * in the old generation moves the entry back into the young one, so what is
 * in use stays and what is not ages out, without tracking recency per entry.
 */
typedef struct CacheGen
{
	MemoryContext cxt;
	HTAB *ids;  /* identifier -> profile id */
	HTAB *keys; /* profile id -> key identifier */
} CacheGen;

static CacheGen young = {0}, old = {0};
static uint64 cache_changes = 0;       /* the shared counter when the cache was last known good */
static bool changes_pending = false;   /* this transaction changed existing identities */
static bool xact_writes_graph = false; /* this transaction took the graph's lock to write */
static bool in_core = false;           /* our own statements are running: the cache follows them */
static bool callbacks_registered = false;

typedef struct IdentityStore IdentityStore;
static void store_forget_open(SubTransactionId aborted);
static LocalTransactionId locked_lxid;

static uint32
cache_hash(const void *key, Size keysize)
{
	return ((const CacheKey *) key)->hash;
}

static int
cache_match(const void *a, const void *b, Size keysize)
{
	const CacheKey *ka = a;
	const CacheKey *kb = b;

	return !(ka->hash == kb->hash && ka->ns == kb->ns && ka->len == kb->len &&
			 memcmp(ka->value, kb->value, ka->len) == 0);
}

static void
gen_drop(CacheGen *g)
{
	if (g->cxt != NULL)
		MemoryContextDelete(g->cxt);
	memset(g, 0, sizeof(CacheGen));
}

static void
cache_reset(void)
{
	gen_drop(&young);
	gen_drop(&old);
}

/*
 * Move the shared counter.  Our own cache followed our own changes (under
 * the graph's lock, nobody else's could interleave), so it stays valid
 * unless someone else moved the counter too.
 */
static void
changes_bump(void)
{
	uint64 before = pg_atomic_fetch_add_u64(&pz_shared->changes, 1);

	if (cache_changes == before)
		cache_changes = before + 1;
}

static void
identity_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			/*
			 * Before the commit is visible: a snapshot that sees it is taken
			 * after the counter moved, so its backend empties its cache.
			 * Bumped again at commit, for entries read in between.
			 */
			if (changes_pending && pz_shared != NULL)
			{
				pg_atomic_write_u32(&pz_shared->last_change_xid, GetTopTransactionIdIfAny());
				changes_bump();
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (changes_pending && pz_shared != NULL)
				changes_bump();
			changes_pending = false;
			xact_writes_graph = false;
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (changes_pending)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed the identity graph"),
						 errdetail("Other backends' identity caches learn of changes at commit, "
								   "which COMMIT PREPARED does not run in this backend."),
						 errhint("Commit identity changes in an ordinary transaction.")));
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/*
			 * Entries this transaction wrote may be gone.  One that only read
			 * committed entries leaves the cache as it is (the worker's
			 * logical decoding ends a replay this way, many times a second).
			 */
			if (xact_writes_graph || changes_pending)
				cache_reset();
			xact_writes_graph = false;
			changes_pending = false;
			in_core = false;
			store_forget_open(
				InvalidSubTransactionId); /* the resource owner closed the relations */
			break;
		default:
			break;
	}
}

static void
identity_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		cache_reset();
		in_core = false;
		/* only if the store was opened in this subtransaction: its relations are closed */
		store_forget_open(mySubid);
		/* a lock taken inside the aborted subtransaction is gone: take it again */
		locked_lxid = InvalidLocalTransactionId;
	}
}

/* the identities table the cache is of: DROP and CREATE EXTENSION make a new one */
static Oid cache_relid = InvalidOid;

/* once per backend: the callbacks that move the counter at commit */
static void
identity_callbacks_register(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(identity_xact_callback, NULL);
		RegisterSubXactCallback(identity_subxact_callback, NULL);
		callbacks_registered = true;
	}
}

/* the graph's shared change counter, 0 without shared memory */
uint64
pz_identity_changes(void)
{
	return pz_shared != NULL ? pg_atomic_read_u64(&pz_shared->changes) : 0;
}

/* Start of every operation: make the cache current, or drop it. */
static void
cache_check(void)
{
	uint64 now;
	Oid relid;

	identity_callbacks_register();
	/* a standby replays changes no counter reports: no cache there */
	if (pz_shared == NULL || pz_identity_cache_size <= 0 || RecoveryInProgress())
	{
		cache_reset();
		return;
	}
	relid = get_relname_relid("identities", get_namespace_oid("personalize", false));
	if (relid != cache_relid)
	{
		cache_reset();
		cache_relid = relid;
	}
	now = pg_atomic_read_u64(&pz_shared->changes);
	if (now != cache_changes)
	{
		cache_reset();
		cache_changes = now;
	}
}

static void
cache_key(CacheKey *k, const PzIdentifier *id)
{
	k->ns = id->ns->id;
	k->len = id->len;
	k->value = id->value;
	k->hash = hash_bytes((const unsigned char *) id->value, id->len) ^ (uint32) id->ns->id;
}

static void
gen_create(CacheGen *g)
{
	HASHCTL ctl;

	g->cxt = AllocSetContextCreate(TopMemoryContext, "personalize identity cache",
								   ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(CacheKey);
	ctl.entrysize = sizeof(CacheEntry);
	ctl.hash = cache_hash;
	ctl.match = cache_match;
	ctl.hcxt = g->cxt;
	g->ids = hash_create("personalize identity cache", 1024, &ctl,
						 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(KeyEntry);
	ctl.hcxt = g->cxt;
	g->keys =
		hash_create("personalize profile keys", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* make room and create the cache if needed; false if there is no cache */
static bool
cache_ready(void)
{
	long half = Max(pz_identity_cache_size / 2, 1);

	if (pz_shared == NULL || pz_identity_cache_size <= 0)
		return false;
	if (young.cxt != NULL &&
		(hash_get_num_entries(young.ids) >= half || hash_get_num_entries(young.keys) >= half))
	{
		gen_drop(&old);
		old = young;
		memset(&young, 0, sizeof(CacheGen));
	}
	if (young.cxt == NULL)
		gen_create(&young);
	return true;
}

static void
key_cache_put(int64 profile_id, const PzIdentifier *key)
{
	KeyEntry *e;
	bool found;

	if (!cache_ready())
		return;
	e = hash_search(young.keys, &profile_id, HASH_ENTER, &found);
	e->ns = key->ns->id;
	e->len = key->len;
	e->value = MemoryContextStrdup(young.cxt, key->value);
}

static void
key_cache_forget(int64 profile_id)
{
	if (young.keys != NULL)
		hash_search(young.keys, &profile_id, HASH_REMOVE, NULL);
	if (old.keys != NULL)
		hash_search(old.keys, &profile_id, HASH_REMOVE, NULL);
}

/* the cached key of a profile, copied into *key; false if not cached */
static bool
key_cache_get(int64 profile_id, PzIdentifier *key)
{
	KeyEntry *e = young.keys ? hash_search(young.keys, &profile_id, HASH_FIND, NULL) : NULL;
	bool from_old = false;

	if (e == NULL && old.keys != NULL)
	{
		e = hash_search(old.keys, &profile_id, HASH_FIND, NULL);
		from_old = e != NULL;
	}
	if (e == NULL)
		return false;
	/* a copy: a later put may drop the generation it lives in */
	key->ns = pz_namespace_by_id(e->ns);
	key->value = pnstrdup(e->value, e->len);
	key->len = e->len;
	if (from_old)
		key_cache_put(profile_id, key);
	return true;
}

static void cache_put_raw(int32 ns, const char *value, int32 len, int64 profile_id);

static int64
cache_get(const PzIdentifier *id)
{
	CacheKey k;
	CacheEntry *e;
	int64 pid;

	if (young.ids == NULL)
		return 0;
	cache_key(&k, id);
	e = hash_search(young.ids, &k, HASH_FIND, NULL);
	if (e != NULL)
		return e->profile_id;
	if (old.ids == NULL)
		return 0;
	e = hash_search(old.ids, &k, HASH_FIND, NULL);
	if (e == NULL)
		return 0;
	pid = e->profile_id;
	cache_put_raw(id->ns->id, id->value, id->len, pid); /* still in use: keep it young */
	return pid;
}

static void
cache_put_raw(int32 ns, const char *value, int32 len, int64 profile_id)
{
	CacheKey k;
	CacheEntry *e;
	bool found;

	if (!cache_ready())
		return;
	k.ns = ns;
	k.len = len;
	k.value = value;
	k.hash = hash_bytes((const unsigned char *) value, len) ^ (uint32) ns;
	e = hash_search(young.ids, &k, HASH_ENTER, &found);
	if (!found)
		e->key.value = MemoryContextStrdup(young.cxt, value); /* value is NUL-terminated */
	e->profile_id = profile_id;
}

static void
cache_put(const PzIdentifier *id, int64 profile_id)
{
	cache_put_raw(id->ns->id, id->value, id->len, profile_id);
}

/* ---- statements ---- */

typedef enum Stmt
{
	ST_LOOKUP,
	ST_PROFILE_KEY,
	ST_REKEY_PROFILE,
	ST_REFUSE,
	ST_COUNT
} Stmt;

static const struct
{
	const char *sql;
	int nargs;
	Oid types[8];
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
struct IdentityStore
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
};

static IdentityStore store;

/* where profiles' columns are, by profile_columns order; for this relid */
static AttrNumber profiles_attr[8];
static Oid profiles_layout_relid = InvalidOid;

static void
store_forget_open(SubTransactionId aborted)
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
	for (AclMode bit = 1; bit != 0 && bit <= mode; bit <<= 1)
		if ((mode & bit) &&
			pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), bit) != ACLCHECK_OK)
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
	for (int i = 0; ind != NULL && i < ind->ri_NumIndices; i++)
	{
		IndexInfo *info = ind->ri_IndexRelationInfo[i];

		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL ||
			info->ii_ExclusionOps != NULL || !ind->ri_IndexRelationDescs[i]->rd_index->indimmediate)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("personalize.%s has an index with expressions, a predicate, an "
							"exclusion or a deferred check, which this library does not maintain",
							name),
					 errhint("Drop that index; personalize's own indexes are plain.")));
	}
}

/* open for reading (resolve) or writing (the caller holds the graph's lock) */
static void
store_open(bool writing)
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

static void
store_close(void)
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

static bool
store_profile_exists(int64 profile_id)
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

static void
store_insert_identity(const PzIdentifier *id, int64 profile_id)
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
 * Profile id's row where it was last written, pinned in *buf; false if it
 * is not there any more.  The page is pruned first, as an index fetch
 * would: that keeps the next update of its rows HOT.
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

static void
store_insert_profile(int64 profile_id, const PzIdentifier *key)
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
static void
store_move_identities(int64 from, int64 into)
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

			cache_put_raw(DatumGetInt32(values[1]), v, strlen(v), into);
			pfree(v);
		}
		heap_freetuple(newtup);
	}
	ExecDropSingleTupleTableSlot(slot);
	list_free_deep(tids);
	changes_pending = true;
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
static void
store_merge_profiles(int64 from, int64 into)
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

	if (n == 0)
		return;
	store_open(true);
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
		old = MemoryContextSwitchTo(row_cxt);
		p = profile_from_datum(values[st]);
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
		if (audiences != NULL)
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
	store_close();
}

static void
store_log(const char *action, int64 from, int64 into, const PzIdentifier *a, const PzIdentifier *b)
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

/* ---- identifiers and their order ---- */

/* best first: higher priority, then namespace name, then value bytes */
static int
identifier_rank_cmp(const PzIdentifier *a, const PzIdentifier *b)
{
	if (a->ns != b->ns)
	{
		if (a->ns->priority != b->ns->priority)
			return a->ns->priority > b->ns->priority ? -1 : 1;
		return strcmp(a->ns->name, b->ns->name);
	}
	return pz_value_cmp(a->value, a->len, b->value, b->len);
}

static int
identifier_qsort_cmp(const void *a, const void *b)
{
	return identifier_rank_cmp(a, b);
}

static bool
identifier_eq(const PzIdentifier *a, const PzIdentifier *b)
{
	return a->ns == b->ns && pz_value_eq(a->value, a->len, b->value, b->len);
}

/* the id a profile keyed by this identifier gets (before collisions) */
static int64
identifier_profile_id(const PzIdentifier *id)
{
	StringInfoData buf;
	uint64 h;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, id->ns->name, strlen(id->ns->name) + 1); /* with its NUL */
	appendBinaryStringInfo(&buf, id->value, id->len);
	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len,
							UINT64CONST(0x7065727375616465));
	pfree(buf.data);
	h &= UINT64CONST(0x7FFFFFFFFFFFFFFF);
	return h == 0 ? 1 : (int64) h;
}

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

/* ---- the graph ---- */

/* Writers serialize on one lock per database (security.c), once per transaction. */
static LocalTransactionId locked_lxid = InvalidLocalTransactionId;

static void
identity_lock(void)
{
	if (locked_lxid == MyProc->lxid)
		return;
	if (IsolationUsesXactSnapshot())
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("the identity graph is changed only in READ COMMITTED transactions"),
						errdetail("A writer must see the links committed while it waited for the "
								  "graph's lock."),
						errhint("Run identify, link, split and forget outside REPEATABLE READ and "
								"SERIALIZABLE transactions.")));
	/* a lock of the extension's own, which no role can take and hold from SQL */
	pz_lock(PZ_LOCK_IDENTITY_GRAPH);
	locked_lxid = MyProc->lxid;
}

/*
 * Start changing the graph: take its lock, then check the cache (a writer
 * we waited for may have changed the graph), then open the tables.
 */
static void
graph_write_begin(void)
{
	identity_lock();
	xact_writes_graph = true;
	cache_check();
	store_open(true);
}

/*
 * For a writer about to attribute many events (the streaming worker): take
 * the graph's lock for the transaction and check the cache, so that cached
 * ids read from now on are the graph's latest until commit.
 */
void
pz_identity_lock_for_writing(void)
{
	identity_lock();
	xact_writes_graph = true;
	cache_check();
}

/* The profile id of an identifier if the cache holds it, else 0. */
int64
pz_identity_cached(const PzIdentifier *id)
{
	return cache_get(id);
}

/*
 * Writers read under the graph's lock, so what they read is the latest.  A
 * reader reads its statement's snapshot, which may predate the last change:
 * caching that would keep a stale id after the change's counter moved.
 */
static bool
reader_may_cache(void)
{
	TransactionId last;

	if (pz_shared == NULL)
		return false;
	if (!store.open || store.writing)
		return true;
	last = pg_atomic_read_u32(&pz_shared->last_change_xid);
	return !TransactionIdIsValid(last) || !XidInMVCCSnapshot(last, GetActiveSnapshot());
}

int64
pz_identity_lookup(const PzIdentifier *id)
{
	Datum values[2];
	int64 pid;

	pid = cache_get(id);
	if (pid != 0)
		return pid;
	if (store.open)
		pid = store_lookup(id);
	else
	{
		values[0] = Int32GetDatum(id->ns->id);
		values[1] = PointerGetDatum(cstring_to_text_with_len(id->value, id->len));
		if (stmt_run(ST_LOOKUP, values, NULL, SPI_OK_SELECT) == 0)
			return 0;
		pid = result_int8(1);
	}
	if (pid != 0 && reader_may_cache())
		cache_put(id, pid);
	return pid;
}

static void
identity_insert(const PzIdentifier *id, int64 profile_id)
{
	store_insert_identity(id, profile_id);
	cache_put(id, profile_id);
}

/* the key identifier of a profile, into *key (value palloc'd) */
static void
profile_key(int64 profile_id, PzIdentifier *key)
{
	Datum values[1] = {Int64GetDatum(profile_id)};
	bool isnull;

	if (key_cache_get(profile_id, key))
		return;
	if (stmt_run(ST_PROFILE_KEY, values, NULL, SPI_OK_SELECT) != 1)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
						errmsg("profile %lld has identifiers but no row in personalize.profiles",
							   (long long) profile_id)));
	key->ns = pz_namespace_by_id(
		DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	key->value = TextDatumGetCString(
		SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	key->len = strlen(key->value);
	key_cache_put(profile_id, key);
}

/* a free profile id for a profile keyed by key (other than except) */
static int64
free_profile_id(const PzIdentifier *key, int64 except)
{
	int64 pid = identifier_profile_id(key);

	while (pid == except || store_profile_exists(pid))
		pid = pid == PG_INT64_MAX ? 1 : pid + 1;
	return pid;
}

/* a new profile holding just this identifier */
static int64
profile_create(const PzIdentifier *id)
{
	int64 pid = identifier_profile_id(id);

	while (store_profile_exists(pid))
		pid = pid == PG_INT64_MAX ? 1 : pid + 1; /* taken by another key */
	store_insert_profile(pid, id);
	store_insert_identity(id, pid);
	cache_put(id, pid);
	key_cache_put(pid, id);
	return pid;
}

/* point every identifier of from at into, and keep the cache in step */
static void
identities_move(int64 from, int64 into)
{
	store_move_identities(from, into);
}

static void
log_change(const char *action, int64 from, int64 into, const PzIdentifier *a, const PzIdentifier *b)
{
	store_log(action, from, into, a, b);
	/* a merged or re-keyed profile takes the worker's pending deltas along */
	if (pz_profile_moved_hook != NULL && strcmp(action, "split") != 0)
		pz_profile_moved_hook(from, into);
}

static void
refuse(const char *rule, const PzNamespace *rule_ns, const PzIdentifier *a, const PzIdentifier *b,
	   int64 profile_a, int64 profile_b)
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
	pz_identity_refusals++;
}

/*
 * The identifiers of namespace ns that profile_id holds, counted through
 * the (profile_id, namespace_id) index directly.  (A prepared statement
 * would keep the plan it made while the table was small: a sequential scan
 * that makes a long load of links quadratic.)  Called by writers, with the
 * store open.
 */
static int64
count_in_namespace(int64 profile_id, const PzNamespace *ns)
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

/*
 * The first namespace whose limit profiles p and q would break together,
 * or NULL.  A limit counts identifiers; p and q share none (an identifier
 * has one profile).
 */
static const PzNamespace *
merge_breaks_limit(int64 p, int64 q)
{
	int n = pz_namespace_count();

	if (pz_namespace_limited_count() == 0)
		return NULL;
	for (int i = 0; i < n; i++)
	{
		const PzNamespace *ns = pz_namespace_at(i);

		if (ns->max_per_profile > 0 &&
			count_in_namespace(p, ns) + count_in_namespace(q, ns) > ns->max_per_profile)
			return ns;
	}
	return NULL;
}

/*
 * Merge profiles p and q, which the link a-b joins: the one with the better
 * key survives; the other's identifiers and trait states move into it.
 */
static int64
profiles_merge(int64 p, int64 q, const PzIdentifier *a, const PzIdentifier *b)
{
	PzIdentifier kp, kq;
	int64 into, from;

	profile_key(p, &kp);
	profile_key(q, &kq);
	if (identifier_rank_cmp(&kq, &kp) < 0)
		into = q, from = p;
	else
		into = p, from = q;
	identities_move(from, into);
	store_merge_profiles(from, into);
	key_cache_forget(from);
	log_change("merge", from, into, a, b);
	return into;
}

/* Add a new identifier to profile p; re-key p if it is better than p's key. */
static int64
profile_attach(int64 p, const PzIdentifier *id)
{
	PzIdentifier key;
	int64 np;
	Datum values[4];

	identity_insert(id, p);
	profile_key(p, &key);
	if (identifier_rank_cmp(id, &key) >= 0)
		return p;

	np = free_profile_id(id, p);
	values[0] = Int64GetDatum(p);
	values[1] = Int64GetDatum(np);
	values[2] = Int32GetDatum(id->ns->id);
	values[3] = PointerGetDatum(cstring_to_text_with_len(id->value, id->len));
	stmt_run(ST_REKEY_PROFILE, values, NULL, SPI_OK_UPDATE);
	identities_move(p, np);
	log_change("rekey", p, np, id, &key);
	key_cache_forget(p);
	key_cache_put(np, id);
	return np;
}

int64
pz_identity_attribute(PzIdentifier *ids, int n, bool *linked)
{
	int64 p;
	int m = 0;

	Assert(n >= 1);
	graph_write_begin();

	/* best first, duplicates out */
	qsort(ids, n, sizeof(PzIdentifier), identifier_qsort_cmp);
	for (int i = 0; i < n; i++)
		if (m == 0 || !identifier_eq(&ids[m - 1], &ids[i]))
			ids[m++] = ids[i];
	n = m;

	*linked = true;
	p = pz_identity_lookup(&ids[0]);
	if (p == 0)
		p = profile_create(&ids[0]);

	for (int i = 1; i < n; i++)
	{
		const PzIdentifier *x = &ids[i];
		int64 q = pz_identity_lookup(x);
		const PzNamespace *broken;

		if (q == p)
			continue;
		if (q == 0)
		{
			if (x->ns->max_per_profile > 0 &&
				count_in_namespace(p, x->ns) >= x->ns->max_per_profile)
			{
				refuse("limit", x->ns, &ids[0], x, p, 0);
				(void) profile_create(x);
				*linked = false;
				continue;
			}
			p = profile_attach(p, x);
			continue;
		}
		broken = merge_breaks_limit(p, q);
		if (broken != NULL)
		{
			refuse("limit", broken, &ids[0], x, p, q);
			*linked = false;
			continue;
		}
		p = profiles_merge(p, q, &ids[0], x);
	}
	store_close();
	return p;
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
	cache_check();
	pid = cache_get(&id);
	if (pid == 0)
	{
		store_open(false);
		pid = pz_identity_lookup(&id);
		store_close();
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
		PzIdentifier *a = identifier_rank_cmp(&ids[0], &ids[1]) <= 0 ? &ids[0] : &ids[1];
		PzIdentifier *b = a == &ids[0] ? &ids[1] : &ids[0];

		graph_write_begin();
		refuse("blocked", blocked_a ? ids[0].ns : ids[1].ns, a, b, pz_identity_lookup(a),
			   pz_identity_lookup(b));
		store_close();
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
PG_FUNCTION_INFO_V1(pz_identify_event);
Datum
pz_identify_event(PG_FUNCTION_ARGS)
{
	Jsonb *jb;
	JsonbIterator *it;
	JsonbValue v;
	JsonbIteratorToken tok;
	PzIdentifier *ids, *blocked_ids;
	int n = 0, nblocked = 0, cap;
	bool linked;
	int64 pid;
	const PzNamespace *ns = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("identify: identifiers must not be NULL")));
	jb = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("identify: identifiers must be a JSON object"),
						errhint("Pass {\"namespace\": \"value\", ...}, e.g. "
								"'{\"email\": \"ann@example.com\", \"customer_id\": \"42\"}'.")));
	cap = Max(JsonContainerSize(&jb->root), 1);
	ids = palloc(cap * sizeof(PzIdentifier));
	blocked_ids = palloc(cap * sizeof(PzIdentifier));

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
			PzIdentifier *id = &ids[n];

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
				blocked_ids[nblocked++] = *id;
			else
				n++;
		}
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("identify: no usable identifier in %s",
						JsonbToCString(NULL, &jb->root, VARSIZE(jb))),
				 errdetail("Every value is NULL, empty, blocked, or not of its namespace's form."),
				 errhint("Check values with personalize.normalize_identifier(namespace, value).")));

	SPI_connect();
	pid = pz_identity_attribute(ids, n, &linked);
	/* ids[0] is now the best usable identifier, the one the event went to */
	for (int i = 0; i < nblocked; i++)
		refuse("blocked", blocked_ids[i].ns, &ids[0], &blocked_ids[i], pid, 0);
	SPI_finish();
	PG_RETURN_INT64(pid);
}

/*
 * split(namespace, value): move an identifier into a profile of its own.
 * If it was its profile's key, the rest is re-keyed first (its id is the
 * hash of the key, which the split identifier takes along).  The trait
 * states of both profiles mixed both, so both are marked rebuild_pending.
 */
PG_FUNCTION_INFO_V1(pz_split);
Datum
pz_split(PG_FUNCTION_ARGS)
{
	PzIdentifier id, key;
	bool blocked;
	int64 p, np;
	Datum values[4];
	int ret;

	identifier_arg(fcinfo, 0, &id, &blocked, "split");
	SPI_connect();
	graph_write_begin();
	p = pz_identity_lookup(&id);
	if (p == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("split: %s \"%s\" is not in the identity graph", id.ns->name, id.value),
				 errhint("personalize.resolve() tells whether an identifier is known.")));

	/* the key first: on a cache miss it runs a query, replacing SPI_tuptable */
	profile_key(p, &key);
	values[0] = Int64GetDatum(p);
	ret = SPI_execute_with_args("SELECT namespace_id, value FROM personalize.identities "
								"WHERE profile_id = $1",
								1, (Oid[]){INT8OID}, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "split: could not read the identifiers of profile %lld", (long long) p);
	if (SPI_processed == 1)
	{
		store_close();
		SPI_finish();
		ereport(NOTICE, (errmsg("split: %s \"%s\" is already alone in profile %lld", id.ns->name,
								id.value, (long long) p)));
		PG_RETURN_INT64(p);
	}

	if (identifier_eq(&id, &key))
	{
		/* the best of the others becomes the key of what remains */
		SPITupleTable *tt = SPI_tuptable;
		uint64 nrows = SPI_processed;
		PzIdentifier best = {0};
		int64 rest;

		for (uint64 i = 0; i < nrows; i++)
		{
			bool isnull;
			PzIdentifier other;

			other.ns = pz_namespace_by_id(
				DatumGetInt32(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull)));
			other.value = TextDatumGetCString(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
			other.len = strlen(other.value);
			if (identifier_eq(&other, &id))
				continue;
			if (best.ns == NULL || identifier_rank_cmp(&other, &best) < 0)
				best = other;
		}
		rest = free_profile_id(&best, p);
		values[0] = Int64GetDatum(p);
		values[1] = Int64GetDatum(rest);
		values[2] = Int32GetDatum(best.ns->id);
		values[3] = PointerGetDatum(cstring_to_text_with_len(best.value, best.len));
		stmt_run(ST_REKEY_PROFILE, values, NULL, SPI_OK_UPDATE);
		identities_move(p, rest);
		log_change("rekey", p, rest, &best, &id);
		key_cache_forget(p);
		key_cache_put(rest, &best);
		p = rest;
	}

	/* a profile of its own: insert the row, then move the identifier */
	np = free_profile_id(&id, 0);
	store_insert_profile(np, &id);
	values[0] = Int64GetDatum(np);
	values[1] = Int32GetDatum(id.ns->id);
	values[2] = PointerGetDatum(cstring_to_text_with_len(id.value, id.len));
	in_core = true;
	ret = SPI_execute_with_args("UPDATE personalize.identities SET profile_id = $1 "
								"WHERE namespace_id = $2 AND value = $3",
								3, (Oid[]){INT8OID, INT4OID, TEXTOID}, values, NULL, false, 0);
	in_core = false;
	if (ret != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "split: could not move %s \"%s\"", id.ns->name, id.value);
	cache_put(&id, np);
	key_cache_put(np, &id);

	values[0] = Int64GetDatum(p);
	values[1] = Int64GetDatum(np);
	ret = SPI_execute_with_args("UPDATE personalize.profiles SET rebuild_pending = true, "
								"updated_at = now() WHERE id IN ($1, $2)",
								2, (Oid[]){INT8OID, INT8OID}, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "split: could not mark profiles %lld and %lld", (long long) p, (long long) np);
	log_change("split", p, np, &id, NULL);
	store_close();
	SPI_finish();
	PG_RETURN_INT64(np);
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

	/* not in_core: the cache cannot follow deletes, so the trigger empties it */
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
	graph_write_begin();
	p = pz_identity_lookup(&id);
	store_close();

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

/* statement trigger on namespaces and identities: caches learn of changes */
PG_FUNCTION_INFO_V1(pz_identity_graph_changed);
Datum
pz_identity_graph_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("identity_graph_changed must be called as a trigger")));
	/* a backend that changes the graph by plain SQL moves the counter at commit too */
	identity_callbacks_register();
	if (strcmp(RelationGetRelationName(td->tg_relation), "namespaces") == 0)
	{
		/* this backend reads the list again; others learn of it from the counter */
		pz_namespace_invalidate();
		changes_pending = true;
	}
	else
	{
		changes_pending = true;
		if (!in_core)
			cache_reset(); /* someone else's DML: we cannot follow it */
	}
	return PointerGetDatum(NULL);
}
