//! What the OTA server writes to the audit chain, and in whose name. Pure values: the store
//! adapter gives each record its time and its place in the chain.
//!
//! One scheme for every record the server writes:
//!
//! * **actor** — always [`SERVER_ACTOR`], the server's authenticated service principal. The
//!   actor of an audit event is a signed-in user or a daemon's service principal, never a name
//!   a peer supplies; a card proves its PSK identity to the server, but it is what the event is
//!   about, not who acted.
//! * **subject** — `card:<PSK identity>` ([`card_subject`]) for everything about a card: TLS
//!   refusals that offered an identity, sessions, scripts, APDUs. `listener:<address>`
//!   ([`listener_subject`]) for the server's start and stop.
//! * **details** — a JSON object: `session_id` and `peer` wherever a connection is involved,
//!   `script` (the queue id) on script and APDU records, and the record's own fields.

use serde_json::{json, Value};
use warden_core::audit::Outcome;

use crate::plan::Exchange;
use crate::script::ScriptFault;
use crate::session::{CloseReason, SessionState};
use crate::tls::Alert;

/// The server's service principal (`warden_store::identity::Service::Ota`): the actor of
/// every audit event it writes.
pub const SERVER_ACTOR: &str = warden_store::identity::OTA_SERVICE;

/// The subject of a record about a card.
pub fn card_subject(identity: &str) -> String {
    // A refused client chooses the identity it offers: escaped, so that its record is written
    // (a control character in the subject would have kept the refusal out of the chain).
    format!("card:{}", warden_core::audit::field_text(identity))
}

/// The subject of a record about the listener.
pub fn listener_subject(addr: &str) -> String {
    format!("listener:{addr}")
}

/// One audit record the server writes; its actor is [`SERVER_ACTOR`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub action: &'static str,
    pub subject: String,
    pub outcome: Outcome,
    pub details: Value,
}

impl AuditRecord {
    fn card(action: &'static str, card: &str, outcome: Outcome, details: Value) -> Self {
        Self {
            action,
            subject: card_subject(card),
            outcome,
            details,
        }
    }

    /// Always [`SERVER_ACTOR`].
    pub fn actor(&self) -> &'static str {
        SERVER_ACTOR
    }
}

pub fn server_started(listen: &str, ciphers: &[&str], null_ciphers: bool) -> AuditRecord {
    AuditRecord {
        action: "ota.server.start",
        subject: listener_subject(listen),
        outcome: Outcome::Success,
        details: json!({"listen": listen, "ciphers": ciphers, "null_ciphers": null_ciphers}),
    }
}

pub fn server_stopped(listen: &str, open_sessions: usize, not_drained: usize) -> AuditRecord {
    AuditRecord {
        action: "ota.server.stop",
        subject: listener_subject(listen),
        outcome: Outcome::Success,
        details: json!({"listen": listen, "open_sessions": open_sessions, "not_drained": not_drained}),
    }
}

pub fn psk_mismatch(identity: &str, peer: &str, alert_sent: Option<Alert>) -> AuditRecord {
    AuditRecord::card(
        "ota.tls.psk_mismatch",
        identity,
        Outcome::Denied,
        json!({"peer": peer, "alert_sent": alert_sent}),
    )
}

pub fn handshake_refused(identity: &str, peer: &str, kind: &str) -> AuditRecord {
    AuditRecord::card(
        "ota.tls.refused",
        identity,
        Outcome::Denied,
        json!({"peer": peer, "kind": kind}),
    )
}

pub fn session_connected(
    card: &str,
    session_id: &str,
    peer: &str,
    tls_version: &str,
    cipher: &str,
) -> AuditRecord {
    AuditRecord::card(
        "ota.session.connect",
        card,
        Outcome::Success,
        json!({"session_id": session_id, "peer": peer, "tls_version": tls_version, "cipher": cipher}),
    )
}

/// What a closed connection did, for [`session_closed`].
#[derive(Debug, Clone, PartialEq)]
pub struct CloseSummary<'a> {
    pub card: &'a str,
    pub session_id: &'a str,
    pub peer: &'a str,
    pub reason: CloseReason,
    pub from: SessionState,
    pub duration_s: f64,
    pub scripts: u64,
    pub apdus: u64,
}

