//! `security.json`: how each purpose key is derived from the master passphrase, and unlocking.
//!
//! The passphrase is never stored. Per purpose the file holds the KDF and its parameters, a
//! random salt and a key-check value (an HMAC under the derived key), so a wrong passphrase is
//! reported before any data is read or written. Purposes are derived independently and lazily:
//! a command pays only for the keys it uses.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::kdf::{KdfError, KdfParams};
use crate::report::report;
use crate::secret::{Key32, Passphrase};

/// What a derived key is for. Each purpose has its own salt, so keys are independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// The SQLCipher database.
    Database,
    /// Sealed streams: session recordings and large files.
    Recordings,
    /// Fernet-sealed configuration files.
    Config,
    /// The audit chain's initial MAC key.
    Audit,
    /// The Ed25519 key that signs audit checkpoints (key slots only: never derived, never used
    /// for data; its public half goes to auditors and the SIEM).
    Signing,
    /// Clinical records: the fields a schema classifies as PHI, sealed per record version
    /// (`warden-records`). A random key (key slots only, never derived) that only the slots of
    /// roles granted `records.phi`, the master passphrase and the recovery key carry.
    Phi,
}

impl Purpose {
    /// The four purposes that protect data: the ones `security.json` derives.
    pub const ALL: [Purpose; 4] = [Self::Database, Self::Recordings, Self::Config, Self::Audit];
    /// Every key a key slot can carry: the four derived purposes, the checkpoint signing key
    /// and the PHI key.
    pub const IN_SLOTS: [Purpose; 6] = [
        Self::Database,
        Self::Recordings,
        Self::Config,
        Self::Audit,
        Self::Signing,
        Self::Phi,
    ];
    /// The keys a format-1 directory lacks, drawn at random when it is converted.
    pub const RANDOM_ONLY: [Purpose; 2] = [Self::Signing, Self::Phi];

    pub fn name(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Recordings => "recordings",
            Self::Config => "config",
            Self::Audit => "audit",
            Self::Signing => "signing",
            Self::Phi => "phi",
        }
    }

    /// The one-byte code used in binary headers (sealed streams).
    pub fn code(self) -> u8 {
        match self {
            Self::Database => 1,
            Self::Recordings => 2,
            Self::Config => 3,
            Self::Audit => 4,
            Self::Signing => 5,
            Self::Phi => 6,
        }
    }

    /// The purpose a sealed-stream header names (1 to 4; the signing key seals nothing).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One purpose's entry in `security.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurposeEntry {
    pub kdf: KdfParams,
    /// Base64 (standard alphabet), 32 random bytes.
    pub salt: String,
    /// Base64 of HMAC-SHA256(key, "warden key check v1" || 0x00 || purpose name).
    pub key_check: String,
}

// Implements: V7, V8, V11
/// The whole `security.json` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityFile {
    /// Always `"warden-security"`; tells a stray JSON file apart.
    pub format: String,
    pub version: u32,
    /// RFC 3339 UTC time of `warden init`.
    pub created: String,
    pub purposes: BTreeMap<Purpose, PurposeEntry>,
}

/// The four purpose keys, as derived when a data directory is created.
pub struct PurposeKeys(BTreeMap<Purpose, Key32>);

impl PurposeKeys {
    pub fn get(&self, purpose: Purpose) -> &Key32 {
        self.0.get(&purpose).expect("create derives every purpose")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "wrong passphrase: it does not match the key check for the `{0}` key in security.json"
    )]
    WrongPassphrase(Purpose),
    #[error("security.json is not valid: {0}")]
    Malformed(String),
    #[error("security.json has no entry for the `{0}` key")]
    MissingPurpose(Purpose),
    #[error("security.json version {0} is not supported by this warden (expected 1)")]
    UnsupportedVersion(u32),
    #[error("the passphrase has {0} characters; at least {min} are required", min = Passphrase::MIN_CHARS)]
    PassphraseTooShort(usize),
    /// A purpose's KDF parameters or salt are outside what warden accepts.
    #[error("security.json, `{purpose}` key")]
    Parameters {
        purpose: Purpose,
        #[source]
        source: KdfError,
    },
    #[error(transparent)]
    Kdf(#[from] KdfError),
}

const FORMAT_NAME: &str = "warden-security";
const KEY_CHECK_LABEL: &[u8] = b"warden key check v1";

fn key_check(key: &Key32, purpose: Purpose) -> [u8; 32] {
    let mut msg = KEY_CHECK_LABEL.to_vec();
    msg.push(0);
    msg.extend_from_slice(purpose.name().as_bytes());
    crate::mac::hmac_sha256(key.expose_secret(), &msg)
}

