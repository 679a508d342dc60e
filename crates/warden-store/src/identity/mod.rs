//! Identity and access in the store: users with one role each, Argon2id password hashes and
//! their history, TOTP credentials (the secret sealed under the `database` purpose key, bound to
//! the user name) with the last accepted time step, and lockouts of users and shim ports.
//!
//! [`Identity`] is the service the CLI and the shim daemon call. It is synchronous and takes the
//! clock as a value ([`UnixMs`]); every change it makes commits in one transaction together with
//! its audit events, so the trail never says something happened that did not, or misses
//! something that did.
//!
//! * The shim: [`Identity::authenticate_technician`] answers with an [`AuthOutcome`]: TOTP with
//!   replay protection (compare-and-set on `last_accepted_step`), lockout counting for the user
//!   and the port, attempt spacing, and a `login.totp` audit event with the reason.
//! * The CLI: [`Identity::authenticate_operator`] (password, plus TOTP when enrolled) gives an
//!   [`AuthenticatedUser`]; [`Identity::require`] turns it into an [`Authorized`] for one
//!   [`Permission`] or records the denial. Every user-management operation takes an
//!   [`Authorized`], so it cannot be called by someone who was not checked.
//!
//! Unknown user names take the same path as known ones: a decoy Argon2id hash stored with the
//! policy, a decoy sealed TOTP secret, the same failure counting and the same answer.

mod admin;
mod auth;
mod rows;

use serde::{Deserialize, Serialize};
use warden_core::lockout::{BackoffPolicy, LockoutPolicy};
use warden_core::password::{PasswordError, PasswordHash, PasswordPolicy, PolicyViolations};
use warden_core::rbac::{Permission, Role};
use warden_core::report::report;
use warden_core::secret::Key32;
use warden_core::totp::{KeyUriError, TotpParams};

use crate::audit::AuditLog;
use crate::db::{Database, StoreError};

pub use admin::{BreakGlass, LockInfo, NewUser, TotpInfo, UserInfo};
pub use auth::{
    Actor, AuthOutcome, AuthenticatedUser, Authorized, PasswordProof, Service, SignInChannel,
    SlotProof, WrongAuthorization, ANONYMOUS_ACTOR, MASTER_PASSPHRASE_ACTOR, OTA_SERVICE,
    RECOVERY_KEY_ACTOR,
};

/// The tables (schema migration 2).
pub const MIGRATION_SQL: &str = "
    CREATE TABLE identity_policy (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        policy     TEXT    NOT NULL,
        decoy_phc  TEXT    NOT NULL
    );
    CREATE TABLE users (
        id                 INTEGER PRIMARY KEY,
        username           TEXT    NOT NULL UNIQUE,
        role               TEXT    NOT NULL
                           CHECK (role IN ('technician', 'operator', 'administrator', 'auditor')),
        password_phc       TEXT,
        password_changed   INTEGER,
        disabled           INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
        created            INTEGER NOT NULL,
        created_by         TEXT    NOT NULL,
        totp_sealed        BLOB,
        totp_params        TEXT,
        totp_enrolled      INTEGER,
        last_accepted_step INTEGER,
        CHECK ((totp_sealed IS NULL) = (totp_params IS NULL)),
        CHECK ((password_phc IS NULL) = (password_changed IS NULL)),
        CHECK (role = 'technician' OR password_phc IS NOT NULL)
    );
    CREATE TABLE password_history (
        user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        retired  INTEGER NOT NULL,
        phc      TEXT    NOT NULL
    );
    CREATE INDEX password_history_by_user ON password_history (user_id, retired);
    CREATE TABLE auth_lockouts (
        principal TEXT    PRIMARY KEY,
        window    TEXT    NOT NULL,
        throttle  TEXT    NOT NULL,
        locked_at INTEGER
    );
";

/// Inside a change's transaction, just before it commits: records the key-slot change taken by
/// [`Identity::take_slot_commit`], if any, as committed with it.
fn commit_slot_change(
    tx: &rusqlite::Transaction<'_>,
    slot: &Option<(Vec<u8>, String)>,
) -> Result<(), StoreError> {
    if let Some((txid, action)) = slot {
        crate::keys::record_commit(tx, txid, action)?;
    }
    Ok(())
}

