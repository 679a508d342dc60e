//! One gate for every privileged act, checked over every subcommand of the CLI.
//!
//! For each privileged command, run three ways:
//! 1. without a sign-in → exit 5, and exactly one new event: `ACTION.denied` by `anonymous`
//!    naming the permission;
//! 2. as a user whose role lacks the permission → exit 5, and exactly the user's sign-in plus
//!    `ACTION.denied` naming the permission (skipped where every role that can sign in at the
//!    CLI has it: technicians have no password);
//! 3. as a user whose role grants it → the expected exit, and exactly the sign-in plus the
//!    command's own events, every one with that user as its actor.
//!
//! Every run has `USER=mallory` and `LOGNAME=mallory` in its environment: no actor may come
//! from there. The table lists every subcommand; a test checks it against `--help`, so a new
//! command cannot be added without deciding how it is gated.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{run, Fixture, ADMIN, AUDITOR, OPERATOR};
use warden_core::keyring::Purpose;
use warden_core::stream::SealedWriter;
use warden_shim::recording::{Direction, RecordWriter, RecordingMetadata};
use warden_store::audit::StoredRow;

/// One privileged command.
struct Case {
    /// The subcommand path, as `--help` lists it (e.g. `vault seal`).
    name: &'static str,
    /// The permission its gate checks, by name.
    permission: &'static str,
    /// The action named in `ACTION.denied`.
    action: &'static str,
    /// A user whose role lacks the permission (None: no role that signs in at the CLI lacks it).
    denied: Option<&'static str>,
    /// A user whose role grants it.
    allowed: &'static str,
    /// Arguments after `warden`.
    args: Vec<String>,
    /// Exit code when allowed (0, or 1 where a daemon or a SIEM is deliberately absent).
    code: i32,
    /// The events after the sign-in, as (action, outcome), when allowed.
    events: &'static [(&'static str, &'static str)],
}

fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| (*i).to_owned()).collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The files the commands work on, made once per case (so each case is independent).
struct Files {
    plain: PathBuf,
    sealed: PathBuf,
    config: PathBuf,
    sealed_config: PathBuf,
    shim_config: PathBuf,
    siem_config: PathBuf,
    keys_file: PathBuf,
    recording: String,
    schema: PathBuf,
}

fn files(fx: &Fixture) -> Files {
    let plain = fx.file("plain.bin", b"patient video, 1 frame");
    let sealed = fx.path("sealed.bin");
    run(fx.admin().args(["vault", "seal"]).arg(&plain).arg(&sealed)).ok();
    let config = fx.file("conf.yaml", b"a: 1\n");
    let sealed_config = fx.path("conf.yaml.sealed");
    run(fx
        .admin()
        .args(["config", "seal"])
        .arg(&config)
        .arg("-o")
        .arg(&sealed_config))
    .ok();
    let shim_config = fx.file(
        "shim.yaml",
        format!(
            "shim_id: gate-shim\ndevice_name: pump\n\
             technician_port:\n  path: /dev/null\n  baud: 9600\n\
             device_port:\n  path: /dev/zero\n  baud: 9600\n\
             control_socket: {}\n",
            fx.path("no-daemon.sock").display()
        )
        .as_bytes(),
    );
    let siem_config = fx.file(
        "siem.yaml",
        format!(
            "siem:\n  host: 127.0.0.1\n  port: 9\n  server_name: localhost\n  \
             ca_file: {0}\n  client_cert: {0}\n  client_key: {0}\n",
            fx.path("missing.pem").display()
        )
        .as_bytes(),
    );
    let keys_file = fx.file(
        "keys.yaml",
        b"keys:\n  - identity: card-9\n    key: 00112233445566778899aabbccddeeff\n",
    );
    // A complete recording in DATA_DIR/sessions.
    let meta = RecordingMetadata::new(
        uuid::Uuid::from_bytes([5; 16]),
        "tess",
        "pump",
        "gate-shim",
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        [7; 32],
    )
    .unwrap();
    let mut bytes = Vec::new();
    let key = warden_shim::recording::session_key(&fx.key(Purpose::Recordings));
    let sealed_stream = SealedWriter::new(&mut bytes, Purpose::Recordings, &key, 4096).unwrap();
    let mut writer = RecordWriter::new(sealed_stream, &meta).unwrap();
    writer
        .write_chunk(1000, Direction::DeviceToTech, b"pump> ")
        .unwrap();
    writer.finish(2000).unwrap().finish().unwrap();
    let recording = "gate.session".to_owned();
    // A user for `user remove` to remove.
    let rex_password = fx.file("rex-password", b"Fixture-User-Password-2\n");
    run(fx
        .admin()
        .args([
            "user",
            "add",
            "rex",
            "--role",
            "operator",
            "--new-password-file",
        ])
        .arg(&rex_password))
    .ok();
    std::fs::write(fx.data_dir.join("sessions").join(&recording), bytes).unwrap();
    // Records: a schema, and a treatment without PHI fields to read, sign and delete.
    let schema = fx.file(
        "records.yaml",
        b"format: warden-records-schema\ncollections:\n  treatments:\n    class: treatment\n    fields:\n      energy_j: { type: number }\n      notes: { type: text, phi: true }\n",
    );
    run(fx.admin().args(["records", "schema", "apply"]).arg(&schema)).ok();
    for id in ["t-1", "t-2"] {
        run(fx.operator().args([
            "records",
            "put",
            "treatments",
            id,
            "--json",
            r#"{"energy_j": 1.5}"#,
        ]))
        .ok();
    }
    Files {
        schema,
        plain,
        sealed,
        config,
        sealed_config,
        shim_config,
        siem_config,
        keys_file,
        recording,
    }
}

