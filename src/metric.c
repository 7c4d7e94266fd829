/*
 * metric.c
 *	  The metric_state trait state: exact count, sum, min and max of numeric
 *	  event values.  Type support, merge, the metric_agg aggregate, a
 *	  constructor from built-in aggregate results, and accessors.
 */
#include "postgres.h"

#include <ctype.h>

#include "utils/builtins.h"

#include "metric.h"

#define METRIC_TYPE_NAME "metric_state"
#define METRIC_OP_LIST   "count, sum, min, max"

/*
 * The longest canonical text a finite numeric has: at most 131072 digits
 * before the point and 16383 after it (numeric.c's limits).
 */
#define METRIC_MAX_INT_DIGITS  131072
#define METRIC_MAX_FRAC_DIGITS 16383

static const char *const metric_op_names[] = {
	[METRIC_COUNT] = "count",
	[METRIC_SUM] = "sum",
	[METRIC_MIN] = "min",
	[METRIC_MAX] = "max",
};

static inline bool
metric_op_valid(int op)
{
	return op >= METRIC_COUNT && op <= METRIC_MAX;
}

const char *
metric_op_name(uint8 op)
{
	Assert(metric_op_valid(op));
	return metric_op_names[op];
}

/* the op called name, or 0 */
static uint8
metric_op_lookup(const char *name, int len)
{
	int op;

	for (op = METRIC_COUNT; op <= METRIC_MAX; op++)
		if (strlen(metric_op_names[op]) == (size_t) len &&
			memcmp(metric_op_names[op], name, len) == 0)
			return (uint8) op;
	return 0;
}

uint8
metric_op_from_name(const char *name)
{
	uint8 op = metric_op_lookup(name, strlen(name));

	if (op == 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("\"%s\" is not a metric op", name),
						errhint("The op of a metric is one of: " METRIC_OP_LIST ".")));
	return op;
}

/* ---------------------------------------------------------------------
 * numeric values
 * --------------------------------------------------------------------- */

static Numeric
metric_numeric_copy(Numeric v)
{
	Numeric copy = palloc(VARSIZE(v));

	memcpy(copy, v, VARSIZE(v));
	return copy;
}

static char *
metric_numeric_text(Numeric v)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v)));
}

static Numeric
metric_numeric_in(const char *str)
{
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(str),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

/* ERROR unless an event's value is finite */
static void
metric_check_finite(Numeric v)
{
	if (numeric_is_nan(v) || numeric_is_inf(v))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("a metric value must be finite, not %s", metric_numeric_text(v)),
						errhint("Filter out rows whose value is NaN, Infinity or -Infinity.")));
}

/*
 * Does v take the place of cur as the min (max)?  Values equal as numbers
 * are ordered by scale, the one with more digits after the point winning,
 * so the choice never depends on the order values come in.
 */
static bool
metric_replaces(uint8 op, Numeric cur, Numeric v)
{
	int c =
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(v), NumericGetDatum(cur)));

	if (c == 0)
		return DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(v))) >
			   DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(cur)));
	return op == METRIC_MIN ? c < 0 : c > 0;
}

/* Fold the value v (sum, min or max of some events) into s->value. */
static void
metric_fold_value(MetricState *s, Numeric v)
{
	Numeric old = s->value;

	if (old == NULL)
		s->value = metric_numeric_copy(v);
	else if (s->op == METRIC_SUM)
		s->value = numeric_add_opt_error(old, v, NULL);
	else if (metric_replaces(s->op, old, v))
		s->value = metric_numeric_copy(v);
	else
		return;
	if (old != NULL)
		pfree(old);
}

/* ---------------------------------------------------------------------
 * the C API
 * --------------------------------------------------------------------- */

MetricState *
metric_new(uint8 op)
{
	MetricState *s = palloc(sizeof(MetricState));

	if (!metric_op_valid(op))
		elog(ERROR, "invalid metric op %d", op);
	s->hdr.kind = PZ_KIND_METRIC;
	s->op = op;
	s->count = 0;
	s->value = NULL;
	return s;
}

