//! Upload creation: a POST to `/files` with the completeness header. The upload exists
//! before the first body byte is read, and a `104` tells the client where it is, so an
//! interrupted creation is resumed rather than sent again.

use actix_web::http::header::{ContentDisposition, CONTENT_DISPOSITION};
use actix_web::{web, HttpRequest};

use super::{announce, consistent_length, state_headers, stream_body, BodyAt, InteropVersion, PARTIAL_UPLOAD};
use crate::auth::Caller;
use crate::db::models::StoredResponse;
use crate::domain::metadata::MetadataLimits;
use crate::domain::{Metadata, UploadId};
use crate::error::ApiError;
use crate::http::headers;
use crate::http::tus::{location, OFFSET_OCTET_STREAM};
use crate::state::AppState;
use crate::upload::{create_upload, NewUpload};

pub async fn run(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    version: InteropVersion,
    payload: web::Payload,
) -> Result<StoredResponse, ApiError> {
    let completes = version.completes(req)?;
    let content_length = headers::content_length(req)?;
    let length = consistent_length(req, completes, 0, None)?;
    let max_size = state.settings.uploads.max_size;
    if let Some(length) = length.filter(|length| *length > max_size) {
        return Err(ApiError::TooLarge {
            code: "upload_too_large",
            message: format!("the upload's length {length} exceeds max-size {max_size}"),
        });
    }
    let metadata = metadata(state, req)?;
    let row = create_upload(state, caller, NewUpload { length, metadata, partial: false }).await?;
    let id = UploadId::parse(&row.id)?;
    let url = location(req, &row.id);
    announce(req, version, state, &url);

    let row = if content_length == Some(0) {
        row
    } else {
        let at = BodyAt { offset: 0, completes, length, declare: None, content_length };
        stream_body(state, req, &id, at, payload).await?
    };
    let mut headers = vec![("Location".to_owned(), url)];
    headers.extend(state_headers(version, state, &row));
    Ok(StoredResponse { status: 201, headers, body: Vec::new() })
}

/// `Upload-Metadata` where the client sends it (tus-js-client does in its draft modes);
/// otherwise the representation's own type and file name, which downloads are served with.
fn metadata(state: &AppState, req: &HttpRequest) -> Result<String, ApiError> {
    let limits = &state.settings.uploads;
    if let Some(raw) = headers::optional(req, "Upload-Metadata")? {
        let limits = MetadataLimits { max_bytes: limits.max_metadata_bytes, max_keys: limits.max_metadata_keys };
        return Ok(Metadata::parse(raw, &limits)?.raw().to_owned());
    }
    let mut pairs = Vec::new();
    let representation_type = headers::content_type(req)?.filter(|t| t != PARTIAL_UPLOAD && t != OFFSET_OCTET_STREAM);
    if let Some(media_type) = representation_type {
        pairs.push(("filetype".to_owned(), media_type.into_bytes()));
    }
    let filename =
        req.headers().get(CONTENT_DISPOSITION).and_then(|value| ContentDisposition::from_raw(value).ok()).and_then(
            |disposition| {
                disposition
                    .get_filename_ext()
                    .map(|ext| ext.value.clone())
                    .or_else(|| disposition.get_filename().map(|name| name.as_bytes().to_vec()))
            },
        );
    if let Some(name) = filename.filter(|name| !name.is_empty()) {
        pairs.push(("filename".to_owned(), name));
    }
    Ok(Metadata::from_pairs(pairs).raw().to_owned())
}
