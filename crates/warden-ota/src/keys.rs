//! PSKs for the TLS handshake: the seed's YAML key file, and an in-memory cache that the
//! OpenSSL PSK callback reads without blocking.
//!
//! The callback runs inside OpenSSL, synchronously, on a runtime thread: it must never wait on
//! SQLite or a file. The server loads keys from the key file and the database into a
//! [`KeyCache`] and swaps in a new map when a source changes (see `server::reload_keys`).
//! Keys are [`Psk`] values: no `Debug`, zeroized on drop, never formatted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use warden_core::secret::SecretBytes;
use warden_store::ota::{check_identity, PSK_MAX_LEN, PSK_MIN_LEN};
use zeroize::Zeroizing;

/// A pre-shared key. Not `Debug`, not `Display`; read with [`Psk::expose_secret`].
pub struct Psk(SecretBytes);

impl Psk {
    pub fn new(bytes: Vec<u8>) -> Result<Self, PskError> {
        if !(PSK_MIN_LEN..=PSK_MAX_LEN).contains(&bytes.len()) {
            return Err(PskError::Length(bytes.len()));
        }
        Ok(Self(SecretBytes::new(bytes)))
    }

    /// Parses hex (spaces allowed between byte pairs); the error never echoes the input.
    pub fn from_hex(text: &str) -> Result<Self, PskError> {
        let compact = Zeroizing::new(text.split_whitespace().collect::<String>());
        let bytes = hex::decode(compact.as_bytes()).map_err(|_| PskError::NotHex)?;
        Self::new(bytes)
    }

    pub fn from_secret(secret: SecretBytes) -> Self {
        Self(secret)
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

/// Why a key was refused. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    #[error("the key is not hex")]
    NotHex,
    #[error("a PSK has {PSK_MIN_LEN} to {PSK_MAX_LEN} bytes; got {0}")]
    Length(usize),
}

/// Why a key file was refused. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the key file")]
    Read(#[from] warden_core::fsx::FsError),
    #[error("the key file is not valid YAML of the form `keys: [{{identity, key}}]`: {0}")]
    Yaml(String),
    #[error("entry {entry}: identity must be 1 to 128 printable ASCII characters")]
    Identity { entry: usize },
    #[error("entry {entry}: {problem}")]
    Key { entry: usize, problem: PskError },
    #[error("entry {entry}: identity {identity:?} appears twice")]
    Duplicate { entry: usize, identity: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyFile {
    keys: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    identity: String,
    key: HexKey,
}

/// A key's hex text, wiped when dropped.
struct HexKey(Zeroizing<String>);

impl<'de> Deserialize<'de> for HexKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(Zeroizing::new(s)))
    }
}

/// Largest key file read.
const MAX_KEY_FILE: u64 = 16 << 20;

/// Reads the seed's key file format:
///
/// ```yaml
/// keys:
///   - identity: "UICC_001"
///     key: "0123456789ABCDEF0123456789ABCDEF"   # hex
/// ```
///
/// The file must be private (0600 or stricter, owned by us, not a symlink).
pub fn read_key_file(path: &Path) -> Result<Vec<(String, Psk)>, KeyFileError> {
    let bytes = Zeroizing::new(warden_core::fsx::read_private(path, MAX_KEY_FILE)?);
    parse_key_file(&bytes)
}

// Implements: O37, O39, O40
/// Parses key file text (see [`read_key_file`]).
pub fn parse_key_file(bytes: &[u8]) -> Result<Vec<(String, Psk)>, KeyFileError> {
    let raw: RawKeyFile =
        serde_yaml_ng::from_slice(bytes).map_err(|e| KeyFileError::Yaml(yaml_message(&e)))?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(raw.keys.len());
    for (i, e) in raw.keys.into_iter().enumerate() {
        let entry = i + 1;
        check_identity(&e.identity).map_err(|_| KeyFileError::Identity { entry })?;
        if !seen.insert(e.identity.clone()) {
            return Err(KeyFileError::Duplicate {
                entry,
                identity: e.identity,
            });
        }
        let psk =
            Psk::from_hex(&e.key.0).map_err(|problem| KeyFileError::Key { entry, problem })?;
        out.push((e.identity, psk));
    }
    Ok(out)
}

