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
 * empties it.  (drop_audience deletes the dropped audience's memberships
 * before it takes the lock: entries of an audience that no longer exists
 * are never read, since a run looks only at its audiences' ids.)
 *
 * Bounded by personalize.audience_cache_size profiles: a full cache is
 * emptied and filled again.  Without shared_preload_libraries there is no
 * count and no cache; other backends never use it.
 */
#include "postgres.h"

#include "access/xact.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "audience_internal.h"

int pz_audience_cache_size = 250000;

typedef struct AudienceShared
{
	pg_atomic_uint64 writes; /* membership writes by processes other than a worker */
} AudienceShared;

static AudienceShared *shared = NULL;
static bool enabled = false;           /* this process is a streaming worker */
static uint64 built_under = 0;         /* the count the cache reflects */
static HTAB *entries = NULL;           /* profile id -> AudCacheEntry */
static MemoryContext cache_cxt = NULL; /* the entries' id arrays */
static bool changed_in_xact = false;   /* changed by the current transaction */

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
		pg_atomic_init_u64(&shared->writes, 0);
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
		if (changed_in_xact)
			cache_reset();
		changed_in_xact = false;
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		changed_in_xact = false;
}

static void
cache_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid,
					   void *arg)
{
	/* what the aborted subtransaction changed is not told apart: all goes */
	if (event == SUBXACT_EVENT_ABORT_SUB && changed_in_xact)
		cache_reset();
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

void
aud_cache_note_lock(void)
{
	if (shared == NULL)
		return;
	if (!enabled)
	{
		/* another writer: the workers' caches no longer hold */
		pg_atomic_fetch_add_u64(&shared->writes, 1);
		return;
	}
	/*
	 * The worker, now holding the lock: did anyone else write since?  (With
	 * the cache turned off, its writes do not reach the entries either: they
	 * must not be found when it is turned on again.)
	 */
	if (pg_atomic_read_u64(&shared->writes) != built_under || pz_audience_cache_size <= 0)
	{
		cache_reset();
		built_under = pg_atomic_read_u64(&shared->writes);
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
	changed_in_xact = true;
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
	changed_in_xact = true;
}

void
aud_cache_set(int64 profile_id, int32 audience_id, bool in)
{
	AudCacheEntry *e = aud_cache_find(profile_id);

	if (e == NULL)
		return;
	changed_in_xact = true;
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
	changed_in_xact = true;
	e->due = due;
}

void
aud_cache_forget(int64 profile_id)
{
	AudCacheEntry *e = aud_cache_find(profile_id);

	if (e == NULL)
		return;
	changed_in_xact = true;
	if (e->ids != NULL)
		pfree(e->ids);
	(void) hash_search(entries, &profile_id, HASH_REMOVE, NULL);
}

void
aud_cache_clear(void)
{
	if (!enabled)
		return;
	changed_in_xact = true;
	cache_reset();
}
