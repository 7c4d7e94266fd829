/*
 * audience_worker.c
 *	  The streaming worker's side of audiences, between batches: the
 *	  profiles whose scheduled moment has come (personalize.audience_due,
 *	  written by audience_run.c as audience_time.c finds the moments),
 *	  evaluated in a run of why "time"; and the retention of audience
 *	  events.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/hsearch.h"

#include "audience_internal.h"

/* when this process last read the schedule's earliest moment */
static TimestampTz schedule_read_at = 0;

bool
pz_audiences_due(TimestampTz now)
{
	if (aud_next_due_hint != DT_NOBEGIN && aud_next_due_hint <= now)
		return true;
	if (TimestampDifferenceExceeds(schedule_read_at, now, pz_audience_delay))
		return true;
	return false;
}

uint64
pz_audiences_apply_due(int limit)
{
	PzAudienceRun *run;
	TimestampTz now = GetCurrentTimestamp();
	uint64 changes = 0;
	Datum v[2];
	bool isnull;

	schedule_read_at = now;
	if (!OidIsValid(aud_relid()))
	{
		aud_next_due_hint = DT_NOBEGIN;
		return 0;
	}
	run = pz_audience_run_begin("time", 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	v[0] = TimestampTzGetDatum(now);
	v[1] = Int64GetDatum(limit);
	if (run == NULL)
	{
		/* no audience any more: nothing is due */
		if (SPI_execute_with_args("DELETE FROM personalize.audience_due d WHERE d.due <= $1", 1,
								  (Oid[]){TIMESTAMPTZOID}, v, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "personalize audiences: could not clean the schedule");
		aud_cache_clear();
	}
	else
	{
		/*
		 * The profiles due, by the schedule's index, then their rows by the
		 * primary key (one query with IN (subquery) was planned as a hash
		 * join over every profile); the moments of profiles that are gone
		 * are deleted.
		 */
		int64 *ids;
		int nids;
		HTAB *found;
		HASHCTL info = {0};
		int64 *gone;
		int ngone = 0;

		if (SPI_execute_with_args("SELECT d.profile_id FROM personalize.audience_due d "
								  "WHERE d.due <= $1 ORDER BY d.due LIMIT $2",
								  2, (Oid[]){TIMESTAMPTZOID, INT8OID}, v, NULL, false,
								  0) != SPI_OK_SELECT)
			elog(ERROR, "personalize audiences: could not read the schedule");
		nids = (int) SPI_processed;
		ids = palloc(sizeof(int64) * Max(nids, 1));
		for (int i = 0; i < nids; i++)
			ids[i] = DatumGetInt64(
				SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		info.keysize = sizeof(int64);
		info.entrysize = sizeof(int64);
		info.hcxt = CurrentMemoryContext;
		found = hash_create("personalize due profiles", Max(nids, 16), &info,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		if (nids > 0)
		{
			v[0] = PointerGetDatum(aud_int8_array(ids, nids));
			if (SPI_execute_with_args(psprintf("%s WHERE p.id = ANY ($1)", aud_profile_row_sql), 1,
									  (Oid[]){INT8ARRAYOID}, v, NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "personalize audiences: could not read the profiles due");
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				int64 id = DatumGetInt64(
					SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

				(void) hash_search(found, &id, HASH_ENTER, NULL);
				pz_audience_run_add(run, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
			}
		}
		gone = palloc(sizeof(int64) * Max(nids, 1));
		for (int i = 0; i < nids; i++)
			if (hash_search(found, &ids[i], HASH_FIND, NULL) == NULL)
				gone[ngone++] = ids[i];
		if (ngone > 0)
		{
			v[0] = PointerGetDatum(aud_int8_array(gone, ngone));
			if (SPI_execute_with_args(
					"DELETE FROM personalize.audience_due WHERE profile_id = ANY ($1)", 1,
					(Oid[]){INT8ARRAYOID}, v, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "personalize audiences: could not clean the schedule");
			for (int i = 0; i < ngone; i++)
				aud_cache_forget(gone[i]);
		}
	}
	SPI_finish();
	if (run != NULL)
		changes = pz_audience_run_end(run);

	/* the earliest moment left */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	if (SPI_execute("SELECT min(due) FROM personalize.audience_due", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize audiences: could not read the schedule");
	{
		Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		aud_next_due_hint = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
	}
	SPI_finish();
	return changes;
}

uint64
pz_audiences_expire_events(int limit)
{
	Datum v[2];
	uint64 n;

	if (pz_audience_retention <= 0 || !OidIsValid(aud_relid()))
		return 0;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize audiences: SPI_connect failed");
	v[0] = TimestampTzGetDatum(GetCurrentTimestamp() -
							   (TimestampTz) pz_audience_retention * USECS_PER_SEC);
	v[1] = Int64GetDatum(limit);
	/*
	 * Events are written in the order of their time (every writer holds the
	 * membership lock until it commits, and at is when it wrote): the oldest
	 * by id, up to the first that is recent enough, through the primary key.
	 */
	if (SPI_execute_with_args(
			"DELETE FROM personalize.audience_events WHERE id <= (SELECT max(x.id) FROM "
			"(SELECT e.id FROM personalize.audience_events e ORDER BY e.id LIMIT $2) x) "
			"AND at < $1",
			2, (Oid[]){TIMESTAMPTZOID, INT8OID}, v, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "personalize audiences: could not delete old events");
	n = SPI_processed;
	SPI_finish();
	return n;
}
