//! The lifecycle of key slots: people's slots (created with the user, re-wrapped when the
//! password changes or is reset, gone with the user), the master passphrase, the recovery key
//! and the daemons' service keys. Each operation takes the authorization for its permission,
//! and each is a two-step change (`super::two_step`) whose audit event commits with it.

use serde::Serialize;
use serde_json::json;
use warden_core::audit::Outcome;
use warden_core::datadir::DataDir;
use warden_core::kdf::KdfParams;
use warden_core::keyslots::{
    Holder, KeyRing, Owner, Pending, RecoveryKey, ServiceKey, SlotFile, SlotSecret, Unlocked,
};
use warden_core::password::Password;
use warden_core::rbac::{Permission, Role, ServiceKind};
use warden_core::secret::Passphrase;
use warden_core::totp::KeyUri;

use super::{commit_event, two_step, KeyOpError};
use crate::identity::{
    claimed_user_key, AuthError, AuthenticatedUser, Authorized, BreakGlass, IdentityError, NewUser,
    PasswordProof, SlotProof, UnixMs, Username,
};
use crate::Store;

/// What a person's password did to their slot.
pub enum UserSlot {
    /// It opened: the keys of their role, and the proof the sign-in takes.
    Opened(Unlocked, SlotProof),
    /// They have a slot and the password does not open it.
    Refused,
    /// There is no slot for this name (no such user, a technician, or a user of a directory
    /// converted from derived keys who has not signed in since).
    NoSlot,
}

