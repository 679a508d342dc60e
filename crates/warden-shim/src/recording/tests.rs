//! Tests of the record layer and the exports: round trips, damage and truncation, known-answer
//! dumps, asciicast validity, play timing.

use std::time::Duration;

use proptest::prelude::*;
use time::macros::datetime;
use uuid::Uuid;

use super::record::{MAGIC, PREAMBLE_LEN, RECORD_HEADER_LEN};
use super::*;

fn metadata() -> RecordingMetadata {
    RecordingMetadata::new(
        Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap(),
        "tech-001",
        "empump-12",
        "shim-a",
        datetime!(2026-04-15 11:22:03.123456789 +02:00),
        [0xab; 32],
    )
    .unwrap()
}

fn chunk(t_us: u64, direction: Direction, data: &[u8]) -> Chunk {
    Chunk {
        t_us,
        direction,
        data: data.to_vec(),
    }
}

fn encode(meta: &RecordingMetadata, chunks: &[Chunk], end: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = RecordWriter::new(&mut out, meta).unwrap();
    for c in chunks {
        w.write_chunk(c.t_us, c.direction, &c.data).unwrap();
    }
    match end {
        Some(t) => {
            w.finish(t).unwrap();
        }
        // Not closed: the bytes as a crash leaves them.
        None => drop(w),
    }
    out
}

/// Everything a reader yields, and how it stopped.
fn decode(bytes: &[u8]) -> (Vec<Record>, Result<(), RecordError>) {
    let mut reader = match RecordReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut records = Vec::new();
    for item in &mut reader {
        match item {
            Ok(r) => records.push(r),
            Err(e) => return (records, Err(e)),
        }
    }
    (records, Ok(()))
}

fn sample_chunks() -> Vec<Chunk> {
    vec![
        chunk(0, Direction::Event, b"auth ok tech-001"),
        chunk(512, Direction::TechToDevice, b"ls -l\r"),
        chunk(1_024, Direction::DeviceToTech, b"total 0\r\n\x1b[0m"),
        chunk(
            2_048,
            Direction::DeviceToTech,
            b"\x02AB\x80\xff\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\r\n",
        ),
        chunk(2_048, Direction::TechToDevice, b""),
        chunk(1_000_000, Direction::Event, b"idle"),
    ]
}

// ---- record layer ----

/// Verifies: S7
#[test]
fn round_trip_all_byte_values_and_empty_chunks() {
    let all: Vec<u8> = (0..=255).collect();
    let mut chunks = vec![
        chunk(0, Direction::TechToDevice, &[]),
        chunk(0, Direction::DeviceToTech, &all),
        chunk(1, Direction::Event, &[]),
    ];
    for b in 0..=255u8 {
        chunks.push(chunk(
            10 + u64::from(b),
            Direction::ALL[b as usize % 3],
            &[b],
        ));
    }
    chunks.push(chunk(u64::MAX, Direction::DeviceToTech, &[]));
    let bytes = encode(&metadata(), &chunks, Some(u64::MAX));
    let mut reader = RecordReader::new(&bytes[..]).unwrap();
    assert_eq!(reader.metadata(), &metadata());
    let records: Vec<Record> = (&mut reader).map(Result::unwrap).collect();
    let mut want: Vec<Record> = chunks.into_iter().map(Record::Chunk).collect();
    want.push(Record::End { t_us: u64::MAX });
    assert_eq!(records, want);
    assert_eq!(reader.end(), Some(u64::MAX));
    assert_eq!(reader.offset(), bytes.len() as u64);
}

/// Verifies: S6
#[test]
fn metadata_is_normalised_to_utc_microseconds() {
    let m = metadata();
    assert_eq!(m.started_at(), datetime!(2026-04-15 09:22:03.123456 UTC));
    let json = serde_json::to_string(&m.to_json()).unwrap();
    assert_eq!(
        json,
        concat!(
            r#"{"session_id":"6f9619ff-8b86-d011-b42d-00c04fc964ff","technician_id":"tech-001","#,
            r#""device_name":"empump-12","shim_id":"shim-a","started_at":"2026-04-15T09:22:03.123456Z","#,
            r#""config_hash":"abababababababababababababababababababababababababababababababab"}"#
        )
    );
}

