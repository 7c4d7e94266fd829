/*
 * decoder.c
 *	  personalize's logical decoding output plugin: only registered sources,
 *	  only their mapped columns, in the binary messages of stream.h.
 *
 * Create a slot with it as `pg_create_logical_replication_slot(name,
 * 'personalize')`; the streaming worker (worker.c) drives it in-process.
 *
 * What to decode comes from personalize.stream_sources and stream_traits,
 * which the configuration functions keep (personalize--0.3.0--0.4.0.sql).
 * They are user_catalog_tables, so the plugin reads them with the historic
 * snapshot of the transaction being decoded: an insert is an event exactly
 * when its transaction commits after the source was registered, and it
 * feeds exactly the traits that existed then.  The configuration is read
 * once and kept until a change to either table is decoded or a relcache
 * invalidation arrives (a source table altered, the extension dropped).
 *
 * Values are converted to text the way rebuild() reads them (field.c: the
 * built-in cast to text, else the output function) and event times to
 * timestamptz; nothing here may raise an ERROR on a row's contents, since
 * an ERROR would stop decoding at that row for good.  Rows that cannot be
 * read go out as 'X' messages, which the worker keeps as dead letters.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "parser/parse_coerce.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/fmgroids.h"
#include "utils/timestamp.h"

#include "citus.h"
#include "field.h"
#include "security.h"
#include "state.h"
#include "stream.h"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/*
 * Set by the worker that drives this plugin in-process: its own origin,
 * whose transactions (profile writes) are not decoded at all, and a flag
 * telling it that transactions were replayed with historic snapshots.
 */
RepOriginId pz_decoder_skip_origin = InvalidRepOriginId;
bool pz_decoder_replayed = false;
/* a relcache invalidation reached this process (catalogs may have changed) */
bool pz_decoder_invalidated = false;

/* how a column becomes the text the rebuild would see */
typedef enum ReadHow
{
	READ_AS_IS,     /* text-like: binary-compatible with text */
	READ_CAST_FUNC, /* the cast function to text (bool, bpchar, inet, ...) */
	READ_OUTPUT,    /* the type's output function */
	READ_JSONB_KEY, /* column ->> key, column of type jsonb */
	READ_JSON_KEY   /* column ->> key, column of type json */
} ReadHow;

typedef struct ColumnReader
{
	char *name;
	AttrNumber attnum;
	ReadHow how;
	FmgrInfo fn;
	text *key;
} ColumnReader;

typedef struct TraitInput
{
	int32 trait_id;
	int nevent_types;
	text **event_types;
	bool has_value;
	ColumnReader value;
	bool has_item;
	ColumnReader item;
} TraitInput;

typedef enum TimeHow
{
	TIME_TIMESTAMPTZ,
	TIME_TIMESTAMP,
	TIME_DATE
} TimeHow;

typedef struct SourceDesc
{
	Oid relid; /* hash key */
	int32 source_id;
	Oid owner;       /* the role that registered it: the stream reads with its rights */
	char *bad;       /* why its rows cannot be read, or NULL */
	bool denied;     /* bad because its owner may not read it: no value goes out */
	bool not_source; /* a table seen in the WAL that is no source (nor a partition of one) */
	ColumnReader time;
	TimeHow time_how;
	bool has_type_column;
	ColumnReader type;
	text *type_constant;
	int nids;
	ColumnReader *ids;
	int32 *id_ns;
	int ntraits;
	TraitInput *traits;
} SourceDesc;

/* how stream_sources says who reads each source (stream_sources_shape) */
typedef enum SourcesShape
{
	SOURCES_WITH_OWNER,    /* 0.6.0 on: its owner column */
	SOURCES_BEFORE_OWNER,  /* 0.4.0, 0.5.0: each table's owner */
	SOURCES_UNKNOWN_OWNER, /* changed by hand: nobody */
} SourcesShape;

typedef struct DecoderState
{
	MemoryContext config_cxt; /* the configuration; reset when reloaded */
	MemoryContext row_cxt;    /* per decoded row */
	bool valid;
	bool traits_sent; /* the 'T' of this configuration was written */
	bool txn_begun;   /* 'B' of the current transaction was written */
	Oid stream_sources;
	SourcesShape sources_shape; /* how stream_sources says who reads each source */
	Oid stream_traits;
	HTAB *sources;
	/* the last replication origin looked at in this transaction, and whether it copies */
	RepOriginId origin_seen;
	bool origin_copies;
	int ntraitdefs;
	StreamTrait *traitdefs;
} DecoderState;

/* the state of the decoding running in this process, for the relcache callback */
static DecoderState *current_state = NULL;
static bool role_callbacks_registered = false;

static const char *const kind_names[] = {
	[STREAM_COUNT] = "count",
	[STREAM_SUM] = "sum",
	[STREAM_MIN] = "min",
	[STREAM_MAX] = "max",
	[STREAM_FIRST] = "first",
	[STREAM_LAST] = "last",
	[STREAM_RECENT] = "recent",
	[STREAM_TOP] = "top",
	[STREAM_WINDOWED_COUNT] = "windowed_count",
	[STREAM_WINDOWED_SUM] = "windowed_sum",
	[STREAM_DISTINCT] = "distinct",
	[STREAM_SESSION] = "session",
};

StreamTraitKind
stream_kind_from_name(const char *name)
{
	for (int k = 1; k <= STREAM_KIND_MAX; k++)
		if (strcmp(kind_names[k], name) == 0)
			return (StreamTraitKind) k;
	return 0;
}

const char *
stream_kind_name(StreamTraitKind kind)
{
	return kind >= 1 && kind <= STREAM_KIND_MAX ? kind_names[kind] : "?";
}

void
pz_decoder_relcache_changed(Oid relid)
{
	if (current_state != NULL)
		current_state->valid = false;
	pz_decoder_invalidated = true;
}

