//! Hears other nodes ask for an upload's lease (`db::lease_release`, PostgreSQL only) and
//! hands each request to the session holding that upload here, if any.

use std::time::{Duration, Instant};

use crate::db::lease_release::ReleaseListener;
use crate::db::DbError;
use crate::domain::UploadId;

use super::SessionRegistry;

/// How often the listening connection is read. The read does not wait (it takes what the
/// socket holds), so this is how late a request can be heard: a small share of the wait
/// the asking node allows (`uploads.lock_wait_ms`).
const POLL: Duration = Duration::from_millis(10);

/// How often the connection makes a round trip, so that one the server dropped is noticed.
const CHECK: Duration = Duration::from_secs(10);

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Listens on the PostgreSQL at `url` for as long as the sessions' arbiter runs, connecting
/// again (with backoff) whenever the connection fails.
pub async fn run_release_listener(url: String, sessions: SessionRegistry, log: slog::Logger) {
    let mut retry = FIRST_RETRY;
    loop {
        let connecting = url.clone();
        let connected = tokio::task::spawn_blocking(move || ReleaseListener::connect(&connecting))
            .await
            .unwrap_or_else(|e| Err(DbError::Unavailable(format!("connecting task: {e}"))));
        let failure = match connected {
            Ok(listener) => {
                retry = FIRST_RETRY;
                listen(listener, &sessions).await
            }
            Err(err) => err,
        };
        slog::warn!(log, "lease release listener lost its connection"; "error" => %failure, "retry_ms" => retry.as_millis());
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

async fn listen(mut listener: ReleaseListener, sessions: &SessionRegistry) -> DbError {
    let mut checked = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        match listener.received() {
            Ok(requests) => {
                for request in requests {
                    // Every node hears its own requests too: by the time this one is read, the
                    // asking request may have started the session that must keep the upload.
                    if request.asking == sessions.node_id() {
                        continue;
                    }
                    if let Ok(id) = UploadId::parse(&request.upload) {
                        sessions.release(&id);
                    }
                }
            }
            Err(err) => return err,
        }
        if checked.elapsed() >= CHECK {
            let checking = tokio::task::spawn_blocking(move || listener.check().map(|()| listener)).await;
            listener = match checking {
                Ok(Ok(listener)) => listener,
                Ok(Err(err)) => return err,
                Err(e) => return DbError::Unavailable(format!("check task: {e}")),
            };
            checked = Instant::now();
        }
    }
}
