//! Regression tests for problems found by outside interop testing, over real sockets. Each test
//! failed before its fix.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden_ota::admin::{
    header, Redelivery, ADMIN_PROTOCOL, CONTENT_TYPE_COMMAND, CONTENT_TYPE_RESPONSE,
};
use warden_ota::apdu::parse_hex;
use warden_ota::gp;
use warden_ota::script::CommandScript;
use warden_ota::simulator::{AdminClient, CardBody, CardResponse};
use warden_ota::tls::ClientTlsOptions;

const CARD: &str = "card-r";

fn read_script() -> CommandScript {
    CommandScript::new([gp::get_data(gp::data_object::IIN)])
}

fn base_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Host", "ota.test".into()),
        (header::X_ADMIN_PROTOCOL, ADMIN_PROTOCOL.into()),
        (header::X_ADMIN_FROM, "//se-id/iccid/r".into()),
    ]
}

async fn server_with_card() -> support::TestServer {
    let t = support::start(support::config()).await;
    t.add_card(CARD, &support::psk(9)).await;
    t
}

async fn client(t: &support::TestServer) -> AdminClient {
    AdminClient::connect(t.addr, CARD, support::psk(9), &ClientTlsOptions::default())
        .await
        .unwrap()
}

/// Opens a session on a new connection; returns the client, the response and its Next-URI.
async fn open(t: &support::TestServer) -> (AdminClient, CardResponse, String) {
    let mut c = client(t).await;
    let r = c
        .send("POST", "/admin", &base_headers(), CardBody::empty())
        .await
        .unwrap();
    let next = r
        .header(header::X_ADMIN_NEXT_URI)
        .unwrap_or_default()
        .to_string();
    (c, r, next)
}

/// `(actor, subject, outcome, details)` of the audit rows with `action`.
async fn audit_rows(
    t: &support::TestServer,
    action: &'static str,
) -> Vec<(String, String, String, serde_json::Value)> {
    t.store
        .call(move |tx, _| {
            let mut stmt = tx.prepare(
                "SELECT actor, subject, outcome, details FROM audit_events WHERE action = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([action], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            Ok(rows
                .map(|r| {
                    r.map(|(a, s, o, d)| (a, s, o, serde_json::from_str(&d).unwrap_or_default()))
                })
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
}

/// Regression: an empty first POST with `Content-Type: …-response;version=1.0` and
/// `Content-Length: 0` (what card stacks send) got 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_opening_with_the_response_content_type_is_accepted() {
    let t = server_with_card().await;
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut c = client(&t).await;
    let mut h = base_headers();
    h.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.into()));
    h.push(("Content-Length", "0".into()));
    let r = c
        .send("POST", "/admin", &h, CardBody::empty())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header(header::CONTENT_TYPE), Some(CONTENT_TYPE_COMMAND));
    let e = t.wait_for(|e| e.event.name() == "session_active").await;
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(
        json["lenient"],
        serde_json::json!(["content_type_on_opening"])
    );
    let opened = audit_rows(&t, "ota.session.open").await;
    assert_eq!(
        opened[0].3["lenient"],
        serde_json::json!(["content_type_on_opening"])
    );
    t.stop().await;
}

/// Regression: a status-only report (`X-Admin-Script-Status: security-error`, no body) without
/// Content-Type got 415; the report was lost and the read script went out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_only_report_without_content_type_is_recorded() {
    let t = server_with_card().await;
    for status in [
        "security-error",
        "unknown-application",
        "not-a-security-domain",
    ] {
        let id = t.push(CARD, read_script(), Redelivery::Allowed).await;
        let (mut c, r, next) = open(&t).await;
        assert_eq!(r.status, 200);
        let mut h = base_headers();
        h.push((header::X_ADMIN_SCRIPT_STATUS, status.into()));
        let r = c.send("POST", &next, &h, CardBody::empty()).await.unwrap();
        assert_eq!(r.status, 204, "{status}");
        let rep = t
            .reports(CARD)
            .await
            .into_iter()
            .find(|s| s.id == id)
            .unwrap();
        assert_eq!(
            (
                rep.state.as_str(),
                rep.script_status.as_deref(),
                rep.deliveries
            ),
            ("done", Some(status), 1)
        );
    }
    t.stop().await;
}

