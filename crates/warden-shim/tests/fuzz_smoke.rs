//! Runs the bodies of the shim's fuzz targets (`warden_shim::fuzzing`) over their seed corpus
//! (`fuzz/seeds/TARGET`) and thousands of mutated and random inputs, so `cargo test`
//! exercises every parser without cargo-fuzz (`scripts/fuzz.sh` runs them under libFuzzer).

use std::path::PathBuf;

use warden_shim::fuzzing;

const ROUNDS: usize = 3000;
/// A fuzz target's body.
type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 4] = [
    ("recording", fuzzing::recording),
    ("sanitizer", fuzzing::sanitizer),
    ("prompt", fuzzing::prompt),
    ("shim_config", fuzzing::shim_config),
];

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

fn smoke(target: &str) {
    let (_, body) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
    let run = warden_core::fuzzing::smoke(&corpus(target), fuzzing::seeds(target), ROUNDS, body);
    println!("{target}: {run:?}");
    assert!(run.seeds >= 2, "{target} has no seed corpus");
}

#[test]
fn recording() {
    smoke("recording");
}

#[test]
fn sanitizer() {
    smoke("sanitizer");
}

#[test]
fn prompt() {
    smoke("prompt");
}

#[test]
fn shim_config() {
    smoke("shim_config");
}

/// Writes the seeds to fuzz/seeds (run once when the seeds change):
/// `cargo test -p warden-shim --test fuzz_smoke -- --ignored write_seed_corpus`.
#[test]
#[ignore]
fn write_seed_corpus() {
    for (target, _) in TARGETS {
        warden_core::fuzzing::write_corpus(&corpus(target), &fuzzing::seeds(target)).unwrap();
    }
}
