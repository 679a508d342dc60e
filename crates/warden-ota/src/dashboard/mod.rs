//! The operator dashboard of `warden ota serve`: sign-in with warden users, a live view over
//! server-sent events, cards and their history, pushing scripts, and `/metrics`.
//!
//! HTTP adapter only; the decisions live in the submodules, most without I/O:
//! [`auth`] (session table, cookie, CSRF and origin checks), [`push`] (what a push form means),
//! [`alarms`] (alarms from the event stream), [`page`] (escaped HTML and the static script);
//! [`operators`] runs what people do through the same gate as the CLI (`Authorized` values,
//! audit events in the same transaction as the act); [`sse`] is the live stream; [`tls`] the
//! HTTPS listener.
//!
//! Routes, with `dashboard.sign_in` (the default):
//!
//! * `GET /` — the page (signed in), else a redirect to `GET /signin`;
//! * `POST /signin` (form: username, password, code) and `POST /signout` (form: csrf);
//! * `GET /api/stream` — the live view ([`sse`]); `GET /api/whoami`;
//! * `GET /api/cards?q=TEXT` — cards; `GET /api/cards/{id}/history` — a card's scripts
//!   (each C-APDU, R-APDU, SW, round trip) and sessions, audited as a read of results;
//! * `POST /api/push` — JSON [`push::PushRequest`], header `X-CSRF-Token`;
//! * `GET /api/sessions`, `GET /api/events` — live sessions and recent events (JSON);
//! * `GET /metrics` — open on a loopback address; elsewhere (or whenever
//!   `dashboard.metrics_token_file` is set) a bearer token or a signed-in session.
//!
//! Without sign-in (`dashboard.sign_in: false`, loopback only): `/metrics`, `/api/sessions`
//! and `/api/events`, read-only. Every response carries a Content-Security-Policy without
//! `unsafe-inline`, and `no-store`.

pub mod alarms;
pub mod auth;
pub mod operators;
pub mod page;
pub mod push;
pub mod sse;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use warden_core::password::Password;
use warden_core::secret::SecretString;
use warden_store::identity::AuthError;
use warden_store::ota as db;

use crate::config::DashboardConfig;
use crate::events::Event;
use crate::metrics::Exposition;
use crate::ops::OtaOpError;
use crate::server::Server;

use alarms::{AlarmChange, AlarmState, Alarms};
use auth::{Lookup, OriginRefusal, WebSession, WebSessions};
use operators::OperatorError;
pub use operators::OperatorStore;
use push::{PushError, Template};
use sse::Stats;
use tls::DashboardTlsError;

