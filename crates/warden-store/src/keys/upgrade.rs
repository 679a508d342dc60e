//! Converting a format-1 data directory (every purpose key derived from the master passphrase,
//! `security.json`) to key slots, in place: the four keys keep their values, so nothing is
//! re-encrypted; a checkpoint signing key and a PHI key are added; the master passphrase gets a slot of its
//! own (same passphrase, same KDF as before). People get their slots at their next sign-in
//! with the master passphrase (`super::ensure_user_slot`) or when an administrator resets their
//! password; a recovery key is made with `warden keys recovery`.
//!
//! Two-step like every change (`super`): `keyslots.json` is written with the conversion
//! pending, the database commits `keys.upgrade` with its transaction id, then `security.json`
//! goes. A crash at any point leaves a directory that opens with its master passphrase (both
//! files hold the same keys until `security.json` goes) and that the next open of the store
//! finishes: it commits the `keys.upgrade` event if it is missing and removes `security.json`.

use serde_json::json;
use warden_core::audit::{NewEvent, Outcome};
use warden_core::datadir::{DataDir, KeyFormat};
use warden_core::keyring::Purpose;
use warden_core::keyslots::{Holder, KeyRing, Owner, Pending, SlotFile, SlotSecret};
use warden_core::secret::Passphrase;

use super::{commit_event, committed, open_store, KeyOpError};
use crate::identity::MASTER_PASSPHRASE_ACTOR;
use crate::Store;

pub(super) const ACTION: &str = "keys.upgrade";

/// Converts `dir` (format 1) with its master passphrase. Returns the directory reopened (format
/// 2) and the master's keys. A directory already converted is returned as it is.
pub fn convert(dir: &DataDir, passphrase: &Passphrase) -> Result<(DataDir, KeyRing), KeyOpError> {
    if dir.format() == KeyFormat::Slots {
        let reopened = DataDir::open(dir.root())?;
        let keys = reopened.master_keys(passphrase)?;
        return Ok((reopened, keys));
    }
    let derived = dir.master_keys(passphrase)?;
    let kdf = dir
        .security()
        .and_then(|s| s.purposes.get(&Purpose::Database))
        .map(|entry| entry.kdf.clone())
        .unwrap_or_else(warden_core::kdf::KdfParams::default_pbkdf2);
    let ring = derived.with_new_random_keys();
    let (mut store, ring) = open_store(dir, ring)?;
    let lock = dir.lock_slots()?;
    if dir.slots_path().symlink_metadata().is_ok() {
        // Another process converted it meanwhile.
        drop(lock);
        let reopened = DataDir::open(dir.root())?;
        let keys = reopened.master_keys(passphrase)?;
        return Ok((reopened, keys));
    }
    let created = crate::now_rfc3339();
    let mut file = SlotFile::new(created.clone(), &ring)?;
    let master = file.make_slot(
        Owner::Master,
        Holder::All,
        &SlotSecret::Passphrase(passphrase),
        Some(&kdf),
        &ring,
        created,
    )?;
    let mut pending = Pending::new(ACTION);
    pending.add.push(master.id.clone());
    file.add_slot(master);
    file.set_pending(pending.clone())?;
    dir.write_slots(&lock, &file)?;
    let signing = warden_core::signing::CheckpointSigner::from_seed(ring.get(Purpose::Signing));
    let event = upgrade_event(json!({
        "master_kdf": kdf.describe(),
        "checkpoint_key_id": hex::encode(warden_core::signing::key_id(&signing.public_key())),
    }));
    commit_event(&mut store, &pending, event)?;
    file.settle_committed();
    file.generation += 1;
    dir.write_slots(&lock, &file)?;
    dir.remove_security(&lock)?;
    drop(lock);
    Ok((DataDir::open(dir.root())?, ring))
}

/// The `keys.upgrade` event, by the master passphrase, with `extra` details.
fn upgrade_event(extra: serde_json::Value) -> NewEvent {
    let mut details = json!({ "from_format": 1, "to_format": 2, "reencrypted": false });
    if let (Some(all), serde_json::Value::Object(extra)) = (details.as_object_mut(), extra) {
        all.extend(extra);
    }
    NewEvent::new(
        crate::audit::timestamp_now(),
        MASTER_PASSPHRASE_ACTOR,
        ACTION,
        "keyslots",
        Outcome::Success,
    )
    .with_details(details)
}

/// A conversion interrupted before it finished: before its commit (the slot file says it is
/// pending, the database has no `keys.upgrade`) it is committed now, with a note that it was
/// finished late; after it (settled, or still pending) the slot file is settled and
/// `security.json`, whose keys the slots now hold, goes.
pub(super) fn finish_interrupted(dir: &DataDir, store: &mut Store) -> Result<(), KeyOpError> {
    let pending_here = |file: &SlotFile| file.pending.as_ref().is_some_and(|p| p.action == ACTION);
    if !pending_here(&dir.read_slots()?) && !dir.has_security_file() {
        return Ok(());
    }
    let lock = dir.lock_slots()?;
    let mut file = dir.read_slots()?;
    if let Some(pending) = file.pending.clone().filter(|p| p.action == ACTION) {
        if !committed(&store.db, &pending.txid_bytes())? {
            let event = upgrade_event(json!({ "finished_after_interruption": true }));
            commit_event(store, &pending, event)?;
        }
        file.settle_committed();
        file.generation += 1;
        dir.write_slots(&lock, &file)?;
    }
    if file.pending.is_none() && dir.has_security_file() {
        // Only the file this directory was converted from goes; any other (a format-1 backup
        // restored beside key slots, say) may hold the only copy of older keys: say so.
        if !dir.security_file_matches(&file)? {
            return Err(KeyOpError::Refused(format!(
                "{}: security.json holds other keys than keyslots.json (a format-1 backup restored beside key slots?); move it out of the data directory, then try again",
                dir.root().display()
            )));
        }
        dir.remove_security(&lock)?;
    }
    Ok(())
}
