-- The demo shop's setup: the extension, the example shop's tables (one per
-- "system"), its identifier namespaces, sources and traits, the live
-- traffic generator, and the demo's own helpers.  Run by demo/run in the
-- database the streaming worker watches (personalize.database = 'shop').
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION personalize;
\i test/shop/schema.sql
\o /dev/null
\i test/shop/config.sql
\o
\i test/shop/traffic.sql

CREATE SCHEMA demo;

-- Milliseconds from start until the query `visible` returns true, polling
-- every half millisecond (each poll sees what has committed by then).
CREATE FUNCTION demo.ms_until(start timestamptz, visible text, timeout interval DEFAULT '10 s')
RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    LOOP
        EXECUTE visible INTO ok;
        EXIT WHEN ok;
        IF clock_timestamp() - start > timeout THEN
            RAISE EXCEPTION 'not visible after %', timeout;
        END IF;
        PERFORM pg_sleep(0.0005);
    END LOOP;
    RETURN round((extract(epoch FROM clock_timestamp() - start) * 1000)::numeric, 1);
END $$;

-- Freshness under load: n probes, each an anonymous page view committed on
-- its own, timed from the commit until its profile is visible to another
-- transaction.
CREATE TABLE demo.probes (probe integer, ms numeric);
CREATE PROCEDURE demo.freshness(n integer) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    anon integer := (SELECT id FROM personalize.namespaces WHERE name = 'anonymous_id');
    v text;
BEGIN
    FOR i IN 1 .. n LOOP
        v := 'probe-' || i;
        INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES (v, 'page_view', now());
        COMMIT;
        t0 := clock_timestamp();
        WHILE NOT EXISTS (SELECT 1 FROM personalize.identities WHERE namespace_id = anon AND value = v) LOOP
            PERFORM pg_sleep(0.0002);
        END LOOP;
        INSERT INTO demo.probes VALUES (i, (extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric);
        COMMIT;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;

-- The worker's figures every second for a few seconds, while traffic runs.
CREATE FUNCTION demo.watch(seconds integer)
RETURNS TABLE (at text, events_applied bigint, events_per_second numeric, transactions bigint,
               profiles bigint, merges bigint, lag_ms numeric, lag_bytes bigint)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. seconds LOOP
        PERFORM pg_sleep(1);
        RETURN QUERY SELECT to_char(clock_timestamp(), 'HH24:MI:SS'), w.events_applied, w.events_per_second,
                            w.transactions, (SELECT count(*) FROM personalize.profiles), w.merges, w.lag_ms, w.lag_bytes
                       FROM personalize.worker_status w;
    END LOOP;
END $$;

-- Audiences (docs/audiences.md): kept by the worker in the transaction that
-- writes the profile; the second one changes with time alone.
SELECT personalize.create_audience('suppress_promotions',
    $$ticket_sentiment = 'negative' AND ticket_sentiment_at > now() - interval '24 hours'$$);
SELECT personalize.create_audience('browse_abandoned',
    $$last_viewed IS NOT NULL AND coalesce(orders, 0) = 0 AND last_seen < now() - interval '3 seconds'
      AND last_seen > now() - interval '1 hour'$$);

-- A small consumer of entries, as an application would write one: it
-- copies new events into its own queue (a high-water mark, advanced in the
-- same transaction as the copy, says what was copied), and claims them with
-- SKIP LOCKED (so that several consumers could share the queue), reacting
-- to each entry: no promotions for an unhappy shopper, a follow-up email
-- for an abandoned browse.  demo/run runs it in the background.
CREATE TABLE demo.audience_feed (copied_up_to bigint NOT NULL);
INSERT INTO demo.audience_feed VALUES (0);
CREATE TABLE demo.audience_queue (event_id bigint PRIMARY KEY, audience text, profile_id bigint,
                                  entered boolean, at timestamptz);
CREATE TABLE demo.reactions (event_id bigint, profile_id bigint, action text,
                             entered_at timestamptz, reacted_at timestamptz);
CREATE PROCEDURE demo.consumer(seconds integer) LANGUAGE plpgsql AS $$
DECLARE
    stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
BEGIN
    WHILE clock_timestamp() < stop LOOP
        -- copy: event ids grow in commit order (every writer of events
        -- holds the extension's lock until it commits)
        WITH feed AS (SELECT copied_up_to FROM demo.audience_feed FOR UPDATE),
             copied AS (
                 INSERT INTO demo.audience_queue
                 SELECT e.id, e.audience, e.profile_id, e.entered, e.at
                   FROM personalize.audience_events e, feed WHERE e.id > feed.copied_up_to
                 RETURNING event_id)
        UPDATE demo.audience_feed SET copied_up_to = greatest(copied_up_to, (SELECT max(event_id) FROM copied));
        -- claim and react
        WITH claimed AS (
            DELETE FROM demo.audience_queue q
             WHERE q.event_id IN (SELECT event_id FROM demo.audience_queue ORDER BY event_id
                                   FOR UPDATE SKIP LOCKED LIMIT 1000)
            RETURNING q.*)
        INSERT INTO demo.reactions
        SELECT c.event_id, c.profile_id,
               CASE c.audience WHEN 'suppress_promotions' THEN 'hide promotional banners'
                               ELSE 'send the follow-up email' END,
               c.at, clock_timestamp()
          FROM claimed c WHERE c.entered;
        COMMIT;
        PERFORM pg_sleep(0.005);
    END LOOP;
END $$;
