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

const AUDITOR_PASSWORD: &str = "Auditor-Reads-Trails-1";

const FAST: &str = support::FAST_IDENTITY_POLICY;

/// Adds an auditor (as the fixture's administrator) and returns the password file to sign in.
fn add_auditor(fx: &Fixture) -> std::path::PathBuf {
    let file = fx.file(
        "auditor-password",
        format!("{AUDITOR_PASSWORD}\n").as_bytes(),
    );
    let mut cmd = fx.admin();
    cmd.args([
        "user",
        "add",
        "aud",
        "--role",
        "auditor",
        "--new-password-file",
    ])
    .arg(&file);
    run(&mut cmd).ok();
    file
}

/// `warden audit export …` signed in as the auditor.
fn export(fx: &Fixture, password_file: &std::path::Path) -> std::process::Command {
    let mut cmd = fx.warden();
    cmd.args(["audit", "export", "--as", "aud", "--password-file"])
        .arg(password_file);
    cmd
}

fn db_path(fx: &Fixture) -> std::path::PathBuf {
    fx.data_dir.join("state/warden.db")
}

/// How many events the fixture's `warden init` wrote (init, first administrator).
fn initial_events(fx: &Fixture) -> u64 {
    let db = warden_store::Database::open(&db_path(fx), &fx.key(Purpose::Database)).unwrap();
    warden_store::audit::last_seq(&db).unwrap()
}

/// Appends `count` events through the store library (after the events `init` wrote).
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

/// Verifies: V48, V53, V76
#[test]
fn verify_from_the_current_epoch_and_from_genesis() {
    let fx = Fixture::new();
    // The command's own sign-in (login.cli) is appended before it verifies.
    let total = initial_events(&fx) + 12 + 1;
    add_events(&fx, 12);
    let out = run(fx.admin().args(["audit", "verify"]));
    out.ok();
    assert!(
        out.stdout_text()
            .contains(&format!("OK: {total} records verified from genesis")),
        "{}",
        out.stdout_text()
    );
    let out = run(fx
        .admin()
        .arg("--auditor-passphrase-file")
        .arg(&fx.auditor_passphrase_file)
        .args(["audit", "verify", "--auditor-key"])
        .arg(fx.auditor_key()));
    out.ok();
    // Since the first verification: its audit.verify event and this command's sign-in.
    let total = total + 2;
    assert!(
        out.stdout_text()
            .contains(&format!("{total} records verified from genesis")),
        "{}",
        out.stdout_text()
    );
}

/// Verifies: V53
#[test]
fn a_wrong_auditor_passphrase_is_refused() {
    let fx = Fixture::new();
    let wrong = fx.file("wrong-auditor", b"this is not the auditor passphrase\n");
    run(fx
        .admin()
        .arg("--auditor-passphrase-file")
        .arg(&wrong)
        .args(["audit", "verify", "--auditor-key"])
        .arg(fx.auditor_key()))
    .expect_code(4)
    .stderr_has(&["wrong auditor passphrase"]);
}

