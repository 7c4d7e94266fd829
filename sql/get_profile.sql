-- get_profile(profile_id) and get_profile(namespace, value) (src/profile_read.c):
-- the profile_view row as jsonb, read without the executor, must equal
-- to_jsonb() of the view's row; its trait columns are cached per backend
-- and reloaded when traits change; NULLs, errors and privileges as a query
-- of the view and resolve() give them.  Runs in a database of its own, with
-- the example shop of test/shop/.  Prints counts and booleans only.
\set regress_db :DBNAME
CREATE DATABASE pz_get_profile;
\c pz_get_profile
SET client_min_messages = warning;
CREATE EXTENSION personalize;
SET search_path = personalize, public;
SET TimeZone = 'UTC';
\pset null '(null)'

-- ===== before any source or trait there is no view =========================
SELECT get_profile(1);
SELECT create_namespace('customer_id', priority => 100, max_per_profile => 1);
SELECT get_profile('customer_id', '1');
SELECT get_profile(NULL::bigint) IS NULL AS null_id_is_null;
SELECT drop_namespace('customer_id');

-- ===== the example shop, events up to now (windowed columns are not 0) =====
\set ECHO none
\o /dev/null
\i test/shop/schema.sql
\i test/shop/generate.sql
SELECT shop.generate(5000, 60, 3, now());
\i test/shop/config.sql
\o
\set ECHO all
SELECT count(*) > 100 AS profiles, count(*) FILTER (WHERE orders_in_30d > 0) > 0 AS windowed_not_zero
  FROM profile_view;

-- every profile by id: the view's row as to_jsonb renders it, as jsonb, as
-- text, and key by key through the jsonb's own look-up (its keys are sorted)
CREATE FUNCTION pg_temp.differences() RETURNS TABLE (profiles bigint, differ bigint, differ_as_text bigint, keys_differ bigint)
LANGUAGE sql AS $$
SELECT count(*),
       count(*) FILTER (WHERE personalize.get_profile(v.profile_id) - 'audiences' IS DISTINCT FROM to_jsonb(v)),
       count(*) FILTER (WHERE (personalize.get_profile(v.profile_id) - 'audiences')::text IS DISTINCT FROM to_jsonb(v)::text),
       count(*) FILTER (WHERE EXISTS (SELECT FROM jsonb_each(to_jsonb(v)) e
                                       WHERE personalize.get_profile(v.profile_id) -> e.key IS DISTINCT FROM e.value)
                           OR (SELECT count(*) FROM jsonb_object_keys(personalize.get_profile(v.profile_id) - 'audiences'))
                              <> (SELECT count(*) FROM jsonb_object_keys(to_jsonb(v))))
  FROM personalize.profile_view v
$$;
SELECT profiles > 100 AS profiles, differ, differ_as_text, keys_differ FROM pg_temp.differences();

-- every customer by identifier, through resolve(): the same as the view's row
SELECT count(*) AS customers,
       count(*) FILTER (WHERE get_profile('customer_id', c::text) IS NOT NULL) > 50 AS found,
       count(*) FILTER (WHERE get_profile('customer_id', c::text) - 'audiences' IS DISTINCT FROM
                        (SELECT to_jsonb(v) FROM profile_view v WHERE v.profile_id = resolve('customer_id', c::text))) AS differ,
       count(*) FILTER (WHERE get_profile('customer_id', c::text) IS DISTINCT FROM
                        get_profile(resolve('customer_id', c::text))) AS differ_from_by_id
  FROM generate_series(1, 60) c;
-- the value is normalized as resolve() normalizes it
SELECT get_profile('email', ' C5@Example.COM ') = get_profile('email', 'c5@example.com') AS normalized,
       get_profile('email', 'c5@example.com') = get_profile(resolve('email', 'c5@example.com')) AS same_as_by_id;
-- the key namespace is the namespace's name
SELECT get_profile('customer_id', '5') ->> 'key_namespace' AS key_namespace,
       get_profile('customer_id', '5') ->> 'key_value' AS key_value;

-- ===== NULLs, unknowns and errors ===========================================
SELECT get_profile('customer_id', '999999') IS NULL AS unknown_identifier_is_null,
       get_profile(42) IS NULL AS unknown_profile_is_null,
       get_profile(NULL::bigint) IS NULL AS null_id_is_null;
-- blocked values resolve to nothing
SELECT resolve('email', 'TEST@example.com') IS NULL AS blocked_resolves_null,
       get_profile('email', 'TEST@example.com') IS NULL AS blocked_is_null;
SELECT get_profile(NULL, '1');
SELECT get_profile('customer_id', NULL);
SELECT get_profile('nope', '1');
SELECT get_profile('email', '   ');
-- resolve() itself is unchanged
SELECT resolve(NULL, '1');
SELECT resolve('nope', '1');