void
metric_add(MetricState *s, Numeric v)
{
	if (s->op != METRIC_COUNT)
	{
		if (v == NULL)
			elog(ERROR, "metric_add: a metric of op %s needs a value", metric_op_name(s->op));
		metric_check_finite(v);
	}
	s->count = pz_add_count(s->count, 1, METRIC_TYPE_NAME);
	if (s->op != METRIC_COUNT)
		metric_fold_value(s, v);
}

static void
metric_merge(PzState *dst_, const PzState *src_)
{
	MetricState *dst = (MetricState *) dst_;
	const MetricState *src = (const MetricState *) src_;

	if (dst->op != src->op)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cannot merge metric_state of op %s with op %s",
							   metric_op_name(dst->op), metric_op_name(src->op)),
						errhint("Build every state of one trait with the same op.")));
	dst->count = pz_add_count(dst->count, src->count, METRIC_TYPE_NAME);
	if (src->value != NULL)
		metric_fold_value(dst, src->value);
}

/* ---------------------------------------------------------------------
 * flat form
 * --------------------------------------------------------------------- */

/*
 * Is str shaped as numeric_out writes a finite value: an optional minus,
 * digits, and optionally a point and more digits, within numeric's limits?
 */
static bool
metric_canonical_shape(const char *str, int32 len)
{
	const char *p = str;
	const char *end = str + len;
	const char *digits;

	if (p < end && *p == '-')
		p++;
	digits = p;
	while (p < end && isdigit((unsigned char) *p))
		p++;
	if (p == digits || p - digits > METRIC_MAX_INT_DIGITS)
		return false;
	if (p == end)
		return true;
	if (*p++ != '.')
		return false;
	digits = p;
	while (p < end && isdigit((unsigned char) *p))
		p++;
	return p == end && p > digits && p - digits <= METRIC_MAX_FRAC_DIGITS;
}

/*
 * A value in canonical form as a Numeric, without numeric_in: most values
 * have at most 18 digits, which an int64 holds, scaled by a power of ten
 * (int64_div_fast_to_numeric keeps the digits after the point, trailing
 * zeros too, as numeric_out writes them).  NULL when the text is not such a
 * value: more digits, a leading zero, or a negative zero; the caller parses
 * and checks it the slow way.  str has metric_canonical_shape.
 */
static Numeric
metric_numeric_fast(const char *str, int32 len)
{
	const char *p = str;
	const char *end = str + len;
	bool neg = false;
	int64 v = 0;
	int digits = 0, scale = 0;
	bool point = false;

	if (*p == '-')
		neg = true, p++;
	if (*p == '0' && p + 1 < end && p[1] != '.')
		return NULL; /* a leading zero */
	for (; p < end; p++)
	{
		if (*p == '.')
		{
			point = true;
			continue;
		}
		if (++digits > 18)
			return NULL;
		v = v * 10 + (*p - '0');
		scale += point;
	}
	if (neg && v == 0)
		return NULL; /* "-0": not canonical */
	return int64_div_fast_to_numeric(neg ? -v : v, scale);
}

static PzState *
metric_read(PzReader *r)
{
	uint8 op = pz_read_u8(r);
	MetricState *s;

	if (!metric_op_valid(op))
		pz_corrupt(r->type_name, psprintf("Unknown metric op %d.", op));
	s = metric_new(op);
	s->count = pz_read_varint_max(r, PG_INT64_MAX, "The event count");
	if (s->count == 0)
		pz_corrupt(r->type_name, "The event count is 0.");
	if (op != METRIC_COUNT)
	{
		int32 len;
		char *text = pz_read_value(r, &len);

		if (!metric_canonical_shape(text, len))
			pz_corrupt(r->type_name, "The value is not a finite number in canonical form.");
		s->value = metric_numeric_fast(text, len);
		if (s->value == NULL)
		{
			s->value = metric_numeric_in(text);
			if (strcmp(metric_numeric_text(s->value), text) != 0)
				pz_corrupt(r->type_name, "The value is not in canonical form.");
		}
		pfree(text);
	}
	return (PzState *) s;
}