/// Why the dashboard did not start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("the dashboard would listen on {0}, not a loopback address: that needs dashboard.tls and dashboard.sign_in")]
    NotLoopback(SocketAddr),
    #[error("dashboard sign-in needs the database's users, and none were given to the dashboard")]
    NoIdentityStore,
    #[error(transparent)]
    Tls(#[from] DashboardTlsError),
    #[error("cannot use the metrics token file {path}")]
    MetricsToken {
        path: String,
        source: warden_core::fsx::FsError,
    },
    #[error("the metrics token file {0} holds no token")]
    EmptyMetricsToken(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The dashboard, ready to serve.
pub struct Dashboard {
    st: Arc<DashState>,
    /// HTTPS, when configured.
    acceptor: Option<Arc<openssl::ssl::SslAcceptor>>,
}

pub(crate) struct DashState {
    server: Server,
    config: DashboardConfig,
    operators: Option<OperatorStore>,
    sessions: Mutex<WebSessions>,
    stats: watch::Sender<Arc<Stats>>,
    alarms: Mutex<Alarms>,
    alarm_tx: broadcast::Sender<AlarmChange>,
    metrics_token: Option<SecretString>,
    /// Set when the dashboard stops: live streams end, so the graceful shutdown can finish.
    stop: watch::Sender<bool>,
    templates: Vec<Template>,
}

impl Dashboard {
    /// `operators` is the dashboard's own store (users, audit chain), required with sign-in.
    pub fn new(
        server: Server,
        config: DashboardConfig,
        operators: Option<OperatorStore>,
    ) -> Result<Self, DashboardError> {
        if config.sign_in && operators.is_none() {
            return Err(DashboardError::NoIdentityStore);
        }
        check_exposure(&config, config.listen)?;
        // The certificate and key are read now: a dashboard that cannot serve does not start.
        let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let metrics_token = match &config.metrics_token_file {
            None => None,
            Some(path) => {
                let bytes =
                    zeroize::Zeroizing::new(warden_core::fsx::read_private(path, 4096).map_err(
                        |source| DashboardError::MetricsToken {
                            path: path.display().to_string(),
                            source,
                        },
                    )?);
                let text = String::from_utf8_lossy(&bytes);
                let token = text.lines().next().unwrap_or("").trim().to_string();
                if token.is_empty() {
                    return Err(DashboardError::EmptyMetricsToken(
                        path.display().to_string(),
                    ));
                }
                Some(SecretString::new(token))
            }
        };
        let sessions =
            WebSessions::new(config.session_idle, config.session_max, config.max_sessions);
        let alarms = Alarms::new(config.alarms.clone());
        Ok(Self {
            acceptor,
            st: Arc::new(DashState {
                server,
                operators,
                sessions: Mutex::new(sessions),
                stats: watch::Sender::new(Arc::new(Stats::default())),
                alarms: Mutex::new(alarms),
                alarm_tx: broadcast::channel(256).0,
                metrics_token,
                stop: watch::Sender::new(false),
                templates: push::templates(),
                config,
            }),
        })
    }

    /// The routes (for tests that drive the router directly).
    pub fn router(&self) -> Router {
        router(self.st.clone())
    }

    /// Serves `listener` (HTTPS when configured) until `shutdown`. Refuses a non-loopback
    /// listener unless the dashboard has TLS and sign-in.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DashboardError> {
        let (st, acceptor) = (self.st, self.acceptor);
        check_exposure(&st.config, listener.local_addr()?)?;
        let mut tasks = vec![tokio::spawn(alarm_task(st.clone()))];
        if st.config.sign_in {
            tasks.push(tokio::spawn(stats_task(st.clone())));
            tasks.push(tokio::spawn(sweep_task(st.clone())));
        }
        let app = router(st.clone());
        let stop = st.stop.clone();
        let shutdown = async move {
            shutdown.await;
            stop.send_replace(true);
        };
        let result = match acceptor {
            Some(acceptor) => {
                axum::serve(tls::TlsListener::new(listener, acceptor)?, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        for t in tasks {
            t.abort();
        }
        Ok(result?)
    }
}

/// A dashboard off loopback needs TLS and sign-in.
fn check_exposure(config: &DashboardConfig, addr: SocketAddr) -> Result<(), DashboardError> {
    if !addr.ip().is_loopback() && (config.tls.is_none() || !config.sign_in) {
        return Err(DashboardError::NotLoopback(addr));
    }
    Ok(())
}

/// The read-only dashboard without sign-in (loopback only): `/metrics`, `/api/sessions`,
/// `/api/events`.
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut config = DashboardConfig::with_defaults(listener.local_addr()?);
    config.sign_in = false;
    let dashboard = Dashboard::new(server, config, None).map_err(std::io::Error::other)?;
    dashboard
        .serve(listener, shutdown)
        .await
        .map_err(|e| match e {
            DashboardError::Io(io) => io,
            DashboardError::NotLoopback(_) => {
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string())
            }
            other => std::io::Error::other(other),
        })
}

// Implements: O13, O14, O71
fn router(st: Arc<DashState>) -> Router {
    let common = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/sessions", get(api_sessions))
        .route("/api/events", get(api_events))
        .route("/static/dashboard.js", get(static_js))
        .route("/static/dashboard.css", get(static_css));
    let app = if st.config.sign_in {
        common
            .route("/", get(index))
            .route("/signin", get(sign_in_page).post(sign_in))
            .route("/signout", post(sign_out))
            .route("/api/whoami", get(whoami))
            .route("/api/stream", get(stream))
            .route("/api/cards", get(api_cards))
            .route("/api/cards/{id}/history", get(api_history))
            .route("/api/push", post(api_push))
    } else {
        common.route("/", get(|| async { Html(page::read_only()) }))
    };
    app.layer(axum::middleware::map_response_with_state(
        st.clone(),
        security_headers,
    ))
    .with_state(st)
}

async fn security_headers(State(st): State<Arc<DashState>>, mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page::CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if st.config.tls.is_some() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}

/// The answer to a dashboard request that was refused, by cause.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("sign in first")]
    NotSignedIn,
    #[error("your dashboard session has ended ({0}); sign in again")]
    Expired(&'static str),
    #[error("refused")]
    Origin(#[from] OriginRefusal),
    #[error("refused: missing or wrong CSRF token")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Operator(#[from] OperatorError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotSignedIn | Self::Expired(_) => StatusCode::UNAUTHORIZED,
            Self::Origin(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Operator(e) => operator_status(e),
        }
    }
}

fn operator_status(e: &OperatorError) -> StatusCode {
    match e {
        OperatorError::Auth(a) => match a {
            AuthError::Failed | AuthError::TotpRequired { .. } | AuthError::LockedOut { .. } => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Denied { .. }
            | AuthError::PasswordExpired { .. }
            | AuthError::NotSignedIn { .. }
            | AuthError::ServiceDenied(_) => StatusCode::FORBIDDEN,
            AuthError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        OperatorError::TotpNotEnrolled(_) => StatusCode::FORBIDDEN,
        OperatorError::Push(_) => StatusCode::UNPROCESSABLE_ENTITY,
        OperatorError::Op(OtaOpError::Authorization(_)) | OperatorError::Worker => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        OperatorError::Op(OtaOpError::Ota(db::OtaStoreError::Store(_)))
        | OperatorError::Op(OtaOpError::Store(_))
        | OperatorError::Ota(_)
        | OperatorError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        OperatorError::Op(OtaOpError::Ota(_)) => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %warden_core::report::Report(&self), "dashboard request failed");
        }
        let message = warden_core::report::report(&self);
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl DashState {
    fn tls(&self) -> bool {
        self.config.tls.is_some()
    }

    fn cookie(&self, headers: &HeaderMap) -> Option<String> {
        let values = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        auth::session_cookie(values, self.tls()).map(str::to_owned)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, WebSessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The signed-in viewer of this request; `touch` counts the request as activity.
    fn viewer(&self, headers: &HeaderMap, touch: bool) -> Result<(String, WebSession), ApiError> {
        let cookie = self.cookie(headers).ok_or(ApiError::NotSignedIn)?;
        let found = self.sessions().lookup(&cookie, Instant::now(), touch);
        match found {
            Lookup::Valid(s) => Ok((cookie, s)),
            Lookup::Expired { user, why } => {
                self.record_end(user, Some(why));
                Err(ApiError::Expired(why.as_str()))
            }
            Lookup::Unknown => Err(ApiError::NotSignedIn),
        }
    }

    fn same_origin(&self, headers: &HeaderMap) -> Result<(), OriginRefusal> {
        auth::check_same_origin(
            if self.tls() { "https" } else { "http" },
            header_str(headers, header::HOST),
            header_str(headers, header::ORIGIN),
            header_str(headers, header::REFERER),
        )
    }

    /// A state-changing request: same origin, signed in, and the session's CSRF token.
    fn acting(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Result<(String, WebSession), ApiError> {
        self.same_origin(headers).inspect_err(|e| {
            tracing::warn!(refusal = %e, "dashboard: state-changing request from another origin refused");
        })?;
        let (cookie, session) = self.viewer(headers, true)?;
        if !session.csrf.matches(csrf) {
            tracing::warn!(user = %session.user.username(), "dashboard: request without the right CSRF token refused");
            return Err(ApiError::Csrf);
        }
        Ok((cookie, session))
    }

    /// For the live stream: is this cookie still a session (not counted as activity)?
    fn still_signed_in(&self, cookie: &str) -> bool {
        let found = self.sessions().lookup(cookie, Instant::now(), false);
        match found {
            Lookup::Valid(_) => true,
            Lookup::Expired { user, why } => {
                self.record_end(user, Some(why));
                false
            }
            Lookup::Unknown => false,
        }
    }

    fn active_alarms(&self) -> Vec<AlarmChange> {
        self.alarms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .active()
    }

    /// Audits the end of a session (sign-out, or expiry), without waiting.
    fn record_end(
        &self,
        user: warden_store::identity::AuthenticatedUser,
        why: Option<auth::Expiry>,
    ) {
        let Some(ops) = self.operators.clone() else {
            return;
        };
        tracing::info!(user = %user.username(), reason = why.map_or("signout", |w| w.as_str()), "dashboard session ended");
        tokio::spawn(async move {
            if let Err(e) = ops
                .run(move |s| operators::session_ended(s, &user, why))
                .await
            {
                tracing::error!(error = %warden_core::report::Report(&e), "could not audit the end of a dashboard session");
            }
        });
    }

    fn operators(&self) -> Result<OperatorStore, ApiError> {
        self.operators
            .clone()
            .ok_or(ApiError::Operator(OperatorError::Worker))
    }

    /// After a privileged act failed: a user who may no longer sign in loses the session.
    fn end_if_gone(&self, cookie: &str, e: &OperatorError) {
        if matches!(
            e,
            OperatorError::Auth(AuthError::Failed | AuthError::LockedOut { .. })
        ) {
            if let Some(s) = self.sessions().close(cookie) {
                self.record_end(s.user, None);
            }
        }
    }

    fn metrics_allowed(&self, headers: &HeaderMap) -> bool {
        if let Some(token) = &self.metrics_token {
            // The scheme name is case-insensitive (RFC 9110, section 11.1).
            let given = header_str(headers, header::AUTHORIZATION)
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            if given.is_some_and(|g| {
                warden_core::mac::ct_eq(g.as_bytes(), token.expose_secret().as_bytes())
            }) {
                return true;
            }
        } else if self.config.listen.ip().is_loopback() {
            return true;
        }
        self.config.sign_in && self.viewer(headers, false).is_ok()
    }
}

async fn alarm_task(st: Arc<DashState>) {
    let mut rx = st.server.events().subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let changes = tokio::select! {
            r = rx.recv() => match r {
                Ok(record) => st.alarms.lock().unwrap_or_else(|e| e.into_inner()).observe(&record.event, Instant::now()),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => st.alarms.lock().unwrap_or_else(|e| e.into_inner()).tick(Instant::now()),
        };
        for c in changes {
            match c.state {
                AlarmState::Raised => {
                    tracing::warn!(alarm = ?c.alarm, message = %c.message, "dashboard alarm raised")
                }
                AlarmState::Cleared => tracing::info!(alarm = ?c.alarm, "dashboard alarm cleared"),
            }
            let _ = st.alarm_tx.send(c);
        }
    }
}

async fn stats_task(st: Arc<DashState>) {
    let mut tick = tokio::time::interval(st.config.stats_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(ops) = st.operators.clone() else {
            return;
        };
        let queue = match ops.run(|s| Ok(db::queue_depth(s.db.conn())?)).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %warden_core::report::Report(&e), "dashboard: cannot read the queue depth");
                st.stats.borrow().queue
            }
        };
        let stats = Stats::new(
            warden_store::now_rfc3339(),
            st.server.live_sessions(),
            queue,
            st.server.keys().len(),
        );
        st.stats.send_replace(Arc::new(stats));
    }
}

async fn sweep_task(st: Arc<DashState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let ended = st.sessions().sweep(Instant::now());
        for (user, why) in ended {
            st.record_end(user, Some(why));
        }
    }
}

async fn static_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page::SCRIPT,
    )
        .into_response()
}

