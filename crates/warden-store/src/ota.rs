//! The OTA server's tables: cards and their PSKs (sealed), the per-card script queue, the
//! results of each script (one row per C-APDU with its R-APDU), and admin sessions.
//!
//! A PSK is sealed with AES-256-GCM under the `database` purpose key, bound to the label
//! `warden ota psk v1` ‖ identity, so a sealed key cannot be moved to another card's row. (The
//! database file is itself encrypted by SQLCipher; the seal keeps PSKs out of anything that
//! reads rows, such as a debugging session or a future export.)
//!
//! Script life cycle: `pending` → `in_flight` (sent to the card, durable before the HTTP
//! response leaves) → `done` (results stored) or `outcome_unknown` (a resume left it unclear
//! whether the card ran a non-idempotent script). A script found `in_flight` when its card opens
//! a new session, with no live session holding it, goes back to `pending` if it may be run
//! twice, else to `outcome_unknown`.
//!
//! Functions take a `rusqlite::Connection` (a `Transaction` derefs to one), so the OTA server's
//! database thread can batch several calls into one transaction; all SQL is parameterized.
//!
//! Implements: O38, O64, O65

use rusqlite::{params, Connection, OptionalExtension};
use warden_core::secret::{Key32, SecretBytes};

use crate::db::StoreError;

const PSK_LABEL: &[u8] = b"warden ota psk v1";

/// Shortest and longest PSK accepted (16 bytes = AES-128 strength; OpenSSL allows up to 512).
pub const PSK_MIN_LEN: usize = 16;
pub const PSK_MAX_LEN: usize = 64;
/// Longest card identity (PSK identity), in bytes.
pub const IDENTITY_MAX_LEN: usize = 128;

/// The migration that creates these tables (appended to [`crate::migrations::MIGRATIONS`]).
pub const MIGRATION_SQL: &str = "
    CREATE TABLE ota_cards (
        identity   TEXT PRIMARY KEY,
        psk_sealed BLOB NOT NULL,
        created    TEXT NOT NULL,
        updated    TEXT NOT NULL
    );
    CREATE TABLE ota_meta (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO ota_meta (name, value) VALUES ('keys_version', 0);
    CREATE TABLE ota_scripts (
        id                   INTEGER PRIMARY KEY AUTOINCREMENT,
        card                 TEXT    NOT NULL,
        label                TEXT,
        body                 BLOB    NOT NULL,
        targeted_application TEXT,
        redelivery           TEXT    NOT NULL CHECK (redelivery IN ('allowed', 'forbidden')),
        state                TEXT    NOT NULL
                             CHECK (state IN ('pending', 'in_flight', 'done', 'outcome_unknown')),
        queued               TEXT    NOT NULL,
        deliveries           INTEGER NOT NULL DEFAULT 0,
        delivered            TEXT,
        session_id           TEXT,
        completed            TEXT,
        round_trip_us        INTEGER,
        script_status        TEXT,
        response             BLOB
    );
    CREATE INDEX ota_scripts_queue ON ota_scripts (card, state, id);
    CREATE TABLE ota_results (
        script_id INTEGER NOT NULL REFERENCES ota_scripts (id),
        idx       INTEGER NOT NULL,
        command   BLOB    NOT NULL,
        response  BLOB,
        sw        INTEGER,
        PRIMARY KEY (script_id, idx)
    );
    CREATE TABLE ota_sessions (
        id           TEXT PRIMARY KEY,
        card         TEXT,
        agent        TEXT,
        peer         TEXT    NOT NULL,
        tls_version  TEXT,
        cipher       TEXT,
        started      TEXT    NOT NULL,
        ended        TEXT,
        state        TEXT    NOT NULL,
        close_reason TEXT,
        scripts      INTEGER NOT NULL DEFAULT 0,
        apdus        INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX ota_sessions_card ON ota_sessions (card, started);
";

/// The migration that records, with each delivery, the `seq` of the Next-URI it went out with:
/// after a restart, results a card resumes with are matched to its script in flight by it.
pub const DELIVERY_SEQ_SQL: &str = "ALTER TABLE ota_scripts ADD COLUMN delivery_seq INTEGER;";

/// Why an OTA store call was refused (bad input; database failures are [`StoreError`]).
#[derive(Debug, thiserror::Error)]
pub enum OtaStoreError {
    #[error("card identity must be 1 to {IDENTITY_MAX_LEN} printable ASCII characters")]
    BadIdentity,
    #[error("a PSK has {PSK_MIN_LEN} to {PSK_MAX_LEN} bytes; got {0}")]
    BadKeyLength(usize),
    #[error("card {0:?} already has a key (remove it first, or use --replace)")]
    CardExists(String),
    #[error("no card {0:?}")]
    NoCard(String),
    #[error("the stored key of card {0:?} does not open (moved from another row or database)")]
    KeyDoesNotOpen(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for OtaStoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(e))
    }
}

/// Checks a card identity: printable ASCII, no spaces at the ends, bounded.
pub fn check_identity(identity: &str) -> Result<(), OtaStoreError> {
    if identity.is_empty()
        || identity.len() > IDENTITY_MAX_LEN
        || !identity.bytes().all(|b| (0x20..0x7f).contains(&b))
        || identity.trim() != identity
    {
        return Err(OtaStoreError::BadIdentity);
    }
    Ok(())
}

fn label(identity: &str) -> Vec<u8> {
    [PSK_LABEL, b"\0", identity.as_bytes()].concat()
}

/// Re-seals every card's PSK from the `old` database key to `new`, inside the transaction that
/// re-keys the database (a database key rotation). Returns how many.
pub(crate) fn reseal_psks(
    conn: &Connection,
    old: &Key32,
    new: &Key32,
) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare("SELECT identity, psk_sealed FROM ota_cards ORDER BY identity")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (identity, sealed) in &rows {
        let psk = warden_core::aead::open(old, &label(identity), sealed).map_err(|_| {
            StoreError::Corrupt(format!(
                "ota: the PSK of {identity} does not open with the database key"
            ))
        })?;
        let resealed = warden_core::aead::seal(new, &label(identity), psk.expose_secret());
        conn.execute(
            "UPDATE ota_cards SET psk_sealed = ?2 WHERE identity = ?1",
            params![identity, resealed],
        )?;
    }
    Ok(rows.len())
}

