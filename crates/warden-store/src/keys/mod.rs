//! Key slots in the store: opening the store with the keys a slot gave, the lifecycle of slots
//! (people's passwords, the master passphrase, the recovery key, service keys), rotations,
//! and the conversion of a format-1 (derived keys) data directory.
//!
//! **Two-step changes.** A change to `keyslots.json` that goes with a change in the database
//! (a new user and their slot; a new password and its slot; a rotated key and the data under
//! it) is made in three steps, under the slot lock:
//!
//! 1. the slot file is rewritten with the change *pending*: new slots added, old ones still
//!    there, a rotated key's next version wrapped beside the current one, and a random
//!    transaction id (`Pending`);
//! 2. the database transaction makes the change, appends its audit events and records the
//!    transaction id (`keyslot_log`): this commit is the change's commit point;
//! 3. the slot file is rewritten settled: the replaced slots (or the old key version) go.
//!
//! A crash (SIGKILL) after 1 leaves both the old and the new slots usable; whoever opens the
//! store next settles the change by looking for the transaction id ([`open_store`]): found,
//! it finishes step 3; not found, it removes what step 1 added. So the directory always opens
//! with the old keys or the new, never neither, and the slot file never disagrees with the
//! database for longer than one open. Rotations of `recordings` and `config` re-key files one
//! by one before their commit and are resumed, not rolled back ([`rotate`]).
//!
//! **Refusals without keys.** A wrong password opens no slot, so nothing can be written to the
//! audit chain at that moment. Such refusals go to `state/unrecorded.jsonl` ([`journal`]) and
//! the next process that opens the store appends them to the chain (and counts them toward the
//! lockout), marked `recorded_late`.

pub mod journal;
mod ops;
pub mod rotate;
mod upgrade;

use rusqlite::{params, OptionalExtension, Transaction};
use warden_core::datadir::{DataDir, DataDirError, KeyFormat};
use warden_core::keyring::Purpose;
use warden_core::keyslots::{KeyRing, KeySlotError, NotCarried, Pending, SlotFile, Unlocked};

use crate::db::{Database, StoreError, DB_FILE};
use crate::identity::{Identity, IdentityError, WrongAuthorization};
use crate::Store;

pub use ops::{
    add_service, add_user, break_glass, change_own_password, change_passphrase, ensure_user_slot,
    list_slots, new_recovery_key, refuse_sign_in, remove_service, remove_user, reset_password,
    sign_in_with_slot, unlock_user, SlotInfo, SlotSignIn, UserSlot,
};
pub use rotate::{rotate, RotateOptions, Rotated};
pub use upgrade::convert;

/// The tables (schema migration 8): committed key-slot changes, and refusals recorded late.
pub const MIGRATION_SQL: &str = "
    CREATE TABLE keyslot_log (
        txid      BLOB PRIMARY KEY,
        action    TEXT NOT NULL,
        committed TEXT NOT NULL
    );
    CREATE TABLE unrecorded_ingested (
        id TEXT PRIMARY KEY
    );
";

/// Why a key operation failed, sorted by cause.
#[derive(Debug, thiserror::Error)]
pub enum KeyOpError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Slots(#[from] KeySlotError),
    #[error(transparent)]
    NotCarried(#[from] NotCarried),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Authorization(#[from] WrongAuthorization),
    /// Every `database` key the slot carries was authenticated by the slot (or the key
    /// checks), so a file none of them opens is damaged where SQLCipher checks the key (its
    /// first page) or is another data directory's.
    #[error("{0} does not open with this data directory's `database` key: its first page is damaged, or the file belongs to another data directory (restore it from a backup)")]
    DatabaseDoesNotOpen(std::path::PathBuf),
    #[error("{0} has no key slot (a data directory converted from derived keys): sign in once with the master passphrase as well (--passphrase-file), or have an administrator reset the password")]
    NoUserSlot(String),
    #[error("the data directory is in use by another warden process (a daemon?); stop it before rotating the `{0}` key")]
    Busy(Purpose),
    #[error("the `phi` key is not rotated: each record version's hash, recorded in the audit chain, covers its PHI sealed under this key, so re-sealing would break the evidence (docs/records.md, \"Limits\")")]
    PhiNotRotated,
    #[error("{user}: {what}: the users table was changed outside warden (restore the database from a backup; the refusal is in the audit chain as keys.slot.mismatch)")]
    UsersTableChanged { user: String, what: String },
    #[error("{0}")]
    Refused(String),
    #[error("{path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] warden_core::fsx::FsError),
}

impl From<rusqlite::Error> for KeyOpError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(err))
    }
}

