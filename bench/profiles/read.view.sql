-- bench/profiles/read.view.sql (pgbench): one row of personalize.profile_view
-- by profile id, the id drawn from bench_ids (n -> profile id).  -D count=N.
\set n random(1, :count)
SELECT v.* FROM personalize.profile_view v WHERE v.profile_id = (SELECT id FROM bench_ids WHERE n = :n);
