-- bench/audiences/time.sql: the time-driven measurements of
-- bench/audiences/run.
--
--   CALL time_load(first_customer, n, t0, spread, idle)
--       one transaction: n orders of new customers first_customer + 1 ..
--       + n, the i-th dated t0 + (i - 1) * spread / n - idle, so that its
--       profile's last_seen < now() - idle (audience idle) becomes true at
--       the known moment t0 + (i - 1) * spread / n: n moments, evenly
--       spread over [t0, t0 + spread).  t0 must be far enough ahead for the
--       worker to have applied them all before the first moment.
--
--   CALL watch_events(label, until)
--       every 2 ms until `until`: max(id) of personalize.audience_events as
--       another session sees it (one statement, one snapshot, COMMIT
--       between), into watch_samples: the moment each entry became visible
--       is the first sample whose max(id) reaches its id (the worker is the
--       only writer of audience events while it runs).
--
--   CALL poll_view(label, first_at, until, conditions)
--       what a user without audiences would run instead: from first_at,
--       once a second (at first_at + k s; at once if the previous poll ran
--       past it), one query of personalize.profile_view for the conditions,
--       the result kept in a temporary table and diffed against the
--       previous poll's: the profiles that newly meet a condition are
--       entries, written to poll_entries (known when the poll's diff was
--       done: poll_runs.diffed).
--       One condition: SELECT profile_id FROM personalize.profile_view WHERE
--       <condition>.  More: one query, a bit per condition (profile_id and a
--       mask, the rows whose mask is not 0), entries and exits per bit.
--       Each poll's wall time and the backend's CPU (utime + stime of
--       /proc/self/stat, in clock ticks) go to poll_runs.  The first poll
--       is the baseline (no entries).  Each poll is a transaction of its
--       own, so now() is the poll's start.
CREATE TABLE watch_samples (
    label  text NOT NULL,
    t      timestamptz NOT NULL,
    max_id bigint
);
-- an entry's first sample: the least max_id >= its id (max_id never goes down)
CREATE INDEX ON watch_samples (label, max_id, t);

CREATE TABLE poll_runs (
    label     text NOT NULL,
    poll      integer NOT NULL,
    started   timestamptz NOT NULL,
    queried   timestamptz NOT NULL,   -- the query's result is there
    diffed    timestamptz NOT NULL,   -- entries and exits known
    rows      bigint NOT NULL,        -- profiles meeting a condition
    entered   bigint,
    exited    bigint,
    cpu_ticks bigint NOT NULL,        -- the backend's CPU during the poll
    late      boolean NOT NULL        -- started late: the poll before ran past this one's second
);

CREATE TABLE poll_entries (
    label      text NOT NULL,
    poll       integer NOT NULL,
    profile_id bigint NOT NULL,
    entered    integer NOT NULL       -- the bits (conditions) it newly meets; known at poll_runs.diffed
);

CREATE PROCEDURE time_load(first_customer bigint, n integer, t0 timestamptz, spread interval, idle interval)
LANGUAGE sql AS $$
    INSERT INTO orders (customer_id, sku, category, amount, ordered_at)
    SELECT first_customer + i, 'sku-t', 'cat-t', 1, t0 + (i - 1) * spread / n - idle
      FROM generate_series(1, n) i;
$$;

CREATE PROCEDURE watch_events(label text, until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    ts timestamptz[] := '{}';
    ids bigint[] := '{}';
    m bigint;
BEGIN
    WHILE clock_timestamp() < until LOOP
        COMMIT;
        SELECT max(id) INTO m FROM personalize.audience_events;
        ts := ts || clock_timestamp();
        ids := ids || m;
        PERFORM pg_sleep(0.002);
    END LOOP;
    INSERT INTO watch_samples SELECT label, ts[i], ids[i] FROM generate_subscripts(ts, 1) i;
END $$;

-- CPU ticks (user + system) this backend has used
CREATE FUNCTION backend_cpu_ticks() RETURNS bigint
LANGUAGE sql AS $$
    SELECT split_part(s, ' ', 12)::bigint + split_part(s, ' ', 13)::bigint
      FROM (SELECT split_part(pg_read_file('/proc/self/stat'), ') ', 2) AS s) q
$$;

CREATE PROCEDURE poll_view(label text, first_at timestamptz, until timestamptz, conditions text[])
LANGUAGE plpgsql AS $$
DECLARE
    q text;
    k integer := 0;
    next_at timestamptz := first_at;
    is_late boolean := false;
    t0 timestamptz;
    t1 timestamptz;
    c0 bigint;
    nrows bigint;
    ne bigint;
    nx bigint;
BEGIN
    IF cardinality(conditions) = 1 THEN
        q := format('SELECT profile_id, 1 AS mask FROM personalize.profile_view WHERE %s', conditions[1]);
    ELSE
        q := format('SELECT * FROM (SELECT profile_id, %s AS mask FROM personalize.profile_view) v WHERE mask <> 0',
                    (SELECT string_agg(format('CASE WHEN %s THEN %s ELSE 0 END', c, 1 << (i - 1)::integer), ' | ')
                       FROM unnest(conditions) WITH ORDINALITY u(c, i)));
    END IF;
    CREATE TEMP TABLE poll_prev (profile_id bigint, mask integer);
    LOOP
        IF clock_timestamp() < next_at THEN
            PERFORM pg_sleep(extract(epoch FROM next_at - clock_timestamp()));
        END IF;
        EXIT WHEN clock_timestamp() >= until;
        COMMIT;                     -- the poll's own transaction: now() is now
        k := k + 1;
        t0 := clock_timestamp();
        c0 := backend_cpu_ticks();
        EXECUTE 'CREATE TEMP TABLE poll_cur AS ' || q;
        GET DIAGNOSTICS nrows = ROW_COUNT;
        t1 := clock_timestamp();
        ne := NULL;
        nx := NULL;
        IF k > 1 THEN
            INSERT INTO poll_entries
            SELECT label, k, c.profile_id, c.mask & ~coalesce(p.mask, 0)
              FROM poll_cur c LEFT JOIN poll_prev p USING (profile_id)
             WHERE c.mask & ~coalesce(p.mask, 0) <> 0;
            GET DIAGNOSTICS ne = ROW_COUNT;
            SELECT count(*) INTO nx
              FROM poll_prev p LEFT JOIN poll_cur c USING (profile_id)
             WHERE p.mask & ~coalesce(c.mask, 0) <> 0;
        END IF;
        DROP TABLE poll_prev;
        ALTER TABLE poll_cur RENAME TO poll_prev;
        INSERT INTO poll_runs
        VALUES (label, k, t0, t1, clock_timestamp(), nrows, ne, nx, backend_cpu_ticks() - c0, is_late);
        next_at := next_at + interval '1 second';
        is_late := next_at < clock_timestamp();
        IF is_late THEN
            next_at := clock_timestamp();
        END IF;
    END LOOP;
    DROP TABLE poll_prev;
END $$;