/// A person's slot opened, and the database signed them in: the role the database gives them
/// must be the role their slot was made for. A role changed in the database alone (by anyone
/// holding the `database` key) would otherwise grant that role's permissions.
pub fn check_holder(
    store: &mut Store,
    user: &crate::identity::AuthenticatedUser,
    holder: warden_core::keyslots::Holder,
) -> Result<(), KeyOpError> {
    if holder == warden_core::keyslots::Holder::Role(user.role()) {
        return Ok(());
    }
    let what = format!(
        "the database says {} is {}, but their key slot holds the keys of `{}`",
        user.username(),
        user.role(),
        holder.name()
    );
    Err(users_table_changed(store, user, what))
}

/// The refusal of a sign-in whose database row disagrees with the person's key slot: recorded
/// as `keys.slot.mismatch` (failure) after the sign-in's own event, then returned.
pub(crate) fn users_table_changed(
    store: &mut Store,
    user: &crate::identity::AuthenticatedUser,
    what: String,
) -> KeyOpError {
    let event = warden_core::audit::NewEvent::new(
        crate::audit::timestamp_now(),
        user.username(),
        "keys.slot.mismatch",
        format!("user:{}", user.username()),
        warden_core::audit::Outcome::Failure,
    )
    .with_details(serde_json::json!({ "role": user.role().name(), "reason": what }));
    if let Err(err) = store.append(vec![event]) {
        tracing::warn!("the refusal could not be recorded: {err}");
    }
    KeyOpError::UsersTableChanged {
        user: user.username().to_owned(),
        what,
    }
}

/// Records, inside the transaction that commits a change, that the key-slot change `txid`
/// committed with it.
pub(crate) fn record_commit(
    tx: &Transaction<'_>,
    txid: &[u8],
    action: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO keyslot_log (txid, action, committed) VALUES (?1, ?2, ?3)",
        params![txid, action, crate::now_rfc3339()],
    )?;
    Ok(())
}

/// Whether the key-slot change `txid` committed.
pub fn committed(db: &Database, txid: &[u8]) -> Result<bool, StoreError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT 1 FROM keyslot_log WHERE txid = ?1",
            params![txid],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// A pending change that is resumed rather than rolled back when it did not commit: a
/// rotation of keys whose data are files re-keyed one by one (`recordings`, `config`).
fn resumable(pending: &Pending) -> bool {
    matches!(pending.rotate, Some(Purpose::Recordings | Purpose::Config))
}

/// Opens the store of `dir` with the keys in `ring` (a slot's): the database with the current
/// `database` key (or the next one, during a rotation), settling a pending key-slot change
/// first, then appending the refusals recorded without keys. Returns the ring as settled.
pub fn open_store(dir: &DataDir, ring: KeyRing) -> Result<(Store, KeyRing), KeyOpError> {
    let path = dir.root().join(DB_FILE);
    let mut db = None;
    for key in ring.candidates(Purpose::Database) {
        match Database::open(&path, key) {
            Ok(opened) => {
                db = Some(opened);
                break;
            }
            Err(StoreError::WrongKey(_)) => continue,
            // The key slots are there, so the database was: it is lost, not yet to be made.
            Err(StoreError::Missing(path)) => return Err(StoreError::Lost(path).into()),
            Err(other) => return Err(other.into()),
        }
    }
    let db = db.ok_or_else(|| KeyOpError::DatabaseDoesNotOpen(path.clone()))?;
    let ring = match dir.format() {
        KeyFormat::Slots => settle(dir, &db, ring)?,
        KeyFormat::Derived => ring,
    };
    let database = ring.require(Purpose::Database)?.clone();
    let audit = ring.require(Purpose::Audit)?.clone();
    let identity = Identity::load(&db, database, audit)?;
    let mut store = Store { db, identity };
    if let Some(seed) = ring.current(Purpose::Signing) {
        store.set_checkpoint_signer(warden_core::signing::CheckpointSigner::from_seed(seed));
    }
    if dir.format() == KeyFormat::Slots {
        upgrade::finish_interrupted(dir, &mut store)?;
    }
    journal::ingest(dir, &mut store)?;
    Ok((store, ring))
}

