//! One module per top-level subcommand.

pub mod audit;
pub mod config;
pub mod demo;
pub mod init;
pub mod session;
pub mod siem;
pub mod user;
pub mod vault;
