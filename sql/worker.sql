-- The worker's SQL surface where no worker streams the database (this test
-- server has no personalize.database): the status view is empty, the
-- control functions say why they cannot act, and the privileges hold.
-- The worker itself is tested by test/t/007_streaming.pl.
SET client_min_messages = warning;
SET search_path = personalize, public;
SELECT count(*) AS workers FROM worker_status WHERE database = current_database();
SELECT name, CASE WHEN name = 'personalize.database' THEN '(as configured)' ELSE setting END AS setting,
       unit, context FROM pg_settings
 WHERE name LIKE 'personalize.worker%' OR name IN ('personalize.database', 'personalize.apply_wait_timeout')
 ORDER BY name;
-- no worker for this database
SELECT wait_for_apply();
SELECT worker_stop();
SELECT worker_start();
SELECT worker_restart();
SELECT wait_for_apply('-1 second');
SELECT wait_for_apply('-178000000 years');
CALL await_apply();
CALL await_apply('-1 second');
SELECT await_apply();
-- rebuilds do not wait when nothing streams the database
SELECT _stream_wait('rebuild');
-- privileges: readers see the status, admins control, others neither
CREATE ROLE pz_worker_reader;
CREATE ROLE pz_worker_nobody;
GRANT personalize_reader TO pz_worker_reader;
GRANT USAGE ON SCHEMA personalize TO pz_worker_nobody;
SET ROLE pz_worker_reader;
SELECT count(*) AS workers FROM worker_status WHERE database = current_database();
SELECT count(*) AS dead_letters FROM dead_letters;
SELECT worker_stop();
SET ROLE pz_worker_nobody;
SELECT count(*) FROM worker_status;
SELECT count(*) FROM dead_letters;
RESET ROLE;
REVOKE USAGE ON SCHEMA personalize FROM pz_worker_nobody;
DROP ROLE pz_worker_reader, pz_worker_nobody;
