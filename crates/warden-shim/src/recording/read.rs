//! Reading one session file: verify the sealed stream segment by segment, decode its records,
//! hash the file, and say what state it is in (complete, cut short, damaged, unreadable).
//!
//! ```text
//! file ─► HashingReader ─► SealedReader ─► VerifiedPlaintext ─► RecordReader ─► Records ─► consumer
//!          (SHA-256)        (AES-GCM)       (a missing final      (records)       (tally)   (list, play,
//!                                            segment reads as EOF)                           export)
//! ```
//!
//! Only verified bytes ever reach a consumer. A recording cut short (crash, power loss, storage
//! exhausted: the final sealed segment is missing) reads as a recording without its end record,
//! so consumers see every record up to the cut and the usual "stops here" error from the record
//! layer; any other damage to the stream stops the records with an error naming the damage.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use super::{Direction, Record, RecordError, RecordReader, RecordingMetadata};
use warden_core::fsx::FsError;
use warden_core::keyring::Purpose;
use warden_core::report::{report, Report};
use warden_core::secret::Key32;
use warden_core::stream::{SealedReader, Segment, StreamError, HEADER_LEN, MAGIC};

/// The file as bytes: what was hashed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileFacts {
    pub bytes: u64,
    /// SHA-256 of every byte of the file (what the audit chain records).
    pub sha256: [u8; 32],
    pub modified: Option<SystemTime>,
}

/// Counts of the records a consumer read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub chunks: u64,
    /// Device → technician data bytes.
    pub output_bytes: u64,
    /// Technician → device data bytes.
    pub input_bytes: u64,
    pub events: u64,
    pub last_t_us: u64,
    /// The end record's time, if it was read.
    pub end_t_us: Option<u64>,
}

impl Tally {
    fn add(&mut self, record: &Record) {
        match record {
            Record::Chunk(chunk) => {
                self.chunks += 1;
                self.last_t_us = chunk.t_us;
                let len = chunk.data.len() as u64;
                match chunk.direction {
                    Direction::DeviceToTech => self.output_bytes += len,
                    Direction::TechToDevice => self.input_bytes += len,
                    Direction::Event => self.events += 1,
                }
            }
            Record::End { t_us } => {
                self.last_t_us = *t_us;
                self.end_t_us = Some(*t_us);
            }
        }
    }

    /// Recorded time: to the end record, or to the last chunk that verified.
    pub fn duration_us(&self) -> u64 {
        self.end_t_us.unwrap_or(self.last_t_us)
    }
}

/// Where the records of a cut-short recording stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStop {
    /// The file ends inside the sealed header: nothing was recorded.
    InHeader,
    /// Not even the metadata record verifies.
    NoMetadata,
    /// Cleanly after this record (records count from 1 after the metadata).
    AfterRecord(u64),
    /// Inside this record (it is lost; everything before it is intact).
    InsideRecord(u64),
    /// The end record is there; only the sealed stream's final segment is missing.
    EndRecordPresent,
}

impl RecordStop {
    fn from_result(result: &Result<(), RecordError>) -> Self {
        match result {
            Ok(()) => Self::EndRecordPresent,
            Err(RecordError::CutOff { record: 0, .. }) => Self::NoMetadata,
            Err(RecordError::CutOff { record, .. }) => Self::InsideRecord(*record),
            Err(RecordError::MissingEnd { last_record }) => Self::AfterRecord(*last_record),
            Err(_) => Self::NoMetadata,
        }
    }
}

/// A recording whose end is missing: everything before the cut verifies, the rest is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutShort {
    /// The sealed stream lost its final segment (crash, power loss, storage exhausted, or the
    /// file is still being written); false when the stream is whole but the recording inside
    /// was not closed.
    pub final_segment_missing: bool,
    /// Sealed segments that verified.
    pub segments: u64,
    /// Bytes at the end of the file that could not be verified (a partly written segment).
    pub unverified_bytes: u64,
    pub records: RecordStop,
}

