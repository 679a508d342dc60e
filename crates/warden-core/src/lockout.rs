//! Lockout and attempt throttling for logins (shim challenge, CLI): pure bookkeeping of
//! failures, with the clock passed in.
//!
//! [`FailureWindow`] counts failures in a sliding window and locks when [`LockoutPolicy`]'s
//! threshold is reached (seed 000: the 5th failure within 60 s → LOCKED). A lock stays until an
//! administrator calls [`FailureWindow::reset`]; time alone never lifts it. [`AttemptThrottle`]
//! spaces attempts out: a minimum gap between any two, doubling after each consecutive failure
//! up to a ceiling, and says how long the caller must wait. Both are small serde values the
//! store persists per user (a restart must not forget them).

use serde::{Deserialize, Serialize};

/// Why a lockout or backoff policy in configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LockoutConfigError {
    #[error("max_failures must be at least 1")]
    ZeroFailures,
    #[error("window_secs must be at least 1")]
    ZeroWindow,
    #[error("max_delay_ms ({max}) must not be below base_delay_ms ({base})")]
    DelayBounds { base: u64, max: u64 },
}

/// When failures lock an account: `max_failures` within `window_secs` (5 in 60 s by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "LockoutPolicyFields", into = "LockoutPolicyFields")]
pub struct LockoutPolicy {
    max_failures: u32,
    window_secs: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LockoutPolicyFields {
    max_failures: u32,
    window_secs: u64,
}

impl Default for LockoutPolicyFields {
    fn default() -> Self {
        LockoutPolicy::default().into()
    }
}

impl LockoutPolicy {
    pub fn new(max_failures: u32, window_secs: u64) -> Result<Self, LockoutConfigError> {
        if max_failures == 0 {
            return Err(LockoutConfigError::ZeroFailures);
        }
        if window_secs == 0 {
            return Err(LockoutConfigError::ZeroWindow);
        }
        Ok(Self {
            max_failures,
            window_secs,
        })
    }

    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// Whether a failure at `failed_at` still counts at `now`: it happened less than
    /// `window_secs` ago. A failure stamped later than `now` (the clock stepped back) counts.
    fn counts(&self, failed_at: u64, now: u64) -> bool {
        now.saturating_sub(failed_at) < self.window_secs
    }
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window_secs: 60,
        }
    }
}

impl TryFrom<LockoutPolicyFields> for LockoutPolicy {
    type Error = LockoutConfigError;

    fn try_from(f: LockoutPolicyFields) -> Result<Self, Self::Error> {
        Self::new(f.max_failures, f.window_secs)
    }
}

impl From<LockoutPolicy> for LockoutPolicyFields {
    fn from(p: LockoutPolicy) -> Self {
        Self {
            max_failures: p.max_failures,
            window_secs: p.window_secs,
        }
    }
}

/// Whether an account may try to log in.
#[must_use = "a lockout state decides whether a login may be attempted"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockoutState {
    /// Attempts are allowed; `remaining_failures` more within the window lock the account.
    Open {
        recent_failures: u32,
        remaining_failures: u32,
    },
    /// Locked since this Unix time, until an administrator resets it.
    Locked { since: u64 },
}

impl LockoutState {
    pub fn is_locked(self) -> bool {
        matches!(self, Self::Locked { .. })
    }
}

// Implements: S26, S27, V36
/// One account's recent failures (Unix seconds) and lock, as the store keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureWindow {
    /// Ascending; only as many as a lock decision can need.
    failures: Vec<u64>,
    locked_at: Option<u64>,
}

