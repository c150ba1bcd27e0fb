//! One-shot `multipart/form-data` uploads at `POST /uploads`: every file part becomes a
//! complete upload, streamed through its session like a PATCH (never held in memory).

use actix_multipart::Multipart;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::body::append_to_end;
use super::headers;
use super::idempotency::idempotent;
use super::tus::location;
use crate::auth::Caller;
use crate::db::models::StoredResponse;
use crate::domain::{Metadata, UploadId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::upload::{create_upload, NewUpload};

#[derive(Serialize, utoipa::ToSchema)]
pub struct FormUpload {
    id: String,
    field: String,
    filename: Option<String>,
    content_type: Option<String>,
    size: u64,
    /// Base64 SHA-256 of the bytes stored, for the client to compare.
    sha256: String,
    location: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FormResponse {
    uploads: Vec<FormUpload>,
}

/// One-shot multipart/form-data upload: each file part becomes a complete upload.
#[utoipa::path(post, path = "/uploads", tag = "forms", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body(content = String, content_type = "multipart/form-data"),
    responses((status = 201, body = FormResponse, description = "Created"), (status = 400, body = crate::error::ErrorBody, description = "Bad request (stable error code)"), (status = 413, body = crate::error::ErrorBody, description = "Too large"), (status = 415, body = crate::error::ErrorBody, description = "unsupported_media_type: the body is not multipart/form-data"), (status = 429, body = crate::error::ErrorBody, description = "Rate limit or quota (Retry-After, RateLimit-*)"))
)]
pub async fn upload_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
) -> HttpResponse {
    idempotent(&state, &req, &caller, || run(&state, &req, &caller, payload)).await
}

async fn run(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    payload: web::Payload,
) -> Result<StoredResponse, ApiError> {
    if headers::content_type(req)?.as_deref() != Some("multipart/form-data") {
        return Err(ApiError::UnsupportedMediaType("POST /uploads takes multipart/form-data".into()));
    }
    let mut form = Multipart::new(req.headers(), payload);
    let mut created = Vec::new();
    while let Some(field) = form.next().await {
        let field = field.map_err(|e| ApiError::bad_request("invalid_multipart", e.to_string()))?;
        let Some(filename) = field.content_disposition().and_then(|cd| cd.get_filename()).map(str::to_owned) else {
            continue; // plain form fields carry no file
        };
        if created.len() == state.settings.uploads.max_form_files {
            return Err(ApiError::bad_request(
                "too_many_files",
                format!("one form takes at most {} files", state.settings.uploads.max_form_files),
            ));
        }
        let field_name = field.name().unwrap_or_default().to_owned();
        let content_type = field.content_type().map(ToString::to_string);
        created.push(store_field(state, req, caller, field, field_name, filename, content_type).await?);
    }
    if created.is_empty() {
        return Err(ApiError::bad_request("no_files", "the form has no file parts"));
    }
    let body = serde_json::to_vec(&FormResponse { uploads: created }).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(StoredResponse { status: 201, headers: vec![("Content-Type".to_owned(), "application/json".to_owned())], body })
}

async fn store_field(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    field: actix_multipart::Field,
    field_name: String,
    filename: String,
    content_type: Option<String>,
) -> Result<FormUpload, ApiError> {
    let mut pairs = vec![("filename".to_owned(), filename.clone().into_bytes())];
    if let Some(ct) = &content_type {
        pairs.push(("filetype".to_owned(), ct.clone().into_bytes()));
    }
    let new = NewUpload { length: None, metadata: Metadata::from_pairs(pairs).raw().to_owned(), partial: false };
    let row = create_upload(state, caller, new).await?;
    let id = UploadId::parse(&row.id)?;

    let mut digest = Sha256::new();
    let hashed = field.inspect(|chunk| {
        if let Ok(bytes) = chunk {
            digest.update(bytes);
        }
    });
    let ended = append_to_end(state, &id, 0, req, hashed).await?;
    if !ended.whole {
        // What arrived is kept (the upload stays open and resumable over tus), but it is
        // not a whole file: do not declare it complete.
        return Err(ApiError::bad_request("body_incomplete", format!("the form ended inside file {filename:?}")));
    }
    let size = ended.row.offset();
    Ok(FormUpload {
        id: id.to_string(),
        field: field_name,
        filename: Some(filename),
        content_type,
        size,
        sha256: base64::engine::general_purpose::STANDARD.encode(digest.finalize()),
        location: location(req, id.as_str()),
    })
}
