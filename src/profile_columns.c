/*
 * profile_columns.c
 *	  profile_columns(states profile, spec text) RETURNS record: every trait
 *	  column of one profile from one call, for the profile view.
 *
 *	  SELECT ... FROM personalize.profiles p
 *	  LEFT JOIN LATERAL personalize.profile_columns(p.states,
 *	      '1:recent;2:count;3:wcount:3600000000') AS c(last_viewed text[],
 *	      orders bigint, orders_in_1h bigint) ON true
 *
 * The spec names the output columns in order, separated by ';', each
 * <trait id>:<accessor>[:<argument>]:
 *
 *	count			metric_count of a metric_state, 0 when absent		bigint
 *	value			metric_value of a metric_state						numeric
 *	event_value		event_value of a first_state or last_state			text
 *	event_time		event_time of a first_state or last_state			timestamptz
 *	recent			recent_values of a recent_state						text[]
 *	top				top_values of a top_state, every value kept			text[]
 *	distinct		distinct_count of a distinct_state, 0 when absent	bigint
 *	session			session_info of a session_state						jsonb
 *	wcount:<usecs>	windowed_count over <usecs> at now(), 0 when absent	bigint
 *	wsum:<usecs>	windowed_sum likewise, 0 when absent				double precision
 *
 * Everything else is NULL when the profile holds no state for the trait (or
 * the profile is NULL).  An entry with a '-' before it ("-2:count") is
 * skipped: its column is NULL, and its trait is not read unless another
 * column reads it.  The planner hook of profile_scan.c writes those for the
 * columns a query over the view does not read.  Each column equals the accessor expression the
 * view used before, through the same C code.
 *
 * The spec is parsed and checked against the column definition list once
 * per FmgrInfo (cached in fn_extra); each row then reads the profile's
 * framing once, the state of each trait the spec names once, whatever the
 * number of columns reading it, and forms one tuple, all in the per-call
 * memory context the executor resets between rows.  The parsing and the
 * per-column evaluation are shared with get_profile() (profile_read.c),
 * through profile_columns.h.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "distinct.h"
#include "firstlast.h"
#include "metric.h"
#include "profile.h"
#include "profile_columns.h"
#include "recent.h"
#include "session.h"
#include "top.h"
#include "windowed.h"

typedef struct PcAccessorInfo
{
	const char *name;
	Oid type;     /* the column's type */
	PzKind kind;  /* the kind it reads; PZ_KIND_FIRST stands for first or last */
	bool has_arg; /* takes :<usecs> */
} PcAccessorInfo;

static const PcAccessorInfo pc_accessors[PC_NUM_ACCESSORS] = {
	[PC_COUNT] = {"count", INT8OID, PZ_KIND_METRIC, false},
	[PC_VALUE] = {"value", NUMERICOID, PZ_KIND_METRIC, false},
	[PC_EVENT_VALUE] = {"event_value", TEXTOID, PZ_KIND_FIRST, false},
	[PC_EVENT_TIME] = {"event_time", TIMESTAMPTZOID, PZ_KIND_FIRST, false},
	[PC_RECENT] = {"recent", TEXTARRAYOID, PZ_KIND_RECENT, false},
	[PC_TOP] = {"top", TEXTARRAYOID, PZ_KIND_TOP, false},
	[PC_DISTINCT] = {"distinct", INT8OID, PZ_KIND_DISTINCT, false},
	[PC_SESSION] = {"session", JSONBOID, PZ_KIND_SESSION, false},
	[PC_WCOUNT] = {"wcount", INT8OID, PZ_KIND_WINDOWED, true},
	[PC_WSUM] = {"wsum", FLOAT8OID, PZ_KIND_WINDOWED, true},
};

#define PC_SPEC_HINT                                                                               \
	"Write the columns in order, separated by \";\", each as <trait id>:<accessor>, or "           \
	"<trait id>:wcount:<microseconds> or <trait id>:wsum:<microseconds>, e.g. "                    \
	"'1:recent;2:count;3:wcount:3600000000'.  Accessors: count, value, event_value, event_time, "  \
	"recent, top, distinct, session, wcount, wsum."

/* What one FmgrInfo keeps between rows, in a context of its own under fn_mcxt. */
typedef struct PcCache
{
	MemoryContext cxt;
	char *spec; /* the spec it was built for */
	int spec_len;
	TupleDesc expected; /* the executor's descriptor it was checked against */
	TupleDesc tupdesc;  /* a blessed copy of it */
	PcSpec *parsed;
	/* per-row scratch */
	PzState **states;
	Datum *values;
	bool *nulls;
} PcCache;

