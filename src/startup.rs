//! `Application::build` wires everything and binds (port 0 works); `run_until_stopped`
//! serves until SIGTERM/SIGINT or `stop()`. Tests start the real app the same way.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use actix_http::error::DispatchError;
use actix_http::HttpService;
use actix_server::{Server, ServerHandle};
use actix_service::{fn_service, map_config, ServiceFactoryExt};
use actix_tls::accept::rustls_0_23::Acceptor;
use actix_tls::accept::TlsError;
use actix_web::dev::AppConfig;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App};
use anyhow::Context;

use crate::auth::JwtKeys;
use crate::cache::UploadCache;
use crate::config::{Settings, StoreKind};
use crate::db::Repo;
use crate::http::signed_url::UrlSigner;
use crate::http::{browser, limits, routes};
use crate::limits::RateLimits;
use crate::listener::{InterimIo, InterimSender, ReadGate};
use crate::metrics::Metrics;
use crate::session::{run_janitor_loop, run_release_listener, sessions_runtime, SessionRegistry, SweepPolicy};
use crate::state::AppState;
use crate::store::{DiskStore, S3Store, Store, StoreBackend};
use crate::telemetry;
use crate::tls::{Offer, TlsConnection};

pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    h2_port: Option<u16>,
    server: Server,
    state: web::Data<AppState>,
    sessions_arbiter: Arbiter,
}

/// Opens the database (running migrations) and the store; shared by `serve`, `migrate`
/// and `janitor`.
pub async fn open_backends(settings: &Settings, metrics: Option<Arc<Metrics>>) -> anyhow::Result<(Repo, Arc<Store>)> {
    let url = settings.database_url();
    let database = settings.database.clone();
    // Turning the disk store's fsync off relaxes SQLite's commits the same way.
    let fsync = settings.store.kind != StoreKind::Disk || settings.store.disk.fsync;
    let timeout = Duration::from_secs(database.connect_timeout_secs);
    let pool_metrics = metrics.clone();
    let repo = tokio::task::spawn_blocking(move || {
        Repo::connect(&url, database.pool_size, database.read_pool_size, timeout, fsync, pool_metrics)
    })
    .await
    .context("database start-up task")?
    .context("opening the database")?;
    let backend = match settings.store.kind {
        StoreKind::Disk => StoreBackend::Disk(
            DiskStore::new(
                settings.disk_store_path(),
                settings.store.disk.fsync,
                settings.store.disk.write_on_http_workers,
            )
            .context("opening the disk store")?,
        ),
        StoreKind::S3 => {
            StoreBackend::S3(S3Store::connect(&settings.store.s3).await.context("configuring the S3 store")?)
        }
    };
    Ok((repo, Arc::new(Store::new(backend, metrics))))
}

impl Application {
    pub async fn build(settings: Settings, log: slog::Logger) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let (keys, generated_secret) = JwtKeys::from_settings(&settings)?;
        if let Some(path) = generated_secret {
            slog::warn!(log, "development profile: using the generated JWT secret in the data directory";
                "secret_file" => %path.display(),
                "mint_a_token" => "hoist token --sub alice --role uploader");
        }
        let metrics = Arc::new(Metrics::new().context("registering metrics")?);
        let (repo, store) = open_backends(&settings, Some(metrics.clone())).await?;
        if let StoreBackend::S3(s3) = store.backend() {
            if s3.abandoned_spool_dirs() > 0 {
                slog::info!(log, "removed the spool directories of processes that were killed";
                    "directories" => s3.abandoned_spool_dirs(), "spool_dir" => &settings.store.s3.spool_dir);
            }
        }
        // Both answered while opening; /health/ready keeps this current from here on.
        metrics.ready.set(1);
        let cache = UploadCache::new(settings.cache.capacity, Duration::from_secs(settings.cache.ttl_secs));
        // Sessions live on their own arbiter: when the HTTP workers stop and cut bodies,
        // the sessions still commit what arrived.
        let (io_nice, io_threads) = (settings.server.io_nice, settings.server.io_thread_limit());
        let sessions_arbiter = Arbiter::try_with_tokio_rt(move || sessions_runtime(io_nice, io_threads))
            .context("starting the sessions' thread")?;
        let sessions = SessionRegistry::new(
            settings.clone(),
            repo.clone(),
            store.clone(),
            cache.clone(),
            metrics.clone(),
            sessions_arbiter.handle(),
        );
        let signing_key = download_signing_key(&settings, &keys)?;
        let state = web::Data::new(AppState {
            signer: UrlSigner::new(signing_key),
            limits: RateLimits::from_settings(&settings.limits),
            settings: settings.clone(),
            repo: repo.clone(),
            store: store.clone(),
            cache: cache.clone(),
            sessions,
            keys,
            log: log.clone(),
            metrics: metrics.clone(),
            shutting_down: Default::default(),
        });
        // Replicas over one PostgreSQL hand uploads to each other (see `db::lease_release`).
        if state.repo.backend() == crate::db::Backend::Postgres {
            sessions_arbiter.spawn(run_release_listener(
                settings.database_listen_url(),
                state.sessions.clone(),
                log.clone(),
            ));
        }
        sessions_arbiter.spawn(run_janitor_loop(
            repo,
            store,
            cache,
            Duration::from_secs(settings.janitor.interval_secs.max(1)),
            SweepPolicy::from_settings(&settings),
            metrics,
            log.clone(),
        ));

