//! warden-shim: the serial MFA shim. So far it owns the session recording format and its
//! exports ([`recording`]); the gate state machine, port adapter, tamper sources and daemon
//! come next.
//!
//! Data flows: every chunk forwarded between the technician's port and the device's port is
//! copied, with its direction and a monotonic time offset, into a [`recording::RecordWriter`]
//! over a sealed stream; later a [`recording::RecordReader`] reads it back for
//! `warden session export` (asciicast, JSON Lines, text/hex dump) and `warden session play`.
#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod machine;
pub mod prompt;
pub mod recording;
pub mod serial;
