use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use crate::helpers::{
    bytes, error_code, hand_fed_body, patient_cuts, spawn_app, spawn_app_with, test_settings, Backend, TestApp,
    TestClient,
};
use crate::on_every_backend;
use hoist::db::models::{UploadRow, UploadState};
use hoist::db::uploads::{self, LeaseOutcome, Progress};

/// A PATCH whose body the test feeds by hand.
fn slow_patch(
    app: &TestApp,
    url: &str,
    offset: u64,
    len: u64,
) -> (tokio::sync::mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<reqwest::Response>) {
    let (tx, body) = hand_fed_body();
    let request = app.patch_request(url, offset, body).header("Content-Length", len.to_string());
    (tx, tokio::spawn(async move { request.send().await.expect("slow PATCH") }))
}

/// With `uploads.cut_abandoned_requests` off, a second PATCH waits behind the first.
async fn concurrent_patches_never_interleave(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.uploads.cut_abandoned_requests = false).await;
    let url = app.create_upload(8).await;
    let other = app.create_upload(3).await;
    let (tx, first) = slow_patch(&app, &url, 0, 4);
    tx.send(b"ab".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The second PATCH waits for the lock (500 ms in the test config), then gets 423.
    let second = app.patch(&url, 0, b"XXXX").await;
    assert_eq!(second.status(), 423);
    assert_eq!(error_code(second).await, "upload_locked");
    // A slow upload never blocks another one.
    assert_eq!(app.patch(&other, 0, b"xyz").await.status(), 204);
    tx.send(b"cd".to_vec()).await.unwrap();
    drop(tx);
    assert_eq!(first.await.unwrap().status(), 204);
    assert_eq!(app.patch(&url, 4, b"efgh").await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, b"abcdefgh");
}
on_every_backend!(concurrent_patches_never_interleave);

