//! Rotating a purpose key (`warden keys rotate PURPOSE`): a new random key, wrapped for every
//! slot whose holder carries the purpose (from the slots' public keys: nobody's password is
//! needed), the data re-keyed, and one audited commit. Needs `key.rotate`, and the database
//! alone (no daemon may have it open while its keys change: [`Database::lock_exclusive`]).
//!
//! | purpose | re-keyed | commit point |
//! |---|---|---|
//! | `database` | `PRAGMA rekey` (every page, one SQLCipher transaction); TOTP secrets and OTA PSKs, sealed under the key, re-sealed in the same transaction | that transaction, with `keys.rotate` |
//! | `audit` | a new epoch (`k_{e+1} = HMAC(k_e, …)`: verifiable from genesis) whose key is sealed under the new key | that transaction |
//! | `recordings` | every sealed stream in `sessions/` and the files named: version 2 re-wrapped in place (journalled), version 1 or `--reencrypt` re-encrypted to a new file | the transaction recording `keys.rotate` after the last file |
//! | `config` | every file named, re-sealed | likewise |
//! | `signing` | nothing (checkpoints signed from now on use the new key) | its transaction |
//!
//! Crash safety (see `super` for the two steps): the slot file carries both versions from the
//! start, so every reader opens data under either; `database` and `audit` commit atomically
//! and are settled by the next open; `recordings` and `config` resume where they stopped when
//! the command is run again (files already under the new key are skipped; a header torn by a
//! power loss is repaired from the journal).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_core::audit::Outcome;
use warden_core::datadir::DataDir;
use warden_core::fsx::PendingFile;
use warden_core::keyring::Purpose;
use warden_core::keyslots::{KeyRing, KeySlotError, Pending};
use warden_core::rbac::Permission;
use warden_core::sealed_config::ConfigSealer;
use warden_core::secret::Key32;
use warden_core::stream::{self, SealedReader, SealedWriter, StreamError, HEADER_LEN};

use super::{record_commit, KeyOpError};
use crate::db::StoreError;
use crate::identity::Authorized;
use crate::Store;

pub const ACTION: &str = "keys.rotate";
/// The pending change of a rotation asked to re-encrypt: a resumed one keeps doing so, whatever
/// the resuming command says (a rotation against a compromise must not end as a re-wrap).
const ACTION_REENCRYPT: &str = "keys.rotate.reencrypt";
const JOURNAL: &str = "rotation.journal";
/// The files a rotation was asked to re-key (`--file`), kept until it settles: a resumed
/// rotation re-keys them too, whatever the resuming command names.
const NAMED_FILES: &str = "rotation.files";

/// The content of [`NAMED_FILES`]: the rotation's transaction id, its purpose and its files
/// (absolute).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedFiles {
    txid: String,
    purpose: Purpose,
    files: Vec<PathBuf>,
}

/// How a rotation goes.
#[derive(Clone, Default)]
pub struct RotateOptions {
    /// `recordings`: re-encrypt every file under a new data key instead of re-wrapping version-2
    /// headers (against a suspected compromise of the old key).
    pub reencrypt: bool,
    /// Files outside `DATA_DIR/sessions` to re-key: vault files (`recordings`), sealed
    /// configuration (`config`). Files not named here stay under the old key, which is gone
    /// when the rotation finishes.
    pub files: Vec<PathBuf>,
}

/// What a rotation did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rotated {
    pub purpose: String,
    pub from_version: u32,
    pub to_version: u32,
    /// An interrupted rotation was finished.
    pub resumed: bool,
    pub rewrapped: usize,
    pub reencrypted: usize,
    pub resealed: usize,
    /// Files already under the new key (a resumed rotation).
    pub already: usize,
    /// Bytes of sealed files read and written.
    pub bytes: u64,
}

