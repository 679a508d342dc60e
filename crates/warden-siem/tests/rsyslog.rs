//! Integration tests against a real rsyslog (TLS, x509/name, one permitted peer): byte-exact
//! arrival, refusal of wrong clients by cause, an outage with a warden restart, priorities, and
//! the spool limit policy. See `support` for the harness; no test asserts on timing.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{cef_of, free_port, rsyslog_available, seq_of, Pki, Rsyslog, ARRIVAL_TIMEOUT};
use warden_core::secret::Key32;
use warden_siem::check::send_test_event;
use warden_siem::config::{Endpoint, SiemConfig, SiemSettings};
use warden_siem::message::frame_row;
use warden_siem::tls::{ClientIdentity, FailureKind, TlsClient};
use warden_siem::ForwarderHandle;
use warden_store::spool::{DeliveryCursor, Enqueued, Spool, SpoolKind, SpoolPayload};
use warden_store::Database;

struct Setup {
    tmp: tempfile::TempDir,
    pki: Pki,
    rsyslog: Rsyslog,
    db_path: PathBuf,
    key: Key32,
    rt: tokio::runtime::Runtime,
}

fn setup() -> Option<Setup> {
    if !rsyslog_available() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::create(&tmp.path().join("pki"));
    let rsyslog = Rsyslog::start(&tmp.path().join("rsyslog"), &pki, free_port());
    let db_path = tmp.path().join("warden.db");
    drop(Database::create(&db_path, &Key32::from_bytes([7; 32])).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Some(Setup {
        tmp,
        pki,
        rsyslog,
        db_path,
        key: Key32::from_bytes([7; 32]),
        rt,
    })
}

impl Setup {
    fn yaml(&self, extra: &str) -> String {
        format!(
            "siem:
  host: 127.0.0.1
  port: {port}
  server_name: localhost
  ca_file: {ca}
  client_cert: {cert}
  client_key: {key}
  hostname: shim-12.test
  device_id: shim-a
  delivery: {{ confirm_after_ms: 300, poll_ms: 200, batch: 100 }}
  backoff: {{ initial_ms: 50, max_ms: 1000 }}
{extra}",
            port = self.rsyslog.port,
            ca = self.pki.ca.cert_path.display(),
            cert = self.pki.client.cert_path.display(),
            key = self.pki.client.key_path.display(),
        )
    }

    fn settings(&self, extra: &str) -> SiemSettings {
        SiemConfig::from_yaml_document(self.yaml(extra).as_bytes())
            .unwrap()
            .validate()
            .unwrap()
    }

    fn db(&self) -> Database {
        Database::open(&self.db_path, &self.key).unwrap()
    }

    fn forwarder(&self, settings: &SiemSettings) -> ForwarderHandle {
        let client = TlsClient::from_settings(settings, None).unwrap();
        let _guard = self.rt.enter();
        warden_siem::spawn(self.db(), settings, client)
    }

    fn client_with(&self, ca: &Path, identity: Option<&support::Issued>, name: &str) -> TlsClient {
        let settings = self.settings("");
        let id = identity.map(|i| ClientIdentity::load(&i.cert_path, &i.key_path, None).unwrap());
        TlsClient::new(
            Endpoint {
                server_name: name.into(),
                ..settings.endpoint.clone()
            },
            settings.timeouts,
            ca,
            id.as_ref(),
        )
        .unwrap()
    }
}

fn audit(i: u64) -> SpoolPayload {
    SpoolPayload {
        user: Some(format!("tech-{i:03}")),
        action: Some("login".into()),
        outcome: Some(i % 2 == 0),
        ..SpoolPayload::default()
    }
}

fn stored(e: Enqueued) -> u64 {
    match e {
        Enqueued::Stored { seq } => seq,
        other => panic!("not stored: {other:?}"),
    }
}

/// Polls `cond` (no timing assertion: only a generous upper bound against hanging forever).
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < ARRIVAL_TIMEOUT,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spool_rows(db: &Database) -> u64 {
    Spool::default().stats(db.conn()).unwrap().rows
}

/// Verifies: S10, S48, V59
#[test]
fn messages_arrive_byte_exact_and_parse_as_cef() {
    let Some(s) = setup() else { return };
    let settings = s.settings("");
    let producer = s.db();
    let spool = Spool::new(settings.spool);
    let tricky = SpoolPayload {
        user: Some("tech=001\\x".into()),
        action: Some("login".into()),
        outcome: Some(false),
        reason: Some("bad_code".into()),
        message: Some("line1\nline2 | pipe = equals \\ backslash ü [x] \"q\"".into()),
        session_id: Some("6f9619ff-8b86-d011-b42d-00c04fc964ff".into()),
        ..SpoolPayload::default()
    };
    let conn = producer.conn();
    let a = stored(
        spool
            .enqueue(conn, SpoolKind::AuditEvent, 1_776_244_923_500, &tricky)
            .unwrap(),
    );
    let c = stored(
        spool
            .enqueue_checkpoint(conn, 41, &"ab".repeat(32), 1_776_244_923_600)
            .unwrap(),
    );
    let h = stored(spool.enqueue_heartbeat(conn, 9, 1_776_244_923_700).unwrap());
    let tamper = SpoolPayload {
        action: Some("tamper.case_open".into()),
        tamper_source: Some("case switch S1".into()),
        ..SpoolPayload::default()
    };
    let t = stored(
        spool
            .enqueue(conn, SpoolKind::TamperAlert, 1_776_244_923_800, &tamper)
            .unwrap(),
    );

    // What must arrive, in delivery order, byte for byte (the frame minus `LEN SP`).
    let rows = spool
        .next_batch(conn, &DeliveryCursor::default(), 10)
        .unwrap();
    let expected: Vec<String> = rows
        .iter()
        .map(|r| {
            let framed = frame_row(r, &settings.identity, settings.delivery.max_message_bytes);
            let sp = framed.iter().position(|&b| b == b' ').unwrap();
            String::from_utf8(framed[sp + 1..].to_vec()).unwrap()
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![t, a, c, h]
    );

    let fwd = s.forwarder(&settings);
    let got = s.rsyslog.wait_for("4 messages", |l| l.len() >= 4);
    assert_eq!(
        got, expected,
        "rsyslog must store exactly the bytes warden sent"
    );

    let cef = cef_of(&got[1]).expect("CEF payload");
    assert_eq!(
        cef.header[..6],
        [
            "0",
            "warden",
            "warden",
            env!("CARGO_PKG_VERSION"),
            "audit-event",
            "Audit event"
        ]
        .map(String::from)
    );
    assert_eq!(cef.get("cn1"), Some(a.to_string().as_str()));
    assert_eq!(cef.get("cn1Label"), Some("warden_seq"));
    assert_eq!(cef.get("suser"), Some("tech=001\\x"));
    assert_eq!(cef.get("msg"), tricky.message.as_deref());
    assert_eq!(cef.get("dvchost"), Some("shim-12.test"));
    assert_eq!(cef.get("deviceExternalId"), Some("shim-a"));
    let checkpoint = cef_of(&got[2]).unwrap();
    assert_eq!(checkpoint.get("cn2"), Some("41"));
    assert_eq!(checkpoint.get("cs2"), Some("ab".repeat(32).as_str()));
    assert_eq!(cef_of(&got[0]).unwrap().header[4], "tamper-alert");
    assert_eq!(cef_of(&got[3]).unwrap().get("cn3"), Some("9"));

    // Delivered messages leave the spool.
    eventually("the spool to empty", || spool_rows(&producer) == 0);
    let status = fwd.status();
    assert!(
        status.confirmed >= 4 && status.connections >= 1,
        "{status:?}"
    );
    s.rt.block_on(fwd.shutdown(Duration::from_secs(30)));
}

/// Verifies: S48, V59
#[test]
fn refused_clients_and_untrusted_servers_are_reported_by_cause() {
    let Some(s) = setup() else { return };
    let settings = s.settings("");
    let p = &s.pki;
    let watch = Duration::from_secs(5);
    let max = settings.delivery.max_message_bytes;
    let try_client = |client: TlsClient| {
        s.rt.block_on(send_test_event(&client, &settings.identity, watch, max))
            .map_err(|e| (e.kind(), e.to_string()))
    };
    let ca = &p.ca.cert_path;

    let cases: Vec<(&str, TlsClient, FailureKind)> = vec![
        (
            "no client certificate",
            s.client_with(ca, None, "localhost"),
            FailureKind::ClientCertRejected,
        ),
        (
            "a certificate for another name",
            s.client_with(ca, Some(&p.client_wrong_name), "localhost"),
            FailureKind::ClientCertRejected,
        ),
        (
            "a certificate from another CA",
            s.client_with(ca, Some(&p.client_other_ca), "localhost"),
            FailureKind::ClientCertRejected,
        ),
        (
            "a server from an untrusted CA",
            s.client_with(&p.other_ca.cert_path, Some(&p.client), "localhost"),
            FailureKind::ServerCertUntrusted,
        ),
        (
            "a server name mismatch",
            s.client_with(ca, Some(&p.client), "siem.elsewhere.test"),
            FailureKind::NameMismatch,
        ),
    ];
    for (what, client, want) in cases {
        match try_client(client) {
            Err((kind, msg)) => assert_eq!(kind, want, "{what}: {msg}"),
            Ok(r) => panic!("{what}: accepted ({:?})", r.tls_version),
        }
    }

    // Nothing listens: refused. A listener that never speaks TLS: handshake timeout.
    let closed_port = free_port();
    let mut refused = s.settings("");
    refused.endpoint.port = closed_port;
    let client = TlsClient::from_settings(&refused, None).unwrap();
    assert_eq!(try_client(client).unwrap_err().0, FailureKind::Refused);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut hang = s.settings("  timeouts: { handshake_ms: 1000 }\n");
    hang.endpoint.port = silent.local_addr().unwrap().port();
    let client = TlsClient::from_settings(&hang, None).unwrap();
    let (kind, msg) = try_client(client).unwrap_err();
    assert_eq!(kind, FailureKind::Timeout, "{msg}");
    assert!(msg.contains("TLS handshake"), "{msg}");

    // The right client gets through, byte-exact; nothing from the refused ones arrived.
    let good = TlsClient::from_settings(&settings, None).unwrap();
    let report = try_client(good).expect("the permitted client must be accepted");
    let got = s.rsyslog.wait_for("the test message", |l| !l.is_empty());
    let sp = report.frame.iter().position(|&b| b == b' ').unwrap();
    assert_eq!(
        got,
        vec![String::from_utf8(report.frame[sp + 1..].to_vec()).unwrap()]
    );
    let cef = cef_of(&got[0]).unwrap();
    assert_eq!(cef.header[4], "siem-test");
    assert_eq!(cef.get("cn1"), None, "a test message carries no warden_seq");

    // The forwarder reports a refused certificate too, and keeps the message spooled.
    let wrong = s.settings("").files.client_key.clone();
    assert!(wrong.exists());
    let mut bad = s.settings("");
    bad.files.client_cert = p.client_wrong_name.cert_path.clone();
    bad.files.client_key = p.client_wrong_name.key_path.clone();
    let producer = s.db();
    let _ = stored(
        Spool::default()
            .enqueue(producer.conn(), SpoolKind::AuditEvent, 1, &audit(1))
            .unwrap(),
    );
    let fwd = s.forwarder(&bad);
    eventually("the forwarder to report the rejection", || {
        matches!(
            fwd.status().last_error,
            Some((FailureKind::ClientCertRejected, _))
        )
    });
    assert_eq!(
        spool_rows(&producer),
        1,
        "an unconfirmed message stays in the spool"
    );
    assert_eq!(
        s.rsyslog.received().len(),
        1,
        "nothing from a refused client is stored"
    );
    fwd.abort();
}

#[test]
fn outage_and_restart_lose_nothing_and_keep_order() {
    let Some(mut s) = setup() else { return };
    let settings = s.settings("");
    let producer = s.db();
    let spool = Spool::new(settings.spool);
    let mut all = Vec::new();
    let enqueue = |all: &mut Vec<u64>, n: u64, fwd: Option<&ForwarderHandle>| {
        for _ in 0..n {
            let i = all.len() as u64;
            let e = spool.enqueue(
                producer.conn(),
                SpoolKind::AuditEvent,
                1_000 + i as i64,
                &audit(i),
            );
            all.push(stored(e.unwrap()));
            if let Some(f) = fwd {
                f.notify();
            }
        }
    };

    let fwd = s.forwarder(&settings);
    enqueue(&mut all, 20, Some(&fwd));
    let first = all.clone();
    s.rsyslog.wait_for("the first 20 messages", |l| {
        let seen: BTreeSet<u64> = l.iter().filter_map(|x| seq_of(x)).collect();
        first.iter().all(|q| seen.contains(q))
    });

    // Outage: rsyslog stops while events keep coming.
    s.rsyslog.stop();
    for _ in 0..20 {
        enqueue(&mut all, 1, Some(&fwd));
        std::thread::sleep(Duration::from_millis(10));
    }
    eventually("the forwarder to notice the outage", || {
        let st = fwd.status();
        !st.connected && st.failures >= 1
    });
    // warden restarts during the outage (the old task dies like a crashed process).
    fwd.abort();
    enqueue(&mut all, 20, None);
    let fwd = s.forwarder(&settings);
    enqueue(&mut all, 10, Some(&fwd));
    eventually("the new forwarder to be refused", || {
        matches!(fwd.status().last_error, Some((FailureKind::Refused, _)))
    });

    // rsyslog comes back on the same port.
    s.rsyslog.restart();
    let expected: BTreeSet<u64> = all.iter().copied().collect();
    let got = s.rsyslog.wait_for("every sequence number", |l| {
        let seen: BTreeSet<u64> = l.iter().filter_map(|x| seq_of(x)).collect();
        expected.is_subset(&seen)
    });
    let seqs: Vec<u64> = got.iter().filter_map(|l| seq_of(l)).collect();
    assert_eq!(seqs.len(), got.len(), "every line is a warden message");
    // First occurrences are in order (repeats of unconfirmed messages may follow a reconnect).
    let mut firsts = Vec::new();
    let mut seen = BTreeSet::new();
    for q in &seqs {
        if seen.insert(*q) {
            firsts.push(*q);
        }
    }
    assert_eq!(firsts, all, "every seq, none missing, in order");
    eprintln!(
        "outage test: {} messages, {} received lines ({} repeats)",
        all.len(),
        seqs.len(),
        seqs.len() - all.len()
    );
    eventually("the spool to empty", || spool_rows(&producer) == 0);
    s.rt.block_on(fwd.shutdown(Duration::from_secs(30)));
    drop(s.tmp);
}

/// Verifies: S13, S20
#[test]
fn tamper_alerts_jump_the_queue_and_heartbeats_come_last() {
    let Some(s) = setup() else { return };
    let settings = s.settings("");
    let producer = s.db();
    let spool = Spool::new(settings.spool);
    let conn = producer.conn();
    let mut hb = Vec::new();
    let mut audits = Vec::new();
    let mut checkpoints = Vec::new();
    let mut alerts = Vec::new();
    for i in 0..30u64 {
        if i % 10 == 0 {
            hb.push(stored(spool.enqueue_heartbeat(conn, i, 0).unwrap()));
            checkpoints.push(stored(spool.enqueue_checkpoint(conn, i, "00", 0).unwrap()));
        }
        audits.push(stored(
            spool
                .enqueue(conn, SpoolKind::AuditEvent, 0, &audit(i))
                .unwrap(),
        ));
    }
    for _ in 0..3 {
        alerts.push(stored(
            spool
                .enqueue(conn, SpoolKind::TamperAlert, 0, &audit(99))
                .unwrap(),
        ));
    }
    let expected: Vec<u64> = [alerts, audits, checkpoints, hb].concat();
    let fwd = s.forwarder(&settings);
    let got = s
        .rsyslog
        .wait_for("all messages", |l| l.len() >= expected.len());
    let seqs: Vec<u64> = got.iter().filter_map(|l| seq_of(l)).collect();
    assert_eq!(seqs, expected);
    fwd.abort();
}

#[test]
fn spool_overflow_drops_only_heartbeats_and_reports_them() {
    let Some(s) = setup() else { return };
    let settings = s.settings("  spool: { soft_limit: 10, hard_limit: 15, alert_reserve: 2 }\n");
    let producer = s.db();
    let spool = Spool::new(settings.spool);
    let conn = producer.conn();
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    for i in 0..10u64 {
        match spool.enqueue_heartbeat(conn, i, 0).unwrap() {
            Enqueued::Stored { .. } => {}
            Enqueued::HeartbeatDropped { .. } => dropped += 1,
        }
    }
    for i in 0..15u64 {
        kept.push(stored(
            spool
                .enqueue(conn, SpoolKind::AuditEvent, 0, &audit(i))
                .unwrap(),
        ));
    }
    // Hard limit: audit refused ("storage exhausted"), tamper alerts still fit in the reserve.
    let err = spool
        .enqueue(conn, SpoolKind::AuditEvent, 0, &audit(99))
        .unwrap_err();
    assert!(err.is_storage_exhausted(), "{err}");
    let alert = stored(
        spool
            .enqueue(conn, SpoolKind::TamperAlert, 0, &audit(98))
            .unwrap(),
    );
    let stats = spool.stats(conn).unwrap();
    assert_eq!(stats.per_kind, [1, 15, 0, 0], "every heartbeat made room");
    assert_eq!(stats.dropped_pending, 10 + dropped);

    let fwd = s.forwarder(&settings);
    let got = s
        .rsyslog
        .wait_for("alert, audit events and the overflow report", |l| {
            l.len() >= 17
        });
    let seqs: Vec<u64> = got.iter().filter_map(|l| seq_of(l)).collect();
    assert_eq!(seqs[0], alert);
    assert_eq!(&seqs[1..16], &kept[..]);
    let report = cef_of(&got[16]).unwrap();
    assert_eq!(report.header[4], "spool-overflow");
    assert_eq!(report.get("cn3Label"), Some("dropped_heartbeats"));
    assert_eq!(report.get("cn3"), Some("10"));
    // Every number is accounted for: received, or inside the reported dropped range.
    assert!(
        report
            .get("msg")
            .unwrap()
            .contains("between warden_seq 0 and 9"),
        "{:?}",
        report.get("msg")
    );
    fwd.abort();
}

/// Benchmark, not a check (run by `scripts/bench/siem.sh`): spool append cost and messages per
/// second through the forwarder to the real rsyslog. Prints figures; asserts only completeness.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture (see docs/BENCHMARKS.md)"]
fn throughput_to_real_rsyslog() {
    let Some(s) = setup() else { return };
    let n: u64 = std::env::var("WARDEN_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut settings = s.settings("");
    settings.delivery.confirm_after = Duration::from_secs(1);
    settings.delivery.batch = 500;
    settings.delivery.max_in_flight = 100_000;
    let mut producer = s.db();
    let spool = Spool::new(settings.spool);

    let t = Instant::now();
    let tx = producer.conn_mut().transaction().unwrap();
    for i in 0..n {
        let _ = stored(
            spool
                .enqueue(&tx, SpoolKind::AuditEvent, 1_000 + i as i64, &audit(i))
                .unwrap(),
        );
    }
    tx.commit().unwrap();
    let append = t.elapsed();

    let t = Instant::now();
    let one_tx = 200u64;
    for i in 0..one_tx {
        let tx = producer.conn_mut().transaction().unwrap();
        let _ = stored(
            spool
                .enqueue(&tx, SpoolKind::AuditEvent, 1_000 + i as i64, &audit(i))
                .unwrap(),
        );
        tx.commit().unwrap();
    }
    let single = t.elapsed();
    let total = n + one_tx;

    let t = Instant::now();
    let fwd = s.forwarder(&settings);
    let got = s
        .rsyslog
        .wait_for("all messages", |l| l.len() as u64 >= total);
    let delivered = t.elapsed();
    eventually("the spool to empty", || spool_rows(&producer) == 0);
    let drained = t.elapsed();
    let bytes: usize = got.iter().map(|l| l.len()).sum();
    eprintln!(
        "BENCH spool append, {n} in one transaction: {:.1} µs/message ({:.0} messages/s)",
        append.as_secs_f64() * 1e6 / n as f64,
        n as f64 / append.as_secs_f64()
    );
    eprintln!(
        "BENCH spool append, one transaction each ({one_tx}): {:.2} ms/message",
        single.as_secs_f64() * 1e3 / one_tx as f64
    );
    eprintln!(
        "BENCH forwarder to rsyslog: {total} messages ({:.0} bytes average) in {:.2} s = {:.0} messages/s; spool empty after {:.2} s",
        bytes as f64 / got.len() as f64,
        delivered.as_secs_f64(),
        total as f64 / delivered.as_secs_f64(),
        drained.as_secs_f64()
    );
    s.rt.block_on(fwd.shutdown(Duration::from_secs(30)));
}
