//! The shim's persisted state: whether an emergency stop is in force. It survives restarts, so
//! power-cycling a tampered box does not reopen the port; only `warden shim reset` clears it.

use rusqlite::{params, OptionalExtension};

use crate::db::{Database, StoreError};

pub const MIGRATION_SQL: &str = "
    CREATE TABLE shim_state (
        shim_id        TEXT PRIMARY KEY,
        emergency_stop INTEGER NOT NULL,
        since          TEXT,
        reason         TEXT
    );
";

/// Whether `shim_id` is in emergency stop.
pub fn emergency_stop(db: &Database, shim_id: &str) -> Result<bool, StoreError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT emergency_stop FROM shim_state WHERE shim_id = ?1",
            params![shim_id],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .is_some_and(|v| v != 0))
}

/// Sets or clears the emergency stop for `shim_id`.
pub fn set_emergency_stop(
    db: &Database,
    shim_id: &str,
    on: bool,
    reason: &str,
) -> Result<(), StoreError> {
    db.conn().execute(
        "INSERT INTO shim_state (shim_id, emergency_stop, since, reason) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (shim_id) DO UPDATE SET emergency_stop = ?2, since = ?3, reason = ?4",
        params![shim_id, on as i64, crate::now_rfc3339(), reason],
    )?;
    Ok(())
}
