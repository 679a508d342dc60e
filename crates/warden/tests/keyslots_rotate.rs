//! `warden keys rotate PURPOSE` with data present (issue 12): after each rotation every person
//! and daemon still opens what their role carries with their own password or key (their slots
//! got the new key without their passwords), every file and the database open, TOTP secrets
//! and OTA PSKs sealed under the database key still open, the audit chain verifies on the box
//! and from genesis, and the old key opens nothing that is stored. Then each rotation is killed
//! (SIGKILL) at least 20 times at pseudo-random points: the directory opens every time with
//! the old keys or the new and loses nothing, and running the command again finishes it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{run, Fixture, LegacyFixture, ADMIN, LEGACY_VAULT_PLAINTEXT, OPERATOR};
use warden_core::datadir::DataDir;
use warden_core::keyring::Purpose;
use warden_core::secret::{Key32, Passphrase};
use warden_core::stream::SealedWriter;
use warden_shim::recording::{Direction, RecordWriter, RecordingMetadata};

fn keys_of(fx: &Fixture) -> warden_core::keyslots::KeyRing {
    DataDir::open(&fx.data_dir)
        .unwrap()
        .master_keys(&Passphrase::new(fx.passphrase.clone()))
        .unwrap()
}

fn version(fx: &Fixture, purpose: Purpose) -> (u32, Option<u32>) {
    DataDir::open(&fx.data_dir)
        .unwrap()
        .read_slots()
        .unwrap()
        .key_versions(purpose)
}

/// A session recording sealed (version 2) under the session key of `recordings`.
fn install_recording(fx: &Fixture, recordings: &Key32, name: &str, seed: u8) -> PathBuf {
    let meta = RecordingMetadata::new(
        uuid::Uuid::from_bytes([seed; 16]),
        "tess",
        "pump",
        "shim-1",
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000 + i64::from(seed)),
        [7; 32],
    )
    .unwrap();
    let key = warden_shim::recording::session_key(recordings);
    let mut bytes = Vec::new();
    let sealed = SealedWriter::new(&mut bytes, Purpose::Recordings, &key, 4096).unwrap();
    let mut writer = RecordWriter::new(sealed, &meta).unwrap();
    for i in 0..20u64 {
        writer
            .write_chunk(i * 1000, Direction::DeviceToTech, &vec![b'a' + seed; 900])
            .unwrap();
    }
    writer.finish(30_000).unwrap().finish().unwrap();
    let path = fx.data_dir.join("sessions").join(name);
    support::write_private(&path, &bytes);
    path
}

/// The operator's vault file opens to `expected`.
fn vault_opens(fx: &Fixture, sealed: &Path, expected: &[u8]) {
    let out = run(fx
        .warden_without_passphrase()
        .args(["--as", OPERATOR, "--password-file"])
        .arg(fx.path("olga-password"))
        .args(["vault", "open"])
        .arg(sealed)
        .arg("-"));
    out.ok();
    assert!(out.stdout == expected, "{} does not open", sealed.display());
}

fn sessions_verify(fx: &Fixture, expected: usize) {
    let out = run(fx
        .warden_without_passphrase()
        .args(["--as", "audra", "--password-file"])
        .arg(fx.path("audra-password"))
        .args(["session", "list", "--json"]));
    out.ok();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = doc["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), expected);
    for s in sessions {
        assert_eq!(s["status"], "complete", "{s}");
    }
}

/// The current TOTP code of the administrator's enrollment.
fn code(uri: &warden_core::totp::KeyUri) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    uri.params()
        .code_at(uri.secret(), now)
        .expose_secret()
        .to_string()
}

