//! Clinical records from the command line, where what the box can prove depends on more than
//! the records: epochs of the audit chain, the stored schema, people's roles and their key
//! slots. Each test changes the data directory the way an outsider with the `database` key (or
//! a text editor) could, and checks that warden names it as damage (exit code 3).

mod support;

use support::{run, Fixture};

const SCHEMA: &[u8] = b"format: warden-records-schema\ncollections:\n  patients:\n    class: phi\n    fields:\n      mrn: { type: text, required: true }\n  treatments:\n    class: treatment\n    fields:\n      energy_j: { type: number }\n      notes: { type: text, phi: true }\n";

/// A fixture with the schema applied and one treatment written by the operator.
fn with_a_record() -> Fixture {
    let fx = Fixture::new();
    let schema = fx.file("records.yaml", SCHEMA);
    run(fx.admin().args(["records", "schema", "apply"]).arg(&schema)).ok();
    run(fx.operator().args([
        "records",
        "put",
        "treatments",
        "t-1",
        "--json",
        r#"{"energy_j": 1.5, "notes": "tolerated well"}"#,
    ]))
    .ok();
    fx
}

/// Runs SQL on the fixture's database, as an outsider holding the `database` key could.
fn tamper(fx: &Fixture, sql: &str) {
    fx.database().conn().execute_batch(sql).unwrap();
}

/// A new audit epoch (here by rotating the `audit` key; also daily by default) leaves older
/// records where the box cannot authenticate their events without the auditor's key: they are
/// matched all the same and reported apart, not as damage; with the auditor's key everything
/// verifies from genesis.
/// Verifies: V57
#[test]
fn records_verify_stays_ok_across_epochs_and_the_auditor_s_key_covers_them() {
    let fx = with_a_record();
    run(fx.admin().args(["keys", "rotate", "audit"])).ok();
    let out = run(fx.auditor().args(["records", "verify"]));
    out.ok();
    let text = out.stdout_text();
    assert!(text.contains("records: OK, 1 versions"), "{text}");
    // The version and the schema's version 1.
    assert!(
        text.contains("2 versions, signatures and schema versions were recorded in earlier epochs"),
        "{text}"
    );
    let out = run(fx
        .auditor()
        .arg("--auditor-passphrase-file")
        .arg(fx.path("auditor-passphrase"))
        .args(["records", "verify", "--auditor-key"])
        .arg(fx.auditor_key()));
    out.ok();
    let text = out.stdout_text();
    assert!(text.contains("records: OK"), "{text}");
    assert!(!text.contains("earlier epochs"), "{text}");
    // A changed version is still named, in whichever epoch its event lies.
    tamper(
        &fx,
        "UPDATE record_versions SET fields = '{\"energy_j\":9.0}' WHERE record_id = 't-1'",
    );
    let out = run(fx.auditor().args(["records", "verify"]));
    out.expect_code(3).stderr_has(&["damaged"]);
    assert!(
        out.stdout_text()
            .contains("treatments/t-1 version 1: changed"),
        "{}",
        out.stdout_text()
    );
}

/// Declassifying a collection in the stored schema (so that new PHI would be stored in clear)
/// is named: each schema version is matched with its `records.schema` event.
#[test]
fn a_schema_changed_in_the_database_is_named_by_records_verify() {
    let fx = with_a_record();
    // Made consistent in the table: the document's own SHA-256 is recomputed.
    let db = fx.database();
    let document: String = db
        .conn()
        .query_row(
            "SELECT document FROM records_schema WHERE version = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let forged = document.replace("\"phi\":true", "\"phi\":false");
    assert_ne!(forged, document);
    db.conn()
        .execute(
            "UPDATE records_schema SET document = ?1, sha256 = ?2 WHERE version = 1",
            rusqlite::params![forged, openssl::sha::sha256(forged.as_bytes()).to_vec()],
        )
        .unwrap();
    drop(db);
    let out = run(fx.auditor().args(["records", "verify"]));
    out.expect_code(3);
    let text = out.stdout_text();
    assert!(
        text.contains("(schema)/records version 1: changed"),
        "{text}"
    );
}

