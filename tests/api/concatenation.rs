use reqwest::Method;

use crate::helpers::{bytes, error_code, header_str, location, spawn_app, Backend, TestApp};
use crate::on_every_backend;

/// Creates a partial upload of `data`, sent whole or only half.
pub async fn partial(app: &TestApp, data: &[u8], complete: bool) -> String {
    let response = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Length", data.len().to_string())
        .header("Upload-Concat", "partial")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let url = location(&response);
    let send = if complete { data } else { &data[..data.len() / 2] };
    assert_eq!(app.patch(&url, 0, send).await.status(), 204);
    url
}

async fn final_upload_joins_partials_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let (a, b) = (bytes(70_000, 1), bytes(12_345, 2));
    let url_a = partial(&app, &a, true).await;
    let url_b = partial(&app, &b, true).await;
    let head_a = app.head(&url_a).await;
    assert_eq!(header_str(head_a.headers(), "Upload-Concat"), "partial");
    // Absolute and relative URLs both name partials.
    let path_b = url_b.trim_start_matches(&app.address).to_owned();
    let response = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Concat", format!("final;{url_a} {path_b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let url = location(&response);
    let head = app.head(&url).await;
    assert!(header_str(head.headers(), "Upload-Concat").starts_with("final;/files/"));
    assert_eq!(head.headers()["Upload-Length"], (a.len() + b.len()).to_string().as_str());
    let mut expected = a.clone();
    expected.extend_from_slice(&b);
    assert_eq!(app.download_bytes(&url).await, expected);
    let response = app.patch(&url, 0, b"x").await;
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "patch_on_final_upload");
}
on_every_backend!(final_upload_joins_partials_in_order);

async fn final_upload_needs_complete_owned_partials(backend: Backend) {
    let app = spawn_app(backend).await;
    let done = partial(&app, &bytes(10, 1), true).await;
    let unfinished = partial(&app, &bytes(10, 2), false).await;
    let response = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Concat", format!("final;{done} {unfinished}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "partial_upload_incomplete");
    let plain = app.create_upload(1).await;
    let response =
        app.tus(Method::POST, &app.files_url()).header("Upload-Concat", format!("final;{plain}")).send().await.unwrap();
    assert_eq!(error_code(response).await, "not_a_partial_upload");
    // Bob cannot concatenate alice's partials.
    let response = app
        .tus_as(&app.bob, Method::POST, &app.files_url())
        .header("Upload-Concat", format!("final;{done}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
on_every_backend!(final_upload_needs_complete_owned_partials);
