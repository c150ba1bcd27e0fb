use std::time::Duration;

use reqwest::Method;

use crate::helpers::{bytes, error_code, hand_fed_body, header_u64, location, spawn_app, spawn_app_with, Backend};
use crate::on_every_backend;

async fn a_retried_creation_returns_the_first_upload(backend: Backend) {
    let app = spawn_app(backend).await;
    let create = || {
        app.tus(Method::POST, &app.files_url()).header("Upload-Length", "10").header("Idempotency-Key", "\"create-1\"")
    };
    let first = create().send().await.unwrap();
    assert_eq!(first.status(), 201);
    let second = create().send().await.unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(location(&first), location(&second));
    assert_eq!(second.headers()["Idempotent-Replayed"], "true");
    assert_eq!(app.count_uploads(), 1);
    // The same key for a different request is an error, not a replay.
    let different = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Length", "11")
        .header("Idempotency-Key", "\"create-1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(different.status(), 422);
    assert_eq!(error_code(different).await, "idempotency_key_reused");
    // Keys belong to their client: bob's "create-1" is his own.
    let bobs = app
        .tus_as(&app.bob, Method::POST, &app.files_url())
        .header("Upload-Length", "10")
        .header("Idempotency-Key", "\"create-1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(bobs.status(), 201);
    assert_ne!(location(&bobs), location(&first));
    assert_eq!(app.count_uploads(), 2);
}
on_every_backend!(a_retried_creation_returns_the_first_upload);

async fn a_retried_patch_replays_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(10).await;
    let patch = || app.patch_request(&url, 0, b"abcde".to_vec()).header("Idempotency-Key", "p-1");
    let first = patch().send().await.unwrap();
    assert_eq!(first.status(), 204);
    let retry = patch().send().await.unwrap();
    assert_eq!(retry.status(), 204);
    assert_eq!(header_u64(retry.headers(), "Upload-Offset"), 5);
    assert_eq!(app.offset(&url).await, 5);
}
on_every_backend!(a_retried_patch_replays_and_changes_nothing);

/// With `uploads.cut_abandoned_requests` off (a retried append otherwise cuts the first, below).
async fn a_retry_while_the_first_runs_gets_409(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.uploads.cut_abandoned_requests = false).await;
    let url = app.create_upload(10).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let body =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx)) },
        );
    let slow = app
        .patch_request(&url, 0, reqwest::Body::wrap_stream(body))
        .header("Idempotency-Key", "slow")
        .header("Content-Length", "4")
        .send();
    let slow = tokio::spawn(slow);
    tx.send(b"ab".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let retry = app.patch_request(&url, 0, b"abcd".to_vec()).header("Idempotency-Key", "slow").send().await.unwrap();
    assert_eq!(retry.status(), 409);
    assert_eq!(error_code(retry).await, "idempotency_request_in_flight");
    tx.send(b"cd".to_vec()).await.unwrap();
    drop(tx);
    let first = slow.await.unwrap().unwrap();
    assert_eq!(first.status(), 204);
    assert_eq!(app.offset(&url).await, 4);
}
on_every_backend!(a_retry_while_the_first_runs_gets_409);

/// A client retries an append once it gave up on the first try, whose connection the server
/// may still hold half-open: the retry cuts it and gets its answer, which says how far it got,
/// instead of 409 until the dead body idles out. The client goes on from there.
async fn a_retried_append_cuts_the_first_try_and_replays_its_answer(backend: Backend) {
    let app = spawn_app_with(backend, crate::helpers::patient_cuts).await;
    let data = bytes(300_000, 48);
    let url = app.create_upload(data.len() as u64).await;
    let (tx, body) = hand_fed_body();
    let first = app
        .patch_request(&url, 0, body)
        .header("Idempotency-Key", "try")
        .header("Content-Length", data.len().to_string())
        .send();
    let first = tokio::spawn(first);
    tx.send(data[..100_000].to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let retry = app.patch_request(&url, 0, data.clone()).header("Idempotency-Key", "try").send().await.unwrap();
    assert_eq!(retry.status(), 204);
    assert_eq!(retry.headers().get("Idempotent-Replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(header_u64(retry.headers(), "Upload-Offset"), 100_000, "how far the first try got");
    assert_eq!(app.patch(&url, 100_000, &data[100_000..]).await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, data);
    drop(tx);
    first.abort();
}
on_every_backend!(a_retried_append_cuts_the_first_try_and_replays_its_answer);
