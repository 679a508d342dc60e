//! Managing users: the first administrator at init, adding users, enabling and disabling,
//! passwords, TOTP enrollment, lifting lockouts; and reading users for `user list` / `show`.
//! Every change commits together with its audit event.

use serde::Serialize;
use serde_json::json;
use warden_core::audit::{NewEvent, Outcome};
use warden_core::password::{Password, PasswordExpiry, PasswordHash};
use warden_core::rbac::{Permission, Role};
use warden_core::totp::{KeyUri, TotpParams, TotpSecret};

use super::auth::{AuthenticatedUser, Authorized};
use super::rows::{self, NewUserRow, UserRow};
use super::{totp_label, Identity, IdentityError, IdentityPolicy, Principal, UnixMs, Username};
use crate::db::Database;

/// Proof that the master passphrase was presented (it opened a purpose key of the data
/// directory). Only the documented break-glass path takes it: the master passphrase alone
/// performs no other privileged act but `init`.
pub struct BreakGlass {
    actor: &'static str,
}

impl BreakGlass {
    /// The master passphrase or the recovery key opened its slot (`unlocked`).
    pub fn present(unlocked: &warden_core::keyslots::Unlocked) -> Option<Self> {
        match unlocked.owner {
            warden_core::keyslots::Owner::Master => Some(Self {
                actor: super::MASTER_PASSPHRASE_ACTOR,
            }),
            warden_core::keyslots::Owner::Recovery => Some(Self {
                actor: super::RECOVERY_KEY_ACTOR,
            }),
            _ => None,
        }
    }

    /// The master passphrase of a format-1 directory derived its keys.
    pub fn derived() -> Self {
        Self {
            actor: super::MASTER_PASSPHRASE_ACTOR,
        }
    }

    /// The actor of the events: `master-passphrase` or `recovery-key`.
    pub fn actor(&self) -> &'static str {
        self.actor
    }
}

/// A user to add.
pub struct NewUser<'a> {
    pub username: &'a Username,
    pub role: Role,
    /// Required for every role but technicians, who have none.
    pub password: Option<&'a Password>,
    /// Enroll TOTP now with these parameters (technicians always are, with the policy's
    /// parameters when `None`).
    pub totp: Option<TotpParams>,
}

/// A user as `warden user list` and `user show` present it. No secret and no hash.
#[derive(Clone, Debug, Serialize)]
pub struct UserInfo {
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created: u64,
    pub created_by: String,
    pub has_password: bool,
    pub password_changed: Option<u64>,
    /// When the password expires (or expired); `None` when it never does or there is none.
    pub password_expires: Option<u64>,
    pub password_expired: bool,
    pub totp: Option<TotpInfo>,
    pub lock: LockInfo,
}

#[derive(Clone, Debug, Serialize)]
pub struct TotpInfo {
    pub algorithm: String,
    pub digits: usize,
    pub period_secs: u32,
    pub enrolled: Option<u64>,
    pub last_accepted_step: Option<u64>,
}

/// A principal's lockout state.
#[derive(Clone, Debug, Serialize)]
pub struct LockInfo {
    pub principal: String,
    pub locked: bool,
    pub locked_at: Option<u64>,
    pub recent_failures: u32,
}

impl Identity {
    fn new_enrollment(
        &self,
        username: &str,
        params: Option<TotpParams>,
    ) -> Result<(KeyUri, Vec<u8>), IdentityError> {
        let mut params = params.unwrap_or(self.policy.totp);
        params.window = self.policy.totp.window;
        let secret = TotpSecret::generate();
        let sealed = warden_core::aead::seal(
            &self.secrets_key,
            &totp_label(username),
            secret.expose_secret(),
        );
        let uri = KeyUri::new(Some(&self.policy.totp_issuer.0), username, secret, params)?;
        Ok((uri, sealed))
    }

    /// Checks a new password against the policy, including reuse of the user's recent ones.
    fn check_password(
        &self,
        password: &Password,
        previous: &[String],
    ) -> Result<PasswordHash, IdentityError> {
        let previous: Vec<PasswordHash> = previous
            .iter()
            .filter_map(|phc| PasswordHash::parse(phc).ok())
            .collect();
        self.policy
            .password
            .check_new_password(password, &previous)?;
        Ok(self.policy.password.hash(password)?)
    }

