/*
 * worker.c
 *	  The streaming worker: one background worker per database named in
 *	  personalize.database, which decodes the WAL through personalize's own
 *	  output plugin (decoder.c) and folds every committed event into its
 *	  profile, exactly once.
 *
 * The loop (worker_stream):
 *
 *	1. Decode.  The worker owns the replication slot personalize_<dboid>
 *	   and drives logical decoding in-process, reading WAL up to what is
 *	   flushed.  The plugin's messages arrive in commit order through
 *	   pz_batch_write() (worker_batch.c).  Each event is folded at once into
 *	   a delta per event key (the event's raw identifiers), with the trait
 *	   kinds' own add functions, so a batch holds one small profile per
 *	   distinct shopper, not its events.  A batch ends at a commit once it
 *	   holds personalize.worker_batch_size events or
 *	   personalize.worker_memory_limit of deltas, or when the WAL runs out.
 *	2. Apply (worker_apply.c), in one transaction: each key's identifiers
 *	   are normalized and resolved (and linked) by the identity core in the
 *	   order the keys first appeared; the key's delta joins its profile's
 *	   delta (merges and re-keys made meanwhile move deltas along, through
 *	   pz_profile_moved_hook); every affected profile is written once by one
 *	   UPDATE that merges the deltas with the same merge code as the
 *	   aggregates; dead letters are inserted.  The transaction carries the
 *	   end LSN of the batch's last transaction as replication origin progress,
 *	   so the profile writes and the progress commit atomically.
 *	3. Only once that commit is flushed is the slot confirmed: WAL is kept
 *	   exactly as long as it may be needed.  (Apply commits are asynchronous;
 *	   see confirm_later.)
 *
 * After a crash the slot restarts at its confirmed position, which is never
 * past the origin's progress; transactions that end at or before the
 * progress were applied and are skipped.  So nothing is lost and nothing is
 * counted twice.  Rebuilds meet the stream at one point: they lock the
 * sources they read and wait (_stream_wait) until the worker has applied
 * everything committed before (docs/streaming.md).
 *
 * Shared memory holds one PzWorkerShared per configured database (worker.h):
 * state and counters for personalize.worker_status, the worker's latch
 * (backends set it when they commit, so a commit is decoded at once), the
 * pause flag and the wait to retry after an error.  The SQL functions that
 * report on, wait for and control the worker are in worker_control.c.
 *
 * This file holds what every backend runs (the settings, the workers'
 * registration, shared memory, the wake-up at commit) and the worker
 * process around its data path: its own state and errors, its replication
 * origin and slot, the first rebuild, the wait to retry after an error, the
 * loop with its reading of the WAL and its confirmation of the slot, and the
 * audiences' time-driven transitions.  The data path itself is
 * worker_batch.c (decoding into the batch and folding) and worker_apply.c
 * (applying the batch); worker_internal.h is what the three share.
 */
#include "postgres.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogutils.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/sinval.h"
#include "storage/spin.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "audience.h"
#include "identity.h"
#include "stream.h"
#include "worker_internal.h"

/* ---- GUCs ---- */
static char *pz_databases = NULL;
int pz_batch_size = 100000;
static int pz_poll_interval = 10;
int pz_memory_limit = 256 * 1024;
static int pz_decoding_memory = 256 * 1024;
int pz_apply_wait_timeout = 60000;
static int pz_worker_cache_size = 1000000;
static int pz_apply_interval = 5;
static int pz_max_backoff = 60000;
static int pz_lock_timeout = 1000;

/* decoder.c: the worker's own origin, whose transactions are not decoded */
extern RepOriginId pz_decoder_skip_origin;
extern bool pz_decoder_replayed;
extern bool pz_decoder_invalidated;

/* the workers' shared state (worker.h) */
PzWorkerControl *pz_worker_control = NULL;
const char *const pz_worker_state_names[] = {
	[WS_STOPPED] = "stopped",
	[WS_STARTING] = "starting",
	[WS_CREATING_SLOT] = "creating slot",
	[WS_STREAMING] = "streaming",
	[WS_IDLE] = "idle",
	[WS_PAUSED] = "paused",
	[WS_BACKING_OFF] = "waiting to retry",
	[WS_WAITING_FOR_LOCK] = "waiting for a lock",
	[WS_REBUILDING] = "rebuilding",
};

