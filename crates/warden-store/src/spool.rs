//! The SIEM spool: every message warden owes the SIEM, kept in the database until it has been
//! delivered (as far as RFC 5425 lets anyone know, see `docs/siem.md`).
//!
//! # Writers and the one-transaction rule
//!
//! Producers (the audit log, the tamper detector, the heartbeat timer) call [`Spool::enqueue`]
//! with the `&Connection` of the transaction that records the event itself (a
//! `&rusqlite::Transaction` derefs to one). The spool row and the event then commit together or
//! not at all: an audit event is never recorded without its SIEM message, or the other way round.
//! [`Spool::enqueue`] works inside a SAVEPOINT, so it is atomic on a bare connection too.
//!
//! # Sequence numbers
//!
//! `seq` (the CEF `cn1`, label `warden_seq`) comes from a counter in `siem_spool_state`, assigned
//! at enqueue and never reused, even after rows are deleted: the receiver sees every number
//! exactly once when nothing is lost, and a gap or a repeat otherwise. Writers are serialised by
//! SQLite's write lock, which is taken by the very first statement of an enqueue (the counter
//! update), so seq order is also commit order.
//!
//! # Delivery order
//!
//! By priority class — tamper alerts (3), audit events (2), audit checkpoints (1), heartbeats
//! (0) — then by `seq` within a class ([`Spool::next_batch`]). The receiver therefore sees `seq`
//! increasing within each class, while classes interleave (an alert overtakes queued audit
//! events); it detects loss from the set of numbers received, not from their order.
//!
//! # Size limits (see [`SpoolLimits`])
//!
//! - At `soft_limit` rows, heartbeats make room: each new message first deletes the oldest
//!   heartbeat; a new heartbeat with no older heartbeat to replace is itself dropped. Dropped
//!   heartbeats are counted (with their seq range), and the forwarder turns the count into a
//!   `spool-overflow` message ([`Spool::take_overflow_report`]), so the gap is explained.
//! - Tamper alerts, audit events and checkpoints are never dropped. Above `hard_limit` rows,
//!   audit events and checkpoints are refused with [`SpoolError::StorageExhausted`]; tamper
//!   alerts have `alert_reserve` more rows. The caller's transaction must then roll back (the
//!   event is not recorded anywhere) and the shim goes to EMERGENCY_STOP. A full disk
//!   (`SQLITE_FULL`) is reported the same way.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// What a spooled message reports. Mirrors `warden_siem::format::MessageKind` (same names and
/// priorities; a test in warden-siem keeps them in step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpoolKind {
    TamperAlert,
    AuditEvent,
    AuditCheckpoint,
    Heartbeat,
}

impl SpoolKind {
    /// All kinds, in delivery order (most urgent first).
    pub const ALL: [SpoolKind; 4] = [
        SpoolKind::TamperAlert,
        SpoolKind::AuditEvent,
        SpoolKind::AuditCheckpoint,
        SpoolKind::Heartbeat,
    ];

    /// Delivery priority: higher is sent first.
    pub const fn priority(self) -> u8 {
        match self {
            Self::TamperAlert => 3,
            Self::AuditEvent => 2,
            Self::AuditCheckpoint => 1,
            Self::Heartbeat => 0,
        }
    }

    /// The name stored in the `kind` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TamperAlert => "tamper_alert",
            Self::AuditEvent => "audit_event",
            Self::AuditCheckpoint => "audit_checkpoint",
            Self::Heartbeat => "heartbeat",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    fn index(self) -> usize {
        usize::from(3 - self.priority())
    }
}

/// The fields needed to format one message, stored as JSON. Every field is optional; the
/// forwarder maps them to CEF extensions (see `warden_siem::format::cef`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolPayload {
    /// Overrides the kind's CEF signature ID (e.g. `spool-overflow`, `siem-test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_id: Option<String>,
    /// Overrides the kind's CEF name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Overrides the kind's CEF severity (0..=10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
    /// `suser`: who acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `act`: what happened, e.g. `login`, `session.open`, `tamper.case_open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `outcome`: true = `success`, false = `failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<bool>,
    /// `reason`: why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `msg`: free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `cs1`: the session UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `cn2`: the audit-chain sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
    /// `cs2`: the audit-chain MAC at `audit_seq`, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_mac: Option<String>,
    /// `cs3`: the tamper sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tamper_source: Option<String>,
    /// `cs4`: the SHA-256 of a closed recording, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_sha256: Option<String>,
    /// `cn3` with `cn3Label`: a labelled count (heartbeat counter, dropped heartbeats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<(String, u64)>,
}

