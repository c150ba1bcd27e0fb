//! File descriptors: an upload left open holds none, the server raises its soft limit to
//! the hard one, and `/metrics` reports both for the alert that watches them. Against the
//! real binary, whose descriptors and limits /proc shows.

use std::os::unix::process::CommandExt;
use std::process::Stdio;

use crate::binary::{free_port, hoist_command, Server};
use crate::helpers::{metric_sample, test_settings, Backend, TestClient};

const MIB: usize = 1024 * 1024;

/// Descriptors process `pid` holds open.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the server's /proc entry").count()
}

/// Creates `count` uploads and leaves each open after a first 1 KiB, as mobile clients that
/// went away do; on S3 each then has a staged tail and this node's copy of it.
async fn leave_uploads_open(app: &TestClient, count: usize) {
    for _ in 0..count {
        let url = app.create_upload(MIB as u64).await;
        assert_eq!(app.patch(&url, 0, &[7u8; 1024]).await.status(), 204);
    }
}

/// A node holds as many open uploads as its disk and database allow, not as its descriptor
/// limit does: the S3 store kept two descriptors per upload's staged-tail copy, and 10,000
/// uploads left open mid-way (benchmark scenario 4) ran out of them (503 on every PATCH).
#[actix_rt::test]
async fn uploads_left_open_mid_way_hold_no_file_descriptors() {
    for backend in [Backend::S3, Backend::Sqlite] {
        let (settings, _data_dir, _pg) = test_settings(backend).await;
        let port = free_port();
        let server = Server::start(&settings, port).await;
        let app = TestClient::new(port, &settings);
        // The first uploads open what the server keeps for all (connections, pools).
        leave_uploads_open(&app, 10).await;
        let before = open_descriptors(server.pid());
        leave_uploads_open(&app, 200).await;
        let after = open_descriptors(server.pid());
        assert!(
            after < before + 20,
            "{backend:?}: {before} descriptors open before 200 more open uploads, {after} after"
        );

        // What operators alert on (deploy/prometheus/alerts.yml): the same count, and the
        // limit the process runs under.
        let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
        let later = open_descriptors(server.pid());
        let reported = metric_sample(&metrics, "process_open_fds") as usize;
        let (low, high) = (after.min(later).saturating_sub(2), after.max(later) + 2);
        assert!((low..=high).contains(&reported), "process_open_fds {reported}, /proc {after} then {later}");
        assert_eq!(metric_sample(&metrics, "process_max_fds") as u64, soft_descriptor_limit(server.pid()));
    }
}

/// Field `field` (3: soft, 4: hard) of process `pid`'s "Max open files" line in /proc.
fn descriptor_limit(pid: u32, field: usize) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|line| line.starts_with("Max open files")).expect("a descriptor limit");
    line.split_whitespace().nth(field).and_then(|value| value.parse().ok()).expect("a numeric limit")
}

fn soft_descriptor_limit(pid: u32) -> u64 {
    descriptor_limit(pid, 3)
}

fn hard_descriptor_limit(pid: u32) -> u64 {
    descriptor_limit(pid, 4)
}

/// systemd starts services with a soft limit of 1,024 descriptors and a far higher hard one:
/// at the soft one, the 1,025th connection or append fails.
#[actix_rt::test]
async fn the_server_raises_its_soft_descriptor_limit_to_the_hard_one() {
    let (settings, _data_dir, _pg) = test_settings(Backend::Sqlite).await;
    let port = free_port();
    let mut command = hoist_command(&settings);
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    // SAFETY: between fork and exec, only getrlimit and setrlimit, which are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = limit.rlim_max.min(256);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = Server::start_command(command, port, Stdio::null()).await;
    let hard = hard_descriptor_limit(server.pid());
    assert!(hard > 256, "this test needs a hard limit above 256, not {hard}");
    assert_eq!(soft_descriptor_limit(server.pid()), hard);
    let app = TestClient::new(port, &settings);
    let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric_sample(&metrics, "process_max_fds") as u64, hard);
}
