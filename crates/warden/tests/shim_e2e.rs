//! The shim end to end: the real `warden shim run` between two real PTY pairs (technician and
//! device), a real SQLCipher store, real TOTP codes. Every test drives the technician's side
//! byte by byte as a laptop would.

#[path = "../../warden-siem/tests/support/mod.rs"]
mod siem;
mod support;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{run, Fixture};
use warden_core::keyring::Purpose;
use warden_core::totp::KeyUri;
use warden_shim::serial::VirtualSerialPair;

const FAST: &str = support::FAST_IDENTITY_POLICY;
const WAIT: Duration = Duration::from_secs(20);

struct Rig {
    fx: Fixture,
    tech: VirtualSerialPair,
    device: VirtualSerialPair,
    child: Option<Child>,
    config: PathBuf,
    socket: PathBuf,
    tamper: PathBuf,
    uri: KeyUri,
}

fn nonblocking(file: &std::fs::File) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
}

impl Rig {
    /// A data directory with technician `tess` (TOTP with 2-second steps, so tests that log in
    /// more than once wait at most 2 s for a fresh code) and a running shim.
    fn start(extra_yaml: &str) -> Self {
        Self::start_with("", extra_yaml)
    }

    /// `tamper_yaml` goes inside the `tamper:` section, `extra_yaml` after `recording:`.
    fn start_with(tamper_yaml: &str, extra_yaml: &str) -> Self {
        let fx = Fixture::with_identity_policy(FAST);
        let mut add = fx.admin();
        add.args([
            "user",
            "add",
            "tess",
            "--role",
            "technician",
            "--period",
            "2",
            "--no-qr",
            "--json",
        ]);
        let out = run(&mut add);
        out.ok();
        let json: serde_json::Value = serde_json::from_str(out.stdout_text().trim()).unwrap();
        let uri = KeyUri::parse(json["totp"]["uri"].as_str().unwrap()).unwrap();

        let tech = VirtualSerialPair::new().unwrap();
        let device = VirtualSerialPair::new().unwrap();
        nonblocking(&tech.endpoint);
        nonblocking(&device.endpoint);
        let socket = fx.path("run/shim.sock");
        let tamper = fx.path("tamper-trigger");
        let plain = fx.file(
            "shim.yaml",
            format!(
                "shim_id: shim-01\ndevice_name: empump-12\n\
                 technician_port:\n  path: {}\n  baud: 115200\n\
                 device_port:\n  path: {}\n  baud: 9600\n\
                 control_socket: {}\n\
                 tamper:\n  file: {}\n  poll_interval_ms: 20\n{tamper_yaml}\
                 recording:\n  flush_interval_ms: 50\n{extra_yaml}",
                tech.path.display(),
                device.path.display(),
                socket.display(),
                tamper.display(),
            )
            .as_bytes(),
        );
        // As in production: the daemon reads its configuration sealed.
        let config = fx.path("shim.yaml.sealed");
        run(fx
            .admin()
            .args(["config", "seal"])
            .arg(&plain)
            .arg("-o")
            .arg(&config))
        .ok();
        // As in production: the daemon opens its own service slot, not the master passphrase's.
        run(fx
            .admin_without_passphrase()
            .args(["keys", "service", "add", "shim", "--key-out"])
            .arg(fx.path("shim-service-key")))
        .ok();
        let mut rig = Self {
            fx,
            tech,
            device,
            child: None,
            config,
            socket,
            tamper,
            uri,
        };
        rig.spawn();
        rig
    }

