use base64::Engine;
use reqwest::multipart::{Form, Part};
use sha2::Digest;

use crate::helpers::{bytes, error_code, spawn_app, Backend};
use crate::on_every_backend;

fn form(files: &[(&str, Vec<u8>)]) -> Form {
    let mut form = Form::new().text("note", "not a file");
    for (name, data) in files {
        let part = Part::bytes(data.clone()).file_name(name.to_string()).mime_str("image/png").unwrap();
        form = form.part(name.to_string(), part);
    }
    form
}

async fn a_form_creates_one_complete_upload_per_file(backend: Backend) {
    let app = spawn_app(backend).await;
    let files = [("a.png", bytes(200_000, 3)), ("b.png", bytes(17, 4)), ("empty.png", Vec::new())];
    let response = app
        .client
        .post(format!("{}/uploads", app.address))
        .bearer_auth(&app.alice)
        .multipart(form(&files))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let uploads = body["uploads"].as_array().unwrap();
    assert_eq!(uploads.len(), 3);
    for ((name, data), created) in files.iter().zip(uploads) {
        assert_eq!(created["filename"], *name);
        assert_eq!(created["size"], data.len() as u64);
        let sha = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data));
        assert_eq!(created["sha256"], sha.as_str());
        let url = created["location"].as_str().unwrap();
        let download = app.download(url).await;
        assert_eq!(download.headers()["Content-Type"], "image/png");
        assert_eq!(download.bytes().await.unwrap().to_vec(), *data);
    }
}
on_every_backend!(a_form_creates_one_complete_upload_per_file);

async fn a_form_without_files_or_of_the_wrong_type_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = format!("{}/uploads", app.address);
    let response =
        app.client.post(&url).bearer_auth(&app.alice).multipart(Form::new().text("a", "b")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "no_files");
    let response = app
        .client
        .post(&url)
        .bearer_auth(&app.alice)
        .body("x")
        .header("Content-Type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = app.client.post(&url).multipart(form(&[("a", vec![1])])).send().await.unwrap();
    assert_eq!(response.status(), 401);
}
on_every_backend!(a_form_without_files_or_of_the_wrong_type_is_refused);

async fn a_retried_form_with_the_same_key_creates_nothing_new(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = format!("{}/uploads", app.address);
    let send = || async {
        let response = app
            .client
            .post(&url)
            .bearer_auth(&app.alice)
            .header("Idempotency-Key", "form-1")
            .multipart(form(&[("a.png", bytes(1000, 9))]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json::<serde_json::Value>().await.unwrap()
    };
    let first = send().await;
    let second = send().await;
    assert_eq!(first, second);
    assert_eq!(app.count_uploads(), 1);
}
on_every_backend!(a_retried_form_with_the_same_key_creates_nothing_new);
