/*
 * unionfind.h
 *	  A union-find (disjoint-set forest) over text keys, held in memory.
 *
 * Keys are interned into one arena and numbered 0, 1, 2, ... in order of
 * first sight; find() compresses paths by halving and union() links by
 * size, so a sequence of n operations costs O(n α(n)).  It is the core of
 * batch connected components and of resolving a batch of events in memory
 * before the identity tables are written.  The memory it may take is bounded
 * by the caller: adding a key past the limit raises an ERROR that names the
 * limit.
 */
#ifndef PERSONALIZE_UNIONFIND_H
#define PERSONALIZE_UNIONFIND_H

#include "postgres.h"

typedef struct UnionFind UnionFind;

/* memory_limit in bytes; limit_name is the GUC to raise, for the hint */
extern UnionFind *uf_create(Size memory_limit, const char *limit_name);
extern void uf_destroy(UnionFind *uf);

/* the node of a key, added as a set of its own if new */
extern int32 uf_node(UnionFind *uf, const char *key, int32 len);
/* the nodes of n keys at once, faster for many (a NULL key gives -1) */
extern void uf_nodes(UnionFind *uf, int n, const char *const *keys, const int32 *lens,
					 int32 *nodes);
/* the representative of a node's set */
extern int32 uf_find(UnionFind *uf, int32 node);
/* join the sets of a and b; returns false if they were already one set */
extern bool uf_union(UnionFind *uf, int32 a, int32 b);

extern int32 uf_count(const UnionFind *uf);
extern const char *uf_key(const UnionFind *uf, int32 node, int32 *len);
/* count bytes the caller takes for this graph against its memory limit */
extern void uf_reserve(UnionFind *uf, Size bytes);
/* bytes taken, for reports */
extern Size uf_memory(const UnionFind *uf);

#endif /* PERSONALIZE_UNIONFIND_H */
