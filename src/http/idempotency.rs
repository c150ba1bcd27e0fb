//! `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): the first response to a
//! key is stored and replayed to retries of the same request; a different request with the
//! key gets 422, a retry while the first still runs gets 409, except a retried append, which
//! cuts the first (see [`idempotent_append`]). Keys are per caller.

use std::future::Future;
use std::time::Duration;

use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::db::idempotency::{self, Begin};
use crate::db::models::StoredResponse;
use crate::db::DbError;
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::http::headers;
use crate::http::tus::owned_live_upload;
use crate::state::AppState;

/// Headers that make two requests "the same request" for replay purposes.
const FINGERPRINT_HEADERS: &[&str] = &[
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Concat",
    "Upload-Checksum",
    "Content-Length",
];

/// More of them for requests of the IETF draft, hashed only for those so that the
/// fingerprints of tus requests stored before the draft was served still match.
const DRAFT_FINGERPRINT_HEADERS: &[&str] =
    &["Upload-Draft-Interop-Version", "Upload-Complete", "Upload-Incomplete", "Content-Type"];

fn parse_key(raw: &str) -> Result<String, ApiError> {
    // An sf-string is quoted; many clients send the bare token.
    let key = raw.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(raw);
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key is 1 to 255 visible ASCII characters",
        ));
    }
    Ok(key.to_owned())
}

fn fingerprint(req: &HttpRequest) -> String {
    let mut hash = Sha256::new();
    hash.update(req.method().as_str());
    hash.update([0]);
    hash.update(req.path());
    for name in FINGERPRINT_HEADERS {
        hash.update([0]);
        if let Some(value) = req.headers().get(*name) {
            hash.update(value.as_bytes());
        }
    }
    if req.headers().contains_key(crate::http::resumable::INTEROP_HEADER) {
        for name in DRAFT_FINGERPRINT_HEADERS {
            hash.update([0]);
            if let Some(value) = req.headers().get(*name) {
                hash.update(value.as_bytes());
            }
        }
    }
    format!("{:x}", hash.finalize())
}

/// Releases an unfinished key if the request is dropped midway, so a retry can run.
struct KeyGuard {
    state: Option<(crate::db::Repo, String, String)>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        if let Some((repo, scope, key)) = self.state.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn_blocking(move || repo.run_blocking(|conn| idempotency::abandon(conn, &scope, &key)));
            }
        }
    }
}

/// Server-side failures are logged with their cause (the client sees only the code) and the
/// request id, which ties the line to the request's own.
fn log_failure(state: &AppState, req: &HttpRequest, err: &ApiError) -> StoredResponse {
    if matches!(err, ApiError::Internal(_) | ApiError::Unavailable(_)) {
        let extensions = req.extensions();
        let request_id = extensions.get::<crate::telemetry::RequestId>().map(|id| id.0.as_str());
        slog::error!(state.log, "request failed";
            "code" => err.code(), "cause" => ?err, "request_id" => request_id);
    }
    err.to_stored()
}

pub async fn idempotent<F, Fut>(state: &AppState, req: &HttpRequest, caller: &Caller, run: F) -> HttpResponse
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<StoredResponse, ApiError>>,
{
    idempotent_cutting(state, req, caller, None, run).await
}

/// [`idempotent`] for an append to the upload at `path`. A client retries an append once it
/// gave up on the first try, which a half-open connection can keep running on the server until
/// `server.body_idle_timeout_secs`: rather than 409 until then, the retry cuts it, as any new
/// request of the upload's owner does (`uploads.cut_abandoned_requests`), and answers with its
/// stored response, which gives the offset the cut request reached.
pub async fn idempotent_append<F, Fut>(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    path: &str,
    run: F,
) -> HttpResponse
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<StoredResponse, ApiError>>,
{
    idempotent_cutting(state, req, caller, UploadId::parse(path).ok(), run).await
}

/// How often a retry that cut the first request looks for the response it stored.
const STORED_POLL: Duration = Duration::from_millis(10);

