//! The alert rules and the dashboard refer only to metrics the server registers (a
//! renamed metric would silently blind them). promtool checks and unit-tests the rules
//! themselves (scripts/check-deploy).

use crate::helpers::{spawn_app, Backend};

/// `hoist_*` names in a text, with the histogram suffixes taken off.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("hoist_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.push(base.to_owned());
        rest = &tail[end..];
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
    ] {
        assert!(alerts.contains(&format!("alert: {alert}")), "{alert} missing");
    }
}

fn panel_error(panel: &serde_json::Value) -> &Vec<serde_json::Value> {
    panic!("panel without targets: {panel}")
}
