-- Admin lists page newest first by (created_at, id), optionally per owner or state: each
-- filter gets an index in that order, so a page is one index range scan, however deep.
CREATE INDEX uploads_created_id ON uploads (created_at, id);
CREATE INDEX uploads_owner_created_id ON uploads (owner, created_at, id);
CREATE INDEX uploads_state_created_id ON uploads (state, created_at, id);
DROP INDEX uploads_owner_created;
