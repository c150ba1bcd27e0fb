//! Upload append: a PATCH at `Upload-Offset`, saying whether it completes the upload.

use actix_web::{web, HttpRequest};

use super::{
    consistent_length, settled_upload, sf_integer, state_headers, stream_body, BodyAt, InteropVersion, PARTIAL_UPLOAD,
};
use crate::auth::Caller;
use crate::db::models::{StoredResponse, UploadState};
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::http::headers;
use crate::state::AppState;

pub async fn run(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    path: &str,
    version: InteropVersion,
    payload: web::Payload,
) -> Result<StoredResponse, ApiError> {
    let id = UploadId::parse(path)?;
    if version.requires_partial_upload_type() && headers::content_type(req)?.as_deref() != Some(PARTIAL_UPLOAD) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "appends of interop version {} are {PARTIAL_UPLOAD}",
            version.number()
        )));
    }
    let offset = sf_integer("Upload-Offset", headers::required(req, "Upload-Offset")?)?;
    let completes = version.completes(req)?;
    let content_length = headers::content_length(req)?;
    // A request of the client's that the server still streams is one it gave up on.
    let row = settled_upload(state, caller, &id).await?;
    if row.is_final_concat() {
        return Err(ApiError::PatchOnFinal);
    }
    if offset != row.offset() {
        return Err(ApiError::OffsetMismatch { current: row.offset(), requested: offset });
    }
    let length = consistent_length(req, completes, offset, row.length())?;
    if row.state() == UploadState::Complete {
        // Only a retried final request, empty and completing, is answered as it was first.
        return match (completes, content_length) {
            (_, Some(bytes)) if bytes > 0 => Err(ApiError::InconsistentLength(format!(
                "the upload is complete at {} bytes; {bytes} more cannot follow",
                row.offset()
            ))),
            (false, _) => Err(ApiError::UploadCompleted),
            (true, Some(_)) => Ok(answer(version, state, &row)),
            // A body of unknown length: the session reads it and refuses any byte (413).
            (true, None) => {
                let at = BodyAt { offset, completes, length, declare: None, content_length };
                Ok(answer(version, state, &stream_body(state, req, &id, at, payload).await?))
            }
        };
    }
    let at = BodyAt { offset, completes, length, declare: length.filter(|_| row.length().is_none()), content_length };
    let row = stream_body(state, req, &id, at, payload).await?;
    Ok(answer(version, state, &row))
}

/// 200 once the upload is complete (the answer to the whole representation), else 204
/// acknowledging the bytes.
fn answer(version: InteropVersion, state: &AppState, row: &crate::db::models::UploadRow) -> StoredResponse {
    let status = if row.state() == UploadState::Complete { 200 } else { 204 };
    StoredResponse { status, headers: state_headers(version, state, row), body: Vec::new() }
}
