/*
 * distinct.c
 *	  The distinct_state trait state (HyperLogLog): type support, merge,
 *	  aggregate, accessors.
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "port/pg_bitutils.h"

#include "distinct.h"

#define DISTINCT_M(s) (1 << (s)->p)
/* largest rank: 64 - p hash bits after the index, plus one */
#define DISTINCT_QMAX(s) (64 - (s)->p + 1)
/* stored sparse while it holds at most m/4 registers (then no bigger than dense) */
#define DISTINCT_SPARSE_MAX(s) (DISTINCT_M(s) / 4)
/*
 * In memory a sparse state is an open-addressing hash set of (index << 8 |
 * rank) entries, at most half full; it turns dense when the set would grow
 * past m/8 slots (m/2 bytes), well before it would outweigh the registers.
 */
#define DISTINCT_TABLE_MIN    16 /* the length of inline_table */
#define DISTINCT_TABLE_MAX(s) Max(DISTINCT_M(s) / 8, DISTINCT_TABLE_MIN)

DistinctState *
distinct_new(int32 p)
{
	DistinctState *s = palloc(sizeof(DistinctState));

	s->hdr.kind = PZ_KIND_DISTINCT;
	s->p = p;
	s->regs = NULL;
	s->npending = 0;
	s->tsize = DISTINCT_TABLE_MIN;
	/* the first table lives in the state: one allocation, one cache miss less */
	memset(s->inline_table, 0, sizeof(s->inline_table));
	s->table = s->inline_table;
	s->nnz = 0;
	return s;
}

/*
 * 64-bit hash of a value's bytes: PostgreSQL's hash_bytes_extended, then the
 * splitmix64 finalizer so every output bit depends on every input bit.
 */
uint64
distinct_hash(const char *val, int32 len)
{
	uint64 h = hash_bytes_extended((const unsigned char *) val, len, 0);

	h ^= h >> 30;
	h *= UINT64CONST(0xbf58476d1ce4e5b9);
	h ^= h >> 27;
	h *= UINT64CONST(0x94d049bb133111eb);
	h ^= h >> 31;
	return h;
}

/*
 * sort_registers(uint32 *, size_t): a sparse state's registers in index
 * order.  Every stored write sorts them (the streaming worker writes a
 * profile per event it applies), so the comparison is inlined rather than
 * called through qsort's function pointer.
 */
#define ST_SORT          sort_registers
#define ST_ELEMENT_TYPE  uint32
#define ST_COMPARE(a, b) ((*(a) > *(b)) - (*(a) < *(b)))
#define ST_SCOPE         static
#define ST_DEFINE
#include "lib/sort_template.h"

static void
distinct_densify(DistinctState *s)
{
	int i;

	s->regs = palloc0(DISTINCT_M(s));
	for (i = 0; i < s->tsize; i++)
	{
		uint32 e = s->table[i];

		if (e != 0 && (e & 0xff) > s->regs[e >> 8])
			s->regs[e >> 8] = e & 0xff;
	}
	if (s->table != s->inline_table)
		pfree(s->table);
	s->table = NULL;
	s->tsize = 0;
}

/*
 * An index's home slot in a table of tsize slots: its top bits (indexes are
 * uniform: they are hash bits).  Homes ascend with indexes, so the table
 * holds the registers nearly in index order, and a write sorts them almost
 * for free (distinct_sorted).
 */
static inline uint32
distinct_home(const DistinctState *s, int32 tsize, uint32 idx)
{
	return idx >> (s->p - pg_leftmost_one_pos32((uint32) tsize));
}

/* Put an entry in the hash set. */
static inline bool
distinct_table_put(const DistinctState *s, uint32 *table, int32 tsize, uint32 idx, uint8 rank)
{
	uint32 mask = (uint32) tsize - 1;
	uint32 slot = distinct_home(s, tsize, idx);

	for (;;)
	{
		uint32 e = table[slot];

		if (e == 0)
		{
			table[slot] = (idx << 8) | rank;
			return true;
		}
		if ((e >> 8) == idx)
		{
			if (rank > (e & 0xff))
				table[slot] = (idx << 8) | rank;
			return false;
		}
		slot = (slot + 1) & mask;
	}
}