/// Wall-clock time in milliseconds since the Unix epoch, passed in by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixMs(pub u64);

impl UnixMs {
    pub fn now() -> Self {
        Self(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    pub fn secs(self) -> u64 {
        self.0 / 1000
    }

    fn timestamp(self) -> warden_core::audit::Timestamp {
        let micros = i64::try_from(self.0.saturating_mul(1000)).unwrap_or(i64::MAX);
        warden_core::audit::Timestamp::from_unix_micros(micros)
            .unwrap_or_else(|_| crate::audit::timestamp_now())
    }
}

/// Everything about identity that is configurable, stored in the database at init. Missing
/// fields take the defaults (seed 002's password rules and Argon2id costs, RFC 6238 SHA1 / 6
/// digits / 30 s / ±1 step, 5 failures in 60 s, 1 s between attempts doubling to 30 s).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityPolicy {
    pub password: PasswordPolicy,
    /// Parameters for new TOTP enrollments. The window is applied at verification to every
    /// user (it is the server's choice, not part of the credential); algorithm, digits and
    /// period stay what each user enrolled with.
    pub totp: TotpParams,
    /// The issuer shown in authenticator apps.
    pub totp_issuer: TotpIssuer,
    pub lockout: LockoutPolicy,
    pub backoff: BackoffPolicy,
}

/// The `issuer` of enrollment URIs: `warden` by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TotpIssuer(pub String);

impl Default for TotpIssuer {
    fn default() -> Self {
        Self("warden".to_owned())
    }
}

impl IdentityPolicy {
    /// Parses a policy document (JSON), naming the offending key on error.
    pub fn from_json(text: &str) -> Result<Self, IdentityError> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|err| IdentityError::PolicyDocument(report(&err)))
    }
}

/// A user name: 1 to 64 characters of `a-z 0-9 . _ - @`, starting with a letter or digit.
/// Names are case-insensitive: they are stored and compared in lower case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    pub const MAX_CHARS: usize = 64;

    /// Names that are actors of their own in the audit trail and can never be a person's.
    pub const RESERVED: [&'static str; 5] = [
        "anonymous",
        "master-passphrase",
        "recovery-key",
        "warden",
        "service",
    ];

    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let lower = text.to_ascii_lowercase();
        if Self::RESERVED.contains(&lower.as_str()) || lower.starts_with("invalid-name-") {
            return Err(IdentityError::ReservedUsername(lower));
        }
        let ok = !lower.is_empty()
            && lower.len() <= Self::MAX_CHARS
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
            && lower.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(Self(lower))
        } else {
            Err(IdentityError::InvalidUsername)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Something that can be locked out: a user, or a shim's technician port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    User(Username),
    /// A shim port, by shim id (1-64 characters of `A-Z a-z 0-9 . _ -`).
    Port(PortId),
}

impl Principal {
    /// The key in `auth_lockouts` and the audit subject: `user:NAME` or `port:SHIM_ID`.
    pub fn key(&self) -> String {
        match self {
            Self::User(name) => format!("user:{name}"),
            Self::Port(port) => format!("port:{}", port.0),
        }
    }
}

/// A shim id, naming the technician port it guards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortId(String);

