/*
 * windowed.c
 *	  The windowed_state trait state: type support, merge, aggregate,
 *	  accessors.  See windowed.h for the bucket layout.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "common/int.h"
#include "utils/builtins.h"

#include "windowed.h"

#define WINDOWED_DAY_ZONE_DAYS 90
#define WINDOWED_MAX_BUCKETS   1000 /* far above what the zones allow (~300) */

static inline int64
floor_to(int64 t, int64 unit)
{
	int64 q = t / unit;

	if (t % unit < 0)
		q--;
	return q * unit;
}

/* The zone edges under a head (see windowed.h). */
typedef struct WindowZones
{
	TimestampTz minute_from;
	TimestampTz hour_from;
	TimestampTz day_from;
} WindowZones;

static inline void
window_zones(TimestampTz head, WindowZones *z)
{
	TimestampTz hour = floor_to(head, USECS_PER_HOUR);
	TimestampTz day = floor_to(head, USECS_PER_DAY);

	z->minute_from = hour - USECS_PER_HOUR;
	z->hour_from = day - 2 * USECS_PER_DAY;
	z->day_from = day - WINDOWED_DAY_ZONE_DAYS * USECS_PER_DAY;
}

/* The bucket an event (or bucket) at t belongs to; false: too old. */
static inline bool
window_key(const WindowZones *z, TimestampTz t, TimestampTz *key)
{
	if (t >= z->minute_from)
		*key = floor_to(t, USECS_PER_MINUTE);
	else if (t >= z->hour_from)
		*key = floor_to(t, USECS_PER_HOUR);
	else if (t >= z->day_from)
		*key = floor_to(t, USECS_PER_DAY);
	else
		return false;
	return true;
}

static inline TimestampTz
zones_until(TimestampTz head)
{
	return floor_to(head, USECS_PER_HOUR) + USECS_PER_HOUR;
}

WindowedState *
windowed_new(TimestampTz first_event)
{
	WindowedState *s = palloc(sizeof(WindowedState));

	StaticAssertStmt(sizeof(WindowedState) <= 128, "a windowed state fits a 128-byte chunk");
	s->hdr.kind = PZ_KIND_WINDOWED;
	s->head = first_event;
	s->zones_until = zones_until(first_event);
	s->count = 0;
	s->sum = 0;
	s->nbuckets = 0;
	s->npending = 0;
	/* no buckets until the first event is settled: many states stay small */
	s->cap = 0;
	s->counts = NULL;
	s->sums = NULL;
	return s;
}

/* The bucket starts, minutes back from zones_until: descending. */
static inline int32 *
windowed_mins(const WindowedState *s)
{
	return (int32 *) (s->counts + s->cap);
}

static inline TimestampTz
bucket_start(const WindowedState *s, int i)
{
	return s->zones_until - (int64) windowed_mins(s)[i] * USECS_PER_MINUTE;
}

/* a bucket's start (a zone key: whole minutes, within the zones) as it is held */
static inline int32
bucket_min(const WindowedState *s, TimestampTz key)
{
	return (int32) ((s->zones_until - key) / USECS_PER_MINUTE);
}

static inline double
bucket_sum(const WindowedState *s, int i)
{
	return s->sums == NULL ? 0 : s->sums[i];
}

/* -0.0 is a sum of its own (it is stored as such), so only +0.0 needs no column */
static inline bool
sum_is_zero(double v)
{
	return v == 0 && !signbit(v);
}

/* Room for cap buckets, the n there are kept. */
static void
windowed_resize(WindowedState *s, int32 cap)
{
	int64 *counts = palloc((sizeof(int64) + sizeof(int32)) * cap);

	if (s->nbuckets > 0)
	{
		memcpy(counts, s->counts, sizeof(int64) * s->nbuckets);
		memcpy(counts + cap, windowed_mins(s), sizeof(int32) * s->nbuckets);
	}
	if (s->counts != NULL)
		pfree(s->counts);
	s->counts = counts;
	if (s->sums != NULL)
		s->sums = repalloc(s->sums, sizeof(double) * cap);
	s->cap = cap;
}

