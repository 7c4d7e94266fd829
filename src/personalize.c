/*
 * personalize.c
 *	  Module entry point: the magic block, _PG_init and the extension's GUCs.
 *
 * The library is meant to be loaded through shared_preload_libraries so that
 * the streaming workers (worker.c) register at postmaster start; the same
 * library is the logical decoding output plugin (decoder.c).  Trait-state types and aggregates work
 * whether or not the library was preloaded: _PG_init then runs when the
 * first function is called.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/inval.h"

#include "audience.h"
#include "identity.h"
#include "profile_scan.h"
#include "state.h"
#include "stream.h"

PG_MODULE_MAGIC;

/* personalize.max_value_bytes: the longest value an event may bring */
int pz_max_value_bytes = 2048;

void _PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
pz_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	pz_identity_shmem_request();
	pz_audience_shmem_request();
	pz_worker_shmem_request();
}

static void
pz_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	pz_identity_shmem_startup();
	pz_audience_shmem_startup();
	pz_worker_shmem_startup();
}

/*
 * Every relcache invalidation, passed to the caches that care.  One
 * callback for all of them: PostgreSQL 15 gives a backend ten, its own plan,
 * type and relfilenode caches take three, and Citus five.
 */
static void
relcache_changed(Datum arg, Oid relid)
{
	pz_audience_relcache_changed(relid);
	pz_identity_relcache_changed(relid);
	pz_decoder_relcache_changed(relid);
}

void
_PG_init(void)
{
	DefineCustomIntVariable(
		"personalize.max_value_bytes",
		"The longest value, in bytes, an event may add to a trait state.",
		"Bounds the memory of every state: recent and top keep at most 1000 values of this size. "
		"Longer values are refused with an error; text and binary input of stored states are not "
		"limited, so dumps always restore.",
		&pz_max_value_bytes, 2048, 16, 1024 * 1024, PGC_USERSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.identity_cache_size",
		"Identifiers (and profile keys) each backend keeps in its identity cache.",
		"The cache maps identifiers to profile ids in front of personalize.identities, in two "
		"generations of half this size each: entries in use stay, others age out.  0 turns it "
		"off.  It needs shared_preload_libraries, which lets backends learn of merges, splits "
		"and forgets made by others.",
		&pz_identity_cache_size, 100000, 0, 100000000, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.components_memory_limit",
		"The most memory connected_components may use for its graph.",
		"About 40 bytes per identifier plus the identifiers' text.  The output is not counted: "
		"it spills to disk like any function result.",
		&pz_components_memory_limit, 1024 * 1024, 1024, MAX_KILOBYTES, PGC_USERSET, GUC_UNIT_KB,
		NULL, NULL, NULL);
	/* the streaming worker's GUCs; its registration when preloaded */
	pz_worker_init();
	pz_audience_init();
	pz_profile_scan_init();
	pz_profile_columns_scan_init();
	CacheRegisterRelcacheCallback(relcache_changed, (Datum) 0);
	MarkGUCPrefixReserved("personalize");

	/*
	 * Shared memory only when preloaded: caches then learn of changes made
	 * by other backends; otherwise they stay off.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = pz_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = pz_shmem_startup;
	}
}
