//! Security regressions from issue 11 ("Hardening") that are seen from the command line:
//! configuration tokens from the future, KDF parameters no machine can run, and error messages
//! that repeat their own cause.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use support::{run, Fixture};
use warden_core::keyring::Purpose;
use warden_core::sealed_config::ConfigSealer;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// A box whose clock was set back used to be told "wrong key, or the token was modified".
/// Verifies: V24
#[test]
fn a_config_from_the_future_is_reported_as_a_clock_problem() {
    let fx = Fixture::new();
    let sealer = ConfigSealer::new(&fx.key(Purpose::Config));
    let token = sealer.seal_at(b"siem:\n  host: 127.0.0.1\n", now() + 3600);
    let file = fx.file("future.yaml.sealed", token.as_bytes());

    let refused = run(fx.admin().args(["config", "open"]).arg(&file));
    refused.expect_code(1).stderr_has(&[
        "authentic",
        "s ahead of this machine's clock",
        "at most 60 s",
        "--config-clock-skew",
    ]);
    assert!(!refused.stderr.contains("wrong key"), "{}", refused.stderr);

    // The tolerated skew is a setting (option or environment).
    let opened = run(fx
        .admin()
        .args(["--config-clock-skew", "7200", "config", "open"])
        .arg(&file));
    opened.ok();
    assert_eq!(opened.stdout, b"siem:\n  host: 127.0.0.1\n");
    run(fx
        .admin()
        .env("WARDEN_CONFIG_CLOCK_SKEW", "7200")
        .args(["config", "open"])
        .arg(&file))
    .ok();

    // Under another key it is still a wrong key, whatever its time.
    let other = ConfigSealer::new(&warden_core::secret::Key32::from_bytes([7; 32]));
    let foreign = fx.file(
        "foreign.yaml.sealed",
        other.seal_at(b"x: 1\n", now() + 3600).as_bytes(),
    );
    run(fx.admin().args(["config", "open"]).arg(&foreign))
        .expect_code(3)
        .stderr_has(&["wrong key"]);
}

/// The first part of `line` (split at `: `) that appears in it more than once: a cause printed
/// twice, once by an error that shows its source and again by the chain that follows it.
fn repeated_cause(line: &str) -> Option<&str> {
    line.split(": ")
        .map(str::trim)
        .filter(|part| part.len() >= 12 && part.contains(' '))
        .find(|part| line.matches(*part).count() > 1)
}

fn names_a_temporary(line: &str) -> bool {
    line.match_indices(".tmp").any(|(at, _)| {
        at >= 13
            && line.as_bytes()[at - 13] == b'.'
            && line.as_bytes()[at - 12..at]
                .iter()
                .all(u8::is_ascii_hexdigit)
    })
}

#[test]
fn the_repeat_detector_catches_a_repeated_cause() {
    assert!(names_a_temporary(
        "error: out/.x.sealed.0123456789ab.tmp: gone"
    ));
    assert!(!names_a_temporary("error: /tmp/.tmpMPfIn3/a: gone"));
    assert_eq!(
        repeated_cause("error: cannot open x: No such file or directory (os error 2): No such file or directory (os error 2)"),
        Some("No such file or directory (os error 2)")
    );
    assert_eq!(
        repeated_cause("error: /d/security.json: security.json is not valid: missing field `salt`"),
        None
    );
}

