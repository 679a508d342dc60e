//! `warden session list | play | export` end to end: recordings are built with the library
//! (RecordWriter over SealedWriter under the fixture's `recordings` key, sealing a segment after
//! every chunk as the shim's recorder does), put into DATA_DIR/sessions whole, cut short
//! (the final segment never written; a file truncated inside a frame; an empty file) or damaged
//! (a byte flipped, another key), and read back through the binary.
//!
//! The asciicast test replays the export with the real `asciinema play` (Debian: `apt-get install
//! asciinema`); when it is missing it prints a SKIP line, except under `CI=true`, where it fails.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{run, split_frames, Fixture, FRAME_HEADER_LEN};
use time::macros::datetime;
use time::OffsetDateTime;
use uuid::Uuid;
use warden_core::keyring::Purpose;
use warden_core::secret::Key32;
use warden_core::stream::SealedWriter;
use warden_shim::recording::{Direction, RecordWriter, RecordingMetadata};

const FAST: &str = support::FAST_IDENTITY_POLICY;
const AUDITOR_PASSWORD: &str = "Auditor-Reads-Trails-1";
const OPERATOR_PASSWORD: &str = "Operator-Runs-Shims-22";

/// Sealed-stream segment size for test recordings: small, so there are several segments.
const SEGMENT: u32 = 1024;

/// Device output with what a sanitizer must keep (colours, CR LF) and remove (a title change,
/// an OSC 52 clipboard write).
fn session_chunks() -> Vec<(u64, Direction, Vec<u8>)> {
    vec![
        (0, Direction::Event, b"auth ok tech-001".to_vec()),
        (
            100_000,
            Direction::DeviceToTech,
            b"\x1b[1mPUMP-12>\x1b[0m ".to_vec(),
        ),
        (400_000, Direction::TechToDevice, b"status\r".to_vec()),
        (
            410_000,
            Direction::DeviceToTech,
            b"\x1b]0;owned\x07status ok\r\n".to_vec(),
        ),
        (
            2_000_000,
            Direction::DeviceToTech,
            b"\x1b]52;c;cm0gLXJmIC8K\x07rate: 5 ml/h\r\n".to_vec(),
        ),
        (2_500_000, Direction::Event, b"session close".to_vec()),
    ]
}

/// What `play` shows of [`session_chunks`]: the device output, sanitized, then the attribute
/// reset the sanitizer adds after colours.
const SANITIZED: &[u8] = b"\x1b[1mPUMP-12>\x1b[0m status ok\r\nrate: 5 ml/h\r\n\x1b[0m";

fn device_output(chunks: &[(u64, Direction, Vec<u8>)]) -> Vec<u8> {
    chunks
        .iter()
        .filter(|(_, d, _)| *d == Direction::DeviceToTech)
        .flat_map(|(_, _, data)| data.clone())
        .collect()
}

fn metadata(device: &str, technician: &str, started: OffsetDateTime) -> RecordingMetadata {
    RecordingMetadata::new(
        Uuid::from_bytes(warden_core::rand::array()),
        technician,
        device,
        "shim-a",
        started,
        [7; 32],
    )
    .unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// End record and final segment.
    Closed,
    /// Power lost: every chunk sealed, but no end record and no final segment.
    Crashed,
}

/// Writes a recording the way the shim's recorder does (a segment sealed after the metadata and
/// after every chunk) and returns the file's bytes.
fn recording(
    key: &Key32,
    meta: &RecordingMetadata,
    chunks: &[(u64, Direction, Vec<u8>)],
    ending: Ending,
) -> Vec<u8> {
    let mut file = Vec::new();
    let sealed = SealedWriter::new(&mut file, Purpose::Recordings, key, SEGMENT).unwrap();
    let mut writer = RecordWriter::new(sealed, meta).unwrap();
    writer.get_mut().seal_segment().unwrap();
    for (t, direction, data) in chunks {
        writer.write_chunk(*t, *direction, data).unwrap();
        writer.get_mut().seal_segment().unwrap();
    }
    match ending {
        Ending::Closed => {
            let end = chunks.last().map_or(0, |c| c.0) + 100_000;
            writer.finish(end).unwrap().finish().unwrap();
        }
        Ending::Crashed => drop(writer.into_inner().into_inner()),
    }
    file
}

