/*
 * profile.c
 *	  The profile type: a map from trait id to one trait state of any kind.
 *	  The C API the streaming worker uses (profile.h), and the SQL-callable
 *	  functions: text and binary I/O, merge and ||, =, merge_agg, and
 *	  profile_set / profile_get / profile_traits / profile_remove.
 *
 * Identity resolution merges two shoppers' profiles with ||, so a profile's
 * merge is the per-trait merge of its states: everything the kinds
 * guarantee (associative, commutative, exact or within a documented error)
 * carries over to profiles.
 *
 * Stored profiles were validated when they came in (text input, receive,
 * or built by these functions from validated states), so reading one from a
 * table checks its framing and reads a state's body only when the state is
 * used: a point read of one trait does not read the other nine.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "profile.h"

#define PROFILE_TYPE_NAME "profile"

/* the smallest entry: id delta, length, a state's version and kind bytes */
#define PROFILE_MIN_ENTRY_BYTES 4

static const char *const profile_kind_names[PZ_KIND_COUNT] = {
	[PZ_KIND_RECENT] = "recent",     [PZ_KIND_TOP] = "top",       [PZ_KIND_WINDOWED] = "windowed",
	[PZ_KIND_DISTINCT] = "distinct", [PZ_KIND_FIRST] = "first",   [PZ_KIND_LAST] = "last",
	[PZ_KIND_SESSION] = "session",   [PZ_KIND_METRIC] = "metric",
};

static pg_attribute_noreturn() void profile_kind_mismatch(int32 trait, PzKind a, PzKind b);
static pg_attribute_noreturn() void profile_bad_text(const char *detail);

#define PROFILE_KIND_LIST "recent, top, windowed, distinct, first, last, session, metric"
#define PROFILE_TYPE_LIST                                                                          \
	"recent_state, top_state, windowed_state, distinct_state, first_state, last_state, "           \
	"session_state, metric_state"

const char *
profile_kind_name(PzKind kind)
{
	Assert(kind > 0 && kind < PZ_KIND_COUNT);
	return profile_kind_names[kind];
}

/* ---------------------------------------------------------------------
 * errors
 * --------------------------------------------------------------------- */

/* Errors raised while a state is read say which trait of the profile. */
static void
profile_trait_error_context(void *arg)
{
	errcontext("in trait %d of a profile", *(const int32 *) arg);
}

/*
 * Read a state embedded in a profile through its kind's validating reader;
 * expect == 0 accepts any kind.
 */
static PzState *
profile_read_state(int32 trait, const char *data, int len, PzKind expect)
{
	ErrorContextCallback cb;
	PzState *s;

	cb.callback = profile_trait_error_context;
	cb.arg = &trait;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	s = pz_state_read_bytes(data, len, expect);
	error_context_stack = cb.previous;
	return s;
}

static void
profile_kind_mismatch(int32 trait, PzKind a, PzKind b)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("cannot merge trait %d: one profile holds a %s, the other a %s", trait,
					pz_kind_ops(a)->type_name, pz_kind_ops(b)->type_name),
			 errhint("All states of one trait must be of one kind.  Rebuild the trait, or drop "
					 "it from one profile with profile_remove(profile, %d).",
					 trait)));
}

static void
profile_check_trait(int32 trait)
{
	if (trait < 1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("trait id must be at least 1, not %d", trait),
						errhint("Trait ids are the positive integers that identify traits.")));
}

/* ---------------------------------------------------------------------
 * the in-memory profile
 * --------------------------------------------------------------------- */

Profile *
profile_new(void)
{
	Profile *p = palloc(sizeof(Profile));

	p->mcxt = CurrentMemoryContext;
	p->n = 0;
	p->cap = 0;
	p->entries = NULL;
	return p;
}

