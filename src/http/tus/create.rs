use actix_web::{web, HttpRequest, HttpResponse};

use super::{expires_header, location, require_tus, OFFSET_OCTET_STREAM};
use crate::auth::Caller;
use crate::db::models::{StoredResponse, UploadRow};
use crate::domain::{metadata::MetadataLimits, Checksum};
use crate::domain::{parse_upload_concat, Metadata, UploadConcat, UploadId};
use crate::error::ApiError;
use crate::http::body::append_body;
use crate::http::headers;
use crate::http::idempotency::idempotent;
use crate::http::resumable::{self, InteropVersion};
use crate::session::AppendSpec;
use crate::state::AppState;
use crate::upload::{create_upload, NewUpload};

/// tus creation (and creation-with-upload, defer-length, concatenation).
#[utoipa::path(post, path = "/files", tag = "tus", security(("bearer" = [])),
    params(
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Length" = Option<u64>, Header, description = "Total size; or Upload-Defer-Length: 1"),
        ("Upload-Defer-Length" = Option<u8>, Header),
        ("Upload-Metadata" = Option<String>, Header, description = "key base64value pairs, comma separated"),
        ("Upload-Concat" = Option<String>, Header, description = "partial, or final;/files/a /files/b"),
        ("Upload-Checksum" = Option<String>, Header, description = "With a creation-with-upload body"),
        ("Idempotency-Key" = Option<String>, Header),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream", description = "Optional first chunk"),
    responses(
        (status = 201, description = "Created", headers(("Location" = String), ("Upload-Offset" = u64), ("Upload-Expires" = String))),
        (status = 400, body = crate::error::ErrorBody, description = "Bad request (stable error code)"), (status = 401, body = crate::error::ErrorBody, description = "Missing or invalid bearer token"), (status = 413, body = crate::error::ErrorBody, description = "Too large"),
        (status = 429, body = crate::error::ErrorBody, description = "Rate limit or quota; Retry-After and RateLimit-*"),
        (status = 460, body = crate::error::ErrorBody, description = "checksum_mismatch: the first chunk does not match Upload-Checksum"),
        (status = 503, body = crate::error::ErrorBody, description = "Database or store unavailable (Retry-After)"),
    )
)]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
) -> HttpResponse {
    match InteropVersion::of(&req) {
        Ok(Some(version)) => {
            idempotent(&state, &req, &caller, || resumable::create(&state, &req, &caller, version, payload)).await
        }
        Ok(None) => idempotent(&state, &req, &caller, || run(&state, &req, &caller, payload)).await,
        Err(err) => err.to_stored().into_response(),
    }
}

/// What a creation request asks for.
struct Creation {
    length: Option<u64>,
    metadata: Metadata,
    concat: Option<UploadConcat>,
}

fn parse(state: &AppState, req: &HttpRequest) -> Result<Creation, ApiError> {
    let limits = &state.settings.uploads;
    let concat = headers::optional(req, "Upload-Concat")?
        .map(|raw| parse_upload_concat(raw, limits.max_concat_parts))
        .transpose()?;
    let length = headers::optional_number(req, "Upload-Length")?;
    let deferred = match headers::optional(req, "Upload-Defer-Length")? {
        None => false,
        Some("1") => true,
        Some(_) => return Err(ApiError::bad_request("invalid_defer_length", "Upload-Defer-Length must be 1")),
    };
    let is_final = matches!(concat, Some(UploadConcat::Final(_)));
    match (length, deferred, is_final) {
        (Some(_), true, _) => {
            return Err(ApiError::bad_request("invalid_length", "send Upload-Length or Upload-Defer-Length, not both"))
        }
        (None, false, false) => {
            return Err(ApiError::bad_request("missing_length", "Upload-Length or Upload-Defer-Length: 1 is required"))
        }
        (Some(_), _, true) | (_, true, true) => {
            return Err(ApiError::bad_request("invalid_length", "a final upload's length is the sum of its parts"))
        }
        _ => {}
    }
    if let Some(length) = length.filter(|l| *l > limits.max_size) {
        return Err(ApiError::TooLarge {
            code: "upload_too_large",
            message: format!("Upload-Length {length} exceeds Tus-Max-Size {}", limits.max_size),
        });
    }
    let metadata = match headers::optional(req, "Upload-Metadata")? {
        Some(raw) => Metadata::parse(
            raw,
            &MetadataLimits { max_bytes: limits.max_metadata_bytes, max_keys: limits.max_metadata_keys },
        )?,
        None => Metadata::default(),
    };
    Ok(Creation { length, metadata, concat })
}

async fn run(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    payload: web::Payload,
) -> Result<StoredResponse, ApiError> {
    require_tus(req)?;
    let creation = parse(state, req)?;
    if let Some(UploadConcat::Final(parts)) = &creation.concat {
        let row = crate::upload::concatenate(state, caller, parts, creation.metadata.raw()).await?;
        return Ok(created(req, &row));
    }
    // creation-with-upload: a body of the tus media type is the first chunk.
    let with_body = headers::content_type(req)?.as_deref() == Some(OFFSET_OCTET_STREAM);
    let first_chunk = if with_body {
        Some(AppendSpec {
            expected_offset: 0,
            declare_length: None,
            checksum: headers::optional(req, "Upload-Checksum")?.map(Checksum::parse).transpose()?,
            content_length: headers::content_length(req)?,
        })
    } else {
        None
    };

    let partial = matches!(creation.concat, Some(UploadConcat::Partial));
    let new = NewUpload { length: creation.length, metadata: creation.metadata.raw().to_owned(), partial };
    let row = create_upload(state, caller, new).await?;
    let id = UploadId::parse(&row.id)?;

    let row = match first_chunk {
        Some(spec) => append_body(state, &id, spec, req, payload).await?,
        None => row,
    };
    Ok(created(req, &row))
}

fn created(req: &HttpRequest, row: &UploadRow) -> StoredResponse {
    let mut headers =
        vec![("Location".to_owned(), location(req, &row.id)), ("Upload-Offset".to_owned(), row.offset().to_string())];
    headers.extend(expires_header(row));
    StoredResponse { status: 201, headers, body: Vec::new() }
}
