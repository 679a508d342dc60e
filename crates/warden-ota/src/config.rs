//! `ota.yaml`: the server's configuration, parsed once into typed values.
//!
//! Unknown keys are refused, and every error names the key path (`tls.handshake_timeout_secs`)
//! and the line. Durations are whole seconds; limits are checked here, not at use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tls::CipherGroups;
use warden_core::report::report;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {key}: {message}")]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

/// Where a YAML document failed to parse (`a.b[0]`) and why, the path said once (the parser
/// repeats it in the message of nested errors).
pub(crate) fn yaml_error(e: &serde_path_to_error::Error<serde_yaml_ng::Error>) -> (String, String) {
    let key = e.path().to_string();
    let message = e.inner().to_string();
    let message = match message.strip_prefix(&format!("{key}: ")) {
        Some(rest) => rest.to_owned(),
        None => message,
    };
    (key, message)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_admin_path")]
    admin_path: String,
    #[serde(default)]
    expected_host: Option<String>,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default)]
    max_handshakes: Option<usize>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    errors: RawErrors,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    dashboard: Option<RawDashboard>,
    /// Read by warden-siem (docs/siem.md); here only whether it is there.
    #[serde(default)]
    siem: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default = "yes")]
    production: bool,
    #[serde(default)]
    legacy: bool,
    #[serde(default)]
    null_ciphers: bool,
    #[serde(default = "yes")]
    tls13: bool,
    #[serde(default = "default_handshake_timeout")]
    handshake_timeout_secs: u64,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            production: true,
            legacy: false,
            null_ciphers: false,
            tls13: true,
            handshake_timeout_secs: default_handshake_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    #[serde(default = "default_idle")]
    idle_timeout_secs: u64,
    #[serde(default = "default_session_timeout")]
    session_timeout_secs: u64,
    #[serde(default = "default_resume_window")]
    resume_window_secs: u64,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
}