impl SecurityFile {
    // Implements: V10, V12
    /// Creates a new file for `passphrase`: fresh salts, the given KDF for every purpose.
    /// Runs every derivation once, to compute the key checks, and returns the keys too.
    pub fn create(
        passphrase: &Passphrase,
        kdf: &KdfParams,
        created: String,
    ) -> Result<(Self, PurposeKeys), KeyringError> {
        if passphrase.char_count() < Passphrase::MIN_CHARS {
            return Err(KeyringError::PassphraseTooShort(passphrase.char_count()));
        }
        kdf.validate()?;
        let mut purposes = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for purpose in Purpose::ALL {
            let salt: [u8; 32] = crate::rand::array();
            let key = kdf.derive(passphrase.expose_secret().as_bytes(), &salt)?;
            purposes.insert(
                purpose,
                PurposeEntry {
                    kdf: kdf.clone(),
                    salt: B64.encode(salt),
                    key_check: B64.encode(key_check(&key, purpose)),
                },
            );
            keys.insert(purpose, key);
        }
        let file = Self {
            format: FORMAT_NAME.to_string(),
            version: 1,
            created,
            purposes,
        };
        Ok((file, PurposeKeys(keys)))
    }

    /// Parses and checks the structure (format name, version, every purpose present, decodable
    /// salts and checks, KDF floors). Derives nothing.
    pub fn parse(json: &[u8]) -> Result<Self, KeyringError> {
        let file: Self =
            serde_json::from_slice(json).map_err(|e| KeyringError::Malformed(report(&e)))?;
        if file.format != FORMAT_NAME {
            return Err(KeyringError::Malformed(format!(
                "`format` is {:?}, expected {FORMAT_NAME:?}",
                file.format
            )));
        }
        if file.version != 1 {
            return Err(KeyringError::UnsupportedVersion(file.version));
        }
        for purpose in Purpose::ALL {
            let entry = file
                .purposes
                .get(&purpose)
                .ok_or(KeyringError::MissingPurpose(purpose))?;
            let salt = decode_field(purpose, "salt", &entry.salt)?;
            let bounds = |source| KeyringError::Parameters { purpose, source };
            crate::kdf::check_salt_len(salt.len()).map_err(bounds)?;
            if decode_field(purpose, "key_check", &entry.key_check)?.len() != 32 {
                return Err(KeyringError::Malformed(format!(
                    "{purpose}.key_check is not 32 bytes"
                )));
            }
            entry.kdf.validate().map_err(bounds)?;
        }
        Ok(file)
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("SecurityFile always serializes");
        text.push('\n');
        text
    }

    // Implements: V3, V18, V78
    /// Derives the key for `purpose` and checks it against the stored key-check value.
    pub fn unlock(&self, passphrase: &Passphrase, purpose: Purpose) -> Result<Key32, KeyringError> {
        let entry = self
            .purposes
            .get(&purpose)
            .ok_or(KeyringError::MissingPurpose(purpose))?;
        let salt = decode_field(purpose, "salt", &entry.salt)?;
        let expected = decode_field(purpose, "key_check", &entry.key_check)?;
        let key = entry
            .kdf
            .derive(passphrase.expose_secret().as_bytes(), &salt)?;
        if !crate::mac::ct_eq(&key_check(&key, purpose), &expected) {
            return Err(KeyringError::WrongPassphrase(purpose));
        }
        Ok(key)
    }
}

