//! Authentication (the shim's TOTP challenge, the CLI's password plus TOTP) and authorization
//! (a permission check that records its denials).

use serde_json::json;
use warden_core::audit::{NewEvent, Outcome};
use warden_core::lockout::{LockoutState, Throttle};
use warden_core::password::{Password, PasswordExpiry, PasswordHash};
use warden_core::rbac::{authorize, authorize_service, Decision, Permission, Role, ServiceKind};
use warden_core::report::Report;
use warden_core::secret::SecretBytes;
use warden_core::totp::{TotpParams, TotpSecret, TotpVerdict};

use super::rows::{self, LockRecord, UserRow};
use super::{claimed_name, totp_label, AuthError, Identity, PortId, UnixMs, DECOY_LABEL};
use crate::db::{Database, StoreError};

/// The answer to a technician at a shim port. Maps one to one onto the shim state machine's
/// `AuthDecision`.
#[must_use = "an authentication outcome decides whether a session opens"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The code is right, fresh (later than the last accepted step) and the user may use the
    /// shim. `step` is now the user's last accepted step.
    Accepted { username: String, step: u64 },
    /// Refused, for whatever reason (unknown or disabled user, wrong role, wrong or replayed
    /// code, user locked, too soon after the last attempt); the technician is not told which.
    /// The next attempt is allowed after `retry_after_ms`.
    Rejected { retry_after_ms: u64 },
    /// The port is locked (by this failure or before); only an administrator lifts it.
    LockedOut,
}

/// A person who proved who they are at the CLI. Only [`Identity::authenticate_operator`] makes
/// one.
#[derive(Clone, Debug)]
pub struct AuthenticatedUser {
    username: String,
    role: Role,
    password_expired: bool,
    totp_step: Option<u64>,
}

impl AuthenticatedUser {
    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// True when the password is past its maximum age: every permission is refused until it
    /// is changed (`warden user passwd` on oneself still works).
    pub fn password_expired(&self) -> bool {
        self.password_expired
    }

    /// The TOTP time step accepted in this sign-in, when the user has TOTP enrolled.
    pub fn totp_step(&self) -> Option<u64> {
        self.totp_step
    }
}

/// Where a person signs in; the audit action of the attempt says it (`login.cli`,
/// `login.dashboard`). The checks are the same everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInChannel {
    /// A command of the `warden` binary.
    Cli,
    /// The OTA server's operator dashboard.
    Dashboard,
}

impl SignInChannel {
    pub fn action(self) -> &'static str {
        match self {
            Self::Cli => "login.cli",
            Self::Dashboard => "login.dashboard",
        }
    }
}

/// A daemon acting as its own principal: the shim guarding one port, or the OTA server. It
/// holds the keys it was started with, and its audit events name it (`service:shim:ID`,
/// `service:ota`) — never a person, never a name from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    Shim(PortId),
    Ota,
}

impl Service {
    pub fn kind(&self) -> ServiceKind {
        match self {
            Self::Shim(_) => ServiceKind::ShimDaemon,
            Self::Ota => ServiceKind::OtaServer,
        }
    }

    /// The actor name in audit events. A colon cannot occur in a user name, so a service can
    /// never be mistaken for a person.
    pub fn name(&self) -> String {
        match self {
            Self::Shim(port) => format!("service:shim:{}", port.as_str()),
            Self::Ota => OTA_SERVICE.to_owned(),
        }
    }
}

/// The OTA server's service principal name.
pub const OTA_SERVICE: &str = "service:ota";

/// Who acts: a person who signed in, or a daemon's service principal.
#[derive(Clone, Debug)]
pub enum Actor {
    User(AuthenticatedUser),
    Service(Service),
}

/// The actor name of `warden init` and of the documented break-glass path: the holder of the
/// master passphrase, who signs in as nobody.
pub const MASTER_PASSPHRASE_ACTOR: &str = "master-passphrase";

/// The actor name of break-glass and key-slot acts done with the recovery key.
pub const RECOVERY_KEY_ACTOR: &str = "recovery-key";