fn bump_keys_version(conn: &Connection) -> Result<(), OtaStoreError> {
    conn.execute(
        "UPDATE ota_meta SET value = value + 1 WHERE name = 'keys_version'",
        [],
    )?;
    Ok(())
}

/// Stores `psk` for `identity`, sealed under `db_key`. With `replace`, overwrites a present key.
pub fn add_key(
    conn: &Connection,
    db_key: &Key32,
    identity: &str,
    psk: &[u8],
    replace: bool,
) -> Result<(), OtaStoreError> {
    check_identity(identity)?;
    if !(PSK_MIN_LEN..=PSK_MAX_LEN).contains(&psk.len()) {
        return Err(OtaStoreError::BadKeyLength(psk.len()));
    }
    let sealed = warden_core::aead::seal(db_key, &label(identity), psk);
    let now = crate::now_rfc3339();
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM ota_cards WHERE identity = ?1",
            params![identity],
            |r| r.get(0),
        )
        .optional()?;
    match (exists, replace) {
        (Some(_), false) => return Err(OtaStoreError::CardExists(identity.to_string())),
        (Some(_), true) => {
            conn.execute(
                "UPDATE ota_cards SET psk_sealed = ?2, updated = ?3 WHERE identity = ?1",
                params![identity, sealed, now],
            )?;
        }
        (None, _) => {
            conn.execute(
                "INSERT INTO ota_cards (identity, psk_sealed, created, updated) VALUES (?1, ?2, ?3, ?3)",
                params![identity, sealed, now],
            )?;
        }
    }
    bump_keys_version(conn)
}

/// Removes a card's key. Its queued scripts and results stay.
pub fn remove_key(conn: &Connection, identity: &str) -> Result<(), OtaStoreError> {
    let n = conn.execute(
        "DELETE FROM ota_cards WHERE identity = ?1",
        params![identity],
    )?;
    if n == 0 {
        return Err(OtaStoreError::NoCard(identity.to_string()));
    }
    bump_keys_version(conn)
}

/// A card as listed (no key material).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CardRow {
    pub identity: String,
    pub created: String,
    pub updated: String,
    pub pending_scripts: u64,
}

