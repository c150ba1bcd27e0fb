//! Hoist's own signed download URLs (the disk store's counterpart of S3 presigned GETs):
//! `/downloads/{id}?expires=<unix seconds>&signature=<hex HMAC-SHA256 of "id\nexpires">`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub struct UrlSigner {
    key: Vec<u8>,
}

impl UrlSigner {
    pub fn new(key: Vec<u8>) -> Self {
        UrlSigner { key }
    }

    fn mac(&self, id: &str, expires: i64) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The path and query of a URL valid until `expires` (unix seconds).
    pub fn sign(&self, id: &str, expires: i64) -> String {
        let signature: String =
            self.mac(id, expires).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("/downloads/{id}?expires={expires}&signature={signature}")
    }

    /// Constant-time check of the signature, then of the expiry.
    pub fn verify(&self, id: &str, expires: i64, signature_hex: &str, now: i64) -> bool {
        let Some(signature) = decode_hex(signature_hex) else { return false };
        self.mac(id, expires).verify_slice(&signature).is_ok() && now <= expires
    }
}

fn decode_hex(raw: &str) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    (0..raw.len()).step_by(2).map(|i| u8::from_str_radix(raw.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_until_expiry_and_only_for_their_upload() {
        let signer = UrlSigner::new(b"k".to_vec());
        let url = signer.sign("abc", 100);
        let signature = url.rsplit('=').next().unwrap();
        assert!(signer.verify("abc", 100, signature, 100));
        assert!(!signer.verify("abc", 100, signature, 101), "expired");
        assert!(!signer.verify("abd", 100, signature, 50), "other upload");
        assert!(!signer.verify("abc", 101, signature, 50), "other expiry");
        assert!(!signer.verify("abc", 100, "zz", 50));
        assert!(!UrlSigner::new(b"other".to_vec()).verify("abc", 100, signature, 50), "other key");
    }
}
