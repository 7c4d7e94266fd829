# Stream equals rebuild for every kind of table that can be a source
# (docs/security.md, "Tables that can be sources"):
#   - an event time of type timestamp (without time zone) and of type date,
#     written by sessions in one TimeZone, streamed by a server in another,
#     rebuilt in a third: UTC, the same in both paths;
#   - a table with an inheritance child: the child's rows are events of
#     neither path;
#   - a partitioned table: inserts into every partition are its events, a
#     partition with another column order and a dropped column, and one
#     attached after the registration, included;
#   - an enum whose cast to text is a user's function (which raises if it is
#     ever called): both paths read the label;
#   - a generated column as a field, an identity column as an identifier,
#     columns of domain types;
#   - numbers as text at the edges of what parses (exponents past 1000,
#     values past float8, blanks) and equal numbers of different scales for
#     min and max: one reading and one comparison in both paths.
# After the stream has applied everything, the profiles are copied aside,
# rebuild() recomputes them from the tables, and the two must be equal.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PzNode;

my $node = streaming_node('kinds', <<'CONF');
timezone = 'America/New_York'
CONF

sub sql { return $node->safe_psql('shop', $_[0]); }

sql(q{
CREATE EXTENSION personalize;
SELECT personalize.create_namespace('email', 1, NULL, 'personalize.normalize_email(text)');
SELECT personalize.create_namespace('customer', 2);
CREATE SCHEMA k;
CREATE TABLE k.plain_ts (email text, at timestamp, amount numeric);
CREATE TABLE k.by_date (email text, day date, sku text);
CREATE TABLE k.base (email text, ts timestamptz, sku text);
CREATE TABLE k.base_child (note text) INHERITS (k.base);
CREATE TYPE k.tier AS ENUM ('bronze', 'silver', 'gold');
CREATE FUNCTION k.tier_text(k.tier) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RAISE EXCEPTION 'a user''s cast ran'; END $$;
CREATE CAST (k.tier AS text) WITH FUNCTION k.tier_text(k.tier);
CREATE TABLE k.loyalty (email text, ts timestamptz, tier k.tier);
CREATE TABLE k.orders (customer bigint GENERATED ALWAYS AS IDENTITY, email text, ts timestamptz,
                       price numeric, qty integer, total numeric GENERATED ALWAYS AS (price * qty) STORED);
CREATE DOMAIN k.address AS text CHECK (VALUE LIKE '%@%');
CREATE DOMAIN k.money AS numeric CHECK (VALUE >= 0);
CREATE TABLE k.refunds (email k.address, ts timestamptz, amount k.money);
CREATE TABLE k.amounts (email text, ts timestamptz, amount text);
CREATE TABLE k.parted (email text, ts timestamptz, sku text) PARTITION BY RANGE (ts);
CREATE TABLE k.parted_2025 PARTITION OF k.parted FOR VALUES FROM ('2025-01-01 00:00+00') TO ('2026-01-01 00:00+00');
CREATE TABLE k.parted_2026 (junk integer, sku text, ts timestamptz, email text);
ALTER TABLE k.parted_2026 DROP COLUMN junk;
ALTER TABLE k.parted ATTACH PARTITION k.parted_2026 FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2027-01-01 00:00+00');

-- rows before the registration: the backfills fold them
SET TimeZone = 'Asia/Tokyo';
INSERT INTO k.plain_ts VALUES ('a@x.com', '2026-01-01 10:00', 5);
INSERT INTO k.by_date VALUES ('a@x.com', '2026-01-02', 'sku-1');
INSERT INTO k.base VALUES ('b@x.com', '2026-01-01 10:00+00', 'sku-2');
INSERT INTO k.base_child VALUES ('child@x.com', '2026-01-01 10:00+00', 'sku-9', 'a child row');
INSERT INTO k.loyalty VALUES ('a@x.com', '2026-01-01 10:00+00', 'silver');
INSERT INTO k.orders (email, ts, price, qty) VALUES ('c@x.com', '2026-01-01 10:00+00', 2.5, 4);
INSERT INTO k.refunds VALUES ('a@x.com', '2026-01-01 10:00+00', 1);
INSERT INTO k.parted VALUES ('p@x.com', '2025-06-01 10:00+00', 'sku-p1');
INSERT INTO k.amounts VALUES ('n@x.com', '2026-01-01 10:00+00', '1.5'), ('n@x.com', '2026-01-01 10:01+00', '1e2000'),
                             ('n@x.com', '2026-01-01 10:02+00', ' 2 '), ('n@x.com', '2026-01-01 10:03+00', '-1e400');

SELECT personalize.register_source('k.plain_ts', '{"email": "email"}', 'at');
SELECT personalize.register_source('k.by_date', '{"email": "email"}', 'day');
SELECT personalize.register_source('k.base', '{"email": "email"}', 'ts');
SELECT personalize.register_source('k.loyalty', '{"email": "email"}', 'ts');
SELECT personalize.register_source('k.orders', '{"customer": "customer", "email": "email"}', 'ts');
SELECT personalize.register_source('k.refunds', '{"email": "email"}', 'ts');
SELECT personalize.register_source('k.parted', '{"email": "email"}', 'ts');
SELECT personalize.register_source('k.amounts', '{"email": "email"}', 'ts');
SELECT personalize.add_trait('events', 'count');
SELECT personalize.add_trait('spent', 'sum', field => 'amount');
SELECT personalize.add_trait('skus', 'recent', field => 'sku', n => 10);
SELECT personalize.add_trait('tier', 'last', field => 'tier');
SELECT personalize.add_trait('total', 'sum', field => 'total');
SELECT personalize.add_trait('first_day', 'first', field => 'sku', sources => '{k.by_date}');
SELECT personalize.add_trait('low', 'min', field => 'amount', sources => '{k.amounts}');
SELECT personalize.add_trait('high', 'max', field => 'amount', sources => '{k.amounts}');
SELECT personalize.add_trait('spent_in', 'windowed_sum', field => 'amount', sources => '{k.amounts}');
});

