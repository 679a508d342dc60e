//! Configuration files sealed with Fernet under the `config` purpose key.
//!
//! Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp) is what seed 002 asks for, and its
//! tokens interoperate with Python `cryptography.fernet`. The 32-byte `config` purpose key is
//! used directly as the Fernet key (first half signing key, second half encryption key, as the
//! Fernet specification splits it). A file expected to be sealed is refused when it is not;
//! reading a plain configuration is the caller's explicit choice ([`Plain::Allow`]).
//!
//! A Fernet token carries the time it was sealed. A token stamped further in the future than
//! the tolerated clock skew ([`DEFAULT_CLOCK_SKEW`], 60 s as in the Fernet specification, or
//! what [`ConfigSealer::with_clock_skew`] sets) is refused — but only after it was
//! authenticated, and with an error that says so ([`SealedConfigError::FromTheFuture`]): the
//! usual cause is a clock that was set back, not a wrong key.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE as B64URL};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use zeroize::Zeroizing;

use crate::secret::{Key32, SecretBytes};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealedConfigError {
    #[error("the sealed configuration could not be opened: wrong key, or the token was modified or is not a Fernet token")]
    Rejected,
    /// An authentic token whose timestamp is further ahead of this clock than tolerated.
    #[error("the sealed configuration is authentic, but its timestamp is {ahead_secs} s ahead of this machine's clock (at most {skew_secs} s are tolerated): this clock was set back, or the token was sealed on a machine whose clock runs ahead")]
    FromTheFuture { ahead_secs: u64, skew_secs: u64 },
}

/// How far ahead of this clock a token's timestamp may be: 60 s, the Fernet specification's
/// (and Python `cryptography`'s) value.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Base64url, with or without padding (the timestamp is read before the token is opened).
const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Seconds since the Unix epoch by this machine's clock (0 for a clock set before 1970).
fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The timestamp of a Fernet token (version byte 0x80, then 64-bit big-endian seconds), read
/// without authenticating anything.
fn token_timestamp(token: &str) -> Option<u64> {
    // The first 12 base64 characters hold the first 9 bytes.
    let head = B64URL_LENIENT.decode(token.get(..12)?).ok()?;
    match head.as_slice() {
        [0x80, ts @ ..] => Some(u64::from_be_bytes(ts.try_into().ok()?)),
        _ => None,
    }
}

/// Configuration files are small; anything larger is a mistake (or an attack).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Whether a configuration file that is not sealed may be read as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plain {
    /// Refuse it: the file must be a Fernet token under the `config` key.
    Refuse,
    /// Accept it (the caller logs that it did).
    Allow,
}

/// How a configuration file was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Sealed,
    Plain,
}

/// Why a configuration file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error(transparent)]
    File(#[from] crate::fsx::FsError),
    #[error("{0} is not sealed (not a Fernet token); seal it with `warden config seal`, or allow a plain configuration explicitly")]
    NotSealed(std::path::PathBuf),
    #[error("{path}")]
    Rejected {
        path: std::path::PathBuf,
        #[source]
        source: SealedConfigError,
    },
}

/// A configuration file's bytes (at most [`MAX_CONFIG_BYTES`]) and their SHA-256.
pub fn read_file(path: &std::path::Path) -> Result<(Vec<u8>, [u8; 32]), crate::fsx::FsError> {
    let (file, _) = crate::fsx::open_regular(path, 0)?;
    let bytes = crate::fsx::read_limited(file, path, MAX_CONFIG_BYTES)?;
    let digest = crate::mac::sha256(&bytes);
    Ok((bytes, digest))
}

/// Reads a configuration file that is a Fernet token under `sealer`'s key, or (only with
/// [`Plain::Allow`]) plain text. Returns the plaintext, how it was stored and the file's SHA-256.
pub fn read_config(
    path: &std::path::Path,
    sealer: &ConfigSealer,
    plain: Plain,
) -> Result<(SecretBytes, Form, [u8; 32]), ConfigFileError> {
    let (bytes, digest) = read_file(path)?;
    if ConfigSealer::looks_sealed(&bytes) {
        let text = sealer
            .open(&bytes)
            .map_err(|source| ConfigFileError::Rejected {
                path: path.to_path_buf(),
                source,
            })?;
        return Ok((text, Form::Sealed, digest));
    }
    match plain {
        Plain::Allow => Ok((SecretBytes::new(bytes), Form::Plain, digest)),
        Plain::Refuse => Err(ConfigFileError::NotSealed(path.to_path_buf())),
    }
}

