/*
 * identity_graph.c
 *	  The identity graph's rules: look-up, linking, merges, refusals,
 *	  re-keying, attribution of an event, and split.
 *
 * Deterministic ids.  A profile is keyed by its best identifier: highest
 * namespace priority, then namespace name, then smallest value by bytes.
 * Its id is a 63-bit hash of that identifier.  When two profiles merge, the
 * one with the better key survives; when an identifier better than the key
 * joins, the profile is re-keyed (a new id, logged like a merge).  So the
 * partition and the ids depend only on the set of links, not on their
 * order, as long as no rule refuses a link.  (Should two keys ever hash to
 * the same id, the later one takes the next free id.)
 *
 * Merge rules.  A link that would leave a profile with more identifiers of
 * a namespace than its max_per_profile is refused, and so is any link
 * through a blocked value; refusals are recorded in refused_links (one row
 * per pair, counted).  Which of several conflicting links wins then depends
 * on arrival order: first come, first linked.
 *
 * Writers serialize on the graph's lock, taken once per transaction.  This
 * file decides; the tables are read and written by identity_store.c, the
 * backend's cache kept by identity_cache.c, and the SQL functions
 * (identity_sql.c) and the streaming worker call in here.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "storage/proc.h"
#include "utils/builtins.h"

#include "identity_internal.h"
#include "security.h"
#include "state.h"
#include "stream.h"

pz_profile_moved_hook_type pz_profile_moved_hook = NULL;
uint64 pz_identity_refusals = 0;

/* ---- identifiers and their order ---- */

/* best first: higher priority, then namespace name, then value bytes */
int
pz_identifier_rank_cmp(const PzIdentifier *a, const PzIdentifier *b)
{
	if (a->ns != b->ns)
	{
		if (a->ns->priority != b->ns->priority)
			return a->ns->priority > b->ns->priority ? -1 : 1;
		return strcmp(a->ns->name, b->ns->name);
	}
	return pz_value_cmp(a->value, a->len, b->value, b->len);
}

static int
identifier_qsort_cmp(const void *a, const void *b)
{
	return pz_identifier_rank_cmp(a, b);
}

static bool
identifier_eq(const PzIdentifier *a, const PzIdentifier *b)
{
	return a->ns == b->ns && pz_value_eq(a->value, a->len, b->value, b->len);
}

/* the id a profile keyed by this identifier gets (before collisions) */
int64
pz_identifier_profile_id(const PzIdentifier *id)
{
	StringInfoData buf;
	uint64 h;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, id->ns->name, strlen(id->ns->name) + 1); /* with its NUL */
	appendBinaryStringInfo(&buf, id->value, id->len);
	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len,
							UINT64CONST(0x7065727375616465));
	pfree(buf.data);
	h &= UINT64CONST(0x7FFFFFFFFFFFFFFF);
	return h == 0 ? 1 : (int64) h;
}

/* ---- the graph's lock ---- */

/* Writers serialize on one lock per database (security.c), once per transaction. */
static LocalTransactionId locked_lxid = InvalidLocalTransactionId;

static void
identity_lock(void)
{
	if (locked_lxid == MyProc->lxid)
		return;
	if (IsolationUsesXactSnapshot())
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("the identity graph is changed only in READ COMMITTED transactions"),
						errdetail("A writer must see the links committed while it waited for the "
								  "graph's lock."),
						errhint("Run identify, link, split and forget outside REPEATABLE READ and "
								"SERIALIZABLE transactions.")));
	/* a lock of the extension's own, which no role can take and hold from SQL */
	pz_lock(PZ_LOCK_IDENTITY_GRAPH);
	locked_lxid = MyProc->lxid;
}

/* an aborted subtransaction released the lock taken inside it: take it again */
void
pz_graph_lock_forget(void)
{
	locked_lxid = InvalidLocalTransactionId;
}

/*
 * Start changing the graph: take its lock, then check the cache (a writer
 * we waited for may have changed the graph), then open the tables.
 */
void
pz_graph_write_begin(void)
{
	identity_lock();
	pz_cache_writing_graph();
	pz_cache_check();
	pz_store_open(true);
}

