//! Prometheus metrics for `/metrics` (text exposition format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabel {
    pub version: String,
    pub cipher: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    pub connections_accepted: Counter,
    pub connections_open: Gauge,
    pub handshakes_in_progress: Gauge,
    pub handshakes_completed: Family<HandshakeLabel, Counter>,
    pub handshakes_failed: Family<KindLabel, Counter>,
    pub handshake_seconds: Histogram,
    pub psk_mismatches: Counter,
    pub sessions_active: Gauge,
    pub sessions_ended: Family<KindLabel, Counter>,
    pub http_responses: Family<StatusLabel, Counter>,
    pub scripts_delivered: Counter,
    pub scripts_completed: Family<StatusLabel, Counter>,
    pub apdus_exchanged: Counter,
    pub keys_loaded: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warden_ota");
        let m = Self {
            connections_accepted: Counter::default(),
            connections_open: Gauge::default(),
            handshakes_in_progress: Gauge::default(),
            handshakes_completed: Family::default(),
            handshakes_failed: Family::default(),
            handshake_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            psk_mismatches: Counter::default(),
            sessions_active: Gauge::default(),
            sessions_ended: Family::default(),
            http_responses: Family::default(),
            scripts_delivered: Counter::default(),
            scripts_completed: Family::default(),
            apdus_exchanged: Counter::default(),
            keys_loaded: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections_accepted",
            "TCP connections accepted",
            m.connections_accepted.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open now (handshaking or established)",
            m.connections_open.clone(),
        );
        registry.register(
            "handshakes_in_progress",
            "TLS handshakes in progress",
            m.handshakes_in_progress.clone(),
        );
        registry.register(
            "handshakes_completed",
            "PSK-TLS handshakes completed, by version and cipher",
            m.handshakes_completed.clone(),
        );
        registry.register(
            "handshakes_failed",
            "PSK-TLS handshakes that failed, by cause",
            m.handshakes_failed.clone(),
        );
        registry.register(
            "handshake_seconds",
            "Time from accept to handshake completion",
            m.handshake_seconds.clone(),
        );
        registry.register(
            "psk_mismatches",
            "Handshakes refused because the key did not match a known identity",
            m.psk_mismatches.clone(),
        );
        registry.register(
            "sessions_active",
            "Admin sessions with a completed handshake, open now",
            m.sessions_active.clone(),
        );
        registry.register(
            "sessions_ended",
            "Sessions closed, by close reason",
            m.sessions_ended.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses sent, by status",
            m.http_responses.clone(),
        );
        registry.register(
            "scripts_delivered",
            "Command scripts sent to cards",
            m.scripts_delivered.clone(),
        );
        registry.register(
            "scripts_completed",
            "Scripts whose results came back, by X-Admin-Script-Status",
            m.scripts_completed.clone(),
        );
        registry.register(
            "apdus_exchanged",
            "C-APDUs answered by an R-APDU",
            m.apdus_exchanged.clone(),
        );
        registry.register(
            "keys_loaded",
            "PSK identities in the key cache",
            m.keys_loaded.clone(),
        );
        Self { registry, ..m }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn handshake_failed(&self, kind: &str) {
        self.handshakes_failed
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn session_ended(&self, reason: &str) {
        self.sessions_ended
            .get_or_create(&KindLabel {
                kind: reason.into(),
            })
            .inc();
    }

    pub fn http_response(&self, status: u16) {
        self.http_responses
            .get_or_create(&StatusLabel {
                status: status.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_metrics() {
        let m = Metrics::new();
        m.handshake_failed("psk_mismatch");
        m.http_response(204);
        m.handshake_seconds.observe(0.004);
        let text = m.encode();
        assert!(
            text.contains("warden_ota_handshakes_failed_total{kind=\"psk_mismatch\"} 1"),
            "{text}"
        );
        assert!(text.contains("warden_ota_http_responses_total{status=\"204\"} 1"));
        assert!(text.contains("warden_ota_handshake_seconds_bucket"));
    }
}
