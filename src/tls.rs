//! The listener's TLS configuration from PEM files (rustls with aws-lc-rs, the provider
//! the rest of the tree already builds).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::TlsSettings;

/// TLS 1.2 and 1.3 with rustls's safe defaults; ALPN (h2, http/1.1) is added by actix-http.
pub fn server_config(tls: &TlsSettings) -> anyhow::Result<ServerConfig> {
    if tls.cert_file.is_empty() || tls.key_file.is_empty() {
        bail!("TLS needs both server.tls.cert_file and server.tls.key_file");
    }
    let certs = read_certs(Path::new(&tls.cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .with_context(|| format!("reading the TLS private key {}", tls.key_file))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    Ok(config)
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading the TLS certificate {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the TLS certificate {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}
