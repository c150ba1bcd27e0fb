//! HTTPS on the listener with a self-signed certificate made by openssl: HTTP/1.1 alone on
//! `listen` (so that a client offering HTTP/2 too, as iOS does, still gets the IETF draft's
//! 104), HTTP/2 on `server.tls.h2_listen`, an upload over each, HSTS, https Locations, no
//! plaintext on the TLS port, and the read gate and the 104 on HTTP/1.1 over TLS only. And TLS on the way to PostgreSQL, through the libpq built
//! into the binary.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use actix_http::Protocol;
use hoist::config::TlsSettings;
use hoist::listener::InterimIo;
use hoist::tls::{Offer, TlsConnection};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use diesel::sql_types::{BigInt, Bool};
use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::{Method, Version};

use crate::binary::{free_port, Server};
use crate::helpers::{
    bytes, header_u64, location, postgres_url, spawn_app_with, test_settings, Backend, TestApp, TestClient,
};

fn self_signed(dir: &Path) -> (String, String) {
    let (cert, key) = crate::certificate::self_signed_certificate(dir);
    (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned())
}

/// A client of the HTTPS listener on `port`, offering HTTP/2 and HTTP/1.1 by ALPN unless
/// `http1_only`.
fn https_client(port: u16, cert: &str, http1_only: bool) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(root)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)));
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

/// An app serving HTTPS with a self-signed certificate (kept in the returned directory), on
/// its port and on an HTTP/2 port of its own, with `tweak` applied to its settings; and the
/// certificate's path.
async fn spawn_tls_app(tweak: impl FnOnce(&mut hoist::config::Settings)) -> (TestApp, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.tls.cert_file = cert.clone();
        s.server.tls.key_file = key;
        s.server.tls.h2_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        tweak(s);
    })
    .await;
    (app, cert, dir)
}

fn h2_port(app: &TestApp) -> u16 {
    app.h2_port.expect("the HTTP/2 listener's port")
}

fn https_base(port: u16) -> String {
    format!("https://localhost:{port}")
}

/// Creates an upload of `length` bytes over `client` to the listener on `port`, asserting 201.
async fn create_over(app: &TestApp, client: &reqwest::Client, port: u16, length: usize) -> reqwest::Response {
    let created = client
        .post(format!("{}/files", https_base(port)))
        .bearer_auth(&app.alice)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .send()
        .await
        .expect("POST over TLS");
    assert_eq!(created.status(), 201);
    created
}

/// The upload at `url` holds `body`, by its offset and by its download; returns the signed
/// download URL it was redirected to.
async fn assert_stored(app: &TestApp, client: &reqwest::Client, url: &str, body: &[u8]) -> String {
    let head = client.head(url).bearer_auth(&app.alice).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(header_u64(head.headers(), "Upload-Offset"), body.len() as u64);
    let redirect = client.get(url).bearer_auth(&app.alice).send().await.unwrap();
    assert_eq!(redirect.status(), 307);
    let signed = location(&redirect);
    let downloaded = client.get(&signed).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(downloaded.as_ref(), body);
    signed
}

async fn upload_over(app: &TestApp, client: &reqwest::Client, port: u16, version: Version) {
    let base = https_base(port);
    let body = bytes(3 * 1024 * 1024 + 17, 9);
    let created = create_over(app, client, port, body.len()).await;
    assert_eq!(created.version(), version);
    let hsts = created.headers().get("Strict-Transport-Security").expect("HSTS").to_str().unwrap().to_owned();
    assert_eq!(hsts, "max-age=31536000");
    let url = location(&created);
    assert!(url.starts_with(&format!("{base}/files/")), "{url}");

    let (first, rest) = body.split_at(1024 * 1024);
    for (offset, chunk) in [(0, first), (first.len(), rest)] {
        let patch = client
            .request(Method::PATCH, &url)
            .bearer_auth(&app.alice)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status(), 204);
    }
    let signed = assert_stored(app, client, &url, &body).await;
    assert!(signed.starts_with(&format!("{base}/downloads/")), "{signed}");
}

