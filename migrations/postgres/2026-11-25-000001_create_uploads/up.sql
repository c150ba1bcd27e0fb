CREATE TABLE uploads (
    id TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    upload_length BIGINT,
    upload_offset BIGINT NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '',
    concat_kind TEXT,
    concat_parts TEXT,
    store_key TEXT NOT NULL,
    part_size BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    completed_at TIMESTAMP,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    lease_token BIGINT NOT NULL DEFAULT 0
);
-- Listing one owner's uploads, newest first.
CREATE INDEX uploads_owner_created ON uploads (owner, created_at);
-- The janitor's sweep: open uploads past their expiry, tombstones past retention.
CREATE INDEX uploads_state_expires ON uploads (state, expires_at);
CREATE INDEX uploads_state_updated ON uploads (state, updated_at);

CREATE TABLE parts (
    upload_id TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    checksum TEXT,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER,
    response_headers TEXT,
    response_body BYTEA,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
