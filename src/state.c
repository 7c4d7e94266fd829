/*
 * state.c
 *	  The machinery every trait-state kind shares: the flat format's reader
 *	  and writer, the JSON text form, and the SQL-callable functions that are
 *	  the same for every kind (text and binary I/O, merge, and the aggregate
 *	  support functions combine / serialize / deserialize / final).
 *
 * Those functions find the kind of a state from the kind byte of its flat
 * form or the PzState header of its in-memory form, and dispatch through
 * PzKindOps; a new kind only supplies its ops and its transition function.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "common/shortest_dec.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/syscache.h"

#include "state.h"

/* ---------------------------------------------------------------------
 * values
 * --------------------------------------------------------------------- */

int
pz_timestamp_cmp(const void *a, const void *b)
{
	TimestampTz x = *(const TimestampTz *) a, y = *(const TimestampTz *) b;

	return x < y ? -1 : x > y;
}

char *
pz_value_copy(const char *data, int32 len)
{
	char *p = palloc(len + 1);

	memcpy(p, data, len);
	p[len] = '\0';
	return p;
}

/* ---------------------------------------------------------------------
 * reading the flat form
 * --------------------------------------------------------------------- */

void
pz_corrupt(const char *type_name, const char *detail)
{
	ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					errmsg("invalid binary %s value", type_name), errdetail("%s", detail),
					errhint("Binary %s values must come from personalize's send function or "
							"its aggregates' serialize function.",
							type_name)));
}

void
pz_reader_init(PzReader *r, const char *data, int len, const char *type_name)
{
	r->cur = data;
	r->end = data + len;
	r->type_name = type_name;
}

static inline void
pz_need(PzReader *r, size_t n)
{
	if ((size_t) (r->end - r->cur) < n)
		pz_corrupt(r->type_name, "The data ends early.");
}

uint8
pz_read_u8(PzReader *r)
{
	pz_need(r, 1);
	return (uint8) *r->cur++;
}

int64
pz_read_i64(PzReader *r)
{
	uint64 v;

	pz_need(r, 8);
	memcpy(&v, r->cur, 8);
	r->cur += 8;
	return (int64) pg_ntoh64(v);
}

double
pz_read_f64(PzReader *r)
{
	int64 bits = pz_read_i64(r);
	double d;

	memcpy(&d, &bits, 8);
	if (isnan(d) || isinf(d))
		pz_corrupt(r->type_name, "A number is not finite.");
	return d;
}

uint64
pz_read_varint(PzReader *r)
{
	uint64 v = 0;
	int shift;

	for (shift = 0; shift < 64; shift += 7)
	{
		uint8 b = pz_read_u8(r);

		if (shift == 63 && b > 1)
			break;
		v |= (uint64) (b & 0x7f) << shift;
		if ((b & 0x80) == 0)
			return v;
	}
	pz_corrupt(r->type_name, "A number is longer than 64 bits.");
}

int64
pz_read_varint_max(PzReader *r, int64 max, const char *what)
{
	uint64 v = pz_read_varint(r);

	if (v > (uint64) max)
		pz_corrupt(r->type_name, psprintf("%s is out of range.", what));
	return (int64) v;
}

bool pz_read_verifies_text = false;

char *
pz_read_value(PzReader *r, int32 *len)
{
	int32 n = (int32) pz_read_varint_max(r, MaxAllocSize - 1, "A value's length");

	pz_need(r, n);
	if (memchr(r->cur, '\0', n) != NULL)
		pz_corrupt(r->type_name, "A value contains a zero byte.");
	if (pz_read_verifies_text && !pg_verify_mbstr(GetDatabaseEncoding(), r->cur, n, true))
		pz_corrupt(r->type_name,
				   psprintf("A value is not valid text in the database's encoding (%s).",
							GetDatabaseEncodingName()));
	*len = n;
	r->cur += n;
	return pz_value_copy(r->cur - n, n);
}

int32
pz_read_count(PzReader *r, int32 max, const char *what)
{
	uint64 n = pz_read_varint(r);

	if (n > (uint64) max)
		pz_corrupt(r->type_name,
				   psprintf("The number of %s (" UINT64_FORMAT ") is more than %d.", what, n, max));
	return (int32) n;
}

