//! Refusals that happen before any key is open (a wrong password opens no slot; a command run
//! without `--as`), kept in `state/unrecorded.jsonl` until a process that can open the store
//! appends them to the audit chain.
//!
//! The file is plain JSON Lines (it holds no secret: a user name tried and a reason), 0600,
//! appended under an exclusive `flock`, at most 1 MiB. Anyone who can write it can add or
//! remove refusals: they enter the trail as what they are — anonymous claims, recorded late,
//! actor `anonymous` — and each is counted once (their ids are remembered in the database).

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use warden_core::datadir::DataDir;

use super::KeyOpError;
use crate::db::StoreError;
use crate::identity::UnixMs;
use crate::Store;

pub const FILE: &str = "unrecorded.jsonl";
const LIMIT: u64 = 1024 * 1024;

/// One refusal to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unrecorded {
    /// 16 hex digits, random.
    pub id: String,
    /// When it happened (Unix milliseconds).
    pub at_ms: u64,
    /// `login.cli`, or `ACTION.denied`.
    pub action: String,
    /// `user:NAME` or `permission:NAME`.
    pub subject: String,
    /// `failure` or `denied`.
    pub outcome: String,
    /// A few strings (`reason`, `permission`).
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// A failed sign-in counts toward the lockout of this principal (`user:NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<String>,
}

impl Unrecorded {
    /// A failed sign-in at the command line of `user_key` (`user:NAME`).
    pub fn failed_sign_in(user_key: &str, reason: &str) -> Self {
        let mut details = serde_json::Map::new();
        details.insert("reason".into(), reason.into());
        Self {
            id: hex::encode(warden_core::rand::array::<8>()),
            at_ms: UnixMs::now().0,
            action: "login.cli".into(),
            subject: user_key.to_owned(),
            outcome: "failure".into(),
            details,
            count: Some(user_key.to_owned()),
        }
    }

    /// A privileged command run without a sign-in.
    pub fn not_signed_in(action: &str, permission: &str) -> Self {
        let mut details = serde_json::Map::new();
        details.insert("reason".into(), "not_signed_in".into());
        details.insert("permission".into(), permission.into());
        Self {
            id: hex::encode(warden_core::rand::array::<8>()),
            at_ms: UnixMs::now().0,
            action: format!("{action}.denied"),
            subject: format!("permission:{permission}"),
            outcome: "denied".into(),
            details,
            count: None,
        }
    }

    /// Only what a refusal can be: known outcomes, plain names, short string details.
    pub(crate) fn is_plausible(&self) -> bool {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:@".contains(&b))
        };
        let login = self.action == "login.cli" && self.outcome == "failure";
        let denied = self.action.ends_with(".denied") && self.outcome == "denied";
        (login || denied)
            && name_ok(&self.action)
            && name_ok(&self.subject)
            && self.id.len() == 16
            && self.details.len() <= 4
            && self
                .details
                .iter()
                .all(|(k, v)| name_ok(k) && v.as_str().is_some_and(name_ok))
            && self
                .count
                .as_deref()
                .is_none_or(|c| login && c == self.subject && c.starts_with("user:"))
    }
}

fn path(dir: &DataDir) -> PathBuf {
    dir.state().join(FILE)
}

fn open_locked(dir: &DataDir) -> Result<Flock<std::fs::File>, KeyOpError> {
    let path = path(dir);
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .map_err(|e| warden_core::fsx::FsError::io(&path, e))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| KeyOpError::File {
        path: path.display().to_string(),
        source: std::io::Error::from(errno),
    })
}

/// Appends `entry` (synced). Past 1 MiB nothing more is kept, with a warning: the next open of
/// the store empties the file.
pub fn record(dir: &DataDir, entry: &Unrecorded) -> Result<(), KeyOpError> {
    let mut file = open_locked(dir)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len >= LIMIT {
        tracing::warn!("{FILE} is full; this refusal is not kept");
        return Ok(());
    }
    let mut line = serde_json::to_string(entry).expect("serializes");
    line.push('\n');
    let io = |source| KeyOpError::File {
        path: path(dir).display().to_string(),
        source,
    };
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(())
}

/// Appends every refusal in the file to the audit chain (one transaction, each once), then
/// empties the file. A damaged chain takes nothing: the file waits.
pub fn ingest(dir: &DataDir, store: &mut Store) -> Result<usize, KeyOpError> {
    let path = path(dir);
    if path.symlink_metadata().is_err() {
        return Ok(0);
    }
    let mut file = open_locked(dir)?;
    let io = |source| KeyOpError::File {
        path: path.display().to_string(),
        source,
    };
    let mut text = String::new();
    file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    (&mut *file)
        .take(LIMIT + 4096)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.is_empty() {
        return Ok(0);
    }
    let entries: Vec<Unrecorded> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Unrecorded>(line).ok())
        .filter(Unrecorded::is_plausible)
        .collect();
    match store
        .identity
        .record_unrecorded(&mut store.db, &entries, UnixMs::now())
    {
        Ok(()) => {}
        Err(StoreError::ChainDamaged(why)) => {
            tracing::warn!("refusals recorded without keys are kept in {FILE}: the audit chain is damaged ({why})");
            return Ok(0);
        }
        Err(other) => return Err(other.into()),
    }
    file.set_len(0).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(entries.len())
}
