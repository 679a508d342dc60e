//! A connection's life: HANDSHAKING → CONNECTED → ACTIVE → CLOSED, as types.
//!
//! Each state is its own type and each transition consumes it, so a session cannot be closed
//! twice or go back to CONNECTED. The server drives these from its connection task; the
//! [`Closed`] value carries the summary that becomes the `session_ended` event and the session
//! row.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The state names, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionState {
    Handshaking,
    Connected,
    Active,
    Closed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handshaking => "HANDSHAKING",
            Self::Connected => "CONNECTED",
            Self::Active => "ACTIVE",
            Self::Closed => "CLOSED",
        }
    }

    /// The state [`as_str`](Self::as_str) names.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Handshaking,
            Self::Connected,
            Self::Active,
            Self::Closed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

// Implements: O67
/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The admin session ended with `204`.
    Normal,
    /// Idle, session or handshake timeout.
    Timeout,
    /// A request was refused and the connection closed, or the TLS handshake failed.
    Error,
    /// The card went away (connection cut or closed) before the session ended.
    Interrupted,
    /// The server is stopping.
    ServerShutdown,
    /// The server stopped without closing it (killed, or the machine lost power); closed when
    /// the server started again.
    ServerRestart,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::Interrupted => "interrupted",
            Self::ServerShutdown => "server_shutdown",
            Self::ServerRestart => "server_restart",
        }
    }

    /// Counted as an error for the error-rate alarm.
    pub fn is_error(self) -> bool {
        matches!(self, Self::Timeout | Self::Error | Self::Interrupted)
    }
}

/// Accepted; TLS handshake running.
#[derive(Debug)]
pub struct Handshaking {
    pub conn_id: u64,
    pub peer: SocketAddr,
    pub started: Instant,
}

/// What the handshake established.
#[derive(Debug, Clone, Serialize)]
pub struct TlsInfo {
    pub psk_identity: String,
    pub tls_version: String,
    pub cipher_suite: String,
    pub null_cipher: bool,
    pub handshake: Duration,
}

/// Handshake done; no HTTP request yet.
#[derive(Debug)]
pub struct Connected {
    pub conn_id: u64,
    pub session_id: String,
    pub peer: SocketAddr,
    pub started: Instant,
    pub tls: TlsInfo,
}

/// At least one admin request handled.
#[derive(Debug)]
pub struct Active {
    pub connected: Connected,
    pub agent: String,
}

/// Over.
#[derive(Debug, Clone, Serialize)]
pub struct Closed {
    pub session_id: Option<String>,
    pub psk_identity: Option<String>,
    pub reason: CloseReason,
    pub duration: Duration,
    /// The state it closed from.
    pub from: SessionState,
}

impl Handshaking {
    pub fn new(conn_id: u64, peer: SocketAddr) -> Self {
        Self {
            conn_id,
            peer,
            started: Instant::now(),
        }
    }

    pub fn complete(self, session_id: String, tls: TlsInfo) -> Connected {
        Connected {
            conn_id: self.conn_id,
            session_id,
            peer: self.peer,
            started: self.started,
            tls,
        }
    }

    pub fn fail(self, reason: CloseReason) -> Closed {
        Closed {
            session_id: None,
            psk_identity: None,
            reason,
            duration: self.started.elapsed(),
            from: SessionState::Handshaking,
        }
    }
}

impl Connected {
    pub fn activate(self, agent: String) -> Active {
        Active {
            connected: self,
            agent,
        }
    }

    pub fn close(self, reason: CloseReason) -> Closed {
        Closed {
            session_id: Some(self.session_id),
            psk_identity: Some(self.tls.psk_identity),
            reason,
            duration: self.started.elapsed(),
            from: SessionState::Connected,
        }
    }
}

impl Active {
    pub fn close(self, reason: CloseReason) -> Closed {
        let mut closed = self.connected.close(reason);
        closed.from = SessionState::Active;
        closed
    }
}

// Implements: O10, O64, O67
/// A connection's current state, for code that holds it across awaits.
#[derive(Debug)]
pub enum Lifecycle {
    Connected(Connected),
    Active(Active),
}

impl Lifecycle {
    pub fn state(&self) -> SessionState {
        match self {
            Self::Connected(_) => SessionState::Connected,
            Self::Active(_) => SessionState::Active,
        }
    }

    /// CONNECTED → ACTIVE on the first admin request; ACTIVE stays ACTIVE.
    pub fn activate(self, agent: &str) -> (Self, bool) {
        match self {
            Self::Connected(c) => (Self::Active(c.activate(agent.to_string())), true),
            active @ Self::Active(_) => (active, false),
        }
    }

    pub fn close(self, reason: CloseReason) -> Closed {
        match self {
            Self::Connected(c) => c.close(reason),
            Self::Active(a) => a.close(reason),
        }
    }

    pub fn connected(&self) -> &Connected {
        match self {
            Self::Connected(c) => c,
            Self::Active(a) => &a.connected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: O10, O67
    #[test]
    fn transitions() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let h = Handshaking::new(1, peer);
        let closed = Handshaking::new(2, peer).fail(CloseReason::Timeout);
        assert_eq!(closed.from, SessionState::Handshaking);
        let c = h.complete(
            "s".into(),
            TlsInfo {
                psk_identity: "card".into(),
                tls_version: "TLSv1.2".into(),
                cipher_suite: "PSK-AES128-CBC-SHA256".into(),
                null_cipher: false,
                handshake: Duration::from_millis(2),
            },
        );
        let l = Lifecycle::Connected(c);
        assert_eq!(l.state(), SessionState::Connected);
        let (l, first) = l.activate("agent");
        assert!(first);
        let (l, first) = l.activate("agent");
        assert!(!first && l.state() == SessionState::Active);
        let closed = l.close(CloseReason::Normal);
        assert_eq!(closed.from, SessionState::Active);
        assert_eq!(closed.psk_identity.as_deref(), Some("card"));
        assert!(!CloseReason::Normal.is_error() && CloseReason::Interrupted.is_error());
    }
}
