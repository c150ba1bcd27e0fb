//! Upload append: a PATCH at `Upload-Offset`, saying whether it completes the upload.

use actix_web::{web, HttpRequest};

use super::create::cut_short;
use super::{consistent_length, sf_integer, state_headers, InteropVersion, PARTIAL_UPLOAD};
use crate::auth::Caller;
use crate::db::models::{StoredResponse, UploadState};
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::http::body::{append_body, append_to_end};
use crate::http::headers;
use crate::http::tus::owned_live_upload;
use crate::session::AppendSpec;
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
    owned_live_upload(state, caller, &id).await?;
    // A request of the client's that the server still streams is one it gave up on.
    state.sessions.interrupt(&id).await;
    let row = owned_live_upload(state, caller, &id).await?;
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
                let spec = AppendSpec { expected_offset: offset, declare_length: None, checksum: None, content_length };
                let row = append_body(state, &id, spec, req, payload).await?;
                Ok(answer(version, state, &row))
            }
        };
    }
    let row = if completes && length.is_none() {
        // Completing without a Content-Length (a chunked body): the length is where it ends.
        append_to_end(state, &id, offset, req, payload).await?.row
    } else {
        let declare_length = length.filter(|_| row.length().is_none());
        let spec = AppendSpec { expected_offset: offset, declare_length, checksum: None, content_length };
        append_body(state, &id, spec, req, payload).await?
    };
    if completes && row.state() != UploadState::Complete {
        return Err(cut_short(&row));
    }
    Ok(answer(version, state, &row))
}

/// 200 once the upload is complete (the answer to the whole representation), else 204
/// acknowledging the bytes.
fn answer(version: InteropVersion, state: &AppState, row: &crate::db::models::UploadRow) -> StoredResponse {
    let status = if row.state() == UploadState::Complete { 200 } else { 204 };
    StoredResponse { status, headers: state_headers(version, state, row), body: Vec::new() }
}
