//! The recording operations behind `warden session`: list, play, export — each authorized
//! (`recording.list`, `recording.play`, `recording.export`) and audited with who read which
//! file, its SHA-256 and the state it was in. Every reading goes through
//! [`read::read_session`], so only verified bytes are ever decoded.
//!
//! | recording | play | export |
//! |---|---|---|
//! | complete | played | written |
//! | cut short | what verifies, then says where it stops | what verifies, with a closing line; refused (exit 3) unless `recover` |
//! | damaged, wrong key, unreadable | refused | refused; a file output is removed |

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use warden_core::audit::{NewEvent, Outcome};
use warden_core::rbac::Permission;
use warden_core::secret::Key32;
use warden_store::identity::{Authorized, WrongAuthorization};
use warden_store::vault::{Output, VaultError};
use warden_store::{Store, StoreError};

use super::read::{self, Records, SessionError, SessionRead, Status};
use super::{
    write_asciicast, write_dump, write_jsonl, AsciicastOptions, ExportError, ExportSummary,
    RecordError, RecordingMetadata,
};

#[derive(Debug, thiserror::Error)]
pub enum SessionOpError {
    #[error(transparent)]
    Authorization(#[from] WrongAuthorization),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("cannot list {dir}")]
    List {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Output(#[from] VaultError),
    #[error("writing the export failed")]
    Write(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One recording as `session list` shows it.
pub struct Listed {
    pub name: String,
    pub path: PathBuf,
    pub read: SessionRead<()>,
}

/// Reads and verifies every file in `dir` (hidden ones aside). Needs `recording.list`; audited once as
/// `recording.list` with how many files were found in each state.
pub fn list(
    store: &mut Store,
    by: &Authorized,
    key: &[Key32],
    dir: &Path,
) -> Result<Vec<Listed>, SessionOpError> {
    by.check(Permission::RecordingList)?;
    let listing_error = |source| SessionOpError::List {
        dir: dir.display().to_string(),
        source,
    };
    let mut listed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing_error)? {
        let entry = entry.map_err(listing_error)?;
        // Hidden names are not recordings: a temporary a killed key rotation left
        // (`.NAME.<12 hex>.tmp`, removed when the rotation runs again) would be listed twice.
        if entry.file_name().as_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        let read = read::read_session(&path, key, |_, records| {
            Ok::<_, SessionOpError>(((), read::drain(records)))
        })?;
        listed.push(Listed {
            name: entry.file_name().to_string_lossy().into_owned(),
            path,
            read,
        });
    }
    let count = |state: &str| {
        listed
            .iter()
            .filter(|l| l.read.status.json_name() == state)
            .count()
    };
    let event = by
        .event(
            "recording.list",
            dir.display().to_string(),
            Outcome::Success,
        )
        .with_details(json!({
            "files": listed.len(),
            "complete": count("complete"),
            "cut_short": count("cut_short"),
            "damaged": count("damaged"),
            "unreadable": count("unreadable"),
        }));
    store.append(vec![event])?;
    Ok(listed)
}

/// The audit event for reading `path`: who, which file and its SHA-256, which session, what
/// state it was in, plus `extra` details.
fn reading_event<T>(
    by: &Authorized,
    action: &str,
    path: &Path,
    read: &SessionRead<T>,
    outcome: Outcome,
    extra: serde_json::Value,
) -> NewEvent {
    let mut details = json!({
        "sha256": hex::encode(read.file.sha256),
        "file_bytes": read.file.bytes,
        "session_id": read.metadata.as_ref().map(|m| m.session_id().hyphenated().to_string()),
        "status": read.status.json_name(),
        "problem": read.status.problem(),
        "chunks": read.tally.chunks,
    });
    if let (Some(details), serde_json::Value::Object(extra)) = (details.as_object_mut(), extra) {
        details.extend(extra);
    }
    by.event(action, warden_store::audit::path_text(path), outcome)
        .with_details(details)
}

/// A recording verified for replay; [`Playback::replay`] reads it again for the terminal.
pub struct Playback {
    path: PathBuf,
    name: String,
    key: Vec<Key32>,
    pub metadata: RecordingMetadata,
    /// What the verifying pass found: the duration and chunks that will play.
    pub tally: read::Tally,
    /// Why the recording stops early, when it was cut short.
    pub cut_short: Option<String>,
}

// Implements: V20
/// Verifies and hashes the whole recording before anything is shown. Needs
/// `recording.play`; audited as `recording.play` (with `details`, e.g. speed) whether the
/// recording can be played or not.
pub fn play(
    store: &mut Store,
    by: &Authorized,
    key: &[Key32],
    path: &Path,
    name: &str,
    details: serde_json::Value,
) -> Result<Playback, SessionOpError> {
    by.check(Permission::RecordingPlay)?;
    let scan = read::read_session(path, key, |_, records| {
        Ok::<_, SessionOpError>(((), read::drain(records)))
    })?;
    let refused = scan.metadata.is_none()
        || matches!(scan.status, Status::Damaged(_) | Status::Unreadable(_));
    let event = reading_event(
        by,
        "recording.play",
        path,
        &scan,
        if refused {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        details,
    );
    store.append(vec![event])?;
    let cut_short = match &scan.status {
        Status::CutShort(cut) => Some(cut.to_string()),
        _ => None,
    };
    let metadata = match (scan.status, scan.metadata) {
        (status @ (Status::Damaged(_) | Status::Unreadable(_)), _) => {
            return Err(status
                .into_error(name)
                .expect("damaged or unreadable")
                .into())
        }
        (_, Some(metadata)) => metadata,
        (_, None) => {
            return Err(SessionError::CutShortRefused(format!(
                "{name} was cut short and holds nothing to play: {}",
                cut_short.unwrap_or_default()
            ))
            .into())
        }
    };
    Ok(Playback {
        path: path.to_path_buf(),
        name: name.to_owned(),
        key: key.to_vec(),
        metadata,
        tally: scan.tally,
        cut_short,
    })
}

impl Playback {
    /// Reads the recording again, handing its records to `show`, which returns how the showing
    /// ended. If the file changed since it was verified, says so.
    pub fn replay<T, E>(
        self,
        show: impl FnOnce(&mut Records<'_>) -> Result<(T, Result<(), RecordError>), E>,
    ) -> Result<Result<Option<T>, SessionError>, E> {
        let played = read::read_session(&self.path, &self.key, |_, records| show(records))?;
        Ok(match played.status.into_error(&self.name) {
            Some(err) => Err(SessionError::ChangedWhilePlaying {
                name: self.name,
                source: Box::new(err),
            }),
            None => Ok(played.output),
        })
    }
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// asciicast v2, for `asciinema play`.
    Asciicast,
    /// JSON Lines: lossless, for tools.
    Jsonl,
    /// A lossless text/hex dump, for people and grep.
    Text,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Asciicast => "asciicast",
            Self::Jsonl => "jsonl",
            Self::Text => "text",
        }
    }
}

/// What an export wrote.
pub struct Exported {
    pub tally: read::Tally,
    /// `Some(why)` when the recording was cut short (and `recover` accepted it).
    pub cut_short: Option<String>,
}

// Implements: V54
/// Writes the recording at `path` as `format` to `output` (`-` for standard output; a file is
/// created 0600 and appears only once complete). An asciicast export goes through the terminal
/// sanitizer unless `raw` (JSON Lines and the text dump escape every byte and are never
/// sanitized). Needs `recording.export`; audited as `recording.export` whether it worked or not,
/// with whether the export was sanitized.
#[allow(clippy::too_many_arguments)]
pub fn export(
    store: &mut Store,
    by: &Authorized,
    key: &[Key32],
    path: &Path,
    name: &str,
    format: Format,
    output: &Path,
    recover: bool,
    force: bool,
    raw: bool,
) -> Result<Exported, SessionOpError> {
    by.check(Permission::RecordingExport)?;
    let to_file = output.as_os_str() != "-";
    let destination = if to_file {
        warden_store::audit::path_text(output)
    } else {
        "stdout".to_owned()
    };
    let mut out = Output::create(output, force)?;
    let exported = read::read_session(path, key, |metadata, records| {
        let result = match format {
            Format::Asciicast => write_asciicast(
                metadata,
                &mut *records,
                &mut out,
                &AsciicastOptions {
                    sanitize: !raw,
                    ..AsciicastOptions::default()
                },
            ),
            Format::Jsonl => write_jsonl(metadata, &mut *records, &mut out),
            Format::Text => write_dump(metadata, &mut *records, &mut out),
        };
        match result {
            Ok(summary) => Ok((summary, Ok(()))),
            Err(ExportError::Record { source, .. }) => Ok((ExportSummary::default(), Err(source))),
            Err(ExportError::Write(e)) => Err(SessionOpError::Write(e)),
        }
    })?;
    let written = matches!(exported.status, Status::Complete | Status::CutShort(_))
        && exported.output.is_some();
    let event = reading_event(
        by,
        "recording.export",
        path,
        &exported,
        if written {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        json!({
            "format": format.name(),
            "output": destination,
            "recover": recover,
            "sanitized": format == Format::Asciicast && !raw,
        }),
    );
    let tally = exported.tally;
    let cut_short = match &exported.status {
        Status::CutShort(cut) => Some(cut.to_string()),
        _ => None,
    };
    let refusal =
        match exported.status {
            Status::Complete => None,
            Status::CutShort(cut) if !written => Some(SessionError::CutShortRefused(format!(
                "{name} was cut short and holds nothing to export: {cut}"
            ))),
            Status::CutShort(_) if recover => None,
            Status::CutShort(cut) => Some(SessionError::CutShortRefused(format!(
            "{name} was cut short: {cut}. Exported everything that verifies, {} chunks, to {}, \
             ending with a line saying where the recording stops; pass --recover to accept a \
             partial export",
            tally.chunks,
            if to_file { destination.as_str() } else { "standard output" }
        ))),
            status => status.into_error(name),
        };
    if written {
        // The output appears in the transaction that records the export (a cut-short export
        // is kept too: it is what verifies, and it says where it stops).
        let finished = out.finish()?;
        store.transact(|tx| {
            tx.audit_one(event)?;
            finished.commit().map_err(SessionOpError::from)
        })?;
    } else {
        out.abandon();
        store.append(vec![event])?;
    }
    match refusal {
        Some(err) => Err(err.into()),
        None => Ok(Exported { tally, cut_short }),
    }
}
