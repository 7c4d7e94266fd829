/*
 * audience_cache.c
 *	  The streaming worker's cache of what a run reads before it writes:
 *	  each profile's memberships and its scheduled moment
 *	  (personalize.audience_memberships and audience_due), so that a batch
 *	  reads only the profiles it has not seen.
 *
 * Why it is exact.  Every writer of memberships and moments holds the
 * membership writers' lock (PZ_LOCK_AUDIENCES, aud_lock) until it commits.
 * A writer other than the worker counts itself in shared memory when it
 * takes the lock; the worker takes the lock at the start of every run and
 * then compares the count with the one its cache was built under: if it
 * moved, someone else wrote (and has committed or aborted, since the
 * worker now holds the lock), and the cache is emptied.  The worker's own
 * writes update the cache as they are made; a transaction or
 * subtransaction of the worker that aborts after changing the cache
 * empties it.  (Entries may keep the id of an audience dropped since:
 * they are never read, since a run looks only at its audiences' ids.)
 *
 * The lock is a transaction lock, but one first taken in a subtransaction
 * that aborts is released with it: each taking of it checks the count
 * again, and every read of a run follows the taking in the run's start.
 * The count is kept per database (in one of AUDIENCE_SLOTS slots: two
 * databases that share one only empty each other's caches more often), as
 * the lock is.  Tables that change under the lock's nose (a TRUNCATE, the
 * extension dropped and created again, a restore) are caught by their
 * oids and file nodes, checked at the same moment.
 *
 * Bounded by personalize.audience_cache_size profiles: a full cache is
 * emptied and filled again.  Without shared_preload_libraries there is no
 * count and no cache; other backends never use it.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "audience_internal.h"

int pz_audience_cache_size = 250000;

#define AUDIENCE_SLOTS 64

typedef struct AudienceShared
{
	/* membership writes by processes other than a worker, per database slot */
	pg_atomic_uint64 writes[AUDIENCE_SLOTS];
} AudienceShared;

static AudienceShared *shared = NULL;
static bool enabled = false;           /* this process is a streaming worker */
static uint64 built_under = 0;         /* the count the cache reflects */
static Oid built_tables[4];            /* memberships' and schedule's oid and file node */
static HTAB *entries = NULL;           /* profile id -> AudCacheEntry */
static MemoryContext cache_cxt = NULL; /* the entries' id arrays */
/* the newest subtransaction of the current transaction that changed the cache */
static SubTransactionId changed_in = InvalidSubTransactionId;

#define WRITES (&shared->writes[MyDatabaseId % AUDIENCE_SLOTS])

/* the cache is changed (an entry read in, written): its subtransaction noted */
static void
noted_change(void)
{
	SubTransactionId sub = GetCurrentSubTransactionId();

	if (changed_in == InvalidSubTransactionId || sub > changed_in)
		changed_in = sub;
}

void
pz_audience_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(AudienceShared)));
}

void
pz_audience_shmem_startup(void)
{
	bool found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("personalize audiences", sizeof(AudienceShared), &found);
	if (!found)
		for (int i = 0; i < AUDIENCE_SLOTS; i++)
			pg_atomic_init_u64(&shared->writes[i], 0);
	LWLockRelease(AddinShmemInitLock);
}

static void
cache_reset(void)
{
	if (entries != NULL)
		hash_destroy(entries);
	entries = NULL;
	if (cache_cxt != NULL)
		MemoryContextReset(cache_cxt);
}

static void
cache_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (changed_in != InvalidSubTransactionId)
			cache_reset();
		changed_in = InvalidSubTransactionId;
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		changed_in = InvalidSubTransactionId;
}

static void
cache_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid,
					   void *arg)
{
	/*
	 * Subtransactions are numbered in the order they start, so one that
	 * changed the cache and is undone now is this one or a child of it:
	 * what it changed is not told apart, all goes.  (An evaluation's
	 * subtransaction that fails changed nothing.)
	 */
	if (event == SUBXACT_EVENT_ABORT_SUB && changed_in != InvalidSubTransactionId &&
		changed_in >= mySubid)
	{
		cache_reset();
		changed_in = InvalidSubTransactionId;
	}
}

void
pz_audience_cache_start(void)
{
	if (shared == NULL || enabled)
		return;
	enabled = true;
	cache_cxt = AllocSetContextCreate(TopMemoryContext, "personalize audience cache",
									  ALLOCSET_DEFAULT_SIZES);
	RegisterXactCallback(cache_xact_callback, NULL);
	RegisterSubXactCallback(cache_subxact_callback, NULL);
}

