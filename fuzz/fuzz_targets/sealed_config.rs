//! A sealed configuration file (Fernet token, or plain text): never a panic; future tokens named only beyond the skew.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_core::fuzzing::sealed_config(data);
});
