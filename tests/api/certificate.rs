//! A self-signed certificate for `localhost` made by openssl (installed by
//! scripts/install-test-deps). Shared with the benchmark, which includes this file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes `cert.pem` and `key.pem` into `dir`: a P-256 leaf for `localhost` and 127.0.0.1,
/// valid for a day. Returns their paths.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A leaf, not a CA: rustls refuses a CA certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs (scripts/install-test-deps)");
    assert!(status.success(), "openssl made no certificate");
    (cert, key)
}
