-- bench/profiles/check.sql: the orders traits (count, sum, max of
-- shop.orders, traits orders, lifetime_value, largest_order) of every profile
-- keyed by a customer id against the plain GROUP BY customer_id
-- (plain_orders, bench/profiles/baseline.sql).  Every order carries its
-- customer id, the highest-priority namespace with one per profile, so its
-- profile is keyed by that id and the two must agree exactly.
-- Prints: verdict|compared|differing|profiles keyed by a customer id|example
WITH ours AS (
    SELECT key_value::bigint AS customer_id, orders, lifetime_value, largest_order
      FROM personalize.profile_view
     WHERE key_namespace = 'customer_id' AND orders > 0
), diff AS (
    SELECT coalesce(o.customer_id, p.customer_id) AS customer_id,
           o.orders AS ours_orders, p.orders AS plain_orders,
           o.lifetime_value AS ours_value, p.lifetime_value AS plain_value,
           o.largest_order AS ours_largest, p.largest_order AS plain_largest
      FROM ours o FULL JOIN plain_orders p ON p.customer_id = o.customer_id
     WHERE (o.orders, o.lifetime_value, o.largest_order)
           IS DISTINCT FROM (p.orders, p.lifetime_value, p.largest_order)
)
SELECT CASE WHEN (SELECT count(*) FROM diff) = 0 AND (SELECT count(*) FROM plain_orders) > 0
            THEN 'ok' ELSE 'FAIL' END,
       (SELECT count(*) FROM plain_orders),
       (SELECT count(*) FROM diff),
       (SELECT count(*) FROM personalize.profile_view WHERE key_namespace = 'customer_id'),
       coalesce((SELECT row_to_json(d)::text FROM diff d ORDER BY customer_id LIMIT 1), '');
