-- HyperLogLog error stays within its documented bound: relative error at
-- most 3 standard errors, 3 * 1.04 / sqrt(2^p), over many cardinalities,
-- precisions and seeds.  The data are deterministic (md5 of seed and row),
-- so the test never flickers: a failure is a real regression.
BEGIN;
SET LOCAL search_path = personalize, public;
SELECT plan(3 * 6 * 3 + 3);

SELECT ok(abs(est - n) <= 3 * 1.04 / sqrt(2 ^ p) * n,
          format('p = %s, n = %s, seed %s: estimate %s within %s %%', p, n, seed, est,
                 round((3 * 1.04 / sqrt(2 ^ p) * 100)::numeric, 1)))
FROM (VALUES (8), (12), (14)) ps(p),
     (VALUES (10), (100), (1000), (10000), (50000), (200000)) ns(n),
     generate_series(1, 3) seed,
     LATERAL (SELECT distinct_count(distinct_agg(md5(seed || ':' || x), p)) est
              FROM generate_series(1, n) x) e
ORDER BY p, n, seed;

-- small sets (the linear-counting range): standard deviation of linear
-- counting sqrt(m (e^t - t - 1)), t = n / m; all within 4 of them (plus
-- rounding), and no more than 1 % beyond 3
CREATE TEMP TABLE small_sets AS
SELECT n, est, sqrt(4096 * (exp(n / 4096.0) - n / 4096.0 - 1)) sd
FROM generate_series(1, 300) n,
     LATERAL (SELECT distinct_count(distinct_agg(md5(n || '/' || x))) est FROM generate_series(1, n) x) e;
SELECT is(count(*) FILTER (WHERE abs(est - n) > 4 * sd + 1), 0::bigint,
          'sets of 1 to 300 values: every estimate within 4 standard deviations at p = 12')
FROM small_sets;
SELECT ok(count(*) FILTER (WHERE abs(est - n) > 3 * sd + 1) <= 3,
          'sets of 1 to 300 values: at most 1 % beyond 3 standard deviations')
FROM small_sets;
-- duplicates never add: the state is the same as for each value once
SELECT is(distinct_agg(x % 1000), (SELECT distinct_agg(y) FROM generate_series(0, 999) y),
          '100 000 rows of 1 000 values give the state of the 1 000 values')
FROM generate_series(1, 100000) x;

SELECT * FROM finish();
ROLLBACK;
