//! Password-based key derivation: PBKDF2-HMAC-SHA256 (default, FIPS-approved) and Argon2id.
//!
//! Parameters are a typed value that is stored next to the salt in `security.json`, so a data
//! directory always says how its keys were made. Floors stop a tampered or careless file from
//! asking for a derivation too weak to be useful; ceilings stop it from asking for one that
//! cannot finish: the crypto libraries panic, abort on allocation or run for hours on values a
//! `u32` allows (PBKDF2 ≥ 2^31 iterations panics in the `openssl` crate, Argon2 with 4 TiB of
//! memory aborts, 2^32 − 1 passes never end). Every parameter is checked against [`Bounds`]
//! before any derivation, with an error naming the field and its bounds.

use serde::{Deserialize, Serialize};

use crate::report::report;
use crate::secret::Key32;

/// The KDF and its cost parameters, as stored in `security.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm")]
pub enum KdfParams {
    /// PBKDF2 with HMAC-SHA256 (RFC 8018), 32-byte output.
    #[serde(rename = "PBKDF2-HMAC-SHA256")]
    Pbkdf2Sha256 { iterations: u32 },
    /// Argon2id version 0x13 (RFC 9106), 32-byte output.
    #[serde(rename = "Argon2id")]
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
}

/// Why a derivation could not run. Never carries the passphrase or the salt.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KdfError {
    /// A parameter outside the range warden accepts (see [`Bounds`]).
    #[error("{algorithm} `{field}` is {value}; warden accepts {min} to {max} ({why})")]
    OutOfBounds {
        algorithm: &'static str,
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
        why: &'static str,
    },
    /// Argon2id memory × passes above [`Bounds::ARGON2_MAX_WORK_KIB`].
    #[error("Argon2id `memory_kib` × `iterations` is {work} KiB; warden accepts at most {max} (16 GiB of memory passes, about half a minute on the reference machine)", max = Bounds::ARGON2_MAX_WORK_KIB)]
    TooMuchWork { work: u64 },
    /// The Argon2 library refused the combination (e.g. less than 8 KiB of memory per lane).
    #[error("Argon2id parameters rejected: {0}")]
    BadArgon2Params(String),
    /// The memory Argon2id asks for could not be allocated on this machine.
    #[error("Argon2id needs {memory_kib} KiB of memory, which cannot be allocated here")]
    OutOfMemory { memory_kib: u32 },
    #[error("key derivation failed in the crypto library")]
    Backend,
}

/// The range of every KDF parameter warden reads or writes, and why.
///
/// Floors keep a derivation worth having; ceilings keep it finishing on the hardware warden runs
/// on (a shim box can be ten times slower than a laptop) instead of panicking, aborting or
/// hanging. Measured on the reference machine (docs/BENCHMARKS.md): PBKDF2-HMAC-SHA256 runs about
/// 3 million iterations a second; Argon2id about 0.6 GiB of memory passes a second.
#[derive(Debug)]
pub struct Bounds;

impl Bounds {
    /// PBKDF2 iterations: at least 1,000 (lower is no protection at all; 600,000 is the default
    /// and anything below it is warned about) …
    pub const PBKDF2_MIN_ITERATIONS: u32 = 1_000;
    /// … and at most 10,000,000: about 3 s here and under a minute on a slow box, 16× the
    /// default; beyond that the unlock looks like a hang (2^31 panics inside OpenSSL's binding).
    pub const PBKDF2_MAX_ITERATIONS: u32 = 10_000_000;
    /// Argon2id memory: at least 8 MiB …
    pub const ARGON2_MIN_MEMORY_KIB: u32 = 8 * 1024;
    /// … and at most 4 GiB: twice RFC 9106's first recommended option (2 GiB); more than a box
    /// has is an allocation failure, not protection.
    pub const ARGON2_MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// Argon2id passes: at least 1 (the algorithm's own floor) …
    pub const ARGON2_MIN_ITERATIONS: u32 = 1;
    /// … and at most 64 (RFC 9106 recommends 1 or 3; more passes over less memory is weaker
    /// than more memory, so there is no reason to go far beyond).
    pub const ARGON2_MAX_ITERATIONS: u32 = 64;
    /// Argon2id lanes: 1 to 64 (RFC 9106 recommends 4; warden computes lanes one after the
    /// other, so lanes beyond a box's cores only cost memory bookkeeping).
    pub const ARGON2_MIN_PARALLELISM: u32 = 1;
    pub const ARGON2_MAX_PARALLELISM: u32 = 64;
    /// Argon2id memory × passes, in KiB: at most 16 GiB (e.g. 4 GiB × 4, 64 MiB × 64), about
    /// 27 s on the reference machine.
    pub const ARGON2_MAX_WORK_KIB: u64 = 16 * 1024 * 1024;
    /// Salt length in bytes: 16 to 64 (warden writes 32).
    pub const MIN_SALT_LEN: usize = 16;
    pub const MAX_SALT_LEN: usize = 64;
}

