-- bench/profiles/read.view_joined.sql (pgbench): read.view.sql over
-- bench_view_joined, the profile view as 0.9.0 defined it (the key
-- namespace's name by a join of personalize.namespaces), run with
-- personalize.view_custom_scan = off: the point read of 0.9.0.  -D count=N.
\set n random(1, :count)
SELECT v.* FROM bench_view_joined v WHERE v.profile_id = (SELECT id FROM bench_ids WHERE n = :n);
