//! Naming the damage once a row fails to verify.
//!
//! Input: the position that failed (expected seq `e`, epoch `E`, predecessor MAC `p`, key `k_E`),
//! the last [`RECENT`] verified rows' MACs, and a window `w_0 … w_{n-1}` of up to
//! [`super::DAMAGE_WINDOW`] stored rows starting with the failing row `w_0`.
//!
//! Every test below is one HMAC: "row `w` verifies at seq `s` after MAC `q`" means
//! `HMAC(k_{epoch(w)}, canonical(w with seq s) ‖ q) == mac(w)`, where the epoch is the row's
//! stored epoch (a moved row carries its epoch with it) and its key is derived from `k_E`
//! (at most [`MAX_EPOCHS_AHEAD`] epochs ahead; earlier epochs' keys are gone). A MAC match is
//! cryptographic evidence, so one matching row settles a hypothesis. The hypotheses are tried
//! in this fixed order and the first that holds names the damage (always at seq `e`):
//!
//! 1. **Reordered** — `w_0` is a genuine row of another position: it verifies at some seq
//!    `s ∈ (e, e+n)` (or its stored seq) after the MAC of some other row in the window (a swap or
//!    a move), or at an earlier seq `s < e` after the recent verified MAC of `s-1` (a replay).
//! 2. **Inserted** — some later `w_j` verifies at `e` after `p`: the row that belongs at `e` is
//!    still there, after `j` extra rows.
//! 3. **Changed** — `w_1` verifies at `e+1` after `HMAC(k_E, canonical(w_0 at e) ‖ p)` (only
//!    `w_0`'s MAC was altered) or after `w_0`'s stored MAC (its content was altered).
//! 4. **Removed** — `w_1` verifies at `e+d+1` after `w_0`'s stored MAC, for some
//!    `d ∈ 1..=MAX_REMOVED` or `d` = the gap in `w_0`'s stored seq: `d` rows are missing before
//!    `w_0` (whether or not later rows were renumbered).
//! 5. **Changed** — the chain resumes later: some `w_j`, `j ≥ 2`, verifies at `e+j` after
//!    `w_{j-1}`'s stored MAC (several consecutive rows were altered).
//! 6. Nothing verified. With two or more rows in the window: **KeyMismatch** (they were MAC'd
//!    under a key we do not hold: the key was replaced, or the rest was forged). With only `w_0`
//!    (the last row): **Removed** if its stored seq skips ahead of `e`, else **Changed**.
//!
//! Cost: at most about `n²` HMACs (step 1) plus `n + 2·MAX_REMOVED`, once per verification.

use super::canonical::{encode, patch};
use super::event::RecordRef;
use super::keys::EpochKey;
use super::verify::DamageKind;
use crate::mac::ct_eq;

/// How many recent verified rows are remembered (to recognise a replayed row).
pub(crate) const RECENT: usize = 64;
/// How many epochs past the current one a moved or surviving row may claim and still be tested.
pub(crate) const MAX_EPOCHS_AHEAD: u32 = 64;
/// How many consecutive removed rows are searched for when rows were renumbered.
pub(crate) const MAX_REMOVED: u64 = 64;

#[derive(Clone, Copy)]
struct Entry {
    seq: u64,
    epoch: u32,
    mac: [u8; 32],
}

/// The last [`RECENT`] verified (seq, epoch, mac), in a ring indexed by seq.
pub(crate) struct Recent {
    entries: Box<[Option<Entry>]>,
}

impl Recent {
    pub(crate) fn new() -> Self {
        Self {
            entries: vec![None; RECENT].into_boxed_slice(),
        }
    }

    pub(crate) fn insert(&mut self, seq: u64, epoch: u32, mac: [u8; 32]) {
        self.entries[(seq % RECENT as u64) as usize] = Some(Entry { seq, epoch, mac });
    }

    fn get(&self, seq: u64) -> Option<&Entry> {
        self.entries[(seq % RECENT as u64) as usize]
            .as_ref()
            .filter(|entry| entry.seq == seq)
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }
}

/// A stored row kept for classification: its canonical encoding (seq and epoch patchable).
pub(crate) struct WinRow {
    seq: u64,
    epoch: u32,
    canonical: Option<Vec<u8>>,
    mac: Option<[u8; 32]>,
}

impl WinRow {
    pub(crate) fn new(row: &RecordRef<'_>) -> Self {
        let mut canonical = Vec::new();
        let encoded = encode(&mut canonical, row.seq, row.epoch, row);
        Self {
            seq: row.seq,
            epoch: row.epoch,
            canonical: encoded.then_some(canonical),
            mac: row.mac.try_into().ok(),
        }
    }
}

