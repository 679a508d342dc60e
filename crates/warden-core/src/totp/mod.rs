//! One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), the second factor the shim asks
//! for at its challenge prompt.
//!
//! Everything here is pure. The caller passes the current Unix time and the last time step it
//! accepted for the user; an accepted verification returns the step to store in its place, so
//! a code is never accepted twice (RFC 6238 §5.2), even across restarts once the store persists
//! it. The shared secret is a [`TotpSecret`]: no `Debug`, zeroized on drop, read only through
//! `expose_secret()`. Enrollment travels as an `otpauth://` key URI ([`KeyUri`]).
//!
//! Verification computes the code for every step in the window and compares each in constant
//! time before looking at the outcome, so response timing does not tell which step matched.

mod base32;
mod uri;

use std::fmt;
use std::str::FromStr;

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde::{Deserialize, Serialize};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::secret::{SecretBytes, SecretString};

pub use base32::Base32Error;
pub use uri::{KeyUri, KeyUriError};

/// The HMAC behind the one-time password. SHA1 is the default and the only one every
/// authenticator app supports; SHA256 and SHA512 are RFC 6238 options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    #[default]
    #[serde(rename = "SHA1")]
    Sha1,
    #[serde(rename = "SHA256")]
    Sha256,
    #[serde(rename = "SHA512")]
    Sha512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Self::Sha1, Self::Sha256, Self::Sha512];

    /// The name used in key URIs and configuration: `SHA1`, `SHA256`, `SHA512`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            Self::Sha1 => MessageDigest::sha1(),
            Self::Sha256 => MessageDigest::sha256(),
            Self::Sha512 => MessageDigest::sha512(),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = TotpParamsError;

    /// Case-insensitive: `sha1`, `SHA256`, `Sha512`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| TotpParamsError::UnknownAlgorithm(shorten(text)))
    }
}

/// How many decimal digits a code has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Digits {
    #[default]
    Six,
    Eight,
}

impl Digits {
    pub fn count(self) -> usize {
        match self {
            Self::Six => 6,
            Self::Eight => 8,
        }
    }

    fn modulus(self) -> u32 {
        match self {
            Self::Six => 1_000_000,
            Self::Eight => 100_000_000,
        }
    }
}

impl TryFrom<u8> for Digits {
    type Error = TotpParamsError;

    fn try_from(count: u8) -> Result<Self, Self::Error> {
        match count {
            6 => Ok(Self::Six),
            8 => Ok(Self::Eight),
            other => Err(TotpParamsError::UnsupportedDigits(other.into())),
        }
    }
}

impl From<Digits> for u8 {
    fn from(digits: Digits) -> u8 {
        match digits {
            Digits::Six => 6,
            Digits::Eight => 8,
        }
    }
}

/// The length of one time step in seconds (RFC 6238's X), 1 to 3600; 30 by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Period(u32);

impl Period {
    pub const DEFAULT_SECS: u32 = 30;
    pub const MAX_SECS: u32 = 3600;

    pub fn from_secs(secs: u32) -> Result<Self, TotpParamsError> {
        if (1..=Self::MAX_SECS).contains(&secs) {
            Ok(Self(secs))
        } else {
            Err(TotpParamsError::PeriodOutOfRange(secs.into()))
        }
    }

    pub fn secs(self) -> u32 {
        self.0
    }
}

impl Default for Period {
    fn default() -> Self {
        Self(Self::DEFAULT_SECS)
    }
}

impl TryFrom<u32> for Period {
    type Error = TotpParamsError;

    fn try_from(secs: u32) -> Result<Self, Self::Error> {
        Self::from_secs(secs)
    }
}

impl From<Period> for u32 {
    fn from(period: Period) -> u32 {
        period.0
    }
}

/// How many time steps before and after the current one a code may come from, to allow for
/// clock drift and typing time. Each side is at most [`Window::MAX_STEPS`]; ±1 by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "WindowFields", into = "WindowFields")]
pub struct Window {
    before: u8,
    after: u8,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFields {
    before: u8,
    after: u8,
}

impl Window {
    /// Every extra step is another code an attacker's guess can hit; ten is already generous.
    pub const MAX_STEPS: u8 = 10;

    pub fn new(before: u8, after: u8) -> Result<Self, TotpParamsError> {
        if before > Self::MAX_STEPS || after > Self::MAX_STEPS {
            return Err(TotpParamsError::WindowTooWide { before, after });
        }
        Ok(Self { before, after })
    }