/// `listen` speaks HTTP/1.1 even to a client that would rather speak HTTP/2; the HTTP/2
/// listener gives HTTP/2 to such a client and HTTP/1.1 to one that offers only that.
#[actix_rt::test]
async fn uploads_work_over_https_http1_on_listen_and_http2_on_its_own_listener() {
    let (app, cert, _dir) = spawn_tls_app(|_| {}).await;
    let h2 = h2_port(&app);
    upload_over(&app, &https_client(app.port, &cert, false), app.port, Version::HTTP_11).await;
    upload_over(&app, &https_client(h2, &cert, false), h2, Version::HTTP_2).await;
    upload_over(&app, &https_client(h2, &cert, true), h2, Version::HTTP_11).await;

    // The TLS ports speak no plaintext HTTP.
    for port in [app.port, h2] {
        let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/health/live")).send().await;
        assert!(plain.map(|r| r.status() != 200).unwrap_or(true), "plaintext answered on TLS port {port}");
    }
}

/// HTTP/2 is served only where it was asked for: without `server.tls.h2_listen` no port
/// offers it, and `h2_listen` without TLS refuses to start instead of serving plaintext there.
#[actix_rt::test]
async fn http2_needs_its_listener_and_its_listener_needs_tls() {
    let (app, cert, _dir) = spawn_tls_app(|s| s.server.tls.h2_listen = None).await;
    assert_eq!(app.h2_port, None);
    let address = SocketAddr::from(([127, 0, 0, 1], app.port));
    assert!(try_connect_tls(address, &cert, &[b"h2"]).await.is_err(), "an HTTP/2-only client got a connection");

    let (mut settings, _data_dir, _pg) = crate::helpers::test_settings(Backend::Sqlite).await;
    settings.server.tls.h2_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let log = hoist::telemetry::build_logger(&settings.log).unwrap();
    let refused = hoist::startup::Application::build(settings, log).await.err().expect("h2_listen without TLS");
    assert!(format!("{refused:#}").contains("h2_listen"), "{refused:#}");
}

