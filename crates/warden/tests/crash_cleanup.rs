//! Security regression (issue 11): a `vault seal` or `vault open` killed with SIGKILL at any
//! point leaves nothing beside its destination — no temporary (which, for `open`, would hold
//! decrypted plaintext) — and the destination itself only when it is complete.
//!
//! Each command is first run to completion to learn how long it takes, then started again and
//! again and killed at a random moment in that span (the seed is printed, so a failure can be
//! replayed with `WARDEN_CRASH_SEED`).

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{pseudo_random, run, Fixture};

const SIZE: usize = 64 * 1024 * 1024;
const KILLS: usize = 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn seed() -> u64 {
    match std::env::var("WARDEN_CRASH_SEED") {
        Ok(s) => s.parse().expect("WARDEN_CRASH_SEED is a number"),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        }
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs `args` (after `vault`) signed in as the administrator, to completion; returns how long
/// it took.
fn timed(fx: &Fixture, args: &[&Path]) -> Duration {
    let start = Instant::now();
    let mut cmd = fx.admin();
    cmd.arg("vault").args(args);
    run(&mut cmd).ok();
    start.elapsed()
}

/// Starts `args` again and again, killing each run at a random moment within `span`; after
/// each kill, `check` looks at the output directory. Returns how many runs were killed before
/// they finished.
fn kill_repeatedly(
    fx: &Fixture,
    args: &[&Path],
    span: Duration,
    rng: &mut Rng,
    check: impl Fn(bool),
) -> usize {
    let mut killed = 0;
    for _ in 0..KILLS {
        let delay = Duration::from_micros(rng.next() % (span.as_micros() as u64 + 1));
        let mut cmd = fx.admin();
        let mut child = cmd
            .arg("vault")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let was_killed = status.code().is_none();
        if was_killed {
            killed += 1;
        } else {
            assert!(
                status.success(),
                "a run that was not killed failed: {status}"
            );
        }
        check(was_killed);
    }
    killed
}

#[test]
fn killed_seal_and_open_leave_nothing_behind() {
    let seed = seed();
    println!("WARDEN_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let fx = Fixture::new();
    let plain = fx.file("big.bin", &pseudo_random(SIZE, 11));
    let out_dir = fx.path("out");
    std::fs::create_dir(&out_dir).unwrap();

    // Reference runs: how long each takes, and what a complete output looks like.
    let reference = fx.path("reference.sealed");
    let seal_time = timed(&fx, &["seal".as_ref(), &plain, &reference]);
    let sealed_len = std::fs::metadata(&reference).unwrap().len();
    let reference_plain = out_dir.join("plain.bin");
    let open_time = timed(&fx, &["open".as_ref(), &reference, &reference_plain]);
    assert_eq!(
        std::fs::read(&reference_plain).unwrap(),
        std::fs::read(&plain).unwrap()
    );
    std::fs::remove_file(&reference_plain).unwrap();
    println!("seal takes {seal_time:?}, open {open_time:?}");

    let sealed = out_dir.join("big.sealed");
    let killed = kill_repeatedly(
        &fx,
        &["seal".as_ref(), &plain, &sealed],
        seal_time,
        &mut rng,
        |_| {
            let names = names_in(&out_dir);
            assert!(
                names.is_empty() || names == ["big.sealed"],
                "a killed `vault seal` left {names:?}"
            );
            if let Ok(meta) = std::fs::metadata(&sealed) {
                assert_eq!(meta.len(), sealed_len, "an incomplete sealed file appeared");
                std::fs::remove_file(&sealed).unwrap();
            }
        },
    );
    assert!(
        killed >= KILLS / 4,
        "only {killed} of {KILLS} seal runs were killed before finishing"
    );

    let opened = out_dir.join("big.bin");
    let expected = std::fs::read(&plain).unwrap();
    let killed = kill_repeatedly(
        &fx,
        &["open".as_ref(), &reference, &opened],
        open_time,
        &mut rng,
        |_| {
            let names = names_in(&out_dir);
            assert!(
                names.is_empty() || names == ["big.bin"],
                "a killed `vault open` left {names:?}"
            );
            if opened.exists() {
                assert!(
                    std::fs::read(&opened).unwrap() == expected,
                    "an incomplete plaintext appeared"
                );
                std::fs::remove_file(&opened).unwrap();
            }
        },
    );
    assert!(
        killed >= KILLS / 4,
        "only {killed} of {KILLS} open runs were killed before finishing"
    );

    // Replacing an existing file (--force) also leaves only the destination.
    std::fs::write(&opened, b"old").unwrap();
    let mut cmd = fx.admin();
    cmd.args(["vault", "open", "--force"])
        .arg(&reference)
        .arg(&opened);
    run(&mut cmd).ok();
    assert_eq!(names_in(&out_dir), ["big.bin"]);
    assert!(std::fs::read(&opened).unwrap() == expected);
}
