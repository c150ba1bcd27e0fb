//! The benchmark's server process, client and ceilings.

#[path = "../../tests/api/certificate.rs"]
mod certificate;
mod s3_sink;
mod sink;

pub use certificate::self_signed_certificate;
pub use s3_sink::start_s3_staging_sink;
pub use sink::{remove_sink_files, start_sink, SeparateSink, SinkKeeps};

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub const MIB: u64 = 1024 * 1024;
const SECRET: &str = "bench-secret-bench-secret-bench-secret-00";

pub struct StoreUnderTest {
    pub kind: &'static str,
    pub fsync: bool,
    pub s3_endpoint: Option<String>,
}

impl StoreUnderTest {
    pub fn label(&self) -> String {
        match self.kind {
            "disk" => format!("disk, fsync {}", if self.fsync { "on" } else { "off" }),
            other => format!("{other} (emulator)"),
        }
    }
}

pub struct ServerConfig {
    env: Vec<(String, String)>,
    s3: Option<(String, String)>,
    /// HTTPS with this self-signed certificate (PEM), which the clients trust.
    tls_cert: Option<std::path::PathBuf>,
}

/// An HTTP client for the server: over TLS it trusts the server's certificate, reaches
/// `localhost` on loopback, and speaks HTTP/1.1 only when `http1_only`.
fn http_client(tls_cert: Option<&Path>, port: u16, http1_only: bool) -> reqwest::Client {
    let Some(cert) = tls_cert else { return reqwest::Client::new() };
    let pem = std::fs::read(cert).expect("certificate");
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().expect("HTTPS client")
}

impl ServerConfig {
    pub fn for_store(store: &StoreUnderTest) -> ServerConfig {
        let mut env = vec![
            ("HOIST__STORE__KIND".to_owned(), store.kind.to_owned()),
            ("HOIST__STORE__DISK__FSYNC".to_owned(), store.fsync.to_string()),
        ];
        let s3 = store.s3_endpoint.as_ref().map(|endpoint| {
            let bucket = format!("hoist-bench-{}", uuid::Uuid::new_v4().simple());
            env.extend([
                ("HOIST__STORE__S3__BUCKET".to_owned(), bucket.clone()),
                ("HOIST__STORE__S3__ENDPOINT".to_owned(), endpoint.clone()),
                ("HOIST__STORE__S3__PATH_STYLE".to_owned(), "true".to_owned()),
                ("AWS_ACCESS_KEY_ID".to_owned(), "bench".to_owned()),
                ("AWS_SECRET_ACCESS_KEY".to_owned(), "bench".to_owned()),
            ]);
            (endpoint.clone(), bucket)
        });
        ServerConfig { env, s3, tls_cert: None }
    }

    /// HTTPS with `cert` and `key`: HTTP/1.1 on the server's port, and HTTP/2 (or HTTP/1.1)
    /// by ALPN on a second one (`server.tls.h2_listen`).
    pub fn with_tls(mut self, cert: &Path, key: &Path) -> ServerConfig {
        self.env.push(("HOIST__SERVER__TLS__CERT_FILE".to_owned(), cert.display().to_string()));
        self.env.push(("HOIST__SERVER__TLS__KEY_FILE".to_owned(), key.display().to_string()));
        self.tls_cert = Some(cert.to_path_buf());
        self
    }

