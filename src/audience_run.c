/*
 * audience_run.c
 *	  A run: the profile rows a writer wrote, every audience evaluated on
 *	  each as the audience's owner, and what changed written in the
 *	  writer's transaction: memberships, entries and exits, the schedule.
 *
 * The writers: the streaming worker's apply (why "event"), a merge,
 * forget(), rebuild() and refresh_audience(), and the worker's
 * time-driven transitions (why "time", audience_time.c).
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
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "audience_internal.h"
#include "identity.h"
#include "profile.h"

/* rows evaluated and written at a time: bounds a run's memory */
#define RUN_CHUNK 10000
/* a profile whose evaluation failed is tried again after this */
#define RETRY_AFTER_ERROR_US (60 * USECS_PER_SEC)

/* what this process scheduled: the earliest moment it wrote (audience_worker.c reads it) */
TimestampTz aud_next_due_hint = DT_NOBEGIN;

static const char *const row_columns[R_COUNT] = {
	"id", "key_namespace_id", "key_value", "states", "first_seen", "last_seen", "updated_at"};

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
	if (!OidIsValid(aud_relid()))
		return NULL;
	aud_lock();
	s = aud_set_ready(&spec);
	if (s->n == 0 || (only_audience != 0 && aud_set_index(s, only_audience) < 0))
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
	run->rows_cxt =
		AllocSetContextCreate(run->cxt, "personalize audience rows", ALLOCSET_DEFAULT_SIZES);
	run->rows = palloc(sizeof(HeapTuple) * RUN_CHUNK);
	run->held = palloc(sizeof(Profile *) * RUN_CHUNK);
	run->result = palloc(sizeof(uint8) * RUN_CHUNK * Max(n, 1));
	run->due = palloc(sizeof(TimestampTz) * RUN_CHUNK);
	run->failed = palloc(sizeof(bool) * RUN_CHUNK);
	run->errors = palloc0(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < R_COUNT; i++)
		run->row_attr[i] = -1;
	MemoryContextSwitchTo(old);
	return run;
}

/*
 * The parts of an expression that read the clock and no column become
 * parameters 2, 3, ... (the same part once): their values at a moment are
 * computed once, not once per profile (aud_fetch_param).
 */
static Node *
clock_terms(Node *node, List **terms)
{
	if (node == NULL)
		return NULL;
	if (!IsA(node, Param) && !IsA(node, Const) && pz_condition_reads_clock(node) &&
		!contain_var_clause(node))
	{
		Param *p = makeNode(Param);
		int i = 0;
		ListCell *lc;

		foreach (lc, *terms)
		{
			if (equal(lfirst(lc), node))
				break;
			i++;
		}
		if (lc == NULL)
			*terms = lappend(*terms, node);
		p->paramkind = PARAM_EXTERN;
		p->paramid = 2 + i;
		p->paramtype = exprType(node);
		p->paramtypmod = exprTypmod(node);
		p->paramcollid = exprCollation(node);
		p->location = -1;
		return (Node *) p;
	}
	return expression_tree_mutator(node, clock_terms, terms);
}

