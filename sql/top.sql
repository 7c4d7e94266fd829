-- top(N, half-life): time-decayed weights, heaviest first.
SET search_path = personalize, public;
SET TimeZone = 'UTC';
SET extra_float_digits = 0;

CREATE TABLE top_views (shopper int, category text, ts timestamptz);
-- shopper 1 liked "boots" a lot two years ago, "sandals" a little this week
INSERT INTO top_views SELECT 1, 'boots', '2024-03-01'::timestamptz + i * interval '1 hour' FROM generate_series(1, 50) i;
INSERT INTO top_views SELECT 1, 'sandals', '2026-03-01'::timestamptz + i * interval '1 hour' FROM generate_series(1, 3) i;
INSERT INTO top_views VALUES (1, 'socks', '2026-03-01'), (1, NULL, '2026-03-02'), (2, 'hats', '2026-01-01');

SELECT shopper, top_values(top_agg(category, ts, 5, '7 days')) FROM top_views GROUP BY 1 ORDER BY 1;
-- without decay worth mentioning (half-life 100 years) boots win by count
SELECT top_values(top_agg(category, ts, 5, '100 years')) FROM top_views WHERE shopper = 1;
-- an event at the latest time weighs 1; one half-life earlier weighs 0.5
SELECT top_weights(top_agg(v, ts, 3, '1 day'))
FROM (VALUES ('a', '2026-01-02'::timestamptz), ('b', '2026-01-01'), ('b', '2026-01-01')) t(v, ts);
-- read at a later time: all weights scale alike
SELECT top_weights(top_agg(v, ts, 3, '1 day'), '2026-01-03')
FROM (VALUES ('a', '2026-01-02'::timestamptz), ('b', '2026-01-01')) t(v, ts);
-- explicit weights (a purchase counts 5 top_views)
SELECT * FROM top_items((SELECT top_agg(v, '2026-01-01', 3, '1 day', w)
                         FROM (VALUES ('view', 1.0), ('buy', 5.0), ('view', 1.0)) t(v, w)));
-- bigint values; k
SELECT top_values(top_agg(id % 3, '2026-01-01'::timestamptz + id * interval '1 s', 10, '1 hour'), 2)::int[]
FROM generate_series(1, 30) id;
-- bounded: N heaviest kept
SELECT top_values(top_agg(v, '2026-01-01', 2, '1 day'))
FROM unnest(ARRAY['a', 'b', 'b', 'c', 'c', 'c']) v;

-- text round trip and canonical form
SELECT '{"n": 3, "half_life": "7 days", "latest": "2026-01-01", "items": [["a", 0.5], ["b", 2]]}'::top_state;
SELECT s::text::top_state::text = s::text AS round_trip
FROM (SELECT top_agg(category, ts, 5, '7 days') s FROM top_views) q;

-- merge sums weights after decaying both sides to the later time
SELECT '{"n": 3, "half_life": "1 day", "latest": "2026-01-02", "items": [["a", 1]]}'::top_state
    || '{"n": 3, "half_life": "1 day", "latest": "2026-01-01", "items": [["a", 2], ["b", 1]]}'::top_state;
SELECT top_values(merge_agg(s)) FROM (SELECT top_agg(category, ts, 5, '7 days') s FROM top_views GROUP BY shopper) q;

-- errors
SELECT '{"n": 3, "half_life": "1 day", "latest": "2026-01-02", "items": []}'::top_state
    || '{"n": 3, "half_life": "2 days", "latest": "2026-01-01", "items": []}'::top_state;
SELECT top_agg(category, ts, 5, '-1 day') FROM top_views;
SELECT top_agg(category, ts, 5, NULL) FROM top_views;
SELECT top_agg(category, ts, 0, '1 day') FROM top_views;
SELECT top_agg(category, ts, 3, '1 day', -1) FROM top_views;
SELECT top_agg(category, ts, 3, '1 day', 'NaN') FROM top_views;
SELECT top_values('{"n": 3, "half_life": "1 day", "latest": "2026-01-02", "items": []}', -1);
SELECT '{"n": 1, "half_life": "1 day", "latest": "2026-01-02", "items": [["a", 1], ["b", 1]]}'::top_state;
SELECT '{"n": 1, "half_life": "1 day", "latest": "2026-01-02", "items": [["a", -1]]}'::top_state;
SELECT '{"n": 1, "half_life": "0", "latest": "2026-01-02", "items": []}'::top_state;
SELECT '{"n": 1, "half_life": "1 day", "latest": "infinity", "items": []}'::top_state;
SELECT '{"n": 1, "half_life": "1 day", "items": []}'::top_state;

-- weights are bounded, so sums stay finite; a state that would overflow is refused
SELECT top_agg(v, '2026-01-01', 3, '1 hour', 1e300) FROM unnest(ARRAY['a', 'a']) v;
SELECT '{"n": 3, "half_life": "01:00:00", "latest": "2024-01-01", "items": [["a", 1e308], ["a", 1e308]]}'::top_state;
-- far-apart times (4713 BC to 294000 AD) do not overflow
SELECT top_values(top_agg(v, ts, 3, '1 hour'))
FROM (VALUES ('old', '4713-01-01 BC'::timestamptz), ('new', '294000-01-01')) t(v, ts);
-- -0 and 0 are one weight
SELECT top_agg('a', '2026-01-01', 3, '1 day', '-0') = top_agg('a', '2026-01-01', 3, '1 day', 0) AS same;
-- reading weights far before the latest event: zero stays zero, nothing is NaN
SELECT top_weights(top_agg(v, '2026-01-01', 3, '1 hour', w), '1000-01-01')
FROM (VALUES ('a', 1.0), ('b', 0.0)) t(v, w);
-- output does not depend on IntervalStyle
SET IntervalStyle = iso_8601;
SELECT '{"n": 3, "half_life": "1 day 12:00:00", "latest": "2026-01-01", "items": []}'::top_state;
RESET IntervalStyle;
-- a running (window) aggregate ends with the plain aggregate's state over
-- the same order: reading a state (each row's final call) does not change it
SELECT (SELECT top_agg(category, ts, 5, '1 day' ORDER BY ts, category) FROM top_views)
     = (SELECT s FROM (SELECT top_agg(category, ts, 5, '1 day') OVER (ORDER BY ts, category) s,
                              row_number() OVER (ORDER BY ts DESC, category DESC) r
                       FROM top_views) w WHERE r = 1) AS running_equals_plain;
