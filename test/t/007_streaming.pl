# The streaming worker keeps every profile equal to a batch rebuild, exactly
# once, whatever happens while events stream in:
#   - concurrent writers of single-row transactions over the example shop,
#     with a bulk load among them;
#   - a source registered, and traits added, while its rows are written;
#   - the worker terminated, the worker killed, the postmaster killed
#     (SIGKILL) at random points, and started again;
#   - an anonymous visitor who logs in while the stream runs;
#   - bad events, which become dead letters while the worker goes on;
#   - the slot keeps the WAL of what is not applied, and no more;
#   - batches cut by the batch size and by the memory limit, a transaction
#     spilled by decoding past the worker's decoding memory;
#   - profile rows moved by VACUUM FULL, a user's UPDATE and a rebuild;
#   - await_apply() waits without holding a snapshot.
# "Equal to a rebuild": after wait_for_apply(), the streamed profiles are
# copied aside, personalize.rebuild() recomputes every profile from the
# source tables, and the two must match trait by trait (top weights within
# 1e-12 relative, as sums of decayed weights round with event order).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $shop = $ENV{PZ_TEST_DIR} or die "PZ_TEST_DIR is not set (see test/run)\n";
$shop .= '/shop';

my $node = PostgreSQL::Test::Cluster->new('streaming');
$node->init;
$node->append_conf('postgresql.conf', <<'CONF');
wal_level = logical
shared_preload_libraries = 'personalize'
personalize.database = 'shop'
personalize.worker_poll_interval = 5ms
max_replication_slots = 4
restart_after_crash = on
log_min_messages = warning
CONF
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');

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

# the worker connects as soon as the database exists and makes its slot
# before anything is registered, so the stream sees every event
$node->poll_query_until('shop', q{SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name LIKE 'personalize_%'})
	or die 'the worker made no slot';
sql('CREATE EXTENSION personalize');
run_file("$shop/schema.sql");
run_file("$shop/generate.sql");
run_file("$shop/traffic.sql");
run_file("$shop/config.sql");

# profile comparison: exact but for the weights of top states
sql(q{
CREATE FUNCTION public.same(a personalize.profile, b personalize.profile) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t integer;
    ra personalize.profile := a;
    rb personalize.profile := b;
    ok boolean;
BEGIN
    IF a IS NULL OR b IS NULL THEN
        RETURN a IS NULL AND b IS NULL;
    END IF;
    FOR t IN SELECT id FROM personalize.traits WHERE kind = 'top' LOOP
        SELECT coalesce(bool_and(x.v IS NOT NULL AND y.v IS NOT NULL
                                 AND abs(x.w - y.w) <= 1e-12 * greatest(abs(x.w), abs(y.w))), true) INTO ok
          FROM unnest(personalize.top_values(personalize.profile_get(a, t, NULL::personalize.top_state)),
                      personalize.top_weights(personalize.profile_get(a, t, NULL::personalize.top_state))) x(v, w)
          FULL JOIN unnest(personalize.top_values(personalize.profile_get(b, t, NULL::personalize.top_state)),
                           personalize.top_weights(personalize.profile_get(b, t, NULL::personalize.top_state))) y(v, w)
            ON x.v = y.v;
        IF NOT ok THEN
            RETURN false;
        END IF;
        ra := personalize.profile_remove(ra, t);
        rb := personalize.profile_remove(rb, t);
    END LOOP;
    RETURN personalize.profile_eq(ra, rb);
END $$});

sub wait_applied
{
	my ($what) = @_;
	is(sql(q{SELECT personalize.wait_for_apply('120 s')}), 't', "$what: the worker applied every commit");
}

