//! Offset retrieval: HEAD on an upload. (Cancellation is tus termination, minus the
//! `Tus-Resumable` check, after cutting any append still streaming.)

use actix_web::HttpResponse;

use super::{settled_upload, state_headers, InteropVersion};
use crate::auth::Caller;
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::state::AppState;

/// 204 with the offset, completeness, length (once known) and limits; never cached.
pub async fn head(
    state: &AppState,
    caller: &Caller,
    path: &str,
    version: InteropVersion,
) -> Result<HttpResponse, ApiError> {
    let id = UploadId::parse(path)?;
    // An append still streaming is one the client gave up on (it asks for the offset to
    // resume): cut it and answer with what it committed, an offset the next append can use.
    let row = settled_upload(state, caller, &id).await?;
    let mut response = HttpResponse::NoContent();
    response.insert_header(("Cache-Control", "no-store"));
    for header in state_headers(version, state, &row) {
        response.insert_header(header);
    }
    Ok(response.finish())
}
