//! warden-siem: everything warden says to a SIEM, and (later) the forwarder that says it.
//!
//! Data flows one way: an event becomes a [`format::cef::CefEvent`] (the payload an analyst
//! reads), wrapped in an RFC 5424 [`format::rfc5424::SyslogMessage`] (the envelope a syslog
//! receiver routes), framed by RFC 5425 octet counting ([`format::framing`]) and written to a
//! mutual-TLS connection. [`format::kind::MessageKind`] says how urgent each message is, which the
//! spool uses to let tamper alerts jump the queue. The [`format`](mod@format) layer is pure: no sockets, no
//! files, no clock reads; callers pass timestamps in.
#![forbid(unsafe_code)]

pub mod format;
