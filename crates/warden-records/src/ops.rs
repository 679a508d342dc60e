//! The records operations: apply the schema, write versions (create, update, delete), read them
//! back with their signatures, sign a version, register signers' printed names, append
//! application events. Each takes the [`Authorized`] value for its permission and commits its
//! rows with its audit event in one transaction ([`Store::transact`]).

use rusqlite::{params, OptionalExtension};
use serde_json::{json, Map, Value};
use warden_core::audit::{field_text, Outcome};
use warden_core::password::Password;
use warden_core::rbac::{Permission, Role};
use warden_store::audit::AuditedTx;
use warden_store::identity::{Authorized, UnixMs};
use warden_store::{Database, Store, StoreError};

use crate::phi::PhiKey;
use crate::schema::{check_record_id, Class, Collection, InputError, Schema, Split};
use crate::version::{Kind, Meaning, SignatureContent, VersionContent};
use crate::RecordsError;

/// The audit subject of a record: `record:COLLECTION/ID`.
pub fn subject(collection: &str, record_id: &str) -> String {
    field_text(&format!("record:{collection}/{record_id}"))
}

/// The schema in force: its version and document, or `None` before the first is applied.
pub fn current_schema(db: &Database) -> Result<Option<(u64, Schema)>, RecordsError> {
    let row: Option<(i64, String)> = db
        .conn()
        .prepare_cached(
            "SELECT version, document FROM records_schema ORDER BY version DESC LIMIT 1",
        )
        .map_err(StoreError::from)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(StoreError::from)?;
    match row {
        None => Ok(None),
        Some((version, document)) => {
            let schema = Schema::parse(&document).map_err(|e| {
                RecordsError::Store(StoreError::Corrupt(format!(
                    "records schema version {version}: {e}"
                )))
            })?;
            Ok(Some((version as u64, schema)))
        }
    }
}

/// A collection of the schema in force, with the schema's version.
pub fn collection(db: &Database, name: &str) -> Result<(u64, Collection), RecordsError> {
    let (version, schema) = current_schema(db)?.ok_or(RecordsError::NoSchema)?;
    let collection = schema
        .collections
        .get(name)
        .cloned()
        .ok_or_else(|| RecordsError::UnknownCollection(name.chars().take(80).collect()))?;
    Ok((version, collection))
}

/// What applying a schema did.
#[derive(Debug, Clone)]
pub struct SchemaApplied {
    pub version: u64,
    pub sha256: [u8; 32],
    pub collections: Vec<String>,
    /// False when the document equals the schema in force (nothing was stored).
    pub changed: bool,
}

/// Installs `text` as the next version of the schema (needs `records.schema`). A later schema
/// may add collections and fields but never remove, retype or reclassify them. Audited as
/// `records.schema` with the version and the canonical document's SHA-256.
pub fn apply_schema(
    store: &mut Store,
    by: &Authorized,
    text: &str,
    source: &str,
) -> Result<SchemaApplied, RecordsError> {
    by.check(Permission::RecordsSchema)?;
    let schema = Schema::parse(text)?;
    let current = current_schema(&store.db)?;
    let canonical = schema.canonical_json();
    let sha256 = warden_core::mac::sha256(canonical.as_bytes());
    let collections: Vec<String> = schema.collections.keys().cloned().collect();
    if let Some((version, applied)) = &current {
        if *applied == schema {
            return Ok(SchemaApplied {
                version: *version,
                sha256,
                collections,
                changed: false,
            });
        }
        schema.check_evolution(applied)?;
    }
    let version = current.map_or(1, |(v, _)| v + 1);
    let event = by
        .event("records.schema", field_text(source), Outcome::Success)
        .with_details(json!({
            "version": version,
            "sha256": hex::encode(sha256),
            "collections": collections,
        }));
    store.transact(|tx| {
        tx.audit_one(event)?;
        tx.execute(
            "INSERT INTO records_schema (version, document, sha256, applied, applied_by)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                version as i64,
                canonical,
                sha256.as_slice(),
                warden_store::now_rfc3339(),
                by.actor_name()
            ],
        )
        .map_err(StoreError::from)?;
        Ok::<_, RecordsError>(())
    })?;
    Ok(SchemaApplied {
        version,
        sha256,
        collections,
        changed: true,
    })
}

