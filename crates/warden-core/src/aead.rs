//! Small secrets sealed under a purpose key: AES-256-GCM with a random nonce and a label bound
//! in as associated data (the audit epoch key at rest, TOTP secrets, PSKs).
//!
//! Layout: `nonce (12) ‖ ciphertext ‖ tag (16)`. The associated data names what the secret is
//! and whose it is, so a sealed value cannot be moved to another row or purpose unnoticed.

use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};

use crate::secret::{Key32, SecretBytes};

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AeadError {
    #[error("sealed value is too short")]
    TooShort,
    #[error("sealed value failed authentication (wrong key, wrong label, or modified)")]
    Rejected,
}

/// Seals `plaintext` under `key`, bound to `label`.
pub fn seal(key: &Key32, label: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = crate::rand::array();
    let mut tag = [0u8; TAG_LEN];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        key.expose_secret(),
        Some(&nonce),
        label,
        plaintext,
        &mut tag,
    )
    .unwrap_or_else(|err| panic!("AES-256-GCM encryption failed in OpenSSL: {err}"));
    [&nonce[..], &ciphertext, &tag].concat()
}

/// Opens a value sealed by [`seal`] with the same key and label.
pub fn open(key: &Key32, label: &[u8], sealed: &[u8]) -> Result<SecretBytes, AeadError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(AeadError::TooShort);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    decrypt_aead(
        Cipher::aes_256_gcm(),
        key.expose_secret(),
        Some(nonce),
        label,
        ciphertext,
        tag,
    )
    .map(SecretBytes::new)
    .map_err(|_| AeadError::Rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_mismatch() {
        let key = Key32::from_bytes([5; 32]);
        let sealed = seal(&key, b"label", b"secret");
        assert_eq!(
            open(&key, b"label", &sealed).unwrap().expose_secret(),
            b"secret"
        );
        assert_eq!(
            open(&key, b"other", &sealed).err(),
            Some(AeadError::Rejected)
        );
        assert_eq!(
            open(&Key32::from_bytes([6; 32]), b"label", &sealed).err(),
            Some(AeadError::Rejected)
        );
        for i in 0..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[i] ^= 1;
            assert_eq!(
                open(&key, b"label", &damaged).err(),
                Some(AeadError::Rejected),
                "byte {i}"
            );
        }
        assert_eq!(
            open(&key, b"label", &sealed[..20]).err(),
            Some(AeadError::TooShort)
        );
        assert_ne!(
            seal(&key, b"label", b"secret"),
            sealed,
            "fresh nonce each time"
        );
    }
}
