# pg_dump / pg_restore round trip of sources, traits and profiles (0.3.0): the
# example shop (test/shop) is registered and built on one cluster, with a
# split identifier and refused links, dumped in custom format and restored
# into a fresh database on a second cluster.  The configuration, the
# profiles, the generated profile_view (columns, comments, rows) and
# get_profile() come back equal, and the restored configuration still works:
# rebuild() gives the same profiles, add_trait() extends the view, and the
# trait id sequence continues after the restored ids.  Audiences (0.7.0),
# their memberships, events and schedule come back too, refresh finds
# nothing to change, and new audiences and events take new ids.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $shop = $ENV{PZ_TEST_DIR} or die "PZ_TEST_DIR is not set (see test/run)\n";
$shop .= '/shop';

my $src = PostgreSQL::Test::Cluster->new('profiles_source');
$src->init;
$src->append_conf('postgresql.conf', "shared_preload_libraries = 'personalize'\n");
$src->start;
my $dst = PostgreSQL::Test::Cluster->new('profiles_target');
$dst->init;
$dst->append_conf('postgresql.conf', "shared_preload_libraries = 'personalize'\n");
$dst->start;

# psql -f FILE on the source, stopping at the first error
sub run_file
{
	my ($file) = @_;
	my ($stdout, $stderr);
	my $rc = $src->psql('postgres', undef,
		extra_params => [ '-f', $file, '-v', 'ON_ERROR_STOP=1' ],
		stdout => \$stdout, stderr => \$stderr);
	die "psql -f $file failed (rc $rc): $stderr\n" if $rc != 0;
}

# --- the source: the example shop, registered and built ----------------------
$src->safe_psql('postgres', 'CREATE EXTENSION personalize');
run_file("$shop/schema.sql");
run_file("$shop/generate.sql");
$src->safe_psql('postgres', 'SELECT shop.generate(20000)');
run_file("$shop/config.sql");

# split an anonymous id off a customer's profile, and rebuild both profiles
my $anon = $src->safe_psql('postgres', q{
	SELECT a.value FROM personalize.identities a
	  JOIN personalize.namespaces an ON an.id = a.namespace_id AND an.name = 'anonymous_id'
	 WHERE EXISTS (SELECT 1 FROM personalize.identities c JOIN personalize.namespaces cn ON cn.id = c.namespace_id
	                WHERE cn.name = 'customer_id' AND c.profile_id = a.profile_id)
	 ORDER BY a.value LIMIT 1});
isnt($anon, '', "source: anonymous id $anon shares a profile with a customer");
my $old_profile = $src->safe_psql('postgres', "SELECT personalize.resolve('anonymous_id', '$anon')");
my $new_profile = $src->safe_psql('postgres', "SELECT personalize.split('anonymous_id', '$anon')");
isnt($new_profile, $old_profile, 'source: split gives the anonymous id a profile of its own');
$src->safe_psql('postgres', "SELECT personalize.rebuild($new_profile), personalize.rebuild($old_profile)");
is($src->safe_psql('postgres', q{
	SELECT count(*) FROM personalize.merge_log WHERE action = 'split'}), '1', 'source: the split is logged');
ok($src->safe_psql('postgres', 'SELECT count(*) FROM personalize.refused_links') > 0,
	'source: the shared family email left refused links');

# a full rebuild, so that the restored rebuild() has the same starting point
my $rebuilt = $src->safe_psql('postgres', 'SELECT personalize.rebuild()');
ok($rebuilt > 0, "source: rebuild() built $rebuilt profiles");
is($src->safe_psql('postgres', 'SELECT count(*) FROM personalize.profiles WHERE rebuild_pending'), '0',
	'source: no profile is left pending a rebuild');

# two audiences, one of them scheduled (its members leave 1 000 days after their last event)
$src->safe_psql('postgres', q{
	SELECT personalize.create_audience('buyers', 'orders > 1');
	SELECT personalize.create_audience('seen', $$last_seen > now() - interval '1000 days'$$);});
ok($src->safe_psql('postgres', 'SELECT count(*) FROM personalize.audience_due') > 0,
	'source: the timed audience scheduled its moments');

