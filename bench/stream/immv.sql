-- bench/stream/immv.sql: setup e of bench/stream/run, where pg_ivm is
-- installed: an incrementally maintained materialized view (IMMV) of the
-- orders per customer, which pg_ivm's triggers keep inside each writer's
-- transaction.  It holds three of the five traits of bench/stream/config.sql
-- and triggers.sql: order count, revenue, largest order.  Last SKU and the
-- 10 most recent distinct SKUs are no aggregate pg_ivm maintains (count,
-- sum, avg, min and max only; an IMMV has no ORDER BY, window function or
-- array_agg).  Run with search_path = e, pgivm: pg_ivm 1.10 and later have
-- create_immv in schema pgivm, older ones in pg_catalog; the names in the
-- query are bound when the IMMV is created.
SELECT create_immv('customer_totals',
                   'SELECT customer_id, count(*) AS orders, sum(amount) AS revenue, max(amount) AS largest
                      FROM orders GROUP BY customer_id');
