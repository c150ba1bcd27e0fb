-- The admin list without an owner filter pages newest first by (created_at, id).
CREATE INDEX uploads_created_id ON uploads (created_at, id);