/// Verifies: V1, V2, V4, V63, V83
#[test]
fn sqlcipher3_reads_the_audit_rows_with_the_raw_key_and_fails_with_another() {
    let Some(py) = python() else { return };
    let fx = Fixture::new();
    let first = initial_events(&fx) + 1;
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
    assert_eq!(lines.len() as u64, first + 2, "{text}");
    assert!(
        lines[0].starts_with("1|master-passphrase|warden.init|"),
        "{text}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!("{}|tester|test.event|item-2|success|32", first + 2)
    );
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

/// Verifies: V48, V50, V77
#[test]
fn a_row_changed_with_sqlcipher3_is_named_by_verify() {
    let Some(py) = python() else { return };
    let fx = Fixture::with_identity_policy(FAST);
    let auditor = add_auditor(&fx);
    add_events(&fx, 8);
    let damaged = initial_events(&fx) - 3;
    let key = hex::encode(fx.key(Purpose::Database).expose_secret());
    run(&mut py.code(
        SQLCIPHER,
        [
            db_path(&fx).to_str().unwrap(),
            &key,
            &format!("UPDATE audit_events SET outcome = 'failure' WHERE seq = {damaged}"),
        ],
    ))
    .ok();
    let out = run(fx.admin().args(["audit", "verify"]));
    out.expect_code(3)
        .stderr_has(&[&format!("DAMAGED at seq {damaged}"), "changed"]);
    // The export still writes every row, each with its status, and fails the same way.
    let path = fx.path("export.csv");
    run(export(&fx, &auditor)
        .args(["--format", "csv", "-o"])
        .arg(&path))
    .expect_code(3);
    let csv = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    // The export's own sign-in events came after the damage.
    assert!(rows.len() as u64 > damaged + 1);
    assert!(rows[damaged as usize - 1].ends_with(",verified"));
    assert!(rows[damaged as usize].contains(&format!(
        "NOT VERIFIED (chain damaged at seq {damaged}: changed)"
    )));
}

/// Verifies: V47, V54
#[test]
fn export_formats_carry_who_what_when_outcome_and_the_verdict() {
    let fx = Fixture::with_identity_policy(FAST);
    let auditor = add_auditor(&fx);
    add_events(&fx, 4);
    // Only an auditor may export.
    let mut as_admin = fx.admin();
    as_admin.args(["audit", "export"]);
    run(&mut as_admin).expect_code(5);
    let out = run(export(&fx, &auditor).args(["--format", "jsonl"]));
    out.ok();
    let lines: Vec<serde_json::Value> = out
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "warden-audit-export");
    assert_eq!(lines[0]["verification"]["status"], "ok");
    let last = lines
        .iter()
        .rev()
        .find(|l| l["action"] == "test.event")
        .unwrap();
    // The administrator's refused attempt is in the trail...
    assert!(lines.iter().any(|l| l["action"] == "audit.export.denied"
        && l["actor"] == "admin"
        && l["outcome"] == "denied"));
    // ...and so is the auditor's export, right after it was written.
    // (`tail -n 2`: the export, then the tail command's own sign-in.)
    let tail = run(fx.admin().args(["audit", "tail", "-n", "2", "--json"]));
    let text = tail.stdout_text();
    let last_event: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(last_event["action"], "audit.export");
    assert_eq!(last_event["actor"], "aud");
    // Like every audit event, the export is queued for the SIEM in the same transaction.
    let db = warden_store::Database::open(&db_path(&fx), &fx.key(Purpose::Database)).unwrap();
    let spooled: i64 = db
        .conn()
        .query_row(
            "SELECT count(*) FROM siem_spool WHERE kind = 'audit_event'
             AND payload LIKE '%\"action\":\"audit.export\"%' AND payload LIKE '%\"user\":\"aud\"%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        spooled >= 1,
        "the export's audit event is not in the SIEM spool"
    );
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

    let out = run(export(&fx, &auditor).args(["--format", "csv"]));
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

/// Security regression (CVE-2023-31438 class): a tail cut from the table with sqlcipher3 is
/// named by `audit verify` on the box, without any checkpoint, and with the auditor's key.
#[test]
fn a_cut_tail_is_named_on_the_box_without_a_checkpoint() {
    let Some(py) = python() else { return };
    let fx = Fixture::new();
    add_events(&fx, 120);
    let out = run(fx.admin().args(["audit", "checkpoint"]));
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
    // Nothing is appended to the cut chain any more (a privileged change is refused), but
    // reading it still works and names the cut.
    run(fx
        .operator()
        .args(["vault", "verify"])
        .arg(fx.auditor_key()))
    .expect_code(3)
    .stderr_has(&["audit chain is damaged", "missing from the end"]);
    run(fx.admin().args(["audit", "verify"]))
        .expect_code(3)
        .stderr_has(&["DAMAGED at seq 91", "truncated"]);
    run(fx
        .admin()
        .arg("--auditor-passphrase-file")
        .arg(&fx.auditor_passphrase_file)
        .args(["audit", "verify", "--auditor-key"])
        .arg(fx.auditor_key()))
    .expect_code(3)
    .stderr_has(&["DAMAGED at seq 91", "truncated"]);
}

#[test]
fn tail_shows_the_latest_events() {
    let fx = Fixture::new();
    add_events(&fx, 5);
    let out = run(fx.admin().args(["audit", "tail", "-n", "2", "--json"]));
    out.ok();
    let rows: Vec<serde_json::Value> = out
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The last two rows before the command's own audit.tail event: the last test event and
    // the command's sign-in.
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["subject"], "item-4");
    assert_eq!(rows[1]["action"], "login.cli");
    assert_eq!(rows[1]["actor"], "admin");
    assert_eq!(rows[1]["seq"], initial_events(&fx) - 1);
}

/// A data directory whose database is gone (its key slots are there) has lost it: damage,
/// and verification creates nothing.
#[test]
fn a_missing_database_is_an_error_and_is_not_recreated() {
    let fx = Fixture::new();
    let db = db_path(&fx);
    std::fs::remove_file(&db).unwrap();
    let _ = std::fs::remove_file(db.with_extension("db-wal"));
    let _ = std::fs::remove_file(db.with_extension("db-shm"));
    run(fx.auditor().args(["audit", "verify"]))
        .expect_code(3)
        .stderr_has(&["warden.db", "missing", "restore it from a backup"]);
    assert!(!db.exists(), "verification created a database");
}

/// A removed epoch marker is named damage (exit 3), not an error.
#[test]
fn a_missing_epoch_marker_is_named_damage() {
    let Some(py) = python() else { return };
    let fx = Fixture::with_identity_policy(FAST);
    // Evolve the key: the default policy evolves every 10,000 events, so force one marker.
    let db = warden_store::Database::open(&db_path(&fx), &fx.key(Purpose::Database)).unwrap();
    db.conn()
        .execute("UPDATE audit_state SET epoch_max_events = 3", [])
        .unwrap();
    drop(db);
    add_events(&fx, 5);
    let db = warden_store::Database::open(&db_path(&fx), &fx.key(Purpose::Database)).unwrap();
    let marker: i64 = db
        .conn()
        .query_row(
            "SELECT max(seq) FROM audit_events WHERE action = 'audit.epoch'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(db);
    let key = hex::encode(fx.key(Purpose::Database).expose_secret());
    run(&mut py.code(
        SQLCIPHER,
        [
            db_path(&fx).to_str().unwrap(),
            &key,
            &format!("DELETE FROM audit_events WHERE seq = {marker}"),
        ],
    ))
    .ok();
    run(fx.admin().args(["audit", "verify"]))
        .expect_code(3)
        .stderr_has(&[&format!("DAMAGED at seq {marker}"), "removed"]);
}
