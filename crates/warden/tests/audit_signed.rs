//! Auditors verify without power to forge (issue 12): audit checkpoints are signed with an
//! Ed25519 key that only administrators and the daemons carry; the public key checks them —
//! in warden (`audit verify --public-key`) and in Python from an export and the document alone
//! (`tests/python/audit_signed_from_doc.py`) — with no MAC key. A checkpoint stored by an
//! operator (whose slot has no signing key) is signed by the next administrator's command.

mod support;

use support::{python, run, Fixture, AUDITOR, OPERATOR};

fn public_key(fx: &Fixture) -> std::path::PathBuf {
    let out = run(fx.warden_without_passphrase().args(["audit", "public-key"]));
    out.ok();
    let text = out.stdout_text();
    let hex = text.split_whitespace().next().unwrap().to_owned();
    assert_eq!(hex.len(), 64);
    fx.file("checkpoint-key.pub", format!("{hex}\n").as_bytes())
}

fn auditor(fx: &Fixture) -> std::process::Command {
    let mut cmd = fx.warden_without_passphrase();
    cmd.args(["--as", AUDITOR, "--password-file"])
        .arg(fx.path("audra-password"));
    cmd
}

fn signed_json(fx: &Fixture) -> serde_json::Value {
    let out = run(auditor(fx).args(["audit", "checkpoint", "--json"]));
    out.ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn checkpoints_are_signed_and_checked_with_the_public_key_alone() {
    let fx = Fixture::new();
    let key = public_key(&fx);
    let sealed = {
        fx.seal("doc", b"x\n");
        fx.path("doc.sealed")
    };
    // An operator's commands only (no signing key in her slot) until past checkpoint 100.
    let mut operator_rounds = 0;
    while signed_json(&fx)["checkpoint"].is_null() {
        run(fx
            .warden_without_passphrase()
            .args(["--as", OPERATOR, "--password-file"])
            .arg(fx.path("olga-password"))
            .args(["vault", "verify"])
            .arg(&sealed))
        .ok();
        operator_rounds += 1;
        assert!(operator_rounds < 100);
    }
    // Stored, but the operator and the auditor could not sign it.
    assert!(signed_json(&fx)["signed"].is_null());
    // The next administrator's command signs it.
    run(fx.admin_without_passphrase().args(["user", "policy"])).ok();
    let doc = signed_json(&fx);
    let signed = &doc["signed"];
    assert_eq!(signed["seq"], 100);
    assert_eq!(signed["signature"].as_str().unwrap().len(), 128);

    // warden checks every signed checkpoint with the public key.
    let out = run(auditor(&fx)
        .args(["audit", "verify", "--public-key"])
        .arg(&key));
    out.ok();
    assert!(
        out.stdout_text()
            .contains("signed checkpoints OK: 1 verified"),
        "{}",
        out.stdout_text()
    );
    // Another public key does not verify them.
    let other = fx.file("other.pub", format!("{}\n", "11".repeat(32)).as_bytes());
    let _ = other;
    let wrong = warden_core::signing::CheckpointSigner::from_seed(
        &warden_core::secret::Key32::from_bytes([9; 32]),
    )
    .public_key();
    let wrong = fx.file("wrong.pub", format!("{}\n", hex::encode(wrong)).as_bytes());
    run(auditor(&fx)
        .args(["audit", "verify", "--public-key"])
        .arg(&wrong))
    .expect_code(3)
    .stdout_text();

    // In Python, from an export and the public key alone.
    let export = fx.path("trail.jsonl");
    run(auditor(&fx)
        .args(["audit", "export", "--format", "jsonl", "-o"])
        .arg(&export))
    .ok();
    let Some(py) = python() else { return };
    let key_hex = std::fs::read_to_string(&key).unwrap().trim().to_owned();
    let out = run(&mut py.script(
        "audit_signed_from_doc.py",
        [export.as_os_str(), std::ffi::OsStr::new(&key_hex)],
    ));
    out.ok();
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["status"], "ok");
    assert_eq!(verdict["covered"], 100);
    // A row changed in the export (as a holder of a MAC key could change it in the chain)
    // no longer matches what was signed.
    let text = std::fs::read_to_string(&export).unwrap();
    let forged: String = text
        .lines()
        .map(|line| {
            if line.contains("\"seq\":5,") && line.contains("\"type\":\"event\"") {
                line.replacen("\"actor\":\"", "\"actor\":\"x", 1)
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let forged_path = fx.file("forged.jsonl", forged.as_bytes());
    let out = run(&mut py.script(
        "audit_signed_from_doc.py",
        [forged_path.as_os_str(), std::ffi::OsStr::new(&key_hex)],
    ));
    out.expect_code(3);
    assert!(
        out.stdout_text().contains("differ"),
        "{}",
        out.stdout_text()
    );
}

/// A rotated signing key: checkpoints are signed with it from then on, so the old public key
/// alone no longer checks them and the set of keys an auditor holds (old and new) does.
#[test]
fn a_rotated_signing_key_signs_from_then_on() {
    let fx = Fixture::new();
    let old = public_key(&fx);
    std::fs::rename(&old, fx.path("old.pub")).unwrap();
    let old = fx.path("old.pub");
    run(fx
        .admin_without_passphrase()
        .args(["keys", "rotate", "signing"]))
    .ok();
    let new = public_key(&fx);
    assert_ne!(std::fs::read(&old).unwrap(), std::fs::read(&new).unwrap());
    while signed_json(&fx)["signed"].is_null() {
        run(fx.admin_without_passphrase().args(["user", "policy"])).ok();
    }
    run(auditor(&fx)
        .args(["audit", "verify", "--public-key"])
        .arg(&old))
    .expect_code(3);
    run(auditor(&fx)
        .args(["audit", "verify", "--public-key"])
        .arg(&old)
        .arg("--public-key")
        .arg(&new))
    .ok();
}
