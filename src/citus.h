/*
 * citus.h
 *	  Citus, as this release meets it (citus.c, docs/scale-out.md).
 */
#ifndef PERSONALIZE_CITUS_H
#define PERSONALIZE_CITUS_H

#include "replication/origin.h"

/*
 * "source <relation> is a Citus <kind> table" for the first registered
 * source whose inserts no worker streams because Citus stores its rows in
 * shards (distributed after its registration), or NULL.  A caller who may
 * not read personalize.sources is not told which source.  NULL at once
 * where Citus is not installed.  Reads personalize.sources as the
 * extension's owner.
 */
extern char *pz_citus_unstreamed_source(void);

/*
 * The distributed table whose shard relid is (a relation named
 * <table>_<shard id>, with the table's owner, that pg_dist_shard gives to
 * that table), or InvalidOid: not a shard, or no Citus here.  by_name_only:
 * pg_dist_shard no longer has the shard id (split or dropped since, and
 * vacuumed), but the name and owner say whose shard it was.
 */
extern Oid pz_citus_shard_table(Oid relid, bool *by_name_only);

/*
 * Whether a transaction's changes with this replication origin are a copy
 * of rows that exist elsewhere (Citus's shard copies, moves and splits),
 * not events.  Reads catalogs: call it inside a transaction.
 */
extern bool pz_citus_origin_is_copy(RepOriginId origin);

/*
 * On a Citus coordinator: the configuration sent to every worker node, in
 * this transaction (committed there with it).  A no-op elsewhere.  Called
 * by every configuration function after its change.
 */
extern void pz_citus_send_config(void);

/*
 * An ERROR on a Citus worker node, whose configuration is the coordinator's
 * ("cannot <action> on a Citus worker node"); nothing elsewhere.
 */
extern void pz_citus_refuse_on_worker_node(const char *action);

/*
 * On a Citus coordinator with distributed sources: whether every worker
 * node's worker applied what was committed there before the call, within
 * timeout_ms (< 0: no limit).  True elsewhere.
 */
extern bool pz_citus_wait_nodes(long timeout_ms);

#endif /* PERSONALIZE_CITUS_H */
