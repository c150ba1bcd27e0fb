//! The draft's headers are Structured Fields (RFC 9651): an Integer or a Boolean item,
//! possibly with parameters, which carry nothing the draft defines and are skipped.

use crate::error::ApiError;

/// The bare item of a structured field: what comes before its first parameter.
fn bare_item(raw: &str) -> &str {
    raw.split(';').next().unwrap_or_default().trim()
}

/// A non-negative sf-integer (at most 15 digits, as RFC 9651 allows).
pub fn sf_integer(name: &'static str, raw: &str) -> Result<u64, ApiError> {
    let item = bare_item(raw);
    if item.is_empty() || item.len() > 15 || !item.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            code(name),
            format!("{name} must be a non-negative integer of at most 15 digits"),
        ));
    }
    item.parse().map_err(|_| ApiError::bad_request(code(name), format!("{name} is out of range")))
}

/// An sf-boolean: `?1` or `?0`.
pub fn sf_boolean(name: &'static str, raw: &str) -> Result<bool, ApiError> {
    match bare_item(raw) {
        "?1" => Ok(true),
        "?0" => Ok(false),
        _ => Err(ApiError::bad_request(code(name), format!("{name} must be ?1 or ?0"))),
    }
}

fn code(name: &str) -> &'static str {
    match name {
        "Upload-Offset" => "invalid_upload_offset",
        "Upload-Length" => "invalid_upload_length",
        "Upload-Complete" | "Upload-Incomplete" => "invalid_upload_complete",
        "Upload-Draft-Interop-Version" => "invalid_interop_version",
        _ => "invalid_header",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integers_take_parameters_and_nothing_else() {
        assert_eq!(sf_integer("Upload-Offset", "0").ok(), Some(0));
        assert_eq!(sf_integer("Upload-Offset", "42;unit=bytes").ok(), Some(42));
        assert_eq!(sf_integer("Upload-Length", "999999999999999").ok(), Some(999_999_999_999_999));
        for bad in ["", "-1", "+1", "1.0", "0x10", "?1", "1000000000000000", "1 2", "\"1\""] {
            let err = sf_integer("Upload-Length", bad).unwrap_err();
            assert_eq!(err.code(), "invalid_upload_length", "{bad}");
        }
    }

    #[test]
    fn booleans_are_question_mark_one_or_zero() {
        assert_eq!(sf_boolean("Upload-Complete", "?1").ok(), Some(true));
        assert_eq!(sf_boolean("Upload-Complete", " ?0 ").ok(), Some(false));
        assert_eq!(sf_boolean("Upload-Complete", "?1;a=b").ok(), Some(true));
        for bad in ["", "1", "true", "?2", "?", "? 1"] {
            assert_eq!(sf_boolean("Upload-Complete", bad).unwrap_err().code(), "invalid_upload_complete", "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_integer_in_range_round_trips(value in 0u64..=999_999_999_999_999) {
            prop_assert_eq!(sf_integer("Upload-Offset", &value.to_string()).ok(), Some(value));
        }

        #[test]
        fn no_input_panics(raw in ".*") {
            let _ = sf_integer("Upload-Offset", &raw);
            let _ = sf_boolean("Upload-Complete", &raw);
        }
    }
}
