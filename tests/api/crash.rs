//! The real binary, killed and restarted: acknowledged bytes survive, the upload resumes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hoist::config::{Settings, StoreKind};

use crate::helpers::{bytes, test_settings, Backend, TestClient, TEST_SECRET};
use crate::on_every_backend;

struct Server {
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// Starts the binary configured through the environment only, as in a container.
    async fn start(settings: &Settings, port: u16) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hoist"));
        command
            .args(["--config-dir", "config", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("HOIST_ENV", "test")
            .env("HOIST__SERVER__DATA_DIR", &settings.server.data_dir)
            .env("HOIST__DATABASE__URL", settings.database_url())
            .env("HOIST__AUTH__JWT_SECRET", TEST_SECRET);
        if settings.store.kind == StoreKind::S3 {
            let s3 = &settings.store.s3;
            command
                .env("HOIST__STORE__KIND", "s3")
                .env("HOIST__STORE__S3__BUCKET", &s3.bucket)
                .env("HOIST__STORE__S3__ENDPOINT", &s3.endpoint)
                .env("HOIST__STORE__S3__REGION", "us-east-1")
                .env("HOIST__STORE__S3__PATH_STYLE", "true")
                .env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
                .env("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("start hoist");
        // Wrapped at once, so that a failed start is still killed and reaped on drop.
        let server = Server { child };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/health/ready")).send().await {
                if response.status() == 200 {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("hoist did not become ready");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hoist did not exit");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