    /// Only the current step.
    pub fn exact() -> Self {
        Self {
            before: 0,
            after: 0,
        }
    }

    pub fn before(self) -> u8 {
        self.before
    }

    pub fn after(self) -> u8 {
        self.after
    }
}

impl Default for Window {
    fn default() -> Self {
        Self {
            before: 1,
            after: 1,
        }
    }
}

impl TryFrom<WindowFields> for Window {
    type Error = TotpParamsError;

    fn try_from(fields: WindowFields) -> Result<Self, Self::Error> {
        Self::new(fields.before, fields.after)
    }
}

impl From<Window> for WindowFields {
    fn from(window: Window) -> Self {
        Self {
            before: window.before,
            after: window.after,
        }
    }
}

/// Why TOTP parameters were refused (configuration, key URIs).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TotpParamsError {
    #[error("unknown TOTP algorithm {0:?} (expected SHA1, SHA256 or SHA512)")]
    UnknownAlgorithm(String),
    #[error("TOTP codes have 6 or 8 digits, not {0}")]
    UnsupportedDigits(u64),
    #[error("TOTP period must be 1 to {max} seconds, not {0}", max = Period::MAX_SECS)]
    PeriodOutOfRange(u64),
    #[error("TOTP window of {before} steps before and {after} after is too wide (at most {max} each side)", max = Window::MAX_STEPS)]
    WindowTooWide { before: u8, after: u8 },
}

// Implements: S3
/// Everything about a TOTP credential except its secret: what configuration holds and what the
/// store keeps next to each user's secret. Serialized as
/// `{"algorithm":"SHA1","digits":6,"period_secs":30,"window":{"before":1,"after":1}}`;
/// missing fields take the defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TotpParams {
    pub algorithm: Algorithm,
    pub digits: Digits,
    pub period_secs: Period,
    pub window: Window,
}

/// Why bytes or text cannot be a TOTP secret. Never carries any part of the secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TotpSecretError {
    #[error("TOTP secret is not valid base32")]
    NotBase32(#[from] Base32Error),
    #[error("TOTP secret has {bits} bits; at least {min} are required", min = TotpSecret::MIN_BYTES * 8)]
    TooShort { bits: usize },
    #[error("TOTP secret has {bits} bits; at most {max} are accepted", max = TotpSecret::MAX_BYTES * 8)]
    TooLong { bits: usize },
}

/// The shared secret of a TOTP credential (RFC 4226's K).
#[derive(Clone)]
pub struct TotpSecret(SecretBytes);

impl TotpSecret {
    /// New secrets are 160 bits, RFC 4226 §4's recommendation and the SHA1 block it feeds.
    pub const GENERATED_BYTES: usize = 20;
    /// Imported secrets need at least 128 bits (RFC 4226 §4's floor).
    pub const MIN_BYTES: usize = 16;
    /// Longer than an HMAC-SHA512 block gains nothing; the bound keeps input sizes sane.
    pub const MAX_BYTES: usize = 128;

