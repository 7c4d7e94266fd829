/*
 * top.c
 *	  The top_state trait state (decayed top-N): type support, merge,
 *	  aggregate, accessors.
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "utils/builtins.h"

#include "top.h"

/*
 * Rebase when an event's exponent would pass this.  With weights of at most
 * 1e15, 1e15 * 2^512 (~1e169) summed over any count of events stays far
 * from the double range (~1e308).
 */
#define TOP_MAX_WEIGHT 1e15

/*
 * In memory a state keeps up to 4 N candidates; it stores (writes) the N
 * heaviest.  The spare candidates make the summary much closer to exact
 * while events and partial states are folded, at no cost in stored size.
 */
#define TOP_WORKING(s)   (4 * (s)->n)
#define TOP_MAX_EXPONENT 512.0

TopState *
top_new(int32 n, int64 half_life, TimestampTz first_event)
{
	TopState *s = palloc(sizeof(TopState));

	s->hdr.kind = PZ_KIND_TOP;
	s->n = n;
	s->half_life = half_life;
	s->latest = first_event;
	s->base = first_event;
	s->count = 0;
	s->cap = n;
	s->items = palloc(sizeof(TopItem) * s->cap);
	return s;
}

/* Express every weight relative to a new base time. */
static void
top_rebase(TopState *s, TimestampTz base)
{
	double f = exp2(((double) s->base - (double) base) / (double) s->half_life);
	int i;

	for (i = 0; i < s->count; i++)
		s->items[i].w *= f;
	s->base = base;
}

static inline uint32
top_hash(const char *val, int32 len)
{
	return hash_bytes((const unsigned char *) val, len);
}

/*
 * A linear scan over at most 4 N candidates, comparing hashes first: values
 * of one trait often share their length and prefix ("cat-12", "cat-17"), so
 * comparing bytes first would call memcmp for almost every candidate.
 */
static int
top_find(const TopState *s, const char *val, int32 len, uint32 hash)
{
	int i;

	for (i = 0; i < s->count; i++)
		if (s->items[i].hash == hash && pz_value_eq(val, len, s->items[i].val, s->items[i].len))
			return i;
	return -1;
}

/* heavier first, then smaller bytes */
static int
top_item_cmp(const void *a_, const void *b_)
{
	const TopItem *a = a_;
	const TopItem *b = b_;

	if (a->w != b->w)
		return a->w > b->w ? -1 : 1;
	return pz_value_cmp(a->val, a->len, b->val, b->len);
}

/* Add weight w (relative to base) to a value, growing the list as needed. */
static void
top_put(TopState *s, const char *val, int32 len, uint32 hash, double w)
{
	int i = top_find(s, val, len, hash);

	if (i >= 0)
	{
		s->items[i].w = pz_check_finite(s->items[i].w + w, "top_state");
		return;
	}
	if (s->count == s->cap)
	{
		s->cap *= 2;
		s->items = repalloc(s->items, sizeof(TopItem) * s->cap);
	}
	s->items[s->count].w = w;
	s->items[s->count].hash = hash;
	s->items[s->count].val = pz_value_copy(val, len);
	s->items[s->count].len = len;
	s->count++;
}

/* Keep the n heaviest, sorted. */
static void
top_trim(TopState *s)
{
	qsort(s->items, s->count, sizeof(TopItem), top_item_cmp);
	while (s->count > TOP_WORKING(s))
		pfree(s->items[--s->count].val);
}