/// The seed's file name: `2026-04-15T09-22-03.<device>-<technician>.session`.
fn session_name(meta: &RecordingMetadata) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]-[minute]-[second]");
    format!(
        "{}.{}-{}.session",
        meta.started_at().format(&format).unwrap(),
        meta.device_name(),
        meta.technician_id()
    )
}

/// Puts `bytes` into DATA_DIR/sessions/`name` (0600) and returns the path.
fn install(fx: &Fixture, name: &str, bytes: &[u8]) -> PathBuf {
    let path = fx.data_dir.join("sessions").join(name);
    support::write_private(&path, bytes);
    path
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(openssl::sha::sha256(&std::fs::read(path).unwrap()))
}

/// Flips one ciphertext byte of sealed segment `segment`.
fn flip_segment_byte(file: &mut [u8], segment: usize) {
    let (header, frames) = split_frames(file);
    let offset =
        header.len() + frames[..segment].iter().map(Vec::len).sum::<usize>() + FRAME_HEADER_LEN + 1;
    file[offset] ^= 0x40;
}

/// A fixture with an auditor (`aud`) and an operator (`olga`) besides the administrator.
struct Env {
    fx: Fixture,
    auditor_password: PathBuf,
    operator_password: PathBuf,
}

impl Env {
    fn new() -> Self {
        let fx = Fixture::with_identity_policy(FAST);
        let auditor_password = fx.file(
            "auditor-password",
            format!("{AUDITOR_PASSWORD}\n").as_bytes(),
        );
        let operator_password = fx.file(
            "operator-password",
            format!("{OPERATOR_PASSWORD}\n").as_bytes(),
        );
        for (user, role, file) in [
            ("aud", "auditor", &auditor_password),
            ("olga", "operator", &operator_password),
        ] {
            let mut cmd = fx.admin();
            cmd.args(["user", "add", user, "--role", role, "--new-password-file"])
                .arg(file);
            run(&mut cmd).ok();
        }
        Self {
            fx,
            auditor_password,
            operator_password,
        }
    }

    /// The key session files are sealed under (derived from the recordings purpose key).
    fn key(&self) -> Key32 {
        warden_shim::recording::session_key(&self.fx.key(Purpose::Recordings))
    }

    /// `warden session play FILE --speed 1000 ARGS` as the administrator.
    fn play(&self, file: &str, args: &[&str]) -> Command {
        let mut cmd = self.fx.admin();
        cmd.args(["session", "play", file, "--speed", "1000"])
            .args(args);
        cmd
    }

    /// `warden session export FILE ARGS` as the auditor.
    fn export(&self, file: &str, args: &[&str]) -> Command {
        let mut cmd = self.fx.admin();
        cmd.args(["session", "export", file])
            .args(args)
            .args(["--as", "aud", "--password-file"])
            .arg(&self.auditor_password);
        cmd
    }

    /// The audit events with this action, newest last (details parsed).
    fn audit_events(&self, action: &str) -> Vec<serde_json::Value> {
        let out = run(self
            .fx
            .admin()
            .args(["audit", "tail", "--json", "-n", "1000"]));
        out.ok();
        out.stdout_text()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|row| row["action"] == action)
            .map(|mut row| {
                let details: serde_json::Value =
                    serde_json::from_str(row["details"].as_str().unwrap()).unwrap();
                row["details"] = details;
                row
            })
            .collect()
    }

    fn list_json(&self) -> Vec<serde_json::Value> {
        let out = run(self.fx.admin().args(["session", "list", "--json"]));
        out.ok();
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        value["sessions"].as_array().unwrap().clone()
    }
}

/// One of each kind of file; returns their names.
struct Zoo {
    complete: String,
    crashed: String,
    truncated: String,
    modified: String,
    wrong_key: String,
    empty: String,
}

