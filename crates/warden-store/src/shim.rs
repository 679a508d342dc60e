//! The shim's persisted state and its reset.
//!
//! An emergency stop survives restarts, so power-cycling a tampered box does not reopen the
//! port. Only the daemon clears it, on the record: an administrator's `shim reset` stores a
//! reset *request* with its own audit event ([`request_reset`]); the daemon, which alone knows
//! whether a tamper source still reports tamper, carries it out or refuses it
//! ([`perform_reset`]) — the persisted flags, the port lock, the request's state and the
//! `shim.reset` event commit in one transaction.

use rusqlite::{params, OptionalExtension};
use serde_json::json;
use warden_core::audit::Outcome;
use warden_core::rbac::Permission;

use crate::db::{Database, StoreError};
use crate::identity::{Authorized, Identity, PortId, Principal, WrongAuthorization};
use crate::Store;

pub const MIGRATION_SQL: &str = "
    CREATE TABLE shim_state (
        shim_id        TEXT PRIMARY KEY,
        emergency_stop INTEGER NOT NULL,
        since          TEXT,
        reason         TEXT
    );
";

/// Reset requests: stored by an administrator's sign-in, settled by the daemon.
pub const RESET_MIGRATION_SQL: &str = "
    CREATE TABLE shim_reset_requests (
        id           INTEGER PRIMARY KEY,
        shim_id      TEXT    NOT NULL,
        requested_by TEXT    NOT NULL,
        requested_ms INTEGER NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'refused')),
        settled_ms   INTEGER,
        outcome      TEXT
    );
";

/// A request older than this is not carried out (the administrator's sign-in is stale).
pub const RESET_REQUEST_TTL_MS: u64 = 60_000;

/// The shim whose emergency stop is in force on this box, if any. The stop belongs to the box
/// (the data directory), not to a shim id: a daemon started under another id (a new
/// configuration) comes back stopped all the same.
pub fn emergency_stop(db: &Database) -> Result<Option<String>, StoreError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT shim_id FROM shim_state WHERE emergency_stop != 0 ORDER BY shim_id LIMIT 1",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?)
}

/// Sets the emergency stop for `shim_id` (the daemon, on tamper or storage exhaustion; its
/// transition event goes in the same transaction).
pub fn set_emergency_stop(
    conn: &rusqlite::Connection,
    shim_id: &str,
    on: bool,
    reason: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO shim_state (shim_id, emergency_stop, since, reason) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (shim_id) DO UPDATE SET emergency_stop = ?2, since = ?3, reason = ?4",
        params![shim_id, on as i64, crate::now_rfc3339(), reason],
    )?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(transparent)]
    Authorization(#[from] WrongAuthorization),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ResetError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Store(err.into())
    }
}

/// An administrator asks the daemon of `shim_id` to reset (needs `shim.reset`). Stored with a
/// `shim.reset.request` event; returns the request id to hand to the daemon.
pub fn request_reset(
    store: &mut Store,
    by: &Authorized,
    shim_id: &PortId,
    now_ms: u64,
) -> Result<u64, ResetError> {
    by.check(Permission::ShimReset)?;
    let event = by
        .event("shim.reset.request", shim_id.as_str(), Outcome::Success)
        .with_details(json!({}));
    store.transact(|tx| {
        tx.execute(
            "INSERT INTO shim_reset_requests (shim_id, requested_by, requested_ms, state)
             VALUES (?1, ?2, ?3, 'pending')",
            params![shim_id.as_str(), by.actor_name(), now_ms as i64],
        )?;
        let id = tx.last_insert_rowid() as u64;
        let mut event = event;
        event.details = json!({ "request": id });
        tx.audit_one(event)?;
        Ok(id)
    })
}

