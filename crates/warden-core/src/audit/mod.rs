//! The forward-secure audit chain: every audit event MAC'd into one chain, so that a changed,
//! removed, reordered or inserted row, a cut-off tail, or a replaced key can be seen and named.
//!
//! Pure logic: no database, no files, no clock. The store persists what this module hands it.
//!
//! How data flows:
//!
//! * At init the box draws `k0` and a [`ChainId`]; `k0` is exported once, sealed for the auditor.
//!   [`ChainState::genesis`] starts the chain.
//! * Each [`NewEvent`] goes through [`ChainState::append`], which validates it, canonicalizes it
//!   and returns the [`AuditRecord`] to store:
//!   `mac_n = HMAC-SHA256(k_epoch, canonical(event_n) ‖ mac_{n-1})`.
//! * When [`ChainState::needs_evolution`] says so, [`ChainState::evolve`] appends an epoch marker
//!   (MAC'd under the old key, committing to the next key's id) and replaces the key by
//!   `HMAC(k_e, "warden-audit-evolve-v1")`; the old key is erased. Someone who takes the box later
//!   cannot rewrite earlier epochs.
//! * [`ChainState::checkpoint`] gives a public (seq, mac) pair for the SIEM, so a cut-off tail is
//!   visible off-box.
//! * A [`Verifier`] is fed stored rows ([`RecordRef`]) one at a time, from genesis with the
//!   auditor's `k0` or from the current epoch with the box's key, and answers with a
//!   [`VerifyReport`] or the first [`Damage`].
//!
//! The byte-level format is specified in `docs/formats/audit-chain.md`.

mod canonical;
mod chain;
mod classify;
mod event;
mod keys;
pub mod signed;
mod verify;

#[cfg(test)]
mod tests;

pub use chain::{ChainHead, ChainState, Checkpoint, EpochPolicy};
pub use event::{field_text, AuditRecord, NewEvent, Outcome, RecordRef, Timestamp};
pub use keys::{AuditKey, ChainId, ChainMac};
pub use verify::{Damage, DamageKind, Verifier, VerifyReport, DAMAGE_WINDOW};

/// Longest actor, action or subject, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 256;
/// Longest canonical details JSON, in bytes.
pub const MAX_DETAILS_BYTES: usize = 64 * 1024;
/// Deepest nesting of arrays and objects in details (the top-level object is depth 1).
pub const MAX_DETAILS_DEPTH: usize = 32;
/// The action of epoch-marker events, written only by [`ChainState::evolve`].
pub const EPOCH_MARKER_ACTION: &str = "audit.epoch";
/// The actor of epoch-marker events.
pub const EPOCH_MARKER_ACTOR: &str = "warden";

/// Why an event could not be appended or a saved chain state could not be resumed.
///
/// Messages name the field and the rule, never the field's content (events may carry personal
/// data, and no message ever carries key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    // The caller's event is malformed: fix the event.
    #[error("timestamp is not RFC 3339 UTC with microseconds (YYYY-MM-DDTHH:MM:SS.ffffffZ): {0}")]
    BadTimestamp(&'static str),
    #[error("{field} is empty")]
    EmptyField { field: &'static str },
    #[error("{field} is {len} bytes long; at most {max} are allowed")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} contains a control, bidi or line-separator character at byte {at}")]
    ForbiddenChar { field: &'static str, at: usize },
    #[error("action \"{EPOCH_MARKER_ACTION}\" is reserved for the audit chain's epoch markers")]
    ReservedAction,
    #[error("details must be a JSON object")]
    DetailsNotObject,
    #[error("details contain a number that is not finite")]
    DetailsNonFinite,
    #[error("details nest deeper than {MAX_DETAILS_DEPTH} levels")]
    DetailsTooDeep,
    #[error("details are longer than {MAX_DETAILS_BYTES} bytes as canonical JSON")]
    DetailsTooLarge,
    // The chain has run out of numbers: start a new chain.
    #[error("the audit chain has used every sequence number")]
    SeqExhausted,
    #[error("the audit chain has used every epoch number")]
    EpochExhausted,
    // The saved state is inconsistent: the store's head row is damaged.
    #[error("saved audit chain state is inconsistent: {0}")]
    BadState(&'static str),
}