/*
 * For a writer about to attribute many events (the streaming worker): take
 * the graph's lock for the transaction and check the cache, so that cached
 * ids read from now on are the graph's latest until commit.
 */
void
pz_identity_lock_for_writing(void)
{
	identity_lock();
	pz_cache_writing_graph();
	pz_cache_check();
}

/* ---- look-up ---- */

/*
 * The profile of an identifier: the cache, else the table.  What a reader
 * found is cached only if no change its snapshot does not see is pending
 * (pz_cache_may_keep).
 */
int64
pz_identity_lookup(const PzIdentifier *id)
{
	int64 pid;

	pid = pz_cache_get(id);
	if (pid != 0)
		return pid;
	pid = pz_store_lookup(id);
	if (pid != 0 && pz_cache_may_keep(pz_store_reads_snapshot()))
		pz_cache_put(id, pid);
	return pid;
}

/* ---- profiles ---- */

static void
identity_insert(const PzIdentifier *id, int64 profile_id)
{
	pz_store_insert_identity(id, profile_id);
	pz_cache_put(id, profile_id);
}

/* the key identifier of a profile, into *key (value palloc'd) */
static void
profile_key(int64 profile_id, PzIdentifier *key)
{
	if (pz_key_cache_get(profile_id, key))
		return;
	pz_store_profile_key(profile_id, key);
	pz_key_cache_put(profile_id, key);
}

/* a free profile id for a profile keyed by key (other than except) */
static int64
free_profile_id(const PzIdentifier *key, int64 except)
{
	int64 pid = pz_identifier_profile_id(key);

	while (pid == except || pz_store_profile_exists(pid))
		pid = pid == PG_INT64_MAX ? 1 : pid + 1;
	return pid;
}

/* a new profile holding just this identifier */
static int64
profile_create(const PzIdentifier *id)
{
	int64 pid = pz_identifier_profile_id(id);

	while (pz_store_profile_exists(pid))
		pid = pid == PG_INT64_MAX ? 1 : pid + 1; /* taken by another key */
	pz_store_insert_profile(pid, id);
	pz_store_insert_identity(id, pid);
	pz_cache_put(id, pid);
	pz_key_cache_put(pid, id);
	return pid;
}

/* point every identifier of from at into, and keep the cache in step */
static void
identities_move(int64 from, int64 into)
{
	pz_store_move_identities(from, into);
}

static void
log_change(const char *action, int64 from, int64 into, const PzIdentifier *a, const PzIdentifier *b)
{
	pz_store_log(action, from, into, a, b);
	/* a merged or re-keyed profile takes the worker's pending deltas along */
	if (pz_profile_moved_hook != NULL && strcmp(action, "split") != 0)
		pz_profile_moved_hook(from, into);
}

/* record a link refused by a rule (rule_ns: the namespace whose rule refused it) */
void
pz_graph_refuse(const char *rule, const PzNamespace *rule_ns, const PzIdentifier *a,
				const PzIdentifier *b, int64 profile_a, int64 profile_b)
{
	pz_store_refuse(rule, rule_ns, a, b, profile_a, profile_b);
	pz_identity_refusals++;
}

/* ---- the rules ---- */

/*
 * The rules run over a graph: the tables (below), or a rebuild's batch held
 * in memory (identity_batch.c), so that both decide alike.  A profile is a
 * handle the graph gives out (the tables: its id).
 */

/*
 * The first namespace whose limit profiles p and q would break together,
 * or NULL.  A limit counts identifiers; p and q share none (an identifier
 * has one profile).
 */
static const PzNamespace *
merge_breaks_limit(const PzGraph *g, int64 p, int64 q)
{
	int n = pz_namespace_count();

	if (pz_namespace_limited_count() == 0)
		return NULL;
	for (int i = 0; i < n; i++)
	{
		const PzNamespace *ns = pz_namespace_at(i);

		if (ns->max_per_profile > 0 &&
			g->count(g->arg, p, ns) + g->count(g->arg, q, ns) > ns->max_per_profile)
			return ns;
	}
	return NULL;
}

