//! Bytes typed at the shim's challenge prompt: the code never echoed, fields capped, byte-by-byte typing the same as a burst.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_shim::fuzzing::prompt(data);
});
