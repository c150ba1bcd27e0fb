//! The IETF resumable-upload draft on `/files`: creation, the 104 that carries the upload's
//! URL before the body is read, offset retrieval, appends, completion, cancellation, the
//! draft's problem types, and interop versions 3 (Upload-Incomplete) to 8.

use std::time::Duration;

use reqwest::{Method, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    bytes, error_code, hand_fed_body, header_str, header_u64, location, spawn_app, spawn_app_with, Backend, TestApp,
};
use crate::on_every_backend;

const MIB: usize = 1024 * 1024;

/// A request of interop version `version` as alice (no `Tus-Resumable`).
fn draft(app: &TestApp, version: u8, method: Method, url: &str) -> reqwest::RequestBuilder {
    app.client.request(method, url).bearer_auth(&app.alice).header("Upload-Draft-Interop-Version", version.to_string())
}

fn append(app: &TestApp, url: &str, offset: usize, complete: bool, body: Vec<u8>) -> reqwest::RequestBuilder {
    draft(app, 8, Method::PATCH, url)
        .header("Upload-Offset", offset.to_string())
        .header("Upload-Complete", if complete { "?1" } else { "?0" })
        .header("Content-Type", "application/partial-upload")
        .body(body)
}

/// Creates an open upload (version 8, `Upload-Complete: ?0`) holding `first`, of `length`
/// if given; returns its URL.
async fn open_upload(app: &TestApp, first: &[u8], length: Option<usize>) -> String {
    let mut request =
        draft(app, 8, Method::POST, &app.files_url()).header("Upload-Complete", "?0").body(first.to_vec());
    if let Some(length) = length {
        request = request.header("Upload-Length", length.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201);
    location(&response)
}

async fn problem_type(response: Response) -> (String, serde_json::Value) {
    assert_eq!(header_str(response.headers(), "Content-Type"), "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    let kind = body["type"].as_str().unwrap().rsplit('#').next().unwrap().to_owned();
    (kind, body)
}

/// Reads one response head (through its blank line) off a raw connection.
pub async fn read_head(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await;
        match read.expect("a response head within 10 s").expect("read") {
            0 => panic!("connection closed after {:?}", String::from_utf8_lossy(&head)),
            _ => head.push(byte[0]),
        }
    }
    String::from_utf8(head).unwrap()
}

pub fn head_field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The head of a creation request of `len` bytes that completes the upload.
fn creation_head(app: &TestApp, len: usize) -> String {
    format!(
        "POST /files HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Upload-Draft-Interop-Version: 8\r\nUpload-Complete: ?1\r\nContent-Type: image/png\r\n\
         Content-Length: {len}\r\n\r\n",
        app.port, app.alice
    )
}

async fn a_creation_that_completes_stores_the_representation(backend: Backend) {
    let app = spawn_app(backend).await;
    let data = bytes(6 * MIB + 321, 40);
    let response = draft(&app, 8, Method::POST, &app.files_url())
        .header("Upload-Complete", "?1")
        .header("Content-Type", "image/png")
        .header("Content-Disposition", "inline; filename=\"holiday photo.png\"")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let h = response.headers();
    assert_eq!(header_str(h, "Upload-Complete"), "?1");
    assert_eq!(header_u64(h, "Upload-Offset"), data.len() as u64);
    assert_eq!(header_u64(h, "Upload-Length"), data.len() as u64);
    let url = location(&response);
    let download = app.download(&url).await;
    assert_eq!(header_str(download.headers(), "Content-Type"), "image/png");
    assert!(header_str(download.headers(), "Content-Disposition").contains("holiday photo.png"));
    assert_eq!(download.bytes().await.unwrap(), data);
}
on_every_backend!(a_creation_that_completes_stores_the_representation);

#[actix_rt::test]
async fn the_104_carries_the_upload_before_the_body_is_sent() {
    let app = spawn_app(Backend::Sqlite).await;
    let data = bytes(100_000, 41);
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream.write_all(creation_head(&app, data.len()).as_bytes()).await.unwrap();
    // No body byte has been sent: the 104 must come anyway, with where to resume.
    let interim = read_head(&mut stream).await;
    assert!(interim.starts_with("HTTP/1.1 104 Upload Resumption Supported\r\n"), "{interim}");
    let url = head_field(&interim, "Location").expect("Location in the 104").to_owned();
    assert_eq!(head_field(&interim, "Upload-Draft-Interop-Version"), Some("8"));
    let limit = head_field(&interim, "Upload-Limit").expect("Upload-Limit in the 104");
    assert!(limit.contains(&format!("max-size={}", app.settings.uploads.max_size)), "{limit}");
    stream.write_all(&data).await.unwrap();
    let fin = read_head(&mut stream).await;
    assert!(fin.starts_with("HTTP/1.1 201"), "{fin}");
    assert_eq!(head_field(&fin, "Location"), Some(url.as_str()), "the final Location is the 104's");
    assert_eq!(head_field(&fin, "Upload-Complete"), Some("?1"));
    assert_eq!(app.download_bytes(&url).await, data);
}

#[actix_rt::test]
async fn no_104_for_a_tus_request_or_an_unknown_interop_version() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let tus = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Length: 5\r\nContent-Length: 0\r\n\r\n",
        app.alice
    );
    stream.write_all(tus.as_bytes()).await.unwrap();
    let first = read_head(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 201"), "{first}");

    let response = draft(&app, 9, Method::POST, &app.files_url()).header("Upload-Complete", "?1").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "interop_version_unsupported");
    assert_eq!(app.count_uploads(), 1);
}

