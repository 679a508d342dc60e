//! Full admin sessions over real sockets with the simulated card.

mod support;

use warden_ota::admin::Redelivery;
use warden_ota::gp::{self, Aid, Occurrence, StatusSubset};
use warden_ota::script::CommandScript;
use warden_ota::simulator::{run_session, GpCard};

fn get_status_script() -> CommandScript {
    CommandScript::new([
        gp::select_by_aid(&Aid::from_hex("A000000151000000").unwrap()),
        gp::get_status(StatusSubset::Applications, Occurrence::FirstOrAll, &[]).unwrap(),
        gp::get_data(gp::data_object::CPLC),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_session_runs_queued_scripts_and_stores_results() {
    let t = support::start(support::config()).await;
    let key = support::psk(1);
    t.add_card("card-1", &key).await;
    let s1 = t
        .push("card-1", get_status_script(), Redelivery::Allowed)
        .await;
    let s2 = t
        .push(
            "card-1",
            CommandScript::new([warden_ota::apdu::CommandApdu::new(0x80, 0x99, 0, 0)]),
            Redelivery::Forbidden,
        )
        .await;
    let mut card = GpCard::new();
    let report = run_session(&t.card("card-1", &key), &mut card)
        .await
        .unwrap();
    assert_eq!(report.scripts.len(), 2);
    assert_eq!(report.apdus(), 4);
    assert_eq!(report.requests, 3);
    let reports = t.reports("card-1").await;
    assert_eq!(reports.len(), 2);
    assert_eq!((reports[0].id, reports[0].state.as_str()), (s1, "done"));
    assert_eq!(reports[0].script_status.as_deref(), Some("ok"));
    assert_eq!(reports[0].exchanges.len(), 3);
    assert!(reports[0].exchanges.iter().all(|e| e.sw == Some(0x9000)));
    let status = gp::decode_get_status(
        reports[0].exchanges[1]
            .response
            .as_ref()
            .unwrap()
            .split_at(reports[0].exchanges[1].response.as_ref().unwrap().len() - 2)
            .0,
    )
    .unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(reports[1].id, s2);
    assert_eq!(reports[1].exchanges[0].sw, Some(0x6D00));
    assert!(reports[0].round_trip_us.is_some());
    // Events and audit.
    t.wait_for(|e| e.event.name() == "session_ended").await;
    let names: Vec<String> = t
        .recent_json()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    for n in [
        "tls_handshake_start",
        "tls_handshake_complete",
        "session_active",
        "script_delivered",
        "apdu_received",
        "apdu_sent",
        "script_completed",
        "session_ended",
    ] {
        assert!(
            names.iter().any(|x| x == n),
            "missing event {n} in {names:?}"
        );
    }
    let ended = t
        .recent_json()
        .into_iter()
        .rev()
        .find(|e| e["event"] == "session_ended")
        .unwrap();
    assert_eq!(ended["close_reason"], "normal");
    assert_eq!(ended["command_count"], 4);
    t.stop().await;
}
