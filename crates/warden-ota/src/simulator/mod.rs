//! A simulated UICC: the card side of Amendment B, as a PSK-TLS HTTP/1.1 client.
//!
//! [`run_session`] opens PSK-TLS to the server, POSTs to the admin URI without a body, runs each
//! command script it gets on a [`GpCard`], POSTs the response script to the Next-URI, and stops
//! at `204`. It can send its bodies chunked, and it can simulate a breakdown once (an answer
//! lost on the way) and resume on a new connection with `X-Admin-Resume: true`, repeating its
//! last request as Amendment B says. [`connect`] and [`AdminClient`] are the lower-level
//! pieces the protocol tests use to send requests of their own making.

pub mod card;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

pub use card::{GpCard, Ran};

use crate::admin::{header, ScriptStatus, ADMIN_PROTOCOL, CONTENT_TYPE_RESPONSE};
use crate::apdu::{CommandApdu, ResponseApdu};
use crate::gp::Aid;
use crate::keys::Psk;
use crate::script::CommandScript;
use crate::tls::{client_context, client_ssl, ClientTlsOptions, ConnTrace, HandshakeProgress};
use warden_core::report::report;

/// Why a simulated session failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake failed: {reason} (alert received: {alert})")]
    Tls { reason: String, alert: String },
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// A TLS connection as a card opens it.
pub struct TlsConn {
    pub stream: SslStream<TcpStream>,
    pub version: String,
    pub cipher: String,
    pub handshake: Duration,
}

/// Opens TCP and a PSK-TLS handshake as `identity`.
pub async fn connect(
    addr: SocketAddr,
    identity: &str,
    psk: Arc<Psk>,
    tls: &ClientTlsOptions,
) -> Result<TlsConn, SimError> {
    let started = Instant::now();
    let ctx = client_context(identity, psk, tls).map_err(|e| SimError::TlsSetup(report(&e)))?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| SimError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let trace = ConnTrace::new();
    let ssl = client_ssl(&ctx, trace.clone()).map_err(|e| SimError::TlsSetup(report(&e)))?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| SimError::TlsSetup(report(&e)))?;
    if let Err(e) = Pin::new(&mut stream).connect().await {
        let progress: HandshakeProgress = trace.snapshot();
        return Err(SimError::Tls {
            reason: e.to_string(),
            alert: progress
                .alert_received
                .map_or("none".into(), |a| format!("{} ({})", a.code, a.name)),
        });
    }
    let version = stream.ssl().version_str().to_string();
    let cipher = stream
        .ssl()
        .current_cipher()
        .map_or("unknown", |c| c.name())
        .to_string();
    Ok(TlsConn {
        stream,
        version,
        cipher,
        handshake: started.elapsed(),
    })
}

/// A request body: sent with Content-Length, or chunked (no length known in advance).
pub struct CardBody {
    chunks: VecDeque<Bytes>,
    exact: Option<u64>,
}

impl CardBody {
    pub fn empty() -> Self {
        Self {
            chunks: VecDeque::new(),
            exact: Some(0),
        }
    }

    pub fn full(bytes: Vec<u8>) -> Self {
        let len = bytes.len() as u64;
        let mut chunks = VecDeque::new();
        if !bytes.is_empty() {
            chunks.push_back(Bytes::from(bytes));
        }
        Self {
            chunks,
            exact: Some(len),
        }
    }

    /// Sent with `Transfer-Encoding: chunked`, `chunk` bytes per chunk.
    pub fn chunked(bytes: &[u8], chunk: usize) -> Self {
        Self {
            chunks: bytes
                .chunks(chunk.max(1))
                .map(Bytes::copy_from_slice)
                .collect(),
            exact: None,
        }
    }
}

impl Body for CardBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.chunks.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.exact.is_some()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// An HTTP response as the card sees it.
#[derive(Debug, Clone)]
pub struct CardResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CardResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 client over one TLS connection.
pub struct AdminClient {
    send: hyper::client::conn::http1::SendRequest<CardBody>,
    pub version: String,
    pub cipher: String,
    pub handshake: Duration,
}

impl AdminClient {
    pub async fn connect(
        addr: SocketAddr,
        identity: &str,
        psk: Arc<Psk>,
        tls: &ClientTlsOptions,
    ) -> Result<Self, SimError> {
        let conn = connect(addr, identity, psk, tls).await?;
        let (send, driver) = hyper::client::conn::http1::handshake(TokioIo::new(conn.stream))
            .await
            .map_err(|e| SimError::Http(report(&e)))?;
        tokio::spawn(async move {
            let _ = driver.await;
        });
        Ok(Self {
            send,
            version: conn.version,
            cipher: conn.cipher,
            handshake: conn.handshake,
        })
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        body: CardBody,
    ) -> Result<CardResponse, SimError> {
        let mut b = hyper::Request::builder().method(method).uri(target);
        for (n, v) in headers {
            b = b.header(*n, v.as_str());
        }
        let req = b.body(body).map_err(|e| SimError::Http(report(&e)))?;
        self.send
            .ready()
            .await
            .map_err(|e| SimError::Http(report(&e)))?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| SimError::Http(report(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| SimError::Http(report(&e)))?
            .to_bytes()
            .to_vec();
        Ok(CardResponse {
            status,
            headers,
            body,
        })
    }

    /// Whether the server has closed the connection (or is about to).
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }
}

