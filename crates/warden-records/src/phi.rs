//! The `phi` key in the hands of someone allowed to use it, and sealing a version's PHI fields.
//!
//! A [`PhiKey`] is made only from an [`Authorized`] for `records.phi` and the key itself, so
//! code that seals or opens PHI cannot be reached without that check having been made (and,
//! once key slots land, without the key a role's slot carries). The sealed value is AES-256-GCM
//! (`warden_core::aead`: random nonce ‖ ciphertext ‖ tag) of the PHI fields' canonical JSON,
//! with `"warden record phi v1" ‖ 0 ‖ collection ‖ 0 ‖ record id ‖ 0 ‖ version (u64 BE)` as
//! associated data: sealed PHI copied to another record or version does not open.

use serde_json::{Map, Value};
use warden_core::aead;
use warden_core::rbac::Permission;
use warden_core::secret::{Key32, SecretBytes};
use warden_store::identity::{Authorized, WrongAuthorization};

const LABEL: &[u8] = b"warden record phi v1";

/// The `phi` purpose key, held for one actor who was allowed `records.phi`. No `Debug`, no
/// `Clone`: the key is zeroized when this is dropped.
pub struct PhiKey {
    key: Key32,
    actor: String,
}

impl PhiKey {
    /// Takes the `phi` key for the actor of `by`, which must be an authorization for
    /// `records.phi`.
    pub fn new(by: &Authorized, key: Key32) -> Result<Self, WrongAuthorization> {
        by.check(Permission::RecordsPhi)?;
        Ok(Self {
            key,
            actor: by.actor_name().to_owned(),
        })
    }

    /// Whose key this is (the actor it was handed to).
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub(crate) fn seal(
        &self,
        collection: &str,
        record_id: &str,
        version: u64,
        fields: &Map<String, Value>,
    ) -> Vec<u8> {
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(fields).expect("a JSON object always serializes"),
        );
        aead::seal(
            &self.key,
            &label(collection, record_id, version),
            &plaintext,
        )
    }

    /// Opens a version's sealed PHI. `None` when it does not open (another key, another
    /// record or version, or changed bytes).
    pub(crate) fn open(
        &self,
        collection: &str,
        record_id: &str,
        version: u64,
        sealed: &[u8],
    ) -> Option<Map<String, Value>> {
        let plaintext: SecretBytes =
            aead::open(&self.key, &label(collection, record_id, version), sealed).ok()?;
        serde_json::from_slice(plaintext.expose_secret()).ok()
    }
}

fn label(collection: &str, record_id: &str, version: u64) -> Vec<u8> {
    [
        LABEL,
        b"\0",
        collection.as_bytes(),
        b"\0",
        record_id.as_bytes(),
        b"\0",
        &version.to_be_bytes(),
    ]
    .concat()
}
