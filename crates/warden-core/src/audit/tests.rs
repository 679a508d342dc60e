//! Audit chain tests: the known-answer vectors (so the format cannot drift), one security
//! regression test per kind of damage with the exact seq, and a property test that damages
//! random chains in random ways and checks the verdict.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::json;

use super::canonical::encode;
use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers: a stored row as the store would keep it (every field freely alterable).

#[derive(Clone, Debug, PartialEq)]
struct Row {
    seq: u64,
    epoch: u32,
    timestamp: String,
    actor: String,
    action: String,
    subject: String,
    outcome: String,
    details: String,
    mac: Vec<u8>,
}

impl Row {
    fn from_record(record: &AuditRecord) -> Self {
        Self {
            seq: record.seq,
            epoch: record.epoch,
            timestamp: record.timestamp.clone(),
            actor: record.actor.clone(),
            action: record.action.clone(),
            subject: record.subject.clone(),
            outcome: record.outcome.as_str().to_owned(),
            details: record.details.clone(),
            mac: record.mac.0.to_vec(),
        }
    }

    fn view(&self) -> RecordRef<'_> {
        RecordRef {
            seq: self.seq,
            epoch: self.epoch,
            timestamp: &self.timestamp,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            outcome: &self.outcome,
            details: &self.details,
            mac: &self.mac,
        }
    }
}

const T0: i64 = 1_795_341_600_000_000;
const CHAIN_ID: ChainId = ChainId([0x5a; 16]);

fn ts(i: u64) -> Timestamp {
    Timestamp::from_unix_micros(T0 + i as i64 * 1_000_123).unwrap()
}

fn event(i: u64, seed: u16) -> NewEvent {
    const ACTORS: [&str; 4] = ["alice", "bob", "card:89014103211118510720", "warden"];
    const ACTIONS: [&str; 4] = [
        "login.totp",
        "session.open",
        "session.close",
        "config.change",
    ];
    NewEvent::new(
        ts(i),
        ACTORS[usize::from(seed) % 4],
        ACTIONS[usize::from(seed >> 2) % 4],
        format!("shim-{:02}", seed >> 4),
        Outcome::ALL[usize::from(seed >> 8) % 4],
    )
    .with_details(json!({ "n": i, "port": "ttyS0", "seed": seed }))
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Event(u16),
    Evolve,
}

struct Built {
    rows: Vec<Row>,
    state: ChainState,
    k0: [u8; 32],
}

fn build(k0: [u8; 32], steps: &[Step]) -> Built {
    let mut state = ChainState::genesis(AuditKey::from_bytes(k0), CHAIN_ID, 0);
    let mut rows = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let record = match *step {
            Step::Event(seed) => state.append(event(i as u64, seed)).unwrap(),
            Step::Evolve => state.evolve(ts(i as u64), i as u64).unwrap(),
        };
        rows.push(Row::from_record(&record));
    }
    Built { rows, state, k0 }
}

/// 30 rows: events, with epoch markers at seq 10 and 20 (epochs 0, 1, 2).
fn standard() -> Built {
    let steps: Vec<Step> = (1..=30u16)
        .map(|seq| match seq {
            10 | 20 => Step::Evolve,
            _ => Step::Event(seq.wrapping_mul(7919)),
        })
        .collect();
    build([7; 32], &steps)
}

fn from_genesis(
    k0: [u8; 32],
    rows: &[Row],
    cp: Option<Checkpoint>,
) -> Result<VerifyReport, Damage> {
    let mut verifier = Verifier::from_genesis(AuditKey::from_bytes(k0), CHAIN_ID);
    if let Some(cp) = cp {
        verifier = verifier.with_checkpoint(cp);
    }
    verifier.verify_all(rows.iter().map(Row::view))
}

/// As the box does it: its current key, the stored marker before the epoch's first seq, and
/// every stored row after it (ordered by seq).
fn from_current_epoch(
    head: &ChainHead,
    key: [u8; 32],
    rows: &[Row],
    cp: Option<Checkpoint>,
) -> Result<VerifyReport, Damage> {
    let key = AuditKey::from_bytes(key);
    let mut verifier = if head.epoch == 0 {
        Verifier::from_genesis(key, head.chain_id)
    } else {
        let anchor_seq = head.epoch_first_seq - 1;
        let at = rows
            .iter()
            .position(|r| r.seq == anchor_seq)
            .expect("the marker row is kept");
        let verifier = Verifier::from_epoch(head.epoch, key, rows[at].view());
        let rest = &rows[at + 1..];
        return match cp {
            Some(cp) => verifier.with_checkpoint(cp),
            None => verifier,
        }
        .verify_all(rest.iter().map(Row::view));
    };
    if let Some(cp) = cp {
        verifier = verifier.with_checkpoint(cp);
    }
    verifier.verify_all(rows.iter().map(Row::view))
}

fn damage(seq: u64, kind: DamageKind) -> Result<VerifyReport, Damage> {
    Err(Damage { seq, kind })
}

