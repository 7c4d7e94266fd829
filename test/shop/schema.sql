-- test/shop/schema.sql: the example shop.  Five systems, each with its own
-- table and its own identifier, as a shop has them before personalize:
--
--   shop.orders           commerce platform: customer id + email
--   shop.web_events       web tracking: anonymous id, customer id after login,
--                         product, category, search, size (in a jsonb column)
--   shop.email_events     email provider: email, campaign, sent/open/click
--   shop.loyalty_events   loyalty platform: loyalty number, linked customer id,
--                         tier, points
--   shop.support_tickets  support desk: email or phone, status, sentiment
--
-- Used by the tests, the docs, the demo and the benchmarks.  Creates the
-- tables only; test/shop/config.sql registers them with personalize and
-- test/shop/generate.sql fills them with a deterministic synthetic load.
CREATE SCHEMA shop;

CREATE TABLE shop.orders (
    order_id    bigint PRIMARY KEY,
    customer_id bigint,
    email       text,
    sku         text NOT NULL,
    category    text NOT NULL,
    amount      numeric(10, 2) NOT NULL,
    ordered_at  timestamptz NOT NULL
);

CREATE TABLE shop.web_events (
    event_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    anonymous_id text,
    customer_id  bigint,
    event_type   text NOT NULL,       -- page_view, product_view, search, filter, add_to_cart, login
    sku          text,
    category     text,
    search_query text,
    props        jsonb,               -- {"size": "44", ...}
    ts           timestamptz NOT NULL
);

CREATE TABLE shop.email_events (
    email      text NOT NULL,
    campaign   text NOT NULL,
    event_type text NOT NULL,         -- sent, open, click
    ts         timestamptz NOT NULL
);

CREATE TABLE shop.loyalty_events (
    loyalty_no  text NOT NULL,
    customer_id bigint,
    tier        text NOT NULL,
    points      integer NOT NULL,
    ts          timestamptz NOT NULL
);

CREATE TABLE shop.support_tickets (
    ticket_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email     text,
    phone     text,
    status    text NOT NULL,          -- open, closed
    sentiment text NOT NULL,          -- negative, neutral, positive
    opened_at timestamptz NOT NULL
);