/* The sums column, for a bucket whose sum is not +0.0. */
static void
windowed_need_sums(WindowedState *s)
{
	if (s->sums == NULL)
		s->sums = palloc0(sizeof(double) * s->cap);
}

static void
bucket_add(WindowedState *s, TimestampTz key, int64 count, double sum)
{
	int32 m = bucket_min(s, key);
	int32 *mins = windowed_mins(s);
	int lo = 0;
	int hi = s->nbuckets;

	/* events mostly arrive in time order: try the newest bucket first */
	if (hi > 0 && mins[hi - 1] >= m)
		lo = mins[hi - 1] == m ? hi - 1 : hi;
	else
	{
		while (lo < hi)
		{
			int mid = (lo + hi) / 2;

			if (mins[mid] > m)
				lo = mid + 1;
			else
				hi = mid;
		}
	}
	if (lo < s->nbuckets && mins[lo] == m)
	{
		s->counts[lo] += count; /* bucket counts never exceed the checked total */
		if (!sum_is_zero(sum))
		{
			windowed_need_sums(s);
			s->sums[lo] = pz_check_finite(s->sums[lo] + sum, "windowed_state");
		}
		return;
	}
	if (s->nbuckets == s->cap)
	{
		windowed_resize(s, s->cap == 0 ? 4 : s->cap * 2);
		mins = windowed_mins(s);
	}
	memmove(&s->counts[lo + 1], &s->counts[lo], sizeof(int64) * (s->nbuckets - lo));
	memmove(&mins[lo + 1], &mins[lo], sizeof(int32) * (s->nbuckets - lo));
	s->counts[lo] = count;
	mins[lo] = m;
	if (s->sums != NULL)
	{
		memmove(&s->sums[lo + 1], &s->sums[lo], sizeof(double) * (s->nbuckets - lo));
		s->sums[lo] = sum;
	}
	else if (!sum_is_zero(sum))
	{
		s->nbuckets++; /* the new column is zeroed for every bucket, this one included */
		windowed_need_sums(s);
		s->sums[lo] = sum;
		return;
	}
	s->nbuckets++;
}

/*
 * Move the head forward and re-bucket.  Keys map monotonically, so the
 * buckets stay sorted; equal neighbours coalesce; too-old ones fall off the
 * front.  The starts are held from zones_until, so they are rewritten.
 */
static void
windowed_advance(WindowedState *s, TimestampTz head)
{
	WindowZones z;
	TimestampTz old_until = s->zones_until;
	int32 *mins = windowed_mins(s);
	int i;
	int out = 0;

	s->head = head;
	if (head < s->zones_until)
		return; /* same hour: the zone edges stay */
	s->zones_until = zones_until(head);
	window_zones(head, &z);
	for (i = 0; i < s->nbuckets; i++)
	{
		TimestampTz key;
		int32 m;

		if (!window_key(&z, old_until - (int64) mins[i] * USECS_PER_MINUTE, &key))
			continue;
		m = bucket_min(s, key);
		if (out > 0 && mins[out - 1] == m)
		{
			s->counts[out - 1] += s->counts[i];
			if (s->sums != NULL)
				s->sums[out - 1] = pz_check_finite(s->sums[out - 1] + s->sums[i], "windowed_state");
			continue;
		}
		s->counts[out] = s->counts[i];
		mins[out] = m;
		if (s->sums != NULL)
			s->sums[out] = s->sums[i];
		out++;
	}
	s->nbuckets = out;
}

/* Count an event whose time is not after head, under the given zones. */
static inline void
windowed_count_event(WindowedState *s, const WindowZones *z, TimestampTz ts, double value)
{
	TimestampTz key;

	s->count = pz_add_count(s->count, 1, "windowed_state");
	s->sum = pz_check_finite(s->sum + value, "windowed_state");
	if (window_key(z, ts, &key))
		bucket_add(s, key, 1, value);
}