fn renumber_from(rows: &mut [Row], from: usize) {
    for (i, row) in rows.iter_mut().enumerate().skip(from) {
        row.seq = i as u64 + 1;
    }
}

fn swap_contents(rows: &mut [Row], a: usize, b: usize) {
    let (sa, sb) = (rows[a].seq, rows[b].seq);
    rows.swap(a, b);
    rows[a].seq = sa;
    rows[b].seq = sb;
}

fn forged(seq: u64, epoch: u32) -> Row {
    Row {
        seq,
        epoch,
        timestamp: ts(999).to_string(),
        actor: "mallory".into(),
        action: "session.close".into(),
        subject: "shim-01".into(),
        outcome: "success".into(),
        details: "{}".into(),
        mac: vec![0x42; 32],
    }
}

// ---------------------------------------------------------------------------------------------
// Known answers.

#[derive(serde::Deserialize)]
struct Vectors {
    k0: String,
    chain_id: String,
    genesis_mac: String,
    k0_key_id: String,
    k1: String,
    k1_key_id: String,
    rows: Vec<VectorRow>,
    checkpoint: Checkpoint,
}

#[derive(serde::Deserialize)]
struct VectorRow {
    seq: u64,
    epoch: u32,
    timestamp: String,
    actor: String,
    action: String,
    subject: String,
    outcome: String,
    details: String,
    canonical: String,
    mac: String,
}

/// `tests/vectors/audit-chain-v1.json` was produced by `audit_chain_reference.py`, written from
/// the format document alone. If this test fails, the format changed: that needs a new version.
/// Verifies: V43, V44, V49, V52, V71
#[test]
fn known_answer_vectors_match_the_independent_reference() {
    let v: Vectors =
        serde_json::from_str(include_str!("../../tests/vectors/audit-chain-v1.json")).unwrap();
    let k0: [u8; 32] = hex::decode(&v.k0).unwrap().try_into().unwrap();
    let chain_id = ChainId::from_hex(&v.chain_id).unwrap();
    assert_eq!(hex::encode(AuditKey::from_bytes(k0).key_id()), v.k0_key_id);
    let k1 = AuditKey::from_bytes(k0).evolve();
    assert_eq!(hex::encode(k1.expose_secret()), v.k1);
    assert_eq!(hex::encode(k1.key_id()), v.k1_key_id);

    let mut state = ChainState::genesis(AuditKey::from_bytes(k0), chain_id, 0);
    assert_eq!(state.head().last_mac.to_string(), v.genesis_mac);
    let records = [
        state
            .append(
                NewEvent::new(
                    Timestamp::parse("2026-11-22T10:00:00.123456Z").unwrap(),
                    "alice",
                    "session.open",
                    "shim-01/ttyS0",
                    Outcome::Success,
                )
                .with_details(json!({ "mfa": "totp", "device": "laser-7" })),
            )
            .unwrap(),
        state
            .evolve(
                Timestamp::parse("2026-11-22T10:05:00.000000Z").unwrap(),
                300,
            )
            .unwrap(),
        state
            .append(
                NewEvent::new(
                    Timestamp::parse("2026-11-22T10:06:30.500000Z").unwrap(),
                    "bob",
                    "login.totp",
                    "shim-01",
                    Outcome::Denied,
                )
                .with_details(json!({ "reason": "bad code", "attempt": 3, "note": "Gerät ü" })),
            )
            .unwrap(),
    ];
    assert_eq!(records.len(), v.rows.len());
    let mut buf = Vec::new();
    for (record, want) in records.iter().zip(&v.rows) {
        assert_eq!(
            (record.seq, record.epoch, record.timestamp.as_str()),
            (want.seq, want.epoch, want.timestamp.as_str())
        );
        assert_eq!(
            (
                record.actor.as_str(),
                record.action.as_str(),
                record.subject.as_str()
            ),
            (
                want.actor.as_str(),
                want.action.as_str(),
                want.subject.as_str()
            )
        );
        assert_eq!(record.outcome.as_str(), want.outcome);
        assert_eq!(record.details, want.details);
        assert!(encode(&mut buf, record.seq, record.epoch, &record.view()));
        assert_eq!(
            hex::encode(&buf),
            want.canonical,
            "canonical of seq {}",
            want.seq
        );
        assert_eq!(record.mac.to_string(), want.mac, "mac of seq {}", want.seq);
    }
    assert_eq!(state.checkpoint(), v.checkpoint);
    assert_eq!(state.key().expose_secret(), k1.expose_secret());

    // The vector rows verify, from genesis and from epoch 1.
    let report = Verifier::from_genesis(AuditKey::from_bytes(k0), chain_id)
        .with_checkpoint(v.checkpoint)
        .verify_all(records.iter().map(AuditRecord::view))
        .unwrap();
    assert_eq!(
        (report.records, report.last_seq, report.last_epoch),
        (3, 3, 1)
    );
    assert!(report.checkpoint_matched);
    let report = Verifier::from_epoch(1, k1, records[1].view())
        .with_checkpoint(v.checkpoint)
        .verify_all([records[2].view()])
        .unwrap();
    assert_eq!((report.records, report.first_epoch), (1, 1));
    assert!(report.checkpoint_matched);
}

