/*
 * security.h
 *	  Trust boundaries (docs/security.md): whose rights user code runs with,
 *	  who may change the configuration, and whether a source may be read.
 *
 * The worker runs as the bootstrap superuser and the configuration
 * functions write tables nobody else may write, so every piece of code a
 * user names (a normalizer) runs as the role that configured it, inside a
 * security-restricted operation, and every source is read only while the
 * role that registered it may read what the stream takes from it.
 */
#ifndef PERSONALIZE_SECURITY_H
#define PERSONALIZE_SECURITY_H

#include "postgres.h"

#include "catalog/indexing.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"

/* the user id and security context to go back to */
typedef struct PzUserContext
{
	Oid userid;
	int sec_context;
	int guc_level; /* 0: no GUC nest level was opened */
} PzUserContext;

/*
 * Run as role, in a security-restricted operation, with a GUC nest level
 * of its own (a SET by user code ends with the call), as PostgreSQL runs
 * index expressions as the table's owner.  pz_run_as_end() goes back; an
 * ERROR in between is undone by the (sub)transaction's abort.
 */
extern void pz_run_as_begin(Oid role, PzUserContext *saved);
extern void pz_run_as_end(const PzUserContext *saved);

/*
 * Write the configuration tables, which only a superuser may write
 * directly: as the extension's owner until pz_run_as_end().
 */
extern void pz_as_extension_owner_begin(PzUserContext *saved);

/* the role that owns the extension (a superuser: it is not trusted) */
extern Oid pz_extension_owner(void);

/*
 * The caller may change the configuration: a member of personalize_admin,
 * not inside user code run by the extension.  ERROR with a hint if not.
 */
extern void pz_require_admin(const char *action);

/*
 * Why function fn cannot serve as a normalizer run as owner (palloc'd), or
 * NULL: it must exist, take one text and return text, and owner must exist
 * and hold EXECUTE on it.
 */
extern char *pz_normalizer_problem(Oid fn, Oid owner);

/*
 * Whether role holds every privilege in mode on relation relid
 * (pg_class_aclcheck alone accepts any one of them).
 */
extern bool pz_table_privileges_all(Oid relid, Oid role, AclMode mode);

/*
 * Whether catalog code maintains every index of a table opened with
 * CatalogOpenIndexes (as the stores write rows): none has expressions, a
 * predicate, an exclusion or a deferred check, which it would leave
 * unmaintained or unchecked.
 */
extern bool pz_indexes_catalog_maintained(CatalogIndexState ind);

/* the function is one of the extension's own C normalizers (no switch needed) */
extern bool pz_is_own_c_function(Oid fn);

/*
 * Why owner may not read columns attnums of relation relid as the stream
 * and rebuild() read them (palloc'd), or NULL: owner must exist, hold
 * SELECT on each column, and see every row (no row-level security applies
 * to owner).
 */
extern char *pz_source_read_problem(Oid relid, Oid owner, const int16 *attnums, int nattnums);

/*
 * The extension's own locks, which no role can take from SQL (an advisory
 * lock anyone could take and hold, stalling the worker for good): object
 * locks on the personalize schema with a sub-id no DDL uses.  Held until
 * the transaction ends.
 */
typedef enum PzLock
{
	PZ_LOCK_IDENTITY_GRAPH = 1, /* writers of the identity graph */
	PZ_LOCK_REBUILD = 2,        /* rebuilds, which each write every profile */
	PZ_LOCK_AUDIENCES = 3       /* writers of audience memberships */
} PzLock;

extern void pz_lock(PzLock which);

#endif /* PERSONALIZE_SECURITY_H */
