//! tus 1.0.0 at `/files/`: core, creation, creation-with-upload, creation-defer-length,
//! expiration, checksum, termination, concatenation.

pub(crate) mod create;
pub(crate) mod head;
pub(crate) mod patch;

pub use create::create;
pub use head::{head, terminate};
pub use patch::patch;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::Caller;

use crate::db::models::{StoredResponse, UploadRow, UploadState};
use crate::domain::{http_date, ChecksumAlgorithm, UploadId};
use crate::error::ApiError;
use crate::state::AppState;

pub const TUS_VERSION: &str = "1.0.0";
pub const TUS_EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation";
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
pub const FILES_PATH: &str = "/files";

/// Every tus request but OPTIONS must say which protocol version it speaks.
pub fn require_tus(req: &HttpRequest) -> Result<(), ApiError> {
    match req.headers().get("Tus-Resumable").map(|v| v.as_bytes()) {
        Some(b"1.0.0") => Ok(()),
        _ => Err(ApiError::UnsupportedVersion),
    }
}

/// tus discovery.
#[utoipa::path(options, path = "/files", tag = "tus", responses(
    (status = 204, description = "The server's tus capabilities", headers(
        ("Tus-Version" = String), ("Tus-Extension" = String), ("Tus-Max-Size" = u64), ("Tus-Checksum-Algorithm" = String)))
))]
pub async fn options(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Accept-Patch", crate::http::resumable::PARTIAL_UPLOAD))
        .insert_header(("Upload-Limit", crate::http::resumable::discovery_limit(&state)))
        .insert_header(("Tus-Version", TUS_VERSION))
        .insert_header(("Tus-Extension", TUS_EXTENSIONS))
        .insert_header(("Tus-Max-Size", state.settings.uploads.max_size.to_string()))
        .insert_header(("Tus-Checksum-Algorithm", ChecksumAlgorithm::ADVERTISED))
        .finish()
}

/// Where an upload lives, as an absolute URL on the host the client used.
pub fn location(req: &HttpRequest, id: &str) -> String {
    format!("{}{FILES_PATH}/{id}", crate::http::base_url(req))
}

/// The caller's upload, still live: the checks every request on an existing upload makes.
/// Someone else's upload is a 404, so ids cannot be probed.
pub async fn owned_live_upload(state: &AppState, caller: &Caller, id: &UploadId) -> Result<Arc<UploadRow>, ApiError> {
    let row = state.load_upload(id).await?;
    caller.check_owner(&row)?;
    ensure_live(&row)?;
    Ok(row)
}

/// The caller's live upload, after cutting any request still streaming into it (see
/// `SessionRegistry::interrupt`: a client resuming while the server still holds the request
/// it lost): read again only if one was cut, since that one's commit moved it.
pub async fn settled_upload(state: &AppState, caller: &Caller, id: &UploadId) -> Result<Arc<UploadRow>, ApiError> {
    let row = owned_live_upload(state, caller, id).await?;
    if state.sessions.interrupt(id, &row).await {
        return owned_live_upload(state, caller, id).await;
    }
    Ok(row)
}

/// Rejects uploads that are gone.
pub fn ensure_live(row: &UploadRow) -> Result<(), ApiError> {
    match row.state() {
        UploadState::Terminated => Err(ApiError::Terminated),
        UploadState::Expired => Err(ApiError::Expired),
        _ if row.is_expired_at(chrono::Utc::now()) => Err(ApiError::Expired),
        _ => Ok(()),
    }
}

/// `Upload-Expires` for uploads that can still expire.
pub fn expires_header(row: &UploadRow) -> Option<(String, String)> {
    if row.state() != UploadState::Open {
        return None;
    }
    row.expires_at_utc().map(|at| ("Upload-Expires".to_owned(), http_date(at)))
}

pub fn no_content(headers: Vec<(String, String)>) -> StoredResponse {
    StoredResponse { status: 204, headers, body: Vec::new() }
}
