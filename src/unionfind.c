/*
 * unionfind.c
 *	  A union-find over text keys: key interning, path halving, union by
 *	  size.
 *
 * Layout, chosen so that a million keys cost a few tens of megabytes and no
 * per-key palloc: key bytes go into arena chunks; a node is an index into
 * parallel arrays (parent, size, key offset and length); an open-addressing
 * table of node indexes, probed linearly by a 64-bit hash of the key, finds
 * the node of a key.  Everything lives in one memory context of its own, so
 * uf_destroy frees it at once.
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
	const char **key;
	int32 *keylen;
	uint32 *keyhash;

	/* open addressing: slot holds node + 1, 0 = empty; length a power of 2 */
	int32 *slots;
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
	uf_charge(uf, sizeof(UnionFind) + uf->nslots * sizeof(int32));
	uf->slots = MemoryContextAllocZero(cxt, uf->nslots * sizeof(int32));
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

	if (a == NULL || a->size - a->used < (Size) len)
	{
		Size size = Max(UF_ARENA_CHUNK, (Size) len);

		uf_charge(uf, offsetof(UfArena, data) + size);
		a = MemoryContextAlloc(uf->cxt, offsetof(UfArena, data) + size);
		a->next = uf->arena;
		a->used = 0;
		a->size = size;
		uf->arena = a;
	}
	dst = a->data + a->used;
	memcpy(dst, key, len);
	a->used += len;
	return dst;
}

static void
uf_grow_nodes(UnionFind *uf)
{
	int32 newcap = uf->capacity == 0 ? 1024 : uf->capacity * 2;
	Size per = sizeof(int32) * 3 + sizeof(uint32) + sizeof(char *);
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
		uf->keylen = palloc(newcap * sizeof(int32));
		uf->keyhash = palloc(newcap * sizeof(uint32));
		uf->key = palloc(newcap * sizeof(char *));
	}
	else
	{
		uf->parent = repalloc_huge(uf->parent, newcap * sizeof(int32));
		uf->size = repalloc_huge(uf->size, newcap * sizeof(int32));
		uf->keylen = repalloc_huge(uf->keylen, newcap * sizeof(int32));
		uf->keyhash = repalloc_huge(uf->keyhash, newcap * sizeof(uint32));
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
	int32 *slots;

	uf_charge(uf, (Size) n * sizeof(int32));
	slots = MemoryContextAllocExtended(uf->cxt, (Size) n * sizeof(int32),
									   MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int32 i = 0; i < uf->count; i++)
	{
		uint32 s = uf->keyhash[i] & mask;

		while (slots[s] != 0)
			s = (s + 1) & mask;
		slots[s] = i + 1;
	}
	pfree(uf->slots);
	uf->memory -= (Size) uf->nslots * sizeof(int32);
	uf->slots = slots;
	uf->nslots = n;
}

int32
uf_node(UnionFind *uf, const char *key, int32 len)
{
	uint32 h = hash_bytes((const unsigned char *) key, len);
	uint32 mask = uf->nslots - 1;
	uint32 s = h & mask;
	int32 node;

	while (uf->slots[s] != 0)
	{
		int32 n = uf->slots[s] - 1;

		if (uf->keyhash[n] == h && uf->keylen[n] == len && memcmp(uf->key[n], key, len) == 0)
			return n;
		s = (s + 1) & mask;
	}

	if (uf->count == uf->capacity)
		uf_grow_nodes(uf);
	node = uf->count++;
	uf->parent[node] = node;
	uf->size[node] = 1;
	uf->key[node] = uf_intern(uf, key, len);
	uf->keylen[node] = len;
	uf->keyhash[node] = h;
	uf->slots[s] = node + 1;
	if ((uint32) uf->count * 2 > uf->nslots)
		uf_grow_slots(uf);
	return node;
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
	*len = uf->keylen[node];
	return uf->key[node];
}

Size
uf_memory(const UnionFind *uf)
{
	return uf->memory;
}