void
windowed_add(WindowedState *s, TimestampTz ts, double value)
{
	WindowZones z;

	if (ts > s->head)
		windowed_advance(s, ts);
	window_zones(s->head, &z);
	windowed_count_event(s, &z, ts, value);
}

/*
 * The aggregate's transition buffers events in the state itself and buckets
 * them a handful at a time, in time order: a group's buckets are then touched
 * once per handful rather than once per event, which is what a hash
 * aggregate over many groups pays for (a cache miss per touch).
 */
void
windowed_buffer(WindowedState *s, TimestampTz ts, double value)
{
	if (s->npending == WINDOWED_PENDING)
		windowed_settle((PzState *) s);
	s->pending[s->npending].ts = ts;
	s->pending[s->npending].value = value;
	s->npending++;
}

void
windowed_settle(PzState *s_)
{
	WindowedState *s = (WindowedState *) s_;
	WindowZones z;
	int n = s->npending;
	int i;
	int j;

	/* insertion sort: a handful of events, often already in order */
	for (i = 1; i < n; i++)
	{
		WindowEvent e = s->pending[i];

		for (j = i; j > 0 && s->pending[j - 1].ts > e.ts; j--)
			s->pending[j] = s->pending[j - 1];
		s->pending[j] = e;
	}
	s->npending = 0;
	if (n == 0)
		return;
	if (s->pending[n - 1].ts > s->head)
		windowed_advance(s, s->pending[n - 1].ts);
	window_zones(s->head, &z);
	for (i = 0; i < n; i++)
		windowed_count_event(s, &z, s->pending[i].ts, s->pending[i].value);
}

/*
 * Fold src's buckets into dst's, re-keyed under dst's zones.  Both are
 * sorted, and re-keying keeps src's sorted (keys map monotonically), so one
 * pass merges them: adding them one by one would search and shift for each,
 * and a parallel aggregate's combine merges a partial state per worker into
 * every group.  Equal keys fold in the order bucket_add would fold them.
 */
static void
windowed_merge_buckets(WindowedState *dst, const WindowedState *src)
{
	WindowZones z;
	WindowedState out = *dst;
	int32 *dmins = windowed_mins(dst);
	int32 *omins;
	int i = 0;
	int j = 0;

	if (src->nbuckets == 0)
		return;
	window_zones(dst->head, &z);
	out.nbuckets = 0;
	out.cap = dst->nbuckets + src->nbuckets;
	out.counts = palloc((sizeof(int64) + sizeof(int32)) * out.cap);
	out.sums = dst->sums != NULL || src->sums != NULL ? palloc(sizeof(double) * out.cap) : NULL;
	omins = windowed_mins(&out);
	for (;;)
	{
		int64 count;
		double sum;
		int32 m = 0;
		bool from_src = j < src->nbuckets;

		if (from_src)
		{
			TimestampTz key;

			if (!window_key(&z, bucket_start(src, j), &key))
			{
				j++; /* too old under dst's head */
				continue;
			}
			m = bucket_min(dst, key);
		}
		if (i < dst->nbuckets && (!from_src || dmins[i] >= m))
		{
			m = dmins[i];
			count = dst->counts[i];
			sum = bucket_sum(dst, i);
			i++;
		}
		else if (from_src)
		{
			count = src->counts[j];
			sum = bucket_sum(src, j);
			j++;
		}
		else
			break;
		if (out.nbuckets > 0 && omins[out.nbuckets - 1] == m)
		{
			out.counts[out.nbuckets - 1] += count; /* never more than the checked total */
			if (out.sums != NULL)
				out.sums[out.nbuckets - 1] =
					pz_check_finite(out.sums[out.nbuckets - 1] + sum, "windowed_state");
			continue;
		}
		out.counts[out.nbuckets] = count;
		omins[out.nbuckets] = m;
		if (out.sums != NULL)
			out.sums[out.nbuckets] = sum;
		out.nbuckets++;
	}
	if (dst->counts != NULL)
		pfree(dst->counts);
	if (dst->sums != NULL)
		pfree(dst->sums);
	dst->counts = out.counts;
	dst->sums = out.sums;
	dst->cap = out.cap;
	dst->nbuckets = out.nbuckets;
}