TimestampTz
pz_read_time(PzReader *r)
{
	TimestampTz ts = pz_read_i64(r);

	if (TIMESTAMP_NOT_FINITE(ts) || !IS_VALID_TIMESTAMP(ts))
		pz_corrupt(r->type_name, "A time is infinite or out of range.");
	return ts;
}

TimestampTz
pz_read_time_after(PzReader *r, TimestampTz base, uint64 max_distance, const char *what)
{
	uint64 d = pz_read_varint(r);

	if (d > max_distance || d > pz_time_distance(END_TIMESTAMP - 1, base))
		pz_corrupt(r->type_name, psprintf("%s is out of range.", what));
	return (TimestampTz) ((uint64) base + d);
}

int64
pz_add_count(int64 a, int64 b, const char *type_name)
{
	int64 sum;

	if (pg_add_s64_overflow(a, b, &sum))
		ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						errmsg("event count of %s is out of range", type_name),
						errhint("A state counts at most 2^63 - 1 events.")));
	return sum;
}

double
pz_check_finite(double v, const char *type_name)
{
	if (unlikely(isnan(v) || isinf(v)))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("a sum or weight in %s is out of the range of double precision", type_name),
				 errhint("Use smaller values or weights.")));
	return v;
}

/* ---------------------------------------------------------------------
 * writing the flat form
 * --------------------------------------------------------------------- */

void
pz_write_u8(StringInfo buf, uint8 v)
{
	appendStringInfoCharMacro(buf, (char) v);
}

void
pz_write_varint(StringInfo buf, uint64 v)
{
	while (v >= 0x80)
	{
		appendStringInfoCharMacro(buf, (char) ((v & 0x7f) | 0x80));
		v >>= 7;
	}
	appendStringInfoCharMacro(buf, (char) v);
}

void
pz_write_i64(StringInfo buf, int64 v)
{
	uint64 n = pg_hton64((uint64) v);

	appendBinaryStringInfo(buf, (char *) &n, 8);
}

void
pz_write_f64(StringInfo buf, double v)
{
	int64 bits;

	v += 0.0; /* -0 is written as 0: one value, one form */
	memcpy(&bits, &v, 8);
	pz_write_i64(buf, bits);
}

void
pz_write_value(StringInfo buf, const char *data, int32 len)
{
	pz_write_varint(buf, (uint64) len);
	appendBinaryStringInfo(buf, data, len);
}

/* ---------------------------------------------------------------------
 * kinds
 * --------------------------------------------------------------------- */

const PzKindOps *
pz_kind_ops(PzKind kind)
{
	switch (kind)
	{
		case PZ_KIND_RECENT:
			return &pz_recent_ops;
		case PZ_KIND_TOP:
			return &pz_top_ops;
		case PZ_KIND_WINDOWED:
			return &pz_windowed_ops;
		case PZ_KIND_DISTINCT:
			return &pz_distinct_ops;
		case PZ_KIND_FIRST:
			return &pz_first_ops;
		case PZ_KIND_LAST:
			return &pz_last_ops;
		case PZ_KIND_SESSION:
			return &pz_session_ops;
		case PZ_KIND_METRIC:
			return &pz_metric_ops;
	}
	return NULL;
}

/* The kind a SQL type stands for, from its name (cached by the caller). */
static PzKind
pz_kind_of_type(Oid typid)
{
	HeapTuple tup;
	const char *name;
	int k;

	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", typid);
	name = NameStr(((Form_pg_type) GETSTRUCT(tup))->typname);
	for (k = 1; k < PZ_KIND_COUNT; k++)
	{
		if (strcmp(name, pz_kind_ops((PzKind) k)->type_name) == 0)
		{
			ReleaseSysCache(tup);
			return (PzKind) k;
		}
	}
	elog(ERROR, "type \"%s\" is not a personalize trait state", name);
	return 0; /* keep compiler quiet */
}

/* Flat header: varlena header, version byte, kind byte. */
#define PZ_FLAT_HDRSZ (VARHDRSZ + 2)

struct varlena *
pz_state_flatten(PzState *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoSpaces(&buf, VARHDRSZ);
	pz_write_u8(&buf, PZ_FORMAT_VERSION);
	pz_write_u8(&buf, (uint8) s->kind);
	pz_kind_ops(s->kind)->write(s, &buf);
	SET_VARSIZE(buf.data, buf.len);
	return (struct varlena *) buf.data;
}

