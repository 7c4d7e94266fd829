/*
 * audience.c
 *	  Audiences: membership kept by the writers of profiles, entries and
 *	  exits as events, and transitions driven by time (docs/audiences.md).
 *
 * The audiences and their compiled conditions (audience_condition.c) are
 * cached per backend and rebuilt when an audience or the profile view
 * changes.  A run (audience.h) collects the profile rows a writer wrote,
 * evaluates every audience on each as the audience's owner, and writes
 * what changed, in the writer's transaction: the streaming worker's apply
 * (why "event"), a merge, forget(), rebuild() and refresh_audience(), and
 * the worker's time-driven transitions (why "time").
 *
 * Time.  For each profile and each condition that reads a window or the
 * clock, the run finds the next moment its result changes: the moments
 * its windowed columns change (a bucket entering or leaving a window) and
 * its clock comparisons flip are the only ones at which it can, so it
 * evaluates the condition at those, in order, as of each.  The earliest
 * over a profile's audiences is its row in personalize.audience_due, and
 * the worker re-evaluates the profile when that moment has come.
 *
 * Errors.  A condition is user code: an ERROR out of it (a division by
 * zero for one profile) must stop neither the worker nor the writer.  A
 * chunk of rows is evaluated in a subtransaction; if it fails, each row
 * again in one of its own, and in a failing row each audience alone.  An
 * audience that fails for a profile keeps that profile's membership as it
 * was, and the error is counted in personalize.audiences.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/params.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "audience.h"
#include "audience_condition.h"
#include "identity.h"
#include "profile.h"
#include "profile_columns.h"
#include "security.h"
#include "windowed.h"

int pz_audience_delay = 1000;
int pz_audience_retention = 30 * 24 * 3600;

/* rows evaluated and written at a time: bounds a run's memory */
#define RUN_CHUNK 10000
/* windowed changes looked at per column and profile before a re-check is scheduled */
#define WINDOW_LOOKAHEAD 16
/* a profile whose evaluation failed is tried again after this */
#define RETRY_AFTER_ERROR_US (60 * USECS_PER_SEC)
/* the clock is searched this far ahead for a comparison's flip */
#define CLOCK_HORIZON_US ((int64) 200 * 366 * USECS_PER_DAY)

#define NOTIFY_CHANNEL "personalize_audiences"

/* ---- the audiences, compiled ---- */

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

static AudienceSet *aset = NULL;
static bool aset_stale = true;
static Oid audiences_relid_cached = InvalidOid;

/* what this process scheduled: the earliest due it wrote */
static TimestampTz next_due_hint = DT_NOBEGIN;
static TimestampTz schedule_read_at = 0;

static void
audiences_inval(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == audiences_relid_cached)
		aset_stale = true;
}

static void notify_xact_callback(XactEvent event, void *arg);
static void notify_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid, void *arg);

void
pz_audience_init(void)
{
	DefineCustomIntVariable(
		"personalize.audience_delay",
		"The longest a time-driven audience transition waits after its moment.",
		"The worker re-evaluates a profile when the next moment its audiences can change has "
		"come: at once for moments it scheduled itself, and at least this often for those "
		"scheduled by other sessions (rebuild(), refresh_audience(), merges).",
		&pz_audience_delay, 1000, 10, 60 * 60 * 1000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"personalize.audience_events_retention",
		"How long personalize.audience_events keeps an entry or exit.",
		"The worker deletes older events, a few thousand at a time.  0 keeps every event.",
		&pz_audience_retention, 30 * 24 * 3600, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL,
		NULL);
	CacheRegisterRelcacheCallback(audiences_inval, (Datum) 0);
	RegisterXactCallback(notify_xact_callback, NULL);
	RegisterSubXactCallback(notify_subxact_callback, NULL);
}

static Oid
audiences_relid(void)
{
	Oid nsp = get_namespace_oid("personalize", true);

	audiences_relid_cached = OidIsValid(nsp) ? get_relname_relid("audiences", nsp) : InvalidOid;
	return audiences_relid_cached;
}

