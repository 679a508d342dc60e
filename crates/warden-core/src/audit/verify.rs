//! Verifying a stored chain: an incremental [`Verifier`] fed one row at a time (so the store can
//! stream rows from the database), and what it answers: a [`VerifyReport`] or the first
//! [`Damage`].
//!
//! The fast path re-encodes each row at the position it should hold (the next seq, the current
//! epoch), MACs it with the stored predecessor MAC and compares. Nothing is allocated per row.
//! On the first row that does not verify, the verifier collects up to [`DAMAGE_WINDOW`] rows starting
//! there and hands them to [`super::classify`], which names the kind of damage.

use serde::{Deserialize, Serialize};

use super::canonical::encode;
use super::chain::{marker_details, Checkpoint};
use super::classify::{classify, Recent, WinRow};
use super::event::RecordRef;
use super::keys::{AuditKey, ChainId, ChainMac, EpochKey};
use super::EPOCH_MARKER_ACTION;
use crate::mac::ct_eq;

/// How many rows, starting at the first one that fails, are collected to classify the damage.
/// Damage whose evidence lies further away is classified from what is in the window.
pub const DAMAGE_WINDOW: usize = 64;

/// What kind of damage was found. See `docs/formats/audit-chain.md`, "Damage".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    /// The row at this seq was altered (any field, or its MAC), or several rows from here were.
    Changed,
    /// The row with this seq is missing: the following rows only verify assuming a deleted
    /// predecessor (renumbered or not).
    Removed,
    /// The row here is a genuine row of this chain that belongs at another seq (rows swapped,
    /// moved, or an earlier row replayed).
    Reordered,
    /// The row here is forged: it verifies nowhere, and the rows after it verify once it is
    /// skipped.
    Inserted,
    /// The chain ends before the trusted checkpoint, or disagrees with it at its seq (the tail
    /// was cut off, or cut off and rewritten).
    Truncated,
    /// The rows from here were MAC'd under a key other than the one the verifier holds: the key
    /// does not match the epoch marker's commitment, the marker is missing or malformed, or no
    /// row from here on verifies under any hypothesis.
    KeyMismatch,
}

impl DamageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Removed => "removed",
            Self::Reordered => "reordered",
            Self::Inserted => "inserted",
            Self::Truncated => "truncated",
            Self::KeyMismatch => "key_mismatch",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Self::Changed => "the row was changed",
            Self::Removed => "the row was removed",
            Self::Reordered => "the row holds another position's row (reordered)",
            Self::Inserted => "a forged row was inserted here",
            Self::Truncated => "the chain was cut off or rewritten after a checkpoint",
            Self::KeyMismatch => "the rows from here were MAC'd under a different key",
        }
    }
}

impl std::fmt::Display for DamageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.explain())
    }
}

/// The first damage found: `seq` is the position the chain went wrong at — the seq the first
/// bad row should have had (one past the last good row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[error("audit chain damaged at seq {seq}: {kind}")]
pub struct Damage {
    pub seq: u64,
    pub kind: DamageKind,
}

/// What an undamaged verification covered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Rows verified.
    pub records: u64,
    /// The seq of the last verified row (the starting point — 0 at genesis, the epoch marker's
    /// seq from an epoch — if no row was given).
    pub last_seq: u64,
    /// The MAC at `last_seq`: what the next row must chain to.
    pub last_mac: ChainMac,
    /// The epoch verification started in.
    pub first_epoch: u32,
    /// The epoch in force after the last row (one past the last marker's epoch if the chain
    /// ends with a marker).
    pub last_epoch: u32,
    /// At least one checkpoint (or the stored head) lay within the verified range and the chain
    /// matched it at its seq.
    pub checkpoint_matched: bool,
    /// How many checkpoints (the stored head included) lay within the verified range; each
    /// matched.
    pub checkpoints_matched: u64,
}

