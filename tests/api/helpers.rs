//! `spawn_app` starts the real server (the same `Application` as `main`) on port 0 with
//! its own data directory and its own database: a fresh SQLite file, or a fresh
//! PostgreSQL database on the machine's server, dropped afterwards.

use std::path::Path;
use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};
use hoist::auth::{JwtKeys, Role};
use hoist::config::Settings;
use hoist::startup::Application;
use hoist::state::AppState;
use reqwest::header::HeaderMap;
use reqwest::{Method, Response};

pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Where a test's server keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite + the disk store: the embedded default.
    Sqlite,
    /// PostgreSQL + the disk store.
    Postgres,
    /// PostgreSQL + the S3 store on the emulator scripts/test starts (moto).
    S3,
}

/// Runs an async test body once per backend.
#[macro_export]
macro_rules! on_every_backend {
    ($name:ident) => {
        mod $name {
            #[actix_rt::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[actix_rt::test]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
            #[actix_rt::test]
            async fn s3() {
                super::$name($crate::helpers::Backend::S3).await
            }
        }
    };
}

pub fn s3_endpoint() -> String {
    std::env::var("HOIST_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".to_owned())
}

/// An S3 client for the emulator, as the tests' own view of the bucket.
pub async fn s3_client(settings: &Settings) -> aws_sdk_s3::Client {
    hoist::store::S3Store::connect(&settings.store.s3).await.expect("S3 client").client().clone()
}

