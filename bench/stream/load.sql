-- bench/stream/load.sql: the many-transaction load of the apply-rate
-- measurement in bench/stream/run.  staging holds the events of the
-- benchmark's CSV file (bench/stream/events.sql) numbered in file order;
--
--   CALL load_chunks(per_commit)
--
-- inserts all of them into orders, per_commit rows per transaction, as a
-- stream of small commits would.
CREATE UNLOGGED TABLE staging (
    i           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL,
    sku         text NOT NULL,
    category    text NOT NULL,
    amount      numeric(10, 2) NOT NULL,
    ordered_at  timestamptz NOT NULL
);

CREATE PROCEDURE load_chunks(per_commit integer)
LANGUAGE plpgsql AS $$
DECLARE
    n bigint := (SELECT max(i) FROM staging);
BEGIN
    FOR lo IN 0 .. coalesce(n, 0) - 1 BY per_commit LOOP
        INSERT INTO orders (customer_id, sku, category, amount, ordered_at)
        SELECT customer_id, sku, category, amount, ordered_at
          FROM staging WHERE i > lo AND i <= lo + per_commit ORDER BY i;
        COMMIT;
    END LOOP;
END $$;