static void
profile_reserve(Profile *p, int32 n)
{
	if (n <= p->cap)
		return;
	n = Max(n, Max(4, p->cap * 2));
	if (p->entries == NULL)
		p->entries = MemoryContextAlloc(p->mcxt, sizeof(ProfileEntry) * n);
	else
		p->entries = repalloc(p->entries, sizeof(ProfileEntry) * n);
	p->cap = n;
}

int
profile_find(const Profile *p, int32 trait)
{
	int lo = 0;
	int hi = p->n - 1;

	while (lo <= hi)
	{
		int mid = lo + (hi - lo) / 2;

		if (p->entries[mid].trait == trait)
			return mid;
		if (p->entries[mid].trait < trait)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* Where trait's entry is or would go. */
static int
profile_position(const Profile *p, int32 trait)
{
	int lo = 0;
	int hi = p->n;

	while (lo < hi)
	{
		int mid = lo + (hi - lo) / 2;

		if (p->entries[mid].trait < trait)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void
profile_entry_clear(ProfileEntry *e)
{
	if (e->owns_flat)
		pfree((void *) e->flat);
	e->flat = NULL;
	e->flat_len = 0;
	e->owns_flat = false;
}

/*
 * Fold what a state buffered (windowed events) into it, in the context the
 * state was allocated in (every kind allocates its state struct as one
 * chunk), whatever context the caller is in: what settle allocates must
 * live as long as the state.
 */
static void
profile_settle(PzState *s)
{
	const PzKindOps *ops = pz_kind_ops(s->kind);

	if (ops->settle)
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(s));

		ops->settle(s);
		MemoryContextSwitchTo(old);
	}
}

/* The in-memory state of entry e, read from its flat bytes on first use. */
static PzState *
profile_entry_state(Profile *p, ProfileEntry *e)
{
	if (e->state == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(p->mcxt);

		e->state = profile_read_state(e->trait, e->flat, e->flat_len, e->kind);
		MemoryContextSwitchTo(old);
		profile_entry_clear(e);
	}
	return e->state;
}

Profile *
profile_from_bytes(const char *data, int len, bool validate)
{
	Profile *p = profile_new();
	PzReader r;
	uint8 version;
	int32 n;
	int32 trait = 0;
	int i;

	pz_reader_init(&r, data, len, PROFILE_TYPE_NAME);
	version = pz_read_u8(&r);
	if (version != PROFILE_FORMAT_VERSION)
		ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
						errmsg("unsupported binary format version %d for profile", version),
						errhint("This build of personalize reads profile format version %d.",
								PROFILE_FORMAT_VERSION)));
	n = pz_read_count(&r, (int32) ((r.end - r.cur) / PROFILE_MIN_ENTRY_BYTES), "traits");
	profile_reserve(p, n);
	for (i = 0; i < n; i++)
	{
		ProfileEntry *e = &p->entries[i];
		uint64 delta = pz_read_varint(&r);
		uint64 slen64;
		int32 slen;
		uint8 kind;

		if (delta == 0)
			pz_corrupt(PROFILE_TYPE_NAME, "The trait ids are not strictly increasing.");
		if (delta > (uint64) (PG_INT32_MAX - trait))
			pz_corrupt(PROFILE_TYPE_NAME, "A trait id is out of range.");
		trait += (int32) delta;
		slen64 = pz_read_varint(&r);
		if (slen64 > (uint64) (r.end - r.cur))
			pz_corrupt(PROFILE_TYPE_NAME,
					   psprintf("The state of trait %d is longer than the data.", trait));
		slen = (int32) slen64;
		if (slen < 2)
			pz_corrupt(PROFILE_TYPE_NAME,
					   psprintf("The state of trait %d is shorter than its header.", trait));
		e->trait = trait;
		e->state = NULL;
		e->flat = r.cur;
		e->flat_len = slen;
		e->owns_flat = false;
		r.cur += slen;
		if (validate)
		{
			/* every byte of it, through the kind's reader */
			e->state = profile_read_state(trait, e->flat, e->flat_len, 0);
			e->kind = e->state->kind;
			e->flat = NULL;
			e->flat_len = 0;
		}
		else
		{
			/* the header now, the body when the state is used */
			if ((uint8) e->flat[0] != PZ_FORMAT_VERSION)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
						 errmsg("unsupported binary format version %d for the state of trait %d",
								(uint8) e->flat[0], trait),
						 errhint("This build of personalize reads format version %d.",
								 PZ_FORMAT_VERSION)));
			kind = (uint8) e->flat[1];
			if (kind == 0 || kind >= PZ_KIND_COUNT)
				pz_corrupt(PROFILE_TYPE_NAME,
						   psprintf("Unknown state kind %d in trait %d.", kind, trait));
			e->kind = (PzKind) kind;
		}
		p->n = i + 1;
	}
	if (r.cur != r.end)
		pz_corrupt(PROFILE_TYPE_NAME, "Extra bytes follow the profile.");
	return p;
}