/*
 * Attribute an event carrying identifiers ids (usable, n >= 1) to a
 * profile of graph g: the best identifier's profile, created if new, and
 * every other identifier linked to it where the rules allow: a new one is
 * attached (the profile re-keyed if it is better than the key), a known
 * one's profile merged, unless a namespace's limit refuses it.  ids are
 * sorted best first and deduplicated in place.  Returns the profile;
 * *linked is false if a link was refused.
 */
int64
pz_graph_attribute(const PzGraph *g, PzIdentifier *ids, int *nids, bool *linked)
{
	int64 p;
	int m = 0, n = *nids;

	Assert(n >= 1);
	/* best first, duplicates out */
	qsort(ids, n, sizeof(PzIdentifier), identifier_qsort_cmp);
	for (int i = 0; i < n; i++)
		if (m == 0 || !identifier_eq(&ids[m - 1], &ids[i]))
			ids[m++] = ids[i];
	*nids = n = m;

	*linked = true;
	p = g->lookup(g->arg, &ids[0]);
	if (p == 0)
		p = g->create(g->arg, &ids[0]);

	for (int i = 1; i < n; i++)
	{
		const PzIdentifier *x = &ids[i];
		int64 q = g->lookup(g->arg, x);
		const PzNamespace *broken;

		if (q == p)
			continue;
		if (q == 0)
		{
			if (x->ns->max_per_profile > 0 && g->count(g->arg, p, x->ns) >= x->ns->max_per_profile)
			{
				g->refuse(g->arg, "limit", x->ns, &ids[0], x, p, 0);
				(void) g->create(g->arg, x);
				*linked = false;
				continue;
			}
			p = g->attach(g->arg, p, x);
			continue;
		}
		broken = merge_breaks_limit(g, p, q);
		if (broken != NULL)
		{
			g->refuse(g->arg, "limit", broken, &ids[0], x, p, q);
			*linked = false;
			continue;
		}
		p = g->merge(g->arg, p, q, &ids[0], x);
	}
	return p;
}

/* ---- the graph in the tables ---- */

/*
 * Merge profiles p and q, which the link a-b joins: the one with the better
 * key survives; the other's identifiers and trait states move into it.
 */
static int64
profiles_merge(int64 p, int64 q, const PzIdentifier *a, const PzIdentifier *b)
{
	PzIdentifier kp, kq;
	int64 into, from;

	profile_key(p, &kp);
	profile_key(q, &kq);
	if (pz_identifier_rank_cmp(&kq, &kp) < 0)
		into = q, from = p;
	else
		into = p, from = q;
	identities_move(from, into);
	pz_store_merge_profiles(from, into);
	pz_key_cache_forget(from);
	log_change("merge", from, into, a, b);
	return into;
}

/*
 * Re-key profile p by key: a new id, from key's hash, and every identifier
 * moved to it; logged like a merge, with other (the key it had, or the
 * identifier a split takes away).
 */
static int64
profile_rekey(int64 p, const PzIdentifier *key, const PzIdentifier *other)
{
	int64 np = free_profile_id(key, p);

	pz_store_rekey_profile(p, np, key);
	identities_move(p, np);
	log_change("rekey", p, np, key, other);
	pz_key_cache_forget(p);
	pz_key_cache_put(np, key);
	return np;
}

/* Add a new identifier to profile p; re-key p if it is better than p's key. */
static int64
profile_attach(int64 p, const PzIdentifier *id)
{
	PzIdentifier key;

	identity_insert(id, p);
	profile_key(p, &key);
	if (pz_identifier_rank_cmp(id, &key) >= 0)
		return p;
	return profile_rekey(p, id, &key);
}

static int64
tables_lookup(void *arg, const PzIdentifier *id)
{
	return pz_identity_lookup(id);
}

static int64
tables_create(void *arg, const PzIdentifier *id)
{
	return profile_create(id);
}

static int64
tables_attach(void *arg, int64 p, const PzIdentifier *id)
{
	return profile_attach(p, id);
}

static int64
tables_count(void *arg, int64 p, const PzNamespace *ns)
{
	return pz_store_count_in_namespace(p, ns);
}

static int64
tables_merge(void *arg, int64 p, int64 q, const PzIdentifier *a, const PzIdentifier *b)
{
	return profiles_merge(p, q, a, b);
}