#[test]
fn metadata_refuses_bad_labels() {
    let new = |tech: &str| {
        RecordingMetadata::new(
            Uuid::nil(),
            tech.to_string(),
            "d",
            "s",
            datetime!(2026-01-01 0:00 UTC),
            [0; 32],
        )
    };
    assert_eq!(
        new(""),
        Err(MetadataError::Empty {
            field: "technician_id"
        })
    );
    assert_eq!(
        new("a\x1b[2Jb"),
        Err(MetadataError::ControlCharacter {
            field: "technician_id",
            position: 1
        })
    );
    assert_eq!(
        new("ab\u{202e}c"),
        Err(MetadataError::ControlCharacter {
            field: "technician_id",
            position: 2
        })
    );
    assert!(new("Jürgen Ødegård").is_ok());
    assert!(new(&"x".repeat(256)).is_ok());
    assert!(matches!(
        new(&"x".repeat(257)),
        Err(MetadataError::TooLong { .. })
    ));
}

/// Verifies: S6, S7
#[test]
fn exact_bytes_of_a_small_recording() {
    let meta = metadata();
    let bytes = encode(
        &meta,
        &[chunk(0x0102, Direction::DeviceToTech, b"hi")],
        Some(0x0203),
    );
    let json = serde_json::to_vec(&meta.to_json()).unwrap();
    let mut want = b"WRDNRCRD\x01\x01".to_vec();
    want.extend_from_slice(&(json.len() as u32).to_be_bytes());
    want.extend_from_slice(&json);
    want.extend_from_slice(b"\x02\x00\x00\x00\x0b\x00\x00\x00\x00\x00\x00\x01\x02\x02hi");
    want.extend_from_slice(b"\x03\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x02\x03");
    assert_eq!(bytes, want);
}

#[test]
fn long_writes_are_split_into_64k_records() {
    let data: Vec<u8> = (0..MAX_CHUNK_DATA * 2 + 5).map(|i| i as u8).collect();
    let bytes = encode(
        &metadata(),
        &[chunk(7, Direction::DeviceToTech, &data)],
        Some(7),
    );
    let (records, end) = decode(&bytes);
    end.unwrap();
    let sizes: Vec<usize> = records
        .iter()
        .filter_map(|r| match r {
            Record::Chunk(c) => {
                assert_eq!(c.t_us, 7);
                Some(c.data.len())
            }
            Record::End { .. } => None,
        })
        .collect();
    assert_eq!(sizes, [MAX_CHUNK_DATA, MAX_CHUNK_DATA, 5]);
    let joined: Vec<u8> = records
        .iter()
        .filter_map(|r| match r {
            Record::Chunk(c) => Some(c.data.clone()),
            Record::End { .. } => None,
        })
        .flatten()
        .collect();
    assert_eq!(joined, data);
}

#[test]
fn writer_refuses_time_going_backwards() {
    let mut w = RecordWriter::new(Vec::new(), &metadata()).unwrap();
    w.write_chunk(10, Direction::DeviceToTech, b"a").unwrap();
    w.write_chunk(10, Direction::DeviceToTech, b"b").unwrap();
    assert!(matches!(
        w.write_chunk(9, Direction::DeviceToTech, b"c"),
        Err(RecordError::TimeWentBackwards {
            previous: 10,
            found: 9,
            ..
        })
    ));
    assert!(matches!(
        w.finish(3),
        Err(RecordError::TimeWentBackwards { .. })
    ));
}

#[test]
fn writer_stops_after_a_failed_write() {
    struct Full(usize);
    impl std::io::Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk full"));
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = RecordWriter::new(Full(400), &metadata()).unwrap();
    assert!(matches!(
        w.write_chunk(0, Direction::DeviceToTech, &[0; 1000]),
        Err(RecordError::Io(_))
    ));
    assert!(matches!(
        w.write_chunk(1, Direction::DeviceToTech, b"x"),
        Err(RecordError::WriterFailed)
    ));
}

