//! The audit chain's secret key and its public values: the chain id and the chained MACs.
//!
//! [`AuditKey`] is secret (no `Debug`, zeroized, not `Clone`; evolving it consumes it).
//! [`ChainMac`] and [`ChainId`] are public and print as hex. The only way from the secret to
//! something public is a MAC or [`AuditKey::key_id`], a one-way commitment.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::mac::HmacSha256;
use crate::secret::Key32;

pub(crate) const GENESIS_LABEL: &[u8] = b"warden-audit-genesis-v1";
pub(crate) const EVOLVE_LABEL: &[u8] = b"warden-audit-evolve-v1";
pub(crate) const KEY_ID_LABEL: &[u8] = b"warden-audit-key-id-v1";

// Implements: V53
/// The secret MAC key of one epoch of the audit chain.
///
/// Not `Clone`: there is one copy, and [`AuditKey::evolve`] consumes it, so the previous epoch's
/// key cannot be kept by accident. Zeroized on drop (through [`Key32`]).
pub struct AuditKey(Key32);

impl AuditKey {
    /// Wraps key bytes (e.g. read from the store). The caller's copy should be zeroized.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Key32::from_bytes(bytes))
    }

    /// Wraps a 32-byte key, e.g. the `audit` purpose key or a freshly drawn `k0`.
    pub fn from_key(key: Key32) -> Self {
        Self(key)
    }

    /// A fresh random key (for `k0` at init).
    pub fn random() -> Self {
        Self(Key32::random())
    }

    /// The raw key bytes, for the store to persist and for the sealed export of `k0`.
    pub fn expose_secret(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    /// The next epoch's key, `HMAC-SHA256(k_e, "warden-audit-evolve-v1")`. Consumes (and so
    /// erases) this key.
    pub fn evolve(self) -> AuditKey {
        self.next()
    }

    /// A public commitment to this key: the first 8 bytes of
    /// `HMAC-SHA256(k, "warden-audit-key-id-v1")`. It reveals nothing usable about the key.
    pub fn key_id(&self) -> [u8; 8] {
        let mac = crate::mac::hmac_sha256(self.expose_secret(), KEY_ID_LABEL);
        let mut id = [0u8; 8];
        id.copy_from_slice(&mac[..8]);
        id
    }

    /// The next key without consuming this one; callers inside this module drop `self` right
    /// after (the ladder in the verifier keeps both only while classifying damage).
    pub(crate) fn next(&self) -> AuditKey {
        AuditKey(Key32::from_bytes(crate::mac::hmac_sha256(
            self.expose_secret(),
            EVOLVE_LABEL,
        )))
    }
}

/// An epoch key together with its reusable HMAC context.
pub(crate) struct EpochKey {
    key: AuditKey,
    hmac: HmacSha256,
}

impl EpochKey {
    pub(crate) fn new(key: AuditKey) -> Self {
        let hmac = HmacSha256::new(key.expose_secret());
        Self { key, hmac }
    }

    pub(crate) fn key(&self) -> &AuditKey {
        &self.key
    }

    /// `HMAC(k, canonical ‖ prev)`.
    pub(crate) fn chain_mac(&self, canonical: &[u8], prev: &[u8; 32]) -> [u8; 32] {
        self.hmac.mac_parts(&[canonical, prev])
    }

    /// `HMAC(k, "warden-audit-genesis-v1" ‖ chain_id)`, the `mac_0` of a chain.
    pub(crate) fn genesis_mac(&self, chain_id: &ChainId) -> [u8; 32] {
        self.hmac.mac_parts(&[GENESIS_LABEL, &chain_id.0])
    }
}

/// 16 random bytes fixed when a chain is created. They enter the genesis MAC, so rows from two
/// boxes' chains cannot be spliced together even if both were started with the same key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainId(pub [u8; 16]);

impl ChainId {
    /// A fresh random chain id.
    pub fn random() -> Self {
        Self(crate::rand::array())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses 32 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }
}

/// A chained MAC: public, printed and serialized as 64 lowercase hex digits.
///
/// Not a secret: MACs go to the SIEM in checkpoints and to exports. Distinct from key types on
/// purpose, so a key can never be printed as if it were a MAC.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainMac(pub [u8; 32]);

impl ChainMac {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// Copies a MAC out of a stored column; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }
}

macro_rules! hex_display {
    ($ty:ty) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), hex::encode(self.0))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&hex::encode(self.0))
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::from_hex(&text).ok_or_else(|| {
                    serde::de::Error::custom(concat!(stringify!($ty), ": expected lowercase hex"))
                })
            }
        }
    };
}

hex_display!(ChainMac);
hex_display!(ChainId);

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: V53
    #[test]
    fn evolve_and_key_id_follow_the_documented_formulas() {
        let k0 = AuditKey::from_bytes([1u8; 32]);
        let id0 = k0.key_id();
        assert_eq!(
            id0[..],
            crate::mac::hmac_sha256(&[1u8; 32], b"warden-audit-key-id-v1")[..8]
        );
        let k1 = k0.evolve();
        assert_eq!(
            k1.expose_secret(),
            &crate::mac::hmac_sha256(&[1u8; 32], b"warden-audit-evolve-v1")
        );
        assert_ne!(k1.key_id(), id0);
    }

    #[test]
    fn macs_print_as_hex_and_round_trip_through_serde() {
        let mac = ChainMac([0xab; 32]);
        assert_eq!(mac.to_string(), "ab".repeat(32));
        assert_eq!(format!("{mac:?}"), format!("ChainMac({})", "ab".repeat(32)));
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(serde_json::from_str::<ChainMac>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<ChainMac>("\"abc\"").is_err());
        assert_eq!(ChainMac::from_slice(&[1u8; 31]), None);
    }
}
