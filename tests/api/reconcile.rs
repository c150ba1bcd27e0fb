//! The restore drill: dump the database, let the store move ahead (parts uploaded, an upload
//! completed, one terminated, one created), restore the older dump, run `hoist reconcile`,
//! and resume and complete every upload byte-identically.

use std::path::Path;
use std::process::Command;

use diesel::{Connection, PgConnection, RunQueryDsl};
use hoist::config::Settings;
use reqwest::Method;

use crate::binary::{free_port, hoist_command, Server};
use crate::helpers::{bytes, postgres_url, test_settings, Backend, TestClient};

const MIB: usize = 1024 * 1024;

fn pg_dump(settings: &Settings, file: &Path) {
    let status = Command::new("pg_dump").args(["-Fc", "-f"]).arg(file).arg(settings.database_url()).status().unwrap();
    assert!(status.success(), "pg_dump");
}

/// Replaces the test database with the dump, as a point-in-time restore would.
fn pg_restore(settings: &Settings, file: &Path) {
    let url = settings.database_url();
    // The last path segment, without the query (`?sslmode=disable`).
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let mut admin = PgConnection::establish(&postgres_url("postgres")).unwrap();
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin).unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).unwrap();
    let status = Command::new("pg_restore").args(["--no-owner", "-d"]).arg(&url).arg(file).status().unwrap();
    assert!(status.success(), "pg_restore");
}

fn reconcile(settings: &Settings, dry_run: bool) -> String {
    let mut command = hoist_command(settings);
    command.arg("reconcile");
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command.output().expect("hoist reconcile runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

async fn send(app: &TestClient, url: &str, data: &[u8], from: usize, to: usize) {
    let response = app.patch(url, from as u64, &data[from..to]).await;
    assert_eq!(response.status(), 204, "PATCH {from}..{to}: {:?}", response.text().await);
}

async fn restore_to_an_older_point_then_reconcile_and_resume(backend: Backend) {
    let (settings, _data_dir, _pg) = test_settings(backend).await;
    let dump = settings.server.data_dir.join("hoist.dump");
    let port = free_port();
    let mut server = Server::start(&settings, port).await;
    let app = TestClient::new(port, &settings);
    let (a, b, c, d) = (bytes(20 * MIB, 1), bytes(3 * MIB, 2), bytes(9 * MIB, 3), bytes(10 * MIB, 4));
    let a_url = app.create_upload(a.len() as u64).await;
    let b_url = app.create_upload(b.len() as u64).await;
    let c_url = app.create_upload(c.len() as u64).await;
    send(&app, &a_url, &a, 0, 5 * MIB).await;
    send(&app, &b_url, &b, 0, MIB).await;
    send(&app, &c_url, &c, 0, 4 * MIB).await;

    pg_dump(&settings, &dump);

    // The store moves on: A crosses a part boundary, B completes, C is terminated, D is new.
    send(&app, &a_url, &a, 5 * MIB, 10 * MIB).await;
    send(&app, &b_url, &b, MIB, 3 * MIB).await;
    assert_eq!(app.tus(Method::DELETE, &c_url).send().await.unwrap().status(), 204);
    let d_url = app.create_upload(d.len() as u64).await;
    send(&app, &d_url, &d, 0, MIB).await;
    server.signal("TERM");
    assert!(server.wait().success());

    pg_restore(&settings, &dump);
    let dry = reconcile(&settings, true);
    assert!(dry.contains("dry run: checked 3 uploads: 1 repaired, 1 found complete, 1 failed"), "{dry}");
    let applied = reconcile(&settings, false);
    assert!(applied.contains("checked 3 uploads: 1 repaired, 1 found complete, 1 failed"), "{applied}");
    if backend == Backend::S3 {
        assert!(applied.contains("1 orphaned multipart uploads aborted"), "{applied}");
    }
    let again = reconcile(&settings, true);
    assert!(again.contains("0 repaired, 0 found complete, 0 failed"), "not idempotent: {again}");

    let _server = Server::start(&settings, port).await;
    assert_eq!(app.offset(&a_url).await, 10 * MIB as u64, "A resumes from what the store holds");
    send(&app, &a_url, &a, 10 * MIB, 20 * MIB).await;
    assert_eq!(app.download_bytes(&a_url).await, a);
    assert_eq!(app.download_bytes(&b_url).await, b);
    assert_eq!(app.head(&c_url).await.status(), 410);
    assert_eq!(app.head(&d_url).await.status(), 404, "D was created after the backup");
    if backend == Backend::S3 {
        let s3 = crate::helpers::s3_client(&settings).await;
        let open = s3.list_multipart_uploads().bucket(&settings.store.s3.bucket).send().await.unwrap();
        assert!(open.uploads().is_empty(), "multipart uploads left: {:?}", open.uploads());
    }
}
// A pg_dump/pg_restore drill, so PostgreSQL with each store (a SQLite restore is a file copy).
#[actix_rt::test]
async fn restore_drill_on_postgres_and_disk() {
    restore_to_an_older_point_then_reconcile_and_resume(Backend::Postgres).await
}

#[actix_rt::test]
async fn restore_drill_on_postgres_and_s3() {
    restore_to_an_older_point_then_reconcile_and_resume(Backend::S3).await
}
