//! Where the master passphrase comes from, and unlocking purpose keys with it.
//!
//! Sources, in order: `--passphrase-file` (0600, ours, no symlink), `--passphrase-fd`, a systemd
//! credential (`$CREDENTIALS_DIRECTORY/warden-passphrase`), the `WARDEN_PASSPHRASE` environment
//! variable (for tests only: the environment of a process is visible to others with the same
//! uid and ends up in crash reports), and finally an interactive prompt without echo.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use warden_core::datadir::DataDir;
use warden_core::fsx;
use warden_core::keyring::Purpose;
use warden_core::secret::{Key32, Passphrase};

use crate::cli::GlobalArgs;

pub const ENV_PASSPHRASE: &str = "WARDEN_PASSPHRASE";
pub const SYSTEMD_CREDENTIAL: &str = "warden-passphrase";
/// The auditor's passphrase (for the sealed initial audit key), for tests only.
pub const ENV_AUDITOR_PASSPHRASE: &str = "WARDEN_AUDITOR_PASSPHRASE";
const MAX_PASSPHRASE_BYTES: u64 = 4096;

/// How to obtain the passphrase, decided from the arguments and environment.
#[derive(Debug, Clone)]
pub enum PassphraseSource {
    File(PathBuf),
    Fd(u32),
    Env(&'static str),
    /// An interactive prompt; `alternatives` names the other sources, for the error off a terminal.
    Prompt {
        alternatives: &'static str,
    },
}

impl PassphraseSource {
    pub fn from_args(args: &GlobalArgs) -> Self {
        if let Some(path) = &args.passphrase_file {
            return Self::File(path.clone());
        }
        if let Some(fd) = args.passphrase_fd {
            return Self::Fd(fd);
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = Path::new(&dir).join(SYSTEMD_CREDENTIAL);
            if path.exists() {
                return Self::File(path);
            }
        }
        if std::env::var_os(ENV_PASSPHRASE).is_some() {
            return Self::Env(ENV_PASSPHRASE);
        }
        Self::Prompt {
            alternatives: "--passphrase-file, --passphrase-fd, $CREDENTIALS_DIRECTORY/warden-passphrase or $WARDEN_PASSPHRASE (tests only)",
        }
    }

    /// The auditor's passphrase: `--auditor-passphrase-file`, `WARDEN_AUDITOR_PASSPHRASE`
    /// (tests only), or a prompt.
    pub fn for_auditor(args: &GlobalArgs) -> Self {
        if let Some(path) = &args.auditor_passphrase_file {
            return Self::File(path.clone());
        }
        if std::env::var_os(ENV_AUDITOR_PASSPHRASE).is_some() {
            return Self::Env(ENV_AUDITOR_PASSPHRASE);
        }
        Self::Prompt {
            alternatives: "--auditor-passphrase-file or $WARDEN_AUDITOR_PASSPHRASE (tests only)",
        }
    }

    /// Reads the passphrase. `confirm` asks twice at an interactive prompt (for `init`).
    pub fn read(&self, prompt: &str, confirm: bool) -> Result<Passphrase> {
        match self {
            Self::File(path) => {
                let bytes = fsx::read_private(path, MAX_PASSPHRASE_BYTES)
                    .with_context(|| "cannot use the passphrase file")?;
                one_line(bytes, &format!("passphrase file {}", path.display()))
            }
            Self::Fd(fd) => {
                // /proc/self/fd reopens an inherited descriptor without any unsafe code.
                let path = PathBuf::from(format!("/proc/self/fd/{fd}"));
                let file = std::fs::File::open(&path).with_context(|| {
                    format!("cannot read the passphrase from file descriptor {fd}")
                })?;
                let bytes = fsx::read_limited(file, &path, MAX_PASSPHRASE_BYTES)?;
                one_line(bytes, &format!("file descriptor {fd}"))
            }
            Self::Env(name) => {
                tracing::warn!(
                    "reading a passphrase from {name}: for tests only, not for production"
                );
                let value = std::env::var(name)
                    .map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8"))?;
                Ok(Passphrase::new(value))
            }
            Self::Prompt { alternatives } => {
                if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
                    bail!("no passphrase source: not on a terminal to ask, and none of {alternatives} is given");
                }
                let first = Passphrase::new(rpassword::prompt_password(prompt)?);
                if confirm {
                    let again =
                        Passphrase::new(rpassword::prompt_password("Repeat the passphrase: ")?);
                    if !warden_core::mac::ct_eq(
                        first.expose_secret().as_bytes(),
                        again.expose_secret().as_bytes(),
                    ) {
                        bail!("the two passphrases differ");
                    }
                }
                Ok(first)
            }
        }
    }
}

/// Takes the first line of a key source, without its line ending; refuses empty input.
fn one_line(bytes: Vec<u8>, what: &str) -> Result<Passphrase> {
    let bytes = zeroize::Zeroizing::new(bytes);
    let text =
        std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("{what} is not valid UTF-8"))?;
    let line = text.split(['\n', '\r']).next().unwrap_or("");
    if line.is_empty() {
        bail!("{what} is empty");
    }
    Ok(Passphrase::new(line.to_string()))
}

/// An opened data directory plus the passphrase, read once, to unlock purpose keys on demand.
pub struct Unlocker {
    pub dir: DataDir,
    source: PassphraseSource,
    passphrase: Option<Passphrase>,
}

impl Unlocker {
    pub fn open(args: &GlobalArgs) -> Result<Self> {
        let dir = DataDir::open(&args.data_dir)?;
        Ok(Self {
            dir,
            source: PassphraseSource::from_args(args),
            passphrase: None,
        })
    }

    /// Opens the database with the `database` key.
    pub fn database(&mut self) -> Result<warden_store::Database> {
        let key = self.key(Purpose::Database)?;
        Ok(warden_store::Database::open(
            &self.dir.root().join(warden_store::DB_FILE),
            &key,
        )?)
    }

    /// The audit chain, with the `audit` key; its events are queued for the SIEM.
    pub fn audit_log(&mut self) -> Result<warden_store::audit::AuditLog> {
        Ok(warden_store::audit::AuditLog::forwarding_to_siem(
            self.key(Purpose::Audit)?,
        ))
    }

    /// Derives and checks the key for `purpose` (a wrong passphrase fails here, before any data).
    pub fn key(&mut self, purpose: Purpose) -> Result<Key32> {
        if self.passphrase.is_none() {
            let prompt = format!("Master passphrase for {}: ", self.dir.root().display());
            self.passphrase = Some(self.source.read(&prompt, false)?);
        }
        let passphrase = self.passphrase.as_ref().expect("set above");
        Ok(self.dir.security().unlock(passphrase, purpose)?)
    }
}