async fn an_interrupted_creation_is_resumed_from_its_offset(backend: Backend) {
    let app = spawn_app(backend).await;
    let data = bytes(7 * MIB + 999, 42);
    let sent = 6 * MIB + 17;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream.write_all(creation_head(&app, data.len()).as_bytes()).await.unwrap();
    let interim = read_head(&mut stream).await;
    let url = head_field(&interim, "Location").expect("Location in the 104").to_owned();
    stream.write_all(&data[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    // The connection drops mid-body, as a phone's does.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);

    // What arrived is kept; HEAD says how much once the session has committed it.
    let mut offset = 0;
    for _ in 0..100 {
        let head = draft(&app, 8, Method::HEAD, &url).send().await.unwrap();
        assert_eq!(head.status(), 204);
        let h = head.headers();
        assert_eq!(header_str(h, "Upload-Complete"), "?0");
        assert_eq!(header_u64(h, "Upload-Length"), data.len() as u64);
        assert_eq!(header_str(h, "Cache-Control"), "no-store");
        assert!(header_str(h, "Upload-Limit").contains("max-age="));
        offset = header_u64(h, "Upload-Offset") as usize;
        if offset == sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(offset, sent, "every byte that arrived is kept");

    let response = append(&app, &url, offset, true, data[offset..].to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header_str(response.headers(), "Upload-Complete"), "?1");
    assert_eq!(header_u64(response.headers(), "Upload-Offset"), data.len() as u64);
    assert_eq!(app.download_bytes(&url).await, data);
}
on_every_backend!(an_interrupted_creation_is_resumed_from_its_offset);

async fn appends_follow_the_draft(backend: Backend) {
    let app = spawn_app(backend).await;
    let data = bytes(300_000, 43);
    let response = draft(&app, 8, Method::POST, &app.files_url())
        .header("Upload-Complete", "?0")
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header_str(response.headers(), "Upload-Complete"), "?0");
    assert!(response.headers().get("Upload-Length").is_none(), "no length is known yet");
    let url = location(&response);

    let response = append(&app, &url, 0, false, data[..100_000].to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(header_str(response.headers(), "Upload-Complete"), "?0");
    assert_eq!(header_u64(response.headers(), "Upload-Offset"), 100_000);

    // The wrong offset: 409, the draft's problem type, both offsets.
    let response = append(&app, &url, 5, false, data[5..10].to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(header_u64(response.headers(), "Upload-Offset"), 100_000);
    let (kind, body) = problem_type(response).await;
    assert_eq!(kind, "mismatching-upload-offset");
    assert_eq!((body["expected-offset"].as_u64(), body["provided-offset"].as_u64()), (Some(100_000), Some(5)));

    // Version 8 appends are application/partial-upload, and say whether they complete.
    let response = draft(&app, 8, Method::PATCH, &url)
        .header("Upload-Offset", "100000")
        .header("Upload-Complete", "?0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(data[100_000..100_010].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = draft(&app, 8, Method::PATCH, &url)
        .header("Upload-Offset", "100000")
        .header("Content-Type", "application/partial-upload")
        .body(data[100_000..100_010].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "missing_upload_complete");

    // A length that disagrees with offset + Content-Length: refused before any byte is kept.
    let response = append(&app, &url, 100_000, true, data[100_000..200_000].to_vec())
        .header("Upload-Length", data.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(problem_type(response).await.0, "inconsistent-upload-length");

    let response = append(&app, &url, 100_000, true, data[100_000..].to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header_str(response.headers(), "Upload-Complete"), "?1");

    let head = draft(&app, 8, Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.status(), 204);
    assert_eq!(header_str(head.headers(), "Upload-Complete"), "?1");
    assert_eq!(header_u64(head.headers(), "Upload-Length"), data.len() as u64);
    assert!(!header_str(head.headers(), "Upload-Limit").contains("max-age"), "a complete upload does not expire");

    // A complete upload takes nothing more; the empty final request, retried, is answered again.
    let end = data.len();
    let response = append(&app, &url, end, true, Vec::new()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = append(&app, &url, end, false, b"more".to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(problem_type(response).await.0, "inconsistent-upload-length");
    let response = append(&app, &url, end, false, Vec::new()).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(problem_type(response).await.0, "completed-upload");
    assert_eq!(app.download_bytes(&url).await, data);
}
on_every_backend!(appends_follow_the_draft);

async fn a_chunked_append_completes_where_its_body_ends(backend: Backend) {
    // No length anywhere: the last append's body, sent chunked, ends the upload. On S3 its
    // last bytes sit in a staged tail until the length is known (tusd's deferred-length bug).
    let app = spawn_app(backend).await;
    let data = bytes(5 * MIB + 4321, 44);
    let url = open_upload(&app, &data[..MIB], None).await;
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = data[MIB..].chunks(300_000).map(|c| Ok(c.to_vec())).collect();
    let response = draft(&app, 8, Method::PATCH, &url)
        .header("Upload-Offset", MIB.to_string())
        .header("Upload-Complete", "?1")
        .header("Content-Type", "application/partial-upload")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header_u64(response.headers(), "Upload-Length"), data.len() as u64);
    assert_eq!(app.download_bytes(&url).await, data);
}
on_every_backend!(a_chunked_append_completes_where_its_body_ends);

#[actix_rt::test]
async fn interop_version_3_says_upload_incomplete() {
    let app = spawn_app(Backend::Sqlite).await;
    let data = bytes(50_000, 45);
    let response = draft(&app, 3, Method::POST, &app.files_url())
        .header("Upload-Incomplete", "?1")
        .body(data[..20_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header_str(response.headers(), "Upload-Incomplete"), "?1");
    assert!(response.headers().get("Upload-Limit").is_none(), "Upload-Limit came with version 6");
    let url = location(&response);
    let head = draft(&app, 3, Method::HEAD, &url).send().await.unwrap();
    assert_eq!((head.status().as_u16(), header_u64(head.headers(), "Upload-Offset")), (204, 20_000));
    // Before version 6 an append's body may have any type.
    let response = draft(&app, 3, Method::PATCH, &url)
        .header("Upload-Offset", "20000")
        .header("Upload-Incomplete", "?0")
        .body(data[20_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header_str(response.headers(), "Upload-Incomplete"), "?0");
    assert_eq!(app.download_bytes(&url).await, data);

    // Clients bridging versions may send version 3 with Upload-Complete only.
    let response = draft(&app, 3, Method::POST, &app.files_url())
        .header("Upload-Complete", "?1")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header_str(response.headers(), "Upload-Incomplete"), "?0");
    let response = draft(&app, 3, Method::POST, &app.files_url()).header("Content-Length", "0").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "missing_upload_complete");
}

#[actix_rt::test]
async fn version_6_limits_say_expires_and_7_say_max_age() {
    let app = spawn_app(Backend::Sqlite).await;
    let lifetime = app.settings.uploads.lifetime_secs;
    for (version, key) in [(6, "expires"), (7, "max-age")] {
        let response = draft(&app, version, Method::POST, &app.files_url())
            .header("Upload-Complete", "?0")
            .header("Upload-Length", "10")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let limit = header_str(response.headers(), "Upload-Limit");
        let age: u64 = limit.split(", ").find_map(|m| m.strip_prefix(&format!("{key}="))).unwrap().parse().unwrap();
        assert!(age > lifetime - 60 && age <= lifetime, "{limit}");
    }
}

#[actix_rt::test]
async fn a_creation_over_the_maximum_size_is_refused_with_the_limit() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = draft(&app, 8, Method::POST, &app.files_url())
        .header("Upload-Complete", "?0")
        .header("Upload-Length", (app.settings.uploads.max_size + 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(header_str(response.headers(), "Upload-Limit").starts_with("max-size="));
    assert_eq!(app.count_uploads(), 0);
}

#[actix_rt::test]
async fn cancellation_deletes_the_upload() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = open_upload(&app, b"abc", None).await;
    assert_eq!(draft(&app, 8, Method::DELETE, &url).send().await.unwrap().status(), 204);
    assert_eq!(draft(&app, 8, Method::HEAD, &url).send().await.unwrap().status(), 410);
    assert!(!app.stored(&url).await, "the bytes are gone");
}

#[actix_rt::test]
async fn options_announce_partial_uploads_and_limits() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app.client.request(Method::OPTIONS, app.files_url()).send().await.unwrap();
    let h = response.headers();
    assert_eq!(header_str(h, "Accept-Patch"), "application/partial-upload");
    assert_eq!(
        header_str(h, "Upload-Limit"),
        format!("max-size={}, max-age={}", app.settings.uploads.max_size, app.settings.uploads.lifetime_secs)
    );
}

#[actix_rt::test]
async fn someone_elses_upload_is_not_found() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = open_upload(&app, b"abc", None).await;
    let as_bob =
        |method| app.client.request(method, &url).bearer_auth(&app.bob).header("Upload-Draft-Interop-Version", "8");
    assert_eq!(as_bob(Method::HEAD).send().await.unwrap().status(), 404);
    let patch = as_bob(Method::PATCH)
        .header("Upload-Offset", "3")
        .header("Upload-Complete", "?1")
        .header("Content-Type", "application/partial-upload")
        .body(b"def".to_vec());
    assert_eq!(patch.send().await.unwrap().status(), 404);
    assert_eq!(as_bob(Method::DELETE).send().await.unwrap().status(), 404);
}

/// A client resuming after losing its request (a phone changing networks) does not wait out
/// the request the server still holds: its HEAD cuts it and reports what it committed, and
/// the append from there runs at once, as the draft recommends.
async fn a_resuming_client_cuts_the_request_it_gave_up_on(backend: Backend) {
    let app = spawn_app_with(backend, crate::helpers::patient_cuts).await;
    let data = bytes(300_000, 46);
    let url = open_upload(&app, b"", Some(data.len())).await;

    let (tx, body) = hand_fed_body();
    let lost = tokio::spawn(
        append(&app, &url, 0, true, Vec::new()).header("Content-Length", data.len().to_string()).body(body).send(),
    );
    tx.send(data[..100_000].to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The body stalls with its sender still open; the client asks where to resume.
    let head = draft(&app, 8, Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.status(), 204);
    assert_eq!(header_u64(head.headers(), "Upload-Offset"), 100_000, "the stalled request's bytes are committed");
    let response = append(&app, &url, 100_000, true, data[100_000..].to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.download_bytes(&url).await, data);
    drop(tx);
    lost.abort();
}
on_every_backend!(a_resuming_client_cuts_the_request_it_gave_up_on);

/// A draft append arriving while an earlier one streams cuts it too; the offset it asks for
/// is then checked against what the earlier one committed.
#[actix_rt::test]
async fn a_new_append_cuts_the_one_still_streaming() {
    let app = spawn_app_with(Backend::Sqlite, crate::helpers::patient_cuts).await;
    let url = open_upload(&app, b"", None).await;
    let (tx, body) = hand_fed_body();
    let lost = tokio::spawn(append(&app, &url, 0, false, Vec::new()).header("Content-Length", "10").body(body).send());
    tx.send(b"abcd".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = append(&app, &url, 0, false, b"XXXX".to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 409, "the cut request committed 4 bytes first");
    assert_eq!(header_u64(response.headers(), "Upload-Offset"), 4);
    let response = append(&app, &url, 4, true, b"ef".to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.download_bytes(&url).await, b"abcdef");
    drop(tx);
    lost.abort();
}
