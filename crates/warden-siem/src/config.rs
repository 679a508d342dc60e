//! The `siem:` section of the shim's and OTA server's YAML configuration, and its validation
//! into typed settings ("parse, don't validate": everything downstream takes [`SiemSettings`]).
//!
//! ```yaml
//! siem:
//!   host: siem.example.org          # SIEM receiver (name or IP address)
//!   port: 6514                      # RFC 5425 default
//!   ca_file: /etc/warden/siem-ca.pem
//!   client_cert: /etc/warden/shim-12.crt
//!   client_key: /etc/warden/shim-12.key   # 0600, ours; may be sealed (`warden config seal`)
//!   server_name: siem.example.org   # name checked in the server certificate; default: host
//!   hostname: shim-12.ward3.example.org   # RFC 5424 HOSTNAME and CEF dvchost; default: this host
//!   app_name: warden                # RFC 5424 APP-NAME
//!   facility: log_audit             # kern … local7, log_audit, log_alert
//!   device_id: shim-a               # CEF deviceExternalId (optional)
//!   max_message_bytes: 8192         # longer messages have their longest text field shortened
//!   timeouts: { connect_ms: 10000, handshake_ms: 10000, write_ms: 10000 }
//!   delivery: { confirm_after_ms: 2000, batch: 500, max_in_flight: 50000, poll_ms: 1000 }
//!   backoff: { initial_ms: 500, max_ms: 60000 }
//!   spool: { soft_limit: 100000, hard_limit: 1000000, alert_reserve: 10000 }
//! ```
//!
//! Unknown keys are refused (a typo must not silently fall back to a default). Validation errors
//! name the key, e.g. `siem.timeouts.connect_ms: must be at least 1`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use warden_store::spool::SpoolLimits;

use crate::format::cef::CefDevice;
use crate::format::rfc5424::{AppName, Facility, Hostname};
use warden_core::report::report;

/// Why the `siem:` section was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration is not valid YAML for warden")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("the configuration has no `siem:` section")]
    MissingSection,
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Connection and read/write limits, in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    pub connect_ms: u64,
    pub handshake_ms: u64,
    pub write_ms: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            connect_ms: 10_000,
            handshake_ms: 10_000,
            write_ms: 10_000,
        }
    }
}

/// How messages are written and when they count as delivered (see `docs/siem.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// A written message is removed from the spool once the connection has stayed up this long
    /// after the write without the server closing it.
    pub confirm_after_ms: u64,
    /// Messages per write.
    pub batch: usize,
    /// Written but unconfirmed messages at most (resent after a reconnect).
    pub max_in_flight: usize,
    /// How often the spool is looked at when nobody signals new messages.
    pub poll_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            confirm_after_ms: 2_000,
            batch: 500,
            max_in_flight: 50_000,
            poll_ms: 1_000,
        }
    }
}

/// Reconnect delays: exponential from `initial_ms`, capped at `max_ms`, with jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_ms: 500,
            max_ms: 60_000,
        }
    }
}

/// Spool size limits in messages (see `warden_store::spool`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    pub soft_limit: u64,
    pub hard_limit: u64,
    pub alert_reserve: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        let d = SpoolLimits::default();
        Self {
            soft_limit: d.soft_limit,
            hard_limit: d.hard_limit,
            alert_reserve: d.alert_reserve,
        }
    }
}

fn default_port() -> u16 {
    6514
}

fn default_app_name() -> String {
    "warden".into()
}

fn default_facility() -> String {
    "log_audit".into()
}

fn default_max_message_bytes() -> usize {
    8192
}

// Implements: S40
/// The `siem:` section as written in YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub ca_file: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default = "default_app_name")]
    pub app_name: String,
    #[serde(default = "default_facility")]
    pub facility: String,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub backoff: BackoffConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
}

/// A whole configuration file of which only the `siem:` section is read (other sections belong
/// to the shim or the OTA server).
#[derive(Debug, Deserialize)]
struct FileWithSiem {
    siem: Option<SiemConfig>,
}

impl SiemConfig {
    /// Reads the `siem:` section of a YAML document (other top-level keys are ignored).
    pub fn from_yaml_document(text: &[u8]) -> Result<Self, ConfigError> {
        let file: FileWithSiem = serde_yaml_ng::from_slice(text)?;
        file.siem.ok_or(ConfigError::MissingSection)
    }

