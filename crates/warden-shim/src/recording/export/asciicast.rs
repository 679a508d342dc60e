//! asciicast v2 export, replayable with `asciinema play`.
//!
//! ```text
//! {"version":2,"width":80,"height":24,"timestamp":<unix start>,"title":"…","env":{"TERM":"…"}}
//! [0.000512, "i", "ls -l\r"]          technician → device
//! [0.001024, "o", "total 0\r\n"]      device → technician
//! [1.000000, "m", "auth ok"]          shim event (marker)
//! ```
//!
//! asciicast strings are JSON, hence Unicode; serial traffic is bytes. Each direction is decoded
//! as one continuous UTF-8 stream, so a character split across two chunks is kept whole (it
//! appears in the event of the chunk that completes it). Bytes that are not UTF-8 become, per
//! [`InvalidUtf8`], U+FFFD (the default: terminal layout is kept, one cell per bad sequence) or
//! the visible text `\xNN` (the byte value is kept, but the layout shifts).
//!
//! A player writes the `o` events to the viewer's terminal, so by default they go through the
//! same [`TerminalSanitizer`] as `warden session play`: what a serial console needs (text,
//! colours, cursor movement, erasing) is kept; what acts on the viewer's terminal (title
//! changes, OSC 52 clipboard writes, window operations such as `CSI 21 t`, reports such as
//! `ESC [ 6 n` that the terminal answers as if typed, character set switches) is dropped, and the
//! last event puts back what the replay changed. `i` events are sanitized the same way and
//! marker labels lose their control characters. [`AsciicastOptions::sanitize`] `false`
//! (`warden session export --raw`) keeps every byte's effect, for recordings you trust.
//!
//! **What is lost:** the exact value of non-UTF-8 bytes (with `Replace`, and always when
//! sanitizing: the sanitizer writes U+FFFD), the chunk boundaries of split characters, and the
//! sequences the sanitizer drops. The JSON Lines and dump exports are lossless (every byte is
//! escaped, nothing is interpreted); use them for evidence.

use std::io::{self, Write};

use serde::Serialize;

use super::{drive, seconds, ExportError, ExportSummary, Sink};
use crate::recording::record::{Chunk, Direction, Record, RecordError, RecordingMetadata};
use crate::recording::sanitize::TerminalSanitizer;

/// What to write for bytes that are not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidUtf8 {
    /// U+FFFD, once per maximal invalid sequence (as `String::from_utf8_lossy`).
    #[default]
    Replace,
    /// The four characters `\xNN` per byte.
    Hex,
}

/// Choices for [`write_asciicast`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsciicastOptions {
    /// Terminal size for the player (a serial line does not report one).
    pub width: u16,
    pub height: u16,
    /// Title; `None` makes one from the metadata.
    pub title: Option<String>,
    /// `TERM` in the header's `env`.
    pub term: String,
    /// Write `i` events for technician → device bytes (players ignore them; viewers may show them).
    pub include_input: bool,
    /// Write `m` marker events for shim events.
    pub include_events: bool,
    pub invalid_utf8: InvalidUtf8,
    /// Pass `o` and `i` events through the [`TerminalSanitizer`] (the default) so a player
    /// cannot be made to act on the viewer's terminal; `false` keeps the recorded bytes.
    pub sanitize: bool,
}

impl Default for AsciicastOptions {
    fn default() -> Self {
        Self {
            width: 80,
            height: 24,
            title: None,
            term: "vt100".into(),
            include_input: true,
            include_events: true,
            invalid_utf8: InvalidUtf8::Replace,
            sanitize: true,
        }
    }
}

#[derive(Serialize)]
struct Header<'a> {
    version: u8,
    width: u16,
    height: u16,
    timestamp: i64,
    title: &'a str,
    env: Env<'a>,
}

#[derive(Serialize)]
struct Env<'a> {
    #[serde(rename = "TERM")]
    term: &'a str,
}

