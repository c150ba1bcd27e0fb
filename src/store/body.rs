//! The pipe between a request body and the writer that stores it. The HTTP handler pumps
//! chunks in; the upload session drains them. A closed pipe without `End` means the client
//! (or the handler) went away: what arrived is still kept.
//!
//! Memory is bounded twice: each pipe holds a few chunks, and every chunk in any pipe (or in
//! a writer's batch) holds its size from one [`BodyBudget`] shared by all uploads. With many
//! uploads at once the budget is what binds: a pump that would go past it waits, and while it
//! waits its socket is not read, so TCP pushes back on the client instead of the server
//! buffering whole bodies.

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use prometheus::IntCounter;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

/// Request-body bytes that may be held in memory by all uploads together.
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total: u32,
    /// Pumps waiting for room right now.
    waiting: AtomicUsize,
    /// Woken when a pump starts waiting, so writers holding a partial batch store it.
    pressure: Notify,
    /// Counts the chunks that had to wait for room (`hoist_body_budget_waits_total`).
    waits: Option<IntCounter>,
}

impl BodyBudget {
    pub fn new(bytes: u64) -> Arc<BodyBudget> {
        BodyBudget::build(bytes, None)
    }

    /// A budget that counts in `waits` every chunk that waits for room: how often it binds.
    pub fn counting_waits(bytes: u64, waits: IntCounter) -> Arc<BodyBudget> {
        BodyBudget::build(bytes, Some(waits))
    }

    fn build(bytes: u64, waits: Option<IntCounter>) -> Arc<BodyBudget> {
        // Semaphore grants are u32; a budget past 4 GiB is no budget on any real machine.
        let total = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        Arc::new(BodyBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            waiting: AtomicUsize::new(0),
            pressure: Notify::new(),
            waits,
        })
    }

    /// Bytes held now, for the metrics.
    pub fn held(&self) -> u64 {
        u64::from(self.total).saturating_sub(self.permits.available_permits() as u64)
    }

    /// Waits until `len` bytes fit (a chunk larger than the whole budget waits for all of it).
    async fn hold(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        let wanted = u32::try_from(len).unwrap_or(u32::MAX).min(self.total);
        if wanted == 0 {
            return None;
        }
        if let Ok(permit) = self.permits.clone().try_acquire_many_owned(wanted) {
            return Some(permit);
        }
        if let Some(waits) = &self.waits {
            waits.inc();
        }
        let _waiting = Waiting::start(self);
        self.pressure.notify_waiters();
        // The semaphore is never closed, so this only fails if that changes; then the chunk
        // simply goes uncounted.
        self.permits.clone().acquire_many_owned(wanted).await.ok()
    }

    fn pressed(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Resolves once some pump is waiting for room.
    async fn pressed_wait(&self) {
        loop {
            let notified = self.pressure.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pressed() {
                return;
            }
            notified.await;
        }
    }
}

/// Counts one waiting pump for as long as it waits (also when its request is dropped).
struct Waiting<'a>(&'a BodyBudget);