/// A version as written.
#[derive(Debug, Clone)]
pub struct Written {
    pub collection: String,
    pub record_id: String,
    pub version: u64,
    pub kind: Kind,
    pub hash: [u8; 32],
    pub audit_seq: u64,
}

/// One stored version row.
pub(crate) struct Row {
    pub collection: String,
    pub record_id: String,
    pub version: u64,
    pub kind: String,
    pub timestamp: String,
    pub actor: String,
    pub schema_version: u64,
    pub fields: String,
    pub phi_sealed: Option<Vec<u8>>,
    pub reason: String,
    pub hash: Vec<u8>,
    pub audit_seq: u64,
}

pub(crate) const ROW_COLUMNS: &str = "collection, record_id, version, kind, ts, actor, schema_version, fields, phi_sealed, reason, hash, audit_seq";

impl Row {
    pub(crate) fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            collection: r.get(0)?,
            record_id: r.get(1)?,
            version: r.get::<_, i64>(2)? as u64,
            kind: r.get(3)?,
            timestamp: r.get(4)?,
            actor: r.get(5)?,
            schema_version: r.get::<_, i64>(6)? as u64,
            fields: r.get(7)?,
            phi_sealed: r.get(8)?,
            reason: r.get(9)?,
            hash: r.get(10)?,
            audit_seq: r.get::<_, i64>(11)? as u64,
        })
    }

    pub(crate) fn content(&self) -> VersionContent<'_> {
        VersionContent {
            collection: &self.collection,
            record_id: &self.record_id,
            version: self.version,
            kind: &self.kind,
            timestamp: &self.timestamp,
            actor: &self.actor,
            schema_version: self.schema_version,
            fields: &self.fields,
            phi_sealed: self.phi_sealed.as_deref().unwrap_or(&[]),
            reason: &self.reason,
        }
    }

    /// Whether the stored content still hashes to the stored hash.
    pub(crate) fn intact(&self) -> bool {
        warden_core::mac::ct_eq(&self.content().hash(), &self.hash)
    }

    /// [`intact`](Self::intact), and the hash is the one its audit event recorded: a version
    /// rewritten in the database together with its hash column (anyone holding the `database`
    /// key can compute the hash) differs from the chain. `records verify` also authenticates
    /// the chain itself.
    pub(crate) fn matches_its_record(
        &self,
        conn: &rusqlite::Connection,
    ) -> Result<bool, RecordsError> {
        Ok(self.intact()
            && recorded_hash(conn, self.audit_seq)?.as_deref() == Some(self.hash.as_slice()))
    }
}

fn latest(
    conn: &rusqlite::Connection,
    collection: &str,
    record_id: &str,
) -> Result<Option<Row>, RecordsError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM record_versions WHERE collection = ?1 AND record_id = ?2
             ORDER BY version DESC LIMIT 1"
        ))
        .map_err(StoreError::from)?
        .query_row(params![collection, record_id], Row::read)
        .optional()
        .map_err(StoreError::from)?)
}

fn parse_object(text: &str) -> Result<Map<String, Value>, RecordsError> {
    serde_json::from_str(text).map_err(|_| {
        RecordsError::Store(StoreError::Corrupt(
            "a record's fields are not a JSON object".into(),
        ))
    })
}

