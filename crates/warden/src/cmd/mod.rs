//! One module per top-level subcommand.

pub mod audit;
pub mod config;
pub mod demo;
pub mod init;
pub mod ota;
pub mod session;
pub mod shim;
pub mod shim_bench;
pub mod shim_live;
pub mod siem;
pub mod user;
pub mod vault;
