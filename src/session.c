/*
 * session.c
 *	  The session_state trait state: type support, merge, aggregate,
 *	  accessors.  See session.h for what is kept and why.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "session.h"

#define SESSION_HORIZON(s) Max(SESSION_MIN_HORIZON, 2 * (s)->gap)

SessionState *
session_new(int64 gap)
{
	SessionState *s = palloc(sizeof(SessionState));

	s->hdr.kind = PZ_KIND_SESSION;
	s->gap = gap;
	s->count = 0;
	s->cap = 2;
	s->sessions = palloc(sizeof(Session) * s->cap);
	return s;
}

/* categories: more events first, then smaller bytes */
static int
category_cmp(const void *a_, const void *b_)
{
	const SessionCategory *a = a_;
	const SessionCategory *b = b_;

	if (a->count != b->count)
		return a->count > b->count ? -1 : 1;
	return pz_value_cmp(a->val, a->len, b->val, b->len);
}

static void
session_free(Session *x)
{
	int i;

	if (x->item)
		pfree(x->item);
	for (i = 0; i < x->ncat; i++)
		pfree(x->cats[i].val);
	if (x->cats)
		pfree(x->cats);
}

static void
session_count_category(Session *x, const char *val, int32 len, int64 count)
{
	int i;

	for (i = 0; i < x->ncat; i++)
	{
		if (pz_value_eq(val, len, x->cats[i].val, x->cats[i].len))
		{
			x->cats[i].count = pz_add_count(x->cats[i].count, count, "session_state");
			return;
		}
	}
	if (x->ncat == x->catcap)
	{
		/* most sessions see a few categories: grow from 4 to the cap (+1) */
		x->catcap = x->catcap == 0 ? 4 : Min(x->catcap * 2, SESSION_MAX_CATEGORIES + 1);
		x->cats = x->cats == NULL ? palloc(sizeof(SessionCategory) * x->catcap)
								  : repalloc(x->cats, sizeof(SessionCategory) * x->catcap);
	}
	x->cats[x->ncat].val = pz_value_copy(val, len);
	x->cats[x->ncat].len = len;
	x->cats[x->ncat].count = count;
	x->ncat++;
	if (x->ncat > SESSION_MAX_CATEGORIES)
	{
		/* one too many: drop the least frequent */
		qsort(x->cats, x->ncat, sizeof(SessionCategory), category_cmp);
		x->ncat--;
		pfree(x->cats[x->ncat].val);
	}
}

/* the last item is the one with the latest (time, value) */
static void
session_set_item(Session *x, TimestampTz ts, const char *item, int32 len)
{
	if (x->item != NULL &&
		(ts < x->item_time ||
		 (ts == x->item_time && pz_value_cmp(item, len, x->item, x->item_len) <= 0)))
		return;
	if (x->item)
		pfree(x->item);
	x->item = pz_value_copy(item, len);
	x->item_len = len;
	x->item_time = ts;
}

/* Fold session b into a (b is left to the caller to free). */
static void
session_absorb(Session *a, const Session *b)
{
	int i;

	a->start = Min(a->start, b->start);
	a->end = Max(a->end, b->end);
	a->events = pz_add_count(a->events, b->events, "session_state");
	if (b->item)
		session_set_item(a, b->item_time, b->item, b->item_len);
	for (i = 0; i < b->ncat; i++)
		session_count_category(a, b->cats[i].val, b->cats[i].len, b->cats[i].count);
}

/* Drop sessions that ended before the horizon, and the oldest past the cap. */
static void
session_prune(SessionState *s)
{
	TimestampTz latest;
	int drop = 0;
	int i;

	if (s->count == 0)
		return;
	latest = s->sessions[s->count - 1].end;
	while (drop < s->count - 1 && s->sessions[drop].end < latest - SESSION_HORIZON(s))
		drop++;
	drop = Max(drop, s->count - SESSION_MAX_SESSIONS);
	if (drop == 0)
		return;
	for (i = 0; i < drop; i++)
		session_free(&s->sessions[i]);
	memmove(&s->sessions[0], &s->sessions[drop], sizeof(Session) * (s->count - drop));
	s->count -= drop;
}