impl std::fmt::Display for CutShort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.records == RecordStop::InHeader {
            return write!(
                f,
                "the file ends inside its sealed header ({} bytes): nothing was recorded",
                self.unverified_bytes
            );
        }
        if self.final_segment_missing {
            write!(
                f,
                "the final sealed segment is missing (crash, power loss or storage exhausted); \
                 {} segments verified",
                self.segments
            )?;
            if self.unverified_bytes > 0 {
                write!(
                    f,
                    ", {} bytes at the end could not be verified",
                    self.unverified_bytes
                )?;
            }
        } else {
            write!(f, "the recording was not closed (no end record)")?;
        }
        match self.records {
            RecordStop::InHeader => Ok(()),
            RecordStop::NoMetadata => write!(f, "; not even the metadata verifies"),
            RecordStop::AfterRecord(n) => write!(f, "; the records stop after record {n}"),
            RecordStop::InsideRecord(n) => write!(f, "; record {n} is incomplete"),
            RecordStop::EndRecordPresent => write!(f, "; the end record is there"),
        }
    }
}

/// Damage that makes a recording untrustworthy past a point (or entirely).
#[derive(Debug)]
pub enum Damage {
    /// The sealed stream: modified, reordered, spliced segments, a bad header, a wrong key, …
    Stream(StreamError),
    /// Sealed with the vault's `recordings` key (`warden vault seal`), not by the shim.
    VaultFile,
    /// The records inside an authentic stream are malformed.
    Record(RecordError),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stream(e) => write!(f, "{}", Report(e)),
            Self::VaultFile => f.write_str(
                "sealed with `warden vault seal` (the vault's key), not recorded by the shim: \
                 not a session recording",
            ),
            Self::Record(e) => write!(f, "authentic but malformed: {}", Report(e)),
        }
    }
}

/// What reading a session file found.
#[derive(Debug)]
pub enum Status {
    Complete,
    CutShort(CutShort),
    Damaged(Damage),
    /// The file could not be opened or read (missing, permissions, not a regular file, …).
    Unreadable(String),
}

impl Status {
    /// A word or two for tables and messages.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::CutShort(_) => "cut short",
            Self::Damaged(_) => "DAMAGED",
            Self::Unreadable(_) => "unreadable",
        }
    }

    /// The name in JSON output.
    pub fn json_name(&self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::CutShort(_) => "cut_short",
            Self::Damaged(_) => "damaged",
            Self::Unreadable(_) => "unreadable",
        }
    }

    /// What is wrong, in words; `None` for a complete recording.
    pub fn problem(&self) -> Option<String> {
        match self {
            Self::Complete => None,
            Self::CutShort(cut) => Some(cut.to_string()),
            Self::Damaged(damage) => Some(damage.to_string()),
            Self::Unreadable(why) => Some(why.clone()),
        }
    }

    /// The error a command that needs a readable recording fails with: `None` when there is
    /// something to show (complete or cut short). Stream errors stay in the chain so the binary
    /// maps them to their exit codes (3 damaged, 4 wrong key).
    pub fn into_error(self, name: &str) -> Option<SessionError> {
        let name = name.to_owned();
        match self {
            Self::Complete | Self::CutShort(_) => None,
            Self::Damaged(Damage::Stream(
                source @ (StreamError::WrongKey(_) | StreamError::WrongPurpose { .. }),
            )) => Some(SessionError::CannotOpen { name, source }),
            Self::Damaged(Damage::Stream(source)) => Some(SessionError::Damaged { name, source }),
            Self::Damaged(Damage::Record(source)) => Some(SessionError::Malformed { name, source }),
            Self::Damaged(Damage::VaultFile) => Some(SessionError::NotASession { name }),
            Self::Unreadable(why) => Some(SessionError::Unreadable { name, why }),
        }
    }
}

/// Why a recording cannot be shown or exported, sorted by cause.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot open {name}")]
    CannotOpen {
        name: String,
        #[source]
        source: StreamError,
    },
    #[error("{name} is damaged")]
    Damaged {
        name: String,
        #[source]
        source: StreamError,
    },
    #[error("{name} is damaged (authentic but malformed)")]
    Malformed {
        name: String,
        #[source]
        source: RecordError,
    },
    #[error("cannot read {name}: {why}")]
    Unreadable { name: String, why: String },
    /// A file sealed with the vault's key in the sessions directory (exit code 3).
    #[error("{name} was sealed with `warden vault seal`, not recorded by the shim: it is not a session recording")]
    NotASession { name: String },
    /// A recording cut short, and the command was not told to accept that (exit code 3).
    #[error("{0}")]
    CutShortRefused(String),
    /// The file changed between the verifying pass and the replay.
    #[error("{name} changed while it was being played")]
    ChangedWhilePlaying {
        name: String,
        #[source]
        source: Box<SessionError>,
    },
}