/// A tus client resuming after losing its PATCH (a phone changing networks leaves the server a
/// half-open connection that streams nothing until `server.body_idle_timeout_secs`) does not
/// wait that out behind 423s, which tus-js-client's retries (0, 1, 3 and 5 s) would not
/// outlast: its HEAD cuts the stalled request, which commits what arrived, and reports that
/// offset; the PATCH from there lands at once. A PATCH sent without a HEAD cuts it too and
/// then meets the offset the cut request committed.
async fn a_resuming_tus_client_cuts_the_request_it_gave_up_on(backend: Backend) {
    let app = spawn_app_with(backend, patient_cuts).await;
    let data = bytes(300_000, 47);
    let url = app.create_upload(data.len() as u64).await;
    let (tx, lost) = slow_patch(&app, &url, 0, data.len() as u64);
    tx.send(data[..100_000].to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let head = app.tus(Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(crate::helpers::header_u64(head.headers(), "Upload-Offset"), 100_000, "the cut request's bytes");
    // Were its client still there, the cut request tells it where it got to.
    let lost = tokio::time::timeout(Duration::from_secs(5), lost).await.expect("the cut request's answer").unwrap();
    assert_eq!(lost.status(), 204);
    assert_eq!(crate::helpers::header_u64(lost.headers(), "Upload-Offset"), 100_000);

    let (tx_again, lost_again) = slow_patch(&app, &url, 100_000, 200_000);
    tx_again.send(data[100_000..150_000].to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stale = app.patch(&url, 100_000, &data[100_000..]).await;
    assert_eq!(stale.status(), 409, "the cut request committed 50,000 bytes first");
    assert_eq!(crate::helpers::header_u64(stale.headers(), "Upload-Offset"), 150_000);
    assert_eq!(app.patch(&url, 150_000, &data[150_000..]).await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, data);
    assert_eq!(app.metric("hoist_requests_cut_total").await, 2.0, "the HEAD's cut and the PATCH's");
    drop((tx, tx_again));
    lost_again.abort();
}
on_every_backend!(a_resuming_tus_client_cuts_the_request_it_gave_up_on);

/// tus termination does not wait behind a request still streaming in (tus-js-client's
/// `abort(true)` sends its DELETE right after dropping its PATCH): it cuts it and answers 204.
/// Nor does an admin's.
#[actix_rt::test]
async fn terminations_cut_a_request_still_streaming() {
    let app = spawn_app_with(Backend::Sqlite, patient_cuts).await;
    let url = app.create_upload(1000).await;
    let (tx, lost) = slow_patch(&app, &url, 0, 1000);
    tx.send(vec![7; 10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.tus(Method::DELETE, &url).send().await.unwrap().status(), 204);
    assert_eq!(app.tus(Method::HEAD, &url).send().await.unwrap().status(), 410);
    drop(tx);
    lost.abort();

    // So does an admin's.
    let url = app.create_upload(1000).await;
    let (tx, lost) = slow_patch(&app, &url, 0, 1000);
    tx.send(vec![7; 10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = url.rsplit('/').next().unwrap();
    let terminated =
        app.client.delete(format!("{}/admin/uploads/{id}", app.address)).bearer_auth(&app.admin).send().await.unwrap();
    assert_eq!(terminated.status(), 204);
    assert_eq!(app.tus(Method::HEAD, &url).send().await.unwrap().status(), 410);
    drop(tx);
    lost.abort();
}

async fn a_client_that_disconnects_mid_body_keeps_what_arrived(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(1_000_000).await;
    let path = url.trim_start_matches(&app.address).to_owned();
    let data = bytes(1_000_000, 5);
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 1000000\r\n\r\n",
        app.alice
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data[..300_000]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    let mut offset = 0;
    for _ in 0..50 {
        offset = app.offset(&url).await;
        if offset == 300_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(offset, 300_000, "every received byte is kept");
    assert_eq!(app.patch(&url, offset, &data[300_000..]).await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, data);
}
on_every_backend!(a_client_that_disconnects_mid_body_keeps_what_arrived);

/// The memory budget for bodies binds across uploads: sixteen 1 MiB PATCHes at once against
/// a 1 MiB budget. Each writer must store its partial batch when other bodies wait for
/// room; if it waited for a full batch instead, every request would wait for ever.
async fn many_bodies_over_a_small_memory_budget_all_arrive_whole(backend: Backend) {
    many_bodies_over_a_one_mib_budget(backend, true).await;
}
on_every_backend!(many_bodies_over_a_small_memory_budget_all_arrive_whole);

/// The same with fsync off, where the disk store writes those early batches on the session's
/// own thread instead of handing them to `hoist-io`: every byte still lands, in order.
async fn many_bodies_over_a_small_memory_budget_arrive_whole_with_fsync_off(backend: Backend) {
    many_bodies_over_a_one_mib_budget(backend, false).await;
}
on_every_backend!(many_bodies_over_a_small_memory_budget_arrive_whole_with_fsync_off);

/// With fsync off and `write_on_http_workers`, each session lends its file to the request's
/// pump once nothing is on its way through the pipe, while other pumps wait for room in the
/// budget: every body still lands whole and in order, none waits for ever, and every chunk
/// that went through the pipe gave its room back.
async fn many_bodies_written_by_the_http_workers_arrive_whole(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.server.body_buffer_mib = 1;
        s.store.disk.fsync = false;
        s.store.disk.write_on_http_workers = true;
    })
    .await;
    let mut urls = Vec::new();
    for _ in 0..16 {
        urls.push(app.create_upload(2 << 20).await);
    }
    for half in 0..2u64 {
        patch_all_at_once(&app, &urls, half << 20, |i| bytes(1 << 20, (i as u64 * 2 + half) as u8)).await;
    }
    for (i, url) in urls.iter().enumerate() {
        let expected = [bytes(1 << 20, (i * 2) as u8), bytes(1 << 20, (i * 2 + 1) as u8)].concat();
        assert!(app.download_bytes(url).await == expected, "upload {i} arrived whole");
    }
    assert_eq!(app.state.sessions.deps().body_budget.held(), 0);
}
on_every_backend!(many_bodies_written_by_the_http_workers_arrive_whole);

/// PATCHes every upload in `urls` at `offset` at once, the i-th with `body(i)`, and asserts
/// that each is acknowledged within a minute.
async fn patch_all_at_once(app: &TestApp, urls: &[String], offset: u64, body: impl Fn(usize) -> Vec<u8>) {
    let patches = urls.iter().enumerate().map(|(i, url)| {
        let request = app.patch_request(url, offset, body(i));
        async move { request.send().await.expect("PATCH").status() }
    });
    let statuses = tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(patches))
        .await
        .expect("every PATCH finishes");
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
}

async fn many_bodies_over_a_one_mib_budget(backend: Backend, fsync: bool) {
    let app = spawn_app_with(backend, |s| {
        s.server.body_buffer_mib = 1;
        s.store.disk.fsync = fsync;
    })
    .await;
    // A body that fits never waits, and the operators' counter says so.
    let small = app.create_upload(3).await;
    assert_eq!(app.patch(&small, 0, b"abc").await.status(), 204);
    assert_eq!(app.metric("hoist_body_budget_waits_total").await, 0.0);
    let uploads = 16;
    let mut urls = Vec::new();
    for _ in 0..uploads {
        urls.push(app.create_upload(1 << 20).await);
    }
    patch_all_at_once(&app, &urls, 0, |i| bytes(1 << 20, i as u8)).await;
    for (i, url) in urls.iter().enumerate() {
        assert!(app.download_bytes(url).await == bytes(1 << 20, i as u8), "upload {i} arrived whole");
    }
    // Every chunk gave its share back once stored.
    assert_eq!(app.state.sessions.deps().body_budget.held(), 0);
    // 16 MiB at once through 1 MiB: bodies waited for room, which operators can see.
    assert!(app.metric("hoist_body_budget_waits_total").await > 0.0);
}

/// Whether every session of `app` stops within 4 s (polled every 100 ms).
async fn sessions_stop_within_4s(app: &TestApp) -> bool {
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app.state.sessions.live_sessions() == 0 {
            return true;
        }
    }
    false
}

async fn an_idle_session_stops_and_is_rebuilt_from_the_database(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.uploads.session_idle_secs = 1).await;
    let url = app.create_upload(6).await;
    assert_eq!(app.patch(&url, 0, b"abc").await.status(), 204);
    assert_eq!(app.state.sessions.live_sessions(), 1);
    let stopped = sessions_stop_within_4s(&app).await;
    assert!(stopped, "idle session stopped");
    assert_eq!(app.offset(&url).await, 3);
    assert_eq!(app.patch(&url, 3, b"def").await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, b"abcdef");
}
on_every_backend!(an_idle_session_stops_and_is_rebuilt_from_the_database);

/// A session counts the jobs sent to it: one that gave up waiting for the lock (423) must
/// still be counted out, or the session would never idle out; and requests that arrive just
/// as a session idles out must each find a session that runs them.
async fn sessions_idle_out_after_abandoned_jobs_and_never_drop_a_request(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.uploads.session_idle_secs = 1;
        // The abandoned job is a PATCH that gave up waiting behind another.
        s.uploads.cut_abandoned_requests = false;
    })
    .await;
    let url = app.create_upload(1000).await;
    let (tx, first) = slow_patch(&app, &url, 0, 2);
    tx.send(b"a".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.patch(&url, 0, b"X").await.status(), 423, "the lock wait (500 ms) runs out");
    tx.send(b"b".to_vec()).await.unwrap();
    drop(tx);
    assert_eq!(first.await.unwrap().status(), 204);
    let stopped = sessions_stop_within_4s(&app).await;
    assert!(stopped, "the session idled out despite the abandoned job");
    // PATCHes spaced across the idle limit (checked every half second): each one lands,
    // whether its session is fresh, live or just retiring.
    let mut offset = 2;
    for pause_ms in [900, 1000, 1100, 950, 1050, 1200, 990, 1010] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        assert_eq!(app.patch(&url, offset, b"z").await.status(), 204, "PATCH at {offset}");
        offset += 1;
    }
    assert_eq!(app.offset(&url).await, offset);
}
on_every_backend!(sessions_idle_out_after_abandoned_jobs_and_never_drop_a_request);

