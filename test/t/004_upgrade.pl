# ALTER EXTENSION personalize UPDATE: a database created at 0.1.0, with trait
# states stored in a table, moves through 0.2.0 (identity resolution) and
# 0.3.0 (sources, traits, profiles), 0.4.0 (streaming), 0.5.0 (await_apply)
# to 0.6.0 (trust boundaries), 0.7.0 (audiences) and 0.8.0 (Citus tables refused as sources) and keeps its data; the upgraded extension has
# exactly the objects of a fresh one.  A database configured at 0.5.0 learns
# who configured its namespaces and sources.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'personalize'\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE DATABASE old_db;
CREATE DATABASE fresh_db;
});
$node->safe_psql('old_db', q{
CREATE EXTENSION personalize VERSION '0.1.0';
CREATE TABLE kept AS
SELECT g, personalize.recent_agg('sku-' || g, '2026-01-01'::timestamptz + g * interval '1 min', 3) AS r
FROM generate_series(1, 5) g GROUP BY g;
});
is($node->safe_psql('old_db', "SELECT extversion FROM pg_extension WHERE extname = 'personalize'"),
	'0.1.0', 'created at 0.1.0');
my $before = $node->safe_psql('old_db', 'SELECT string_agg(r::text, E\'\\n\' ORDER BY g) FROM kept');

$node->safe_psql('old_db', 'ALTER EXTENSION personalize UPDATE');
is($node->safe_psql('old_db', "SELECT extversion FROM pg_extension WHERE extname = 'personalize'"),
	'0.8.0', 'updated to 0.8.0');
is($node->safe_psql('old_db', 'SELECT string_agg(r::text, E\'\\n\' ORDER BY g) FROM kept'),
	$before, 'stored states are unchanged');

$node->safe_psql('fresh_db', 'CREATE EXTENSION personalize');
my $objects = q{SELECT string_agg(pg_describe_object(classid, objid, objsubid), E'\n' ORDER BY 1)
                FROM pg_depend WHERE deptype = 'e'
                 AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')};
is($node->safe_psql('old_db', $objects), $node->safe_psql('fresh_db', $objects),
	'the updated extension has the same objects as a fresh 0.8.0');

$node->safe_psql('old_db',
	q{SELECT personalize.create_namespace('email', 1, 5, 'personalize.normalize_email(text)')});
is($node->safe_psql('old_db', q{
	SELECT personalize.link('email', 'a@x.com', 'email', 'B@x.com')
	   AND personalize.resolve('email', 'b@x.com') = personalize.resolve('email', 'a@x.com')}),
	't', 'identity resolution works after the update');

# configured at 0.5.0: a namespace with a user's normalizer, one with the
# extension's own, a source owned by another role
$node->safe_psql('postgres', q{
CREATE DATABASE configured_db;
CREATE ROLE norm_owner;
CREATE ROLE table_owner;
});
$node->safe_psql('configured_db', q{
CREATE EXTENSION personalize VERSION '0.5.0';
CREATE FUNCTION public.my_norm(text) RETURNS text IMMUTABLE LANGUAGE sql RETURN lower($1);
ALTER FUNCTION public.my_norm(text) OWNER TO norm_owner;
-- (as 0.5.0's create_namespace() wrote them: this library writes the owner too)
INSERT INTO personalize.namespaces (id, name, priority, max_per_profile, normalizer)
VALUES (1, 'email', 1, 5, 'personalize.normalize_email(text)'),
       (2, 'handle', 0, NULL, 'public.my_norm(text)');
CREATE TABLE public.ev (email text, handle text, ts timestamptz);
ALTER TABLE public.ev OWNER TO table_owner;
SELECT personalize.register_source('public.ev', '{"email": "email", "handle": "handle"}', 'ts',
                                   backfill => false);
});
$node->safe_psql('configured_db', 'ALTER EXTENSION personalize UPDATE');
is($node->safe_psql('configured_db', q{
	SELECT string_agg(name || '=' || owner::text, ',' ORDER BY name) FROM personalize.namespaces}),
	'email=' . $node->safe_psql('configured_db', 'SELECT current_user') . ',handle=norm_owner',
	'0.5.0 namespaces: the extension owner owns its own normalizers, the function owner a user\'s');
is($node->safe_psql('configured_db', q{
	SELECT s.owner::text || ' ' || (st.owner = s.owner::oid)
	  FROM personalize.sources s JOIN personalize.stream_sources st ON st.source_id = s.id}),
	'table_owner true', '0.5.0 sources: owned by their table\'s owner, also in what the plugin reads');
is($node->safe_psql('configured_db', q{
	SELECT personalize.resolve('handle', 'X') IS NULL AND personalize.identify('handle', 'X') IS NOT NULL}),
	't', 'the user\'s normalizer runs after the update');

$node->stop;
done_testing();
