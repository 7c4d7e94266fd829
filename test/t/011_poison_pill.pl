# No poison pill: writers insert a random mix of good events and every kind
# of bad one while the worker is SIGKILLed at random (each kill restarts the
# server's processes, so the writers reconnect and go on).  Afterwards:
#   - every good event is applied exactly once: the profiles equal a
#     rebuild() of the tables, which leaves out the same bad rows;
#   - every bad event is exactly one dead letter, of its kind (a value that
#     is not a number, once per numeric trait, the event applied without it);
#   - the worker was never stuck: it applied everything in the end.
# The bad kinds: no identifier, no time, an infinite time, an identifier
# and a value longer than personalize.max_value_bytes, an identifier whose
# normalizer raises an ERROR, a value that is not a number.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PzNode;
use Time::HiRes qw(usleep);

my $node = streaming_node('poison', <<'CONF');
personalize.worker_max_backoff = 2s
restart_after_crash = on
CONF

sub sql { return $node->safe_psql('shop', $_[0]); }

sql(q{
CREATE EXTENSION personalize;
SELECT personalize.create_namespace('email', 1, NULL, 'personalize.normalize_email(text)');
CREATE FUNCTION public.handle_norm(value text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    IF value LIKE 'boom%' THEN
        RAISE EXCEPTION 'handle % blows up', value;
    END IF;
    RETURN lower(value);
END $$;
SELECT personalize.create_namespace('handle', 0, NULL, 'public.handle_norm(text)');
CREATE TABLE public.ev (id serial, email text, handle text, ts timestamptz, kind text, amount text, note text);
SELECT personalize.register_source('public.ev', '{"email": "email", "handle": "handle"}', 'ts',
                                   event_type_column => 'kind');
SELECT personalize.add_trait('events', 'count');
SELECT personalize.add_trait('spent', 'sum', field => 'amount');
SELECT personalize.add_trait('spent_in', 'windowed_sum', field => 'amount');
SELECT personalize.add_trait('notes', 'recent', field => 'note', n => 5);
SELECT personalize.add_trait('buys', 'count', event_types => '{buy}');
});

# one INSERT per defect, each row with exactly one
srand(20261202);
my @kinds = qw(good good good good good good none notime infinite longid longvalue boom notnumber);
my %made;
sub row_sql
{
	my $k = $kinds[ int(rand(@kinds)) ];
	my $c = int(rand(40));
	my $kind = rand() < 0.5 ? 'buy' : 'view';
	# whole amounts: the windowed sum is a float8 sum, whose last bits
	# depend on the order of the additions (docs/trait-states.md)
	my $amount = int(rand(1000));
	my ($email, $handle, $ts, $am, $note) =
	  ("'c$c\@x.com'", "'h$c'", "now() - interval '" . int(rand(100)) . " min'", "'$amount'", "'note $c'");
	$email = 'NULL', $handle = 'NULL' if $k eq 'none';
	$ts = 'NULL' if $k eq 'notime';
	$ts = "'infinity'" if $k eq 'infinite';
	$email = "repeat('e', 3000)" if $k eq 'longid';
	$note = "repeat('n', 3000)" if $k eq 'longvalue';
	$handle = "'boom-$c'" if $k eq 'boom';
	$am = "'abc'" if $k eq 'notnumber';
	$made{$k}++;
	return "INSERT INTO public.ev (email, handle, ts, kind, amount, note) VALUES ($email, $handle, $ts, '$kind', $am, $note);\n";
}

my $rounds = 12;
my $kills = 0;
for my $round (1 .. $rounds)
{
	my $script = join('', map { row_sql() } 1 .. 60);
	# a writer whose connection a crash ends is run again from the start of
	# its script: rows it wrote twice are events twice, which the tables say
	my $done = 0;
	for my $try (1 .. 20)
	{
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start([ 'psql', '-X', '-q', '-d', $node->connstr('shop'), '-f', '-' ],
			'<', \$script, '>', \$out, '2>', \$err);
		if ($round % 3 == 0 && $try == 1)
		{
			usleep(int(rand(150_000)));
			my $pid = $node->safe_psql('shop', 'SELECT pid FROM personalize.worker_status');
			if ($pid =~ /^\d+$/)
			{
				kill 'KILL', $pid;
				$kills++;
			}
		}
		$h->finish;
		if ($err !~ /terminat|connection|server closed|recovery/i) { $done = 1; last; }
		note("round $round, try $try: $err");
		$node->poll_query_until('shop', 'SELECT true') or die 'the server did not come back';
	}
	die "round $round never finished" unless $done;
}
ok($kills >= 3, "the worker was SIGKILLed $kills times while the writers wrote");

# every good event applied once; the bad ones as dead letters
is(sql(q{SELECT personalize.wait_for_apply('120 s')}), 't', 'the worker was never stuck: it applied everything');
my %count = map { split /\|/ } split /\n/, sql(q{
SELECT 'none|' || count(*) FILTER (WHERE email IS NULL AND handle IS NULL) FROM public.ev
UNION ALL SELECT 'notime|' || count(*) FILTER (WHERE ts IS NULL) FROM public.ev
UNION ALL SELECT 'infinite|' || count(*) FILTER (WHERE ts = 'infinity') FROM public.ev
UNION ALL SELECT 'longid|' || count(*) FILTER (WHERE length(email) = 3000) FROM public.ev
UNION ALL SELECT 'longvalue|' || count(*) FILTER (WHERE length(note) = 3000) FROM public.ev
UNION ALL SELECT 'boom|' || count(*) FILTER (WHERE handle LIKE 'boom%') FROM public.ev
UNION ALL SELECT 'notnumber|' || count(*) FILTER (WHERE amount = 'abc') FROM public.ev});
my %letters = map { split /\|/ } split /\n/, sql(q{
SELECT 'none|' || coalesce(sum(events) FILTER (WHERE reason LIKE 'the event has no identifier%'), 0) FROM personalize.dead_letters
UNION ALL SELECT 'notime|' || coalesce(sum(events) FILTER (WHERE reason LIKE 'the event has no time%'), 0) FROM personalize.dead_letters
UNION ALL SELECT 'infinite|' || coalesce(sum(events) FILTER (WHERE reason = 'the event time is infinite'), 0) FROM personalize.dead_letters
UNION ALL SELECT 'longid|' || coalesce(sum(events) FILTER (WHERE reason LIKE 'an identifier is % bytes long%'), 0) FROM personalize.dead_letters
UNION ALL SELECT 'longvalue|' || coalesce(sum(events) FILTER (WHERE reason LIKE 'a value is % bytes long%'), 0) FROM personalize.dead_letters
UNION ALL SELECT 'boom|' || coalesce(sum(events) FILTER (WHERE reason LIKE 'resolving its identifiers failed:%blows up%'), 0) FROM personalize.dead_letters
UNION ALL SELECT 'notnumber|' || coalesce(sum(events) FILTER (WHERE applied AND reason LIKE 'value "abc" of trait%'), 0)::bigint / 2 FROM personalize.dead_letters});
for my $k (qw(none notime infinite longid longvalue boom notnumber))
{
	ok($count{$k} > 0, "the writers wrote bad events of kind $k ($count{$k})");
	is($letters{$k}, $count{$k}, "every bad event of kind $k is one dead letter");
}
is(sql(q{SELECT count(*) FROM personalize.dead_letters}),
	sql(q{SELECT count(*) FROM (SELECT DISTINCT reason, commit_lsn, event::text FROM personalize.dead_letters) d}),
	'no dead letter twice');

# stream equals rebuild: rebuild() leaves the same bad rows out and fails on none
sql(q{CREATE TABLE public.streamed AS SELECT id, states, first_seen, last_seen FROM personalize.profiles});
my $letters_before = sql(q{SELECT max(id) FROM personalize.dead_letters});
is(sql(q{SELECT personalize.rebuild() > 0}), 't', 'rebuild() reads the tables, bad rows and all, without failing');
is(sql(qq{SELECT sum(events) FROM personalize.dead_letters
          WHERE id > $letters_before AND reason LIKE 'rebuild() left out rows that are no events%'}),
	$count{notime} + $count{infinite} + $count{longid} + $count{longvalue},
	'rebuild() says which rows it left out, in dead letters, as the stream did');
is(sql(qq{SELECT sum(events) FROM personalize.dead_letters
          WHERE id > $letters_before AND reason LIKE 'the event has no identifier%'}),
	$count{none}, 'and which rows had no identifier');
is(sql(qq{SELECT sum(events) FROM personalize.dead_letters
          WHERE id > $letters_before AND reason LIKE 'resolving its identifiers failed:%blows up%'}),
	$count{boom}, 'and which rows an identifier of made its normalizer fail');
is(sql(q{
SELECT count(*) FROM personalize.profiles p FULL JOIN public.streamed s ON s.id = p.id
 WHERE p.id IS NULL OR s.id IS NULL OR NOT personalize.profile_eq(p.states, s.states)
    OR p.first_seen IS DISTINCT FROM s.first_seen OR p.last_seen IS DISTINCT FROM s.last_seen}),
	'0', 'every good event was applied exactly once: the streamed profiles equal the rebuild')
  or diag(sql(q{SELECT p.id, p.states::text, s.states::text FROM personalize.profiles p JOIN public.streamed s ON s.id = p.id
                 WHERE NOT personalize.profile_eq(p.states, s.states) LIMIT 2}));
is(sql(q{SELECT sum(events) FROM personalize.profile_view}),
	sql(q{SELECT count(*) FROM public.ev
	       WHERE ts IS NOT NULL AND ts <> 'infinity' AND (email IS NOT NULL OR handle IS NOT NULL)
	         AND coalesce(length(email), 0) < 3000 AND coalesce(length(note), 0) < 3000
	         AND coalesce(handle, '') NOT LIKE 'boom%'}),
	'the profiles count exactly the good events');

$node->stop;
done_testing();
