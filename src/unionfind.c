/*
 * unionfind.c
 *	  A union-find over text keys: key interning, path halving, union by
 *	  size.
 *
 * Layout, chosen so that a million keys cost a few tens of megabytes, no
 * per-key palloc, and few cache misses, since keys arrive in random order
 * and memory latency is the cost: a key is stored once in an arena, as its
 * length then its bytes; a node is an index into the parent and size arrays
 * (what find and union touch) and the key array; an open-addressing table,
 * probed linearly, holds per slot the key's hash, its node and a pointer to
 * the key, so that a look-up touches the slot and the key and nothing else.
 * uf_nodes looks up a batch of keys with the slots and keys fetched ahead
 * (prefetch), overlapping the misses.  Everything lives in one memory
 * context of its own, so uf_destroy frees it at once.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/memutils.h"

#include "unionfind.h"

#define UF_ARENA_CHUNK (1024 * 1024)

typedef struct UfArena
{
	struct UfArena *next;
	Size used;
	Size size;
	char data[FLEXIBLE_ARRAY_MEMBER];
} UfArena;

typedef struct UfSlot
{
	uint32 hash;
	int32 node; /* node + 1; 0 = empty */
	const char *key;
} UfSlot;

struct UnionFind
{
	MemoryContext cxt;
	Size memory_limit;
	const char *limit_name;
	Size memory;

	int32 count;    /* nodes */
	int32 capacity; /* allocated length of the node arrays */
	int32 *parent;
	int32 *size;
	const char **key; /* arena record: int32 length, then the bytes */

	/* open addressing, length a power of 2 */
	UfSlot *slots;
	uint32 nslots;

	UfArena *arena;
};

static void
uf_charge(UnionFind *uf, Size bytes)
{
	uf->memory += bytes;
	if (uf->memory > uf->memory_limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("union-find needs more than %zu kB", uf->memory_limit / 1024),
				 errhint("Raise %s, or split the edges into independent parts.", uf->limit_name)));
}

UnionFind *
uf_create(Size memory_limit, const char *limit_name)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "personalize union-find",
											  ALLOCSET_DEFAULT_SIZES);
	UnionFind *uf = MemoryContextAllocZero(cxt, sizeof(UnionFind));

	uf->cxt = cxt;
	uf->memory_limit = memory_limit;
	uf->limit_name = limit_name;
	uf->nslots = 1024;
	uf_charge(uf, sizeof(UnionFind) + uf->nslots * sizeof(UfSlot));
	uf->slots = MemoryContextAllocZero(cxt, uf->nslots * sizeof(UfSlot));
	return uf;
}

void
uf_destroy(UnionFind *uf)
{
	MemoryContextDelete(uf->cxt);
}

static const char *
uf_intern(UnionFind *uf, const char *key, int32 len)
{
	UfArena *a = uf->arena;
	char *dst;
	Size need = sizeof(int32) + len;

	if (a == NULL || a->size - a->used < need)
	{
		Size size = Max(UF_ARENA_CHUNK, need);

		uf_charge(uf, offsetof(UfArena, data) + size);
		a = MemoryContextAlloc(uf->cxt, offsetof(UfArena, data) + size);
		a->next = uf->arena;
		a->used = 0;
		a->size = size;
		uf->arena = a;
	}
	dst = a->data + a->used;
	memcpy(dst, &len, sizeof(int32));
	memcpy(dst + sizeof(int32), key, len);
	a->used += need;
	return dst;
}

static void
uf_grow_nodes(UnionFind *uf)
{
	int32 newcap = uf->capacity == 0 ? 1024 : uf->capacity * 2;
	Size per = sizeof(int32) * 2 + sizeof(char *);
	MemoryContext old;

	if (uf->capacity >= PG_INT32_MAX / 2)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("union-find cannot hold more than %d keys", uf->capacity)));
	uf_charge(uf, (Size) (newcap - uf->capacity) * per);
	old = MemoryContextSwitchTo(uf->cxt);
	if (uf->capacity == 0)
	{
		uf->parent = palloc(newcap * sizeof(int32));
		uf->size = palloc(newcap * sizeof(int32));
		uf->key = palloc(newcap * sizeof(char *));
	}
	else
	{
		uf->parent = repalloc_huge(uf->parent, newcap * sizeof(int32));
		uf->size = repalloc_huge(uf->size, newcap * sizeof(int32));
		uf->key = repalloc_huge(uf->key, newcap * sizeof(char *));
	}
	MemoryContextSwitchTo(old);
	uf->capacity = newcap;
}