impl<'a> Waiting<'a> {
    fn start(budget: &'a BodyBudget) -> Self {
        budget.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(budget)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Body bytes with their share of the budget, given back when the chunk is dropped (once
/// the writer stored it).
#[derive(Debug)]
pub struct BodyChunk {
    bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

impl Deref for BodyChunk {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        &self.bytes
    }
}

#[derive(Debug)]
pub enum BodyEvent {
    Data(BodyChunk),
    /// The body ended normally.
    End,
    /// The body broke (client disconnect, read timeout).
    Failed,
}

/// The pipe is closed: the writer stopped (it has its answer already).
#[derive(Debug)]
pub struct PipeClosed;

pub struct BodySender {
    tx: mpsc::Sender<BodyEvent>,
    budget: Arc<BodyBudget>,
}

impl BodySender {
    /// Sends a chunk once it fits in the budget and the pipe.
    pub async fn send_data(&self, bytes: Bytes) -> Result<(), PipeClosed> {
        let held = self.budget.hold(bytes.len()).await;
        self.tx.send(BodyEvent::Data(BodyChunk { bytes, _held: held })).await.map_err(|_| PipeClosed)
    }

    /// Ends the body: `complete` false means it broke.
    pub async fn end(&self, complete: bool) {
        let _ = self.tx.send(if complete { BodyEvent::End } else { BodyEvent::Failed }).await;
    }
}

pub struct BodyReceiver {
    rx: mpsc::Receiver<BodyEvent>,
    budget: Arc<BodyBudget>,
}

/// A bounded pipe: at most `depth` chunks wait, each counted against `budget`.
pub fn body_channel(depth: usize, budget: Arc<BodyBudget>) -> (BodySender, BodyReceiver) {
    let (tx, rx) = mpsc::channel(depth);
    (BodySender { tx, budget: budget.clone() }, BodyReceiver { rx, budget })
}

/// What a writer holding a partial batch learns from [`BodyReceiver::next_or_store`].
pub enum Next {
    Event(BodyEvent),
    /// Other bodies are waiting for memory: store the batch now rather than wait for more.
    StoreNow,
}

impl BodyReceiver {
    /// The next event; a sender dropped without `End` reads as `Failed`.
    pub async fn next(&mut self) -> BodyEvent {
        self.rx.recv().await.unwrap_or(BodyEvent::Failed)
    }

    /// The next event, or `StoreNow` when nothing is ready and some pump waits for room: a
    /// writer that sat on its partial batch then could keep every pump waiting for ever.
    pub async fn next_or_store(&mut self) -> Next {
        if self.budget.pressed() {
            return match self.rx.try_recv() {
                Ok(event) => Next::Event(event),
                Err(mpsc::error::TryRecvError::Empty) => Next::StoreNow,
                Err(mpsc::error::TryRecvError::Disconnected) => Next::Event(BodyEvent::Failed),
            };
        }
        let budget = self.budget.clone();
        tokio::select! {
            biased;
            event = self.rx.recv() => Next::Event(event.unwrap_or(BodyEvent::Failed)),
            () = budget.pressed_wait() => Next::StoreNow,
        }
    }

    /// A body that is already over (creation without data).
    pub fn empty() -> BodyReceiver {
        let (tx, rx) = body_channel(1, BodyBudget::new(0));
        let _ = tx.tx.try_send(BodyEvent::End);
        rx
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_pump_past_the_budget_waits_until_the_writer_stores_what_it_holds() {
        let budget = BodyBudget::new(100);
        let (tx, mut rx) = body_channel(16, budget.clone());
        tx.send_data(Bytes::from(vec![1u8; 60])).await.expect("first chunk fits");
        assert_eq!(budget.held(), 60);

        let second = tokio::spawn(async move {
            tx.send_data(Bytes::from(vec![2u8; 60])).await.expect("second chunk");
            tx
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "160 bytes do not fit in a budget of 100");

        // A writer with nothing ready is told to store its batch while a pump waits.
        let BodyEvent::Data(first) = rx.next().await else { panic!("expected data") };
        assert!(matches!(rx.next_or_store().await, Next::StoreNow));
        drop(first);
        let tx = tokio::time::timeout(Duration::from_secs(5), second).await.expect("pump resumed").expect("task");
        assert_eq!(budget.held(), 60);
        let BodyEvent::Data(chunk) = rx.next().await else { panic!("expected data") };
        assert_eq!(&chunk[..], &[2u8; 60][..]);
        drop(chunk);
        assert_eq!(budget.held(), 0);
        tx.end(true).await;
        assert!(matches!(rx.next().await, BodyEvent::End));
    }

    #[tokio::test]
    async fn a_chunk_larger_than_the_whole_budget_still_goes_through_alone() {
        let budget = BodyBudget::new(10);
        let (tx, mut rx) = body_channel(4, budget.clone());
        tx.send_data(Bytes::from(vec![7u8; 25])).await.expect("oversized chunk");
        assert_eq!(budget.held(), 10);
        let BodyEvent::Data(chunk) = rx.next().await else { panic!("expected data") };
        assert_eq!(chunk.len(), 25);
        drop(chunk);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn without_pressure_a_writer_waits_for_the_next_event() {
        let (tx, mut rx) = body_channel(4, BodyBudget::new(1024));
        let waiter = tokio::spawn(async move { matches!(rx.next_or_store().await, Next::Event(BodyEvent::End)) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        tx.end(true).await;
        assert!(waiter.await.expect("task"));
    }
}
