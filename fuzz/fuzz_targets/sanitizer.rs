//! Bytes replayed to a terminal through the sanitizer: terminal-safe output, the same however the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_shim::fuzzing::sanitizer(data);
});
