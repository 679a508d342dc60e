//! Password hash interoperability with Python's argon2-cffi (the seed's library): hashes made
//! here verify there and the other way round, at the seed's parameters and at others. See
//! `support` for how a missing argon2-cffi is handled.

mod support;

use serde_json::{json, Value};
use warden_core::password::{Argon2Params, Password, PasswordCheck, PasswordHash};

/// Plain, Unicode, PHC-delimiter characters, a space: passwords travel as UTF-8 on both sides.
const PASSWORDS: [&str; 4] = [
    "Correct-Horse-Battery-9",
    "Pässwörd-mit-Ümlauten-€-٣",
    "dollar$signs$and,commas=",
    "with a space and a \"quote\"",
];

/// Hashes made here verify in argon2-cffi's `PasswordHasher` configured as seed 002 says, which
/// also reports that they need no rehash; wrong passwords are refused there.
/// Verifies: V33, V72
#[test]
fn our_hashes_verify_in_argon2_cffi() {
    let test = "our_hashes_verify_in_argon2_cffi";
    let Some(python) = support::python_with(test, &["argon2"]) else {
        return;
    };
    let params = Argon2Params::default();
    let cases: Vec<Value> = PASSWORDS
        .iter()
        .map(|text| {
            let hash = PasswordHash::create(&Password::new((*text).to_owned()), &params).unwrap();
            json!({"password": text, "hash": hash.as_phc()})
        })
        .collect();
    let script = r#"
import json, sys
import argon2
hasher = argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16)
results = []
for case in json.load(sys.stdin):
    try:
        ok = hasher.verify(case["hash"], case["password"])
    except argon2.exceptions.VerifyMismatchError:
        ok = False
    try:
        wrong = hasher.verify(case["hash"], case["password"] + "x")
    except argon2.exceptions.VerifyMismatchError:
        wrong = False
    p = argon2.extract_parameters(case["hash"])
    results.append({
        "verified": ok,
        "wrong_verified": wrong,
        "needs_rehash": hasher.check_needs_rehash(case["hash"]),
        "params": [p.type.name, p.version, p.time_cost, p.memory_cost, p.parallelism, p.hash_len, p.salt_len],
    })
json.dump(results, sys.stdout)
"#;
    let output = support::run_python(&python, script, &Value::Array(cases.clone()).to_string());
    let results: Vec<Value> = serde_json::from_str(&output).unwrap();
    assert_eq!(results.len(), PASSWORDS.len());
    for (text, result) in PASSWORDS.iter().zip(&results) {
        assert_eq!(result["verified"], true, "{text:?}");
        assert_eq!(result["wrong_verified"], false, "{text:?}");
        assert_eq!(result["needs_rehash"], false, "{text:?}");
        assert_eq!(result["params"], json!(["ID", 19, 3, 65536, 4, 32, 16]));
    }
}

/// Hashes made by argon2-cffi verify here, at the seed's parameters and at others (including
/// argon2-cffi's own defaults and OWASP's minimum); `needs_rehash` tells them apart.
#[test]
fn argon2_cffi_hashes_verify_here() {
    let test = "argon2_cffi_hashes_verify_here";
    let Some(python) = support::python_with(test, &["argon2"]) else {
        return;
    };
    let script = r#"
import json, sys
import argon2
hashers = [
    argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16),
    argon2.PasswordHasher(),
    argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16),
    argon2.PasswordHasher(time_cost=1, memory_cost=47104, parallelism=2, hash_len=64, salt_len=32),
]
results = []
for password in json.load(sys.stdin):
    results.append([hasher.hash(password) for hasher in hashers])
json.dump(results, sys.stdout)
"#;
    let output = support::run_python(&python, script, &json!(PASSWORDS).to_string());
    let results: Vec<Vec<String>> = serde_json::from_str(&output).unwrap();
    let policy = Argon2Params::default();
    for (number, (text, hashes)) in PASSWORDS.iter().zip(&results).enumerate() {
        for (index, phc) in hashes.iter().enumerate() {
            let hash = PasswordHash::parse(phc).unwrap_or_else(|e| panic!("{phc}: {e}"));
            assert_eq!(
                hash.verify(&Password::new((*text).to_owned())),
                PasswordCheck::Match,
                "{phc} with {text:?}"
            );
            if number == 0 {
                // Each verification costs up to 64 MiB and three passes: one password is enough.
                assert_eq!(
                    hash.verify(&Password::new(format!("{text}x"))),
                    PasswordCheck::Mismatch,
                    "{phc}"
                );
            }
            // Index 0 is the seed's configuration; argon2-cffi's defaults (index 1) happen to
            // be the same (RFC 9106's second recommendation); the others differ.
            assert_eq!(hash.needs_rehash(&policy), index >= 2, "{phc}");
        }
    }
}

/// The reference implementation's command line (Debian's `argon2`, from the Argon2 authors)
/// makes the same hash: its encoded output at seed 002's parameters verifies here.
/// Verifies: V33, V72
#[test]
fn argon2_reference_cli_hashes_verify_here() {
    let test = "argon2_reference_cli_hashes_verify_here";
    // The CLI has no --version and fails without a password on standard input: probe with one.
    let probe = std::process::Command::new("argon2")
        .args(["saltsaltsaltsalt", "-id", "-t", "1", "-k", "8"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("piped").write_all(b"x")?;
            child.wait()
        });
    if !probe.is_ok_and(|status| status.success()) {
        return support::missing(
            test,
            "the `argon2` command",
            "Install it: apt-get install argon2.",
        )
        .unwrap_or(());
    }
    let argon2 = "argon2";
    for (password, args) in [
        (PASSWORDS[0], ["-t", "3", "-k", "65536", "-p", "4"]),
        (PASSWORDS[1], ["-t", "1", "-k", "8192", "-p", "1"]),
    ] {
        let mut cli = vec!["saltsaltsaltsalt", "-id"];
        cli.extend(args);
        cli.extend(["-l", "32", "-e"]);
        let encoded = support::run(argon2, &cli, password);
        let hash = PasswordHash::parse(encoded.trim()).unwrap();
        assert_eq!(
            hash.verify(&Password::new(password.to_owned())),
            PasswordCheck::Match
        );
        assert_eq!(
            hash.verify(&Password::new(format!("{password}x"))),
            PasswordCheck::Mismatch
        );
    }
}
