-- bench/identity/link.result.sql: the identity graph's partition, as
-- link_result(identifier, component): every identity's 'namespace:value'
-- with its profile id.
SET client_min_messages = warning;
DROP TABLE IF EXISTS link_result;

CREATE UNLOGGED TABLE link_result AS
SELECT n.name || ':' || i.value AS identifier, i.profile_id::text AS component
FROM personalize.identities AS i
JOIN personalize.namespaces AS n ON n.id = i.namespace_id;
