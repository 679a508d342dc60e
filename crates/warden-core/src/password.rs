//! Passwords: Argon2id PHC strings and the password policy (seed 002, "Access Control").
//!
//! A password is a [`Password`] (no `Debug`, zeroized, read only through `expose_secret()`).
//! The store keeps one [`PasswordHash`] per user and a few previous ones for the reuse check,
//! as PHC strings (`$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>`) that Python's argon2-cffi
//! reads and writes too. New hashes use the policy's [`Argon2Params`]; stored hashes with other
//! Argon2id parameters still verify, and [`PasswordHash::needs_rehash`] says when to replace
//! one after a successful login. [`PasswordPolicy`] checks a new password against every rule
//! at once and says when a password expires; the caller passes the clock in.

use std::fmt;

use crate::report::report;
use argon2::password_hash::{self, PasswordHasher, SaltString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A password typed by a person. Never stored; only its [`PasswordHash`] is.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Length in characters (Unicode scalar values), as the policy counts it.
    pub fn char_count(&self) -> usize {
        self.0.chars().count()
    }
}

/// Why Argon2id parameters or a stored hash were refused, or hashing failed. No variant
/// carries a password; stored-hash errors name the offending field, never the hash itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    // Parameters for new hashes (policy configuration).
    #[error("Argon2id parameter {name} = {value} is outside the accepted range {min}..={max}")]
    ParamOutOfRange {
        name: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("Argon2id parameters rejected: {0}")]
    InvalidParams(String),
    // Stored hashes (a PHC string from the store or another system).
    #[error("stored password hash is not a PHC string ({0})")]
    MalformedHash(String),
    #[error("stored password hash uses {0:?}; only argon2id is accepted")]
    UnsupportedAlgorithm(String),
    #[error("stored password hash has Argon2 version {0:?}; only v=19 is accepted")]
    UnsupportedVersion(Option<u32>),
    #[error("stored password hash has parameter {0:?}; only m, t and p are accepted")]
    UnsupportedParameter(String),
    #[error("stored password hash has no {0}")]
    MissingField(&'static str),
    // The Argon2 implementation.
    #[error("password hashing failed in the Argon2 library")]
    Backend,
}

/// Argon2id cost parameters for new password hashes. Defaults are seed 002's:
/// t=3, m=65536 KiB (64 MiB), p=4, 32-byte hash, 16-byte salt. Serialized as
/// `{"memory_kib":65536,"iterations":3,"parallelism":4,"hash_len":32,"salt_len":16}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Argon2ParamsFields", into = "Argon2ParamsFields")]
pub struct Argon2Params {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    hash_len: u32,
    salt_len: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Argon2ParamsFields {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    hash_len: u32,
    salt_len: u32,
}

impl Default for Argon2ParamsFields {
    fn default() -> Self {
        Argon2Params::default().into()
    }
}

impl Argon2Params {
    /// The same cost as a key-derivation function (a person's key slot is unlocked with their
    /// password at this cost, which is also what checking their hash costs).
    pub fn as_kdf(&self) -> crate::kdf::KdfParams {
        crate::kdf::KdfParams::Argon2id {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
        }
    }

    /// Floors and ceilings for new hashes. The floors are below OWASP's minimum (19 MiB, t=2)
    /// only so tests can run quickly; the ceilings also bound what a stored hash may demand
    /// (a tampered row must not make a login allocate gigabytes).
    pub const MEMORY_KIB_RANGE: (u32, u32) = (8 * 1024, 1024 * 1024);
    pub const ITERATIONS_RANGE: (u32, u32) = (1, 64);
    pub const PARALLELISM_RANGE: (u32, u32) = (1, 64);
    pub const HASH_LEN_RANGE: (u32, u32) = (16, 64);
    /// At most 48 bytes: the PHC salt field holds 64 base64 characters.
    pub const SALT_LEN_RANGE: (u32, u32) = (16, 48);

    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        hash_len: u32,
        salt_len: u32,
    ) -> Result<Self, PasswordError> {
        let check = |name, value, (min, max): (u32, u32)| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(PasswordError::ParamOutOfRange {
                    name,
                    value,
                    min,
                    max,
                })
            }
        };
        check("memory_kib", memory_kib, Self::MEMORY_KIB_RANGE)?;
        check("iterations", iterations, Self::ITERATIONS_RANGE)?;
        check("parallelism", parallelism, Self::PARALLELISM_RANGE)?;
        check("hash_len", hash_len, Self::HASH_LEN_RANGE)?;
        check("salt_len", salt_len, Self::SALT_LEN_RANGE)?;
        let params = Self {
            memory_kib,
            iterations,
            parallelism,
            hash_len,
            salt_len,
        };
        params.argon2()?;
        Ok(params)
    }

    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    pub fn hash_len(&self) -> u32 {
        self.hash_len
    }

    pub fn salt_len(&self) -> u32 {
        self.salt_len
    }

    fn argon2(&self) -> Result<argon2::Argon2<'static>, PasswordError> {
        let params = argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(self.hash_len as usize),
        )
        .map_err(|err| PasswordError::InvalidParams(report(&err)))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
            hash_len: 32,
            salt_len: 16,
        }
    }
}