fn zoo(env: &Env) -> Zoo {
    let key = env.key();
    let chunks = session_chunks();
    let at =
        |h: i64, m: i64| datetime!(2026-04-15 00:00:00 UTC) + time::Duration::minutes(h * 60 + m);

    let meta = metadata("empump-12", "tech-001", at(9, 22));
    let complete = session_name(&meta);
    install(
        &env.fx,
        &complete,
        &recording(&key, &meta, &chunks, Ending::Closed),
    );

    let meta = metadata("empump-12", "tech-002", at(10, 0));
    let crashed = session_name(&meta);
    install(
        &env.fx,
        &crashed,
        &recording(&key, &meta, &chunks, Ending::Crashed),
    );

    // The file stops inside the last frame: a segment half written when the power went.
    let meta = metadata("ventilator-3", "tech-001", at(8, 5));
    let truncated = session_name(&meta);
    let mut bytes = recording(&key, &meta, &chunks, Ending::Crashed);
    bytes.truncate(bytes.len() - 10);
    install(&env.fx, &truncated, &bytes);

    let meta = metadata("infusion-7", "tech-003", at(11, 30));
    let modified = session_name(&meta);
    let mut bytes = recording(&key, &meta, &chunks, Ending::Closed);
    flip_segment_byte(&mut bytes, 2);
    install(&env.fx, &modified, &bytes);

    let meta = metadata("monitor-1", "tech-004", at(12, 0));
    let wrong_key = session_name(&meta);
    install(
        &env.fx,
        &wrong_key,
        &recording(&Key32::random(), &meta, &chunks, Ending::Closed),
    );

    // The shim created the file and lost power before writing its header.
    let empty = "2026-04-15T07-00-00.monitor-1-tech-005.session".to_string();
    install(&env.fx, &empty, b"");

    Zoo {
        complete,
        crashed,
        truncated,
        modified,
        wrong_key,
        empty,
    }
}

/// Verifies: S6
#[test]
fn list_shows_every_recording_sorted_by_start_with_its_status() {
    let env = Env::new();
    let zoo = zoo(&env);

    let sessions = env.list_json();
    let files: Vec<&str> = sessions
        .iter()
        .map(|s| s["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            &zoo.empty,
            &zoo.truncated,
            &zoo.complete,
            &zoo.crashed,
            &zoo.modified,
            &zoo.wrong_key
        ],
        "sorted by start"
    );
    let by_file = |name: &str| sessions.iter().find(|s| s["file"] == name).unwrap().clone();

    let complete = by_file(&zoo.complete);
    assert_eq!(complete["status"], "complete");
    assert!(complete["problem"].is_null());
    assert_eq!(complete["device"], "empump-12");
    assert_eq!(complete["technician"], "tech-001");
    assert_eq!(complete["shim_id"], "shim-a");
    assert_eq!(complete["started_at"], "2026-04-15T09:22:00.000000Z");
    assert_eq!(complete["duration_us"], 2_600_000);
    assert_eq!(complete["chunks"], 6);
    assert_eq!(complete["events"], 2);
    assert_eq!(
        complete["output_bytes"],
        device_output(&session_chunks()).len()
    );
    assert_eq!(complete["input_bytes"], b"status\r".len());
    let path = env.fx.data_dir.join("sessions").join(&zoo.complete);
    assert_eq!(complete["sha256"], sha256_hex(&path));
    assert_eq!(
        complete["file_bytes"],
        std::fs::metadata(&path).unwrap().len()
    );

    // Cut short: every chunk that was sealed is there; the duration runs to the last one.
    let crashed = by_file(&zoo.crashed);
    assert_eq!(crashed["status"], "cut_short");
    assert_eq!(crashed["chunks"], 6);
    assert_eq!(crashed["duration_us"], 2_500_000);
    let problem = crashed["problem"].as_str().unwrap();
    assert!(
        problem.contains("final sealed segment is missing"),
        "{problem}"
    );
    assert!(problem.contains("records stop after record 6"), "{problem}");

    // Truncated inside the last frame: that chunk is lost, the bytes are counted as unverified.
    let truncated = by_file(&zoo.truncated);
    assert_eq!(truncated["status"], "cut_short");
    assert_eq!(truncated["chunks"], 5);
    let problem = truncated["problem"].as_str().unwrap();
    assert!(problem.contains("could not be verified"), "{problem}");

    let modified = by_file(&zoo.modified);
    assert_eq!(modified["status"], "damaged");
    assert_eq!(
        modified["problem"],
        "segment 2 was modified (authentication failed); \
         the metadata and 1 chunk before the damage verify"
    );
    assert_eq!(
        modified["device"], "infusion-7",
        "the metadata still verifies"
    );

    let wrong_key = by_file(&zoo.wrong_key);
    assert_eq!(wrong_key["status"], "damaged");
    assert!(wrong_key["problem"].as_str().unwrap().contains("wrong key"));
    assert!(wrong_key["device"].is_null());

    let empty = by_file(&zoo.empty);
    assert_eq!(empty["status"], "cut_short");
    assert!(empty["problem"]
        .as_str()
        .unwrap()
        .contains("nothing was recorded"));

    // The table: one row per recording in the same order, within a terminal's width.
    let out = run(env.fx.admin().args(["session", "list"]));
    out.ok();
    let text = out.stdout_text();
    let mut last = 0;
    for name in &files {
        let at = text
            .find(*name)
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(at > last, "{name} out of order:\n{text}");
        last = at;
    }
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
    assert!(text.contains("segment 2 was modified"), "{text}");
    assert!(
        text.contains("6 recordings: 1 complete, 3 cut short, 2 damaged"),
        "{text}"
    );
    assert!(
        text.contains("2026-04-15 09:22:00   0:00:02  empump-12"),
        "{text}"
    );
}