static void
distinct_set(DistinctState *s, uint32 idx, uint8 rank)
{
	if (s->regs != NULL)
	{
		if (rank > s->regs[idx])
			s->regs[idx] = rank;
		return;
	}
	if (!distinct_table_put(s, s->table, s->tsize, idx, rank))
		return;
	if (++s->nnz * 2 <= s->tsize)
		return;
	if (s->tsize * 2 > DISTINCT_TABLE_MAX(s))
		distinct_densify(s);
	else
	{
		uint32 *old = s->table;
		int32 oldsize = s->tsize;
		int i;

		s->tsize *= 2;
		s->table = palloc0(sizeof(uint32) * s->tsize);
		for (i = 0; i < oldsize; i++)
			if (old[i] != 0)
				distinct_table_put(s, s->table, s->tsize, old[i] >> 8, old[i] & 0xff);
		if (old != s->inline_table)
			pfree(old);
	}
}

/*
 * Make an empty sparse state ready for n registers: the table the inserts
 * would grow it to, allocated once, or the dense registers.
 */
static void
distinct_reserve(DistinctState *s, int32 n)
{
	int32 tsize = DISTINCT_TABLE_MIN;

	Assert(s->regs == NULL && s->nnz == 0 && s->table == s->inline_table);
	while (n * 2 > tsize)
		tsize *= 2;
	if (tsize > DISTINCT_TABLE_MAX(s))
		distinct_densify(s);
	else if (tsize > DISTINCT_TABLE_MIN)
	{
		s->table = palloc0(sizeof(uint32) * tsize);
		s->tsize = tsize;
	}
}

/*
 * The non-zero registers of a sparse state, sorted by index, as a new
 * array: states are written in index order.
 */
static uint32 *
distinct_sorted(const DistinctState *s)
{
	uint32 *out = palloc(sizeof(uint32) * Max(s->nnz, 1));
	int n = 0;
	int moves = 0;
	int i;

	for (i = 0; i < s->tsize; i++)
		if (s->table[i] != 0)
			out[n++] = s->table[i];

	/*
	 * Out of order are only neighbours a collision pushed past each other
	 * and the few entries that wrapped around to the front: an insertion
	 * sort, unless (values chosen to collide) that turns out long.
	 */
	for (i = 1; i < n && moves <= 4 * n; i++)
	{
		uint32 e = out[i];
		int j;

		for (j = i; j > 0 && out[j - 1] > e; j--)
			out[j] = out[j - 1];
		out[j] = e;
		moves += i - j;
	}
	if (i < n)
		sort_registers(out, n);
	return out;
}

/* The register a hash sets, as (index << 8 | rank). */
static inline uint32
distinct_entry(const DistinctState *s, uint64 h)
{
	uint32 idx = (uint32) (h >> (64 - s->p));
	uint64 rest = h << s->p;
	uint8 rank;

	/* rank: position of the first 1 bit after the index bits, from 1 */
	rank = rest == 0 ? DISTINCT_QMAX(s) : 64 - pg_leftmost_one_pos64(rest);
	return (idx << 8) | rank;
}

void
distinct_add_hash(DistinctState *s, uint64 h)
{
	uint32 e = distinct_entry(s, h);

	distinct_set(s, e >> 8, e & 0xff);
}

/*
 * The aggregate's transition buffers registers in the state itself and sets
 * them a handful at a time: setting one is a random write into a register
 * table of up to 4 kB per group, a cache miss in a hash aggregate over many
 * groups; a handful of them, prefetched together, overlap their misses.
 */
void
distinct_buffer_hash(DistinctState *s, uint64 h)
{
	if (s->npending == DISTINCT_PENDING)
		distinct_settle((PzState *) s);
	s->pending[s->npending++] = distinct_entry(s, h);
}

void
distinct_settle(PzState *s_)
{
	DistinctState *s = (DistinctState *) s_;
	int n = s->npending;
	int i;

	if (s->regs != NULL)
		for (i = 0; i < n; i++)
			__builtin_prefetch(&s->regs[s->pending[i] >> 8]);
	else if (s->table != s->inline_table)
		for (i = 0; i < n; i++)
			__builtin_prefetch(&s->table[distinct_home(s, s->tsize, s->pending[i] >> 8)]);
	s->npending = 0;
	for (i = 0; i < n; i++)
		distinct_set(s, s->pending[i] >> 8, s->pending[i] & 0xff);
}

