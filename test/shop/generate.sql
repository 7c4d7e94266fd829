-- test/shop/generate.sql: shop.generate(events, customers, seed) fills the
-- example shop (test/shop/schema.sql) with a deterministic synthetic load:
-- the same arguments give the same rows on every machine, in any order of
-- execution, because every choice is a hash of (seed, row, purpose) rather
-- than a call to random().
--
-- The mix: 60 % web events, 10 % orders, 20 % email events, 5 % loyalty,
-- 5 % support tickets, over the 180 days before `ending` (default 2026-06-01).  Shoppers are
-- skewed (a few are very active).  A customer has an email (written with
-- varying case and spaces, as real systems do), sometimes a loyalty number
-- and a phone, and one or two browser cookies; web events before login carry
-- only the cookie, a login carries both.  Anonymous visitors who never log
-- in are as many as the customers.  One email address is shared by two
-- customers (a family), so merge protection has something to refuse.
CREATE FUNCTION shop.rnd(seed integer, i bigint, salt text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (hashtextextended(salt || ':' || i, seed) & 2147483647)::double precision / 2147483648;

-- a shopper drawn with a skew: low numbers are much more active
CREATE FUNCTION shop.pick(seed integer, i bigint, salt text, n integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 1 + floor(n * power(shop.rnd(seed, i, salt), 2))::integer;

CREATE FUNCTION shop.email_of(c integer, seed integer, i bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN c = 2 THEN 'c1@example.com'            -- the family's shared address
            WHEN shop.rnd(seed, i, 'ecase') < 0.2 THEN ' C' || c || '@Example.COM '
            ELSE 'c' || c || '@example.com' END;

CREATE FUNCTION shop.generate(events bigint, customers integer DEFAULT NULL, seed integer DEFAULT 1,
                              ending timestamptz DEFAULT '2026-06-01 00:00:00+00')
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    nc integer := coalesce(customers, greatest(10, (events / 100)::integer));
    t0 timestamptz := ending - interval '180 days';
    span double precision := 180 * 86400;
    n_web bigint := events * 60 / 100;
    n_orders bigint := events * 10 / 100;
    n_email bigint := events * 20 / 100;
    n_loyalty bigint := events * 5 / 100;
    n_support bigint := events - n_web - n_orders - n_email - events * 5 / 100;
    cats text[] := '{running shoes,hiking boots,socks,jackets,bikes,tents,kids,watches,bags,hats}';
BEGIN
    IF events IS NULL OR events < 0 OR nc < 2 OR seed IS NULL THEN
        RAISE EXCEPTION 'shop.generate: events must be >= 0, customers >= 2, seed not NULL';
    END IF;
    -- web: visitor v in 1..2nc; v <= nc is customer v's browser (cookie a-v-k,
    -- k in 0..1), v > nc an anonymous visitor who never logs in
    INSERT INTO shop.web_events (anonymous_id, customer_id, event_type, sku, category, search_query, props, ts)
    SELECT 'a-' || v || '-' || (i % 2) * (v % 2),
           CASE WHEN v <= nc AND kind = 'login' THEN v END,
           kind,
           CASE WHEN kind IN ('product_view', 'add_to_cart') THEN 'sku-' || cat || '-' || shop.pick(seed, i, 'sku', 50) END,
           CASE WHEN kind <> 'login' THEN cats[cat] END,
           CASE WHEN kind = 'search' THEN cats[cat] || ' ' || shop.pick(seed, i, 'q', 5) END,
           CASE WHEN kind IN ('filter', 'product_view', 'add_to_cart') AND shop.rnd(seed, i, 'sz') < 0.5
                THEN jsonb_build_object('size', (36 + shop.pick(seed, i, 'size', 12))::text) END,
           t0 + make_interval(secs => floor(span * shop.rnd(seed, i, 'wt')))
      FROM (SELECT i, shop.pick(seed, i, 'wv', 2 * nc) AS v,
                   1 + ((shop.pick(seed, i, 'wv', 2 * nc) * 7 + floor(3 * shop.rnd(seed, i, 'wc'))::integer) % 10) AS cat,
                   (ARRAY['page_view', 'product_view', 'product_view', 'product_view', 'search',
                          'filter', 'add_to_cart', 'login'])[1 + floor(8 * shop.rnd(seed, i, 'wk'))::integer] AS kind
              FROM generate_series(1, n_web) i) w;
    INSERT INTO shop.orders (order_id, customer_id, email, sku, category, amount, ordered_at)
    SELECT i, c, shop.email_of(c, seed, i), 'sku-' || cat || '-' || shop.pick(seed, i, 'osku', 50), cats[cat],
           round((5 + 300 * shop.rnd(seed, i, 'amt'))::numeric, 2),
           t0 + make_interval(secs => floor(span * shop.rnd(seed, i, 'ot')))
      FROM (SELECT i, shop.pick(seed, i, 'oc', nc) AS c,
                   1 + ((shop.pick(seed, i, 'oc', nc) * 7 + floor(3 * shop.rnd(seed, i, 'ocat'))::integer) % 10) AS cat
              FROM generate_series(1, n_orders) i) o;
    INSERT INTO shop.email_events (email, campaign, event_type, ts)
    SELECT shop.email_of(c, seed, i), 'campaign-' || camp,
           (ARRAY['sent', 'sent', 'open', 'click'])[1 + floor(4 * shop.rnd(seed, i, 'ek'))::integer],
           t0 + make_interval(secs => camp * 86400 * 6 + floor(86400 * shop.rnd(seed, i, 'et')))
      FROM (SELECT i, shop.pick(seed, i, 'ec', nc) AS c, floor(30 * shop.rnd(seed, i, 'camp'))::integer AS camp
              FROM generate_series(1, n_email) i) e;
    -- loyalty members: every third customer; events arrive in any order
    INSERT INTO shop.loyalty_events (loyalty_no, customer_id, tier, points, ts)
    SELECT 'L-' || m, CASE WHEN shop.rnd(seed, i, 'lc') < 0.7 THEN m END,
           (ARRAY['bronze', 'silver', 'gold', 'platinum'])[1 + floor(4 * shop.rnd(seed, i, 'tier'))::integer],
           floor(5000 * shop.rnd(seed, i, 'pts'))::integer,
           t0 + make_interval(secs => floor(span * shop.rnd(seed, i, 'lt')))
      FROM (SELECT i, 1 + 3 * (shop.pick(seed, i, 'lm', greatest(nc / 3, 1)) - 1) AS m
              FROM generate_series(1, n_loyalty) i) l;
    INSERT INTO shop.support_tickets (email, phone, status, sentiment, opened_at)
    SELECT CASE WHEN shop.rnd(seed, i, 'via') < 0.7 THEN shop.email_of(c, seed, i) END,
           CASE WHEN shop.rnd(seed, i, 'via') >= 0.5 THEN '+1 415 555 ' || lpad((c % 10000)::text, 4, '0') END,
           CASE WHEN shop.rnd(seed, i, 'st') < 0.3 THEN 'open' ELSE 'closed' END,
           (ARRAY['negative', 'neutral', 'positive'])[1 + floor(3 * shop.rnd(seed, i, 'sent'))::integer],
           t0 + make_interval(secs => floor(span * shop.rnd(seed, i, 'tt')))
      FROM (SELECT i, shop.pick(seed, i, 'tc', nc) AS c FROM generate_series(1, n_support) i) s;
END $$;
COMMENT ON FUNCTION shop.generate(bigint, integer, integer, timestamptz) IS
    'Fill the example shop with a deterministic synthetic load of events rows (customers: default events / 100) over the 180 days before ending.';