/// Verifies: V27
#[test]
fn rotating_each_purpose_with_data_present_keeps_everything_readable() {
    let fx = Fixture::new();
    let before = keys_of(&fx);
    // Data under every key: a vault file, recordings, a sealed configuration, an OTA PSK and a
    // TOTP secret (both sealed under the database key), the audit chain.
    fx.seal("video", b"treatment video\n");
    let vault = fx.path("video.sealed");
    let recordings: Vec<PathBuf> = (0..3)
        .map(|i| {
            install_recording(
                &fx,
                before.get(Purpose::Recordings),
                &format!("r{i}.session"),
                i,
            )
        })
        .collect();
    let config = fx.file("c.yaml", b"a: 1\n");
    let token = fx.path("c.sealed");
    run(fx
        .admin_without_passphrase()
        .args(["config", "seal"])
        .arg(&config)
        .arg("-o")
        .arg(&token))
    .ok();
    run(fx.admin_without_passphrase().args([
        "ota",
        "keys",
        "add",
        "--identity",
        "card-1",
        "--key",
        "00112233445566778899aabbccddeeff",
    ]))
    .ok();
    let out = run(fx.admin_without_passphrase().args([
        "user",
        "add",
        "tess",
        "--role",
        "technician",
        "--json",
    ]));
    out.ok();
    let enrollment: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let uri =
        warden_core::totp::KeyUri::parse(enrollment["totp"]["uri"].as_str().unwrap()).unwrap();
    let rotate = |purpose: &str, extra: &[&str]| {
        let out = run(fx
            .admin_without_passphrase()
            .args(["keys", "rotate", purpose])
            .args(extra));
        out.ok();
        out
    };
    let session_bytes: Vec<Vec<u8>> = recordings
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();

    // database
    rotate("database", &[]).stderr_has(&["`database` key rotated", "version 1 -> 2"]);
    assert_eq!(version(&fx, Purpose::Database), (2, None));
    let after = keys_of(&fx);
    let db = fx.data_dir.join(warden_store::DB_FILE);
    assert!(matches!(
        warden_store::Database::open(&db, before.get(Purpose::Database)),
        Err(warden_store::StoreError::WrongKey(_))
    ));
    drop(warden_store::Database::open(&db, after.get(Purpose::Database)).unwrap());
    // The technician's TOTP secret opens under the new key: a code is accepted (as the shim
    // daemon checks it), and the OTA PSK opens too.
    {
        let dir = DataDir::open(&fx.data_dir).unwrap();
        let (mut store, _) = warden_store::keys::open_store(&dir, after.clone()).unwrap();
        let outcome = store
            .identity
            .authenticate_technician(
                &mut store.db,
                "tess",
                code(&uri).as_bytes(),
                warden_store::identity::UnixMs::now(),
                &warden_store::identity::PortId::parse("shim-1").unwrap(),
            )
            .unwrap();
        assert!(
            matches!(
                outcome,
                warden_store::identity::AuthOutcome::Accepted { .. }
            ),
            "{outcome:?}"
        );
        let psks =
            warden_store::ota::load_keys(store.db.conn(), after.get(Purpose::Database)).unwrap();
        assert_eq!(psks.len(), 1);
    }
    vault_opens(&fx, &vault, b"treatment video\n");

    // audit: a new epoch under the new key; verifies on the box and from genesis.
    rotate("audit", &[]);
    assert_eq!(version(&fx, Purpose::Audit), (2, None));
    let out = run(fx
        .warden_without_passphrase()
        .args(["--as", "audra", "--password-file"])
        .arg(fx.path("audra-password"))
        .arg("--auditor-passphrase-file")
        .arg(&fx.auditor_passphrase_file)
        .args(["audit", "verify", "--auditor-key"])
        .arg(fx.auditor_key()));
    out.ok();

    // recordings, by re-wrapping: only the headers change.
    let out = rotate("recordings", &["--file", vault.to_str().unwrap()]);
    out.stderr_has(&["4 re-wrapped", "0 re-encrypted"]);
    for (path, old) in recordings.iter().zip(&session_bytes) {
        let new = std::fs::read(path).unwrap();
        assert_ne!(new[..107], old[..107]);
        assert_eq!(new[107..], old[107..], "segments untouched by a re-wrap");
    }
    vault_opens(&fx, &vault, b"treatment video\n");
    sessions_verify(&fx, 3);
    // ... and by re-encrypting: every byte changes, the content does not.
    rotate(
        "recordings",
        &["--reencrypt", "--file", vault.to_str().unwrap()],
    )
    .stderr_has(&["0 re-wrapped", "4 re-encrypted"]);
    assert_eq!(version(&fx, Purpose::Recordings), (3, None));
    for (path, old) in recordings.iter().zip(&session_bytes) {
        assert_ne!(std::fs::read(path).unwrap()[107..], old[107..]);
    }
    vault_opens(&fx, &vault, b"treatment video\n");
    sessions_verify(&fx, 3);
    // The old recordings key opens none of them.
    let old = before.get(Purpose::Recordings);
    assert!(warden_core::stream::SealedReader::new(
        std::fs::File::open(&vault).unwrap(),
        Purpose::Recordings,
        old
    )
    .is_err());

    // config
    rotate("config", &["--file", token.to_str().unwrap()]).stderr_has(&["1 re-sealed"]);
    let out = run(fx
        .admin_without_passphrase()
        .args(["config", "open"])
        .arg(&token));
    out.ok();
    assert_eq!(out.stdout, b"a: 1\n");

    // signing
    rotate("signing", &[]);
    assert_eq!(version(&fx, Purpose::Signing), (2, None));

    // Every person's slot now carries the new versions, unwrapped with their own password.
    let file = DataDir::open(&fx.data_dir).unwrap().read_slots().unwrap();
    for slot in &file.slots {
        for w in &slot.wraps {
            assert_eq!(w.version, file.key_versions(w.purpose).0, "{}", slot.owner);
        }
    }
    let _ = ADMIN;
}

