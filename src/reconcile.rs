//! `hoist reconcile`: after the database is restored to an older point than the store, bring
//! the two back into agreement, never claiming a byte the store does not hold.
//!
//! S3: an open upload's offset becomes what S3 proves (its leading run of full parts from
//! `ListParts`, then the staged tail objects that continue it without a gap), and its parts
//! rows become those parts. An upload whose multipart upload is gone is complete if its
//! finished object is there, else failed (terminated, 410). Multipart uploads no open row
//! owns are aborted. A completed upload whose object is gone is failed.
//!
//! Disk: the offset becomes the file's length (bytes are written in order and fsynced before
//! they are acknowledged), complete when that is the declared length; a missing file fails
//! the upload, and so does a completed upload whose file is missing or of the wrong size.
//! One caveat: a process killed in the middle of a chunk sent with `Upload-Checksum` leaves
//! that chunk's unverified bytes in the file, which this counts.

use std::time::Duration;

use crate::db::models::{UploadRow, UploadState};
use crate::db::{reconcile as queries, uploads, DbError, Repo};
use crate::store::{DiskStore, S3Store, StagedObject, Store, StoreBackend, StoreError};

const PAGE: i64 = 500;

#[derive(Debug, Default, Clone, Copy)]
pub struct ReconcileReport {
    pub checked: usize,
    /// Open uploads whose offset or parts were rewritten.
    pub repaired: usize,
    /// Open uploads found finished in the store.
    pub completed: usize,
    /// Uploads whose bytes are gone: terminated.
    pub failed: usize,
    pub orphans_aborted: usize,
    /// Staged objects that no offset reaches any more, deleted.
    pub stale_staged_deleted: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("database: {0}")]
    Database(#[from] DbError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

/// Checks every open and completed upload; with `apply` false, only reports.
pub async fn reconcile(repo: &Repo, store: &Store, apply: bool) -> Result<ReconcileReport, ReconcileError> {
    let mut report = ReconcileReport::default();
    // Completed rows first: an open row found finished is not checked twice.
    for state in [UploadState::Complete, UploadState::Open] {
        let mut after: Option<String> = None;
        loop {
            let cursor = after.clone();
            let rows = repo.run(move |conn| queries::rows_after(conn, state, cursor.as_deref(), PAGE)).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.id.clone());
            for row in rows {
                report.checked += 1;
                match store.backend() {
                    StoreBackend::S3(s3) => reconcile_s3(repo, s3, &row, apply, &mut report).await?,
                    StoreBackend::Disk(disk) => reconcile_disk(repo, disk, &row, apply, &mut report).await?,
                }
            }
        }
    }
    if let StoreBackend::S3(s3) = store.backend() {
        if apply {
            report.orphans_aborted = crate::session::abort_orphans(repo, s3, Duration::ZERO)
                .await
                .map_err(|e| ReconcileError::Other(e.to_string()))?;
        }
    }
    Ok(report)
}

async fn fail(repo: &Repo, row: &UploadRow, apply: bool, report: &mut ReconcileReport) -> Result<(), DbError> {
    report.failed += 1;
    if apply {
        let id = row.id.clone();
        repo.run(move |conn| uploads::terminate(conn, &id).map(|_| ())).await?;
    }
    Ok(())
}

async fn reconcile_s3(
    repo: &Repo,
    s3: &S3Store,
    row: &UploadRow,
    apply: bool,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let key = &row.store_key;
    if row.state() == UploadState::Complete {
        if s3.object_size(key).await?.is_none() {
            fail(repo, row, apply, report).await?;
        }
        return Ok(());
    }
    let (Some(upload_id), Some(part_size)) = (row.multipart_id.as_deref(), row.part_size.filter(|p| *p > 0)) else {
        // The creation never got its multipart upload: nothing was ever stored.
        fail(repo, row, apply, report).await?;
        return Ok(());
    };
    let Some(parts) = s3.list_parts(key, upload_id).await? else {
        // Completed after the backup (its object is there), or aborted.
        match s3.object_size(key).await? {
            Some(size) if row.upload_length.is_none_or(|length| length as u64 == size) => {
                report.completed += 1;
                if apply {
                    let id = row.id.clone();
                    repo.run(move |conn| queries::mark_complete(conn, &id, size as i64)).await?;
                    report.stale_staged_deleted += delete_staged(s3, key, &[]).await?;
                }
            }
            _ => fail(repo, row, apply, report).await?,
        }
        return Ok(());
    };
    // The leading run of full parts: every byte in it is durable and in order.
    let full: Vec<_> = parts
        .iter()
        .enumerate()
        .take_while(|(i, part)| part.number == *i as i32 + 1 && part.size == part_size)
        .map(|(_, part)| (part.number, part.size, part.etag.clone()))
        .collect();
    let mut offset = full.len() as u64 * part_size as u64;
    let staged = s3.staged_objects(key).await?;
    let mut chain = Vec::new();
    for object in &staged {
        if object.start == offset && object.size > 0 {
            offset += object.size;
            chain.push(object.key.clone());
        }
    }
    if let Some(length) = row.upload_length {
        offset = offset.min(length as u64);
    }
    let recorded = {
        let id = row.id.clone();
        repo.run(move |conn| uploads::list_parts(conn, &id)).await?
    };
    if offset as i64 != row.upload_offset || recorded != full {
        report.repaired += 1;
        if apply {
            let id = row.id.clone();
            repo.run(move |conn| queries::set_progress(conn, &id, offset as i64, &full)).await?;
        }
    }
    if apply {
        report.stale_staged_deleted += delete_staged(s3, key, &chain).await?;
    }
    Ok(())
}

/// Deletes the staged objects of `key` not in `keep`; returns how many.
async fn delete_staged(s3: &S3Store, key: &str, keep: &[String]) -> Result<usize, StoreError> {
    let stale: Vec<String> = s3
        .staged_objects(key)
        .await?
        .into_iter()
        .map(|StagedObject { key, .. }| key)
        .filter(|object| !keep.contains(object))
        .collect();
    let count = stale.len();
    s3.delete_keys(stale).await;
    Ok(count)
}

async fn reconcile_disk(
    repo: &Repo,
    disk: &DiskStore,
    row: &UploadRow,
    apply: bool,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let path = disk.path(&row.store_key);
    let probe = path.clone();
    let length = tokio::task::spawn_blocking(move || std::fs::metadata(&probe).map(|m| m.len()).ok())
        .await
        .map_err(|e| ReconcileError::Other(e.to_string()))?;
    let offset = row.upload_offset.max(0) as u64;
    if row.state() == UploadState::Complete {
        if length != Some(offset) {
            fail(repo, row, apply, report).await?;
        }
        return Ok(());
    }
    let declared = row.upload_length.map(|l| l.max(0) as u64);
    match length {
        None => fail(repo, row, apply, report).await?,
        Some(length) if declared == Some(length) && length > offset => {
            // Every byte is there: the upload finished after the backup.
            report.completed += 1;
            if apply {
                let id = row.id.clone();
                repo.run(move |conn| queries::mark_complete(conn, &id, length as i64)).await?;
            }
        }
        Some(length) if length != offset => {
            // Longer: bytes acknowledged after the backup, written in order and fsynced.
            // Shorter: the offset may not claim what the file does not hold.
            let kept = declared.map_or(length, |declared| length.min(declared));
            report.repaired += 1;
            if apply {
                let id = row.id.clone();
                repo.run(move |conn| queries::set_progress(conn, &id, kept as i64, &[])).await?;
            }
        }
        Some(_) => {}
    }
    Ok(())
}
