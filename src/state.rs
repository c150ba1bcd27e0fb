use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::auth::JwtKeys;
use crate::cache::UploadCache;
use crate::config::Settings;
use crate::db::models::UploadRow;
use crate::db::{uploads, Repo};
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::http::signed_url::UrlSigner;
use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::session::SessionRegistry;
use crate::store::Store;

/// Everything a handler reaches; one per process, shared by all workers.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub repo: Repo,
    pub store: Arc<Store>,
    pub cache: UploadCache,
    pub sessions: SessionRegistry,
    pub keys: JwtKeys,
    pub signer: UrlSigner,
    pub limits: RateLimits,
    pub log: slog::Logger,
    pub metrics: Arc<Metrics>,
    pub shutting_down: AtomicBool,
}

impl AppState {
    /// The upload behind HEAD and each request's checks: cache first, then the database.
    pub async fn load_upload(&self, id: &UploadId) -> Result<Arc<UploadRow>, ApiError> {
        if let Some(row) = self.cache.get(id.as_str()) {
            self.metrics.cache_hits.inc();
            return Ok(row);
        }
        self.metrics.cache_misses.inc();
        let key = id.to_string();
        let row = self.repo.read_by_key(move |conn| uploads::find(conn, &key)).await?.ok_or(ApiError::NotFound)?;
        Ok(self.cache.put_if_settled(row))
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
