/*
 * state.h
 *	  What every trait state shares: the kinds, the flat (on-disk and wire)
 *	  format, the byte reader and writer, JSON text helpers, and the table of
 *	  per-kind operations that lets one set of aggregate support functions
 *	  (combine, serialize, deserialize, final, merge) serve every kind.
 *
 * A trait state exists in two forms:
 *
 *	- in memory, a C struct whose first member is a PzState header; this is
 *	  what the aggregates' transition functions and the streaming worker fold
 *	  events into, with the kind's plain C "add" and "merge" functions;
 *	- flat, a varlena: 1 byte format version, 1 byte kind, then the kind's
 *	  body: fixed-width integers big-endian, counts, lengths and deltas as
 *	  varints (LEB128, 7 bits a byte), so a typical state costs a few bytes
 *	  per item.  The flat form is the stored value of
 *	  the SQL type, the payload of binary send/receive, and the serialized
 *	  aggregate state, so all three are read by the same validating reader.
 *
 * Values (SKUs, categories, ids) are held as their text form: a bigint is
 * held as its canonical decimal text, so 42 and '42' are the same value and
 * states built from text and bigint columns merge.  Ties between values are
 * broken by byte order (memcmp, then length), never by collation, so results
 * do not depend on the locale.
 */
#ifndef PERSONALIZE_STATE_H
#define PERSONALIZE_STATE_H

#include "postgres.h"

#include "common/int.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#define PZ_FORMAT_VERSION 1

typedef enum PzKind
{
	PZ_KIND_RECENT = 1,
	PZ_KIND_TOP = 2,
	PZ_KIND_WINDOWED = 3,
	PZ_KIND_DISTINCT = 4,
	PZ_KIND_FIRST = 5,
	PZ_KIND_LAST = 6,
	PZ_KIND_SESSION = 7,
	PZ_KIND_METRIC = 8
} PzKind;

#define PZ_KIND_COUNT 9 /* one past the largest kind */

/*
 * Not a kind: a serialized partial aggregate state that deserialize handed
 * to combine without reading it (see pz_agg_deserialize).
 */
#define PZ_KIND_UNREAD 0

/* First member of every in-memory state. */
typedef struct PzState
{
	PzKind kind;
} PzState;

typedef struct PzUnreadState
{
	PzState hdr; /* kind PZ_KIND_UNREAD */
	struct varlena *flat;
} PzUnreadState;

/* A value as held in a state: bytes of its text form, NUL-terminated. */
typedef struct PzValue
{
	char *data;
	int32 len;
} PzValue;

/* Compare two values by bytes, then by length. */
static inline int
pz_value_cmp(const char *a, int32 alen, const char *b, int32 blen)
{
	int c = memcmp(a, b, Min(alen, blen));

	if (c != 0)
		return c;
	return (alen > blen) - (alen < blen);
}