fn cases(fx: &Fixture, f: &Files) -> Vec<Case> {
    let out = |name: &str| p(&fx.path(name));
    vec![
        Case {
            name: "vault seal",
            permission: "vault.seal",
            action: "vault.seal",
            denied: Some(AUDITOR),
            allowed: OPERATOR,
            args: [s(&["vault", "seal"]), s(&[&p(&f.plain), &out("v1")])].concat(),
            code: 0,
            events: &[("vault.seal", "success")],
        },
        Case {
            name: "vault open",
            permission: "vault.open",
            action: "vault.open",
            denied: None,
            allowed: AUDITOR,
            args: s(&["vault", "open", &p(&f.sealed), &out("v2")]),
            code: 0,
            events: &[("vault.open", "success")],
        },
        Case {
            name: "vault verify",
            permission: "vault.verify",
            action: "vault.verify",
            denied: None,
            allowed: OPERATOR,
            args: s(&["vault", "verify", &p(&f.sealed)]),
            code: 0,
            events: &[("vault.verify", "success")],
        },
        Case {
            name: "config seal",
            permission: "config.seal",
            action: "config.seal",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["config", "seal", &p(&f.config), "-o", &out("c1")]),
            code: 0,
            events: &[("config.seal", "success")],
        },
        Case {
            name: "config open",
            permission: "config.open",
            action: "config.open",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["config", "open", &p(&f.sealed_config), "-o", &out("c2")]),
            code: 0,
            events: &[("config.open", "success")],
        },
        Case {
            name: "audit verify",
            permission: "audit.verify",
            action: "audit.verify",
            denied: Some(OPERATOR),
            allowed: AUDITOR,
            args: s(&["audit", "verify"]),
            code: 0,
            events: &[("audit.verify", "success")],
        },
        Case {
            name: "records schema apply",
            permission: "records.schema",
            action: "records.schema",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["records", "schema", "apply", &p(&f.schema)]),
            code: 0,
            events: &[],
        },
        Case {
            name: "records signer",
            permission: "user.manage",
            action: "records.signer",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["records", "signer", OPERATOR, "--printed-name", "Olga O."]),
            code: 0,
            events: &[("records.signer", "success")],
        },
        Case {
            name: "records put",
            permission: "records.treatment.write",
            action: "record.put",
            denied: Some(AUDITOR),
            allowed: OPERATOR,
            args: s(&[
                "records",
                "put",
                "treatments",
                "t-9",
                "--json",
                r#"{"energy_j": 2}"#,
            ]),
            code: 0,
            events: &[("record.create", "success")],
        },
        Case {
            name: "records get",
            permission: "records.treatment.read",
            action: "record.get",
            denied: Some(ADMIN),
            allowed: AUDITOR,
            args: s(&["records", "get", "treatments", "t-1"]),
            code: 0,
            events: &[],
        },
        Case {
            name: "records history",
            permission: "records.treatment.read",
            action: "record.history",
            denied: Some(ADMIN),
            allowed: OPERATOR,
            args: s(&["records", "history", "treatments", "t-1"]),
            code: 0,
            events: &[],
        },
        Case {
            name: "records list",
            permission: "records.treatment.read",
            action: "record.list",
            denied: Some(ADMIN),
            allowed: AUDITOR,
            args: s(&["records", "list", "treatments"]),
            code: 0,
            events: &[],
        },
        Case {
            name: "records delete",
            permission: "records.treatment.write",
            action: "record.delete",
            denied: Some(AUDITOR),
            allowed: OPERATOR,
            args: s(&[
                "records",
                "delete",
                "treatments",
                "t-2",
                "--reason",
                "duplicate",
            ]),
            code: 0,
            events: &[("record.delete", "success")],
        },
        Case {
            // The fixture's operator has no TOTP: the gate lets her through, and the
            // signature is then refused for want of a second component.
            name: "records sign",
            permission: "records.treatment.write",
            action: "record.sign",
            denied: Some(AUDITOR),
            allowed: OPERATOR,
            args: s(&[
                "records",
                "sign",
                "treatments",
                "t-1",
                "--at",
                "1",
                "--meaning",
                "performed",
                "--code",
                "123456",
            ]),
            code: 5,
            events: &[("login.cli", "success"), ("record.sign", "failure")],
        },
        Case {
            name: "records event",
            permission: "app.event",
            action: "app.event",
            denied: Some(AUDITOR),
            allowed: OPERATOR,
            args: s(&["records", "event", "laser.armed", "--subject", "laser-7"]),
            code: 0,
            events: &[("app.laser.armed", "success")],
        },
        Case {
            name: "records verify",
            permission: "audit.verify",
            action: "records.verify",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["records", "verify"]),
            code: 0,
            events: &[("records.verify", "success")],
        },
        Case {
            name: "records export",
            permission: "audit.export",
            action: "records.export",
            denied: Some(ADMIN),
            allowed: AUDITOR,
            args: s(&["records", "export", "--output", &out("r1.jsonl")]),
            code: 0,
            events: &[("records.export", "success")],
        },
        Case {
            name: "audit export",
            permission: "audit.export",
            action: "audit.export",
            denied: Some(ADMIN),
            allowed: AUDITOR,
            args: s(&["audit", "export", "-o", &out("a1.csv")]),
            code: 0,
            events: &[("audit.export", "success")],
        },
        Case {
            name: "audit tail",
            permission: "audit.tail",
            action: "audit.tail",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["audit", "tail", "-n", "1"]),
            code: 0,
            events: &[("audit.tail", "success")],
        },
        Case {
            name: "audit checkpoint",
            permission: "audit.checkpoint",
            action: "audit.checkpoint",
            denied: Some(OPERATOR),
            allowed: AUDITOR,
            args: s(&["audit", "checkpoint"]),
            code: 0,
            events: &[("audit.checkpoint", "success")],
        },
        Case {
            name: "siem test",
            permission: "siem.test",
            action: "siem.test",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&[
                "siem",
                "test",
                "--allow-plain-config",
                "--config",
                &p(&f.siem_config),
            ]),
            // No SIEM there (the client files do not even exist): refused before connecting.
            code: 1,
            events: &[],
        },
        Case {
            name: "ota push",
            permission: "ota.script.push",
            action: "ota.script.push",
            denied: Some(AUDITOR),
            allowed: OPERATOR,
            args: s(&["ota", "push", "--card", "card-1", "--apdu", "00A4040000"]),
            code: 0,
            events: &[("ota.script.queue", "success")],
        },
        Case {
            name: "ota results",
            permission: "ota.results.view",
            action: "ota.results.view",
            denied: None,
            allowed: AUDITOR,
            args: s(&["ota", "results", "--card", "card-1"]),
            code: 0,
            events: &[("ota.results.view", "success")],
        },
        Case {
            name: "ota sessions",
            permission: "ota.results.view",
            action: "ota.sessions.view",
            denied: None,
            allowed: OPERATOR,
            args: s(&["ota", "sessions"]),
            code: 0,
            events: &[("ota.sessions.view", "success")],
        },
        Case {
            name: "ota keys add",
            permission: "ota.key.manage",
            action: "ota.key.add",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&[
                "ota",
                "keys",
                "add",
                "--identity",
                "card-2",
                "--key",
                "000102030405060708090a0b0c0d0e0f",
            ]),
            code: 0,
            events: &[("ota.key.add", "success")],
        },
        Case {
            name: "ota keys list",
            permission: "ota.key.manage",
            action: "ota.key.list",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["ota", "keys", "list"]),
            code: 0,
            events: &[("ota.key.list", "success")],
        },
        Case {
            name: "ota keys remove",
            permission: "ota.key.manage",
            action: "ota.key.remove",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["ota", "keys", "remove", "card-3"]),
            // No such card: refused by the store, nothing changed (and no event).
            code: 1,
            events: &[],
        },
        Case {
            name: "ota keys import",
            permission: "ota.key.manage",
            action: "ota.key.import",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["ota", "keys", "import", &p(&f.keys_file)]),
            code: 0,
            events: &[("ota.key.import", "success")],
        },
        Case {
            name: "session list",
            permission: "recording.list",
            action: "recording.list",
            denied: Some(OPERATOR),
            allowed: AUDITOR,
            args: s(&["session", "list"]),
            code: 0,
            events: &[("recording.list", "success")],
        },
        Case {
            name: "session play",
            permission: "recording.play",
            action: "recording.play",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["session", "play", &f.recording, "--speed", "1000"]),
            code: 0,
            events: &[("recording.play", "success")],
        },
        Case {
            name: "session export",
            permission: "recording.export",
            action: "recording.export",
            denied: Some(ADMIN),
            allowed: AUDITOR,
            args: s(&[
                "session",
                "export",
                &f.recording,
                "--format",
                "jsonl",
                "-o",
                &out("s1.jsonl"),
            ]),
            code: 0,
            events: &[("recording.export", "success")],
        },
        Case {
            name: "shim status",
            permission: "shim.status",
            action: "shim.status",
            denied: None,
            allowed: OPERATOR,
            args: s(&[
                "shim",
                "status",
                "--allow-plain-config",
                "--config",
                &p(&f.shim_config),
            ]),
            // The daemon is not running: the answer says so, and so does the event.
            code: 1,
            events: &[("shim.status", "error")],
        },
        Case {
            name: "shim reset",
            permission: "shim.reset",
            action: "shim.reset",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&[
                "shim",
                "reset",
                "--allow-plain-config",
                "--config",
                &p(&f.shim_config),
            ]),
            // The daemon is not running: refused, nothing changes, one shim.reset failure.
            code: 1,
            events: &[("shim.reset", "failure")],
        },
        Case {
            name: "user add",
            permission: "user.manage",
            action: "user.add",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["user", "add", "tina", "--role", "technician", "--no-qr"]),
            code: 0,
            events: &[("user.create", "success")],
        },
        Case {
            name: "user list",
            permission: "user.manage",
            action: "user.list",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["user", "list"]),
            code: 0,
            events: &[("user.list", "success")],
        },
        Case {
            name: "user show",
            permission: "user.manage",
            action: "user.show",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["user", "show", OPERATOR]),
            code: 0,
            events: &[("user.show", "success")],
        },
        Case {
            name: "user disable",
            permission: "user.manage",
            action: "user.disable",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["user", "disable", OPERATOR]),
            code: 0,
            events: &[("user.disable", "success")],
        },
        Case {
            name: "user enable",
            permission: "user.manage",
            action: "user.enable",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["user", "enable", OPERATOR]),
            code: 0,
            events: &[("user.enable", "success")],
        },
        Case {
            name: "user unlock",
            permission: "user.manage",
            action: "lockout.unlock",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["user", "unlock", OPERATOR]),
            code: 0,
            events: &[("lockout.unlock", "success")],
        },
        Case {
            name: "user remove",
            permission: "user.manage",
            action: "user.remove",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["user", "remove", "rex"]),
            code: 0,
            events: &[("user.remove", "success")],
        },
        Case {
            name: "keys list",
            permission: "key.rotate",
            action: "keys.list",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["keys", "list"]),
            code: 0,
            events: &[("keys.list", "success")],
        },
        Case {
            name: "keys passphrase",
            permission: "key.rotate",
            action: "keys.passphrase",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            // The same passphrase again, so the fixture's file keeps working.
            args: s(&[
                "keys",
                "passphrase",
                "--new-passphrase-file",
                &p(&fx.passphrase_file),
            ]),
            code: 0,
            events: &[("keys.passphrase.change", "success")],
        },
        Case {
            name: "keys recovery",
            permission: "key.export",
            action: "keys.recovery",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["keys", "recovery", "--out", &out("recovery")]),
            code: 0,
            events: &[("keys.recovery.new", "success")],
        },
        Case {
            name: "keys rotate",
            permission: "key.rotate",
            action: "keys.rotate",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["keys", "rotate", "signing"]),
            code: 0,
            events: &[("keys.rotate", "success")],
        },
        Case {
            name: "keys service add",
            permission: "key.rotate",
            action: "keys.service.add",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&[
                "keys",
                "service",
                "add",
                "shim",
                "--key-out",
                &out("shim-key"),
            ]),
            code: 0,
            events: &[("keys.service.add", "success")],
        },
        Case {
            name: "keys service remove",
            permission: "key.rotate",
            action: "keys.service.remove",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["keys", "service", "remove", "shim"]),
            code: 0,
            events: &[("keys.service.remove", "success")],
        },
        Case {
            name: "user policy",
            permission: "user.manage",
            action: "user.policy",
            denied: Some(AUDITOR),
            allowed: ADMIN,
            args: s(&["user", "policy"]),
            code: 0,
            events: &[("user.policy", "success")],
        },
        Case {
            name: "user enroll-totp",
            permission: "user.manage",
            action: "user.enroll-totp",
            denied: Some(OPERATOR),
            allowed: ADMIN,
            args: s(&["user", "enroll-totp", AUDITOR, "--no-qr"]),
            code: 0,
            events: &[("user.totp.enroll", "success")],
        },
    ]
}

