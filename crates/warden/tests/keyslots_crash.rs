//! Lifecycle commands killed (SIGKILL) at random points, at least 20 times each (issue 12): the
//! data directory must open afterwards with the old keys or the new, never neither, and lose
//! nothing — the slot file settles at the next open, the slot and the database agree, the
//! audit chain verifies, and the data still open.
//!
//! Each command is first timed once; then each round kills it after a pseudo-random delay
//! (a fixed seed, so a failure can be replayed; half the rounds anywhere in the run, half near
//! its end, where the commit and the settling write are), opens the directory, checks the
//! invariants, and records which state the kill left (old or new), to show both were hit.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{run, Fixture, ADMIN, OPERATOR};
use warden_core::datadir::DataDir;
use warden_core::secret::Passphrase;

const ROUNDS: usize = 20;

/// xorshift, seeded per command.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A delay for a command that takes `took`: every other round anywhere in it, the others
    /// in its last 15 % and a little beyond (where the commit and the settling write are),
    /// so both outcomes — and the windows between the steps — are hit.
    fn delay(&mut self, took: Duration) -> Duration {
        let micros = took.as_micros().max(4) as u64;
        if self.next() % 2 == 0 {
            Duration::from_micros(self.next() % micros)
        } else {
            Duration::from_micros(micros * 17 / 20 + self.next() % (micros * 2 / 5))
        }
    }
}

/// How long `cmd` takes when it is not killed.
fn time_it(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "timing run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Runs `cmd` and SIGKILLs it after `delay`; true when it was killed. A run that finishes
/// first updates `took` (the machine's load changes while the tests run).
fn kill_after(mut cmd: Command, delay: Duration, took: &mut Duration) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            *took = (*took + started.elapsed()) / 2;
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let status = child.wait().unwrap();
    let killed = status.code().is_none();
    if killed && delay >= *took * 17 / 20 {
        // Killed in what was thought its last moments: it takes longer than thought.
        *took = *took * 11 / 10;
    }
    killed
}

/// What every killed run must leave: a store that opens (settling any pending change), an
/// audit chain that verifies, a slot file with nothing pending, and the vault file readable.
fn check_openable(fx: &Fixture, admin_password: &Path, passphrase: &Path, sealed: &Path) {
    let signed_in = |args: &[&str]| {
        let mut cmd = fx.warden_without_passphrase();
        cmd.args(["--as", ADMIN, "--password-file"])
            .arg(admin_password)
            .args(args);
        cmd
    };
    run(&mut signed_in(&["audit", "verify"])).ok();
    let dir = DataDir::open(&fx.data_dir).unwrap();
    assert!(
        dir.read_slots().unwrap().pending.is_none(),
        "a pending change was not settled by the next open"
    );
    let out = fx.path("check.out");
    let _ = std::fs::remove_file(&out);
    run(&mut signed_in(&[
        "vault",
        "open",
        sealed.to_str().unwrap(),
        out.to_str().unwrap(),
    ]))
    .ok();
    assert_eq!(std::fs::read(&out).unwrap(), b"must survive every crash\n");
    run(fx
        .warden_without_passphrase()
        .arg("--passphrase-file")
        .arg(passphrase)
        .args(["keys", "check"]))
    .ok();
}

fn sealed_file(fx: &Fixture) -> PathBuf {
    fx.seal("survivor", b"must survive every crash\n");
    fx.path("survivor.sealed")
}

/// Rounds are run until at least [`ROUNDS`] runs were actually killed (a run may finish before
/// its kill), at most this many.
const MAX_ROUNDS: usize = 3 * ROUNDS;

fn report(name: &str, states: &BTreeMap<&'static str, usize>, killed: usize, rounds: usize) {
    eprintln!("{name}: {killed} of {rounds} runs killed; states after the kill: {states:?}");
    assert!(killed >= ROUNDS, "{name}: only {killed} runs were killed");
}

