-- The change feed between instances: one row per batch transaction, written in
-- that transaction, listing every uid the batch touched with the version the
-- database holds for it after the batch (deleted: a tombstone). Each instance
-- polls it (woken by NOTIFY order_changes) and drops the cache entries older than
-- those versions. txid is the writing transaction's id: readers read the rows of
-- transactions at or past the oldest one still running when they last read, so a
-- row whose transaction commits late is never skipped (see ordersdb.Feed).
-- Rows are purged after the feed's retention.
CREATE TABLE order_changes (
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    txid       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    created_at timestamptz NOT NULL DEFAULT now(),
    uids       text[]      NOT NULL,
    partitions integer[]   NOT NULL,
    offsets    bigint[]    NOT NULL,
    times      bigint[]    NOT NULL,
    deleted    boolean[]   NOT NULL,
    CONSTRAINT order_changes_pkey PRIMARY KEY (id)
);

--bun:split
CREATE INDEX order_changes_txid_idx ON order_changes (txid);

--bun:split
CREATE INDEX order_changes_created_at_idx ON order_changes (created_at);