# --- the digests compared on both sides ---------------------------------------
my %digest = (
	'sources' => q{SELECT md5(string_agg(concat_ws('|', id, relation::text, event_time_column, event_type_column,
	                                             event_type, registered_at), E'\n' ORDER BY id))
	               FROM personalize.sources},
	'source_identifiers' => q{SELECT md5(string_agg(s::text, E'\n' ORDER BY source_id, column_name))
	                          FROM personalize.source_identifiers s},
	'source_fields' => q{SELECT md5(string_agg(s::text, E'\n' ORDER BY source_id, field))
	                     FROM personalize.source_fields s},
	'traits' => q{SELECT md5(string_agg(t::text, E'\n' ORDER BY id)) FROM personalize.traits t},
	'identity graph' => q{SELECT md5(concat_ws(E'\n',
		(SELECT string_agg(n::text, ',' ORDER BY id) FROM personalize.namespaces n),
		(SELECT string_agg(i::text, ',' ORDER BY namespace_id, value) FROM personalize.identities i),
		(SELECT string_agg(m::text, ',' ORDER BY id) FROM personalize.merge_log m),
		(SELECT string_agg(r::text, ',' ORDER BY id) FROM personalize.refused_links r)))},
	'profiles' => q{SELECT md5(string_agg(concat_ws('|', id, key_namespace_id, key_value, states::text,
	                                              first_seen, last_seen, rebuild_pending), E'\n' ORDER BY id))
	                FROM personalize.profiles},
	'profile_view rows' => q{SELECT md5(string_agg(v::text, E'\n' ORDER BY profile_id)) FROM personalize.profile_view v},
	'profile_view columns and comments' => q{
		SELECT coalesce(obj_description('personalize.profile_view'::regclass, 'pg_class'), '<no comment>') || E'\n'
		       || string_agg(format('%s %s: %s', a.attname, format_type(a.atttypid, a.atttypmod),
		                            coalesce(col_description(a.attrelid, a.attnum), '<no comment>')), E'\n' ORDER BY a.attnum)
		  FROM pg_attribute a
		 WHERE a.attrelid = 'personalize.profile_view'::regclass AND a.attnum > 0 AND NOT a.attisdropped},
	'get_profile(customer_id, 1)' => q{SELECT personalize.get_profile('customer_id', '1')},
	'source relations' => q{SELECT string_agg(relation::text, ',' ORDER BY id) FROM personalize.sources},
	'audiences' => q{SELECT md5(string_agg(concat_ws('|', id, name, condition, owner, timed), E'\n' ORDER BY id))
	                 FROM personalize.audiences},
	'audience memberships' => q{SELECT md5(string_agg(m::text, E'\n' ORDER BY audience_id, profile_id))
	                            FROM personalize.audience_memberships m},
	'audience events' => q{SELECT md5(string_agg(e::text, E'\n' ORDER BY id)) FROM personalize.audience_events e},
	'audience schedule' => q{SELECT md5(string_agg(d::text, E'\n' ORDER BY profile_id)) FROM personalize.audience_due d},
);
my %expected = map { $_ => $src->safe_psql('postgres', $digest{$_}) } keys %digest;
is($expected{'source relations'},
	'shop.orders,shop.web_events,shop.email_events,shop.loyalty_events,shop.support_tickets',
	'source: five sources registered');
is($src->safe_psql('postgres', 'SELECT count(*) FROM personalize.traits'), '15', 'source: fifteen traits');
like($expected{'get_profile(customer_id, 1)'}, qr/"orders": [1-9]/, 'source: customer 1 has orders');
my $view_rows = $src->safe_psql('postgres', 'SELECT count(*) FROM personalize.profile_view');
is($view_rows, $src->safe_psql('postgres', 'SELECT count(*) FROM personalize.profiles'),
	"source: profile_view has a row per profile ($view_rows)");

# --- dump, restore -------------------------------------------------------------
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $file = "$tmp/profiles.dump";
command_ok([ 'pg_dump', '-Fc', '-f', $file, '-d', $src->connstr('postgres') ], 'pg_dump -Fc of the shop');
$dst->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok([ 'pg_restore', '--exit-on-error', '-d', $dst->connstr('restored'), $file ],
	'pg_restore into a fresh database on another cluster');

# --- restored equals source ----------------------------------------------------
for my $name (sort keys %digest)
{
	my ($got, $stderr);
	$dst->psql('restored', $digest{$name}, stdout => \$got, stderr => \$stderr);
	is($got, $expected{$name}, "restored: $name equal to the source");
	diag("restored: $name: $stderr") if $stderr;
}

