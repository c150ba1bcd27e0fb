//! The real binary, killed and restarted: acknowledged bytes survive, the upload resumes.

use std::time::Duration;

use crate::binary::{free_port, Server};
use crate::helpers::{bytes, test_settings, Backend, TestClient};
use crate::on_every_backend;

async fn stream_part_then(
    app: &TestClient,
    url: &str,
    offset: u64,
    data: &[u8],
    sent: usize,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let body =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx)) },
        );
    let request = app
        .patch_request(url, offset, reqwest::Body::wrap_stream(body))
        .header("Content-Length", data.len().to_string());
    let task = tokio::spawn(async move {
        let _ = request.send().await;
    });
    tx.send(data[..sent].to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Keep the sender alive inside the task's lifetime: the body stays open until the end.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tx);
    });
    task
}

async fn sigkill_mid_upload_then_resume_byte_identical(backend: Backend) {
    let (settings, _data_dir, _pg) = test_settings(backend).await;
    let port = free_port();
    let server = Server::start(&settings, port).await;
    let app = TestClient::new(port, &settings);
    let data = bytes(3_000_000, 11);
    let url = app.create_upload(data.len() as u64).await;
    assert_eq!(app.patch(&url, 0, &data[..1_000_000]).await.status(), 204);
    let _in_flight = stream_part_then(&app, &url, 1_000_000, &data[1_000_000..2_000_000], 200_000).await;
    server.signal("KILL");
    drop(server);

    let _server = Server::start(&settings, port).await;
    let offset = app.offset(&url).await;
    assert_eq!(offset, 1_000_000, "what was acknowledged, and nothing unacknowledged");
    assert_eq!(app.patch(&url, offset, &data[offset as usize..]).await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, data);
}
on_every_backend!(sigkill_mid_upload_then_resume_byte_identical);

async fn sigterm_cuts_bodies_keeps_what_arrived_and_exits(backend: Backend) {
    let (settings, _data_dir, _pg) = test_settings(backend).await;
    let port = free_port();
    let mut server = Server::start(&settings, port).await;
    let app = TestClient::new(port, &settings);
    let data = bytes(2_000_000, 12);
    let url = app.create_upload(data.len() as u64).await;
    let _in_flight = stream_part_then(&app, &url, 0, &data, 500_000).await;
    server.signal("TERM");
    let status = server.wait();
    assert!(status.success(), "clean exit: {status:?}");

    let _server = Server::start(&settings, port).await;
    let offset = app.offset(&url).await;
    assert_eq!(offset, 500_000, "the bytes that arrived before shutdown are kept");
    assert_eq!(app.patch(&url, offset, &data[offset as usize..]).await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, data);
}
on_every_backend!(sigterm_cuts_bodies_keeps_what_arrived_and_exits);

/// Every file under `dir` but the directories' lock files: spools and tail copies.
fn spooled_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(spooled_files(&path));
        } else if path.file_name().is_some_and(|name| name != "lock") {
            files.push(path);
        }
    }
    files
}

#[actix_rt::test]
async fn a_killed_nodes_spools_and_tail_copies_are_removed_when_it_starts_again() {
    let (mut settings, _data_dir, _pg) = test_settings(Backend::S3).await;
    let spool_dir = tempfile::tempdir().unwrap();
    settings.store.s3.spool_dir = spool_dir.path().to_str().unwrap().to_owned();
    let port = free_port();
    let server = Server::start(&settings, port).await;
    let app = TestClient::new(port, &settings);
    let data = bytes(3_000_000, 13);
    let url = app.create_upload(data.len() as u64).await;
    // A staged tail the node keeps a copy of, and a part being spooled when it dies.
    assert_eq!(app.patch(&url, 0, &data[..1_000_000]).await.status(), 204);
    let _in_flight = stream_part_then(&app, &url, 1_000_000, &data[1_000_000..2_000_000], 200_000).await;
    server.signal("KILL");
    drop(server);
    let left = spooled_files(spool_dir.path());
    assert!(!left.is_empty(), "the killed node left no files: nothing to show");

    let _server = Server::start(&settings, port).await;
    let still_there: Vec<_> = left.iter().filter(|file| file.exists()).collect();
    assert!(still_there.is_empty(), "left by the killed node: {still_there:?}");
    let offset = app.offset(&url).await;
    assert_eq!(offset, 1_000_000);
    assert_eq!(app.patch(&url, offset, &data[offset as usize..]).await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, data);
}
