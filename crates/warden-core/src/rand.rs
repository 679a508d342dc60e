//! Random bytes from OpenSSL's CSPRNG, the one randomness source in warden.

// Implements: V86
/// Fills `buf` with cryptographically secure random bytes.
///
/// OpenSSL's DRBG only fails when the operating system cannot seed it at all; continuing
/// without randomness would silently produce weak keys, so that case aborts the process.
pub fn fill(buf: &mut [u8]) {
    if let Err(err) = openssl::rand::rand_bytes(buf) {
        panic!("the system random number generator failed: {err}");
    }
}

/// A fixed-size array of random bytes.
pub fn array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill(&mut out);
    out
}
