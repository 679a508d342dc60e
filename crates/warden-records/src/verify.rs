//! Verifying records against the audit chain, and exporting them with the result.
//!
//! The chain is verified first (as `warden audit verify` does). Then every audit event that
//! wrote a version or a signature (`record.create`, `record.update`, `record.delete`,
//! `record.sign`) is matched with the stored row it describes: a stored row whose content no
//! longer hashes to the hash its event recorded, or that names another event as its own, is
//! **changed**; a row no event recorded is **inserted**; an event whose row is gone is
//! **removed**; a row whose event lies where the chain is damaged is **unverified**. Each is
//! named by collection, record id and version, like a changed audit row is named by its seq. Rows whose events lie in earlier epochs (before what
//! the box can verify without the auditor's key) are matched against those events all the same
//! and counted apart: only `--auditor-key` (verification from genesis) authenticates them. The
//! schema versions are matched with their `records.schema` events the same way.

use std::collections::BTreeMap;
use std::io::Write;

use rusqlite::params;
use serde_json::{json, Value};
use warden_core::audit::Outcome;
use warden_core::rbac::Permission;
use warden_store::audit::{csv_field, ChainVerdict, ExportFormat, VerifyFrom};
use warden_store::identity::Authorized;
use warden_store::{Store, StoreError};

use crate::ops::{view, Row, ROW_COLUMNS};
use crate::phi::PhiKey;
use crate::version::SignatureContent;
use crate::RecordsError;

/// What is wrong with one stored version or signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    Changed,
    Inserted,
    Removed,
    Unverified,
}

impl DamageKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Inserted => "inserted",
            Self::Removed => "removed",
            Self::Unverified => "unverified",
        }
    }

    pub fn explanation(self) -> &'static str {
        match self {
            Self::Changed => "the stored content does not match the hash its audit event recorded",
            Self::Inserted => "no audit event records this; it was added behind warden's back",
            Self::Removed => "an audit event records this, but it is no longer stored",
            Self::Unverified => "its audit event lies where the chain is damaged",
        }
    }
}

/// One damaged version or signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDamage {
    pub collection: String,
    pub record_id: String,
    pub version: u64,
    /// `Some((signer, meaning))` when a signature is damaged, `None` for the version itself.
    pub signature: Option<(String, String)>,
    pub kind: DamageKind,
    /// The audit event's seq, when there is one.
    pub audit_seq: Option<u64>,
}

impl std::fmt::Display for RecordDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} version {}",
            self.collection, self.record_id, self.version
        )?;
        if let Some((signer, meaning)) = &self.signature {
            write!(f, ", signature of {signer} ({meaning})")?;
        }
        write!(f, ": {} — {}", self.kind.name(), self.kind.explanation())?;
        if let Some(seq) = self.audit_seq {
            write!(f, " (audit seq {seq})")?;
        }
        Ok(())
    }
}

/// The result of verifying records.
pub struct RecordsVerdict {
    pub chain: ChainVerdict,
    pub versions: u64,
    pub signatures: u64,
    /// Versions, signatures and schema versions whose events lie before the verified part of
    /// the chain (earlier epochs): they match their events, which only the auditor's key
    /// authenticates.
    pub earlier_epochs: u64,
    pub damage: Vec<RecordDamage>,
}

impl RecordsVerdict {
    pub fn is_ok(&self) -> bool {
        self.chain.result.is_ok() && self.damage.is_empty()
    }

    /// One line per finding, the chain first.
    pub fn summary(&self) -> String {
        let mut out = format!("audit chain: {}\n", self.chain.summary());
        if self.damage.is_empty() {
            out.push_str(&format!(
                "records: OK, {} versions and {} signatures match the audit chain\n",
                self.versions, self.signatures
            ));
            if self.earlier_epochs > 0 {
                out.push_str(&format!(
                    "  ({} versions, signatures and schema versions were recorded in earlier epochs: they match their events, which only the auditor's key authenticates; verify with --auditor-key)\n",
                    self.earlier_epochs
                ));
            }
        } else {
            out.push_str(&format!(
                "records: DAMAGED, {} finding(s) in {} versions and {} signatures\n",
                self.damage.len(),
                self.versions,
                self.signatures
            ));
            for d in &self.damage {
                out.push_str(&format!("  {d}\n"));
            }
        }
        out
    }