/// Which of two secrets opens the master slot (exactly one must).
fn which_passphrase(fx: &Fixture, a: &Path, b: &Path) -> usize {
    let dir = DataDir::open(&fx.data_dir).unwrap();
    let opens = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        dir.unlock_master(&Passphrase::new(text.trim_end().to_owned()))
            .is_ok()
    };
    match (opens(a), opens(b)) {
        (true, false) => 0,
        (false, true) => 1,
        other => panic!("the master slot opens with {other:?} of the two passphrases"),
    }
}

#[test]
fn keys_passphrase_killed_at_random_points() {
    let fx = Fixture::new();
    let sealed = sealed_file(&fx);
    let passphrases = [
        fx.passphrase_file.clone(),
        fx.file("other-passphrase", b"the other master passphrase, 2026\n"),
    ];
    let command = |from: usize| {
        let mut cmd = fx.admin_without_passphrase();
        cmd.arg("--passphrase-file")
            .arg(&passphrases[from])
            .args(["keys", "passphrase", "--new-passphrase-file"])
            .arg(&passphrases[1 - from]);
        cmd
    };
    let mut took = time_it(command(0));
    let mut current = 1;
    let mut rng = Rng(0x5eed_0001);
    let mut states = BTreeMap::new();
    let mut killed = 0;
    let mut rounds = 0;
    while killed < ROUNDS && rounds < MAX_ROUNDS {
        rounds += 1;
        let delay = rng.delay(took);
        killed += usize::from(kill_after(command(current), delay, &mut took));
        // Settle (any store open does), then exactly one passphrase opens the master slot.
        run(fx.admin_without_passphrase().args(["user", "policy"])).ok();
        let now = which_passphrase(&fx, &passphrases[0], &passphrases[1]);
        *states
            .entry(if now == current { "old" } else { "new" })
            .or_default() += 1;
        current = now;
        check_openable(
            &fx,
            &fx.admin_password_file(),
            &passphrases[current],
            &sealed,
        );
    }
    report("keys passphrase", &states, killed, rounds);
    assert!(states.len() == 2, "both outcomes should occur: {states:?}");
}

/// The password that opens the person's slot is the one the database holds (checked with the
/// stored Argon2id hash, through the master passphrase's keys).
fn slot_and_hash_agree(fx: &Fixture, user: &str, a: &Path, b: &Path) -> usize {
    let dir = DataDir::open(&fx.data_dir).unwrap();
    let read = |p: &Path| {
        warden_core::password::Password::new(
            std::fs::read_to_string(p).unwrap().trim_end().to_owned(),
        )
    };
    let opens = |p: &Path| {
        matches!(
            warden_store::keys::unlock_user(&dir, user, &read(p)).unwrap(),
            warden_store::keys::UserSlot::Opened(..)
        )
    };
    let which = match (opens(a), opens(b)) {
        (true, false) => 0,
        (false, true) => 1,
        other => panic!("{user}'s slot opens with {other:?} of the two passwords"),
    };
    let ring = dir
        .master_keys(&Passphrase::new(fx.passphrase.clone()))
        .unwrap();
    let (store, _) = warden_store::keys::open_store(&dir, ring).unwrap();
    let phc: String = store
        .db
        .conn()
        .query_row(
            "SELECT password_phc FROM users WHERE username = ?1",
            [user],
            |r| r.get(0),
        )
        .unwrap();
    let hash = warden_core::password::PasswordHash::parse(&phc).unwrap();
    let expected = if which == 0 { a } else { b };
    assert!(
        hash.verify(&read(expected)).is_match(),
        "the slot opens with one password, the database holds another"
    );
    which
}

