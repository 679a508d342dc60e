//! Opening the encrypted database: keys, identity, permissions and migrations.

use std::os::unix::fs::PermissionsExt;

use warden_core::secret::Key32;
use warden_store::migrations::{self, MIGRATIONS};
use warden_store::{Database, StoreError};

fn key(b: u8) -> Key32 {
    Key32::from_bytes([b; 32])
}

/// Verifies: V1, V2, V67, V70, V73, V87
#[test]
fn creates_an_encrypted_private_database_at_the_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let db = Database::create(&path, &key(1)).unwrap();
    assert_eq!(db.schema_version().unwrap(), migrations::latest());
    assert!(
        db.cipher_version().unwrap().starts_with('4'),
        "SQLCipher 4 expected"
    );
    drop(db);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let head = std::fs::read(&path).unwrap();
    assert_ne!(
        &head[..16],
        b"SQLite format 3\0",
        "the file must not be plain SQLite"
    );
    // Reopening is idempotent; creating again is refused.
    let db = Database::open(&path, &key(1)).unwrap();
    assert_eq!(db.schema_version().unwrap(), migrations::latest());
    assert!(matches!(
        Database::create(&path, &key(1)),
        Err(StoreError::Exists(_))
    ));
}

/// Opening never makes a database where none was: a wrong data directory is an error, not a
/// fresh empty store that would then "verify".
#[test]
fn a_missing_database_is_an_error_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let err = Database::open(&path, &key(1)).err().unwrap();
    assert!(matches!(err, StoreError::Missing(_)), "{err}");
    assert!(err.to_string().contains("warden init"), "{err}");
    assert!(!path.exists());
}

/// Found by outside testing: an empty file where the database was (truncated, a failed
/// restore) was taken by SQLite for a new database and filled with a fresh schema by any
/// command, even `audit verify`. It is damage now, and the file is left as it was.
#[test]
fn an_empty_database_file_is_damage_and_is_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    drop(Database::create(&path, &key(1)).unwrap());
    std::fs::write(&path, b"").unwrap();
    for _ in 0..2 {
        let err = Database::open(&path, &key(1)).err().unwrap();
        assert!(matches!(err, StoreError::Lost(_)), "{err}");
        assert!(
            err.to_string().contains("restore it from a backup"),
            "{err}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}

/// Verifies: V4, V78, V83
#[test]
fn wrong_key_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    Database::create(&path, &key(1)).unwrap();
    assert!(matches!(
        Database::open(&path, &key(2)),
        Err(StoreError::WrongKey(_))
    ));
}

/// Verifies: V67
#[test]
fn plain_sqlite_and_foreign_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.db");
    {
        let conn = rusqlite::Connection::open(&plain).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        Database::open(&plain, &key(1)),
        Err(StoreError::Unencrypted(_))
    ));

    let foreign = dir.path().join("foreign.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA key = \"x'{}'\"; PRAGMA cipher_compatibility = 4;",
            "01".repeat(32)
        ))
        .unwrap();
        conn.execute_batch("CREATE TABLE t(x);").unwrap();
    }
    assert!(matches!(
        Database::open(&foreign, &key(1)),
        Err(StoreError::NotWarden { found: 0, .. })
    ));

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    assert!(matches!(
        Database::open(&garbage, &key(1)),
        Err(StoreError::WrongKey(_))
    ));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let db = Database::create(&path, &key(1)).unwrap();
    db.conn()
        .execute_batch(&format!(
            "PRAGMA user_version = {}",
            migrations::latest() + 1
        ))
        .unwrap();
    drop(db);
    assert!(matches!(
        Database::open(&path, &key(1)),
        Err(StoreError::TooNew { .. })
    ));
}

#[test]
fn migrates_from_every_earlier_version() {
    for start in 0..migrations::latest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.db");
        let db = Database::open_unmigrated(&path, &key(1)).unwrap();
        migrations::migrate_to(db.conn(), &path, start).unwrap();
        assert_eq!(db.schema_version().unwrap(), start);
        drop(db);
        let db = Database::open(&path, &key(1)).unwrap();
        assert_eq!(
            db.schema_version().unwrap(),
            migrations::latest(),
            "from version {start}"
        );
        // Every table of every migration exists.
        let tables: i64 = db
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(tables >= MIGRATIONS.len() as i64);
    }
}

/// Child process body: threads that open their first databases at the same instant.
#[test]
#[ignore = "child process: run by first_opens_racing_in_a_fresh_process_all_succeed"]
fn racing_first_opens_child() {
    let dir = std::env::var("WARDEN_RACE_CHILD_DIR").expect("spawned by the race test");
    let threads = 8;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let barrier = barrier.clone();
            let path = std::path::Path::new(&dir).join(format!("race-{i}.db"));
            std::thread::spawn(move || {
                barrier.wait();
                Database::create(&path, &key(1)).map(drop)
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap().unwrap();
    }
}

/// SQLite marks itself initialized before SQLCipher's own initialization has run, so a thread
/// that opens a database while another is still initializing would see `PRAGMA key` fail.
/// Every open must wait until SQLCipher is ready. Each round is a fresh process.
#[test]
fn first_opens_racing_in_a_fresh_process_all_succeed() {
    let exe = std::env::current_exe().unwrap();
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(&exe)
            .args([
                "racing_first_opens_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env("WARDEN_RACE_CHILD_DIR", dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "round {round}: a racing first open failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// docs/access-control.md names the schema version its storage section describes; it must be
/// the version the code migrates to.
#[test]
fn the_documented_schema_version_is_the_latest_migration() {
    let doc = include_str!("../../../docs/access-control.md");
    let documented: i64 = doc
        .split("## Storage (schema version ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|v| v.parse().ok())
        .expect("a `## Storage (schema version N)` heading");
    let latest = warden_store::migrations::MIGRATIONS.last().unwrap().version;
    assert_eq!(documented, latest);
}