/// Security regression: a recording cut at any byte is reported as cut off, never as complete,
/// never with a panic, and every record before the cut is returned intact.
#[test]
fn every_truncation_is_reported_and_keeps_the_intact_prefix() {
    let chunks = sample_chunks();
    let bytes = encode(&metadata(), &chunks, Some(2_000_000));
    let (full, end) = decode(&bytes);
    end.unwrap();
    let metadata_end =
        PREAMBLE_LEN + RECORD_HEADER_LEN + serde_json::to_vec(&metadata().to_json()).unwrap().len();
    for cut in 0..bytes.len() {
        let (records, result) = decode(&bytes[..cut]);
        let err = result.expect_err("a cut recording must not decode cleanly");
        assert!(
            err.is_cut_off(),
            "cut at {cut}: expected a cut-off error, got {err}"
        );
        assert!(full.starts_with(&records), "cut at {cut}");
        assert!(!records.iter().any(|r| matches!(r, Record::End { .. })));
        if cut < metadata_end {
            assert!(
                matches!(err, RecordError::CutOff { record: 0, .. }),
                "cut at {cut}: {err}"
            );
        }
    }
}

#[test]
fn cut_off_errors_say_where() {
    let bytes = encode(&metadata(), &sample_chunks(), Some(2_000_000));
    // Drop the end record (13 bytes): a clean record boundary without an end.
    let (records, result) = decode(&bytes[..bytes.len() - 13]);
    assert_eq!(records.len(), sample_chunks().len());
    assert!(matches!(
        result,
        Err(RecordError::MissingEnd { last_record: 6 })
    ));
    // Cut inside the last chunk's data.
    let (records, result) = decode(&bytes[..bytes.len() - 13 - 2]);
    assert_eq!(records.len(), sample_chunks().len() - 1);
    match result {
        Err(RecordError::CutOff {
            record, missing, ..
        }) => {
            assert_eq!(record, 6);
            assert_eq!(missing, 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode(b"").1,
        Err(RecordError::CutOff {
            record: 0,
            offset: 0,
            missing: 9
        })
    ));
}

#[test]
fn malformed_recordings_are_refused_with_a_reason() {
    let good = encode(
        &metadata(),
        &[chunk(5, Direction::DeviceToTech, b"ab")],
        Some(9),
    );
    let meta_len = u32::from_be_bytes(good[10..14].try_into().unwrap()) as usize;
    let first_chunk = PREAMBLE_LEN + RECORD_HEADER_LEN + meta_len;

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(
        decode(&bad_magic).1,
        Err(RecordError::NotARecording)
    ));
    assert!(matches!(
        decode(b"WRDNX").1,
        Err(RecordError::NotARecording)
    ));

    let mut version = good.clone();
    version[8] = 2;
    assert!(matches!(
        decode(&version).1,
        Err(RecordError::UnsupportedVersion(2))
    ));

    let mut kind = good.clone();
    kind[first_chunk] = 0x09;
    assert!(matches!(
        decode(&kind).1,
        Err(RecordError::Malformed {
            record: 1,
            reason: "unknown record type",
            ..
        })
    ));

    let mut direction = good.clone();
    direction[first_chunk + RECORD_HEADER_LEN + 8] = 0;
    assert!(matches!(
        decode(&direction).1,
        Err(RecordError::Malformed {
            reason: "unknown direction",
            ..
        })
    ));

    let mut huge = good.clone();
    huge[first_chunk + 1..first_chunk + 5].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decode(&huge).1,
        Err(RecordError::Malformed {
            reason: "record length out of range for its type",
            ..
        })
    ));

    let mut short_chunk = good.clone();
    short_chunk[first_chunk + 1..first_chunk + 5].copy_from_slice(&8u32.to_be_bytes());
    assert!(matches!(
        decode(&short_chunk).1,
        Err(RecordError::Malformed { .. })
    ));

    let mut backwards = good.clone();
    let end_t = good.len() - 8;
    backwards[end_t..].copy_from_slice(&4u64.to_be_bytes());
    assert!(matches!(
        decode(&backwards).1,
        Err(RecordError::TimeWentBackwards {
            record: 2,
            previous: 5,
            found: 4
        })
    ));

    let mut trailing = good.clone();
    trailing.push(0);
    let (records, result) = decode(&trailing);
    assert_eq!(records.len(), 1);
    assert!(matches!(result, Err(RecordError::TrailingData { .. })));

    // A second metadata record.
    let mut twice = good[..first_chunk].to_vec();
    twice.extend_from_slice(&good[PREAMBLE_LEN..first_chunk]);
    assert!(matches!(
        decode(&twice).1,
        Err(RecordError::Malformed {
            reason: "a second metadata record",
            ..
        })
    ));

    // A chunk where the metadata should be.
    let mut no_meta = MAGIC.to_vec();
    no_meta.push(1);
    no_meta.extend_from_slice(&good[first_chunk..]);
    assert!(matches!(
        decode(&no_meta).1,
        Err(RecordError::Malformed {
            record: 0,
            reason: "the first record is not the metadata record",
            ..
        })
    ));
}

