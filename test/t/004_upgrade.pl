# ALTER EXTENSION personalize UPDATE: a database created at 0.1.0, with trait
# states stored in a table, moves through 0.2.0 (identity resolution) and
# 0.3.0 (sources, traits, profiles), 0.4.0 (streaming), 0.5.0 (await_apply)
# to 0.6.0 (trust boundaries), 0.7.0 (audiences), 0.8.0 (Citus tables
# refused as sources), 0.9.0 (rebuild's identities resolved in memory)
# and 0.10.0 (Citus distributed tables as sources) and keeps its data; the upgraded extension has
# exactly the objects of a fresh one.  A database configured at 0.5.0 learns
# who configured its namespaces and sources.
#
# Every released version: a database created at each of 0.1.0 .. 0.9.0
# (0.1.0 updated one version at a time), with the identities, profiles,
# sources and traits that version kept and the worker's slot made when the
# database was, is updated to 0.10.0: its schema is then the same as a fresh
# 0.10.0's, installed from the one script personalize--0.10.0.sql (pg_dump
# --binary-upgrade --schema-only, which writes every object of the
# extension with its ACL and comment, compared with the OIDs left out), the
# data is there, and the stream goes on from the same slot: the events
# committed while the library waited for the update and those after it are
# applied exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my @released = qw(0.1.0 0.2.0 0.3.0 0.4.0 0.5.0 0.6.0 0.7.0 0.8.0 0.9.0);
my %db = map { my $d = $_; $d =~ tr/./_/; ($_ => "v$d") } @released;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'personalize'\n"
	  . "wal_level = logical\n"
	  . "personalize.worker_poll_interval = 5ms\npersonalize.worker_max_backoff = 1s\n"
	  . "max_worker_processes = 16\nmax_replication_slots = 10\n");
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
	'0.10.0', 'updated to 0.10.0');
is($node->safe_psql('old_db', 'SELECT string_agg(r::text, E\'\\n\' ORDER BY g) FROM kept'),
	$before, 'stored states are unchanged');