# the streamed profiles against a rebuild from the tables
sub check_equal_to_rebuild
{
	my ($what) = @_;
	wait_applied($what);
	sql(q{DROP TABLE IF EXISTS streamed;
	      CREATE TABLE streamed AS SELECT id, states, first_seen, last_seen FROM personalize.profiles});
	my $n = sql('SELECT count(*) FROM streamed WHERE cardinality(personalize.profile_traits(states)) > 0');
	ok($n > 0, "$what: $n profiles streamed");
	sql('SELECT personalize.rebuild()');
	my $bad = is(sql(q{
		SELECT count(*) FROM personalize.profiles p FULL JOIN streamed s USING (id)
		 WHERE p.id IS NULL OR s.id IS NULL OR NOT same(p.states, s.states)
		    OR p.first_seen IS DISTINCT FROM s.first_seen OR p.last_seen IS DISTINCT FROM s.last_seen}),
		'0', "$what: every streamed profile equals its rebuild");
	diag(sql(q{
		SELECT string_agg(format(E'profile %s (%s %s):\n  streamed %s %s %s\n  rebuilt  %s %s %s', id, p.key_namespace_id,
		                         p.key_value, s.first_seen, s.last_seen, s.states, p.first_seen, p.last_seen, p.states), E'\n')
		  FROM (SELECT * FROM personalize.profiles p FULL JOIN streamed s USING (id)
		         WHERE p.id IS NULL OR s.id IS NULL OR NOT same(p.states, s.states)
		            OR p.first_seen IS DISTINCT FROM s.first_seen OR p.last_seen IS DISTINCT FROM s.last_seen LIMIT 3) x
		  LEFT JOIN personalize.profiles p USING (id) LEFT JOIN streamed s USING (id)})) unless $bad;
}

# a machine crash: the postmaster and every process of the server SIGKILLed
# at once (a lone postmaster's children would run on)
sub crash
{
	my $pid = $node->{_pid};
	my @children = split /\s+/, `pgrep -P $pid`;
	kill 'KILL', $pid, grep { /^\d+$/ } @children;
	$node->{_pid} = undef;
	usleep(100_000) while kill 0, $pid, grep { /^\d+$/ } @children;
}

# writers: psql processes calling shop.traffic, one row per transaction
my @writers;
sub start_writer
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('shop'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	push @writers, $h;
	return $h;
}
sub finish_writers
{
	for my $h (@writers)
	{
		$h->finish;
	}
	@writers = ();
}

# a probe: commits an event of a new visitor, then reads until its identity
# is there (at most 5 s each); it reads the worker's rows while they are being
# written, as applications do
sql(q{
CREATE PROCEDURE public.probe(n integer, prefix text) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    anon integer := (SELECT id FROM personalize.namespaces WHERE name = 'anonymous_id');
BEGIN
    FOR i IN 1 .. n LOOP
        INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES (prefix || i, 'page_view', now());
        COMMIT;
        t0 := clock_timestamp();
        WHILE NOT EXISTS (SELECT 1 FROM personalize.identities WHERE namespace_id = anon AND value = prefix || i)
              AND clock_timestamp() - t0 < interval '5 s' LOOP
            PERFORM pg_sleep(0.0002);
        END LOOP;
    END LOOP;
END $$});

# --- 1. concurrent writers and readers, and a bulk load among them ------------
start_writer("CALL shop.traffic(1500, $_, 150, 1)") for 1 .. 3;
start_writer('SELECT shop.generate(20000, 300, 5)');
start_writer(q{CALL probe(300, 'probe-')});
finish_writers();
wait_applied('probes');
is(sql(q{SELECT count(*) FROM shop.web_events w WHERE anonymous_id LIKE 'probe-%'
            AND NOT EXISTS (SELECT 1 FROM personalize.identities i WHERE i.value = w.anonymous_id)}), '0',
	'every probe read while the worker wrote is there: no row of the worker is taken for aborted');
check_equal_to_rebuild('concurrent writers');
my $st = sql(q{SELECT state IN ('idle', 'streaming'), events_applied > 20000, transactions > 4000, merges > 0, dead_letters > 0,
                      last_error IS NULL FROM personalize.worker_status});