/* the oid and file node of personalize.<name>, into t[0..1] */
static void
table_identity(Oid nsp, const char *name, Oid *t)
{
	HeapTuple tup;

	t[0] = get_relname_relid(name, nsp);
	t[1] = InvalidOid;
	if (!OidIsValid(t[0]))
		return;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(t[0]));
	if (HeapTupleIsValid(tup))
	{
		t[1] = ((Form_pg_class) GETSTRUCT(tup))->relfilenode;
		ReleaseSysCache(tup);
	}
}

void
aud_cache_note_lock(void)
{
	Oid tables[4];
	Oid nsp;

	if (shared == NULL)
		return;
	if (!enabled)
	{
		/* another writer: the workers' caches no longer hold */
		pg_atomic_fetch_add_u64(WRITES, 1);
		return;
	}
	/*
	 * The worker, now holding the lock: did anyone else write since, or are
	 * these other tables?  (With the cache turned off, its writes do not
	 * reach the entries either: they must not be found when it is turned on
	 * again.)
	 */
	nsp = get_namespace_oid("personalize", true);
	table_identity(nsp, "audience_memberships", tables);
	table_identity(nsp, "audience_due", tables + 2);
	if (pg_atomic_read_u64(WRITES) != built_under || pz_audience_cache_size <= 0 ||
		memcmp(tables, built_tables, sizeof(tables)) != 0)
	{
		cache_reset();
		built_under = pg_atomic_read_u64(WRITES);
		memcpy(built_tables, tables, sizeof(tables));
	}
}

bool
aud_cache_usable(void)
{
	return enabled && pz_audience_cache_size > 0;
}

AudCacheEntry *
aud_cache_find(int64 profile_id)
{
	if (!aud_cache_usable() || entries == NULL)
		return NULL;
	return hash_search(entries, &profile_id, HASH_FIND, NULL);
}

AudCacheEntry *
aud_cache_enter(int64 profile_id)
{
	AudCacheEntry *e;
	bool found;

	if (!aud_cache_usable())
		return NULL;
	if (entries != NULL && hash_get_num_entries(entries) >= pz_audience_cache_size)
		cache_reset();
	if (entries == NULL)
	{
		HASHCTL info = {0};

		info.keysize = sizeof(int64);
		info.entrysize = sizeof(AudCacheEntry);
		info.hcxt = cache_cxt;
		entries = hash_create("personalize audience cache", 1024, &info,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	noted_change();
	e = hash_search(entries, &profile_id, HASH_ENTER, &found);
	e->due = 0;
	e->n = 0;
	if (!found)
	{
		e->cap = 0;
		e->ids = NULL;
	}
	return e;
}

void
aud_cache_add_member(AudCacheEntry *e, int32 audience_id)
{
	int i;

	for (i = 0; i < e->n; i++)
		if (e->ids[i] == audience_id)
			return;
	if (e->n == e->cap)
	{
		int32 cap = e->cap == 0 ? 4 : e->cap * 2;

		e->ids = e->ids == NULL ? MemoryContextAlloc(cache_cxt, sizeof(int32) * cap)
								: repalloc(e->ids, sizeof(int32) * cap);
		e->cap = cap;
	}
	e->ids[e->n++] = audience_id;
	noted_change();
}

void
aud_cache_set(int64 profile_id, int32 audience_id, bool in)
{
	AudCacheEntry *e = aud_cache_find(profile_id);

	if (e == NULL)
		return;
	noted_change();
	if (in)
	{
		aud_cache_add_member(e, audience_id);
		return;
	}
	for (int i = 0; i < e->n; i++)
		if (e->ids[i] == audience_id)
		{
			e->ids[i] = e->ids[--e->n];
			return;
		}
}

void
aud_cache_set_due(int64 profile_id, TimestampTz due)
{
	AudCacheEntry *e = aud_cache_find(profile_id);

	if (e == NULL)
		return;
	noted_change();
	e->due = due;
}

void
aud_cache_forget(int64 profile_id)
{
	AudCacheEntry *e = aud_cache_find(profile_id);

	if (e == NULL)
		return;
	noted_change();
	if (e->ids != NULL)
		pfree(e->ids);
	(void) hash_search(entries, &profile_id, HASH_REMOVE, NULL);
}

void
aud_cache_clear(void)
{
	if (!enabled)
		return;
	noted_change();
	cache_reset();
}
