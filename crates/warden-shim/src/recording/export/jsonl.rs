//! JSON Lines export: one object per record, lossless.
//!
//! ```text
//! {"type":"metadata","session_id":"…","technician_id":"…","device_name":"…","shim_id":"…","started_at":"…","config_hash":"…"}
//! {"type":"chunk","record":1,"t_us":512,"direction":"tech_to_device","len":6,"base64":"bHMgLWwNCg==","text":"ls -l\r\n"}
//! {"type":"end","record":9,"t_us":2000000}
//! {"type":"error","message":"…"}                       only if the recording stops early
//! ```
//!
//! `base64` (standard alphabet, padded) holds the exact bytes; `text` is present only when the
//! bytes are valid UTF-8, as a convenience for `jq` and `grep`. `record` is the record number
//! (the metadata is record 0).

use std::io::{self, Write};

use base64::Engine as _;
use serde::Serialize;

use super::{drive, ExportError, ExportSummary, Sink};
use crate::recording::record::{Chunk, MetadataJson, Record, RecordError, RecordingMetadata};
use warden_core::report::report;

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line<'a> {
    Metadata(MetadataJson),
    Chunk {
        record: u64,
        t_us: u64,
        direction: &'static str,
        len: usize,
        base64: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a str>,
    },
    End {
        record: u64,
        t_us: u64,
    },
    Error {
        message: String,
    },
}

struct JsonlSink<W: Write> {
    out: W,
    record: u64,
}

impl<W: Write> JsonlSink<W> {
    fn line(&mut self, line: &Line<'_>) -> io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        self.out.write_all(&bytes)
    }
}

impl<W: Write> Sink for JsonlSink<W> {
    fn chunk(&mut self, chunk: &Chunk) -> io::Result<()> {
        self.record += 1;
        let line = Line::Chunk {
            record: self.record,
            t_us: chunk.t_us,
            direction: chunk.direction.as_str(),
            len: chunk.data.len(),
            base64: base64::engine::general_purpose::STANDARD.encode(&chunk.data),
            text: std::str::from_utf8(&chunk.data).ok(),
        };
        self.line(&line)
    }

    fn end(&mut self, t_us: u64) -> io::Result<()> {
        self.record += 1;
        let record = self.record;
        self.line(&Line::End { record, t_us })?;
        self.out.flush()
    }

    fn stopped(&mut self, err: &RecordError) -> io::Result<()> {
        self.line(&Line::Error {
            message: report(err),
        })?;
        self.out.flush()
    }
}

/// Writes `records` as JSON Lines (see the module documentation).
pub fn write_jsonl<I, W>(
    metadata: &RecordingMetadata,
    records: I,
    out: W,
) -> Result<ExportSummary, ExportError>
where
    I: IntoIterator<Item = Result<Record, RecordError>>,
    W: Write,
{
    let mut sink = JsonlSink { out, record: 0 };
    sink.line(&Line::Metadata(metadata.to_json()))
        .map_err(ExportError::Write)?;
    drive(records, &mut sink)
}