/// Commands that are not privileged acts on the data directory, and why.
const UNGATED: &[(&str, &str)] = &[
    (
        "init",
        "creates the data directory and the first administrator (master passphrase)",
    ),
    (
        "break-glass",
        "master passphrase, audited as breakglass.recover (tested below)",
    ),
    (
        "audit public-key",
        "prints the public checkpoint key from keyslots.json; nothing secret, nothing changed",
    ),
    (
        "keys check",
        "proves the master passphrase or recovery key opens its slot; reads and changes nothing else",
    ),
    ("demo", "a throwaway data directory of its own"),
    (
        "records schema show",
        "prints the collection schema (no record data) with the master passphrase",
    ),
    ("shim run", "the daemon, acting as its service principal"),
    ("shim bench", "a throwaway shim on PTYs"),
    ("ota serve", "the server, acting as its service principal"),
    ("ota gp", "builds APDUs as text; no data directory"),
    ("ota simulate-card", "a simulated card; no data directory"),
    ("ota bench", "a load generator; no data directory"),
    (
        "user passwd",
        "one's own password needs only the sign-in; another's is user.manage (below)",
    ),
];

fn events_after(fx: &Fixture, seq: u64) -> Vec<StoredRow> {
    warden_store::audit::read_rows(&fx.database(), seq + 1, None).unwrap()
}

