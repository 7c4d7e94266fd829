/*
 * identity_internal.h
 *	  What the identity graph's files share among themselves and no other
 *	  file needs.  The public API is identity.h.
 *
 * The graph's code in layers, each calling only the ones below it, with
 * one exception: identity_sql.c (the SQL functions) -> identity_graph.c
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