// ---------------------------------------------------------------------------------------------
// Intact chains.

/// Verifies: V48, V51, V71
#[test]
fn an_intact_chain_verifies_from_genesis_and_from_the_current_epoch() {
    let built = standard();
    let cp = built.state.checkpoint();
    let report = from_genesis(built.k0, &built.rows, Some(cp)).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            records: 30,
            last_seq: 30,
            last_mac: cp.mac,
            first_epoch: 0,
            last_epoch: 2,
            checkpoint_matched: true,
            checkpoints_matched: 1,
        }
    );
    let head = built.state.head();
    assert_eq!((head.epoch, head.epoch_first_seq), (2, 21));
    let key = *built.state.key().expose_secret();
    let report = from_current_epoch(head, key, &built.rows, Some(cp)).unwrap();
    assert_eq!(
        (report.records, report.first_epoch, report.last_seq),
        (10, 2, 30)
    );
    assert!(report.checkpoint_matched);
}

#[test]
fn a_chain_resumed_from_the_stored_head_and_key_continues_seamlessly() {
    let steps: Vec<Step> = (0..12u16)
        .map(|i| if i == 5 { Step::Evolve } else { Step::Event(i) })
        .collect();
    let whole = build([6; 32], &steps);
    let half = build([6; 32], &steps[..8]);
    // What the store persisted, read back after a restart.
    let head: ChainHead =
        serde_json::from_str(&serde_json::to_string(half.state.head()).unwrap()).unwrap();
    let key = *half.state.key().expose_secret();
    let mut resumed = ChainState::resume(head, AuditKey::from_bytes(key)).unwrap();
    let mut rows = half.rows.clone();
    for (i, step) in steps.iter().enumerate().skip(8) {
        let Step::Event(seed) = *step else {
            unreachable!()
        };
        rows.push(Row::from_record(
            &resumed.append(event(i as u64, seed)).unwrap(),
        ));
    }
    assert_eq!(rows, whole.rows);
    assert_eq!(resumed.checkpoint(), whole.state.checkpoint());
}

#[test]
fn an_empty_chain_verifies_and_a_checkpoint_beyond_it_is_truncation() {
    let built = build([1; 32], &[]);
    let report = from_genesis(built.k0, &[], Some(built.state.checkpoint())).unwrap();
    assert_eq!((report.records, report.last_seq), (0, 0));
    assert_eq!(report.last_mac, built.state.head().last_mac);
    assert!(!report.checkpoint_matched, "seq 0 checks nothing");
    let cp = Checkpoint {
        seq: 1,
        mac: ChainMac([0; 32]),
    };
    assert_eq!(
        from_genesis(built.k0, &[], Some(cp)),
        damage(1, DamageKind::Truncated)
    );
}

#[test]
fn a_chain_ending_in_a_marker_verifies() {
    let built = build([2; 32], &[Step::Event(1), Step::Evolve, Step::Evolve]);
    let report = from_genesis(built.k0, &built.rows, Some(built.state.checkpoint())).unwrap();
    assert_eq!((report.records, report.last_epoch), (3, 2));
    let key = *built.state.key().expose_secret();
    let report = from_current_epoch(built.state.head(), key, &built.rows, None).unwrap();
    assert_eq!(
        (report.records, report.last_seq, report.last_epoch),
        (0, 3, 2)
    );
}

// ---------------------------------------------------------------------------------------------
// One regression test per kind of damage (security regression tests: do not weaken).

/// Verifies: V50, V77
#[test]
fn changed_fields_are_named_at_their_seq() {
    let built = standard();
    let cp = Some(built.state.checkpoint());
    type Edit = fn(&mut Row);
    let edits: [(&str, Edit); 10] = [
        ("actor", |r| r.actor.push('x')),
        ("action", |r| r.action = "config.change.x".into()),
        ("subject", |r| r.subject = "other".into()),
        ("outcome", |r| r.outcome = "denied!".into()),
        ("timestamp", |r| r.timestamp.replace_range(0..4, "2025")),
        ("details", |r| r.details.insert_str(1, "\"x\":1,")),
        ("mac", |r| r.mac[31] ^= 1),
        ("mac length", |r| r.mac.truncate(31)),
        ("seq", |r| r.seq += 100),
        ("epoch", |r| r.epoch += 1),
    ];
    for (field, edit) in edits {
        // A plain row, an epoch marker, the first row of an epoch, and the last row.
        for seq in [5u64, 10, 21, 30] {
            let mut rows = built.rows.clone();
            edit(&mut rows[seq as usize - 1]);
            assert_eq!(
                from_genesis(built.k0, &rows, cp),
                damage(seq, DamageKind::Changed),
                "{field} of seq {seq}"
            );
        }
    }
}

