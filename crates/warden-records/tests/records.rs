//! The records rules of issue 13, each on a real SQLCipher store with the audit chain: roles
//! (seed 002's table), PHI sealed per version, history kept, every write and PHI read audited,
//! verification naming a changed version, electronic signatures with re-authentication, and
//! application events.

mod support;

use serde_json::{json, Value};
use support::{code, fields, pw, Env, DB_KEY, PHI_KEY, RECORDINGS_KEY};
use warden_core::audit::Outcome;
use warden_core::rbac::Permission;
use warden_core::secret::Key32;
use warden_records::ops::SignRequest;
use warden_records::recording::{RecordingReader, RecordingWriter};
use warden_records::verify::DamageKind;
use warden_records::{Meaning, PhiView, RecordsError, SignatureStatus};
use warden_store::audit::{ExportFormat, VerifyFrom};
use warden_store::identity::AuthError;

fn details(row: &warden_store::audit::StoredRow) -> Value {
    serde_json::from_str(&row.details).unwrap()
}

fn patient() -> serde_json::Map<String, Value> {
    fields(json!({"mrn": "MRN-00042", "name": "Jane Q. Patient", "dob": "1961-07-04"}))
}

/// Verifies: V38, V60, V61
#[test]
fn operator_writes_phi_sealed_per_version_and_every_write_and_phi_read_is_audited() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    let written = olga
        .put(&mut store, "patients", "p-0001", &patient())
        .unwrap();
    assert_eq!((written.version, written.kind.name()), (1, "create"));

    // In the database (opened with the database key): no PHI in clear, only sealed bytes.
    let (stored_fields, sealed): (String, Vec<u8>) = store
        .db
        .conn()
        .query_row(
            "SELECT fields, phi_sealed FROM record_versions WHERE record_id = 'p-0001'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(stored_fields, "{}");
    assert!(!String::from_utf8_lossy(&sealed).contains("Jane"));

    // The write's audit event carries the version hash, and no PHI.
    let rows = env.audit();
    let create = rows.iter().find(|r| r.action == "record.create").unwrap();
    assert_eq!(create.actor, "olga");
    assert_eq!(create.subject, "record:patients/p-0001");
    assert_eq!(details(create)["hash"], hex::encode(written.hash));
    assert_eq!(create.seq, written.audit_seq);
    assert!(!create.details.contains("Jane"));

    // Reading opens the PHI and is itself audited (field names, not values).
    let read = olga.get(&mut store, "patients", "p-0001", None).unwrap();
    assert_eq!(read.all_fields()["name"], "Jane Q. Patient");
    let rows = env.audit();
    let audited = rows.iter().rfind(|r| r.action == "record.read").unwrap();
    assert_eq!(audited.actor, "olga");
    assert_eq!(
        details(audited)["phi_fields"],
        json!(["dob", "mrn", "name"])
    );
    assert!(!audited.details.contains("Jane"));
}

/// Verifies: V65
#[test]
fn a_technician_is_refused_phi_and_cannot_decrypt_it_with_the_database_open() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    olga.put(&mut store, "patients", "p-0001", &patient())
        .unwrap();

    let mut tess = env.session(&mut store, "tess");
    assert!(!tess.has_phi());
    // Refused by role, and each refusal is on the record.
    let err = tess
        .get(&mut store, "patients", "p-0001", None)
        .unwrap_err();
    assert!(
        matches!(&err, RecordsError::Denied(AuthError::Denied { permission, .. })
            if *permission == Permission::RecordsTreatmentRead),
        "{err}"
    );
    let err = tess
        .unlock_phi(&mut store, Key32::from_bytes(PHI_KEY))
        .unwrap_err();
    assert!(matches!(err, RecordsError::Denied(_)), "{err}");
    assert!(!tess.has_phi());
    let denials: Vec<_> = env
        .audit()
        .into_iter()
        .filter(|r| r.actor == "tess" && r.outcome == "denied")
        .map(|r| r.action)
        .collect();
    assert_eq!(denials, ["record.get.denied", "records.phi.denied"]);

    // With the database open (the database key, as a technician's box would hold it), the
    // PHI is sealed bytes that neither the database key nor any other key opens.
    let sealed: Vec<u8> = store
        .db
        .conn()
        .query_row(
            "SELECT phi_sealed FROM record_versions WHERE record_id = 'p-0001'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for key in [DB_KEY, RECORDINGS_KEY, [0; 32]] {
        for label in [&b""[..], b"warden record phi v1"] {
            assert!(warden_core::aead::open(&Key32::from_bytes(key), label, &sealed).is_err());
        }
    }
    // Even with the phi key, a PHI key object cannot be made without records.phi: PhiKey::new
    // takes an authorization for it, which a technician's role never yields.
    let by = tess
        .require(&mut store, Permission::RecordsCalibrationWrite, "test")
        .unwrap();
    assert!(warden_records::PhiKey::new(&by, Key32::from_bytes(PHI_KEY)).is_err());

    // Calibration is theirs.
    let cal = tess
        .put(
            &mut store,
            "calibrations",
            "cal-2026-04",
            &fields(json!({"output_mw": 498.7, "device": "laser-7"})),
        )
        .unwrap();
    assert_eq!(cal.version, 1);
    assert!(tess
        .get(&mut store, "calibrations", "cal-2026-04", None)
        .is_ok());
    // ... and configuration is not.
    assert!(tess.list(&mut store, "settings").is_err());
}

