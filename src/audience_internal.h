/*
 * audience_internal.h
 *	  What the rooms of audiences share: the compiled set (audience.c), a
 *	  run's state (audience_run.c, read by audience_time.c to schedule and
 *	  by audience_worker.c), the membership writers' SPI helpers
 *	  (audience.c) and the NOTIFY of their events (audience_notify.c).  Not
 *	  for the rest of the extension, which uses audience.h.
 */
#ifndef PERSONALIZE_AUDIENCE_INTERNAL_H
#define PERSONALIZE_AUDIENCE_INTERNAL_H

#include "postgres.h"

#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/params.h"
#include "utils/array.h"
#include "utils/timestamp.h"

#include "audience.h"
#include "audience_condition.h"
#include "profile_columns.h"
#include "security.h"
#include "state.h"

/* ---- the audiences, compiled (audience.c) ---- */

typedef struct AudienceDef
{
	int32 id;
	char *name;
	char *condition;
	Oid owner;
	bool timed;
	PzCondition *cond; /* NULL: it does not compile against the view */
	char *problem;     /* why not, to record once */
} AudienceDef;

typedef struct AudienceSet
{
	MemoryContext cxt;
	int n;
	AudienceDef *defs; /* by id */
	bool compiled;     /* conditions compiled against view (view_xmin) */
	Oid view;
	TransactionId view_xmin;
	TupleDesc view_desc;
} AudienceSet;

/* the backend's set, and whether it must be read again */
extern AudienceSet *aud_set;
extern bool aud_set_stale;

/* personalize.audiences' oid, or InvalidOid (an older version) */
extern Oid aud_relid(void);
/* read the set again (not compiled) */
extern void aud_set_load(void);
/* the set, compiled against the current view; *spec its trait columns */
extern AudienceSet *aud_set_ready(const PcSpec **spec);
/* the index of audience id in s, or -1 */
extern int aud_set_index(const AudienceSet *s, int32 id);

/* ---- membership writers' helpers (audience.c) ---- */

/* the membership writers' lock (READ COMMITTED only) */
extern void aud_lock(void);
/* SPI writes as the extension's owner; true if pz_run_as_end must follow */
extern bool aud_writer_begin(PzUserContext *saved);
/* fn(arg) in a subtransaction: NULL, or the ERROR it raised (rolled back) */
extern ErrorData *aud_in_subxact(void (*fn)(void *arg), void *arg);
extern ArrayType *aud_int8_array(const int64 *v, int n);
extern ArrayType *aud_int4_array(const int32 *v, int n);
extern ArrayType *aud_bool_array(const bool *v, int n);
extern ArrayType *aud_timestamptz_array(const TimestampTz *v, int n);
/* a statement prepared once and kept for the backend's life */
extern SPIPlanPtr aud_keep_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types);
/* run it; ERROR naming what unless SPI returns expect */
extern void aud_run_plan(SPIPlanPtr plan, Datum *values, int expect, const char *what);

/* ---- entries and exits written without the executor (audience_store.c) ---- */
/*
 * Write n changes in order (profile pid[i] entering or leaving audience
 * aud[i], named names[i]), at at, for why, and note them for NOTIFY; false,
 * nothing written, if the tables are not plain: the caller uses SQL.
 */
extern bool aud_store_changes(int n, const int32 *aud, const char *const *names, const int64 *pid,
							  const bool *entered, TimestampTz at, const char *why);

/* ---- NOTIFY at commit (audience_notify.c) ---- */

/* the events just written (audience, entered, id), for the commit's NOTIFY */
extern void aud_notify_events(SPITupleTable *tt, uint64 n);
/* one event just written, for the commit's NOTIFY */
extern void aud_notify_event(const char *audience, bool entered, int64 id);
/* the transaction callbacks, from pz_audience_init */
extern void aud_notify_init(void);

/* ---- a run (audience_run.c) ---- */

/* where the profile row's columns are */
enum
{
	R_ID,
	R_KEY_NAMESPACE_ID,
	R_KEY_VALUE,
	R_STATES,
	R_FIRST_SEEN,
	R_LAST_SEEN,
	R_UPDATED_AT,
	R_COUNT
};

/* a comparison with the clock: the whole, its side with the clock, the other side */
typedef struct RunAtom
{
	ExprState *cmp;
	ExprState *clock_side;
	ExprState *other_side;
	Oid clock_type;
	Oid other_type;
} RunAtom;

/*
 * A part of a condition that reads the clock and no column, such as
 * now() - interval '7 days': a parameter (2, 3, ...) of the audience's
 * expressions, computed when first read at a moment, and kept for the
 * run's fixed moments (now, a day later, the horizon), which every
 * profile's evaluation and schedule read again (audience_time.c).
 */
#define AUD_MEMO_MOMENTS 3
typedef struct RunTerm
{
	ExprState *expr; /* reads only the clock (parameter 1) */
	Oid type;
	int16 typlen;
	bool typbyval;
	uint64 epoch; /* cur is its value at the moment of this epoch */
	Datum cur;
	bool cur_null;
	bool memo_ok[AUD_MEMO_MOMENTS];
	bool memo_null[AUD_MEMO_MOMENTS];
	Datum memo[AUD_MEMO_MOMENTS];
} RunTerm;