#[test]
fn several_consecutive_changed_rows_name_the_first() {
    let built = standard();
    let mut rows = built.rows.clone();
    for row in &mut rows[6..9] {
        row.actor = "mallory".into();
    }
    assert_eq!(
        from_genesis(built.k0, &rows, None),
        damage(7, DamageKind::Changed)
    );
}

/// Verifies: V51, V55
#[test]
fn removed_rows_are_named_whether_or_not_the_rest_was_renumbered() {
    let built = standard();
    let cp = Some(built.state.checkpoint());
    for seq in [1u64, 5, 10, 20, 21, 29] {
        for renumber in [false, true] {
            let mut rows = built.rows.clone();
            rows.remove(seq as usize - 1);
            if renumber {
                renumber_from(&mut rows, seq as usize - 1);
            }
            let want = if renumber && seq == 29 {
                // Only the renumbered last row follows: indistinguishable from a changed row.
                DamageKind::Changed
            } else {
                DamageKind::Removed
            };
            assert_eq!(
                from_genesis(built.k0, &rows, cp),
                damage(seq, want),
                "seq {seq}, renumbered {renumber}"
            );
        }
    }
    // Several rows at once, across an epoch marker.
    let mut rows = built.rows.clone();
    rows.drain(8..13);
    assert_eq!(
        from_genesis(built.k0, &rows, cp),
        damage(9, DamageKind::Removed)
    );
    renumber_from(&mut rows, 8);
    assert_eq!(
        from_genesis(built.k0, &rows, cp),
        damage(9, DamageKind::Removed)
    );
}

/// Verifies: V51
#[test]
fn reordered_rows_are_named_at_the_first_position() {
    let built = standard();
    let cp = Some(built.state.checkpoint());
    for (a, b) in [(4u64, 5u64), (4, 9), (9, 10), (10, 11), (3, 27), (29, 30)] {
        let mut rows = built.rows.clone();
        swap_contents(&mut rows, a as usize - 1, b as usize - 1);
        assert_eq!(
            from_genesis(built.k0, &rows, cp),
            damage(a, DamageKind::Reordered),
            "swap {a} and {b}"
        );
    }
    // Rows read back in another order (stored seqs move with the rows).
    let mut rows = built.rows.clone();
    let moved = rows.remove(11);
    rows.insert(15, moved);
    assert_eq!(
        from_genesis(built.k0, &rows, cp),
        damage(12, DamageKind::Reordered)
    );
    // An earlier row of the same epoch replayed (and the rest renumbered).
    let mut rows = built.rows.clone();
    rows.insert(15, rows[12].clone());
    renumber_from(&mut rows, 15);
    assert_eq!(
        from_genesis(built.k0, &rows, cp),
        damage(16, DamageKind::Reordered)
    );
}

#[test]
fn a_far_swap_beyond_the_window_is_reported_as_changed() {
    let steps: Vec<Step> = (0..200u16).map(Step::Event).collect();
    let built = build([3; 32], &steps);
    let mut rows = built.rows.clone();
    swap_contents(&mut rows, 9, 9 + DAMAGE_WINDOW + 5);
    assert_eq!(
        from_genesis(built.k0, &rows, None),
        damage(10, DamageKind::Changed)
    );
}

/// Verifies: V51, V55
#[test]
fn inserted_rows_are_named_where_they_sit() {
    let built = standard();
    let cp = Some(built.state.checkpoint());
    for at in [0usize, 6, 10, 20, 29] {
        let mut rows = built.rows.clone();
        let epoch = rows[at].epoch;
        rows.insert(at, forged(at as u64 + 1, epoch));
        renumber_from(&mut rows, at);
        assert_eq!(
            from_genesis(built.k0, &rows, cp),
            damage(at as u64 + 1, DamageKind::Inserted),
            "forged row at seq {}",
            at + 1
        );
    }
    // Two forged rows in a row.
    let mut rows = built.rows.clone();
    rows.insert(6, forged(7, 0));
    rows.insert(6, forged(7, 0));
    renumber_from(&mut rows, 6);
    assert_eq!(
        from_genesis(built.k0, &rows, cp),
        damage(7, DamageKind::Inserted)
    );
    // A replay of a row from an earlier epoch cannot be proven genuine: it is a forgery here.
    let mut rows = built.rows.clone();
    rows.insert(24, rows[3].clone());
    renumber_from(&mut rows, 24);
    assert_eq!(
        from_genesis(built.k0, &rows, cp),
        damage(25, DamageKind::Inserted)
    );
}

#[test]
fn a_cut_off_tail_is_truncation_with_a_checkpoint_and_invisible_without() {
    let built = standard();
    let cp = built.state.checkpoint();
    let rows = &built.rows[..25];
    assert_eq!(
        from_genesis(built.k0, rows, Some(cp)),
        damage(26, DamageKind::Truncated)
    );
    assert_eq!(from_genesis(built.k0, rows, None).unwrap().last_seq, 25);
    // A checkpoint in the middle still matches; one with another MAC does not.
    let mid = Checkpoint {
        seq: 12,
        mac: ChainMac::from_slice(&built.rows[11].mac).unwrap(),
    };
    assert!(
        from_genesis(built.k0, &built.rows, Some(mid))
            .unwrap()
            .checkpoint_matched
    );
    let wrong = Checkpoint {
        seq: 12,
        mac: ChainMac([1; 32]),
    };
    assert_eq!(
        from_genesis(built.k0, &built.rows, Some(wrong)),
        damage(12, DamageKind::Truncated)
    );
}

