//! Key slots (`keyslots.json`): purpose keys are random and stored only wrapped, each slot
//! carrying the keys of one holder — the master passphrase and the recovery key (every key),
//! one slot per person with a password (the keys of their role), one per daemon (the keys of
//! its service). The format is `docs/formats/keyslots.md`; this module is its pure half (parse,
//! unlock, make slots, plan changes), the data directory reads and writes the file.
//!
//! A slot is a P-256 key pair: the private key is sealed under the key-encryption key that the
//! slot's secret gives (a slow KDF for passphrases and passwords, HKDF for random keys); each
//! purpose key is wrapped to the slot's public key ([`wrap`]). So unlocking a slot needs its
//! secret, while adding a key to a slot (a rotation) needs only the key and the slot's public
//! key. Which keys a slot carries is fixed by its holder ([`Holder::purposes`]) and checked when
//! the file is read: an auditor's slot has no wrap of the `config` key to unwrap.
//!
//! Changes that also touch the database are two-step; the file records the intent as
//! [`Pending`] with a transaction id, and whoever opens the store next settles it by looking
//! for that id in the database (committed: finish; not: roll back).

mod ring;
pub mod wrap;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::kdf::{KdfError, KdfParams};
use crate::keyring::Purpose;
use crate::password::Password;
use crate::rbac::{role_key_purposes, service_key_purposes, Role, ServiceKind};
use crate::report::report;
use crate::secret::{Key32, Passphrase, SecretString};

pub use ring::{KeyRing, NotCarried};
pub use wrap::WrapError;

pub const FORMAT_NAME: &str = "warden-keyslots";
pub const FORMAT_VERSION: u32 = 1;

/// What stands for the file's `digest` while the digest is computed: 64 ASCII zeros.
pub const DIGEST_PLACEHOLDER: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The largest `keyslots.json` accepted (thousands of users fit).
pub const FILE_LIMIT: u64 = 16 * 1024 * 1024;

const LOOKUP_LABEL: &[u8] = b"warden keyslot user v1";
const PRIVATE_KEY_LABEL: &[u8] = b"warden keyslot private key v1";
const WRAP_LABEL: &[u8] = b"warden keyslot wrap v1";
const KEK_LABEL: &[u8] = b"warden keyslot kek v1";

/// The key check of `docs/formats/keys.md`: `HMAC-SHA256(K, "warden key check v1" ‖ 0 ‖ P)`.
pub fn key_check(key: &Key32, purpose: Purpose) -> [u8; 32] {
    crate::mac::hmac_sha256_parts(
        key.expose_secret(),
        &[b"warden key check v1\0", purpose.name().as_bytes()],
    )
}

/// Why a slot file or a slot could not be used, sorted by cause.
#[derive(Debug, thiserror::Error)]
pub enum KeySlotError {
    /// The secret does not open the slot (exit code 4 for a passphrase; a failed sign-in for a
    /// password).
    #[error("the {0} does not open its key slot")]
    WrongSecret(&'static str),
    /// The file does not parse or breaks a rule of the format: damage (exit code 3).
    #[error("keyslots.json is damaged: {0}; restore it from a backup")]
    Malformed(String),
    #[error("keyslots.json version {0} is not supported by this warden (expected 1)")]
    UnsupportedVersion(u32),
    /// The file's bytes do not match its digest: damaged on disk or edited, before any secret
    /// is tried (so no sign-in is counted against anyone).
    #[error("keyslots.json is damaged: its content does not match its digest (changed outside warden, or a disk error); restore it from a backup")]
    DigestMismatch,
    /// A wrap that should open does not, or a key does not match its check: the file was
    /// modified.
    #[error("key slot {slot}: the `{purpose}` key does not open or does not match its key check (a modified keyslots.json)")]
    Damaged { slot: String, purpose: Purpose },
    #[error("keyslots.json: {what}")]
    Kdf {
        what: String,
        #[source]
        source: Box<KdfError>,
    },
    #[error("there is no {0} key slot")]
    NoSlot(String),
    #[error("{0} have no password and therefore no key slot")]
    NoKeysForRole(Role),
    #[error("a {0} slot is unlocked with another kind of secret")]
    WrongKindOfSecret(&'static str),
    #[error(transparent)]
    NotCarried(#[from] NotCarried),
    #[error("a rotation of the `{0}` key is already under way; finish it first (`warden keys rotate {0}`)")]
    RotationUnderWay(Purpose),
    #[error("another change to the key slots ({0}) is not settled yet; open the data directory once to settle it")]
    PendingChange(String),
    #[error("the `{0}` key has no rotation under way")]
    NoRotation(Purpose),
}

impl KeySlotError {
    /// Why a new change must wait for `other`: a rotation of files (`recordings`, `config`)
    /// is finished by running it again; any other change is settled by the next open.
    pub fn unsettled(other: &Pending) -> Self {
        match other.rotate {
            Some(purpose @ (Purpose::Recordings | Purpose::Config)) => {
                Self::RotationUnderWay(purpose)
            }
            _ => Self::PendingChange(other.action.clone()),
        }
    }

    /// The file was changed or damaged (exit code 3): it does not parse, does not match its
    /// digest, or a wrap or key check fails.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Self::Damaged { .. } | Self::Malformed(_) | Self::DigestMismatch
        )
    }
}

/// A time the format says is RFC 3339.
fn check_rfc3339(value: &str, field: &str) -> Result<(), KeySlotError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(drop)
        .map_err(|_| malformed(format!("{field} is not an RFC 3339 time")))
}