/// A temporary a killed key rotation left beside a recording (`.NAME.<12 hex>.tmp`, a
/// complete copy under the new key until the rotation runs again) is not a second recording.
#[test]
fn hidden_temporaries_are_not_listed() {
    let env = Env::new();
    let zoo = zoo(&env);
    let sessions = env.fx.data_dir.join("sessions");
    let before = env.list_json().len();
    std::fs::copy(
        sessions.join(&zoo.complete),
        sessions.join(format!(".{}.0123456789ab.tmp", zoo.complete)),
    )
    .unwrap();
    let listed = env.list_json();
    assert_eq!(listed.len(), before, "{listed:?}");
    assert!(listed
        .iter()
        .all(|s| !s["file"].as_str().unwrap().starts_with('.')));
}

/// Listing needs the sign-in only (issue 12: the person's key slot opens the keys; the master
/// passphrase is not read, right or wrong).
#[test]
fn list_needs_the_sign_in_only() {
    let fx = Fixture::new();
    let out = run(fx.admin_without_passphrase().args(["session", "list"]));
    out.ok();
    assert!(out.stdout_text().contains("no recordings"));
    let wrong = fx.file("wrong", b"not the passphrase of this directory\n");
    run(fx
        .admin_without_passphrase()
        .arg("--passphrase-file")
        .arg(&wrong)
        .args(["session", "list"]))
    .ok();
    let wrong_password = fx.file("wrong-password", b"Not-The-Admin-Password-1\n");
    run(fx
        .warden_without_passphrase()
        .args(["--as", "admin", "--password-file"])
        .arg(&wrong_password)
        .args(["session", "list"]))
    .expect_code(5);
}

