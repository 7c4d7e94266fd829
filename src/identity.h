/*
 * identity.h
 *	  Identity resolution: namespaces (namespace.c) and the identity graph
 *	  (identity.c).
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
 */
#ifndef PERSONALIZE_IDENTITY_H
#define PERSONALIZE_IDENTITY_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/timestamp.h"

/* ---- namespaces (namespace.c) ---- */

typedef struct PzNamespace
{
	int32 id;
	char *name;
	int32 priority;           /* higher wins */
	int32 max_per_profile;    /* 0: no limit */
	Oid normalizer;           /* InvalidOid: none */
	Oid owner;                /* the role that configured it: normalizers run as it */
	bool own_normalizer;      /* one of the extension's C normalizers: run as is */
	char *normalizer_problem; /* why it cannot normalize (ERROR when used), or NULL */
	FmgrInfo normalizer_fn;
	int nblocked;
	char **blocked; /* normalized, sorted by bytes */
	int32 *blocked_len;
} PzNamespace;

/* every namespace, loaded at most once per transaction (and after changes) */
extern const PzNamespace *pz_namespace_by_name(const char *name);
extern const PzNamespace *pz_namespace_by_id(int32 id);
/* number of namespaces with a limit, for skipping the limit checks */
extern int pz_namespace_limited_count(void);
/* walk them: 0 <= i < pz_namespace_count() */
extern int pz_namespace_count(void);
extern const PzNamespace *pz_namespace_at(int i);
extern void pz_namespace_invalidate(void);

/*
 * The value as the namespace stores it, palloc'd, or NULL when the
 * normalizer finds nothing usable (empty, not an address, ...).
 */
extern char *pz_namespace_normalize(const PzNamespace *ns, const char *value, int32 len,
									int32 *outlen);
/*
 * Set when an ERROR came out of a user's normalizer (namespace.c), so that
 * the worker does not take a normalizer raising "lock not available" for a
 * lock wait of its own, retried forever.
 */
extern bool pz_error_in_user_code;

/* why the namespace cannot normalize values (palloc'd), or NULL */
extern char *pz_namespace_problem(const PzNamespace *ns);
extern bool pz_namespace_is_blocked(const PzNamespace *ns, const char *value, int32 len);

/* ---- the identity graph (identity.c) ---- */

typedef struct PzIdentifier
{
	const PzNamespace *ns;
	char *value; /* normalized, NUL-terminated */
	int32 len;
} PzIdentifier;

/* personalize.identity_cache_size: entries kept per backend (0: no cache) */
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

/* links refused by a merge rule in this process, ever (the worker's statistics) */
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
 * The streaming worker's profile write (identity.c, beside the graph's own
 * direct writes): merge deltas[i] into profile ids[i], widen first and last
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
