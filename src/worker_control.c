/*
 * worker_control.c
 *	  The SQL side of the streaming workers: worker_status, the waits
 *	  (wait_for_apply, await_apply, the rebuilds' _stream_wait), and
 *	  worker_start, worker_stop, worker_restart.  They read and set the
 *	  workers' shared state (worker.h); the worker itself is worker.c,
 *	  worker_batch.c and worker_apply.c.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "citus.h"
#include "worker.h"

static PzWorkerShared *
require_worker(const char *fname)
{
	PzWorkerShared *w = pz_my_database_worker();

	if (w == NULL)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("%s: no personalize worker streams database \"%s\"", fname,
							   get_database_name(MyDatabaseId)),
						errhint("Add it to personalize.database and shared_preload_libraries = "
								"'personalize' in postgresql.conf, then restart the server.")));
	return w;
}

PG_FUNCTION_INFO_V1(pz_worker_status);
Datum
pz_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (pz_worker_control == NULL)
		PG_RETURN_VOID();
	for (int i = 0; i < pz_worker_control->nworkers; i++)
	{
		PzWorkerShared copy;
		Datum v[27];
		bool n[27] = {0};
		int k = 0;

		SpinLockAcquire(&pz_worker_control->workers[i].mutex);
		memcpy(&copy, &pz_worker_control->workers[i], sizeof(copy));
		SpinLockRelease(&pz_worker_control->workers[i].mutex);

		v[k++] = DirectFunctionCall1(namein, CStringGetDatum(copy.dbname));
		n[k] = copy.pid == 0;
		v[k++] = Int32GetDatum(copy.pid);
		v[k++] = CStringGetTextDatum(pz_worker_state_names[copy.state]);
		v[k++] = BoolGetDatum(copy.paused);
		n[k] = copy.started_at == 0;
		v[k++] = TimestampTzGetDatum(copy.started_at);
		v[k++] = Int64GetDatum(copy.events_applied);
		v[k++] = Float8GetDatum(copy.events_per_second);
		v[k++] = Int64GetDatum(copy.transactions);
		v[k++] = Int64GetDatum(copy.batches);
		v[k++] = Int64GetDatum(copy.profiles_written);
		v[k++] = Int64GetDatum(copy.merges);
		v[k++] = Int64GetDatum(copy.refused);
		v[k++] = Int64GetDatum(copy.dead_letters);
		v[k++] = Int64GetDatum(copy.updates);
		v[k++] = Int64GetDatum(copy.deletes);
		v[k++] = Int64GetDatum(copy.truncates);
		n[k] = copy.applied_lsn == InvalidXLogRecPtr;
		v[k++] = LSNGetDatum(copy.applied_lsn);
		n[k] = copy.decoded_lsn == InvalidXLogRecPtr;
		v[k++] = LSNGetDatum(copy.decoded_lsn);
		n[k] = copy.last_commit_at == 0;
		v[k++] = TimestampTzGetDatum(copy.last_commit_at);
		n[k] = copy.last_applied_at == 0;
		v[k++] = TimestampTzGetDatum(copy.last_applied_at);
		n[k] = copy.last_applied_at == 0;
		v[k++] = Float8GetDatum(copy.commit_to_apply_ms);
		v[k++] = Int64GetDatum(copy.memory_bytes);
		n[k] = copy.last_error[0] == '\0';
		v[k++] = CStringGetTextDatum(copy.last_error);
		n[k] = copy.last_error_at == 0;
		v[k++] = TimestampTzGetDatum(copy.last_error_at);
		v[k++] = Int64GetDatum(copy.restarts);
		n[k] = copy.retry_at == 0 || copy.state != WS_BACKING_OFF;
		v[k++] = TimestampTzGetDatum(copy.retry_at);
		/* since 0.7.0 (an older _worker_status() declares fewer columns) */
		if (rsinfo->setDesc->natts > k)
			v[k++] = Int64GetDatum(copy.audience_changes);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	PG_RETURN_VOID();
}

/*
 * Wait until w has applied everything committed before now; false after
 * timeout_ms (< 0: no limit).
 */
static bool
wait_for_worker(PzWorkerShared *w, long timeout_ms)
{
	XLogRecPtr target = pz_wal_insert_end();
	TimestampTz start = GetCurrentTimestamp();

	/* asynchronous commits too: the worker decodes only flushed WAL */
	XLogFlush(target);
	for (;;)
	{
		XLogRecPtr done;
		Latch *latch;

		SpinLockAcquire(&w->mutex);
		done = w->decoded_lsn;
		latch = w->latch;
		SpinLockRelease(&w->mutex);
		if (done >= target)
			return true;
		if (latch != NULL)
			SetLatch(latch);
		if (timeout_ms >= 0 && TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
														  (int) Min(timeout_ms, INT_MAX)))
			return false;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 2,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* the timeout argument of wait_for_apply() and await_apply() in ms; -1: NULL, no limit */
static long
wait_timeout_arg(FunctionCallInfo fcinfo, const char *fname)
{
	Interval *iv;
	double us;

	if (PG_ARGISNULL(0))
		return -1;
	iv = PG_GETARG_INTERVAL_P(0);
	/* in double: months of a large interval overflow int64 microseconds */
	us = (double) iv->time + (double) iv->day * USECS_PER_DAY +
		 (double) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
	if (us < 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("%s: timeout must not be negative", fname),
						errhint("Pass an interval such as '10 seconds', or NULL to wait "
								"without limit.")));
	return us / 1000 >= (double) LONG_MAX ? LONG_MAX : (long) (us / 1000);
}

