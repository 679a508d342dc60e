//! `warden init`: a new data directory — layout, random purpose keys in `keyslots.json` (slots
//! for the master passphrase, a recovery key shown once, and the first administrator), the
//! encrypted database, the audit chain (its initial key exported once, sealed for the auditor),
//! the identity policy and the first administrator. Everything that can fail on input is
//! checked before anything is written; the act is recorded as `warden.init` and `user.create`
//! by the holder of the master passphrase.

use std::path::{Path, PathBuf};

use serde_json::json;
use warden_core::audit::{AuditKey, ChainId, NewEvent, Outcome};
use warden_core::auditor_key::AuditorKeyFile;
use warden_core::datadir::{DataDir, DataDirError, KEYSLOTS_FILE, SECURITY_FILE};
use warden_core::kdf::KdfParams;
use warden_core::keyring::Purpose;
use warden_core::keyslots::{
    Holder, KeyRing, KeySlotError, Owner, RecoveryKey, SlotFile, SlotSecret,
};
use warden_core::password::Password;
use warden_core::secret::Passphrase;
use warden_core::totp::{KeyUri, TotpParams};

use crate::audit::{timestamp_now, AuditLog, AuditPolicy};
use crate::identity::{
    Identity, IdentityError, IdentityPolicy, UnixMs, Username, MASTER_PASSPHRASE_ACTOR,
};
use crate::{Database, Store, StoreError, DB_FILE};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("{0} already exists; refusing to overwrite an auditor key")]
    AuditorKeyExists(PathBuf),
    #[error("the auditor passphrase must differ from the master passphrase (the auditor verifies what the box cannot rewrite)")]
    SamePassphrases,
    #[error("the first administrator's password")]
    Password(#[source] warden_core::password::PolicyViolations),
    #[error(transparent)]
    Keys(#[from] warden_core::keyring::KeyringError),
    #[error(transparent)]
    Slots(#[from] KeySlotError),
    #[error("the passphrase has {0} characters; at least {min} are required", min = Passphrase::MIN_CHARS)]
    PassphraseTooShort(usize),
    #[error(transparent)]
    AuditorKey(#[from] warden_core::auditor_key::AuditorKeyError),
    #[error(transparent)]
    File(#[from] warden_core::fsx::FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Everything `warden init` is given.
pub struct Provision<'a> {
    pub root: &'a Path,
    pub passphrase: &'a Passphrase,
    pub auditor_passphrase: &'a Passphrase,
    /// Where the auditor's sealed initial audit key goes (must not exist).
    pub auditor_key_out: &'a Path,
    pub kdf: &'a KdfParams,
    pub audit_policy: AuditPolicy,
    pub identity_policy: &'a IdentityPolicy,
    pub admin: &'a Username,
    pub admin_password: &'a Password,
    /// Enroll the first administrator for TOTP now.
    pub admin_totp: Option<TotpParams>,
}

/// What `provision` made.
pub struct Provisioned {
    pub dir: DataDir,
    /// Every key (the master's).
    pub keys: KeyRing,
    /// The recovery key, to show once.
    pub recovery_key: RecoveryKey,
    pub store: Store,
    pub chain_id: ChainId,
    /// The first administrator's enrollment, to show once.
    pub admin_enrollment: Option<KeyUri>,
}

impl Provision<'_> {
    /// Checks what can be checked without writing anything: an empty place, distinct
    /// passphrases, KDF parameters, and the administrator's password against the policy.
    pub fn check(&self) -> Result<(), ProvisionError> {
        if self.passphrase.char_count() < Passphrase::MIN_CHARS {
            return Err(ProvisionError::PassphraseTooShort(
                self.passphrase.char_count(),
            ));
        }
        self.kdf
            .validate()
            .map_err(warden_core::keyring::KeyringError::from)?;
        if self.root.join(SECURITY_FILE).exists() || self.root.join(KEYSLOTS_FILE).exists() {
            return Err(DataDirError::AlreadyInitialized(self.root.to_path_buf()).into());
        }
        if self.auditor_key_out.symlink_metadata().is_ok() {
            return Err(ProvisionError::AuditorKeyExists(
                self.auditor_key_out.to_path_buf(),
            ));
        }
        if warden_core::mac::ct_eq(
            self.passphrase.expose_secret().as_bytes(),
            self.auditor_passphrase.expose_secret().as_bytes(),
        ) {
            return Err(ProvisionError::SamePassphrases);
        }
        self.identity_policy
            .password
            .check_new_password(self.admin_password, &[])
            .map_err(ProvisionError::Password)?;
        Ok(())
    }
}

/// Creates everything a data directory holds (see the module documentation).
pub fn provision(p: Provision<'_>) -> Result<Provisioned, ProvisionError> {
    p.check()?;
    let created = crate::now_rfc3339();
    let keys = KeyRing::generate();
    let mut slots = SlotFile::new(created.clone(), &keys)?;
    let master = slots.make_slot(
        Owner::Master,
        Holder::All,
        &SlotSecret::Passphrase(p.passphrase),
        Some(p.kdf),
        &keys,
        created.clone(),
    )?;
    slots.add_slot(master);
    let recovery_key = RecoveryKey::generate();
    let recovery = slots.make_slot(
        Owner::Recovery,
        Holder::All,
        &SlotSecret::Key(recovery_key.key()),
        None,
        &keys,
        created.clone(),
    )?;
    slots.add_slot(recovery);
    let admin = slots.make_slot(
        slots.user(p.admin.as_str()),
        Holder::Role(warden_core::rbac::Role::Administrator),
        &SlotSecret::Password(p.admin_password),
        Some(&p.identity_policy.password.argon2().as_kdf()),
        &keys,
        created,
    )?;
    slots.add_slot(admin);
    let k0 = AuditKey::random();
    let chain_id = ChainId::random();
    let auditor_file = AuditorKeyFile::seal(&k0, &chain_id, p.auditor_passphrase, p.kdf)?;

    let dir = DataDir::create_with_slots(p.root, &slots)?;
    warden_core::fsx::write_new_private(p.auditor_key_out, auditor_file.to_json().as_bytes())?;
    let mut db = Database::create(&dir.root().join(DB_FILE), keys.get(Purpose::Database))?;
    let audit = AuditLog::new(keys.get(Purpose::Audit).clone());
    audit.create(&mut db, k0, chain_id, p.audit_policy)?;
    let event = NewEvent::new(
        timestamp_now(),
        MASTER_PASSPHRASE_ACTOR,
        "warden.init",
        p.root.display().to_string(),
        Outcome::Success,
    )
    .with_details(json!({
        "kdf": p.kdf.describe(),
        "key_format": 2,
        "checkpoint_key_id": hex::encode(warden_core::signing::key_id(
            &warden_core::signing::CheckpointSigner::from_seed(keys.get(Purpose::Signing)).public_key()
        )),
        "chain_id": chain_id.to_string(),
        "auditor_key_id": auditor_file.key_id,
        "audit_epoch_max_events": p.audit_policy.epoch.max_events,
        "audit_epoch_max_secs": p.audit_policy.epoch.max_age_secs,
        "audit_checkpoint_every": p.audit_policy.checkpoint_every,
    }));
    Identity::init(&mut db, p.identity_policy)?;
    let mut identity = Identity::load(
        &db,
        keys.get(Purpose::Database).clone(),
        keys.get(Purpose::Audit).clone(),
    )?;
    identity.audit_log().append(&mut db, vec![event])?;
    let admin_enrollment = identity.create_first_admin(
        &mut db,
        p.admin,
        p.admin_password,
        p.admin_totp,
        UnixMs::now(),
    )?;
    Ok(Provisioned {
        dir,
        keys,
        recovery_key,
        store: Store { db, identity },
        chain_id,
        admin_enrollment,
    })
}
