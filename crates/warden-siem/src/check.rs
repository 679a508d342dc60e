//! `warden siem test`: one connection, one test message, and a verdict with the exact cause.
//!
//! The test message has the CEF signature ID `siem-test`, `kind="test"` in its structured data
//! and no `warden_seq` (it does not come from the spool, so it must not look like a gap or a
//! repeat). Success means: the handshake verified the server, the message was written and
//! flushed, and the server kept the connection open for `confirm_after` afterwards — the most
//! RFC 5425 can tell (see `docs/siem.md`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_store::spool::{now_ms, SpoolPayload};

use crate::config::MessageIdentity;
use crate::format::MessageKind;
use crate::message::frame;
use crate::tls::{classify_close, CloseEvent, LinkError, Stage, TlsClient};
use warden_core::report::report;

/// What a successful test saw.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub peer: Option<SocketAddr>,
    pub tls_version: String,
    pub cipher: String,
    /// The server certificate's subject, one `NAME=value` per entry.
    pub server_subject: String,
    /// The framed bytes that were sent.
    pub frame: Vec<u8>,
    /// How long the connection was watched after the write.
    pub watched: Duration,
}

/// The payload of the test event.
pub fn test_payload() -> SpoolPayload {
    SpoolPayload {
        signature_id: Some("siem-test".into()),
        name: Some("SIEM connection test".into()),
        severity: Some(1),
        action: Some("siem.test".into()),
        outcome: Some(true),
        message: Some("warden siem test: if you can read this, the SIEM link works".into()),
        ..SpoolPayload::default()
    }
}

/// Connects, sends one test event, watches the connection for `confirm_after`, closes cleanly.
pub async fn send_test_event(
    client: &TlsClient,
    identity: &MessageIdentity,
    confirm_after: Duration,
    max_message_bytes: usize,
) -> Result<TestReport, LinkError> {
    let mut stream = client.connect().await?;
    let handshake_at = Instant::now();
    let ssl = stream.ssl();
    let tls_version = ssl.version_str().to_owned();
    let cipher = ssl
        .current_cipher()
        .map_or_else(|| "?".to_owned(), |c| c.name().to_owned());
    let server_subject = ssl
        .peer_certificate()
        .map(|cert| {
            cert.subject_name()
                .entries()
                .map(|e| {
                    let key = e.object().nid().short_name().unwrap_or("?");
                    let value = e.data().to_string().unwrap_or_else(|_| "?".into());
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let peer = stream.get_ref().peer_addr().ok();
    let framed = frame(
        MessageKind::AuditEvent,
        None,
        now_ms(),
        &test_payload(),
        identity,
        max_message_bytes,
    );
    let write_timeout = client.timeouts().write;
    match tokio::time::timeout(write_timeout, async {
        stream.write_all(&framed).await?;
        stream.flush().await
    })
    .await
    {
        Err(_) => {
            return Err(LinkError::Timeout {
                stage: Stage::Write,
                after: write_timeout,
            })
        }
        Ok(Err(e)) => return Err(classify_close(CloseEvent::Error(e), true, false)),
        Ok(Ok(())) => {}
    }
    let deadline = tokio::time::Instant::now() + confirm_after;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                let soon = handshake_at.elapsed() < confirm_after;
                return Err(classify_close(CloseEvent::Eof, soon, false));
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                let soon = handshake_at.elapsed() < confirm_after;
                return Err(classify_close(CloseEvent::Error(e), soon, false));
            }
        }
    }
    // close_notify, so the server logs a clean close; its failure changes nothing.
    let _ = tokio::time::timeout(write_timeout, stream.shutdown()).await;
    Ok(TestReport {
        peer,
        tls_version,
        cipher,
        server_subject,
        frame: framed,
        watched: confirm_after,
    })
}

/// Why an audited SIEM test did not report success.
#[derive(Debug, thiserror::Error)]
pub enum SiemTestError {
    #[error(transparent)]
    Authorization(#[from] warden_store::identity::WrongAuthorization),
    #[error("SIEM test to {target} failed")]
    Link {
        target: String,
        #[source]
        source: LinkError,
    },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] warden_store::StoreError),
}

/// `warden siem test` as an operation: needs `siem.test`; sends one test event to the SIEM of
/// `settings` and appends `siem.test` (success, or the failure's cause) to the audit chain.
pub fn audited_test(
    store: &mut warden_store::Store,
    by: &warden_store::identity::Authorized,
    settings: &crate::SiemSettings,
    client: &TlsClient,
    watch: Duration,
) -> Result<TestReport, SiemTestError> {
    by.check(warden_core::rbac::Permission::SiemTest)?;
    let endpoint = &settings.endpoint;
    let target = format!(
        "{}:{} (server name {})",
        endpoint.host, endpoint.port, endpoint.server_name
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SiemTestError::Runtime)?;
    let result = runtime.block_on(send_test_event(
        client,
        &settings.identity,
        watch,
        settings.delivery.max_message_bytes,
    ));
    let event = match &result {
        Ok(report) => by
            .event("siem.test", &target, warden_core::audit::Outcome::Success)
            .with_details(serde_json::json!({
                "tls_version": report.tls_version,
                "cipher": report.cipher,
                "server_subject": report.server_subject,
            })),
        Err(err) => by
            .event("siem.test", &target, warden_core::audit::Outcome::Failure)
            .with_details(serde_json::json!({ "error": report(err) })),
    };
    store.append(vec![event])?;
    result.map_err(|source| SiemTestError::Link { target, source })
}
