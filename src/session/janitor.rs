//! Periodic clean-up: expired unfinished uploads lose their bytes and become tombstones,
//! old tombstones and expired idempotency keys are deleted.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::cache::UploadCache;
use crate::db::{idempotency, uploads, Repo};
use crate::error::ApiError;
use crate::store::Store;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: usize,
    pub tombstones_purged: usize,
    pub idempotency_keys_purged: usize,
}

const BATCH: i64 = 500;

pub async fn sweep_once(
    repo: &Repo,
    store: &Store,
    cache: &UploadCache,
    tombstone_retention: Duration,
) -> Result<SweepReport, ApiError> {
    let mut report = SweepReport::default();
    loop {
        let batch = repo
            .run(|conn| uploads::expired_unleased(conn, BATCH))
            .await?;
        let full = batch.len() as i64 == BATCH;
        for row in batch {
            let id = row.id.clone();
            // Mark first: once the row says expired no request writes to it, so the bytes
            // can go.
            if repo
                .run(move |conn| uploads::mark_expired(conn, &id))
                .await?
            {
                cache.invalidate(&row.id);
                store.delete(&row.store_key).await?;
                report.expired += 1;
            }
        }
        if !full {
            break;
        }
    }
    let retention =
        chrono::Duration::from_std(tombstone_retention).unwrap_or(chrono::Duration::days(7));
    let before = (Utc::now() - retention).naive_utc();
    report.tombstones_purged = repo
        .run(move |conn| uploads::purge_tombstones(conn, before))
        .await?;
    report.idempotency_keys_purged = repo.run(idempotency::purge_expired).await?;
    Ok(report)
}

pub async fn run_janitor_loop(
    repo: Repo,
    store: Arc<Store>,
    cache: UploadCache,
    interval: Duration,
    tombstone_retention: Duration,
    log: slog::Logger,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match sweep_once(&repo, &store, &cache, tombstone_retention).await {
            Ok(report) if report != SweepReport::default() => slog::info!(log, "janitor sweep";
                "expired" => report.expired,
                "tombstones_purged" => report.tombstones_purged,
                "idempotency_keys_purged" => report.idempotency_keys_purged),
            Ok(_) => {}
            Err(err) => slog::warn!(log, "janitor sweep failed"; "error" => %err),
        }
    }
}
