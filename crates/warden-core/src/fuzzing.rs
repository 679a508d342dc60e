//! Bodies of the fuzz targets in `fuzz/` (cargo-fuzz) for warden-core's parsers, kept here so
//! that `cargo test` runs them too (`tests/fuzz_smoke.rs`, over the seeds in `fuzz/seeds/`
//! and random mutations of them). Each body panics only when an invariant breaks; an error
//! returned for bad input is the expected outcome.
//!
//! Also here: [`seeds`] (well-formed inputs for every core target, under [`FUZZ_KEY`], so the
//! fuzzer gets past the first checks) and [`Mutator`], the small deterministic mutator the
//! smoke tests of every crate share.

use std::time::Duration;

use crate::auditor_key::AuditorKeyFile;
use crate::kdf::KdfParams;
use crate::keyring::{Purpose, SecurityFile};
use crate::sealed_config::{ConfigSealer, SealedConfigError, DEFAULT_CLOCK_SKEW};
use crate::secret::{Key32, Passphrase};
use crate::stream::{self, SealedReader, SealedWriter, Segment, StreamError};

/// The purpose key the sealed-stream and configuration targets use (the seeds are sealed under
/// it, so the fuzzer reaches the frames and the plaintext).
pub const FUZZ_KEY: [u8; 32] = [0x42; 32];

/// The time the configuration seeds are stamped with.
pub const FUZZ_NOW: u64 = 1_776_244_923;

/// A sealed stream's header and frames: never a panic; whatever is accepted was verified
/// (as much plaintext as the reader reports, never more than the input), and a failing
/// segment leaves no plaintext behind.
pub fn sealed_stream(data: &[u8]) {
    let key = Key32::from_bytes(FUZZ_KEY);
    let _ = stream::open_header(data, Purpose::Recordings, &key);
    let Ok(mut reader) = SealedReader::new(data, Purpose::Recordings, &key) else {
        return;
    };
    assert!(reader.header().segment_size >= stream::MIN_SEGMENT_SIZE);
    let mut out = Vec::new();
    let mut total = 0u64;
    loop {
        match reader.next_segment(&mut out) {
            Ok(kind) => {
                total += out.len() as u64;
                assert!(out.len() <= reader.header().segment_size as usize);
                if kind == Segment::Final {
                    break;
                }
            }
            Err(err) => {
                assert!(out.is_empty(), "unverified plaintext left after {err}");
                if let StreamError::Truncated {
                    plaintext_bytes, ..
                } = err
                {
                    assert_eq!(plaintext_bytes, total);
                }
                break;
            }
        }
    }
    assert_eq!(reader.plaintext_bytes(), total);
    assert!(total <= data.len() as u64);
    // The same bytes are never accepted for another purpose.
    assert!(SealedReader::new(data, Purpose::Config, &key).is_err());
}

/// `security.json` and the auditor key file (the two files with KDF parameters): never a
/// panic; what parses has parameters within bounds and survives a round trip.
pub fn security_json(data: &[u8]) {
    if let Ok(file) = SecurityFile::parse(data) {
        for entry in file.purposes.values() {
            assert_eq!(
                entry.kdf.validate(),
                Ok(()),
                "accepted out-of-bounds parameters"
            );
        }
        let again = SecurityFile::parse(file.to_json().as_bytes())
            .expect("a parsed security.json parses again");
        assert_eq!(again, file);
    }
    if let Ok(file) = AuditorKeyFile::parse(data) {
        assert_eq!(
            file.kdf.validate(),
            Ok(()),
            "accepted out-of-bounds parameters"
        );
        AuditorKeyFile::parse(file.to_json().as_bytes())
            .expect("a parsed auditor key file parses again");
    }
}

/// A sealed configuration file's bytes: never a panic; a token from the future is reported as
/// such only when it is further ahead than the skew; what opens re-seals to the same plaintext.
pub fn sealed_config(data: &[u8]) {
    let sealer = ConfigSealer::new(&Key32::from_bytes(FUZZ_KEY));
    let _ = ConfigSealer::looks_sealed(data);
    for (now, skew) in [
        (FUZZ_NOW, DEFAULT_CLOCK_SKEW),
        (0, Duration::ZERO),
        (u64::MAX, Duration::from_secs(u64::MAX)),
    ] {
        match sealer.open_at(data, now, skew) {
            Ok(plaintext) => {
                let token = sealer.seal_at(plaintext.expose_secret(), now);
                let again = sealer
                    .open_at(token.as_bytes(), now, skew)
                    .expect("a fresh token opens");
                assert_eq!(again.expose_secret(), plaintext.expose_secret());
            }
            Err(SealedConfigError::FromTheFuture {
                ahead_secs,
                skew_secs,
            }) => assert!(ahead_secs > skew_secs),
            Err(SealedConfigError::Rejected) => {}
        }
    }
}

