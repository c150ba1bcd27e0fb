//! The listener's TLS configuration from PEM files (rustls with aws-lc-rs, the provider
//! the rest of the tree already builds), and what the listener reads off an accepted TLS
//! connection.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use actix_http::Protocol;
use actix_rt::net::TcpStream;
use actix_tls::accept::rustls_0_23::TlsStream;

use crate::config::TlsSettings;
use crate::listener::{InterimIo, ReadGate};

/// What a TLS listener offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// HTTP/1.1 alone: the resumable-upload listener (`server.listen`). The IETF draft's 104
    /// needs HTTP/1.1 here (actix-http's HTTP/2 stack sends no interim response), and a client
    /// that offers both, as iOS URLSession does, takes HTTP/2 whenever the server offers it.
    Http1,
    /// HTTP/2 first, then HTTP/1.1: the listener at `server.tls.h2_listen`.
    Http2AndHttp1,
}

/// TLS 1.2 and 1.3 with rustls's safe defaults, offering `offer` by ALPN. A client that
/// offers ALPN but none of these protocols is refused in the handshake.
pub fn server_config(tls: &TlsSettings, offer: Offer) -> anyhow::Result<ServerConfig> {
    if tls.cert_file.is_empty() || tls.key_file.is_empty() {
        bail!("TLS needs both server.tls.cert_file and server.tls.key_file");
    }
    let certs = read_certs(Path::new(&tls.cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .with_context(|| format!("reading the TLS private key {}", tls.key_file))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = match offer {
        Offer::Http1 => vec![HTTP1.to_vec()],
        Offer::Http2AndHttp1 => vec![H2.to_vec(), HTTP1.to_vec()],
    };
    Ok(config)
}

const H2: &[u8] = b"h2";
const HTTP1: &[u8] = b"http/1.1";

/// A TLS connection as the listener accepts it: TLS over the listener's own stream wrapper.
pub type TlsConnection = TlsStream<InterimIo<TcpStream>>;

/// The protocol the client chose by ALPN (HTTP/1.1 without ALPN).
pub fn protocol(io: &TlsConnection) -> Protocol {
    match io.get_ref().1.alpn_protocol() {
        Some(H2) => Protocol::Http2,
        _ => Protocol::Http1,
    }
}

/// The read gate of an HTTP/1.1 connection under TLS (see [`ReadGate`]); shut, it holds the
/// encrypted bytes in the kernel's socket buffer. None for HTTP/2: there one upload's pump
/// shutting the gate would stall every other stream of the connection (a HEAD among them),
/// and HTTP/2's own flow control already holds back each stream's body.
pub fn http1_read_gate(io: &TlsConnection) -> Option<ReadGate> {
    match protocol(io) {
        Protocol::Http1 => Some(io.get_ref().0.read_gate()),
        _ => None,
    }
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
