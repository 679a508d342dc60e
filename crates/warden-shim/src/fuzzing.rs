//! Bodies of the fuzz targets in `fuzz/` (cargo-fuzz) for the shim's parsers, kept here so
//! that `cargo test` runs them too (`tests/fuzz_smoke.rs`, over the seeds in `fuzz/seeds/`
//! and mutations of them). Each body panics only when an invariant breaks.

use time::macros::datetime;
use uuid::Uuid;

use crate::config::ShimConfig;
use crate::prompt::{Prompt, PromptLimits, CODE_PROMPT};
use crate::recording::sanitize::TerminalSanitizer;
use crate::recording::{
    write_asciicast, write_dump, write_jsonl, AsciicastOptions, Direction, RecordReader,
    RecordWriter, RecordingMetadata,
};

/// A session recording's plaintext (what is inside the sealed stream): never a panic; every
/// export writes complete lines (JSON Lines valid JSON, asciicast events free of sequences that
/// act on the viewer's terminal).
pub fn recording(data: &[u8]) {
    let Ok(reader) = RecordReader::new(data) else {
        return;
    };
    let metadata = reader.metadata().clone();
    // A reader is an iterator that is used up: one per export.
    let records = || RecordReader::new(data).expect("it read once");
    let mut jsonl = Vec::new();
    let _ = write_jsonl(&metadata, reader, &mut jsonl);
    for line in jsonl.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        serde_json::from_slice::<serde_json::Value>(line).expect("a JSON Lines line is JSON");
    }
    let _ = write_dump(&metadata, records(), &mut Vec::new());
    let mut cast = Vec::new();
    let _ = write_asciicast(
        &metadata,
        records(),
        &mut cast,
        &AsciicastOptions::default(),
    );
    for line in cast
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .skip(1)
    {
        let event: serde_json::Value = serde_json::from_slice(line).expect("an event is JSON");
        let text = event[2].as_str().expect("event text");
        assert_terminal_safe(text.as_bytes());
    }
}

/// Panics when `out` holds something the sanitizer must never let through: OSC, DCS, SOS, PM
/// or APC strings, C1 controls, an ESC that does not start a kept sequence, or invalid UTF-8.
fn assert_terminal_safe(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("sanitized output is UTF-8");
    assert!(
        !text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)),
        "C1 control let through: {text:?}"
    );
    for (at, _) in text.match_indices('\x1b') {
        let next = out.get(at + 1).copied();
        assert!(
            matches!(next, Some(b'[' | b'7' | b'8' | b'D' | b'E' | b'M')),
            "ESC {next:?} let through: {text:?}"
        );
    }
}

/// The terminal sanitizer of `session play` and asciicast exports: never a panic; the output is
/// terminal-safe; splitting the input anywhere gives the same output; output stays small.
pub fn sanitizer(data: &[u8]) {
    let mut whole = TerminalSanitizer::new();
    let mut out = Vec::new();
    whole.feed(data, &mut out);
    whole.finish(&mut out);
    assert_terminal_safe(&out);
    // U+FFFD (3 bytes) per input byte at worst, plus the closing resets.
    assert!(
        out.len() <= 3 * data.len() + 64,
        "output grew: {}",
        out.len()
    );

    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut parts = TerminalSanitizer::new();
    let mut out2 = Vec::new();
    parts.feed(&data[..split], &mut out2);
    parts.feed(&data[split..], &mut out2);
    parts.finish(&mut out2);
    assert_eq!(out, out2, "split at {split} changed the output");
}

/// Bytes typed at the challenge prompt: never a panic; the code is never echoed; fields keep to
/// their caps and to printable ASCII; typing byte by byte gives the same result as all at once.
pub fn prompt(data: &[u8]) {
    let limits = PromptLimits {
        max_id_len: 1 + data.first().map_or(63, |b| *b as usize % 64),
        max_code_len: 10,
    };
    let all = run_prompt(limits, &[data]);
    let singles: Vec<&[u8]> = data.chunks(1).collect();
    let one_by_one = run_prompt(limits, &singles);
    assert_eq!(all, one_by_one, "byte-by-byte typing differs");
    let (echo, answer, _) = all;
    if let Some((id, code)) = answer {
        assert!(!id.is_empty() && id.len() <= limits.max_id_len);
        assert!(code.len() <= limits.max_code_len);
        assert!(id
            .bytes()
            .chain(code.bytes())
            .all(|b| (0x20..=0x7e).contains(&b)));
        // After the code prompt, nothing typed is echoed: only bells and the final line end.
        let start = echo
            .windows(CODE_PROMPT.len())
            .rposition(|w| w == CODE_PROMPT)
            .expect("the code prompt was shown")
            + CODE_PROMPT.len();
        assert!(
            echo[start..]
                .iter()
                .all(|b| matches!(b, 0x07 | b'\r' | b'\n')),
            "the code field echoed {:?}",
            &echo[start..]
        );
    }
    assert!(
        echo.iter()
            .all(|b| (0x20..=0x7e).contains(b) || matches!(b, 0x07 | 0x08 | b'\r' | b'\n')),
        "the prompt echoed a control byte"
    );
}