is($st, 't|t|t|t|t|t', 'status: idle, events, transactions, merges and dead letters counted, no error');
# (the stream's dead letters carry their commit; rebuild() tells of the same rows again)
is(sql(q{SELECT count(*) FROM personalize.dead_letters WHERE reason LIKE 'the event has no identifier%'
            AND commit_lsn IS NOT NULL}),
	sql(q{SELECT count(*) FROM shop.support_tickets WHERE email IS NULL AND phone IS NULL}),
	'support tickets without email and phone are dead letters, one each');

# --- 2. a source registered and traits added while rows are written -----------
sql(q{CREATE TABLE shop.reviews (id bigint GENERATED ALWAYS AS IDENTITY, customer_id bigint,
                                 rating integer, ts timestamptz NOT NULL DEFAULT clock_timestamp())});
my $review_writer = q{DO $$ BEGIN FOR i IN 1 .. 3000 LOOP
	INSERT INTO shop.reviews (customer_id, rating) VALUES (1 + i % 97, 1 + i % 5); COMMIT; END LOOP; END $$};
start_writer($review_writer);
start_writer('CALL shop.traffic(1500, 11, 150, 1)');
usleep(300_000);
sql(q{SELECT personalize.register_source('shop.reviews', identifiers => '{"customer_id": "customer_id"}',
                                         event_time => 'ts', event_type => 'review')});
usleep(200_000);
sql(q{SELECT personalize.add_trait('reviews', 'count', sources => '{shop.reviews}')});
sql(q{SELECT personalize.add_trait('rating_sum', 'sum', field => 'rating', sources => '{shop.reviews}')});
usleep(200_000);
sql(q{SELECT personalize.alter_trait('orders_in', windows => '{1 hour, 7 days}')});
finish_writers();
wait_applied('registration while writing');
is(sql(q{SELECT sum(personalize.metric_count(personalize.profile_get(states, t.id, NULL::personalize.metric_state)))
           FROM personalize.profiles, personalize.traits t WHERE t.name = 'reviews'}),
	sql('SELECT count(*) FROM shop.reviews'),
	'every review counted exactly once across registration and trait creation');
check_equal_to_rebuild('source registered and traits added while writing');

# --- 3. an anonymous visitor logs in while the stream runs ---------------------
sql(q{INSERT INTO shop.web_events (anonymous_id, event_type, sku, category, ts)
      VALUES ('anon-login', 'product_view', 'sku-login-1', 'bikes', now() - interval '1 minute'),
             ('anon-login', 'product_view', 'sku-login-2', 'bikes', now())});
wait_applied('anonymous views');
my $anon = sql(q{SELECT personalize.resolve('anonymous_id', 'anon-login')});
ok($anon > 0, 'the anonymous visitor has a profile of its own');
is(sql(qq{SELECT last_viewed FROM personalize.profile_view WHERE profile_id = $anon}),
	'{sku-login-2,sku-login-1}', 'its views are in it');
sql(q{INSERT INTO shop.web_events (anonymous_id, customer_id, event_type, ts)
      VALUES ('anon-login', 424242, 'login', now())});
wait_applied('login');
my $known = sql(q{SELECT personalize.resolve('customer_id', '424242')});
is(sql(q{SELECT personalize.resolve('anonymous_id', 'anon-login')}), $known,
	'after login the cookie resolves to the customer');
is(sql(qq{SELECT count(*) FROM personalize.profiles WHERE id = $anon AND id <> $known}), '0',
	'the anonymous profile was merged away');
is(sql(q{SELECT personalize.get_profile('customer_id', '424242') ->> 'last_viewed'}),
	'["sku-login-2", "sku-login-1"]', 'the customer profile has the views made before login');

# --- 4. bad events become dead letters; the worker goes on ---------------------
sql(q{CREATE TABLE shop.app_events (user_id text, ts timestamptz, amount text, note text)});
sql(q{SELECT personalize.register_source('shop.app_events', identifiers => '{"user_id": "customer_id"}',
                                         event_time => 'ts', event_type => 'app')});
