//! Persistence of the audit chain: rows, the chain head, the current epoch key (sealed under
//! the `audit` purpose key), and checkpoints; and [`AuditedTx`], the one way a change and the
//! audit events that describe it are committed together.
//!
//! Each append happens inside a `BEGIN IMMEDIATE` transaction that reads the head, appends
//! (evolving the key first when the epoch policy says so), writes the rows, the new head (last
//! seq and MAC, on every append) and, on evolution, the re-sealed key; the caller's change
//! commits in the same transaction: a crash leaves both before or both after, never between.
//! Several processes can append (the daemon and an administrator's CLI): the head is re-read
//! inside each transaction. When the key evolves, the old sealed key is overwritten
//! (`secure_delete`) and, after the commit, the WAL is checkpointed with TRUNCATE, so the old
//! key leaves the disk too.
//!
//! Verification checks the rows against the stored head and every stored checkpoint, so a tail
//! cut from the table is named on the box; a cut that also rewrites the head and the
//! checkpoints is only visible against a checkpoint kept off the box (the SIEM's).

mod ops;

use std::sync::{mpsc, Mutex};

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use warden_core::audit::{
    AuditKey, AuditRecord, ChainHead, ChainId, ChainMac, ChainState, Checkpoint, EpochPolicy,
    NewEvent, RecordRef, Timestamp, Verifier, VerifyReport,
};
use warden_core::audit::{Damage, DamageKind, Outcome};
use warden_core::report::report;
use warden_core::secret::Key32;

use crate::db::{Database, StoreError};
use crate::spool::{Spool, SpoolKind, SpoolPayload};

pub use ops::{
    checkpoint, csv_field, explain, export, tail, verify, verify_public, AuditOpError,
    ChainDamaged, ExportFormat, Exported, Tail,
};

const KEY_LABEL: &[u8] = b"warden audit epoch key v1";

/// How the chain evolves and checkpoints; fixed at init, stored with the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPolicy {
    pub epoch: EpochPolicy,
    /// A checkpoint is recorded every this many events (at least 1).
    pub checkpoint_every: u64,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        Self {
            epoch: EpochPolicy {
                max_events: Some(10_000),
                max_age_secs: Some(24 * 3600),
            },
            checkpoint_every: 100,
        }
    }
}

/// A stored audit row (owned), as read back for export, tail and verification.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredRow {
    pub seq: u64,
    pub epoch: u32,
    pub timestamp: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: String,
    pub details: String,
    #[serde(serialize_with = "as_hex")]
    pub mac: Vec<u8>,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

impl StoredRow {
    pub fn view(&self) -> RecordRef<'_> {
        RecordRef {
            seq: self.seq,
            epoch: self.epoch,
            timestamp: &self.timestamp,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            outcome: &self.outcome,
            details: &self.details,
            mac: &self.mac,
        }
    }
}

/// Where verification starts.
pub enum VerifyFrom {
    /// The whole chain, with the auditor's initial key.
    Genesis(AuditKey),
    /// The current epoch, with the key stored on the box.
    CurrentEpoch,
}

/// The result of verifying the stored chain.
pub struct ChainVerdict {
    pub result: Result<VerifyReport, Damage>,
    /// The first seq the verification covered (rows before it were not checked).
    pub from_seq: u64,
    pub head: ChainHead,
}

// Implements: V55, V63
/// The audit chain in the store. Holds the `audit` purpose key and a cache of the writing state,
/// checked against the database at every append (another process may have appended).
pub struct AuditLog {
    purpose_key: Key32,
    /// Set by a rotation of the `audit` key inside its transaction: the next append starts a
    /// new epoch and seals its key under this key instead ([`AuditLog::rotate_purpose_key`]).
    rotating_to: Mutex<Option<Key32>>,
    /// The checkpoint signing key, when the slot this process opened carries it: checkpoints
    /// are signed as they are stored, and ones stored unsigned before are signed then.
    signer: Option<warden_core::signing::CheckpointSigner>,
    /// The public digest after the last row, with the `next_seq` it belongs to.
    digest: Mutex<Option<(u64, [u8; 32])>>,
    cache: Mutex<Option<(ChainState, AuditPolicy)>>,
    /// Reading a damaged chain: appends to it are skipped instead of refused (see
    /// [`AuditLog::read_damaged_chain`]).
    reading_damaged: std::sync::atomic::AtomicBool,
    /// When set, every record and checkpoint is also queued for the SIEM in the same
    /// transaction (the outbox pattern: the chain and the spool cannot disagree).
    spool: Option<Spool>,
}

fn seal_key(purpose_key: &Key32, chain_id: &ChainId, epoch: u32, key: &AuditKey) -> Vec<u8> {
    let label = [KEY_LABEL, chain_id.as_bytes(), &epoch.to_be_bytes()].concat();
    warden_core::aead::seal(purpose_key, &label, key.expose_secret())
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn no_chain() -> StoreError {
    corrupt("no audit chain in this database (was it created by `warden init`?)")
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("audit state: {what}"))
}