/// A directory converted from format 1 holds version-1 streams: rotating `recordings`
/// re-encrypts them (they cannot be re-wrapped), and they open afterwards.
#[test]
fn version_1_streams_of_a_converted_directory_are_reencrypted() {
    let fx = LegacyFixture::new();
    let vault = fx.data_dir.join("legacy-vault.sealed");
    let session = fx
        .data_dir
        .join("sessions/2026-04-15T09-22-03.laser-7-tess.session");
    assert_eq!(std::fs::read(&vault).unwrap()[8], 1);
    // Converted, the administrator's slot made, then the rotation.
    run(fx
        .signed_in(&mut fx.warden(), ADMIN)
        .args(["keys", "rotate", "recordings", "--file"])
        .arg(&vault))
    .ok()
    .stderr_has(&["0 re-wrapped", "2 re-encrypted"]);
    for path in [&vault, &session] {
        assert_eq!(std::fs::read(path).unwrap()[8], 2, "{}", path.display());
    }
    let out = run(fx
        .signed_in(&mut fx.warden(), "olga")
        .args(["vault", "open"])
        .arg(&vault)
        .arg("-"));
    out.ok();
    assert_eq!(out.stdout, LEGACY_VAULT_PLAINTEXT);
    let out = run(fx
        .signed_in(&mut fx.warden(), "audra")
        .args(["session", "list", "--json"]));
    out.ok();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["sessions"][0]["status"], "complete");
}

// ------------------------------------------------------------------------------ SIGKILL

const KILLS: usize = 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Half the rounds anywhere in the run, half in its last 15 % and a little beyond.
    fn delay(&mut self, took: Duration) -> Duration {
        let micros = took.as_micros().max(4) as u64;
        if self.next() % 2 == 0 {
            Duration::from_micros(self.next() % micros)
        } else {
            Duration::from_micros(micros * 17 / 20 + self.next() % (micros * 2 / 5))
        }
    }
}

/// SIGKILLs `cmd` after `delay`; true when killed. Adapts `took` as in keyslots_crash.rs.
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
    let killed = child.wait().unwrap().code().is_none();
    if killed && delay >= *took * 17 / 20 {
        *took = *took * 11 / 10;
    }
    killed
}

struct Data {
    vault: PathBuf,
    video: Vec<u8>,
    token: PathBuf,
    recordings: usize,
}

/// Everything a rotation must not lose: a 2 MiB vault file, eight recordings, a sealed
/// configuration, an OTA PSK and a technician's TOTP secret.
fn data(fx: &Fixture) -> Data {
    let video = support::pseudo_random(2 << 20, 12);
    fx.seal("video", &video);
    let keys = keys_of(fx);
    for i in 0..8u8 {
        install_recording(
            fx,
            keys.get(Purpose::Recordings),
            &format!("r{i}.session"),
            i,
        );
    }
    let config = fx.file("c.yaml", b"a: 1\n");
    let token = fx.path("c.sealed");
    run(fx
        .admin_without_passphrase()
        .args(["config", "seal"])
        .arg(&config)
        .arg("-o")
        .arg(&token))
    .ok();
    run(fx.admin_without_passphrase().args([
        "ota",
        "keys",
        "add",
        "--identity",
        "card-1",
        "--key",
        "00112233445566778899aabbccddeeff",
    ]))
    .ok();
    run(fx.admin_without_passphrase().args([
        "user",
        "add",
        "tess",
        "--role",
        "technician",
        "--no-qr",
    ]))
    .ok();
    Data {
        vault: fx.path("video.sealed"),
        video,
        token,
        recordings: 8,
    }
}