sql(q{SELECT personalize.add_trait('app_amount', 'sum', field => 'amount', sources => '{shop.app_events}')});
sql(q{SELECT personalize.add_trait('app_note', 'last', field => 'note', sources => '{shop.app_events}')});
sql(q{DELETE FROM personalize.dead_letters});
sql(q{INSERT INTO shop.app_events VALUES
      ('u1', now(), '10', 'fine'),
      (NULL, now(), '1', 'no identifier'),
      ('u1', NULL, '1', 'no time'),
      ('u1', now(), 'abc', 'not a number'),
      ('u1', 'infinity', '1', 'infinite time'),
      ('u1', now(), '1', repeat('x', 5000))});
wait_applied('bad events');
is(sql(q{SELECT string_agg(format('%s/%s', applied, split_part(reason, ' ', 1) || ' ' || split_part(reason, ' ', 2)), ', ' ORDER BY id)
           FROM personalize.dead_letters}),
	'f/the event, f/the event, t/value "abc", f/the event, f/a value',
	'dead letters: no identifier, no time, not a number (applied without it), infinite time, too long');
is(sql(q{SELECT event ->> 'source' FROM personalize.dead_letters WHERE reason LIKE 'value%'}),
	sql(q{SELECT id FROM personalize.sources WHERE relation = 'shop.app_events'::regclass}),
	'a dead letter keeps the event');
is(sql(q{SELECT personalize.get_profile('customer_id', 'u1') ->> 'app_amount'}), '10',
	'the good event and the one without a number are applied: the sum skips "abc"');
sql(q{ALTER TABLE shop.app_events DROP COLUMN note});
sql(q{INSERT INTO shop.app_events VALUES ('u1', now(), '5')});
sql(q{INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES ('after-drop', 'page_view', now())});
wait_applied('dropped column');
like(sql(q{SELECT reason FROM personalize.dead_letters ORDER BY id DESC LIMIT 1}),
	qr/column note of app_events.*missing/, 'an event of a source whose mapped column was dropped is a dead letter');
ok(sql(q{SELECT personalize.resolve('anonymous_id', 'after-drop')}) > 0,
	'the worker goes on with the other sources');
is(sql(q{SELECT last_error IS NULL AND state IN ('idle', 'streaming') FROM personalize.worker_status}), 't',
	'no error stopped the worker');
sql(q{SELECT personalize.drop_trait('app_note'), personalize.drop_trait('app_amount')});
sql(q{SELECT personalize.unregister_source('shop.app_events')});
# what its events contributed (first and last seen) goes with a rebuild
sql(q{SELECT personalize.rebuild()});

# --- 5. the worker terminated and restarted while writing ---------------------
my $pid = sql('SELECT pid FROM personalize.worker_status');
start_writer("CALL shop.traffic(2000, $_, 150, 1)") for 21 .. 22;
usleep(500_000);
is(sql('SELECT personalize.worker_restart()'), 't', 'worker_restart() signals the worker');
$node->poll_query_until('shop',
	"SELECT pid IS NOT NULL AND pid <> $pid FROM personalize.worker_status") or die;
pass('the worker is back with a new pid');
usleep(300_000);
my $pid2 = sql('SELECT pid FROM personalize.worker_status');
kill 'KILL', $pid2;    # a crash of the worker: the postmaster restarts every backend
finish_writers();
$node->poll_query_until('shop', 'SELECT pid IS NOT NULL FROM personalize.worker_status') or die;
check_equal_to_rebuild('worker terminated, then killed, while writing');

# --- 6. the postmaster SIGKILLed at random points while streaming -------------
for my $round (1 .. 3)
{
	start_writer("CALL shop.traffic(100000, $round$_, 150, 1)") for 1 .. 2;
	usleep(300_000 + int(rand(1_500_000)));
	crash();
	finish_writers();
	$node->start;
	check_equal_to_rebuild("postmaster SIGKILLed during streaming, round $round");
}

