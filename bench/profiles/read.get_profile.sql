-- bench/profiles/read.get_profile.sql (pgbench): one shopper's profile by
-- customer id, as an application would read it: resolve the identifier,
-- then the profile_view row as jsonb.  -D customers=N.
\set cid random(1, :customers)
SELECT personalize.get_profile('customer_id', CAST(:cid AS text));
