/*
 * audience_store.c
 *	  Entries and exits written as catalog code writes rows: per change, a
 *	  row of personalize.audience_memberships inserted (an entry) or deleted
 *	  (an exit), and a row appended to personalize.audience_events, with
 *	  their index entries, without the executor.
 *
 * The runs (audience_run.c) write every change this way when the two tables
 * are plain.  The SQL statement they used before (one per flush: the changes
 * unnested, a CTE deleting and one inserting memberships, a join to
 * personalize.audiences for the names, a sort, RETURNING) cost the streaming
 * worker about 12 µs per change, most of what a batch with twenty audiences
 * spent writing.  The rows and index entries are the same; the statement's
 * machinery is gone.
 *
 * Plain means what catalog code maintains: no trigger, no rule, no
 * row-level security, no check but the extension's own, and indexes
 * without expressions, predicates, exclusion or deferred checks.
 * Otherwise store_open says no and the run uses the SQL statement, so that
 * a user's trigger on audience_events (a consumer) still fires.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "audience_internal.h"

static const char *const membership_columns[] = {"audience_id", "profile_id", "since"};
static const Oid membership_types[] = {INT4OID, INT8OID, TIMESTAMPTZOID};
static const char *const event_columns[] = {"id", "audience", "profile_id", "entered", "at", "why"};
static const Oid event_types[] = {INT8OID, TEXTOID, INT8OID, BOOLOID, TIMESTAMPTZOID, TEXTOID};

/* the reasons audience_events.why takes, as its check (audience_events_why_check) says */
static const char *const event_reasons[] = {"event",   "erasure", "merge", "rebuild",
											"refresh", "split",   "time"};

typedef struct AudStore
{
	Relation members;
	CatalogIndexState members_ind;
	Relation members_pk;
	Relation events;
	CatalogIndexState events_ind;
	Oid events_seq;
} AudStore;

/* an ordinary heap table with the columns, in order, of the types, as the extension made it */
static bool
store_columns_are(Relation rel, const char *const *columns, const Oid *types, int n)
{
	TupleDesc td = RelationGetDescr(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID ||
		rel->rd_rel->relhassubclass || td->natts != n)
		return false;
	for (int i = 0; i < n; i++)
		if (TupleDescAttr(td, i)->attisdropped || TupleDescAttr(td, i)->atttypid != types[i] ||
			strcmp(NameStr(TupleDescAttr(td, i)->attname), columns[i]) != 0)
			return false;
	return true;
}

/*
 * Nothing that the executor maintains and catalog code does not: a check
 * other than the extension's own (own_check, or NULL: none; the rows
 * written pass it), triggers (foreign keys too), rules, row-level
 * security, indexes with expressions, predicates, exclusion or deferred
 * checks.
 */
static bool
store_plain(Relation rel, CatalogIndexState ind, const char *own_check)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	if (rel->trigdesc != NULL || rel->rd_rules != NULL ||
		check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED)
		return false;
	for (int i = 0; constr != NULL && i < constr->num_check; i++)
		if (own_check == NULL || strcmp(constr->check[i].ccname, own_check) != 0)
			return false;
	return pz_indexes_catalog_maintained(ind);
}

static void
store_close(AudStore *st)
{
	if (st->members_pk != NULL)
		index_close(st->members_pk, NoLock);
	if (st->members_ind != NULL)
		CatalogCloseIndexes(st->members_ind);
	if (st->events_ind != NULL)
		CatalogCloseIndexes(st->events_ind);
	/* the locks are kept until the transaction ends, as a statement's are */
	if (st->members != NULL)
		table_close(st->members, NoLock);
	if (st->events != NULL)
		table_close(st->events, NoLock);
}

/*
 * Open both tables for writing; false (nothing kept open) if they are not
 * plain, not as this library lays them out, or the current user may not
 * write them: the caller then uses its SQL statement, which raises what
 * must be raised.
 */
static bool
store_open(AudStore *st)
{
	Oid nsp = get_namespace_oid("personalize", false);
	Oid members = get_relname_relid("audience_memberships", nsp);
	Oid events = get_relname_relid("audience_events", nsp);
	Oid pk;

	memset(st, 0, sizeof(AudStore));
	if (!OidIsValid(members) || !OidIsValid(events))
		return false;
	st->members = table_open(members, RowExclusiveLock);
	st->events = table_open(events, RowExclusiveLock);
	if (!store_columns_are(st->members, membership_columns, membership_types,
						   lengthof(membership_columns)) ||
		!store_columns_are(st->events, event_columns, event_types, lengthof(event_columns)) ||
		!pz_table_privileges_all(members, GetUserId(), ACL_SELECT | ACL_INSERT | ACL_DELETE) ||
		!pz_table_privileges_all(events, GetUserId(), ACL_INSERT) ||
		!OidIsValid(pk = RelationGetPrimaryKeyIndex(st->members)) ||
		!OidIsValid(st->events_seq = getIdentitySequence(events, 1, true)))
	{
		store_close(st);
		return false;
	}
	st->members_ind = CatalogOpenIndexes(st->members);
	st->events_ind = CatalogOpenIndexes(st->events);
	st->members_pk = index_open(pk, RowExclusiveLock);
	/* the primary key on (profile_id, audience_id), as the extension made it */
	if (!store_plain(st->members, st->members_ind, NULL) ||
		!store_plain(st->events, st->events_ind, "audience_events_why_check") ||
		st->members_pk->rd_index->indnkeyatts != 2 ||
		st->members_pk->rd_index->indkey.values[0] != 2 ||
		st->members_pk->rd_index->indkey.values[1] != 1)
	{
		store_close(st);
		return false;
	}
	return true;
}

