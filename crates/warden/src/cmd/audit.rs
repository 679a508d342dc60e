//! `warden audit`: verify the chain, export a human-readable copy, follow new events.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use warden_core::audit::{ChainMac, Checkpoint, DamageKind, NewEvent, Outcome};
use warden_core::auditor_key::{AuditorKeyError, AuditorKeyFile};
use warden_core::rbac::Permission;
use warden_store::audit::{self, AuditLog, ChainVerdict, StoredRow, VerifyFrom};
use warden_store::identity::Authorized;
use warden_store::Database;

use crate::cli::{AuditCommand, ExportFormat, GlobalArgs, VerifyArgs};
use crate::keys::{PassphraseSource, Unlocker};

/// A damaged chain: its message is the verdict; main maps it to exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("audit chain DAMAGED at seq {seq}: {kind} — {explanation}")]
pub struct ChainDamaged {
    pub seq: u64,
    pub kind: &'static str,
    pub explanation: &'static str,
}

pub fn explain(kind: DamageKind) -> &'static str {
    match kind {
        DamageKind::Changed => "the record's content or MAC was altered",
        DamageKind::Removed => "a record is missing here",
        DamageKind::Reordered => "this record belongs at another position",
        DamageKind::Inserted => "a forged record was inserted here",
        DamageKind::Truncated => {
            "records after this point were cut off (the checkpoint proves they existed)"
        }
        DamageKind::KeyMismatch => {
            "the stored key or epoch marker does not match (the epoch key was replaced)"
        }
    }
}

