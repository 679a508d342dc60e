//! Amendment B rules over real sockets (PSK-TLS + HTTP/1.1), one test per rule or group.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_ota::admin::{
    header, Redelivery, ScriptStatus, ADMIN_PROTOCOL, CONTENT_TYPE_COMMAND, CONTENT_TYPE_RESPONSE,
};
use warden_ota::apdu::{CommandApdu, ResponseApdu};
use warden_ota::gp::{self, Aid};
use warden_ota::script::{CommandScript, ResponseScript};
use warden_ota::simulator::{connect, run_session, AdminClient, CardBody, Cut, GpCard};
use warden_ota::tls::ClientTlsOptions;

const CARD: &str = "card-p";

fn read_script() -> CommandScript {
    CommandScript::new([gp::get_data(gp::data_object::IIN)])
}

fn base_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Host", "ota.test".into()),
        (header::X_ADMIN_PROTOCOL, ADMIN_PROTOCOL.into()),
        (header::X_ADMIN_FROM, "//se-id/iccid/p".into()),
    ]
}

async fn client(t: &support::TestServer) -> AdminClient {
    AdminClient::connect(t.addr, CARD, support::psk(7), &ClientTlsOptions::default())
        .await
        .unwrap()
}

async fn server_with_card() -> support::TestServer {
    let t = support::start(support::config()).await;
    t.add_card(CARD, &support::psk(7)).await;
    t
}

/// Verifies: O2, O21, O22
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_post_gets_200_with_script_then_204_ends_it() {
    let t = server_with_card().await;
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut c = client(&t).await;
    let r = c
        .send("POST", "/admin", &base_headers(), CardBody::empty())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header(header::X_ADMIN_PROTOCOL), Some(ADMIN_PROTOCOL));
    assert_eq!(r.header(header::CONTENT_TYPE), Some(CONTENT_TYPE_COMMAND));
    let next = r.header(header::X_ADMIN_NEXT_URI).unwrap().to_string();
    assert!(next.starts_with("/admin?session="));
    assert_eq!(CommandScript::decode(&r.body).unwrap(), read_script());
    // Results on the same connection (several requests on one connection).
    let mut h = base_headers();
    h.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.into()));
    h.push((header::X_ADMIN_SCRIPT_STATUS, "ok".into()));
    let body =
        ResponseScript::with_responses(1, [ResponseApdu::new(vec![0x42, 0], 0x9000)]).encode();
    let r = c
        .send("POST", &next, &h, CardBody::full(body))
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header(header::CONTENT_TYPE),
        None,
        "204 carries no Content-Type"
    );
    assert_eq!(r.header(header::X_ADMIN_NEXT_URI), None);
    assert_eq!(r.header(header::X_ADMIN_PROTOCOL), Some(ADMIN_PROTOCOL));
    let reports = t.reports(CARD).await;
    assert_eq!(reports[0].exchanges[0].sw, Some(0x9000));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_queue_ends_at_once_with_204() {
    let t = server_with_card().await;
    let mut c = client(&t).await;
    let r = c
        .send("POST", "/admin", &base_headers(), CardBody::empty())
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty() && r.header(header::CONTENT_TYPE).is_none());
    t.stop().await;
}

