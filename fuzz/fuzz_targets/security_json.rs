//! security.json and the auditor key file (the files with KDF parameters): never a panic, nothing out of bounds accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_core::fuzzing::security_json(data);
});
