-- The namespace list each backend keeps across transactions follows every
-- change it was read from: namespace rows, and the normalizer functions
-- (replaced or dropped without touching a namespace row).
SET search_path = personalize, public;
\pset null '(null)'
CREATE FUNCTION public.nc_norm(text) RETURNS text IMMUTABLE LANGUAGE sql RETURN upper($1);
SELECT create_namespace('nc_code', normalizer => 'public.nc_norm(text)');
SELECT normalize_identifier('nc_code', 'abc') AS upper_first;
-- replaced in a transaction of its own: no namespace row changes
CREATE OR REPLACE FUNCTION public.nc_norm(text) RETURNS text IMMUTABLE LANGUAGE sql RETURN lower($1);
SELECT normalize_identifier('nc_code', 'ABC') AS lower_after_replace;
-- blocked in another transaction
SELECT block_value('nc_code', 'XYZ');
SELECT normalize_identifier('nc_code', 'xyz') AS blocked_is_null;
-- a change rolled back leaves the list as it was
BEGIN;
SELECT unblock_value('nc_code', 'xyz');
SELECT normalize_identifier('nc_code', 'xyz') AS unblocked_in_transaction;
ROLLBACK;
SELECT normalize_identifier('nc_code', 'xyz') AS blocked_again;
SELECT drop_namespace('nc_code');
SELECT normalize_identifier('nc_code', 'xyz');
DROP FUNCTION public.nc_norm(text);
