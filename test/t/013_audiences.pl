# Audiences (0.7.0): memberships kept by the streaming worker in the
# transaction of the profile write, time-driven transitions, and the ways an
# application consumes entries and exits.
#
#   1. several writers stream orders, tickets, web events (with logins that
#      merge profiles) while a session links identifiers (merges outside the
#      worker), and the worker or the whole server is SIGKILLed at random
#      points; afterwards, once everything is applied and every short
#      moment has passed, for each audience (event-driven and on the clock):
#      the memberships equal SELECT profile_id FROM profile_view WHERE
#      <condition>, refresh_audience() has nothing to fix (returns 0), and
#      the events of each (audience, profile) alternate entry / exit starting
#      with an entry, the last one agreeing with the membership (no event
#      twice, none lost), since = the last entry's time;
#   2. time alone: a profile enters a clock audience and leaves another with
#      no new event once their moment passes (why = 'time'), never before it;
#   3. consumers, while writers stream and a session refreshes the
#      event-driven audiences (each refresh finds nothing to fix):
#      LISTEN personalize_audiences in a background psql (every payload's
#      counts are the events it names, every event is named by one, and, as
#      docs/audiences.md says, one notification per audience and
#      transaction: a merge in the worker's apply is made to send two); a
#      queue copied from audience_events and claimed with FOR UPDATE SKIP
#      LOCKED by two concurrent consumers (each event handled exactly once);
#      logical decoding of audience_events with test_decoding and through a
#      publication with pgoutput (every event decoded once, in order);
#   4. privileges: personalize_reader reads memberships and events and calls
#      in_audience(), but cannot create or refresh audiences nor write the
#      tables; a personalize_admin member can create one;
#   5. a merge in another session changes the memberships of profiles the
#      worker wrote, and the worker's next write of one sees the change;
#   6. retention: the worker deletes events older than
#      personalize.audience_events_retention.
# No assertion is on timing: waits poll with generous timeouts.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use PzNode;
use Time::HiRes qw(usleep);

my $shop = $ENV{PZ_TEST_DIR} or die "PZ_TEST_DIR is not set (see test/run)\n";
$shop .= '/shop';

my $node = streaming_node('audiences', <<'CONF');
personalize.worker_max_backoff = 2s
personalize.audience_delay = 200ms
restart_after_crash = on
max_replication_slots = 6
CONF

sub sql { return $node->safe_psql('shop', $_[0]); }

sub run_file
{
	my ($file) = @_;
	my ($out, $err);
	my $rc = $node->psql('shop', undef,
		extra_params => [ '-f', $file, '-v', 'ON_ERROR_STOP=1' ],
		stdout => \$out, stderr => \$err);
	die "psql -f $file failed (rc $rc): $err\n" if $rc != 0;
}

sub wait_applied
{
	my ($what) = @_;
	is(sql(q{SELECT personalize.wait_for_apply('120 s')}), 't', "$what: the worker applied every commit");
}

# every moment of the clock audiences that is near has passed and was applied
# (what is left on the schedule is an hour away: windowed columns)
sub wait_moments
{
	my ($what) = @_;
	ok($node->poll_query_until('shop',
			q{SELECT NOT EXISTS (SELECT 1 FROM personalize.audience_due WHERE due < now() + interval '10 minutes')}),
		"$what: every near time-driven moment passed and was applied");
}

# a psql process in the background
sub start_psql
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('shop'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	return { h => $h, out => \$out, err => \$err };
}

# a machine crash: the postmaster and every process of the server SIGKILLed
# at once
sub crash
{
	my $pid = $node->{_pid};
	my @children = grep { /^\d+$/ } split /\s+/, `pgrep -P $pid`;
	kill 'KILL', $pid, @children;
	$node->{_pid} = undef;
	usleep(100_000) while kill 0, $pid, @children;
}

sql('CREATE EXTENSION personalize');
run_file("$shop/schema.sql");
run_file("$shop/traffic.sql");
run_file("$shop/config.sql");
# a top trait smaller than a customer's three categories: the worker's
# merged state holds more candidates than the N it writes and the view reads
sql(q{SELECT personalize.add_trait('top_two_categories', 'top', field => 'category',
        sources => '{shop.web_events,shop.orders}', n => 2, half_life => '14 days')});

# --- 1. writers, merges and SIGKILLs; memberships equal the recomputation -----
# [name, condition]: event-driven ones, a windowed one (scheduled an hour
# ahead), and clock ones with moments a few seconds after each event
my @audiences = (
	[ 'buyers',       q{orders > 8} ],
	[ 'unhappy',      q{ticket_sentiment = 'negative'} ],
	[ 'big_spenders', q{lifetime_value > 1500 AND orders >= 5} ],
	[ 'hot',          q{orders_in_1h >= 10} ],
	[ 'size_44',      q{last_size = '44'} ],
	[ 'dormant',      q{last_seen < now() - interval '2 seconds'} ],
	[ 'active',       q{last_seen > now() - interval '2 seconds'} ],
	[ 'lapsed_buyer', q{orders > 0 AND last_seen <= now() - interval '3 seconds'} ],
	[ 'gold_browser', q{loyalty_tier = 'gold' AND cardinality(last_viewed) >= 2} ],
	[ 'three_of_two', q{cardinality(top_two_categories) > 2} ],
);
for my $a (@audiences)
{
	my ($name, $cond) = @$a;
	is(sql("SELECT personalize.create_audience('$name', \$c\$$cond\$c\$)"), '0', "audience $name created, empty");
}
is(sql(q{SELECT string_agg(name, ',' ORDER BY id) FROM personalize.audiences WHERE timed}),
	'hot,dormant,active,lapsed_buyer', 'the audiences that read the clock or a window are the timed ones');