/// Writes the next version of `collection/record_id` in `tx`: `changes` merged over the latest
/// version (`null` removes a field), checked against the schema, PHI sealed with `phi`.
#[allow(clippy::too_many_arguments)]
fn write_version(
    tx: &AuditedTx<'_>,
    by: &Authorized,
    phi: Option<&PhiKey>,
    schema_version: u64,
    collection_name: &str,
    collection: &Collection,
    record_id: &str,
    change: Change<'_>,
) -> Result<Written, RecordsError> {
    let previous = latest(tx, collection_name, record_id)?;
    if let Some(prev) = &previous {
        if prev.kind == Kind::Delete.name() {
            return Err(RecordsError::Deleted {
                collection: collection_name.into(),
                record_id: record_id.into(),
            });
        }
    }
    let version = previous.as_ref().map_or(1, |p| p.version + 1);
    let phi_for = |needed: bool| -> Result<Option<&PhiKey>, RecordsError> {
        if !needed {
            return Ok(None);
        }
        match phi {
            Some(key) if key.actor() == by.actor_name() => Ok(Some(key)),
            _ => Err(RecordsError::PhiKeyRequired {
                collection: collection_name.into(),
            }),
        }
    };
    let (kind, split, reason) = match change {
        Change::Delete { reason } => {
            if reason.trim().is_empty() || reason.chars().count() > 1024 {
                return Err(InputError::BadReason.into());
            }
            if previous.is_none() {
                return Err(RecordsError::NotFound {
                    collection: collection_name.into(),
                    record_id: record_id.into(),
                });
            }
            (Kind::Delete, Split::default(), reason)
        }
        Change::Put(changes) => {
            let mut base = Split::default();
            if let Some(prev) = &previous {
                base.plain = parse_object(&prev.fields)?;
                if let Some(sealed) = &prev.phi_sealed {
                    let key = phi_for(true)?.expect("required above");
                    base.phi = key
                        .open(collection_name, record_id, prev.version, sealed)
                        .ok_or_else(|| RecordsError::PhiUnreadable {
                            collection: collection_name.into(),
                            record_id: record_id.into(),
                            version: prev.version,
                        })?;
                }
            }
            let next = collection.apply(collection_name, base, changes)?;
            let kind = if previous.is_some() {
                Kind::Update
            } else {
                Kind::Create
            };
            (kind, next, "")
        }
    };
    let fields = serde_json::to_string(&split.plain).expect("a JSON object always serializes");
    let phi_sealed = match phi_for(!split.phi.is_empty())? {
        Some(key) => Some(key.seal(collection_name, record_id, version, &split.phi)),
        None => None,
    };
    let timestamp = warden_store::now_rfc3339();
    let content = VersionContent {
        collection: collection_name,
        record_id,
        version,
        kind: kind.name(),
        timestamp: &timestamp,
        actor: by.actor_name(),
        schema_version,
        fields: &fields,
        phi_sealed: phi_sealed.as_deref().unwrap_or(&[]),
        reason,
    };
    let hash = content.hash();
    let mut details = json!({
        "collection": collection_name,
        "id": record_id,
        "version": version,
        "hash": hex::encode(hash),
        "schema_version": schema_version,
        "phi": phi_sealed.is_some(),
    });
    if kind != Kind::Delete {
        let names: Vec<&String> = split.plain.keys().chain(split.phi.keys()).collect();
        details["fields"] = json!(names);
    }
    let event = by
        .event(
            kind.action(),
            subject(collection_name, record_id),
            Outcome::Success,
        )
        .with_details(details);
    let appended = tx.audit(vec![event])?;
    let audit_seq = appended.records.last().map_or(0, |r| r.seq);
    tx.prepare_cached(&format!(
        "INSERT INTO record_versions ({ROW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))
    .map_err(StoreError::from)?
    .execute(params![
        collection_name,
        record_id,
        version as i64,
        kind.name(),
        timestamp,
        by.actor_name(),
        schema_version as i64,
        fields,
        phi_sealed,
        reason,
        hash.as_slice(),
        audit_seq as i64,
    ])
    .map_err(StoreError::from)?;
    Ok(Written {
        collection: collection_name.into(),
        record_id: record_id.into(),
        version,
        kind,
        hash,
        audit_seq,
    })
}

enum Change<'a> {
    Put(&'a Map<String, Value>),
    Delete { reason: &'a str },
}

/// Creates `collection/record_id` or writes its next version: `changes` merged over the latest
/// version (`null` removes a field). Needs the collection's write permission, and `phi` when
/// the record has or gets PHI fields. Audited as `record.create` / `record.update` with the
/// version's hash, in the same transaction.
pub fn put(
    store: &mut Store,
    by: &Authorized,
    phi: Option<&PhiKey>,
    collection_name: &str,
    record_id: &str,
    changes: &Map<String, Value>,
) -> Result<Written, RecordsError> {
    check_record_id(record_id)?;
    let (schema_version, collection) = collection(&store.db, collection_name)?;
    by.check(collection.class.write_permission())?;
    store.transact(|tx| {
        write_version(
            tx,
            by,
            phi,
            schema_version,
            collection_name,
            &collection,
            record_id,
            Change::Put(changes),
        )
    })
}

/// Deletes `collection/record_id`: a tombstone version with `reason`; every earlier version
/// stays. Needs the collection's write permission. Audited as `record.delete`.
pub fn delete(
    store: &mut Store,
    by: &Authorized,
    collection_name: &str,
    record_id: &str,
    reason: &str,
) -> Result<Written, RecordsError> {
    check_record_id(record_id)?;
    let (schema_version, collection) = collection(&store.db, collection_name)?;
    by.check(collection.class.write_permission())?;
    store.transact(|tx| {
        write_version(
            tx,
            by,
            None,
            schema_version,
            collection_name,
            &collection,
            record_id,
            Change::Delete { reason },
        )
    })
}

/// A record version's PHI fields as the reader sees them.
#[derive(Debug, Clone, PartialEq)]
pub enum PhiView {
    /// The version has no PHI fields.
    None,
    /// The version has PHI fields and the reader has no `phi` key.
    Sealed,
    /// Opened with the reader's `phi` key.
    Open(Map<String, Value>),
    /// The sealed PHI does not open (changed bytes, or moved from another record or version).
    Unreadable,
}

/// Whether a signature still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStatus {
    Valid,
    /// The signed version's stored content no longer hashes to what was signed.
    VersionChanged,
    /// The signature row itself was changed after signing.
    SignatureChanged,
}

impl SignatureStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::VersionChanged => "INVALID: the signed version was changed after signing",
            Self::SignatureChanged => "INVALID: the signature was changed after signing",
        }
    }
}

