//! Hostile input against the real server: a property suite that throws generated requests
//! (methods, paths, every header Hoist parses, bodies) at the router over raw TCP and
//! requires an answer below 500 every time, raw garbage that must not take the server
//! down, oversized heads, and a body that trickles past the maximum request duration.
//! `HOIST_FUZZ_CASES` raises the number of generated requests (default 300).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::helpers::{error_code, spawn_app_with, Backend};

const HEADERS: &[&str] = &[
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Concat",
    "Upload-Checksum",
    "Upload-Complete",
    "Upload-Draft-Interop-Version",
    "Idempotency-Key",
    "X-HTTP-Method-Override",
    "Content-Type",
    "Range",
    "X-Request-Id",
    "Origin",
    "Access-Control-Request-Method",
];

/// Values that parsers get wrong: numbers at and past the edges, odd encodings, lists.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1.0.0".to_owned()),
        Just("application/offset+octet-stream".to_owned()),
        Just("multipart/form-data; boundary=x".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("final;/files/ /files/x".to_owned()),
        Just("partial".to_owned()),
        Just("sha1 !!!".to_owned()),
        Just("bytes=0-".to_owned()),
        Just("bytes=5-2".to_owned()),
        Just("?1".to_owned()),
        Just("filename ,, ,a".to_owned()),
        "[0-9]{1,25}",
        "[ -~]{0,64}",
        "[a-z]{1,8} [A-Za-z0-9+/=]{0,40}(,[a-z]{0,8} [A-Za-z0-9+/=]{0,12}){0,6}",
    ]
}

fn path(upload: String) -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("files".to_owned()),
        Just("uploads".to_owned()),
        Just("admin".to_owned()),
        Just("downloads".to_owned()),
        Just("health".to_owned()),
        Just(upload),
        Just("..".to_owned()),
        Just("%00".to_owned()),
        Just("%2e%2e".to_owned()),
        "[a-zA-Z0-9._~-]{0,40}",
        "(%[0-9A-F]{2}){1,6}",
    ];
    (proptest::collection::vec(segment, 0..5), proptest::option::of("[a-z=&%0-9]{0,30}")).prop_map(
        |(segments, query)| {
            let mut path = format!("/{}", segments.join("/"));
            if let Some(query) = query {
                path.push('?');
                path.push_str(&query);
            }
            path
        },
    )
}

#[derive(Debug, Clone)]
struct HostileRequest {
    method: String,
    path: String,
    authorized: bool,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn request(upload: String) -> impl Strategy<Value = HostileRequest> {
    let method = prop_oneof![
        Just("GET"),
        Just("HEAD"),
        Just("POST"),
        Just("PATCH"),
        Just("DELETE"),
        Just("OPTIONS"),
        Just("PUT"),
        Just("TRACE"),
        Just("BREW")
    ];
    let header = (proptest::sample::select(HEADERS), header_value()).prop_map(|(n, v)| (n.to_owned(), v));
    (
        method,
        path(upload),
        any::<bool>(),
        proptest::collection::vec(header, 0..8),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(method, path, authorized, headers, body)| HostileRequest {
            method: method.to_owned(),
            path,
            authorized,
            headers,
            body,
        })
}

/// Sends raw bytes and returns the status of the first response, if one came.
fn exchange(port: u16, raw: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.write_all(raw);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).and_then(|code| code.parse().ok())
}

fn encode(request: &HostileRequest, token: &str) -> Vec<u8> {
    let mut raw = format!("{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", request.method, request.path);
    if request.authorized {
        raw.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in &request.headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", request.body.len()));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(&request.body);
    raw
}

#[actix_rt::test]
async fn generated_requests_never_get_a_5xx_or_take_the_server_down() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.cors.allowed_origins = vec!["https://app.example.test".to_owned()];
    })
    .await;
    let upload = app.create_upload(1000).await;
    let upload_id = upload.rsplit('/').next().unwrap().to_owned();
    let (port, token) = (app.port, app.alice.clone());
    let cases = std::env::var("HOIST_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);

    let outcome = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        runner
            .run(&request(upload_id), |request| {
                let status = exchange(port, &encode(&request, &token));
                prop_assert!(status.is_some(), "no response to {request:?}");
                prop_assert!(status.unwrap() < 500, "{status:?} for {request:?}");
                Ok(())
            })
            .map_err(|failure| failure.to_string())
    })
    .await
    .unwrap();
    if let Err(failure) = outcome {
        panic!("{failure}");
    }

    // Garbage that is not HTTP at all: the connection may close, the server must stay up.
    let garbage = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config { cases: 100, failure_persistence: None, ..Config::default() });
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..2000), |bytes| {
                if let Some(status) = exchange(port, &bytes) {
                    prop_assert!(status < 500, "{status} for garbage");
                }
                Ok(())
            })
            .map_err(|failure| failure.to_string())
    })
    .await
    .unwrap();
    assert!(garbage.is_ok(), "{garbage:?}");
    assert_eq!(app.client.get(format!("{}/health/ready", app.address)).send().await.unwrap().status(), 200);
    assert!(app.offset(&upload).await <= 1000);
}

#[actix_rt::test]
async fn oversized_heads_are_refused_with_431_or_400() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.server.max_header_bytes = 8192).await;
    let big = app.client.get(format!("{}/health/live", app.address)).header("X-Padding", "a".repeat(9000)).send().await;
    let big = big.unwrap();
    assert_eq!(big.status(), 431);
    assert_eq!(error_code(big).await, "headers_too_large");
    // Past what the HTTP parser itself buffers, or more headers than it takes: a 4xx.
    let port = app.port;
    let statuses = tokio::task::spawn_blocking(move || {
        let huge = format!("GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(200_000));
        let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
        let many = format!("GET /health/live HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        (exchange(port, huge.as_bytes()), exchange(port, many.as_bytes()))
    })
    .await
    .unwrap();
    for status in [statuses.0, statuses.1] {
        assert!(status.is_none_or(|s| (400..500).contains(&s)), "{status:?}");
    }
    assert_eq!(app.client.get(format!("{}/health/live", app.address)).send().await.unwrap().status(), 200);
}

#[actix_rt::test]
async fn a_body_trickling_past_the_maximum_request_duration_is_cut_and_kept() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.max_request_secs = 2;
        s.server.body_idle_timeout_secs = 30;
    })
    .await;
    let url = app.create_upload(100).await;
    let (port, token, path) = (app.port, app.alice.clone(), url.trim_start_matches(&app.address).to_owned());
    let started = Instant::now();
    let sent = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
             Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 100\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut sent = 0;
        // One byte every 250 ms: never idle, but far slower than the request may last.
        for _ in 0..40 {
            if stream.write_all(b"z").is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(250));
        }
        sent
    })
    .await
    .unwrap();
    let kept = app.offset(&url).await;
    assert!((4..100).contains(&kept), "kept {kept} of the {sent} sent");
    assert!(started.elapsed() >= Duration::from_secs(2));
    // The upload resumes from what was kept.
    assert_eq!(app.patch(&url, kept, &vec![b'z'; 100 - kept as usize]).await.status(), 204);
}
