//! The OpenAPI description against the running server, by Schemathesis (installed by
//! scripts/install-test-deps): it draws requests from the description, valid and invalid,
//! and chains them (create, then read, patch, delete what was created), then checks every
//! answer: no 5xx, only documented statuses, headers and bodies as described, invalid input
//! refused and valid input taken. `tests/api/schemathesis/config.toml` lists the few
//! exemptions and why each is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{spawn_app, Backend};
use crate::on_every_backend;

/// The venv's `schemathesis`, beside the Python the other tests use.
fn schemathesis() -> PathBuf {
    let python = std::env::var("HOIST_TEST_PYTHON").unwrap_or_default();
    match Path::new(&python).parent() {
        Some(bin) if !python.is_empty() => bin.join("schemathesis"),
        _ => PathBuf::from("schemathesis"),
    }
}

async fn the_server_answers_as_its_description_says(backend: Backend) {
    let app = spawn_app(backend).await;
    let assets = Path::new("tests/api/schemathesis").canonicalize().expect("tests/api/schemathesis");
    // A fixed seed keeps CI repeatable; HOIST_SCHEMATHESIS_SEED explores others.
    let seed = std::env::var("HOIST_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261205".to_owned());
    // Schemathesis keeps the failures it found under its working directory and replays them
    // first on the next run; a directory of its own keeps runs alike and the checkout clean.
    let scratch = tempfile::tempdir().unwrap();
    let mut command = Command::new(schemathesis());
    command
        .current_dir(scratch.path())
        .env("SCHEMATHESIS_HOOKS", assets.join("hooks.py"))
        .arg("--config-file")
        .arg(assets.join("config.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", app.address))
        .args(["--header", &format!("Authorization: Bearer {}", app.admin)])
        .args(["--max-examples", "40", "--seed", &seed, "--workers", "1", "--request-timeout", "10"])
        .args(["--no-color", "--generation-database", "none"]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("schemathesis must be installed (scripts/install-test-deps): {e}"));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}\n{}", String::from_utf8_lossy(&output.stderr));
    // A run that tested nothing would pass too.
    let tested = report.lines().find(|line| line.trim_start().starts_with("Tested:")).unwrap_or_default();
    let count: usize = tested.split(':').nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(count >= 20, "Schemathesis tested {count} operations:\n{report}");
}
on_every_backend!(the_server_answers_as_its_description_says);