static void
windowed_merge(PzState *dst_, const PzState *src_)
{
	WindowedState *dst = (WindowedState *) dst_;
	const WindowedState *src = (const WindowedState *) src_;
	int i;

	if (src->head > dst->head)
		windowed_advance(dst, src->head);
	dst->count = pz_add_count(dst->count, src->count, "windowed_state");
	dst->sum = pz_check_finite(dst->sum + src->sum, "windowed_state");
	windowed_merge_buckets(dst, src);
	for (i = 0; i < src->npending; i++)
		windowed_add(dst, src->pending[i].ts, src->pending[i].value);
}

void
windowed_read(const WindowedState *s, TimestampTz at, int64 window_us, int64 *count, double *sum)
{
	TimestampTz from = at - window_us;
	int i;

	*count = 0;
	*sum = 0;
	for (i = s->nbuckets - 1; i >= 0; i--)
	{
		TimestampTz start = bucket_start(s, i);

		if (start < from)
			break;
		if (start > at)
			continue;
		*count += s->counts[i];
		*sum += bucket_sum(s, i);
	}
}

/*
 * windowed_read(s, t, window) counts the buckets with start in
 * [t - window, t]: bucket b enters at t = b.start and leaves at
 * t = b.start + window + 1 microsecond.
 */
int
windowed_changes(const WindowedState *s, int64 window_us, TimestampTz after, TimestampTz *out,
				 int max, bool *more)
{
	TimestampTz *all = palloc(sizeof(TimestampTz) * (2 * s->nbuckets + 1));
	int n = 0, k = 0;

	for (int i = 0; i < s->nbuckets; i++)
	{
		TimestampTz start = bucket_start(s, i);

		if (start > after)
			all[n++] = start;
		if (start <= END_TIMESTAMP - window_us - 1 && start + window_us + 1 > after)
			all[n++] = start + window_us + 1;
	}
	qsort(all, n, sizeof(TimestampTz), pz_timestamp_cmp);
	for (int i = 0; i < n && k < max; i++)
		if (k == 0 || all[i] != out[k - 1])
			out[k++] = all[i];
	*more = false;
	for (int i = 0; i < n; i++)
		if (all[i] > (k > 0 ? out[k - 1] : after) && k == max)
		{
			*more = true;
			break;
		}
	pfree(all);
	return k;
}

/*
 * Build a state from its parts (text or binary input), checking what an
 * aggregate could have produced and re-bucketing into canonical form.  Or,
 * counting, check the same and count the events in [from, at] without
 * building the buckets.
 */
typedef struct WindowedLoader
{
	WindowedState *s;
	WindowZones zones; /* under the head */
	int64 bucket_total;
	const char *type_name;
	bool text;
	bool counting;
	TimestampTz from;
	TimestampTz at;
	int64 window_count;
} WindowedLoader;

static pg_attribute_noreturn() void windowed_bad(WindowedLoader *l, const char *detail)
{
	if (l->text)
		pz_bad_text(l->type_name, detail, NULL);
	pz_corrupt(l->type_name, detail);
}

static void
windowed_load_start(WindowedLoader *l, TimestampTz head, int64 count, double sum, bool text)
{
	l->type_name = "windowed_state";
	l->text = text;
	l->bucket_total = 0;
	if (count < 1)
		windowed_bad(l, "A windowed_state holds at least one event.");
	l->s = windowed_new(head);
	l->s->count = count;
	l->s->sum = sum;
	window_zones(head, &l->zones);
}