# a session that links anonymous browsers to emails: merges outside the worker
sub linker_sql
{
	my ($round) = @_;
	return qq{DO \$\$
BEGIN
    PERFORM setseed(0.$round);
    FOR i IN 1 .. 150 LOOP
        PERFORM personalize.link('anonymous_id', 't-$round' || (1 + floor(random() * 3))::int || '-' || (1 + floor(random() * 300))::int,
                                 'email', 'c' || (1 + floor(random() * 150))::int || '\@example.com');
        COMMIT;
        PERFORM pg_sleep(0.004);
    END LOOP;
END \$\$};
}

my @kills = qw(none worker postmaster worker none postmaster worker);
my %killed;
for my $round (1 .. @kills)
{
	my $kill = $kills[ $round - 1 ];
	my @procs = map { start_psql("CALL shop.traffic(700, $round$_, 150, 1, '1 ms')") } 1 .. 3;
	push @procs, start_psql(linker_sql($round));
	if ($kill ne 'none')
	{
		my $delay = 150_000 + int(rand(1_200_000));
		note("round $round: SIGKILL of the $kill after $delay us");
		usleep($delay);
		if ($kill eq 'worker')
		{
			my $pid = sql('SELECT pid FROM personalize.worker_status');
			if ($pid =~ /^\d+$/)
			{
				kill 'KILL', $pid;
				$killed{worker}++;
			}
		}
		else
		{
			crash();
			$killed{postmaster}++;
		}
	}
	$_->{h}->finish for @procs;
	for my $p (@procs)
	{
		note("round $round ($kill): " . ${ $p->{err} }) if ${ $p->{err} } ne '';
		# a writer that failed for another reason than the kill is a broken test
		die "round $round: a writer failed: ${ $p->{err} }"
		  if $kill eq 'none' && ${ $p->{err} } =~ /ERROR/;
	}
	$node->start if $kill eq 'postmaster';
	$node->poll_query_until('shop', 'SELECT pid IS NOT NULL FROM personalize.worker_status')
	  or die "round $round: the worker did not come back";
}
ok($killed{worker} >= 2 && $killed{postmaster} >= 2,
	"the worker was SIGKILLed $killed{worker} times and the server $killed{postmaster} times while writers wrote");

wait_applied('after the kills');
wait_moments('after the kills');
wait_applied('after the moments');

my %why = map { split /\|/ } split /\n/,
  sql(q{SELECT why || '|' || count(*) FROM personalize.audience_events GROUP BY why});