fn malformed(what: impl Into<String>) -> KeySlotError {
    KeySlotError::Malformed(what.into())
}

/// The opaque id of a person's slot: `HMAC-SHA256(lookup_salt, label ‖ 0 ‖ name)[0..16]`, so the
/// file does not list user names (anyone holding it can still test a guessed name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupId(String);

impl LookupId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose slot it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// The master passphrase (administration and break-glass).
    Master,
    /// The recovery key shown once at `init` (for a safe or an escrow).
    Recovery,
    /// A person, by lookup id.
    User(LookupId),
    /// A daemon, unlocked by a key file or a systemd credential.
    Service(ServiceKind),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Master => f.write_str("master"),
            Self::Recovery => f.write_str("recovery"),
            Self::User(id) => write!(f, "user:{}", id.0),
            Self::Service(kind) => write!(f, "service:{}", kind.slot_name()),
        }
    }
}

impl Owner {
    fn parse(text: &str) -> Result<Self, KeySlotError> {
        match text {
            "master" => return Ok(Self::Master),
            "recovery" => return Ok(Self::Recovery),
            _ => {}
        }
        if let Some(id) = text.strip_prefix("user:") {
            if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Ok(Self::User(LookupId(id.to_owned())));
            }
        }
        if let Some(kind) = text
            .strip_prefix("service:")
            .and_then(ServiceKind::from_slot_name)
        {
            return Ok(Self::Service(kind));
        }
        Err(malformed(format!("unknown slot owner {text:?}")))
    }

    /// What the slot's secret is called, in messages.
    pub fn secret_name(&self) -> &'static str {
        match self {
            Self::Master => "master passphrase",
            Self::Recovery => "recovery key",
            Self::User(_) => "password",
            Self::Service(_) => "service key",
        }
    }
}

/// Whose keys a slot carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Holder {
    /// Every key: the master passphrase and the recovery key.
    All,
    Role(Role),
    Service(ServiceKind),
}

impl Holder {
    /// The keys this holder's slots carry (docs/access-control.md, "Keys by role").
    pub fn purposes(self) -> &'static [Purpose] {
        match self {
            Self::All => &Purpose::IN_SLOTS,
            Self::Role(role) => role_key_purposes(role),
            Self::Service(kind) => service_key_purposes(kind),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Role(role) => role.name(),
            Self::Service(kind) => kind.slot_name(),
        }
    }

    fn parse(text: &str) -> Result<Self, KeySlotError> {
        if text == "all" {
            return Ok(Self::All);
        }
        if let Some(kind) = ServiceKind::from_slot_name(text) {
            return Ok(Self::Service(kind));
        }
        match text.parse::<Role>() {
            Ok(role) if role.name() == text => Ok(Self::Role(role)),
            _ => Err(malformed(format!("unknown slot holder {text:?}"))),
        }
    }

    /// The list of carried keys, for messages.
    fn carried(self) -> &'static str {
        match self {
            Self::All => "every key",
            Self::Role(Role::Technician) => {
                "database, audit (no slot: technicians have no password)"
            }
            Self::Role(Role::Operator) | Self::Role(Role::Auditor) => {
                "database, recordings, audit, phi"
            }
            Self::Role(Role::Administrator) => "every key",
            Self::Service(ServiceKind::ShimDaemon) => {
                "database, recordings, config, audit, signing"
            }
            Self::Service(ServiceKind::OtaServer) => "database, config, audit, signing",
        }
    }
}

/// How a slot's key-encryption key is made from its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", deny_unknown_fields)]
pub enum SlotKdf {
    #[serde(rename = "PBKDF2-HMAC-SHA256")]
    Pbkdf2Sha256 { iterations: u32 },
    #[serde(rename = "Argon2id")]
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    /// For random 256-bit secrets (recovery and service keys): no stretching needed.
    #[serde(rename = "HKDF-SHA256")]
    HkdfSha256 {},
}