Profile *
profile_from_flat(struct varlena *flat)
{
	return profile_from_bytes(VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat), false);
}

Profile *
profile_from_datum(Datum d)
{
	return profile_from_flat(pg_detoast_datum_packed((struct varlena *) DatumGetPointer(d)));
}

void
profile_as_written(Profile *p)
{
	for (int i = 0; i < p->n; i++)
	{
		ProfileEntry *e = &p->entries[i];

		/* settled by profile_flatten: most kinds are then as written */
		if (e->state != NULL && pz_kind_ops(e->kind)->as_written != NULL)
			pz_kind_ops(e->kind)->as_written(e->state);
		if (e->state == NULL && !e->owns_flat)
		{
			char *copy = MemoryContextAlloc(p->mcxt, e->flat_len);

			memcpy(copy, e->flat, e->flat_len);
			e->flat = copy;
			e->owns_flat = true;
		}
	}
}

struct varlena *
profile_flatten(Profile *p)
{
	StringInfoData buf;
	int32 prev = 0;
	int i;

	initStringInfo(&buf);
	appendStringInfoSpaces(&buf, VARHDRSZ);
	pz_write_u8(&buf, PROFILE_FORMAT_VERSION);
	pz_write_varint(&buf, (uint64) p->n);
	for (i = 0; i < p->n; i++)
	{
		ProfileEntry *e = &p->entries[i];

		pz_write_varint(&buf, (uint64) (e->trait - prev));
		prev = e->trait;
		if (e->state != NULL)
		{
			struct varlena *sf;

			profile_settle(e->state);
			sf = pz_state_flatten(e->state);
			pz_write_varint(&buf, (uint64) VARSIZE(sf) - VARHDRSZ);
			appendBinaryStringInfo(&buf, VARDATA(sf), VARSIZE(sf) - VARHDRSZ);
			pfree(sf);
		}
		else
		{
			pz_write_varint(&buf, (uint64) e->flat_len);
			appendBinaryStringInfo(&buf, e->flat, e->flat_len);
		}
	}
	SET_VARSIZE(buf.data, buf.len);
	return (struct varlena *) buf.data;
}

PzState *
profile_get(Profile *p, int32 trait)
{
	int i = profile_find(p, trait);

	return i < 0 ? NULL : profile_entry_state(p, &p->entries[i]);
}

void
profile_put(Profile *p, int32 trait, PzState *s)
{
	int i;
	ProfileEntry *e;

	profile_check_trait(trait);
	if (s == NULL)
	{
		profile_remove(p, trait);
		return;
	}
	i = profile_position(p, trait);
	if (i < p->n && p->entries[i].trait == trait)
		e = &p->entries[i];
	else
	{
		profile_reserve(p, p->n + 1);
		memmove(&p->entries[i + 1], &p->entries[i], sizeof(ProfileEntry) * (p->n - i));
		p->n++;
		e = &p->entries[i];
		e->trait = trait;
		e->owns_flat = false;
	}
	profile_entry_clear(e);
	e->kind = s->kind;
	e->state = s;
}

