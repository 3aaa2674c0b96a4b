DROP TABLE IF EXISTS items;
--bun:split
DROP TABLE IF EXISTS payment;
--bun:split
DROP TABLE IF EXISTS delivery;
