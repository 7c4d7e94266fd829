/*
 * worker_apply.c
 *	  Applying the streaming worker's batch, in one transaction: each key's
 *	  identifiers resolved through the identity graph, its delta joined to
 *	  its profile's, every affected profile written once, the dead letters
 *	  inserted, and the replication origin's progress committed with them.
 *
 * Keys are resolved in the order they first appeared, under the identity
 * graph's lock, taken once for the batch; a merge or re-key made meanwhile
 * moves the pending deltas along (pz_profile_moved_hook).  The profiles are
 * written by pz_profiles_merge_deltas (identity_store.c), which evaluates
 * the audiences on the rows written.  When the batch fails it is tried
 * again key by key, each key in a subtransaction of its own, so that a key
 * whose resolution fails is a dead letter instead of the batch's failure.
 * A lock another transaction holds past personalize.worker_lock_timeout is
 * no failure (unless a normalizer's code ran into it): the wait shows in
 * worker_status and the batch is tried again.
 * The batch's counters then go to worker_status.
 *
 * The transactions here write rows, so the worker's PROC_IN_LOGICAL_DECODING
 * flag is off meanwhile (pz_set_in_logical_decoding); the loop's time-driven
 * audience transitions (worker.c) share that and the wait for a lock.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/origin.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"

#include "audience.h"
#include "identity.h"
#include "profile.h"
#include "stream.h"
#include "worker_internal.h"

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
	KeyEntry **order = palloc(sizeof(KeyEntry *) * Max(pz_batch.nkeys, 1));
	HASH_SEQ_STATUS seq;
	KeyEntry *e;
	HASHCTL info = {0};
	ListCell *lc;
	int i = 0;

	hash_seq_init(&seq, pz_batch.keys);
	while ((e = hash_seq_search(&seq)) != NULL)
		order[i++] = e;
	qsort(order, pz_batch.nkeys, sizeof(KeyEntry *), key_order_cmp);

	batch_audience_changes = 0;
	info.keysize = sizeof(int64);
	info.entrysize = sizeof(ProfileDelta);
	info.hcxt = CurrentMemoryContext;
	profile_deltas = hash_create("personalize profile deltas", Max(pz_batch.nkeys, 16), &info,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	pz_profile_moved_hook = worker_profile_moved;
	pz_identity_lock_for_writing();
	for (i = 0; i < pz_batch.nkeys; i++)
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
				pz_batch.txn_commit_lsn = e->commit_lsn;
				pz_batch.txn_commit_time = e->commit_time;
				pz_batch_dead_letter(e->source_id, false, e->events,
									 psprintf("resolving its identifiers failed: %s", err->message),
									 e->first_message, e->first_message_len, NULL);
				continue;
			}
			PG_END_TRY();
		}
		if (!ok)
		{
			pz_batch.txn_commit_lsn = e->commit_lsn;
			pz_batch.txn_commit_time = e->commit_time;
			pz_batch_dead_letter(
				e->source_id, false, e->events,
				"no usable identifier: every identifier is NULL, blocked, or not usable by "
				"its namespace's normalizer",
				e->first_message, e->first_message_len, NULL);
		}
	}
	pz_profile_moved_hook = NULL;
	*written = write_profiles();
	foreach (lc, pz_batch.dead)
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
void
pz_set_in_logical_decoding(bool on)
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
void
pz_wait_for_lock_holder(const char *message)
{
	pz_worker_record_error(psprintf("waiting for a lock: %s", message));
	pz_worker_set_state(WS_WAITING_FOR_LOCK);
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/* Apply the batch; the end of its commit record, or InvalidXLogRecPtr if it wrote nothing. */
XLogRecPtr
pz_apply_batch(void)
{
	MemoryContext apply_cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize apply", ALLOCSET_DEFAULT_SIZES);
	uint64 written = 0, refused_before = pz_identity_refusals;
	bool wrote = pz_batch.nkeys > 0 || pz_batch.dead != NIL;
	volatile XLogRecPtr commit_end = InvalidXLogRecPtr;
	TimestampTz now;
	int64 dead_before = list_length(pz_batch.dead);
	volatile bool careful = false;

	batch_merges = 0;
	batch_audience_changes = 0;
	if (wrote)
	{
		pz_set_in_logical_decoding(false);
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
				replorigin_session_origin_lsn = pz_batch.last_end_lsn;
				replorigin_session_origin_timestamp = pz_batch.last_commit_time;
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
					pz_wait_for_lock_holder(err->message);
				else
				{
					pz_worker_record_error(err->message);
					ereport(LOG, (errmsg("personalize worker: applying a batch failed, retrying it "
										 "key by key: %s",
										 err->message)));
					careful = true;
				}
				pz_profile_moved_hook = NULL;
				/* dead letters found in the failed attempt are found again */
				while (list_length(pz_batch.dead) > dead_before)
					pz_batch.dead = list_delete_last(pz_batch.dead);
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
		if (XLogRecPtrIsInvalid(pz_batch.last_end_lsn) == false)
			pz_worker_origin_progress = pz_batch.last_end_lsn;
		pz_set_in_logical_decoding(true);
	}
	MemoryContextDelete(apply_cxt);

	now = GetCurrentTimestamp();
	SpinLockAcquire(&pz_worker_me->mutex);
	pz_worker_me->events_applied += pz_batch.events;
	pz_worker_me->transactions += pz_batch.txns;
	pz_worker_me->batches += wrote;
	pz_worker_me->profiles_written += written;
	pz_worker_me->merges += batch_merges;
	pz_worker_me->audience_changes += batch_audience_changes;
	pz_worker_me->refused += pz_identity_refusals - refused_before;
	pz_worker_me->dead_letters += list_length(pz_batch.dead);
	pz_worker_me->updates += pz_batch.updates;
	pz_worker_me->deletes += pz_batch.deletes;
	pz_worker_me->truncates += pz_batch.truncates;
	if (pz_batch.txns > 0)
	{
		pz_worker_me->applied_lsn = pz_batch.last_end_lsn;
		pz_worker_me->last_commit_at = pz_batch.last_commit_time;
		pz_worker_me->last_applied_at = now;
		pz_worker_me->commit_to_apply_ms = (double) (now - pz_batch.last_commit_time) / 1000.0;
	}
	pz_worker_me->memory_bytes = (int64) MemoryContextMemAllocated(pz_batch.cxt, true);
	SpinLockRelease(&pz_worker_me->mutex);
	return commit_end;
}