fn checkpoint_at(built: &Built, seq: u64) -> Checkpoint {
    Checkpoint {
        seq,
        mac: ChainMac::from_slice(&built.rows[seq as usize - 1].mac).unwrap(),
    }
}

/// The stored head and stored checkpoints, checked together: a cut tail is named at the first
/// missing seq, whichever of them it falls behind.
#[test]
fn the_stored_head_and_every_stored_checkpoint_are_checked() {
    let built = standard();
    let head = checkpoint_at(&built, 30);
    let verify = |rows: &[Row]| {
        [10, 20, 25]
            .into_iter()
            .fold(
                Verifier::from_genesis(AuditKey::from_bytes(built.k0), CHAIN_ID).with_head(head),
                |v, seq| v.with_checkpoint(checkpoint_at(&built, seq)),
            )
            .verify_all(rows.iter().map(Row::view))
    };
    let report = verify(&built.rows).unwrap();
    assert_eq!(report.checkpoints_matched, 4);
    for keep in [29, 27, 24, 5, 0] {
        assert_eq!(
            verify(&built.rows[..keep]),
            damage(keep as u64 + 1, DamageKind::Truncated),
            "cut to {keep} rows"
        );
    }
    // A row after the head was added without it.
    let mut longer = standard();
    let mut extended = longer.rows.clone();
    extended.push(Row::from_record(
        &longer.state.append(event(31, 3)).unwrap(),
    ));
    assert_eq!(verify(&extended), damage(31, DamageKind::Inserted));
    // Checkpoints before the starting point cannot be checked and are ignored.
    let later = Verifier::from_genesis(AuditKey::from_bytes(built.k0), CHAIN_ID)
        .with_checkpoint(Checkpoint {
            seq: 0,
            mac: ChainMac([9; 32]),
        })
        .verify_all(built.rows.iter().map(Row::view))
        .unwrap();
    assert_eq!(later.checkpoints_matched, 0);
}

#[test]
fn a_tail_rewritten_with_the_current_key_disagrees_with_the_checkpoint() {
    let built = standard();
    let cp = built.state.checkpoint();
    // Whoever holds the box holds the epoch-2 key: cut back to seq 24 and write new rows.
    let mut head = built.state.head().clone();
    head.next_seq = 25;
    head.last_mac = ChainMac::from_slice(&built.rows[23].mac).unwrap();
    let key = *built.state.key().expose_secret();
    let mut forger = ChainState::resume(head, AuditKey::from_bytes(key)).unwrap();
    let mut rows = built.rows[..24].to_vec();
    for i in 0..6 {
        let record = forger
            .append(NewEvent::new(
                ts(100 + i),
                "mallory",
                "login.totp",
                "",
                Outcome::Success,
            ))
            .unwrap();
        rows.push(Row::from_record(&record));
    }
    assert!(
        from_genesis(built.k0, &rows, None).is_ok(),
        "undetectable on-box"
    );
    assert_eq!(
        from_genesis(built.k0, &rows, Some(cp)),
        damage(30, DamageKind::Truncated)
    );
}

#[test]
fn a_replaced_key_is_a_key_mismatch() {
    let built = standard();
    let head = built.state.head().clone();
    // Someone swaps the stored epoch key; the box goes on writing with it.
    let mut state = ChainState::resume(head.clone(), AuditKey::from_bytes([0xee; 32])).unwrap();
    let mut rows = built.rows.clone();
    for i in 0..3 {
        rows.push(Row::from_record(&state.append(event(40 + i, 3)).unwrap()));
    }
    // On the box, from the current epoch: the key does not match the marker's commitment.
    assert_eq!(
        from_current_epoch(&head, [0xee; 32], &rows, None),
        damage(21, DamageKind::KeyMismatch)
    );
    // The auditor, from genesis: nothing from seq 31 on verifies under the real key.
    assert_eq!(
        from_genesis(built.k0, &rows, None),
        damage(31, DamageKind::KeyMismatch)
    );
    // The wrong k0: nothing verifies from seq 1.
    assert_eq!(
        from_genesis([8; 32], &rows, None),
        damage(1, DamageKind::KeyMismatch)
    );
}

