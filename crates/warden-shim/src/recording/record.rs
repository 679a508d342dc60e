//! The record layer of a session recording: what the plaintext of a sealed recording stream holds.
//!
//! The byte layout is specified in the [module documentation](super). [`RecordWriter`] writes it
//! over any `impl Write` (in the shim, a `SealedWriter`); [`RecordReader`] reads it back over any
//! `impl Read` one record at a time, in constant memory (one record of at most 64 KiB), and says
//! exactly where and how a damaged or cut-off recording ends instead of panicking.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;
use warden_core::report::report;

/// First 8 bytes of every recording.
pub const MAGIC: [u8; 8] = *b"WRDNRCRD";
/// The record format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Magic (8) ‖ version (1).
pub const PREAMBLE_LEN: usize = 9;
/// Record type (1) ‖ body length (4, big-endian).
pub const RECORD_HEADER_LEN: usize = 5;
/// Most data bytes in one chunk record; longer writes are split into several records.
pub const MAX_CHUNK_DATA: usize = 64 * 1024;
/// Most bytes of metadata JSON.
pub const MAX_METADATA_LEN: usize = 64 * 1024;
/// Most bytes in a technician id, device name or shim id.
pub const MAX_LABEL_LEN: usize = 256;

/// Time offset (8) ‖ direction (1) before a chunk's data.
const CHUNK_FIXED_LEN: usize = 9;
/// An end record's body: the time offset (8).
const END_LEN: usize = 8;

const TYPE_METADATA: u8 = 0x01;
const TYPE_CHUNK: u8 = 0x02;
const TYPE_END: u8 = 0x03;

/// Why metadata was refused, when made or when read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} bytes long; at most {MAX_LABEL_LEN} allowed")]
    TooLong { field: &'static str, len: usize },
    #[error("{field} has a control or invisible formatting character at byte {position}")]
    ControlCharacter {
        field: &'static str,
        position: usize,
    },
    #[error("started_at year {0} is outside 0000..=9999")]
    YearOutOfRange(i32),
    #[error("metadata is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("session_id is not a lowercase hyphenated UUID")]
    SessionId,
    #[error("started_at is not an RFC 3339 UTC time of the form YYYY-MM-DDThh:mm:ss.ffffffZ")]
    StartedAt,
    #[error("started_at is not in UTC (it must end in Z)")]
    StartedAtNotUtc,
    #[error("config_hash is not 64 lowercase hex digits")]
    ConfigHash,
}

/// Why a recording could not be written or read. Record 0 is the preamble and metadata; chunk
/// records count from 1. Offsets count plaintext bytes from the start of the recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    // The storage underneath (for a sealed stream, this includes its authentication failures).
    #[error("I/O error")]
    Io(#[from] io::Error),
    // Not a recording this code can read.
    #[error("not a warden session recording (bad magic)")]
    NotARecording,
    #[error("recording format version {0} is not supported (this warden reads version {VERSION})")]
    UnsupportedVersion(u8),
    // Damage: a recording that was cut short or is malformed.
    #[error("the recording is cut off inside record {record} (byte {offset}): {missing} more bytes were expected; everything before that record is intact")]
    CutOff {
        record: u64,
        offset: u64,
        missing: u64,
    },
    #[error("the recording stops after record {last_record} without an end record (it was not closed, e.g. recovered after power loss); everything before is intact")]
    MissingEnd { last_record: u64 },
    #[error("record {record} (byte {offset}) is malformed: {reason}")]
    Malformed {
        record: u64,
        offset: u64,
        reason: &'static str,
    },
    #[error("record {record}: time offset {found} µs is earlier than the previous {previous} µs")]
    TimeWentBackwards {
        record: u64,
        previous: u64,
        found: u64,
    },
    #[error("bad metadata")]
    BadMetadata(#[from] MetadataError),
    #[error("data follows the end record (byte {offset})")]
    TrailingData { offset: u64 },
    // Usage: the writer cannot go on.
    #[error("an earlier write failed; this recording writer cannot continue")]
    WriterFailed,
}

impl RecordError {
    /// True when the recording is intact up to a point and simply stops there (a recovered
    /// recording): every record read before the error is trustworthy.
    pub fn is_cut_off(&self) -> bool {
        matches!(self, Self::CutOff { .. } | Self::MissingEnd { .. })
    }
}

/// Which way the bytes of a chunk went, or a shim event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    /// Technician → device (typed at the laptop). Dump prefix `>`, asciicast `i`.
    TechToDevice = 1,
    /// Device → technician (what the device printed). Dump prefix `<`, asciicast `o`.
    DeviceToTech = 2,
    /// An event of the shim itself (a UTF-8 label such as `auth ok`). Dump prefix `#`, asciicast `m`.
    Event = 3,
}