/// An electronic signature as shown with its record (§11.50: printed name, time, meaning).
#[derive(Debug, Clone)]
pub struct Signature {
    pub signer: String,
    pub printed_name: String,
    pub meaning: String,
    /// UTC, RFC 3339 with microseconds.
    pub signed_at: String,
    pub version_hash: [u8; 32],
    pub status: SignatureStatus,
}

impl Signature {
    /// `Jane Roe (jroe), approved, 2026-04-15T09:22:03.123456Z UTC — valid`.
    pub fn manifestation(&self) -> String {
        format!(
            "{} ({}), {}, {} UTC — {}",
            self.printed_name,
            self.signer,
            self.meaning,
            self.signed_at,
            self.status.name()
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "printed_name": self.printed_name,
            "signer": self.signer,
            "meaning": self.meaning,
            "signed_at_utc": self.signed_at,
            "version_hash": hex::encode(self.version_hash),
            "status": self.status.name(),
        })
    }
}

/// One version of a record, as read.
#[derive(Debug, Clone)]
pub struct Version {
    pub collection: String,
    pub record_id: String,
    pub version: u64,
    pub kind: String,
    pub timestamp: String,
    pub actor: String,
    pub schema_version: u64,
    /// The non-PHI fields.
    pub fields: Map<String, Value>,
    pub phi: PhiView,
    /// The reason of a delete (empty otherwise).
    pub reason: String,
    pub hash: [u8; 32],
    /// False when the stored content no longer hashes to the stored hash, or that hash is not
    /// the one its audit event recorded.
    pub intact: bool,
    pub audit_seq: u64,
    pub signatures: Vec<Signature>,
}

impl Version {
    /// All fields: the non-PHI ones, and the PHI ones when opened.
    pub fn all_fields(&self) -> Map<String, Value> {
        let mut all = self.fields.clone();
        if let PhiView::Open(phi) = &self.phi {
            all.extend(phi.clone());
        }
        all
    }

    pub fn to_json(&self) -> Value {
        let phi = match &self.phi {
            PhiView::None => Value::Null,
            PhiView::Sealed => json!("sealed"),
            PhiView::Unreadable => json!("UNREADABLE"),
            PhiView::Open(map) => Value::Object(map.clone()),
        };
        json!({
            "collection": self.collection,
            "id": self.record_id,
            "version": self.version,
            "kind": self.kind,
            "timestamp_utc": self.timestamp,
            "actor": self.actor,
            "schema_version": self.schema_version,
            "fields": self.fields,
            "phi": phi,
            "reason": self.reason,
            "hash": hex::encode(self.hash),
            "intact": self.intact,
            "signatures": self.signatures.iter().map(Signature::to_json).collect::<Vec<_>>(),
        })
    }
}