#[test]
fn bad_metadata_json_is_refused() {
    let with_json = |json: &str| {
        let mut v = MAGIC.to_vec();
        v.push(1);
        v.push(1);
        v.extend_from_slice(&(json.len() as u32).to_be_bytes());
        v.extend_from_slice(json.as_bytes());
        decode(&v).1
    };
    let good = serde_json::to_string(&metadata().to_json()).unwrap();
    assert!(matches!(
        with_json(&good),
        Err(RecordError::MissingEnd { .. })
    ));
    let cases = [
        (
            good.replace("09:22:03.123456Z", "09:22:03.123456+01:00"),
            MetadataError::StartedAtNotUtc,
        ),
        (
            good.replace("2026-04-15T", "2026-04-15 "),
            MetadataError::StartedAt,
        ),
        (good.replace(".123456Z", ".123Z"), MetadataError::StartedAt),
        (
            good.replace("2026-04-15T", "2026-04-15X"),
            MetadataError::StartedAt,
        ),
        (good.replace("\"abab", "\"zz"), MetadataError::ConfigHash),
        (good.replace("\"abab", "\"ABab"), MetadataError::ConfigHash),
        (good.replace("\"abab", "\"ab"), MetadataError::ConfigHash),
        (
            good.replace("6f9619ff-", "6F9619FF-"),
            MetadataError::SessionId,
        ),
        (
            good.replace("6f9619ff-", "6f9619ff"),
            MetadataError::SessionId,
        ),
        (
            good.replace("tech-001", "tech\\u0007"),
            MetadataError::ControlCharacter {
                field: "technician_id",
                position: 4,
            },
        ),
    ];
    for (json, want) in cases {
        match with_json(&json) {
            Err(RecordError::BadMetadata(got)) => assert_eq!(got, want, "{json}"),
            other => panic!("{json}: {other:?}"),
        }
    }
    assert!(matches!(
        with_json("{}"),
        Err(RecordError::BadMetadata(MetadataError::Json(_)))
    ));
    assert!(matches!(
        with_json("[1,2"),
        Err(RecordError::BadMetadata(MetadataError::Json(_)))
    ));
    // Unknown fields are ignored (later versions may add some).
    let extra = good.replacen('{', r#"{"later":1,"#, 1);
    assert!(matches!(
        with_json(&extra),
        Err(RecordError::MissingEnd { .. })
    ));
}

fn arb_direction() -> impl Strategy<Value = Direction> {
    prop::sample::select(Direction::ALL.to_vec())
}

proptest! {
    #[test]
    fn random_recordings_round_trip(
        parts in prop::collection::vec((0u64..1_000_000, arb_direction(), prop::collection::vec(any::<u8>(), 0..300)), 0..30),
    ) {
        let mut t = 0;
        let chunks: Vec<Chunk> = parts
            .into_iter()
            .map(|(gap, direction, data)| {
                t += gap;
                Chunk { t_us: t, direction, data }
            })
            .collect();
        let bytes = encode(&metadata(), &chunks, Some(t));
        let (records, end) = decode(&bytes);
        prop_assert!(end.is_ok());
        let mut want: Vec<Record> = chunks.into_iter().map(Record::Chunk).collect();
        want.push(Record::End { t_us: t });
        prop_assert_eq!(records, want);
    }

    #[test]
    fn arbitrary_bytes_after_the_preamble_never_panic(tail in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = MAGIC.to_vec();
        bytes.push(1);
        bytes.extend_from_slice(&tail);
        let _ = decode(&bytes);
    }
}

// ---- sealed streams ----

/// Verifies: S5, S8, V19
#[test]
fn recording_inside_a_sealed_stream_and_recovery_of_a_cut_one() {
    use warden_core::keyring::Purpose;
    use warden_core::secret::Key32;
    use warden_core::stream::{open_to, SealedReader, SealedWriter, MIN_SEGMENT_SIZE};

    let key = Key32::random();
    let sealed =
        SealedWriter::new(Vec::new(), Purpose::Recordings, &key, MIN_SEGMENT_SIZE).unwrap();
    let mut w = RecordWriter::new(sealed, &metadata()).unwrap();
    let big: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    for i in 0..10u64 {
        w.write_chunk(
            i * 1000,
            Direction::ALL[i as usize % 3],
            &big[..(i as usize * 400)],
        )
        .unwrap();
    }
    let (file, _) = w.finish(20_000).unwrap().finish().unwrap();

    let reader = SealedReader::new(&file[..], Purpose::Recordings, &key).unwrap();
    let mut records = RecordReader::new(reader).unwrap();
    assert_eq!(records.metadata(), &metadata());
    assert_eq!((&mut records).map(Result::unwrap).count(), 11);

    // Power loss: the final segments never reached the disk.
    let cut = &file[..file.len() - 2500];
    let reader = SealedReader::new(cut, Purpose::Recordings, &key).unwrap();
    let mut records = RecordReader::new(reader).unwrap();
    let err = records.find_map(Result::err).unwrap();
    assert!(
        matches!(err, RecordError::Io(ref e) if e.kind() == std::io::ErrorKind::InvalidData),
        "{err}"
    );

    // Recovery: the verified prefix, decoded, ends with a clear cut-off error.
    let mut prefix = Vec::new();
    let mut reader = SealedReader::new(cut, Purpose::Recordings, &key).unwrap();
    assert!(open_to(&mut reader, &mut prefix, |_| {}).is_err());
    let (recovered, result) = decode(&prefix);
    assert!(!recovered.is_empty());
    assert!(result.unwrap_err().is_cut_off());
}

// ---- exports ----

fn records_of(chunks: &[Chunk], end: Option<u64>) -> Vec<Result<Record, RecordError>> {
    let bytes = encode(&metadata(), chunks, end);
    RecordReader::new(std::io::Cursor::new(bytes))
        .unwrap()
        .collect()
}

fn asciicast(
    chunks: &[Chunk],
    end: Option<u64>,
    options: &AsciicastOptions,
) -> (String, Result<ExportSummary, ExportError>) {
    let mut out = Vec::new();
    let result = write_asciicast(&metadata(), records_of(chunks, end), &mut out, options);
    (String::from_utf8(out).unwrap(), result)
}

/// Parses every line as JSON and checks the asciicast v2 shape; returns the events.
fn parse_asciicast(text: &str) -> Vec<(f64, String, String)> {
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(header["width"].is_u64() && header["height"].is_u64());
    let mut events = Vec::new();
    let mut last = 0.0;
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 3);
        let t = arr[0].as_f64().unwrap();
        assert!(t >= last, "time went backwards: {line}");
        last = t;
        events.push((
            t,
            arr[1].as_str().unwrap().to_owned(),
            arr[2].as_str().unwrap().to_owned(),
        ));
    }
    events
}