impl AuditLog {
    pub fn new(purpose_key: Key32) -> Self {
        Self {
            purpose_key,
            rotating_to: Mutex::new(None),
            signer: None,
            digest: Mutex::new(None),
            cache: Mutex::new(None),
            reading_damaged: std::sync::atomic::AtomicBool::new(false),
            spool: None,
        }
    }

    /// The chain as every warden command and daemon uses it: each record and checkpoint is also
    /// queued for the SIEM (default spool limits) in the same transaction.
    pub fn forwarding_to_siem(purpose_key: Key32) -> Self {
        Self::new(purpose_key).with_siem_spool(Spool::new(crate::spool::SpoolLimits::default()))
    }

    /// Signs checkpoints with `signer` (the `signing` key of the slot this process opened).
    pub fn with_signer(mut self, signer: warden_core::signing::CheckpointSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Signs checkpoints with `signer` from now on (or stops signing).
    pub fn set_signer(&mut self, signer: Option<warden_core::signing::CheckpointSigner>) {
        self.signer = signer;
    }

    /// The public digest after the last row (`next_seq` of the head it belongs to): cached,
    /// stored with the head, or — for a chain from before signed checkpoints — computed from
    /// every row once.
    fn current_digest(
        &self,
        tx: &Transaction<'_>,
        head: &ChainHead,
    ) -> Result<[u8; 32], StoreError> {
        if let Some((next_seq, digest)) = *self.digest.lock().expect("not poisoned") {
            if next_seq == head.next_seq {
                return Ok(digest);
            }
        }
        let stored: Option<Vec<u8>> = tx
            .prepare_cached("SELECT last_digest FROM audit_state WHERE id = 1")?
            .query_row([], |r| r.get(0))?;
        if let Some(digest) = stored.and_then(|d| <[u8; 32]>::try_from(d).ok()) {
            return Ok(digest);
        }
        let mut digest = warden_core::audit::signed::genesis_digest(&head.chain_id);
        let mut scratch = Vec::new();
        let mut stmt = tx.prepare(
            "SELECT seq, epoch, ts, actor, action, subject, outcome, details, mac FROM audit_events
             WHERE seq < ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![head.next_seq as i64])?;
        while let Some(row) = rows.next()? {
            let stored = row_to_stored(row)?;
            digest = warden_core::audit::signed::next_digest(&digest, &stored.view(), &mut scratch);
        }
        Ok(digest)
    }
    pub fn with_siem_spool(mut self, spool: Spool) -> Self {
        self.set_siem_spool(spool);
        self
    }

    /// Queues records for the SIEM in `spool` from now on (a daemon's own `siem.spool` limits).
    pub fn set_siem_spool(&mut self, spool: Spool) {
        self.spool = Some(spool);
    }

    fn forward(
        &self,
        tx: &Transaction<'_>,
        records: &[AuditRecord],
        checkpoints: &[Checkpoint],
        signatures: &[Option<warden_core::audit::signed::SignedCheckpoint>],
    ) -> Result<(), StoreError> {
        let Some(spool) = &self.spool else {
            return Ok(());
        };
        let mut messages = Vec::with_capacity(records.len() + checkpoints.len());
        for record in records {
            messages.push((
                SpoolKind::AuditEvent,
                SpoolPayload {
                    user: Some(record.actor.clone()),
                    action: Some(record.action.clone()),
                    outcome: Some(record.outcome == Outcome::Success),
                    message: Some(format!("{} {}", record.subject, record.details)),
                    audit_seq: Some(record.seq),
                    chain_mac: Some(record.mac.to_string()),
                    ..SpoolPayload::default()
                },
            ));
        }
        for (i, checkpoint) in checkpoints.iter().enumerate() {
            let mut payload = SpoolPayload::checkpoint(checkpoint.seq, &checkpoint.mac.to_string());
            // A signed checkpoint: what the SIEM checks with the public key alone.
            if let Some(Some(signed)) = signatures.get(i) {
                payload.message = Some(format!(
                    "digest={} key_id={} ed25519={}",
                    hex::encode(&signed.digest),
                    hex::encode(&signed.key_id),
                    hex::encode(&signed.signature)
                ));
            }
            messages.push((SpoolKind::AuditCheckpoint, payload));
        }
        // An audit event is never dropped by the spool: it is stored or refused.
        spool.enqueue_batch(tx, crate::spool::now_ms(), &messages)?;
        Ok(())
    }

    /// Starts the chain in an empty store with `k0` (which the caller has already exported for
    /// the auditor). Fails if a chain exists.
    pub fn create(
        &self,
        db: &mut Database,
        k0: AuditKey,
        chain_id: ChainId,
        policy: AuditPolicy,
    ) -> Result<(), StoreError> {
        let state = ChainState::genesis(k0, chain_id, now_unix());
        let tx = db
            .conn_mut()
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM audit_state", [], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            return Err(corrupt("a chain already exists"));
        }
        let head = state.head();
        tx.execute(
            "INSERT INTO audit_state (id, chain_id, next_seq, epoch, last_mac, epoch_first_seq, epoch_started,
                                      key_sealed, epoch_max_events, epoch_max_secs, checkpoint_every)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                head.chain_id.as_bytes().as_slice(),
                head.next_seq as i64,
                head.epoch,
                head.last_mac.as_bytes().as_slice(),
                head.epoch_first_seq as i64,
                head.epoch_started_unix as i64,
                seal_key(&self.purpose_key, &head.chain_id, head.epoch, state.key()),
                policy.epoch.max_events.map(|v| v as i64),
                policy.epoch.max_age_secs.map(|v| v as i64),
                policy.checkpoint_every.max(1) as i64,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The chain's writing state as the database has it now: the head stored in `audit_state`
    /// (committed with every append), checked against the last row, so nothing is appended to
    /// a chain whose tail was cut or extended behind the head's back.
    fn load(&self, tx: &Transaction<'_>) -> Result<(ChainState, AuditPolicy), StoreError> {
        // One query for everything an append must agree with: the head, the last row, the
        // newest stored checkpoint, and the current epoch's marker.
        let HeadCheck {
            next_seq,
            last_mac,
            last_row,
            last_row_mac,
            newest_checkpoint,
            marker_missing,
        } = tx
            .prepare_cached(
                "SELECT s.next_seq, s.last_mac,
                        (SELECT seq FROM audit_events ORDER BY seq DESC LIMIT 1),
                        (SELECT mac FROM audit_events ORDER BY seq DESC LIMIT 1),
                        (SELECT max(seq) FROM audit_checkpoints),
                        s.epoch > 0 AND NOT EXISTS
                            (SELECT 1 FROM audit_events WHERE seq = s.epoch_first_seq - 1)
                 FROM audit_state s WHERE s.id = 1",
            )?
            .query_row([], |r| {
                Ok(HeadCheck {
                    next_seq: r.get(0)?,
                    last_mac: r.get(1)?,
                    last_row: r.get(2)?,
                    last_row_mac: r.get(3)?,
                    newest_checkpoint: r.get(4)?,
                    marker_missing: r.get(5)?,
                })
            })
            .optional()?
            .ok_or_else(no_chain)?;
        let damaged = |why: String| {
            Err(StoreError::ChainDamaged(format!(
                "{why}; refusing to append (run `warden audit verify`)"
            )))
        };
        let last_row = last_row.unwrap_or(0);
        let head_seq = next_seq - 1;
        if last_row < head_seq {
            return damaged(format!(
                "rows {}..{head_seq} are missing from the end of the chain",
                last_row + 1
            ));
        }
        if last_row > head_seq {
            return damaged(format!(
                "rows {next_seq}..{last_row} lie beyond the stored head"
            ));
        }
        if last_row > 0 && last_row_mac.as_deref() != Some(last_mac.as_slice()) {
            return damaged(format!(
                "the last row ({last_row}) does not carry the stored head's MAC"
            ));
        }
        if let Some(checkpoint) = newest_checkpoint.filter(|c| *c > head_seq) {
            return damaged(format!(
                "a stored checkpoint at seq {checkpoint} lies beyond the last row ({head_seq})"
            ));
        }
        if marker_missing {
            return damaged("the current epoch's marker is missing".into());
        }
        // Fast path: nobody else appended since our last append, so the cached state is current.
        {
            let mut cache = self.cache.lock().expect("not poisoned");
            if let Some((state, policy)) = cache.take() {
                let head = state.head();
                if head.next_seq == next_seq as u64
                    && head.last_mac.as_bytes().as_slice() == last_mac.as_slice()
                {
                    return Ok((state, policy));
                }
            }
        }
        self.read_state(tx)
    }

    /// The stored head, epoch and policy, and the current epoch key opened, as a writing state;
    /// the rows are not looked at.
    fn read_state(&self, tx: &Transaction<'_>) -> Result<(ChainState, AuditPolicy), StoreError> {
        let (head, key, policy) = self.read_raw(tx)?;
        let state = ChainState::resume(head, key).map_err(|e| corrupt(&report(&e)))?;
        Ok((state, policy))
    }

    /// The stored head, policy and current epoch key, as stored (not checked for consistency:
    /// verification judges an inconsistent head against the rows).
    fn read_raw(
        &self,
        tx: &Transaction<'_>,
    ) -> Result<(ChainHead, AuditKey, AuditPolicy), StoreError> {
        let row = tx
            .prepare_cached(
                "SELECT chain_id, epoch, epoch_first_seq, epoch_started, epoch_max_events,
                        epoch_max_secs, checkpoint_every, key_sealed, next_seq, last_mac
                 FROM audit_state WHERE id = 1",
            )?
            .query_row([], |r| {
                Ok((
                    (
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ),
                    (
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, i64>(6)?,
                    ),
                    (
                        r.get::<_, Vec<u8>>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, Vec<u8>>(9)?,
                    ),
                ))
            })
            .optional()?
            .ok_or_else(no_chain)?;
        let (
            (chain_id, epoch, first_seq, started),
            (max_events, max_secs, every),
            (sealed, next_seq, last_mac),
        ) = row;
        let chain_id = ChainId(
            chain_id
                .try_into()
                .map_err(|_| corrupt("chain id is not 16 bytes"))?,
        );
        let policy = AuditPolicy {
            epoch: EpochPolicy {
                max_events: max_events.map(|v| v as u64),
                max_age_secs: max_secs.map(|v| v as u64),
            },
            checkpoint_every: every.max(1) as u64,
        };
        let head = ChainHead {
            chain_id,
            next_seq: next_seq as u64,
            epoch,
            last_mac: ChainMac::from_slice(&last_mac)
                .ok_or_else(|| corrupt("a stored mac is not 32 bytes"))?,
            epoch_first_seq: first_seq as u64,
            epoch_started_unix: started as u64,
        };
        let label = [KEY_LABEL, chain_id.as_bytes(), &epoch.to_be_bytes()].concat();
        let key = warden_core::aead::open(&self.purpose_key, &label, &sealed).map_err(|_| {
            corrupt("the stored epoch key does not open (replaced, or sealed for another epoch)")
        })?;
        let key = AuditKey::from_bytes(
            key.expose_secret()
                .try_into()
                .map_err(|_| corrupt("epoch key is not 32 bytes"))?,
        );
        Ok((head, key, policy))
    }

    fn insert_row(tx: &Transaction<'_>, r: &AuditRecord) -> Result<(), StoreError> {
        tx.prepare_cached(
            "INSERT INTO audit_events (seq, epoch, ts, actor, action, subject, outcome, details, mac)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
                r.seq as i64,
                r.epoch,
                r.timestamp,
                r.actor,
                r.action,
                r.subject,
                r.outcome.as_str(),
                r.details,
                r.mac.as_bytes().as_slice()
            ])?;
        Ok(())
    }