pub(crate) fn signatures_of(
    conn: &rusqlite::Connection,
    row: &Row,
) -> Result<Vec<Signature>, RecordsError> {
    let current = row.content().hash();
    let mut stmt = conn
        .prepare_cached(
            "SELECT signer, printed_name, meaning, signed_at, version_hash, hash, audit_seq
             FROM record_signatures WHERE collection = ?1 AND record_id = ?2 AND version = ?3
             ORDER BY signed_at, signer",
        )
        .map_err(StoreError::from)?;
    let rows = stmt
        .query_map(
            params![row.collection, row.record_id, row.version as i64],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                    r.get::<_, i64>(6)? as u64,
                ))
            },
        )
        .map_err(StoreError::from)?;
    let mut out = Vec::new();
    for item in rows {
        let (signer, printed_name, meaning, signed_at, version_hash, hash, audit_seq) =
            item.map_err(StoreError::from)?;
        let content = SignatureContent {
            collection: &row.collection,
            record_id: &row.record_id,
            version: row.version,
            signer: &signer,
            printed_name: &printed_name,
            meaning: &meaning,
            signed_at: &signed_at,
            version_hash: &version_hash,
        };
        // The row hashes to its hash, and that is the hash its `record.sign` event recorded.
        let status = if !warden_core::mac::ct_eq(&content.hash(), &hash)
            || recorded_hash(conn, audit_seq)?.as_deref() != Some(hash.as_slice())
        {
            SignatureStatus::SignatureChanged
        } else if !warden_core::mac::ct_eq(&version_hash, &current) {
            SignatureStatus::VersionChanged
        } else {
            SignatureStatus::Valid
        };
        out.push(Signature {
            signer,
            printed_name,
            meaning,
            signed_at,
            version_hash: version_hash.try_into().unwrap_or([0; 32]),
            status,
        });
    }
    Ok(out)
}

pub(crate) fn view(
    conn: &rusqlite::Connection,
    row: &Row,
    phi: Option<&PhiKey>,
) -> Result<Version, RecordsError> {
    let fields = parse_object(&row.fields).unwrap_or_default();
    let phi_view = match (&row.phi_sealed, phi) {
        (None, _) => PhiView::None,
        (Some(_), None) => PhiView::Sealed,
        (Some(sealed), Some(key)) => key
            .open(&row.collection, &row.record_id, row.version, sealed)
            .map_or(PhiView::Unreadable, PhiView::Open),
    };
    Ok(Version {
        collection: row.collection.clone(),
        record_id: row.record_id.clone(),
        version: row.version,
        kind: row.kind.clone(),
        timestamp: row.timestamp.clone(),
        actor: row.actor.clone(),
        schema_version: row.schema_version,
        fields,
        phi: phi_view,
        reason: row.reason.clone(),
        hash: row.hash.clone().try_into().unwrap_or([0; 32]),
        intact: row.matches_its_record(conn)?,
        audit_seq: row.audit_seq,
        signatures: signatures_of(conn, row)?,
    })
}

/// Appends `record.read` for versions whose PHI was opened (HIPAA audit controls); the PHI
/// field names, never their values.
fn audit_phi_read(
    store: &mut Store,
    by: &Authorized,
    collection: &str,
    record_id: &str,
    versions: &[Version],
) -> Result<(), RecordsError> {
    let opened: Vec<&Version> = versions
        .iter()
        .filter(|v| matches!(v.phi, PhiView::Open(_) | PhiView::Unreadable))
        .collect();
    if opened.is_empty() {
        return Ok(());
    }
    let mut names: Vec<String> = opened
        .iter()
        .filter_map(|v| match &v.phi {
            PhiView::Open(map) => Some(map.keys().cloned().collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    names.sort();
    names.dedup();
    let event = by
        .event(
            "record.read",
            subject(collection, record_id),
            Outcome::Success,
        )
        .with_details(json!({
            "collection": collection,
            "id": record_id,
            "versions": opened.iter().map(|v| v.version).collect::<Vec<_>>(),
            "phi_fields": names,
        }));
    store.append(vec![event])?;
    Ok(())
}

fn rows_of(
    conn: &rusqlite::Connection,
    collection: &str,
    record_id: &str,
    version: Option<u64>,
) -> Result<Vec<Row>, RecordsError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM record_versions WHERE collection = ?1 AND record_id = ?2
             AND (?3 IS NULL OR version = ?3) ORDER BY version"
        ))
        .map_err(StoreError::from)?;
    let rows = stmt
        .query_map(
            params![collection, record_id, version.map(|v| v as i64)],
            Row::read,
        )
        .map_err(StoreError::from)?;
    Ok(rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::from)?)
}

