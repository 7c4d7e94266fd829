/*
 * stream.h
 *	  The messages of personalize's logical decoding output plugin
 *	  (decoder.c), read by the streaming worker (worker_batch.c) and by
 *	  decode_message() for tests.
 *
 * The plugin decodes only registered sources and only their mapped columns,
 * as stream_sources and stream_traits say as of each decoded transaction
 * (both are user_catalog_tables).  Each message is binary, written with the
 * state writers of state.h (varints, big-endian integers, length-prefixed
 * bytes), so the worker reads it without text parsing.  The first byte
 * says what it is:
 *
 *	'B' begin     i64 commit LSN, i64 end LSN, i64 commit time, varint xid
 *	'T' traits    varint count, then per trait: varint id, u8 kind
 *	              (StreamTraitKind), varint n, i64 half-life us, i64 gap us,
 *	              varint HLL precision.  Sent before the first event after
 *	              the plugin (re)read its configuration; events name traits
 *	              of the last 'T'.
 *	'I' event     varint source id, u8 has time, i64 event time (usecs),
 *	              varint identifiers: (varint namespace id, value) each, NULL
 *	              columns left out; varint trait inputs: (varint trait id,
 *	              u8 flags STREAM_HAS_VALUE | STREAM_HAS_ITEM, value if
 *	              flagged, item if flagged) each, only for traits whose
 *	              event-type filter the event passes
 *	'X' bad row   varint source id, text reason, text event (JSON of the
 *	              mapped columns; empty when the source's owner may not read
 *	              the row): a row the plugin could not read (a mapped column
 *	              dropped, a time it cannot convert, a right revoked)
 *	'U' update, 'D' delete     varint source id
 *	'R' truncate  varint source id
 *	'C' commit    (no body)
 *
 * "value" and "text" are pz_write_value: varint length, then the bytes.
 * Values are what `column::text` (or `column ->> key`) gives in SQL, as the
 * rebuild reads them, so streaming and rebuild fold the same values.
 */
#ifndef PERSONALIZE_STREAM_H
#define PERSONALIZE_STREAM_H

#include "postgres.h"

#include "fmgr.h"

typedef enum StreamTraitKind
{
	STREAM_COUNT = 1,
	STREAM_SUM,
	STREAM_MIN,
	STREAM_MAX,
	STREAM_FIRST,
	STREAM_LAST,
	STREAM_RECENT,
	STREAM_TOP,
	STREAM_WINDOWED_COUNT,
	STREAM_WINDOWED_SUM,
	STREAM_DISTINCT,
	STREAM_SESSION
} StreamTraitKind;

#define STREAM_KIND_MAX STREAM_SESSION

/* a trait as the 'T' message carries it */
typedef struct StreamTrait
{
	int32 id;
	StreamTraitKind kind;
	int32 n;         /* recent, top */
	int64 half_life; /* top, microseconds */
	int64 gap;       /* session, microseconds */
	int32 precision; /* distinct */
} StreamTrait;

#define STREAM_HAS_VALUE 0x01
#define STREAM_HAS_ITEM  0x02

/* the kind of a trait by its name in personalize.traits, 0 if unknown */
extern StreamTraitKind stream_kind_from_name(const char *name);
extern const char *stream_kind_name(StreamTraitKind kind);

/* decoder.c: the plugin's entry point is _PG_output_plugin_init */
extern Datum pz_decode_message(PG_FUNCTION_ARGS);

/* decoder.c: a relcache invalidation (from personalize.c): the plugin reads its configuration again */
extern void pz_decoder_relcache_changed(Oid relid);

/* worker.c: registration and shared memory, called from _PG_init */
extern void pz_worker_init(void);
extern void pz_worker_shmem_request(void);
extern void pz_worker_shmem_startup(void);

/*
 * identity_graph.c calls this (when set) for every profile id that changes
 * within the current transaction: a merge of from into into, or a re-key of
 * from to into.  The worker moves the batch's pending deltas along.
 */
typedef void (*pz_profile_moved_hook_type)(int64 from, int64 into);
extern pz_profile_moved_hook_type pz_profile_moved_hook;

#endif /* PERSONALIZE_STREAM_H */
