// Matches migrations/sqlite and migrations/postgres (kept portable by hand).

diesel::table! {
    uploads (id) {
        id -> Text,
        owner -> Text,
        state -> Text,
        upload_length -> Nullable<BigInt>,
        upload_offset -> BigInt,
        metadata -> Text,
        concat_kind -> Nullable<Text>,
        concat_parts -> Nullable<Text>,
        store_key -> Text,
        part_size -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        lease_token -> BigInt,
        multipart_id -> Nullable<Text>,
    }
}

diesel::table! {
    parts (upload_id, part_number) {
        upload_id -> Text,
        part_number -> Integer,
        size -> BigInt,
        etag -> Text,
        checksum -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (scope, idem_key) {
        scope -> Text,
        idem_key -> Text,
        fingerprint -> Text,
        status -> Nullable<Integer>,
        response_headers -> Nullable<Text>,
        response_body -> Nullable<Binary>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(parts -> uploads (upload_id));
diesel::allow_tables_to_appear_in_same_query!(uploads, parts, idempotency_keys);