/* Insert a session (taking ownership) and join it with any it touches. */
static void
session_insert(SessionState *s, Session *x)
{
	int pos = s->count;

	while (pos > 0 && s->sessions[pos - 1].start > x->start)
		pos--;
	/* join the previous session if x starts within its gap */
	if (pos > 0 && pz_time_diff(x->start, s->sessions[pos - 1].end) <= s->gap)
	{
		pos--;
		session_absorb(&s->sessions[pos], x);
		session_free(x);
	}
	else
	{
		if (s->count == s->cap)
		{
			s->cap *= 2;
			s->sessions = repalloc(s->sessions, sizeof(Session) * s->cap);
		}
		memmove(&s->sessions[pos + 1], &s->sessions[pos], sizeof(Session) * (s->count - pos));
		s->sessions[pos] = *x;
		s->count++;
	}
	/* the (grown) session may now reach the ones after it */
	while (pos + 1 < s->count &&
		   pz_time_diff(s->sessions[pos + 1].start, s->sessions[pos].end) <= s->gap)
	{
		session_absorb(&s->sessions[pos], &s->sessions[pos + 1]);
		session_free(&s->sessions[pos + 1]);
		memmove(&s->sessions[pos + 1], &s->sessions[pos + 2],
				sizeof(Session) * (s->count - pos - 2));
		s->count--;
	}
	session_prune(s);
}

void
session_add(SessionState *s, TimestampTz ts, const char *category, int32 catlen, const char *item,
			int32 itemlen)
{
	Session *last = s->count > 0 ? &s->sessions[s->count - 1] : NULL;
	Session x;

	/* in time order, an event falls in or extends the last session */
	if (last != NULL && ts >= last->start && pz_time_diff(ts, last->end) <= s->gap)
	{
		if (ts > last->end)
			last->end = ts;
		last->events++;
		if (category)
			session_count_category(last, category, catlen, 1);
		if (item)
			session_set_item(last, ts, item, itemlen);
		if (ts == last->end)
			session_prune(s);
		return;
	}
	memset(&x, 0, sizeof(x));
	x.start = x.end = ts;
	x.events = 1;
	if (category)
		session_count_category(&x, category, catlen, 1);
	if (item)
		session_set_item(&x, ts, item, itemlen);
	session_insert(s, &x);
}

static void
session_copy(Session *dst, const Session *src)
{
	int i;

	*dst = *src;
	dst->item = src->item ? pz_value_copy(src->item, src->item_len) : NULL;
	dst->cats = NULL;
	if (src->catcap > 0)
	{
		dst->cats = palloc(sizeof(SessionCategory) * src->catcap);
		for (i = 0; i < src->ncat; i++)
		{
			dst->cats[i] = src->cats[i];
			dst->cats[i].val = pz_value_copy(src->cats[i].val, src->cats[i].len);
		}
	}
}

static void
session_check_gap(int64 a, int64 b)
{
	if (a != b)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cannot merge session_state values with different gaps"),
						errhint("Build every state of one trait with the same inactivity gap.")));
}

static void
session_merge(PzState *dst_, const PzState *src_)
{
	SessionState *dst = (SessionState *) dst_;
	const SessionState *src = (const SessionState *) src_;
	int i;

	session_check_gap(dst->gap, src->gap);
	for (i = 0; i < src->count; i++)
	{
		Session x;

		session_copy(&x, &src->sessions[i]);
		session_insert(dst, &x);
	}
}

/* ---- flat form ---- */

/*
 * Flat body: gap, count, then per session its start in full, its end, last
 * item time and category counts as varints relative to it.
 */