        let listener =
            TcpListener::bind(settings.server.listen).with_context(|| format!("binding {}", settings.server.listen))?;
        let address = listener.local_addr()?;
        let workers = settings.server.worker_count();
        let server_settings = settings.server.clone();
        let cors_settings = settings.cors.clone();
        let app_state = state.clone();
        let tls = match settings.server.tls.enabled() {
            true => Some(crate::tls::server_config(&settings.server.tls, Offer::Http1)?),
            false => None,
        };
        let h2_tls = match (settings.server.tls.h2_listen, settings.server.tls.enabled()) {
            (Some(h2_address), true) => {
                Some((h2_address, crate::tls::server_config(&settings.server.tls, Offer::Http2AndHttp1)?))
            }
            (Some(_), false) => anyhow::bail!("server.tls.h2_listen needs TLS: set server.tls.cert_file and key_file"),
            (None, _) => None,
        };
        let metrics_on_main = settings.server.metrics_listen.is_none();
        let app = move || {
            let hsts = server_settings.tls.enabled().then_some(server_settings.tls.hsts_max_age_secs);
            App::new()
                .app_data(app_state.clone())
                .wrap(from_fn(browser::docs_csp))
                .wrap(from_fn(limits::rate_limit))
                .wrap(from_fn(routes::method_override))
                .wrap(from_fn(browser::limit_header_size))
                .wrap(from_fn(telemetry::log_requests))
                .wrap(browser::security_headers(hsts))
                // Outermost, so preflights are answered before auth and routing.
                .wrap(Condition::new(!cors_settings.allowed_origins.is_empty(), browser::cors(&cors_settings)))
                .configure(|cfg| routes::configure(cfg, metrics_on_main))
        };
        let keep_alive = Duration::from_secs(settings.server.keep_alive_secs);
        // HTTP/2 bodies get no read gate (one stream's would stall the others): what bounds
        // them is the window each stream and connection may have in flight unread.
        let (h2_stream_window, h2_connection_window) =
            (settings.server.h2_stream_window(), settings.server.h2_connection_window());
        let request_head_timeout = Duration::from_millis(settings.server.client_request_timeout_ms);
        let linger = Duration::from_millis(settings.server.linger_ms);
        let mut builder =
            Server::build().workers(workers).shutdown_timeout(settings.server.shutdown_grace_secs).disable_signals();
        // `/metrics` on a listener of its own (plain HTTP, never rate-limited), off the
        // public one, when `server.metrics_listen` is set.
        let mut metrics_port = None;
        if let Some(metrics_address) = settings.server.metrics_listen {
            let metrics_listener = TcpListener::bind(metrics_address)
                .with_context(|| format!("binding server.metrics_listen {metrics_address}"))?;
            metrics_port = Some(metrics_listener.local_addr()?.port());
            let metrics_state = state.clone();
            builder = builder.listen("hoist-metrics", metrics_listener, move || {
                let app = App::new()
                    .app_data(metrics_state.clone())
                    .route("/metrics", web::get().to(crate::http::health_metrics));
                HttpService::build().h1(map_config(app, |_| AppConfig::default())).tcp()
            })?;
        }
        // HTTPS over the listener's own stream wrapper so that HTTP/1.1 bodies get the read
        // gate here too (holding the encrypted bytes in the socket), and a second wrapper over
        // TLS whose interim (1xx) bytes are encrypted like the rest: HTTP/1.1 connections get
        // its `InterimSender`; HTTP/2 ones do not, raw bytes there would break the
        // connection's framing.
        let https = |tls: rustls::ServerConfig, address: std::net::SocketAddr| {
            let app = app.clone();
            move || {
                let http = HttpService::build()
                    .keep_alive(keep_alive)
                    .client_request_timeout(request_head_timeout)
                    .client_disconnect_timeout(linger)
                    .local_addr(address)
                    .h2_initial_window_size(h2_stream_window)
                    .h2_initial_connection_window_size(h2_connection_window)
                    .on_connect_ext(|io: &InterimIo<TlsConnection>, ext| {
                        if let Some(gate) = crate::tls::http1_read_gate(io.get_ref()) {
                            ext.insert::<ReadGate>(gate);
                            ext.insert::<InterimSender>(io.interim());
                        }
                    })
                    .finish(map_config(app(), |_| AppConfig::default()));
                let mut acceptor = Acceptor::new(tls.clone());
                acceptor.set_handshake_timeout(request_head_timeout);
                fn_service(|io: actix_rt::net::TcpStream| {
                    without_nagle(&io);
                    std::future::ready(Ok::<_, TlsError<std::io::Error, DispatchError>>(InterimIo::new(io)))
                })
                .and_then(acceptor.map_err(TlsError::into_service_error))
                .and_then(|io: TlsConnection| {
                    let (protocol, peer) = (crate::tls::protocol(&io), io.get_ref().0.get_ref().peer_addr().ok());
                    std::future::ready(Ok((InterimIo::new(io), protocol, peer)))
                })
                .and_then(http.map_err(TlsError::Service))
            }
        };
        // HTTP/2 on a listener of its own, so that `listen` offers only HTTP/1.1 (see
        // `tls::Offer`).
        let mut h2_port = None;
        if let Some((h2_address, h2_tls)) = h2_tls {
            let h2_listener =
                TcpListener::bind(h2_address).with_context(|| format!("binding server.tls.h2_listen {h2_address}"))?;
            let h2_address = h2_listener.local_addr()?;
            h2_port = Some(h2_address.port());
            builder = builder.listen("hoist-https-h2", h2_listener, https(h2_tls, h2_address))?;
        }
        let server = match tls {
            Some(tls) => builder.listen("hoist-https", listener, https(tls, address))?,
            None => builder.listen("hoist-http", listener, move || {
                let http = HttpService::build()
                    .keep_alive(keep_alive)
                    .client_request_timeout(request_head_timeout)
                    .client_disconnect_timeout(linger)
                    .local_addr(address)
                    .on_connect_ext(|io: &InterimIo<actix_rt::net::TcpStream>, ext| {
                        ext.insert::<InterimSender>(io.interim());
                        ext.insert::<ReadGate>(io.read_gate());
                    })
                    .h1(map_config(app(), |_| AppConfig::default()));
                fn_service(|io: actix_rt::net::TcpStream| {
                    without_nagle(&io);
                    let peer = io.peer_addr().ok();
                    std::future::ready(Ok::<_, actix_http::error::DispatchError>((InterimIo::new(io), peer)))
                })
                .and_then(http)
            })?,
        }
        .run();
        slog::info!(log, "listening"; "address" => %address, "tls" => settings.server.tls.enabled(), "h2_port" => ?h2_port, "workers" => workers, "io_threads" => io_threads,
            "database" => ?state.repo.backend(), "store" => state.store.backend_name());
        Ok(Application { port: address.port(), metrics_port, h2_port, server, state, sessions_arbiter })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metrics listener's port, when `server.metrics_listen` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// The HTTP/2 listener's port, when `server.tls.h2_listen` is set.
    pub fn h2_port(&self) -> Option<u16> {
        self.h2_port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until a signal (or `handle().stop()`), then cuts bodies still in flight after
    /// the grace period, lets sessions commit what arrived, and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let state = self.state.clone();
        let signals = async move {
            wait_for_signal().await;
            state.shutting_down.store(true, Ordering::SeqCst);
            state.metrics.ready.set(0);
            slog::info!(state.log, "shutting down: no new connections, cutting bodies after the grace period");
            handle.stop(true).await;
        };
        tokio::select! {
            result = self.server => result?,
            () = signals => {}
        }
        self.state.shutting_down.store(true, Ordering::SeqCst);
        self.state.sessions.drain(Duration::from_secs(30)).await;
        self.sessions_arbiter.stop();
        // Wait for the sessions' thread to finish: it owns database connections (sessions,
        // the janitor), and a process that exits while a thread is still closing them can
        // crash in the C libraries' exit handlers (seen once: SIGSEGV after SIGTERM).
        let arbiter = self.sessions_arbiter;
        let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
        slog::info!(self.state.log, "stopped");
        Ok(())
    }
}