note('events by why: ' . join(', ', map { "$_ $why{$_}" } sort keys %why));
ok(($why{event} // 0) > 0, 'entries and exits driven by events');
ok(sql(q{SELECT count(*) FROM personalize.audience_events WHERE why = 'event' AND NOT entered AND audience IN ('unhappy', 'size_44')}) > 0,
	'exits driven by events (a later ticket, a later size)');
ok(($why{time} // 0) > 0, 'entries and exits driven by time alone');
ok(($why{merge} // 0) > 0, 'entries and exits caused by merges');

# The events are a consistent history: per (audience, profile) ordered by id,
# entry, exit, entry, ...; the last one says the current membership; a
# member's since is its last entry's time.
sub check_history
{
	my ($what) = @_;
	my $bad = sql(q{
		SELECT count(*) FROM (
		  SELECT entered, lag(entered) OVER w AS prev, row_number() OVER w AS rn
		    FROM personalize.audience_events WINDOW w AS (PARTITION BY audience, profile_id ORDER BY id)) e
		 WHERE (rn = 1 AND NOT entered) OR (rn > 1 AND entered = prev)});
	is($bad, '0', "$what: each profile's events alternate entry/exit, starting with an entry (none twice, none lost)")
	  or diag(sql(q{
		SELECT string_agg(h, E'\n') FROM (
		  SELECT format('%s / profile %s: %s', audience, profile_id,
		                string_agg(format('#%s %s %s %s', id, CASE WHEN entered THEN 'in' ELSE 'out' END, why, at), ', ' ORDER BY id)) AS h
		    FROM personalize.audience_events e
		   WHERE (audience, profile_id) IN (
		         SELECT audience, profile_id FROM (
		           SELECT audience, profile_id, entered, lag(entered) OVER w AS prev, row_number() OVER w AS rn
		             FROM personalize.audience_events WINDOW w AS (PARTITION BY audience, profile_id ORDER BY id)) x
		          WHERE (rn = 1 AND NOT entered) OR (rn > 1 AND entered = prev) LIMIT 5)
		   GROUP BY audience, profile_id) y}));
	my $last = q{
		SELECT count(*) FROM (
		  SELECT DISTINCT ON (audience, profile_id) audience, profile_id, entered, at
		    FROM personalize.audience_events ORDER BY audience, profile_id, id DESC) l
		  FULL JOIN personalize.audience_members m ON m.audience = l.audience AND m.profile_id = l.profile_id
		 WHERE coalesce(l.entered, false) <> (m.profile_id IS NOT NULL)
		    OR (m.profile_id IS NOT NULL AND m.since IS DISTINCT FROM l.at)};
	is(sql($last), '0', "$what: each profile's last event agrees with its membership, and since is the last entry's time")
	  or diag(sql(q{
		SELECT string_agg(format('%s / %s: last event %s, member %s since %s', coalesce(l.audience, m.audience),
		                         coalesce(l.profile_id, m.profile_id), l.entered, m.profile_id IS NOT NULL, m.since), E'\n')
		  FROM (SELECT DISTINCT ON (audience, profile_id) audience, profile_id, entered, at
		          FROM personalize.audience_events ORDER BY audience, profile_id, id DESC) l
		  FULL JOIN personalize.audience_members m ON m.audience = l.audience AND m.profile_id = l.profile_id
		 WHERE coalesce(l.entered, false) <> (m.profile_id IS NOT NULL)
		    OR (m.profile_id IS NOT NULL AND m.since IS DISTINCT FROM l.at)}));
}

# memberships against the view, then refresh_audience() must find nothing to fix
sub check_memberships
{
	my ($what, $nonempty) = @_;
	my $diff = sub {
		my ($name, $cond) = @_;
		return qq{
		  FROM (SELECT profile_id FROM personalize.profile_view WHERE $cond) v
		  FULL JOIN (SELECT profile_id FROM personalize.audience_members WHERE audience = '$name') m
		    ON m.profile_id = v.profile_id
		 WHERE v.profile_id IS NULL OR m.profile_id IS NULL};
	};
	# one query for every audience: members, and profiles where the
	# memberships and the condition differ
	my %got = map { my ($n, @v) = split /\|/; ($n => \@v) } split /\n/, sql(join(' UNION ALL ', map {
		my ($name, $cond) = @$_;
		qq{SELECT '$name', (SELECT count(*) FROM personalize.audience_members WHERE audience = '$name'),
		          (SELECT count(*) } . $diff->($name, $cond) . ')'
	} @audiences));
	for my $a (@audiences)
	{
		my ($name, $cond) = @$a;
		my ($n, $bad) = @{ $got{$name} };
		ok($n > 0, "$what: audience $name has members ($n)") if $nonempty->{$name};
		is($bad, '0', "$what: audience $name: the memberships are SELECT profile_id FROM profile_view WHERE $cond")
		  or diag(sql(qq{SELECT string_agg(format('profile %s: in the view %s, member %s; events: %s',
		                   coalesce(v.profile_id, m.profile_id), v.profile_id IS NOT NULL, m.profile_id IS NOT NULL,
		                   (SELECT string_agg(format('#%s %s %s %s', e.id, e.entered, e.why, e.at), ', ' ORDER BY e.id)
		                      FROM personalize.audience_events e
		                     WHERE e.audience = '$name' AND e.profile_id = coalesce(v.profile_id, m.profile_id))), E'\n')
		                 } . $diff->($name, $cond)));
	}
	# each refresh in a transaction of its own (as a maintenance job would run them)
	my @refreshed = split /\n/, sql(join(";\n", map { "SELECT personalize.refresh_audience('$_->[0]')" } @audiences));
	for my $i (0 .. $#audiences)
	{
		is($refreshed[$i], '0', "$what: refresh_audience('$audiences[$i][0]') has no entry or exit to make");
	}
	is(sql(q{SELECT count(*) FROM personalize.audience_events WHERE why = 'refresh'}), '0',
		"$what: no event of a refresh, ever");
}

check_history('after the kills');
check_memberships('after the kills',
	{ map { $_ => 1 } qw(buyers unhappy big_spenders hot size_44 dormant lapsed_buyer gold_browser) });
is(sql(q{SELECT coalesce(sum(errors), 0) FROM personalize.audiences}), '0', 'no evaluation failed');
is(sql(q{SELECT count(*) FROM personalize.audience_events WHERE audience = 'three_of_two'}), '0',
	'a top column holds its N values when the worker evaluates what it merged (no one ever entered three_of_two)');
ok(sql(q{SELECT count(*) FROM personalize.profile_view WHERE cardinality(top_two_categories) = 2}) > 0,
	'profiles with two categories in top_two_categories exist');
is(sql(q{SELECT count(*) FROM personalize.audience_members WHERE audience = 'active'}), '0',
	'no one is active seconds after the last event');
ok(sql(q{SELECT count(*) FROM personalize.audience_events WHERE audience = 'active' AND why = 'time' AND NOT entered}) > 0,
	'active profiles left the audience with time alone');

# --- 2. time alone --------------------------------------------------------------
# (the visitor's events are dated 2 s ahead: whatever the worker's latency on
# a slow machine, up to 4 s, it is active when its event is applied)
sql(q{INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES ('clock-1', 'page_view', clock_timestamp() + interval '2 s')});
wait_applied('a visitor');
my $clock = sql(q{SELECT personalize.resolve('anonymous_id', 'clock-1')});
ok($clock > 0, 'the visitor has a profile');
is(sql("SELECT personalize.in_audience($clock, 'active') || '/' || personalize.in_audience($clock, 'dormant')"),
	'true/false', 'just seen: active, not dormant');
is(sql(qq{SELECT d.due >= p.last_seen + interval '2 s' AND d.due <= p.last_seen + interval '2.001 s'
            FROM personalize.audience_due d JOIN personalize.profiles p ON p.id = d.profile_id WHERE p.id = $clock}),
	't', 'its next moment is scheduled two seconds after its last event');
my $last_seen = sql("SELECT last_seen FROM personalize.profiles WHERE id = $clock");
ok($node->poll_query_until('shop',
		"SELECT personalize.in_audience($clock, 'dormant') AND NOT personalize.in_audience($clock, 'active')"),
	'with no new event, it entered dormant and left active');
my $hist = sub {
	my ($aud) = @_;
	return sql(qq{SELECT string_agg(format('%s:%s', CASE WHEN entered THEN 'in' ELSE 'out' END, why), ',' ORDER BY id)
	                FROM personalize.audience_events WHERE audience = '$aud' AND profile_id = $clock});
};
is($hist->('active'), 'in:event,out:time', 'active: entered by its event, left by time');
is($hist->('dormant'), 'in:time', 'dormant: entered by time');
is(sql(qq{SELECT count(*) FROM personalize.audience_events
           WHERE profile_id = $clock AND why = 'time' AND at < '$last_seen'::timestamptz + interval '2 s'}),
	'0', 'no time-driven transition before its moment');
is(sql("SELECT last_seen FROM personalize.profiles WHERE id = $clock"), $last_seen, 'there was no new event');
# (lapsed_buyer's clock comparison may still wake it once: its orders are NULL)
ok($node->poll_query_until('shop', "SELECT count(*) = 0 FROM personalize.audience_due WHERE profile_id = $clock"),
	'then nothing more is scheduled for it: dormant stays true, active false');
is($hist->('active') . ' ' . $hist->('dormant'), 'in:event,out:time in:time', 'and nothing changed meanwhile');
sql(q{INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES ('clock-1', 'page_view', clock_timestamp() + interval '2 s')});
wait_applied('the visitor again');
is($hist->('active') . ' ' . $hist->('dormant'), 'in:event,out:time,in:event in:time,out:event',
	'a new event brings it back: active again, out of dormant, both by the event');

# --- 3. consumers ---------------------------------------------------------------
# (c) logical decoding: a slot of test_decoding, and a publication with pgoutput
sql(q{SELECT pg_create_logical_replication_slot('app_decoding', 'test_decoding')});
sql(q{CREATE PUBLICATION app_audiences FOR TABLE personalize.audience_events});
sql(q{SELECT pg_create_logical_replication_slot('app_pgoutput', 'pgoutput')});
# (a) a listener
my $listener = $node->background_psql('shop', on_error_stop => 1);
$listener->query_safe('LISTEN personalize_audiences');
my $mark = sql(q{SELECT coalesce(max(id), 0) FROM personalize.audience_events});
my $worker_pid = sql('SELECT pid FROM personalize.worker_status');

# a merge in one transaction of the worker: customer 777777 and an anonymous
# visitor, both last seen an hour ago (dormant), log in together; the
# visitor's profile leaves dormant (merge), the customer's leaves it with the
# login (event): one transaction, two exits from dormant, which must come as
# one notification ("at commit, one notification per audience that changed")
sql(q{INSERT INTO shop.orders (order_id, customer_id, email, sku, category, amount, ordered_at)
      VALUES (nextval('shop.traffic_order_id'), 777777, 'k777777@example.com', 'sku-1-1', 'bikes', 10, now() - interval '1 hour');
      INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES ('notify-anon', 'page_view', now() - interval '1 hour')});
wait_applied('two dormant profiles');
my $anon = sql(q{SELECT personalize.resolve('anonymous_id', 'notify-anon')});
my $cust = sql(q{SELECT personalize.resolve('customer_id', '777777')});
is(sql(qq{SELECT personalize.in_audience($anon, 'dormant') AND personalize.in_audience($cust, 'dormant') AND $anon <> $cust}),
	't', 'a visitor and a customer, both dormant');
# (the login is dated an hour ahead: the customer leaves dormant by it
# whatever the worker's latency)
sql(q{INSERT INTO shop.web_events (anonymous_id, customer_id, event_type, ts)
      VALUES ('notify-anon', 777777, 'login', now() + interval '1 hour')});
wait_applied('the login');
is(sql(q{SELECT personalize.resolve('anonymous_id', 'notify-anon')}), $cust, 'the login merged the visitor into the customer');
my $login_xid = sql(qq{SELECT xmin FROM personalize.audience_events WHERE audience = 'dormant' AND profile_id = $anon AND NOT entered});
is(sql(qq{SELECT string_agg(format('%s %s %s', CASE WHEN profile_id = $anon THEN 'visitor' ELSE 'customer' END,
                                   CASE WHEN entered THEN 'in' ELSE 'out' END, why), ', ' ORDER BY id)
            FROM personalize.audience_events WHERE xmin::text = '$login_xid' AND audience = 'dormant'}),
	'visitor out merge, customer out event', 'in one transaction both left dormant: the visitor by the merge, the customer by its login');

# (b) the application's queue: one copier copies new events into it, and
# consumers claim them with FOR UPDATE SKIP LOCKED, recording what they
# handled in the same transaction.  The copy starts after the highest event
# queued or handled, read in one snapshot: the max of the queue alone goes
# back once the queue drains (everything would be copied again), the max of
# the handled rows alone misses the rows being claimed at that moment (with
# ON CONFLICT DO NOTHING the copy waits for the claim and queues them again).
sql(q{
CREATE SCHEMA app;
CREATE TABLE app.audience_queue (event_id bigint PRIMARY KEY, audience text NOT NULL, profile_id bigint NOT NULL,
                                 entered boolean NOT NULL, at timestamptz NOT NULL);
CREATE TABLE app.handled (consumer integer NOT NULL, event_id bigint NOT NULL, audience text NOT NULL,
                          profile_id bigint NOT NULL, entered boolean NOT NULL);
CREATE TABLE app.stop (who text);
CREATE TABLE app.running (consumer integer);
CREATE PROCEDURE app.copier() LANGUAGE plpgsql AS $$
DECLARE
    last boolean;
BEGIN
    LOOP
        last := EXISTS (SELECT 1 FROM app.stop WHERE who = 'copier');
        INSERT INTO app.audience_queue
        SELECT e.id, e.audience, e.profile_id, e.entered, e.at FROM personalize.audience_events e
         WHERE e.id > greatest((SELECT coalesce(max(event_id), 0) FROM app.audience_queue),
                               (SELECT coalesce(max(event_id), 0) FROM app.handled));
        COMMIT;
        EXIT WHEN last;
        PERFORM pg_sleep(0.005);
    END LOOP;
END $$;
CREATE PROCEDURE app.consumer(me integer) LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO app.running VALUES (me);
    COMMIT;
    LOOP
        WITH claimed AS (
            DELETE FROM app.audience_queue q
             WHERE q.event_id IN (SELECT event_id FROM app.audience_queue ORDER BY event_id
                                   FOR UPDATE SKIP LOCKED LIMIT 20)
            RETURNING q.*)
        INSERT INTO app.handled SELECT me, c.event_id, c.audience, c.profile_id, c.entered FROM claimed c;
        GET DIAGNOSTICS n = ROW_COUNT;
        COMMIT;
        EXIT WHEN n = 0 AND EXISTS (SELECT 1 FROM app.stop WHERE who = 'consumers');
        IF n = 0 THEN
            PERFORM pg_sleep(0.002);
        END IF;
    END LOOP;
END $$;
});
my @consumers = map { start_psql("CALL app.consumer($_)") } 1 .. 2;
$node->poll_query_until('shop', 'SELECT count(*) = 2 FROM app.running') or die 'the consumers did not start';
my $copier = start_psql('CALL app.copier()');

# traffic, and one shopper whose negative ticket makes them unhappy; and a
# session that refreshes the event-driven audiences meanwhile: memberships are
# written with the profiles, so at every commit they are what a refresh
# computes, and it has nothing to fix (the clock audiences may lag by up to
# personalize.audience_delay, so they are left out)
sql(q{CREATE TABLE app.refreshes (audience text, changes bigint)});
my @writers = map { start_psql("CALL shop.traffic(800, 9$_, 150, 1, '1 ms')") } 1 .. 2;
push @writers, start_psql(q{DO $$
BEGIN
    FOR i IN 1 .. 8 LOOP
        INSERT INTO app.refreshes SELECT a, personalize.refresh_audience(a)
          FROM unnest('{buyers,unhappy,big_spenders,size_44,gold_browser}'::text[]) a;
        COMMIT;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$});
usleep(300_000);
sql(q{INSERT INTO shop.support_tickets (email, status, sentiment, opened_at)
      VALUES ('listen-me@example.com', 'open', 'negative', clock_timestamp())});
$_->{h}->finish for @writers;
is(join('', map { ${ $_->{err} } } @writers), '', 'the writers of section 3 wrote without error');
is(sql(q{SELECT count(*) || ' refreshes, ' || sum(changes) || ' changes' FROM app.refreshes}), '40 refreshes, 0 changes',
	'refresh_audience() while the worker streams has nothing to fix in the event-driven audiences')
  or diag(sql(q{SELECT string_agg(format('%s: %s', audience, changes), ', ') FROM app.refreshes WHERE changes <> 0}));
wait_applied('consumers');
wait_moments('consumers');
wait_applied('consumers, after the moments');
my $unhappy = sql(q{SELECT personalize.resolve('email', 'listen-me@example.com')});
is(sql("SELECT personalize.in_audience($unhappy, 'unhappy')"), 't', 'the unhappy shopper is in audience unhappy');
my $entry = sql(qq{SELECT id FROM personalize.audience_events WHERE audience = 'unhappy' AND profile_id = $unhappy AND entered});
ok($entry > $mark, 'its entry is an event');
my $max_at_stop = sql(q{SELECT max(id) FROM personalize.audience_events});

# (a) the notifications: collect until every event since LISTEN is named
sql(q{CREATE TABLE app.notes (audience text, entered bigint, exited bigint, first_event bigint, last_event bigint, pid integer)});
my $notes_sql = q{
	SELECT count(*) FROM personalize.audience_events e
	 WHERE e.id > %s AND NOT EXISTS (SELECT 1 FROM app.notes n WHERE n.audience = e.audience
	                                   AND e.id BETWEEN n.first_event AND n.last_event)};
my (@notes, $unnamed);
for my $try (1 .. 60)
{
	# (BackgroundPsql notes every output: hundreds of notifications)
	my $out = do
	{
		no warnings 'redefine';
		local *PostgreSQL::Test::BackgroundPsql::note = sub { };
		$listener->query('SELECT 1');
	};
	my @got;
	while ($out =~ /Asynchronous notification "personalize_audiences" with payload "(.*?)" received from server process with PID (\d+)\./g)
	{
		my ($payload, $pid) = ($1, $2);
		if ($payload =~ /^\{"audience": "([a-z0-9_]+)", "entered": (\d+), "exited": (\d+), "first_event": (\d+), "last_event": (\d+)\}$/)
		{
			push @got, "('$1', $2, $3, $4, $5, $pid)";
		}
		else
		{
			push @got, "('unparsable: $payload', 0, 0, 0, 0, $pid)";
		}
	}
	push @notes, @got;
	sql('INSERT INTO app.notes VALUES ' . join(', ', @got)) if @got;
	$unnamed = sql(sprintf($notes_sql, $mark));
	last if $unnamed eq '0';
	usleep(500_000);
}
ok(@notes > 0, 'LISTEN personalize_audiences: notifications received (' . scalar(@notes) . ')');
is(sql(q{SELECT count(*) FROM app.notes WHERE audience LIKE 'unparsable%'}), '0',
	'every payload is {"audience", "entered", "exited", "first_event", "last_event"}')
  or diag(sql(q{SELECT string_agg(audience, E'\n') FROM app.notes WHERE audience LIKE 'unparsable%'}));
is(sql(qq{SELECT count(*) FROM app.notes WHERE audience = 'unhappy' AND $entry BETWEEN first_event AND last_event
            AND entered >= 1 AND pid = $worker_pid}),
	'1', 'a notification from the worker names audience unhappy and the entry of the unhappy shopper');
is($unnamed, '0', 'every entry and exit since LISTEN is named by a notification of its audience')
  or diag(sql(sprintf(q{SELECT string_agg(format('#%s %s %s %s', id, audience, profile_id, why), E'\n')
                          FROM (SELECT * FROM personalize.audience_events e WHERE e.id > %s
                                   AND NOT EXISTS (SELECT 1 FROM app.notes n WHERE n.audience = e.audience
                                                     AND e.id BETWEEN n.first_event AND n.last_event) LIMIT 10) x}, $mark)));
is(sql(q{
	SELECT count(*) FROM app.notes n,
	       LATERAL (SELECT count(*) FILTER (WHERE e.entered) AS entered, count(*) FILTER (WHERE NOT e.entered) AS exited
	                  FROM personalize.audience_events e
	                 WHERE e.audience = n.audience AND e.id BETWEEN n.first_event AND n.last_event) e
	 WHERE n.first_event > n.last_event OR (n.entered, n.exited) IS DISTINCT FROM (e.entered, e.exited)}),
	'0', "every notification's entered and exited are its audience's events between first_event and last_event");
# one notification per audience and transaction: the events a notification
# names (its audience's, first_event .. last_event) carry their transaction's
# xmin
sql(q{CREATE TABLE app.note_xacts AS
      SELECT DISTINCT n.audience, n.first_event, n.last_event, e.xmin::text AS xid
        FROM app.notes n JOIN personalize.audience_events e
          ON e.audience = n.audience AND e.id BETWEEN n.first_event AND n.last_event});
is(sql(q{SELECT count(*) FROM app.notes WHERE (audience, first_event, last_event) IN
           (SELECT audience, first_event, last_event FROM app.note_xacts GROUP BY 1, 2, 3 HAVING count(*) > 1)}),
	'0', 'each notification names the events of one transaction');
is(sql(qq{SELECT count(*) FROM app.note_xacts WHERE audience = 'dormant' AND xid = '$login_xid'}), '1',
	'the login\'s transaction sent one notification for dormant, naming both exits (docs/audiences.md: '
	  . '"at commit, one notification per audience that changed")')
  or diag('the notifications of audience dormant sent by that transaction: '
	  . sql(qq{SELECT string_agg(format('{"entered": %s, "exited": %s, "first_event": %s, "last_event": %s}',
	                                    n.entered, n.exited, n.first_event, n.last_event), ', ' ORDER BY n.first_event)
	             FROM app.notes n JOIN app.note_xacts x USING (audience, first_event, last_event)
	            WHERE x.audience = 'dormant' AND x.xid = '$login_xid'}));
my $multi = sql(q{SELECT count(*) FROM (SELECT audience, xid FROM app.note_xacts GROUP BY 1, 2 HAVING count(*) > 1) m});
is($multi, '0', 'no transaction sent two notifications for one audience')
  or diag(sql(q{SELECT string_agg(format('audience %s, transaction %s: %s notifications (whys %s)', audience, xid, n, whys), E'\n')
                  FROM (SELECT x.audience, x.xid, count(*) AS n,
                               (SELECT string_agg(DISTINCT e.why, '+') FROM personalize.audience_events e
                                 WHERE e.xmin::text = x.xid AND e.audience = x.audience) AS whys
                          FROM app.note_xacts x GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 2 LIMIT 8) m}));
is(sql(q{SELECT count(*) FROM app.notes WHERE pid <> } . $worker_pid), '0',
	'every notification came from the worker (its events and time-driven transitions)');
$listener->quit;

# (b) the queue: stop copying (a last copy after everything above), then stop
# the consumers once the queue is empty
sql(q{INSERT INTO app.stop VALUES ('copier')});
$copier->{h}->finish;
is(${ $copier->{err} }, '', 'the copier ran without error');
sql(q{INSERT INTO app.stop VALUES ('consumers')});
$_->{h}->finish for @consumers;
is(join('', map { ${ $_->{err} } } @consumers), '', 'the consumers ran without error');
is(sql(q{SELECT count(*) FROM app.audience_queue}), '0', 'the queue is drained');
ok(sql(qq{SELECT max(event_id) >= $max_at_stop FROM app.handled}), 'every event up to the stop was copied');
is(sql(q{SELECT count(*) - count(DISTINCT event_id) FROM app.handled}), '0', 'no event was handled twice');
is(sql(q{SELECT count(*) FROM personalize.audience_events e FULL JOIN app.handled h ON h.event_id = e.id
          WHERE (e.id <= (SELECT max(event_id) FROM app.handled) AND h.event_id IS NULL)
             OR e.id IS NULL OR (e.audience, e.profile_id, e.entered) IS DISTINCT FROM (h.audience, h.profile_id, h.entered)}),
	'0', 'every event was handled, as it is in audience_events');
is(sql(q{SELECT count(DISTINCT consumer) FROM app.handled}), '2', 'both consumers claimed events');
note(sql(q{SELECT string_agg(format('consumer %s: %s events', consumer, n), ', ') FROM
            (SELECT consumer, count(*) n FROM app.handled GROUP BY 1 ORDER BY 1) x}));

# (c) decoding: every INSERT into audience_events once, from a point on
sql(q{
CREATE TABLE app.decoded AS
SELECT (regexp_match(data, '^table personalize\.audience_events: INSERT: id\[bigint\]:(\d+) '))[1]::bigint AS id,
       (regexp_match(data, ' audience\[text\]:''([^'']*)'''))[1] AS audience,
       (regexp_match(data, ' profile_id\[bigint\]:(\d+)'))[1]::bigint AS profile_id,
       (regexp_match(data, ' entered\[boolean\]:(true|false)'))[1]::boolean AS entered,
       (regexp_match(data, ' why\[text\]:''([a-z]+)'''))[1] AS why
  FROM pg_logical_slot_get_changes('app_decoding', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1')
 WHERE data LIKE 'table personalize.audience_events: INSERT:%';
-- pgoutput, protocol 1: 'I', relation oid, 'N', number of columns, then
-- the first column (id) as 't', its length and its text
CREATE TABLE app.published AS
SELECT convert_from(substring(data FROM 14 FOR (get_byte(data, 9) << 24) | (get_byte(data, 10) << 16)
                                                | (get_byte(data, 11) << 8) | get_byte(data, 12)), 'UTF8')::bigint AS id
  FROM pg_logical_slot_get_binary_changes('app_pgoutput', NULL, NULL, 'proto_version', '1',
                                          'publication_names', 'app_audiences')
 WHERE get_byte(data, 0) = ascii('I') AND get_byte(data, 5) = ascii('N') AND get_byte(data, 8) = ascii('t');
});
for my $t (qw(decoded published))
{
	my $what = $t eq 'decoded' ? 'test_decoding' : 'pgoutput (publication)';
	ok(sql(qq{SELECT count(*) FROM app.$t WHERE id > $mark}) > 0, "$what: the INSERTs into audience_events are decoded");
	is(sql(qq{SELECT count(*) - count(DISTINCT id) FROM app.$t}), '0', "$what: each once");
	is(sql(qq{SELECT min(id) <= (SELECT min(id) FROM personalize.audience_events WHERE id > $mark)
	            AND max(id) >= $max_at_stop FROM app.$t}),
		't', "$what: from before the listener's start to the last event");
	is(sql(qq{SELECT count(*) FROM personalize.audience_events e FULL JOIN app.$t d ON d.id = e.id
	           WHERE (e.id BETWEEN (SELECT min(id) FROM app.$t) AND (SELECT max(id) FROM app.$t) AND d.id IS NULL)
	              OR e.id IS NULL}),
		'0', "$what: every event from the first decoded to the last, and nothing else");
}
is(sql(q{SELECT count(*) FROM personalize.audience_events e JOIN app.decoded d USING (id)
          WHERE (e.audience, e.profile_id, e.entered, e.why) IS DISTINCT FROM (d.audience, d.profile_id, d.entered, d.why)}),
	'0', 'test_decoding: the decoded rows are the events');
sql(q{SELECT pg_drop_replication_slot('app_decoding'), pg_drop_replication_slot('app_pgoutput')});

# the history and the memberships are still right
check_history('after the consumers');
check_memberships('after the consumers', { map { $_ => 1 } qw(buyers unhappy dormant) });

# --- 4. privileges ----------------------------------------------------------------
sql(q{CREATE ROLE shop_reader LOGIN IN ROLE personalize_reader;
      CREATE ROLE shop_admin LOGIN IN ROLE personalize_admin;
      CREATE ROLE shop_nobody LOGIN;});
sub as
{
	my ($role, $query) = @_;
	my ($out, $err);
	my $rc = $node->psql('shop', $query, extra_params => [ '-U', $role ], stdout => \$out, stderr => \$err);
	return ($rc, $out, $err);
}
my $buyer = sql(q{SELECT min(profile_id) FROM personalize.audience_members WHERE audience = 'buyers'});
my ($rc, $out, $err) = as('shop_reader', qq{
	SELECT (SELECT count(*) > 0 FROM personalize.audience_members WHERE audience = 'buyers'),
	       (SELECT count(*) > 0 FROM personalize.audience_events),
	       personalize.in_audience($buyer, 'buyers'), personalize.in_audience($buyer, 'no_such_audience')});
is("$rc $out", '0 t|t|t|f', 'personalize_reader reads audience_members and audience_events and calls in_audience()')
  or diag($err);
($rc, $out, $err) = as('shop_reader', q{SELECT personalize.create_audience('reader_try', 'orders > 0')});
like($err, qr/permission denied/, 'personalize_reader cannot create_audience()');
($rc, $out, $err) = as('shop_reader', q{SELECT personalize.refresh_audience('buyers')});
like($err, qr/permission denied/, 'personalize_reader cannot refresh_audience()');
($rc, $out, $err) = as('shop_reader',
	qq{INSERT INTO personalize.audience_events (audience, profile_id, entered, at, why) VALUES ('buyers', $buyer, false, now(), 'event')});
like($err, qr/permission denied/, 'personalize_reader cannot write audience_events');
($rc, $out, $err) = as('shop_reader', q{DELETE FROM personalize.audience_memberships});
like($err, qr/permission denied/, 'personalize_reader cannot write audience_memberships');
($rc, $out, $err) = as('shop_nobody', q{SELECT count(*) FROM personalize.audience_members});
like($err, qr/permission denied/, 'a role without personalize_reader cannot read the memberships');
($rc, $out, $err) = as('shop_nobody', qq{SELECT personalize.in_audience($buyer, 'buyers')});
like($err, qr/permission denied/, 'nor learn them through in_audience()');
is(sql(q{SELECT count(*) FROM personalize.audiences WHERE name = 'reader_try'}), '0', 'no audience was made by the reader');
my $expected = sql(q{SELECT count(*) FROM personalize.profile_view WHERE lifetime_value > 1000});
($rc, $out, $err) = as('shop_admin', q{SELECT personalize.create_audience('admin_vips', 'lifetime_value > 1000')});
is("$rc $out", "0 $expected", 'a personalize_admin member creates an audience; it returns its members') or diag($err);
is(sql(q{SELECT owner::text FROM personalize.audiences WHERE name = 'admin_vips'}), 'shop_admin',
	'the admin owns it (its condition runs with the admin\'s rights)');
($rc, $out, $err) = as('shop_admin', q{SELECT personalize.refresh_audience('admin_vips')});
is("$rc $out", '0 0', 'the admin refreshes it: nothing to fix') or diag($err);
($rc, $out, $err) = as('shop_reader', qq{SELECT count(*) FROM personalize.audience_members WHERE audience = 'admin_vips'});
is("$rc $out", "0 $expected", 'the reader sees its members') or diag($err);

# --- 5. a merge in another session, then the worker ------------------------------
# A merge in another session puts a profile the worker wrote into an
# audience.  The worker, writing that profile again, must see the change: a
# writer that trusted what it wrote before would enter the profile a second
# time (a duplicate membership, an ERROR, the worker restarting).
my $restarts = sql(q{SELECT restarts FROM personalize.worker_status});
is(sql(q{SELECT personalize.create_audience('two_orders', 'orders >= 2')}),
	sql(q{SELECT count(*) FROM personalize.profile_view WHERE orders >= 2}), 'audience two_orders created');
sql(q{INSERT INTO shop.orders (order_id, customer_id, email, sku, category, amount, ordered_at) VALUES
        (990001, 990001, NULL, 'sku-c', 'cat-c', 10, now()),
        (990002, NULL, 'copy@example.com', 'sku-c', 'cat-c', 10, now())});
wait_applied('two one-order customers');
my ($one, $mail) = split /\|/, sql(q{SELECT personalize.resolve('customer_id', '990001') || '|' || personalize.resolve('email', 'copy@example.com')});
isnt($one, $mail, 'they are two profiles, written by the worker, in no audience two_orders');
sql(q{SELECT personalize.link('customer_id', '990001', 'email', 'copy@example.com')});
my $merged = sql(q{SELECT personalize.resolve('customer_id', '990001')});
is(sql(qq{SELECT personalize.in_audience($merged, 'two_orders')}), 't', 'a merge in a session put the merged profile in');
sql(q{INSERT INTO shop.orders (order_id, customer_id, email, sku, category, amount, ordered_at) VALUES
        (990003, 990001, NULL, 'sku-c', 'cat-c', 10, now())});
wait_applied('a third order of the merged profile');
is(sql(qq{SELECT string_agg(format('%s:%s', CASE WHEN entered THEN 'in' ELSE 'out' END, why), ',' ORDER BY id)
            FROM personalize.audience_events WHERE audience = 'two_orders' AND profile_id IN ($one, $mail)}),
	'in:merge', 'the worker saw the merge\'s entry: no second one, and no exit');
is(sql(qq{SELECT count(*) FROM personalize.audience_memberships m JOIN personalize.audiences a ON a.id = m.audience_id
           WHERE a.name = 'two_orders' AND m.profile_id = $merged}), '1', 'one membership');
is(sql(q{SELECT personalize.refresh_audience('two_orders')}), '0', 'refresh_audience finds nothing to fix');
is(sql(q{SELECT orders FROM personalize.profile_view WHERE profile_id = } . $merged), '3', 'the third order was applied once');
is(sql(q{SELECT restarts FROM personalize.worker_status}), $restarts, 'and the worker never failed meanwhile');

# the worker keeps what it wrote of memberships and moments in memory
# (src/audience_cache.c): what sessions change (a condition altered, a
# forget()) must be what the worker compares with at its next event
my $story = sub {
	my ($aud, $pid) = @_;
	return sql(qq{SELECT string_agg(format('%s:%s', CASE WHEN entered THEN 'in' ELSE 'out' END, why), ',' ORDER BY id)
	                FROM personalize.audience_events WHERE audience = '$aud' AND profile_id = $pid});
};
sql(q{SELECT personalize.alter_audience('two_orders', 'orders >= 100')});
is(sql(qq{SELECT personalize.in_audience($merged, 'two_orders')}), 'f',
	'a session alters the condition: the merged profile leaves');
sql(q{INSERT INTO shop.orders (order_id, customer_id, email, sku, category, amount, ordered_at) VALUES
        (990004, 990001, NULL, 'sku-c', 'cat-c', 10, now())});
wait_applied('an order after the session\'s exit');
is($story->('two_orders', $merged), 'in:merge,out:refresh', 'the worker saw the session\'s exit: no second one');
sql(q{SELECT personalize.alter_audience('two_orders', 'orders >= 2')});
is(sql(qq{SELECT personalize.in_audience($merged, 'two_orders')}), 't', 'altered back: it enters again');
sql(q{INSERT INTO shop.orders (order_id, customer_id, email, sku, category, amount, ordered_at) VALUES
        (990005, 990001, NULL, 'sku-c', 'cat-c', 10, now())});
wait_applied('an order after the session\'s entry');
is($story->('two_orders', $merged), 'in:merge,out:refresh,in:refresh', 'the worker saw the session\'s entry: no second one');
sql(qq{SELECT personalize.forget('customer_id', '990001')});
sql(q{INSERT INTO shop.orders (order_id, customer_id, email, sku, category, amount, ordered_at) VALUES
        (990006, 990001, NULL, 'sku-c', 'cat-c', 10, now()), (990007, 990001, NULL, 'sku-c', 'cat-c', 10, now())});
wait_applied('two orders after forget()');
my $again = sql(q{SELECT personalize.resolve('customer_id', '990001')});
is(sql(qq{SELECT personalize.in_audience($again, 'two_orders')}), 't', 'after forget(), two new orders: a member again');
# (the profile id may be the erased one's again: its story then starts with the erasure's exit)
is($story->('two_orders', $again), $again eq $merged ? 'out:erasure,in:event' : 'in:event',
	'entered by the worker once, after the erasure\'s exit');
is(sql(q{SELECT personalize.refresh_audience('two_orders')}), '0', 'refresh_audience finds nothing to fix');

# --- 6. retention -------------------------------------------------------------------
# events older than personalize.audience_events_retention go
my $events_before = sql(q{SELECT count(*) FROM personalize.audience_events});
ok($events_before > 0, "events before the retention is shortened: $events_before");
$node->safe_psql('postgres', q{ALTER SYSTEM SET personalize.audience_events_retention = '3s'});
$node->reload;
ok($node->poll_query_until('shop', q{
	SELECT count(*) = 0 FROM personalize.audience_events WHERE at < now() - interval '10 s'}),
	'events older than the retention are deleted by the worker');
$node->safe_psql('postgres', q{ALTER SYSTEM SET personalize.audience_events_retention = 0});
$node->reload;

$node->stop;
done_testing();