/* what is left of timeout_ms (< 0: no limit) since start, at least 0 */
static long
remaining_ms(TimestampTz start, long timeout_ms)
{
	long secs;
	int usecs;

	if (timeout_ms < 0)
		return timeout_ms;
	TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
	return Max(0, timeout_ms - (secs * 1000 + usecs / 1000));
}

/* a registered Citus table whose inserts no worker streams (citus.c) */
#define UNSTREAMED_HINT                                                                            \
	"personalize.unstreamed_sources lists it, with why.  A distributed table is streamed by the "  \
	"nodes that hold its shards once each has it in its configuration: call "                      \
	"personalize.citus_sync_config() on the coordinator (docs/scale-out.md).  Otherwise "          \
	"unregister it with personalize.unregister_source()."

/* the worker applies a transaction only after it commits */
static void
refuse_own_writes(const char *fname)
{
	if (IsTransactionBlock() && TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s: this transaction has written and not committed", fname),
				 errhint("Its own events are applied after it commits: call %s() after COMMIT.",
						 fname)));
}

PG_FUNCTION_INFO_V1(pz_wait_for_apply);
Datum
pz_wait_for_apply(PG_FUNCTION_ARGS)
{
	long timeout_ms = wait_timeout_arg(fcinfo, "wait_for_apply");
	PzWorkerShared *w;
	char *unstreamed;

	refuse_own_writes("wait_for_apply");
	w = require_worker("wait_for_apply");
	unstreamed = pz_citus_unstreamed_source();
	if (unstreamed != NULL)
	{
		/* its events are never applied: not true, and not after a wait */
		ereport(WARNING, (errmsg("wait_for_apply: %s: its inserts are not streamed", unstreamed),
						  errhint(UNSTREAMED_HINT)));
		PG_RETURN_BOOL(false);
	}
	{
		TimestampTz start = GetCurrentTimestamp();

		if (!wait_for_worker(w, timeout_ms))
			PG_RETURN_BOOL(false);
		/* and on a Citus coordinator, every node's worker (citus.c), in what is left of it */
		PG_RETURN_BOOL(pz_citus_wait_nodes(remaining_ms(start, timeout_ms)));
	}
}

/*
 * CALL await_apply(timeout): wait_for_apply() as a procedure that holds no
 * snapshot while it waits, and raises an ERROR on timeout.  A function
 * waits inside its statement's snapshot, and that snapshot's xmin keeps
 * VACUUM and page pruning from removing any row version that dies
 * meanwhile: the worker's own updates of the profiles among them.  Waiting
 * through a drain, the old versions then stay, half the worker's updates
 * find no room on their page, move and insert into the primary key, and
 * the table bloats.  CALL's snapshot can be popped (PortalRunUtility allows
 * a utility to pop it, as pg_wal_replay_wait() of PostgreSQL 17 does); the
 * procedure must then hold no other: not inside a function or a
 * transaction with a snapshot of its own (REPEATABLE READ, SERIALIZABLE),
 * which could not see the applied profiles anyway, nor a procedure called
 * in a transaction block (its statements push snapshots of their own).  It
 * returns nothing: a CALL that returns a row keeps its snapshot registered
 * until the row is sent.
 */
PG_FUNCTION_INFO_V1(pz_await_apply);
Datum
pz_await_apply(PG_FUNCTION_ARGS)
{
	long timeout_ms = wait_timeout_arg(fcinfo, "await_apply");
	PzWorkerShared *w;
	char *unstreamed;
	TimestampTz start;

	refuse_own_writes("await_apply");
	w = require_worker("await_apply");
	unstreamed = pz_citus_unstreamed_source();
	if (unstreamed != NULL)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("await_apply: %s: its inserts are not streamed", unstreamed),
						errhint(UNSTREAMED_HINT)));
	/* on a Citus coordinator, every node's worker first (citus.c; a query, with a snapshot) */
	start = GetCurrentTimestamp();
	if (!pz_citus_wait_nodes(timeout_ms))
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 timeout_ms >= 0
					 ? errmsg("await_apply: the personalize workers of the Citus nodes have not "
							  "applied what was committed there before the call within %ld ms",
							  timeout_ms)
					 : errmsg("await_apply: the personalize workers of the Citus nodes could not "
							  "be waited for"),
				 errhint("See personalize.worker_status on each node: a worker is behind, "
						 "stopped, or not running, or a node is down.")));
	timeout_ms = remaining_ms(start, timeout_ms);

	/*
	 * The active snapshot is the portal's (CALL's, or a DO block's or
	 * procedure's that CALLs this without a transaction of its own): popped
	 * and forgotten as a COMMIT inside a procedure does, so that the
	 * portal's later statements take a new one.
	 */
	if (ActivePortal != NULL && ActivePortal->portalSnapshot != NULL && ActiveSnapshotSet() &&
		GetActiveSnapshot() == ActivePortal->portalSnapshot)
	{
		PopActiveSnapshot();
		ActivePortal->portalSnapshot = NULL;
	}
	InvalidateCatalogSnapshot();
	if (GetOldestSnapshot() != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("await_apply: must be called without a snapshot of its own"),
				 errdetail("It is called inside a function, a procedure called in a transaction "
						   "block, or a transaction whose isolation level is REPEATABLE READ or "
						   "SERIALIZABLE, which would not see what the worker applies."),
				 errhint("CALL it as a statement of its own, outside such a transaction, or use "
						 "personalize.wait_for_apply().")));
	Assert(MyProc->xmin == InvalidTransactionId);

	if (!wait_for_worker(w, timeout_ms))
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("await_apply: the personalize worker has not applied what was committed "
						"before the call within %ld ms",
						timeout_ms),
				 errhint("See personalize.worker_status: the worker is behind, stopped, or not "
						 "running.")));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pz_note_unstreamed);

