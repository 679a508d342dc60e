//! Interop: configuration files sealed by `warden config seal` are standard Fernet tokens that
//! Python `cryptography.fernet` opens, and tokens made by Python open with `warden config open`.
//! The Fernet key is the base64url of the `config` purpose key, derived independently in
//! Python from the passphrase and security.json (`tests/python/warden_keys.py`).

mod support;

use std::path::Path;

use support::{run, Fixture, Python};
use warden_core::keyring::Purpose;
use warden_core::sealed_config::ConfigSealer;

/// Python code run with argv = [DATA_DIR, PASSPHRASE_FILE, ...]: `key` is the Fernet key of the
/// config purpose, derived and key-checked in Python.
const PRELUDE: &str = "\
import sys, time
from cryptography.fernet import Fernet, InvalidToken
import warden_keys
key = warden_keys.fernet_key(warden_keys.purpose_key(
    sys.argv[1], warden_keys.read_passphrase_file(sys.argv[2]), 'config'))
f = Fernet(key)
";

fn python_with_key(py: &Python, fx: &Fixture, body: &str, args: &[&Path]) -> support::Run {
    let code = format!("{PRELUDE}{body}");
    let mut cmd = py.code(&code, [fx.data_dir.as_path(), fx.passphrase_file.as_path()]);
    cmd.args(args);
    run(&mut cmd)
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "yaml",
            b"siem:\n  host: siem.hospital.example\n  port: 6514\n  client_key: /etc/warden/siem.key\n"
                .to_vec(),
        ),
        ("empty", Vec::new()),
        ("one-byte", b"x".to_vec()),
        ("binary", (0..=255u8).cycle().take(5000).collect()),
        ("utf8", "technicien: \u{e9}l\u{e8}ve \u{2014} \u{1f512}\n".as_bytes().to_vec()),
    ]
}

#[test]
fn python_fernet_key_is_the_config_key() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    let from_python = py.purpose_key(&fx, Purpose::Config, "fernet");
    let from_rust = ConfigSealer::fernet_key_text(&fx.key(Purpose::Config));
    assert_eq!(from_python.as_str(), from_rust.as_str());
}

/// Verifies: V23, V64
#[test]
fn warden_sealed_config_decrypts_with_python_fernet() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    for (name, plaintext) in samples() {
        let file = fx.file(name, &plaintext);
        let token = fx.path(&format!("{name}.token"));
        run(fx
            .admin()
            .args(["config", "seal"])
            .arg(&file)
            .arg("-o")
            .arg(&token))
        .ok();
        let decrypted = python_with_key(
            &py,
            &fx,
            "token = open(sys.argv[3], 'rb').read().strip()\n\
             assert abs(f.extract_timestamp(token) - time.time()) < 600, 'timestamp is not now'\n\
             sys.stdout.buffer.write(f.decrypt(token))\n",
            &[&token],
        );
        decrypted.ok();
        assert!(
            decrypted.stdout == plaintext,
            "{name}: Python decrypted other bytes"
        );
    }
    // The default output name, FILE.sealed, holds the same kind of token.
    let file = fx.file("default.yaml", b"a: 1\n");
    run(fx.admin().args(["config", "seal"]).arg(&file))
        .ok()
        .stderr_has(&["remove it"]);
    let decrypted = python_with_key(
        &py,
        &fx,
        "sys.stdout.buffer.write(f.decrypt(open(sys.argv[3], 'rb').read().strip()))\n",
        &[&fx.path("default.yaml.sealed")],
    );
    assert_eq!(decrypted.ok().stdout, b"a: 1\n");
}

/// Verifies: V23
#[test]
fn python_fernet_tokens_open_with_warden() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    for (name, plaintext) in samples() {
        let plain = fx.file(name, &plaintext);
        let token = fx.path(&format!("{name}.token"));
        // A token file as a person would keep it: one line with a newline at the end.
        python_with_key(
            &py,
            &fx,
            "open(sys.argv[4], 'wb').write(f.encrypt(open(sys.argv[3], 'rb').read()) + b'\\n')\n",
            &[&plain, &token],
        )
        .ok();
        let opened = run(fx.admin().args(["config", "open"]).arg(&token));
        opened.ok();
        assert!(
            opened.stdout == plaintext,
            "{name}: warden printed other bytes"
        );
        // And with -o, to a file.
        let out = fx.path(&format!("{name}.opened"));
        run(fx
            .admin()
            .args(["config", "open"])
            .arg(&token)
            .arg("-o")
            .arg(&out))
        .ok();
        assert!(std::fs::read(&out).unwrap() == plaintext);
    }
}

/// Verifies: V64, V77
#[test]
fn tampered_or_foreign_tokens_are_refused_with_status_3() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    let plain = fx.file("plain.yaml", b"secret: value\n");
    // Flip one bit in each region of the token: timestamp, IV, ciphertext, HMAC.
    let tampered: Vec<_> = [5usize, 20, 40, 70]
        .into_iter()
        .map(|offset| {
            let token = fx.path(&format!("tampered-{offset}.token"));
            python_with_key(
                &py,
                &fx,
                "import base64\n\
                 raw = bytearray(base64.urlsafe_b64decode(f.encrypt(open(sys.argv[3], 'rb').read())))\n\
                 raw[int(sys.argv[5])] ^= 1\n\
                 open(sys.argv[4], 'wb').write(base64.urlsafe_b64encode(bytes(raw)) + b'\\n')\n",
                &[&plain, &token, Path::new(&offset.to_string())],
            )
            .ok();
            token
        })
        .collect();
    // A valid token under another key, as from another installation.
    let foreign = fx.path("foreign.token");
    python_with_key(
        &py,
        &fx,
        "open(sys.argv[4], 'wb').write(Fernet(Fernet.generate_key()).encrypt(open(sys.argv[3], 'rb').read()))\n",
        &[&plain, &foreign],
    )
    .ok();
    for token in tampered.iter().chain([&foreign]) {
        let out = fx.path("should-not-exist");
        let refused = run(fx
            .admin()
            .args(["config", "open"])
            .arg(token)
            .arg("-o")
            .arg(&out));
        refused.expect_code(3).stderr_has(&["could not be opened"]);
        assert!(!out.exists(), "{}: output written", token.display());
        let to_stdout = run(fx.admin().args(["config", "open"]).arg(token));
        to_stdout.expect_code(3);
        assert!(
            to_stdout.stdout.is_empty(),
            "plaintext printed for a bad token"
        );
    }
}