# the stream: sessions in another TimeZone than the server's
sql(q{
SET TimeZone = 'Asia/Tokyo';
INSERT INTO k.plain_ts VALUES ('a@x.com', '2026-01-03 23:30', 7), ('d@x.com', '2026-01-04 00:15', 1);
INSERT INTO k.by_date VALUES ('a@x.com', '2026-01-03', 'sku-3'), ('d@x.com', '2025-12-31', 'sku-4');
INSERT INTO k.base VALUES ('b@x.com', '2026-01-05 10:00+00', 'sku-5');
INSERT INTO k.base_child VALUES ('child@x.com', '2026-01-05 10:00+00', 'sku-9', 'a child row'),
                                ('b@x.com', '2026-01-06 10:00+00', 'sku-9', 'a child row of b');
INSERT INTO k.loyalty VALUES ('a@x.com', '2026-01-05 10:00+00', 'gold'), ('d@x.com', '2026-01-05 10:00+00', 'bronze');
INSERT INTO k.orders (email, ts, price, qty) VALUES ('c@x.com', '2026-01-05 10:00+00', 10, 3),
                                                    (NULL, '2026-01-05 11:00+00', 1, 1);
INSERT INTO k.refunds VALUES ('d@x.com', '2026-01-05 10:00+00', 3);
INSERT INTO k.parted VALUES ('p@x.com', '2025-07-01 10:00+00', 'sku-p2'), ('p@x.com', '2026-07-01 10:00+00', 'sku-p3');
-- a partition attached after the registration, its columns in another order
CREATE TABLE k.parted_2027 (sku text, email text, ts timestamptz);
ALTER TABLE k.parted ATTACH PARTITION k.parted_2027 FOR VALUES FROM ('2027-01-01 00:00+00') TO ('2028-01-01 00:00+00');
INSERT INTO k.parted VALUES ('p@x.com', '2027-07-01 10:00+00', 'sku-p4');
INSERT INTO k.parted_2027 VALUES ('sku-p5', 'p@x.com', '2027-08-01 10:00+00');
INSERT INTO k.amounts VALUES ('n@x.com', '2026-01-02 10:00+00', '1.50'), ('n@x.com', '2026-01-02 10:01+00', '2.000'),
                             ('n@x.com', '2026-01-02 10:02+00', '3e1001'), ('n@x.com', '2026-01-02 10:03+00', '-1e400');
});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'the stream applied everything');
is(sql(q{SELECT count(*) FROM personalize.dead_letters WHERE source <> 'k.amounts'::regclass}), '0',
	'no dead letter but for the texts that are not numbers');