impl PortId {
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(IdentityError::InvalidPortId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why an identity operation failed (not an authentication refusal: see [`AuthError`]).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("a user name is 1-64 characters of a-z 0-9 . _ - @, starting with a letter or digit")]
    InvalidUsername,
    #[error("{0:?} is reserved: it names an actor of its own in the audit trail")]
    ReservedUsername(String),
    #[error("a shim id is 1-64 characters of A-Z a-z 0-9 . _ -")]
    InvalidPortId,
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no user named {0}")]
    UnknownUser(String),
    #[error(transparent)]
    PolicyViolation(#[from] PolicyViolations),
    #[error("technicians sign in with TOTP only and have no password")]
    TechnicianPassword,
    #[error("a {0} needs a password")]
    PasswordRequired(Role),
    #[error("{0} is the last enabled administrator; add or enable another administrator first")]
    LastAdministrator(String),
    #[error("break-glass recovers administrators only; {0} is not one (an administrator can then manage the others)")]
    BreakGlassNotAdministrator(String),
    #[error("users already exist: the first administrator is created by `warden init` only")]
    AlreadyHasUsers,
    #[error("this database has no identity policy (it was not set up by `warden init`)")]
    NotInitialized,
    #[error("identity policy: {0}")]
    PolicyDocument(String),
    #[error("password hashing failed")]
    Hashing(#[from] PasswordError),
    #[error("cannot build the enrollment URI")]
    KeyUri(#[from] KeyUriError),
    #[error(transparent)]
    WrongAuthorization(#[from] WrongAuthorization),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for IdentityError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(err))
    }
}

/// Why authentication or authorization was refused. The messages are what the person at the
/// CLI sees: a failed login never says whether the name, the password or the code was wrong.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication failed: wrong user name, password or one-time code (or the user is disabled)")]
    Failed,
    #[error("{username} has TOTP enrolled: a one-time code is required")]
    TotpRequired { username: String },
    #[error("{username} is locked after repeated failed sign-ins")]
    LockedOut { username: String },
    #[error("too many attempts: wait {:.1} s before trying again", *retry_after_ms as f64 / 1000.0)]
    RateLimited { retry_after_ms: u64 },
    #[error(
        "access denied: {username} is {role}, and the {role} role does not grant {permission}"
    )]
    Denied {
        username: String,
        role: Role,
        permission: Permission,
    },
    #[error("the password of {username} has expired; change it with `warden user passwd` first")]
    PasswordExpired { username: String },
    #[error("access denied: {permission} needs a sign-in; pass --as USER (or set WARDEN_USER)")]
    NotSignedIn { permission: Permission },
    #[error("access denied: {0}")]
    ServiceDenied(warden_core::rbac::DenyReason),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for AuthError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(err))
    }
}

/// Label of a user's sealed TOTP secret: binds the ciphertext to the user name, so a sealed
/// secret copied into another user's row does not open.
fn totp_label(username: &str) -> Vec<u8> {
    [b"warden totp secret v1\0".as_slice(), username.as_bytes()].concat()
}

const DECOY_LABEL: &[u8] = b"warden totp decoy v1";

/// The identity service: policy, the key TOTP secrets are sealed under, and the audit chain.
pub struct Identity {
    policy: IdentityPolicy,
    secrets_key: Key32,
    audit: AuditLog,
    decoy_phc: String,
    /// A sealed random TOTP secret, opened and checked for unknown users so they take the same
    /// path as known ones.
    decoy_totp: Vec<u8>,
    /// A key-slot change (its transaction id and action) that the next change this service
    /// commits also commits (see `crate::keys`): set just before the change, taken by it.
    slot_commit: Option<(Vec<u8>, String)>,
}

impl Identity {
    /// Writes the policy (and a decoy password hash with its parameters) into a database that
    /// has none yet: part of `warden init`.
    pub fn init(db: &mut Database, policy: &IdentityPolicy) -> Result<(), IdentityError> {
        let decoy = PasswordHash::decoy(policy.password.argon2())?;
        let json = serde_json::to_string(policy)
            .map_err(|err| IdentityError::PolicyDocument(report(&err)))?;
        db.conn().execute(
            "INSERT INTO identity_policy (id, policy, decoy_phc) VALUES (1, ?1, ?2)",
            rusqlite::params![json, decoy.as_phc()],
        )?;
        Ok(())
    }