async fn static_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page::STYLE,
    )
        .into_response()
}

/// OpenMetrics, or Prometheus text 0.0.4 when the scraper asks for it.
async fn metrics(State(st): State<Arc<DashState>>, headers: HeaderMap) -> Response {
    if !st.metrics_allowed(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics need a bearer token or a signed-in session\n",
        )
            .into_response();
    }
    let format = Exposition::negotiate(header_str(&headers, header::ACCEPT));
    (
        [(header::CONTENT_TYPE, format.content_type())],
        st.server.metrics().encode_as(format),
    )
        .into_response()
}

async fn api_sessions(State(st): State<Arc<DashState>>, headers: HeaderMap) -> Response {
    if st.config.sign_in {
        if let Err(e) = st.viewer(&headers, true) {
            return e.into_response();
        }
    }
    Json(st.server.live_sessions()).into_response()
}

async fn api_events(State(st): State<Arc<DashState>>, headers: HeaderMap) -> Response {
    if st.config.sign_in {
        if let Err(e) = st.viewer(&headers, true) {
            return e.into_response();
        }
    }
    let events: Vec<serde_json::Value> = st
        .server
        .events()
        .recent()
        .iter()
        .filter_map(|e| serde_json::to_value(&**e).ok())
        .collect();
    Json(events).into_response()
}