static void
distinct_merge(PzState *dst_, const PzState *src_)
{
	DistinctState *dst = (DistinctState *) dst_;
	const DistinctState *src = (const DistinctState *) src_;
	int i;

	if (dst->p != src->p)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cannot merge distinct_state values of precision %d and %d", dst->p,
							   src->p),
						errhint("Build every state of one trait with the same precision.")));
	for (i = 0; i < src->npending; i++)
		distinct_set(dst, src->pending[i] >> 8, src->pending[i] & 0xff);
	if (src->regs != NULL)
	{
		if (dst->regs == NULL)
			distinct_densify(dst);
		for (i = 0; i < DISTINCT_M(dst); i++)
			if (src->regs[i] > dst->regs[i])
				dst->regs[i] = src->regs[i];
		return;
	}
	for (i = 0; i < src->tsize; i++)
		if (src->table[i] != 0)
			distinct_set(dst, src->table[i] >> 8, src->table[i] & 0xff);
}

/* Non-zero registers, whichever the representation. */
static int32
distinct_nonzero(DistinctState *s)
{
	int i;
	int32 n = 0;

	if (s->regs == NULL)
	{
		return s->nnz;
	}
	for (i = 0; i < DISTINCT_M(s); i++)
		n += s->regs[i] != 0;
	return n;
}

/* Visit the non-zero registers in index order. */
#define DISTINCT_FOREACH(s, idx, rank, body)                                                       \
	do                                                                                             \
	{                                                                                              \
		if ((s)->regs == NULL)                                                                     \
		{                                                                                          \
			uint32 *sorted_ = distinct_sorted(s);                                                  \
			for (int i_ = 0; i_ < (s)->nnz; i_++)                                                  \
			{                                                                                      \
				uint32 idx = sorted_[i_] >> 8;                                                     \
				uint8 rank = sorted_[i_] & 0xff;                                                   \
				body;                                                                              \
			}                                                                                      \
			pfree(sorted_);                                                                        \
		}                                                                                          \
		else                                                                                       \
		{                                                                                          \
			for (int i_ = 0; i_ < DISTINCT_M(s); i_++)                                             \
			{                                                                                      \
				uint32 idx = i_;                                                                   \
				uint8 rank = (s)->regs[i_];                                                        \
				if (rank != 0)                                                                     \
					body;                                                                          \
			}                                                                                      \
		}                                                                                          \
	} while (0)

static double
hll_sigma(double x)
{
	double y = 1.0;
	double z = x;
	double prev;

	if (x == 1.0)
		return INFINITY;
	do
	{
		x *= x;
		prev = z;
		z += x * y;
		y += y;
	} while (z != prev);
	return z;
}

static double
hll_tau(double x)
{
	double y = 1.0;
	double z = 1.0 - x;
	double prev;

	if (x == 0.0 || x == 1.0)
		return 0.0;
	do
	{
		x = sqrt(x);
		prev = z;
		y *= 0.5;
		z -= (1.0 - x) * (1.0 - x) * y;
	} while (z != prev);
	return z / 3.0;
}

double
distinct_estimate(DistinctState *s)
{
	double m = DISTINCT_M(s);
	int q = 64 - s->p;
	double hist[66] = {0};
	double z;
	int k;
	int32 nonzero = 0;

	/* order does not matter here: visit the registers where they lie */
	if (s->regs == NULL)
	{
		for (k = 0; k < s->tsize; k++)
			if (s->table[k] != 0)
			{
				hist[s->table[k] & 0xff] += 1;
				nonzero++;
			}
	}
	else
	{
		for (k = 0; k < DISTINCT_M(s); k++)
			if (s->regs[k] != 0)
			{
				hist[s->regs[k]] += 1;
				nonzero++;
			}
	}
	hist[0] = m - nonzero;
	z = m * hll_tau(1.0 - hist[q + 1] / m);
	for (k = q; k >= 1; k--)
		z = 0.5 * (z + hist[k]);
	z += m * hll_sigma(hist[0] / m);
	return (0.5 / M_LN2) * m * m / z;
}