    /// The status of one version, for exports.
    fn status_of(&self, collection: &str, record_id: &str, version: u64) -> String {
        let found: Vec<String> = self
            .damage
            .iter()
            .filter(|d| {
                d.collection == collection && d.record_id == record_id && d.version == version
            })
            .map(|d| match &d.signature {
                Some((signer, meaning)) => {
                    format!("signature of {signer} ({meaning}) {}", d.kind.name())
                }
                None => d.kind.name().to_string(),
            })
            .collect();
        if found.is_empty() {
            "verified".into()
        } else {
            format!("NOT VERIFIED: {}", found.join("; "))
        }
    }

    fn details(&self) -> Value {
        json!({
            "chain": self.chain.summary(),
            "versions": self.versions,
            "signatures": self.signatures,
            "earlier_epochs": self.earlier_epochs,
            "damage": self.damage.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        })
    }
}

type Key = (String, String, u64, Option<(String, String)>);

/// A schema version, named like a record in findings: `(schema)/records version N` — a
/// collection name no schema can declare, so no record shares its key.
fn schema_key(version: u64) -> Key {
    ("(schema)".into(), "records".into(), version, None)
}

/// Checks the chain and every stored version and signature against it (no audit event of its
/// own: see [`verify`] and [`export`]).
fn check(store: &mut Store, from: VerifyFrom) -> Result<RecordsVerdict, RecordsError> {
    store.audit().read_damaged_chain();
    let chain = store
        .identity
        .audit_log()
        .verify(&mut store.db, from, None)?;
    let in_damaged_part = |seq: u64| matches!(&chain.result, Err(d) if seq >= d.seq);
    let before_verified = |seq: u64| seq < chain.from_seq;
    let conn = store.db.conn();
    // What the chain says was written: key -> (seq, hash).
    let mut recorded: BTreeMap<Key, (u64, Vec<u8>)> = BTreeMap::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT seq, action, details FROM audit_events WHERE action IN
                 ('record.create', 'record.update', 'record.delete', 'record.sign',
                  'records.schema')
                 AND outcome = 'success' ORDER BY seq",
            )
            .map_err(StoreError::from)?;
        let mut rows = stmt.query([]).map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            let seq = row.get::<_, i64>(0).map_err(StoreError::from)? as u64;
            let action: String = row.get(1).map_err(StoreError::from)?;
            let details: String = row.get(2).map_err(StoreError::from)?;
            let Ok(d) = serde_json::from_str::<Value>(&details) else {
                continue;
            };
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            let signature = (action == "record.sign").then(|| {
                (
                    d["signer"].as_str().map(str::to_string).unwrap_or_default(),
                    text("meaning"),
                )
            });
            let (key, hash) = if action == "records.schema" {
                let key = schema_key(d["version"].as_u64().unwrap_or(0));
                (key, text("sha256"))
            } else {
                let key = (
                    text("collection"),
                    text("id"),
                    d["version"].as_u64().unwrap_or(0),
                    signature,
                );
                (key, text("hash"))
            };
            let hash = hex::decode(hash).unwrap_or_default();
            recorded.insert(key, (seq, hash));
        }
    }
    let mut damage = Vec::new();
    let mut versions = 0;
    let mut signatures = 0;
    let mut earlier_epochs = 0;
    // `stored_seq`: the seq of its event as the row itself says (versions and signatures keep
    // it; `records get` finds the event by it), which must be the event's.
    let mut judge = |key: Key,
                     actual: [u8; 32],
                     stored_hash: &[u8],
                     stored_seq: Option<u64>,
                     damage: &mut Vec<RecordDamage>| {
        let (collection, record_id, version, signature) = key.clone();
        let mut report = |kind, audit_seq| {
            damage.push(RecordDamage {
                collection: collection.clone(),
                record_id: record_id.clone(),
                version,
                signature: signature.clone(),
                kind,
                audit_seq,
            })
        };
        match recorded.remove(&key) {
            None => report(DamageKind::Inserted, None),
            Some((seq, hash)) => {
                let matches = warden_core::mac::ct_eq(&actual, &hash)
                    && warden_core::mac::ct_eq(&actual, stored_hash)
                    && stored_seq.is_none_or(|s| s == seq);
                if !matches {
                    report(DamageKind::Changed, Some(seq));
                } else if in_damaged_part(seq) {
                    report(DamageKind::Unverified, Some(seq));
                } else if before_verified(seq) {
                    earlier_epochs += 1;
                }
            }
        }
    };
    {
        let mut stmt = conn
            .prepare("SELECT version, document, sha256 FROM records_schema ORDER BY version")
            .map_err(StoreError::from)?;
        let mut rows = stmt.query([]).map_err(StoreError::from)?;
        while let Some(r) = rows.next().map_err(StoreError::from)? {
            let version = r.get::<_, i64>(0).map_err(StoreError::from)? as u64;
            let document: String = r.get(1).map_err(StoreError::from)?;
            let stored: Vec<u8> = r.get(2).map_err(StoreError::from)?;
            let actual = warden_core::mac::sha256(document.as_bytes());
            judge(schema_key(version), actual, &stored, None, &mut damage);
        }
    }
    {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {ROW_COLUMNS} FROM record_versions ORDER BY collection, record_id, version"
            ))
            .map_err(StoreError::from)?;
        let rows = stmt.query_map([], Row::read).map_err(StoreError::from)?;
        for row in rows {
            let row = row.map_err(StoreError::from)?;
            versions += 1;
            let key = (
                row.collection.clone(),
                row.record_id.clone(),
                row.version,
                None,
            );
            judge(
                key,
                row.content().hash(),
                &row.hash,
                Some(row.audit_seq),
                &mut damage,
            );
        }
    }
    {
        let mut stmt = conn
            .prepare(
                "SELECT collection, record_id, version, signer, printed_name, meaning, signed_at,
                        version_hash, hash, audit_seq FROM record_signatures
                 ORDER BY collection, record_id, version, signer, meaning",
            )
            .map_err(StoreError::from)?;
        let mut rows = stmt.query([]).map_err(StoreError::from)?;
        while let Some(r) = rows.next().map_err(StoreError::from)? {
            let get = |i| r.get::<_, String>(i).map_err(StoreError::from);
            let (collection, record_id) = (get(0)?, get(1)?);
            let version = r.get::<_, i64>(2).map_err(StoreError::from)? as u64;
            let (signer, printed_name, meaning, signed_at) = (get(3)?, get(4)?, get(5)?, get(6)?);
            let version_hash: Vec<u8> = r.get(7).map_err(StoreError::from)?;
            let hash: Vec<u8> = r.get(8).map_err(StoreError::from)?;
            let audit_seq = r.get::<_, i64>(9).map_err(StoreError::from)? as u64;
            signatures += 1;
            let actual = SignatureContent {
                collection: &collection,
                record_id: &record_id,
                version,
                signer: &signer,
                printed_name: &printed_name,
                meaning: &meaning,
                signed_at: &signed_at,
                version_hash: &version_hash,
            }
            .hash();
            let key = (collection, record_id, version, Some((signer, meaning)));
            judge(key, actual, &hash, Some(audit_seq), &mut damage);
        }
    }
    for ((collection, record_id, version, signature), (seq, _)) in recorded {
        damage.push(RecordDamage {
            collection,
            record_id,
            version,
            signature,
            kind: DamageKind::Removed,
            audit_seq: Some(seq),
        });
    }
    damage.sort_by(|a, b| {
        (&a.collection, &a.record_id, a.version).cmp(&(&b.collection, &b.record_id, b.version))
    });
    Ok(RecordsVerdict {
        chain,
        versions,
        signatures,
        earlier_epochs,
        damage,
    })
}

