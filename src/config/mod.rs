//! Settings: `config/default.toml` → `config/{HOIST_ENV}.toml` → `HOIST__…` environment.
//!
//! Every struct denies unknown fields so a mistyped key stops the server at start-up
//! instead of being silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

mod secret;

pub use secret::Secret;

const EMBEDDED_DEFAULTS: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The profile these settings were loaded for (`development`, `test`, `production`).
    #[serde(default)]
    pub profile: String,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub store: StoreSettings,
    pub uploads: UploadSettings,
    pub idempotency: IdempotencySettings,
    pub cache: CacheSettings,
    pub janitor: JanitorSettings,
    pub downloads: DownloadSettings,
    pub cors: CorsSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub log: LogSettings,
    pub sentry: SentrySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Identity of this process in upload leases. Empty: the host name.
    pub node_id: String,
    pub keep_alive_secs: u64,
    /// Time allowed to receive the request head.
    pub client_request_timeout_ms: u64,
    /// After answering a request whose body it did not read (409, 423, 413...), the
    /// listener goes on reading and discarding that body for up to this long before it
    /// closes: closing at once resets the connection under a client still sending, which
    /// then sees a broken pipe instead of the answer. 0: close at once.
    pub linger_ms: u64,
    /// A PATCH body that sends nothing for this long is cut; what arrived is kept.
    pub body_idle_timeout_secs: u64,
    /// On SIGTERM/SIGINT, in-flight requests get this long before their bodies are cut.
    pub shutdown_grace_secs: u64,
    /// A request body still arriving after this long is cut (what arrived is kept): a
    /// trickling client cannot hold a connection and a session forever.
    pub max_request_secs: u64,
    /// Request headers larger than this in total get 431.
    pub max_header_bytes: usize,
    /// The URL clients reach Hoist at (`https://uploads.example.com`), used in `Location`
    /// and download URLs. Empty: the request's scheme and Host.
    pub public_url: String,
    /// Serve `/metrics` on this address instead of `listen` (plain HTTP, for a
    /// cluster-internal port). Unset: on `listen`.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Nice value (0–19) of the threads that write, fsync and commit upload bytes, so that
    /// request handling keeps its latency under bulk load. 0: the default priority.
    pub io_nice: u8,
    /// Most threads that write, fsync and commit upload bytes at once (the `hoist-io`
    /// pool). 0: four per core, at least eight.
    pub io_threads: usize,
    /// Request-body bytes (MiB) all uploads together may hold in memory before Hoist stops
    /// reading their sockets until the writers catch up.
    pub body_buffer_mib: u64,
    /// Most glibc malloc arenas (see `memory::limit_malloc_arenas`). 0: one per core
    /// (`malloc_arena_limit`).
    pub malloc_arenas: usize,
    /// HTTP/2 flow-control window (KiB) of each request stream: the body bytes one HTTP/2
    /// upload may have in flight before it is read. HTTP/1.1 bodies wait in the socket instead.
    pub h2_stream_window_kib: u32,
    /// HTTP/2 flow-control window (KiB) of a whole connection, all its streams together.
    pub h2_connection_window_kib: u32,
    pub tls: TlsSettings,
}

/// This machine's cores, which the settings below scale with when set to 0.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl ServerSettings {
    /// `workers` with 0 resolved: one per core.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => cores(),
            n => n,
        }
    }

    /// `io_threads` with 0 resolved: four per core, at least eight.
    pub fn io_thread_limit(&self) -> usize {
        match self.io_threads {
            0 => cores().saturating_mul(4).max(8),
            n => n,
        }
    }

    /// `h2_stream_window_kib` in bytes, within what HTTP/2 allows (at most 2^31 - 1) and at
    /// least 16 KiB (one frame).
    pub fn h2_stream_window(&self) -> u32 {
        h2_window_bytes(self.h2_stream_window_kib)
    }

    /// `h2_connection_window_kib` in bytes, never below one stream's window.
    pub fn h2_connection_window(&self) -> u32 {
        h2_window_bytes(self.h2_connection_window_kib).max(self.h2_stream_window())
    }

    /// `malloc_arenas` with 0 resolved: one per core.
    pub fn malloc_arena_limit(&self) -> usize {
        match self.malloc_arenas {
            0 => cores(),
            n => n,
        }
    }
}

fn h2_window_bytes(kib: u32) -> u32 {
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    kib.max(16).saturating_mul(1024).min(MAX_WINDOW)
}