fn decode_field(purpose: Purpose, field: &str, value: &str) -> Result<Vec<u8>, KeyringError> {
    B64.decode(value)
        .map_err(|_| KeyringError::Malformed(format!("{purpose}.{field} is not valid base64")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams::Pbkdf2Sha256 { iterations: 1000 }
    }

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.to_string())
    }

    /// Verifies: V8, V11, V69
    #[test]
    fn create_then_unlock_every_purpose_with_distinct_keys() {
        let file = SecurityFile::create(&pass("correct horse battery staple"), &fast(), "t".into())
            .unwrap()
            .0;
        let parsed = SecurityFile::parse(file.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, file);
        let keys: Vec<[u8; 32]> = Purpose::ALL
            .iter()
            .map(|p| {
                *parsed
                    .unlock(&pass("correct horse battery staple"), *p)
                    .unwrap()
                    .expose_secret()
            })
            .collect();
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
    }

    /// Verifies: V78
    #[test]
    fn wrong_passphrase_is_named_as_such() {
        let file = SecurityFile::create(&pass("correct horse battery staple"), &fast(), "t".into())
            .unwrap()
            .0;
        let err = file
            .unlock(&pass("correct horse battery stapl3"), Purpose::Config)
            .err()
            .unwrap();
        assert!(
            matches!(err, KeyringError::WrongPassphrase(Purpose::Config)),
            "{err}"
        );
    }

    /// Verifies: V10
    #[test]
    fn short_passphrase_is_refused_at_create() {
        let err = SecurityFile::create(&pass("fifteen chars!!"), &fast(), "t".into())
            .err()
            .unwrap();
        assert!(matches!(err, KeyringError::PassphraseTooShort(15)));
    }

    #[test]
    fn damaged_files_are_reported() {
        let file = SecurityFile::create(&pass("correct horse battery staple"), &fast(), "t".into())
            .unwrap()
            .0;
        let json = file.to_json();
        assert!(matches!(
            SecurityFile::parse(b"{"),
            Err(KeyringError::Malformed(_))
        ));
        let wrong_version = json.replace("\"version\": 1", "\"version\": 7");
        assert!(matches!(
            SecurityFile::parse(wrong_version.as_bytes()),
            Err(KeyringError::UnsupportedVersion(7))
        ));
        let mut missing = file.clone();
        missing.purposes.remove(&Purpose::Audit);
        assert!(matches!(
            SecurityFile::parse(missing.to_json().as_bytes()),
            Err(KeyringError::MissingPurpose(Purpose::Audit))
        ));
        let mut weak = file.clone();
        weak.purposes.get_mut(&Purpose::Database).unwrap().kdf =
            KdfParams::Pbkdf2Sha256 { iterations: 1 };
        assert!(matches!(
            SecurityFile::parse(weak.to_json().as_bytes()),
            Err(KeyringError::Parameters {
                purpose: Purpose::Database,
                ..
            })
        ));
    }

    // Security regression (issue 11): a security.json whose KDF parameters no machine can run
    // is refused when it is read, naming the purpose and the field, before any derivation
    // (which would panic, abort or hang).
    #[test]
    fn absurd_kdf_parameters_are_refused_on_read() {
        let file = SecurityFile::create(&pass("correct horse battery staple"), &fast(), "t".into())
            .unwrap()
            .0;
        let cases = [
            (
                KdfParams::Pbkdf2Sha256 {
                    iterations: 1 << 31,
                },
                "iterations",
            ),
            (
                KdfParams::Pbkdf2Sha256 {
                    iterations: (1 << 31) - 1,
                },
                "iterations",
            ),
            (
                KdfParams::Argon2id {
                    memory_kib: u32::MAX,
                    iterations: 1,
                    parallelism: 1,
                },
                "memory_kib",
            ),
            (
                KdfParams::Argon2id {
                    memory_kib: 65536,
                    iterations: u32::MAX,
                    parallelism: 1,
                },
                "iterations",
            ),
        ];
        for (kdf, field) in cases {
            let mut damaged = file.clone();
            damaged.purposes.get_mut(&Purpose::Audit).unwrap().kdf = kdf;
            let err = SecurityFile::parse(damaged.to_json().as_bytes())
                .err()
                .unwrap();
            let KeyringError::Parameters { purpose, source } = &err else {
                panic!("{err}");
            };
            assert_eq!(*purpose, Purpose::Audit);
            assert!(
                matches!(source, KdfError::OutOfBounds { field: f, .. } if *f == field),
                "{source}"
            );
        }
        let json = file.to_json();
        let long_salt = json.replacen(
            &file.purposes[&Purpose::Config].salt,
            &B64.encode([7u8; 65]),
            1,
        );
        assert!(matches!(
            SecurityFile::parse(long_salt.as_bytes()),
            Err(KeyringError::Parameters {
                purpose: Purpose::Config,
                source: KdfError::OutOfBounds { field: "salt", .. }
            })
        ));
    }

    /// Verifies: V7, V69
    #[test]
    fn changing_the_salt_makes_the_passphrase_fail() {
        let mut file =
            SecurityFile::create(&pass("correct horse battery staple"), &fast(), "t".into())
                .unwrap()
                .0;
        file.purposes.get_mut(&Purpose::Recordings).unwrap().salt = B64.encode([9u8; 32]);
        assert!(matches!(
            file.unlock(&pass("correct horse battery staple"), Purpose::Recordings),
            Err(KeyringError::WrongPassphrase(Purpose::Recordings))
        ));
    }
}
