# pg_dump / pg_restore round trip: a table holding every trait state, and a
# profile holding them all, is dumped (custom and plain format) and restored
# into a fresh cluster; the restored values are equal, and merge with and
# read like the originals.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $src = PostgreSQL::Test::Cluster->new('dump_source');
$src->init;
$src->append_conf('postgresql.conf', "shared_preload_libraries = 'personalize'\n");
$src->start;
my $dst = PostgreSQL::Test::Cluster->new('dump_target');
$dst->init;
$dst->append_conf('postgresql.conf', "shared_preload_libraries = 'personalize'\n");
$dst->start;

$src->safe_psql('postgres', q{
CREATE EXTENSION personalize;
SET search_path = personalize, public;
CREATE TABLE public.profiles_sample AS
SELECT *, profile_set(profile_set(profile_set(profile_set(profile_set(profile_set(profile_set(profile_set('{}',
           1, recent), 2, top), 3, windowed), 4, dist), 40, dist_dense), 5, first), 6, last), 2147483647, sess) AS prof
FROM (
SELECT g AS shopper,
       recent_agg('sku-' || x, '2026-01-01'::timestamptz + x * interval '37 min', 10) AS recent,
       top_agg('cat-' || x % 5, '2026-01-01'::timestamptz + x * interval '37 min', 10, '7 days') AS top,
       windowed_agg('2026-01-01'::timestamptz + x * interval '37 min', x) AS windowed,
       distinct_agg(x * g) AS dist,
       distinct_agg(x, 4) AS dist_dense,
       first_agg('tier-' || x, '2026-01-01'::timestamptz + x * interval '37 min') AS first,
       last_agg(x, '2026-01-01'::timestamptz + x * interval '37 min') AS last,
       session_agg('2026-01-01'::timestamptz + x * interval '7 min', 'cat-' || x % 3, 'sku-' || x) AS sess
FROM generate_series(1, 20) g, generate_series(1, 50 * g) x
GROUP BY g) q;
});

my $digest = q{SELECT md5(string_agg(concat_ws('|', shopper, recent, top, windowed, dist, dist_dense,
                                               first, last, sess, prof), E'\n' ORDER BY shopper))
               FROM public.profiles_sample};
my $expected = $src->safe_psql('postgres', $digest);
is($src->safe_psql('postgres', 'SELECT count(*) FROM public.profiles_sample'), '20', 'source has 20 rows');

my $tmp = PostgreSQL::Test::Utils::tempdir;
for my $format ('custom', 'plain')
{
	my $db = "restored_$format";
	my $file = "$tmp/dump.$format";
	$dst->safe_psql('postgres', "CREATE DATABASE $db");
	command_ok([ 'pg_dump', '-d', $src->connstr('postgres'), "--format=$format", '-f', $file ],
		"pg_dump --format=$format");
	if ($format eq 'custom')
	{
		command_ok([ 'pg_restore', '-d', $dst->connstr($db), '--exit-on-error', $file ],
			'pg_restore into a fresh cluster');
	}
	else
	{
		command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $dst->connstr($db), '-f', $file ],
			'psql restores the plain dump into a fresh cluster');
	}
	is($dst->safe_psql($db, $digest), $expected, "$format: restored values are equal to the originals");
	is($dst->safe_psql($db, q{
		SET search_path = personalize, public;
		SELECT bool_and(recent || recent = recent AND windowed_total_count(windowed) > 0
		                AND distinct_count(dist) > 0 AND event_value(first) <> ''
		                AND prof || prof <> prof AND profile_get(prof, 1, NULL::recent_state) = recent
		                AND profile_get(prof, 2147483647, NULL::session_state) = sess)
		FROM public.profiles_sample}), 't', "$format: restored states merge and read");
}

$src->stop;
$dst->stop;
done_testing();