// Issue 11: messages like `… missing field `salt` …: security.json is not valid: missing field
// `salt` …` printed their cause twice, because an error showed its source in its own message
// and `main` prints the whole chain. Every level now says only what it adds.
#[test]
fn failing_commands_print_each_cause_once() {
    let fx = Fixture::new();
    let plain = fx.file("plain.txt", b"hello\n");
    let dir = fx.path("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let out = fx.path("out");
    std::fs::create_dir(&out).unwrap();
    let sealed = out.join("ok.sealed");
    run(fx.admin().args(["vault", "seal"]).arg(&plain).arg(&sealed)).ok();
    let cut = fx.file("cut.sealed", &std::fs::read(&sealed).unwrap()[..120]);
    let token = fx.file("tampered.yaml.sealed", b"gAAAAABnotreallyatoken\n");
    let missing = fx.path("missing.yaml");

    let mut checks: Vec<(std::process::Command, Vec<String>)> = Vec::new();
    let mut check = |mut cmd: std::process::Command, needles: &[&std::path::Path]| {
        let needles = needles.iter().map(|p| p.display().to_string()).collect();
        checks.push((std::mem::replace(&mut cmd, support::warden()), needles));
    };
    let mut c = fx.admin();
    c.args(["vault", "seal"])
        .arg(&dir)
        .arg(out.join("x.sealed"));
    check(c, &[&dir]);
    let mut c = fx.admin();
    let no_dir = fx.path("no-such-dir/x.sealed");
    c.args(["vault", "seal"]).arg(&plain).arg(&no_dir);
    check(c, &[&no_dir]);
    let mut c = fx.admin();
    c.args(["vault", "seal"])
        .arg(fx.path("nothing-here"))
        .arg(out.join("y"));
    check(c, &[]);
    let mut c = fx.admin();
    c.args(["vault", "open"]).arg(&plain).arg(out.join("z"));
    check(c, &[&plain]);
    let mut c = fx.admin();
    c.args(["vault", "verify"]).arg(&plain);
    check(c, &[&plain]);
    let mut c = fx.admin();
    c.args(["vault", "open"]).arg(&cut).arg(out.join("w"));
    check(c, &[&cut]);
    let mut c = fx.admin();
    c.args(["config", "open"]).arg(&missing);
    check(c, &[&missing]);
    let mut c = fx.admin();
    c.args(["config", "open"]).arg(&token);
    check(c, &[&token]);
    let mut c = fx.admin();
    c.args(["siem", "test", "--config"]).arg(&missing);
    check(c, &[&missing]);
    let mut c = fx.admin();
    c.args(["siem", "test", "--allow-plain-config", "--config"])
        .arg(&plain);
    check(c, &[&plain]);
    let mut c = fx.admin();
    c.args(["shim", "status", "--config"]).arg(&missing);
    check(c, &[&missing]);
    let mut c = fx.auditor();
    c.args(["audit", "verify", "--auditor-key"]).arg(&plain);
    check(c, &[]);
    let mut c = fx.auditor();
    c.args(["session", "export", "--format", "jsonl"])
        .arg(&plain);
    check(c, &[]);
    let mut c = fx.auditor();
    let no_dir_csv = fx.path("no-such-dir/audit.csv");
    c.args(["audit", "export", "-o"]).arg(&no_dir_csv);
    check(c, &[&no_dir_csv]);

    let mut failures = Vec::new();
    let mut run_all = |checks: Vec<(std::process::Command, Vec<String>)>| {
        for (mut cmd, needles) in checks {
            let done = run(&mut cmd);
            assert_ne!(done.code, 0, "expected a failure:\n{}", done.stderr);
            for line in done.stderr.lines() {
                if let Some(cause) = repeated_cause(line) {
                    failures.push(format!("{cause:?} twice in: {line}"));
                }
                // A temporary's name (`.NAME.<12 hex>.tmp`) means nothing to the user.
                assert!(!names_a_temporary(line), "{line}");
            }
            for needle in needles {
                assert!(
                    done.stderr.contains(&needle),
                    "{needle} not named in:\n{}",
                    done.stderr
                );
            }
        }
    };
    run_all(checks);

    // A damaged keyslots.json (issue 11's example, on the file that now holds the keys).
    let security = fx.data_dir.join("keyslots.json");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&security).unwrap()).unwrap();
    doc["slots"][0].as_object_mut().unwrap().remove("salt");
    std::fs::write(&security, serde_json::to_vec(&doc).unwrap()).unwrap();
    let mut c = fx.admin();
    c.args(["vault", "verify"]).arg(&sealed);
    let done = run(&mut c);
    // A modified keyslots.json is damage (docs/formats/keyslots.md): exit code 3.
    done.expect_code(3).stderr_has(&["missing field `salt`"]);
    assert_eq!(
        done.stderr.matches("missing field").count(),
        1,
        "{}",
        done.stderr
    );
    run_all(vec![(c, vec![])]);

    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Flips one bit at `offset` of every `page_size` page of `path` in `pages`.
