//! Secret values as their own types.
//!
//! None of these implement `Debug`, `Display` or `Serialize`: a secret cannot reach a log line,
//! an error message or a panic by accident. Each is zeroized when dropped and read only through
//! an explicit `expose_secret()`, so every place that touches secret bytes is easy to find.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

// Implements: V12, V14, V79
/// A 256-bit symmetric key (a purpose key, a per-file data key, an audit epoch key).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key32([u8; 32]);

impl Key32 {
    /// Wraps key bytes. The caller's copy should be zeroized by the caller.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Copies a key out of a slice; `None` unless it is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(array))
    }

    /// A fresh key from the operating system's CSPRNG (via OpenSSL).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        crate::rand::fill(&mut key);
        Self(key)
    }

    /// The raw key bytes. Every caller is a place where key material leaves this type.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Secret bytes of any length: decrypted configuration, TOTP secrets, PSKs.
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// Implements: V10, V14
/// A passphrase typed by a person or read from a key source. Never stored by warden.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// The shortest master passphrase accepted when a data directory is created (seed 002).
    pub const MIN_CHARS: usize = 16;

    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Length in characters (not bytes), as a person counts them.
    pub fn char_count(&self) -> usize {
        self.0.chars().count()
    }
}

/// Text that carries a secret: a base32 TOTP secret, an `otpauth://` enrollment URI, a
/// generated one-time code. Shown to a person once (on a terminal, as a QR code), never logged.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_from_slice_requires_exactly_32_bytes() {
        assert!(Key32::from_slice(&[0u8; 31]).is_none());
        assert!(Key32::from_slice(&[0u8; 33]).is_none());
        let key = Key32::from_slice(&[7u8; 32]).unwrap();
        assert_eq!(key.expose_secret(), &[7u8; 32]);
    }

    /// Verifies: V86
    #[test]
    fn random_keys_differ() {
        assert_ne!(
            Key32::random().expose_secret(),
            Key32::random().expose_secret()
        );
    }

    /// Verifies: V10
    #[test]
    fn passphrase_counts_characters_not_bytes() {
        assert_eq!(Passphrase::new("ü".repeat(16)).char_count(), 16);
    }
}
