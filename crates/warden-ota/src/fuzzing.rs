//! Bodies of the fuzz targets in `fuzz/` (cargo-fuzz), kept here so that `cargo test` runs them
//! too (see `tests/fuzz_smoke.rs`). Each one panics only when an invariant breaks: a decoder
//! that accepts input it cannot re-encode byte for byte, or a session step that answers outside
//! the Amendment B rules.

use crate::admin::{
    header, AdminRequest, Effect, QueuedScript, Redelivery, ScriptId, Session, SessionConfig,
    ADMIN_PROTOCOL, CONTENT_TYPE_COMMAND, CONTENT_TYPE_RESPONSE,
};
use crate::apdu::{CommandApdu, ResponseApdu};
use crate::audit::SERVER_ACTOR;
use crate::gp;
use crate::plan::{Begin, CardState, ConnTally, Connection, StoreWrite};
use crate::script::{CommandScript, LengthCoding, ResponseScript};
use crate::tlv;

/// Decodes arbitrary bytes as command and response scripts (and the layers below); whatever is
/// accepted must encode back to the same bytes and decode to the same value.
pub fn ts102226_codec(data: &[u8]) {
    if let Ok(script) = CommandScript::decode(data) {
        let bytes = script.encode();
        assert_eq!(bytes, data, "command script did not re-encode to its input");
        assert_eq!(CommandScript::decode(&bytes).as_ref(), Ok(&script));
    }
    if let Ok(script) = ResponseScript::decode(data) {
        let bytes = script.encode();
        assert_eq!(
            bytes, data,
            "response script did not re-encode to its input"
        );
        assert_eq!(ResponseScript::decode(&bytes).as_ref(), Ok(&script));
    }
    if let Ok(tree) = tlv::decode_all(data, &tlv::Limits::default()) {
        assert_eq!(tlv::encode_all(&tree), data, "BER-TLV did not re-encode");
    }
    if let Ok(apdu) = CommandApdu::parse(data) {
        assert_eq!(apdu.to_bytes(), data, "C-APDU did not re-encode");
    }
    if let Ok(entries) = gp::decode_get_status(data) {
        for e in &entries {
            let _ = e.describe(gp::StatusSubset::Applications);
        }
    }
}

/// Arbitrary bytes as a TLS ClientHello, as the handshake trace reads it from a client before
/// any authentication: never a panic, and what it reports was in the input.
pub fn client_hello(data: &[u8]) {
    if let Some(hello) = crate::tls::client_hello_psk(data) {
        if let Some(modes) = &hello.kex_modes {
            assert!(modes.len() < data.len());
        }
        if let Some(identity) = &hello.identity {
            assert!(identity.len() <= 3 * data.len());
        }
    }
}

/// The seed's PSK key file (`keys: [{identity, key}]`): never a panic; what is accepted has
/// unique, valid identities and keys of a valid length; an error never quotes a key's value.
pub fn key_file(data: &[u8]) {
    match crate::keys::parse_key_file(data) {
        Ok(entries) => {
            let mut seen = std::collections::HashSet::new();
            for (identity, psk) in &entries {
                assert!(seen.insert(identity.clone()), "identity {identity:?} twice");
                assert!(warden_store::ota::check_identity(identity).is_ok());
                let len = psk.len();
                assert!(
                    (warden_store::ota::PSK_MIN_LEN..=warden_store::ota::PSK_MAX_LEN)
                        .contains(&len)
                );
            }
        }
        Err(err) => {
            // Key material is hex: no run of 8 or more hex digits written after `key:` may
            // appear in the message (unless the file also has it somewhere else).
            let message = warden_core::report::report(&err);
            let text = String::from_utf8_lossy(data);
            for line in text.lines() {
                let Some((_, value)) = line.split_once("key:") else {
                    continue;
                };
                for run in value
                    .split(|c: char| !c.is_ascii_hexdigit())
                    .filter(|run| run.len() >= 8)
                {
                    let elsewhere = text.lines().any(|l| !l.contains("key:") && l.contains(run));
                    assert!(
                        elsewhere || !message.contains(run),
                        "the error quotes a key: {message}"
                    );
                }
            }
        }
    }
}

/// Well-formed key files, for the `key_file` target's corpus.
pub fn key_file_seeds() -> Vec<Vec<u8>> {
    vec![
        b"# psk_keys.yaml\nkeys:\n  - identity: \"UICC_001\"\n    key: \"0123456789ABCDEF0123456789ABCDEF\"  # Hex encoded\n  - identity: \"UICC_002\"\n    key: \"FEDCBA9876543210FEDCBA9876543210\"\n".to_vec(),
        b"keys:\n  - identity: a\n    key: 00112233445566778899aabbccddeeff\n".to_vec(),
        b"keys: []\n".to_vec(),
        // Malformed: the key without a space after `key:` (the YAML error used to quote it).
        b"keys:\n  - key:00112233445566778899aabbccddeeff\n".to_vec(),
    ]
}

