use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::ParseError;

/// Standard alphabet; padding optional, since some clients strip it.
const METADATA_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parsed `Upload-Metadata`: comma-separated `key base64value` pairs, keys unique, values
/// optional. The raw header is kept so HEAD echoes exactly what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    raw: String,
    pairs: Vec<(String, Vec<u8>)>,
}

pub struct MetadataLimits {
    pub max_bytes: usize,
    pub max_keys: usize,
}

impl Metadata {
    pub fn parse(raw: &str, limits: &MetadataLimits) -> Result<Self, ParseError> {
        let invalid = |message: String| ParseError::new("invalid_metadata", message);
        if raw.len() > limits.max_bytes {
            return Err(ParseError::new(
                "metadata_too_large",
                format!("Upload-Metadata is limited to {} bytes", limits.max_bytes),
            ));
        }
        let raw = raw.trim();
        let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
        if raw.is_empty() {
            return Ok(Metadata::default());
        }
        for pair in raw.split(',') {
            let pair = pair.trim_matches(' ');
            let (key, value) = match pair.split_once(' ') {
                Some((key, value)) => (key, value),
                None => (pair, ""),
            };
            if key.is_empty() {
                return Err(invalid("an Upload-Metadata key is empty".into()));
            }
            if !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                return Err(invalid(format!("Upload-Metadata key {key:?} must be printable ASCII")));
            }
            if value.contains(' ') {
                return Err(invalid(format!("Upload-Metadata value for {key:?} has a space")));
            }
            let decoded = METADATA_BASE64
                .decode(value)
                .map_err(|_| invalid(format!("Upload-Metadata value for {key:?} is not base64")))?;
            if pairs.iter().any(|(k, _)| k == key) {
                return Err(invalid(format!("Upload-Metadata key {key:?} appears twice")));
            }
            pairs.push((key.to_owned(), decoded));
            if pairs.len() > limits.max_keys {
                return Err(ParseError::new(
                    "metadata_too_large",
                    format!("Upload-Metadata is limited to {} keys", limits.max_keys),
                ));
            }
        }
        Ok(Metadata { raw: raw.to_owned(), pairs })
    }

    /// Builds metadata from decoded pairs (for form uploads), producing the header form.
    pub fn from_pairs(pairs: Vec<(String, Vec<u8>)>) -> Self {
        let raw = pairs
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v))
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        Metadata { raw, pairs }
    }

    /// Re-reads a value stored in the database (it was validated when it came in).
    pub fn from_stored(raw: &str) -> Self {
        let unlimited = MetadataLimits { max_bytes: usize::MAX, max_keys: usize::MAX };
        Metadata::parse(raw, &unlimited).unwrap_or_default()
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: MetadataLimits = MetadataLimits { max_bytes: 4096, max_keys: 8 };

    #[test]
    fn parses_the_spec_example() {
        let m = Metadata::parse("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential", &LIMITS).unwrap();
        assert_eq!(m.get_str("filename"), Some("world_domination_plan.pdf"));
        assert_eq!(m.get("is_confidential"), Some(&b""[..]));
        assert_eq!(m.raw(), "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential");
    }

    #[test]
    fn accepts_spaces_after_commas_and_unpadded_values() {
        let m = Metadata::parse("a YQ, b Yg", &LIMITS).unwrap();
        assert_eq!(m.get_str("a"), Some("a"));
        assert_eq!(m.get_str("b"), Some("b"));
    }

    #[test]
    fn rejects_duplicates_bad_base64_and_empty_keys() {
        assert_eq!(Metadata::parse("a YQ==,a Yg==", &LIMITS).unwrap_err().code, "invalid_metadata");
        assert_eq!(Metadata::parse("a !!!", &LIMITS).unwrap_err().code, "invalid_metadata");
        assert_eq!(Metadata::parse(",a YQ==", &LIMITS).unwrap_err().code, "invalid_metadata");
        assert_eq!(Metadata::parse("a YQ== Yg==", &LIMITS).unwrap_err().code, "invalid_metadata");
    }

    #[test]
    fn enforces_size_and_key_limits() {
        let many = (0..9).map(|i| format!("k{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(Metadata::parse(&many, &LIMITS).unwrap_err().code, "metadata_too_large");
        let big = format!("k {}", "A".repeat(5000));
        assert_eq!(Metadata::parse(&big, &LIMITS).unwrap_err().code, "metadata_too_large");
    }

    proptest! {
        #[test]
        fn never_panics(raw in "\\PC{0,200}") {
            let _ = Metadata::parse(&raw, &LIMITS);
        }

        #[test]
        fn round_trips_encoded_pairs(
            pairs in proptest::collection::btree_map("[a-zA-Z0-9_.-]{1,12}", proptest::collection::vec(any::<u8>(), 0..40), 0..8)
        ) {
            let pairs: Vec<(String, Vec<u8>)> = pairs.into_iter().collect();
            let built = Metadata::from_pairs(pairs.clone());
            let parsed = Metadata::parse(built.raw(), &LIMITS).unwrap();
            for (k, v) in &pairs {
                prop_assert_eq!(parsed.get(k), Some(v.as_slice()));
            }
        }
    }
}
