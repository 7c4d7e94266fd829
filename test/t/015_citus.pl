# Citus (docs/scale-out.md): a coordinator and two worker nodes, each with
# citus and personalize preloaded.  What this release promises on a Citus
# cluster (the design's first three increments):
#   1. CREATE EXTENSION personalize on the coordinator creates it on every
#      node, at the same version, and each node's worker makes its slot;
#   2. a plain local table on the coordinator is a source like on any
#      server: its inserts reach their profiles;
#   3. register_source refuses the Citus tables it does not stream (reference,
#      Citus local), and a distributed table with backfill (not built yet),
#      with an ERROR that says why and a hint;
#   4. a source that Citus distributed after its registration: until the
#      nodes have it in their configuration, the waits do not say that its
#      inserts were applied (wait_for_apply() false with a WARNING naming it,
#      await_apply() an ERROR), personalize.unstreamed_sources lists it;
#      citus_sync_config() sends it, and its inserts are streamed from then;
#   5. the combinable aggregates (src/combinable.c) are combined by Citus:
#      grouped by a column that is not the distribution column, the workers
#      run worker_partial_agg over their shards and the coordinator combines
#      the partial states, and every aggregate gives what it gives over a
#      plain local copy of the rows; the local aggregates (STYPE internal)
#      are not combined: Citus pulls the rows;
#   6. a distributed source registered on the coordinator: every node has the
#      coordinator's configuration (the same trait and namespace ids, a view
#      of its own), each node's worker streams the inserts into its shards
#      into its own profiles, every event once over all nodes, also while a
#      shard moves, the table is rebalanced and a shard split under writers (Citus's copies
#      of rows are no events), and after a node's worker and a whole node
#      crashed under writers; a trait added on the coordinator reaches
#      every node's view, a namespace made there reaches every node's worker
#      (taken in a prepared transaction); configuration functions on a worker
#      node are refused; the waits on the coordinator wait for every node,
#      and personalize.node_worker_status there shows every node's worker.
# Where Citus is not installed, the whole file is skipped, with the reason.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes;

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
citus.enable_change_data_capture = on
restart_after_crash = on
max_replication_slots = 10
max_wal_senders = 10
max_worker_processes = 20
log_min_messages = warning
CONF
	# Citus reaches the node itself (a shard move's subscription) by this name
	$node->append_conf('postgresql.conf', "citus.local_hostname = '" . $node->host . "'\n");
	$node->start;
	# a build that accepts only the output plugins it lists must list Citus's (shard splits decode with it)
	my $plugins = $node->safe_psql('postgres', q{SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'});
	if ($node->safe_psql('postgres', q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}))
	{
		$node->append_conf('postgresql.conf', "output_plugin_libraries = '" . join(', ', grep { $_ ne '' } $plugins, 'citus') . "'\n");
		$node->reload;
	}
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

# --- 3. the Citus tables not streamed are refused ---------------------------------
sql(q{
	CREATE TABLE dist_orders (customer_id bigint, amount numeric NOT NULL, ordered_at timestamptz NOT NULL);
	SELECT create_distributed_table('dist_orders', 'customer_id');
	CREATE TABLE ref_orders (customer_id bigint, amount numeric NOT NULL, ordered_at timestamptz NOT NULL);
	SELECT create_reference_table('ref_orders');
	CREATE TABLE citus_local_orders (customer_id bigint, amount numeric NOT NULL, ordered_at timestamptz NOT NULL);
	SELECT citus_add_local_table_to_metadata('citus_local_orders');
});
for my $case ([ 'ref_orders', 'reference' ], [ 'citus_local_orders', 'local' ])
{
	my ($table, $kind) = @$case;
	my ($rc, $out, $err) = $coord->psql('shop', qq{
		SELECT personalize.register_source('$table', identifiers => '{"customer_id": "customer_id"}', event_time => 'ordered_at')});
	isnt($rc, 0, "register_source on a Citus $kind table fails");
	like($err, qr/register_source: public\.$table is a Citus $kind table/, "the ERROR names the table and its kind ($kind)");
	like($err, qr/HINT:.*plain local table or a distributed table/s, 'with a hint');
}
{
	my ($rc, $out, $err) = $coord->psql('shop', q{
		SELECT personalize.register_source('dist_orders', identifiers => '{"customer_id": "customer_id"}', event_time => 'ordered_at')});
	like($err, qr/register_source: public\.dist_orders is a Citus distributed table, whose rows are not backfilled yet.*HINT:  Register it with backfill => false/s,
		'a distributed table with backfill: an ERROR with a hint');
	($rc, $out, $err) = $workers[0]->psql('shop', q{
		SELECT personalize.register_source('dist_orders', identifiers => '{"customer_id": "customer_id"}', event_time => 'ordered_at', backfill => false)});
	like($err, qr/ERROR:  cannot call register_source on a Citus worker node.*HINT:  Call it on the coordinator/s,
		'on a worker node: an ERROR, the configuration lives on the coordinator');
	($rc, $out, $err) = $workers[0]->psql('shop', q{SELECT personalize.create_namespace('email')});
	like($err, qr/ERROR:  cannot create a namespace on a Citus worker node/, 'so does a namespace function');
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
like($err, qr/WARNING:  wait_for_apply: source public\.later_orders is a Citus distributed table that not every node has in its configuration.*: its inserts are not streamed/,
	'with a WARNING naming the source');
like($err, qr/HINT:  .*personalize\.citus_sync_config\(\)/, 'and a hint to send the configuration');
($rc, $out, $err) = $coord->psql('shop', q{CALL personalize.await_apply('60 s')});
like($err, qr/ERROR:  await_apply: source public\.later_orders is a Citus distributed table/, 'await_apply() is an ERROR');
($rc, $out, $err) = $coord->psql('shop', q{CREATE ROLE outsider; SET ROLE outsider; SELECT personalize.wait_for_apply('5 s')});
like($err, qr/WARNING:  wait_for_apply: a registered source is a Citus table: its inserts are not streamed/,
	'a role that may not read the sources is told that one is not streamed, not which');
unlike($err, qr/later_orders/, 'its name is not in the message');
like(sql(q{SELECT relation || ': ' || reason FROM personalize.unstreamed_sources}),
	qr/^later_orders: a Citus distributed table that not every node has in its configuration/,
	'personalize.unstreamed_sources lists it, with why (what the monitoring counts)');
sql(q{SELECT personalize.citus_sync_config()});
is(sql(q{SELECT count(*) FROM personalize.unstreamed_sources}), '0', 'citus_sync_config(): every node has it');
sql(q{INSERT INTO later_orders VALUES (5, 1, now())});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'the waits are true again');
is(join(',', map { $_->safe_psql('shop', q{SELECT string_agg(key_value, ',' ORDER BY key_value) FROM personalize.profile_view}) } @workers)
	  =~ s/^,|,$//gr, '5', 'the insert after it reached a profile on the node that holds its shard, and only that');
sql(q{SELECT personalize.unregister_source('later_orders')});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'unregistered: the waits are true');
is($workers[0]->safe_psql('shop', q{SELECT count(*) FROM personalize.sources}), '0', 'and no node has it any more');

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

# --- 6. a distributed source, streamed by the nodes that hold its shards ----------
sql(q{
	CREATE TABLE d_orders (customer_id bigint, amount numeric NOT NULL, ordered_at timestamptz NOT NULL);
	SELECT create_distributed_table('d_orders', 'customer_id', shard_count => 4);
	SELECT personalize.register_source('d_orders', identifiers => '{"customer_id": "customer_id"}',
	                                   event_time => 'ordered_at', backfill => false);
});
my $config = q{SELECT (SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM personalize.traits) || ' / '
                   || (SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM personalize.namespaces) || ' / '
                   || (SELECT string_agg(id || ':' || relation::text, ',' ORDER BY id) FROM personalize.sources s
                        WHERE s.relation = 'd_orders'::regclass)};
my $view_cols = q{SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
                   WHERE attrelid = 'personalize.profile_view'::regclass AND attnum > 0};
for my $w (@workers)
{
	is($w->safe_psql('shop', $config), sql($config),
		$w->name . ': the coordinator\'s traits and namespaces, with their ids, and the distributed source');
	is($w->safe_psql('shop', $view_cols), sql($view_cols), $w->name . ': a view of its own with the same columns');
	is($w->safe_psql('shop', q{SELECT count(*) FROM personalize.sources WHERE relation::text = 'local_orders'}), '0',
		$w->name . ': not the coordinator\'s own local source');
}
sql(q{INSERT INTO d_orders SELECT 1000 + c % 100, c % 7, now() FROM generate_series(1, 1000) c});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'wait_for_apply() on the coordinator waits for every node');