impl TryFrom<Argon2ParamsFields> for Argon2Params {
    type Error = PasswordError;

    fn try_from(f: Argon2ParamsFields) -> Result<Self, Self::Error> {
        Self::new(
            f.memory_kib,
            f.iterations,
            f.parallelism,
            f.hash_len,
            f.salt_len,
        )
    }
}

impl From<Argon2Params> for Argon2ParamsFields {
    fn from(p: Argon2Params) -> Self {
        Self {
            memory_kib: p.memory_kib,
            iterations: p.iterations,
            parallelism: p.parallelism,
            hash_len: p.hash_len,
            salt_len: p.salt_len,
        }
    }
}

/// Whether a password matched a stored hash.
#[must_use = "a password check decides whether someone gets in"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    Match,
    Mismatch,
}

impl PasswordCheck {
    pub fn is_match(self) -> bool {
        self == Self::Match
    }
}

// Implements: V33, V66, V72
/// A parsed Argon2id PHC string. Not secret, but an offline-cracking target: it has no
/// `Display` and its `Debug` shows only the parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    phc: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("memory_kib", &self.memory_kib)
            .field("iterations", &self.iterations)
            .field("parallelism", &self.parallelism)
            .field("salt_len", &self.salt.len())
            .field("hash_len", &self.hash.len())
            .finish_non_exhaustive()
    }
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn create(password: &Password, params: &Argon2Params) -> Result<Self, PasswordError> {
        let mut salt = Zeroizing::new(vec![0u8; params.salt_len as usize]);
        crate::rand::fill(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|_| PasswordError::Backend)?;
        let phc = params
            .argon2()?
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map_err(|_| PasswordError::Backend)?
            .to_string();
        Self::parse(&phc)
    }

    /// A hash of a random password nobody knows. Verify against it when a user name does not
    /// exist, so the time a login takes does not tell which names do.
    pub fn decoy(params: &Argon2Params) -> Result<Self, PasswordError> {
        let mut random = Zeroizing::new([0u8; 24]);
        crate::rand::fill(&mut random[..]);
        Self::create(&Password::new(hex::encode(*random)), params)
    }

    /// Parses a stored Argon2id (v=19) PHC string with parameters `m`, `t`, `p` only, a salt of
    /// 8–48 bytes and a hash of 16–64 bytes. Costs above [`Argon2Params`]'s ceilings are
    /// refused; costs below its floors are accepted (and flagged by `needs_rehash`).
    pub fn parse(phc: &str) -> Result<Self, PasswordError> {
        let parsed = password_hash::PasswordHash::new(phc)
            .map_err(|err| PasswordError::MalformedHash(report(&err)))?;
        if parsed.algorithm != argon2::ARGON2ID_IDENT {
            return Err(PasswordError::UnsupportedAlgorithm(short(
                parsed.algorithm.as_str(),
            )));
        }
        if parsed.version != Some(0x13) {
            return Err(PasswordError::UnsupportedVersion(parsed.version));
        }
        for (name, _) in parsed.params.iter() {
            if !matches!(name.as_str(), "m" | "t" | "p") {
                return Err(PasswordError::UnsupportedParameter(short(name.as_str())));
            }
        }
        let cost = |name: &'static str, (_, max): (u32, u32)| {
            let value = parsed
                .params
                .get_decimal(name)
                .ok_or(PasswordError::MissingField(name))?;
            if value > max {
                return Err(PasswordError::ParamOutOfRange {
                    name,
                    value,
                    min: 1,
                    max,
                });
            }
            Ok(value)
        };
        let memory_kib = cost("m", Argon2Params::MEMORY_KIB_RANGE)?;
        let iterations = cost("t", Argon2Params::ITERATIONS_RANGE)?;
        let parallelism = cost("p", Argon2Params::PARALLELISM_RANGE)?;

        let mut salt_buf = [0u8; 64];
        let salt = parsed
            .salt
            .ok_or(PasswordError::MissingField("salt"))?
            .decode_b64(&mut salt_buf)
            .map_err(|err| PasswordError::MalformedHash(format!("salt: {err}")))?
            .to_vec();
        if !(8..=48).contains(&salt.len()) {
            return Err(PasswordError::MalformedHash(format!(
                "salt of {} bytes (8 to 48 accepted)",
                salt.len()
            )));
        }
        let hash = parsed
            .hash
            .ok_or(PasswordError::MissingField("hash"))?
            .as_bytes()
            .to_vec();
        if !(16..=64).contains(&hash.len()) {
            return Err(PasswordError::MalformedHash(format!(
                "hash of {} bytes (16 to 64 accepted)",
                hash.len()
            )));
        }
        // Cross-parameter rules (m >= 8p, ...) come from the Argon2 implementation itself.
        argon2::Params::new(memory_kib, iterations, parallelism, Some(hash.len()))
            .map_err(|err| PasswordError::InvalidParams(report(&err)))?;
        Ok(Self {
            phc: phc.to_owned(),
            memory_kib,
            iterations,
            parallelism,
            salt,
            hash,
        })
    }

    /// The PHC string, for the store.
    pub fn as_phc(&self) -> &str {
        &self.phc
    }

    /// Recomputes the hash with this hash's own parameters and salt, and compares in constant
    /// time.
    pub fn verify(&self, password: &Password) -> PasswordCheck {
        let Ok(params) = argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(self.hash.len()),
        ) else {
            // `parse` already built these parameters once; this cannot happen.
            return PasswordCheck::Mismatch;
        };
        let argon2 =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut computed = Zeroizing::new(vec![0u8; self.hash.len()]);
        // With parameters, salt and output length checked by `parse`, Argon2 fails only for a
        // password over 4 GiB, which matches nothing.
        if argon2
            .hash_password_into(
                password.expose_secret().as_bytes(),
                &self.salt,
                &mut computed,
            )
            .is_err()
        {
            return PasswordCheck::Mismatch;
        }
        if crate::mac::ct_eq(&computed, &self.hash) {
            PasswordCheck::Match
        } else {
            PasswordCheck::Mismatch
        }
    }

    /// True when this hash was not made with exactly `params` (costs, hash or salt length);
    /// after a successful login the caller then stores a new hash of the same password.
    pub fn needs_rehash(&self, params: &Argon2Params) -> bool {
        self.memory_kib != params.memory_kib
            || self.iterations != params.iterations
            || self.parallelism != params.parallelism
            || self.hash.len() != params.hash_len as usize
            || self.salt.len() != params.salt_len as usize
    }
}