PzKind
pz_reader_open(PzReader *r, const char *data, int len, PzKind expect)
{
	const char *type_name = expect ? pz_kind_ops(expect)->type_name : "trait state";
	uint8 version;
	uint8 kind;

	pz_reader_init(r, data, len, type_name);
	version = pz_read_u8(r);
	if (version != PZ_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("unsupported binary format version %d for %s", version, type_name),
				 errhint("This build of personalize reads format version %d.", PZ_FORMAT_VERSION)));
	kind = pz_read_u8(r);
	if (kind == 0 || kind >= PZ_KIND_COUNT)
		pz_corrupt(type_name, psprintf("Unknown state kind %d.", kind));
	if (expect && kind != expect)
		pz_corrupt(type_name, psprintf("The data holds a %s, not a %s.",
									   pz_kind_ops((PzKind) kind)->type_name, type_name));
	r->type_name = pz_kind_ops((PzKind) kind)->type_name;
	return (PzKind) kind;
}

void
pz_reader_close(PzReader *r)
{
	if (r->cur != r->end)
		pz_corrupt(r->type_name, "Extra bytes follow the state.");
}

/*
 * Read a state from the bytes after the varlena header.  expect == 0 accepts
 * any kind (aggregate deserialization); otherwise the kind must match.
 */
PzState *
pz_state_read_bytes(const char *data, int len, PzKind expect)
{
	PzReader r;
	PzKind kind = pz_reader_open(&r, data, len, expect);
	PzState *s = pz_kind_ops(kind)->read(&r);

	pz_reader_close(&r);
	return s;
}

PzState *
pz_state_unflatten(struct varlena *flat, PzKind expect)
{
	return pz_state_read_bytes(VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat), expect);
}

PzState *
pz_state_from_datum(Datum d, PzKind expect)
{
	struct varlena *flat = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(d));

	return pz_state_unflatten(flat, expect);
}

PzState *
pz_state_copy(const PzState *s, MemoryContext target)
{
	struct varlena *flat = pz_state_flatten((PzState *) s);
	MemoryContext old = MemoryContextSwitchTo(target);
	PzState *copy = pz_state_unflatten(flat, s->kind);

	MemoryContextSwitchTo(old);
	pfree(flat);
	return copy;
}

/* ---------------------------------------------------------------------
 * argument helpers
 * --------------------------------------------------------------------- */

MemoryContext
pz_agg_context(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext aggcontext;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("%s called in non-aggregate context", fname),
						errhint("Call it through its aggregate.")));
	return aggcontext;
}

/* Is argument argno a bigint?  Cached in fn_extra for the life of flinfo. */
static bool
pz_arg_is_int8(FunctionCallInfo fcinfo, int argno)
{
	FmgrInfo *flinfo = fcinfo->flinfo;

	if (flinfo->fn_extra == NULL)
	{
		Oid t = get_fn_expr_argtype(flinfo, argno);
		bool *is_int8 = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(bool));

		*is_int8 = (t == INT8OID);
		flinfo->fn_extra = is_int8;
	}
	return *(bool *) flinfo->fn_extra;
}

void
pz_check_value_length(int32 len, const char *fname)
{
	if (len > pz_max_value_bytes)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("a value of %d bytes passed to %s is longer than "
							   "personalize.max_value_bytes (%d)",
							   len, fname, pz_max_value_bytes),
						errhint("Shorten the values (e.g. left(url, 500)) or raise "
								"personalize.max_value_bytes.")));
}

bool
pz_arg_value(FunctionCallInfo fcinfo, int argno, char *buf, const char **data, int32 *len)
{
	if (PG_ARGISNULL(argno))
		return false;
	if (pz_arg_is_int8(fcinfo, argno))
	{
		*len = pg_lltoa(PG_GETARG_INT64(argno), buf);
		*data = buf;
	}
	else
	{
		text *t = PG_GETARG_TEXT_PP(argno);

		*data = VARDATA_ANY(t);
		*len = VARSIZE_ANY_EXHDR(t);
		if (unlikely(*len > pz_max_value_bytes))
		{
			/* name the aggregate, not its transition function */
			char *fname = get_func_name(fcinfo->flinfo->fn_oid);
			char *suffix = fname ? strstr(fname, "_trans") : NULL;

			if (suffix)
				*suffix = '\0';
			pz_check_value_length(*len, fname ? fname : "an aggregate");
		}
	}
	return true;
}