/* a role changed (membership, BYPASSRLS, dropped): the owners' rights may have */
static void
decoder_role_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	if (current_state != NULL)
		current_state->valid = false;
}

/* ---- reading the configuration (historic snapshot) ---- */

/* Set up r to read column name of rel as text, or return false if it is missing. */
static bool
reader_init(ColumnReader *r, Relation rel, const char *name, const char *json_key)
{
	TupleDesc td = RelationGetDescr(rel);
	Oid type = InvalidOid, funcid = InvalidOid;
	bool user_cast;

	r->name = pstrdup(name);
	r->attnum = InvalidAttrNumber;
	for (int i = 0; i < td->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(td, i);

		if (!a->attisdropped && strcmp(NameStr(a->attname), name) == 0)
		{
			r->attnum = a->attnum;
			type = a->atttypid;
			break;
		}
	}
	if (r->attnum == InvalidAttrNumber)
		return false;
	if (json_key != NULL)
	{
		Oid base = getBaseType(type);

		r->key = cstring_to_text(json_key);
		if (base == JSONBOID)
			r->how = READ_JSONB_KEY;
		else if (base == JSONOID)
			r->how = READ_JSON_KEY;
		else
			return false;
		fmgr_info(r->how == READ_JSONB_KEY ? F_JSONB_OBJECT_FIELD_TEXT : F_JSON_OBJECT_FIELD_TEXT,
				  &r->fn);
		return true;
	}
	switch (pz_field_text_how(type, &funcid, &user_cast))
	{
		case FIELD_AS_IS:
			r->how = READ_AS_IS;
			break;
		case FIELD_CAST_FUNC:
			r->how = READ_CAST_FUNC;
			fmgr_info(funcid, &r->fn);
			break;
		case FIELD_OUTPUT:
			r->how = READ_OUTPUT;
			fmgr_info(funcid, &r->fn);
			break;
	}
	return true;
}

/*
 * The non-NULL elements of an array of the configuration.  A NULL element
 * (a row written by hand) is left out: nothing here may raise an ERROR on
 * the configuration's contents, since decoding replays the same historic
 * configuration after every restart, and an ERROR would stop it there for
 * good, even after the row is mended.
 */
static Datum *
array_elements(Datum arr, Oid elemtype, int *n)
{
	int16 typlen;
	bool byval;
	char align;
	Datum *elems;
	bool *nulls;
	int k = 0;

	get_typlenbyvalalign(elemtype, &typlen, &byval, &align);
	deconstruct_array(DatumGetArrayTypeP(arr), elemtype, typlen, byval, align, &elems, &nulls, n);
	for (int i = 0; i < *n; i++)
		if (!nulls[i])
			elems[k++] = elems[i];
	*n = k;
	return elems;
}

static void
config_add_source(DecoderState *st, Datum *v, bool *nulls)
{
	Oid relid = DatumGetObjectId(v[1]);
	Relation rel;
	SourceDesc *src;
	bool found;
	Datum *cols, *nss;
	int ncols, nns;

	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		return; /* dropped: no rows can come */
	rel = RelationIdGetRelation(relid);
	if (!RelationIsValid(rel))
		return;
	src = hash_search(st->sources, &relid, HASH_ENTER, &found);
	memset(((char *) src) + sizeof(Oid), 0, sizeof(SourceDesc) - sizeof(Oid));
	src->source_id = DatumGetInt32(v[0]);
	/*
	 * Before 0.6.0 stream_sources had no owner (the transactions an update
	 * from 0.5.0 or older still decodes with the old configuration, its own
	 * writes among them): the table's owner, which is what the update
	 * records as the source's owner.
	 */
	if (st->sources_shape == SOURCES_WITH_OWNER)
		src->owner = nulls[7] ? InvalidOid : DatumGetObjectId(v[7]);
	else if (st->sources_shape == SOURCES_BEFORE_OWNER)
		src->owner = rel->rd_rel->relowner;
	else
	{
		/* nobody is known to read it: its events are dead letters without values */
		src->owner = InvalidOid;
		src->bad = pstrdup("personalize.stream_sources has no owner column as this library reads "
						   "it (renamed or dropped by hand?): the event is not read");
		src->denied = true;
	}

	if (!reader_init(&src->time, rel, NameStr(*DatumGetName(v[2])), NULL))
		src->bad = psprintf("event time column %s of %s is missing (dropped or renamed)",
							NameStr(*DatumGetName(v[2])), RelationGetRelationName(rel));
	else
	{
		Oid t = getBaseType(TupleDescAttr(RelationGetDescr(rel), src->time.attnum - 1)->atttypid);

		src->time_how = t == TIMESTAMPTZOID ? TIME_TIMESTAMPTZ
						: t == TIMESTAMPOID ? TIME_TIMESTAMP
						: t == DATEOID      ? TIME_DATE
											: -1;
		if ((int) src->time_how < 0)
			src->bad = psprintf("event time column %s of %s is of type %s now",
								NameStr(*DatumGetName(v[2])), RelationGetRelationName(rel),
								format_type_be(t));
	}
	if (!nulls[3])
	{
		src->has_type_column = true;
		if (!reader_init(&src->type, rel, NameStr(*DatumGetName(v[3])), NULL) && !src->bad)
			src->bad = psprintf("event type column %s of %s is missing (dropped or renamed)",
								NameStr(*DatumGetName(v[3])), RelationGetRelationName(rel));
	}
	else if (!nulls[4])
		src->type_constant = DatumGetTextPCopy(v[4]);

	cols = array_elements(v[5], NAMEOID, &ncols);
	nss = array_elements(v[6], INT4OID, &nns);
	src->nids = Min(ncols, nns);
	src->ids = palloc0(sizeof(ColumnReader) * Max(src->nids, 1));
	src->id_ns = palloc(sizeof(int32) * Max(src->nids, 1));
	for (int i = 0; i < src->nids; i++)
	{
		const char *col = NameStr(*DatumGetName(cols[i]));

		src->id_ns[i] = DatumGetInt32(nss[i]);
		if (!reader_init(&src->ids[i], rel, col, NULL) && !src->bad)
			src->bad = psprintf("identifier column %s of %s is missing (dropped or renamed)", col,
								RelationGetRelationName(rel));
	}
	RelationClose(rel);
}

