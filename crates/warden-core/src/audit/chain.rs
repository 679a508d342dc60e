//! The writing side of the audit chain: the state a box keeps, appending events, evolving the
//! key at epoch boundaries, and checkpoints for the SIEM.
//!
//! The store persists a [`ChainHead`] and the current key, and after every [`ChainState::append`]
//! or [`ChainState::evolve`] writes the returned row *and* the new head (and, after `evolve`, the
//! new key over the old one) in one transaction. If that transaction fails, drop the
//! `ChainState` and [`ChainState::resume`] from what the store still holds.

use serde::{Deserialize, Serialize};

use super::canonical::{canonical_details, encode};
use super::event::{check_text, AuditRecord, NewEvent, Outcome, RecordRef, Timestamp};
use super::keys::{AuditKey, ChainId, ChainMac, EpochKey};
use super::{AuditError, EPOCH_MARKER_ACTION, EPOCH_MARKER_ACTOR};

/// The public part of the chain state, to persist next to the key. Everything here is public
/// (it may be logged); the key is not here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub chain_id: ChainId,
    /// The seq the next event gets (1 for an empty chain).
    pub next_seq: u64,
    /// The current epoch (0 at genesis).
    pub epoch: u32,
    /// The MAC of the last row (the genesis value for an empty chain).
    pub last_mac: ChainMac,
    /// The seq of the first event of the current epoch (the row before it is the epoch marker
    /// that committed to the current key). Events in this epoch: `next_seq - epoch_first_seq`.
    pub epoch_first_seq: u64,
    /// When the current epoch began, in seconds since 1970 (the caller's clock).
    pub epoch_started_unix: u64,
}

/// A public (seq, mac) pair sent off-box. A later verification with this checkpoint detects a
/// cut-off or rewritten tail. `seq` 0 (an empty chain) checks nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub mac: ChainMac,
}

/// When to evolve the key. An epoch with no events is never evolved (there is nothing in it to
/// protect); otherwise either limit, if set, triggers evolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochPolicy {
    pub max_events: Option<u64>,
    pub max_age_secs: Option<u64>,
}

/// The writing state of one box's chain: the public head plus the current epoch's secret key.
/// Not `Clone` and no `Debug` (it holds the key).
pub struct ChainState {
    head: ChainHead,
    key: EpochKey,
    buf: Vec<u8>,
}

impl ChainState {
    /// Starts a chain with key `k0` at `now_unix`. Export `k0` (sealed for the auditor) before
    /// handing it over: the chain evolves it away.
    pub fn genesis(k0: AuditKey, chain_id: ChainId, now_unix: u64) -> Self {
        let key = EpochKey::new(k0);
        let last_mac = ChainMac(key.genesis_mac(&chain_id));
        Self {
            head: ChainHead {
                chain_id,
                next_seq: 1,
                epoch: 0,
                last_mac,
                epoch_first_seq: 1,
                epoch_started_unix: now_unix,
            },
            key,
            buf: Vec::new(),
        }
    }

    /// Continues a chain from what the store persisted. Checks that the head is consistent; it
    /// cannot tell whether `key` is the right one (verification from the epoch does).
    pub fn resume(head: ChainHead, key: AuditKey) -> Result<Self, AuditError> {
        if head.next_seq == 0 {
            return Err(AuditError::BadState("next_seq is 0"));
        }
        if head.epoch_first_seq == 0 || head.epoch_first_seq > head.next_seq {
            return Err(AuditError::BadState(
                "epoch_first_seq is not in 1..=next_seq",
            ));
        }
        if (head.epoch == 0) != (head.epoch_first_seq == 1) {
            return Err(AuditError::BadState(
                "epoch 0 must start at seq 1 and later epochs after it",
            ));
        }
        Ok(Self {
            head,
            key: EpochKey::new(key),
            buf: Vec::new(),
        })
    }

    /// What to persist (with [`ChainState::key`]).
    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    /// The current epoch key, to persist (overwriting the previous epoch's key).
    pub fn key(&self) -> &AuditKey {
        self.key.key()
    }