bool
profile_remove(Profile *p, int32 trait)
{
	int i = profile_find(p, trait);

	if (i < 0)
		return false;
	profile_entry_clear(&p->entries[i]);
	memmove(&p->entries[i], &p->entries[i + 1], sizeof(ProfileEntry) * (p->n - i - 1));
	p->n--;
	return true;
}

/* Merge state s into entry e of dst (e holds a state of trait). */
static void
profile_entry_merge(Profile *dst, ProfileEntry *e, PzState *s)
{
	PzState *d;
	MemoryContext old;

	if (e->kind != s->kind)
		profile_kind_mismatch(e->trait, e->kind, s->kind);
	d = profile_entry_state(dst, e);
	profile_settle(d);
	profile_settle(s);
	old = MemoryContextSwitchTo(dst->mcxt);
	pz_kind_ops(d->kind)->merge(d, s);
	MemoryContextSwitchTo(old);
}

/* Copy src's entry into *out, allocating in dst's context. */
static void
profile_entry_copy(Profile *dst, ProfileEntry *out, const ProfileEntry *src)
{
	out->trait = src->trait;
	out->kind = src->kind;
	if (src->state != NULL)
	{
		profile_settle(src->state);
		out->state = pz_state_copy(src->state, dst->mcxt);
		out->flat = NULL;
		out->flat_len = 0;
		out->owns_flat = false;
	}
	else
	{
		/* still flat: copy the bytes, read them if ever needed */
		char *copy = MemoryContextAlloc(dst->mcxt, src->flat_len);

		memcpy(copy, src->flat, src->flat_len);
		out->state = NULL;
		out->flat = copy;
		out->flat_len = src->flat_len;
		out->owns_flat = true;
	}
}

void
profile_merge_state(Profile *dst, int32 trait, PzState *s)
{
	int i;

	profile_check_trait(trait);
	i = profile_find(dst, trait);
	if (i >= 0)
		profile_entry_merge(dst, &dst->entries[i], s);
	else
	{
		profile_settle(s);
		profile_put(dst, trait, pz_state_copy(s, dst->mcxt));
	}
}

Profile *
profile_merge(Profile *dst, Profile *src)
{
	ProfileEntry *merged;
	int32 n = 0;
	int i = 0;
	int j = 0;

	if (src->n == 0)
		return dst;
	if (src == dst)
	{
		/* a state's merge may not read the state it folds into */
		src = profile_from_flat(profile_flatten(src));
	}
	/* refuse a kind mismatch before anything is merged */
	while (i < dst->n && j < src->n)
	{
		ProfileEntry *a = &dst->entries[i];
		ProfileEntry *b = &src->entries[j];

		if (a->trait == b->trait && a->kind != b->kind)
			profile_kind_mismatch(a->trait, a->kind, b->kind);
		i += a->trait <= b->trait;
		j += b->trait <= a->trait;
	}
	i = j = 0;
	/* one pass over both sorted entry arrays into a new array */
	merged = MemoryContextAlloc(dst->mcxt, sizeof(ProfileEntry) * (dst->n + src->n));
	while (i < dst->n || j < src->n)
	{
		if (j >= src->n || (i < dst->n && dst->entries[i].trait < src->entries[j].trait))
			merged[n++] = dst->entries[i++];
		else if (i >= dst->n || src->entries[j].trait < dst->entries[i].trait)
			profile_entry_copy(dst, &merged[n++], &src->entries[j++]);
		else
		{
			ProfileEntry *e = &dst->entries[i++];

			profile_entry_merge(dst, e, profile_entry_state(src, &src->entries[j++]));
			merged[n++] = *e;
		}
	}
	if (dst->entries != NULL)
		pfree(dst->entries);
	dst->entries = merged;
	dst->n = n;
	dst->cap = n;
	return dst;
}

