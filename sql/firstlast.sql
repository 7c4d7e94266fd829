-- first / last by event time, whatever the arrival order.
SET search_path = personalize, public;
SET TimeZone = 'UTC';

CREATE TABLE loyalty_events (member text, tier text, ts timestamptz);
-- arrives out of order: the gold event is the latest by event time
INSERT INTO loyalty_events VALUES
  ('m1', 'silver', '2026-02-01'), ('m1', 'gold', '2026-03-01'), ('m1', 'bronze', '2026-01-01'),
  ('m1', 'silver', '2026-02-15'), ('m1', NULL, '2026-04-01'), ('m2', 'bronze', '2026-01-05');
SELECT member, event_value(first_agg(tier, ts)) AS first_tier, event_time(first_agg(tier, ts)) AS first_at,
       event_value(last_agg(tier, ts)) AS tier, event_time(last_agg(tier, ts)) AS tier_since
FROM loyalty_events GROUP BY 1 ORDER BY 1;
-- ties on time: first keeps the smallest value, last the largest
SELECT event_value(first_agg(v, '2026-01-01')), event_value(last_agg(v, '2026-01-01'))
FROM unnest(ARRAY['b', 'c', 'a']) v;
-- bigint values
SELECT event_value(last_agg(x, '2026-01-01'::timestamptz + x * interval '1 day'))::bigint
FROM generate_series(1, 10) x;

-- text form, round trip, merge
SELECT last_agg(tier, ts) FROM loyalty_events;
SELECT '{"value": "gold", "time": "2026-03-01"}'::last_state
    || '{"value": "platinum", "time": "2026-02-01"}'::last_state;
SELECT '{"value": "gold", "time": "2026-03-01"}'::first_state
    || '{"value": "platinum", "time": "2026-02-01"}'::first_state;
SELECT s::text::first_state = s AS round_trip FROM (SELECT first_agg(tier, ts) s FROM loyalty_events) q;
SELECT event_value(merge_agg(s)) FROM (SELECT last_agg(tier, ts) s FROM loyalty_events GROUP BY member) q;
SELECT event_value('{"value": "", "time": "2026-03-01"}'::last_state) = '' AS empty_value_kept;

-- errors
SELECT '{"value": "gold"}'::last_state;
SELECT '{"value": 5, "time": "2026-03-01"}'::last_state;
SELECT '{"value": "gold", "time": "-infinity"}'::first_state;
SELECT '{"value": "gold", "time": "2026-03-01", "x": 1}'::first_state;
SELECT last_agg('x', 'infinity'::timestamptz);
