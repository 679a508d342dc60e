//! warden-store: the one SQLCipher 4 database in the data directory.
//!
//! [`Database::open`] keys SQLCipher with the raw `database` purpose key (no second KDF), refuses a
//! library built without SQLCipher, tells a wrong key from a plain SQLite file or a foreign
//! database, and brings the schema up to date with forward-only migrations ([`migrations`]).
//! Capabilities own their tables: the SIEM spool ([`spool`]) here; audit chain, users, OTA
//! queue come with their issues. All SQL is parameterized.
#![forbid(unsafe_code)]

pub mod db;
pub mod migrations;
pub mod spool;

pub use db::{Database, StoreError, DB_FILE};