#[test]
fn asciicast_is_valid_json_with_non_decreasing_times() {
    let raw = AsciicastOptions {
        sanitize: false,
        ..AsciicastOptions::default()
    };
    let (text, result) = asciicast(&sample_chunks(), Some(2_000_000), &raw);
    let summary = result.unwrap();
    assert_eq!(summary.chunks, 6);
    assert_eq!(summary.end_t_us, Some(2_000_000));
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        concat!(
            r#"{"version":2,"width":80,"height":24,"timestamp":1776244923,"#,
            r#""title":"tech-001 on empump-12 via shim-a (session 6f9619ff-8b86-d011-b42d-00c04fc964ff)","#,
            r#""env":{"TERM":"vt100"}}"#
        )
    );
    let events = parse_asciicast(&text);
    let codes: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(codes, ["m", "i", "o", "o", "m"]);
    assert_eq!(
        events[2],
        (0.001024, "o".into(), "total 0\r\n\x1b[0m".into())
    );
    assert_eq!(
        events[3].2,
        "\u{2}AB\u{FFFD}\u{FFFD}\0\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}\t\n\r\n"
    );
    assert!(text.contains(r#"[0.002048, "o", "\u0002AB"#));
}

#[test]
fn asciicast_keeps_characters_split_across_chunks() {
    let euro = "€".as_bytes(); // e2 82 ac
    let chunks = [
        chunk(10, Direction::DeviceToTech, &[b'a', euro[0]]),
        chunk(20, Direction::TechToDevice, b"x"),
        chunk(30, Direction::DeviceToTech, &euro[1..2]),
        chunk(40, Direction::DeviceToTech, &[euro[2], b'b', euro[0]]),
    ];
    let (text, result) = asciicast(&chunks, Some(50), &AsciicastOptions::default());
    result.unwrap();
    let events = parse_asciicast(&text);
    let out: Vec<(f64, &str)> = events
        .iter()
        .filter(|e| e.1 == "o")
        .map(|e| (e.0, e.2.as_str()))
        .collect();
    // The dangling e2 at the very end never completes: one U+FFFD at the end time.
    assert_eq!(
        out,
        [(0.00001, "a"), (0.00004, "€b"), (0.00005, "\u{FFFD}")]
    );
}

#[test]
fn asciicast_hex_mode_and_filters() {
    let options = AsciicastOptions {
        include_input: false,
        include_events: false,
        invalid_utf8: InvalidUtf8::Hex,
        title: Some("t \"quoted\"".into()),
        width: 132,
        height: 50,
        term: "xterm".into(),
        sanitize: false,
    };
    let (text, result) = asciicast(&sample_chunks(), Some(2_000_000), &options);
    result.unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["title"], "t \"quoted\"");
    assert_eq!(header["width"], 132);
    let events = parse_asciicast(&text);
    assert!(events.iter().all(|e| e.1 == "o"));
    assert!(events[1].2.starts_with("\u{2}AB\\x80\\xff\0"));
}