fn last_seq(fx: &Fixture) -> u64 {
    warden_store::audit::last_seq(&fx.database()).unwrap()
}

fn hostile_env(cmd: &mut Command) -> &mut Command {
    cmd.env("USER", "mallory").env("LOGNAME", "mallory")
}

fn details(row: &StoredRow) -> serde_json::Value {
    serde_json::from_str(&row.details).unwrap()
}

fn short(rows: &[StoredRow]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|r| (r.actor.clone(), r.action.clone(), r.outcome.clone()))
        .collect()
}

/// Verifies: V42, V58
#[test]
fn every_privileged_command_passes_the_gate_and_leaves_exactly_its_evidence() {
    let fx = Fixture::new();
    let f = files(&fx);
    for case in cases(&fx, &f) {
        // 1. Nobody signed in.
        let before = last_seq(&fx);
        let out = run(hostile_env(fx.warden().args(&case.args)));
        out.expect_code(5);
        let rows = events_after(&fx, before);
        assert_eq!(
            short(&rows),
            [(
                "anonymous".to_owned(),
                format!("{}.denied", case.action),
                "denied".to_owned()
            )],
            "{}: without a sign-in",
            case.name
        );
        assert_eq!(
            details(&rows[0])["permission"],
            case.permission,
            "{}",
            case.name
        );

        // 2. Signed in, but the role lacks the permission.
        if let Some(user) = case.denied {
            let before = last_seq(&fx);
            let out = run(hostile_env(fx.warden_as(user).args(&case.args)));
            out.expect_code(5).stderr_has(&[case.permission]);
            let rows = events_after(&fx, before);
            assert_eq!(
                short(&rows),
                [
                    (
                        user.to_owned(),
                        "login.cli".to_owned(),
                        "success".to_owned()
                    ),
                    (
                        user.to_owned(),
                        format!("{}.denied", case.action),
                        "denied".to_owned()
                    )
                ],
                "{}: as {user}",
                case.name
            );
            assert_eq!(
                details(&rows[1])["permission"],
                case.permission,
                "{}",
                case.name
            );
        }

        // 3. Signed in with the permission.
        let before = last_seq(&fx);
        let out = run(hostile_env(fx.warden_as(case.allowed).args(&case.args)));
        out.expect_code(case.code);
        let rows = events_after(&fx, before);
        let mut expected = vec![(
            case.allowed.to_owned(),
            "login.cli".to_owned(),
            "success".to_owned(),
        )];
        expected.extend(case.events.iter().map(|(action, outcome)| {
            (
                case.allowed.to_owned(),
                (*action).to_owned(),
                (*outcome).to_owned(),
            )
        }));
        assert_eq!(short(&rows), expected, "{}: as {}", case.name, case.allowed);
        assert!(
            rows.iter()
                .all(|r| !r.actor.contains("mallory") && !r.details.contains("mallory")),
            "{}: an actor came from the environment",
            case.name
        );
    }
}

