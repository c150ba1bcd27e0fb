//! What only the S3 store does: parts, staged tails, orphans, UploadPartCopy, and S3 going
//! away mid-upload. Against the emulator scripts/test starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use sha2::Digest;
use tokio::net::{TcpListener, TcpStream};

use crate::concatenation::partial;
use crate::helpers::{bytes, error_code, location, spawn_app, spawn_app_with, Backend, TestApp};
use hoist::store::{S3Store, StoreBackend};

const MIB: usize = 1024 * 1024;

fn s3(app: &TestApp) -> &S3Store {
    match app.state.store.backend() {
        StoreBackend::S3(s3) => s3,
        StoreBackend::Disk(_) => panic!("an S3 test on the disk store"),
    }
}

fn upload_id(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

async fn send_in_chunks(app: &TestApp, url: &str, data: &[u8], sizes: &[usize]) {
    let mut offset = 0;
    let mut sizes = sizes.iter().cycle();
    while offset < data.len() {
        let end = (offset + sizes.next().unwrap()).min(data.len());
        let response = app.patch(url, offset as u64, &data[offset..end]).await;
        assert_eq!(response.status(), 204, "PATCH at {offset}");
        offset = end;
    }
}

#[actix_rt::test]
async fn chunks_of_any_size_become_equal_parts_and_one_short_last_part() {
    let app = spawn_app(Backend::S3).await;
    let data = bytes(3 * 8 * MIB + 1000, 21);
    let url = app.create_upload(data.len() as u64).await;
    // Below the part size, above it, and exactly on boundaries.
    send_in_chunks(&app, &url, &data, &[3 * MIB, 10 * MIB, 64 * 1024, 5 * MIB + 17]).await;
    let id = upload_id(&url);
    let parts = app.state.repo.run_blocking(|c| hoist::db::uploads::list_parts(c, &id)).unwrap();
    let sizes: Vec<i64> = parts.iter().map(|(_, size, _)| *size).collect();
    assert_eq!(sizes, vec![8 * MIB as i64, 8 * MIB as i64, 8 * MIB as i64, 1000]);
    assert_eq!(parts.iter().map(|(n, _, _)| *n).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let downloaded = app.download_bytes(&url).await;
    assert_eq!(sha2::Sha256::digest(&downloaded), sha2::Sha256::digest(&data));
    assert!(!s3(&app).holds_anything(&format!("hoist/{id}.staged/")).await.unwrap(), "staged tail cleaned up");
}

/// The staged objects of the upload at `url`, by start offset.
async fn staged_starts(app: &TestApp, url: &str) -> Vec<u64> {
    let key = format!("hoist/{}", upload_id(url));
    s3(app).staged_objects(&key).await.unwrap().iter().map(|object| object.start).collect()
}

#[actix_rt::test]
async fn small_chunks_fill_parts_from_the_nodes_own_copy_of_the_staged_tail() {
    let app = spawn_app(Backend::S3).await;
    let data = bytes(200 * 64 * 1024, 22);
    let url = app.create_upload(data.len() as u64).await;
    // Part 1 (8 MiB) fills on the 128th PATCH; 8 more are staged behind it.
    send_in_chunks(&app, &url, &data[..136 * 64 * 1024], &[64 * 1024]).await;
    assert_eq!(s3(&app).staged_bytes_read(), 0, "no staged byte read back from S3");
    let left: Vec<u64> = (128..136).map(|i| i * 64 * 1024).collect();
    assert_eq!(staged_starts(&app, &url).await, left, "the part's staged objects are deleted, the next part's kept");
    assert_eq!(app.patch(&url, 136 * 64 * 1024, &data[136 * 64 * 1024..]).await.status(), 204);
    assert_eq!(s3(&app).staged_bytes_read(), 0);
    let downloaded = app.download_bytes(&url).await;
    assert_eq!(sha2::Sha256::digest(&downloaded), sha2::Sha256::digest(&data));
    assert!(staged_starts(&app, &url).await.is_empty(), "staged tail cleaned up");
}

#[actix_rt::test]
async fn without_local_copies_each_staged_byte_is_read_back_at_most_once() {
    let app = spawn_app_with(Backend::S3, |s| s.store.s3.tail_copy_mib = 0).await;
    let data = bytes(300 * 64 * 1024, 27);
    let url = app.create_upload(data.len() as u64).await;
    send_in_chunks(&app, &url, &data, &[64 * 1024]).await;
    let (read, written) = (s3(&app).staged_bytes_read(), s3(&app).staged_bytes_written());
    assert!(written <= data.len() as u64, "each byte staged at most once: {written}");
    assert!(read <= written, "each staged byte read back at most once: {read} of {written}");
    assert!(read > 0);
    let downloaded = app.download_bytes(&url).await;
    assert_eq!(sha2::Sha256::digest(&downloaded), sha2::Sha256::digest(&data));
}

/// Sends one PATCH from `node`, retrying while another node still holds the upload's lease
/// (its session lets it go once idle: 1 s in these tests).
async fn patch_when_free(node: &TestApp, url: &str, offset: u64, body: &[u8]) {
    for _ in 0..100 {
        let status = node.patch(url, offset, body).await.status();
        if status != 423 {
            assert_eq!(status, 204, "PATCH at {offset}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the other node kept the lease on {url}");
}

#[actix_rt::test]
async fn a_node_taking_an_upload_over_reads_the_staged_tail_back_and_a_stale_copy_is_not_used() {
    let a = spawn_app_with(Backend::S3, |s| {
        s.uploads.session_idle_secs = 1;
        s.server.node_id = "node-a".to_owned();
    })
    .await;
    let b = a.spawn_node("node-b").await;
    let url = a.create_upload((8 * MIB + 600 * 1024) as u64).await;
    let url_b = url.replace(&a.address, &b.address);
    let data = bytes(8 * MIB + 600 * 1024, 28);
    // Node a stages the first MiB of part 1 (and keeps a copy of it).
    for at in (0..MIB).step_by(256 * 1024) {
        patch_when_free(&a, &url, at as u64, &data[at..at + 256 * 1024]).await;
    }
    // Node b fills part 1: it has no copy, so it reads a's staged MiB back, and stages
    // 300 KiB of part 2.
    patch_when_free(&b, &url_b, MIB as u64, &data[MIB..8 * MIB + 300 * 1024]).await;
    assert_eq!(s3(&b).staged_bytes_read(), MIB as u64);
    // Node a ends the upload. Its copy (part 1's first MiB) is not part 2's tail: it reads
    // b's 300 KiB back.
    patch_when_free(&a, &url, (8 * MIB + 300 * 1024) as u64, &data[8 * MIB + 300 * 1024..]).await;
    assert_eq!(s3(&a).staged_bytes_read(), 300 * 1024);
    assert!(a.download_bytes(&url).await == data, "the object is not the bytes sent");
}

#[actix_rt::test]
async fn a_deferred_length_upload_keeps_the_bytes_of_its_staged_tail() {
    // tusd #396/#798: the last bytes of a deferred-length upload sat in a tail and were lost.
    let app = spawn_app(Backend::S3).await;
    let response = app.tus(Method::POST, &app.files_url()).header("Upload-Defer-Length", "1").send().await.unwrap();
    let url = location(&response);
    let data = bytes(9 * MIB + 333, 23);
    assert_eq!(app.patch(&url, 0, &data[..9 * MIB]).await.status(), 204);
    assert_eq!(app.patch(&url, 9 * MIB as u64, &data[9 * MIB..9 * MIB + 300]).await.status(), 204);
    let last = app
        .patch_request(&url, (9 * MIB + 300) as u64, data[9 * MIB + 300..].to_vec())
        .header("Upload-Length", data.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 204);
    assert_eq!(app.download_bytes(&url).await, data);
}

#[actix_rt::test]
async fn large_partials_are_joined_by_upload_part_copy() {
    let app = spawn_app(Backend::S3).await;
    let (a, b) = (bytes(5 * MIB + 10, 24), bytes(MIB, 25));
    let urls = [partial(&app, &a, true).await, partial(&app, &b, true).await];
    let response = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Concat", format!("final;{} {}", urls[0], urls[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let mut expected = a.clone();
    expected.extend_from_slice(&b);
    assert_eq!(app.download_bytes(&location(&response)).await, expected);
}

#[actix_rt::test]
async fn the_janitor_aborts_multipart_uploads_no_upload_owns() {
    let app = spawn_app_with(Backend::S3, |s| s.janitor.orphan_grace_secs = 0).await;
    let live = app.create_upload(10).await;
    assert_eq!(app.patch(&live, 0, b"abc").await.status(), 204);
    let client = s3(&app).client();
    let bucket = s3(&app).bucket();
    client.create_multipart_upload().bucket(bucket).key("hoist/orphan").send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let policy = hoist::session::SweepPolicy::from_settings(&app.settings);
    let report = hoist::session::sweep_once(&app.state.repo, &app.state.store, &app.state.cache, policy).await.unwrap();
    assert_eq!(report.orphans_aborted, 1);
    let left = s3(&app).multipart_uploads("hoist/").await.unwrap();
    assert_eq!(left.len(), 1, "only the live upload's multipart upload remains");
    assert_eq!(left[0].0, format!("hoist/{}", upload_id(&live)));
    assert_eq!(app.patch(&live, 3, b"defghij").await.status(), 204);
    assert_eq!(app.download_bytes(&live).await, b"abcdefghij");
}

/// A loopback TCP proxy in front of the emulator that can be switched off: S3 unreachable.
struct Proxy {
    address: String,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (flag, tasks) = (up.clone(), connections.clone());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let upstream = upstream.clone();
                tasks.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Proxy { address, up, connections }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for task in self.connections.lock().unwrap().drain(..) {
                task.abort();
            }
        }
    }
}

#[actix_rt::test]
async fn s3_unavailable_answers_503_and_the_upload_resumes_when_it_returns() {
    let proxy = Proxy::start(crate::helpers::s3_endpoint()).await;
    let address = proxy.address.clone();
    let app = spawn_app_with(Backend::S3, move |s| {
        s.store.s3.endpoint = address;
        s.store.s3.max_attempts = 2;
    })
    .await;
    let data = bytes(300_000, 26);
    let url = app.create_upload(data.len() as u64).await;
    assert_eq!(app.patch(&url, 0, &data[..100_000]).await.status(), 204);

    proxy.set_up(false);
    let response = app.patch(&url, 100_000, &data[100_000..200_000]).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("Retry-After").is_some());
    assert_eq!(error_code(response).await, "service_unavailable");
    assert_eq!(app.offset(&url).await, 100_000, "nothing acknowledged that S3 does not hold");
    let ready = app.client.get(format!("{}/health/ready", app.address)).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    proxy.set_up(true);
    assert_eq!(app.patch(&url, 100_000, &data[100_000..]).await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, data);
}
