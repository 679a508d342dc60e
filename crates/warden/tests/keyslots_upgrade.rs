//! Upgrade in place (issue 12): a data directory made by the release before key slots
//! (`tests/fixtures/datadir-format1`: derived keys, `security.json`) opens with the current
//! warden and is converted to key slots without re-encrypting anything — its vault file,
//! sealed configuration, session recording, database and audit chain (verified from genesis
//! with the auditor's key) are all read with the same keys afterwards; people get their slots
//! at their first sign-in with the master passphrase and need only their password after that.

mod support;

use support::{python, run, LegacyFixture, ADMIN, LEGACY_CONFIG_PLAINTEXT, LEGACY_VAULT_PLAINTEXT};
use warden_core::datadir::{DataDir, KeyFormat};
use warden_core::keyring::Purpose;
use warden_core::secret::Passphrase;

fn sha256(path: &std::path::Path) -> Vec<u8> {
    openssl::sha::sha256(&std::fs::read(path).unwrap()).to_vec()
}

#[test]
fn a_format_1_directory_is_converted_in_place_and_everything_still_opens() {
    let fx = LegacyFixture::new();
    let dir = DataDir::open(&fx.data_dir).unwrap();
    assert_eq!(dir.format(), KeyFormat::Derived);
    let passphrase = Passphrase::new(fx.passphrase());
    let derived = dir.master_keys(&passphrase).unwrap();
    // Nothing may be re-encrypted: the data files stay byte for byte.
    let vault = fx.data_dir.join("legacy-vault.sealed");
    let config = fx.data_dir.join("legacy-config.sealed");
    let session = fx
        .data_dir
        .join("sessions/2026-04-15T09-22-03.laser-7-tess.session");
    let before: Vec<Vec<u8>> = [&vault, &config, &session]
        .iter()
        .map(|p| sha256(p))
        .collect();

    // Without the master passphrase a format-1 directory says what to do.
    run(fx
        .signed_in(&mut fx.warden_without_passphrase(), "olga")
        .args(["vault", "verify"])
        .arg(&vault))
    .expect_code(1)
    .stderr_has(&["format 1", "--passphrase-file"]);

    // The operator's first sign-in with the master passphrase: converted, and her slot made.
    let opened = fx.path("opened");
    let out = run(fx
        .signed_in(&mut fx.warden(), "olga")
        .args(["vault", "open"])
        .arg(&vault)
        .arg(&opened));
    out.ok().stderr_has(&["key slots", "format 2"]);
    assert_eq!(std::fs::read(&opened).unwrap(), LEGACY_VAULT_PLAINTEXT);
    assert!(fx.data_dir.join("keyslots.json").exists());
    assert!(!fx.data_dir.join("security.json").exists());

    // The keys kept their values (the new signing key aside).
    let dir = DataDir::open(&fx.data_dir).unwrap();
    assert_eq!(dir.format(), KeyFormat::Slots);
    let slots = dir.master_keys(&passphrase).unwrap();
    for purpose in Purpose::ALL {
        assert_eq!(
            slots.get(purpose).expose_secret(),
            derived.get(purpose).expose_secret(),
            "{purpose}"
        );
    }

    // From now on olga needs only her password; the others get slots at their first sign-in.
    run(fx
        .signed_in(&mut fx.warden_without_passphrase(), "olga")
        .args(["vault", "verify"])
        .arg(&vault))
    .ok();
    run(fx
        .signed_in(&mut fx.warden_without_passphrase(), "audra")
        .args(["vault", "verify"])
        .arg(&vault))
    .expect_code(5);
    for name in [ADMIN, "audra"] {
        run(fx
            .signed_in(&mut fx.warden(), name)
            .args(["vault", "verify"])
            .arg(&vault))
        .ok();
    }
    let out = run(fx
        .signed_in(&mut fx.warden_without_passphrase(), ADMIN)
        .args(["config", "open"])
        .arg(&config));
    out.ok();
    assert_eq!(out.stdout, LEGACY_CONFIG_PLAINTEXT);
    let out = run(fx
        .signed_in(&mut fx.warden_without_passphrase(), "audra")
        .args(["session", "list"]));
    out.ok();
    assert!(out.stdout_text().contains("tess"), "{}", out.stdout_text());
    // The whole chain, before and after the conversion, verifies from genesis.
    let out = run(fx
        .signed_in(&mut fx.warden_without_passphrase(), "audra")
        .args(["--auditor-passphrase-file"])
        .arg(fx.path("auditor-passphrase"))
        .args(["audit", "verify", "--auditor-key"])
        .arg(fx.data_dir.join("auditor-key.json")));
    out.ok();
    let out = run(fx
        .signed_in(&mut fx.warden_without_passphrase(), ADMIN)
        .args(["audit", "tail", "--json", "-n", "200"]));
    out.ok();
    let text = out.stdout_text();
    assert!(text.contains("keys.upgrade"), "{text}");
    assert_eq!(text.matches("keys.slot.create").count(), 3, "{text}");

    let after: Vec<Vec<u8>> = [&vault, &config, &session]
        .iter()
        .map(|p| sha256(p))
        .collect();
    assert_eq!(before, after, "a data file was rewritten by the conversion");

    // The independent reader opens the converted directory from the documents alone.
    let Some(py) = python() else { return };
    let out = run(&mut py.script(
        "keyslots_from_doc.py",
        [
            fx.data_dir.as_os_str(),
            "--user".as_ref(),
            "olga".as_ref(),
            "--password-file".as_ref(),
            fx.path("olga-password").as_os_str(),
        ],
    ));
    out.ok();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["keys"]["database"],
        hex::encode(derived.get(Purpose::Database).expose_secret())
    );
    assert!(doc["keys"]["config"].is_null());
    assert!(doc["database"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u == "tess"));
}