/// Two processes racing at the SQL level: the lease and the offset compare-and-set let
/// exactly one advance an upload.
async fn two_writers_cannot_both_advance_one_upload(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(10).await;
    let id = url.rsplit('/').next().unwrap().to_owned();
    let repo = app.state.repo.clone();
    let soon = (Utc::now() + chrono::Duration::seconds(60)).naive_utc();
    let admitted_a = match repo.run_blocking(|c| uploads::acquire_lease(c, &id, "node-a", soon)).unwrap() {
        LeaseOutcome::Acquired(row) => *row,
        _ => panic!("node a gets the lease"),
    };
    let token_a = admitted_a.lease_token;
    assert!(matches!(
        repo.run_blocking(|c| uploads::acquire_lease(c, &id, "node-b", soon)).unwrap(),
        LeaseOutcome::HeldElsewhere
    ));
    let step = |from, to| Progress {
        from_offset: from,
        to_offset: to,
        declare_length: None,
        complete: false,
        lease_until: soon,
        new_parts: Vec::new(),
    };
    // An admin moves the expiry while A's append streams in (after A read the row).
    let later = (Utc::now() + chrono::Duration::days(3)).naive_utc();
    assert!(repo.run_blocking(|c| hoist::db::admin::set_expiry(c, &id, later)).unwrap());
    let advanced: Option<UploadRow> =
        repo.run_blocking(|c| uploads::commit_progress(c, &admitted_a, token_a, &step(0, 5))).unwrap();
    // The answer is built from A's copy of the row, not read back: it must still be the row as
    // stored, the new expiry included, since it is what the cache and HEAD then serve.
    let stored = repo.run_blocking(|c| uploads::find(c, &id)).unwrap().unwrap();
    assert_eq!(advanced.unwrap(), stored);
    assert_eq!(stored.upload_offset, 5);
    // The same step again (a second writer that read offset 0) fails.
    assert!(repo.run_blocking(|c| uploads::commit_progress(c, &admitted_a, token_a, &step(0, 5))).unwrap().is_none());
    // Once A's lease lapses B takes over, and A is fenced out even at the right offset.
    repo.run_blocking(|c| {
        use diesel::prelude::*;
        use hoist::db::schema::uploads::dsl as u;
        diesel::update(u::uploads)
            .set(u::lease_expires_at.eq(Some((Utc::now() - chrono::Duration::seconds(1)).naive_utc())))
            .execute(c)?;
        Ok(())
    })
    .unwrap();
    let admitted_b = match repo.run_blocking(|c| uploads::acquire_lease(c, &id, "node-b", soon)).unwrap() {
        LeaseOutcome::Acquired(row) => *row,
        _ => panic!("node b takes over a lapsed lease"),
    };
    let token_b = admitted_b.lease_token;
    assert!(token_b > token_a);
    assert!(repo.run_blocking(|c| uploads::commit_progress(c, &admitted_a, token_a, &step(5, 8))).unwrap().is_none());
    let row = repo.run_blocking(|c| uploads::commit_progress(c, &admitted_b, token_b, &step(5, 8))).unwrap().unwrap();
    assert_eq!((row.upload_offset, row.state()), (8, UploadState::Open));
    // Through HTTP, this node now finds the upload leased elsewhere.
    let response = app
        .tus(Method::PATCH, &url)
        .header("Upload-Offset", "8")
        .header("Content-Type", "application/offset+octet-stream")
        .body("ab")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 423);
}
on_every_backend!(two_writers_cannot_both_advance_one_upload);