fn can_push(role: warden_core::rbac::Role) -> bool {
    warden_core::rbac::authorize(role, warden_core::rbac::Permission::OtaScriptPush).is_allowed()
}

async fn index(State(st): State<Arc<DashState>>, headers: HeaderMap) -> Response {
    match st.viewer(&headers, true) {
        Ok((_, s)) => Html(page::app(
            &page::Viewer {
                username: s.user.username(),
                role: s.user.role(),
                can_push: can_push(s.user.role()),
                csrf: s.csrf.as_str(),
            },
            &st.templates,
        ))
        .into_response(),
        Err(_) => Redirect::to("/signin").into_response(),
    }
}

async fn sign_in_page(State(st): State<Arc<DashState>>, headers: HeaderMap) -> Response {
    if st.viewer(&headers, false).is_ok() {
        return Redirect::to("/").into_response();
    }
    Html(page::sign_in(None, "")).into_response()
}

#[derive(Deserialize)]
struct SignInForm {
    username: String,
    password: String,
    #[serde(default)]
    code: String,
}

async fn sign_in(
    State(st): State<Arc<DashState>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let SignInForm {
        username,
        password,
        code,
    } = form;
    let password = Password::new(password);
    let code = zeroize::Zeroizing::new(code);
    let refuse = |status: StatusCode, message: &str, username: &str| {
        (status, Html(page::sign_in(Some(message), username))).into_response()
    };
    if let Err(e) = st.same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, &e.to_string(), "");
    }
    // A full table refuses before any credential is checked (and before a sign-in is
    // recorded that gives no session).
    let room = st.sessions().room();
    if let Err(full) = room {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &full.to_string(),
            &username,
        );
    }
    let ops = match st.operators() {
        Ok(ops) => ops,
        Err(e) => return e.into_response(),
    };
    let shown = username.clone();
    let require_totp = st.config.require_totp;
    let code = Some(code.trim().to_owned()).filter(|c| !c.is_empty());
    let result = ops
        .run(move |s| operators::sign_in(s, &username, &password, code.as_deref(), require_totp))
        .await;
    match result {
        Ok(user) => {
            let name = user.username().to_owned();
            let user_of_refused = user.clone();
            let opened = st.sessions().open(user, Instant::now());
            match opened {
                Ok((token, _)) => {
                    tracing::info!(user = %name, "dashboard sign-in");
                    let cookie = auth::set_cookie(&token, st.tls());
                    let mut res = Redirect::to("/").into_response();
                    if let Ok(v) = HeaderValue::from_str(&cookie) {
                        res.headers_mut().insert(header::SET_COOKIE, v);
                    }
                    res
                }
                Err(full) => {
                    // The table filled up while the sign-in was checked: the recorded sign-in
                    // is followed by the end of the session it did not get.
                    st.record_end(user_of_refused, Some(auth::Expiry::TooManySessions));
                    refuse(StatusCode::SERVICE_UNAVAILABLE, &full.to_string(), &shown)
                }
            }
        }
        Err(e) => {
            tracing::info!(user = %shown.chars().take(64).collect::<String>(), error = %warden_core::report::Report(&e), "dashboard sign-in refused");
            let status = operator_status(&e);
            let message = match &e {
                OperatorError::Auth(a) => a.to_string(),
                OperatorError::TotpNotEnrolled(_) => e.to_string(),
                _ => "the sign-in could not be checked; try again later".to_string(),
            };
            refuse(status, &message, &shown)
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(st): State<Arc<DashState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // The token comes as the header (scripts) or as the form field (the page's button).
    let csrf = header_str(&headers, header::HeaderName::from_static("x-csrf-token"))
        .map(str::to_owned)
        .or_else(|| {
            serde_urlencoded::from_bytes::<CsrfForm>(&body)
                .ok()
                .map(|f| f.csrf)
        });
    let cleared = |res: Response| {
        let mut res = res;
        if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie(st.tls())) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
        res
    };
    match st.acting(&headers, csrf.as_deref()) {
        Ok((cookie, _)) => {
            if let Some(s) = st.sessions().close(&cookie) {
                st.record_end(s.user, None);
            }
            cleared(Redirect::to("/signin").into_response())
        }
        Err(ApiError::NotSignedIn | ApiError::Expired(_)) => {
            cleared(Redirect::to("/signin").into_response())
        }
        Err(e) => e.into_response(),
    }
}