/* Set up dst to read src's column from rel (a partition of src's table). */
static bool
reader_clone(ColumnReader *dst, const ColumnReader *src, Relation rel)
{
	return reader_init(dst, rel, src->name, src->key ? text_to_cstring(src->key) : NULL);
}

/* the registered source of relid, or NULL */
static SourceDesc *
registered_source(DecoderState *st, Oid relid)
{
	SourceDesc *src = OidIsValid(relid) ? hash_search(st->sources, &relid, HASH_FIND, NULL) : NULL;

	return src != NULL && !src->not_source && src->source_id != 0 ? src : NULL;
}

/* the top of relid's partition tree, or InvalidOid if relid is no partition */
static Oid
partition_top(Oid relid)
{
	List *ancestors = get_rel_relispartition(relid) ? get_partition_ancestors(relid) : NIL;

	return ancestors != NIL ? llast_oid(ancestors) : InvalidOid;
}

/*
 * The source whose rows rel's are, though rel is not registered: a
 * partition of a registered partitioned table, or a Citus shard of a
 * registered distributed table (citus.c), or a shard of one of its
 * partitions, or a partition of one of its shards.  *what says which.
 */
static SourceDesc *
derived_root(DecoderState *st, Relation rel, const char **what, bool *shard_unknown)
{
	Oid relid = RelationGetRelid(rel);
	Oid top = rel->rd_rel->relispartition ? partition_top(relid) : InvalidOid;
	Oid table;
	SourceDesc *root;

	*what = "partition";
	*shard_unknown = false;
	if ((root = registered_source(st, top)) != NULL)
		return root;
	*what = "shard";
	table = pz_citus_shard_table(relid, shard_unknown);
	if ((root = registered_source(st, table)) != NULL ||
		(OidIsValid(table) && (root = registered_source(st, partition_top(table))) != NULL))
		return root;
	if (OidIsValid(top) &&
		(root = registered_source(st, pz_citus_shard_table(top, shard_unknown))) != NULL)
		return root;
	*shard_unknown = false;
	return NULL;
}

/*
 * A table that is not a source itself, but whose rows are a source's
 * (derived_root): read as that source, through readers set up for its own
 * columns (the same names, perhaps at other positions: a partition
 * attached with another column order, a shard made after a column was
 * dropped).  Access was checked on the source, as a SELECT of it would
 * check it.  Any other table is remembered as no source.  Partitions
 * attached and shards made later are found the same way: either
 * invalidates the relcache, and the configuration is read afresh.
 */
static SourceDesc *
partition_source(DecoderState *st, Relation rel)
{
	Oid relid = RelationGetRelid(rel);
	const char *what;
	bool shard_unknown;
	SourceDesc *root = derived_root(st, rel, &what, &shard_unknown), *src;
	MemoryContext old = MemoryContextSwitchTo(st->config_cxt);
	const char *name = RelationGetRelationName(rel);

	src = hash_search(st->sources, &relid, HASH_ENTER, NULL);
	memset(((char *) src) + sizeof(Oid), 0, sizeof(SourceDesc) - sizeof(Oid));
	if (root == NULL)
	{
		src->not_source = true;
		MemoryContextSwitchTo(old);
		return src;
	}
	src->source_id = root->source_id;
	src->owner = root->owner;
	src->bad = root->bad;
	/* named as its shard, but pg_dist_shard no longer knows it: its rows are dead letters */
	if (shard_unknown && src->bad == NULL)
		src->bad = psprintf("%s is named as a shard of the source, and pg_dist_shard does not "
							"know it (split or dropped since?)",
							name);
	src->denied = root->denied;
	src->time_how = root->time_how;
	src->has_type_column = root->has_type_column;
	src->type_constant = root->type_constant;
	if (root->time.attnum != InvalidAttrNumber && !reader_clone(&src->time, &root->time, rel) &&
		!src->bad)
		src->bad =
			psprintf("event time column %s of %s %s is missing", root->time.name, what, name);
	if (src->has_type_column && root->type.attnum != InvalidAttrNumber &&
		!reader_clone(&src->type, &root->type, rel) && !src->bad)
		src->bad =
			psprintf("event type column %s of %s %s is missing", root->type.name, what, name);
	src->nids = root->nids;
	src->id_ns = root->id_ns;
	src->ids = palloc0(sizeof(ColumnReader) * Max(src->nids, 1));
	for (int i = 0; i < src->nids; i++)
		if (root->ids[i].attnum != InvalidAttrNumber &&
			!reader_clone(&src->ids[i], &root->ids[i], rel) && !src->bad)
			src->bad =
				psprintf("identifier column %s of %s %s is missing", root->ids[i].name, what, name);
	src->ntraits = root->ntraits;
	src->traits = palloc0(sizeof(TraitInput) * Max(src->ntraits, 1));
	for (int i = 0; i < src->ntraits; i++)
	{
		TraitInput *in = &src->traits[i];
		const TraitInput *rin = &root->traits[i];

		*in = *rin;
		if (rin->has_value && rin->value.attnum != InvalidAttrNumber &&
			!reader_clone(&in->value, &rin->value, rel) && !src->bad)
			src->bad = psprintf("column %s of %s %s, read by a trait, is missing", rin->value.name,
								what, name);
		if (rin->has_item && rin->item.attnum != InvalidAttrNumber &&
			!reader_clone(&in->item, &rin->item, rel) && !src->bad)
			src->bad = psprintf("column %s of %s %s, read by a trait, is missing", rin->item.name,
								what, name);
	}
	MemoryContextSwitchTo(old);
	return src;
}