fn check(
    algorithm: &'static str,
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
    why: &'static str,
) -> Result<(), KdfError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(KdfError::OutOfBounds {
        algorithm,
        field,
        value,
        min,
        max,
        why,
    })
}

/// Checks a salt's length against [`Bounds`].
pub fn check_salt_len(len: usize) -> Result<(), KdfError> {
    check(
        "KDF",
        "salt",
        len as u64,
        Bounds::MIN_SALT_LEN as u64,
        Bounds::MAX_SALT_LEN as u64,
        "bytes",
    )
}

impl KdfParams {
    // Implements: V6
    /// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
    pub const PBKDF2_DEFAULT_ITERATIONS: u32 = 600_000;
    /// Lower counts are accepted (with a warning from the CLI) so tests can run fast; below this
    /// the derivation is refused outright.
    pub const PBKDF2_MIN_ITERATIONS: u32 = Bounds::PBKDF2_MIN_ITERATIONS;
    /// Argon2id minimums: 8 MiB and one pass (below RFC 9106's recommendations; warned by the CLI).
    pub const ARGON2_MIN_MEMORY_KIB: u32 = Bounds::ARGON2_MIN_MEMORY_KIB;
    pub const MIN_SALT_LEN: usize = Bounds::MIN_SALT_LEN;

    /// The default: PBKDF2-HMAC-SHA256 with 600,000 iterations.
    pub fn default_pbkdf2() -> Self {
        Self::Pbkdf2Sha256 {
            iterations: Self::PBKDF2_DEFAULT_ITERATIONS,
        }
    }

    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    pub fn default_argon2id() -> Self {
        Self::Argon2id {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }

    /// A short human description, e.g. `PBKDF2-HMAC-SHA256, 600000 iterations`.
    pub fn describe(&self) -> String {
        match self {
            Self::Pbkdf2Sha256 { iterations } => {
                format!("PBKDF2-HMAC-SHA256, {iterations} iterations")
            }
            Self::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => format!("Argon2id, m={memory_kib} KiB, t={iterations}, p={parallelism}"),
        }
    }

    /// True when the parameters are below what warden recommends for production.
    pub fn is_weaker_than_recommended(&self) -> bool {
        match *self {
            Self::Pbkdf2Sha256 { iterations } => iterations < Self::PBKDF2_DEFAULT_ITERATIONS,
            Self::Argon2id {
                memory_kib,
                iterations,
                ..
            } => memory_kib < 64 * 1024 || iterations < 3,
        }
    }

    /// Checks every parameter against [`Bounds`] without deriving anything.
    pub fn validate(&self) -> Result<(), KdfError> {
        match *self {
            Self::Pbkdf2Sha256 { iterations } => check(
                "PBKDF2-HMAC-SHA256",
                "iterations",
                iterations.into(),
                Bounds::PBKDF2_MIN_ITERATIONS.into(),
                Bounds::PBKDF2_MAX_ITERATIONS.into(),
                "600,000 is the default",
            ),
            Self::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                const A: &str = "Argon2id";
                check(
                    A,
                    "memory_kib",
                    memory_kib.into(),
                    Bounds::ARGON2_MIN_MEMORY_KIB.into(),
                    Bounds::ARGON2_MAX_MEMORY_KIB.into(),
                    "8 MiB to 4 GiB",
                )?;
                check(
                    A,
                    "iterations",
                    iterations.into(),
                    Bounds::ARGON2_MIN_ITERATIONS.into(),
                    Bounds::ARGON2_MAX_ITERATIONS.into(),
                    "passes over the memory",
                )?;
                check(
                    A,
                    "parallelism",
                    parallelism.into(),
                    Bounds::ARGON2_MIN_PARALLELISM.into(),
                    Bounds::ARGON2_MAX_PARALLELISM.into(),
                    "lanes",
                )?;
                let work = u64::from(memory_kib) * u64::from(iterations);
                if work > Bounds::ARGON2_MAX_WORK_KIB {
                    return Err(KdfError::TooMuchWork { work });
                }
                self.argon2(iterations, memory_kib, parallelism).map(|_| ())
            }
        }
    }

