//! Runs the body of the `siem_config` fuzz target over its seed corpus (`fuzz/seeds/siem_config`)
//! and thousands of mutated and random inputs, so `cargo test` exercises the parser without
//! cargo-fuzz (`scripts/fuzz.sh` runs it under libFuzzer).

use std::path::PathBuf;

use warden_siem::fuzzing;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/siem_config")
}

#[test]
fn siem_config() {
    let run = warden_core::fuzzing::smoke(&corpus(), fuzzing::seeds(), 3000, fuzzing::siem_config);
    println!("siem_config: {run:?}");
    assert!(run.seeds >= 2);
}

/// Writes the seeds to fuzz/seeds (run once when the seeds change).
#[test]
#[ignore]
fn write_seed_corpus() {
    warden_core::fuzzing::write_corpus(&corpus(), &fuzzing::seeds()).unwrap();
}
