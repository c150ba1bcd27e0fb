//! A count of work not yet finished, and a wait until there is none: a session's jobs (what a
//! request that cut an earlier one waits for, see `SessionRegistry::interrupt`) and the
//! writes running on every session (what shutdown waits for).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Pending {
    count: AtomicUsize,
    /// Woken each time the count falls to zero.
    settled: Notify,
}

impl Pending {
    /// Counts one in; true if none was pending.
    pub fn add(&self) -> bool {
        self.count.fetch_add(1, Ordering::SeqCst) == 0
    }

    /// Counts one out, waking whoever waits for none to be pending.
    pub fn finish(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.settled.notify_waiters();
        }
    }

    pub fn pending(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns once none is pending, or after `limit`; true if none is.
    pub async fn settled_within(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before the count is read, so a finish in between still wakes it.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return self.pending() == 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_when_the_last_one_finishes_not_before() {
        let jobs = Arc::new(Pending::default());
        assert!(jobs.add());
        assert!(!jobs.add());
        let waiter = tokio::spawn({
            let jobs = jobs.clone();
            async move { jobs.settled_within(Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        jobs.finish();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "woke with a job still pending");
        jobs.finish();
        let settled = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(settled.expect("woken by the last finish, long before its limit").expect("waiter"));
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_its_limit() {
        let jobs = Pending::default();
        jobs.add();
        assert!(!jobs.settled_within(Duration::from_millis(30)).await);
        jobs.finish();
        assert!(jobs.settled_within(Duration::from_millis(30)).await);
    }
}