typedef struct RunAudience
{
	AudienceDef *def;
	ExprState *state;
	int natoms;
	RunAtom *atoms;
	int nterms;
	RunTerm *terms;
	bool timed;
	int nwindows;
	int *windows; /* the spec columns of the windowed columns it reads */
} RunAudience;

struct PzAudienceRun
{
	MemoryContext cxt;
	const char *why;
	int32 only_audience;
	TimestampTz now;
	const PcSpec *spec;
	TupleDesc view_desc;
	int n; /* audiences evaluated */
	RunAudience *aud;
	bool any_timed;
	bool prepared; /* ExprStates built (at the first evaluation) */
	/* the view's row */
	bool need_base[PZ_VIEW_NBASE + 1];
	bool *need_col;   /* per spec column */
	bool *need_trait; /* per spec trait */
	TupleTableSlot *slot;
	ExprContext *econtext;
	ParamListInfo params;   /* 1: the clock; 2..: the terms of clock_aud, fetched */
	RunAudience *clock_aud; /* the audience whose expressions are evaluated */
	int clock_moment;       /* the clock's fixed moment (0 now, 1 a day on, 2 horizon), or -1 */
	uint64 clock_epoch;     /* bumped each time the clock is set */
	PzState **states;
	/* rows to evaluate */
	TupleDesc row_desc_src; /* the descriptor the rows came with */
	TupleDesc row_desc;     /* a copy of it */
	int row_attr[R_COUNT];
	int nrows;
	HeapTuple *rows;        /* in rows_cxt */
	struct Profile **held;  /* per row: the worker's merged profile (in rows_cxt), or NULL */
	MemoryContext rows_cxt; /* the rows and what they hold; emptied by each flush */
	int ngone;
	int gone_cap;
	int64 *gone;
	/* per row and audience: 0 out, 1 in, 2 unknown (its evaluation failed) */
	uint8 *result;
	TimestampTz *due; /* per row: 0 none, else the next moment */
	bool *failed;     /* per row: an evaluation failed */
	char **errors;    /* per audience: the first error, to record */
	uint64 changes;
};

/* SELECT of a profile's row, as a run reads it; callers add a WHERE */
extern const char *const aud_profile_row_sql;
/* evaluate the rows collected, compare with the stored memberships, write */
extern void aud_run_flush(PzAudienceRun *run);

/* the clock at t for audience a's expressions (audience_time.c) */
extern void aud_set_clock(PzAudienceRun *run, RunAudience *a, TimestampTz t);
/* the run's ParamListInfo fetch hook: the clock, and a's terms at it */
extern ParamExternData *aud_fetch_param(ParamListInfo params, int paramid, bool speculative,
										ParamExternData *workspace);

/* an expression of audience a at moment t: 0 false, 1 true, 2 NULL */
static inline int
eval_at(RunAudience *a, ExprState *state, PzAudienceRun *run, TimestampTz t)
{
	bool isnull;
	Datum d;

	aud_set_clock(run, a, t);
	d = ExecEvalExprSwitchContext(state, run->econtext, &isnull);
	return isnull ? 2 : DatumGetBool(d) ? 1 : 0;
}

/* the earliest moment this process scheduled (DT_NOBEGIN: none) */
extern TimestampTz aud_next_due_hint;

/* ---- the worker's cache of memberships and moments (audience_cache.c) ---- */

/* what the worker knows of a profile: its audiences' ids and its moment (0: none) */
typedef struct AudCacheEntry
{
	int64 profile_id;
	TimestampTz due;
	int32 n;
	int32 cap;
	int32 *ids;
} AudCacheEntry;

/* aud_lock calls it once it holds the lock: another writer counts itself, the worker checks */
extern void aud_cache_note_lock(void);
/* whether this process keeps the cache (the streaming worker) */
extern bool aud_cache_usable(void);
/* the profile's entry, or NULL if the cache does not know it */
extern AudCacheEntry *aud_cache_find(int64 profile_id);
/* a new entry, empty, for what was just read of the profile (NULL: no cache) */
extern AudCacheEntry *aud_cache_enter(int64 profile_id);
extern void aud_cache_add_member(AudCacheEntry *e, int32 audience_id);
/* what the worker writes: an entry or exit, a moment, a profile gone, everything */
extern void aud_cache_set(int64 profile_id, int32 audience_id, bool in);
extern void aud_cache_set_due(int64 profile_id, TimestampTz due);
extern void aud_cache_forget(int64 profile_id);
extern void aud_cache_clear(void);

/* ---- time (audience_time.c) ---- */
/*
 * The next moment after now at which audience a's result for the row in
 * run's slot (now: current) changes with time alone, before bound if not 0;
 * 0 if none.
 */
extern TimestampTz aud_run_schedule(PzAudienceRun *run, RunAudience *a, int current,
									TimestampTz bound);

#endif /* PERSONALIZE_AUDIENCE_INTERNAL_H */
