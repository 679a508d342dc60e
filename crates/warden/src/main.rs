//! The `warden` binary: parses the command line, sets up logging, and wires the crates together.
//! Errors end here: each is printed with its cause chain, a hint where one helps, and an exit
//! code sorted by cause (see `exit_code`).
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod context;
mod enroll;
mod live_shim;
mod progress;
mod shim_bench;

use std::process::ExitCode;

/// Allocations go to mimalloc, Rust's and (its `override` feature) SQLCipher's and OpenSSL's:
/// with glibc's allocator, malloc and free were ~15 % of the OTA server's CPU under load (many
/// threads, many short-lived buffers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use warden_core::datadir::DataDirError;
use warden_core::keyring::KeyringError;
use warden_core::keyslots::KeySlotError;
use warden_core::sealed_config::SealedConfigError;
use warden_core::stream::StreamError;
use warden_shim::recording::ops::SessionOpError;
use warden_shim::recording::read::SessionError;
use warden_shim::recording::RecordError;
use warden_store::identity::AuthError;

use cli::{Cli, Command, LogFormat};

/// Exit codes: 0 success, 1 error, 2 usage (from clap), 3 damaged or unverifiable data,
/// 4 wrong passphrase or key, 5 sign-in refused or access denied, 130 stopped by Ctrl-C,
/// 141 standard output closed by its reader.
mod exit {
    pub const ERROR: u8 = 1;
    pub const DAMAGED: u8 = 3;
    pub const WRONG_KEY: u8 = 4;
    pub const ACCESS: u8 = 5;
    pub const INTERRUPTED: u8 = 130;
    pub const STDOUT_CLOSED: u8 = 141;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.log_format, cli.global.verbose);
    quiet_on_closed_stdout();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Written without `eprintln!`, which panics when standard error is closed or full:
            // the exit code still says what happened.
            use std::io::Write as _;
            let mut stderr = std::io::stderr().lock();
            // Stopping on request is not an error.
            if let Some(stopped) = find::<cmd::session::Interrupted>(&err) {
                let _ = writeln!(stderr, "{stopped}");
                return ExitCode::from(exit::INTERRUPTED);
            }
            if stdout_closed(&err) {
                return ExitCode::from(exit::STDOUT_CLOSED);
            }
            let report = warden_core::report::Report(err.as_ref());
            let _ = writeln!(stderr, "error: {report}");
            if let Some(hint) = hint(&err) {
                let _ = writeln!(stderr, "hint: {hint}");
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

/// A command whose output is piped into `head` and cut short ends quietly, as Unix tools do,
/// with exit code 141 (128 + SIGPIPE: what a shell shows for a tool killed by it) instead of a
/// panic and its backtrace. (`println!` panics when its write fails; SIGPIPE itself is ignored
/// by the Rust runtime.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(exit::STDOUT_CLOSED.into());
        }
        default(info);
    }));
}