/// Regression: response scripts with the TS 102 226 error TLVs (90 bad format, 81 immediate
/// action response, 83 script chaining response) were stored as a plain `ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_tlvs_in_response_scripts_are_recorded() {
    let t = server_with_card().await;
    let cases = [
        ("ab06800101900101", "bad-format", "90"),
        ("ab06800101810101", "immediate-action-error", "81"),
        ("ab06800101830101", "script-chaining-error", "83"),
    ];
    for (hex, result, tlv) in cases {
        let id = t.push(CARD, read_script(), Redelivery::Allowed).await;
        let (mut c, _, next) = open(&t).await;
        let mut h = base_headers();
        h.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.into()));
        h.push((header::X_ADMIN_SCRIPT_STATUS, "ok".into()));
        let r = c
            .send("POST", &next, &h, CardBody::full(parse_hex(hex).unwrap()))
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        let rep = t
            .reports(CARD)
            .await
            .into_iter()
            .find(|s| s.id == id)
            .unwrap();
        assert_eq!(rep.script_status.as_deref(), Some(result), "{hex}");
        let completed = t
            .wait_for(|e| {
                e.to_json().contains("\"script_completed\"")
                    && e.to_json().contains(&format!("\"script_id\":{id}"))
            })
            .await;
        assert!(completed.to_json().contains(&format!("TLV {tlv}")));
        let rows = audit_rows(&t, "ota.script.complete").await;
        let row = rows.iter().find(|r| r.3["script"] == id).unwrap();
        assert_eq!(row.2, "failure", "{hex}");
        assert_eq!(row.3["result"], result);
        assert_eq!(row.3["error"]["tlv"], tlv);
        assert_eq!(row.3["executed"], 1);
    }
    t.stop().await;
}

/// Regression: `warden ota bench sessions` ran two sessions of one card at once and some got
/// 404 (the second session replaced the first one's state). The server now answers a second
/// concurrent session with 409 and leaves the first alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_concurrent_session_of_a_card_gets_409() {
    let t = server_with_card().await;
    // Server side: a second connection opening while the first has a script out.
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let (mut first, r, next) = open(&t).await;
    assert_eq!(r.status, 200);
    let (_, second, _) = open(&t).await;
    assert_eq!(second.status, 409);
    let e = t.wait_for(|e| e.to_json().contains("\"status\":409")).await;
    assert!(e.to_json().contains("another admin session of this card"));
    // The first session is unharmed.
    let mut h = base_headers();
    h.push((header::X_ADMIN_SCRIPT_STATUS, "security-error".into()));
    let r = first
        .send("POST", &next, &h, CardBody::empty())
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    t.stop().await;
}

/// Regression: the load generator ran two sessions of one card at once. It now runs one
/// session per card at a time, even with more concurrency than cards.
/// Verifies: O3, O81
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_sessions_runs_one_session_per_card_at_a_time() {
    let t = support::start(support::config()).await;
    let key = support::psk(4);
    for i in 0..2 {
        t.add_card(&format!("bench-{i}"), &key).await;
        for _ in 0..6 {
            t.push(&format!("bench-{i}"), read_script(), Redelivery::Allowed)
                .await;
        }
    }
    let r =
        warden_ota::bench::sessions(t.addr, "bench-", 2, key, 24, 8, ClientTlsOptions::default())
            .await;
    assert_eq!(
        (r.sessions_ok, r.sessions_failed, r.first_error.as_deref()),
        (24, 0, None)
    );
    assert_eq!(r.scripts, 12);
    t.stop().await;
}