/// Everything learnt from reading one session file.
#[derive(Debug)]
pub struct SessionRead<T> {
    pub file: FileFacts,
    /// `None` when not even the metadata record could be read.
    pub metadata: Option<RecordingMetadata>,
    pub tally: Tally,
    pub status: Status,
    /// What the consumer returned; `None` when it was not called (no metadata).
    pub output: Option<T>,
}

/// The records of a session file, as an iterator for exporters and players; counts what passes.
pub struct Records<'a> {
    inner: RecordReader<&'a mut dyn Read>,
    tally: Tally,
}

impl Iterator for Records<'_> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next()?;
        if let Ok(record) = &item {
            self.tally.add(record);
        }
        Some(item)
    }
}

/// Reads every record to the end; `Ok` when the end record was read.
pub fn drain(records: &mut Records<'_>) -> Result<(), RecordError> {
    for item in records {
        item?;
    }
    Ok(())
}

/// Reads the session file at `path` — sealed under the session key derived from `recordings`
/// (the versions of the `recordings` purpose key this process holds, the current one first;
/// two during a rotation; see [`super::session_key`]) — handing its metadata and records
/// to `consume`, which returns its result and how the records ended (`Ok` at the end record).
/// An error from `consume` (e.g. writing the output failed) ends the reading at once.
pub fn read_session<T, E>(
    path: &Path,
    recordings: &[Key32],
    consume: impl FnOnce(
        &RecordingMetadata,
        &mut Records<'_>,
    ) -> Result<(T, Result<(), RecordError>), E>,
) -> Result<SessionRead<T>, E> {
    let mut hashing = match HashingReader::open(path) {
        Ok(h) => h,
        Err(why) => {
            return Ok(SessionRead {
                file: FileFacts::default(),
                metadata: None,
                tally: Tally::default(),
                status: Status::Unreadable(why),
                output: None,
            })
        }
    };
    let keys: Vec<Key32> = recordings.iter().map(super::session_key).collect();
    let sealed = match SealedReader::with_keys(&mut hashing, Purpose::Recordings, &keys) {
        Ok(sealed) => sealed,
        Err(err) => {
            let file = hashing.finish();
            let status = match err {
                // Sealed with the purpose key itself: a vault file, not a recording.
                StreamError::WrongKey(_) if sealed_by_the_vault(path, recordings) => {
                    Status::Damaged(Damage::VaultFile)
                }
                err => header_status(err, &hashing.head, file.bytes),
            };
            return Ok(SessionRead {
                file,
                metadata: None,
                tally: Tally::default(),
                status,
                output: None,
            });
        }
    };
    let mut plain = VerifiedPlaintext::new(sealed);
    let mut metadata = None;
    let mut output = None;
    let mut tally = Tally::default();
    let records_result = match RecordReader::new(&mut plain as &mut dyn Read) {
        Err(e) => Err(e),
        Ok(reader) => {
            let meta = reader.metadata().clone();
            let mut records = Records {
                inner: reader,
                tally: Tally::default(),
            };
            let (out, result) = consume(&meta, &mut records)?;
            tally = records.tally;
            metadata = Some(meta);
            output = Some(out);
            result
        }
    };
    // Check the whole stream, past an end record too (trailing segments, a missing final one).
    plain.drain();
    let verified_input = plain.sealed.verified_input_bytes();
    let segments = plain.sealed.segments_verified();
    let stop = plain.stop.take();
    drop(plain);
    let file = hashing.finish();
    let status = classify(
        stop,
        records_result,
        segments,
        file.bytes.saturating_sub(verified_input),
    );
    Ok(SessionRead {
        file,
        metadata,
        tally,
        status,
        output,
    })
}

/// Whether the file's sealed header opens with the vault's `recordings` key.
fn sealed_by_the_vault(path: &Path, recordings: &[Key32]) -> bool {
    File::open(path)
        .map(|file| SealedReader::with_keys(file, Purpose::Recordings, recordings).is_ok())
        .unwrap_or(false)
}

/// The status of a file whose sealed header could not be opened.
fn header_status(err: StreamError, head: &[u8], file_bytes: u64) -> Status {
    // An empty file or a partial header: the shim stopped before its first write completed.
    // (`head` holds the file's first bytes, at most as many as the magic.)
    let partial_header = file_bytes < HEADER_LEN as u64 && MAGIC.starts_with(head);
    match err {
        StreamError::Io(e) => Status::Unreadable(report(&e)),
        StreamError::NotSealed | StreamError::BadHeader(_) if partial_header => {
            Status::CutShort(CutShort {
                final_segment_missing: true,
                segments: 0,
                unverified_bytes: file_bytes,
                records: RecordStop::InHeader,
            })
        }
        other => Status::Damaged(Damage::Stream(other)),
    }
}

