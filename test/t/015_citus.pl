# Citus (docs/scale-out.md): a coordinator and two worker nodes, each with
# citus and personalize preloaded.  What this release promises on a Citus
# cluster, until streaming distributed tables is built (the design's first
# increment):
#   1. CREATE EXTENSION personalize on the coordinator creates it on every
#      node, at the same version, and each node's worker makes its slot;
#   2. a plain local table on the coordinator is a source like on any
#      server: its inserts reach their profiles;
#   3. register_source refuses every kind of Citus table (distributed,
#      reference, Citus local), with an ERROR that says why and a hint,
#      instead of accepting a table whose inserts land in shards that no
#      worker streams (profiles silently stale, as 0.7.0 did);
#   4. a source that Citus distributed after its registration: the waits do
#      not say that its inserts were applied (wait_for_apply() false with a
#      WARNING naming it, await_apply() an ERROR), personalize.unstreamed_sources
#      lists it; unregistered, they do.
# Where Citus is not installed, the whole file is skipped, with the reason.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
plan skip_all => "Citus is not installed ($sharedir/extension/citus.control is missing)"
  unless -e "$sharedir/extension/citus.control";

my @nodes;
for my $name (qw(coordinator worker1 worker2))
{
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', <<'CONF');
wal_level = logical
shared_preload_libraries = 'citus,personalize'
personalize.database = 'shop'
personalize.worker_poll_interval = 5ms
max_replication_slots = 8
max_worker_processes = 16
log_min_messages = warning
CONF
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE shop');
	$node->safe_psql('shop', 'CREATE EXTENSION citus');
	push @nodes, $node;
}
my ($coord, @workers) = @nodes;
sub sql { return $coord->safe_psql('shop', $_[0]); }

# the nodes reach each other through their Unix sockets
sql(sprintf(q{SELECT citus_set_coordinator_host('%s', %d)}, $coord->host, $coord->port));
sql(sprintf(q{SELECT citus_add_node('%s', %d)}, $_->host, $_->port)) for @workers;
is(sql(q{SELECT count(*) FROM pg_dist_node WHERE isactive AND noderole = 'primary'}), '3',
	'a coordinator and two worker nodes');

# --- 1. the extension on every node ---------------------------------------------
sql('CREATE EXTENSION personalize');
my $version = sql(q{SELECT extversion FROM pg_extension WHERE extname = 'personalize'});
for my $w (@workers)
{
	is($w->safe_psql('shop', q{SELECT extversion FROM pg_extension WHERE extname = 'personalize'}),
		$version, $w->name . ": CREATE EXTENSION on the coordinator created personalize $version");
}
for my $n (@nodes)
{
	ok($n->poll_query_until('shop',
			q{SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name LIKE 'personalize_%'}),
		$n->name . ': its worker made its slot');
}

# --- 2. a local table on the coordinator streams --------------------------------
sql(q{
	SELECT personalize.create_namespace('customer_id', priority => 100);
	CREATE TABLE local_orders (customer_id bigint, amount numeric NOT NULL, ordered_at timestamptz NOT NULL);
	SELECT personalize.register_source('local_orders', identifiers => '{"customer_id": "customer_id"}',
	                                   event_time => 'ordered_at');
	SELECT personalize.add_trait('orders', 'count');
	SELECT personalize.add_trait('spent', 'sum', field => 'amount');
	INSERT INTO local_orders VALUES (1, 10, now()), (1, 5, now()), (2, 7, now());
});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'the coordinator\'s worker applied the local source');
is(sql(q{SELECT string_agg(format('%s:%s:%s', key_value, orders, spent), ',' ORDER BY key_value) FROM personalize.profile_view}),
	'1:2:15,2:1:7', 'its inserts reached their profiles');

# --- 3. Citus tables are refused --------------------------------------------------
sql(q{
	CREATE TABLE dist_orders (customer_id bigint, amount numeric NOT NULL, ordered_at timestamptz NOT NULL);
	SELECT create_distributed_table('dist_orders', 'customer_id');
	CREATE TABLE ref_orders (customer_id bigint, amount numeric NOT NULL, ordered_at timestamptz NOT NULL);
	SELECT create_reference_table('ref_orders');
	CREATE TABLE citus_local_orders (customer_id bigint, amount numeric NOT NULL, ordered_at timestamptz NOT NULL);
	SELECT citus_add_local_table_to_metadata('citus_local_orders');
});
for my $case ([ 'dist_orders', 'distributed' ], [ 'ref_orders', 'reference' ], [ 'citus_local_orders', 'local' ])
{
	my ($table, $kind) = @$case;
	my ($rc, $out, $err) = $coord->psql('shop', qq{
		SELECT personalize.register_source('$table', identifiers => '{"customer_id": "customer_id"}', event_time => 'ordered_at')});
	isnt($rc, 0, "register_source on a Citus $kind table fails");
	like($err, qr/register_source: public\.$table is a Citus $kind table/, "the ERROR names the table and its kind ($kind)");
	like($err, qr/HINT:.*plain local table/s, 'with a hint');
}
is(sql(q{SELECT string_agg(relation::text, ',') FROM personalize.sources}), 'local_orders',
	'no Citus table became a source');

# --- 4. a source distributed after its registration -------------------------------
sql(q{
	CREATE TABLE later_orders (customer_id bigint, amount numeric NOT NULL, ordered_at timestamptz NOT NULL);
	SELECT personalize.register_source('later_orders', identifiers => '{"customer_id": "customer_id"}',
	                                   event_time => 'ordered_at');
	INSERT INTO later_orders VALUES (3, 1, now());
});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'registered while a local table: applied');
sql(q{SELECT create_distributed_table('later_orders', 'customer_id')});
sql(q{INSERT INTO later_orders VALUES (4, 1, now())});
my ($rc, $out, $err) = $coord->psql('shop', q{SELECT personalize.wait_for_apply('60 s')});
is($out, 'f', 'distributed since: wait_for_apply() is false');
like($err, qr/WARNING:  wait_for_apply: source public\.later_orders is a Citus distributed table: its inserts are not streamed/,
	'with a WARNING naming the source');
($rc, $out, $err) = $coord->psql('shop', q{CALL personalize.await_apply('60 s')});
like($err, qr/ERROR:  await_apply: source public\.later_orders is a Citus distributed table/, 'await_apply() is an ERROR');
($rc, $out, $err) = $coord->psql('shop', q{CREATE ROLE outsider; SET ROLE outsider; SELECT personalize.wait_for_apply('5 s')});
like($err, qr/WARNING:  wait_for_apply: a registered source is a Citus table: its inserts are not streamed/,
	'a role that may not read the sources is told that one is not streamed, not which');
unlike($err, qr/later_orders/, 'its name is not in the message');
is(sql(q{SELECT relation || ': ' || reason FROM personalize.unstreamed_sources}),
	'later_orders: a Citus distributed table: its inserts go to shards that no worker streams',
	'personalize.unstreamed_sources lists it, with why (what the monitoring counts)');
sql(q{SELECT personalize.unregister_source('later_orders')});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'unregistered: the waits are true again');

$_->stop for @nodes;
done_testing();