/// The conversion is two-step: killed at any point, the directory opens (format 1 again, or
/// format 2) with its passphrase, and the data are intact.
#[test]
fn a_conversion_killed_at_any_point_leaves_an_openable_directory() {
    use std::time::{Duration, Instant};
    let mut states = std::collections::BTreeMap::<&str, usize>::new();
    for round in 0..24u64 {
        let fx = LegacyFixture::new();
        let started = Instant::now();
        let mut child = fx
            .warden()
            .args(["keys", "check"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the conversion (it takes tens of milliseconds here).
        let delay = Duration::from_micros(1_000 + round * 700);
        std::thread::sleep(delay.saturating_sub(started.elapsed()));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        let state = match (
            fx.data_dir.join("keyslots.json").exists(),
            fx.data_dir.join("security.json").exists(),
        ) {
            (false, true) => "format 1",
            (true, true) => "converting",
            (true, false) => "format 2",
            (false, false) => panic!("round {round}: neither keyslots.json nor security.json"),
        };
        *states.entry(state).or_default() += 1;
        // It opens, with the same passphrase, and converts (or has converted).
        run(fx.warden().args(["keys", "check"])).ok();
        let opened = fx.path("opened");
        run(fx
            .signed_in(&mut fx.warden(), "olga")
            .args(["vault", "open"])
            .arg(fx.data_dir.join("legacy-vault.sealed"))
            .arg(&opened))
        .ok();
        assert_eq!(std::fs::read(&opened).unwrap(), LEGACY_VAULT_PLAINTEXT);
        assert!(!fx.data_dir.join("security.json").exists());
        run(fx
            .signed_in(&mut fx.warden_without_passphrase(), "olga")
            .args(["audit", "tail"]))
        .expect_code(5);
    }
    eprintln!("states when killed: {states:?}");
}

/// The last step of a conversion removes `security.json` after the slot file is settled; a
/// crash between the two leaves both, settled. The next open finishes it: `security.json` goes
/// (its keys are in the slots), nothing is committed twice, and the data still open.
#[test]
fn a_conversion_cut_after_settling_removes_security_json_at_the_next_open() {
    let fx = LegacyFixture::new();
    let security = std::fs::read(fx.data_dir.join("security.json")).unwrap();
    run(fx.warden().args(["keys", "check"])).ok();
    assert!(!fx.data_dir.join("security.json").exists());
    // The state a SIGKILL between "settled" and "security.json removed" leaves.
    let path = fx.data_dir.join("security.json");
    std::fs::write(&path, &security).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let opened = fx.path("opened");
    run(fx
        .signed_in(&mut fx.warden(), "olga")
        .args(["vault", "open"])
        .arg(fx.data_dir.join("legacy-vault.sealed"))
        .arg(&opened))
    .ok();
    assert!(!path.exists(), "security.json is left after the next open");
    assert_eq!(std::fs::read(&opened).unwrap(), LEGACY_VAULT_PLAINTEXT);
    let export = run(fx
        .signed_in(&mut fx.warden(), ADMIN)
        .args(["audit", "tail", "--json", "-n", "50"]))
    .ok()
    .stdout_text();
    let upgrades = export.matches("\"keys.upgrade\"").count();
    assert_eq!(upgrades, 1, "keys.upgrade recorded {upgrades} times");

    // Another security.json (its key checks are not keyslots.json's) is never deleted: it may
    // hold the only copy of older keys.
    let mut other: serde_json::Value = serde_json::from_slice(&security).unwrap();
    other["purposes"]["recordings"]["key_check"] = base64_of_zeros().into();
    std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    run(fx
        .signed_in(&mut fx.warden(), "olga")
        .args(["vault", "open", "--force"])
        .arg(fx.data_dir.join("legacy-vault.sealed"))
        .arg(&opened))
    .expect_code(1)
    .stderr_has(&["holds other keys than keyslots.json"]);
    assert!(path.exists());
}

fn base64_of_zeros() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([0u8; 32])
}
