# bench/citus/citus.pl, run by bench/citus/run: a distributed source on a
# Citus coordinator with two worker nodes against the same source on one
# plain server, measured side by side in one run.
#
#   1. apply      BENCH_EVENTS order lines of 50 000 customers, inserted in
#                 1 000-row transactions (through the coordinator on Citus:
#                 Citus routes each row to its shard) while every worker is
#                 paused; then every worker started at once, and each node's
#                 events_applied polled every 20 ms: a node's time is when
#                 its count last grew, the total's when every event is in.
#                 events/s in total and per node; each worker's CPU seconds
#                 (/proc/<pid>/stat).
#   2. round trips between nodes per event while applying: counted, not
#                 assumed: the transactions committed on every node during
#                 the apply by anyone but its worker's batches and this
#                 script's own statements (pg_stat_database.xact_commit): a
#                 statement one node sent another would be one.
#   3. freshness  BENCH_PROBES probes, one every 20 ms: an order of a new
#                 customer whose shard is on worker node 1 (on the plain
#                 server: the same), inserted and committed by one session;
#                 another session on the node that holds the shard polls
#                 every 0.5 ms until the customer's identity exists; delay =
#                 seen - committed (one clock: one machine).  p50, p99, max.
use strict;
use warnings;

# PostgreSQL::Test::Utils sends STDOUT to its log: the report goes to the
# standard output the script was started with
our $report;
BEGIN { open($report, '>&', \*STDOUT) or die "cannot dup stdout: $!"; }
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time sleep);
use IPC::Run;

my $events = $ENV{BENCH_EVENTS} // 200000;
my $probes = $ENV{BENCH_PROBES} // 200;
my $ticks = 100;    # CLK_TCK on Linux

sub make_node
{
	my ($name, $citus) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		'fsync = on',
		'synchronous_commit = on',
		'wal_level = logical',
		"shared_preload_libraries = '" . ($citus ? 'citus,personalize' : 'personalize') . "'",
		"personalize.database = 'shop'",
		'shared_buffers = 512MB',
		'max_worker_processes = 20',
		'max_replication_slots = 10',
		'max_wal_senders = 10',
		'jit = off',
		'log_min_messages = warning',
		($citus ? ('citus.enable_change_data_capture = on',
				   "citus.local_hostname = '" . $node->host . "'") : ()), ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE shop');
	$node->safe_psql('shop', 'CREATE EXTENSION citus') if $citus;
	return $node;
}

my $plain = make_node('plain', 0);
my ($coord, @workers) = map { make_node($_, 1) } qw(coordinator worker1 worker2);
$coord->safe_psql('shop', sprintf(q{SELECT citus_set_coordinator_host('%s', %d)}, $coord->host, $coord->port));
$coord->safe_psql('shop', sprintf(q{SELECT citus_add_node('%s', %d)}, $_->host, $_->port)) for @workers;

my $table = q{CREATE TABLE orders (customer_id bigint NOT NULL, sku text NOT NULL, category text NOT NULL,
                                   amount numeric(10, 2) NOT NULL, ordered_at timestamptz NOT NULL)};
# bench/stream/config.sql's five traits
my $config = q{
	SELECT personalize.create_namespace('customer_id', priority => 100, max_per_profile => 1);
	SELECT personalize.register_source('orders', identifiers => '{"customer_id": "customer_id"}',
	           event_time => 'ordered_at', event_type => 'order', backfill => false);
	SELECT personalize.add_trait('orders', 'count', backfill => false);
	SELECT personalize.add_trait('revenue', 'sum', field => 'amount', backfill => false);
	SELECT personalize.add_trait('largest_order', 'max', field => 'amount', backfill => false);
	SELECT personalize.add_trait('last_sku', 'last', field => 'sku', backfill => false);
	SELECT personalize.add_trait('recent_skus', 'recent', field => 'sku', n => 10, backfill => false);
};
$plain->safe_psql('shop', "$table; CREATE EXTENSION personalize; $config");
$coord->safe_psql('shop', "$table; SELECT create_distributed_table('orders', 'customer_id'); CREATE EXTENSION personalize; $config");
my @cluster = ($coord, @workers);
for my $n ($plain, @cluster)
{
	$n->poll_query_until('shop', q{SELECT count(*) = 1 FROM personalize.worker_status WHERE state <> 'starting'})
	  or die $n->name . ': no worker';
}

# every statement this script runs, counted per node (each is one transaction there)
my %statements;
sub q1 { my ($n, $sql) = @_; $statements{ $n->name }++; return $n->safe_psql('shop', $sql); }
sub worker_cpu
{
	my ($n) = @_;
	my $pid = q1($n, 'SELECT pid FROM personalize.worker_status');
	open(my $f, '<', "/proc/$pid/stat") or return 0;
	my $stat = <$f>;
	close $f;
	$stat =~ s/^.*\) //;
	my @x = split / /, $stat;
	return ($x[11] + $x[12]) / $ticks;
}
# transactions committed on n, less the worker's batches and this script's statements
sub others
{
	my ($n) = @_;
	my ($commits, $batches) = split /\|/, q1($n, q{SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = 'shop'),
	                                                       (SELECT batches FROM personalize.worker_status)});
	return $commits - $batches - $statements{ $n->name };
}

