//! The data directory: its layout (seed 000's storage layout), its key format, and the files
//! that hold its keys' public parameters.
//!
//! ```text
//! DIR/                 0700
//! ├── keyslots.json    0600  format 2: the key slots (wrapped keys, no plaintext key)
//! ├── keyslots.lock    0600  held (flock) by whoever rewrites keyslots.json
//! ├── security.json    0600  format 1 only: KDF parameters, salts and key checks
//! ├── sessions/        0700  sealed session recordings
//! ├── heartbeats/      0700  heartbeat logs
//! ├── alerts/          0700  tamper alerts
//! └── state/           0700  replay and lockout state, database
//! ```
//!
//! **Format 1** (derived keys): every purpose key is derived from the master passphrase with
//! the parameters in `security.json`. **Format 2** (key slots): purpose keys are random and
//! stored only wrapped in `keyslots.json` ([`crate::keyslots`]). A format-1 directory is
//! converted to format 2 in place, keeping its keys (nothing is re-encrypted); the presence of
//! `keyslots.json` says which format a directory has.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::fsx::{self, FsError};
use crate::keyring::{KeyringError, Purpose, SecurityFile};
use crate::keyslots::{KeyRing, KeySlotError, Owner, SlotFile, SlotSecret, Unlocked};
use crate::secret::Passphrase;

pub const SECURITY_FILE: &str = "security.json";
pub const KEYSLOTS_FILE: &str = "keyslots.json";
pub const KEYSLOTS_LOCK: &str = "keyslots.lock";
pub const SUBDIRS: [&str; 4] = ["sessions", "heartbeats", "alerts", "state"];
const SECURITY_FILE_LIMIT: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{0} is already initialized (it has a security.json or keyslots.json); refusing to overwrite it")]
    AlreadyInitialized(PathBuf),
    #[error("{0} is not an initialized warden data directory (no keyslots.json or security.json); run `warden init --data-dir {0}`")]
    NotInitialized(PathBuf),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}")]
    Security { path: PathBuf, source: KeyringError },
    #[error("{path}")]
    Slots { path: PathBuf, source: KeySlotError },
    #[error("keyslots.json changed while it was being rewritten (generation {found}, expected {expected}); try again")]
    Concurrent { expected: u64, found: u64 },
    #[error("{0} uses derived keys (format 1) and has no key slots yet")]
    NotConverted(PathBuf),
}

/// How a data directory keeps its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// Format 1: derived from the master passphrase (`security.json`).
    Derived,
    /// Format 2: key slots (`keyslots.json`).
    Slots,
}

impl KeyFormat {
    pub fn number(self) -> u32 {
        match self {
            Self::Derived => 1,
            Self::Slots => 2,
        }
    }
}

/// An initialized data directory. A format-1 directory carries its parsed `security.json`;
/// `keyslots.json` is read fresh whenever asked for (it changes under lifecycle commands).
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    security: Option<SecurityFile>,
    format: KeyFormat,
}

/// The exclusive lock on `keyslots.lock`: whoever holds it may rewrite `keyslots.json`.
pub struct SlotLock {
    _lock: Flock<std::fs::File>,
}

impl DataDir {
    fn make_layout(root: &Path) -> Result<(), DataDirError> {
        if root.join(SECURITY_FILE).symlink_metadata().is_ok()
            || root.join(KEYSLOTS_FILE).symlink_metadata().is_ok()
        {
            return Err(DataDirError::AlreadyInitialized(root.to_path_buf()));
        }
        fsx::create_private_dir(root)?;
        for sub in SUBDIRS {
            fsx::create_private_dir(&root.join(sub))?;
        }
        Ok(())
    }

    /// Creates a format-1 layout and writes `security` as `security.json`. Only tests make
    /// format-1 directories now (to test the conversion).
    pub fn create(root: &Path, security: SecurityFile) -> Result<Self, DataDirError> {
        Self::make_layout(root)?;
        let security_path = root.join(SECURITY_FILE);
        // No name until complete: a killed `init` never leaves a partial security.json that
        // would make the directory look initialized. The link refuses an existing file.
        fsx::write_new_private(&security_path, security.to_json().as_bytes())?;
        Ok(Self {
            root: root.to_path_buf(),
            security: Some(security),
            format: KeyFormat::Derived,
        })
    }

