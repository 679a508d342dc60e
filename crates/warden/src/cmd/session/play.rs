//! `warden session play`: replays what the device showed, with the recorded timing.
//!
//! The file is read twice: first to verify all of it and hash it (a damaged recording is refused
//! before anything is shown, and the audit event names the file's SHA-256), then to play it with
//! the pure [`play`](warden_shim::recording::play) timing. Output goes through the
//! [`TerminalSanitizer`] unless `--raw` is given. Ctrl-C (or SIGTERM) stops between two writes,
//! puts the terminal back, and exits with code 130; a second Ctrl-C exits at once.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::json;
use warden_core::keyring::Purpose;
use warden_core::rbac::Permission;
use warden_shim::recording::read::Records;
use warden_shim::recording::sanitize::TerminalSanitizer;
use warden_shim::recording::{ops, play, PlayOptions, RecordError, RecordingMetadata};

use super::{duration, printable, resolve, start_time};
use crate::cli::PlayArgs;
use crate::context::Context;

/// The longest sleep between two checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(50);

/// The replay was stopped by Ctrl-C; `main` prints this without `error:` and exits 130.
#[derive(Debug, thiserror::Error)]
#[error("replay stopped by Ctrl-C at {at} of {total}")]
pub struct Interrupted {
    at: String,
    total: String,
}

/// How a replay ended.
enum Ended {
    /// All the records that verify were played.
    Played,
    /// Stopped by a signal after the step recorded at this time.
    Interrupted { at_us: u64 },
    /// Standard output was closed (e.g. piped into `head`).
    OutputClosed,
}

pub fn run(ctx: &mut Context<'_>, args: &PlayArgs) -> Result<()> {
    let (mut store, by) = ctx.sign_in_for(Permission::RecordingPlay, "recording.play")?;
    let key = ctx.key_candidates(Purpose::Recordings)?;
    let path = resolve(&args.file, &ctx.dir()?.sessions());
    let name = printable(&path);
    let mut options = PlayOptions::new(args.speed)?.include_input(args.include_input);
    if let Some(limit) = args.skip_idle {
        options = options.idle_limit(limit);
    }

    // First pass (in the operation): verify and hash everything before showing anything.
    let playback = ops::play(
        &mut store,
        &by,
        &key,
        &path,
        &name,
        json!({
            "speed": args.speed,
            "skip_idle_s": args.skip_idle.map(|d| d.as_secs_f64()),
            "include_input": args.include_input,
            "sanitized": !args.raw,
        }),
    )?;
    let tally = playback.tally;
    let cut_short = playback.cut_short.clone();
    eprintln!(
        "{}",
        header(
            &playback.metadata,
            tally.duration_us(),
            args,
            cut_short.is_some()
        )
    );
    if let Some(problem) = &cut_short {
        eprintln!(
            "warning: {name} was cut short; only the {} chunks that verify ({} of recorded time) will play: {problem}",
            tally.chunks,
            duration(tally.duration_us())
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is being handled ends the process at once.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .context("cannot handle Ctrl-C")?;
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("cannot handle Ctrl-C")?;
    }
    let played = playback.replay(|records| replay(records, options, !args.raw, &stop))?;
    match played? {
        Some(Ended::Interrupted { at_us }) => {
            return Err(Interrupted {
                at: duration(at_us),
                total: duration(tally.duration_us()),
            }
            .into())
        }
        Some(Ended::OutputClosed) => return Ok(()),
        Some(Ended::Played) | None => {}
    }
    if cut_short.is_some() {
        eprintln!("end of what verifies: the recording was cut short here");
    }
    Ok(())
}

/// `session 6f96…: tech-001 on empump-12 via shim-a, 2026-04-15 09:22:03 UTC, 0:12:31 — …`
fn header(metadata: &RecordingMetadata, duration_us: u64, args: &PlayArgs, cut: bool) -> String {
    let mut line = format!(
        "session {}: {} on {} via {}, started {} UTC, {}{}; speed {}×",
        metadata.session_id().hyphenated(),
        metadata.technician_id(),
        metadata.device_name(),
        metadata.shim_id(),
        start_time(metadata.started_at()),
        duration(duration_us),
        if cut { " (CUT SHORT)" } else { "" },
        args.speed,
    );
    if let Some(limit) = args.skip_idle {
        line.push_str(&format!(", pauses capped at {}s", limit.as_secs_f64()));
    }
    if args.include_input {
        line.push_str(", with input");
    }
    line.push_str(if args.raw {
        ", RAW (escape sequences unfiltered)"
    } else {
        ""
    });
    line.push_str("; Ctrl-C stops");
    line
}

/// Plays `records` to standard output; returns how it ended and how the records ended.
fn replay(
    records: &mut Records<'_>,
    options: PlayOptions,
    sanitize: bool,
    stop: &AtomicBool,
) -> Result<(Ended, Result<(), RecordError>)> {
    let mut out = io::stdout().lock();
    let mut sanitizer = sanitize.then(TerminalSanitizer::new);
    let mut buf = Vec::new();
    let mut result = Ok(());
    let mut ended = Ended::Played;
    let mut shown_us = 0;
    for step in play(&mut *records, options) {
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if !wait(step.delay, stop) {
            ended = Ended::Interrupted { at_us: shown_us };
            break;
        }
        buf.clear();
        match &mut sanitizer {
            Some(s) => s.feed(&step.data, &mut buf),
            None => buf.extend_from_slice(&step.data),
        }
        match write(&mut out, &buf) {
            Ok(()) => shown_us = step.t_us,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                return Ok((Ended::OutputClosed, result));
            }
            Err(e) => return Err(anyhow::Error::new(e).context("cannot write to the terminal")),
        }
    }
    if let Some(mut s) = sanitizer {
        buf.clear();
        s.finish(&mut buf);
        match write(&mut out, &buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(anyhow::Error::new(e).context("cannot write to the terminal")),
        }
    }
    Ok((ended, result))
}

fn write(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// Sleeps for `delay`, watching `stop`; false if it was set.
fn wait(delay: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + delay;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(POLL));
    }
}
