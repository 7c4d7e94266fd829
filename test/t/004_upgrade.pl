# ALTER EXTENSION personalize UPDATE: a database created at 0.1.0, with trait
# states stored in a table, moves through 0.2.0 (identity resolution) and
# 0.3.0 (sources, traits, profiles), 0.4.0 (streaming) to 0.5.0 (await_apply)
# and keeps its data; the upgraded extension has exactly the objects of a
# fresh one.
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
	'0.5.0', 'updated to 0.5.0');
is($node->safe_psql('old_db', 'SELECT string_agg(r::text, E\'\\n\' ORDER BY g) FROM kept'),
	$before, 'stored states are unchanged');

$node->safe_psql('fresh_db', 'CREATE EXTENSION personalize');
my $objects = q{SELECT string_agg(pg_describe_object(classid, objid, objsubid), E'\n' ORDER BY 1)
                FROM pg_depend WHERE deptype = 'e'
                 AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')};
is($node->safe_psql('old_db', $objects), $node->safe_psql('fresh_db', $objects),
	'the updated extension has the same objects as a fresh 0.5.0');

$node->safe_psql('old_db',
	q{SELECT personalize.create_namespace('email', 1, 5, 'personalize.normalize_email(text)')});
is($node->safe_psql('old_db', q{
	SELECT personalize.link('email', 'a@x.com', 'email', 'B@x.com')
	   AND personalize.resolve('email', 'b@x.com') = personalize.resolve('email', 'a@x.com')}),
	't', 'identity resolution works after the update');

$node->stop;
done_testing();
