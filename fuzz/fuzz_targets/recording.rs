//! A session recording's plaintext, read and exported in every format: never a panic, asciicast output terminal-safe.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_shim::fuzzing::recording(data);
});
