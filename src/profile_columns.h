/*
 * profile_columns.h
 *	  The trait columns of a profile named by a spec (profile_columns.c):
 *	  shared by profile_columns(), which the profile view calls, and
 *	  get_profile() (profile_read.c), which renders the view's row as jsonb
 *	  without the executor, so that both compute every column with the same
 *	  code.
 *
 * A spec is '<trait id>:<accessor>[:<argument>];...', one entry per column
 * (see profile_columns.c); an entry with a '-' before it is skipped: its
 * column is NULL and its trait not read unless another column reads it.  It is parsed once (pc_spec_parse); then, per
 * profile, pc_spec_read reads each trait's state once and pc_column_value
 * gives each column's value.
 */
#ifndef PERSONALIZE_PROFILE_COLUMNS_H
#define PERSONALIZE_PROFILE_COLUMNS_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "fmgr.h"
#include "utils/timestamp.h"

#include "profile.h"
#include "state.h"

typedef enum PcAccessor
{
	PC_COUNT,
	PC_VALUE,
	PC_EVENT_VALUE,
	PC_EVENT_TIME,
	PC_RECENT,
	PC_TOP,
	PC_DISTINCT,
	PC_SESSION,
	PC_WCOUNT,
	PC_WSUM,
	PC_NUM_ACCESSORS
} PcAccessor;

typedef struct PcColumn
{
	PcAccessor acc;
	int32 trait;
	int64 span; /* wcount, wsum: microseconds */
	int slot;   /* the trait's index in PcSpec.traits */
	bool skip;  /* "-" before the entry: not read, NULL (profile_scan.c) */
} PcColumn;

typedef struct PcTrait
{
	int32 trait;
	PzKind kind;   /* what it must hold (PZ_KIND_FIRST: first or last) */
	int first_col; /* the first column reading it, for errors */
} PcTrait;

/* A parsed spec. */
typedef struct PcSpec
{
	int ncols;
	PcColumn *cols;
	int ntraits;
	PcTrait *traits;       /* each trait the spec reads, once */
	bool *trait_read;      /* per trait: a column that is not skipped reads it */
	const char **colnames; /* the columns' names, for errors; NULL: by number */
} PcSpec;

/* profile_columns(profile, text), the SQL function (by its address, profile_scan.c) */
extern PGDLLEXPORT Datum pz_profile_columns(PG_FUNCTION_ARGS);

/* Parse a spec (ERROR with a hint if it is not valid), in CurrentMemoryContext. */
extern PcSpec *pc_spec_parse(const char *spec, int len);

/*
 * The same, from a per-backend cache of parsed specs, copied into
 * CurrentMemoryContext; with desc, a tuple descriptor of the columns'
 * types (unnamed) too.
 */
extern PcSpec *pc_spec_parse_cached(const char *spec, int len, TupleDesc *desc);

/*
 * ERROR with a hint unless a column definition list (n columns: names,
 * types, typmods) declares each entry of the spec with its type.
 */
extern void pc_check_columns(const PcSpec *spec, int n, const char *const *names, const Oid *types,
							 const int32 *typmods);

/* the type of a column's values: int8, numeric, text, timestamptz, text[], jsonb, float8 */
extern Oid pc_column_type(const PcSpec *spec, int col);
extern const char *pc_accessor_name(PcAccessor acc);

/*
 * The state of every trait of the spec in profile p (NULL: an empty
 * profile) into states[spec->ntraits], NULL where p holds none; ERROR if p
 * holds a trait as a kind its columns cannot read.  The states belong to p.
 */
extern void pc_spec_read(const PcSpec *spec, Profile *p, PzState **states);
/* the same for the traits i with wanted[i] only (the others NULL) */
extern void pc_spec_read_wanted(const PcSpec *spec, Profile *p, PzState **states,
								const bool *wanted);

/*
 * One column's value from the state its trait holds (NULL: none), windows
 * evaluated at now; allocated in CurrentMemoryContext.  With tree non-NULL,
 * a session column's value (jsonb) is not serialized: *tree is set to its
 * JsonbValue tree, NULL for a NULL value, and the result is 0.
 */
extern Datum pc_column_value(const PcColumn *col, PzState *s, TimestampTz now, bool *isnull,
							 JsonbValue **tree);

/*
 * The spec of personalize.profile_view's trait columns (profile_read.c),
 * loaded when the view changed; NULL if the view has no trait column or
 * does not exist (*view InvalidOid).  Locks the view as a SELECT does; no
 * privilege is checked.
 */
extern const PcSpec *pz_profile_view_spec(Oid *view, TransactionId *xmin);

#endif /* PERSONALIZE_PROFILE_COLUMNS_H */