/* The source whose events rel's rows are, or NULL. */
static SourceDesc *
find_source(DecoderState *st, Relation rel)
{
	Oid relid = RelationGetRelid(rel);
	SourceDesc *src = hash_search(st->sources, &relid, HASH_FIND, NULL);

	if (src == NULL)
		src = partition_source(st, rel);
	return src->not_source ? NULL : src;
}

static SourceDesc *
source_by_id(DecoderState *st, int32 source_id)
{
	HASH_SEQ_STATUS seq;
	SourceDesc *src;

	hash_seq_init(&seq, st->sources);
	while ((src = hash_seq_search(&seq)) != NULL)
		if (src->source_id == source_id)
		{
			hash_seq_term(&seq);
			return src;
		}
	return NULL;
}

static void
config_add_trait(DecoderState *st, Datum *v, bool *nulls, int *cap)
{
	int32 trait_id = DatumGetInt32(v[0]);
	SourceDesc *src = source_by_id(st, DatumGetInt32(v[1]));
	StreamTraitKind kind = stream_kind_from_name(TextDatumGetCString(v[2]));
	TraitInput *in;
	Relation rel;
	bool known = false;

	if (src == NULL || kind == 0)
		return;
	for (int i = 0; i < st->ntraitdefs; i++)
		known |= st->traitdefs[i].id == trait_id;
	if (!known)
	{
		StreamTrait *d;

		if (st->ntraitdefs == *cap)
		{
			*cap *= 2;
			st->traitdefs = repalloc(st->traitdefs, sizeof(StreamTrait) * *cap);
		}
		d = &st->traitdefs[st->ntraitdefs++];
		d->id = trait_id;
		d->kind = kind;
		d->n = nulls[3] ? 0 : DatumGetInt32(v[3]);
		d->half_life = nulls[4] ? 0 : DatumGetInt64(v[4]);
		d->gap = nulls[5] ? 0 : DatumGetInt64(v[5]);
		d->precision = nulls[6] ? 0 : DatumGetInt32(v[6]);
	}

	src->traits = src->ntraits == 0
					  ? palloc0(sizeof(TraitInput))
					  : repalloc(src->traits, sizeof(TraitInput) * (src->ntraits + 1));
	in = &src->traits[src->ntraits++];
	memset(in, 0, sizeof(TraitInput));
	in->trait_id = trait_id;
	if (!nulls[7])
	{
		Datum *types = array_elements(v[7], TEXTOID, &in->nevent_types);

		in->event_types = palloc(sizeof(text *) * Max(in->nevent_types, 1));
		for (int i = 0; i < in->nevent_types; i++)
			in->event_types[i] = DatumGetTextPCopy(types[i]);
		if (in->nevent_types == 0)
			in->nevent_types = -1; /* an empty filter passes nothing */
	}
	rel = RelationIdGetRelation(src->relid);
	if (!RelationIsValid(rel))
		return;
	if (!nulls[8])
	{
		in->has_value = true;
		if (!reader_init(&in->value, rel, NameStr(*DatumGetName(v[8])),
						 nulls[9] ? NULL : TextDatumGetCString(v[9])) &&
			!src->bad)
			src->bad = psprintf("column %s of %s, read by a trait, is missing or not json",
								NameStr(*DatumGetName(v[8])), RelationGetRelationName(rel));
	}
	if (!nulls[10])
	{
		in->has_item = true;
		if (!reader_init(&in->item, rel, NameStr(*DatumGetName(v[10])),
						 nulls[11] ? NULL : TextDatumGetCString(v[11])) &&
			!src->bad)
			src->bad = psprintf("column %s of %s, read by a trait, is missing or not json",
								NameStr(*DatumGetName(v[10])), RelationGetRelationName(rel));
	}
	RelationClose(rel);
}

/*
 * Scan a small table with the catalog (here: historic) snapshot.  It has
 * natts columns, or at least min_natts as an older version made it: the
 * columns it lacks are read as NULL.
 */
static void
config_scan(DecoderState *st, Oid relid, int natts, int min_natts,
			void (*row)(DecoderState *, Datum *, bool *, int *), int *cap)
{
	Relation rel = table_open(relid, AccessShareLock);
	int has = RelationGetDescr(rel)->natts;
	SysScanDesc scan;
	HeapTuple tup;
	Datum v[16];
	bool nulls[16];

	if (has > natts || has < min_natts)
		elog(ERROR,
			 "personalize: %s has %d columns, this library reads %d: is the extension up to date?",
			 RelationGetRelationName(rel), has, natts);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		heap_deform_tuple(tup, RelationGetDescr(rel), v, nulls);
		for (int i = has; i < natts; i++)
			v[i] = (Datum) 0, nulls[i] = true;
		row(st, v, nulls, cap);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * How stream_sources says who reads each source: its 8th column, owner
 * (0.6.0 on); or the 7 columns 0.4.0 and 0.5.0 made, read with each table's
 * owner as its source's (what the update to 0.6.0 records); or neither (a
 * column renamed or dropped by hand), when no one is known to read them,
 * rather than the table's owner.
 */
static SourcesShape
stream_sources_shape(Oid relid)
{
	Relation rel = RelationIdGetRelation(relid);
	TupleDesc desc;
	SourcesShape shape = SOURCES_UNKNOWN_OWNER;

	if (!RelationIsValid(rel))
		elog(ERROR, "personalize: could not open stream_sources");
	desc = RelationGetDescr(rel);
	if (desc->natts == 8)
	{
		Form_pg_attribute a = TupleDescAttr(desc, 7);

		if (!a->attisdropped && a->atttypid == OIDOID && strcmp(NameStr(a->attname), "owner") == 0)
			shape = SOURCES_WITH_OWNER;
	}
	else if (desc->natts == 7)
	{
		shape = SOURCES_BEFORE_OWNER;
		for (int i = 0; i < desc->natts; i++)
			if (TupleDescAttr(desc, i)->attisdropped)
				shape = SOURCES_UNKNOWN_OWNER;
	}
	RelationClose(rel);
	return shape;
}

