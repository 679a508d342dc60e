//! Opening the database: key, cipher check, identity, pragmas, migrations.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a transaction is on disk when `COMMIT`
//! returns (an audit event that was reported written survives power loss); `secure_delete = ON`
//! overwrites deleted content (old audit keys) instead of leaving it in free pages.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use warden_core::secret::Key32;
use zeroize::Zeroizing;

use crate::migrations;

/// The database file, relative to the data directory.
pub const DB_FILE: &str = "state/warden.db";
/// `PRAGMA application_id` of a warden database: ASCII "WDRN".
pub const APPLICATION_ID: i32 = 0x5744_524E;
const PLAIN_SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Why the database could not be opened or used, sorted by cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the SQLite library in this build has no SQLCipher; refusing to store data unencrypted"
    )]
    NoCipher,
    #[error("{0}: the database key does not match (a database from another data directory, or a damaged file)")]
    WrongKey(PathBuf),
    #[error("{0} is a plain, unencrypted SQLite database, not a warden database")]
    Unencrypted(PathBuf),
    #[error("{path} is not a warden database (application id {found:#x})")]
    NotWarden { path: PathBuf, found: i32 },
    #[error("{path}: schema version {found} is newer than this warden understands (up to {known}); upgrade warden")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("migration to schema version {version} ({name}) failed")]
    Migration {
        version: i64,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("cannot create {path}")]
    Create {
        path: PathBuf,
        source: warden_core::fsx::FsError,
    },
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A key rotation holds the database alone (or, asking for it, found it in use).
    #[error("{0}")]
    Busy(String),
    #[error(
        "no database at {0} (is this an initialized data directory? `warden init` creates one)"
    )]
    Missing(PathBuf),
    #[error("{0} exists already; refusing to create a database over it")]
    Exists(PathBuf),
    /// An empty file where the database should be (never taken for a new database), or no
    /// file at all in a data directory that has its key slots.
    #[error("{0} is empty or missing: the database is damaged or lost; restore it from a backup")]
    Lost(PathBuf),
    /// The audit chain's rows do not match its stored head: nothing more is appended to it.
    #[error("the audit chain is damaged: {0}")]
    ChainDamaged(String),
    #[error("internal error: a change was about to be committed without an audit event; nothing was changed")]
    Unaudited,
    #[error("audit event rejected: {0}")]
    AuditEvent(warden_core::audit::AuditError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
}

impl StoreError {
    pub fn from_audit(err: warden_core::audit::AuditError) -> Self {
        Self::AuditEvent(err)
    }
}