/// The current key and, derived on demand, the keys of the next epochs.
struct Ladder<'k> {
    base: &'k EpochKey,
    base_epoch: u32,
    ahead: Vec<EpochKey>,
}

impl<'k> Ladder<'k> {
    fn key(&mut self, epoch: u32) -> Option<&EpochKey> {
        let distance = epoch.checked_sub(self.base_epoch)?;
        if distance > MAX_EPOCHS_AHEAD {
            return None;
        }
        while self.ahead.len() < distance as usize {
            let next = match self.ahead.last() {
                Some(key) => key.key().next(),
                None => self.base.key().next(),
            };
            self.ahead.push(EpochKey::new(next));
        }
        Some(match distance {
            0 => self.base,
            d => &self.ahead[d as usize - 1],
        })
    }

    /// Does `row` verify at `seq` after `prev`, under the key of its stored epoch?
    fn verifies(&mut self, row: &mut WinRow, seq: u64, prev: &[u8; 32]) -> bool {
        let (Some(canonical), Some(mac)) = (row.canonical.as_mut(), row.mac) else {
            return false;
        };
        let Some(key) = self.key(row.epoch) else {
            return false;
        };
        patch(canonical, seq, row.epoch);
        ct_eq(&key.chain_mac(canonical, prev), &mac)
    }
}

/// Names the damage at seq `seq` (see the module documentation for the rules).
pub(crate) fn classify(
    key: &EpochKey,
    epoch: u32,
    seq: u64,
    prev: &[u8; 32],
    recent: &Recent,
    window: &mut [WinRow],
) -> DamageKind {
    let mut ladder = Ladder {
        base: key,
        base_epoch: epoch,
        ahead: Vec::new(),
    };
    let n = window.len() as u64;
    let Some((first, rest)) = window.split_first_mut() else {
        return DamageKind::Changed;
    };

    // 1. Reordered: the first row is genuine, but belongs at another seq.
    let last_in_window = seq.saturating_add(n.saturating_sub(1));
    let hint = (first.seq > last_in_window).then_some(first.seq);
    let later_seqs = (seq.saturating_add(1)..=last_in_window).chain(hint);
    for s in later_seqs {
        for other in rest.iter() {
            if let Some(q) = other.mac {
                if ladder.verifies(first, s, &q) {
                    return DamageKind::Reordered;
                }
            }
        }
    }
    for entry in recent.iter() {
        if entry.seq == 0 || entry.seq >= seq || entry.epoch != first.epoch {
            continue;
        }
        if let Some(before) = recent.get(entry.seq - 1) {
            if ladder.verifies(first, entry.seq, &before.mac) {
                return DamageKind::Reordered;
            }
        }
    }

    // 2. Inserted: the row that belongs here comes later.
    for other in rest.iter_mut() {
        if ladder.verifies(other, seq, prev) {
            return DamageKind::Inserted;
        }
    }

    let Some((second, after)) = rest.split_first_mut() else {
        // Only the last row failed: nothing after it to tell us more.
        return if first.seq > seq {
            DamageKind::Removed
        } else {
            DamageKind::Changed
        };
    };
    let next_seq = seq.saturating_add(1);

    // 3. Changed: only the MAC, or only the content, of the first row was altered.
    if let Some(canonical) = first.canonical.as_mut() {
        patch(canonical, seq, epoch);
        let would_be = key.chain_mac(canonical, prev);
        if ladder.verifies(second, next_seq, &would_be) {
            return DamageKind::Changed;
        }
    }
    if let Some(stored) = first.mac {
        if ladder.verifies(second, next_seq, &stored) {
            return DamageKind::Changed;
        }

        // 4. Removed: the rows after the first one chain to it as if rows were missing before.
        let gap = first.seq.checked_sub(seq).filter(|&d| d > MAX_REMOVED);
        for missing in (1..=MAX_REMOVED).chain(gap) {
            let Some(s) = next_seq.checked_add(missing) else {
                break;
            };
            if ladder.verifies(second, s, &stored) {
                return DamageKind::Removed;
            }
        }
    }

    // 5. Changed, several rows: the chain resumes further on.
    let mut before = second.mac;
    for (j, row) in after.iter_mut().enumerate() {
        let position = seq.saturating_add(j as u64 + 2);
        if let Some(q) = before {
            if ladder.verifies(row, position, &q) {
                return DamageKind::Changed;
            }
        }
        before = row.mac;
    }

    // 6. Nothing verifies under any key we hold.
    DamageKind::KeyMismatch
}
