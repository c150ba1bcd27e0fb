//! The OpenAPI description: valid OpenAPI 3.1 (checked by openapi-spec-validator), and
//! exactly what the server routes: every documented operation reaches a handler, and on
//! documented paths (and a few undocumented ones) nothing else does. The docs page and its
//! assets come from the binary itself.

use reqwest::{Method, StatusCode};

use crate::helpers::{spawn_app, Backend, TestApp};

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"];

/// Whether the request reached a handler: a route miss is a 405, or a 404 whose code is
/// `not_found` (HEAD has no body, so only a 404 or 405 at all).
async fn routed(app: &TestApp, method: &str, path: &str) -> bool {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let is_head = method == Method::HEAD;
    let response = app.tus(method, &format!("{}{path}", app.address)).send().await.expect("request");
    let status = response.status();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return false;
    }
    if status != StatusCode::NOT_FOUND {
        return true;
    }
    if is_head {
        return false;
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["code"] != "not_found"
}

#[actix_rt::test]
async fn the_description_is_valid_openapi_31_and_matches_the_routes() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app.client.get(format!("{}/openapi.json", app.address)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let python = std::env::var("HOIST_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs (scripts/install-test-deps)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let paths = doc["paths"].as_object().unwrap();
    let mut probed = 0;
    for (template, item) in paths {
        for method in METHODS {
            // Each probe gets its own upload: DELETE must not spoil the next one.
            let id = app.create_upload(4).await.rsplit('/').next().unwrap().to_owned();
            let path = template.replace("{id}", &id).replace("{path}", "index.html");
            let documented = item.get(method.to_ascii_lowercase()).is_some();
            assert_eq!(routed(&app, method, &path).await, documented, "{method} {template}: documented = {documented}");
            probed += 1;
        }
    }
    assert!(paths.len() >= 15 && probed == paths.len() * METHODS.len(), "{} paths, {probed} probes", paths.len());
    for path in ["/", "/files/x/y", "/admin", "/admin/uploads/0123/parts", "/health", "/uploads/abc", "/docs"] {
        for method in METHODS {
            assert!(!routed(&app, method, path).await || path == "/docs", "{method} {path} is routed but undocumented");
        }
    }
}

/// The method of a route's handler: `options()` or `web::get()...`.
fn method_of(handler: &str) -> String {
    if handler.starts_with("options()") {
        return "OPTIONS".to_owned();
    }
    handler.strip_prefix("web::").and_then(|h| h.split_once('(')).expect("web::METHOD()").0.to_ascii_uppercase()
}

/// (method, path) of every `.route(...)` in the route table, with its scope's prefix: the
/// path-and-route form, and the routes of a `web::resource(...)` (one path or a list).
fn mounted_routes() -> Vec<(String, String)> {
    let source = std::fs::read_to_string("src/http/routes.rs").expect("the route table");
    let mut scope = String::new();
    let mut resource: Vec<String> = Vec::new();
    let mut routes = Vec::new();
    // Indentation of the `web::scope(` line: the `)` that closes its `.service(` sits left of it.
    let mut scope_indent = 0;
    for raw in source.lines() {
        let line = raw.trim();
        let indent = raw.len() - raw.trim_start().len();
        if let Some(rest) = line.strip_prefix("web::resource(") {
            // `"/{id}")` or `["", "/"])`: the quoted strings are the paths.
            resource = rest.split('"').skip(1).step_by(2).map(str::to_owned).collect();
            continue;
        }
        if line.starts_with(".default_service(") {
            resource.clear();
        }
        if !resource.is_empty() {
            if let Some(handler) = line.strip_prefix(".route(") {
                let method = method_of(handler);
                routes.extend(resource.iter().map(|path| (method.clone(), format!("{scope}{path}"))));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("web::scope(") {
            let arg = rest.trim_end_matches(')').trim_end_matches(")").trim_matches(|c| c == '(' || c == ')');
            scope = if arg == "tus::FILES_PATH" { "/files".to_owned() } else { arg.trim_matches('"').to_owned() };
            scope_indent = indent;
        }
        // A scope's `.service(` closes on a line of its own, left of the scope (a resource's
        // `.service(` inside it closes further right).
        if line == ")" && indent < scope_indent {
            scope.clear();
        }
        let line = line.strip_prefix("cfg").unwrap_or(line);
        let Some(rest) = line.strip_prefix(".route(\"") else { continue };
        let (path, handler) = rest.split_once("\", ").expect("a route line");
        routes.push((method_of(handler), format!("{scope}{path}")));
    }
    routes
}

#[actix_rt::test]
async fn every_mounted_route_is_documented() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: serde_json::Value =
        app.client.get(format!("{}/openapi.json", app.address)).send().await.unwrap().json().await.unwrap();
    let routes = mounted_routes();
    assert!(routes.len() >= 20, "{routes:?}");
    for (method, path) in routes {
        let documented = doc["paths"].get(&path).and_then(|item| item.get(method.to_ascii_lowercase()));
        assert!(documented.is_some(), "{method} {path} is mounted but not documented");
    }
}

#[actix_rt::test]
async fn the_docs_page_and_its_assets_are_served_from_the_binary() {
    let app = spawn_app(Backend::Sqlite).await;
    let page = app.client.get(format!("{}/docs/", app.address)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["Content-Security-Policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        let response = app.client.get(format!("{}/docs/{asset}", app.address)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        let body = response.text().await.unwrap();
        assert!(body.len() > 100, "{asset} is {} bytes", body.len());
        if asset == "swagger-initializer.js" {
            assert!(body.contains("/openapi.json"), "the page does not load this server's description: {body}");
        }
    }
}