pub fn run(cmd: &AuditCommand, global: &GlobalArgs) -> Result<()> {
    // Who exports the trail is itself part of the trail (signed in and audited here).
    let export_allowed = match cmd {
        AuditCommand::Export { actor, .. } => Some(
            crate::cmd::user::sign_in_for(global, actor, Permission::AuditExport, "audit.export")?
                .1,
        ),
        _ => None,
    };
    let mut unlocker = Unlocker::open(global)?;
    let mut db = unlocker.database()?;
    let log = unlocker.audit_log()?;
    match cmd {
        AuditCommand::Verify(args) => {
            let verdict = verify(&log, &mut db, args, global)?;
            let report = verdict_or_damage(&verdict)?;
            let scope = if verdict.from_seq <= 1 {
                "from genesis".to_string()
            } else {
                format!(
                    "from the current epoch (seq {} on; earlier epochs need --auditor-key)",
                    verdict.from_seq
                )
            };
            println!(
                "audit chain {} OK: {} records verified {scope}; epochs {}..{}; last seq {} mac {}",
                verdict.head.chain_id,
                report.records,
                report.first_epoch,
                report.last_epoch,
                report.last_seq,
                report.last_mac
            );
            if args.checkpoint.is_some() {
                println!(
                    "checkpoint: {}",
                    if report.checkpoint_matched {
                        "matched"
                    } else {
                        "not checked (before the verified range)"
                    }
                );
            }
        }
        AuditCommand::Export {
            verify: args,
            format,
            output,
            ..
        } => {
            let verdict = verify(&log, &mut db, args, global)?;
            let rows = audit::read_rows(&db, 1, None)?;
            let mut out: Box<dyn Write> = match output {
                Some(path) => Box::new(io::BufWriter::new(warden_core::fsx::create_private_new(
                    path,
                )?)),
                None => Box::new(io::BufWriter::new(io::stdout().lock())),
            };
            let allowed = export_allowed
                .as_ref()
                .expect("signed in above for exports");
            match format {
                ExportFormat::Csv => write_csv(allowed, &mut out, &rows, &verdict)?,
                ExportFormat::Jsonl => write_jsonl(allowed, &mut out, &rows, &verdict)?,
            }
            out.flush()?;
            eprintln!(
                "exported {} records; verification: {}",
                rows.len(),
                summary(&verdict)
            );
            let event = NewEvent::new(
                audit::timestamp_now(),
                allowed.actor_name(),
                "audit.export",
                output
                    .as_ref()
                    .map_or("stdout".to_string(), |p| p.display().to_string()),
                Outcome::Success,
            )
            .with_details(json!({
                "format": format!("{format:?}").to_lowercase(),
                "records": rows.len(),
                "verification": summary(&verdict),
            }));
            log.append(&mut db, vec![event])?;
            verdict_or_damage(&verdict)?;
        }
        AuditCommand::Tail {
            lines,
            follow,
            json,
        } => {
            let last = audit::last_seq(&db)?;
            let mut next = last.saturating_sub(*lines) + 1;
            loop {
                for row in audit::read_rows(&db, next, None)? {
                    print_row(&row, *json)?;
                    next = row.seq + 1;
                }
                if !follow {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        AuditCommand::Checkpoint => match AuditLog::latest_checkpoint(&db)? {
            Some(c) => println!("{}:{}", c.seq, c.mac),
            None => println!("no checkpoint yet"),
        },
    }
    Ok(())
}

fn parse_checkpoint(text: &str) -> Result<Checkpoint> {
    let (seq, mac) = text.split_once(':').context("a checkpoint is SEQ:MAC")?;
    Ok(Checkpoint {
        seq: seq.parse().context("checkpoint SEQ is not a number")?,
        mac: ChainMac::from_hex(mac).context("checkpoint MAC is not 64 hex digits")?,
    })
}

fn verify(
    log: &AuditLog,
    db: &mut Database,
    args: &VerifyArgs,
    global: &GlobalArgs,
) -> Result<ChainVerdict> {
    let checkpoint = args
        .checkpoint
        .as_deref()
        .map(parse_checkpoint)
        .transpose()?;
    let from = match &args.auditor_key {
        None => VerifyFrom::CurrentEpoch,
        Some(path) => {
            let file = read_auditor_key(path)?;
            let head = log.head(db)?;
            if file.chain_id()? != head.chain_id {
                bail!(AuditorKeyError::OtherChain {
                    file: file.chain_id.clone(),
                    db: head.chain_id.to_string()
                });
            }
            let passphrase =
                PassphraseSource::for_auditor(global).read("Auditor passphrase: ", false)?;
            let (k0, _) = file.open(&passphrase)?;
            VerifyFrom::Genesis(k0)
        }
    };
    Ok(log.verify(db, from, checkpoint)?)
}

fn read_auditor_key(path: &Path) -> Result<AuditorKeyFile> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bytes = warden_core::fsx::read_limited(file, path, 64 * 1024)?;
    Ok(AuditorKeyFile::parse(&bytes)?)
}

fn verdict_or_damage(verdict: &ChainVerdict) -> Result<&warden_core::audit::VerifyReport> {
    match &verdict.result {
        Ok(report) => Ok(report),
        Err(damage) => Err(ChainDamaged {
            seq: damage.seq,
            kind: damage.kind.as_str(),
            explanation: explain(damage.kind),
        }
        .into()),
    }
}

fn summary(verdict: &ChainVerdict) -> String {
    match &verdict.result {
        Ok(report) => format!(
            "OK, {} records verified from seq {}",
            report.records, verdict.from_seq
        ),
        Err(d) => format!(
            "DAMAGED at seq {}: {} ({})",
            d.seq,
            d.kind.as_str(),
            explain(d.kind)
        ),
    }
}

/// Per-row status, so every exported line carries the verification result.
fn row_status(row: &StoredRow, verdict: &ChainVerdict) -> String {
    if row.seq < verdict.from_seq {
        return "not verified (earlier epoch; needs the auditor key)".into();
    }
    match &verdict.result {
        Err(d) if row.seq >= d.seq => format!(
            "NOT VERIFIED (chain damaged at seq {}: {})",
            d.seq,
            d.kind.as_str()
        ),
        _ => "verified".into(),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Writes the CSV copy; `_allowed` is the proof that an auditor signed in for it.
fn write_csv(
    _allowed: &Authorized,
    out: &mut dyn Write,
    rows: &[StoredRow],
    verdict: &ChainVerdict,
) -> Result<()> {
    writeln!(
        out,
        "seq,timestamp_utc,epoch,actor,action,subject,outcome,details,mac,chain_status"
    )?;
    for row in rows {
        let fields = [
            row.seq.to_string(),
            row.timestamp.clone(),
            row.epoch.to_string(),
            row.actor.clone(),
            row.action.clone(),
            row.subject.clone(),
            row.outcome.clone(),
            row.details.clone(),
            hex::encode(&row.mac),
            row_status(row, verdict),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

/// Writes the JSON Lines copy; `_allowed` is the proof that an auditor signed in for it.
fn write_jsonl(
    _allowed: &Authorized,
    out: &mut dyn Write,
    rows: &[StoredRow],
    verdict: &ChainVerdict,
) -> Result<()> {
    let verification = match &verdict.result {
        Ok(r) => {
            json!({"status": "ok", "records": r.records, "from_seq": verdict.from_seq, "last_seq": r.last_seq,
                        "last_mac": r.last_mac.to_string(), "checkpoint_matched": r.checkpoint_matched})
        }
        Err(d) => {
            json!({"status": "damaged", "seq": d.seq, "kind": d.kind.as_str(), "explanation": explain(d.kind),
                         "from_seq": verdict.from_seq})
        }
    };
    let header = json!({"type": "warden-audit-export", "version": 1, "chain_id": verdict.head.chain_id.to_string(),
                        "exported_at": warden_store::now_rfc3339(), "verification": verification});
    writeln!(out, "{header}")?;
    for row in rows {
        let mut value = serde_json::to_value(row)?;
        value["type"] = json!("event");
        value["chain_status"] = json!(row_status(row, verdict));
        writeln!(out, "{value}")?;
    }
    Ok(())
}

fn print_row(row: &StoredRow, json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(row)?)?;
    } else {
        writeln!(
            out,
            "{:>6}  {}  {:<12} {:<22} {:<24} {:<8} {}",
            row.seq, row.timestamp, row.actor, row.action, row.subject, row.outcome, row.details
        )?;
    }
    out.flush()?;
    Ok(())
}
