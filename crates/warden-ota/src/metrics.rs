//! Prometheus metrics for `/metrics`: OpenMetrics text by default, the classic Prometheus text
//! format 0.0.4 for scrapers that ask for it (`Accept: text/plain;version=0.0.4`).

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

// Implements: O70
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

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in `format`.
    pub fn encode_as(&self, format: Exposition) -> String {
        match format {
            Exposition::OpenMetrics => self.encode(),
            Exposition::Prometheus004 => openmetrics_to_prometheus_004(&self.encode()),
        }
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

/// The text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`), the default.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Prometheus004,
}

impl Exposition {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus004 => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// Chooses by the request's `Accept` header: the format with the higher quality value
    /// among `application/openmetrics-text` and `text/plain`; OpenMetrics on a tie, for `*/*`
    /// and without the header.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let (mut openmetrics, mut plain) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or("").split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version_ok = true;
            for p in params {
                let Some((name, value)) = p.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match name.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.parse().unwrap_or(0.0),
                    "version" if media == "text/plain" => version_ok = value == "0.0.4",
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" if version_ok => plain = plain.max(q),
                _ => {}
            }
        }
        if plain > openmetrics {
            Self::Prometheus004
        } else {
            Self::OpenMetrics
        }
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: no `# EOF` and no `# UNIT`; a counter's
/// `# HELP` and `# TYPE` name the family as its samples do (`…_total`); `unknown` is
/// `untyped`. Samples are the same in both formats.
pub fn openmetrics_to_prometheus_004(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let tail = if *prefix == "# TYPE " && tail == "unknown" {
                "untyped"
            } else {
                tail
            };
            let name = if counters.contains(name) && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            Some(format!("{prefix}{name} {tail}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: O70
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
        assert!(text.ends_with("# EOF\n"));
    }

    /// `/metrics` ignored `Accept: text/plain;version=0.0.4` and always sent OpenMetrics.
    #[test]
    fn prometheus_004_when_asked_for() {
        use Exposition::*;
        assert_eq!(Exposition::negotiate(None), OpenMetrics);
        assert_eq!(Exposition::negotiate(Some("*/*")), OpenMetrics);
        assert_eq!(
            Exposition::negotiate(Some("text/plain;version=0.0.4")),
            Prometheus004
        );
        assert_eq!(Exposition::negotiate(Some("text/plain")), Prometheus004);
        assert_eq!(
            Exposition::negotiate(Some("text/plain; version=\"0.0.4\"; q=0.9, */*;q=0.1")),
            Prometheus004
        );
        // Prometheus' own scrape Accept header prefers OpenMetrics.
        assert_eq!(
            Exposition::negotiate(Some("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")),
            OpenMetrics
        );
        assert_eq!(
            Exposition::negotiate(Some(
                "application/openmetrics-text;q=0.2, text/plain;version=0.0.4"
            )),
            Prometheus004
        );
        assert_eq!(
            Exposition::negotiate(Some("text/plain;version=9.9")),
            OpenMetrics
        );
        assert_eq!(
            Prometheus004.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );

        let m = Metrics::new();
        m.http_response(200);
        m.keys_loaded.set(3);
        m.handshake_seconds.observe(0.004);
        let text = m.encode_as(Prometheus004);
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"));
        assert!(
            text.contains("# TYPE warden_ota_http_responses_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP warden_ota_http_responses_total HTTP responses sent"));
        assert!(text.contains("warden_ota_http_responses_total{status=\"200\"} 1\n"));
        assert!(text.contains("# TYPE warden_ota_keys_loaded gauge\nwarden_ota_keys_loaded 3\n"));
        assert!(text.contains("# TYPE warden_ota_handshake_seconds histogram\n"));
        assert!(text.contains("warden_ota_handshake_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.ends_with('\n'));
        assert_eq!(
            openmetrics_to_prometheus_004("# TYPE x unknown\nx 1\n# EOF\n"),
            "# TYPE x untyped\nx 1\n"
        );
    }
}
