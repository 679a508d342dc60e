//! The kinds of SIEM message warden sends, their priority in the spool, and how each is labelled
//! in CEF and syslog.
//!
//! | kind | priority | CEF signature ID | CEF name | CEF severity | syslog severity | MSGID |
//! |---|---|---|---|---|---|---|
//! | [`TamperAlert`](MessageKind::TamperAlert) | 3 (sent first) | `tamper-alert` | Tamper alert | 10 | Alert (1) | `TAMPER` |
//! | [`AuditEvent`](MessageKind::AuditEvent) | 2 | `audit-event` | Audit event | 5 | Notice (5) | `AUDIT` |
//! | [`AuditCheckpoint`](MessageKind::AuditCheckpoint) | 1 | `audit-checkpoint` | Audit checkpoint | 3 | Informational (6) | `CHECKPOINT` |
//! | [`Heartbeat`](MessageKind::Heartbeat) | 0 (sent last) | `heartbeat` | Heartbeat | 1 | Informational (6) | `HEARTBEAT` |
//!
//! The spool delivers higher priorities first and, within one priority, in sequence order.
//! `Ord` on [`MessageKind`] follows priority, so `max()` is the most urgent kind.
//! [`MessageKind::as_str`] is the stable name to store in the spool.
//!
//! Implements: S13, S20

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::format::cef::CefSeverity;
use crate::format::rfc5424::{MsgId, Severity};

/// What a SIEM message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A tamper sensor fired; the shim stopped. Jumps the queue.
    TamperAlert,
    /// One audit-chain event (login, session open/close, configuration change, ...).
    AuditEvent,
    /// The audit chain's current (sequence, MAC), so cutting off the tail is visible off-box.
    AuditCheckpoint,
    /// "Still alive"; the least urgent message.
    Heartbeat,
}

/// The kind named in the spool could not be recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SIEM message kind")]
pub struct UnknownKind;

impl MessageKind {
    /// All kinds, most urgent first.
    pub const ALL: [MessageKind; 4] = [
        MessageKind::TamperAlert,
        MessageKind::AuditEvent,
        MessageKind::AuditCheckpoint,
        MessageKind::Heartbeat,
    ];

    /// Spool priority: higher is sent first.
    pub const fn priority(self) -> u8 {
        match self {
            Self::TamperAlert => 3,
            Self::AuditEvent => 2,
            Self::AuditCheckpoint => 1,
            Self::Heartbeat => 0,
        }
    }

    /// Stable name for storage (spool rows) and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TamperAlert => "tamper_alert",
            Self::AuditEvent => "audit_event",
            Self::AuditCheckpoint => "audit_checkpoint",
            Self::Heartbeat => "heartbeat",
        }
    }

    /// CEF "Device Event Class ID".
    pub const fn cef_signature_id(self) -> &'static str {
        match self {
            Self::TamperAlert => "tamper-alert",
            Self::AuditEvent => "audit-event",
            Self::AuditCheckpoint => "audit-checkpoint",
            Self::Heartbeat => "heartbeat",
        }
    }

    /// CEF "Name".
    pub const fn cef_name(self) -> &'static str {
        match self {
            Self::TamperAlert => "Tamper alert",
            Self::AuditEvent => "Audit event",
            Self::AuditCheckpoint => "Audit checkpoint",
            Self::Heartbeat => "Heartbeat",
        }
    }

    /// Default CEF severity (an audit event may raise it, e.g. for a lockout).
    pub const fn cef_severity(self) -> CefSeverity {
        const HIGHEST: CefSeverity = CefSeverity::from_static(10);
        const MEDIUM: CefSeverity = CefSeverity::from_static(5);
        const LOW: CefSeverity = CefSeverity::from_static(3);
        const LOWEST: CefSeverity = CefSeverity::from_static(1);
        match self {
            Self::TamperAlert => HIGHEST,
            Self::AuditEvent => MEDIUM,
            Self::AuditCheckpoint => LOW,
            Self::Heartbeat => LOWEST,
        }
    }

    /// RFC 5424 severity for the syslog envelope.
    pub const fn syslog_severity(self) -> Severity {
        match self {
            Self::TamperAlert => Severity::Alert,
            Self::AuditEvent => Severity::Notice,
            Self::AuditCheckpoint | Self::Heartbeat => Severity::Informational,
        }
    }

    /// RFC 5424 MSGID.
    pub const fn msgid(self) -> MsgId {
        // `const` items: the literals are checked when the crate is built.
        const TAMPER: MsgId = MsgId::from_static("TAMPER");
        const AUDIT: MsgId = MsgId::from_static("AUDIT");
        const CHECKPOINT: MsgId = MsgId::from_static("CHECKPOINT");
        const HEARTBEAT: MsgId = MsgId::from_static("HEARTBEAT");
        match self {
            Self::TamperAlert => TAMPER,
            Self::AuditEvent => AUDIT,
            Self::AuditCheckpoint => CHECKPOINT,
            Self::Heartbeat => HEARTBEAT,
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(UnknownKind)
    }
}

impl PartialOrd for MessageKind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MessageKind {
    /// By priority: `TamperAlert` is the greatest.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority().cmp(&other.priority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: S13, S20
    #[test]
    fn tamper_alerts_are_most_urgent_and_heartbeats_least() {
        let mut kinds = vec![
            MessageKind::Heartbeat,
            MessageKind::AuditEvent,
            MessageKind::TamperAlert,
            MessageKind::AuditCheckpoint,
        ];
        kinds.sort_by(|a, b| b.cmp(a));
        assert_eq!(kinds, MessageKind::ALL);
        assert_eq!(
            MessageKind::ALL.iter().max(),
            Some(&MessageKind::TamperAlert)
        );
    }

    #[test]
    fn names_round_trip_and_labels_are_valid() {
        for kind in MessageKind::ALL {
            assert_eq!(kind.as_str().parse::<MessageKind>(), Ok(kind));
            // Runtime validation agrees with the compile-time constants.
            assert!(MsgId::new(kind.msgid().as_str().to_owned()).is_ok());
            assert!(CefSeverity::new(kind.cef_severity().get()).is_ok());
            assert!(crate::format::cef::CefEvent::new(
                kind.cef_signature_id(),
                kind.cef_name(),
                kind.cef_severity()
            )
            .is_ok());
        }
        assert_eq!("nope".parse::<MessageKind>(), Err(UnknownKind));
    }
}