    /// Checks every value and builds the typed settings.
    pub fn validate(&self) -> Result<SiemSettings, ConfigError> {
        let host = self.host.trim();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "siem.host",
                "must be a host name or IP address without spaces",
            ));
        }
        if self.port == 0 {
            return Err(invalid("siem.port", "must be 1..=65535"));
        }
        let server_name = self.server_name.clone().unwrap_or_else(|| host.to_owned());
        if server_name.is_empty()
            || server_name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "siem.server_name",
                "must be a DNS name or IP address",
            ));
        }
        for (key, path) in [
            ("siem.ca_file", &self.ca_file),
            ("siem.client_cert", &self.client_cert),
            ("siem.client_key", &self.client_key),
        ] {
            if path.as_os_str().is_empty() {
                return Err(invalid(key, "must name a file"));
            }
        }
        let hostname = match &self.hostname {
            Some(name) => Some(
                Hostname::new(name.clone()).map_err(|e| invalid("siem.hostname", report(&e)))?,
            ),
            None => system_hostname(),
        };
        let app_name = AppName::new(self.app_name.clone())
            .map_err(|e| invalid("siem.app_name", report(&e)))?;
        let facility = parse_facility(&self.facility).ok_or_else(|| {
            invalid(
                "siem.facility",
                "must be one of kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, \
                 authpriv, ftp, ntp, log_audit, log_alert, clock, local0 … local7",
            )
        })?;
        if let Some(id) = &self.device_id {
            if id.is_empty() || id.chars().any(char::is_control) {
                return Err(invalid(
                    "siem.device_id",
                    "must be non-empty and without control characters",
                ));
            }
        }
        if self.max_message_bytes < 480 {
            return Err(invalid(
                "siem.max_message_bytes",
                "must be at least 480 (RFC 5425 receivers accept at least 2048)",
            ));
        }
        let ms = |key: &'static str, v: u64| -> Result<Duration, ConfigError> {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
            Ok(Duration::from_millis(v))
        };
        let timeouts = Timeouts {
            connect: ms("siem.timeouts.connect_ms", self.timeouts.connect_ms)?,
            handshake: ms("siem.timeouts.handshake_ms", self.timeouts.handshake_ms)?,
            write: ms("siem.timeouts.write_ms", self.timeouts.write_ms)?,
        };
        if self.delivery.batch == 0 {
            return Err(invalid("siem.delivery.batch", "must be at least 1"));
        }
        if self.delivery.max_in_flight < self.delivery.batch {
            return Err(invalid(
                "siem.delivery.max_in_flight",
                "must be at least siem.delivery.batch",
            ));
        }
        let delivery = DeliveryTuning {
            confirm_after: ms(
                "siem.delivery.confirm_after_ms",
                self.delivery.confirm_after_ms,
            )?,
            batch: self.delivery.batch,
            max_in_flight: self.delivery.max_in_flight,
            poll: ms("siem.delivery.poll_ms", self.delivery.poll_ms)?,
            max_message_bytes: self.max_message_bytes,
        };
        let backoff = BackoffPolicy {
            initial: ms("siem.backoff.initial_ms", self.backoff.initial_ms)?,
            max: ms("siem.backoff.max_ms", self.backoff.max_ms)?,
        };
        if backoff.max < backoff.initial {
            return Err(invalid(
                "siem.backoff.max_ms",
                "must be at least siem.backoff.initial_ms",
            ));
        }
        let spool = SpoolLimits {
            soft_limit: self.spool.soft_limit,
            hard_limit: self.spool.hard_limit,
            alert_reserve: self.spool.alert_reserve,
        };
        if spool.soft_limit == 0 {
            return Err(invalid("siem.spool.soft_limit", "must be at least 1"));
        }
        if spool.hard_limit < spool.soft_limit {
            return Err(invalid(
                "siem.spool.hard_limit",
                "must be at least siem.spool.soft_limit",
            ));
        }
        Ok(SiemSettings {
            endpoint: Endpoint {
                host: host.to_owned(),
                port: self.port,
                server_name,
            },
            files: TlsFiles {
                ca_file: self.ca_file.clone(),
                client_cert: self.client_cert.clone(),
                client_key: self.client_key.clone(),
            },
            identity: MessageIdentity {
                hostname,
                app_name,
                facility,
                device: CefDevice::warden(),
                device_id: self.device_id.clone(),
            },
            timeouts,
            delivery,
            backoff,
            spool,
        })
    }
}

/// Where the SIEM is and which name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Checked against the server certificate (DNS name or IP address) and sent as SNI.
    pub server_name: String,
}