/*
 * _note_unstreamed(): a NOTICE, once per session, when no worker streams
 * this database: a source registered or a trait added there is built by
 * rebuild() only, and the newcomer should learn why profiles stay still.
 */
Datum
pz_note_unstreamed(PG_FUNCTION_ARGS)
{
	static bool noted = false;

	if (noted || pz_my_database_worker() != NULL)
		PG_RETURN_VOID();
	noted = true;
	ereport(NOTICE,
			(errmsg("no personalize worker streams database \"%s\": profiles change only when "
					"rebuild() runs",
					get_database_name(MyDatabaseId)),
			 errhint("To keep them current within milliseconds, add the database to "
					 "personalize.database, with shared_preload_libraries = 'personalize' and "
					 "wal_level = logical, and restart the server.")));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pz_stream_wait);
Datum
pz_stream_wait(PG_FUNCTION_ARGS)
{
	char *what = text_to_cstring(PG_GETARG_TEXT_PP(0));
	PzWorkerShared *w = pz_my_database_worker();
	bool paused;
	pid_t pid;
	WorkerState state;
	char name[NAMEDATALEN];

	if (w == NULL)
		PG_RETURN_VOID(); /* nothing streams this database */
	SpinLockAcquire(&w->mutex);
	paused = w->paused;
	pid = w->pid;
	state = w->state;
	SpinLockRelease(&w->mutex);
	/*
	 * The worker's own first rebuild; or no slot yet, or one being created:
	 * the worker then rebuilds once it has its slot (initial_rebuild).
	 */
	snprintf(name, sizeof(name), "personalize_%u", MyDatabaseId);
	if (pid == MyProcPid || state == WS_CREATING_SLOT ||
		SearchNamedReplicationSlot(name, true) == NULL)
		PG_RETURN_VOID();
	if (paused)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s: the personalize worker is stopped", what),
				 errdetail("Events committed before this %s would be applied after it.", what),
				 errhint("Run personalize.worker_start() first.")));
	if (!wait_for_worker(w, pz_apply_wait_timeout))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("%s: the personalize worker has not applied what was committed before it "
						"within personalize.apply_wait_timeout (%d ms)",
						what, pz_apply_wait_timeout),
				 pid == 0 ? errdetail("The worker is not running.")
						  : errdetail("The worker (pid %d) is behind, or waits for a lock this "
									  "transaction holds.",
									  (int) pid),
				 errhint("See personalize.worker_status; run it outside a transaction that "
						 "changed identities or profiles.")));
	PG_RETURN_VOID();
}

static bool
set_paused(bool paused)
{
	PzWorkerShared *w = require_worker(paused ? "worker_stop" : "worker_start");
	bool was;
	Latch *latch;

	SpinLockAcquire(&w->mutex);
	was = w->paused;
	w->paused = paused;
	if (!paused)
	{
		/* a worker waiting to retry tries at once */
		w->retry_now = true;
		w->failures_in_row = 0;
	}
	latch = w->latch;
	SpinLockRelease(&w->mutex);
	if (latch != NULL)
		SetLatch(latch);
	return was != paused;
}

PG_FUNCTION_INFO_V1(pz_worker_start);
Datum
pz_worker_start(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(set_paused(false));
}

PG_FUNCTION_INFO_V1(pz_worker_stop);
Datum
pz_worker_stop(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(set_paused(true));
}

PG_FUNCTION_INFO_V1(pz_worker_restart);
Datum
pz_worker_restart(PG_FUNCTION_ARGS)
{
	PzWorkerShared *w = require_worker("worker_restart");
	pid_t pid;

	SpinLockAcquire(&w->mutex);
	pid = w->pid;
	/* started again, it tries at once */
	w->failures_in_row = 0;
	w->retry_now = true;
	SpinLockRelease(&w->mutex);
	if (pid == 0)
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(kill(pid, SIGTERM) == 0);
}
