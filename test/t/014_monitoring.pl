# Monitoring (monitoring/): Debian's prometheus-postgres-exporter, run with
# monitoring/queries.yaml against a server whose workers stream two databases,
# scraped over loopback HTTP: every worker figure of each database is what
# personalize.worker_status says, the state and the stored counts too, under
# Prometheus's naming conventions.  The Grafana dashboard is valid JSON and
# uses only metrics the scrape has; the alerting rules pass promtool check
# rules and their unit tests (promtool test rules), and use only metrics the
# scrape has.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use IPC::Run;
use lib $ENV{PZ_TEST_DIR} . '/lib';
use PzNode;

my $mon = ($ENV{PZ_TEST_DIR} // 'test') . '/../monitoring';
my $exporter = '/usr/bin/prometheus-postgres-exporter';
my $promtool = '/usr/bin/promtool';
-x $exporter && -x $promtool or BAIL_OUT('prometheus-postgres-exporter and promtool (Debian: prometheus) are needed');

my $node = streaming_node('monitoring', "personalize.database = 'shop,crm'\n");
$node->safe_psql('postgres', 'CREATE DATABASE crm');
$node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM pg_replication_slots WHERE slot_name LIKE 'personalize_%'})
  or die 'no slot for crm';

# Each database: cookies and emails (at most one per profile), a source, a
# trait and an audience; events that merge two profiles, one whose link is
# refused, two without any identifier (dead letters), an UPDATE and a DELETE.
my %events = (shop => 12, crm => 6);
for my $db (qw(shop crm))
{
	$node->safe_psql($db, q{
		CREATE EXTENSION personalize;
		SELECT personalize.create_namespace('email', 1, 1, 'personalize.normalize_email(text)');
		SELECT personalize.create_namespace('cookie', 0);
		CREATE TABLE public.ev (email text, cookie text, ts timestamptz NOT NULL DEFAULT now());
		SELECT personalize.register_source('public.ev', '{"email": "email", "cookie": "cookie"}', 'ts');
		SELECT personalize.add_trait('views', 'count');
		SELECT personalize.create_audience('viewers', 'views >= 2');});
	$node->safe_psql($db, qq{INSERT INTO public.ev (cookie) VALUES ('c$_')}) for 1 .. $events{$db} - 5;
	$node->safe_psql($db, q{INSERT INTO public.ev (cookie, email) VALUES ('c1', 'a@x.com')});
	$node->safe_psql($db, q{INSERT INTO public.ev (cookie, email) VALUES ('c2', 'a@x.com')});  # merge
	$node->safe_psql($db, q{INSERT INTO public.ev (cookie, email) VALUES ('c1', 'b@x.com')});  # refused
	$node->safe_psql($db, q{INSERT INTO public.ev (ts) VALUES (now()), (now())});  # dead letters
	$node->safe_psql($db, q{UPDATE public.ev SET ts = ts WHERE cookie = 'c1'; DELETE FROM public.ev WHERE cookie = 'c2'});
	is($node->safe_psql($db, q{SELECT personalize.wait_for_apply('120 s')}), 't', "$db: the worker applied every commit");
}

# --- the exporter, as README.md "Monitoring" runs it ----------------------------
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $dsn = 'host=' . $node->host . ' port=' . $node->port . ' user=' . ($ENV{PGUSER} // getpwuid($<))
  . ' dbname=shop sslmode=disable';
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[ $exporter, "--web.listen-address=127.0.0.1:$port", "--extend.query-path=$mon/queries.yaml",
	  '--auto-discover-databases', '--include-databases=crm', '--log.level=warn' ],
	'<', \undef, '>', \$out, '2>', \$err,
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn });
my $http = HTTP::Tiny->new(timeout => 30);