/* ---------------------------------------------------------------------
 * text form: {"<trait id>": {"<kind>": <the state's text form>}, ...}
 * --------------------------------------------------------------------- */

static void
profile_bad_text(const char *detail)
{
	pz_bad_text(PROFILE_TYPE_NAME, detail,
				"Write a profile as a JSON object from trait ids to states, each state an object "
				"with one key, its kind, e.g. {\"3\": {\"last\": {\"value\": \"gold\", \"time\": "
				"\"2026-03-01 00:00:00+00\"}}}; kinds: " PROFILE_KIND_LIST ".");
}

/* A trait id written as a key: 1 .. 2^31 - 1 in decimal, no sign, no leading zero. */
static int32
profile_parse_trait(const char *key, int len)
{
	int64 v = 0;
	int i;

	for (i = 0; i < len; i++)
		if (key[i] < '0' || key[i] > '9')
			break;
	if (len < 1 || i < len || key[0] == '0')
		profile_bad_text(psprintf("\"%.*s\" is not a trait id.", Min(len, 40), key));
	for (i = 0; i < len && v <= PG_INT32_MAX; i++)
		v = v * 10 + (key[i] - '0');
	if (v > PG_INT32_MAX)
		profile_bad_text(psprintf("The trait id %.*s is out of range.", Min(len, 40), key));
	return (int32) v;
}

static PzKind
profile_kind_by_name(const char *name, int len)
{
	int k;

	for (k = 1; k < PZ_KIND_COUNT; k++)
		if (strlen(profile_kind_names[k]) == (size_t) len &&
			memcmp(profile_kind_names[k], name, len) == 0)
			return (PzKind) k;
	return 0;
}

/*
 * jsonb keeps the last of repeated keys; a profile written with one trait
 * twice must not lose a state silently.  So the text is scanned once more
 * for the keys of the outer object.
 */
typedef struct ProfileKeyScan
{
	JsonLexContext *lex;
	List *keys;
} ProfileKeyScan;

static void
profile_key_scan_field(void *arg, char *fname, bool isnull)
{
	ProfileKeyScan *scan = (ProfileKeyScan *) arg;

	if (scan->lex->lex_level == 1)
		scan->keys = lappend(scan->keys, fname);
}

static int
profile_key_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp((const char *) lfirst(a), (const char *) lfirst(b));
}

static void
profile_check_repeated_keys(char *str, int nkeys)
{
	ProfileKeyScan scan = {0};
	JsonSemAction sem = {0};
	ListCell *lc;
	const char *prev = NULL;

	scan.lex = makeJsonLexContextCstringLen(str, strlen(str), GetDatabaseEncoding(), true);
	sem.semstate = &scan;
	sem.object_field_start = profile_key_scan_field;
	if (pg_parse_json(scan.lex, &sem) != JSON_SUCCESS || list_length(scan.keys) == nkeys)
		return;
	list_sort(scan.keys, profile_key_cmp);
	foreach (lc, scan.keys)
	{
		const char *key = lfirst(lc);

		if (prev != NULL && strcmp(prev, key) == 0)
			pz_bad_text(PROFILE_TYPE_NAME,
						psprintf("The trait id \"%s\" appears more than once.", key),
						"Write each trait once; merge states with || before writing them.");
		prev = key;
	}
}

