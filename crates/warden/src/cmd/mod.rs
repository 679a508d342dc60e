//! One module per top-level subcommand.

pub mod config;
pub mod demo;
pub mod init;
pub mod ota;
pub mod vault;