static void
session_write(PzState *s_, StringInfo buf)
{
	SessionState *s = (SessionState *) s_;
	int i;
	int j;

	pz_write_i64(buf, s->gap);
	pz_write_varint(buf, s->count);
	for (i = 0; i < s->count; i++)
	{
		Session *x = &s->sessions[i];

		qsort(x->cats, x->ncat, sizeof(SessionCategory), category_cmp);
		pz_write_i64(buf, x->start);
		pz_write_varint(buf, pz_time_distance(x->end, x->start));
		pz_write_varint(buf, (uint64) x->events);
		pz_write_u8(buf, x->item != NULL);
		if (x->item)
		{
			pz_write_varint(buf, pz_time_distance(x->item_time, x->start));
			pz_write_value(buf, x->item, x->item_len);
		}
		pz_write_varint(buf, x->ncat);
		for (j = 0; j < x->ncat; j++)
		{
			pz_write_varint(buf, (uint64) x->cats[j].count);
			pz_write_value(buf, x->cats[j].val, x->cats[j].len);
		}
	}
}

/* Check a session read from input; NULL detail means fine. */
static const char *
session_check(const Session *x)
{
	int64 catsum = 0;
	int i;

	if (x->start > x->end)
		return "A session ends before it starts.";
	if (x->events < 1)
		return "A session holds at least one event.";
	if (x->item && (x->item_time < x->start || x->item_time > x->end))
		return "A session's last item lies outside the session.";
	for (i = 0; i < x->ncat; i++)
	{
		if (x->cats[i].count < 1)
			return "A category count is not positive.";
		if (pg_add_s64_overflow(catsum, x->cats[i].count, &catsum))
			return "The category counts are out of range.";
	}
	if (catsum > x->events)
		return "The categories count more events than the session has.";
	return NULL;
}

static PzState *
session_read(PzReader *r)
{
	int64 gap = pz_read_i64(r);
	int32 n;
	SessionState *s;
	int i;
	int j;

	if (gap <= 0 || gap > PZ_MAX_INTERVAL_USECS)
		pz_corrupt(r->type_name, "The gap is not a positive interval of at most 100 years.");
	s = session_new(gap);
	n = pz_read_count(r, SESSION_MAX_SESSIONS, "sessions");
	for (i = 0; i < n; i++)
	{
		Session x;
		const char *bad;
		uint8 has_item;
		int32 ncat;

		memset(&x, 0, sizeof(x));
		x.start = pz_read_time(r);
		x.end = pz_read_time_after(r, x.start, PG_UINT64_MAX, "A session's end");
		x.events = pz_read_varint_max(r, PG_INT64_MAX, "A session's event count");
		has_item = pz_read_u8(r);
		if (has_item > 1)
			pz_corrupt(r->type_name, "Unknown session format.");
		if (has_item)
		{
			x.item_time = pz_read_time_after(r, x.start, pz_time_distance(x.end, x.start),
											 "A last item's time");
			x.item = pz_read_value(r, &x.item_len);
		}
		ncat = pz_read_count(r, SESSION_MAX_CATEGORIES, "categories");
		for (j = 0; j < ncat; j++)
		{
			int64 count = pz_read_varint_max(r, PG_INT64_MAX, "A category count");
			int32 len;
			char *val = pz_read_value(r, &len);

			if (count < 1)
				pz_corrupt(r->type_name, "A category count is not positive.");
			/* through the same door as events: repeated categories fold */
			session_count_category(&x, val, len, count);
		}
		bad = session_check(&x);
		if (bad)
			pz_corrupt(r->type_name, bad);
		session_insert(s, &x);
	}
	return (PzState *) s;
}

/* ---- text form ---- */