/// TLS on the listener: both paths set turns it on (HTTP/1.1 by ALPN, HSTS), and HTTP/2 on
/// a second listener when `h2_listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// `Strict-Transport-Security: max-age=…` sent while TLS is on; 0: not sent.
    pub hsts_max_age_secs: u64,
    /// A second HTTPS address that offers HTTP/2 as well as HTTP/1.1. `listen` offers only
    /// HTTP/1.1, the one protocol on which Hoist can send the IETF draft's 104 (iOS picks
    /// HTTP/2 whenever it is offered, and then gets no 104). Unset: no HTTP/2.
    #[serde(default)]
    pub h2_listen: Option<SocketAddr>,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or a SQLite path (`sqlite://path` or a plain path). Empty: `{data_dir}/hoist.db`.
    pub url: Secret,
    /// Connections for writes (sessions, creations, idempotency keys). PostgreSQL only:
    /// SQLite always gets one, since it takes one writer at a time.
    pub pool_size: u32,
    /// Connections for the lookups behind HEAD and request checks, kept apart so that they
    /// never wait behind writers.
    pub read_pool_size: u32,
    pub connect_timeout_secs: u64,
    /// PostgreSQL: where the connection that hears other replicas ask for an upload
    /// (`LISTEN`) connects, when `url` goes through a pooler that cannot keep a session's
    /// `LISTEN` (PgBouncer in transaction mode). Empty: `url`.
    #[serde(default)]
    pub listen_url: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub kind: StoreKind,
    pub disk: DiskStoreSettings,
    pub s3: S3StoreSettings,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Disk,
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3StoreSettings {
    pub bucket: String,
    /// Empty: AWS itself. Set for S3-compatible services (MinIO, R2, moto…).
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
    /// Every object Hoist writes lives under this prefix; the janitor only touches it.
    pub prefix: String,
    /// Empty: the standard AWS credential chain (AWS_ACCESS_KEY_ID…, profiles, IRSA).
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// The part size (at least 8 MiB); larger when an upload would need over 10,000 parts.
    pub preferred_part_size: u64,
    /// Where parts are assembled before `UploadPart`. Empty: the system temp directory.
    pub spool_dir: String,
    /// Attempts per S3 request (standard retry with backoff) before answering 503.
    pub max_attempts: u32,
    /// Local copies of staged tails, in MiB for all uploads together, so the PATCH that
    /// fills a part reads nothing back from S3; 0: none.
    pub tail_copy_mib: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskStoreSettings {
    /// Empty: `{data_dir}/uploads`.
    pub path: String,
    /// fsync every PATCH before acknowledging it. Turning this off trades durability on
    /// power loss for throughput; a process crash still loses nothing acknowledged.
    pub fsync: bool,
    /// With fsync off: the HTTP worker reading a body writes it into the page cache itself
    /// (more throughput, slower HEADs under load; see the README).
    #[serde(default)]
    pub write_on_http_workers: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSettings {
    /// `Tus-Max-Size`: the largest upload accepted, in bytes.
    pub max_size: u64,
    /// How long an unfinished upload lives after creation (`Upload-Expires`).
    pub lifetime_secs: u64,
    pub max_metadata_bytes: usize,
    pub max_metadata_keys: usize,
    pub max_concat_parts: usize,
    /// How long a PATCH waits for another PATCH on the same upload before 423, and how long
    /// a request that cut one waits for its commit.
    pub lock_wait_ms: u64,
    /// A HEAD, PATCH or DELETE from an upload's owner ends a request still streaming into that
    /// upload (what arrived is kept) instead of waiting behind it: a client sends one only once
    /// it gave up on the other, which may be held open for `server.body_idle_timeout_secs`.
    pub cut_abandoned_requests: bool,
    /// An upload session with no request for this long stops and releases its lease.
    pub session_idle_secs: u64,
    pub lease_ttl_secs: u64,
    /// Files accepted in one multipart/form-data POST.
    pub max_form_files: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySettings {
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    pub capacity: u64,
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JanitorSettings {
    pub interval_secs: u64,
    /// Multipart uploads under the prefix that no live upload owns are aborted once they
    /// are this old (younger ones may belong to a creation still in progress).
    pub orphan_grace_secs: u64,
    /// Terminated and expired uploads answer 410 for this long, then their rows go.
    pub tombstone_retention_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins allowed to call Hoist from a browser (e.g. `https://app.example`); `*` allows
    /// any. Empty: no CORS headers at all.
    pub allowed_origins: Vec<String>,
    pub max_age_secs: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadSettings {
    /// How long a signed download URL (S3 presigned or Hoist's own) stays valid.
    pub url_ttl_secs: u64,
    /// HMAC key for the disk store's signed URLs. Empty: derived from the JWT secret.
    pub signing_key: Secret,
    pub signing_key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 shared secret. Set it through `HOIST__AUTH__JWT_SECRET`, never in a committed file.
    pub jwt_secret: Secret,
    /// Path to a file holding the HS256 secret (Kubernetes/Vault secret mounts).
    pub jwt_secret_file: String,
    /// PEM public key (RSA for RS256/PS256, P-256/P-384 for ES256/ES384, or Ed25519).
    pub public_key: String,
    pub public_key_file: String,
    /// JWKS file; tokens name their key with `kid`. Re-read when it changes (key rotation).
    pub jwks_file: String,
    /// Required `iss`, if not empty.
    pub issuer: String,
    /// Required `aud`, if not empty.
    pub audience: String,
    pub leeway_secs: u64,
    /// Only the development profile may generate a secret in the data directory.
    pub generate_dev_secret: bool,
}

/// Error tracking. An empty DSN sends nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentrySettings {
    /// `HOIST__SENTRY__DSN`.
    pub dsn: Secret,
    /// Empty: the profile (`production`, …).
    pub environment: String,
    /// Share of error events sent, 0.0 to 1.0.
    pub sample_rate: f32,
}

/// Rate limits and quotas; 0 turns each off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Requests per second per subject (per client IP without a valid token).
    pub requests_per_second: u64,
    pub request_burst: u64,
    /// Request body bytes per second per subject: bodies are paced to it.
    pub body_bytes_per_second: u64,
    pub body_bytes_burst: u64,
    /// Unfinished uploads per subject (uploader role; admins are exempt).
    pub max_open_uploads: u64,
    /// Bytes declared but not yet received across a subject's unfinished uploads.
    pub max_open_bytes: u64,
    /// Largest single upload for the uploader role (uploads.max_size applies to everyone).
    pub max_upload_size: u64,
    /// Clients whose buckets are tracked at once (bounds memory).
    pub tracked_clients: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `error`, `warn`, `info`, `debug`, `trace` or `off`.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Term,
}

impl Settings {
    /// Loads the built-in defaults, `{config_dir}/default.toml`, then `{config_dir}/{profile}.toml`, then the
    /// `HOIST__SECTION__KEY` environment variables.
    pub fn load(config_dir: &Path, profile: &str) -> anyhow::Result<Settings> {
        // The defaults are compiled in, so the binary runs from any directory; a
        // config/default.toml beside it may still override them.
        let builder = config::Config::builder()
            .add_source(config::File::from_str(EMBEDDED_DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from(config_dir.join("default.toml")).required(false))
            .add_source(config::File::from(config_dir.join(format!("{profile}.toml"))).required(false))
            .add_source(
                config::Environment::with_prefix("HOIST").prefix_separator("__").separator("__").try_parsing(true),
            );
        let mut settings: Settings =
            builder.build().context("reading configuration")?.try_deserialize().context("invalid configuration")?;
        settings.profile = profile.to_owned();
        Ok(settings)
    }

    /// The profile named by `HOIST_ENV`; `development` when unset, so that a bare
    /// `hoist serve` works on a fresh checkout.
    pub fn profile_from_env() -> String {
        std::env::var("HOIST_ENV").unwrap_or_else(|_| "development".to_owned())
    }

    /// Where the replicas' hand-over listener connects (PostgreSQL).
    pub fn database_listen_url(&self) -> String {
        match self.database.listen_url.is_empty() {
            true => self.database_url(),
            false => self.database.listen_url.expose().to_owned(),
        }
    }

    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            self.server.data_dir.join("hoist.db").display().to_string()
        } else {
            self.database.url.expose().to_owned()
        }
    }

    pub fn disk_store_path(&self) -> PathBuf {
        if self.store.disk.path.is_empty() {
            self.server.data_dir.join("uploads")
        } else {
            PathBuf::from(&self.store.disk.path)
        }
    }

    pub fn node_id(&self) -> String {
        if !self.server.node_id.is_empty() {
            return self.server.node_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "hoist".to_owned())
    }

    pub fn upload_lifetime(&self) -> Duration {
        Duration::from_secs(self.uploads.lifetime_secs)
    }
}