    // Implements: V3, V5
    /// Derives a 32-byte key from `secret` and `salt`.
    pub fn derive(&self, secret: &[u8], salt: &[u8]) -> Result<Key32, KdfError> {
        check_salt_len(salt.len())?;
        self.validate()?;
        self.derive_unchecked(secret, salt)
    }

    /// Derivation without the floors, for known-answer tests with published small parameters.
    fn derive_unchecked(&self, secret: &[u8], salt: &[u8]) -> Result<Key32, KdfError> {
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        match *self {
            Self::Pbkdf2Sha256 { iterations } => openssl::pkcs5::pbkdf2_hmac(
                secret,
                salt,
                iterations as usize,
                openssl::hash::MessageDigest::sha256(),
                &mut out[..],
            )
            .map_err(|_| KdfError::Backend)?,
            Self::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                let argon2 = self.argon2(iterations, memory_kib, parallelism)?;
                // Allocated here, fallibly: a failed allocation is an error, not an abort.
                let blocks = argon2.params().block_count();
                let mut memory: Vec<argon2::Block> = Vec::new();
                memory
                    .try_reserve_exact(blocks)
                    .map_err(|_| KdfError::OutOfMemory { memory_kib })?;
                memory.resize(blocks, argon2::Block::default());
                let result = argon2.hash_password_into_with_memory(
                    secret,
                    salt,
                    &mut out[..],
                    &mut memory[..],
                );
                // The blocks hold values derived from the secret.
                zeroize::Zeroize::zeroize(&mut memory);
                result.map_err(|e| KdfError::BadArgon2Params(report(&e)))?
            }
        }
        Ok(Key32::from_bytes(*out))
    }

    fn argon2(&self, t: u32, m: u32, p: u32) -> Result<argon2::Argon2<'static>, KdfError> {
        let params = argon2::Params::new(m, t, p, Some(32))
            .map_err(|e| KdfError::BadArgon2Params(report(&e)))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> String {
        let key = KdfParams::Pbkdf2Sha256 { iterations }
            .derive_unchecked(password, salt)
            .unwrap();
        hex::encode(key.expose_secret())
    }

    // RFC 6070-style vectors for PBKDF2-HMAC-SHA256, dkLen = 32 (as published alongside
    // RFC 7914 §11 and widely reproduced, e.g. in Python's hashlib test suite).
    /// Verifies: V5, V69
    #[test]
    fn pbkdf2_sha256_known_answers() {
        assert_eq!(
            pbkdf2(b"password", b"salt", 1),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
        assert_eq!(
            pbkdf2(b"password", b"salt", 2),
            "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"
        );
        assert_eq!(
            pbkdf2(b"password", b"salt", 4096),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
        assert_eq!(
            pbkdf2(
                b"passwordPASSWORDpassword",
                b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
                4096
            ),
            "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1"
        );
    }

    // RFC 7914 §11: PBKDF2-HMAC-SHA256 (P="passwd", S="salt", c=1, dkLen=64), first 32 bytes.
    /// Verifies: V5, V69
    #[test]
    fn pbkdf2_sha256_rfc7914_vector() {
        assert_eq!(
            pbkdf2(b"passwd", b"salt", 1),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    // RFC 9106 §5.3 test vector uses secret and associated data, which the plain password API
    // does not expose; this vector (password "password", salt "somesalt", t=2, m=65536, p=1,
    // 32-byte tag) is the one from the Argon2 reference implementation's test suite.
    /// Verifies: V69
    #[test]
    fn argon2id_known_answer() {
        let key = KdfParams::Argon2id {
            memory_kib: 65536,
            iterations: 2,
            parallelism: 1,
        }
        .derive_unchecked(b"password", b"somesalt")
        .unwrap();
        assert_eq!(
            hex::encode(key.expose_secret()),
            "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7"
        );
    }

    fn field_of(err: Option<KdfError>) -> Option<&'static str> {
        match err? {
            KdfError::OutOfBounds { field, .. } => Some(field),
            KdfError::TooMuchWork { .. } => Some("work"),
            _ => None,
        }
    }

    #[test]
    fn floors_are_enforced() {
        let salt = [0u8; 16];
        assert_eq!(
            field_of(
                KdfParams::Pbkdf2Sha256 { iterations: 999 }
                    .derive(b"x", &salt)
                    .err()
            ),
            Some("iterations")
        );
        assert_eq!(
            field_of(
                KdfParams::Argon2id {
                    memory_kib: 1024,
                    iterations: 1,
                    parallelism: 1
                }
                .derive(b"x", &salt)
                .err()
            ),
            Some("memory_kib")
        );
        assert_eq!(
            field_of(KdfParams::default_pbkdf2().derive(b"x", &[0u8; 8]).err()),
            Some("salt")
        );
    }

    // Security regression (issue 11): parameters a u32 allows but no machine can run used to
    // panic (PBKDF2 ≥ 2^31 in the openssl crate), abort (Argon2 memory 2^32 − 1 KiB) or hang
    // (2^31 − 1 PBKDF2 iterations, 2^32 − 1 Argon2 passes). Each is refused before deriving,
    // and the error names the field and the bounds. Each case would take minutes or crash
    // the test process without the bounds.
    #[test]
    fn ceilings_are_enforced_before_deriving() {
        let salt = [0u8; 32];
        let cases = [
            (
                KdfParams::Pbkdf2Sha256 {
                    iterations: 1 << 31,
                },
                "iterations",
                "10000000",
            ),
            (
                KdfParams::Pbkdf2Sha256 {
                    iterations: u32::MAX,
                },
                "iterations",
                "10000000",
            ),
            (
                KdfParams::Pbkdf2Sha256 {
                    iterations: (1 << 31) - 1,
                },
                "iterations",
                "10000000",
            ),
            (
                KdfParams::Argon2id {
                    memory_kib: u32::MAX,
                    iterations: 1,
                    parallelism: 1,
                },
                "memory_kib",
                "4194304",
            ),
            (
                KdfParams::Argon2id {
                    memory_kib: 65536,
                    iterations: u32::MAX,
                    parallelism: 1,
                },
                "iterations",
                "64",
            ),
            (
                KdfParams::Argon2id {
                    memory_kib: 65536,
                    iterations: 3,
                    parallelism: 0xFF_FFFF,
                },
                "parallelism",
                "64",
            ),
            (
                KdfParams::Argon2id {
                    memory_kib: 4 << 20,
                    iterations: 64,
                    parallelism: 4,
                },
                "work",
                "16777216",
            ),
        ];
        for (params, field, bound) in cases {
            let started = std::time::Instant::now();
            let err = params.derive(b"passphrase", &salt).err();
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
            assert_eq!(field_of(err), Some(field), "{params:?}");
            assert!(
                text.contains(bound) && text.contains(field) || field == "work",
                "{text}"
            );
        }
        assert_eq!(
            field_of(KdfParams::default_pbkdf2().derive(b"x", &[0u8; 65]).err()),
            Some("salt")
        );
        // The bounds themselves are accepted.
        for ok in [
            KdfParams::Pbkdf2Sha256 {
                iterations: Bounds::PBKDF2_MAX_ITERATIONS,
            },
            KdfParams::Argon2id {
                memory_kib: Bounds::ARGON2_MAX_MEMORY_KIB,
                iterations: 4,
                parallelism: 64,
            },
            KdfParams::Argon2id {
                memory_kib: 8192,
                iterations: 64,
                parallelism: 1,
            },
        ] {
            assert_eq!(ok.validate(), Ok(()), "{ok:?}");
        }
    }

    /// Verifies: V6
    #[test]
    fn serialized_form_names_the_algorithm() {
        let json = serde_json::to_string(&KdfParams::default_pbkdf2()).unwrap();
        assert_eq!(
            json,
            r#"{"algorithm":"PBKDF2-HMAC-SHA256","iterations":600000}"#
        );
        let back: KdfParams = serde_json::from_str(
            r#"{"algorithm":"Argon2id","memory_kib":65536,"iterations":3,"parallelism":4}"#,
        )
        .unwrap();
        assert_eq!(back, KdfParams::default_argon2id());
    }
}
