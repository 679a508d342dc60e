//! A recording (treatment video, any large stream) sealed as the application writes it, and
//! read back for playback, so plaintext never reaches the disk.
//!
//! [`RecordingWriter`] seals what it is given into the sealed-stream format of
//! `docs/formats/sealed-stream.md` (the `recordings` key, a fresh data key per file, 64 KiB
//! segments) in a file that appears at its path only when [`RecordingWriter::finish`] commits
//! it — in the transaction that appends its `vault.seal` event with the file's SHA-256, as
//! `warden vault seal` does. [`RecordingReader`] verifies each segment before handing it out;
//! opening is audited as `vault.open`.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use warden_core::audit::Outcome;
use warden_core::fsx::PendingFile;
use warden_core::keyring::Purpose;
use warden_core::mac::Sha256;
use warden_core::rbac::Permission;
use warden_core::secret::Key32;
use warden_core::stream::{SealedReader, SealedWriter, StreamSummary, DEFAULT_SEGMENT_SIZE};
use warden_store::audit::path_text;
use warden_store::identity::Authorized;
use warden_store::Store;

use crate::RecordsError;

/// The sealed file as it is written: hashed on the way out.
struct Hashing {
    file: PendingFile,
    sha256: Sha256,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha256.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// What a finished recording is.
#[derive(Debug, Clone)]
pub struct SealedRecording {
    pub summary: StreamSummary,
    /// SHA-256 of the sealed file, as recorded in the audit chain.
    pub sha256: [u8; 32],
    pub path: PathBuf,
}

/// Seals a stream as it is written. Made by [`RecordingWriter::create`].
pub struct RecordingWriter {
    writer: SealedWriter<Hashing>,
    path: PathBuf,
    by: Authorized,
}

impl RecordingWriter {
    /// Starts a sealed file at `path` (which must not exist unless `force`). Needs
    /// `vault.seal` and the `recordings` key.
    pub fn create(
        by: &Authorized,
        key: &Key32,
        path: &Path,
        force: bool,
    ) -> Result<Self, RecordsError> {
        by.check(Permission::VaultSeal)?;
        if !force && path.symlink_metadata().is_ok() {
            return Err(RecordsError::Io {
                what: format!("{}", path.display()),
                source: io::Error::new(io::ErrorKind::AlreadyExists, "the file exists"),
            });
        }
        let file = PendingFile::create(path)?;
        let sink = Hashing {
            file,
            sha256: Sha256::new(),
        };
        let writer = SealedWriter::new(sink, Purpose::Recordings, key, DEFAULT_SEGMENT_SIZE)?;
        Ok(Self {
            writer,
            path: path.to_path_buf(),
            by: by.clone(),
        })
    }

    /// Seals `data` (whole segments go to the file as they fill).
    pub fn write(&mut self, data: &[u8]) -> Result<(), RecordsError> {
        Ok(self.writer.write_plaintext(data)?)
    }

    /// Seals what is buffered as a short segment and flushes, so everything written so far
    /// survives a crash (a later reader reports the file as truncated after it).
    pub fn checkpoint(&mut self) -> Result<(), RecordsError> {
        Ok(self.writer.seal_segment()?)
    }

    pub fn plaintext_bytes(&self) -> u64 {
        self.writer.plaintext_bytes()
    }

    /// Writes the final segment and makes the file appear at its path in the transaction that
    /// appends `vault.seal` with its SHA-256.
    pub fn finish(self, store: &mut Store) -> Result<SealedRecording, RecordsError> {
        let Self { writer, path, by } = self;
        let (sink, summary) = writer.finish()?;
        let Hashing { mut file, sha256 } = sink;
        file.flush().map_err(|source| RecordsError::Io {
            what: path.display().to_string(),
            source,
        })?;
        let sha256 = sha256.finish();
        let event = by
            .event("vault.seal", path_text(&path), Outcome::Success)
            .with_details(json!({
                "input": "application stream",
                "sha256": hex::encode(sha256),
                "plaintext_bytes": summary.plaintext_bytes,
                "segments": summary.segments,
                "file_id": hex::encode(summary.file_id),
            }));
        store.transact(|tx| {
            tx.audit_one(event)?;
            file.commit()?;
            Ok::<_, RecordsError>(())
        })?;
        Ok(SealedRecording {
            summary,
            sha256,
            path,
        })
    }

    /// Gives the recording up: nothing appears at its path; the attempt is audited.
    pub fn abandon(self, store: &mut Store, why: &str) -> Result<(), RecordsError> {
        // The reason is the application's text: at most 200 characters reach the trail.
        let why: String = why.chars().take(200).collect();
        let event = self
            .by
            .event("vault.seal", path_text(&self.path), Outcome::Failure)
            .with_details(json!({ "input": "application stream", "error": why,
                                   "plaintext_bytes": self.writer.plaintext_bytes() }));
        drop(self.writer);
        store.append(vec![event])?;
        Ok(())
    }
}

/// Reads a sealed file back, each segment verified before it is handed out.
pub struct RecordingReader {
    reader: SealedReader<BufReader<File>>,
}

impl RecordingReader {
    /// Opens `path` for playback. Needs `vault.open` and the `recordings` key; audited as
    /// `vault.open` (a file that does not open is audited as a failure).
    pub fn open(
        store: &mut Store,
        by: &Authorized,
        key: &Key32,
        path: &Path,
    ) -> Result<Self, RecordsError> {
        by.check(Permission::VaultOpen)?;
        let opened = File::open(path)
            .map_err(|source| RecordsError::Io {
                what: format!("opening {}", path.display()),
                source,
            })
            .and_then(|file| {
                Ok(SealedReader::new(
                    BufReader::with_capacity(256 * 1024, file),
                    Purpose::Recordings,
                    key,
                )?)
            });
        let (outcome, details) = match &opened {
            Ok(reader) => (
                Outcome::Success,
                json!({ "output": "application playback",
                        "file_id": hex::encode(reader.header().file_id) }),
            ),
            Err(err) => (
                Outcome::Failure,
                json!({ "output": "application playback",
                        "error": warden_core::report::report(err) }),
            ),
        };
        let event = by
            .event("vault.open", path_text(path), outcome)
            .with_details(details);
        store.append(vec![event])?;
        Ok(Self { reader: opened? })
    }

    /// Plaintext bytes verified so far.
    pub fn plaintext_bytes(&self) -> u64 {
        self.reader.plaintext_bytes()
    }
}

impl Read for RecordingReader {
    /// Verified plaintext; damage or truncation is an `InvalidData` error (the stream error
    /// inside says which).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}
