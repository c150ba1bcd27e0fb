use tokio::sync::oneshot;

use super::append::AppendRequest;
use crate::db::models::UploadRow;
use crate::error::ApiError;

pub enum JobKind {
    Append(AppendRequest),
    Terminate,
}

/// A unit of work for a session. `started` fires when the session begins it (so the
/// requester can stop waiting for the lock and start pumping the body), `done` with its
/// result.
pub struct Job {
    pub kind: JobKind,
    pub started: oneshot::Sender<()>,
    pub done: oneshot::Sender<Result<UploadRow, ApiError>>,
}

impl Job {
    /// The requester gave up waiting (lock wait timed out).
    pub fn abandoned(&self) -> bool {
        self.started.is_closed()
    }
}