    /// One more setting (`HOIST__…`) for this server.
    pub fn with(mut self, key: &str, value: &str) -> ServerConfig {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    port: u16,
    /// The HTTPS port that offers HTTP/2 (TLS only).
    h2_port: Option<u16>,
    tls_cert: Option<std::path::PathBuf>,
    data_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// The server under test: this tree's release build, or `HOIST_BENCH_BIN` (another build of
/// Hoist, for an A/B comparison in one run of the same client and ceilings).
fn hoist_binary() -> String {
    std::env::var("HOIST_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hoist").to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

impl Server {
    pub async fn start(config: &ServerConfig) -> Server {
        if let Some((endpoint, bucket)) = &config.s3 {
            let client = reqwest::Client::new();
            // Path-style CreateBucket; the emulator takes any credentials.
            let _ = client.put(format!("{endpoint}/{bucket}")).send().await;
        }
        let data_dir = tempfile::tempdir_in(std::env::var("HOIST_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
            .expect("data dir");
        let port = free_port();
        // The scenario's own settings come last, so they win.
        let mut env = vec![
            ("HOIST_ENV".to_owned(), "bench".to_owned()),
            ("HOIST__SERVER__DATA_DIR".to_owned(), data_dir.path().display().to_string()),
            ("HOIST__AUTH__JWT_SECRET".to_owned(), SECRET.to_owned()),
            ("HOIST__LOG__LEVEL".to_owned(), "warn".to_owned()),
            ("HOIST__UPLOADS__MAX_SIZE".to_owned(), (1024 * MIB).to_string()),
            // The request limiter stays on (its cost is part of every figure) with limits no
            // scenario reaches; scenario 4 keeps 10,000 uploads open as one subject.
            ("HOIST__LIMITS__REQUESTS_PER_SECOND".to_owned(), "1000000".to_owned()),
            ("HOIST__LIMITS__REQUEST_BURST".to_owned(), "1000000".to_owned()),
            ("HOIST__LIMITS__MAX_OPEN_UPLOADS".to_owned(), "0".to_owned()),
        ];
        let h2_port = config.tls_cert.as_ref().map(|_| free_port());
        if let Some(h2_port) = h2_port {
            env.push(("HOIST__SERVER__TLS__H2_LISTEN".to_owned(), format!("127.0.0.1:{h2_port}")));
        }
        env.extend(config.env.iter().cloned());
        let child = Command::new(hoist_binary())
            .args(["--config-dir", "config", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().cloned())
            // Its log at `warn`: quiet unless it answers 5xx, which it logs with the cause.
            .stdout(Stdio::inherit())
            .spawn()
            .expect("start hoist");
        let base = match config.tls_cert {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let tls_cert = config.tls_cert.clone();
        let probe = http_client(tls_cert.as_deref(), port, false);
        let server = Server { child, base, port, h2_port, tls_cert, data_dir, env };
        let mut last = String::new();
        for _ in 0..200 {
            match probe.get(format!("{}/health/ready", server.base)).send().await {
                Ok(r) if r.status() == 200 => return server,
                Ok(r) => last = format!("status {}", r.status()),
                Err(err) => last = format!("{err:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("hoist did not become ready at {}: {last}", server.base);
    }

    fn token(&self) -> String {
        let output = Command::new(hoist_binary())
            .args(["--config-dir", "config", "token", "--sub", "bench", "--ttl", "2h"])
            .envs(self.env.iter().cloned())
            .env("HOIST__SERVER__DATA_DIR", self.data_dir.path())
            .output()
            .expect("hoist token");
        String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().trim().to_owned()
    }

    /// Peak RSS (VmHWM, MiB) and CPU seconds of the server, then stops it.
    pub fn stop(mut self) -> (f64, f64) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm_kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok())).sum();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let _ = self.child.wait();
        (hwm_kib / 1024.0, ticks / 100.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    /// The loopback sink: no protocol, every PATCH goes to one path.
    sink: bool,
}

impl Client {
    pub async fn new(server: &Server) -> Client {
        Client::speaking(server, false).await
    }

    /// A client of `server` that speaks HTTP/1.1 only when `http1_only` (over TLS, HTTP/2
    /// otherwise, on the server's HTTP/2 port; plain HTTP is always HTTP/1.1).
    pub async fn speaking(server: &Server, http1_only: bool) -> Client {
        let (port, base) = match server.h2_port {
            Some(h2_port) if !http1_only => (h2_port, format!("https://localhost:{h2_port}")),
            _ => (server.port, server.base.clone()),
        };
        let http = http_client(server.tls_cert.as_deref(), port, http1_only);
        Client { http, base, token: server.token(), sink: false }
    }

    /// The same server and token over connections of its own: for a probe that runs on
    /// another runtime than the load, or a sink run whose connections must close with it.
    pub fn fresh(&self) -> Client {
        Client { http: reqwest::Client::new(), base: self.base.clone(), token: self.token.clone(), sink: self.sink }
    }

    pub async fn create(&self, length: u64) -> String {
        if self.sink {
            return format!("{}/sink", self.base);
        }
        let response = self
            .http
            .post(format!("{}/files", self.base))
            .bearer_auth(&self.token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", length.to_string())
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 201, "create");
        response.headers()["Location"].to_str().expect("Location").to_owned()
    }

    async fn patch(&self, url: &str, offset: u64, len: u64, body: reqwest::Body) {
        let response = self
            .http
            .patch(url)
            .bearer_auth(&self.token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .header("Content-Length", len.to_string())
            .body(body)
            .send()
            .await
            .expect("PATCH");
        assert_eq!(response.status(), 204, "PATCH at {offset}");
    }

    pub async fn patch_bytes(&self, url: &str, offset: u64, data: Vec<u8>) {
        let len = data.len() as u64;
        self.patch(url, offset, len, reqwest::Body::from(data)).await;
    }

    pub async fn head(&self, url: &str) {
        let response =
            self.http.head(url).bearer_auth(&self.token).header("Tus-Resumable", "1.0.0").send().await.expect("HEAD");
        assert_eq!(response.status(), 200);
    }

    /// The share of HEAD requests the server itself answered within `seconds`, from its
    /// own latency histogram (`seconds` must be one of its bucket bounds).
    pub async fn server_head_share_within(&self, seconds: &str) -> f64 {
        let text =
            self.http.get(format!("{}/metrics", self.base)).send().await.expect("metrics").text().await.expect("text");
        let series = |suffix: &str| -> f64 {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!("hoist_http_request_duration_seconds_{suffix}"))
                        && l.contains("method=\"HEAD\"")
                        && l.contains("route=\"/files/{id}\"")
                        && (suffix != "bucket" || l.contains(&format!("le=\"{seconds}\"")))
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        series("bucket") / series("count")
    }

    /// One upload of `size` bytes in `chunk`-sized PATCHes, each body streamed from `file`.
    /// Returns its URL.
    pub async fn upload_from_file(&self, file: &Path, size: u64, chunk: u64) -> String {
        self.upload_paced(file, size, chunk, None).await
    }

    /// The same, each PATCH held back by `pace` if given: a load of a given rate, not as fast
    /// as the server goes.
    pub async fn upload_paced(&self, file: &Path, size: u64, chunk: u64, mut pace: Option<&mut Pace>) -> String {
        let source = Arc::new(std::fs::File::open(file).expect("source file"));
        let url = self.create(size).await;
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            if let Some(pace) = pace.as_mut() {
                pace.before(len).await;
            }
            self.patch(&url, offset, len, file_range(source.clone(), offset, len)).await;
            offset += len;
        }
        url
    }

    /// Deletes an upload (tus termination).
    pub async fn terminate(&self, url: &str) {
        let response = self
            .http
            .delete(url)
            .bearer_auth(&self.token)
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .expect("DELETE");
        assert_eq!(response.status(), 204, "DELETE {url}");
    }
}

/// Request bodies at a given rate on average, across all the uploads of one sender.
pub struct Pace {
    started: tokio::time::Instant,
    bytes_per_second: f64,
    sent: u64,
}

impl Pace {
    pub fn new(bytes_per_second: f64) -> Pace {
        Pace { started: tokio::time::Instant::now(), bytes_per_second: bytes_per_second.max(1.0), sent: 0 }
    }

    /// Waits until `len` more bytes keep to the rate: each body starts when the ones before
    /// it, at the rate, would have been sent.
    async fn before(&mut self, len: u64) {
        tokio::time::sleep_until(self.started + Duration::from_secs_f64(self.sent as f64 / self.bytes_per_second))
            .await;
        self.sent += len;
    }
}

/// A streamed request body: `len` bytes of `source` from `start`, read 256 KiB at a time.
/// Positioned reads of the page-cached source, done inline: tokio::fs would cost the
/// client two thread hops per read, which the 64 KiB scenario would count against the server.
fn file_range(source: Arc<std::fs::File>, start: u64, len: u64) -> reqwest::Body {
    use std::os::unix::fs::FileExt;
    let stream = futures_util::stream::unfold(0u64, move |done| {
        let source = source.clone();
        async move {
            if done == len {
                return None;
            }
            let mut buf = vec![0u8; (256 * 1024).min(len - done) as usize];
            if let Err(err) = source.read_exact_at(&mut buf, start + done) {
                return Some((Err(err), len));
            }
            let n = buf.len() as u64;
            Some((Ok::<_, std::io::Error>(Bytes::from(buf)), done + n))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

pub fn write_source_file(path: &Path, size: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("source file"));
    let block: Vec<u8> = (0..MIB).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for _ in 0..size / MIB {
        file.write_all(&block).expect("write source");
    }
    file.flush().expect("flush source");
    // On disk before the dd ceiling is taken: its write-back would otherwise compete with
    // dd and lower the ceiling (seen: 343 MiB/s with it, against Hoist's fsynced 807).
    file.get_ref().sync_all().expect("sync source");
}

/// `dd if=/dev/zero of=dir/dd.bin <args>`, best of three runs, in bytes a second. The
/// ceilings: `bs=8M count=64 conv=fsync` (the disk's fsynced write rate), `bs=8M count=64
/// oflag=dsync` (each 8 MiB durable before the next, as scenario 1's PATCHes are) and
/// `bs=64k count=1024 oflag=dsync` (scenario 3's durable small appends).
pub fn dd_rate(dir: &Path, args: &[&str]) -> f64 {
    (0..3).map(|_| dd_once(dir, args)).filter(|r| r.is_finite()).fold(f64::NAN, f64::max)
}

fn dd_once(dir: &Path, args: &[&str]) -> f64 {
    let target = dir.join("dd.bin");
    let output =
        Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", target.display())).args(args).output().expect("dd");
    let _ = std::fs::remove_file(&target);
    let text = String::from_utf8_lossy(&output.stderr);
    // "536870912 bytes (537 MB, 512 MiB) copied, 1.234 s, 435 MB/s"
    let seconds: f64 = text
        .split("copied, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.replace(',', ".").parse().ok())
        .unwrap_or(f64::NAN);
    let bytes: f64 = text
        .lines()
        .find(|l| l.contains("copied"))
        .and_then(|l| l.split(' ').next())
        .and_then(|b| b.parse().ok())
        .unwrap_or(f64::NAN);
    bytes / seconds
}

pub fn fmt_rate(bytes_per_second: f64) -> String {
    format!("{:.1} MiB/s", bytes_per_second / MIB as f64)
}
