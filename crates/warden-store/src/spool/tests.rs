//! Spool behaviour on an in-memory database: sequence numbers, delivery order, limits.

use std::path::Path;

use super::*;

fn db() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    crate::migrations::migrate(&conn, Path::new(":memory:")).unwrap();
    conn
}

fn audit(action: &str) -> SpoolPayload {
    SpoolPayload {
        action: Some(action.into()),
        ..SpoolPayload::default()
    }
}

fn stored(e: Enqueued) -> u64 {
    match e {
        Enqueued::Stored { seq } => seq,
        other => panic!("expected Stored, got {other:?}"),
    }
}

fn drain(spool: &Spool, conn: &Connection) -> Vec<(SpoolKind, u64)> {
    let batch = spool
        .next_batch(conn, &DeliveryCursor::default(), 1000)
        .unwrap();
    batch.iter().map(|r| (r.kind, r.seq)).collect()
}

/// Verifies: S13
#[test]
fn kinds_round_trip_and_are_ordered_by_priority() {
    for (i, kind) in SpoolKind::ALL.into_iter().enumerate() {
        assert_eq!(SpoolKind::from_name(kind.as_str()), Some(kind));
        assert_eq!(kind.index(), i);
    }
    assert_eq!(SpoolKind::from_name("nope"), None);
}

#[test]
fn seq_is_global_monotonic_and_never_reused() {
    let conn = db();
    let spool = Spool::default();
    let a = stored(
        spool
            .enqueue(&conn, SpoolKind::AuditEvent, 1, &audit("a"))
            .unwrap(),
    );
    let b = stored(spool.enqueue_heartbeat(&conn, 7, 2).unwrap());
    assert_eq!((a, b), (0, 1));
    assert_eq!(spool.confirm(&conn, &[a, b]).unwrap(), 2);
    // After deleting everything, numbering goes on.
    let c = stored(
        spool
            .enqueue(&conn, SpoolKind::TamperAlert, 3, &audit("c"))
            .unwrap(),
    );
    assert_eq!(c, 2);
    let stats = spool.stats(&conn).unwrap();
    assert_eq!((stats.rows, stats.next_seq), (1, 3));
}

#[test]
fn enqueue_rolls_back_with_the_callers_transaction() {
    let mut conn = db();
    let spool = Spool::default();
    {
        let tx = conn.transaction().unwrap();
        let _ = spool
            .enqueue(&tx, SpoolKind::AuditEvent, 1, &audit("x"))
            .unwrap();
        // dropped without commit: rolled back
    }
    let stats = spool.stats(&conn).unwrap();
    assert_eq!((stats.rows, stats.next_seq), (0, 0));
    let tx = conn.transaction().unwrap();
    assert_eq!(
        spool
            .enqueue(&tx, SpoolKind::AuditEvent, 1, &audit("y"))
            .unwrap(),
        Enqueued::Stored { seq: 0 }
    );
    tx.commit().unwrap();
    assert_eq!(spool.stats(&conn).unwrap().rows, 1);
}

#[test]
fn delivery_is_by_class_then_seq_and_the_cursor_skips_in_flight_rows() {
    let conn = db();
    let spool = Spool::default();
    let hb = stored(spool.enqueue_heartbeat(&conn, 1, 0).unwrap());
    let a1 = stored(
        spool
            .enqueue(&conn, SpoolKind::AuditEvent, 0, &audit("1"))
            .unwrap(),
    );
    let cp = stored(spool.enqueue_checkpoint(&conn, 41, "ab", 0).unwrap());
    let a2 = stored(
        spool
            .enqueue(&conn, SpoolKind::AuditEvent, 0, &audit("2"))
            .unwrap(),
    );
    let t1 = stored(
        spool
            .enqueue(&conn, SpoolKind::TamperAlert, 0, &audit("t"))
            .unwrap(),
    );
    assert_eq!(
        drain(&spool, &conn),
        vec![
            (SpoolKind::TamperAlert, t1),
            (SpoolKind::AuditEvent, a1),
            (SpoolKind::AuditEvent, a2),
            (SpoolKind::AuditCheckpoint, cp),
            (SpoolKind::Heartbeat, hb),
        ]
    );
    // Write the first two; a new alert then jumps ahead of the remaining audit event.
    let mut cursor = DeliveryCursor::default();
    let first = spool.next_batch(&conn, &cursor, 2).unwrap();
    for row in &first {
        cursor.advance(row.kind, row.seq);
    }
    spool.mark_sent(&conn, &[t1, a1], 99).unwrap();
    let t2 = stored(
        spool
            .enqueue(&conn, SpoolKind::TamperAlert, 0, &audit("t2"))
            .unwrap(),
    );
    let next: Vec<_> = spool
        .next_batch(&conn, &cursor, 10)
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, r.attempts))
        .collect();
    assert_eq!(next, vec![(t2, 0), (a2, 0), (cp, 0), (hb, 0)]);
    // A fresh connection (fresh cursor) starts over with the unconfirmed ones.
    let again = spool
        .next_batch(&conn, &DeliveryCursor::default(), 2)
        .unwrap();
    assert_eq!((again[0].seq, again[0].attempts), (t1, 1));
    assert_eq!(again[1].seq, t2);
}