impl Direction {
    pub const ALL: [Direction; 3] = [
        Direction::TechToDevice,
        Direction::DeviceToTech,
        Direction::Event,
    ];

    pub const fn code(self) -> u8 {
        self as u8
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::TechToDevice),
            2 => Some(Self::DeviceToTech),
            3 => Some(Self::Event),
            _ => None,
        }
    }

    /// The line prefix in the text dump.
    pub const fn prefix(self) -> char {
        match self {
            Self::TechToDevice => '>',
            Self::DeviceToTech => '<',
            Self::Event => '#',
        }
    }

    /// The name in JSON exports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TechToDevice => "tech_to_device",
            Self::DeviceToTech => "device_to_tech",
            Self::Event => "event",
        }
    }
}

/// Bytes that crossed the shim (or an event label) at `t_us` microseconds after the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub t_us: u64,
    pub direction: Direction,
    pub data: Vec<u8>,
}

/// One record after the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Chunk(Chunk),
    /// The recording was closed properly, `t_us` microseconds after the start.
    End {
        t_us: u64,
    },
}

// Implements: S6
/// Who, what and when a recording is about; the first record of every recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingMetadata {
    session_id: Uuid,
    technician_id: String,
    device_name: String,
    shim_id: String,
    started_at: OffsetDateTime,
    config_hash: [u8; 32],
}

/// The JSON form of [`RecordingMetadata`], fields in this order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MetadataJson {
    pub session_id: String,
    pub technician_id: String,
    pub device_name: String,
    pub shim_id: String,
    pub started_at: String,
    pub config_hash: String,
}

fn check_label(field: &'static str, value: &str) -> Result<(), MetadataError> {
    if value.is_empty() {
        return Err(MetadataError::Empty { field });
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(MetadataError::TooLong {
            field,
            len: value.len(),
        });
    }
    match value
        .char_indices()
        .find(|(_, c)| c.is_control() || is_disguising(*c))
    {
        Some((position, _)) => Err(MetadataError::ControlCharacter { field, position }),
        None => Ok(()),
    }
}