static void
config_add_source_row(DecoderState *st, Datum *v, bool *nulls, int *cap)
{
	config_add_source(st, v, nulls);
}

/*
 * A source is read only while its owner may read every column the stream
 * takes from it and sees every row (security.c): otherwise each of its
 * events is a dead letter that says why, without its values.  Checked with
 * the catalogs as of the decoded transaction, so a REVOKE stops the events
 * committed after it.
 */
static void
config_check_access(DecoderState *st)
{
	HASH_SEQ_STATUS seq;
	SourceDesc *src;

	hash_seq_init(&seq, st->sources);
	while ((src = hash_seq_search(&seq)) != NULL)
	{
		int16 *attnums = palloc(sizeof(int16) * (2 + src->nids + 2 * src->ntraits));
		int n = 0;
		char *problem;

		if (src->denied)
			continue; /* read by nobody already (stream_sources_shape) */

		attnums[n++] = src->time.attnum;
		if (src->has_type_column)
			attnums[n++] = src->type.attnum;
		for (int i = 0; i < src->nids; i++)
			attnums[n++] = src->ids[i].attnum;
		for (int i = 0; i < src->ntraits; i++)
		{
			if (src->traits[i].has_value)
				attnums[n++] = src->traits[i].value.attnum;
			if (src->traits[i].has_item)
				attnums[n++] = src->traits[i].item.attnum;
		}
		problem = pz_source_read_problem(src->relid, src->owner, attnums, n);
		if (problem != NULL)
		{
			src->bad = psprintf("%s: the event is not read", problem);
			src->denied = true;
		}
	}
}

static int
traitdef_cmp(const void *a, const void *b)
{
	int32 x = ((const StreamTrait *) a)->id, y = ((const StreamTrait *) b)->id;

	return x < y ? -1 : x > y;
}

