DROP TABLE idempotency_keys;
DROP TABLE parts;
DROP TABLE uploads;