# every node's profiles of d_orders' customers, summed per customer: a
# customer whose shard moved has a profile on each node it was on (profiles
# are per node until they are distributed, the design's next increment)
sub node_profiles
{
	my %sum;
	for my $w (@workers)
	{
		for (split /\n/, $w->safe_psql('shop',
			q{SELECT i.value || ':' || p.orders || ':' || p.spent FROM personalize.profile_view p
			    JOIN personalize.identities i ON i.profile_id = p.profile_id
			    JOIN personalize.namespaces n ON n.id = i.namespace_id
			   WHERE n.name = 'customer_id' AND CASE WHEN i.value ~ '^[0-9]+$' THEN i.value::bigint >= 1000 END}))
		{
			my ($k, $n, $s) = split /:/;
			$sum{$k}[0] += $n;
			$sum{$k}[1] += $s;
		}
	}
	return join(',', map { "$_:$sum{$_}[0]:$sum{$_}[1]" } sort keys %sum);
}
my $expected = sub {
	return sql(q{SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT customer_id || ':' || count(*) || ':' || sum(amount) AS x
	                                                         FROM d_orders GROUP BY customer_id) q});
};
is(node_profiles(), $expected->(), 'every insert reached its customer\'s profile on the node that holds its shard, once');
is(join('', map { $_->safe_psql('shop', q{SELECT count(*) FROM personalize.profiles WHERE key_value::bigint >= 1000 GROUP BY key_value HAVING count(*) > 1}) } @workers),
	'', 'one profile per customer on each node');
