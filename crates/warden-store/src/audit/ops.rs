//! The audit trail's own operations — verify, export, tail, checkpoint — each authorized and
//! itself audited (who looked at the evidence, and what they were told).
//!
//! Export writes a human-readable copy (21 CFR Part 11 §11.10(b)): CSV or JSON Lines, every
//! row with its verification status, and (JSON Lines) a header with the verdict.

use std::io::Write;

use serde_json::json;
use warden_core::audit::{Checkpoint, DamageKind, Outcome, VerifyReport};
use warden_core::rbac::Permission;

use super::{read_rows, ChainVerdict, StoredRow, VerifyFrom};
use crate::identity::{Authorized, WrongAuthorization};
use crate::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AuditOpError {
    #[error(transparent)]
    Authorization(#[from] WrongAuthorization),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export failed")]
    Write(#[source] std::io::Error),
}

/// A damaged chain: its message is the verdict (the binary maps it to exit code 3).
#[derive(Debug, Clone, thiserror::Error)]
#[error("audit chain DAMAGED at seq {seq}: {kind} — {explanation}")]
pub struct ChainDamaged {
    pub seq: u64,
    pub kind: &'static str,
    pub explanation: &'static str,
}

/// What a kind of damage means, in words for the person reading the verdict.
pub fn explain(kind: DamageKind) -> &'static str {
    match kind {
        DamageKind::Changed => "the record's content or MAC was altered",
        DamageKind::Removed => "a record is missing here",
        DamageKind::Reordered => "this record belongs at another position",
        DamageKind::Inserted => "a forged record was inserted here",
        DamageKind::Truncated => {
            "records from here on were cut off (the stored head or a checkpoint proves they existed)"
        }
        DamageKind::KeyMismatch => {
            "the stored key or epoch marker does not match (the epoch key was replaced)"
        }
    }
}

impl ChainVerdict {
    /// The report, or the damage as an error.
    pub fn report(&self) -> Result<&VerifyReport, ChainDamaged> {
        match &self.result {
            Ok(report) => Ok(report),
            Err(damage) => Err(ChainDamaged {
                seq: damage.seq,
                kind: damage.kind.as_str(),
                explanation: explain(damage.kind),
            }),
        }
    }

    /// One line: `OK, N records verified from seq S` or `DAMAGED at seq …`.
    pub fn summary(&self) -> String {
        match &self.result {
            Ok(report) => format!(
                "OK, {} records verified from seq {}",
                report.records, self.from_seq
            ),
            Err(d) => format!(
                "DAMAGED at seq {}: {} ({})",
                d.seq,
                d.kind.as_str(),
                explain(d.kind)
            ),
        }
    }

    fn details(&self) -> serde_json::Value {
        match &self.result {
            Ok(r) => json!({
                "status": "ok", "records": r.records, "from_seq": self.from_seq,
                "last_seq": r.last_seq, "last_mac": r.last_mac.to_string(),
                "checkpoints_matched": r.checkpoints_matched,
            }),
            Err(d) => json!({
                "status": "damaged", "seq": d.seq, "kind": d.kind.as_str(),
                "explanation": explain(d.kind), "from_seq": self.from_seq,
            }),
        }
    }

    fn outcome(&self) -> Outcome {
        if self.result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

fn scope(from: &VerifyFrom) -> &'static str {
    match from {
        VerifyFrom::Genesis(_) => "genesis",
        VerifyFrom::CurrentEpoch => "current_epoch",
    }
}

// Implements: V48
/// Verifies the chain (see [`super::AuditLog::verify`]). Needs `audit.verify`; the verdict is
/// appended as `audit.verify` (after the check, so it is not part of what was checked).
pub fn verify(
    store: &mut Store,
    by: &Authorized,
    from: VerifyFrom,
    checkpoint: Option<Checkpoint>,
) -> Result<ChainVerdict, AuditOpError> {
    by.check(Permission::AuditVerify)?;
    store.audit().read_damaged_chain();
    let scope = scope(&from);
    let verdict = store
        .identity
        .audit_log()
        .verify(&mut store.db, from, checkpoint)?;
    let mut details = verdict.details();
    details["scope"] = json!(scope);
    details["external_checkpoint"] = json!(checkpoint.map(|c| c.seq));
    let event = by
        .event("audit.verify", "audit-chain", verdict.outcome())
        .with_details(details);
    store.append(vec![event])?;
    Ok(verdict)
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }
}

/// What an export wrote.
pub struct Exported {
    pub records: usize,
    pub verdict: ChainVerdict,
}

// Implements: V47, V54
/// Verifies the chain and writes every row with its status to `out`. Needs `audit.export`;
/// audited as `audit.export` with the destination, the row count and the verdict.
pub fn export(
    store: &mut Store,
    by: &Authorized,
    from: VerifyFrom,
    checkpoint: Option<Checkpoint>,
    format: ExportFormat,
    destination: &str,
    out: &mut dyn Write,
) -> Result<Exported, AuditOpError> {
    by.check(Permission::AuditExport)?;
    store.audit().read_damaged_chain();
    let verdict = store
        .identity
        .audit_log()
        .verify(&mut store.db, from, checkpoint)?;
    let rows = read_rows(&store.db, 1, None)?;
    let written = match format {
        ExportFormat::Csv => write_csv(out, &rows, &verdict),
        ExportFormat::Jsonl => {
            let signed = super::AuditLog::signed_checkpoints(&store.db)?;
            write_jsonl(out, &rows, &verdict, &signed)
        }
    }
    .and_then(|()| out.flush());
    let event = by
        .event(
            "audit.export",
            destination,
            if written.is_ok() {
                verdict.outcome()
            } else {
                Outcome::Error
            },
        )
        .with_details(json!({
            "format": format.name(),
            "records": rows.len(),
            "verification": verdict.summary(),
            "written": written.is_ok(),
        }));
    store.append(vec![event])?;
    written.map_err(AuditOpError::Write)?;
    Ok(Exported {
        records: rows.len(),
        verdict,
    })
}

/// Reading new events as they are appended; made by [`tail`].
pub struct Tail {
    next: u64,
    /// The `audit.tail` event of this very command, not shown.
    own: u64,
}

impl Tail {
    /// Rows appended since the last call (the first call: the last `lines` rows before this
    /// command's own `audit.tail` event).
    pub fn next_rows(&mut self, store: &Store) -> Result<Vec<StoredRow>, StoreError> {
        let mut rows = read_rows(&store.db, self.next, None)?;
        if let Some(last) = rows.last() {
            self.next = last.seq + 1;
        }
        rows.retain(|row| row.seq != self.own);
        Ok(rows)
    }
}

/// Starts following the chain at its last `lines` rows. Needs `audit.tail`; audited once, as
/// `audit.tail`, when it starts.
pub fn tail(
    store: &mut Store,
    by: &Authorized,
    lines: u64,
    follow: bool,
) -> Result<Tail, AuditOpError> {
    by.check(Permission::AuditTail)?;
    store.audit().read_damaged_chain();
    let last = super::last_seq(&store.db)?;
    let from = last.saturating_sub(lines) + 1;
    let event = by
        .event("audit.tail", "audit-chain", Outcome::Success)
        .with_details(json!({ "lines": lines, "follow": follow, "from_seq": from }));
    let appended = store
        .identity
        .audit_log()
        .append(&mut store.db, vec![event])?;
    let own = appended.records.last().map_or(0, |r| r.seq);
    Ok(Tail { next: from, own })
}

/// The latest stored checkpoint, to keep off the box. Needs `audit.checkpoint`; audited.
pub fn checkpoint(store: &mut Store, by: &Authorized) -> Result<Option<Checkpoint>, AuditOpError> {
    by.check(Permission::AuditCheckpoint)?;
    store.audit().read_damaged_chain();
    let latest = super::AuditLog::latest_checkpoint(&store.db)?;
    let event = by
        .event("audit.checkpoint", "audit-chain", Outcome::Success)
        .with_details(json!({ "checkpoint": latest.map(|c| format!("{}:{}", c.seq, c.mac)) }));
    store.append(vec![event])?;
    Ok(latest)
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

/// One CSV cell (RFC 4180 quoting). A cell that a spreadsheet would run as a formula (it
/// starts with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`, so an actor
/// name, a subject or a delete reason cannot become a formula in the auditor's spreadsheet.
pub fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn write_csv(
    out: &mut dyn Write,
    rows: &[StoredRow],
    verdict: &ChainVerdict,
) -> std::io::Result<()> {
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

fn write_jsonl(
    out: &mut dyn Write,
    rows: &[StoredRow],
    verdict: &ChainVerdict,
    signed: &[warden_core::audit::signed::SignedCheckpoint],
) -> std::io::Result<()> {
    let verification = match &verdict.result {
        Ok(r) => json!({"status": "ok", "records": r.records, "from_seq": verdict.from_seq,
            "last_seq": r.last_seq, "last_mac": r.last_mac.to_string(),
            "checkpoint_matched": r.checkpoint_matched, "checkpoints_matched": r.checkpoints_matched}),
        Err(d) => json!({"status": "damaged", "seq": d.seq, "kind": d.kind.as_str(),
            "explanation": explain(d.kind), "from_seq": verdict.from_seq}),
    };
    let header = json!({"type": "warden-audit-export", "version": 1,
        "chain_id": verdict.head.chain_id.to_string(),
        "exported_at": crate::now_rfc3339(), "verification": verification});
    writeln!(out, "{header}")?;
    for row in rows {
        let mut value = serde_json::to_value(row).map_err(std::io::Error::other)?;
        value["type"] = json!("event");
        value["chain_status"] = json!(row_status(row, verdict));
        writeln!(out, "{value}")?;
    }
    // Signed checkpoints: with the public key alone, anyone checks that these rows are the
    // ones the box signed (docs/formats/audit-chain.md, "Signed checkpoints").
    for checkpoint in signed {
        let mut value = serde_json::to_value(checkpoint).map_err(std::io::Error::other)?;
        value["type"] = json!("signed-checkpoint");
        writeln!(out, "{value}")?;
    }
    Ok(())
}

/// Checks every signed checkpoint against the stored rows with `keys` (public keys only: what
/// an auditor or the SIEM holds), without any MAC key. Part of `audit verify --public-key`
/// (needs `audit.verify`; the command's own event records it).
pub fn verify_public(
    store: &mut Store,
    by: &Authorized,
    keys: Vec<warden_core::signing::CheckpointKey>,
) -> Result<warden_core::audit::signed::PublicVerdict, AuditOpError> {
    by.check(Permission::AuditVerify)?;
    let chain_id = super::AuditLog::stored_chain_id(&store.db)?;
    let signed = super::AuditLog::signed_checkpoints(&store.db)?;
    let mut verifier = warden_core::audit::signed::PublicVerifier::new(chain_id, keys, signed);
    let mut from = 1;
    loop {
        let rows = read_rows(&store.db, from, Some(4096))?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            verifier.push(&row.view());
        }
        from = rows.last().map_or(from, |r| r.seq + 1);
    }
    Ok(verifier.finish())
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_cells_are_quoted_and_never_run_as_formulas() {
        assert_eq!(csv_field("olga"), "olga");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        for lead in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(
                csv_field(lead).trim_start_matches('"').starts_with('\''),
                "{lead:?}"
            );
        }
        assert_eq!(csv_field("1.5"), "1.5");
    }
}
