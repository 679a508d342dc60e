//! Runs the bodies of warden-core's fuzz targets (`warden_core::fuzzing`) over their seed
//! corpus (`fuzz/seeds/TARGET`) and thousands of mutated and random inputs, so `cargo test`
//! exercises every parser without cargo-fuzz or a nightly toolchain (`scripts/fuzz.sh` runs
//! the same bodies under libFuzzer).

use std::path::PathBuf;

use warden_core::fuzzing;

const ROUNDS: usize = 3000;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

fn smoke(target: &str, body: fn(&[u8])) {
    let run = fuzzing::smoke(&corpus(target), fuzzing::seeds(target), ROUNDS, body);
    println!("{target}: {run:?}");
    assert!(run.seeds >= 3, "{target} has no seed corpus");
}

#[test]
fn sealed_stream() {
    smoke("sealed_stream", fuzzing::sealed_stream);
}

#[test]
fn security_json() {
    smoke("security_json", fuzzing::security_json);
}

#[test]
fn sealed_config() {
    smoke("sealed_config", fuzzing::sealed_config);
}

/// Writes the seeds to fuzz/seeds (run once when the seeds change):
/// `cargo test -p warden-core --test fuzz_smoke -- --ignored write_seed_corpus`.
#[test]
#[ignore]
fn write_seed_corpus() {
    for target in ["sealed_stream", "security_json", "sealed_config"] {
        fuzzing::write_corpus(&corpus(target), &fuzzing::seeds(target)).unwrap();
    }
}
