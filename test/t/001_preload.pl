# Smoke test: the library loads via shared_preload_libraries, the extension
# can be created, and the server survives a restart with it preloaded.
# test/run runs this as user postgres with prove -I <pgxs>/src/test/perl.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', <<'CONF');
wal_level = logical
shared_preload_libraries = 'personalize'
CONF
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION personalize');

like($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	qr/\bpersonalize\b/, 'personalize is in shared_preload_libraries');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_extension WHERE extname = 'personalize'"),
	'1', 'extension row exists');

$node->restart;
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server is back after restart');
is($node->safe_psql('postgres',
		"SELECT e.extversion = a.default_version FROM pg_extension e, pg_available_extensions a
		  WHERE e.extname = 'personalize' AND a.name = e.extname"),
	't', 'extension still there after restart, at the default version');

$node->stop;
done_testing();