/// The certificate files (the key file is read with owner and mode checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Who is speaking, in every message's RFC 5424 header and CEF payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageIdentity {
    /// RFC 5424 HOSTNAME and CEF `dvchost`; `None` writes the NILVALUE.
    pub hostname: Option<Hostname>,
    pub app_name: AppName,
    pub facility: Facility,
    pub device: CefDevice,
    /// CEF `deviceExternalId`.
    pub device_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub handshake: Duration,
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let c = TimeoutsConfig::default();
        Self {
            connect: Duration::from_millis(c.connect_ms),
            handshake: Duration::from_millis(c.handshake_ms),
            write: Duration::from_millis(c.write_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryTuning {
    pub confirm_after: Duration,
    pub batch: usize,
    pub max_in_flight: usize,
    pub poll: Duration,
    pub max_message_bytes: usize,
}

impl Default for DeliveryTuning {
    fn default() -> Self {
        let d = DeliveryConfig::default();
        Self {
            confirm_after: Duration::from_millis(d.confirm_after_ms),
            batch: d.batch,
            max_in_flight: d.max_in_flight,
            poll: Duration::from_millis(d.poll_ms),
            max_message_bytes: default_max_message_bytes(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        let b = BackoffConfig::default();
        Self {
            initial: Duration::from_millis(b.initial_ms),
            max: Duration::from_millis(b.max_ms),
        }
    }
}

/// The validated `siem:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiemSettings {
    pub endpoint: Endpoint,
    pub files: TlsFiles,
    pub identity: MessageIdentity,
    pub timeouts: Timeouts,
    pub delivery: DeliveryTuning,
    pub backoff: BackoffPolicy,
    pub spool: SpoolLimits,
}

impl SiemSettings {
    /// Reads and validates the `siem:` section of a plain YAML file.
    pub fn from_yaml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SiemConfig::from_yaml_document(&text)?.validate()
    }
}

/// Facility names as in syslog.conf, plus `log_audit` / `log_alert` (also `audit` / `alert`).
pub fn parse_facility(name: &str) -> Option<Facility> {
    use Facility::*;
    Some(match name.to_ascii_lowercase().as_str() {
        "kern" => Kern,
        "user" => User,
        "mail" => Mail,
        "daemon" => Daemon,
        "auth" => Auth,
        "syslog" => Syslog,
        "lpr" => Lpr,
        "news" => News,
        "uucp" => Uucp,
        "cron" => Cron,
        "authpriv" => AuthPriv,
        "ftp" => Ftp,
        "ntp" => Ntp,
        "log_audit" | "audit" => LogAudit,
        "log_alert" | "alert" => LogAlert,
        "clock" => Clock,
        "local0" => Local0,
        "local1" => Local1,
        "local2" => Local2,
        "local3" => Local3,
        "local4" => Local4,
        "local5" => Local5,
        "local6" => Local6,
        "local7" => Local7,
        _ => return None,
    })
}

/// This machine's host name, if it is a valid RFC 5424 HOSTNAME.
fn system_hostname() -> Option<Hostname> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Hostname::new(name.trim().to_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
siem:
  host: siem.example.org
  ca_file: /etc/warden/ca.pem
  client_cert: /etc/warden/c.pem
  client_key: /etc/warden/c.key
other_section:
  anything: goes
";

    /// Verifies: S40
    #[test]
    fn minimal_section_gets_defaults() {
        let s = SiemConfig::from_yaml_document(MINIMAL.as_bytes())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.endpoint.port, 6514);
        assert_eq!(s.endpoint.server_name, "siem.example.org");
        assert_eq!(s.identity.facility, Facility::LogAudit);
        assert_eq!(s.identity.app_name.as_str(), "warden");
        assert_eq!(s.delivery, DeliveryTuning::default());
        assert_eq!(s.spool, SpoolLimits::default());
    }

    /// docs/siem.md's key table is the section's reference: every key it lists is accepted, its
    /// stated default is the real one, its required keys are required, and serde accepts no key
    /// the table does not list (read from serde's own "expected one of" list at every level).
    /// Verifies: S40
    #[test]
    fn the_documented_keys_are_the_accepted_keys() {
        let doc = include_str!("../../../docs/siem.md");
        let section = doc.split("## The `siem:` section").nth(1).unwrap();
        let section = section.split("\n## ").next().unwrap();
        let rows: Vec<(String, bool, String)> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let key = cells[1].strip_prefix('`')?.strip_suffix('`')?;
                Some((
                    key.to_owned(),
                    cells[2] == "yes",
                    cells[3].trim_matches('`').to_owned(),
                ))
            })
            .collect();
        assert!(rows.len() >= 20, "{rows:?}");

        // Every key serde knows, level by level.
        let expected = |yaml: &str| -> Vec<String> {
            let err = serde_yaml_ng::from_str::<FileWithSiem>(yaml)
                .err()
                .unwrap()
                .to_string();
            let list = err
                .split("expected one of ")
                .nth(1)
                .unwrap_or_else(|| err.split("expected ").nth(1).unwrap());
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let mut accepted = expected("siem: { bogus: 1 }");
        for nested in ["timeouts", "delivery", "backoff", "spool"] {
            accepted.extend(
                expected(&format!("siem: {{ {nested}: {{ bogus: 1 }} }}"))
                    .into_iter()
                    .map(|k| format!("{nested}.{k}")),
            );
            accepted.retain(|k| k != nested);
        }
        let mut documented: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        accepted.sort();
        documented.sort();
        assert_eq!(documented, accepted);

        // Documented defaults, written out, give the settings the defaults give.
        let base = SiemConfig::from_yaml_document(MINIMAL.as_bytes()).unwrap();
        let mut explicit = MINIMAL.replace("other_section:\n  anything: goes\n", "");
        let mut nested: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (key, required, default) in &rows {
            if *required
                || default.is_empty()
                || default == "none"
                || default.contains(' ')
                || key == "server_name"
            {
                continue; // required, or a default described in words
            }
            match key.split_once('.') {
                Some((group, leaf)) => nested
                    .entry(group)
                    .or_default()
                    .push(format!("{leaf}: {default}")),
                None => explicit.push_str(&format!("  {key}: {default}\n")),
            }
        }
        for (group, items) in nested {
            explicit.push_str(&format!("  {group}: {{ {} }}\n", items.join(", ")));
        }
        let written = SiemConfig::from_yaml_document(explicit.as_bytes()).unwrap();
        assert_eq!(format!("{written:?}"), format!("{base:?}"), "{explicit}");

        // Required keys are required.
        for (key, required, _) in &rows {
            if *required {
                let without: String = MINIMAL
                    .lines()
                    .filter(|l| !l.trim_start().starts_with(&format!("{key}:")))
                    .map(|l| format!("{l}\n"))
                    .collect();
                assert!(
                    SiemConfig::from_yaml_document(without.as_bytes()).is_err(),
                    "{key} documented as required"
                );
            }
        }
    }

    fn with(extra: &str) -> Result<SiemSettings, ConfigError> {
        let doc = format!(
            "{}  {extra}\n",
            MINIMAL.replace("other_section:\n  anything: goes\n", "")
        );
        SiemConfig::from_yaml_document(doc.as_bytes())?.validate()
    }

    fn key_of(r: Result<SiemSettings, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { key, .. }) => key.to_string(),
            Err(other) => format!("other: {other}"),
            Ok(_) => "ok".into(),
        }
    }

    /// Verifies: S40
    #[test]
    fn validation_errors_name_the_key() {
        assert_eq!(key_of(with("port: 0")), "siem.port");
        assert_eq!(key_of(with("facility: local9")), "siem.facility");
        assert_eq!(key_of(with("hostname: \"two words\"")), "siem.hostname");
        assert_eq!(key_of(with("server_name: \"\"")), "siem.server_name");
        assert_eq!(
            key_of(with("timeouts: { connect_ms: 0 }")),
            "siem.timeouts.connect_ms"
        );
        assert_eq!(
            key_of(with("delivery: { batch: 0 }")),
            "siem.delivery.batch"
        );
        assert_eq!(
            key_of(with("backoff: { initial_ms: 10, max_ms: 5 }")),
            "siem.backoff.max_ms"
        );
        assert_eq!(
            key_of(with("spool: { soft_limit: 10, hard_limit: 5 }")),
            "siem.spool.hard_limit"
        );
        assert_eq!(
            key_of(with("max_message_bytes: 100")),
            "siem.max_message_bytes"
        );
        assert_eq!(key_of(with("facility: LOCAL4")), "ok");
    }

    #[test]
    fn unknown_keys_and_missing_section_are_refused() {
        let err = with("prot: 1").unwrap_err();
        let text = warden_core::report::report(&err);
        assert!(text.contains("prot"), "{text}");
        assert!(matches!(
            SiemConfig::from_yaml_document(b"shim: {}\n"),
            Err(ConfigError::MissingSection)
        ));
        assert!(matches!(
            SiemConfig::from_yaml_document(b"siem: [1, 2]\n"),
            Err(ConfigError::Yaml(_))
        ));
    }
}
