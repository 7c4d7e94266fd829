-- Smoke test: the extension is installed into its own schema.
-- test/run runs this with pg_prove in database "pgtap", where
-- CREATE EXTENSION pgtap; CREATE EXTENSION personalize; were already done.
BEGIN;
SELECT plan(3);

SELECT has_extension('personalize', 'extension personalize is installed');
SELECT has_schema('personalize', 'schema personalize exists');
SELECT is(
    (SELECT n.nspname::text
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
      WHERE e.extname = 'personalize'),
    'personalize',
    'extension personalize lives in schema personalize');

SELECT * FROM finish();
ROLLBACK;