#[test]
fn another_boxs_chain_does_not_splice_even_with_the_same_key() {
    let built = standard();
    let other = ChainId([1; 16]);
    // Verified as if it were another box's chain: its first row does not chain to that genesis.
    // (Indistinguishable from an altered first row, so it reads as changed.)
    let verdict = Verifier::from_genesis(AuditKey::from_bytes(built.k0), other)
        .verify_all(built.rows.iter().map(Row::view));
    assert_eq!(verdict, damage(1, DamageKind::Changed));
    // Rows of a second box with the same k0 and the same events, spliced in after seq 12.
    let mut twin = ChainState::genesis(AuditKey::from_bytes(built.k0), other, 0);
    let twin_rows: Vec<Row> = (1..=30u16)
        .map(|seq| match seq {
            10 | 20 => twin.evolve(ts(u64::from(seq) - 1), 0).unwrap(),
            _ => twin
                .append(event(u64::from(seq) - 1, seq.wrapping_mul(7919)))
                .unwrap(),
        })
        .map(|r| Row::from_record(&r))
        .collect();
    assert_eq!(twin_rows[3].actor, built.rows[3].actor);
    let mut rows = built.rows[..12].to_vec();
    rows.extend_from_slice(&twin_rows[12..]);
    assert_eq!(
        from_genesis(built.k0, &rows, None),
        damage(13, DamageKind::Changed)
    );
}

#[test]
fn a_missing_or_wrong_epoch_marker_is_a_key_mismatch() {
    let built = standard();
    let key = *built.state.key().expose_secret();
    let rest = || built.rows[20..].iter().map(Row::view);
    // The anchor row is not the marker (the store passed the wrong row).
    let verdict = Verifier::from_epoch(2, AuditKey::from_bytes(key), built.rows[18].view())
        .verify_all(rest());
    assert_eq!(verdict, damage(20, DamageKind::KeyMismatch));
    // The marker of another epoch.
    let verdict =
        Verifier::from_epoch(2, AuditKey::from_bytes(key), built.rows[9].view()).verify_all(rest());
    assert_eq!(verdict, damage(11, DamageKind::KeyMismatch));
    // The right marker, but the caller claims another epoch.
    let verdict = Verifier::from_epoch(3, AuditKey::from_bytes(key), built.rows[19].view())
        .verify_all(rest());
    assert_eq!(verdict, damage(21, DamageKind::KeyMismatch));
    // A genuine marker whose commitment does not match the next key (a foreign writer).
    let mut state = ChainState::genesis(AuditKey::from_bytes([4; 32]), CHAIN_ID, 0);
    let mut rows = vec![Row::from_record(&state.append(event(0, 1)).unwrap())];
    let mut head = state.head().clone();
    head.last_mac = ChainMac::from_slice(&rows[0].mac).unwrap();
    let mut record = state.append(event(1, 1)).unwrap();
    record.action = EPOCH_MARKER_ACTION.into();
    record.details = super::chain::marker_details(1, &[0; 8]);
    // MAC it properly under k0, as a buggy or foreign writer would.
    let mut buf = Vec::new();
    assert!(encode(&mut buf, 2, 0, &record.view()));
    record.mac = ChainMac(
        super::keys::EpochKey::new(AuditKey::from_bytes([4; 32])).chain_mac(&buf, &head.last_mac.0),
    );
    rows.push(Row::from_record(&record));
    assert_eq!(
        from_genesis([4; 32], &rows, None),
        damage(3, DamageKind::KeyMismatch)
    );
}

#[test]
fn the_verdict_streams_after_a_window_and_is_final() {
    let steps: Vec<Step> = (0..300u16).map(Step::Event).collect();
    let built = build([5; 32], &steps);
    let mut rows = built.rows.clone();
    rows[99].actor = "mallory".into();
    let mut verifier = Verifier::from_genesis(AuditKey::from_bytes(built.k0), CHAIN_ID);
    let mut verdict_at = None;
    for (i, row) in rows.iter().enumerate() {
        if let Err(d) = verifier.push(row.view()) {
            verdict_at = Some((i, d));
            break;
        }
    }
    let want = Damage {
        seq: 100,
        kind: DamageKind::Changed,
    };
    assert_eq!(verdict_at, Some((99 + DAMAGE_WINDOW - 1, want)));
    assert_eq!(verifier.push(rows[0].view()), Err(want));
    assert_eq!(verifier.finish(), Err(want));
}

#[test]
fn damage_messages_say_where_and_what() {
    let d = Damage {
        seq: 42,
        kind: DamageKind::Removed,
    };
    assert_eq!(
        d.to_string(),
        "audit chain damaged at seq 42: the row was removed"
    );
    assert_eq!(
        serde_json::to_value(d).unwrap(),
        json!({ "seq": 42, "kind": "removed" })
    );
}

// ---------------------------------------------------------------------------------------------
// Property test: random chains, one random mutation, the documented verdict.

