-- Versions (orders.Version): source_partition/source_offset/source_time is the
-- place of the stored version in the orders topic. source_time is the record's
-- timestamp in Unix milliseconds; it only orders versions of different partitions.
-- Rows written before it existed get 0. Adding a column with a constant default
-- rewrites nothing.
ALTER TABLE orders ADD COLUMN source_time bigint NOT NULL DEFAULT 0;

--bun:split
-- Tombstones: the version of the delete of each deleted order, so that an older
-- version of it arriving later (a replay, a redelivery) stays refused. A uid has
-- an order row, a tombstone or neither; when it has both (a tombstone left behind
-- by a newer re-creation of the order), the order is the newer. deleted_at is when
-- the tombstone was written; PurgeTombstones forgets those older than a cutoff.
CREATE TABLE order_tombstones (
    order_uid        text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    source_time      bigint      NOT NULL,
    deleted_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_tombstones_pkey PRIMARY KEY (order_uid),
    CONSTRAINT order_tombstones_order_uid_check CHECK (order_uid ~ '^[A-Za-z0-9_-]{1,64}$')
);

--bun:split
-- The purge: DELETE ... WHERE deleted_at < $cutoff.
CREATE INDEX order_tombstones_deleted_at_idx ON order_tombstones (deleted_at);
