# Trust boundaries in the streaming worker (docs/security.md), which runs as
# the bootstrap superuser:
#   - a hostile personalize_admin's normalizer, run by the worker for every
#     event, runs with that admin's rights: it cannot make itself superuser;
#   - a configuration row broken by hand (a normalizer that would crash the
#     backend) turns its events into dead letters, and the other sources
#     stream on;
#   - a right revoked from a source's owner (a column grant, row-level
#     security) turns the events committed afterwards into dead letters that
#     hold none of the row's values; granted again, the stream goes on;
#   - a json document nested too deep to read is one dead letter;
#   - a role with no grants cannot stall the worker or a rebuild by holding
#     the advisory locks the extension used to take; a personalize_admin's
#     long transaction that holds the identity graph delays the stream
#     visibly (state 'waiting for a lock') and loses nothing;
#   - the server never restarts and the worker never dies meanwhile;
#   - an error that does stop the worker (here a superuser's constraint that
#     refuses every dead letter) makes it wait before each new try, longer
#     each time, and worker_status says what failed, when, how often and
#     when it tries again; once the cause is gone it goes on by itself;
#   - stream_sources with its owner column renamed by hand: its sources are
#     read by nobody (dead letters that say why), never by the table's owner.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PzNode;

my $node = streaming_node('trust');

sub sql { return $node->safe_psql('shop', $_[0]); }

# a statement run as a role, through SET ROLE in one session
sub as_role
{
	my ($role, $stmts) = @_;
	return $node->safe_psql('shop', "SET ROLE $role;\n$stmts");
}

sub applied
{
	is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', $_[0] // 'the worker applied everything');
}

sql(q{
CREATE EXTENSION personalize;
CREATE ROLE mallory;
GRANT personalize_admin TO mallory;
CREATE SCHEMA m AUTHORIZATION mallory;
CREATE SCHEMA s;
GRANT USAGE ON SCHEMA s TO mallory;
});
my $started = sql('SELECT pg_postmaster_start_time()');
my $worker_pid = sql('SELECT pid FROM personalize.worker_status');
ok($worker_pid > 0, 'the worker runs');