/// Where to simulate a breakdown, once per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The `n`-th script (1-based) is lost on the way to the card: the card reconnects and
    /// repeats the request that should have brought it.
    ScriptLost(usize),
    /// The server's answer to the card's results for the `n`-th script is lost: the card
    /// reconnects and repeats its results.
    AnswerToResultsLost(usize),
}

/// How the simulated card behaves.
#[derive(Clone)]
pub struct CardConfig {
    pub server: SocketAddr,
    pub identity: String,
    pub psk: Arc<Psk>,
    /// `X-Admin-From` (the agent id); by default `//se-id/iccid/<identity>`.
    pub agent: String,
    /// `Host` header; by default the server address.
    pub host: String,
    pub admin_path: String,
    pub tls: ClientTlsOptions,
    /// Send response scripts chunked, this many bytes per chunk.
    pub chunked: Option<usize>,
    pub cut: Option<Cut>,
    /// Report this status for every script instead of running it (a body only with `ok`).
    pub force_status: Option<ScriptStatus>,
    /// Longest wait for any one step.
    pub timeout: Duration,
    /// Most scripts run in one session before giving up (a runaway server).
    pub max_scripts: usize,
}

impl CardConfig {
    pub fn new(server: SocketAddr, identity: impl Into<String>, psk: Arc<Psk>) -> Self {
        let identity = identity.into();
        Self {
            server,
            agent: format!("//se-id/iccid/{identity}"),
            identity,
            psk,
            host: server.to_string(),
            admin_path: "/admin".into(),
            tls: ClientTlsOptions::default(),
            chunked: None,
            cut: None,
            force_status: None,
            timeout: Duration::from_secs(30),
            max_scripts: 100_000,
        }
    }
}

/// One script as the card ran it.
#[derive(Debug, Clone)]
pub struct ScriptRun {
    pub next_uri: String,
    pub targeted_application: Option<String>,
    pub commands: Vec<CommandApdu>,
    pub responses: Vec<ResponseApdu>,
    pub status: ScriptStatus,
}

/// What a simulated session did.
#[derive(Debug, Clone)]
pub struct SessionReport {
    pub tls_version: String,
    pub cipher: String,
    pub handshake: Duration,
    pub scripts: Vec<ScriptRun>,
    pub requests: u32,
    pub resumes: u32,
    pub connections: u32,
    pub duration: Duration,
    /// Each request that carried a script's results, from sending it to the server's answer
    /// (the next script or the 204): the round trip an APDU exchange costs inside a session.
    pub result_round_trips: Vec<Duration>,
}

impl SessionReport {
    pub fn apdus(&self) -> usize {
        self.scripts.iter().map(|s| s.responses.len()).sum()
    }
}

/// A request the card may have to repeat after a breakdown.
#[derive(Clone)]
struct Pending {
    target: String,
    results: Option<(ScriptStatus, Vec<u8>)>,
}

async fn with_timeout<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, SimError>>,
) -> Result<T, SimError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| SimError::Timeout(limit))?
}

