-- The parts of an order live and die with it (ON DELETE CASCADE). Money is in
-- minor units (bigint), never floating point.
CREATE TABLE delivery (
    order_uid text NOT NULL,
    name      text NOT NULL,
    phone     text NOT NULL,
    zip       text NOT NULL DEFAULT '',
    city      text NOT NULL,
    address   text NOT NULL,
    region    text NOT NULL DEFAULT '',
    email     text NOT NULL DEFAULT '',
    CONSTRAINT delivery_pkey PRIMARY KEY (order_uid),
    CONSTRAINT delivery_order_uid_fkey FOREIGN KEY (order_uid) REFERENCES orders (order_uid) ON DELETE CASCADE
);

--bun:split
CREATE TABLE payment (
    order_uid     text   NOT NULL,
    transaction   text   NOT NULL,
    request_id    text   NOT NULL DEFAULT '',
    currency      text   NOT NULL,
    provider      text   NOT NULL,
    amount        bigint NOT NULL,
    payment_dt    bigint NOT NULL,
    bank          text   NOT NULL DEFAULT '',
    delivery_cost bigint NOT NULL,
    goods_total   bigint NOT NULL,
    custom_fee    bigint NOT NULL,
    CONSTRAINT payment_pkey PRIMARY KEY (order_uid),
    CONSTRAINT payment_order_uid_fkey FOREIGN KEY (order_uid) REFERENCES orders (order_uid) ON DELETE CASCADE,
    CONSTRAINT payment_money_check CHECK (amount >= 0 AND delivery_cost >= 0 AND goods_total >= 0 AND custom_fee >= 0)
);

--bun:split
-- Items keep their order in the JSON array as position (0-based). The primary key
-- (order_uid, position) is also the index for "all items of these orders".
CREATE TABLE items (
    order_uid    text    NOT NULL,
    position     integer NOT NULL,
    chrt_id      bigint  NOT NULL,
    track_number text    NOT NULL DEFAULT '',
    price        bigint  NOT NULL,
    rid          text    NOT NULL DEFAULT '',
    name         text    NOT NULL DEFAULT '',
    sale         bigint  NOT NULL,
    size         text    NOT NULL DEFAULT '',
    total_price  bigint  NOT NULL,
    nm_id        bigint  NOT NULL,
    brand        text    NOT NULL DEFAULT '',
    status       bigint  NOT NULL,
    CONSTRAINT items_pkey PRIMARY KEY (order_uid, position),
    CONSTRAINT items_order_uid_fkey FOREIGN KEY (order_uid) REFERENCES orders (order_uid) ON DELETE CASCADE,
    CONSTRAINT items_money_check CHECK (price >= 0 AND total_price >= 0 AND sale BETWEEN 0 AND 100)
);
