use actix_web::HttpRequest;

use crate::domain::parse_non_negative;
use crate::error::ApiError;

/// A header's value as text; a value that is not visible ASCII is a 400, not ignored.
pub fn optional<'a>(req: &'a HttpRequest, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| ApiError::bad_request("invalid_header", format!("{name} must be ASCII"))),
    }
}

pub fn required<'a>(req: &'a HttpRequest, name: &'static str) -> Result<&'a str, ApiError> {
    optional(req, name)?.ok_or_else(|| ApiError::bad_request("missing_header", format!("{name} is required")))
}

pub fn optional_number(req: &HttpRequest, name: &'static str) -> Result<Option<u64>, ApiError> {
    optional(req, name)?.map(|raw| parse_non_negative(name, raw).map_err(ApiError::from)).transpose()
}

pub fn content_length(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    optional_number(req, "Content-Length")
}

/// The media type without parameters, lowercased.
pub fn content_type(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    Ok(optional(req, "Content-Type")?.map(|raw| raw.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()))
}
