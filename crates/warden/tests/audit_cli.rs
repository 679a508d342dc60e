//! `warden audit` end to end on a real SQLCipher database, with Python `sqlcipher3` as an
//! independent reader (and as the tool a tamperer would use).

mod support;

use support::{python, run, Fixture};
use warden_core::keyring::Purpose;

/// Python that opens the database with a raw key the way DESIGN.md says (sqlcipher3).
const SQLCIPHER: &str = r#"
import sys, sqlcipher3
path, key, sql = sys.argv[1], sys.argv[2], sys.argv[3]
conn = sqlcipher3.connect(path)
conn.execute(f"PRAGMA key = \"x'{key}'\"")
conn.execute("PRAGMA cipher_compatibility = 4")
rows = conn.execute(sql).fetchall()
conn.commit()
for row in rows:
    print("|".join(str(v) for v in row))
"#;

fn db_path(fx: &Fixture) -> std::path::PathBuf {
    fx.data_dir.join("state/warden.db")
}

/// Appends `count` events through the store library (the chain already holds init's event).
fn add_events(fx: &Fixture, count: usize) {
    use warden_core::audit::{NewEvent, Outcome};
    use warden_store::audit::{timestamp_now, AuditLog};
    let mut db = warden_store::Database::open(&db_path(fx), &fx.key(Purpose::Database)).unwrap();
    let log = AuditLog::new(fx.key(Purpose::Audit));
    for i in 0..count {
        let event = NewEvent::new(
            timestamp_now(),
            "tester",
            "test.event",
            format!("item-{i}"),
            Outcome::Success,
        )
        .with_details(serde_json::json!({"i": i, "note": "a,b \"quoted\""}));
        log.append(&mut db, vec![event]).unwrap();
    }
}

#[test]
fn verify_from_the_current_epoch_and_from_genesis() {
    let fx = Fixture::new();
    add_events(&fx, 12);
    let out = run(fx.warden().args(["audit", "verify"]));
    out.ok();
    assert!(
        out.stdout_text()
            .contains("OK: 13 records verified from genesis"),
        "{}",
        out.stdout_text()
    );
    let out = run(fx
        .warden()
        .arg("--auditor-passphrase-file")
        .arg(&fx.auditor_passphrase_file)
        .args(["audit", "verify", "--auditor-key"])
        .arg(fx.auditor_key()));
    out.ok();
    assert!(out
        .stdout_text()
        .contains("13 records verified from genesis"));
}

#[test]
fn a_wrong_auditor_passphrase_is_refused() {
    let fx = Fixture::new();
    let wrong = fx.file("wrong-auditor", b"this is not the auditor passphrase\n");
    run(fx
        .warden()
        .arg("--auditor-passphrase-file")
        .arg(&wrong)
        .args(["audit", "verify", "--auditor-key"])
        .arg(fx.auditor_key()))
    .expect_code(4)
    .stderr_has(&["wrong auditor passphrase"]);
}