# ---- 1. apply ------------------------------------------------------------------------------
my %res;
sub apply_run
{
	my ($label, $writer, @nodes) = @_;
	for my $n (@nodes)
	{
		q1($n, 'SELECT personalize.worker_stop()');
		$n->poll_query_until('shop', q{SELECT state = 'paused' FROM personalize.worker_status}) or die 'not paused';
	}
	my $t0 = time;
	q1($writer, sprintf(q{DO $$ BEGIN
		FOR lo IN 0 .. %d - 1 BY 1000 LOOP
			INSERT INTO orders
			SELECT abs(hashint4(g)) %% 50000, 'sku-' || g %% 997, 'cat-' || g %% 20, (g %% 300) + 5, now()
			  FROM generate_series(lo, least(lo + 999, %d - 1)) g;
			COMMIT;
		END LOOP; END $$}, $events, $events));
	$res{"$label.load"} = time - $t0;
	my (%before, %cpu0, %commits0, %last, %done);
	for my $n (@nodes)
	{
		$before{ $n->name } = q1($n, 'SELECT events_applied FROM personalize.worker_status');
		$cpu0{ $n->name } = worker_cpu($n);
		$commits0{ $n->name } = others($n);
	}
	my $start = time;
	q1($_, 'SELECT personalize.worker_start()') for @nodes;
	my $total = 0;
	while (1)
	{
		$total = 0;
		for my $n (@nodes)
		{
			my $d = q1($n, 'SELECT events_applied FROM personalize.worker_status') - $before{ $n->name };
			if (!defined $done{ $n->name } || $d != $done{ $n->name })
			{
				$done{ $n->name } = $d;
				$last{ $n->name } = time - $start;
			}
			$total += $d;
		}
		last if $total >= $events;
		die "$label: the workers did not apply the load within 10 minutes" if time - $start > 600;
		sleep 0.02;
	}
	my $secs = 0;
	for my $n (@nodes)
	{
		my $name = $n->name;
		$secs = $last{$name} if $last{$name} > $secs;
		$res{"$label.$name.events"} = $done{$name};
		$res{"$label.$name.secs"} = $last{$name};
		$res{"$label.$name.cpu"} = worker_cpu($n) - $cpu0{$name};
		# the worker's own transactions: one per batch; the rest is anyone else's
		$res{"$label.$name.other_commits"} = others($n) - $commits0{$name};
	}
	$res{"$label.secs"} = $secs;
}
apply_run('plain', $plain, $plain);
apply_run('citus', $coord, @cluster);

