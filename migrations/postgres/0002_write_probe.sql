-- A scratch table for the write-health probe behind /readyz: each probe inserts a padded row
-- and deletes it in the same transaction (so that it needs free space, as real writes do),
-- so the table stays empty.
CREATE TABLE write_probe (
    at  BIGINT NOT NULL,
    pad BYTEA  NOT NULL
);
