/*
 * audience.c
 *	  Audiences (docs/audiences.md): the set of audiences and their compiled
 *	  conditions, cached per backend; the membership writers' lock and
 *	  helpers; the GUCs; the SQL functions that check conditions.
 *
 * The set is read from personalize.audiences and each condition compiled
 * (audience_condition.c) against the profile view; it is read again when
 * an audience or the view changes (a relcache invalidation of
 * personalize.audiences, sent by _audiences_changed()).  The other rooms:
 * audience_run.c evaluates the audiences on the profiles a writer wrote
 * and writes what changed; audience_time.c finds the next moment a
 * result changes with time alone and applies it in the worker;
 * audience_notify.c sends the NOTIFY of entries and exits at commit.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "access/relation.h"

#include "audience_internal.h"
#include "profile.h"

int pz_audience_delay = 1000;
int pz_audience_retention = 30 * 24 * 3600;

AudienceSet *aud_set = NULL;
bool aud_set_stale = true;
static Oid aud_relid_cached = InvalidOid;

void
pz_audience_relcache_changed(Oid relid)
{
	if (!OidIsValid(relid) || relid == aud_relid_cached)
		aud_set_stale = true;
}

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
	DefineCustomIntVariable(
		"personalize.audience_cache_size",
		"Profiles whose audience memberships and scheduled moment the streaming worker keeps in "
		"memory.",
		"A batch then reads only the profiles the worker has not seen since another session last "
		"changed memberships.  About 80 bytes a profile; a full cache is emptied.  0 turns it "
		"off.",
		&pz_audience_cache_size, 250000, 0, 100000000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	aud_notify_init();
}

Oid
aud_relid(void)
{
	Oid nsp = get_namespace_oid("personalize", true);

	aud_relid_cached = OidIsValid(nsp) ? get_relname_relid("audiences", nsp) : InvalidOid;
	return aud_relid_cached;
}

/* the audiences, as the latest snapshot has them (not compiled) */
void
aud_set_load(void)
{
	MemoryContext cxt;
	AudienceSet *s;
	int ret;

	if (aud_set != NULL)
		MemoryContextDelete(aud_set->cxt);
	aud_set = NULL;
	cxt = AllocSetContextCreate(TopMemoryContext, "personalize audiences", ALLOCSET_SMALL_SIZES);
	s = MemoryContextAllocZero(cxt, sizeof(AudienceSet));
	s->cxt = cxt;
	aud_set_stale = false;
	if (!OidIsValid(aud_relid()))
	{
		aud_set = s;
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
	aud_set = s;
}

/*
 * fn(arg) in a subtransaction of its own: NULL if it returned, else the
 * ERROR it raised (copied into the caller's memory context), with the
 * subtransaction rolled back.  The caller's memory context and resource
 * owner are current again either way.  Conditions are user code: every
 * path that runs or compiles one goes through here.
 */
ErrorData *
aud_in_subxact(void (*fn)(void *arg), void *arg)
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
	MemoryContextSwitchTo(aud_set->cxt);
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
aud_set_compile_one(AudienceDef *a, Oid view, const PcSpec *spec)
{
	CompileArgs args = {a, view, spec, NULL};
	ErrorData *e;

	args.scratch =
		AllocSetContextCreate(CurrentMemoryContext, "personalize condition", ALLOCSET_SMALL_SIZES);
	a->cond = NULL;
	e = aud_in_subxact(compile_fn, &args);
	MemoryContextDelete(args.scratch);
	if (e == NULL)
	{
		a->problem = NULL;
		return;
	}
	/* a lock someone holds (a trait change) is no fault of the condition: try again later */
	if (e->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
	{
		aud_set_stale = true;
		ReThrowError(e);
	}
	a->problem = MemoryContextStrdup(aud_set->cxt,
									 psprintf("the condition cannot be evaluated: %s", e->message));
}

/* the audiences, compiled against the current view; *spec its trait columns */
AudienceSet *
aud_set_ready(const PcSpec **spec)
{
	Oid view;
	TransactionId xmin;

	if (aud_set == NULL || aud_set_stale)
		aud_set_load();
	if (aud_set->n == 0)
	{
		*spec = NULL;
		return aud_set;
	}
	*spec = pz_profile_view_spec(&view, &xmin);
	if (!aud_set->compiled || aud_set->view != view || aud_set->view_xmin != xmin)
	{
		Relation rel = NULL;

		if (OidIsValid(view))
		{
			rel = relation_open(view, AccessShareLock);
			aud_set->view_desc = CreateTupleDescCopy(RelationGetDescr(rel));
			relation_close(rel, NoLock);
		}
		/* a moved copy: the descriptor must live in the set's context */
		if (aud_set->view_desc != NULL && GetMemoryChunkContext(aud_set->view_desc) != aud_set->cxt)
		{
			MemoryContext old = MemoryContextSwitchTo(aud_set->cxt);
			TupleDesc copy = CreateTupleDescCopy(aud_set->view_desc);

			MemoryContextSwitchTo(old);
			aud_set->view_desc = copy;
		}
		for (int i = 0; i < aud_set->n; i++)
		{
			if (!OidIsValid(view))
			{
				aud_set->defs[i].cond = NULL;
				aud_set->defs[i].problem =
					MemoryContextStrdup(aud_set->cxt, "personalize.profile_view does not exist");
			}
			else
				aud_set_compile_one(&aud_set->defs[i], view, *spec);
		}
		aud_set->compiled = true;
		aud_set->view = view;
		aud_set->view_xmin = xmin;
	}
	return aud_set;
}

int
aud_set_index(const AudienceSet *s, int32 id)
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

void
aud_lock(void)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("audience memberships are changed only in READ COMMITTED "
							   "transactions"),
						errdetail("A writer must see the memberships committed while it waited "
								  "for their lock."),
						errhint("Run it outside REPEATABLE READ and SERIALIZABLE transactions.")));
	pz_lock(PZ_LOCK_AUDIENCES);
	aud_cache_note_lock();
}