/* Room for the n buckets to come, allocated once (they come in order). */
static void
windowed_load_reserve(WindowedLoader *l, int n)
{
	if (n > 0 && !l->counting)
		windowed_resize(l->s, n);
}

static void
windowed_load_bucket(WindowedLoader *l, TimestampTz start, int64 count, double sum)
{
	TimestampTz key;

	if (start > l->s->head)
		windowed_bad(l, "A bucket starts after the latest event.");
	if (count < 1)
		windowed_bad(l, "A bucket holds at least one event.");
	if (pg_add_s64_overflow(l->bucket_total, count, &l->bucket_total) ||
		l->bucket_total > l->s->count)
		windowed_bad(l, "The buckets hold more events than the total.");
	if (!window_key(&l->zones, start, &key))
		return;
	if (!l->counting)
		bucket_add(l->s, key, count, sum);
	else if (key >= l->from && key <= l->at)
		l->window_count += count; /* no more than the checked total */
}

/*
 * Flat body: head, count, a flag telling whether sums follow, sum, then the
 * buckets oldest first, their starts in minutes: the first as its distance
 * back from head's minute, each later one as its distance from the one
 * before; per bucket its count and, with the flag, its sum.  A count-only
 * bucket costs 2 to 4 bytes.
 */
static void
windowed_load_flat(PzReader *r, WindowedLoader *l)
{
	TimestampTz head = pz_read_time(r);
	int64 count = pz_read_varint_max(r, PG_INT64_MAX, "The count");
	uint8 has_sums = pz_read_u8(r);
	double sum;
	int64 head_min = floor_to(head, USECS_PER_MINUTE) / USECS_PER_MINUTE;
	int64 key_min = head_min;
	int32 n;
	int i;

	if (has_sums > 1)
		pz_corrupt(r->type_name, "Unknown bucket format.");
	sum = has_sums ? pz_read_f64(r) : 0;
	windowed_load_start(l, head, count, sum, false);
	n = pz_read_count(r, WINDOWED_MAX_BUCKETS, "buckets");
	windowed_load_reserve(l, n);
	for (i = 0; i < n; i++)
	{
		int64 c;
		double v;

		if (i == 0)
			key_min -= pz_read_varint_max(r, head_min - MIN_TIMESTAMP / USECS_PER_MINUTE,
										  "A bucket start");
		else
		{
			int64 delta = pz_read_varint_max(r, head_min - key_min, "A bucket start");

			if (delta == 0)
				pz_corrupt(r->type_name, "Two buckets start at the same time.");
			key_min += delta;
		}
		c = pz_read_varint_max(r, PG_INT64_MAX, "A bucket count");
		v = has_sums ? pz_read_f64(r) : 0;
		windowed_load_bucket(l, key_min * USECS_PER_MINUTE, c, v);
	}
}

static PzState *
windowed_read_flat(PzReader *r)
{
	WindowedLoader l = {0};

	windowed_load_flat(r, &l);
	return (PzState *) l.s;
}

static void
windowed_write(PzState *s_, StringInfo buf)
{
	WindowedState *s = (WindowedState *) s_;

	windowed_settle(s_); /* a no-op for settled states (aggregates settle first) */
	{
		int64 head_min = floor_to(s->head, USECS_PER_MINUTE) / USECS_PER_MINUTE;
		int64 prev = head_min;
		bool has_sums = s->sum != 0;
		int i;

		for (i = 0; i < s->nbuckets && !has_sums; i++)
			has_sums = bucket_sum(s, i) != 0;
		pz_write_i64(buf, s->head);
		pz_write_varint(buf, (uint64) s->count);
		pz_write_u8(buf, has_sums);
		if (has_sums)
			pz_write_f64(buf, s->sum);
		pz_write_varint(buf, s->nbuckets);
		for (i = 0; i < s->nbuckets; i++)
		{
			int64 key_min = bucket_start(s, i) / USECS_PER_MINUTE;

			pz_write_varint(buf, (uint64) (i == 0 ? head_min - key_min : key_min - prev));
			prev = key_min;
			pz_write_varint(buf, (uint64) s->counts[i]);
			if (has_sums)
				pz_write_f64(buf, bucket_sum(s, i));
		}
	}
}