/// Proof that a person's own key slot opened with the password they gave: made only by
/// `crate::keys` after unlocking the slot found for that user name. The slot then is the
/// password check (no second Argon2id over the stored hash).
pub struct SlotProof {
    username: String,
}

impl SlotProof {
    pub(crate) fn new(username: &str) -> Self {
        Self {
            username: username.to_ascii_lowercase(),
        }
    }
}

/// How a sign-in's password is checked.
pub enum PasswordProof<'a> {
    /// Against the stored Argon2id hash (the store was opened with another slot's keys: the
    /// master passphrase, a directory not yet converted).
    Hash(&'a Password),
    /// By the user's own key slot, which only this password opens.
    Slot {
        password: &'a Password,
        proof: &'a SlotProof,
    },
}

impl PasswordProof<'_> {
    fn password(&self) -> &Password {
        match self {
            Self::Hash(password) | Self::Slot { password, .. } => password,
        }
    }
}

/// The actor name of a refused command run without `--as`.
pub const ANONYMOUS_ACTOR: &str = "anonymous";

/// An actor allowed one permission. Only [`Identity::require`] (a signed-in user) and
/// [`Identity::service`] (a daemon) make one; every privileged operation takes it as proof
/// that the check was done and as the actor of its audit events.
#[must_use = "an authorization is proof of a check; pass it to the operation it allows"]
#[derive(Clone, Debug)]
pub struct Authorized {
    actor: Actor,
    name: String,
    permission: Permission,
}

/// An operation was handed an authorization for another permission (a programming error,
/// refused all the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this operation needs the {needed} permission, but the authorization is for {given}")]
pub struct WrongAuthorization {
    pub needed: Permission,
    pub given: Permission,
}

impl Authorized {
    fn new(actor: Actor, permission: Permission) -> Self {
        let name = match &actor {
            Actor::User(user) => user.username.clone(),
            Actor::Service(service) => service.name(),
        };
        Self {
            actor,
            name,
            permission,
        }
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The actor's name as audit events record it: the user name, or `service:…`.
    pub fn actor_name(&self) -> &str {
        &self.name
    }

    /// The signed-in user, when the actor is a person.
    pub fn user(&self) -> Option<&AuthenticatedUser> {
        match &self.actor {
            Actor::User(user) => Some(user),
            Actor::Service(_) => None,
        }
    }

    pub fn permission(&self) -> Permission {
        self.permission
    }

    /// An audit event for now whose actor is this authorization's actor: the only way an
    /// operation names who did it.
    /// The subject is made fit for the trail (control characters escaped, shortened from the
    /// front when too long), so an odd file name cannot keep an act off the record.
    pub fn event(&self, action: &str, subject: impl Into<String>, outcome: Outcome) -> NewEvent {
        NewEvent::new(
            crate::audit::timestamp_now(),
            &self.name,
            action,
            warden_core::audit::field_text(&subject.into()),
            outcome,
        )
    }

    /// `Ok` when this authorization is for `needed`; every privileged operation starts here.
    pub fn check(&self, needed: Permission) -> Result<(), WrongAuthorization> {
        if self.permission == needed {
            Ok(())
        } else {
            Err(WrongAuthorization {
                needed,
                given: self.permission,
            })
        }
    }
}

/// Why a sign-in failed, as the audit trail records it (never shown to the person).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    UnknownUser,
    Disabled,
    /// The role does not grant a shim session, or the user has no password (CLI).
    NotAllowed,
    NotEnrolled,
    BadPassword,
    Invalid,
    Replay,
    UserLocked,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::Disabled => "disabled",
            Self::NotAllowed => "role_not_allowed",
            Self::NotEnrolled => "totp_not_enrolled",
            Self::BadPassword => "bad_password",
            Self::Invalid => "totp_invalid",
            Self::Replay => "totp_replay",
            Self::UserLocked => "user_locked",
        }
    }
}

fn verdict_name(verdict: TotpVerdict) -> &'static str {
    match verdict {
        TotpVerdict::Accepted { .. } => "valid",
        TotpVerdict::Replay { .. } => "replay",
        TotpVerdict::Invalid => "invalid",
    }
}