# --- 1. the escalation attempt, folded by the worker -------------------------
as_role('mallory', q{
CREATE TABLE m.seen (who name, outcome text);
CREATE FUNCTION m.escalate() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    EXECUTE 'ALTER ROLE mallory SUPERUSER';
    INSERT INTO m.seen VALUES (current_user, 'succeeded');
EXCEPTION WHEN others THEN
    INSERT INTO m.seen VALUES (current_user, SQLERRM);
END $$;
CREATE FUNCTION m.norm(value text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    PERFORM m.escalate();
    RETURN lower(value);
END $$;
SELECT personalize.create_namespace('handle', 0, NULL, 'm.norm(text)');
CREATE TABLE m.events (handle text, ts timestamptz NOT NULL DEFAULT now());
SELECT personalize.register_source('m.events', '{"handle": "handle"}', 'ts');
SELECT personalize.add_trait('events', 'count');
});
# only the worker normalizes these: nothing has resolved them yet
as_role('mallory', q{INSERT INTO m.events (handle) SELECT 'H' || g FROM generate_series(1, 5) g});
applied('the events of the hostile normalizer are applied');
is(sql(q{SELECT sum(events) FROM personalize.profile_view WHERE key_namespace = 'handle'}), '5',
	'every event reached its profile');
is(sql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f',
	'the worker ran the normalizer: its author is no superuser');
is(sql(q{SELECT count(*) FILTER (WHERE who = 'mallory' AND outcome LIKE 'must be superuser%') = count(*)
                AND count(*) >= 5
         FROM m.seen}),
	't', 'every call ran as its author and was refused');

# --- 2. a configuration row broken by hand -----------------------------------
sql(q{
SELECT personalize.create_namespace('email', 1, NULL, 'personalize.normalize_email(text)');
SELECT personalize.create_namespace('phone', 1, NULL, 'personalize.normalize_phone(text)');
CREATE TABLE s.orders (email text, ts timestamptz NOT NULL DEFAULT now(), price numeric, card text);
CREATE TABLE s.calls (phone text, ts timestamptz NOT NULL DEFAULT now());
SELECT personalize.register_source('s.orders', '{"email": "email"}', 'ts', fields => '{"amount": "price"}');
SELECT personalize.register_source('s.calls', '{"phone": "phone"}', 'ts');
SELECT personalize.add_trait('spent', 'sum', field => 'amount');
-- what a careless superuser could do: every use of phone would crash
UPDATE personalize.namespaces SET normalizer = 'pg_catalog.int4recv(internal)' WHERE name = 'phone';
});
sql(q{INSERT INTO s.calls (phone) VALUES ('+44 20 7946 0000'), ('+44 20 7946 0001')});
sql(q{INSERT INTO s.orders (email, price) VALUES ('a@x.com', 10), ('b@x.com', 20)});
applied('the stream goes on past the broken namespace');
is(sql(q{SELECT count(*) FROM personalize.dead_letters
         WHERE source = 's.calls'::regclass AND reason LIKE '%cannot normalize values%int4recv%'}),
	'2', 'each event of the broken namespace is one dead letter that says why');
is(sql(q{SELECT sum(spent) FROM personalize.profile_view WHERE key_namespace = 'email'}), '30',
	'the other source streamed on');

# --- 3. rights revoked from a source's owner -----------------------------------
sql(q{
CREATE TABLE s.tickets (email text, ts timestamptz NOT NULL DEFAULT now(), note text, secret text);
GRANT SELECT (email, ts, note) ON s.tickets TO mallory;
});
as_role('mallory', q{
SELECT personalize.register_source('s.tickets', '{"email": "email"}', 'ts', fields => '{"note": "note"}');
SELECT personalize.add_trait('last_note', 'last', field => 'note', sources => '{s.tickets}');
});
sql(q{INSERT INTO s.tickets VALUES ('c@x.com', now(), 'first note', 'secret 1')});
applied();
is(sql(q{SELECT last_note FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'c@x.com')}),
	'first note', 'a source its owner may read streams');

sql(q{REVOKE SELECT (note) ON s.tickets FROM mallory});
sql(q{INSERT INTO s.tickets VALUES ('c@x.com', now(), 'revoked note', 'secret 2')});
applied();
is(sql(q{SELECT last_note FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'c@x.com')}),
	'first note', 'after a column grant is revoked, the column no longer flows');
is(sql(q{SELECT count(*) || ' ' || bool_and(event IS NULL) FROM personalize.dead_letters
         WHERE source = 's.tickets'::regclass AND reason LIKE 'role mallory may not read column note%'}),
	'1 true', 'the event is one dead letter, without its values');
is(sql(q{SELECT count(*) FROM personalize.dead_letters
         WHERE event::text LIKE '%revoked note%' OR event::text LIKE '%secret%' OR reason LIKE '%secret%'}),
	'0', 'no hidden value reached a dead letter');

sql(q{GRANT SELECT (note) ON s.tickets TO mallory});
sql(q{INSERT INTO s.tickets VALUES ('c@x.com', now(), 'granted note', 'secret 3')});
applied();
is(sql(q{SELECT last_note FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'c@x.com')}),
	'granted note', 'granted again, the source streams on');

sql(q{
ALTER TABLE s.tickets ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes ON s.tickets USING (note <> 'hidden');
GRANT SELECT ON s.tickets TO mallory;
});
sql(q{INSERT INTO s.tickets VALUES ('c@x.com', now(), 'hidden', 'secret 4')});
applied();
is(sql(q{SELECT last_note FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'c@x.com')}),
	'granted note', 'a row hidden by row-level security does not reach the profile');
is(sql(q{SELECT count(*) FROM personalize.dead_letters
         WHERE source = 's.tickets'::regclass AND reason LIKE 'row-level security of table s.tickets applies to role mallory%'
           AND event IS NULL}),
	'1', 'the row is a dead letter that says why, without its values');

