//! The `warden` command line's contract, through the real binary: `init` and its layout,
//! passphrase sources and their refusals, exit statuses (0 ok, 1 error, 2 usage, 3 damaged,
//! 4 wrong passphrase or key), pipes, truncation and `--recover`, named damage, `--force`, the
//! demo — and that no secret (passphrase, purpose key in hex or base64) ever reaches standard
//! output or standard error, at any verbosity, in either log format, on success or failure.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use support::{
    init_args, join, pseudo_random, run, run_with_stdin, split_frames, warden, write_private,
    Fixture, Run, FRAME_HEADER_LEN, HEADER_LEN, KDF_ITERATIONS, PASSPHRASE, TAG_LEN,
};
use warden_core::keyring::Purpose;

const SEGMENT: usize = 65536;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------- init

/// Verifies: V8, V9, V12, V87
#[test]
fn init_creates_a_private_layout() {
    let fx = Fixture::new();
    assert_eq!(mode(&fx.data_dir), 0o700, "data directory");
    for sub in ["sessions", "heartbeats", "alerts", "state"] {
        assert_eq!(mode(&fx.data_dir.join(sub)), 0o700, "{sub}/");
    }
    // Format 2: key slots, no security.json (issue 12).
    assert!(!fx.data_dir.join("security.json").exists());
    let slots = fx.data_dir.join("keyslots.json");
    assert_eq!(mode(&slots), 0o600, "keyslots.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&slots).unwrap()).unwrap();
    assert_eq!(json["format"], "warden-keyslots");
    for purpose in Purpose::IN_SLOTS {
        assert_eq!(json["keys"][purpose.name()]["version"], 1, "{purpose}");
    }
    let slot = |owner: &str| {
        json["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["owner"] == owner)
            .unwrap_or_else(|| panic!("no {owner} slot"))
            .clone()
    };
    let master = slot("master");
    assert_eq!(master["kdf"]["algorithm"], "PBKDF2-HMAC-SHA256");
    assert_eq!(master["kdf"]["iterations"], 1000);
    assert_eq!(master["wraps"].as_array().unwrap().len(), 6);
    assert_eq!(slot("recovery")["kdf"]["algorithm"], "HKDF-SHA256");
    assert_eq!(mode(&fx.recovery_key_file()), 0o600, "recovery key file");
    // The passphrase and the keys are not stored, in any form the test can name.
    let text = std::fs::read_to_string(&slots).unwrap();
    assert!(!text.contains(PASSPHRASE));
    for purpose in Purpose::IN_SLOTS {
        let key = fx.key(purpose);
        assert!(!text.contains(&hex::encode(key.expose_secret())));
        assert!(!text.contains(&STANDARD.encode(key.expose_secret())));
    }
}

#[test]
fn init_refuses_an_initialized_directory() {
    let fx = Fixture::new();
    let security = fx.data_dir.join("keyslots.json");
    let before = std::fs::read(&security).unwrap();
    run(fx
        .admin()
        .args(["init", "--kdf-iterations", KDF_ITERATIONS]))
    .expect_code(1)
    .stderr_has(&["already initialized"]);
    assert_eq!(
        std::fs::read(&security).unwrap(),
        before,
        "keyslots.json changed"
    );
}

/// Verifies: V10
#[test]
fn init_refuses_a_passphrase_shorter_than_16_characters() {
    let tmp = tempfile::tempdir().unwrap();
    // 15 characters (30 bytes: characters count, not bytes), then exactly 16.
    for (i, (passphrase, accepted)) in [
        ("fifteen chars!!", false),
        ("üüüüüüüüüüüüüüü", false),
        ("sixteen chars!!!", true),
    ]
    .into_iter()
    .enumerate()
    {
        let file = tmp.path().join(format!("pass-{i}"));
        write_private(&file, format!("{passphrase}\n").as_bytes());
        let dir = tmp.path().join(format!("data-{i}"));
        let result = run(warden()
            .arg("--data-dir")
            .arg(&dir)
            .arg("--passphrase-file")
            .arg(&file)
            .args(init_args(tmp.path())));
        if accepted {
            result.ok();
            assert!(dir.join("keyslots.json").exists());
        } else {
            result.expect_code(1).stderr_has(&["at least 16"]);
            assert!(
                !dir.join("keyslots.json").exists(),
                "keyslots.json written for a short passphrase"
            );
        }
    }
}

#[test]
fn kdf_iterations_below_the_floor_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("pass");
    write_private(&file, PASSPHRASE.as_bytes());
    run(warden()
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--passphrase-file")
        .arg(&file)
        .args(["init", "--kdf-iterations", "999"]))
    .expect_code(1)
    .stderr_has(&["1000"]);
    assert!(!tmp.path().join("data/keyslots.json").exists());
}

// ------------------------------------------------------------------- passphrase sources

/// What needs the master passphrase (issue 12: `keys` commands, break-glass; daily commands
/// open the person's own key slot and never read it) refuses a wrong one with exit code 4 and
/// writes nothing.
/// Verifies: V18, V76, V78
#[test]
fn wrong_passphrase_exits_4_and_writes_nothing() {
    let fx = Fixture::new();
    let wrong = fx.file("wrong-passphrase", b"this is not the passphrase\n");
    let new = fx.file("new-passphrase", b"a new master passphrase, long enough\n");
    let new_admin = fx.file("new-admin-password", b"Recovered-Admin-Password-9\n");
    let slots = std::fs::read(fx.data_dir.join("keyslots.json")).unwrap();
    let with_wrong = |args: &[&std::ffi::OsStr]| {
        run(fx
            .admin_without_passphrase()
            .arg("--passphrase-file")
            .arg(&wrong)
            .args(args))
    };
    for args in [
        vec!["keys".as_ref(), "check".as_ref()],
        vec![
            "keys".as_ref(),
            "passphrase".as_ref(),
            "--new-passphrase-file".as_ref(),
            new.as_os_str(),
        ],
        vec![
            "break-glass".as_ref(),
            "--admin".as_ref(),
            "admin".as_ref(),
            "--reason".as_ref(),
            "test".as_ref(),
            "--new-password-file".as_ref(),
            new_admin.as_os_str(),
        ],
    ] {
        with_wrong(&args)
            .expect_code(4)
            .stderr_has(&["master passphrase", "nothing was read or written"]);
    }
    assert_eq!(
        std::fs::read(fx.data_dir.join("keyslots.json")).unwrap(),
        slots
    );
    // A daily command does not read the passphrase at all: the person's slot opens the keys.
    let plain = fx.file("plain", b"some data\n");
    with_wrong(&[
        "vault".as_ref(),
        "seal".as_ref(),
        plain.as_os_str(),
        fx.path("out").as_os_str(),
    ])
    .ok();
}

/// Verifies: V87
#[test]
fn passphrase_file_open_to_others_is_refused_with_a_chmod_hint() {
    let fx = Fixture::new();
    for open_mode in [0o644, 0o640, 0o604, 0o660] {
        chmod(&fx.passphrase_file, open_mode);
        run(fx.warden().args(["keys", "check"]))
            .expect_code(1)
            .stderr_has(&["passphrase file", "chmod 600"]);
    }
    chmod(&fx.passphrase_file, 0o400);
    run(fx.warden().args(["keys", "check"])).ok();
}

#[test]
fn symlinked_passphrase_file_is_refused() {
    let fx = Fixture::new();
    let link = fx.path("passphrase-link");
    std::os::unix::fs::symlink(&fx.passphrase_file, &link).unwrap();
    run(fx
        .warden_without_passphrase()
        .arg("--passphrase-file")
        .arg(&link)
        .args(["keys", "check"]))
    .expect_code(1)
    .stderr_has(&["passphrase file", "symbolic link"]);
}

#[test]
fn passphrase_fd_reads_the_passphrase_from_standard_input() {
    let fx = Fixture::new();
    let out = run_with_stdin(
        fx.warden_without_passphrase()
            .args(["--passphrase-fd", "0", "keys", "check"]),
        format!("{PASSPHRASE}\n").as_bytes(),
    );
    out.ok();
    assert!(out
        .stdout_text()
        .contains("master passphrase opens its slot"));
    // A wrong passphrase on the descriptor is refused like any other.
    run_with_stdin(
        fx.warden_without_passphrase()
            .args(["--passphrase-fd", "0", "keys", "check"]),
        b"not the right passphrase at all\n",
    )
    .expect_code(4);
    // `init` takes its passphrase from a descriptor too.
    let dir = fx.path("data-from-fd");
    run_with_stdin(
        warden()
            .arg("--data-dir")
            .arg(&dir)
            .args(["--passphrase-fd", "0"])
            .args(init_args(fx.dir())),
        format!("{PASSPHRASE}\n").as_bytes(),
    )
    .ok();
    assert!(dir.join("keyslots.json").exists());
}

#[test]
fn passphrase_file_and_fd_together_are_a_usage_error() {
    let fx = Fixture::new();
    run(fx
        .admin()
        .args(["--passphrase-fd", "0", "vault", "verify", "x"]))
    .expect_code(2);
}

#[test]
fn no_passphrase_source_is_an_error_not_a_hang() {
    let fx = Fixture::new();
    run(fx.warden_without_passphrase().args(["keys", "check"]))
        .expect_code(1)
        .stderr_has(&["no passphrase source"]);
}

#[test]
fn uninitialized_data_dir_is_named_with_a_hint() {
    let fx = Fixture::new();
    let plain = fx.file("plain", b"x");
    run(warden()
        .arg("--data-dir")
        .arg(fx.path("nowhere"))
        .arg("--passphrase-file")
        .arg(&fx.passphrase_file)
        .args(["vault", "seal"])
        .arg(&plain)
        .arg(fx.path("out")))
    .expect_code(1)
    .stderr_has(&["not an initialized", "warden init"]);
}

// --------------------------------------------------------------------------- vault

/// Verifies: V15, V20, V70
#[test]
fn vault_seal_and_open_work_in_a_pipe() {
    let fx = Fixture::new();
    let plaintext = pseudo_random(3 * SEGMENT + 1234, 5);
    // seal - - | open - -, as two processes joined by a real pipe.
    let mut seal = fx
        .admin()
        .args(["vault", "seal", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let open = fx
        .admin()
        .args(["vault", "open", "-", "-"])
        .stdin(Stdio::from(seal.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = seal.stdin.take().unwrap();
    let input = plaintext.clone();
    // A seal that fails stops reading (broken pipe here); its stderr says why, below.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let opened = open.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    let sealed = seal.wait_with_output().unwrap();
    assert!(
        sealed.status.success(),
        "seal: {}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    written.unwrap();
    assert!(
        opened.status.success(),
        "open: {}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert!(opened.stdout == plaintext, "pipe round trip differs");

    // And each end alone: the sealed bytes on stdout open from a file.
    let run_seal = run_with_stdin(fx.admin().args(["vault", "seal", "-", "-"]), &plaintext);
    run_seal.ok();
    assert!(run_seal.stdout.starts_with(b"WRDNSEAL"));
    let sealed_file = fx.file("from-stdout.sealed", &run_seal.stdout);
    let opened_file = fx.path("from-stdout.opened");
    run(fx
        .admin()
        .args(["vault", "open"])
        .arg(&sealed_file)
        .arg(&opened_file))
    .ok();
    assert!(std::fs::read(&opened_file).unwrap() == plaintext);
}

/// A file cut inside its third segment: two segments (128 KiB) verify.
fn truncated(fx: &Fixture) -> (Vec<u8>, std::path::PathBuf) {
    let plaintext = pseudo_random(4 * SEGMENT + 77, 9);
    let sealed = fx.seal("plain", &plaintext);
    let cut_at = HEADER_LEN + 2 * (FRAME_HEADER_LEN + SEGMENT + TAG_LEN) + 5000;
    (plaintext, fx.file("cut.sealed", &sealed[..cut_at]))
}

#[test]
fn open_of_a_truncated_file_fails_with_status_3_and_writes_nothing() {
    let fx = Fixture::new();
    let (_, cut) = truncated(&fx);
    let out_dir = fx.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    run(fx
        .admin()
        .args(["vault", "open"])
        .arg(&cut)
        .arg(out_dir.join("opened")))
    .expect_code(3)
    .stderr_has(&["truncated", "--recover"]);
    // Neither the output nor a temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "truncated open left {left:?}");
}

#[test]
fn open_recover_writes_the_verified_prefix_and_says_so() {
    let fx = Fixture::new();
    let (plaintext, cut) = truncated(&fx);
    let out = fx.path("recovered");
    run(fx
        .admin()
        .args(["vault", "open", "--recover"])
        .arg(&cut)
        .arg(&out))
    .ok()
    .stderr_has(&["truncated", "recovered", "131072 bytes", "2 segments"]);
    assert!(std::fs::read(&out).unwrap() == plaintext[..2 * SEGMENT]);
}

#[test]
fn open_of_a_truncated_file_to_a_pipe_writes_the_verified_prefix_then_exits_3() {
    let fx = Fixture::new();
    let (plaintext, cut) = truncated(&fx);
    let result = run(fx.admin().args(["vault", "open"]).arg(&cut).arg("-"));
    result.expect_code(3).stderr_has(&["truncated"]);
    assert!(
        result.stdout == plaintext[..2 * SEGMENT],
        "stdout holds {} bytes, expected the 131072 verified ones",
        result.stdout.len()
    );
}

/// Verifies: V17, V18, V77
#[test]
fn verify_names_each_kind_of_damage() {
    let fx = Fixture::new();
    let plaintext = pseudo_random(5 * SEGMENT, 13);
    let good = fx.seal("plain", &plaintext);
    let other = fx.seal("plain-again", &plaintext);
    let (header, frames) = split_frames(&good);
    let (_, other_frames) = split_frames(&other);
    let f: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    assert_eq!(f.len(), 5);
    let mut modified = good.clone();
    modified[HEADER_LEN + 2 * (FRAME_HEADER_LEN + SEGMENT + TAG_LEN) + 500] ^= 0x20;

    let stranger = Fixture::with_passphrase("a different installation's passphrase");
    let foreign = stranger.seal("foreign", &plaintext);

    let cases: Vec<(&str, Vec<u8>, i32, &[&str])> = vec![
        ("modified", modified, 3, &["segment 2", "modified"]),
        (
            "truncated",
            join(&header, &f[..4]),
            3,
            &["truncated", "4 segments"],
        ),
        (
            "reordered",
            join(&header, &[f[0], f[1], f[3], f[2], f[4]]),
            3,
            &["position 2", "reordered"],
        ),
        (
            "removed",
            join(&header, &[f[0], f[2], f[3], f[4]]),
            3,
            &["removed"],
        ),
        (
            "duplicated",
            join(&header, &[f[0], f[1], f[1], f[2], f[3], f[4]]),
            3,
            &["duplicated"],
        ),
        (
            "spliced",
            join(&header, &[f[0], f[1], f[2], &other_frames[3], f[4]]),
            3,
            &["segment 3", "spliced"],
        ),
        ("wrong key", foreign, 4, &["wrong key"]),
    ];
    for (what, bytes, code, words) in cases {
        let path = fx.file(&format!("{what}.sealed"), &bytes);
        let verified = run(fx.admin().args(["vault", "verify"]).arg(&path));
        verified.expect_code(code).stderr_has(words);
        assert!(
            verified.stdout.is_empty(),
            "{what}: verify printed {}",
            verified.stdout_text()
        );
    }
    // The intact file verifies, and says so on stdout.
    let ok = run(fx
        .admin()
        .args(["vault", "verify"])
        .arg(fx.path("plain.sealed")));
    ok.ok();
    assert!(ok.stdout_text().contains("all authentic"));
}

#[test]
fn existing_output_is_refused_without_force() {
    let fx = Fixture::new();
    let plain = fx.file("plain", b"new content\n");
    let config = fx.file("config.yaml", b"a: 1\n");
    let sealed = fx.path("plain.sealed");
    run(fx.admin().args(["vault", "seal"]).arg(&plain).arg(&sealed)).ok();
    let token = fx.path("config.token");
    run(fx
        .admin()
        .args(["config", "seal"])
        .arg(&config)
        .arg("-o")
        .arg(&token))
    .ok();

    let existing = fx.file("existing", b"precious\n");
    let attempts: Vec<(&str, Vec<&std::ffi::OsStr>)> = vec![
        (
            "vault seal",
            vec!["vault".as_ref(), "seal".as_ref(), plain.as_os_str()],
        ),
        (
            "vault open",
            vec!["vault".as_ref(), "open".as_ref(), sealed.as_os_str()],
        ),
        (
            "config seal",
            vec![
                "config".as_ref(),
                "seal".as_ref(),
                config.as_os_str(),
                "-o".as_ref(),
            ],
        ),
        (
            "config open",
            vec![
                "config".as_ref(),
                "open".as_ref(),
                token.as_os_str(),
                "-o".as_ref(),
            ],
        ),
    ];
    for (what, args) in &attempts {
        run(fx.admin().args(args).arg(&existing))
            .expect_code(1)
            .stderr_has(&["exists", "--force"]);
        assert_eq!(
            std::fs::read(&existing).unwrap(),
            b"precious\n",
            "{what} replaced an existing file without --force"
        );
    }
    // A symlink at the output path counts as existing: never written through.
    let link = fx.path("link");
    std::os::unix::fs::symlink(&existing, &link).unwrap();
    run(fx.admin().args(["vault", "open"]).arg(&sealed).arg(&link)).expect_code(1);
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious\n");
    // With --force each replaces it.
    for (what, args) in &attempts {
        run(fx.admin().args(args).arg(&existing).arg("--force")).ok();
        assert_ne!(
            std::fs::read(&existing).unwrap(),
            b"precious\n",
            "{what} --force"
        );
    }
    run(fx
        .admin()
        .args(["vault", "open", "--force"])
        .arg(&sealed)
        .arg(&existing))
    .ok();
    assert_eq!(std::fs::read(&existing).unwrap(), b"new content\n");
}

#[test]
fn demo_runs_end_to_end() {
    let result = run(warden().arg("demo"));
    result.ok();
    let out = result.stdout_text();
    assert!(out.contains("All steps passed"), "{out}");
    // The treatment step (seed 002) did each of its acts.
    for needle in [
        "signed: Dr. Ingrid Olsen (dr-olsen), performed,",
        "root (administrator) asked for the patient: refused",
        "verified 3 versions and 1 signature(s) against the chain, and exported 3 versions",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

// ---------------------------------------------------------------------- secrets

/// Every form in which a secret could plausibly be printed.
struct Secrets(Vec<(String, Vec<u8>)>);

impl Secrets {
    fn new(fx: &Fixture, passphrases: &[&str]) -> Self {
        let mut needles = Vec::new();
        for passphrase in passphrases {
            needles.push((
                format!("passphrase {passphrase:?}"),
                passphrase.as_bytes().to_vec(),
            ));
        }
        // The recovery key, in the form it is shown and as raw hex.
        let recovery = std::fs::read_to_string(fx.recovery_key_file()).unwrap();
        let recovery = recovery.trim();
        needles.push(("recovery key".into(), recovery.as_bytes().to_vec()));
        needles.push((
            "recovery key (hex)".into(),
            recovery.replace('-', "").into_bytes(),
        ));
        for purpose in Purpose::IN_SLOTS {
            let key = fx.key(purpose);
            let bytes = key.expose_secret();
            let hex_lower = hex::encode(bytes);
            let forms = [
                ("hex", hex_lower.clone()),
                ("HEX", hex_lower.to_uppercase()),
                ("hex prefix", hex_lower[..16].to_string()),
                ("base64", STANDARD.encode(bytes)),
                ("base64 unpadded", STANDARD_NO_PAD.encode(bytes)),
                ("base64url", URL_SAFE.encode(bytes)),
                ("base64url unpadded", URL_SAFE_NO_PAD.encode(bytes)),
                (
                    "byte array",
                    format!("{:?}", &bytes[..8])
                        .trim_end_matches(']')
                        .to_string(),
                ),
            ];
            for (form, text) in forms {
                needles.push((format!("{purpose} key ({form})"), text.into_bytes()));
            }
        }
        Self(needles)
    }

    #[track_caller]
    fn assert_absent(&self, what: &str, result: &Run) {
        for (name, needle) in &self.0 {
            for (stream, haystack) in [
                ("stdout", &result.stdout),
                ("stderr", &result.stderr.as_bytes().to_vec()),
            ] {
                assert!(
                    !haystack
                        .windows(needle.len())
                        .any(|w| w == needle.as_slice()),
                    "{what}: the {name} appears on {stream}:\n{}",
                    String::from_utf8_lossy(haystack)
                );
            }
        }
    }
}

/// Verifies: V13
#[test]
fn secrets_never_reach_stdout_or_stderr() {
    let fx = Fixture::new();
    let wrong_passphrase = "wrong passphrase that must not leak either";
    let short_passphrase = "short secret 15";
    let secrets = Secrets::new(&fx, &[PASSPHRASE, wrong_passphrase, short_passphrase]);

    let plaintext = b"recording: nothing secret in here\n".repeat(4000);
    let plain = fx.file("plain", &plaintext);
    let sealed_bytes = fx.seal("base", &plaintext);
    let sealed = fx.path("base.sealed");
    let mut damaged_bytes = sealed_bytes.clone();
    damaged_bytes[HEADER_LEN + 40] ^= 1;
    let damaged = fx.file("damaged.sealed", &damaged_bytes);
    let cut = fx.file("cut.sealed", &sealed_bytes[..sealed_bytes.len() - 100]);
    let config = fx.file("config.yaml", b"siem:\n  host: 127.0.0.1\n");
    let token = fx.path("config.token");
    run(fx
        .admin()
        .args(["config", "seal"])
        .arg(&config)
        .arg("-o")
        .arg(&token))
    .ok();
    let mut tampered_token = std::fs::read(&token).unwrap();
    tampered_token[30] = if tampered_token[30] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let tampered = fx.file("tampered.token", &tampered_token);
    let wrong_file = fx.file(
        "wrong-passphrase",
        format!("{wrong_passphrase}\n").as_bytes(),
    );
    let short_file = fx.file(
        "short-passphrase",
        format!("{short_passphrase}\n").as_bytes(),
    );
    let open_file = fx.file("open-passphrase", format!("{PASSPHRASE}\n").as_bytes());
    chmod(&open_file, 0o644);
    let link = fx.path("passphrase-link");
    std::os::unix::fs::symlink(&fx.passphrase_file, &link).unwrap();

    let variants: [(&str, &[&str], bool); 5] = [
        ("default", &[], false),
        ("-v", &["-v"], false),
        ("-vv", &["-vv"], false),
        ("-vv json", &["-vv", "--log-format", "json"], false),
        ("WARDEN_LOG=trace json", &["--log-format", "json"], true),
    ];
    let mut checked = 0;
    for (v, (variant, flags, trace)) in variants.into_iter().enumerate() {
        let out = |name: &str| fx.path(&format!("{name}-{v}"));
        let base = |with_passphrase: bool| {
            let mut cmd = if with_passphrase {
                fx.admin()
            } else {
                fx.admin_without_passphrase()
            };
            cmd.args(flags);
            if trace {
                cmd.env("WARDEN_LOG", "trace");
            }
            cmd
        };
        let mut check = |what: &str, result: Run, code: i32| {
            result.expect_code(code);
            secrets.assert_absent(&format!("{what} [{variant}]"), &result);
            checked += 1;
        };

        // Success paths.
        check(
            "vault seal",
            run(base(true)
                .args(["vault", "seal"])
                .arg(&plain)
                .arg(out("sealed"))),
            0,
        );
        check(
            "vault open",
            run(base(true)
                .args(["vault", "open"])
                .arg(&sealed)
                .arg(out("opened"))),
            0,
        );
        check(
            "vault open to stdout",
            run(base(true).args(["vault", "open"]).arg(&sealed).arg("-")),
            0,
        );
        check(
            "vault verify",
            run(base(true).args(["vault", "verify"]).arg(&sealed)),
            0,
        );
        check(
            "vault seal - -",
            run_with_stdin(base(true).args(["vault", "seal", "-", "-"]), &plaintext),
            0,
        );
        check(
            "vault open --recover",
            run(base(true)
                .args(["vault", "open", "--recover"])
                .arg(&cut)
                .arg(out("recovered"))),
            0,
        );
        check(
            "config seal",
            run(base(true)
                .args(["config", "seal"])
                .arg(&config)
                .arg("-o")
                .arg(out("token"))),
            0,
        );
        check(
            "config open",
            run(base(true).args(["config", "open"]).arg(&token)),
            0,
        );
        check(
            "passphrase on fd 0",
            run_with_stdin(
                base(false)
                    .args(["--passphrase-fd", "0", "vault", "verify"])
                    .arg(&sealed),
                format!("{PASSPHRASE}\n").as_bytes(),
            ),
            0,
        );
        check(
            "passphrase in WARDEN_PASSPHRASE",
            run(base(false)
                .env("WARDEN_PASSPHRASE", PASSPHRASE)
                .args(["vault", "verify"])
                .arg(&sealed)),
            0,
        );

        // Error paths.
        check(
            "verify damaged",
            run(base(true).args(["vault", "verify"]).arg(&damaged)),
            3,
        );
        check(
            "open truncated",
            run(base(true)
                .args(["vault", "open"])
                .arg(&cut)
                .arg(out("cut-out"))),
            3,
        );
        check(
            "config open tampered",
            run(base(true).args(["config", "open"]).arg(&tampered)),
            3,
        );
        // What reads the master passphrase (issue 12: `keys`, break-glass; a signed-in
        // daily command never does).
        for (what, args) in [
            ("wrong passphrase: keys check", vec!["keys", "check"]),
            ("wrong passphrase: keys list", vec!["keys", "passphrase"]),
        ] {
            let mut cmd = base(false);
            cmd.arg("--passphrase-file").arg(&wrong_file).args(args);
            cmd.env(
                "WARDEN_NEW_PASSPHRASE",
                "a new master passphrase, long enough",
            );
            check(what, run(&mut cmd), 4);
        }
        check(
            "wrong passphrase on fd 0",
            run_with_stdin(
                base(false).args(["--passphrase-fd", "0", "keys", "check"]),
                format!("{wrong_passphrase}\n").as_bytes(),
            ),
            4,
        );
        check(
            "wrong passphrase in WARDEN_PASSPHRASE",
            run(base(false)
                .env("WARDEN_PASSPHRASE", wrong_passphrase)
                .args(["keys", "check"])),
            4,
        );
        check(
            "passphrase file mode 0644",
            run(base(false)
                .arg("--passphrase-file")
                .arg(&open_file)
                .args(["keys", "check"])),
            1,
        );
        check(
            "symlinked passphrase file",
            run(base(false)
                .arg("--passphrase-file")
                .arg(&link)
                .args(["keys", "check"])),
            1,
        );
        check(
            "init on an initialized directory",
            run(base(true).args(["init", "--kdf-iterations", KDF_ITERATIONS])),
            1,
        );
        let mut short_init = warden();
        short_init
            .arg("--data-dir")
            .arg(out("short-data"))
            .arg("--passphrase-file")
            .arg(&short_file)
            .args(flags)
            .args(["init", "--kdf-iterations", KDF_ITERATIONS]);
        if trace {
            short_init.env("WARDEN_LOG", "trace");
        }
        check("init with a short passphrase", run(&mut short_init), 1);
        check(
            "missing input",
            run(base(true)
                .args(["vault", "seal"])
                .arg(fx.path("absent"))
                .arg(out("x"))),
            1,
        );
    }
    assert_eq!(checked, 5 * 22, "every command ran in every variant");
}

/// The leak check itself must catch a key when one is printed (else the test above proves
/// nothing).
/// Verifies: V13
#[test]
fn the_leak_check_catches_a_printed_key() {
    let fx = Fixture::new();
    let secrets = Secrets::new(&fx, &[PASSPHRASE]);
    let key = fx.key(Purpose::Config);
    let printed = [
        format!("debug: key={}", hex::encode(key.expose_secret())),
        format!(
            "{{\"k\":\"{}\"}}",
            URL_SAFE_NO_PAD.encode(key.expose_secret())
        ),
        format!("passphrase was {PASSPHRASE}"),
    ];
    for text in printed {
        let echoed = run(std::process::Command::new("echo").arg(&text));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            secrets.assert_absent("self-test", &echoed)
        }));
        assert!(caught.is_err(), "the leak check missed {text:?}");
    }
}

/// Vault acts are audited under the signed-in user with the file's name and the SHA-256 of the
/// sealed file, which anyone can recompute with `sha256sum`.
/// Verifies: V58, V75
#[test]
fn vault_acts_are_audited_with_the_sealed_file_s_sha256() {
    let fx = Fixture::new();
    let plain = fx.file("scan.bin", &pseudo_random(300_000, 9));
    let sealed = fx.path("scan.sealed");
    run(fx
        .operator()
        .args(["vault", "seal"])
        .arg(&plain)
        .arg(&sealed))
    .ok();
    run(fx
        .auditor()
        .args(["vault", "open"])
        .arg(&sealed)
        .arg(fx.path("scan.opened")))
    .ok();
    let digest = hex::encode(warden_core::mac::sha256(&std::fs::read(&sealed).unwrap()));
    let db = warden_store::Database::open(
        &fx.data_dir.join(warden_store::DB_FILE),
        &fx.key(Purpose::Database),
    )
    .unwrap();
    let rows = warden_store::audit::read_rows(&db, 1, None).unwrap();
    let find = |action: &str| {
        rows.iter()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("no {action} event"))
    };
    let seal = find("vault.seal");
    assert_eq!(seal.actor, support::OPERATOR);
    assert_eq!(seal.subject, sealed.display().to_string());
    let details: serde_json::Value = serde_json::from_str(&seal.details).unwrap();
    assert_eq!(details["sha256"], digest);
    assert_eq!(details["input"], plain.display().to_string());
    let open = find("vault.open");
    assert_eq!(open.actor, support::AUDITOR);
    let details: serde_json::Value = serde_json::from_str(&open.details).unwrap();
    assert_eq!(details["sha256"], digest);
}

/// A failing command whose standard error is full (or closed) still exits with its own code,
/// not a panic's 101.
#[test]
fn a_full_standard_error_does_not_turn_an_error_into_a_panic() {
    let fx = Fixture::new();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let status = fx
        .operator()
        .args(["vault", "verify"])
        .arg(fx.path("no-such-file.sealed"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(full))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

/// `ota push` to a card with no key in the database queues the script and says so (the key
/// may be in a key file only `ota serve` reads); a card with a key gets no note.
#[test]
fn ota_push_to_a_card_without_a_key_queues_and_says_so() {
    let fx = Fixture::new();
    let out = run(fx
        .admin()
        .args(["ota", "push", "--card", "nobody-1", "--apdu", "80CA9F7F00"]));
    out.ok();
    assert!(
        out.stdout_text().contains("queued script"),
        "{}",
        out.stdout_text()
    );
    assert!(
        out.stderr.contains("no key in this database for nobody-1"),
        "{}",
        out.stderr
    );
    let keys = fx.file(
        "card-1.yaml",
        b"keys:\n  - identity: card-1\n    key: \"00112233445566778899aabbccddeeff\"\n",
    );
    run(fx.admin().args(["ota", "keys", "import"]).arg(&keys)).ok();
    let out = run(fx
        .admin()
        .args(["ota", "push", "--card", "card-1", "--apdu", "80CA9F7F00"]));
    out.ok();
    assert!(!out.stderr.contains("no key"), "{}", out.stderr);
}

/// Runs `ota serve` with `config` (plain YAML) and returns its stderr once it has exited,
/// which it must, with an error and without having said "listening".
fn ota_serve_refuses_to_start(fx: &Fixture, name: &str, config: &str) -> String {
    let config = fx.file(name, config.as_bytes());
    let mut child = fx
        .warden()
        .args(["ota", "serve", "--allow-plain-config", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ota serve kept running with {config:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    stderr
}

/// `ota serve` whose key file cannot be read does not start: it would listen and refuse every
/// card. Nor does one whose dashboard cannot serve (its TLS key or metrics token missing): it
/// would run without the dashboard it was asked for.
#[test]
fn ota_serve_does_not_start_without_its_key_file_or_its_dashboard() {
    let fx = Fixture::new();
    let missing = fx.path("missing-keys.yaml");
    let stderr = ota_serve_refuses_to_start(
        &fx,
        "keys.yaml",
        &format!(
            "listen: 127.0.0.1:0\nkeys:\n  file: {}\n",
            missing.display()
        ),
    );
    assert!(stderr.contains("the PSK keys cannot be loaded"), "{stderr}");
    assert!(stderr.contains("missing-keys.yaml"), "{stderr}");
    let stderr = ota_serve_refuses_to_start(
        &fx,
        "tls.yaml",
        &format!(
            "listen: 127.0.0.1:0\ndashboard:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n",
            fx.path("dash.pem").display(),
            fx.path("no-key.pem").display()
        ),
    );
    assert!(stderr.contains("the dashboard"), "{stderr}");
    let stderr = ota_serve_refuses_to_start(
        &fx,
        "token.yaml",
        &format!(
            "listen: 127.0.0.1:0\ndashboard:\n  listen: 127.0.0.1:0\n  metrics_token_file: {}\n",
            fx.path("no-token").display()
        ),
    );
    assert!(stderr.contains("metrics token"), "{stderr}");
}

/// Output piped into a reader that has gone (`warden … | head -c1`): the command ends quietly
/// with exit code 141, as a Unix tool killed by SIGPIPE, not with a panic and a backtrace.
/// The same when the write error comes back as an error (outside testing found `vault open
/// … -` exiting 1 with "Broken pipe").
#[test]
fn a_closed_standard_output_ends_the_command_quietly() {
    let fx = Fixture::new();
    fx.seal("big", &support::pseudo_random(1 << 20, 3));
    let sealed = fx.path("big.sealed");
    let mut open = fx.operator();
    open.args(["vault", "open"]).arg(&sealed).arg("-");
    let mut public_key = fx.warden();
    public_key.args(["audit", "public-key"]);
    for mut cmd in [public_key, open] {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{cmd:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("error"), "{stderr}");
    }
}

/// A script's label is printed with its control characters escaped: a label carrying terminal
/// escapes (typed by an operator, or pushed from the dashboard) does not act on the terminal of
/// whoever lists the results.
#[test]
fn ota_results_escape_control_characters_in_labels() {
    let fx = Fixture::new();
    run(fx.admin().args([
        "ota",
        "push",
        "--card",
        "card-1",
        "--apdu",
        "80CA9F7F00",
        "--label",
        "x\u{1b}[31mred\u{202e}",
    ]))
    .ok();
    let out = run(fx.admin().args(["ota", "results", "--card", "card-1"]));
    out.ok();
    let text = out.stdout_text();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202e}'),
        "{text:?}"
    );
    assert!(text.contains("x\\u{1b}[31mred\\u{202e}"), "{text}");
}
