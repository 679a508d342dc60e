//! Arbitrary request views fed to the Amendment B session state machine, step after step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = warden_ota::fuzzing::admin_request(data);
});
