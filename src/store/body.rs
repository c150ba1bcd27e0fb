//! The pipe between a request body and the writer that stores it. The HTTP handler pumps
//! chunks in; the upload session drains them. A closed pipe without `End` means the client
//! (or the handler) went away: what arrived is still kept.

use bytes::Bytes;
use tokio::sync::mpsc;

#[derive(Debug)]
pub enum BodyEvent {
    Data(Bytes),
    /// The body ended normally.
    End,
    /// The body broke (client disconnect, read timeout).
    Failed,
}

pub type BodySender = mpsc::Sender<BodyEvent>;

pub struct BodyReceiver(mpsc::Receiver<BodyEvent>);

/// A bounded pipe: at most `depth` chunks wait, so memory per upload stays small.
pub fn body_channel(depth: usize) -> (BodySender, BodyReceiver) {
    let (tx, rx) = mpsc::channel(depth);
    (tx, BodyReceiver(rx))
}

impl BodyReceiver {
    /// The next event; a sender dropped without `End` reads as `Failed`.
    pub async fn next(&mut self) -> BodyEvent {
        self.0.recv().await.unwrap_or(BodyEvent::Failed)
    }

    /// A body that is already over (creation without data).
    pub fn empty() -> BodyReceiver {
        let (tx, rx) = body_channel(1);
        let _ = tx.try_send(BodyEvent::End);
        rx
    }
}
