/*
 * profile_scan.h
 *	  Scans of the profile view read only the trait columns the query names
 *	  (profile_scan.c: a planner hook).
 */
#ifndef PERSONALIZE_PROFILE_SCAN_H
#define PERSONALIZE_PROFILE_SCAN_H

/* personalize.view_projection */
extern bool pz_view_projection;

/* its GUC and the planner hook, from _PG_init */
extern void pz_profile_scan_init(void);

#endif /* PERSONALIZE_PROFILE_SCAN_H */