/* run SPI writes as the extension's owner, who alone may write the tables */
bool
aud_writer_begin(PzUserContext *saved)
{
	if (superuser())
		return false;
	pz_as_extension_owner_begin(saved);
	return true;
}

ArrayType *
aud_int8_array(const int64 *v, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

ArrayType *
aud_int4_array(const int32 *v, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(v[i]);
	return construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT);
}

ArrayType *
aud_bool_array(const bool *v, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = BoolGetDatum(v[i]);
	return construct_array(d, n, BOOLOID, 1, true, TYPALIGN_CHAR);
}

ArrayType *
aud_timestamptz_array(const TimestampTz *v, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = TimestampTzGetDatum(v[i]);
	return construct_array(d, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/* one prepared statement, kept for the backend's life */
SPIPlanPtr
aud_keep_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
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

void
aud_run_plan(SPIPlanPtr plan, Datum *values, int expect, const char *what)
{
	int ret = SPI_execute_plan(plan, values, NULL, false, 0);

	if (ret != expect)
		elog(ERROR, "personalize audiences: %s failed: %s", what, SPI_result_code_string(ret));
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
	Oid relid = aud_relid();

	/* no run writes memberships of the old definitions after this commits */
	aud_lock();
	if (OidIsValid(relid))
		CacheInvalidateRelcacheByRelid(relid);
	aud_set_stale = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pz_audiences_check_all);

Datum
pz_audiences_check_all(PG_FUNCTION_ARGS)
{
	Oid view;
	TransactionId xmin;
	const PcSpec *spec;

	aud_set_load();
	if (aud_set->n == 0)
		PG_RETURN_VOID();
	spec = pz_profile_view_spec(&view, &xmin);
	for (int i = 0; i < aud_set->n; i++)
	{
		AudienceDef *a = &aud_set->defs[i];
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
	aud_set_stale = true;
	PG_RETURN_VOID();
}
