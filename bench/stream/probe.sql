-- bench/stream/probe.sql: the freshness probe of bench/stream/run.
--
--   CALL stream_probe(seconds, first_customer, label, mode, timeout)
--
-- for `seconds`: inserts one order of a customer id never seen before
-- (first_customer + 1, + 2, ...) and commits; takes the time right after the
-- commit returns; waits until the worker has made the customer's profile,
-- and takes the time again.  The difference is the commit -> profile
-- visible delay.  Then it sleeps 20 to 60 ms (random, so the probes do not
-- fall into step with anything) and probes again.  How it waits (mode):
--   'apply'    personalize.wait_for_apply(timeout), which returns once the
--              worker has committed everything committed before the call
--              (it looks at the worker's progress every 2 ms), then one
--              personalize.resolve('customer_id', id) must find the profile;
--   'resolve'  personalize.resolve('customer_id', id) every 1 ms
--              (pg_sleep(0.001); each call a fresh snapshot) until it finds
--              the profile.  These reads meet the worker's transactions
--              while they run.
-- The results go to probe_results at the end, in one transaction (no
-- commits of its own but the probes' while it runs).  A probe not visible
-- within `timeout` is recorded with visible = false.
CREATE TABLE probe_results (
    label     text NOT NULL,
    probe     integer NOT NULL,
    customer  bigint NOT NULL,
    commit_ms double precision NOT NULL,   -- INSERT + COMMIT
    delay_ms  double precision NOT NULL,   -- commit returned -> profile found
    polls     integer NOT NULL,            -- resolve() calls that found nothing
    visible   boolean NOT NULL
);

CREATE PROCEDURE stream_probe(seconds double precision, first_customer bigint, label text,
                              mode text DEFAULT 'apply', timeout interval DEFAULT '2 s')
LANGUAGE plpgsql AS $$
DECLARE
    t_end timestamptz := clock_timestamp() + make_interval(secs => seconds);
    k bigint := first_customer;
    t_begin timestamptz;
    t_commit timestamptz;
    t_seen timestamptz;
    n integer;
    ok boolean;
    commit_ms double precision[] := '{}';
    delay_ms double precision[] := '{}';
    polls integer[] := '{}';
    visible boolean[] := '{}';
BEGIN
    IF mode NOT IN ('apply', 'resolve') THEN
        RAISE EXCEPTION 'stream_probe: mode is apply or resolve, not %', mode;
    END IF;
    WHILE clock_timestamp() < t_end LOOP
        k := k + 1;
        t_begin := clock_timestamp();
        INSERT INTO orders (customer_id, sku, category, amount, ordered_at)
        VALUES (k, 'sku-probe', 'cat-probe', 1, clock_timestamp());
        COMMIT;
        t_commit := clock_timestamp();
        n := 0;
        IF mode = 'apply' THEN
            -- two statements: the second one's snapshot is taken after the wait
            ok := personalize.wait_for_apply(timeout);
            IF ok THEN
                ok := personalize.resolve('customer_id', k::text) IS NOT NULL;
            END IF;
        ELSE
            LOOP
                ok := personalize.resolve('customer_id', k::text) IS NOT NULL;
                EXIT WHEN ok OR clock_timestamp() > t_commit + timeout;
                n := n + 1;
                PERFORM pg_sleep(0.001);
            END LOOP;
        END IF;
        t_seen := clock_timestamp();
        commit_ms := commit_ms || 1000 * extract(epoch FROM t_commit - t_begin)::double precision;
        delay_ms := delay_ms || 1000 * extract(epoch FROM t_seen - t_commit)::double precision;
        polls := polls || n;
        visible := visible || ok;
        PERFORM pg_sleep(0.02 + 0.04 * random());
    END LOOP;
    INSERT INTO probe_results
    SELECT label, i::integer, first_customer + i, commit_ms[i], delay_ms[i], polls[i], visible[i]
      FROM generate_subscripts(commit_ms, 1) i;
END $$;
