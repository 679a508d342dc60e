//! `warden ota serve` and the SIEM: with a `siem:` section in ota.yaml, the server's audit
//! records reach a real rsyslog (mutual TLS, RFC 5425, CEF) through its own forwarder; without
//! one, nothing is queued for a SIEM (a queue nobody drains would fill, and at its hard limit
//! refuse the records and so the server's work).

#[path = "support/mod.rs"]
mod cli;
#[path = "../../warden-siem/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use cli::{run, Fixture, OtaServer};
use support::{cef_of, free_port, rsyslog_available, Pki, Rsyslog};
use warden_core::keyring::Purpose;
use warden_ota::keys::Psk;
use warden_ota::simulator::{run_session, CardConfig, GpCard};

const PSK_HEX: &str = "00112233445566778899aabbccddeeff";

/// A card with a key and one script queued (before the server starts: it loads keys then).
fn card_with_a_script(fx: &Fixture, card: &str) {
    let keys = fx.file(
        &format!("{card}.yaml"),
        format!("keys:\n  - identity: {card}\n    key: \"{PSK_HEX}\"\n").as_bytes(),
    );
    run(fx.admin().args(["ota", "keys", "import"]).arg(&keys)).ok();
    run(fx
        .admin()
        .args(["ota", "push", "--card", card, "--apdu", "80CA9F7F00"]))
    .ok();
}

/// One full session of `card` against the server on `port`.
fn one_session(port: u16, card: &str) {
    let cfg = CardConfig::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        card,
        Arc::new(Psk::from_hex(PSK_HEX).unwrap()),
    );
    let report = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { run_session(&cfg, &mut GpCard::new()).await })
        .unwrap();
    assert_eq!(report.scripts.len(), 1);
}

/// Queued SIEM messages of the server's own records (the CLI's `ota push` and `keys import`
/// queue theirs, as every command does).
fn spool_rows(fx: &Fixture) -> i64 {
    let db = warden_store::Database::open(
        &fx.data_dir.join("state/warden.db"),
        &fx.key(Purpose::Database),
    )
    .unwrap();
    db.conn()
        .query_row(
            "SELECT count(*) FROM siem_spool
             WHERE payload LIKE '%ota.session.%' OR payload LIKE '%ota.script.deliver%'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Verifies: O75
#[test]
fn the_ota_server_forwards_its_records_to_the_siem_only_when_configured() {
    let fx = Fixture::new();

    // Without `siem:`: the session is stored and audited, and nothing waits for a SIEM.
    let port = free_port();
    let plain = fx.file("ota.yaml", format!("listen: 127.0.0.1:{port}\n").as_bytes());
    card_with_a_script(&fx, "quiet-card");
    let server = OtaServer::start(&fx, &plain, 0);
    one_session(port, "quiet-card");
    server.stop();
    assert_eq!(
        spool_rows(&fx),
        0,
        "OTA records queued with no SIEM configured"
    );

    if !rsyslog_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::create(&tmp.path().join("pki"));
    let rsyslog = Rsyslog::start(&tmp.path().join("rsyslog"), &pki, free_port());
    let port = free_port();
    let config = fx.file(
        "ota-siem.yaml",
        format!(
            "listen: 127.0.0.1:{port}\n\
             siem:\n  host: 127.0.0.1\n  port: {}\n  server_name: localhost\n  \
             ca_file: {}\n  client_cert: {}\n  client_key: {}\n  hostname: ota-test\n  \
             delivery: {{ confirm_after_ms: 200, poll_ms: 100 }}\n",
            rsyslog.port,
            pki.ca.cert_path.display(),
            pki.client.cert_path.display(),
            pki.client.key_path.display(),
        )
        .as_bytes(),
    );
    card_with_a_script(&fx, "loud-card");
    let server = OtaServer::start(&fx, &config, 1);
    one_session(port, "loud-card");
    let got = rsyslog.wait_for("the script's completion record", |lines| {
        lines.iter().any(|l| {
            cef_of(l).is_some_and(|c| c.get("act") == Some("ota.script.complete"))
                && l.contains("loud-card")
        })
    });
    // In chain order, each record once.
    let actions: Vec<String> = got
        .iter()
        .filter_map(|l| cef_of(l))
        .filter_map(|c| c.get("act").map(str::to_owned))
        .filter(|a| a.starts_with("ota."))
        .collect();
    for expected in ["ota.script.deliver", "ota.script.complete"] {
        assert_eq!(
            actions.iter().filter(|a| *a == expected).count(),
            1,
            "{actions:?}"
        );
    }
    // Delivered and confirmed: the queue drains.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while spool_rows(&fx) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the SIEM queue never drained"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();

    // A `siem:` section that does not validate stops the server before it listens.
    let bad = fx.file(
        "ota-bad.yaml",
        format!(
            "listen: 127.0.0.1:{}\nsiem:\n  host: 127.0.0.1\n  port: 0\n",
            free_port()
        )
        .as_bytes(),
    );
    let out = run(fx
        .warden()
        .args(["ota", "serve", "--allow-plain-config", "--config"])
        .arg(&bad));
    assert_ne!(out.code, 0);
    out.stderr_has(&["siem"]);
}
