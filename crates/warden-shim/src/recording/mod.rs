//! Session recordings: the record format inside a sealed recording stream, and its exports.
//!
//! A recording is the plaintext of a sealed stream (`warden_core::stream`, purpose
//! `recordings`). The sealed stream gives confidentiality, integrity, ordering and truncation
//! detection; this layer only gives structure. Data flows:
//!
//! ```text
//! shim forwarding ──chunks──► RecordWriter ──► SealedWriter ──► file
//! file ──► SealedReader ──► RecordReader ──records──► export::{asciicast, jsonl, dump} / play
//! ```
//!
//! # Record format, version 1 (all integers big-endian)
//!
//! ```text
//! recording = preamble metadata-record *chunk-record end-record
//! preamble  = "WRDNRCRD" %x01                      ; 8-byte magic, format version 1
//! record    = type:u8 length:u32 body[length]
//!
//! type 0x01 metadata   body = UTF-8 JSON object, 1..=65536 bytes (fields below)
//! type 0x02 chunk      body = t_us:u64 direction:u8 data[length - 9], data 0..=65536 bytes
//! type 0x03 end        body = t_us:u64                 (length is exactly 8)
//!
//! direction = %x01 technician→device / %x02 device→technician / %x03 shim event (UTF-8 label)
//! ```
//!
//! - The metadata record comes first and only once; the end record comes last and only once,
//!   and nothing may follow it. A recording without an end record was not closed (power loss,
//!   crash, recovered prefix of a truncated sealed stream): readers report it as such.
//! - `t_us` is microseconds since the start of the session on the shim's monotonic clock; it
//!   never decreases from one record to the next (equal values are allowed: a write longer than
//!   64 KiB is split into several chunks with the same time).
//! - Metadata JSON, in this field order, all strings:
//!   `session_id` (lowercase hyphenated UUID), `technician_id`, `device_name`, `shim_id`
//!   (1..=256 bytes, no control characters), `started_at` (RFC 3339 UTC with microseconds,
//!   `2026-04-15T09:22:03.123456Z`; wall clock at `t_us` = 0), `config_hash` (64 lowercase hex
//!   digits: SHA-256 of the configuration). Readers ignore unknown fields.
//! - Unknown record types and directions are errors: a new kind of record means a new version.
//!
//! Why binary records around a JSON metadata record: chunks are raw bytes from a serial line
//! (binary protocols included), so they are length-prefixed and copied verbatim, with a fixed
//! 14-byte overhead that is trivial to parse from any language (`struct.unpack(">BI")`); the
//! metadata is read by people and tools, and may grow fields, so it is JSON.

/// The key session recordings are sealed under: derived from the `recordings` purpose key, so
/// a file sealed with `warden vault seal` (the purpose key itself) can never pass for a
/// recording, and `vault open` cannot read one. `HMAC-SHA256(recordings key,
/// "warden shim session recordings v1")`; see `docs/formats/session-recording.md`.
pub fn session_key(recordings: &warden_core::secret::Key32) -> warden_core::secret::Key32 {
    warden_core::stream::session_recordings_key(recordings)
}

/// The label of [`session_key`]'s derivation.
pub const SESSION_KEY_LABEL: &[u8] = warden_core::stream::SESSION_KEY_LABEL;

pub mod export;
pub mod ops;
pub mod play;
pub mod read;
pub mod record;
pub mod sanitize;

pub use export::{
    write_asciicast, write_dump, write_jsonl, AsciicastOptions, ExportError, ExportSummary,
    InvalidUtf8,
};
pub use play::{play, PlayError, PlayOptions, PlayStep, Player};
pub use record::{
    Chunk, Direction, MetadataError, Record, RecordError, RecordReader, RecordWriter,
    RecordingMetadata, MAX_CHUNK_DATA,
};

#[cfg(test)]
mod tests;