/// The command failed because standard output's reader went away (`| head`): a broken pipe in
/// the error, and standard output is a pipe with no reader left (so a broken network
/// connection is not taken for it).
fn stdout_closed(err: &anyhow::Error) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let broken_pipe = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if !broken_pipe {
        return false;
    }
    let out = std::io::stdout();
    let mut fds = [PollFd::new(out.as_fd(), PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // One context per process: the passphrase is read at most once, whatever the command.
    let mut ctx = context::Context::new(&cli.global);
    let ctx = &mut ctx;
    if !matches!(cli.command, Command::Init(_) | Command::Demo(_)) {
        ctx.prepare()?;
    }
    match &cli.command {
        Command::Init(args) => cmd::init::run(args, ctx),
        Command::Vault(cmd) => cmd::vault::run(cmd, ctx),
        Command::Config(cmd) => cmd::config::run(cmd, ctx),
        Command::Audit(cmd) => cmd::audit::run(cmd, ctx),
        Command::Siem(cmd) => cmd::siem::run(cmd, ctx),
        Command::Ota(cmd) => cmd::ota::run(cmd, ctx),
        Command::Shim(cmd) => cmd::shim::run(cmd, ctx),
        Command::Records(cmd) => cmd::records::run(cmd, ctx),
        Command::Demo(args) => cmd::demo::run(args),
        Command::User(args) => cmd::user::run(args, ctx),
        Command::Session(cmd) => cmd::session::run(cmd, ctx),
        Command::Keys(cmd) => cmd::keys::run(cmd, ctx),
        Command::BreakGlass(args) => cmd::user::break_glass(args, ctx),
    }
}

fn init_logging(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    // Colours only on a terminal: piped logs and files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn find<T: std::error::Error + 'static>(err: &anyhow::Error) -> Option<&T> {
    err.chain().find_map(|e| e.downcast_ref::<T>())
}

/// The key-slot error behind `err`, also where a key operation wraps it transparently.
fn key_slot_error(err: &anyhow::Error) -> Option<&KeySlotError> {
    err.chain().find_map(|e| {
        e.downcast_ref::<KeySlotError>().or_else(|| {
            match e.downcast_ref::<warden_store::keys::KeyOpError>() {
                Some(warden_store::keys::KeyOpError::Slots(inner)) => Some(inner),
                _ => None,
            }
        })
    })
}

/// The store error behind `err`, also where another error wraps it transparently.
fn store_error(err: &anyhow::Error) -> Option<&warden_store::StoreError> {
    use warden_store::identity::IdentityError;
    err.chain().find_map(|e| {
        e.downcast_ref::<warden_store::StoreError>()
            .or_else(|| match e.downcast_ref::<AuthError>() {
                Some(AuthError::Store(inner)) => Some(inner),
                _ => None,
            })
            .or_else(|| match e.downcast_ref::<IdentityError>() {
                Some(IdentityError::Store(inner)) => Some(inner),
                _ => None,
            })
            .or_else(
                || match e.downcast_ref::<warden_store::keys::KeyOpError>() {
                    Some(warden_store::keys::KeyOpError::Store(inner)) => Some(inner),
                    _ => None,
                },
            )
    })
}

/// A page of the database failed SQLCipher's authentication (or SQLite's own checks): the file
/// was changed outside warden, or the disk is failing.
fn database_page_damaged(err: &anyhow::Error) -> bool {
    find::<rusqlite::Error>(err).is_some_and(|e| {
        matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    })
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(KeyringError::WrongPassphrase(_)) = find::<KeyringError>(err) {
        return exit::WRONG_KEY;
    }
    // A key the slot does not carry: the crypto layer's refusal, like a permission's.
    if find::<warden_core::keyslots::NotCarried>(err).is_some() {
        return exit::ACCESS;
    }
    match key_slot_error(err) {
        Some(KeySlotError::WrongSecret(_)) => return exit::WRONG_KEY,
        Some(KeySlotError::NotCarried(_)) => return exit::ACCESS,
        Some(e) if e.is_damage() => return exit::DAMAGED,
        _ => {}
    }
    if find::<crate::cmd::records::RecordsDamaged>(err).is_some()
        || matches!(
            find::<warden_store::keys::KeyOpError>(err),
            Some(warden_store::keys::KeyOpError::UsersTableChanged { .. })
        )
    {
        return exit::DAMAGED;
    }
    if matches!(
        find::<warden_store::keys::KeyOpError>(err),
        Some(warden_store::keys::KeyOpError::DatabaseDoesNotOpen(_))
    ) || database_page_damaged(err)
    {
        return exit::DAMAGED;
    }
    if let Some(stream) = find::<StreamError>(err) {
        return match stream {
            StreamError::WrongKey(_) | StreamError::WrongPurpose { .. } => exit::WRONG_KEY,
            e if e.is_damage() || matches!(e, StreamError::NotSealed) => exit::DAMAGED,
            _ => exit::ERROR,
        };
    }
    // A token from the future is authentic (the clock is the problem): a plain error.
    if matches!(
        find::<SealedConfigError>(err),
        Some(SealedConfigError::Rejected)
    ) || find::<warden_store::audit::ChainDamaged>(err).is_some()
        || err.chain().any(|e| {
            matches!(
                e.downcast_ref::<SessionError>(),
                Some(SessionError::CutShortRefused(_))
            ) || matches!(
                e.downcast_ref::<SessionOpError>(),
                Some(SessionOpError::Session(
                    SessionError::CutShortRefused(_) | SessionError::NotASession { .. }
                ))
            ) || matches!(
                e.downcast_ref::<SessionError>(),
                Some(SessionError::NotASession { .. })
            )
        })
    {
        return exit::DAMAGED;
    }
    if let Some(record) = find::<RecordError>(err) {
        if !matches!(record, RecordError::Io(_)) {
            return exit::DAMAGED;
        }
    }
    if let Some(warden_core::auditor_key::AuditorKeyError::WrongPassphrase) = find(err) {
        return exit::WRONG_KEY;
    }
    match store_error(err) {
        Some(warden_store::StoreError::WrongKey(_)) => return exit::WRONG_KEY,
        Some(
            warden_store::StoreError::ChainDamaged(_)
            | warden_store::StoreError::Corrupt(_)
            | warden_store::StoreError::Lost(_),
        ) => return exit::DAMAGED,
        _ => {}
    }
    if let Some(records) = find::<warden_records::RecordsError>(err) {
        use warden_records::Category;
        match records.category() {
            Category::Integrity => return exit::DAMAGED,
            Category::AccessDenied | Category::Authentication => return exit::ACCESS,
            _ => {}
        }
    }
    if let Some(auth) = find::<AuthError>(err) {
        if !matches!(auth, AuthError::Store(_)) {
            return exit::ACCESS;
        }
    }
    exit::ERROR
}

fn hint(err: &anyhow::Error) -> Option<&'static str> {
    if let Some(KeyringError::WrongPassphrase(_)) = find::<KeyringError>(err) {
        return Some("nothing was read or written; check which passphrase source was used (--passphrase-file, --passphrase-fd, $WARDEN_PASSPHRASE, or the prompt)");
    }
    if let Some(KeySlotError::WrongSecret(what)) = key_slot_error(err) {
        return Some(match *what {
            "master passphrase" => "nothing was read or written; check which passphrase source was used (--passphrase-file, --passphrase-fd, $WARDEN_PASSPHRASE, or the prompt)",
            "recovery key" => "check the file given with --recovery-key-file (8 groups of 8 hex digits)",
            _ => "check the key given",
        });
    }
    if find::<warden_core::keyslots::NotCarried>(err).is_some() {
        return Some("your role's key slot does not carry this key; see docs/access-control.md (\"Keys by role\")");
    }
    if database_page_damaged(err) {
        return Some("a page of the database failed its authentication: the file was changed outside warden or the disk is failing. Restore the data directory's state/warden.db from a backup, then run `warden audit verify`");
    }
    if let Some(SealedConfigError::FromTheFuture { .. }) = find::<SealedConfigError>(err) {
        return Some("check this machine's clock (e.g. `timedatectl`); if the skew is expected, tolerate it with --config-clock-skew SECS (or $WARDEN_CONFIG_CLOCK_SKEW)");
    }
    if let Some(link) = find::<warden_siem::LinkError>(err) {
        return Some(link.hint());
    }
    if let Some(auth) = find::<AuthError>(err) {
        return match auth {
            AuthError::LockedOut { .. } => {
                Some("an administrator lifts the lock with `warden user unlock NAME`")
            }
            AuthError::TotpRequired { .. } => {
                Some("pass the code from your authenticator app with --totp CODE")
            }
            AuthError::Denied { .. } => {
                Some("see docs/access-control.md for which role may do what")
            }
            AuthError::Failed => Some(
                "sign in with --as USER and your password (--password-file FILE or the prompt)",
            ),
            _ => None,
        };
    }
    if let Some(DataDirError::NotInitialized(_)) = find::<DataDirError>(err) {
        return Some("pass --data-dir (or set WARDEN_DATA_DIR) to an initialized directory");
    }
    None
}
