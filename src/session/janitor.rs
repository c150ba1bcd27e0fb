//! Periodic clean-up: expired unfinished uploads lose their bytes and become tombstones,
//! old tombstones and expired idempotency keys are deleted.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::cache::UploadCache;
use crate::db::{idempotency, uploads, Repo};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{S3Store, Store, StoreBackend};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: usize,
    pub tombstones_purged: usize,
    pub idempotency_keys_purged: usize,
    pub orphans_aborted: usize,
}

/// How long things are kept.
#[derive(Debug, Clone, Copy)]
pub struct SweepPolicy {
    pub tombstone_retention: Duration,
    pub orphan_grace: Duration,
}

impl SweepPolicy {
    pub fn from_settings(settings: &crate::config::Settings) -> SweepPolicy {
        SweepPolicy {
            tombstone_retention: Duration::from_secs(settings.janitor.tombstone_retention_secs),
            orphan_grace: Duration::from_secs(settings.janitor.orphan_grace_secs),
        }
    }
}

const BATCH: i64 = 500;

pub async fn sweep_once(
    repo: &Repo,
    store: &Store,
    cache: &UploadCache,
    policy: SweepPolicy,
) -> Result<SweepReport, ApiError> {
    let mut report = SweepReport::default();
    loop {
        let batch = repo.run(|conn| uploads::expired_unleased(conn, BATCH)).await?;
        let full = batch.len() as i64 == BATCH;
        for row in batch {
            let id = row.id.clone();
            // Mark first: once the row says expired no request writes to it, so the bytes
            // can go.
            if repo.run(move |conn| uploads::mark_expired(conn, &id)).await? {
                cache.invalidate(&row.id);
                store.delete(&row.store_key, row.multipart_id.as_deref()).await?;
                report.expired += 1;
            }
        }
        if !full {
            break;
        }
    }
    let retention = chrono::Duration::from_std(policy.tombstone_retention).unwrap_or(chrono::Duration::days(7));
    let before = (Utc::now() - retention).naive_utc();
    report.tombstones_purged = repo.run(move |conn| uploads::purge_tombstones(conn, before)).await?;
    report.idempotency_keys_purged = repo.run(idempotency::purge_expired).await?;
    if let StoreBackend::S3(s3) = store.backend() {
        report.orphans_aborted = abort_orphans(repo, s3, policy.orphan_grace).await?;
    }
    Ok(report)
}

/// Aborts multipart uploads under Hoist's prefix that no open upload owns: no open row has
/// their key, or the open row under their key has another multipart upload. A creation
/// writes its row before its multipart upload, so one in progress is never taken for an
/// orphan; the grace period (by S3's `Initiated`) is a second guard.
pub async fn abort_orphans(repo: &Repo, s3: &S3Store, grace: Duration) -> Result<usize, ApiError> {
    let cutoff = Utc::now().timestamp() - i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let candidates: Vec<(String, String, i64)> =
        s3.multipart_uploads(s3.prefix()).await?.into_iter().filter(|(_, _, initiated)| *initiated < cutoff).collect();
    let mut aborted = 0;
    for batch in candidates.chunks(500) {
        let keys: Vec<String> = batch.iter().map(|(key, _, _)| key.clone()).collect();
        let owners = repo.run(move |conn| uploads::open_by_keys(conn, &keys)).await?;
        for (key, id, _) in batch {
            let owned = owners.iter().any(|(k, mp)| k == key && mp.as_ref().is_none_or(|mp| mp == id));
            if !owned {
                s3.abort(key, id).await?;
                aborted += 1;
            }
        }
    }
    Ok(aborted)
}

pub async fn run_janitor_loop(
    repo: Repo,
    store: Arc<Store>,
    cache: UploadCache,
    interval: Duration,
    policy: SweepPolicy,
    metrics: Arc<Metrics>,
    log: slog::Logger,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let swept = sweep_once(&repo, &store, &cache, policy).await;
        if let Ok(report) = &swept {
            metrics.uploads_expired.inc_by(report.expired as u64);
        }
        match swept {
            Ok(report) if report != SweepReport::default() => slog::info!(log, "janitor sweep";
                "expired" => report.expired,
                "tombstones_purged" => report.tombstones_purged,
                "idempotency_keys_purged" => report.idempotency_keys_purged,
                "orphans_aborted" => report.orphans_aborted),
            Ok(_) => {}
            Err(err) => slog::warn!(log, "janitor sweep failed"; "error" => %err),
        }
    }
}
