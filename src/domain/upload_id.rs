use std::fmt;

use super::ParseError;

/// An upload's id: 32 lowercase hex digits (a v4 UUID without dashes). Anything else in a
/// URL is rejected before it reaches the database or the file system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    pub fn new_random() -> Self {
        UploadId(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let valid = raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(UploadId(raw.to_owned()))
        } else {
            Err(ParseError::new("invalid_upload_id", "an upload id is 32 lowercase hex digits"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn random_ids_parse_back() {
        let id = UploadId::new_random();
        assert_eq!(UploadId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn rejects_path_tricks_and_case() {
        for bad in [
            "",
            "../etc/passwd",
            "ABCDEF0123456789ABCDEF0123456789",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
        ] {
            assert!(UploadId::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_accepts_anything_but_hex(raw in "\\PC{0,40}") {
            if let Ok(id) = UploadId::parse(&raw) {
                prop_assert!(id.as_str().len() == 32 && id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }
}
