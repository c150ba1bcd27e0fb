//! What browsers need: CORS for the tus and IETF headers (so Uppy and tus-js-client work from
//! a page), and security headers on every response.

use actix_cors::Cors;
use actix_web::http::{header, Method};
use actix_web::middleware::DefaultHeaders;

use crate::config::CorsSettings;

/// Response headers a browser client must be able to read.
const EXPOSED: &[&str] = &[
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Upload-Concat",
    "Upload-Complete",
    "Upload-Limit",
    "Upload-Draft-Interop-Version",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Idempotent-Replayed",
    "X-Request-Id",
    "Retry-After",
];

/// Request headers a browser client may send.
const ALLOWED: &[&str] = &[
    "Authorization",
    "Content-Type",
    "Tus-Resumable",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Concat",
    "Upload-Checksum",
    "Upload-Complete",
    "Upload-Draft-Interop-Version",
    "Idempotency-Key",
    "X-HTTP-Method-Override",
    "X-Request-Id",
    "Range",
];

pub fn cors(settings: &CorsSettings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::HEAD, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allowed_headers(ALLOWED.iter().copied())
        .expose_headers(EXPOSED.iter().copied())
        .max_age(settings.max_age_secs);
    for origin in &settings.allowed_origins {
        cors = if origin == "*" { cors.allow_any_origin() } else { cors.allowed_origin(origin) };
    }
    cors
}

/// An API serves no HTML: nothing may frame, sniff or load from it. With TLS on, browsers
/// are told to use nothing else (`hsts_max_age_secs`, 0 for no HSTS).
pub fn security_headers(hsts_max_age_secs: Option<u64>) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"));
    match hsts_max_age_secs.filter(|age| *age > 0) {
        Some(age) => headers.add((header::STRICT_TRANSPORT_SECURITY, format!("max-age={age}"))),
        None => headers,
    }
}

/// Swagger UI at `/docs/` loads its own (vendored) scripts and styles; everything else
/// keeps `default-src 'none'`.
pub async fn docs_csp(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody + 'static>, actix_web::Error> {
    let docs = req.path().starts_with("/docs/");
    let mut response = next.call(req).await?;
    if docs {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        );
    }
    Ok(response)
}

/// Caps the request head: over `server.max_header_bytes` in total gets 431.
pub async fn limit_header_size(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody + 'static>>,
    actix_web::Error,
> {
    use actix_web::web;
    let limit = req.app_data::<web::Data<crate::state::AppState>>().map(|s| s.settings.server.max_header_bytes);
    let size: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if limit.is_some_and(|limit| size > limit) {
        let error = crate::error::ApiError::HeadersTooLarge(format!("request headers are {size} bytes"));
        return Ok(req.error_response(error).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}
