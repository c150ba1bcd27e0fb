use tokio::sync::oneshot;

use super::append::AppendRequest;
use crate::db::models::UploadRow;
use crate::error::ApiError;

pub enum JobKind {
    Append(AppendRequest),
    Terminate,
}

/// A unit of work for a session. `started` fires when the session begins it (so a
/// requester queued behind another job can stop waiting for the lock and start pumping the
/// body; one that found the session idle does not wait for it), `done` with its result.
pub struct Job {
    pub kind: JobKind,
    pub started: oneshot::Sender<()>,
    pub done: oneshot::Sender<Result<UploadRow, ApiError>>,
}

impl Job {
    /// The requester went away: it gave up waiting (lock wait timed out) or its request was
    /// dropped.
    pub fn abandoned(&self) -> bool {
        self.started.is_closed()
    }
}