/* "a recent_state"; for first/last, "a first_state or last_state" */
static const char *
pc_kind_text(PzKind kind)
{
	if (kind == PZ_KIND_FIRST)
		return "a first_state or last_state";
	return psprintf("a %s", pz_kind_ops(kind)->type_name);
}

static inline bool
pc_kind_ok(PzKind want, PzKind held)
{
	return held == want || (want == PZ_KIND_FIRST && held == PZ_KIND_LAST);
}

static pg_attribute_noreturn() void pc_bad_spec(int entry, const char *text, int len,
												const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid spec for profile_columns"),
			 errdetail("Entry %d, \"%.*s\": %s", entry, Min(len, 200), text, problem),
			 errhint(PC_SPEC_HINT)));
}

/* Digits only, no sign, no leading zero, 1 .. max; false otherwise. */
static bool
pc_parse_number(const char *s, int len, int64 max, int64 *out)
{
	int64 v = 0;
	int i;

	if (len < 1 || s[0] == '0')
		return false;
	for (i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

PcSpec *
pc_spec_parse(const char *spec, int len)
{
	PcSpec *c = palloc0(sizeof(PcSpec));
	int n = 1;
	int i;
	const char *p = spec;
	const char *end = spec + len;

	for (i = 0; i < len; i++)
		n += spec[i] == ';';
	/* a row has at most this many columns: refuse before the work grows with n */
	if (n > MaxTupleAttributeNumber)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("profile_columns: the spec names %d columns", n),
						errhint("A row has at most %d columns.", MaxTupleAttributeNumber)));
	c->ncols = n;
	c->cols = palloc0(sizeof(PcColumn) * n);
	c->traits = palloc0(sizeof(PcTrait) * n);
	c->ntraits = 0;
	for (i = 0; i < n; i++)
	{
		const char *entry = p;
		const char *entry_end = memchr(p, ';', end - p);
		const char *parts[3];
		int plen[3];
		int nparts = 0;
		const char *q;
		PcColumn *col = &c->cols[i];
		int64 v;
		int a;
		int t;

		if (entry_end == NULL)
			entry_end = end;
		p = entry_end + 1;
		if (entry_end == entry)
			pc_bad_spec(i + 1, entry, 0, "The entry is empty.");
		/* split on ':' into at most 3 parts */
		q = entry;
		while (q <= entry_end)
		{
			const char *colon = memchr(q, ':', entry_end - q);
			const char *part_end = colon ? colon : entry_end;

			if (nparts == 3)
				pc_bad_spec(i + 1, entry, entry_end - entry,
							"An entry has at most three parts: trait, accessor, argument.");
			parts[nparts] = q;
			plen[nparts] = part_end - q;
			nparts++;
			q = part_end + 1;
		}
		if (nparts < 2)
			pc_bad_spec(i + 1, entry, entry_end - entry,
						"An entry is <trait id>:<accessor>[:<argument>].");
		/* "-": a column the query does not read (set by profile_scan.c) */
		if (plen[0] > 0 && parts[0][0] == '-')
		{
			col->skip = true;
			parts[0]++;
			plen[0]--;
		}
		if (!pc_parse_number(parts[0], plen[0], PG_INT32_MAX, &v))
			pc_bad_spec(i + 1, entry, entry_end - entry,
						psprintf("\"%.*s\" is not a trait id (1 to 2147483647).", Min(plen[0], 40),
								 parts[0]));
		col->trait = (int32) v;
		for (a = 0; a < PC_NUM_ACCESSORS; a++)
			if (strlen(pc_accessors[a].name) == (size_t) plen[1] &&
				memcmp(pc_accessors[a].name, parts[1], plen[1]) == 0)
				break;
		if (a == PC_NUM_ACCESSORS)
			pc_bad_spec(i + 1, entry, entry_end - entry,
						psprintf("\"%.*s\" is not an accessor.", Min(plen[1], 40), parts[1]));
		col->acc = (PcAccessor) a;
		if (pc_accessors[a].has_arg)
		{
			if (nparts < 3)
				pc_bad_spec(i + 1, entry, entry_end - entry,
							psprintf("Accessor %s needs the span in microseconds, e.g. "
									 "%d:%s:3600000000 for one hour.",
									 pc_accessors[a].name, col->trait, pc_accessors[a].name));
			if (!pc_parse_number(parts[2], plen[2], PZ_MAX_INTERVAL_USECS, &v))
				pc_bad_spec(i + 1, entry, entry_end - entry,
							psprintf("The span \"%.*s\" is not a whole number of microseconds "
									 "from 1 to " INT64_FORMAT " (100 years).",
									 Min(plen[2], 40), parts[2], PZ_MAX_INTERVAL_USECS));
			col->span = v;
		}
		else if (nparts > 2)
			pc_bad_spec(i + 1, entry, entry_end - entry,
						psprintf("Accessor %s takes no argument.", pc_accessors[a].name));

		/* one slot per trait; every column of a trait must read one kind */
		for (t = 0; t < c->ntraits; t++)
			if (c->traits[t].trait == col->trait)
				break;
		if (t == c->ntraits)
		{
			c->traits[t].trait = col->trait;
			c->traits[t].kind = pc_accessors[a].kind;
			c->traits[t].first_col = i;
			c->ntraits++;
		}
		else if (c->traits[t].kind != pc_accessors[a].kind)
			pc_bad_spec(i + 1, entry, entry_end - entry,
						psprintf("Accessor %s reads %s, but entry %d reads trait %d as %s.",
								 pc_accessors[a].name, pc_kind_text(pc_accessors[a].kind),
								 c->traits[t].first_col + 1, col->trait,
								 pc_kind_text(c->traits[t].kind)));
		col->slot = t;
	}
	c->trait_read = palloc0(sizeof(bool) * Max(c->ntraits, 1));
	for (i = 0; i < n; i++)
		if (!c->cols[i].skip)
			c->trait_read[c->cols[i].slot] = true;
	return c;
}