/// Verifies: V20
#[test]
fn play_shows_the_device_output_sanitized_and_is_audited() {
    let env = Env::new();
    let key = env.key();
    let chunks = session_chunks();
    let meta = metadata("empump-12", "tech-001", datetime!(2026-04-15 09:22:03 UTC));
    let name = session_name(&meta);
    let path = install(
        &env.fx,
        &name,
        &recording(&key, &meta, &chunks, Ending::Closed),
    );

    // A bare file name is looked up in DATA_DIR/sessions.
    let out = run(&mut env.play(&name, &[]));
    out.ok();
    assert_eq!(out.stdout, SANITIZED, "{:?}", out.stdout_text());
    out.stderr_has(&[
        &meta.session_id().hyphenated().to_string(),
        "tech-001 on empump-12 via shim-a",
        "2026-04-15 09:22:03 UTC",
    ]);
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "one header line:\n{}",
        out.stderr
    );

    // --raw: the recorded bytes exactly; --include-input adds what was typed.
    let out = run(&mut env.play(path.to_str().unwrap(), &["--raw"]));
    out.ok();
    assert_eq!(out.stdout, device_output(&chunks));
    let out = run(&mut env.play(&name, &["--raw", "--include-input"]));
    out.ok();
    assert!(out.stdout_text().contains("PUMP-12>\x1b[0m status\r"));

    let events = env.audit_events("recording.play");
    assert_eq!(events.len(), 3);
    let event = &events[0];
    assert_eq!(event["actor"], "admin");
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["subject"], path.display().to_string());
    assert_eq!(event["details"]["sha256"], sha256_hex(&path));
    assert_eq!(
        event["details"]["session_id"],
        meta.session_id().hyphenated().to_string()
    );
    assert_eq!(event["details"]["status"], "complete");
    assert_eq!(event["details"]["sanitized"], true);
    assert_eq!(events[1]["details"]["sanitized"], false);

    // An operator may not replay recordings; the refusal is audited by the sign-in.
    let mut cmd = env.fx.admin();
    cmd.args(["session", "play", &name, "--as", "olga", "--password-file"])
        .arg(&env.operator_password);
    run(&mut cmd).expect_code(5).stderr_has(&["recording.play"]);
}

#[test]
fn play_keeps_the_recorded_timing_with_idle_gaps_capped() {
    let env = Env::new();
    let chunks = vec![
        (0, Direction::DeviceToTech, b"before ".to_vec()),
        (
            3_600_000_000,
            Direction::DeviceToTech,
            b"after an hour".to_vec(),
        ),
    ];
    let meta = metadata("empump-12", "tech-001", datetime!(2026-04-15 09:22:03 UTC));
    let name = session_name(&meta);
    install(
        &env.fx,
        &name,
        &recording(&env.key(), &meta, &chunks, Ending::Closed),
    );
    // Speed 1, an hour-long pause capped at 0.3 s: the replay takes about 0.3 s.
    let mut cmd = env.fx.admin();
    cmd.args(["session", "play", &name, "--skip-idle", "0.3"]);
    let started = Instant::now();
    let out = run(&mut cmd);
    let took = started.elapsed();
    out.ok();
    assert_eq!(out.stdout, b"before after an hour");
    assert!(took >= Duration::from_millis(300), "{took:?}: did not wait");
    assert!(
        took < Duration::from_secs(30),
        "{took:?}: the pause was not capped"
    );
    out.stderr_has(&["1:00:00", "pauses capped at 0.3s"]);
}

#[test]
fn play_stops_cleanly_on_ctrl_c() {
    let env = Env::new();
    let chunks = vec![
        (0, Direction::DeviceToTech, b"\x1b[31mfirst".to_vec()),
        (600_000_000, Direction::DeviceToTech, b"second".to_vec()),
    ];
    let meta = metadata("empump-12", "tech-001", datetime!(2026-04-15 09:22:03 UTC));
    let name = session_name(&meta);
    install(
        &env.fx,
        &name,
        &recording(&env.key(), &meta, &chunks, Ending::Closed),
    );
    let mut cmd = env.fx.admin();
    cmd.args(["session", "play", &name]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first output: the Ctrl-C handler is in place by then.
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.ends_with(b"first") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "play ended early: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let started = Instant::now();
    stdout.read_to_end(&mut seen).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(130), "{:?}", out.status);
    // The colour the recording set is reset; the rest was not played.
    assert_eq!(seen, b"\x1b[31mfirst\x1b[0m");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("replay stopped by Ctrl-C at 0:00:00 of 0:10:00"),
        "{stderr}"
    );
    assert!(!stderr.contains("error:"), "{stderr}");
}

