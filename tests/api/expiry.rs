use std::time::Duration;

use crate::helpers::{error_code, spawn_app_with, Backend};
use crate::on_every_backend;

async fn unfinished_uploads_expire_and_the_janitor_removes_them(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.uploads.lifetime_secs = 1).await;
    let url = app.create_upload(10).await;
    let response = app.patch(&url, 0, b"abc").await;
    assert_eq!(response.status(), 204);
    let expires = response.headers().get("Upload-Expires").expect("Upload-Expires").to_str().unwrap().to_owned();
    assert!(expires.ends_with(" GMT"), "{expires}");
    let done = app.create_upload(1).await;
    assert_eq!(app.patch(&done, 0, b"z").await.status(), 204);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = app.patch(&url, 3, b"def").await;
    assert_eq!(response.status(), 410);
    assert_eq!(error_code(response).await, "upload_expired");
    assert_eq!(app.head(&url).await.status(), 410);

    // The session that wrote it must let go of its lease before the janitor may sweep.
    assert!(app.stored(&url).await);
    let state = app.state.clone();
    let policy = hoist::session::SweepPolicy::from_settings(&app.settings);
    state
        .repo
        .run_blocking(|conn| {
            use diesel::prelude::*;
            use hoist::db::schema::uploads::dsl as u;
            diesel::update(u::uploads).set(u::lease_owner.eq(None::<String>)).execute(conn)?;
            Ok(())
        })
        .unwrap();
    let report = hoist::session::sweep_once(&state.repo, &state.store, &state.cache, policy).await.unwrap();
    assert_eq!(report.expired, 1);
    assert!(!app.stored(&url).await, "expired bytes deleted");
    assert_eq!(app.head(&url).await.status(), 410);
    // Completed uploads do not expire.
    assert_eq!(app.download_bytes(&done).await, b"z");
}
on_every_backend!(unfinished_uploads_expire_and_the_janitor_removes_them);