Oid
pc_column_type(const PcSpec *spec, int col)
{
	return pc_accessors[spec->cols[col].acc].type;
}

const char *
pc_accessor_name(PcAccessor acc)
{
	return pc_accessors[acc].name;
}

/*
 * Check a column definition list (n columns: names, types, typmods) against
 * the parsed spec: ERROR with a hint unless each column has its entry's type.
 */
void
pc_check_columns(const PcSpec *c, int n, const char *const *names, const Oid *types,
				 const int32 *typmods)
{
	if (n != c->ncols)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
						errmsg("profile_columns returns one column per spec entry: %d, not %d",
							   c->ncols, n),
						errhint("Declare one column for each entry of the spec, in its order.")));
	for (int i = 0; i < n; i++)
	{
		const PcAccessorInfo *acc = &pc_accessors[c->cols[i].acc];

		if (types[i] != acc->type || typmods[i] != -1)
			ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
							errmsg("column \"%s\" of profile_columns is declared %s, but accessor "
								   "%s returns %s",
								   names[i], format_type_with_typemod(types[i], typmods[i]),
								   acc->name, format_type_be(acc->type)),
							errhint("Declare column %d as %s.", i + 1, format_type_be(acc->type))));
	}
}

/* the same for the tuple descriptor of a call's column definition list */
static void
pc_check_tupdesc(const PcSpec *c, TupleDesc td)
{
	const char **names = palloc(sizeof(char *) * Max(td->natts, 1));
	Oid *types = palloc(sizeof(Oid) * Max(td->natts, 1));
	int32 *typmods = palloc(sizeof(int32) * Max(td->natts, 1));

	for (int i = 0; i < td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i);

		names[i] = NameStr(att->attname);
		types[i] = att->atttypid;
		typmods[i] = att->atttypmod;
	}
	pc_check_columns(c, td->natts, names, types, typmods);
}

/*
 * A small per-backend cache of parsed specs, for the custom scan
 * (profile_columns_scan.c): a point read through the view is planned once
 * and run many times, and parsing its spec and building its columns'
 * descriptor (a type look-up per column) were a measurable part of each
 * run.  Callers get copies, so an entry may go at any time.
 */
#define PC_SPEC_CACHE_SIZE 16

typedef struct PcSpecCacheEntry
{
	MemoryContext cxt; /* NULL: free */
	char *text;
	int len;
	PcSpec *spec;
	TupleDesc desc;
} PcSpecCacheEntry;

static PcSpecCacheEntry pc_spec_cache[PC_SPEC_CACHE_SIZE];
static int pc_spec_cache_next = 0;

static PcSpec *
pc_spec_copy(const PcSpec *s)
{
	PcSpec *c = palloc(sizeof(PcSpec));

	*c = *s;
	c->cols = palloc(sizeof(PcColumn) * Max(s->ncols, 1));
	memcpy(c->cols, s->cols, sizeof(PcColumn) * s->ncols);
	c->traits = palloc(sizeof(PcTrait) * Max(s->ntraits, 1));
	memcpy(c->traits, s->traits, sizeof(PcTrait) * s->ntraits);
	c->trait_read = palloc(sizeof(bool) * Max(s->ntraits, 1));
	memcpy(c->trait_read, s->trait_read, sizeof(bool) * s->ntraits);
	c->colnames = NULL;
	return c;
}

