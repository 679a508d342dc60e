//! Known-answer test for one whole SIEM message: CEF payload in an RFC 5424 envelope in an
//! RFC 5425 frame, compared byte for byte with `tests/vectors/tamper_alert.frame`.

use time::macros::datetime;
use warden_siem::format::{
    encode_frame, AppName, CefDevice, CefEvent, Facility, FrameDecoder, Hostname, MessageKind,
    Priority, ProcId, SdElement, SdId, SdParamName, SyslogMessage, Timestamp,
};

fn tamper_alert_frame() -> Vec<u8> {
    let kind = MessageKind::TamperAlert;
    let at = datetime!(2026-04-15 09:25:11.042 UTC);
    let cef = CefEvent::for_kind(kind)
        .receipt_time_ms((at.unix_timestamp_nanos() / 1_000_000) as u64)
        .sequence(1234)
        .device_host("shim-12.ward3.example.org")
        .device_external_id("shim-a")
        .action("tamper.case_open")
        .tamper_source("case switch \"S1\"|lid=open\\now\nsecond line")
        .session_id("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        .encode(&CefDevice::new("warden", "warden shim", "0.1.0").unwrap());
    let sd = SdElement::new(SdId::new("warden@32473").unwrap())
        .param(SdParamName::from_static("seq"), "1234")
        .param(SdParamName::from_static("kind"), kind.as_str());
    let msg = SyslogMessage::new(Priority::new(Facility::LogAlert, kind.syslog_severity()))
        .timestamp(Timestamp::new(at).unwrap())
        .hostname(Hostname::new("shim-12.ward3.example.org").unwrap())
        .app_name(AppName::from_static("warden"))
        .procid(ProcId::new("812").unwrap())
        .msgid(kind.msgid())
        .structured_data(sd)
        .unwrap()
        .msg(cef);
    let mut frame = Vec::new();
    encode_frame(&msg.encode(), &mut frame).unwrap();
    frame
}

#[test]
fn tamper_alert_matches_the_known_answer() {
    let want = include_bytes!("vectors/tamper_alert.frame");
    let got = tamper_alert_frame();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want),
        "the frame changed; if on purpose, update tests/vectors/tamper_alert.frame"
    );
    let mut dec = FrameDecoder::new(8192);
    let mut input = &got[..];
    let msg = dec.decode(&mut input).unwrap().unwrap();
    assert!(input.is_empty());
    dec.finish().unwrap();
    assert!(msg.starts_with(b"<113>1 2026-04-15T09:25:11.042000Z "));
}