static void
windowed_to_json(PzState *s_, StringInfo buf)
{
	WindowedState *s = (WindowedState *) s_;
	int i;

	appendStringInfoString(buf, "{\"head\": ");
	pz_json_time(buf, s->head);
	appendStringInfo(buf, ", \"count\": " INT64_FORMAT ", \"sum\": ", s->count);
	pz_json_float8(buf, s->sum);
	appendStringInfoString(buf, ", \"buckets\": [");
	for (i = 0; i < s->nbuckets; i++)
	{
		appendStringInfoString(buf, i > 0 ? ", [" : "[");
		pz_json_time(buf, bucket_start(s, i));
		appendStringInfo(buf, ", " INT64_FORMAT ", ", s->counts[i]);
		pz_json_float8(buf, bucket_sum(s, i));
		appendStringInfoChar(buf, ']');
	}
	appendStringInfoString(buf, "]}");
}

static PzState *
windowed_from_json(JsonbContainer *obj)
{
	const char *tn = "windowed_state";
	WindowedLoader l = {0};
	JsonbValue v;
	JsonbContainer *buckets;
	TimestampTz head;
	int64 count;
	double sum;
	int n;
	int i;

	pz_json_expect_keys(obj, 4, tn, "head, count, sum, buckets");
	pz_json_get(obj, "head", &v, false, tn);
	head = pz_json_timestamp(&v, "head", tn);
	pz_json_get(obj, "count", &v, false, tn);
	count = pz_json_int64(&v, "count", tn);
	pz_json_get(obj, "sum", &v, false, tn);
	sum = pz_json_float8_value(&v, "sum", tn);
	windowed_load_start(&l, head, count, sum, true);
	pz_json_get(obj, "buckets", &v, false, tn);
	buckets = pz_json_array(&v, &n, "buckets", tn);
	if (n > WINDOWED_MAX_BUCKETS)
		pz_bad_text(
			tn, psprintf("There are %d buckets; at most %d are possible.", n, WINDOWED_MAX_BUCKETS),
			NULL);
	windowed_load_reserve(&l, n);
	for (i = 0; i < n; i++)
	{
		JsonbValue e;
		JsonbValue x;
		JsonbContainer *triple;
		int tlen;
		TimestampTz start;
		int64 c;
		double s;

		pz_json_elem(buckets, i, &e);
		triple = pz_json_array(&e, &tlen, "buckets[i]", tn);
		if (tlen != 3)
			pz_bad_text(tn, "Each bucket must be [start, count, sum].", NULL);
		pz_json_elem(triple, 0, &x);
		start = pz_json_timestamp(&x, "bucket start", tn);
		pz_json_elem(triple, 1, &x);
		c = pz_json_int64(&x, "bucket count", tn);
		pz_json_elem(triple, 2, &x);
		s = pz_json_float8_value(&x, "bucket sum", tn);
		windowed_load_bucket(&l, start, c, s);
	}
	return (PzState *) l.s;
}

const PzKindOps pz_windowed_ops = {
	.kind = PZ_KIND_WINDOWED,
	.type_name = "windowed_state",
	.read = windowed_read_flat,
	.write = windowed_write,
	.settle = windowed_settle,
	.merge = windowed_merge,
	.to_json = windowed_to_json,
	.from_json = windowed_from_json,
};

