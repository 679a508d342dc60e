//! What every command starts from: the data directory, the master passphrase (read once per
//! process, from wherever it comes), the purpose keys it unlocks, and the one sign-in gate.
//!
//! Passphrase sources, in order: `--passphrase-file` (0600, ours, no symlink),
//! `--passphrase-fd`, a systemd credential (`$CREDENTIALS_DIRECTORY/warden-passphrase`), the
//! `WARDEN_PASSPHRASE` environment variable (for tests only: the environment of a process is
//! visible to others with the same uid and ends up in crash reports), and finally an
//! interactive prompt without echo.
//!
//! A privileged command calls [`Context::sign_in_for`] once: it opens the store, signs the
//! person named by `--as` in (password, then a one-time code when enrolled) and checks the
//! permission. Without `--as`, or with a role that lacks the permission, the refusal is audited
//! and the command exits with code 5. Who acts is never taken from the environment.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use warden_core::datadir::DataDir;
use warden_core::fsx;
use warden_core::keyring::Purpose;
use warden_core::password::Password;
use warden_core::rbac::Permission;
use warden_core::sealed_config::ConfigSealer;
use warden_core::secret::{Key32, Passphrase};
use warden_store::identity::{AuthError, AuthenticatedUser, Authorized, UnixMs};
use warden_store::Store;

use crate::cli::GlobalArgs;

pub const ENV_PASSPHRASE: &str = "WARDEN_PASSPHRASE";
pub const SYSTEMD_CREDENTIAL: &str = "warden-passphrase";
/// The auditor's passphrase (for the sealed initial audit key), for tests only.
pub const ENV_AUDITOR_PASSPHRASE: &str = "WARDEN_AUDITOR_PASSPHRASE";
pub const ENV_PASSWORD: &str = "WARDEN_PASSWORD";
pub const ENV_NEW_PASSWORD: &str = "WARDEN_NEW_PASSWORD";
const MAX_SECRET_BYTES: u64 = 4096;

/// How to obtain a passphrase, decided from the arguments and environment.
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
                let bytes = fsx::read_private(path, MAX_SECRET_BYTES)
                    .with_context(|| "cannot use the passphrase file")?;
                one_line(bytes, &format!("passphrase file {}", path.display())).map(Passphrase::new)
            }
            Self::Fd(fd) => {
                // /proc/self/fd reopens an inherited descriptor without any unsafe code.
                let path = PathBuf::from(format!("/proc/self/fd/{fd}"));
                let file = std::fs::File::open(&path).with_context(|| {
                    format!("cannot read the passphrase from file descriptor {fd}")
                })?;
                let bytes = first_line_only(file, *fd)?;
                one_line(bytes, &format!("file descriptor {fd}")).map(Passphrase::new)
            }
            Self::Env(name) => {
                tracing::warn!(
                    "reading a passphrase from {name}: for tests only, not for production"
                );
                let value =
                    std::env::var(name).map_err(|_| anyhow!("{name} is not valid UTF-8"))?;
                Ok(Passphrase::new(value))
            }
            Self::Prompt { alternatives } => {
                if !on_terminal() {
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

/// Reads up to the first newline and not one byte further, so what follows on the same
/// descriptor (standard input that also carries data, e.g. `vault seal -`) is left for the
/// command.
fn first_line_only(mut file: std::fs::File, fd: u32) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut line = zeroize::Zeroizing::new(Vec::new());
    let mut byte = [0u8; 1];
    loop {
        match file.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                if line.len() as u64 >= MAX_SECRET_BYTES {
                    bail!("the first line on file descriptor {fd} is longer than {MAX_SECRET_BYTES} bytes");
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(anyhow!(e).context(format!(
                    "cannot read the passphrase from file descriptor {fd}"
                )))
            }
        }
    }
    Ok(std::mem::take(&mut *line))
}