type PromptRun = (Vec<u8>, Option<(String, String)>, bool);

fn run_prompt(limits: PromptLimits, batches: &[&[u8]]) -> PromptRun {
    let (mut prompt, mut echo) = Prompt::start(limits);
    for batch in batches {
        let out = prompt.feed(batch);
        echo.extend_from_slice(&out.echo);
        if let Some(answer) = out.answer {
            let code = answer.code.as_str().to_owned();
            return (echo, Some((answer.technician_id, code)), false);
        }
        if out.cancelled {
            return (echo, None, true);
        }
    }
    (echo, None, false)
}

/// The shim's YAML configuration: never a panic; what parses has a usable machine config.
pub fn shim_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ShimConfig::parse(text) {
        let _ = config.machine();
        assert_ne!(config.technician_port.path, config.device_port.path);
    }
}

/// Well-formed inputs for each shim target (named as in `fuzz/Cargo.toml`).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "recording" => {
            let metadata = RecordingMetadata::new(
                Uuid::from_bytes([0x6f; 16]),
                "tech-001",
                "empump-12",
                "shim-a",
                datetime!(2026-04-15 09:22:03 UTC),
                [7; 32],
            )
            .expect("seed metadata");
            let chunks: [(u64, Direction, &[u8]); 5] = [
                (0, Direction::Event, b"auth ok tech-001"),
                (512, Direction::TechToDevice, b"status\r"),
                (1024, Direction::DeviceToTech, b"\x1b[1mok\x1b[0m\r\n"),
                (2048, Direction::DeviceToTech, b"\x1b]52;c;cm0=\x07\x80\xff"),
                (4096, Direction::Event, b"session close"),
            ];
            let mut closed = RecordWriter::new(Vec::new(), &metadata).expect("seed writer");
            for (t, direction, data) in chunks {
                closed.write_chunk(t, direction, data).expect("seed chunk");
            }
            let unclosed = closed.get_mut().clone();
            let closed = closed.finish(5000).expect("seed end");
            vec![closed, unclosed]
        }
        "sanitizer" => vec![
            b"\x1b[1;31mred\x1b[0m plain\r\n".to_vec(),
            b"\x1b]0;title\x07\x1b]52;c;cm0gLXJmIC8K\x07\x1b[21t\x1b[6n".to_vec(),
            b"\x1bP+q544e\x1b\\\x1b[?1049h\x1b[2J\x1b[H\x1b[?25l\x1b(0".to_vec(),
            "caf\u{e9} \u{9b}31m \u{20ac}\x0e\x0f".as_bytes().to_vec(),
            b"\x1b[99999999999999m\x1b[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18;19;20;21;22;23m"
                .to_vec(),
        ],
        "prompt" => vec![
            b"\x10tech-001\r123456\r".to_vec(),
            b"\x20texh\x7f\x08ch-1\r\n9999\x15123\x08456\r\n".to_vec(),
            b"\x05\x1b[Aid\r\x03".to_vec(),
            b"\x00\r\r  \rtech\n\xff\xfe12\r".to_vec(),
        ],
        "shim_config" => vec![
            b"shim_id: shim-01\ndevice_name: empump-12\ntechnician_port:\n  path: /dev/ttyS0\ndevice_port:\n  path: /dev/ttyS1\n  baud: 9600\ncontrol_socket: /run/warden/shim.sock\n".to_vec(),
            FULL_SHIM_CONFIG.as_bytes().to_vec(),
        ],
        _ => Vec::new(),
    }
}

const FULL_SHIM_CONFIG: &str = "shim_id: ward3-shim-01
device_name: empump-12
technician_port:
  path: /dev/ttyUSB0
  baud: 115200
  data_bits: \"8\"
  disconnect_on_carrier_loss: true
device_port:
  path: /dev/ttyUSB1
  baud: 9600
totp: { window: 1 }
lockout: { max_failures: 5, window_secs: 60 }
challenge: { timeout_secs: 60, max_id_length: 64 }
session: { idle_timeout_secs: 900, escape_sequence: true }
recording:
  flush_interval_ms: 1000
  budget_bytes: 10737418240
  max_backlog_bytes: 67108864
heartbeat: { interval_secs: 60 }
tamper:
  file: /run/warden/tamper
  signal: SIGUSR1
  gpio: { chip: /dev/gpiochip0, line: 17, active_low: true }
  poll_interval_ms: 100
control_socket: /run/warden/shim.sock
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_accepted_by_their_targets() {
        for seed in seeds("recording") {
            RecordReader::new(&seed[..]).unwrap();
        }
        for seed in seeds("shim_config") {
            ShimConfig::parse(std::str::from_utf8(&seed).unwrap()).unwrap();
        }
        let (_, answer, _) = run_prompt(PromptLimits::default(), &[&seeds("prompt")[0][1..]]);
        assert_eq!(answer.unwrap().0, "tech-001");
    }
}