/// Runs one admin session against the server, on `card`.
pub async fn run_session(cfg: &CardConfig, card: &mut GpCard) -> Result<SessionReport, SimError> {
    let started = Instant::now();
    let mut client = with_timeout(
        cfg.timeout,
        AdminClient::connect(cfg.server, &cfg.identity, cfg.psk.clone(), &cfg.tls),
    )
    .await?;
    let mut report = SessionReport {
        tls_version: client.version.clone(),
        cipher: client.cipher.clone(),
        handshake: client.handshake,
        scripts: Vec::new(),
        requests: 0,
        resumes: 0,
        connections: 1,
        duration: Duration::ZERO,
        result_round_trips: Vec::new(),
    };
    let mut pending = Pending {
        target: cfg.admin_path.clone(),
        results: None,
    };
    let mut resume = false;
    let mut cut_done = false;
    loop {
        let mut headers: Vec<(&str, String)> = vec![
            ("Host", cfg.host.clone()),
            (header::X_ADMIN_PROTOCOL, ADMIN_PROTOCOL.to_string()),
            (header::X_ADMIN_FROM, cfg.agent.clone()),
        ];
        let body = match &pending.results {
            None => CardBody::empty(),
            Some((status, body)) => {
                headers.push((header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE.to_string()));
                headers.push((header::X_ADMIN_SCRIPT_STATUS, status.as_str().to_string()));
                match cfg.chunked {
                    Some(n) if !body.is_empty() => CardBody::chunked(body, n),
                    _ => CardBody::full(body.clone()),
                }
            }
        };
        if resume {
            headers.push((header::X_ADMIN_RESUME, "true".into()));
        }
        let sent = Instant::now();
        let carries_results = pending.results.is_some();
        let response = with_timeout(
            cfg.timeout,
            client.send("POST", &pending.target, &headers, body),
        )
        .await?;
        if carries_results && !resume {
            report.result_round_trips.push(sent.elapsed());
        }
        let answered_results = carries_results && matches!(response.status, 200 | 204);
        report.requests += 1;
        resume = false;
        let lost = match cfg.cut {
            Some(Cut::ScriptLost(n)) => response.status == 200 && report.scripts.len() + 1 == n,
            Some(Cut::AnswerToResultsLost(n)) => {
                pending.results.is_some() && report.scripts.len() == n
            }
            None => false,
        };
        if lost && !cut_done {
            // The answer never arrived: new connection, same request, with X-Admin-Resume.
            cut_done = true;
            drop(client);
            client = with_timeout(
                cfg.timeout,
                AdminClient::connect(cfg.server, &cfg.identity, cfg.psk.clone(), &cfg.tls),
            )
            .await?;
            report.connections += 1;
            report.resumes += 1;
            resume = true;
            continue;
        }
        if answered_results && !lost {
            if let Some(last) = card.journal.last_mut() {
                last.acknowledged = true;
            }
        }
        match response.status {
            204 => {
                if response.header(header::CONTENT_TYPE).is_some() || !response.body.is_empty() {
                    return Err(SimError::Protocol(
                        "204 with a Content-Type or a body".into(),
                    ));
                }
                break;
            }
            200 => {
                if report.scripts.len() >= cfg.max_scripts {
                    return Err(SimError::Protocol(format!(
                        "more than {} scripts in one session",
                        cfg.max_scripts
                    )));
                }
                let next_uri = response
                    .header(header::X_ADMIN_NEXT_URI)
                    .ok_or_else(|| SimError::Protocol("200 without X-Admin-Next-URI".into()))?
                    .to_string();
                let script = CommandScript::decode(&response.body).map_err(|e| {
                    SimError::Protocol(format!(
                        "command script: {}",
                        warden_core::report::report(&e)
                    ))
                })?;
                let target_app = response
                    .header(header::X_ADMIN_TARGETED_APPLICATION)
                    .map(str::to_string);
                let known_target = match &target_app {
                    None => true,
                    Some(t) => Aid::parse_targeted_application(t)
                        .ok()
                        .is_some_and(|a| a == card.isd || card.apps.iter().any(|x| x.aid == a)),
                };
                let (status, body, responses) = match cfg.force_status {
                    Some(ScriptStatus::Ok) | None if known_target => {
                        let r = card.run_script(&script);
                        let responses: Vec<ResponseApdu> = r.responses().cloned().collect();
                        (ScriptStatus::Ok, r.encode(), responses)
                    }
                    None | Some(ScriptStatus::Ok) => {
                        (ScriptStatus::UnknownApplication, Vec::new(), Vec::new())
                    }
                    Some(other) => (other, Vec::new(), Vec::new()),
                };
                card.journal.push(Ran {
                    commands: script.apdus().cloned().collect(),
                    executed: matches!(status, ScriptStatus::Ok) && known_target,
                    acknowledged: false,
                });
                report.scripts.push(ScriptRun {
                    next_uri: next_uri.clone(),
                    targeted_application: target_app,
                    commands: script.apdus().cloned().collect(),
                    responses,
                    status,
                });
                pending = Pending {
                    target: next_uri,
                    results: Some((status, body)),
                };
            }
            other => {
                return Err(SimError::Protocol(format!(
                    "server answered {other} to {}",
                    pending.target
                )))
            }
        }
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// Runs `sessions` sessions of cards `identities` (round robin), at most `concurrency` at once.
/// Returns the reports (or errors) in completion order.
///
/// A card runs one session at a time, as a real card does: the sessions of one identity wait
/// for each other, in order. (A second session of a card while its first has a script out is
/// refused by the server with `409`.) So at most `min(concurrency, identities)` sessions run
/// at once.
pub async fn run_many(
    base: CardConfig,
    identities: Vec<(String, Arc<Psk>)>,
    sessions: usize,
    concurrency: usize,
) -> Vec<Result<SessionReport, SimError>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let busy: Vec<Arc<tokio::sync::Mutex<()>>> = identities
        .iter()
        .map(|_| Arc::new(tokio::sync::Mutex::new(())))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..sessions {
        let (identity, psk) = identities[i % identities.len()].clone();
        let card_busy = busy[i % identities.len()].clone();
        let mut cfg = base.clone();
        cfg.agent = format!("//se-id/iccid/{identity}");
        cfg.identity = identity;
        cfg.psk = psk;
        let permit = sem.clone().acquire_owned().await.expect("open semaphore");
        tasks.spawn(async move {
            let _permit = permit;
            // Fair (FIFO): this card's sessions run in the order they were started.
            let _card = card_busy.lock_owned().await;
            let mut card = GpCard::new();
            run_session(&cfg, &mut card).await
        });
    }
    let mut out = Vec::with_capacity(sessions);
    while let Some(r) = tasks.join_next().await {
        out.push(r.unwrap_or_else(|e| Err(SimError::Protocol(format!("task: {e}")))));
    }
    out
}
