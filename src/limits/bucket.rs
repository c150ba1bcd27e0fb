//! Token buckets, one per client key, kept in a bounded cache. A bucket left idle long
//! enough to refill completely is dropped: a fresh bucket is full, so forgetting it changes
//! nothing, and memory stays bounded by the clients active in the last refill period.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Never ask a client to come back sooner than this.
const MIN_RETRY: Duration = Duration::from_millis(1);

/// What a client has left after a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// The bucket's size (the `RateLimit-Limit`).
    pub limit: u64,
    /// Whole tokens left now.
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allowed(Standing),
    /// Retry after this long.
    Denied {
        standing: Standing,
        retry_after: Duration,
    },
}

#[derive(Debug)]
struct Level {
    tokens: f64,
    at: Instant,
}

pub struct KeyedBuckets {
    per_second: f64,
    burst: f64,
    levels: Cache<String, Arc<Mutex<Level>>>,
}

impl KeyedBuckets {
    /// `per_second` tokens flow in, up to `burst` (at least one second's worth).
    pub fn new(per_second: u64, burst: u64, tracked_clients: u64) -> KeyedBuckets {
        let per_second = per_second.max(1) as f64;
        let burst = (burst as f64).max(per_second);
        let refill = Duration::from_secs_f64(burst / per_second) + Duration::from_secs(1);
        KeyedBuckets {
            per_second,
            burst,
            levels: Cache::builder().max_capacity(tracked_clients.max(1)).time_to_idle(refill).build(),
        }
    }

    /// Takes one token if a whole one is there.
    pub fn take_one(&self, key: &str) -> Decision {
        self.with_level(key, |level| {
            if level.tokens >= 1.0 {
                level.tokens -= 1.0;
                Decision::Allowed(self.standing(level))
            } else {
                let retry_after = Duration::from_secs_f64((1.0 - level.tokens) / self.per_second);
                Decision::Denied { standing: self.standing(level), retry_after: retry_after.max(MIN_RETRY) }
            }
        })
    }

    /// Whether a new body may start: the bucket holds at least a chunk's worth of tokens
    /// (64 KiB, or a quarter of the burst if that is less), checked without taking any.
    ///
    /// Not merely "more than zero": a body being paced at the limit brings the bucket back to
    /// zero after each chunk and then refills it for as long as the next chunk takes to come,
    /// so a bucket that was being drained still held a few hundred bytes at odd moments, and
    /// a second body could slip in beside the first one (seen as a flaky API test).
    pub fn check_room(&self, key: &str) -> Decision {
        let floor = (64.0 * 1024.0_f64).min(self.burst / 4.0).max(1.0);
        self.with_level(key, |level| {
            if level.tokens >= floor {
                Decision::Allowed(self.standing(level))
            } else {
                let retry_after = Duration::from_secs_f64((floor - level.tokens) / self.per_second);
                Decision::Denied { standing: self.standing(level), retry_after: retry_after.max(MIN_RETRY) }
            }
        })
    }

    /// Takes `amount` tokens even if that leaves the bucket in debt, and says how long the
    /// caller should pause so that the debt is paid before it goes on: a body larger than
    /// the burst is paced, not refused.
    pub fn take_paced(&self, key: &str, amount: u64) -> Duration {
        self.with_level(key, |level| {
            level.tokens -= amount as f64;
            if level.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-level.tokens / self.per_second)
            }
        })
    }

    fn with_level<T>(&self, key: &str, decide: impl FnOnce(&mut Level) -> T) -> T {
        let now = Instant::now();
        let burst = self.burst;
        let shared = self.levels.get_with_by_ref(key, || Arc::new(Mutex::new(Level { tokens: burst, at: now })));
        let mut level = match shared.lock() {
            Ok(level) => level,
            Err(poisoned) => poisoned.into_inner(),
        };
        let elapsed = now.saturating_duration_since(level.at).as_secs_f64();
        level.tokens = (level.tokens + elapsed * self.per_second).min(self.burst);
        level.at = now;
        decide(&mut level)
    }

    fn standing(&self, level: &Level) -> Standing {
        Standing {
            limit: self.burst as u64,
            remaining: level.tokens.max(0.0) as u64,
            reset: Duration::from_secs_f64((self.burst - level.tokens).max(0.0) / self.per_second),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_requests_are_denied_until_tokens_flow_back() {
        let buckets = KeyedBuckets::new(10, 20, 100);
        for _ in 0..20 {
            assert!(matches!(buckets.take_one("alice"), Decision::Allowed(_)));
        }
        match buckets.take_one("alice") {
            Decision::Denied { retry_after, standing } => {
                assert_eq!(standing.remaining, 0);
                assert!(retry_after <= Duration::from_millis(101), "{retry_after:?}");
            }
            allowed => panic!("the 21st request was allowed: {allowed:?}"),
        }
        // Another key has its own bucket.
        assert!(matches!(buckets.take_one("bob"), Decision::Allowed(_)));
        std::thread::sleep(Duration::from_millis(120));
        assert!(matches!(buckets.take_one("alice"), Decision::Allowed(_)));
    }

    #[test]
    fn paced_takes_go_into_debt_and_say_how_long_to_wait() {
        let buckets = KeyedBuckets::new(1000, 1000, 100);
        assert_eq!(buckets.take_paced("alice", 1000), Duration::ZERO);
        let wait = buckets.take_paced("alice", 500);
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        assert!(matches!(buckets.check_room("alice"), Decision::Denied { .. }));
    }

    #[test]
    fn a_new_body_waits_for_a_chunks_worth_not_for_any_refill_at_all() {
        // 256 KiB/s with a 1 MiB burst: the floor is 64 KiB, a quarter of a second's refill.
        let buckets = KeyedBuckets::new(256 * 1024, 1024 * 1024, 100);
        assert!(matches!(buckets.check_room("alice"), Decision::Allowed(_)));
        let wait = buckets.take_paced("alice", 1024 * 1024 + 4096);
        std::thread::sleep(wait + Duration::from_millis(10));
        // Paid back, and a few KiB refilled since: more than zero, less than a chunk's worth.
        match buckets.check_room("alice") {
            Decision::Denied { retry_after, .. } => assert!(retry_after >= MIN_RETRY, "{retry_after:?}"),
            allowed => panic!("a body started on a nearly empty bucket: {allowed:?}"),
        }
        std::thread::sleep(Duration::from_millis(400));
        assert!(matches!(buckets.check_room("alice"), Decision::Allowed(_)));
    }
}
