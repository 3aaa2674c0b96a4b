DROP TABLE IF EXISTS order_tombstones;
--bun:split
ALTER TABLE orders DROP COLUMN IF EXISTS source_time;
