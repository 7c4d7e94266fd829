# The worker's first rebuild, which must happen once when its slot starts
# after sources were registered, is durable:
#   - while it fails, the worker tries it again after each wait, never
#     streams past it, says so in worker_status, and wait_for_apply() does
#     not return true; once the cause is gone it succeeds, and every event,
#     those committed meanwhile included, is in the profiles exactly once;
#   - a lost slot (dropped while the worker was off) is made again, and the
#     rebuild with it: rows written while there was no slot are not lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('first_rebuild');
$node->init;
$node->append_conf('postgresql.conf', <<'CONF');
wal_level = logical
shared_preload_libraries = 'personalize'
personalize.worker_poll_interval = 5ms
personalize.worker_max_backoff = 2s
max_replication_slots = 4
log_min_messages = warning
CONF
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');

sub sql { return $node->safe_psql('shop', $_[0]); }

sub stream_equals_rebuild
{
	my ($what) = @_;
	sql(q{
DROP TABLE IF EXISTS public.streamed;
CREATE TABLE public.streamed AS SELECT id, states FROM personalize.profiles;
SELECT personalize.rebuild();
});
	is(sql(q{SELECT count(*) FROM personalize.profiles p FULL JOIN public.streamed s ON s.id = p.id
	          WHERE p.id IS NULL OR s.id IS NULL OR NOT personalize.profile_eq(p.states, s.states)}),
		'0', $what);
}

# configured while no worker runs: no slot yet
sql(q{
CREATE EXTENSION personalize;
SELECT personalize.create_namespace('email', 0, NULL, 'personalize.normalize_email(text)');
CREATE TABLE public.orders (email text, ts timestamptz NOT NULL DEFAULT now(), amount numeric);
INSERT INTO public.orders (email, amount) SELECT 'c' || g % 7 || '@x.com', g FROM generate_series(1, 50) g;
SELECT personalize.register_source('public.orders', '{"email": "email"}', 'ts', fields => '{"amount": "amount"}');
SELECT personalize.add_trait('orders', 'count');
SELECT personalize.add_trait('spent', 'sum', field => 'amount');
-- rows written before the slot exists, and a rebuild that will fail
INSERT INTO public.orders (email, amount) SELECT 'c' || g % 7 || '@x.com', g FROM generate_series(51, 80) g;
ALTER TABLE personalize.profiles ADD CONSTRAINT no_rebuild CHECK (false) NOT VALID;
});

$node->append_conf('postgresql.conf', "personalize.database = 'shop'\n");
$node->restart;
$node->poll_query_until('shop', q{SELECT restarts >= 2 FROM personalize.worker_status})
  or die 'the first rebuild did not fail';
like(sql(q{SELECT last_error FROM personalize.worker_status}),
	qr/the worker's first rebuild failed \(profiles are incomplete until it succeeds\): .*no_rebuild/,
	'worker_status says the first rebuild failed and why');
sql(q{INSERT INTO public.orders (email, amount) SELECT 'c' || g % 7 || '@x.com', g FROM generate_series(81, 90) g});
is(sql(q{SELECT personalize.wait_for_apply('1 s')}), 'f', 'wait_for_apply() does not say true meanwhile');
ok(sql(q{SELECT restarts FROM personalize.worker_status}) >= 2, 'the worker tried again, after each wait');

sql(q{ALTER TABLE personalize.profiles DROP CONSTRAINT no_rebuild});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'once the cause is gone, the rebuild succeeds');
sql(q{INSERT INTO public.orders (email, amount) SELECT 'c' || g % 7 || '@x.com', g FROM generate_series(91, 100) g});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'and the worker streams');
is(sql(q{SELECT sum(orders) || ' ' || sum(spent) FROM personalize.profile_view}), '100 5050',
	'every event is in the profiles exactly once');
stream_equals_rebuild('the profiles equal a rebuild');

# a slot lost while the worker was off
$node->append_conf('postgresql.conf', "personalize.database = ''\n");
$node->restart;
sql(q{SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'personalize_%'});
sql(q{INSERT INTO public.orders (email, amount) SELECT 'c' || g % 7 || '@x.com', g FROM generate_series(101, 120) g});
$node->append_conf('postgresql.conf', "personalize.database = 'shop'\n");
$node->restart;
$node->poll_query_until('shop',
	q{SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name LIKE 'personalize_%'})
  or die 'no new slot';
sql(q{INSERT INTO public.orders (email, amount) SELECT 'c' || g % 7 || '@x.com', g FROM generate_series(121, 130) g});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'the worker makes a new slot and streams');
is(sql(q{SELECT sum(orders) || ' ' || sum(spent) FROM personalize.profile_view}), '130 8515',
	'rows written while there was no slot are in the profiles, every event once');
stream_equals_rebuild('the profiles equal a rebuild after the slot was lost');

$node->stop;
done_testing();