#[derive(Clone, Debug)]
enum Mutation {
    Change {
        row: Index,
        field: u8,
    },
    Delete {
        row: Index,
        renumber: bool,
    },
    Swap {
        a: Index,
        b: Index,
    },
    Insert {
        at: Index,
        seed: u16,
    },
    Duplicate {
        from: Index,
        at: Index,
    },
    Truncate {
        keep: Index,
    },
    RewriteTail {
        keep: Index,
        count: u8,
    },
    ReplaceKey {
        key: [u8; 32],
        events: u8,
        evolve_at: Option<u8>,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![4 => any::<u16>().prop_map(Step::Event), 1 => Just(Step::Evolve)]
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..10).prop_map(|(row, field)| Mutation::Change { row, field }),
        (any::<Index>(), any::<bool>())
            .prop_map(|(row, renumber)| Mutation::Delete { row, renumber }),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
        (any::<Index>(), any::<u16>()).prop_map(|(at, seed)| Mutation::Insert { at, seed }),
        (any::<Index>(), any::<Index>()).prop_map(|(from, at)| Mutation::Duplicate { from, at }),
        any::<Index>().prop_map(|keep| Mutation::Truncate { keep }),
        (any::<Index>(), 1u8..5).prop_map(|(keep, count)| Mutation::RewriteTail { keep, count }),
        (any::<[u8; 32]>(), 1u8..6, proptest::option::of(0u8..6)).prop_map(
            |(key, events, evolve_at)| Mutation::ReplaceKey {
                key,
                events,
                evolve_at
            }
        ),
    ]
}

fn change_field(row: &mut Row, field: u8) {
    match field {
        0 => row.seq += 1 + row.seq % 3,
        1 => row.epoch ^= 1,
        2 => row.timestamp.replace_range(0..4, "1999"),
        3 => row.actor.push('!'),
        4 => row.action.push_str(".x"),
        5 => row.subject.push('~'),
        6 => {
            row.outcome = if row.outcome == "error" {
                "failure".into()
            } else {
                "error".into()
            }
        }
        7 => row.details.insert_str(1, "\"forged\":1,"),
        8 => row.mac[0] ^= 0x80,
        _ => row.mac.clear(),
    }
}

/// What the verifiers should say after a mutation. `from_epoch` is `None` where the mutation
/// touches rows before the current epoch (on-box verification does not look there).
struct Expected {
    from_genesis: Result<(), Damage>,
    from_epoch: Option<Result<(), Damage>>,
}

fn expect(seq: u64, kind: DamageKind) -> Result<(), Damage> {
    Err(Damage { seq, kind })
}

/// A damaged chain as the verifiers see it.
struct Scenario {
    rows: Vec<Row>,
    /// The box's head and key (for verification from its current epoch).
    head: ChainHead,
    key: [u8; 32],
    /// The latest checkpoint the SIEM holds.
    cp: Checkpoint,
    expected: Expected,
}