/* the audiences, as the latest snapshot has them (not compiled) */
static void
aset_load(void)
{
	MemoryContext cxt;
	AudienceSet *s;
	int ret;

	if (aset != NULL)
		MemoryContextDelete(aset->cxt);
	aset = NULL;
	cxt = AllocSetContextCreate(TopMemoryContext, "personalize audiences", ALLOCSET_SMALL_SIZES);
	s = MemoryContextAllocZero(cxt, sizeof(AudienceSet));
	s->cxt = cxt;
	aset_stale = false;
	if (!OidIsValid(audiences_relid()))
	{
		aset = s;
		return;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	ret = SPI_execute("SELECT id, name, condition, owner::oid, timed FROM personalize.audiences "
					  "ORDER BY id",
					  false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "personalize audiences: could not read personalize.audiences");
	s->n = (int) SPI_processed;
	s->defs = MemoryContextAllocZero(cxt, sizeof(AudienceDef) * Max(s->n, 1));
	for (int i = 0; i < s->n; i++)
	{
		HeapTuple t = SPI_tuptable->vals[i];
		TupleDesc d = SPI_tuptable->tupdesc;
		bool isnull;
		AudienceDef *a = &s->defs[i];

		a->id = DatumGetInt32(SPI_getbinval(t, d, 1, &isnull));
		a->name = MemoryContextStrdup(cxt, TextDatumGetCString(SPI_getbinval(t, d, 2, &isnull)));
		a->condition =
			MemoryContextStrdup(cxt, TextDatumGetCString(SPI_getbinval(t, d, 3, &isnull)));
		a->owner = DatumGetObjectId(SPI_getbinval(t, d, 4, &isnull));
		a->timed = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
	}
	SPI_finish();
	aset = s;
}

/*
 * fn(arg) in a subtransaction of its own: NULL if it returned, else the
 * ERROR it raised (copied into the caller's memory context), with the
 * subtransaction rolled back.  The caller's memory context and resource
 * owner are current again either way.  Conditions are user code: every
 * path that runs or compiles one goes through here.
 */
static ErrorData *
in_subxact(void (*fn)(void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData *volatile err = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return err;
}

typedef struct CompileArgs
{
	AudienceDef *a;
	Oid view;
	const PcSpec *spec;
	MemoryContext scratch;
} CompileArgs;

static void
compile_fn(void *arg)
{
	CompileArgs *x = arg;
	PzCondition *c, *kept;

	MemoryContextSwitchTo(x->scratch);
	c = pz_condition_compile(x->a->condition, x->a->owner, x->view, x->spec);
	MemoryContextSwitchTo(aset->cxt);
	kept = palloc0(sizeof(PzCondition));
	kept->expr = copyObject(c->expr);
	kept->attrs = bms_copy(c->attrs);
	kept->reads_clock = c->reads_clock;
	kept->reads_windows = c->reads_windows;
	kept->atoms = copyObject(c->atoms);
	x->a->cond = kept;
}

/* compile one condition; an ERROR becomes the audience's problem */
static void
aset_compile_one(AudienceDef *a, Oid view, const PcSpec *spec)
{
	CompileArgs args = {a, view, spec, NULL};
	ErrorData *e;

	args.scratch =
		AllocSetContextCreate(CurrentMemoryContext, "personalize condition", ALLOCSET_SMALL_SIZES);
	a->cond = NULL;
	e = in_subxact(compile_fn, &args);
	MemoryContextDelete(args.scratch);
	if (e == NULL)
	{
		a->problem = NULL;
		return;
	}
	/* a lock someone holds (a trait change) is no fault of the condition: try again later */
	if (e->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
	{
		aset_stale = true;
		ReThrowError(e);
	}
	a->problem = MemoryContextStrdup(aset->cxt,
									 psprintf("the condition cannot be evaluated: %s", e->message));
}

/* the audiences, compiled against the current view; *spec its trait columns */
static AudienceSet *
aset_ready(const PcSpec **spec)
{
	Oid view;
	TransactionId xmin;

	if (aset == NULL || aset_stale)
		aset_load();
	if (aset->n == 0)
	{
		*spec = NULL;
		return aset;
	}
	*spec = pz_profile_view_spec(&view, &xmin);
	if (!aset->compiled || aset->view != view || aset->view_xmin != xmin)
	{
		Relation rel = NULL;

		if (OidIsValid(view))
		{
			rel = relation_open(view, AccessShareLock);
			aset->view_desc = CreateTupleDescCopy(RelationGetDescr(rel));
			relation_close(rel, NoLock);
		}
		/* a moved copy: the descriptor must live in the set's context */
		if (aset->view_desc != NULL && GetMemoryChunkContext(aset->view_desc) != aset->cxt)
		{
			MemoryContext old = MemoryContextSwitchTo(aset->cxt);
			TupleDesc copy = CreateTupleDescCopy(aset->view_desc);

			MemoryContextSwitchTo(old);
			aset->view_desc = copy;
		}
		for (int i = 0; i < aset->n; i++)
		{
			if (!OidIsValid(view))
			{
				aset->defs[i].cond = NULL;
				aset->defs[i].problem =
					MemoryContextStrdup(aset->cxt, "personalize.profile_view does not exist");
			}
			else
				aset_compile_one(&aset->defs[i], view, *spec);
		}
		aset->compiled = true;
		aset->view = view;
		aset->view_xmin = xmin;
	}
	return aset;
}

static int
aset_index(const AudienceSet *s, int32 id)
{
	int lo = 0, hi = s->n - 1;

	while (lo <= hi)
	{
		int mid = (lo + hi) / 2;

		if (s->defs[mid].id == id)
			return mid;
		if (s->defs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* ---- membership writers ---- */

static void
audiences_lock(void)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("audience memberships are changed only in READ COMMITTED "
							   "transactions"),
						errdetail("A writer must see the memberships committed while it waited "
								  "for their lock."),
						errhint("Run it outside REPEATABLE READ and SERIALIZABLE transactions.")));
	pz_lock(PZ_LOCK_AUDIENCES);
}

/* run SPI writes as the extension's owner, who alone may write the tables */
static bool
writer_begin(PzUserContext *saved)
{
	if (superuser())
		return false;
	pz_as_extension_owner_begin(saved);
	return true;
}

static ArrayType *
int8_array(const int64 *v, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static ArrayType *
int4_array(const int32 *v, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(v[i]);
	return construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT);
}

static ArrayType *
bool_array(const bool *v, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = BoolGetDatum(v[i]);
	return construct_array(d, n, BOOLOID, 1, true, TYPALIGN_CHAR);
}

static ArrayType *
timestamptz_array(const TimestampTz *v, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = TimestampTzGetDatum(v[i]);
	return construct_array(d, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/* one prepared statement, kept for the backend's life */
static SPIPlanPtr
keep_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "personalize audiences: could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

static void
run_plan(SPIPlanPtr plan, Datum *values, int expect, const char *what)
{
	int ret = SPI_execute_plan(plan, values, NULL, false, 0);

	if (ret != expect)
		elog(ERROR, "personalize audiences: %s failed: %s", what, SPI_result_code_string(ret));
}

/*
 * NOTIFY personalize_audiences, one payload per audience that changed in
 * the transaction, sent at its commit:
 * {"audience": ..., "entered": n, "exited": n, "first_event": id, "last_event": id}.
 * A transaction may write the events of one audience in several
 * statements (a merge's exits, then the batch's entries): their counts are
 * gathered per audience, per subtransaction level, and a subtransaction
 * that aborts takes its counts with it.
 */
typedef struct NoteCount
{
	char *audience;
	int level; /* the (sub)transaction nest level that wrote them */
	int64 entered, exited, first, last;
} NoteCount;

static List *pending_notes = NIL; /* of NoteCount, in TopTransactionContext */

static void
notify_events(SPITupleTable *tt, uint64 n)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	int level = GetCurrentTransactionNestLevel();

	for (uint64 i = 0; i < n; i++)
	{
		bool isnull;
		char *aud = TextDatumGetCString(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		bool entered = DatumGetBool(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
		int64 id = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));
		NoteCount *c = NULL;
		ListCell *lc;

		foreach (lc, pending_notes)
		{
			NoteCount *x = lfirst(lc);

			if (x->level == level && strcmp(x->audience, aud) == 0)
			{
				c = x;
				break;
			}
		}
		if (c == NULL)
		{
			c = palloc0(sizeof(NoteCount));
			c->audience = aud;
			c->level = level;
			c->first = c->last = id;
			pending_notes = lappend(pending_notes, c);
		}
		if (entered)
			c->entered++;
		else
			c->exited++;
		c->first = Min(c->first, id);
		c->last = Max(c->last, id);
	}
	MemoryContextSwitchTo(old);
}

/* at pre-commit: one payload per audience */
static void
notify_send(void)
{
	List *sent = NIL;
	ListCell *lc, *lc2;

	foreach (lc, pending_notes)
	{
		NoteCount *c = lfirst(lc);
		NoteCount sum = *c;
		StringInfoData p;
		bool done = false;

		foreach (lc2, sent)
			if (strcmp((char *) lfirst(lc2), c->audience) == 0)
				done = true;
		if (done)
			continue;
		for_each_cell(lc2, pending_notes, lnext(pending_notes, lc))
		{
			NoteCount *x = lfirst(lc2);

			if (strcmp(x->audience, c->audience) != 0)
				continue;
			sum.entered += x->entered;
			sum.exited += x->exited;
			sum.first = Min(sum.first, x->first);
			sum.last = Max(sum.last, x->last);
		}
		sent = lappend(sent, c->audience);
		initStringInfo(&p);
		appendStringInfoString(&p, "{\"audience\": ");
		escape_json(&p, sum.audience);
		appendStringInfo(&p,
						 ", \"entered\": " INT64_FORMAT ", \"exited\": " INT64_FORMAT
						 ", \"first_event\": " INT64_FORMAT ", \"last_event\": " INT64_FORMAT "}",
						 sum.entered, sum.exited, sum.first, sum.last);
		Async_Notify(NOTIFY_CHANNEL, p.data);
	}
	pending_notes = NIL;
}

static void
notify_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (pending_notes != NIL)
				notify_send();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			pending_notes = NIL; /* TopTransactionContext is gone */
			break;
		default:
			break;
	}
}

static void
notify_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid,
						void *arg)
{
	int level = GetCurrentTransactionNestLevel();
	ListCell *lc;

	if (pending_notes == NIL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach (lc, pending_notes)
			if (((NoteCount *) lfirst(lc))->level >= level)
				pending_notes = foreach_delete_current(pending_notes, lc);
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach (lc, pending_notes)
			if (((NoteCount *) lfirst(lc))->level >= level)
				((NoteCount *) lfirst(lc))->level = level - 1;
	}
}

/* ---- runs ---- */

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
static const char *const row_columns[R_COUNT] = {
	"id", "key_namespace_id", "key_value", "states", "first_seen", "last_seen", "updated_at"};

/* a comparison with the clock: the whole, its side with the clock, the other side */
typedef struct RunAtom
{
	ExprState *cmp;
	ExprState *clock_side;
	ExprState *other_side;
	Oid clock_type;
	Oid other_type;
} RunAtom;

typedef struct RunAudience
{
	AudienceDef *def;
	ExprState *state;
	int natoms;
	RunAtom *atoms;
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
	ParamListInfo params;
	PzState **states;
	/* rows to evaluate */
	TupleDesc row_desc_src; /* the descriptor the rows came with */
	TupleDesc row_desc;     /* a copy of it */
	int row_attr[R_COUNT];
	int nrows;
	HeapTuple *rows;
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

PzAudienceRun *
pz_audience_run_begin(const char *why, int32 only_audience)
{
	const PcSpec *spec;
	AudienceSet *s;
	PzAudienceRun *run;
	MemoryContext old;
	int n = 0;

	/*
	 * The lock first: taking it reads the invalidations of audiences changed
	 * by those who held it, so the set compiled next is the committed one.
	 */
	if (!OidIsValid(audiences_relid()))
		return NULL;
	audiences_lock();
	s = aset_ready(&spec);
	if (s->n == 0 || (only_audience != 0 && aset_index(s, only_audience) < 0))
		return NULL;
	run = palloc0(sizeof(PzAudienceRun));
	run->cxt = AllocSetContextCreate(CurrentMemoryContext, "personalize audience run",
									 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(run->cxt);
	run->why = why;
	run->only_audience = only_audience;
	run->now = GetCurrentTimestamp();
	run->spec = spec;
	run->view_desc = s->view_desc;
	run->aud = palloc0(sizeof(RunAudience) * s->n);
	run->need_col = palloc0(sizeof(bool) * Max(spec ? spec->ncols : 0, 1));
	run->need_trait = palloc0(sizeof(bool) * Max(spec ? spec->ntraits : 0, 1));
	run->states = palloc0(sizeof(PzState *) * Max(spec ? spec->ntraits : 0, 1));
	for (int i = 0; i < s->n; i++)
	{
		AudienceDef *d = &s->defs[i];
		RunAudience *a;
		int attr = -1;

		if (only_audience != 0 && d->id != only_audience)
			continue;
		a = &run->aud[n++];
		a->def = d;
		if (d->cond == NULL)
			continue;
		a->timed = d->cond->reads_clock || d->cond->reads_windows;
		run->any_timed |= a->timed;
		a->windows = palloc(sizeof(int) * Max(bms_num_members(d->cond->attrs), 1));
		while ((attr = bms_next_member(d->cond->attrs, attr)) >= 0)
		{
			if (attr <= PZ_VIEW_NBASE)
				run->need_base[attr] = true;
			else if (spec != NULL && attr - PZ_VIEW_NBASE - 1 < spec->ncols)
			{
				int col = attr - PZ_VIEW_NBASE - 1;

				run->need_col[col] = true;
				run->need_trait[spec->cols[col].slot] = true;
				if (spec->cols[col].acc == PC_WCOUNT || spec->cols[col].acc == PC_WSUM)
					a->windows[a->nwindows++] = col;
			}
		}
	}
	run->n = n;
	run->rows = palloc(sizeof(HeapTuple) * RUN_CHUNK);
	run->result = palloc(sizeof(uint8) * RUN_CHUNK * Max(n, 1));
	run->due = palloc(sizeof(TimestampTz) * RUN_CHUNK);
	run->failed = palloc(sizeof(bool) * RUN_CHUNK);
	run->errors = palloc0(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < R_COUNT; i++)
		run->row_attr[i] = -1;
	MemoryContextSwitchTo(old);
	return run;
}

/* audience k's ExprStates, as its owner (ExecInitExpr checks EXECUTE); may ERROR */
static void
prepare_one(PzAudienceRun *run, int k)
{
	RunAudience *a = &run->aud[k];
	PzCondition *c = a->def->cond;
	PzUserContext saved;
	ListCell *lc;
	int i = 0;

	if (c == NULL)
		return;
	pz_run_as_begin(a->def->owner, &saved);
	pz_condition_check_columns(c, aset->view, a->def->owner);
	a->state = ExecInitExpr(c->expr, NULL);
	a->natoms = list_length(c->atoms);
	a->atoms = palloc(sizeof(RunAtom) * Max(a->natoms, 1));
	foreach (lc, c->atoms)
	{
		OpExpr *op = lfirst_node(OpExpr, lc);
		Expr *l = linitial(op->args), *r = lsecond(op->args);
		bool clock_left = pz_condition_reads_clock((Node *) l);
		RunAtom *at = &a->atoms[i++];

		at->cmp = ExecInitExpr((Expr *) op, NULL);
		at->clock_side = ExecInitExpr(clock_left ? l : r, NULL);
		at->other_side = ExecInitExpr(clock_left ? r : l, NULL);
		at->clock_type = exprType((Node *) (clock_left ? l : r));
		at->other_type = exprType((Node *) (clock_left ? r : l));
	}
	pz_run_as_end(&saved);
}

/*
 * Audiences k0 .. k1 - 1 prepared in one subtransaction; if that fails,
 * each in its own, so that one audience whose owner lost a right is the
 * only one left out of the run.
 */
typedef struct PrepareArgs
{
	PzAudienceRun *run;
	int k0, k1;
} PrepareArgs;

static void
prepare_fn(void *arg)
{
	PrepareArgs *x = arg;

	for (int k = x->k0; k < x->k1; k++)
		prepare_one(x->run, k);
}

static void
prepare_range(PzAudienceRun *run, int k0, int k1)
{
	PrepareArgs args = {run, k0, k1};
	ErrorData *err = in_subxact(prepare_fn, &args);

	if (err == NULL)
		return;
	for (int k = k0; k < k1; k++)
		run->aud[k].state = NULL;
	if (k1 - k0 > 1)
		for (int k = k0; k < k1; k++)
			prepare_range(run, k, k + 1);
	else
		run->errors[k0] = psprintf("the condition cannot be evaluated: %s", err->message);
}

/* the run's slot, expression context and ExprStates, for this transaction */
static void
run_prepare(PzAudienceRun *run)
{
	MemoryContext old = MemoryContextSwitchTo(run->cxt);

	run->slot = MakeSingleTupleTableSlot(run->view_desc, &TTSOpsVirtual);
	run->econtext = CreateStandaloneExprContext();
	run->params = makeParamList(1);
	run->params->numParams = 1;
	run->params->params[0].ptype = TIMESTAMPTZOID;
	run->params->params[0].pflags = PARAM_FLAG_CONST;
	run->params->params[0].isnull = false;
	run->econtext->ecxt_param_list_info = run->params;
	run->econtext->ecxt_scantuple = run->slot;
	if (run->n > 0)
		prepare_range(run, 0, run->n);
	run->prepared = true;
	MemoryContextSwitchTo(old);
}

static void run_flush(PzAudienceRun *run);

void
pz_audience_run_add(PzAudienceRun *run, HeapTuple row, TupleDesc desc)
{
	MemoryContext old;

	if (run->row_desc_src != desc)
	{
		/* rows of the old descriptor first (a cursor's fetches each bring one) */
		if (run->nrows > 0)
			run_flush(run);
		for (int i = 0; i < R_COUNT; i++)
		{
			run->row_attr[i] = -1;
			for (int a = 0; a < desc->natts; a++)
				if (!TupleDescAttr(desc, a)->attisdropped &&
					strcmp(NameStr(TupleDescAttr(desc, a)->attname), row_columns[i]) == 0)
					run->row_attr[i] = a;
			if (run->row_attr[i] < 0)
				elog(ERROR, "personalize audiences: a profile row without column %s",
					 row_columns[i]);
		}
		old = MemoryContextSwitchTo(run->cxt);
		run->row_desc = CreateTupleDescCopy(desc);
		MemoryContextSwitchTo(old);
		run->row_desc_src = desc;
	}
	if (run->nrows == RUN_CHUNK)
		run_flush(run);
	old = MemoryContextSwitchTo(run->cxt);
	run->rows[run->nrows++] = heap_copytuple(row);
	MemoryContextSwitchTo(old);
}

/* ---- evaluation ---- */

/* the view's row of stored row r into the slot, windowed columns as of now */
static void
run_fill_row(PzAudienceRun *run, int r)
{
	TupleTableSlot *slot = run->slot;
	Datum rv[64];
	bool rn[64];
	Datum *values = slot->tts_values;
	bool *nulls = slot->tts_isnull;
	const PcSpec *spec = run->spec;
	Datum *rvp = rv;
	bool *rnp = rn;

	if (run->row_desc->natts > 64)
	{
		rvp = palloc(sizeof(Datum) * run->row_desc->natts);
		rnp = palloc(sizeof(bool) * run->row_desc->natts);
	}
	ExecClearTuple(slot);
	heap_deform_tuple(run->rows[r], run->row_desc, rvp, rnp);
	for (int i = 0; i < slot->tts_tupleDescriptor->natts; i++)
	{
		values[i] = (Datum) 0;
		nulls[i] = true;
	}
#define COPY_BASE(attno, rcol)                                                                     \
	do                                                                                             \
	{                                                                                              \
		values[(attno) -1] = rvp[run->row_attr[rcol]];                                             \
		nulls[(attno) -1] = rnp[run->row_attr[rcol]];                                              \
	} while (0)
	if (run->need_base[1])
		COPY_BASE(1, R_ID);
	if (run->need_base[2] && !rnp[run->row_attr[R_KEY_NAMESPACE_ID]])
	{
		int32 id = DatumGetInt32(rvp[run->row_attr[R_KEY_NAMESPACE_ID]]);
		int n = pz_namespace_count();

		for (int i = 0; i < n; i++)
			if (pz_namespace_at(i)->id == id)
			{
				values[1] = CStringGetTextDatum(pz_namespace_at(i)->name);
				nulls[1] = false;
			}
	}
	if (run->need_base[3])
		COPY_BASE(3, R_KEY_VALUE);
	if (run->need_base[4])
		COPY_BASE(4, R_FIRST_SEEN);
	if (run->need_base[5])
		COPY_BASE(5, R_LAST_SEEN);
	if (run->need_base[6])
		COPY_BASE(6, R_UPDATED_AT);
#undef COPY_BASE
	if (spec != NULL)
	{
		Profile *p =
			rnp[run->row_attr[R_STATES]] ? NULL : profile_from_datum(rvp[run->row_attr[R_STATES]]);

		pc_spec_read_wanted(spec, p, run->states, run->need_trait);
		for (int i = 0; i < spec->ncols; i++)
			if (run->need_col[i])
				values[PZ_VIEW_NBASE + i] =
					pc_column_value(&spec->cols[i], run->states[spec->cols[i].slot], run->now,
									&nulls[PZ_VIEW_NBASE + i], NULL);
	}
	ExecStoreVirtualTuple(slot);
}

/* 0 false, 1 true, 2 NULL */
static inline int
eval_at(ExprState *state, PzAudienceRun *run, TimestampTz t)
{
	bool isnull;
	Datum d;

	run->params->params[0].value = TimestampTzGetDatum(t);
	d = ExecEvalExprSwitchContext(state, run->econtext, &isnull);
	return isnull ? 2 : DatumGetBool(d) ? 1 : 0;
}

/* a side's value in microseconds, for an estimate; false if it is not a time */
static bool
side_usecs(ExprState *side, Oid type, PzAudienceRun *run, TimestampTz t, double *out)
{
	bool isnull;
	Datum d;

	run->params->params[0].value = TimestampTzGetDatum(t);
	d = ExecEvalExprSwitchContext(side, run->econtext, &isnull);
	if (isnull)
		return false;
	switch (type)
	{
		case TIMESTAMPTZOID:
		case TIMESTAMPOID:
			*out = (double) DatumGetInt64(d);
			return true;
		case DATEOID:
			*out = (double) DatumGetDateADT(d) * USECS_PER_DAY;
			return true;
		case INTERVALOID:
		{
			Interval *i = DatumGetIntervalP(d);

			*out = (double) i->time + (double) i->day * USECS_PER_DAY +
				   (double) i->month * DAYS_PER_MONTH * USECS_PER_DAY;
			return true;
		}
		default:
			return false;
	}
}

/*
 * The first moment after now at which an atom (a comparison monotone in
 * the clock) has another value, to the microsecond; 0 if none within
 * CLOCK_HORIZON_US, or before bound if bound is not 0 (a moment already
 * known to come first: a flip after it does not matter).  Monotone: if it
 * has the same value at the horizon as now, it never flips before it (two
 * evaluations).  Otherwise the flip is estimated
 * from its two sides (the side with the clock moves about linearly with
 * it: now() - interval '30 days' crosses last_seen 30 days after it),
 * bracketed by steps growing from the estimate, and found by halving: a
 * few evaluations when the estimate is exact, as it is for intervals of
 * time, and still exact when it is not (months, daylight saving, dates).
 */
static TimestampTz
atom_flip(RunAtom *atom, PzAudienceRun *run, TimestampTz bound)
{
	TimestampTz now = run->now;
	TimestampTz horizon =
		bound != 0 && bound < now + CLOCK_HORIZON_US ? bound : now + CLOCK_HORIZON_US;
	int v0 = eval_at(atom->cmp, run, now);
	TimestampTz est = now + 1, lo, hi;
	double o, s0, s1;
	int64 step = 1;

	if (eval_at(atom->cmp, run, horizon) == v0)
		return 0;
	if (side_usecs(atom->other_side, atom->other_type, run, now, &o) &&
		side_usecs(atom->clock_side, atom->clock_type, run, now, &s0) &&
		side_usecs(atom->clock_side, atom->clock_type, run, now + USECS_PER_DAY, &s1) && s1 != s0)
	{
		double at = (double) now + (o - s0) * (double) USECS_PER_DAY / (s1 - s0);

		if (at > (double) now && at < (double) horizon)
			est = (TimestampTz) at;
	}
	if (eval_at(atom->cmp, run, est) != v0)
	{
		/* flipped at est: find a moment before it that is not */
		hi = est;
		for (;;)
		{
			lo = hi - step > now ? hi - step : now;
			if (lo == now || eval_at(atom->cmp, run, lo) == v0)
				break;
			hi = lo;
			step *= 4;
		}
	}
	else
	{
		lo = est;
		for (;;)
		{
			hi = lo + step < horizon ? lo + step : horizon;
			if (hi == horizon || eval_at(atom->cmp, run, hi) != v0)
				break;
			lo = hi;
			step *= 4;
		}
	}
	while (hi - lo > 1)
	{
		TimestampTz mid = lo + (hi - lo) / 2;

		if (eval_at(atom->cmp, run, mid) != v0)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/*
 * The next moment after now at which audience a's result for the row in
 * the slot (now: current) changes with time alone; 0 if never.  Exact:
 * only where a windowed column changes or a clock comparison flips can it
 * change, and it is evaluated there, in order.  If a column has more
 * changes than were looked at, the last one looked at is returned: the
 * profile is looked at again then.  A bound (not 0) is a moment already
 * scheduled for the row by another audience: what comes after it is not
 * looked for, and 0 is returned then (the row is looked at again at the
 * bound, and its next moments are found from there).
 */
static TimestampTz
run_schedule(PzAudienceRun *run, RunAudience *a, int current, TimestampTz bound)
{
	const PcSpec *spec = run->spec;
	int max = a->nwindows * WINDOW_LOOKAHEAD + a->natoms;
	TimestampTz *cand = palloc(sizeof(TimestampTz) * Max(max, 1));
	TimestampTz horizon = DT_NOEND, found = 0;
	Datum *saved = palloc(sizeof(Datum) * Max(a->nwindows, 1));
	bool *saved_null = palloc(sizeof(bool) * Max(a->nwindows, 1));
	int n = 0;

	for (int w = 0; w < a->nwindows; w++)
	{
		const PcColumn *col = &spec->cols[a->windows[w]];
		PzState *st = run->states[col->slot];
		bool more;
		int got;

		saved[w] = run->slot->tts_values[PZ_VIEW_NBASE + a->windows[w]];
		saved_null[w] = run->slot->tts_isnull[PZ_VIEW_NBASE + a->windows[w]];
		if (st == NULL)
			continue;
		got = windowed_changes((WindowedState *) st, col->span, run->now, cand + n,
							   WINDOW_LOOKAHEAD, &more);
		if (more && got > 0 && cand[n + got - 1] < horizon)
			horizon = cand[n + got - 1];
		n += got;
	}
	for (int i = 0; i < a->natoms; i++)
	{
		TimestampTz f = atom_flip(&a->atoms[i], run, bound);

		if (f != 0)
			cand[n++] = f;
	}
	if (bound != 0 && bound < horizon)
		horizon = bound;
	qsort(cand, n, sizeof(TimestampTz), pz_timestamp_cmp);
	for (int i = 0; i < n && found == 0; i++)
	{
		TimestampTz t = cand[i];

		if (t > horizon)
			break;
		if (i > 0 && t == cand[i - 1])
			continue;
		for (int w = 0; w < a->nwindows; w++)
		{
			const PcColumn *col = &spec->cols[a->windows[w]];

			run->slot->tts_values[PZ_VIEW_NBASE + a->windows[w]] =
				pc_column_value(col, run->states[col->slot], t,
								&run->slot->tts_isnull[PZ_VIEW_NBASE + a->windows[w]], NULL);
		}
		if (eval_at(a->state, run, t) != current)
			found = t;
	}
	for (int w = 0; w < a->nwindows; w++)
	{
		run->slot->tts_values[PZ_VIEW_NBASE + a->windows[w]] = saved[w];
		run->slot->tts_isnull[PZ_VIEW_NBASE + a->windows[w]] = saved_null[w];
	}
	if (found == 0 && horizon != DT_NOEND && horizon != bound)
		found = horizon;
	return found;
}

/*
 * Evaluate rows r0 .. r1 - 1 (only audience k if k >= 0) as each
 * audience's owner; results and dues into the run.  May ERROR: the
 * caller holds a subtransaction.
 */
static void
run_eval_rows(PzAudienceRun *run, int r0, int r1, int only_k)
{
	Oid save_userid;
	int save_sec;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	for (int r = r0; r < r1; r++)
	{
		MemoryContext old = MemoryContextSwitchTo(run->econtext->ecxt_per_tuple_memory);

		run_fill_row(run, r);
		for (int k = 0; k < run->n; k++)
		{
			RunAudience *a = &run->aud[k];
			int v;

			if ((only_k >= 0 && k != only_k) || a->state == NULL)
				continue;
			SetUserIdAndSecContext(a->def->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
													  SECURITY_RESTRICTED_OPERATION);
			v = eval_at(a->state, run, run->now);
			run->result[r * run->n + k] = v == 1;
			if (a->timed)
			{
				TimestampTz t = run_schedule(run, a, v, run->due[r]);

				if (t != 0 && (run->due[r] == 0 || t < run->due[r]))
					run->due[r] = t;
			}
			SetUserIdAndSecContext(save_userid, save_sec);
		}
		MemoryContextSwitchTo(old);
		ExecClearTuple(run->slot);
		ResetExprContext(run->econtext);
	}
}

typedef struct EvalArgs
{
	PzAudienceRun *run;
	int r0, r1, only_k;
} EvalArgs;

static void
eval_fn(void *arg)
{
	EvalArgs *x = arg;

	run_eval_rows(x->run, x->r0, x->r1, x->only_k);
}

/* run_eval_rows in a subtransaction: false and *msg if it failed */
static bool
run_eval_try(PzAudienceRun *run, int r0, int r1, int only_k, char **msg)
{
	EvalArgs args = {run, r0, r1, only_k};
	ErrorData *e = in_subxact(eval_fn, &args);

	if (e == NULL)
		return true;
	ExecClearTuple(run->slot);
	ResetExprContext(run->econtext);
	if (msg != NULL)
		*msg = e->message;
	return false;
}

static void
run_evaluate(PzAudienceRun *run)
{
	PzUserContext saved;
	int nrows = run->nrows;

	if (!run->prepared)
		run_prepare(run);
	memset(run->due, 0, sizeof(TimestampTz) * nrows);
	memset(run->failed, 0, sizeof(bool) * nrows);
	/* unknown until evaluated: an audience without an ExprState changes nothing */
	memset(run->result, 2, sizeof(uint8) * nrows * run->n);
	/* names in user code resolve as they did when the condition was checked */
	pz_run_as_begin(GetUserId(), &saved);
	if (!run_eval_try(run, 0, nrows, -1, NULL))
	{
		for (int r = 0; r < nrows; r++)
		{
			memset(run->result + r * run->n, 2, run->n);
			run->due[r] = 0;
			if (run_eval_try(run, r, r + 1, -1, NULL))
				continue;
			memset(run->result + r * run->n, 2, run->n);
			run->due[r] = 0;
			run->failed[r] = true;
			for (int k = 0; k < run->n; k++)
			{
				char *msg = NULL;

				if (run->aud[k].state == NULL)
					continue;
				if (!run_eval_try(run, r, r + 1, k, &msg))
				{
					run->result[r * run->n + k] = 2;
					if (run->errors[k] == NULL)
						run->errors[k] = MemoryContextStrdup(run->cxt, msg);
				}
			}
			/* a due of the audiences that did not fail is kept; the failed retry later */
			if (run->due[r] == 0 || run->due[r] > run->now + RETRY_AFTER_ERROR_US)
				run->due[r] = run->now + RETRY_AFTER_ERROR_US;
		}
	}
	pz_run_as_end(&saved);
}

/* ---- writing what changed ---- */

static SPIPlanPtr plan_read_members = NULL;
static SPIPlanPtr plan_read_dues = NULL;
static SPIPlanPtr plan_change = NULL;
static SPIPlanPtr plan_gone = NULL;
static SPIPlanPtr plan_due_set = NULL;
static SPIPlanPtr plan_due_clear = NULL;
static SPIPlanPtr plan_record_error = NULL;

/* the entries and exits: memberships changed, events appended, NOTIFY queued */
static void
write_changes(PzAudienceRun *run, int n, int32 *aud, int64 *pid, bool *entered)
{
	Datum v[5];

	if (n == 0)
		return;
	v[0] = PointerGetDatum(int4_array(aud, n));
	v[1] = PointerGetDatum(int8_array(pid, n));
	v[2] = PointerGetDatum(bool_array(entered, n));
	v[3] = TimestampTzGetDatum(run->now);
	v[4] = CStringGetTextDatum(run->why);
	run_plan(keep_plan(&plan_change,
					   "WITH ch(a, p, e) AS (SELECT * FROM unnest($1::int4[], $2::int8[], "
					   "$3::bool[])), "
					   "del AS (DELETE FROM personalize.audience_memberships m USING ch "
					   "WHERE NOT ch.e AND m.audience_id = ch.a AND m.profile_id = ch.p), "
					   "ins AS (INSERT INTO personalize.audience_memberships "
					   "(audience_id, profile_id, since) SELECT ch.a, ch.p, $4 FROM ch WHERE ch.e) "
					   "INSERT INTO personalize.audience_events (audience, profile_id, entered, "
					   "at, why) SELECT au.name, ch.p, ch.e, $4, $5 FROM ch "
					   "JOIN personalize.audiences au ON au.id = ch.a ORDER BY ch.p, au.id "
					   "RETURNING audience, entered, id",
					   5,
					   (Oid[]){INT4ARRAYOID, INT8ARRAYOID, BOOLARRAYOID, TIMESTAMPTZOID, TEXTOID}),
			 v, SPI_OK_INSERT_RETURNING, "recording entries and exits");
	notify_events(SPI_tuptable, SPI_processed);
	run->changes += SPI_processed;
}

static void
record_errors(PzAudienceRun *run)
{
	for (int k = 0; k < run->n; k++)
	{
		const char *msg = run->errors[k] ? run->errors[k] : run->aud[k].def->problem;
		Datum v[2];

		if (msg == NULL)
			continue;
		v[0] = Int32GetDatum(run->aud[k].def->id);
		v[1] = CStringGetTextDatum(msg);
		run_plan(keep_plan(&plan_record_error,
						   "UPDATE personalize.audiences SET errors = errors + 1, last_error = $2, "
						   "last_error_at = now() WHERE id = $1",
						   2, (Oid[]){INT4OID, TEXTOID}),
				 v, SPI_OK_UPDATE, "recording an audience's error");
		ereport(WARNING, (errmsg("audience \"%s\": %s", run->aud[k].def->name, msg),
						  errhint("Memberships the condition could not decide stay as they were; "
								  "see personalize.audiences.last_error.")));
		run->errors[k] = NULL;
		run->aud[k].def->problem = NULL; /* recorded once per compilation */
	}
}

/* evaluate the rows collected, compare with the stored memberships, write */
static void
run_flush(PzAudienceRun *run)
{
	int nrows = run->nrows;
	int64 *ids;
	HTAB *rowmap;
	HASHCTL info = {0};
	uint8 *current;
	TimestampTz *old_due;
	int32 *ch_aud;
	int64 *ch_pid;
	bool *ch_e;
	int nch = 0;
	PzUserContext saved;
	bool as_owner;
	bool dues = run->any_timed || strcmp(run->why, "time") == 0;
	MemoryContext old;
	typedef struct RowEntry
	{
		int64 id;
		int row;
	} RowEntry;

	if (nrows == 0)
		return;
	run_evaluate(run);

	old = MemoryContextSwitchTo(run->cxt);
	ids = palloc(sizeof(int64) * nrows);
	info.keysize = sizeof(int64);
	info.entrysize = sizeof(RowEntry);
	info.hcxt = run->cxt;
	rowmap = hash_create("personalize audience rows", nrows, &info,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int r = 0; r < nrows; r++)
	{
		bool isnull, found;
		RowEntry *e;

		ids[r] = DatumGetInt64(
			heap_getattr(run->rows[r], run->row_attr[R_ID] + 1, run->row_desc, &isnull));
		e = hash_search(rowmap, &ids[r], HASH_ENTER, &found);
		e->row = r; /* a profile added twice: its last row counts */
	}
	current = palloc0(sizeof(uint8) * nrows * run->n);
	old_due = palloc0(sizeof(TimestampTz) * nrows);
	ch_aud = palloc(sizeof(int32) * nrows * run->n);
	ch_pid = palloc(sizeof(int64) * nrows * run->n);
	ch_e = palloc(sizeof(bool) * nrows * run->n);
	MemoryContextSwitchTo(old);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	as_owner = writer_begin(&saved);
	{
		Datum v[1] = {PointerGetDatum(int8_array(ids, nrows))};

		run_plan(keep_plan(&plan_read_members,
						   "SELECT profile_id, audience_id FROM personalize.audience_memberships "
						   "WHERE profile_id = ANY ($1)",
						   1, (Oid[]){INT8ARRAYOID}),
				 v, SPI_OK_SELECT, "reading memberships");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool isnull;
			int64 p = DatumGetInt64(
				SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			int32 a = DatumGetInt32(
				SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
			RowEntry *e = hash_search(rowmap, &p, HASH_FIND, NULL);

			if (e == NULL)
				continue;
			for (int k = 0; k < run->n; k++)
				if (run->aud[k].def->id == a)
					current[e->row * run->n + k] = 1;
		}
		if (dues)
		{
			run_plan(keep_plan(&plan_read_dues,
							   "SELECT profile_id, due FROM personalize.audience_due "
							   "WHERE profile_id = ANY ($1)",
							   1, (Oid[]){INT8ARRAYOID}),
					 v, SPI_OK_SELECT, "reading the schedule");
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				bool isnull;
				int64 p = DatumGetInt64(
					SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
				RowEntry *e = hash_search(rowmap, &p, HASH_FIND, NULL);

				if (e != NULL)
					old_due[e->row] = DatumGetTimestampTz(
						SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
			}
		}
	}

	/* entries and exits, profile by profile (each profile's last row) */
	for (int r = 0; r < nrows; r++)
	{
		RowEntry *e = hash_search(rowmap, &ids[r], HASH_FIND, NULL);

		if (e->row != r)
			continue;
		for (int k = 0; k < run->n; k++)
		{
			uint8 now_in = run->result[r * run->n + k];

			if (now_in == 2 || now_in == current[r * run->n + k])
				continue;
			ch_aud[nch] = run->aud[k].def->id;
			ch_pid[nch] = ids[r];
			ch_e[nch] = now_in == 1;
			nch++;
		}
	}
	write_changes(run, nch, ch_aud, ch_pid, ch_e);

	if (dues)
	{
		int64 *set_id = palloc(sizeof(int64) * nrows), *clear_id = palloc(sizeof(int64) * nrows);
		TimestampTz *set_due = palloc(sizeof(TimestampTz) * nrows);
		int nset = 0, nclear = 0;

		for (int r = 0; r < nrows; r++)
		{
			RowEntry *e = hash_search(rowmap, &ids[r], HASH_FIND, NULL);
			TimestampTz want = run->due[r];

			if (e->row != r)
				continue;
			/*
			 * A run of one audience knows nothing of the others' moments: an
			 * earlier one stays, also one that has passed and waits for the
			 * worker (dropping it lost the other audiences' transitions).
			 */
			if (run->only_audience != 0 && old_due[r] != 0 && (want == 0 || old_due[r] < want))
				want = old_due[r];
			if (want == old_due[r])
				continue;
			if (want == 0)
				clear_id[nclear++] = ids[r];
			else
			{
				set_id[nset] = ids[r];
				set_due[nset++] = want;
				if (next_due_hint == DT_NOBEGIN || want < next_due_hint)
					next_due_hint = want;
			}
		}
		if (nset > 0)
		{
			Datum v[2] = {PointerGetDatum(int8_array(set_id, nset)),
						  PointerGetDatum(timestamptz_array(set_due, nset))};

			run_plan(keep_plan(&plan_due_set,
							   "INSERT INTO personalize.audience_due (profile_id, due) "
							   "SELECT * FROM unnest($1::int8[], $2::timestamptz[]) "
							   "ON CONFLICT (profile_id) DO UPDATE SET due = excluded.due",
							   2, (Oid[]){INT8ARRAYOID, TIMESTAMPTZARRAYOID}),
					 v, SPI_OK_INSERT, "scheduling");
		}
		if (nclear > 0)
		{
			Datum v[1] = {PointerGetDatum(int8_array(clear_id, nclear))};

			run_plan(keep_plan(&plan_due_clear,
							   "DELETE FROM personalize.audience_due WHERE profile_id = ANY ($1)",
							   1, (Oid[]){INT8ARRAYOID}),
					 v, SPI_OK_DELETE, "unscheduling");
		}
	}
	record_errors(run);
	if (as_owner)
		pz_run_as_end(&saved);
	SPI_finish();

	for (int r = 0; r < nrows; r++)
		heap_freetuple(run->rows[r]);
	run->nrows = 0;
	hash_destroy(rowmap);
}

void
pz_audience_run_gone(PzAudienceRun *run, int64 profile_id)
{
	if (run->ngone == run->gone_cap)
	{
		run->gone_cap = Max(16, run->gone_cap * 2);
		run->gone = run->gone == NULL ? MemoryContextAlloc(run->cxt, sizeof(int64) * run->gone_cap)
									  : repalloc(run->gone, sizeof(int64) * run->gone_cap);
	}
	run->gone[run->ngone++] = profile_id;
}

static void
run_write_gone(PzAudienceRun *run)
{
	PzUserContext saved;
	bool as_owner;
	Datum v[3];

	if (run->ngone == 0)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	as_owner = writer_begin(&saved);
	v[0] = PointerGetDatum(int8_array(run->gone, run->ngone));
	v[1] = TimestampTzGetDatum(run->now);
	v[2] = CStringGetTextDatum(run->why);
	run_plan(keep_plan(&plan_gone,
					   "WITH d AS (DELETE FROM personalize.audience_memberships m "
					   "WHERE m.profile_id = ANY ($1) RETURNING m.audience_id, m.profile_id), "
					   "dd AS (DELETE FROM personalize.audience_due WHERE profile_id = ANY ($1)) "
					   "INSERT INTO personalize.audience_events (audience, profile_id, entered, "
					   "at, why) SELECT au.name, d.profile_id, false, $2, $3 FROM d "
					   "JOIN personalize.audiences au ON au.id = d.audience_id "
					   "ORDER BY d.profile_id, au.id RETURNING audience, entered, id",
					   3, (Oid[]){INT8ARRAYOID, TIMESTAMPTZOID, TEXTOID}),
			 v, SPI_OK_INSERT_RETURNING, "ending memberships");
	notify_events(SPI_tuptable, SPI_processed);
	run->changes += SPI_processed;
	if (as_owner)
		pz_run_as_end(&saved);
	SPI_finish();
	run->ngone = 0;
}

uint64
pz_audience_run_end(PzAudienceRun *run)
{
	uint64 changes;

	run_write_gone(run);
	run_flush(run);
	if (run->econtext != NULL)
		FreeExprContext(run->econtext, true);
	if (run->slot != NULL)
		ExecDropSingleTupleTableSlot(run->slot);
	changes = run->changes;
	MemoryContextDelete(run->cxt);
	pfree(run);
	return changes;
}

/* ---- the other writers of profiles ---- */

static const char *const profile_row_sql =
	"SELECT p.id, p.key_namespace_id, p.key_value, p.states, p.first_seen, p.last_seen, "
	"p.updated_at FROM personalize.profiles p";

void
pz_audiences_profile_merged(int64 from, int64 into)
{
	PzAudienceRun *run = pz_audience_run_begin("merge", 0);
	Datum v[1];

	if (run == NULL)
		return;
	pz_audience_run_gone(run, from);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	v[0] = Int64GetDatum(into);
	if (SPI_execute_with_args(psprintf("%s WHERE p.id = $1", profile_row_sql), 1, (Oid[]){INT8OID},
							  v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize audiences: could not read profile %lld", (long long) into);
	for (uint64 i = 0; i < SPI_processed; i++)
		pz_audience_run_add(run, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	SPI_finish();
	(void) pz_audience_run_end(run);
}

uint64
pz_audiences_forget(int64 profile_id, int nids, const int64 *ids)
{
	PzUserContext saved;
	bool as_owner;
	Datum v[3];
	uint64 deleted;

	if (!OidIsValid(audiences_relid()))
		return 0;
	audiences_lock();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	as_owner = writer_begin(&saved);
	v[0] = PointerGetDatum(int8_array(ids, nids));
	if (SPI_execute_with_args("DELETE FROM personalize.audience_events WHERE profile_id = ANY ($1)",
							  1, (Oid[]){INT8ARRAYOID}, v, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "forget: could not delete audience events");
	deleted = SPI_processed;
	v[0] = Int64GetDatum(profile_id);
	v[1] = TimestampTzGetDatum(GetCurrentTimestamp());
	if (SPI_execute_with_args(
			"WITH d AS (DELETE FROM personalize.audience_memberships m WHERE m.profile_id = $1 "
			"RETURNING m.audience_id), "
			"dd AS (DELETE FROM personalize.audience_due WHERE profile_id = $1) "
			"INSERT INTO personalize.audience_events (audience, profile_id, entered, at, why) "
			"SELECT au.name, $1, false, $2, 'erasure' FROM d "
			"JOIN personalize.audiences au ON au.id = d.audience_id ORDER BY au.id "
			"RETURNING audience, entered, id",
			2, (Oid[]){INT8OID, TIMESTAMPTZOID}, v, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "forget: could not end audience memberships");
	notify_events(SPI_tuptable, SPI_processed);
	if (as_owner)
		pz_run_as_end(&saved);
	SPI_finish();
	return deleted;
}

List *
pz_audience_names_of(int64 profile_id, bool *exists)
{
	Oid relid;
	Relation rel, idx;
	ScanKeyData key[1];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	List *names = NIL;
	AclResult acl;

	relid = get_relname_relid("audience_memberships", get_namespace_oid("personalize", false));
	*exists = OidIsValid(relid);
	if (!*exists)
		return NIL;
	/* a caller who may not read memberships is not told them */
	acl = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	*exists = acl == ACLCHECK_OK;
	if (!*exists)
		return NIL;
	if (aset == NULL || aset_stale)
		aset_load();
	if (aset->n == 0)
		return NIL;
	rel = table_open(relid, AccessShareLock);
	idx = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(profile_id));
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool isnull;
		int32 a = DatumGetInt32(slot_getattr(slot, 1, &isnull));
		int k = aset_index(aset, a);

		if (k >= 0)
			names = lappend(names, aset->defs[k].name);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	list_sort(names, (list_sort_comparator) pg_qsort_strcmp);
	return names;
}

/* ---- the worker: time-driven transitions and retention ---- */

bool
pz_audiences_due(TimestampTz now)
{
	if (next_due_hint != DT_NOBEGIN && next_due_hint <= now)
		return true;
	if (TimestampDifferenceExceeds(schedule_read_at, now, pz_audience_delay))
		return true;
	return false;
}

uint64
pz_audiences_apply_due(int limit)
{
	PzAudienceRun *run;
	TimestampTz now = GetCurrentTimestamp();
	uint64 changes = 0;
	Datum v[2];
	bool isnull;

	schedule_read_at = now;
	if (!OidIsValid(audiences_relid()))
	{
		next_due_hint = DT_NOBEGIN;
		return 0;
	}
	run = pz_audience_run_begin("time", 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	v[0] = TimestampTzGetDatum(now);
	v[1] = Int64GetDatum(limit);
	if (run == NULL)
	{
		/* no audience any more: nothing is due */
		if (SPI_execute_with_args("DELETE FROM personalize.audience_due d WHERE d.due <= $1", 1,
								  (Oid[]){TIMESTAMPTZOID}, v, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "personalize audiences: could not clean the schedule");
	}
	else
	{
		/*
		 * The profiles due, by the schedule's index, then their rows by the
		 * primary key (one query with IN (subquery) was planned as a hash
		 * join over every profile); the moments of profiles that are gone
		 * are deleted.
		 */
		int64 *ids;
		int nids;
		HTAB *found;
		HASHCTL info = {0};
		int64 *gone;
		int ngone = 0;

		if (SPI_execute_with_args("SELECT d.profile_id FROM personalize.audience_due d "
								  "WHERE d.due <= $1 ORDER BY d.due LIMIT $2",
								  2, (Oid[]){TIMESTAMPTZOID, INT8OID}, v, NULL, false,
								  0) != SPI_OK_SELECT)
			elog(ERROR, "personalize audiences: could not read the schedule");
		nids = (int) SPI_processed;
		ids = palloc(sizeof(int64) * Max(nids, 1));
		for (int i = 0; i < nids; i++)
			ids[i] = DatumGetInt64(
				SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		info.keysize = sizeof(int64);
		info.entrysize = sizeof(int64);
		info.hcxt = CurrentMemoryContext;
		found = hash_create("personalize due profiles", Max(nids, 16), &info,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		if (nids > 0)
		{
			v[0] = PointerGetDatum(int8_array(ids, nids));
			if (SPI_execute_with_args(psprintf("%s WHERE p.id = ANY ($1)", profile_row_sql), 1,
									  (Oid[]){INT8ARRAYOID}, v, NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "personalize audiences: could not read the profiles due");
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				int64 id = DatumGetInt64(
					SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

				(void) hash_search(found, &id, HASH_ENTER, NULL);
				pz_audience_run_add(run, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
			}
		}
		gone = palloc(sizeof(int64) * Max(nids, 1));
		for (int i = 0; i < nids; i++)
			if (hash_search(found, &ids[i], HASH_FIND, NULL) == NULL)
				gone[ngone++] = ids[i];
		if (ngone > 0)
		{
			v[0] = PointerGetDatum(int8_array(gone, ngone));
			if (SPI_execute_with_args(
					"DELETE FROM personalize.audience_due WHERE profile_id = ANY ($1)", 1,
					(Oid[]){INT8ARRAYOID}, v, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "personalize audiences: could not clean the schedule");
		}
	}
	SPI_finish();
	if (run != NULL)
		changes = pz_audience_run_end(run);

	/* the earliest moment left */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	if (SPI_execute("SELECT min(due) FROM personalize.audience_due", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize audiences: could not read the schedule");
	{
		Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		next_due_hint = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
	}
	SPI_finish();
	return changes;
}

uint64
pz_audiences_expire_events(int limit)
{
	Datum v[2];
	uint64 n;

	if (pz_audience_retention <= 0 || !OidIsValid(audiences_relid()))
		return 0;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	v[0] = TimestampTzGetDatum(GetCurrentTimestamp() -
							   (TimestampTz) pz_audience_retention * USECS_PER_SEC);
	v[1] = Int64GetDatum(limit);
	/*
	 * Events are written in the order of their time (every writer holds the
	 * membership lock until it commits, and at is when it wrote): the oldest
	 * by id, up to the first that is recent enough, through the primary key.
	 */
	if (SPI_execute_with_args(
			"DELETE FROM personalize.audience_events WHERE id <= (SELECT max(x.id) FROM "
			"(SELECT e.id FROM personalize.audience_events e ORDER BY e.id LIMIT $2) x) "
			"AND at < $1",
			2, (Oid[]){TIMESTAMPTZOID, INT8OID}, v, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "personalize audiences: could not delete old events");
	n = SPI_processed;
	SPI_finish();
	return n;
}

/* ---- SQL functions ---- */

PG_FUNCTION_INFO_V1(pz_audience_check);

/* _audience_check(condition, owner): ERROR unless valid; whether it reads time */
Datum
pz_audience_check(PG_FUNCTION_ARGS)
{
	char *condition;
	Oid owner;
	Oid view;
	TransactionId xmin;
	const PcSpec *spec;
	PzCondition *c;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("an audience's condition must not be NULL"),
						errhint("Write a boolean expression over personalize.profile_view's "
								"columns, e.g. 'cart_adds_4h > 0 AND orders_4h = 0'.")));
	if (PG_ARGISNULL(1))
		elog(ERROR, "_audience_check: the owner must not be NULL");
	condition = text_to_cstring(PG_GETARG_TEXT_PP(0));
	owner = PG_GETARG_OID(1);
	spec = pz_profile_view_spec(&view, &xmin);

	/* it runs user code as owner: only as oneself, or as the extension's functions do */
	if (owner != GetUserId() && !superuser())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("permission denied to check a condition as another role")));
	if (!OidIsValid(view))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
						errmsg("personalize.profile_view does not exist yet"),
						errhint("An audience's condition reads the profile view, which the first "
								"personalize.add_trait() or register_source() makes.")));
	c = pz_condition_compile(condition, owner, view, spec);
	PG_RETURN_BOOL(c->reads_clock || c->reads_windows);
}

PG_FUNCTION_INFO_V1(pz_audiences_changed);

Datum
pz_audiences_changed(PG_FUNCTION_ARGS)
{
	Oid relid = audiences_relid();

	/* no run writes memberships of the old definitions after this commits */
	audiences_lock();
	if (OidIsValid(relid))
		CacheInvalidateRelcacheByRelid(relid);
	aset_stale = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pz_audiences_check_all);

Datum
pz_audiences_check_all(PG_FUNCTION_ARGS)
{
	Oid view;
	TransactionId xmin;
	const PcSpec *spec;

	aset_load();
	if (aset->n == 0)
		PG_RETURN_VOID();
	spec = pz_profile_view_spec(&view, &xmin);
	for (int i = 0; i < aset->n; i++)
	{
		AudienceDef *a = &aset->defs[i];
		MemoryContext cxt = CurrentMemoryContext;

		PG_TRY();
		{
			if (!OidIsValid(view))
				elog(ERROR, "personalize.profile_view does not exist");
			(void) pz_condition_compile(a->condition, a->owner, view, spec);
		}
		PG_CATCH();
		{
			ErrorData *e;

			MemoryContextSwitchTo(cxt);
			e = CopyErrorData();
			FlushErrorState();
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("audience \"%s\" would no longer work: %s", a->name, e->message),
					 errdetail("Its condition is: %s", a->condition),
					 errhint("Change its condition with personalize.alter_audience() or drop it "
							 "with personalize.drop_audience() first.")));
		}
		PG_END_TRY();
	}
	aset_stale = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pz_audiences_evaluate);

/*
 * _audiences_evaluate(profile_ids bigint[], why text, audience_id integer):
 * the given profiles (NULL: every profile, and memberships of profiles
 * that no longer exist end), for every audience or one.
 */
Datum
pz_audiences_evaluate(PG_FUNCTION_ARGS)
{
	char *why = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32 only = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	PzAudienceRun *run;
	Portal portal;
	Datum v[1];
	uint64 changes;

	if (PG_ARGISNULL(1))
		elog(ERROR, "_audiences_evaluate: why must not be NULL");
	aset_stale = true; /* this transaction may have changed them */
	run = pz_audience_run_begin(why, only);
	if (run == NULL)
		PG_RETURN_INT64(0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	if (PG_ARGISNULL(0))
	{
		portal = SPI_cursor_open_with_args(NULL, profile_row_sql, 0, NULL, NULL, NULL, false, 0);
		v[0] = (Datum) 0;
	}
	else
	{
		v[0] = PG_GETARG_DATUM(0);
		portal =
			SPI_cursor_open_with_args(NULL, psprintf("%s WHERE p.id = ANY ($1)", profile_row_sql),
									  1, (Oid[]){INT8ARRAYOID}, v, NULL, false, 0);
	}
	for (;;)
	{
		SPI_cursor_fetch(portal, true, RUN_CHUNK);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
			pz_audience_run_add(run, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
		run_flush(run);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	/* memberships of profiles that are no more */
	if (SPI_execute_with_args(
			"SELECT DISTINCT m.profile_id FROM personalize.audience_memberships m "
			"WHERE ($1::int8[] IS NULL OR m.profile_id = ANY ($1)) AND NOT EXISTS "
			"(SELECT 1 FROM personalize.profiles p WHERE p.id = m.profile_id)",
			1, (Oid[]){INT8ARRAYOID}, v, PG_ARGISNULL(0) ? "n" : " ", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize audiences: could not read memberships");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool isnull;

		pz_audience_run_gone(run, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
															  SPI_tuptable->tupdesc, 1, &isnull)));
	}
	SPI_finish();
	changes = pz_audience_run_end(run);
	PG_RETURN_INT64((int64) changes);
}
