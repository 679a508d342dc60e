//! The live view: `GET /api/stream`, server-sent events for one signed-in viewer.
//!
//! Event types (the `data:` line is JSON):
//!
//! * `ota` — a server event as [`crate::events`] publishes it (`{"event": …, "timestamp": …}`);
//!   on connect, the most recent ones first;
//! * `stats` — every `dashboard.stats_interval_secs` and on connect: [`Stats`];
//! * `alarm` — an alarm raised or cleared ([`super::alarms::AlarmChange`]); on connect, the
//!   ones raised now;
//! * `lagged` — `{"lost": N}`: this viewer fell behind and N events were dropped for it;
//! * `signout` — the session ended (sign-out elsewhere, idle, maximum age): the stream ends.
//!
//! The stream does not count as activity: a page left open still signs out after
//! `session_idle`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use warden_store::ota::QueueDepth;

use crate::server::LiveSession;
use crate::session::SessionState;

use super::DashState;

/// Sessions by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionCounts {
    pub connected: usize,
    pub active: usize,
}

/// What the live view shows besides events.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub time: String,
    pub sessions: SessionCounts,
    pub live: Vec<LiveSession>,
    pub queue: QueueDepth,
    /// Card identities known (stored keys, the key file, scripts, sessions).
    pub cards: usize,
}

impl Stats {
    pub fn new(time: String, live: Vec<LiveSession>, queue: QueueDepth, cards: usize) -> Self {
        let mut sessions = SessionCounts::default();
        for l in &live {
            match l.state {
                SessionState::Active => sessions.active += 1,
                SessionState::Connected | SessionState::Handshaking => sessions.connected += 1,
                SessionState::Closed => {}
            }
        }
        Self {
            time,
            sessions,
            live,
            queue,
            cards,
        }
    }
}

fn json_event(name: &'static str, value: &impl Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
}

/// Events sent on connect.
const REPLAY: usize = 100;

/// The stream for the viewer whose cookie is `cookie`.
pub(super) fn stream(
    st: Arc<DashState>,
    cookie: String,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = mpsc::channel::<SseEvent>(256);
    tokio::spawn(async move {
        let mut bus = st.server.events().subscribe();
        let mut stats = st.stats.subscribe();
        let mut alarms = st.alarm_tx.subscribe();
        let mut stop = st.stop.subscribe();
        let mut first: Vec<SseEvent> = Vec::new();
        let recent = st.server.events().recent();
        let skip = recent.len().saturating_sub(REPLAY);
        first.extend(
            recent
                .iter()
                .skip(skip)
                .map(|r| SseEvent::default().event("ota").data(r.to_json())),
        );
        first.push(json_event("stats", &**stats.borrow_and_update()));
        first.extend(st.active_alarms().iter().map(|a| json_event("alarm", a)));
        for e in first {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                r = bus.recv() => match r {
                    Ok(record) => SseEvent::default().event("ota").data(record.to_json()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        json_event("lagged", &serde_json::json!({ "lost": n }))
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                r = stats.changed() => match r {
                    Ok(()) => json_event("stats", &**stats.borrow_and_update()),
                    Err(_) => break,
                },
                r = alarms.recv() => match r {
                    Ok(change) => json_event("alarm", &change),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for a in st.active_alarms() {
                            if tx.send(json_event("alarm", &a)).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = check.tick() => {
                    if st.still_signed_in(&cookie) {
                        continue;
                    }
                    let _ = tx.send(SseEvent::default().event("signout").data("{}")).await;
                    break;
                }
                _ = stop.changed() => break,
                () = tx.closed() => break,
            };
            if tx.send(next).await.is_err() {
                break;
            }
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
