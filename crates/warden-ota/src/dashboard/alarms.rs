//! Alarms the dashboard raises from the event stream, without I/O: events and the time go in
//! (as values), alarm changes come out.
//!
//! * `psk_failure_burst` — PSK failures from any source (a wrong key for a known identity,
//!   `psk_mismatch`, or an identity nobody knows, `handshake_failed` kind `unknown_identity`):
//!   `psk_failure_burst` of them within `psk_failure_window` raise it; it clears when the
//!   window holds fewer. A scan across many addresses raises it where the server's per-source
//!   `psk_mismatch_threshold` does not.
//! * `high_error_rate` — the share of connections that ended in failure (handshake refused or
//!   interrupted, sessions ended `error`, `timeout` or `interrupted`) among all that ended in
//!   `error_rate_window`, once at least `error_rate_min_connections` ended; clears below.
//! * `psk_mismatch_source` — relays the server's own per-source warning
//!   (`psk_mismatch_threshold`) and clears one window after the last one.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::AlarmPolicy;
use crate::events::Event;

/// Which alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    PskFailureBurst,
    HighErrorRate,
    PskMismatchSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    Raised,
    Cleared,
}

/// An alarm raised or cleared, as the live view receives it (`event: alarm`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmChange {
    pub alarm: AlarmKind,
    pub state: AlarmState,
    /// What was counted: failures in the window, or the error rate (0 to 1).
    pub value: f64,
    pub threshold: f64,
    pub window_secs: u64,
    /// One line for the operator (may hold card identities: escape when shown).
    pub message: String,
}

/// Connection outcomes kept for the error rate, and PSK failures for the burst.
pub struct Alarms {
    policy: AlarmPolicy,
    psk_failures: VecDeque<Instant>,
    outcomes: VecDeque<(Instant, bool)>,
    source_until: Option<Instant>,
    active: BTreeMap<AlarmKind, AlarmChange>,
}

/// Bound on what is kept per window, whatever the rate of events.
const MAX_KEPT: usize = 100_000;

impl Alarms {
    pub fn new(policy: AlarmPolicy) -> Self {
        Self {
            policy,
            psk_failures: VecDeque::new(),
            outcomes: VecDeque::new(),
            source_until: None,
            active: BTreeMap::new(),
        }
    }

    /// The alarms raised now (for a live view that just connected).
    pub fn active(&self) -> Vec<AlarmChange> {
        self.active.values().cloned().collect()
    }

    /// Takes one event in; returns the alarms it raised or cleared.
    pub fn observe(&mut self, event: &Event, now: Instant) -> Vec<AlarmChange> {
        let mut psk_failure = false;
        let outcome = match event {
            Event::PskMismatch { .. } => {
                psk_failure = true;
                Some(false)
            }
            Event::HandshakeFailed { kind, .. } => {
                psk_failure = *kind == "unknown_identity";
                (*kind != "shutdown").then_some(false)
            }
            Event::HandshakeInterrupted { reason, .. } => {
                (!reason.starts_with("shutdown")).then_some(false)
            }
            Event::SessionEnded { close_reason, .. } => match *close_reason {
                "normal" => Some(true),
                "server_shutdown" => None,
                _ => Some(false),
            },
            Event::PskMismatchThreshold {
                client_addr,
                count,
                window_secs,
                identities,
            } => {
                self.source_until = Some(now + Duration::from_secs(*window_secs));
                let change = AlarmChange {
                    alarm: AlarmKind::PskMismatchSource,
                    state: AlarmState::Raised,
                    value: f64::from(*count),
                    threshold: f64::from(*count),
                    window_secs: *window_secs,
                    message: format!(
                        "{count} PSK mismatches from {client_addr} within {window_secs} s (identities: {}): a card or the key store is misconfigured",
                        identities.join(", ")
                    ),
                };
                let mut out = self.tick(now);
                if self.active.get(&AlarmKind::PskMismatchSource) != Some(&change) {
                    self.active
                        .insert(AlarmKind::PskMismatchSource, change.clone());
                    out.push(change);
                }
                return out;
            }
            _ => None,
        };
        if psk_failure {
            if self.psk_failures.len() == MAX_KEPT {
                self.psk_failures.pop_front();
            }
            self.psk_failures.push_back(now);
        }
        if let Some(ok) = outcome {
            if self.outcomes.len() == MAX_KEPT {
                self.outcomes.pop_front();
            }
            self.outcomes.push_back((now, ok));
        }
        if psk_failure || outcome.is_some() {
            self.tick(now)
        } else {
            Vec::new()
        }
    }