// Implements: V23, V24, V25, V64
/// Seals and opens configuration under one key, tolerating a given clock skew.
pub struct ConfigSealer {
    fernet: fernet::Fernet,
    /// Other versions of the config key that still open tokens (during a key rotation).
    previous: Vec<fernet::Fernet>,
    clock_skew: Duration,
}

/// Fernet tokens start with version byte 0x80, which base64url-encodes to `gA`.
const TOKEN_PREFIX: &[u8] = b"gAAAAA";

impl ConfigSealer {
    pub fn new(config_key: &Key32) -> Self {
        let encoded = Zeroizing::new(B64URL.encode(config_key.expose_secret()));
        let fernet =
            fernet::Fernet::new(&encoded).expect("a 32-byte key is always a valid Fernet key");
        Self {
            fernet,
            previous: Vec::new(),
            clock_skew: DEFAULT_CLOCK_SKEW,
        }
    }

    /// Also opens tokens sealed under `other` (another version of the config key, while a
    /// rotation is under way); sealing always uses the first key.
    pub fn also_opening(mut self, other: &Key32) -> Self {
        let encoded = Zeroizing::new(B64URL.encode(other.expose_secret()));
        self.previous.push(
            fernet::Fernet::new(&encoded).expect("a 32-byte key is always a valid Fernet key"),
        );
        self
    }

    /// Tolerates tokens stamped up to `skew` ahead of this clock (default
    /// [`DEFAULT_CLOCK_SKEW`]).
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The clock skew this sealer tolerates.
    pub fn clock_skew(&self) -> Duration {
        self.clock_skew
    }

    /// The key in the form Python's `Fernet(key)` takes (base64url). Secret.
    pub fn fernet_key_text(config_key: &Key32) -> Zeroizing<String> {
        Zeroizing::new(B64URL.encode(config_key.expose_secret()))
    }

