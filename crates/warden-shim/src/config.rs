//! The shim's YAML configuration (seed 000), parsed once at start into typed values.
//!
//! Every value is checked while it is parsed, so an error names the key and the line
//! (`technician_port.baud: … at line 7 column 9`). Unknown keys are errors: a typo must not
//! silently fall back to a default. There is no live reconfiguration: the daemon reads this
//! once (seed 000), and its SHA-256 goes into every recording's metadata.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::machine::MachineConfig;
use crate::prompt::PromptLimits;
use crate::serial::{DataBits, FlowControl, LineSettings, Parity, StopBits};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Yaml(String),
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// A baud rate: 50 to 4,000,000 (9600–115200 is typical for service ports).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "u32")]
pub struct Baud(pub u32);

impl TryFrom<u32> for Baud {
    type Error = String;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        if (50..=4_000_000).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!("baud rate {value} is outside 50..=4000000"))
        }
    }
}

/// A duration given in whole seconds, at least 1.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "u64")]
pub struct Seconds(pub u64);

impl TryFrom<u64> for Seconds {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        if (1..=30 * 24 * 3600).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!("{value} seconds is outside 1..=2592000"))
        }
    }
}

impl Seconds {
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub path: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: Baud,
    #[serde(default = "default_data_bits")]
    pub data_bits: DataBits,
    #[serde(default = "default_parity")]
    pub parity: Parity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: StopBits,
    #[serde(default = "default_flow")]
    pub flow_control: FlowControl,
    /// Treat a drop of DCD as the technician disconnecting (ports with modem-status lines).
    #[serde(default)]
    pub disconnect_on_carrier_loss: bool,
}

fn default_baud() -> Baud {
    Baud(115_200)
}
fn default_data_bits() -> DataBits {
    DataBits::Eight
}
fn default_parity() -> Parity {
    Parity::None
}
fn default_stop_bits() -> StopBits {
    StopBits::One
}
fn default_flow() -> FlowControl {
    FlowControl::None
}

impl EndpointConfig {
    pub fn line_settings(&self) -> LineSettings {
        LineSettings {
            baud: self.baud.0,
            data_bits: self.data_bits,
            parity: self.parity,
            stop_bits: self.stop_bits,
            flow_control: self.flow_control,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutConfig {
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_lockout_window")]
    pub window_secs: Seconds,
}

fn default_max_failures() -> u32 {
    5
}
fn default_lockout_window() -> Seconds {
    Seconds(60)
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            max_failures: default_max_failures(),
            window_secs: default_lockout_window(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpConfig {
    /// Time steps accepted before and after the current one (clock drift).
    #[serde(default = "default_window")]
    pub window: u8,
}

fn default_window() -> u8 {
    1
}

impl Default for TotpConfig {
    fn default() -> Self {
        Self { window: 1 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeConfig {
    #[serde(default = "default_challenge_timeout")]
    pub timeout_secs: Seconds,
    #[serde(default = "default_max_id")]
    pub max_id_length: usize,
}

fn default_challenge_timeout() -> Seconds {
    Seconds(60)
}
fn default_max_id() -> usize {
    64
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        Self {
            timeout_secs: default_challenge_timeout(),
            max_id_length: default_max_id(),
        }
    }
}

// Implements: S39
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: Seconds,
    /// `~.` at the start of a line ends the session.
    #[serde(default = "default_true")]
    pub escape_sequence: bool,
}

fn default_idle() -> Seconds {
    Seconds(900)
}
fn default_true() -> bool {
    true
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: default_idle(),
            escape_sequence: true,
        }
    }
}

// Implements: S39
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Buffered traffic is sealed into a segment and synced at least this often, so a crash
    /// loses at most this much.
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
    /// Total size allowed for `sessions/`; beyond it storage counts as exhausted.
    #[serde(default = "default_budget")]
    pub budget_bytes: u64,
    /// How far the recorder may fall behind the data path before that counts as exhausted
    /// storage (a stalled disk must never stall forwarding).
    #[serde(default = "default_backlog")]
    pub max_backlog_bytes: u64,
}

fn default_flush_ms() -> u64 {
    1000
}
fn default_budget() -> u64 {
    10 * 1024 * 1024 * 1024
}
fn default_backlog() -> u64 {
    64 * 1024 * 1024
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            flush_interval_ms: default_flush_ms(),
            budget_bytes: default_budget(),
            max_backlog_bytes: default_backlog(),
        }
    }
}

// Implements: S14
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    #[serde(default = "default_heartbeat")]
    pub interval_secs: Seconds,
}

