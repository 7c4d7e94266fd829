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
 *	   worker_write().  Each event is folded at once into a delta per event
 *	   key (the event's raw identifiers), with the trait kinds' own add
 *	   functions, so a batch holds one small profile per distinct shopper,
 *	   not its events.  A batch ends at a commit once it holds
 *	   personalize.worker_batch_size events or personalize.worker_memory_limit
 *	   of deltas, or when the WAL runs out.
 *	2. Apply, in one transaction: each key's identifiers are normalized and
 *	   resolved (and linked) by the identity core in the order the keys first
 *	   appeared; the key's delta joins its profile's delta (merges and
 *	   re-keys made meanwhile move deltas along, through
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
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "common/hashfn.h"
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
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/sinval.h"
#include "storage/spin.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "audience.h"
#include "distinct.h"
#include "firstlast.h"
#include "field.h"
#include "identity.h"
#include "metric.h"
#include "profile.h"
#include "recent.h"
#include "session.h"
#include "state.h"
#include "stream.h"
#include "top.h"
#include "windowed.h"
#include "worker.h"

/* ---- GUCs ---- */
static char *pz_databases = NULL;
static int pz_batch_size = 100000;
static int pz_poll_interval = 10;
static int pz_memory_limit = 256 * 1024;
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

/* Committing backends wake their database's worker: the commit is decoded at once. */
static void
wake_worker_at_commit(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_COMMIT || pz_worker_control == NULL ||
		!TransactionIdIsValid(GetTopTransactionIdIfAny()))
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
		"Backends wake the worker when they commit; the poll catches asynchronous commits "
		"that the WAL writer flushes later.",
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

static PzWorkerShared *me = NULL;
static char slot_name[NAMEDATALEN];
static RepOriginId origin_id = InvalidRepOriginId;
static XLogRecPtr origin_progress = InvalidXLogRecPtr;

static void
set_state(WorkerState s)
{
	SpinLockAcquire(&me->mutex);
	me->state = s;
	SpinLockRelease(&me->mutex);
	pgstat_report_activity(STATE_RUNNING, pz_worker_state_names[s]);
}

static void
worker_detach(int code, Datum arg)
{
	if (me == NULL)
		return;
	SpinLockAcquire(&me->mutex);
	me->pid = 0;
	me->latch = NULL;
	me->state = WS_STOPPED;
	SpinLockRelease(&me->mutex);
}

static void
record_error(const char *msg)
{
	SpinLockAcquire(&me->mutex);
	strlcpy(me->last_error, msg, sizeof(me->last_error));
	me->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&me->mutex);
}

/* ---- the batch ---- */

/* an event key: the raw identifiers of an event, as the plugin sends them */
typedef struct KeyRef
{
	uint32 hash;
	int32 len;
	const char *bytes; /* (varint namespace id, value) per identifier */
} KeyRef;

typedef struct KeyEntry
{
	KeyRef key; /* hash key; bytes copied into the batch */
	int32 order;
	int32 nids;
	int64 events;
	int32 source_id;
	TimestampTz first_seen;
	TimestampTz last_seen;
	Profile *delta;
	XLogRecPtr commit_lsn;
	TimestampTz commit_time;
	char *first_message; /* for a dead letter */
	int32 first_message_len;
} KeyEntry;

typedef struct DeadLetter
{
	int32 source_id;
	XLogRecPtr commit_lsn;
	TimestampTz commit_time;
	bool applied;
	int64 events;
	char *reason;
	char *message; /* a plugin message, rendered as the event */
	int32 message_len;
	char *event_json; /* or the event as JSON already */
} DeadLetter;

typedef struct Batch
{
	MemoryContext cxt;
	MemoryContext event_cxt; /* an event's scratch (parsed numbers), reset per event */
	HTAB *keys;
	int32 nkeys;
	int64 events;
	int64 txns;
	List *dead; /* of DeadLetter */
	uint64 updates, deletes, truncates;
	/* the transaction being decoded */
	bool in_txn;
	bool skip_txn;
	XLogRecPtr txn_commit_lsn;
	XLogRecPtr txn_end_lsn;
	TimestampTz txn_commit_time;
	/* the last complete transaction */
	XLogRecPtr last_end_lsn;
	TimestampTz last_commit_time;
	bool full;
} Batch;

static Batch batch;
static MemoryContext config_cxt = NULL;
static StreamTrait *traits = NULL;
static char **trait_problems = NULL; /* per trait: why its parameters cannot be used, or NULL */
static int ntraits = 0;

static uint32
key_hash(const void *key, Size keysize)
{
	return ((const KeyRef *) key)->hash;
}

static int
key_match(const void *a, const void *b, Size keysize)
{
	const KeyRef *x = a, *y = b;

	return !(x->hash == y->hash && x->len == y->len && memcmp(x->bytes, y->bytes, x->len) == 0);
}

static void
batch_reset(void)
{
	HASHCTL info = {0};

	MemoryContextReset(batch.cxt);
	info.keysize = sizeof(KeyRef);
	info.entrysize = sizeof(KeyEntry);
	info.hash = key_hash;
	info.match = key_match;
	info.hcxt = batch.cxt;
	batch.keys = hash_create("personalize batch keys", 1024, &info,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	batch.nkeys = 0;
	batch.events = 0;
	batch.txns = 0;
	batch.dead = NIL;
	batch.updates = batch.deletes = batch.truncates = 0;
	batch.full = false;
}

static const StreamTrait *
trait_conf(int32 id)
{
	int lo = 0, hi = ntraits - 1;

	while (lo <= hi)
	{
		int mid = (lo + hi) / 2;

		if (traits[mid].id == id)
			return &traits[mid];
		if (traits[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

static void
dead_letter(int32 source_id, bool applied, int64 events, const char *reason, const char *msg,
			int32 msg_len, const char *json)
{
	MemoryContext old = MemoryContextSwitchTo(batch.cxt);
	DeadLetter *d = palloc0(sizeof(DeadLetter));

	d->source_id = source_id;
	d->commit_lsn = batch.txn_commit_lsn;
	d->commit_time = batch.txn_commit_time;
	d->applied = applied;
	d->events = events;
	d->reason = pstrdup(reason);
	if (msg != NULL)
	{
		d->message = palloc(msg_len);
		memcpy(d->message, msg, msg_len);
		d->message_len = msg_len;
	}
	if (json != NULL)
		d->event_json = pstrdup(json);
	batch.dead = lappend(batch.dead, d);
	MemoryContextSwitchTo(old);
}

/*
 * Why a trait's parameters cannot build a state (a row of personalize.traits
 * written by hand past the checks of add_trait), or NULL.  Such a trait
 * skips every event, each a dead letter that says so; the others go on.
 */
static char *
trait_parameter_problem(const StreamTrait *c)
{
	switch (c->kind)
	{
		case STREAM_RECENT:
		case STREAM_TOP:
			if (c->n < 1 || c->n > (c->kind == STREAM_RECENT ? RECENT_MAX_N : TOP_MAX_N))
				return psprintf("n = %d is out of range", c->n);
			if (c->kind == STREAM_TOP &&
				(c->half_life <= 0 || c->half_life > PZ_MAX_INTERVAL_USECS))
				return psprintf("half_life of " INT64_FORMAT " us is out of range", c->half_life);
			break;
		case STREAM_DISTINCT:
			if (c->precision < DISTINCT_MIN_P || c->precision > DISTINCT_MAX_P)
				return psprintf("hll_precision = %d is out of range", c->precision);
			break;
		case STREAM_SESSION:
			if (c->gap <= 0 || c->gap > PZ_MAX_INTERVAL_USECS)
				return psprintf("gap of " INT64_FORMAT " us is out of range", c->gap);
			break;
		default:
			if (c->kind < 1 || c->kind > STREAM_KIND_MAX)
				return psprintf("kind %d is unknown", (int) c->kind);
			break;
	}
	return NULL;
}

static void
read_traits(PzReader *r)
{
	int n = (int) pz_read_varint(r);
	MemoryContext old;

	MemoryContextReset(config_cxt);
	old = MemoryContextSwitchTo(config_cxt);
	traits = palloc(sizeof(StreamTrait) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		traits[i].id = (int32) pz_read_varint(r);
		traits[i].kind = pz_read_u8(r);
		traits[i].n = (int32) pz_read_varint(r);
		traits[i].half_life = pz_read_i64(r);
		traits[i].gap = pz_read_i64(r);
		traits[i].precision = (int32) pz_read_varint(r);
	}
	trait_problems = palloc0(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		trait_problems[i] = trait_parameter_problem(&traits[i]);
	ntraits = n;
	MemoryContextSwitchTo(old);
}

static PzState *
new_state(const StreamTrait *c, TimestampTz ts, const char *val, int32 len)
{
	switch (c->kind)
	{
		case STREAM_COUNT:
			return (PzState *) metric_new(metric_op_from_name("count"));
		case STREAM_SUM:
			return (PzState *) metric_new(metric_op_from_name("sum"));
		case STREAM_MIN:
			return (PzState *) metric_new(metric_op_from_name("min"));
		case STREAM_MAX:
			return (PzState *) metric_new(metric_op_from_name("max"));
		case STREAM_FIRST:
			return (PzState *) timed_value_new(PZ_KIND_FIRST, val, len, ts);
		case STREAM_LAST:
			return (PzState *) timed_value_new(PZ_KIND_LAST, val, len, ts);
		case STREAM_RECENT:
			return (PzState *) recent_new(c->n);
		case STREAM_TOP:
			return (PzState *) top_new(c->n, c->half_life, ts);
		case STREAM_WINDOWED_COUNT:
		case STREAM_WINDOWED_SUM:
			return (PzState *) windowed_new(ts);
		case STREAM_DISTINCT:
			return (PzState *) distinct_new(c->precision);
		case STREAM_SESSION:
			return (PzState *) session_new(c->gap);
	}
	return NULL;
}

/* Fold one trait input of an event into the key's delta. */
static void
fold_input(KeyEntry *e, const StreamTrait *c, TimestampTz ts, uint8 flags, const char *val,
		   int32 len, const char *item, int32 item_len, const char *msg, int32 msg_len)
{
	PzState *s;
	bool created = false;
	Numeric num = NULL;
	double f = 0;

	if (!(flags & STREAM_HAS_VALUE) && c->kind != STREAM_SESSION)
		return; /* a NULL value: the aggregates skip it */
	if (trait_problems[c - traits] != NULL)
	{
		dead_letter(e->source_id, true, 1,
					psprintf("trait %d cannot be built (%s): the trait skipped the event", c->id,
							 trait_problems[c - traits]),
					msg, msg_len, NULL);
		return;
	}
	switch (c->kind)
	{
		case STREAM_SUM:
		case STREAM_MIN:
		case STREAM_MAX:
		case STREAM_WINDOWED_SUM:
		{
			/*
			 * The parsed number is scratch (the states copy what they keep):
			 * left in the batch's context, it took more room than the
			 * states, and so cut batches short.
			 */
			MemoryContext old = MemoryContextSwitchTo(batch.event_cxt);
			bool ok = pz_field_number(val, len, c->kind == STREAM_WINDOWED_SUM ? NULL : &num,
									  c->kind == STREAM_WINDOWED_SUM ? &f : NULL);

			MemoryContextSwitchTo(old);
			if (!ok)
			{
				char *reason =
					psprintf("value \"%s\" of trait %d is not a number: the trait skipped it",
							 pnstrdup(val, Min(len, 64)), c->id);

				dead_letter(e->source_id, true, 1, reason, msg, msg_len, NULL);
				return;
			}
			break;
		}
		default:
			break;
	}
	s = profile_get(e->delta, c->id);
	if (s == NULL)
	{
		s = new_state(c, ts, val, len);
		created = true;
	}
	switch (c->kind)
	{
		case STREAM_COUNT:
			metric_add((MetricState *) s, NULL);
			break;
		case STREAM_SUM:
		case STREAM_MIN:
		case STREAM_MAX:
			metric_add((MetricState *) s, num);
			break;
		case STREAM_FIRST:
		case STREAM_LAST:
			if (!created)
				timed_value_add((TimedValueState *) s, val, len, ts);
			break;
		case STREAM_RECENT:
			recent_add((RecentState *) s, val, len, ts);
			break;
		case STREAM_TOP:
			top_add((TopState *) s, val, len, ts, 1.0);
			break;
		case STREAM_WINDOWED_COUNT:
			windowed_add((WindowedState *) s, ts, 0);
			break;
		case STREAM_WINDOWED_SUM:
			windowed_add((WindowedState *) s, ts, f);
			break;
		case STREAM_DISTINCT:
			distinct_add_hash((DistinctState *) s, distinct_hash(val, len));
			break;
		case STREAM_SESSION:
			session_add((SessionState *) s, ts, (flags & STREAM_HAS_VALUE) ? val : NULL,
						(flags & STREAM_HAS_VALUE) ? len : 0,
						(flags & STREAM_HAS_ITEM) ? item : NULL,
						(flags & STREAM_HAS_ITEM) ? item_len : 0);
			break;
	}
	if (created)
		profile_put(e->delta, c->id, s);
}

static void
read_event(PzReader *r, const char *msg, int32 msg_len)
{
	int32 source_id = (int32) pz_read_varint(r);
	bool has_time = pz_read_u8(r) != 0;
	TimestampTz ts = pz_read_i64(r);
	int nids = (int) pz_read_varint(r);
	const char *key_start = r->cur;
	KeyRef ref;
	KeyEntry *e;
	bool found;
	int ninputs;
	const char *inputs;
	MemoryContext old;

	for (int i = 0; i < nids; i++)
	{
		int32 len;

		(void) pz_read_varint(r);
		(void) pz_read_value(r, &len);
		if (len > pz_max_value_bytes)
		{
			dead_letter(source_id, false, 1,
						psprintf("an identifier is %d bytes long, longer than "
								 "personalize.max_value_bytes (%d)",
								 len, pz_max_value_bytes),
						msg, msg_len, NULL);
			return;
		}
	}
	ref.len = (int32) (r->cur - key_start);
	ref.bytes = key_start;
	inputs = r->cur;
	ninputs = (int) pz_read_varint(r);
	/* check the event before anything of it is folded */
	for (int i = 0; i < ninputs; i++)
	{
		uint8 flags;
		int32 len = 0;

		(void) pz_read_varint(r);
		flags = pz_read_u8(r);
		if (flags & STREAM_HAS_VALUE)
			(void) pz_read_value(r, &len);
		if (len <= pz_max_value_bytes && (flags & STREAM_HAS_ITEM))
			(void) pz_read_value(r, &len);
		if (len > pz_max_value_bytes)
		{
			dead_letter(
				source_id, false, 1,
				psprintf("a value is %d bytes long, longer than personalize.max_value_bytes "
						 "(%d)",
						 len, pz_max_value_bytes),
				msg, msg_len, NULL);
			return;
		}
	}
	if (!has_time)
	{
		dead_letter(source_id, false, 1, "the event has no time (its time column is NULL)", msg,
					msg_len, NULL);
		return;
	}
	if (TIMESTAMP_NOT_FINITE(ts))
	{
		dead_letter(source_id, false, 1, "the event time is infinite", msg, msg_len, NULL);
		return;
	}
	if (nids == 0)
	{
		dead_letter(source_id, false, 1,
					"the event has no identifier (every identifier column is NULL)", msg, msg_len,
					NULL);
		return;
	}

	ref.hash = hash_bytes((const unsigned char *) ref.bytes, ref.len);
	old = MemoryContextSwitchTo(batch.cxt);
	e = hash_search(batch.keys, &ref, HASH_ENTER, &found);
	if (!found)
	{
		char *copy = palloc(ref.len);

		memcpy(copy, ref.bytes, ref.len);
		e->key.bytes = copy;
		e->order = batch.nkeys++;
		e->nids = nids;
		e->events = 0;
		e->source_id = source_id;
		e->first_seen = e->last_seen = ts;
		e->delta = profile_new();
		e->commit_lsn = batch.txn_commit_lsn;
		e->commit_time = batch.txn_commit_time;
		e->first_message = palloc(msg_len);
		memcpy(e->first_message, msg, msg_len);
		e->first_message_len = msg_len;
	}
	e->events++;
	if (ts < e->first_seen)
		e->first_seen = ts;
	if (ts > e->last_seen)
		e->last_seen = ts;

	r->cur = inputs;
	ninputs = (int) pz_read_varint(r);
	for (int i = 0; i < ninputs; i++)
	{
		int32 trait_id = (int32) pz_read_varint(r);
		uint8 flags = pz_read_u8(r);
		const char *val = NULL, *item = NULL;
		int32 len = 0, item_len = 0;
		const StreamTrait *c;

		if (flags & STREAM_HAS_VALUE)
			val = pz_read_value(r, &len);
		if (flags & STREAM_HAS_ITEM)
			item = pz_read_value(r, &item_len);
		if ((c = trait_conf(trait_id)) != NULL)
			fold_input(e, c, ts, flags, val, len, item, item_len, msg, msg_len);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(batch.event_cxt);
	batch.events++;
}

/* the prepare_write and write callbacks of the worker's decoding context */
static void
worker_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
					 bool last_write)
{
	resetStringInfo(ctx->out);
}

static void
worker_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
	PzReader r;
	uint8 what;
	const char *msg = ctx->out->data;
	int32 len = ctx->out->len;

	pz_reader_init(&r, msg, len, "personalize stream message");
	what = pz_read_u8(&r);
	switch (what)
	{
		case 'B':
			batch.txn_commit_lsn = pz_read_i64(&r);
			batch.txn_end_lsn = pz_read_i64(&r);
			batch.txn_commit_time = pz_read_i64(&r);
			batch.in_txn = true;
			/* applied before a crash: the origin's progress says so */
			batch.skip_txn = batch.txn_end_lsn <= origin_progress;
			break;
		case 'T':
			read_traits(&r);
			break;
		case 'I':
			if (!batch.skip_txn)
				read_event(&r, msg, len);
			break;
		case 'X':
			if (!batch.skip_txn)
			{
				int32 source_id = (int32) pz_read_varint(&r);
				int32 rlen, jlen;
				const char *reason = pz_read_value(&r, &rlen);
				const char *json = pz_read_value(&r, &jlen);

				/* no JSON: a row its owner may not read (nothing of it is kept) */
				dead_letter(source_id, false, 1, pnstrdup(reason, rlen), NULL, 0,
							jlen > 0 ? pnstrdup(json, jlen) : NULL);
			}
			break;
		case 'U':
			batch.updates += !batch.skip_txn;
			break;
		case 'D':
			batch.deletes += !batch.skip_txn;
			break;
		case 'R':
			batch.truncates += !batch.skip_txn;
			break;
		case 'C':
			if (!batch.skip_txn)
			{
				batch.txns++;
				batch.last_end_lsn = batch.txn_end_lsn;
				batch.last_commit_time = batch.txn_commit_time;
				if (batch.events >= pz_batch_size ||
					MemoryContextMemAllocated(batch.cxt, true) >= (Size) pz_memory_limit * 1024)
					batch.full = true;
			}
			batch.in_txn = false;
			batch.skip_txn = false;
			break;
		default:
			elog(ERROR, "personalize worker: unknown message type %d from the output plugin", what);
	}
}

/* ---- applying a batch ---- */

typedef struct ProfileDelta
{
	int64 profile_id; /* hash key */
	Profile *delta;   /* NULL until the first key joins */
	bool borrowed;    /* delta is a key's own: copy it before changing it */
	TimestampTz first_seen;
	TimestampTz last_seen;
} ProfileDelta;

static HTAB *profile_deltas = NULL;
static uint64 batch_merges = 0;
static uint64 batch_audience_changes = 0;

static ProfileDelta *
profile_delta(int64 id)
{
	bool found;
	ProfileDelta *d = hash_search(profile_deltas, &id, HASH_ENTER, &found);

	if (!found)
	{
		d->delta = NULL;
		d->borrowed = false;
		d->first_seen = DT_NOEND;
		d->last_seen = DT_NOBEGIN;
	}
	return d;
}

/*
 * Join a key's delta to its profile's.  Most profiles have one key in a
 * batch: the profile takes that key's delta as it is, without a copy (a
 * copy of every state was a tenth of the worker's time).  The key's delta
 * must stay unchanged (a failed apply is retried from the keys), so a
 * second key's delta is merged into a copy.
 */
static void
delta_join(ProfileDelta *d, Profile *delta, TimestampTz first, TimestampTz last)
{
	if (d->delta == NULL)
	{
		d->delta = delta;
		d->borrowed = true;
	}
	else
	{
		if (d->borrowed)
		{
			d->delta = profile_merge(profile_new(), d->delta);
			d->borrowed = false;
		}
		profile_merge(d->delta, delta);
	}
	if (first < d->first_seen)
		d->first_seen = first;
	if (last > d->last_seen)
		d->last_seen = last;
}

/* identity_graph.c: profile from became into (a merge or a re-key) */
static void
worker_profile_moved(int64 from, int64 into)
{
	ProfileDelta *f;
	ProfileDelta copy;

	batch_merges++;
	f = hash_search(profile_deltas, &from, HASH_FIND, NULL);
	if (f == NULL)
		return;
	copy = *f;
	hash_search(profile_deltas, &from, HASH_REMOVE, NULL);
	delta_join(profile_delta(into), copy.delta, copy.first_seen, copy.last_seen);
}

static int
key_order_cmp(const void *a, const void *b)
{
	const KeyEntry *x = *(KeyEntry *const *) a, *y = *(KeyEntry *const *) b;

	return x->order < y->order ? -1 : x->order > y->order;
}

/*
 * The key's identifiers, normalized; blocked and unusable ones (and those
 * of namespaces dropped since) left out.  Returns how many.
 */
static int
key_identifiers(KeyEntry *e, PzIdentifier *ids)
{
	PzReader r;
	int n = 0;

	pz_reader_init(&r, e->key.bytes, e->key.len, "personalize event key");
	for (int i = 0; i < e->nids; i++)
	{
		int32 ns_id = (int32) pz_read_varint(&r);
		int32 len;
		const char *v = pz_read_value(&r, &len);
		const PzNamespace *ns = pz_namespace_by_id(ns_id);
		char *norm;
		int32 nlen;

		if (ns == NULL)
			continue;
		norm = pz_namespace_normalize(ns, v, len, &nlen);
		if (norm == NULL || pz_namespace_is_blocked(ns, norm, nlen))
			continue;
		ids[n].ns = ns;
		ids[n].value = norm;
		ids[n].len = nlen;
		n++;
	}
	return n;
}

/* Resolve one key and join its delta to its profile's; false: no usable identifier. */
static bool
apply_key(KeyEntry *e)
{
	PzIdentifier *ids = palloc(sizeof(PzIdentifier) * Max(e->nids, 1));
	int n = key_identifiers(e, ids);
	bool linked;
	int64 p;

	if (n == 0)
		return false;
	/*
	 * Known identifiers, all of one profile: nothing to link.  (The graph's
	 * lock is held since the batch began, so the cache is the graph.)
	 */
	p = pz_identity_cached(&ids[0]);
	for (int i = 1; i < n && p != 0; i++)
		if (pz_identity_cached(&ids[i]) != p)
			p = 0;
	if (p == 0)
		p = pz_identity_attribute(ids, n, &linked);
	delta_join(profile_delta(p), e->delta, e->first_seen, e->last_seen);
	return true;
}

static char *
message_json(const char *msg, int32 len)
{
	bytea *b = palloc(VARHDRSZ + len);
	Datum j;

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), msg, len);
	j = DirectFunctionCall1(pz_decode_message, PointerGetDatum(b));
	return JsonbToCString(NULL, &DatumGetJsonbP(j)->root, VARSIZE_ANY(DatumGetPointer(j)));
}

static void
insert_dead_letter(DeadLetter *d)
{
	Oid types[7] = {INT4OID, LSNOID, TIMESTAMPTZOID, BOOLOID, INT8OID, TEXTOID, TEXTOID};
	Datum values[7];
	char nulls[7] = "       ";
	char *json = d->event_json ? d->event_json
				 : d->message  ? message_json(d->message, d->message_len)
							   : NULL;

	values[0] = Int32GetDatum(d->source_id);
	values[1] = LSNGetDatum(d->commit_lsn);
	values[2] = TimestampTzGetDatum(d->commit_time);
	values[3] = BoolGetDatum(d->applied);
	values[4] = Int64GetDatum(d->events);
	values[5] = CStringGetTextDatum(d->reason);
	if (json != NULL)
		values[6] = CStringGetTextDatum(json);
	else
		nulls[6] = 'n';
	if (SPI_execute_with_args(
			"INSERT INTO personalize.dead_letters "
			"(source, commit_lsn, committed_at, applied, events, reason, event) "
			"SELECT (SELECT s.relation FROM personalize.sources s WHERE s.id = $1), "
			"$2, $3, $4, $5, $6, $7::jsonb",
			7, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "personalize worker: could not insert a dead letter");
}

/* Write every affected profile once, merging its delta into the stored states. */
static uint64
write_profiles(void)
{
	long n = hash_get_num_entries(profile_deltas);
	int64 *ids;
	Profile **deltas;
	TimestampTz *firsts, *lasts;
	HASH_SEQ_STATUS seq;
	ProfileDelta *d;
	PzAudienceRun *audiences;
	int i = 0;

	if (n == 0)
		return 0;
	ids = palloc(sizeof(int64) * n);
	deltas = palloc(sizeof(Profile *) * n);
	firsts = palloc(sizeof(TimestampTz) * n);
	lasts = palloc(sizeof(TimestampTz) * n);
	hash_seq_init(&seq, profile_deltas);
	while ((d = hash_seq_search(&seq)) != NULL)
	{
		ids[i] = d->profile_id;
		deltas[i] = d->delta;
		firsts[i] = d->first_seen;
		lasts[i] = d->last_seen;
		i++;
	}
	/* audiences are evaluated on the rows written, in this transaction */
	audiences = pz_audience_run_begin("event", 0);
	pz_profiles_merge_deltas(n, ids, deltas, firsts, lasts, audiences);
	if (audiences != NULL)
		batch_audience_changes += pz_audience_run_end(audiences);
	return n;
}

/*
 * Apply the batch in one transaction.  careful: each key in a
 * subtransaction of its own, so that a key whose resolution fails (a
 * normalizer raising an error) becomes a dead letter instead of failing
 * the batch; used after the fast path failed.
 */
static void
apply_batch_tx(bool careful, uint64 *written)
{
	KeyEntry **order = palloc(sizeof(KeyEntry *) * Max(batch.nkeys, 1));
	HASH_SEQ_STATUS seq;
	KeyEntry *e;
	HASHCTL info = {0};
	ListCell *lc;
	int i = 0;

	hash_seq_init(&seq, batch.keys);
	while ((e = hash_seq_search(&seq)) != NULL)
		order[i++] = e;
	qsort(order, batch.nkeys, sizeof(KeyEntry *), key_order_cmp);

	batch_audience_changes = 0;
	info.keysize = sizeof(int64);
	info.entrysize = sizeof(ProfileDelta);
	info.hcxt = CurrentMemoryContext;
	profile_deltas = hash_create("personalize profile deltas", Max(batch.nkeys, 16), &info,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	pz_profile_moved_hook = worker_profile_moved;
	pz_identity_lock_for_writing();
	for (i = 0; i < batch.nkeys; i++)
	{
		volatile bool ok = false;

		e = order[i];
		if (!careful)
			ok = apply_key(e);
		else
		{
			MemoryContext cxt = CurrentMemoryContext;
			ResourceOwner owner = CurrentResourceOwner;

			BeginInternalSubTransaction(NULL);
			MemoryContextSwitchTo(cxt);
			pz_error_in_user_code = false;
			PG_TRY();
			{
				ok = apply_key(e);
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
				/*
				 * A lock another holds is no fault of the key: the batch waits
				 * and retries.  The same error out of a user's normalizer is the
				 * normalizer's: a dead letter, as any of its errors.
				 */
				if (err->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE && !pz_error_in_user_code)
					ReThrowError(err);
				pz_error_in_user_code = false;
				batch.txn_commit_lsn = e->commit_lsn;
				batch.txn_commit_time = e->commit_time;
				dead_letter(e->source_id, false, e->events,
							psprintf("resolving its identifiers failed: %s", err->message),
							e->first_message, e->first_message_len, NULL);
				continue;
			}
			PG_END_TRY();
		}
		if (!ok)
		{
			batch.txn_commit_lsn = e->commit_lsn;
			batch.txn_commit_time = e->commit_time;
			dead_letter(e->source_id, false, e->events,
						"no usable identifier: every identifier is NULL, blocked, or not usable by "
						"its namespace's normalizer",
						e->first_message, e->first_message_len, NULL);
		}
	}
	pz_profile_moved_hook = NULL;
	*written = write_profiles();
	foreach (lc, batch.dead)
		insert_dead_letter(lfirst(lc));
}

/*
 * Logical decoding marks the process PROC_IN_LOGICAL_DECODING, which leaves
 * its transactions out of every other backend's snapshot.  That is right
 * while it decodes (its slot's catalog_xmin holds what it needs), but the
 * worker's apply transactions write rows: left out of snapshots while in
 * progress, their rows would be taken for those of an aborted transaction
 * by a reader and hinted invalid for good.  So the flag is off while
 * applying.
 */
static void
set_in_logical_decoding(bool on)
{
	LWLockAcquire(ProcArrayLock, LW_EXCLUSIVE);
	if (on)
		MyProc->statusFlags |= PROC_IN_LOGICAL_DECODING;
	else
		MyProc->statusFlags &= ~PROC_IN_LOGICAL_DECODING;
	ProcGlobal->statusFlags[MyProc->pgxactoff] = MyProc->statusFlags;
	LWLockRelease(ProcArrayLock);
}

/*
 * The apply waited personalize.worker_lock_timeout for a lock (the identity
 * graph's, a profile row) that a transaction of someone else holds: say so
 * in worker_status, sleep a little, and let the caller try the batch again.
 * The worker never waits unseen, and nothing becomes a dead letter for it.
 */
static void
wait_for_lock_holder(const char *message)
{
	record_error(psprintf("waiting for a lock: %s", message));
	set_state(WS_WAITING_FOR_LOCK);
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/* Apply the batch; the end of its commit record, or InvalidXLogRecPtr if it wrote nothing. */
static XLogRecPtr
apply_batch(void)
{
	MemoryContext apply_cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize apply", ALLOCSET_DEFAULT_SIZES);
	uint64 written = 0, refused_before = pz_identity_refusals;
	bool wrote = batch.nkeys > 0 || batch.dead != NIL;
	volatile XLogRecPtr commit_end = InvalidXLogRecPtr;
	TimestampTz now;
	int64 dead_before = list_length(batch.dead);
	volatile bool careful = false;

	batch_merges = 0;
	batch_audience_changes = 0;
	if (wrote)
	{
		set_in_logical_decoding(false);
		for (;;)
		{
			volatile bool failed = false;
			MemoryContext old;

			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			old = MemoryContextSwitchTo(apply_cxt);
			pz_error_in_user_code = false;
			PG_TRY();
			{
				if (SPI_connect() != SPI_OK_CONNECT)
					elog(ERROR, "personalize worker: SPI_connect failed");
				PushActiveSnapshot(GetTransactionSnapshot());
				MemoryContextSwitchTo(apply_cxt);
				apply_batch_tx(careful, &written);
				SPI_finish();
				PopActiveSnapshot();
				/* the progress commits with the profiles */
				replorigin_session_origin_lsn = batch.last_end_lsn;
				replorigin_session_origin_timestamp = batch.last_commit_time;
				CommitTransactionCommand();
				commit_end = XactLastCommitEnd;
			}
			PG_CATCH();
			{
				ErrorData *err;
				bool lock_wait;

				MemoryContextSwitchTo(apply_cxt);
				err = CopyErrorData();
				lock_wait = err->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE && !pz_error_in_user_code;
				pz_error_in_user_code = false;
				if (careful && !lock_wait)
					PG_RE_THROW();
				FlushErrorState();
				AbortCurrentTransaction();
				if (lock_wait)
					wait_for_lock_holder(err->message);
				else
				{
					record_error(err->message);
					ereport(LOG, (errmsg("personalize worker: applying a batch failed, retrying it "
										 "key by key: %s",
										 err->message)));
					careful = true;
				}
				pz_profile_moved_hook = NULL;
				/* dead letters found in the failed attempt are found again */
				while (list_length(batch.dead) > dead_before)
					batch.dead = list_delete_last(batch.dead);
				failed = true;
			}
			PG_END_TRY();
			MemoryContextSwitchTo(old);
			MemoryContextReset(apply_cxt);
			if (!failed)
				break;
		}
		replorigin_session_origin_lsn = InvalidXLogRecPtr;
		replorigin_session_origin_timestamp = 0;
		if (XLogRecPtrIsInvalid(batch.last_end_lsn) == false)
			origin_progress = batch.last_end_lsn;
		set_in_logical_decoding(true);
	}
	MemoryContextDelete(apply_cxt);

	now = GetCurrentTimestamp();
	SpinLockAcquire(&me->mutex);
	me->events_applied += batch.events;
	me->transactions += batch.txns;
	me->batches += wrote;
	me->profiles_written += written;
	me->merges += batch_merges;
	me->audience_changes += batch_audience_changes;
	me->refused += pz_identity_refusals - refused_before;
	me->dead_letters += list_length(batch.dead);
	me->updates += batch.updates;
	me->deletes += batch.deletes;
	me->truncates += batch.truncates;
	if (batch.txns > 0)
	{
		me->applied_lsn = batch.last_end_lsn;
		me->last_commit_at = batch.last_commit_time;
		me->last_applied_at = now;
		me->commit_to_apply_ms = (double) (now - batch.last_commit_time) / 1000.0;
	}
	me->memory_bytes = (int64) MemoryContextMemAllocated(batch.cxt, true);
	SpinLockRelease(&me->mutex);
	return commit_end;
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
	origin_progress = replorigin_session_get_progress(false);
	pz_decoder_skip_origin = origin_id;

	if (new_slot)
	{
		LogicalDecodingContext *ctx;

		set_state(WS_CREATING_SLOT);
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
			set_state(WS_REBUILDING);
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
			origin_progress = fence;
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

	SpinLockAcquire(&me->mutex);
	failures = me->failures_in_row;
	me->retry_now = false;
	SpinLockRelease(&me->mutex);
	if (failures == 0)
		return;
	delay_ms = Min(1000L << Min(failures - 1, 20), (long) pz_max_backoff);
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
	ereport(LOG, (errmsg("personalize worker: failed %d time%s in a row; trying again in %ld ms",
						 failures, failures == 1 ? "" : "s", delay_ms)));
	SpinLockAcquire(&me->mutex);
	me->state = WS_BACKING_OFF;
	me->retry_at = until;
	SpinLockRelease(&me->mutex);
	for (;;)
	{
		long left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		bool now;

		SpinLockAcquire(&me->mutex);
		now = me->retry_now;
		SpinLockRelease(&me->mutex);
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
	SpinLockAcquire(&me->mutex);
	me->state = WS_STARTING;
	me->retry_at = 0;
	SpinLockRelease(&me->mutex);
}

/* streaming went well: the next failure waits the shortest time again */
static void
worker_healthy(void)
{
	if (me->failures_in_row == 0)
		return;
	SpinLockAcquire(&me->mutex);
	me->failures_in_row = 0;
	SpinLockRelease(&me->mutex);
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

		SpinLockAcquire(&me->mutex);
		me->events_per_second = (me->events_applied - *last_events) / elapsed;
		*last_events = me->events_applied;
		SpinLockRelease(&me->mutex);
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
	bool expire = pz_audience_retention > 0 &&
				  TimestampDifferenceExceeds(last_expiry, now,
											 1000 * Min(60, pz_audience_retention));
	MemoryContext cxt, old;

	if (!due && !expire)
		return;
	cxt = AllocSetContextCreate(TopMemoryContext, "personalize time", ALLOCSET_SMALL_SIZES);
	old = CurrentMemoryContext;
	set_in_logical_decoding(false);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		uint64 changes = 0;

		PushActiveSnapshot(GetTransactionSnapshot());
		if (due)
			changes = pz_audiences_apply_due(Min(pz_batch_size, 10000));
		if (expire)
			(void) pz_audiences_expire_events(10000);
		PopActiveSnapshot();
		CommitTransactionCommand();
		last_expiry = expire ? now : last_expiry;
		SpinLockAcquire(&me->mutex);
		me->audience_changes += changes;
		SpinLockRelease(&me->mutex);
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
		wait_for_lock_holder(err->message);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	set_in_logical_decoding(true);
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
								worker_prepare_write, worker_write, NULL);
	XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);
	InvalidateSystemCaches();

	batch.cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize batch", ALLOCSET_DEFAULT_SIZES);
	batch.event_cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize event", ALLOCSET_SMALL_SIZES);
	config_cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize traits", ALLOCSET_SMALL_SIZES);
	batch_reset();
	set_state(WS_STREAMING);

	for (;;)
	{
		XLogRecPtr end_of_wal, insert_end, commit_end;
		bool paused, caught_up = false;

		CHECK_FOR_INTERRUPTS();
		worker_sighup();
		SpinLockAcquire(&me->mutex);
		paused = me->paused;
		SpinLockRelease(&me->mutex);
		if (paused)
		{
			set_state(WS_PAUSED);
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
		while (!batch.full)
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
		if (batch.txns > 0 || batch.dead != NIL ||
			batch.updates + batch.deletes + batch.truncates > 0)
		{
			long wait_ms = 0;

			if (!batch.full && caught_up && pz_apply_interval > 0)
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
			set_state(WS_STREAMING);
			commit_end = apply_batch();
			applied_since_decoding = true;
			/* table statistics, so that autovacuum sees the profiles' updates */
			pgstat_report_stat(false);
			last_apply = GetCurrentTimestamp();
		}
		if (!batch.in_txn)
		{
			XLogRecPtr done = ctx->reader->EndRecPtr;

			confirm_later(commit_end, done);
			SpinLockAcquire(&me->mutex);
			if (caught_up && done >= end_of_wal)
				me->decoded_lsn = end_of_wal;
			else if (done > me->decoded_lsn)
				me->decoded_lsn = done;
			SpinLockRelease(&me->mutex);
		}
		batch_reset();
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
			set_state(WS_IDLE);
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

	me = &pz_worker_control->workers[idx];
	BackgroundWorkerInitializeConnection(me->dbname, NULL, 0);
	pgstat_report_appname("personalize worker");
	/* apply commits are asynchronous: the slot is confirmed once they are flushed */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* no wait for a lock is unbounded: the apply reports it and tries again */
	SetConfigOption("lock_timeout", psprintf("%d", pz_lock_timeout), PGC_SUSET, PGC_S_OVERRIDE);
	worker_settings();
	worker_keep_freed_memory();
	pz_profile_places = true;

	SpinLockAcquire(&me->mutex);
	me->dboid = MyDatabaseId;
	me->pid = MyProcPid;
	me->latch = MyLatch;
	me->state = WS_STARTING;
	me->started_at = GetCurrentTimestamp();
	SpinLockRelease(&me->mutex);
	before_shmem_exit(worker_detach, (Datum) 0);
	worker_back_off();

	/*
	 * The slot comes first, before the extension may even exist: every
	 * source registered later is streamed from its registration on.
	 */
	PG_TRY();
	{
		(void) ensure_origin_and_slot();
		if (XLogRecPtrIsInvalid(origin_progress))
			initial_rebuild();
		worker_stream();
	}
	PG_CATCH();
	{
		ErrorData *err;

		HOLD_INTERRUPTS();
		err = CopyErrorData();
		record_error(err->message);
		/* the next start waits first, longer each time it fails again */
		SpinLockAcquire(&me->mutex);
		me->restarts++;
		me->failures_in_row++;
		SpinLockRelease(&me->mutex);
		RESUME_INTERRUPTS();
		PG_RE_THROW();
	}
	PG_END_TRY();
}
