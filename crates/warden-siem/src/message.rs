//! From a spooled row to the bytes on the wire: CEF payload, RFC 5424 envelope, RFC 5425 frame.
//! Pure: the same row always gives the same bytes, so a message re-sent after a reconnect is
//! byte-identical to the first copy and the receiver can drop it by `warden_seq` alone.
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [warden@32473 seq="N" kind="audit_event"] CEF:0|…|cn1=N cn1Label=warden_seq …
//! ```
//!
//! PROCID is the NILVALUE on purpose (a restart would otherwise change a re-sent message).
//! Messages longer than `max_message_bytes` have their longest text field shortened (marked with
//! `…[cut N bytes]`) until they fit: an event is never lost to its size.

use time::OffsetDateTime;
use warden_store::spool::{SpoolKind, SpoolPayload, SpoolRow};

use crate::config::MessageIdentity;
use crate::format::cef::{keys, CefEvent, CefSeverity};
use crate::format::framing::encode_frame;
use crate::format::kind::MessageKind;
use crate::format::rfc5424::{Priority, SdElement, SdId, SdParamName, SyslogMessage, Timestamp};

/// The SD-ID of warden's structured data element. 32473 is the private enterprise number RFC
/// 5612 reserves for documentation; a deployment with its own number changes it here.
pub const SD_ID: &str = "warden@32473";

/// The message kind for a spool kind (same names and priorities, checked by a test).
pub fn message_kind(kind: SpoolKind) -> MessageKind {
    match kind {
        SpoolKind::TamperAlert => MessageKind::TamperAlert,
        SpoolKind::AuditEvent => MessageKind::AuditEvent,
        SpoolKind::AuditCheckpoint => MessageKind::AuditCheckpoint,
        SpoolKind::Heartbeat => MessageKind::Heartbeat,
    }
}

/// The CEF event for `payload`; header overrides that are not valid CEF fall back to the kind's
/// defaults rather than losing the event.
fn cef_event(
    kind: MessageKind,
    seq: Option<u64>,
    created_ms: i64,
    p: &SpoolPayload,
    id: &MessageIdentity,
) -> CefEvent {
    let signature = p.signature_id.as_deref().unwrap_or(kind.cef_signature_id());
    let name = p.name.as_deref().unwrap_or(kind.cef_name());
    let severity = p
        .severity
        .and_then(|s| CefSeverity::new(s).ok())
        .unwrap_or(kind.cef_severity());
    let mut e =
        CefEvent::new(signature, name, severity).unwrap_or_else(|_| CefEvent::for_kind(kind));
    e = e.receipt_time_ms(u64::try_from(created_ms).unwrap_or(0));
    if let Some(seq) = seq {
        e = e.sequence(seq);
    }
    if let Some(host) = &id.hostname {
        e = e.device_host(host.as_str());
    }
    if let Some(device_id) = &id.device_id {
        e = e.device_external_id(device_id.clone());
    }
    if let Some(v) = &p.user {
        e = e.source_user(v.clone());
    }
    if let Some(v) = &p.action {
        e = e.action(v.clone());
    }
    if let Some(v) = p.outcome {
        e = e.outcome(v);
    }
    if let Some(v) = &p.reason {
        e = e.reason(v.clone());
    }
    if let Some(v) = &p.session_id {
        e = e.session_id(v.clone());
    }
    match (p.audit_seq, &p.chain_mac) {
        (Some(s), Some(mac)) => e = e.audit_chain(s, mac.clone()),
        (Some(s), None) => {
            e = e
                .extension(keys::CN2, s.to_string())
                .extension(keys::CN2_LABEL, "audit_seq")
        }
        (None, Some(mac)) => {
            e = e
                .extension(keys::CS2, mac.clone())
                .extension(keys::CS2_LABEL, "chain_mac")
        }
        (None, None) => {}
    }
    if let Some(v) = &p.tamper_source {
        e = e.tamper_source(v.clone());
    }
    if let Some(v) = &p.recording_sha256 {
        e = e.recording_hash(v.clone());
    }
    if let Some((label, count)) = &p.counter {
        e = e
            .extension(keys::CN3, count.to_string())
            .extension(keys::CN3_LABEL, label.clone());
    }
    if let Some(v) = &p.message {
        e = e.message(v.clone());
    }
    e
}