ok((grep { $_->safe_psql('shop', q{SELECT count(*) FROM personalize.profiles}) > 0 } @workers) == 2,
	'both nodes hold profiles');

# a shard move and a rebalance while writers write
my $script = $coord->basedir . '/insert.sql';
PostgreSQL::Test::Utils::append_to_file($script,
	"INSERT INTO d_orders VALUES (1000 + (random() * 99)::int, 3, now());\n");
my @pgbench = ('pgbench', '-n', '-h', $coord->host, '-p', $coord->port, '-f', $script, '-c', '2', '-T', '12', 'shop');
my ($stdout, $stderr) = ('', '');
my $writers = IPC::Run::start(\@pgbench, '>', \$stdout, '2>', \$stderr);
my $shard = sql(q{SELECT s.shardid FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
                   JOIN pg_dist_node n ON n.groupid = p.groupid
                  WHERE s.logicalrelid = 'd_orders'::regclass AND n.nodeport = } . $workers[0]->port . q{ ORDER BY 1 LIMIT 1});
sql(sprintf(q{SELECT citus_move_shard_placement(%s, '%s', %d, '%s', %d, shard_transfer_mode => 'force_logical')},
	$shard, $workers[0]->host, $workers[0]->port, $workers[1]->host, $workers[1]->port));
is(sql(qq{SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) WHERE p.shardid = $shard}),
	$workers[1]->port, 'a shard moved to the other node while writers wrote');
sql(q{SELECT rebalance_table_shards('d_orders', shard_transfer_mode => 'force_logical')});
# a split: one shard into two new ones, one on each node (its old shard dropped)
my ($split, $lo, $hi) = split /\|/, sql(q{SELECT shardid, shardminvalue, shardmaxvalue FROM pg_dist_shard
                                          WHERE logicalrelid = 'd_orders'::regclass ORDER BY shardid LIMIT 1});
sql(sprintf(q{SELECT citus_split_shard_by_split_points(%s, ARRAY['%s'], ARRAY(SELECT nodeid FROM pg_dist_node
                                                         WHERE nodeport IN (%d, %d) ORDER BY nodeport), 'force_logical')},
	$split, int(($lo + $hi) / 2), $workers[0]->port, $workers[1]->port));
is(sql(qq{SELECT count(*) FROM pg_dist_shard WHERE shardid = $split}), '0', 'a shard split in two while writers wrote');
$writers->finish;
is($writers->result(0), 0, 'the writers ran through the move, the rebalance and the split') or diag($stderr);
ok(sql(q{SELECT count(*) FROM d_orders}) > 1000, 'they wrote');
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'applied on every node');
is(node_profiles(), $expected->(),
	'every event once over the nodes: the rows Citus copied for the move, the rebalance and the split are no events');

