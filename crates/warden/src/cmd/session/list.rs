//! `warden session list`: every file in DATA_DIR/sessions, read and verified, sorted by start.
//!
//! ```text
//! STARTED (UTC)        DURATION  DEVICE     TECHNICIAN  OUTPUT    INPUT  STATUS
//! 2026-04-15 09:22:03   0:12:31  empump-12  tech-001    12.3 KiB  512 B  complete
//!   2026-04-15T09-22-03.empump-12-tech-001.session  shim shim-a, 88 chunks, 14.1 KiB
//! ```
//!
//! Two lines per recording keep rows within a terminal's width whatever the labels; a third
//! names what is wrong with a recording that is not complete. `--json` gives every fact.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use serde_json::json;
use time::{OffsetDateTime, PrimitiveDateTime};
use warden_core::keyring::Purpose;
use warden_core::rbac::Permission;
use warden_shim::recording::ops::{self, Listed};
use warden_shim::recording::read::Status;

use super::{duration, printable, rfc3339, size, start_time};
use crate::context::Context;

/// Labels longer than this are shortened in the table (never in `--json`).
const MAX_LABEL: usize = 16;
/// Problem descriptions are wrapped to this many columns.
const WIDTH: usize = 80;
/// A cut-short file written to this recently may simply still be recording.
const STILL_WRITING: Duration = Duration::from_secs(60);

struct Row(Listed);

impl std::ops::Deref for Row {
    type Target = Listed;

    fn deref(&self) -> &Listed {
        &self.0
    }
}

impl Row {
    /// The recorded start, or the one in the file name (`2026-04-15T09-22-03.…`) when the
    /// metadata cannot be read.
    fn started(&self) -> Option<OffsetDateTime> {
        if let Some(meta) = &self.read.metadata {
            return Some(meta.started_at());
        }
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]-[minute]-[second]");
        let stamp = self.0.name.get(..19)?;
        PrimitiveDateTime::parse(stamp, &format)
            .ok()
            .map(PrimitiveDateTime::assume_utc)
    }

    fn name(&self) -> String {
        printable(self.0.name.as_ref())
    }

    fn label(&self, get: impl Fn(&warden_shim::recording::RecordingMetadata) -> &str) -> String {
        self.read
            .metadata
            .as_ref()
            .map_or_else(|| "?".into(), |m| shorten(get(m)))
    }

    fn problem(&self) -> Option<String> {
        let mut problem = self.read.status.problem()?;
        let recent = self
            .read
            .file
            .modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < STILL_WRITING);
        match self.read.status {
            Status::CutShort(_) if recent => {
                problem.push_str(" (written to less than a minute ago: it may still be recording)")
            }
            Status::Damaged(_) if self.read.metadata.is_some() => {
                let chunks = self.read.tally.chunks;
                problem.push_str(&format!(
                    "; the metadata and {} before the damage verify",
                    plural(chunks, "chunk")
                ));
            }
            _ => {}
        }
        Some(problem)
    }

    fn json(&self) -> serde_json::Value {
        let meta = self.read.metadata.as_ref();
        let tally = &self.read.tally;
        json!({
            "file": self.name(),
            "path": self.path.display().to_string(),
            "status": self.read.status.json_name(),
            "problem": self.problem(),
            "session_id": meta.map(|m| m.session_id().hyphenated().to_string()),
            "started_at": meta.map(|m| rfc3339(m.started_at())),
            "device": meta.map(|m| m.device_name()),
            "technician": meta.map(|m| m.technician_id()),
            "shim_id": meta.map(|m| m.shim_id()),
            "config_hash": meta.map(|m| hex::encode(m.config_hash())),
            "duration_us": tally.duration_us(),
            "output_bytes": tally.output_bytes,
            "input_bytes": tally.input_bytes,
            "chunks": tally.chunks,
            "events": tally.events,
            "file_bytes": self.read.file.bytes,
            "sha256": hex::encode(self.read.file.sha256),
        })
    }
}

/// `1 chunk`, `2 chunks`.
fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Splits `text` into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

fn shorten(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL {
        return label.to_string();
    }
    let mut short: String = label.chars().take(MAX_LABEL - 1).collect();
    short.push('…');
    short
}

pub fn run(ctx: &mut Context<'_>, json: bool) -> Result<()> {
    let (mut store, by) = ctx.sign_in_for(Permission::RecordingList, "recording.list")?;
    let key = ctx.key_candidates(Purpose::Recordings)?;
    let dir = ctx.dir()?.sessions();
    let mut rows: Vec<Row> = ops::list(&mut store, &by, &key, &dir)?
        .into_iter()
        .map(Row)
        .collect();
    rows.sort_by_key(|row| (row.started(), row.name()));
    if json {
        let sessions: Vec<_> = rows.iter().map(Row::json).collect();
        println!(
            "{}",
            json!({ "directory": dir.display().to_string(), "sessions": sessions })
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("no recordings in {}", dir.display());
        return Ok(());
    }
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[Row]) {
    let header = [
        "STARTED (UTC)",
        "DURATION",
        "DEVICE",
        "TECHNICIAN",
        "OUTPUT",
        "INPUT",
        "STATUS",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            let tally = &row.read.tally;
            let known = row.read.metadata.is_some();
            [
                row.started().map_or_else(|| "?".into(), start_time),
                if known {
                    duration(tally.duration_us())
                } else {
                    "?".into()
                },
                row.label(|m| m.device_name()),
                row.label(|m| m.technician_id()),
                size(tally.output_bytes),
                size(tally.input_bytes),
                row.read.status.label().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Numbers right-aligned, text left-aligned; no padding after the last column.
    let right = [false, true, false, false, true, true, false];
    let format_line = |cells: &[String]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if right[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < cells.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        line
    };
    println!("{}", format_line(&header.map(String::from)));
    let mut counts = [0usize; 4];
    for (row, line) in rows.iter().zip(&cells) {
        println!("{}", format_line(line));
        let mut second = format!("  {}", row.name());
        if let Some(meta) = &row.read.metadata {
            second.push_str(&format!(
                "  shim {}, {}, {}",
                shorten(meta.shim_id()),
                plural(row.read.tally.chunks, "chunk"),
                size(row.read.file.bytes)
            ));
        } else if row.read.file.bytes > 0 {
            second.push_str(&format!("  {}", size(row.read.file.bytes)));
        }
        println!("{second}");
        if let Some(problem) = row.problem() {
            for (i, line) in wrap(&problem, WIDTH - 4).iter().enumerate() {
                println!("  {} {line}", if i == 0 { '!' } else { ' ' });
            }
        }
        counts[match row.read.status {
            Status::Complete => 0,
            Status::CutShort(_) => 1,
            Status::Damaged(_) => 2,
            Status::Unreadable(_) => 3,
        }] += 1;
    }
    let mut summary = format!(
        "{} recording{}: {} complete",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        counts[0]
    );
    for (count, what) in counts[1..]
        .iter()
        .zip(["cut short", "damaged", "unreadable"])
    {
        if *count > 0 {
            summary.push_str(&format!(", {count} {what}"));
        }
    }
    println!("{summary}");
    println!("(OUTPUT: device → technician; INPUT: technician → device)");
}