/// Rotates `purpose` (see the module documentation). `ring` is the administrator's and gets
/// the new key (and loses the old) when the rotation commits.
pub fn rotate(
    store: &mut Store,
    dir: &DataDir,
    by: &Authorized,
    ring: &mut KeyRing,
    purpose: Purpose,
    options: &RotateOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Rotated, KeyOpError> {
    by.check(Permission::KeyRotate)?;
    if purpose == Purpose::Phi {
        return Err(KeyOpError::PhiNotRotated);
    }
    store.db.lock_exclusive().map_err(|e| match e {
        StoreError::Busy(_) => KeyOpError::Busy(purpose),
        other => other.into(),
    })?;
    let lock = dir.lock_slots()?;
    let mut file = dir.read_slots()?;
    let (current, _) = file.key_versions(purpose);
    let old = ring.require(purpose)?.clone();
    let mut options = options.clone();
    // Absolute (symbolic links left as they are: they are refused when opened), so that a
    // resumed run started elsewhere finds them.
    options.files = options
        .files
        .iter()
        .map(|f| {
            std::path::absolute(f).map_err(|source| KeyOpError::File {
                path: f.display().to_string(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    let (pending, new, resumed) = match file.pending.clone() {
        Some(p) if p.rotate == Some(purpose) => {
            options.reencrypt |= p.action == ACTION_REENCRYPT;
            add_remembered(&mut options.files, dir, Some(&p), purpose)?;
            // Files this run adds are remembered too, should it be stopped again.
            remember_files(dir, &p, &options.files)?;
            let (_, next) = file.key_versions(purpose);
            let next = next.ok_or(KeySlotError::NoRotation(purpose))?;
            let key = ring
                .version(purpose, next)
                .ok_or(KeySlotError::NoRotation(purpose))?
                .clone();
            (p, key, true)
        }
        Some(other) => return Err(KeySlotError::unsettled(&other).into()),
        None => {
            let key = Key32::random();
            let next = file.begin_rotation(purpose, &key)?;
            let mut pending = Pending::new(if options.reencrypt {
                ACTION_REENCRYPT
            } else {
                ACTION
            });
            pending.rotate = Some(purpose);
            // A run of the same rotation killed before it began (its list written, the slot
            // file not yet) was given files too: they are part of this one.
            add_remembered(&mut options.files, dir, None, purpose)?;
            remember_files(dir, &pending, &options.files)?;
            file.set_pending(pending.clone())?;
            file.generation += 1;
            dir.write_slots(&lock, &file)?;
            ring.add_next(purpose, next, key.clone());
            (pending, key, false)
        }
    };
    let (_, next) = file.key_versions(purpose);
    let next = next.expect("a rotation is under way");
    let mut rotated = Rotated {
        purpose: purpose.name().to_owned(),
        from_version: current,
        to_version: next,
        resumed,
        ..Rotated::default()
    };
    let txid = pending.txid_bytes();
    let outcome = match purpose {
        Purpose::Database => rotate_database(store, by, &old, &new, &txid, &mut rotated),
        Purpose::Audit => rotate_audit(store, by, &new, &txid, &rotated),
        Purpose::Recordings => rotate_recordings(dir, &old, &new, &options, &mut rotated, progress)
            .and_then(|()| commit(store, by, &txid, &rotated)),
        Purpose::Config => rotate_config(&old, &new, &options, &mut rotated)
            .and_then(|()| commit(store, by, &txid, &rotated)),
        Purpose::Signing => commit(store, by, &txid, &rotated),
        Purpose::Phi => Err(KeyOpError::PhiNotRotated),
    };
    let done = match &outcome {
        Ok(()) => true,
        Err(_) => super::committed(&store.db, &txid)?,
    };
    if done {
        file.settle_committed();
        ring.promote(purpose, next);
    } else if matches!(purpose, Purpose::Recordings | Purpose::Config) {
        // Resumed by running the command again; readers hold both versions meanwhile.
        return outcome.map(|()| rotated);
    } else {
        file.settle_rolled_back();
        ring.forget(purpose, next);
    }
    file.generation += 1;
    dir.write_slots(&lock, &file)?;
    let _ = std::fs::remove_file(dir.state().join(NAMED_FILES));
    outcome.map(|()| rotated)
}

/// Writes [`NAMED_FILES`] for the rotation `pending` starts (before the slot file names it).
fn remember_files(dir: &DataDir, pending: &Pending, files: &[PathBuf]) -> Result<(), KeyOpError> {
    let path = dir.state().join(NAMED_FILES);
    if files.is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    let named = NamedFiles {
        txid: pending.txid.clone(),
        purpose: pending
            .rotate
            .expect("a rotation's pending change names its purpose"),
        files: files.to_vec(),
    };
    let json = serde_json::to_vec(&named).map_err(|_| {
        KeyOpError::Refused(
            "a --file path is not valid UTF-8, so it could not be remembered should the \
             rotation stop; rename the file first"
                .into(),
        )
    })?;
    warden_core::fsx::write_atomic_private(&path, &json)?;
    Ok(())
}

/// Adds the remembered files (see [`remembered_files`]) to `files`. One that is gone was moved
/// away, as a refusal tells the operator to do with a file that cannot be re-keyed: it leaves
/// the rotation.
fn add_remembered(
    files: &mut Vec<PathBuf>,
    dir: &DataDir,
    pending: Option<&Pending>,
    purpose: Purpose,
) -> Result<(), KeyOpError> {
    for named in remembered_files(dir, pending, purpose)? {
        if !files.contains(&named) && std::fs::symlink_metadata(&named).is_ok() {
            files.push(named);
        }
    }
    Ok(())
}

/// The files a rotation of `purpose` was asked to re-key: the interrupted one `pending` (its
/// txid), or with `None` one killed before its slot file named it (any txid). A list of
/// another purpose, or of another rotation when `pending` is given, is not this one's; a list
/// that cannot be read is refused rather than guessed at.
fn remembered_files(
    dir: &DataDir,
    pending: Option<&Pending>,
    purpose: Purpose,
) -> Result<Vec<PathBuf>, KeyOpError> {
    let path = dir.state().join(NAMED_FILES);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = warden_core::fsx::read_private(&path, 16 * 1024 * 1024)?;
    let named: NamedFiles = serde_json::from_slice(&bytes).map_err(|e| {
        KeyOpError::Refused(format!(
            "{} (the files the interrupted rotation re-keys) is damaged: {e}",
            path.display()
        ))
    })?;
    let ours = named.purpose == purpose && pending.is_none_or(|p| p.txid == named.txid);
    Ok(if ours { named.files } else { Vec::new() })
}

fn event(by: &Authorized, rotated: &Rotated) -> warden_core::audit::NewEvent {
    by.event(ACTION, format!("key:{}", rotated.purpose), Outcome::Success)
        .with_details(serde_json::to_value(rotated).unwrap_or_default())
}

/// The commit of a rotation whose data was re-keyed before (files) or needs nothing (signing).
fn commit(
    store: &mut Store,
    by: &Authorized,
    txid: &[u8],
    rotated: &Rotated,
) -> Result<(), KeyOpError> {
    let ev = event(by, rotated);
    store.transact(|tx| -> Result<(), KeyOpError> {
        tx.audit_one(ev)?;
        record_commit(tx, txid, ACTION)?;
        Ok(())
    })
}

/// `PRAGMA rekey` inside the transaction that re-seals what is sealed under the database key,
/// appends `keys.rotate` and records the transaction id: SQLCipher re-encrypts every page and
/// commits the open transaction with them, so all of it is one commit.
fn rotate_database(
    store: &mut Store,
    by: &Authorized,
    old: &Key32,
    new: &Key32,
    txid: &[u8],
    rotated: &mut Rotated,
) -> Result<(), KeyOpError> {
    let ev = {
        // The counts go into the event; compute them first (cheap: a few rows).
        let totp: i64 = store.db.conn().query_row(
            "SELECT count(*) FROM users WHERE totp_sealed IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        let psks: i64 = store
            .db
            .conn()
            .query_row("SELECT count(*) FROM ota_cards", [], |r| r.get(0))?;
        rotated.resealed = (totp + psks) as usize;
        event(by, rotated)
    };
    let tx = store.identity.audit_log().begin(&mut store.db)?;
    crate::identity::Identity::reseal_totp_secrets(&tx, old, new)?;
    crate::ota::reseal_psks(&tx, old, new)?;
    tx.audit_one(ev)?;
    record_commit(&tx, txid, ACTION)?;
    tx.commit_with_rekey(new)?;
    store.identity.set_database_key(new.clone());
    Ok(())
}

/// A new epoch whose key is sealed under the new `audit` key, with `keys.rotate` as its first
/// event, in one transaction.
fn rotate_audit(
    store: &mut Store,
    by: &Authorized,
    new: &Key32,
    txid: &[u8],
    rotated: &Rotated,
) -> Result<(), KeyOpError> {
    let ev = event(by, rotated);
    store.identity.audit_log().rotate_purpose_key(new.clone());
    store.transact(|tx| -> Result<(), KeyOpError> {
        tx.audit_one(ev)?;
        record_commit(tx, txid, ACTION)?;
        Ok(())
    })?;
    store.identity.audit_log_mut().set_purpose_key(new.clone());
    Ok(())
}

/// The journal of the header being rewritten in place.
#[derive(Serialize, Deserialize)]
struct Journal {
    file: PathBuf,
    old_header: String,
    new_header: String,
}

fn journal_path(dir: &DataDir) -> PathBuf {
    dir.state().join(JOURNAL)
}

/// A header torn by a power loss while it was rewritten: put the new one in place.
fn repair_from_journal(dir: &DataDir) -> Result<(), KeyOpError> {
    let path = journal_path(dir);
    let Ok(bytes) = warden_core::fsx::read_private(&path, 64 * 1024) else {
        return Ok(());
    };
    if let Ok(journal) = serde_json::from_slice::<Journal>(&bytes) {
        let old = hex::decode(&journal.old_header).unwrap_or_default();
        let new = hex::decode(&journal.new_header).unwrap_or_default();
        if let (Ok(mut file), true) = (
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&journal.file),
            new.len() == HEADER_LEN,
        ) {
            let mut head = [0u8; HEADER_LEN];
            if file.read_exact(&mut head).is_ok() && head[..] != old[..] && head[..] != new[..] {
                file.write_all_at(&new, 0)
                    .and_then(|()| file.sync_data())
                    .map_err(|source| KeyOpError::File {
                        path: journal.file.display().to_string(),
                        source,
                    })?;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Every file to re-key: the session recordings, then the files named.
fn recording_files(dir: &DataDir, named: &[PathBuf]) -> Result<Vec<PathBuf>, KeyOpError> {
    let sessions = dir.sessions();
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&sessions) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let hidden = name.to_string_lossy().starts_with('.');
            if !hidden && entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files.extend(named.iter().cloned());
    Ok(files)
}

fn rotate_recordings(
    dir: &DataDir,
    old: &Key32,
    new: &Key32,
    options: &RotateOptions,
    rotated: &mut Rotated,
    progress: &mut dyn FnMut(u64),
) -> Result<(), KeyOpError> {
    repair_from_journal(dir)?;
    // Vault files are under the key itself, recordings under the key derived from it.
    let families = [
        (old.clone(), new.clone()),
        (
            stream::session_recordings_key(old),
            stream::session_recordings_key(new),
        ),
    ];
    let mut refused = Vec::new();
    for path in recording_files(dir, &options.files)? {
        let io = |source| KeyOpError::File {
            path: path.display().to_string(),
            source,
        };
        let mut head = [0u8; HEADER_LEN];
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let got = file.read(&mut head).map_err(io)?;
        drop(file);
        let Some((version, id)) = stream::peek_header(&head[..got]) else {
            refused.push(format!("{}: not a sealed stream", path.display()));
            continue;
        };
        let family = families.iter().find_map(|(o, n)| {
            if id == stream::key_id(n) {
                Some(None)
            } else if id == stream::key_id(o) {
                Some(Some((o, n)))
            } else {
                None
            }
        });
        let Some(family) = family else {
            refused.push(format!("{}: sealed under another key", path.display()));
            continue;
        };
        let Some((from, to)) = family else {
            rotated.already += 1;
            continue;
        };
        if version == stream::VERSION_2 && !options.reencrypt {
            let header = stream::rewrap_header(&head, Purpose::Recordings, from, to)
                .map_err(|source| stream_error(&path, source))?;
            let journal = Journal {
                file: path.clone(),
                old_header: hex::encode(head),
                new_header: hex::encode(header),
            };
            warden_core::fsx::write_atomic_private(
                &journal_path(dir),
                &serde_json::to_vec(&journal).expect("serializes"),
            )?;
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&path)
                .map_err(io)?;
            file.write_all_at(&header, 0).map_err(io)?;
            file.sync_data().map_err(io)?;
            rotated.rewrapped += 1;
            rotated.bytes += HEADER_LEN as u64;
        } else {
            match reencrypt(&path, from, to) {
                Ok(()) => {
                    rotated.reencrypted += 1;
                    rotated.bytes += size;
                }
                Err(err) => refused.push(format!("{}: {err}", path.display())),
            }
        }
        progress(rotated.bytes);
    }
    let _ = std::fs::remove_file(journal_path(dir));
    if !refused.is_empty() {
        return Err(KeyOpError::Refused(format!(
            "the rotation is not finished: these files cannot be moved to the new key (move them \
             away, or repair them, then run the rotation again):\n  {}",
            refused.join("\n  ")
        )));
    }
    Ok(())
}

fn stream_error(path: &Path, source: StreamError) -> KeyOpError {
    KeyOpError::Refused(format!("{}: {source}", path.display()))
}

/// Re-encrypts one sealed stream under a new data key and `to`, into a nameless file that
/// replaces the old one when complete. A stream cut short stays cut short (its verified
/// segments, without a final one); a damaged stream is refused.
fn reencrypt(path: &Path, from: &Key32, to: &Key32) -> Result<(), StreamError> {
    let input = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    let mut reader = SealedReader::new(std::io::BufReader::new(input), Purpose::Recordings, from)?;
    let segment_size = reader.header().segment_size;
    let mut pending = PendingFile::create(path)
        .map_err(|e| StreamError::Io(std::io::Error::other(warden_core::report::report(&e))))?;
    let mut writer = SealedWriter::new(&mut pending, Purpose::Recordings, to, segment_size)?;
    let mut segment = Vec::with_capacity(segment_size as usize + 16);
    loop {
        match reader.next_segment(&mut segment) {
            Ok(stream::Segment::More) => {
                writer.write_plaintext(&segment)?;
                writer.seal_segment()?;
            }
            Ok(stream::Segment::Final) => {
                writer.write_plaintext(&segment)?;
                writer.finish()?;
                break;
            }
            Err(StreamError::Truncated { .. }) => {
                // Keep it cut short, as it was.
                writer.seal_segment()?;
                let _ = writer.into_inner();
                break;
            }
            Err(other) => return Err(other),
        }
    }
    pending
        .commit()
        .map_err(|e| StreamError::Io(std::io::Error::other(warden_core::report::report(&e))))?;
    Ok(())
}

/// Re-seals every named configuration file under the new key (files already under it are
/// skipped), each through a nameless file that replaces it.
fn rotate_config(
    old: &Key32,
    new: &Key32,
    options: &RotateOptions,
    rotated: &mut Rotated,
) -> Result<(), KeyOpError> {
    let old_sealer = ConfigSealer::new(old);
    let new_sealer = ConfigSealer::new(new);
    for path in &options.files {
        let (bytes, _) = warden_core::sealed_config::read_file(path)?;
        if !ConfigSealer::looks_sealed(&bytes) {
            return Err(KeyOpError::Refused(format!(
                "{} is not a sealed configuration file",
                path.display()
            )));
        }
        if new_sealer
            .open_with_skew(&bytes, std::time::Duration::MAX)
            .is_ok()
        {
            rotated.already += 1;
            continue;
        }
        let plain = old_sealer
            .open_with_skew(&bytes, std::time::Duration::MAX)
            .map_err(|source| {
                KeyOpError::Refused(format!(
                    "{}: {source} (not under the current config key either)",
                    path.display()
                ))
            })?;
        let mut token = new_sealer.seal(plain.expose_secret());
        if bytes.ends_with(b"\n") {
            token.push('\n');
        }
        let mut pending = PendingFile::create(path)?;
        pending
            .write_all(token.as_bytes())
            .map_err(|source| KeyOpError::File {
                path: path.display().to_string(),
                source,
            })?;
        pending.commit()?;
        rotated.resealed += 1;
    }
    Ok(())
}
