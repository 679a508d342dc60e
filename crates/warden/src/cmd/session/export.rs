//! `warden session export`: a recording as asciicast v2, JSON Lines or a text/hex dump, through
//! the exporters of `warden_shim::recording`.
//!
//! The output file is created 0600 and only appears at its path once complete. What happens
//! with a recording that is not complete mirrors `warden vault open --recover`:
//!
//! | recording | output | exit |
//! |---|---|---|
//! | complete | written | 0 |
//! | cut short | what verifies, ending with a line that says where it stops | 3, or 0 with a warning under `--recover` |
//! | damaged, wrong key, unreadable | none (a file output is removed) | 3 damaged, 4 wrong key, 1 unreadable |
//!
//! Every attempt after the sign-in is audited with the file's SHA-256 and the format.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde_json::json;
use warden_core::audit::Outcome;
use warden_core::keyring::Purpose;
use warden_core::rbac::Permission;
use warden_shim::recording::{
    write_asciicast, write_dump, write_jsonl, AsciicastOptions, ExportError, ExportSummary,
};

use super::read::{self, Status};
use super::{audit_event, duration, printable, resolve, size, CutShortRefused};
use crate::cli::{GlobalArgs, SessionExportArgs, SessionFormat};
use crate::cmd::vault::Output;
use crate::keys::Unlocker;

pub fn run(global: &GlobalArgs, args: &SessionExportArgs) -> Result<()> {
    let mut unlocker = Unlocker::open(global)?;
    let (mut session, allowed) = crate::cmd::user::sign_in_for_with(
        &mut unlocker,
        &args.actor,
        Permission::RecordingExport,
        "recording.export",
    )?;
    let key = unlocker.key(Purpose::Recordings)?;
    let path = resolve(&args.file, &unlocker.dir.sessions());
    let name = printable(&path);
    let destination = args
        .output
        .as_ref()
        .filter(|p| p.as_os_str() != "-")
        .map(|p| printable(p));
    let mut out = Output::create(args.output.as_deref().unwrap_or(Path::new("-")), args.force)?;

    let exported = read::read_session(&path, &key, |metadata, records| {
        let result = match args.format {
            SessionFormat::Asciicast => write_asciicast(
                metadata,
                &mut *records,
                &mut out,
                &AsciicastOptions::default(),
            ),
            SessionFormat::Jsonl => write_jsonl(metadata, &mut *records, &mut out),
            SessionFormat::Text => write_dump(metadata, &mut *records, &mut out),
        };
        match result {
            Ok(summary) => Ok((summary, Ok(()))),
            Err(ExportError::Record { source, .. }) => Ok((ExportSummary::default(), Err(source))),
            Err(ExportError::Write(e)) => {
                Err(anyhow::Error::new(e).context("writing the export failed"))
            }
        }
    })?;

    let written = matches!(exported.status, Status::Complete | Status::CutShort(_))
        && exported.output.is_some();
    let event = audit_event(
        allowed.actor_name(),
        "recording.export",
        &path,
        &exported,
        if written {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        json!({
            "format": args.format.name(),
            "output": destination.clone().unwrap_or_else(|| "stdout".into()),
            "recover": args.recover,
        }),
    );
    if written {
        out.flush()?;
        out.commit()?;
    }
    // Audited whether or not it worked: who tried to take which recording out matters too.
    unlocker.audit_log()?.append(&mut session.db, vec![event])?;

    let to = destination.as_deref().unwrap_or("standard output");
    let tally = exported.tally;
    let what = format!(
        "{} chunks ({} device → technician, {} technician → device, {} recorded)",
        tally.chunks,
        size(tally.output_bytes),
        size(tally.input_bytes),
        duration(tally.duration_us()),
    );
    match exported.status {
        Status::Complete => {
            eprintln!("exported {name} as {}: {what} -> {to}", args.format.name());
            Ok(())
        }
        Status::CutShort(cut) if !written => Err(CutShortRefused(format!(
            "{name} was cut short and holds nothing to export: {cut}"
        ))
        .into()),
        Status::CutShort(cut) if args.recover => {
            eprintln!(
                "warning: {name} was cut short: {cut}.\n\
                 recovered everything that verifies: {what} -> {to}; the export ends with a line \
                 saying where the recording stops"
            );
            Ok(())
        }
        Status::CutShort(cut) => Err(CutShortRefused(format!(
            "{name} was cut short: {cut}. Exported everything that verifies, {what}, to {to}, \
             ending with a line saying where the recording stops; pass --recover to accept a \
             partial export"
        ))
        .into()),
        status => {
            let err = status.into_error(&name).expect("damaged or unreadable");
            Err(match &destination {
                Some(out) => err.context(format!("nothing was written to {out}")),
                None => err.context("the export on standard output stops where the damage is"),
            })
        }
    }
}