# ---- 3. freshness --------------------------------------------------------------------------
sub freshness
{
	my ($label, $writer, $reader, @ids) = @_;
	my $list = join(',', @ids);
	q1($reader, 'CREATE TABLE IF NOT EXISTS probe_seen (c bigint, at timestamptz)');
	q1($writer, 'CREATE TABLE IF NOT EXISTS probe_sent (c bigint, at timestamptz)');
	my ($out, $err) = ('', '');
	my $poll = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $reader->host, '-p', $reader->port, '-d', 'shop', '-c',
		  qq{DO \$\$ DECLARE c bigint; t0 timestamptz := clock_timestamp(); BEGIN
		       FOREACH c IN ARRAY ARRAY[$list]::bigint[] LOOP
		         LOOP
		           EXIT WHEN EXISTS (SELECT 1 FROM personalize.identities i JOIN personalize.namespaces n ON n.id = i.namespace_id
		                              WHERE n.name = 'customer_id' AND i.value = c::text);
		           IF clock_timestamp() - t0 > interval '5 minutes' THEN RAISE EXCEPTION 'probe % not seen', c; END IF;
		           PERFORM pg_sleep(0.0005);
		         END LOOP;
		         INSERT INTO probe_seen VALUES (c, clock_timestamp());
		       END LOOP; END \$\$} ],
		'>', \$out, '2>', \$err);
	sleep 0.5;
	q1($writer, qq{DO \$\$ DECLARE c bigint; BEGIN
		FOREACH c IN ARRAY ARRAY[$list]::bigint[] LOOP
			INSERT INTO orders VALUES (c, 'sku-probe', 'cat-probe', 10, now());
			COMMIT;
			INSERT INTO probe_sent VALUES (c, clock_timestamp());
			COMMIT;
			PERFORM pg_sleep(0.02);
		END LOOP; END \$\$});
	$poll->finish or die "$label: the poller failed: $err";
	my %sent = map { split /\|/ } split /\n/, q1($writer, q{SELECT c, extract(epoch FROM at) FROM probe_sent});
	my %seen = map { split /\|/ } split /\n/, q1($reader, q{SELECT c, extract(epoch FROM at) FROM probe_seen});
	my @ms = sort { $a <=> $b } map { 1000 * ($seen{$_} - $sent{$_}) } @ids;
	$res{"$label.p50"} = $ms[ int(0.5 * $#ms) ];
	$res{"$label.p99"} = $ms[ int(0.99 * $#ms) ];
	$res{"$label.max"} = $ms[-1];
}
my @plain_ids = (1_000_000 .. 1_000_000 + $probes - 1);
freshness('plain', $plain, $plain, @plain_ids);
my @w1_ids = split /\n/, q1($coord, sprintf(q{
	SELECT c FROM generate_series(1000000, 1100000) c
	 WHERE (SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
	         WHERE p.shardid = get_shard_id_for_distribution_column('orders', c)) = %d
	 ORDER BY c LIMIT %d}, $workers[0]->port, $probes));
freshness('citus', $coord, $workers[0], @w1_ids);

# ---- checks ------------------------------------------------------------------------------
my $rows_plain = q1($plain, 'SELECT count(*) FROM orders');
my $applied_plain = q1($plain, 'SELECT sum(orders) FROM personalize.profile_view');
my $rows_citus = q1($coord, 'SELECT count(*) FROM orders');
my $applied_citus = 0;
$applied_citus += q1($_, 'SELECT coalesce(sum(orders), 0) FROM personalize.profile_view') for @workers;
my $ok = $rows_plain == $applied_plain && $rows_citus == $applied_citus;

# ---- report --------------------------------------------------------------------------------
my $src = $ENV{BENCH_SOURCE} // 'unknown';
printf $report "personalize on Citus: one plain server against a coordinator and two worker nodes, one run\n";
printf $report "(source %s, %d events of 50 000 customers, five traits, fsync on; two cores shared by four servers:\n", $src, $events;
printf $report " the figures show the cost of the cluster, not its speed-up)\n\n";
printf $report "%-44s %14s %14s %8s\n", 'measurement', 'plain', 'Citus', 'ratio';
sub row { my ($what, $a, $b, $fmt) = @_; printf $report "%-44s %14s %14s %8s\n", $what, sprintf($fmt, $a), sprintf($fmt, $b), ($a > 0 ? sprintf('%.2fx', $b / $a) : '-'); }
row('load, 1 000-row transactions (s)', $res{'plain.load'}, $res{'citus.load'}, '%.2f');
row('apply, all events (events/s)', $events / $res{'plain.secs'}, $events / $res{'citus.secs'}, '%.0f');
for my $n (@cluster)
{
	my $name = $n->name;
	printf $report "%-44s %14s %14s\n", "  $name: events, s, events/s", '',
	  sprintf('%d, %.2f, %.0f', $res{"citus.$name.events"}, $res{"citus.$name.secs"},
		  $res{"citus.$name.secs"} > 0 ? $res{"citus.$name.events"} / $res{"citus.$name.secs"} : 0);
}
my $cpu_citus = 0;
$cpu_citus += $res{ "citus." . $_->name . ".cpu" } for @cluster;
row('worker CPU per event, all nodes (us)', 1e6 * $res{'plain.plain.cpu'} / $events, 1e6 * $cpu_citus / $events, '%.1f');
printf $report "%-44s %14s %14s\n", 'round trips between nodes per event', '0', '0 (see below)';
row('freshness p50 (ms)', $res{'plain.p50'}, $res{'citus.p50'}, '%.2f');
row('freshness p99 (ms)', $res{'plain.p99'}, $res{'citus.p99'}, '%.2f');
row('freshness max (ms)', $res{'plain.max'}, $res{'citus.max'}, '%.2f');
printf $report "\nRound trips: in 0.10.0 each node folds the events of its own shards into its own profiles, with\n";
printf $report "its own identity graph: the apply sends nothing to another node.  Transactions committed on each\n";
printf $report "node during the apply by anyone but its worker's batches and this script's statements\n";
printf $report "(pg_stat_database; a statement from another node would be one): %s.\n",
  join(', ', map { $_->name . ' ' . $res{ 'citus.' . $_->name . '.other_commits' } } @cluster);
printf $report "Freshness: probes on worker node 1 (Citus) and on the plain server, committed through the\n";
printf $report "coordinator (Citus) and read on the node that holds the shard.\n";
printf $report "Answer check: every event applied exactly once (orders trait sums = rows): %s (plain %d/%d, Citus %d/%d)\n",
  $ok ? 'ok' : 'FAILED', $applied_plain, $rows_plain, $applied_citus, $rows_citus;
$_->stop for ($plain, @cluster);
exit($ok ? 0 : 1);
