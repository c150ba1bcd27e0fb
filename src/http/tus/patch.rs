use actix_web::{web, HttpRequest, HttpResponse};

use super::{expires_header, no_content, owned_live_upload, require_tus, OFFSET_OCTET_STREAM};
use crate::auth::Caller;
use crate::db::models::StoredResponse;
use crate::domain::{parse_non_negative, Checksum, UploadId};
use crate::error::ApiError;
use crate::http::body::append_body;
use crate::http::headers;
use crate::http::idempotency::idempotent;
use crate::session::AppendSpec;
use crate::state::AppState;

pub async fn patch(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    idempotent(&state, &req, &caller, || run(&state, &req, &caller, &path, payload)).await
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
    let row = append_body(state, &id, spec, payload).await?;
    let mut headers = vec![("Upload-Offset".to_owned(), row.offset().to_string())];
    headers.extend(expires_header(&row));
    Ok(no_content(headers))
}
