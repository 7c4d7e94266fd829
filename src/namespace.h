/*
 * namespace.h
 *	  Identifier namespaces (namespace.c): each namespace's priority, limit,
 *	  normalizer and blocked values, as the identity graph reads them.
 *
 * The list of namespaces is read from personalize.namespaces at most once
 * per transaction (and again after it changes) into a small array; these
 * functions read that array.  They know nothing of the identity graph
 * beyond its shared change counter (identity.h), on which the list is
 * reused across transactions.
 */
#ifndef PERSONALIZE_NAMESPACE_H
#define PERSONALIZE_NAMESPACE_H

#include "postgres.h"

#include "fmgr.h"

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
 * A relcache invalidation of relid (InvalidOid: of every relation) reached
 * this backend: the namespace list is read again if it is of that table.
 * Among them is the one a prepared change sends at COMMIT PREPARED
 * (identity_cache.c passes them on).
 */
extern void pz_namespace_relation_changed(Oid relid);

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

#endif /* PERSONALIZE_NAMESPACE_H */
