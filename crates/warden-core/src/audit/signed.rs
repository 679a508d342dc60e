//! Checkpoints anyone can check: a public SHA-256 digest chain over the stored rows, and
//! Ed25519 signatures over checkpoints (`docs/formats/audit-chain.md`, "Signed checkpoints").
//!
//! ```text
//! d_0 = SHA-256("warden-audit-digest-v1" ‖ chain_id)
//! d_n = SHA-256(d_{n-1} ‖ canonical(row_n) ‖ mac_n)
//! signed message = "warden-audit-checkpoint-v1" ‖ chain_id ‖ u64be(seq) ‖ mac_seq ‖ d_seq
//! ```
//!
//! The digest needs no key, so an auditor (or the SIEM) who holds only the public key can check
//! that exported rows 1..seq are exactly the rows the box signed at `seq` — without the HMAC
//! key that would also let them forge rows. What it does not cover: rows after the last signed
//! checkpoint (the HMAC chain and the SIEM's copy do), and a box whose signing key was stolen.

use super::canonical;
use super::event::RecordRef;
use super::keys::ChainId;
use crate::signing::{CheckpointKey, CheckpointSigner};

const DIGEST_LABEL: &[u8] = b"warden-audit-digest-v1";
const CHECKPOINT_LABEL: &[u8] = b"warden-audit-checkpoint-v1";

/// The digest before the first row.
pub fn genesis_digest(chain_id: &ChainId) -> [u8; 32] {
    let mut sha = crate::mac::Sha256::new();
    sha.update(DIGEST_LABEL);
    sha.update(chain_id.as_bytes());
    sha.finish()
}

/// The digest after `row` (stored seq and epoch, stored MAC), given the one before it.
pub fn next_digest(previous: &[u8; 32], row: &RecordRef<'_>, scratch: &mut Vec<u8>) -> [u8; 32] {
    let encoded = canonical::encode(scratch, row.seq, row.epoch, row);
    let mut sha = crate::mac::Sha256::new();
    sha.update(previous);
    if encoded {
        sha.update(scratch);
    }
    sha.update(row.mac);
    sha.finish()
}

/// The bytes an Ed25519 checkpoint signature covers.
pub fn checkpoint_message(chain_id: &ChainId, seq: u64, mac: &[u8], digest: &[u8; 32]) -> Vec<u8> {
    [
        CHECKPOINT_LABEL,
        chain_id.as_bytes(),
        &seq.to_be_bytes(),
        mac,
        digest,
    ]
    .concat()
}

/// A checkpoint with its digest and (when a holder of the signing key stored it) signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignedCheckpoint {
    pub seq: u64,
    #[serde(with = "hex_bytes")]
    pub mac: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub digest: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub key_id: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

/// Signs a checkpoint.
pub fn sign(
    signer: &CheckpointSigner,
    chain_id: &ChainId,
    seq: u64,
    mac: &[u8],
    digest: &[u8; 32],
) -> SignedCheckpoint {
    let signature = signer.sign(&checkpoint_message(chain_id, seq, mac, digest));
    SignedCheckpoint {
        seq,
        mac: mac.to_vec(),
        digest: digest.to_vec(),
        key_id: crate::signing::key_id(&signer.public_key()).to_vec(),
        signature: signature.to_vec(),
    }
}

/// What a public verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicVerdict {
    /// Every signed checkpoint verified, and the rows up to the last of them match: rows
    /// `1..=covered` are the ones the box signed. `checkpoints` were checked.
    Verified { covered: u64, checkpoints: usize },
    /// The first problem: a row (or its absence) disagrees with a signed checkpoint at `seq`,
    /// or the signature at `seq` does not verify with any trusted key.
    Failed { seq: u64, reason: &'static str },
}

/// Checks signed checkpoints against the rows, with public keys only. Rows are fed in seq
/// order from 1 ([`PublicVerifier::push`]); checkpoints are given sorted by seq.
pub struct PublicVerifier {
    chain_id: ChainId,
    keys: Vec<CheckpointKey>,
    checkpoints: Vec<SignedCheckpoint>,
    next: usize,
    digest: [u8; 32],
    expected_seq: u64,
    scratch: Vec<u8>,
    failed: Option<(u64, &'static str)>,
}

impl PublicVerifier {
    pub fn new(
        chain_id: ChainId,
        keys: Vec<CheckpointKey>,
        mut checkpoints: Vec<SignedCheckpoint>,
    ) -> Self {
        checkpoints.sort_by_key(|c| c.seq);
        Self {
            digest: genesis_digest(&chain_id),
            chain_id,
            keys,
            checkpoints,
            next: 0,
            expected_seq: 1,
            scratch: Vec::new(),
            failed: None,
        }
    }

    fn signature_ok(&self, c: &SignedCheckpoint) -> bool {
        let Ok(digest) = <[u8; 32]>::try_from(c.digest.as_slice()) else {
            return false;
        };
        let message = checkpoint_message(&self.chain_id, c.seq, &c.mac, &digest);
        self.keys.iter().any(|k| k.verify(&message, &c.signature))
    }

    /// Feeds the next stored row.
    pub fn push(&mut self, row: &RecordRef<'_>) {
        if self.failed.is_some() || self.next >= self.checkpoints.len() {
            return;
        }
        if row.seq != self.expected_seq {
            self.failed = Some((self.expected_seq, "a row is missing or out of place"));
            return;
        }
        self.digest = next_digest(&self.digest, row, &mut self.scratch);
        self.expected_seq += 1;
        while let Some(c) = self.checkpoints.get(self.next) {
            if c.seq != row.seq {
                break;
            }
            if !self.signature_ok(c) {
                self.failed = Some((c.seq, "the signature does not verify with a trusted key"));
                return;
            }
            if c.mac != row.mac || c.digest != self.digest {
                self.failed = Some((c.seq, "the rows differ from what was signed"));
                return;
            }
            self.next += 1;
        }
    }

    pub fn finish(self) -> PublicVerdict {
        if let Some((seq, reason)) = self.failed {
            return PublicVerdict::Failed { seq, reason };
        }
        if let Some(c) = self.checkpoints.get(self.next) {
            return PublicVerdict::Failed {
                seq: c.seq,
                reason: "the chain ends before a signed checkpoint (truncated)",
            };
        }
        PublicVerdict::Verified {
            covered: self.checkpoints.last().map_or(0, |c| c.seq),
            checkpoints: self.checkpoints.len(),
        }
    }
}
