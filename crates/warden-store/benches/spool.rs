//! Spool append cost on a real SQLCipher database (WAL, synchronous = FULL): one message per
//! transaction (each commit waits for the disk), and 100 messages in one transaction (how the
//! audit log batches under load).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use warden_core::secret::Key32;
use warden_store::spool::{Spool, SpoolKind, SpoolPayload};
use warden_store::Database;

fn payload() -> SpoolPayload {
    SpoolPayload {
        user: Some("tech-001".into()),
        action: Some("session.open".into()),
        outcome: Some(true),
        session_id: Some("6f9619ff-8b86-d011-b42d-00c04fc964ff".into()),
        audit_seq: Some(12345),
        chain_mac: Some("ab".repeat(32)),
        ..SpoolPayload::default()
    }
}

fn bench(c: &mut Criterion) {
    // On disk by default (/tmp); WARDEN_BENCH_DIR=/dev/shm measures without the disk's fsync.
    let dir = match std::env::var_os("WARDEN_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let mut db =
        Database::create(&dir.path().join("bench.db"), &Key32::from_bytes([3; 32])).unwrap();
    let spool = Spool::default();
    let p = payload();
    let mut group = c.benchmark_group("spool_append");
    group.sample_size(20);
    group.measurement_time(std::time::Duration::from_secs(8));

    group.throughput(Throughput::Elements(1));
    group.bench_function("one per transaction", |b| {
        b.iter(|| {
            let tx = db.conn_mut().transaction().unwrap();
            let _ = spool.enqueue(&tx, SpoolKind::AuditEvent, 1, &p).unwrap();
            tx.commit().unwrap();
        })
    });

    group.throughput(Throughput::Elements(100));
    group.bench_function("100 per transaction", |b| {
        b.iter(|| {
            let tx = db.conn_mut().transaction().unwrap();
            for _ in 0..100 {
                let _ = spool.enqueue(&tx, SpoolKind::AuditEvent, 1, &p).unwrap();
            }
            tx.commit().unwrap();
        })
    });

    // Keep the table from growing without bound between runs: confirm everything.
    group.throughput(Throughput::Elements(100));
    group.bench_function("confirm 100 (delete)", |b| {
        b.iter_batched(
            || {
                let tx = db.conn().unchecked_transaction().unwrap();
                let seqs: Vec<u64> = (0..100)
                    .map(
                        |_| match spool.enqueue(&tx, SpoolKind::AuditEvent, 1, &p).unwrap() {
                            warden_store::spool::Enqueued::Stored { seq } => seq,
                            other => panic!("{other:?}"),
                        },
                    )
                    .collect();
                tx.commit().unwrap();
                seqs
            },
            |seqs| {
                spool.confirm(db.conn(), &seqs).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