# crashes while writers write: a node's worker SIGKILLed (the postmaster restarts its backends),
# then a whole node (postmaster and every process at once), started again; the writers' inserts
# into the crashed node's shards fail meanwhile, and pgbench goes on
sub crash_node
{
	my ($node) = @_;
	my $pid = $node->{_pid};
	my @children = grep { /^\d+$/ } split /\s+/, `pgrep -P $pid`;
	kill 'KILL', $pid, @children;
	$node->{_pid} = undef;
	Time::HiRes::usleep(100_000) while kill 0, $pid, @children;
}
my $rows_before = sql(q{SELECT count(*) FROM d_orders});
$writers = IPC::Run::start([ @pgbench[ 0 .. $#pgbench - 3 ], '-T', '10', '--max-tries=1', 'shop' ],
	'>', \$stdout, '2>', \$stderr);
sleep 2;
kill 'KILL', $workers[0]->safe_psql('shop', 'SELECT pid FROM personalize.worker_status');
sleep 2;
crash_node($workers[1]);
sleep 1;
$workers[1]->start;
$writers->finish;
ok($workers[1]->poll_query_until('shop', q{SELECT state IN ('streaming', 'idle') FROM personalize.worker_status}),
	'the crashed node\'s worker streams again');
ok($workers[0]->poll_query_until('shop', q{SELECT state IN ('streaming', 'idle') FROM personalize.worker_status}),
	'and so does the killed worker');
# Citus finishes the two-phase commits the crash left in doubt
sql(q{SELECT recover_prepared_transactions()});
ok(sql(q{SELECT count(*) FROM d_orders}) > $rows_before + 100, 'the writers wrote through the crashes');
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'applied on every node after the crashes');
is(node_profiles(), $expected->(), 'every committed event once over the nodes after a worker and a node crashed');

# the configuration follows the coordinator
sql(q{SELECT personalize.add_trait('biggest', 'max', field => 'amount')});
for my $w (@workers)
{
	is($w->safe_psql('shop', $view_cols), sql($view_cols), $w->name . ': add_trait on the coordinator reached its view');
}
sql(q{INSERT INTO d_orders VALUES (1000, 6, now())});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'applied');
is(join('', map { $_->safe_psql('shop', q{SELECT biggest FROM personalize.profile_view WHERE key_value = '1000'}) } @workers),
	'6', 'the new trait streams on the node');

# a namespace made on the coordinator while the nodes stream: each node takes it in a prepared
# transaction, and its worker, which read the namespaces before, reads them again at COMMIT
# PREPARED (src/identity_cache.c)
sql(q{
	SELECT personalize.create_namespace('email', priority => 200);
	CREATE TABLE d_signups (customer_id bigint, email text, at timestamptz NOT NULL);
	SELECT create_distributed_table('d_signups', 'customer_id', colocate_with => 'd_orders');
	SELECT personalize.register_source('d_signups', identifiers => '{"customer_id": "customer_id", "email": "email"}',
	                                   event_time => 'at', backfill => false);
	INSERT INTO d_signups VALUES (999, 'a@example.com', now());  -- (a customer the checks below leave out)
});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'applied');
is(join('', map { $_->safe_psql('shop', q{SELECT key_namespace || ':' || key_value FROM personalize.profile_view p
                                           JOIN personalize.identities i ON i.profile_id = p.profile_id
                                          WHERE i.value = 'a@example.com'}) } @workers),
	'email:a@example.com', 'the node\'s worker used the namespace made since, with its priority: the email is the profile\'s key');

# every node's workers, on the coordinator
is(sql(q{SELECT string_agg(CASE WHEN node = 'local' THEN 'local' ELSE 'node' END || ':'
                           || CASE WHEN state IN ('streaming', 'idle') THEN 'up' ELSE state END, ',' ORDER BY node = 'local' DESC, node)
           FROM personalize.node_worker_status}),
	'local:up,node:up,node:up', 'node_worker_status on the coordinator: its worker and every node\'s');
is(sql(q{SELECT string_agg(node, ',' ORDER BY node) FROM personalize.node_worker_status WHERE node <> 'local'}),
	join(',', sort map { $_->host . ':' . $_->port } @workers), 'named host:port');

# a node's worker stopped: the coordinator's waits say so
$workers[1]->safe_psql('shop', q{SELECT personalize.worker_stop()});
ok($workers[1]->poll_query_until('shop', q{SELECT state = 'paused' FROM personalize.worker_status}), 'a node\'s worker paused');
sql(q{INSERT INTO d_orders SELECT 1000 + c, 1, now() FROM generate_series(0, 99) c});
is(sql(q{SELECT personalize.wait_for_apply('2 s')}), 'f', 'wait_for_apply() on the coordinator is false while a node\'s worker is paused');
is(sql(q{SELECT count(*) FROM personalize.node_worker_status WHERE state = 'paused'}), '1', 'node_worker_status shows the paused one');
($rc, $out, $err) = $coord->psql('shop', q{CALL personalize.await_apply('2 s')});
like($err, qr/ERROR:  await_apply: the personalize workers of the Citus nodes have not applied/, 'await_apply() is an ERROR');
$workers[1]->safe_psql('shop', q{SELECT personalize.worker_start()});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'started again: applied');
is(node_profiles(), $expected->(), 'every event once');

$_->stop for @nodes;
done_testing();