/// Verifies: O23
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_and_several_requests_on_one_connection() {
    let t = server_with_card().await;
    for _ in 0..3 {
        t.push(CARD, read_script(), Redelivery::Allowed).await;
    }
    let mut cfg = t.card(CARD, &support::psk(7));
    cfg.chunked = Some(3);
    let r = run_session(&cfg, &mut GpCard::new()).await.unwrap();
    assert_eq!((r.scripts.len(), r.requests, r.connections), (3, 4, 1));
    for rep in t.reports(CARD).await {
        assert_eq!(rep.state, "done");
        assert_eq!(rep.exchanges[0].sw, Some(0x9000));
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_script_status_is_recorded_and_bodies_only_with_ok() {
    let t = server_with_card().await;
    for status in [
        ScriptStatus::Ok,
        ScriptStatus::UnknownApplication,
        ScriptStatus::NotASecurityDomain,
        ScriptStatus::SecurityError,
    ] {
        let id = t.push(CARD, read_script(), Redelivery::Allowed).await;
        let mut cfg = t.card(CARD, &support::psk(7));
        cfg.force_status = Some(status);
        let r = run_session(&cfg, &mut GpCard::new()).await.unwrap();
        assert_eq!(r.scripts.len(), 1);
        let rep = t
            .reports(CARD)
            .await
            .into_iter()
            .find(|s| s.id == id)
            .unwrap();
        assert_eq!(rep.script_status.as_deref(), Some(status.as_str()));
        assert_eq!(rep.state, "done");
    }
    // A body with a status other than ok is refused.
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut c = client(&t).await;
    let r = c
        .send("POST", "/admin", &base_headers(), CardBody::empty())
        .await
        .unwrap();
    let next = r.header(header::X_ADMIN_NEXT_URI).unwrap().to_string();
    let mut h = base_headers();
    h.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.into()));
    h.push((header::X_ADMIN_SCRIPT_STATUS, "security-error".into()));
    let body = ResponseScript::with_responses(1, [ResponseApdu::new(vec![], 0x9000)]).encode();
    let r = c
        .send("POST", &next, &h, CardBody::full(body))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_application_header_is_sent_and_honoured() {
    let t = server_with_card().await;
    let isd = Aid::from_hex("A000000151000000").unwrap();
    t.push_targeted(
        CARD,
        read_script(),
        Redelivery::Allowed,
        Some(isd.to_targeted_application()),
    )
    .await;
    let other = Aid::from_hex("A0000009990001").unwrap();
    let id2 = t
        .push_targeted(
            CARD,
            read_script(),
            Redelivery::Allowed,
            Some(other.to_targeted_application()),
        )
        .await;
    let r = run_session(&t.card(CARD, &support::psk(7)), &mut GpCard::new())
        .await
        .unwrap();
    assert_eq!(
        r.scripts[0].targeted_application.as_deref(),
        Some("//aid/A000000151/000000")
    );
    assert_eq!(r.scripts[0].status, ScriptStatus::Ok);
    assert_eq!(r.scripts[1].status, ScriptStatus::UnknownApplication);
    let rep = t
        .reports(CARD)
        .await
        .into_iter()
        .find(|s| s.id == id2)
        .unwrap();
    assert_eq!(rep.script_status.as_deref(), Some("unknown-application"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_redelivers_a_read_but_never_reruns_an_install() {
    let t = server_with_card().await;
    // A lost read script is sent again on resume.
    let read = t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut cfg = t.card(CARD, &support::psk(7));
    cfg.cut = Some(Cut::ScriptLost(1));
    let r = run_session(&cfg, &mut GpCard::new()).await.unwrap();
    assert_eq!((r.resumes, r.connections), (1, 2));
    let rep = t
        .reports(CARD)
        .await
        .into_iter()
        .find(|s| s.id == read)
        .unwrap();
    assert_eq!((rep.state.as_str(), rep.deliveries), ("done", 2));

    // A lost INSTALL is not sent again: its outcome is unknown, the next script follows.
    let install = gp::InstallForInstall::new(
        Aid::from_hex("A0000005591010").unwrap(),
        Aid::from_hex("A000000559101001").unwrap(),
        Aid::from_hex("A00000055910100109").unwrap(),
    )
    .to_apdu()
    .unwrap();
    let inst = t
        .push(CARD, CommandScript::new([install]), Redelivery::Forbidden)
        .await;
    let after = t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut card = GpCard::new();
    let r = run_session(&cfg, &mut card).await.unwrap();
    assert_eq!(r.resumes, 1);
    // The INSTALL was lost on the way and the server did not send it again: from the
    // server's side it may or may not have run, so it is reported, never repeated.
    assert_eq!(
        r.scripts
            .iter()
            .filter(|s| s.commands[0].ins() == gp::INS_INSTALL)
            .count(),
        0
    );
    assert_eq!(card.apps.len(), 1, "not installed by a second delivery");
    let reps = t.reports(CARD).await;
    let i = reps.iter().find(|s| s.id == inst).unwrap();
    assert_eq!((i.state.as_str(), i.deliveries), ("outcome_unknown", 1));
    assert_eq!(reps.iter().find(|s| s.id == after).unwrap().state, "done");
    t.wait_for(|e| e.event.name() == "script_outcome_unknown")
        .await;

    // Results whose answer was lost are stored once, not twice.
    let s3 = t.push(CARD, read_script(), Redelivery::Allowed).await;
    let s4 = t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut cfg2 = t.card(CARD, &support::psk(7));
    cfg2.cut = Some(Cut::AnswerToResultsLost(1));
    let r = run_session(&cfg2, &mut GpCard::new()).await.unwrap();
    assert_eq!(r.resumes, 1);
    let reps = t.reports(CARD).await;
    for id in [s3, s4] {
        let s = reps.iter().find(|s| s.id == id).unwrap();
        assert_eq!(s.state, "done");
        assert_eq!(s.exchanges.len(), 1);
    }
    let actions = t.audit_actions().await;
    assert!(actions.iter().any(|a| a == "ota.script.duplicate_results"));
    assert!(actions.iter().any(|a| a == "ota.script.outcome_unknown"));
    t.stop().await;
}

async fn status_of(
    t: &support::TestServer,
    method: &str,
    target: &str,
    headers: Vec<(&'static str, String)>,
    body: CardBody,
) -> (u16, Option<String>) {
    let mut c = client(t).await;
    let r = c.send(method, target, &headers, body).await.unwrap();
    assert_eq!(
        r.header(header::X_ADMIN_PROTOCOL),
        Some(ADMIN_PROTOCOL),
        "{method} {target}"
    );
    (r.status, r.header("allow").map(str::to_string))
}

/// Verifies: O20, O24
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_for_uri_method_headers_and_content_type() {
    let mut cfg = support::config();
    cfg.expected_host = Some("ota.test".into());
    cfg.max_body = 1024;
    let t = support::start(cfg).await;
    t.add_card(CARD, &support::psk(7)).await;
    let without = |name: &str| -> Vec<(&'static str, String)> {
        base_headers()
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect()
    };
    // URI and method.
    assert_eq!(
        status_of(&t, "POST", "/elsewhere", base_headers(), CardBody::empty())
            .await
            .0,
        404
    );
    assert_eq!(
        status_of(&t, "GET", "/admin", base_headers(), CardBody::empty()).await,
        (405, Some("POST".into()))
    );
    // Headers.
    assert_eq!(
        status_of(
            &t,
            "POST",
            "/admin",
            without(header::X_ADMIN_PROTOCOL),
            CardBody::empty()
        )
        .await
        .0,
        400
    );
    assert_eq!(
        status_of(
            &t,
            "POST",
            "/admin",
            without(header::X_ADMIN_FROM),
            CardBody::empty()
        )
        .await
        .0,
        400
    );
    let mut wrong = without(header::X_ADMIN_PROTOCOL);
    wrong.push((
        header::X_ADMIN_PROTOCOL,
        "globalplatform-remote-admin/2.0".into(),
    ));
    assert_eq!(
        status_of(&t, "POST", "/admin", wrong, CardBody::empty())
            .await
            .0,
        400
    );
    let mut host = without("Host");
    host.push(("Host", "evil.test".into()));
    assert_eq!(
        status_of(&t, "POST", "/admin", host, CardBody::empty())
            .await
            .0,
        421
    );
    let mut status = base_headers();
    status.push((header::X_ADMIN_SCRIPT_STATUS, "ok".into()));
    assert_eq!(
        status_of(&t, "POST", "/admin", status, CardBody::empty())
            .await
            .0,
        400,
        "no script status on the first POST"
    );
    let mut ct = base_headers();
    ct.push((header::CONTENT_TYPE, "text/plain".into()));
    assert_eq!(
        status_of(&t, "POST", "/admin", ct, CardBody::empty())
            .await
            .0,
        400,
        "no Content-Type but the response type on the first POST"
    );
    assert_eq!(
        status_of(
            &t,
            "POST",
            "/admin",
            base_headers(),
            CardBody::full(vec![0xAB, 0])
        )
        .await
        .0,
        400,
        "no body on the first POST"
    );
    assert_eq!(
        status_of(
            &t,
            "POST",
            "/admin",
            base_headers(),
            CardBody::full(vec![0; 4096])
        )
        .await
        .0,
        413
    );
    assert_eq!(
        status_of(
            &t,
            "POST",
            "/admin",
            base_headers(),
            CardBody::chunked(&[0; 4096], 100)
        )
        .await
        .0,
        413,
        "chunked too"
    );

    // Content type and agent on the results request.
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut c = client(&t).await;
    let r = c
        .send("POST", "/admin", &base_headers(), CardBody::empty())
        .await
        .unwrap();
    let next = r.header(header::X_ADMIN_NEXT_URI).unwrap().to_string();
    let body = ResponseScript::with_responses(1, [ResponseApdu::new(vec![], 0x9000)]).encode();
    let mut bad_ct = base_headers();
    bad_ct.push((header::CONTENT_TYPE, "text/plain".into()));
    bad_ct.push((header::X_ADMIN_SCRIPT_STATUS, "ok".into()));
    let r = c
        .send("POST", &next, &bad_ct, CardBody::full(body.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 415);
    // The refusal closed that connection; the session waits at the same point for the card.
    let mut c = client(&t).await;
    let mut resumed = base_headers();
    resumed.push((header::X_ADMIN_RESUME, "true".into()));
    let mut other_agent: Vec<(&str, String)> = resumed
        .iter()
        .filter(|(n, _)| *n != header::X_ADMIN_FROM)
        .cloned()
        .collect();
    other_agent.push((header::X_ADMIN_FROM, "//se-id/iccid/other".into()));
    other_agent.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.into()));
    other_agent.push((header::X_ADMIN_SCRIPT_STATUS, "ok".into()));
    let r = c
        .send("POST", &next, &other_agent, CardBody::full(body.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let mut c = client(&t).await;
    let mut good = resumed.clone();
    good.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.into()));
    good.push((header::X_ADMIN_SCRIPT_STATUS, "ok".into()));
    let r = c
        .send("POST", &next, &good, CardBody::full(body))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "the session survived the refused requests");
    t.wait_for(|e| e.event.name() == "request_refused").await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let t = server_with_card().await;
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut conn = connect(t.addr, CARD, support::psk(7), &ClientTlsOptions::default())
        .await
        .unwrap();
    let req = |target: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: ota.test\r\nX-Admin-Protocol: {ADMIN_PROTOCOL}\r\nX-Admin-From: //se-id/iccid/p\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let both = format!("{}{}", req("/admin"), req("/not-the-next-uri"));
    conn.stream.write_all(both.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.stream.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    let text = String::from_utf8_lossy(&out);
    let first = text.find("HTTP/1.1 200").expect("first response 200");
    let second = text.find("HTTP/1.1 404").expect("second response 404");
    assert!(first < second, "{text}");
    t.stop().await;
}

/// Verifies: O25, O32
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_instruction_gets_6d00_and_results_keep_every_exchange() {
    let t = server_with_card().await;
    let script = CommandScript::new([
        gp::get_data(gp::data_object::CIN),
        CommandApdu::new(0x80, 0x99, 0, 0),
        gp::get_data(gp::data_object::IIN),
    ]);
    t.push(CARD, script, Redelivery::Allowed).await;
    run_session(&t.card(CARD, &support::psk(7)), &mut GpCard::new())
        .await
        .unwrap();
    let rep = &t.reports(CARD).await[0];
    let sws: Vec<Option<u16>> = rep.exchanges.iter().map(|e| e.sw).collect();
    assert_eq!(
        sws,
        vec![Some(0x9000), Some(0x6D00), None],
        "the card stops at the first error"
    );
    t.stop().await;
}

/// Verifies: O43, O57, O67, O79, O80
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_and_interruption_close_sessions_with_reasons() {
    let mut cfg = support::config();
    cfg.idle_timeout = Duration::from_secs(1);
    let t = support::start(cfg).await;
    t.add_card(CARD, &support::psk(7)).await;
    // Connected, then silent: closed for idleness.
    let c = client(&t).await;
    let e = t.wait_for(|e| e.event.name() == "session_ended").await;
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(json["close_reason"], "timeout");
    drop(c);
    // A card that takes its script and goes away: interrupted, with the last command.
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut c = client(&t).await;
    let r = c
        .send("POST", "/admin", &base_headers(), CardBody::empty())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    drop(c);
    let e = t
        .wait_for(|e| e.event.name() == "connection_interrupted")
        .await;
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(
        json["last_command"],
        read_script().apdus().next().unwrap().to_hex()
    );
    t.stop().await;
}

/// Verifies: O40, O44, O45, O58, O77
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_mismatch_is_classified_counted_and_warned() {
    let mut cfg = support::config();
    cfg.errors.psk_mismatch_threshold = 3;
    let t = support::start(cfg).await;
    t.add_card(CARD, &support::psk(7)).await;
    for version in ["TLSv1.2", "TLSv1.3", "TLSv1.2"] {
        let tls = ClientTlsOptions {
            version: Some(version.into()),
            ..Default::default()
        };
        let err = connect(t.addr, CARD, support::psk(8), &tls)
            .await
            .err()
            .expect("refused");
        let text = err.to_string();
        let expected = if version == "TLSv1.3" {
            "47 (illegal_parameter)"
        } else {
            "20 (bad_record_mac)"
        };
        assert!(text.contains(expected), "{version}: {text}");
    }
    let e = t
        .wait_for(|e| e.event.name() == "psk_mismatch_threshold")
        .await;
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(json["count"], 3);
    let mismatches: Vec<serde_json::Value> = t
        .recent_json()
        .into_iter()
        .filter(|e| e["event"] == "psk_mismatch")
        .collect();
    assert_eq!(mismatches.len(), 3);
    assert_eq!(mismatches[1]["alert_sent"]["code"], 47);
    // An unknown identity is refused and not counted as a mismatch.
    let err = connect(
        t.addr,
        "nobody",
        support::psk(7),
        &ClientTlsOptions {
            version: Some("TLSv1.2".into()),
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("115"), "{err}");
    let e = t.wait_for(|e| e.event.name() == "handshake_failed").await;
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(json["kind"], "unknown_identity");
    // No key material in any event.
    let all = t
        .events
        .recent()
        .iter()
        .map(|e| e.to_json())
        .collect::<String>();
    assert!(!all
        .to_ascii_lowercase()
        .contains(&hex::encode(support::psk(7).expose_secret())));
    assert!(!all
        .to_ascii_lowercase()
        .contains(&hex::encode(support::psk(8).expose_secret())));
    t.stop().await;
}

/// Verifies: O12, O14, O15, O50, O67
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_open_sessions() {
    let t = server_with_card().await;
    t.push(CARD, read_script(), Redelivery::Allowed).await;
    let mut c = client(&t).await;
    let r = c
        .send("POST", "/admin", &base_headers(), CardBody::empty())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let events = t.events.clone();
    tokio::time::timeout(Duration::from_secs(30), t.stop())
        .await
        .expect("run() returns after draining");
    let ended: Vec<String> = events
        .recent()
        .iter()
        .filter(|e| e.event.name() == "session_ended")
        .map(|e| e.to_json())
        .collect();
    assert!(
        ended.iter().any(|e| e.contains("server_shutdown")),
        "{ended:?}"
    );
    assert!(events
        .recent()
        .iter()
        .any(|e| e.event.name() == "server_stopped"));
}