-- ===== traits change: the next call in the session sees the new view =======
SELECT get_profile('customer_id', '5') ? 'spend_in_7d' AS has_spend_before;
SELECT add_trait('spend_in', 'windowed_sum', field => 'amount', sources => '{shop.orders}') > 0 AS added;
SELECT get_profile('customer_id', '5') ? 'spend_in_7d' AS has_spend_after,
       jsonb_typeof(get_profile('customer_id', '5') -> 'spend_in_30d') AS spend_type;
SELECT profiles > 100 AS profiles, differ, differ_as_text, keys_differ FROM pg_temp.differences();
-- double precision renders as to_jsonb renders it, whatever extra_float_digits
SET extra_float_digits = 0;
SELECT profiles > 100 AS profiles, differ, differ_as_text, keys_differ FROM pg_temp.differences();
RESET extra_float_digits;
SELECT alter_trait('orders_in', windows => '{1 hour, 2 days, 90 days}');
SELECT get_profile('customer_id', '5') ? 'orders_in_2d' AS has_2d,
       get_profile('customer_id', '5') ? 'orders_in_7d' AS has_7d;
SELECT profiles > 100 AS profiles, differ, differ_as_text, keys_differ FROM pg_temp.differences();
SELECT drop_trait('last_size');
SELECT get_profile('customer_id', '5') ? 'last_size' AS has_last_size,
       get_profile('customer_id', '5') ? 'last_size_at' AS has_last_size_at;
SELECT profiles > 100 AS profiles, differ, differ_as_text, keys_differ FROM pg_temp.differences();
-- a change rolled back: the view of before it, and the columns with it
BEGIN;
SELECT add_trait('orders_total', 'count', sources => '{shop.orders}') > 0 AS added;
SELECT get_profile('customer_id', '5') ? 'orders_total' AS has_new_in_transaction;
SELECT profiles > 100 AS profiles, differ, differ_as_text, keys_differ FROM pg_temp.differences();
ROLLBACK;
SELECT get_profile('customer_id', '5') ? 'orders_total' AS has_new_after_rollback;
SELECT profiles > 100 AS profiles, differ, differ_as_text, keys_differ FROM pg_temp.differences();

-- ===== privileges: SELECT on profile_view, as a query of it =================
SELECT resolve('customer_id', '5') AS pid \gset
CREATE ROLE pz_gp_nobody;
CREATE ROLE pz_gp_reader;
CREATE ROLE pz_gp_view_only;
GRANT personalize_reader TO pz_gp_reader;
GRANT USAGE ON SCHEMA personalize TO pz_gp_view_only;
SET ROLE pz_gp_nobody;
SELECT get_profile(:pid);
SELECT get_profile('customer_id', '5');
SET ROLE pz_gp_reader;
SELECT get_profile(:pid) = get_profile('customer_id', '5') AS reader_reads,
       get_profile(:pid) ->> 'key_value' AS key_value;
RESET ROLE;
-- with SELECT on the view alone, by id, also when the columns are loaded
-- for it (a trait change drops the view and its grants: grant again)
SELECT add_trait('orders_total', 'count', sources => '{shop.orders}') > 0 AS added;
GRANT SELECT ON profile_view TO pz_gp_view_only;
SET ROLE pz_gp_view_only;
SELECT get_profile(:pid) ->> 'key_value' AS view_only_reads,
       (get_profile(:pid) ->> 'orders_total')::bigint > 0 AS has_orders,
       get_profile(:pid) ? 'audiences' AS told_audiences;
SELECT get_profile('customer_id', '5');
RESET ROLE;
SELECT profiles > 100 AS profiles, differ, differ_as_text, keys_differ FROM pg_temp.differences();

-- ===== audiences: the names of the profile's, sorted; [] when none ==========
SELECT create_audience('zz_customers', 'orders_total > 0') > 0 AS some_customers,
       create_audience('aa_big', 'orders_total > 2') >= 0 AS created;
SELECT count(*) AS profiles,
       count(*) FILTER (WHERE get_profile(v.profile_id) -> 'audiences' IS DISTINCT FROM
                        coalesce((SELECT jsonb_agg(m.audience ORDER BY m.audience) FROM audience_members m
                                   WHERE m.profile_id = v.profile_id), '[]')) AS differ,
       count(*) FILTER (WHERE jsonb_array_length(get_profile(v.profile_id) -> 'audiences') = 2) > 0 AS some_in_both
  FROM profile_view v;
SELECT get_profile(:pid) -> 'audiences' AS audiences_of_customer_5;
SELECT profiles > 100 AS profiles, differ, differ_as_text, keys_differ FROM pg_temp.differences();

\c :regress_db
DROP DATABASE pz_get_profile;
DROP ROLE pz_gp_nobody, pz_gp_reader, pz_gp_view_only;