static void
tables_refuse(void *arg, const char *rule, const PzNamespace *rule_ns, const PzIdentifier *a,
			  const PzIdentifier *b, int64 p, int64 q)
{
	pz_graph_refuse(rule, rule_ns, a, b, p, q);
}

static const PzGraph graph_tables = {tables_lookup, tables_create, tables_attach, tables_count,
									 tables_merge,  tables_refuse, NULL};

int64
pz_identity_attribute(PzIdentifier *ids, int n, bool *linked)
{
	int64 p;

	pz_graph_write_begin();
	p = pz_graph_attribute(&graph_tables, ids, &n, linked);
	pz_store_close();
	return p;
}

/* ---- split ---- */

/*
 * split(): move an identifier into a profile of its own.  If it was its
 * profile's key, the rest is re-keyed first (its id is the hash of the
 * key, which the split identifier takes along).  The trait states of both
 * profiles mixed both, so both are marked rebuild_pending.  Returns the new
 * profile; or, with *alone set, the profile the identifier already has to
 * itself.  The caller is connected to SPI; the store is closed on return.
 */
int64
pz_graph_split(const PzIdentifier *id, bool *alone)
{
	PzIdentifier key;
	int64 p, np;
	Datum values[4];
	int ret;

	*alone = false;
	pz_graph_write_begin();
	p = pz_identity_lookup(id);
	if (p == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("split: %s \"%s\" is not in the identity graph", id->ns->name, id->value),
				 errhint("personalize.resolve() tells whether an identifier is known.")));

	/* the key first: on a cache miss it runs a query, replacing SPI_tuptable */
	profile_key(p, &key);
	values[0] = Int64GetDatum(p);
	ret = SPI_execute_with_args("SELECT namespace_id, value FROM personalize.identities "
								"WHERE profile_id = $1",
								1, (Oid[]){INT8OID}, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "split: could not read the identifiers of profile %lld", (long long) p);
	if (SPI_processed == 1)
	{
		pz_store_close();
		*alone = true;
		return p;
	}

	if (identifier_eq(id, &key))
	{
		/* the best of the others becomes the key of what remains */
		SPITupleTable *tt = SPI_tuptable;
		uint64 nrows = SPI_processed;
		PzIdentifier best = {0};

		for (uint64 i = 0; i < nrows; i++)
		{
			bool isnull;
			PzIdentifier other;

			other.ns = pz_namespace_by_id(
				DatumGetInt32(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull)));
			other.value = TextDatumGetCString(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
			other.len = strlen(other.value);
			if (identifier_eq(&other, id))
				continue;
			if (best.ns == NULL || pz_identifier_rank_cmp(&other, &best) < 0)
				best = other;
		}
		p = profile_rekey(p, &best, id);
	}

	/* a profile of its own: insert the row, then move the identifier */
	np = free_profile_id(id, 0);
	pz_store_insert_profile(np, id);
	values[0] = Int64GetDatum(np);
	values[1] = Int32GetDatum(id->ns->id);
	values[2] = PointerGetDatum(cstring_to_text_with_len(id->value, id->len));
	pz_cache_own_statements(true);
	ret = SPI_execute_with_args("UPDATE personalize.identities SET profile_id = $1 "
								"WHERE namespace_id = $2 AND value = $3",
								3, (Oid[]){INT8OID, INT4OID, TEXTOID}, values, NULL, false, 0);
	pz_cache_own_statements(false);
	if (ret != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "split: could not move %s \"%s\"", id->ns->name, id->value);
	pz_cache_put(id, np);
	pz_key_cache_put(np, id);

	values[0] = Int64GetDatum(p);
	values[1] = Int64GetDatum(np);
	ret = SPI_execute_with_args("UPDATE personalize.profiles SET rebuild_pending = true, "
								"updated_at = now() WHERE id IN ($1, $2)",
								2, (Oid[]){INT8OID, INT8OID}, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "split: could not mark profiles %lld and %lld", (long long) p, (long long) np);
	log_change("split", p, np, id, NULL);
	pz_store_close();
	return np;
}