/// Well-formed inputs for each core target (named as in `fuzz/Cargo.toml`).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let key = Key32::from_bytes(FUZZ_KEY);
    match target {
        "sealed_stream" => [0usize, 1, 1024, 1500, 4096]
            .into_iter()
            .map(|len| {
                let mut file = Vec::new();
                let mut writer =
                    SealedWriter::new(&mut file, Purpose::Recordings, &key, 1024).unwrap();
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                writer.write_plaintext(&data).unwrap();
                writer.finish().unwrap();
                file
            })
            .collect(),
        "security_json" => {
            let pass = Passphrase::new("fuzzing passphrase, long enough".into());
            let pbkdf2 = KdfParams::Pbkdf2Sha256 { iterations: 1000 };
            let (file, _) = SecurityFile::create(&pass, &pbkdf2, "2026-04-15T09:22:03Z".into())
                .expect("seed security.json");
            let mut argon = file.clone();
            for entry in argon.purposes.values_mut() {
                entry.kdf = KdfParams::default_argon2id();
            }
            let k0 = crate::audit::AuditKey::from_bytes([9; 32]);
            let auditor =
                AuditorKeyFile::seal(&k0, &crate::audit::ChainId([1; 16]), &pass, &pbkdf2)
                    .expect("seed auditor key");
            vec![
                file.to_json().into_bytes(),
                argon.to_json().into_bytes(),
                auditor.to_json().into_bytes(),
            ]
        }
        "sealed_config" => {
            let sealer = ConfigSealer::new(&key);
            vec![
                sealer
                    .seal_at(b"siem:\n  host: 127.0.0.1\n", FUZZ_NOW)
                    .into_bytes(),
                format!("{}\n", sealer.seal_at(b"", FUZZ_NOW - 10)).into_bytes(),
                sealer.seal_at(b"x: 1\n", FUZZ_NOW + 3600).into_bytes(),
                b"plain: yes\n".to_vec(),
            ]
        }
        _ => Vec::new(),
    }
}

/// A small deterministic mutator (xorshift): byte flips, cuts, insertions, duplications and
/// splices, a few at a time. Not a coverage-guided fuzzer, but enough to walk every parser's
/// error paths from a well-formed seed in the normal test suite.
#[derive(Debug, Clone)]
pub struct Mutator(u64);

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Random bytes, up to `max_len` long.
    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// `seed` with one to four mutations; `other` is spliced from.
    pub fn mutate(&mut self, seed: &[u8], other: &[u8]) -> Vec<u8> {
        let mut data = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            match self.below(7) {
                0 | 1 if !data.is_empty() => {
                    let at = self.below(data.len());
                    data[at] ^= 1 << self.below(8);
                }
                2 if !data.is_empty() => {
                    let at = self.below(data.len());
                    data[at] = [0, 0xff, 0x7f, 0x80, b'\n', 0x1b][self.below(6)];
                }
                3 => data.truncate(self.below(data.len() + 1)),
                4 => {
                    let at = self.below(data.len() + 1);
                    let extra = self.bytes(16);
                    data.splice(at..at, extra);
                }
                5 if !data.is_empty() => {
                    let from = self.below(data.len());
                    let to = from + self.below(data.len() - from) + 1;
                    let copy = data[from..to].to_vec();
                    let at = self.below(data.len() + 1);
                    data.splice(at..at, copy);
                }
                _ if !other.is_empty() => {
                    let from = self.below(other.len());
                    let to = from + self.below(other.len() - from) + 1;
                    let at = self.below(data.len() + 1);
                    data.truncate(at);
                    data.extend_from_slice(&other[from..to]);
                }
                _ => {}
            }
        }
        data
    }
}

/// What [`smoke`] ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmokeRun {
    pub seeds: usize,
    pub inputs: usize,
}

/// Runs `body` the way `tests/fuzz_smoke.rs` of each crate does: over every seed (the files in
/// `corpus_dir`, which cargo-fuzz also starts from, and `seeds`), then over `rounds` mutations
/// of them and `rounds` random inputs up to 512 bytes. A panic names the input (hex) that
/// caused it.
pub fn smoke(
    corpus_dir: &std::path::Path,
    seeds: Vec<Vec<u8>>,
    rounds: usize,
    body: impl Fn(&[u8]) + std::panic::RefUnwindSafe,
) -> SmokeRun {
    let mut all = seeds;
    if let Ok(entries) = std::fs::read_dir(corpus_dir) {
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            if let Ok(bytes) = std::fs::read(&file) {
                all.push(bytes);
            }
        }
    }
    let run = |input: &[u8]| {
        if std::panic::catch_unwind(|| body(input)).is_err() {
            panic!("fuzz body failed on input {}", hex::encode(input));
        }
    };
    for seed in &all {
        run(seed);
    }
    let mut mutator = Mutator::new(0x5EED_F00D ^ corpus_dir.as_os_str().len() as u64);
    for round in 0..rounds {
        if !all.is_empty() {
            let seed = &all[round % all.len()];
            let other = &all[mutator.next_u64() as usize % all.len()];
            run(&mutator.mutate(seed, other));
        }
        run(&mutator.bytes(512));
    }
    SmokeRun {
        seeds: all.len(),
        inputs: all.len() + rounds * 2,
    }
}

/// Writes `seeds` to `dir` as `seed-N` files (the starting corpus for cargo-fuzz).
pub fn write_corpus(dir: &std::path::Path, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_accepted_by_their_targets() {
        let key = Key32::from_bytes(FUZZ_KEY);
        for seed in seeds("sealed_stream") {
            let mut reader = SealedReader::new(&seed[..], Purpose::Recordings, &key).unwrap();
            stream::open_to(&mut reader, &mut std::io::sink(), |_| {}).unwrap();
        }
        for seed in &seeds("security_json")[..2] {
            SecurityFile::parse(seed).unwrap();
        }
        AuditorKeyFile::parse(&seeds("security_json")[2]).unwrap();
        let sealer = ConfigSealer::new(&key);
        assert!(sealer
            .open_at(&seeds("sealed_config")[0], FUZZ_NOW, DEFAULT_CLOCK_SKEW)
            .is_ok());
    }
}
