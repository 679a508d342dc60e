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
pub mod db;
pub mod identity;
pub mod migrations;
pub mod ota;
pub mod shim;
pub mod spool;

pub use db::{Database, StoreError, DB_FILE};

/// The current UTC time in RFC 3339 with microseconds.
pub fn now_rfc3339() -> String {
    audit::timestamp_now().as_str().to_string()
}