// Security regression (issue 11): `session export --format asciicast` kept OSC 52 (clipboard
// write), CSI 21 t (window title report), title sets and ESC [ 6 n (cursor position report)
// raw, and `asciinema play` then wrote them to the viewer's terminal. The export now removes
// what `session play` removes, in every event kind, unless asked for the raw bytes.
#[test]
fn asciicast_is_sanitized_like_play_unless_raw() {
    let hostile: [&str; 6] = [
        "\x1b]52;c;cm0gLXJmIC8K\x07",
        "\x1b[21t",
        "\x1b]0;owned\x07",
        "\x1b]2;owned too\x1b\\",
        "\x1b[6n",
        "\x1bP+q544e\x1b\\",
    ];
    let mut chunks = vec![chunk(
        0,
        Direction::Event,
        b"auth ok \x1b]0;marker\x07tech-001",
    )];
    let mut t = 10;
    for h in hostile {
        chunks.push(chunk(
            t,
            Direction::DeviceToTech,
            format!("ok {h}").as_bytes(),
        ));
        t += 10;
    }
    // A sequence split across two chunks is recognised whole.
    chunks.push(chunk(t, Direction::DeviceToTech, b"\x1b]5"));
    chunks.push(chunk(t + 1, Direction::DeviceToTech, b"2;c;ZXZpbA==\x07"));
    chunks.push(chunk(
        t + 2,
        Direction::DeviceToTech,
        b"\x1b[1mPUMP>\x1b[0m \x1b[?25l",
    ));
    chunks.push(chunk(
        t + 3,
        Direction::TechToDevice,
        b"\x1b]52;c;aW4=\x07status\r",
    ));

    let text_of = |options: &AsciicastOptions, code: &str| {
        let (text, result) = asciicast(&chunks, Some(t + 10), options);
        result.unwrap();
        parse_asciicast(&text)
            .into_iter()
            .filter(|e| e.1 == code)
            .map(|e| e.2)
            .collect::<String>()
    };
    let sanitized = AsciicastOptions::default();
    let output = text_of(&sanitized, "o");
    for h in hostile {
        assert!(!output.contains(h), "{h:?} kept in {output:?}");
    }
    assert!(
        !output.contains("\x1b]") && !output.contains("\x1bP"),
        "{output:?}"
    );
    assert!(
        !output.contains("\x1b[6n") && !output.contains("\x1b[21t"),
        "{output:?}"
    );
    // What a console needs stays, and the terminal is put back at the end.
    assert!(
        output.contains("\x1b[1mPUMP>\x1b[0m \x1b[?25l"),
        "{output:?}"
    );
    assert!(output.ends_with("\x1b[?25h\x1b[0m"), "{output:?}");
    assert_eq!(output.matches("ok ").count(), hostile.len());
    let input = text_of(&sanitized, "i");
    assert_eq!(input, "status\r");
    let markers = text_of(&sanitized, "m");
    assert!(
        !markers.contains('\x1b') && markers.contains("tech-001"),
        "{markers:?}"
    );

    // --raw keeps the bytes (for recordings the viewer trusts).
    let raw = AsciicastOptions {
        sanitize: false,
        ..AsciicastOptions::default()
    };
    let output = text_of(&raw, "o");
    for h in hostile {
        assert!(output.contains(h), "{h:?} missing from {output:?}");
    }
}