void
top_add(TopState *s, const char *val, int32 len, TimestampTz ts, double weight)
{
	double e;
	double w;
	uint32 h;
	int i;

	if (ts > s->latest)
		s->latest = ts;
	e = ((double) ts - (double) s->base) / (double) s->half_life;
	if (e > TOP_MAX_EXPONENT)
	{
		top_rebase(s, ts);
		e = 0;
	}
	w = weight * exp2(e);

	h = top_hash(val, len);
	i = top_find(s, val, len, h);
	if (i >= 0)
	{
		s->items[i].w = pz_check_finite(s->items[i].w + w, "top_state");
		return;
	}
	if (s->count == TOP_WORKING(s))
	{
		/*
		 * Full: Space-Saving.  The newcomer takes the place of the lightest
		 * value and inherits its weight, an upper bound of what the newcomer
		 * may have had among the dropped values.  A value that keeps coming
		 * therefore climbs in even after others came first; with 4 N
		 * candidates the inherited error (at most total weight / 4 N) rarely
		 * reaches the N that are read.
		 */
		int min = 0;

		for (i = 1; i < s->count; i++)
			if (top_item_cmp(&s->items[i], &s->items[min]) > 0)
				min = i;
		w = pz_check_finite(w + s->items[min].w, "top_state");
		pfree(s->items[min].val);
		s->items[min] = s->items[--s->count];
	}
	top_put(s, val, len, h, w);
}

static void
top_check_half_life(int64 a, int64 b)
{
	if (a != b)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cannot merge top_state values with different half-lives"),
						errhint("Build every state of one trait with the same half-life.")));
}

static void
top_merge(PzState *dst_, const PzState *src_)
{
	TopState *dst = (TopState *) dst_;
	const TopState *src = (const TopState *) src_;
	double f;
	int i;

	top_check_half_life(dst->half_life, src->half_life);
	if (src->n < dst->n)
		dst->n = src->n;
	if (src->latest > dst->latest)
		dst->latest = src->latest;
	/* a common base no earlier than either: src's factor is then <= 1 */
	top_rebase(dst, dst->latest);
	f = exp2(((double) src->base - (double) dst->base) / (double) dst->half_life);
	for (i = 0; i < src->count; i++)
		top_put(dst, src->items[i].val, src->items[i].len, src->items[i].hash, src->items[i].w * f);
	top_trim(dst);
}

/* Canonical form: weights relative to the latest event, sorted, trimmed. */
static void
top_normalize(TopState *s)
{
	top_rebase(s, s->latest);
	top_trim(s);
}

/*
 * The canonical view of a state: weights relative to the latest event, N
 * heaviest, sorted.  A copy: writing must not change the state, which a
 * window aggregate goes on folding into (and rebasing it in place would
 * round its weights differently from the plain aggregate's).
 */
static TopItem *
top_view(const TopState *s, int *n)
{
	TopItem *v = palloc(sizeof(TopItem) * Max(s->count, 1));
	double f = exp2(((double) s->base - (double) s->latest) / (double) s->half_life);
	int i;

	for (i = 0; i < s->count; i++)
	{
		v[i] = s->items[i];
		v[i].w = s->items[i].w * f;
	}
	qsort(v, s->count, sizeof(TopItem), top_item_cmp);
	*n = Min(s->count, s->n);
	return v;
}

/*
 * Make s what reading its written form gives: in memory a state keeps up
 * to 4 N candidates, weighted relative to an older base, and writes the N
 * heaviest relative to its latest event (top_view); a reader of the state
 * as just written (the audiences of the profile the worker merged) must
 * see those N, in that order.
 */
static void
top_as_written(PzState *s_)
{
	TopState *s = (TopState *) s_;
	int n;
	TopItem *v = top_view(s, &n);

	memcpy(s->items, v, sizeof(TopItem) * n);
	s->count = n;
	s->base = s->latest;
	pfree(v);
}

static void
top_write(PzState *s_, StringInfo buf)
{
	TopState *s = (TopState *) s_;
	int n;
	TopItem *v = top_view(s, &n);
	int i;

	pz_write_varint(buf, s->n);
	pz_write_i64(buf, s->half_life);
	pz_write_i64(buf, s->latest);
	pz_write_varint(buf, n);
	for (i = 0; i < n; i++)
	{
		pz_write_f64(buf, v[i].w);
		pz_write_value(buf, v[i].val, v[i].len);
	}
	pfree(v);
}

/* Start a state from text or binary input; NULL detail means fine. */
static const char *
top_check_header(int64 n, int64 half_life)
{
	if (n < 1 || n > TOP_MAX_N)
		return psprintf("The size %lld is outside 1..%d.", (long long) n, TOP_MAX_N);
	if (half_life <= 0 || half_life > PZ_MAX_INTERVAL_USECS)
		return "The half-life is not a positive interval of at most 100 years.";
	return NULL;
}

