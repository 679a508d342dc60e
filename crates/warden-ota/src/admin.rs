//! The GlobalPlatform Amendment B admin protocol ("RAM over HTTP") as a state machine without I/O.
//!
//! The card is the HTTP client. It opens PSK-TLS and POSTs to the admin URI with no body; the
//! server answers each POST with the next command script (`200`, with `X-Admin-Next-URI`) or ends
//! the session (`204`, no body, no Content-Type). The card runs the script and POSTs its response
//! script to the Next-URI with `X-Admin-Script-Status`, and so on.
//!
//! The HTTP adapter turns each request into an [`AdminRequest`] and calls [`Session::handle`] with
//! the next script waiting in the card's queue (peeked, not taken). Each state's `handle(self, …)`
//! consumes it and returns a [`Step`]: the next state, the [`AdminResponse`] to send, and the
//! [`Effect`]s the caller must apply (mark a script in flight, store results). A rejected request
//! leaves the state as it was and carries an [`AdminError`], which maps to an HTTP status.
//!
//! Resume (`X-Admin-Resume: true`): after a breakdown the card repeats its last request. If it
//! repeats the request whose results we already stored, those results are acknowledged as a
//! duplicate, not stored again. If it repeats the request we answered with script S, the card
//! may never have received S — or may have run part of it. S is sent again only if it was queued
//! as [`Redelivery::Allowed`] (idempotent, e.g. GET STATUS); otherwise its outcome is reported as
//! unknown and the session moves on, so nothing runs twice by accident.

use std::fmt;

use crate::gp::Aid;
use crate::script::{CommandScript, ResponseScript, ScriptError, ScriptLimits};

/// `X-Admin-Protocol` value, sent on every response and required on every request.
pub const ADMIN_PROTOCOL: &str = "globalplatform-remote-admin/1.0";
/// Content-Type of a command script (server → card).
pub const CONTENT_TYPE_COMMAND: &str =
    "application/vnd.globalplatform.card-content-mgt;version=1.0";
/// Content-Type of a response script (card → server).
pub const CONTENT_TYPE_RESPONSE: &str =
    "application/vnd.globalplatform.card-content-mgt-response;version=1.0";
const RESPONSE_MEDIA_TYPE: &str = "application/vnd.globalplatform.card-content-mgt-response";

/// Header names, as the server writes them.
pub mod header {
    pub const HOST: &str = "Host";
    pub const CONTENT_TYPE: &str = "Content-Type";
    pub const X_ADMIN_PROTOCOL: &str = "X-Admin-Protocol";
    pub const X_ADMIN_FROM: &str = "X-Admin-From";
    pub const X_ADMIN_SCRIPT_STATUS: &str = "X-Admin-Script-Status";
    pub const X_ADMIN_RESUME: &str = "X-Admin-Resume";
    pub const X_ADMIN_NEXT_URI: &str = "X-Admin-Next-URI";
    pub const X_ADMIN_TARGETED_APPLICATION: &str = "X-Admin-Targeted-Application";
}

/// The parts of a card's HTTP request the protocol looks at, as the HTTP adapter parsed them.
/// Header names compare case-insensitively; values are used trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminRequest {
    pub method: String,
    /// The request target in origin form: path and query, e.g. `/admin?session=…&seq=1`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The body after any chunked transfer coding was removed.
    pub body: Vec<u8>,
}

impl AdminRequest {
    /// A POST to `target` with no headers and no body.
    pub fn post(target: impl Into<String>) -> Self {
        Self {
            method: "POST".into(),
            target: target.into(),
            ..Self::default()
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The card's `X-Admin-Script-Status`, if it gave exactly one.
    pub fn script_status(&self) -> Option<ScriptStatus> {
        self.single(header::X_ADMIN_SCRIPT_STATUS)
            .ok()
            .flatten()
            .and_then(ScriptStatus::parse)
    }

    /// The single value of a header; `Err` if it appears more than once.
    fn single(&self, name: &'static str) -> Result<Option<&str>, AdminError> {
        let mut found = None;
        for (n, v) in &self.headers {
            if n.trim().eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return Err(AdminError::DuplicateHeader(name));
                }
                found = Some(v.trim());
            }
        }
        Ok(found)
    }

    /// Whether the request says `X-Admin-Resume: true` (as far as the session is concerned:
    /// [`Session::handle`] checks the header strictly).
    pub fn is_resume(&self) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.trim().eq_ignore_ascii_case(header::X_ADMIN_RESUME)
                && v.trim().eq_ignore_ascii_case("true")
        })
    }

    fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }
}

/// `X-Admin-Script-Status`: how the card's run of the last script went (Amendment B §3.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptStatus {
    Ok,
    UnknownApplication,
    NotASecurityDomain,
    SecurityError,
}

impl ScriptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::UnknownApplication => "unknown-application",
            Self::NotASecurityDomain => "not-a-security-domain",
            Self::SecurityError => "security-error",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Ok,
            Self::UnknownApplication,
            Self::NotASecurityDomain,
            Self::SecurityError,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(value))
    }
}

impl fmt::Display for ScriptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies a queued script in the caller's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScriptId(pub u64);

impl fmt::Display for ScriptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "script {}", self.0)
    }
}

/// Whether a script may be sent again when a resume leaves it unclear whether the card ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Redelivery {
    /// Running it twice does no harm (reads such as GET STATUS, GET DATA, SELECT).
    Allowed,
    /// Running it twice could (INSTALL, DELETE, PUT KEY, STORE DATA …): report, don't resend.
    Forbidden,
}

/// A script waiting in a card's queue, as the caller hands it to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedScript {
    pub id: ScriptId,
    pub script: CommandScript,
    /// Sent as `X-Admin-Targeted-Application` when the target is not the SD that owns the PSK.
    pub targeted_application: Option<Aid>,
    pub redelivery: Redelivery,
}

/// Why the session configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("admin path {0:?} must start with '/' and hold no query, fragment, space or control character")]
    BadAdminPath(String),
    #[error("session id must be 1 to 64 characters from A-Z a-z 0-9 - . _ ~")]
    BadSessionId,
}

/// What one admin session is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    admin_path: String,
    session_id: String,
    /// If set, the `Host` header (without port) must match it, case-insensitively.
    pub expected_host: Option<String>,
    /// Largest request body accepted.
    pub max_body: usize,
    pub script_limits: ScriptLimits,
}

