# Configuration fuzzing: a superuser writes odd values into every column of
# the configuration tables, one at a time (as a restore or a careless edit
# would), events are written, and every path that reads the configuration
# runs: the worker, resolve(), get_profile(), the profile view, rebuild().
# Each may refuse with an ERROR or make dead letters; none may crash the
# server or stop the stream for good: once the values are put back, the
# worker applies everything and the profiles equal a rebuild.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PzNode;

my $node = streaming_node('config_fuzz', <<'CONF');
personalize.worker_max_backoff = 1s
personalize.apply_wait_timeout = 5s
CONF

sub sql { return $node->safe_psql('shop', $_[0]); }

sql(q{
CREATE EXTENSION personalize;
CREATE ROLE someone;
SELECT personalize.create_namespace('email', 1, 5, 'personalize.normalize_email(text)', '{test@example.com}');
SELECT personalize.create_namespace('handle', 0);
CREATE TABLE public.ev (email text, handle text, ts timestamptz NOT NULL DEFAULT now(), kind text,
                        amount numeric, sku text, props jsonb);
SELECT personalize.register_source('public.ev', '{"email": "email", "handle": "handle"}', 'ts',
                                   event_type_column => 'kind', fields => '{"size": {"column": "props", "key": "size"}}');
SELECT personalize.add_trait('n', 'count');
SELECT personalize.add_trait('spent', 'sum', field => 'amount');
SELECT personalize.add_trait('skus', 'recent', field => 'sku', n => 5);
SELECT personalize.add_trait('affinity', 'top', field => 'sku', n => 3, half_life => '7 days');
SELECT personalize.add_trait('views', 'windowed_count', event_types => '{view}', windows => '{1 hour, 1 day}');
SELECT personalize.add_trait('seen', 'distinct', field => 'sku');
SELECT personalize.add_trait('visit', 'session', field => 'sku', item_field => 'size');
SELECT personalize.add_trait('first_sku', 'first', field => 'sku');
});

my $started = sql('SELECT pg_postmaster_start_time()');
my @fuzz = (
	[ 'namespaces', 'priority', "-2147483648", "2147483647" ],
	[ 'namespaces', 'max_per_profile', "0", "1", "NULL" ],
	[ 'namespaces', 'normalizer', "'pg_catalog.int4recv(internal)'", "'pg_catalog.pg_read_file(text)'",
		"'pg_catalog.now()'", "'personalize.rebuild()'", "'pg_catalog.upper(text)'" ],
	[ 'namespaces', 'blocked', "'{NULL}'", "'{\"\"}'", "NULL" ],
	[ 'namespaces', 'owner', "'someone'", "'pg_monitor'", "'4000000000'" ],
	[ 'namespaces', 'name', "'X'", "'other'" ],
	[ 'sources', 'event_time_column', "'missing'", "'email'", "'props'" ],
	[ 'sources', 'event_type_column', "'ts'", "'missing'", "'props'" ],
	[ 'sources', 'event_type', "repeat('x', 5000)" ],
	[ 'sources', 'owner', "'someone'", "'pg_monitor'", "'4000000000'" ],
	[ 'sources', 'relation', "'personalize.namespaces'", "'pg_catalog.pg_class'" ],
	[ 'source_identifiers', 'column_name', "'missing'", "'ts'", "'props'" ],
	[ 'source_identifiers', 'namespace_id', "999", "-1" ],
	[ 'source_fields', 'column_name', "'missing'", "'ts'", "'kind'" ],
	[ 'source_fields', 'json_key', "''", "NULL", "repeat('k', 5000)" ],
	[ 'traits', 'n', "0", "-1", "100000", "NULL" ],
	[ 'traits', 'half_life', "'-1 day'", "'0'", "'1000 years'", "NULL" ],
	[ 'traits', 'windows', "'{}'", "'{-1 hour}'", "'{100 years}'", "'{NULL}'" ],
	[ 'traits', 'gap', "'0'", "'-1 s'", "NULL" ],
	[ 'traits', 'hll_precision', "0", "3", "30", "NULL" ],
	[ 'traits', 'event_types', "'{}'", "'{NULL}'" ],
	[ 'traits', 'sources', "'{pg_class}'", "'{}'" ],
	[ 'traits', 'field', "'missing'", "'ts'", "NULL" ],
	[ 'traits', 'item_field', "'missing'", "'sku'" ],
	[ 'traits', 'kind', "'count'", "'session'", "'nonsense'" ],
);

my ($tries, $refused, $i) = (0, 0, 0);
for my $f (@fuzz)
{
	my ($table, $column, @values) = @$f;
	for my $v (@values)
	{
		$i++;
		# the whole table's old values, to put back afterwards
		my $saved = "public.saved_$i";
		sql("CREATE TABLE $saved AS SELECT * FROM personalize.$table");
		my ($ret, $out, $err) = $node->psql('shop', "UPDATE personalize.$table SET $column = $v");
		$tries++;
		$refused++ if $ret != 0;
		sql(qq{INSERT INTO public.ev (email, handle, kind, amount, sku, props)
		       VALUES ('fuzz$i\@x.com', 'h$i', 'view', $i, 'sku-$i', '{"size": "4$i"}'),
		              ('fuzz$i\@x.com', NULL, 'buy', 1, 'sku-x', NULL)});
		# every path that reads the configuration: each may refuse, none may crash
		for my $q ("SELECT personalize.wait_for_apply('3 s')",
			"SELECT personalize.resolve('email', 'fuzz$i\@x.com')",
			"SELECT personalize.get_profile('email', 'fuzz$i\@x.com')",
			'SELECT count(*) FROM personalize.profile_view',
			"SELECT personalize.identify('handle', 'new$i')",
			'SELECT personalize.rebuild()')
		{
			$node->psql('shop', $q);
		}
		# put the configuration back as it was (sources by id: deleting them
		# would cascade to their identifiers and fields)
		if ($table eq 'sources')
		{
			sql(qq{UPDATE personalize.sources t SET $column = s.$column FROM $saved s WHERE t.id = s.id;
			       DROP TABLE $saved;});
		}
		else
		{
			sql(qq{
ALTER TABLE personalize.$table DISABLE TRIGGER USER;
DELETE FROM personalize.$table;
INSERT INTO personalize.$table SELECT * FROM $saved;
ALTER TABLE personalize.$table ENABLE TRIGGER USER;
UPDATE personalize.sources SET relation = relation;
UPDATE personalize.namespaces SET id = id;
DROP TABLE $saved;});
		}
		is(sql('SELECT pg_postmaster_start_time()'), $started, "$table.$column = $v: the server did not crash");
	}
}
note("$tries odd values written, $refused refused by a constraint");

# the configuration is back: the stream catches up and equals a rebuild
sql(q{SELECT personalize.worker_restart()});
is(sql(q{SELECT personalize.wait_for_apply('120 s')}), 't', 'the worker applies everything once the configuration is back');
sql(q{INSERT INTO public.ev (email, kind, amount, sku) VALUES ('after@x.com', 'buy', 7, 'sku-after')});
is(sql(q{SELECT personalize.wait_for_apply('60 s')}), 't', 'and streams what comes after');
is(sql(q{SELECT n || ' ' || spent || ' ' || skus::text FROM personalize.profile_view
         WHERE profile_id = personalize.resolve('email', 'after@x.com')}),
	'1 7 {sku-after}', 'an event after the fuzzing reaches its profile');
is(sql(q{SELECT personalize.rebuild() > 0}), 't', 'rebuild() works');
is(sql('SELECT pg_postmaster_start_time()'), $started, 'the server never crashed');

$node->stop;
done_testing();