bool
pz_arg_time(FunctionCallInfo fcinfo, int argno, TimestampTz *ts)
{
	if (PG_ARGISNULL(argno))
		return false;
	*ts = PG_GETARG_TIMESTAMPTZ(argno);
	if (TIMESTAMP_NOT_FINITE(*ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("event time must be finite"),
				 errhint("Filter out rows whose time is infinity or -infinity.")));
	return true;
}

int64
pz_interval_usecs(const Interval *iv, const char *what)
{
	int128 us = (int128) iv->time + (int128) iv->day * USECS_PER_DAY +
				(int128) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;

	if (us <= 0 || us > PZ_MAX_INTERVAL_USECS)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("%s must be a positive interval of at most 100 years", what),
						errhint("Write it as an interval such as '30 minutes' or '7 days'.")));
	return (int64) us;
}

int32
pz_arg_int(FunctionCallInfo fcinfo, int argno, int32 min, int32 max, const char *what,
		   const char *fname)
{
	int32 v;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s of %s must not be NULL", what, fname), errhint("Pass a constant.")));
	v = PG_GETARG_INT32(argno);
	if (v < min || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s of %s must be between %d and %d, not %d", what, fname, min, max, v),
				 errhint("Use a constant in that range: it bounds the size of every state.")));
	return v;
}

Datum
pz_text_array(const char *const *vals, const int32 *lens, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));
	int i;

	for (i = 0; i < n; i++)
		d[i] = PointerGetDatum(cstring_to_text_with_len(vals[i], lens[i]));
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

Datum
pz_time_array(const TimestampTz *ts, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));
	int i;

	for (i = 0; i < n; i++)
		d[i] = TimestampTzGetDatum(ts[i]);
	return PointerGetDatum(
		construct_array(d, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

Datum
pz_float8_array(const double *v, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));
	int i;

	for (i = 0; i < n; i++)
		d[i] = Float8GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* ---------------------------------------------------------------------
 * JSON text form
 * --------------------------------------------------------------------- */

void
pz_json_string(StringInfo buf, const char *data)
{
	escape_json(buf, data);
}

/* ISO 8601 in UTC, independent of the session's DateStyle and TimeZone. */
void
pz_json_time(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t fsec;
	int year;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	year = tm.tm_year > 0 ? tm.tm_year : 1 - tm.tm_year;
	appendStringInfo(buf, "\"%04d-%02d-%02d %02d:%02d:%02d", year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (fsec != 0)
		appendStringInfo(buf, ".%06d", (int) fsec);
	appendStringInfoString(buf, "+00");
	if (tm.tm_year <= 0)
		appendStringInfoString(buf, " BC");
	appendStringInfoChar(buf, '"');
}

void
pz_json_float8(StringInfo buf, double v)
{
	char tmp[DOUBLE_SHORTEST_DECIMAL_LEN];

	double_to_shortest_decimal_buf(v + 0.0, tmp);
	appendStringInfoString(buf, tmp);
}

/*
 * An interval in PostgreSQL's own style ("7 days", "00:30:00", "1 day
 * 12:00:00"), whatever the session's IntervalStyle: output stays IMMUTABLE,
 * and interval input reads this form under every style.
 */
void
pz_json_interval(StringInfo buf, int64 usecs)
{
	int64 days = usecs / USECS_PER_DAY;
	int64 rest = usecs % USECS_PER_DAY;

	appendStringInfoChar(buf, '"');
	if (days != 0)
		appendStringInfo(buf, INT64_FORMAT " day%s", days, days == 1 ? "" : "s");
	if (rest != 0 || days == 0)
	{
		appendStringInfo(buf, "%s%02d:%02d:%02d", days != 0 ? " " : "",
						 (int) (rest / USECS_PER_HOUR), (int) (rest / USECS_PER_MINUTE % 60),
						 (int) (rest / USECS_PER_SEC % 60));
		if (rest % USECS_PER_SEC != 0)
			appendStringInfo(buf, ".%06d", (int) (rest % USECS_PER_SEC));
	}
	appendStringInfoChar(buf, '"');
}

void
pz_bad_text(const char *type_name, const char *detail, const char *hint)
{
	ereport(ERROR, (errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					errmsg("invalid input syntax for type %s", type_name), errdetail("%s", detail),
					hint ? errhint("%s", hint) : 0));
}

static void
pz_json_error_context(void *arg)
{
	errcontext("while reading a %s value: it is written as a JSON object, "
			   "as the type's output shows",
			   (const char *) arg);
}

Jsonb *
pz_json_parse(const char *str, const char *type_name)
{
	ErrorContextCallback cb;
	Datum d;

	cb.callback = pz_json_error_context;
	cb.arg = (void *) type_name;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	d = DirectFunctionCall1(jsonb_in, CStringGetDatum(str));
	error_context_stack = cb.previous;
	return DatumGetJsonbP(d);
}

JsonbContainer *
pz_json_root_object(Jsonb *jb, const char *type_name)
{
	if (!JB_ROOT_IS_OBJECT(jb))
		pz_bad_text(type_name, "The value is not a JSON object.",
					"Write it as the type's output shows, e.g. {\"n\": 10, ...}.");
	return &jb->root;
}

bool
pz_json_get(JsonbContainer *obj, const char *key, JsonbValue *out, bool optional,
			const char *type_name)
{
	if (getKeyJsonValueFromContainer(obj, key, strlen(key), out) != NULL)
		return true;
	if (!optional)
		pz_bad_text(type_name, psprintf("The key \"%s\" is missing.", key), NULL);
	return false;
}

void
pz_json_expect_keys(JsonbContainer *obj, int nkeys, const char *type_name, const char *keys)
{
	if ((int) JsonContainerSize(obj) != nkeys)
		pz_bad_text(type_name, "The object has unknown keys.",
					psprintf("The keys of a %s are: %s.", type_name, keys));
}

int64
pz_json_int64(JsonbValue *v, const char *what, const char *type_name)
{
	int64 i;

	if (v->type != jbvNumeric)
		pz_bad_text(type_name, psprintf("\"%s\" must be a number.", what), NULL);
	/* numeric_int8 rounds (and rejects what is out of range): check it was whole */
	i = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(v->val.numeric),
										  NumericGetDatum(int64_to_numeric(i)))))
		pz_bad_text(type_name, psprintf("\"%s\" must be a whole number.", what), NULL);
	return i;
}