/// Invisible characters that can make text look like other text: zero-width characters,
/// bidirectional overrides and isolates, the BOM.
pub(crate) fn is_disguising(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// `YYYY-MM-DDThh:mm:ss.ffffffZ` (UTC, microseconds).
pub(crate) fn rfc3339_micros(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

impl RecordingMetadata {
    /// Checks and normalises: labels are 1..=256 bytes without control characters or invisible
    /// formatting characters (they end up in terminal titles and dumps); `started_at` is converted to UTC and truncated to whole
    /// microseconds (what the format stores).
    pub fn new(
        session_id: Uuid,
        technician_id: impl Into<String>,
        device_name: impl Into<String>,
        shim_id: impl Into<String>,
        started_at: OffsetDateTime,
        config_hash: [u8; 32],
    ) -> Result<Self, MetadataError> {
        let (technician_id, device_name, shim_id) =
            (technician_id.into(), device_name.into(), shim_id.into());
        check_label("technician_id", &technician_id)?;
        check_label("device_name", &device_name)?;
        check_label("shim_id", &shim_id)?;
        let started_at = started_at.to_offset(UtcOffset::UTC);
        if !(0..=9999).contains(&started_at.year()) {
            return Err(MetadataError::YearOutOfRange(started_at.year()));
        }
        let micros = started_at.microsecond();
        let started_at = started_at
            .replace_nanosecond(micros * 1000)
            .map_err(|_| MetadataError::StartedAt)?;
        Ok(Self {
            session_id,
            technician_id,
            device_name,
            shim_id,
            started_at,
            config_hash,
        })
    }

    pub fn session_id(&self) -> Uuid {
        self.session_id
    }

    pub fn technician_id(&self) -> &str {
        &self.technician_id
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    pub fn shim_id(&self) -> &str {
        &self.shim_id
    }

    /// Wall-clock start, UTC.
    pub fn started_at(&self) -> OffsetDateTime {
        self.started_at
    }

    /// SHA-256 of the configuration the shim ran with.
    pub fn config_hash(&self) -> &[u8; 32] {
        &self.config_hash
    }

    pub(crate) fn to_json(&self) -> MetadataJson {
        MetadataJson {
            session_id: self.session_id.hyphenated().to_string(),
            technician_id: self.technician_id.clone(),
            device_name: self.device_name.clone(),
            shim_id: self.shim_id.clone(),
            started_at: rfc3339_micros(self.started_at),
            config_hash: hex::encode(self.config_hash),
        }
    }

    fn from_json_bytes(bytes: &[u8]) -> Result<Self, MetadataError> {
        let json: MetadataJson =
            serde_json::from_slice(bytes).map_err(|e| MetadataError::Json(report(&e)))?;
        let session_id = Uuid::try_parse(&json.session_id).map_err(|_| MetadataError::SessionId)?;
        // One spelling only, the one writers produce (lowercase, hyphenated).
        if session_id.hyphenated().to_string() != json.session_id {
            return Err(MetadataError::SessionId);
        }
        let started_at = OffsetDateTime::parse(&json.started_at, &Rfc3339)
            .map_err(|_| MetadataError::StartedAt)?;
        if started_at.offset() != UtcOffset::UTC || !json.started_at.ends_with('Z') {
            return Err(MetadataError::StartedAtNotUtc);
        }
        // One spelling only, the one writers produce: no lowercase t, no space, six decimals.
        if rfc3339_micros(started_at) != json.started_at {
            return Err(MetadataError::StartedAt);
        }
        let mut config_hash = [0u8; 32];
        hex::decode_to_slice(&json.config_hash, &mut config_hash)
            .map_err(|_| MetadataError::ConfigHash)?;
        if hex::encode(config_hash) != json.config_hash {
            return Err(MetadataError::ConfigHash);
        }
        Self::new(
            session_id,
            json.technician_id,
            json.device_name,
            json.shim_id,
            started_at,
            config_hash,
        )
    }
}

// Implements: S5, S7
/// Writes a recording: preamble and metadata at once, then chunks, then the end record.
/// `finish` consumes the writer, so nothing can be written after the end record.
pub struct RecordWriter<W: Write> {
    inner: W,
    last_t: u64,
    records: u64,
    failed: bool,
    buf: Vec<u8>,
}

impl<W: Write> RecordWriter<W> {
    /// Writes the preamble and the metadata record.
    pub fn new(inner: W, metadata: &RecordingMetadata) -> Result<Self, RecordError> {
        let json =
            serde_json::to_vec(&metadata.to_json()).map_err(|e| MetadataError::Json(report(&e)))?;
        // Labels are capped at 256 bytes each, so the JSON stays far below the cap.
        debug_assert!(json.len() <= MAX_METADATA_LEN);
        let mut writer = Self {
            inner,
            last_t: 0,
            records: 0,
            failed: false,
            buf: Vec::with_capacity(RECORD_HEADER_LEN + CHUNK_FIXED_LEN + MAX_CHUNK_DATA),
        };
        writer.buf.extend_from_slice(&MAGIC);
        writer.buf.push(VERSION);
        push_header(&mut writer.buf, TYPE_METADATA, json.len());
        writer.buf.extend_from_slice(&json);
        writer.emit()?;
        Ok(writer)
    }

    fn check_time(&mut self, t_us: u64) -> Result<(), RecordError> {
        if self.failed {
            return Err(RecordError::WriterFailed);
        }
        if t_us < self.last_t {
            return Err(RecordError::TimeWentBackwards {
                record: self.records,
                previous: self.last_t,
                found: t_us,
            });
        }
        Ok(())
    }

    fn emit(&mut self) -> Result<(), RecordError> {
        let result = self.inner.write_all(&self.buf);
        self.buf.clear();
        if let Err(e) = result {
            // A record may be half written: nothing after it could be read back correctly.
            self.failed = true;
            return Err(e.into());
        }
        self.records += 1;
        Ok(())
    }

    /// Records `data` going in `direction` at `t_us` µs after the start (never earlier than the
    /// previous record). Empty data is recorded as an empty chunk; data longer than
    /// [`MAX_CHUNK_DATA`] becomes several records with the same time.
    pub fn write_chunk(
        &mut self,
        t_us: u64,
        direction: Direction,
        data: &[u8],
    ) -> Result<(), RecordError> {
        self.check_time(t_us)?;
        let mut pieces = data.chunks(MAX_CHUNK_DATA).peekable();
        if pieces.peek().is_none() {
            return self.write_one(t_us, direction, &[]);
        }
        for piece in pieces {
            self.write_one(t_us, direction, piece)?;
        }
        Ok(())
    }

    fn write_one(
        &mut self,
        t_us: u64,
        direction: Direction,
        data: &[u8],
    ) -> Result<(), RecordError> {
        push_header(&mut self.buf, TYPE_CHUNK, CHUNK_FIXED_LEN + data.len());
        self.buf.extend_from_slice(&t_us.to_be_bytes());
        self.buf.push(direction.code());
        self.buf.extend_from_slice(data);
        self.emit()?;
        self.last_t = t_us;
        Ok(())
    }

    /// Records a shim event (`auth ok`, `tamper: case open`, ...) as a UTF-8 label.
    pub fn write_event(&mut self, t_us: u64, label: &str) -> Result<(), RecordError> {
        self.write_chunk(t_us, Direction::Event, label.as_bytes())
    }

    /// Records written so far, counting the metadata record.
    pub fn records_written(&self) -> u64 {
        self.records
    }

    /// The inner writer, e.g. to seal a segment of the sealed stream underneath.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Abandons the recording without an end record (after a failure) and returns the inner
    /// writer; readers report such a recording as not closed.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Writes the end record, flushes, and hands back the inner writer (for a sealed stream,
    /// the caller then finishes that).
    pub fn finish(mut self, t_us: u64) -> Result<W, RecordError> {
        self.check_time(t_us)?;
        push_header(&mut self.buf, TYPE_END, END_LEN);
        self.buf.extend_from_slice(&t_us.to_be_bytes());
        self.emit()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

fn push_header(buf: &mut Vec<u8>, kind: u8, len: usize) {
    buf.push(kind);
    // Every body is far below 4 GiB (at most 9 + 64 KiB).
    buf.extend_from_slice(&(len as u32).to_be_bytes());
}

/// Reads as many bytes as possible into `buf`; fewer than `buf.len()` only at end of input.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderState {
    Reading,
    Ended,
    Failed,
}

/// Reads whole records (type, length, body) and keeps count of bytes and records.
struct RawReader<R: Read> {
    inner: R,
    offset: u64,
    /// Index of the record being read.
    record: u64,
    body: Vec<u8>,
}

impl<R: Read> RawReader<R> {
    /// Reads one record into `self.body` and returns its type and starting offset; `Ok(None)`
    /// at a clean end of input (not one byte of a next record).
    fn read_record(&mut self) -> Result<Option<(u8, u64)>, RecordError> {
        let start = self.offset;
        let mut header = [0u8; RECORD_HEADER_LEN];
        let got = read_full(&mut self.inner, &mut header)?;
        self.offset += got as u64;
        if got == 0 {
            return Ok(None);
        }
        if got < RECORD_HEADER_LEN {
            return Err(RecordError::CutOff {
                record: self.record,
                offset: start,
                missing: (RECORD_HEADER_LEN - got) as u64,
            });
        }
        let kind = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let malformed = |reason| RecordError::Malformed {
            record: self.record,
            offset: start,
            reason,
        };
        // Checked before allocating: a damaged length cannot make us reserve gigabytes.
        let allowed = match kind {
            TYPE_METADATA => (1..=MAX_METADATA_LEN).contains(&len),
            TYPE_CHUNK => (CHUNK_FIXED_LEN..=CHUNK_FIXED_LEN + MAX_CHUNK_DATA).contains(&len),
            TYPE_END => len == END_LEN,
            _ => return Err(malformed("unknown record type")),
        };
        if !allowed {
            return Err(malformed("record length out of range for its type"));
        }
        self.body.clear();
        self.body.resize(len, 0);
        let got = read_full(&mut self.inner, &mut self.body)?;
        self.offset += got as u64;
        if got < len {
            return Err(RecordError::CutOff {
                record: self.record,
                offset: start,
                missing: (len - got) as u64,
            });
        }
        Ok(Some((kind, start)))
    }
}

/// Reads a recording record by record. Also an iterator of `Result<Record, RecordError>` that
/// stops after the end record or after the first error.
pub struct RecordReader<R: Read> {
    raw: RawReader<R>,
    metadata: RecordingMetadata,
    last_t: u64,
    end: Option<u64>,
    state: ReaderState,
}

impl<R: Read> RecordReader<R> {
    /// Reads and checks the preamble and the metadata record.
    pub fn new(mut inner: R) -> Result<Self, RecordError> {
        let mut preamble = [0u8; PREAMBLE_LEN];
        let got = read_full(&mut inner, &mut preamble)?;
        let magic_len = got.min(MAGIC.len());
        if preamble[..magic_len] != MAGIC[..magic_len] {
            return Err(RecordError::NotARecording);
        }
        if got < PREAMBLE_LEN {
            return Err(RecordError::CutOff {
                record: 0,
                offset: 0,
                missing: (PREAMBLE_LEN - got) as u64,
            });
        }
        if preamble[8] != VERSION {
            return Err(RecordError::UnsupportedVersion(preamble[8]));
        }
        let mut raw = RawReader {
            inner,
            offset: PREAMBLE_LEN as u64,
            record: 0,
            body: Vec::new(),
        };
        let (kind, start) = raw.read_record()?.ok_or(RecordError::CutOff {
            record: 0,
            offset: PREAMBLE_LEN as u64,
            missing: RECORD_HEADER_LEN as u64,
        })?;
        if kind != TYPE_METADATA {
            return Err(RecordError::Malformed {
                record: 0,
                offset: start,
                reason: "the first record is not the metadata record",
            });
        }
        let metadata = RecordingMetadata::from_json_bytes(&raw.body)?;
        raw.record = 1;
        Ok(Self {
            raw,
            metadata,
            last_t: 0,
            end: None,
            state: ReaderState::Reading,
        })
    }

    pub fn metadata(&self) -> &RecordingMetadata {
        &self.metadata
    }

    /// The end record's time offset, once it has been read.
    pub fn end(&self) -> Option<u64> {
        self.end
    }

    /// Plaintext bytes read so far.
    pub fn offset(&self) -> u64 {
        self.raw.offset
    }

    pub fn into_inner(self) -> R {
        self.raw.inner
    }

    /// The next record: chunks, then `End` once, then `Ok(None)`. After an error, `Ok(None)`.
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordError> {
        if self.state != ReaderState::Reading {
            return Ok(None);
        }
        let result = self.read_next();
        match &result {
            Err(_) => self.state = ReaderState::Failed,
            Ok(Some(Record::End { .. })) => self.state = ReaderState::Ended,
            Ok(_) => {}
        }
        result
    }

    fn read_next(&mut self) -> Result<Option<Record>, RecordError> {
        let record = self.raw.record;
        let Some((kind, start)) = self.raw.read_record()? else {
            return Err(RecordError::MissingEnd {
                last_record: record - 1,
            });
        };
        if kind == TYPE_METADATA {
            return Err(RecordError::Malformed {
                record,
                offset: start,
                reason: "a second metadata record",
            });
        }
        // Chunk and end bodies are at least 8 bytes long (checked in read_record).
        let mut t_bytes = [0u8; 8];
        t_bytes.copy_from_slice(&self.raw.body[..8]);
        let t_us = u64::from_be_bytes(t_bytes);
        if t_us < self.last_t {
            return Err(RecordError::TimeWentBackwards {
                record,
                previous: self.last_t,
                found: t_us,
            });
        }
        self.last_t = t_us;
        self.raw.record += 1;
        if kind == TYPE_END {
            let mut probe = [0u8; 1];
            if read_full(&mut self.raw.inner, &mut probe)? != 0 {
                return Err(RecordError::TrailingData {
                    offset: self.raw.offset,
                });
            }
            self.end = Some(t_us);
            return Ok(Some(Record::End { t_us }));
        }
        let direction = Direction::from_code(self.raw.body[8]).ok_or(RecordError::Malformed {
            record,
            offset: start,
            reason: "unknown direction",
        })?;
        Ok(Some(Record::Chunk(Chunk {
            t_us,
            direction,
            data: self.raw.body[CHUNK_FIXED_LEN..].to_vec(),
        })))
    }
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
