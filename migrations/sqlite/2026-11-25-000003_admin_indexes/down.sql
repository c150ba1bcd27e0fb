CREATE INDEX uploads_owner_created ON uploads (owner, created_at);
DROP INDEX uploads_state_created_id;
DROP INDEX uploads_owner_created_id;
DROP INDEX uploads_created_id;