#[test]
fn the_seed_s_role_table() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    let root = env.session(&mut store, "root");
    let audra = env.session(&mut store, "audra");
    let treatment = fields(json!({"patient": "p-0001", "energy_j": 1.5, "outcome": "good"}));
    olga.put(&mut store, "treatments", "t-1", &treatment)
        .unwrap();
    // The administrator configures, but reaches no PHI and no treatment.
    assert!(!root.has_phi());
    root.put(
        &mut store,
        "settings",
        "laser",
        &fields(json!({"max_energy_j": 4.0})),
    )
    .unwrap();
    assert!(root.get(&mut store, "treatments", "t-1", None).is_err());
    assert!(root
        .put(&mut store, "treatments", "t-2", &treatment)
        .is_err());
    // The operator treats and reads configuration, but does not configure.
    assert!(olga.get(&mut store, "settings", "laser", None).is_ok());
    assert!(olga
        .put(
            &mut store,
            "settings",
            "laser",
            &fields(json!({"max_energy_j": 9.0}))
        )
        .is_err());
    // The auditor reads everything, PHI included, and changes nothing.
    let seen = audra.get(&mut store, "treatments", "t-1", None).unwrap();
    assert_eq!(seen.all_fields()["outcome"], "good");
    assert!(audra
        .put(&mut store, "treatments", "t-1", &treatment)
        .is_err());
    assert!(audra
        .delete(&mut store, "treatments", "t-1", "test")
        .is_err());
    assert!(audra
        .event(
            &mut store,
            "laser.armed",
            "laser-7",
            Outcome::Success,
            json!({})
        )
        .is_err());
    // Only an administrator changes the schema.
    assert!(olga
        .apply_schema(&mut store, support::SCHEMA, "schema.yaml")
        .is_err());
}

#[test]
fn an_update_keeps_the_history_and_a_delete_is_a_tombstone_with_a_reason() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    olga.put(
        &mut store,
        "treatments",
        "t-1",
        &fields(json!({"patient": "p-0001", "energy_j": 1.5, "notes": "first"})),
    )
    .unwrap();
    let second = olga
        .put(
            &mut store,
            "treatments",
            "t-1",
            &fields(json!({"energy_j": 2.0, "notes": "second"})),
        )
        .unwrap();
    assert_eq!((second.version, second.kind.name()), (2, "update"));
    let deleted = olga
        .delete(
            &mut store,
            "treatments",
            "t-1",
            "entered for the wrong patient",
        )
        .unwrap();
    assert_eq!(deleted.version, 3);

    let history = olga.history(&mut store, "treatments", "t-1").unwrap();
    let energies: Vec<Value> = history
        .iter()
        .map(|v| {
            v.all_fields()
                .get("energy_j")
                .cloned()
                .unwrap_or(Value::Null)
        })
        .collect();
    assert_eq!(energies, [json!(1.5), json!(2.0), Value::Null]);
    let notes: Vec<Value> = history
        .iter()
        .map(|v| v.all_fields().get("notes").cloned().unwrap_or(Value::Null))
        .collect();
    assert_eq!(notes, [json!("first"), json!("second"), Value::Null]);
    assert_eq!(
        history[1].fields["patient"], "p-0001",
        "merged over version 1"
    );
    assert_eq!(history[2].kind, "delete");
    assert_eq!(history[2].reason, "entered for the wrong patient");
    assert!(history.iter().all(|v| v.intact));
    // Deleted ids are not reused, and a delete needs a reason.
    assert!(matches!(
        olga.put(
            &mut store,
            "treatments",
            "t-1",
            &fields(json!({"energy_j": 1.0}))
        ),
        Err(RecordsError::Deleted { .. })
    ));
    assert!(matches!(
        olga.delete(&mut store, "patients", "p-9", " "),
        Err(RecordsError::Input(_))
    ));
    let actions: Vec<String> = env
        .audit()
        .into_iter()
        .filter(|r| r.action.starts_with("record.") && r.action != "record.read")
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, ["record.create", "record.update", "record.delete"]);
}

