/*
 * identity.h
 *	  Identity resolution: the identity graph's public API (for the
 *	  streaming worker, get_profile, the module's entry point and the
 *	  namespaces' reuse of the change counter).  Namespaces themselves are
 *	  declared in namespace.h, included here.
 *
 * An identifier is a (namespace, value) pair; the value is stored as the
 * namespace's normalizer returns it.  The graph is kept flat in
 * personalize.identities: every identifier points straight at its profile,
 * which is union-find with every path fully compressed, so a look-up is one
 * index probe (or a hit in the backend's identity cache).  A profile is
 * keyed by its best identifier (namespace priority, then namespace name,
 * then value bytes) and its id is a hash of that identifier, so the same
 * links in any order give the same partition and the same ids.
 *
 * The functions here are plain C over SPI so that the SQL functions and the
 * streaming worker share them.  Writers of the graph serialize on one
 * advisory lock per database (pz_identity_lock), taken once per transaction.
 *
 * The graph's code, top to bottom: identity_sql.c (the SQL functions),
 * identity_graph.c (the rules), identity_store.c (the tables) and
 * identity_cache.c (the backend's cache, the shared change counter);
 * identity_internal.h is what they share among themselves.
 */
#ifndef PERSONALIZE_IDENTITY_H
#define PERSONALIZE_IDENTITY_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/timestamp.h"

#include "namespace.h"

/* ---- the identity graph ---- */

typedef struct PzIdentifier
{
	const PzNamespace *ns;
	char *value; /* normalized, NUL-terminated */
	int32 len;
} PzIdentifier;

/* personalize.identity_cache_size: entries kept per backend (0: no cache; identity_cache.c) */
extern int pz_identity_cache_size;
/* personalize.components_memory_limit, kB (components.c) */
extern int pz_components_memory_limit;

/* shared memory: the graph's change counter that invalidates caches */
extern void pz_identity_shmem_request(void);
extern void pz_identity_shmem_startup(void);
/*
 * The graph's shared change counter: it moves at every committed change of
 * identities or namespaces made outside a backend's own cache; 0 when
 * personalize is not in shared_preload_libraries.
 */
extern uint64 pz_identity_changes(void);

/*
 * A relcache invalidation of relid (InvalidOid: every relation), from
 * personalize.c: the identity cache and the namespace list learn of a
 * prepared change's COMMIT PREPARED this way.
 */
extern void pz_identity_relcache_changed(Oid relid);

/* links refused by a merge rule in this process, ever (the worker's statistics; identity_graph.c) */
extern uint64 pz_identity_refusals;

/*
 * For a writer about to attribute many events: take the graph's lock for
 * the transaction and check the cache; afterwards pz_identity_cached() ids
 * are the graph's latest until commit (or 0: not cached).
 */
extern void pz_identity_lock_for_writing(void);
extern int64 pz_identity_cached(const PzIdentifier *id);

/* the profile id of an identifier, 0 if it is not in the graph (caller connected to SPI) */
extern int64 pz_identity_lookup(const PzIdentifier *id);

/*
 * The identifiers of one event, already normalized and not blocked: link
 * them under the merge rules and return the profile the event is attributed
 * to, that of its best identifier (created if new).  *linked tells whether
 * all of them ended in that profile.  ids is sorted best first on return.
 * The caller is connected to SPI, in a READ COMMITTED transaction; the
 * graph's lock is taken here and held to the end of the transaction.
 */
extern int64 pz_identity_attribute(PzIdentifier *ids, int n, bool *linked);

/*
 * What resolve(namespace, value) returns, for any caller: the profile id of
 * an identifier, 0 if it was never seen or its value is blocked.  NULL
 * pointers stand for SQL NULLs.  Checks SELECT on personalize.identities,
 * normalizes the value, and ERRORs (messages starting "fname: ") for a NULL
 * namespace or value, an unknown namespace or an unusable value; reads
 * through the backend's identity cache, else the identities table's
 * primary key directly.
 */
extern int64 pz_identity_resolve(text *nsname, text *value, const char *fname);

/*
 * The streaming worker's profile write (identity_store.c, beside the graph's
 * own direct writes): merge deltas[i] into profile ids[i], widen first and last
 * seen, set updated_at.  The caller holds the graph's lock
 * (pz_identity_lock_for_writing) and is connected to SPI.  With
 * pz_profile_places (the worker sets it), the graph's writes remember where
 * each profile's row is, and this write reads it there.
 */
extern bool pz_profile_places;
struct Profile;
struct PzAudienceRun;
extern void pz_profiles_merge_deltas(int n, const int64 *ids, struct Profile *const *deltas,
									 const TimestampTz *first_seen, const TimestampTz *last_seen,
									 struct PzAudienceRun *audiences);

#endif /* PERSONALIZE_IDENTITY_H */
