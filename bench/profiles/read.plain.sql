-- bench/profiles/read.plain.sql (pgbench): the baseline of the point reads,
-- one row of plain_profiles (a table with profile_view's columns and a
-- primary key on profile_id), the id drawn as in read.view.sql.  -D count=N.
\set n random(1, :count)
SELECT p.* FROM plain_profiles p WHERE p.profile_id = (SELECT id FROM bench_ids WHERE n = :n);