double
pz_json_float8_value(JsonbValue *v, const char *what, const char *type_name)
{
	double d;

	if (v->type != jbvNumeric)
		pz_bad_text(type_name, psprintf("\"%s\" must be a number.", what), NULL);
	d = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
	if (isnan(d) || isinf(d))
		pz_bad_text(type_name, psprintf("\"%s\" must be finite.", what), NULL);
	return d;
}

char *
pz_json_text(JsonbValue *v, int32 *len, const char *what, const char *type_name)
{
	if (v->type != jbvString)
		pz_bad_text(type_name, psprintf("\"%s\" must be a string.", what), NULL);
	*len = v->val.string.len;
	return pz_value_copy(v->val.string.val, v->val.string.len);
}

TimestampTz
pz_json_timestamp(JsonbValue *v, const char *what, const char *type_name)
{
	int32 len;
	char *s = pz_json_text(v, &len, what, type_name);
	TimestampTz ts;

	ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
												 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	if (TIMESTAMP_NOT_FINITE(ts))
		pz_bad_text(type_name, psprintf("\"%s\" must be a finite time.", what), NULL);
	return ts;
}

int64
pz_json_interval_usecs(JsonbValue *v, const char *what, const char *type_name)
{
	int32 len;
	char *s = pz_json_text(v, &len, what, type_name);
	Interval *iv;

	iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	return pz_interval_usecs(iv, what);
}

JsonbContainer *
pz_json_array(JsonbValue *v, int *n, const char *what, const char *type_name)
{
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		pz_bad_text(type_name, psprintf("\"%s\" must be an array.", what), NULL);
	*n = JsonContainerSize(v->val.binary.data);
	return v->val.binary.data;
}

JsonbContainer *
pz_json_object(JsonbValue *v, const char *what, const char *type_name)
{
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		pz_bad_text(type_name, psprintf("\"%s\" must be an object.", what), NULL);
	return v->val.binary.data;
}