/// The RFC 5424 message (envelope + CEF) for one event. `seq` is `None` only for test messages,
/// which carry `kind="test"` and no `warden_seq`.
pub fn syslog_message(
    kind: MessageKind,
    seq: Option<u64>,
    created_ms: i64,
    payload: &SpoolPayload,
    id: &MessageIdentity,
) -> SyslogMessage {
    let cef = cef_event(kind, seq, created_ms, payload, id).encode(&id.device);
    let mut sd = SdElement::new(SdId::new(SD_ID).expect("SD_ID is a valid SD-ID"));
    sd = match seq {
        Some(seq) => sd
            .param(SdParamName::from_static("seq"), seq.to_string())
            .param(SdParamName::from_static("kind"), kind.as_str()),
        None => sd.param(SdParamName::from_static("kind"), "test"),
    };
    let mut msg = SyslogMessage::new(Priority::new(id.facility, kind.syslog_severity()));
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_ms) * 1_000_000)
        .ok()
        .and_then(|t| Timestamp::new(t).ok());
    if let Some(at) = at {
        msg = msg.timestamp(at);
    }
    if let Some(host) = &id.hostname {
        msg = msg.hostname(host.clone());
    }
    msg = msg.app_name(id.app_name.clone()).msgid(kind.msgid());
    // One SD element per message: adding it cannot be a duplicate.
    msg = msg.structured_data(sd).unwrap_or_else(|_| unreachable_sd());
    msg.msg(cef)
}

#[cold]
fn unreachable_sd() -> SyslogMessage {
    // `structured_data` only fails on a repeated SD-ID, and the message has one element.
    SyslogMessage::new(Priority::new(
        crate::format::Facility::User,
        crate::format::Severity::Notice,
    ))
}