/// Regression: `server_stopped` said `open_sessions: 0` although a session was open at the stop
/// (it counted the connections left after draining).
/// Verifies: O15, O50
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopped_counts_the_sessions_open_at_the_stop() {
    let t = server_with_card().await;
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let (_c, r, _) = open(&t).await;
    assert_eq!(r.status, 200);
    let events = t.events.clone();
    let store = t.store.clone();
    tokio::time::timeout(Duration::from_secs(30), t.stop())
        .await
        .expect("stops");
    let stopped = events
        .recent()
        .into_iter()
        .find(|e| e.event.name() == "server_stopped")
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&stopped.to_json()).unwrap();
    assert_eq!(json["open_sessions"], 1, "{json}");
    assert_eq!(json["not_drained"], 0);
    let details: String = store
        .call(|tx, _| {
            Ok(tx.query_row(
                "SELECT details FROM audit_events WHERE action = 'ota.server.stop'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert!(details.contains("\"open_sessions\":1"), "{details}");
}

/// A TLS 1.3 ClientHello record offering only `psk_ke`, with a PSK for `identity`.
fn psk_ke_only_client_hello(identity: &str) -> Vec<u8> {
    fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut v = kind.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }
    let mut psk = Vec::new();
    let mut ids = (identity.len() as u16).to_be_bytes().to_vec();
    ids.extend_from_slice(identity.as_bytes());
    ids.extend_from_slice(&0u32.to_be_bytes());
    psk.extend_from_slice(&(ids.len() as u16).to_be_bytes());
    psk.extend(ids);
    psk.extend_from_slice(&33u16.to_be_bytes());
    psk.push(32);
    psk.extend_from_slice(&[0; 32]);
    let mut exts = ext(43, &[2, 3, 4]); // supported_versions: TLS 1.3
    exts.extend(ext(45, &[1, 0])); // psk_key_exchange_modes: psk_ke only
    exts.extend(ext(41, &psk)); // pre_shared_key (last)
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5A; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend(body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend(hs);
    record
}

/// Regression: a TLS 1.3 client offering only `psk_ke` was refused as `kind: other`.
/// Verifies: O17
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_psk_ke_only_client_is_named() {
    let t = server_with_card().await;
    let mut tcp = TcpStream::connect(t.addr).await.unwrap();
    tcp.write_all(&psk_ke_only_client_hello(CARD))
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut out)).await;
    assert_eq!(out.first(), Some(&0x15), "an alert record: {out:02X?}");
    let e = t.wait_for(|e| e.event.name() == "handshake_failed").await;
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(json["kind"], "psk_ke_only", "{json}");
    assert!(json["reason"]
        .as_str()
        .unwrap()
        .contains("requires psk_dhe_ke"));
    assert_eq!(
        json["partial_state"]["psk_kex_modes"],
        serde_json::json!(["psk_ke"])
    );
    assert_eq!(
        json["identity"], CARD,
        "the identity the ClientHello offered"
    );
    let text = t.server.metrics().encode();
    assert!(
        text.contains("handshakes_failed_total{kind=\"psk_ke_only\"} 1"),
        "{text}"
    );
    t.stop().await;
}