impl SlotKdf {
    fn password(params: &KdfParams) -> Self {
        match *params {
            KdfParams::Pbkdf2Sha256 { iterations } => Self::Pbkdf2Sha256 { iterations },
            KdfParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => Self::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            },
        }
    }

    fn stretching(&self) -> Option<KdfParams> {
        match *self {
            Self::Pbkdf2Sha256 { iterations } => Some(KdfParams::Pbkdf2Sha256 { iterations }),
            Self::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => Some(KdfParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            }),
            Self::HkdfSha256 {} => None,
        }
    }

    /// A short human description.
    pub fn describe(&self) -> String {
        match self.stretching() {
            Some(params) => params.describe(),
            None => "HKDF-SHA256".to_owned(),
        }
    }
}

/// What unlocks a slot.
pub enum SlotSecret<'a> {
    Passphrase(&'a Passphrase),
    Password(&'a Password),
    /// A recovery key or a service key.
    Key(&'a Key32),
}

impl SlotSecret<'_> {
    fn text_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Passphrase(p) => Some(p.expose_secret().as_bytes()),
            Self::Password(p) => Some(p.expose_secret().as_bytes()),
            Self::Key(_) => None,
        }
    }
}

/// One purpose key wrapped to a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wrap {
    pub purpose: Purpose,
    pub version: u32,
    /// Base64 of `ephemeral public key (65) ‖ nonce (12) ‖ ciphertext (32) ‖ tag (16)`.
    pub wrap: String,
}

/// One key slot, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// 16 hex digits, random, unique in the file.
    pub id: String,
    /// `master`, `recovery`, `user:<lookup id>`, `service:shim`, `service:ota`.
    pub owner: String,
    /// `all`, a role name, or a service name (`shim`, `ota`).
    pub holder: String,
    /// RFC 3339 UTC (informational).
    pub created: String,
    pub kdf: SlotKdf,
    /// Base64, 16 to 64 bytes.
    pub salt: String,
    /// Base64 of the uncompressed P-256 public key (65 bytes).
    pub public_key: String,
    /// Base64 of `nonce (12) ‖ AES-256-GCM(private scalar (32)) ‖ tag (16)`.
    pub sealed_private_key: String,
    pub wraps: Vec<Wrap>,
}

impl Slot {
    pub fn owner(&self) -> Owner {
        Owner::parse(&self.owner).expect("checked when the file was read")
    }

    pub fn holder(&self) -> Holder {
        Holder::parse(&self.holder).expect("checked when the file was read")
    }

    /// The associated data of the sealed private key: binds it to this slot's id, owner,
    /// holder and public key.
    fn private_key_aad(&self, public_key: &[u8]) -> Vec<u8> {
        [
            PRIVATE_KEY_LABEL,
            b"\0",
            self.id.as_bytes(),
            b"\0",
            self.owner.as_bytes(),
            b"\0",
            self.holder.as_bytes(),
            b"\0",
            public_key,
        ]
        .concat()
    }

    fn public_key_bytes(&self) -> Result<Vec<u8>, KeySlotError> {
        decode(&self.public_key, "public_key")
    }

    /// The key-encryption key `secret` gives for this slot.
    fn kek(&self, secret: &SlotSecret<'_>) -> Result<Key32, KeySlotError> {
        let salt = decode(&self.salt, "salt")?;
        match (self.kdf.stretching(), secret.text_bytes(), secret) {
            (Some(params), Some(text), _) => {
                params
                    .derive(text, &salt)
                    .map_err(|source| KeySlotError::Kdf {
                        what: format!("slot {}", self.id),
                        source: Box::new(source),
                    })
            }
            (None, None, SlotSecret::Key(key)) => {
                let info = [KEK_LABEL, b"\0", self.id.as_bytes()].concat();
                let kek = crate::mac::hkdf_sha256(key.expose_secret(), &salt, &info);
                Ok(Key32::from_bytes(*kek))
            }
            _ => Err(KeySlotError::WrongKindOfSecret(self.owner().secret_name())),
        }
    }
}

fn wrap_info(slot_id: &str, purpose: Purpose, version: u32) -> Vec<u8> {
    [
        WRAP_LABEL,
        b"\0",
        slot_id.as_bytes(),
        b"\0",
        purpose.name().as_bytes(),
        b"\0",
        &version.to_be_bytes(),
    ]
    .concat()
}

fn decode(value: &str, field: &str) -> Result<Vec<u8>, KeySlotError> {
    B64.decode(value)
        .map_err(|_| malformed(format!("{field} is not valid base64")))
}

/// A purpose key's public facts: its version and key check (and for `signing`, the Ed25519
/// public key); while a rotation is under way, the same for the next version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    pub version: u32,
    /// Base64 of the key check (32 bytes).
    pub check: String,
    /// `signing` only: base64 of the Ed25519 public key (32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextKey>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextKey {
    pub version: u32,
    pub check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