    /// The service over `db`'s stored policy. `database_key` seals TOTP secrets; `audit_key` is
    /// the `audit` purpose key of the chain.
    pub fn load(
        db: &Database,
        database_key: Key32,
        audit_key: Key32,
    ) -> Result<Self, IdentityError> {
        let (json, decoy_phc): (String, String) = db
            .conn()
            .query_row(
                "SELECT policy, decoy_phc FROM identity_policy WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|err| match err {
                rusqlite::Error::QueryReturnedNoRows => IdentityError::NotInitialized,
                other => other.into(),
            })?;
        let policy = IdentityPolicy::from_json(&json)?;
        Ok(Self::with_policy(
            policy,
            decoy_phc,
            database_key,
            audit_key,
        ))
    }

    fn with_policy(
        policy: IdentityPolicy,
        decoy_phc: String,
        database_key: Key32,
        audit_key: Key32,
    ) -> Self {
        let decoy_secret = warden_core::totp::TotpSecret::generate();
        let decoy_totp =
            warden_core::aead::seal(&database_key, DECOY_LABEL, decoy_secret.expose_secret());
        Self {
            policy,
            secrets_key: database_key,
            // Sign-ins, failures and lockouts go to the SIEM with every other audit event.
            audit: AuditLog::forwarding_to_siem(audit_key),
            decoy_phc,
            decoy_totp,
            slot_commit: None,
        }
    }

    /// Makes the next change committed by this service also commit the key-slot change `txid`
    /// (the two-step changes of `crate::keys`).
    pub(crate) fn set_slot_commit(&mut self, txid: Vec<u8>, action: &str) {
        self.slot_commit = Some((txid, action.to_owned()));
    }

    /// Forgets a key-slot change no change took (the change failed before committing).
    pub(crate) fn clear_slot_commit(&mut self) {
        self.slot_commit = None;
    }

    /// Takes the pending key-slot change for the change about to be made (a change that fails
    /// before committing has consumed it: it did not commit).
    fn take_slot_commit(&mut self) -> Option<(Vec<u8>, String)> {
        self.slot_commit.take()
    }

    /// Re-seals every stored TOTP secret from the `old` database key to `new`, inside the
    /// transaction that re-keys the database (a database key rotation).
    pub(crate) fn reseal_totp_secrets(
        tx: &rusqlite::Transaction<'_>,
        old: &Key32,
        new: &Key32,
    ) -> Result<usize, StoreError> {
        let rows = rows::sealed_totp_secrets(tx)?;
        for (id, username, sealed) in &rows {
            let label = totp_label(username);
            let secret = warden_core::aead::open(old, &label, sealed).map_err(|_| {
                StoreError::Corrupt(format!(
                    "identity: the TOTP secret of {username} does not open with the database key"
                ))
            })?;
            let resealed = warden_core::aead::seal(new, &label, secret.expose_secret());
            rows::replace_totp_sealed(tx, *id, &resealed)?;
        }
        Ok(rows.len())
    }

    /// Opens every stored TOTP secret with the current database key and counts them (a check
    /// after a rotation of the `database` key: each must open).
    pub fn check_totp_secrets(&self, db: &Database) -> Result<usize, StoreError> {
        let rows = rows::sealed_totp_secrets(db.conn())?;
        for (_, username, sealed) in &rows {
            warden_core::aead::open(&self.secrets_key, &totp_label(username), sealed).map_err(
                |_| {
                    StoreError::Corrupt(format!(
                        "identity: the TOTP secret of {username} does not open"
                    ))
                },
            )?;
        }
        Ok(rows.len())
    }

    /// The role of `username`, if there is such a user.
    pub fn role_of(&self, db: &Database, username: &str) -> Result<Option<Role>, StoreError> {
        Ok(rows::load_user(db.conn(), username)?.map(|u| u.role))
    }

    /// Every user name with its role.
    pub fn user_roles(&self, db: &Database) -> Result<Vec<(String, Role)>, StoreError> {
        Ok(rows::all_users(db.conn())?
            .into_iter()
            .map(|u| (u.username, u.role))
            .collect())
    }

    /// Lifts a principal's lockout inside the caller's transaction (the shim's reset, which
    /// commits it with the persisted state and its event). Returns whether it was locked.
    pub(crate) fn clear_lock_in(
        tx: &rusqlite::Transaction<'_>,
        principal: &Principal,
    ) -> Result<bool, StoreError> {
        let key = principal.key();
        let mut record = rows::load_lock(tx, &key)?;
        let was_locked = record.window.locked_at().is_some();
        record.window.reset();
        record.throttle = Default::default();
        rows::save_lock(tx, &key, &record)?;
        Ok(was_locked)
    }

    /// Lifts every shim port's lockout inside the caller's transaction (a reset clears the
    /// box's ports, whatever shim id locked them).
    pub(crate) fn clear_port_locks_in(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        for (principal, _) in rows::locked_principals(tx)? {
            if principal.starts_with("port:") {
                let mut record = rows::load_lock(tx, &principal)?;
                record.window.reset();
                record.throttle = Default::default();
                rows::save_lock(tx, &principal, &record)?;
            }
        }
        Ok(())
    }

    /// Whether any shim port of this box is locked.
    pub fn any_port_locked(&self, db: &Database) -> Result<bool, StoreError> {
        Ok(rows::locked_principals(db.conn())?
            .iter()
            .any(|(principal, _)| principal.starts_with("port:")))
    }

    /// The audit chain this service appends to (and every operation over the same store).
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// The audit chain, to change its purpose key after a rotation.
    pub(crate) fn audit_log_mut(&mut self) -> &mut AuditLog {
        &mut self.audit
    }

    /// Uses `key` to open and seal TOTP secrets from now on (after a rotation of the
    /// `database` key committed).
    pub(crate) fn set_database_key(&mut self, key: Key32) {
        self.decoy_totp = warden_core::aead::seal(
            &key,
            DECOY_LABEL,
            warden_core::totp::TotpSecret::generate().expose_secret(),
        );
        self.secrets_key = key;
    }

    /// Replaces how this process appends to the chain (a daemon whose records go to the SIEM
    /// only when it has a `siem:` section, like `ota serve` and its dashboard).
    pub fn set_audit_log(&mut self, audit: AuditLog) {
        self.audit = audit;
    }

    pub fn policy(&self) -> &IdentityPolicy {
        &self.policy
    }

    /// Replaces the lockout and backoff policy for this process (the shim applies its own
    /// configuration's values this way); nothing is stored.
    pub fn set_lockout_policy(&mut self, lockout: LockoutPolicy, backoff: BackoffPolicy) {
        self.policy.lockout = lockout;
        self.policy.backoff = backoff;
    }

    /// Replaces the TOTP verification window for this process (the shim's `totp.window`).
    pub fn set_totp_window(&mut self, window: warden_core::totp::Window) {
        self.policy.totp.window = window;
    }
}