async fn get_metrics(addr: std::net::SocketAddr, accept: Option<&str>) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// Regression: `/metrics` ignored `Accept: text/plain;version=0.0.4`.
/// Verifies: O70, O71
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_speak_prometheus_004_when_asked() {
    let t = server_with_card().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dash = tokio::spawn(warden_ota::dashboard::serve(
        listener,
        t.server.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let classic = get_metrics(addr, Some("text/plain;version=0.0.4")).await;
    let lower = classic.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{classic}"
    );
    assert!(!classic.contains("# EOF"));
    assert!(classic.contains("# TYPE warden_ota_connections_accepted_total counter"));
    let open = get_metrics(addr, None).await;
    assert!(open
        .to_ascii_lowercase()
        .contains("content-type: application/openmetrics-text; version=1.0.0"));
    assert!(open.contains("# EOF"));
    let _ = stop.send(());
    dash.await.unwrap().unwrap();
    t.stop().await;
}

/// Regression (outside testing): after a server restart, a card that resumed with the results
/// of the script its old session had in flight got `200` and the next script, but the results
/// were dropped and a `forbidden` script was settled as `outcome_unknown`: an acknowledged
/// result was lost. They are stored now (committed before the answer), and audited as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_resumed_after_a_restart_are_stored_not_dropped() {
    let t = server_with_card().await;
    let install = CommandScript::new([gp::get_data(gp::data_object::CIN)]);
    let id = t.push(CARD, install, Redelivery::Forbidden).await;
    let second = t.push(CARD, read_script(), Redelivery::Allowed).await;
    let (c, r, next) = open(&t).await;
    assert_eq!(r.status, 200);
    drop(c);
    // The card ran it; the server restarts before the results arrive.
    let t = t.restart(support::config()).await;
    let body = parse_hex("AB07800101 2302 9000").unwrap();
    let mut c = client(&t).await;
    let mut h = base_headers();
    h.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.into()));
    h.push((header::X_ADMIN_SCRIPT_STATUS, "ok".into()));
    h.push((header::X_ADMIN_RESUME, "true".into()));
    let r = c
        .send("POST", &next, &h, CardBody::full(body))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "the session goes on with the next script");
    let reports = t.reports(CARD).await;
    let first = reports.iter().find(|s| s.id == id).unwrap();
    assert_eq!(
        (first.state.as_str(), first.script_status.as_deref()),
        ("done", Some("ok")),
        "{first:?}"
    );
    assert_eq!(first.exchanges.len(), 1);
    assert_eq!(first.exchanges[0].sw, Some(0x9000));
    let completed = audit_rows(&t, "ota.script.complete").await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0].3["after_restart"], true);
    assert_eq!(completed[0].3["script"], id);
    assert!(audit_rows(&t, "ota.script.outcome_unknown")
        .await
        .is_empty());
    let recovered = audit_rows(&t, "ota.script.recover").await;
    assert!(
        recovered.iter().all(|r| r.3["outcome_unknown"]
            .as_array()
            .is_none_or(|a| !a.contains(&id.into()))),
        "{recovered:?}"
    );
    // The next script went out in that answer.
    let reports = t.reports(CARD).await;
    assert_eq!(
        reports.iter().find(|s| s.id == second).unwrap().state,
        "in_flight"
    );

    drop(c);
    t.stop().await;
}

/// Found by outside testing: after a restart, a card that repeated the results of the script
/// before the one in flight (the answer to them, which carried the next script, was lost) had
/// them stored as the results of the script in flight: a `forbidden` INSTALL the card never
/// received was recorded as done with GET DATA's R-APDU. Results are now taken only when
/// posted to the Next-URI the script in flight went out with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_resumed_after_a_restart_for_an_earlier_script_are_not_stored_for_a_later_one() {
    let t = server_with_card().await;
    let read = t.push(CARD, read_script(), Redelivery::Allowed).await;
    let install = t
        .push(
            CARD,
            CommandScript::new([warden_ota::apdu::CommandApdu::new(0x80, 0xE6, 0x02, 0x00)]),
            Redelivery::Forbidden,
        )
        .await;
    let (mut c, r, first_uri) = open(&t).await;
    assert_eq!(r.status, 200);
    let mut h = base_headers();
    h.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.into()));
    h.push((header::X_ADMIN_SCRIPT_STATUS, "ok".into()));
    let body = parse_hex("AB0B800101 2306 80CA9F7F9000").unwrap();
    let r = c
        .send("POST", &first_uri, &h, CardBody::full(body.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "the answer carries the INSTALL");
    drop(c);
    // The card never saw that answer; the server is killed and comes back.
    let t = t.restart(support::config()).await;
    let mut c = client(&t).await;
    h.push((header::X_ADMIN_RESUME, "true".into()));
    let r = c
        .send("POST", &first_uri, &h, CardBody::full(body))
        .await
        .unwrap();
    assert!(r.status == 200 || r.status == 204, "{}", r.status);
    let reports = t.reports(CARD).await;
    let installed = reports.iter().find(|s| s.id == install).unwrap();
    assert_eq!(installed.state, "outcome_unknown", "{installed:?}");
    assert!(
        installed.exchanges.iter().all(|e| e.response.is_none()),
        "{installed:?}"
    );
    let first = reports.iter().find(|s| s.id == read).unwrap();
    assert_eq!((first.state.as_str(), first.exchanges.len()), ("done", 1));
    let completed = audit_rows(&t, "ota.script.complete").await;
    assert!(
        completed.iter().all(|r| r.3["script"] != install),
        "{completed:?}"
    );
    drop(c);
    t.stop().await;
}

