//! Creating uploads: the object in the store first, then the row, so that a row never
//! points at storage that does not exist (an orphaned object is the janitor's to clean).

use chrono::Utc;

use crate::auth::Caller;
use crate::db::models::{UploadRow, UploadState, CONCAT_FINAL, CONCAT_PARTIAL};
use crate::db::uploads;
use crate::domain::{Metadata, UploadId};
use crate::error::ApiError;
use crate::http::download::{content_type, sanitized_filename};
use crate::state::AppState;
use crate::store::ObjectHeaders;

pub struct NewUpload {
    /// None: deferred (`Upload-Defer-Length: 1`).
    pub length: Option<u64>,
    /// `Upload-Metadata` as the client sent it.
    pub metadata: String,
    pub partial: bool,
}

fn blank_row(id: &UploadId, key: String, owner: String, metadata: String) -> UploadRow {
    let now = Utc::now().naive_utc();
    UploadRow {
        id: id.to_string(),
        owner,
        state: UploadState::Open.as_str().to_owned(),
        upload_length: None,
        upload_offset: 0,
        metadata,
        concat_kind: None,
        concat_parts: None,
        store_key: key,
        part_size: None,
        created_at: now,
        updated_at: now,
        expires_at: None,
        completed_at: None,
        lease_owner: None,
        lease_expires_at: None,
        lease_token: 0,
        multipart_id: None,
    }
}

/// The type and file name a download is served with, from `filetype` / `filename`.
fn object_headers(raw_metadata: &str) -> ObjectHeaders {
    let metadata = Metadata::from_stored(raw_metadata);
    ObjectHeaders { content_type: content_type(&metadata).to_string(), filename: sanitized_filename(&metadata) }
}

/// The row goes in first (without its multipart upload), so that the janitor never takes
/// a multipart upload being created for an orphan: its key already belongs to an open row.
/// Every new upload, whatever the protocol, comes through here: the caller's quotas are
/// checked first.
pub async fn create_upload(state: &AppState, caller: &Caller, new: NewUpload) -> Result<UploadRow, ApiError> {
    crate::limits::admit_new_upload(state, caller, new.length).await?;
    let id = UploadId::new_random();
    let key = state.store.key_for(&id);
    let headers = object_headers(&new.metadata);
    let mut row = blank_row(&id, key.clone(), caller.subject.clone(), new.metadata);
    let lifetime = chrono::Duration::from_std(state.settings.upload_lifetime()).unwrap_or(chrono::Duration::days(1));
    if new.length == Some(0) {
        row.state = UploadState::Complete.as_str().to_owned();
        row.completed_at = Some(row.created_at);
    } else {
        row.expires_at = Some(row.created_at + lifetime);
    }
    row.upload_length = new.length.map(|l| l as i64);
    row.concat_kind = new.partial.then(|| CONCAT_PARTIAL.to_owned());
    let insert = row.clone();
    state.repo.run(move |conn| uploads::insert(conn, &insert)).await?;

    let created = match state.store.create(&key, new.length, state.settings.uploads.max_size, &headers).await {
        Ok(created) => created,
        Err(err) => {
            let id = row.id.clone();
            let _ = state.repo.run(move |conn| uploads::delete(conn, &id)).await;
            return Err(err.into());
        }
    };
    row.part_size = created.part_size.map(|p| p as i64);
    row.multipart_id = created.multipart_id;
    let (id, part_size, multipart_id) = (row.id.clone(), row.part_size, row.multipart_id.clone());
    state.repo.run(move |conn| uploads::set_storage(conn, &id, part_size, multipart_id)).await?;
    state.metrics.uploads_created.inc();
    Ok(row)
}

/// A final upload (tus concatenation): the partials' bytes joined, in order, into a new
/// complete upload. The partials must be the caller's, partial, and complete.
pub async fn concatenate(
    state: &AppState,
    caller: &Caller,
    parts: &[UploadId],
    metadata: &str,
) -> Result<UploadRow, ApiError> {
    let ids: Vec<String> = parts.iter().map(ToString::to_string).collect();
    let lookup = ids.clone();
    let found = state.repo.run(move |conn| uploads::find_many(conn, &lookup)).await?;
    let mut sources = Vec::with_capacity(ids.len());
    let mut total: u64 = 0;
    for id in &ids {
        let row = found.iter().find(|row| &row.id == id).ok_or(ApiError::NotFound)?;
        caller.check_owner(row)?;
        if !row.is_partial_concat() {
            return Err(ApiError::bad_request(
                "not_a_partial_upload",
                format!("upload {id} was not created as partial"),
            ));
        }
        if row.state() != UploadState::Complete {
            return Err(ApiError::bad_request(
                "partial_upload_incomplete",
                format!("partial upload {id} is not complete"),
            ));
        }
        total += row.offset();
        sources.push((row.store_key.clone(), row.offset()));
    }
    let max_size = state.settings.uploads.max_size;
    if total > max_size {
        return Err(ApiError::TooLarge {
            code: "upload_too_large",
            message: "the concatenation exceeds Tus-Max-Size".into(),
        });
    }
    let id = UploadId::new_random();
    let key = state.store.key_for(&id);
    let part_size = state.store.part_size_for(Some(total), max_size);
    let written = state.store.concatenate(sources, &key, part_size, &object_headers(metadata)).await?;
    let mut row = blank_row(&id, key, caller.subject.clone(), metadata.to_owned());
    row.state = UploadState::Complete.as_str().to_owned();
    row.upload_length = Some(written as i64);
    row.upload_offset = written as i64;
    row.concat_kind = Some(CONCAT_FINAL.to_owned());
    row.concat_parts = Some(ids.join(" "));
    row.completed_at = Some(row.created_at);
    let insert = row.clone();
    state.repo.run(move |conn| uploads::insert(conn, &insert)).await?;
    Ok(row)
}
