//! `warden session export`: a recording as asciicast v2, JSON Lines or a text/hex dump (the
//! operation is `warden_shim::recording::ops::export`, which says what happens with recordings
//! that are not complete; every attempt after the sign-in is audited).

use std::path::Path;

use anyhow::Result;
use warden_core::keyring::Purpose;
use warden_core::rbac::Permission;
use warden_shim::recording::ops;
use warden_shim::recording::read::SessionError;

use super::{duration, printable, resolve, size};
use crate::cli::SessionExportArgs;
use crate::context::Context;

pub fn run(ctx: &mut Context<'_>, args: &SessionExportArgs) -> Result<()> {
    let (mut store, by) = ctx.sign_in_for(Permission::RecordingExport, "recording.export")?;
    let key = ctx.key_candidates(Purpose::Recordings)?;
    let path = resolve(&args.file, &ctx.dir()?.sessions());
    let name = printable(&path);
    let output = args.output.as_deref().unwrap_or(Path::new("-"));
    let to = match output.as_os_str() == "-" {
        true => "standard output".to_owned(),
        false => printable(output),
    };
    let format: ops::Format = args.format.into();
    let exported = ops::export(
        &mut store,
        &by,
        &key,
        &path,
        &name,
        format,
        output,
        args.recover,
        args.force,
        args.raw,
    )
    .map_err(|err| {
        let damaged = matches!(&err, ops::SessionOpError::Session(e)
            if !matches!(e, SessionError::CutShortRefused(_)));
        let err = anyhow::Error::new(err);
        match (damaged, output.as_os_str() == "-") {
            (false, _) => err,
            (true, false) => err.context(format!("nothing was written to {to}")),
            (true, true) => err.context("the export on standard output stops where the damage is"),
        }
    })?;
    let tally = exported.tally;
    let what = format!(
        "{} chunks ({} device → technician, {} technician → device, {} recorded)",
        tally.chunks,
        size(tally.output_bytes),
        size(tally.input_bytes),
        duration(tally.duration_us()),
    );
    match exported.cut_short {
        None => eprintln!("exported {name} as {}: {what} -> {to}", format.name()),
        Some(cut) => eprintln!(
            "warning: {name} was cut short: {cut}.\n\
             recovered everything that verifies: {what} -> {to}; the export ends with a line \
             saying where the recording stops"
        ),
    }
    Ok(())
}