static void
session_to_json(PzState *s_, StringInfo buf)
{
	SessionState *s = (SessionState *) s_;
	int i;
	int j;

	appendStringInfoString(buf, "{\"gap\": ");
	pz_json_interval(buf, s->gap);
	appendStringInfoString(buf, ", \"sessions\": [");
	for (i = 0; i < s->count; i++)
	{
		Session *x = &s->sessions[i];

		qsort(x->cats, x->ncat, sizeof(SessionCategory), category_cmp);
		appendStringInfoString(buf, i > 0 ? ", {\"start\": " : "{\"start\": ");
		pz_json_time(buf, x->start);
		appendStringInfoString(buf, ", \"end\": ");
		pz_json_time(buf, x->end);
		appendStringInfo(buf, ", \"events\": " INT64_FORMAT ", \"last_item\": ", x->events);
		if (x->item)
		{
			pz_json_string(buf, x->item);
			appendStringInfoString(buf, ", \"last_item_time\": ");
			pz_json_time(buf, x->item_time);
		}
		else
			appendStringInfoString(buf, "null, \"last_item_time\": null");
		appendStringInfoString(buf, ", \"categories\": [");
		for (j = 0; j < x->ncat; j++)
		{
			appendStringInfoString(buf, j > 0 ? ", [" : "[");
			pz_json_string(buf, x->cats[j].val);
			appendStringInfo(buf, ", " INT64_FORMAT "]", x->cats[j].count);
		}
		appendStringInfoString(buf, "]}");
	}
	appendStringInfoString(buf, "]}");
}

static PzState *
session_from_json(JsonbContainer *obj)
{
	const char *tn = "session_state";
	JsonbValue v;
	JsonbContainer *list;
	int64 gap;
	int n;
	int i;
	SessionState *s;

	pz_json_expect_keys(obj, 2, tn, "gap, sessions");
	pz_json_get(obj, "gap", &v, false, tn);
	gap = pz_json_interval_usecs(&v, "gap", tn);
	s = session_new(gap);
	pz_json_get(obj, "sessions", &v, false, tn);
	list = pz_json_array(&v, &n, "sessions", tn);
	if (n > SESSION_MAX_SESSIONS)
		pz_bad_text(
			tn, psprintf("There are %d sessions; at most %d are kept.", n, SESSION_MAX_SESSIONS),
			NULL);
	for (i = 0; i < n; i++)
	{
		JsonbValue e;
		JsonbContainer *so;
		JsonbContainer *cats;
		Session x;
		const char *bad;
		int ncat;
		int j;

		memset(&x, 0, sizeof(x));
		pz_json_elem(list, i, &e);
		so = pz_json_object(&e, "sessions[i]", tn);
		pz_json_expect_keys(so, 6, tn, "start, end, events, last_item, last_item_time, categories");
		pz_json_get(so, "start", &v, false, tn);
		x.start = pz_json_timestamp(&v, "start", tn);
		pz_json_get(so, "end", &v, false, tn);
		x.end = pz_json_timestamp(&v, "end", tn);
		pz_json_get(so, "events", &v, false, tn);
		x.events = pz_json_int64(&v, "events", tn);
		pz_json_get(so, "last_item", &v, false, tn);
		if (v.type != jbvNull)
		{
			x.item = pz_json_text(&v, &x.item_len, "last_item", tn);
			pz_json_get(so, "last_item_time", &v, false, tn);
			x.item_time = pz_json_timestamp(&v, "last_item_time", tn);
		}
		pz_json_get(so, "categories", &v, false, tn);
		cats = pz_json_array(&v, &ncat, "categories", tn);
		if (ncat > SESSION_MAX_CATEGORIES)
			pz_bad_text(tn,
						psprintf("A session has %d categories; at most %d are kept.", ncat,
								 SESSION_MAX_CATEGORIES),
						NULL);
		for (j = 0; j < ncat; j++)
		{
			JsonbValue c;
			JsonbValue f;
			JsonbContainer *pair;
			int plen;
			int32 len;
			char *val;

			pz_json_elem(cats, j, &c);
			pair = pz_json_array(&c, &plen, "categories[i]", tn);
			if (plen != 2)
				pz_bad_text(tn, "Each category must be a pair [value, count].", NULL);
			pz_json_elem(pair, 0, &f);
			val = pz_json_text(&f, &len, "category", tn);
			pz_json_elem(pair, 1, &f);
			session_count_category(&x, val, len, pz_json_int64(&f, "category count", tn));
		}
		bad = session_check(&x);
		if (bad)
			pz_bad_text(tn, bad, NULL);
		session_insert(s, &x);
	}
	return (PzState *) s;
}