async fn whoami(State(st): State<Arc<DashState>>, headers: HeaderMap) -> Response {
    match st.viewer(&headers, false) {
        Ok((_, s)) => Json(serde_json::json!({
            "user": s.user.username(),
            "role": s.user.role().name(),
            "can_push": can_push(s.user.role()),
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn stream(State(st): State<Arc<DashState>>, headers: HeaderMap) -> Response {
    match st.viewer(&headers, true) {
        Ok((cookie, _)) => sse::stream(st.clone(), cookie).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct CardQuery {
    #[serde(default)]
    q: String,
}

async fn api_cards(
    State(st): State<Arc<DashState>>,
    headers: HeaderMap,
    Query(query): Query<CardQuery>,
) -> Response {
    let run = async {
        st.viewer(&headers, true)?;
        let ops = st.operators()?;
        let keys = st.server.keys().identities();
        let mut cards = ops
            .run(move |s| operators::cards(s, &keys, &query.q))
            .await?;
        cards.truncate(500);
        Ok::<_, ApiError>(Json(cards).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn api_history(
    State(st): State<Arc<DashState>>,
    headers: HeaderMap,
    Path(card): Path<String>,
) -> Response {
    let run = async {
        let (cookie, session) = st.viewer(&headers, true)?;
        db::check_identity(&card)
            .map_err(|e| ApiError::BadRequest(warden_core::report::report(&e)))?;
        let ops = st.operators()?;
        let user = session.user;
        match ops.run(move |s| operators::history(s, &user, &card)).await {
            Ok((user, history)) => {
                st.sessions().update_user(&cookie, user);
                Ok(Json(history).into_response())
            }
            Err(e) => {
                st.end_if_gone(&cookie, &e);
                Err(ApiError::from(e))
            }
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn api_push(State(st): State<Arc<DashState>>, headers: HeaderMap, body: Bytes) -> Response {
    let run = async {
        let csrf = header_str(&headers, header::HeaderName::from_static("x-csrf-token"));
        let (cookie, session) = st.acting(&headers, csrf)?;
        let request: push::PushRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the push request is not valid: {e}")))?;
        let targets = push::parse_targets(&request.cards).map_err(OperatorError::from)?;
        let planned = push::parse_script(request.format, &request.script, request.label.as_deref())
            .map_err(OperatorError::from)?;
        let ops = st.operators()?;
        let keys = st.server.keys().identities();
        let user = session.user;
        let dry_run = request.dry_run;
        let commands = planned.script.command_count();
        let outcome = ops
            .run(move |s| operators::push(s, &user, &keys, &targets, &planned, dry_run))
            .await;
        match outcome {
            Ok((user, preview, queued)) => {
                for q in &queued {
                    st.server.events().emit(Event::ScriptQueued {
                        card: q.card.clone(),
                        script_id: q.script,
                        by: user.username().to_owned(),
                        commands,
                    });
                }
                if !queued.is_empty() {
                    tracing::info!(user = %user.username(), scripts = queued.len(), "dashboard push queued");
                }
                st.sessions().update_user(&cookie, user);
                Ok(
                    Json(serde_json::json!({ "preview": preview, "queued": queued }))
                        .into_response(),
                )
            }
            Err(e) => {
                st.end_if_gone(&cookie, &e);
                Err(ApiError::from(e))
            }
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        Self::Operator(OperatorError::Push(e))
    }
}
