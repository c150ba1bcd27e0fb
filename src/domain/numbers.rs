use super::ParseError;

/// Parses `Upload-Offset` / `Upload-Length` style values: ASCII digits only (no sign, no
/// spaces, no `+`), fitting in an i64 so it can be stored in the database unchanged.
pub fn parse_non_negative(header: &'static str, raw: &str) -> Result<u64, ParseError> {
    let code = match header {
        "Upload-Offset" => "invalid_upload_offset",
        "Upload-Length" => "invalid_upload_length",
        _ => "invalid_header",
    };
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(code, format!("{header} must be a non-negative integer")));
    }
    raw.parse::<i64>()
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| ParseError::new(code, format!("{header} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_digits() {
        assert_eq!(parse_non_negative("Upload-Offset", "0"), Ok(0));
        assert_eq!(parse_non_negative("Upload-Offset", "0042"), Ok(42));
        assert_eq!(parse_non_negative("Upload-Length", "9223372036854775807"), Ok(i64::MAX as u64));
    }

    #[test]
    fn rejects_signs_spaces_and_overflow() {
        for bad in ["", "-1", "+1", " 1", "1 ", "1.0", "0x10", "9223372036854775808", "99999999999999999999"] {
            let err = parse_non_negative("Upload-Length", bad).unwrap_err();
            assert_eq!(err.code, "invalid_upload_length", "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_every_i64(v in 0i64..=i64::MAX) {
            prop_assert_eq!(parse_non_negative("Upload-Offset", &v.to_string()), Ok(v as u64));
        }

        #[test]
        fn never_panics(raw in "\\PC*") {
            let _ = parse_non_negative("Upload-Offset", &raw);
        }
    }
}