static void
config_load(DecoderState *st)
{
	MemoryContext old;
	HASHCTL info = {0};
	Oid nsp;
	int cap = 8;

	MemoryContextReset(st->config_cxt);
	old = MemoryContextSwitchTo(st->config_cxt);
	info.keysize = sizeof(Oid);
	info.entrysize = sizeof(SourceDesc);
	info.hcxt = st->config_cxt;
	st->sources = hash_create("personalize decoded sources", 16, &info,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	st->ntraitdefs = 0;
	st->traitdefs = palloc(sizeof(StreamTrait) * cap);
	st->stream_sources = st->stream_traits = InvalidOid;

	nsp = get_namespace_oid("personalize", true);
	if (OidIsValid(nsp))
	{
		st->stream_sources = get_relname_relid("stream_sources", nsp);
		st->stream_traits = get_relname_relid("stream_traits", nsp);
	}
	if (OidIsValid(st->stream_sources) && OidIsValid(st->stream_traits))
	{
		st->sources_shape = stream_sources_shape(st->stream_sources);
		config_scan(st, st->stream_sources, 8, 7, config_add_source_row, &cap);
		config_scan(st, st->stream_traits, 12, 12, config_add_trait, &cap);
		qsort(st->traitdefs, st->ntraitdefs, sizeof(StreamTrait), traitdef_cmp);
		config_check_access(st);
	}
	MemoryContextSwitchTo(old);
	st->valid = true;
	st->traits_sent = false;
}

/* ---- writing messages ---- */

static void
write_begin_if_needed(LogicalDecodingContext *ctx, DecoderState *st, ReorderBufferTXN *txn)
{
	if (st->txn_begun)
		return;
	OutputPluginPrepareWrite(ctx, false);
	pz_write_u8(ctx->out, 'B');
	pz_write_i64(ctx->out, (int64) txn->final_lsn);
	pz_write_i64(ctx->out, (int64) txn->end_lsn);
	pz_write_i64(ctx->out, txn->xact_time.commit_time);
	pz_write_varint(ctx->out, txn->xid);
	OutputPluginWrite(ctx, false);
	st->txn_begun = true;
}

static void
write_traits_if_needed(LogicalDecodingContext *ctx, DecoderState *st)
{
	if (st->traits_sent)
		return;
	OutputPluginPrepareWrite(ctx, false);
	pz_write_u8(ctx->out, 'T');
	pz_write_varint(ctx->out, st->ntraitdefs);
	for (int i = 0; i < st->ntraitdefs; i++)
	{
		StreamTrait *d = &st->traitdefs[i];

		pz_write_varint(ctx->out, d->id);
		pz_write_u8(ctx->out, d->kind);
		pz_write_varint(ctx->out, d->n);
		pz_write_i64(ctx->out, d->half_life);
		pz_write_i64(ctx->out, d->gap);
		pz_write_varint(ctx->out, d->precision);
	}
	OutputPluginWrite(ctx, false);
	st->traits_sent = true;
}

/* column r of a row as text (in the current context), or NULL */
static text *
read_text(const ColumnReader *r, HeapTuple tup, TupleDesc td)
{
	bool isnull;
	Datum d = heap_getattr(tup, r->attnum, td, &isnull);

	if (isnull)
		return NULL;
	switch (r->how)
	{
		case READ_AS_IS:
			return DatumGetTextPP(d);
		case READ_CAST_FUNC:
			return DatumGetTextPP(FunctionCall1((FmgrInfo *) &r->fn, d));
		case READ_OUTPUT:
			return cstring_to_text(OutputFunctionCall((FmgrInfo *) &r->fn, d));
		case READ_JSON_KEY:
			/* (a deep document is refused before it is parsed: write_event) */
		case READ_JSONB_KEY:
		{
			LOCAL_FCINFO(fcinfo, 2);
			Datum result;

			InitFunctionCallInfoData(*fcinfo, (FmgrInfo *) &r->fn, 2, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = d;
			fcinfo->args[0].isnull = false;
			fcinfo->args[1].value = PointerGetDatum(r->key);
			fcinfo->args[1].isnull = false;
			result = FunctionCallInvoke(fcinfo);
			return fcinfo->isnull ? NULL : DatumGetTextPP(result);
		}
	}
	return NULL;
}

static void
write_text(StringInfo out, text *t)
{
	pz_write_value(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* one "name": value pair of a bad row's JSON, each column once */
static void
json_field(StringInfo buf, List **done, const char *name, text *value)
{
	ListCell *lc;

	foreach (lc, *done)
		if (strcmp(lfirst(lc), name) == 0)
			return;
	if (*done != NIL)
		appendStringInfoString(buf, ", ");
	*done = lappend(*done, (char *) name);
	escape_json(buf, name);
	appendStringInfoString(buf, ": ");
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, text_to_cstring(value));
}

/* the mapped columns that can be read, as a JSON object's text */
static char *
row_json(SourceDesc *src, HeapTuple tup, TupleDesc td)
{
	StringInfoData buf;
	List *done = NIL;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	if (src->time.attnum != InvalidAttrNumber)
		json_field(&buf, &done, src->time.name, read_text(&src->time, tup, td));
	if (src->has_type_column && src->type.attnum != InvalidAttrNumber)
		json_field(&buf, &done, src->type.name, read_text(&src->type, tup, td));
	for (int i = 0; i < src->nids; i++)
		if (src->ids[i].attnum != InvalidAttrNumber)
			json_field(&buf, &done, src->ids[i].name, read_text(&src->ids[i], tup, td));
	for (int i = 0; i < src->ntraits; i++)
	{
		if (src->traits[i].has_value && src->traits[i].value.attnum != InvalidAttrNumber &&
			src->traits[i].value.key == NULL)
			json_field(&buf, &done, src->traits[i].value.name,
					   read_text(&src->traits[i].value, tup, td));
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* an 'X' message; with_values: the mapped columns' values go with it */
static void
write_bad_row(LogicalDecodingContext *ctx, SourceDesc *src, const char *reason, HeapTuple tup,
			  TupleDesc td, bool with_values)
{
	/* a row its owner may not read leaves no value behind */
	char *json = src->denied || !with_values ? "" : row_json(src, tup, td);

	OutputPluginPrepareWrite(ctx, true);
	pz_write_u8(ctx->out, 'X');
	pz_write_varint(ctx->out, src->source_id);
	pz_write_value(ctx->out, reason, strlen(reason));
	pz_write_value(ctx->out, json, strlen(json));
	OutputPluginWrite(ctx, true);
}

/*
 * The event time as timestamptz; false if NULL or not representable.  A
 * timestamp without time zone is read as UTC, a date as its midnight UTC,
 * whatever the TimeZone of the worker or of anyone: rebuild() reads them
 * the same way (_source_part_sql), so both paths give the same times.
 */
static bool
read_time(SourceDesc *src, HeapTuple tup, TupleDesc td, TimestampTz *ts, bool *isnull)
{
	Datum d = heap_getattr(tup, src->time.attnum, td, isnull);
	int overflow = 0;

	if (*isnull)
		return false;
	switch (src->time_how)
	{
		case TIME_TIMESTAMPTZ:
			*ts = DatumGetTimestampTz(d);
			break;
		case TIME_TIMESTAMP:
			/* a time without a zone is UTC (docs/profiles.md): the same microseconds */
			*ts = DatumGetTimestamp(d);
			break;
		case TIME_DATE:
			/* a date is its midnight, UTC */
			*ts = date2timestamp_opt_overflow(DatumGetDateADT(d), &overflow);
			break;
	}
	return overflow == 0;
}

static bool
type_passes(const TraitInput *in, text *type)
{
	if (in->nevent_types == 0)
		return true;
	if (type == NULL)
		return false;
	for (int i = 0; i < in->nevent_types; i++)
		if (VARSIZE_ANY_EXHDR(in->event_types[i]) == VARSIZE_ANY_EXHDR(type) &&
			memcmp(VARDATA_ANY(in->event_types[i]), VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)) ==
				0)
			return true;
	return false;
}

/* every json (not jsonb) column a trait reads a key of nests at most PZ_JSON_MAX_DEPTH deep */
static bool
json_depths_ok(SourceDesc *src, HeapTuple tup, TupleDesc td)
{
	for (int i = 0; i < src->ntraits; i++)
	{
		ColumnReader *readers[2] = {&src->traits[i].value, &src->traits[i].item};
		bool used[2] = {src->traits[i].has_value, src->traits[i].has_item};

		for (int k = 0; k < 2; k++)
		{
			bool isnull;
			Datum d;
			text *t;

			if (!used[k] || readers[k]->how != READ_JSON_KEY)
				continue;
			d = heap_getattr(tup, readers[k]->attnum, td, &isnull);
			if (isnull)
				continue;
			t = DatumGetTextPP(d);
			if (!pz_json_depth_ok(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)))
				return false;
		}
	}
	return true;
}

static void
write_event(LogicalDecodingContext *ctx, DecoderState *st, SourceDesc *src, HeapTuple tup,
			TupleDesc td)
{
	TimestampTz ts = 0;
	bool time_null;
	text *type = NULL;
	int nids = 0, ninputs = 0;
	text **ids = palloc(sizeof(text *) * Max(src->nids, 1));

	if (!read_time(src, tup, td, &ts, &time_null) && !time_null)
	{
		write_bad_row(ctx, src, "event time out of range for timestamptz", tup, td, true);
		return;
	}
	if (!json_depths_ok(src, tup, td))
	{
		/* the row is not read: no value of it goes out */
		write_bad_row(
			ctx, src,
			psprintf("a json value nests deeper than %d levels: it is not read", PZ_JSON_MAX_DEPTH),
			tup, td, false);
		return;
	}
	if (src->has_type_column)
		type = read_text(&src->type, tup, td);
	else
		type = src->type_constant;
	for (int i = 0; i < src->nids; i++)
		if ((ids[i] = read_text(&src->ids[i], tup, td)) != NULL)
			nids++;
	for (int i = 0; i < src->ntraits; i++)
		ninputs += type_passes(&src->traits[i], type);

	write_traits_if_needed(ctx, st);
	OutputPluginPrepareWrite(ctx, true);
	pz_write_u8(ctx->out, 'I');
	pz_write_varint(ctx->out, src->source_id);
	pz_write_u8(ctx->out, time_null ? 0 : 1);
	pz_write_i64(ctx->out, time_null ? 0 : ts);
	pz_write_varint(ctx->out, nids);
	for (int i = 0; i < src->nids; i++)
		if (ids[i] != NULL)
		{
			pz_write_varint(ctx->out, src->id_ns[i]);
			write_text(ctx->out, ids[i]);
		}
	pz_write_varint(ctx->out, ninputs);
	for (int i = 0; i < src->ntraits; i++)
	{
		TraitInput *in = &src->traits[i];
		text *value = NULL, *item = NULL;
		uint8 flags = 0;

		if (!type_passes(in, type))
			continue;
		if (in->has_value && (value = read_text(&in->value, tup, td)) != NULL)
			flags |= STREAM_HAS_VALUE;
		if (in->has_item && (item = read_text(&in->item, tup, td)) != NULL)
			flags |= STREAM_HAS_ITEM;
		/* a kind without a value (count(*)) counts every event: flag it present */
		if (!in->has_value)
			flags |= STREAM_HAS_VALUE;
		pz_write_varint(ctx->out, in->trait_id);
		pz_write_u8(ctx->out, flags);
		if (value != NULL)
			write_text(ctx->out, value);
		else if (flags & STREAM_HAS_VALUE)
			pz_write_value(ctx->out, "", 0);
		if (item != NULL)
			write_text(ctx->out, item);
	}
	OutputPluginWrite(ctx, true);
}

static void
write_source_message(LogicalDecodingContext *ctx, char what, SourceDesc *src)
{
	OutputPluginPrepareWrite(ctx, true);
	pz_write_u8(ctx->out, what);
	pz_write_varint(ctx->out, src->source_id);
	OutputPluginWrite(ctx, true);
}

/* ---- the callbacks ---- */

static void
decoder_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	DecoderState *st = MemoryContextAllocZero(ctx->context, sizeof(DecoderState));
	ListCell *lc;

	foreach (lc, ctx->output_plugin_options)
	{
		DefElem *elem = lfirst(lc);

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the personalize output plugin takes no option \"%s\"", elem->defname),
				 errhint("Call it without options.")));
	}
	st->config_cxt = AllocSetContextCreate(ctx->context, "personalize decoder configuration",
										   ALLOCSET_SMALL_SIZES);
	st->row_cxt =
		AllocSetContextCreate(ctx->context, "personalize decoder row", ALLOCSET_DEFAULT_SIZES);
	ctx->output_plugin_private = st;
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
	current_state = st;
	if (!role_callbacks_registered)
	{
		CacheRegisterSyscacheCallback(AUTHOID, decoder_role_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, decoder_role_callback, (Datum) 0);
		role_callbacks_registered = true;
	}
}

