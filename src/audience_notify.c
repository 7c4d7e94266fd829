/*
 * audience_notify.c
 *	  The NOTIFY of audience entries and exits, sent when the transaction
 *	  that wrote them commits (docs/audiences.md, "Reactions").
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "audience_internal.h"

#define NOTIFY_CHANNEL "personalize_audiences"

/*
 * NOTIFY personalize_audiences, one payload per audience that changed in
 * the transaction, sent at its commit:
 * {"audience": ..., "entered": n, "exited": n, "first_event": id, "last_event": id}.
 * A transaction may write the events of one audience in several
 * statements (a merge's exits, then the batch's entries): their counts are
 * gathered per audience, per subtransaction level, and a subtransaction
 * that aborts takes its counts with it.
 */
typedef struct NoteCount
{
	char *audience;
	int level; /* the (sub)transaction nest level that wrote them */
	int64 entered, exited, first, last;
} NoteCount;

static List *pending_notes = NIL; /* of NoteCount, in TopTransactionContext */

void
aud_notify_event(const char *audience, bool entered, int64 id)
{
	int level = GetCurrentTransactionNestLevel();
	NoteCount *c = NULL;
	ListCell *lc;

	foreach (lc, pending_notes)
	{
		NoteCount *x = lfirst(lc);

		if (x->level == level && strcmp(x->audience, audience) == 0)
		{
			c = x;
			break;
		}
	}
	if (c == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		c = palloc0(sizeof(NoteCount));
		c->audience = pstrdup(audience);
		c->level = level;
		c->first = c->last = id;
		pending_notes = lappend(pending_notes, c);
		MemoryContextSwitchTo(old);
	}
	if (entered)
		c->entered++;
	else
		c->exited++;
	c->first = Min(c->first, id);
	c->last = Max(c->last, id);
}

void
aud_notify_events(SPITupleTable *tt, uint64 n)
{
	for (uint64 i = 0; i < n; i++)
	{
		bool isnull;
		char *aud = TextDatumGetCString(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		bool entered = DatumGetBool(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
		int64 id = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));

		aud_notify_event(aud, entered, id);
		pfree(aud);
	}
}

/* at pre-commit: one payload per audience */
static void
notify_send(void)
{
	List *sent = NIL;
	ListCell *lc, *lc2;

	foreach (lc, pending_notes)
	{
		NoteCount *c = lfirst(lc);
		NoteCount sum = *c;
		StringInfoData p;
		bool done = false;

		foreach (lc2, sent)
			if (strcmp((char *) lfirst(lc2), c->audience) == 0)
				done = true;
		if (done)
			continue;
		for_each_cell(lc2, pending_notes, lnext(pending_notes, lc))
		{
			NoteCount *x = lfirst(lc2);

			if (strcmp(x->audience, c->audience) != 0)
				continue;
			sum.entered += x->entered;
			sum.exited += x->exited;
			sum.first = Min(sum.first, x->first);
			sum.last = Max(sum.last, x->last);
		}
		sent = lappend(sent, c->audience);
		initStringInfo(&p);
		appendStringInfoString(&p, "{\"audience\": ");
		escape_json(&p, sum.audience);
		appendStringInfo(&p,
						 ", \"entered\": " INT64_FORMAT ", \"exited\": " INT64_FORMAT
						 ", \"first_event\": " INT64_FORMAT ", \"last_event\": " INT64_FORMAT "}",
						 sum.entered, sum.exited, sum.first, sum.last);
		Async_Notify(NOTIFY_CHANNEL, p.data);
	}
	pending_notes = NIL;
}

static void
notify_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (pending_notes != NIL)
				notify_send();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			pending_notes = NIL; /* TopTransactionContext is gone */
			break;
		default:
			break;
	}
}

static void
notify_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid,
						void *arg)
{
	int level = GetCurrentTransactionNestLevel();
	ListCell *lc;

	if (pending_notes == NIL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach (lc, pending_notes)
			if (((NoteCount *) lfirst(lc))->level >= level)
				pending_notes = foreach_delete_current(pending_notes, lc);
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach (lc, pending_notes)
			if (((NoteCount *) lfirst(lc))->level >= level)
				((NoteCount *) lfirst(lc))->level = level - 1;
	}
}

void
aud_notify_init(void)
{
	RegisterXactCallback(notify_xact_callback, NULL);
	RegisterSubXactCallback(notify_subxact_callback, NULL);
}