/// Decodes one direction's bytes as a continuous UTF-8 stream.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    /// The start of a character whose remaining bytes have not arrived yet (at most 3 bytes).
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends the text of `data` to `out`, holding back an incomplete character at the end.
    pub(crate) fn push(&mut self, data: &[u8], invalid: InvalidUtf8, out: &mut String) {
        let joined;
        let mut rest: &[u8] = if self.pending.is_empty() {
            data
        } else {
            let mut v = std::mem::take(&mut self.pending);
            v.extend_from_slice(data);
            joined = v;
            &joined
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    return;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` is UTF-8 by the error's own account.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            push_invalid(&after[..n], invalid, out);
                            rest = &after[n..];
                        }
                        None => {
                            self.pending = after.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Writes out a character that never completed.
    pub(crate) fn flush(&mut self, invalid: InvalidUtf8, out: &mut String) {
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            push_invalid(&pending, invalid, out);
        }
    }
}

fn push_invalid(bytes: &[u8], invalid: InvalidUtf8, out: &mut String) {
    match invalid {
        InvalidUtf8::Replace => out.push('\u{FFFD}'),
        InvalidUtf8::Hex => {
            for b in bytes {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
}

/// One direction's bytes on their way to event text: sanitized (when asked), then decoded.
#[derive(Debug, Default)]
struct Lane {
    sanitizer: Option<TerminalSanitizer>,
    utf8: Utf8Stream,
    scratch: Vec<u8>,
}

impl Lane {
    fn new(sanitize: bool) -> Self {
        Self {
            sanitizer: sanitize.then(TerminalSanitizer::new),
            ..Self::default()
        }
    }

    fn push(&mut self, data: &[u8], invalid: InvalidUtf8, out: &mut String) {
        match &mut self.sanitizer {
            Some(sanitizer) => {
                self.scratch.clear();
                sanitizer.feed(data, &mut self.scratch);
                self.utf8.push(&self.scratch, invalid, out);
            }
            None => self.utf8.push(data, invalid, out),
        }
    }

    /// Ends the lane: an unfinished character, and what puts the terminal back.
    fn flush(&mut self, invalid: InvalidUtf8, out: &mut String) {
        if let Some(sanitizer) = &mut self.sanitizer {
            self.scratch.clear();
            sanitizer.finish(&mut self.scratch);
            self.utf8.push(&self.scratch, invalid, out);
        }
        self.utf8.flush(invalid, out);
    }
}

/// A marker label without control characters (a player may show it in the terminal).
fn clean_label(label: &str, sanitize: bool) -> String {
    if sanitize {
        label.chars().filter(|c| !c.is_control()).collect()
    } else {
        label.to_owned()
    }
}

struct AsciicastSink<'o, W: Write> {
    out: W,
    options: &'o AsciicastOptions,
    input: Lane,
    output: Lane,
    last_t: u64,
}

impl<W: Write> AsciicastSink<'_, W> {
    fn event(&mut self, t_us: u64, code: &str, text: &str) -> io::Result<()> {
        // Records never go back in time; clamp anyway so the output is always replayable.
        self.last_t = self.last_t.max(t_us);
        let mut line = format!("[{}, \"{code}\", ", seconds(self.last_t));
        line.push_str(&serde_json::to_string(text).map_err(io::Error::other)?);
        line.push_str("]\n");
        self.out.write_all(line.as_bytes())
    }

    fn flush_streams(&mut self, t_us: u64) -> io::Result<()> {
        let invalid = self.options.invalid_utf8;
        let mut text = String::new();
        self.output.flush(invalid, &mut text);
        if !text.is_empty() {
            self.event(t_us, "o", &text)?;
        }
        text.clear();
        self.input.flush(invalid, &mut text);
        if !text.is_empty() && self.options.include_input {
            self.event(t_us, "i", &text)?;
        }
        Ok(())
    }
}

impl<W: Write> Sink for AsciicastSink<'_, W> {
    fn chunk(&mut self, chunk: &Chunk) -> io::Result<()> {
        let invalid = self.options.invalid_utf8;
        let mut text = String::new();
        match chunk.direction {
            Direction::DeviceToTech => {
                self.output.push(&chunk.data, invalid, &mut text);
                if !text.is_empty() {
                    self.event(chunk.t_us, "o", &text)?;
                }
            }
            Direction::TechToDevice => {
                self.input.push(&chunk.data, invalid, &mut text);
                if !text.is_empty() && self.options.include_input {
                    self.event(chunk.t_us, "i", &text)?;
                }
            }
            Direction::Event => {
                if self.options.include_events {
                    let label =
                        clean_label(&String::from_utf8_lossy(&chunk.data), self.options.sanitize);
                    self.event(chunk.t_us, "m", &label)?;
                }
            }
        }
        Ok(())
    }

    fn end(&mut self, t_us: u64) -> io::Result<()> {
        self.flush_streams(t_us)?;
        self.out.flush()
    }

    fn stopped(&mut self, err: &RecordError) -> io::Result<()> {
        let t = self.last_t;
        self.flush_streams(t)?;
        let label = format!(
            "warden: the recording stops here: {}",
            warden_core::report::Report(err)
        );
        self.event(t, "m", &clean_label(&label, self.options.sanitize))?;
        self.out.flush()
    }
}

/// Writes `records` as asciicast v2 (see the module documentation).
pub fn write_asciicast<I, W>(
    metadata: &RecordingMetadata,
    records: I,
    mut out: W,
    options: &AsciicastOptions,
) -> Result<ExportSummary, ExportError>
where
    I: IntoIterator<Item = Result<Record, RecordError>>,
    W: Write,
{
    let default_title;
    let title = match &options.title {
        Some(t) => t.as_str(),
        None => {
            default_title = format!(
                "{} on {} via {} (session {})",
                metadata.technician_id(),
                metadata.device_name(),
                metadata.shim_id(),
                metadata.session_id().hyphenated()
            );
            &default_title
        }
    };
    let header = Header {
        version: 2,
        width: options.width,
        height: options.height,
        timestamp: metadata.started_at().unix_timestamp(),
        title,
        env: Env {
            term: &options.term,
        },
    };
    let mut line = serde_json::to_vec(&header).map_err(|e| ExportError::Write(e.into()))?;
    line.push(b'\n');
    out.write_all(&line).map_err(ExportError::Write)?;
    let mut sink = AsciicastSink {
        out,
        options,
        input: Lane::new(options.sanitize),
        output: Lane::new(options.sanitize),
        last_t: 0,
    };
    drive(records, &mut sink)
}
