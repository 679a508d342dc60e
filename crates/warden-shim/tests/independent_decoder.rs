//! Checks that `docs/formats/session-recording.md` is enough to decode a recording: the Python
//! decoder in `tests/python/decode_recording.py`, written from that document alone, must read
//! what `RecordWriter` writes exactly as `RecordReader` does, and refuse the same damage.

mod common;

use std::path::Path;
use std::process::Command;

use time::macros::datetime;
use uuid::Uuid;
use warden_shim::recording::{
    Direction, Record, RecordError, RecordReader, RecordWriter, RecordingMetadata, MAX_CHUNK_DATA,
};

fn python_available() -> bool {
    common::tool_available("python3", "apt-get install -y python3")
}

fn metadata() -> RecordingMetadata {
    RecordingMetadata::new(
        Uuid::parse_str("0194f3a2-7c1e-7b3d-9a55-0123456789ab").unwrap(),
        "tech-007 \"Zoë\"",
        "infusion pump / bay 3",
        "shim-b",
        datetime!(2026-05-01 23:59:59.999999 UTC),
        *b"0123456789abcdef0123456789abcdef",
    )
    .unwrap()
}

fn recording() -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = RecordWriter::new(&mut out, &metadata()).unwrap();
    let all: Vec<u8> = (0..=255).collect();
    w.write_event(0, "auth ok").unwrap();
    w.write_chunk(1, Direction::TechToDevice, &all).unwrap();
    w.write_chunk(1, Direction::DeviceToTech, &[]).unwrap();
    let big: Vec<u8> = (0..MAX_CHUNK_DATA + 3).map(|i| (i % 251) as u8).collect();
    w.write_chunk(5_000_000, Direction::DeviceToTech, &big)
        .unwrap();
    w.write_event(u64::MAX - 1, "tamper: case open").unwrap();
    w.finish(u64::MAX).unwrap();
    out
}

/// Runs the Python decoder; `Ok(lines)` or `Err(kind)` from its `ERROR <kind>` line.
fn python_decode(bytes: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rec.bin");
    std::fs::write(&file, bytes).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/decode_recording.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()),
        Some(2) => Err(stderr.trim().trim_start_matches("ERROR ").to_string()),
        _ => panic!("the Python decoder crashed: {stderr}"),
    }
}

/// What `RecordReader` makes of the same bytes, in the Python decoder's output shape.
fn rust_decode(bytes: &[u8]) -> Result<Vec<serde_json::Value>, RecordError> {
    let mut reader = RecordReader::new(bytes)?;
    let m = reader.metadata().clone();
    let mut lines = vec![serde_json::json!({
        "session_id": m.session_id().hyphenated().to_string(),
        "technician_id": m.technician_id(),
        "device_name": m.device_name(),
        "shim_id": m.shim_id(),
        "started_at": "2026-05-01T23:59:59.999999Z",
        "config_hash": hex::encode(m.config_hash()),
    })];
    for record in &mut reader {
        lines.push(match record? {
            Record::Chunk(c) => serde_json::json!({
                "t_us": c.t_us,
                "direction": c.direction.as_str(),
                "hex": hex::encode(&c.data),
            }),
            Record::End { t_us } => serde_json::json!({ "end": t_us }),
        });
    }
    Ok(lines)
}

#[test]
fn python_decoder_reads_what_rust_writes() {
    if !python_available() {
        return;
    }
    let bytes = recording();
    let rust = rust_decode(&bytes).unwrap();
    assert_eq!(
        rust.len(),
        1 + 5 + 1 + 1,
        "metadata, 6 chunks (one split), end"
    );
    assert_eq!(python_decode(&bytes).unwrap(), rust);
}

#[test]
fn python_and_rust_refuse_the_same_damage() {
    if !python_available() {
        return;
    }
    let good = recording();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut version = good.clone();
    version[8] = 9;
    type Expect = fn(&RecordError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("cut_off", good[..good.len() - 1].to_vec(), |e| {
            matches!(e, RecordError::CutOff { .. })
        }),
        ("missing_end", good[..good.len() - 13].to_vec(), |e| {
            matches!(e, RecordError::MissingEnd { .. })
        }),
        ("trailing", trailing, |e| {
            matches!(e, RecordError::TrailingData { .. })
        }),
        ("version", version, |e| {
            matches!(e, RecordError::UnsupportedVersion(9))
        }),
        ("cut_off", good[..5].to_vec(), |e| {
            matches!(e, RecordError::CutOff { .. })
        }),
    ];
    for (kind, bytes, rust_says) in cases {
        assert_eq!(python_decode(&bytes), Err(kind.to_string()), "{kind}");
        let err = rust_decode(&bytes).unwrap_err();
        assert!(rust_says(&err), "{kind}: {err}");
    }
}