/// One request's claim on an idempotency key.
struct KeyClaim {
    scope: String,
    key: String,
    fingerprint: String,
    expires_at: chrono::NaiveDateTime,
}

impl KeyClaim {
    async fn begin(&self, state: &AppState) -> Result<Begin, DbError> {
        let KeyClaim { scope, key, fingerprint, expires_at } = self;
        let (scope, key, fingerprint, expires_at) = (scope.clone(), key.clone(), fingerprint.clone(), *expires_at);
        state.repo.run(move |conn| idempotency::begin(conn, &scope, &key, &fingerprint, expires_at)).await
    }

    /// Cuts what the caller still streams into upload `id`, then waits (up to
    /// `uploads.lock_wait_ms`) until the first request with this key has stored its answer
    /// or given the key up; still in flight if nothing was cut.
    async fn begin_after_cut(&self, state: &AppState, caller: &Caller, id: &UploadId) -> Result<Begin, DbError> {
        let Ok(row) = owned_live_upload(state, caller, id).await else { return Ok(Begin::InFlight) };
        if !state.sessions.interrupt(id, &row).await {
            return Ok(Begin::InFlight);
        }
        // The cut request stores its answer just after its session has settled it.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(state.settings.uploads.lock_wait_ms);
        loop {
            let begun = self.begin(state).await?;
            if !matches!(begun, Begin::InFlight) || tokio::time::Instant::now() >= deadline {
                return Ok(begun);
            }
            tokio::time::sleep(STORED_POLL).await;
        }
    }
}

async fn idempotent_cutting<F, Fut>(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    cut: Option<UploadId>,
    run: F,
) -> HttpResponse
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<StoredResponse, ApiError>>,
{
    let raw_key = match headers::optional(req, "Idempotency-Key") {
        Ok(raw) => raw,
        Err(err) => return err.to_stored().into_response(),
    };
    let Some(raw_key) = raw_key else {
        return run().await.unwrap_or_else(|err| log_failure(state, req, &err)).into_response();
    };
    let key = match parse_key(raw_key) {
        Ok(key) => key,
        Err(err) => return err.to_stored().into_response(),
    };
    let ttl = chrono::Duration::seconds(i64::try_from(state.settings.idempotency.ttl_secs).unwrap_or(86400));
    let claim = KeyClaim {
        scope: caller.subject.clone(),
        key,
        fingerprint: fingerprint(req),
        expires_at: (Utc::now() + ttl).naive_utc(),
    };
    let begun = match (claim.begin(state).await, &cut) {
        (Ok(Begin::InFlight), Some(id)) => claim.begin_after_cut(state, caller, id).await,
        (begun, _) => begun,
    };
    let KeyClaim { scope, key, .. } = claim;
    match begun {
        Err(err) => return log_failure(state, req, &ApiError::from(err)).into_response(),
        Ok(Begin::Replay(stored)) => {
            let mut response = stored.into_response();
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
                actix_web::http::header::HeaderValue::from_static("true"),
            );
            return response;
        }
        Ok(Begin::InFlight) => return ApiError::IdempotencyInFlight.to_stored().into_response(),
        Ok(Begin::FingerprintMismatch) => return ApiError::IdempotencyKeyReused.to_stored().into_response(),
        Ok(Begin::Started) => {}
    }
    let mut guard = KeyGuard { state: Some((state.repo.clone(), scope.clone(), key.clone())) };
    let outcome = run().await;
    if let Err(err) = &outcome {
        log_failure(state, req, err);
    }
    let stored = match &outcome {
        Ok(stored) => Some(stored.clone()),
        // A transient failure is not an answer: free the key so the retry runs.
        Err(err) if err.is_transient() => None,
        Err(err) => Some(err.to_stored()),
    };
    if let Some(stored) = stored {
        guard.state = None;
        let (s, k) = (scope, key);
        if let Err(err) = state.repo.run(move |conn| idempotency::finish(conn, &s, &k, &stored)).await {
            slog::warn!(state.log, "could not store idempotent response"; "error" => %err);
        }
    }
    drop(guard);
    outcome.unwrap_or_else(|err| err.to_stored()).into_response()
}