/// (thread name, nice value) of every thread of process `pid`.
fn thread_priorities(pid: u32) -> Vec<(String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // "tid (name) state ppid ..." where the name may hold spaces: split at the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map(|(_, name)| name.to_owned()).unwrap_or_default();
        // After the name: state is field 3, nice is field 19.
        let nice = rest.split_whitespace().nth(16).and_then(|v| v.parse().ok()).unwrap_or(i64::MIN);
        threads.push((name, nice));
    }
    threads
}

#[actix_rt::test]
async fn the_threads_that_write_bodies_yield_to_request_handling() {
    let (settings, _data_dir, _pg) = test_settings(Backend::Sqlite).await;
    let port = crate::binary::free_port();
    let server =
        crate::binary::Server::start_with(&settings, port, &[("HOIST__SERVER__IO_NICE", "7")], Stdio::null()).await;
    let app = TestClient::new(port, &settings);
    let url = app.create_upload(6).await;
    assert_eq!(app.patch(&url, 0, b"abc").await.status(), 204);
    assert_eq!(app.patch(&url, 3, b"def").await.status(), 204);

    // The server inherits this process's priority; only its I/O threads may differ from it.
    let own = thread_priorities(std::process::id()).first().map(|(_, nice)| *nice).unwrap_or(0);
    let threads = thread_priorities(server.pid());
    let io: Vec<_> = threads.iter().filter(|(name, _)| name == hoist::session::IO_THREAD_NAME).collect();
    assert!(!io.is_empty(), "the PATCHes ran on I/O threads: {threads:?}");
    assert!(io.iter().all(|(_, nice)| *nice == own.max(7)), "every I/O thread at the configured nice: {threads:?}");
    let others: Vec<_> = threads.iter().filter(|(name, _)| name != hoist::session::IO_THREAD_NAME).collect();
    assert!(others.iter().all(|(_, nice)| *nice == own), "request handling keeps its priority: {threads:?}");
    assert_eq!(app.download_bytes(&url).await, b"abcdef");
}