pub fn session_closed(c: &CloseSummary<'_>) -> AuditRecord {
    let outcome = if c.reason == CloseReason::Normal {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    AuditRecord::card(
        "ota.session.close",
        c.card,
        outcome,
        json!({"session_id": c.session_id, "peer": c.peer, "close_reason": c.reason.as_str(),
            "from_state": c.from.as_str(), "duration_s": c.duration_s, "scripts": c.scripts,
            "apdus": c.apdus}),
    )
}

/// Scripts a lost session of `card` left in flight, settled when a new session opens; `None`
/// when there were none.
pub fn scripts_recovered(
    card: &str,
    session_id: &str,
    requeued: &[u64],
    outcome_unknown: &[u64],
) -> Option<AuditRecord> {
    if requeued.is_empty() && outcome_unknown.is_empty() {
        return None;
    }
    Some(AuditRecord::card(
        "ota.script.recover",
        card,
        Outcome::Success,
        json!({"session_id": session_id, "requeued": requeued, "outcome_unknown": outcome_unknown}),
    ))
}

pub(crate) fn session_opened(
    card: &str,
    session_id: &str,
    peer: &str,
    agent: &str,
    resumed_without_state: bool,
    lenient: &[&'static str],
) -> AuditRecord {
    AuditRecord::card(
        "ota.session.open",
        card,
        Outcome::Success,
        json!({"session_id": session_id, "peer": peer, "agent": agent,
            "resumed_without_state": resumed_without_state, "lenient": lenient}),
    )
}

pub(crate) fn script_delivered(
    card: &str,
    session_id: &str,
    script: u64,
    redelivery: bool,
    commands: &[String],
) -> AuditRecord {
    AuditRecord::card(
        "ota.script.deliver",
        card,
        Outcome::Success,
        json!({"session_id": session_id, "script": script, "redelivery": redelivery,
            "commands": commands}),
    )
}

/// A script's results as the card reported them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Completion<'a> {
    pub script: u64,
    pub script_status: &'static str,
    pub result: &'static str,
    pub executed: Option<u32>,
    pub exchanges: &'a [Exchange],
    pub round_trip_us: Option<u64>,
    pub fault: Option<&'a ScriptFault>,
}

pub(crate) fn script_completed(card: &str, session_id: &str, c: &Completion<'_>) -> AuditRecord {
    let outcome = if c.result == "ok" {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    AuditRecord::card(
        "ota.script.complete",
        card,
        outcome,
        json!({"session_id": session_id, "script": c.script, "script_status": c.script_status,
            "result": c.result, "executed": c.executed,
            "exchanges": c.exchanges.iter().map(exchange_details).collect::<Vec<_>>(),
            "round_trip_us": c.round_trip_us, "error": c.fault.map(fault_details)}),
    )
}

/// One C-APDU with the card's answer, and the outcome its status word means
/// ([`Exchange::outcome`]).
fn exchange_details(e: &Exchange) -> Value {
    json!({"command": crate::apdu::to_hex(&e.command),
        "response": e.response.as_deref().map(crate::apdu::to_hex),
        "sw": e.sw.map(|sw| format!("{sw:04X}")),
        "outcome": e.outcome().as_str()})
}

/// `{"tlv": "90", "code": "01", "meaning": "unknown tag found"}`.
pub fn fault_details(f: &ScriptFault) -> Value {
    json!({"tlv": format!("{:02X}", f.tag()), "code": f.code().map(|c| format!("{c:02X}")),
        "meaning": f.describe()})
}

pub(crate) fn outcome_unknown(card: &str, session_id: &str, script: u64) -> AuditRecord {
    AuditRecord::card(
        "ota.script.outcome_unknown",
        card,
        Outcome::Error,
        json!({"session_id": session_id, "script": script}),
    )
}

pub(crate) fn duplicate_results(
    card: &str,
    session_id: &str,
    script: u64,
    identical: bool,
) -> AuditRecord {
    AuditRecord::card(
        "ota.script.duplicate_results",
        card,
        Outcome::Success,
        json!({"session_id": session_id, "script": script, "identical": identical}),
    )
}

pub(crate) fn session_finished(card: &str, session_id: &str, peer: &str) -> AuditRecord {
    AuditRecord::card(
        "ota.session.finish",
        card,
        Outcome::Success,
        json!({"session_id": session_id, "peer": peer}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outside testing: a client offering the identity "EVIL\nX\x1b[31m" kept its refusal out
    /// of the chain (the subject was refused for its control characters). It is escaped now,
    /// and the record goes into a chain.
    #[test]
    fn a_hostile_identity_is_recorded_escaped() {
        let record = handshake_refused("EVIL\nX\x1b[31m", "1.2.3.4:5", "unknown_identity");
        assert_eq!(record.subject, "card:EVIL\\u{a}X\\u{1b}[31m");
        let mut chain = warden_core::audit::ChainState::genesis(
            warden_core::audit::AuditKey::random(),
            warden_core::audit::ChainId::random(),
            0,
        );
        let event = warden_core::audit::NewEvent::new(
            warden_store::audit::timestamp_now(),
            SERVER_ACTOR,
            record.action,
            record.subject.clone(),
            record.outcome,
        );
        chain.append(event).unwrap();
        assert_eq!(card_subject("UICC_002"), "card:UICC_002");
    }

    #[test]
    fn every_record_is_in_the_servers_name_about_a_card_or_the_listener() {
        let alert = Some(Alert {
            code: 20,
            name: "bad_record_mac",
            fatal: true,
        });
        let exchange = Exchange {
            command: vec![0x80, 0xCA, 0, 0x66],
            response: Some(vec![0x90, 0x00]),
            sw: Some(0x9000),
        };
        let fault = ScriptFault::BadFormat(crate::script::BadFormat::UNKNOWN_TAG);
        let card_records = [
            psk_mismatch("c1", "1.2.3.4:5", alert),
            handshake_refused("c1", "1.2.3.4:5", "no_shared_cipher"),
            session_connected("c1", "s", "p", "TLSv1.3", "TLS_AES_128_GCM_SHA256"),
            session_closed(&CloseSummary {
                card: "c1",
                session_id: "s",
                peer: "p",
                reason: CloseReason::Normal,
                from: SessionState::Active,
                duration_s: 1.0,
                scripts: 1,
                apdus: 1,
            }),
            scripts_recovered("c1", "s", &[1], &[]).unwrap(),
            session_opened("c1", "s", "p", "agent", false, &[]),
            script_delivered("c1", "s", 3, false, &["80CA0066".into()]),
            script_completed(
                "c1",
                "s",
                &Completion {
                    script: 3,
                    script_status: "ok",
                    result: "bad-format",
                    executed: Some(1),
                    exchanges: std::slice::from_ref(&exchange),
                    round_trip_us: None,
                    fault: Some(&fault),
                },
            ),
            outcome_unknown("c1", "s", 3),
            duplicate_results("c1", "s", 3, true),
            session_finished("c1", "s", "p"),
        ];
        for r in &card_records {
            assert_eq!(r.actor(), "service:ota");
            assert_eq!(r.subject, "card:c1", "{}", r.action);
            assert!(r.action.starts_with("ota."));
            assert!(r.details.is_object());
        }
        for r in card_records
            .iter()
            .filter(|r| r.action.starts_with("ota.script") || r.action == "ota.apdu")
        {
            if r.action != "ota.script.recover" {
                assert_eq!(r.details["script"], 3, "{}", r.action);
            }
        }
        assert_eq!(scripts_recovered("c1", "s", &[], &[]), None);
        let completed = &card_records[7];
        assert_eq!(completed.outcome, Outcome::Failure);
        // Every C-APDU is in the record, with its answer and what the status word means.
        assert_eq!(completed.details["exchanges"][0]["command"], "80CA0066");
        assert_eq!(completed.details["exchanges"][0]["sw"], "9000");
        assert_eq!(completed.details["exchanges"][0]["outcome"], "success");
        assert_eq!(completed.details["error"]["tlv"], "90");
        assert_eq!(completed.details["error"]["code"], "01");
        for r in [
            server_started("127.0.0.1:8443", &["PSK-AES128-CBC-SHA256"], false),
            server_stopped("127.0.0.1:8443", 1, 0),
        ] {
            assert_eq!(r.actor(), SERVER_ACTOR);
            assert_eq!(r.subject, "listener:127.0.0.1:8443");
        }
    }
}