/// The first line of a key source, without its line ending; refuses empty input.
fn one_line(bytes: Vec<u8>, what: &str) -> Result<String> {
    let bytes = zeroize::Zeroizing::new(bytes);
    let text = std::str::from_utf8(&bytes).map_err(|_| anyhow!("{what} is not valid UTF-8"))?;
    let line = text.split(['\n', '\r']).next().unwrap_or("");
    if line.is_empty() {
        bail!("{what} is empty");
    }
    Ok(line.to_string())
}

pub fn on_terminal() -> bool {
    std::io::stdin().is_terminal() || std::io::stderr().is_terminal()
}

/// The first line of a file that must be private (0600, ours, not a symlink).
fn read_secret_file(path: &Path, what: &str) -> Result<Password> {
    let bytes = fsx::read_private(path, MAX_SECRET_BYTES)
        .with_context(|| format!("cannot use the {what} file"))?;
    one_line(bytes, &format!("{what} file {}", path.display())).map(Password::new)
}

fn read_env(var: &str) -> Result<Option<Password>> {
    match std::env::var(var) {
        Ok(value) => {
            tracing::warn!("reading a password from {var}: for tests only, not for production");
            Ok(Some(Password::new(value)))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{var} is not valid UTF-8"),
    }
}

/// The acting person's password: `--password-file`, `$WARDEN_PASSWORD`, or a prompt (also
/// asked again for an electronic signature).
pub fn read_password(file: Option<&Path>, username: &str) -> Result<Password> {
    if let Some(path) = file {
        return read_secret_file(path, "password");
    }
    if let Some(password) = read_env(ENV_PASSWORD)? {
        return Ok(password);
    }
    if !on_terminal() {
        bail!(
            "no password source: not on a terminal, and neither --password-file nor {ENV_PASSWORD} is set"
        );
    }
    Ok(Password::new(rpassword::prompt_password(format!(
        "Password for {username}: "
    ))?))
}

/// A new password: a file, `$WARDEN_NEW_PASSWORD`, or a prompt asked twice.
pub fn read_new_password(file: Option<&Path>, whose: &str) -> Result<Password> {
    if let Some(path) = file {
        return read_secret_file(path, "new password");
    }
    if let Some(password) = read_env(ENV_NEW_PASSWORD)? {
        return Ok(password);
    }
    if !on_terminal() {
        bail!(
            "no source for the new password of {whose}: not on a terminal, and neither a password \
             file option nor {ENV_NEW_PASSWORD} is given"
        );
    }
    let first = Password::new(rpassword::prompt_password(format!(
        "New password for {whose} (at least 16 characters, upper and lower case, a digit and a special character): "
    ))?);
    let again = Password::new(rpassword::prompt_password("Repeat the new password: ")?);
    if !warden_core::mac::ct_eq(
        first.expose_secret().as_bytes(),
        again.expose_secret().as_bytes(),
    ) {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// A command's view of the process: the global arguments, and — once asked for — the data
/// directory and the master passphrase, each read once.
pub struct Context<'a> {
    pub global: &'a GlobalArgs,
    dir: Option<DataDir>,
    passphrase: Option<Passphrase>,
    auditor_passphrase: Option<Passphrase>,
}

impl<'a> Context<'a> {
    pub fn new(global: &'a GlobalArgs) -> Self {
        Self {
            global,
            dir: None,
            passphrase: None,
            auditor_passphrase: None,
        }
    }

    /// The data directory (opened once; must be initialized).
    pub fn dir(&mut self) -> Result<&DataDir> {
        if self.dir.is_none() {
            self.dir = Some(DataDir::open(&self.global.data_dir)?);
        }
        Ok(self.dir.as_ref().expect("set above"))
    }

    /// The master passphrase, read once per process from its source.
    pub fn passphrase(&mut self, prompt: &str, confirm: bool) -> Result<&Passphrase> {
        if self.passphrase.is_none() {
            self.passphrase = Some(PassphraseSource::from_args(self.global).read(prompt, confirm)?);
        }
        Ok(self.passphrase.as_ref().expect("set above"))
    }

    /// The auditor's passphrase, read once per process.
    pub fn auditor_passphrase(&mut self, prompt: &str, confirm: bool) -> Result<&Passphrase> {
        if self.auditor_passphrase.is_none() {
            self.auditor_passphrase = Some(
                PassphraseSource::for_auditor(self.global)
                    .read(prompt, confirm)
                    .context("the auditor passphrase")?,
            );
        }
        Ok(self.auditor_passphrase.as_ref().expect("set above"))
    }

    /// Derives and checks the key for `purpose` (a wrong passphrase fails here, before any data).
    pub fn key(&mut self, purpose: Purpose) -> Result<Key32> {
        self.dir()?;
        let prompt = format!("Master passphrase for {}: ", self.global.data_dir.display());
        self.passphrase(&prompt, false)?;
        let dir = self.dir.as_ref().expect("opened above");
        let passphrase = self.passphrase.as_ref().expect("read above");
        Ok(dir.security().unlock(passphrase, purpose)?)
    }

    /// The `config` key as the sealer of configuration files, tolerating the clock skew set by
    /// `--config-clock-skew`.
    pub fn config_sealer(&mut self) -> Result<ConfigSealer> {
        let key = self.key(Purpose::Config)?;
        Ok(
            ConfigSealer::new(&key).with_clock_skew(std::time::Duration::from_secs(
                self.global.config_clock_skew,
            )),
        )
    }

    /// The database, identity service and audit chain.
    pub fn store(&mut self) -> Result<Store> {
        let database = self.key(Purpose::Database)?;
        let audit = self.key(Purpose::Audit)?;
        Ok(Store::open(self.dir()?, database, audit)?)
    }

    /// Signs in the person named by `--as` / `$WARDEN_USER`: password, then a one-time code
    /// when they have TOTP enrolled. Every attempt is audited; refusals exit with code 5.
    /// `permission` and `action` name what the command was for, should it be refused.
    pub fn sign_in(
        &mut self,
        permission: Permission,
        action: &str,
    ) -> Result<(Store, AuthenticatedUser)> {
        let actor = &self.global.actor;
        let mut store = self.store()?;
        if matches!(
            permission,
            Permission::AuditVerify
                | Permission::AuditExport
                | Permission::AuditTail
                | Permission::AuditCheckpoint
        ) {
            // The trail must stay examinable when it was damaged (see read_damaged_chain).
            store.audit().read_damaged_chain();
        }
        let Some(username) = actor.acting_user.clone() else {
            let refusal = store.identity.refuse_anonymous(
                &mut store.db,
                permission,
                action,
                UnixMs::now(),
            )?;
            return Err(refusal.into());
        };
        let password = read_password(actor.password_file.as_deref(), &username)?;
        let mut code = actor.totp.clone().map(zeroize::Zeroizing::new);
        loop {
            let result = store.identity.authenticate_operator(
                &mut store.db,
                &username,
                &password,
                code.as_deref().map(String::as_str),
                UnixMs::now(),
            );
            match result {
                Ok(user) => {
                    if user.password_expired() {
                        eprintln!(
                            "warning: the password of {} has expired; change it with `warden user passwd`",
                            user.username()
                        );
                    }
                    return Ok((store, user));
                }
                Err(AuthError::TotpRequired { .. }) if code.is_none() && on_terminal() => {
                    code = Some(zeroize::Zeroizing::new(rpassword::prompt_password(
                        "One-time code: ",
                    )?));
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// The one gate of a privileged command: sign in, then allow `permission` for `action`
    /// (e.g. `audit.export`) or record the denial and fail (exit code 5).
    pub fn sign_in_for(
        &mut self,
        permission: Permission,
        action: &str,
    ) -> Result<(Store, Authorized)> {
        let (mut store, user) = self.sign_in(permission, action)?;
        let by = store
            .identity
            .require(&mut store.db, &user, permission, action, UnixMs::now())?;
        Ok((store, by))
    }
}
