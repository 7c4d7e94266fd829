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

# The identity graph and its configuration are extension configuration
# tables: pg_dump dumps their rows (and the merge-log and refusal sequences).
$src->safe_psql('postgres', q{
SET search_path = personalize, public;
SELECT create_namespace('customer_id', 100, 1);
SELECT create_namespace('email', 50, 2, 'personalize.normalize_email(text)', '{test@example.com}');
SELECT create_namespace('anonymous_id', 10);
SELECT identify(jsonb_build_object('anonymous_id', 'a' || g, 'email', ' User' || g % 7 || '@Shop.example ',
                                   'customer_id', CASE WHEN g % 3 = 0 THEN (g % 7)::text END))
FROM generate_series(1, 60) g;
SELECT link('email', 'test@example.com', 'customer_id', '3');
UPDATE profiles SET states = profile_set(states, 1, (SELECT recent_agg('sku-' || x, '2026-01-01'::timestamptz + x * interval '1 h', 5)
                                                     FROM generate_series(1, (id % 11)::int + 1) x));
});
my $identity_digest = q{SELECT md5(concat_ws(E'\n',
	(SELECT string_agg(concat_ws('|', id, name, priority, max_per_profile, normalizer, blocked), ',' ORDER BY id) FROM personalize.namespaces),
	(SELECT string_agg(concat_ws('|', profile_id, namespace_id, value, first_seen), ',' ORDER BY namespace_id, value) FROM personalize.identities),
	(SELECT string_agg(concat_ws('|', id, key_namespace_id, key_value, states, first_seen, last_seen, updated_at, rebuild_pending), ',' ORDER BY id) FROM personalize.profiles),
	(SELECT string_agg(concat_ws('|', id, logged_at, action, from_profile, into_profile, namespace_a, value_a, namespace_b, value_b), ',' ORDER BY id) FROM personalize.merge_log),
	(SELECT string_agg(concat_ws('|', id, times, rule, rule_namespace, namespace_a, value_a, namespace_b, value_b, profile_a, profile_b), ',' ORDER BY id) FROM personalize.refused_links)))};
my $identity_expected = $src->safe_psql('postgres', $identity_digest);
ok($src->safe_psql('postgres', 'SELECT count(*) FROM personalize.merge_log') > 0
	&& $src->safe_psql('postgres', 'SELECT count(*) FROM personalize.refused_links') > 0,
	'source identity graph has merges and refusals');

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
	is($dst->safe_psql($db, $identity_digest), $identity_expected,
		"$format: namespaces, identities, profiles, merge log and refusals restored");
	# the restored graph works: normalizer and sequences came along
	$dst->safe_psql($db, q{SELECT personalize.identify('anonymous_id', 'x' || g) FROM generate_series(1, 2) g});
	is($dst->safe_psql($db, q{
		SELECT personalize.link('email', ' USER1@shop.example', 'anonymous_id', 'new-device')
		   AND personalize.resolve('anonymous_id', 'new-device') = personalize.resolve('email', 'user1@shop.example')
		   AND personalize.link('anonymous_id', 'x1', 'anonymous_id', 'x2')  -- a merge: a new merge-log id
		   AND (SELECT count(*) = count(DISTINCT id) FROM personalize.merge_log)}),
		't', "$format: the restored identity graph links and logs");
}

$src->stop;
$dst->stop;
done_testing();
