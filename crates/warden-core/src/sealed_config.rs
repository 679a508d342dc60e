//! Configuration files sealed with Fernet under the `config` purpose key.
//!
//! Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp) is what seed 002 asks for, and its
//! tokens interoperate with Python `cryptography.fernet`. The 32-byte `config` purpose key is
//! used directly as the Fernet key (first half signing key, second half encryption key, as the
//! Fernet specification splits it). A file expected to be sealed is refused when it is not;
//! reading a plain configuration is the caller's explicit choice ([`Plain::Allow`]).

use base64::engine::general_purpose::URL_SAFE as B64URL;
use base64::Engine;
use zeroize::Zeroizing;

use crate::secret::{Key32, SecretBytes};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealedConfigError {
    #[error("the sealed configuration could not be opened: wrong key, or the token was modified or is not a Fernet token")]
    Rejected,
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
    #[error("{path}: {source}")]
    Rejected {
        path: std::path::PathBuf,
        #[source]
        source: SealedConfigError,
    },
}

/// A configuration file's bytes (at most [`MAX_CONFIG_BYTES`]) and their SHA-256.
pub fn read_file(path: &std::path::Path) -> Result<(Vec<u8>, [u8; 32]), crate::fsx::FsError> {
    let file = std::fs::File::open(path).map_err(|e| crate::fsx::FsError::io(path, e))?;
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

/// Seals and opens configuration under one key.
pub struct ConfigSealer {
    fernet: fernet::Fernet,
}

/// Fernet tokens start with version byte 0x80, which base64url-encodes to `gA`.
const TOKEN_PREFIX: &[u8] = b"gAAAAA";

impl ConfigSealer {
    pub fn new(config_key: &Key32) -> Self {
        let encoded = Zeroizing::new(B64URL.encode(config_key.expose_secret()));
        let fernet =
            fernet::Fernet::new(&encoded).expect("a 32-byte key is always a valid Fernet key");
        Self { fernet }
    }

    /// The key in the form Python's `Fernet(key)` takes (base64url). Secret.
    pub fn fernet_key_text(config_key: &Key32) -> Zeroizing<String> {
        Zeroizing::new(B64URL.encode(config_key.expose_secret()))
    }

    /// Seals `plaintext` into a Fernet token (ASCII, base64url), stamped with the current time.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        self.fernet.encrypt(plaintext)
    }

    /// Opens a token (surrounding whitespace allowed, as in a file with a trailing newline).
    pub fn open(&self, token: &[u8]) -> Result<SecretBytes, SealedConfigError> {
        let text = std::str::from_utf8(token).map_err(|_| SealedConfigError::Rejected)?;
        self.fernet
            .decrypt(text.trim())
            .map(SecretBytes::new)
            .map_err(|_| SealedConfigError::Rejected)
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
}
