/*
 * worker_internal.h
 *	  What the streaming worker's files share among themselves and no other
 *	  file needs.  What backends read of the workers (worker_status, the
 *	  waits) is worker.h.
 *
 * The data path, top to bottom across the files: worker.c's loop decodes
 * the WAL through the output plugin; the plugin's messages reach
 * worker_batch.c, which checks each event and folds it into a delta per
 * event key (the batch); worker_apply.c resolves each key's identifiers
 * through the identity graph, joins its delta to its profile's, writes
 * every affected profile once and commits the origin's progress with them;
 * then worker.c confirms the slot.
 */
#ifndef PERSONALIZE_WORKER_INTERNAL_H
#define PERSONALIZE_WORKER_INTERNAL_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "nodes/pg_list.h"
#include "replication/logical.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "profile.h"
#include "worker.h"

/* ---- settings (worker.c) ---- */

/* personalize.worker_batch_size, events */
extern int pz_batch_size;
/* personalize.worker_memory_limit, kB */
extern int pz_memory_limit;

/* ---- the worker's own state (worker.c) ---- */

/* this worker's slot in shared memory */
extern PzWorkerShared *pz_worker_me;
/* the replication origin's progress: transactions that end at or before it are applied */
extern XLogRecPtr pz_worker_origin_progress;

/* the state worker_status shows, also as the process's activity */
extern void pz_worker_set_state(WorkerState s);
/* worker_status's last_error and last_error_at */
extern void pz_worker_record_error(const char *msg);

/* ---- the batch (worker_batch.c) ---- */

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

/* the batch being decoded, or applied */
extern Batch pz_batch;

/* the batch's memory and an empty batch, when the worker starts to stream */
extern void pz_batch_init(void);
/* empty the batch, after it was applied */
extern void pz_batch_reset(void);
/* a dead letter, of the commit that pz_batch.txn_commit_lsn and txn_commit_time name */
extern void pz_batch_dead_letter(int32 source_id, bool applied, int64 events, const char *reason,
								 const char *msg, int32 msg_len, const char *json);
/* the prepare_write and write callbacks of the worker's decoding context */
extern void pz_batch_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
								   bool last_write);
extern void pz_batch_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
						   bool last_write);

/* ---- applying a batch (worker_apply.c) ---- */

/* apply the batch; the end of its commit record, or InvalidXLogRecPtr if it wrote nothing */
extern XLogRecPtr pz_apply_batch(void);
/* the process's PROC_IN_LOGICAL_DECODING flag: off while the worker writes */
extern void pz_set_in_logical_decoding(bool on);
/* a lock another transaction holds: show it in worker_status, sleep a little */
extern void pz_wait_for_lock_holder(const char *message);

#endif /* PERSONALIZE_WORKER_INTERNAL_H */