pub fn list_cards(conn: &Connection) -> Result<Vec<CardRow>, OtaStoreError> {
    let mut stmt = conn.prepare(
        "SELECT c.identity, c.created, c.updated,
                (SELECT count(*) FROM ota_scripts s WHERE s.card = c.identity AND s.state = 'pending')
         FROM ota_cards c ORDER BY c.identity",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(CardRow {
            identity: r.get(0)?,
            created: r.get(1)?,
            updated: r.get(2)?,
            pending_scripts: r.get::<_, i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Scripts waiting and out, for the dashboard's queue depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    pub pending: u64,
    pub in_flight: u64,
}

pub fn queue_depth(conn: &Connection) -> Result<QueueDepth, OtaStoreError> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'in_flight'), 0)
         FROM ota_scripts WHERE state IN ('pending', 'in_flight')",
        [],
        |r| {
            Ok(QueueDepth {
                pending: r.get::<_, i64>(0)? as u64,
                in_flight: r.get::<_, i64>(1)? as u64,
            })
        },
    )?)
}

/// A card as the dashboard lists it: every identity with a stored key, a script or a session,
/// with its pending scripts and its latest session.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CardOverview {
    pub identity: String,
    /// The card has a PSK in the database (it may also have one in the key file).
    pub stored_key: bool,
    pub pending_scripts: u64,
    pub last_session: Option<String>,
    pub last_state: Option<String>,
    pub last_close_reason: Option<String>,
}

pub fn card_overview(conn: &Connection) -> Result<Vec<CardOverview>, OtaStoreError> {
    let mut cards: std::collections::BTreeMap<String, CardOverview> = Default::default();
    let entry = |cards: &mut std::collections::BTreeMap<String, CardOverview>, id: String| {
        cards
            .entry(id.clone())
            .or_insert_with(|| CardOverview {
                identity: id,
                ..Default::default()
            })
            .clone()
    };
    {
        let mut stmt = conn.prepare("SELECT identity FROM ota_cards")?;
        for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let id = id?;
            let mut c = entry(&mut cards, id.clone());
            c.stored_key = true;
            cards.insert(id, c);
        }
    }
    {
        let mut stmt = conn.prepare(
            "SELECT card, count(*) FROM ota_scripts WHERE state = 'pending' GROUP BY card",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (id, n) = row?;
            let mut c = entry(&mut cards, id.clone());
            c.pending_scripts = n as u64;
            cards.insert(id, c);
        }
    }
    {
        // SQLite takes the bare columns from the row holding max(started).
        let mut stmt = conn.prepare(
            "SELECT card, max(started), state, close_reason FROM ota_sessions
             WHERE card IS NOT NULL GROUP BY card",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        for row in rows {
            let (id, started, state, reason) = row?;
            let mut c = entry(&mut cards, id.clone());
            c.last_session = Some(started);
            c.last_state = Some(state);
            c.last_close_reason = reason;
            cards.insert(id, c);
        }
    }
    Ok(cards.into_values().collect())
}

/// A stored key as loaded: the identity and the opened key (or why it did not open).
pub type LoadedKey = (String, Result<SecretBytes, OtaStoreError>);

/// Every stored key, opened: for the server's in-memory key cache. A row that does not open
/// is reported by identity and skipped by the caller.
pub fn load_keys(conn: &Connection, db_key: &Key32) -> Result<Vec<LoadedKey>, OtaStoreError> {
    let mut stmt = conn.prepare("SELECT identity, psk_sealed FROM ota_cards ORDER BY identity")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (identity, sealed) = row?;
        let opened = warden_core::aead::open(db_key, &label(&identity), &sealed)
            .map_err(|_| OtaStoreError::KeyDoesNotOpen(identity.clone()));
        out.push((identity, opened));
    }
    Ok(out)
}

/// A counter bumped by every key change, so a running server knows when to reload.
pub fn keys_version(conn: &Connection) -> Result<i64, OtaStoreError> {
    Ok(conn.query_row(
        "SELECT value FROM ota_meta WHERE name = 'keys_version'",
        [],
        |r| r.get(0),
    )?)
}

/// Whether a script may be sent again when a resume leaves its outcome unclear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredRedelivery {
    Allowed,
    Forbidden,
}

