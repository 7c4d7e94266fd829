-- bench/audiences/probe.sql: the freshness probe of bench/audiences/run.
--
--   CALL audience_probe(seconds, first_customer, label, audience, timeout)
--
-- for `seconds`: inserts one order of a customer id never seen before
-- (first_customer + 1, + 2, ...) with an amount of 5 000, which makes its
-- profile enter audience big_order (largest_order >= 1000; the benchmark's
-- other orders are 5 .. 305), and commits; takes the time right after the
-- commit returns; then, every 1 ms (pg_sleep(0.001)), one statement, so one
-- snapshot, as another session would read:
--     SELECT resolve('customer_id', id), whether audience_members has the
--            profile in `audience`
-- until the membership is there (audience NULL: until the profile is), and
-- takes the time the profile was first found and the time the membership
-- was.  Then it sleeps 20 to 60 ms (random, so the probes do not fall into
-- step with anything) and probes again.  The results go to probe_results
-- at the end, in one transaction (no commits of its own but the probes'
-- while it runs).  A probe not visible within `timeout` is recorded with
-- visible = false.
CREATE TABLE probe_results (
    label      text NOT NULL,
    probe      integer NOT NULL,
    customer   bigint NOT NULL,
    committed  timestamptz NOT NULL,       -- clock_timestamp() just after COMMIT returned
    commit_ms  double precision NOT NULL,  -- INSERT + COMMIT
    profile_ms double precision,           -- commit returned -> profile found (NULL: never)
    member_ms  double precision,           -- commit returned -> membership found (NULL: never, or no audience)
    polls      integer NOT NULL,           -- reads that did not find what was waited for
    visible    boolean NOT NULL
);

CREATE PROCEDURE audience_probe(seconds double precision, first_customer bigint, label text,
                                audience text, timeout interval DEFAULT '2 s')
LANGUAGE plpgsql AS $$
DECLARE
    t_end timestamptz := clock_timestamp() + make_interval(secs => seconds);
    k bigint := first_customer;
    t_begin timestamptz;
    t_commit timestamptz;
    t_profile timestamptz;
    t_member timestamptz;
    t_read timestamptz;
    pid bigint;
    member boolean;
    n integer;
    ok boolean;
    committed timestamptz[] := '{}';
    commit_ms double precision[] := '{}';
    profile_ms double precision[] := '{}';
    member_ms double precision[] := '{}';
    polls integer[] := '{}';
    visible boolean[] := '{}';
BEGIN
    WHILE clock_timestamp() < t_end LOOP
        k := k + 1;
        t_begin := clock_timestamp();
        INSERT INTO orders (customer_id, sku, category, amount, ordered_at)
        VALUES (k, 'sku-probe', 'cat-probe', 5000, clock_timestamp());
        COMMIT;
        t_commit := clock_timestamp();
        t_profile := NULL;
        t_member := NULL;
        n := 0;
        LOOP
            SELECT r.p, audience_probe.audience IS NOT NULL AND EXISTS (
                       SELECT 1 FROM personalize.audience_members m
                        WHERE m.profile_id = r.p AND m.audience = audience_probe.audience)
              INTO pid, member
              FROM (SELECT personalize.resolve('customer_id', k::text) AS p) r;
            t_read := clock_timestamp();
            IF pid IS NOT NULL AND t_profile IS NULL THEN
                t_profile := t_read;
            END IF;
            IF member THEN
                t_member := t_read;
            END IF;
            ok := CASE WHEN audience_probe.audience IS NULL THEN pid IS NOT NULL ELSE member END;
            EXIT WHEN ok OR clock_timestamp() > t_commit + timeout;
            n := n + 1;
            PERFORM pg_sleep(0.001);
        END LOOP;
        committed := committed || t_commit;
        commit_ms := commit_ms || 1000 * extract(epoch FROM t_commit - t_begin)::double precision;
        profile_ms := profile_ms || 1000 * extract(epoch FROM t_profile - t_commit)::double precision;
        member_ms := member_ms || 1000 * extract(epoch FROM t_member - t_commit)::double precision;
        polls := polls || n;
        visible := visible || ok;
        PERFORM pg_sleep(0.02 + 0.04 * random());
    END LOOP;
    INSERT INTO probe_results
    SELECT label, i::integer, first_customer + i, committed[i], commit_ms[i], profile_ms[i], member_ms[i],
           polls[i], visible[i]
      FROM generate_subscripts(commit_ms, 1) i;
END $$;
