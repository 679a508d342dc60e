//! Text/hex dump export: one or more lines per record, each starting with the direction —
//! `>` technician → device, `<` device → technician, `#` shim event or metadata. Lossless.
//!
//! ```text
//! # warden session recording
//! # session_id: 6f9619ff-8b86-d011-b42d-00c04fc964ff
//! # technician_id: tech-001
//! # …
//! >     0.000512 "ls -l\r"
//! <     0.001024 "total 0\r\n\e[0m"
//! <     0.002048 binary, 18 bytes
//! < 00000000  02 41 42 80 ff 00 01 02  03 04 05 06 07 08 09 0a  |.AB.............|
//! < 00000010  0d 0a                                             |..|
//! #     1.000000 "auth ok"
//! #     2.000000 end
//! ```
//!
//! A chunk is shown as quoted text when it is valid UTF-8 and its only control characters are
//! TAB, LF, CR, ESC, BS and BEL; these are written `\t \n \r \e \b \a`, with `\\` and `\"`.
//! Invisible characters that can disguise text (zero-width and bidirectional controls, BOM) are
//! written `\u{XXXX}`. Anything else is binary and shown like `hexdump -C`. Either way the exact
//! bytes can be recovered from the dump. Times are seconds since the start, microsecond precision.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{drive, seconds, ExportError, ExportSummary, Sink};
use crate::recording::record::{
    is_disguising, rfc3339_micros, Chunk, Direction, Record, RecordError, RecordingMetadata,
};

/// The chunk as quoted, escaped text, or `None` if it should be shown as hex.
fn as_text(data: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(data).ok()?;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{8}' => out.push_str("\\b"),
            '\u{7}' => out.push_str("\\a"),
            c if c.is_control() => return None,
            c if is_disguising(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Some(out)
}

/// `hexdump -C` lines for `data`, each prefixed with `prefix` and a space.
fn push_hex(out: &mut String, prefix: char, data: &[u8]) {
    for (row, bytes) in data.chunks(16).enumerate() {
        let _ = write!(out, "{prefix} {:08x}  ", row * 16);
        for i in 0..16 {
            match bytes.get(i) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if i == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        for &b in bytes {
            out.push(if (0x20..=0x7e).contains(&b) {
                b as char
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
}

struct DumpSink<W: Write> {
    out: W,
}

impl<W: Write> Sink for DumpSink<W> {
    fn chunk(&mut self, chunk: &Chunk) -> io::Result<()> {
        let prefix = chunk.direction.prefix();
        let mut text = format!("{prefix} {:>12} ", seconds(chunk.t_us));
        match as_text(&chunk.data) {
            Some(quoted) => {
                text.push_str(&quoted);
                text.push('\n');
            }
            None => {
                let _ = writeln!(text, "binary, {} bytes", chunk.data.len());
                push_hex(&mut text, prefix, &chunk.data);
            }
        }
        self.out.write_all(text.as_bytes())
    }

    fn end(&mut self, t_us: u64) -> io::Result<()> {
        let prefix = Direction::Event.prefix();
        writeln!(self.out, "{prefix} {:>12} end", seconds(t_us))?;
        self.out.flush()
    }

    fn stopped(&mut self, err: &RecordError) -> io::Result<()> {
        writeln!(
            self.out,
            "# error: the recording stops here: {}",
            warden_core::report::Report(err)
        )?;
        self.out.flush()
    }
}

/// Writes `records` as a text/hex dump (see the module documentation).
pub fn write_dump<I, W>(
    metadata: &RecordingMetadata,
    records: I,
    mut out: W,
) -> Result<ExportSummary, ExportError>
where
    I: IntoIterator<Item = Result<Record, RecordError>>,
    W: Write,
{
    let header = format!(
        "# warden session recording\n\
         # session_id: {}\n\
         # technician_id: {}\n\
         # device_name: {}\n\
         # shim_id: {}\n\
         # started_at: {}\n\
         # config_hash: {}\n",
        metadata.session_id().hyphenated(),
        metadata.technician_id(),
        metadata.device_name(),
        metadata.shim_id(),
        rfc3339_micros(metadata.started_at()),
        hex::encode(metadata.config_hash()),
    );
    out.write_all(header.as_bytes())
        .map_err(ExportError::Write)?;
    drive(records, &mut DumpSink { out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert_eq!(as_text(b"").as_deref(), Some("\"\""));
        assert_eq!(
            as_text(b"a\"b\\c\t\n\r\x1b[0m\x08\x07").as_deref(),
            Some(r#""a\"b\\c\t\n\r\e[0m\b\a""#)
        );
        assert_eq!(
            as_text("x\u{202e}y\u{200b}".as_bytes()).as_deref(),
            Some(r#""x\u{202e}y\u{200b}""#)
        );
        assert_eq!(as_text("ünï".as_bytes()).as_deref(), Some("\"ünï\""));
        assert_eq!(as_text(b"\x00"), None);
        assert_eq!(as_text(b"\x7f"), None);
        assert_eq!(as_text(b"\xff"), None);
        assert_eq!(as_text("\u{9b}".as_bytes()), None);
    }

    #[test]
    fn hex_matches_hexdump_c_layout() {
        let mut out = String::new();
        push_hex(
            &mut out,
            '<',
            b"\x02AB\x80\xff\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\r\n",
        );
        assert_eq!(
            out,
            "< 00000000  02 41 42 80 ff 00 01 02  03 04 05 06 07 08 09 0a  |.AB.............|\n\
             < 00000010  0d 0a                                             |..|\n"
        );
    }
}
