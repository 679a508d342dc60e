//! `warden ota serve` killed with SIGKILL at random points of a campaign, again and again, then
//! run to the end: a script that must not run twice never runs twice, a result the server
//! acknowledged is never lost, every script that may run twice ends done, and the audit chain
//! verifies. (What is durable when a response leaves: docs/ota.md, "Durability".)

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{run, Fixture, OtaServer};
use warden_core::keyring::Purpose;
use warden_ota::keys::Psk;
use warden_ota::simulator::{run_session, CardConfig, GpCard};

const CARDS: usize = 8;
/// Per card: this many scripts that must not run twice and as many that may, interleaved.
const PAIRS: usize = 12;
const KILLS: usize = 20;
const PSK_HEX: &str = "00112233445566778899aabbccddeeff";

fn card_name(i: usize) -> String {
    format!("crash-card-{i}")
}

/// The unique command of script `n` of a card: GET DATA with P1 P2 = n, P1 ≥ 0x40 so no real
/// data object answers (the card says 6A88, which is a result like any other).
fn command(n: usize) -> String {
    format!("80CA{:04X}00", 0x4000 + n)
}

fn forbidden(n: usize) -> bool {
    n % 2 == 0
}

/// Sessions for one card until one ends cleanly (its queue is empty) or `until` passes.
async fn sessions(cfg: CardConfig, card: &mut GpCard, until: Option<Instant>) -> bool {
    loop {
        if until.is_some_and(|t| Instant::now() >= t) {
            return false;
        }
        match run_session(&cfg, card).await {
            Ok(report) if report.scripts.is_empty() => return true,
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Verifies: O26, O32, O75, O80
#[test]
fn sigkill_during_a_campaign_never_runs_a_forbidden_script_twice_nor_loses_a_result() {
    let fx = Fixture::with_identity_policy(support::FAST_IDENTITY_POLICY);
    let entries: String = (0..CARDS)
        .map(|i| format!("  - identity: {}\n    key: \"{PSK_HEX}\"\n", card_name(i)))
        .collect();
    let keys = fx.file("keys.yaml", format!("keys:\n{entries}").as_bytes());
    run(fx.admin().args(["ota", "keys", "import"]).arg(&keys)).ok();
    for n in 0..2 * PAIRS {
        let mut push = fx.admin();
        let label = command(n);
        push.args([
            "ota",
            "push",
            "--apdu",
            &label,
            "--label",
            &label,
            "--redelivery",
        ]);
        push.arg(if forbidden(n) { "forbidden" } else { "allowed" });
        for i in 0..CARDS {
            push.args(["--card", &card_name(i)]);
        }
        run(&mut push).ok();
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = fx.file("ota.yaml", format!("listen: 127.0.0.1:{port}\n").as_bytes());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let psk = Arc::new(Psk::from_hex(PSK_HEX).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Cards keep their memory (what they ran, what was acknowledged) across the crashes.
    let mut cards: Vec<GpCard> = (0..CARDS).map(|_| GpCard::new()).collect();
    let config_for = |i: usize| {
        let mut cfg = CardConfig::new(addr, card_name(i), psk.clone());
        cfg.timeout = Duration::from_secs(10);
        cfg
    };
    // A fixed seed per run, printed, so a failure can be replayed.
    let seed: u64 = std::env::var("WARDEN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (WARDEN_TEST_SEED to replay)");
    let mut rng = seed | 1;
    let mut next_delay = || {
        // xorshift64: 3–40 ms into the campaign.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_millis(3 + rng % 38)
    };

    for k in 0..KILLS {
        let server = OtaServer::start(&fx, &config, k);
        let until = Instant::now() + next_delay();
        runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, mut card) in std::mem::take(&mut cards).into_iter().enumerate() {
                let cfg = config_for(i);
                set.spawn(async move {
                    sessions(cfg, &mut card, Some(until)).await;
                    (i, card)
                });
            }
            tokio::time::sleep_until(until.into()).await;
            // SIGKILL while the cards are mid-session.
            server.kill();
            let mut back: Vec<(usize, GpCard)> = Vec::new();
            while let Some(r) = set.join_next().await {
                back.push(r.unwrap());
            }
            back.sort_by_key(|(i, _)| *i);
            cards = back.into_iter().map(|(_, c)| c).collect();
        });
    }

    // The last run goes to the end: every card's queue empties.
    let server = OtaServer::start(&fx, &config, KILLS);
    runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, mut card) in std::mem::take(&mut cards).into_iter().enumerate() {
            let cfg = config_for(i);
            set.spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                assert!(
                    sessions(cfg, &mut card, Some(deadline)).await,
                    "card {i} never finished"
                );
                (i, card)
            });
        }
        let mut back = Vec::new();
        while let Some(r) = set.join_next().await {
            back.push(r.unwrap());
        }
        back.sort_by_key(|(i, _)| *i);
        cards = back.into_iter().map(|(_, c)| c).collect();
    });
    server.stop();

    // What the server stored.
    let db = warden_store::Database::open(
        &fx.data_dir.join("state/warden.db"),
        &fx.key(Purpose::Database),
    )
    .unwrap();
    let mut interrupted = 0;
    for (i, card) in cards.iter().enumerate() {
        let reports = warden_store::ota::script_reports(db.conn(), &card_name(i), None).unwrap();
        assert_eq!(reports.len(), 2 * PAIRS);
        let by_command: HashMap<String, &warden_store::ota::ScriptReport> = reports
            .iter()
            .map(|r| (r.label.clone().unwrap_or_default(), r))
            .collect();
        for n in 0..2 * PAIRS {
            let cmd = command(n);
            let stored = by_command
                .get(&cmd)
                .unwrap_or_else(|| panic!("card {i}: script {cmd} not stored"));
            let runs: Vec<_> = card
                .journal
                .iter()
                .filter(|r| r.commands.len() == 1 && r.commands[0].to_hex() == cmd)
                .collect();
            let executed = runs.iter().filter(|r| r.executed).count();
            let acknowledged = runs.iter().any(|r| r.acknowledged);
            if forbidden(n) {
                assert!(
                    executed <= 1,
                    "card {i}: forbidden script {cmd} ran {executed} times (seed {seed})"
                );
                if acknowledged {
                    assert_eq!(
                        stored.state, "done",
                        "card {i}: {cmd}'s results were acknowledged, then lost (seed {seed})"
                    );
                }
                match stored.state.as_str() {
                    "done" => assert_eq!(executed, 1, "card {i}: {cmd} done but never ran"),
                    "outcome_unknown" => interrupted += 1,
                    other => panic!("card {i}: forbidden {cmd} ends {other:?} (seed {seed})"),
                }
            } else {
                assert_eq!(
                    stored.state, "done",
                    "card {i}: allowed {cmd} ends {:?} (seed {seed})",
                    stored.state
                );
                assert!(executed >= 1);
            }
            if stored.state == "done" {
                let sw = stored.exchanges.first().and_then(|e| e.sw);
                assert_eq!(
                    sw,
                    Some(0x6A88),
                    "card {i}: {cmd} stored {:?}",
                    stored.exchanges
                );
            }
        }
    }
    eprintln!("{interrupted} forbidden scripts were cut between delivery and results");

    // Every kill left a chain that verifies.
    run(fx.admin().args(["audit", "verify"])).ok();
}