const PzKindOps pz_session_ops = {
	.kind = PZ_KIND_SESSION,
	.type_name = "session_state",
	.read = session_read,
	.write = session_write,
	.merge = session_merge,
	.to_json = session_to_json,
	.from_json = session_from_json,
};

/* session_agg(ts, category text, item text [, gap interval]) transition */
PG_FUNCTION_INFO_V1(session_agg_trans);
Datum
session_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "session_agg");
	SessionState *s = PG_ARGISNULL(0) ? NULL : (SessionState *) PG_GETARG_POINTER(0);
	int64 gap = SESSION_DEFAULT_GAP;
	TimestampTz ts;
	text *cat = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	text *item = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	MemoryContext old;

	if (PG_NARGS() > 4)
	{
		if (PG_ARGISNULL(4))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("gap of session_agg must not be NULL"), errhint("Pass a constant.")));
		gap = pz_interval_usecs(PG_GETARG_INTERVAL_P(4), "gap of session_agg");
	}
	if (s != NULL && s->gap != gap)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("gap of session_agg must be the same in every row"),
						errhint("Pass a constant, not a column: the states of one trait must share "
								"it to merge.")));
	if (cat != NULL)
		pz_check_value_length(VARSIZE_ANY_EXHDR(cat), "session_agg");
	if (item != NULL)
		pz_check_value_length(VARSIZE_ANY_EXHDR(item), "session_agg");
	if (!pz_arg_time(fcinfo, 1, &ts))
	{
		if (s == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s);
	}
	old = MemoryContextSwitchTo(aggcontext);
	if (s == NULL)
		s = session_new(gap);
	session_add(s, ts, cat ? VARDATA_ANY(cat) : NULL, cat ? VARSIZE_ANY_EXHDR(cat) : 0,
				item ? VARDATA_ANY(item) : NULL, item ? VARSIZE_ANY_EXHDR(item) : 0);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);
}

/* ---- accessors: all read the current (latest) session ---- */

static Session *
session_current(FunctionCallInfo fcinfo)
{
	SessionState *s = (SessionState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_SESSION);

	if (s->count == 0)
		return NULL;
	return &s->sessions[s->count - 1];
}

static SessionCategory *
session_dominant(Session *x)
{
	if (x->ncat == 0)
		return NULL;
	qsort(x->cats, x->ncat, sizeof(SessionCategory), category_cmp);
	return &x->cats[0];
}

