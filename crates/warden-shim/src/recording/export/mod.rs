//! Exports of a decoded recording: asciicast v2 (replay in `asciinema play`), JSON Lines
//! (lossless, for tools) and a text/hex dump (lossless, for people and `grep`).
//!
//! Each export reads `Result<Record, RecordError>` items (a [`RecordReader`](super::RecordReader)
//! is such an iterator) and writes to any `impl Write`, one complete line at a time. If the
//! recording cannot be read to its end (cut off, damaged), the export writes everything before
//! that point, then a last line saying where and why it stopped (an asciicast marker, a JSON
//! `error` object, a `# error:` line), and returns [`ExportError::Record`]: the output is valid
//! and usable, and the caller still learns that it is incomplete.

mod asciicast;
mod dump;
mod jsonl;

use std::io;

pub use asciicast::{write_asciicast, AsciicastOptions, InvalidUtf8};
pub use dump::write_dump;
pub use jsonl::write_jsonl;

use super::record::{Chunk, Record, RecordError};

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing the export failed")]
    Write(#[source] io::Error),
    #[error("the recording could not be read to its end; the export holds the {chunks} chunks before that point and says where it stopped")]
    Record {
        chunks: u64,
        #[source]
        source: RecordError,
    },
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSummary {
    /// Chunk records read (including any an export chose not to show).
    pub chunks: u64,
    /// Data bytes in those chunks.
    pub bytes: u64,
    /// The end record's time offset.
    pub end_t_us: Option<u64>,
}

/// One export format: told about each record, and about an early stop.
trait Sink {
    fn chunk(&mut self, chunk: &Chunk) -> io::Result<()>;
    fn end(&mut self, t_us: u64) -> io::Result<()>;
    fn stopped(&mut self, err: &RecordError) -> io::Result<()>;
}

/// Feeds `records` to `sink` until the end record or the first error.
fn drive<I, S>(records: I, sink: &mut S) -> Result<ExportSummary, ExportError>
where
    I: IntoIterator<Item = Result<Record, RecordError>>,
    S: Sink,
{
    let mut summary = ExportSummary::default();
    for item in records {
        match item {
            Ok(Record::Chunk(chunk)) => {
                summary.chunks += 1;
                summary.bytes += chunk.data.len() as u64;
                sink.chunk(&chunk).map_err(ExportError::Write)?;
            }
            Ok(Record::End { t_us }) => {
                summary.end_t_us = Some(t_us);
                sink.end(t_us).map_err(ExportError::Write)?;
                return Ok(summary);
            }
            Err(source) => {
                sink.stopped(&source).map_err(ExportError::Write)?;
                return Err(ExportError::Record {
                    chunks: summary.chunks,
                    source,
                });
            }
        }
    }
    // An iterator that stops without an end record: the same as a recording that was not closed.
    let source = RecordError::MissingEnd {
        last_record: summary.chunks,
    };
    sink.stopped(&source).map_err(ExportError::Write)?;
    Err(ExportError::Record {
        chunks: summary.chunks,
        source,
    })
}

/// `t_us` as seconds with exactly six decimals, e.g. `12.000345`: exact, and valid JSON.
pub(crate) fn seconds(t_us: u64) -> String {
    format!("{}.{:06}", t_us / 1_000_000, t_us % 1_000_000)
}