#[test]
fn play_and_export_of_damaged_and_cut_short_recordings() {
    let env = Env::new();
    let zoo = zoo(&env);
    let chunks = session_chunks();

    // Cut short: the verified part plays, with a warning.
    let out = run(&mut env.play(&zoo.crashed, &[]));
    out.ok();
    assert_eq!(out.stdout, SANITIZED);
    out.stderr_has(&[
        "cut short",
        "6 chunks that verify",
        "final sealed segment is missing",
    ]);

    // The chunk in the half-written frame is lost; what came before plays.
    let out = run(&mut env.play(&zoo.truncated, &["--raw"]));
    out.ok();
    // (The lost chunk is the closing event, not device output.)
    assert_eq!(out.stdout, device_output(&chunks));

    // Damaged: refused before anything is shown, naming the damage; wrong key: exit 4.
    let out = run(&mut env.play(&zoo.modified, &[]));
    out.expect_code(3)
        .stderr_has(&["is damaged", "segment 2 was modified"]);
    assert!(out.stdout.is_empty());
    run(&mut env.play(&zoo.wrong_key, &[]))
        .expect_code(4)
        .stderr_has(&["wrong key"]);
    run(&mut env.play(&zoo.empty, &[]))
        .expect_code(3)
        .stderr_has(&["nothing to play"]);
    run(&mut env.play("no-such-file.session", &[]))
        .expect_code(1)
        .stderr_has(&["cannot read", "no-such-file.session"]);
    let failed: Vec<_> = env
        .audit_events("recording.play")
        .into_iter()
        .filter(|e| e["outcome"] == "failure")
        .collect();
    assert_eq!(failed.len(), 4, "refusals are audited too");

    // Export, cut short: what verifies is written and the exit code says it is partial.
    let dir = env.fx.dir();
    let out_file = dir.join("crashed.jsonl");
    let out = run(&mut env.export(
        &zoo.crashed,
        &["--format", "jsonl", "-o", out_file.to_str().unwrap()],
    ));
    out.expect_code(3)
        .stderr_has(&["was cut short", "6 chunks", "--recover"]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1 + 6 + 1, "metadata, 6 chunks, where it stops");
    assert!(lines.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("without an end record"));

    // ... and with --recover the same export is accepted, with a warning.
    let out_file = dir.join("recovered.txt");
    let out = run(&mut env.export(
        &zoo.truncated,
        &[
            "--format",
            "text",
            "-o",
            out_file.to_str().unwrap(),
            "--recover",
        ],
    ));
    out.ok().stderr_has(&["warning", "cut short", "5 chunks"]);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(text.contains("# error: the recording stops here"), "{text}");
    assert!(text.contains("rate: 5 ml/h"), "{text}");

    // Damaged: nothing is written, not even a temporary file.
    let out_file = dir.join("modified.cast");
    let out = run(&mut env.export(
        &zoo.modified,
        &["--format", "asciicast", "-o", out_file.to_str().unwrap()],
    ));
    out.expect_code(3)
        .stderr_has(&["segment 2 was modified", "nothing was written"]);
    assert!(!out_file.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("modified.cast"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let events = env.audit_events("recording.export");
    let outcomes: Vec<_> = events
        .iter()
        .map(|e| (e["details"]["status"].clone(), e["outcome"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (serde_json::json!("cut_short"), serde_json::json!("success")),
            (serde_json::json!("cut_short"), serde_json::json!("success")),
            (serde_json::json!("damaged"), serde_json::json!("failure")),
        ]
    );
}

fn asciinema_available() -> bool {
    let available = Command::new("asciinema")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "asciinema is not installed; CI=true requires it (apt-get install -y asciinema)"
            );
        }
        eprintln!("SKIP: asciinema is not installed");
    }
    available
}

