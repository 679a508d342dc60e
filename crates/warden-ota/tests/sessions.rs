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

/// Verifies: O11, O26, O27, O32, O34, O51, O52, O54, O55, O56, O65, O66
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

/// Every audit event the server writes names the server's service principal as the actor and
/// the card (or the listener) as the subject; the card is never the actor.
/// Verifies: O26
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_are_in_the_servers_name_about_the_card() {
    let t = support::start(support::config()).await;
    let key = support::psk(1);
    t.add_card("card-a", &key).await;
    t.push("card-a", get_status_script(), Redelivery::Allowed)
        .await;
    run_session(&t.card("card-a", &key), &mut GpCard::new())
        .await
        .unwrap();
    // A refused handshake that offered the identity is about the card too.
    let _ = warden_ota::simulator::connect(
        t.addr,
        "card-a",
        support::psk(2),
        &warden_ota::tls::ClientTlsOptions::default(),
    )
    .await;
    let rows = |store: warden_ota::store::StoreHandle| async move {
        store
            .call(|tx, _| {
                let mut stmt = tx.prepare(
                    "SELECT actor, action, subject, details FROM audit_events
                 WHERE action LIKE 'ota.%' ORDER BY seq",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    };
    // The close and mismatch records are written after the events that announce them.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let all = loop {
        let all = rows(t.store.clone()).await.unwrap();
        let has = |a: &str| all.iter().any(|r| r.1 == a);
        if has("ota.session.close") && has("ota.tls.psk_mismatch") {
            break all;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    for action in [
        "ota.server.start",
        "ota.session.connect",
        "ota.session.open",
        "ota.script.deliver",
        "ota.script.complete",
        "ota.session.finish",
        "ota.session.close",
        "ota.tls.psk_mismatch",
    ] {
        assert!(all.iter().any(|r| r.1 == action), "no {action} in {all:?}");
    }
    for (actor, action, subject, details) in &all {
        assert_eq!(actor, warden_ota::audit::SERVER_ACTOR, "{action}");
        if action == "ota.server.start" {
            assert!(subject.starts_with("listener:127.0.0.1:"), "{subject}");
        } else {
            assert_eq!(subject, "card:card-a", "{action}");
        }
        let details: serde_json::Value = serde_json::from_str(details).unwrap();
        if action.starts_with("ota.script.") {
            assert!(details["script"].is_u64(), "{action}: {details}");
        }
        if action == "ota.script.complete" {
            // Every C-APDU of the script is in its completion record.
            let exchanges = details["exchanges"].as_array().unwrap();
            assert!(!exchanges.is_empty(), "{details}");
            assert!(exchanges.iter().all(|e| e["command"].is_string()));
        }
        if action.starts_with("ota.session.") {
            assert!(details["session_id"].is_string() && details["peer"].is_string());
        }
    }
    t.stop().await;
}

/// Session ids are UUIDs, version 7 (time-ordered, so each new session row goes to the end of
/// the sessions index): a later session's id sorts after an earlier one's.
/// Verifies: O28
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_are_time_ordered_uuids() {
    let t = support::start(support::config()).await;
    let key = support::psk(1);
    t.add_card("card-1", &key).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        run_session(&t.card("card-1", &key), &mut GpCard::new())
            .await
            .unwrap();
        let ended = t
            .wait_for(|e| {
                e.event.name() == "session_ended"
                    && !ids.contains(&serde_json::to_value(&e.event).unwrap()["session_id"])
            })
            .await;
        ids.push(serde_json::to_value(&ended.event).unwrap()["session_id"].clone());
    }
    let ids: Vec<uuid::Uuid> = ids
        .iter()
        .map(|id| uuid::Uuid::parse_str(id.as_str().unwrap()).unwrap())
        .collect();
    assert!(ids.iter().all(|id| id.get_version_num() == 7), "{ids:?}");
    assert!(ids[0] < ids[1], "{ids:?}");
    t.stop().await;
}

/// A step that answered without waiting for the database (it touches only scripts that may run
/// twice), whose writes then fail: the card's next request is refused with 503 and the session
/// ends; nothing is lost for good — the next session sends the scripts again and completes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_behind_the_response_ends_the_session_and_the_scripts_go_again() {
    let t = support::start(support::config()).await;
    let key = support::psk(1);
    t.add_card("card-1", &key).await;
    let get_data = || CommandScript::new([gp::get_data(gp::data_object::CPLC)]);
    let ids = [
        t.push("card-1", get_data(), Redelivery::Allowed).await,
        t.push("card-1", get_data(), Redelivery::Allowed).await,
    ];
    // Results cannot be stored for now.
    t.store
        .call(|tx, _| {
            tx.execute_batch(
                "CREATE TRIGGER refuse_results BEFORE UPDATE OF state ON ota_scripts
                 WHEN NEW.state = 'done' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let err = run_session(&t.card("card-1", &key), &mut GpCard::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    // Refused at the request after the one whose writes failed: that one was answered at once.
    let refused = t.wait_for(|e| e.event.name() == "request_refused").await;
    assert_eq!(
        serde_json::to_value(&refused.event).unwrap()["reason"],
        "the server could not store the last step"
    );
    let ended = t.wait_for(|e| e.event.name() == "session_ended").await;
    assert_eq!(
        serde_json::to_value(&ended.event).unwrap()["close_reason"],
        "error"
    );
    t.store
        .call(|tx, _| {
            tx.execute_batch("DROP TRIGGER refuse_results")?;
            Ok(())
        })
        .await
        .unwrap();
    let report = run_session(&t.card("card-1", &key), &mut GpCard::new())
        .await
        .unwrap();
    assert_eq!(report.scripts.len(), 2);
    let reports = t.reports("card-1").await;
    assert_eq!(
        reports
            .iter()
            .map(|r| (r.id, r.state.as_str()))
            .collect::<Vec<_>>(),
        [(ids[0], "done"), (ids[1], "done")]
    );
    t.stop().await;
}
