use actix_web::{web, HttpRequest, HttpResponse};

use super::{expires_header, no_content, owned_live_upload, require_tus, OFFSET_OCTET_STREAM};
use crate::auth::Caller;
use crate::db::models::StoredResponse;
use crate::domain::{parse_non_negative, Checksum, UploadId};
use crate::error::ApiError;
use crate::http::body::append_body;
use crate::http::headers;
use crate::http::idempotency::idempotent_append;
use crate::http::resumable::{self, InteropVersion};
use crate::session::AppendSpec;
use crate::state::AppState;

/// Appends a chunk at `Upload-Offset`. A request of the caller's still streaming into the
/// upload is one it gave up on: it is cut first (its bytes are kept and committed), and this
/// offset is checked against what it reached.
#[utoipa::path(patch, path = "/files/{id}", tag = "tus", security(("bearer" = [])),
    params(
        ("id" = String, Path), ("Tus-Resumable" = String, Header),
        ("Upload-Offset" = u64, Header), ("Upload-Length" = Option<u64>, Header, description = "Declares a deferred length"),
        ("Upload-Checksum" = Option<String>, Header, description = "sha1, md5, sha256 or crc32c, base64"),
        ("Idempotency-Key" = Option<String>, Header),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Kept and durable", headers(("Upload-Offset" = u64))),
        (status = 409, body = crate::error::ErrorBody, description = "offset_mismatch"), (status = 404, body = crate::error::ErrorBody, description = "No such upload (or someone else's)"),
        (status = 410, body = crate::error::ErrorBody, description = "Expired or terminated"), (status = 413, body = crate::error::ErrorBody, description = "exceeds_upload_length: past the declared length"), (status = 415, body = crate::error::ErrorBody, description = "Unsupported media type"), (status = 423, body = crate::error::ErrorBody, description = "Another request is writing this upload (on another node, or with uploads.cut_abandoned_requests off)"),
        (status = 429, body = crate::error::ErrorBody, description = "Rate limit or quota (Retry-After, RateLimit-*)"), (status = 460, body = crate::error::ErrorBody, description = "checksum_mismatch"),
        (status = 503, body = crate::error::ErrorBody, description = "Database or store unavailable (Retry-After)"),
    )
)]
pub async fn patch(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    match InteropVersion::of(&req) {
        Ok(Some(version)) => {
            idempotent_append(&state, &req, &caller, &path, || {
                resumable::append(&state, &req, &caller, &path, version, payload)
            })
            .await
        }
        Ok(None) => {
            idempotent_append(&state, &req, &caller, &path, || run(&state, &req, &caller, &path, payload)).await
        }
        Err(err) => err.to_stored().into_response(),
    }
}

async fn run(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    path: &str,
    payload: web::Payload,
) -> Result<StoredResponse, ApiError> {
    require_tus(req)?;
    let id = UploadId::parse(path)?;
    if headers::content_type(req)?.as_deref() != Some(OFFSET_OCTET_STREAM) {
        return Err(ApiError::UnsupportedMediaType(format!("PATCH bodies are {OFFSET_OCTET_STREAM}")));
    }
    let spec = AppendSpec {
        expected_offset: parse_non_negative("Upload-Offset", headers::required(req, "Upload-Offset")?)?,
        declare_length: headers::optional_number(req, "Upload-Length")?,
        checksum: headers::optional(req, "Upload-Checksum")?.map(Checksum::parse).transpose()?,
        content_length: headers::content_length(req)?,
    };
    let row = owned_live_upload(state, caller, &id).await?;
    if row.is_final_concat() {
        return Err(ApiError::PatchOnFinal);
    }
    // One client writes an upload at a time: a request of its still streaming in is one it
    // gave up on. Cut, it commits what arrived, and this append's offset is checked against that.
    state.sessions.interrupt(&id, &row).await;
    let row = append_body(state, &id, spec, req, payload).await?;
    let mut headers = vec![("Upload-Offset".to_owned(), row.offset().to_string())];
    headers.extend(expires_header(&row));
    Ok(no_content(headers))
}
