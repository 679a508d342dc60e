//! Hostile clients: silent TCP connections and garbage handshakes must not keep a real card
//! from being served. Bounded: a few hundred local connections, all closed at the end.

mod support;

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use warden_ota::admin::Redelivery;
use warden_ota::gp;
use warden_ota::script::CommandScript;
use warden_ota::simulator::{run_session, GpCard};

/// Verifies: O3, O53
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_garbage_clients_do_not_block_a_real_card() {
    let mut cfg = support::config();
    cfg.max_handshakes = 64;
    cfg.max_connections = 2000;
    cfg.handshake_timeout = Duration::from_secs(60);
    let t = support::start(cfg).await;
    let key = support::psk(3);
    t.add_card("real-card", &key).await;
    t.push(
        "real-card",
        CommandScript::new([gp::get_data(gp::data_object::IIN)]),
        Redelivery::Allowed,
    )
    .await;

    let mut rx = t.events.subscribe();
    // 300 connections that never say anything (far more than the handshake pool).
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(t.addr).await.unwrap());
    }
    // 50 that send garbage instead of a ClientHello, and 50 that send a plain HTTP request.
    let mut noisy = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(t.addr).await.unwrap();
        let junk: &[u8] = if i % 2 == 0 {
            b"\x16\x03\x01\xff\xff garbage garbage garbage"
        } else {
            b"POST /admin HTTP/1.1\r\nHost: x\r\n\r\n"
        };
        let _ = s.write_all(junk).await;
        noisy.push(s);
    }
    // The real card still gets through.
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        run_session(&t.card("real-card", &key), &mut GpCard::new()),
    )
    .await
    .expect("the real card was served in time")
    .unwrap();
    assert_eq!(report.scripts.len(), 1);
    // Evicted and refused handshakes were reported as such.
    let mut json = Vec::new();
    while let Ok(e) = rx.try_recv() {
        json.push(serde_json::from_str::<serde_json::Value>(&e.to_json()).unwrap());
    }
    assert!(json.iter().any(|e| e["event"] == "handshake_interrupted"
        && e["reason"].as_str().unwrap_or("").starts_with("evicted")));
    assert!(json
        .iter()
        .any(|e| e["event"] == "handshake_failed" && e["kind"] == "not_tls"));
    drop(silent);
    drop(noisy);
    t.stop().await;
}