/* The state of one trait: {"<kind>": {...}}. */
static PzState *
profile_state_from_json(int32 trait, JsonbValue *v)
{
	JsonbIterator *it;
	JsonbValue key;
	JsonbValue val;
	JsonbContainer *obj;
	PzKind kind;
	PzState *s;
	ErrorContextCallback cb;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data) ||
		JsonContainerSize(v->val.binary.data) != 1)
		profile_bad_text(
			psprintf("Trait %d must hold an object with one key, the state's kind.", trait));
	it = JsonbIteratorInit(v->val.binary.data);
	(void) JsonbIteratorNext(&it, &key, true); /* WJB_BEGIN_OBJECT */
	(void) JsonbIteratorNext(&it, &key, true); /* WJB_KEY */
	(void) JsonbIteratorNext(&it, &val, true); /* WJB_VALUE */
	kind = profile_kind_by_name(key.val.string.val, key.val.string.len);
	if (kind == 0)
		profile_bad_text(psprintf("\"%.*s\" in trait %d is not a kind of trait state.",
								  Min(key.val.string.len, 40), key.val.string.val, trait));
	cb.callback = profile_trait_error_context;
	cb.arg = &trait;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	obj = pz_json_object(&val, profile_kind_names[kind], pz_kind_ops(kind)->type_name);
	s = pz_kind_ops(kind)->from_json(obj);
	error_context_stack = cb.previous;
	return s;
}

static Profile *
profile_from_text(char *str)
{
	Jsonb *jb = pz_json_parse(str, PROFILE_TYPE_NAME);
	JsonbContainer *root;
	JsonbIterator *it;
	JsonbValue v;
	JsonbIteratorToken tok;
	Profile *p = profile_new();
	int32 trait = 0;

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		profile_bad_text("The value is not a JSON object.");
	root = &jb->root;
	profile_check_repeated_keys(str, JsonContainerSize(root));
	profile_reserve(p, JsonContainerSize(root));
	it = JsonbIteratorInit(root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			trait = profile_parse_trait(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
			profile_put(p, trait, profile_state_from_json(trait, &v));
	}
	return p;
}

static void
profile_to_text(Profile *p, StringInfo buf)
{
	int i;

	appendStringInfoChar(buf, '{');
	for (i = 0; i < p->n; i++)
	{
		ProfileEntry *e = &p->entries[i];
		PzState *s = profile_entry_state(p, e);

		appendStringInfo(buf, "%s\"%d\": {\"%s\": ", i > 0 ? ", " : "", e->trait,
						 profile_kind_names[e->kind]);
		pz_kind_ops(e->kind)->to_json(s, buf);
		appendStringInfoChar(buf, '}');
	}
	appendStringInfoChar(buf, '}');
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * --------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(pz_profile_in);
Datum
pz_profile_in(PG_FUNCTION_ARGS)
{
	PG_RETURN_POINTER(profile_flatten(profile_from_text(PG_GETARG_CSTRING(0))));
}

PG_FUNCTION_INFO_V1(pz_profile_out);
Datum
pz_profile_out(PG_FUNCTION_ARGS)
{
	Profile *p = profile_from_datum(PG_GETARG_DATUM(0));
	StringInfoData buf;

	initStringInfo(&buf);
	profile_to_text(p, &buf);
	PG_RETURN_CSTRING(buf.data);
}

PG_FUNCTION_INFO_V1(pz_profile_recv);
Datum
pz_profile_recv(PG_FUNCTION_ARGS)
{
	StringInfo msg = (StringInfo) PG_GETARG_POINTER(0);
	Profile *p;

	pz_read_verifies_text = true;
	PG_TRY();
	{
		p = profile_from_bytes(msg->data + msg->cursor, msg->len - msg->cursor, true);
	}
	PG_FINALLY();
	{
		pz_read_verifies_text = false;
	}
	PG_END_TRY();
	msg->cursor = msg->len;
	/* re-flatten: what is stored is always the canonical form */
	PG_RETURN_POINTER(profile_flatten(p));
}

/* profile_merge(a, b), a || b: NULL is the empty profile. */
PG_FUNCTION_INFO_V1(pz_profile_merge);
Datum
pz_profile_merge(PG_FUNCTION_ARGS)
{
	Profile *a;
	Profile *b;

	if (PG_ARGISNULL(0) && PG_ARGISNULL(1))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(0))
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	a = profile_from_datum(PG_GETARG_DATUM(0));
	b = profile_from_datum(PG_GETARG_DATUM(1));
	PG_RETURN_POINTER(profile_flatten(profile_merge(a, b)));
}

/*
 * The kind of trait state an anyelement argument's type stands for: one of
 * the extension's eight state types, found by name in the schema of the
 * called function (the extension's schema, so a user's type of the same
 * name elsewhere is not mistaken for it).  Cached in fn_extra.
 */
typedef struct ProfileArgKind
{
	Oid typid;
	PzKind kind;
} ProfileArgKind;

static PzKind
profile_arg_kind(FunctionCallInfo fcinfo, int argno, const char *fname)
{
	FmgrInfo *flinfo = fcinfo->flinfo;
	ProfileArgKind *cache = flinfo->fn_extra;
	Oid typid = get_fn_expr_argtype(flinfo, argno);
	PzKind kind = 0;

	if (cache != NULL && cache->typid == typid)
		return cache->kind;
	if (OidIsValid(typid))
	{
		HeapTuple tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(getBaseType(typid)));
		Form_pg_type typ;
		int k;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for type %u", typid);
		typ = (Form_pg_type) GETSTRUCT(tup);
		if (typ->typnamespace == get_func_namespace(flinfo->fn_oid))
			for (k = 1; k < PZ_KIND_COUNT && kind == 0; k++)
				if (strcmp(NameStr(typ->typname), pz_kind_ops((PzKind) k)->type_name) == 0)
					kind = (PzKind) k;
		ReleaseSysCache(tup);
	}
	if (kind == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s: %s is not a trait state type", fname,
						OidIsValid(typid) ? format_type_be(typid) : "the argument"),
				 errhint("Pass a value (or a typed NULL, e.g. NULL::personalize.recent_state) "
						 "of one of the trait state types: " PROFILE_TYPE_LIST ".")));
	if (cache == NULL)
		cache = flinfo->fn_extra = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(ProfileArgKind));
	cache->typid = typid;
	cache->kind = kind;
	return kind;
}

