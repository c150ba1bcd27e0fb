//! The draft's three problem types (RFC 9457), for the errors they name. The body keeps
//! Hoist's stable `code` beside them, so clients reading either find what they look for;
//! other errors keep Hoist's plain JSON body.

use serde::Serialize;

use crate::db::models::StoredResponse;
use crate::error::ApiError;

const TYPES: &str = "https://iana.org/assignments/http-problem-types";

/// An RFC 9457 problem detail of the draft's, with Hoist's stable code.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    /// `https://iana.org/assignments/http-problem-types#` and the problem's name.
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    code: &'static str,
    /// The upload's offset (mismatching-upload-offset only).
    #[serde(rename = "expected-offset", skip_serializing_if = "Option::is_none")]
    expected_offset: Option<u64>,
    /// The request's `Upload-Offset` (mismatching-upload-offset only).
    #[serde(rename = "provided-offset", skip_serializing_if = "Option::is_none")]
    provided_offset: Option<u64>,
}

/// The draft's answer to `err`, if it names one; None leaves the error as it is (among them
/// every transient error, which `Idempotency-Key` must not store as an answer).
pub fn render(err: &ApiError) -> Option<StoredResponse> {
    let (name, title, offsets) = match err {
        ApiError::OffsetMismatch { current, requested } => (
            "mismatching-upload-offset",
            "offset from request does not match offset of resource",
            Some((*current, *requested)),
        ),
        ApiError::UploadCompleted => ("completed-upload", "upload is already completed", None),
        ApiError::InconsistentLength(_) => {
            ("inconsistent-upload-length", "inconsistent length values for upload", None)
        }
        _ => return None,
    };
    let mut stored = err.to_stored();
    let body = ProblemBody {
        kind: format!("{TYPES}#{name}"),
        title,
        status: stored.status,
        detail: err.to_string(),
        code: err.code(),
        expected_offset: offsets.map(|(expected, _)| expected),
        provided_offset: offsets.map(|(_, provided)| provided),
    };
    for (name, value) in stored.headers.iter_mut() {
        if name.eq_ignore_ascii_case("content-type") {
            *value = PROBLEM_JSON.to_owned();
        }
    }
    stored.body = serde_json::to_vec(&body).unwrap_or_default();
    Some(stored)
}

pub const PROBLEM_JSON: &str = "application/problem+json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_mismatch_names_both_offsets() {
        let stored = render(&ApiError::OffsetMismatch { current: 5, requested: 9 }).unwrap();
        assert_eq!(stored.status, 409);
        assert!(stored.headers.contains(&("Upload-Offset".to_owned(), "5".to_owned())));
        assert!(stored.headers.contains(&("content-type".to_owned(), "application/problem+json".to_owned())));
        let body: serde_json::Value = serde_json::from_slice(&stored.body).unwrap();
        assert_eq!(body["type"], "https://iana.org/assignments/http-problem-types#mismatching-upload-offset");
        assert_eq!((body["expected-offset"].as_u64(), body["provided-offset"].as_u64()), (Some(5), Some(9)));
        assert_eq!(body["code"], "offset_mismatch");
    }

    #[test]
    fn other_errors_are_left_alone() {
        assert!(render(&ApiError::Locked).is_none());
        assert!(render(&ApiError::NotFound).is_none());
    }
}
