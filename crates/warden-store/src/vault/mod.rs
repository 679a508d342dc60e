//! Vault operations: seal, open and verify large files as sealed streams under the
//! `recordings` purpose key, each authorized and audited.
//!
//! Every operation takes the [`Authorized`] value for its permission (`vault.seal`,
//! `vault.open`, `vault.verify`) and appends one event naming the actor, the file and the
//! SHA-256 of the sealed file — whether it worked or not. A file output only appears at its
//! path once complete and verified, in the window of the transaction that records it; on
//! standard output the verified bytes already handed over stay written (a pipe cannot be taken
//! back), and the exit status says the stream was incomplete.

mod pipeline;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use warden_core::audit::Outcome;
use warden_core::fsx::{FsError, PendingFile};
use warden_core::keyring::Purpose;
use warden_core::rbac::Permission;
use warden_core::report::report;
use warden_core::secret::Key32;
use warden_core::stream::{
    self, SealedReader, SealedWriter, StreamError, StreamSummary, DEFAULT_SEGMENT_SIZE,
};

pub use pipeline::{FramesInto, ReadAhead, WriteBehind};

use crate::identity::{Authorized, WrongAuthorization};
use crate::{Store, StoreError};

/// Why a vault operation failed, sorted by cause (the binary maps each to an exit code).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Authorization(#[from] WrongAuthorization),
    /// The sealed input is damaged, truncated, under another key, or not a sealed file.
    #[error("{path}")]
    Stream {
        path: String,
        #[source]
        source: StreamError,
    },
    /// A truncated file and no `recover`.
    #[error("refusing to open {path} without --recover (which keeps the verified prefix)")]
    Truncated {
        path: String,
        #[source]
        source: StreamError,
    },
    #[error("{0} exists; pass --force to replace it")]
    Exists(String),
    #[error(transparent)]
    File(#[from] FsError),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VaultError {
    /// The underlying stream error, when the file itself is at fault.
    pub fn stream(&self) -> Option<&StreamError> {
        match self {
            Self::Stream { source, .. } | Self::Truncated { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reports progress: bytes done, and the total when known.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

/// What `seal` made.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub summary: StreamSummary,
    /// SHA-256 of the sealed file as written.
    pub sha256: [u8; 32],
}

/// What `open` produced.
#[derive(Debug, Clone)]
pub enum Opened {
    Complete {
        summary: StreamSummary,
        sha256: [u8; 32],
    },
    /// A truncated file, opened with `recover`: the verified prefix was written.
    Recovered {
        segments: u64,
        plaintext_bytes: u64,
        /// Bytes at the end of the file that could not be verified.
        unverified_bytes: u64,
        sha256: [u8; 32],
    },
}

/// What `verify` found in an intact file.
#[derive(Debug, Clone)]
pub struct Verified {
    pub summary: StreamSummary,
    pub sha256: [u8; 32],
}

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A path as audit events and messages show it (`-` is standard input or output): absolute,
/// with control characters escaped.
fn shown(path: &Path, stdio: &str) -> String {
    if is_stdio(path) {
        stdio.to_owned()
    } else {
        crate::audit::path_text(path)
    }
}

/// Opens the input — a file (with its size, for progress) or standard input — and reads it
/// ahead on another thread, so reading (and hashing) overlaps with AES-GCM.
fn open_input(path: &Path) -> Result<(ReadAhead, Option<u64>), VaultError> {
    if is_stdio(path) {
        return Ok((ReadAhead::new(io::stdin()), None));
    }
    let file = File::open(path).map_err(|source| VaultError::Io {
        what: "cannot open",
        path: path.display().to_string(),
        source,
    })?;
    let meta = file.metadata().ok();
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        return Err(VaultError::Io {
            what: "cannot read",
            path: path.display().to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "it is a directory"),
        });
    }
    let len = meta.filter(|m| m.is_file()).map(|m| m.len());
    Ok((ReadAhead::new(file), len))
}

/// Where output goes: standard output, or a file that only appears at its path once complete.
pub enum Sink {
    Stdout(io::Stdout),
    File(PendingFile),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(w) => w.write(buf),
            Self::File(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(w) => w.flush(),
            Self::File(w) => w.flush(),
        }
    }
}

/// The output, written on another thread so writing (and hashing) overlaps with AES-GCM.
pub struct Output {
    inner: WriteBehind<Sink>,
    path: PathBuf,
}

/// An output whose bytes are all written and synced, not yet at its path.
pub struct Finished {
    sink: Sink,
    path: PathBuf,
    pub sha256: [u8; 32],
}

