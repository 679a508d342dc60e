//! Runs the fuzz target bodies over a few thousand random inputs, so `cargo test` exercises them
//! without cargo-fuzz or a nightly toolchain. Inputs are biased toward well-formed scripts and
//! requests so the interesting paths are reached, not just the first length check.

use proptest::prelude::*;
use warden_ota::apdu::{CommandApdu, ResponseApdu};
use warden_ota::fuzzing;
use warden_ota::script::{CommandScript, LengthCoding, ResponseScript};

fn valid_script_bytes() -> impl Strategy<Value = Vec<u8>> {
    let command = (
        any::<[u8; 4]>(),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<bool>(),
    )
        .prop_map(|(h, data, indefinite)| {
            let apdu = CommandApdu::new(h[0], h[1], h[2], h[3])
                .with_data(data)
                .unwrap();
            let coding = if indefinite {
                LengthCoding::Indefinite
            } else {
                LengthCoding::Definite
            };
            CommandScript::new([apdu]).with_coding(coding).encode()
        });
    let response = (prop::collection::vec(any::<u8>(), 0..40), any::<u16>())
        .prop_map(|(d, sw)| ResponseScript::with_responses(1, [ResponseApdu::new(d, sw)]).encode());
    prop_oneof![command, response]
}

/// A valid script with a few bytes flipped, cut or appended.
fn mutated_script_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        valid_script_bytes(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut bytes, flips, cut, do_cut)| {
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn ts102226_codec_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..128)) {
        fuzzing::ts102226_codec(&data);
    }

    #[test]
    fn ts102226_codec_on_mutated_scripts(data in mutated_script_bytes()) {
        fuzzing::ts102226_codec(&data);
    }

    #[test]
    fn client_hello_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..160)) {
        fuzzing::client_hello(&data);
        // Past the message header, so the body's fields are reached.
        let mut framed = vec![1, 0, 0, data.len() as u8];
        framed.extend_from_slice(&data);
        fuzzing::client_hello(&framed);
    }

    #[test]
    fn admin_request_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzzing::admin_request(&data);
    }
}

/// The admin fuzz body must reach every kind of step, not just refusals.
#[test]
fn admin_request_reaches_every_path() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut total = fuzzing::AdminCoverage::default();
    for _ in 0..5000 {
        let len = (next() % 200) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        total.add(&fuzzing::admin_request(&data));
    }
    println!("{total:?}");
    assert!(
        total.refused > 0 && total.delivered > 0 && total.results > 0,
        "{total:?}"
    );
    assert!(
        total.redelivered > 0 && total.outcome_unknown > 0,
        "{total:?}"
    );
    assert!(total.duplicates > 0 && total.finished > 0, "{total:?}");
}

fn key_file_corpus() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/key_file")
}

/// The PSK key file parser, over its seed corpus and mutations of it.
#[test]
fn key_file_on_seeds_and_mutations() {
    let run = warden_core::fuzzing::smoke(
        &key_file_corpus(),
        fuzzing::key_file_seeds(),
        3000,
        fuzzing::key_file,
    );
    println!("key_file: {run:?}");
    assert!(run.seeds >= 3);
}

/// Writes the key file seeds to fuzz/seeds (run once when the seeds change).
#[test]
#[ignore]
fn write_key_file_corpus() {
    warden_core::fuzzing::write_corpus(&key_file_corpus(), &fuzzing::key_file_seeds()).unwrap();
}