/// Reads fuzz bytes as choices; past the end every read is zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn text(&mut self) -> String {
        let n = usize::from(self.byte() % 40);
        String::from_utf8_lossy(self.take(n)).into_owned()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn queue() -> Vec<QueuedScript> {
    let script = |apdu: CommandApdu| CommandScript::new([apdu]);
    vec![
        QueuedScript {
            id: ScriptId(1),
            script: script(gp::get_data(gp::data_object::CPLC)),
            targeted_application: None,
            redelivery: Redelivery::Allowed,
        },
        QueuedScript {
            id: ScriptId(2),
            script: script(gp::delete(
                &gp::Aid::from_hex("A0000001515350").expect("valid AID"),
                true,
            ))
            .with_coding(LengthCoding::Indefinite),
            targeted_application: Some(gp::Aid::from_hex("A000000151000000").expect("valid AID")),
            redelivery: Redelivery::Forbidden,
        },
        QueuedScript {
            id: ScriptId(3),
            script: script(
                gp::get_status(
                    gp::StatusSubset::Applications,
                    gp::Occurrence::FirstOrAll,
                    &[],
                )
                .expect("valid command"),
            ),
            targeted_application: None,
            redelivery: Redelivery::Allowed,
        },
    ]
}

/// One header: mostly the right value; sometimes absent, garbage, or twice.
fn push_header(input: &mut Input<'_>, req: &mut AdminRequest, name: &str, good: &str) {
    match input.byte() {
        0..=219 => req.headers.push((name.into(), good.into())),
        220..=231 => {}
        232..=243 => {
            let v = input.text();
            req.headers.push((name.into(), v));
        }
        _ => {
            req.headers.push((name.to_ascii_lowercase(), good.into()));
            req.headers.push((name.into(), good.into()));
        }
    }
}

fn request(input: &mut Input<'_>, last_next_uri: &str, last_target: &str) -> AdminRequest {
    let method = match input.byte() {
        0..=3 => "GET".to_string(),
        4..=7 => input.text(),
        _ => "POST".to_string(),
    };
    let target = match input.byte() % 8 {
        0..=3 => last_next_uri.to_string(),
        4 => last_target.to_string(),
        5 => "/admin".to_string(),
        6 => format!("/admin?session=fz&seq={}", input.byte() % 4),
        _ => input.text(),
    };
    let mut req = AdminRequest {
        method,
        target,
        headers: Vec::new(),
        body: Vec::new(),
    };
    push_header(input, &mut req, header::HOST, "ota.example");
    push_header(input, &mut req, header::X_ADMIN_PROTOCOL, ADMIN_PROTOCOL);
    push_header(input, &mut req, header::X_ADMIN_FROM, "card-1");
    if input.byte() % 4 == 0 {
        push_header(input, &mut req, header::X_ADMIN_RESUME, "true");
    }
    let mode = input.byte() % 8;
    if mode == 0 {
        // Shaped like a first request: nothing more.
        return req;
    }
    // Shaped like a results request, with random slips.
    let status = [
        "ok",
        "ok",
        "ok",
        "unknown-application",
        "not-a-security-domain",
        "security-error",
    ][usize::from(input.byte() % 6)];
    if mode != 1 {
        push_header(input, &mut req, header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE);
    }
    if mode != 2 {
        push_header(input, &mut req, header::X_ADMIN_SCRIPT_STATUS, status);
    }
    req.body = match (input.byte() % 8, status) {
        (0, _) => {
            let n = usize::from(input.byte());
            input.take(n).to_vec()
        }
        (1, _) => Vec::new(),
        (_, "ok") => {
            let sw = if input.byte() % 2 == 0 {
                0x9000
            } else {
                u16::from_be_bytes([input.byte(), input.byte()])
            };
            ResponseScript::with_responses(1, [ResponseApdu::new(vec![], sw)]).encode()
        }
        _ => Vec::new(),
    };
    req
}

/// What one [`admin_request`] run reached, so tests can check the fuzz body gets past the
/// first checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdminCoverage {
    pub refused: usize,
    pub delivered: usize,
    pub results: usize,
    pub redelivered: usize,
    pub duplicates: usize,
    pub outcome_unknown: usize,
    pub finished: usize,
}

impl AdminCoverage {
    pub fn add(&mut self, other: &Self) {
        self.refused += other.refused;
        self.delivered += other.delivered;
        self.results += other.results;
        self.redelivered += other.redelivered;
        self.duplicates += other.duplicates;
        self.outcome_unknown += other.outcome_unknown;
        self.finished += other.finished;
    }
}