impl Finished {
    /// Makes the output final: flushes standard output, or renames the file into place.
    pub fn commit(self) -> Result<(), VaultError> {
        match self.sink {
            Sink::Stdout(mut out) => out.flush().map_err(|source| VaultError::Io {
                what: "cannot write",
                path: "standard output".into(),
                source,
            }),
            Sink::File(file) => Ok(file.commit()?),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Output {
    /// `-` for standard output; otherwise a file that must not exist unless `force`.
    pub fn create(path: &Path, force: bool) -> Result<Self, VaultError> {
        let sink = if is_stdio(path) {
            Sink::Stdout(io::stdout())
        } else {
            if !force && path.symlink_metadata().is_ok() {
                return Err(VaultError::Exists(path.display().to_string()));
            }
            Sink::File(PendingFile::create(path)?)
        };
        Ok(Self {
            inner: WriteBehind::new(sink),
            path: path.to_path_buf(),
        })
    }

    /// Writes out everything; the result is made final by [`Finished::commit`].
    pub fn finish(self) -> Result<Finished, VaultError> {
        let path = self.path;
        let (sink, sha256) = self.inner.finish().map_err(|source| VaultError::Io {
            what: "cannot write",
            path: shown(&path, "standard output"),
            source,
        })?;
        Ok(Finished { sink, path, sha256 })
    }

    /// After a failure: a file output disappears (nothing half-written is left); on standard
    /// output the verified bytes already handed over are written out.
    pub fn abandon(self) {
        if let Ok((Sink::Stdout(mut out), _)) = self.inner.finish() {
            let _ = out.flush();
        }
    }

    /// The output as a sink for sealed frames, which are sealed straight into its buffers.
    pub fn frames(&mut self) -> FramesInto<'_, Sink> {
        FramesInto(&mut self.inner)
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn stream_error(path: &Path, source: StreamError) -> VaultError {
    VaultError::Stream {
        path: shown(path, "standard input"),
        source,
    }
}

fn failure_details(err: &VaultError) -> serde_json::Value {
    json!({ "error": report(err) })
}

// Implements: V15, V19
/// Encrypts `input` into a sealed stream at `output` (`-` for standard input / output).
/// Needs `vault.seal`. Audited as `vault.seal` with the sealed file's SHA-256.
pub fn seal(
    store: &mut Store,
    by: &Authorized,
    key: &Key32,
    input: &Path,
    output: &Path,
    force: bool,
    progress: Progress<'_>,
) -> Result<Sealed, VaultError> {
    by.check(Permission::VaultSeal)?;
    let subject = shown(output, "stdout");
    let attempt = (|| {
        let (mut reader, len) = open_input(input)?;
        let mut out = Output::create(output, force)?;
        let writer =
            SealedWriter::new(out.frames(), Purpose::Recordings, key, DEFAULT_SEGMENT_SIZE)
                .map_err(|e| stream_error(output, e))?;
        let sealed = stream::seal_from(&mut reader, writer, |n| progress(n, len));
        let (_, summary) = match sealed {
            Ok(done) => done,
            Err(e) => {
                out.abandon();
                return Err(match e {
                    StreamError::Io(source) => VaultError::Io {
                        what: "cannot seal",
                        path: shown(input, "standard input"),
                        source,
                    },
                    other => stream_error(input, other),
                });
            }
        };
        Ok((summary, out.finish()?))
    })();
    match attempt {
        Ok((summary, finished)) => {
            let sha256 = finished.sha256;
            let event = by
                .event("vault.seal", &subject, Outcome::Success)
                .with_details(json!({
                    "input": shown(input, "stdin"),
                    "sha256": hex::encode(sha256),
                    "plaintext_bytes": summary.plaintext_bytes,
                    "segments": summary.segments,
                    "file_id": hex::encode(summary.file_id),
                }));
            store.transact(|tx| {
                tx.audit_one(event)?;
                finished.commit()
            })?;
            Ok(Sealed { summary, sha256 })
        }
        Err(err) => {
            let event = by
                .event("vault.seal", &subject, Outcome::Failure)
                .with_details(failure_details(&err));
            store.append(vec![event])?;
            Err(err)
        }
    }
}

// Implements: V20
/// Verifies and decrypts the sealed stream `input` into `output` (`-` for standard input /
/// output), with whichever of `keys` (the versions of the `recordings` key held: two during a
/// rotation) its header names. A truncated file is refused unless `recover`, which writes the
/// verified prefix. Needs `vault.open`. Audited as `vault.open` with the sealed file's SHA-256.
#[allow(clippy::too_many_arguments)]
pub fn open(
    store: &mut Store,
    by: &Authorized,
    keys: &[Key32],
    input: &Path,
    output: &Path,
    recover: bool,
    force: bool,
    progress: Progress<'_>,
) -> Result<Opened, VaultError> {
    by.check(Permission::VaultOpen)?;
    let subject = shown(input, "stdin");
    let destination = shown(output, "stdout");
    let attempt = (|| {
        let (reader, len) = open_input(input)?;
        let mut reader = SealedReader::with_keys(reader, Purpose::Recordings, keys)
            .map_err(|e| stream_error(input, e))?;
        let mut out = Output::create(output, force)?;
        let result = stream::open_to(&mut reader, &mut out, |n| progress(n, len));
        let verified_input = reader.verified_input_bytes();
        let finish_hash = |reader: SealedReader<ReadAhead>| {
            reader
                .into_inner()
                .finish_sha256()
                .map_err(|source| VaultError::Io {
                    what: "cannot read",
                    path: shown(input, "standard input"),
                    source,
                })
        };
        match result {
            Ok(summary) => {
                let sha256 = finish_hash(reader)?;
                Ok((Opened::Complete { summary, sha256 }, out.finish()?))
            }
            Err(StreamError::Truncated {
                segments,
                plaintext_bytes,
            }) if recover => {
                let sha256 = finish_hash(reader)?;
                let unverified_bytes = len.map_or(0, |len| len.saturating_sub(verified_input));
                Ok((
                    Opened::Recovered {
                        segments,
                        plaintext_bytes,
                        unverified_bytes,
                        sha256,
                    },
                    out.finish()?,
                ))
            }
            Err(source @ StreamError::Truncated { .. }) => {
                out.abandon();
                Err(VaultError::Truncated {
                    path: shown(input, "standard input"),
                    source,
                })
            }
            Err(e) => {
                out.abandon();
                Err(stream_error(input, e))
            }
        }
    })();
    match attempt {
        Ok((opened, finished)) => {
            let details = match &opened {
                Opened::Complete { summary, sha256 } => json!({
                    "output": destination,
                    "sha256": hex::encode(sha256),
                    "plaintext_bytes": summary.plaintext_bytes,
                    "segments": summary.segments,
                    "file_id": hex::encode(summary.file_id),
                }),
                Opened::Recovered {
                    segments,
                    plaintext_bytes,
                    unverified_bytes,
                    sha256,
                } => json!({
                    "output": destination,
                    "sha256": hex::encode(sha256),
                    "plaintext_bytes": plaintext_bytes,
                    "segments": segments,
                    "recovered": true,
                    "unverified_bytes": unverified_bytes,
                }),
            };
            let event = by
                .event("vault.open", &subject, Outcome::Success)
                .with_details(details);
            store.transact(|tx| {
                tx.audit_one(event)?;
                finished.commit()
            })?;
            Ok(opened)
        }
        Err(err) => {
            let mut details = failure_details(&err);
            details["output"] = json!(destination);
            let event = by
                .event("vault.open", &subject, Outcome::Failure)
                .with_details(details);
            store.append(vec![event])?;
            Err(err)
        }
    }
}

/// Checks every segment of a sealed stream without writing the plaintext anywhere. Needs
/// `vault.verify`. Audited as `vault.verify` with the file's SHA-256 and the verdict.
pub fn verify(
    store: &mut Store,
    by: &Authorized,
    keys: &[Key32],
    path: &Path,
) -> Result<Verified, VaultError> {
    by.check(Permission::VaultVerify)?;
    let subject = shown(path, "stdin");
    let attempt = (|| {
        let (reader, _) = open_input(path)?;
        let mut reader = SealedReader::with_keys(reader, Purpose::Recordings, keys)
            .map_err(|e| stream_error(path, e))?;
        let summary = stream::open_to(&mut reader, &mut io::sink(), |_| {})
            .map_err(|e| stream_error(path, e))?;
        let sha256 = reader
            .into_inner()
            .finish_sha256()
            .map_err(|source| VaultError::Io {
                what: "cannot read",
                path: subject.clone(),
                source,
            })?;
        Ok(Verified { summary, sha256 })
    })();
    let event = match &attempt {
        Ok(verified) => by
            .event("vault.verify", &subject, Outcome::Success)
            .with_details(json!({
                "sha256": hex::encode(verified.sha256),
                "plaintext_bytes": verified.summary.plaintext_bytes,
                "segments": verified.summary.segments,
                "file_id": hex::encode(verified.summary.file_id),
            })),
        Err(err) => by
            .event("vault.verify", &subject, Outcome::Failure)
            .with_details(failure_details(err)),
    };
    store.append(vec![event])?;
    attempt
}