impl FailureWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the window from stored values, in any order.
    pub fn restore(failure_times: impl IntoIterator<Item = u64>, locked_at: Option<u64>) -> Self {
        let mut failures: Vec<u64> = failure_times.into_iter().collect();
        failures.sort_unstable();
        Self {
            failures,
            locked_at,
        }
    }

    /// The failure times kept, ascending (for the store).
    pub fn failure_times(&self) -> &[u64] {
        &self.failures
    }

    /// When the account was locked, if it is.
    pub fn locked_at(&self) -> Option<u64> {
        self.locked_at
    }

    /// Records a failed attempt at `at` and returns the state after it: `Locked` when this
    /// failure makes `max_failures` within the window (or the account was already locked).
    pub fn record_failure(&mut self, policy: &LockoutPolicy, at: u64) -> LockoutState {
        let position = self.failures.partition_point(|&t| t <= at);
        self.failures.insert(position, at);
        let newest = self.failures.last().copied().unwrap_or(at);
        self.failures.retain(|&t| policy.counts(t, newest));
        let keep = policy.max_failures as usize;
        if self.failures.len() > keep {
            self.failures.drain(..self.failures.len() - keep);
        }
        if self.locked_at.is_none() && self.recent(policy, at) >= policy.max_failures {
            self.locked_at = Some(at);
        }
        self.state(policy, at)
    }

    /// A successful login forgets earlier failures. It does not lift a lock (a locked account
    /// must not get as far as a successful login).
    pub fn record_success(&mut self) {
        self.failures.clear();
    }

    /// The administrator's reset: lifts the lock and forgets the failures.
    pub fn reset(&mut self) {
        self.failures.clear();
        self.locked_at = None;
    }

    /// The state at `now`.
    pub fn state(&self, policy: &LockoutPolicy, now: u64) -> LockoutState {
        if let Some(since) = self.locked_at {
            return LockoutState::Locked { since };
        }
        let recent_failures = self.recent(policy, now);
        LockoutState::Open {
            recent_failures,
            remaining_failures: policy.max_failures.saturating_sub(recent_failures),
        }
    }

    fn recent(&self, policy: &LockoutPolicy, now: u64) -> u32 {
        let count = self
            .failures
            .iter()
            .filter(|&&t| policy.counts(t, now))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }
}

// Implements: S25, V36
/// How attempts are spaced out: at least `min_interval_ms` between any two; after `n`
/// consecutive failures, `base_delay_ms · 2^(n-1)`, at most `max_delay_ms`. Defaults: 1 s
/// minimum, then 1, 2, 4, 8, 16 s, capped at 30 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BackoffPolicyFields", into = "BackoffPolicyFields")]
pub struct BackoffPolicy {
    min_interval_ms: u64,
    base_delay_ms: u64,
    max_delay_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BackoffPolicyFields {
    min_interval_ms: u64,
    base_delay_ms: u64,
    max_delay_ms: u64,
}

impl Default for BackoffPolicyFields {
    fn default() -> Self {
        BackoffPolicy::default().into()
    }
}

impl BackoffPolicy {
    pub fn new(
        min_interval_ms: u64,
        base_delay_ms: u64,
        max_delay_ms: u64,
    ) -> Result<Self, LockoutConfigError> {
        if max_delay_ms < base_delay_ms {
            return Err(LockoutConfigError::DelayBounds {
                base: base_delay_ms,
                max: max_delay_ms,
            });
        }
        Ok(Self {
            min_interval_ms,
            base_delay_ms,
            max_delay_ms,
        })
    }

    /// The gap required after the last attempt, given the consecutive failures so far.
    pub fn required_gap_ms(&self, consecutive_failures: u32) -> u64 {
        let backoff = match consecutive_failures {
            0 => 0,
            n => {
                let factor = 1u64.checked_shl(n - 1).unwrap_or(u64::MAX);
                self.base_delay_ms
                    .saturating_mul(factor)
                    .min(self.max_delay_ms)
            }
        };
        backoff.max(self.min_interval_ms)
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            min_interval_ms: 1_000,
            base_delay_ms: 1_000,
            max_delay_ms: 30_000,
        }
    }
}

impl TryFrom<BackoffPolicyFields> for BackoffPolicy {
    type Error = LockoutConfigError;

    fn try_from(f: BackoffPolicyFields) -> Result<Self, Self::Error> {
        Self::new(f.min_interval_ms, f.base_delay_ms, f.max_delay_ms)
    }
}

impl From<BackoffPolicy> for BackoffPolicyFields {
    fn from(p: BackoffPolicy) -> Self {
        Self {
            min_interval_ms: p.min_interval_ms,
            base_delay_ms: p.base_delay_ms,
            max_delay_ms: p.max_delay_ms,
        }
    }
}

/// Whether an attempt may be made now.
#[must_use = "a throttle decision says whether an attempt may be made"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttle {
    Proceed,
    /// Refuse the attempt (without counting it); the next one is allowed after `wait_ms`.
    Wait {
        wait_ms: u64,
    },
}

impl Throttle {
    pub fn wait(self) -> std::time::Duration {
        match self {
            Self::Proceed => std::time::Duration::ZERO,
            Self::Wait { wait_ms } => std::time::Duration::from_millis(wait_ms),
        }
    }
}

/// One source's attempt history (per account, per port): consecutive failures and the time of
/// the last attempt, in milliseconds on any clock that does not jump (monotonic or Unix).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptThrottle {
    consecutive_failures: u32,
    last_attempt_ms: Option<u64>,
}