/*
 * An exit: the membership row goes (none: nothing to delete).  A row that
 * a session changed or deleted meanwhile (by hand: every writer of
 * memberships takes the lock the caller holds) is waited for and looked
 * up again, as a READ COMMITTED DELETE would.
 */
static void
store_delete_member(AudStore *st, IndexScanDesc scan, TupleTableSlot *slot, int64 profile_id,
					int32 audience_id)
{
	ScanKeyData key[2];

	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(profile_id));
	ScanKeyInit(&key[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(audience_id));
	for (;;)
	{
		TM_FailureData tmfd;
		TM_Result result;

		index_rescan(scan, key, 2, NULL, 0);
		if (!index_getnext_slot(scan, ForwardScanDirection, slot))
			break;
		result = heap_delete(st->members, &slot->tts_tid, GetCurrentCommandId(true),
							 InvalidSnapshot, true /* wait */, &tmfd, false);
		ExecClearTuple(slot);
		if (result == TM_Ok)
			break;
		if (result != TM_Updated && result != TM_Deleted)
			elog(ERROR, "personalize audiences: unexpected result %d deleting a membership",
				 (int) result);
	}
	ExecClearTuple(slot);
}

/*
 * Write n changes, in order: change i is profile pid[i] entering
 * (entered[i]) or leaving audience aud[i], named names[i], at at, for why;
 * each event is noted for the commit's NOTIFY.  False, with nothing
 * written, if the tables are not plain (above): the caller writes them
 * with SQL.  The caller holds the membership writers' lock.
 */
bool
aud_store_changes(int n, const int32 *aud, const char *const *names, const int64 *pid,
				  const bool *entered, TimestampTz at, const char *why)
{
	AudStore st;
	IndexScanDesc scan = NULL;
	TupleTableSlot *slot = NULL;
	Datum why_text;
	bool reason = false;

	if (n == 0)
		return true;
	/* a reason the check does not know: the SQL statement raises its error */
	for (int i = 0; i < (int) lengthof(event_reasons); i++)
		reason |= strcmp(why, event_reasons[i]) == 0;
	if (!reason || !store_open(&st))
		return false;
	why_text = CStringGetTextDatum(why);
	for (int i = 0; i < n; i++)
	{
		HeapTuple tup;
		int64 id;

		if (entered[i])
		{
			Datum v[3] = {Int32GetDatum(aud[i]), Int64GetDatum(pid[i]), TimestampTzGetDatum(at)};
			bool nulls[3] = {false, false, false};

			tup = heap_form_tuple(RelationGetDescr(st.members), v, nulls);
			CatalogTupleInsertWithInfo(st.members, tup, st.members_ind);
			heap_freetuple(tup);
		}
		else
		{
			if (scan == NULL)
			{
				/* deletes need a replica identity where a publication publishes them */
				CheckCmdReplicaIdentity(st.members, CMD_DELETE);
				slot = table_slot_create(st.members, NULL);
				scan = index_beginscan(st.members, st.members_pk, SnapshotSelf, 2, 0);
			}
			store_delete_member(&st, scan, slot, pid[i], aud[i]);
		}
		/* as the column's identity default takes it: no privilege of its own checked */
		id = nextval_internal(st.events_seq, false);
		{
			Datum v[6] = {Int64GetDatum(id),       CStringGetTextDatum(names[i]),
						  Int64GetDatum(pid[i]),   BoolGetDatum(entered[i]),
						  TimestampTzGetDatum(at), why_text};
			bool nulls[6] = {false, false, false, false, false, false};

			tup = heap_form_tuple(RelationGetDescr(st.events), v, nulls);
			CatalogTupleInsertWithInfo(st.events, tup, st.events_ind);
			heap_freetuple(tup);
			pfree(DatumGetPointer(v[1]));
		}
		aud_notify_event(names[i], entered[i], id);
	}
	if (scan != NULL)
	{
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
	}
	store_close(&st);
	elog(DEBUG1, "personalize audiences: %d entries and exits written directly", n);
	/* what follows in the transaction (the next flush's reads) sees them */
	CommandCounterIncrement();
	return true;
}