/// Returns once SQLCipher can key connections in this process.
///
/// SQLite marks itself initialized before it runs SQLCipher's own initialization
/// (`SQLITE_EXTRA_INIT`), so a thread that opens its first connection while another thread is
/// still in that window gets a failed `PRAGMA key`. A keyed in-memory probe succeeds only after
/// SQLCipher is ready; every open waits for it, once per process.
fn wait_until_sqlcipher_is_ready() {
    static READY: Once = Once::new();
    READY.call_once(|| {
        for _ in 0..200 {
            let keyed = Connection::open_in_memory()
                .and_then(|probe| probe.execute_batch("PRAGMA key = 'readiness-probe';"));
            if keyed.is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Still failing: the real open reports the cause.
    });
}

/// An open, keyed, migrated warden database.
///
/// Every open database holds a shared `flock` on `warden.db-lock` next to it; a key rotation
/// turns its own into an exclusive one ([`Database::lock_exclusive`]), so it runs only when no
/// other process (a daemon, another command) has the database open, and nobody opens it while
/// its key changes.
pub struct Database {
    conn: Connection,
    path: PathBuf,
    lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl Database {
    /// Opens the existing database at `path` with the raw `database` key and migrates it. A
    /// missing file ([`StoreError::Missing`]) or an empty one ([`StoreError::Lost`], which
    /// SQLite would take for a new database) is an error, never silently a new database.
    pub fn open(path: &Path, key: &Key32) -> Result<Self, StoreError> {
        match path.symlink_metadata() {
            Err(_) => return Err(StoreError::Missing(path.to_path_buf())),
            Ok(meta) if meta.is_file() && meta.len() == 0 => {
                return Err(StoreError::Lost(path.to_path_buf()))
            }
            Ok(_) => {}
        }
        Self::open_migrated(path, key)
    }

    fn open_migrated(path: &Path, key: &Key32) -> Result<Self, StoreError> {
        let db = Self::open_unmigrated(path, key)?;
        migrations::migrate(&db.conn, path)?;
        Ok(db)
    }

    // Implements: V87
    /// Creates a new database (0600) at `path`; fails if anything is there.
    pub fn create(path: &Path, key: &Key32) -> Result<Self, StoreError> {
        if path.symlink_metadata().is_ok() {
            return Err(StoreError::Exists(path.to_path_buf()));
        }
        Self::create_file(path)?;
        Self::open_migrated(path, key)
    }

    /// Creates the file ourselves so it is 0600 from the start (SQLite would use 0644); SQLite
    /// gives the -wal and -shm files the same mode as the database.
    fn create_file(path: &Path) -> Result<(), StoreError> {
        warden_core::fsx::create_private_new(path)
            .map(drop)
            .map_err(|source| StoreError::Create {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Opens without migrating (creating the file when missing), for tests that build
    /// databases at older schema versions.
    #[doc(hidden)]
    pub fn open_unmigrated(path: &Path, key: &Key32) -> Result<Self, StoreError> {
        if path.symlink_metadata().is_err() {
            Self::create_file(path)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        wait_until_sqlcipher_is_ready();
        let lock = Self::shared_lock(path)?;
        let conn = Connection::open_with_flags(path, flags)?;
        let mut db = Self::key_and_check(conn, path, key)?;
        db.lock = lock;
        Ok(db)
    }

    /// The shared lock every open database holds (see [`Database`]).
    fn shared_lock(path: &Path) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut name = path.as_os_str().to_owned();
        name.push("-lock");
        let lock_path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&lock_path)
            .map_err(|source| StoreError::Create {
                path: lock_path.clone(),
                source: warden_core::fsx::FsError::io(&lock_path, source),
            })?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(StoreError::Busy(format!(
                "{}: a key rotation holds the database; try again when it is done",
                path.display()
            ))),
            Err((_, errno)) => Err(StoreError::Create {
                path: lock_path.clone(),
                source: warden_core::fsx::FsError::io(&lock_path, std::io::Error::from(errno)),
            }),
        }
    }

    /// Turns this connection's shared lock into an exclusive one, or says the database is in
    /// use by another process (a key rotation needs it alone).
    pub fn lock_exclusive(&mut self) -> Result<(), StoreError> {
        if let Some(lock) = &self.lock {
            lock.relock(nix::fcntl::FlockArg::LockExclusiveNonblock)
                .map_err(|_| {
                    StoreError::Busy(format!(
                        "{} is in use by another warden process (a daemon?); stop it first",
                        self.path.display()
                    ))
                })?;
        }
        Ok(())
    }

    // Implements: V1, V2, V3, V4, V67
    fn key_and_check(conn: Connection, path: &Path, key: &Key32) -> Result<Self, StoreError> {
        // SQLCipher writes its own diagnostics ("ERROR CORE … hmac check failed") to stderr;
        // warden reports a page that fails its authentication itself, as damage.
        conn.query_row("PRAGMA cipher_log_level = NONE", [], |_| Ok(()))
            .optional()?;
        // A raw key: SQLCipher uses these 32 bytes directly, with no second KDF. The SQL text is
        // zeroized on our side; SQLite's own copy of the statement is freed after preparation.
        let pragma = Zeroizing::new(format!(
            "PRAGMA key = \"x'{}'\";",
            hex::encode(key.expose_secret())
        ));
        conn.execute_batch(&pragma)?;
        conn.execute_batch("PRAGMA cipher_compatibility = 4;")?;
        // A build without SQLCipher ignores PRAGMA key silently; cipher_version tells.
        let cipher: Option<String> = conn
            .query_row("PRAGMA cipher_version", [], |row| row.get(0))
            .optional()?;
        if cipher.is_none() {
            return Err(StoreError::NoCipher);
        }
        if let Err(err) = conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
            row.get::<_, i64>(0)
        }) {
            return Err(match err.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) if is_plain_sqlite(path) => {
                    StoreError::Unencrypted(path.to_path_buf())
                }
                Some(rusqlite::ErrorCode::NotADatabase) => StoreError::WrongKey(path.to_path_buf()),
                _ => StoreError::Sqlite(err),
            });
        }
        conn.execute_batch(&format!(
            "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};
             PRAGMA foreign_keys = ON;
             PRAGMA secure_delete = ON;"
        ))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "could not switch to WAL mode (got {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")?;

        let app_id: i32 = conn.query_row("PRAGMA application_id", [], |row| row.get(0))?;
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
        if app_id == 0 && tables == 0 {
            conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))?;
        } else if app_id != APPLICATION_ID {
            return Err(StoreError::NotWarden {
                path: path.to_path_buf(),
                found: app_id,
            });
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            lock: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQLCipher's word on every page of the file (and the WAL): `cipher_integrity_check`
    /// authenticates each one, read or not by anything else. Empty when all are intact; else
    /// one line per damaged page, as SQLCipher words it.
    pub fn damaged_pages(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA cipher_integrity_check")?;
        let lines = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(lines)
    }

    /// The underlying connection, for the crate's table modules.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The current schema version.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))?)
    }

    /// SQLCipher's version string, e.g. "4.6.1 community".
    pub fn cipher_version(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA cipher_version", [], |row| row.get(0))?)
    }
}

fn is_plain_sqlite(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|()| &head == PLAIN_SQLITE_MAGIC)
        .unwrap_or(false)
}