# one scrape: {name => [{labels}, value]...}, and the HELP and TYPE lines
sub scrape
{
	my $res;
	for (1 .. 300)
	{
		$res = $http->get("http://127.0.0.1:$port/metrics");
		last if $res->{success} && $res->{content} =~ /^personalize_stored_profiles\{/m;
		select(undef, undef, undef, 0.1);
	}
	die "no scrape: $res->{status} $res->{content}\nexporter: $err" unless $res->{success};
	my (%series, %help, %type);
	for my $line (split /\n/, $res->{content})
	{
		if ($line =~ /^# HELP (\S+) (.*)$/) { $help{$1} = $2; next }
		if ($line =~ /^# TYPE (\S+) (\S+)$/) { $type{$1} = $2; next }
		next if $line =~ /^#/ || $line !~ /\S/;
		my ($name, $labels, $value) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/ or next;
		my %l = ($labels // '') =~ /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
		push @{ $series{$name} }, [ \%l, $value ];
	}
	return { series => \%series, help => \%help, type => \%type, text => $res->{content} };
}

sub value_of
{
	my ($s, $name, %want) = @_;
	my @hits = grep {
		my $l = $_->[0];
		!grep { ($l->{$_} // '') ne $want{$_} } keys %want
	} @{ $s->{series}{$name} // [] };
	return @hits == 1 ? $hits[0][1] : scalar(@hits) . ' series';
}

my $status_sql = q{SELECT row_to_json(w) FROM personalize.worker_status w WHERE database = current_database()};
my %before = map { $_ => decode_json($node->safe_psql($_, $status_sql)) } qw(shop crm);
my $s = scrape();
my %after = map { $_ => decode_json($node->safe_psql($_, $status_sql)) } qw(shop crm);

# figures that stay put once the stream is idle; then those that move
# (a recent average; WAL others write), between the reads before and after
my %same = (
	events_applied_total => 'events_applied', transactions_total => 'transactions', batches_total => 'batches',
	profiles_written_total => 'profiles_written', merges_total => 'merges', refused_links_total => 'refused_links',
	dead_letters_total => 'dead_letters', updates_ignored_total => 'updates_ignored',
	deletes_ignored_total => 'deletes_ignored', truncates_ignored_total => 'truncates_ignored',
	audience_changes_total => 'audience_changes', memory_bytes => 'memory_bytes', restarts_total => 'restarts');
for my $db (qw(shop crm))
{
	my ($pre, $post) = ($before{$db}, $after{$db});
	for my $m (sort keys %same)
	{
		my $col = $same{$m};
		is($pre->{$col}, $post->{$col}, "$db: worker_status.$col is stable") or next;
		is(value_of($s, "personalize_worker_$m", datname => $db) + 0, $pre->{$col} + 0,
			"$db: personalize_worker_$m = worker_status.$col ($pre->{$col})");
	}
	ok($pre->{$_} > 0, "$db: worker_status.$_ is not 0 (the comparison means something)")
	  for qw(events_applied merges refused_links dead_letters updates_ignored deletes_ignored audience_changes batches);
	is(value_of($s, 'personalize_worker_up', datname => $db), '1', "$db: personalize_worker_up is 1 (pid $pre->{pid})");
	is(value_of($s, 'personalize_worker_paused', datname => $db), '0', "$db: personalize_worker_paused is 0");
	is(value_of($s, 'personalize_worker_lag_seconds', datname => $db) + 0, $pre->{lag_ms} / 1000,
		"$db: personalize_worker_lag_seconds = worker_status.lag_ms / 1000");
	for my $m ([ 'lag_bytes', 'lag_bytes' ], [ 'events_per_second', 'events_per_second' ])
	{
		my ($metric, $col) = @$m;
		my $v = value_of($s, "personalize_worker_$metric", datname => $db);
		my ($lo, $hi) = sort { $a <=> $b } ($pre->{$col} // 0, $post->{$col} // 0);
		ok($v =~ /^[0-9.e+-]+$/ && $v >= $lo - 0.05 && $v <= $hi + 0.05,
			"$db: personalize_worker_$metric ($v) is worker_status.$col as read before and after ($lo .. $hi)");
	}
	my $epoch = $node->safe_psql($db, q{SELECT extract(epoch FROM last_applied_at) FROM personalize.worker_status
	                                      WHERE database = current_database()});
	ok(abs(value_of($s, 'personalize_worker_last_applied_timestamp_seconds', datname => $db) - $epoch) < 0.001,
		"$db: personalize_worker_last_applied_timestamp_seconds = worker_status.last_applied_at");
	my @on = grep { $_->[1] == 1 && $_->[0]{datname} eq $db } @{ $s->{series}{personalize_worker_state} // [] };
	is(join(',', map { $_->[0]{state} } @on), $pre->{state}, "$db: personalize_worker_state is 1 for '$pre->{state}' only");
	is(scalar(grep { $_->[0]{datname} eq $db } @{ $s->{series}{personalize_worker_state} }), 9,
		"$db: personalize_worker_state has a series per state");
	for my $t (qw(profiles identities dead_letters refused_links audience_memberships unstreamed_sources))
	{
		my $n = $node->safe_psql($db, "SELECT count(*) FROM personalize.$t");
		is(value_of($s, "personalize_stored_$t", datname => $db), $n, "$db: personalize_stored_$t = $n rows");
	}
}

# --- names and types as Prometheus would have them --------------------------------
my @ours = sort grep { /^personalize_/ } keys %{ $s->{series} };
ok(@ours >= 25, 'the scrape has the personalize metrics (' . scalar(@ours) . ')');
my @bad;
for my $name (@ours)
{
	my $type = $s->{type}{$name} // 'none';
	push @bad, "$name: no help" unless length($s->{help}{$name} // '') > 10;
	push @bad, "$name: $type" unless $type eq ($name =~ /_total$/ ? 'counter' : 'gauge');
	push @bad, "$name: no datname" if grep { !length($_->[0]{datname} // '') } @{ $s->{series}{$name} };
	push @bad, "$name: not snake_case" unless $name =~ /^[a-z][a-z0-9_]*$/;
}
is(join("\n", @bad), '', 'every personalize metric: help text, counter iff _total, a datname label, snake_case');

# --- the dashboard and the rules use what the scrape has ------------------------------
sub metrics_in
{
	my ($expr) = @_;
	my %m;
	$m{$1} = 1 while $expr =~ /\b(personalize_[a-z0-9_]+)\b/g;
	return keys %m;
}
my $dash = eval { decode_json(do { local (@ARGV, $/) = ("$mon/grafana-dashboard.json"); <> }) };
ok($dash && ref $dash->{panels} eq 'ARRAY' && @{ $dash->{panels} } >= 10, 'grafana-dashboard.json is valid JSON with its panels')
  or diag($@);
my (@exprs, @missing);
push @exprs, map { $_->{expr} } @{ $_->{targets} // [] } for @{ $dash->{panels} // [] };
push @exprs, $_->{definition} // '' for @{ $dash->{templating}{list} // [] };
for my $e (@exprs)
{
	push @missing, grep { !$s->{series}{$_} } metrics_in($e);
}
ok(@exprs >= 20, 'the dashboard\'s queries (' . scalar(@exprs) . ')');
is(join(', ', @missing), '', 'every metric the dashboard uses is in the scrape');
my $used = join ' ', @exprs;
is(join(', ', grep { $used !~ /\b$_\b/ } grep { !/_timestamp_seconds$/ || /last_applied/ } @ours), '',
	'the dashboard shows every metric (but the start and error times)');

my ($pout, $perr) = ('', '');
IPC::Run::run([ $promtool, 'check', 'rules', "$mon/alerts.yml" ], '>', \$pout, '2>', \$perr);
is($? >> 8, 0, 'promtool check rules alerts.yml') or diag("$pout$perr");
IPC::Run::run([ $promtool, 'test', 'rules', 'alerts-test.yml' ], '>', \$pout, '2>', \$perr, init => sub { chdir $mon });
is($? >> 8, 0, 'promtool test rules alerts-test.yml: each alert fires on its series, not on a healthy worker\'s')
  or diag("$pout$perr");
my $rules = do { local (@ARGV, $/) = ("$mon/alerts.yml"); <> };
my @rule_exprs = $rules =~ /^\s*expr:\s*(.+)$/mg;
is(scalar(@rule_exprs), 7, 'seven alerting rules');
is(join(', ', grep { !$s->{series}{$_} } map { metrics_in($_) } @rule_exprs), '',
	'every metric the rules use is in the scrape');

$h->kill_kill;
$node->stop;
done_testing();
