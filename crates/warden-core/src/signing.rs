//! Ed25519 signatures over audit checkpoints (through OpenSSL), so that checking the chain
//! head and its checkpoints needs no secret: the public key goes to auditors and the SIEM, the
//! private key (the `signing` key in key slots) stays with administrators and the daemons.

use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};

use crate::secret::Key32;

pub const PUBLIC_KEY_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;

/// A checkpoint signer: the Ed25519 private key made from the 32-byte `signing` key (the RFC
/// 8032 seed). No `Debug`.
pub struct CheckpointSigner {
    key: PKey<Private>,
    public: [u8; PUBLIC_KEY_LEN],
}

impl CheckpointSigner {
    pub fn from_seed(seed: &Key32) -> Self {
        let key = PKey::private_key_from_raw_bytes(seed.expose_secret(), Id::ED25519)
            .unwrap_or_else(|err| panic!("OpenSSL has no Ed25519: {err}"));
        let raw = key
            .raw_public_key()
            .unwrap_or_else(|err| panic!("Ed25519 public key: {err}"));
        let mut public = [0u8; PUBLIC_KEY_LEN];
        public.copy_from_slice(&raw);
        Self { key, public }
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public
    }

    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut signer = Signer::new_without_digest(&self.key)
            .unwrap_or_else(|err| panic!("Ed25519 signer: {err}"));
        let signature = signer
            .sign_oneshot_to_vec(message)
            .unwrap_or_else(|err| panic!("Ed25519 signing failed: {err}"));
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(&signature);
        out
    }
}

/// A public checkpoint key (what an auditor holds).
#[derive(Clone)]
pub struct CheckpointKey(PKey<Public>);

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey({})", hex::encode(self.to_bytes()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an Ed25519 public key (32 bytes)")]
pub struct BadPublicKey;

impl CheckpointKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BadPublicKey> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(BadPublicKey);
        }
        PKey::public_key_from_raw_bytes(bytes, Id::ED25519)
            .map(Self)
            .map_err(|_| BadPublicKey)
    }

    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        let raw = self.0.raw_public_key().unwrap_or_default();
        let mut out = [0u8; PUBLIC_KEY_LEN];
        if raw.len() == PUBLIC_KEY_LEN {
            out.copy_from_slice(&raw);
        }
        out
    }

    /// The key id the chain's signatures name: the first 8 bytes of SHA-256 of the public key.
    pub fn key_id(&self) -> [u8; 8] {
        key_id(&self.to_bytes())
    }

    /// True when `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        if signature.len() != SIGNATURE_LEN {
            return false;
        }
        Verifier::new_without_digest(&self.0)
            .and_then(|mut v| v.verify_oneshot(signature, message))
            .unwrap_or(false)
    }
}

/// The first 8 bytes of SHA-256 of a public key.
pub fn key_id(public: &[u8; PUBLIC_KEY_LEN]) -> [u8; 8] {
    let digest = crate::mac::sha256(public);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032 §7.1, TEST 1 (empty message).
    #[test]
    fn ed25519_rfc8032_test_1() {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let signer = CheckpointSigner::from_seed(&Key32::from_slice(&seed).unwrap());
        assert_eq!(
            hex::encode(signer.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let signature = signer.sign(b"");
        assert_eq!(
            hex::encode(signature),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        let public = CheckpointKey::from_bytes(&signer.public_key()).unwrap();
        assert!(public.verify(b"", &signature));
        assert!(!public.verify(b"x", &signature));
        let mut bad = signature;
        bad[0] ^= 1;
        assert!(!public.verify(b"", &bad));
    }
}