static void
metric_write(PzState *s_, StringInfo buf)
{
	MetricState *s = (MetricState *) s_;

	if (s->count == 0)
		elog(ERROR, "cannot store a metric_state that holds no events");
	pz_write_u8(buf, s->op);
	pz_write_varint(buf, (uint64) s->count);
	if (s->op != METRIC_COUNT)
	{
		char *text = metric_numeric_text(s->value);

		pz_write_value(buf, text, strlen(text));
		pfree(text);
	}
}

/* ---------------------------------------------------------------------
 * text form: {"op": "sum", "count": 3, "value": "12.50"}
 * --------------------------------------------------------------------- */

static void
metric_to_json(PzState *s_, StringInfo buf)
{
	MetricState *s = (MetricState *) s_;

	appendStringInfo(buf, "{\"op\": \"%s\", \"count\": " INT64_FORMAT, metric_op_name(s->op),
					 s->count);
	if (s->op != METRIC_COUNT)
	{
		appendStringInfoString(buf, ", \"value\": ");
		pz_json_string(buf, metric_numeric_text(s->value));
	}
	appendStringInfoChar(buf, '}');
}

/*
 * Is str a finite number as numeric_in reads it: optional blanks and sign,
 * digits with at most one point, an optional exponent, optional blanks?
 */
static bool
metric_is_finite_number(const char *str)
{
	const char *p = str;
	bool digits = false;

	while (isspace((unsigned char) *p))
		p++;
	if (*p == '+' || *p == '-')
		p++;
	while (isdigit((unsigned char) *p))
	{
		p++;
		digits = true;
	}
	if (*p == '.')
	{
		p++;
		while (isdigit((unsigned char) *p))
		{
			p++;
			digits = true;
		}
	}
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
			p++;
	}
	while (isspace((unsigned char) *p))
		p++;
	return *p == '\0';
}

static PzState *
metric_from_json(JsonbContainer *obj)
{
	const char *tn = METRIC_TYPE_NAME;
	JsonbValue v;
	int32 len;
	uint8 op;
	MetricState *s;

	pz_json_get(obj, "op", &v, false, tn);
	if (v.type != jbvString)
		pz_bad_text(tn, "\"op\" must be a string.", "The op is one of: " METRIC_OP_LIST ".");
	op = metric_op_lookup(v.val.string.val, v.val.string.len);
	if (op == 0)
		pz_bad_text(tn,
					psprintf("\"%.*s\" is not a metric op.", v.val.string.len, v.val.string.val),
					"The op is one of: " METRIC_OP_LIST ".");
	if (op == METRIC_COUNT)
	{
		if (pz_json_get(obj, "value", &v, true, tn))
			pz_bad_text(tn, "A metric_state of op count has no \"value\".",
						"Write it as {\"op\": \"count\", \"count\": 3}.");
		pz_json_expect_keys(obj, 2, tn, "op, count");
	}
	else
		pz_json_expect_keys(obj, 3, tn, "op, count, value");

	s = metric_new(op);
	pz_json_get(obj, "count", &v, false, tn);
	s->count = pz_json_int64(&v, "count", tn);
	if (s->count < 1)
		pz_bad_text(tn, "\"count\" must be at least 1.",
					"A metric_state holds at least one event; a trait without events is NULL.");
	if (op != METRIC_COUNT)
	{
		char *text;

		pz_json_get(obj, "value", &v, false, tn);
		if (v.type != jbvString)
			pz_bad_text(tn, "\"value\" must be a string holding a number.",
						"Write the value as a JSON string, e.g. \"value\": \"12.50\", so no "
						"digit is lost.");
		text = pz_json_text(&v, &len, "value", tn);
		if (!metric_is_finite_number(text))
			pz_bad_text(tn, psprintf("\"value\" must be a finite number, not \"%s\".", text),
						"Write the value as a JSON string holding a number, e.g. \"value\": "
						"\"12.50\".");
		s->value = metric_numeric_in(text);
		metric_check_finite(s->value);
	}
	return (PzState *) s;
}

