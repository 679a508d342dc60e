//! Command-line arguments: parsed once, at the edge, into typed values.

use std::path::PathBuf;
use std::time::Duration;

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

    /// Use the recovery key in this file (0600) where the master passphrase would be asked for
    /// (break-glass, `keys passphrase`).
    #[arg(long, global = true, value_name = "FILE")]
    pub recovery_key_file: Option<PathBuf>,

    /// A daemon's service key (`keys service add`), for `shim run` / `ota serve`; otherwise
    /// the systemd credential `warden-shim-key` / `warden-ota-key` is used, else the master
    /// passphrase.
    #[arg(long, global = true, value_name = "FILE")]
    pub service_key_file: Option<PathBuf>,

    /// Read the auditor's passphrase (for the sealed initial audit key) from this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub auditor_passphrase_file: Option<PathBuf>,

    /// Log format for operator logs on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How far ahead of this machine's clock a sealed configuration's timestamp may be, in
    /// seconds, before it is refused as coming from the future (a clock that was set back).
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        env = "WARDEN_CONFIG_CLOCK_SKEW",
        default_value_t = 60
    )]
    pub config_clock_skew: u64,

    /// More detail in operator logs (repeat for debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Who runs a privileged command (signed in with a password, and a one-time code when
    /// enrolled); never taken from the environment's notion of the user.
    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: layout, keyslots.json, the encrypted database, the audit chain
    /// (its initial key exported for the auditor) and the first administrator.
    Init(InitArgs),
    /// Seal, open and verify large files and recordings (segmented AES-256-GCM).
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Seal and open configuration files (Fernet under the config key).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Verify, export and follow the forward-secure audit chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check the SIEM link (RFC 5425 over mutual TLS, CEF).
    #[command(subcommand)]
    Siem(SiemCommand),
    /// SCP81 OTA: PSK-TLS admin server, script queue, keys, UICC simulator, load generator.
    #[command(subcommand)]
    Ota(crate::cmd::ota::OtaCommand),
    /// The serial MFA shim: run the daemon, show its state, reset it.
    #[command(subcommand)]
    Shim(crate::cmd::shim::ShimCommand),
    /// Clinical records: collections from a schema, versioned, PHI sealed, signed, verified.
    #[command(subcommand)]
    Records(crate::cmd::records::RecordsCommand),
    /// Show what warden does, end to end, in a throwaway directory.
    Demo(DemoArgs),
    /// Users, roles, passwords, TOTP enrollment and lockouts (see docs/access-control.md).
    User(UserArgs),
    /// Session recordings made by the shim (DATA_DIR/sessions): list, replay, export.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Key slots: list them, change the master passphrase, make a recovery key, give daemons
    /// keys of their own, rotate purpose keys (see docs/formats/keyslots.md).
    #[command(subcommand)]
    Keys(crate::cmd::keys::KeysCommand),
    /// Break-glass: with the master passphrase alone, give an administrator who can no longer
    /// sign in a new password (re-enabled, unlocked). Recorded as `breakglass.recover` by
    /// `master-passphrase`, with the reason. The only privileged act besides `init` that the
    /// master passphrase performs without a sign-in.
    BreakGlass(BreakGlassArgs),
}