/// The directory opens (with whichever keys the kill left), nothing is lost, and what is
/// sealed under the database key opens under the current one.
fn check_complete(fx: &Fixture, data: &Data) {
    run(fx.admin_without_passphrase().args(["audit", "verify"])).ok();
    vault_opens(fx, &data.vault, &data.video);
    sessions_verify(fx, data.recordings);
    let out = run(fx
        .admin_without_passphrase()
        .args(["config", "open"])
        .arg(&data.token));
    out.ok();
    assert_eq!(out.stdout, b"a: 1\n");
    let dir = DataDir::open(&fx.data_dir).unwrap();
    let (store, ring) = warden_store::keys::open_store(&dir, keys_of(fx)).unwrap();
    assert_eq!(store.identity.check_totp_secrets(&store.db).unwrap(), 1);
    let psks = warden_store::ota::load_keys(store.db.conn(), ring.get(Purpose::Database)).unwrap();
    assert_eq!(psks.len(), 1);
}

fn rotation_killed(purpose: Purpose, extra: &[&str], seed: u64) {
    let fx = Fixture::new();
    let data = data(&fx);
    let mut args: Vec<String> = vec!["keys".into(), "rotate".into(), purpose.name().into()];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    match purpose {
        Purpose::Recordings => {
            args.extend(["--file".into(), data.vault.display().to_string()]);
        }
        Purpose::Config => {
            args.extend(["--file".into(), data.token.display().to_string()]);
        }
        _ => {}
    }
    let command = || {
        let mut cmd = fx.admin_without_passphrase();
        cmd.args(&args);
        cmd
    };
    let started = Instant::now();
    run(&mut command()).ok();
    let mut took = started.elapsed();
    let mut rng = Rng(seed);
    let (mut killed, mut rounds) = (0, 0);
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    while killed < KILLS && rounds < 3 * KILLS {
        rounds += 1;
        let (before, _) = version(&fx, purpose);
        let delay = rng.delay(took);
        killed += usize::from(kill_after(command(), delay, &mut took));
        // Any open settles what can be settled; a file rotation may stay under way.
        run(fx.admin_without_passphrase().args(["user", "policy"])).ok();
        let (now, next) = version(&fx, purpose);
        let state = match (now == before, next.is_some()) {
            (true, false) => "old",
            (false, false) => "new",
            (true, true) => "under way (resumable)",
            (false, true) => unreachable!("a new version and a next one"),
        };
        if matches!(purpose, Purpose::Database | Purpose::Audit) {
            assert!(
                next.is_none(),
                "a {purpose} rotation was not settled by the next open"
            );
        }
        *states.entry(state.to_owned()).or_default() += 1;
        check_complete(&fx, &data);
    }
    // Whatever is under way finishes when run again.
    run(&mut command()).ok();
    assert_eq!(version(&fx, purpose).1, None);
    check_complete(&fx, &data);
    eprintln!(
        "keys rotate {purpose} {extra:?}: {killed} of {rounds} runs killed; states: {states:?}"
    );
    assert!(killed >= KILLS, "only {killed} runs were killed");
    assert!(states.len() >= 2, "{states:?}");
}

#[test]
fn rotating_the_database_key_killed_at_random_points() {
    rotation_killed(Purpose::Database, &[], 0xdb01);
}

#[test]
fn rotating_the_audit_key_killed_at_random_points() {
    rotation_killed(Purpose::Audit, &[], 0xa0d1);
}

#[test]
fn rotating_the_recordings_key_by_rewrapping_killed_at_random_points() {
    rotation_killed(Purpose::Recordings, &[], 0x4ec0);
}

#[test]
fn rotating_the_recordings_key_by_reencrypting_killed_at_random_points() {
    rotation_killed(Purpose::Recordings, &["--reencrypt"], 0x4ec1);
}

