//! The pipe between a request body and the writer that stores it. The HTTP handler pumps
//! chunks in; the upload session drains them. A closed pipe without `End` means the client
//! (or the handler) went away: what arrived is still kept.
//!
//! Memory is bounded twice: each pipe holds a few chunks, and every chunk in any pipe (or in
//! a writer's batch) holds its size from one [`BodyBudget`] shared by all uploads. With many
//! uploads at once the budget is what binds: a pump that would go past it waits, and while it
//! waits its socket is not read, so TCP pushes back on the client instead of the server
//! buffering whole bodies.
//!
//! A writer whose stores cost no device wait (the disk store with fsync off) can instead lend
//! the pump a [`DirectWrite`] once the pipe is empty: from then on each chunk is stored on the
//! pump's own thread as it arrives, and only the body's end travels through the pipe.

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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

impl AsRef<[u8]> for BodyChunk {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
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

/// Stores chunks for the writer on the pump's thread, while the writer has lent it.
pub trait DirectWrite: Send + Sync {
    /// Stores `chunk` after every chunk before it; `Err`: the writer takes no more (it
    /// learns why when it takes its writer back), and the pump stops.
    fn write(&self, chunk: &Bytes) -> Result<(), PipeClosed>;
}

/// What the two ends of a pipe share about lending.
#[derive(Default)]
struct Lending {
    /// Chunks sent (or being sent) through the pipe that the writer has not yet received: a
    /// writer lent while one is on its way would store the next before it. A chunk waiting
    /// for room in the budget is not counted: it checks for a loan once it has room.
    in_pipe: usize,
    lent: Option<Arc<dyn DirectWrite>>,
}

#[derive(Default)]
struct Shared {
    lending: Mutex<Lending>,
    /// Woken when the writer lends: a pump waiting for room in the budget stops waiting.
    lent: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Lending> {
        // Every field is consistent at every unlock; a panic elsewhere leaves nothing half-done.
        self.lending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct BodySender {
    tx: mpsc::Sender<BodyEvent>,
    budget: Arc<BodyBudget>,
    shared: Arc<Shared>,
}

impl BodySender {
    /// Stores a chunk through the writer's lent [`DirectWrite`] if it has lent one, else
    /// sends it once it fits in the budget and the pipe.
    pub async fn send_data(&self, bytes: Bytes) -> Result<(), PipeClosed> {
        let held = loop {
            let lent = self.shared.lent.notified();
            tokio::pin!(lent);
            // Registered before the check, so a loan made right after it still wakes us.
            lent.as_mut().enable();
            if let Some(direct) = &self.shared.lock().lent {
                // Under the lock, so the writer cannot take it back mid-chunk.
                return direct.write(&bytes);
            }
            tokio::select! {
                held = self.budget.hold(bytes.len()) => break held,
                // Lent meanwhile (the writer had room to store what waited): store it that way.
                () = lent => continue,
            }
        };
        {
            let mut lending = self.shared.lock();
            if let Some(direct) = &lending.lent {
                return direct.write(&bytes);
            }
            lending.in_pipe += 1;
        }
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
    shared: Arc<Shared>,
}

/// A bounded pipe: at most `depth` chunks wait, each counted against `budget`.
pub fn body_channel(depth: usize, budget: Arc<BodyBudget>) -> (BodySender, BodyReceiver) {
    let (tx, rx) = mpsc::channel(depth);
    let shared = Arc::new(Shared::default());
    (BodySender { tx, budget: budget.clone(), shared: shared.clone() }, BodyReceiver { rx, budget, shared })
}

/// A loan about to be made: see [`BodyReceiver::loan`].
pub struct Loan<'a> {
    lending: MutexGuard<'a, Lending>,
    shared: &'a Shared,
}

impl Loan<'_> {
    /// Lends `direct` to the pump: every chunk from now on is stored through it, in order,
    /// and only the body's end comes through the pipe; [`BodyReceiver::take_back`] ends it.
    pub fn lend(mut self, direct: Arc<dyn DirectWrite>) {
        self.lending.lent = Some(direct);
        drop(self.lending);
        self.shared.lent.notify_waiters();
    }
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
        let event = self.rx.recv().await.unwrap_or(BodyEvent::Failed);
        self.received(&event);
        event
    }

