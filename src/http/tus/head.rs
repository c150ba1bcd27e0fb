use actix_web::{web, HttpRequest, HttpResponse};

use super::{expires_header, owned_live_upload, require_tus, settled_upload, FILES_PATH};
use crate::auth::Caller;
use crate::db::models::UploadRow;
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::http::resumable::{self, InteropVersion};
use crate::state::AppState;

/// The upload's offset, length and metadata. A request still streaming into the upload is cut
/// first (a client asks for the offset when it resumes), so the offset includes its bytes.
#[utoipa::path(head, path = "/files/{id}", tag = "tus", security(("bearer" = [])),
    params(("id" = String, Path, description = "32 hex digits"), ("Tus-Resumable" = String, Header)),
    responses(
        (status = 200, description = "The upload", headers(("Upload-Offset" = u64), ("Upload-Length" = u64), ("Upload-Metadata" = String), ("Upload-Expires" = String))),
        (status = 404, description = "No such upload (or someone else's)"), (status = 410, description = "Expired or terminated"),
    )
)]
pub async fn head(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if let Some(version) = InteropVersion::of(&req)? {
        return resumable::offset::head(&state, &caller, &path, version).await;
    }
    require_tus(&req)?;
    let id = UploadId::parse(&path)?;
    // A client asks for the offset when it resumes: a request of its still streaming into
    // the upload is one it gave up on.
    let row = settled_upload(&state, &caller, &id).await?;
    let mut response = HttpResponse::Ok();
    response.insert_header(("Cache-Control", "no-store"));
    response.insert_header(("Upload-Offset", row.offset().to_string()));
    match row.length() {
        Some(length) => response.insert_header(("Upload-Length", length.to_string())),
        None => response.insert_header(("Upload-Defer-Length", "1")),
    };
    if !row.metadata.is_empty() {
        response.insert_header(("Upload-Metadata", row.metadata.clone()));
    }
    if let Some(concat) = concat_header(&row) {
        response.insert_header(("Upload-Concat", concat));
    }
    if let Some(expires) = expires_header(&row) {
        response.insert_header(expires);
    }
    Ok(response.finish())
}

fn concat_header(row: &UploadRow) -> Option<String> {
    if row.is_partial_concat() {
        return Some("partial".to_owned());
    }
    let parts = row.concat_parts.as_deref().filter(|_| row.is_final_concat())?;
    let urls: Vec<String> = parts.split(' ').map(|id| format!("{FILES_PATH}/{id}")).collect();
    Some(format!("final;{}", urls.join(" ")))
}

/// tus termination (and the draft's cancellation): the bytes go, the row stays as a
/// tombstone answering 410. A request still streaming into the upload is cut first.
#[utoipa::path(delete, path = "/files/{id}", tag = "tus", security(("bearer" = [])),
    params(("id" = String, Path), ("Tus-Resumable" = String, Header)),
    responses((status = 204, description = "Terminated"), (status = 404, body = crate::error::ErrorBody, description = "No such upload (or someone else's)"), (status = 410, body = crate::error::ErrorBody, description = "Expired or terminated"),
        (status = 423, body = crate::error::ErrorBody, description = "upload_locked: a request still writes it (on a node that did not let it go, or with uploads.cut_abandoned_requests off)"))
)]
pub async fn terminate(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let draft = InteropVersion::of(&req)?.is_some();
    if !draft {
        require_tus(&req)?;
    }
    let id = UploadId::parse(&path)?;
    let row = owned_live_upload(&state, &caller, &id).await?;
    // Termination ends the requests still streaming into the upload instead of waiting behind
    // them.
    state.sessions.interrupt(&id, &row).await;
    state.sessions.terminate(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}