# --- the restored configuration works -------------------------------------------
my ($count, $stderr);
$dst->psql('restored', 'SELECT personalize.rebuild()', stdout => \$count, stderr => \$stderr);
is($count, $rebuilt, 'restored: rebuild() builds as many profiles as on the source');
diag("restored: rebuild(): $stderr") if $stderr;
# What a rebuild must give back: exact for every kind but top, whose weights
# are floating-point sums that may differ in the last bits with the order in
# which a plan merges (README, "top"): those are compared within 1e-12.
my $profiles_rows = q{
	SELECT concat_ws('|', p.id, personalize.profile_remove(p.states, t.id)::text,
	                 personalize.top_values(personalize.profile_get(p.states, t.id, NULL::personalize.top_state)),
	                 p.first_seen, p.last_seen,
	                 array_to_string(personalize.top_weights(personalize.profile_get(p.states, t.id, NULL::personalize.top_state)), ' '))
	  FROM personalize.profiles p, personalize.traits t WHERE t.name = 'category_affinity' ORDER BY p.id};
sub same_profiles
{
	my ($left, $right) = @_;
	my @a = split /\n/, $left;
	my @b = split /\n/, $right;
	return "row counts differ" if @a != @b;
	for my $i (0 .. $#a)
	{
		my ($ka, $wa) = $a[$i] =~ /^(.*)\|([^|]*)$/;
		my ($kb, $wb) = $b[$i] =~ /^(.*)\|([^|]*)$/;
		return "profile row $i differs" if $ka ne $kb;
		my @x = split / /, $wa;
		my @y = split / /, $wb;
		return "profile row $i: top weights differ in number" if @x != @y;
		for my $j (0 .. $#x)
		{
			return "profile row $i: top weight $x[$j] vs $y[$j]"
			  if abs($x[$j] - $y[$j]) > 1e-12 * (abs($x[$j]) > abs($y[$j]) ? abs($x[$j]) : abs($y[$j]));
		}
	}
	return '';
}
is(same_profiles($dst->safe_psql('restored', $profiles_rows), $src->safe_psql('postgres', $profiles_rows)), '',
	'restored: profiles unchanged by rebuild() (top weights within 1e-12)');
is($dst->safe_psql('restored', $digest{'identity graph'}), $expected{'identity graph'},
	'restored: identity graph unchanged by rebuild() (the split stands)');

my $max_trait = $dst->safe_psql('restored', 'SELECT max(id) FROM personalize.traits');
my $new_trait;
$dst->psql('restored', q{SELECT personalize.add_trait('restored_trait', 'count', sources => '{shop.orders}')},
	stdout => \$new_trait, stderr => \$stderr);
like($new_trait, qr/^\d+$/, 'restored: add_trait() succeeds');
diag("restored: add_trait(): $stderr") if $stderr;
ok($new_trait =~ /^\d+$/ && $new_trait > $max_trait,
	"restored: the trait id sequence continues (new id $new_trait > restored ids up to $max_trait)");
is($dst->safe_psql('restored', q{
	SELECT format_type(atttypid, atttypmod) FROM pg_attribute
	 WHERE attrelid = 'personalize.profile_view'::regclass AND attname = 'restored_trait'}),
	'bigint', 'restored: profile_view has the new trait column');
is($dst->safe_psql('restored', q{
	SELECT (SELECT restored_trait FROM personalize.profile_view WHERE profile_id = personalize.resolve('customer_id', '1'))
	     = (SELECT orders FROM personalize.profile_view WHERE profile_id = personalize.resolve('customer_id', '1'))}),
	't', 'restored: the new trait is backfilled (equals orders for customer 1)');

# audiences: what was restored is what the profiles say; ids continue
is($dst->safe_psql('restored', q{
	SELECT personalize.refresh_audience('buyers') + personalize.refresh_audience('seen')}),
	'0', 'restored: refresh_audience finds nothing to change');
my $max_event = $dst->safe_psql('restored', 'SELECT max(id) FROM personalize.audience_events');
ok($dst->safe_psql('restored', q{SELECT personalize.create_audience('big', 'orders > 2')}) > 0,
	'restored: a new audience has members');
is($dst->safe_psql('restored', q{
	SELECT (SELECT id FROM personalize.audiences WHERE name = 'big') > (SELECT max(id) FROM personalize.audiences WHERE name <> 'big')
	   AND (SELECT min(id) FROM personalize.audience_events WHERE audience = 'big') > } . $max_event),
	't', 'restored: a new audience and its events take ids after the restored ones');

$src->stop;
$dst->stop;
done_testing();