/// Verifies: V60, V61, V65
#[test]
fn verify_names_a_changed_an_inserted_and_a_removed_version() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    for id in ["t-1", "t-2", "t-3"] {
        olga.put(
            &mut store,
            "treatments",
            id,
            &fields(json!({"patient": "p-0001", "energy_j": 1.5})),
        )
        .unwrap();
    }
    let audra = env.session(&mut store, "audra");
    let verdict = audra.verify(&mut store, VerifyFrom::CurrentEpoch).unwrap();
    assert!(verdict.is_ok(), "{}", verdict.summary());
    assert_eq!(verdict.versions, 3);

    // Someone with the database key changes a stored value, forges a version and removes one.
    let conn = store.db.conn();
    conn.execute(
        "UPDATE record_versions SET fields = '{\"energy_j\":15.0,\"patient\":\"p-0001\"}'
         WHERE record_id = 't-1'",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO record_versions SELECT collection, record_id, 2, 'update', ts, actor,
                schema_version, fields, phi_sealed, reason, hash, audit_seq
         FROM record_versions WHERE record_id = 't-2'",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM record_versions WHERE record_id = 't-3'", [])
        .unwrap();
    let verdict = audra.verify(&mut store, VerifyFrom::CurrentEpoch).unwrap();
    assert!(verdict.chain.result.is_ok(), "the chain itself is intact");
    let found: Vec<(String, u64, DamageKind)> = verdict
        .damage
        .iter()
        .map(|d| (d.record_id.clone(), d.version, d.kind))
        .collect();
    assert_eq!(
        found,
        [
            ("t-1".to_string(), 1, DamageKind::Changed),
            ("t-2".to_string(), 2, DamageKind::Inserted),
            ("t-3".to_string(), 1, DamageKind::Removed),
        ],
        "{}",
        verdict.summary()
    );
    assert!(verdict
        .summary()
        .contains("treatments/t-1 version 1: changed"));
    let last = env.audit().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("records.verify", "failure")
    );
}

/// Found by outside testing: a version whose `audit_seq` was changed read as not intact in
/// `records get` (which finds its event by that seq) but passed `records verify` (which found
/// the event by its details). Verify now checks the seq too, for versions and signatures.
#[test]
fn verify_and_get_agree_on_a_changed_audit_seq() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    for id in ["t-1", "t-2"] {
        olga.put(
            &mut store,
            "treatments",
            id,
            &fields(json!({"patient": "p-0001", "energy_j": 1.5})),
        )
        .unwrap();
    }
    store
        .db
        .conn()
        .execute(
            "UPDATE record_versions SET audit_seq = audit_seq + 2 WHERE record_id = 't-2'",
            [],
        )
        .unwrap();
    let read = olga.get(&mut store, "treatments", "t-2", None).unwrap();
    assert!(!read.intact);
    let audra = env.session(&mut store, "audra");
    let verdict = audra.verify(&mut store, VerifyFrom::CurrentEpoch).unwrap();
    let found: Vec<(String, DamageKind)> = verdict
        .damage
        .iter()
        .map(|d| (d.record_id.clone(), d.kind))
        .collect();
    assert_eq!(found, [("t-2".to_string(), DamageKind::Changed)]);
}