# --- 7. WAL retention: the slot keeps exactly what is not applied --------------
wait_applied('before pausing');
is(sql('SELECT personalize.worker_stop()'), 't', 'worker_stop() pauses the worker');
$node->poll_query_until('shop', q{SELECT state = 'paused' FROM personalize.worker_status}) or die;
sql(q{INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES ('while-paused', 'page_view', now())});
my $lsn = sql('SELECT pg_current_wal_lsn()');
is(sql(qq{SELECT confirmed_flush_lsn < '$lsn' FROM pg_replication_slots WHERE slot_name LIKE 'personalize_%'}), 't',
	'while paused the slot keeps the WAL of the unapplied event');
is(sql(q{SELECT personalize.wait_for_apply('300 ms')}), 'f', 'wait_for_apply() times out while paused');
my ($rc, $out, $err) = $node->psql('shop', 'SELECT personalize.rebuild()');
like($err, qr/worker is stopped/, 'rebuild() refuses while the worker is stopped');
is(sql(q{SELECT personalize.resolve('anonymous_id', 'while-paused') IS NULL}), 't', 'the event is not applied yet');
is(sql('SELECT personalize.worker_start()'), 't', 'worker_start() resumes');
wait_applied('after resuming');
ok(sql(q{SELECT personalize.resolve('anonymous_id', 'while-paused')}) > 0, 'the event is applied after resuming');
is(sql(qq{SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name LIKE 'personalize_%'}), 't',
	'once applied, the slot lets the WAL go');
is(sql(q{SELECT lag_bytes FROM personalize.worker_status}), '0', 'no lag once everything is applied');

# --- 8. updates, deletes and truncates are counted, not applied ----------------
my $before = sql(q{SELECT updates_ignored || '/' || deletes_ignored || '/' || truncates_ignored FROM personalize.worker_status});
my ($u0, $d0, $t0) = split m{/}, $before;
my $orders = sql(q{SELECT personalize.get_profile('customer_id', '7') ->> 'orders'});
sql(q{UPDATE shop.orders SET amount = amount + 1 WHERE customer_id = 7});
my $n_upd = sql(q{SELECT count(*) FROM shop.orders WHERE customer_id = 7});
sql(q{DELETE FROM shop.email_events WHERE email = 'c7@example.com'});
sql(q{CREATE TABLE shop.scratch (uid text, ts timestamptz)});
sql(q{SELECT personalize.register_source('shop.scratch', identifiers => '{"uid": "anonymous_id"}', event_time => 'ts')});
sql(q{TRUNCATE shop.scratch});
wait_applied('updates, deletes, truncate');
is(sql(q{SELECT updates_ignored - } . $u0 . q{ || '/' || truncates_ignored - } . $t0 . q{ FROM personalize.worker_status}),
	"$n_upd/1", 'each updated row and the truncate are counted');
ok(sql(qq{SELECT deletes_ignored > $d0 FROM personalize.worker_status}), 'deleted rows are counted');
is(sql(q{SELECT personalize.get_profile('customer_id', '7') ->> 'orders'}),
	$orders, 'the profile is unchanged by them');
my $ltv = sql(q{SELECT personalize.get_profile('customer_id', '7') ->> 'lifetime_value'});
sql('SELECT personalize.rebuild()');
is(sql(q{SELECT (personalize.get_profile('customer_id', '7') ->> 'lifetime_value')::numeric - } . $ltv), "$n_upd.00",
	'rebuild() makes the profiles follow the updates');

# --- 9. batches are bounded by personalize.worker_batch_size -------------------
$node->append_conf('postgresql.conf', "personalize.worker_batch_size = 50\n");
$node->reload;
sql('SELECT personalize.worker_stop()');
$node->poll_query_until('shop', q{SELECT state = 'paused' FROM personalize.worker_status}) or die;
my $batches = sql('SELECT batches FROM personalize.worker_status');
sql(q{CALL shop.traffic(1000, 99, 150, 1)});
my $upd = sql(q{SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'personalize.profiles'::regclass});
sql('SELECT personalize.worker_start()');
wait_applied('small batches');
# only the worker updated profiles meanwhile: it reports its table statistics,
# so that autovacuum sees the profiles' updates
ok($node->poll_query_until("shop", qq{SELECT n_tup_upd > $upd FROM pg_stat_user_tables
                                      WHERE relid = 'personalize.profiles'::regclass}),
	"the worker's profile updates reach the table statistics");