fn flip_pages(path: &std::path::Path, pages: std::ops::Range<usize>) {
    let mut bytes = std::fs::read(path).unwrap();
    let count = bytes.len() / 4096;
    for page in pages.start..pages.end.min(count) {
        bytes[page * 4096 + 2000] ^= 1;
    }
    std::fs::write(path, bytes).unwrap();
}

/// One changed byte in the database is damage (exit 3), said in warden's words (no SQLCipher
/// log lines) with the way out: on page 1, where SQLCipher checks the key, it is not reported
/// as a wrong key (the key slot authenticated the key); on any other page, not as a plain error.
/// `audit verify` checks every page of the file, not only the rows of the chain: a damaged
/// page that no command happens to read is found too.
#[test]
fn audit_verify_authenticates_every_page_of_the_database() {
    let fx = Fixture::new();
    let mut verify = fx.auditor();
    verify.args(["audit", "verify"]);
    let done = run(&mut verify);
    done.ok();
    assert!(
        done.stdout_text()
            .contains("database file: every page authenticates"),
        "{}",
        done.stdout_text()
    );
    let db = fx.data_dir.join("state").join("warden.db");
    let pages = std::fs::metadata(&db).unwrap().len() as usize / 4096;
    flip_pages(&db, pages - 1..pages);
    let mut verify = fx.auditor();
    verify.args(["audit", "verify"]);
    let done = run(&mut verify);
    done.expect_code(3);
    let said = format!("{}{}", done.stdout_text(), done.stderr);
    assert!(
        said.contains(&format!("HMAC verification failed for page {pages}"))
            || said.contains("failed its authentication"),
        "{said}"
    );
}

/// Found by outside testing: an emptied database file was filled with a fresh schema by the
/// next command (even `audit verify`), which then said the directory was not set up.
#[test]
fn an_emptied_database_is_damage_and_stays_as_it_is() {
    let fx = Fixture::new();
    let db = fx.data_dir.join("state").join("warden.db");
    std::fs::write(&db, b"").unwrap();
    for args in [&["audit", "verify"][..], &["user", "list"]] {
        let mut cmd = fx.auditor();
        cmd.args(args);
        let done = run(&mut cmd);
        done.expect_code(3);
        done.stderr_has(&["warden.db", "empty", "restore it from a backup"]);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    }
    // Gone altogether from a data directory that has its key slots: lost too, not "set it up".
    std::fs::remove_file(&db).unwrap();
    let mut cmd = fx.auditor();
    cmd.args(["audit", "verify"]);
    let done = run(&mut cmd);
    done.expect_code(3);
    done.stderr_has(&["warden.db", "missing", "restore it from a backup"]);
    assert!(!db.exists());
}

#[test]
fn a_damaged_database_page_is_damage_not_a_wrong_key() {
    for pages in [0..1, 1..usize::MAX] {
        let fx = Fixture::new();
        let db = fx.data_dir.join("state").join("warden.db");
        assert!(
            !fx.data_dir.join("state").join("warden.db-wal").exists(),
            "the WAL would hide the main file's pages"
        );
        flip_pages(&db, pages.clone());
        let mut verify = fx.auditor();
        verify.args(["audit", "verify"]);
        let done = run(&mut verify);
        done.expect_code(3);
        assert!(!done.stderr.contains("ERROR CORE"), "{}", done.stderr);
        assert!(!done.stderr.contains("wrong"), "{}", done.stderr);
        if pages.start == 0 {
            done.stderr_has(&[
                "warden.db",
                "first page is damaged",
                "restore it from a backup",
            ]);
        } else {
            done.stderr_has(&["failed its authentication", "from a backup"]);
            assert_eq!(
                done.stderr.matches("malformed").count(),
                1,
                "{}",
                done.stderr
            );
        }
    }
}