# --- 3a. a normalizer that raises "lock not available" is no lock wait -------
as_role('mallory', q{
CREATE FUNCTION m.lock_norm(value text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    IF value LIKE 'locked%' THEN
        RAISE EXCEPTION 'pretending to wait' USING ERRCODE = 'lock_not_available';
    END IF;
    RETURN lower(value);
END $$;
SELECT personalize.create_namespace('device', 0, NULL, 'm.lock_norm(text)');
CREATE TABLE m.devices (device text, ts timestamptz NOT NULL DEFAULT now());
SELECT personalize.register_source('m.devices', '{"device": "device"}', 'ts');
INSERT INTO m.devices (device) VALUES ('locked-1'), ('fine-1');
});
applied('a normalizer raising lock_not_available does not stall the stream');
is(sql(q{SELECT count(*) FROM personalize.dead_letters
         WHERE source = 'm.devices'::regclass AND reason LIKE 'resolving its identifiers failed: pretending to wait%'}),
	'1', 'its event is one dead letter');
ok(sql(q{SELECT personalize.resolve('device', 'fine-1')}) > 0, 'the other event is applied');

# --- 3b. a json document too deep to read is one dead letter, not a stop ------
sql(q{
CREATE TABLE s.clicks (email text, ts timestamptz NOT NULL DEFAULT now(), props json);
SELECT personalize.register_source('s.clicks', '{"email": "email"}', 'ts',
                                   fields => '{"size": {"column": "props", "key": "size"}}');
SELECT personalize.add_trait('last_size', 'last', field => 'size', sources => '{s.clicks}');
});
# as deep as json input takes: parsing it again inside decoding ran out of stack
sql(q{INSERT INTO s.clicks (email, props)
      VALUES ('deep@x.com', ('{"a": ' || repeat('[', 14000) || repeat(']', 14000) || ', "size": "44"}')::json)});
sql(q{INSERT INTO s.clicks (email, props) VALUES ('deep@x.com', '{"size": "42"}')});
applied('a json document nested too deep does not stop the stream');
is(sql(q{SELECT last_size FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'deep@x.com')}),
	'42', 'the next event applies');
is(sql(q{SELECT count(*) || ' ' || bool_and(event IS NULL) FROM personalize.dead_letters
         WHERE source = 's.clicks'::regclass AND reason LIKE 'a json value nests deeper than 1000 levels%'}),
	'1 true', 'the deep one is one dead letter, without its values');
is(sql(q{SELECT personalize.rebuild() > 0}), 't', 'rebuild() leaves it out too, and does not fail');

# --- 4. nobody outside the extension's roles can block the worker ------------
sql(q{CREATE ROLE nobody LOGIN});
my $holder = $node->background_psql('shop', on_error_stop => 1);
$holder->query_safe(q{SET ROLE nobody});
$holder->query_safe(q{SELECT pg_advisory_lock(1886610802, 1), pg_advisory_lock(1886610802, 2)});
sql(q{INSERT INTO s.orders (email, price) VALUES ('e@x.com', 5)});
applied('a role with no grants holding the old advisory locks does not stall the worker');
is(sql(q{SELECT personalize.rebuild() > 0}), 't', 'nor a rebuild');
$holder->quit;

# an admin's open transaction that changed the graph holds its lock
my $admin = $node->background_psql('shop', on_error_stop => 1);
$admin->query_safe(q{BEGIN});
$admin->query_safe(q{SELECT personalize.link('email', 'e@x.com', 'email', 'e2@x.com')});
sql(q{INSERT INTO s.orders (email, price) VALUES ('new@x.com', 5)});
$node->poll_query_until('shop',
	q{SELECT state = 'waiting for a lock' AND last_error LIKE 'waiting for a lock:%' FROM personalize.worker_status})
  or die 'the worker did not report its wait';
pass('a worker waiting for a lock says so in worker_status');
$admin->query_safe(q{COMMIT});
$admin->quit;
applied('once the lock is free, the worker applies what waited');
is(sql(q{SELECT spent FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'new@x.com')}),
	'5', 'the event that waited is applied, once');
