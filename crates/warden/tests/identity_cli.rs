//! Identity through the real binary and a real SQLCipher store: enrollment URIs that pyotp
//! parses, codes from pyotp and oathtool accepted once (also across processes), password hashes
//! that argon2-cffi verifies, lockout and unlock, and the audit events all of it leaves.
//!
//! External tools: when pyotp / argon2-cffi or `oathtool` are missing, a test prints `SKIP: …`
//! and returns, except under `CI=true`, where it fails.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::{init_args, run, warden, write_private, Fixture, Run, ADMIN, ADMIN_PASSWORD};
use warden_core::keyring::Purpose;
use warden_store::audit::{read_rows, StoredRow};
use warden_store::Database;

const FAST: &str = support::FAST_IDENTITY_POLICY;

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn missing(what: &str) -> bool {
    if under_ci() {
        panic!(
            "{what} is required under CI=true. Install it: apt-get install oathtool; \
             python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
        );
    }
    eprintln!("SKIP: {what} is not available");
    false
}

/// A Python that imports pyotp and argon2 (argon2-cffi).
fn python() -> Option<PathBuf> {
    let exe = support::python()?.exe;
    let ok = Command::new(&exe)
        .args(["-c", "import pyotp, argon2"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok || missing("Python with pyotp and argon2-cffi") {
        Some(exe)
    } else {
        None
    }
}

fn oathtool() -> bool {
    let ok = Command::new("oathtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok || missing("the `oathtool` command")
}

fn py(exe: &PathBuf, code: &str, args: &[&str]) -> String {
    let result = run(Command::new(exe).arg("-c").arg(code).args(args));
    result.ok();
    result.stdout_text().trim().to_owned()
}

/// A user's password file in the fixture directory.
fn password_file(fx: &Fixture, user: &str, password: &str) -> PathBuf {
    let path = fx.path(&format!("{user}.password"));
    if !path.exists() {
        write_private(&path, format!("{password}\n").as_bytes());
    }
    path
}

/// `warden user ARGS… --as USER --password-file FILE [--totp CODE]`.
fn user_cmd(fx: &Fixture, args: &[&str], who: (&str, &PathBuf), code: Option<&str>) -> Run {
    let mut cmd = fx.warden();
    cmd.arg("user")
        .args(args)
        .args(["--as", who.0, "--password-file"])
        .arg(who.1);
    if let Some(code) = code {
        cmd.args(["--totp", code]);
    }
    run(&mut cmd)
}

fn admin(fx: &Fixture) -> (&'static str, PathBuf) {
    (ADMIN, fx.admin_password_file())
}

fn audit_rows(fx: &Fixture) -> Vec<StoredRow> {
    let db = Database::open(
        &fx.data_dir.join(warden_store::DB_FILE),
        &fx.key(Purpose::Database),
    )
    .unwrap();
    read_rows(&db, 1, None).unwrap()
}

fn details(row: &StoredRow) -> Value {
    serde_json::from_str(&row.details).unwrap()
}

/// Adds an administrator with TOTP (SHA256, 8 digits) and returns the enrollment JSON.
fn add_totp_admin(fx: &Fixture, name: &str, password: &str) -> Value {
    let file = password_file(fx, name, password);
    let mut cmd = fx.warden();
    cmd.args([
        "user",
        "add",
        name,
        "--role",
        "administrator",
        "--enroll-totp",
    ])
    .args([
        "--algorithm",
        "sha256",
        "--digits",
        "8",
        "--json",
        "--new-password-file",
    ])
    .arg(&file);
    let result = run(fx.as_admin(&mut cmd));
    result.ok();
    let out: Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(out["role"], "administrator");
    out["totp"].clone()
}

#[test]
fn enrollment_uri_parses_in_pyotp_and_codes_from_pyotp_and_oathtool_sign_in_once() {
    let Some(python) = python() else { return };
    if !oathtool() {
        return;
    }
    let fx = Fixture::with_identity_policy(FAST);
    let totp = add_totp_admin(&fx, "ada", "Ada-Lovelace-1815!");
    let uri = totp["uri"].as_str().unwrap();
    // pyotp reads back the same secret and parameters.
    let parsed: Value = serde_json::from_str(&py(
        &python,
        "import json, sys, pyotp\n\
         t = pyotp.parse_uri(sys.argv[1])\n\
         print(json.dumps({'secret': t.secret, 'digits': t.digits, 'interval': t.interval,\n\
                           'digest': t.digest().name, 'name': t.name, 'issuer': t.issuer}))",
        &[uri],
    ))
    .unwrap();
    let secret = parsed["secret"].as_str().unwrap().to_owned();
    assert!(uri.contains(&format!("secret={secret}&")), "{uri}");
    assert_eq!(secret.len(), 32, "160-bit secret in base32");
    assert_eq!(parsed["digits"], 8);
    assert_eq!(parsed["interval"], 30);
    assert_eq!(parsed["digest"], "sha256");
    assert_eq!(parsed["name"], "ada");
    assert_eq!(parsed["issuer"], "warden");
    assert_eq!(totp["algorithm"], "SHA256");

    let ada = ("ada", password_file(&fx, "ada", "Ada-Lovelace-1815!"));
    let ada = (ada.0, &ada.1);
    // pyotp's code for now signs in (user list needs user.manage: ada is an administrator).
    let now_code = py(
        &python,
        "import sys, pyotp; print(pyotp.parse_uri(sys.argv[1]).now())",
        &[uri],
    );
    user_cmd(&fx, &["list"], ada, Some(&now_code)).ok();
    // The same code again, in a new process: refused.
    user_cmd(&fx, &["list"], ada, Some(&now_code))
        .expect_code(5)
        .stderr_has(&["authentication failed"]);
    // oathtool's code for the next step (inside the ±1 window) signs in ...
    let next_code = run(Command::new("oathtool").args([
        "--totp=sha256",
        "--digits=8",
        "--now",
        "now + 30 seconds",
        "-b",
        &secret,
    ]));
    next_code.ok();
    let next_code = next_code.stdout_text().trim().to_owned();
    user_cmd(&fx, &["list"], ada, Some(&next_code)).ok();
    // ... after which the current step's code (never used) is refused: it is not later.
    let current =
        run(Command::new("oathtool").args(["--totp=sha256", "--digits=8", "-b", &secret]));
    current.ok();
    user_cmd(&fx, &["list"], ada, Some(current.stdout_text().trim()))
        .expect_code(5)
        .stderr_has(&["authentication failed"]);
    // No code at all, off a terminal: told it is needed.
    user_cmd(&fx, &["list"], ada, None)
        .expect_code(5)
        .stderr_has(&["one-time code is required", "--totp"]);

    // Successes are ada's; failures are anonymous, with her name as the subject.
    let logins: Vec<(String, Value)> = audit_rows(&fx)
        .iter()
        .filter(|r| r.subject == "user:ada" && r.action == "login.cli")
        .map(|r| (r.outcome.clone(), details(r)))
        .collect();
    let summary: Vec<(&str, &str)> = logins
        .iter()
        .map(|(outcome, d)| (outcome.as_str(), d["reason"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(
        summary,
        [
            ("success", "-"),
            ("failure", "totp_replay"),
            ("success", "-"),
            ("failure", "totp_replay"),
        ]
    );
    assert_eq!(
        logins[0].1["factors"],
        serde_json::json!(["password", "totp"])
    );
}

/// Verifies: V35, V36
#[test]
fn five_failures_lock_the_user_until_an_administrator_unlocks() {
    let fx = Fixture::with_identity_policy(FAST);
    let otto_pw = password_file(&fx, "otto", "Otto-Operator-Pass-1");
    let wrong = password_file(&fx, "wrong", "Not-Ottos-Password-1");
    let olga_pw = password_file(&fx, "olga", "Olga-Operator-Pass-1");
    for (name, file) in [("otto", &otto_pw), ("olga", &olga_pw)] {
        let mut cmd = fx.warden();
        cmd.args([
            "user",
            "add",
            name,
            "--role",
            "operator",
            "--new-password-file",
        ])
        .arg(file);
        run(fx.as_admin(&mut cmd)).ok();
    }
    for attempt in 1..=5 {
        let result = user_cmd(&fx, &["enroll-totp", "--json"], ("otto", &wrong), None);
        result.expect_code(5);
        if attempt < 5 {
            result.stderr_has(&["authentication failed"]);
        } else {
            result.stderr_has(&["otto is locked", "warden user unlock"]);
        }
    }
    // The right password is refused while locked.
    user_cmd(&fx, &["enroll-totp", "--json"], ("otto", &otto_pw), None)
        .expect_code(5)
        .stderr_has(&["locked"]);
    // Another operator may not unlock; the administrator may.
    user_cmd(&fx, &["unlock", "otto"], ("olga", &olga_pw), None)
        .expect_code(5)
        .stderr_has(&["access denied", "user.manage"]);
    let admin = admin(&fx);
    let shown = user_cmd(&fx, &["show", "otto", "--json"], (admin.0, &admin.1), None);
    shown.ok();
    let info: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(info["lock"]["locked"], true);
    let result = user_cmd(&fx, &["unlock", "otto"], (admin.0, &admin.1), None);
    result.ok();
    assert_eq!(result.stdout_text().trim(), "unlocked user:otto");
    // Otto signs in again (and enrolls TOTP for himself).
    let result = user_cmd(&fx, &["enroll-totp", "--json"], ("otto", &otto_pw), None);
    result.ok();
    let enrolled: Value = serde_json::from_slice(&result.stdout).unwrap();
    assert!(enrolled["uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/warden:otto?secret="));

    let rows = audit_rows(&fx);
    let find = |pred: &dyn Fn(&StoredRow) -> bool, what: &str| {
        rows.iter()
            .find(|r| pred(r))
            .unwrap_or_else(|| panic!("no audit event for {what}"))
            .clone()
    };
    let lock = find(&|r| r.action == "lockout.lock", "the lock");
    // Failures prove nobody: their actor is anonymous; the name tried is the subject.
    assert_eq!(
        (lock.actor.as_str(), lock.subject.as_str()),
        ("anonymous", "user:otto")
    );
    let refused = find(
        &|r| r.subject == "user:otto" && details(r)["reason"] == "user_locked",
        "the refusal while locked",
    );
    assert_eq!(refused.actor, "anonymous");
    assert_eq!(refused.outcome, "failure");
    let denied = find(&|r| r.outcome == "denied", "olga's denied unlock");
    assert_eq!(
        (denied.actor.as_str(), denied.action.as_str()),
        ("olga", "lockout.unlock.denied")
    );
    let unlock = find(
        &|r| r.action == "lockout.unlock" && r.outcome == "success",
        "the unlock",
    );
    assert_eq!(
        (unlock.actor.as_str(), unlock.subject.as_str()),
        (ADMIN, "user:otto")
    );
    assert!(lock.seq < refused.seq && refused.seq < denied.seq && denied.seq < unlock.seq);
    let enroll = find(&|r| r.action == "user.totp.enroll", "the enrollment");
    assert_eq!(enroll.actor, "otto");
}

/// Verifies: V33, V66
#[test]
fn argon2_cffi_verifies_the_stored_hash_at_the_default_parameters() {
    let Some(python) = python() else { return };
    let fx = Fixture::with_identity_policy("{}");
    let db = Database::open(
        &fx.data_dir.join(warden_store::DB_FILE),
        &fx.key(Purpose::Database),
    )
    .unwrap();
    let phc: String = db
        .conn()
        .query_row(
            "SELECT password_phc FROM users WHERE username = ?1",
            [ADMIN],
            |r| r.get(0),
        )
        .unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"), "{phc}");
    let out = py(
        &python,
        "import sys, argon2\n\
         ph = argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16)\n\
         ok = ph.verify(sys.argv[1], sys.argv[2])\n\
         try:\n    ph.verify(sys.argv[1], sys.argv[2] + 'x'); wrong = 'accepted'\n\
         except argon2.exceptions.VerifyMismatchError:\n    wrong = 'refused'\n\
         print(ok, ph.check_needs_rehash(sys.argv[1]), wrong)",
        &[&phc, ADMIN_PASSWORD],
    );
    assert_eq!(out, "True False refused");
}

/// Verifies: V29, V30, V35
#[test]
fn passwords_are_checked_against_the_policy_with_the_rule_named() {
    let fx = Fixture::with_identity_policy(FAST);
    let weak = password_file(&fx, "weak", "alllowercase");
    let mut cmd = fx.warden();
    cmd.args([
        "user",
        "add",
        "wendy",
        "--role",
        "auditor",
        "--new-password-file",
    ])
    .arg(&weak);
    run(fx.as_admin(&mut cmd)).expect_code(1).stderr_has(&[
        "at least 16 characters",
        "uppercase",
        "digit",
        "special character",
    ]);
    // Reusing the current password is refused by name too.
    let mut cmd = fx.warden();
    cmd.args(["user", "passwd", "--new-password-file"])
        .arg(fx.admin_password_file());
    run(fx.as_admin(&mut cmd))
        .expect_code(1)
        .stderr_has(&["last 5 passwords"]);
    // A technician has no password at all.
    let mut cmd = fx.warden();
    cmd.args([
        "user",
        "add",
        "tess",
        "--role",
        "technician",
        "--new-password-file",
    ])
    .arg(&weak);
    run(fx.as_admin(&mut cmd))
        .expect_code(1)
        .stderr_has(&["TOTP only"]);
}

#[test]
fn technicians_are_enrolled_at_once_with_a_qr_code() {
    let fx = Fixture::with_identity_policy(FAST);
    let png = fx.path("tess.png");
    let mut cmd = fx.warden();
    cmd.args(["user", "add", "Tess", "--role", "technician", "--qr-png"])
        .arg(&png);
    let result = run(fx.as_admin(&mut cmd));
    result.ok();
    let out = result.stdout_text();
    assert!(out.contains("added tess (technician)"), "{out}");
    assert!(out.contains("otpauth://totp/warden:tess?secret="), "{out}");
    assert!(
        out.contains('▀') || out.contains('▄'),
        "a QR code in half blocks:\n{out}"
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&png).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let admin = admin(&fx);
    let listed = user_cmd(&fx, &["list"], (admin.0, &admin.1), None);
    listed.ok();
    let table = listed.stdout_text();
    assert!(table.starts_with("USER"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("tess ")
            && l.contains("technician")
            && l.contains("SHA1/6/30s")),
        "{table}"
    );
    let json = user_cmd(&fx, &["list", "--json"], (admin.0, &admin.1), None);
    json.ok();
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["users"].as_array().unwrap().len(), 2);
    assert!(!json.stdout_text().contains("argon2"));
}

/// Verifies: V35, V42
#[test]
fn disabled_users_cannot_sign_in_and_the_last_administrator_stays() {
    let fx = Fixture::with_identity_policy(FAST);
    let aud_pw = password_file(&fx, "audrey", "Audrey-Auditor-Pw-1");
    let mut cmd = fx.warden();
    cmd.args([
        "user",
        "add",
        "audrey",
        "--role",
        "auditor",
        "--new-password-file",
    ])
    .arg(&aud_pw);
    run(fx.as_admin(&mut cmd)).ok();
    let admin = admin(&fx);
    user_cmd(&fx, &["disable", "audrey"], (admin.0, &admin.1), None).ok();
    user_cmd(&fx, &["enroll-totp"], ("audrey", &aud_pw), None)
        .expect_code(5)
        .stderr_has(&["authentication failed"]);
    user_cmd(&fx, &["disable", ADMIN], (admin.0, &admin.1), None)
        .expect_code(1)
        .stderr_has(&["last enabled administrator"]);
    user_cmd(&fx, &["enable", "audrey"], (admin.0, &admin.1), None).ok();
    user_cmd(&fx, &["enroll-totp", "--no-qr"], ("audrey", &aud_pw), None).ok();
    let reasons: Vec<String> = audit_rows(&fx)
        .iter()
        .filter(|r| r.subject == "user:audrey" && r.outcome == "failure")
        .map(|r| details(r)["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons, ["disabled"]);
}

#[test]
fn attempts_too_close_together_are_refused_with_the_wait() {
    // The default backoff: at least 1 s between attempts, doubling after each failure.
    let fx = Fixture::with_identity_policy(
        r#"{"password":{"argon2":{"memory_kib":8192,"iterations":1,"parallelism":1}}}"#,
    );
    let wrong = password_file(&fx, "wrong", "Wrong-Admin-Password-1");
    user_cmd(&fx, &["list"], (ADMIN, &wrong), None)
        .expect_code(5)
        .stderr_has(&["authentication failed"]);
    user_cmd(&fx, &["list"], (ADMIN, &fx.admin_password_file()), None)
        .expect_code(5)
        .stderr_has(&["too many attempts: wait"]);
}

#[test]
fn init_needs_a_first_administrator_and_writes_nothing_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let pass = tmp.path().join("pass");
    write_private(&pass, format!("{}\n", support::PASSPHRASE).as_bytes());
    let dir = tmp.path().join("data");
    run(warden()
        .arg("--data-dir")
        .arg(&dir)
        .arg("--passphrase-file")
        .arg(&pass)
        .args(["init", "--kdf-iterations", support::KDF_ITERATIONS]))
    .expect_code(1)
    .stderr_has(&["--admin", "no default account"]);
    assert!(!dir.exists());
    // A weak first password is refused before anything is written, too.
    let weak = tmp.path().join("weak");
    write_private(&weak, b"password\n");
    run(warden()
        .arg("--data-dir")
        .arg(&dir)
        .arg("--passphrase-file")
        .arg(&pass)
        .args([
            "init",
            "--kdf-iterations",
            support::KDF_ITERATIONS,
            "--admin",
            "root",
        ])
        .arg("--admin-password-file")
        .arg(&weak))
    .expect_code(1)
    .stderr_has(&["at least 16 characters"]);
    assert!(!dir.exists());
    // And with one, the first event in the chain is its creation.
    run(warden()
        .arg("--data-dir")
        .arg(&dir)
        .arg("--passphrase-file")
        .arg(&pass)
        .args(init_args(tmp.path())))
    .ok()
    .stderr_has(&["first administrator: admin"]);
}
