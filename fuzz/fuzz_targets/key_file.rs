//! The OTA server's PSK key file: never a panic, never a key quoted in an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_ota::fuzzing::key_file(data);
});
