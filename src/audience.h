/*
 * audience.h
 *	  Audiences (audience.c, docs/audiences.md): named conditions over the
 *	  profile view whose membership is kept by every writer of profiles, in
 *	  the writer's transaction.
 *
 * A writer opens a run, adds the profile rows it wrote (and the profiles
 * that went away), and ends the run: the run evaluates every audience's
 * condition on each row, as the audience's owner, compares with the
 * stored memberships, and writes the entries and exits
 * (personalize.audience_events, a NOTIFY at commit) and the schedule of
 * the next moment each profile's result can change with time alone
 * (personalize.audience_due).  Membership writers serialize on a lock of
 * the extension's own (PZ_LOCK_AUDIENCES).
 */
#ifndef PERSONALIZE_AUDIENCE_H
#define PERSONALIZE_AUDIENCE_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

/* personalize.audience_delay (ms): the longest a time-driven transition waits */
extern int pz_audience_delay;
/* personalize.audience_events_retention (s): 0 keeps every event */
extern int pz_audience_retention;

/* personalize.audience_cache_size: profiles the worker's cache of memberships keeps */
extern int pz_audience_cache_size;

/* GUCs and the invalidation callback, from _PG_init */
extern void pz_audience_init(void);

/* a relcache invalidation of relid (InvalidOid: every relation), from personalize.c */
extern void pz_audience_relcache_changed(Oid relid);
/* the shared count of membership writers (audience_cache.c), from the shmem hooks */
extern void pz_audience_shmem_request(void);
extern void pz_audience_shmem_startup(void);
/* the streaming worker keeps a cache of memberships and moments (after connecting) */
extern void pz_audience_cache_start(void);

typedef struct PzAudienceRun PzAudienceRun;

/*
 * Start a run: why is the reason its entries and exits give ("event",
 * "time", "merge", "split", "erasure", "rebuild", "refresh"); only_audience
 * an audience id, or 0 for all.  NULL if there is no audience to evaluate.
 * Takes the membership writers' lock.  The run lives in
 * CurrentMemoryContext.
 */
extern PzAudienceRun *pz_audience_run_begin(const char *why, int32 only_audience);

/*
 * A profile's row as personalize.profiles holds it (columns found by
 * name in desc: id, key_namespace_id, key_value, states, first_seen,
 * last_seen, updated_at), copied.
 */
extern void pz_audience_run_add(PzAudienceRun *run, HeapTuple row, TupleDesc desc);

/*
 * The streaming worker's way, which has just read and merged the profile
 * it writes: read the Profile in the context pz_audience_run_row_context
 * returns (it may evaluate what was added before, to make room), merge,
 * then hand it over with its row (copied).  The run reads the states its
 * conditions need from the Profile, as merged, instead of decoding the
 * row's bytes again; it keeps both until it evaluates them.  Call
 * pz_audience_run_add_profile before the page the profile was read from
 * is released.  Only if pz_audience_run_reads_traits: otherwise nothing
 * would read the profile, and pz_audience_run_add is the way.
 */
extern bool pz_audience_run_reads_traits(PzAudienceRun *run);
extern MemoryContext pz_audience_run_row_context(PzAudienceRun *run, TupleDesc desc);
struct Profile;
extern void pz_audience_run_add_profile(PzAudienceRun *run, HeapTuple row, TupleDesc desc,
										struct Profile *p);

/* A profile that is gone (merged into another): it leaves every audience. */
extern void pz_audience_run_gone(PzAudienceRun *run, int64 profile_id);

/* Evaluate what was added and write the changes; returns how many entries and exits. */
extern uint64 pz_audience_run_end(PzAudienceRun *run);

/* identity_store.c: profile from was merged into profile into */
extern void pz_audiences_profile_merged(int64 from, int64 into);

/*
 * forget(): profile_id is erased; ids are every id the person's profile
 * had (profiles merged into it).  Their events go, and each membership
 * ends with one exit (why erasure), so that consumers drop the profile.
 */
extern uint64 pz_audiences_forget(int64 profile_id, int nids, const int64 *ids);

/*
 * The audiences profile_id is in, names sorted (get_profile); *exists
 * false if this database has no audiences table (an older version) or the
 * caller may not read personalize.audience_memberships.
 */
extern List *pz_audience_names_of(int64 profile_id, bool *exists);

/*
 * The worker: whether a time-driven transition may be due at now (from
 * what this process scheduled, and at least every audience_delay from the
 * schedule itself); then apply those due, at most limit profiles, in the
 * caller's transaction, and delete events older than the retention.
 */
extern bool pz_audiences_due(TimestampTz now);
extern uint64 pz_audiences_apply_due(int limit);
extern uint64 pz_audiences_expire_events(int limit);

#endif /* PERSONALIZE_AUDIENCE_H */