/* audience k's ExprStates, as its owner (ExecInitExpr checks EXECUTE); may ERROR */
static void
prepare_one(PzAudienceRun *run, int k)
{
	RunAudience *a = &run->aud[k];
	PzCondition *c = a->def->cond;
	PzUserContext saved;
	List *terms = NIL;
	ListCell *lc;
	int i = 0;

	if (c == NULL)
		return;
	pz_run_as_begin(a->def->owner, &saved);
	pz_condition_check_columns(c, aud_set->view, a->def->owner);
	a->state = ExecInitExpr((Expr *) clock_terms(copyObject((Node *) c->expr), &terms), NULL);
	a->natoms = list_length(c->atoms);
	a->atoms = palloc(sizeof(RunAtom) * Max(a->natoms, 1));
	foreach (lc, c->atoms)
	{
		OpExpr *op = lfirst_node(OpExpr, lc);
		Expr *l = linitial(op->args), *r = lsecond(op->args);
		bool clock_left = pz_condition_reads_clock((Node *) l);
		RunAtom *at = &a->atoms[i++];

		at->cmp = ExecInitExpr((Expr *) clock_terms(copyObject((Node *) op), &terms), NULL);
		at->clock_side = ExecInitExpr(
			(Expr *) clock_terms(copyObject((Node *) (clock_left ? l : r)), &terms), NULL);
		at->other_side = ExecInitExpr(clock_left ? r : l, NULL);
		at->clock_type = exprType((Node *) (clock_left ? l : r));
		at->other_type = exprType((Node *) (clock_left ? r : l));
	}
	a->nterms = list_length(terms);
	a->terms = palloc0(sizeof(RunTerm) * Max(a->nterms, 1));
	i = 0;
	foreach (lc, terms)
	{
		RunTerm *t = &a->terms[i++];

		t->expr = ExecInitExpr((Expr *) lfirst(lc), NULL);
		t->type = exprType(lfirst(lc));
		get_typlenbyval(t->type, &t->typlen, &t->typbyval);
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
	ErrorData *err = aud_in_subxact(prepare_fn, &args);

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
	int nparams = 1;

	run->slot = MakeSingleTupleTableSlot(run->view_desc, &TTSOpsVirtual);
	run->econtext = CreateStandaloneExprContext();
	run->econtext->ecxt_scantuple = run->slot;
	if (run->n > 0)
		prepare_range(run, 0, run->n);
	/* the clock, then room for the most terms an audience has */
	for (int k = 0; k < run->n; k++)
		nparams = Max(nparams, 1 + (run->aud[k].state != NULL ? run->aud[k].nterms : 0));
	run->params = makeParamList(nparams);
	run->params->params[0].ptype = TIMESTAMPTZOID;
	run->params->params[0].pflags = PARAM_FLAG_CONST;
	run->params->params[0].isnull = false;
	/* the terms' entries are fetched (aud_fetch_param), never read as they are */
	for (int i = 1; i < nparams; i++)
		run->params->params[i].ptype = InvalidOid;
	run->params->paramFetch = aud_fetch_param;
	run->params->paramFetchArg = run;
	run->clock_moment = -1;
	run->econtext->ecxt_param_list_info = run->params;
	run->prepared = true;
	MemoryContextSwitchTo(old);
}

/*
 * Room for one more row of desc: the rows of another descriptor, or a
 * full chunk (RUN_CHUNK rows, or work_mem of rows and what they hold), are
 * evaluated and written first.
 */
static void
run_make_room(PzAudienceRun *run, TupleDesc desc)
{
	MemoryContext old;

	if (run->row_desc_src != desc)
	{
		/* rows of the old descriptor first (a cursor's fetches each bring one) */
		if (run->nrows > 0)
			aud_run_flush(run);
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
	if (run->nrows == RUN_CHUNK ||
		(run->nrows > 0 &&
		 MemoryContextMemAllocated(run->rows_cxt, true) >= (Size) work_mem * 1024))
		aud_run_flush(run);
}

void
pz_audience_run_add(PzAudienceRun *run, HeapTuple row, TupleDesc desc)
{
	MemoryContext old;

	run_make_room(run, desc);
	old = MemoryContextSwitchTo(run->rows_cxt);
	run->rows[run->nrows] = heap_copytuple(row);
	MemoryContextSwitchTo(old);
	run->held[run->nrows++] = NULL;
}

/* whether a condition reads a trait column (else a held profile would go unread) */
bool
pz_audience_run_reads_traits(PzAudienceRun *run)
{
	for (int i = 0; run->spec != NULL && i < run->spec->ntraits; i++)
		if (run->need_trait[i])
			return true;
	return false;
}

MemoryContext
pz_audience_run_row_context(PzAudienceRun *run, TupleDesc desc)
{
	run_make_room(run, desc);
	return run->rows_cxt;
}

void
pz_audience_run_add_profile(PzAudienceRun *run, HeapTuple row, TupleDesc desc, Profile *p)
{
	MemoryContext old;

	/* pz_audience_run_row_context made room, and p lives in rows_cxt */
	Assert(p->mcxt == run->rows_cxt);
	if (run->row_desc_src != desc || run->nrows >= RUN_CHUNK)
		elog(ERROR, "personalize audiences: a profile added without room made for it");
	old = MemoryContextSwitchTo(run->rows_cxt);
	profile_as_written(p);
	run->rows[run->nrows] = heap_copytuple(row);
	MemoryContextSwitchTo(old);
	run->held[run->nrows++] = p;
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
		/* the worker's merged profile, or the row's bytes read again */
		Profile *p = run->held[r] != NULL ? run->held[r]
					 : rnp[run->row_attr[R_STATES]]
						 ? NULL
						 : profile_from_datum(rvp[run->row_attr[R_STATES]]);

		pc_spec_read_wanted(spec, p, run->states, run->need_trait);
		for (int i = 0; i < spec->ncols; i++)
			if (run->need_col[i])
				values[PZ_VIEW_NBASE + i] =
					pc_column_value(&spec->cols[i], run->states[spec->cols[i].slot], run->now,
									&nulls[PZ_VIEW_NBASE + i], NULL);
	}
	ExecStoreVirtualTuple(slot);
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
			v = eval_at(a, a->state, run, run->now);
			run->result[r * run->n + k] = v == 1;
			if (a->timed)
			{
				TimestampTz t = aud_run_schedule(run, a, v, run->due[r]);

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
	ErrorData *e = aud_in_subxact(eval_fn, &args);

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

typedef struct RunChange
{
	int64 pid;
	int32 aud;
	int k; /* the run's audience */
	bool entered;
} RunChange;

/* by profile, then audience id: the order of the events' ids */
static int
change_cmp(const void *a, const void *b)
{
	const RunChange *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->aud < y->aud ? -1 : x->aud > y->aud;
}

/*
 * The entries and exits: memberships changed, events appended, NOTIFY
 * queued.  Written directly (audience_store.c), or with SQL where the
 * tables have what only the executor maintains, such as a user's trigger.
 */
static void
write_changes(PzAudienceRun *run, int n, RunChange *ch)
{
	Datum v[5];
	int32 *aud;
	int64 *pid;
	bool *entered;
	const char **names;

	if (n == 0)
		return;
	qsort(ch, n, sizeof(RunChange), change_cmp);
	aud = palloc(sizeof(int32) * n);
	pid = palloc(sizeof(int64) * n);
	entered = palloc(sizeof(bool) * n);
	names = palloc(sizeof(char *) * n);
	for (int i = 0; i < n; i++)
	{
		aud[i] = ch[i].aud;
		pid[i] = ch[i].pid;
		entered[i] = ch[i].entered;
		names[i] = run->aud[ch[i].k].def->name;
	}
	if (aud_store_changes(n, aud, names, pid, entered, run->now, run->why))
	{
		run->changes += n;
		return;
	}
	v[0] = PointerGetDatum(aud_int4_array(aud, n));
	v[1] = PointerGetDatum(aud_int8_array(pid, n));
	v[2] = PointerGetDatum(aud_bool_array(entered, n));
	v[3] = TimestampTzGetDatum(run->now);
	v[4] = CStringGetTextDatum(run->why);
	aud_run_plan(aud_keep_plan(
					 &plan_change,
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
					 5, (Oid[]){INT4ARRAYOID, INT8ARRAYOID, BOOLARRAYOID, TIMESTAMPTZOID, TEXTOID}),
				 v, SPI_OK_INSERT_RETURNING, "recording entries and exits");
	aud_notify_events(SPI_tuptable, SPI_processed);
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
		aud_run_plan(
			aud_keep_plan(&plan_record_error,
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
void
aud_run_flush(PzAudienceRun *run)
{
	int nrows = run->nrows;
	int64 *ids;
	HTAB *rowmap;
	HASHCTL info = {0};
	uint8 *current;
	TimestampTz *old_due;
	RunChange *ch;
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

	old = MemoryContextSwitchTo(run->rows_cxt);
	ids = palloc(sizeof(int64) * nrows);
	info.keysize = sizeof(int64);
	info.entrysize = sizeof(RowEntry);
	info.hcxt = run->rows_cxt;
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
	ch = palloc(sizeof(RunChange) * nrows * run->n);
	MemoryContextSwitchTo(old);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	as_owner = aud_writer_begin(&saved);
	{
		/* memberships and moments: what the worker's cache knows, the others read */
		int64 *miss = palloc(sizeof(int64) * nrows);
		int nmiss = 0;
		bool cache = aud_cache_usable();

		for (int r = 0; r < nrows; r++)
		{
			RowEntry *e = hash_search(rowmap, &ids[r], HASH_FIND, NULL);
			AudCacheEntry *c;

			if (e->row != r)
				continue;
			if ((c = aud_cache_find(ids[r])) == NULL)
			{
				miss[nmiss++] = ids[r];
				continue;
			}
			old_due[r] = c->due;
			for (int i = 0; i < c->n; i++)
				for (int k = 0; k < run->n; k++)
					if (run->aud[k].def->id == c->ids[i])
						current[r * run->n + k] = 1;
		}
		if (nmiss > 0)
		{
			Datum v[1] = {PointerGetDatum(aud_int8_array(miss, nmiss))};

			/* an entry for each, empty: the reads below fill it */
			for (int i = 0; cache && i < nmiss; i++)
				(void) aud_cache_enter(miss[i]);
			aud_run_plan(aud_keep_plan(
							 &plan_read_members,
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
				AudCacheEntry *c = cache ? aud_cache_find(p) : NULL;

				if (c != NULL)
					aud_cache_add_member(c, a);
				if (e == NULL)
					continue;
				for (int k = 0; k < run->n; k++)
					if (run->aud[k].def->id == a)
						current[e->row * run->n + k] = 1;
			}
			/* the moments are read for the cache even when this run writes none */
			if (dues || cache)
			{
				aud_run_plan(aud_keep_plan(&plan_read_dues,
										   "SELECT profile_id, due FROM personalize.audience_due "
										   "WHERE profile_id = ANY ($1)",
										   1, (Oid[]){INT8ARRAYOID}),
							 v, SPI_OK_SELECT, "reading the schedule");
				for (uint64 i = 0; i < SPI_processed; i++)
				{
					bool isnull;
					int64 p = DatumGetInt64(
						SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
					TimestampTz due = DatumGetTimestampTz(
						SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
					RowEntry *e = hash_search(rowmap, &p, HASH_FIND, NULL);

					if (cache)
						aud_cache_set_due(p, due);
					if (e != NULL)
						old_due[e->row] = due;
				}
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
			ch[nch].aud = run->aud[k].def->id;
			ch[nch].pid = ids[r];
			ch[nch].k = k;
			ch[nch].entered = now_in == 1;
			nch++;
		}
	}
	write_changes(run, nch, ch);
	for (int i = 0; i < nch; i++)
		aud_cache_set(ch[i].pid, ch[i].aud, ch[i].entered);

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
				if (aud_next_due_hint == DT_NOBEGIN || want < aud_next_due_hint)
					aud_next_due_hint = want;
			}
		}
		if (nset > 0)
		{
			Datum v[2] = {PointerGetDatum(aud_int8_array(set_id, nset)),
						  PointerGetDatum(aud_timestamptz_array(set_due, nset))};

			aud_run_plan(aud_keep_plan(&plan_due_set,
									   "INSERT INTO personalize.audience_due (profile_id, due) "
									   "SELECT * FROM unnest($1::int8[], $2::timestamptz[]) "
									   "ON CONFLICT (profile_id) DO UPDATE SET due = excluded.due",
									   2, (Oid[]){INT8ARRAYOID, TIMESTAMPTZARRAYOID}),
						 v, SPI_OK_INSERT, "scheduling");
			for (int i = 0; i < nset; i++)
				aud_cache_set_due(set_id[i], set_due[i]);
		}
		if (nclear > 0)
		{
			Datum v[1] = {PointerGetDatum(aud_int8_array(clear_id, nclear))};

			aud_run_plan(
				aud_keep_plan(&plan_due_clear,
							  "DELETE FROM personalize.audience_due WHERE profile_id = ANY ($1)", 1,
							  (Oid[]){INT8ARRAYOID}),
				v, SPI_OK_DELETE, "unscheduling");
			for (int i = 0; i < nclear; i++)
				aud_cache_set_due(clear_id[i], 0);
		}
	}
	record_errors(run);
	if (as_owner)
		pz_run_as_end(&saved);
	SPI_finish();

	run->nrows = 0;
	/* the rows, the profiles held and this flush's arrays */
	MemoryContextReset(run->rows_cxt);
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
	as_owner = aud_writer_begin(&saved);
	v[0] = PointerGetDatum(aud_int8_array(run->gone, run->ngone));
	v[1] = TimestampTzGetDatum(run->now);
	v[2] = CStringGetTextDatum(run->why);
	aud_run_plan(
		aud_keep_plan(&plan_gone,
					  "WITH d AS (DELETE FROM personalize.audience_memberships m "
					  "WHERE m.profile_id = ANY ($1) RETURNING m.audience_id, m.profile_id), "
					  "dd AS (DELETE FROM personalize.audience_due WHERE profile_id = ANY ($1)) "
					  "INSERT INTO personalize.audience_events (audience, profile_id, entered, "
					  "at, why) SELECT au.name, d.profile_id, false, $2, $3 FROM d "
					  "JOIN personalize.audiences au ON au.id = d.audience_id "
					  "ORDER BY d.profile_id, au.id RETURNING audience, entered, id",
					  3, (Oid[]){INT8ARRAYOID, TIMESTAMPTZOID, TEXTOID}),
		v, SPI_OK_INSERT_RETURNING, "ending memberships");
	aud_notify_events(SPI_tuptable, SPI_processed);
	run->changes += SPI_processed;
	for (int i = 0; i < run->ngone; i++)
		aud_cache_forget(run->gone[i]);
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
	aud_run_flush(run);
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

const char *const aud_profile_row_sql =
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
	if (SPI_execute_with_args(psprintf("%s WHERE p.id = $1", aud_profile_row_sql), 1,
							  (Oid[]){INT8OID}, v, NULL, false, 0) != SPI_OK_SELECT)
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

	if (!OidIsValid(aud_relid()))
		return 0;
	aud_lock();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	as_owner = aud_writer_begin(&saved);
	v[0] = PointerGetDatum(aud_int8_array(ids, nids));
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
	aud_notify_events(SPI_tuptable, SPI_processed);
	aud_cache_forget(profile_id);
	for (int i = 0; i < nids; i++)
		aud_cache_forget(ids[i]);
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
	if (aud_set == NULL || aud_set_stale)
		aud_set_load();
	if (aud_set->n == 0)
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
		int k = aud_set_index(aud_set, a);

		if (k >= 0)
			names = lappend(names, aud_set->defs[k].name);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	list_sort(names, (list_sort_comparator) pg_qsort_strcmp);
	return names;
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
	aud_set_stale = true; /* this transaction may have changed them */
	run = pz_audience_run_begin(why, only);
	if (run == NULL)
		PG_RETURN_INT64(0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	if (PG_ARGISNULL(0))
	{
		portal =
			SPI_cursor_open_with_args(NULL, aud_profile_row_sql, 0, NULL, NULL, NULL, false, 0);
		v[0] = (Datum) 0;
	}
	else
	{
		v[0] = PG_GETARG_DATUM(0);
		portal = SPI_cursor_open_with_args(
			NULL, psprintf("%s WHERE p.id = ANY ($1)", aud_profile_row_sql), 1,
			(Oid[]){INT8ARRAYOID}, v, NULL, false, 0);
	}
	for (;;)
	{
		SPI_cursor_fetch(portal, true, RUN_CHUNK);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
			pz_audience_run_add(run, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
		aud_run_flush(run);
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
