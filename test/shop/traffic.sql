-- test/shop/traffic.sql: live traffic for the example shop, as the shop's
-- systems would write it: single rows, committed as they happen.
-- Run after test/shop/schema.sql.  Used by the streaming tests, the demo
-- and the streaming benchmark.
--
--   CALL shop.traffic(events, seed, customers, per_commit, pause)
--
-- writes `events` rows, committing every `per_commit` rows and sleeping
-- `pause` between commits.  The mix: anonymous browsing (page and product
-- views, searches, size filters, cart additions) by visitors who log in
-- now and then (the login row carries both the cookie and the customer id),
-- orders with the customer's email written as people type it, email opens
-- and clicks, loyalty events, support tickets by email or phone.  Event
-- times are the wall clock, so windows and sessions are live.

CREATE SEQUENCE shop.traffic_order_id START 1000000000;

CREATE PROCEDURE shop.traffic(events integer, seed integer DEFAULT 1, customers integer DEFAULT 200,
                              per_commit integer DEFAULT 1, pause interval DEFAULT '0')
LANGUAGE plpgsql AS $$
DECLARE
    cats text[] := '{running shoes,hiking boots,socks,jackets,bikes,tents,kids,watches,bags,hats}';
    kinds text[] := '{page_view,product_view,product_view,product_view,search,filter,add_to_cart,login}';
    r double precision;
    c integer;
    v integer;
    cat integer;
    kind text;
BEGIN
    IF events IS NULL OR events < 0 OR customers < 2 OR per_commit < 1 THEN
        RAISE EXCEPTION 'shop.traffic: events >= 0, customers >= 2, per_commit >= 1';
    END IF;
    PERFORM setseed((seed % 1000) / 1000.0);
    FOR i IN 1 .. events LOOP
        r := random();
        c := 1 + floor(random() * customers)::integer;
        cat := 1 + (c * 7 + floor(random() * 3)::integer) % 10;
        IF r < 0.60 THEN
            -- a visitor: customer c's browser, or one of as many anonymous ones
            v := CASE WHEN random() < 0.5 THEN c ELSE customers + c END;
            kind := kinds[1 + floor(random() * 8)::integer];
            INSERT INTO shop.web_events (anonymous_id, customer_id, event_type, sku, category, search_query, props, ts)
            VALUES ('t-' || seed || '-' || v,
                    CASE WHEN v <= customers AND kind = 'login' THEN c END,
                    kind,
                    CASE WHEN kind IN ('product_view', 'add_to_cart') THEN 'sku-' || cat || '-' || floor(random() * 50)::integer END,
                    CASE WHEN kind <> 'login' THEN cats[cat] END,
                    CASE WHEN kind = 'search' THEN cats[cat] || ' ' || floor(random() * 5)::integer END,
                    CASE WHEN kind IN ('filter', 'product_view', 'add_to_cart') AND random() < 0.5
                         THEN jsonb_build_object('size', (36 + floor(random() * 12)::integer)::text) END,
                    clock_timestamp());
        ELSIF r < 0.70 THEN
            INSERT INTO shop.orders (order_id, customer_id, email, sku, category, amount, ordered_at)
            VALUES (nextval('shop.traffic_order_id'), c,
                    CASE WHEN random() < 0.2 THEN ' C' || c || '@Example.COM ' ELSE 'c' || c || '@example.com' END,
                    'sku-' || cat || '-' || floor(random() * 50)::integer, cats[cat],
                    round((5 + 300 * random())::numeric, 2), clock_timestamp());
        ELSIF r < 0.90 THEN
            INSERT INTO shop.email_events (email, campaign, event_type, ts)
            VALUES ('c' || c || '@example.com', 'campaign-' || floor(random() * 5)::integer,
                    (ARRAY['sent', 'sent', 'open', 'click'])[1 + floor(random() * 4)::integer], clock_timestamp());
        ELSIF r < 0.95 THEN
            INSERT INTO shop.loyalty_events (loyalty_no, customer_id, tier, points, ts)
            VALUES ('L-' || c, CASE WHEN random() < 0.7 THEN c END,
                    (ARRAY['bronze', 'silver', 'gold', 'platinum'])[1 + floor(random() * 4)::integer],
                    floor(random() * 5000)::integer, clock_timestamp());
        ELSE
            INSERT INTO shop.support_tickets (email, phone, status, sentiment, opened_at)
            VALUES (CASE WHEN random() < 0.7 THEN 'c' || c || '@example.com' END,
                    CASE WHEN random() >= 0.5 THEN '+1 415 555 ' || lpad((c % 10000)::text, 4, '0') END,
                    CASE WHEN random() < 0.3 THEN 'open' ELSE 'closed' END,
                    (ARRAY['negative', 'neutral', 'positive'])[1 + floor(random() * 3)::integer],
                    clock_timestamp());
        END IF;
        IF i % per_commit = 0 THEN
            COMMIT;
            IF pause > interval '0' THEN
                PERFORM pg_sleep(extract(epoch FROM pause));
            END IF;
        END IF;
    END LOOP;
END $$;
COMMENT ON PROCEDURE shop.traffic(integer, integer, integer, integer, interval) IS
    'Write events rows of live shop traffic, committing every per_commit rows and sleeping pause between commits.';