static PzState *
top_read(PzReader *r)
{
	int32 n = (int32) pz_read_varint_max(r, TOP_MAX_N, "The size");
	int64 half_life = pz_read_i64(r);
	TimestampTz latest = pz_read_time(r);
	const char *bad = top_check_header(n, half_life);
	int32 count;
	TopState *s;
	int i;

	if (bad)
		pz_corrupt(r->type_name, bad);
	count = pz_read_count(r, n, "values");
	s = top_new(n, half_life, latest);
	for (i = 0; i < count; i++)
	{
		double w = pz_read_f64(r);
		int32 len;
		char *val = pz_read_value(r, &len);

		if (w < 0)
			pz_corrupt(r->type_name, "A weight is negative.");
		top_put(s, val, len, top_hash(val, len), w);
		pfree(val);
	}
	top_normalize(s);
	return (PzState *) s;
}

static void
top_to_json(PzState *s_, StringInfo buf)
{
	TopState *s = (TopState *) s_;
	int n;
	TopItem *v = top_view(s, &n);
	int i;

	appendStringInfo(buf, "{\"n\": %d, \"half_life\": ", s->n);
	pz_json_interval(buf, s->half_life);
	appendStringInfoString(buf, ", \"latest\": ");
	pz_json_time(buf, s->latest);
	appendStringInfoString(buf, ", \"items\": [");
	for (i = 0; i < n; i++)
	{
		appendStringInfoString(buf, i > 0 ? ", [" : "[");
		pz_json_string(buf, v[i].val);
		appendStringInfoString(buf, ", ");
		pz_json_float8(buf, v[i].w);
		appendStringInfoChar(buf, ']');
	}
	appendStringInfoString(buf, "]}");
	pfree(v);
}

static PzState *
top_from_json(JsonbContainer *obj)
{
	const char *tn = "top_state";
	JsonbValue v;
	JsonbContainer *items;
	int64 n;
	int64 half_life;
	TimestampTz latest;
	const char *bad;
	int count;
	int i;
	TopState *s;

	pz_json_expect_keys(obj, 4, tn, "n, half_life, latest, items");
	pz_json_get(obj, "n", &v, false, tn);
	n = pz_json_int64(&v, "n", tn);
	pz_json_get(obj, "half_life", &v, false, tn);
	half_life = pz_json_interval_usecs(&v, "half_life", tn);
	pz_json_get(obj, "latest", &v, false, tn);
	latest = pz_json_timestamp(&v, "latest", tn);
	bad = top_check_header(n, half_life);
	if (bad)
		pz_bad_text(tn, bad, NULL);
	pz_json_get(obj, "items", &v, false, tn);
	items = pz_json_array(&v, &count, "items", tn);
	if (count > n)
		pz_bad_text(tn, "There are more items than \"n\".", NULL);
	s = top_new((int32) n, half_life, latest);
	for (i = 0; i < count; i++)
	{
		JsonbValue item;
		JsonbValue e;
		JsonbContainer *pair;
		int plen;
		int32 len;
		char *val;
		double w;

		pz_json_elem(items, i, &item);
		pair = pz_json_array(&item, &plen, "items[i]", tn);
		if (plen != 2)
			pz_bad_text(tn, "Each item must be a pair [value, weight].", NULL);
		pz_json_elem(pair, 0, &e);
		val = pz_json_text(&e, &len, "item value", tn);
		pz_json_elem(pair, 1, &e);
		w = pz_json_float8_value(&e, "item weight", tn);
		if (w < 0)
			pz_bad_text(tn, "A weight is negative.", NULL);
		top_put(s, val, len, top_hash(val, len), w);
	}
	top_normalize(s);
	return (PzState *) s;
}

const PzKindOps pz_top_ops = {
	.kind = PZ_KIND_TOP,
	.type_name = "top_state",
	.read = top_read,
	.write = top_write,
	.merge = top_merge,
	.as_written = top_as_written,
	.to_json = top_to_json,
	.from_json = top_from_json,
};

