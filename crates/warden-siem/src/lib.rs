//! warden-siem: everything warden says to a SIEM, and the forwarder that says it.
//!
//! Data flows one way: an event becomes a [`format::cef::CefEvent`] (the payload an analyst
//! reads), wrapped in an RFC 5424 [`format::rfc5424::SyslogMessage`] (the envelope a syslog
//! receiver routes), framed by RFC 5425 octet counting ([`format::framing`]) and written to a
//! mutual-TLS connection. [`format::kind::MessageKind`] says how urgent each message is, which the
//! spool uses to let tamper alerts jump the queue. The [`format`](mod@format) layer is pure: no sockets, no
//! files, no clock reads; callers pass timestamps in.
//!
//! Around the format layer: [`config`] turns the `siem:` YAML section into typed settings;
//! producers queue messages in the database spool (`warden_store::spool`) in their own
//! transactions; the [`forwarder`] task reads the spool, formats each row ([`message`]), writes
//! it over the mutual-TLS client ([`tls`]) and removes it once delivery is confirmed as far as
//! RFC 5425 allows ([`delivery`]); [`check`] is `warden siem test`. `docs/siem.md` explains the
//! delivery guarantees and their limits.
#![forbid(unsafe_code)]

pub mod check;
pub mod config;
pub mod delivery;
pub mod format;
pub mod forwarder;
pub mod fuzzing;
pub mod message;
pub mod tls;

pub use config::{ConfigError, SiemConfig, SiemSettings};
pub use forwarder::{spawn, ForwarderHandle, ForwarderStatus};
pub use tls::{FailureKind, LinkError, TlsClient, TlsSetupError};
