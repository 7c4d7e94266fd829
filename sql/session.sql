-- session: the current visit, cut by a 30-minute inactivity gap.
SET search_path = personalize, public;
SET TimeZone = 'UTC';

CREATE TABLE web_events (visitor text, category text, sku text, ts timestamptz);
INSERT INTO web_events VALUES
  -- yesterday's visit
  ('anon-1', 'outdoor', 'tent-1', '2026-03-09 18:00'),
  -- today: twenty minutes in running shoes, one look at socks
  ('anon-1', 'running', 'shoe-a', '2026-03-10 10:00'),
  ('anon-1', 'running', 'shoe-b', '2026-03-10 10:05'),
  ('anon-1', 'socks',   'sock-1', '2026-03-10 10:08'),
  ('anon-1', 'running', 'shoe-a', '2026-03-10 10:20'),
  ('anon-1', NULL,      NULL,     '2026-03-10 10:21'),
  ('anon-2', 'kids',    'toy-9',  '2026-03-10 09:00');

SELECT visitor, session_start(s), session_last_activity(s), session_events(s),
       session_dominant_category(s), session_last_item(s), session_duration(s)
FROM (SELECT visitor, session_agg(ts, category, sku) s FROM web_events GROUP BY 1) q ORDER BY 1;
SELECT session_info(session_agg(ts, category, sku)) FROM web_events WHERE visitor = 'anon-1';
-- a later visit starts a new session; a late event in between joins them
SELECT session_start(s), session_events(s) FROM (
  SELECT session_agg(ts, category, sku) s FROM (
    SELECT * FROM web_events WHERE visitor = 'anon-1'
    UNION ALL VALUES ('anon-1', 'running', 'shoe-c', '2026-03-10 11:15'::timestamptz)) e) q;
SELECT session_start(s), session_events(s), session_last_item(s) FROM (
  SELECT session_agg(ts, category, sku) s FROM (
    SELECT * FROM web_events WHERE visitor = 'anon-1'
    UNION ALL VALUES ('anon-1', 'running', 'shoe-c', '2026-03-10 11:15'::timestamptz),
                     ('anon-1', 'running', 'shoe-d', '2026-03-10 10:48')) e) q;
-- a custom gap
SELECT session_events(session_agg(ts, category, sku, '1 day')) FROM web_events WHERE visitor = 'anon-1';
-- order of events does not matter
SELECT (SELECT session_agg(ts, category, sku ORDER BY ts) FROM web_events)
     = (SELECT session_agg(ts, category, sku ORDER BY ts DESC) FROM web_events) AS order_free;

-- text form, round trip, merge
SELECT session_agg(ts, category, sku) FROM web_events WHERE visitor = 'anon-1';
SELECT s::text::session_state = s AS round_trip FROM (SELECT session_agg(ts, category, sku) s FROM web_events) q;
SELECT (SELECT session_agg(ts, category, sku) FROM web_events WHERE ts < '2026-03-10 10:06')
    || (SELECT session_agg(ts, category, sku) FROM web_events WHERE ts >= '2026-03-10 10:06')
     = (SELECT session_agg(ts, category, sku) FROM web_events) AS merge_equals_whole;
SELECT session_events(merge_agg(s)) FROM (SELECT session_agg(ts, category, sku) s FROM web_events GROUP BY sku) q;
-- an old session past the 24-hour horizon is dropped
SELECT jsonb_array_length(session_agg(ts, 'c', 'i')::text::jsonb -> 'sessions')
FROM unnest(ARRAY['2026-03-01'::timestamptz, '2026-03-05', '2026-03-10 01:00', '2026-03-10 10:00']) ts;

-- errors
SELECT session_agg(ts, category, sku, '0') FROM web_events;
SELECT session_agg(ts, category, sku, NULL) FROM web_events;
SELECT (SELECT session_agg(ts, category, sku, '1 hour') FROM web_events)
    || (SELECT session_agg(ts, category, sku) FROM web_events);
SELECT '{"gap": "00:30:00", "sessions": [{"start": "2026-03-10 10:00", "end": "2026-03-10 09:00", "events": 1, "last_item": null, "last_item_time": null, "categories": []}]}'::session_state;
SELECT '{"gap": "00:30:00", "sessions": [{"start": "2026-03-10 10:00", "end": "2026-03-10 11:00", "events": 1, "last_item": null, "last_item_time": null, "categories": [["a", 2]]}]}'::session_state;
SELECT '{"gap": "00:30:00", "sessions": [{"start": "2026-03-10 10:00", "end": "2026-03-10 11:00", "events": 0, "last_item": null, "last_item_time": null, "categories": []}]}'::session_state;
SELECT '{"gap": "00:30:00", "sessions": [{"start": "2026-03-10 10:00", "end": "2026-03-10 11:00", "events": 1, "last_item": "x", "last_item_time": "2026-03-11", "categories": []}]}'::session_state;
SELECT '{"gap": "00:30:00", "sessions": [{"start": "2026-03-10 10:00"}]}'::session_state;
SELECT '{"gap": "00:30:00", "sessions": [1]}'::session_state;

-- far-apart times (4713 BC to 294000 AD) do not overflow: the old session
-- lies beyond the horizon and is dropped, the current one holds one event
SELECT session_start(s), session_events(s), jsonb_array_length(s::text::jsonb -> 'sessions') AS kept
FROM (SELECT session_agg(ts, 'c', 'i', '100 years') s
      FROM unnest(ARRAY['4713-01-01 BC'::timestamptz, '294000-01-01']) ts) q;
-- event counts that would overflow are refused
SELECT '{"gap": "00:30:00", "sessions": [{"start": "2026-03-10 10:00", "end": "2026-03-10 10:00", "events": 9223372036854775807, "last_item": null, "last_item_time": null, "categories": []}, {"start": "2026-03-10 10:10", "end": "2026-03-10 10:10", "events": 9223372036854775807, "last_item": null, "last_item_time": null, "categories": []}]}'::session_state;
-- output does not depend on IntervalStyle
SET IntervalStyle = sql_standard;
SELECT '{"gap": "1 day 00:00:01", "sessions": []}'::session_state;
RESET IntervalStyle;
