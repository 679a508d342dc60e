//! Known-answer tests for HOTP (RFC 4226 Appendix D) and TOTP (RFC 6238 Appendix B), read from
//! the vector files in `tests/vectors/`, through the public API only.

use warden_core::secret::SecretBytes;
use warden_core::totp::{hotp, Algorithm, Digits, TotpParams, TotpSecret, TotpVerdict};

const RFC4226: &str = include_str!("vectors/rfc4226-appendix-d.txt");
const RFC6238: &str = include_str!("vectors/rfc6238-appendix-b.txt");

/// Non-comment lines of a vector file, split on white space.
fn records(file: &str) -> impl Iterator<Item = Vec<&str>> {
    file.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split_whitespace().collect())
}

/// RFC 6238's seed for each algorithm: the ASCII digits "1234567890" repeated to the hash size.
fn seed(algorithm: Algorithm) -> TotpSecret {
    let len = match algorithm {
        Algorithm::Sha1 => 20,
        Algorithm::Sha256 => 32,
        Algorithm::Sha512 => 64,
    };
    let bytes: Vec<u8> = b"1234567890".iter().copied().cycle().take(len).collect();
    TotpSecret::from_bytes(SecretBytes::new(bytes)).unwrap()
}

#[test]
fn seeds_are_the_ones_the_rfc_names() {
    assert_eq!(
        seed(Algorithm::Sha1).expose_secret(),
        b"12345678901234567890"
    );
    assert_eq!(
        seed(Algorithm::Sha256).expose_secret(),
        b"12345678901234567890123456789012"
    );
    assert_eq!(
        seed(Algorithm::Sha512).expose_secret(),
        b"1234567890123456789012345678901234567890123456789012345678901234"
    );
}

#[test]
fn rfc4226_appendix_d_hotp_values() {
    let secret = seed(Algorithm::Sha1);
    let mut count = 0;
    for record in records(RFC4226) {
        let [counter, _truncated, expected] = record[..] else {
            panic!("bad vector line {record:?}");
        };
        let counter: u64 = counter.parse().unwrap();
        assert_eq!(
            hotp(&secret, counter, Algorithm::Sha1, Digits::Six).expose_secret(),
            expected,
            "counter {counter}"
        );
        count += 1;
    }
    assert_eq!(count, 10, "counters 0 to 9");
}

/// Verifies: S1, S3
#[test]
fn rfc6238_appendix_b_totp_values_generate_and_verify() {
    let mut count = 0;
    for record in records(RFC6238) {
        let [time, step_hex, expected, mode] = record[..] else {
            panic!("bad vector line {record:?}");
        };
        let time: u64 = time.parse().unwrap();
        let step = u64::from_str_radix(step_hex, 16).unwrap();
        let algorithm: Algorithm = mode.parse().unwrap();
        let params = TotpParams {
            algorithm,
            digits: Digits::Eight,
            ..TotpParams::default()
        };
        let secret = seed(algorithm);
        assert_eq!(params.time_step(time), step, "{mode} at {time}");
        assert_eq!(
            params.code_at(&secret, time).expose_secret(),
            expected,
            "{mode} at {time}"
        );
        assert_eq!(
            params.verify(&secret, expected, time, None),
            TotpVerdict::Accepted { step },
            "{mode} at {time}"
        );
        assert_eq!(
            params.verify(&secret, expected, time, Some(step)),
            TotpVerdict::Replay { step },
            "{mode} at {time}"
        );
        count += 1;
    }
    assert_eq!(count, 18, "six times, three algorithms");
}

#[test]
fn sha256_and_sha512_vectors_fail_with_the_short_seed() {
    // Guards the seed choice: the 20-byte seed does not reproduce the published values.
    for (algorithm, published) in [
        (Algorithm::Sha256, "46119246"),
        (Algorithm::Sha512, "90693936"),
    ] {
        let params = TotpParams {
            algorithm,
            digits: Digits::Eight,
            ..TotpParams::default()
        };
        assert_ne!(
            params.code_at(&seed(Algorithm::Sha1), 59).expose_secret(),
            published
        );
    }
}
