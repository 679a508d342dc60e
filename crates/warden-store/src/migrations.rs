//! Forward-only schema migrations, tracked in `PRAGMA user_version`.
//!
//! Each migration runs in its own transaction together with the version bump, so a crash leaves
//! the schema at one version or the next, never between. Capabilities append their migrations;
//! a migration that has shipped is never edited.

use std::path::Path;

use rusqlite::Connection;

use crate::db::StoreError;

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "audit chain",
        sql: "
        CREATE TABLE audit_events (
            seq     INTEGER PRIMARY KEY,
            epoch   INTEGER NOT NULL,
            ts      TEXT    NOT NULL,
            actor   TEXT    NOT NULL,
            action  TEXT    NOT NULL,
            subject TEXT    NOT NULL,
            outcome TEXT    NOT NULL,
            details TEXT    NOT NULL,
            mac     BLOB    NOT NULL
        );
        CREATE TABLE audit_state (
            id               INTEGER PRIMARY KEY CHECK (id = 1),
            chain_id         BLOB    NOT NULL,
            next_seq         INTEGER NOT NULL,
            epoch            INTEGER NOT NULL,
            last_mac         BLOB    NOT NULL,
            epoch_first_seq  INTEGER NOT NULL,
            epoch_started    INTEGER NOT NULL,
            key_sealed       BLOB    NOT NULL,
            epoch_max_events INTEGER,
            epoch_max_secs   INTEGER,
            checkpoint_every INTEGER NOT NULL
        );
        CREATE TABLE audit_checkpoints (
            seq     INTEGER PRIMARY KEY,
            mac     BLOB    NOT NULL,
            created TEXT    NOT NULL
        );
    ",
    },
    Migration {
        version: 2,
        name: "siem spool",
        sql: "
        CREATE TABLE siem_spool (
            seq          INTEGER PRIMARY KEY,
            kind         TEXT    NOT NULL CHECK (kind IN
                             ('tamper_alert', 'audit_event', 'audit_checkpoint', 'heartbeat')),
            priority     INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
            created_ms   INTEGER NOT NULL,
            payload      TEXT    NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0,
            last_sent_ms INTEGER
        );
        CREATE INDEX siem_spool_delivery ON siem_spool (priority, seq);
        CREATE TABLE siem_spool_state (
            id              INTEGER PRIMARY KEY CHECK (id = 1),
            next_seq        INTEGER NOT NULL,
            rows            INTEGER NOT NULL,
            dropped_total   INTEGER NOT NULL,
            dropped_pending INTEGER NOT NULL,
            dropped_first   INTEGER,
            dropped_last    INTEGER
        );
        INSERT INTO siem_spool_state VALUES (1, 0, 0, 0, 0, NULL, NULL);
    ",
    },
    Migration {
        version: 3,
        name: "identity: users, password history, TOTP replay state, lockouts",
        sql: crate::identity::MIGRATION_SQL,
    },
    Migration {
        version: 4,
        name: "ota: cards and PSKs, script queue, results, sessions",
        sql: crate::ota::MIGRATION_SQL,
    },
    Migration {
        version: 5,
        name: "shim: persisted emergency stop",
        sql: crate::shim::MIGRATION_SQL,
    },
    Migration {
        version: 6,
        name: "audit: the head is committed with every append",
        // Until now the head was stored only when the key evolved; from here on it is the
        // last row's seq and MAC, updated in every append's transaction.
        sql: "
        UPDATE audit_state SET
            next_seq = (SELECT max(seq) + 1 FROM audit_events),
            last_mac = (SELECT mac FROM audit_events ORDER BY seq DESC LIMIT 1)
        WHERE (SELECT max(seq) FROM audit_events) >= next_seq;
    ",
    },
    Migration {
        version: 7,
        name: "shim: reset requests, settled by the daemon",
        sql: crate::shim::RESET_MIGRATION_SQL,
    },
    Migration {
        version: 8,
        name: "keys: committed key-slot changes, refusals recorded late",
        sql: crate::keys::MIGRATION_SQL,
    },
    Migration {
        version: 9,
        name: "audit: public digest chain and Ed25519-signed checkpoints",
        // The digest of an existing chain is computed at its next append (it needs the
        // canonical encoding of every row); checkpoints stored before have none and stay
        // unsigned.
        sql: "
        ALTER TABLE audit_state ADD COLUMN last_digest BLOB;
        ALTER TABLE audit_checkpoints ADD COLUMN digest BLOB;
        ALTER TABLE audit_checkpoints ADD COLUMN key_id BLOB;
        ALTER TABLE audit_checkpoints ADD COLUMN signature BLOB;
    ",
    },
    Migration {
        version: 10,
        name: "records: collection schema, record versions, signatures, signers",
        // Owned by warden-records (docs/records.md): every write is a new row, never an update.
        sql: "
        CREATE TABLE records_schema (
            version    INTEGER PRIMARY KEY,
            document   TEXT    NOT NULL,
            sha256     BLOB    NOT NULL,
            applied    TEXT    NOT NULL,
            applied_by TEXT    NOT NULL
        );
        CREATE TABLE record_versions (
            collection     TEXT    NOT NULL,
            record_id      TEXT    NOT NULL,
            version        INTEGER NOT NULL CHECK (version >= 1),
            kind           TEXT    NOT NULL CHECK (kind IN ('create', 'update', 'delete')),
            ts             TEXT    NOT NULL,
            actor          TEXT    NOT NULL,
            schema_version INTEGER NOT NULL,
            fields         TEXT    NOT NULL,
            phi_sealed     BLOB,
            reason         TEXT    NOT NULL,
            hash           BLOB    NOT NULL,
            audit_seq      INTEGER NOT NULL,
            PRIMARY KEY (collection, record_id, version)
        );
        CREATE TABLE record_signatures (
            collection   TEXT    NOT NULL,
            record_id    TEXT    NOT NULL,
            version      INTEGER NOT NULL,
            signer       TEXT    NOT NULL,
            printed_name TEXT    NOT NULL,
            meaning      TEXT    NOT NULL,
            signed_at    TEXT    NOT NULL,
            version_hash BLOB    NOT NULL,
            hash         BLOB    NOT NULL,
            audit_seq    INTEGER NOT NULL,
            PRIMARY KEY (collection, record_id, version, signer, meaning)
        );
        CREATE TABLE record_signers (
            username     TEXT    PRIMARY KEY,
            printed_name TEXT    NOT NULL,
            set_at       TEXT    NOT NULL,
            set_by       TEXT    NOT NULL
        );
    ",
    },
    Migration {
        version: 11,
        name: "ota script delivery seq",
        sql: crate::ota::DELIVERY_SEQ_SQL,
    },
];

/// The schema version this build brings a database to.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies every migration above the database's version, each in its own transaction.
pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    migrate_to(conn, path, latest())
}

/// Applies migrations up to and including `target` (tests build older versions with this).
pub fn migrate_to(conn: &Connection, path: &Path, target: i64) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > latest() {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: current,
            known: latest(),
        });
    }
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= target)
    {
        let apply = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let result = conn.execute_batch(migration.sql).and_then(|()| {
                conn.execute_batch(&format!("PRAGMA user_version = {}", migration.version))
            });
            match result {
                Ok(()) => conn.execute_batch("COMMIT"),
                Err(err) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(err)
                }
            }
        };
        apply().map_err(|source| StoreError::Migration {
            version: migration.version,
            name: migration.name,
            source,
        })?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied database migration"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strictly_increasing_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                m.version,
                i as i64 + 1,
                "migration {} is out of sequence",
                m.name
            );
        }
    }
}