fn key_info(purpose: Purpose, _version: u32, key: &Key32) -> (String, Option<String>) {
    let public = (purpose == Purpose::Signing)
        .then(|| B64.encode(crate::signing::CheckpointSigner::from_seed(key).public_key()));
    (B64.encode(key_check(key, purpose)), public)
}

/// A change that also commits in the database, not settled yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// 32 hex digits; the database transaction that commits the change records it.
    pub txid: String,
    /// The audit action of the change, e.g. `user.passwd`.
    pub action: String,
    /// Slots that exist only if the change commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Slots that go when the change commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// A purpose whose next version becomes current when the change commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate: Option<Purpose>,
}

impl Pending {
    pub fn new(action: &str) -> Self {
        Self {
            txid: hex::encode(crate::rand::array::<16>()),
            action: action.to_owned(),
            add: Vec::new(),
            remove: Vec::new(),
            rotate: None,
        }
    }

    pub fn txid_bytes(&self) -> Vec<u8> {
        hex::decode(&self.txid).unwrap_or_default()
    }
}

/// The whole `keyslots.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotFile {
    pub format: String,
    pub version: u32,
    /// +1 at every write: a writer that read generation N writes N+1 only if the file is still
    /// at N (under the slot lock).
    pub generation: u64,
    pub created: String,
    /// Base64 of 32 random bytes: the key of the user lookup ids.
    pub lookup_salt: String,
    pub keys: BTreeMap<Purpose, KeyInfo>,
    pub slots: Vec<Slot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The digest as read (checked by [`parse`](Self::parse)); [`to_json`](Self::to_json)
    /// writes the digest of what it writes.
    #[serde(default, skip_serializing)]
    digest: Option<String>,
}

/// A slot opened with its secret: who it is, and the keys it carries.
#[derive(Clone)]
pub struct Unlocked {
    pub slot_id: String,
    pub owner: Owner,
    pub holder: Holder,
    pub keys: KeyRing,
}

impl SlotFile {
    /// A file with no slots yet for the keys in `ring` (every purpose, version 1).
    pub fn new(created: String, ring: &KeyRing) -> Result<Self, KeySlotError> {
        let mut keys = BTreeMap::new();
        for purpose in Purpose::IN_SLOTS {
            let key = ring.require(purpose)?;
            let version = ring.current_version(purpose).unwrap_or(1);
            let (check, public_key) = key_info(purpose, version, key);
            keys.insert(
                purpose,
                KeyInfo {
                    version,
                    check,
                    public_key,
                    next: None,
                },
            );
        }
        Ok(Self {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            generation: 1,
            created,
            lookup_salt: B64.encode(crate::rand::array::<32>()),
            keys,
            slots: Vec::new(),
            pending: None,
            digest: None,
        })
    }

    /// Parses and checks everything that can be checked without a secret, the digest before the
    /// slots: a damaged file is reported as damage, never as a wrong secret.
    pub fn parse(json: &[u8]) -> Result<Self, KeySlotError> {
        let mut file: Self = serde_json::from_slice(json).map_err(|e| malformed(report(&e)))?;
        if file.format != FORMAT_NAME {
            return Err(malformed(format!(
                "`format` is {:?}, expected {FORMAT_NAME:?}",
                file.format
            )));
        }
        // The digest before the version: a flipped digit of `version` is damage, and only a
        // file whose bytes are intact can come from a newer warden. (A file written before
        // digests were added has none; the next write adds it.)
        if let Some(digest) = file.digest.take() {
            check_digest(json, &digest)?;
        }
        if file.version != FORMAT_VERSION {
            return Err(KeySlotError::UnsupportedVersion(file.version));
        }
        if file.generation == 0 {
            return Err(malformed("generation 0 (it starts at 1)"));
        }
        check_rfc3339(&file.created, "created")?;
        if decode(&file.lookup_salt, "lookup_salt")?.len() != 32 {
            return Err(malformed("lookup_salt is not 32 bytes"));
        }
        for purpose in Purpose::IN_SLOTS {
            let info = file
                .keys
                .get(&purpose)
                .ok_or_else(|| malformed(format!("no entry for the `{purpose}` key")))?;
            check_key_info(
                purpose,
                info.version,
                &info.check,
                info.public_key.as_deref(),
            )?;
            if let Some(next) = &info.next {
                if next.version != info.version + 1 {
                    return Err(malformed(format!(
                        "keys.{purpose}.next.version is not version + 1"
                    )));
                }
                check_key_info(
                    purpose,
                    next.version,
                    &next.check,
                    next.public_key.as_deref(),
                )?;
            }
        }
        let mut ids = BTreeSet::new();
        for slot in &file.slots {
            file.check_slot(slot)?;
            if !ids.insert(slot.id.as_str()) {
                return Err(malformed(format!("slot id {} appears twice", slot.id)));
            }
        }
        if let Some(pending) = &file.pending {
            if pending.txid.len() != 32 || hex::decode(&pending.txid).is_err() {
                return Err(malformed("pending.txid is not 32 hex digits"));
            }
            for id in pending.add.iter().chain(&pending.remove) {
                if !ids.contains(id.as_str()) {
                    return Err(malformed(format!(
                        "pending change names slot {id}, which is not in the file"
                    )));
                }
            }
            if let Some(purpose) = pending.rotate {
                if file.keys[&purpose].next.is_none() {
                    return Err(malformed(format!(
                        "pending rotation of `{purpose}` without a next version"
                    )));
                }
            }
        }
        Ok(file)
    }