static inline bool
pz_value_eq(const char *a, int32 alen, const char *b, int32 blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/*
 * Time arithmetic that cannot overflow: two valid timestamps can be further
 * apart than int64 holds (4713 BC to 294276 AD), so differences are taken in
 * 128 bits, or as an unsigned distance when the order is known.
 */
static inline int128
pz_time_diff(TimestampTz later, TimestampTz earlier)
{
	return (int128) later - (int128) earlier;
}

static inline uint64
pz_time_distance(TimestampTz later, TimestampTz earlier)
{
	Assert(later >= earlier);
	return (uint64) later - (uint64) earlier;
}

/* intervals (half-lives, gaps, windows) are at most this long */
#define PZ_MAX_INTERVAL_USECS ((int64) 100 * 366 * USECS_PER_DAY)

/* a + b for counts, ERROR on overflow */
extern int64 pz_add_count(int64 a, int64 b, const char *type_name);
/* ERROR unless a float that a state accumulates is finite */
extern double pz_check_finite(double v, const char *type_name);

/* Copy a value into CurrentMemoryContext, NUL-terminated. */
extern char *pz_value_copy(const char *data, int32 len);
/* qsort comparator of TimestampTz, ascending */
extern int pz_timestamp_cmp(const void *a, const void *b);

/* ---- reading the flat form ---- */

typedef struct PzReader
{
	const char *cur;
	const char *end;
	const char *type_name;
} PzReader;

extern void pz_reader_init(PzReader *r, const char *data, int len, const char *type_name);
extern pg_attribute_noreturn() void pz_corrupt(const char *type_name, const char *detail);
extern uint8 pz_read_u8(PzReader *r);
extern uint64 pz_read_varint(PzReader *r);
/* a varint that must be <= max */
extern int64 pz_read_varint_max(PzReader *r, int64 max, const char *what);
extern int64 pz_read_i64(PzReader *r);
extern double pz_read_f64(PzReader *r);
/* a length-prefixed value, copied NUL-terminated into CurrentMemoryContext */
extern char *pz_read_value(PzReader *r, int32 *len);

/*
 * While set (binary receive of a state or a profile: bytes from outside),
 * every value read must be text in the database's encoding, so that what
 * receive accepts, text output, pg_dump and restore take back.
 */
extern bool pz_read_verifies_text;
/* a count (varint), checked against an upper bound so a damaged count cannot allocate */
extern int32 pz_read_count(PzReader *r, int32 max, const char *what);
extern TimestampTz pz_read_time(PzReader *r);
/* a time written as its (varint) distance after base, at most max_distance */
extern TimestampTz pz_read_time_after(PzReader *r, TimestampTz base, uint64 max_distance,
									  const char *what);

/* ---- writing the flat form ---- */

extern void pz_write_u8(StringInfo buf, uint8 v);
extern void pz_write_varint(StringInfo buf, uint64 v);
extern void pz_write_i64(StringInfo buf, int64 v);
extern void pz_write_f64(StringInfo buf, double v);
extern void pz_write_value(StringInfo buf, const char *data, int32 len);

/* ---- the per-kind operations ---- */

typedef struct PzKindOps
{
	PzKind kind;
	const char *type_name;
	/* read the body of a flat state: validate, normalize, allocate */
	PzState *(*read)(PzReader *r);
	/* write the body of a flat state (canonical: equal states, equal bytes) */
	void (*write)(PzState *s, StringInfo buf);
	/*
	 * optional: fold events an aggregate buffered in the state into it, in
	 * the state's own memory context; called before write and merge
	 */
	void (*settle)(PzState *s);
	/*
	 * optional, for kinds whose memory form holds more than they write:
	 * make a settled state what reading its written form gives
	 */
	void (*as_written)(PzState *s);
	/* fold src into dst; dst's memory is CurrentMemoryContext; src unchanged */
	void (*merge)(PzState *dst, const PzState *src);
	/* text output: a JSON object */
	void (*to_json)(PzState *s, StringInfo buf);
	/* text input: build a state from a parsed JSON object */
	PzState *(*from_json)(JsonbContainer *obj);
} PzKindOps;

extern const PzKindOps pz_recent_ops;
extern const PzKindOps pz_top_ops;
extern const PzKindOps pz_windowed_ops;
extern const PzKindOps pz_distinct_ops;
extern const PzKindOps pz_first_ops;
extern const PzKindOps pz_last_ops;
extern const PzKindOps pz_session_ops;
extern const PzKindOps pz_metric_ops;

extern const PzKindOps *pz_kind_ops(PzKind kind);

/* flat <-> in-memory */
extern struct varlena *pz_state_flatten(PzState *s);
extern PzState *pz_state_unflatten(struct varlena *flat, PzKind expect);
/*
 * Check the header of a state's flat bytes (without varlena header) and
 * leave r at its body, for a reader that needs no state built; returns the
 * kind.  expect == 0 accepts any kind.  pz_reader_close: the body must be
 * read to its end.
 */
extern PzKind pz_reader_open(PzReader *r, const char *data, int len, PzKind expect);
extern void pz_reader_close(PzReader *r);
/* the same from a state's flat bytes without varlena header (version, kind, body) */
extern PzState *pz_state_read_bytes(const char *data, int len, PzKind expect);
extern PzState *pz_state_from_datum(Datum d, PzKind expect);
/* a deep copy, allocated in target */
extern PzState *pz_state_copy(const PzState *s, MemoryContext target);

/* ---- helpers for SQL-callable functions ---- */

/* the aggregate memory context, or an ERROR naming the function */
extern MemoryContext pz_agg_context(FunctionCallInfo fcinfo, const char *fname);

/*
 * The event value in argument argno as text bytes: a text argument as is,
 * a bigint as its decimal form written into buf (at least 24 bytes).
 * Returns false when the argument is NULL.
 */
#define PZ_INT8_BUFLEN 24

/* personalize.max_value_bytes (personalize.c) */
extern int pz_max_value_bytes;

/* ERROR unless an event's value fits personalize.max_value_bytes */
extern void pz_check_value_length(int32 len, const char *fname);
extern bool pz_arg_value(FunctionCallInfo fcinfo, int argno, char *buf, const char **data,
						 int32 *len);

/* an event time: NULL -> false; infinite -> ERROR */
extern bool pz_arg_time(FunctionCallInfo fcinfo, int argno, TimestampTz *ts);

/* an interval as microseconds (months as 30 days); must be > 0 */
extern int64 pz_interval_usecs(const Interval *iv, const char *what);

/* an integer parameter of an aggregate: not NULL, within [min, max] */
extern int32 pz_arg_int(FunctionCallInfo fcinfo, int argno, int32 min, int32 max, const char *what,
						const char *fname);

/* one-dimensional arrays for accessors */
extern Datum pz_text_array(const char *const *vals, const int32 *lens, int n);
extern Datum pz_time_array(const TimestampTz *ts, int n);
extern Datum pz_float8_array(const double *v, int n);

/* ---- JSON text form ---- */

extern void pz_json_string(StringInfo buf, const char *data);
extern void pz_json_time(StringInfo buf, TimestampTz ts);
extern void pz_json_float8(StringInfo buf, double v);
extern void pz_json_interval(StringInfo buf, int64 usecs);

extern Jsonb *pz_json_parse(const char *str, const char *type_name);
extern JsonbContainer *pz_json_root_object(Jsonb *jb, const char *type_name);
/* the value at key; ERROR if missing (or, when optional, returns false) */
extern bool pz_json_get(JsonbContainer *obj, const char *key, JsonbValue *out, bool optional,
						const char *type_name);
extern void pz_json_expect_keys(JsonbContainer *obj, int nkeys, const char *type_name,
								const char *keys);
extern int64 pz_json_int64(JsonbValue *v, const char *what, const char *type_name);
extern double pz_json_float8_value(JsonbValue *v, const char *what, const char *type_name);
extern char *pz_json_text(JsonbValue *v, int32 *len, const char *what, const char *type_name);
extern TimestampTz pz_json_timestamp(JsonbValue *v, const char *what, const char *type_name);
extern int64 pz_json_interval_usecs(JsonbValue *v, const char *what, const char *type_name);
/* an array; returns its container and element count */
extern JsonbContainer *pz_json_array(JsonbValue *v, int *n, const char *what,
									 const char *type_name);
extern JsonbContainer *pz_json_object(JsonbValue *v, const char *what, const char *type_name);
/* element i of an array container */
extern void pz_json_elem(JsonbContainer *arr, int i, JsonbValue *out);

extern pg_attribute_noreturn() void pz_bad_text(const char *type_name, const char *detail,
												const char *hint);

#endif /* PERSONALIZE_STATE_H */
