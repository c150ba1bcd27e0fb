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

/// An API serves no HTML: nothing may frame, sniff or load from it.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"))
}