    fn check_slot(&self, slot: &Slot) -> Result<(), KeySlotError> {
        let at = |what: &str| malformed(format!("slot {}: {what}", slot.id));
        if slot.id.len() != 16
            || !slot
                .id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(at("the id is not 16 hex digits"));
        }
        check_rfc3339(&slot.created, &format!("slot {}: created", slot.id))?;
        let owner = Owner::parse(&slot.owner)?;
        let holder = Holder::parse(&slot.holder)?;
        let expected_holder = match &owner {
            Owner::Master | Owner::Recovery => Some(Holder::All),
            Owner::Service(kind) => Some(Holder::Service(*kind)),
            Owner::User(_) => None,
        };
        match (expected_holder, holder) {
            (Some(expected), found) if expected != found => {
                return Err(at("its holder does not match its owner"))
            }
            (None, Holder::Role(Role::Technician) | Holder::All | Holder::Service(_)) => {
                return Err(at(
                    "a person's slot must hold an operator, administrator or auditor's keys",
                ))
            }
            _ => {}
        }
        let stretched = slot.kdf.stretching();
        match (&owner, &stretched) {
            (Owner::Master | Owner::User(_), None) => {
                return Err(at("a passphrase or password slot needs PBKDF2 or Argon2id"))
            }
            (Owner::Recovery | Owner::Service(_), Some(_)) => {
                return Err(at("a recovery or service key slot uses HKDF-SHA256"))
            }
            _ => {}
        }
        // Parameters outside warden's bounds break a rule of the format: damage, like any other.
        if let Some(params) = stretched {
            params.validate().map_err(|e| at(&e.to_string()))?;
        }
        let salt = decode(&slot.salt, "salt")?;
        crate::kdf::check_salt_len(salt.len()).map_err(|e| at(&format!("salt: {e}")))?;
        let public = slot.public_key_bytes()?;
        wrap::check_public_key(&public).map_err(|_| at("the public key is not a P-256 point"))?;
        if decode(&slot.sealed_private_key, "sealed_private_key")?.len()
            != wrap::SEALED_PRIVATE_KEY_LEN
        {
            return Err(at("the sealed private key is not 60 bytes"));
        }
        let mut seen = BTreeSet::new();
        for w in &slot.wraps {
            if !holder.purposes().contains(&w.purpose) {
                return Err(at(&format!(
                    "it carries the `{}` key, which a slot held by `{}` does not carry",
                    w.purpose,
                    holder.name()
                )));
            }
            let info = &self.keys[&w.purpose];
            let known = w.version == info.version
                || info.next.as_ref().is_some_and(|n| n.version == w.version);
            if !known {
                return Err(at(&format!(
                    "a wrap of `{}` version {} names no key",
                    w.purpose, w.version
                )));
            }
            if !seen.insert((w.purpose, w.version)) {
                return Err(at("a key is wrapped twice"));
            }
            if decode(&w.wrap, "wrap")?.len() != wrap::WRAP_LEN {
                return Err(at("a wrap is not 125 bytes"));
            }
        }
        Ok(())
    }

    /// The file's text, its digest last.
    pub fn to_json(&self) -> String {
        let text = serde_json::to_string_pretty(self).expect("SlotFile always serializes");
        let body = text
            .strip_suffix("\n}")
            .expect("a pretty JSON object ends with a brace");
        seal_digest(&format!(
            "{body},\n  \"digest\": \"{DIGEST_PLACEHOLDER}\"\n}}\n"
        ))
    }

    /// The owner id of user `username` (lower case, as stored).
    pub fn user(&self, username: &str) -> Owner {
        let salt = B64.decode(&self.lookup_salt).unwrap_or_default();
        let mac = crate::mac::hmac_sha256_parts(
            &salt,
            &[
                LOOKUP_LABEL,
                b"\0",
                username.to_ascii_lowercase().as_bytes(),
            ],
        );
        Owner::User(LookupId(hex::encode(&mac[..16])))
    }

    /// The slots of `owner` (normally one; two while a change of it is pending).
    pub fn slots_of(&self, owner: &Owner) -> impl Iterator<Item = &Slot> + '_ {
        let text = owner.to_string();
        self.slots.iter().filter(move |s| s.owner == text)
    }

    /// Spends what opening a person's slot costs, for a name that has none, so that the time
    /// a failed sign-in takes does not say whether the name has a slot.
    pub fn decoy_unlock(&self, password: &Password) {
        let params = self
            .slots
            .iter()
            .find(|s| s.owner.starts_with("user:"))
            .and_then(|s| s.kdf.stretching());
        if let Some(params) = params {
            let salt: [u8; 32] = crate::rand::array();
            let _ = params.derive(password.expose_secret().as_bytes(), &salt);
        }
    }

    pub fn slot(&self, id: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// Opens `slot` with `secret`: unseals its private key, unwraps every key it carries and
    /// checks each against its key check.
    pub fn unlock(&self, slot: &Slot, secret: &SlotSecret<'_>) -> Result<Unlocked, KeySlotError> {
        let owner = slot.owner();
        let holder = slot.holder();
        let kek = slot.kek(secret)?;
        let public = slot.public_key_bytes()?;
        let sealed = decode(&slot.sealed_private_key, "sealed_private_key")?;
        let private = wrap::open_private(&kek, &slot.private_key_aad(&public), &sealed)
            .map_err(|_| KeySlotError::WrongSecret(owner.secret_name()))?;
        let mut keys = KeyRing::new(holder.name(), holder.carried());
        for w in &slot.wraps {
            let damaged = || KeySlotError::Damaged {
                slot: slot.id.clone(),
                purpose: w.purpose,
            };
            let bytes = decode(&w.wrap, "wrap")?;
            let key = wrap::unwrap(
                &private,
                &public,
                &wrap_info(&slot.id, w.purpose, w.version),
                &bytes,
            )
            .map_err(|_| damaged())?;
            let info = &self.keys[&w.purpose];
            let (expected, expected_public, current) = if info.version == w.version {
                (&info.check, info.public_key.as_deref(), true)
            } else {
                let next = info.next.as_ref().ok_or_else(damaged)?;
                (&next.check, next.public_key.as_deref(), false)
            };
            let expected = decode(expected, "check")?;
            if !crate::mac::ct_eq(&key_check(&key, w.purpose), &expected) {
                return Err(damaged());
            }
            // The signing key's public half, which auditors are given from this file, must be
            // the seed's: the file's other fields are bound by the cryptography, this one here.
            if key_info(w.purpose, w.version, &key).1.as_deref() != expected_public {
                return Err(damaged());
            }
            keys.insert(w.purpose, w.version, key, current);
        }
        // A slot must carry every version of every key of its holder.
        for purpose in holder.purposes() {
            let info = &self.keys[purpose];
            let mut wanted = vec![info.version];
            wanted.extend(info.next.as_ref().map(|n| n.version));
            for version in wanted {
                if keys.version(*purpose, version).is_none() {
                    return Err(KeySlotError::Damaged {
                        slot: slot.id.clone(),
                        purpose: *purpose,
                    });
                }
            }
        }
        Ok(Unlocked {
            slot_id: slot.id.clone(),
            owner,
            holder,
            keys,
        })
    }

    /// Makes a slot for `owner` holding `holder`'s keys from `ring` (which must hold every
    /// version the file lists for them), unlocked by `secret`. `stretch` is the KDF for a
    /// passphrase or password; random keys use HKDF. The slot is not added to the file.
    pub fn make_slot(
        &self,
        owner: Owner,
        holder: Holder,
        secret: &SlotSecret<'_>,
        stretch: Option<&KdfParams>,
        ring: &KeyRing,
        created: String,
    ) -> Result<Slot, KeySlotError> {
        if let Holder::Role(Role::Technician) = holder {
            return Err(KeySlotError::NoKeysForRole(Role::Technician));
        }
        let kdf = match (secret, stretch) {
            (SlotSecret::Key(_), _) => SlotKdf::HkdfSha256 {},
            (_, Some(params)) => SlotKdf::password(params),
            (_, None) => SlotKdf::password(&KdfParams::default_pbkdf2()),
        };
        let private = wrap::PrivateScalar::generate();
        let public = private
            .public_key()
            .expect("a generated key has a public key");
        let mut slot = Slot {
            id: hex::encode(crate::rand::array::<8>()),
            owner: owner.to_string(),
            holder: holder.name().to_owned(),
            created,
            kdf,
            salt: B64.encode(crate::rand::array::<32>()),
            public_key: B64.encode(public),
            sealed_private_key: String::new(),
            wraps: Vec::new(),
        };
        let kek = slot.kek(secret)?;
        slot.sealed_private_key = B64.encode(wrap::seal_private(
            &kek,
            &slot.private_key_aad(&public),
            &private,
            crate::rand::array(),
        ));
        for purpose in holder.purposes() {
            let info = &self.keys[purpose];
            let mut versions = vec![info.version];
            versions.extend(info.next.as_ref().map(|n| n.version));
            for version in versions {
                let key = ring.version(*purpose, version).ok_or(NotCarried {
                    purpose: *purpose,
                    holder: holder.name(),
                    carried: holder.carried(),
                })?;
                slot.wraps
                    .push(Self::wrap_for(&slot.id, &public, *purpose, version, key)?);
            }
        }
        Ok(slot)
    }

    fn wrap_for(
        slot_id: &str,
        public: &[u8],
        purpose: Purpose,
        version: u32,
        key: &Key32,
    ) -> Result<Wrap, KeySlotError> {
        let wrapped = wrap::wrap(public, &wrap_info(slot_id, purpose, version), key)
            .map_err(|e| malformed(format!("slot {slot_id}: {e}")))?;
        Ok(Wrap {
            purpose,
            version,
            wrap: B64.encode(wrapped),
        })
    }

    pub fn add_slot(&mut self, slot: Slot) {
        self.slots.push(slot);
    }

    pub fn remove_slot(&mut self, id: &str) {
        self.slots.retain(|s| s.id != id);
    }

    /// Records `pending` (refused while another change is unsettled).
    pub fn set_pending(&mut self, pending: Pending) -> Result<(), KeySlotError> {
        if let Some(other) = &self.pending {
            return Err(KeySlotError::unsettled(other));
        }
        self.pending = Some(pending);
        Ok(())
    }

    /// The change committed in the database: drop the slots it replaced, promote a rotated key.
    pub fn settle_committed(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        for id in &pending.remove {
            self.remove_slot(id);
        }
        if let Some(purpose) = pending.rotate {
            self.finish_rotation(purpose);
        }
    }

    /// The change did not commit: drop the slots it added, forget a key it was rotating to.
    pub fn settle_rolled_back(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        for id in &pending.add {
            self.remove_slot(id);
        }
        if let Some(purpose) = pending.rotate {
            self.abort_rotation(purpose);
        }
    }

    /// Starts rotating `purpose` to `new_key`: the next version's key check, and a wrap of it
    /// for every slot whose holder carries `purpose` (to each slot's public key: no secret
    /// needed).
    pub fn begin_rotation(
        &mut self,
        purpose: Purpose,
        new_key: &Key32,
    ) -> Result<u32, KeySlotError> {
        let info = self.keys.get(&purpose).expect("every purpose has an entry");
        if info.next.is_some() {
            return Err(KeySlotError::RotationUnderWay(purpose));
        }
        let version = info.version + 1;
        let (check, public_key) = key_info(purpose, version, new_key);
        let mut wraps = Vec::new();
        for slot in &self.slots {
            if slot.holder().purposes().contains(&purpose) {
                let public = slot.public_key_bytes()?;
                wraps.push((
                    slot.id.clone(),
                    Self::wrap_for(&slot.id, &public, purpose, version, new_key)?,
                ));
            }
        }
        for (id, wrap) in wraps {
            if let Some(slot) = self.slots.iter_mut().find(|s| s.id == id) {
                slot.wraps.push(wrap);
            }
        }
        self.keys.get_mut(&purpose).expect("present").next = Some(NextKey {
            version,
            check,
            public_key,
        });
        Ok(version)
    }

    /// The next version of `purpose` becomes the current one; the old version's wraps go.
    pub fn finish_rotation(&mut self, purpose: Purpose) {
        let info = self
            .keys
            .get_mut(&purpose)
            .expect("every purpose has an entry");
        let Some(next) = info.next.take() else {
            return;
        };
        let old = info.version;
        info.version = next.version;
        info.check = next.check;
        info.public_key = next.public_key;
        for slot in &mut self.slots {
            slot.wraps
                .retain(|w| !(w.purpose == purpose && w.version == old));
        }
    }

    /// Forgets the next version of `purpose` and its wraps.
    pub fn abort_rotation(&mut self, purpose: Purpose) {
        let info = self
            .keys
            .get_mut(&purpose)
            .expect("every purpose has an entry");
        let Some(next) = info.next.take() else {
            return;
        };
        for slot in &mut self.slots {
            slot.wraps
                .retain(|w| !(w.purpose == purpose && w.version == next.version));
        }
    }

    /// The version numbers of `purpose`: current and, during a rotation, next.
    pub fn key_versions(&self, purpose: Purpose) -> (u32, Option<u32>) {
        let info = &self.keys[&purpose];
        (info.version, info.next.as_ref().map(|n| n.version))
    }

    /// The current checkpoint public key (Ed25519), and the next one during a rotation.
    pub fn signing_public_keys(&self) -> Vec<[u8; 32]> {
        let info = &self.keys[&Purpose::Signing];
        [
            info.public_key.as_deref(),
            info.next.as_ref().and_then(|n| n.public_key.as_deref()),
        ]
        .into_iter()
        .flatten()
        .filter_map(|text| B64.decode(text).ok()?.try_into().ok())
        .collect()
    }
}

