use reqwest::Method;
use serde_json::Value;

use crate::helpers::{error_code, metric_sample, spawn_app, Backend, TestApp};
use crate::on_every_backend;

async fn admin_get(app: &TestApp, path: &str) -> Value {
    let response = app.client.get(format!("{}{path}", app.address)).bearer_auth(&app.admin).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn only_admins_reach_the_admin_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = format!("{}/admin/uploads", app.address);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 401);
    let response = app.client.get(&url).bearer_auth(&app.alice).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "forbidden");
}
on_every_backend!(only_admins_reach_the_admin_api);

async fn uploads_are_listed_filtered_and_paged(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut alice = Vec::new();
    for len in [10u64, 20, 30, 40, 50] {
        alice.push(app.create_upload(len).await);
    }
    let bob = app.tus_as(&app.bob, Method::POST, &app.files_url()).header("Upload-Length", "5").send().await.unwrap();
    assert_eq!(bob.status(), 201);
    assert_eq!(app.patch(&alice[0], 0, &[1u8; 10]).await.status(), 204);

    // Pages of two, newest first, no upload twice, all of alice's in the end.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let path = match &cursor {
            Some(c) => format!("/admin/uploads?owner=alice&limit=2&cursor={c}"),
            // An empty cursor (a client echoing an absent next_cursor) is the first page.
            None => "/admin/uploads?owner=alice&limit=2&cursor=".to_owned(),
        };
        let page = admin_get(&app, &path).await;
        for upload in page["uploads"].as_array().unwrap() {
            assert_eq!(upload["owner"], "alice");
            seen.push(upload["id"].as_str().unwrap().to_owned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let mut expected: Vec<String> = alice.iter().map(|u| u.rsplit('/').next().unwrap().to_owned()).collect();
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    expected.sort();
    assert_eq!(sorted_seen, expected);

    let complete = admin_get(&app, "/admin/uploads?state=complete").await;
    assert_eq!(complete["uploads"].as_array().unwrap().len(), 1);
    let sized = admin_get(&app, "/admin/uploads?min_size=25&max_size=45").await;
    assert_eq!(sized["uploads"].as_array().unwrap().len(), 2);
    let bad = app
        .client
        .get(format!("{}/admin/uploads?state=weird", app.address))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad).await, "invalid_state");
    let bad = app
        .client
        .get(format!("{}/admin/uploads?cursor=zzz", app.address))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad).await, "invalid_cursor");

    let stats = admin_get(&app, "/admin/stats").await;
    assert_eq!(stats["by_state"]["open"]["uploads"], 5);
    assert_eq!(stats["by_state"]["complete"]["uploads"], 1);
    assert_eq!(stats["by_state"]["complete"]["bytes"], 10);
}
on_every_backend!(uploads_are_listed_filtered_and_paged);

async fn an_admin_inspects_extends_and_terminates_an_upload(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(10).await;
    assert_eq!(app.patch(&url, 0, b"abc").await.status(), 204);
    let id = url.rsplit('/').next().unwrap();
    let shown = admin_get(&app, &format!("/admin/uploads/{id}")).await;
    assert_eq!(shown["upload"]["offset"], 3);
    assert_eq!(shown["upload"]["owner"], "alice");
    assert_eq!(shown["session_live_here"], true);
    assert!(shown["upload"]["lease"]["owner"].is_string());
    let sessions = admin_get(&app, "/admin/sessions").await;
    assert!(sessions["sessions"].as_array().unwrap().iter().any(|s| s == id));

    let later = "2099-01-01T00:00:00Z";
    let response = app
        .client
        .put(format!("{}/admin/uploads/{id}/expiry", app.address))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"expires_at": later}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let head = app.head(&url).await;
    assert_eq!(head.headers()["Upload-Expires"], "Thu, 01 Jan 2099 00:00:00 GMT");

    let response =
        app.client.delete(format!("{}/admin/uploads/{id}", app.address)).bearer_auth(&app.admin).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.head(&url).await.status(), 410);
    let response = app
        .client
        .put(format!("{}/admin/uploads/{id}/expiry", app.address))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"expires_at": later}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 410);
}
on_every_backend!(an_admin_inspects_extends_and_terminates_an_upload);

async fn metrics_count_requests_bytes_and_uploads(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(10).await;
    assert_eq!(app.patch(&url, 0, b"abcd").await.status(), 204);
    assert_eq!(app.patch(&url, 4, b"efghij").await.status(), 204);
    assert_eq!(app.head(&url).await.status(), 200);
    let response = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let value = |name: &str| metric_sample(&text, name);
    assert_eq!(value("hoist_uploads_created_total"), 1.0);
    assert_eq!(value("hoist_uploads_completed_total"), 1.0);
    assert_eq!(value("hoist_upload_bytes_received_total"), 10.0);
    assert_eq!(value("hoist_http_requests_total{method=\"PATCH\",route=\"/files/{id}\",status=\"204\"}"), 2.0);
    assert_eq!(value("hoist_live_sessions"), 1.0);
    assert!(value("hoist_cache_hits_total") >= 1.0, "HEAD after PATCH is served by the session's cache entry");
    assert!(text.contains("hoist_db_pool_connections{pool=\"read\",state=\"idle\"}"));
    // Each committed append is counted in exactly one commit group.
    assert_eq!(value("hoist_db_commit_group_size_sum"), 2.0);
    let store = app.state.store.backend_name();
    let ops = |op: &str| {
        value(&format!("hoist_store_operations_total{{backend=\"{store}\",operation=\"{op}\",outcome=\"ok\"}}"))
    };
    assert_eq!(ops("create"), 1.0);
    assert_eq!(ops("append"), 2.0);
    assert_eq!(
        value(&format!("hoist_store_operation_duration_seconds_count{{backend=\"{store}\",operation=\"append\"}}")),
        2.0
    );
    assert!(value("hoist_db_pool_wait_seconds_count{pool=\"write\"}") >= 3.0);
    assert!(value("hoist_db_pool_wait_seconds_count{pool=\"read\"}") >= 1.0);
}
on_every_backend!(metrics_count_requests_bytes_and_uploads);

#[actix_rt::test]
async fn metrics_can_move_to_a_listener_of_their_own() {
    let app =
        crate::helpers::spawn_app_with(Backend::Sqlite, |s| s.server.metrics_listen = Some(([127, 0, 0, 1], 0).into()))
            .await;
    let port = app.metrics_port.expect("a metrics port");
    app.create_upload(3).await;
    let scraped = app.client.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("hoist_uploads_created_total 1"));
    let public = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(public.status(), 404);
}
