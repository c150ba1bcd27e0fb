DROP INDEX uploads_created_id;