/// Verifies the audit chain and every stored record version and signature against it. Needs
/// `audit.verify`; the verdict is appended as `records.verify`.
pub fn verify(
    store: &mut Store,
    by: &Authorized,
    from: VerifyFrom,
) -> Result<RecordsVerdict, RecordsError> {
    by.check(Permission::AuditVerify)?;
    let verdict = check(store, from)?;
    let outcome = if verdict.is_ok() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let event = by
        .event("records.verify", "records", outcome)
        .with_details(verdict.details());
    store.append(vec![event])?;
    Ok(verdict)
}

/// What an export wrote.
pub struct Exported {
    pub versions: usize,
    pub verdict: RecordsVerdict,
}

/// Verifies, then writes every version of every record (or of one collection) with its
/// signatures (printed name, UTC time, meaning, status) and its verification status, as CSV or
/// JSON Lines (a header line with the verdict first). PHI fields are written in clear only with
/// `phi`, and then the export is also a PHI read. Needs `audit.export`; audited as
/// `records.export`.
#[allow(clippy::too_many_arguments)]
pub fn export(
    store: &mut Store,
    by: &Authorized,
    phi: Option<&PhiKey>,
    from: VerifyFrom,
    collection: Option<&str>,
    format: ExportFormat,
    destination: &str,
    out: &mut dyn Write,
) -> Result<Exported, RecordsError> {
    by.check(Permission::AuditExport)?;
    let phi = phi.filter(|k| k.actor() == by.actor_name());
    let verdict = check(store, from)?;
    let conn = store.db.conn();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM record_versions WHERE (?1 IS NULL OR collection = ?1)
             ORDER BY collection, record_id, version"
        ))
        .map_err(StoreError::from)?;
    let rows = stmt
        .query_map(params![collection], Row::read)
        .map_err(StoreError::from)?;
    let mut versions = Vec::new();
    for row in rows {
        let row = row.map_err(StoreError::from)?;
        versions.push(view(conn, &row, phi)?);
    }
    drop(stmt);
    let written = (|| -> std::io::Result<()> {
        match format {
            ExportFormat::Jsonl => {
                let header = json!({
                    "type": "warden-records-export", "version": 1,
                    "exported_at": warden_store::now_rfc3339(),
                    "phi": if phi.is_some() { "included" } else { "sealed" },
                    "verification": verdict.details(),
                    "ok": verdict.is_ok(),
                });
                writeln!(out, "{header}")?;
                for v in &versions {
                    let mut value = v.to_json();
                    value["type"] = json!("version");
                    value["status"] =
                        json!(verdict.status_of(&v.collection, &v.record_id, v.version));
                    writeln!(out, "{value}")?;
                }
            }
            ExportFormat::Csv => {
                writeln!(out, "collection,record_id,version,kind,timestamp_utc,actor,fields,phi,reason,hash,signatures,status")?;
                for v in &versions {
                    let value = v.to_json();
                    let signatures: Vec<String> =
                        v.signatures.iter().map(|s| s.manifestation()).collect();
                    let fields = [
                        v.collection.clone(),
                        v.record_id.clone(),
                        v.version.to_string(),
                        v.kind.clone(),
                        v.timestamp.clone(),
                        v.actor.clone(),
                        value["fields"].to_string(),
                        match &value["phi"] {
                            Value::Null => String::new(),
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                        v.reason.clone(),
                        hex::encode(v.hash),
                        signatures.join(" | "),
                        verdict.status_of(&v.collection, &v.record_id, v.version),
                    ];
                    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                    writeln!(out, "{}", line.join(","))?;
                }
            }
        }
        out.flush()
    })();
    let phi_read = phi.is_some()
        && versions
            .iter()
            .any(|v| matches!(v.phi, crate::PhiView::Open(_)));
    let mut details = verdict.details();
    details["format"] = json!(format.name());
    details["versions"] = json!(versions.len());
    details["collection"] = json!(collection);
    details["phi_included"] = json!(phi_read);
    details["written"] = json!(written.is_ok());
    let outcome = match (&written, verdict.is_ok()) {
        (Err(_), _) => Outcome::Error,
        (Ok(()), true) => Outcome::Success,
        (Ok(()), false) => Outcome::Failure,
    };
    let event = by
        .event("records.export", destination, outcome)
        .with_details(details);
    store.append(vec![event])?;
    written.map_err(|source| RecordsError::Io {
        what: format!("the records export to {destination}"),
        source,
    })?;
    Ok(Exported {
        versions: versions.len(),
        verdict,
    })
}