/// Found by outside testing: a card whose key was removed kept its open connection and got
/// its next scripts for as long as it stayed connected. Every request now checks that the
/// key the handshake was made with is still the card's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_key_ends_what_an_open_connection_may_do() {
    let t = server_with_card().await;
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let (mut c, r, next) = open(&t).await;
    assert_eq!(r.status, 200);
    t.remove_card(CARD).await;
    let mut h = base_headers();
    h.push((header::X_ADMIN_SCRIPT_STATUS, "security-error".into()));
    let r = c.send("POST", &next, &h, CardBody::empty()).await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.header("connection"), Some("close"));
    // Nothing of the refused request was stored: the script is still in flight.
    let reports = t.reports(CARD).await;
    assert!(reports.iter().all(|s| s.state != "done"), "{reports:?}");
    t.stop().await;
}

/// Regression (outside testing): a session that a killed server left open was closed at the
/// next start (`server_restart`) in its row only; the audit chain never recorded its close. It
/// does now, in the same transaction as the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_a_killed_server_left_open_is_closed_on_the_record() {
    let t = support::start_with(support::config(), |db| {
        warden_store::ota::insert_session(
            db.conn(),
            &warden_store::ota::NewSession {
                id: "0191f0c0aaaa7bbb8ccc000000000001",
                card: Some(CARD),
                peer: "127.0.0.1:50000",
                tls_version: Some("TLSv1.2"),
                cipher: Some("PSK-AES128-CBC-SHA256"),
                state: "ACTIVE",
            },
        )
        .unwrap();
    })
    .await;
    let closed = audit_rows(&t, "ota.session.close").await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    let (_, subject, outcome, details) = &closed[0];
    assert_eq!(
        (subject.as_str(), outcome.as_str()),
        ("card:card-r", "failure")
    );
    assert_eq!(details["session_id"], "0191f0c0aaaa7bbb8ccc000000000001");
    assert_eq!(details["close_reason"], "server_restart");
    assert_eq!(details["from_state"], "ACTIVE");
    t.stop().await;
}

/// Regression (outside testing): a graceful stop closed a session whose card was running a
/// script at once, so its results could not be posted (for a `forbidden` script: a resume or
/// `outcome_unknown`). The card now gets the drain time to report: its results are stored and
/// answered with `204` — no new script goes out while the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_the_results_of_the_script_a_card_is_running() {
    let mut t = server_with_card().await;
    let install = CommandScript::new([gp::get_data(gp::data_object::CIN)]);
    let first = t.push(CARD, install, Redelivery::Forbidden).await;
    let second = t.push(CARD, read_script(), Redelivery::Allowed).await;
    let (mut c, r, next) = open(&t).await;
    assert_eq!(r.status, 200);
    t.begin_stop();
    // The card takes its time to run the script.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut h = base_headers();
    h.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.into()));
    h.push((header::X_ADMIN_SCRIPT_STATUS, "ok".into()));
    let body = parse_hex("AB07800101 2302 9000").unwrap();
    let r = c
        .send("POST", &next, &h, CardBody::full(body))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "the session ends; nothing new goes out");
    drop(c);
    let reports = t.reports(CARD).await;
    let state = |id| {
        let r = reports.iter().find(|s| s.id == id).unwrap();
        (r.state.clone(), r.script_status.clone())
    };
    assert_eq!(state(first), ("done".into(), Some("ok".into())));
    assert_eq!(state(second), ("pending".into(), None));
    // The stop ended it (a script is still queued): so the record says (outside testing found
    // `normal` here).
    let ended = t.wait_for(|e| e.event.name() == "session_ended").await;
    assert_eq!(
        serde_json::to_value(&ended.event).unwrap()["close_reason"],
        "server_shutdown"
    );
    let closed = audit_rows(&t, "ota.session.close").await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].3["close_reason"], "server_shutdown");
    t.stop().await;
}
