//! Delivery bookkeeping without I/O: which written messages count as delivered, and how long to
//! wait before reconnecting. The forwarder feeds these with instants; tests feed them plain values.
//!
//! RFC 5425 has no acknowledgement, so "delivered" is an inference (see `docs/siem.md`): a
//! message written and flushed at `t` is confirmed once the connection has stayed up until
//! `t + confirm_after` without the server closing it or sending an alert. Unconfirmed messages
//! stay in the spool and are written again on the next connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::BackoffPolicy;

/// Messages written on the current connection and not yet confirmed, oldest first.
#[derive(Debug)]
pub struct InFlight {
    confirm_after: Duration,
    written: VecDeque<(u64, Instant)>,
}

impl InFlight {
    pub fn new(confirm_after: Duration) -> Self {
        Self {
            confirm_after,
            written: VecDeque::new(),
        }
    }

    /// Records `seqs` as written (and flushed) at `at`.
    pub fn written(&mut self, seqs: impl IntoIterator<Item = u64>, at: Instant) {
        self.written.extend(seqs.into_iter().map(|s| (s, at)));
    }

    /// Takes the messages whose confirmation time has come at `now` (the connection being
    /// still up is the caller's knowledge).
    pub fn take_confirmed(&mut self, now: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(&(seq, at)) = self.written.front() {
            if now.saturating_duration_since(at) < self.confirm_after {
                break;
            }
            out.push(seq);
            self.written.pop_front();
        }
        out
    }

    /// When the oldest message will be confirmed, if any is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.written.front().map(|&(_, at)| at + self.confirm_after)
    }

    pub fn len(&self) -> usize {
        self.written.len()
    }

    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }
}

/// Exponential backoff with jitter, capped: attempt n waits a random time in
/// `[d/2, d]` with `d = min(max, initial · 2ⁿ)`. Reset after a connection has delivered.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    /// The delay before the next attempt, given 64 random bits; counts the attempt.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let d = Self::ceiling(self.policy, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let span = u64::try_from((d - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 { 0 } else { random % (span + 1) };
        half + Duration::from_nanos(jitter)
    }

    /// The upper end of the delay for `attempt`.
    pub fn ceiling(policy: BackoffPolicy, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        policy
            .initial
            .checked_mul(factor)
            .unwrap_or(policy.max)
            .min(policy.max)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_in_write_order_after_the_grace_period() {
        let t0 = Instant::now();
        let mut w = InFlight::new(Duration::from_secs(2));
        w.written([1, 2], t0);
        w.written([5], t0 + Duration::from_secs(1));
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert!(w
            .take_confirmed(t0 + Duration::from_millis(1999))
            .is_empty());
        assert_eq!(w.take_confirmed(t0 + Duration::from_secs(2)), vec![1, 2]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.take_confirmed(t0 + Duration::from_secs(9)), vec![5]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn backoff_grows_is_capped_jittered_and_resets() {
        let policy = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut b = Backoff::new(policy);
        let ceilings: Vec<_> = (0..6).map(|n| Backoff::ceiling(policy, n)).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis)
        );
        for (n, ceiling) in ceilings.iter().enumerate() {
            let low = b.clone().next_delay(0);
            let high = b.next_delay(u64::MAX);
            assert_eq!(low, *ceiling / 2, "attempt {n}");
            assert!(high <= *ceiling && high >= *ceiling / 2, "attempt {n}");
        }
        assert_eq!(Backoff::ceiling(policy, 1000), policy.max);
        b.reset();
        assert_eq!(b.attempt(), 0);
    }
}