    /// A fresh 160-bit secret from the system CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; Self::GENERATED_BYTES]);
        crate::rand::fill(&mut bytes);
        Self(SecretBytes::new(std::mem::take(&mut *bytes)))
    }

    /// Imports secret bytes (from the store, or another system) of 128 to 1024 bits.
    pub fn from_bytes(bytes: SecretBytes) -> Result<Self, TotpSecretError> {
        let bits = bytes.len() * 8;
        if bytes.len() < Self::MIN_BYTES {
            return Err(TotpSecretError::TooShort { bits });
        }
        if bytes.len() > Self::MAX_BYTES {
            return Err(TotpSecretError::TooLong { bits });
        }
        Ok(Self(bytes))
    }

    /// Imports a base32 secret as people and apps write it: either case, spaces between groups
    /// and trailing `=` padding allowed.
    pub fn from_base32(text: &str) -> Result<Self, TotpSecretError> {
        let compact: Zeroizing<String> =
            Zeroizing::new(text.chars().filter(|c| *c != ' ').collect());
        let mut bytes = base32::decode(&compact)?;
        Self::from_bytes(SecretBytes::new(std::mem::take(&mut *bytes)))
    }

    /// Unpadded upper-case base32, as key URIs and authenticator apps expect.
    pub fn to_base32(&self) -> SecretString {
        let mut text = base32::encode(self.0.expose_secret());
        SecretString::new(std::mem::take(&mut *text))
    }

    pub fn expose_secret(&self) -> &[u8] {
        self.0.expose_secret()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A generated one-time code, e.g. `"287082"`. A valid code is a credential for a few seconds,
/// so it is a secret type like the others.
pub struct OtpCode(SecretString);

impl OtpCode {
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The outcome of checking a submitted code. Only [`TotpVerdict::Accepted`] lets anyone in,
/// and its step must then be stored as the user's `last_accepted_step`.
///
/// `Replay` and `Invalid` are kept apart for the audit trail and lockout accounting; a prompt
/// must show the same message for both, so a person at the port learns nothing from it.
#[must_use = "a TOTP verdict decides whether someone gets in"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotpVerdict {
    /// The code matches `step`, which is later than the last accepted step.
    Accepted { step: u64 },
    /// The code matches `step`, but that step is at or before the last accepted one: the code
    /// (or an older one) was already used.
    Replay { step: u64 },
    /// Malformed input, or a code that matches no step in the window.
    Invalid,
}

impl TotpVerdict {
    pub fn is_accepted(self) -> bool {
        matches!(self, Self::Accepted { .. })
    }
}

impl TotpParams {
    /// The RFC 6238 time step (T) at a Unix time, with T0 = 0.
    pub fn time_step(&self, unix_secs: u64) -> u64 {
        unix_secs / u64::from(self.period_secs.secs())
    }

    /// The code for the time step that contains `unix_secs`.
    pub fn code_at(&self, secret: &TotpSecret, unix_secs: u64) -> OtpCode {
        self.code_for_step(secret, self.time_step(unix_secs))
    }

    /// The code for time step `step`.
    pub fn code_for_step(&self, secret: &TotpSecret, step: u64) -> OtpCode {
        hotp(secret, step, self.algorithm, self.digits)
    }

    // Implements: S2
    /// Checks a submitted code at `unix_secs`, refusing any step at or before
    /// `last_accepted_step` (the value stored from the user's previous `Accepted`).
    ///
    /// `submitted` must be exactly `digits` ASCII digits; anything else is `Invalid` (the caller
    /// strips the line ending). When the code matches several steps in the window, the latest
    /// fresh step is the one accepted, so the same code cannot be accepted again for a later
    /// step of the window.
    pub fn verify(
        &self,
        secret: &TotpSecret,
        submitted: impl AsRef<[u8]>,
        unix_secs: u64,
        last_accepted_step: Option<u64>,
    ) -> TotpVerdict {
        let submitted = submitted.as_ref();
        let digits = self.digits.count();
        if submitted.len() != digits || !submitted.iter().all(u8::is_ascii_digit) {
            return TotpVerdict::Invalid;
        }
        let now = self.time_step(unix_secs);
        let first = now.saturating_sub(u64::from(self.window.before));
        let last = now.saturating_add(u64::from(self.window.after));

        let mut fresh_match = Choice::from(0);
        let mut fresh_step = 0u64;
        let mut stale_match = Choice::from(0);
        let mut stale_step = 0u64;
        let key = HotpKey::new(secret, self.algorithm);
        for step in first..=last {
            let candidate = key.code_digits(step, self.digits);
            let matched = candidate[..digits].ct_eq(submitted);
            // Which steps are fresh depends only on public values (the clock and the stored step).
            let fresh = Choice::from(u8::from(last_accepted_step.is_none_or(|seen| step > seen)));
            fresh_step.conditional_assign(&step, matched & fresh);
            fresh_match |= matched & fresh;
            stale_step.conditional_assign(&step, matched & !fresh);
            stale_match |= matched & !fresh;
        }
        if bool::from(fresh_match) {
            TotpVerdict::Accepted { step: fresh_step }
        } else if bool::from(stale_match) {
            TotpVerdict::Replay { step: stale_step }
        } else {
            TotpVerdict::Invalid
        }
    }
}

/// The HOTP code for `counter` (RFC 4226 §5.3): HMAC, dynamic truncation, modulo 10^digits.
pub fn hotp(secret: &TotpSecret, counter: u64, algorithm: Algorithm, digits: Digits) -> OtpCode {
    let code = HotpKey::new(secret, algorithm).code_digits(counter, digits);
    let text = code[..digits.count()]
        .iter()
        .map(|digit| char::from(*digit))
        .collect();
    OtpCode(SecretString::new(text))
}

/// The secret loaded into OpenSSL once, for all the steps of a window.
struct HotpKey {
    pkey: PKey<Private>,
    algorithm: Algorithm,
}

impl HotpKey {
    fn new(secret: &TotpSecret, algorithm: Algorithm) -> Self {
        let pkey = PKey::hmac(secret.expose_secret())
            .unwrap_or_else(|err| openssl_failed(algorithm, &err));
        Self { pkey, algorithm }
    }

    /// The code as ASCII digits in the first `digits.count()` bytes, wiped on drop.
    fn code_digits(&self, counter: u64, digits: Digits) -> Zeroizing<[u8; 8]> {
        let mac = self.hmac(&counter.to_be_bytes());
        // RFC 4226 §5.4: the low nibble of the last byte picks four bytes; the top bit is
        // dropped. Every MAC here is at least 20 bytes and the offset at most 15, so the range
        // is in bounds.
        let offset = usize::from(mac[mac.len() - 1] & 0x0f);
        let mut window = [0u8; 4];
        window.copy_from_slice(&mac[offset..offset + 4]);
        let mut value =
            Zeroizing::new((u32::from_be_bytes(window) & 0x7fff_ffff) % digits.modulus());
        zeroize::Zeroize::zeroize(&mut window);

        let mut out = Zeroizing::new([0u8; 8]);
        for position in (0..digits.count()).rev() {
            // `*value % 10` is below 10, so the cast cannot truncate.
            out[position] = b'0' + (*value % 10) as u8;
            *value /= 10;
        }
        out
    }

    fn hmac(&self, message: &[u8]) -> Zeroizing<Vec<u8>> {
        let run = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
            Signer::new(self.algorithm.digest(), &self.pkey)?.sign_oneshot_to_vec(message)
        };
        Zeroizing::new(run().unwrap_or_else(|err| openssl_failed(self.algorithm, &err)))
    }
}