    fn spawn(&mut self) {
        let child = self
            .fx
            .warden_without_passphrase()
            .arg("--service-key-file")
            .arg(self.fx.path("shim-service-key"))
            .args(["shim", "run", "--config"])
            .arg(&self.config)
            .env("WARDEN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.fx.path("shim.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while self.status().is_none() {
            assert!(
                Instant::now() < deadline,
                "the shim did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.fx.path("shim.log")).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `warden shim status`: the state name, or None when the daemon does not answer.
    fn status(&self) -> Option<String> {
        let reply = warden_shim::daemon::control::request(
            &self.socket,
            &warden_shim::daemon::control::ControlRequest::Status,
        )
        .ok()?;
        Some(reply.state)
    }

    fn wait_state(&self, state: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.status().as_deref() == Some(state) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never reached {state} (now {:?}): {}",
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn code(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.uri
            .params()
            .code_at(self.uri.secret(), now)
            .expose_secret()
            .to_string()
    }

    /// Waits until the next TOTP step begins (steps are 2 s here).
    fn next_step(&self) {
        let step = |now: u64| now / 2;
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let start = step(now());
        while step(now()) == start {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_tech(&mut self, bytes: &[u8]) {
        self.tech.endpoint.write_all(bytes).unwrap();
    }

    fn login_with(&mut self, code: &str) -> Vec<u8> {
        self.type_tech(b"\r");
        read_until(&mut self.tech.endpoint, b"technician id: ");
        self.type_tech(b"tess\r");
        read_until(&mut self.tech.endpoint, b"one-time code: ");
        self.type_tech(format!("{code}\r").as_bytes());
        read_until_any(
            &mut self.tech.endpoint,
            &[b"access granted", b"access denied", b"locked"],
        )
    }

    fn login(&mut self) {
        let code = self.code();
        let reply = self.login_with(&code);
        assert!(
            contains(&reply, b"access granted"),
            "login failed: {}",
            String::from_utf8_lossy(&reply)
        );
        self.wait_state("OPEN");
    }

    fn reset(&self) {
        let mut cmd = self.fx.admin();
        cmd.args(["shim", "reset", "--config"]).arg(&self.config);
        run(&mut cmd).ok();
    }

    fn sessions(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.fx.data_dir.join("sessions"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    fn audit_rows(&self) -> Vec<warden_store::audit::StoredRow> {
        let db = warden_store::Database::open(
            &self.fx.data_dir.join("state/warden.db"),
            &self.fx.key(Purpose::Database),
        )
        .unwrap();
        warden_store::audit::read_rows(&db, 1, None).unwrap()
    }

    fn audit_actions(&self) -> Vec<(String, String, serde_json::Value)> {
        self.audit_rows()
            .into_iter()
            .map(|r| {
                (
                    r.action,
                    r.outcome,
                    serde_json::from_str(&r.details).unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.kill();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn read_until_any(file: &mut std::fs::File, needles: &[&[u8]]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        if needles.iter().any(|n| contains(&got, n)) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting; got {:?}",
            String::from_utf8_lossy(&got)
        );
        match file.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(5)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn read_until(file: &mut std::fs::File, needle: &[u8]) -> Vec<u8> {
    read_until_any(file, &[needle])
}

/// Reads exactly `len` bytes (or fails after the timeout).
fn read_exact_within(file: &mut std::fs::File, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    while got.len() < len {
        assert!(
            Instant::now() < deadline,
            "timed out with {} of {len} bytes",
            got.len()
        );
        match file.read(&mut buf[..(len - got.len()).min(4096)]) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

/// Nothing arrives on `file` for `quiet`.
fn assert_silent(file: &mut std::fs::File, quiet: Duration) {
    let mut buf = [0u8; 256];
    let until = Instant::now() + quiet;
    while Instant::now() < until {
        match file.read(&mut buf) {
            Ok(n) if n > 0 => panic!("unexpected bytes: {:?}", &buf[..n]),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// What a session file holds, read the way `warden session` reads it (verified, under the
/// session key): every chunk's bytes in order, and whether the recording is complete.
fn recorded(fx: &Fixture, file: &Path) -> (Vec<u8>, bool) {
    use warden_shim::recording::read::{read_session, Status};
    use warden_shim::recording::Record;
    let read = read_session(file, &[fx.key(Purpose::Recordings)], |_, records| {
        let mut bytes = Vec::new();
        for record in &mut *records {
            match record {
                Ok(Record::Chunk(chunk)) => bytes.extend_from_slice(&chunk.data),
                Ok(Record::End { .. }) => {}
                Err(e) => return Ok::<_, ()>((bytes, Err(e))),
            }
        }
        Ok((bytes, Ok(())))
    })
    .unwrap();
    let complete = matches!(read.status, Status::Complete);
    (read.output.unwrap_or_default(), complete)
}

/// Verifies: S1, S5, S7, S21, S22, S24, S28, S35, S38, S43, V19, V62, V74
#[test]
fn login_traffic_both_ways_byte_exact_and_logout() {
    let mut rig = Rig::start("");
    // Nothing typed before OPEN reaches the device.
    rig.type_tech(b"rm -rf /\r");
    read_until(&mut rig.tech.endpoint, b"technician id: ");
    rig.login();
    assert_silent(&mut rig.device.endpoint, Duration::from_millis(100));

    // Every byte value, both ways. (No `~` at a line start: 0x7e follows 0x7d.)
    let all: Vec<u8> = (0..=255u8).collect();
    rig.type_tech(&all);
    assert_eq!(read_exact_within(&mut rig.device.endpoint, all.len()), all);
    let reply: Vec<u8> = (0..=255u8).rev().cycle().take(2000).collect();
    rig.device.endpoint.write_all(&reply).unwrap();
    assert_eq!(
        read_exact_within(&mut rig.tech.endpoint, reply.len()),
        reply
    );

    // `~.` at a line start ends the session; the escape never reaches the device.
    rig.type_tech(b"\r~.");
    rig.wait_state("IDLE");
    assert_eq!(read_exact_within(&mut rig.device.endpoint, 1), b"\r");

    // One sealed recording, complete, whose hash is in the audit chain.
    let sessions = rig.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let name = sessions[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(name.ends_with(".empump-12-tess.session"), "{name}");
    assert!(
        recorded(&rig.fx, &sessions[0]).1,
        "the recording is complete"
    );
    // It is not a vault file: `vault open` cannot read it (its key is the session key).
    run(rig
        .fx
        .admin()
        .args(["vault", "open"])
        .arg(&sessions[0])
        .arg("-"))
    .expect_code(4);
    let sha = hex::encode(openssl::sha::sha256(&std::fs::read(&sessions[0]).unwrap()));
    let actions = rig.audit_actions();
    let close = actions
        .iter()
        .find(|(a, _, _)| a == "session.close")
        .expect("session.close audited");
    assert_eq!(close.2["sha256"], sha);
    assert_eq!(close.2["complete"], true);
    for needed in [
        "shim.start",
        "login.totp",
        "session.open",
        "shim.transition",
    ] {
        assert!(
            actions.iter().any(|(a, _, _)| a == needed),
            "{needed} missing from the audit chain"
        );
    }
    let transitions: Vec<String> = actions
        .iter()
        .filter(|(a, _, _)| a == "shim.transition")
        .map(|(_, _, d)| {
            format!(
                "{}->{}",
                d["from"].as_str().unwrap(),
                d["to"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "IDLE->CHALLENGE",
        "CHALLENGE->OPEN",
        "OPEN->FLUSHED",
        "FLUSHED->IDLE",
    ] {
        assert!(
            transitions.iter().any(|t| t == expected),
            "{expected} not in {transitions:?}"
        );
    }

    // The recording replays what happened.
    let (plain, _) = recorded(&rig.fx, &sessions[0]);
    assert!(contains(&plain, &all) && contains(&plain, &reply[..256]));
}

/// Verifies: S26, S27, S46
#[test]
fn five_failures_lock_the_port_until_an_administrator_resets_it() {
    let mut rig = Rig::start("");
    for attempt in 1..=5 {
        let reply = rig.login_with("000000");
        if attempt < 5 {
            assert!(contains(&reply, b"access denied"), "attempt {attempt}");
        } else {
            assert!(
                contains(&reply, b"locked"),
                "attempt {attempt}: {}",
                String::from_utf8_lossy(&reply)
            );
        }
    }
    rig.wait_state("LOCKED");
    // A correct code changes nothing while locked, and the lock survives a restart.
    rig.next_step();
    let code = rig.code();
    rig.type_tech(format!("\rtess\r{code}\r").as_bytes());
    assert_silent(&mut rig.device.endpoint, Duration::from_millis(200));
    assert_eq!(rig.status().as_deref(), Some("LOCKED"));
    rig.kill();
    rig.spawn();
    rig.wait_state("LOCKED");
    assert_silent(&mut rig.device.endpoint, Duration::from_millis(100));
    rig.reset();
    rig.wait_state("IDLE");
    // The five failures locked the technician too: the port reset alone does not let tess in.
    rig.next_step();
    let code = rig.code();
    assert!(contains(&rig.login_with(&code), b"access denied"));
    let mut unlock = rig.fx.admin();
    unlock.args(["user", "unlock", "tess"]);
    run(&mut unlock).ok();
    rig.next_step();
    rig.login();
    let actions = rig.audit_actions();
    assert!(actions.iter().any(|(a, _, _)| a == "lockout.lock"));
    assert!(actions.iter().any(|(a, _, _)| a == "shim.reset"));
}

/// Verifies: S2
#[test]
fn a_replayed_code_is_refused() {
    let mut rig = Rig::start("");
    let code = rig.code();
    let reply = rig.login_with(&code);
    assert!(contains(&reply, b"access granted"));
    rig.type_tech(b"\r~.");
    rig.wait_state("IDLE");
    let reply = rig.login_with(&code);
    assert!(
        contains(&reply, b"access denied"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(rig
        .audit_actions()
        .iter()
        .any(|(a, o, d)| a == "login.totp" && o != "success" && d.to_string().contains("replay")));
}

/// Verifies: S18, S20, S30, S33, S45
#[test]
fn tamper_in_open_stops_forwarding_until_reset() {
    let mut rig = Rig::start("");
    rig.login();
    std::fs::write(&rig.tamper, b"").unwrap();
    rig.wait_state("EMERGENCY_STOP");
    read_until(&mut rig.tech.endpoint, b"EMERGENCY STOP");
    rig.type_tech(b"after tamper\r");
    rig.device
        .endpoint
        .write_all(b"device after tamper")
        .unwrap();
    assert_silent(&mut rig.device.endpoint, Duration::from_millis(300));
    // An alert file, and the stop survives a restart.
    let alerts: Vec<_> = std::fs::read_dir(rig.fx.data_dir.join("alerts"))
        .unwrap()
        .collect();
    assert_eq!(alerts.len(), 1);
    // alerts/<timestamp>.tamper.json (seed 000), e.g. 2026-04-15T09-22-03.tamper.json.
    let alert = alerts[0].as_ref().unwrap().file_name();
    let alert = alert.to_string_lossy();
    let stamp = alert.strip_suffix(".tamper.json").unwrap_or_default();
    assert!(
        stamp.len() == 19 && stamp.as_bytes()[10] == b'T' && stamp[..4].parse::<u16>().is_ok(),
        "{alert}"
    );
    std::fs::remove_file(&rig.tamper).unwrap();
    rig.kill();
    rig.spawn();
    rig.wait_state("EMERGENCY_STOP");
    rig.reset();
    rig.wait_state("IDLE");
    rig.next_step();
    rig.login();
    let actions = rig.audit_actions();
    assert!(actions.iter().any(|(a, _, _)| a == "shim.tamper"));
    let spooled: i64 = warden_store::Database::open(
        &rig.fx.data_dir.join("state/warden.db"),
        &rig.fx.key(Purpose::Database),
    )
    .unwrap()
    .conn()
    .query_row(
        "SELECT count(*) FROM siem_spool WHERE kind = 'tamper_alert'",
        [],
        |r| r.get(0),
    )
    .unwrap();
    assert_eq!(
        spooled, 1,
        "the alert waits in the SIEM spool at the highest priority"
    );
}

/// Every `heartbeat.interval_secs` (1 s here) the daemon writes one JSON line with a counter
/// that goes up by one to `heartbeats/<UTC date>.log`, and queues the same counter for the SIEM;
/// with no SIEM configured, the heartbeats wait in the spool.
/// Verifies: S11, S12, S14, S44
#[test]
fn heartbeats_go_to_the_daily_log_and_wait_in_the_siem_spool() {
    let rig = Rig::start("heartbeat:\n  interval_secs: 1\n");
    let dir = rig.fx.data_dir.join("heartbeats");
    let logged = || -> Vec<(String, serde_json::Value)> {
        let mut lines = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().to_string();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            for line in text.lines() {
                lines.push((name.clone(), serde_json::from_str(line).unwrap()));
            }
        }
        lines
    };
    let spooled = || -> Vec<u64> {
        let db = warden_store::Database::open(
            &rig.fx.data_dir.join("state/warden.db"),
            &rig.fx.key(Purpose::Database),
        )
        .unwrap();
        let mut stmt = db
            .conn()
            .prepare("SELECT payload FROM siem_spool WHERE kind = 'heartbeat' ORDER BY seq")
            .unwrap();
        let payloads: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        payloads
            .iter()
            .map(|p| {
                let json: serde_json::Value = serde_json::from_str(p).unwrap();
                assert_eq!(json["counter"][0], "heartbeat_counter", "{json}");
                json["counter"][1].as_u64().unwrap()
            })
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    let (lines, queued) = loop {
        let (lines, queued) = (logged(), spooled());
        if lines.len() >= 3 && queued.len() >= 3 {
            break (lines, queued);
        }
        assert!(
            Instant::now() < deadline,
            "heartbeats: {lines:?}, spooled: {queued:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (i, (name, line)) in lines.iter().enumerate() {
        assert_eq!(line["counter"], i as u64 + 1, "{line}");
        assert_eq!(line["shim_id"], "shim-01");
        assert_eq!(line["state"], "IDLE");
        let time = line["time"].as_str().unwrap();
        assert_eq!(
            name,
            &format!("{}.log", &time[..10]),
            "named after the UTC date"
        );
    }
    assert_eq!(queued[..3], [1, 2, 3]);
}

/// Verifies: S31, S39
#[test]
fn an_idle_session_ends_by_itself() {
    let mut rig = Rig::start("session:\n  idle_timeout_secs: 2\n");
    rig.login();
    rig.wait_state("IDLE");
    read_until(&mut rig.tech.endpoint, b"inactivity");
    let actions = rig.audit_actions();
    let close = actions
        .iter()
        .find(|(a, _, _)| a == "session.close")
        .unwrap();
    assert_eq!(close.2["reason"], "idle timeout");
}

/// Verifies: S32, S39
#[test]
fn exhausted_recording_storage_is_an_emergency_stop_with_the_recording_intact() {
    // A 64 KiB budget for sessions/: the recording hits it, the shim stops forwarding, and the
    // file opens with --recover up to its last sealed segment.
    let mut rig = Rig::start("  budget_bytes: 65536\n");
    rig.login();
    let chunk = vec![b'x'; 4096];
    let mut sent = 0;
    while rig.status().as_deref() == Some("OPEN") && sent < 512 * 1024 {
        rig.type_tech(&chunk);
        sent += chunk.len();
        let _ = read_exact_within(&mut rig.device.endpoint, chunk.len());
        std::thread::sleep(Duration::from_millis(60));
    }
    rig.wait_state("EMERGENCY_STOP");
    let sessions = rig.sessions();
    assert_eq!(sessions.len(), 1);
    let (recovered, _) = recorded(&rig.fx, &sessions[0]);
    assert!(
        contains(&recovered, &chunk[..1024]),
        "the recovered prefix holds the session's traffic"
    );
    assert!(rig
        .audit_actions()
        .iter()
        .any(|(a, _, d)| a == "shim.transition"
            && d["reason"].as_str().unwrap().contains("storage exhausted")));
}

/// Operators and auditors may ask for the state (`shim.status`), but their slots cannot open
/// a sealed configuration: they name the control socket instead (outside testing found the
/// README's example refused).
#[test]
fn an_operator_asks_for_the_state_by_the_control_socket() {
    let rig = Rig::start("");
    for (name, role) in [
        (support::OPERATOR, "operator"),
        (support::AUDITOR, "auditor"),
    ] {
        let password = rig.fx.file(
            &format!("{name}-password"),
            b"Operator-Or-Auditor-Pass-1!\n",
        );
        run(rig
            .fx
            .admin()
            .args(["user", "add", name, "--role", role, "--new-password-file"])
            .arg(password))
        .ok();
        let mut cmd = rig.fx.warden_as(name);
        cmd.args(["shim", "status", "--socket"]).arg(&rig.socket);
        let out = run(&mut cmd);
        out.ok();
        assert!(out.stdout_text().contains("IDLE"), "{}", out.stdout_text());
    }
    assert!(rig
        .audit_actions()
        .iter()
        .any(|(a, _, d)| a == "shim.status" && d["state"] == "IDLE"));
}

/// Found by outside testing: the shim queued its records for the SIEM within the default
/// spool limits, not those of its own `siem:` section, so with the receiver away a technician
/// worked on past `hard_limit` instead of the shim stopping (docs/siem.md, "Limit policy").
#[test]
fn the_shim_keeps_its_own_siem_spool_limits() {
    let mut rig = Rig::start("");
    rig.kill();
    let queued: i64 = warden_store::Database::open(
        &rig.fx.data_dir.join("state").join("warden.db"),
        &rig.fx.key(Purpose::Database),
    )
    .unwrap()
    .conn()
    .query_row("SELECT count(*) FROM siem_spool", [], |r| r.get(0))
    .unwrap();
    // Room for the start and little more; the receiver is not there.
    let pki = siem::Pki::create(&rig.fx.path("pki"));
    let plain = std::fs::read_to_string(rig.fx.path("shim.yaml")).unwrap()
        + &format!(
            "siem:\n  host: 127.0.0.1\n  port: {}\n  server_name: localhost\n  \
             ca_file: {}\n  client_cert: {}\n  client_key: {}\n  \
             spool: {{ soft_limit: {}, hard_limit: {}, alert_reserve: 1 }}\n",
            siem::free_port(),
            pki.ca.cert_path.display(),
            pki.client.cert_path.display(),
            pki.client.key_path.display(),
            queued + 2,
            queued + 4,
        );
    let plain = rig.fx.file("shim-siem.yaml", plain.as_bytes());
    run(rig
        .fx
        .admin()
        .args(["config", "seal", "--force"])
        .arg(&plain)
        .arg("-o")
        .arg(&rig.config))
    .ok();
    rig.spawn();
    // The start's own records may already fill it; if not, the sign-in's do.
    if rig.status().as_deref() == Some("IDLE") {
        rig.next_step();
        let code = rig.code();
        rig.type_tech(b"\r");
        read_until(&mut rig.tech.endpoint, b"technician id: ");
        rig.type_tech(b"tess\r");
        read_until(&mut rig.tech.endpoint, b"one-time code: ");
        rig.type_tech(format!("{code}\r").as_bytes());
    }
    rig.wait_state("EMERGENCY_STOP");
    assert!(
        rig.audit_actions()
            .iter()
            .all(|(a, _, _)| a != "session.open"),
        "a session opened with the SIEM spool full"
    );
}

/// Verifies: S8
#[test]
fn sigkill_mid_session_leaves_recoverable_recordings_and_a_valid_chain() {
    let mut rig = Rig::start("");
    for round in 0..3 {
        if round > 0 {
            rig.spawn();
            rig.next_step();
        }
        rig.login();
        for i in 0..20 {
            rig.type_tech(format!("round {round} line {i}\r").as_bytes());
            std::thread::sleep(Duration::from_millis(10));
        }
        // Let at least one flush interval pass, then kill without warning.
        std::thread::sleep(Duration::from_millis(200));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(rig.pid()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        rig.kill();
    }
    for session in rig.sessions() {
        let (recovered, _) = recorded(&rig.fx, &session);
        assert!(
            contains(&recovered, b"line 0"),
            "{}: the flushed part is readable",
            session.display()
        );
    }
    assert_eq!(rig.sessions().len(), 3);
    run(rig.fx.admin().args(["audit", "verify"])).ok();
}

/// Verifies: S50
#[test]
fn the_daemon_opens_no_network_listener() {
    let rig = Rig::start("");
    let pid = rig.pid();
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.to_string_lossy().to_string())
        .filter_map(|l| {
            l.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(String::from)
        })
        .collect();
    assert!(!inodes.is_empty(), "the control socket is open");
    for table in ["tcp", "tcp6", "udp", "udp6", "raw", "raw6"] {
        let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let inode = line.split_whitespace().nth(9).unwrap_or("");
            assert!(
                !inodes.iter().any(|i| i == inode),
                "the shim has an inet socket in /proc/net/{table}: {line}"
            );
        }
    }
    // Its only socket is the 0600 Unix control socket.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&rig.socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Unmounts a test tmpfs on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Verifies: S32
#[test]
fn a_really_full_disk_is_an_emergency_stop_with_the_recording_intact() {
    // sessions/ on a 256 KiB tmpfs: the recorder's write fails with ENOSPC mid-session.
    let mut rig = Rig::start("");
    let sessions = rig.fx.data_dir.join("sessions");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&sessions)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true: this test needs to mount a tmpfs (run as root)"
        );
        eprintln!("SKIP: cannot mount a tmpfs here (not root)");
        return;
    }
    let _mount = Mount(sessions.clone());
    rig.login();
    let chunk = vec![b'y'; 4096];
    let mut sent = 0;
    while rig.status().as_deref() == Some("OPEN") && sent < 4 << 20 {
        rig.type_tech(&chunk);
        sent += chunk.len();
        let _ = read_exact_within(&mut rig.device.endpoint, chunk.len());
        std::thread::sleep(Duration::from_millis(20));
    }
    rig.wait_state("EMERGENCY_STOP");
    let file = rig.sessions().pop().expect("a session file");
    assert!(contains(&recorded(&rig.fx, &file).0, &chunk[..2048]));
    assert!(rig
        .audit_actions()
        .iter()
        .any(|(a, _, d)| a == "shim.transition"
            && d["reason"].as_str().unwrap().contains("storage exhausted")));
}

/// An emergency stop is cleared only by the daemon, on the record: each attempt below either
/// leaves the stop in place or records exactly one `shim.reset`, and only a daemon that sees no
/// tamper clears it.
/// Verifies: S33
#[test]
fn an_emergency_stop_is_reset_only_by_the_daemon_and_only_once_tamper_is_gone() {
    let mut rig = Rig::start("");
    let olga = rig.fx.file("olga-password", b"Operator-Password-Olga-7\n");
    run(rig
        .fx
        .admin()
        .args([
            "user",
            "add",
            "olga",
            "--role",
            "operator",
            "--new-password-file",
        ])
        .arg(&olga))
    .ok();
    std::fs::write(&rig.tamper, b"").unwrap();
    rig.wait_state("EMERGENCY_STOP");
    let resets = |rig: &Rig| -> Vec<(String, serde_json::Value)> {
        rig.audit_actions()
            .into_iter()
            .filter(|(a, _, _)| a == "shim.reset")
            .map(|(_, outcome, details)| (outcome, details))
            .collect()
    };
    let reset_as = |rig: &Rig, who: &str| {
        let mut cmd = rig.fx.warden_as(who);
        cmd.args(["shim", "reset", "--config"]).arg(&rig.config);
        run(&mut cmd)
    };

    // A non-administrator is refused at the gate: no request, no reset.
    reset_as(&rig, support::OPERATOR)
        .expect_code(5)
        .stderr_has(&["shim.reset"]);
    assert!(resets(&rig).is_empty());
    rig.wait_state("EMERGENCY_STOP");

    // The tamper file is still there: the daemon refuses, one refusal on the record.
    reset_as(&rig, support::ADMIN)
        .expect_code(1)
        .stderr_has(&["still reports tamper", "tamper-trigger"]);
    assert_eq!(resets(&rig).len(), 1);
    assert_eq!(resets(&rig)[0].0, "denied");
    assert_eq!(resets(&rig)[0].1["requested_by"], "admin");
    rig.wait_state("EMERGENCY_STOP");

    // The daemon is down: refused, the stop stays persisted (the next start is stopped).
    std::fs::remove_file(&rig.tamper).unwrap();
    rig.kill();
    reset_as(&rig, support::ADMIN)
        .expect_code(1)
        .stderr_has(&["is `warden shim run` running?"]);
    assert_eq!(resets(&rig).len(), 2);
    assert_eq!(resets(&rig)[1].0, "failure");
    rig.spawn();
    rig.wait_state("EMERGENCY_STOP");

    // Tamper gone, daemon up, an administrator asks: done, once, by the daemon's principal.
    reset_as(&rig, support::ADMIN).ok();
    rig.wait_state("IDLE");
    let all = resets(&rig);
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].0, "success");
    assert_eq!(all[2].1["requested_by"], "admin");
    assert_eq!(all[2].1["from"], "EMERGENCY_STOP");
    let actors: Vec<String> = rig
        .audit_rows()
        .into_iter()
        .filter(|r| r.action == "shim.reset" && r.outcome == "success")
        .map(|r| r.actor)
        .collect();
    assert_eq!(actors, ["service:shim:shim-01"]);
    // And it stays cleared across a restart.
    rig.kill();
    rig.spawn();
    rig.wait_state("IDLE");
}

/// Security regression (outside testing): an emergency stop belongs to the box, not to a shim
/// id. A daemon restarted with another id and no tamper source comes back stopped.
#[test]
fn an_emergency_stop_survives_a_daemon_started_under_another_shim_id() {
    let mut rig = Rig::start("");
    std::fs::write(&rig.tamper, b"").unwrap();
    rig.wait_state("EMERGENCY_STOP");
    rig.kill();
    let plain = std::fs::read_to_string(rig.fx.path("shim.yaml")).unwrap();
    let other: String = plain
        .replace("shim-01", "shim-02")
        .lines()
        .filter(|l| {
            !l.starts_with("tamper:")
                && !l.trim_start().starts_with("file:")
                && !l.contains("poll_interval_ms")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let other_plain = rig.fx.file("other.yaml", other.as_bytes());
    let other_sealed = rig.fx.path("other.yaml.sealed");
    run(rig
        .fx
        .admin()
        .args(["config", "seal"])
        .arg(&other_plain)
        .arg("-o")
        .arg(&other_sealed))
    .ok();
    std::fs::remove_file(&rig.tamper).unwrap();
    rig.config = other_sealed;
    rig.spawn();
    rig.wait_state("EMERGENCY_STOP");
    // The reset through the new daemon clears the box.
    rig.reset();
    rig.wait_state("IDLE");
}

/// A GPIO case switch marked optional and absent: the daemon starts, and the chain says it runs
/// without it. Not optional: it refuses to start, naming the chip.
#[test]
fn an_optional_gpio_switch_that_is_absent_is_recorded_not_fatal() {
    let gpio = "  gpio: { chip: /dev/gpiochip-absent, line: 17, optional: true }\n";
    let rig = Rig::start_with(gpio, "");
    rig.wait_state("IDLE");
    let unavailable: Vec<_> = rig
        .audit_actions()
        .into_iter()
        .filter(|(action, _, _)| action == "shim.tamper.unavailable")
        .collect();
    assert_eq!(unavailable.len(), 1, "{unavailable:?}");
    let (_, outcome, details) = &unavailable[0];
    assert_eq!(outcome, "failure");
    assert_eq!(details["source"], "gpio");
    assert!(
        details["reason"]
            .as_str()
            .unwrap()
            .contains("/dev/gpiochip-absent"),
        "{details}"
    );
    drop(rig);

    let required = "  gpio: { chip: /dev/gpiochip-absent, line: 17 }\n";
    let plain = Fixture::with_identity_policy(FAST);
    let (tech, device) = (
        VirtualSerialPair::new().unwrap(),
        VirtualSerialPair::new().unwrap(),
    );
    let config = plain.file(
        "shim.yaml",
        format!(
            "shim_id: shim-01\ndevice_name: d\n\
             technician_port:\n  path: {}\n  baud: 9600\n\
             device_port:\n  path: {}\n  baud: 9600\n\
             control_socket: {}\n\
             tamper:\n{required}",
            tech.path.display(),
            device.path.display(),
            plain.path("run/shim.sock").display()
        )
        .as_bytes(),
    );
    let out = run(plain
        .warden()
        .args(["shim", "run", "--allow-plain-config", "--config"])
        .arg(&config));
    assert_ne!(out.code, 0);
    out.stderr_has(&["/dev/gpiochip-absent", "line 17"]);
}