/// `text` with its one [`DIGEST_PLACEHOLDER`] replaced by the digest: `hex(SHA-256(text))`.
pub fn seal_digest(text: &str) -> String {
    let digest = hex::encode(crate::mac::sha256(text.as_bytes()));
    text.replacen(DIGEST_PLACEHOLDER, &digest, 1)
}

/// The file's bytes, with `digest`'s 64 hex digits (found exactly once) read as the
/// placeholder, hash to `digest`.
fn check_digest(json: &[u8], digest: &str) -> Result<(), KeySlotError> {
    if digest.len() != 64
        || !digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(malformed("`digest` is not 64 lowercase hex digits"));
    }
    let mut at = json
        .windows(64)
        .enumerate()
        .filter(|(_, w)| *w == digest.as_bytes())
        .map(|(i, _)| i);
    let (Some(at), None) = (at.next(), at.next()) else {
        return Err(KeySlotError::DigestMismatch);
    };
    let mut text = json.to_vec();
    text[at..at + 64].copy_from_slice(DIGEST_PLACEHOLDER.as_bytes());
    if hex::encode(crate::mac::sha256(&text)) != digest {
        return Err(KeySlotError::DigestMismatch);
    }
    Ok(())
}

fn check_key_info(
    purpose: Purpose,
    version: u32,
    check: &str,
    public_key: Option<&str>,
) -> Result<(), KeySlotError> {
    if version == 0 {
        return Err(malformed(format!("keys.{purpose}: version 0")));
    }
    if decode(check, "check")?.len() != 32 {
        return Err(malformed(format!("keys.{purpose}.check is not 32 bytes")));
    }
    match (purpose, public_key) {
        (Purpose::Signing, Some(text)) => {
            crate::signing::CheckpointKey::from_bytes(&decode(text, "public_key")?)
                .map_err(|e| malformed(format!("keys.signing.public_key: {e}")))?;
        }
        (Purpose::Signing, None) => return Err(malformed("keys.signing has no public_key")),
        (_, Some(_)) => return Err(malformed(format!("keys.{purpose} has a public_key"))),
        (_, None) => {}
    }
    Ok(())
}