void
pz_json_elem(JsonbContainer *arr, int i, JsonbValue *out)
{
	JsonbValue *e = getIthJsonbValueFromContainer(arr, i);

	*out = *e;
}

/* ---------------------------------------------------------------------
 * SQL-callable functions shared by every kind
 * --------------------------------------------------------------------- */

/* The kind behind an I/O function's type, cached in fn_extra. */
static PzKind
pz_io_kind(FunctionCallInfo fcinfo, Oid typid)
{
	FmgrInfo *flinfo = fcinfo->flinfo;

	if (flinfo->fn_extra == NULL)
	{
		PzKind *k = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(PzKind));

		*k = pz_kind_of_type(typid);
		flinfo->fn_extra = k;
	}
	return *(PzKind *) flinfo->fn_extra;
}

PG_FUNCTION_INFO_V1(pz_state_in);
Datum
pz_state_in(PG_FUNCTION_ARGS)
{
	char *str = PG_GETARG_CSTRING(0);
	PzKind kind = pz_io_kind(fcinfo, PG_GETARG_OID(1));
	const PzKindOps *ops = pz_kind_ops(kind);
	Jsonb *jb = pz_json_parse(str, ops->type_name);
	PzState *s = ops->from_json(pz_json_root_object(jb, ops->type_name));

	PG_RETURN_POINTER(pz_state_flatten(s));
}

PG_FUNCTION_INFO_V1(pz_state_out);
Datum
pz_state_out(PG_FUNCTION_ARGS)
{
	PzState *s = pz_state_from_datum(PG_GETARG_DATUM(0), 0);
	StringInfoData buf;

	initStringInfo(&buf);
	pz_kind_ops(s->kind)->to_json(s, &buf);
	PG_RETURN_CSTRING(buf.data);
}

PG_FUNCTION_INFO_V1(pz_state_recv);
Datum
pz_state_recv(PG_FUNCTION_ARGS)
{
	StringInfo msg = (StringInfo) PG_GETARG_POINTER(0);
	PzKind kind = pz_io_kind(fcinfo, PG_GETARG_OID(1));
	PzState *s;

	pz_read_verifies_text = true;
	PG_TRY();
	{
		s = pz_state_read_bytes(msg->data + msg->cursor, msg->len - msg->cursor, kind);
	}
	PG_FINALLY();
	{
		pz_read_verifies_text = false;
	}
	PG_END_TRY();
	msg->cursor = msg->len;
	/* re-flatten: what is stored is always the canonical form */
	PG_RETURN_POINTER(pz_state_flatten(s));
}

PG_FUNCTION_INFO_V1(pz_state_send);
Datum
pz_state_send(PG_FUNCTION_ARGS)
{
	struct varlena *flat = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/*
 * state_merge(a, b): NULL is the empty state, so a || NULL = a.
 */
PG_FUNCTION_INFO_V1(pz_state_merge);
Datum
pz_state_merge(PG_FUNCTION_ARGS)
{
	PzState *a;
	PzState *b;

	if (PG_ARGISNULL(0) && PG_ARGISNULL(1))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(0))
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	a = pz_state_from_datum(PG_GETARG_DATUM(0), 0);
	b = pz_state_from_datum(PG_GETARG_DATUM(1), a->kind);
	pz_kind_ops(a->kind)->merge(a, b);
	PG_RETURN_POINTER(pz_state_flatten(a));
}

/*
 * Equality of two states of one kind.  Every stored state is in canonical
 * form (input, receive and the aggregates all write it), so equal states
 * have equal bytes.
 */
static bool
pz_state_bytes_equal(FunctionCallInfo fcinfo)
{
	struct varlena *a = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
	struct varlena *b = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(1));

	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		   memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

PG_FUNCTION_INFO_V1(pz_state_eq);
Datum
pz_state_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pz_state_bytes_equal(fcinfo));
}

PG_FUNCTION_INFO_V1(pz_state_ne);
Datum
pz_state_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(!pz_state_bytes_equal(fcinfo));
}

