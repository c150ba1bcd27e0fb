//! Rate limits (token buckets per client, for requests and for body bytes) and per-subject
//! quotas on unfinished uploads. Over a limit: 429 with `Retry-After` and `RateLimit-*`.

mod bucket;
mod quota;

use std::sync::Arc;

pub use bucket::{Decision, KeyedBuckets, Standing};
pub use quota::admit_new_upload;

use crate::config::LimitSettings;

/// The process's buckets; None where a limit is off.
pub struct RateLimits {
    pub requests: Option<Arc<KeyedBuckets>>,
    pub body_bytes: Option<Arc<KeyedBuckets>>,
}

impl RateLimits {
    pub fn from_settings(limits: &LimitSettings) -> RateLimits {
        let buckets = |per_second: u64, burst: u64| {
            (per_second > 0).then(|| Arc::new(KeyedBuckets::new(per_second, burst, limits.tracked_clients)))
        };
        RateLimits {
            requests: buckets(limits.requests_per_second, limits.request_burst),
            body_bytes: buckets(limits.body_bytes_per_second, limits.body_bytes_burst),
        }
    }
}