impl SpoolPayload {
    /// The payload of an audit checkpoint (`seq`, MAC in hex).
    pub fn checkpoint(audit_seq: u64, chain_mac_hex: &str) -> Self {
        Self {
            action: Some("audit.checkpoint".into()),
            audit_seq: Some(audit_seq),
            chain_mac: Some(chain_mac_hex.to_owned()),
            ..Self::default()
        }
    }
}

/// One spooled message, as the forwarder reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRow {
    pub seq: u64,
    pub kind: SpoolKind,
    /// When the event happened, milliseconds since the Unix epoch (UTC).
    pub created_ms: i64,
    pub payload: SpoolPayload,
    /// How often the message was written to a connection before.
    pub attempts: u32,
}

/// Size limits, in rows. Defaults: soft 100,000; hard 1,000,000; 10,000 more for tamper alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// From here on, heartbeats are dropped (oldest first) to make room.
    pub soft_limit: u64,
    /// From here on, audit events and checkpoints are refused (`StorageExhausted`).
    pub hard_limit: u64,
    /// Extra rows above `hard_limit` reserved for tamper alerts.
    pub alert_reserve: u64,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        Self {
            soft_limit: 100_000,
            hard_limit: 1_000_000,
            alert_reserve: 10_000,
        }
    }
}

/// What [`Spool::enqueue`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Enqueued {
    /// Stored with this sequence number.
    Stored { seq: u64 },
    /// A heartbeat dropped because the spool is at its soft limit; the number was used up and
    /// will be reported in the next `spool-overflow` message.
    HeartbeatDropped { seq: u64 },
}

/// Why the spool could not take or give a message, sorted by cause.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("SIEM spool storage exhausted: {rows} messages queued, limit {limit} for this kind; the event was not recorded")]
    StorageExhausted { rows: u64, limit: u64 },
    #[error("SIEM spool storage exhausted: the disk is full; the event was not recorded")]
    DiskFull,
    #[error("SIEM spool is damaged: {0}")]
    Corrupt(String),
    #[error("SIEM spool database error")]
    Sqlite(#[source] rusqlite::Error),
}

impl From<rusqlite::Error> for SpoolError {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::DiskFull,
            _ => Self::Sqlite(err),
        }
    }
}

impl SpoolError {
    /// True when the caller should treat this as "storage exhausted" (EMERGENCY_STOP in the shim).
    pub fn is_storage_exhausted(&self) -> bool {
        matches!(self, Self::StorageExhausted { .. } | Self::DiskFull)
    }
}

/// Where the forwarder is in each priority class on one connection: the highest seq already
/// written, so the next batch continues after it (in-flight messages stay in the spool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCursor {
    after: [Option<u64>; 4],
}

impl DeliveryCursor {
    /// Records that `seq` of `kind` was written.
    pub fn advance(&mut self, kind: SpoolKind, seq: u64) {
        let slot = &mut self.after[kind.index()];
        *slot = Some(slot.map_or(seq, |s| s.max(seq)));
    }

    pub fn after(&self, kind: SpoolKind) -> Option<u64> {
        self.after[kind.index()]
    }
}

/// Counters for status reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Messages waiting (including written but unconfirmed ones).
    pub rows: u64,
    /// Waiting messages per kind, in [`SpoolKind::ALL`] order.
    pub per_kind: [u64; 4],
    /// The seq the next message will get.
    pub next_seq: u64,
    /// Heartbeats dropped since the spool was created.
    pub dropped_total: u64,
    /// Heartbeats dropped and not yet reported in a `spool-overflow` message.
    pub dropped_pending: u64,
}

/// A `spool-overflow` report that [`Spool::take_overflow_report`] queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverflowReport {
    pub seq: u64,
    pub dropped: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// The CEF signature ID of the message that reports dropped heartbeats.
pub const OVERFLOW_SIGNATURE: &str = "spool-overflow";

// Implements: S10, S12, S13
/// The spool's operations; holds the limits. Every method takes the connection (or transaction)
/// to work in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spool {
    limits: SpoolLimits,
}

const SAVEPOINT: &str = "warden_spool";