/// An administrator's reset request that the daemon could not carry out (it was not
/// running, or did not answer): settled as refused, with the `shim.reset` event saying why.
pub fn abandon_reset(
    store: &mut Store,
    by: &Authorized,
    shim_id: &PortId,
    request: Option<u64>,
    reason: &str,
    now_ms: u64,
) -> Result<(), ResetError> {
    by.check(Permission::ShimReset)?;
    let event = by
        .event("shim.reset", shim_id.as_str(), Outcome::Failure)
        .with_details(json!({ "request": request, "refused": reason }));
    store
        .transact(|tx| {
            if let Some(id) = request {
                let settled = tx.execute(
                "UPDATE shim_reset_requests SET state = 'refused', settled_ms = ?2, outcome = ?3
                 WHERE id = ?1 AND state = 'pending'",
                params![id as i64, now_ms as i64, reason],
            )?;
                if settled == 0 {
                    // The daemon settled it (and recorded it) before it went away.
                    return Ok(());
                }
            }
            Ok(tx.audit_one(event)?)
        })
        .or_else(|err| match err {
            ResetError::Store(StoreError::Unaudited) => Ok(()),
            other => Err(other),
        })
}

/// What the daemon decided about a reset request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetDecision {
    /// Done: the emergency stop and the port lock are cleared; `requested_by` asked for it.
    Done { requested_by: String },
    /// Refused, and why (fit for the administrator and the audit trail).
    Refused { reason: String },
}

/// The daemon of `port` settles reset request `request` (`by`: its service principal, which
/// holds `shim.reset`). Refused when the request is unknown, for another shim, already
/// settled or stale, or while `tamper_active` names a source still reporting tamper.
/// Otherwise the emergency stop and the port lock are cleared. Either way the request's state
/// and exactly one `shim.reset` event commit together.
pub fn perform_reset(
    store: &mut Store,
    by: &Authorized,
    port: &PortId,
    request: u64,
    from_state: &str,
    tamper_active: &[String],
    now_ms: u64,
) -> Result<ResetDecision, ResetError> {
    by.check(Permission::ShimReset)?;
    store.transact(|tx| {
        let row: Option<(String, String, i64, String)> = tx
            .query_row(
                "SELECT shim_id, requested_by, requested_ms, state FROM shim_reset_requests WHERE id = ?1",
                params![request as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let refusal = match &row {
            None => Some("no such reset request".to_owned()),
            Some((shim, ..)) if shim != port.as_str() => {
                Some(format!("the request is for shim {shim}"))
            }
            Some((.., state)) if state != "pending" => Some(format!("the request is already {state}")),
            Some((_, _, at, _)) if now_ms.saturating_sub(*at as u64) > RESET_REQUEST_TTL_MS => {
                Some("the request is stale; sign in and ask again".to_owned())
            }
            Some(_) if !tamper_active.is_empty() => Some(format!(
                "a tamper source still reports tamper: {}; clear it first",
                tamper_active.join(", ")
            )),
            Some(_) => None,
        };
        let requested_by = row.as_ref().map(|r| r.1.clone());
        let (decision, outcome, state) = match refusal {
            Some(reason) => (
                ResetDecision::Refused { reason },
                Outcome::Denied,
                "refused",
            ),
            None => {
                // The stop and the port locks belong to the box: a reset clears them all.
                tx.prepare_cached(
                    "UPDATE shim_state SET emergency_stop = 0, since = ?1, reason = ?2
                     WHERE emergency_stop != 0",
                )?
                .execute(params![
                    crate::now_rfc3339(),
                    format!(
                        "reset requested by {}",
                        requested_by.as_deref().unwrap_or("?")
                    )
                ])?;
                Identity::clear_port_locks_in(tx)?;
                Identity::clear_lock_in(tx, &Principal::Port(port.clone()))?;
                (
                    ResetDecision::Done {
                        requested_by: requested_by.clone().unwrap_or_default(),
                    },
                    Outcome::Success,
                    "done",
                )
            }
        };
        let said = match &decision {
            ResetDecision::Done { .. } => "done".to_owned(),
            ResetDecision::Refused { reason } => reason.clone(),
        };
        if row.is_some() {
            tx.execute(
                "UPDATE shim_reset_requests SET state = ?2, settled_ms = ?3, outcome = ?4 WHERE id = ?1",
                params![request as i64, state, now_ms as i64, said],
            )?;
        }
        let mut details = json!({
            "request": request,
            "requested_by": requested_by,
            "from": from_state,
        });
        if let ResetDecision::Refused { reason } = &decision {
            details["refused"] = json!(reason);
        }
        tx.audit_one(
            by.event("shim.reset", port.as_str(), outcome)
                .with_details(details),
        )?;
        Ok(decision)
    })
}
