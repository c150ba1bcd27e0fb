use reqwest::Method;

use crate::helpers::{error_code, spawn_app, Backend};
use crate::on_every_backend;

async fn requests_without_a_valid_token_get_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let no_token = app
        .client
        .post(app.files_url())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(error_code(no_token).await, "unauthorized");
    let forged = app
        .tus_as("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad", Method::POST, &app.files_url())
        .header("Upload-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}
on_every_backend!(requests_without_a_valid_token_get_401);

async fn another_users_upload_does_not_exist_for_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(4).await;
    assert_eq!(app.patch(&url, 0, b"ab").await.status(), 204);
    let as_bob = |method: Method| app.tus_as(&app.bob, method, &url);
    assert_eq!(as_bob(Method::HEAD).send().await.unwrap().status(), 404);
    let patch = as_bob(Method::PATCH)
        .header("Upload-Offset", "2")
        .header("Content-Type", "application/offset+octet-stream")
        .body("cd")
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 404);
    assert_eq!(as_bob(Method::DELETE).send().await.unwrap().status(), 404);
    assert_eq!(as_bob(Method::GET).send().await.unwrap().status(), 404);
    // The admin may act on anyone's upload.
    let admin_head = app.tus_as(&app.admin, Method::HEAD, &url).send().await.unwrap();
    assert_eq!(admin_head.status(), 200);
    assert_eq!(app.offset(&url).await, 2);
}
on_every_backend!(another_users_upload_does_not_exist_for_them);