    /// Moves the windows to `now`; returns the alarms raised or cleared.
    pub fn tick(&mut self, now: Instant) -> Vec<AlarmChange> {
        let p = self.policy.clone();
        let older = |t: &Instant, window: Duration| now.saturating_duration_since(*t) >= window;
        while self
            .psk_failures
            .front()
            .is_some_and(|t| older(t, p.psk_failure_window))
        {
            self.psk_failures.pop_front();
        }
        while self
            .outcomes
            .front()
            .is_some_and(|(t, _)| older(t, p.error_rate_window))
        {
            self.outcomes.pop_front();
        }
        let mut out = Vec::new();

        let burst = self.psk_failures.len() as u32;
        let burst_window = p.psk_failure_window.as_secs();
        let change = |state, value: f64| {
            AlarmChange {
            alarm: AlarmKind::PskFailureBurst,
            state,
            value,
            threshold: f64::from(p.psk_failure_burst),
            window_secs: burst_window,
            message: format!(
                "{burst} PSK failures (wrong key or unknown identity) within {burst_window} s; threshold {}",
                p.psk_failure_burst
            ),
        }
        };
        let raised = burst >= p.psk_failure_burst;
        out.extend(self.set(AlarmKind::PskFailureBurst, raised, || {
            change(
                if raised {
                    AlarmState::Raised
                } else {
                    AlarmState::Cleared
                },
                f64::from(burst),
            )
        }));

        let total = self.outcomes.len() as u64;
        let errors = self.outcomes.iter().filter(|(_, ok)| !ok).count() as u64;
        let rate = errors as f64 / total.max(1) as f64;
        let raised = total >= u64::from(p.error_rate_min_connections)
            && rate >= p.error_rate_threshold
            && errors > 0;
        let (threshold, window) = (p.error_rate_threshold, p.error_rate_window.as_secs());
        out.extend(self.set(AlarmKind::HighErrorRate, raised, || AlarmChange {
            alarm: AlarmKind::HighErrorRate,
            state: if raised {
                AlarmState::Raised
            } else {
                AlarmState::Cleared
            },
            value: rate,
            threshold,
            window_secs: window,
            message: format!(
                "{errors} of {total} connections failed within {window} s ({:.0} %; threshold {:.0} %)",
                rate * 100.0,
                threshold * 100.0
            ),
        }));

        if self.source_until.is_some_and(|until| now >= until) {
            self.source_until = None;
            if let Some(mut last) = self.active.remove(&AlarmKind::PskMismatchSource) {
                last.state = AlarmState::Cleared;
                out.push(last);
            }
        }
        out
    }

    /// Raises or clears `kind`; a change only when its state flips.
    fn set(
        &mut self,
        kind: AlarmKind,
        raised: bool,
        change: impl FnOnce() -> AlarmChange,
    ) -> Option<AlarmChange> {
        match (raised, self.active.contains_key(&kind)) {
            (true, false) => {
                let c = change();
                self.active.insert(kind, c.clone());
                Some(c)
            }
            (false, true) => {
                self.active.remove(&kind);
                Some(change())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::HandshakeProgress;

    fn policy() -> AlarmPolicy {
        AlarmPolicy {
            psk_failure_burst: 3,
            psk_failure_window: Duration::from_secs(60),
            error_rate_threshold: 0.5,
            error_rate_window: Duration::from_secs(60),
            error_rate_min_connections: 4,
        }
    }

    fn unknown_identity(id: &str) -> Event {
        Event::HandshakeFailed {
            client_addr: "192.0.2.1:5000".into(),
            kind: "unknown_identity",
            reason: "no such identity".into(),
            identity: Some(id.into()),
            alert_sent: None,
            partial_state: HandshakeProgress::default(),
        }
    }

    fn ended(reason: &'static str) -> Event {
        Event::SessionEnded {
            session_id: "s".into(),
            psk_identity: "card".into(),
            duration: 0.1,
            command_count: 0,
            scripts: 0,
            status: "none".into(),
            close_reason: reason,
        }
    }

    #[test]
    fn a_burst_of_psk_failures_raises_and_the_window_clears_it() {
        let t0 = Instant::now();
        let mut a = Alarms::new(policy());
        assert!(a.observe(&unknown_identity("x1"), t0).is_empty());
        assert!(a.observe(&unknown_identity("x2"), t0).is_empty());
        let raised = a.observe(&unknown_identity("<script>"), t0 + Duration::from_secs(1));
        let burst: Vec<_> = raised
            .iter()
            .filter(|c| c.alarm == AlarmKind::PskFailureBurst)
            .collect();
        assert_eq!(burst.len(), 1);
        assert_eq!(burst[0].state, AlarmState::Raised);
        assert_eq!(burst[0].value, 3.0);
        assert_eq!(a.active().len(), 1, "error rate needs 4 connections");
        // Still raised: no second change.
        assert!(a
            .observe(&unknown_identity("x4"), t0 + Duration::from_secs(2))
            .iter()
            .all(|c| c.alarm != AlarmKind::PskFailureBurst));
        let cleared = a.tick(t0 + Duration::from_secs(61));
        assert!(cleared
            .iter()
            .any(|c| c.alarm == AlarmKind::PskFailureBurst && c.state == AlarmState::Cleared));
        assert!(a
            .tick(t0 + Duration::from_secs(200))
            .iter()
            .all(|c| c.state == AlarmState::Cleared));
        assert!(a.active().is_empty());
    }

    #[test]
    fn error_rate_needs_enough_connections_and_ignores_shutdown() {
        let t0 = Instant::now();
        let mut a = Alarms::new(policy());
        assert!(a.observe(&ended("interrupted"), t0).is_empty());
        assert!(a.observe(&ended("timeout"), t0).is_empty());
        assert!(a.observe(&ended("server_shutdown"), t0).is_empty());
        assert!(a.observe(&ended("normal"), t0).is_empty());
        let raised = a.observe(&ended("error"), t0);
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].alarm, AlarmKind::HighErrorRate);
        assert_eq!(raised[0].value, 0.75);
        for _ in 0..3 {
            a.observe(&ended("normal"), t0);
        }
        let cleared = a.active();
        assert!(cleared.is_empty(), "3 of 7 failed: below the threshold");
    }

    #[test]
    fn the_servers_per_source_warning_is_relayed_and_expires() {
        let t0 = Instant::now();
        let mut a = Alarms::new(policy());
        let e = Event::PskMismatchThreshold {
            client_addr: "192.0.2.7".into(),
            count: 3,
            window_secs: 10,
            identities: vec!["card-1".into()],
        };
        let raised = a.observe(&e, t0);
        assert_eq!(raised.len(), 1);
        assert!(raised[0].message.contains("192.0.2.7"));
        let cleared = a.tick(t0 + Duration::from_secs(10));
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0].state, AlarmState::Cleared);
    }
}