PcSpec *
pc_spec_parse_cached(const char *spec, int len, TupleDesc *desc)
{
	PcSpecCacheEntry *e = NULL;
	MemoryContext old;

	for (int i = 0; i < PC_SPEC_CACHE_SIZE && e == NULL; i++)
		if (pc_spec_cache[i].cxt != NULL && pc_spec_cache[i].len == len &&
			memcmp(pc_spec_cache[i].text, spec, len) == 0)
			e = &pc_spec_cache[i];
	if (e == NULL)
	{
		/*
		 * Parsed in a child of the caller's context, which an ERROR of a spec
		 * that is not valid frees with it; kept in the cache once it parsed.
		 */
		MemoryContext cxt =
			AllocSetContextCreate(CurrentMemoryContext, "personalize spec", ALLOCSET_SMALL_SIZES);
		PcSpec *parsed;
		TupleDesc d;

		old = MemoryContextSwitchTo(cxt);
		parsed = pc_spec_parse(spec, len);
		d = CreateTemplateTupleDesc(parsed->ncols);
		for (int i = 0; i < parsed->ncols; i++)
			TupleDescInitEntry(d, i + 1, NULL, pc_column_type(parsed, i), -1, 0);
		MemoryContextSetParent(cxt, CacheMemoryContext);
		e = &pc_spec_cache[pc_spec_cache_next];
		pc_spec_cache_next = (pc_spec_cache_next + 1) % PC_SPEC_CACHE_SIZE;
		if (e->cxt != NULL)
			MemoryContextDelete(e->cxt);
		e->cxt = cxt;
		e->text = palloc(Max(len, 1));
		memcpy(e->text, spec, len);
		e->len = len;
		e->spec = parsed;
		e->desc = d;
		MemoryContextSwitchTo(old);
	}
	if (desc != NULL)
		*desc = CreateTupleDescCopy(e->desc);
	return pc_spec_copy(e->spec);
}

/*
 * The cache for this call's spec and column definition list: built on the
 * first call (and again should either change), kept in fn_mcxt.
 */
static PcCache *
pc_cache(FunctionCallInfo fcinfo, text *spec)
{
	FmgrInfo *flinfo = fcinfo->flinfo;
	PcCache *c = flinfo->fn_extra;
	ReturnSetInfo *rsi = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc expected = (rsi != NULL && IsA(rsi, ReturnSetInfo)) ? rsi->expectedDesc : NULL;
	const char *sdata = VARDATA_ANY(spec);
	int slen = VARSIZE_ANY_EXHDR(spec);
	MemoryContext cxt;
	MemoryContext old;
	TupleDesc td;
	PcCache *fresh;
	PcSpec *parsed;

	if (c != NULL && c->expected == expected && expected != NULL && c->spec_len == slen &&
		memcmp(c->spec, sdata, slen) == 0)
		return c;

	if (get_call_result_type(fcinfo, NULL, &td) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("profile_columns must be called in FROM with a column definition list"),
				 errhint("Call it as FROM personalize.profile_columns(states, spec) AS c(name "
						 "type, ...), one column for each entry of the spec.")));

	/*
	 * Build a new cache in a context of its own, then drop the old one (a
	 * spec that is not a constant may change from row to row).
	 */
	cxt = AllocSetContextCreate(flinfo->fn_mcxt, "profile_columns", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	fresh = palloc0(sizeof(PcCache));
	fresh->cxt = cxt;
	fresh->spec = palloc(Max(slen, 1));
	memcpy(fresh->spec, sdata, slen);
	fresh->spec_len = slen;
	parsed = pc_spec_parse(sdata, slen);
	pc_check_tupdesc(parsed, td);
	fresh->parsed = parsed;
	fresh->expected = expected;
	fresh->tupdesc = BlessTupleDesc(CreateTupleDescCopy(td));
	parsed->colnames = palloc(sizeof(char *) * parsed->ncols);
	for (int i = 0; i < parsed->ncols; i++)
		parsed->colnames[i] = NameStr(TupleDescAttr(fresh->tupdesc, i)->attname);
	fresh->states = palloc0(sizeof(PzState *) * parsed->ntraits);
	fresh->values = palloc0(sizeof(Datum) * parsed->ncols);
	fresh->nulls = palloc0(sizeof(bool) * parsed->ncols);
	MemoryContextSwitchTo(old);
	if (c != NULL)
		MemoryContextDelete(c->cxt);
	flinfo->fn_extra = fresh;
	return fresh;
}

