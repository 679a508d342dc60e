//! The cryptography of key slots, all through OpenSSL and all FIPS-approved: P-256 key pairs
//! (one per slot), ECDH (SP 800-56A) with a fresh ephemeral key per wrapped key, HKDF-SHA256
//! (SP 800-56C) to turn the shared secret into a wrapping key, and AES-256-GCM to wrap.
//!
//! A slot's private key is sealed under the key-encryption key its secret gives (passphrase,
//! password, recovery key, service key); purpose keys are wrapped to the slot's *public* key, so
//! whoever holds a purpose key can give it to every slot that should carry it — a rotation
//! re-wraps for every slot without knowing anyone's password.

use openssl::bn::{BigNum, BigNumContext};
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use zeroize::Zeroizing;

use crate::secret::Key32;

/// An uncompressed P-256 point: `04 ‖ x (32) ‖ y (32)`.
pub const PUBLIC_KEY_LEN: usize = 65;
/// A P-256 private scalar, big-endian.
pub const PRIVATE_KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// `nonce ‖ AES-256-GCM(private scalar) ‖ tag`.
pub const SEALED_PRIVATE_KEY_LEN: usize = NONCE_LEN + PRIVATE_KEY_LEN + TAG_LEN;
/// `ephemeral public key ‖ nonce ‖ AES-256-GCM(purpose key) ‖ tag`.
pub const WRAP_LEN: usize = PUBLIC_KEY_LEN + NONCE_LEN + 32 + TAG_LEN;

/// Something in a slot did not open. Never says more than which step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    #[error("not a valid P-256 public key")]
    BadPublicKey,
    #[error("not a valid P-256 private key")]
    BadPrivateKey,
    #[error("authentication failed")]
    Rejected,
    #[error("wrong length")]
    Length,
}

fn group() -> EcGroup {
    EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
        .unwrap_or_else(|err| panic!("OpenSSL has no P-256: {err}"))
}

fn ctx() -> BigNumContext {
    BigNumContext::new().unwrap_or_else(|err| panic!("OpenSSL BN_CTX: {err}"))
}

/// A slot's (or an ephemeral) P-256 private scalar. No `Debug`; zeroized on drop.
pub struct PrivateScalar(Zeroizing<[u8; PRIVATE_KEY_LEN]>);

impl PrivateScalar {
    /// A fresh key pair's private half, from OpenSSL's generator.
    pub fn generate() -> Self {
        let key = EcKey::generate(&group()).unwrap_or_else(|err| panic!("P-256 keygen: {err}"));
        let bytes = key
            .private_key()
            .to_vec_padded(PRIVATE_KEY_LEN as i32)
            .unwrap_or_else(|err| panic!("P-256 scalar: {err}"));
        let mut out = Zeroizing::new([0u8; PRIVATE_KEY_LEN]);
        out.copy_from_slice(&bytes);
        Self(out)
    }

    /// A scalar given as bytes (known-answer vectors, opened slots); it must be in 1..n−1.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WrapError> {
        let array: [u8; PRIVATE_KEY_LEN] = bytes.try_into().map_err(|_| WrapError::Length)?;
        let scalar = Self(Zeroizing::new(array));
        scalar.ec_key()?;
        Ok(scalar)
    }

    pub fn expose_secret(&self) -> &[u8; PRIVATE_KEY_LEN] {
        &self.0
    }

    fn ec_key(&self) -> Result<EcKey<openssl::pkey::Private>, WrapError> {
        let group = group();
        let d = BigNum::from_slice(&self.0[..]).map_err(|_| WrapError::BadPrivateKey)?;
        let mut order = BigNum::new().map_err(|_| WrapError::BadPrivateKey)?;
        group
            .order(&mut order, &mut ctx())
            .map_err(|_| WrapError::BadPrivateKey)?;
        if d.num_bits() == 0 || d >= order {
            return Err(WrapError::BadPrivateKey);
        }
        let mut point = EcPoint::new(&group).map_err(|_| WrapError::BadPrivateKey)?;
        point
            .mul_generator2(&group, &d, &mut ctx())
            .map_err(|_| WrapError::BadPrivateKey)?;
        EcKey::from_private_components(&group, &d, &point).map_err(|_| WrapError::BadPrivateKey)
    }

    /// The matching public key, uncompressed.
    pub fn public_key(&self) -> Result<[u8; PUBLIC_KEY_LEN], WrapError> {
        let key = self.ec_key()?;
        encode_point(key.public_key())
    }

    /// ECDH with `peer` (an uncompressed point): the shared x-coordinate, 32 bytes.
    pub fn agree(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, WrapError> {
        let own = PKey::from_ec_key(self.ec_key()?).map_err(|_| WrapError::BadPrivateKey)?;
        let peer = PKey::from_ec_key(public_key(peer)?).map_err(|_| WrapError::BadPublicKey)?;
        let mut deriver = Deriver::new(&own).map_err(|_| WrapError::BadPrivateKey)?;
        deriver
            .set_peer(&peer)
            .map_err(|_| WrapError::BadPublicKey)?;
        let shared = deriver
            .derive_to_vec()
            .map_err(|_| WrapError::BadPublicKey)?;
        Ok(Zeroizing::new(shared))
    }
}