pub fn postgres_base_url() -> String {
    std::env::var("HOIST_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// The URL of database `name` on the test server, without TLS.
///
/// libpq's default (`sslmode=prefer`) negotiates TLS with a server that has it on, so every
/// test connection ran OpenSSL; OpenSSL's clean-up at process exit then raced connection
/// pools still closing in other threads, and the test process could crash with SIGSEGV after
/// every test had passed (seen once in a CI run). Loopback tests gain nothing from TLS.
pub fn postgres_url(name: &str) -> String {
    format!("{}/{name}?sslmode=disable", postgres_base_url())
}

/// A PostgreSQL database of its own for one test. An unreachable server fails the test.
pub struct PgTestDb {
    pub name: String,
    pub url: String,
}

impl PgTestDb {
    pub fn create() -> PgTestDb {
        let name = format!("hoist_test_{}", uuid::Uuid::new_v4().simple());
        let base = postgres_base_url();
        let mut admin = PgConnection::establish(&postgres_url("postgres"))
            .unwrap_or_else(|e| panic!("PostgreSQL at {base} is required for the tests: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("create test database");
        PgTestDb { url: postgres_url(&name), name }
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&postgres_url("postgres")) {
            let _ =
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut admin);
        }
    }
}

/// Typed requests against a running server, as alice unless told otherwise.
pub struct TestClient {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub alice: String,
    pub bob: String,
    pub admin: String,
}

impl TestClient {
    pub fn new(port: u16, settings: &Settings) -> TestClient {
        let (keys, _) = JwtKeys::from_settings(settings).expect("keys");
        let hour = Duration::from_secs(3600);
        // Servers verifying with public keys only get no shared-secret tokens: their tests mint their own.
        let minter = keys.minter().ok();
        let mint =
            |sub: &str, role| minter.as_ref().map(|m| m.mint(sub, role, hour).expect("token")).unwrap_or_default();
        TestClient {
            address: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
            alice: mint("alice", Role::Uploader),
            bob: mint("bob", Role::Uploader),
            admin: mint("root", Role::Admin),
        }
    }
}

/// The server running in this test's process, with its own data directory and database.
pub struct TestApp {
    pub http: TestClient,
    pub metrics_port: Option<u16>,
    /// The HTTPS port that offers HTTP/2, when `server.tls.h2_listen` is set.
    pub h2_port: Option<u16>,
    pub settings: Settings,
    pub state: actix_web::web::Data<AppState>,
    _data_dir: tempfile::TempDir,
    _pg: Option<PgTestDb>,
}

impl std::ops::Deref for TestApp {
    type Target = TestClient;

    fn deref(&self) -> &TestClient {
        &self.http
    }
}

/// A request that cut another waits up to 5 s for its commit (at once, usually), not the
/// tests' usual 500 ms: with the whole suite running on two cores, a commit can take longer.
pub fn patient_cuts(settings: &mut Settings) {
    settings.uploads.lock_wait_ms = 5000;
}

/// Test settings for a backend, with a fresh data directory (and database, and bucket).
pub async fn test_settings(backend: Backend) -> (Settings, tempfile::TempDir, Option<PgTestDb>) {
    let mut settings = Settings::load(Path::new("config"), "test").expect("config/test.toml loads");
    let data_dir = tempfile::tempdir().expect("temp dir");
    settings.server.data_dir = data_dir.path().to_path_buf();
    settings.auth.jwt_secret = TEST_SECRET.into();
    let pg = (backend != Backend::Sqlite).then(PgTestDb::create);
    settings.database.url = pg.as_ref().map(|db| db.url.clone()).unwrap_or_default().into();
    if backend == Backend::S3 {
        let s3 = &mut settings.store.s3;
        settings.store.kind = hoist::config::StoreKind::S3;
        s3.endpoint = s3_endpoint();
        s3.bucket = format!("hoist-test-{}", uuid::Uuid::new_v4().simple());
        s3.path_style = true;
        s3.access_key_id = "test".to_owned();
        s3.secret_access_key = "test".into();
        let client = s3_client(&settings).await;
        client.create_bucket().bucket(&settings.store.s3.bucket).send().await.unwrap_or_else(|e| {
            panic!("the S3 emulator at {} is required (scripts/test starts it): {e:?}", s3_endpoint())
        });
    }
    if std::env::var("TEST_LOG").is_ok() {
        settings.log.level = "debug".to_owned();
        settings.log.format = hoist::config::LogFormat::Term;
    }
    (settings, data_dir, pg)
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let (mut settings, data_dir, pg) = test_settings(backend).await;
    tweak(&mut settings);
    start(settings, data_dir, pg).await
}

async fn start(settings: Settings, data_dir: tempfile::TempDir, pg: Option<PgTestDb>) -> TestApp {
    let log = hoist::telemetry::build_logger(&settings.log).expect("logger");
    let app = Application::build(settings.clone(), log).await.expect("application starts");
    let port = app.port();
    let (metrics_port, h2_port) = (app.metrics_port(), app.h2_port());
    let state = app.state();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        http: TestClient::new(port, &settings),
        metrics_port,
        h2_port,
        settings,
        state,
        _data_dir: data_dir,
        _pg: pg,
    }
}

/// The value of the sample `name` (with its labels, if any) in a `/metrics` scrape.
pub fn metric_sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

impl TestApp {
    /// Another node of the same deployment: this app's settings (its database and S3
    /// bucket) under the node id `node_id`, with a data directory of its own. For the S3
    /// store (a disk store's files are one node's own).
    pub async fn spawn_node(&self, node_id: &str) -> TestApp {
        let mut settings = self.settings.clone();
        let data_dir = tempfile::tempdir().expect("temp dir");
        settings.server.data_dir = data_dir.path().to_path_buf();
        settings.server.node_id = node_id.to_owned();
        start(settings, data_dir, None).await
    }

    /// Scrapes `/metrics` and returns the sample `name` (see [`metric_sample`]).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.client.get(format!("{}/metrics", self.address)).send().await.unwrap().text().await.unwrap();
        metric_sample(&text, name)
    }

    /// Whether the store still holds anything of the upload at `url`.
    pub async fn stored(&self, url: &str) -> bool {
        let id = url.rsplit('/').next().expect("upload id");
        let key = self.state.store.key_for(&hoist::domain::UploadId::parse(id).expect("id"));
        self.state.store.holds_anything(&key).await.expect("store answers")
    }

    /// Counts upload rows straight from the database.
    pub fn count_uploads(&self) -> i64 {
        use diesel::dsl::count_star;
        use diesel::QueryDsl;
        use hoist::db::schema::uploads::dsl::uploads;
        self.state.repo.run_blocking(|conn| Ok(uploads.select(count_star()).first::<i64>(conn)?)).expect("count")
    }
}

impl TestClient {
    pub fn files_url(&self) -> String {
        format!("{}/files", self.address)
    }

