-- Orders: one row per order_uid. seq orders the newest-first listing: it is taken
-- from an identity sequence when the row is first inserted and never updated.
-- source_partition/source_offset is the Kafka position of the stored version
-- (-1/-1 for versions written through the API); it guards against replays.
CREATE TABLE orders (
    order_uid          text        NOT NULL,
    track_number       text        NOT NULL,
    entry              text        NOT NULL,
    locale             text        NOT NULL DEFAULT '',
    internal_signature text        NOT NULL DEFAULT '',
    customer_id        text        NOT NULL,
    delivery_service   text        NOT NULL DEFAULT '',
    shardkey           text        NOT NULL DEFAULT '',
    sm_id              bigint      NOT NULL DEFAULT 0,
    date_created       timestamptz NOT NULL,
    oof_shard          text        NOT NULL DEFAULT '',
    seq                bigint      NOT NULL GENERATED ALWAYS AS IDENTITY,
    source_partition   integer     NOT NULL,
    source_offset      bigint      NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_pkey PRIMARY KEY (order_uid),
    CONSTRAINT orders_order_uid_check CHECK (order_uid ~ '^[A-Za-z0-9_-]{1,64}$'),
    CONSTRAINT orders_sm_id_check CHECK (sm_id >= 0)
);

--bun:split
-- Keyset pagination: WHERE seq < $cursor ORDER BY seq DESC LIMIT n.
CREATE UNIQUE INDEX orders_seq_key ON orders (seq);