/// Checks `password` against a stored PHC string: [`PasswordHash::parse`] then
/// [`PasswordHash::verify`].
pub fn verify_password(password: &Password, phc: &str) -> Result<PasswordCheck, PasswordError> {
    Ok(PasswordHash::parse(phc)?.verify(password))
}

/// One rule a new password breaks, with a message for the person choosing it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    #[error("must be at least {min} characters long")]
    TooShort { min: usize },
    #[error("must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("must contain at least one uppercase letter")]
    MissingUppercase,
    #[error("must contain at least one lowercase letter")]
    MissingLowercase,
    #[error("must contain at least one digit")]
    MissingDigit,
    #[error("must contain at least one special character (not a letter, digit or space)")]
    MissingSpecial,
    #[error("must not be the same as any of the last {history} passwords")]
    Reused { history: usize },
}

/// Every rule a new password breaks, in the policy's order; never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyViolations(Vec<PolicyViolation>);

impl PolicyViolations {
    pub fn violations(&self) -> &[PolicyViolation] {
        &self.0
    }
}

impl fmt::Display for PolicyViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the password ")?;
        for (index, violation) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyViolations {}

/// When a password stops being accepted, from the time it was last changed.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordExpiry {
    /// The policy sets no maximum age.
    Never,
    /// Still valid; expires at this Unix time.
    ValidUntil { expires_at: u64 },
    /// Expired at this Unix time; the user must choose a new password.
    Expired { expired_at: u64 },
}

/// Why a password policy in configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyConfigError {
    #[error("min_chars ({min}) must be between 1 and max_chars ({max})")]
    LengthBounds { min: usize, max: usize },
    #[error("max_age_days must be at least 1 (leave it out for passwords that never expire)")]
    ZeroMaxAge,
    #[error(transparent)]
    Argon2(#[from] PasswordError),
}