/// Reads one version of a record (the latest when `version` is `None`), with its signatures.
/// Needs the collection's read permission; PHI fields open only with `phi`, and opening them
/// is audited as `record.read`.
pub fn get(
    store: &mut Store,
    by: &Authorized,
    phi: Option<&PhiKey>,
    collection_name: &str,
    record_id: &str,
    version: Option<u64>,
) -> Result<Version, RecordsError> {
    check_record_id(record_id)?;
    let (_, collection) = collection(&store.db, collection_name)?;
    by.check(collection.class.read_permission())?;
    let phi = phi.filter(|k| k.actor() == by.actor_name());
    let mut rows = rows_of(store.db.conn(), collection_name, record_id, version)?;
    let Some(row) = rows.pop() else {
        return Err(match version {
            Some(version) => RecordsError::VersionNotFound {
                collection: collection_name.into(),
                record_id: record_id.into(),
                version,
            },
            None => RecordsError::NotFound {
                collection: collection_name.into(),
                record_id: record_id.into(),
            },
        });
    };
    let found = view(store.db.conn(), &row, phi)?;
    audit_phi_read(
        store,
        by,
        collection_name,
        record_id,
        std::slice::from_ref(&found),
    )?;
    Ok(found)
}

/// Every version of a record, oldest first, with signatures (21 CFR Part 11 §11.10(e): an
/// update never obscures the earlier value). Same rules as [`get`].
pub fn history(
    store: &mut Store,
    by: &Authorized,
    phi: Option<&PhiKey>,
    collection_name: &str,
    record_id: &str,
) -> Result<Vec<Version>, RecordsError> {
    check_record_id(record_id)?;
    let (_, collection) = collection(&store.db, collection_name)?;
    by.check(collection.class.read_permission())?;
    let phi = phi.filter(|k| k.actor() == by.actor_name());
    let rows = rows_of(store.db.conn(), collection_name, record_id, None)?;
    if rows.is_empty() {
        return Err(RecordsError::NotFound {
            collection: collection_name.into(),
            record_id: record_id.into(),
        });
    }
    let versions = rows
        .iter()
        .map(|row| view(store.db.conn(), row, phi))
        .collect::<Result<Vec<_>, _>>()?;
    audit_phi_read(store, by, collection_name, record_id, &versions)?;
    Ok(versions)
}

/// A record in a listing: its latest version's metadata (no field values).
#[derive(Debug, Clone)]
pub struct Listed {
    pub record_id: String,
    pub version: u64,
    pub kind: String,
    pub timestamp: String,
    pub actor: String,
    pub signatures: u64,
}

/// The records of a collection (latest version of each, deleted ones included). Needs the
/// collection's read permission. Lists ids and metadata only, so it is not a PHI read.
pub fn list(
    store: &mut Store,
    by: &Authorized,
    collection_name: &str,
) -> Result<Vec<Listed>, RecordsError> {
    let (_, collection) = collection(&store.db, collection_name)?;
    by.check(collection.class.read_permission())?;
    let mut stmt = store
        .db
        .conn()
        .prepare_cached(
            "SELECT v.record_id, v.version, v.kind, v.ts, v.actor,
                    (SELECT count(*) FROM record_signatures s WHERE s.collection = v.collection
                     AND s.record_id = v.record_id)
             FROM record_versions v
             WHERE v.collection = ?1 AND v.version =
                (SELECT max(version) FROM record_versions w
                 WHERE w.collection = v.collection AND w.record_id = v.record_id)
             ORDER BY v.record_id",
        )
        .map_err(StoreError::from)?;
    let rows = stmt
        .query_map(params![collection_name], |r| {
            Ok(Listed {
                record_id: r.get(0)?,
                version: r.get::<_, i64>(1)? as u64,
                kind: r.get(2)?,
                timestamp: r.get(3)?,
                actor: r.get(4)?,
                signatures: r.get::<_, i64>(5)? as u64,
            })
        })
        .map_err(StoreError::from)?;
    Ok(rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::from)?)
}

