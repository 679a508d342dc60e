//! Server events: the seed's event table (plus a few), published to subscribers and written as
//! JSON lines.
//!
//! Events are for dashboards and monitoring; the audit chain (in the store) is the evidence.
//! Names follow the seed. `apdu_received` / `apdu_sent` keep the seed's point of view, the
//! card's: a C-APDU the card received (we sent it in a script), an R-APDU the card sent back.
//! No event carries key material; APDU bytes are carried in hex.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;

use crate::tls::{Alert, HandshakeProgress};

// Implements: O11, O33, O49, O50, O51, O52, O53, O54, O55, O56, O57, O58, O59
/// One event. Serialized as `{"event": "<name>", "timestamp": …, <fields>}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    ServerStarted {
        listen: String,
        ciphers: Vec<&'static str>,
        null_ciphers: bool,
        max_connections: usize,
    },
    ServerStopped {
        reason: String,
        /// Sessions (completed handshakes) open when the stop came; they are then drained.
        open_sessions: usize,
        /// Connections still open when the drain deadline passed.
        not_drained: usize,
    },
    TlsHandshakeStart {
        conn_id: u64,
        client_addr: String,
    },
    TlsHandshakeComplete {
        session_id: String,
        psk_identity: String,
        cipher_suite: String,
        tls_version: String,
        client_addr: String,
        handshake_ms: f64,
        null_cipher: bool,
    },
    /// The handshake stopped without a refusal from us: timeout, cut connection, eviction.
    HandshakeInterrupted {
        client_addr: String,
        reason: String,
        partial_state: HandshakeProgress,
        /// Nothing after the ClientHello: probably the network, not the card's configuration.
        potential_network_issue: bool,
    },
    /// The handshake was refused (other than a PSK mismatch).
    HandshakeFailed {
        client_addr: String,
        kind: &'static str,
        reason: String,
        identity: Option<String>,
        alert_sent: Option<Alert>,
        partial_state: HandshakeProgress,
    },
    PskMismatch {
        identity: String,
        client_addr: String,
        tls_version: Option<&'static str>,
        alert_sent: Option<Alert>,
        /// Mismatches from this source address within the window, this one included.
        count_in_window: u32,
    },
    /// Several mismatches from one source: a card (or the server) is misconfigured.
    PskMismatchThreshold {
        client_addr: String,
        count: u32,
        window_secs: u64,
        identities: Vec<String>,
    },
    SessionActive {
        session_id: String,
        psk_identity: String,
        agent: String,
        resumed: bool,
        /// Departures from Amendment B accepted on the opening request
        /// ([`crate::admin::Leniency`]).
        lenient: Vec<&'static str>,
    },
    ScriptDelivered {
        session_id: String,
        card: String,
        script_id: u64,
        commands: usize,
        redelivery: bool,
    },
    ScriptCompleted {
        session_id: String,
        card: String,
        script_id: u64,
        /// The script's result: its `X-Admin-Script-Status`, or for `ok` the name of an error
        /// TLV in the response script (`bad-format`, `immediate-action-error`,
        /// `script-chaining-error`).
        status: &'static str,
        /// The error TLV, described.
        error: Option<String>,
        executed: Option<u32>,
        round_trip_ms: Option<f64>,
    },
    ScriptOutcomeUnknown {
        session_id: String,
        card: String,
        script_id: u64,
    },
    /// The card received this C-APDU (in a script we sent).
    ApduReceived {
        session_id: String,
        script_id: u64,
        index: usize,
        command_hex: String,
    },
    /// The card sent this R-APDU back. `timing_ms` is the script's round trip (Amendment B does
    /// not carry per-command timing).
    ApduSent {
        session_id: String,
        script_id: u64,
        index: usize,
        command_hex: String,
        response_hex: String,
        sw: String,
        timing_ms: Option<f64>,
    },
    RequestRefused {
        session_id: String,
        status: u16,
        reason: String,
    },
    SessionEnded {
        session_id: String,
        psk_identity: String,
        duration: f64,
        command_count: u64,
        scripts: u64,
        status: String,
        close_reason: &'static str,
    },
    ConnectionInterrupted {
        session_id: String,
        psk_identity: String,
        last_command: Option<String>,
        in_flight_script: Option<u64>,
    },
    HighErrorRate {
        error_type: String,
        rate: f64,
        threshold: f64,
        window_secs: u64,
        connections: u64,
    },
    KeysReloaded {
        count: usize,
        conflicts: Vec<String>,
    },
    /// A person queued a script from the dashboard (the audit chain has `ota.script.queue`).
    ScriptQueued {
        card: String,
        script_id: u64,
        by: String,
        commands: usize,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Self::ServerStarted { .. } => "server_started",
            Self::ServerStopped { .. } => "server_stopped",
            Self::TlsHandshakeStart { .. } => "tls_handshake_start",
            Self::TlsHandshakeComplete { .. } => "tls_handshake_complete",
            Self::HandshakeInterrupted { .. } => "handshake_interrupted",
            Self::HandshakeFailed { .. } => "handshake_failed",
            Self::PskMismatch { .. } => "psk_mismatch",
            Self::PskMismatchThreshold { .. } => "psk_mismatch_threshold",
            Self::SessionActive { .. } => "session_active",
            Self::ScriptDelivered { .. } => "script_delivered",
            Self::ScriptCompleted { .. } => "script_completed",
            Self::ScriptOutcomeUnknown { .. } => "script_outcome_unknown",
            Self::ApduReceived { .. } => "apdu_received",
            Self::ApduSent { .. } => "apdu_sent",
            Self::RequestRefused { .. } => "request_refused",
            Self::SessionEnded { .. } => "session_ended",
            Self::ConnectionInterrupted { .. } => "connection_interrupted",
            Self::HighErrorRate { .. } => "high_error_rate",
            Self::KeysReloaded { .. } => "keys_reloaded",
            Self::ScriptQueued { .. } => "script_queued",
        }
    }
}

