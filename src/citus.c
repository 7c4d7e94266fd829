/*
 * citus.c
 *	  Citus, as this release meets it (docs/scale-out.md).
 *
 * On a Citus cluster, the inserts into a distributed, reference or Citus
 * local table go to its shards, which no personalize worker streams yet.
 * register_source refuses such tables (_check_source_kind, through
 * _citus_table_kind); a source distributed after its registration is found
 * here, so that the waits do not say that its events were applied.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "citus.h"
#include "security.h"

char *
pz_citus_unstreamed_source(void)
{
	Oid kind_fn;
	Oid sources;
	bool may_name;
	PzUserContext saved;
	MemoryContext caller = CurrentMemoryContext;
	char *found = NULL;

	/* no Citus in this database: nothing to look at (and no query) */
	if (!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
		return NULL;
	/* the extension's schema before 0.8.0 has no _citus_table_kind */
	kind_fn = LookupFuncName(list_make2(makeString("personalize"), makeString("_citus_table_kind")),
							 1, (Oid[]){REGCLASSOID}, true);
	if (!OidIsValid(kind_fn))
		return NULL;
	/* a caller who may not read the sources learns that one is not streamed, not which */
	sources = get_relname_relid("sources", get_namespace_oid("personalize", false));
	may_name =
		OidIsValid(sources) && pg_class_aclcheck(sources, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
	pz_run_as_begin(pz_extension_owner(), &saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	if (SPI_execute("SELECT format('source %s is a Citus %s table', s.relation, k.kind) "
					"FROM personalize.sources s, personalize._citus_table_kind(s.relation) k(kind) "
					"WHERE k.kind IS NOT NULL ORDER BY s.id LIMIT 1",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read personalize.sources");
	if (SPI_processed > 0)
		found = may_name ? MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0],
																	SPI_tuptable->tupdesc, 1))
						 : MemoryContextStrdup(caller, "a registered source is a Citus table");
	SPI_finish();
	pz_run_as_end(&saved);
	return found;
}