/// Registers (or changes) the printed name shown with `username`'s signatures. Needs
/// `user.manage`; audited as `records.signer`.
pub fn set_printed_name(
    store: &mut Store,
    by: &Authorized,
    username: &str,
    printed_name: &str,
) -> Result<(), RecordsError> {
    by.check(Permission::UserManage)?;
    let name = printed_name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(|c| c.is_control()) {
        return Err(RecordsError::BadPrintedName);
    }
    let username = username.to_ascii_lowercase();
    let exists: Option<i64> = store
        .db
        .conn()
        .query_row(
            "SELECT 1 FROM users WHERE username = ?1",
            params![username],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::from)?;
    if exists.is_none() {
        return Err(RecordsError::UnknownUser(username));
    }
    let event = by
        .event(
            "records.signer",
            format!("user:{username}"),
            Outcome::Success,
        )
        .with_details(json!({ "printed_name": name }));
    store.transact(|tx| {
        tx.audit_one(event)?;
        tx.execute(
            "INSERT INTO record_signers (username, printed_name, set_at, set_by)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (username) DO UPDATE SET printed_name = ?2, set_at = ?3, set_by = ?4",
            params![username, name, warden_store::now_rfc3339(), by.actor_name()],
        )
        .map_err(StoreError::from)?;
        Ok::<_, RecordsError>(())
    })
}

/// What a signature request carries: the version and meaning, and both components of the
/// signer's credentials (21 CFR Part 11 §11.200(a)(1)).
pub struct SignRequest<'a> {
    pub collection: &'a str,
    pub record_id: &'a str,
    pub version: u64,
    pub meaning: Meaning,
    pub password: &'a Password,
    pub totp_code: &'a str,
}

/// A signature as written.
#[derive(Debug, Clone)]
pub struct Signed {
    pub signature: Signature,
    pub audit_seq: u64,
}

/// Signs one version of a record with a meaning. Needs the collection's write permission; the
/// signer re-authenticates with both components (password and one-time code) now, whatever
/// their sign-in was; the signature is bound to the version's hash, which is checked against
/// the hash its audit event recorded first. Audited as `record.sign`; refusals as well.
pub fn sign(
    store: &mut Store,
    by: &Authorized,
    request: &SignRequest<'_>,
) -> Result<Signed, RecordsError> {
    check_record_id(request.record_id)?;
    let (_, collection) = collection(&store.db, request.collection)?;
    by.check(collection.class.write_permission())?;
    let record_subject = subject(request.collection, request.record_id);
    let refuse = |store: &mut Store, err: RecordsError| -> RecordsError {
        let event = by
            .event("record.sign", record_subject.clone(), Outcome::Failure)
            .with_details(json!({
                "collection": request.collection,
                "id": request.record_id,
                "version": request.version,
                "meaning": request.meaning.name(),
                "error": warden_core::report::report(&err),
            }));
        match store.append(vec![event]) {
            Ok(()) => err,
            Err(store_err) => store_err.into(),
        }
    };
    if by.user().is_none() {
        return Err(refuse(store, RecordsError::SignerNotAPerson));
    }
    // Both components, now: this attempt is counted and audited as a sign-in (`login.cli`).
    let again = store
        .identity
        .authenticate_operator(
            &mut store.db,
            by.actor_name(),
            request.password,
            Some(request.totp_code),
            UnixMs::now(),
        )
        .map_err(RecordsError::Reauthentication)?;
    if again.username() != by.actor_name() {
        return Err(refuse(store, RecordsError::SignerMismatch));
    }
    if again.totp_step().is_none() || again.role() == Role::Technician {
        return Err(refuse(store, RecordsError::NeedsBothComponents));
    }
    let printed_name: Option<String> = store
        .db
        .conn()
        .query_row(
            "SELECT printed_name FROM record_signers WHERE username = ?1",
            params![by.actor_name()],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::from)?;
    let Some(printed_name) = printed_name else {
        return Err(refuse(
            store,
            RecordsError::NoPrintedName(by.actor_name().to_owned()),
        ));
    };
    let attempt = store.transact(|tx| {
        let rows = rows_of(
            tx,
            request.collection,
            request.record_id,
            Some(request.version),
        )?;
        let Some(row) = rows.into_iter().next() else {
            return Err(RecordsError::VersionNotFound {
                collection: request.collection.into(),
                record_id: request.record_id.into(),
                version: request.version,
            });
        };
        let hash = row.content().hash();
        if !row.matches_its_record(tx)? {
            return Err(RecordsError::VersionDamaged {
                collection: row.collection.clone(),
                record_id: row.record_id.clone(),
                version: row.version,
            });
        }
        let signed_at = warden_store::now_rfc3339();
        let content = SignatureContent {
            collection: &row.collection,
            record_id: &row.record_id,
            version: row.version,
            signer: by.actor_name(),
            printed_name: &printed_name,
            meaning: request.meaning.name(),
            signed_at: &signed_at,
            version_hash: &hash,
        };
        let signature_hash = content.hash();
        let event = by
            .event("record.sign", record_subject.clone(), Outcome::Success)
            .with_details(json!({
                "collection": row.collection,
                "id": row.record_id,
                "version": row.version,
                "version_hash": hex::encode(hash),
                "signer": by.actor_name(),
                "meaning": request.meaning.name(),
                "printed_name": printed_name,
                "signed_at": signed_at,
                "hash": hex::encode(signature_hash),
            }));
        let appended = tx.audit(vec![event])?;
        let audit_seq = appended.records.last().map_or(0, |r| r.seq);
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO record_signatures (collection, record_id, version, signer,
                    printed_name, meaning, signed_at, version_hash, hash, audit_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    row.collection,
                    row.record_id,
                    row.version as i64,
                    by.actor_name(),
                    printed_name,
                    request.meaning.name(),
                    signed_at,
                    hash.as_slice(),
                    signature_hash.as_slice(),
                    audit_seq as i64
                ],
            )
            .map_err(StoreError::from)?;
        if inserted == 0 {
            return Err(RecordsError::AlreadySigned {
                meaning: request.meaning,
            });
        }
        Ok(Signed {
            signature: Signature {
                signer: by.actor_name().to_owned(),
                printed_name: printed_name.clone(),
                meaning: request.meaning.name().to_owned(),
                signed_at,
                version_hash: hash,
                status: SignatureStatus::Valid,
            },
            audit_seq,
        })
    });
    attempt.map_err(|err| match err {
        RecordsError::Store(_) => err,
        other => refuse(store, other),
    })
}