    /// `warden init`: creates the first administrator in a database without users. There is no
    /// other way to create a user without an authenticated administrator.
    pub fn create_first_admin(
        &mut self,
        db: &mut Database,
        username: &Username,
        password: &Password,
        totp: Option<TotpParams>,
        now: UnixMs,
    ) -> Result<Option<KeyUri>, IdentityError> {
        let hash = self.check_password(password, &[])?;
        let enrollment = match totp {
            Some(params) => Some(self.new_enrollment(username.as_str(), Some(params))?),
            None => None,
        };
        let tx = self.audit.begin(db)?;
        if rows::count_users(&tx)? > 0 {
            return Err(IdentityError::AlreadyHasUsers);
        }
        let id = rows::insert_user(
            &tx,
            &NewUserRow {
                username: username.as_str(),
                role: Role::Administrator,
                password_phc: Some(hash.as_phc()),
                created: now.secs(),
                created_by: "warden init",
            },
        )?;
        if let Some((uri, sealed)) = &enrollment {
            rows::set_totp(&tx, id, sealed, uri.params(), now.secs())?;
        }
        let event = self.event_now(
            now,
            super::MASTER_PASSPHRASE_ACTOR,
            "user.create",
            &format!("user:{username}"),
            json!({
                "role": Role::Administrator.name(),
                "via": "init",
                "totp": enrollment.is_some(),
            }),
        );
        tx.audit_one(event)?;
        tx.commit()?;
        Ok(enrollment.map(|(uri, _)| uri))
    }

    // Implements: V35
    /// Adds a user (needs `user.manage`). Technicians get no password and are enrolled for TOTP
    /// at once (it is their only credential); other roles need a password that meets the
    /// policy and may be enrolled now or later. Returns the enrollment URI to show once.
    pub fn add_user(
        &mut self,
        db: &mut Database,
        by: &Authorized,
        new: NewUser<'_>,
        now: UnixMs,
    ) -> Result<Option<KeyUri>, IdentityError> {
        by.check(Permission::UserManage)?;
        let slot = self.take_slot_commit();
        let NewUser {
            username,
            role,
            password,
            totp,
        } = new;
        let hash = match (role, password) {
            (Role::Technician, Some(_)) => return Err(IdentityError::TechnicianPassword),
            (Role::Technician, None) => None,
            (_, Some(password)) => Some(self.check_password(password, &[])?),
            (role, None) => return Err(IdentityError::PasswordRequired(role)),
        };
        let enroll = role == Role::Technician || totp.is_some();
        let enrollment = if enroll {
            Some(self.new_enrollment(username.as_str(), totp)?)
        } else {
            None
        };
        let tx = self.audit.begin(db)?;
        if rows::load_user(&tx, username.as_str())?.is_some() {
            return Err(IdentityError::UserExists(username.to_string()));
        }
        let id = rows::insert_user(
            &tx,
            &NewUserRow {
                username: username.as_str(),
                role,
                password_phc: hash.as_ref().map(PasswordHash::as_phc),
                created: now.secs(),
                created_by: by.actor_name(),
            },
        )?;
        if let Some((uri, sealed)) = &enrollment {
            rows::set_totp(&tx, id, sealed, uri.params(), now.secs())?;
        }
        // Failed sign-ins under this name before it existed (unknown names are counted, so
        // that they look like known ones) are not the new account's: it starts unlocked, and
        // the record says whether the name was locked.
        let was_locked = Identity::clear_lock_in(&tx, &Principal::User(username.clone()))?;
        let event = self.event_now(
            now,
            by.actor_name(),
            "user.create",
            &format!("user:{username}"),
            json!({
                "role": role.name(),
                "totp": enrollment.is_some(),
                "was_locked": was_locked,
            }),
        );
        tx.audit_one(event)?;
        super::commit_slot_change(&tx, &slot)?;
        tx.commit()?;
        Ok(enrollment.map(|(uri, _)| uri))
    }

