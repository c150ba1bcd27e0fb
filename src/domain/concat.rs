use super::{ParseError, UploadId};

/// `Upload-Concat` on creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadConcat {
    Partial,
    /// The partial uploads, in order.
    Final(Vec<UploadId>),
}

/// Parses `partial` or `final;<url> <url> …`. URLs may be absolute or paths; the upload id
/// is their last path segment.
pub fn parse_upload_concat(raw: &str, max_parts: usize) -> Result<UploadConcat, ParseError> {
    let raw = raw.trim();
    if raw == "partial" {
        return Ok(UploadConcat::Partial);
    }
    let Some(list) = raw.strip_prefix("final;") else {
        return Err(ParseError::new("invalid_upload_concat", "Upload-Concat is `partial` or `final;<urls>`"));
    };
    let mut ids = Vec::new();
    for url in list.split_ascii_whitespace() {
        if ids.len() == max_parts {
            return Err(ParseError::new(
                "too_many_concat_parts",
                format!("a final upload joins at most {max_parts} partial uploads"),
            ));
        }
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        ids.push(
            UploadId::parse(last)
                .map_err(|_| ParseError::new("invalid_upload_concat", format!("{url:?} is not an upload URL")))?,
        );
    }
    if ids.is_empty() {
        return Err(ParseError::new("invalid_upload_concat", "a final upload needs at least one partial upload"));
    }
    Ok(UploadConcat::Final(ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn parses_paths_and_absolute_urls() {
        let raw = format!("final;/files/{A} http://example.test/files/{B}");
        let parsed = parse_upload_concat(&raw, 10).unwrap();
        assert_eq!(parsed, UploadConcat::Final(vec![UploadId::parse(A).unwrap(), UploadId::parse(B).unwrap()]));
        assert_eq!(parse_upload_concat("partial", 10).unwrap(), UploadConcat::Partial);
    }

    #[test]
    fn rejects_garbage_and_long_lists() {
        assert!(parse_upload_concat("final;", 10).is_err());
        assert!(parse_upload_concat("final;/files/../x", 10).is_err());
        assert!(parse_upload_concat("whole", 10).is_err());
        let many = format!("final;{}", vec![format!("/files/{A}"); 3].join(" "));
        assert_eq!(parse_upload_concat(&many, 2).unwrap_err().code, "too_many_concat_parts");
    }

    proptest! {
        #[test]
        fn never_panics(raw in "\\PC{0,200}") {
            let _ = parse_upload_concat(&raw, 10);
        }
    }
}
