//! One module per top-level subcommand. A command module parses nothing (clap did), signs the
//! person in through [`crate::context::Context`], calls one library operation and renders its
//! result; no command module uses another's.

pub mod audit;
pub mod config;
pub mod demo;
pub mod init;
pub mod keys;
pub mod ota;
pub mod records;
pub mod session;
pub mod shim;
pub mod siem;
pub mod user;
pub mod vault;