/// Verifies: V46, V57
#[test]
fn a_signature_needs_both_components_shows_name_time_meaning_and_fails_on_a_changed_version() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    let written = olga
        .put(
            &mut store,
            "treatments",
            "t-1",
            &fields(json!({"patient": "p-0001", "energy_j": 1.5, "outcome": "good"})),
        )
        .unwrap();
    let password = pw(support::OPERATOR_PW);
    let wrong = pw("Not-Her-Password-01");
    let request = |password, totp_code| SignRequest {
        collection: "treatments",
        record_id: "t-1",
        version: 1,
        meaning: Meaning::Performed,
        password,
        totp_code,
    };
    // Both components are checked again, now.
    let bad_code = code(&env.operator_totp, 5);
    assert!(matches!(
        olga.sign(&mut store, &request(&password, &bad_code)),
        Err(RecordsError::Reauthentication(_))
    ));
    let good_code = code(&env.operator_totp, 0);
    assert!(matches!(
        olga.sign(&mut store, &request(&wrong, &good_code)),
        Err(RecordsError::Reauthentication(_))
    ));
    let signed = olga
        .sign(&mut store, &request(&password, &good_code))
        .unwrap();
    assert_eq!(signed.signature.printed_name, "Olga Operator, MD");
    assert_eq!(signed.signature.version_hash, written.hash);
    assert!(signed.signature.signed_at.ends_with('Z'));

    // Shown with the record: printed name, UTC time, meaning.
    let read = olga.get(&mut store, "treatments", "t-1", None).unwrap();
    let manifestation = read.signatures[0].manifestation();
    assert!(manifestation.starts_with("Olga Operator, MD (olga), performed, "));
    assert!(manifestation.ends_with(" UTC — valid"), "{manifestation}");
    let sign_event = env
        .audit()
        .into_iter()
        .find(|r| r.action == "record.sign" && r.outcome == "success")
        .unwrap();
    assert_eq!(
        details(&sign_event)["version_hash"],
        hex::encode(written.hash)
    );

    // The signed version is changed behind warden's back: the signature no longer holds,
    // verify names it, and nobody can sign it again.
    store
        .db
        .conn()
        .execute(
            "UPDATE record_versions SET fields = '{\"energy_j\":3.0,\"patient\":\"p-0001\"}'",
            [],
        )
        .unwrap();
    let read = olga.get(&mut store, "treatments", "t-1", None).unwrap();
    assert!(!read.intact);
    assert_eq!(read.signatures[0].status, SignatureStatus::VersionChanged);
    assert!(read.signatures[0].manifestation().contains("INVALID"));
    let next_code = code(&env.operator_totp, 1);
    let again = SignRequest {
        meaning: Meaning::Reviewed,
        ..request(&password, &next_code)
    };
    assert!(matches!(
        olga.sign(&mut store, &again),
        Err(RecordsError::VersionDamaged { .. })
    ));
    let audra = env.session(&mut store, "audra");
    let verdict = audra.verify(&mut store, VerifyFrom::CurrentEpoch).unwrap();
    assert_eq!(verdict.damage.len(), 1, "{}", verdict.summary());
    assert_eq!(verdict.damage[0].kind, DamageKind::Changed);
    let _ = written;
}

/// Someone holding the `database` key rewrites a signed version together with every hash that
/// covers it — the version's hash column, the signature's version hash and the signature's own
/// hash, all computable without a key. Each row still hashes to its hash column, but not to the
/// hash its audit event recorded: `get` shows the version not intact and the signature INVALID
/// (before, both read as good until `records verify`).
#[test]
fn a_version_rewritten_with_its_hashes_recomputed_is_not_intact() {
    use warden_records::version::{SignatureContent, VersionContent};
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    olga.put(
        &mut store,
        "treatments",
        "t-1",
        &fields(json!({"patient": "p-0001", "energy_j": 1.5, "outcome": "good"})),
    )
    .unwrap();
    let password = pw(support::OPERATOR_PW);
    let totp = code(&env.operator_totp, 0);
    olga.sign(
        &mut store,
        &SignRequest {
            collection: "treatments",
            record_id: "t-1",
            version: 1,
            meaning: Meaning::Performed,
            password: &password,
            totp_code: &totp,
        },
    )
    .unwrap();
    let read = olga.get(&mut store, "treatments", "t-1", None).unwrap();
    assert!(read.intact);
    assert_eq!(read.signatures[0].status, SignatureStatus::Valid);

    let forged = r#"{"energy_j":30.0,"outcome":"good","patient":"p-0001"}"#;
    let version_hash = VersionContent {
        collection: "treatments",
        record_id: "t-1",
        version: 1,
        kind: &read.kind,
        timestamp: &read.timestamp,
        actor: &read.actor,
        schema_version: read.schema_version,
        fields: forged,
        phi_sealed: &[],
        reason: &read.reason,
    }
    .hash();
    let sig = &read.signatures[0];
    let signature_hash = SignatureContent {
        collection: "treatments",
        record_id: "t-1",
        version: 1,
        signer: &sig.signer,
        printed_name: &sig.printed_name,
        meaning: &sig.meaning,
        signed_at: &sig.signed_at,
        version_hash: &version_hash,
    }
    .hash();
    let conn = store.db.conn();
    conn.execute(
        "UPDATE record_versions SET fields = ?1, hash = ?2",
        rusqlite::params![forged, version_hash.to_vec()],
    )
    .unwrap();
    conn.execute(
        "UPDATE record_signatures SET version_hash = ?1, hash = ?2",
        rusqlite::params![version_hash.to_vec(), signature_hash.to_vec()],
    )
    .unwrap();
    let read = olga.get(&mut store, "treatments", "t-1", None).unwrap();
    assert_eq!(read.fields["energy_j"], json!(30.0));
    assert!(!read.intact);
    assert_eq!(read.signatures[0].status, SignatureStatus::SignatureChanged);
    assert!(read.signatures[0].manifestation().contains("INVALID"));
}

