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
#      lists it; unregistered, they do;
#   5. the combinable aggregates (src/combinable.c) are combined by Citus:
#      grouped by a column that is not the distribution column, the workers
#      run worker_partial_agg over their shards and the coordinator combines
#      the partial states, and every aggregate gives what it gives over a
#      plain local copy of the rows; the local aggregates (STYPE internal)
#      are not combined: Citus pulls the rows.
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

# --- 5. the combinable aggregates are combined across nodes -------------------------
sql(q{
	CREATE TABLE dist_events (customer_id bigint, sku text, cat text, ts timestamptz, amount numeric);
	SELECT create_distributed_table('dist_events', 'customer_id');
	INSERT INTO dist_events
	SELECT c, 'sku-' || ((c * 7 + x) % 23), 'cat-' || ((c + x * x) % 5),
	       '2026-01-01'::timestamptz + (c * 37 + x * 11) * interval '1 min', (c * x) % 17
	FROM generate_series(1, 300) c, generate_series(1, 1 + c % 9) x;
	CREATE TABLE plain_events AS SELECT * FROM dist_events;
});
my %combinable = (
	recent   => q{personalize.recent_agg_combinable(sku, ts, 5)::text},
	top      => q{personalize.top_values(personalize.top_agg_combinable(sku, ts, 30, '2 days'))::text},
	windowed => q{personalize.windowed_agg_combinable(ts)::text},
	distinct => q{personalize.distinct_agg_combinable(sku || customer_id)::text},
	first    => q{personalize.first_agg_combinable(sku, ts)::text},
	last     => q{personalize.last_agg_combinable(sku, ts)::text},
	session  => q{personalize.session_info(personalize.session_agg_combinable(ts, cat, sku))::text},
	metric   => q{personalize.metric_agg_combinable('sum', amount)::text});
my $per_cat = 'SELECT cat, ' . join(', ', map { "$combinable{$_} AS $_" } sort keys %combinable)
  . ' FROM %s GROUP BY cat ORDER BY cat';
my $plan = sql('EXPLAIN (VERBOSE, COSTS OFF) ' . sprintf($per_cat, 'dist_events'));
like($plan, qr/worker_partial_agg\(.*recent_agg_combinable/s,
	'grouped by a column that is not the distribution column: the workers aggregate their shards (worker_partial_agg)');
like($plan, qr/coord_combine_agg/, 'and the coordinator combines the partial states (coord_combine_agg)');
my $dist = sql(sprintf($per_cat, 'dist_events'));
# as far as merge is exact (docs/trait-states.md): top while it holds no more values than its N
# (23 SKUs, N = 30; its scores are float sums merged in another order: its values are compared),
# session for the current session
for my $kind (sort keys %combinable)
{
	my $q = "SELECT string_agg(cat || ': ' || x, E'\\n' ORDER BY cat) FROM (SELECT cat, $combinable{$kind} AS x FROM %s GROUP BY cat) q";
	is(sql(sprintf($q, 'dist_events')), sql(sprintf($q, 'plain_events')),
		"$kind: combined across nodes, the same as over a plain local table");
}
like($dist, qr/^cat-0\|.*\ncat-4\|/s, 'five groups of states');
is(sql(sprintf(q{SELECT string_agg(x, ',') FROM (%s) q(x)},
	q{SELECT personalize.recent_agg(sku, ts, 5)::text FROM dist_events GROUP BY cat ORDER BY cat})),
	sql(q{SELECT string_agg(r, ',') FROM (SELECT personalize.recent_agg_combinable(sku, ts, 5)::text AS r
	      FROM dist_events GROUP BY cat ORDER BY cat) q}),
	'the local aggregate gives the same states');
unlike(sql(q{EXPLAIN (VERBOSE, COSTS OFF) SELECT cat, personalize.recent_agg(sku, ts, 5) FROM dist_events GROUP BY cat}),
	qr/worker_partial_agg/, 'the local aggregate (STYPE internal) is not combined: Citus pulls its rows');
is(sql(q{SELECT count(*) FROM (SELECT customer_id, personalize.merge_agg_combinable(s) AS m
	      FROM (SELECT customer_id, cat, personalize.recent_agg_combinable(sku, ts, 3) AS s
	              FROM dist_events GROUP BY customer_id, cat) q GROUP BY customer_id) z WHERE m IS NULL}), '0',
	'merge_agg_combinable over states made on the workers');

$_->stop for @nodes;
done_testing();