static void
decoder_shutdown(LogicalDecodingContext *ctx)
{
	if (current_state == ctx->output_plugin_private)
		current_state = NULL;
}

static void
decoder_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *st = ctx->output_plugin_private;

	/* 'B' is written with the transaction's first message: empty ones are skipped */
	st->txn_begun = false;
	st->origin_seen = InvalidRepOriginId;
	pz_decoder_replayed = true;
}

/*
 * The worker's own transactions (profile writes), and writes marked as not
 * to be replicated (Citus's shard copies among them), are not decoded.
 * Other origins are judged per change, in a transaction (decoder_change).
 */
static bool
decoder_filter_by_origin(LogicalDecodingContext *ctx, RepOriginId origin_id)
{
	return origin_id != InvalidRepOriginId &&
		   (origin_id == pz_decoder_skip_origin || origin_id == DoNotReplicateId);
}

/* whether a change with this origin is a copy of rows that exist elsewhere (citus.c) */
static bool
origin_copies(DecoderState *st, RepOriginId origin_id)
{
	if (origin_id == InvalidRepOriginId)
		return false;
	if (origin_id != st->origin_seen)
	{
		st->origin_copies = pz_citus_origin_is_copy(origin_id);
		st->origin_seen = origin_id;
	}
	return st->origin_copies;
}

static void
decoder_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	DecoderState *st = ctx->output_plugin_private;

	if (!st->txn_begun)
		return;
	OutputPluginPrepareWrite(ctx, true);
	pz_write_u8(ctx->out, 'C');
	OutputPluginWrite(ctx, true);
	st->txn_begun = false;
}

static void
decoder_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation relation,
			   ReorderBufferChange *change)
{
	DecoderState *st = ctx->output_plugin_private;
	Oid relid = RelationGetRelid(relation);
	SourceDesc *src;
	MemoryContext old;

	current_state = st;
	if (!st->valid)
		config_load(st);
	if (relid == st->stream_sources || relid == st->stream_traits)
	{
		/* the configuration changes from here on */
		st->valid = false;
		return;
	}
	src = find_source(st, relation);
	if (src == NULL || origin_copies(st, change->origin_id))
		return;

	old = MemoryContextSwitchTo(st->row_cxt);
	write_begin_if_needed(ctx, st, txn);
	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
		{
			HeapTuple tup = &change->data.tp.newtuple->tuple;

			if (src->bad)
				write_bad_row(ctx, src, src->bad, tup, RelationGetDescr(relation), true);
			else
				write_event(ctx, st, src, tup, RelationGetDescr(relation));
		}
		break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			write_source_message(ctx, 'U', src);
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			write_source_message(ctx, 'D', src);
			break;
		default:
			break;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->row_cxt);
}