static pg_attribute_noreturn() void pc_wrong_kind(const PcSpec *c, const PcTrait *t, PzKind held)
{
	const PcColumn *col = &c->cols[t->first_col];

	ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
					errmsg("trait %d holds a %s, not %s", t->trait, pz_kind_ops(held)->type_name,
						   pc_kind_text(t->kind)),
					c->colnames != NULL
						? errdetail("Column \"%s\" of profile_columns reads it with accessor %s.",
									c->colnames[t->first_col], pc_accessors[col->acc].name)
						: errdetail("Column %d of profile_columns reads it with accessor %s.",
									t->first_col + 1, pc_accessors[col->acc].name),
					errhint("The spec must read each trait with accessors of its kind.")));
}

void
pc_spec_read(const PcSpec *c, Profile *p, PzState **states)
{
	pc_spec_read_wanted(c, p, states, c->trait_read);
}

void
pc_spec_read_wanted(const PcSpec *c, Profile *p, PzState **states, const bool *wanted)
{
	for (int i = 0; i < c->ntraits; i++)
	{
		const PcTrait *t = &c->traits[i];
		int e = p != NULL && (wanted == NULL || wanted[i]) ? profile_find(p, t->trait) : -1;

		states[i] = NULL;
		if (e < 0)
			continue;
		if (!pc_kind_ok(t->kind, p->entries[e].kind))
			pc_wrong_kind(c, t, p->entries[e].kind);
		states[i] = profile_get(p, t->trait);
	}
}

Datum
pc_column_value(const PcColumn *col, PzState *s, TimestampTz now, bool *isnull, JsonbValue **tree)
{
	*isnull = false;
	if (tree != NULL)
		*tree = NULL;
	if (s == NULL)
	{
		switch (col->acc)
		{
			case PC_COUNT:
			case PC_DISTINCT:
			case PC_WCOUNT:
				return Int64GetDatum(0);
			case PC_WSUM:
				return Float8GetDatum(0);
			default:
				*isnull = true;
				return (Datum) 0;
		}
	}
	switch (col->acc)
	{
		case PC_COUNT:
			return metric_count_datum((MetricState *) s);
		case PC_VALUE:
			return metric_value_datum((MetricState *) s);
		case PC_EVENT_VALUE:
			return event_value_datum((TimedValueState *) s);
		case PC_EVENT_TIME:
			return event_time_datum((TimedValueState *) s);
		case PC_RECENT:
			return recent_values_datum((RecentState *) s);
		case PC_TOP:
			return top_values_datum((TopState *) s, ((TopState *) s)->count);
		case PC_DISTINCT:
			return distinct_count_datum((DistinctState *) s);
		case PC_SESSION:
			if (tree != NULL)
			{
				*tree = session_info_value((SessionState *) s);
				*isnull = *tree == NULL;
				return (Datum) 0;
			}
			return session_info_datum((SessionState *) s, isnull);
		case PC_WCOUNT:
			return windowed_count_datum((WindowedState *) s, col->span, now);
		case PC_WSUM:
			return windowed_sum_datum((WindowedState *) s, col->span, now);
		case PC_NUM_ACCESSORS:
			break;
	}
	elog(ERROR, "profile_columns: invalid accessor");
	return (Datum) 0; /* keep the compiler quiet */
}

PG_FUNCTION_INFO_V1(pz_profile_columns);
Datum
pz_profile_columns(PG_FUNCTION_ARGS)
{
	PcCache *c;
	const PcSpec *spec;
	Profile *p = NULL;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int i;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the spec of profile_columns must not be NULL"), errhint(PC_SPEC_HINT)));
	c = pc_cache(fcinfo, PG_GETARG_TEXT_PP(1));
	spec = c->parsed;

	/* the framing once; each trait's state once, read into this call's context */
	if (!PG_ARGISNULL(0))
		p = profile_from_datum(PG_GETARG_DATUM(0));
	pc_spec_read(spec, p, c->states);
	for (i = 0; i < spec->ncols; i++)
	{
		if (spec->cols[i].skip)
		{
			c->values[i] = (Datum) 0;
			c->nulls[i] = true;
			continue;
		}
		c->values[i] =
			pc_column_value(&spec->cols[i], c->states[spec->cols[i].slot], now, &c->nulls[i], NULL);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(c->tupdesc, c->values, c->nulls)));
}