/// The rules for choosing a password, and how it is hashed. Defaults are seed 002's: at least
/// 16 characters with an uppercase letter, a lowercase letter, a digit and a special
/// character; none of the last 5 passwords again; expiry after 90 days. Every field is
/// configurable; missing fields take the defaults.
///
/// Letters and digits are Unicode-aware (`É` is uppercase, `٣` is a digit); a special
/// character is anything that is not a letter, a digit, white space or a control character.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PasswordPolicyFields", into = "PasswordPolicyFields")]
pub struct PasswordPolicy {
    min_chars: usize,
    max_chars: usize,
    require_uppercase: bool,
    require_lowercase: bool,
    require_digit: bool,
    require_special: bool,
    history: usize,
    max_age_days: Option<u32>,
    argon2: Argon2Params,
}

/// The serialized shape of [`PasswordPolicy`], checked on the way in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicyFields {
    pub min_chars: usize,
    pub max_chars: usize,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_digit: bool,
    pub require_special: bool,
    /// How many previous passwords may not be chosen again (0 turns the check off).
    pub history: usize,
    /// `None`: passwords never expire.
    pub max_age_days: Option<u32>,
    pub argon2: Argon2Params,
}

impl Default for PasswordPolicyFields {
    fn default() -> Self {
        Self {
            min_chars: 16,
            max_chars: 1024,
            require_uppercase: true,
            require_lowercase: true,
            require_digit: true,
            require_special: true,
            history: 5,
            max_age_days: Some(90),
            argon2: Argon2Params::default(),
        }
    }
}

impl TryFrom<PasswordPolicyFields> for PasswordPolicy {
    type Error = PolicyConfigError;

    fn try_from(f: PasswordPolicyFields) -> Result<Self, Self::Error> {
        if f.min_chars == 0 || f.min_chars > f.max_chars {
            return Err(PolicyConfigError::LengthBounds {
                min: f.min_chars,
                max: f.max_chars,
            });
        }
        if f.max_age_days == Some(0) {
            return Err(PolicyConfigError::ZeroMaxAge);
        }
        Ok(Self {
            min_chars: f.min_chars,
            max_chars: f.max_chars,
            require_uppercase: f.require_uppercase,
            require_lowercase: f.require_lowercase,
            require_digit: f.require_digit,
            require_special: f.require_special,
            history: f.history,
            max_age_days: f.max_age_days,
            argon2: f.argon2,
        })
    }
}

impl From<PasswordPolicy> for PasswordPolicyFields {
    fn from(p: PasswordPolicy) -> Self {
        Self {
            min_chars: p.min_chars,
            max_chars: p.max_chars,
            require_uppercase: p.require_uppercase,
            require_lowercase: p.require_lowercase,
            require_digit: p.require_digit,
            require_special: p.require_special,
            history: p.history,
            max_age_days: p.max_age_days,
            argon2: p.argon2,
        }
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        // The default fields satisfy every check in `try_from`.
        let f = PasswordPolicyFields::default();
        Self {
            min_chars: f.min_chars,
            max_chars: f.max_chars,
            require_uppercase: f.require_uppercase,
            require_lowercase: f.require_lowercase,
            require_digit: f.require_digit,
            require_special: f.require_special,
            history: f.history,
            max_age_days: f.max_age_days,
            argon2: f.argon2,
        }
    }
}

const SECS_PER_DAY: u64 = 24 * 60 * 60;

impl PasswordPolicy {
    /// A policy from explicit fields (the same checks as deserialization).
    pub fn new(fields: PasswordPolicyFields) -> Result<Self, PolicyConfigError> {
        Self::try_from(fields)
    }

    /// The policy's settings, e.g. to show them or to change one and build a new policy.
    pub fn fields(&self) -> PasswordPolicyFields {
        self.clone().into()
    }

    /// The parameters for new hashes.
    pub fn argon2(&self) -> &Argon2Params {
        &self.argon2
    }

