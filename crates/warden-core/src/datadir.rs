//! The data directory: its layout (seed 000's storage layout) and `security.json`.
//!
//! ```text
//! DIR/                 0700
//! ├── security.json    0600  KDF parameters, salts and key checks (no keys)
//! ├── sessions/        0700  sealed session recordings
//! ├── heartbeats/      0700  heartbeat logs
//! ├── alerts/          0700  tamper alerts
//! └── state/           0700  replay and lockout state, database
//! ```

use std::path::{Path, PathBuf};

use crate::fsx::{self, FsError};
use crate::keyring::{KeyringError, SecurityFile};

pub const SECURITY_FILE: &str = "security.json";
pub const SUBDIRS: [&str; 4] = ["sessions", "heartbeats", "alerts", "state"];
const SECURITY_FILE_LIMIT: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{0} is already initialized (it has a security.json); refusing to overwrite it")]
    AlreadyInitialized(PathBuf),
    #[error("{0} is not an initialized warden data directory (no security.json); run `warden init --data-dir {0}`")]
    NotInitialized(PathBuf),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}")]
    Security { path: PathBuf, source: KeyringError },
}

/// An initialized data directory whose `security.json` has been read and checked.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    security: SecurityFile,
}

impl DataDir {
    /// Creates the layout and writes `security` as `security.json`. Refuses an initialized dir.
    pub fn create(root: &Path, security: SecurityFile) -> Result<Self, DataDirError> {
        let security_path = root.join(SECURITY_FILE);
        if security_path.symlink_metadata().is_ok() {
            return Err(DataDirError::AlreadyInitialized(root.to_path_buf()));
        }
        fsx::create_private_dir(root)?;
        for sub in SUBDIRS {
            fsx::create_private_dir(&root.join(sub))?;
        }
        // No name until complete: a killed `init` never leaves a partial security.json that
        // would make the directory look initialized. The link refuses an existing file.
        fsx::write_new_private(&security_path, security.to_json().as_bytes())?;
        Ok(Self {
            root: root.to_path_buf(),
            security,
        })
    }

    /// Opens an initialized directory: checks its permissions and parses `security.json`.
    pub fn open(root: &Path) -> Result<Self, DataDirError> {
        let security_path = root.join(SECURITY_FILE);
        if security_path.symlink_metadata().is_err() {
            return Err(DataDirError::NotInitialized(root.to_path_buf()));
        }
        fsx::check_private_dir(root)?;
        let bytes = fsx::read_private(&security_path, SECURITY_FILE_LIMIT)?;
        let security = SecurityFile::parse(&bytes).map_err(|source| DataDirError::Security {
            path: security_path,
            source,
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            security,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn security(&self) -> &SecurityFile {
        &self.security
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