    /// Disables or re-enables a user (needs `user.manage`). A disabled user cannot sign in
    /// anywhere. The last enabled administrator cannot be disabled.
    pub fn set_disabled(
        &mut self,
        db: &mut Database,
        by: &Authorized,
        username: &Username,
        disabled: bool,
        now: UnixMs,
    ) -> Result<bool, IdentityError> {
        by.check(Permission::UserManage)?;
        let tx = self.audit.begin(db)?;
        let user = rows::load_user(&tx, username.as_str())?
            .ok_or_else(|| IdentityError::UnknownUser(username.to_string()))?;
        if disabled
            && user.role == Role::Administrator
            && rows::other_enabled_admins(&tx, &user.username)? == 0
        {
            return Err(IdentityError::LastAdministrator(user.username));
        }
        let changed = user.disabled != disabled;
        rows::set_disabled(&tx, user.id, disabled)?;
        let event = self.event_now(
            now,
            by.actor_name(),
            if disabled {
                "user.disable"
            } else {
                "user.enable"
            },
            &format!("user:{username}"),
            json!({ "changed": changed }),
        );
        tx.audit_one(event)?;
        tx.commit()?;
        Ok(changed)
    }

    fn set_password_of(
        &mut self,
        db: &mut Database,
        actor: &str,
        username: &str,
        password: &Password,
        now: UnixMs,
    ) -> Result<(), IdentityError> {
        let slot = self.take_slot_commit();
        let hash = self.prepare_password(db, actor, username, password, now)?;
        self.slot_commit = slot;
        self.store_password(db, actor, username, &hash, now)
    }

    /// Checks a new password for `username` against the policy and their recent passwords and
    /// hashes it; a refusal is audited (`user.passwd`, failure, the rules broken). Changes
    /// nothing else: [`Identity::store_password`] commits it.
    pub fn prepare_password(
        &mut self,
        db: &mut Database,
        actor: &str,
        username: &str,
        password: &Password,
        now: UnixMs,
    ) -> Result<PasswordHash, IdentityError> {
        let user = rows::load_user(db.conn(), username)?
            .ok_or_else(|| IdentityError::UnknownUser(username.to_owned()))?;
        if user.role == Role::Technician {
            return Err(IdentityError::TechnicianPassword);
        }
        let mut previous: Vec<String> = user.password_phc.iter().cloned().collect();
        previous.extend(rows::password_history(db.conn(), user.id)?);
        match self.check_password(password, &previous) {
            Ok(hash) => Ok(hash),
            Err(IdentityError::PolicyViolation(violations)) => {
                let rules: Vec<String> = violations
                    .violations()
                    .iter()
                    .map(|v| format!("{v:?}"))
                    .collect();
                let event = NewEvent::new(
                    now.timestamp(),
                    actor,
                    "user.passwd",
                    format!("user:{username}"),
                    Outcome::Failure,
                )
                .with_details(json!({ "reason": "policy", "rules": rules }));
                self.audit.append(db, vec![event])?;
                Err(IdentityError::PolicyViolation(violations))
            }
            Err(other) => Err(other),
        }
    }