fn default_heartbeat() -> Seconds {
    Seconds(60)
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval_secs: default_heartbeat(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    /// The GPIO character device, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    pub line: u32,
    /// The switch pulls the line low when the case opens.
    #[serde(default)]
    pub active_low: bool,
    /// A missing chip or line is reported (log and `shim.tamper.unavailable` in the audit
    /// chain) instead of refusing to start: for one configuration shared by boxes with and
    /// without the switch.
    #[serde(default)]
    pub optional: bool,
}

// Implements: S41
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TamperConfig {
    /// Tamper when this file appears (a test hook, or a script watching other sensors).
    pub file: Option<PathBuf>,
    /// Tamper on this signal: `SIGUSR1` or `SIGUSR2`.
    pub signal: Option<TamperSignal>,
    /// A case switch on a GPIO line.
    pub gpio: Option<GpioConfig>,
    /// How often file and GPIO sources are checked, in milliseconds.
    #[serde(default = "default_tamper_poll")]
    pub poll_interval_ms: u64,
}

fn default_tamper_poll() -> u64 {
    100
}

impl Default for TamperConfig {
    fn default() -> Self {
        Self {
            file: None,
            signal: None,
            gpio: None,
            poll_interval_ms: default_tamper_poll(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TamperSignal {
    #[serde(rename = "SIGUSR1")]
    Usr1,
    #[serde(rename = "SIGUSR2")]
    Usr2,
}

// Implements: S36, S38, S40
/// The whole shim configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimConfig {
    /// This box's name, used in file names, audit events and SIEM messages.
    pub shim_id: String,
    /// The guarded device's name (in session file names).
    pub device_name: String,
    pub technician_port: EndpointConfig,
    pub device_port: EndpointConfig,
    #[serde(default)]
    pub totp: TotpConfig,
    #[serde(default)]
    pub lockout: LockoutConfig,
    #[serde(default)]
    pub challenge: ChallengeConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub recording: RecordingConfig,
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    #[serde(default)]
    pub tamper: TamperConfig,
    /// The Unix socket `warden shim reset` talks to (created 0600).
    pub control_socket: PathBuf,
    /// SIEM forwarding (`warden-siem`'s configuration); events are spooled either way.
    #[serde(default)]
    pub siem: Option<serde_yaml_ng::Value>,
}

fn check_name(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            reason: format!("{value:?} must be 1-64 characters of A-Z a-z 0-9 . _ -"),
        })
    }
}

impl ShimConfig {
    /// Parses and checks a configuration document.
    pub fn parse(yaml: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(yaml);
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // The YAML error already says where ("at line L column C"); the path says which
            // key exactly. Drop the YAML error's own (shorter) path prefix when it has one.
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            let first = path.split('.').next().unwrap_or_default();
            let message = message
                .strip_prefix(&format!("{first}: "))
                .unwrap_or(&message)
                .to_string();
            if path == "." {
                ConfigError::Yaml(message)
            } else {
                ConfigError::Yaml(format!("{path}: {message}"))
            }
        })?;
        check_name("shim_id", &config.shim_id)?;
        check_name("device_name", &config.device_name)?;
        if config.technician_port.path == config.device_port.path {
            return Err(ConfigError::Invalid {
                key: "device_port.path",
                reason: "technician and device ports must differ".into(),
            });
        }
        if !(1..=20).contains(&config.lockout.max_failures) {
            return Err(ConfigError::Invalid {
                key: "lockout.max_failures",
                reason: format!("{} is outside 1..=20", config.lockout.max_failures),
            });
        }
        if config.totp.window > 10 {
            return Err(ConfigError::Invalid {
                key: "totp.window",
                reason: format!("{} steps is too wide (at most 10)", config.totp.window),
            });
        }
        if !(10..=60_000).contains(&config.recording.flush_interval_ms) {
            return Err(ConfigError::Invalid {
                key: "recording.flush_interval_ms",
                reason: format!(
                    "{} is outside 10..=60000",
                    config.recording.flush_interval_ms
                ),
            });
        }
        if !(8..=64).contains(&config.challenge.max_id_length) {
            return Err(ConfigError::Invalid {
                key: "challenge.max_id_length",
                reason: format!("{} is outside 8..=64", config.challenge.max_id_length),
            });
        }
        if !(10..=10_000).contains(&config.tamper.poll_interval_ms) {
            return Err(ConfigError::Invalid {
                key: "tamper.poll_interval_ms",
                reason: format!("{} is outside 10..=10000", config.tamper.poll_interval_ms),
            });
        }
        Ok(config)
    }

    /// The state machine's timing and limits.
    pub fn machine(&self) -> MachineConfig {
        MachineConfig {
            prompt: PromptLimits {
                max_id_len: self.challenge.max_id_length,
                max_code_len: 10,
            },
            challenge_timeout_ms: self.challenge.timeout_secs.0 * 1000,
            idle_timeout_ms: self.session.idle_timeout_secs.0 * 1000,
            escape_enabled: self.session.escape_sequence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "shim_id: shim-01\ndevice_name: empump-12\ntechnician_port:\n  path: /dev/ttyS0\ndevice_port:\n  path: /dev/ttyS1\n  baud: 9600\ncontrol_socket: /run/warden/shim.sock\n";

    /// Verifies: S14, S36
    #[test]
    fn minimal_config_gets_the_seed_defaults() {
        let config = ShimConfig::parse(MINIMAL).unwrap();
        assert_eq!(config.device_port.baud.0, 9600);
        assert_eq!(config.technician_port.baud.0, 115_200);
        assert_eq!(config.lockout.max_failures, 5);
        assert_eq!(config.lockout.window_secs.0, 60);
        assert_eq!(config.heartbeat.interval_secs.0, 60);
        assert_eq!(config.machine().idle_timeout_ms, 900_000);
    }

    /// Verifies: S36, S38
    #[test]
    fn errors_name_the_key_and_line() {
        let bad_baud = MINIMAL.replace("baud: 9600", "baud: 7");
        let err = ShimConfig::parse(&bad_baud).unwrap_err().to_string();
        // The key path is exact; the line is where its block starts.
        assert!(
            err.starts_with("device_port.baud: baud rate 7") && err.contains("line 6"),
            "{err}"
        );

        let typo = MINIMAL.replace("device_name", "device_nmae");
        let err = ShimConfig::parse(&typo).unwrap_err().to_string();
        assert!(
            err.contains("device_nmae") && err.contains("line 2"),
            "{err}"
        );

        let parity = MINIMAL.replace("baud: 9600", "parity: mark");
        let err = ShimConfig::parse(&parity).unwrap_err().to_string();
        assert!(err.contains("parity") || err.contains("mark"), "{err}");

        let err = ShimConfig::parse(&MINIMAL.replace("shim-01", "shim 01"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("shim_id"), "{err}");

        let same = MINIMAL.replace("/dev/ttyS1", "/dev/ttyS0");
        assert!(ShimConfig::parse(&same)
            .unwrap_err()
            .to_string()
            .starts_with("device_port.path"));
    }
}
