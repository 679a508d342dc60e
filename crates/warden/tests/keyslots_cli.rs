//! Key slots at the command line (issue 12): people sign in with their own password and never
//! the master passphrase; a role's slot does not carry keys the role lacks (the refusal comes
//! from the crypto layer: the key is not in the process); failed sign-ins without keys are
//! recorded at the next open and still lock the account; the master passphrase changes by a
//! re-wrap (the old one fails, every file still opens); the recovery key replaces it in
//! break-glass; passwords change and are reset by re-wrapping; removing a user removes their
//! slot.

mod support;

use support::{run, Fixture, ADMIN, AUDITOR, OPERATOR};
use warden_store::audit::StoredRow;

fn slots(fx: &Fixture) -> serde_json::Value {
    let out = run(fx
        .admin_without_passphrase()
        .args(["keys", "list", "--json"]));
    out.ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn owners(fx: &Fixture) -> Vec<String> {
    let mut out: Vec<String> = slots(fx)["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["owner"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

/// The events of the trail, read through a fresh open of the store (which appends what was
/// recorded without keys first).
fn events(fx: &Fixture) -> Vec<StoredRow> {
    let dir = warden_core::datadir::DataDir::open(&fx.data_dir).unwrap();
    // The fixture's passphrase, or the one a test changed it to.
    let changed = std::fs::read_to_string(fx.path("new-passphrase")).unwrap_or_default();
    let ring = [fx.passphrase.clone(), changed.trim_end().to_owned()]
        .into_iter()
        .find_map(|p| {
            dir.master_keys(&warden_core::secret::Passphrase::new(p))
                .ok()
        })
        .expect("a master passphrase that opens the slot");
    let (store, _) = warden_store::keys::open_store(&dir, ring).unwrap();
    warden_store::audit::read_rows(&store.db, 1, None).unwrap()
}

#[test]
fn people_sign_in_with_their_own_password_only() {
    let fx = Fixture::new();
    let plain = fx.file("plain", b"patient video\n");
    let sealed = fx.path("sealed");
    // No master passphrase anywhere in these commands.
    run(fx
        .warden_without_passphrase()
        .args(["--as", OPERATOR, "--password-file"])
        .arg(fx.path("olga-password"))
        .args(["vault", "seal"])
        .arg(&plain)
        .arg(&sealed))
    .ok();
    run(fx
        .warden_without_passphrase()
        .args(["--as", AUDITOR, "--password-file"])
        .arg(fx.path("audra-password"))
        .args(["vault", "verify"])
        .arg(&sealed))
    .ok();
    run(fx.admin_without_passphrase().args(["user", "list"])).ok();
    assert_eq!(
        owners(&fx),
        [
            "master",
            "recovery",
            "user:admin",
            "user:audra",
            "user:olga"
        ]
    );
}

/// Security regression (issue 12): an auditor's slot does not carry the `config` key, so even a
/// command the auditor may run (`shim status`) cannot open a sealed configuration: the refusal
/// names the missing key, exit 5, and the key is nowhere in the process.
#[test]
fn an_auditor_cannot_open_a_sealed_configuration_even_where_the_gate_allows_the_command() {
    let fx = Fixture::new();
    let config = fx.file(
        "shim.yaml",
        format!(
            "shim_id: s1\ndevice_name: pump\ntechnician_port:\n  path: /dev/null\n  baud: 9600\n\
             device_port:\n  path: /dev/zero\n  baud: 9600\ncontrol_socket: {}\n",
            fx.path("no.sock").display()
        )
        .as_bytes(),
    );
    let sealed = fx.path("shim.yaml.sealed");
    run(fx
        .admin_without_passphrase()
        .args(["config", "seal"])
        .arg(&config)
        .arg("-o")
        .arg(&sealed))
    .ok();
    run(fx
        .warden_without_passphrase()
        .args(["--as", AUDITOR, "--password-file"])
        .arg(fx.path("audra-password"))
        .args(["shim", "status", "--config"])
        .arg(&sealed))
    .expect_code(5)
    .stderr_has(&["does not carry the `config` key"]);
    // The administrator's slot carries it (the daemon is not running: exit 1 after reading).
    run(fx
        .admin_without_passphrase()
        .args(["shim", "status", "--config"])
        .arg(&sealed))
    .expect_code(1)
    .stderr_has(&["no.sock"]);
}

/// A wrong password opens no key, so the refusal waits in state/unrecorded.jsonl and enters the
/// chain at the next open, by `anonymous`, counted toward the lockout: the fifth locks, and then
/// even the right password is refused.
#[test]
fn failed_sign_ins_without_keys_are_recorded_late_and_lock_the_account() {
    let fx = Fixture::new();
    let wrong = fx.file("wrong", b"Not-The-Password-0\n");
    let before = events(&fx).len();
    for _ in 0..5 {
        run(fx
            .warden_without_passphrase()
            .args(["--as", OPERATOR, "--password-file"])
            .arg(&wrong)
            .args(["vault", "verify", "x"]))
        .expect_code(5)
        .stderr_has(&["authentication failed"]);
    }
    assert!(fx.data_dir.join("state/unrecorded.jsonl").exists());
    // The right password now: the refusals are recorded, the account is locked.
    run(fx.operator().args(["vault", "verify", "x"]))
        .expect_code(5)
        .stderr_has(&["locked"]);
    let rows = events(&fx);
    let late: Vec<&StoredRow> = rows[before..]
        .iter()
        .filter(|r| r.details.contains("recorded_late"))
        .collect();
    assert_eq!(late.len(), 5, "{late:?}");
    assert!(late
        .iter()
        .all(|r| r.actor == "anonymous" && r.action == "login.cli" && r.subject == "user:olga"));
    assert!(rows[before..]
        .iter()
        .any(|r| r.action == "lockout.lock" && r.subject == "user:olga"));
    assert_eq!(
        std::fs::metadata(fx.data_dir.join("state/unrecorded.jsonl"))
            .unwrap()
            .len(),
        0
    );
    // A command without --as and without the master passphrase: recorded late as well.
    run(fx.warden_without_passphrase().args(["user", "list"])).expect_code(5);
    let rows = events(&fx);
    let last = rows.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("anonymous", "user.list.denied")
    );
}

/// Verifies: V76
#[test]
fn the_master_passphrase_changes_by_a_rewrap_and_the_old_one_fails() {
    let fx = Fixture::new();
    let sealed = fx.seal("video", b"treatment video, frame 1\n");
    let config = fx.file("c.yaml", b"a: 1\n");
    let token = fx.path("c.sealed");
    run(fx
        .admin()
        .args(["config", "seal"])
        .arg(&config)
        .arg("-o")
        .arg(&token))
    .ok();
    let before = std::fs::read(fx.data_dir.join("state/warden.db"))
        .unwrap()
        .len();
    let new = fx.file("new-passphrase", b"the new master passphrase, 2026\n");
    // Too short: refused, nothing changes.
    let short = fx.file("short", b"short one\n");
    run(fx
        .admin()
        .args(["keys", "passphrase", "--new-passphrase-file"])
        .arg(&short))
    .expect_code(1)
    .stderr_has(&["at least 16"]);
    run(fx
        .admin()
        .args(["keys", "passphrase", "--new-passphrase-file"])
        .arg(&new))
    .ok();
    // The old passphrase opens nothing; the new one opens the master slot.
    run(fx.warden().args(["keys", "check"])).expect_code(4);
    run(fx
        .warden_without_passphrase()
        .arg("--passphrase-file")
        .arg(&new)
        .args(["keys", "check"]))
    .ok();
    // All data is readable: nothing was re-encrypted, the database is the same size.
    run(fx
        .operator()
        .args(["vault", "open"])
        .arg(fx.path("video.sealed"))
        .arg(fx.path("video.out")))
    .ok();
    assert_eq!(
        std::fs::read(fx.path("video.out")).unwrap(),
        b"treatment video, frame 1\n"
    );
    assert!(!sealed.is_empty());
    run(fx
        .admin_without_passphrase()
        .args(["config", "open"])
        .arg(&token))
    .ok();
    let after = std::fs::read(fx.data_dir.join("state/warden.db"))
        .unwrap()
        .len();
    assert!(after >= before);
    // Break-glass takes the new passphrase, not the old.
    let recovered = fx.file("recovered", b"Recovered-Admin-Password-9\n");
    let glass = |passphrase: &std::path::Path| {
        run(fx
            .warden_without_passphrase()
            .arg("--passphrase-file")
            .arg(passphrase)
            .args([
                "break-glass",
                "--admin",
                ADMIN,
                "--reason",
                "test",
                "--new-password-file",
            ])
            .arg(&recovered))
    };
    glass(&fx.passphrase_file).expect_code(4);
    glass(&new).ok();
}

/// Verifies: V88, V76
#[test]
fn the_recovery_key_opens_break_glass_and_a_new_one_replaces_it() {
    let fx = Fixture::new();
    run(fx
        .warden_without_passphrase()
        .arg("--recovery-key-file")
        .arg(fx.recovery_key_file())
        .args(["keys", "check"]))
    .ok()
    .stderr_has(&[]);
    // A lost master passphrase: the recovery key sets a new one (with an administrator's
    // sign-in), and break-glass works with it as well, recorded as `recovery-key`.
    let new = fx.file("new-passphrase", b"set with the recovery key, 2026\n");
    run(fx
        .admin_without_passphrase()
        .arg("--recovery-key-file")
        .arg(fx.recovery_key_file())
        .args(["keys", "passphrase", "--new-passphrase-file"])
        .arg(&new))
    .ok();
    run(fx.warden().args(["keys", "check"])).expect_code(4);
    let recovered = fx.file("recovered", b"Recovered-Admin-Password-9\n");
    run(fx
        .warden_without_passphrase()
        .arg("--recovery-key-file")
        .arg(fx.recovery_key_file())
        .args([
            "break-glass",
            "--admin",
            ADMIN,
            "--reason",
            "lost it",
            "--new-password-file",
        ])
        .arg(&recovered))
    .ok();
    let rows = events(&fx);
    let glass = rows
        .iter()
        .rev()
        .find(|r| r.action == "breakglass.recover")
        .unwrap();
    assert_eq!(glass.actor, "recovery-key");
    // The old administrator password is gone with its slot; the new one opens a new slot.
    run(fx.admin_without_passphrase().args(["user", "policy"])).expect_code(5);
    let admin = |cmd: &mut std::process::Command| -> support::Run {
        run(fx
            .warden_without_passphrase()
            .args(["--as", ADMIN, "--password-file"])
            .arg(&recovered)
            .args(cmd.get_args()))
    };
    admin(std::process::Command::new("x").args(["user", "policy"])).ok();
    // A new recovery key: the old one opens nothing.
    let out = fx.path("recovery-2");
    admin(std::process::Command::new("x").args([
        "keys",
        "recovery",
        "--out",
        out.to_str().unwrap(),
    ]))
    .ok();
    run(fx
        .warden_without_passphrase()
        .arg("--recovery-key-file")
        .arg(fx.recovery_key_file())
        .args(["keys", "check"]))
    .expect_code(4);
    run(fx
        .warden_without_passphrase()
        .arg("--recovery-key-file")
        .arg(&out)
        .args(["keys", "check"]))
    .ok();
}

#[test]
fn password_changes_and_resets_rewrap_the_slot() {
    let fx = Fixture::new();
    fx.seal("doc", b"content\n");
    let sealed = fx.path("doc.sealed");
    let new = fx.file("olga-new", b"Olga-New-Password-77\n");
    run(fx
        .operator()
        .args(["user", "passwd", "--new-password-file"])
        .arg(&new))
    .ok();
    let as_olga = |password: &std::path::Path| {
        run(fx
            .warden_without_passphrase()
            .args(["--as", OPERATOR, "--password-file"])
            .arg(password)
            .args(["vault", "verify"])
            .arg(&sealed))
    };
    as_olga(&fx.path("olga-password")).expect_code(5);
    as_olga(&new).ok();
    assert_eq!(owners(&fx).iter().filter(|o| *o == "user:olga").count(), 1);
    // A reused password is refused by the policy, and nothing changes.
    run(fx
        .warden_without_passphrase()
        .args(["--as", OPERATOR, "--password-file"])
        .arg(&new)
        .args(["user", "passwd", "--new-password-file"])
        .arg(&new))
    .expect_code(1);
    as_olga(&new).ok();
    // The administrator resets it: a new slot with the operator's keys from the admin's ring.
    let reset = fx.file("olga-reset", b"Olga-Reset-Password-88\n");
    run(fx
        .admin_without_passphrase()
        .args(["user", "passwd", OPERATOR, "--new-password-file"])
        .arg(&reset))
    .ok();
    as_olga(&new).expect_code(5);
    as_olga(&reset).ok();
    let list = slots(&fx);
    let olga = list["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["owner"] == "user:olga")
        .unwrap()
        .clone();
    assert_eq!(olga["holder"], "operator");
    assert_eq!(
        olga["keys"],
        serde_json::json!(["database v1", "recordings v1", "audit v1", "phi v1"])
    );
}

#[test]
fn removing_a_user_removes_their_slot() {
    let fx = Fixture::new();
    run(fx
        .admin_without_passphrase()
        .args(["user", "remove", OPERATOR]))
    .ok()
    .stderr_has(&["rotate"]);
    assert!(!owners(&fx).contains(&"user:olga".to_owned()));
    run(fx.operator().args(["vault", "verify", "x"])).expect_code(5);
    // The last administrator cannot be removed.
    run(fx
        .admin_without_passphrase()
        .args(["user", "remove", ADMIN]))
    .expect_code(1)
    .stderr_has(&["last enabled administrator"]);
    assert!(owners(&fx).contains(&"user:admin".to_owned()));
}

/// Verifies: S47
#[test]
fn a_service_key_opens_only_its_service_slot() {
    let fx = Fixture::new();
    let key = fx.path("shim-key");
    run(fx
        .admin_without_passphrase()
        .args(["keys", "service", "add", "shim", "--key-out"])
        .arg(&key))
    .ok();
    let list = slots(&fx);
    let shim = list["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["owner"] == "service:shim")
        .unwrap()
        .clone();
    assert_eq!(shim["holder"], "shim");
    assert_eq!(shim["kdf"], "HKDF-SHA256");
    // Its key is not a recovery key.
    run(fx
        .warden_without_passphrase()
        .arg("--recovery-key-file")
        .arg(&key)
        .args(["keys", "check"]))
    .expect_code(4);
    // Replaced by a second `add`; gone after `remove`.
    run(fx
        .admin_without_passphrase()
        .args(["keys", "service", "remove", "shim"]))
    .ok();
    assert!(!owners(&fx).contains(&"service:shim".to_owned()));
}

/// The `phi` key is not rotated: each record version's hash in the audit chain covers its PHI
/// sealed under it. The refusal says so and changes nothing.
#[test]
fn rotating_the_phi_key_is_refused_with_the_reason_and_changes_nothing() {
    let fx = Fixture::new();
    let before = std::fs::read(fx.data_dir.join("keyslots.json")).unwrap();
    run(fx
        .admin_without_passphrase()
        .args(["keys", "rotate", "phi"]))
    .expect_code(1)
    .stderr_has(&["`phi` key is not rotated", "audit chain"]);
    assert_eq!(
        std::fs::read(fx.data_dir.join("keyslots.json")).unwrap(),
        before
    );
}

/// A copy of the key slots that a killed writer left beside `keyslots.json` (its temporary,
/// before the rename) goes at the next open of the directory, even by a command that writes
/// nothing — not only at the next change to the slots. A live writer's is left alone.
#[test]
fn a_killed_writer_s_copy_of_the_slots_goes_at_the_next_open() {
    let fx = Fixture::new();
    let stale = fx.data_dir.join(".keyslots.json.0123456789ab.tmp");
    let live = fx.data_dir.join(".keyslots.json.ba9876543210.tmp");
    let slots = std::fs::read(fx.data_dir.join("keyslots.json")).unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for path in [&stale, &live] {
        support::write_private(path, &slots);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    let held = nix::fcntl::Flock::lock(
        std::fs::File::open(&live).unwrap(),
        nix::fcntl::FlockArg::LockExclusive,
    )
    .unwrap();
    run(fx.warden().args(["audit", "public-key"])).ok();
    assert!(!stale.exists());
    assert!(live.exists());
    drop(held);
}
