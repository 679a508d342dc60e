//! The identity tables as typed rows: reading and writing users, password history and
//! lockout records. Only this file holds SQL for them.
//!
//! Implements: V84, V86

use rusqlite::{params, Connection, OptionalExtension};
use warden_core::lockout::{AttemptThrottle, FailureWindow};
use warden_core::rbac::Role;
use warden_core::report::report;
use warden_core::totp::TotpParams;

use crate::db::StoreError;

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("identity: {what}"))
}

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what}")))
}

/// One row of `users`.
#[derive(Clone)]
pub(super) struct UserRow {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub password_phc: Option<String>,
    pub password_changed: Option<u64>,
    pub disabled: bool,
    pub created: u64,
    pub created_by: String,
    pub totp: Option<TotpRow>,
    pub last_accepted_step: Option<u64>,
}

#[derive(Clone)]
pub(super) struct TotpRow {
    pub sealed: Vec<u8>,
    pub params: TotpParams,
    pub enrolled: Option<u64>,
}

const USER_COLUMNS: &str =
    "id, username, role, password_phc, password_changed, disabled, created, \
     created_by, totp_sealed, totp_params, totp_enrolled, last_accepted_step";

fn user_from_row(r: &rusqlite::Row<'_>) -> Result<UserRow, StoreError> {
    let role: String = r.get(2)?;
    let role: Role = role.parse().map_err(|_| corrupt("unknown role in users"))?;
    let sealed: Option<Vec<u8>> = r.get(8)?;
    let params: Option<String> = r.get(9)?;
    let totp = match (sealed, params) {
        (Some(sealed), Some(params)) => Some(TotpRow {
            sealed,
            params: serde_json::from_str(&params)
                .map_err(|err| corrupt(format!("stored TOTP parameters: {err}")))?,
            enrolled: r
                .get::<_, Option<i64>>(10)?
                .map(|v| to_u64(v, "enrollment time"))
                .transpose()?,
        }),
        (None, None) => None,
        _ => {
            return Err(corrupt(
                "TOTP secret and parameters must be stored together",
            ))
        }
    };
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        role,
        password_phc: r.get(3)?,
        password_changed: r
            .get::<_, Option<i64>>(4)?
            .map(|v| to_u64(v, "password change time"))
            .transpose()?,
        disabled: r.get::<_, i64>(5)? != 0,
        created: to_u64(r.get(6)?, "creation time")?,
        created_by: r.get(7)?,
        totp,
        last_accepted_step: r
            .get::<_, Option<i64>>(11)?
            .map(|v| to_u64(v, "time step"))
            .transpose()?,
    })
}

pub(super) fn load_user(conn: &Connection, username: &str) -> Result<Option<UserRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
    ))?;
    let mut rows = stmt.query(params![username])?;
    match rows.next()? {
        Some(row) => Ok(Some(user_from_row(row)?)),
        None => Ok(None),
    }
}

pub(super) fn all_users(conn: &Connection) -> Result<Vec<UserRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY username"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(user_from_row(row)?);
    }
    Ok(out)
}

pub(super) fn count_users(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
    to_u64(n, "user count")
}

/// Enabled administrators other than `except`.
pub(super) fn other_enabled_admins(conn: &Connection, except: &str) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM users WHERE role = 'administrator' AND disabled = 0 AND username != ?1",
        params![except],
        |r| r.get(0),
    )?;
    to_u64(n, "administrator count")
}

pub(super) struct NewUserRow<'a> {
    pub username: &'a str,
    pub role: Role,
    pub password_phc: Option<&'a str>,
    pub created: u64,
    pub created_by: &'a str,
}

pub(super) fn insert_user(conn: &Connection, user: &NewUserRow<'_>) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO users (username, role, password_phc, password_changed, created, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user.username,
            user.role.name(),
            user.password_phc,
            user.password_phc.map(|_| to_i64(user.created)),
            to_i64(user.created),
            user.created_by,
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn delete_user(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM users WHERE id = ?1", params![id])?;
    Ok(())
}

/// Every sealed TOTP secret: (user id, user name, sealed bytes).
pub(super) fn sealed_totp_secrets(
    conn: &Connection,
) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, username, totp_sealed FROM users WHERE totp_sealed IS NOT NULL ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn replace_totp_sealed(
    conn: &Connection,
    id: i64,
    sealed: &[u8],
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE users SET totp_sealed = ?2 WHERE id = ?1",
        params![id, sealed],
    )?;
    Ok(())
}

pub(super) fn set_disabled(conn: &Connection, id: i64, disabled: bool) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE users SET disabled = ?2 WHERE id = ?1",
        params![id, i64::from(disabled)],
    )?;
    Ok(())
}