/// Every subcommand `--help` lists is either in the table above or named as ungated with a
/// reason: a new command cannot slip past the gate unnoticed.
/// Verifies: V42, V58
#[test]
fn the_table_covers_every_subcommand() {
    let fx = Fixture::new();
    let f = files(&fx);
    let gated: Vec<&str> = cases(&fx, &f).iter().map(|c| c.name).collect();
    let mut missing = Vec::new();
    for command in leaf_commands(&[]) {
        let name = command.join(" ");
        let ungated = UNGATED
            .iter()
            .any(|(n, _)| name == *n || name.starts_with(&format!("{n} ")));
        if !gated.contains(&name.as_str()) && !ungated {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "commands without a gate decision: {missing:?}"
    );
}

/// The leaf subcommands under `path`, from `warden … --help` (a command line is two spaces
/// and a name; longer indents continue a description).
fn leaf_commands(path: &[String]) -> Vec<Vec<String>> {
    let out = run(support::warden().args(path).arg("--help"));
    out.ok();
    let text = out.stdout_text();
    let Some(section) = text.split("Commands:\n").nth(1) else {
        return vec![path.to_vec()];
    };
    let mut leaves = Vec::new();
    for line in section.lines().take_while(|l| !l.is_empty()) {
        let is_command = line.starts_with("  ") && !line.starts_with("   ");
        let Some(word) = line.split_whitespace().next().filter(|_| is_command) else {
            continue;
        };
        if word == "help" {
            continue;
        }
        let mut next = path.to_vec();
        next.push(word.to_owned());
        leaves.extend(leaf_commands(&next));
    }
    leaves
}

/// The master passphrase alone recovers an administrator, on the record; nothing else.
#[test]
fn break_glass_is_the_master_passphrase_path_and_is_audited() {
    let fx = Fixture::new();
    let new = fx.file("new-admin-password", b"Recovered-Admin-Password-9\n");
    // Not an administrator: refused.
    run(fx
        .warden()
        .args([
            "break-glass",
            "--admin",
            OPERATOR,
            "--reason",
            "test",
            "--new-password-file",
        ])
        .arg(&new))
    .expect_code(1)
    .stderr_has(&["administrators only"]);
    let before = last_seq(&fx);
    run(hostile_env(
        fx.warden()
            .args([
                "break-glass",
                "--admin",
                ADMIN,
                "--reason",
                "ticket 4711",
                "--new-password-file",
            ])
            .arg(&new),
    ))
    .ok();
    let rows = events_after(&fx, before);
    assert_eq!(
        short(&rows),
        [(
            "master-passphrase".to_owned(),
            "breakglass.recover".to_owned(),
            "success".to_owned()
        )]
    );
    assert_eq!(details(&rows[0])["reason"], "ticket 4711");
    // The old password no longer works; the new one does.
    run(fx.admin().args(["user", "policy"])).expect_code(5);
    run(fx
        .warden()
        .args(["--as", ADMIN, "--password-file"])
        .arg(&new)
        .args(["user", "policy"]))
    .ok();
    // A wrong master passphrase recovers nothing.
    let wrong = fx.file("wrong-passphrase", b"this is not the master passphrase\n");
    run(fx
        .warden_without_passphrase()
        .arg("--passphrase-file")
        .arg(&wrong)
        .args([
            "break-glass",
            "--admin",
            ADMIN,
            "--reason",
            "x",
            "--new-password-file",
        ])
        .arg(&new))
    .expect_code(4);
}

/// Every command that needs the master passphrase reads it once, so a pipe works.
#[test]
fn passphrase_fd_from_a_pipe_works_for_every_command() {
    let fx = Fixture::new();
    let f = files(&fx);
    for case in cases(&fx, &f) {
        let before = last_seq(&fx);
        let mut cmd = fx.warden_without_passphrase();
        let password = if case.allowed == ADMIN {
            fx.admin_password_file()
        } else {
            fx.path(&format!("{}-password", case.allowed))
        };
        cmd.args([
            "--passphrase-fd",
            "0",
            "--as",
            case.allowed,
            "--password-file",
        ])
        .arg(password)
        .args(&case.args);
        let out = support::run_with_stdin(&mut cmd, format!("{}\n", fx.passphrase).as_bytes());
        out.expect_code(case.code);
        assert!(
            !out.stderr.contains("passphrase"),
            "{}: {}",
            case.name,
            out.stderr
        );
        assert!(
            last_seq(&fx) > before,
            "{}: nothing was recorded",
            case.name
        );
    }
}

/// The names the trail uses for its own actors cannot be given to a person.
#[test]
fn reserved_actor_names_cannot_be_user_names() {
    let fx = Fixture::new();
    for name in [
        "anonymous",
        "master-passphrase",
        "warden",
        "service",
        "invalid-name-00ff",
    ] {
        run(fx
            .admin()
            .args(["user", "add", name, "--role", "technician", "--no-qr"]))
        .expect_code(1)
        .stderr_has(&["reserved"]);
    }
}

/// A failed sign-in proves nobody: its actor is `anonymous`, the name tried is the subject, so
/// "locking root by root" cannot be written into the trail by whoever types `--as root`.
#[test]
fn failed_sign_ins_are_recorded_as_anonymous() {
    let fx = Fixture::new();
    let wrong = fx.file("wrong", b"Not-The-Admin-Password-9\n");
    let before = last_seq(&fx);
    run(fx
        .warden()
        .args(["--as", ADMIN, "--password-file"])
        .arg(&wrong)
        .args(["user", "list"]))
    .expect_code(5);
    let rows = events_after(&fx, before);
    assert_eq!(
        short(&rows),
        [(
            "anonymous".to_owned(),
            "login.cli".to_owned(),
            "failure".to_owned()
        )]
    );
    assert_eq!(rows[0].subject, "user:admin");
}

/// The passphrase is read from standard input up to its newline and no further: the rest of
/// standard input is the command's.
#[test]
fn passphrase_fd_0_leaves_the_rest_of_standard_input_to_the_command() {
    let fx = Fixture::new();
    let sealed = fx.path("piped.sealed");
    let mut cmd = fx.admin_without_passphrase();
    cmd.args(["--passphrase-fd", "0", "vault", "seal", "-"])
        .arg(&sealed);
    let data = b"the data after the passphrase line\n".repeat(300);
    let mut input = format!("{}\n", fx.passphrase).into_bytes();
    input.extend_from_slice(&data);
    support::run_with_stdin(&mut cmd, &input).ok();
    let out = run(fx.admin().args(["vault", "open"]).arg(&sealed).arg("-"));
    out.ok();
    assert_eq!(out.stdout, data);
}