impl Default for RawSessions {
    fn default() -> Self {
        Self {
            idle_timeout_secs: default_idle(),
            session_timeout_secs: default_session_timeout(),
            resume_window_secs: default_resume_window(),
            max_body_bytes: default_max_body(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErrors {
    #[serde(default = "default_mismatch_threshold")]
    psk_mismatch_threshold: u32,
    #[serde(default = "default_window")]
    psk_mismatch_window_secs: u64,
    #[serde(default = "default_error_rate")]
    error_rate_threshold: f64,
    #[serde(default = "default_window")]
    error_rate_window_secs: u64,
    #[serde(default = "default_error_rate_min")]
    error_rate_min_connections: u32,
}

impl Default for RawErrors {
    fn default() -> Self {
        Self {
            psk_mismatch_threshold: default_mismatch_threshold(),
            psk_mismatch_window_secs: default_window(),
            error_rate_threshold: default_error_rate(),
            error_rate_window_secs: default_window(),
            error_rate_min_connections: default_error_rate_min(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default = "yes")]
    database: bool,
    #[serde(default = "default_reload")]
    reload_secs: u64,
}

impl Default for RawKeys {
    fn default() -> Self {
        Self {
            file: None,
            database: true,
            reload_secs: default_reload(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    #[serde(default)]
    jsonl: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    tls: Option<RawDashboardTls>,
    #[serde(default = "yes")]
    sign_in: bool,
    #[serde(default = "yes")]
    require_totp: bool,
    #[serde(default = "default_web_idle")]
    session_idle_secs: u64,
    #[serde(default = "default_web_max")]
    session_max_secs: u64,
    #[serde(default = "default_web_sessions")]
    max_sessions: usize,
    #[serde(default)]
    metrics_token_file: Option<PathBuf>,
    #[serde(default = "default_stats_interval")]
    stats_interval_secs: u64,
    #[serde(default)]
    alarms: RawAlarms,
}

impl Default for RawDashboard {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("dashboard defaults parse")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboardTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlarms {
    #[serde(default = "default_burst")]
    psk_failure_burst: u32,
    #[serde(default = "default_window")]
    psk_failure_window_secs: u64,
    #[serde(default = "default_error_rate")]
    error_rate_threshold: f64,
    #[serde(default = "default_window")]
    error_rate_window_secs: u64,
    #[serde(default = "default_alarm_min")]
    error_rate_min_connections: u32,
}

impl Default for RawAlarms {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("alarm defaults parse")
    }
}

fn yes() -> bool {
    true
}
fn default_listen() -> String {
    "127.0.0.1:8443".into()
}
fn default_admin_path() -> String {
    "/admin".into()
}
fn default_max_connections() -> usize {
    10_000
}
fn default_handshake_timeout() -> u64 {
    30
}
fn default_idle() -> u64 {
    60
}
fn default_session_timeout() -> u64 {
    300
}
fn default_resume_window() -> u64 {
    300
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_mismatch_threshold() -> u32 {
    3
}
fn default_window() -> u64 {
    60
}
fn default_error_rate() -> f64 {
    0.5
}
fn default_error_rate_min() -> u32 {
    20
}
fn default_reload() -> u64 {
    2
}
fn default_web_idle() -> u64 {
    900
}
fn default_web_max() -> u64 {
    8 * 3600
}
fn default_web_sessions() -> usize {
    256
}
fn default_stats_interval() -> u64 {
    2
}
fn default_burst() -> u32 {
    10
}
fn default_alarm_min() -> u32 {
    10
}

/// Where PSKs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySources {
    /// A YAML key file (`keys: - identity: …  key: <hex>`), re-read when it changes.
    pub file: Option<PathBuf>,
    /// The `ota_cards` table of the database.
    pub database: bool,
    /// How often the sources are checked for changes.
    pub reload: Duration,
}

/// Thresholds for the error events.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorPolicy {
    /// PSK mismatches from one source address within `psk_mismatch_window` that raise the
    /// `psk_mismatch_threshold` warning.
    pub psk_mismatch_threshold: u32,
    pub psk_mismatch_window: Duration,
    /// Share of failed connections within `error_rate_window` that raises `high_error_rate`,
    /// once at least `error_rate_min_connections` were seen in the window.
    pub error_rate_threshold: f64,
    pub error_rate_window: Duration,
    pub error_rate_min_connections: u32,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        let e = RawErrors::default();
        Self {
            psk_mismatch_threshold: e.psk_mismatch_threshold,
            psk_mismatch_window: Duration::from_secs(e.psk_mismatch_window_secs),
            error_rate_threshold: e.error_rate_threshold,
            error_rate_window: Duration::from_secs(e.error_rate_window_secs),
            error_rate_min_connections: e.error_rate_min_connections,
        }
    }
}

/// The dashboard's HTTPS certificate chain and private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardTls {
    pub cert: PathBuf,
    /// Must be 0600, ours, not a symlink (read with `fsx::read_private`).
    pub key: PathBuf,
}

/// When the dashboard raises an alarm (computed from the event stream, see
/// [`crate::dashboard::alarms`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmPolicy {
    /// PSK failures (a wrong key for a known identity, or an unknown identity), from any
    /// source, within `psk_failure_window` that raise `psk_failure_burst`.
    pub psk_failure_burst: u32,
    pub psk_failure_window: Duration,
    /// Share of failed connections within `error_rate_window` that raises `high_error_rate`,
    /// once at least `error_rate_min_connections` ended in the window.
    pub error_rate_threshold: f64,
    pub error_rate_window: Duration,
    pub error_rate_min_connections: u32,
}

impl Default for AlarmPolicy {
    fn default() -> Self {
        DashboardConfig::with_defaults(SocketAddr::from(([127, 0, 0, 1], 0))).alarms
    }
}

/// The operator dashboard (see [`crate::dashboard`]).
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub listen: SocketAddr,
    /// HTTPS with this certificate; required for a non-loopback `listen`.
    pub tls: Option<DashboardTls>,
    /// Sign-in with warden users (required for a non-loopback `listen`). Without it the
    /// dashboard serves only `/metrics` and the read-only JSON of live sessions and events.
    pub sign_in: bool,
    /// Refuse users without a TOTP enrollment (a password alone does not open the dashboard).
    pub require_totp: bool,
    /// A dashboard session ends after this long without a request ...
    pub session_idle: Duration,
    /// ... and this long after sign-in, whatever happens.
    pub session_max: Duration,
    /// Dashboard sessions held at once; past it, a sign-in is refused until one ends.
    pub max_sessions: usize,
    /// A file holding the bearer token that `/metrics` requires (0600). Without it `/metrics`
    /// is open on a loopback address and needs a signed-in session on any other.
    pub metrics_token_file: Option<PathBuf>,
    /// How often the live view gets sessions by state, cards and queue depth.
    pub stats_interval: Duration,
    pub alarms: AlarmPolicy,
}

impl DashboardConfig {
    /// The defaults, listening on `listen` (for code that builds its configuration; a
    /// configuration file's `listen` is checked when parsed, and [`crate::dashboard::Dashboard`]
    /// checks the listener again).
    pub fn with_defaults(listen: SocketAddr) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = Self::from_raw(Path::new("<defaults>"), loopback, RawDashboard::default())
            .expect("dashboard defaults are valid");
        config.listen = listen;
        config
    }

    fn from_raw(path: &Path, listen: SocketAddr, raw: RawDashboard) -> Result<Self, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let secs = |key: &'static str, v: u64| {
            if v == 0 || v > 7 * 86_400 {
                Err(invalid(key, format!("{v} is not 1 to 604800 seconds")))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        if !listen.ip().is_loopback() {
            if raw.tls.is_none() {
                return Err(invalid(
                    "dashboard.listen",
                    format!("{listen} is not a loopback address: a dashboard reachable from the network needs dashboard.tls (cert and key)"),
                ));
            }
            if !raw.sign_in {
                return Err(invalid(
                    "dashboard.listen",
                    format!("{listen} is not a loopback address: a dashboard reachable from the network needs dashboard.sign_in"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&raw.alarms.error_rate_threshold) {
            return Err(invalid(
                "dashboard.alarms.error_rate_threshold",
                "must be between 0 and 1".into(),
            ));
        }
        if raw.alarms.psk_failure_burst == 0 {
            return Err(invalid(
                "dashboard.alarms.psk_failure_burst",
                "must be at least 1".into(),
            ));
        }
        if raw.max_sessions == 0 || raw.max_sessions > 100_000 {
            return Err(invalid(
                "dashboard.max_sessions",
                "must be 1 to 100000".into(),
            ));
        }
        let session_idle = secs("dashboard.session_idle_secs", raw.session_idle_secs)?;
        let session_max = secs("dashboard.session_max_secs", raw.session_max_secs)?;
        if session_idle > session_max {
            return Err(invalid(
                "dashboard.session_idle_secs",
                "must not exceed dashboard.session_max_secs".into(),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        Ok(Self {
            listen,
            tls: raw.tls.map(|t| DashboardTls {
                cert: resolve(t.cert),
                key: resolve(t.key),
            }),
            sign_in: raw.sign_in,
            require_totp: raw.require_totp,
            session_idle,
            session_max,
            max_sessions: raw.max_sessions,
            metrics_token_file: raw.metrics_token_file.map(resolve),
            stats_interval: secs("dashboard.stats_interval_secs", raw.stats_interval_secs)?,
            alarms: AlarmPolicy {
                psk_failure_burst: raw.alarms.psk_failure_burst,
                psk_failure_window: secs(
                    "dashboard.alarms.psk_failure_window_secs",
                    raw.alarms.psk_failure_window_secs,
                )?,
                error_rate_threshold: raw.alarms.error_rate_threshold,
                error_rate_window: secs(
                    "dashboard.alarms.error_rate_window_secs",
                    raw.alarms.error_rate_window_secs,
                )?,
                error_rate_min_connections: raw.alarms.error_rate_min_connections.max(1),
            },
        })
    }
}

// Implements: O5, O60, O61, O62, O63
/// The server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The path of the card's first POST (the admin URI configured on the card).
    pub admin_path: String,
    /// If set, the `Host` header must name this host.
    pub expected_host: Option<String>,
    /// Connections held at once (handshaking and established).
    pub max_connections: usize,
    /// Connections in the TLS handshake at once; past it the oldest handshake is dropped, so
    /// silent or slow clients cannot crowd out real cards.
    pub max_handshakes: usize,
    pub ciphers: CipherGroups,
    pub handshake_timeout: Duration,
    /// Longest wait for the card's next request (or the rest of a request body).
    pub idle_timeout: Duration,
    /// Longest admin session, from the handshake on.
    pub session_timeout: Duration,
    /// How long an unfinished admin session is kept for a card to resume on a new connection.
    pub resume_window: Duration,
    pub max_body: usize,
    pub errors: ErrorPolicy,
    pub keys: KeySources,
    /// Events as JSON lines to this file (`-` for standard output).
    pub events_jsonl: Option<PathBuf>,
    /// The operator dashboard, REST and `/metrics`.
    pub dashboard: Option<DashboardConfig>,
    /// SIEM forwarding (the `siem:` section, docs/siem.md): when absent, audit records are not
    /// queued for a SIEM at all (a queue nobody drains would fill and refuse records).
    pub siem: Option<warden_siem::SiemSettings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::from_raw(
            Path::new("<defaults>"),
            serde_yaml_ng::from_str::<RawConfig>("{}").expect("defaults parse"),
        )
        .expect("defaults are valid")
    }
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let (key, message) = yaml_error(&e);
            ConfigError::Parse {
                path: path.to_path_buf(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message,
            }
        })?;
        let siem = match raw.siem {
            None => None,
            Some(_) => Some(
                warden_siem::SiemConfig::from_yaml_document(text.as_bytes())
                    .and_then(|c| c.validate())
                    .map_err(|e| ConfigError::Invalid {
                        path: path.to_path_buf(),
                        key: "siem",
                        message: report(&e),
                    })?,
            ),
        };
        Ok(Self {
            siem,
            ..Self::from_raw(path, raw)?
        })
    }

    fn from_raw(path: &Path, raw: RawConfig) -> Result<Self, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let listen: SocketAddr = raw
            .listen
            .parse()
            .map_err(|e| invalid("listen", format!("{:?} is not IP:PORT ({e})", raw.listen)))?;
        crate::admin::SessionConfig::new(raw.admin_path.clone(), "check")
            .map_err(|e| invalid("admin_path", report(&e)))?;
        if raw.max_connections == 0 || raw.max_connections > 1_000_000 {
            return Err(invalid(
                "max_connections",
                "must be 1 to 1000000".to_string(),
            ));
        }
        let max_handshakes = raw
            .max_handshakes
            .unwrap_or_else(|| (raw.max_connections / 4).clamp(1, 4096));
        if max_handshakes == 0 || max_handshakes > raw.max_connections {
            return Err(invalid(
                "max_handshakes",
                "must be 1 to max_connections".into(),
            ));
        }
        let secs = |key: &'static str, v: u64| {
            if v == 0 || v > 86_400 {
                Err(invalid(key, format!("{v} is not 1 to 86400 seconds")))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        let ciphers = CipherGroups {
            production: raw.tls.production,
            legacy: raw.tls.legacy,
            null: raw.tls.null_ciphers,
            tls13: raw.tls.tls13,
        };
        if !ciphers.production && !ciphers.legacy && !ciphers.null && !ciphers.tls13 {
            return Err(invalid(
                "tls",
                "every cipher group is disabled; enable at least one".into(),
            ));
        }
        if !(0.0..=1.0).contains(&raw.errors.error_rate_threshold) {
            return Err(invalid(
                "errors.error_rate_threshold",
                "must be between 0 and 1".into(),
            ));
        }
        if raw.errors.psk_mismatch_threshold == 0 {
            return Err(invalid(
                "errors.psk_mismatch_threshold",
                "must be at least 1".into(),
            ));
        }
        if raw.sessions.max_body_bytes < 64 || raw.sessions.max_body_bytes > 16 << 20 {
            return Err(invalid(
                "sessions.max_body_bytes",
                "must be 64 bytes to 16 MiB".into(),
            ));
        }
        let dashboard = match raw.dashboard {
            None => None,
            Some(d) => match d.listen.clone() {
                // Settings for a dashboard that would not run are a mistake, not a choice.
                None => {
                    return Err(invalid(
                        "dashboard.listen",
                        "missing: a dashboard: section needs listen (IP:PORT); without the section there is no dashboard".into(),
                    ))
                }
                Some(s) => {
                    let addr: SocketAddr = s.parse().map_err(|e| {
                        invalid("dashboard.listen", format!("{s:?} is not IP:PORT ({e})"))
                    })?;
                    Some(DashboardConfig::from_raw(path, addr, d)?)
                }
            },
        };
        if raw.keys.file.is_none() && !raw.keys.database {
            return Err(invalid(
                "keys",
                "no key source: set keys.file or keys.database".into(),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| {
            if p.is_relative() && p != Path::new("-") {
                base.join(p)
            } else {
                p
            }
        };
        Ok(Self {
            listen,
            admin_path: raw.admin_path,
            expected_host: raw.expected_host,
            max_connections: raw.max_connections,
            max_handshakes,
            ciphers,
            handshake_timeout: secs("tls.handshake_timeout_secs", raw.tls.handshake_timeout_secs)?,
            idle_timeout: secs("sessions.idle_timeout_secs", raw.sessions.idle_timeout_secs)?,
            session_timeout: secs(
                "sessions.session_timeout_secs",
                raw.sessions.session_timeout_secs,
            )?,
            resume_window: secs(
                "sessions.resume_window_secs",
                raw.sessions.resume_window_secs,
            )?,
            max_body: raw.sessions.max_body_bytes,
            errors: ErrorPolicy {
                psk_mismatch_threshold: raw.errors.psk_mismatch_threshold,
                psk_mismatch_window: secs(
                    "errors.psk_mismatch_window_secs",
                    raw.errors.psk_mismatch_window_secs,
                )?,
                error_rate_threshold: raw.errors.error_rate_threshold,
                error_rate_window: secs(
                    "errors.error_rate_window_secs",
                    raw.errors.error_rate_window_secs,
                )?,
                error_rate_min_connections: raw.errors.error_rate_min_connections.max(1),
            },
            keys: KeySources {
                file: raw.keys.file.map(resolve),
                database: raw.keys.database,
                reload: secs("keys.reload_secs", raw.keys.reload_secs)?,
            },
            events_jsonl: raw.events.jsonl.map(resolve),
            dashboard,
            siem: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::parse(Path::new("/etc/warden/ota.yaml"), text)
    }

    /// Verifies: O6, O60
    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.max_handshakes, 2500);
        assert!(c.ciphers.production && c.ciphers.tls13 && !c.ciphers.null && !c.ciphers.legacy);
        assert_eq!(c.handshake_timeout, Duration::from_secs(30));
        assert!(c.keys.database && c.keys.file.is_none());
    }

    /// Seed 003's timeouts and thresholds are the defaults (socket timeout: `idle_timeout`).
    /// Verifies: O29, O61, O63
    #[test]
    fn seed_timeouts_and_thresholds_are_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.handshake_timeout, Duration::from_secs(30));
        assert_eq!(c.session_timeout, Duration::from_secs(300));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.errors.psk_mismatch_threshold, 3);
        assert_eq!(c.errors.psk_mismatch_window, Duration::from_secs(60));
        assert_eq!(c.errors.error_rate_threshold, 0.5);
    }

    /// Verifies: O5, O62
    #[test]
    fn full_file_and_relative_paths() {
        let c = parse(
            "listen: 0.0.0.0:9000\nadmin_path: /ram\nmax_connections: 20000\ntls:\n  null_ciphers: true\n  legacy: true\n  handshake_timeout_secs: 5\nkeys:\n  file: psk_keys.yaml\n  database: false\nevents:\n  jsonl: events.jsonl\ndashboard:\n  listen: 127.0.0.1:9443\n",
        )
        .unwrap();
        assert_eq!(c.admin_path, "/ram");
        assert!(c.ciphers.null && c.ciphers.legacy);
        assert_eq!(
            c.keys.file.as_deref(),
            Some(Path::new("/etc/warden/psk_keys.yaml"))
        );
        assert_eq!(
            c.events_jsonl.as_deref(),
            Some(Path::new("/etc/warden/events.jsonl"))
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("tls:\n  handshake_timeout_secs: soon\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.handshake_timeout_secs"), "{e}");
        let e = parse("tls:\n  nul_ciphers: true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nul_ciphers"), "{e}");
        let e = parse("dashboard:\n  listen: 0.0.0.0:80\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dashboard.listen") && e.contains("loopback"),
            "{e}"
        );
        let e = parse("admin_path: admin\n").unwrap_err().to_string();
        assert!(e.contains("admin_path"), "{e}");
        let e = parse("tls:\n  production: false\n  tls13: false\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("every cipher group"), "{e}");
        assert!(parse("max_connections: 0\n").is_err());
        assert!(parse("sessions:\n  idle_timeout_secs: 0\n").is_err());
        assert!(parse("keys:\n  database: false\n").is_err());
    }

    #[test]
    fn dashboard_leaves_loopback_only_with_tls_and_sign_in() {
        let c = parse("dashboard:\n  listen: 127.0.0.1:9443\n").unwrap();
        let d = c.dashboard.unwrap();
        assert!(d.sign_in && d.require_totp && d.tls.is_none());
        assert_eq!(d.session_idle, Duration::from_secs(900));
        assert_eq!(d.alarms.psk_failure_burst, 10);
        let c = parse(
            "dashboard:\n  listen: 0.0.0.0:9443\n  tls: {cert: dash.pem, key: dash.key}\n  metrics_token_file: metrics.token\n  alarms:\n    psk_failure_burst: 3\n",
        )
        .unwrap();
        let d = c.dashboard.unwrap();
        assert_eq!(
            d.tls.unwrap().key,
            Path::new("/etc/warden/dash.key").to_path_buf()
        );
        assert_eq!(d.alarms.psk_failure_burst, 3);
        assert_eq!(
            d.metrics_token_file.as_deref(),
            Some(Path::new("/etc/warden/metrics.token"))
        );
        let e = parse(
            "dashboard:\n  listen: 0.0.0.0:9443\n  tls: {cert: a, key: b}\n  sign_in: false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dashboard.sign_in"), "{e}");
        let e = parse("dashboard:\n  listen: 10.0.0.1:9443\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dashboard.tls"), "{e}");
        let e = parse("dashboard:\n  listen: 127.0.0.1:1\n  session_idle_secs: 99999\n  session_max_secs: 60\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("session_idle_secs"), "{e}");
        assert!(parse(
            "dashboard:\n  listen: 127.0.0.1:1\n  alarms:\n    error_rate_threshold: 2\n"
        )
        .is_err());
        assert!(parse("dashboard:\n  listen: 127.0.0.1:1\n  sing_in: true\n").is_err());
        // A nested parse error names its path once.
        let e = parse("dashboard:\n  listen: 127.0.0.1:1\n  tls:\n    cert: a.pem\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e.matches("dashboard.tls").count(), 1, "{e}");
        assert!(e.contains("missing field `key`"), "{e}");
        // A section without listen would run no dashboard, its settings unchecked.
        let e = parse("dashboard:\n  metrics_token_file: nope\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dashboard.listen"), "{e}");
        assert!(parse("listen: 127.0.0.1:8443\n")
            .unwrap()
            .dashboard
            .is_none());
    }
}