#[test]
fn signing_needs_a_printed_name_and_a_person_with_two_factors() {
    let env = Env::new();
    let mut store = env.store();
    let root = env.session(&mut store, "root");
    root.put(
        &mut store,
        "settings",
        "laser",
        &fields(json!({"max_energy_j": 4.0})),
    )
    .unwrap();
    // The administrator has no TOTP: one component is not a signature.
    let err = root
        .sign(
            &mut store,
            &SignRequest {
                collection: "settings",
                record_id: "laser",
                version: 1,
                meaning: Meaning::Approved,
                password: &pw(support::ADMIN_PW),
                totp_code: "000000",
            },
        )
        .unwrap_err();
    assert!(matches!(err, RecordsError::NeedsBothComponents), "{err}");
    let refused = env.audit().pop().unwrap();
    assert_eq!(
        (refused.action.as_str(), refused.outcome.as_str()),
        ("record.sign", "failure")
    );
}

/// Verifies: V75
#[test]
fn an_application_appends_its_own_events_under_the_signed_in_user() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    let seq = olga
        .event(
            &mut store,
            "laser.armed",
            "laser-7",
            Outcome::Success,
            json!({"treatment": "t-1", "wavelength_nm": 1064}),
        )
        .unwrap();
    let row = env.audit().into_iter().find(|r| r.seq == seq).unwrap();
    assert_eq!(
        (
            row.actor.as_str(),
            row.action.as_str(),
            row.subject.as_str()
        ),
        ("olga", "app.laser.armed", "laser-7")
    );
    assert_eq!(details(&row)["wavelength_nm"], 1064);
    // Only the app.* namespace: an application cannot forge warden's own events.
    for bad in ["login.cli", "Laser", "", "a b"] {
        let err = olga
            .event(&mut store, bad, "x", Outcome::Success, json!({}))
            .map(|_| ());
        if bad == "login.cli" {
            // Allowed as a name, but recorded as app.login.cli, never as login.cli.
            assert!(err.is_ok());
            assert_eq!(env.audit().pop().unwrap().action, "app.login.cli");
        } else {
            assert!(matches!(err, Err(RecordsError::BadAction)), "{bad:?}");
        }
    }
    assert!(matches!(
        olga.event(&mut store, "x", "x", Outcome::Success, json!([1])),
        Err(RecordsError::Input(_))
    ));
    // The namespace given again is not doubled.
    olga.event(
        &mut store,
        "app.laser.fired",
        "laser-7",
        Outcome::Success,
        json!({}),
    )
    .unwrap();
    assert_eq!(env.audit().pop().unwrap().action, "app.laser.fired");
    // "app." alone names nothing.
    assert!(matches!(
        olga.event(&mut store, "app.", "x", Outcome::Success, json!({})),
        Err(RecordsError::BadAction)
    ));
}

