//! warden-store: the one SQLCipher 4 database in the data directory.
//!
//! [`Database::open`] keys SQLCipher with the raw `database` purpose key (no second KDF), refuses a
//! library built without SQLCipher, tells a wrong key from a plain SQLite file or a foreign
//! database, and brings the schema up to date with forward-only migrations ([`migrations`]).
//! Capabilities own their tables: the audit chain ([`audit`]), the SIEM outbox ([`spool`]),
//! users, passwords, TOTP credentials and lockouts ([`identity`]), the OTA server's cards,
//! script queue, results and sessions ([`ota`]). All SQL is parameterized.
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod db;
pub mod identity;
pub mod keys;
pub mod migrations;
pub mod ota;
pub mod provision;
pub mod shim;
pub mod spool;
pub mod vault;

pub use db::{Database, StoreError, DB_FILE};

use warden_core::audit::NewEvent;
use warden_core::datadir::DataDir;
use warden_core::secret::Key32;

use audit::{AuditLog, AuditedTx};
use identity::{Identity, IdentityError};

/// An opened data directory's database with its identity service and audit chain: what every
/// capability's operations take, together with the [`identity::Authorized`] value for their
/// permission.
pub struct Store {
    pub db: Database,
    pub identity: Identity,
}

impl Store {
    /// Opens the data directory's database with the `database` key; `audit_key` is the `audit`
    /// purpose key of the chain.
    pub fn open(
        dir: &DataDir,
        database_key: Key32,
        audit_key: Key32,
    ) -> Result<Self, IdentityError> {
        let db = Database::open(&dir.root().join(DB_FILE), &database_key)?;
        let identity = Identity::load(&db, database_key, audit_key)?;
        Ok(Self { db, identity })
    }

    pub fn audit(&self) -> &AuditLog {
        self.identity.audit_log()
    }

    /// Signs audit checkpoints with `signer` (the `signing` key of the slot that opened this
    /// store).
    pub fn set_checkpoint_signer(&mut self, signer: warden_core::signing::CheckpointSigner) {
        self.identity.audit_log_mut().set_signer(Some(signer));
    }

    /// Queues the audit records for the SIEM within these limits (a daemon's `siem.spool`
    /// section; commands use the defaults).
    pub fn set_siem_limits(&mut self, limits: spool::SpoolLimits) {
        self.identity
            .audit_log_mut()
            .set_siem_spool(spool::Spool::new(limits));
    }

    /// Runs `change` and commits it together with the audit events it appended (see
    /// [`AuditLog::transact`]): the one way a privileged act is committed.
    pub fn transact<T, E>(
        &mut self,
        change: impl FnOnce(&AuditedTx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.identity.audit_log().transact(&mut self.db, change)
    }

    /// Appends events that go with no change (a read, a refusal, a failed attempt).
    pub fn append(&mut self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        self.identity
            .audit_log()
            .append(&mut self.db, events)
            .map(drop)
    }
}

/// The current UTC time in RFC 3339 with microseconds.
pub fn now_rfc3339() -> String {
    audit::timestamp_now().as_str().to_string()
}
