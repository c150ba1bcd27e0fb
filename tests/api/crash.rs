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