    /// Creates the layout of a format-2 directory with its first `keyslots.json`.
    pub fn create_with_slots(root: &Path, slots: &SlotFile) -> Result<Self, DataDirError> {
        Self::make_layout(root)?;
        let dir = Self {
            root: root.to_path_buf(),
            security: None,
            format: KeyFormat::Slots,
        };
        // No name until complete (see `create`).
        fsx::write_new_private(&dir.slots_path(), slots.to_json().as_bytes())?;
        Ok(dir)
    }

    /// Opens an initialized directory: checks its permissions and finds its key format
    /// (parsing `security.json` for format 1).
    pub fn open(root: &Path) -> Result<Self, DataDirError> {
        let has_slots = root.join(KEYSLOTS_FILE).symlink_metadata().is_ok();
        let security_path = root.join(SECURITY_FILE);
        let has_security = security_path.symlink_metadata().is_ok();
        if !has_slots && !has_security {
            return Err(DataDirError::NotInitialized(root.to_path_buf()));
        }
        fsx::check_private_dir(root)?;
        if has_slots {
            let dir = Self {
                root: root.to_path_buf(),
                security: None,
                format: KeyFormat::Slots,
            };
            // A copy of the key slots that a killed writer left goes now, not at the next write.
            fsx::remove_stale_temporaries_of(&dir.slots_path());
            dir.read_slots()?;
            return Ok(dir);
        }
        let bytes = fsx::read_private(&security_path, SECURITY_FILE_LIMIT)?;
        let security = SecurityFile::parse(&bytes).map_err(|source| DataDirError::Security {
            path: security_path,
            source,
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            security: Some(security),
            format: KeyFormat::Derived,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// `security.json` of a format-1 directory (`None` once it has key slots).
    pub fn security(&self) -> Option<&SecurityFile> {
        self.security.as_ref()
    }

    pub fn slots_path(&self) -> PathBuf {
        self.root.join(KEYSLOTS_FILE)
    }

    /// Reads and checks `keyslots.json` as it is now.
    pub fn read_slots(&self) -> Result<SlotFile, DataDirError> {
        let path = self.slots_path();
        if self.format == KeyFormat::Derived && path.symlink_metadata().is_err() {
            return Err(DataDirError::NotConverted(self.root.clone()));
        }
        let bytes = match fsx::read_private(&path, crate::keyslots::FILE_LIMIT) {
            Ok(bytes) => bytes,
            // Over the format's limit: a rule of the format broken, so damage.
            Err(FsError::TooLarge { limit, .. }) => {
                return Err(DataDirError::Slots {
                    path,
                    source: crate::keyslots::KeySlotError::Malformed(format!(
                        "larger than {} MiB",
                        limit >> 20
                    )),
                })
            }
            Err(e) => return Err(e.into()),
        };
        SlotFile::parse(&bytes).map_err(|source| DataDirError::Slots { path, source })
    }

    /// Takes the lock that serializes rewrites of `keyslots.json` (waits for another writer).
    pub fn lock_slots(&self) -> Result<SlotLock, DataDirError> {
        let path = self.root.join(KEYSLOTS_LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(|e| FsError::io(&path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| FsError::io(&path, std::io::Error::from(errno)))?;
        Ok(SlotLock { _lock: lock })
    }

    /// Replaces `keyslots.json` with `slots` (whose generation must be one more than the file's
    /// now): written whole to a nameless file, synced, renamed over, directory synced. A crash
    /// leaves the old file or the new one.
    pub fn write_slots(&self, _lock: &SlotLock, slots: &SlotFile) -> Result<(), DataDirError> {
        let path = self.slots_path();
        if path.symlink_metadata().is_ok() {
            let current = self.read_slots()?;
            if current.generation + 1 != slots.generation {
                return Err(DataDirError::Concurrent {
                    expected: slots.generation.saturating_sub(1),
                    found: current.generation,
                });
            }
        }
        fsx::write_atomic_private(&path, slots.to_json().as_bytes())?;
        Ok(())
    }

    /// Removes `keyslots.json` (a conversion that did not commit).
    pub fn remove_slots(&self, _lock: &SlotLock) -> Result<(), DataDirError> {
        let path = self.slots_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(fsx::sync_parent(&path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FsError::io(&path, e).into()),
        }
    }

    /// Removes `security.json` (a conversion that committed: the master passphrase must no
    /// longer derive anything, or a changed passphrase would still open the old keys).
    /// Whether a `security.json` is still here (a format-2 directory has one only while a
    /// conversion is unfinished).
    pub fn has_security_file(&self) -> bool {
        self.root.join(SECURITY_FILE).symlink_metadata().is_ok()
    }

    /// Whether the `security.json` beside `keyslots.json` is the one `slots` was converted
    /// from: each of its four key checks is the check of that key's current or next version
    /// in `slots` (the checks are the same in both formats). Needs no secret.
    pub fn security_file_matches(&self, slots: &SlotFile) -> Result<bool, DataDirError> {
        let path = self.root.join(SECURITY_FILE);
        let bytes = fsx::read_private(&path, SECURITY_FILE_LIMIT)?;
        let Ok(security) = SecurityFile::parse(&bytes) else {
            return Ok(false);
        };
        Ok(Purpose::ALL.iter().all(|purpose| {
            let (Some(entry), Some(info)) =
                (security.purposes.get(purpose), slots.keys.get(purpose))
            else {
                return false;
            };
            entry.key_check == info.check
                || info
                    .next
                    .as_ref()
                    .is_some_and(|n| n.check == entry.key_check)
        }))
    }

    pub fn remove_security(&self, _lock: &SlotLock) -> Result<(), DataDirError> {
        let path = self.root.join(SECURITY_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(fsx::sync_parent(&path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FsError::io(&path, e).into()),
        }
    }

    /// The keys the master passphrase opens: the master slot's (format 2), or every derived
    /// key (format 1).
    pub fn master_keys(&self, passphrase: &Passphrase) -> Result<KeyRing, DataDirError> {
        match self.format {
            KeyFormat::Derived => {
                let security = self.security.as_ref().expect("format 1 has security.json");
                let mut derived = Vec::new();
                for purpose in Purpose::ALL {
                    let key = security.unlock(passphrase, purpose).map_err(|source| {
                        DataDirError::Security {
                            path: self.root.join(SECURITY_FILE),
                            source,
                        }
                    })?;
                    derived.push((purpose, key));
                }
                Ok(KeyRing::from_derived_only(derived))
            }
            KeyFormat::Slots => Ok(self.unlock_master(passphrase)?.keys),
        }
    }

    /// Opens the master slot with the passphrase.
    pub fn unlock_master(&self, passphrase: &Passphrase) -> Result<Unlocked, DataDirError> {
        self.unlock_owner(&Owner::Master, &SlotSecret::Passphrase(passphrase))
    }

    /// Opens the slot of `owner` with `secret` (trying each of its slots while a change of it
    /// is pending).
    pub fn unlock_owner(
        &self,
        owner: &Owner,
        secret: &SlotSecret<'_>,
    ) -> Result<Unlocked, DataDirError> {
        let slots = self.read_slots()?;
        let path = self.slots_path();
        let mut last = KeySlotError::NoSlot(owner.to_string());
        for slot in slots.slots_of(owner) {
            match slots.unlock(slot, secret) {
                Ok(unlocked) => return Ok(unlocked),
                Err(err) => last = err,
            }
        }
        Err(DataDirError::Slots { path, source: last })
    }

    pub fn sessions(&self) -> PathBuf {
        self.root.join("sessions")
    }

    pub fn heartbeats(&self) -> PathBuf {
        self.root.join("heartbeats")
    }

    pub fn alerts(&self) -> PathBuf {
        self.root.join("alerts")
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
}