/// The IETF draft's 104 goes through TLS on HTTP/1.1 (iOS uploads over HTTPS) to a client
/// that offers HTTP/2 first, as URLSession does; on the HTTP/2 listener the draft works
/// without it.
#[actix_rt::test]
async fn a_draft_creation_gets_its_104_over_tls_on_listen_and_works_on_http2() {
    use crate::resumable::{head_field, read_head};
    let (app, cert, _dir) = spawn_tls_app(|_| {}).await;
    let data = bytes(50_000, 12);
    let address = SocketAddr::from(([127, 0, 0, 1], app.port));
    let mut tls = connect_tls(address, &cert, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: localhost:{}\r\nAuthorization: Bearer {}\r\n\
         Upload-Draft-Interop-Version: 8\r\nUpload-Complete: ?1\r\nContent-Length: {}\r\n\r\n",
        app.port,
        app.alice,
        data.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let interim = read_head(&mut tls).await;
    assert!(interim.starts_with("HTTP/1.1 104 Upload Resumption Supported\r\n"), "{interim}");
    let url = head_field(&interim, "Location").expect("Location in the 104").to_owned();
    assert!(url.starts_with(&format!("{}/files/", https_base(app.port))), "{url}");
    tls.write_all(&data).await.unwrap();
    tls.flush().await.unwrap();
    let fin = read_head(&mut tls).await;
    assert!(fin.starts_with("HTTP/1.1 201"), "{fin}");
    assert_eq!(head_field(&fin, "Location"), Some(url.as_str()));

    let client = https_client(h2_port(&app), &cert, false);
    let created = client
        .post(format!("{}/files", https_base(h2_port(&app))))
        .bearer_auth(&app.alice)
        .header("Upload-Draft-Interop-Version", "8")
        .header("Upload-Complete", "?1")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!((created.status().as_u16(), created.version()), (201, Version::HTTP_2));
    let url = location(&created);
    assert_stored(&app, &client, &url, &data).await;
}

/// A TLS client connection to `address` that trusts `cert_file`, offering `alpn`.
async fn connect_tls(
    address: SocketAddr,
    cert_file: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    try_connect_tls(address, cert_file, alpn).await.expect("TLS handshake")
}

/// The same, or the handshake's error.
async fn try_connect_tls(
    address: SocketAddr,
    cert_file: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut client =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    client.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await
}

/// A real TLS handshake on loopback, a listener offering `offer` and the client `alpn`,
/// accepted over the listener's stream wrapper as the listener does: the protocol the
/// listener then reads off the connection and whether it gets the read gate, or None when
/// the handshake fails.
async fn accepted_offering(offer: Offer, alpn: &[&[u8]]) -> Option<(Protocol, bool)> {
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = self_signed(dir.path());
    let settings = TlsSettings { cert_file: cert_file.clone(), key_file, hsts_max_age_secs: 0, h2_listen: None };
    let server = Arc::new(hoist::tls::server_config(&settings, offer).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connecting = async {
        let mut tls = try_connect_tls(address, &cert_file, alpn).await.ok()?;
        tls.flush().await.ok()?;
        Some(tls)
    };
    let accepting = async {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(server).accept(InterimIo::new(tcp)).await.ok()?;
        Some(TlsConnection::from(tls))
    };
    let (_client, connection) = tokio::join!(connecting, accepting);
    let connection = connection?;
    Some((hoist::tls::protocol(&connection), hoist::tls::http1_read_gate(&connection).is_some()))
}

#[actix_rt::test]
async fn http1_over_tls_gets_the_read_gate_and_http2_does_not() {
    // `listen`: HTTP/1.1 whatever else the client offers; an HTTP/2-only client is refused.
    assert_eq!(accepted_offering(Offer::Http1, &[b"http/1.1"]).await, Some((Protocol::Http1, true)));
    assert_eq!(accepted_offering(Offer::Http1, &[b"h2", b"http/1.1"]).await, Some((Protocol::Http1, true)));
    assert_eq!(accepted_offering(Offer::Http1, &[b"h2"]).await, None);
    // `h2_listen`: HTTP/2 when offered.
    assert_eq!(accepted_offering(Offer::Http2AndHttp1, &[b"h2", b"http/1.1"]).await, Some((Protocol::Http2, false)));
    assert_eq!(accepted_offering(Offer::Http2AndHttp1, &[b"http/1.1"]).await, Some((Protocol::Http1, true)));
    // A client that offers no ALPN speaks HTTP/1.1.
    for offer in [Offer::Http1, Offer::Http2AndHttp1] {
        assert_eq!(accepted_offering(offer, &[]).await, Some((Protocol::Http1, true)));
    }
}

/// The windows an HTTP/2 server announces as a connection opens: its SETTINGS'
/// `INITIAL_WINDOW_SIZE` (each stream's) and its connection-level WINDOW_UPDATE increment
/// (added to the protocol's initial 65,535 bytes).
async fn announced_h2_windows(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> (u32, u32) {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    tls.write_all(PREFACE).await.unwrap();
    tls.write_all(&EMPTY_SETTINGS).await.unwrap();
    tls.flush().await.unwrap();
    let (mut stream_window, mut connection_increment) = (None, None);
    while stream_window.is_none() || connection_increment.is_none() {
        let mut header = [0u8; 9];
        tls.read_exact(&mut header).await.unwrap();
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        tls.read_exact(&mut payload).await.unwrap();
        match kind {
            // SETTINGS, not its ACK: six bytes per setting; 0x4 is INITIAL_WINDOW_SIZE, which
            // stays 65,535 when the server does not send it.
            0x4 if flags & 0x1 == 0 => {
                let initial = payload
                    .chunks_exact(6)
                    .find(|setting| setting[..2] == [0, 0x4])
                    .map_or(65_535, |setting| u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]));
                stream_window = Some(initial);
            }
            0x8 if stream == 0 => {
                connection_increment =
                    Some(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff);
            }
            _ => {}
        }
    }
    (stream_window.unwrap_or_default(), connection_increment.unwrap_or_default())
}

/// HTTP/2 bodies have no read gate: the windows bound what each stream and connection can
/// hold unread, so they must be the configured ones. And the server's socket must have
/// Nagle off: each WINDOW_UPDATE is a small write, and held behind an unacknowledged one it
/// waited for the client's delayed ACK, every window of every upload.
#[actix_rt::test]
async fn http2_announces_the_configured_windows_over_a_socket_without_nagle() {
    let (app, cert, _dir) = spawn_tls_app(|s| {
        s.server.h2_stream_window_kib = 256;
        s.server.h2_connection_window_kib = 768;
    })
    .await;
    let mut tls = connect_tls(SocketAddr::from(([127, 0, 0, 1], h2_port(&app))), &cert, &[b"h2"]).await;
    let windows = tokio::time::timeout(std::time::Duration::from_secs(10), announced_h2_windows(&mut tls))
        .await
        .expect("the server's SETTINGS and connection WINDOW_UPDATE");
    assert_eq!(windows, (256 * 1024, 768 * 1024 - 65_535));
    let client = tls.get_ref().0.local_addr().unwrap();
    assert_eq!(crate::helpers::server_end_has_nodelay(h2_port(&app), client), Some(true));
}

/// A streamed HTTP/2 request body ends with an empty DATA frame carrying END_STREAM (hyper's
/// way, so reqwest's, and other clients'): an empty last piece must end the body, not fail the
/// write. A body that is a whole number of the store's write batches (512 KiB) left that
/// empty piece alone in the last batch, and the PATCH got 503.
#[actix_rt::test]
async fn an_http2_body_ending_in_an_empty_data_frame_is_stored() {
    let (app, cert, _dir) = spawn_tls_app(|_| {}).await;
    let client = https_client(h2_port(&app), &cert, false);
    let body = bytes(1024 * 1024, 3);
    let url = location(&create_over(&app, &client, h2_port(&app), body.len()).await);
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(256 * 1024).map(|piece| Ok(piece.to_vec())).collect();
    let patch = client
        .request(Method::PATCH, &url)
        .bearer_auth(&app.alice)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", body.len().to_string())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.version(), Version::HTTP_2);
    assert_eq!(patch.status(), 204, "{:?}", patch.text().await);
    assert_stored(&app, &client, &url, &body).await;
}

#[actix_rt::test]
async fn without_tls_no_hsts_is_sent_and_public_url_sets_locations() {
    let app =
        spawn_app_with(Backend::Sqlite, |s| s.server.public_url = "https://uploads.example.test/".to_owned()).await;
    let created = app.create(5).await;
    assert_eq!(created.status(), 201);
    assert!(created.headers().get("Strict-Transport-Security").is_none());
    assert!(location(&created).starts_with("https://uploads.example.test/files/"), "{}", location(&created));
}

#[actix_rt::test]
async fn a_missing_key_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(dir.path());
    let (mut settings, _data_dir, _pg) = crate::helpers::test_settings(Backend::Sqlite).await;
    settings.server.tls.cert_file = cert;
    settings.server.tls.key_file = dir.path().join("absent.pem").to_str().unwrap().to_owned();
    let log = hoist::telemetry::build_logger(&settings.log).unwrap();
    assert!(hoist::startup::Application::build(settings, log).await.is_err());
}