    // Implements: V29, V30, V31
    /// Checks a new password against every rule and returns all that fail.
    ///
    /// `previous` are the user's stored hashes, newest first, starting with the current one;
    /// the first `history` of them are checked for reuse. That costs one Argon2id computation
    /// each (a fraction of a second at the default parameters).
    pub fn check_new_password(
        &self,
        candidate: &Password,
        previous: &[PasswordHash],
    ) -> Result<(), PolicyViolations> {
        let text = candidate.expose_secret();
        let chars = candidate.char_count();
        let mut violations = Vec::new();
        if chars < self.min_chars {
            violations.push(PolicyViolation::TooShort {
                min: self.min_chars,
            });
        }
        if chars > self.max_chars {
            violations.push(PolicyViolation::TooLong {
                max: self.max_chars,
            });
        }
        if self.require_uppercase && !text.chars().any(char::is_uppercase) {
            violations.push(PolicyViolation::MissingUppercase);
        }
        if self.require_lowercase && !text.chars().any(char::is_lowercase) {
            violations.push(PolicyViolation::MissingLowercase);
        }
        if self.require_digit && !text.chars().any(char::is_numeric) {
            violations.push(PolicyViolation::MissingDigit);
        }
        if self.require_special && !text.chars().any(is_special) {
            violations.push(PolicyViolation::MissingSpecial);
        }
        // Longer than allowed is not hashed: the limit is also there to bound the work.
        let reused = chars <= self.max_chars
            && previous
                .iter()
                .take(self.history)
                .any(|old| old.verify(candidate).is_match());
        if reused {
            violations.push(PolicyViolation::Reused {
                history: self.history,
            });
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(PolicyViolations(violations))
        }
    }

    /// Hashes a password with the policy's parameters.
    pub fn hash(&self, password: &Password) -> Result<PasswordHash, PasswordError> {
        PasswordHash::create(password, &self.argon2)
    }

    /// True when a stored hash was made with other parameters than the policy's.
    pub fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        hash.needs_rehash(&self.argon2)
    }

    // Implements: V32
    /// When a password last changed at `last_changed_unix` expires, seen at `now_unix`.
    /// A clock that reads earlier than the change counts as no time having passed.
    pub fn expiry(&self, last_changed_unix: u64, now_unix: u64) -> PasswordExpiry {
        let Some(days) = self.max_age_days else {
            return PasswordExpiry::Never;
        };
        let expires_at = last_changed_unix.saturating_add(u64::from(days) * SECS_PER_DAY);
        if now_unix >= expires_at {
            PasswordExpiry::Expired {
                expired_at: expires_at,
            }
        } else {
            PasswordExpiry::ValidUntil { expires_at }
        }
    }
}

fn is_special(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control()
}