fn classify(
    stop: Option<StreamError>,
    records: Result<(), RecordError>,
    segments: u64,
    unverified_bytes: u64,
) -> Status {
    match stop {
        Some(StreamError::Truncated { .. }) => match records {
            // Malformed records before the cut are damage, whatever happened after.
            Err(e) if !e.is_cut_off() && !matches!(e, RecordError::Io(_)) => {
                Status::Damaged(Damage::Record(e))
            }
            result => Status::CutShort(CutShort {
                final_segment_missing: true,
                segments,
                unverified_bytes,
                records: RecordStop::from_result(&result),
            }),
        },
        Some(StreamError::Io(e)) => Status::Unreadable(report(&e)),
        Some(e) => Status::Damaged(Damage::Stream(e)),
        None => match records {
            Ok(()) => Status::Complete,
            Err(e) if e.is_cut_off() => Status::CutShort(CutShort {
                final_segment_missing: false,
                segments,
                unverified_bytes,
                records: RecordStop::from_result(&Err(e)),
            }),
            Err(RecordError::Io(e)) => Status::Unreadable(report(&e)),
            Err(e) => Status::Damaged(Damage::Record(e)),
        },
    }
}

/// Reads a file (no symlinks, regular files only) and hashes every byte read.
struct HashingReader {
    file: File,
    hasher: openssl::sha::Sha256,
    bytes: u64,
    /// The first bytes of the file (to recognise a partly written header).
    head: Vec<u8>,
    modified: Option<SystemTime>,
}

impl HashingReader {
    fn open(path: &Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(path)
            .map_err(|e| match FsError::io(path, e) {
                FsError::Symlink { .. } => "a symbolic link (not followed)".to_string(),
                FsError::Io { source, .. } => report(&source),
                other => other.to_string(),
            })?;
        let meta = file.metadata().map_err(|e| report(&e))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        Ok(Self {
            file,
            hasher: openssl::sha::Sha256::new(),
            bytes: 0,
            head: Vec::with_capacity(MAGIC.len()),
            modified: meta.modified().ok(),
        })
    }

    /// Reads the rest of the file into the hash and returns the facts.
    fn finish(&mut self) -> FileFacts {
        // A read error here only makes the hash cover less; the status already says why.
        let _ = io::copy(self, &mut io::sink());
        let hasher = std::mem::replace(&mut self.hasher, openssl::sha::Sha256::new());
        FileFacts {
            bytes: self.bytes,
            sha256: hasher.finish(),
            modified: self.modified,
        }
    }
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        if self.head.len() < MAGIC.len() {
            let take = (MAGIC.len() - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The verified plaintext of a sealed stream as bytes. A missing final segment reads as the end
/// of input (remembered in `stop`); other damage is an `InvalidData` error naming it.
struct VerifiedPlaintext<R: Read> {
    sealed: SealedReader<R>,
    segment: Vec<u8>,
    pos: usize,
    finished: bool,
    /// Why reading stopped before the final segment.
    stop: Option<StreamError>,
}

impl<R: Read> VerifiedPlaintext<R> {
    fn new(sealed: SealedReader<R>) -> Self {
        Self {
            sealed,
            segment: Vec::new(),
            pos: 0,
            finished: false,
            stop: None,
        }
    }

    /// Verifies the remaining segments without keeping their plaintext.
    fn drain(&mut self) {
        while !self.finished && self.stop.is_none() {
            self.next_segment();
        }
    }

    fn next_segment(&mut self) {
        self.pos = 0;
        match self.sealed.next_segment(&mut self.segment) {
            Ok(Segment::Final) => self.finished = true,
            Ok(Segment::More) => {}
            Err(e) => self.stop = Some(e),
        }
    }
}

impl<R: Read> Read for VerifiedPlaintext<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.segment.len() {
                let n = buf.len().min(self.segment.len() - self.pos);
                buf[..n].copy_from_slice(&self.segment[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &self.stop {
                Some(StreamError::Truncated { .. }) => return Ok(0),
                Some(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, report(e))),
                None if self.finished => return Ok(0),
                None => self.next_segment(),
            }
        }
    }
}