/// A role changed in the `users` table alone does not grant that role: the person's key slot
/// says which role it was made for.
#[test]
fn a_role_changed_in_the_database_alone_is_refused_as_damage() {
    let fx = with_a_record();
    tamper(
        &fx,
        "UPDATE users SET role = 'administrator' WHERE username = 'olga'",
    );
    run(fx.operator().args(["user", "list"]))
        .expect_code(3)
        .stderr_has(&["olga is administrator", "changed outside warden"]);
    assert_eq!(mismatches(&fx), 1);
}

/// How many sign-ins were refused because the users table disagreed with a key slot.
fn mismatches(fx: &Fixture) -> i64 {
    fx.database()
        .conn()
        .query_row(
            "SELECT count(*) FROM audit_events WHERE action = 'keys.slot.mismatch'
             AND outcome = 'failure'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// The same through the master passphrase, which checks passwords against the stored hashes:
/// another person's hash copied into a row opens nothing, because the password must also open
/// the person's own key slot.
#[test]
fn a_password_hash_copied_into_another_row_opens_nothing_even_with_the_master_passphrase() {
    let fx = with_a_record();
    tamper(
        &fx,
        "UPDATE users SET password_phc = (SELECT password_phc FROM users WHERE username = 'admin')
         WHERE username = 'olga'",
    );
    run(fx
        .warden()
        .args(["--as", "olga", "--password-file"])
        .arg(fx.admin_password_file())
        .args(["records", "get", "treatments", "t-1"]))
    .expect_code(3)
    .stderr_has(&["does not open their key slot", "changed outside warden"]);
    assert_eq!(mismatches(&fx), 1);
}

/// A person's slot whose key wrap was changed (the file's digest made to match, as someone who
/// knows the format would) is damage (exit code 3), not a failed sign-in.
#[test]
fn a_damaged_wrap_in_a_person_s_slot_is_named_as_damage() {
    use base64::Engine as _;
    let fx = with_a_record();
    support::rewrite_keyslots(&fx.data_dir.join("keyslots.json"), |doc| {
        let slot = doc["slots"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|s| s["holder"] == "operator")
            .unwrap();
        let wrap = &mut slot["wraps"][0]["wrap"];
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(wrap.as_str().unwrap())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        *wrap = base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into();
    });
    run(fx
        .warden_without_passphrase()
        .args(["--as", "olga", "--password-file"])
        .arg(fx.path("olga-password"))
        .args(["records", "get", "treatments", "t-1"]))
    .expect_code(3)
    .stderr_has(&[
        "keyslots.json",
        "does not open or does not match its key check",
    ]);
}

/// One changed byte in a person's slot — here in its salt, which without the file's digest
/// made the right password look wrong — is damage, found before the password is tried: exit
/// code 3 with the way out, and however often it is tried no failed sign-in is counted (no
/// lockout): the restored file opens at once.
#[test]
fn a_changed_byte_in_a_person_s_slot_is_damage_and_counts_no_failed_sign_in() {
    let fx = with_a_record();
    let path = fx.data_dir.join("keyslots.json");
    let good = std::fs::read(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let salt = doc["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["holder"] == "operator")
        .unwrap()["salt"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = String::from_utf8(good.clone())
        .unwrap()
        .find(&salt)
        .unwrap()
        + 3;
    let mut bad = good.clone();
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, &bad).unwrap();
    let get = || {
        run(fx
            .warden_without_passphrase()
            .args(["--as", "olga", "--password-file"])
            .arg(fx.path("olga-password"))
            .args(["records", "get", "treatments", "t-1"]))
    };
    for _ in 0..6 {
        get().expect_code(3).stderr_has(&[
            "keyslots.json is damaged",
            "does not match its digest",
            "restore it from a backup",
        ]);
    }
    std::fs::write(&path, &good).unwrap();
    get().ok();
}
