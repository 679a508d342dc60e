//! The session recorder: a thread that takes a copy of every forwarded chunk off the data path
//! and writes it into a sealed session file, so a slow or full disk never stalls forwarding.
//!
//! The data path only queues (never blocks); the recorder seals a segment and syncs it every
//! `flush_interval`, so a crash loses at most that interval. If the recorder falls too far
//! behind, the file's budget is spent, or a write fails (disk full), it reports storage
//! exhausted — the shim then goes to EMERGENCY_STOP — and the file stays readable up to its last
//! sealed segment (`warden vault open --recover`).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use warden_core::keyring::Purpose;
use warden_core::report::report;
use warden_core::secret::Key32;
use warden_core::stream::{SealedWriter, DEFAULT_SEGMENT_SIZE};

use crate::recording::{Direction, RecordWriter, RecordingMetadata};

/// What the recorder tells the daemon.
#[derive(Debug)]
pub enum RecorderReport {
    /// Storage is exhausted (queue too deep, budget spent, or a write failed).
    Exhausted { detail: String },
    /// The session file is closed (after `close`).
    Closed(ClosedRecording),
}

/// A closed session file.
#[derive(Debug, Clone)]
pub struct ClosedRecording {
    pub path: PathBuf,
    /// SHA-256 of the sealed file as written (what goes into the audit chain).
    pub sha256: [u8; 32],
    pub file_bytes: u64,
    pub chunks: u64,
    /// False when the recording stopped early (storage exhausted): the file then ends without
    /// its final segment and opens only with `--recover`.
    pub complete: bool,
}

enum Command {
    Chunk {
        t_us: u64,
        direction: Direction,
        bytes: Vec<u8>,
    },
    Event {
        t_us: u64,
        label: String,
    },
    Close {
        t_us: u64,
    },
}

/// Settings for one session's recorder.
#[derive(Debug, Clone, Copy)]
pub struct RecorderLimits {
    pub flush_interval: Duration,
    /// Bytes the recorder may lag behind the data path.
    pub max_backlog_bytes: u64,
    /// Bytes this session file may grow to.
    pub file_budget_bytes: u64,
}

/// How often the recorder picks up queued chunks. The data path never wakes the recorder
/// thread (a context switch per forwarded byte would cost latency on small boxes); it only
/// appends to a queue that the recorder drains on this beat, and on close.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// Chunks waiting for the recorder, shared with the data path.
type Queue = Arc<Mutex<Vec<Command>>>;

// Implements: S5, S7, S8, V19
/// The data path's handle on the running recorder.
pub struct Recorder {
    queue: Queue,
    backlog: Arc<AtomicU64>,
    limits: RecorderLimits,
    exhausted: bool,
    started: Instant,
    thread: Option<JoinHandle<()>>,
}

/// A writer that hashes and counts what goes to the file.
struct HashingFile {
    file: File,
    hasher: openssl::sha::Sha256,
    written: u64,
    budget: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.budget {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "the recording budget is spent",
            ));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        // A sealed segment is only "flushed" once it is on the disk.
        self.file.sync_data()
    }
}

impl Recorder {
    /// Creates the session file (0600, must not exist) and starts the recorder thread.
    /// `reports` receives what the daemon must react to; `wake` is called after each report.
    pub fn start(
        path: &Path,
        key: &Key32,
        metadata: &RecordingMetadata,
        limits: RecorderLimits,
        reports: Sender<RecorderReport>,
        wake: impl Fn() + Send + 'static,
    ) -> io::Result<Self> {
        let file =
            warden_core::fsx::create_private_new(path).map_err(|e| io::Error::other(report(&e)))?;
        let sink = HashingFile {
            file,
            hasher: openssl::sha::Sha256::new(),
            written: 0,
            budget: limits.file_budget_bytes,
        };
        let sealed = SealedWriter::new(sink, Purpose::Recordings, key, DEFAULT_SEGMENT_SIZE)
            .map_err(io::Error::other)?;
        let mut writer = RecordWriter::new(sealed, metadata).map_err(io::Error::other)?;
        writer.get_mut().seal_segment().map_err(io::Error::other)?;
        let queue: Queue = Arc::new(Mutex::new(Vec::new()));
        let thread_queue = Arc::clone(&queue);
        let backlog = Arc::new(AtomicU64::new(0));
        let thread_backlog = Arc::clone(&backlog);
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                run(
                    writer,
                    thread_queue,
                    thread_backlog,
                    limits.flush_interval,
                    path,
                    reports,
                    wake,
                )
            })?;
        Ok(Self {
            queue,
            backlog,
            limits,
            exhausted: false,
            started: Instant::now(),
            thread: Some(thread),
        })
    }

    fn t_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Queues a copy of a forwarded chunk. Never blocks. Returns false once the backlog limit
    /// is crossed (storage exhausted: the caller stops the session).
    pub fn chunk(&mut self, direction: Direction, bytes: &[u8]) -> bool {
        if self.exhausted {
            return false;
        }
        let queued = self
            .backlog
            .fetch_add(bytes.len() as u64, Ordering::Relaxed)
            + bytes.len() as u64;
        if queued > self.limits.max_backlog_bytes {
            self.exhausted = true;
            return false;
        }
        let command = Command::Chunk {
            t_us: self.t_us(),
            direction,
            bytes: bytes.to_vec(),
        };
        self.push(command);
        true
    }

    fn push(&self, command: Command) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command);
    }

    pub fn event(&mut self, label: &str) {
        self.push(Command::Event {
            t_us: self.t_us(),
            label: label.to_string(),
        });
    }

    /// Asks the recorder to finish the file; a [`RecorderReport::Closed`] follows.
    pub fn close(mut self) {
        self.push(Command::Close { t_us: self.t_us() });
        // Wake it now rather than at its next beat; it reports and ends on its own.
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
        }
    }
}