/// Opens the slot of `username` with `password`. A name without a slot costs the same KDF.
pub fn unlock_user(
    dir: &DataDir,
    username: &str,
    password: &Password,
) -> Result<UserSlot, KeyOpError> {
    let file = dir.read_slots()?;
    let owner = file.user(username);
    let slots: Vec<_> = file.slots_of(&owner).collect();
    if slots.is_empty() {
        file.decoy_unlock(password);
        return Ok(UserSlot::NoSlot);
    }
    for slot in slots {
        match file.unlock(slot, &SlotSecret::Password(password)) {
            Ok(unlocked) => return Ok(UserSlot::Opened(unlocked, SlotProof::new(username))),
            Err(warden_core::keyslots::KeySlotError::WrongSecret(_)) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Ok(UserSlot::Refused)
}

/// A person's sign-in through their own key slot.
// Made once per sign-in and taken apart at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum SlotSignIn {
    /// Signed in: the store opened with the keys of their role (their slot's), and who they
    /// are.
    SignedIn {
        store: Store,
        user: AuthenticatedUser,
        keys: KeyRing,
    },
    /// The password opens no slot of theirs: refuse ([`refuse_sign_in`]), or check it with
    /// the master passphrase.
    Refused,
    /// There is no slot for this name.
    NoSlot,
}

/// Signs `username` in through their own key slot: the password opens the slot, the store
/// opens with its keys, `authenticate` checks the person against the database with the slot's
/// proof (and whatever else the caller requires, e.g. the one-time code), the slot must still
/// be in the file (a pending change that did not commit may have taken it away) and be made for
/// the role the database gives them. The one sequence the CLI and the Python package share.
pub fn sign_in_with_slot<E>(
    dir: &DataDir,
    username: &str,
    password: &Password,
    authenticate: impl FnOnce(&mut Store, PasswordProof<'_>) -> Result<AuthenticatedUser, E>,
) -> Result<SlotSignIn, E>
where
    E: From<KeyOpError> + From<AuthError>,
{
    let (unlocked, proof) = match unlock_user(dir, username, password)? {
        UserSlot::Opened(unlocked, proof) => (unlocked, proof),
        UserSlot::Refused => return Ok(SlotSignIn::Refused),
        UserSlot::NoSlot => return Ok(SlotSignIn::NoSlot),
    };
    let (holder, slot_id) = (unlocked.holder, unlocked.slot_id.clone());
    let (mut store, keys) = super::open_store(dir, unlocked.keys)?;
    if dir
        .read_slots()
        .map_err(KeyOpError::from)?
        .slot(&slot_id)
        .is_none()
    {
        return Err(refuse_sign_in(dir, username, "bad_password")?.into());
    }
    let user = authenticate(
        &mut store,
        PasswordProof::Slot {
            password,
            proof: &proof,
        },
    )?;
    super::check_holder(&mut store, &user, holder)?;
    Ok(SlotSignIn::SignedIn { store, user, keys })
}

/// Records a refused sign-in of `username` (`reason`: `bad_password`, `no_key_slot`) where no
/// key opened the store — it goes to the chain at the next open — and returns the refusal to
/// give.
pub fn refuse_sign_in(
    dir: &DataDir,
    username: &str,
    reason: &str,
) -> Result<AuthError, KeyOpError> {
    super::journal::record(
        dir,
        &super::journal::Unrecorded::failed_sign_in(&claimed_user_key(username), reason),
    )?;
    Ok(AuthError::Failed)
}

fn now() -> String {
    crate::now_rfc3339()
}

/// The KDF of people's slots: the identity policy's Argon2id cost.
fn user_kdf(store: &Store) -> KdfParams {
    store.identity.policy().password.argon2().as_kdf()
}

/// A new slot for `owner` (replacing every slot it has) as a pending change.
fn replace_slot(
    file: &mut SlotFile,
    action: &str,
    owner: Owner,
    holder: Holder,
    secret: &SlotSecret<'_>,
    kdf: Option<&KdfParams>,
    ring: &KeyRing,
) -> Result<Pending, KeyOpError> {
    let mut pending = Pending::new(action);
    pending.remove = file.slots_of(&owner).map(|s| s.id.clone()).collect();
    let slot = file.make_slot(owner, holder, secret, kdf, ring, now())?;
    pending.add.push(slot.id.clone());
    file.add_slot(slot);
    Ok(pending)
}

/// `user add`: the user and, for a role with a password, their slot holding their role's keys
/// (from the administrator's ring), committed together.
pub fn add_user(
    store: &mut Store,
    dir: &DataDir,
    by: &Authorized,
    ring: &KeyRing,
    new: NewUser<'_>,
    now_ms: UnixMs,
) -> Result<Option<KeyUri>, KeyOpError> {
    by.check(Permission::UserManage)?;
    let (Some(password), true) = (new.password, new.role != Role::Technician) else {
        return Ok(store.identity.add_user(&mut store.db, by, new, now_ms)?);
    };
    store
        .identity
        .policy()
        .password
        .check_new_password(password, &[])
        .map_err(IdentityError::PolicyViolation)?;
    if store
        .identity
        .role_of(&store.db, new.username.as_str())?
        .is_some()
    {
        return Err(IdentityError::UserExists(new.username.to_string()).into());
    }
    let kdf = user_kdf(store);
    let (name, role) = (new.username.as_str().to_owned(), new.role);
    two_step(
        store,
        dir,
        |file| {
            let owner = file.user(&name);
            replace_slot(
                file,
                "user.create",
                owner,
                Holder::Role(role),
                &SlotSecret::Password(password),
                Some(&kdf),
                ring,
            )
        },
        |store, pending| {
            store
                .identity
                .set_slot_commit(pending.txid_bytes(), &pending.action);
            Ok(store.identity.add_user(&mut store.db, by, new, now_ms)?)
        },
    )
}

/// `user passwd` (one's own): the slot is re-wrapped for the new password (the user's own keys,
/// which their sign-in opened) and the hash replaced, committed together.
pub fn change_own_password(
    store: &mut Store,
    dir: &DataDir,
    user: &AuthenticatedUser,
    ring: &KeyRing,
    password: &Password,
    now_ms: UnixMs,
) -> Result<(), KeyOpError> {
    let name = user.username().to_owned();
    set_password(
        store,
        dir,
        &name,
        &name,
        user.role(),
        ring,
        password,
        now_ms,
    )
}

/// `user passwd NAME` (an administrator's reset): a new slot for the new password with the
/// user's role's keys from the administrator's ring; the old slot goes.
pub fn reset_password(
    store: &mut Store,
    dir: &DataDir,
    by: &Authorized,
    ring: &KeyRing,
    target: &Username,
    password: &Password,
    now_ms: UnixMs,
) -> Result<(), KeyOpError> {
    by.check(Permission::UserManage)?;
    let role = store
        .identity
        .role_of(&store.db, target.as_str())?
        .ok_or_else(|| IdentityError::UnknownUser(target.to_string()))?;
    let actor = by.actor_name().to_owned();
    set_password(
        store,
        dir,
        &actor,
        target.as_str(),
        role,
        ring,
        password,
        now_ms,
    )
}

#[allow(clippy::too_many_arguments)]
fn set_password(
    store: &mut Store,
    dir: &DataDir,
    actor: &str,
    username: &str,
    role: Role,
    ring: &KeyRing,
    password: &Password,
    now_ms: UnixMs,
) -> Result<(), KeyOpError> {
    // The policy first (a refusal is audited and changes nothing).
    let hash = store
        .identity
        .prepare_password(&mut store.db, actor, username, password, now_ms)?;
    let kdf = user_kdf(store);
    two_step(
        store,
        dir,
        |file| {
            let owner = file.user(username);
            replace_slot(
                file,
                "user.passwd",
                owner,
                Holder::Role(role),
                &SlotSecret::Password(password),
                Some(&kdf),
                ring,
            )
        },
        |store, pending| {
            store
                .identity
                .set_slot_commit(pending.txid_bytes(), &pending.action);
            Ok(store
                .identity
                .store_password(&mut store.db, actor, username, &hash, now_ms)?)
        },
    )
}

/// `user remove NAME`: the user and their slot go together. Returns their role, whose keys
/// they could have copied while they had them (rotate those to take them back).
pub fn remove_user(
    store: &mut Store,
    dir: &DataDir,
    by: &Authorized,
    target: &Username,
    now_ms: UnixMs,
) -> Result<Role, KeyOpError> {
    by.check(Permission::UserManage)?;
    two_step(
        store,
        dir,
        |file| {
            let owner = file.user(target.as_str());
            let mut pending = Pending::new("user.remove");
            pending.remove = file.slots_of(&owner).map(|s| s.id.clone()).collect();
            Ok(pending)
        },
        |store, pending| {
            store
                .identity
                .set_slot_commit(pending.txid_bytes(), &pending.action);
            Ok(store
                .identity
                .remove_user(&mut store.db, by, target, now_ms)?)
        },
    )
}

/// Break-glass with the master passphrase or the recovery key (`master`): the administrator
/// gets a new password, and a new slot for it; their old slot goes.
#[allow(clippy::too_many_arguments)]
pub fn break_glass(
    store: &mut Store,
    dir: &DataDir,
    proof: &BreakGlass,
    master: &KeyRing,
    target: &Username,
    password: &Password,
    reason: &str,
    now_ms: UnixMs,
) -> Result<(), KeyOpError> {
    let kdf = user_kdf(store);
    let is_admin = store.identity.role_of(&store.db, target.as_str())? == Some(Role::Administrator);
    if !is_admin {
        // Refused (and audited) by the identity service, with no slot made.
        store.identity.break_glass_recover(
            &mut store.db,
            proof,
            target,
            password,
            reason,
            now_ms,
        )?;
        return Ok(());
    }
    two_step(
        store,
        dir,
        |file| {
            let owner = file.user(target.as_str());
            replace_slot(
                file,
                "breakglass.recover",
                owner,
                Holder::Role(Role::Administrator),
                &SlotSecret::Password(password),
                Some(&kdf),
                master,
            )
        },
        |store, pending| {
            store
                .identity
                .set_slot_commit(pending.txid_bytes(), &pending.action);
            Ok(store.identity.break_glass_recover(
                &mut store.db,
                proof,
                target,
                password,
                reason,
                now_ms,
            )?)
        },
    )
}

/// A person with no slot signed in through the master passphrase (a directory converted from
/// derived keys): their slot is made now, with their role's keys, for the password they just
/// proved; recorded as `keys.slot.create` by them. Returns their role's keys.
pub fn ensure_user_slot(
    store: &mut Store,
    dir: &DataDir,
    user: &AuthenticatedUser,
    master: &KeyRing,
    password: &Password,
) -> Result<KeyRing, KeyOpError> {
    let role = user.role();
    let holder = Holder::Role(role);
    let ring = master.restricted(holder.purposes(), role.name(), "the keys of the role");
    if role == Role::Technician {
        return Ok(ring);
    }
    // A person who has a slot: the password checked against the stored hash must also open
    // it, and the slot must be for the role the database says — else the users table was
    // changed by someone holding the `database` key.
    match unlock_user(dir, user.username(), password)? {
        UserSlot::Opened(unlocked, _) => {
            super::check_holder(store, user, unlocked.holder)?;
            return Ok(ring);
        }
        UserSlot::Refused => {
            return Err(super::users_table_changed(
                store,
                user,
                "their password matches the stored hash but does not open their key slot".into(),
            ))
        }
        UserSlot::NoSlot => {}
    }
    let kdf = user_kdf(store);
    let name = user.username().to_owned();
    two_step(
        store,
        dir,
        |file| {
            let owner = file.user(&name);
            replace_slot(
                file,
                "keys.slot.create",
                owner,
                holder,
                &SlotSecret::Password(password),
                Some(&kdf),
                master,
            )
        },
        |store, pending| {
            let event = warden_core::audit::NewEvent::new(
                crate::audit::timestamp_now(),
                &name,
                "keys.slot.create",
                format!("user:{name}"),
                Outcome::Success,
            )
            .with_details(json!({ "role": role.name(), "via": "first sign-in with key slots" }));
            commit_event(store, pending, event)
        },
    )?;
    Ok(ring)
}

/// `keys passphrase`: the master slot re-wrapped for a new passphrase (instant: no data is
/// touched). Needs `key.rotate` and the current master passphrase or the recovery key
/// (`master`); the old passphrase opens nothing afterwards.
pub fn change_passphrase(
    store: &mut Store,
    dir: &DataDir,
    by: &Authorized,
    master: &Unlocked,
    new: &Passphrase,
    kdf: Option<&KdfParams>,
) -> Result<(), KeyOpError> {
    by.check(Permission::KeyRotate)?;
    if new.char_count() < Passphrase::MIN_CHARS {
        return Err(KeyOpError::Refused(format!(
            "the new passphrase has {} characters; at least {} are required",
            new.char_count(),
            Passphrase::MIN_CHARS
        )));
    }
    let via = super::unlocked_actor(master).ok_or_else(|| {
        KeyOpError::Refused("the master passphrase or the recovery key is needed".into())
    })?;
    let file = dir.read_slots()?;
    let kdf = match kdf {
        Some(kdf) => kdf.clone(),
        None => file
            .slots_of(&Owner::Master)
            .next()
            .and_then(|s| match s.kdf {
                warden_core::keyslots::SlotKdf::Pbkdf2Sha256 { iterations } => {
                    Some(KdfParams::Pbkdf2Sha256 { iterations })
                }
                warden_core::keyslots::SlotKdf::Argon2id {
                    memory_kib,
                    iterations,
                    parallelism,
                } => Some(KdfParams::Argon2id {
                    memory_kib,
                    iterations,
                    parallelism,
                }),
                warden_core::keyslots::SlotKdf::HkdfSha256 {} => None,
            })
            .unwrap_or_else(KdfParams::default_pbkdf2),
    };
    two_step(
        store,
        dir,
        |file| {
            replace_slot(
                file,
                "keys.passphrase.change",
                Owner::Master,
                Holder::All,
                &SlotSecret::Passphrase(new),
                Some(&kdf),
                &master.keys,
            )
        },
        |store, pending| {
            let event = by
                .event("keys.passphrase.change", "keyslot:master", Outcome::Success)
                .with_details(json!({ "kdf": kdf.describe(), "unlocked_with": via }));
            commit_event(store, pending, event)
        },
    )
}

/// `keys recovery`: a slot for the new recovery key `key` (which the caller has already shown
/// or written) replaces the old one. Needs `key.export`; the administrator's ring carries every
/// key.
pub fn new_recovery_key(
    store: &mut Store,
    dir: &DataDir,
    by: &Authorized,
    ring: &KeyRing,
    key: &RecoveryKey,
) -> Result<(), KeyOpError> {
    by.check(Permission::KeyExport)?;
    two_step(
        store,
        dir,
        |file| {
            replace_slot(
                file,
                "keys.recovery.new",
                Owner::Recovery,
                Holder::All,
                &SlotSecret::Key(key.key()),
                None,
                ring,
            )
        },
        |store, pending| {
            let event = by
                .event("keys.recovery.new", "keyslot:recovery", Outcome::Success)
                .with_details(json!({ "replaced": pending.remove.len() }));
            commit_event(store, pending, event)
        },
    )
}

/// `keys service add KIND`: a service slot for a daemon, holding its service's keys, unlocked
/// by `key` (which the caller has already written where the daemon will find it). Replaces
/// the daemon's previous slot. Needs `key.rotate`.
pub fn add_service(
    store: &mut Store,
    dir: &DataDir,
    by: &Authorized,
    ring: &KeyRing,
    kind: ServiceKind,
    key: &ServiceKey,
) -> Result<(), KeyOpError> {
    by.check(Permission::KeyRotate)?;
    two_step(
        store,
        dir,
        |file| {
            replace_slot(
                file,
                "keys.service.add",
                Owner::Service(kind),
                Holder::Service(kind),
                &SlotSecret::Key(key.key()),
                None,
                ring,
            )
        },
        |store, pending| {
            let purposes: Vec<&str> = Holder::Service(kind)
                .purposes()
                .iter()
                .map(|p| p.name())
                .collect();
            let event = by
                .event(
                    "keys.service.add",
                    format!("keyslot:service:{}", kind.slot_name()),
                    Outcome::Success,
                )
                .with_details(json!({ "keys": purposes, "replaced": pending.remove.len() }));
            commit_event(store, pending, event)
        },
    )
}

/// `keys service remove KIND`: the daemon's slot goes (its key file opens nothing after).
pub fn remove_service(
    store: &mut Store,
    dir: &DataDir,
    by: &Authorized,
    kind: ServiceKind,
) -> Result<usize, KeyOpError> {
    by.check(Permission::KeyRotate)?;
    two_step(
        store,
        dir,
        |file| {
            let mut pending = Pending::new("keys.service.remove");
            pending.remove = file
                .slots_of(&Owner::Service(kind))
                .map(|s| s.id.clone())
                .collect();
            Ok(pending)
        },
        |store, pending| {
            let event = by
                .event(
                    "keys.service.remove",
                    format!("keyslot:service:{}", kind.slot_name()),
                    Outcome::Success,
                )
                .with_details(json!({ "removed": pending.remove.len() }));
            commit_event(store, pending, event)?;
            Ok(pending.remove.len())
        },
    )
}

/// A slot as `keys list` shows it: no secret, no wrapped key.
#[derive(Debug, Clone, Serialize)]
pub struct SlotInfo {
    pub id: String,
    /// `master`, `recovery`, `user:NAME` (or `user:?LOOKUP` when no user has that id),
    /// `service:shim`, `service:ota`.
    pub owner: String,
    pub holder: String,
    pub kdf: String,
    pub created: String,
    /// `database v1`, … (two versions of a key during its rotation).
    pub keys: Vec<String>,
    /// Part of a change not settled yet.
    pub pending: bool,
}

/// `keys list`: every slot, people named (needs `key.rotate`; audited as `keys.list`).
pub fn list_slots(
    store: &mut Store,
    dir: &DataDir,
    by: &Authorized,
) -> Result<(Vec<SlotInfo>, SlotFile), KeyOpError> {
    by.check(Permission::KeyRotate)?;
    let file = dir.read_slots()?;
    let names: std::collections::BTreeMap<String, String> = store
        .identity
        .user_roles(&store.db)?
        .into_iter()
        .map(|(name, _)| (file.user(&name).to_string(), name))
        .collect();
    let pending: Vec<&String> = file
        .pending
        .iter()
        .flat_map(|p| p.add.iter().chain(&p.remove))
        .collect();
    let slots = file
        .slots
        .iter()
        .map(|slot| SlotInfo {
            id: slot.id.clone(),
            owner: match names.get(&slot.owner) {
                Some(name) => format!("user:{name}"),
                None if slot.owner.starts_with("user:") => {
                    format!("user:?{}", &slot.owner[5..])
                }
                None => slot.owner.clone(),
            },
            holder: slot.holder.clone(),
            kdf: slot.kdf.describe(),
            created: slot.created.clone(),
            keys: slot
                .wraps
                .iter()
                .map(|w| format!("{} v{}", w.purpose, w.version))
                .collect(),
            pending: pending.contains(&&slot.id),
        })
        .collect();
    let event = by
        .event("keys.list", "keyslots", Outcome::Success)
        .with_details(json!({ "slots": file.slots.len(), "generation": file.generation }));
    store.append(vec![event])?;
    Ok((slots, file))
}