fn short(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the tests run quickly; the defaults are exercised in the
    /// integration tests and the benchmark.
    fn fast() -> Argon2Params {
        Argon2Params::new(8 * 1024, 1, 1, 32, 16).unwrap()
    }

    fn fast_policy() -> PasswordPolicy {
        PasswordPolicy::new(PasswordPolicyFields {
            argon2: fast(),
            ..PasswordPolicyFields::default()
        })
        .unwrap()
    }

    fn pw(text: &str) -> Password {
        Password::new(text.to_owned())
    }

    const GOOD: &str = "Correct-Horse-Battery-9";

    /// Verifies: V33, V72
    #[test]
    fn default_params_are_the_seeds() {
        let p = Argon2Params::default();
        assert_eq!(
            (
                p.memory_kib(),
                p.iterations(),
                p.parallelism(),
                p.hash_len(),
                p.salt_len()
            ),
            (65536, 3, 4, 32, 16)
        );
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"memory_kib":65536,"iterations":3,"parallelism":4,"hash_len":32,"salt_len":16}"#
        );
    }

    #[test]
    fn params_out_of_range_are_refused() {
        assert_eq!(
            Argon2Params::new(1024, 3, 4, 32, 16).err(),
            Some(PasswordError::ParamOutOfRange {
                name: "memory_kib",
                value: 1024,
                min: 8192,
                max: 1024 * 1024
            })
        );
        assert!(Argon2Params::new(65536, 0, 4, 32, 16).is_err());
        assert!(Argon2Params::new(65536, 3, 0, 32, 16).is_err());
        assert!(Argon2Params::new(65536, 3, 4, 8, 16).is_err());
        assert!(Argon2Params::new(65536, 3, 4, 32, 8).is_err());
        assert!(Argon2Params::new(65536, 3, 4, 32, 49).is_err());
        assert!(serde_json::from_str::<Argon2Params>(r#"{"iterations":0}"#).is_err());
        assert!(serde_json::from_str::<Argon2Params>(r#"{"memory":65536}"#).is_err());
    }

    /// Verifies: V33, V72
    #[test]
    fn hash_has_the_phc_shape_and_verifies() {
        let hash = PasswordHash::create(&pw(GOOD), &fast()).unwrap();
        assert!(
            hash.as_phc().starts_with("$argon2id$v=19$m=8192,t=1,p=1$"),
            "{}",
            hash.as_phc()
        );
        assert_eq!(hash.verify(&pw(GOOD)), PasswordCheck::Match);
        assert_eq!(
            hash.verify(&pw("Correct-Horse-Battery-8")),
            PasswordCheck::Mismatch
        );
        assert_eq!(hash.verify(&pw("")), PasswordCheck::Mismatch);
        // A fresh salt each time.
        let again = PasswordHash::create(&pw(GOOD), &fast()).unwrap();
        assert_ne!(hash.as_phc(), again.as_phc());
    }

    /// Verifies: V13
    #[test]
    fn debug_shows_parameters_only() {
        let hash = PasswordHash::create(&pw(GOOD), &fast()).unwrap();
        let debug = format!("{hash:?}");
        let hash_field = hash.as_phc().rsplit('$').next().unwrap();
        assert!(!debug.contains(hash_field), "{debug}");
        assert!(debug.contains("memory_kib: 8192"), "{debug}");
    }

    /// Verifies: V72
    #[test]
    fn verifies_a_known_argon2_cffi_hash() {
        // argon2-cffi 25.1: argon2.low_level.hash_secret(b"password", b"somesaltsomesalt",
        //   time_cost=1, memory_cost=8192, parallelism=1, hash_len=32, type=Type.ID).
        let phc = "$argon2id$v=19$m=8192,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$hPsAa7w81piVcitktb9zUlGp6Onz7Lk/9ZW5iut6zLc";
        let hash = PasswordHash::parse(phc).unwrap();
        assert_eq!(hash.verify(&pw("password")), PasswordCheck::Match);
        assert_eq!(hash.verify(&pw("Password")), PasswordCheck::Mismatch);
    }

    #[test]
    fn needs_rehash_when_any_parameter_differs() {
        let hash = PasswordHash::create(&pw(GOOD), &fast()).unwrap();
        assert!(!hash.needs_rehash(&fast()));
        for other in [
            Argon2Params::new(16 * 1024, 1, 1, 32, 16),
            Argon2Params::new(8 * 1024, 2, 1, 32, 16),
            Argon2Params::new(8 * 1024, 1, 2, 32, 16),
            Argon2Params::new(8 * 1024, 1, 1, 64, 16),
            Argon2Params::new(8 * 1024, 1, 1, 32, 32),
        ] {
            assert!(hash.needs_rehash(&other.unwrap()));
        }
        assert!(fast_policy().needs_rehash(
            &PasswordHash::create(
                &pw(GOOD),
                &Argon2Params::new(16 * 1024, 1, 1, 32, 16).unwrap()
            )
            .unwrap()
        ));
    }

    #[test]
    fn stored_hashes_are_parsed_strictly() {
        let salt = "c29tZXNhbHRzb21lc2FsdA";
        let out = "hPsAa7w81piVcitktb9zUlGp6Onz7Lk/9ZW5iut6zLc";
        type Expectation = fn(&PasswordError) -> bool;
        let cases: Vec<(String, Expectation)> = vec![
            ("".into(), |e| matches!(e, PasswordError::MalformedHash(_))),
            ("not a hash".into(), |e| {
                matches!(e, PasswordError::MalformedHash(_))
            }),
            (
                format!("$argon2i$v=19$m=8192,t=1,p=1${salt}${out}"),
                |e| matches!(e, PasswordError::UnsupportedAlgorithm(a) if a == "argon2i"),
            ),
            (format!("$argon2d$v=19$m=8192,t=1,p=1${salt}${out}"), |e| {
                matches!(e, PasswordError::UnsupportedAlgorithm(_))
            }),
            (format!("$scrypt$ln=16,r=8,p=1${salt}${out}"), |e| {
                matches!(e, PasswordError::UnsupportedAlgorithm(_))
            }),
            (format!("$argon2id$v=16$m=8192,t=1,p=1${salt}${out}"), |e| {
                matches!(e, PasswordError::UnsupportedVersion(Some(16)))
            }),
            (format!("$argon2id$m=8192,t=1,p=1${salt}${out}"), |e| {
                matches!(e, PasswordError::UnsupportedVersion(None))
            }),
            (
                format!("$argon2id$v=19$m=8192,t=1,p=1,keyid=AAAA${salt}${out}"),
                |e| matches!(e, PasswordError::UnsupportedParameter(p) if p == "keyid"),
            ),
            (format!("$argon2id$v=19$m=8192,t=1${salt}${out}"), |e| {
                matches!(e, PasswordError::MissingField("p"))
            }),
            (format!("$argon2id$v=19$m=8192,t=1,p=1${salt}"), |e| {
                matches!(e, PasswordError::MissingField("hash"))
            }),
            ("$argon2id$v=19$m=8192,t=1,p=1".to_owned(), |e| {
                matches!(e, PasswordError::MissingField("salt"))
            }),
            (
                format!("$argon2id$v=19$m=4194304,t=1,p=1${salt}${out}"),
                |e| matches!(e, PasswordError::ParamOutOfRange { name: "m", .. }),
            ),
            (
                format!("$argon2id$v=19$m=8192,t=1000,p=1${salt}${out}"),
                |e| matches!(e, PasswordError::ParamOutOfRange { name: "t", .. }),
            ),
            (format!("$argon2id$v=19$m=8,t=1,p=4${salt}${out}"), |e| {
                matches!(e, PasswordError::InvalidParams(_))
            }),
            (format!("$argon2id$v=19$m=8192,t=1,p=1$c29tZQ${out}"), |e| {
                matches!(e, PasswordError::MalformedHash(_))
            }),
            (
                format!("$argon2id$v=19$m=8192,t=1,p=1${salt}$AAAAAAAAAAAAAA"),
                |e| matches!(e, PasswordError::MalformedHash(_)),
            ),
        ];
        for (text, expected) in cases {
            let err = PasswordHash::parse(&text).unwrap_err();
            assert!(expected(&err), "{text}: {err:?}");
        }
    }

    #[test]
    fn verify_password_parses_then_verifies() {
        let phc = "$argon2id$v=19$m=8192,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$hPsAa7w81piVcitktb9zUlGp6Onz7Lk/9ZW5iut6zLc";
        assert_eq!(
            verify_password(&pw("password"), phc),
            Ok(PasswordCheck::Match)
        );
        assert!(verify_password(&pw("password"), "$argon2i$").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "\\$argon2id\\$v=19\\$.{0,80}") {
            let _ = PasswordHash::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_anything(text in ".{0,120}") {
            let _ = PasswordHash::parse(&text);
        }
    }

    #[test]
    fn a_good_password_passes_every_rule() {
        assert_eq!(fast_policy().check_new_password(&pw(GOOD), &[]), Ok(()));
    }

    fn violations(policy: &PasswordPolicy, text: &str) -> Vec<PolicyViolation> {
        match policy.check_new_password(&pw(text), &[]) {
            Ok(()) => vec![],
            Err(v) => v.violations().to_vec(),
        }
    }

    /// Verifies: V29, V30
    #[test]
    fn each_rule_is_reported_on_its_own() {
        let policy = fast_policy();
        assert_eq!(
            violations(&policy, "Short-Pass-9"),
            [PolicyViolation::TooShort { min: 16 }]
        );
        assert_eq!(
            violations(&policy, "correct-horse-battery-9"),
            [PolicyViolation::MissingUppercase]
        );
        assert_eq!(
            violations(&policy, "CORRECT-HORSE-BATTERY-9"),
            [PolicyViolation::MissingLowercase]
        );
        assert_eq!(
            violations(&policy, "Correct-Horse-Battery-X"),
            [PolicyViolation::MissingDigit]
        );
        assert_eq!(
            violations(&policy, "Correct Horse Battery 9"),
            [PolicyViolation::MissingSpecial]
        );
        let long = format!("{GOOD}{}", "x".repeat(1024));
        assert_eq!(
            violations(&policy, &long),
            [PolicyViolation::TooLong { max: 1024 }]
        );
    }

    #[test]
    fn every_failed_rule_is_returned_at_once() {
        let err = fast_policy()
            .check_new_password(&pw("abc"), &[])
            .unwrap_err();
        assert_eq!(
            err.violations(),
            [
                PolicyViolation::TooShort { min: 16 },
                PolicyViolation::MissingUppercase,
                PolicyViolation::MissingDigit,
                PolicyViolation::MissingSpecial,
            ]
        );
        assert_eq!(
            err.to_string(),
            "the password must be at least 16 characters long; must contain at least one \
             uppercase letter; must contain at least one digit; must contain at least one \
             special character (not a letter, digit or space)"
        );
        assert!(!err.to_string().contains("abc"));
    }

    /// Verifies: V29, V30
    #[test]
    fn length_counts_characters_and_classes_are_unicode_aware() {
        let policy = fast_policy();
        // 16 characters but 32 bytes.
        assert_eq!(violations(&policy, "Éé٣€ÉéÉéÉéÉéÉéÉé"), []);
        assert_eq!(
            violations(&policy, "Éé٣€ÉéÉéÉéÉéÉé"),
            [PolicyViolation::TooShort { min: 16 }]
        );
    }

    #[test]
    fn rules_can_be_switched_off() {
        let policy = PasswordPolicy::new(PasswordPolicyFields {
            min_chars: 4,
            require_uppercase: false,
            require_lowercase: false,
            require_digit: false,
            require_special: false,
            argon2: fast(),
            ..PasswordPolicyFields::default()
        })
        .unwrap();
        assert_eq!(violations(&policy, "abcd"), []);
    }

    /// Verifies: V31
    #[test]
    fn reuse_of_any_of_the_last_five_is_refused() {
        let policy = fast_policy();
        let texts: Vec<String> = (0..7).map(|i| format!("Old-Password-Nr-{i}")).collect();
        // Newest first: texts[6] is the current password, texts[0] the oldest.
        let history: Vec<PasswordHash> = texts
            .iter()
            .rev()
            .map(|t| policy.hash(&pw(t)).unwrap())
            .collect();
        for (index, text) in texts.iter().enumerate() {
            let result = policy.check_new_password(&pw(text), &history);
            if index >= 2 {
                assert_eq!(
                    result.unwrap_err().violations(),
                    [PolicyViolation::Reused { history: 5 }],
                    "{text}"
                );
            } else {
                // Sixth and seventh most recent: allowed again.
                assert_eq!(result, Ok(()), "{text}");
            }
        }
        assert_eq!(
            policy.check_new_password(&pw("Brand-New-Password-1"), &history),
            Ok(())
        );
    }

    #[test]
    fn history_zero_turns_the_reuse_check_off() {
        let policy = PasswordPolicy::new(PasswordPolicyFields {
            history: 0,
            argon2: fast(),
            ..PasswordPolicyFields::default()
        })
        .unwrap();
        let current = policy.hash(&pw(GOOD)).unwrap();
        assert_eq!(policy.check_new_password(&pw(GOOD), &[current]), Ok(()));
    }

    /// Verifies: V32
    #[test]
    fn expiry_after_ninety_days() {
        let policy = fast_policy();
        let changed = 1_700_000_000;
        let expires_at = changed + 90 * 86_400;
        assert_eq!(
            policy.expiry(changed, changed),
            PasswordExpiry::ValidUntil { expires_at }
        );
        assert_eq!(
            policy.expiry(changed, expires_at - 1),
            PasswordExpiry::ValidUntil { expires_at }
        );
        assert_eq!(
            policy.expiry(changed, expires_at),
            PasswordExpiry::Expired {
                expired_at: expires_at
            }
        );
        // A clock behind the change time: not expired.
        assert_eq!(
            policy.expiry(changed, 0),
            PasswordExpiry::ValidUntil { expires_at }
        );
        assert_eq!(
            policy.expiry(u64::MAX - 5, u64::MAX - 1),
            PasswordExpiry::ValidUntil {
                expires_at: u64::MAX
            }
        );
        let never = PasswordPolicy::new(PasswordPolicyFields {
            max_age_days: None,
            ..PasswordPolicyFields::default()
        })
        .unwrap();
        assert_eq!(never.expiry(0, u64::MAX), PasswordExpiry::Never);
    }

    #[test]
    fn policy_configuration_is_checked() {
        let policy: PasswordPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(policy, PasswordPolicy::default());
        let custom: PasswordPolicy =
            serde_json::from_str(r#"{"min_chars":20,"history":10,"max_age_days":null}"#).unwrap();
        assert_eq!(custom.fields().min_chars, 20);
        assert_eq!(custom.fields().max_age_days, None);
        for bad in [
            r#"{"min_chars":0}"#,
            r#"{"min_chars":20,"max_chars":10}"#,
            r#"{"max_age_days":0}"#,
            r#"{"min_length":16}"#,
            r#"{"argon2":{"memory_kib":1}}"#,
        ] {
            assert!(
                serde_json::from_str::<PasswordPolicy>(bad).is_err(),
                "{bad}"
            );
        }
        let json = serde_json::to_value(PasswordPolicy::default()).unwrap();
        assert_eq!(json["min_chars"], 16);
        assert_eq!(json["history"], 5);
        assert_eq!(json["max_age_days"], 90);
        assert_eq!(json["argon2"]["memory_kib"], 65536);
    }
}