static void
decoder_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
				 Relation relations[], ReorderBufferChange *change)
{
	DecoderState *st = ctx->output_plugin_private;

	current_state = st;
	if (!st->valid)
		config_load(st);
	for (int i = 0; i < nrelations; i++)
	{
		Oid relid = RelationGetRelid(relations[i]);
		SourceDesc *src;

		if (relid == st->stream_sources || relid == st->stream_traits)
		{
			st->valid = false;
			continue;
		}
		src = find_source(st, relations[i]);
		if (src == NULL || origin_copies(st, change->origin_id))
			continue;
		write_begin_if_needed(ctx, st, txn);
		write_source_message(ctx, 'R', src);
	}
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = decoder_startup;
	cb->begin_cb = decoder_begin;
	cb->change_cb = decoder_change;
	cb->truncate_cb = decoder_truncate;
	cb->commit_cb = decoder_commit;
	cb->shutdown_cb = decoder_shutdown;
	cb->filter_by_origin_cb = decoder_filter_by_origin;
}

/* ---- decode_message(bytea): one message as jsonb ---- */

static void
json_value(StringInfo buf, PzReader *r)
{
	int32 len;
	char *v = pz_read_value(r, &len);
	char *s = pnstrdup(v, len);

	escape_json(buf, s);
}

PG_FUNCTION_INFO_V1(pz_decode_message);
Datum
pz_decode_message(PG_FUNCTION_ARGS)
{
	bytea *msg = PG_GETARG_BYTEA_PP(0);
	PzReader r;
	StringInfoData buf;
	uint8 what;

	pz_reader_init(&r, VARDATA_ANY(msg), VARSIZE_ANY_EXHDR(msg), "personalize stream message");
	initStringInfo(&buf);
	what = pz_read_u8(&r);
	appendStringInfo(&buf, "{\"type\": \"%c\"", what);
	switch (what)
	{
		case 'B':
		{
			XLogRecPtr commit = pz_read_i64(&r), end = pz_read_i64(&r);
			TimestampTz t = pz_read_i64(&r);

			appendStringInfo(&buf, ", \"commit_lsn\": \"%X/%X\", \"end_lsn\": \"%X/%X\"",
							 LSN_FORMAT_ARGS(commit), LSN_FORMAT_ARGS(end));
			appendStringInfo(&buf, ", \"commit_time\": \"%s\", \"xid\": %llu",
							 timestamptz_to_str(t), (unsigned long long) pz_read_varint(&r));
		}
		break;
		case 'T':
		{
			uint64 n = pz_read_varint(&r);

			appendStringInfoString(&buf, ", \"traits\": [");
			for (uint64 i = 0; i < n; i++)
			{
				uint64 id = pz_read_varint(&r);
				uint8 kind = pz_read_u8(&r);
				uint64 size = pz_read_varint(&r);
				int64 hl = pz_read_i64(&r), gap = pz_read_i64(&r);
				uint64 p = pz_read_varint(&r);

				appendStringInfo(&buf,
								 "%s{\"id\": %llu, \"kind\": \"%s\", \"n\": %llu, "
								 "\"half_life_us\": " INT64_FORMAT ", \"gap_us\": " INT64_FORMAT
								 ", \"precision\": %llu}",
								 i ? ", " : "", (unsigned long long) id, stream_kind_name(kind),
								 (unsigned long long) size, hl, gap, (unsigned long long) p);
			}
			appendStringInfoChar(&buf, ']');
		}
		break;
		case 'I':
		{
			uint64 n;
			bool has_time;
			TimestampTz t;

			appendStringInfo(&buf, ", \"source\": %llu", (unsigned long long) pz_read_varint(&r));
			has_time = pz_read_u8(&r) != 0;
			t = pz_read_i64(&r);
			if (has_time)
				appendStringInfo(&buf, ", \"time\": \"%s\"", timestamptz_to_str(t));
			else
				appendStringInfoString(&buf, ", \"time\": null");
			n = pz_read_varint(&r);
			appendStringInfoString(&buf, ", \"identifiers\": [");
			for (uint64 i = 0; i < n; i++)
			{
				appendStringInfo(&buf, "%s[%llu, ", i ? ", " : "",
								 (unsigned long long) pz_read_varint(&r));
				json_value(&buf, &r);
				appendStringInfoChar(&buf, ']');
			}
			n = pz_read_varint(&r);
			appendStringInfoString(&buf, "], \"traits\": [");
			for (uint64 i = 0; i < n; i++)
			{
				uint64 id = pz_read_varint(&r);
				uint8 flags = pz_read_u8(&r);

				appendStringInfo(&buf, "%s{\"id\": %llu", i ? ", " : "", (unsigned long long) id);
				if (flags & STREAM_HAS_VALUE)
				{
					appendStringInfoString(&buf, ", \"value\": ");
					json_value(&buf, &r);
				}
				if (flags & STREAM_HAS_ITEM)
				{
					appendStringInfoString(&buf, ", \"item\": ");
					json_value(&buf, &r);
				}
				appendStringInfoChar(&buf, '}');
			}
			appendStringInfoChar(&buf, ']');
		}
		break;
		case 'X':
			appendStringInfo(
				&buf, ", \"source\": %llu, \"reason\": ", (unsigned long long) pz_read_varint(&r));
			json_value(&buf, &r);
			appendStringInfoString(&buf, ", \"event\": ");
			json_value(&buf, &r);
			break;
		case 'U':
		case 'D':
		case 'R':
			appendStringInfo(&buf, ", \"source\": %llu", (unsigned long long) pz_read_varint(&r));
			break;
		case 'C':
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("unknown personalize stream message type %d", what),
					 errhint("Pass the data column of pg_logical_slot_peek_binary_changes() on "
							 "a slot of the personalize plugin.")));
	}
	if (r.cur != r.end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("personalize stream message has %d bytes left over", (int) (r.end - r.cur)),
				 errhint("Pass one message: one row of pg_logical_slot_peek_binary_changes().")));
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
