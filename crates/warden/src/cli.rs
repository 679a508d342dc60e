//! Command-line arguments: parsed once, at the edge, into typed values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// warden — control and prove who touched a device.
///
/// MFA gate for serial service ports, encrypted vault and audit trail, SCP81 OTA admin server.
#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The data directory (keys' parameters, database, recordings).
    #[arg(
        long,
        global = true,
        env = "WARDEN_DATA_DIR",
        default_value = "/var/lib/warden"
    )]
    pub data_dir: PathBuf,

    /// Read the master passphrase from this file (mode 0600 or stricter, owned by you; one line).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "passphrase_fd"
    )]
    pub passphrase_file: Option<PathBuf>,

    /// Read the master passphrase from this open file descriptor (e.g. a pipe from a secrets agent).
    #[arg(long, global = true, value_name = "FD")]
    pub passphrase_fd: Option<u32>,

    /// Log format for operator logs on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More detail in operator logs (repeat for debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: layout, security.json (KDF parameters and key checks).
    Init(InitArgs),
    /// Seal, open and verify large files and recordings (segmented AES-256-GCM).
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Seal and open configuration files (Fernet under the config key).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// SCP81 OTA: PSK-TLS admin server, script queue, keys, UICC simulator, load generator.
    #[command(subcommand)]
    Ota(crate::cmd::ota::OtaCommand),
    /// Show what warden does, end to end, in a throwaway directory.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Key derivation function for the purpose keys.
    #[arg(long, value_enum, default_value_t = KdfChoice::Pbkdf2)]
    pub kdf: KdfChoice,
    /// PBKDF2 iterations (default 600,000; lower values are for tests only and warned about).
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
    /// Argon2id memory in KiB (default 65536).
    #[arg(long, value_name = "KIB")]
    pub argon2_memory_kib: Option<u32>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KdfChoice {
    /// PBKDF2-HMAC-SHA256 (FIPS-approved; default).
    Pbkdf2,
    /// Argon2id (memory-hard).
    Argon2id,
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Encrypt IN into a sealed stream OUT (`-` for standard input / output).
    Seal {
        input: PathBuf,
        output: PathBuf,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Verify and decrypt the sealed stream IN into OUT (`-` for standard input / output).
    Open {
        input: PathBuf,
        output: PathBuf,
        /// For a truncated file (e.g. after power loss): write the verified prefix and report
        /// what was lost, instead of refusing.
        #[arg(long)]
        recover: bool,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check every segment of a sealed stream without writing the plaintext anywhere.
    Verify { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Seal FILE into a Fernet token (written to FILE.sealed, or -o).
    Seal {
        file: PathBuf,
        /// Where to write the token (`-` for standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// Open a sealed configuration file and print it (or write it with -o).
    Open {
        file: PathBuf,
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's data directory here instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}
