//! warden-shim: the serial MFA shim — the gate state machine ([`machine`]), the serial port
//! adapter ([`serial`]), the daemon with its tamper sources and control socket ([`daemon`]),
//! its host over the store ([`host`]), and the session recording format with its reading,
//! exports and the audited recording operations ([`recording`]).
//!
//! Data flows: every chunk forwarded between the technician's port and the device's port is
//! copied, with its direction and a monotonic time offset, into a [`recording::RecordWriter`]
//! over a sealed stream; later a [`recording::RecordReader`] reads it back for
//! `warden session export` (asciicast, JSON Lines, text/hex dump) and `warden session play`.
#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod fuzzing;
pub mod host;
pub mod machine;
pub mod prompt;
pub mod recording;
pub mod serial;
