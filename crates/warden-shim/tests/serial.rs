//! Serial ports over real PTYs: raw bytes pass unchanged both ways, non-blocking.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use warden_shim::serial::{LineSettings, Port, VirtualSerialPair};

fn read_exactly(port: &Port, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "timed out with {} of {want} bytes",
            got.len()
        );
        match port.read_available(&mut buf).unwrap() {
            Some(n) => got.extend_from_slice(&buf[..n]),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    got
}

/// Verifies: S21
#[test]
fn all_byte_values_pass_both_ways() {
    let mut pair = VirtualSerialPair::new().unwrap();
    let mut port = Port::open(&pair.path, &LineSettings::default()).unwrap();
    let all: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    pair.endpoint.write_all(&all).unwrap();
    assert_eq!(read_exactly(&port, all.len()), all);

    let mut written = 0;
    while written < all.len() {
        written += port.write_available(&all[written..]).unwrap();
    }
    let mut back = vec![0u8; all.len()];
    pair.endpoint.read_exact(&mut back).unwrap();
    assert_eq!(back, all);
}

#[test]
fn reading_with_nothing_available_does_not_block() {
    let pair = VirtualSerialPair::new().unwrap();
    let port = Port::open(&pair.path, &LineSettings::default()).unwrap();
    let mut buf = [0u8; 16];
    assert!(port.read_available(&mut buf).unwrap().is_none());
    // A PTY has no modem-status lines.
    drop(pair);
}

#[test]
fn a_missing_port_is_a_clear_error() {
    let err = Port::open(
        std::path::Path::new("/dev/does-not-exist"),
        &LineSettings::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("/dev/does-not-exist"), "{err}");
}
