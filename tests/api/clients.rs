//! Clients no one here wrote: tus-js-client (npm; over tus and over the IETF draft) and
//! tuspy (PyPI), installed by scripts/test. Files of several sizes, one interrupted and resumed from its stored URL;
//! the bytes are then checked here, from the server's side.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{bytes, spawn_app, spawn_app_with, Backend, TestApp};
use crate::on_every_backend;

const CHUNK: usize = 256 * 1024;

fn write_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    [0usize, 1, 100 * 1024, 3 * 1024 * 1024 + 17]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let path = dir.join(format!("file-{len}.bin"));
            let data = bytes(len, i as u8);
            std::fs::write(&path, &data).unwrap();
            (path, data)
        })
        .collect()
}

/// How the client breaks off the largest file before resuming it.
#[derive(Clone, Copy, PartialEq)]
enum Interruption {
    /// The app stops after the first chunk (its request ends) and resumes from the URL.
    AfterFirstChunk,
    /// Mid-chunk the connection goes silent with its server side left open, as a phone's does
    /// when it changes networks; the app gives up on the request and resumes.
    HalfOpen,
}

async fn run_client(app: &TestApp, program: &str, script: &str, protocol: &str) {
    run_client_interrupted(app, program, script, protocol, Interruption::AfterFirstChunk).await;
}

async fn run_client_interrupted(app: &TestApp, program: &str, script: &str, protocol: &str, how: Interruption) {
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path());
    let mut args: Vec<String> = vec![
        format!("tests/clients/{script}"),
        format!("{}/files/", app.address),
        app.alice.clone(),
        CHUNK.to_string(),
    ];
    for (i, (path, _)) in files.iter().enumerate() {
        // The largest file is interrupted and resumed.
        let resume = match (i == files.len() - 1, how) {
            (false, _) => "",
            (true, Interruption::AfterFirstChunk) => "resume:",
            (true, Interruption::HalfOpen) => "stall:",
        };
        args.push(format!("{resume}{}", path.display()));
    }
    let output = tokio::task::spawn_blocking({
        let program = program.to_owned();
        let protocol = protocol.to_owned();
        move || Command::new(program).args(&args).env("TUS_PROTOCOL", protocol).output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{program} must be installed (scripts/test installs the clients): {e}"));
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("client prints JSON");
    let uploads = report["uploads"].as_array().unwrap();
    assert_eq!(uploads.len(), files.len());
    for ((path, data), upload) in files.iter().zip(uploads) {
        assert_eq!(upload["path"], path.display().to_string());
        let url = upload["url"].as_str().unwrap();
        assert_eq!(app.download_bytes(url).await, *data, "{script}: {}", path.display());
    }
    let resumed = uploads.last().unwrap()["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0 && resumed < files.last().unwrap().1.len() as u64, "{script} resumed from {resumed}");
    if how == Interruption::HalfOpen {
        // Past the first chunk, mid-way through the second: the stalled request's bytes were
        // kept, which only its end (the cut) commits.
        assert!(resumed > CHUNK as u64 && resumed < 2 * CHUNK as u64, "{script} resumed from {resumed}");
    }
    assert_eq!(app.count_uploads(), files.len() as i64, "{script}: one upload per file, none from the resume");
}

fn python() -> String {
    std::env::var("HOIST_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

async fn tus_js_client_uploads_and_resumes(backend: Backend) {
    let app = spawn_app(backend).await;
    run_client(&app, "node", "tus_js_client.mjs", "tus-v1").await;
}
on_every_backend!(tus_js_client_uploads_and_resumes);

/// tus-js-client speaking the IETF draft: interop version 5 (`ietf-draft-03`) and 6
/// (`ietf-draft-05`, whose appends are `application/partial-upload`).
async fn tus_js_client_uploads_and_resumes_over_the_ietf_draft(backend: Backend) {
    for protocol in ["ietf-draft-03", "ietf-draft-05"] {
        let app = spawn_app(backend).await;
        run_client(&app, "node", "tus_js_client.mjs", protocol).await;
    }
}
on_every_backend!(tus_js_client_uploads_and_resumes_over_the_ietf_draft);

/// tus-js-client over a connection that goes silent mid-chunk, its server side left open (a
/// phone changing networks): the app gives up on the request and resumes at once, over tus
/// and over the draft. With the stalled request held until `server.body_idle_timeout_secs`,
/// the resumed PATCH met 423s past the client's retries.
async fn tus_js_client_resumes_past_a_half_open_connection(backend: Backend) {
    for protocol in ["tus-v1", "ietf-draft-05"] {
        let app = spawn_app_with(backend, crate::helpers::patient_cuts).await;
        run_client_interrupted(&app, "node", "tus_js_client.mjs", protocol, Interruption::HalfOpen).await;
    }
}
on_every_backend!(tus_js_client_resumes_past_a_half_open_connection);

async fn tuspy_uploads_and_resumes_with_checksums(backend: Backend) {
    let app = spawn_app(backend).await;
    run_client(&app, &python(), "tuspy_client.py", "tus-v1").await;
}
on_every_backend!(tuspy_uploads_and_resumes_with_checksums);