/// The framed bytes (`LEN SP MSG`) for one event, at most `max_len` bytes of MSG (see the
/// module documentation).
pub fn frame(
    kind: MessageKind,
    seq: Option<u64>,
    created_ms: i64,
    payload: &SpoolPayload,
    id: &MessageIdentity,
    max_len: usize,
) -> Vec<u8> {
    let mut payload = std::borrow::Cow::Borrowed(payload);
    let mut bytes = syslog_message(kind, seq, created_ms, &payload, id).encode();
    // Each round cuts the longest text field by the excess (plus room for the marker); a few
    // rounds always suffice because every round shrinks the message.
    for _ in 0..16 {
        if bytes.len() <= max_len {
            break;
        }
        let excess = bytes.len() - max_len;
        if !shorten_longest(payload.to_mut(), excess + 32) {
            break;
        }
        bytes = syslog_message(kind, seq, created_ms, &payload, id).encode();
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    // A syslog message always has a header, so it is never empty.
    let _ = encode_frame(&bytes, &mut out);
    out
}

/// The framed bytes for a spooled row.
pub fn frame_row(row: &SpoolRow, id: &MessageIdentity, max_len: usize) -> Vec<u8> {
    frame(
        message_kind(row.kind),
        Some(row.seq),
        row.created_ms,
        &row.payload,
        id,
        max_len,
    )
}

fn shorten_longest(p: &mut SpoolPayload, cut: usize) -> bool {
    let fields: [&mut Option<String>; 9] = [
        &mut p.message,
        &mut p.user,
        &mut p.action,
        &mut p.reason,
        &mut p.session_id,
        &mut p.chain_mac,
        &mut p.tamper_source,
        &mut p.recording_sha256,
        &mut p.name,
    ];
    let Some(longest) = fields
        .into_iter()
        .filter_map(|f| f.as_mut())
        .max_by_key(|s| s.len())
    else {
        return false;
    };
    if longest.len() <= 16 {
        return false;
    }
    let keep_target = longest.len().saturating_sub(cut).max(8);
    let mut keep = keep_target.min(longest.len());
    while !longest.is_char_boundary(keep) {
        keep -= 1;
    }
    let removed = longest.len() - keep;
    longest.truncate(keep);
    longest.push_str(&format!("…[cut {removed} bytes]"));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cef::CefDevice;
    use crate::format::rfc5424::{AppName, Facility, Hostname};
    use crate::format::FrameDecoder;

    fn id() -> MessageIdentity {
        MessageIdentity {
            hostname: Some(Hostname::new("shim-12").unwrap()),
            app_name: AppName::from_static("warden"),
            facility: Facility::LogAudit,
            device: CefDevice::new("warden", "warden", "0.1.0").unwrap(),
            device_id: Some("shim-a".into()),
        }
    }

    #[test]
    fn spool_kinds_match_message_kinds() {
        for kind in SpoolKind::ALL {
            let m = message_kind(kind);
            assert_eq!(m.priority(), kind.priority());
            assert_eq!(m.as_str(), kind.as_str());
        }
    }

    #[test]
    fn audit_event_golden() {
        let row = SpoolRow {
            seq: 42,
            kind: SpoolKind::AuditEvent,
            created_ms: 1_776_244_923_500,
            payload: SpoolPayload {
                user: Some("tech-001".into()),
                action: Some("login".into()),
                outcome: Some(false),
                reason: Some("bad_code".into()),
                audit_seq: Some(17),
                chain_mac: Some("abcd".into()),
                ..SpoolPayload::default()
            },
            attempts: 3,
        };
        let framed = frame_row(&row, &id(), 8192);
        let text = String::from_utf8(framed).unwrap();
        let want = concat!(
            "<109>1 2026-04-15T09:22:03.500000Z shim-12 warden - AUDIT ",
            "[warden@32473 seq=\"42\" kind=\"audit_event\"] ",
            "CEF:0|warden|warden|0.1.0|audit-event|Audit event|5|rt=1776244923500 cn1=42 ",
            "cn1Label=warden_seq dvchost=shim-12 deviceExternalId=shim-a suser=tech-001 act=login ",
            "outcome=failure reason=bad_code cn2=17 cn2Label=audit_seq cs2=abcd cs2Label=chain_mac"
        );
        assert_eq!(text, format!("{} {want}", want.len()));
    }

    #[test]
    fn overrides_counters_and_test_messages() {
        let p = SpoolPayload {
            signature_id: Some("spool-overflow".into()),
            name: Some("bad\nname".into()),
            severity: Some(99),
            counter: Some(("dropped_heartbeats".into(), 4)),
            ..SpoolPayload::default()
        };
        let m = syslog_message(MessageKind::AuditEvent, Some(7), 0, &p, &id()).to_string();
        // An invalid name falls back to the kind's header, an invalid severity to its default.
        assert!(m.contains("|audit-event|Audit event|5|"), "{m}");
        assert!(m.contains("cn3=4 cn3Label=dropped_heartbeats"), "{m}");
        let ok = SpoolPayload {
            signature_id: Some("siem-test".into()),
            ..SpoolPayload::default()
        };
        let t = syslog_message(MessageKind::AuditEvent, None, 0, &ok, &id()).to_string();
        assert!(t.contains("[warden@32473 kind=\"test\"]"), "{t}");
        assert!(t.contains("|siem-test|Audit event|5|"), "{t}");
        assert!(!t.contains("cn1="), "{t}");
    }

    #[test]
    fn long_messages_are_cut_to_fit_and_stay_valid_utf8() {
        let p = SpoolPayload {
            message: Some("ü".repeat(10_000)),
            user: Some("u".repeat(3000)),
            ..SpoolPayload::default()
        };
        for max in [480, 2048, 8192] {
            let framed = frame(MessageKind::AuditEvent, Some(1), 0, &p, &id(), max);
            let mut dec = FrameDecoder::new(max);
            let mut input = &framed[..];
            let msg = dec.decode(&mut input).unwrap().expect("one whole frame");
            assert!(msg.len() <= max, "{} > {max}", msg.len());
            let text = String::from_utf8(msg).unwrap();
            assert!(text.contains("…[cut "), "{text}");
            assert!(text.contains("cn1=1 cn1Label=warden_seq"));
        }
    }
}