impl SessionConfig {
    /// `admin_path` is the path the card's first POST goes to (the URI configured on the card);
    /// `session_id` goes into every Next-URI this session hands out.
    pub fn new(
        admin_path: impl Into<String>,
        session_id: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let admin_path = admin_path.into();
        let session_id = session_id.into();
        if !admin_path.starts_with('/')
            || admin_path
                .chars()
                .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::BadAdminPath(admin_path));
        }
        if session_id.is_empty()
            || session_id.len() > 64
            || !session_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(ConfigError::BadSessionId);
        }
        let script_limits = ScriptLimits::default();
        Ok(Self {
            admin_path,
            session_id,
            expected_host: None,
            max_body: script_limits.max_size,
            script_limits,
        })
    }

    pub fn admin_path(&self) -> &str {
        &self.admin_path
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The Next-URI for the `seq`-th delivery: the admin path with a query (cards in the field
    /// have refused bare paths), unique within the session.
    fn next_uri(&self, seq: u32) -> String {
        format!("{}?session={}&seq={seq}", self.admin_path, self.session_id)
    }
}

/// Why a request was refused, sorted by cause; [`AdminError::status`] gives the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    // --- 405: wrong method
    #[error("method {method:?} is not allowed; the admin protocol uses POST")]
    MethodNotAllowed { method: String },
    // --- 404: wrong URI
    #[error("request to {got:?}, but this session expects {expected:?}")]
    UnexpectedUri { got: String, expected: String },
    // --- 400: headers
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} appears more than once")]
    DuplicateHeader(&'static str),
    #[error("unsupported admin protocol {got:?}; this server speaks {ADMIN_PROTOCOL}")]
    UnsupportedProtocol { got: String },
    #[error("header {header} has an invalid value {value:?}")]
    BadHeaderValue { header: &'static str, value: String },
    #[error("header {0} is not allowed on the first request of a session")]
    UnexpectedHeader(&'static str),
    // --- 400: body
    #[error("the first request of a session has no body; got {len} byte(s)")]
    BodyOnFirstRequest { len: usize },
    #[error(
        "a body is only allowed with X-Admin-Script-Status: ok; got {len} byte(s) with {status}"
    )]
    BodyWithErrorStatus { status: ScriptStatus, len: usize },
    #[error(
        "X-Admin-Script-Status: ok needs the response script (the R-APDUs, or an error TLV) in the body; got none"
    )]
    OkWithoutResponses,
    #[error("response script: {0}")]
    BadResponseBody(ScriptError),
    #[error(
        "the response script does not answer the script sent: {commands} command(s) sent, \
         {responses} R-APDU(s) back, {executed} reported executed"
    )]
    ResponsesMismatch {
        commands: usize,
        responses: usize,
        executed: u32,
    },
    // --- 403: identity
    #[error("X-Admin-From changed within the session from {expected:?} to {got:?}")]
    AgentChanged { expected: String, got: String },
    // --- 409: state
    #[error("the administration session has ended")]
    SessionFinished,
    #[error("another admin session of this card is in progress on another connection; one session per card at a time")]
    SessionInProgress,
    #[error("this card's admin session was resumed on another connection")]
    SessionTakenOver,
    // --- 413: size
    #[error("body of {len} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge { len: usize, limit: usize },
    // --- 415: media type
    #[error("Content-Type {} is not {CONTENT_TYPE_RESPONSE}", got.as_deref().map_or("(none)".into(), |g| format!("{g:?}")))]
    UnsupportedContentType { got: Option<String> },
    // --- 421: wrong server
    #[error("Host {got:?} is not this server ({expected:?})")]
    MisdirectedHost { got: String, expected: String },
}

impl AdminError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::MethodNotAllowed { .. } => 405,
            Self::UnexpectedUri { .. } => 404,
            Self::MissingHeader(_)
            | Self::DuplicateHeader(_)
            | Self::UnsupportedProtocol { .. }
            | Self::BadHeaderValue { .. }
            | Self::UnexpectedHeader(_)
            | Self::BodyOnFirstRequest { .. }
            | Self::BodyWithErrorStatus { .. }
            | Self::OkWithoutResponses
            | Self::BadResponseBody(_)
            | Self::ResponsesMismatch { .. } => 400,
            Self::AgentChanged { .. } => 403,
            Self::SessionFinished | Self::SessionInProgress | Self::SessionTakenOver => 409,
            Self::BodyTooLarge { .. } => 413,
            Self::UnsupportedContentType { .. } => 415,
            Self::MisdirectedHost { .. } => 421,
        }
    }
}

/// Card-supplied text in errors is cut short so a hostile header cannot flood the logs.
fn clip(s: &str) -> String {
    const MAX: usize = 96;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// The HTTP response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Close the connection after sending (session over, or request refused).
    pub close: bool,
}

impl AdminResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn script(script: &QueuedScript, next_uri: &str) -> Self {
        let mut headers = vec![
            (header::X_ADMIN_PROTOCOL, ADMIN_PROTOCOL.to_string()),
            (header::CONTENT_TYPE, CONTENT_TYPE_COMMAND.to_string()),
            (header::X_ADMIN_NEXT_URI, next_uri.to_string()),
        ];
        if let Some(aid) = &script.targeted_application {
            headers.push((
                header::X_ADMIN_TARGETED_APPLICATION,
                aid.to_targeted_application(),
            ));
        }
        Self {
            status: 200,
            headers,
            body: script.script.encode(),
            close: false,
        }
    }

    fn finished() -> Self {
        Self {
            status: 204,
            headers: vec![(header::X_ADMIN_PROTOCOL, ADMIN_PROTOCOL.to_string())],
            body: Vec::new(),
            close: true,
        }
    }

    /// The answer to a refused request: the error's status, no body, connection closed.
    pub fn refusal(error: &AdminError) -> Self {
        Self {
            status: error.status(),
            headers: vec![(header::X_ADMIN_PROTOCOL, ADMIN_PROTOCOL.to_string())],
            body: Vec::new(),
            close: true,
        }
    }
}

/// A departure from the letter of Amendment B that the server accepts because card stacks in
/// the field do it. Reported with the session (event and audit details), never silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leniency {
    /// The first, empty POST carried the response Content-Type (with `Content-Length: 0`).
    /// Amendment B sends no optional headers there; with no body the header describes nothing.
    ContentTypeOnOpening,
}

impl Leniency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContentTypeOnOpening => "content_type_on_opening",
        }
    }
}

/// What the caller must do after a step, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The card opened an administration session; `lenient` lists the departures accepted.
    SessionOpened {
        agent: String,
        lenient: Vec<Leniency>,
    },
    /// The script was sent: mark it in flight (taken off the pending queue).
    Delivered { script: ScriptId, seq: u32 },
    /// The script in flight was sent again after a resume; the card had not answered it.
    Redelivered { script: ScriptId, seq: u32 },
    /// The card reported on the script in flight: store the outcome, mark the script done.
    Results {
        script: ScriptId,
        status: ScriptStatus,
        /// The response script; `None` when the card sent no body.
        responses: Option<ResponseScript>,
    },
    /// A resumed request repeated results already stored: nothing to store again. `identical`
    /// is false if the repeat differs from what was stored (worth a warning).
    DuplicateResults { script: ScriptId, identical: bool },
    /// A resume left it unknown whether the card ran this (non-idempotent) script; it was not
    /// sent again. An operator should check the card (GET STATUS) before queueing it anew.
    OutcomeUnknown { script: ScriptId },
    /// A resumed request arrived with no state to resume from: the session starts over.
    /// `results_dropped` is true if it carried results that cannot be matched to a script.
    ResumeWithoutState { results_dropped: bool },
    /// The session ended with `204 No Content`.
    Finished,
}