/* Aggregate support: combine two in-memory states (either may be NULL). */
PG_FUNCTION_INFO_V1(pz_agg_combine);
Datum
pz_agg_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "pz_agg_combine");
	MemoryContext old;
	PzState *a = PG_ARGISNULL(0) ? NULL : (PzState *) PG_GETARG_POINTER(0);
	PzState *b = PG_ARGISNULL(1) ? NULL : (PzState *) PG_GETARG_POINTER(1);

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (b->kind == PZ_KIND_UNREAD)
	{
		struct varlena *flat = ((PzUnreadState *) b)->flat;

		if (a == NULL)
		{
			old = MemoryContextSwitchTo(aggcontext);
			a = pz_state_unflatten(flat, 0);
			MemoryContextSwitchTo(old);
			PG_RETURN_POINTER(a);
		}
		/* read in the per-tuple context: garbage once merged */
		b = pz_state_unflatten(flat, a->kind);
	}
	old = MemoryContextSwitchTo(aggcontext);
	if (pz_kind_ops(b->kind)->settle)
		pz_kind_ops(b->kind)->settle(b);
	if (a == NULL)
	{
		/*
		 * b may live in a shorter-lived context (deserialize allocates in
		 * the per-tuple context): the accumulator is a copy of it.
		 */
		MemoryContextSwitchTo(old);
		PG_RETURN_POINTER(pz_state_copy(b, aggcontext));
	}
	if (pz_kind_ops(a->kind)->settle)
		pz_kind_ops(a->kind)->settle(a);
	if (a->kind != b->kind)
		elog(ERROR, "cannot combine trait states of different kinds");
	pz_kind_ops(a->kind)->merge(a, b);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(a);
}

/*
 * Fold what an aggregate buffered into the state, in the aggregate's memory:
 * a final function may run in a shorter-lived context than the state, which
 * window aggregates keep using after it.
 */
static void
pz_agg_settle(FunctionCallInfo fcinfo, PzState *s)
{
	const PzKindOps *ops = pz_kind_ops(s->kind);
	MemoryContext aggcontext;

	if (ops->settle == NULL)
		return;
	if (AggCheckCallContext(fcinfo, &aggcontext))
	{
		MemoryContext old = MemoryContextSwitchTo(aggcontext);

		ops->settle(s);
		MemoryContextSwitchTo(old);
	}
	else
		ops->settle(s);
}

/* Aggregate support: serialize and final are both "flatten". */
PG_FUNCTION_INFO_V1(pz_agg_flatten);
Datum
pz_agg_flatten(PG_FUNCTION_ARGS)
{
	PzState *s;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	s = (PzState *) PG_GETARG_POINTER(0);
	pz_agg_settle(fcinfo, s);
	PG_RETURN_POINTER(pz_state_flatten(s));
}

PG_FUNCTION_INFO_V1(pz_agg_deserialize);
Datum
pz_agg_deserialize(PG_FUNCTION_ARGS)
{
	PzUnreadState *u;

	/*
	 * Deserialization only ever feeds combine, which either makes the partial
	 * state its accumulator or merges it and drops it.  So defer the reading
	 * to combine, which then reads it once, into the right context.
	 */
	pz_agg_context(fcinfo, "pz_agg_deserialize");
	u = palloc(sizeof(PzUnreadState));
	u->hdr.kind = PZ_KIND_UNREAD;
	u->flat = PG_GETARG_BYTEA_PP(0);
	PG_RETURN_POINTER(u);
}

/* merge_agg(state): transition function folding stored states together. */
PG_FUNCTION_INFO_V1(pz_merge_agg_trans);
Datum
pz_merge_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "merge_agg");
	MemoryContext old;
	PzState *acc = PG_ARGISNULL(0) ? NULL : (PzState *) PG_GETARG_POINTER(0);
	PzState *in;

	if (PG_ARGISNULL(1))
	{
		if (acc == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(acc);
	}
	if (acc == NULL)
	{
		/* the first state becomes the accumulator: read it where it lives */
		old = MemoryContextSwitchTo(aggcontext);
		acc = pz_state_from_datum(PG_GETARG_DATUM(1), 0);
		MemoryContextSwitchTo(old);
		PG_RETURN_POINTER(acc);
	}
	/* later states are read in the per-row context, which is reset per row */
	in = pz_state_from_datum(PG_GETARG_DATUM(1), acc->kind);
	old = MemoryContextSwitchTo(aggcontext);
	pz_kind_ops(acc->kind)->merge(acc, in);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(acc);
}
