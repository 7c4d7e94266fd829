/*
 * identity_batch.c
 *	  A rebuild's new identifiers resolved in memory, in one pass, by the
 *	  same rules as one identify() call after another.
 *
 * A rebuild into a graph that does not know its events' identifiers used
 * to call identify() once per event key: about 25 µs each, half of a
 * rebuild into an empty graph (docs/benchmarks.md).  Here the keys run
 * through the rules of identity_graph.c (pz_graph_attribute) over a graph
 * held in memory: a union-find over the new identifiers, each profile (a
 * root) with its id, key identifier and its count of identifiers per
 * limited namespace.  Profile ids, re-keys, merges and refusals come out
 * as the tables would have made them, in the same order: the rules are the
 * same code, the ids the same hash with the same step past an id taken
 * (by a profile of the batch or of the tables).  The merge log gets the
 * same rows in the same order, the refused links the same rows (a pair
 * refused n times is written once with n more times: its serial id is the
 * only difference).  Into an empty graph the batch does not look into the
 * tables at all.
 *
 * The batch takes a key only if every identifier it carries is new to the
 * tables (or already the batch's).  A key that reaches into the tables
 * makes the batch write what it holds, and goes through the tables'
 * graph, as identify() does; so do the keys after it that reach into what
 * was written.  The batch also writes when its memory passes
 * maintenance_work_mem.  Writing adds rows only: profiles, identities, the
 * merge log, the refused links; profiles merged or re-keyed within the
 * batch were never written.
 *
 * One difference from identify() after identify(): a merge of two profiles
 * that the batch made evaluates no audience (they hold no states yet); the
 * rebuild evaluates every audience when its profiles are written.
 *
 * The caller holds the graph's lock (pz_graph_write_begin) and keeps the
 * store open while it feeds keys; see pz_identify_keys (identity_sql.c).
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "identity_internal.h"
#include "namespace.h"

typedef struct BatchNode
{
	PzIdentifier id; /* value in the batch's context */
	int32 parent;    /* union-find: itself at a root */
	/* at a root, the profile: */
	int32 size;
	int32 key; /* the node of its key identifier */
	int64 pid;
} BatchNode;

/* a hash-table key: an identifier by namespace and bytes */
typedef struct NodeKey
{
	int32 ns;
	int32 len;
	const char *value;
} NodeKey;

typedef struct NodeEntry
{
	NodeKey key;
	int32 node;
} NodeEntry;

typedef struct BatchLog
{
	const char *action;
	int64 from, into;
	PzIdentifier a, b;
} BatchLog;

/* a pair's refusals are gathered: written in one statement, in first-refused order */
typedef struct RefusalKey
{
	NodeKey a, b;
} RefusalKey;

typedef struct RefusalEntry
{
	RefusalKey key;
	int index; /* into refusals */
} RefusalEntry;

struct PzIdBatch
{
	MemoryContext cxt; /* everything below; reset when written */
	HTAB *nodes_by_id;
	HTAB *live; /* profile ids the batch holds */
	BatchNode *nodes;
	int32 nnodes, nodes_cap;
	int nlimited;      /* namespaces with a limit, */
	int32 *limited_ns; /* their ids, */
	int32 *counts;     /* and per node (read at roots) the identifiers of each */
	List *log;         /* of BatchLog */
	HTAB *refused;     /* pair -> its gathered refusals */
	PzStoredRefusal *refusals;
	int nrefusals, refusals_cap;
	bool graph_empty; /* the tables hold no identifier and no profile: no need to look */
	PzGraph graph;
};

static uint32
node_key_hash(const void *key, Size keysize)
{
	const NodeKey *k = key;

	return hash_combine(murmurhash32((uint32) k->ns),
						hash_bytes((const unsigned char *) k->value, k->len));
}

static int
node_key_match(const void *a, const void *b, Size keysize)
{
	const NodeKey *x = a, *y = b;

	return !(x->ns == y->ns && x->len == y->len && memcmp(x->value, y->value, x->len) == 0);
}

static uint32
refusal_key_hash(const void *key, Size keysize)
{
	const RefusalKey *k = key;

	return hash_combine(node_key_hash(&k->a, sizeof(NodeKey)),
						node_key_hash(&k->b, sizeof(NodeKey)));
}

static int
refusal_key_match(const void *x, const void *y, Size keysize)
{
	const RefusalKey *a = x, *b = y;

	return node_key_match(&a->a, &b->a, sizeof(NodeKey)) ||
		   node_key_match(&a->b, &b->b, sizeof(NodeKey));
}

