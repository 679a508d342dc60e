//! Replays exported asciicast files with the real `asciinema play` and checks what it prints.
//!
//! Needs the `asciinema` program (Debian: `apt-get install asciinema`). When it is missing the
//! tests print a SKIP line, except under `CI=true`, where they fail: CI must prove replay works.
//! `asciinema play` runs under `setsid` (when available) so it has no controlling terminal: it
//! then neither touches the developer's terminal nor waits between frames.

use std::process::{Command, Stdio};

use time::macros::datetime;
use uuid::Uuid;
use warden_shim::recording::{
    write_asciicast, AsciicastOptions, Direction, RecordReader, RecordWriter, RecordingMetadata,
};

mod common;

fn asciinema_available() -> bool {
    common::tool_available("asciinema", "apt-get install -y asciinema")
}

fn metadata() -> RecordingMetadata {
    RecordingMetadata::new(
        Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap(),
        "tech-001",
        "empump-12",
        "shim-a",
        datetime!(2026-04-15 09:22:03 UTC),
        [7; 32],
    )
    .unwrap()
}

/// A recording with text, escape sequences, a character split across chunks, bytes that are not
/// UTF-8, input and markers. Returns the recording and all device → technician bytes.
fn recording(close: bool) -> (Vec<u8>, Vec<u8>) {
    let euro = "€".as_bytes();
    let chunks: Vec<(u64, Direction, Vec<u8>)> = vec![
        (0, Direction::Event, b"auth ok tech-001".to_vec()),
        (
            100_000,
            Direction::DeviceToTech,
            b"\x1b[1mPUMP-12 service>\x1b[0m ".to_vec(),
        ),
        (400_000, Direction::TechToDevice, b"status\r".to_vec()),
        (
            410_000,
            Direction::DeviceToTech,
            b"status\r\nrate: 5 ml/h ".to_vec(),
        ),
        (420_000, Direction::DeviceToTech, euro[..1].to_vec()),
        (
            430_000,
            Direction::DeviceToTech,
            [&euro[1..], b"\r\n"].concat(),
        ),
        (
            3_000_000,
            Direction::DeviceToTech,
            b"raw: \x02\x80\xff\xc3(\x00\r\n".to_vec(),
        ),
        (3_100_000, Direction::Event, b"session close".to_vec()),
    ];
    let mut out = Vec::new();
    let mut device = Vec::new();
    let mut w = RecordWriter::new(&mut out, &metadata()).unwrap();
    for (t, direction, data) in &chunks {
        w.write_chunk(*t, *direction, data).unwrap();
        if *direction == Direction::DeviceToTech {
            device.extend_from_slice(data);
        }
    }
    if close {
        w.finish(3_200_000).unwrap();
    } else {
        drop(w);
    }
    (out, device)
}

/// Runs `asciinema play -s 100 -i 0.1 FILE`; returns its standard output.
fn play(cast: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.cast");
    std::fs::write(&file, cast).unwrap();
    let has_setsid = Command::new("setsid")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if has_setsid {
        let mut c = Command::new("setsid");
        c.arg("asciinema");
        c
    } else {
        Command::new("asciinema")
    };
    let out = cmd
        .args(["play", "-s", "100", "-i", "0.1"])
        .arg(&file)
        .env("ASCIINEMA_CONFIG_HOME", dir.path())
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "asciinema play failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn asciinema_replays_the_device_output() {
    if !asciinema_available() {
        return;
    }
    let (rec, device) = recording(true);
    // --raw: what a terminal receives is the device's byte stream decoded as UTF-8, bad bytes
    // as U+FFFD.
    let reader = RecordReader::new(&rec[..]).unwrap();
    let mut cast = Vec::new();
    write_asciicast(&metadata(), reader, &mut cast, &raw()).unwrap();
    assert_eq!(play(&cast), String::from_utf8_lossy(&device));
    // By default: what `session play` would show, the sanitizer's output.
    let reader = RecordReader::new(&rec[..]).unwrap();
    let mut cast = Vec::new();
    write_asciicast(&metadata(), reader, &mut cast, &AsciicastOptions::default()).unwrap();
    assert_eq!(play(&cast), sanitized(&device));
}

fn raw() -> AsciicastOptions {
    AsciicastOptions {
        sanitize: false,
        ..AsciicastOptions::default()
    }
}

fn sanitized(device: &[u8]) -> String {
    let mut sanitizer = warden_shim::recording::sanitize::TerminalSanitizer::new();
    let mut out = Vec::new();
    sanitizer.feed(device, &mut out);
    sanitizer.finish(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn asciinema_replays_a_cut_off_recording() {
    if !asciinema_available() {
        return;
    }
    let (rec, device) = recording(false);
    let reader = RecordReader::new(&rec[..]).unwrap();
    let mut cast = Vec::new();
    let result = write_asciicast(&metadata(), reader, &mut cast, &raw());
    assert!(result.is_err(), "an unclosed recording must be reported");
    assert_eq!(play(&cast), String::from_utf8_lossy(&device));
}