    /// Stores a password hash made by [`Identity::prepare_password`], with its audit event
    /// (`user.passwd` by `actor`), in one transaction.
    pub(crate) fn store_password(
        &mut self,
        db: &mut Database,
        actor: &str,
        username: &str,
        hash: &PasswordHash,
        now: UnixMs,
    ) -> Result<(), IdentityError> {
        let slot = self.take_slot_commit();
        let tx = self.audit.begin(db)?;
        // The stored hash may have changed while we hashed; use the row as it is now.
        let current = rows::load_user(&tx, username)?
            .ok_or_else(|| IdentityError::UnknownUser(username.to_owned()))?;
        let keep = self.policy.password.fields().history;
        rows::set_password(
            &tx,
            current.id,
            current.password_phc.as_deref(),
            hash.as_phc(),
            now.secs(),
            keep,
        )?;
        let event = self.event_now(
            now,
            actor,
            "user.passwd",
            &format!("user:{username}"),
            json!({ "self": actor == username }),
        );
        tx.audit_one(event)?;
        super::commit_slot_change(&tx, &slot)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a user (needs `user.manage`): the row and the password history go, the audit
    /// trail keeps what they did. The last enabled administrator cannot be removed. Audited as
    /// `user.remove` with the role.
    pub fn remove_user(
        &mut self,
        db: &mut Database,
        by: &Authorized,
        username: &Username,
        now: UnixMs,
    ) -> Result<Role, IdentityError> {
        by.check(Permission::UserManage)?;
        let slot = self.take_slot_commit();
        let tx = self.audit.begin(db)?;
        let user = rows::load_user(&tx, username.as_str())?
            .ok_or_else(|| IdentityError::UnknownUser(username.to_string()))?;
        if user.role == Role::Administrator
            && !user.disabled
            && rows::other_enabled_admins(&tx, &user.username)? == 0
        {
            return Err(IdentityError::LastAdministrator(user.username));
        }
        rows::delete_user(&tx, user.id)?;
        let event = self.event_now(
            now,
            by.actor_name(),
            "user.remove",
            &format!("user:{username}"),
            json!({ "role": user.role.name() }),
        );
        tx.audit_one(event)?;
        super::commit_slot_change(&tx, &slot)?;
        tx.commit()?;
        Ok(user.role)
    }

    /// A signed-in user changes their own password (allowed with an expired password).
    pub fn change_own_password(
        &mut self,
        db: &mut Database,
        user: &AuthenticatedUser,
        new_password: &Password,
        now: UnixMs,
    ) -> Result<(), IdentityError> {
        let name = user.username().to_owned();
        self.set_password_of(db, &name, &name, new_password, now)
    }

    /// An administrator sets another user's password (needs `user.manage`).
    pub fn reset_password(
        &mut self,
        db: &mut Database,
        by: &Authorized,
        username: &Username,
        new_password: &Password,
        now: UnixMs,
    ) -> Result<(), IdentityError> {
        by.check(Permission::UserManage)?;
        let actor = by.actor_name().to_owned();
        self.set_password_of(db, &actor, username.as_str(), new_password, now)
    }

    fn enroll(
        &mut self,
        db: &mut Database,
        actor: &str,
        username: &str,
        params: Option<TotpParams>,
        now: UnixMs,
    ) -> Result<KeyUri, IdentityError> {
        let (uri, sealed) = self.new_enrollment(username, params)?;
        let tx = self.audit.begin(db)?;
        let user = rows::load_user(&tx, username)?
            .ok_or_else(|| IdentityError::UnknownUser(username.to_owned()))?;
        let replaced = user.totp.is_some();
        rows::set_totp(&tx, user.id, &sealed, uri.params(), now.secs())?;
        let params = uri.params();
        let event = self.event_now(
            now,
            actor,
            "user.totp.enroll",
            &format!("user:{username}"),
            json!({
                "algorithm": params.algorithm.name(),
                "digits": params.digits.count(),
                "period_secs": params.period_secs.secs(),
                "replaced": replaced,
            }),
        );
        tx.audit_one(event)?;
        tx.commit()?;
        Ok(uri)
    }

    /// A signed-in user enrolls (or re-enrolls) their own TOTP credential.
    pub fn enroll_own_totp(
        &mut self,
        db: &mut Database,
        user: &AuthenticatedUser,
        params: Option<TotpParams>,
        now: UnixMs,
    ) -> Result<KeyUri, IdentityError> {
        let name = user.username().to_owned();
        self.enroll(db, &name, &name, params, now)
    }

    /// An administrator enrolls another user (technicians, typically; needs `user.manage`).
    pub fn enroll_totp_for(
        &mut self,
        db: &mut Database,
        by: &Authorized,
        username: &Username,
        params: Option<TotpParams>,
        now: UnixMs,
    ) -> Result<KeyUri, IdentityError> {
        by.check(Permission::UserManage)?;
        let actor = by.actor_name().to_owned();
        self.enroll(db, &actor, username.as_str(), params, now)
    }

    /// Break-glass: with the master passphrase, an administrator who can no longer sign in
    /// (forgotten password, lost authenticator, locked, disabled) is re-enabled, unlocked,
    /// given a new password and left without TOTP (to enroll again). Recorded as
    /// `breakglass.recover` by `master-passphrase` with the stated reason; a refusal (not an
    /// administrator, no such user, a password the policy refuses) is recorded too.
    pub fn break_glass_recover(
        &mut self,
        db: &mut Database,
        proof: &BreakGlass,
        username: &Username,
        new_password: &Password,
        reason: &str,
        now: UnixMs,
    ) -> Result<(), IdentityError> {
        let result = self.recover(db, proof.actor(), username, new_password, reason, now);
        if let Err(err) = &result {
            let event = NewEvent::new(
                now.timestamp(),
                proof.actor(),
                "breakglass.recover",
                format!("user:{username}"),
                Outcome::Failure,
            )
            .with_details(json!({ "reason": reason, "refused": err.to_string() }));
            self.audit.append(db, vec![event])?;
        }
        result
    }

    fn recover(
        &mut self,
        db: &mut Database,
        actor: &str,
        username: &Username,
        new_password: &Password,
        reason: &str,
        now: UnixMs,
    ) -> Result<(), IdentityError> {
        let user = rows::load_user(db.conn(), username.as_str())?
            .ok_or_else(|| IdentityError::UnknownUser(username.to_string()))?;
        if user.role != Role::Administrator {
            return Err(IdentityError::BreakGlassNotAdministrator(user.username));
        }
        let mut previous: Vec<String> = user.password_phc.iter().cloned().collect();
        previous.extend(rows::password_history(db.conn(), user.id)?);
        let hash = self.check_password(new_password, &previous)?;
        let keep = self.policy.password.fields().history;
        let slot = self.take_slot_commit();
        let tx = self.audit.begin(db)?;
        let current = rows::load_user(&tx, username.as_str())?
            .ok_or_else(|| IdentityError::UnknownUser(username.to_string()))?;
        rows::set_disabled(&tx, current.id, false)?;
        rows::set_password(
            &tx,
            current.id,
            current.password_phc.as_deref(),
            hash.as_phc(),
            now.secs(),
            keep,
        )?;
        let totp_cleared = rows::clear_totp(&tx, current.id)?;
        let was_locked = Identity::clear_lock_in(&tx, &Principal::User(username.clone()))?;
        let event = self.event_now(
            now,
            actor,
            "breakglass.recover",
            &format!("user:{username}"),
            json!({
                "reason": reason,
                "was_disabled": current.disabled,
                "was_locked": was_locked,
                "password_reset": true,
                "totp_cleared": totp_cleared,
            }),
        );
        tx.audit_one(event)?;
        super::commit_slot_change(&tx, &slot)?;
        tx.commit()?;
        Ok(())
    }

    /// Lifts a lockout and forgets the failures. A user needs `user.manage`, a shim port
    /// `shim.reset`. Returns whether it was locked.
    pub fn unlock(
        &mut self,
        db: &mut Database,
        by: &Authorized,
        principal: &Principal,
        now: UnixMs,
    ) -> Result<bool, IdentityError> {
        let needed = match principal {
            Principal::User(_) => Permission::UserManage,
            Principal::Port(_) => Permission::ShimReset,
        };
        by.check(needed)?;
        let key = principal.key();
        let tx = self.audit.begin(db)?;
        if let Principal::User(name) = principal {
            if rows::load_user(&tx, name.as_str())?.is_none() {
                return Err(IdentityError::UnknownUser(name.to_string()));
            }
        }
        let mut record = rows::load_lock(&tx, &key)?;
        let locked_at = record.window.locked_at();
        record.window.reset();
        record.throttle = Default::default();
        rows::save_lock(&tx, &key, &record)?;
        let event = self.event_now(
            now,
            by.actor_name(),
            "lockout.unlock",
            &key,
            json!({ "was_locked": locked_at.is_some(), "locked_at": locked_at }),
        );
        tx.audit_one(event)?;
        tx.commit()?;
        Ok(locked_at.is_some())
    }

    fn event_now(
        &self,
        now: UnixMs,
        actor: &str,
        action: &str,
        subject: &str,
        details: serde_json::Value,
    ) -> NewEvent {
        NewEvent::new(now.timestamp(), actor, action, subject, Outcome::Success)
            .with_details(details)
    }

    fn info(&self, db: &Database, user: UserRow, now: UnixMs) -> Result<UserInfo, IdentityError> {
        let (password_expires, password_expired) = match user.password_changed {
            Some(changed) => match self.policy.password.expiry(changed, now.secs()) {
                PasswordExpiry::Never => (None, false),
                PasswordExpiry::ValidUntil { expires_at } => (Some(expires_at), false),
                PasswordExpiry::Expired { expired_at } => (Some(expired_at), true),
            },
            None => (None, false),
        };
        let lock = self.lock_info(db, &format!("user:{}", user.username), now)?;
        Ok(UserInfo {
            has_password: user.password_phc.is_some(),
            password_changed: user.password_changed,
            password_expires,
            password_expired,
            totp: user.totp.map(|t| TotpInfo {
                algorithm: t.params.algorithm.name().to_owned(),
                digits: t.params.digits.count(),
                period_secs: t.params.period_secs.secs(),
                enrolled: t.enrolled,
                last_accepted_step: user.last_accepted_step,
            }),
            lock,
            username: user.username,
            role: user.role,
            disabled: user.disabled,
            created: user.created,
            created_by: user.created_by,
        })
    }

    fn lock_info(&self, db: &Database, key: &str, now: UnixMs) -> Result<LockInfo, IdentityError> {
        let record = rows::load_lock(db.conn(), key)?;
        let state = record.window.state(&self.policy.lockout, now.secs());
        let recent_failures = match state {
            warden_core::lockout::LockoutState::Open {
                recent_failures, ..
            } => recent_failures,
            warden_core::lockout::LockoutState::Locked { .. } => {
                u32::try_from(record.window.failure_times().len()).unwrap_or(u32::MAX)
            }
        };
        Ok(LockInfo {
            principal: key.to_owned(),
            locked: state.is_locked(),
            locked_at: record.window.locked_at(),
            recent_failures,
        })
    }

    // Implements: V35
    /// Every user, by name. Reading needs the database key only; the CLI asks for
    /// `user.manage` first.
    /// Every user, with the locked principals (needs `user.manage`; audited as `user.list`).
    pub fn list_users(
        &mut self,
        db: &mut Database,
        by: &Authorized,
        now: UnixMs,
    ) -> Result<(Vec<UserInfo>, Vec<LockInfo>), IdentityError> {
        by.check(Permission::UserManage)?;
        let users = rows::all_users(db.conn())?
            .into_iter()
            .map(|user| self.info(db, user, now))
            .collect::<Result<Vec<_>, _>>()?;
        let locks = self.locked(db, now)?;
        let event = self.event_now(
            now,
            by.actor_name(),
            "user.list",
            "users",
            json!({ "users": users.len(), "locked": locks.len() }),
        );
        self.audit.append(db, vec![event])?;
        Ok((users, locks))
    }

    /// One user (needs `user.manage`; audited as `user.show`).
    pub fn user_info(
        &mut self,
        db: &mut Database,
        by: &Authorized,
        username: &Username,
        now: UnixMs,
    ) -> Result<UserInfo, IdentityError> {
        by.check(Permission::UserManage)?;
        let user = rows::load_user(db.conn(), username.as_str())?
            .ok_or_else(|| IdentityError::UnknownUser(username.to_string()))?;
        let info = self.info(db, user, now)?;
        let event = self.event_now(
            now,
            by.actor_name(),
            "user.show",
            &format!("user:{username}"),
            json!({}),
        );
        self.audit.append(db, vec![event])?;
        Ok(info)
    }

    /// The identity policy in force (needs `user.manage`; audited as `user.policy`).
    pub fn show_policy(
        &mut self,
        db: &mut Database,
        by: &Authorized,
        now: UnixMs,
    ) -> Result<IdentityPolicy, IdentityError> {
        by.check(Permission::UserManage)?;
        let event = self.event_now(
            now,
            by.actor_name(),
            "user.policy",
            "identity-policy",
            json!({}),
        );
        self.audit.append(db, vec![event])?;
        Ok(self.policy.clone())
    }

    /// Every locked principal (users and shim ports).
    pub fn locked(&self, db: &Database, now: UnixMs) -> Result<Vec<LockInfo>, IdentityError> {
        rows::locked_principals(db.conn())?
            .into_iter()
            .map(|(key, _)| self.lock_info(db, &key, now))
            .collect()
    }

    /// The lockout state of one principal.
    pub fn lock_state(
        &self,
        db: &Database,
        principal: &Principal,
        now: UnixMs,
    ) -> Result<LockInfo, IdentityError> {
        self.lock_info(db, &principal.key(), now)
    }
}