impl AttemptThrottle {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Whether an attempt may be made at `now_ms`, and if not, how long to wait.
    pub fn check(&self, policy: &BackoffPolicy, now_ms: u64) -> Throttle {
        let Some(last) = self.last_attempt_ms else {
            return Throttle::Proceed;
        };
        let gap_ms = policy.required_gap_ms(self.consecutive_failures);
        match last.saturating_add(gap_ms).checked_sub(now_ms) {
            // Never longer than the gap, even if the clock reads earlier than the last attempt.
            Some(wait_ms) if wait_ms > 0 => Throttle::Wait {
                wait_ms: wait_ms.min(gap_ms),
            },
            _ => Throttle::Proceed,
        }
    }

    /// Records a failed attempt made at `at_ms`.
    pub fn record_failure(&mut self, at_ms: u64) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_attempt_ms = Some(at_ms);
    }

    /// Records a successful attempt made at `at_ms`: the backoff starts over.
    pub fn record_success(&mut self, at_ms: u64) {
        self.consecutive_failures = 0;
        self.last_attempt_ms = Some(at_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy::default()
    }

    fn open(recent_failures: u32) -> LockoutState {
        LockoutState::Open {
            recent_failures,
            remaining_failures: 5 - recent_failures,
        }
    }

    /// Verifies: S26, V36
    #[test]
    fn fifth_failure_within_sixty_seconds_locks() {
        let mut window = FailureWindow::new();
        for (n, at) in [1000, 1010, 1020, 1030].into_iter().enumerate() {
            assert_eq!(window.record_failure(&policy(), at), open(n as u32 + 1));
        }
        assert_eq!(
            window.record_failure(&policy(), 1059),
            LockoutState::Locked { since: 1059 }
        );
        assert_eq!(window.locked_at(), Some(1059));
    }

    #[test]
    fn five_failures_spread_over_sixty_seconds_do_not_lock() {
        let mut window = FailureWindow::new();
        for at in [1000, 1015, 1030, 1045] {
            let _ = window.record_failure(&policy(), at);
        }
        // The first failure is exactly 60 s old at 1060: it no longer counts.
        assert_eq!(window.record_failure(&policy(), 1060), open(4));
    }

    #[test]
    fn the_window_slides() {
        let mut window = FailureWindow::new();
        // A slow, steady attacker: one failure every 15 s never has 5 inside 60 s.
        for i in 0..40 {
            let state = window.record_failure(&policy(), 10_000 + i * 15);
            assert!(!state.is_locked(), "failure {i}");
        }
        // Speeding up: four quick failures on top of the last one lock.
        let mut window = FailureWindow::new();
        for at in [0, 15, 30, 45] {
            let _ = window.record_failure(&policy(), at);
        }
        assert_eq!(window.record_failure(&policy(), 61), open(4)); // 0 dropped out
        assert_eq!(
            window.record_failure(&policy(), 62),
            LockoutState::Locked { since: 62 }
        );
    }

    #[test]
    fn state_decays_as_time_passes() {
        let mut window = FailureWindow::new();
        for at in [100, 110, 120] {
            let _ = window.record_failure(&policy(), at);
        }
        assert_eq!(window.state(&policy(), 130), open(3));
        assert_eq!(window.state(&policy(), 165), open(2));
        assert_eq!(window.state(&policy(), 180), open(0));
    }

    /// Verifies: S27
    #[test]
    fn a_lock_stays_until_an_administrator_resets_it() {
        let mut window = FailureWindow::new();
        for at in 0..5 {
            let _ = window.record_failure(&policy(), at);
        }
        assert!(window.state(&policy(), 1_000_000).is_locked());
        window.record_success();
        assert!(window.state(&policy(), 1_000_000).is_locked());
        assert!(window.record_failure(&policy(), 2_000_000).is_locked());
        window.reset();
        assert_eq!(window.state(&policy(), 2_000_001), open(0));
    }

    #[test]
    fn success_forgets_earlier_failures() {
        let mut window = FailureWindow::new();
        for at in [0, 1, 2, 3] {
            let _ = window.record_failure(&policy(), at);
        }
        window.record_success();
        assert_eq!(window.record_failure(&policy(), 4), open(1));
    }

    #[test]
    fn out_of_order_and_restored_failures_count() {
        let mut window = FailureWindow::restore([50, 10, 30], None);
        assert_eq!(window.failure_times(), [10, 30, 50]);
        let _ = window.record_failure(&policy(), 40);
        // The clock stepped back: a failure stamped 20 s "in the future" still counts.
        assert_eq!(
            window.record_failure(&policy(), 30),
            LockoutState::Locked { since: 30 }
        );
        let restored = FailureWindow::restore([], Some(7));
        assert_eq!(
            restored.state(&policy(), 8),
            LockoutState::Locked { since: 7 }
        );
    }

    #[test]
    fn storage_stays_bounded() {
        let policy = LockoutPolicy::new(3, 10).unwrap();
        let mut window = FailureWindow::new();
        for at in (0..10_000).step_by(20) {
            let _ = window.record_failure(&policy, at);
        }
        assert!(window.failure_times().len() <= 3);
        let json = serde_json::to_string(&window).unwrap();
        assert_eq!(
            serde_json::from_str::<FailureWindow>(&json).unwrap(),
            window
        );
    }

    #[test]
    fn a_threshold_of_one_locks_on_the_first_failure() {
        let policy = LockoutPolicy::new(1, 60).unwrap();
        let mut window = FailureWindow::new();
        assert!(window.record_failure(&policy, 5).is_locked());
    }

    #[test]
    fn policies_are_checked() {
        assert_eq!(
            LockoutPolicy::new(0, 60),
            Err(LockoutConfigError::ZeroFailures)
        );
        assert_eq!(
            LockoutPolicy::new(5, 0),
            Err(LockoutConfigError::ZeroWindow)
        );
        assert_eq!(
            serde_json::from_str::<LockoutPolicy>("{}").unwrap(),
            LockoutPolicy::default()
        );
        assert!(serde_json::from_str::<LockoutPolicy>(r#"{"max_failures":0}"#).is_err());
        assert!(serde_json::from_str::<LockoutPolicy>(r#"{"window":60}"#).is_err());
        assert_eq!(
            BackoffPolicy::new(0, 10, 5),
            Err(LockoutConfigError::DelayBounds { base: 10, max: 5 })
        );
        assert_eq!(
            serde_json::from_str::<BackoffPolicy>("{}").unwrap(),
            BackoffPolicy::default()
        );
    }

    #[test]
    fn backoff_doubles_after_each_failure_up_to_the_cap() {
        let policy = BackoffPolicy::default();
        let gaps: Vec<u64> = (0..9).map(|n| policy.required_gap_ms(n)).collect();
        assert_eq!(
            gaps,
            [1_000, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(policy.required_gap_ms(u32::MAX), 30_000);
    }

    #[test]
    fn throttle_says_how_long_to_wait() {
        let policy = BackoffPolicy::default();
        let mut throttle = AttemptThrottle::new();
        assert_eq!(throttle.check(&policy, 0), Throttle::Proceed);
        throttle.record_failure(10_000);
        assert_eq!(
            throttle.check(&policy, 10_000),
            Throttle::Wait { wait_ms: 1_000 }
        );
        assert_eq!(throttle.check(&policy, 11_000), Throttle::Proceed);
        throttle.record_failure(11_000);
        throttle.record_failure(13_000);
        assert_eq!(
            throttle.check(&policy, 14_500),
            Throttle::Wait { wait_ms: 2_500 }
        );
        assert_eq!(
            throttle.check(&policy, 14_500).wait(),
            std::time::Duration::from_millis(2_500)
        );
        assert_eq!(throttle.check(&policy, 17_000), Throttle::Proceed);
        // Success starts over, but the minimum interval still applies.
        throttle.record_success(17_000);
        assert_eq!(throttle.consecutive_failures(), 0);
        assert_eq!(
            throttle.check(&policy, 17_200),
            Throttle::Wait { wait_ms: 800 }
        );
        // A clock that reads earlier than the last attempt waits the full gap, not longer.
        assert_eq!(
            throttle.check(&policy, 0),
            Throttle::Wait { wait_ms: 1_000 }
        );
    }

    #[test]
    fn backoff_and_lockout_together_still_reach_the_lock() {
        // With the default backoff (1, 2, 4, 8 s), five failures fit in 60 s: the fastest an
        // attacker can go still hits the lockout.
        let backoff = BackoffPolicy::default();
        let mut throttle = AttemptThrottle::new();
        let mut window = FailureWindow::new();
        let mut now_ms = 1_000_000u64;
        let mut state = LockoutState::Open {
            recent_failures: 0,
            remaining_failures: 5,
        };
        for _ in 0..5 {
            now_ms += throttle.check(&backoff, now_ms).wait().as_millis() as u64;
            throttle.record_failure(now_ms);
            state = window.record_failure(&policy(), now_ms / 1000);
        }
        assert!(state.is_locked());
    }
}
