/*
 * profile_scan.h
 *	  Scans of the profile view: they read only the trait columns the query
 *	  names (profile_scan.c, a planner hook), and compute them in a custom
 *	  scan node rather than a join with a function scan
 *	  (profile_columns_scan.c).
 */
#ifndef PERSONALIZE_PROFILE_SCAN_H
#define PERSONALIZE_PROFILE_SCAN_H

#include "nodes/primnodes.h"

/* personalize.view_projection */
extern bool pz_view_projection;

/* personalize.view_custom_scan */
extern bool pz_view_custom_scan;

/* whether a function is personalize.profile_columns(profile, text) */
extern bool pz_is_profile_columns(Oid funcid);

/*
 * The call of profile_columns(states, '<spec>') that a function scan (the
 * functions of its range table entry or plan, and its ordinality) reads
 * alone, with a constant spec; NULL otherwise.
 */
extern FuncExpr *pz_profile_columns_call(List *functions, bool ordinality);

/* their GUCs and planner hooks, from _PG_init */
extern void pz_profile_scan_init(void);
extern void pz_profile_columns_scan_init(void);

#endif /* PERSONALIZE_PROFILE_SCAN_H */