static int32
profile_arg_trait(FunctionCallInfo fcinfo, int argno, const char *fname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("trait id of %s must not be NULL", fname),
						errhint("Pass the id of the trait to set.")));
	profile_check_trait(PG_GETARG_INT32(argno));
	return PG_GETARG_INT32(argno);
}

/*
 * profile_set(p, trait, state): p with trait's state replaced by state, of
 * whatever kind; a NULL state removes the trait, a NULL p is empty.
 */
PG_FUNCTION_INFO_V1(pz_profile_set);
Datum
pz_profile_set(PG_FUNCTION_ARGS)
{
	int32 trait = profile_arg_trait(fcinfo, 1, "profile_set");
	PzKind kind = profile_arg_kind(fcinfo, 2, "profile_set");
	Profile *p = PG_ARGISNULL(0) ? profile_new() : profile_from_datum(PG_GETARG_DATUM(0));

	if (PG_ARGISNULL(2))
		profile_remove(p, trait);
	else
		profile_put(p, trait, pz_state_from_datum(PG_GETARG_DATUM(2), kind));
	PG_RETURN_POINTER(profile_flatten(p));
}

/*
 * profile_get(p, trait, NULL::<state type>): trait's state, NULL if p holds
 * none.  The stored bytes are returned as they are: they are the state's
 * canonical flat form already.
 */
PG_FUNCTION_INFO_V1(pz_profile_get);
Datum
pz_profile_get(PG_FUNCTION_ARGS)
{
	PzKind kind = profile_arg_kind(fcinfo, 2, "profile_get");
	Profile *p;
	int32 trait;
	ProfileEntry *e;
	struct varlena *result;
	int i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	p = profile_from_datum(PG_GETARG_DATUM(0));
	trait = PG_GETARG_INT32(1);
	i = profile_find(p, trait);
	if (i < 0)
		PG_RETURN_NULL();
	e = &p->entries[i];
	if (e->kind != kind)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
						errmsg("trait %d holds a %s, not a %s", trait,
							   pz_kind_ops(e->kind)->type_name, pz_kind_ops(kind)->type_name),
						errhint("Read it as profile_get(profile, %d, NULL::personalize.%s).", trait,
								pz_kind_ops(e->kind)->type_name)));
	Assert(e->state == NULL);
	result = palloc(VARHDRSZ + e->flat_len);
	SET_VARSIZE(result, VARHDRSZ + e->flat_len);
	memcpy(VARDATA(result), e->flat, e->flat_len);
	PG_RETURN_POINTER(result);
}