// Implements: V48, V50, V51
/// Checks a stored chain row by row. Feed rows in seq order with [`Verifier::push`], then call
/// [`Verifier::finish`]. No `Debug` (it holds an epoch key).
pub struct Verifier {
    key: EpochKey,
    epoch: u32,
    first_epoch: u32,
    next_seq: u64,
    prev: [u8; 32],
    records: u64,
    /// Trusted (seq, MAC) pairs still ahead, sorted by seq (earliest last, popped as reached).
    checkpoints: Vec<Checkpoint>,
    checkpoints_matched: u64,
    /// The stored head's seq: a row beyond it was added without the head (forged).
    head_seq: Option<u64>,
    recent: Recent,
    buf: Vec<u8>,
    window: Vec<WinRow>,
    verdict: Option<Damage>,
}

impl Verifier {
    /// Verifies a whole chain from its first row, with the auditor's `k0` and the chain id.
    pub fn from_genesis(k0: AuditKey, chain_id: ChainId) -> Self {
        let key = EpochKey::new(k0);
        let genesis = key.genesis_mac(&chain_id);
        Self::start(key, 0, 0, genesis)
    }

    /// Verifies from the first row of `epoch` with that epoch's key (on the box: its current
    /// key). `marker` is the stored row just before the epoch's first row: the epoch marker that
    /// committed to `key`. Its MAC is taken as the predecessor without being verified (the key
    /// that made it is gone); only verification from genesis can vouch for it.
    ///
    /// If `marker` is not the marker of `epoch - 1` or does not commit to `key`, verification
    /// answers [`DamageKind::KeyMismatch`] at `marker.seq + 1`. For epoch 0 use
    /// [`Verifier::from_genesis`].
    pub fn from_epoch(epoch: u32, key: AuditKey, marker: RecordRef<'_>) -> Self {
        let first_seq = marker.seq.saturating_add(1);
        let prev = ChainMac::from_slice(marker.mac).map_or([0u8; 32], |m| m.0);
        let commits = epoch > 0
            && marker.action == EPOCH_MARKER_ACTION
            && marker.epoch.checked_add(1) == Some(epoch)
            && marker.details == marker_details(epoch, &key.key_id())
            && marker.mac.len() == 32;
        let mut verifier = Self::start(EpochKey::new(key), epoch, marker.seq, prev);
        if !commits {
            verifier.verdict = Some(Damage {
                seq: first_seq,
                kind: DamageKind::KeyMismatch,
            });
        }
        verifier
    }

    fn start(key: EpochKey, epoch: u32, anchor_seq: u64, anchor_mac: [u8; 32]) -> Self {
        let mut recent = Recent::new();
        recent.insert(anchor_seq, epoch.saturating_sub(1), anchor_mac);
        Self {
            key,
            epoch,
            first_epoch: epoch,
            next_seq: anchor_seq.saturating_add(1),
            prev: anchor_mac,
            records: 0,
            checkpoints: Vec::new(),
            checkpoints_matched: 0,
            head_seq: None,
            recent,
            buf: Vec::with_capacity(512),
            window: Vec::new(),
            verdict: None,
        }
    }

    /// Also checks the chain against a trusted checkpoint (from the SIEM, or one stored on the
    /// box); may be given any number of times. The chain must reach the checkpoint's seq and
    /// carry its MAC there, else the verdict is [`DamageKind::Truncated`]. A checkpoint at or
    /// before the starting point cannot be checked and is ignored.
    pub fn with_checkpoint(mut self, checkpoint: Checkpoint) -> Self {
        if checkpoint.seq >= self.next_seq {
            self.checkpoints.push(checkpoint);
            // Descending, so the next one due is at the end.
            self.checkpoints.sort_by_key(|c| std::cmp::Reverse(c.seq));
        }
        self
    }

    /// Also checks the chain against its stored head (the last seq and MAC committed with
    /// every append): the chain must end exactly there. Rows missing before it are
    /// [`DamageKind::Truncated`] (a cut tail), a different MAC there is too, and a row after
    /// it is [`DamageKind::Inserted`] (added without the head).
    pub fn with_head(mut self, head: Checkpoint) -> Self {
        self.head_seq = Some(head.seq);
        self.with_checkpoint(head)
    }