/// A YAML error described without any text from the file. serde_yaml_ng quotes what it did not
/// expect — a string value (`invalid type: string "…"`) or a map key (``unknown field `…` ``) —
/// so a key written as `- key:0011…` (no space after the colon) ended up in the message, hence
/// in logs (found by the `key_file` fuzz target, twice). Only the kind of error, the field names
/// of the format itself and the position are kept.
fn yaml_message(err: &serde_yaml_ng::Error) -> String {
    const FIELDS: [&str; 3] = ["keys", "identity", "key"];
    let text = err.to_string();
    let what = if let Some(field) = FIELDS
        .iter()
        .find(|f| text.contains(&format!("missing field `{f}`")))
    {
        format!("missing field `{field}`")
    } else if let Some(rest) = text.split_once("unknown field `").map(|(_, r)| r) {
        // A misspelt field name helps the operator; it is shown only when it cannot be (part
        // of) a key: letters and `_` only, short, and not all hex digits.
        let name = rest.split('`').next().unwrap_or_default();
        let shown = name.len() <= 16
            && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
            && !name.bytes().all(|b| b.is_ascii_hexdigit());
        if shown {
            format!("unknown field `{name}` (the file has `keys`, each entry `identity` and `key`)")
        } else {
            "an unknown field (the file has `keys`, each entry `identity` and `key`)".into()
        }
    } else if text.contains("duplicate field") {
        "a field given twice".into()
    } else if text.contains("invalid type") || text.contains("invalid value") {
        "a value of the wrong type (`keys` is a list of mappings with `identity` and `key`)".into()
    } else if text.contains("invalid length") {
        "a list or mapping of the wrong length".into()
    } else {
        "YAML syntax".into()
    };
    match err.location() {
        Some(at) => format!("{what} at line {} column {}", at.line(), at.column()),
        None => what,
    }
}

/// Where a cached key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    File,
    Database,
}

type KeyMap = Arc<HashMap<String, Arc<Psk>>>;

// Implements: O36, O42
/// The keys the PSK callback sees: an immutable map swapped whole on reload.
#[derive(Clone, Default)]
pub struct KeyCache {
    inner: Arc<RwLock<KeyMap>>,
}

impl KeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces every key.
    pub fn replace(&self, keys: HashMap<String, Arc<Psk>>) {
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(keys);
    }

    /// Adds or replaces one key (tests and tools).
    pub fn insert(&self, identity: impl Into<String>, psk: Psk) {
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut map = (**guard).clone();
        map.insert(identity.into(), Arc::new(psk));
        *guard = Arc::new(map);
    }

    /// The key for `identity`, without blocking on anything but a short read lock.
    pub fn get(&self, identity: &str) -> Option<Arc<Psk>> {
        let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
        guard.get(identity).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn identities(&self) -> Vec<String> {
        let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = guard.keys().cloned().collect();
        ids.sort();
        ids
    }
}

