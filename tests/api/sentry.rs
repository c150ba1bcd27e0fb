//! Sentry reporting from the real binary: a DSN pointing at a listener in this test, a
//! database that disappears under the server, and the 5xx that follows arriving at the
//! listener as an event tagged with the request's id.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::binary::{free_port, Server};
use crate::helpers::{test_settings, Backend, TestClient};

/// Accepts HTTP requests, keeps their bodies, answers 200.
async fn sentry_listener() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    actix_rt::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let store = store.clone();
            actix_rt::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        store.lock().unwrap().push(text.clone());
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

#[actix_rt::test]
async fn a_5xx_is_reported_to_sentry_with_its_request_id() {
    let (sentry_port, received) = sentry_listener().await;
    let (settings, _data_dir, pg) = test_settings(Backend::Postgres).await;
    let port = free_port();
    let dsn = format!("http://0123456789abcdef@127.0.0.1:{sentry_port}/42");
    let env = [("HOIST__SENTRY__DSN", dsn.as_str()), ("HOIST__DATABASE__CONNECT_TIMEOUT_SECS", "1")];
    let _server = Server::start_with(&settings, port, &env, Stdio::null()).await;
    let app = TestClient::new(port, &settings);
    assert_eq!(app.create(5).await.status(), 201);
    assert!(received.lock().unwrap().is_empty(), "an event without an error");

    drop(pg); // DROP DATABASE … WITH (FORCE): the server's connections die.
    let failed = app
        .tus(reqwest::Method::POST, &app.files_url())
        .header("Upload-Length", "5")
        .header("X-Request-Id", "sentry-me-42")
        .send()
        .await
        .unwrap();
    assert!(failed.status().is_server_error(), "{}", failed.status());

    let mut event = None;
    for _ in 0..100 {
        event = received.lock().unwrap().iter().find(|body| body.contains("sentry-me-42")).cloned();
        if event.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let event =
        event.unwrap_or_else(|| panic!("no event with the request id; received {:?}", received.lock().unwrap()));
    assert!(event.starts_with("POST /api/42/envelope/"), "{event}");
    assert!(event.contains("/files answered 503"), "{event}");
    assert!(!event.contains(&app.alice), "the token reached Sentry");
}
