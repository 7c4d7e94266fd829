-- bench/identity/link.reset.sql: an empty identity graph again (the
-- namespaces stay), so that every timed run of link.sql starts from the
-- same state.  TRUNCATE fires the tables' triggers, which tell every
-- backend's identity cache to start over.
SET client_min_messages = warning;
TRUNCATE personalize.identities, personalize.profiles, personalize.merge_log, personalize.refused_links;