/// Merges keys from the file and the database. An identity in both with different keys is a
/// misconfiguration: it is left out (its card is refused) and reported.
pub fn merge_sources(
    file: Vec<(String, Psk)>,
    database: Vec<(String, Psk)>,
) -> (HashMap<String, Arc<Psk>>, Vec<String>) {
    let mut map: HashMap<String, (KeySource, Arc<Psk>)> = HashMap::new();
    let mut conflicts = Vec::new();
    for (source, keys) in [(KeySource::File, file), (KeySource::Database, database)] {
        for (id, psk) in keys {
            match map.get(&id) {
                Some((_, existing))
                    if !warden_core::mac::ct_eq(existing.expose_secret(), psk.expose_secret()) =>
                {
                    conflicts.push(id);
                }
                Some(_) => {}
                None => {
                    map.insert(id, (source, Arc::new(psk)));
                }
            }
        }
    }
    for id in &conflicts {
        map.remove(id);
    }
    conflicts.sort();
    conflicts.dedup();
    (
        map.into_iter().map(|(k, (_, v))| (k, v)).collect(),
        conflicts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::report::report;

    /// Verifies: O37, O39
    #[test]
    fn seed_format_parses() {
        let text = b"# psk_keys.yaml\nkeys:\n  - identity: \"UICC_001\"\n    key: \"0123456789ABCDEF0123456789ABCDEF\"  # Hex encoded\n  - identity: \"UICC_002\"\n    key: \"FEDCBA9876543210FEDCBA9876543210\"\n";
        let keys = parse_key_file(text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].0, "UICC_001");
        assert_eq!(keys[1].1.expose_secret()[0], 0xFE);
    }

    // Security regression (found by the key_file fuzz target): serde_yaml_ng quotes string
    // values it did not expect, so a key written as `- key:0011…` (no space after the colon)
    // or as a bare list item reached the error message, and from there the logs.
    /// Verifies: V13, O40
    #[test]
    fn yaml_errors_never_quote_a_value() {
        let key = "00112233445566778899aabbccddeeff";
        for text in [
            format!("keys:\n  - key:{key}\n"),
            format!("keys:\n  - {key}\n"),
            format!("keys: {key}\n"),
            format!("keys:\n  - identity: a\n    key: [\"{key}\"]\n"),
            format!("#keys:\n  -+ key:{key}\n  - key:{key}\n"),
            format!("keys:\n  - identity: a\n    {key}: b\n"),
        ] {
            let e = report(&parse_key_file(text.as_bytes()).err().unwrap());
            assert!(!e.contains(key), "{e}");
            assert!(e.contains("not valid YAML"), "{e}");
        }
        // Long messages with multi-byte characters are cut at a character boundary.
        let long = format!("keys:\n  - {}\n", "\u{e9}".repeat(300));
        let e = report(&parse_key_file(long.as_bytes()).err().unwrap());
        assert!(!e.contains('\u{e9}'), "{e}");
    }

    /// Verifies: V13, O40
    #[test]
    fn bad_entries_are_named_without_the_key() {
        let secretish = "ZZ23456789ABCDEF0123456789ABCDEF";
        let text = format!("keys:\n  - identity: a\n    key: \"{secretish}\"\n");
        let e = parse_key_file(text.as_bytes()).err().unwrap().to_string();
        assert!(e.contains("entry 1") && e.contains("not hex"), "{e}");
        assert!(!e.contains(secretish));
        let e = parse_key_file(b"keys:\n  - identity: a\n    key: \"0011\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("entry 1") && e.contains("got 2"), "{e}");
        // A single key (`ota keys add`) has no entry number; its error is said once.
        let e = report(&Psk::from_hex(secretish).err().unwrap());
        assert_eq!(e, "the key is not hex");
        let e = report(&Psk::from_hex("0011").err().unwrap());
        assert_eq!(e, "a PSK has 16 to 64 bytes; got 2");
        let e = report(&parse_key_file(text.as_bytes()).err().unwrap());
        assert_eq!(e, "entry 1: the key is not hex");
        let e = parse_key_file(
            b"keys:\n  - identity: a\n    key: 00112233445566778899aabbccddeeff\n  - identity: a\n    key: 00112233445566778899aabbccddeeff\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("entry 2") && e.contains("twice"), "{e}");
        let e = parse_key_file(b"keys:\n  - identity: a\n    kee: 00\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("kee"), "{e}");
    }

    /// Verifies: O36
    #[test]
    fn merge_refuses_conflicts() {
        let k = |b: u8| Psk::new(vec![b; 16]).unwrap();
        let (map, conflicts) = merge_sources(
            vec![("a".into(), k(1)), ("b".into(), k(2))],
            vec![("b".into(), k(3)), ("c".into(), k(4)), ("a".into(), k(1))],
        );
        assert_eq!(conflicts, vec!["b".to_string()]);
        let cache = KeyCache::new();
        cache.replace(map);
        assert_eq!(cache.identities(), vec!["a", "c"]);
        assert!(cache.get("b").is_none());
        assert_eq!(cache.get("c").unwrap().expose_secret(), &[4; 16]);
    }
}