impl StoredRedelivery {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Forbidden => "forbidden",
        }
    }

    fn parse(s: &str) -> Result<Self, rusqlite::Error> {
        match s {
            "allowed" => Ok(Self::Allowed),
            "forbidden" => Ok(Self::Forbidden),
            other => Err(rusqlite::Error::InvalidColumnType(
                0,
                format!("redelivery {other:?}"),
                rusqlite::types::Type::Text,
            )),
        }
    }
}

/// A script to queue: the encoded TS 102 226 command script and how to deliver it.
#[derive(Debug, Clone)]
pub struct NewScript {
    pub card: String,
    pub label: Option<String>,
    pub body: Vec<u8>,
    /// `//aid/<RID>/<PIX>`, sent as `X-Admin-Targeted-Application`.
    pub targeted_application: Option<String>,
    pub redelivery: StoredRedelivery,
}

/// Appends a script to a card's queue; returns its id.
pub fn push_script(conn: &Connection, script: &NewScript) -> Result<u64, OtaStoreError> {
    check_identity(&script.card)?;
    conn.execute(
        "INSERT INTO ota_scripts (card, label, body, targeted_application, redelivery, state, queued)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
        params![
            script.card,
            script.label,
            script.body,
            script.targeted_application,
            script.redelivery.as_str(),
            crate::now_rfc3339()
        ],
    )?;
    Ok(conn.last_insert_rowid() as u64)
}

/// A queued script, as the server delivers it.
#[derive(Debug, Clone)]
pub struct PendingScript {
    pub id: u64,
    pub body: Vec<u8>,
    pub targeted_application: Option<String>,
    pub redelivery: StoredRedelivery,
}

/// The first pending script of `card`, if any (peeked, not taken).
pub fn next_pending(conn: &Connection, card: &str) -> Result<Option<PendingScript>, OtaStoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, body, targeted_application, redelivery FROM ota_scripts
         WHERE card = ?1 AND state = 'pending' ORDER BY id LIMIT 1",
    )?;
    Ok(stmt
        .query_row(params![card], |r| {
            Ok(PendingScript {
                id: r.get::<_, i64>(0)? as u64,
                body: r.get(1)?,
                targeted_application: r.get(2)?,
                redelivery: StoredRedelivery::parse(&r.get::<_, String>(3)?)?,
            })
        })
        .optional()?)
}

/// Marks a script sent in `session_id` (first delivery or redelivery).
pub fn mark_delivered(
    conn: &Connection,
    script: u64,
    session_id: &str,
    seq: u32,
    at: &str,
) -> Result<(), OtaStoreError> {
    conn.prepare_cached(
        "UPDATE ota_scripts SET state = 'in_flight', deliveries = deliveries + 1,
                delivered = ?2, session_id = ?3, delivery_seq = ?4 WHERE id = ?1",
    )?
    .execute(params![script as i64, at, session_id, seq])?;
    Ok(())
}

/// One C-APDU of a script with what the card answered (`None` if it did not run it).
#[derive(Debug, Clone)]
pub struct ExchangeRow {
    pub command: Vec<u8>,
    /// The R-APDU: data followed by SW1 SW2.
    pub response: Option<Vec<u8>>,
    pub sw: Option<u16>,
}

/// Stores a script's outcome and its exchanges; marks it done.
pub fn record_results(
    conn: &Connection,
    script: u64,
    status: &str,
    response_body: Option<&[u8]>,
    exchanges: &[ExchangeRow],
    round_trip_us: Option<u64>,
) -> Result<(), OtaStoreError> {
    conn.prepare_cached(
        "UPDATE ota_scripts SET state = 'done', completed = ?2, script_status = ?3, response = ?4,
                round_trip_us = ?5 WHERE id = ?1",
    )?
    .execute(params![
        script as i64,
        crate::now_rfc3339(),
        status,
        response_body,
        round_trip_us.map(|v| v as i64)
    ])?;
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO ota_results (script_id, idx, command, response, sw)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (i, e) in exchanges.iter().enumerate() {
        insert.execute(params![
            script as i64,
            i as i64,
            e.command,
            e.response,
            e.sw.map(i64::from)
        ])?;
    }
    Ok(())
}

/// Marks a script whose outcome a resume left unknown.
pub fn mark_outcome_unknown(conn: &Connection, script: u64) -> Result<(), OtaStoreError> {
    conn.execute(
        "UPDATE ota_scripts SET state = 'outcome_unknown', completed = ?2 WHERE id = ?1",
        params![script as i64, crate::now_rfc3339()],
    )?;
    Ok(())
}