/// The configured key (value or file), else one derived from the JWT secret.
fn download_signing_key(settings: &Settings, keys: &JwtKeys) -> anyhow::Result<Vec<u8>> {
    let downloads = &settings.downloads;
    if !downloads.signing_key.is_empty() {
        return Ok(downloads.signing_key.expose().as_bytes().to_vec());
    }
    if !downloads.signing_key_file.is_empty() {
        let raw = std::fs::read_to_string(&downloads.signing_key_file)
            .with_context(|| format!("reading downloads.signing_key_file {}", downloads.signing_key_file))?;
        return Ok(raw.trim().as_bytes().to_vec());
    }
    keys.derive_key("hoist download URLs v1").context(
        "JWTs are verified with public keys only: set HOIST__DOWNLOADS__SIGNING_KEY (or _FILE) to sign download URLs",
    )
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Small writes go out at once. With Nagle's algorithm a small write waits while an earlier
/// one is unacknowledged, and clients delay their ACKs: each HTTP/2 WINDOW_UPDATE waited so,
/// once per window of every HTTP/2 upload (one 64 MiB PATCH over HTTP/2 with the default
/// windows: 157-224 MB/s with Nagle, 576-674 without). actix-http leaves the option alone.
fn without_nagle(io: &actix_rt::net::TcpStream) {
    // A socket that refuses the option still works, with Nagle.
    let _ = io.set_nodelay(true);
}
