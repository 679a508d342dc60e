//! The shim's YAML configuration: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_shim::fuzzing::shim_config(data);
});
