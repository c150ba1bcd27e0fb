use reqwest::Method;

use crate::helpers::{spawn_app, spawn_app_with, Backend};
use crate::on_every_backend;

const ORIGIN: &str = "https://app.example";

async fn browsers_from_allowed_origins_can_speak_tus(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.cors.allowed_origins = vec![ORIGIN.to_owned()]).await;
    // The preflight Uppy sends before a PATCH.
    let preflight = app
        .client
        .request(Method::OPTIONS, app.files_url())
        .header("Origin", ORIGIN)
        .header("Access-Control-Request-Method", "PATCH")
        .header("Access-Control-Request-Headers", "authorization,tus-resumable,upload-offset,content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(preflight.headers()["Access-Control-Allow-Origin"], ORIGIN);
    let allowed = preflight.headers()["Access-Control-Allow-Headers"].to_str().unwrap().to_ascii_lowercase();
    for header in ["authorization", "tus-resumable", "upload-offset", "content-type"] {
        assert!(allowed.contains(header), "{header} not allowed: {allowed}");
    }
    // The actual request: the page can read the tus headers.
    let created = app
        .tus(Method::POST, &app.files_url())
        .header("Origin", ORIGIN)
        .header("Upload-Length", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["Access-Control-Allow-Origin"], ORIGIN);
    let exposed = created.headers()["Access-Control-Expose-Headers"].to_str().unwrap().to_ascii_lowercase();
    for header in ["location", "upload-offset", "upload-expires", "tus-resumable"] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }
    // Another origin gets no grant.
    let other = app
        .client
        .request(Method::OPTIONS, app.files_url())
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "PATCH")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("Access-Control-Allow-Origin").is_none());
}
on_every_backend!(browsers_from_allowed_origins_can_speak_tus);

async fn every_response_carries_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(3).await;
    for response in [
        app.head(&url).await,
        app.client.get(format!("{}/nope", app.address)).send().await.unwrap(),
        app.client.post(app.files_url()).send().await.unwrap(),
    ] {
        let h = response.headers();
        assert_eq!(h["X-Content-Type-Options"], "nosniff");
        assert_eq!(h["X-Frame-Options"], "DENY");
        assert_eq!(h["Referrer-Policy"], "no-referrer");
        assert!(h["Content-Security-Policy"].to_str().unwrap().contains("default-src 'none'"));
    }
    // Without configured origins there is no CORS at all.
    let response = app.tus(Method::HEAD, &url).header("Origin", ORIGIN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("Access-Control-Allow-Origin").is_none());
}
on_every_backend!(every_response_carries_security_headers);
