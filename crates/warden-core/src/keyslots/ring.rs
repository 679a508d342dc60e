//! The purpose keys a process holds after unlocking a slot: per purpose the current version
//! and, while a rotation is under way, the next one.

use std::collections::{BTreeMap, BTreeSet};

use crate::keyring::Purpose;
use crate::secret::Key32;

/// A key a slot does not carry was asked for. The crypto layer's refusal: the key is not in
/// this process at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the key slot used here does not carry the `{purpose}` key ({holder} slots carry {carried})"
)]
pub struct NotCarried {
    pub purpose: Purpose,
    pub holder: &'static str,
    pub carried: &'static str,
}

/// Purpose keys by purpose and version. No `Debug`; keys are zeroized on drop.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<(Purpose, u32), Key32>,
    current: BTreeMap<Purpose, u32>,
    /// Who the keys came from, for the refusal message.
    holder: &'static str,
    carried: &'static str,
}

impl KeyRing {
    pub(crate) fn new(holder: &'static str, carried: &'static str) -> Self {
        Self {
            keys: BTreeMap::new(),
            current: BTreeMap::new(),
            holder,
            carried,
        }
    }

    /// Fresh random keys for every purpose, version 1 (a new data directory).
    pub fn generate() -> Self {
        let mut ring = Self::new("all", "every key");
        for purpose in Purpose::IN_SLOTS {
            ring.insert(purpose, 1, Key32::random(), true);
        }
        ring
    }

    /// The four derived keys alone, as the master passphrase of a format-1 directory opens them.
    pub fn from_derived_only(derived: impl IntoIterator<Item = (Purpose, Key32)>) -> Self {
        let mut ring = Self::new("all", "every key");
        for (purpose, key) in derived {
            ring.insert(purpose, 1, key, true);
        }
        ring
    }

    /// Adds the keys a format-1 directory lacks (version 1, random): the checkpoint signing
    /// key and the PHI key.
    pub fn with_new_random_keys(mut self) -> Self {
        for purpose in Purpose::RANDOM_ONLY {
            self.insert(purpose, 1, Key32::random(), true);
        }
        self
    }

    pub(crate) fn insert(&mut self, purpose: Purpose, version: u32, key: Key32, current: bool) {
        self.keys.insert((purpose, version), key);
        if current {
            self.current.insert(purpose, version);
        }
    }

    /// The current key of `purpose`, if this ring carries it.
    pub fn current(&self, purpose: Purpose) -> Option<&Key32> {
        let version = self.current.get(&purpose)?;
        self.keys.get(&(purpose, *version))
    }

    /// The current key of `purpose`, for a ring known to carry every key (a new data
    /// directory's, the master slot's). Panics otherwise: a programming error.
    pub fn get(&self, purpose: Purpose) -> &Key32 {
        self.current(purpose)
            .unwrap_or_else(|| panic!("this key ring does not carry the `{purpose}` key"))
    }

    /// The current key of `purpose`, or the refusal to name.
    pub fn require(&self, purpose: Purpose) -> Result<&Key32, NotCarried> {
        self.current(purpose).ok_or(NotCarried {
            purpose,
            holder: self.holder,
            carried: self.carried,
        })
    }

    /// The version number of the current key of `purpose`.
    pub fn current_version(&self, purpose: Purpose) -> Option<u32> {
        self.current.get(&purpose).copied()
    }

    /// One version of a purpose key.
    pub fn version(&self, purpose: Purpose, version: u32) -> Option<&Key32> {
        self.keys.get(&(purpose, version))
    }

    /// Every version of `purpose` held, the current one first: what a reader tries (by key id
    /// where the data names its key) while a rotation is under way.
    pub fn candidates(&self, purpose: Purpose) -> Vec<&Key32> {
        let current = self.current.get(&purpose).copied();
        let mut out: Vec<&Key32> = current
            .and_then(|v| self.keys.get(&(purpose, v)))
            .into_iter()
            .collect();
        for ((p, v), key) in &self.keys {
            if *p == purpose && Some(*v) != current {
                out.push(key);
            }
        }
        out
    }

    /// Every (purpose, version) held.
    pub fn versions(&self) -> impl Iterator<Item = (Purpose, u32)> + '_ {
        self.keys.keys().copied()
    }

    /// The purposes this ring carries.
    pub fn purposes(&self) -> BTreeSet<Purpose> {
        self.keys.keys().map(|(p, _)| *p).collect()
    }

    /// Only the keys of `purposes` (every version), for a holder with fewer keys than the
    /// slot that was opened (a person signed in through the master passphrase).
    pub fn restricted(
        &self,
        purposes: &[Purpose],
        holder: &'static str,
        carried: &'static str,
    ) -> Self {
        let mut out = Self::new(holder, carried);
        for ((purpose, version), key) in &self.keys {
            if purposes.contains(purpose) {
                let current = self.current.get(purpose) == Some(version);
                out.insert(*purpose, *version, key.clone(), current);
            }
        }
        out
    }

    /// Adds the next version of `purpose` (a rotation begun: the key was just drawn, or read
    /// back from the slot that carries it).
    pub fn add_next(&mut self, purpose: Purpose, version: u32, key: Key32) {
        self.insert(purpose, version, key, false);
    }

    /// Makes `version` of `purpose` the current one (a finished rotation) and forgets the others.
    pub fn promote(&mut self, purpose: Purpose, version: u32) {
        self.keys.retain(|(p, v), _| *p != purpose || *v == version);
        if self.keys.contains_key(&(purpose, version)) {
            self.current.insert(purpose, version);
        }
    }

    /// Forgets `version` of `purpose` (an abandoned rotation).
    pub fn forget(&mut self, purpose: Purpose, version: u32) {
        self.keys.remove(&(purpose, version));
    }
}
