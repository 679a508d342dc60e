//! Audit chain throughput: appending events and verifying a stored chain.
//!
//! Times are this thread's CPU time (from /proc/thread-self/schedstat), not wall time, so the
//! numbers hold on a shared, busy machine. Target: verification at ≥ 1,000,000 rows/s.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use warden_core::audit::{
    AuditKey, AuditRecord, ChainId, ChainState, NewEvent, Outcome, Timestamp, Verifier,
};

const ROWS: u64 = 100_000;
const EPOCH_EVERY: u64 = 10_000;
const T0: i64 = 1_795_341_600_000_000;

/// CPU time this thread has used, if the kernel tells us; wall time otherwise.
fn cpu_now() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn measure(iters: u64, mut run: impl FnMut()) -> Duration {
    let (cpu, wall) = (cpu_now(), Instant::now());
    for _ in 0..iters {
        run();
    }
    match (cpu, cpu_now()) {
        (Some(before), Some(after)) => after - before,
        _ => wall.elapsed(),
    }
}

fn event(i: u64) -> NewEvent {
    NewEvent::new(
        Timestamp::from_unix_micros(T0 + i as i64 * 1_000).unwrap(),
        "alice",
        "session.data",
        "shim-01/ttyS0",
        Outcome::Success,
    )
    .with_details(json!({ "bytes": i % 4096, "direction": "device", "session": 42 }))
}

fn chain() -> (Vec<AuditRecord>, ChainState) {
    let mut state = ChainState::genesis(AuditKey::from_bytes([7; 32]), ChainId([9; 16]), 0);
    let mut rows = Vec::with_capacity(ROWS as usize);
    for i in 1..=ROWS {
        let row = if i % EPOCH_EVERY == 0 {
            let ts = Timestamp::from_unix_micros(T0 + i as i64 * 1_000).unwrap();
            state.evolve(ts, i).unwrap()
        } else {
            state.append(event(i)).unwrap()
        };
        rows.push(row);
    }
    (rows, state)
}

fn bench(c: &mut Criterion) {
    let (rows, state) = chain();
    let checkpoint = state.checkpoint();
    let mut group = c.benchmark_group("audit_chain");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("verify_from_genesis_100k", |b| {
        b.iter_custom(|iters| {
            measure(iters, || {
                let report =
                    Verifier::from_genesis(AuditKey::from_bytes([7; 32]), ChainId([9; 16]))
                        .with_checkpoint(checkpoint)
                        .verify_all(rows.iter().map(AuditRecord::view))
                        .unwrap();
                assert_eq!(report.records, ROWS);
            })
        })
    });
    let events: Vec<NewEvent> = (1..=ROWS).map(event).collect();
    group.bench_function("append_100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch = events.clone();
                let mut state =
                    ChainState::genesis(AuditKey::from_bytes([7; 32]), ChainId([9; 16]), 0);
                total += measure(1, || {
                    for e in batch.iter().cloned() {
                        std::hint::black_box(state.append(e).unwrap());
                    }
                });
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