/* top_agg(value text|bigint, ts, n int, half_life interval [, weight float8]) */
PG_FUNCTION_INFO_V1(top_agg_trans);
Datum
top_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "top_agg");
	TopState *s = PG_ARGISNULL(0) ? NULL : (TopState *) PG_GETARG_POINTER(0);
	int32 n = pz_arg_int(fcinfo, 3, 1, TOP_MAX_N, "size", "top_agg");
	int64 half_life;
	double weight = 1.0;
	char buf[PZ_INT8_BUFLEN];
	const char *val;
	int32 len;
	TimestampTz ts;
	MemoryContext old;

	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("half-life of top_agg must not be NULL"), errhint("Pass a constant.")));
	half_life = pz_interval_usecs(PG_GETARG_INTERVAL_P(4), "half-life of top_agg");
	if (s != NULL && (s->n != n || s->half_life != half_life))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("size and half-life of top_agg must be the same in every row"),
						errhint("Pass a constant, not a column: the states of one trait must share "
								"it to merge.")));
	if (PG_NARGS() > 5)
	{
		if (PG_ARGISNULL(5))
			goto skip;
		weight = PG_GETARG_FLOAT8(5);
		if (!(weight >= 0 && weight <= TOP_MAX_WEIGHT))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("weight of top_agg must be between 0 and 1e15, not %g", weight),
					 errhint("Give events a weight such as 1 for a view and 5 for a purchase.")));
	}
	if (!pz_arg_value(fcinfo, 1, buf, &val, &len) || !pz_arg_time(fcinfo, 2, &ts))
		goto skip;
	old = MemoryContextSwitchTo(aggcontext);
	if (s == NULL)
		s = top_new(n, half_life, ts);
	top_add(s, val, len, ts, weight);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);

skip:
	if (s == NULL)
		PG_RETURN_NULL();
	PG_RETURN_POINTER(s);
}

Datum
top_values_datum(const TopState *s, int32 k)
{
	const char **vals = palloc(sizeof(char *) * Max(s->count, 1));
	int32 *lens = palloc(sizeof(int32) * Max(s->count, 1));
	int i;

	Assert(k >= 0);
	k = Min(k, s->count);
	for (i = 0; i < k; i++)
	{
		vals[i] = s->items[i].val;
		lens[i] = s->items[i].len;
	}
	return pz_text_array(vals, lens, k);
}

/* top_values(state [, k int]): values, heaviest first */
PG_FUNCTION_INFO_V1(top_values);
Datum
top_values(PG_FUNCTION_ARGS)
{
	TopState *s = (TopState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_TOP);
	int32 k = s->count;

	if (PG_NARGS() > 1)
	{
		if (PG_GETARG_INT32(1) < 0)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("the number of values to read must not be negative"),
							errhint("Pass 0 or more, or leave it out to read every value.")));
		k = PG_GETARG_INT32(1);
	}
	PG_RETURN_DATUM(top_values_datum(s, k));
}

/*
 * top_weights(state [, at timestamptz]): weights in top_values order,
 * decayed to at (default: the latest event, where an event weighs 1).
 */
PG_FUNCTION_INFO_V1(top_weights);
Datum
top_weights(PG_FUNCTION_ARGS)
{
	TopState *s = (TopState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_TOP);
	double *w = palloc(sizeof(double) * Max(s->count, 1));
	double f = 1.0;
	int i;

	if (PG_NARGS() > 1)
	{
		TimestampTz at = PG_GETARG_TIMESTAMPTZ(1);

		if (TIMESTAMP_NOT_FINITE(at))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("the time weights are read at must be finite"),
							errhint("Leave it out to read the weights as of the latest event.")));
		f = exp2(((double) s->latest - (double) at) / (double) s->half_life);
	}
	/* a weight of 0 stays 0 even when reading so far back that f is infinite */
	for (i = 0; i < s->count; i++)
		w[i] = s->items[i].w == 0 ? 0 : s->items[i].w * f;
	PG_RETURN_DATUM(pz_float8_array(w, s->count));
}