/* ---- flat form: p, then the non-zero registers in index order, or all of them ---- */

static void
distinct_write(PzState *s_, StringInfo buf)
{
	DistinctState *s = (DistinctState *) s_;
	int32 nonzero;

	distinct_settle(s_); /* a no-op for settled states (aggregates settle first) */
	nonzero = distinct_nonzero(s);
	pz_write_u8(buf, (uint8) s->p);
	if (nonzero <= DISTINCT_SPARSE_MAX(s))
	{
		uint32 prev = 0;

		/* sparse: each register as its index's distance from the last, and its rank */
		pz_write_u8(buf, 0);
		pz_write_varint(buf, nonzero);
		DISTINCT_FOREACH(s, idx, rank, {
			pz_write_varint(buf, idx - prev);
			pz_write_u8(buf, rank);
			prev = idx;
		});
	}
	else
	{
		pz_write_u8(buf, 1);
		if (s->regs != NULL)
			appendBinaryStringInfo(buf, (char *) s->regs, DISTINCT_M(s));
		else
		{
			/*
			 * Still sparse in memory.  Write the dense form without turning
			 * the state dense: a final function must not allocate into a
			 * state that outlives it (window aggregates keep going).
			 */
			uint8 *regs = palloc0(DISTINCT_M(s));

			DISTINCT_FOREACH(s, idx, rank, regs[idx] = Max(regs[idx], rank));
			appendBinaryStringInfo(buf, (char *) regs, DISTINCT_M(s));
			pfree(regs);
		}
	}
}

static void
distinct_check_register(DistinctState *s, int64 idx, int64 rank, const char *type_name, bool text)
{
	if (idx < 0 || idx >= DISTINCT_M(s) || rank < 1 || rank > DISTINCT_QMAX(s))
	{
		char *detail =
			psprintf("Register %lld = %lld is outside index 0..%d, rank 1..%d.", (long long) idx,
					 (long long) rank, DISTINCT_M(s) - 1, DISTINCT_QMAX(s));

		if (text)
			pz_bad_text(type_name, detail, NULL);
		pz_corrupt(type_name, detail);
	}
}

static PzState *
distinct_read(PzReader *r)
{
	int32 p = pz_read_u8(r);
	uint8 format;
	DistinctState *s;
	int i;

	if (p < DISTINCT_MIN_P || p > DISTINCT_MAX_P)
		pz_corrupt(r->type_name, psprintf("The precision %d is outside %d..%d.", p, DISTINCT_MIN_P,
										  DISTINCT_MAX_P));
	s = distinct_new(p);
	format = pz_read_u8(r);
	if (format == 0)
	{
		int32 n = pz_read_count(r, DISTINCT_M(s), "registers");
		int64 idx = 0;

		/* partial aggregate states are read once each: no growing table */
		distinct_reserve(s, n);
		for (i = 0; i < n; i++)
		{
			int64 delta = pz_read_varint_max(r, DISTINCT_M(s), "A register index");
			uint8 rank;

			if (i > 0 && delta == 0)
				pz_corrupt(r->type_name, "A register appears twice.");
			idx += delta;
			rank = pz_read_u8(r);
			distinct_check_register(s, idx, rank, r->type_name, false);
			distinct_set(s, (uint32) idx, rank);
		}
	}
	else if (format == 1)
	{
		if (r->end - r->cur < DISTINCT_M(s))
			pz_corrupt(r->type_name, "The data ends early.");
		distinct_densify(s);
		for (i = 0; i < DISTINCT_M(s); i++)
		{
			uint8 rank = (uint8) r->cur[i];

			if (rank != 0)
				distinct_check_register(s, i, rank, r->type_name, false);
			s->regs[i] = rank;
		}
		r->cur += DISTINCT_M(s);
	}
	else
		pz_corrupt(r->type_name, psprintf("Unknown register format %d.", format));
	return (PzState *) s;
}

static void
distinct_to_json(PzState *s_, StringInfo buf)
{
	DistinctState *s = (DistinctState *) s_;
	bool first = true;

	appendStringInfo(buf, "{\"p\": %d, \"registers\": [", s->p);
	DISTINCT_FOREACH(s, idx, rank, {
		appendStringInfo(buf, first ? "[%u, %u]" : ", [%u, %u]", idx, rank);
		first = false;
	});
	appendStringInfoString(buf, "]}");
}