ok(sql(qq{SELECT batches - $batches >= 20 FROM personalize.worker_status}),
	'1000 single-row transactions applied in batches of at most about 50 events');
check_equal_to_rebuild('small batches');

# --- 10. batches are bounded by personalize.worker_memory_limit ----------------
# 3000 events of 3000 shoppers, each event its own commit, and room for the
# deltas of a few hundred: the worker applies at a commit once its deltas
# fill the limit, long before the (now large) batch size
$node->append_conf('postgresql.conf',
	"personalize.worker_batch_size = 1000000\npersonalize.worker_memory_limit = '1MB'\n");
$node->reload;
sql('SELECT personalize.worker_stop()');
$node->poll_query_until('shop', q{SELECT state = 'paused' FROM personalize.worker_status}) or die;
my ($events0, $batches0) = split /\|/, sql('SELECT events_applied, batches FROM personalize.worker_status');
my $dead0 = sql('SELECT coalesce(max(id), 0) FROM personalize.dead_letters');
sql(q{CALL shop.traffic(3000, 100, 3000, 1)});
sql('SELECT personalize.worker_start()');
wait_applied('memory limit');
my ($events1, $batches1) = split /\|/, sql('SELECT events_applied, batches FROM personalize.worker_status');
# (a support ticket without email and phone has no identifier: a dead letter)
is($events1 - $events0 + sql(qq{SELECT coalesce(sum(events), 0) FROM personalize.dead_letters
                                WHERE id > $dead0 AND NOT applied}),
	3000, 'memory limit: every event applied or a dead letter');
ok($batches1 - $batches0 >= 3,
	'memory limit: a backlog of 3000 events of 3000 shoppers is applied in several batches ('
	  . ($batches1 - $batches0) . ')');
# a transaction larger than personalize.worker_decoding_memory (the worker's
# logical_decoding_work_mem) is spilled to disk by decoding, read back and
# applied like any other
$node->append_conf('postgresql.conf', "personalize.worker_decoding_memory = '64kB'\n");
$node->reload;
my $spilled0 = sql(q{SELECT coalesce(sum(spill_txns), 0) FROM pg_stat_replication_slots WHERE slot_name LIKE 'personalize_%'});
sql(q{CALL shop.traffic(3000, 105, 300, 3000)});
wait_applied('a transaction larger than the decoding memory');
ok($node->poll_query_until('shop', qq{SELECT sum(spill_txns) > $spilled0 FROM pg_stat_replication_slots
                                      WHERE slot_name LIKE 'personalize_%'}),
	'worker_decoding_memory: a larger transaction was spilled to disk by the worker\'s decoding');
check_equal_to_rebuild('memory limit');
$node->append_conf('postgresql.conf',
	"personalize.worker_batch_size = 100000\npersonalize.worker_memory_limit = '256MB'\n"
	  . "personalize.worker_decoding_memory = '256MB'\n");
$node->reload;

# --- 11. profile rows moved by others ----------------------------------------------
# The worker writes a profile where it last wrote it, if the row is still
# there: rows moved by VACUUM FULL, updated by a user or rewritten by a
# rebuild must be found again through the primary key, never missed or
# written twice.
my $log_offset = -s $node->logfile;
sql(q{CALL shop.traffic(600, 101, 150, 1)});
wait_applied('before the rows move');
sql('VACUUM FULL personalize.profiles');
sql(q{CALL shop.traffic(600, 102, 150, 1)});
wait_applied('after VACUUM FULL');
sql(q{UPDATE personalize.profiles SET rebuild_pending = rebuild_pending WHERE id % 2 = 0});
sql(q{CALL shop.traffic(600, 103, 150, 1)});
wait_applied('after an UPDATE of the rows');
sql('SELECT personalize.rebuild()');
sql(q{CALL shop.traffic(600, 104, 150, 1)});
wait_applied('after a rebuild');
ok(!$node->log_contains('applying a batch failed', $log_offset),
	'rows moved by others: no batch failed');
