//! GET on a completed upload: its bytes, with Range, ETag and the content type and file
//! name from its metadata (sanitized).

use std::time::Duration;

use actix_files::NamedFile;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::tus::ensure_live;
use crate::auth::Caller;
use crate::db::models::{UploadRow, UploadState};
use crate::domain::{Metadata, UploadId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Download;

/// GET on a completed upload: a redirect to a short-lived signed URL (S3 presigned, or
/// Hoist's own HMAC-signed URL for the disk store).
#[utoipa::path(get, path = "/files/{id}", tag = "downloads", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 307, description = "Location: the signed URL"), (status = 404, body = crate::error::ErrorBody, description = "No such upload (or someone else's)"), (status = 409, body = crate::error::ErrorBody, description = "upload_incomplete"),
        (status = 410, body = crate::error::ErrorBody, description = "Expired or terminated"))
)]
pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = UploadId::parse(&path)?;
    let row = state.load_upload(&id).await?;
    caller.check_owner(&row)?;
    ensure_complete(&row)?;
    let metadata = Metadata::from_stored(&row.metadata);
    let ttl = Duration::from_secs(state.settings.downloads.url_ttl_secs);
    let filename = sanitized_filename(&metadata);
    let content_type = content_type(&metadata).to_string();
    let location = match state.store.download(&row.store_key, filename.as_deref(), &content_type, ttl).await? {
        Download::Redirect(url) => url,
        Download::LocalFile(_) => {
            let expires = Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(300);
            format!("{}{}", crate::http::base_url(&req), state.signer.sign(id.as_str(), expires))
        }
    };
    Ok(HttpResponse::TemporaryRedirect()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[derive(serde::Deserialize)]
pub struct SignedQuery {
    expires: i64,
    signature: String,
}

/// The disk store's signed URL: no bearer token, the signature is the authorization.
#[utoipa::path(get, path = "/downloads/{id}", tag = "downloads",
    params(("id" = String, Path), ("expires" = i64, Query), ("signature" = String, Query), ("Range" = Option<String>, Header)),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"), (status = 206, description = "A range"), (status = 403, body = crate::error::ErrorBody, description = "Forbidden: a bad or expired signature"),
        (status = 404, body = crate::error::ErrorBody, description = "No such upload"), (status = 409, body = crate::error::ErrorBody, description = "upload_incomplete"),
        (status = 410, body = crate::error::ErrorBody, description = "Expired or terminated"))
)]
pub async fn signed_download(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<SignedQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = UploadId::parse(&path)?;
    if !state.signer.verify(id.as_str(), query.expires, &query.signature, Utc::now().timestamp()) {
        return Err(ApiError::Forbidden);
    }
    let row = state.load_upload(&id).await?;
    ensure_complete(&row)?;
    let metadata = Metadata::from_stored(&row.metadata);
    let Some(path) = state.store.local_path(&row.store_key) else { return Err(ApiError::NotFound) };
    let file = NamedFile::open_async(&path).await.map_err(|e| ApiError::Unavailable(format!("opening {e}")))?;
    let file = file
        .set_content_type(content_type(&metadata))
        .set_content_disposition(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: sanitized_filename(&metadata)
                .map(|name| vec![DispositionParam::Filename(name)])
                .unwrap_or_default(),
        })
        .use_etag(true)
        .use_last_modified(true);
    let mut response = file.into_response(&req);
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    Ok(response)
}

fn ensure_complete(row: &UploadRow) -> Result<(), ApiError> {
    ensure_live(row)?;
    if row.state() != UploadState::Complete {
        return Err(ApiError::Conflict { code: "upload_incomplete", message: "the upload is not complete yet".into() });
    }
    Ok(())
}

/// `filetype` if it is a well-formed media type; anything else is served as bytes.
pub fn content_type(metadata: &Metadata) -> mime::Mime {
    metadata
        .get_str("filetype")
        .and_then(|raw| raw.parse::<mime::Mime>().ok())
        .unwrap_or(mime::APPLICATION_OCTET_STREAM)
}

/// The last path component of `filename`, without control characters or quotes.
pub fn sanitized_filename(metadata: &Metadata) -> Option<String> {
    let raw = metadata.get_str("filename").or_else(|| metadata.get_str("name"))?;
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control() && !matches!(c, '"' | ';')).take(255).collect();
    let clean = clean.trim().trim_start_matches('.').to_owned();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect())
    }

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(sanitized_filename(&meta(&[("filename", "../../etc/passwd")])).as_deref(), Some("passwd"));
        assert_eq!(sanitized_filename(&meta(&[("filename", "a\r\nb\".txt")])).as_deref(), Some("ab.txt"));
        assert_eq!(sanitized_filename(&meta(&[("filename", "..")])), None);
        assert_eq!(sanitized_filename(&meta(&[])), None);
    }

    #[test]
    fn bad_media_types_fall_back_to_octet_stream() {
        assert_eq!(content_type(&meta(&[("filetype", "image/png")])), mime::IMAGE_PNG);
        assert_eq!(content_type(&meta(&[("filetype", "not a type")])), mime::APPLICATION_OCTET_STREAM);
    }
}
