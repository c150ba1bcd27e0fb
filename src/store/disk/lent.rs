//! An append's file lent to the request's pump (the disk store with fsync off): the HTTP
//! worker that reads the body writes each chunk into the page cache as it arrives, and the
//! session hears only how the body ended.
//!
//! Handed through the pipe instead, each chunk woke the sessions' thread, waited in the body
//! budget shared by every upload and was handed on again to a `hoist-io` thread; and because
//! it was still held while actix-http read on, the worker's read buffer was shared, so each
//! read started over in a fresh 8 KiB buffer that grew by copying (about one `memcpy` per
//! byte received). Written and dropped at once, the chunk leaves the buffer to be reused.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::FileAppend;
use crate::store::body::BodyChunk;
use crate::store::{BodyEnd, BodyEvent, BodyReceiver, DirectWrite, PipeClosed, StoreError};

/// Why the pump stopped storing before the body ended.
enum Stop {
    /// The next chunk would have gone past the bytes this append may take.
    TooLarge,
    Failed(std::io::Error),
}

#[derive(Default)]
struct Lent {
    /// There while lent.
    writer: Option<FileAppend>,
    /// Chunks that came through the pipe and are not written yet: they go first.
    backlog: Vec<BodyChunk>,
    /// Body bytes stored so far by this append, through the pipe and lent.
    queued: u64,
    max_bytes: u64,
    stopped: Option<Stop>,
}

#[derive(Default)]
pub(super) struct LentFile {
    lent: Mutex<Lent>,
}

impl LentFile {
    fn lock(&self) -> MutexGuard<'_, Lent> {
        // Every field is consistent at every unlock.
        self.lent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lends `writer` to `body`'s pump, with the `backlog` not yet written and the `queued`
    /// bytes (backlog included) of the `max_bytes` this append may take. Gives the writer
    /// and backlog back if a chunk is on its way through the pipe; None: lent.
    pub(super) fn lend(
        self: &Arc<Self>,
        body: &BodyReceiver,
        writer: FileAppend,
        backlog: Vec<BodyChunk>,
        queued: u64,
        max_bytes: u64,
    ) -> Option<(FileAppend, Vec<BodyChunk>)> {
        let Some(loan) = body.loan() else { return Some((writer, backlog)) };
        *self.lock() = Lent { writer: Some(writer), backlog, queued, max_bytes, stopped: None };
        loan.lend(self.clone());
        None
    }

    /// Waits for the body to end, takes the file back and tells how the body ended, with
    /// the backlog still to write.
    pub(super) async fn take_back_at_end(&self, body: &mut BodyReceiver) -> Result<Returned, StoreError> {
        let event = body.next().await;
        body.take_back();
        let mut lent = self.lock();
        let writer = lent.writer.take().ok_or_else(|| lost("the lent file was not there to take back"))?;
        let end = match (lent.stopped.take(), event) {
            (Some(Stop::Failed(err)), _) => return Err(StoreError::Io(err)),
            (Some(Stop::TooLarge), _) => BodyEnd::TooLarge,
            (None, BodyEvent::End) => BodyEnd::Complete,
            (None, BodyEvent::Failed) => BodyEnd::Interrupted,
            // `BodyReceiver::loan` lends only while no chunk is on its way.
            (None, BodyEvent::Data(_)) => return Err(lost("a chunk came through the pipe while the file was lent")),
        };
        Ok(Returned { writer, backlog: std::mem::take(&mut lent.backlog), end })
    }
}

/// A lent file taken back at the body's end.
pub(super) struct Returned {
    pub writer: FileAppend,
    pub backlog: Vec<BodyChunk>,
    pub end: BodyEnd,
}

fn lost(what: &str) -> StoreError {
    StoreError::Io(std::io::Error::other(what.to_owned()))
}

impl DirectWrite for LentFile {
    fn write(&self, chunk: &Bytes) -> Result<(), PipeClosed> {
        let mut lent = self.lock();
        let Lent { writer, backlog, queued, max_bytes, stopped } = &mut *lent;
        let (Some(writer), None) = (writer.as_mut(), stopped.as_ref()) else { return Err(PipeClosed) };
        let len = chunk.len() as u64;
        if *queued + len > *max_bytes {
            *stopped = Some(Stop::TooLarge);
            return Err(PipeClosed);
        }
        let written = writer.write(backlog).and_then(|()| {
            backlog.clear();
            writer.write(std::slice::from_ref(chunk))
        });
        match written {
            Ok(()) => {
                *queued += len;
                Ok(())
            }
            Err(err) => {
                *stopped = Some(Stop::Failed(err));
                Err(PipeClosed)
            }
        }
    }
}
