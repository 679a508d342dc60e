//! warden-core: the security logic every warden capability stands on, free of network and
//! database I/O.
//!
//! Data flows one way: a [`secret::Passphrase`] and `security.json` ([`keyring`]) give purpose
//! keys ([`secret::Key32`]); the `recordings` key seals large files and session recordings as
//! segmented streams ([`stream`]); the `config` key seals configuration files ([`sealed_config`]).
//! The `audit` key starts the forward-secure audit chain ([`audit`]): every event MAC'd into one
//! chain whose key evolves one way, verified row by row with the first damage named.
//! [`datadir`] and [`fsx`] own the on-disk layout and the defensive file handling around them.
//! Errors say at each level only what that level adds; [`report`] prints one with its causes.
//!
//! Identity and access, all pure (the caller passes the clock and stores the results):
//! [`totp`] checks one-time codes with replay protection and builds enrollment URIs,
//! [`password`] hashes and checks passwords against the policy, [`lockout`] counts failures
//! and spaces attempts out, and [`rbac`] decides what each role may do.
#![forbid(unsafe_code)]

pub mod aead;
pub mod audit;
pub mod auditor_key;
pub mod datadir;
pub mod fsx;
pub mod fuzzing;
pub mod kdf;
pub mod keyring;
pub mod keyslots;
pub mod lockout;
pub mod mac;
pub mod password;
pub mod rand;
pub mod rbac;
pub mod report;
pub mod sealed_config;
pub mod secret;
pub mod signing;
pub mod stream;
pub mod totp;