fn wait_ms(throttle: Throttle) -> u64 {
    match throttle {
        Throttle::Proceed => 0,
        Throttle::Wait { wait_ms } => wait_ms,
    }
}

impl Identity {
    fn event(
        &self,
        now: UnixMs,
        actor: &str,
        action: &str,
        subject: &str,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> NewEvent {
        NewEvent::new(now.timestamp(), actor, action, subject, outcome).with_details(details)
    }

    /// Records a failed attempt for a principal; returns the lock event if this failure locked
    /// it. Its actor is `anonymous`: nobody proved who they were (the name tried is the
    /// subject).
    fn count_failure(
        &self,
        record: &mut LockRecord,
        principal: &str,
        now: UnixMs,
    ) -> Option<NewEvent> {
        let was_locked = record.window.locked_at().is_some();
        let state = record
            .window
            .record_failure(&self.policy.lockout, now.secs());
        record.throttle.record_failure(now.0);
        match state {
            LockoutState::Locked { since } if !was_locked => Some(self.event(
                now,
                ANONYMOUS_ACTOR,
                "lockout.lock",
                principal,
                Outcome::Success,
                json!({
                    "max_failures": self.policy.lockout.max_failures(),
                    "window_secs": self.policy.lockout.window_secs(),
                    "locked_at": since,
                }),
            )),
            _ => None,
        }
    }

    fn count_success(record: &mut LockRecord, now: UnixMs) {
        record.window.record_success();
        record.throttle.record_success(now.0);
    }

    /// Opens a user's TOTP secret, or the decoy for anyone who has none (same work either way).
    fn totp_secret(&self, user: Option<&UserRow>) -> Result<(TotpSecret, bool), StoreError> {
        let (sealed, label, real) = match user.and_then(|u| u.totp.as_ref().map(|t| (u, t))) {
            Some((user, totp)) => (&totp.sealed, totp_label(&user.username), true),
            None => (&self.decoy_totp, DECOY_LABEL.to_vec(), false),
        };
        let bytes = warden_core::aead::open(&self.secrets_key, &label, sealed).map_err(|_| {
            StoreError::Corrupt(
                "identity: a stored TOTP secret does not open (moved to another user, or sealed \
                 under another key)"
                    .into(),
            )
        })?;
        let secret = TotpSecret::from_bytes(SecretBytes::new(bytes.expose_secret().to_vec()))
            .map_err(|err| {
                StoreError::Corrupt(format!(
                    "identity: stored TOTP secret: {}",
                    warden_core::report::report(&err)
                ))
            })?;
        Ok((secret, real))
    }

    /// The parameters to verify a user's code with: the user's algorithm, digits and period,
    /// and the policy's window.
    fn verify_params(&self, user: Option<&UserRow>) -> TotpParams {
        let mut params = user
            .and_then(|u| u.totp.as_ref().map(|t| t.params))
            .unwrap_or(self.policy.totp);
        params.window = self.policy.totp.window;
        params
    }

    // Implements: S1, S2, S4, S26, S37
    /// A technician at shim port `port` typed `username` and `code`. Checks, in one
    /// transaction: port and user lockouts, attempt spacing for both, the user (exists, enabled,
    /// a role that grants `shim.session`, TOTP enrolled), the code (constant time, the whole
    /// window) and its freshness (later than the last accepted step: compare-and-set). Every
    /// attempt is counted and audited (`login.totp`, subject `port:ID`, reason in the details;
    /// replays as `totp_replay`); the fifth failure in the window locks the user and the port
    /// (`lockout.lock`).
    pub fn authenticate_technician(
        &mut self,
        db: &mut Database,
        username: &str,
        code: &[u8],
        now: UnixMs,
        port: &PortId,
    ) -> Result<AuthOutcome, StoreError> {
        let (name, actor) = claimed_name(username);
        let user_key = format!("user:{actor}");
        let port_key = format!("port:{}", port.as_str());
        let tx = self.audit.begin(db)?;
        let mut user_lock = rows::load_lock(&tx, &user_key)?;
        let mut port_lock = rows::load_lock(&tx, &port_key)?;
        let policy = self.policy.lockout;
        let failure = |reason: &str, extra: serde_json::Value| {
            let mut details = json!({ "reason": reason, "user": user_key });
            if let (Some(map), serde_json::Value::Object(extra)) = (details.as_object_mut(), extra)
            {
                map.extend(extra);
            }
            details
        };

        if port_lock.window.state(&policy, now.secs()).is_locked() {
            let event = self.event(
                now,
                ANONYMOUS_ACTOR,
                "login.totp",
                &port_key,
                Outcome::Failure,
                failure("port_locked", json!({})),
            );
            tx.audit_one(event)?;
            tx.commit()?;
            return Ok(AuthOutcome::LockedOut);
        }
        let backoff = self.policy.backoff;
        let wait = wait_ms(user_lock.throttle.check(&backoff, now.0))
            .max(wait_ms(port_lock.throttle.check(&backoff, now.0)));
        if wait > 0 {
            let event = self.event(
                now,
                ANONYMOUS_ACTOR,
                "login.totp",
                &port_key,
                Outcome::Failure,
                failure("throttled", json!({ "retry_after_ms": wait })),
            );
            tx.audit_one(event)?;
            tx.commit()?;
            return Ok(AuthOutcome::Rejected {
                retry_after_ms: wait,
            });
        }

        let user = match &name {
            Some(name) => rows::load_user(&tx, name.as_str())?,
            None => None,
        };
        let user_locked = user_lock.window.state(&policy, now.secs()).is_locked();
        let (secret, real) = self.totp_secret(user.as_ref())?;
        let params = self.verify_params(user.as_ref());
        let last = user.as_ref().and_then(|u| u.last_accepted_step);
        // Always verified, whoever it is, so the time taken does not depend on the name.
        let verdict = params.verify(&secret, code, now.secs(), last);
        drop(secret);

        let refusal = match &user {
            None => Some(Reason::UnknownUser),
            Some(u) if u.disabled => Some(Reason::Disabled),
            Some(u) if !authorize(u.role, Permission::ShimSessionAccess).is_allowed() => {
                Some(Reason::NotAllowed)
            }
            Some(_) if !real => Some(Reason::NotEnrolled),
            Some(_) if user_locked => Some(Reason::UserLocked),
            Some(_) => match verdict {
                TotpVerdict::Accepted { .. } => None,
                TotpVerdict::Replay { .. } => Some(Reason::Replay),
                TotpVerdict::Invalid => Some(Reason::Invalid),
            },
        };

        if let (None, Some(user), TotpVerdict::Accepted { step }) = (refusal, &user, verdict) {
            if rows::advance_step(&tx, user.id, step)? {
                Self::count_success(&mut user_lock, now);
                Self::count_success(&mut port_lock, now);
                rows::save_lock(&tx, &user_key, &user_lock)?;
                rows::save_lock(&tx, &port_key, &port_lock)?;
                let event = self.event(
                    now,
                    &user.username,
                    "login.totp",
                    &port_key,
                    Outcome::Success,
                    json!({ "step": step, "user": user_key }),
                );
                tx.audit_one(event)?;
                tx.commit()?;
                return Ok(AuthOutcome::Accepted {
                    username: user.username.clone(),
                    step,
                });
            }
        }
        // A compare-and-set that lost is a replay too.
        let reason = refusal.unwrap_or(Reason::Replay);
        let mut extra = json!({});
        if let TotpVerdict::Accepted { step } | TotpVerdict::Replay { step } = verdict {
            if real && matches!(reason, Reason::Replay) {
                extra = json!({ "step": step, "last_accepted_step": last });
            }
        }
        if reason == Reason::UserLocked {
            extra = json!({ "code": verdict_name(verdict) });
        }
        let mut events = vec![self.event(
            now,
            ANONYMOUS_ACTOR,
            "login.totp",
            &port_key,
            Outcome::Failure,
            failure(reason.as_str(), extra),
        )];
        events.extend(self.count_failure(&mut user_lock, &user_key, now));
        events.extend(self.count_failure(&mut port_lock, &port_key, now));
        rows::save_lock(&tx, &user_key, &user_lock)?;
        rows::save_lock(&tx, &port_key, &port_lock)?;
        let port_locked = port_lock.window.locked_at().is_some();
        let retry_after_ms = wait_ms(user_lock.throttle.check(&backoff, now.0))
            .max(wait_ms(port_lock.throttle.check(&backoff, now.0)));
        tx.audit(events)?;
        tx.commit()?;
        if port_locked {
            Ok(AuthOutcome::LockedOut)
        } else {
            Ok(AuthOutcome::Rejected { retry_after_ms })
        }
    }

    // Implements: V28, V34, V36
    /// A person at the CLI: user name, password, and the one-time code when the user has TOTP
    /// enrolled. The password is checked against the user's Argon2id hash, or against the decoy
    /// hash when there is no such user (or no password), so every attempt costs the same.
    ///
    /// Refusals are counted against `user:NAME` (the fifth in the window locks it, until an
    /// administrator unlocks it) and spaced out by the backoff policy; each attempt is audited
    /// as `login.cli` with the reason. A correct password without the needed code answers
    /// [`AuthError::TotpRequired`] without counting or auditing, so the caller can ask for the
    /// code and call again.
    pub fn authenticate_operator(
        &mut self,
        db: &mut Database,
        username: &str,
        password: &Password,
        totp_code: Option<&str>,
        now: UnixMs,
    ) -> Result<AuthenticatedUser, AuthError> {
        self.authenticate_operator_at(db, SignInChannel::Cli, username, password, totp_code, now)
    }

    /// [`Identity::authenticate_operator`] at another place than the command line: the same
    /// checks, lockout counting and spacing; the audit action names the place
    /// ([`SignInChannel::action`]).
    pub fn authenticate_operator_at(
        &mut self,
        db: &mut Database,
        channel: SignInChannel,
        username: &str,
        password: &Password,
        totp_code: Option<&str>,
        now: UnixMs,
    ) -> Result<AuthenticatedUser, AuthError> {
        self.authenticate_operator_with(
            db,
            channel,
            username,
            PasswordProof::Hash(password),
            totp_code,
            now,
        )
    }

    /// [`Identity::authenticate_operator_at`] with the password checked as `proof` says: by the
    /// stored hash, or already by the user's own key slot.
    pub fn authenticate_operator_with(
        &mut self,
        db: &mut Database,
        channel: SignInChannel,
        username: &str,
        proof: PasswordProof<'_>,
        totp_code: Option<&str>,
        now: UnixMs,
    ) -> Result<AuthenticatedUser, AuthError> {
        let login = channel.action();
        let password = proof.password();
        let slot_proven = match &proof {
            PasswordProof::Slot { proof, .. } => proof.username == username.to_ascii_lowercase(),
            PasswordProof::Hash(_) => false,
        };
        let (name, actor) = claimed_name(username);
        let user_key = format!("user:{actor}");
        let policy = self.policy.lockout;

        // Locked or too soon: refused before any expensive work.
        {
            let tx = self.audit.begin(db)?;
            let lock = rows::load_lock(&tx, &user_key)?;
            if let Some(refusal) = self.precheck(&lock, now) {
                let (reason, err) = match refusal {
                    Precheck::Locked => (
                        "user_locked",
                        AuthError::LockedOut {
                            username: actor.clone(),
                        },
                    ),
                    Precheck::Wait(retry_after_ms) => {
                        ("throttled", AuthError::RateLimited { retry_after_ms })
                    }
                };
                let event = self.event(
                    now,
                    ANONYMOUS_ACTOR,
                    login,
                    &user_key,
                    Outcome::Failure,
                    json!({ "reason": reason }),
                );
                tx.audit_one(event)?;
                tx.commit()?;
                return Err(err);
            }
        }

        // The password, outside any transaction: Argon2id takes a while, and the shim must not
        // wait for it.
        let user = match &name {
            Some(name) => rows::load_user(db.conn(), name.as_str())?,
            None => None,
        };
        // An enrolled user without a code is asked for it before the password is looked at, so
        // this answer says nothing about the password (it is not an uncounted guessing oracle).
        if user.as_ref().is_some_and(|u| u.totp.is_some()) && totp_code.is_none() {
            return Err(AuthError::TotpRequired {
                username: actor.clone(),
            });
        }
        let stored = user.as_ref().and_then(|u| u.password_phc.as_deref());
        let hash = match stored.map(PasswordHash::parse) {
            Some(Ok(hash)) => Some(hash),
            Some(Err(err)) => {
                tracing::error!(user = %actor, error = %Report(&err), "stored password hash is unusable");
                None
            }
            None => None,
        };
        let check_against = match &hash {
            Some(hash) => hash.clone(),
            None => PasswordHash::parse(&self.decoy_phc).map_err(|err| {
                StoreError::Corrupt(format!("identity: stored decoy hash: {err}"))
            })?,
        };
        // A slot opened with this password proves it; otherwise one Argon2id over the hash
        // (the decoy's when there is none, so the time does not tell).
        let password_ok =
            hash.is_some() && (slot_proven || check_against.verify(password).is_match());
        let usable = user.as_ref().is_some_and(|u| !u.disabled);
        let rehash = match &hash {
            Some(hash) if password_ok && usable && self.policy.password.needs_rehash(hash) => {
                Some(self.policy.password.hash(password).map_err(|err| {
                    StoreError::Corrupt(format!("identity: rehashing a password: {err}"))
                })?)
            }
            _ => None,
        };

        let tx = self.audit.begin(db)?;
        let mut lock = rows::load_lock(&tx, &user_key)?;
        // Re-read: a lock, a disable or an accepted code may have landed meanwhile.
        let user = match &name {
            Some(name) => rows::load_user(&tx, name.as_str())?,
            None => None,
        };
        let locked = lock.window.state(&policy, now.secs()).is_locked();
        let mut totp_step = None;
        let mut verdict = None;
        // Technicians have no password: they sign in with the one-time code alone (their one
        // factor) and an empty password, and get only what their role grants (calibration).
        let code_only = |u: &UserRow| u.role == Role::Technician && u.password_phc.is_none();
        let refusal = match &user {
            None => Some(Reason::UnknownUser),
            Some(u) if u.disabled => Some(Reason::Disabled),
            Some(u) if code_only(u) && u.totp.is_none() => Some(Reason::NotEnrolled),
            Some(u) if code_only(u) && !password.expose_secret().is_empty() => {
                Some(Reason::BadPassword)
            }
            Some(u) if u.password_phc.is_none() && !code_only(u) => Some(Reason::NotAllowed),
            Some(u) if !password_ok && !code_only(u) => Some(Reason::BadPassword),
            Some(_) if locked => Some(Reason::UserLocked),
            Some(u) if u.totp.is_some() => {
                let (secret, _) = self.totp_secret(Some(u))?;
                let params = self.verify_params(Some(u));
                let v = params.verify(
                    &secret,
                    totp_code.unwrap_or_default().trim(),
                    now.secs(),
                    u.last_accepted_step,
                );
                verdict = Some(v);
                match v {
                    TotpVerdict::Accepted { step } => {
                        if rows::advance_step(&tx, u.id, step)? {
                            totp_step = Some(step);
                            None
                        } else {
                            Some(Reason::Replay)
                        }
                    }
                    TotpVerdict::Replay { .. } => Some(Reason::Replay),
                    TotpVerdict::Invalid => Some(Reason::Invalid),
                }
            }
            Some(_) => None,
        };

        match (refusal, user) {
            (None, Some(user)) => {
                Self::count_success(&mut lock, now);
                rows::save_lock(&tx, &user_key, &lock)?;
                if let Some(new_hash) = &rehash {
                    rows::rehash_password(&tx, user.id, new_hash.as_phc())?;
                }
                let expired = match user.password_changed {
                    Some(changed) => matches!(
                        self.policy.password.expiry(changed, now.secs()),
                        PasswordExpiry::Expired { .. }
                    ),
                    None => false,
                };
                let mut factors = if code_only(&user) {
                    vec![]
                } else {
                    vec!["password"]
                };
                if totp_step.is_some() {
                    factors.push("totp");
                }
                let mut details = json!({ "factors": factors, "password_expired": expired });
                if let (Some(map), Some(step)) = (details.as_object_mut(), totp_step) {
                    map.insert("step".into(), json!(step));
                }
                if let (Some(map), true) = (details.as_object_mut(), rehash.is_some()) {
                    map.insert("rehashed".into(), json!(true));
                }
                let event = self.event(
                    now,
                    &user.username,
                    login,
                    &user_key,
                    Outcome::Success,
                    details,
                );
                tx.audit_one(event)?;
                tx.commit()?;
                Ok(AuthenticatedUser {
                    username: user.username,
                    role: user.role,
                    password_expired: expired,
                    totp_step,
                })
            }
            (refusal, _) => {
                let reason = refusal.unwrap_or(Reason::UnknownUser);
                let mut details = json!({ "reason": reason.as_str() });
                if let (Some(map), Some(TotpVerdict::Replay { step })) =
                    (details.as_object_mut(), verdict)
                {
                    map.insert("step".into(), json!(step));
                }
                let mut events = vec![self.event(
                    now,
                    ANONYMOUS_ACTOR,
                    login,
                    &user_key,
                    Outcome::Failure,
                    details,
                )];
                events.extend(self.count_failure(&mut lock, &user_key, now));
                rows::save_lock(&tx, &user_key, &lock)?;
                let now_locked = lock.window.locked_at().is_some();
                tx.audit(events)?;
                tx.commit()?;
                if now_locked {
                    Err(AuthError::LockedOut { username: actor })
                } else {
                    Err(AuthError::Failed)
                }
            }
        }
    }

    /// Appends refusals that were recorded without keys (`crate::keys::journal`), each once,
    /// actor `anonymous`, marked `recorded_late` with the time they happened; failed sign-ins
    /// count toward their user's lockout at that time (and may lock it).
    pub(crate) fn record_unrecorded(
        &mut self,
        db: &mut Database,
        entries: &[crate::keys::journal::Unrecorded],
        now: UnixMs,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let tx = self.audit.begin(db)?;
        let mut events = Vec::new();
        for entry in entries {
            let fresh = tx.execute(
                "INSERT OR IGNORE INTO unrecorded_ingested (id) VALUES (?1)",
                rusqlite::params![entry.id],
            )? == 1;
            if !fresh {
                continue;
            }
            let outcome = entry.outcome.parse().unwrap_or(Outcome::Failure);
            let mut details = serde_json::Value::Object(entry.details.clone());
            details["recorded_late"] = json!(true);
            details["attempted_at_ms"] = json!(entry.at_ms);
            events.push(self.event(
                now,
                ANONYMOUS_ACTOR,
                &entry.action,
                &entry.subject,
                outcome,
                details,
            ));
            if let Some(key) = &entry.count {
                let mut lock = rows::load_lock(&tx, key)?;
                events.extend(self.count_failure(&mut lock, key, UnixMs(entry.at_ms)));
                rows::save_lock(&tx, key, &lock)?;
            }
        }
        tx.audit(events)?;
        tx.commit()?;
        Ok(())
    }

    fn precheck(&self, lock: &LockRecord, now: UnixMs) -> Option<Precheck> {
        if lock
            .window
            .state(&self.policy.lockout, now.secs())
            .is_locked()
        {
            return Some(Precheck::Locked);
        }
        match lock.throttle.check(&self.policy.backoff, now.0) {
            Throttle::Proceed => None,
            Throttle::Wait { wait_ms } => Some(Precheck::Wait(wait_ms)),
        }
    }

    // Implements: V42
    /// Allows `user` one `permission` for `action` (the command, e.g. `user.add`), or records
    /// the denial (`action`, outcome `denied`, with the permission and role) and refuses. An
    /// expired password is refused for every permission.
    pub fn require(
        &mut self,
        db: &mut Database,
        user: &AuthenticatedUser,
        permission: Permission,
        action: &str,
        now: UnixMs,
    ) -> Result<Authorized, AuthError> {
        let reason = if user.password_expired {
            "password_expired"
        } else if authorize(user.role, permission).is_allowed() {
            return Ok(Authorized::new(Actor::User(user.clone()), permission));
        } else {
            "not_granted"
        };
        self.record_denial(
            db,
            &user.username,
            permission,
            action,
            now,
            json!({ "role": user.role.name(), "reason": reason }),
        )?;
        Err(if user.password_expired {
            AuthError::PasswordExpired {
                username: user.username.clone(),
            }
        } else {
            AuthError::Denied {
                username: user.username.clone(),
                role: user.role,
                permission,
            }
        })
    }

    /// Whether a person who signed in earlier (a dashboard session) may still act: their row
    /// is read again, so a user disabled, removed or locked since is refused (as a failed
    /// sign-in, without counting), and a changed role takes effect at once.
    pub fn recheck(
        &self,
        db: &Database,
        user: &AuthenticatedUser,
        now: UnixMs,
    ) -> Result<AuthenticatedUser, AuthError> {
        let Some(row) = rows::load_user(db.conn(), &user.username)? else {
            return Err(AuthError::Failed);
        };
        if row.disabled || row.password_phc.is_none() {
            return Err(AuthError::Failed);
        }
        let lock = rows::load_lock(db.conn(), &format!("user:{}", user.username))?;
        if lock
            .window
            .state(&self.policy.lockout, now.secs())
            .is_locked()
        {
            return Err(AuthError::LockedOut {
                username: user.username.clone(),
            });
        }
        Ok(AuthenticatedUser {
            role: row.role,
            ..user.clone()
        })
    }

    /// Authorizes a daemon's own act (`service` carries its grants, see
    /// [`warden_core::rbac::ServiceKind`]). A refusal is audited like a person's.
    pub fn service(
        &mut self,
        db: &mut Database,
        service: &Service,
        permission: Permission,
        action: &str,
        now: UnixMs,
    ) -> Result<Authorized, AuthError> {
        match authorize_service(service.kind(), permission) {
            Decision::Allow => Ok(Authorized::new(Actor::Service(service.clone()), permission)),
            Decision::Deny { reason } => {
                self.record_denial(
                    db,
                    &service.name(),
                    permission,
                    action,
                    now,
                    json!({ "service": service.kind().name(), "reason": "not_granted" }),
                )?;
                Err(AuthError::ServiceDenied(reason))
            }
        }
    }

    /// A privileged command run without naming who runs it: refused and audited
    /// (`ACTION.denied`, actor `anonymous`).
    pub fn refuse_anonymous(
        &mut self,
        db: &mut Database,
        permission: Permission,
        action: &str,
        now: UnixMs,
    ) -> Result<AuthError, StoreError> {
        self.record_denial(
            db,
            ANONYMOUS_ACTOR,
            permission,
            action,
            now,
            json!({ "reason": "not_signed_in" }),
        )?;
        Ok(AuthError::NotSignedIn { permission })
    }

    /// `ACTION.denied` by `actor`, subject `permission:NAME`, with the permission in the details.
    fn record_denial(
        &mut self,
        db: &mut Database,
        actor: &str,
        permission: Permission,
        action: &str,
        now: UnixMs,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut details = details;
        if let Some(map) = details.as_object_mut() {
            map.insert("permission".into(), json!(permission.name()));
        }
        let event = self.event(
            now,
            actor,
            &format!("{action}.denied"),
            &format!("permission:{permission}"),
            Outcome::Denied,
            details,
        );
        self.audit.append(db, vec![event])?;
        Ok(())
    }
}

enum Precheck {
    Locked,
    Wait(u64),
}