check_equal_to_rebuild('rows moved by others');

# --- 12. a wait that holds no snapshot -----------------------------------------
# wait_for_apply() waits inside its statement's snapshot, whose xmin keeps
# VACUUM and pruning from removing what dies meanwhile (the worker's own
# updates among it); CALL await_apply() holds no snapshot while it waits.
sub start_waiter
{
	my ($name, @sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('shop') . " application_name=$name",
		  map { ('-c', $_) } @sql ],
		'>', \$out, '2>', \$err);
	$node->poll_query_until('shop',
		qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = '$name' AND wait_event_type = 'Extension'})
	  or die "$name does not wait: $err";
	return ($h, \$out, \$err);
}
wait_applied('before the waits');
is(sql('SELECT personalize.worker_stop()'), 't', 'worker paused for the waits');
$node->poll_query_until('shop', q{SELECT state = 'paused' FROM personalize.worker_status}) or die;
sql(q{INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES ('await-1', 'page_view', now())});
my ($call, $call_out, $call_err) = start_waiter('pz_await_call', q{CALL personalize.await_apply('120 s')},
	q{SELECT personalize.resolve('anonymous_id', 'await-1') IS NOT NULL});
my ($func, $func_out, $func_err) = start_waiter('pz_await_function', q{SELECT personalize.wait_for_apply('120 s')});
is(sql(q{SELECT backend_xmin IS NULL FROM pg_stat_activity WHERE application_name = 'pz_await_call'}), 't',
	'await_apply() holds no xmin while it waits');
is(sql(q{SELECT backend_xmin IS NOT NULL FROM pg_stat_activity WHERE application_name = 'pz_await_function'}), 't',
	'wait_for_apply() waits inside its snapshot');
is(sql(q{SELECT personalize.resolve('anonymous_id', 'await-1') IS NULL}), 't', 'the event waits for the worker');
is(sql('SELECT personalize.worker_start()'), 't', 'worker resumed');
$call->finish;
is($$call_out, "t\n", 'await_apply() returns once the event committed before it is applied, and the next statement sees it')
  or diag($$call_err);
$func->finish;
is($$func_out, "t\n", 'wait_for_apply() returns true then');
# the misuses and the timeout are errors that say why
sql('SELECT personalize.worker_stop()');
$node->poll_query_until('shop', q{SELECT state = 'paused' FROM personalize.worker_status}) or die;
sql(q{INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES ('await-2', 'page_view', now())});
($rc, $out, $err) = $node->psql('shop', q{CALL personalize.await_apply('200 ms')});
like($err, qr/has not applied what was committed before the call within 200 ms/,
	'await_apply() raises an ERROR on timeout');
($rc, $out, $err) = $node->psql('shop',
	q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1; CALL personalize.await_apply('1 s');});
like($err, qr/must be called without a snapshot of its own/, 'await_apply() refuses a REPEATABLE READ transaction');
($rc, $out, $err) = $node->psql('shop', q{BEGIN; INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES ('await-x', 'page_view', now());
	  CALL personalize.await_apply('1 s');});
like($err, qr/this transaction has written and not committed/, 'await_apply() refuses a transaction that wrote');
sql('SELECT personalize.worker_start()');
# inside a DO block that goes on, commits, and waits again
is(sql(q{
DO $$
BEGIN
    CALL personalize.await_apply('120 s');
    PERFORM set_config('pz.seen', (personalize.resolve('anonymous_id', 'await-2') IS NOT NULL)::text, false);
    INSERT INTO shop.web_events (anonymous_id, event_type, ts) VALUES ('await-3', 'page_view', now());
    COMMIT;
    CALL personalize.await_apply('120 s');
    IF personalize.resolve('anonymous_id', 'await-3') IS NULL THEN
        RAISE EXCEPTION 'await-3 not applied';
    END IF;
END $$;
SELECT current_setting('pz.seen')}), 'true', 'await_apply() in a DO block that commits and waits again');

$node->stop;
done_testing();