/* windowed_agg(ts timestamptz [, value float8]) transition */
PG_FUNCTION_INFO_V1(windowed_agg_trans);
Datum
windowed_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "windowed_agg");
	WindowedState *s = PG_ARGISNULL(0) ? NULL : (WindowedState *) PG_GETARG_POINTER(0);
	TimestampTz ts;
	double value = 0;
	MemoryContext old;

	if (PG_NARGS() > 2)
	{
		if (PG_ARGISNULL(2))
			goto skip;
		value = PG_GETARG_FLOAT8(2);
		if (isnan(value) || isinf(value))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("value of windowed_agg must be finite"),
							errhint("Filter out NaN and infinite values.")));
	}
	if (!pz_arg_time(fcinfo, 1, &ts))
		goto skip;
	old = MemoryContextSwitchTo(aggcontext);
	if (s == NULL)
		s = windowed_new(ts);
	windowed_buffer(s, ts, value);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);

skip:
	if (s == NULL)
		PG_RETURN_NULL();
	PG_RETURN_POINTER(s);
}

/* The window and the read time of windowed_count and windowed_sum. */
static void
windowed_args(FunctionCallInfo fcinfo, int64 *window_us, TimestampTz *at)
{
	*window_us = pz_interval_usecs(PG_GETARG_INTERVAL_P(1), "window");
	*at = PG_NARGS() > 2 ? PG_GETARG_TIMESTAMPTZ(2) : GetCurrentTransactionStartTimestamp();
	if (TIMESTAMP_NOT_FINITE(*at))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("the time a window is read at must be finite"),
						errhint("Leave it out to read at now().")));
}

Datum
windowed_count_datum(const WindowedState *s, int64 window_us, TimestampTz at)
{
	int64 count;
	double sum;

	windowed_read(s, at, window_us, &count, &sum);
	return Int64GetDatum(count);
}

Datum
windowed_sum_datum(const WindowedState *s, int64 window_us, TimestampTz at)
{
	int64 count;
	double sum;

	windowed_read(s, at, window_us, &count, &sum);
	return Float8GetDatum(sum);
}

/* windowed_count(state, window interval [, at timestamptz default now()]) */
PG_FUNCTION_INFO_V1(windowed_count);
Datum
windowed_count(PG_FUNCTION_ARGS)
{
	struct varlena *flat = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
	WindowedLoader l = {0};
	PzReader r;
	int64 window_us;

	/*
	 * Counted from the stored form as it is read, without building the
	 * state: a query reads a state several windows at a time, and building
	 * it was most of each read.  The checks and the re-bucketing are the
	 * same, so is the count.
	 */
	windowed_args(fcinfo, &window_us, &l.at);
	l.counting = true;
	l.from = l.at - window_us;
	pz_reader_open(&r, VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat), PZ_KIND_WINDOWED);
	windowed_load_flat(&r, &l);
	pz_reader_close(&r);
	PG_RETURN_INT64(l.window_count);
}

PG_FUNCTION_INFO_V1(windowed_sum);
Datum
windowed_sum(PG_FUNCTION_ARGS)
{
	WindowedState *s = (WindowedState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_WINDOWED);
	int64 window_us;
	TimestampTz at;

	windowed_args(fcinfo, &window_us, &at);
	PG_RETURN_DATUM(windowed_sum_datum(s, window_us, at));
}

PG_FUNCTION_INFO_V1(windowed_total_count);
Datum
windowed_total_count(PG_FUNCTION_ARGS)
{
	WindowedState *s = (WindowedState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_WINDOWED);

	PG_RETURN_INT64(s->count);
}

PG_FUNCTION_INFO_V1(windowed_total_sum);
Datum
windowed_total_sum(PG_FUNCTION_ARGS)
{
	WindowedState *s = (WindowedState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_WINDOWED);

	PG_RETURN_FLOAT8(s->sum);
}

PG_FUNCTION_INFO_V1(windowed_latest);
Datum
windowed_latest(PG_FUNCTION_ARGS)
{
	WindowedState *s = (WindowedState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_WINDOWED);

	PG_RETURN_TIMESTAMPTZ(s->head);
}