/// The lockout key (`user:NAME`) of a name typed at a sign-in, as the trail records it (a name
/// that is not a valid user name becomes `user:invalid-name-<hash>`).
pub fn claimed_user_key(raw: &str) -> String {
    format!("user:{}", claimed_name(raw).1)
}

/// The lockout key and audit actor for a name typed by someone: the name itself when it is a
/// valid user name, else a stand-in that cannot hold control characters or be mistaken for one.
fn claimed_name(raw: &str) -> (Option<Username>, String) {
    match Username::parse(raw) {
        Ok(name) => {
            let shown = name.as_str().to_owned();
            (Some(name), shown)
        }
        Err(_) => {
            let digest = warden_core::mac::sha256(raw.as_bytes());
            (None, format!("invalid-name-{}", hex::encode(&digest[..8])))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked_and_lowercased() {
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "alice");
        assert_eq!(
            Username::parse("tech.bob-2@site_a").unwrap().as_str(),
            "tech.bob-2@site_a"
        );
        for bad in ["", "-x", ".x", "a b", "a:b", "é", "a\nb", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        let (name, shown) = claimed_name("bad\u{1b}[31mname");
        assert!(name.is_none());
        assert!(shown.starts_with("invalid-name-"), "{shown}");
    }

    #[test]
    fn principals_have_prefixed_keys() {
        let user = Principal::User(Username::parse("alice").unwrap());
        assert_eq!(user.key(), "user:alice");
        let port = Principal::Port(PortId::parse("shim-01").unwrap());
        assert_eq!(port.key(), "port:shim-01");
        assert!(PortId::parse("a/b").is_err());
    }

    #[test]
    fn policy_documents_name_the_bad_key() {
        let policy = IdentityPolicy::from_json("{}").unwrap();
        assert_eq!(policy, IdentityPolicy::default());
        let err = IdentityPolicy::from_json(r#"{"lockout":{"max_failures":0}}"#).unwrap_err();
        assert!(err.to_string().contains("lockout"), "{err}");
        let err = IdentityPolicy::from_json(r#"{"pasword":{}}"#).unwrap_err();
        assert!(err.to_string().contains("pasword"), "{err}");
        let custom =
            IdentityPolicy::from_json(r#"{"password":{"min_chars":20},"totp_issuer":"ACME"}"#)
                .unwrap();
        assert_eq!(custom.password.fields().min_chars, 20);
        assert_eq!(custom.totp_issuer.0, "ACME");
    }
}
