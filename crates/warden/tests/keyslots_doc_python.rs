//! docs/formats/keyslots.md is complete: `tests/python/keyslots_from_doc.py`, written from that
//! document alone (Python `cryptography`, `argon2-cffi`, `sqlcipher3`), rebuilds every byte of
//! the known-answer vector `docs/formats/keyslots-v1.json`, and on a directory made by `warden
//! init` unwraps the keys from each kind of slot — master passphrase, recovery key, a person's
//! password, a service key — and opens the SQLCipher database with the unwrapped `database` key.
//! Each slot carries exactly the keys of its holder, in Python as in warden.

mod support;

use std::ffi::OsStr;

use support::{python, run, Fixture, ADMIN, AUDITOR, OPERATOR};
use warden_core::keyring::Purpose;
use warden_core::rbac::{role_key_purposes, service_key_purposes, Role, ServiceKind};

fn json(out: &support::Run) -> serde_json::Value {
    out.ok();
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn names(purposes: &[Purpose]) -> Vec<String> {
    let mut out: Vec<String> = purposes.iter().map(|p| p.name().to_owned()).collect();
    out.sort();
    out
}

fn carried(doc: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = doc["keys"].as_object().unwrap().keys().cloned().collect();
    out.sort();
    out
}

#[test]
fn the_known_answer_vector_is_rebuilt_from_the_document_alone() {
    let Some(py) = python() else { return };
    let vector = support::repo_root().join("docs/formats/keyslots-v1.json");
    let doc = json(&run(&mut py.script(
        "keyslots_from_doc.py",
        [OsStr::new("--vector"), vector.as_os_str()],
    )));
    assert_eq!(doc["vector"], "ok");
    // master: all six keys; operator: database, recordings, audit, phi.
    assert_eq!(doc["wraps_rebuilt"], 10);
}

#[test]
fn every_kind_of_slot_opens_from_the_document_alone_with_exactly_its_keys() {
    let Some(py) = python() else { return };
    let fx = Fixture::new();
    run(fx
        .admin()
        .args(["user", "add", "tess", "--role", "technician", "--no-qr"]))
    .ok();
    let ota_key = fx.path("ota-key");
    run(fx
        .admin()
        .args(["keys", "service", "add", "ota", "--key-out"])
        .arg(&ota_key))
    .ok();
    let data = fx.data_dir.as_os_str();
    let slot = |args: &[&OsStr]| {
        let mut all = vec![data];
        all.extend_from_slice(args);
        run(&mut py.script("keyslots_from_doc.py", all))
    };
    let every: Vec<String> = names(&Purpose::IN_SLOTS);

    // The chain's epoch-0 key, from the auditor's copy: what the sealed epoch key must be.
    let k0_id = {
        let file = warden_core::auditor_key::AuditorKeyFile::parse(
            &std::fs::read(fx.auditor_key()).unwrap(),
        )
        .unwrap();
        let passphrase = warden_core::secret::Passphrase::new(support::AUDITOR_PASSPHRASE.into());
        hex::encode(file.open(&passphrase).unwrap().0.key_id())
    };
    // Master passphrase and recovery key: every key, and the database opens.
    for (args, owner) in [
        (
            vec![
                OsStr::new("--passphrase-file"),
                fx.passphrase_file.as_os_str(),
            ],
            "master",
        ),
        (
            vec![
                OsStr::new("--recovery-key-file"),
                fx.recovery_key_file().as_os_str(),
            ],
            "recovery",
        ),
    ] {
        let doc = json(&slot(&args));
        assert_eq!(doc["owner"], owner);
        assert_eq!(carried(&doc), every, "{owner}");
        for purpose in Purpose::IN_SLOTS {
            assert_eq!(
                doc["keys"][purpose.name()],
                hex::encode(fx.key(purpose).expose_secret()),
                "{owner} {purpose}"
            );
        }
        assert_eq!(doc["database"]["application_id"], 0x5744_524E);
        // The epoch key, unsealed as audit-chain.md says, is the chain's current key.
        assert_eq!(doc["database"]["epoch"], 0);
        assert_eq!(doc["database"]["epoch_key_id"], k0_id, "{owner}");
        let users: Vec<&str> = doc["database"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap())
            .collect();
        assert_eq!(users, ["admin", "audra", "olga", "tess"]);
    }

    // People: exactly their role's keys, and their database key opens the database.
    for (name, role) in [
        (ADMIN, Role::Administrator),
        (OPERATOR, Role::Operator),
        (AUDITOR, Role::Auditor),
    ] {
        let password = if name == ADMIN {
            fx.admin_password_file()
        } else {
            fx.path(&format!("{name}-password"))
        };
        let doc = json(&slot(&[
            OsStr::new("--user"),
            OsStr::new(name),
            OsStr::new("--password-file"),
            password.as_os_str(),
        ]));
        assert_eq!(carried(&doc), names(role_key_purposes(role)), "{name}");
        assert!(doc["database"]["audit_events"].as_u64().unwrap() > 5);
        // A wrong password opens nothing (exit 4), in Python too.
        let wrong = fx.file(&format!("wrong-{name}"), b"Not-The-Password-00\n");
        slot(&[
            OsStr::new("--user"),
            OsStr::new(name),
            OsStr::new("--password-file"),
            wrong.as_os_str(),
        ])
        .expect_code(4);
    }
    // A technician has no slot at all.
    let nothing = fx.file("tess-password", b"whatever-it-is-1\n");
    slot(&[
        OsStr::new("--user"),
        OsStr::new("tess"),
        OsStr::new("--password-file"),
        nothing.as_os_str(),
    ])
    .expect_code(2);

    // The OTA server's service slot: its service's keys, no recordings.
    let doc = json(&slot(&[
        OsStr::new("--service"),
        OsStr::new("ota"),
        OsStr::new("--service-key-file"),
        ota_key.as_os_str(),
    ]));
    assert_eq!(
        carried(&doc),
        names(service_key_purposes(ServiceKind::OtaServer))
    );
    assert!(doc["keys"]["recordings"].is_null());
}

/// The file's digest, by the document alone: the Python reader takes warden's file, and one
/// changed byte of it is damage to the reader (exit 3) as it is to warden.
#[test]
fn the_digest_is_checked_from_the_document_alone() {
    let Some(py) = python() else { return };
    let fx = Fixture::new();
    let path = fx.data_dir.join("keyslots.json");
    let good = std::fs::read(&path).unwrap();
    let unlock = || {
        run(&mut py.script(
            "keyslots_from_doc.py",
            [
                fx.data_dir.as_os_str(),
                OsStr::new("--passphrase-file"),
                fx.passphrase_file.as_os_str(),
                OsStr::new("--no-database"),
            ],
        ))
    };
    assert_eq!(json(&unlock())["owner"], "master");
    // One base64 digit of the lookup salt: still valid JSON, a different file.
    let text = String::from_utf8(good.clone()).unwrap();
    let at = text.find("\"lookup_salt\": \"").unwrap() + 20;
    let mut bad = good.clone();
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, &bad).unwrap();
    unlock().expect_code(3);
    run(fx.admin().args(["keys", "check"])).expect_code(3);
}
