//! The one error type at the HTTP edge: a stable machine-readable code, an HTTP status and
//! a JSON body `{"code": "...", "message": "..."}`. Internal causes are logged, never sent.

use actix_web::http::header::{self, HeaderName};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::models::StoredResponse;
use crate::db::DbError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this role may not do that")]
    Forbidden,
    #[error("no such upload")]
    NotFound,
    #[error("no such resource")]
    NoRoute,
    /// The path exists but not with this method; `allow` lists the methods it takes.
    #[error("this resource does not take that method")]
    MethodNotAllowed { allow: &'static str },
    #[error("upload offset is {current}, not {requested}")]
    OffsetMismatch { current: u64, requested: u64 },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("another request is writing this upload; retry shortly")]
    Locked,
    #[error("the upload has expired")]
    Expired,
    #[error("the upload was terminated")]
    Terminated,
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// The lengths a request indicates disagree with each other or with the upload's.
    #[error("{0}")]
    InconsistentLength(String),
    #[error("the upload is complete; nothing can be appended")]
    UploadCompleted,
    #[error("a final upload made by concatenation cannot be patched")]
    PatchOnFinal,
    #[error("the Tus-Resumable version is not supported")]
    UnsupportedVersion,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the body does not match Upload-Checksum")]
    ChecksumMismatch,
    #[error("the same Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInFlight,
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        /// The `RateLimit-*` figures: the limit, what is left, and when it is whole again.
        limit: u64,
        remaining: u64,
        reset: std::time::Duration,
        retry_after: std::time::Duration,
    },
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("the service is temporarily unavailable; retry")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

/// Every error's body: a stable machine-readable code and a message for people.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "upload_not_found",
            ApiError::NoRoute => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::OffsetMismatch { .. } => "offset_mismatch",
            ApiError::Conflict { code, .. } => code,
            ApiError::Locked => "upload_locked",
            ApiError::Expired => "upload_expired",
            ApiError::Terminated => "upload_terminated",
            ApiError::TooLarge { code, .. } => code,
            ApiError::InconsistentLength(_) => "inconsistent_upload_length",
            ApiError::UploadCompleted => "upload_completed",
            ApiError::PatchOnFinal => "patch_on_final_upload",
            ApiError::UnsupportedVersion => "tus_version_unsupported",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::ChecksumMismatch => "checksum_mismatch",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::IdempotencyInFlight => "idempotency_request_in_flight",
            ApiError::TooManyRequests { code, .. } => code,
            ApiError::HeadersTooLarge(_) => "headers_too_large",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// Whether a client may retry the same request unchanged and expect another outcome.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::Unavailable(_)
                | ApiError::Internal(_)
                | ApiError::Locked
                | ApiError::IdempotencyInFlight
                | ApiError::TooManyRequests { .. }
        )
    }

    fn public_message(&self) -> String {
        match self {
            // The cause goes to the log, not to the client.
            ApiError::Unavailable(_) => "the service is temporarily unavailable; retry".to_owned(),
            ApiError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::InconsistentLength(_) | ApiError::UploadCompleted => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::PatchOnFinal => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::OffsetMismatch { .. } | ApiError::Conflict { .. } | ApiError::IdempotencyInFlight => {
                StatusCode::CONFLICT
            }
            ApiError::Locked => StatusCode::LOCKED,
            ApiError::Expired | ApiError::Terminated => StatusCode::GONE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedVersion => StatusCode::PRECONDITION_FAILED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ChecksumMismatch => StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.to_stored().into_response()
    }
}

impl ApiError {
    /// The response as data, so that `Idempotency-Key` can store and replay it.
    pub fn to_stored(&self) -> StoredResponse {
        let mut headers = vec![(header::CACHE_CONTROL.to_string(), "no-store".to_owned())];
        match self {
            ApiError::OffsetMismatch { current, .. } => headers.push(("Upload-Offset".into(), current.to_string())),
            ApiError::UnsupportedVersion => headers.push(("Tus-Version".into(), crate::http::tus::TUS_VERSION.into())),
            ApiError::Unauthorized => headers.push((header::WWW_AUTHENTICATE.to_string(), "Bearer".into())),
            ApiError::MethodNotAllowed { allow } => headers.push((header::ALLOW.to_string(), (*allow).to_owned())),
            ApiError::Locked | ApiError::Unavailable(_) | ApiError::IdempotencyInFlight => {
                headers.push((header::RETRY_AFTER.to_string(), "1".into()))
            }
            ApiError::TooManyRequests { limit, remaining, reset, retry_after, .. } => {
                headers.push((header::RETRY_AFTER.to_string(), whole_seconds(*retry_after).to_string()));
                headers.extend(
                    rate_limit_headers(*limit, *remaining, *reset)
                        .map(|(name, value)| (name.to_string(), value.to_string())),
                );
            }
            _ => {}
        }
        headers.push((header::CONTENT_TYPE.to_string(), "application/json".into()));
        let body =
            serde_json::to_vec(&ErrorBody { code: self.code(), message: self.public_message() }).unwrap_or_default();
        StoredResponse { status: self.status_code().as_u16(), headers, body }
    }
}

/// Seconds rounded up, at least 1: `Retry-After: 0` would invite an immediate retry.
fn whole_seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs_f64().ceil().max(1.0) as u64
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the limit
/// is whole again), as in the IETF RateLimit header fields draft: on every limited response
/// and on the 429. Constant names and integer values: no parsing or formatting per request.
pub fn rate_limit_headers(limit: u64, remaining: u64, reset: std::time::Duration) -> [(HeaderName, u64); 3] {
    const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
    [(LIMIT, limit), (REMAINING, remaining), (RESET, reset.as_secs_f64().ceil() as u64)]
}

impl StoredResponse {
    pub fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::build(status);
        for (name, value) in self.headers {
            response.append_header((name, value));
        }
        let mut response = response.body(self.body);
        if status.as_u16() == 460 {
            // tus's own status; give it the reason phrase tus clients print.
            response.head_mut().reason = Some("Checksum Mismatch");
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(cause) => ApiError::Unavailable(cause),
            DbError::Query(cause) => ApiError::Internal(cause.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(key) => ApiError::Internal(format!("store object missing: {key}")),
            StoreError::Io(cause) => ApiError::Unavailable(format!("store: {cause}")),
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            StoreError::Rejected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(err: actix::MailboxError) -> Self {
        ApiError::Unavailable(format!("upload session: {err}"))
    }
}