#[test]
fn sqlcipher3_reads_the_audit_rows_with_the_raw_key_and_fails_with_another() {
    let Some(py) = python() else { return };
    let fx = Fixture::new();
    add_events(&fx, 3);
    let key = hex::encode(fx.key(Purpose::Database).expose_secret());
    let out = run(&mut py.code(
        SQLCIPHER,
        [
            db_path(&fx).to_str().unwrap(),
            &key,
            "SELECT seq, actor, action, subject, outcome, length(mac) FROM audit_events ORDER BY seq",
        ],
    ));
    out.ok();
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("1|warden|warden.init|"));
    assert_eq!(lines[3], "4|tester|test.event|item-2|success|32");
    // The same Python with another key cannot read anything.
    let out = run(&mut py.code(
        SQLCIPHER,
        [
            db_path(&fx).to_str().unwrap(),
            &"00".repeat(32),
            "SELECT count(*) FROM audit_events",
        ],
    ));
    assert_ne!(out.code, 0, "a wrong key must fail in sqlcipher3 too");
    assert!(
        out.stderr.contains("file is not a database"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_row_changed_with_sqlcipher3_is_named_by_verify() {
    let Some(py) = python() else { return };
    let fx = Fixture::new();
    add_events(&fx, 8);
    let key = hex::encode(fx.key(Purpose::Database).expose_secret());
    run(&mut py.code(
        SQLCIPHER,
        [
            db_path(&fx).to_str().unwrap(),
            &key,
            "UPDATE audit_events SET outcome = 'failure' WHERE seq = 5",
        ],
    ))
    .ok();
    let out = run(fx.warden().args(["audit", "verify"]));
    out.expect_code(3)
        .stderr_has(&["DAMAGED at seq 5", "changed"]);
    // The export still writes every row, each with its status, and fails the same way.
    let export = fx.path("export.csv");
    run(fx
        .warden()
        .args(["audit", "export", "--format", "csv", "-o"])
        .arg(&export))
    .expect_code(3);
    let csv = std::fs::read_to_string(&export).unwrap();
    assert_eq!(csv.lines().count(), 1 + 9);
    assert!(csv.lines().nth(4).unwrap().ends_with(",verified"));
    assert!(csv
        .lines()
        .nth(5)
        .unwrap()
        .contains("NOT VERIFIED (chain damaged at seq 5: changed)"));
}

#[test]
fn export_formats_carry_who_what_when_outcome_and_the_verdict() {
    let fx = Fixture::new();
    add_events(&fx, 4);
    let out = run(fx.warden().args(["audit", "export", "--format", "jsonl"]));
    out.ok();
    let lines: Vec<serde_json::Value> = out
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "warden-audit-export");
    assert_eq!(lines[0]["verification"]["status"], "ok");
    assert_eq!(lines.len(), 1 + 5);
    let last = &lines[5];
    for field in [
        "seq",
        "timestamp",
        "actor",
        "action",
        "subject",
        "outcome",
        "details",
        "mac",
        "chain_status",
    ] {
        assert!(!last[field].is_null(), "missing {field}");
    }
    assert_eq!(last["chain_status"], "verified");

    let out = run(fx.warden().args(["audit", "export", "--format", "csv"]));
    out.ok();
    let text = out.stdout_text();
    assert!(text.starts_with(
        "seq,timestamp_utc,epoch,actor,action,subject,outcome,details,mac,chain_status\n"
    ));
    // Details with commas and quotes are quoted per RFC 4180.
    assert!(
        text.contains(r#""{""i"":3,""note"":""a,b \""quoted\""""}""#),
        "{text}"
    );
}

#[test]
fn a_cut_tail_is_caught_with_the_checkpoint() {
    let Some(py) = python() else { return };
    let fx = Fixture::new();
    add_events(&fx, 120);
    let out = run(fx.warden().args(["audit", "checkpoint"]));
    out.ok();
    let checkpoint = out.stdout_text().trim().to_string();
    assert!(checkpoint.starts_with("100:"), "{checkpoint}");
    let key = hex::encode(fx.key(Purpose::Database).expose_secret());
    run(&mut py.code(
        SQLCIPHER,
        [
            db_path(&fx).to_str().unwrap(),
            &key,
            "DELETE FROM audit_events WHERE seq > 90",
        ],
    ))
    .ok();
    run(fx.warden().args(["audit", "verify"])).ok();
    run(fx
        .warden()
        .args(["audit", "verify", "--checkpoint", &checkpoint]))
    .expect_code(3)
    .stderr_has(&["DAMAGED at seq 91", "truncated"]);
}

#[test]
fn tail_shows_the_latest_events() {
    let fx = Fixture::new();
    add_events(&fx, 5);
    let out = run(fx.warden().args(["audit", "tail", "-n", "2", "--json"]));
    out.ok();
    let rows: Vec<serde_json::Value> = out
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["seq"], 6);
    assert_eq!(rows[1]["subject"], "item-4");
}