/// `asciinema play -s 100 FILE` without a controlling terminal (under `setsid` when there is
/// one), so it neither touches the developer's terminal nor waits between frames.
fn asciinema_play(file: &Path, config_home: &Path) -> std::process::Output {
    let has_setsid = Command::new("setsid")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if has_setsid {
        let mut c = Command::new("setsid");
        c.arg("asciinema");
        c
    } else {
        Command::new("asciinema")
    };
    cmd.args(["play", "-s", "100"])
        .arg(file)
        .env("ASCIINEMA_CONFIG_HOME", config_home)
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Verifies: V54
#[test]
fn export_writes_each_format_privately_and_is_audited() {
    let env = Env::new();
    let key = env.key();
    let chunks = session_chunks();
    let meta = metadata("empump-12", "tech-001", datetime!(2026-04-15 09:22:03 UTC));
    let name = session_name(&meta);
    let path = install(
        &env.fx,
        &name,
        &recording(&key, &meta, &chunks, Ending::Closed),
    );
    let dir = env.fx.dir();

    // asciicast, replayed by asciinema.
    let cast = dir.join("session.cast");
    let out = run(&mut env.export(
        &name,
        &["--format", "asciicast", "-o", cast.to_str().unwrap()],
    ));
    out.ok().stderr_has(&["exported", "6 chunks"]);
    let mode = std::fs::metadata(&cast).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&cast).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    if asciinema_available() {
        let played = asciinema_play(&cast, dir);
        assert!(
            played.status.success(),
            "asciinema play failed ({}): {}",
            played.status,
            String::from_utf8_lossy(&played.stderr)
        );
        assert!(String::from_utf8_lossy(&played.stdout).contains("rate: 5 ml/h"));
    }

    // JSON Lines (to standard output) and the text dump.
    let out = run(&mut env.export(&name, &["--format", "jsonl"]));
    out.ok();
    let lines: Vec<serde_json::Value> = out
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1 + 6 + 1, "metadata, 6 chunks, end");
    assert_eq!(lines[0]["device_name"], "empump-12");
    let dump = dir.join("session.txt");
    run(&mut env.export(&name, &["--format", "text", "-o", dump.to_str().unwrap()])).ok();
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.contains("# technician_id: tech-001"), "{text}");
    assert!(
        text.contains(r#""\e]52;c;cm0gLXJmIC8K\arate: 5 ml/h\r\n""#),
        "{text}"
    );

    // An existing output is kept unless --force.
    run(&mut env.export(&name, &["--format", "text", "-o", dump.to_str().unwrap()]))
        .expect_code(1)
        .stderr_has(&["exists", "--force"]);
    run(&mut env.export(
        &name,
        &["--format", "text", "-o", dump.to_str().unwrap(), "--force"],
    ))
    .ok();

    let events = env.audit_events("recording.export");
    let formats: Vec<_> = events
        .iter()
        .map(|e| e["details"]["format"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(formats, ["asciicast", "jsonl", "text", "text"]);
    for event in &events {
        assert_eq!(event["actor"], "aud");
        assert_eq!(event["outcome"], "success");
        assert_eq!(event["details"]["sha256"], sha256_hex(&path));
    }
    assert_eq!(events[0]["details"]["output"], cast.display().to_string());
    assert_eq!(events[1]["details"]["output"], "stdout");

    // Exporting needs recording.export: an administrator may play but not export.
    let mut cmd = env.fx.admin();
    cmd.args(["session", "export", &name, "--format", "jsonl"]);
    let out = run(&mut cmd);
    out.expect_code(5).stderr_has(&["recording.export"]);
    assert!(out.stdout.is_empty());
}

/// Security regression (outside testing): an operator could `vault seal` a forged recording into
/// the sessions directory and have it listed and exported as complete. Recordings are sealed
/// under a key of their own; a vault-sealed file there is named for what it is and refused.
#[test]
fn a_vault_sealed_file_never_passes_for_a_recording() {
    let env = Env::new();
    let meta = metadata("empump-12", "tech-666", datetime!(2026-04-15 12:00 UTC));
    // The forger writes a perfectly formed recording plaintext ...
    let mut plain = Vec::new();
    let mut writer = RecordWriter::new(&mut plain, &meta).unwrap();
    writer
        .write_chunk(1_000, Direction::TechToDevice, b"DOSE=999 set\r")
        .unwrap();
    writer.finish(2_000).unwrap();
    let source = env.fx.file("forged.bin", &plain);
    // ... and seals it with the vault, as an operator may.
    let name = "2026-04-15T12-00-00.empump-12-tech-666.session";
    run(env
        .fx
        .warden()
        .args(["vault", "seal", "--as", "olga", "--password-file"])
        .arg(&env.operator_password)
        .arg(&source)
        .arg(env.fx.data_dir.join("sessions").join(name)))
    .ok();
    let listed = env.list_json();
    let forged = listed.iter().find(|s| s["file"] == name).unwrap();
    assert_eq!(forged["status"], "damaged");
    assert!(
        forged["problem"]
            .as_str()
            .unwrap()
            .contains("warden vault seal"),
        "{forged}"
    );
    run(&mut env.export(name, &["--format", "jsonl"]))
        .expect_code(3)
        .stderr_has(&["not a session recording"]);
}

// Security regression (issue 11): an asciicast export kept OSC 52 (clipboard write), CSI 21 t,
// title sets and ESC [ 6 n raw, and `asciinema play` then wrote them to the viewer's terminal.
// The export now neutralises what `session play` does, unless --raw; JSON Lines stay lossless.
#[test]
fn asciicast_export_neutralises_terminal_harming_sequences_unless_raw() {
    const HOSTILE: [&str; 4] = [
        "\x1b]52;c;cm0gLXJmIC8K\x07",
        "\x1b[21t",
        "\x1b]0;owned\x07",
        "\x1b[6n",
    ];
    let env = Env::new();
    let key = env.key();
    let mut chunks = vec![(0, Direction::Event, b"auth ok tech-001".to_vec())];
    for (i, h) in HOSTILE.iter().enumerate() {
        let data = format!("\x1b[1mline {i}\x1b[0m {h}\r\n");
        chunks.push((
            100_000 * (i as u64 + 1),
            Direction::DeviceToTech,
            data.into_bytes(),
        ));
    }
    let meta = metadata("empump-12", "tech-001", datetime!(2026-04-15 09:22:03 UTC));
    let name = session_name(&meta);
    install(
        &env.fx,
        &name,
        &recording(&key, &meta, &chunks, Ending::Closed),
    );
    let dir = env.fx.dir();

    let output_events = |cast: &Path| -> String {
        std::fs::read_to_string(cast)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap().to_string())
            .collect()
    };

    let cast = dir.join("sanitized.cast");
    run(&mut env.export(
        &name,
        &["--format", "asciicast", "-o", cast.to_str().unwrap()],
    ))
    .ok();
    let shown = output_events(&cast);
    for h in HOSTILE {
        assert!(!shown.contains(h), "{h:?} kept in {shown:?}");
    }
    assert!(shown.contains("\x1b[1mline 3\x1b[0m"), "{shown:?}");
    if asciinema_available() {
        let played = asciinema_play(&cast, dir);
        assert!(played.status.success());
        let terminal = String::from_utf8_lossy(&played.stdout);
        for h in HOSTILE {
            assert!(
                !terminal.contains(h),
                "asciinema wrote {h:?} to the terminal"
            );
        }
        assert!(terminal.contains("line 3"), "{terminal:?}");
    }

    let raw = dir.join("raw.cast");
    run(&mut env.export(
        &name,
        &[
            "--format",
            "asciicast",
            "--raw",
            "-o",
            raw.to_str().unwrap(),
        ],
    ))
    .ok();
    let kept = output_events(&raw);
    for h in HOSTILE {
        assert!(kept.contains(h), "--raw lost {h:?}");
    }

    // JSON Lines are lossless whatever the flag: the bytes are there, escaped.
    let out = run(&mut env.export(&name, &["--format", "jsonl"]));
    out.ok();
    assert!(!out.stdout.contains(&0x1b), "raw ESC in JSON Lines");
    assert!(out
        .stdout_text()
        .contains(r"\u001b]52;c;cm0gLXJmIC8K\u0007"));

    let sanitized: Vec<_> = env
        .audit_events("recording.export")
        .iter()
        .map(|e| e["details"]["sanitized"].clone())
        .collect();
    assert_eq!(sanitized, [true, false, false]);
}