fn run(
    mut writer: RecordWriter<SealedWriter<HashingFile>>,
    queue: Queue,
    backlog: Arc<AtomicU64>,
    flush_interval: Duration,
    path: PathBuf,
    reports: Sender<RecorderReport>,
    wake: impl Fn(),
) {
    let report = |r: RecorderReport| {
        let _ = reports.send(r);
        wake();
    };
    let mut failed: Option<String> = None;
    let mut chunks = 0u64;
    let mut dirty = false;
    let mut next_flush = Instant::now() + flush_interval;
    let mut batch = Vec::new();
    loop {
        std::thread::park_timeout(
            DRAIN_INTERVAL.min(next_flush.saturating_duration_since(Instant::now())),
        );
        std::mem::swap(
            &mut batch,
            &mut *queue.lock().unwrap_or_else(|e| e.into_inner()),
        );
        let due = Instant::now() >= next_flush;
        let mut commands: Vec<Option<Command>> = batch.drain(..).map(Some).collect();
        if due {
            commands.push(None);
        }
        for command in commands {
            let result = match command {
                None => {
                    next_flush = Instant::now() + flush_interval;
                    if dirty && failed.is_none() {
                        dirty = false;
                        writer
                            .get_mut()
                            .seal_segment()
                            .map_err(|e| warden_core::report::report(&e))
                    } else {
                        Ok(())
                    }
                }
                Some(Command::Chunk {
                    t_us,
                    direction,
                    bytes,
                }) => {
                    backlog.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
                    chunks += 1;
                    dirty = true;
                    if failed.is_some() {
                        Ok(())
                    } else {
                        writer
                            .write_chunk(t_us, direction, &bytes)
                            .map_err(|e| warden_core::report::report(&e))
                    }
                }
                Some(Command::Event { t_us, label }) => {
                    dirty = true;
                    if failed.is_some() {
                        Ok(())
                    } else {
                        writer
                            .write_event(t_us, &label)
                            .map_err(|e| warden_core::report::report(&e))
                    }
                }
                Some(Command::Close { t_us }) => {
                    let complete = failed.is_none();
                    let sink = if complete {
                        writer
                            .finish(t_us)
                            .map_err(|e| warden_core::report::report(&e))
                            .and_then(|sealed| {
                                sealed
                                    .finish()
                                    .map(|(sink, _)| sink)
                                    .map_err(|e| warden_core::report::report(&e))
                            })
                    } else {
                        Ok(writer.into_inner().into_inner())
                    };
                    let closed = match sink {
                        Ok(mut sink) => {
                            let _ = sink.flush();
                            ClosedRecording {
                                path,
                                sha256: sink.hasher.finish(),
                                file_bytes: sink.written,
                                chunks,
                                complete,
                            }
                        }
                        Err(detail) => {
                            report(RecorderReport::Exhausted { detail });
                            let sha256 = std::fs::read(&path)
                                .map(|b| openssl::sha::sha256(&b))
                                .unwrap_or([0; 32]);
                            let file_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                            ClosedRecording {
                                path,
                                sha256,
                                file_bytes,
                                chunks,
                                complete: false,
                            }
                        }
                    };
                    report(RecorderReport::Closed(closed));
                    return;
                }
            };
            if let Err(detail) = result {
                if failed.is_none() {
                    failed = Some(detail.clone());
                    report(RecorderReport::Exhausted { detail });
                }
            }
        }
    }
}