    /// Checks the next stored row. `Err` is the verdict: the first damage, final once given
    /// (further calls return it again). `Ok` means "no verdict yet" — after a failing row the
    /// verifier reads up to [`DAMAGE_WINDOW`] rows ahead before it can name the damage.
    pub fn push(&mut self, row: RecordRef<'_>) -> Result<(), Damage> {
        if let Some(damage) = self.verdict {
            return Err(damage);
        }
        if !self.window.is_empty() {
            self.window.push(WinRow::new(&row));
            if self.window.len() >= DAMAGE_WINDOW {
                return Err(self.decide());
            }
            return Ok(());
        }
        let seq = self.next_seq;
        if self.head_seq.is_some_and(|head| seq > head) {
            return Err(self.fail(seq, DamageKind::Inserted));
        }
        let verified = encode(&mut self.buf, seq, self.epoch, &row)
            && ct_eq(&self.key.chain_mac(&self.buf, &self.prev), row.mac);
        if !verified {
            self.window.push(WinRow::new(&row));
            return Ok(());
        }
        if row.seq != seq || row.epoch != self.epoch {
            // Authentic content at the right place, but its seq or epoch column was altered.
            return Err(self.fail(seq, DamageKind::Changed));
        }
        self.accept(row)
    }

    /// Ends verification. `Err` is the first damage (including a tail cut off before the
    /// checkpoint).
    pub fn finish(mut self) -> Result<VerifyReport, Damage> {
        if let Some(damage) = self.verdict {
            return Err(damage);
        }
        if !self.window.is_empty() {
            return Err(self.decide());
        }
        if !self.checkpoints.is_empty() {
            // A checkpoint (or the head) lies beyond the last row: the tail was cut off.
            return Err(Damage {
                seq: self.next_seq,
                kind: DamageKind::Truncated,
            });
        }
        Ok(VerifyReport {
            records: self.records,
            last_seq: self.next_seq - 1,
            last_mac: ChainMac(self.prev),
            first_epoch: self.first_epoch,
            last_epoch: self.epoch,
            checkpoint_matched: self.checkpoints_matched > 0,
            checkpoints_matched: self.checkpoints_matched,
        })
    }

    /// Pushes every row, then finishes.
    pub fn verify_all<'a, I>(mut self, rows: I) -> Result<VerifyReport, Damage>
    where
        I: IntoIterator<Item = RecordRef<'a>>,
    {
        for row in rows {
            self.push(row)?;
        }
        self.finish()
    }

    fn accept(&mut self, row: RecordRef<'_>) -> Result<(), Damage> {
        let seq = self.next_seq;
        self.prev.copy_from_slice(row.mac);
        self.recent.insert(seq, self.epoch, self.prev);
        self.records += 1;
        self.next_seq = seq.saturating_add(1);
        while self.checkpoints.last().is_some_and(|c| c.seq == seq) {
            let checkpoint = self.checkpoints.pop().expect("checked above");
            if checkpoint.mac.0 != self.prev {
                return Err(self.fail(seq, DamageKind::Truncated));
            }
            self.checkpoints_matched += 1;
        }
        if row.action == EPOCH_MARKER_ACTION {
            // An authentic marker: it must commit to exactly the key we derive next.
            let next = self.key.key().next();
            let commits = self.epoch.checked_add(1).is_some_and(|next_epoch| {
                row.details == marker_details(next_epoch, &next.key_id())
            });
            if !commits {
                return Err(self.fail(seq.saturating_add(1), DamageKind::KeyMismatch));
            }
            // Assigning drops the old epoch key (zeroized).
            self.key = EpochKey::new(next);
            self.epoch += 1;
        }
        Ok(())
    }

    fn fail(&mut self, seq: u64, kind: DamageKind) -> Damage {
        let damage = Damage { seq, kind };
        self.verdict = Some(damage);
        damage
    }

    fn decide(&mut self) -> Damage {
        let seq = self.next_seq;
        let kind = classify(
            &self.key,
            self.epoch,
            seq,
            &self.prev,
            &self.recent,
            &mut self.window,
        );
        self.window = Vec::new();
        self.fail(seq, kind)
    }
}