#[test]
fn user_passwd_killed_at_random_points() {
    let fx = Fixture::new();
    let sealed = sealed_file(&fx);
    // Passwords the history rule allows in turn (it remembers the last five).
    let passwords: Vec<PathBuf> = (0..=MAX_ROUNDS)
        .map(|i| {
            fx.file(
                &format!("olga-{i}"),
                format!("Olga-Password-Number-{i}!\n").as_bytes(),
            )
        })
        .collect();
    std::fs::copy(fx.path("olga-password"), &passwords[0]).ok();
    std::fs::write(
        &passwords[0],
        std::fs::read(fx.path("olga-password")).unwrap(),
    )
    .unwrap();
    let command = |from: &Path, to: &Path| {
        let mut cmd = fx.warden_without_passphrase();
        cmd.args(["--as", OPERATOR, "--password-file"])
            .arg(from)
            .args(["user", "passwd", "--new-password-file"])
            .arg(to);
        cmd
    };
    let mut took = time_it(command(&passwords[0], &passwords[1]));
    let mut current = 1;
    let mut rng = Rng(0x5eed_0002);
    let mut states = BTreeMap::new();
    let mut killed = 0;
    let mut rounds = 0;
    while killed < ROUNDS && rounds < MAX_ROUNDS {
        rounds += 1;
        let next = (current + 1).min(MAX_ROUNDS);
        let target = if next == current { 0 } else { next };
        let delay = rng.delay(took);
        killed += usize::from(kill_after(
            command(&passwords[current], &passwords[target]),
            delay,
            &mut took,
        ));
        run(fx.admin_without_passphrase().args(["user", "policy"])).ok();
        let which = slot_and_hash_agree(&fx, OPERATOR, &passwords[current], &passwords[target]);
        *states
            .entry(if which == 0 { "old" } else { "new" })
            .or_default() += 1;
        if which == 1 {
            current = target;
        }
        check_openable(&fx, &fx.admin_password_file(), &fx.passphrase_file, &sealed);
    }
    report("user passwd", &states, killed, rounds);
    assert!(states.len() == 2, "both outcomes should occur: {states:?}");
}

#[test]
fn user_add_and_remove_killed_at_random_points() {
    let fx = Fixture::new();
    let sealed = sealed_file(&fx);
    let password = fx.file("tina-password", b"Tina-Operator-Pass-1\n");
    let add = || {
        let mut cmd = fx.admin_without_passphrase();
        cmd.args([
            "user",
            "add",
            "tina",
            "--role",
            "operator",
            "--new-password-file",
        ])
        .arg(&password);
        cmd
    };
    let remove = || {
        let mut cmd = fx.admin_without_passphrase();
        cmd.args(["user", "remove", "tina"]);
        cmd
    };
    let mut took_add = time_it(add());
    let mut took_remove = time_it(remove());
    let mut exists = false;
    let mut rng = Rng(0x5eed_0003);
    let mut states = BTreeMap::new();
    let mut killed = 0;
    let mut rounds = 0;
    while killed < ROUNDS && rounds < MAX_ROUNDS {
        rounds += 1;
        let (cmd, took) = if exists {
            (remove(), &mut took_remove)
        } else {
            (add(), &mut took_add)
        };
        let delay = rng.delay(*took);
        killed += usize::from(kill_after(cmd, delay, took));
        run(fx.admin_without_passphrase().args(["user", "policy"])).ok();
        // The user and their slot exist together, or neither does.
        let dir = DataDir::open(&fx.data_dir).unwrap();
        let file = dir.read_slots().unwrap();
        let slot = file.slots_of(&file.user("tina")).count();
        let user = run(fx.admin_without_passphrase().args(["user", "show", "tina"])).code == 0;
        assert_eq!(slot, usize::from(user), "slot {slot}, user {user}");
        let state = match (exists, user) {
            (false, false) => "add: old",
            (false, true) => "add: new",
            (true, true) => "remove: old",
            (true, false) => "remove: new",
        };
        *states.entry(state).or_default() += 1;
        exists = user;
        if user {
            run(fx
                .warden_without_passphrase()
                .args(["--as", "tina", "--password-file"])
                .arg(&password)
                .args(["vault", "verify"])
                .arg(&sealed))
            .ok();
        }
        check_openable(&fx, &fx.admin_password_file(), &fx.passphrase_file, &sealed);
    }
    report("user add / remove", &states, killed, rounds);
    assert!(states.len() >= 3, "most outcomes should occur: {states:?}");
}

