//! docs/formats/keys.md is complete: `tests/python/keys_from_doc.py`, written from that document
//! alone, derives every purpose key from the passphrase and security.json (PBKDF2 and Argon2id),
//! checks the key checks, opens the SQLCipher database with the raw key, opens a configuration
//! file sealed by `warden config seal` with the Fernet key, and opens the auditor key file.
//! Its bounds are the document's, and they must be the code's.

mod support;

use support::{python, run, write_private, Fixture, ADMIN_PASSWORD, AUDITOR_PASSPHRASE};
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
    let fx = Fixture::new();
    let plain = fx.file("siem.yaml", b"siem:\n  host: 127.0.0.1\n");
    let sealed = fx.path("siem.yaml.sealed");
    run(fx
        .admin()
        .args(["config", "seal"])
        .arg(&plain)
        .arg("-o")
        .arg(&sealed))
    .ok();

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
            fx.auditor_key().as_os_str(),
            "--auditor-passphrase-file".as_ref(),
            fx.auditor_passphrase_file.as_os_str(),
        ],
    ));
    let doc = keys_json(&out);
    for purpose in Purpose::ALL {
        assert_eq!(
            doc["keys"][purpose.name()],
            hex::encode(fx.key(purpose).expose_secret()),
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
fn the_document_alone_derives_argon2id_keys() {
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

    let out = run(&mut py.script(
        "keys_from_doc.py",
        [
            data.as_os_str(),
            passphrase.as_os_str(),
            "--auditor-key".as_ref(),
            data.join("auditor-key.json").as_os_str(),
            "--auditor-passphrase-file".as_ref(),
            auditor.as_os_str(),
        ],
    ));
    let doc = keys_json(&out);
    assert_eq!(doc["kdf"], "Argon2id");
    let dir = DataDir::open(&data).unwrap();
    let pass = Passphrase::new("argon2id passphrase, long enough".into());
    for purpose in Purpose::ALL {
        let key = dir.security().unlock(&pass, purpose).unwrap();
        assert_eq!(
            doc["keys"][purpose.name()],
            hex::encode(key.expose_secret())
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
    let fx = Fixture::new();
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
    run(fx.admin().args(["vault", "verify", "-"]))
        .expect_code(1)
        .stderr_has(&["`recordings` key", "`iterations`", "10000000"]);
}
