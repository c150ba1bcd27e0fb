use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use hoist::auth::{parse_ttl, JwtKeys, Minter, Role};
use hoist::cache::UploadCache;
use hoist::config::Settings;
use hoist::session::{sweep_once, SweepPolicy};
use hoist::startup::{open_backends, Application};
use hoist::telemetry::build_logger;

#[derive(Parser)]
#[command(name = "hoist", version, about = "Resumable upload server")]
struct Cli {
    /// Directory holding default.toml and {HOIST_ENV}.toml.
    #[arg(long, global = true, env = "HOIST_CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
    /// Overrides server.data_dir (SQLite database, disk store, development secret).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (runs migrations first).
    Serve {
        /// Overrides server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Mint a bearer token the server with the same configuration accepts.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long, value_enum, default_value = "uploader")]
        role: Role,
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Sign with this private key (RSA or P-256 EC PEM) instead of the shared secret,
        /// for servers that verify with the public key or a JWKS file.
        #[arg(long)]
        private_key: Option<PathBuf>,
        /// The key's id in the JWKS file.
        #[arg(long, requires = "private_key")]
        kid: Option<String>,
    },
    /// After restoring the database to an older point than the store: bring the two back
    /// into agreement (offsets from what the store holds, vanished uploads failed,
    /// orphaned multipart uploads aborted). Run it with the servers stopped.
    Reconcile {
        /// Report what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Expire overdue uploads and purge old records.
    Janitor {
        /// One sweep, then exit (the server also sweeps periodically).
        #[arg(long)]
        once: bool,
    },
}

fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(&cli.config_dir, &Settings::profile_from_env())?;
    if let Some(dir) = &cli.data_dir {
        settings.server.data_dir = dir.clone();
    }
    Ok(settings)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = load_settings(&cli)?;
    match cli.command {
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                settings.server.listen = listen;
            }
            // Before the logger, Sentry and the runtimes start their threads.
            hoist::memory::limit_malloc_arenas(settings.server.malloc_arena_limit());
            let log = build_logger(&settings.log)?;
            match hoist::fd_usage::raise_descriptor_limit() {
                Ok(Some((from, to))) => slog::info!(log, "file descriptor limit raised"; "from" => from, "to" => to),
                Ok(None) => {}
                Err(err) => slog::warn!(log, "file descriptor limit not raised"; "error" => %err),
            }
            // Kept until the server stops, so pending events are flushed.
            let _sentry = hoist::error_tracking::init(&settings.sentry, &settings.profile)?;
            actix_rt::System::new().block_on(async move {
                let app = Application::build(settings, log).await?;
                app.run_until_stopped().await
            })
        }
        Command::Migrate => actix_rt::System::new().block_on(async move {
            open_backends(&settings, None).await?;
            println!("migrations applied");
            Ok(())
        }),
        Command::Token { sub, role, ttl, private_key, kid } => {
            let minter = match private_key {
                Some(path) => {
                    let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                    Minter::from_private_pem(&pem, kid, &settings)?
                }
                None => JwtKeys::from_settings(&settings)?.0.minter()?,
            };
            let token = minter.mint(&sub, role, parse_ttl(&ttl)?)?;
            println!("{token}");
            Ok(())
        }
        Command::Reconcile { dry_run } => actix_rt::System::new().block_on(async move {
            let (repo, store) = open_backends(&settings, None).await?;
            let report = hoist::reconcile::reconcile(&repo, &store, !dry_run).await.context("reconcile")?;
            println!(
                "{}checked {} uploads: {} repaired, {} found complete, {} failed, \
                 {} orphaned multipart uploads aborted, {} stale staged objects deleted",
                if dry_run { "dry run: " } else { "" },
                report.checked,
                report.repaired,
                report.completed,
                report.failed,
                report.orphans_aborted,
                report.stale_staged_deleted
            );
            Ok(())
        }),
        Command::Janitor { once } => actix_rt::System::new().block_on(async move {
            let (repo, store) = open_backends(&settings, None).await?;
            let cache = UploadCache::new(1, Duration::from_secs(1));
            let policy = SweepPolicy::from_settings(&settings);
            loop {
                let report = sweep_once(&repo, &store, &cache, policy).await.context("janitor sweep")?;
                println!(
                    "expired {} uploads, purged {} tombstones and {} idempotency keys, aborted {} orphaned multipart uploads",
                    report.expired, report.tombstones_purged, report.idempotency_keys_purged, report.orphans_aborted
                );
                if once {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(settings.janitor.interval_secs.max(1)))
                    .await;
            }
        }),
    }
}