#[test]
fn keys_recovery_and_service_killed_at_random_points() {
    let fx = Fixture::new();
    let sealed = sealed_file(&fx);
    let mut rng = Rng(0x5eed_0004);
    let mut states = BTreeMap::new();
    let mut killed = 0;
    let recovery = |n: usize| {
        let out = fx.path(&format!("recovery-{n}"));
        let mut cmd = fx.admin_without_passphrase();
        cmd.args(["keys", "recovery", "--out"]).arg(&out);
        (cmd, out)
    };
    let mut took = time_it(recovery(1000).0);
    // The key that opens the recovery slot now.
    let mut valid = fx.path("recovery-1000");
    let mut n = 0;
    while killed < ROUNDS && n < MAX_ROUNDS {
        n += 1;
        let (cmd, out) = recovery(n);
        let delay = rng.delay(took);
        killed += usize::from(kill_after(cmd, delay, &mut took));
        run(fx.admin_without_passphrase().args(["user", "policy"])).ok();
        let opens = |path: &Path| {
            path.exists()
                && run(fx
                    .warden_without_passphrase()
                    .arg("--recovery-key-file")
                    .arg(path)
                    .args(["keys", "check"]))
                .code
                    == 0
        };
        let dir = DataDir::open(&fx.data_dir).unwrap();
        let file = dir.read_slots().unwrap();
        assert_eq!(
            file.slots_of(&warden_core::keyslots::Owner::Recovery)
                .count(),
            1
        );
        match (opens(&valid), opens(&out)) {
            (true, false) => *states.entry("recovery: old").or_default() += 1,
            (false, true) => {
                *states.entry("recovery: new").or_default() += 1;
                valid = out;
            }
            other => panic!("round {n}: old and new recovery keys open {other:?}"),
        }
        check_openable(&fx, &fx.admin_password_file(), &fx.passphrase_file, &sealed);
    }
    report("keys recovery", &states, killed, n);
    assert!(
        states.contains_key("recovery: old") && states.contains_key("recovery: new"),
        "{states:?}"
    );

    let service = |n: usize| {
        let out = fx.path(&format!("shim-key-{n}"));
        let mut cmd = fx.admin_without_passphrase();
        cmd.args(["keys", "service", "add", "shim", "--key-out"])
            .arg(&out);
        (cmd, out)
    };
    let mut took = time_it(service(1000).0);
    let mut states = BTreeMap::new();
    let mut killed = 0;
    let mut valid = fx.path("shim-key-1000");
    let mut n = 0;
    while killed < ROUNDS && n < MAX_ROUNDS {
        n += 1;
        let (cmd, out) = service(n);
        let delay = rng.delay(took);
        killed += usize::from(kill_after(cmd, delay, &mut took));
        run(fx.admin_without_passphrase().args(["user", "policy"])).ok();
        let dir = DataDir::open(&fx.data_dir).unwrap();
        let owner =
            warden_core::keyslots::Owner::Service(warden_core::rbac::ServiceKind::ShimDaemon);
        assert_eq!(dir.read_slots().unwrap().slots_of(&owner).count(), 1);
        let opens = |path: &Path| {
            let Ok(text) = std::fs::read_to_string(path) else {
                return false;
            };
            let key = warden_core::keyslots::ServiceKey::parse(&text).unwrap();
            dir.unlock_owner(&owner, &warden_core::keyslots::SlotSecret::Key(key.key()))
                .is_ok()
        };
        match (opens(&valid), opens(&out)) {
            (true, false) => *states.entry("service: old").or_default() += 1,
            (false, true) => {
                *states.entry("service: new").or_default() += 1;
                valid = out;
            }
            other => panic!("round {n}: old and new service keys open {other:?}"),
        }
        check_openable(&fx, &fx.admin_password_file(), &fx.passphrase_file, &sealed);
    }
    report("keys service add", &states, killed, n);
    assert!(states.len() == 2, "{states:?}");
}
