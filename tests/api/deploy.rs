//! The alert rules and the dashboard refer only to metrics the server registers (a
//! renamed metric would silently blind them). promtool checks and unit-tests the rules
//! themselves (scripts/check-deploy).

use crate::helpers::{spawn_app, Backend};

/// Metric names in a text (Hoist's `hoist_*` and the process's `process_*`), with the
/// histogram suffixes taken off.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for prefix in ["hoist_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            let name = &tail[..end];
            let base = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            // A bare prefix (`process_*` in a comment) names no metric.
            if base.len() > prefix.len() {
                names.push(base.to_owned());
            }
            rest = &tail[end..];
        }
    }
    names.sort();
    names.dedup();
    names
}

#[actix_rt::test]
async fn alerts_and_dashboard_use_only_registered_metrics() {
    let app = spawn_app(Backend::Sqlite).await;
    let registered = app.state.metrics.names();
    let alerts = std::fs::read_to_string("deploy/prometheus/alerts.yml").unwrap();
    let dashboard = std::fs::read_to_string("deploy/grafana/hoist.json").unwrap();
    let dashboard_json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = dashboard_json["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap_or_else(|| panel_error(panel));
        assert!(targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| e.contains("hoist_") || e.contains("up{"))));
    }
    for (file, text) in [("alerts.yml", &alerts), ("hoist.json", &dashboard)] {
        let used = metric_names(text);
        assert!(used.len() >= 8, "{file} uses {used:?}");
        for name in used {
            assert!(
                registered.contains(&name),
                "{file} uses {name}, which the server does not register: {registered:?}"
            );
        }
    }
    // What the alerts must cover (issue: error ratio, latency, readiness, store errors, pool, stuck uploads).
    for alert in [
        "HoistHighErrorRatio",
        "HoistSlowRequests",
        "HoistNotReady",
        "HoistStoreErrors",
        "HoistDatabasePoolSaturated",
        "HoistUploadsStuck",
        "HoistFileDescriptorsRunningOut",
    ] {
        assert!(alerts.contains(&format!("alert: {alert}")), "{alert} missing");
    }
}

fn panel_error(panel: &serde_json::Value) -> &Vec<serde_json::Value> {
    panic!("panel without targets: {panel}")
}

/// docker-compose.yml as JSON, through PyYAML in the test virtualenv.
fn compose_file() -> serde_json::Value {
    let python = std::env::var("HOIST_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = std::process::Command::new(python)
        .args(["-c", "import json, sys, yaml; json.dump(yaml.safe_load(open('docker-compose.yml')), sys.stdout)"])
        .output()
        .expect("python with PyYAML (scripts/install-test-deps)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("docker-compose.yml parses")
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The compose file's Hoist settings are real: Hoist starts with exactly that environment
/// (only the addresses of PostgreSQL, MinIO and the listeners swapped for this machine's
/// PostgreSQL, the S3 emulator and free ports) and is ready.
#[actix_rt::test]
async fn the_compose_settings_start_a_ready_hoist() {
    let compose = compose_file();
    for service in ["hoist", "postgres", "minio", "minio-init", "prometheus"] {
        assert!(compose["services"].get(service).is_some(), "no {service} service");
    }
    let environment = compose["services"]["hoist"]["environment"].as_object().expect("a mapping").clone();
    let (settings, data_dir, _pg) = crate::helpers::test_settings(Backend::S3).await;
    let (port, metrics_port) = (crate::binary::free_port(), crate::binary::free_port());
    let s3 = &settings.store.s3;
    let here: Vec<(&str, String)> = vec![
        ("HOIST__DATABASE__URL", settings.database_url()),
        ("HOIST__STORE__S3__ENDPOINT", s3.endpoint.clone()),
        ("HOIST__STORE__S3__BUCKET", s3.bucket.clone()),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.expose().to_owned()),
        ("HOIST__SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("HOIST__SERVER__METRICS_LISTEN", format!("127.0.0.1:{metrics_port}")),
        ("HOIST__STORE__S3__SPOOL_DIR", data_dir.path().join("spool").display().to_string()),
    ];
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"));
    command
        .args(["--config-dir", "config", "serve"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    // Only the data directory is added: the image sets it, compose does not.
    command.env("HOIST__SERVER__DATA_DIR", data_dir.path());
    for (key, value) in &environment {
        let value = match here.iter().find(|(k, _)| k == key) {
            Some((_, local)) => local.clone(),
            None => value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string()),
        };
        let value =
            if value.starts_with("${HOIST_JWT_SECRET") { crate::helpers::TEST_SECRET.to_owned() } else { value };
        assert!(!value.contains("${"), "{key} needs a value the test does not know: {value}");
        command.env(key, value);
    }
    for (key, _) in &here {
        assert!(environment.contains_key(*key), "compose no longer sets {key}");
    }
    std::fs::create_dir_all(data_dir.path().join("spool")).unwrap();
    let _child = Child(command.stdout(std::process::Stdio::null()).spawn().expect("hoist starts"));
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/health/ready")).send().await {
            if response.status() == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "Hoist with the compose settings never became ready");
    let metrics = client.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
}
