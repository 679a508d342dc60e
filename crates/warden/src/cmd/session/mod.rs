//! `warden session`: the shim's session recordings (DATA_DIR/sessions) — list them, replay one
//! in the terminal, export one as asciicast, JSON Lines or a text dump.
//!
//! The operations are `warden_shim::recording::ops`: every file is verified segment by segment
//! and only verified bytes are decoded; each command signs the person in (`recording.list`,
//! `recording.play`, `recording.export`) and appends who read which file (and its SHA-256) to
//! the audit chain. This module renders.

mod export;
mod list;
mod play;

use std::path::{Component, Path, PathBuf};

use anyhow::Result;
use time::OffsetDateTime;

use crate::cli::SessionCommand;
use crate::context::Context;

pub use play::Interrupted;

pub fn run(cmd: &SessionCommand, ctx: &mut Context<'_>) -> Result<()> {
    match cmd {
        SessionCommand::List { json } => list::run(ctx, *json),
        SessionCommand::Play(args) => play::run(ctx, args),
        SessionCommand::Export(args) => export::run(ctx, args),
    }
}

/// FILE as given if something is there; otherwise a bare file name is looked up in
/// DATA_DIR/sessions.
fn resolve(file: &Path, sessions: &Path) -> PathBuf {
    if file.symlink_metadata().is_ok() {
        return file.to_path_buf();
    }
    let mut components = file.components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(name)), None) => sessions.join(name),
        _ => file.to_path_buf(),
    }
}

/// A path safe to print (see [`super::printable`]).
fn printable(path: &Path) -> String {
    super::printable(&path.display().to_string())
}

/// `H:MM:SS` of a time in microseconds.
fn duration(t_us: u64) -> String {
    let secs = t_us / 1_000_000;
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `2026-04-15 09:22:03` (UTC).
fn start_time(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.format(&format).unwrap_or_else(|_| "?".into())
}

/// `2026-04-15T09:22:03.123456Z`, as in the recording's metadata.
fn rfc3339(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&format).unwrap_or_else(|_| "?".into())
}

/// `512 B`, `12.3 KiB`, `4.0 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(duration(0), "0:00:00");
        assert_eq!(duration(3_723_999_999), "1:02:03");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(12_595), "12.3 KiB");
        assert_eq!(size(4 * 1024 * 1024), "4.0 MiB");
        assert_eq!(
            printable(Path::new("a\u{1b}]0;x\u{7}\u{202e}b")),
            "a\\u{1b}]0;x\\u{7}\\u{202e}b"
        );
    }

    #[test]
    fn bare_names_are_looked_up_in_the_sessions_directory() {
        let sessions = Path::new("/data/sessions");
        assert_eq!(
            resolve(Path::new("no-such-file.session"), sessions),
            sessions.join("no-such-file.session")
        );
        assert_eq!(
            resolve(Path::new("elsewhere/x.session"), sessions),
            Path::new("elsewhere/x.session")
        );
    }
}