/// An event with its time.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub timestamp: String,
    #[serde(flatten)]
    pub event: Event,
}

impl EventRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

const RECENT: usize = 256;

// Implements: O48, O72
/// Publishes events to any number of subscribers; keeps the most recent for the dashboard.
/// A slow subscriber loses the oldest events (and learns how many), never slows the server.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<EventRecord>>,
    recent: Arc<Mutex<VecDeque<Arc<EventRecord>>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(8192)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self {
            tx,
            recent: Arc::new(Mutex::new(VecDeque::with_capacity(RECENT))),
        }
    }

    pub fn emit(&self, event: Event) {
        let record = Arc::new(EventRecord {
            timestamp: warden_store::now_rfc3339(),
            event,
        });
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(record.clone());
        }
        let _ = self.tx.send(record);
    }

    /// A new subscriber; it sees events emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.tx.subscribe()
    }

    /// The most recent events, oldest first.
    pub fn recent(&self) -> Vec<Arc<EventRecord>> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Writes every event as one JSON line to `path` (appending; `-` for standard output)
    /// until the bus closes. Lost events (a slow disk) are counted in a `events_lost` line.
    pub fn spawn_jsonl_writer(&self, path: &Path) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut rx = self.subscribe();
        let mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = if path == Path::new("-") {
            Box::new(tokio::io::stdout())
        } else {
            use std::io::{Read, Seek, SeekFrom, Write};
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .mode(0o600)
                .read(true)
                .append(true)
                .open(path)?;
            // A process killed mid-line left the last line unterminated: end it, so the next
            // record starts a line of its own (the torn one stays, recognisably not JSON).
            if file.seek(SeekFrom::End(0))? > 0 {
                let mut last = [0u8];
                file.seek(SeekFrom::End(-1))?;
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    file.write_all(b"\n")?;
                }
            }
            Box::new(tokio::fs::File::from_std(file))
        };
        Ok(tokio::spawn(async move {
            loop {
                let line = match rx.recv().await {
                    Ok(record) => record.to_json(),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        format!(
                            "{{\"event\":\"events_lost\",\"timestamp\":\"{}\",\"count\":{n}}}",
                            warden_store::now_rfc3339()
                        )
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let mut line = line.into_bytes();
                line.push(b'\n');
                if out.write_all(&line).await.is_err() {
                    break;
                }
                // Flush when the queue is drained, so a reader sees lines promptly.
                if rx.is_empty() && out.flush().await.is_err() {
                    break;
                }
            }
            let _ = out.flush().await;
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: O48
    #[tokio::test]
    async fn subscribers_and_json_lines() {
        let bus = EventBus::new(16);
        let mut rx = bus.subscribe();
        bus.emit(Event::PskMismatch {
            identity: "card-1".into(),
            client_addr: "127.0.0.1:1".into(),
            tls_version: Some("TLSv1.2"),
            alert_sent: Some(Alert {
                code: 20,
                name: "bad_record_mac",
                fatal: true,
            }),
            count_in_window: 1,
        });
        let got = rx.recv().await.unwrap();
        assert_eq!(got.event.name(), "psk_mismatch");
        let json: serde_json::Value = serde_json::from_str(&got.to_json()).unwrap();
        assert_eq!(json["event"], "psk_mismatch");
        assert_eq!(json["identity"], "card-1");
        assert_eq!(json["alert_sent"]["code"], 20);
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(bus.recent().len(), 1);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let writer = bus.spawn_jsonl_writer(&path).unwrap();
        bus.emit(Event::KeysReloaded {
            count: 2,
            conflicts: vec![],
        });
        drop(bus);
        drop(rx);
        writer.await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"event\":\"keys_reloaded\""), "{text}");
    }

    /// Outside testing: after a SIGKILL mid-line, the restarted server appended to the torn
    /// line (`…27.9}{"event":…`). The file now gets its last line ended first.
    #[tokio::test]
    async fn a_torn_last_line_is_ended_before_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"event\":\"whole\"}\n{\"event\":\"torn\",\"x\":2").unwrap();
        let bus = EventBus::new(16);
        let writer = bus.spawn_jsonl_writer(&path).unwrap();
        bus.emit(Event::KeysReloaded {
            count: 1,
            conflicts: vec![],
        });
        drop(bus);
        writer.await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            serde_json::from_str::<serde_json::Value>(lines[2]).is_ok(),
            "{text}"
        );
        assert!(text.ends_with('\n'));
    }

    /// Seed 003's event table: every event it names carries the seed's fields (under the
    /// seed's names; `server_started`'s port is in `listen`), and a timestamp.
    /// Verifies: O16, O49, O50, O51, O52, O53, O54, O55, O56, O57, O58, O59
    #[test]
    fn every_seed_event_carries_the_seeds_fields() {
        let s = || "s-1".to_string();
        let addr = || "192.0.2.7:4242".to_string();
        let table: Vec<(Event, &[&str])> = vec![
            (
                Event::ServerStarted {
                    listen: "0.0.0.0:8443".into(),
                    ciphers: vec!["PSK-AES128-CBC-SHA256"],
                    null_ciphers: false,
                    max_connections: 10,
                },
                &["listen", "ciphers"],
            ),
            (
                Event::ServerStopped {
                    reason: "signal".into(),
                    open_sessions: 0,
                    not_drained: 0,
                },
                &["reason"],
            ),
            (
                Event::TlsHandshakeStart {
                    conn_id: 1,
                    client_addr: addr(),
                },
                &["client_addr"],
            ),
            (
                Event::TlsHandshakeComplete {
                    session_id: s(),
                    psk_identity: "card".into(),
                    cipher_suite: "PSK-AES128-CBC-SHA256".into(),
                    tls_version: "TLSv1.2".into(),
                    client_addr: addr(),
                    handshake_ms: 1.5,
                    null_cipher: false,
                },
                // Seed 003's TLS session information too: version, peer, handshake duration.
                &[
                    "session_id",
                    "psk_identity",
                    "cipher_suite",
                    "tls_version",
                    "client_addr",
                    "handshake_ms",
                ],
            ),
            (
                Event::HandshakeInterrupted {
                    client_addr: addr(),
                    reason: "timeout".into(),
                    partial_state: HandshakeProgress::default(),
                    potential_network_issue: true,
                },
                &["client_addr", "reason", "partial_state"],
            ),
            (
                Event::ApduReceived {
                    session_id: s(),
                    script_id: 1,
                    index: 0,
                    command_hex: "00A4040000".into(),
                },
                &["session_id", "command_hex"],
            ),
            (
                Event::ApduSent {
                    session_id: s(),
                    script_id: 1,
                    index: 0,
                    command_hex: "00A4040000".into(),
                    response_hex: "9000".into(),
                    sw: "9000".into(),
                    timing_ms: Some(3.0),
                },
                &["session_id", "response_hex", "sw", "timing_ms"],
            ),
            (
                Event::SessionEnded {
                    session_id: s(),
                    psk_identity: "card".into(),
                    duration: 0.5,
                    command_count: 3,
                    scripts: 1,
                    status: "ok".into(),
                    close_reason: "normal",
                },
                &["session_id", "duration", "command_count", "status"],
            ),
            (
                Event::ConnectionInterrupted {
                    session_id: s(),
                    psk_identity: "card".into(),
                    last_command: Some("00A4040000".into()),
                    in_flight_script: None,
                },
                &["session_id", "last_command"],
            ),
            (
                Event::PskMismatch {
                    identity: "card".into(),
                    client_addr: addr(),
                    tls_version: Some("TLSv1.2"),
                    alert_sent: None,
                    count_in_window: 1,
                },
                &["identity", "client_addr"],
            ),
            (
                Event::HighErrorRate {
                    error_type: "handshake".into(),
                    rate: 0.75,
                    threshold: 0.5,
                    window_secs: 60,
                    connections: 20,
                },
                &["error_type", "rate", "threshold"],
            ),
        ];
        let bus = EventBus::new(64);
        let names: Vec<&str> = table.iter().map(|(e, _)| e.name()).collect();
        for (event, _) in &table {
            bus.emit(event.clone());
        }
        let recent = bus.recent();
        assert_eq!(recent.len(), table.len());
        for ((_, fields), record) in table.iter().zip(&recent) {
            let json: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
            let name = json["event"].as_str().unwrap();
            assert!(names.contains(&name));
            let stamp = json["timestamp"].as_str().unwrap_or_default();
            assert!(stamp.ends_with('Z') && stamp.len() >= 20, "{name}: {json}");
            for field in *fields {
                let value = &json[*field];
                assert!(!value.is_null(), "{name} lacks {field}: {json}");
            }
        }
        let started: serde_json::Value = serde_json::from_str(&recent[0].to_json()).unwrap();
        assert!(started["listen"].as_str().unwrap().ends_with(":8443"));
    }
}
