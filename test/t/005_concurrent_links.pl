# Two backends link identifiers at the same time, one transaction per link,
# so their writes interleave and each one's identity cache is made stale by
# the other's merges.  Afterwards the identity graph must be exactly the
# connected components of all links, with every profile keyed by its best
# identifier and no row orphaned.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('concurrent');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'personalize'\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION personalize;
SELECT personalize.create_namespace('device', 10);
SELECT personalize.create_namespace('email', 50);
SELECT setseed(0.42);
-- 3000 links among ~2400 identifiers: many merges of existing profiles
CREATE TABLE links AS
SELECT g AS id,
       CASE WHEN random() < 0.5 THEN 'device' ELSE 'email' END AS ns_a, 'v' || (random() * 1200)::int AS a,
       CASE WHEN random() < 0.5 THEN 'device' ELSE 'email' END AS ns_b, 'v' || (random() * 1200)::int AS b
FROM generate_series(1, 3000) g;
});

# each writer: its half of the links, one committed transaction per link
my @writers;
for my $half (0, 1)
{
	my $sql = qq{
DO \$\$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM links WHERE id % 2 = $half ORDER BY id LOOP
    PERFORM personalize.link(r.ns_a, r.a, r.ns_b, r.b);
    PERFORM personalize.resolve(r.ns_a, r.a);  -- fill this backend's cache
    COMMIT;
  END LOOP;
END
\$\$;
};
	my ($out, $err) = ('', '');
	push @writers,
	  [ IPC::Run::start([ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
			'>', \$out, '2>', \$err), \$out, \$err ];
}
for my $w (@writers)
{
	$w->[0]->finish;
	is($w->[0]->result(0), 0, 'writer finished without error') or diag(${ $w->[2] });
}

is($node->safe_psql('postgres', q{
WITH cc AS (
  SELECT * FROM personalize.connected_components(
    $$SELECT ns_a || ':' || a, ns_b || ':' || b FROM links$$)),
graph AS (
  SELECT n.name || ':' || i.value AS identifier, i.profile_id
  FROM personalize.identities i JOIN personalize.namespaces n ON n.id = i.namespace_id)
SELECT count(*) FROM (
  -- pairs that agree on "same component" vs "same profile" must be all pairs:
  -- compare each identifier's component with its profile's smallest identifier
  SELECT g.identifier
  FROM graph g JOIN cc ON cc.identifier = g.identifier
  WHERE cc.component <> (SELECT min(g2.identifier COLLATE "C") FROM graph g2 WHERE g2.profile_id = g.profile_id)
) wrong}), '0', 'the graph is the connected components of all links');

is($node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM personalize.connected_components(
          $$SELECT ns_a || ':' || a, ns_b || ':' || b FROM links$$))
     = (SELECT count(*) FROM personalize.identities)}), 't', 'every identifier is in the graph once');

is($node->safe_psql('postgres', q{
SELECT count(*) FROM personalize.profiles p
LEFT JOIN LATERAL (
  SELECT i.namespace_id, i.value FROM personalize.identities i
  JOIN personalize.namespaces n ON n.id = i.namespace_id
  WHERE i.profile_id = p.id ORDER BY n.priority DESC, n.name, i.value COLLATE "C" LIMIT 1) best ON true
WHERE best.namespace_id IS NULL OR best.namespace_id <> p.key_namespace_id
   OR best.value <> p.key_value}),
	'0', 'every profile has identifiers and is keyed by its best one');

is($node->safe_psql('postgres', q{
SELECT count(*) FROM personalize.identities i
WHERE NOT EXISTS (SELECT FROM personalize.profiles p WHERE p.id = i.profile_id)}),
	'0', 'no identity points at a missing profile');

ok($node->safe_psql('postgres', 'SELECT count(*) FROM personalize.merge_log') > 100,
	'the writers merged existing profiles');

# A reader whose statement snapshot predates a merge must not cache what it
# read under the counter the merge moved (it would serve the merged-away id
# for good).  The reader takes its snapshot, then waits on an advisory lock
# while another session merges.
$node->safe_psql('postgres', q{
SELECT personalize.identify('device', 'r1'), personalize.identify('email', 'r1@x');
SELECT personalize.resolve('device', 'r1');
});
my ($r_out, $r_err) = ('', '');
# (statements as -c arguments: IPC::Run feeds stdin only when pumped)
my ($hold_out, $hold_err) = ('', '');
my $hold = IPC::Run::start([ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
	'-c', q{SELECT pg_advisory_lock(4242)},
	# wait for the reader to queue behind the lock: a loop of statements, each
	# reading pg_locks afresh (a single query may read it once and keep it)
	'-c', q{DO $$ BEGIN
	          FOR i IN 1 .. 100000 LOOP
	            EXIT WHEN EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted);
	            PERFORM pg_sleep(0.01);
	          END LOOP;
	        END $$},
	'-c', q{SELECT personalize.link('device', 'r1', 'email', 'r1@x')} ],
	'>', \$hold_out, '2>', \$hold_err);
# wait until the holder has the lock
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted})
  or die 'holder did not get the lock';
my $reader = IPC::Run::start([ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c',
	q{SELECT personalize.resolve('device', 'r1') IS NOT NULL},
	'-c', q{SELECT pg_advisory_lock_shared(4242), personalize.resolve('device', 'r1') IS NOT NULL},
	'-c', q{SELECT personalize.resolve('device', 'r1') = (SELECT profile_id FROM personalize.identities WHERE value = 'r1')} ],
	'>', \$r_out, '2>', \$r_err);
$hold->finish;   # the holder links once the reader waits, and releases the lock at exit
$reader->finish;
is($hold->result(0), 0, 'the merging session finished') or diag($hold_err);
is((split /\n/, $r_out)[-1], 't', 'a reader whose snapshot predates a merge does not keep the old id')
	or diag("$r_out $r_err");

# A backend keeps its namespace list across transactions while nothing it
# was read from changed: a change committed by another backend reaches it.
my $long = $node->background_psql('postgres');
$long->query_safe(q{SELECT personalize.normalize_identifier('device', 'kiosk-1')});
is($long->query_safe(q{SELECT personalize.normalize_identifier('device', 'kiosk-1') IS NOT NULL}),
	't', 'a long-lived backend normalizes a value');
$node->safe_psql('postgres', q{SELECT personalize.block_value('device', 'kiosk-1')});
is($long->query_safe(q{SELECT personalize.normalize_identifier('device', 'kiosk-1') IS NULL}),
	't', 'it sees a value blocked by another backend in its next transaction');
$node->safe_psql('postgres', q{
CREATE FUNCTION public.dev_norm(text) RETURNS text IMMUTABLE LANGUAGE sql RETURN upper($1);
SELECT personalize.create_namespace('code', 5, normalizer => 'public.dev_norm(text)');
});
is($long->query_safe(q{SELECT personalize.normalize_identifier('code', 'ab')}), 'AB',
	'it sees a namespace another backend created');
$node->safe_psql('postgres',
	q{CREATE OR REPLACE FUNCTION public.dev_norm(text) RETURNS text IMMUTABLE LANGUAGE sql RETURN lower($1)});
is($long->query_safe(q{SELECT personalize.normalize_identifier('code', 'AB')}), 'ab',
	'it sees a normalizer another backend replaced, no namespace row changed');
$long->quit;

$node->stop;
done_testing();