    /// Appends `events` inside `tx`. Returns the stored records, epoch markers included, and
    /// whether the key evolved. Callers go through [`AuditedTx::audit`], whose commit erases
    /// the old key after an evolution.
    fn append_in(
        &self,
        tx: &Transaction<'_>,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let (mut state, policy) = self.load(tx)?;
        let mut digest = self.current_digest(tx, state.head())?;
        let mut scratch = Vec::new();
        let mut checkpoint_digests = Vec::new();
        let rotating_to = self.rotating_to.lock().expect("not poisoned").take();
        let mut force = rotating_to.is_some();
        let mut records = Vec::with_capacity(events.len());
        let mut evolved = false;
        let mut checkpoints = Vec::new();
        for event in events {
            let now = now_unix();
            if std::mem::take(&mut force) || state.needs_evolution(&policy.epoch, now) {
                let marker = state
                    .evolve(event.timestamp.clone(), now)
                    .map_err(|e| corrupt(&report(&e)))?;
                Self::insert_row(tx, &marker)?;
                digest =
                    warden_core::audit::signed::next_digest(&digest, &marker.view(), &mut scratch);
                if marker.seq % policy.checkpoint_every == 0 {
                    checkpoints.push(state.checkpoint());
                    checkpoint_digests.push(digest);
                }
                records.push(marker);
                evolved = true;
            }
            let record = state.append(event).map_err(StoreError::from_audit)?;
            Self::insert_row(tx, &record)?;
            digest = warden_core::audit::signed::next_digest(&digest, &record.view(), &mut scratch);
            if record.seq % policy.checkpoint_every == 0 {
                checkpoints.push(state.checkpoint());
                checkpoint_digests.push(digest);
            }
            records.push(record);
        }
        let chain_id = state.head().chain_id;
        let mut signatures = Vec::with_capacity(checkpoints.len());
        for (checkpoint, digest) in checkpoints.iter().zip(&checkpoint_digests) {
            // Never replaced: a checkpoint already stored at this seq is evidence of a chain
            // that was there before (a cut tail re-grown), and the append fails on it.
            let signed = self.signer.as_ref().map(|signer| {
                warden_core::audit::signed::sign(
                    signer,
                    &chain_id,
                    checkpoint.seq,
                    checkpoint.mac.as_bytes(),
                    digest,
                )
            });
            let stored = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO audit_checkpoints (seq, mac, created, digest, key_id, signature)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    checkpoint.seq as i64,
                    checkpoint.mac.as_bytes().as_slice(),
                    crate::now_rfc3339(),
                    digest.as_slice(),
                    signed.as_ref().map(|s| s.key_id.clone()),
                    signed.as_ref().map(|s| s.signature.clone()),
                ])?;
            signatures.push(signed);
            if stored == 0 {
                return Err(StoreError::ChainDamaged(format!(
                    "a checkpoint is already stored at seq {}; refusing to append (run `warden audit verify`)",
                    checkpoint.seq
                )));
            }
        }
        let head = state.head();
        if evolved {
            // The key changed: overwrite the sealed key (the old one is gone with it), under the
            // new purpose key when this is its rotation.
            let sealing = rotating_to.as_ref().unwrap_or(&self.purpose_key);
            tx.prepare_cached(
                "UPDATE audit_state SET epoch = ?1, epoch_first_seq = ?2, epoch_started = ?3,
                        key_sealed = ?4 WHERE id = 1",
            )?
            .execute(params![
                head.epoch,
                head.epoch_first_seq as i64,
                head.epoch_started_unix as i64,
                seal_key(sealing, &head.chain_id, head.epoch, state.key()),
            ])?;
        }
        if rotating_to.is_some() && !evolved {
            return Err(corrupt(
                "the rotation of the audit key did not start a new epoch",
            ));
        }
        if !records.is_empty() {
            // The head is committed with every append, so a cut tail is seen on the box.
            tx.prepare_cached(
                "UPDATE audit_state SET next_seq = ?1, last_mac = ?2, last_digest = ?3 WHERE id = 1",
            )?
            .execute(params![
                head.next_seq as i64,
                head.last_mac.as_bytes().as_slice(),
                digest.as_slice()
            ])?;
        }
        *self.digest.lock().expect("not poisoned") = Some((head.next_seq, digest));
        if let Some(signer) = &self.signer {
            // Checkpoints stored by a process without the signing key (an operator's, an
            // auditor's) are signed by the next one that has it.
            let unsigned: Vec<(i64, Vec<u8>, Vec<u8>)> = tx
                .prepare_cached(
                    "SELECT seq, mac, digest FROM audit_checkpoints
                     WHERE signature IS NULL AND digest IS NOT NULL",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (seq, mac, stored_digest) in unsigned {
                let Ok(d) = <[u8; 32]>::try_from(stored_digest) else {
                    continue;
                };
                let signed =
                    warden_core::audit::signed::sign(signer, &chain_id, seq as u64, &mac, &d);
                tx.prepare_cached(
                    "UPDATE audit_checkpoints SET key_id = ?2, signature = ?3 WHERE seq = ?1",
                )?
                .execute(params![seq, signed.key_id, signed.signature])?;
            }
        }
        self.forward(tx, &records, &checkpoints, &signatures)?;
        *self.cache.lock().expect("not poisoned") = Some((state, policy));
        Ok(Appended {
            records,
            checkpoints,
            evolved,
        })
    }

    /// Makes the next append (inside the caller's transaction) start a new epoch whose key is
    /// sealed under `new_purpose_key`: the rotation of the `audit` key. The new epoch's key is
    /// `HMAC(k_e, evolve)` as always, so the chain still verifies from genesis; after the
    /// commit the old purpose key opens nothing that is stored (the old sealed epoch key is
    /// overwritten with `secure_delete` and the WAL is truncated). Call
    /// [`AuditLog::set_purpose_key`] once the transaction committed.
    pub fn rotate_purpose_key(&self, new_purpose_key: Key32) {
        *self.rotating_to.lock().expect("not poisoned") = Some(new_purpose_key);
    }

    /// Uses `key` as the `audit` purpose key from now on (after its rotation committed).
    pub fn set_purpose_key(&mut self, key: Key32) {
        self.purpose_key = key;
        *self.cache.lock().expect("not poisoned") = None;
    }

    /// Appends `events` durably in a transaction of their own (a refusal, a sign-in, an
    /// event that goes with no change).
    pub fn append(&self, db: &mut Database, events: Vec<NewEvent>) -> Result<Appended, StoreError> {
        let tx = self.begin(db)?;
        let appended = tx.audit(events)?;
        tx.commit()?;
        Ok(appended)
    }

    /// For a command that only reads the trail (verify, export, tail): when the chain's rows no
    /// longer match its head (a cut or extended tail), its own events are skipped — with a
    /// warning — instead of refused, so the damage can still be examined and named. Nothing
    /// is ever appended to a damaged chain; every other command is refused.
    pub fn read_damaged_chain(&self) {
        self.reading_damaged
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Opens the transaction a change and its audit events commit in (`BEGIN IMMEDIATE`).
    pub fn begin<'a>(&'a self, db: &'a mut Database) -> Result<AuditedTx<'a>, StoreError> {
        let conn = db.conn();
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        Ok(AuditedTx {
            log: self,
            conn,
            tx,
            evolved: std::cell::Cell::new(false),
            events: std::cell::Cell::new(0),
        })
    }

    // Implements: V55, V58
    /// Runs `change` in one transaction and commits it together with the audit events it
    /// appended. Every privileged operation goes through here: a change that appended no
    /// event is rolled back and refused, so an act cannot be committed without its evidence.
    pub fn transact<T, E>(
        &self,
        db: &mut Database,
        change: impl FnOnce(&AuditedTx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self.begin(db)?;
        let value = change(&tx)?;
        if tx.events() == 0 {
            return Err(StoreError::Unaudited.into());
        }
        tx.commit()?;
        Ok(value)
    }

    /// The stored head (public), as committed with the last append; the rows are not looked
    /// at (verification compares them with it).
    pub fn head(&self, db: &mut Database) -> Result<ChainHead, StoreError> {
        let tx = db.conn_mut().transaction()?;
        let (head, _, _) = self.read_raw(&tx)?;
        Ok(head)
    }

    /// Stored checkpoints at or after `from_seq`. A stored MAC that is not 32 bytes cannot
    /// match anything and reads as all zeros, i.e. as damage at its seq.
    fn checkpoints(tx: &Transaction<'_>, from_seq: u64) -> Result<Vec<Checkpoint>, StoreError> {
        let mut stmt = tx.prepare("SELECT seq, mac FROM audit_checkpoints WHERE seq >= ?1")?;
        let rows = stmt.query_map(params![from_seq as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, mac) = row?;
            out.push(Checkpoint {
                seq: seq as u64,
                mac: ChainMac::from_slice(&mac).unwrap_or(ChainMac([0; 32])),
            });
        }
        Ok(out)
    }

    /// Every stored checkpoint that carries a signature, in seq order.
    pub fn signed_checkpoints(
        db: &Database,
    ) -> Result<Vec<warden_core::audit::signed::SignedCheckpoint>, StoreError> {
        let mut stmt = db.conn().prepare(
            "SELECT seq, mac, digest, key_id, signature FROM audit_checkpoints
             WHERE signature IS NOT NULL ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(warden_core::audit::signed::SignedCheckpoint {
                seq: r.get::<_, i64>(0)? as u64,
                mac: r.get(1)?,
                digest: r.get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default(),
                key_id: r.get(3)?,
                signature: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The chain's id (public).
    pub fn stored_chain_id(db: &Database) -> Result<ChainId, StoreError> {
        let bytes: Vec<u8> = db
            .conn()
            .query_row("SELECT chain_id FROM audit_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(no_chain)?;
        Ok(ChainId(
            bytes
                .try_into()
                .map_err(|_| corrupt("chain id is not 16 bytes"))?,
        ))
    }

    /// The most recent checkpoint recorded, if any.
    pub fn latest_checkpoint(db: &Database) -> Result<Option<Checkpoint>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = db
            .conn()
            .query_row(
                "SELECT seq, mac FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(seq, mac)| {
            Some(Checkpoint {
                seq: seq as u64,
                mac: ChainMac::from_slice(&mac)?,
            })
        }))
    }

    /// Verifies the stored chain, streaming rows in seq order, against the stored head, every
    /// stored checkpoint in range and `checkpoint` (a trusted one kept off the box).
    pub fn verify(
        &self,
        db: &mut Database,
        from: VerifyFrom,
        checkpoint: Option<Checkpoint>,
    ) -> Result<ChainVerdict, StoreError> {
        let tx = db.conn_mut().transaction()?;
        let (head, key, _) = self.read_raw(&tx)?;
        // The chain starts at seq 1: a row numbered below it belongs nowhere, and the scans
        // below (which start at 1 or later) would never read it.
        let stray: Option<i64> =
            tx.query_row("SELECT min(seq) FROM audit_events WHERE seq < 1", [], |r| {
                r.get(0)
            })?;
        if stray.is_some() {
            return Ok(ChainVerdict {
                result: Err(Damage {
                    seq: 0,
                    kind: DamageKind::Inserted,
                }),
                from_seq: 0,
                head,
            });
        }
        let (verifier, from_seq) = match from {
            VerifyFrom::Genesis(k0) => (Verifier::from_genesis(k0, head.chain_id), 1),
            VerifyFrom::CurrentEpoch if head.epoch == 0 => {
                // Epoch 0's key is k0 itself: the box still holds it until the first evolution.
                (Verifier::from_genesis(key, head.chain_id), 1)
            }
            VerifyFrom::CurrentEpoch => {
                let marker_seq = head.epoch_first_seq.saturating_sub(1);
                let Some(marker) = read_row(&tx, marker_seq)? else {
                    // Without the marker the epoch cannot be anchored: the marker was removed,
                    // or (no row after it either) the tail was cut from the last row left.
                    let later: Option<i64> = tx.query_row(
                        "SELECT min(seq) FROM audit_events WHERE seq > ?1",
                        params![marker_seq as i64],
                        |r| r.get(0),
                    )?;
                    let damage = match later {
                        Some(_) => Damage {
                            seq: marker_seq,
                            kind: DamageKind::Removed,
                        },
                        None => Damage {
                            seq: last_seq_in(&tx)? + 1,
                            kind: DamageKind::Truncated,
                        },
                    };
                    return Ok(ChainVerdict {
                        result: Err(damage),
                        from_seq: marker_seq,
                        head,
                    });
                };
                (
                    Verifier::from_epoch(head.epoch, key, marker.view()),
                    head.epoch_first_seq,
                )
            }
        };
        let stored_head = Checkpoint {
            seq: head.next_seq - 1,
            mac: head.last_mac,
        };
        let mut verifier = verifier.with_head(stored_head);
        for stored in Self::checkpoints(&tx, from_seq)? {
            verifier = verifier.with_checkpoint(stored);
        }
        if let Some(c) = checkpoint {
            verifier = verifier.with_checkpoint(c);
        }
        let mut stmt = tx.prepare(
            "SELECT seq, epoch, ts, actor, action, subject, outcome, details, mac FROM audit_events
             WHERE seq >= ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![from_seq as i64])?;
        // Two stages on two cores: this thread steps SQLite (page decryption included) and
        // copies rows into batches; another checks the chain. The checker stops at the first
        // damage, which stops the reading too.
        let (full_tx, full_rx) = mpsc::sync_channel::<RowBatch>(4);
        let (empty_tx, empty_rx) = mpsc::sync_channel::<RowBatch>(6);
        let result = std::thread::scope(|scope| {
            let checker = scope.spawn(move || {
                for batch in full_rx {
                    for record in batch.records() {
                        verifier.push(record)?;
                    }
                    let _ = empty_tx.try_send(batch);
                }
                verifier.finish()
            });
            let mut batch = RowBatch::default();
            while let Some(row) = rows.next()? {
                batch.push(row)?;
                if batch.len() == ROWS_PER_BATCH {
                    let next = empty_rx.try_recv().unwrap_or_default();
                    if full_tx.send(std::mem::replace(&mut batch, next)).is_err() {
                        break; // the checker found damage
                    }
                    batch.clear();
                }
            }
            if batch.len() > 0 {
                let _ = full_tx.send(batch);
            }
            drop(full_tx);
            checker
                .join()
                .map_err(|_| corrupt("the chain checker panicked"))
        })?;
        drop(rows);
        drop(stmt);
        Ok(ChainVerdict {
            result,
            from_seq,
            head,
        })
    }
}

/// A transaction whose audit events commit with the change they describe. Made by
/// [`AuditLog::begin`]; dropped without [`AuditedTx::commit`], everything in it is rolled back.
/// Derefs to the transaction for the change itself.
#[must_use = "commit() it, or the change and its audit events are rolled back"]
pub struct AuditedTx<'a> {
    log: &'a AuditLog,
    conn: &'a rusqlite::Connection,
    tx: Transaction<'a>,
    evolved: std::cell::Cell<bool>,
    events: std::cell::Cell<usize>,
}

impl AuditedTx<'_> {
    /// Appends `events` in this transaction.
    pub fn audit(&self, events: Vec<NewEvent>) -> Result<Appended, StoreError> {
        if events.is_empty() {
            return Ok(Appended::default());
        }
        let count = events.len();
        let appended = match self.log.append_in(&self.tx, events) {
            Err(StoreError::ChainDamaged(why))
                if self
                    .log
                    .reading_damaged
                    .load(std::sync::atomic::Ordering::SeqCst) =>
            {
                tracing::warn!(
                    "the audit chain is damaged ({why}); this command's events are not recorded"
                );
                // Counted as kept, so the read proceeds; nothing was appended.
                self.events.set(self.events.get() + count);
                return Ok(Appended::default());
            }
            other => other?,
        };
        self.events.set(self.events.get() + count);
        if appended.evolved {
            self.evolved.set(true);
        }
        Ok(appended)
    }

    /// Appends one event.
    pub fn audit_one(&self, event: NewEvent) -> Result<(), StoreError> {
        self.audit(vec![event]).map(drop)
    }

    /// Events appended so far.
    pub fn events(&self) -> usize {
        self.events.get()
    }

    /// Re-keys the whole database with `new_key` (SQLCipher `PRAGMA rekey`) as the commit of
    /// this transaction: SQLCipher re-encrypts every page and commits the open transaction with
    /// them, so the change, its audit events and the new key are one commit (a crash leaves
    /// the old key and none of it, or the new key and all of it). The old key's pages then
    /// leave the main file (WAL checkpoint).
    pub fn commit_with_rekey(self, new_key: &Key32) -> Result<(), StoreError> {
        if self.events.get() == 0 {
            return Err(StoreError::Unaudited);
        }
        let Self { conn, tx, .. } = self;
        let pragma = zeroize::Zeroizing::new(format!(
            "PRAGMA rekey = \"x'{}'\";",
            hex::encode(new_key.expose_secret())
        ));
        tx.execute_batch(&pragma)?;
        match tx.commit() {
            Ok(()) => {}
            // The rekey committed the transaction itself.
            Err(e) if e.to_string().contains("no transaction is active") => {}
            Err(e) => return Err(e.into()),
        }
        erase_old_pages(conn)
    }

    /// Commits the change and its events; after an epoch key evolution, erases the old key
    /// from the disk (WAL checkpoint).
    pub fn commit(self) -> Result<(), StoreError> {
        let Self {
            conn, tx, evolved, ..
        } = self;
        tx.commit()?;
        if evolved.get() {
            erase_old_pages(conn)?;
        }
        Ok(())
    }
}

/// Moves every page from the WAL into the main file and empties the WAL, so a key that was
/// replaced (an evolved epoch key, a database key after a rekey) leaves the disk.
fn erase_old_pages(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

impl<'a> std::ops::Deref for AuditedTx<'a> {
    type Target = Transaction<'a>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

/// What an append checks before it writes: the stored head against the last row, the newest
/// stored checkpoint and the current epoch's marker.
struct HeadCheck {
    next_seq: i64,
    last_mac: Vec<u8>,
    last_row: Option<i64>,
    last_row_mac: Option<Vec<u8>>,
    newest_checkpoint: Option<i64>,
    marker_missing: bool,
}

/// Rows handed from the reading thread to the chain checker per batch.
const ROWS_PER_BATCH: usize = 512;

/// Stored rows copied out of SQLite: every field's bytes in one buffer, with offsets.
#[derive(Default)]
struct RowBatch {
    bytes: Vec<u8>,
    rows: Vec<RowSpans>,
}

struct RowSpans {
    seq: u64,
    epoch: u32,
    /// End offsets in `bytes` of ts, actor, action, subject, outcome, details, mac.
    ends: [usize; 7],
}

impl RowBatch {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.rows.clear();
    }

    fn push(&mut self, row: &rusqlite::Row<'_>) -> Result<(), rusqlite::Error> {
        let seq = row.get::<_, i64>(0)? as u64;
        let epoch = row
            .get::<_, i64>(1)
            .map_or(u32::MAX, |e| u32::try_from(e).unwrap_or(u32::MAX));
        let mut ends = [0; 7];
        for (i, end) in ends.iter_mut().enumerate() {
            // A text field that is not text (someone stored a blob or a number), or a MAC that
            // is not a blob, reads as empty, i.e. as damage.
            let field = match (i, row.get_ref(i + 2)) {
                (6, Ok(value)) => value.as_blob().unwrap_or(&[]),
                (_, Ok(value)) => value.as_str().map(str::as_bytes).unwrap_or(&[]),
                (_, Err(_)) => &[],
            };
            self.bytes.extend_from_slice(field);
            *end = self.bytes.len();
        }
        self.rows.push(RowSpans { seq, epoch, ends });
        Ok(())
    }

    fn records(&self) -> impl Iterator<Item = RecordRef<'_>> {
        let mut start = 0;
        self.rows.iter().map(move |row| {
            let mut field = |i: usize| {
                let bytes = &self.bytes[start..row.ends[i]];
                start = row.ends[i];
                bytes
            };
            let mut text = |i: usize| std::str::from_utf8(field(i)).unwrap_or("");
            let (timestamp, actor, action, subject, outcome, details) =
                (text(0), text(1), text(2), text(3), text(4), text(5));
            RecordRef {
                seq: row.seq,
                epoch: row.epoch,
                timestamp,
                actor,
                action,
                subject,
                outcome,
                details,
                mac: field(6),
            }
        })
    }
}

/// What an append stored.
#[derive(Default)]
pub struct Appended {
    pub records: Vec<AuditRecord>,
    pub checkpoints: Vec<Checkpoint>,
    pub evolved: bool,
}

fn row_to_stored(row: &rusqlite::Row<'_>) -> Result<StoredRow, rusqlite::Error> {
    Ok(StoredRow {
        seq: row.get::<_, i64>(0)? as u64,
        epoch: row.get(1)?,
        timestamp: row.get(2)?,
        actor: row.get(3)?,
        action: row.get(4)?,
        subject: row.get(5)?,
        outcome: row.get(6)?,
        details: row.get(7)?,
        mac: row.get(8)?,
    })
}

fn read_row(conn: &rusqlite::Connection, seq: u64) -> Result<Option<StoredRow>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq, epoch, ts, actor, action, subject, outcome, details, mac FROM audit_events WHERE seq = ?1",
            params![seq as i64],
            row_to_stored,
        )
        .optional()?)
}

/// Rows with `seq >= from` in order, at most `limit` (for export and tail).
pub fn read_rows(
    db: &Database,
    from: u64,
    limit: Option<u64>,
) -> Result<Vec<StoredRow>, StoreError> {
    let mut stmt = db.conn().prepare(
        "SELECT seq, epoch, ts, actor, action, subject, outcome, details, mac FROM audit_events
         WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let limit = limit.map_or(-1, |l| l as i64);
    let rows = stmt.query_map(params![from as i64, limit], row_to_stored)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The highest stored seq (0 when empty).
pub fn last_seq(db: &Database) -> Result<u64, StoreError> {
    last_seq_in(db.conn())
}

fn last_seq_in(conn: &rusqlite::Connection) -> Result<u64, StoreError> {
    Ok(
        conn.query_row("SELECT coalesce(max(seq), 0) FROM audit_events", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// A file as audit events name it: the absolute path (as typed if it cannot be made absolute),
/// with control characters escaped and long paths shortened from the front.
pub fn path_text(path: &std::path::Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    warden_core::audit::field_text(&absolute.display().to_string())
}

/// A timestamp for `now`, in the chain's format.
pub fn timestamp_now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_unix_micros(micros).expect("the system clock is after 1970 and before 9999")
}
