//! The auditor's copy of the audit chain's initial key `k0`, sealed under a separate auditor
//! passphrase and exported once, at `warden init`.
//!
//! With it an auditor verifies the whole chain from genesis, while the box itself only keeps the
//! current epoch key and so cannot rewrite earlier epochs. The file is JSON:
//!
//! ```json
//! { "format": "warden-auditor-key", "version": 1, "chain_id": "<32 hex>",
//!   "key_id": "<16 hex, public commitment to k0>", "kdf": { … }, "salt": "<base64>",
//!   "sealed_key": "<base64 of AES-256-GCM nonce ‖ ciphertext ‖ tag>" }
//! ```
//!
//! The sealing key is derived from the auditor passphrase with the file's KDF and salt; the
//! associated data is `"warden auditor key v1" ‖ chain_id`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditKey, ChainId};
use crate::kdf::{KdfError, KdfParams};
use crate::report::report;
use crate::secret::Passphrase;

const FORMAT: &str = "warden-auditor-key";
const LABEL: &[u8] = b"warden auditor key v1";

// Implements: V53
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorKeyFile {
    pub format: String,
    pub version: u32,
    pub chain_id: String,
    pub key_id: String,
    pub kdf: KdfParams,
    pub salt: String,
    pub sealed_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditorKeyError {
    #[error("not a warden auditor key file: {0}")]
    Malformed(String),
    #[error("wrong auditor passphrase (or the auditor key file was modified)")]
    WrongPassphrase,
    #[error("the auditor passphrase has {0} characters; at least {min} are required", min = Passphrase::MIN_CHARS)]
    PassphraseTooShort(usize),
    #[error("this auditor key belongs to chain {file}, but the database holds chain {db}")]
    OtherChain { file: String, db: String },
    /// The file's KDF parameters or salt are outside what warden accepts.
    #[error("the auditor key file's KDF parameters")]
    Parameters(#[source] KdfError),
    #[error(transparent)]
    Kdf(#[from] KdfError),
}

impl AuditorKeyFile {
    /// Seals `k0` for the auditor.
    pub fn seal(
        k0: &AuditKey,
        chain_id: &ChainId,
        passphrase: &Passphrase,
        kdf: &KdfParams,
    ) -> Result<Self, AuditorKeyError> {
        if passphrase.char_count() < Passphrase::MIN_CHARS {
            return Err(AuditorKeyError::PassphraseTooShort(passphrase.char_count()));
        }
        let salt: [u8; 32] = crate::rand::array();
        let key = kdf.derive(passphrase.expose_secret().as_bytes(), &salt)?;
        let label = [LABEL, chain_id.as_bytes()].concat();
        let sealed = crate::aead::seal(&key, &label, k0.expose_secret());
        Ok(Self {
            format: FORMAT.into(),
            version: 1,
            chain_id: chain_id.to_string(),
            key_id: hex::encode(k0.key_id()),
            kdf: kdf.clone(),
            salt: B64.encode(salt),
            sealed_key: B64.encode(sealed),
        })
    }

    pub fn parse(json: &[u8]) -> Result<Self, AuditorKeyError> {
        let file: Self =
            serde_json::from_slice(json).map_err(|e| AuditorKeyError::Malformed(report(&e)))?;
        if file.format != FORMAT || file.version != 1 {
            return Err(AuditorKeyError::Malformed(format!(
                "format {:?} version {}",
                file.format, file.version
            )));
        }
        file.kdf.validate().map_err(AuditorKeyError::Parameters)?;
        let salt = B64
            .decode(&file.salt)
            .map_err(|_| AuditorKeyError::Malformed("salt is not base64".into()))?;
        crate::kdf::check_salt_len(salt.len()).map_err(AuditorKeyError::Parameters)?;
        Ok(file)
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("always serializes");
        text.push('\n');
        text
    }

    pub fn chain_id(&self) -> Result<ChainId, AuditorKeyError> {
        ChainId::from_hex(&self.chain_id)
            .ok_or_else(|| AuditorKeyError::Malformed("chain_id is not 32 hex digits".into()))
    }

    /// Opens the file with the auditor passphrase.
    pub fn open(&self, passphrase: &Passphrase) -> Result<(AuditKey, ChainId), AuditorKeyError> {
        let chain_id = self.chain_id()?;
        let salt = B64
            .decode(&self.salt)
            .map_err(|_| AuditorKeyError::Malformed("salt is not base64".into()))?;
        let sealed = B64
            .decode(&self.sealed_key)
            .map_err(|_| AuditorKeyError::Malformed("sealed_key is not base64".into()))?;
        let key = self
            .kdf
            .derive(passphrase.expose_secret().as_bytes(), &salt)?;
        let label = [LABEL, chain_id.as_bytes()].concat();
        let k0 = crate::aead::open(&key, &label, &sealed)
            .map_err(|_| AuditorKeyError::WrongPassphrase)?;
        let bytes: [u8; 32] = k0
            .expose_secret()
            .try_into()
            .map_err(|_| AuditorKeyError::Malformed("sealed key is not 32 bytes".into()))?;
        let k0 = AuditKey::from_bytes(bytes);
        if hex::encode(k0.key_id()) != self.key_id {
            return Err(AuditorKeyError::Malformed(
                "key_id does not match the sealed key".into(),
            ));
        }
        Ok((k0, chain_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: V53
    #[test]
    fn seal_open_and_wrong_passphrase() {
        let k0 = AuditKey::from_bytes([9; 32]);
        let chain = ChainId([1; 16]);
        let kdf = KdfParams::Pbkdf2Sha256 { iterations: 1000 };
        let pass = Passphrase::new("auditor passphrase 123".into());
        let file = AuditorKeyFile::seal(&k0, &chain, &pass, &kdf).unwrap();
        let parsed = AuditorKeyFile::parse(file.to_json().as_bytes()).unwrap();
        let (opened, id) = parsed.open(&pass).unwrap();
        assert_eq!(opened.expose_secret(), &[9; 32]);
        assert_eq!(id, chain);
        assert!(matches!(
            parsed.open(&Passphrase::new("another passphrase 1234".into())),
            Err(AuditorKeyError::WrongPassphrase)
        ));
        let mut moved = parsed.clone();
        moved.chain_id = ChainId([2; 16]).to_string();
        assert!(matches!(
            moved.open(&pass),
            Err(AuditorKeyError::WrongPassphrase)
        ));
        assert!(!file.to_json().contains(&hex::encode([9u8; 32])));
    }

    // Security regression (issue 11): the auditor key file carries KDF parameters too; absurd
    // ones are refused when the file is read, not when the derivation panics or hangs.
    #[test]
    fn absurd_kdf_parameters_are_refused_on_read() {
        let k0 = AuditKey::from_bytes([9; 32]);
        let kdf = KdfParams::Pbkdf2Sha256 { iterations: 1000 };
        let pass = Passphrase::new("auditor passphrase 123".into());
        let file = AuditorKeyFile::seal(&k0, &ChainId([1; 16]), &pass, &kdf).unwrap();
        for bad in [
            KdfParams::Pbkdf2Sha256 {
                iterations: 1 << 31,
            },
            KdfParams::Argon2id {
                memory_kib: u32::MAX,
                iterations: 1,
                parallelism: 1,
            },
            KdfParams::Argon2id {
                memory_kib: 65536,
                iterations: u32::MAX,
                parallelism: 1,
            },
        ] {
            let mut damaged = file.clone();
            damaged.kdf = bad;
            assert!(matches!(
                AuditorKeyFile::parse(damaged.to_json().as_bytes()),
                Err(AuditorKeyError::Parameters(KdfError::OutOfBounds { .. }))
            ));
        }
    }
}
