//! The binary's JSON log: one line per request with its request id, route, status,
//! subject and upload id, and never a token, a secret or a download signature.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use hoist::config::Settings;
use reqwest::Method;

use crate::binary::{free_port, Server};
use crate::helpers::{location, test_settings, Backend, TestClient, TEST_SECRET};

/// The real binary with `env`, its stdout (the log) in a file under `dir`.
async fn start_logging(settings: &Settings, dir: &Path, port: u16, env: &[(&str, &str)]) -> (Server, PathBuf) {
    let log_path = dir.join("hoist.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    (Server::start_with(settings, port, env, Stdio::from(log_file)).await, log_path)
}

/// The log's text and its JSON lines.
fn read_json_lines(log_path: &Path) -> (String, Vec<serde_json::Value>) {
    let log = std::fs::read_to_string(log_path).unwrap();
    let lines = log.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    (log, lines)
}

#[actix_rt::test]
async fn request_lines_carry_who_and_what_but_no_secrets() {
    let (settings, data_dir, _pg) = test_settings(Backend::Sqlite).await;
    let port = free_port();
    let signing_key = "download-signing-key-that-must-stay-secret";
    let env = [
        ("HOIST__LOG__LEVEL", "debug"),
        ("HOIST__LOG__FORMAT", "json"),
        ("HOIST__DOWNLOADS__SIGNING_KEY", signing_key),
    ];
    let (mut server, log_path) = start_logging(&settings, data_dir.path(), port, &env).await;
    let app = TestClient::new(port, &settings);

    let created = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Length", "5")
        .header("X-Request-Id", "trace-me-123")
        .send()
        .await
        .unwrap();
    let url = location(&created);
    let id = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(app.patch(&url, 0, b"hello").await.status(), 204);
    let redirect = app.client.get(&url).bearer_auth(&app.alice).send().await.unwrap();
    let signed = location(&redirect);
    let signature = signed.split("signature=").nth(1).expect("a signature").to_owned();
    assert_eq!(app.client.get(&signed).send().await.unwrap().text().await.unwrap(), "hello");
    let forged = app.tus_as(&format!("{}x", app.bob), Method::HEAD, &url).send().await.unwrap();
    assert_eq!(forged.status(), 401);

    server.signal("TERM");
    assert!(server.wait().success());
    let (log, lines) = read_json_lines(&log_path);
    let creation = lines
        .iter()
        .find(|line| line["msg"] == "request" && line["request_id"] == "trace-me-123")
        .unwrap_or_else(|| panic!("no request line for the creation in:\n{log}"));
    assert_eq!(creation["subject"], "alice");
    assert_eq!(creation["status"], 201);
    assert_eq!(creation["route"], "/files");
    let patch = lines.iter().find(|line| line["msg"] == "request" && line["method"] == "PATCH").expect("PATCH line");
    assert_eq!(patch["upload_id"], id.as_str());
    assert_eq!(patch["request_bytes"], 5);

    let token_signature = app.alice.rsplit('.').next().unwrap();
    for secret in [app.alice.as_str(), token_signature, TEST_SECRET, signing_key, signature.as_str(), "Bearer"] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
}

#[actix_rt::test]
async fn a_server_error_is_logged_at_warn_with_its_cause() {
    let (settings, data_dir, pg) = test_settings(Backend::Postgres).await;
    let port = free_port();
    let env =
        [("HOIST__LOG__LEVEL", "warn"), ("HOIST__LOG__FORMAT", "json"), ("HOIST__DATABASE__CONNECT_TIMEOUT_SECS", "1")];
    let (mut server, log_path) = start_logging(&settings, data_dir.path(), port, &env).await;
    let app = TestClient::new(port, &settings);
    assert_eq!(app.create(5).await.status(), 201);

    drop(pg); // DROP DATABASE … WITH (FORCE): the server's connections die.
    let failed = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Length", "5")
        .header("X-Request-Id", "why-503")
        .send()
        .await
        .unwrap();
    assert!(failed.status().is_server_error(), "{}", failed.status());

    server.signal("TERM");
    server.wait();
    let (log, lines) = read_json_lines(&log_path);
    let requests: Vec<&serde_json::Value> = lines.iter().filter(|line| line["msg"] == "request").collect();
    assert_eq!(requests.len(), 1, "only the failed request is logged at warn:\n{log}");
    assert_eq!(requests[0]["request_id"], "why-503");
    assert_eq!(requests[0]["level"], "WARN");
    assert_eq!(requests[0]["status"], failed.status().as_u16());
    let failure = lines
        .iter()
        .find(|line| line["msg"] == "request failed" && line["request_id"] == "why-503")
        .unwrap_or_else(|| panic!("no line with the failure's cause and request id:\n{log}"));
    assert_eq!(failure["level"], "ERRO");
    assert!(!failure["cause"].as_str().unwrap_or_default().is_empty(), "the line says why:\n{log}");
}