/// A recovery key: 256 random bits, shown once as 8 groups of 8 hex digits.
pub struct RecoveryKey(Key32);

impl RecoveryKey {
    pub fn generate() -> Self {
        Self(Key32::random())
    }

    pub fn key(&self) -> &Key32 {
        &self.0
    }

    /// `xxxxxxxx-xxxxxxxx-…` (71 characters).
    pub fn to_text(&self) -> SecretString {
        let hex = zeroize::Zeroizing::new(hex::encode(self.0.expose_secret()));
        let groups: Vec<&str> = (0..8).map(|i| &hex[i * 8..i * 8 + 8]).collect();
        SecretString::new(groups.join("-"))
    }

    /// Accepts the shown form, with or without dashes and white space, in either case.
    pub fn parse(text: &str) -> Option<Self> {
        parse_hex_key(text).map(Self)
    }
}

/// A daemon's service key: 256 random bits, kept in a file (one line of 64 hex digits) or a
/// systemd credential.
pub struct ServiceKey(Key32);

impl ServiceKey {
    pub fn generate() -> Self {
        Self(Key32::random())
    }

    pub fn key(&self) -> &Key32 {
        &self.0
    }

    /// The file's content: 64 hex digits and a newline.
    pub fn to_file_text(&self) -> SecretString {
        SecretString::new(format!("{}\n", hex::encode(self.0.expose_secret())))
    }

    pub fn parse(text: &str) -> Option<Self> {
        parse_hex_key(text).map(Self)
    }
}

fn parse_hex_key(text: &str) -> Option<Key32> {
    let digits: zeroize::Zeroizing<String> = zeroize::Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect(),
    );
    if digits.len() != 64 {
        return None;
    }
    let bytes = zeroize::Zeroizing::new(hex::decode(digits.as_str()).ok()?);
    Key32::from_slice(&bytes)
}

#[cfg(test)]
mod tests;