const PzKindOps pz_metric_ops = {
	.kind = PZ_KIND_METRIC,
	.type_name = METRIC_TYPE_NAME,
	.read = metric_read,
	.write = metric_write,
	.merge = metric_merge,
	.to_json = metric_to_json,
	.from_json = metric_from_json,
};

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * --------------------------------------------------------------------- */

/* the op in argument argno: not NULL, one of the ops */
static uint8
metric_arg_op(FunctionCallInfo fcinfo, int argno, const char *fname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("op of %s must not be NULL", fname),
						errhint("Pass one of: " METRIC_OP_LIST ".")));
	return metric_op_from_name(text_to_cstring(PG_GETARG_TEXT_PP(argno)));
}

/*
 * metric_agg(op text, value numeric) transition.  Rows whose value is NULL
 * are skipped, whatever the op (for op count pass any non-NULL value, e.g.
 * 1, as to count(x)).
 */
PG_FUNCTION_INFO_V1(metric_agg_trans);
Datum
metric_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "metric_agg");
	MetricState *s = PG_ARGISNULL(0) ? NULL : (MetricState *) PG_GETARG_POINTER(0);
	uint8 op = metric_arg_op(fcinfo, 1, "metric_agg");
	Numeric v;
	MemoryContext old;

	if (s != NULL && s->op != op)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("op of metric_agg must be the same in every row"),
						errhint("Pass a constant, not a column: the states of one trait must share "
								"it to merge.")));
	if (PG_ARGISNULL(2))
	{
		if (s == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s);
	}
	v = PG_GETARG_NUMERIC(2);
	old = MemoryContextSwitchTo(aggcontext);
	if (s == NULL)
		s = metric_new(op);
	metric_add(s, op == METRIC_COUNT ? NULL : v);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);
}

/*
 * metric_state_make(op text, count bigint, value numeric): a state from
 * built-in aggregate results, e.g. metric_state_make('sum', count(x), sum(x)).
 * NULL when count is NULL or 0; value is ignored for op count.
 */
PG_FUNCTION_INFO_V1(metric_state_make);
Datum
metric_state_make(PG_FUNCTION_ARGS)
{
	uint8 op = metric_arg_op(fcinfo, 0, "metric_state_make");
	MetricState *s;
	int64 count;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	count = PG_GETARG_INT64(1);
	if (count < 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("count of metric_state_make must not be negative"),
						errhint("Pass the number of events, e.g. count(x).")));
	if (count == 0)
		PG_RETURN_NULL();
	s = metric_new(op);
	s->count = count;
	if (op != METRIC_COUNT)
	{
		if (PG_ARGISNULL(2))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("value of metric_state_make must not be NULL for op %s when count is "
							"greater than 0",
							metric_op_name(op)),
					 errhint("Pass count(x), not count(*), with sum(x), min(x) or max(x): count(x) "
							 "is 0 when every x is NULL.")));
		s->value = PG_GETARG_NUMERIC(2);
		metric_check_finite(s->value);
	}
	PG_RETURN_POINTER(pz_state_flatten((PzState *) s));
}

Datum
metric_value_datum(const MetricState *s)
{
	if (s->op == METRIC_COUNT)
		return NumericGetDatum(int64_to_numeric(s->count));
	return NumericGetDatum(s->value);
}

Datum
metric_count_datum(const MetricState *s)
{
	return Int64GetDatum(s->count);
}

/* The sum, min or max; for op count, the count. */
PG_FUNCTION_INFO_V1(metric_value);
Datum
metric_value(PG_FUNCTION_ARGS)
{
	MetricState *s = (MetricState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_METRIC);

	PG_RETURN_DATUM(metric_value_datum(s));
}

PG_FUNCTION_INFO_V1(metric_count);
Datum
metric_count(PG_FUNCTION_ARGS)
{
	MetricState *s = (MetricState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_METRIC);

	PG_RETURN_DATUM(metric_count_datum(s));
}

PG_FUNCTION_INFO_V1(metric_op);
Datum
metric_op(PG_FUNCTION_ARGS)
{
	MetricState *s = (MetricState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_METRIC);

	PG_RETURN_TEXT_P(cstring_to_text(metric_op_name(s->op)));
}