is(sql(q{SELECT count(*) FILTER (WHERE reason LIKE 'value "3e1001" %') || ' ' || count(*) FILTER (WHERE reason LIKE 'value "-1e400" %')
                || ' ' || count(*)
           FROM personalize.dead_letters WHERE source = 'k.amounts'::regclass}),
	'4 1 5', 'an exponent past 1000 is no number for any numeric trait, a value past float8 none for a windowed sum');

# what the stream made, against what is expected of it
is(sql(q{SET TimeZone = 'UTC';
         SELECT first_seen || ' ' || last_seen FROM personalize.profile_view
          WHERE profile_id = personalize.resolve('email', 'd@x.com')}),
	'2025-12-31 00:00:00+00 2026-01-05 10:00:00+00',
	'a date is its midnight UTC, a timestamp UTC, whatever the TimeZones');
is(sql(q{SELECT skus FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'b@x.com')}),
	'{sku-5,sku-2}', "an inheritance child's rows are not events");
is(sql(q{SELECT personalize.resolve('email', 'child@x.com') IS NULL}), 't',
	"an identifier only the child holds is unknown");
is(sql(q{SELECT skus FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'p@x.com')}),
	'{sku-p5,sku-p4,sku-p3,sku-p2,sku-p1}',
	'inserts into every partition are events of the partitioned table, one attached later included');
is(sql(q{SELECT tier FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'a@x.com')}),
	'gold', "an enum reads as its label; the user's cast never ran");
is(sql(q{SELECT total FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'c@x.com')}),
	'40.0', 'a generated column is a field');
is(sql(q{SELECT count(*) FROM personalize.identities i JOIN personalize.namespaces n ON n.id = i.namespace_id
         WHERE n.name = 'customer'}),
	'3', 'an identity column is an identifier');
is(sql(q{SELECT (low = -1e400) || ' ' || high FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'n@x.com')}),
	'true 2.000', 'of equal numbers, max keeps the one with more digits after the point');
is(sql(q{SELECT spent FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'd@x.com')}),
	'4', 'domain columns read as their base types');

# stream equals rebuild, the rebuild in yet another TimeZone
sql(q{
CREATE TABLE public.streamed AS SELECT id, states, first_seen, last_seen FROM personalize.profiles;
SET TimeZone = 'Pacific/Auckland';
SELECT personalize.rebuild();
});
is(sql(q{
SELECT count(*) FROM personalize.profiles p FULL JOIN public.streamed s ON s.id = p.id
 WHERE p.id IS NULL OR s.id IS NULL OR NOT personalize.profile_eq(p.states, s.states)
    OR p.first_seen IS DISTINCT FROM s.first_seen OR p.last_seen IS DISTINCT FROM s.last_seen}),
	'0', 'every streamed profile equals its rebuild');
is(sql(q{SELECT count(*) FROM personalize.profiles}), sql(q{SELECT count(*) FROM public.streamed}),
	'as many profiles');

$node->stop;
done_testing();
