//! `warden vault`: seal, open and verify files as sealed streams under the `recordings` key.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use warden_core::fsx::PendingFile;
use warden_core::keyring::Purpose;
use warden_core::secret::Key32;
use warden_core::stream::{
    self, SealedReader, SealedWriter, StreamError, StreamSummary, DEFAULT_SEGMENT_SIZE,
};

use crate::cli::{GlobalArgs, VaultCommand};
use crate::keys::Unlocker;
use crate::pipeline::{FramesInto, ReadAhead, WriteBehind};

pub fn run(cmd: &VaultCommand, global: &GlobalArgs) -> Result<()> {
    let mut unlocker = Unlocker::open(global)?;
    let key = unlocker.key(Purpose::Recordings)?;
    match cmd {
        VaultCommand::Seal { input, output, force } => {
            let summary = seal_file(&key, input, output, *force)?;
            eprintln!(
                "sealed {} bytes in {} segments -> {}",
                summary.plaintext_bytes,
                summary.segments,
                output.display()
            );
        }
        VaultCommand::Open {
            input,
            output,
            recover,
            force,
        } => match open_file(&key, input, output, *recover, *force)? {
            Opened::Complete(summary) => eprintln!(
                "opened and verified {} bytes in {} segments -> {}",
                summary.plaintext_bytes,
                summary.segments,
                output.display()
            ),
            Opened::Recovered {
                segments,
                plaintext_bytes,
                unverified_bytes,
            } => eprintln!(
                "warning: {} was truncated (its final segment is missing).\n\
                 recovered the verified prefix: {plaintext_bytes} bytes in {segments} segments -> {}\n\
                 lost: everything after that; {unverified_bytes} bytes at the end of the file could not be verified",
                input.display(),
                output.display()
            ),
        },
        VaultCommand::Verify { file } => {
            let summary = verify_file(&key, file)?;
            println!(
                "OK {}: {} bytes in {} segments, all authentic, file id {}",
                file.display(),
                summary.plaintext_bytes,
                summary.segments,
                hex::encode(summary.file_id)
            );
        }
    }
    Ok(())
}

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Opens the input — a file (with its size, for progress) or standard input — and reads it
/// ahead on another thread, so reading overlaps with AES-GCM.
fn open_input(path: &Path) -> Result<(ReadAhead, Option<u64>)> {
    if is_stdio(path) {
        return Ok((ReadAhead::new(io::stdin()), None));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    Ok((ReadAhead::new(file), len))
}

/// Where output goes: standard output, or a file that only appears at its path once complete.
pub(crate) enum Sink {
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

/// The output, written on another thread so writing overlaps with AES-GCM.
pub(crate) struct Output(WriteBehind<Sink>);

impl Output {
    pub(crate) fn create(path: &Path, force: bool) -> Result<Self> {
        if is_stdio(path) {
            return Ok(Self(WriteBehind::new(Sink::Stdout(io::stdout()))));
        }
        if !force && path.symlink_metadata().is_ok() {
            bail!("{} exists; pass --force to replace it", path.display());
        }
        Ok(Self(WriteBehind::new(Sink::File(PendingFile::create(
            path,
        )?))))
    }

    /// After a failure: a file output disappears (nothing half-written is left); on standard
    /// output the verified bytes already handed over are written out (a pipe cannot be taken
    /// back, and the exit status says the stream was incomplete).
    pub(crate) fn abandon(self) {
        if let Ok(Sink::Stdout(mut out)) = self.0.finish() {
            let _ = out.flush();
        }
    }

    /// Makes the output final: flushes standard output, or renames the file into place.
    pub(crate) fn commit(self) -> Result<()> {
        match self.0.finish()? {
            Sink::Stdout(mut out) => out.flush()?,
            Sink::File(file) => file.commit()?,
        }
        Ok(())
    }
}

impl Output {
    /// The output as a sink for sealed frames, which are sealed straight into its buffers.
    pub(crate) fn frames(&mut self) -> FramesInto<'_, Sink> {
        FramesInto(&mut self.0)
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

pub fn seal_file(key: &Key32, input: &Path, output: &Path, force: bool) -> Result<StreamSummary> {
    let (mut reader, len) = open_input(input)?;
    let mut out = Output::create(output, force)?;
    let bar = crate::progress::bytes(len, "sealing");
    let writer = SealedWriter::new(out.frames(), Purpose::Recordings, key, DEFAULT_SEGMENT_SIZE)?;
    let (_, summary) = stream::seal_from(&mut reader, writer, |n| {
        if let Some(bar) = &bar {
            bar.set_position(n)
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    out.commit()?;
    Ok(summary)
}

/// What `open` produced.
pub enum Opened {
    Complete(StreamSummary),
    Recovered {
        segments: u64,
        plaintext_bytes: u64,
        unverified_bytes: u64,
    },
}

pub fn open_file(
    key: &Key32,
    input: &Path,
    output: &Path,
    recover: bool,
    force: bool,
) -> Result<Opened> {
    let (reader, len) = open_input(input)?;
    let mut reader = SealedReader::new(reader, Purpose::Recordings, key)
        .with_context(|| format!("cannot open {}", input.display()))?;
    let mut out = Output::create(output, force)?;
    let bar = crate::progress::bytes(len, "opening");
    let result = stream::open_to(&mut reader, &mut out, |n| {
        if let Some(bar) = &bar {
            bar.set_position(n)
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(summary) => {
            out.commit()?;
            Ok(Opened::Complete(summary))
        }
        Err(StreamError::Truncated {
            segments,
            plaintext_bytes,
        }) if recover => {
            out.commit()?;
            let unverified_bytes =
                len.map_or(0, |len| len.saturating_sub(reader.verified_input_bytes()));
            Ok(Opened::Recovered {
                segments,
                plaintext_bytes,
                unverified_bytes,
            })
        }
        Err(err @ StreamError::Truncated { .. }) => {
            out.abandon();
            Err(anyhow::Error::new(err).context(format!(
                "refusing to open {} (use --recover to keep the verified prefix)",
                input.display()
            )))
        }
        Err(err) => {
            out.abandon();
            Err(anyhow::Error::new(err).context(format!("{} is damaged", input.display())))
        }
    }
}

pub fn verify_file(key: &Key32, path: &Path) -> Result<StreamSummary> {
    let (reader, _) = open_input(path)?;
    let mut reader = SealedReader::new(reader, Purpose::Recordings, key)
        .with_context(|| format!("cannot verify {}", path.display()))?;
    stream::open_to(&mut reader, &mut io::sink(), |_| {}).map_err(|err| {
        anyhow::Error::new(err).context(format!("{} failed verification", path.display()))
    })
}
