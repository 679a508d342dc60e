//! Arbitrary bytes as TS 102 226 command and response scripts (and BER-TLV, C-APDUs, GET STATUS
//! data): whatever decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_ota::fuzzing::ts102226_codec(data);
});
