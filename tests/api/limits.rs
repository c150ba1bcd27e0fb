//! Rate limits (per subject, per IP without a token, body bytes paced) and quotas on
//! unfinished uploads: 429 with Retry-After and RateLimit-* headers.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::helpers::{bytes, error_code, header_u64, spawn_app_with, Backend};
use crate::on_every_backend;

#[actix_rt::test]
async fn requests_over_the_rate_get_429_per_subject_and_per_ip() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        // One token a second: none flows back between the quick requests below, however
        // slow a loaded CI machine makes them.
        s.limits.requests_per_second = 1;
        s.limits.request_burst = 5;
    })
    .await;
    let url = app.create_upload(10).await;
    let mut remaining = Vec::new();
    for _ in 0..4 {
        let response = app.head(&url).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header_u64(response.headers(), "RateLimit-Limit"), 5);
        remaining.push(header_u64(response.headers(), "RateLimit-Remaining"));
    }
    assert_eq!(remaining, [3, 2, 1, 0]);
    let refused = app.head(&url).await;
    assert_eq!(refused.status(), 429);
    let retry_after = header_u64(refused.headers(), "Retry-After");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header_u64(refused.headers(), "RateLimit-Remaining"), 0);
    let refused = app.tus(Method::POST, &app.files_url()).header("Upload-Length", "1").send().await.unwrap();
    assert_eq!(error_code(refused).await, "rate_limited");

    // Bob has his own bucket; probes are never limited.
    assert_eq!(app.tus_as(&app.bob, Method::HEAD, &url).send().await.unwrap().status(), 404);
    for _ in 0..10 {
        let live = app.client.get(format!("{}/health/live", app.address)).send().await.unwrap();
        assert_eq!(live.status(), 200);
    }
    // Without a valid token the client IP is the key: the sixth gets 429, not 401.
    let anonymous = || app.client.post(app.files_url()).header("Tus-Resumable", "1.0.0").send();
    for _ in 0..5 {
        assert_eq!(anonymous().await.unwrap().status(), 401);
    }
    assert_eq!(anonymous().await.unwrap().status(), 429);

    // Tokens flow back at one a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.head(&url).await.status(), 200);

    let refusals = app.metric("hoist_rate_limited_total{limit=\"requests\"}").await;
    assert!(refusals >= 3.0, "{refusals}");
}

#[actix_rt::test]
async fn request_bodies_are_paced_to_the_byte_rate_and_arrive_whole() {
    let rate = 256 * 1024;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.body_bytes_per_second = rate;
        s.limits.body_bytes_burst = rate;
    })
    .await;
    let body = bytes(1024 * 1024, 7);
    let url = app.create_upload(body.len() as u64).await;
    let started = Instant::now();
    let response = app.patch(&url, 0, &body).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 204);
    // The first 256 KiB are the burst; the other 768 KiB take three seconds at 256 KiB/s.
    assert!(elapsed >= Duration::from_millis(2500), "1 MiB took only {elapsed:?}");
    assert_eq!(app.download_bytes(&url).await, body);

    // A new body starts once the bucket holds a chunk's worth again (64 KiB: a quarter of a
    // second at this rate)...
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and while that body is being paced, the bucket hovers near empty: a second body is
    // refused until it refills.
    let url = app.create_upload(rate * 4).await;
    let first = app.patch_request(&url, 0, bytes(rate as usize * 2, 1)).send();
    let (first, second) = tokio::join!(first, async {
        // Mid-way through the first body (it takes about a second after its burst).
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.patch(&url, 0, b"x").await
    });
    assert_eq!(first.unwrap().status(), 204);
    assert_eq!(second.status(), 429);
    assert!(header_u64(second.headers(), "Retry-After") >= 1);
}

async fn quotas_cap_unfinished_uploads_per_account(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.limits.max_open_uploads = 2;
        s.limits.max_open_bytes = 100;
        s.limits.max_upload_size = 80;
    })
    .await;
    let first = app.create_upload(60).await;
    let too_many_bytes = app.create(50).await;
    assert_eq!(too_many_bytes.status(), 429);
    assert!(header_u64(too_many_bytes.headers(), "Retry-After") >= 1);
    assert_eq!(header_u64(too_many_bytes.headers(), "RateLimit-Limit"), 100);
    assert_eq!(header_u64(too_many_bytes.headers(), "RateLimit-Remaining"), 40);
    assert_eq!(error_code(too_many_bytes).await, "quota_exceeded");
    let second = app.create_upload(40).await;

    let third = app.create(1).await;
    assert_eq!(third.status(), 429);
    assert_eq!(header_u64(third.headers(), "RateLimit-Limit"), 2);
    // Bob's quota is his own; the admin has none.
    assert_eq!(
        app.tus_as(&app.bob, Method::POST, &app.files_url())
            .header("Upload-Length", "5")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let admin =
        app.tus_as(&app.admin, Method::POST, &app.files_url()).header("Upload-Length", "1000").send().await.unwrap();
    assert_eq!(admin.status(), 201);

    // Finishing an upload frees its place.
    assert_eq!(app.patch(&second, 0, &bytes(40, 1)).await.status(), 204);
    let too_large = app.create(81).await;
    assert_eq!(too_large.status(), 413);
    assert_eq!(error_code(too_large).await, "upload_too_large");
    // 60 bytes still outstanding on the first upload: 40 more fit, 41 do not.
    assert_eq!(app.create(41).await.status(), 429);
    assert_eq!(app.create(40).await.status(), 201);
    assert_eq!(app.patch(&first, 0, &bytes(60, 2)).await.status(), 204);
}
on_every_backend!(quotas_cap_unfinished_uploads_per_account);
