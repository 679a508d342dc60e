//! Audit chain throughput in the real store, next to plain SQLite doing the same inserts.
//!
//! - `durable_single`: one event per transaction, `synchronous = FULL` in WAL mode (every event
//!   on disk when its commit returns) — warden (SQLCipher + chain MAC) vs plain SQLite (same
//!   schema, same pragmas, no cipher, no MAC).
//! - `batched`: 1,000 events per transaction (group commit).
//! - `verify`: streaming verification of 100,000 stored events from genesis.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rusqlite::{params, Connection};
use warden_core::audit::{AuditKey, ChainId, EpochPolicy, NewEvent, Outcome, Timestamp};
use warden_core::secret::Key32;
use warden_store::audit::{AuditLog, AuditPolicy, VerifyFrom};
use warden_store::Database;

fn event(i: u64) -> NewEvent {
    NewEvent::new(
        Timestamp::from_unix_micros(1_790_000_000_000_000 + i as i64).unwrap(),
        "tech-001",
        "session.data",
        "empump-12",
        Outcome::Success,
    )
    .with_details(serde_json::json!({ "bytes": i, "direction": "technician->device" }))
}

fn warden_store(dir: &std::path::Path) -> (Database, AuditLog) {
    let mut db = Database::create(&dir.join("warden.db"), &Key32::from_bytes([1; 32])).unwrap();
    let log = AuditLog::new(Key32::from_bytes([2; 32]));
    let policy = AuditPolicy {
        epoch: EpochPolicy {
            max_events: Some(10_000),
            max_age_secs: None,
        },
        checkpoint_every: 100,
    };
    log.create(
        &mut db,
        AuditKey::from_bytes([3; 32]),
        ChainId([4; 16]),
        policy,
    )
    .unwrap();
    (db, log)
}

fn plain_sqlite(dir: &std::path::Path) -> Connection {
    let conn = Connection::open(dir.join("plain.db")).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;
         CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, ts TEXT NOT NULL,
             actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, outcome TEXT NOT NULL,
             details TEXT NOT NULL, mac BLOB NOT NULL);",
    )
    .unwrap();
    conn
}

fn plain_insert(tx: &rusqlite::Transaction<'_>, seq: u64) {
    let e = event(seq);
    tx.prepare_cached(
        "INSERT INTO audit_events (seq, epoch, ts, actor, action, subject, outcome, details, mac)
         VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .unwrap()
    .execute(params![
        seq as i64,
        e.timestamp.as_str(),
        e.actor,
        e.action,
        e.subject,
        e.outcome.as_str(),
        e.details.to_string(),
        [0u8; 32].as_slice()
    ])
    .unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();
    let (mut db, log) = warden_store(dir.path());
    let mut plain = plain_sqlite(dir.path());

    let mut group = c.benchmark_group("audit_durable_single");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    let mut i = 0u64;
    group.bench_function("warden", |b| {
        b.iter(|| {
            i += 1;
            log.append(&mut db, vec![event(i)]).unwrap();
        })
    });
    let mut seq = 0u64;
    group.bench_function("plain_sqlite", |b| {
        b.iter(|| {
            seq += 1;
            let tx = plain.transaction().unwrap();
            plain_insert(&tx, seq);
            tx.commit().unwrap();
        })
    });
    group.finish();

    let mut group = c.benchmark_group("audit_batched_1000");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(10);
    group.bench_function("warden", |b| {
        b.iter_batched(
            || (0..1000).map(event).collect::<Vec<_>>(),
            |events| log.append(&mut db, events).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("plain_sqlite", |b| {
        b.iter(|| {
            let tx = plain.transaction().unwrap();
            for _ in 0..1000 {
                seq += 1;
                plain_insert(&tx, seq);
            }
            tx.commit().unwrap();
        })
    });
    group.finish();

    // A fresh chain of exactly 100,000 events for verification.
    let vdir = tempfile::tempdir().unwrap();
    let (mut vdb, vlog) = warden_store(vdir.path());
    for chunk in 0..100 {
        vlog.append(
            &mut vdb,
            (0..1000).map(|k| event(chunk * 1000 + k)).collect(),
        )
        .unwrap();
    }
    let mut group = c.benchmark_group("audit_verify");
    let records = vlog
        .verify(
            &mut vdb,
            VerifyFrom::Genesis(AuditKey::from_bytes([3; 32])),
            None,
        )
        .unwrap();
    let records = records.result.unwrap().records;
    group.throughput(Throughput::Elements(records));
    group.sample_size(10);
    group.bench_function("from_genesis", |b| {
        b.iter(|| {
            let verdict = vlog
                .verify(
                    &mut vdb,
                    VerifyFrom::Genesis(AuditKey::from_bytes([3; 32])),
                    None,
                )
                .unwrap();
            assert!(verdict.result.is_ok());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
