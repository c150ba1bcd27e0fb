-- The S3 multipart upload behind an upload (NULL on the disk store and once completed).
ALTER TABLE uploads ADD COLUMN multipart_id TEXT;