fn encode_point(point: &openssl::ec::EcPointRef) -> Result<[u8; PUBLIC_KEY_LEN], WrapError> {
    let bytes = point
        .to_bytes(&group(), PointConversionForm::UNCOMPRESSED, &mut ctx())
        .map_err(|_| WrapError::BadPublicKey)?;
    bytes.try_into().map_err(|_| WrapError::BadPublicKey)
}

/// Parses and checks an uncompressed point (on the curve, not the identity).
fn public_key(bytes: &[u8]) -> Result<EcKey<openssl::pkey::Public>, WrapError> {
    if bytes.len() != PUBLIC_KEY_LEN || bytes[0] != 0x04 {
        return Err(WrapError::BadPublicKey);
    }
    let group = group();
    let point =
        EcPoint::from_bytes(&group, bytes, &mut ctx()).map_err(|_| WrapError::BadPublicKey)?;
    let key = EcKey::from_public_key(&group, &point).map_err(|_| WrapError::BadPublicKey)?;
    key.check_key().map_err(|_| WrapError::BadPublicKey)?;
    Ok(key)
}

/// Checks that `bytes` is a usable public key.
pub fn check_public_key(bytes: &[u8]) -> Result<(), WrapError> {
    public_key(bytes).map(drop)
}

fn gcm_seal(key: &[u8], nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut tag = [0u8; TAG_LEN];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(nonce),
        aad,
        plaintext,
        &mut tag,
    )
    .unwrap_or_else(|err| panic!("AES-256-GCM encryption failed in OpenSSL: {err}"));
    [&nonce[..], &ciphertext, &tag].concat()
}

fn gcm_open(key: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, WrapError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(WrapError::Length);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    decrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(nonce),
        aad,
        ciphertext,
        tag,
    )
    .map(Zeroizing::new)
    .map_err(|_| WrapError::Rejected)
}

/// Seals a slot's private scalar under its key-encryption key.
pub fn seal_private(
    kek: &Key32,
    aad: &[u8],
    scalar: &PrivateScalar,
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    gcm_seal(kek.expose_secret(), &nonce, aad, scalar.expose_secret())
}

/// Opens a sealed private scalar; a wrong key-encryption key (a wrong secret) is `Rejected`.
pub fn open_private(kek: &Key32, aad: &[u8], sealed: &[u8]) -> Result<PrivateScalar, WrapError> {
    if sealed.len() != SEALED_PRIVATE_KEY_LEN {
        return Err(WrapError::Length);
    }
    let plain = gcm_open(kek.expose_secret(), aad, sealed)?;
    PrivateScalar::from_bytes(&plain)
}

/// The wrapping key for one wrap: HKDF-SHA256 over the ECDH secret, salted with both public
/// keys, with the wrap's label as info.
fn wrapping_key(
    shared: &[u8],
    ephemeral: &[u8; PUBLIC_KEY_LEN],
    recipient: &[u8],
    info: &[u8],
) -> Zeroizing<[u8; 32]> {
    let salt = [&ephemeral[..], recipient].concat();
    crate::mac::hkdf_sha256(shared, &salt, info)
}