/// What happened to scripts left `in_flight` by an earlier session of `card`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Idempotent scripts put back in the queue.
    pub requeued: Vec<u64>,
    /// Non-idempotent scripts whose outcome is now unknown.
    pub unknown: Vec<u64>,
}

/// A script a session had in flight: what was sent, and under which Next-URI `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub id: u64,
    pub body: Vec<u8>,
    /// `None` for a delivery stored before the seq was recorded (schema version 10).
    pub seq: Option<u32>,
}

/// The script `session_id` of `card` has in flight, if any.
pub fn in_flight_of_session(
    conn: &Connection,
    card: &str,
    session_id: &str,
) -> Result<Option<InFlight>, OtaStoreError> {
    Ok(conn
        .query_row(
            "SELECT id, body, delivery_seq FROM ota_scripts
             WHERE card = ?1 AND session_id = ?2 AND state = 'in_flight' ORDER BY id LIMIT 1",
            params![card, session_id],
            |r| {
                Ok(InFlight {
                    id: r.get::<_, i64>(0)? as u64,
                    body: r.get(1)?,
                    seq: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Settles scripts of `card` still `in_flight` from a session that is gone (server restart, a
/// card that started over instead of resuming).
pub fn recover_in_flight(conn: &Connection, card: &str) -> Result<Recovered, OtaStoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, redelivery FROM ota_scripts WHERE card = ?1 AND state = 'in_flight' ORDER BY id",
    )?;
    let rows = stmt
        .query_map(params![card], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                StoredRedelivery::parse(&r.get::<_, String>(1)?)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Recovered::default();
    for (id, redelivery) in rows {
        match redelivery {
            StoredRedelivery::Allowed => {
                conn.execute(
                    "UPDATE ota_scripts SET state = 'pending' WHERE id = ?1",
                    params![id as i64],
                )?;
                out.requeued.push(id);
            }
            StoredRedelivery::Forbidden => {
                mark_outcome_unknown(conn, id)?;
                out.unknown.push(id);
            }
        }
    }
    Ok(out)
}

/// A script with its results, for `warden ota results`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScriptReport {
    pub id: u64,
    pub card: String,
    pub label: Option<String>,
    pub state: String,
    pub redelivery: StoredRedelivery,
    pub targeted_application: Option<String>,
    pub queued: String,
    pub deliveries: u64,
    pub delivered: Option<String>,
    pub completed: Option<String>,
    pub session_id: Option<String>,
    pub script_status: Option<String>,
    /// From sending the script to receiving its results, in microseconds.
    pub round_trip_us: Option<u64>,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub exchanges: Vec<ExchangeReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExchangeReport {
    pub index: u32,
    #[serde(serialize_with = "hex_ser")]
    pub command: Vec<u8>,
    #[serde(serialize_with = "opt_hex_ser")]
    pub response: Option<Vec<u8>>,
    pub sw: Option<u16>,
}

fn hex_ser<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode_upper(b))
}

fn opt_hex_ser<S: serde::Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&hex::encode_upper(b)),
        None => s.serialize_none(),
    }
}

/// A card's scripts (newest last), with their exchanges; at most `limit` scripts, newest kept.
pub fn script_reports(
    conn: &Connection,
    card: &str,
    limit: Option<u64>,
) -> Result<Vec<ScriptReport>, OtaStoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, card, label, state, redelivery, targeted_application, queued, deliveries,
                delivered, completed, session_id, script_status, round_trip_us, body
         FROM ota_scripts WHERE card = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let limit = limit.map_or(-1, |l| l as i64);
    let mut scripts = stmt
        .query_map(params![card, limit], |r| {
            Ok(ScriptReport {
                id: r.get::<_, i64>(0)? as u64,
                card: r.get(1)?,
                label: r.get(2)?,
                state: r.get(3)?,
                redelivery: StoredRedelivery::parse(&r.get::<_, String>(4)?)?,
                targeted_application: r.get(5)?,
                queued: r.get(6)?,
                deliveries: r.get::<_, i64>(7)? as u64,
                delivered: r.get(8)?,
                completed: r.get(9)?,
                session_id: r.get(10)?,
                script_status: r.get(11)?,
                round_trip_us: r.get::<_, Option<i64>>(12)?.map(|v| v as u64),
                body: r.get(13)?,
                exchanges: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    scripts.reverse();
    let mut ex = conn.prepare(
        "SELECT idx, command, response, sw FROM ota_results WHERE script_id = ?1 ORDER BY idx",
    )?;
    for s in &mut scripts {
        s.exchanges = ex
            .query_map(params![s.id as i64], |r| {
                Ok(ExchangeReport {
                    index: r.get::<_, i64>(0)? as u32,
                    command: r.get(1)?,
                    response: r.get(2)?,
                    sw: r.get::<_, Option<i64>>(3)?.map(|v| v as u16),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
    }
    Ok(scripts)
}

/// A session row as first written (state `HANDSHAKING` has no row; rows start at CONNECTED).
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id: &'a str,
    pub card: Option<&'a str>,
    pub peer: &'a str,
    pub tls_version: Option<&'a str>,
    pub cipher: Option<&'a str>,
    pub state: &'a str,
}

pub fn insert_session(conn: &Connection, s: &NewSession<'_>) -> Result<(), OtaStoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO ota_sessions (id, card, peer, tls_version, cipher, started, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        s.id,
        s.card,
        s.peer,
        s.tls_version,
        s.cipher,
        crate::now_rfc3339(),
        s.state
    ])?;
    Ok(())
}

/// Updates a session's state and counters; `close_reason` ends it.
pub fn update_session(
    conn: &Connection,
    id: &str,
    state: &str,
    agent: Option<&str>,
    scripts: u64,
    apdus: u64,
    close_reason: Option<&str>,
) -> Result<(), OtaStoreError> {
    let ended = close_reason.map(|_| crate::now_rfc3339());
    conn.prepare_cached(
        "UPDATE ota_sessions SET state = ?2, agent = coalesce(?3, agent), scripts = ?4, apdus = ?5,
                close_reason = coalesce(?6, close_reason), ended = coalesce(?7, ended)
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        state,
        agent,
        scripts as i64,
        apdus as i64,
        close_reason,
        ended
    ])?;
    Ok(())
}

/// A stored session, for listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRow {
    pub id: String,
    pub card: Option<String>,
    pub agent: Option<String>,
    pub peer: String,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
    pub started: String,
    pub ended: Option<String>,
    pub state: String,
    pub close_reason: Option<String>,
    pub scripts: u64,
    pub apdus: u64,
}

/// The most recent sessions (of one card, or all), newest first.
pub fn recent_sessions(
    conn: &Connection,
    card: Option<&str>,
    limit: u64,
) -> Result<Vec<SessionRow>, OtaStoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, card, agent, peer, tls_version, cipher, started, ended, state, close_reason,
                scripts, apdus
         FROM ota_sessions WHERE ?1 IS NULL OR card = ?1 ORDER BY started DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![card, limit as i64], |r| {
        Ok(SessionRow {
            id: r.get(0)?,
            card: r.get(1)?,
            agent: r.get(2)?,
            peer: r.get(3)?,
            tls_version: r.get(4)?,
            cipher: r.get(5)?,
            started: r.get(6)?,
            ended: r.get(7)?,
            state: r.get(8)?,
            close_reason: r.get(9)?,
            scripts: r.get::<_, i64>(10)? as u64,
            apdus: r.get::<_, i64>(11)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A session a previous run left open, as [`close_stale_sessions`] closed it.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleSession {
    pub id: String,
    pub card: Option<String>,
    pub peer: String,
    /// The state it was left in (`CONNECTED`, `ACTIVE`).
    pub state: String,
    /// From its start to now.
    pub duration_s: f64,
    pub scripts: u64,
    pub apdus: u64,
}

/// Closes the sessions a previous run left open (it was killed) with `reason`, and returns
/// them, for their close records.
pub fn close_stale_sessions(
    conn: &Connection,
    reason: &str,
) -> Result<Vec<StaleSession>, OtaStoreError> {
    // A session's counters are written when it closes: for one that never did, they are
    // counted from what is stored (scripts sent in it, C-APDUs answered), never lowered.
    conn.execute(
        "UPDATE ota_sessions
            SET scripts = max(ota_sessions.scripts, c.scripts), apdus = max(ota_sessions.apdus, c.apdus)
           FROM (SELECT s.session_id AS sid, count(DISTINCT s.id) AS scripts,
                        count(r.response) AS apdus
                   FROM ota_scripts s LEFT JOIN ota_results r ON r.script_id = s.id
                  WHERE s.session_id IN (SELECT id FROM ota_sessions WHERE ended IS NULL)
                  GROUP BY s.session_id) AS c
          WHERE ota_sessions.ended IS NULL AND ota_sessions.id = c.sid",
        [],
    )?;
    let stale = conn
        .prepare(
            "SELECT id, card, peer, state,
                    coalesce((julianday('now') - julianday(started)) * 86400.0, 0.0), scripts, apdus
               FROM ota_sessions WHERE ended IS NULL ORDER BY started, id",
        )?
        .query_map([], |r| {
            Ok(StaleSession {
                id: r.get(0)?,
                card: r.get(1)?,
                peer: r.get(2)?,
                state: r.get(3)?,
                duration_s: r.get::<_, f64>(4)?.max(0.0),
                scripts: r.get::<_, i64>(5)? as u64,
                apdus: r.get::<_, i64>(6)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    conn.execute(
        "UPDATE ota_sessions SET state = 'CLOSED', close_reason = ?1, ended = ?2 WHERE ended IS NULL",
        params![reason, crate::now_rfc3339()],
    )?;
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Database;

    fn db() -> (tempfile::TempDir, Database, Key32) {
        let dir = tempfile::tempdir().unwrap();
        let key = Key32::from_bytes([7; 32]);
        let db = Database::create(&dir.path().join("w.db"), &key).unwrap();
        (dir, db, key)
    }

    /// Verifies: O38, V73
    #[test]
    fn keys_are_sealed_listed_and_versioned() {
        let (_d, db, key) = db();
        let c = db.conn();
        let v0 = keys_version(c).unwrap();
        add_key(c, &key, "card-1", &[1; 16], false).unwrap();
        assert!(matches!(
            add_key(c, &key, "card-1", &[2; 16], false),
            Err(OtaStoreError::CardExists(_))
        ));
        add_key(c, &key, "card-1", &[2; 16], true).unwrap();
        assert!(matches!(
            add_key(c, &key, "card-2", &[2; 8], false),
            Err(OtaStoreError::BadKeyLength(8))
        ));
        assert!(matches!(
            add_key(c, &key, " sp", &[2; 16], false),
            Err(OtaStoreError::BadIdentity)
        ));
        assert!(keys_version(c).unwrap() > v0);
        let keys = load_keys(c, &key).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].1.as_ref().unwrap().expose_secret(), &[2; 16]);
        // The sealed value is not the key, and does not open under another row's label.
        let sealed: Vec<u8> = c
            .query_row("SELECT psk_sealed FROM ota_cards", [], |r| r.get(0))
            .unwrap();
        assert!(!sealed.windows(16).any(|w| w == [2; 16]));
        c.execute(
            "INSERT INTO ota_cards VALUES ('card-3', ?1, 'x', 'x')",
            params![sealed],
        )
        .unwrap();
        let keys = load_keys(c, &key).unwrap();
        assert!(matches!(
            keys[1].1,
            Err(OtaStoreError::KeyDoesNotOpen(ref id)) if id == "card-3"
        ));
        remove_key(c, "card-3").unwrap();
        assert!(matches!(
            remove_key(c, "card-3"),
            Err(OtaStoreError::NoCard(_))
        ));
        assert_eq!(list_cards(c).unwrap().len(), 1);
    }

    #[test]
    fn queue_life_cycle_and_recovery() {
        let (_d, db, _key) = db();
        let c = db.conn();
        let new = |redelivery| NewScript {
            card: "card-1".into(),
            label: None,
            body: vec![0xAA, 0x00],
            targeted_application: None,
            redelivery,
        };
        let a = push_script(c, &new(StoredRedelivery::Allowed)).unwrap();
        let b = push_script(c, &new(StoredRedelivery::Forbidden)).unwrap();
        assert_eq!(next_pending(c, "card-1").unwrap().unwrap().id, a);
        assert!(next_pending(c, "card-2").unwrap().is_none());
        mark_delivered(c, a, "s1", 1, "t").unwrap();
        assert_eq!(next_pending(c, "card-1").unwrap().unwrap().id, b);
        record_results(
            c,
            a,
            "ok",
            Some(&[0xAB]),
            &[ExchangeRow {
                command: vec![0, 0xA4, 4, 0],
                response: Some(vec![0x90, 0]),
                sw: Some(0x9000),
            }],
            Some(1500),
        )
        .unwrap();
        mark_delivered(c, b, "s1", 1, "t").unwrap();
        let c_id = push_script(c, &new(StoredRedelivery::Allowed)).unwrap();
        mark_delivered(c, c_id, "s1", 2, "t").unwrap();
        let r = recover_in_flight(c, "card-1").unwrap();
        assert_eq!(r.unknown, vec![b]);
        assert_eq!(r.requeued, vec![c_id]);
        let reports = script_reports(c, "card-1", None).unwrap();
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[0].state, "done");
        assert_eq!(reports[0].exchanges[0].sw, Some(0x9000));
        assert_eq!(reports[1].state, "outcome_unknown");
        assert_eq!(reports[2].state, "pending");
        assert_eq!(script_reports(c, "card-1", Some(1)).unwrap()[0].id, c_id);
    }

    /// Session `s1` of `card-1`, in `state`.
    fn session_s1(c: &Connection, state: &str) {
        insert_session(
            c,
            &NewSession {
                id: "s1",
                card: Some("card-1"),
                peer: "127.0.0.1:5",
                tls_version: Some("TLSv1.2"),
                cipher: Some("PSK-AES128-CBC-SHA256"),
                state,
            },
        )
        .unwrap();
    }

    /// Verifies: O64
    #[test]
    fn sessions_round_trip() {
        let (_d, db, _key) = db();
        let c = db.conn();
        session_s1(c, "CONNECTED");
        update_session(c, "s1", "ACTIVE", Some("agent"), 1, 3, None).unwrap();
        let s = &recent_sessions(c, Some("card-1"), 10).unwrap()[0];
        assert_eq!((s.state.as_str(), s.apdus), ("ACTIVE", 3));
        let stale = close_stale_sessions(c, "server_restart").unwrap();
        assert_eq!(
            (stale.len(), stale[0].id.as_str(), stale[0].state.as_str()),
            (1, "s1", "ACTIVE")
        );
        assert!(stale[0].duration_s >= 0.0);
        let s = &recent_sessions(c, None, 10).unwrap()[0];
        assert_eq!(s.close_reason.as_deref(), Some("server_restart"));
        assert!(close_stale_sessions(c, "server_restart")
            .unwrap()
            .is_empty());
    }

    /// Found by outside testing: sessions closed at a restart (the server was killed) showed
    /// 0 scripts and 0 APDUs although their results were stored.
    #[test]
    fn sessions_closed_at_a_restart_count_what_was_stored() {
        let (_d, db, _key) = db();
        let c = db.conn();
        session_s1(c, "ACTIVE");
        let script = |body: Vec<u8>| NewScript {
            card: "card-1".into(),
            label: None,
            body,
            targeted_application: None,
            redelivery: StoredRedelivery::Allowed,
        };
        let exchange = |answered: bool| ExchangeRow {
            command: vec![0x80, 0xCA, 0x9F, 0x7F, 0x00],
            response: answered.then(|| vec![0x90, 0x00]),
            sw: answered.then_some(0x9000),
        };
        let done = push_script(c, &script(vec![0xAA, 0x00])).unwrap();
        mark_delivered(c, done, "s1", 1, "t").unwrap();
        let rows = [exchange(true), exchange(true), exchange(false)];
        record_results(c, done, "ok", Some(&[0xAB]), &rows, None).unwrap();
        let in_flight = push_script(c, &script(vec![0xAA, 0x00])).unwrap();
        mark_delivered(c, in_flight, "s1", 2, "t").unwrap();
        push_script(c, &script(vec![0xAA, 0x00])).unwrap();
        let stale = close_stale_sessions(c, "server_restart").unwrap();
        assert_eq!((stale[0].scripts, stale[0].apdus), (2, 2), "{stale:?}");
        let s = &recent_sessions(c, None, 10).unwrap()[0];
        assert_eq!((s.scripts, s.apdus), (2, 2), "{s:?}");
        assert_eq!(s.state, "CLOSED");
    }
}