#[test]
fn asciicast_of_a_cut_recording_ends_with_a_marker_and_an_error() {
    let bytes = encode(&metadata(), &sample_chunks(), Some(2_000_000));
    let cut = &bytes[..bytes.len() - 20];
    let reader = RecordReader::new(cut).unwrap();
    let mut out = Vec::new();
    let err =
        write_asciicast(&metadata(), reader, &mut out, &AsciicastOptions::default()).unwrap_err();
    assert!(matches!(
        err,
        ExportError::Record {
            chunks: 5,
            source: RecordError::CutOff { .. }
        }
    ));
    let events = parse_asciicast(std::str::from_utf8(&out).unwrap());
    let last = events.last().unwrap();
    assert_eq!(last.1, "m");
    assert!(
        last.2
            .starts_with("warden: the recording stops here: the recording is cut off"),
        "{}",
        last.2
    );
}

#[test]
fn jsonl_is_lossless() {
    use base64::Engine as _;
    let chunks = sample_chunks();
    let mut out = Vec::new();
    write_jsonl(&metadata(), records_of(&chunks, Some(2_000_000)), &mut out).unwrap();
    let lines: Vec<serde_json::Value> = std::str::from_utf8(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), chunks.len() + 2);
    assert_eq!(lines[0]["type"], "metadata");
    assert_eq!(
        lines[0]["session_id"],
        "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    );
    assert_eq!(lines[0]["started_at"], "2026-04-15T09:22:03.123456Z");
    for (line, c) in lines[1..].iter().zip(&chunks) {
        assert_eq!(line["type"], "chunk");
        assert_eq!(line["t_us"], c.t_us);
        assert_eq!(line["direction"], c.direction.as_str());
        assert_eq!(line["len"], c.data.len());
        let data = base64::engine::general_purpose::STANDARD
            .decode(line["base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, c.data);
        match std::str::from_utf8(&c.data) {
            Ok(s) => assert_eq!(line["text"], s),
            Err(_) => assert!(line.get("text").is_none()),
        }
    }
    assert_eq!(lines.last().unwrap()["type"], "end");
    assert_eq!(lines.last().unwrap()["record"], 7);
    assert_eq!(
        std::str::from_utf8(&out).unwrap().lines().nth(2).unwrap(),
        r#"{"type":"chunk","record":2,"t_us":512,"direction":"tech_to_device","len":6,"base64":"bHMgLWwN","text":"ls -l\r"}"#
    );
}

#[test]
fn jsonl_of_an_unclosed_recording_ends_with_an_error_line() {
    let mut out = Vec::new();
    let err = write_jsonl(&metadata(), records_of(&sample_chunks(), None), &mut out).unwrap_err();
    assert!(matches!(
        err,
        ExportError::Record {
            chunks: 6,
            source: RecordError::MissingEnd { .. }
        }
    ));
    let last: serde_json::Value =
        serde_json::from_str(std::str::from_utf8(&out).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "error");
    assert!(last["message"]
        .as_str()
        .unwrap()
        .contains("without an end record"));
}

#[test]
fn dump_golden() {
    let mut out = Vec::new();
    write_dump(
        &metadata(),
        records_of(&sample_chunks(), Some(2_000_000)),
        &mut out,
    )
    .unwrap();
    let want = include_str!("../../tests/vectors/sample.dump");
    assert_eq!(String::from_utf8(out).unwrap(), want);
}

#[test]
fn dump_of_a_cut_recording_says_so() {
    let mut out = Vec::new();
    let err = write_dump(&metadata(), records_of(&sample_chunks(), None), &mut out).unwrap_err();
    assert!(matches!(err, ExportError::Record { .. }));
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("without an end record (it was not closed, e.g. recovered after power loss); everything before is intact\n"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("# error: "));
}

// ---- play ----

fn steps(chunks: &[Chunk], options: PlayOptions) -> Vec<(Duration, Direction, Vec<u8>)> {
    play(records_of(chunks, Some(100_000_000)), options)
        .map(|s| {
            let s = s.unwrap();
            (s.delay, s.direction, s.data)
        })
        .collect()
}

#[test]
fn play_timing_with_speed_and_idle_limit() {
    let chunks = [
        chunk(500_000, Direction::DeviceToTech, b"a"),
        chunk(600_000, Direction::TechToDevice, b"k"),
        chunk(700_000, Direction::Event, b"ev"),
        chunk(1_500_000, Direction::DeviceToTech, b"b"),
        chunk(61_500_000, Direction::DeviceToTech, b"c"),
        chunk(61_500_000, Direction::DeviceToTech, b""),
        chunk(61_500_001, Direction::DeviceToTech, b"d"),
    ];
    let ms = Duration::from_millis;
    let real = steps(&chunks, PlayOptions::new(1.0).unwrap());
    let delays: Vec<Duration> = real.iter().map(|s| s.0).collect();
    assert_eq!(
        delays,
        [ms(500), ms(1000), ms(60_000), Duration::from_micros(1)]
    );
    let data: Vec<&[u8]> = real.iter().map(|s| &s.2[..]).collect();
    assert_eq!(data, [b"a", b"b", b"c", b"d"]);

    let fast = steps(&chunks, PlayOptions::new(2.0).unwrap().idle_limit(ms(2000)));
    let delays: Vec<Duration> = fast.iter().map(|s| s.0).collect();
    assert_eq!(
        delays,
        [ms(250), ms(500), ms(1000), Duration::from_nanos(500)]
    );

    let all = steps(
        &chunks,
        PlayOptions::new(0.5)
            .unwrap()
            .include_input(true)
            .include_events(true),
    );
    let got: Vec<(Duration, Direction)> = all.iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(
        got,
        [
            (ms(1000), Direction::DeviceToTech),
            (ms(200), Direction::TechToDevice),
            (ms(200), Direction::Event),
            (ms(1600), Direction::DeviceToTech),
            (ms(120_000), Direction::DeviceToTech),
            (Duration::from_micros(2), Direction::DeviceToTech),
        ]
    );
}

#[test]
fn play_refuses_bad_speeds_and_reports_errors() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(PlayOptions::new(bad).is_err(), "{bad}");
    }
    let mut it = play(
        records_of(&sample_chunks(), None),
        PlayOptions::new(1.0).unwrap(),
    );
    let results: Vec<_> = (&mut it).collect();
    assert!(results.last().unwrap().is_err());
    assert!(it.next().is_none());
}
