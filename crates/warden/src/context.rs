//! What every command starts from: the data directory, the keys this process holds (from one
//! key slot: the signed-in person's, a daemon's, or the master passphrase's), and the one
//! sign-in gate.
//!
//! Passphrase sources, in order: `--passphrase-file` (0600, ours, no symlink),
//! `--passphrase-fd`, a systemd credential (`$CREDENTIALS_DIRECTORY/warden-passphrase`), the
//! `WARDEN_PASSPHRASE` environment variable (for tests only: the environment of a process is
//! visible to others with the same uid and ends up in crash reports), and finally an
//! interactive prompt without echo.
//!
//! A privileged command calls [`Context::sign_in_for`] once: the password of the person named
//! by `--as` opens their key slot, the store opens with their keys, then a one-time code when
//! enrolled, then the permission check. The master passphrase is not needed for that. Without
//! `--as`, or with a role that lacks the permission, the refusal is audited and the command
//! exits with code 5. Who acts is never taken from the environment.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use warden_core::datadir::{DataDir, KeyFormat};
use warden_core::fsx;
use warden_core::keyring::Purpose;
use warden_core::keyslots::{
    Holder, KeyRing, Owner, RecoveryKey, ServiceKey, SlotSecret, Unlocked,
};
use warden_core::password::Password;
use warden_core::rbac::{Permission, ServiceKind};
use warden_core::sealed_config::ConfigSealer;
use warden_core::secret::{Key32, Passphrase};
use warden_store::identity::{AuthError, AuthenticatedUser, Authorized, PasswordProof, UnixMs};
use warden_store::keys::journal::{self, Unrecorded};
use warden_store::keys::{self, SlotSignIn};
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
/// directory, the master passphrase and the keys this process holds, each read once.
///
/// Keys come from exactly one slot: the signed-in person's (their role's keys), a daemon's
/// service slot (its service's keys), or the master passphrase's / recovery key's (every key,
/// for `init`, break-glass, `keys` commands, and as the fallback of daemons without a service
/// key). A key the slot does not carry is simply not in the process ([`Context::key`]).
pub struct Context<'a> {
    pub global: &'a GlobalArgs,
    dir: Option<DataDir>,
    passphrase: Option<Passphrase>,
    auditor_passphrase: Option<Passphrase>,
    keys: Option<KeyRing>,
    master: Option<Unlocked>,
}

impl<'a> Context<'a> {
    pub fn new(global: &'a GlobalArgs) -> Self {
        Self {
            global,
            dir: None,
            passphrase: None,
            auditor_passphrase: None,
            keys: None,
            master: None,
        }
    }

