/*
 * worker.h
 *	  The streaming workers' shared state: what the worker itself (worker.c,
 *	  with worker_apply.c for a batch's counters) keeps in shared memory and
 *	  worker_control.c (the SQL functions that report on, wait for and
 *	  control it) reads.  What the worker's own files share among themselves
 *	  is worker_internal.h.
 */
#ifndef PERSONALIZE_WORKER_H
#define PERSONALIZE_WORKER_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

/* databases one server streams, one worker each (a few hundred bytes of shared memory apiece) */
#define PZ_MAX_WORKERS 16

typedef enum WorkerState
{
	WS_STOPPED = 0,
	WS_STARTING,
	WS_CREATING_SLOT,
	WS_STREAMING,
	WS_IDLE,
	WS_PAUSED,
	WS_BACKING_OFF,
	WS_WAITING_FOR_LOCK,
	WS_REBUILDING
} WorkerState;

typedef struct PzWorkerShared
{
	slock_t mutex;
	char dbname[NAMEDATALEN]; /* from personalize.database, at postmaster start */
	Oid dboid;
	pid_t pid;
	Latch *latch;
	WorkerState state;
	bool paused;
	TimestampTz started_at;
	uint64 events_applied;
	uint64 transactions;
	uint64 batches;
	uint64 profiles_written;
	uint64 merges;
	uint64 audience_changes; /* entries and exits written */
	uint64 refused;
	uint64 dead_letters;
	uint64 updates;
	uint64 deletes;
	uint64 truncates;
	double events_per_second;
	XLogRecPtr applied_lsn; /* end of the last applied transaction */
	XLogRecPtr decoded_lsn; /* everything committed before it is applied */
	TimestampTz last_commit_at;
	TimestampTz last_applied_at;
	double commit_to_apply_ms;
	int64 memory_bytes;
	char last_error[256];
	TimestampTz last_error_at;
	uint64 restarts;      /* exits on an error since the server started */
	int failures_in_row;  /* exits on an error since it last streamed well */
	TimestampTz retry_at; /* when a worker waiting to retry tries again */
	bool retry_now;       /* worker_start() or worker_restart(): no more waiting */
} PzWorkerShared;

typedef struct PzWorkerControl
{
	int nworkers;
	PzWorkerShared workers[PZ_MAX_WORKERS];
} PzWorkerControl;

/* every worker's state, in shared memory; NULL without shared_preload_libraries */
extern PzWorkerControl *pz_worker_control;
extern const char *const pz_worker_state_names[];
/* personalize.apply_wait_timeout, ms */
extern int pz_apply_wait_timeout;

/* the worker of the current database, or NULL */
extern PzWorkerShared *pz_my_database_worker(void);
/* the end of the WAL inserted so far: what a wait must see applied */
extern XLogRecPtr pz_wal_insert_end(void);

#endif /* PERSONALIZE_WORKER_H */