PG_FUNCTION_INFO_V1(pz_profile_traits);
Datum
pz_profile_traits(PG_FUNCTION_ARGS)
{
	Profile *p = profile_from_datum(PG_GETARG_DATUM(0));
	Datum *ids = palloc(sizeof(Datum) * Max(p->n, 1));
	int i;

	for (i = 0; i < p->n; i++)
		ids[i] = Int32GetDatum(p->entries[i].trait);
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, p->n, INT4OID, 4, true, TYPALIGN_INT));
}

PG_FUNCTION_INFO_V1(pz_profile_remove);
Datum
pz_profile_remove(PG_FUNCTION_ARGS)
{
	Profile *p = profile_from_datum(PG_GETARG_DATUM(0));

	if (!profile_remove(p, PG_GETARG_INT32(1)))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	PG_RETURN_POINTER(profile_flatten(p));
}

/* ---------------------------------------------------------------------
 * merge_agg(profile): the accumulator is a Profile in the aggregate context
 * --------------------------------------------------------------------- */

/*
 * Transition: merge one stored profile in.  The input is read in the
 * per-row context; merge copies what the accumulator keeps of it into the
 * aggregate context, so nothing of a row outlives it there.
 */
PG_FUNCTION_INFO_V1(pz_profile_merge_trans);
Datum
pz_profile_merge_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "merge_agg");
	Profile *acc = PG_ARGISNULL(0) ? NULL : (Profile *) PG_GETARG_POINTER(0);

	if (PG_ARGISNULL(1))
	{
		if (acc == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(acc);
	}
	if (acc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(aggcontext);

		acc = profile_new();
		MemoryContextSwitchTo(old);
	}
	profile_merge(acc, profile_from_datum(PG_GETARG_DATUM(1)));
	PG_RETURN_POINTER(acc);
}

PG_FUNCTION_INFO_V1(pz_profile_agg_combine);
Datum
pz_profile_agg_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "pz_profile_agg_combine");
	Profile *a = PG_ARGISNULL(0) ? NULL : (Profile *) PG_GETARG_POINTER(0);
	Profile *b = PG_ARGISNULL(1) ? NULL : (Profile *) PG_GETARG_POINTER(1);

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
	{
		/* b may live in a shorter-lived context: the accumulator is a copy */
		MemoryContext old = MemoryContextSwitchTo(aggcontext);

		a = profile_new();
		MemoryContextSwitchTo(old);
	}
	PG_RETURN_POINTER(profile_merge(a, b));
}

/* serialize and final: the flat form */
PG_FUNCTION_INFO_V1(pz_profile_agg_flatten);
Datum
pz_profile_agg_flatten(PG_FUNCTION_ARGS)
{
	PG_RETURN_POINTER(profile_flatten((Profile *) PG_GETARG_POINTER(0)));
}

/*
 * Deserialize: the framing is read now, the states when combine merges
 * them; the profile points into the serialized bytes, which live as long as
 * the combine call that follows, and combine copies what it keeps.
 */
PG_FUNCTION_INFO_V1(pz_profile_agg_deserialize);
Datum
pz_profile_agg_deserialize(PG_FUNCTION_ARGS)
{
	pz_agg_context(fcinfo, "pz_profile_agg_deserialize");
	PG_RETURN_POINTER(profile_from_flat(PG_GETARG_BYTEA_PP(0)));
}