/// Managed PostgreSQL services often refuse plaintext: with `sslmode=require` in the URL the
/// real binary must still serve uploads, and PostgreSQL's own view of the server's
/// connections must show every one of them encrypted.
#[actix_rt::test]
async fn the_server_reaches_postgresql_over_tls_when_the_url_requires_it() {
    let mut admin = PgConnection::establish(&postgres_url("postgres")).expect("PostgreSQL for the tests");
    let ssl_on = diesel::select(diesel::dsl::sql::<Bool>("current_setting('ssl') = 'on'"))
        .get_result::<bool>(&mut admin)
        .expect("read the ssl setting");
    assert!(ssl_on, "this test needs the local PostgreSQL to accept TLS (ssl = on)");

    let (settings, _data_dir, pg) = test_settings(Backend::Postgres).await;
    let pg = pg.expect("a database of the test's own");
    let tls_url = pg.url.replace("sslmode=disable", "sslmode=require");
    assert!(tls_url.contains("sslmode=require"), "{tls_url}");
    let port = free_port();
    let _server =
        Server::start_with(&settings, port, &[("HOIST__DATABASE__URL", &tls_url)], std::process::Stdio::null()).await;
    let app = TestClient::new(port, &settings);
    let data = bytes(100_000, 5);
    let url = app.create_upload(data.len() as u64).await;
    assert_eq!(app.patch(&url, 0, &data).await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, data);

    let mut count = |encrypted: bool| {
        let query = format!(
            "(SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = '{}' AND s.ssl = {encrypted})",
            pg.name
        );
        diesel::select(diesel::dsl::sql::<BigInt>(&query)).get_result::<i64>(&mut admin).expect("pg_stat_ssl")
    };
    let (encrypted, plain) = (count(true), count(false));
    assert!(encrypted > 0, "no TLS connection from the server to its database");
    assert_eq!(plain, 0, "plaintext connections to the database");
}