/* the databases of personalize.database, parsed */
static List *
database_list(void)
{
	char *raw = pstrdup(pz_databases ? pz_databases : "");
	List *names = NIL;

	if (!SplitIdentifierString(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("personalize.database must be a comma-separated list of database names"),
				 errhint("E.g. personalize.database = 'shop'.")));
	if (list_length(names) > PZ_MAX_WORKERS)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("personalize.database names %d databases, at most %d are streamed",
							   list_length(names), PZ_MAX_WORKERS)));
	return names;
}

void
pz_worker_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(PzWorkerControl)));
}

void
pz_worker_shmem_startup(void)
{
	bool found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pz_worker_control = ShmemInitStruct("personalize workers", sizeof(PzWorkerControl), &found);
	if (!found)
	{
		List *names = database_list();
		ListCell *lc;

		memset(pz_worker_control, 0, sizeof(PzWorkerControl));
		foreach (lc, names)
		{
			PzWorkerShared *w = &pz_worker_control->workers[pz_worker_control->nworkers++];

			SpinLockInit(&w->mutex);
			strlcpy(w->dbname, lfirst(lc), NAMEDATALEN);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The worker of the current database, or NULL. */
PzWorkerShared *
pz_my_database_worker(void)
{
	const char *db;

	if (pz_worker_control == NULL)
		return NULL;
	for (int i = 0; i < pz_worker_control->nworkers; i++)
		if (OidIsValid(pz_worker_control->workers[i].dboid) &&
			pz_worker_control->workers[i].dboid == MyDatabaseId)
			return &pz_worker_control->workers[i];
	db = get_database_name(MyDatabaseId);
	for (int i = 0; i < pz_worker_control->nworkers; i++)
		if (db != NULL && strcmp(pz_worker_control->workers[i].dbname, db) == 0)
			return &pz_worker_control->workers[i];
	return NULL;
}

/*
 * Committing backends wake their database's worker: the commit is decoded at
 * once.  Only a commit already flushed wakes it: the worker decodes flushed
 * WAL only, so an asynchronous commit woke it for nothing, and a stream of
 * them (tens of thousands a second) kept it going to sleep and waking to no
 * use.  The worker flushes asynchronous commits itself, at most every
 * personalize.worker_poll_interval, and decodes them then.
 */
static void
wake_worker_at_commit(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_COMMIT || pz_worker_control == NULL ||
		!TransactionIdIsValid(GetTopTransactionIdIfAny()) ||
		XactLastCommitEnd > GetFlushRecPtr(NULL))
		return;
	for (int i = 0; i < pz_worker_control->nworkers; i++)
	{
		PzWorkerShared *w = &pz_worker_control->workers[i];
		Latch *latch = w->latch;

		if (w->dboid == MyDatabaseId && latch != NULL && w->pid != MyProcPid)
			SetLatch(latch);
	}
}

extern PGDLLEXPORT void pz_worker_main(Datum arg);

void
pz_worker_init(void)
{
	List *names;
	ListCell *lc;
	int i = 0;

	DefineCustomStringVariable(
		"personalize.database",
		"Databases whose registered sources the streaming workers keep in the profiles.",
		"A comma-separated list; one background worker per database, each with its own "
		"replication slot personalize_<database oid>.  Needs wal_level = logical.",
		&pz_databases, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.worker_batch_size",
		"The most events the worker folds into one batch before it writes the profiles.",
		"A batch ends at the commit that reaches this, or when the WAL runs out; a single "
		"transaction is never split.",
		&pz_batch_size, 100000, 1, 10000000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.worker_poll_interval",
		"How long the worker sleeps when it has applied everything, unless a commit wakes it.",
		"A backend whose commit is flushed wakes the worker; asynchronous commits are "
		"flushed by the worker and decoded at the poll.",
		&pz_poll_interval, 10, 1, 60000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.worker_memory_limit",
		"The most memory a batch's profile deltas may take before the worker writes them.",
		"Checked at each commit: one transaction's events are applied together.  Logical "
		"decoding's own buffers are bounded by personalize.worker_decoding_memory.",
		&pz_memory_limit, 256 * 1024, 1024, MAX_KILOBYTES, PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL,
		NULL);
	DefineCustomIntVariable(
		"personalize.worker_decoding_memory",
		"The memory logical decoding may take in the worker before it spills changes to disk.",
		"The worker's logical_decoding_work_mem.  Decoding holds a transaction's changes until "
		"its commit; a transaction larger than this is written to files under pg_replslot and "
		"read back, which took most of the worker's time for a 1 M-row COPY at 64 MB.",
		&pz_decoding_memory, 256 * 1024, 64, MAX_KILOBYTES, PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL,
		NULL);
	DefineCustomIntVariable(
		"personalize.worker_apply_interval",
		"The least time between two of the worker's apply transactions while events trickle in.",
		"Single-row commits would otherwise each get an apply transaction of their own, whose "
		"WAL flushes compete with the writers' commits.  A full batch is applied at once.",
		&pz_apply_interval, 5, 0, 10000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.worker_identity_cache_size",
		"Identifiers the worker keeps in its identity cache, and profile row positions it "
		"remembers.",
		"The worker resolves every event's identifiers: a cache holding the active ones spares "
		"an index probe per identifier.  About 100 bytes each; it takes the place of "
		"personalize.identity_cache_size in the worker.  As many profiles' row positions "
		"(about 50 bytes each) spare an index probe per profile write.",
		&pz_worker_cache_size, 1000000, 0, 100000000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.worker_max_backoff",
		"The longest the worker waits before it tries again after an error stopped it.",
		"After an error the worker waits 1 s, then twice as long after each failure in a row, "
		"up to this; once it has applied everything there was, the next failure waits 1 s "
		"again.  worker_start() and worker_restart() end a wait.",
		&pz_max_backoff, 60000, 1000, 3600000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.worker_lock_timeout",
		"The longest the worker waits at once for a lock another transaction holds.",
		"The worker's lock_timeout.  When it passes, the worker shows the wait in "
		"worker_status (state 'waiting for a lock', last_error) and tries the batch again, so "
		"a long transaction that holds the identity graph or a profile row delays the stream "
		"visibly and loses nothing.  Read when the worker starts.",
		&pz_lock_timeout, 1000, 10, 600000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.apply_wait_timeout",
		"How long a rebuild waits for the worker to apply what was committed before it.",
		"rebuild(), drop_trait() and changed traits lock their sources, then wait for the "
		"stream to reach them; past this they fail with an error.",
		&pz_apply_wait_timeout, 60000, 0, INT_MAX, PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	RegisterXactCallback(wake_worker_at_commit, NULL);
	names = database_list();
	foreach (lc, names)
	{
		BackgroundWorker bgw = {0};

		bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
		bgw.bgw_restart_time = 1;
		strlcpy(bgw.bgw_library_name, "personalize", BGW_MAXLEN);
		strlcpy(bgw.bgw_function_name, "pz_worker_main", BGW_MAXLEN);
		snprintf(bgw.bgw_name, BGW_MAXLEN, "personalize worker for %s", (char *) lfirst(lc));
		strlcpy(bgw.bgw_type, "personalize worker", BGW_MAXLEN);
		bgw.bgw_main_arg = Int32GetDatum(i++);
		RegisterBackgroundWorker(&bgw);
	}
}

/* ---- the worker's own state ---- */

PzWorkerShared *pz_worker_me = NULL;
static char slot_name[NAMEDATALEN];
static RepOriginId origin_id = InvalidRepOriginId;
XLogRecPtr pz_worker_origin_progress = InvalidXLogRecPtr;

void
pz_worker_set_state(WorkerState s)
{
	SpinLockAcquire(&pz_worker_me->mutex);
	pz_worker_me->state = s;
	SpinLockRelease(&pz_worker_me->mutex);
	pgstat_report_activity(STATE_RUNNING, pz_worker_state_names[s]);
}

static void
worker_detach(int code, Datum arg)
{
	if (pz_worker_me == NULL)
		return;
	SpinLockAcquire(&pz_worker_me->mutex);
	pz_worker_me->pid = 0;
	pz_worker_me->latch = NULL;
	pz_worker_me->state = WS_STOPPED;
	SpinLockRelease(&pz_worker_me->mutex);
}

void
pz_worker_record_error(const char *msg)
{
	SpinLockAcquire(&pz_worker_me->mutex);
	strlcpy(pz_worker_me->last_error, msg, sizeof(pz_worker_me->last_error));
	pz_worker_me->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&pz_worker_me->mutex);
}

/* ---- the loop ---- */

/*
 * The worker reads WAL only up to read_limit, a flushed position: a record
 * that crosses it (the WAL writer flushes whole pages) is read in a later
 * round, instead of waiting inside read_local_xlog_page for someone to flush
 * the rest while the batch decoded so far waits to be applied.
 */
static XLogRecPtr read_limit = InvalidXLogRecPtr;
static bool read_blocked = false;
static TimestampTz last_forced_flush = 0;
static bool read_all_flushed = true;
static TimestampTz last_apply = 0;
static bool applied_since_decoding = false;

/*
 * Catalog caches serve both decoding (historic snapshots) and the apply
 * (the present): an entry read for one may be wrong for the other if the
 * catalogs changed in between.  So when the worker switches from one to the
 * other it empties them, unless no catalog changed at all meanwhile: no
 * invalidation message reached this process (SharedInvalidMessageCounter)
 * and decoding replayed no catalog change (the decoder's relcache callback
 * did not fire).  Emptying them for every batch would cost a reload of
 * every entry the worker uses, many times a second.
 */
static uint64 inval_counter_seen = 0;

static void
caches_switch(void)
{
	if (SharedInvalidMessageCounter != inval_counter_seen || pz_decoder_invalidated)
		InvalidateSystemCaches();
	inval_counter_seen = SharedInvalidMessageCounter;
	pz_decoder_invalidated = false;
}

static int
worker_read_page(XLogReaderState *state, XLogRecPtr targetPagePtr, int reqLen,
				 XLogRecPtr targetRecPtr, char *cur_page)
{
	if (targetPagePtr + reqLen > read_limit)
	{
		read_blocked = true;
		return -1;
	}
	return read_local_xlog_page(state, targetPagePtr, reqLen, targetRecPtr, cur_page);
}

/*
 * The slot is confirmed only once the apply transaction holding what it
 * confirms is flushed.  Apply transactions commit asynchronously (the
 * worker would otherwise add an fsync of its own to every batch, competing
 * with the writers' commits), so confirmations wait here, in order, for the
 * WAL to be flushed past their commit: by the writers' commits, the WAL
 * writer, or the worker's own flush at most every poll interval.
 */
#define CONFIRM_QUEUE 256

static struct
{
	XLogRecPtr commit_end; /* InvalidXLogRecPtr: nothing to wait for */
	XLogRecPtr confirm;
} confirm_queue[CONFIRM_QUEUE];
static int confirm_head = 0, confirm_count = 0;

static void
confirm_flushed(bool force)
{
	XLogRecPtr flushed;

	if (force && confirm_count > 0)
	{
		int last = (confirm_head + confirm_count - 1) % CONFIRM_QUEUE;

		if (!XLogRecPtrIsInvalid(confirm_queue[last].commit_end))
			XLogFlush(confirm_queue[last].commit_end);
	}
	flushed = GetFlushRecPtr(NULL);
	while (confirm_count > 0)
	{
		XLogRecPtr end = confirm_queue[confirm_head].commit_end;

		if (!XLogRecPtrIsInvalid(end) && end > flushed)
			break;
		LogicalConfirmReceivedLocation(confirm_queue[confirm_head].confirm);
		confirm_head = (confirm_head + 1) % CONFIRM_QUEUE;
		confirm_count--;
	}
}

static void
confirm_later(XLogRecPtr commit_end, XLogRecPtr confirm)
{
	if (confirm_count == CONFIRM_QUEUE)
		confirm_flushed(true);
	confirm_queue[(confirm_head + confirm_count) % CONFIRM_QUEUE].commit_end = commit_end;
	confirm_queue[(confirm_head + confirm_count) % CONFIRM_QUEUE].confirm = confirm;
	confirm_count++;
	confirm_flushed(false);
}

/*
 * The end of the WAL inserted so far, as a position XLogFlush accepts: at
 * the start of a page, GetXLogInsertRecPtr() points past the page header,
 * which is not written until a record follows.
 */
XLogRecPtr
pz_wal_insert_end(void)
{
	XLogRecPtr p = GetXLogInsertRecPtr();
	uint32 off = p % XLOG_BLCKSZ;

	if (off == SizeOfXLogShortPHD ||
		(off == SizeOfXLogLongPHD && XLogSegmentOffset(p, wal_segment_size) == SizeOfXLogLongPHD))
		p -= off;
	return p;
}

/* the worker's own values of settings it shares with other processes */
static void
worker_settings(void)
{
	char size[32];

	snprintf(size, sizeof(size), "%d", pz_worker_cache_size);
	SetConfigOption("personalize.identity_cache_size", size, PGC_SUSET, PGC_S_OVERRIDE);
	/* read by the reorder buffer at every change: a reload takes effect at once */
	snprintf(size, sizeof(size), "%d", pz_decoding_memory);
	SetConfigOption("logical_decoding_work_mem", size, PGC_SUSET, PGC_S_OVERRIDE);
}

static void
worker_sighup(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		worker_settings();
	}
}

/*
 * Some PostgreSQL builds accept only the output plugins listed in
 * output_plugin_libraries; the worker (a superuser) adds its own for its
 * session.  Elsewhere the setting does not exist and nothing is needed.
 */
static void
allow_own_output_plugin(void)
{
	const char *allowed = GetConfigOption("output_plugin_libraries", true, false);
	List *names = NIL;
	char *copy;
	ListCell *lc;

	if (allowed == NULL)
		return;
	copy = pstrdup(allowed);
	if (SplitIdentifierString(copy, ',', &names))
		foreach (lc, names)
			if (strcmp(lfirst(lc), "personalize") == 0)
				return;
	SetConfigOption("output_plugin_libraries",
					allowed[0] ? psprintf("%s, personalize", allowed) : "personalize", PGC_SUSET,
					PGC_S_OVERRIDE);
}

static bool
ensure_origin_and_slot(void)
{
	bool new_slot;

	allow_own_output_plugin();
	snprintf(slot_name, sizeof(slot_name), "personalize_%u", MyDatabaseId);
	new_slot = SearchNamedReplicationSlot(slot_name, true) == NULL;

	/*
	 * A new slot starts a new stream: the progress of an old one (its slot
	 * dropped or lost) means nothing for it, so the origin starts afresh
	 * too, with no progress, which is what asks for the rebuild below until
	 * one commits.
	 */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	origin_id = replorigin_by_name(slot_name, true);
	if (new_slot && origin_id != InvalidRepOriginId)
	{
		replorigin_drop_by_name(slot_name, true, false);
		origin_id = InvalidRepOriginId;
	}
	if (origin_id == InvalidRepOriginId)
		origin_id = replorigin_create(slot_name);
	CommitTransactionCommand();
	replorigin_session_setup(origin_id);
	replorigin_session_origin = origin_id;
	pz_worker_origin_progress = replorigin_session_get_progress(false);
	pz_decoder_skip_origin = origin_id;

	if (new_slot)
	{
		LogicalDecodingContext *ctx;

		pz_worker_set_state(WS_CREATING_SLOT);
		CheckSlotRequirements();
		CheckLogicalDecodingRequirements();
		ReplicationSlotCreate(slot_name, true, RS_EPHEMERAL, false);
		ctx = CreateInitDecodingContext("personalize", NIL, false, InvalidXLogRecPtr,
										XL_ROUTINE(.page_read = read_local_xlog_page,
												   .segment_open = wal_segment_open,
												   .segment_close = wal_segment_close),
										NULL, NULL, NULL);
		DecodingContextFindStartpoint(ctx);
		FreeDecodingContext(ctx);
		ReplicationSlotPersist();
		ReplicationSlotRelease();
		ereport(LOG, (errmsg("personalize worker: created replication slot \"%s\"", slot_name)));
		return true;
	}
	return false;
}

/*
 * A new slot streams what commits after its consistent point.  Sources
 * registered before that may have rows the stream never sees, so the worker
 * rebuilds every profile once, with the sources locked, and records the WAL
 * position of that moment as its progress: transactions that committed
 * before are in the rebuild and skipped by the stream, later ones are
 * streamed.  Nothing to do when no source is registered yet (the usual
 * case: the worker starts before CREATE EXTENSION).
 *
 * The need is durable: it is an origin without progress (a new slot's
 * origin starts without), and the rebuild's commit records the fence as the
 * progress.  A rebuild that fails leaves the origin without progress, so
 * the worker, started again after its wait, rebuilds before it streams,
 * until one commits; meanwhile worker_status shows the error, and the wait
 * functions, which wait for the stream, do not return true.  (When sources
 * were registered after a new slot was made and the worker restarts before
 * its first apply, it rebuilds too: not needed, and exact all the same.)
 */
static void
initial_rebuild(void)
{
	bool needed = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(get_extension_oid("personalize", true)))
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "personalize worker: SPI_connect failed");
		if (SPI_execute("SELECT 1 FROM personalize.sources LIMIT 1", true, 1) != SPI_OK_SELECT)
			elog(ERROR, "personalize worker: could not read personalize.sources");
		needed = SPI_processed > 0;
		if (needed)
		{
			XLogRecPtr fence;

			ereport(LOG, (errmsg("personalize worker: the slot starts after sources were "
								 "registered: rebuilding every profile once")));
			pz_worker_set_state(WS_REBUILDING);
			PG_TRY();
			{
				if (SPI_execute(
						"SELECT personalize._quiesce(NULL, 'the worker''s first rebuild', false)",
						false, 0) != SPI_OK_SELECT)
					elog(ERROR, "personalize worker: could not lock the sources");
				fence = GetXLogInsertRecPtr();
				PopActiveSnapshot();
				PushActiveSnapshot(GetTransactionSnapshot());
				if (SPI_execute("SELECT personalize._rebuild(NULL, NULL, NULL)", false, 0) !=
					SPI_OK_SELECT)
					elog(ERROR, "personalize worker: the first rebuild failed");
			}
			PG_CATCH();
			{
				/* say what failed: the worker tries again after its wait */
				ErrorData *err;

				MemoryContextSwitchTo(TopTransactionContext);
				err = CopyErrorData();
				FlushErrorState();
				err->message = psprintf("the worker's first rebuild failed (profiles are "
										"incomplete until it succeeds): %s",
										err->message);
				ReThrowError(err);
			}
			PG_END_TRY();
			replorigin_session_origin_lsn = fence;
			replorigin_session_origin_timestamp = GetCurrentTimestamp();
			pz_worker_origin_progress = fence;
		}
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	replorigin_session_origin_lsn = InvalidXLogRecPtr;
	replorigin_session_origin_timestamp = 0;
}