/// The outcome of handling one request.
#[derive(Debug)]
pub struct Step {
    pub session: Session,
    pub response: AdminResponse,
    pub effects: Vec<Effect>,
    /// Why the request was refused; the state is then unchanged.
    pub error: Option<AdminError>,
}

/// Results the server already stored, kept so a resumed repeat is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    script: ScriptId,
    status: ScriptStatus,
    body: Vec<u8>,
}

// Implements: O2, O20, O21, O22, O24
/// An admin session with one card: an enum of states; [`Session::handle`] consumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// Waiting for the card's first POST.
    Opening(Opening),
    /// A script is out; waiting for its results at the Next-URI.
    AwaitingResults(AwaitingResults),
    /// `204` sent; the session is over.
    Finished(Finished),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    config: SessionConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitingResults {
    config: SessionConfig,
    agent: String,
    /// Deliveries so far; the script in flight is the `seq`-th.
    seq: u32,
    in_flight: QueuedScript,
    /// Where its results are expected (the Next-URI sent with it).
    results_uri: String,
    /// The request target that was answered with the script in flight.
    answered_uri: String,
    /// Results carried by that request, if any.
    recorded: Option<Recorded>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    config: SessionConfig,
    agent: String,
    /// The request target that was answered with `204`.
    answered_uri: String,
    recorded: Option<Recorded>,
}

/// Headers every request carries, checked once.
struct Common<'r> {
    agent: &'r str,
    resume: bool,
    content_type: Option<&'r str>,
    script_status: Option<&'r str>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        Self::Opening(Opening { config })
    }

    /// Handles one request. `next` is the first script still pending in the card's queue, if
    /// any; it is taken only if the step's effects say [`Effect::Delivered`].
    pub fn handle(self, request: &AdminRequest, next: Option<&QueuedScript>) -> Step {
        match self {
            Self::Opening(s) => s.handle(request, next),
            Self::AwaitingResults(s) => s.handle(request, next),
            Self::Finished(s) => s.handle(request),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        match self {
            Self::Opening(s) => &s.config,
            Self::AwaitingResults(s) => &s.config,
            Self::Finished(s) => &s.config,
        }
    }

    /// The card's `X-Admin-From`, once the session is open.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Self::Opening(_) => None,
            Self::AwaitingResults(s) => Some(&s.agent),
            Self::Finished(s) => Some(&s.agent),
        }
    }

    /// The script sent and not yet answered.
    pub fn in_flight(&self) -> Option<ScriptId> {
        match self {
            Self::AwaitingResults(s) => Some(s.in_flight.id),
            _ => None,
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Finished(_))
    }
}

fn refuse(session: Session, error: AdminError) -> Step {
    Step {
        session,
        response: AdminResponse::refusal(&error),
        effects: Vec::new(),
        error: Some(error),
    }
}

/// Method, duplicates, protocol, agent, host, size and resume: the rules for every request.
fn check_common<'r>(
    config: &SessionConfig,
    req: &'r AdminRequest,
) -> Result<Common<'r>, AdminError> {
    if req.method != "POST" {
        return Err(AdminError::MethodNotAllowed {
            method: clip(&req.method),
        });
    }
    let host = req.single(header::HOST)?;
    let protocol = req.single(header::X_ADMIN_PROTOCOL)?;
    let agent = req.single(header::X_ADMIN_FROM)?;
    let content_type = req.single(header::CONTENT_TYPE)?;
    let script_status = req.single(header::X_ADMIN_SCRIPT_STATUS)?;
    let resume = req.single(header::X_ADMIN_RESUME)?;

    let protocol = protocol.ok_or(AdminError::MissingHeader(header::X_ADMIN_PROTOCOL))?;
    if protocol != ADMIN_PROTOCOL {
        return Err(AdminError::UnsupportedProtocol {
            got: clip(protocol),
        });
    }
    let agent = match agent {
        Some(a) if a.len() > MAX_AGENT => {
            return Err(AdminError::BadHeaderValue {
                header: header::X_ADMIN_FROM,
                value: clip(a),
            })
        }
        Some(a) if !a.is_empty() => a,
        _ => return Err(AdminError::MissingHeader(header::X_ADMIN_FROM)),
    };
    let host = match host {
        Some(h) if !h.is_empty() => h,
        _ => return Err(AdminError::MissingHeader(header::HOST)),
    };
    if let Some(expected) = &config.expected_host {
        if !host_name(host).eq_ignore_ascii_case(expected) {
            return Err(AdminError::MisdirectedHost {
                got: clip(host),
                expected: expected.clone(),
            });
        }
    }
    if req.body.len() > config.max_body {
        return Err(AdminError::BodyTooLarge {
            len: req.body.len(),
            limit: config.max_body,
        });
    }
    let resume = match resume {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) => {
            return Err(AdminError::BadHeaderValue {
                header: header::X_ADMIN_RESUME,
                value: clip(v),
            })
        }
    };
    Ok(Common {
        agent,
        resume,
        content_type,
        script_status,
    })
}

/// The longest `X-Admin-From` kept (an agent URI such as `//se-id/eid/…;//aa-id/aid/…`): it
/// is stored with the session and in its audit records.
const MAX_AGENT: usize = 256;

/// `host[:port]` or `[v6]:port` without the port.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Checks `application/vnd.globalplatform.card-content-mgt-response;version=1.0`, allowing case
/// differences in names, spaces around `;`, and a quoted version.
fn is_response_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(RESPONSE_MEDIA_TYPE) {
        return false;
    }
    let mut version_ok = false;
    for p in parts {
        let Some((name, v)) = p.split_once('=') else {
            return false;
        };
        if !name.trim().eq_ignore_ascii_case("version") || version_ok {
            return false;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        version_ok = v == "1.0";
        if !version_ok {
            return false;
        }
    }
    version_ok
}