    /// Reads an explicitly given `--passphrase-fd` at once, whether or not the command needs
    /// the passphrase: its first line is the passphrase, and what follows on the descriptor
    /// (standard input that also carries data) is the command's.
    pub fn prepare(&mut self) -> Result<()> {
        if self.global.passphrase_fd.is_some() {
            self.passphrase("", false)?;
        }
        Ok(())
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

    /// True when a master passphrase (or recovery key) was given by a non-interactive source:
    /// then it may be used without asking anyone.
    fn master_given(&self) -> bool {
        self.passphrase.is_some()
            || self.global.recovery_key_file.is_some()
            || !matches!(
                PassphraseSource::from_args(self.global),
                PassphraseSource::Prompt { .. }
            )
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

    /// The master slot opened with the master passphrase, or the recovery slot with
    /// `--recovery-key-file`. A format-1 directory (derived keys) is converted to key slots
    /// first, keeping its keys.
    pub fn master(&mut self) -> Result<&Unlocked> {
        if self.master.is_none() {
            self.dir()?;
            let root = self.global.data_dir.clone();
            if let Some(path) = self.global.recovery_key_file.clone() {
                let dir = self.dir.as_ref().expect("opened above");
                if dir.format() == KeyFormat::Derived {
                    bail!("{} uses derived keys and has no recovery key yet; use the master passphrase", root.display());
                }
                let key = read_recovery_key(&path)?;
                let unlocked = dir.unlock_owner(&Owner::Recovery, &SlotSecret::Key(key.key()))?;
                self.master = Some(unlocked);
            } else {
                let prompt = format!("Master passphrase for {}: ", root.display());
                let passphrase = self.passphrase(&prompt, false)?.clone();
                let dir = self.dir.as_ref().expect("opened above");
                if dir.format() == KeyFormat::Derived {
                    let (converted, _) = keys::convert(dir, &passphrase)?;
                    eprintln!(
                        "note: {} now keeps its keys in key slots (format 2; the keys and the data are unchanged). \
                         People get their slots at their next sign-in with the master passphrase; \
                         make a recovery key with `warden keys recovery`.",
                        root.display()
                    );
                    self.dir = Some(converted);
                }
                let dir = self.dir.as_ref().expect("opened above");
                self.master = Some(dir.unlock_master(&passphrase)?);
            }
        }
        Ok(self.master.as_ref().expect("set above"))
    }

    /// The keys this process holds (the master's when nothing else was unlocked: commands
    /// that do not sign anyone in, daemons without a service key).
    fn keys(&mut self) -> Result<&KeyRing> {
        if self.keys.is_none() {
            let ring = self.master()?.keys.clone();
            self.keys = Some(ring);
        }
        Ok(self.keys.as_ref().expect("set above"))
    }

    /// The current key of `purpose`, if the slot this process opened carries it; otherwise a
    /// refusal (exit code 5): the key is not in this process.
    pub fn key(&mut self, purpose: Purpose) -> Result<Key32> {
        Ok(self.keys()?.require(purpose)?.clone())
    }

    /// Every version of `purpose` this process holds (two while a rotation is under way).
    pub fn key_candidates(&mut self, purpose: Purpose) -> Result<Vec<Key32>> {
        let keys = self.keys()?;
        keys.require(purpose)?;
        Ok(keys.candidates(purpose).into_iter().cloned().collect())
    }

    /// Whether the slot this process opened carries `purpose`.
    pub fn carries(&mut self, purpose: Purpose) -> Result<bool> {
        Ok(self.keys()?.current(purpose).is_some())
    }

    /// The whole key ring of this process (lifecycle operations re-wrap from it).
    pub fn ring(&mut self) -> Result<KeyRing> {
        Ok(self.keys()?.clone())
    }

    /// The `config` key as the sealer of configuration files (opening with every version held),
    /// tolerating the clock skew set by `--config-clock-skew`.
    pub fn config_sealer(&mut self) -> Result<ConfigSealer> {
        let keys = self.key_candidates(Purpose::Config)?;
        let mut sealer = ConfigSealer::new(&keys[0]);
        for other in &keys[1..] {
            sealer = sealer.also_opening(other);
        }
        Ok(sealer.with_clock_skew(std::time::Duration::from_secs(
            self.global.config_clock_skew,
        )))
    }

    /// A daemon's keys: its service slot, opened with `--service-key-file` or the systemd
    /// credential `warden-KIND-key`; without either, the master passphrase's keys restricted
    /// to what the service carries.
    pub fn use_service(&mut self, kind: ServiceKind) -> Result<()> {
        let credential = format!("warden-{}-key", kind.slot_name());
        let path = self.global.service_key_file.clone().or_else(|| {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
            let path = Path::new(&dir).join(&credential);
            path.exists().then_some(path)
        });
        let holder = Holder::Service(kind);
        let ring = match path {
            Some(path) => {
                let bytes = fsx::read_private(&path, MAX_SECRET_BYTES)
                    .with_context(|| format!("cannot use the service key {}", path.display()))?;
                let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
                let key = ServiceKey::parse(&text).ok_or_else(|| {
                    anyhow!("{} is not a service key (64 hex digits)", path.display())
                })?;
                let dir = self.dir()?;
                dir.unlock_owner(&Owner::Service(kind), &SlotSecret::Key(key.key()))?
                    .keys
            }
            None => self.master()?.keys.restricted(
                holder.purposes(),
                kind.slot_name(),
                "the keys of the service",
            ),
        };
        self.keys = Some(ring);
        Ok(())
    }

    /// The database, identity service and audit chain, opened with the keys this process holds
    /// (settling a key-slot change left pending by a crash).
    pub fn store(&mut self) -> Result<Store> {
        let ring = self.keys()?.clone();
        let dir = self.dir()?.clone();
        let (store, ring) = keys::open_store(&dir, ring)?;
        self.keys = Some(ring);
        Ok(store)
    }

    /// Signs in the person named by `--as` / `$WARDEN_USER`: their password opens their own key
    /// slot (the keys of their role), the store opens with those keys, then the one-time code
    /// when they have TOTP enrolled. Every attempt is audited — a refusal that happens before
    /// any key is open goes to the chain at the next open. Refusals exit with code 5.
    /// `permission` and `action` name what the command was for, should it be refused.
    pub fn sign_in(
        &mut self,
        permission: Permission,
        action: &str,
    ) -> Result<(Store, AuthenticatedUser)> {
        let actor = &self.global.actor;
        if self.dir()?.format() == KeyFormat::Derived {
            if !self.master_given() && !on_terminal() {
                bail!(
                    "{} keeps its keys derived from the master passphrase (format 1, made by an \
                     earlier warden): run this once with the master passphrase \
                     (--passphrase-file) to convert it to key slots",
                    self.global.data_dir.display()
                );
            }
            // Convert first: people sign in with slots from now on.
            self.master()?;
        }
        let Some(username) = actor.acting_user.clone() else {
            if self.master_given() {
                let mut store = self.store()?;
                if matches!(
                    permission,
                    Permission::AuditVerify
                        | Permission::AuditExport
                        | Permission::AuditTail
                        | Permission::AuditCheckpoint
                ) {
                    store.audit().read_damaged_chain();
                }
                let refusal = store.identity.refuse_anonymous(
                    &mut store.db,
                    permission,
                    action,
                    UnixMs::now(),
                )?;
                return Err(refusal.into());
            }
            let dir = self.dir()?.clone();
            journal::record(&dir, &Unrecorded::not_signed_in(action, permission.name()))?;
            return Err(AuthError::NotSignedIn { permission }.into());
        };
        let password = read_password(actor.password_file.as_deref(), &username)?;
        let dir = self.dir()?.clone();
        let opened = match dir.format() {
            KeyFormat::Slots => {
                keys::sign_in_with_slot(&dir, &username, &password, |store, proof| {
                    self.authenticate(store, &username, proof, permission)
                })?
            }
            KeyFormat::Derived => SlotSignIn::NoSlot,
        };
        match opened {
            SlotSignIn::SignedIn { store, user, keys } => {
                self.keys = Some(keys);
                Ok((store, user))
            }
            outcome @ (SlotSignIn::NoSlot | SlotSignIn::Refused) => {
                let no_slot = matches!(outcome, SlotSignIn::NoSlot);
                if self.master_given() || (no_slot && on_terminal()) {
                    // The master passphrase opens the store; the password is checked against
                    // the stored hash; a person without a slot gets one now.
                    let master = self.master()?.keys.clone();
                    let dir = self.dir()?.clone();
                    let (mut store, master) = keys::open_store(&dir, master)?;
                    let user = self.authenticate(
                        &mut store,
                        &username,
                        PasswordProof::Hash(&password),
                        permission,
                    )?;
                    let ring = keys::ensure_user_slot(&mut store, &dir, &user, &master, &password)?;
                    self.keys = Some(ring);
                    return Ok((store, user));
                }
                let reason = if no_slot {
                    "no_key_slot"
                } else {
                    "bad_password"
                };
                Err(keys::refuse_sign_in(&dir, &username, reason)?.into())
            }
        }
    }

    /// Password (as `proof` checks it), then a one-time code when enrolled (asked for on a
    /// terminal).
    fn authenticate(
        &mut self,
        store: &mut Store,
        username: &str,
        proof: PasswordProof<'_>,
        permission: Permission,
    ) -> Result<AuthenticatedUser> {
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
        let mut code = self.global.actor.totp.clone().map(zeroize::Zeroizing::new);
        loop {
            let proof = match &proof {
                PasswordProof::Hash(p) => PasswordProof::Hash(p),
                PasswordProof::Slot { password, proof } => PasswordProof::Slot { password, proof },
            };
            let result = store.identity.authenticate_operator_with(
                &mut store.db,
                warden_store::identity::SignInChannel::Cli,
                username,
                proof,
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
                    return Ok(user);
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

    /// The data directory, cloned (for library calls that take it with the store).
    pub fn dir_owned(&mut self) -> Result<DataDir> {
        Ok(self.dir()?.clone())
    }
}

/// A recovery key from a file (0600, ours): the 64 hex digits, dashes and white space allowed.
fn read_recovery_key(path: &Path) -> Result<RecoveryKey> {
    let bytes = fsx::read_private(path, MAX_SECRET_BYTES)
        .with_context(|| "cannot use the recovery key file")?;
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    RecoveryKey::parse(&text).ok_or_else(|| {
        anyhow!(
            "{} is not a recovery key (8 groups of 8 hex digits)",
            path.display()
        )
    })
}
