ALTER TABLE uploads DROP COLUMN multipart_id;