#[test]
fn the_auditor_exports_every_version_with_signatures_and_the_verification_result() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    olga.put(&mut store, "patients", "p-0001", &patient())
        .unwrap();
    olga.put(
        &mut store,
        "treatments",
        "t-1",
        &fields(json!({"patient": "p-0001", "energy_j": 1.5, "outcome": "good"})),
    )
    .unwrap();
    olga.sign(
        &mut store,
        &SignRequest {
            collection: "treatments",
            record_id: "t-1",
            version: 1,
            meaning: Meaning::Performed,
            password: &pw(support::OPERATOR_PW),
            totp_code: &code(&env.operator_totp, 0),
        },
    )
    .unwrap();
    let before = env.audit().len();
    let audra = env.session(&mut store, "audra");
    let mut out = Vec::new();
    let exported = audra
        .export(
            &mut store,
            VerifyFrom::CurrentEpoch,
            None,
            ExportFormat::Jsonl,
            "export.jsonl",
            &mut out,
        )
        .unwrap();
    assert_eq!(exported.versions, 2);
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "warden-records-export");
    assert_eq!(lines[0]["ok"], true);
    let treatment = lines.iter().find(|l| l["id"] == "t-1").unwrap();
    assert_eq!(treatment["status"], "verified");
    assert_eq!(treatment["phi"]["outcome"], "good");
    let signature = &treatment["signatures"][0];
    assert_eq!(signature["printed_name"], "Olga Operator, MD");
    assert_eq!(signature["meaning"], "performed");
    assert_eq!(signature["status"], "valid");
    // The auditor changed nothing: only sign-in and the export itself were appended.
    let added: Vec<String> = env.audit()[before..]
        .iter()
        .map(|r| r.action.clone())
        .collect();
    assert_eq!(added, ["login.cli", "records.export"]);

    let mut csv = Vec::new();
    audra
        .export(
            &mut store,
            VerifyFrom::CurrentEpoch,
            Some("treatments"),
            ExportFormat::Csv,
            "export.csv",
            &mut csv,
        )
        .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.contains("Olga Operator, MD (olga), performed,"),
        "{csv}"
    );
    assert!(csv.lines().nth(1).unwrap().ends_with(",verified"), "{csv}");
}

#[test]
fn a_recording_is_sealed_as_it_is_written_and_plays_back() {
    use std::io::Read;
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    let key = Key32::from_bytes(RECORDINGS_KEY);
    let path = env.dir.path().join("t-1.video.sealed");
    let by = olga
        .require(&mut store, Permission::VaultSeal, "vault.seal")
        .unwrap();
    let mut writer = RecordingWriter::create(&by, &key, &path, false).unwrap();
    let frame: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..10 {
        writer.write(&frame).unwrap();
        assert!(!path.exists(), "nothing at the path until finished");
    }
    let sealed = writer.finish(&mut store).unwrap();
    assert_eq!(sealed.summary.plaintext_bytes, 300_000);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(warden_core::mac::sha256(&bytes), sealed.sha256);
    assert!(
        !bytes.windows(64).any(|w| w == &frame[..64]),
        "no plaintext on disk"
    );
    let event = env
        .audit()
        .into_iter()
        .rfind(|r| r.action == "vault.seal")
        .unwrap();
    assert_eq!(details(&event)["sha256"], hex::encode(sealed.sha256));

    let by = olga
        .require(&mut store, Permission::VaultOpen, "vault.open")
        .unwrap();
    let mut reader = RecordingReader::open(&mut store, &by, &key, &path).unwrap();
    let mut back = Vec::new();
    reader.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), 300_000);
    assert_eq!(&back[..30_000], &frame[..]);

    // Given up: nothing at the path, the attempt audited with a bounded reason.
    let by = olga
        .require(&mut store, Permission::VaultSeal, "vault.seal")
        .unwrap();
    let other = env.dir.path().join("t-2.video.sealed");
    let mut writer = RecordingWriter::create(&by, &key, &other, false).unwrap();
    writer.write(&frame).unwrap();
    writer.abandon(&mut store, &"x".repeat(10_000)).unwrap();
    assert!(!other.exists());
    let event = env
        .audit()
        .into_iter()
        .rfind(|r| r.action == "vault.seal")
        .unwrap();
    assert_eq!(event.outcome, "failure");
    assert_eq!(details(&event)["error"].as_str().unwrap().len(), 200);
}

#[test]
fn phi_fields_cannot_be_written_without_the_phi_key() {
    let env = Env::new();
    let mut store = env.store();
    // An operator session that never unlocked the phi key (as a caller that skipped it).
    let user = store
        .identity
        .authenticate_operator(
            &mut store.db,
            "olga",
            &pw(support::OPERATOR_PW),
            Some(&code(&env.operator_totp, 0)),
            warden_store::identity::UnixMs::now(),
        )
        .unwrap();
    let olga = warden_records::Session::new(user);
    let err = olga
        .put(&mut store, "patients", "p-1", &patient())
        .unwrap_err();
    assert!(matches!(err, RecordsError::PhiKeyRequired { .. }), "{err}");
    // Non-PHI fields of a treatment need no key, and PHI then reads as sealed for others.
    olga.put(
        &mut store,
        "treatments",
        "t-1",
        &fields(json!({"patient": "p-1", "energy_j": 1.0})),
    )
    .unwrap();
    let read = olga.get(&mut store, "treatments", "t-1", None).unwrap();
    assert_eq!(read.phi, PhiView::None);
}
