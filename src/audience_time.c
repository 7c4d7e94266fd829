/*
 * audience_time.c
 *	  Transitions driven by time: the next moment an audience's result for
 *	  a profile changes with no new event (the worker's passes over the
 *	  moments that have come are in audience_worker.c).
 *
 * For each profile and each condition that reads a window or the clock,
 * the run finds the next moment its result changes: the moments its
 * windowed columns change (a bucket entering or leaving a window) and its
 * clock comparisons flip are the only ones at which it can, so it
 * evaluates the condition at those, in order, as of each.  The earliest
 * over a profile's audiences is its row in personalize.audience_due, and
 * the worker re-evaluates the profile when that moment has come.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "audience_internal.h"
#include "windowed.h"

/* windowed changes looked at per column and profile before a re-check is scheduled */
#define WINDOW_LOOKAHEAD 16
/* the clock is searched this far ahead for a comparison's flip */
#define CLOCK_HORIZON_US ((int64) 200 * 366 * USECS_PER_DAY)

/* ---- the clock, and the terms that read only it ---- */

void
aud_set_clock(PzAudienceRun *run, RunAudience *a, TimestampTz t)
{
	run->params->params[0].value = TimestampTzGetDatum(t);
	run->clock_aud = a;
	run->clock_epoch++;
	run->clock_moment = t == run->now                      ? 0
						: t == run->now + USECS_PER_DAY    ? 1
						: t == run->now + CLOCK_HORIZON_US ? 2
														   : -1;
}

/*
 * Parameter 1 is the clock; parameter 2 + j term j of the audience being
 * evaluated, computed at the clock's moment when first read (a term under
 * a branch not taken is not computed, as in the condition itself), and
 * kept for the rest of the run if the moment is one of the fixed ones.
 */
ParamExternData *
aud_fetch_param(ParamListInfo params, int paramid, bool speculative, ParamExternData *workspace)
{
	PzAudienceRun *run = params->paramFetchArg;
	RunAudience *a = run->clock_aud;
	int m = run->clock_moment;
	RunTerm *term;

	if (paramid == 1 || a == NULL || paramid - 2 >= a->nterms)
		return &params->params[paramid - 1];
	term = &a->terms[paramid - 2];
	if (m >= 0 && term->memo_ok[m])
	{
		workspace->value = term->memo[m];
		workspace->isnull = term->memo_null[m];
	}
	else
	{
		if (term->epoch != run->clock_epoch)
		{
			/* in the row's memory: read only until the clock is set again */
			term->cur = ExecEvalExprSwitchContext(term->expr, run->econtext, &term->cur_null);
			term->epoch = run->clock_epoch;
		}
		workspace->value = term->cur;
		workspace->isnull = term->cur_null;
		if (m >= 0)
		{
			MemoryContext old = MemoryContextSwitchTo(run->cxt);

			term->memo[m] =
				term->cur_null ? (Datum) 0 : datumCopy(term->cur, term->typbyval, term->typlen);
			MemoryContextSwitchTo(old);
			term->memo_null[m] = term->cur_null;
			term->memo_ok[m] = true;
		}
	}
	workspace->pflags = PARAM_FLAG_CONST;
	workspace->ptype = term->type;
	return workspace;
}

/* a side's value in microseconds, for an estimate; false if it is not a time */
static bool
side_usecs(RunAudience *a, ExprState *side, Oid type, PzAudienceRun *run, TimestampTz t,
		   double *out)
{
	bool isnull;
	Datum d;

	aud_set_clock(run, a, t);
	d = ExecEvalExprSwitchContext(side, run->econtext, &isnull);
	if (isnull)
		return false;
	switch (type)
	{
		case TIMESTAMPTZOID:
		case TIMESTAMPOID:
			*out = (double) DatumGetInt64(d);
			return true;
		case DATEOID:
			*out = (double) DatumGetDateADT(d) * USECS_PER_DAY;
			return true;
		case INTERVALOID:
		{
			Interval *i = DatumGetIntervalP(d);

			*out = (double) i->time + (double) i->day * USECS_PER_DAY +
				   (double) i->month * DAYS_PER_MONTH * USECS_PER_DAY;
			return true;
		}
		default:
			return false;
	}
}

/*
 * The first moment after now at which an atom (a comparison monotone in
 * the clock) has another value, to the microsecond; 0 if none within
 * CLOCK_HORIZON_US, or before bound if bound is not 0 (a moment already
 * known to come first: a flip after it does not matter).  Monotone: if it
 * has the same value at the horizon as now, it never flips before it (two
 * evaluations).  Otherwise the flip is estimated
 * from its two sides (the side with the clock moves about linearly with
 * it: now() - interval '30 days' crosses last_seen 30 days after it),
 * bracketed by steps growing from the estimate, and found by halving: a
 * few evaluations when the estimate is exact, as it is for intervals of
 * time, and still exact when it is not (months, daylight saving, dates).
 */