/// The rules for a POST that reports on a script: Content-Type, status, body only with `ok`.
///
/// Content-Type describes a body: a status-only report (no body) may leave it out, as card
/// stacks do for `security-error` and the other error statuses. A body must be typed.
/// Results must answer the script that was sent: no more R-APDUs, nor a larger executed
/// count, than it had commands (evidence is never recorded for commands that were not sent);
/// and `ok` needs an R-APDU or an error TLV.
fn answers(
    sent: &CommandScript,
    (status, responses): (ScriptStatus, Option<ResponseScript>),
) -> Result<(ScriptStatus, Option<ResponseScript>), AdminError> {
    if let Some(r) = &responses {
        let commands = sent.apdus().count();
        let back = r.responses().count();
        let executed = r.executed_count().unwrap_or(0);
        if back > commands || executed as usize > commands {
            return Err(AdminError::ResponsesMismatch {
                commands,
                responses: back,
                executed,
            });
        }
        // `ok` with no R-APDU and no error TLV: no evidence that anything ran, as with no body.
        if status == ScriptStatus::Ok && commands > 0 && back == 0 && r.fault().is_none() {
            return Err(AdminError::OkWithoutResponses);
        }
    }
    Ok((status, responses))
}

fn check_results(
    config: &SessionConfig,
    req: &AdminRequest,
    common: &Common<'_>,
) -> Result<(ScriptStatus, Option<ResponseScript>), AdminError> {
    match common.content_type {
        Some(ct) if is_response_content_type(ct) => {}
        None if req.body.is_empty() => {}
        other => {
            return Err(AdminError::UnsupportedContentType {
                got: other.map(clip),
            })
        }
    }
    let raw = common
        .script_status
        .ok_or(AdminError::MissingHeader(header::X_ADMIN_SCRIPT_STATUS))?;
    let status = ScriptStatus::parse(raw).ok_or_else(|| AdminError::BadHeaderValue {
        header: header::X_ADMIN_SCRIPT_STATUS,
        value: clip(raw),
    })?;
    if req.body.is_empty() {
        // A status-only report is an error status; "ok" with nothing would record a script
        // as run with no evidence of what the card answered.
        if status == ScriptStatus::Ok {
            return Err(AdminError::OkWithoutResponses);
        }
        return Ok((status, None));
    }
    if status != ScriptStatus::Ok {
        return Err(AdminError::BodyWithErrorStatus {
            status,
            len: req.body.len(),
        });
    }
    let responses = ResponseScript::decode_with_limits(&req.body, &config.script_limits)
        .map_err(AdminError::BadResponseBody)?;
    Ok((status, Some(responses)))
}

/// The rules for the first POST of a session: no body, no optional headers — except the
/// response Content-Type on an empty body, which card stacks send ([`Leniency`]).
fn check_opening(req: &AdminRequest, common: &Common<'_>) -> Result<Vec<Leniency>, AdminError> {
    if !req.body.is_empty() {
        return Err(AdminError::BodyOnFirstRequest {
            len: req.body.len(),
        });
    }
    if common.script_status.is_some() {
        return Err(AdminError::UnexpectedHeader(header::X_ADMIN_SCRIPT_STATUS));
    }
    match common.content_type {
        None => Ok(Vec::new()),
        Some(ct) if is_response_content_type(ct) => Ok(vec![Leniency::ContentTypeOnOpening]),
        Some(_) => Err(AdminError::UnexpectedHeader(header::CONTENT_TYPE)),
    }
}

/// Answers `answered_uri` with `next` (a new delivery) or with `204`.
fn deliver_or_finish(
    config: SessionConfig,
    agent: String,
    seq: u32,
    answered_uri: String,
    recorded: Option<Recorded>,
    next: Option<&QueuedScript>,
    mut effects: Vec<Effect>,
) -> Step {
    match next {
        Some(script) => {
            let seq = seq.saturating_add(1);
            let results_uri = config.next_uri(seq);
            let response = AdminResponse::script(script, &results_uri);
            effects.push(Effect::Delivered {
                script: script.id,
                seq,
            });
            Step {
                session: Session::AwaitingResults(AwaitingResults {
                    config,
                    agent,
                    seq,
                    in_flight: script.clone(),
                    results_uri,
                    answered_uri,
                    recorded,
                }),
                response,
                effects,
                error: None,
            }
        }
        None => {
            effects.push(Effect::Finished);
            Step {
                session: Session::Finished(Finished {
                    config,
                    agent,
                    answered_uri,
                    recorded,
                }),
                response: AdminResponse::finished(),
                effects,
                error: None,
            }
        }
    }
}

/// A resumed request repeating one whose results were stored (or that carried none).
fn check_repeat(
    config: &SessionConfig,
    req: &AdminRequest,
    common: &Common<'_>,
    recorded: Option<&Recorded>,
) -> Result<Option<Effect>, AdminError> {
    match recorded {
        None => {
            check_opening(req, common)?;
            Ok(None)
        }
        Some(r) => {
            let (status, _) = check_results(config, req, common)?;
            Ok(Some(Effect::DuplicateResults {
                script: r.script,
                identical: status == r.status && req.body == r.body,
            }))
        }
    }
}

impl Opening {
    pub fn handle(self, req: &AdminRequest, next: Option<&QueuedScript>) -> Step {
        let common = match check_common(&self.config, req) {
            Ok(c) => c,
            Err(e) => return refuse(Session::Opening(self), e),
        };
        if req.path() != self.config.admin_path {
            let expected = self.config.admin_path.clone();
            return refuse(
                Session::Opening(self),
                AdminError::UnexpectedUri {
                    got: clip(&req.target),
                    expected,
                },
            );
        }
        let mut effects = Vec::new();
        if common.resume && (common.script_status.is_some() || !req.body.is_empty()) {
            // A resume we hold no state for, carrying results: check them, then start over.
            if let Err(e) = check_results(&self.config, req, &common) {
                return refuse(Session::Opening(self), e);
            }
            effects.push(Effect::SessionOpened {
                agent: common.agent.to_string(),
                lenient: Vec::new(),
            });
            effects.push(Effect::ResumeWithoutState {
                results_dropped: true,
            });
        } else {
            let lenient = match check_opening(req, &common) {
                Ok(l) => l,
                Err(e) => return refuse(Session::Opening(self), e),
            };
            effects.push(Effect::SessionOpened {
                agent: common.agent.to_string(),
                lenient,
            });
            if common.resume {
                effects.push(Effect::ResumeWithoutState {
                    results_dropped: false,
                });
            }
        }
        let agent = common.agent.to_string();
        let answered = req.target.clone();
        deliver_or_finish(self.config, agent, 0, answered, None, next, effects)
    }
}