$node->safe_psql('fresh_db', 'CREATE EXTENSION personalize');
my $objects = q{SELECT string_agg(pg_describe_object(classid, objid, objsubid), E'\n'
                                  ORDER BY pg_describe_object(classid, objid, objsubid))
                FROM pg_depend WHERE deptype = 'e'
                 AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')};
is($node->safe_psql('old_db', $objects), $node->safe_psql('fresh_db', $objects),
	'the updated extension has the same objects as a fresh 0.10.0');

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

# --- every released version --------------------------------------------------

sub schema_of
{
	my ($db) = @_;
	my ($out, $err);
	# the extension's objects; not the user's tables in public, nor
	# profile_view, which is the configuration's (regenerated from the traits)
	IPC::Run::run([ 'pg_dump', '--schema-only', '--binary-upgrade', '--exclude-schema=public',
		'--exclude-table=personalize.profile_view', '-d', $node->connstr($db) ], '>', \$out, '2>', \$err)
	  or die "pg_dump $db: $err";
	# what differs between any two databases: OIDs, relfilenodes, xids, the
	# dump's own restrict key
	return join "\n", grep {
		!/binary_upgrade_set_next_|binary_upgrade_create_empty_extension|relfrozenxid|^WHERE oid = |^\\(un)?restrict |^-- Dumped|pg_catalog\.setval\(/
	} split /\n/, $out;
}

# the lines of a diff of two dumps (fresh, updated), for the log
sub schema_diff
{
	my ($a, $b) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	PostgreSQL::Test::Utils::append_to_file("$dir/fresh.sql", "$a\n");
	PostgreSQL::Test::Utils::append_to_file("$dir/updated.sql", "$b\n");
	my $out;
	IPC::Run::run([ 'diff', '-u', "$dir/fresh.sql", "$dir/updated.sql" ], '>', \$out);
	return substr($out, 0, 4000);
}

sub ver_ge { my ($a, $b) = @_; sprintf('%03d%03d%03d', split /\./, $a) ge sprintf('%03d%03d%03d', split /\./, $b) }

my %slot;
for my $v (@released)
{
	my $d = $db{$v};
	$node->safe_psql('postgres', "CREATE DATABASE $d");
	$node->safe_psql($d, "CREATE EXTENSION personalize VERSION '$v'");
	next if $v eq '0.1.0';
	$node->safe_psql($d, q{CREATE TABLE kept AS SELECT personalize.recent_agg('sku-1', '2026-01-01', 3) AS r});
	# the configuration and the identity graph as that version's library wrote
	# them (0.6.0's create_namespace is this library's)
	if (ver_ge($v, '0.6.0'))
	{
		$node->safe_psql($d, q{
			SELECT personalize.create_namespace('email', 1, 5, 'personalize.normalize_email(text)');
			SELECT personalize.create_namespace('cookie', 0);});
	}
	else
	{
		$node->safe_psql($d, q{
			INSERT INTO personalize.namespaces (id, name, priority, max_per_profile, normalizer)
			VALUES (1, 'email', 1, 5, 'personalize.normalize_email(text)'), (2, 'cookie', 0, NULL, NULL);});
	}
	my $states = '{}';
	if (ver_ge($v, '0.3.0'))
	{
		$node->safe_psql($d, q{
			CREATE TABLE public.ev (email text, cookie text, ts timestamptz NOT NULL DEFAULT now());
			-- rows before the registration: the profile below holds them
			INSERT INTO public.ev (email, cookie, ts)
			SELECT CASE WHEN g % 2 = 0 THEN 'a@x.com' END, CASE WHEN g % 2 = 1 THEN 'c1' END,
			       '2026-01-01'::timestamptz + g * interval '1 hour'
			  FROM generate_series(1, 10) g;
			SELECT personalize.register_source('public.ev', '{"email": "email", "cookie": "cookie"}', 'ts',
			                                   backfill => false);
			SELECT personalize.add_trait('views', 'count', backfill => false);});
		$states = '{"1": {"metric": {"op": "count", "count": 10}}}';
	}
	$node->safe_psql($d, qq{
		INSERT INTO personalize.identities (profile_id, namespace_id, value) VALUES (4242, 1, 'a\@x.com'), (4242, 2, 'c1');
		INSERT INTO personalize.profiles (id, key_namespace_id, key_value, states, first_seen, last_seen)
		VALUES (4242, 1, 'a\@x.com', '$states', '2026-01-01', '2026-01-02');});
}

# The worker of that version streamed each database from its slot, and had
# confirmed every write when the server stopped; the server restarts with
# this library, whose workers find those slots.  (This test has only this
# library: the slots and origins are made where the old workers left them.)
for my $v (@released)
{
	my $d = $db{$v};
	# the slot and the worker's replication origin (its applied progress),
	# both named after the database
	$slot{$v} = $node->safe_psql($d, q{
		SET output_plugin_libraries = 'personalize';  -- where the build has it (src/worker.c)
		SELECT s.slot_name FROM (SELECT 'personalize_' || oid AS name FROM pg_database WHERE datname = current_database()) n,
		       pg_create_logical_replication_slot(n.name, 'personalize') s,
		       pg_replication_origin_create(n.name) o,
		       pg_replication_origin_advance(n.name, s.lsn) a});
}
$node->append_conf('postgresql.conf',
	"personalize.database = '" . join(',', (map { $db{$_} } @released)) . "'\n");
$node->restart;

# The worker retries meanwhile (the library refuses the old schema), and its
# retry can deadlock with the update's DDL: the update is then run again, as
# a DBA would (it is one transaction).
sub update
{
	my ($d, $sql) = @_;
	for my $try (1 .. 10)
	{
		my ($rc, $out, $err) = $node->psql($d, $sql);
		return if $rc == 0;
		die "$d: $sql: $err" unless $err =~ /deadlock detected/;
		note "$d: $sql: deadlock with the worker, again";
	}
	die "$d: $sql: deadlocked 10 times";
}
# 0.1.0 one version at a time; the others in one UPDATE
update($db{'0.1.0'}, "ALTER EXTENSION personalize UPDATE TO '$_'") for @released[ 1 .. $#released ], '0.10.0';
update($db{$_}, 'ALTER EXTENSION personalize UPDATE') for @released[ 1 .. $#released ];

my $fresh = schema_of('fresh_db');
like($fresh, qr/CREATE FUNCTION personalize\.create_audience\(/, 'the schema dump holds the extension\'s objects');
for my $v (@released)
{
	my $d = $db{$v};
	is($node->safe_psql($d, "SELECT extversion FROM pg_extension WHERE extname = 'personalize'"), '0.10.0',
		"$v: updated to 0.10.0");
	my $got = schema_of($d);
	ok($got eq $fresh, "$v: the updated schema is the same as a fresh 0.10.0's (personalize--0.10.0.sql)")
	  or diag(schema_diff($fresh, $got));
	next if $v eq '0.1.0';
	is($node->safe_psql($d, 'SELECT personalize.recent_values(r) FROM kept'), '{sku-1}', "$v: stored states kept");
	is($node->safe_psql($d, q{SELECT string_agg(name || ':' || owner::text, ',' ORDER BY id) FROM personalize.namespaces}),
		'email:' . $node->safe_psql($d, 'SELECT current_user') . ',cookie:'
		  . $node->safe_psql($d, 'SELECT current_user'), "$v: namespaces kept, with their owner");
	if (!ver_ge($v, '0.3.0'))
	{
		is($node->safe_psql($d, q{SELECT personalize.resolve('cookie', 'c1') || ' '
			|| personalize.link('email', 'a@x.com', 'cookie', 'c9') || ' ' || personalize.resolve('cookie', 'c9')}),
			'4242 true 4242', "$v: the identity graph kept, and linked to");
		next;
	}
	is($node->safe_psql($d, q{SELECT (SELECT count(*) FROM personalize.sources) || ' '
		|| (SELECT string_agg(name, ',') FROM personalize.traits)}), '1 views', "$v: the source and trait kept");
	is($node->safe_psql('postgres', "SELECT string_agg(slot_name, ',') FROM pg_replication_slots WHERE database = '$d'"),
		$slot{$v}, "$v: the worker's slot kept");
	# events after the update, one of them links a new cookie
	$node->safe_psql($d, q{INSERT INTO public.ev (email, cookie) VALUES ('a@x.com', NULL)});
	$node->safe_psql($d, q{INSERT INTO public.ev (email, cookie) VALUES (NULL, 'c1')});
	$node->safe_psql($d, q{INSERT INTO public.ev (email, cookie) VALUES ('A@x.com ', 'c2')});
	# (an update from 0.5.0 or older: the plugin decodes the update's own
	# writes, made before its ALTER TABLE stream_sources ADD COLUMN owner,
	# with the old 7-column stream_sources, each source's owner the table's)
	is($node->safe_psql($d, "SELECT personalize.wait_for_apply('120 s')"), 't',
		"$v: the worker applied every commit after the update");
	is($node->safe_psql($d, q{SELECT views FROM personalize.profile_view WHERE profile_id = 4242}), '13',
		"$v: the profile's count kept, with the 3 events after the update, each once");
	is($node->safe_psql($d, q{SELECT personalize.resolve('cookie', 'c2')}), '4242',
		"$v: the event after the update linked its cookie to the kept profile");
	is($node->safe_psql($d, q{SELECT state IN ('streaming', 'idle') AND pid IS NOT NULL AND events_applied = 3
		FROM personalize.worker_status WHERE database = current_database()}), 't',
		"$v: the worker streams from that slot");
	is($node->safe_psql($d, q{SELECT count(*) FROM personalize.profiles}), '1', "$v: no other profile");
}

$node->stop;
done_testing();
