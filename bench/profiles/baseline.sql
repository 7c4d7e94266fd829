-- bench/profiles/baseline.sql: the plain GROUP BY a user would write for the
-- traits of bench/profiles/config.sql, without personalize: one CREATE TABLE
-- AS per source, grouped by that source's own shopper identifier, with
-- built-in aggregates only.  No identity resolution: a cookie, an email and
-- a loyalty number of one customer stay separate rows, and the traits that
-- read two sources (last_viewed, category_affinity) are per source here, or
-- per shopper key of the union (category_affinity).  Not computed: the
-- session trait (the lag()/running-count query of bench/session.builtin.sql
-- would be one more pass over web_events).  Differences from the traits'
-- answers, all in the baseline's favour: recent lists keep repeats (recent_agg
-- keeps distinct values), windowed counts are four fixed FILTERs,
-- count(DISTINCT) is exact where distinct_agg estimates.
--
-- Run by bench/profiles/run with psql's \timing on: one "Time:" line per
-- statement.  Windows are evaluated at now(), as personalize.profile_view's.
SET client_min_messages = warning;
DROP TABLE IF EXISTS plain_web, plain_orders, plain_email, plain_loyalty, plain_support, plain_affinity;

-- web tracking: the customer id after login, else the cookie
CREATE TABLE plain_web AS
SELECT coalesce(customer_id::text, anonymous_id) AS shopper,
       min(ts) AS first_seen, max(ts) AS last_seen,
       (array_agg(sku ORDER BY ts DESC)
           FILTER (WHERE event_type IN ('product_view', 'add_to_cart') AND sku IS NOT NULL))[1:10] AS last_viewed,
       (array_agg(props ->> 'size' ORDER BY ts DESC) FILTER (WHERE props ->> 'size' IS NOT NULL))[1] AS last_size,
       max(ts) FILTER (WHERE props ->> 'size' IS NOT NULL) AS last_size_at,
       count(DISTINCT sku) AS products_seen
FROM shop.web_events
GROUP BY 1;

-- commerce platform: the customer id
CREATE TABLE plain_orders AS
SELECT customer_id,
       min(ordered_at) AS first_seen, max(ordered_at) AS last_seen,
       count(*) AS orders,
       sum(amount) AS lifetime_value,
       max(amount) AS largest_order,
       count(*) FILTER (WHERE ordered_at >= now() - interval '1 hour') AS orders_in_1h,
       count(*) FILTER (WHERE ordered_at >= now() - interval '24 hours') AS orders_in_24h,
       count(*) FILTER (WHERE ordered_at >= now() - interval '7 days') AS orders_in_7d,
       count(*) FILTER (WHERE ordered_at >= now() - interval '30 days') AS orders_in_30d,
       (array_agg(sku ORDER BY ordered_at DESC))[1:20] AS bought
FROM shop.orders
GROUP BY customer_id;

-- email provider: the address, as the user would clean it
CREATE TABLE plain_email AS
SELECT lower(trim(email)) AS email,
       min(ts) AS first_seen, max(ts) AS last_seen,
       (array_agg(campaign ORDER BY ts DESC) FILTER (WHERE event_type IN ('open', 'click')))[1:3] AS campaigns_opened,
       (array_agg(campaign ORDER BY ts DESC) FILTER (WHERE event_type IN ('open', 'click')))[1] AS last_email_engagement,
       max(ts) FILTER (WHERE event_type IN ('open', 'click')) AS last_email_engagement_at
FROM shop.email_events
GROUP BY 1;

-- loyalty platform: the loyalty number
CREATE TABLE plain_loyalty AS
SELECT loyalty_no,
       min(ts) AS first_seen, max(ts) AS last_seen,
       (array_agg(tier ORDER BY ts DESC))[1] AS loyalty_tier,
       (array_agg(points ORDER BY ts DESC))[1] AS loyalty_points,
       max(ts) AS loyalty_tier_at
FROM shop.loyalty_events
GROUP BY loyalty_no;

-- support desk: the address, else the phone
CREATE TABLE plain_support AS
SELECT coalesce(lower(trim(email)), phone) AS shopper,
       min(opened_at) AS first_seen, max(opened_at) AS last_seen,
       (array_agg(sentiment ORDER BY opened_at DESC))[1] AS ticket_sentiment,
       max(opened_at) AS ticket_sentiment_at
FROM shop.support_tickets
GROUP BY 1;

-- category affinity over web events and orders: decayed weight per
-- (shopper, category), the 10 heaviest (bench/top.builtin.sql's query)
CREATE TABLE plain_affinity AS
WITH weights AS (
    SELECT shopper, category,
           sum(power(2, date_part('epoch', ts - now()) / (14 * 86400))) AS weight
    FROM (SELECT coalesce(customer_id::text, anonymous_id) AS shopper, category, ts
            FROM shop.web_events WHERE category IS NOT NULL
          UNION ALL
          SELECT customer_id::text, category, ordered_at FROM shop.orders) e
    GROUP BY shopper, category
)
SELECT shopper, (array_agg(category ORDER BY weight DESC, category))[1:10] AS category_affinity
FROM weights
GROUP BY shopper;