/// Settles a pending key-slot change against the database (see the module documentation).
fn settle(dir: &DataDir, db: &Database, mut ring: KeyRing) -> Result<KeyRing, KeyOpError> {
    if dir.read_slots()?.pending.is_none() {
        return Ok(ring);
    }
    let lock = dir.lock_slots()?;
    let mut file = dir.read_slots()?;
    let Some(pending) = file.pending.clone() else {
        return Ok(ring);
    };
    let done = committed(db, &pending.txid_bytes())?;
    if !done && (resumable(&pending) || pending.action == upgrade::ACTION) {
        // Finished, not rolled back: a rotation of files by `keys rotate`, a conversion by
        // `upgrade::finish_interrupted` once the store is open.
        return Ok(ring);
    }
    if let Some(purpose) = pending.rotate {
        let (_, next) = file.key_versions(purpose);
        if let Some(next) = next {
            if done {
                ring.promote(purpose, next);
            } else {
                ring.forget(purpose, next);
            }
        }
    }
    if done {
        file.settle_committed();
    } else {
        file.settle_rolled_back();
    }
    if pending.action == upgrade::ACTION {
        file.generation += 1;
        dir.write_slots(&lock, &file)?;
        dir.remove_security(&lock)?;
        return Ok(ring);
    }
    file.generation += 1;
    dir.write_slots(&lock, &file)?;
    Ok(ring)
}

/// The three steps of a two-step change (module documentation): `plan` changes the slot file
/// and says what is pending; `change` makes the database change, which must record the
/// transaction id in the transaction that commits it.
pub(crate) fn two_step<T>(
    store: &mut Store,
    dir: &DataDir,
    plan: impl FnOnce(&mut SlotFile) -> Result<Pending, KeyOpError>,
    change: impl FnOnce(&mut Store, &Pending) -> Result<T, KeyOpError>,
) -> Result<T, KeyOpError> {
    let lock = dir.lock_slots()?;
    let mut file = dir.read_slots()?;
    if let Some(other) = &file.pending {
        return Err(KeySlotError::unsettled(other).into());
    }
    let pending = plan(&mut file)?;
    file.set_pending(pending.clone())?;
    file.generation += 1;
    dir.write_slots(&lock, &file)?;
    let result = change(store, &pending);
    store.identity.clear_slot_commit();
    let done = match &result {
        Ok(_) => true,
        Err(_) => committed(&store.db, &pending.txid_bytes())?,
    };
    if done {
        file.settle_committed();
    } else {
        file.settle_rolled_back();
    }
    file.generation += 1;
    dir.write_slots(&lock, &file)?;
    result
}

/// A change with no database change of its own but its audit event (a new recovery key, a
/// changed passphrase): appends `event` and records the transaction id, in one transaction.
pub(crate) fn commit_event(
    store: &mut Store,
    pending: &Pending,
    event: warden_core::audit::NewEvent,
) -> Result<(), KeyOpError> {
    let txid = pending.txid_bytes();
    store.transact(|tx| -> Result<(), KeyOpError> {
        tx.audit_one(event)?;
        record_commit(tx, &txid, &pending.action)?;
        Ok(())
    })
}

/// Who opened a slot, as audit events name the holder of the master passphrase or the
/// recovery key.
pub fn unlocked_actor(unlocked: &Unlocked) -> Option<&'static str> {
    match unlocked.owner {
        warden_core::keyslots::Owner::Master => Some(crate::identity::MASTER_PASSPHRASE_ACTOR),
        warden_core::keyslots::Owner::Recovery => Some(crate::identity::RECOVERY_KEY_ACTOR),
        _ => None,
    }
}