#[test]
fn rotating_the_config_key_killed_at_random_points() {
    rotation_killed(Purpose::Config, &[], 0xc0f1);
}

/// A `--reencrypt` rotation that stopped part-way (here a named file is not there) and is
/// resumed without the flag keeps re-encrypting: a rotation asked for against a compromise of
/// the old key never ends as a re-wrap, which would keep each file's data key.
#[test]
fn a_resumed_reencrypting_rotation_keeps_reencrypting() {
    let fx = Fixture::new();
    let data = data(&fx);
    let missing = fx.path("missing.sealed");
    let rotate = |args: &[&std::ffi::OsStr]| {
        let mut cmd = fx.admin_without_passphrase();
        cmd.args(["keys", "rotate", "recordings"]).args(args);
        run(&mut cmd)
    };
    let before = std::fs::read(&data.vault).unwrap();
    let stopped = rotate(&[
        "--reencrypt".as_ref(),
        "--file".as_ref(),
        missing.as_os_str(),
        "--file".as_ref(),
        data.vault.as_os_str(),
    ]);
    assert_ne!(stopped.code, 0, "{}", stopped.stderr);
    assert!(version(&fx, Purpose::Recordings).1.is_some(), "under way");
    rotate(&["--file".as_ref(), data.vault.as_os_str()])
        .ok()
        .stderr_has(&["resumed", "0 re-wrapped"]);
    assert_eq!(version(&fx, Purpose::Recordings).1, None);
    let after = std::fs::read(&data.vault).unwrap();
    assert_ne!(after[107..], before[107..], "re-encrypted, not re-wrapped");
    vault_opens(&fx, &data.vault, &data.video);
}

/// Found by outside testing: a rotation asked to re-key named files, stopped part-way and run
/// again without naming them, finished and left them under the old key, which was gone. The
/// files a rotation is asked to re-key are kept with it until it settles, and a resumed run
/// re-keys them whatever it names.
#[test]
fn a_resumed_rotation_re_keys_the_files_the_first_run_was_given() {
    let fx = Fixture::new();
    let data = data(&fx);
    let later = fx.path("later.sealed");
    let rotate = |args: &[&std::ffi::OsStr]| {
        let mut cmd = fx.admin_without_passphrase();
        cmd.args(["keys", "rotate", "recordings"]).args(args);
        run(&mut cmd)
    };
    // `later` is not there yet: the run stops at it, before the vault file.
    let stopped = rotate(&[
        "--reencrypt".as_ref(),
        "--file".as_ref(),
        later.as_os_str(),
        "--file".as_ref(),
        data.vault.as_os_str(),
    ]);
    assert_ne!(stopped.code, 0, "{}", stopped.stderr);
    assert!(fx.path("data/state/rotation.files").exists());
    std::fs::copy(&data.vault, &later).unwrap();
    rotate(&[]).ok().stderr_has(&["resumed", "2 re-encrypted"]);
    assert_eq!(version(&fx, Purpose::Recordings).1, None);
    assert!(!fx.path("data/state/rotation.files").exists());
    vault_opens(&fx, &data.vault, &data.video);
    vault_opens(&fx, &later, &data.video);
}

/// Found by outside testing: a run killed after it wrote the list of its files but before the
/// slot file named its rotation had begun nothing, and the run after it, without `--file`,
/// left those files under the old key. Such a list's files join the next rotation of the same
/// purpose.
#[test]
fn files_given_to_a_run_killed_before_it_began_join_the_next_rotation() {
    let fx = Fixture::new();
    let data = data(&fx);
    std::fs::write(
        fx.path("data/state/rotation.files"),
        serde_json::json!({
            "txid": "00112233445566778899aabbccddeeff",
            "purpose": "recordings",
            "files": [std::path::absolute(&data.vault).unwrap()],
        })
        .to_string(),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        fx.path("data/state/rotation.files"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut cmd = fx.admin_without_passphrase();
    cmd.args(["keys", "rotate", "recordings"]);
    run(&mut cmd).ok();
    assert_eq!(version(&fx, Purpose::Recordings).1, None);
    assert!(!fx.path("data/state/rotation.files").exists());
    vault_opens(&fx, &data.vault, &data.video);
}