static void
batch_tables(PzIdBatch *b)
{
	HASHCTL ctl = {0};
	MemoryContext old = MemoryContextSwitchTo(b->cxt);
	int n = pz_namespace_count();

	ctl.keysize = sizeof(NodeKey);
	ctl.entrysize = sizeof(NodeEntry);
	ctl.hash = node_key_hash;
	ctl.match = node_key_match;
	ctl.hcxt = b->cxt;
	b->nodes_by_id = hash_create("personalize identity batch", 1024, &ctl,
								 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	ctl.hcxt = b->cxt;
	b->live = hash_create("personalize identity batch ids", 1024, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	b->nodes_cap = 1024;
	b->nnodes = 0;
	b->nodes = palloc(sizeof(BatchNode) * b->nodes_cap);
	b->nlimited = 0;
	b->limited_ns = palloc(sizeof(int32) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (pz_namespace_at(i)->max_per_profile > 0)
			b->limited_ns[b->nlimited++] = pz_namespace_at(i)->id;
	b->counts = b->nlimited > 0 ? palloc(sizeof(int32) * b->nodes_cap * b->nlimited) : NULL;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(RefusalKey);
	ctl.entrysize = sizeof(RefusalEntry);
	ctl.hash = refusal_key_hash;
	ctl.match = refusal_key_match;
	ctl.hcxt = b->cxt;
	b->refused = hash_create("personalize identity batch refusals", 256, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	b->log = NIL;
	b->refusals_cap = 256;
	b->nrefusals = 0;
	b->refusals = palloc(sizeof(PzStoredRefusal) * b->refusals_cap);
	MemoryContextSwitchTo(old);
}

/* ---- the graph in memory ---- */

static int32
find_root(PzIdBatch *b, int32 i)
{
	int32 r = i;

	while (b->nodes[r].parent != r)
		r = b->nodes[r].parent;
	while (b->nodes[i].parent != r)
	{
		int32 next = b->nodes[i].parent;

		b->nodes[i].parent = r;
		i = next;
	}
	return r;
}

/* handles: a root's index + 1 */
#define HANDLE(root) ((int64) (root) + 1)
#define ROOT(handle) ((int32) ((handle) -1))

static int
limited_slot(PzIdBatch *b, const PzNamespace *ns)
{
	for (int i = 0; i < b->nlimited; i++)
		if (b->limited_ns[i] == ns->id)
			return i;
	return -1;
}

static PzIdentifier
identifier_copy(PzIdBatch *b, const PzIdentifier *id)
{
	PzIdentifier c = *id;

	c.value = MemoryContextAlloc(b->cxt, id->len + 1);
	memcpy(c.value, id->value, id->len);
	c.value[id->len] = '\0';
	return c;
}

static bool
pid_taken(PzIdBatch *b, int64 pid)
{
	return hash_search(b->live, &pid, HASH_FIND, NULL) != NULL ||
		   (!b->graph_empty && pz_store_profile_exists(pid));
}

/* a free id for a profile keyed by key, as free_profile_id() finds one */
static int64
batch_profile_id(PzIdBatch *b, const PzIdentifier *key)
{
	int64 pid = pz_identifier_profile_id(key);

	while (pid_taken(b, pid))
		pid = pid == PG_INT64_MAX ? 1 : pid + 1;
	(void) hash_search(b->live, &pid, HASH_ENTER, NULL);
	return pid;
}

static void
pid_gone(PzIdBatch *b, int64 pid)
{
	(void) hash_search(b->live, &pid, HASH_REMOVE, NULL);
}

/* a node for a new identifier, a root of its own */
static int32
node_add(PzIdBatch *b, const PzIdentifier *id)
{
	NodeKey k;
	NodeEntry *e;
	bool found;
	BatchNode *n;
	int32 i;

	if (b->nnodes == b->nodes_cap)
	{
		b->nodes_cap *= 2;
		b->nodes = repalloc_huge(b->nodes, sizeof(BatchNode) * b->nodes_cap);
		if (b->counts != NULL)
			b->counts = repalloc_huge(b->counts, sizeof(int32) * b->nodes_cap * b->nlimited);
	}
	i = b->nnodes++;
	n = &b->nodes[i];
	n->id = identifier_copy(b, id);
	n->parent = i;
	n->size = 1;
	n->key = i;
	n->pid = 0;
	if (b->nlimited > 0)
	{
		int slot = limited_slot(b, id->ns);

		memset(&b->counts[i * b->nlimited], 0, sizeof(int32) * b->nlimited);
		if (slot >= 0)
			b->counts[i * b->nlimited + slot] = 1;
	}
	k.ns = id->ns->id;
	k.len = id->len;
	k.value = n->id.value;
	e = hash_search(b->nodes_by_id, &k, HASH_ENTER, &found);
	Assert(!found);
	e->node = i;
	return i;
}

static int32
node_find(PzIdBatch *b, const PzIdentifier *id)
{
	NodeKey k = {id->ns->id, id->len, id->value};
	NodeEntry *e = hash_search(b->nodes_by_id, &k, HASH_FIND, NULL);

	return e == NULL ? -1 : e->node;
}

static void
log_add(PzIdBatch *b, const char *action, int64 from, int64 into, const PzIdentifier *a,
		const PzIdentifier *bid)
{
	MemoryContext old = MemoryContextSwitchTo(b->cxt);
	BatchLog *l = palloc(sizeof(BatchLog));

	l->action = action;
	l->from = from;
	l->into = into;
	l->a = identifier_copy(b, a);
	l->b = identifier_copy(b, bid);
	b->log = lappend(b->log, l);
	MemoryContextSwitchTo(old);
}

static int64
batch_lookup(void *arg, const PzIdentifier *id)
{
	PzIdBatch *b = arg;
	int32 i = node_find(b, id);

	return i < 0 ? 0 : HANDLE(find_root(b, i));
}

static int64
batch_create(void *arg, const PzIdentifier *id)
{
	PzIdBatch *b = arg;
	int32 i = node_add(b, id);

	b->nodes[i].pid = batch_profile_id(b, id);
	return HANDLE(i);
}

static int64
batch_attach(void *arg, int64 p, const PzIdentifier *id)
{
	PzIdBatch *b = arg;
	int32 r = ROOT(p), i = node_add(b, id);
	int slot = b->nlimited > 0 ? limited_slot(b, id->ns) : -1;
	int64 np;

	b->nodes[i].parent = r;
	b->nodes[r].size++;
	if (slot >= 0)
		b->counts[r * b->nlimited + slot]++;
	if (pz_identifier_rank_cmp(id, &b->nodes[b->nodes[r].key].id) >= 0)
		return p;
	/* a better key: a new id (the old one is still taken while it is chosen) */
	np = batch_profile_id(b, id);
	log_add(b, "rekey", b->nodes[r].pid, np, &b->nodes[i].id, &b->nodes[b->nodes[r].key].id);
	pid_gone(b, b->nodes[r].pid);
	b->nodes[r].pid = np;
	b->nodes[r].key = i;
	return p;
}

static int64
batch_count(void *arg, int64 p, const PzNamespace *ns)
{
	PzIdBatch *b = arg;
	int slot = limited_slot(b, ns);

	return slot < 0 ? 0 : b->counts[ROOT(p) * b->nlimited + slot];
}

static int64
batch_merge(void *arg, int64 p, int64 q, const PzIdentifier *a, const PzIdentifier *bid)
{
	PzIdBatch *b = arg;
	int32 rp = ROOT(p), rq = ROOT(q), into, from, top, under;

	if (pz_identifier_rank_cmp(&b->nodes[b->nodes[rq].key].id, &b->nodes[b->nodes[rp].key].id) < 0)
		into = rq, from = rp;
	else
		into = rp, from = rq;
	log_add(b, "merge", b->nodes[from].pid, b->nodes[into].pid, a, bid);
	pid_gone(b, b->nodes[from].pid);
	/* the smaller tree under the larger; the root keeps into's profile */
	if (b->nodes[rp].size >= b->nodes[rq].size)
		top = rp, under = rq;
	else
		top = rq, under = rp;
	b->nodes[under].parent = top;
	b->nodes[top].size += b->nodes[under].size;
	b->nodes[top].pid = b->nodes[into].pid;
	b->nodes[top].key = b->nodes[into].key;
	for (int s = 0; s < b->nlimited; s++)
		b->counts[top * b->nlimited + s] += b->counts[under * b->nlimited + s];
	return HANDLE(top);
}

static void
batch_refuse(void *arg, const char *rule, const PzNamespace *rule_ns, const PzIdentifier *a,
			 const PzIdentifier *bid, int64 p, int64 q)
{
	PzIdBatch *b = arg;
	RefusalKey k = {{a->ns->id, a->len, a->value}, {bid->ns->id, bid->len, bid->value}};
	bool found;
	RefusalEntry *e = hash_search(b->refused, &k, HASH_ENTER, &found);
	PzStoredRefusal *r;

	if (!found)
	{
		if (b->nrefusals == b->refusals_cap)
		{
			b->refusals_cap *= 2;
			b->refusals = repalloc_huge(b->refusals, sizeof(PzStoredRefusal) * b->refusals_cap);
		}
		e->index = b->nrefusals++;
		r = &b->refusals[e->index];
		r->a = identifier_copy(b, a);
		r->b = identifier_copy(b, bid);
		r->times = 0;
		/* the entry's key points at the batch's copies, not the caller's */
		e->key.a.value = r->a.value;
		e->key.b.value = r->b.value;
	}
	r = &b->refusals[e->index];
	/* the last refusal's rule and profiles, as the row's upsert keeps them */
	r->rule = rule;
	r->rule_ns = rule_ns;
	r->profile_a = p == 0 ? 0 : b->nodes[ROOT(p)].pid;
	r->profile_b = q == 0 ? 0 : b->nodes[ROOT(q)].pid;
	r->times++;
}

/* ---- the batch ---- */

PzIdBatch *
pz_id_batch_begin(void)
{
	PzIdBatch *b = palloc0(sizeof(PzIdBatch));

	b->cxt = AllocSetContextCreate(CurrentMemoryContext, "personalize identity batch",
								   ALLOCSET_DEFAULT_SIZES);
	b->graph.lookup = batch_lookup;
	b->graph.create = batch_create;
	b->graph.attach = batch_attach;
	b->graph.count = batch_count;
	b->graph.merge = batch_merge;
	b->graph.refuse = batch_refuse;
	b->graph.arg = b;
	batch_tables(b);
	b->graph_empty = pz_store_is_empty();
	return b;
}

/*
 * Attribute one event key: its usable identifiers ids (n >= 1) and the
 * blocked ones, as identify() would.  False, with nothing done, if an
 * identifier is in the tables' graph: the caller writes the batch and
 * attributes the key there.  The store is open for writing.
 */
bool
pz_id_batch_attribute(PzIdBatch *b, PzIdentifier *ids, int n, const PzIdentifier *blocked,
					  int nblocked)
{
	bool linked;
	int64 p;

	if (!b->graph_empty)
		for (int i = 0; i < n; i++)
			if (node_find(b, &ids[i]) < 0 && pz_identity_lookup(&ids[i]) != 0)
				return false;
	p = pz_graph_attribute(&b->graph, ids, &n, &linked);
	/* ids[0] is now the best usable identifier, the one the event went to */
	for (int i = 0; i < nblocked; i++)
		batch_refuse(b, "blocked", blocked[i].ns, &ids[0], &blocked[i], p, 0);
	return true;
}

/* memory the batch holds, to write it before it passes a bound */
Size
pz_id_batch_memory(PzIdBatch *b)
{
	return MemoryContextMemAllocated(b->cxt, true);
}

/*
 * Write what the batch holds into the tables and start afresh: each
 * profile, each identifier with its profile, the merge log's rows and the
 * refusals in the order they were made.  The store is open for writing,
 * and the caller is connected to SPI (refusals are statements).
 */
void
pz_id_batch_write(PzIdBatch *b)
{
	ListCell *lc;

	if (b->nnodes == 0 && b->nrefusals == 0)
		return;
	for (int32 i = 0; i < b->nnodes; i++)
		if (b->nodes[i].parent == i)
			pz_store_insert_profile(b->nodes[i].pid, &b->nodes[b->nodes[i].key].id);
	for (int32 i = 0; i < b->nnodes; i++)
		pz_store_insert_identity(&b->nodes[i].id, b->nodes[find_root(b, i)].pid);
	foreach (lc, b->log)
	{
		BatchLog *l = lfirst(lc);

		pz_store_log(l->action, l->from, l->into, &l->a, &l->b);
	}
	pz_store_refuse_many(b->nrefusals, b->refusals);
	for (int i = 0; i < b->nrefusals; i++)
		pz_identity_refusals += b->refusals[i].times;
	MemoryContextReset(b->cxt);
	batch_tables(b);
	b->graph_empty = false;
}

void
pz_id_batch_end(PzIdBatch *b)
{
	MemoryContextDelete(b->cxt);
	pfree(b);
}