#[derive(Debug, Args)]
pub struct BreakGlassArgs {
    /// The administrator to recover.
    #[arg(long, value_name = "NAME")]
    pub admin: String,
    /// Why (kept in the audit event), e.g. "all administrators locked out, ticket 4711".
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Read the new password from this file (0600). Otherwise $WARDEN_NEW_PASSWORD (tests
    /// only), or a prompt.
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chain and name the first damaged record and the kind of damage.
    ///
    /// With --auditor-key the whole history is verified from genesis; without it, only the
    /// current epoch (the box no longer holds earlier keys). Either way the rows are checked
    /// against the stored head and checkpoints, so a cut-off tail is named. Needs
    /// `audit.verify` (administrator, auditor).
    Verify {
        #[command(flatten)]
        verify: VerifyArgs,
    },
    /// Write a human-readable copy (21 CFR Part 11 §11.10(b)) with the verification result.
    /// Needs an auditor's sign-in (`--as USER`); the export itself is audited.
    Export {
        #[command(flatten)]
        verify: VerifyArgs,
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Output file (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Show the latest events; -f keeps following new ones. Needs `audit.tail`.
    Tail {
        /// How many events to show.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        #[arg(short, long)]
        follow: bool,
        /// One JSON object per event.
        #[arg(long)]
        json: bool,
    },
    /// Print the latest checkpoint (`SEQ:MAC`) to keep off the box. Needs `audit.checkpoint`.
    Checkpoint {
        /// The latest signed checkpoint as JSON (seq, MAC, digest, key id, Ed25519 signature).
        #[arg(long)]
        json: bool,
    },
    /// Print the Ed25519 public key that signs audit checkpoints (hex) — for auditors and the
    /// SIEM, who check checkpoints with it and nothing secret. Reads only keyslots.json.
    PublicKey,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The auditor's sealed initial key (from `warden init`): verify from genesis.
    #[arg(long, value_name = "FILE")]
    pub auditor_key: Option<PathBuf>,
    /// A trusted checkpoint `SEQ:MAC` (e.g. from the SIEM): detects a cut-off tail.
    #[arg(long, value_name = "SEQ:MAC")]
    pub checkpoint: Option<String>,
    /// Also check every signed checkpoint against the rows with this Ed25519 public key (a
    /// file with its 64 hex digits, from `warden audit public-key`); repeat for keys of
    /// earlier rotations. Needs no secret.
    #[arg(long, value_name = "FILE")]
    pub public_key: Vec<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

impl From<ExportFormat> for warden_store::audit::ExportFormat {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Csv => Self::Csv,
            ExportFormat::Jsonl => Self::Jsonl,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SiemCommand {
    /// Connect to the SIEM named in the `siem:` section of a configuration file, send one test
    /// event (CEF signature `siem-test`), and report success or the exact failure.
    /// Needs `siem.test` (administrator).
    Test {
        /// A YAML configuration with a `siem:` section, sealed with `warden config seal`.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Accept a configuration that is not sealed (logged as a warning).
        #[arg(long)]
        allow_plain_config: bool,
        /// How long the connection is watched after the write (the server closing it in that
        /// time means the message was refused); default: siem.delivery.confirm_after_ms.
        #[arg(long, value_name = "MS")]
        watch_ms: Option<u64>,
    },
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
    /// Where to write the auditor's sealed initial audit key (default DIR/auditor-key.json;
    /// move it off the box).
    #[arg(long, value_name = "FILE")]
    pub auditor_key_out: Option<PathBuf>,
    /// Evolve the audit key after this many events (0: never by count).
    #[arg(long, default_value_t = 10_000)]
    pub audit_epoch_events: u64,
    /// Evolve the audit key after this many seconds (0: never by time).
    #[arg(long, default_value_t = 86_400)]
    pub audit_epoch_seconds: u64,
    /// Record an audit checkpoint every this many events.
    #[arg(long, default_value_t = 100)]
    pub audit_checkpoint_every: u64,
    /// Write the recovery key to this new file (0600) instead of showing it.
    #[arg(long, value_name = "FILE")]
    pub recovery_key_out: Option<PathBuf>,
    #[command(flatten)]
    pub identity: IdentityInitArgs,
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
    /// Encrypt IN into a sealed stream OUT (`-` for standard input / output). Needs
    /// `vault.seal` (operator, administrator); audited with OUT's SHA-256.
    Seal {
        input: PathBuf,
        output: PathBuf,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Verify and decrypt the sealed stream IN into OUT (`-` for standard input / output).
    /// Needs `vault.open` (operator, administrator, auditor); audited with IN's SHA-256.
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
    /// Check every segment of a sealed stream without writing the plaintext anywhere. Needs
    /// `vault.verify`.
    Verify { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Seal FILE into a Fernet token (written to FILE.sealed, or -o). Needs `config.seal`.
    Seal {
        file: PathBuf,
        /// Where to write the token (`-` for standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// Open a sealed configuration file and print it (or write it with -o); a file that is not
    /// sealed is refused. Needs `config.open`.
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

// ------------------------------------------------------------------------ sessions

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Every recording in DATA_DIR/sessions: when, how long, device, technician, shim, bytes
    /// each way, and whether it verifies (complete, cut short, damaged). Needs
    /// `recording.list` (administrator, auditor).
    List {
        /// One JSON object with every fact, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Replay what the device showed the technician, with the recorded timing. Terminal
    /// control sequences that could harm your terminal are removed unless --raw is given.
    /// Needs `recording.play` (administrator, auditor); the replay is audited.
    Play(PlayArgs),
    /// Write a recording as asciicast v2 (`asciinema play`), JSON Lines or a text/hex dump.
    /// Needs `recording.export` (auditor); the export is audited.
    Export(SessionExportArgs),
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// The recording: a path, or a file name in DATA_DIR/sessions.
    pub file: PathBuf,
    /// Playback speed: 2 is twice as fast, 0.5 half as fast.
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_speed)]
    pub speed: f64,
    /// Shorten every pause longer than SECS (recorded time) to SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub skip_idle: Option<Duration>,
    /// Also show what the technician typed (most devices echo it anyway).
    #[arg(long)]
    pub include_input: bool,
    /// Write the recorded bytes unchanged, escape sequences included (title changes, clipboard
    /// writes, terminal queries): only for recordings you trust.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Args)]
pub struct SessionExportArgs {
    /// The recording: a path, or a file name in DATA_DIR/sessions.
    pub file: PathBuf,
    /// asciicast (v2, for `asciinema play`), jsonl (lossless, for tools) or text (lossless
    /// text/hex dump, for people and grep).
    #[arg(long, value_enum)]
    pub format: SessionFormat,
    /// Output file, created 0600 and only once complete (default: standard output).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// For a recording that was cut short (crash, power loss, storage exhausted): export what
    /// verifies and exit 0 with a warning, instead of exit code 3.
    #[arg(long)]
    pub recover: bool,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// asciicast only: keep the recorded escape sequences (title changes, clipboard writes,
    /// terminal queries) that `asciinema play` would send to the viewer's terminal; by default
    /// they are removed as `session play` removes them. Only for recordings you trust. (jsonl
    /// and text escape every byte and are never changed.)
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionFormat {
    Asciicast,
    Jsonl,
    Text,
}

impl From<SessionFormat> for warden_shim::recording::ops::Format {
    fn from(format: SessionFormat) -> Self {
        match format {
            SessionFormat::Asciicast => Self::Asciicast,
            SessionFormat::Jsonl => Self::Jsonl,
            SessionFormat::Text => Self::Text,
        }
    }
}

fn parse_speed(text: &str) -> Result<f64, String> {
    let speed: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !speed.is_finite() || speed <= 0.0 || speed > 1_000_000.0 {
        return Err("the speed must be greater than 0 and at most 1000000".into());
    }
    Ok(speed)
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| "the idle limit must be a number of seconds, 0 or more".to_string())
}

// ------------------------------------------------------------------------ identity

/// `warden init`'s first administrator: there is no default account and no default password.
#[derive(Debug, Args)]
pub struct IdentityInitArgs {
    /// The first administrator's user name (asked for on a terminal when missing).
    #[arg(long, value_name = "NAME")]
    pub admin: Option<String>,
    /// Read the first administrator's password from this file (0600, yours; one line).
    /// Otherwise $WARDEN_NEW_PASSWORD (tests only), or a prompt.
    #[arg(long, value_name = "FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Enroll the first administrator for TOTP now (prints the otpauth:// URI and a QR code).
    #[arg(long)]
    pub admin_totp: bool,
    /// With --admin-totp: also write the QR code as a PNG file.
    #[arg(long, value_name = "FILE", requires = "admin_totp")]
    pub admin_qr_png: Option<PathBuf>,
    /// Identity policy (JSON): password rules and Argon2id costs, TOTP defaults, lockout and
    /// attempt spacing. Missing keys take the defaults (docs/access-control.md).
    #[arg(long, value_name = "FILE")]
    pub identity_policy: Option<PathBuf>,
}

/// The person running a privileged command. Every such command signs them in first (password,
/// plus a one-time code when they have TOTP enrolled) and records who did what.
#[derive(Debug, Args)]
pub struct ActorArgs {
    /// Your user name.
    #[arg(long = "as", value_name = "USER", env = "WARDEN_USER", global = true)]
    pub acting_user: Option<String>,
    /// Read your password from this file (0600, yours; one line). Otherwise $WARDEN_PASSWORD
    /// (tests only: the environment is visible to other processes), or a prompt.
    #[arg(long, value_name = "FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Your current one-time code, if you have TOTP enrolled (asked for on a terminal otherwise).
    #[arg(long, value_name = "CODE", global = true)]
    pub totp: Option<String>,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

/// TOTP parameters for an enrollment (defaults from the identity policy: SHA1, 6, 30 s).
#[derive(Debug, Args)]
pub struct TotpChoice {
    /// HMAC algorithm: SHA1 (every app), SHA256 or SHA512.
    #[arg(long, value_name = "ALG")]
    pub algorithm: Option<String>,
    /// Digits per code: 6 or 8.
    #[arg(long, value_name = "N")]
    pub digits: Option<u8>,
    /// Seconds per code.
    #[arg(long, value_name = "SECS")]
    pub period: Option<u32>,
}

/// How an enrollment is shown.
#[derive(Debug, Args)]
pub struct EnrollOutput {
    /// Also write the QR code as a PNG file (created 0600; must not exist).
    #[arg(long, value_name = "FILE")]
    pub qr_png: Option<PathBuf>,
    /// Do not draw the QR code in the terminal.
    #[arg(long)]
    pub no_qr: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Technicians sign in at the shim with TOTP only and are enrolled at once;
    /// other roles need a password (and may be enrolled with --enroll-totp).
    Add {
        username: String,
        /// technician, operator, administrator or auditor.
        #[arg(long, value_parser = parse_role)]
        role: warden_core::rbac::Role,
        /// Read the new user's password from this file (0600). Otherwise $WARDEN_NEW_PASSWORD
        /// (tests only), or a prompt.
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// Enroll TOTP now (always done for technicians).
        #[arg(long)]
        enroll_totp: bool,
        #[command(flatten)]
        totp_params: TotpChoice,
        #[command(flatten)]
        output: EnrollOutput,
        /// Machine-readable output (the enrollment URI included).
        #[arg(long)]
        json: bool,
    },
    /// List users: role, status, TOTP, password expiry, lockouts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one user.
    Show {
        username: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: they can no longer sign in anywhere.
    Disable { username: String },
    /// Enable a disabled user again.
    Enable { username: String },
    /// Change your own password, or (administrators) set another user's.
    Passwd {
        /// Whose password (default: yours).
        username: Option<String>,
        /// Read the new password from this file (0600). Otherwise $WARDEN_NEW_PASSWORD (tests
        /// only), or a prompt.
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Enroll (or re-enroll) TOTP: yours, or (administrators) another user's. Prints the
    /// otpauth:// URI and a QR code for an authenticator app.
    EnrollTotp {
        /// Whose credential (default: yours).
        username: Option<String>,
        #[command(flatten)]
        totp_params: TotpChoice,
        #[command(flatten)]
        output: EnrollOutput,
        #[arg(long)]
        json: bool,
    },
    /// Remove a user: the account and their key slot go (the audit trail keeps what they did).
    /// Their role's keys stay as they are unless rotated (`warden keys rotate PURPOSE`).
    Remove { username: String },
    /// Lift a user's lockout (user.manage). A shim port's lock is lifted by the daemon itself:
    /// `warden shim reset`.
    Unlock { username: String },
    /// Show the identity policy in force (password rules, TOTP, lockout).
    Policy {
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(text: &str) -> Result<warden_core::rbac::Role, String> {
    text.parse()
        .map_err(|err: warden_core::rbac::UnknownRole| err.to_string())
}