/// Wraps `key` to the slot public key `recipient`, with an ephemeral scalar and a nonce given
/// (fresh random ones in [`wrap`]; fixed ones in known-answer vectors).
pub fn wrap_with(
    recipient: &[u8],
    info: &[u8],
    key: &Key32,
    ephemeral: &PrivateScalar,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, WrapError> {
    let ephemeral_public = ephemeral.public_key()?;
    let shared = ephemeral.agree(recipient)?;
    let wrapping = wrapping_key(&shared, &ephemeral_public, recipient, info);
    let sealed = gcm_seal(&wrapping[..], &nonce, info, key.expose_secret());
    Ok([&ephemeral_public[..], &sealed].concat())
}

/// Wraps `key` to `recipient` with a fresh ephemeral key and nonce.
pub fn wrap(recipient: &[u8], info: &[u8], key: &Key32) -> Result<Vec<u8>, WrapError> {
    wrap_with(
        recipient,
        info,
        key,
        &PrivateScalar::generate(),
        crate::rand::array(),
    )
}

/// Unwraps a key wrapped to the slot whose private scalar is `own` (public key `own_public`).
pub fn unwrap(
    own: &PrivateScalar,
    own_public: &[u8],
    info: &[u8],
    wrapped: &[u8],
) -> Result<Key32, WrapError> {
    if wrapped.len() != WRAP_LEN {
        return Err(WrapError::Length);
    }
    let (ephemeral, sealed) = wrapped.split_at(PUBLIC_KEY_LEN);
    let ephemeral: &[u8; PUBLIC_KEY_LEN] = ephemeral.try_into().map_err(|_| WrapError::Length)?;
    let shared = own.agree(ephemeral)?;
    let wrapping = wrapping_key(&shared, ephemeral, own_public, info);
    let plain = gcm_open(&wrapping[..], info, sealed)?;
    Key32::from_slice(&plain).ok_or(WrapError::Length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trip_only_for_the_recipient_and_the_label() {
        let slot = PrivateScalar::generate();
        let public = slot.public_key().unwrap();
        let key = Key32::from_bytes([9; 32]);
        let wrapped = wrap(&public, b"label", &key).unwrap();
        assert_eq!(wrapped.len(), WRAP_LEN);
        let back = unwrap(&slot, &public, b"label", &wrapped).unwrap();
        assert_eq!(back.expose_secret(), key.expose_secret());
        assert_eq!(
            unwrap(&slot, &public, b"other", &wrapped).err(),
            Some(WrapError::Rejected)
        );
        let other = PrivateScalar::generate();
        let other_public = other.public_key().unwrap();
        assert!(unwrap(&other, &other_public, b"label", &wrapped).is_err());
        for i in 0..wrapped.len() {
            let mut damaged = wrapped.clone();
            damaged[i] ^= 0x20;
            assert!(unwrap(&slot, &public, b"label", &damaged).is_err(), "{i}");
        }
    }

    #[test]
    fn private_keys_seal_and_scalars_are_checked() {
        let kek = Key32::from_bytes([3; 32]);
        let scalar = PrivateScalar::generate();
        let sealed = seal_private(&kek, b"aad", &scalar, [1; 12]);
        assert_eq!(sealed.len(), SEALED_PRIVATE_KEY_LEN);
        let back = open_private(&kek, b"aad", &sealed).unwrap();
        assert_eq!(back.expose_secret(), scalar.expose_secret());
        assert_eq!(
            open_private(&Key32::from_bytes([4; 32]), b"aad", &sealed).err(),
            Some(WrapError::Rejected)
        );
        assert!(PrivateScalar::from_bytes(&[0; 32]).is_err());
        assert!(PrivateScalar::from_bytes(&[0xff; 32]).is_err());
        assert!(check_public_key(&[4; 65]).is_err());
        assert!(check_public_key(&scalar.public_key().unwrap()).is_ok());
    }
}