static PzState *
distinct_from_json(JsonbContainer *obj)
{
	const char *tn = "distinct_state";
	JsonbValue v;
	JsonbContainer *regs;
	int64 p;
	int n;
	int i;
	DistinctState *s;

	pz_json_expect_keys(obj, 2, tn, "p, registers");
	pz_json_get(obj, "p", &v, false, tn);
	p = pz_json_int64(&v, "p", tn);
	if (p < DISTINCT_MIN_P || p > DISTINCT_MAX_P)
		pz_bad_text(tn, psprintf("\"p\" is %lld.", (long long) p),
					psprintf("\"p\" must be between %d and %d.", DISTINCT_MIN_P, DISTINCT_MAX_P));
	s = distinct_new((int32) p);
	pz_json_get(obj, "registers", &v, false, tn);
	regs = pz_json_array(&v, &n, "registers", tn);
	for (i = 0; i < n; i++)
	{
		JsonbValue e;
		JsonbValue x;
		JsonbContainer *pair;
		int plen;
		int64 idx;
		int64 rank;

		pz_json_elem(regs, i, &e);
		pair = pz_json_array(&e, &plen, "registers[i]", tn);
		if (plen != 2)
			pz_bad_text(tn, "Each register must be a pair [index, rank].", NULL);
		pz_json_elem(pair, 0, &x);
		idx = pz_json_int64(&x, "register index", tn);
		pz_json_elem(pair, 1, &x);
		rank = pz_json_int64(&x, "register rank", tn);
		distinct_check_register(s, idx, rank, tn, true);
		distinct_set(s, (uint32) idx, (uint8) rank);
	}
	return (PzState *) s;
}

const PzKindOps pz_distinct_ops = {
	.kind = PZ_KIND_DISTINCT,
	.type_name = "distinct_state",
	.read = distinct_read,
	.write = distinct_write,
	.settle = distinct_settle,
	.merge = distinct_merge,
	.to_json = distinct_to_json,
	.from_json = distinct_from_json,
};

/* distinct_agg(value text|bigint [, p int]) transition */
PG_FUNCTION_INFO_V1(distinct_agg_trans);
Datum
distinct_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "distinct_agg");
	DistinctState *s = PG_ARGISNULL(0) ? NULL : (DistinctState *) PG_GETARG_POINTER(0);
	int32 p = DISTINCT_DEFAULT_P;
	char buf[PZ_INT8_BUFLEN];
	const char *val;
	int32 len;
	MemoryContext old;

	if (PG_NARGS() > 2)
		p = pz_arg_int(fcinfo, 2, DISTINCT_MIN_P, DISTINCT_MAX_P, "precision", "distinct_agg");
	if (s != NULL && s->p != p)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("precision of distinct_agg must be the same in every row"),
						errhint("Pass a constant, not a column: the states of one trait must share "
								"it to merge.")));
	if (!pz_arg_value(fcinfo, 1, buf, &val, &len))
	{
		if (s == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s);
	}
	/* the state and its register table live in the aggregate's context */
	old = MemoryContextSwitchTo(aggcontext);
	if (s == NULL)
		s = distinct_new(p);
	distinct_buffer_hash(s, distinct_hash(val, len));
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);
}

Datum
distinct_count_datum(DistinctState *s)
{
	double est = distinct_estimate(s);

	/* every register at its largest rank estimates infinity: saturate */
	if (!(est < 9.2e18))
		return Int64GetDatum(PG_INT64_MAX);
	return Int64GetDatum((int64) llround(est));
}

PG_FUNCTION_INFO_V1(distinct_count);
Datum
distinct_count(PG_FUNCTION_ARGS)
{
	DistinctState *s = (DistinctState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_DISTINCT);

	PG_RETURN_DATUM(distinct_count_datum(s));
}

PG_FUNCTION_INFO_V1(distinct_precision);
Datum
distinct_precision(PG_FUNCTION_ARGS)
{
	DistinctState *s = (DistinctState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_DISTINCT);

	PG_RETURN_INT32(s->p);
}
