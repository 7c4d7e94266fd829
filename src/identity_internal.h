/*
 * identity_internal.h
 *	  What the identity graph's files share among themselves and no other
 *	  file needs.  The public API is identity.h.
 *
 * The graph's code in layers, each calling only the ones below it, with
 * one exception: identity_sql.c (the SQL functions) -> identity_batch.c
 * (a rebuild's new identifiers resolved in memory) -> identity_graph.c
 * (the lock and the rules) -> identity_store.c (the tables) ->
 * identity_cache.c (the backend's cache and the shared change counter).
 * The exception is the transaction callbacks (identity_cache.c), which tell
 * the store and the lock that an abort closed the store's relations and
 * released the lock (pz_store_forget_open, pz_graph_lock_forget).
 *
 * Callers of the store and of the graph are connected to SPI.
 */
#ifndef PERSONALIZE_IDENTITY_INTERNAL_H
#define PERSONALIZE_IDENTITY_INTERNAL_H

#include "identity.h"

/* ---- the rules (identity_graph.c) ---- */

/* best first: higher priority, then namespace name, then value bytes */
extern int pz_identifier_rank_cmp(const PzIdentifier *a, const PzIdentifier *b);
/* the id a profile keyed by this identifier gets, unless another has it */
extern int64 pz_identifier_profile_id(const PzIdentifier *id);

/*
 * A graph the rules run over: the tables (identity_graph.c), or a batch
 * of new identifiers held in memory (identity_batch.c).  Profiles are
 * handles the graph gives out, never 0.
 */
typedef struct PzGraph
{
	/* the profile of an identifier, 0 if the graph does not have it */
	int64 (*lookup)(void *arg, const PzIdentifier *id);
	/* a new profile holding just this identifier */
	int64 (*create)(void *arg, const PzIdentifier *id);
	/* a new identifier into profile p, re-keyed if it is better than p's key: p's handle */
	int64 (*attach)(void *arg, int64 p, const PzIdentifier *id);
	/* how many identifiers of ns profile p holds */
	int64 (*count)(void *arg, int64 p, const PzNamespace *ns);
	/* merge p and q for the link a-b, the better key surviving: the survivor */
	int64 (*merge)(void *arg, int64 p, int64 q, const PzIdentifier *a, const PzIdentifier *b);
	/* record a link a rule refused */
	void (*refuse)(void *arg, const char *rule, const PzNamespace *rule_ns, const PzIdentifier *a,
				   const PzIdentifier *b, int64 p, int64 q);
	void *arg;
} PzGraph;

/*
 * Attribute an event's usable identifiers to a profile of g by the rules:
 * ids sorted best first and deduplicated in place (*nids updated).
 */
extern int64 pz_graph_attribute(const PzGraph *g, PzIdentifier *ids, int *nids, bool *linked);

/* take the graph's lock, check the cache, open the store for writing */
extern void pz_graph_write_begin(void);
/* the lock taken in an aborted subtransaction is gone */
extern void pz_graph_lock_forget(void);
/* record a link a rule refused, and count it in pz_identity_refusals */
extern void pz_graph_refuse(const char *rule, const PzNamespace *rule_ns, const PzIdentifier *a,
							const PzIdentifier *b, int64 profile_a, int64 profile_b);
/*
 * split(): move an identifier into a profile of its own and return it, or
 * with *alone, return the profile it already has to itself.
 */
extern int64 pz_graph_split(const PzIdentifier *id, bool *alone);

/* ---- a rebuild's new identifiers, resolved in memory (identity_batch.c) ---- */

typedef struct PzIdBatch PzIdBatch;

extern PzIdBatch *pz_id_batch_begin(void);
/* false, with nothing done, if an identifier is in the tables: attribute it there */
extern bool pz_id_batch_attribute(PzIdBatch *b, PzIdentifier *ids, int n,
								  const PzIdentifier *blocked, int nblocked);
extern Size pz_id_batch_memory(PzIdBatch *b);
/* write what it holds into the tables (store open, SPI connected), start afresh */
extern void pz_id_batch_write(PzIdBatch *b);
extern void pz_id_batch_end(PzIdBatch *b);

/* ---- the tables (identity_store.c) ---- */

/* open for reading (resolve) or writing (the caller holds the graph's lock) */
extern void pz_store_open(bool writing);
extern void pz_store_close(void);
/* an abort closed the relations opened in subtransaction aborted (Invalid: any) */
extern void pz_store_forget_open(SubTransactionId aborted);
/* open for reading: look-ups see the statement's snapshot */
extern bool pz_store_reads_snapshot(void);

extern int64 pz_store_lookup(const PzIdentifier *id);
extern bool pz_store_profile_exists(int64 profile_id);
extern bool pz_store_is_empty(void);
extern int64 pz_store_count_in_namespace(int64 profile_id, const PzNamespace *ns);
extern void pz_store_profile_key(int64 profile_id, PzIdentifier *key);

extern void pz_store_insert_identity(const PzIdentifier *id, int64 profile_id);
extern void pz_store_insert_profile(int64 profile_id, const PzIdentifier *key);
extern void pz_store_move_identities(int64 from, int64 into);
extern void pz_store_merge_profiles(int64 from, int64 into);
extern void pz_store_rekey_profile(int64 from, int64 into, const PzIdentifier *key);
extern void pz_store_log(const char *action, int64 from, int64 into, const PzIdentifier *a,
						 const PzIdentifier *b);
extern void pz_store_refuse(const char *rule, const PzNamespace *rule_ns, const PzIdentifier *a,
							const PzIdentifier *b, int64 profile_a, int64 profile_b);
/* a pair's refusals, gathered: the last one's rule and profiles, and how many */
typedef struct PzStoredRefusal
{
	const char *rule;
	const PzNamespace *rule_ns;
	PzIdentifier a, b;
	int64 profile_a, profile_b; /* 0: none */
	int64 times;
} PzStoredRefusal;
/* n distinct pairs' refusals in one statement, as n x times pz_store_refuse in order */
extern void pz_store_refuse_many(int n, const PzStoredRefusal *r);

/* ---- the backend's cache (identity_cache.c) ---- */

/* start of every operation: make the cache current, or drop it */
extern void pz_cache_check(void);
/* identifier -> profile id; 0: not cached */
extern int64 pz_cache_get(const PzIdentifier *id);
extern void pz_cache_put(const PzIdentifier *id, int64 profile_id);
extern void pz_cache_put_raw(int32 ns, const char *value, int32 len, int64 profile_id);
/* whether a profile id just read may be cached (snapshot_read: by a reader) */
extern bool pz_cache_may_keep(bool snapshot_read);
/* profile id -> key identifier */
extern bool pz_key_cache_get(int64 profile_id, PzIdentifier *key);
extern void pz_key_cache_put(int64 profile_id, const PzIdentifier *key);
extern void pz_key_cache_forget(int64 profile_id);

/* this transaction took the graph's lock to write */
extern void pz_cache_writing_graph(void);
/* this transaction changed identities where the statement trigger cannot see */
extern void pz_cache_changes_made(void);
/* our own statements on identities are running: the trigger keeps the cache */
extern void pz_cache_own_statements(bool running);

#endif /* PERSONALIZE_IDENTITY_INTERNAL_H */