/// Drives one session through a few requests built from the bytes, checking each step, and
/// the same requests through the pure core ([`crate::plan::CardState`]) on one connection,
/// which must answer alike and plan only what the effects say.
pub fn admin_request(data: &[u8]) -> AdminCoverage {
    let mut cov = AdminCoverage::default();
    let mut input = Input(data);
    let mut scripts = queue();
    scripts.truncate(usize::from(input.byte() % 4));
    let mut pending = 0usize;
    let config = SessionConfig::new("/admin", "fz").expect("valid config");
    let mut session = Session::new(config.clone());
    let mut card = CardState::new();
    let mut tally = ConnTally::default();
    let now = std::time::Instant::now();
    let mut first_request = true;
    let mut last_next_uri = "/admin".to_string();
    let mut last_target = "/admin".to_string();
    for _ in 0..8 {
        if input.is_empty() {
            break;
        }
        let req = request(&mut input, &last_next_uri, &last_target);
        let next = scripts.get(pending);
        let before = session.clone();
        let step = session.handle(&req, next);
        let conn = Connection {
            conn_id: 1,
            session_id: "fz",
            card: "card-1",
            peer: "127.0.0.1:1",
            first_request,
        };
        first_request = false;
        let turn = card
            .begin(&conn, req.is_resume(), &config)
            .expect("one connection is never refused a turn");
        if turn.begin() != Begin::Fresh {
            // The core starts over only where the state machine would hold no session.
            assert_eq!(
                card.session(),
                Some(&before),
                "the core's session is the same"
            );
        }
        match card.step(turn, &conn, &req, next, now) {
            Err(refusal) => {
                assert_eq!(Some(&refusal.error), step.error.as_ref());
                assert_eq!(refusal.response, step.response);
            }
            Ok(plan) => {
                assert_eq!(step.error, None);
                let delivered = step
                    .effects
                    .iter()
                    .filter(|e| matches!(e, Effect::Delivered { .. } | Effect::Redelivered { .. }))
                    .count();
                let writes = plan
                    .writes
                    .iter()
                    .filter(|w| matches!(w, StoreWrite::Delivered { .. }))
                    .count();
                assert_eq!(delivered, writes, "a delivery write per delivery");
                for w in &plan.writes {
                    if let StoreWrite::Results { script, .. } = w {
                        assert_eq!(
                            Some(*script),
                            before.in_flight(),
                            "results of the script out"
                        );
                    }
                }
                for r in &plan.audit {
                    assert_eq!(
                        (r.actor(), r.subject.as_str()),
                        (SERVER_ACTOR, "card:card-1")
                    );
                }
                let done = card.commit(plan.after, &mut tally, now);
                assert_eq!(done.response, step.response);
                assert_eq!(card.session(), Some(&step.session));
            }
        }
        let r = &step.response;
        assert_eq!(
            r.header(header::X_ADMIN_PROTOCOL),
            Some(ADMIN_PROTOCOL),
            "every response carries X-Admin-Protocol"
        );
        if let Some(e) = &step.error {
            cov.refused += 1;
            assert_eq!(r.status, e.status());
            assert!(r.status >= 400 && r.body.is_empty() && step.effects.is_empty());
            assert_eq!(
                step.session, before,
                "a refused request leaves the state alone"
            );
        } else {
            match r.status {
                200 => {
                    assert_eq!(r.header(header::CONTENT_TYPE), Some(CONTENT_TYPE_COMMAND));
                    let uri = r.header(header::X_ADMIN_NEXT_URI).expect("Next-URI on 200");
                    let script = CommandScript::decode(&r.body).expect("a valid command script");
                    let id = step.session.in_flight().expect("a script is in flight");
                    let sent = scripts
                        .iter()
                        .find(|s| s.id == id)
                        .expect("a queued script");
                    assert_eq!(script, sent.script);
                    last_next_uri = uri.to_string();
                }
                204 => {
                    assert!(r.body.is_empty());
                    assert_eq!(r.header(header::CONTENT_TYPE), None);
                    assert_eq!(r.header(header::X_ADMIN_NEXT_URI), None);
                    assert!(step.session.is_finished());
                }
                other => panic!("unexpected status {other} without an error"),
            }
            last_target = req.target.clone();
        }
        for effect in &step.effects {
            match effect {
                Effect::Delivered { script, .. } => {
                    assert_eq!(Some(*script), next.map(|s| s.id), "only the peeked script");
                    pending += 1;
                    cov.delivered += 1;
                }
                Effect::Results { script, .. } => {
                    assert_eq!(
                        Some(*script),
                        before.in_flight(),
                        "only the script in flight"
                    );
                    cov.results += 1;
                }
                Effect::OutcomeUnknown { script } => {
                    assert_eq!(
                        Some(*script),
                        before.in_flight(),
                        "only the script in flight"
                    );
                    cov.outcome_unknown += 1;
                }
                Effect::Redelivered { script, .. } => {
                    assert_eq!(Some(*script), before.in_flight());
                    cov.redelivered += 1;
                }
                Effect::DuplicateResults { .. } => cov.duplicates += 1,
                Effect::Finished => cov.finished += 1,
                Effect::SessionOpened { .. } | Effect::ResumeWithoutState { .. } => {}
            }
        }
        session = step.session;
    }
    cov
}
