//! docs/formats/keys.md is complete: `tests/python/keys_from_doc.py`, written from that document
//! alone, derives every purpose key of a format-1 data directory (the fixture made by the release
//! before key slots) from the passphrase and security.json, checks the key checks, opens the
//! SQLCipher database with the raw key, opens a configuration file sealed by `warden config seal`
//! with the Fernet key, and opens the auditor key file. A format-2 directory made with Argon2id
//! opens the same way through its master slot (`keyslots_from_doc.py`). Its bounds are the
//! document's, and they must be the code's.

mod support;

use support::{
    python, run, write_private, LegacyFixture, ADMIN_PASSWORD, AUDITOR_PASSPHRASE,
    LEGACY_CONFIG_PLAINTEXT,
};
use warden_core::datadir::DataDir;
use warden_core::kdf::Bounds;
use warden_core::keyring::Purpose;
use warden_core::secret::Passphrase;

fn keys_json(out: &support::Run) -> serde_json::Value {
    out.ok();
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// Verifies: V3, V5, V7, V8, V68
#[test]
fn the_document_alone_derives_and_opens_everything() {
    let Some(py) = python() else { return };
    let fx = LegacyFixture::new();
    let plain = fx.path("plain-config");
    write_private(&plain, LEGACY_CONFIG_PLAINTEXT);
    let sealed = fx.data_dir.join("legacy-config.sealed");

    let out = run(&mut py.script(
        "keys_from_doc.py",
        [
            fx.data_dir.as_os_str(),
            fx.passphrase_file.as_os_str(),
            "--config".as_ref(),
            sealed.as_os_str(),
            "--config-plain".as_ref(),
            plain.as_os_str(),
            "--auditor-key".as_ref(),
            fx.data_dir.join("auditor-key.json").as_os_str(),
            "--auditor-passphrase-file".as_ref(),
            fx.path("auditor-passphrase").as_os_str(),
        ],
    ));
    let doc = keys_json(&out);
    let derived = DataDir::open(&fx.data_dir)
        .unwrap()
        .master_keys(&Passphrase::new(fx.passphrase()))
        .unwrap();
    for purpose in Purpose::ALL {
        assert_eq!(
            doc["keys"][purpose.name()],
            hex::encode(derived.get(purpose).expose_secret()),
            "{purpose}"
        );
    }
    assert_eq!(doc["kdf"], "PBKDF2-HMAC-SHA256");
    assert_eq!(doc["database"]["application_id"], 0x5744_524E);
    assert!(doc["database"]["tables"].as_u64().unwrap() > 5);
    assert_eq!(doc["config_matches"], true);
    assert_eq!(doc["auditor"]["k0"].as_str().unwrap().len(), 64);
}

#[test]
fn an_argon2id_master_slot_opens_from_the_documents_alone() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let passphrase = tmp.path().join("passphrase");
    write_private(&passphrase, b"argon2id passphrase, long enough\n");
    let admin = tmp.path().join("admin-password");
    write_private(&admin, format!("{ADMIN_PASSWORD}\n").as_bytes());
    let auditor = tmp.path().join("auditor-passphrase");
    write_private(&auditor, format!("{AUDITOR_PASSPHRASE}\n").as_bytes());
    run(support::warden()
        .arg("--data-dir")
        .arg(&data)
        .arg("--passphrase-file")
        .arg(&passphrase)
        .arg("--auditor-passphrase-file")
        .arg(&auditor)
        .args([
            "init",
            "--kdf",
            "argon2id",
            "--argon2-memory-kib",
            "8192",
            "--kdf-iterations",
            "1",
            "--admin",
            "admin",
            "--admin-password-file",
        ])
        .arg(&admin))
    .ok();

    let slots: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("keyslots.json")).unwrap()).unwrap();
    let master = slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["owner"] == "master")
        .unwrap();
    assert_eq!(master["kdf"]["algorithm"], "Argon2id");
    let out = run(&mut py.script(
        "keyslots_from_doc.py",
        [
            data.as_os_str(),
            "--passphrase-file".as_ref(),
            passphrase.as_os_str(),
        ],
    ));
    let doc = keys_json(&out);
    let dir = DataDir::open(&data).unwrap();
    let pass = Passphrase::new("argon2id passphrase, long enough".into());
    let keys = dir.master_keys(&pass).unwrap();
    for purpose in Purpose::IN_SLOTS {
        assert_eq!(
            doc["keys"][purpose.name()],
            hex::encode(keys.get(purpose).expose_secret())
        );
    }
    assert_eq!(doc["database"]["application_id"], 0x5744_524E);
}

/// Verifies: V68
#[test]
fn the_documented_bounds_are_the_code_s() {
    let Some(py) = python() else { return };
    let out = run(&mut py.script("keys_from_doc.py", ["--bounds"]));
    let bounds = keys_json(&out);
    let pair = |name: &str| {
        let v = &bounds[name];
        (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
    };
    assert_eq!(
        pair("pbkdf2_iterations"),
        (
            Bounds::PBKDF2_MIN_ITERATIONS.into(),
            Bounds::PBKDF2_MAX_ITERATIONS.into()
        )
    );
    assert_eq!(
        pair("argon2_memory_kib"),
        (
            Bounds::ARGON2_MIN_MEMORY_KIB.into(),
            Bounds::ARGON2_MAX_MEMORY_KIB.into()
        )
    );
    assert_eq!(
        pair("argon2_iterations"),
        (
            Bounds::ARGON2_MIN_ITERATIONS.into(),
            Bounds::ARGON2_MAX_ITERATIONS.into()
        )
    );
    assert_eq!(
        pair("argon2_parallelism"),
        (
            Bounds::ARGON2_MIN_PARALLELISM.into(),
            Bounds::ARGON2_MAX_PARALLELISM.into()
        )
    );
    assert_eq!(bounds["argon2_max_work_kib"], Bounds::ARGON2_MAX_WORK_KIB);
    assert_eq!(
        pair("salt_len"),
        (Bounds::MIN_SALT_LEN as u64, Bounds::MAX_SALT_LEN as u64)
    );

    // Both refuse the same out-of-bounds file, and warden names the field.
    let fx = LegacyFixture::new();
    let security = fx.data_dir.join("security.json");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&security).unwrap()).unwrap();
    doc["purposes"]["recordings"]["kdf"]["iterations"] = serde_json::json!(2_147_483_648u64);
    std::fs::write(&security, serde_json::to_vec(&doc).unwrap()).unwrap();
    run(&mut py.script(
        "keys_from_doc.py",
        [fx.data_dir.as_os_str(), fx.passphrase_file.as_os_str()],
    ))
    .expect_code(1)
    .stderr_has(&["recordings.kdf.iterations"]);
    run(fx
        .signed_in(&mut fx.warden(), "admin")
        .args(["vault", "verify", "-"]))
    .expect_code(1)
    .stderr_has(&["`recordings` key", "`iterations`", "10000000"]);
}