/*
 * After an exit on an error, wait before trying again: 1 s, then twice as
 * long after each failure in a row, at most personalize.worker_max_backoff.
 * An error that comes back at every start (a catalog it cannot read, a
 * slot it cannot use) then costs a try now and then, not a restart per
 * second, and worker_status says what failed, when, and when it tries
 * again.  worker_start() and worker_restart() end the wait.
 */
static void
worker_back_off(void)
{
	int failures;
	long delay_ms;
	TimestampTz until;

	SpinLockAcquire(&pz_worker_me->mutex);
	failures = pz_worker_me->failures_in_row;
	pz_worker_me->retry_now = false;
	SpinLockRelease(&pz_worker_me->mutex);
	if (failures == 0)
		return;
	delay_ms = Min(1000L << Min(failures - 1, 20), (long) pz_max_backoff);
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
	ereport(LOG, (errmsg("personalize worker: failed %d time%s in a row; trying again in %ld ms",
						 failures, failures == 1 ? "" : "s", delay_ms)));
	SpinLockAcquire(&pz_worker_me->mutex);
	pz_worker_me->state = WS_BACKING_OFF;
	pz_worker_me->retry_at = until;
	SpinLockRelease(&pz_worker_me->mutex);
	for (;;)
	{
		long left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		bool now;

		SpinLockAcquire(&pz_worker_me->mutex);
		now = pz_worker_me->retry_now;
		SpinLockRelease(&pz_worker_me->mutex);
		if (left <= 0 || now)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
	SpinLockAcquire(&pz_worker_me->mutex);
	pz_worker_me->state = WS_STARTING;
	pz_worker_me->retry_at = 0;
	SpinLockRelease(&pz_worker_me->mutex);
}

/* streaming went well: the next failure waits the shortest time again */
static void
worker_healthy(void)
{
	if (pz_worker_me->failures_in_row == 0)
		return;
	SpinLockAcquire(&pz_worker_me->mutex);
	pz_worker_me->failures_in_row = 0;
	SpinLockRelease(&pz_worker_me->mutex);
}

static void
update_rate(uint64 *last_events, TimestampTz *last_at)
{
	TimestampTz now = GetCurrentTimestamp();
	long secs;
	int usecs;

	TimestampDifference(*last_at, now, &secs, &usecs);
	if (secs >= 1)
	{
		double elapsed = secs + usecs / 1e6;

		SpinLockAcquire(&pz_worker_me->mutex);
		pz_worker_me->events_per_second = (pz_worker_me->events_applied - *last_events) / elapsed;
		*last_events = pz_worker_me->events_applied;
		SpinLockRelease(&pz_worker_me->mutex);
		*last_at = now;
	}
}

/* ---- audiences: the passing of time ---- */

static TimestampTz last_expiry = 0;

/*
 * Profiles whose audiences' moment has come with no new event
 * (pz_audiences_due), and audience events past their retention once a
 * minute (or once per retention, if shorter): in a transaction of their own, between batches.  A lock held by
 * another writer of memberships is waited for as the apply waits; the
 * next loop tries again.
 */
static void
apply_time_transitions(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool due = pz_audiences_due(now);
	/* once a minute, or once per retention if that is shorter */
	bool expire =
		pz_audience_retention > 0 &&
		TimestampDifferenceExceeds(last_expiry, now, 1000 * Min(60, pz_audience_retention));
	MemoryContext cxt, old;

	if (!due && !expire)
		return;
	cxt = AllocSetContextCreate(TopMemoryContext, "personalize time", ALLOCSET_SMALL_SIZES);
	old = CurrentMemoryContext;
	pz_set_in_logical_decoding(false);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		uint64 changes = 0;

		PushActiveSnapshot(GetTransactionSnapshot());
		if (due)
			changes = pz_audiences_apply_due(Min(pz_batch_size, 2000));
		if (expire)
			(void) pz_audiences_expire_events(10000);
		PopActiveSnapshot();
		CommitTransactionCommand();
		last_expiry = expire ? now : last_expiry;
		SpinLockAcquire(&pz_worker_me->mutex);
		pz_worker_me->audience_changes += changes;
		SpinLockRelease(&pz_worker_me->mutex);
	}
	PG_CATCH();
	{
		ErrorData *err;

		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		if (err->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			PG_RE_THROW();
		FlushErrorState();
		AbortCurrentTransaction();
		pz_wait_for_lock_holder(err->message);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	pz_set_in_logical_decoding(true);
	applied_since_decoding = true;
}

static void
worker_stream(void)
{
	LogicalDecodingContext *ctx;
	uint64 rate_events = 0;
	TimestampTz rate_at = GetCurrentTimestamp();

	ReplicationSlotAcquire(slot_name, true);
	ctx = CreateDecodingContext(InvalidXLogRecPtr, NIL, false,
								XL_ROUTINE(.page_read = worker_read_page,
										   .segment_open = wal_segment_open,
										   .segment_close = wal_segment_close),
								pz_batch_prepare_write, pz_batch_write, NULL);
	XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);
	InvalidateSystemCaches();

	pz_batch_init();
	pz_worker_set_state(WS_STREAMING);

	for (;;)
	{
		XLogRecPtr end_of_wal, insert_end, commit_end;
		bool paused, caught_up = false;

		CHECK_FOR_INTERRUPTS();
		worker_sighup();
		SpinLockAcquire(&pz_worker_me->mutex);
		paused = pz_worker_me->paused;
		SpinLockRelease(&pz_worker_me->mutex);
		if (paused)
		{
			pz_worker_set_state(WS_PAUSED);
			confirm_flushed(true);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		/*
		 * 1. decode what is flushed, up to a full batch.  WAL written but not
		 * flushed (asynchronous commits, this worker's own commits) is
		 * flushed here once the worker has read everything else, at most
		 * once per poll interval: so asynchronous commits are decoded within
		 * about that, and the worker adds no fsync to every batch.
		 */
		end_of_wal = GetFlushRecPtr(NULL);
		insert_end = pz_wal_insert_end();
		if (insert_end > end_of_wal && read_all_flushed &&
			TimestampDifferenceExceeds(last_forced_flush, GetCurrentTimestamp(), pz_poll_interval))
		{
			XLogFlush(insert_end);
			last_forced_flush = GetCurrentTimestamp();
			end_of_wal = GetFlushRecPtr(NULL);
		}
		read_limit = end_of_wal;
		if (applied_since_decoding)
		{
			caches_switch();
			applied_since_decoding = false;
		}
		while (!pz_batch.full)
		{
			char *errm = NULL;
			XLogRecord *record;

			if (ctx->reader->EndRecPtr >= read_limit)
			{
				caught_up = true;
				break;
			}
			record = XLogReadRecord(ctx->reader, &errm);
			if (record == NULL && read_blocked)
			{
				/* the next record is not flushed to its end yet: again from it later */
				read_blocked = false;
				XLogBeginRead(ctx->reader, ctx->reader->EndRecPtr);
				caught_up = true;
				break;
			}
			if (record == NULL)
				elog(ERROR, "personalize worker: could not read WAL for decoding: %s",
					 errm ? errm : "no record");
			LogicalDecodingProcessRecord(ctx, ctx->reader);
			CHECK_FOR_INTERRUPTS();
		}

		/*
		 * 2. apply, 3. confirm once the apply's commit is flushed.  While
		 * events trickle in, a batch waits until personalize.
		 * worker_apply_interval has passed since the last apply, gathering
		 * what commits meanwhile.
		 */
		commit_end = InvalidXLogRecPtr;
		if (pz_batch.txns > 0 || pz_batch.dead != NIL ||
			pz_batch.updates + pz_batch.deletes + pz_batch.truncates > 0)
		{
			long wait_ms = 0;

			if (!pz_batch.full && caught_up && pz_apply_interval > 0)
			{
				long secs;
				int usecs;

				TimestampDifference(last_apply, GetCurrentTimestamp(), &secs, &usecs);
				wait_ms = pz_apply_interval - (secs * 1000 + usecs / 1000);
			}
			if (wait_ms > 0)
			{
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms,
								 PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				read_all_flushed = true;
				continue;
			}
			if (pz_decoder_replayed)
			{
				caches_switch();
				pz_decoder_replayed = false;
			}
			pz_worker_set_state(WS_STREAMING);
			commit_end = pz_apply_batch();
			applied_since_decoding = true;
			/* table statistics, so that autovacuum sees the profiles' updates */
			pgstat_report_stat(false);
			last_apply = GetCurrentTimestamp();
		}
		if (!pz_batch.in_txn)
		{
			XLogRecPtr done = ctx->reader->EndRecPtr;

			confirm_later(commit_end, done);
			SpinLockAcquire(&pz_worker_me->mutex);
			if (caught_up && done >= end_of_wal)
				pz_worker_me->decoded_lsn = end_of_wal;
			else if (done > pz_worker_me->decoded_lsn)
				pz_worker_me->decoded_lsn = done;
			SpinLockRelease(&pz_worker_me->mutex);
		}
		pz_batch_reset();
		update_rate(&rate_events, &rate_at);
		/* 4. audiences whose moment has come */
		apply_time_transitions();
		/* everything flushed was read (to the end, or up to a record not flushed to its end) */
		read_all_flushed = caught_up;

		if (caught_up && GetFlushRecPtr(NULL) <= read_limit)
		{
			/* everything there was is applied: the worker is well */
			worker_healthy();
			pgstat_report_stat(true);
			pz_worker_set_state(WS_IDLE);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 pz_poll_interval, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}

/*
 * Keep freed memory in the process for the next batch.  A batch allocates
 * up to personalize.worker_memory_limit of deltas and frees it all when it
 * ends; glibc would hand those blocks back to the kernel, and every batch
 * then faulted its memory in again, page by page, zeroed (13% of the
 * worker's profile while it drained a backlog).  The worker's resident
 * memory stays at its largest batch's instead, which the limit (as it was
 * when the worker started) bounds.
 */
static void
worker_keep_freed_memory(void)
{
#if defined(__GLIBC__) && defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
	int64 limit = (int64) pz_memory_limit * 1024;

	/* blocks up to 32 MB (AllocSet's own are at most 8 MB) come from the heap */
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, (int) Min(limit, (int64) PG_INT32_MAX));
#endif
}

void
pz_worker_main(Datum arg)
{
	int idx = DatumGetInt32(arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	pz_worker_me = &pz_worker_control->workers[idx];
	BackgroundWorkerInitializeConnection(pz_worker_me->dbname, NULL, 0);
	pgstat_report_appname("personalize worker");
	/* apply commits are asynchronous: the slot is confirmed once they are flushed */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* no wait for a lock is unbounded: the apply reports it and tries again */
	SetConfigOption("lock_timeout", psprintf("%d", pz_lock_timeout), PGC_SUSET, PGC_S_OVERRIDE);
	worker_settings();
	worker_keep_freed_memory();
	pz_profile_places = true;
	pz_audience_cache_start();

	SpinLockAcquire(&pz_worker_me->mutex);
	pz_worker_me->dboid = MyDatabaseId;
	pz_worker_me->pid = MyProcPid;
	pz_worker_me->latch = MyLatch;
	pz_worker_me->state = WS_STARTING;
	pz_worker_me->started_at = GetCurrentTimestamp();
	SpinLockRelease(&pz_worker_me->mutex);
	before_shmem_exit(worker_detach, (Datum) 0);
	worker_back_off();

	/*
	 * The slot comes first, before the extension may even exist: every
	 * source registered later is streamed from its registration on.
	 */
	PG_TRY();
	{
		(void) ensure_origin_and_slot();
		if (XLogRecPtrIsInvalid(pz_worker_origin_progress))
			initial_rebuild();
		worker_stream();
	}
	PG_CATCH();
	{
		ErrorData *err;

		HOLD_INTERRUPTS();
		err = CopyErrorData();
		pz_worker_record_error(err->message);
		/* the next start waits first, longer each time it fails again */
		SpinLockAcquire(&pz_worker_me->mutex);
		pz_worker_me->restarts++;
		pz_worker_me->failures_in_row++;
		SpinLockRelease(&pz_worker_me->mutex);
		RESUME_INTERRUPTS();
		PG_RE_THROW();
	}
	PG_END_TRY();
}
