//! A sealed stream's header and frames (under the fuzz key, so the seeds reach the frames): never a panic, nothing unverified handed out.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_core::fuzzing::sealed_stream(data);
});
