/*
 * worker_batch.c
 *	  The streaming worker's batch: the output plugin's messages, as the
 *	  write callback of the worker's decoding context receives them, folded
 *	  into one delta per event key.
 *
 * The plugin (decoder.c) sends, in commit order, a transaction's begin, its
 * events, its rows that cannot be events (as dead letters already), its
 * ignored updates, deletes and truncates, and its commit; and, ahead of the
 * events that use them, the traits' parameters (read_traits).  An event's
 * key is its raw identifiers as the plugin sends them (normalized and
 * resolved only when the batch is applied, once per key): each event is
 * checked whole (the lengths of its identifiers and values, its time, that
 * it has an identifier) before anything of it is folded, and then each of
 * its trait inputs is folded at once into its key's delta with the trait
 * kind's own add function (fold_input).  So a batch holds one small profile
 * per distinct shopper, not its events.  What cannot be folded is a dead
 * letter, kept in the batch and inserted with it.
 *
 * Transactions that end at or before the origin's progress were applied
 * before a crash and are skipped.  A batch is full at a commit (it never
 * splits a transaction) once it holds personalize.worker_batch_size events
 * or personalize.worker_memory_limit of deltas; the loop (worker.c) then
 * applies it (worker_apply.c).
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "replication/logical.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "distinct.h"
#include "field.h"
#include "firstlast.h"
#include "metric.h"
#include "profile.h"
#include "recent.h"
#include "session.h"
#include "state.h"
#include "stream.h"
#include "top.h"
#include "windowed.h"
#include "worker_internal.h"

Batch pz_batch;
static MemoryContext config_cxt = NULL;
static StreamTrait *traits = NULL;
static char **trait_problems = NULL; /* per trait: why its parameters cannot be used, or NULL */
static int ntraits = 0;

static uint32
key_hash(const void *key, Size keysize)
{
	return ((const KeyRef *) key)->hash;
}

static int
key_match(const void *a, const void *b, Size keysize)
{
	const KeyRef *x = a, *y = b;

	return !(x->hash == y->hash && x->len == y->len && memcmp(x->bytes, y->bytes, x->len) == 0);
}

