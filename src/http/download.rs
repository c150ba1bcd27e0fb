//! GET on a completed upload: its bytes, with Range, ETag and the content type and file
//! name from its metadata (sanitized).

use actix_files::NamedFile;
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpRequest, HttpResponse};

use super::tus::ensure_live;
use crate::auth::Caller;
use crate::db::models::UploadState;
use crate::domain::{Metadata, UploadId};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = UploadId::parse(&path)?;
    let row = state.load_upload(&id).await?;
    caller.check_owner(&row)?;
    ensure_live(&row)?;
    if row.state() != UploadState::Complete {
        return Err(ApiError::Conflict {
            code: "upload_incomplete",
            message: "the upload is not complete yet".into(),
        });
    }
    let path = state
        .store
        .local_path(&row.store_key)
        .ok_or_else(|| ApiError::Internal("store has no local file".into()))?;
    let metadata = Metadata::from_stored(&row.metadata);
    let file = NamedFile::open_async(&path)
        .await
        .map_err(|e| ApiError::Unavailable(format!("opening {e}")))?;
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
    response.headers_mut().insert(
        actix_web::http::header::X_CONTENT_TYPE_OPTIONS,
        actix_web::http::header::HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// `filetype` if it is a well-formed media type; anything else is served as bytes.
fn content_type(metadata: &Metadata) -> mime::Mime {
    metadata
        .get_str("filetype")
        .and_then(|raw| raw.parse::<mime::Mime>().ok())
        .unwrap_or(mime::APPLICATION_OCTET_STREAM)
}

/// The last path component of `filename`, without control characters or quotes.
fn sanitized_filename(metadata: &Metadata) -> Option<String> {
    let raw = metadata
        .get_str("filename")
        .or_else(|| metadata.get_str("name"))?;
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';'))
        .take(255)
        .collect();
    let clean = clean.trim().trim_start_matches('.').to_owned();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(
            sanitized_filename(&meta(&[("filename", "../../etc/passwd")])).as_deref(),
            Some("passwd")
        );
        assert_eq!(
            sanitized_filename(&meta(&[("filename", "a\r\nb\".txt")])).as_deref(),
            Some("ab.txt")
        );
        assert_eq!(sanitized_filename(&meta(&[("filename", "..")])), None);
        assert_eq!(sanitized_filename(&meta(&[])), None);
    }

    #[test]
    fn bad_media_types_fall_back_to_octet_stream() {
        assert_eq!(
            content_type(&meta(&[("filetype", "image/png")])),
            mime::IMAGE_PNG
        );
        assert_eq!(
            content_type(&meta(&[("filetype", "not a type")])),
            mime::APPLICATION_OCTET_STREAM
        );
    }
}