is(sql(q{SELECT count(*) FROM personalize.dead_letters WHERE reason LIKE '%lock timeout%' OR reason LIKE '%waiting for a lock%'}), '0',
	'a wait for a lock is no dead letter');

# --- 4b. nothing restarted -----------------------------------------------------
is(sql('SELECT pg_postmaster_start_time()'), $started, 'the server never restarted');
is(sql('SELECT pid FROM personalize.worker_status'), $worker_pid, 'the worker never restarted');
is(sql(q{SELECT rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles WHERE rolname = 'mallory'}), 'f',
	'mallory gained no attribute');
is(sql(q{SELECT count(*) FROM pg_auth_members WHERE member = 'mallory'::regrole}), '1',
	'mallory gained no membership');

# --- 5. an error that stops the worker: it backs off ---------------------------
sql(q{ALTER TABLE personalize.dead_letters ADD CONSTRAINT no_letters CHECK (false) NOT VALID});
sql(q{INSERT INTO s.orders (email, price) VALUES (NULL, 1)});     # a dead letter it cannot write
sql(q{INSERT INTO s.orders (email, price) VALUES ('d@x.com', 40)});
$node->poll_query_until('shop', q{SELECT restarts >= 3 FROM personalize.worker_status})
  or die 'the worker did not fail';
is(sql(q{SELECT last_error LIKE '%violates check constraint "no_letters"%'
                AND last_error_at > now() - interval '1 minute' FROM personalize.worker_status}),
	't', 'worker_status keeps the last error and its time');
$node->poll_query_until('shop', q{SELECT state = 'waiting to retry' AND retry_at > now() FROM personalize.worker_status})
  or die 'the worker never waited to retry';
pass('a failed worker waits to retry, with the time of its next try');
my $log = slurp_file($node->logfile);
my @waits = $log =~ /failed \d+ times? in a row; trying again in (\d+) ms/g;
ok(@waits >= 3 && $waits[0] < $waits[1] && $waits[1] < $waits[2],
	"each failure in a row waits longer (@waits[0..2] ms)");
sql(q{ALTER TABLE personalize.dead_letters DROP CONSTRAINT no_letters});
applied('once the cause is gone, the worker goes on by itself');
is(sql(q{SELECT sum(spent) FROM personalize.profile_view WHERE key_namespace = 'email'}), '80',
	'the event committed meanwhile is applied, once');
is(sql(q{SELECT count(*) FROM personalize.dead_letters WHERE reason LIKE '%no identifier%'}), '1',
	'the bad event is one dead letter');
is(sql('SELECT pg_postmaster_start_time()'), $started, 'the server never restarted');

# --- 6. stream_sources changed by hand: nobody reads, not the table's owner ---------
# (Its 7-column shape is read as 0.4.0 and 0.5.0 made it, with each table's
# owner as its source's; any other shape must not take that way.)
sql(q{ALTER TABLE personalize.stream_sources RENAME COLUMN owner TO was_owner});
sql(q{INSERT INTO s.orders (email, price) VALUES ('renamed@x.com', 7)});
applied('the stream goes on while stream_sources has no owner column');
is(sql(q{SELECT count(*) FROM personalize.dead_letters
          WHERE reason LIKE '%stream_sources has no owner column%' AND source = 's.orders'::regclass}), '1',
	'its event is a dead letter that says why');
is(sql(q{SELECT personalize.resolve('email', 'renamed@x.com') IS NULL}), 't',
	'and reached no profile (not read as the table\'s owner)');
sql(q{ALTER TABLE personalize.stream_sources RENAME COLUMN was_owner TO owner});
sql(q{INSERT INTO s.orders (email, price) VALUES ('renamed@x.com', 9)});
applied('renamed back, the stream goes on');
is(sql(q{SELECT spent FROM personalize.profile_view WHERE profile_id = personalize.resolve('email', 'renamed@x.com')}),
	'9', 'the later event is applied, once');

$node->stop;
done_testing();
