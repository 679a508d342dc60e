//! Arbitrary bytes as a TLS ClientHello, read for its PSK key exchange modes and identity by the
//! handshake trace (before any authentication): never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_ota::fuzzing::client_hello(data);
});
