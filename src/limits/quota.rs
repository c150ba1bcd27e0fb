//! Per-subject quotas, checked when an upload is created. They count what the database
//! holds, so they hold across every replica.

use std::time::Duration;

use crate::auth::Caller;
use crate::db::uploads;
use crate::error::ApiError;
use crate::state::AppState;

/// A client over a quota can only wait for its uploads to finish or expire.
const QUOTA_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Refuses a new upload of `length` bytes (None: deferred) that would take the caller over
/// its quotas: the size of one upload, the number of unfinished uploads, and the bytes
/// declared but not yet received across them. Admins are exempt.
pub async fn admit_new_upload(state: &AppState, caller: &Caller, length: Option<u64>) -> Result<(), ApiError> {
    let limits = &state.settings.limits;
    if caller.is_admin() {
        return Ok(());
    }
    if let Some(length) = length.filter(|l| limits.max_upload_size > 0 && *l > limits.max_upload_size) {
        return Err(ApiError::TooLarge {
            code: "upload_too_large",
            message: format!("{length} bytes exceeds this account's upload size limit of {}", limits.max_upload_size),
        });
    }
    if limits.max_open_uploads == 0 && limits.max_open_bytes == 0 {
        return Ok(());
    }
    let owner = caller.subject.clone();
    // One more row than the limit is enough to know it is reached.
    let scan = limits.max_open_uploads.max(1).saturating_add(1).min(1_000_000) as i64;
    let open = if limits.max_open_uploads > 0 && limits.max_open_bytes == 0 {
        state.repo.read(move |conn| uploads::open_remaining(conn, &owner, Some(scan))).await?
    } else {
        state.repo.read(move |conn| uploads::open_remaining(conn, &owner, None)).await?
    };
    if limits.max_open_uploads > 0 && open.len() as u64 >= limits.max_open_uploads {
        state.metrics.rate_limited.with_label_values(&["open_uploads"]).inc();
        return Err(ApiError::TooManyRequests {
            code: "quota_exceeded",
            message: format!("at most {} unfinished uploads per account", limits.max_open_uploads),
            limit: limits.max_open_uploads,
            remaining: 0,
            retry_after: QUOTA_RETRY_AFTER,
            reset: QUOTA_RETRY_AFTER,
        });
    }
    let outstanding: u64 = open.iter().sum();
    let wanted = outstanding.saturating_add(length.unwrap_or(0));
    if limits.max_open_bytes > 0 && wanted > limits.max_open_bytes {
        state.metrics.rate_limited.with_label_values(&["open_bytes"]).inc();
        return Err(ApiError::TooManyRequests {
            code: "quota_exceeded",
            message: format!(
                "unfinished uploads may declare at most {} bytes not yet received per account; {outstanding} are",
                limits.max_open_bytes
            ),
            limit: limits.max_open_bytes,
            remaining: limits.max_open_bytes.saturating_sub(outstanding),
            retry_after: QUOTA_RETRY_AFTER,
            reset: QUOTA_RETRY_AFTER,
        });
    }
    Ok(())
}
