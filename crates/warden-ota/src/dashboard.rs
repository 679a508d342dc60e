//! The local dashboard: `/metrics` (Prometheus), a small REST API, and an HTML page.
//!
//! It has no authentication, so it only ever binds a loopback address (the configuration
//! refuses anything else). Routes:
//!
//! * `GET /` — a page listing live sessions and recent events;
//! * `GET /metrics` — OpenMetrics text, or Prometheus text 0.0.4 for `Accept: text/plain`;
//! * `GET /api/sessions` — live sessions (JSON);
//! * `GET /api/events` — the most recent events (JSON);
//! * `GET /api/cards` — cards and their pending scripts;
//! * `GET /api/cards/{id}/results` — a card's scripts with each C-APDU, R-APDU and SW.

use std::future::Future;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use warden_store::ota as db;

use crate::metrics::Exposition;
use crate::server::Server;

// Implements: O13, O14, O71
pub fn router(server: Server) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/api/sessions", get(sessions))
        .route("/api/events", get(events))
        .route("/api/cards", get(cards))
        .route("/api/cards/{id}/results", get(results))
        .with_state(server)
}

/// Serves the dashboard until `shutdown`. Refuses a non-loopback listener.
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("the dashboard binds loopback addresses only, not {addr}"),
        ));
    }
    axum::serve(listener, router(server))
        .with_graceful_shutdown(shutdown)
        .await
}

/// OpenMetrics, or Prometheus text 0.0.4 when the scraper asks for it.
async fn metrics(State(s): State<Server>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Exposition::negotiate(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        s.metrics().encode_as(format),
    )
        .into_response()
}

async fn sessions(State(s): State<Server>) -> Response {
    Json(s.live_sessions()).into_response()
}

async fn events(State(s): State<Server>) -> Response {
    let events: Vec<serde_json::Value> = s
        .events()
        .recent()
        .iter()
        .filter_map(|e| serde_json::to_value(&**e).ok())
        .collect();
    Json(events).into_response()
}

fn store_error(e: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
}

async fn cards(State(s): State<Server>) -> Response {
    match s.store().call(|tx, _| db::list_cards(tx)).await {
        Ok(c) => Json(c).into_response(),
        Err(e) => store_error(e),
    }
}

async fn results(State(s): State<Server>, Path(id): Path<String>) -> Response {
    match s
        .store()
        .call(move |tx, _| db::script_reports(tx, &id, Some(100)))
        .await
    {
        Ok(r) => Json(r).into_response(),
        Err(e) => store_error(e),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn index(State(s): State<Server>) -> Html<String> {
    let mut page = String::from(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=5><title>warden OTA</title>\
         <style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style>\
         <h1>warden OTA admin server</h1><h2>Live sessions</h2><table><tr><th>session<th>card<th>peer<th>state<th>TLS<th>cipher<th>requests</tr>",
    );
    for l in s.live_sessions() {
        page.push_str(&format!(
            "<tr><td>{}<td>{}<td>{}<td>{:?}<td>{}<td>{}<td>{}</tr>",
            esc(&l.session_id),
            esc(&l.psk_identity),
            esc(&l.peer),
            l.state,
            esc(&l.tls_version),
            esc(&l.cipher_suite),
            l.requests
        ));
    }
    page.push_str("</table><h2>Recent events</h2><pre>");
    for e in s.events().recent().iter().rev().take(50) {
        page.push_str(&esc(&e.to_json()));
        page.push('\n');
    }
    page.push_str("</pre><p><a href=/metrics>/metrics</a> · <a href=/api/sessions>/api/sessions</a> · <a href=/api/events>/api/events</a> · <a href=/api/cards>/api/cards</a></p>");
    Html(page)
}