/// HMAC only fails in OpenSSL on allocation failure or a broken provider setup, never because
/// of the input; the message names the algorithm and nothing else.
fn openssl_failed(algorithm: Algorithm, err: &openssl::error::ErrorStack) -> ! {
    panic!("OpenSSL HMAC-{algorithm} failed: {err}")
}

/// Echoes at most a few characters of untrusted, non-secret input in an error message.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 32;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX_CHARS).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(SecretBytes::new(b"12345678901234567890".to_vec())).unwrap()
    }

    fn params() -> TotpParams {
        TotpParams::default()
    }

    /// Verifies: S3
    #[test]
    fn defaults_are_sha1_six_digits_thirty_seconds_one_step_each_side() {
        let params = TotpParams::default();
        assert_eq!(params.algorithm, Algorithm::Sha1);
        assert_eq!(params.digits.count(), 6);
        assert_eq!(params.period_secs.secs(), 30);
        assert_eq!((params.window.before(), params.window.after()), (1, 1));
    }

    /// Verifies: S3
    #[test]
    fn params_serialize_in_a_readable_shape_and_validate_on_the_way_in() {
        let json = serde_json::to_string(&TotpParams::default()).unwrap();
        assert_eq!(
            json,
            r#"{"algorithm":"SHA1","digits":6,"period_secs":30,"window":{"before":1,"after":1}}"#
        );
        let back: TotpParams =
            serde_json::from_str(r#"{"algorithm":"SHA512","digits":8}"#).unwrap();
        assert_eq!(back.algorithm, Algorithm::Sha512);
        assert_eq!(back.digits, Digits::Eight);
        assert_eq!(back.period_secs, Period::default());

        for bad in [
            r#"{"digits":7}"#,
            r#"{"period_secs":0}"#,
            r#"{"period_secs":3601}"#,
            r#"{"algorithm":"MD5"}"#,
            r#"{"window":{"before":11,"after":1}}"#,
            r#"{"window":{"before":1}}"#,
            r#"{"digist":6}"#,
        ] {
            assert!(
                serde_json::from_str::<TotpParams>(bad).is_err(),
                "accepted {bad}"
            );
        }
    }

    #[test]
    fn algorithm_names_parse_case_insensitively() {
        assert_eq!("sha256".parse::<Algorithm>().unwrap(), Algorithm::Sha256);
        assert_eq!("SHA1".parse::<Algorithm>().unwrap(), Algorithm::Sha1);
        assert!(matches!(
            "SHA3".parse::<Algorithm>(),
            Err(TotpParamsError::UnknownAlgorithm(_))
        ));
    }

    /// Verifies: V86
    #[test]
    fn generated_secrets_are_160_bits_and_distinct() {
        let a = TotpSecret::generate();
        let b = TotpSecret::generate();
        assert_eq!(a.len(), 20);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn imported_secrets_need_128_bits() {
        assert_eq!(
            TotpSecret::from_bytes(SecretBytes::new(vec![1; 15])).err(),
            Some(TotpSecretError::TooShort { bits: 120 })
        );
        assert!(TotpSecret::from_bytes(SecretBytes::new(vec![1; 16])).is_ok());
        assert_eq!(
            TotpSecret::from_bytes(SecretBytes::new(vec![1; 129])).err(),
            Some(TotpSecretError::TooLong { bits: 1032 })
        );
        // 16 base32 characters are only 80 bits (old Google Authenticator secrets).
        assert_eq!(
            TotpSecret::from_base32("JBSWY3DPEHPK3PXP").err(),
            Some(TotpSecretError::TooShort { bits: 80 })
        );
    }

    #[test]
    fn base32_import_accepts_how_people_type_it() {
        let secret = rfc_secret();
        let text = secret.to_base32();
        assert_eq!(text.expose_secret(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        for typed in [
            "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====",
        ] {
            let back = TotpSecret::from_base32(typed).unwrap();
            assert_eq!(back.expose_secret(), secret.expose_secret());
        }
        assert!(matches!(
            TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1"),
            Err(TotpSecretError::NotBase32(
                Base32Error::InvalidCharacter { .. }
            ))
        ));
    }

    #[test]
    fn accepted_verdict_names_the_matching_step() {
        let secret = rfc_secret();
        let params = params();
        let now = 1_111_111_111;
        let step = params.time_step(now);
        let code = params.code_at(&secret, now);
        assert_eq!(
            params.verify(&secret, code.expose_secret(), now, None),
            TotpVerdict::Accepted { step }
        );
    }

    /// Verifies: S2
    #[test]
    fn same_step_twice_is_a_replay() {
        let secret = rfc_secret();
        let params = params();
        let now = 1_234_567_890;
        let code = params.code_at(&secret, now);
        let TotpVerdict::Accepted { step } =
            params.verify(&secret, code.expose_secret(), now, None)
        else {
            panic!("first use must be accepted");
        };
        assert_eq!(
            params.verify(&secret, code.expose_secret(), now + 1, Some(step)),
            TotpVerdict::Replay { step }
        );
    }

    /// Verifies: S2
    #[test]
    fn earlier_step_after_a_later_one_was_accepted_is_a_replay() {
        let secret = rfc_secret();
        let params = params();
        let now = 2_000_000_000;
        let step = params.time_step(now);
        let previous = params.code_for_step(&secret, step - 1);
        let next = params.code_for_step(&secret, step + 1);
        // The code of the next step (clock ahead) is accepted first ...
        assert_eq!(
            params.verify(&secret, next.expose_secret(), now, None),
            TotpVerdict::Accepted { step: step + 1 }
        );
        // ... after which the previous step's code, still inside the window, is refused.
        assert_eq!(
            params.verify(&secret, previous.expose_secret(), now, Some(step + 1)),
            TotpVerdict::Replay { step: step - 1 }
        );
        // The current step too, although it was never used: it is not after the last accepted.
        let current = params.code_for_step(&secret, step);
        assert_eq!(
            params.verify(&secret, current.expose_secret(), now, Some(step + 1)),
            TotpVerdict::Replay { step }
        );
    }

    #[test]
    fn a_later_step_is_accepted_after_an_earlier_one() {
        let secret = rfc_secret();
        let params = params();
        let now = 2_000_000_000;
        let step = params.time_step(now);
        let next = params.code_for_step(&secret, step + 1);
        assert_eq!(
            params.verify(&secret, next.expose_secret(), now, Some(step - 1)),
            TotpVerdict::Accepted { step: step + 1 }
        );
    }

    /// Verifies: S3
    #[test]
    fn window_edges_are_inclusive_and_nothing_beyond() {
        let secret = rfc_secret();
        let params = TotpParams {
            window: Window::new(2, 1).unwrap(),
            ..TotpParams::default()
        };
        let now = 1_700_000_000;
        let step = params.time_step(now);
        for (offset, inside) in [(-3i64, false), (-2, true), (0, true), (1, true), (2, false)] {
            let candidate = step.checked_add_signed(offset).unwrap();
            let code = params.code_for_step(&secret, candidate);
            let verdict = params.verify(&secret, code.expose_secret(), now, None);
            if inside {
                assert_eq!(verdict, TotpVerdict::Accepted { step: candidate });
            } else {
                // A code from outside the window may collide with one inside (1 in 10^6);
                // these fixed steps were checked not to.
                assert_eq!(verdict, TotpVerdict::Invalid, "offset {offset}");
            }
        }
    }

    #[test]
    fn window_edges_follow_the_clock_within_a_step() {
        let secret = rfc_secret();
        let params = TotpParams {
            window: Window::exact(),
            ..TotpParams::default()
        };
        // Step 2 covers seconds 60..=89.
        let code = params.code_for_step(&secret, 2);
        for (now, expected) in [
            (59, TotpVerdict::Invalid),
            (60, TotpVerdict::Accepted { step: 2 }),
            (89, TotpVerdict::Accepted { step: 2 }),
            (90, TotpVerdict::Invalid),
        ] {
            assert_eq!(
                params.verify(&secret, code.expose_secret(), now, None),
                expected,
                "at {now}"
            );
        }
    }

    #[test]
    fn window_at_the_epoch_and_the_end_of_time_does_not_overflow() {
        let secret = rfc_secret();
        let params = TotpParams {
            period_secs: Period::from_secs(1).unwrap(),
            window: Window::new(10, 10).unwrap(),
            ..TotpParams::default()
        };
        let code = params.code_for_step(&secret, 0);
        assert_eq!(
            params.verify(&secret, code.expose_secret(), 0, None),
            TotpVerdict::Accepted { step: 0 }
        );
        let code = params.code_for_step(&secret, u64::MAX);
        assert_eq!(
            params.verify(&secret, code.expose_secret(), u64::MAX, Some(u64::MAX - 1)),
            TotpVerdict::Accepted { step: u64::MAX }
        );
    }

    #[test]
    fn malformed_codes_are_invalid() {
        let secret = rfc_secret();
        let params = params();
        let now = 59;
        let good = params.code_at(&secret, now);
        let good = good.expose_secret();
        assert_eq!(
            params.verify(&secret, good, now, None),
            TotpVerdict::Accepted { step: 1 }
        );
        let too_long = format!("{good}0");
        let with_newline = format!("{good}\n");
        let with_space = format!(" {good}");
        let fullwidth: String = good
            .chars()
            .map(|c| char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap())
            .collect();
        let malformed: Vec<&[u8]> = vec![
            b"",
            &good.as_bytes()[..5],
            too_long.as_bytes(),
            with_newline.as_bytes(),
            with_space.as_bytes(),
            b"12345a",
            b"-12345",
            b"+12345",
            b"\xff\xfe\x00\x01\x02\x03",
            fullwidth.as_bytes(),
        ];
        for input in malformed {
            assert_eq!(
                params.verify(&secret, input, now, None),
                TotpVerdict::Invalid,
                "{input:?}"
            );
        }
    }

    /// Verifies: S3
    #[test]
    fn eight_digit_params_refuse_six_digit_codes() {
        let secret = rfc_secret();
        let eight = TotpParams {
            digits: Digits::Eight,
            ..TotpParams::default()
        };
        let six = TotpParams::default();
        let code = six.code_at(&secret, 59);
        assert_eq!(
            eight.verify(&secret, code.expose_secret(), 59, None),
            TotpVerdict::Invalid
        );
    }

    #[test]
    fn codes_keep_leading_zeros() {
        // RFC 6238 SHA1 at 1111111109 is 07081804 (8 digits); 6 digits: 081804.
        let secret = rfc_secret();
        assert_eq!(
            hotp(&secret, 37_037_036, Algorithm::Sha1, Digits::Eight).expose_secret(),
            "07081804"
        );
        assert_eq!(
            hotp(&secret, 37_037_036, Algorithm::Sha1, Digits::Six).expose_secret(),
            "081804"
        );
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
                               now in proptest::prelude::any::<u64>(),
                               last in proptest::prelude::any::<Option<u64>>()) {
            let _ = params().verify(&rfc_secret(), &input, now, last);
        }
    }
}