    fn received(&self, event: &BodyEvent) {
        if matches!(event, BodyEvent::Data(_)) {
            let mut lending = self.shared.lock();
            lending.in_pipe = lending.in_pipe.saturating_sub(1);
        }
    }

    /// Readies a loan if no chunk is on its way through the pipe (None if one is: receive
    /// it, then try again). Until the [`Loan`] is used or dropped, the pump waits before
    /// its next chunk.
    pub fn loan(&self) -> Option<Loan<'_>> {
        let lending = self.shared.lock();
        (lending.in_pipe == 0).then_some(Loan { lending, shared: &self.shared })
    }

    /// Ends a loan: once this returns, the pump stores nothing more through it (a chunk
    /// being stored is finished first).
    pub fn take_back(&self) {
        self.shared.lock().lent = None;
    }

    /// The next event, or `StoreNow` when nothing is ready and some pump waits for room: a
    /// writer that sat on its partial batch then could keep every pump waiting for ever.
    pub async fn next_or_store(&mut self) -> Next {
        if self.budget.pressed() {
            return match self.rx.try_recv() {
                Ok(event) => {
                    self.received(&event);
                    Next::Event(event)
                }
                Err(mpsc::error::TryRecvError::Empty) => Next::StoreNow,
                Err(mpsc::error::TryRecvError::Disconnected) => Next::Event(BodyEvent::Failed),
            };
        }
        let budget = self.budget.clone();
        let next = tokio::select! {
            biased;
            event = self.rx.recv() => Next::Event(event.unwrap_or(BodyEvent::Failed)),
            () = budget.pressed_wait() => Next::StoreNow,
        };
        if let Next::Event(event) = &next {
            self.received(event);
        }
        next
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

    /// Keeps what a lent pump stores, to compare with what went through the pipe.
    #[derive(Default)]
    struct Kept(std::sync::Mutex<Vec<u8>>);

    impl DirectWrite for Kept {
        fn write(&self, chunk: &Bytes) -> Result<(), PipeClosed> {
            self.0.lock().expect("kept").extend_from_slice(chunk);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_loan_waits_until_no_chunk_is_on_its_way_and_lasts_until_taken_back() {
        let (tx, mut rx) = body_channel(4, BodyBudget::new(1024));
        tx.send_data(Bytes::from_static(b"first")).await.expect("pipe open");
        assert!(rx.loan().is_none(), "the first chunk is still in the pipe: a loan would store the next before it");

        let first = rx.next().await;
        assert!(matches!(&first, BodyEvent::Data(chunk) if &chunk[..] == b"first"));
        let kept = Arc::new(Kept::default());
        rx.loan().expect("nothing on its way").lend(kept.clone());
        tx.send_data(Bytes::from_static(b"second")).await.expect("stored through the loan");
        assert_eq!(&kept.0.lock().expect("kept")[..], b"second");

        rx.take_back();
        tx.send_data(Bytes::from_static(b"third")).await.expect("pipe open");
        assert!(matches!(rx.next().await, BodyEvent::Data(chunk) if &chunk[..] == b"third"));
        assert_eq!(&kept.0.lock().expect("kept")[..], b"second", "nothing goes through a loan taken back");
    }

    #[tokio::test]
    async fn a_pump_waiting_for_room_stores_through_a_loan_made_meanwhile() {
        let budget = BodyBudget::new(100);
        let (tx, mut rx) = body_channel(16, budget.clone());
        tx.send_data(Bytes::from(vec![1u8; 60])).await.expect("first chunk fits");
        let second = tokio::spawn(async move {
            tx.send_data(Bytes::from(vec![2u8; 60])).await.expect("second chunk");
            tx
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "160 bytes do not fit in a budget of 100");

        // The writer keeps the first chunk (and its room) and lends: the waiting pump must
        // not wait for room any longer, or a writer whose backlog holds the budget would
        // wait on a pump that waits on it.
        let backlog = rx.next().await;
        let kept = Arc::new(Kept::default());
        rx.loan().expect("the waiting chunk is not on its way yet").lend(kept.clone());
        let tx = tokio::time::timeout(Duration::from_secs(5), second).await.expect("pump went on").expect("task");
        assert_eq!(&kept.0.lock().expect("kept")[..], &[2u8; 60][..]);
        assert_eq!(budget.held(), 60, "only the first chunk holds room");
        drop(backlog);
        tx.end(true).await;
        assert!(matches!(rx.next().await, BodyEvent::End));
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