/// The version hash an audit event recorded (`details.hash` of the row at `seq`).
pub(crate) fn recorded_hash(
    conn: &rusqlite::Connection,
    seq: u64,
) -> Result<Option<Vec<u8>>, RecordsError> {
    let details: Option<String> = conn
        .query_row(
            "SELECT details FROM audit_events WHERE seq = ?1",
            params![seq as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::from)?;
    Ok(details
        .and_then(|d| serde_json::from_str::<Value>(&d).ok())
        .and_then(|d| d["hash"].as_str().and_then(|h| hex::decode(h).ok())))
}

/// Largest application action name, in bytes (without the `app.` prefix).
pub const MAX_APP_ACTION: usize = 64;

/// Appends an application's own event (e.g. `laser.armed`, `pulse.delivered`) to the audit
/// chain as `app.ACTION` under the signed-in actor. Needs `app.event`. `details` must be a JSON
/// object (at most 64 KiB as canonical JSON, 32 levels deep). Returns the event's seq.
pub fn app_event(
    store: &mut Store,
    by: &Authorized,
    action: &str,
    subject: &str,
    outcome: Outcome,
    details: Value,
) -> Result<u64, RecordsError> {
    by.check(Permission::AppEvent)?;
    // `app.laser.armed` and `laser.armed` name the same event (never `app.app.laser.armed`).
    let action = action.strip_prefix("app.").unwrap_or(action);
    let ok = !action.is_empty()
        && action.len() <= MAX_APP_ACTION
        && action.as_bytes()[0].is_ascii_lowercase()
        && action.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if !ok {
        return Err(RecordsError::BadAction);
    }
    if !details.is_object() {
        return Err(InputError::NotAnObject.into());
    }
    let event = by
        .event(&format!("app.{action}"), subject, outcome)
        .with_details(details);
    store.transact(|tx| {
        let appended = tx.audit(vec![event])?;
        Ok::<_, RecordsError>(appended.records.last().map_or(0, |r| r.seq))
    })
}

impl Class {
    /// Whether `role` may read this class (for callers deciding what to offer).
    pub fn readable_by(self, role: Role) -> bool {
        warden_core::rbac::authorize(role, self.read_permission()).is_allowed()
    }
}
