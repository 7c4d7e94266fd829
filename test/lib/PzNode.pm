# PzNode: a PostgreSQL::Test::Cluster node for the Perl TAP tests, whose
# personalize worker streams the database "shop": initialized with the
# settings streaming needs (and the caller's extra lines), started, the
# database made, and the worker's replication slot in place, so that the
# stream sees every event from there on.
package PzNode;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;

our @EXPORT = qw(streaming_node);

sub streaming_node
{
	my ($name, $extra_conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init;
	$node->append_conf('postgresql.conf', <<'CONF' . ($extra_conf // ''));
wal_level = logical
shared_preload_libraries = 'personalize'
personalize.database = 'shop'
personalize.worker_poll_interval = 5ms
max_replication_slots = 4
log_min_messages = warning
CONF
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE shop');
	$node->poll_query_until('shop',
		q{SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name LIKE 'personalize_%'})
	  or die "node $name: the worker made no slot";
	return $node;
}

1;
