/*
 * citus.h
 *	  Citus, as this release meets it (citus.c, docs/scale-out.md).
 */
#ifndef PERSONALIZE_CITUS_H
#define PERSONALIZE_CITUS_H

/*
 * "source <relation> is a Citus <kind> table" for the first registered
 * source whose inserts no worker streams because Citus stores its rows in
 * shards (distributed after its registration), or NULL.  A caller who may
 * not read personalize.sources is not told which source.  NULL at once
 * where Citus is not installed.  Reads personalize.sources as the
 * extension's owner.
 */
extern char *pz_citus_unstreamed_source(void);

#endif /* PERSONALIZE_CITUS_H */