/* keep the table at most half full, so probes stay short */
static void
uf_grow_slots(UnionFind *uf)
{
	uint32 n = uf->nslots * 2;
	uint32 mask = n - 1;
	UfSlot *slots;

	uf_charge(uf, (Size) n * sizeof(UfSlot));
	slots = MemoryContextAllocExtended(uf->cxt, (Size) n * sizeof(UfSlot),
									   MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (uint32 i = 0; i < uf->nslots; i++)
	{
		uint32 s;

		if (uf->slots[i].node == 0)
			continue;
		s = uf->slots[i].hash & mask;
		while (slots[s].node != 0)
			s = (s + 1) & mask;
		slots[s] = uf->slots[i];
	}
	pfree(uf->slots);
	uf->memory -= (Size) uf->nslots * sizeof(UfSlot);
	uf->slots = slots;
	uf->nslots = n;
}

static inline uint32
uf_hash(const char *key, int32 len)
{
	return hash_bytes((const unsigned char *) key, len);
}

static inline bool
uf_key_eq(const char *rec, const char *key, int32 len)
{
	int32 rlen;

	memcpy(&rlen, rec, sizeof(int32));
	return rlen == len && memcmp(rec + sizeof(int32), key, len) == 0;
}

/* the node of a key whose hash is known, added if new */
static int32
uf_node_hashed(UnionFind *uf, const char *key, int32 len, uint32 h)
{
	uint32 mask = uf->nslots - 1;
	uint32 s = h & mask;
	int32 node;
	const char *rec;

	while (uf->slots[s].node != 0)
	{
		if (uf->slots[s].hash == h && uf_key_eq(uf->slots[s].key, key, len))
			return uf->slots[s].node - 1;
		s = (s + 1) & mask;
	}

	if (uf->count == uf->capacity)
		uf_grow_nodes(uf);
	node = uf->count++;
	rec = uf_intern(uf, key, len);
	uf->parent[node] = node;
	uf->size[node] = 1;
	uf->key[node] = rec;
	uf->slots[s].hash = h;
	uf->slots[s].node = node + 1;
	uf->slots[s].key = rec;
	if ((uint32) uf->count * 2 > uf->nslots)
		uf_grow_slots(uf);
	return node;
}

int32
uf_node(UnionFind *uf, const char *key, int32 len)
{
	return uf_node_hashed(uf, key, len, uf_hash(key, len));
}

/*
 * The nodes of n keys.  Keys come in random order, so each look-up waits on
 * memory twice (its slot, then its key); a software pipeline asks for the
 * slot of key i + 2 D and the key bytes behind the slot of key i + D while
 * it resolves key i, so the waits overlap.  Prefetches are only hints: the
 * look-up itself is uf_node_hashed, exact whatever moved meanwhile.
 */
#define UF_AHEAD 8

void
uf_nodes(UnionFind *uf, int n, const char *const *keys, const int32 *lens, int32 *nodes)
{
	uint32 hashes[2 * UF_AHEAD];

	for (int i = 0; i < Min(n, 2 * UF_AHEAD); i++)
	{
		hashes[i] = keys[i] ? uf_hash(keys[i], lens[i]) : 0;
		__builtin_prefetch(&uf->slots[hashes[i] & (uf->nslots - 1)]);
	}
	for (int i = 0; i < n; i++)
	{
		uint32 h = hashes[i % (2 * UF_AHEAD)];

		if (i + UF_AHEAD < n)
		{
			UfSlot *sl = &uf->slots[hashes[(i + UF_AHEAD) % (2 * UF_AHEAD)] & (uf->nslots - 1)];

			if (sl->node != 0)
				__builtin_prefetch(sl->key);
		}
		if (keys[i] == NULL)
			nodes[i] = -1;
		else
			nodes[i] = uf_node_hashed(uf, keys[i], lens[i], h);
		if (i + 2 * UF_AHEAD < n)
		{
			int k = i + 2 * UF_AHEAD;

			hashes[k % (2 * UF_AHEAD)] = keys[k] ? uf_hash(keys[k], lens[k]) : 0;
			__builtin_prefetch(&uf->slots[hashes[k % (2 * UF_AHEAD)] & (uf->nslots - 1)]);
		}
	}
}

int32
uf_find(UnionFind *uf, int32 node)
{
	int32 *parent = uf->parent;

	/* path halving: every other node on the path skips to its grandparent */
	while (parent[node] != node)
	{
		parent[node] = parent[parent[node]];
		node = parent[node];
	}
	return node;
}

bool
uf_union(UnionFind *uf, int32 a, int32 b)
{
	int32 ra = uf_find(uf, a);
	int32 rb = uf_find(uf, b);

	if (ra == rb)
		return false;
	if (uf->size[ra] < uf->size[rb])
	{
		int32 t = ra;

		ra = rb;
		rb = t;
	}
	uf->parent[rb] = ra;
	uf->size[ra] += uf->size[rb];
	return true;
}

int32
uf_count(const UnionFind *uf)
{
	return uf->count;
}

const char *
uf_key(const UnionFind *uf, int32 node, int32 *len)
{
	Assert(node >= 0 && node < uf->count);
	memcpy(len, uf->key[node], sizeof(int32));
	return uf->key[node] + sizeof(int32);
}

void
uf_reserve(UnionFind *uf, Size bytes)
{
	uf_charge(uf, bytes);
}

Size
uf_memory(const UnionFind *uf)
{
	return uf->memory;
}