impl AwaitingResults {
    pub fn handle(self, req: &AdminRequest, next: Option<&QueuedScript>) -> Step {
        let common = match check_common(&self.config, req) {
            Ok(c) => c,
            Err(e) => return refuse(Session::AwaitingResults(self), e),
        };
        if common.agent != self.agent {
            let e = AdminError::AgentChanged {
                expected: self.agent.clone(),
                got: clip(common.agent),
            };
            return refuse(Session::AwaitingResults(self), e);
        }
        if req.target == self.results_uri {
            // The results of the script in flight (first try, or resumed before we answered).
            let (status, responses) = match check_results(&self.config, req, &common)
                .and_then(|r| answers(&self.in_flight.script, r))
            {
                Ok(r) => r,
                Err(e) => return refuse(Session::AwaitingResults(self), e),
            };
            let effects = vec![Effect::Results {
                script: self.in_flight.id,
                status,
                responses,
            }];
            let recorded = Recorded {
                script: self.in_flight.id,
                status,
                body: req.body.clone(),
            };
            return deliver_or_finish(
                self.config,
                self.agent,
                self.seq,
                self.results_uri,
                Some(recorded),
                next,
                effects,
            );
        }
        if common.resume && req.target == self.answered_uri {
            // The card repeats the request we answered with the script in flight: it may never
            // have received it, or it may have run part of it.
            let mut effects = Vec::new();
            match check_repeat(&self.config, req, &common, self.recorded.as_ref()) {
                Ok(Some(dup)) => effects.push(dup),
                Ok(None) => {}
                Err(e) => return refuse(Session::AwaitingResults(self), e),
            }
            return match self.in_flight.redelivery {
                Redelivery::Allowed => {
                    effects.push(Effect::Redelivered {
                        script: self.in_flight.id,
                        seq: self.seq,
                    });
                    let response = AdminResponse::script(&self.in_flight, &self.results_uri);
                    Step {
                        session: Session::AwaitingResults(self),
                        response,
                        effects,
                        error: None,
                    }
                }
                Redelivery::Forbidden => {
                    effects.push(Effect::OutcomeUnknown {
                        script: self.in_flight.id,
                    });
                    deliver_or_finish(
                        self.config,
                        self.agent,
                        self.seq,
                        self.answered_uri,
                        self.recorded,
                        next,
                        effects,
                    )
                }
            };
        }
        let e = AdminError::UnexpectedUri {
            got: clip(&req.target),
            expected: self.results_uri.clone(),
        };
        refuse(Session::AwaitingResults(self), e)
    }
}