    /// A tus request as alice, with `Tus-Resumable` set.
    pub fn tus(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.tus_as(&self.alice, method, url)
    }

    pub fn tus_as(&self, token: &str, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url).bearer_auth(token).header("Tus-Resumable", "1.0.0")
    }

    pub async fn create(&self, length: u64) -> Response {
        self.tus(Method::POST, &self.files_url())
            .header("Upload-Length", length.to_string())
            .send()
            .await
            .expect("POST")
    }

    /// Creates an upload and returns its URL.
    pub async fn create_upload(&self, length: u64) -> String {
        let response = self.create(length).await;
        assert_eq!(response.status(), 201, "creation failed: {:?}", response.text().await);
        location(&response)
    }

    pub fn patch_request(&self, url: &str, offset: u64, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.tus(Method::PATCH, url)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body)
    }

    pub async fn patch(&self, url: &str, offset: u64, body: &[u8]) -> Response {
        self.patch_request(url, offset, body.to_vec()).send().await.expect("PATCH")
    }

    pub async fn head(&self, url: &str) -> Response {
        self.tus(Method::HEAD, url).send().await.expect("HEAD")
    }

    pub async fn offset(&self, url: &str) -> u64 {
        let response = self.head(url).await;
        assert_eq!(response.status(), 200, "HEAD {url}");
        header_u64(response.headers(), "Upload-Offset")
    }

    /// GET on an upload: a redirect to a signed URL, which is then fetched without a token.
    pub async fn download(&self, url: &str) -> Response {
        self.download_with(url, |r| r).await
    }

    pub async fn download_with(
        &self,
        url: &str,
        extra: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Response {
        let response = self.client.get(url).bearer_auth(&self.alice).send().await.expect("GET");
        if response.status() != 307 {
            return response;
        }
        let signed = location(&response);
        extra(self.client.get(signed)).send().await.expect("GET signed URL")
    }

    pub async fn download_bytes(&self, url: &str) -> Vec<u8> {
        let response = self.download(url).await;
        assert_eq!(response.status(), 200, "GET {url}");
        response.bytes().await.expect("body").to_vec()
    }
}

pub fn location(response: &Response) -> String {
    response.headers().get("Location").and_then(|v| v.to_str().ok()).expect("Location header").to_owned()
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("missing header {name}"))
}

pub fn header_u64(headers: &HeaderMap, name: &str) -> u64 {
    header_str(headers, name).parse().unwrap_or_else(|_| panic!("{name} is not a number"))
}

pub async fn error_code(response: Response) -> String {
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    body["code"].as_str().expect("code").to_owned()
}

/// A request body the test feeds by hand, chunk by chunk: it stalls while the sender is
/// open and no chunk waits, as a client's body does when its network goes.
pub fn hand_fed_body() -> (tokio::sync::mpsc::Sender<Vec<u8>>, reqwest::Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let body =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx)) },
        );
    (tx, reqwest::Body::wrap_stream(body))
}

/// Deterministic test bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Whether the server's end of the loopback connection from `client` to `server_port` has
/// `TCP_NODELAY` set, read off the socket itself: the app runs in this process, so its
/// accepted sockets are among this process's descriptors. None: no such socket was found.
pub fn server_end_has_nodelay(server_port: u16, client: std::net::SocketAddr) -> Option<bool> {
    let port_of = |fd: i32, peer: bool| -> Option<u16> {
        // SAFETY: a zeroed sockaddr_in is a valid value, and both calls write at most `len`
        // bytes into it; a descriptor that is not an IPv4 socket just fails or is skipped.
        unsafe {
            let mut address: libc::sockaddr_in = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let address_ptr = (&mut address as *mut libc::sockaddr_in).cast::<libc::sockaddr>();
            let result = if peer {
                libc::getpeername(fd, address_ptr, &mut len)
            } else {
                libc::getsockname(fd, address_ptr, &mut len)
            };
            (result == 0 && i32::from(address.sin_family) == libc::AF_INET).then(|| u16::from_be(address.sin_port))
        }
    };
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if port_of(fd, false) != Some(server_port) || port_of(fd, true) != Some(client.port()) {
            continue;
        }
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`.
        let result = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        return (result == 0).then_some(value != 0);
    }
    None
}
