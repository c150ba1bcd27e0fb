//! moka in front of the upload lookups behind HEAD and each PATCH's checks.
//!
//! Coherence rule: an *open* upload is cached only by the session that holds its lease
//! (the only writer), which replaces the entry after every commit and drops it when it
//! stops. Other readers cache only finished rows (complete or gone), which no longer move.
//! So a HEAD right after a PATCH never sees a stale offset.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use crate::db::models::{UploadRow, UploadState};

#[derive(Clone)]
pub struct UploadCache {
    inner: Cache<String, Arc<UploadRow>>,
}

impl UploadCache {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        UploadCache { inner: Cache::builder().max_capacity(capacity).time_to_live(ttl).build() }
    }

    pub fn get(&self, id: &str) -> Option<Arc<UploadRow>> {
        self.inner.get(id)
    }

    /// From a session holding the lease: any state.
    pub fn put_from_session(&self, row: UploadRow) -> Arc<UploadRow> {
        let row = Arc::new(row);
        self.inner.insert(row.id.clone(), row.clone());
        row
    }

    /// From a reader: only rows that can no longer change offset.
    pub fn put_if_settled(&self, row: UploadRow) -> Arc<UploadRow> {
        let row = Arc::new(row);
        if row.state() != UploadState::Open {
            self.inner.insert(row.id.clone(), row.clone());
        }
        row
    }

    pub fn invalidate(&self, id: &str) {
        self.inner.invalidate(id);
    }
}
