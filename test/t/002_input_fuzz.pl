# Fuzz every trait state's and the profile's text input and binary receive (test/fuzz/
# state_input_fuzz.sql): mutated values must be refused with an ERROR or be
# accepted and round-trip; the server must never crash.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rounds = $ENV{PZ_FUZZ_ROUNDS} // 1000;
my $script = "$ENV{PZ_TEST_DIR}/fuzz/state_input_fuzz.sql";

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'personalize'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION personalize');

my ($rc, $out, $err) = $node->psql('postgres', "SET fuzz.rounds = $rounds;\n\\i $script",
	extra_params => [ '-v', 'ON_ERROR_STOP=1', '-A', '-t', '-F', ' ' ]);
is($rc, 0, "fuzz script ran to the end ($rounds rounds per seed value)");
unlike($err, qr/FUZZ FAILURE/, 'every accepted value round-trips');

my %seen;
for my $line (split /\n/, $out)
{
	next unless $line =~ /^(\w+_state|profile) (text|binary) (\d+) (\d+)$/;
	$seen{"$1 $2"} = [ $3, $4 ];
}
for my $type (qw(recent_state top_state windowed_state distinct_state first_state last_state session_state metric_state profile))
{
	for my $path (qw(text binary))
	{
		my $r = $seen{"$type $path"};
		ok(defined $r && $r->[1] > 0, "$type $path input: mutations were tried and refused")
		  or diag("fuzz output: $out");
	}
}

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server still answers');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|was terminated|PANIC/, 'no backend crashed');

$node->stop;
done_testing();
