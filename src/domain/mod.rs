//! Header and identifier types. Each is parsed once, at the edge; handlers never read raw
//! header strings.

mod checksum;
mod concat;
mod http_date;
pub mod metadata;
mod numbers;
mod upload_id;

pub use checksum::{Checksum, ChecksumAlgorithm, Hasher};
pub use concat::{parse_upload_concat, UploadConcat};
pub use http_date::http_date;
pub use metadata::Metadata;
pub use numbers::parse_non_negative;
pub use upload_id::UploadId;

/// A header value was malformed: the stable error code and a human explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: &'static str,
    pub message: String,
}

impl ParseError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ParseError { code, message: message.into() }
    }
}

impl From<ParseError> for crate::error::ApiError {
    fn from(err: ParseError) -> Self {
        crate::error::ApiError::BadRequest { code: err.code, message: err.message }
    }
}