    /// The last row's (seq, mac), for the SIEM.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            seq: self.head.next_seq - 1,
            mac: self.head.last_mac,
        }
    }

    /// Whether `policy` asks for a new epoch now.
    pub fn needs_evolution(&self, policy: &EpochPolicy, now_unix: u64) -> bool {
        let events = self.head.next_seq - self.head.epoch_first_seq;
        if events == 0 {
            return false;
        }
        let by_count = policy.max_events.is_some_and(|max| events >= max);
        let by_age = policy
            .max_age_secs
            .is_some_and(|max| now_unix.saturating_sub(self.head.epoch_started_unix) >= max);
        by_count || by_age
    }

    // Implements: V43, V49, V55
    /// Validates `event`, MACs it into the chain and returns the row to store.
    pub fn append(&mut self, event: NewEvent) -> Result<AuditRecord, AuditError> {
        check_text("actor", &event.actor, true)?;
        check_text("action", &event.action, true)?;
        check_text("subject", &event.subject, false)?;
        if event.action == EPOCH_MARKER_ACTION {
            return Err(AuditError::ReservedAction);
        }
        let details = canonical_details(&event.details)?;
        self.push(
            event.timestamp.as_str().to_owned(),
            event.actor,
            event.action,
            event.subject,
            event.outcome,
            details,
        )
    }

    /// Ends the current epoch: appends an epoch marker MAC'd under the current key, committing to
    /// the next key (`{"next_epoch":e+1,"next_key_id":"<16 hex>"}`), then replaces the key with
    /// its evolution. The old key is dropped (zeroized) here; the store must overwrite its copy
    /// in the same transaction that stores the marker.
    pub fn evolve(
        &mut self,
        timestamp: Timestamp,
        now_unix: u64,
    ) -> Result<AuditRecord, AuditError> {
        let next_epoch = self
            .head
            .epoch
            .checked_add(1)
            .ok_or(AuditError::EpochExhausted)?;
        let next_key = self.key.key().next();
        let details = marker_details(next_epoch, &next_key.key_id());
        let marker = self.push(
            timestamp.as_str().to_owned(),
            EPOCH_MARKER_ACTOR.to_owned(),
            EPOCH_MARKER_ACTION.to_owned(),
            String::new(),
            Outcome::Success,
            details,
        )?;
        // Assigning drops the old EpochKey: the old key and its HMAC states are wiped.
        self.key = EpochKey::new(next_key);
        self.head.epoch = next_epoch;
        self.head.epoch_first_seq = self.head.next_seq;
        self.head.epoch_started_unix = now_unix;
        Ok(marker)
    }

    fn push(
        &mut self,
        timestamp: String,
        actor: String,
        action: String,
        subject: String,
        outcome: Outcome,
        details: String,
    ) -> Result<AuditRecord, AuditError> {
        let seq = self.head.next_seq;
        let next_seq = seq.checked_add(1).ok_or(AuditError::SeqExhausted)?;
        let view = RecordRef {
            seq,
            epoch: self.head.epoch,
            timestamp: &timestamp,
            actor: &actor,
            action: &action,
            subject: &subject,
            outcome: outcome.as_str(),
            details: &details,
            mac: &[],
        };
        if !encode(&mut self.buf, seq, self.head.epoch, &view) {
            // Unreachable for validated fields (all far below 4 GiB).
            return Err(AuditError::DetailsTooLarge);
        }
        let mac = ChainMac(self.key.chain_mac(&self.buf, &self.head.last_mac.0));
        self.head.next_seq = next_seq;
        self.head.last_mac = mac;
        Ok(AuditRecord {
            seq,
            epoch: self.head.epoch,
            timestamp,
            actor,
            action,
            subject,
            outcome,
            details,
            mac,
        })
    }
}