/// However many uploads stream at once, the threads that write their bodies stay within
/// `server.io_threads`, and every upload still arrives whole: appends queue for a thread.
#[actix_rt::test]
async fn the_threads_that_write_bodies_stay_within_their_limit() {
    let (settings, _data_dir, _pg) = test_settings(Backend::Sqlite).await;
    let port = crate::binary::free_port();
    let server =
        crate::binary::Server::start_with(&settings, port, &[("HOIST__SERVER__IO_THREADS", "2")], Stdio::null()).await;
    let app = TestClient::new(port, &settings);
    let (uploads, chunk, chunks) = (16, 256 << 10, 4);
    let mut urls = Vec::new();
    for _ in 0..uploads {
        urls.push(app.create_upload((chunk * chunks) as u64).await);
    }
    let pid = server.pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampling = stop.clone();
    let sampler = tokio::spawn(async move {
        let mut most = 0;
        while !sampling.load(std::sync::atomic::Ordering::SeqCst) {
            let io = thread_priorities(pid).iter().filter(|(name, _)| name == hoist::session::IO_THREAD_NAME).count();
            most = most.max(io);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        most
    });
    let uploading = urls.iter().enumerate().map(|(i, url)| {
        let app = &app;
        async move {
            let body = bytes(chunk * chunks, i as u8);
            for c in 0..chunks {
                let response = app.patch(url, (c * chunk) as u64, &body[c * chunk..(c + 1) * chunk]).await;
                assert_eq!(response.status(), 204, "upload {i}, chunk {c}");
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(uploading))
        .await
        .expect("every upload finishes with two writer threads");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let most = sampler.await.expect("sampler");
    assert!((1..=2).contains(&most), "{most} writer threads at most, against a limit of 2");
    for (i, url) in urls.iter().enumerate() {
        assert!(app.download_bytes(url).await == bytes(chunk * chunks, i as u8), "upload {i} arrived whole");
    }
}