impl Finished {
    pub fn handle(self, req: &AdminRequest) -> Step {
        let common = match check_common(&self.config, req) {
            Ok(c) => c,
            Err(e) => return refuse(Session::Finished(self), e),
        };
        if common.agent != self.agent {
            let e = AdminError::AgentChanged {
                expected: self.agent.clone(),
                got: clip(common.agent),
            };
            return refuse(Session::Finished(self), e);
        }
        if common.resume && req.target == self.answered_uri {
            // Our 204 was lost: say it again, without storing anything twice.
            let mut effects = Vec::new();
            match check_repeat(&self.config, req, &common, self.recorded.as_ref()) {
                Ok(Some(dup)) => effects.push(dup),
                Ok(None) => {}
                Err(e) => return refuse(Session::Finished(self), e),
            }
            effects.push(Effect::Finished);
            return Step {
                session: Session::Finished(self),
                response: AdminResponse::finished(),
                effects,
                error: None,
            };
        }
        refuse(Session::Finished(self), AdminError::SessionFinished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apdu::{CommandApdu, ResponseApdu};
    use crate::gp;
    use crate::script::LengthCoding;

    const AGENT: &str = "//se-id/iccid/8988211000000000000";

    fn config() -> SessionConfig {
        SessionConfig::new("/admin", "s1").unwrap()
    }

    fn queued(id: u64, redelivery: Redelivery) -> QueuedScript {
        QueuedScript {
            id: ScriptId(id),
            script: CommandScript::new([gp::get_status(
                gp::StatusSubset::Applications,
                gp::Occurrence::FirstOrAll,
                &[],
            )
            .unwrap()]),
            targeted_application: None,
            redelivery,
        }
    }

    fn base(target: &str) -> AdminRequest {
        AdminRequest::post(target)
            .with_header("Host", "ota.example:8443")
            .with_header("X-Admin-Protocol", ADMIN_PROTOCOL)
            .with_header("X-Admin-From", AGENT)
    }

    fn results(target: &str, status: &str, body: &[u8]) -> AdminRequest {
        base(target)
            .with_header("Content-Type", CONTENT_TYPE_RESPONSE)
            .with_header("X-Admin-Script-Status", status)
            .with_body(body)
    }

    fn ok_body() -> Vec<u8> {
        ResponseScript::with_responses(1, [ResponseApdu::new(vec![], 0x9000)]).encode()
    }

    fn resumed(req: AdminRequest) -> AdminRequest {
        req.with_header("X-Admin-Resume", "true")
    }

    /// Opens a session and delivers script 1; returns the state and its Next-URI.
    fn open_with(script: &QueuedScript) -> (Session, String) {
        let step = Session::new(config()).handle(&base("/admin"), Some(script));
        assert_eq!(step.error, None);
        let uri = step
            .response
            .header(header::X_ADMIN_NEXT_URI)
            .unwrap()
            .to_string();
        (step.session, uri)
    }

    fn assert_refused(step: &Step, status: u16) {
        let e = step.error.as_ref().expect("request should be refused");
        assert_eq!(e.status(), status, "{e}");
        assert_eq!(step.response.status, status);
        assert_eq!(
            step.response.header(header::X_ADMIN_PROTOCOL),
            Some(ADMIN_PROTOCOL)
        );
        assert!(step.response.body.is_empty() && step.response.close);
        assert!(step.effects.is_empty());
    }

    #[test]
    fn full_session_delivers_then_finishes() {
        let s1 = queued(1, Redelivery::Allowed);
        let mut s2 = queued(2, Redelivery::Forbidden);
        s2.targeted_application = Some(gp::Aid::from_hex("A000000151000000").unwrap());
        s2.script = s2.script.with_coding(LengthCoding::Indefinite);

        let step = Session::new(config()).handle(&base("/admin"), Some(&s1));
        assert_eq!(step.error, None);
        let r = &step.response;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-admin-protocol"), Some(ADMIN_PROTOCOL));
        assert_eq!(r.header("Content-Type"), Some(CONTENT_TYPE_COMMAND));
        assert_eq!(
            r.header(header::X_ADMIN_NEXT_URI),
            Some("/admin?session=s1&seq=1")
        );
        assert_eq!(r.header(header::X_ADMIN_TARGETED_APPLICATION), None);
        assert_eq!(CommandScript::decode(&r.body).unwrap(), s1.script);
        assert!(!r.close);
        assert_eq!(
            step.effects,
            vec![
                Effect::SessionOpened {
                    agent: AGENT.into(),
                    lenient: vec![]
                },
                Effect::Delivered {
                    script: ScriptId(1),
                    seq: 1
                }
            ]
        );
        assert_eq!(step.session.in_flight(), Some(ScriptId(1)));

        let step = step.session.handle(
            &results("/admin?session=s1&seq=1", "ok", &ok_body()),
            Some(&s2),
        );
        assert_eq!(step.error, None);
        assert_eq!(step.response.status, 200);
        assert_eq!(
            step.response.header(header::X_ADMIN_TARGETED_APPLICATION),
            Some("//aid/A000000151/000000")
        );
        assert_eq!(&step.response.body[..2], &[0xAE, 0x80]);
        match &step.effects[0] {
            Effect::Results {
                script,
                status,
                responses: Some(r),
            } => {
                assert_eq!((*script, *status), (ScriptId(1), ScriptStatus::Ok));
                assert_eq!(r.last_response().unwrap().sw(), 0x9000);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            step.effects[1],
            Effect::Delivered {
                script: ScriptId(2),
                seq: 2
            }
        );

        let step = step.session.handle(
            &results("/admin?session=s1&seq=2", "security-error", &[]),
            None,
        );
        assert_eq!(step.error, None);
        assert_eq!(
            step.effects,
            vec![
                Effect::Results {
                    script: ScriptId(2),
                    status: ScriptStatus::SecurityError,
                    responses: None
                },
                Effect::Finished
            ]
        );
        let r = &step.response;
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
        assert_eq!(r.header("Content-Type"), None);
        assert_eq!(r.header(header::X_ADMIN_NEXT_URI), None);
        assert_eq!(r.header(header::X_ADMIN_PROTOCOL), Some(ADMIN_PROTOCOL));
        assert!(r.close);
        assert!(step.session.is_finished());

        // Anything after the end is refused.
        let step = step.session.handle(&base("/admin"), None);
        assert_refused(&step, 409);
    }

    /// Interop regression: card stacks open with `Content-Type: …-response;version=1.0` and
    /// `Content-Length: 0`; that was refused with 400.
    #[test]
    fn opening_with_the_response_content_type_is_accepted() {
        let s = queued(1, Redelivery::Allowed);
        let req = base("/admin").with_header("Content-Type", CONTENT_TYPE_RESPONSE);
        let step = Session::new(config()).handle(&req, Some(&s));
        assert_eq!(step.error, None);
        assert_eq!(step.response.status, 200);
        assert_eq!(
            step.effects[0],
            Effect::SessionOpened {
                agent: AGENT.into(),
                lenient: vec![Leniency::ContentTypeOnOpening]
            }
        );
        assert_eq!(
            Leniency::ContentTypeOnOpening.as_str(),
            "content_type_on_opening"
        );
        // The same on a resumed opening we hold no state for.
        let step = Session::new(config()).handle(&resumed(req), Some(&s));
        assert_eq!(step.error, None);
        assert_eq!(step.response.status, 200);
    }

    /// Interop regression: a status-only report (error status, no body) without Content-Type
    /// got 415, so the card's report was lost and the script went out again.
    #[test]
    fn status_only_report_without_content_type_is_accepted() {
        let s1 = queued(1, Redelivery::Allowed);
        let (session, uri) = open_with(&s1);
        for status in [
            ScriptStatus::SecurityError,
            ScriptStatus::UnknownApplication,
            ScriptStatus::NotASecurityDomain,
        ] {
            let mut req = results(&uri, status.as_str(), &[]);
            req.headers.retain(|(n, _)| n != "Content-Type");
            let step = session.clone().handle(&req, None);
            assert_eq!(step.error, None, "{status}");
            assert_eq!(
                step.effects,
                vec![
                    Effect::Results {
                        script: ScriptId(1),
                        status,
                        responses: None
                    },
                    Effect::Finished
                ]
            );
        }
        // A body still needs its type.
        let mut typed = results(&uri, "ok", &ok_body());
        typed.headers.retain(|(n, _)| n != "Content-Type");
        assert_refused(&session.handle(&typed, None), 415);
    }

    #[test]
    fn empty_queue_finishes_at_once() {
        let step = Session::new(config()).handle(&base("/admin?from=sms"), None);
        assert_eq!(step.response.status, 204);
        assert_eq!(
            step.effects,
            vec![
                Effect::SessionOpened {
                    agent: AGENT.into(),
                    lenient: vec![]
                },
                Effect::Finished
            ]
        );
    }

    /// Verifies: O24
    #[test]
    fn first_request_rules() {
        let s = queued(1, Redelivery::Allowed);
        let first = |req: AdminRequest| Session::new(config()).handle(&req, Some(&s));
        // Method.
        let mut get = base("/admin");
        get.method = "GET".into();
        assert_refused(&first(get), 405);
        // Body and optional headers.
        assert_refused(&first(base("/admin").with_body(vec![0xAB, 0x00])), 400);
        // A Content-Type other than the response type is refused; the response type on an
        // empty body is accepted (below, `opening_with_the_response_content_type_is_accepted`).
        assert_refused(
            &first(base("/admin").with_header("Content-Type", "text/plain")),
            400,
        );
        assert_refused(
            &first(
                base("/admin")
                    .with_header("Content-Type", CONTENT_TYPE_RESPONSE)
                    .with_body(vec![0xAB, 0x00]),
            ),
            400,
        );
        assert_refused(
            &first(base("/admin").with_header("X-Admin-Script-Status", "ok")),
            400,
        );
        // Required headers.
        let without = |name: &str| {
            let mut r = base("/admin");
            r.headers.retain(|(n, _)| n != name);
            r
        };
        for name in ["Host", "X-Admin-Protocol", "X-Admin-From"] {
            let step = first(without(name));
            assert_refused(&step, 400);
            assert!(matches!(step.error, Some(AdminError::MissingHeader(_))));
        }
        assert_refused(
            &first(without("X-Admin-From").with_header("x-admin-from", " ")),
            400,
        );
        // Wrong protocol version, duplicated header.
        let mut wrong = without("X-Admin-Protocol");
        wrong = wrong.with_header("X-Admin-Protocol", "globalplatform-remote-admin/1.1.1");
        assert!(matches!(
            first(wrong).error,
            Some(AdminError::UnsupportedProtocol { .. })
        ));
        // An agent longer than anything a card sends (it is stored and audited).
        let long = without("X-Admin-From").with_header("X-Admin-From", "//se-id/".repeat(40));
        assert!(matches!(
            first(long).error,
            Some(AdminError::BadHeaderValue {
                header: header::X_ADMIN_FROM,
                ..
            })
        ));
        let dup = base("/admin").with_header("x-admin-from", "other");
        assert_eq!(
            first(dup).error,
            Some(AdminError::DuplicateHeader(header::X_ADMIN_FROM))
        );
        // Wrong path.
        let step = first(base("/elsewhere"));
        assert_refused(&step, 404);
        assert!(step.session == Session::new(config()), "state unchanged");
        // Header names are case-insensitive, values trimmed.
        let relaxed = AdminRequest::post("/admin")
            .with_header("host", "h")
            .with_header("x-admin-protocol", format!(" {ADMIN_PROTOCOL} "))
            .with_header("X-ADMIN-FROM", AGENT);
        assert_eq!(first(relaxed).response.status, 200);
    }

    #[test]
    fn host_and_size_limits() {
        let mut cfg = config();
        cfg.expected_host = Some("ota.example".into());
        cfg.max_body = 4;
        let s = Session::new(cfg.clone()).handle(&base("/admin"), None);
        assert_eq!(s.response.status, 204, "port ignored, host matches");
        let other = AdminRequest::post("/admin")
            .with_header("Host", "evil.example")
            .with_header("X-Admin-Protocol", ADMIN_PROTOCOL)
            .with_header("X-Admin-From", AGENT);
        assert_refused(&Session::new(cfg.clone()).handle(&other, None), 421);
        let big = base("/admin").with_body(vec![0; 5]);
        assert_refused(&Session::new(cfg).handle(&big, None), 413);
        assert_eq!(host_name("[::1]:443"), "::1");
        assert_eq!(host_name("example"), "example");
    }

    /// Verifies: O20, O24
    #[test]
    fn results_request_rules() {
        let s1 = queued(1, Redelivery::Allowed);
        let (session, uri) = open_with(&s1);
        let check = |req: AdminRequest, status: u16| {
            let step = session.clone().handle(&req, None);
            assert_refused(&step, status);
            assert_eq!(step.session, session, "state unchanged after {status}");
            step.error.unwrap()
        };
        // Must go to the Next-URI.
        check(results("/admin", "ok", &ok_body()), 404);
        check(results("/admin?session=s1&seq=2", "ok", &ok_body()), 404);
        // Content type.
        let mut no_ct = results(&uri, "ok", &ok_body());
        no_ct.headers.retain(|(n, _)| n != "Content-Type");
        check(no_ct, 415);
        let wrong_ct = base(&uri)
            .with_header("Content-Type", CONTENT_TYPE_COMMAND)
            .with_header("X-Admin-Script-Status", "ok");
        check(wrong_ct, 415);
        let wrong_version = base(&uri)
            .with_header(
                "Content-Type",
                "application/vnd.globalplatform.card-content-mgt-response;version=2.0",
            )
            .with_header("X-Admin-Script-Status", "ok");
        check(wrong_version, 415);
        // Script status.
        let mut no_status = results(&uri, "ok", &ok_body());
        no_status
            .headers
            .retain(|(n, _)| n != "X-Admin-Script-Status");
        assert_eq!(
            check(no_status, 400),
            AdminError::MissingHeader(header::X_ADMIN_SCRIPT_STATUS)
        );
        assert!(matches!(
            check(results(&uri, "fine", &[]), 400),
            AdminError::BadHeaderValue { .. }
        ));
        // Body only with ok.
        assert_eq!(
            check(results(&uri, "unknown-application", &ok_body()), 400),
            AdminError::BodyWithErrorStatus {
                status: ScriptStatus::UnknownApplication,
                len: ok_body().len()
            }
        );
        // Ok carries the response script.
        assert_eq!(
            check(results(&uri, "ok", &[]), 400),
            AdminError::OkWithoutResponses
        );
        // ... with at least one R-APDU or an error TLV: an executed count of 0 alone is no
        // evidence either (found by outside testing).
        assert_eq!(
            check(results(&uri, "ok", &[0xAB, 0x03, 0x80, 0x01, 0x00]), 400),
            AdminError::OkWithoutResponses
        );
        // Body must be a response script.
        assert!(matches!(
            check(results(&uri, "ok", &[0xAA, 0x00]), 400),
            AdminError::BadResponseBody(_)
        ));
        // Results answer the script sent (outside testing: extra R-APDUs and an inflated
        // executed count were stored as exchanges of commands never sent).
        let commands = s1.script.apdus().count();
        let too_many = ResponseScript::with_responses(
            commands as u32,
            (0..=commands).map(|_| ResponseApdu::new(vec![], 0x9000)),
        )
        .encode();
        assert_eq!(
            check(results(&uri, "ok", &too_many), 400),
            AdminError::ResponsesMismatch {
                commands,
                responses: commands + 1,
                executed: commands as u32
            }
        );
        let inflated = ResponseScript::with_responses(commands as u32 + 4, []).encode();
        assert!(matches!(
            check(results(&uri, "ok", &inflated), 400),
            AdminError::ResponsesMismatch { executed, .. } if executed == commands as u32 + 4
        ));
        // Same card throughout.
        let mut other = results(&uri, "ok", &ok_body());
        other.headers.retain(|(n, _)| n != "X-Admin-From");
        let other = other.with_header("X-Admin-From", "someone-else");
        check(other, 403);
        // Resume must say "true".
        check(
            results(&uri, "ok", &ok_body()).with_header("X-Admin-Resume", "yes"),
            400,
        );

        // Accepted variants: quoted version, spaces, other statuses without body.
        let relaxed = base(&uri)
            .with_header(
                "content-type",
                "Application/Vnd.GlobalPlatform.Card-Content-Mgt-Response ; version=\"1.0\"",
            )
            .with_header("x-admin-script-status", "ok")
            .with_body(ok_body());
        assert_eq!(session.clone().handle(&relaxed, None).error, None);
        for status in [
            "unknown-application",
            "not-a-security-domain",
            "security-error",
        ] {
            let step = session.clone().handle(&results(&uri, status, &[]), None);
            assert_eq!(step.error, None, "{status}");
            assert!(matches!(
                step.effects[0],
                Effect::Results {
                    responses: None,
                    ..
                }
            ));
        }
        assert!(matches!(
            session
                .clone()
                .handle(&results(&uri, "unknown-application", &[]), None)
                .effects[0],
            Effect::Results {
                status: ScriptStatus::UnknownApplication,
                ..
            }
        ));
    }

    #[test]
    fn resume_redelivers_an_idempotent_script() {
        let s1 = queued(1, Redelivery::Allowed);
        let s2 = queued(2, Redelivery::Allowed);
        let (session, uri) = open_with(&s1);
        // Our 200 was lost; the card repeats its opening POST with X-Admin-Resume.
        let step = session.handle(&resumed(base("/admin")), Some(&s2));
        assert_eq!(step.error, None);
        assert_eq!(
            step.effects,
            vec![Effect::Redelivered {
                script: ScriptId(1),
                seq: 1
            }]
        );
        assert_eq!(step.response.header(header::X_ADMIN_NEXT_URI), Some(&*uri));
        assert_eq!(
            CommandScript::decode(&step.response.body).unwrap(),
            s1.script
        );
        assert_eq!(step.session.in_flight(), Some(ScriptId(1)), "s2 not taken");
        // A repeat without the resume flag is not accepted.
        assert_refused(
            &step.session.clone().handle(&base("/admin"), Some(&s2)),
            404,
        );
    }

    #[test]
    fn resume_does_not_rerun_an_unsafe_script() {
        let install = queued(1, Redelivery::Forbidden);
        let s2 = queued(2, Redelivery::Allowed);
        let (session, _) = open_with(&install);
        let step = session.handle(&resumed(base("/admin")), Some(&s2));
        assert_eq!(step.error, None);
        assert_eq!(
            step.effects,
            vec![
                Effect::OutcomeUnknown {
                    script: ScriptId(1)
                },
                Effect::Delivered {
                    script: ScriptId(2),
                    seq: 2
                }
            ]
        );
        assert_eq!(
            step.response.header(header::X_ADMIN_NEXT_URI),
            Some("/admin?session=s1&seq=2")
        );
        // With nothing else queued, the session ends instead.
        let (session, _) = open_with(&install);
        let step = session.handle(&resumed(base("/admin")), None);
        assert_eq!(
            step.effects,
            vec![
                Effect::OutcomeUnknown {
                    script: ScriptId(1)
                },
                Effect::Finished
            ]
        );
        assert_eq!(step.response.status, 204);
    }

    #[test]
    fn resume_with_results_already_stored_is_idempotent() {
        let s1 = queued(1, Redelivery::Allowed);
        let s2 = queued(2, Redelivery::Allowed);
        let (session, uri1) = open_with(&s1);
        let body = ok_body();
        let step = session.handle(&results(&uri1, "ok", &body), Some(&s2));
        assert_eq!(step.effects.len(), 2);
        // Our answer (script 2) was lost: the card repeats the results POST with resume.
        let step = step
            .session
            .handle(&resumed(results(&uri1, "ok", &body)), None);
        assert_eq!(step.error, None);
        assert_eq!(
            step.effects,
            vec![
                Effect::DuplicateResults {
                    script: ScriptId(1),
                    identical: true
                },
                Effect::Redelivered {
                    script: ScriptId(2),
                    seq: 2
                }
            ]
        );
        // A differing repeat is flagged, still not stored twice.
        let other = ResponseScript::with_responses(1, [ResponseApdu::new(vec![], 0x6A82)]).encode();
        let step = step
            .session
            .handle(&resumed(results(&uri1, "ok", &other)), None);
        assert_eq!(
            step.effects[0],
            Effect::DuplicateResults {
                script: ScriptId(1),
                identical: false
            }
        );
        // The card resumes its results POST for script 2 before we answered it: normal path.
        let uri2 = "/admin?session=s1&seq=2";
        let step = step
            .session
            .handle(&resumed(results(uri2, "ok", &body)), None);
        assert!(matches!(
            step.effects[0],
            Effect::Results {
                script: ScriptId(2),
                ..
            }
        ));
        assert_eq!(step.effects[1], Effect::Finished);
        // Our 204 was lost: the card repeats; we answer 204 again without storing anything.
        let step = step
            .session
            .handle(&resumed(results(uri2, "ok", &body)), None);
        assert_eq!(step.error, None);
        assert_eq!(step.response.status, 204);
        assert_eq!(
            step.effects,
            vec![
                Effect::DuplicateResults {
                    script: ScriptId(2),
                    identical: true
                },
                Effect::Finished
            ]
        );
    }

    #[test]
    fn resume_without_state_starts_over() {
        let s1 = queued(7, Redelivery::Allowed);
        let step =
            Session::new(config()).handle(&resumed(base("/admin?session=old&seq=3")), Some(&s1));
        assert_eq!(step.error, None);
        assert_eq!(
            step.effects,
            vec![
                Effect::SessionOpened {
                    agent: AGENT.into(),
                    lenient: vec![]
                },
                Effect::ResumeWithoutState {
                    results_dropped: false
                },
                Effect::Delivered {
                    script: ScriptId(7),
                    seq: 1
                }
            ]
        );
        let step = Session::new(config()).handle(
            &resumed(results("/admin?session=old&seq=3", "ok", &ok_body())),
            Some(&s1),
        );
        assert_eq!(
            step.effects[1],
            Effect::ResumeWithoutState {
                results_dropped: true
            }
        );
        // Results that are malformed are still refused.
        let step =
            Session::new(config()).handle(&resumed(results("/admin", "ok", &[0x00])), Some(&s1));
        assert_refused(&step, 400);
    }

    #[test]
    fn config_validation() {
        assert!(SessionConfig::new("admin", "s").is_err());
        assert!(SessionConfig::new("/admin?x=1", "s").is_err());
        assert!(SessionConfig::new("/ad min", "s").is_err());
        assert!(SessionConfig::new("/admin", "").is_err());
        assert!(SessionConfig::new("/admin", "a&b").is_err());
        assert!(SessionConfig::new("/admin", "x".repeat(65)).is_err());
        let c = SessionConfig::new("/", "9f1c-77.a_b~").unwrap();
        assert_eq!(c.next_uri(3), "/?session=9f1c-77.a_b~&seq=3");
    }

    #[test]
    fn every_error_has_its_status() {
        let cases: Vec<(AdminError, u16)> = vec![
            (
                AdminError::MethodNotAllowed {
                    method: "GET".into(),
                },
                405,
            ),
            (
                AdminError::UnexpectedUri {
                    got: "/x".into(),
                    expected: "/y".into(),
                },
                404,
            ),
            (AdminError::MissingHeader("Host"), 400),
            (AdminError::DuplicateHeader("Host"), 400),
            (AdminError::UnsupportedProtocol { got: "x".into() }, 400),
            (
                AdminError::BadHeaderValue {
                    header: "X-Admin-Resume",
                    value: "x".into(),
                },
                400,
            ),
            (AdminError::UnexpectedHeader("Content-Type"), 400),
            (AdminError::BodyOnFirstRequest { len: 1 }, 400),
            (
                AdminError::BodyWithErrorStatus {
                    status: ScriptStatus::SecurityError,
                    len: 1,
                },
                400,
            ),
            (AdminError::BadResponseBody(ScriptError::Empty), 400),
            (
                AdminError::AgentChanged {
                    expected: "a".into(),
                    got: "b".into(),
                },
                403,
            ),
            (AdminError::SessionFinished, 409),
            (AdminError::SessionInProgress, 409),
            (AdminError::SessionTakenOver, 409),
            (AdminError::BodyTooLarge { len: 2, limit: 1 }, 413),
            (AdminError::UnsupportedContentType { got: None }, 415),
            (
                AdminError::MisdirectedHost {
                    got: "a".into(),
                    expected: "b".into(),
                },
                421,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status, "{e}");
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(clip(&"x".repeat(500)).chars().count(), 97);
    }

    #[test]
    fn script_status_names() {
        for s in [
            ScriptStatus::Ok,
            ScriptStatus::UnknownApplication,
            ScriptStatus::NotASecurityDomain,
            ScriptStatus::SecurityError,
        ] {
            assert_eq!(ScriptStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ScriptStatus::parse("OK"), Some(ScriptStatus::Ok));
        assert_eq!(ScriptStatus::parse(""), None);
        let _ = CommandApdu::new(0, 0, 0, 0);
    }
}