    /// Seals `plaintext` into a Fernet token (ASCII, base64url), stamped with the current time.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        self.seal_at(plaintext, now_unix())
    }

    /// Seals `plaintext` stamped with `now` (seconds since the Unix epoch).
    pub fn seal_at(&self, plaintext: &[u8], now: u64) -> String {
        self.fernet.encrypt_at_time(plaintext, now)
    }

    /// Opens a token (surrounding whitespace allowed, as in a file with a trailing newline),
    /// tolerating this sealer's clock skew.
    pub fn open(&self, token: &[u8]) -> Result<SecretBytes, SealedConfigError> {
        self.open_at(token, now_unix(), self.clock_skew)
    }

    /// [`ConfigSealer::open`] tolerating `skew` instead of this sealer's setting.
    pub fn open_with_skew(
        &self,
        token: &[u8],
        skew: Duration,
    ) -> Result<SecretBytes, SealedConfigError> {
        self.open_at(token, now_unix(), skew)
    }

    /// Opens a token as of `now` (seconds since the Unix epoch). The token is authenticated
    /// first, whatever its time; only an authentic token stamped more than `skew` after `now`
    /// is refused as [`SealedConfigError::FromTheFuture`].
    pub fn open_at(
        &self,
        token: &[u8],
        now: u64,
        skew: Duration,
    ) -> Result<SecretBytes, SealedConfigError> {
        let text = std::str::from_utf8(token)
            .map_err(|_| SealedConfigError::Rejected)?
            .trim();
        let stamped = token_timestamp(text).ok_or(SealedConfigError::Rejected)?;
        // Authenticate as of the token's own time, so its time alone cannot fail it (the crate
        // adds its 60 s to that time: keep the sum in range).
        let at = stamped.min(u64::MAX - 60);
        let plaintext = std::iter::once(&self.fernet)
            .chain(&self.previous)
            .find_map(|fernet| fernet.decrypt_at_time(text, None, at).ok())
            .map(SecretBytes::new)
            .ok_or(SealedConfigError::Rejected)?;
        let skew_secs = skew.as_secs();
        if stamped > now.saturating_add(skew_secs) {
            return Err(SealedConfigError::FromTheFuture {
                ahead_secs: stamped - now,
                skew_secs,
            });
        }
        Ok(plaintext)
    }

    /// True when `bytes` look like a Fernet token rather than plain text (a cheap check used to
    /// decide whether a config file needs the key; opening still authenticates it).
    pub fn looks_sealed(bytes: &[u8]) -> bool {
        let trimmed = bytes.trim_ascii();
        trimmed.starts_with(TOKEN_PREFIX)
            && trimmed
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_' || *b == b'=')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: V23, V64, V70, V77
    #[test]
    fn round_trip_and_damage() {
        let key = Key32::from_bytes([3u8; 32]);
        let sealer = ConfigSealer::new(&key);
        let token = sealer.seal(b"siem:\n  host: 127.0.0.1\n");
        assert!(ConfigSealer::looks_sealed(token.as_bytes()));
        assert!(!ConfigSealer::looks_sealed(b"siem:\n  host: x\n"));
        let with_newline = format!("{token}\n");
        assert_eq!(
            sealer
                .open(with_newline.as_bytes())
                .unwrap()
                .expose_secret(),
            b"siem:\n  host: 127.0.0.1\n"
        );

        let other = ConfigSealer::new(&Key32::from_bytes([4u8; 32]));
        assert_eq!(
            other.open(token.as_bytes()).err(),
            Some(SealedConfigError::Rejected)
        );

        let mut raw = B64URL.decode(token.as_bytes()).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 1;
        let tampered = B64URL.encode(&raw);
        assert_eq!(
            sealer.open(tampered.as_bytes()).err(),
            Some(SealedConfigError::Rejected)
        );
        assert_eq!(
            sealer.open(b"not a token").err(),
            Some(SealedConfigError::Rejected)
        );
    }

    // Security regression (issue 11): a token stamped in the future (a box whose clock was set
    // back) used to be refused as "wrong key, or the token was modified". It is authenticated
    // first and then reported for what it is, with how far ahead it is; the tolerated skew is
    // a setting.
    /// Verifies: V24
    #[test]
    fn tokens_from_the_future_are_named_as_such() {
        let sealer = ConfigSealer::new(&Key32::from_bytes([3u8; 32]));
        let now = 1_700_000_000;
        let token = sealer.seal_at(b"x: 1\n", now + 3600);
        assert_eq!(
            sealer
                .open_at(token.as_bytes(), now, DEFAULT_CLOCK_SKEW)
                .err(),
            Some(SealedConfigError::FromTheFuture {
                ahead_secs: 3600,
                skew_secs: 60
            })
        );
        let message = sealer
            .open_at(token.as_bytes(), now, DEFAULT_CLOCK_SKEW)
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("3600 s ahead") && !message.contains("wrong key"),
            "{message}"
        );
        // Within the tolerated skew, or with more skew allowed, it opens.
        assert!(sealer
            .open_at(token.as_bytes(), now + 3600 - 60, DEFAULT_CLOCK_SKEW)
            .is_ok());
        assert!(sealer
            .open_at(token.as_bytes(), now, Duration::from_secs(3600))
            .is_ok());
        let lenient = ConfigSealer::new(&Key32::from_bytes([3u8; 32]))
            .with_clock_skew(Duration::from_secs(7200));
        assert_eq!(lenient.clock_skew(), Duration::from_secs(7200));
        assert!(lenient
            .open(sealer.seal_at(b"y", now_unix() + 3600).as_bytes())
            .is_ok());
        // A future token under another key, or modified, is still just rejected.
        let other = ConfigSealer::new(&Key32::from_bytes([4u8; 32]));
        assert_eq!(
            other
                .open_at(token.as_bytes(), now, DEFAULT_CLOCK_SKEW)
                .err(),
            Some(SealedConfigError::Rejected)
        );
        let far = sealer.seal_at(b"z", u64::MAX);
        assert!(matches!(
            sealer.open_at(far.as_bytes(), now, DEFAULT_CLOCK_SKEW),
            Err(SealedConfigError::FromTheFuture { .. })
        ));
        assert!(sealer
            .open_at(far.as_bytes(), u64::MAX, Duration::ZERO)
            .is_ok());
    }
}