static TimestampTz
atom_flip(RunAudience *a, RunAtom *atom, PzAudienceRun *run, TimestampTz bound)
{
	TimestampTz now = run->now;
	TimestampTz horizon =
		bound != 0 && bound < now + CLOCK_HORIZON_US ? bound : now + CLOCK_HORIZON_US;
	int v0 = eval_at(a, atom->cmp, run, now);
	TimestampTz est = now + 1, lo, hi;
	double o, s0, s1;
	int64 step = 1;

	if (eval_at(a, atom->cmp, run, horizon) == v0)
		return 0;
	if (side_usecs(a, atom->other_side, atom->other_type, run, now, &o) &&
		side_usecs(a, atom->clock_side, atom->clock_type, run, now, &s0) &&
		side_usecs(a, atom->clock_side, atom->clock_type, run, now + USECS_PER_DAY, &s1) &&
		s1 != s0)
	{
		double at = (double) now + (o - s0) * (double) USECS_PER_DAY / (s1 - s0);

		if (at > (double) now && at < (double) horizon)
			est = (TimestampTz) at;
	}
	if (eval_at(a, atom->cmp, run, est) != v0)
	{
		/* flipped at est: find a moment before it that is not */
		hi = est;
		for (;;)
		{
			lo = hi - step > now ? hi - step : now;
			if (lo == now || eval_at(a, atom->cmp, run, lo) == v0)
				break;
			hi = lo;
			step *= 4;
		}
	}
	else
	{
		lo = est;
		for (;;)
		{
			hi = lo + step < horizon ? lo + step : horizon;
			if (hi == horizon || eval_at(a, atom->cmp, run, hi) != v0)
				break;
			lo = hi;
			step *= 4;
		}
	}
	while (hi - lo > 1)
	{
		TimestampTz mid = lo + (hi - lo) / 2;

		if (eval_at(a, atom->cmp, run, mid) != v0)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/*
 * The next moment after now at which audience a's result for the row in
 * the slot (now: current) changes with time alone; 0 if never.  Exact:
 * only where a windowed column changes or a clock comparison flips can it
 * change, and it is evaluated there, in order.  If a column has more
 * changes than were looked at, the last one looked at is returned: the
 * profile is looked at again then.  A bound (not 0) is a moment already
 * scheduled for the row by another audience: what comes after it is not
 * looked for, and 0 is returned then (the row is looked at again at the
 * bound, and its next moments are found from there).
 */
TimestampTz
aud_run_schedule(PzAudienceRun *run, RunAudience *a, int current, TimestampTz bound)
{
	const PcSpec *spec = run->spec;
	int max = a->nwindows * WINDOW_LOOKAHEAD + a->natoms;
	TimestampTz *cand = palloc(sizeof(TimestampTz) * Max(max, 1));
	TimestampTz horizon = DT_NOEND, found = 0;
	Datum *saved = palloc(sizeof(Datum) * Max(a->nwindows, 1));
	bool *saved_null = palloc(sizeof(bool) * Max(a->nwindows, 1));
	int n = 0;

	for (int w = 0; w < a->nwindows; w++)
	{
		const PcColumn *col = &spec->cols[a->windows[w]];
		PzState *st = run->states[col->slot];
		bool more;
		int got;

		saved[w] = run->slot->tts_values[PZ_VIEW_NBASE + a->windows[w]];
		saved_null[w] = run->slot->tts_isnull[PZ_VIEW_NBASE + a->windows[w]];
		if (st == NULL)
			continue;
		got = windowed_changes((WindowedState *) st, col->span, run->now, cand + n,
							   WINDOW_LOOKAHEAD, &more);
		if (more && got > 0 && cand[n + got - 1] < horizon)
			horizon = cand[n + got - 1];
		n += got;
	}
	for (int i = 0; i < a->natoms; i++)
	{
		TimestampTz f = atom_flip(a, &a->atoms[i], run, bound);

		if (f != 0)
			cand[n++] = f;
	}
	if (bound != 0 && bound < horizon)
		horizon = bound;
	qsort(cand, n, sizeof(TimestampTz), pz_timestamp_cmp);
	for (int i = 0; i < n && found == 0; i++)
	{
		TimestampTz t = cand[i];

		if (t > horizon)
			break;
		if (i > 0 && t == cand[i - 1])
			continue;
		for (int w = 0; w < a->nwindows; w++)
		{
			const PcColumn *col = &spec->cols[a->windows[w]];

			run->slot->tts_values[PZ_VIEW_NBASE + a->windows[w]] =
				pc_column_value(col, run->states[col->slot], t,
								&run->slot->tts_isnull[PZ_VIEW_NBASE + a->windows[w]], NULL);
		}
		if (eval_at(a, a->state, run, t) != current)
			found = t;
	}
	for (int w = 0; w < a->nwindows; w++)
	{
		run->slot->tts_values[PZ_VIEW_NBASE + a->windows[w]] = saved[w];
		run->slot->tts_isnull[PZ_VIEW_NBASE + a->windows[w]] = saved_null[w];
	}
	if (found == 0 && horizon != DT_NOEND && horizon != bound)
		found = horizon;
	return found;
}