PG_FUNCTION_INFO_V1(session_start);
Datum
session_start(PG_FUNCTION_ARGS)
{
	Session *x = session_current(fcinfo);

	if (x == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(x->start);
}

PG_FUNCTION_INFO_V1(session_last_activity);
Datum
session_last_activity(PG_FUNCTION_ARGS)
{
	Session *x = session_current(fcinfo);

	if (x == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(x->end);
}

PG_FUNCTION_INFO_V1(session_events);
Datum
session_events(PG_FUNCTION_ARGS)
{
	Session *x = session_current(fcinfo);

	if (x == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INT64(x->events);
}

PG_FUNCTION_INFO_V1(session_dominant_category);
Datum
session_dominant_category(PG_FUNCTION_ARGS)
{
	Session *x = session_current(fcinfo);
	SessionCategory *c = x ? session_dominant(x) : NULL;

	if (c == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(c->val, c->len));
}

PG_FUNCTION_INFO_V1(session_last_item);
Datum
session_last_item(PG_FUNCTION_ARGS)
{
	Session *x = session_current(fcinfo);

	if (x == NULL || x->item == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(x->item, x->item_len));
}

/* push a key, or a string value, of n bytes */
static void
session_json_push_string(JsonbParseState **st, JsonbIteratorToken tok, const char *val, int32 len)
{
	JsonbValue v;

	v.type = jbvString;
	v.val.string.val = unconstify(char *, val);
	v.val.string.len = len;
	pushJsonbValue(st, tok, &v);
}

static void
session_json_push_time(JsonbParseState **st, TimestampTz ts)
{
	StringInfoData buf;

	/* the text form's quoted time, without its quotes */
	initStringInfo(&buf);
	pz_json_time(&buf, ts);
	session_json_push_string(st, WJB_VALUE, buf.data + 1, buf.len - 2);
}

static void
session_json_push_numeric(JsonbParseState **st, Numeric n)
{
	JsonbValue v;

	v.type = jbvNumeric;
	v.val.numeric = n;
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
session_json_push_null(JsonbParseState **st)
{
	JsonbValue v;

	v.type = jbvNull;
	pushJsonbValue(st, WJB_VALUE, &v);
}

#define SESSION_JSON_KEY(st, key) session_json_push_string(st, WJB_KEY, key, sizeof(key) - 1)

/*
 * The jsonb is built directly, as jsonb_in would build it from the text
 * {"start": "...", "last_activity": "...", "duration_seconds": 12.000000,
 * "events": 3, "dominant_category": ..., "last_item": ..., "categories":
 * {...}}: the same values (the duration through the same "%.6f" text and
 * numeric_in), keys sorted by jsonb, so the result is the same datum.
 * session_info_value gives it as the JsonbValue tree it serializes, for a
 * caller that nests it in a jsonb of its own (get_profile).
 */
JsonbValue *
session_info_value(SessionState *s)
{
	Session *x;
	SessionCategory *dom;
	JsonbParseState *st = NULL;
	char duration[128];
	int i;

	if (s->count == 0)
		return NULL;
	x = &s->sessions[s->count - 1];
	dom = session_dominant(x);
	/* the keys in jsonb's order (shorter first, then by bytes): no sorting then */
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	SESSION_JSON_KEY(&st, "start");
	session_json_push_time(&st, x->start);
	SESSION_JSON_KEY(&st, "events");
	session_json_push_numeric(&st, int64_to_numeric(x->events));
	SESSION_JSON_KEY(&st, "last_item");
	if (x->item)
		session_json_push_string(&st, WJB_VALUE, x->item, x->item_len);
	else
		session_json_push_null(&st);
	SESSION_JSON_KEY(&st, "categories");
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < x->ncat; i++)
	{
		session_json_push_string(&st, WJB_KEY, x->cats[i].val, x->cats[i].len);
		session_json_push_numeric(&st, int64_to_numeric(x->cats[i].count));
	}
	pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	SESSION_JSON_KEY(&st, "last_activity");
	session_json_push_time(&st, x->end);
	SESSION_JSON_KEY(&st, "duration_seconds");
	snprintf(duration, sizeof(duration), "%.6f",
			 ((double) x->end - (double) x->start) / USECS_PER_SEC);
	session_json_push_numeric(
		&st, DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(duration),
												 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1))));
	SESSION_JSON_KEY(&st, "dominant_category");
	if (dom)
		session_json_push_string(&st, WJB_VALUE, dom->val, dom->len);
	else
		session_json_push_null(&st);
	return pushJsonbValue(&st, WJB_END_OBJECT, NULL);
}

Datum
session_info_datum(SessionState *s, bool *isnull)
{
	JsonbValue *v = session_info_value(s);

	*isnull = v == NULL;
	if (v == NULL)
		return (Datum) 0;
	return JsonbPGetDatum(JsonbValueToJsonb(v));
}

/* session_info(state) -> jsonb: the current session, all fields */
PG_FUNCTION_INFO_V1(session_info);
Datum
session_info(PG_FUNCTION_ARGS)
{
	SessionState *s = (SessionState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_SESSION);
	bool isnull;
	Datum d = session_info_datum(s, &isnull);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(d);
}
