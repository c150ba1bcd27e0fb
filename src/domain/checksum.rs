use std::fmt;

use base64::Engine;
use sha1::Digest;

use super::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Md5,
    Sha256,
    Crc32c,
}

impl ChecksumAlgorithm {
    /// What `Tus-Checksum-Algorithm` advertises.
    pub const ADVERTISED: &'static str = "sha1,md5,sha256,crc32c";

    pub fn parse(name: &str) -> Result<Self, ParseError> {
        match name {
            "sha1" => Ok(ChecksumAlgorithm::Sha1),
            "md5" => Ok(ChecksumAlgorithm::Md5),
            "sha256" => Ok(ChecksumAlgorithm::Sha256),
            "crc32c" => Ok(ChecksumAlgorithm::Crc32c),
            _ => Err(ParseError::new(
                "checksum_algorithm_unsupported",
                format!("checksum algorithm {name:?} is not supported; use one of {}", Self::ADVERTISED),
            )),
        }
    }

    fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Md5 => 16,
            ChecksumAlgorithm::Sha256 => 32,
            ChecksumAlgorithm::Crc32c => 4,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            ChecksumAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Md5 => Hasher::Md5(md5::Md5::new()),
            ChecksumAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Crc32c => Hasher::Crc32c(0),
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Md5 => "md5",
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Crc32c => "crc32c",
        })
    }
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub digest: Vec<u8>,
}

impl Checksum {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let (name, encoded) = raw
            .trim()
            .split_once(' ')
            .ok_or_else(|| ParseError::new("invalid_checksum", "Upload-Checksum is `<algorithm> <base64 digest>`"))?;
        let algorithm = ChecksumAlgorithm::parse(name)?;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ParseError::new("invalid_checksum", "the Upload-Checksum digest is not base64"))?;
        if digest.len() != algorithm.digest_len() {
            return Err(ParseError::new(
                "invalid_checksum",
                format!("a {algorithm} digest is {} bytes, not {}", algorithm.digest_len(), digest.len()),
            ));
        }
        Ok(Checksum { algorithm, digest })
    }
}

/// A running digest over a PATCH body.
#[derive(Clone)]
pub enum Hasher {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    Crc32c(u32),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Crc32c(crc) => crc.to_be_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn parses_each_algorithm_and_verifies_known_digests() {
        let cases = [
            ("sha1", "Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
            ("md5", "XrY7u+Ae7tCTyyK7j1rNww=="),
            ("sha256", "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="),
        ];
        for (name, digest) in cases {
            let parsed = Checksum::parse(&format!("{name} {digest}")).unwrap();
            let mut hasher = parsed.algorithm.hasher();
            hasher.update(b"hello world");
            assert_eq!(hasher.finish(), parsed.digest, "{name}");
        }
        // crc32c("hello world") = 0xc99465aa, big-endian as Google Cloud Storage and S3 send it.
        let crc = Checksum::parse(&format!("crc32c {}", b64(&[0xc9, 0x94, 0x65, 0xaa]))).unwrap();
        let mut hasher = crc.algorithm.hasher();
        hasher.update(b"hello ");
        hasher.update(b"world");
        assert_eq!(hasher.finish(), crc.digest);
    }

    #[test]
    fn unknown_algorithm_has_its_own_code() {
        assert_eq!(Checksum::parse("sha512 AAAA").unwrap_err().code, "checksum_algorithm_unsupported");
        assert_eq!(Checksum::parse("sha1 not-base64!").unwrap_err().code, "invalid_checksum");
        assert_eq!(Checksum::parse("sha1 AAAA").unwrap_err().code, "invalid_checksum");
        assert_eq!(Checksum::parse("sha1").unwrap_err().code, "invalid_checksum");
    }

    proptest! {
        #[test]
        fn never_panics(raw in "\\PC{0,100}") {
            let _ = Checksum::parse(&raw);
        }

        #[test]
        fn accepts_any_digest_of_the_right_length(bytes in proptest::collection::vec(any::<u8>(), 32)) {
            let parsed = Checksum::parse(&format!("sha256 {}", b64(&bytes))).unwrap();
            prop_assert_eq!(parsed.digest, bytes);
        }
    }
}
