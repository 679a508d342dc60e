//! HMAC-SHA256, SHA-256 and constant-time comparison, via OpenSSL.
//!
//! [`hmac_sha256`] is the one-shot form. [`HmacSha256`] is keyed once and then MACs many
//! messages; the audit chain verifies millions of rows with it.

use openssl::hash::{Hasher, MessageDigest};
use openssl::pkey::PKey;
use openssl::sign::Signer;
use zeroize::Zeroizing;

// Implements: V43, V71
/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    hmac_sha256_parts(key, &[msg])
}

/// HMAC-SHA256 over the concatenation of `parts`, without building the concatenation.
pub fn hmac_sha256_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let run = || -> Result<[u8; 32], openssl::error::ErrorStack> {
        let pkey = PKey::hmac(key)?;
        let mut signer = Signer::new(MessageDigest::sha256(), &pkey)?;
        for part in parts {
            signer.update(part)?;
        }
        let mut out = [0u8; 32];
        signer.sign(&mut out)?;
        Ok(out)
    };
    // HMAC-SHA256 only fails in OpenSSL on allocation failure or a broken provider setup.
    run().unwrap_or_else(|err| panic!("OpenSSL HMAC-SHA256 failed: {err}"))
}

/// HMAC-SHA256 keyed once, for many messages.
///
/// RFC 2104 over OpenSSL's EVP SHA-256: the keyed inner and outer hash states (after absorbing
/// `key ⊕ ipad` and `key ⊕ opad`) are computed once; each message clones them. This gives the
/// same output as [`hmac_sha256`] about twice as fast as re-initializing an OpenSSL HMAC context
/// per message, and stays on the EVP (provider) path. No `Debug`: the states are derived from the
/// key. OpenSSL wipes them when the contexts are freed; the pads are zeroized here.
pub struct HmacSha256 {
    inner: Hasher,
    outer: Hasher,
}

impl HmacSha256 {
    const BLOCK: usize = 64;

    /// Keys `key` (any length; longer than one block is hashed first, as RFC 2104 says).
    pub fn new(key: &[u8]) -> Self {
        let mut block = Zeroizing::new([0u8; Self::BLOCK]);
        if key.len() > Self::BLOCK {
            let digest = Zeroizing::new(sha256(key));
            block[..32].copy_from_slice(&digest[..]);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut pad = Zeroizing::new([0u8; Self::BLOCK]);
        let keyed = |pad: &[u8; Self::BLOCK]| -> Hasher {
            let mut hasher = Hasher::new(MessageDigest::sha256())
                .unwrap_or_else(|err| panic!("OpenSSL SHA-256 is unavailable: {err}"));
            hasher
                .update(pad)
                .unwrap_or_else(|err| panic!("OpenSSL SHA-256 failed: {err}"));
            hasher
        };
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x36;
        }
        let inner = keyed(&pad);
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x5c;
        }
        let outer = keyed(&pad);
        Self { inner, outer }
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub fn mac_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let run = || -> Result<[u8; 32], openssl::error::ErrorStack> {
            let mut inner = self.inner.clone();
            for part in parts {
                inner.update(part)?;
            }
            let inner_digest = inner.finish()?;
            let mut outer = self.outer.clone();
            outer.update(&inner_digest)?;
            let digest = outer.finish()?;
            let mut out = [0u8; 32];
            out.copy_from_slice(&digest);
            Ok(out)
        };
        // As in `hmac_sha256_parts`: only allocation failure or a broken provider gets here.
        run().unwrap_or_else(|err| panic!("OpenSSL HMAC-SHA256 failed: {err}"))
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(data)
}

/// SHA-256 over data given in pieces.
pub struct Sha256(openssl::sha::Sha256);

impl Sha256 {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(openssl::sha::Sha256::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finish()
    }
}

/// HKDF-SHA256 (RFC 5869) with a 32-byte output: `PRK = HMAC(salt, ikm)`,
/// `OKM = HMAC(PRK, info ‖ 0x01)`. Used to turn a shared secret or a random key into a wrapping
/// key (key slots); one output block is all warden ever needs.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
    let prk = Zeroizing::new(hmac_sha256(salt, ikm));
    Zeroizing::new(hmac_sha256_parts(&prk[..], &[info, &[1u8]]))
}

// Implements: V45
/// Compares two byte strings in time independent of their contents (lengths may leak).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 5869 test case 1 (the first 32 bytes of its 42-byte OKM).
    #[test]
    fn hkdf_sha256_rfc5869_case1() {
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        assert_eq!(
            hex::encode(&hkdf_sha256(&ikm, &salt, &info)[..]),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    // RFC 4231 test case 2.
    /// Verifies: V43, V71
    #[test]
    fn hmac_sha256_rfc4231_case2() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hmac_sha256_parts(b"Jefe", &[b"what do ya ", b"want for nothing?"]),
            hmac_sha256(b"Jefe", b"what do ya want for nothing?")
        );
    }

    #[test]
    fn reusable_hmac_matches_one_shot() {
        // RFC 4231 test cases 2 (short key) and 6 (131-byte key, hashed first).
        let jefe = HmacSha256::new(b"Jefe");
        assert_eq!(
            hex::encode(jefe.mac_parts(&[b"what do ya ", b"want for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = [0xaau8; 131];
        let msg = b"Test Using Larger Than Block-Size Key - Hash Key First";
        assert_eq!(
            hex::encode(HmacSha256::new(&long_key).mac_parts(&[msg])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // The one-shot helper cannot take an empty key (OpenSSL 3 refuses an empty HMAC PKey).
        assert_eq!(
            hex::encode(HmacSha256::new(b"").mac_parts(&[])),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
        );
        for len in [1usize, 32, 63, 64, 65, 200] {
            let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mac = HmacSha256::new(&key);
            for msg_len in [0usize, 1, 55, 56, 64, 300] {
                let msg = vec![0x5au8; msg_len];
                assert_eq!(mac.mac_parts(&[&msg]), hmac_sha256(&key, &msg));
            }
        }
    }

    /// Verifies: V45
    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
