/*
 * personalize.c
 *	  Module entry point: the magic block and _PG_init.
 *
 * The library is meant to be loaded through shared_preload_libraries so that
 * later parts (the streaming worker, the output plugin) can register
 * themselves at postmaster start.  Trait-state types and aggregates work
 * whether or not the library was preloaded.
 */
#include "postgres.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void _PG_init(void);

void
_PG_init(void)
{
}