/// Applies `mutation` to a chain built from `steps`; returns the stored rows, the state the box
/// would verify itself with (head, key), the SIEM's checkpoint and the expected verdicts.
fn mutate(k0: [u8; 32], steps: &[Step], mutation: &Mutation) -> Option<Scenario> {
    use DamageKind::*;
    let built = build(k0, steps);
    let mut rows = built.rows.clone();
    let n = rows.len();
    let head = built.state.head().clone();
    let key = *built.state.key().expose_secret();
    let cp = built.state.checkpoint();
    // 0-based index of the current epoch's first row (the row before it is its marker).
    let epoch_start = head.epoch_first_seq as usize - 1;
    let on_box = |first_touched: usize, verdict: Result<(), Damage>| {
        (first_touched >= epoch_start).then_some(verdict)
    };
    // The epoch the verifier is in when it reaches position i.
    let epochs: Vec<u32> = rows.iter().map(|r| r.epoch).collect();
    let epoch_at = |i: usize| epochs.get(i).copied().unwrap_or(head.epoch);
    let (verdict, first_touched) = match *mutation {
        Mutation::Change { row, field } => {
            let i = row.index(n);
            change_field(&mut rows[i], field);
            (expect(i as u64 + 1, Changed), i)
        }
        Mutation::Delete { row, renumber } => {
            let i = row.index(n);
            rows.remove(i);
            if renumber {
                renumber_from(&mut rows, i);
            }
            let kind = if i == n - 1 {
                Truncated
            } else if renumber && i == n - 2 {
                Changed
            } else {
                Removed
            };
            (expect(i as u64 + 1, kind), i)
        }
        Mutation::Swap { a, b } => {
            let (a, b) = (a.index(n), b.index(n));
            if a == b {
                return None;
            }
            let (a, b) = (a.min(b), a.max(b));
            swap_contents(&mut rows, a, b);
            (expect(a as u64 + 1, Reordered), a)
        }
        Mutation::Insert { at, seed } => {
            let i = at.index(n + 1);
            let epoch = epoch_at(i);
            let mut row = forged(i as u64 + 1, epoch);
            row.actor = format!("mallory-{seed}");
            rows.insert(i, row);
            renumber_from(&mut rows, i);
            let kind = if i == n { Changed } else { Inserted };
            (expect(i as u64 + 1, kind), i)
        }
        Mutation::Duplicate { from, at } => {
            let i = at.index(n + 1);
            if i == 0 {
                return None;
            }
            let j = from.index(i);
            let same_epoch = rows[j].epoch == epoch_at(i);
            rows.insert(i, rows[j].clone());
            renumber_from(&mut rows, i);
            let kind = match (same_epoch, i == n) {
                (true, _) => Reordered,
                (false, false) => Inserted,
                (false, true) => Changed,
            };
            (expect(i as u64 + 1, kind), j.min(i))
        }
        Mutation::Truncate { keep } => {
            let t = keep.index(n);
            rows.truncate(t);
            (expect(t as u64 + 1, Truncated), t)
        }
        Mutation::RewriteTail { keep, count } => {
            // Only the current epoch can be rewritten by whoever holds the box's key: keep at
            // least everything up to its marker, and cut at least one row.
            if n <= epoch_start {
                return None;
            }
            let t = epoch_start + keep.index(n - epoch_start);
            let mut forged_head = head.clone();
            forged_head.next_seq = t as u64 + 1;
            if t > 0 {
                forged_head.last_mac = ChainMac::from_slice(&rows[t - 1].mac).unwrap();
            } else {
                forged_head.last_mac = ChainState::genesis(AuditKey::from_bytes(k0), CHAIN_ID, 0)
                    .head()
                    .last_mac;
            }
            let mut forger = ChainState::resume(forged_head, AuditKey::from_bytes(key)).ok()?;
            rows.truncate(t);
            for c in 0..count {
                let record = forger
                    .append(NewEvent::new(
                        ts(500 + u64::from(c)),
                        "mallory",
                        "x",
                        "",
                        Outcome::Success,
                    ))
                    .unwrap();
                rows.push(Row::from_record(&record));
            }
            let new_len = rows.len();
            let verdict = if new_len >= n {
                expect(n as u64, Truncated)
            } else {
                expect(new_len as u64 + 1, Truncated)
            };
            (verdict, t)
        }
        Mutation::ReplaceKey {
            key: replacement,
            events,
            evolve_at,
        } => {
            let mut state =
                ChainState::resume(head.clone(), AuditKey::from_bytes(replacement)).unwrap();
            let mut evolved = false;
            for e in 0..events {
                let record = if evolve_at == Some(e) {
                    evolved = true;
                    state.evolve(ts(600 + u64::from(e)), 0).unwrap()
                } else {
                    state
                        .append(event(600 + u64::from(e), u16::from(e)))
                        .unwrap()
                };
                rows.push(Row::from_record(&record));
            }
            let first_bad = n as u64 + 1;
            let genesis = if events >= 2 {
                expect(first_bad, KeyMismatch)
            } else {
                expect(first_bad, Changed)
            };
            let box_head = state.head().clone();
            let box_key = *state.key().expose_secret();
            let on_box = if evolved {
                // The box's own marker commits to the replaced key's successor: consistent.
                Ok(())
            } else if head.epoch > 0 {
                expect(head.epoch_first_seq, KeyMismatch)
            } else if n < DAMAGE_WINDOW {
                // Epoch 0 with the replaced key: rows 1..=n fail, then the box's own rows verify
                // (within the window), so the run of bad rows reads as changed.
                expect(1, Changed)
            } else {
                expect(1, KeyMismatch)
            };
            let cp = state.checkpoint();
            let expected = Expected {
                from_genesis: genesis,
                from_epoch: Some(on_box),
            };
            return Some(Scenario {
                rows,
                head: box_head,
                key: box_key,
                cp,
                expected,
            });
        }
    };
    let expected = Expected {
        from_genesis: verdict,
        from_epoch: on_box(first_touched, verdict),
    };
    Some(Scenario {
        rows,
        head,
        key,
        cp,
        expected,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn intact_random_chains_verify_both_ways(
        k0 in any::<[u8; 32]>(),
        steps in proptest::collection::vec(step_strategy(), 0..60),
    ) {
        let built = build(k0, &steps);
        let cp = built.state.checkpoint();
        let report = from_genesis(k0, &built.rows, Some(cp)).unwrap();
        prop_assert_eq!(report.records, steps.len() as u64);
        prop_assert_eq!(report.last_mac, cp.mac);
        prop_assert_eq!(report.last_epoch, built.state.head().epoch);
        let key = *built.state.key().expose_secret();
        let on_box = from_current_epoch(built.state.head(), key, &built.rows, Some(cp)).unwrap();
        prop_assert_eq!(on_box.last_seq, cp.seq);
        prop_assert_eq!(on_box.first_epoch, built.state.head().epoch);
    }

    /// Verifies: V50, V51
    #[test]
    fn one_random_mutation_is_found_with_the_right_seq_and_kind(
        k0 in any::<[u8; 32]>(),
        steps in proptest::collection::vec(step_strategy(), 1..60),
        mutation in mutation_strategy(),
    ) {
        let Some(s) = mutate(k0, &steps, &mutation) else {
            return Ok(());
        };
        let got = from_genesis(k0, &s.rows, Some(s.cp)).map(|_| ());
        prop_assert_eq!(got, s.expected.from_genesis, "from genesis");
        if let Some(want) = s.expected.from_epoch {
            let got = from_current_epoch(&s.head, s.key, &s.rows, Some(s.cp)).map(|_| ());
            prop_assert_eq!(got, want, "from the current epoch");
        }
    }
}
