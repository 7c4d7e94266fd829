/*
 * identity_cache.c
 *	  The backend's cache of the identity graph, and the shared change
 *	  counter that keeps every backend's cache true.
 *
 * Each backend keeps identifier -> profile id for up to
 * personalize.identity_cache_size identifiers, and profile id -> key
 * identifier so that merges and attaches need no look-up.  Entries change
 * only when identities rows are updated or deleted (merge, re-key, split,
 * forget, or a user's own DML); a statement trigger on the table
 * (pz_identity_graph_changed, here) counts such changes in shared memory
 * at commit, and every backend empties its cache when the count moves.
 * Without shared_preload_libraries there is no shared counter and no
 * cache.  The namespace list (namespace.c) is reused across transactions
 * on the same counter.
 *
 * The transaction callbacks live here because the cache is what they
 * mostly keep: at commit they move the counter, at an abort they drop what
 * the transaction wrote, and they tell the store (identity_store.c) and the
 * graph's lock (identity_graph.c) that an abort closed their relations and
 * released their lock.
 *
 * Nothing here reads or writes a table; identity_graph.c decides what goes
 * into the cache, identity_store.c reports the moves it writes directly.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "identity_internal.h"

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
			/*
			 * A prepared transaction commits later, in whichever backend runs
			 * COMMIT PREPARED (Citus's two-phase commit of the configuration
			 * a coordinator sends its nodes, citus.c), where no callback of
			 * ours moves the counter.  So the counter moves now, and the
			 * transaction is the last change: until it commits, nobody keeps
			 * what they read (pz_cache_may_keep).  And relcache
			 * invalidations of both tables go into its state, which
			 * PostgreSQL sends to every backend at COMMIT PREPARED, also
			 * after a restart: each empties its cache and reads the
			 * namespaces again then (graph_relcache_callback).
			 */
			if (changes_pending && pz_shared != NULL)
			{
				Oid nsp = get_namespace_oid("personalize", true);

				pg_atomic_write_u32(&pz_shared->last_change_xid, GetTopTransactionIdIfAny());
				changes_bump();
				if (OidIsValid(nsp))
				{
					Oid identities = get_relname_relid("identities", nsp);
					Oid namespaces = get_relname_relid("namespaces", nsp);

					if (OidIsValid(identities))
						CacheInvalidateRelcacheByRelid(identities);
					if (OidIsValid(namespaces))
						CacheInvalidateRelcacheByRelid(namespaces);
				}
			}
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
			pz_store_forget_open(
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
		pz_store_forget_open(mySubid);
		/* a lock taken inside the aborted subtransaction is gone: take it again */
		pz_graph_lock_forget();
	}
}

/* the identities table the cache is of: DROP and CREATE EXTENSION make a new one */
static Oid cache_relid = InvalidOid;

/*
 * A relcache invalidation of relid (InvalidOid: of every relation), from
 * personalize.c: among them those a prepared change of the graph sends at
 * COMMIT PREPARED (XACT_EVENT_PRE_PREPARE above), which no counter reports.
 */
void
pz_identity_relcache_changed(Oid relid)
{
	if (relid == InvalidOid || (OidIsValid(cache_relid) && relid == cache_relid))
		cache_reset();
	pz_namespace_relation_changed(relid);
}

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
void
pz_cache_check(void)
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

void
pz_key_cache_put(int64 profile_id, const PzIdentifier *key)
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

void
pz_key_cache_forget(int64 profile_id)
{
	if (young.keys != NULL)
		hash_search(young.keys, &profile_id, HASH_REMOVE, NULL);
	if (old.keys != NULL)
		hash_search(old.keys, &profile_id, HASH_REMOVE, NULL);
}

/* the cached key of a profile, copied into *key; false if not cached */
bool
pz_key_cache_get(int64 profile_id, PzIdentifier *key)
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
		pz_key_cache_put(profile_id, key);
	return true;
}

int64
pz_cache_get(const PzIdentifier *id)
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
	pz_cache_put_raw(id->ns->id, id->value, id->len, pid); /* still in use: keep it young */
	return pid;
}

void
pz_cache_put_raw(int32 ns, const char *value, int32 len, int64 profile_id)
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

void
pz_cache_put(const PzIdentifier *id, int64 profile_id)
{
	pz_cache_put_raw(id->ns->id, id->value, id->len, profile_id);
}

/* The profile id of an identifier if the cache holds it, else 0. */
int64
pz_identity_cached(const PzIdentifier *id)
{
	return pz_cache_get(id);
}

/*
 * Writers read under the graph's lock, so what they read is the latest.  A
 * reader reads its statement's snapshot, which may predate the last change:
 * caching that would keep a stale id after the change's counter moved.
 * snapshot_read: the value was read by a reader (the store open for
 * reading), not by a writer.
 */
bool
pz_cache_may_keep(bool snapshot_read)
{
	TransactionId last;

	if (pz_shared == NULL)
		return false;
	if (!snapshot_read)
		return true;
	last = pg_atomic_read_u32(&pz_shared->last_change_xid);
	return !TransactionIdIsValid(last) || !XidInMVCCSnapshot(last, GetActiveSnapshot());
}

/* ---- what the other identity files tell the cache ---- */

/* this transaction took the graph's lock to write: an abort drops the cache */
void
pz_cache_writing_graph(void)
{
	xact_writes_graph = true;
}

/*
 * This transaction changed existing identities behind the statement
 * trigger's back (the store's direct updates): move the counter at commit.
 */
void
pz_cache_changes_made(void)
{
	changes_pending = true;
}

/*
 * Our own statements on identities are running (true) or done (false): the
 * cache follows them, so the statement trigger need not empty it.
 */
void
pz_cache_own_statements(bool running)
{
	in_core = running;
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
	/*
	 * This backend follows at once: it reads the namespace list again, and
	 * someone else's DML on identities (not our own statements) empties its
	 * cache.  Other backends learn of it from the counter at commit, unless
	 * the table is one this transaction created (CREATE EXTENSION): no other
	 * backend can have cached it, and counting it would refuse the PREPARE
	 * of a CREATE EXTENSION, which Citus sends to its worker nodes in
	 * two-phase commit.
	 */
	if (strcmp(RelationGetRelationName(td->tg_relation), "namespaces") == 0)
		pz_namespace_invalidate();
	else if (!in_core)
		cache_reset();
	if (td->tg_relation->rd_createSubid == InvalidSubTransactionId)
		changes_pending = true;
	return PointerGetDatum(NULL);
}
