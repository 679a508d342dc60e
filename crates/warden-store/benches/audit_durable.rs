//! Durable single appends, interleaved: one audit event per transaction (`synchronous = FULL`,
//! WAL) in warden's store vs the same insert in plain SQLite, alternating A/B so both see the
//! same disk and the same background load. fsync time on shared machines swings by several
//! times from minute to minute; interleaving keeps the ratio meaningful. Prints medians and p90.
//!
//!     cargo bench -p warden-store --bench audit_durable [-- ROUNDS]

use std::time::Instant;

use rusqlite::{params, Connection};
use warden_core::audit::{AuditKey, ChainId, EpochPolicy, NewEvent, Outcome, Timestamp};
use warden_core::secret::Key32;
use warden_store::audit::{AuditLog, AuditPolicy};
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir_in(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();

    let mut db =
        Database::create(&dir.path().join("warden.db"), &Key32::from_bytes([1; 32])).unwrap();
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

    let plain = Connection::open(dir.path().join("plain.db")).unwrap();
    plain
        .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    plain
        .execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;
             CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, ts TEXT NOT NULL,
                 actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, outcome TEXT NOT NULL,
                 details TEXT NOT NULL, mac BLOB NOT NULL);",
        )
        .unwrap();

    let (mut ours, mut theirs) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for i in 0..rounds as u64 {
        let started = Instant::now();
        log.append(&mut db, vec![event(i)]).unwrap();
        ours.push(started.elapsed().as_secs_f64() * 1e6);

        let e = event(i);
        let started = Instant::now();
        plain
            .prepare_cached(
                "INSERT INTO audit_events (seq, epoch, ts, actor, action, subject, outcome, details, mac)
                 VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .unwrap()
            .execute(params![i as i64 + 1, e.timestamp.as_str(), e.actor, e.action, e.subject, e.outcome.as_str(), e.details.to_string(), [0u8; 32].as_slice()])
            .unwrap();
        theirs.push(started.elapsed().as_secs_f64() * 1e6);
    }
    ours.sort_by(f64::total_cmp);
    theirs.sort_by(f64::total_cmp);
    let (m_ours, m_theirs) = (percentile(&ours, 0.5), percentile(&theirs, 0.5));
    println!(
        "durable single appends, {rounds} rounds interleaved, in {}",
        dir.path().display()
    );
    println!("| store | median µs | p90 µs | events/s (median) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| warden (SQLCipher + chain MAC) | {m_ours:.0} | {:.0} | {:.0} |",
        percentile(&ours, 0.9),
        1e6 / m_ours
    );
    println!(
        "| plain SQLite, same schema | {m_theirs:.0} | {:.0} | {:.0} |",
        percentile(&theirs, 0.9),
        1e6 / m_theirs
    );
    println!("ratio warden / plain (events/s): {:.2}", m_theirs / m_ours);
}
