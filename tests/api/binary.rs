//! The real binary as a child process, configured through the environment only.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hoist::config::{Settings, StoreKind};

use crate::helpers::TEST_SECRET;

pub struct Server {
    child: Child,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The binary, configured through the environment only (as in a container) for these
/// settings' data directory, database and store; the subcommand is the caller's.
pub fn hoist_command(settings: &Settings) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hoist"));
    command
        .args(["--config-dir", "config"])
        .env("HOIST_ENV", "test")
        .env("HOIST__SERVER__DATA_DIR", &settings.server.data_dir)
        .env("HOIST__DATABASE__URL", settings.database_url())
        .env("HOIST__AUTH__JWT_SECRET", TEST_SECRET);
    if settings.store.kind == StoreKind::S3 {
        let s3 = &settings.store.s3;
        command
            .env("HOIST__STORE__KIND", "s3")
            .env("HOIST__STORE__S3__BUCKET", &s3.bucket)
            .env("HOIST__STORE__S3__ENDPOINT", &s3.endpoint)
            .env("HOIST__STORE__S3__REGION", "us-east-1")
            .env("HOIST__STORE__S3__PATH_STYLE", "true")
            .env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.expose());
        if !s3.spool_dir.is_empty() {
            command.env("HOIST__STORE__S3__SPOOL_DIR", &s3.spool_dir);
        }
    }
    command
}

impl Server {
    /// Starts the binary configured through the environment only, as in a container.
    pub async fn start(settings: &Settings, port: u16) -> Server {
        Server::start_with(settings, port, &[], Stdio::null()).await
    }

    /// The same, with more environment and the server's stdout (its log) sent to `stdout`.
    pub async fn start_with(settings: &Settings, port: u16, env: &[(&str, &str)], stdout: Stdio) -> Server {
        let mut command = hoist_command(settings);
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        command.envs(env.iter().copied());
        Server::start_command(command, port, stdout).await
    }

    /// Starts `command` (a `hoist serve` listening on `port`) and waits until it is ready.
    pub async fn start_command(mut command: Command, port: u16, stdout: Stdio) -> Server {
        let child = command.stdout(stdout).stderr(Stdio::inherit()).spawn().expect("start hoist");
        // Wrapped at once, so that a failed start is still killed and reaped on drop.
        let server = Server { child };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/health/ready")).send().await {
                if response.status() == 200 {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("hoist did not become ready");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hoist did not exit");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