#[test]
fn checkpoint_and_heartbeat_payloads_round_trip() {
    let conn = db();
    let spool = Spool::default();
    let _ = spool.enqueue_checkpoint(&conn, 41, "00ff", 5).unwrap();
    let _ = spool.enqueue_heartbeat(&conn, 9, 6).unwrap();
    let rows = spool
        .next_batch(&conn, &DeliveryCursor::default(), 10)
        .unwrap();
    assert_eq!(rows[0].payload.audit_seq, Some(41));
    assert_eq!(rows[0].payload.chain_mac.as_deref(), Some("00ff"));
    assert_eq!(rows[0].created_ms, 5);
    assert_eq!(
        rows[1].payload.counter,
        Some(("heartbeat_counter".to_string(), 9))
    );
}

#[test]
fn at_the_soft_limit_heartbeats_make_room_and_are_reported() {
    let conn = db();
    let spool = Spool::new(SpoolLimits {
        soft_limit: 3,
        hard_limit: 5,
        alert_reserve: 1,
    });
    let h0 = stored(spool.enqueue_heartbeat(&conn, 0, 0).unwrap());
    let h1 = stored(spool.enqueue_heartbeat(&conn, 1, 0).unwrap());
    let a0 = stored(
        spool
            .enqueue(&conn, SpoolKind::AuditEvent, 0, &audit("a"))
            .unwrap(),
    );
    // Full (3 rows): a new audit event replaces the oldest heartbeat.
    let a1 = stored(
        spool
            .enqueue(&conn, SpoolKind::AuditEvent, 0, &audit("b"))
            .unwrap(),
    );
    // A new heartbeat replaces the other one.
    let h2 = stored(spool.enqueue_heartbeat(&conn, 2, 0).unwrap());
    let a2 = stored(
        spool
            .enqueue(&conn, SpoolKind::AuditEvent, 0, &audit("c"))
            .unwrap(),
    );
    assert_eq!(
        drain(&spool, &conn),
        vec![
            (SpoolKind::AuditEvent, a0),
            (SpoolKind::AuditEvent, a1),
            (SpoolKind::AuditEvent, a2),
        ]
    );
    // No heartbeat left to replace: a new heartbeat is itself dropped, its number used up.
    let Enqueued::HeartbeatDropped { seq: h3 } = spool.enqueue_heartbeat(&conn, 3, 0).unwrap()
    else {
        panic!("the heartbeat should have been dropped")
    };
    let stats = spool.stats(&conn).unwrap();
    assert_eq!(
        (stats.rows, stats.dropped_total, stats.dropped_pending),
        (3, 4, 4)
    );

    let report = spool.take_overflow_report(&conn, 10).unwrap().unwrap();
    assert_eq!(report.dropped, 4);
    assert_eq!((report.first_seq, report.last_seq), (h0, h3));
    assert!(h0 < h1 && h1 < h2 && h2 < h3);
    assert_eq!(spool.take_overflow_report(&conn, 11).unwrap(), None);
    let rows = spool
        .next_batch(&conn, &DeliveryCursor::default(), 10)
        .unwrap();
    let overflow = rows.iter().find(|r| r.seq == report.seq).unwrap();
    assert_eq!(overflow.kind, SpoolKind::AuditEvent);
    assert_eq!(
        overflow.payload.signature_id.as_deref(),
        Some(OVERFLOW_SIGNATURE)
    );
    assert_eq!(
        overflow.payload.counter,
        Some(("dropped_heartbeats".to_string(), 4))
    );
    assert_eq!(spool.stats(&conn).unwrap().dropped_pending, 0);
}

#[test]
fn above_the_hard_limit_audit_is_refused_and_alerts_use_the_reserve() {
    let conn = db();
    let spool = Spool::new(SpoolLimits {
        soft_limit: 1,
        hard_limit: 2,
        alert_reserve: 1,
    });
    let _ = stored(
        spool
            .enqueue(&conn, SpoolKind::AuditEvent, 0, &audit("a"))
            .unwrap(),
    );
    let _ = stored(spool.enqueue_checkpoint(&conn, 1, "aa", 0).unwrap());
    let err = spool
        .enqueue(&conn, SpoolKind::AuditEvent, 0, &audit("b"))
        .unwrap_err();
    assert!(err.is_storage_exhausted(), "{err}");
    assert!(spool
        .enqueue_checkpoint(&conn, 2, "bb", 0)
        .unwrap_err()
        .is_storage_exhausted());
    // The refused enqueue used no number.
    assert_eq!(spool.stats(&conn).unwrap().next_seq, 2);
    let t = stored(
        spool
            .enqueue(&conn, SpoolKind::TamperAlert, 0, &audit("t"))
            .unwrap(),
    );
    assert_eq!(t, 2);
    assert!(spool
        .enqueue(&conn, SpoolKind::TamperAlert, 0, &audit("t2"))
        .unwrap_err()
        .is_storage_exhausted());
    let stats = spool.stats(&conn).unwrap();
    assert_eq!((stats.rows, stats.per_kind), (3, [1, 1, 1, 0]));
    // Nothing was dropped: only heartbeats ever are.
    assert_eq!(stats.dropped_total, 0);
}

#[test]
fn an_unreadable_payload_is_still_delivered() {
    let conn = db();
    let spool = Spool::default();
    let seq = stored(
        spool
            .enqueue(&conn, SpoolKind::AuditEvent, 0, &audit("a"))
            .unwrap(),
    );
    conn.execute(
        "UPDATE siem_spool SET payload = '{not json' WHERE seq = ?1",
        [seq as i64],
    )
    .unwrap();
    let rows = spool
        .next_batch(&conn, &DeliveryCursor::default(), 10)
        .unwrap();
    assert_eq!(rows[0].seq, seq);
    assert_eq!(
        rows[0].payload.reason.as_deref(),
        Some("spool_payload_unreadable")
    );
}