void
pz_batch_reset(void)
{
	HASHCTL info = {0};

	MemoryContextReset(pz_batch.cxt);
	info.keysize = sizeof(KeyRef);
	info.entrysize = sizeof(KeyEntry);
	info.hash = key_hash;
	info.match = key_match;
	info.hcxt = pz_batch.cxt;
	pz_batch.keys = hash_create("personalize batch keys", 1024, &info,
								HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	pz_batch.nkeys = 0;
	pz_batch.events = 0;
	pz_batch.txns = 0;
	pz_batch.dead = NIL;
	pz_batch.updates = pz_batch.deletes = pz_batch.truncates = 0;
	pz_batch.full = false;
}

void
pz_batch_init(void)
{
	pz_batch.cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize batch", ALLOCSET_DEFAULT_SIZES);
	pz_batch.event_cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize event", ALLOCSET_SMALL_SIZES);
	config_cxt =
		AllocSetContextCreate(TopMemoryContext, "personalize traits", ALLOCSET_SMALL_SIZES);
	pz_batch_reset();
}

static const StreamTrait *
trait_conf(int32 id)
{
	int lo = 0, hi = ntraits - 1;

	while (lo <= hi)
	{
		int mid = (lo + hi) / 2;

		if (traits[mid].id == id)
			return &traits[mid];
		if (traits[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

void
pz_batch_dead_letter(int32 source_id, bool applied, int64 events, const char *reason,
					 const char *msg, int32 msg_len, const char *json)
{
	MemoryContext old = MemoryContextSwitchTo(pz_batch.cxt);
	DeadLetter *d = palloc0(sizeof(DeadLetter));

	d->source_id = source_id;
	d->commit_lsn = pz_batch.txn_commit_lsn;
	d->commit_time = pz_batch.txn_commit_time;
	d->applied = applied;
	d->events = events;
	d->reason = pstrdup(reason);
	if (msg != NULL)
	{
		d->message = palloc(msg_len);
		memcpy(d->message, msg, msg_len);
		d->message_len = msg_len;
	}
	if (json != NULL)
		d->event_json = pstrdup(json);
	pz_batch.dead = lappend(pz_batch.dead, d);
	MemoryContextSwitchTo(old);
}

/*
 * Why a trait's parameters cannot build a state (a row of personalize.traits
 * written by hand past the checks of add_trait), or NULL.  Such a trait
 * skips every event, each a dead letter that says so; the others go on.
 */
static char *
trait_parameter_problem(const StreamTrait *c)
{
	switch (c->kind)
	{
		case STREAM_RECENT:
		case STREAM_TOP:
			if (c->n < 1 || c->n > (c->kind == STREAM_RECENT ? RECENT_MAX_N : TOP_MAX_N))
				return psprintf("n = %d is out of range", c->n);
			if (c->kind == STREAM_TOP &&
				(c->half_life <= 0 || c->half_life > PZ_MAX_INTERVAL_USECS))
				return psprintf("half_life of " INT64_FORMAT " us is out of range", c->half_life);
			break;
		case STREAM_DISTINCT:
			if (c->precision < DISTINCT_MIN_P || c->precision > DISTINCT_MAX_P)
				return psprintf("hll_precision = %d is out of range", c->precision);
			break;
		case STREAM_SESSION:
			if (c->gap <= 0 || c->gap > PZ_MAX_INTERVAL_USECS)
				return psprintf("gap of " INT64_FORMAT " us is out of range", c->gap);
			break;
		default:
			if (c->kind < 1 || c->kind > STREAM_KIND_MAX)
				return psprintf("kind %d is unknown", (int) c->kind);
			break;
	}
	return NULL;
}

static void
read_traits(PzReader *r)
{
	int n = (int) pz_read_varint(r);
	MemoryContext old;

	MemoryContextReset(config_cxt);
	old = MemoryContextSwitchTo(config_cxt);
	traits = palloc(sizeof(StreamTrait) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		traits[i].id = (int32) pz_read_varint(r);
		traits[i].kind = pz_read_u8(r);
		traits[i].n = (int32) pz_read_varint(r);
		traits[i].half_life = pz_read_i64(r);
		traits[i].gap = pz_read_i64(r);
		traits[i].precision = (int32) pz_read_varint(r);
	}
	trait_problems = palloc0(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		trait_problems[i] = trait_parameter_problem(&traits[i]);
	ntraits = n;
	MemoryContextSwitchTo(old);
}

static PzState *
new_state(const StreamTrait *c, TimestampTz ts, const char *val, int32 len)
{
	switch (c->kind)
	{
		case STREAM_COUNT:
			return (PzState *) metric_new(metric_op_from_name("count"));
		case STREAM_SUM:
			return (PzState *) metric_new(metric_op_from_name("sum"));
		case STREAM_MIN:
			return (PzState *) metric_new(metric_op_from_name("min"));
		case STREAM_MAX:
			return (PzState *) metric_new(metric_op_from_name("max"));
		case STREAM_FIRST:
			return (PzState *) timed_value_new(PZ_KIND_FIRST, val, len, ts);
		case STREAM_LAST:
			return (PzState *) timed_value_new(PZ_KIND_LAST, val, len, ts);
		case STREAM_RECENT:
			return (PzState *) recent_new(c->n);
		case STREAM_TOP:
			return (PzState *) top_new(c->n, c->half_life, ts);
		case STREAM_WINDOWED_COUNT:
		case STREAM_WINDOWED_SUM:
			return (PzState *) windowed_new(ts);
		case STREAM_DISTINCT:
			return (PzState *) distinct_new(c->precision);
		case STREAM_SESSION:
			return (PzState *) session_new(c->gap);
	}
	return NULL;
}

/* Fold one trait input of an event into the key's delta. */
static void
fold_input(KeyEntry *e, const StreamTrait *c, TimestampTz ts, uint8 flags, const char *val,
		   int32 len, const char *item, int32 item_len, const char *msg, int32 msg_len)
{
	PzState *s;
	bool created = false;
	Numeric num = NULL;
	double f = 0;

	if (!(flags & STREAM_HAS_VALUE) && c->kind != STREAM_SESSION)
		return; /* a NULL value: the aggregates skip it */
	if (trait_problems[c - traits] != NULL)
	{
		pz_batch_dead_letter(e->source_id, true, 1,
							 psprintf("trait %d cannot be built (%s): the trait skipped the event",
									  c->id, trait_problems[c - traits]),
							 msg, msg_len, NULL);
		return;
	}
	switch (c->kind)
	{
		case STREAM_SUM:
		case STREAM_MIN:
		case STREAM_MAX:
		case STREAM_WINDOWED_SUM:
		{
			/*
			 * The parsed number is scratch (the states copy what they keep):
			 * left in the batch's context, it took more room than the
			 * states, and so cut batches short.
			 */
			MemoryContext old = MemoryContextSwitchTo(pz_batch.event_cxt);
			bool ok = pz_field_number(val, len, c->kind == STREAM_WINDOWED_SUM ? NULL : &num,
									  c->kind == STREAM_WINDOWED_SUM ? &f : NULL);

			MemoryContextSwitchTo(old);
			if (!ok)
			{
				char *reason =
					psprintf("value \"%s\" of trait %d is not a number: the trait skipped it",
							 pnstrdup(val, Min(len, 64)), c->id);

				pz_batch_dead_letter(e->source_id, true, 1, reason, msg, msg_len, NULL);
				return;
			}
			break;
		}
		default:
			break;
	}
	s = profile_get(e->delta, c->id);
	if (s == NULL)
	{
		s = new_state(c, ts, val, len);
		created = true;
	}
	switch (c->kind)
	{
		case STREAM_COUNT:
			metric_add((MetricState *) s, NULL);
			break;
		case STREAM_SUM:
		case STREAM_MIN:
		case STREAM_MAX:
			metric_add((MetricState *) s, num);
			break;
		case STREAM_FIRST:
		case STREAM_LAST:
			if (!created)
				timed_value_add((TimedValueState *) s, val, len, ts);
			break;
		case STREAM_RECENT:
			recent_add((RecentState *) s, val, len, ts);
			break;
		case STREAM_TOP:
			top_add((TopState *) s, val, len, ts, 1.0);
			break;
		case STREAM_WINDOWED_COUNT:
			windowed_add((WindowedState *) s, ts, 0);
			break;
		case STREAM_WINDOWED_SUM:
			windowed_add((WindowedState *) s, ts, f);
			break;
		case STREAM_DISTINCT:
			distinct_add_hash((DistinctState *) s, distinct_hash(val, len));
			break;
		case STREAM_SESSION:
			session_add((SessionState *) s, ts, (flags & STREAM_HAS_VALUE) ? val : NULL,
						(flags & STREAM_HAS_VALUE) ? len : 0,
						(flags & STREAM_HAS_ITEM) ? item : NULL,
						(flags & STREAM_HAS_ITEM) ? item_len : 0);
			break;
	}
	if (created)
		profile_put(e->delta, c->id, s);
}

static void
read_event(PzReader *r, const char *msg, int32 msg_len)
{
	int32 source_id = (int32) pz_read_varint(r);
	bool has_time = pz_read_u8(r) != 0;
	TimestampTz ts = pz_read_i64(r);
	int nids = (int) pz_read_varint(r);
	const char *key_start = r->cur;
	KeyRef ref;
	KeyEntry *e;
	bool found;
	int ninputs;
	const char *inputs;
	MemoryContext old;

	for (int i = 0; i < nids; i++)
	{
		int32 len;

		(void) pz_read_varint(r);
		(void) pz_read_value(r, &len);
		if (len > pz_max_value_bytes)
		{
			pz_batch_dead_letter(source_id, false, 1,
								 psprintf("an identifier is %d bytes long, longer than "
										  "personalize.max_value_bytes (%d)",
										  len, pz_max_value_bytes),
								 msg, msg_len, NULL);
			return;
		}
	}
	ref.len = (int32) (r->cur - key_start);
	ref.bytes = key_start;
	inputs = r->cur;
	ninputs = (int) pz_read_varint(r);
	/* check the event before anything of it is folded */
	for (int i = 0; i < ninputs; i++)
	{
		uint8 flags;
		int32 len = 0;

		(void) pz_read_varint(r);
		flags = pz_read_u8(r);
		if (flags & STREAM_HAS_VALUE)
			(void) pz_read_value(r, &len);
		if (len <= pz_max_value_bytes && (flags & STREAM_HAS_ITEM))
			(void) pz_read_value(r, &len);
		if (len > pz_max_value_bytes)
		{
			pz_batch_dead_letter(
				source_id, false, 1,
				psprintf("a value is %d bytes long, longer than personalize.max_value_bytes "
						 "(%d)",
						 len, pz_max_value_bytes),
				msg, msg_len, NULL);
			return;
		}
	}
	if (!has_time)
	{
		pz_batch_dead_letter(source_id, false, 1, "the event has no time (its time column is NULL)",
							 msg, msg_len, NULL);
		return;
	}
	if (TIMESTAMP_NOT_FINITE(ts))
	{
		pz_batch_dead_letter(source_id, false, 1, "the event time is infinite", msg, msg_len, NULL);
		return;
	}
	if (nids == 0)
	{
		pz_batch_dead_letter(source_id, false, 1,
							 "the event has no identifier (every identifier column is NULL)", msg,
							 msg_len, NULL);
		return;
	}

	ref.hash = hash_bytes((const unsigned char *) ref.bytes, ref.len);
	old = MemoryContextSwitchTo(pz_batch.cxt);
	e = hash_search(pz_batch.keys, &ref, HASH_ENTER, &found);
	if (!found)
	{
		char *copy = palloc(ref.len);

		memcpy(copy, ref.bytes, ref.len);
		e->key.bytes = copy;
		e->order = pz_batch.nkeys++;
		e->nids = nids;
		e->events = 0;
		e->source_id = source_id;
		e->first_seen = e->last_seen = ts;
		e->delta = profile_new();
		e->commit_lsn = pz_batch.txn_commit_lsn;
		e->commit_time = pz_batch.txn_commit_time;
		e->first_message = palloc(msg_len);
		memcpy(e->first_message, msg, msg_len);
		e->first_message_len = msg_len;
	}
	e->events++;
	if (ts < e->first_seen)
		e->first_seen = ts;
	if (ts > e->last_seen)
		e->last_seen = ts;

	r->cur = inputs;
	ninputs = (int) pz_read_varint(r);
	for (int i = 0; i < ninputs; i++)
	{
		int32 trait_id = (int32) pz_read_varint(r);
		uint8 flags = pz_read_u8(r);
		const char *val = NULL, *item = NULL;
		int32 len = 0, item_len = 0;
		const StreamTrait *c;

		if (flags & STREAM_HAS_VALUE)
			val = pz_read_value(r, &len);
		if (flags & STREAM_HAS_ITEM)
			item = pz_read_value(r, &item_len);
		if ((c = trait_conf(trait_id)) != NULL)
			fold_input(e, c, ts, flags, val, len, item, item_len, msg, msg_len);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(pz_batch.event_cxt);
	pz_batch.events++;
}

/* the prepare_write and write callbacks of the worker's decoding context */
void
pz_batch_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
					   bool last_write)
{
	resetStringInfo(ctx->out);
}

void
pz_batch_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
	PzReader r;
	uint8 what;
	const char *msg = ctx->out->data;
	int32 len = ctx->out->len;

	pz_reader_init(&r, msg, len, "personalize stream message");
	what = pz_read_u8(&r);
	switch (what)
	{
		case 'B':
			pz_batch.txn_commit_lsn = pz_read_i64(&r);
			pz_batch.txn_end_lsn = pz_read_i64(&r);
			pz_batch.txn_commit_time = pz_read_i64(&r);
			pz_batch.in_txn = true;
			/* applied before a crash: the origin's progress says so */
			pz_batch.skip_txn = pz_batch.txn_end_lsn <= pz_worker_origin_progress;
			break;
		case 'T':
			read_traits(&r);
			break;
		case 'I':
			if (!pz_batch.skip_txn)
				read_event(&r, msg, len);
			break;
		case 'X':
			if (!pz_batch.skip_txn)
			{
				int32 source_id = (int32) pz_read_varint(&r);
				int32 rlen, jlen;
				const char *reason = pz_read_value(&r, &rlen);
				const char *json = pz_read_value(&r, &jlen);

				/* no JSON: a row its owner may not read (nothing of it is kept) */
				pz_batch_dead_letter(source_id, false, 1, pnstrdup(reason, rlen), NULL, 0,
									 jlen > 0 ? pnstrdup(json, jlen) : NULL);
			}
			break;
		case 'U':
			pz_batch.updates += !pz_batch.skip_txn;
			break;
		case 'D':
			pz_batch.deletes += !pz_batch.skip_txn;
			break;
		case 'R':
			pz_batch.truncates += !pz_batch.skip_txn;
			break;
		case 'C':
			if (!pz_batch.skip_txn)
			{
				pz_batch.txns++;
				pz_batch.last_end_lsn = pz_batch.txn_end_lsn;
				pz_batch.last_commit_time = pz_batch.txn_commit_time;
				if (pz_batch.events >= pz_batch_size ||
					MemoryContextMemAllocated(pz_batch.cxt, true) >= (Size) pz_memory_limit * 1024)
					pz_batch.full = true;
			}
			pz_batch.in_txn = false;
			pz_batch.skip_txn = false;
			break;
		default:
			elog(ERROR, "personalize worker: unknown message type %d from the output plugin", what);
	}
}