/// Runs `f` inside a SAVEPOINT: released on success, rolled back on error.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce() -> Result<T, SpoolError>,
) -> Result<T, SpoolError> {
    // Prepared once per connection: these run for every enqueue.
    conn.prepare_cached(&format!("SAVEPOINT {SAVEPOINT}"))?
        .execute([])?;
    match f() {
        Ok(value) => {
            conn.prepare_cached(&format!("RELEASE {SAVEPOINT}"))?
                .execute([])?;
            Ok(value)
        }
        Err(err) => {
            let _ = conn.execute_batch(&format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}"));
            Err(err)
        }
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Spool {
    pub fn new(limits: SpoolLimits) -> Self {
        Self { limits }
    }

    pub fn limits(&self) -> SpoolLimits {
        self.limits
    }

    /// Queues one message in the caller's transaction (see the module documentation for the
    /// limit policy). `created_ms` is the event time in milliseconds since the Unix epoch.
    pub fn enqueue(
        &self,
        conn: &Connection,
        kind: SpoolKind,
        created_ms: i64,
        payload: &SpoolPayload,
    ) -> Result<Enqueued, SpoolError> {
        self.enqueue_inner(conn, kind, created_ms, payload, true)
    }

    /// Queues a heartbeat carrying the shim's heartbeat `counter` (`cn3`, label
    /// `heartbeat_counter`). The shim calls this on its timer.
    pub fn enqueue_heartbeat(
        &self,
        conn: &Connection,
        counter: u64,
        created_ms: i64,
    ) -> Result<Enqueued, SpoolError> {
        let payload = SpoolPayload {
            action: Some("heartbeat".into()),
            counter: Some(("heartbeat_counter".into(), counter)),
            ..SpoolPayload::default()
        };
        self.enqueue(conn, SpoolKind::Heartbeat, created_ms, &payload)
    }

    /// Queues an audit-chain checkpoint: the chain's position `audit_seq` and its MAC (hex).
    pub fn enqueue_checkpoint(
        &self,
        conn: &Connection,
        audit_seq: u64,
        chain_mac_hex: &str,
        created_ms: i64,
    ) -> Result<Enqueued, SpoolError> {
        let payload = SpoolPayload::checkpoint(audit_seq, chain_mac_hex);
        self.enqueue(conn, SpoolKind::AuditCheckpoint, created_ms, &payload)
    }

    /// Queues several messages at once, in order (the audit chain's records and checkpoints of
    /// one append): one counter update and one prepared insert per message. Near the soft limit
    /// it falls back to one-by-one enqueueing, which makes room by dropping heartbeats.
    pub fn enqueue_batch(
        &self,
        conn: &Connection,
        created_ms: i64,
        messages: &[(SpoolKind, SpoolPayload)],
    ) -> Result<(), SpoolError> {
        if messages.is_empty() {
            return Ok(());
        }
        let n = messages.len() as i64;
        let rows: i64 = conn
            .prepare_cached("SELECT rows FROM siem_spool_state WHERE id = 1")?
            .query_row([], |r| r.get(0))?;
        if to_u64(rows) + messages.len() as u64 >= self.limits.soft_limit {
            for (kind, payload) in messages {
                let _stored = self.enqueue_inner(conn, *kind, created_ms, payload, true)?;
            }
            return Ok(());
        }
        in_savepoint(conn, || {
            let first: i64 = conn
                .prepare_cached(
                    "UPDATE siem_spool_state SET next_seq = next_seq + ?1, rows = rows + ?1
                     WHERE id = 1 RETURNING next_seq - ?1",
                )?
                .query_row([n], |r| r.get(0))?;
            let mut insert = conn.prepare_cached(
                "INSERT INTO siem_spool (seq, kind, priority, created_ms, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (i, (kind, payload)) in messages.iter().enumerate() {
                let json = serde_json::to_string(payload)
                    .map_err(|e| SpoolError::Corrupt(format!("payload does not serialise: {e}")))?;
                insert.execute(params![
                    first + i as i64,
                    kind.as_str(),
                    kind.priority(),
                    created_ms,
                    json
                ])?;
            }
            Ok(())
        })
    }

    fn limit_for(&self, kind: SpoolKind) -> u64 {
        match kind {
            SpoolKind::TamperAlert => self
                .limits
                .hard_limit
                .saturating_add(self.limits.alert_reserve),
            _ => self.limits.hard_limit,
        }
    }

    fn enqueue_inner(
        &self,
        conn: &Connection,
        kind: SpoolKind,
        created_ms: i64,
        payload: &SpoolPayload,
        limited: bool,
    ) -> Result<Enqueued, SpoolError> {
        let json = serde_json::to_string(payload)
            .map_err(|e| SpoolError::Corrupt(format!("payload does not serialise: {e}")))?;
        in_savepoint(conn, || {
            // The first statement writes, so the write lock (and with it the seq) is taken at once.
            let (seq, mut rows): (i64, i64) = conn.query_row(
                "UPDATE siem_spool_state SET next_seq = next_seq + 1 WHERE id = 1
                 RETURNING next_seq - 1, rows",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (seq, rows_now) = (to_u64(seq), to_u64(rows));
            if limited && rows_now >= self.limits.soft_limit {
                let oldest: Option<i64> = conn
                    .query_row(
                        "SELECT seq FROM siem_spool WHERE priority = 0 ORDER BY seq LIMIT 1",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                let dropped = match oldest {
                    Some(old) => {
                        conn.execute("DELETE FROM siem_spool WHERE seq = ?1", [old])?;
                        rows -= 1;
                        Some(old)
                    }
                    None if kind == SpoolKind::Heartbeat => Some(to_i64(seq)),
                    None => None,
                };
                if let Some(dropped_seq) = dropped {
                    conn.execute(
                        "UPDATE siem_spool_state SET rows = ?1,
                            dropped_total = dropped_total + 1,
                            dropped_pending = dropped_pending + 1,
                            dropped_first = min(coalesce(dropped_first, ?2), ?2),
                            dropped_last = max(coalesce(dropped_last, ?2), ?2)
                         WHERE id = 1",
                        params![rows, dropped_seq],
                    )?;
                    if oldest.is_none() {
                        tracing::warn!(seq, "SIEM spool full: heartbeat dropped");
                        return Ok(Enqueued::HeartbeatDropped { seq });
                    }
                    tracing::warn!(
                        dropped_seq,
                        "SIEM spool full: oldest heartbeat dropped to make room"
                    );
                }
            }
            let limit = self.limit_for(kind);
            if limited && to_u64(rows) >= limit {
                return Err(SpoolError::StorageExhausted {
                    rows: to_u64(rows),
                    limit,
                });
            }
            conn.execute(
                "INSERT INTO siem_spool (seq, kind, priority, created_ms, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    to_i64(seq),
                    kind.as_str(),
                    kind.priority(),
                    created_ms,
                    json
                ],
            )?;
            conn.execute(
                "UPDATE siem_spool_state SET rows = ?1 WHERE id = 1",
                [rows + 1],
            )?;
            Ok(Enqueued::Stored { seq })
        })
    }

    /// The next messages to write after `cursor`: up to `limit` rows, by priority class, then
    /// by seq. Messages already written on this connection (at or below the cursor) are skipped.
    pub fn next_batch(
        &self,
        conn: &Connection,
        cursor: &DeliveryCursor,
        limit: usize,
    ) -> Result<Vec<SpoolRow>, SpoolError> {
        let mut out = Vec::new();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, created_ms, payload, attempts FROM siem_spool
             WHERE priority = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        for kind in SpoolKind::ALL {
            let remaining = limit.saturating_sub(out.len());
            if remaining == 0 {
                break;
            }
            let after = cursor.after(kind).map_or(-1, to_i64);
            let rows = stmt.query_map(
                params![
                    kind.priority(),
                    after,
                    i64::try_from(remaining).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )?;
            for row in rows {
                let (seq, created_ms, json, attempts) = row?;
                let payload = serde_json::from_str(&json).unwrap_or_else(|_| {
                    // Never lose a message to a bad row: send what is known, and say so.
                    tracing::warn!(seq, "SIEM spool row has an unreadable payload");
                    SpoolPayload {
                        reason: Some("spool_payload_unreadable".into()),
                        ..SpoolPayload::default()
                    }
                });
                out.push(SpoolRow {
                    seq: to_u64(seq),
                    kind,
                    created_ms,
                    payload,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                });
            }
        }
        Ok(out)
    }

    /// Records that `seqs` were written to a connection at `at_ms` (bookkeeping only).
    pub fn mark_sent(&self, conn: &Connection, seqs: &[u64], at_ms: i64) -> Result<(), SpoolError> {
        in_savepoint(conn, || {
            let mut stmt = conn.prepare_cached(
                "UPDATE siem_spool SET attempts = attempts + 1, last_sent_ms = ?2 WHERE seq = ?1",
            )?;
            for &seq in seqs {
                stmt.execute(params![to_i64(seq), at_ms])?;
            }
            Ok(())
        })
    }

    /// Removes delivered messages; returns how many were still there (a heartbeat may have been
    /// dropped meanwhile).
    pub fn confirm(&self, conn: &Connection, seqs: &[u64]) -> Result<u64, SpoolError> {
        in_savepoint(conn, || {
            let mut removed = 0u64;
            let mut stmt = conn.prepare_cached("DELETE FROM siem_spool WHERE seq = ?1")?;
            for &seq in seqs {
                removed += stmt.execute([to_i64(seq)])? as u64;
            }
            conn.execute(
                "UPDATE siem_spool_state SET rows = rows - ?1 WHERE id = 1",
                [to_i64(removed)],
            )?;
            Ok(removed)
        })
    }

    /// If heartbeats were dropped since the last report, queues one `spool-overflow` message
    /// (audit-event class, so it is never dropped itself) with their count and seq range. The
    /// report is exempt from the limits: it is one row per report, and without it the gap in
    /// the sequence numbers would be unexplained.
    pub fn take_overflow_report(
        &self,
        conn: &Connection,
        at_ms: i64,
    ) -> Result<Option<OverflowReport>, SpoolError> {
        in_savepoint(conn, || {
            let (pending, first, last): (i64, Option<i64>, Option<i64>) = conn.query_row(
                "SELECT dropped_pending, dropped_first, dropped_last FROM siem_spool_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            if pending <= 0 {
                return Ok(None);
            }
            let (first, last) = (to_u64(first.unwrap_or(0)), to_u64(last.unwrap_or(0)));
            conn.execute(
                "UPDATE siem_spool_state SET dropped_pending = 0, dropped_first = NULL,
                    dropped_last = NULL WHERE id = 1",
                [],
            )?;
            let dropped = to_u64(pending);
            let payload = SpoolPayload {
                signature_id: Some(OVERFLOW_SIGNATURE.into()),
                name: Some("SIEM spool overflow".into()),
                severity: Some(7),
                action: Some("siem.spool_overflow".into()),
                outcome: Some(false),
                reason: Some("spool_full".into()),
                message: Some(format!(
                    "{dropped} heartbeats between warden_seq {first} and {last} were dropped: the spool reached its limit of {} messages",
                    self.limits.soft_limit
                )),
                counter: Some(("dropped_heartbeats".into(), dropped)),
                ..SpoolPayload::default()
            };
            match self.enqueue_inner(conn, SpoolKind::AuditEvent, at_ms, &payload, false)? {
                Enqueued::Stored { seq } => Ok(Some(OverflowReport {
                    seq,
                    dropped,
                    first_seq: first,
                    last_seq: last,
                })),
                Enqueued::HeartbeatDropped { .. } => Err(SpoolError::Corrupt(
                    "an overflow report was treated as a heartbeat".into(),
                )),
            }
        })
    }

    /// Counters: rows per kind, next seq, dropped heartbeats.
    pub fn stats(&self, conn: &Connection) -> Result<SpoolStats, SpoolError> {
        let (next_seq, rows, dropped_total, dropped_pending): (i64, i64, i64, i64) = conn
            .query_row(
                "SELECT next_seq, rows, dropped_total, dropped_pending FROM siem_spool_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
        let mut per_kind = [0u64; 4];
        let mut stmt =
            conn.prepare_cached("SELECT priority, count(*) FROM siem_spool GROUP BY priority")?;
        let counts = stmt.query_map([], |r| Ok((r.get::<_, u8>(0)?, r.get::<_, i64>(1)?)))?;
        for row in counts {
            let (priority, count) = row?;
            if let Some(kind) = SpoolKind::ALL
                .into_iter()
                .find(|k| k.priority() == priority)
            {
                per_kind[kind.index()] = to_u64(count);
            }
        }
        let counted: u64 = per_kind.iter().sum();
        if counted != to_u64(rows) {
            return Err(SpoolError::Corrupt(format!(
                "row counter says {rows}, the table holds {counted}"
            )));
        }
        Ok(SpoolStats {
            rows: to_u64(rows),
            per_kind,
            next_seq: to_u64(next_seq),
            dropped_total: to_u64(dropped_total),
            dropped_pending: to_u64(dropped_pending),
        })
    }
}

/// Milliseconds since the Unix epoch, now (for `created_ms`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