/// The user's previous password hashes, newest first (not including the current one).
pub(super) fn password_history(conn: &Connection, id: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT phc FROM password_history WHERE user_id = ?1 ORDER BY retired DESC, rowid DESC",
    )?;
    let rows = stmt.query_map(params![id], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Replaces the current password hash, moving the old one into the history and keeping at most
/// `keep` retired hashes.
pub(super) fn set_password(
    conn: &Connection,
    id: i64,
    old_phc: Option<&str>,
    new_phc: &str,
    now: u64,
    keep: usize,
) -> Result<(), StoreError> {
    if let Some(old) = old_phc {
        conn.execute(
            "INSERT INTO password_history (user_id, retired, phc) VALUES (?1, ?2, ?3)",
            params![id, to_i64(now), old],
        )?;
    }
    conn.execute(
        "DELETE FROM password_history WHERE user_id = ?1 AND rowid NOT IN
           (SELECT rowid FROM password_history WHERE user_id = ?1
            ORDER BY retired DESC, rowid DESC LIMIT ?2)",
        params![id, to_i64(keep as u64)],
    )?;
    conn.execute(
        "UPDATE users SET password_phc = ?2, password_changed = ?3 WHERE id = ?1",
        params![id, new_phc, to_i64(now)],
    )?;
    Ok(())
}

/// A new hash of the same password (after a policy change), not a password change.
pub(super) fn rehash_password(conn: &Connection, id: i64, new_phc: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE users SET password_phc = ?2 WHERE id = ?1",
        params![id, new_phc],
    )?;
    Ok(())
}

pub(super) fn set_totp(
    conn: &Connection,
    id: i64,
    sealed: &[u8],
    params: &TotpParams,
    now: u64,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(params).map_err(|err| corrupt(report(&err)))?;
    conn.execute(
        "UPDATE users SET totp_sealed = ?2, totp_params = ?3, totp_enrolled = ?4,
                          last_accepted_step = NULL
         WHERE id = ?1",
        params![id, sealed, json, to_i64(now)],
    )?;
    Ok(())
}

/// Removes a user's TOTP enrollment (break-glass: the authenticator may be what was lost).
pub(super) fn clear_totp(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE users SET totp_sealed = NULL, totp_params = NULL, totp_enrolled = NULL,
                          last_accepted_step = NULL
         WHERE id = ?1 AND totp_sealed IS NOT NULL",
        params![id],
    )? > 0)
}

/// Compare-and-set of the replay state: stores `step` only if it is later than the stored
/// step. Returns false when another accept got there first (the code is then a replay).
pub(super) fn advance_step(conn: &Connection, id: i64, step: u64) -> Result<bool, StoreError> {
    let Ok(step) = i64::try_from(step) else {
        return Ok(false);
    };
    let changed = conn.execute(
        "UPDATE users SET last_accepted_step = ?2
         WHERE id = ?1 AND (last_accepted_step IS NULL OR last_accepted_step < ?2)",
        params![id, step],
    )?;
    Ok(changed == 1)
}

/// One principal's failure window and attempt throttle.
#[derive(Clone, Debug, Default)]
pub(super) struct LockRecord {
    pub window: FailureWindow,
    pub throttle: AttemptThrottle,
}

pub(super) fn load_lock(conn: &Connection, principal: &str) -> Result<LockRecord, StoreError> {
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT window, throttle FROM auth_lockouts WHERE principal = ?1",
            params![principal],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        None => Ok(LockRecord::default()),
        Some((window, throttle)) => Ok(LockRecord {
            window: serde_json::from_str(&window)
                .map_err(|err| corrupt(format!("lockout window of {principal}: {err}")))?,
            throttle: serde_json::from_str(&throttle)
                .map_err(|err| corrupt(format!("attempt throttle of {principal}: {err}")))?,
        }),
    }
}

pub(super) fn save_lock(
    conn: &Connection,
    principal: &str,
    record: &LockRecord,
) -> Result<(), StoreError> {
    let window = serde_json::to_string(&record.window).map_err(|err| corrupt(report(&err)))?;
    let throttle = serde_json::to_string(&record.throttle).map_err(|err| corrupt(report(&err)))?;
    conn.execute(
        "INSERT INTO auth_lockouts (principal, window, throttle, locked_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (principal) DO UPDATE SET window = ?2, throttle = ?3, locked_at = ?4",
        params![
            principal,
            window,
            throttle,
            record.window.locked_at().map(to_i64)
        ],
    )?;
    Ok(())
}

/// Every principal that is locked: (key, locked at).
pub(super) fn locked_principals(conn: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT principal, locked_at FROM auth_lockouts WHERE locked_at IS NOT NULL ORDER BY principal",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (principal, at) = row?;
        out.push((principal, to_u64(at, "lock time")?));
    }
    Ok(out)
}