/// The canonical details of an epoch marker (keys already in sorted order).
pub(crate) fn marker_details(next_epoch: u32, next_key_id: &[u8; 8]) -> String {
    format!(
        "{{\"next_epoch\":{next_epoch},\"next_key_id\":\"{}\"}}",
        hex::encode(next_key_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts() -> Timestamp {
        Timestamp::parse("2026-11-22T10:00:00.123456Z").unwrap()
    }

    fn state() -> ChainState {
        ChainState::genesis(AuditKey::from_bytes([3; 32]), ChainId([4; 16]), 1000)
    }

    /// Verifies: V43, V49
    #[test]
    fn append_numbers_and_chains_rows() {
        let mut chain = state();
        let genesis = chain.checkpoint();
        assert_eq!(genesis.seq, 0);
        let a = chain
            .append(NewEvent::new(
                ts(),
                "alice",
                "login",
                "shim-1",
                Outcome::Success,
            ))
            .unwrap();
        let b = chain
            .append(NewEvent::new(
                ts(),
                "alice",
                "login",
                "shim-1",
                Outcome::Success,
            ))
            .unwrap();
        assert_eq!((a.seq, a.epoch, b.seq), (1, 0, 2));
        assert_ne!(a.mac, b.mac, "same content, different seq and predecessor");
        assert_eq!(a.details, "{}");
        assert_eq!(chain.checkpoint(), Checkpoint { seq: 2, mac: b.mac });
    }

    #[test]
    fn append_rejects_bad_events_without_changing_state() {
        let mut chain = state();
        let before = chain.head().clone();
        let bad = [
            NewEvent::new(ts(), "", "login", "", Outcome::Success),
            NewEvent::new(ts(), "a", EPOCH_MARKER_ACTION, "", Outcome::Success),
            NewEvent::new(ts(), "a", "login", "x\u{1b}[2J", Outcome::Success),
            NewEvent::new(ts(), "a", "login", "", Outcome::Success)
                .with_details(serde_json::json!([1])),
        ];
        let errors: Vec<AuditError> = bad
            .into_iter()
            .map(|e| chain.append(e).unwrap_err())
            .collect();
        assert_eq!(
            errors,
            [
                AuditError::EmptyField { field: "actor" },
                AuditError::ReservedAction,
                AuditError::ForbiddenChar {
                    field: "subject",
                    at: 1
                },
                AuditError::DetailsNotObject,
            ]
        );
        assert_eq!(chain.head(), &before);
    }

    #[test]
    fn evolve_writes_a_marker_under_the_old_key_and_moves_on() {
        let mut chain = state();
        chain
            .append(NewEvent::new(ts(), "alice", "login", "", Outcome::Success))
            .unwrap();
        let next_id = AuditKey::from_bytes([3; 32]).evolve().key_id();
        let marker = chain.evolve(ts(), 2000).unwrap();
        assert!(marker.is_epoch_marker());
        assert_eq!((marker.seq, marker.epoch), (2, 0));
        assert_eq!(marker.actor, "warden");
        assert_eq!(
            marker.details,
            format!(
                "{{\"next_epoch\":1,\"next_key_id\":\"{}\"}}",
                hex::encode(next_id)
            )
        );
        let head = chain.head();
        assert_eq!((head.epoch, head.epoch_first_seq, head.next_seq), (1, 3, 3));
        assert_eq!(head.epoch_started_unix, 2000);
        assert_eq!(chain.key().key_id(), next_id);
    }

    #[test]
    fn policy_evolves_only_non_empty_epochs() {
        let mut chain = state();
        let policy = EpochPolicy {
            max_events: Some(2),
            max_age_secs: Some(60),
        };
        assert!(!chain.needs_evolution(&policy, 1_000_000));
        chain
            .append(NewEvent::new(ts(), "a", "x", "", Outcome::Success))
            .unwrap();
        assert!(!chain.needs_evolution(&policy, 1059));
        assert!(chain.needs_evolution(&policy, 1060));
        assert!(!chain.needs_evolution(&policy, 10), "clock went back");
        chain
            .append(NewEvent::new(ts(), "a", "x", "", Outcome::Success))
            .unwrap();
        assert!(chain.needs_evolution(&policy, 1000));
        assert!(!chain.needs_evolution(&EpochPolicy::default(), u64::MAX));
    }

    #[test]
    fn resume_checks_the_head() {
        let chain = state();
        let mut head = chain.head().clone();
        assert!(ChainState::resume(head.clone(), AuditKey::from_bytes([3; 32])).is_ok());
        head.epoch_first_seq = 2;
        assert!(ChainState::resume(head.clone(), AuditKey::from_bytes([3; 32])).is_err());
        head.epoch = 1;
        head.next_seq = 2;
        assert!(ChainState::resume(head, AuditKey::from_bytes([3; 32])).is_ok());
    }
}
