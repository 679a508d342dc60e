//! A YAML document's siem: section, parsed and validated: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_siem::fuzzing::siem_config(data);
});
