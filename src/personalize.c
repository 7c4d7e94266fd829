/*
 * personalize.c
 *	  Module entry point: the magic block, _PG_init and the extension's GUCs.
 *
 * The library is meant to be loaded through shared_preload_libraries so that
 * later parts (the streaming worker, the output plugin) can register
 * themselves at postmaster start.  Trait-state types and aggregates work
 * whether or not the library was preloaded: _PG_init then runs when the
 * first function is called.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "state.h"

PG_MODULE_MAGIC;

/* personalize.max_value_bytes: the longest value an event may bring */
int pz_max_value_bytes = 2048;

void _PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable(
		"personalize.max_value_bytes",
		"The longest value, in bytes, an event may add to a trait state.",
		"Bounds the memory of every state: recent and top keep at most 1000 values of this size. "
		"Longer values are refused with an error; text and binary input of stored states are not "
		"limited, so dumps always restore.",
		&pz_max_value_bytes, 2048, 16, 1024 * 1024, PGC_USERSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	MarkGUCPrefixReserved("personalize");
}
