/*
 * profile.h
 *	  The profile type: every trait state of one shopper, keyed by trait id.
 *
 * Flat form (the stored value, the binary send/receive payload and the
 * serialized partial state of merge_agg), after the varlena header:
 *
 *		1 byte    profile format version (PROFILE_FORMAT_VERSION)
 *		varint    number of entries
 *		entries, by trait id ascending:
 *		  varint  trait id, as the distance from the previous entry's id
 *		          (from 0 for the first), so always >= 1
 *		  varint  length of the state's flat bytes
 *		  bytes   the state's own flat form without varlena header: its
 *		          version byte, kind byte and body (see state.h)
 *
 * A trait holds a state of any kind; a profile holds no empty states (the
 * trait is absent instead).  Equal profiles have equal bytes: ids are sorted
 * and every embedded state is in its kind's canonical form.
 *
 * In memory a profile is a Profile: a sorted array of entries, each holding
 * its state either still flat (bytes pointing into the flat profile it was
 * read from, read through the kind's validating reader on first use) or as
 * an in-memory PzState.  So the streaming worker can load a stored profile,
 * fold a batch's deltas into the few traits an event touched, and write it
 * back without reading the others.
 *
 * Memory: a Profile and everything it allocates (entries, states read or
 * merged into it, copies of flat bytes) live in the memory context that was
 * current when it was created (p->mcxt), whatever context the caller is in
 * later.  A Profile read with profile_from_flat points into the flat bytes,
 * which must outlive it.  Functions here never use fmgr or SPI.
 */
#ifndef PERSONALIZE_PROFILE_H
#define PERSONALIZE_PROFILE_H

#include "state.h"

#define PROFILE_FORMAT_VERSION 1

typedef struct ProfileEntry
{
	int32 trait;      /* >= 1 */
	PzKind kind;      /* known even while the state is still flat */
	PzState *state;   /* in memory, or NULL while only flat */
	const char *flat; /* the state's flat bytes (version, kind, body) */
	int32 flat_len;
	bool owns_flat; /* flat was allocated in the profile's context */
} ProfileEntry;

typedef struct Profile
{
	MemoryContext mcxt; /* where the profile allocates */
	int32 n;
	int32 cap;
	ProfileEntry *entries; /* by trait, strictly increasing */
} Profile;

/* an empty profile, in CurrentMemoryContext */
extern Profile *profile_new(void);

/*
 * Read a flat profile (the bytes after the varlena header).  The framing
 * (version, count, ids, lengths, each state's version and kind byte) is
 * checked at once; a state's body is read when the state is first used.
 * With validate, every state is read now, and written back in canonical
 * form: what receive and merge_agg's deserialize do with outside bytes.
 */
extern Profile *profile_from_bytes(const char *data, int len, bool validate);
extern Profile *profile_from_flat(struct varlena *flat);
/* a detoasted datum's profile (framing checked, states read lazily) */
extern Profile *profile_from_datum(Datum d);
/*
 * Make p what reading its written form (profile_flatten, just done) gives,
 * and independent of the bytes it was read from (a buffer's page): the
 * entries still flat get their own copy, in p's context, and states whose
 * memory form holds more than they write are cut to what they write.
 */
extern void profile_as_written(Profile *p);

/* the flat form (canonical), allocated in CurrentMemoryContext */
extern struct varlena *profile_flatten(Profile *p);

/* the index of trait's entry, or -1 */
extern int profile_find(const Profile *p, int32 trait);

/*
 * The state of trait, or NULL if the profile holds none; read from the
 * flat bytes into the profile's context on first use.  The state belongs
 * to the profile: the caller may fold events into it (in p->mcxt).
 */
extern PzState *profile_get(Profile *p, int32 trait);

/*
 * Set trait's state, replacing whatever state (of any kind) it held.  The
 * profile takes s as it is, without copying: s must be allocated in
 * p->mcxt (or outlive the profile).  s == NULL removes the trait.
 */
extern void profile_put(Profile *p, int32 trait, PzState *s);

/* Remove trait; false if the profile did not hold it. */
extern bool profile_remove(Profile *p, int32 trait);

/*
 * Merge one state into trait: the kind's merge if the trait holds a state
 * (ERROR if of another kind), else a copy of s.  s is not changed, except
 * that events it buffered may be settled.  This is how the worker folds a
 * batch's delta for a trait into a stored profile.
 */
extern void profile_merge_state(Profile *dst, int32 trait, PzState *s);

/*
 * Merge src into dst: traits held by both are merged with their kind's
 * merge (ERROR naming the trait and both kinds if the kinds differ), traits
 * held by src only are copied into dst's context.  src is not changed,
 * except that events its states buffered may be settled.  Associative and
 * commutative as far as the kinds' merges are; the empty profile is its
 * identity.  Returns dst.  A kind mismatch is found before anything is
 * merged; after any other ERROR (a count overflowing) dst is partly merged
 * and must be discarded.
 */
extern Profile *profile_merge(Profile *dst, Profile *src);

/* the kind's name in the text form ("recent", "top", ...) */
extern const char *profile_kind_name(PzKind kind);

#endif /* PERSONALIZE_PROFILE_H */
