//! The admin server: accept loop, PSK-TLS handshake, hyper HTTP/1.1, and the glue between the
//! admin state machine ([`crate::admin`]) and the store.
//!
//! [`Server::run`] takes a bound listener and a shutdown future (STYLE: `run(listener,
//! shutdown)`). A semaphore holds the connection limit; a second, smaller pool holds the
//! connections still in their handshake, and when it is full the oldest handshake is dropped,
//! so silent or garbage clients cannot keep a real card out. On shutdown the server stops
//! accepting, asks every connection to finish its current request, and waits for them (up to
//! a drain deadline).
//!
//! Per request the adapter only does I/O: the body is read (bounded in size and time) into an
//! [`AdminRequest`]; the pure core ([`crate::plan`]) decides which session it belongs to and,
//! with the next queued script, what the step stores, audits and emits; the adapter runs that
//! plan's store writes and audit records as one transaction, and only after the commit does
//! the HTTP response leave: a script is marked in flight before the card can run it, and
//! results are stored before the card is told they arrived. Admin sessions are kept per card,
//! not per connection, so a card that lost its connection can resume on a new one
//! (`X-Admin-Resume: true`). Every audit record is in the server's name
//! ([`crate::audit::SERVER_ACTOR`]).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_openssl::SslStream;
use warden_core::audit::NewEvent;
use warden_core::report::{report, Report};
use warden_store::ota::{self as db, OtaStoreError};

use crate::admin::{
    header, AdminRequest, AdminResponse, QueuedScript, Redelivery, SessionConfig, ADMIN_PROTOCOL,
};
use crate::audit::{self, AuditRecord};
use crate::config::ServerConfig;
use crate::events::{Event, EventBus};
use crate::keys::{merge_sources, read_key_file, KeyCache, Psk};
use crate::metrics::{HandshakeLabel, Metrics};
use crate::plan::{
    queued_script, Begin, CardState, Committed, ConnTally, Connection, Durability, Plan,
    QueueError, Refusal, StoreWrite,
};
use crate::session::{CloseReason, Closed, Handshaking, Lifecycle, SessionState, TlsInfo};
use crate::store::{audit_event, StoreFailure, StoreHandle};
use crate::tls::{classify, ConnTrace, FailureKind, ServerTls, TlsError};

/// How long a stopping server waits for open connections to finish.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stop waits for a card that is running a script to post its results: within the
/// drain deadline, so that its connection is closed before the drain gives up on it.
const RESULTS_GRACE: Duration = Duration::from_secs(8);

/// A running session, as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSession {
    pub session_id: String,
    pub psk_identity: String,
    pub peer: String,
    pub state: SessionState,
    pub tls_version: String,
    pub cipher_suite: String,
    pub started: String,
    pub requests: u64,
}

/// The admin state kept per card, across connections (for resume).
struct CardSlot {
    /// The card's session and scripts out: the pure core's state.
    state: CardState,
    /// The next pending script, read in the same transaction as the last step's effects
    /// (`None`: not known, read it).
    next: Option<NextScript>,
    last_used: Instant,
}

impl CardSlot {
    fn new() -> Self {
        Self {
            state: CardState::new(),
            next: None,
            last_used: Instant::now(),
        }
    }
}

/// The script a card's next request delivers, read by the job that stored the last step.
enum NextScript {
    /// The job has run (`None` inside: nothing is queued).
    Read(Option<db::PendingScript>),
    /// The job is queued: a step whose response does not wait for the database (it touches
    /// only scripts that may run twice) answered without waiting for it. The card's next
    /// request, a network round trip later, finds it done.
    Coming(crate::store::Submitted<Option<db::PendingScript>>),
}

/// Connections in their handshake, oldest first; over the limit, the oldest is told to go.
type HandshakeQueue = Arc<Mutex<VecDeque<(u64, Arc<Notify>)>>>;

#[derive(Clone)]
struct HandshakeSlots {
    max: usize,
    queue: HandshakeQueue,
}

struct HandshakeSlot {
    slots: HandshakeSlots,
    id: u64,
    evict: Arc<Notify>,
}

impl HandshakeSlots {
    fn enter(&self, id: u64) -> (HandshakeSlot, bool) {
        let evict = Arc::new(Notify::new());
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = false;
        while q.len() >= self.max {
            if let Some((_, oldest)) = q.pop_front() {
                oldest.notify_one();
                evicted = true;
            }
        }
        q.push_back((id, evict.clone()));
        (
            HandshakeSlot {
                slots: self.clone(),
                id,
                evict,
            },
            evicted,
        )
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut q = self.slots.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = q.iter().position(|(id, _)| *id == self.id) {
            q.remove(pos);
        }
    }
}

// Implements: O45
/// PSK mismatches per source address, in a sliding window.
#[derive(Default)]
struct MismatchTracker {
    by_source: HashMap<IpAddr, VecDeque<(Instant, String)>>,
}

impl MismatchTracker {
    const MAX_SOURCES: usize = 10_000;

    fn record(
        &mut self,
        source: IpAddr,
        identity: &str,
        now: Instant,
        window: Duration,
    ) -> (u32, Vec<String>) {
        if self.by_source.len() >= Self::MAX_SOURCES {
            self.by_source.retain(|_, q| {
                q.retain(|(t, _)| now.duration_since(*t) < window);
                !q.is_empty()
            });
        }
        let q = self.by_source.entry(source).or_default();
        q.retain(|(t, _)| now.duration_since(*t) < window);
        q.push_back((now, identity.to_string()));
        let mut ids: Vec<String> = q.iter().map(|(_, i)| i.clone()).collect();
        ids.sort();
        ids.dedup();
        (q.len() as u32, ids)
    }
}

// Implements: O47
/// Connection outcomes per second, for the error-rate alarm.
#[derive(Default)]
struct ErrorRate {
    buckets: VecDeque<(u64, u32, u32)>,
    last_alarm: Option<Instant>,
}

impl ErrorRate {
    /// Records one outcome; returns (rate, total, dominant error type) when the alarm fires.
    fn record(
        &mut self,
        error: bool,
        now: Instant,
        epoch: Instant,
        cfg: &crate::config::ErrorPolicy,
    ) -> Option<(f64, u64)> {
        let sec = now.duration_since(epoch).as_secs();
        let window = cfg.error_rate_window.as_secs().max(1);
        while self
            .buckets
            .front()
            .is_some_and(|(s, _, _)| s + window <= sec)
        {
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some((s, ok, err)) if *s == sec => {
                if error {
                    *err += 1
                } else {
                    *ok += 1
                }
            }
            _ => self
                .buckets
                .push_back((sec, u32::from(!error), u32::from(error))),
        }
        if !error {
            return None;
        }
        let (ok, err) = self.buckets.iter().fold((0u64, 0u64), |(a, b), (_, o, e)| {
            (a + *o as u64, b + *e as u64)
        });
        let total = ok + err;
        let rate = err as f64 / total.max(1) as f64;
        let quiet = self
            .last_alarm
            .is_none_or(|t| now.duration_since(t) >= cfg.error_rate_window);
        if total >= u64::from(cfg.error_rate_min_connections)
            && rate >= cfg.error_rate_threshold
            && quiet
        {
            self.last_alarm = Some(now);
            return Some((rate, total));
        }
        None
    }
}

struct State {
    config: ServerConfig,
    tls: ServerTls,
    keys: KeyCache,
    store: StoreHandle,
    events: EventBus,
    metrics: Arc<Metrics>,
    cards: Mutex<HashMap<String, Arc<tokio::sync::Mutex<CardSlot>>>>,
    live: Mutex<HashMap<u64, LiveSession>>,
    mismatches: Mutex<MismatchTracker>,
    errors: Mutex<ErrorRate>,
    epoch: Instant,
    handshakes: HandshakeSlots,
    next_conn: AtomicU64,
    /// Set once [`Server::prepare`] has loaded the keys and settled the last run's sessions.
    prepared: tokio::sync::OnceCell<()>,
    /// Set when a graceful stop begins: no new script goes out.
    stopping: AtomicBool,
}

/// The OTA admin server. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
}

impl Server {
    /// Builds the TLS context and the server state. Keys are loaded by [`Server::reload_keys`]
    /// (called by [`Server::run`]), or inserted into `keys` directly.
    pub fn new(
        config: ServerConfig,
        keys: KeyCache,
        store: StoreHandle,
        events: EventBus,
    ) -> Result<Self, TlsError> {
        let tls = ServerTls::new(config.ciphers, keys.clone())?;
        let handshakes = HandshakeSlots {
            max: config.max_handshakes,
            queue: Arc::new(Mutex::new(VecDeque::new())),
        };
        Ok(Self {
            state: Arc::new(State {
                config,
                tls,
                keys,
                store,
                events,
                metrics: Arc::new(Metrics::new()),
                cards: Mutex::new(HashMap::new()),
                live: Mutex::new(HashMap::new()),
                mismatches: Mutex::new(MismatchTracker::default()),
                errors: Mutex::new(ErrorRate::default()),
                epoch: Instant::now(),
                handshakes,
                next_conn: AtomicU64::new(1),
                prepared: tokio::sync::OnceCell::new(),
                stopping: AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> &ServerConfig {
        &self.state.config
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    pub fn events(&self) -> &EventBus {
        &self.state.events
    }

    pub fn store(&self) -> &StoreHandle {
        &self.state.store
    }

    pub fn tls(&self) -> &ServerTls {
        &self.state.tls
    }

    /// The PSK cache (identities the server accepts now; the dashboard lists them).
    pub fn keys(&self) -> &KeyCache {
        &self.state.keys
    }

    // Implements: O13
    /// Sessions open now.
    pub fn live_sessions(&self) -> Vec<LiveSession> {
        let live = self.state.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<LiveSession> = live.values().cloned().collect();
        v.sort_by(|a, b| a.started.cmp(&b.started));
        v
    }

    /// Reads every key source and swaps the cache. Returns (keys, conflicting identities).
    pub async fn reload_keys(&self) -> Result<(usize, Vec<String>), String> {
        let s = &self.state;
        let file_keys = match s.config.keys.file.clone() {
            Some(path) => tokio::task::spawn_blocking(move || read_key_file(&path))
                .await
                .map_err(|e| report(&e))?
                .map_err(|e| format!("key file: {}", report(&e)))?,
            None => Vec::new(),
        };
        let db_keys = if s.config.keys.database {
            let rows = s
                .store
                .call(|tx, ctx| db::load_keys(tx, ctx.db_key()))
                .await
                .map_err(|e| report(&e))?;
            let mut keys = Vec::with_capacity(rows.len());
            for (id, opened) in rows {
                match opened.map(Psk::from_secret) {
                    Ok(psk) => keys.push((id, psk)),
                    Err(e) => {
                        tracing::error!(identity = %id, error = %Report(&e), "stored PSK skipped")
                    }
                }
            }
            keys
        } else {
            Vec::new()
        };
        let (map, conflicts) = merge_sources(file_keys, db_keys);
        for id in &conflicts {
            tracing::error!(identity = %id, "identity has different keys in the key file and the database; its card is refused until fixed");
        }
        let count = map.len();
        s.keys.replace(map);
        s.metrics.keys_loaded.set(count as i64);
        s.events.emit(Event::KeysReloaded {
            count,
            conflicts: conflicts.clone(),
        });
        Ok((count, conflicts))
    }

    // Implements: O41
    /// Reloads keys whenever the key file or the database's keys change.
    async fn watch_keys(self) {
        let s = &self.state;
        let file_stamp = |path: &std::path::Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        let mut last_file = s.config.keys.file.as_deref().map(file_stamp);
        let mut last_version = if s.config.keys.database {
            s.store.call(|tx, _| db::keys_version(tx)).await.ok()
        } else {
            None
        };
        let mut tick = tokio::time::interval(s.config.keys.reload);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let file_now = s.config.keys.file.as_deref().map(file_stamp);
            let version_now = if s.config.keys.database {
                s.store.call(|tx, _| db::keys_version(tx)).await.ok()
            } else {
                None
            };
            if file_now != last_file || version_now != last_version {
                match self.reload_keys().await {
                    Ok((n, _)) => tracing::info!(keys = n, "PSK keys reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "PSK key reload failed; keeping the previous keys")
                    }
                }
                last_file = file_now;
                last_version = version_now;
            }
        }
    }

    // Implements: O30, O31, O35
    /// Drops per-card admin sessions nobody used within the resume window.
    async fn janitor(self) {
        let window = self.state.config.resume_window;
        let mut tick = tokio::time::interval(Duration::from_secs(5).min(window));
        loop {
            tick.tick().await;
            let mut cards = self.state.cards.lock().unwrap_or_else(|e| e.into_inner());
            cards.retain(|_, slot| {
                if Arc::strong_count(slot) > 1 {
                    return true;
                }
                match slot.try_lock() {
                    Ok(s) => s.last_used.elapsed() < window,
                    Err(_) => true,
                }
            });
        }
    }

    /// Loads the keys and marks sessions a previous run left open as closed; once ([`run`]
    /// calls it if nobody did). A server that cannot read its keys would listen and refuse
    /// every card: it does not start. (A later reload that fails keeps the keys it has.)
    ///
    /// [`run`]: Server::run
    pub async fn prepare(&self) -> std::io::Result<()> {
        let s = &self.state;
        s.prepared
            .get_or_try_init(|| async {
                self.reload_keys().await.map_err(|e| {
                    std::io::Error::other(format!("the PSK keys cannot be loaded: {e}"))
                })?;
                let closed = s
                    .store
                    .call(|tx, jctx| {
                        let stale =
                            db::close_stale_sessions(tx, CloseReason::ServerRestart.as_str())?;
                        let records = stale.iter().map(|st| {
                            to_audit_event(audit::session_closed(&audit::CloseSummary {
                                card: st.card.as_deref().unwrap_or(""),
                                session_id: &st.id,
                                peer: &st.peer,
                                reason: CloseReason::ServerRestart,
                                from: SessionState::parse(&st.state)
                                    .unwrap_or(SessionState::Connected),
                                duration_s: st.duration_s,
                                scripts: st.scripts,
                                apdus: st.apdus,
                            }))
                        });
                        jctx.audit(tx, records.collect())?;
                        Ok(stale.len())
                    })
                    .await
                    .unwrap_or(0);
                if closed > 0 {
                    tracing::warn!(
                        sessions = closed,
                        "sessions left open by a previous run marked closed"
                    );
                }
                Ok::<_, std::io::Error>(())
            })
            .await
            .map(drop)
    }

    // Implements: O3, O9, O12, O15
    /// Serves `listener` until `shutdown` resolves, then drains open connections.
    pub async fn run(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let s = &self.state;
        let listen = listener.local_addr()?;
        self.prepare().await?;
        let resolved = s.tls.resolved().clone();
        if resolved.null_enabled {
            tracing::warn!("!!! NULL cipher suites are ENABLED: traffic using them is NOT ENCRYPTED. For testing only; never in production. !!!");
        }
        for missing in &resolved.unavailable {
            tracing::warn!(
                suite = missing,
                "configured cipher suite is not available in this OpenSSL; not offered"
            );
        }
        s.events.emit(Event::ServerStarted {
            listen: listen.to_string(),
            ciphers: resolved.all(),
            null_ciphers: resolved.null_enabled,
            max_connections: s.config.max_connections,
        });
        tracing::info!(%listen, ciphers = ?resolved.all(), max_connections = s.config.max_connections, "OTA admin server listening");
        let record =
            audit::server_started(&listen.to_string(), &resolved.all(), resolved.null_enabled);
        s.store.spawn("audit server start", move |tx, ctx| {
            ctx.audit(tx, vec![to_audit_event(record)])
        });

        let background = [
            tokio::spawn(self.clone().watch_keys()),
            tokio::spawn(self.clone().janitor()),
        ];
        let limit = Arc::new(Semaphore::new(s.config.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => p.expect("semaphore never closed"),
                () = &mut shutdown => break,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %Report(&e), "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let conn_id = s.next_conn.fetch_add(1, Ordering::Relaxed);
            let (slot, evicted) = s.handshakes.enter(conn_id);
            if evicted {
                tracing::debug!("handshake pool full: dropped the oldest handshake");
            }
            tokio::spawn(connection(
                s.clone(),
                tcp,
                peer,
                conn_id,
                permit,
                slot,
                stop_rx.clone(),
            ));
        }
        drop(listener);
        // Sessions (completed handshakes) open when the stop came, before draining them.
        let open_sessions = s.live.lock().unwrap_or_else(|e| e.into_inner()).len();
        let open = s.config.max_connections - limit.available_permits();
        tracing::info!(
            open,
            open_sessions,
            "OTA server stopping: draining connections"
        );
        s.stopping.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        let all = u32::try_from(s.config.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(DRAIN_DEADLINE, limit.acquire_many(all))
            .await
            .is_ok();
        for task in background {
            task.abort();
        }
        let not_drained = if drained {
            0
        } else {
            s.config.max_connections - limit.available_permits()
        };
        s.events.emit(Event::ServerStopped {
            reason: "shutdown".into(),
            open_sessions,
            not_drained,
        });
        let record = audit::server_stopped(&listen.to_string(), open_sessions, not_drained);
        let done = s
            .store
            .call(move |tx, ctx| ctx.audit(tx, vec![to_audit_event(record)]))
            .await;
        if let Err(e) = done {
            tracing::error!(error = %Report(&e), "could not audit the server stop");
        }
        Ok(())
    }
}

/// Decrements a gauge when dropped.
struct GaugeGuard<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

enum HandshakeEnd {
    Ssl(openssl::ssl::Error),
    Setup(String),
    Timeout,
    Evicted,
    Shutdown,
}

// Implements: O9, O16, O17, O18, O28, O43, O46, O73, O74
async fn connection(
    s: Arc<State>,
    tcp: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    _permit: OwnedSemaphorePermit,
    slot: HandshakeSlot,
    mut stop: watch::Receiver<bool>,
) {
    s.metrics.connections_accepted.inc();
    s.metrics.connections_open.inc();
    let _open = GaugeGuard(&s.metrics.connections_open);
    let _ = tcp.set_nodelay(true);
    let handshaking = Handshaking::new(conn_id, peer);
    s.events.emit(Event::TlsHandshakeStart {
        conn_id,
        client_addr: peer.to_string(),
    });
    let trace = ConnTrace::new();
    s.metrics.handshakes_in_progress.inc();
    let result = async {
        let ssl = s
            .tls
            .new_ssl(trace.clone())
            .map_err(|e| HandshakeEnd::Setup(report(&e)))?;
        let mut stream = SslStream::new(ssl, tcp).map_err(|e| HandshakeEnd::Setup(report(&e)))?;
        let evicted = slot.evict.clone();
        tokio::select! {
            r = tokio::time::timeout(s.config.handshake_timeout, std::pin::Pin::new(&mut stream).accept()) => match r {
                Ok(Ok(())) => Ok(stream),
                Ok(Err(e)) => Err(HandshakeEnd::Ssl(e)),
                Err(_) => Err(HandshakeEnd::Timeout),
            },
            () = evicted.notified() => Err(HandshakeEnd::Evicted),
            _ = stop.changed() => Err(HandshakeEnd::Shutdown),
        }
    }
    .await;
    s.metrics.handshakes_in_progress.dec();
    drop(slot);
    let stream = match result {
        Ok(stream) => stream,
        Err(end) => {
            handshake_failed(&s, handshaking, end, &trace);
            return;
        }
    };

    let progress = trace.snapshot();
    // Formatted once: the events, the session row, the audit records and every request use it.
    let peer_text = peer.to_string();
    let ssl = stream.ssl();
    let identity = progress
        .identity
        .clone()
        .or_else(|| {
            ssl.psk_identity()
                .map(|i| String::from_utf8_lossy(i).into_owned())
        })
        .unwrap_or_default();
    let cipher = ssl
        .current_cipher()
        .map_or("unknown", |c| c.name())
        .to_string();
    let version = ssl.version_str().to_string();
    let null_cipher = cipher.contains("NULL");
    let handshake = handshaking.started.elapsed();
    // Time-ordered (UUID v7: 48 bits of milliseconds, 74 random): each new session row lands at
    // the end of the sessions index, not on a random page of it that the commit must rewrite.
    let session_id = uuid::Uuid::now_v7().simple().to_string();
    s.metrics.handshake_seconds.observe(handshake.as_secs_f64());
    s.metrics
        .handshakes_completed
        .get_or_create(&HandshakeLabel {
            version: version.clone(),
            cipher: cipher.clone(),
        })
        .inc();
    if null_cipher {
        tracing::warn!(%peer, identity = %identity, cipher = %cipher, session_id = %session_id, "!!! NULL cipher connection: this session is NOT ENCRYPTED !!!");
    }
    s.events.emit(Event::TlsHandshakeComplete {
        session_id: session_id.clone(),
        psk_identity: identity.clone(),
        cipher_suite: cipher.clone(),
        tls_version: version.clone(),
        client_addr: peer_text.clone(),
        handshake_ms: handshake.as_secs_f64() * 1000.0,
        null_cipher,
    });
    {
        let (sid, id, p, v, c) = (
            session_id.clone(),
            identity.clone(),
            peer_text.clone(),
            version.clone(),
            cipher.clone(),
        );
        let record = audit::session_connected(&id, &sid, &p, &v, &c);
        s.store.spawn("session connected", move |tx, ctx| {
            db::insert_session(
                tx,
                &db::NewSession {
                    id: &sid,
                    card: Some(&id),
                    peer: &p,
                    tls_version: Some(&v),
                    cipher: Some(&c),
                    state: SessionState::Connected.as_str(),
                },
            )?;
            ctx.audit(tx, vec![to_audit_event(record)])
        });
    }
    let connected = handshaking.complete(
        session_id.clone(),
        TlsInfo {
            psk_identity: identity.clone(),
            tls_version: version.clone(),
            cipher_suite: cipher.clone(),
            null_cipher,
            handshake,
        },
    );
    s.live.lock().unwrap_or_else(|e| e.into_inner()).insert(
        conn_id,
        LiveSession {
            session_id: session_id.clone(),
            psk_identity: identity.clone(),
            peer: peer_text.clone(),
            state: SessionState::Connected,
            tls_version: version,
            cipher_suite: cipher,
            started: warden_store::now_rfc3339(),
            requests: 0,
        },
    );
    s.metrics.sessions_active.inc();
    let _active = GaugeGuard(&s.metrics.sessions_active);

    let ctx = Arc::new(ConnCtx {
        s: s.clone(),
        conn_id,
        session_id,
        psk: trace.psk(),
        identity,
        peer: peer_text,
        started: Instant::now(),
        last_activity_ms: AtomicU64::new(0),
        busy: AtomicBool::new(false),
        has_admin: AtomicBool::new(false),
        lifecycle: Mutex::new(Some(Lifecycle::Connected(connected))),
        counters: Mutex::new(ConnTally::default()),
    });
    let reason = serve_http(&ctx, stream, &mut stop).await;
    release_card(&ctx).await;
    close_session(&ctx, reason);
    s.live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&conn_id);
}

// Implements: O46, O53
fn handshake_failed(s: &State, handshaking: Handshaking, end: HandshakeEnd, trace: &ConnTrace) {
    let peer = handshaking.peer;
    let progress = trace.snapshot();
    let (kind, reason) = match end {
        HandshakeEnd::Ssl(e) => classify(&e, &progress),
        HandshakeEnd::Setup(e) => (FailureKind::Other, e),
        HandshakeEnd::Timeout => (
            FailureKind::Timeout,
            format!(
                "no complete handshake within {} s",
                s.config.handshake_timeout.as_secs()
            ),
        ),
        HandshakeEnd::Evicted => (
            FailureKind::Evicted,
            "too many handshakes at once; this was the oldest".into(),
        ),
        HandshakeEnd::Shutdown => (FailureKind::Shutdown, "server shutting down".into()),
    };
    let closed = handshaking.fail(if kind == FailureKind::Timeout {
        CloseReason::Timeout
    } else if kind == FailureKind::Shutdown {
        CloseReason::ServerShutdown
    } else {
        CloseReason::Error
    });
    s.metrics.handshake_failed(kind.as_str());
    s.metrics.session_ended(closed.reason.as_str());
    match kind {
        FailureKind::PskMismatch => {
            let identity = progress.identity.clone().unwrap_or_default();
            s.metrics.psk_mismatches.inc();
            let (count, identities) = s
                .mismatches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(
                    peer.ip(),
                    &identity,
                    Instant::now(),
                    s.config.errors.psk_mismatch_window,
                );
            let version = match progress.alert_sent.map(|a| a.code) {
                Some(47) => Some("TLSv1.3"),
                Some(20) => Some("TLSv1.2"),
                _ => None,
            };
            tracing::warn!(%peer, identity = %identity, alert = ?progress.alert_sent.map(|a| a.name), count, "PSK mismatch: the identity is known but the key differs");
            s.events.emit(Event::PskMismatch {
                identity: identity.clone(),
                client_addr: peer.to_string(),
                tls_version: version,
                alert_sent: progress.alert_sent,
                count_in_window: count,
            });
            if count == s.config.errors.psk_mismatch_threshold {
                tracing::warn!(source = %peer.ip(), count, identities = ?identities, "repeated PSK mismatches from one source: a card or the key store is misconfigured");
                s.events.emit(Event::PskMismatchThreshold {
                    client_addr: peer.ip().to_string(),
                    count,
                    window_secs: s.config.errors.psk_mismatch_window.as_secs(),
                    identities,
                });
            }
            let record = audit::psk_mismatch(&identity, &peer.to_string(), progress.alert_sent);
            s.store.spawn("audit psk mismatch", move |tx, ctx| {
                ctx.audit(tx, vec![to_audit_event(record)])
            });
        }
        k if k.is_interruption() => {
            let network = progress.client_hello_only() || !progress.client_hello_received;
            if network {
                tracing::info!(%peer, reason = %reason, last = ?progress.last_message_type, "handshake interrupted after the ClientHello or before it: potential network issue");
            } else {
                tracing::warn!(%peer, reason = %reason, last = ?progress.last_message_type, "handshake interrupted mid-way: handshake failure");
            }
            s.events.emit(Event::HandshakeInterrupted {
                client_addr: peer.to_string(),
                reason: format!("{}: {reason}", kind.as_str()),
                partial_state: progress,
                potential_network_issue: network,
            });
        }
        _ => {
            tracing::info!(%peer, kind = kind.as_str(), reason = %reason, identity = ?progress.identity, alert = ?progress.alert_sent.map(|a| a.name), "handshake refused");
            let identity = progress.identity.clone();
            s.events.emit(Event::HandshakeFailed {
                client_addr: peer.to_string(),
                kind: kind.as_str(),
                reason: reason.clone(),
                identity: identity.clone(),
                alert_sent: progress.alert_sent,
                partial_state: progress.clone(),
            });
            if let Some(identity) = identity {
                let record = audit::handshake_refused(&identity, &peer.to_string(), kind.as_str());
                s.store.spawn("audit handshake refusal", move |tx, ctx| {
                    ctx.audit(tx, vec![to_audit_event(record)])
                });
            }
        }
    }
    if kind != FailureKind::Shutdown {
        record_outcome(s, true, kind.as_str());
    }
    let _ = closed;
}

// Implements: O47
fn record_outcome(s: &State, error: bool, error_type: &str) {
    let fired = s.errors.lock().unwrap_or_else(|e| e.into_inner()).record(
        error,
        Instant::now(),
        s.epoch,
        &s.config.errors,
    );
    if let Some((rate, total)) = fired {
        tracing::warn!(
            rate,
            connections = total,
            error_type,
            "high error rate on the OTA server"
        );
        s.events.emit(Event::HighErrorRate {
            error_type: error_type.to_string(),
            rate,
            threshold: s.config.errors.error_rate_threshold,
            window_secs: s.config.errors.error_rate_window.as_secs(),
            connections: total,
        });
    }
}

/// What a connection's request handlers share.
struct ConnCtx {
    s: Arc<State>,
    conn_id: u64,
    session_id: String,
    identity: String,
    /// The key the handshake was made with.
    psk: Option<Arc<Psk>>,
    /// The card's address, `ip:port`.
    peer: String,
    started: Instant,
    last_activity_ms: AtomicU64,
    busy: AtomicBool,
    /// Set by the first admin request on this connection.
    has_admin: AtomicBool,
    lifecycle: Mutex<Option<Lifecycle>>,
    counters: Mutex<ConnTally>,
}

impl ConnCtx {
    /// Whether the key this connection's handshake was made with is still the card's key: a
    /// key removed or replaced since (and reloaded) ends what the connection may do.
    fn key_is_current(&self) -> bool {
        match (&self.psk, self.s.keys.get(&self.identity)) {
            (Some(used), Some(now)) => {
                warden_core::mac::ct_eq(used.expose_secret(), now.expose_secret())
            }
            _ => false,
        }
    }

    fn touch(&self) {
        self.last_activity_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, ConnTally> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// Implements: O23, O29
async fn serve_http(
    ctx: &Arc<ConnCtx>,
    stream: SslStream<TcpStream>,
    stop: &mut watch::Receiver<bool>,
) -> CloseReason {
    let s = &ctx.s;
    let service_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = service_ctx.clone();
        async move { Ok::<_, Infallible>(handle_request(ctx, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(s.config.idle_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let deadline = tokio::time::Instant::now() + s.config.session_timeout;
    let mut forced: Option<CloseReason> = None;
    let mut grace_until: Option<tokio::time::Instant> = None;
    let mut awaiting_results = false;
    // The stop came while the card ran a script: its results were waited for.
    let mut drained = false;
    let result = loop {
        let idle_check = tokio::time::Instant::now()
            + s.config
                .idle_timeout
                .saturating_sub(ctx.idle_for())
                .max(Duration::from_millis(100));
        tokio::select! {
            r = conn.as_mut() => break r,
            () = tokio::time::sleep_until(idle_check), if forced.is_none() => {
                if !ctx.busy.load(Ordering::Relaxed) && ctx.idle_for() >= s.config.idle_timeout {
                    forced = Some(CloseReason::Timeout);
                    conn.as_mut().graceful_shutdown();
                    grace_until = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                }
            }
            () = tokio::time::sleep_until(deadline), if forced.is_none() => {
                forced = Some(CloseReason::Timeout);
                conn.as_mut().graceful_shutdown();
                grace_until = Some(tokio::time::Instant::now() + Duration::from_secs(5));
            }
            _ = stop.changed(), if forced.is_none() => {
                forced = Some(CloseReason::ServerShutdown);
                grace_until = Some(tokio::time::Instant::now() + RESULTS_GRACE);
                // A card with a script out gets the time to report on it (answered with
                // 204: no new script goes out while stopping), so that its results are stored
                // rather than left to a resume or to `outcome_unknown`. The others close now.
                if ctx.counters().in_flight.is_none() {
                    conn.as_mut().graceful_shutdown();
                } else {
                    awaiting_results = true;
                    drained = true;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(50)), if awaiting_results => {
                let c = ctx.counters();
                if c.in_flight.is_none() || c.finished || c.refused_close {
                    drop(c);
                    awaiting_results = false;
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = async { match grace_until { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                break Ok(());
            }
        }
    };
    let counters = ctx.counters();
    // A session the stop cut short after its last results (answered with 204, whatever was
    // still queued) ended because of the stop, not as the card's own end.
    if drained {
        return CloseReason::ServerShutdown;
    }
    if counters.finished {
        return CloseReason::Normal;
    }
    if let Some(reason) = forced {
        return reason;
    }
    if counters.refused_close {
        return CloseReason::Error;
    }
    match result {
        Err(e) if e.is_timeout() => CloseReason::Timeout,
        Err(e) if e.is_parse() || e.is_parse_status() => CloseReason::Error,
        _ => CloseReason::Interrupted,
    }
}

// Implements: O35, O43, O66
fn close_session(ctx: &ConnCtx, reason: CloseReason) {
    let s = &ctx.s;
    let lifecycle = ctx
        .lifecycle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some(lifecycle) = lifecycle else { return };
    let closed: Closed = lifecycle.close(reason);
    let c = ctx.counters();
    s.metrics.session_ended(reason.as_str());
    if reason == CloseReason::Interrupted {
        tracing::warn!(session_id = %ctx.session_id, identity = %ctx.identity, last_command = c.last_command.as_deref().unwrap_or("none"), in_flight = c.in_flight.map_or("none".into(), |s| s.to_string()), "connection interrupted before the admin session ended");
        s.events.emit(Event::ConnectionInterrupted {
            session_id: ctx.session_id.clone(),
            psk_identity: ctx.identity.clone(),
            last_command: c.last_command.clone(),
            in_flight_script: c.in_flight,
        });
    }
    s.events.emit(Event::SessionEnded {
        session_id: ctx.session_id.clone(),
        psk_identity: ctx.identity.clone(),
        duration: closed.duration.as_secs_f64(),
        command_count: c.apdus,
        scripts: c.scripts,
        status: c.last_status.clone().unwrap_or_else(|| "none".into()),
        close_reason: reason.as_str(),
    });
    if reason != CloseReason::ServerShutdown {
        record_outcome(s, reason.is_error(), reason.as_str());
    }
    let record = audit::session_closed(&audit::CloseSummary {
        card: &ctx.identity,
        session_id: &ctx.session_id,
        peer: &ctx.peer,
        reason,
        from: closed.from,
        duration_s: closed.duration.as_secs_f64(),
        scripts: c.scripts,
        apdus: c.apdus,
    });
    let (sid, agent, scripts, apdus) =
        (ctx.session_id.clone(), c.agent.clone(), c.scripts, c.apdus);
    s.store.spawn("session closed", move |tx, jctx| {
        db::update_session(
            tx,
            &sid,
            SessionState::Closed.as_str(),
            agent.as_deref(),
            scripts,
            apdus,
            Some(reason.as_str()),
        )?;
        jctx.audit(tx, vec![to_audit_event(record)])
    });
}

type HttpResponse = Response<Full<Bytes>>;

fn build_response(r: &AdminResponse) -> HttpResponse {
    let mut b = Response::builder().status(r.status);
    for (name, value) in &r.headers {
        b = b.header(*name, value.as_str());
    }
    if r.status == 405 {
        b = b.header("Allow", "POST");
    }
    if r.close {
        b = b.header("Connection", "close");
    }
    b.body(Full::new(Bytes::from(r.body.clone())))
        .unwrap_or_else(|_| plain_error(500))
}

fn plain_error(status: u16) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        header::X_ADMIN_PROTOCOL,
        hyper::header::HeaderValue::from_static(ADMIN_PROTOCOL),
    );
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

async fn handle_request(ctx: Arc<ConnCtx>, req: Request<Incoming>) -> HttpResponse {
    ctx.busy.store(true, Ordering::Relaxed);
    ctx.touch();
    let response = handle_admin(&ctx, req).await;
    if response
        .headers()
        .get(hyper::header::CONNECTION)
        .is_some_and(|v| v == "close")
    {
        // This connection serves no more admin requests: another one may open a session.
        release_card(&ctx).await;
    }
    ctx.touch();
    ctx.busy.store(false, Ordering::Relaxed);
    let status = response.status().as_u16();
    ctx.s.metrics.http_response(status);
    if status >= 400 {
        ctx.counters().refused_close = true;
    }
    response
}

/// Gives up the card's session held by this connection, if it holds it.
async fn release_card(ctx: &ConnCtx) {
    let slot = ctx
        .s
        .cards
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&ctx.identity)
        .cloned();
    if let Some(slot) = slot {
        slot.lock().await.state.release(ctx.conn_id);
    }
}

fn refuse(ctx: &ConnCtx, status: u16, reason: String) -> HttpResponse {
    tracing::info!(session_id = %ctx.session_id, status, reason = %reason, "admin request refused");
    ctx.s.events.emit(Event::RequestRefused {
        session_id: ctx.session_id.clone(),
        status,
        reason,
    });
    plain_error(status)
}

/// Answers a request the admin core refused.
fn refused(ctx: &ConnCtx, refusal: &Refusal) -> HttpResponse {
    tracing::info!(session_id = %ctx.session_id, status = refusal.error.status(), reason = %refusal.error, "admin request refused");
    ctx.s.events.emit(refusal.event(&ctx.session_id));
    build_response(&refusal.response)
}

/// An audit record as the store appends it, in the server's name.
pub(crate) fn to_audit_event(r: AuditRecord) -> NewEvent {
    audit_event(r.actor(), r.action, &r.subject, r.outcome).with_details(r.details)
}

fn to_queued(p: &db::PendingScript) -> Result<QueuedScript, QueueError> {
    let redelivery = match p.redelivery {
        db::StoredRedelivery::Allowed => Redelivery::Allowed,
        db::StoredRedelivery::Forbidden => Redelivery::Forbidden,
    };
    queued_script(p.id, &p.body, p.targeted_application.as_deref(), redelivery)
}

/// Reads the body (bounded in size and time) and the headers into an [`AdminRequest`]; a
/// request that cannot be read is answered here.
async fn read_request(ctx: &ConnCtx, req: Request<Incoming>) -> Result<AdminRequest, HttpResponse> {
    let s = &ctx.s;
    let (parts, body) = req.into_parts();
    // A declared length over the limit is refused at once, not after waiting for the body.
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > s.config.max_body as u64) {
        return Err(refuse(
            ctx,
            413,
            format!("request body exceeds {} bytes", s.config.max_body),
        ));
    }
    let collected = tokio::time::timeout(
        s.config.idle_timeout,
        Limited::new(body, s.config.max_body).collect(),
    )
    .await;
    let body = match collected {
        Err(_) => {
            return Err(refuse(
                ctx,
                408,
                format!(
                    "request body not complete within {} s",
                    s.config.idle_timeout.as_secs()
                ),
            ))
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(refuse(
                ctx,
                413,
                format!("request body exceeds {} bytes", s.config.max_body),
            ))
        }
        Ok(Err(e)) => return Err(refuse(ctx, 400, format!("request body: {e}"))),
        Ok(Ok(c)) => c.to_bytes(),
    };
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        match value.to_str() {
            Ok(v) => headers.push((name.as_str().to_string(), v.to_string())),
            Err(_) => {
                return Err(refuse(
                    ctx,
                    400,
                    format!("header {} is not visible ASCII", name.as_str()),
                ))
            }
        }
    }
    if let Some(authority) = parts.uri.authority() {
        // An absolute-form target (`POST https://host/admin`) names the host itself; the Host
        // header is ignored (RFC 9112, section 3.2.2), so the host check sees the target's.
        headers.retain(|(name, _)| name != "host");
        headers.push(("host".to_string(), authority.as_str().to_string()));
    }
    Ok(AdminRequest {
        method: parts.method.as_str().to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.to_string(), |p| p.as_str().to_string()),
        headers,
        body: body.to_vec(),
    })
}

/// Stores the results a resumed request carries for the script its old session (named in the
/// request's target) had in flight, when the store has one; returns the record to audit.
fn settle_restart_results(
    tx: &rusqlite::Transaction<'_>,
    card: &str,
    request: &AdminRequest,
    config: &SessionConfig,
) -> Result<Option<AuditRecord>, OtaStoreError> {
    let Some(old) = crate::plan::resumed_session(request) else {
        return Ok(None);
    };
    let Some(sent) = db::in_flight_of_session(tx, card, old)? else {
        return Ok(None);
    };
    let Ok(commands) = crate::script::CommandScript::decode(&sent.body) else {
        return Ok(None);
    };
    let Some((write, record)) = crate::plan::results_after_restart(
        card,
        request,
        config,
        crate::plan::SentScript {
            id: crate::admin::ScriptId(sent.id),
            commands: &commands,
            seq: sent.seq,
        },
    ) else {
        return Ok(None);
    };
    store_write(tx, write, &warden_store::now_rfc3339())?;
    Ok(Some(record))
}

/// One of a step's store writes.
fn store_write(
    tx: &rusqlite::Transaction<'_>,
    write: StoreWrite,
    now: &str,
) -> Result<(), OtaStoreError> {
    match write {
        StoreWrite::SessionActive { session_id, agent } => db::update_session(
            tx,
            &session_id,
            SessionState::Active.as_str(),
            Some(&agent),
            0,
            0,
            None,
        )?,
        StoreWrite::Delivered {
            script,
            session_id,
            seq,
        } => db::mark_delivered(tx, script.0, &session_id, seq, now)?,
        StoreWrite::Results {
            script,
            result,
            body,
            exchanges,
            round_trip_us,
        } => {
            let rows: Vec<db::ExchangeRow> = exchanges
                .into_iter()
                .map(|e| db::ExchangeRow {
                    command: e.command,
                    response: e.response,
                    sw: e.sw,
                })
                .collect();
            db::record_results(tx, script.0, result, body.as_deref(), &rows, round_trip_us)?
        }
        StoreWrite::OutcomeUnknown { script } => db::mark_outcome_unknown(tx, script.0)?,
    }
    Ok(())
}

/// Applies a step's store writes and audit records (one job, one transaction) and reads the
/// card's next pending script in the same transaction.
fn apply_step(
    tx: &rusqlite::Transaction<'_>,
    jctx: &crate::store::JobCtx,
    card: &str,
    writes: Vec<StoreWrite>,
    audit: Vec<AuditRecord>,
) -> Result<Option<db::PendingScript>, OtaStoreError> {
    let now = warden_store::now_rfc3339();
    for write in writes {
        store_write(tx, write, &now)?;
    }
    jctx.audit(tx, audit.into_iter().map(to_audit_event).collect())?;
    db::next_pending(tx, card)
}

/// The HTTP adapter around [`crate::plan`]: collect the request, ask the core, run the store
/// job its plan describes, and send and emit what the core hands back after the commit.
async fn handle_admin(ctx: &Arc<ConnCtx>, req: Request<Incoming>) -> HttpResponse {
    let s = &ctx.s;
    if !ctx.key_is_current() {
        tracing::warn!(session_id = %ctx.session_id, identity = %ctx.identity, "the card's key was removed or replaced after this connection's handshake; closing it");
        return refuse(
            ctx,
            403,
            "the card's key was removed or replaced after this connection's handshake".into(),
        );
    }
    let request = match read_request(ctx, req).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    ctx.counters().requests += 1;
    let mut config = match SessionConfig::new(s.config.admin_path.clone(), ctx.session_id.clone()) {
        Ok(c) => c,
        Err(e) => return refuse(ctx, 500, report(&e)),
    };
    config.expected_host = s.config.expected_host.clone();
    config.max_body = s.config.max_body;

    let slot_arc = {
        let mut cards = s.cards.lock().unwrap_or_else(|e| e.into_inner());
        cards
            .entry(ctx.identity.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(CardSlot::new())))
            .clone()
    };
    let mut slot = slot_arc.lock().await;
    slot.last_used = Instant::now();
    let conn = Connection {
        conn_id: ctx.conn_id,
        session_id: &ctx.session_id,
        card: &ctx.identity,
        peer: &ctx.peer,
        first_request: !ctx.has_admin.swap(true, Ordering::Relaxed),
    };
    let turn = match slot.state.begin(&conn, request.is_resume(), &config) {
        Ok(t) => t,
        Err(refusal) => return refused(ctx, &refusal),
    };
    let fresh = turn.begin() == Begin::Fresh;
    if fresh {
        slot.next = None;
    }
    // The next script: from the last step's transaction, or read now (settling scripts a lost
    // session left in flight first, when this is a fresh session).
    let pending = match slot.next.take() {
        Some(NextScript::Read(p)) => p,
        Some(NextScript::Coming(job)) => match job.outcome().await {
            Ok(p) => p,
            Err(e) => {
                // The last step's writes did not run: what the card was sent (scripts that may
                // run twice) is not stored, and is sent again in its next session. This one
                // ends here.
                tracing::error!(session_id = %ctx.session_id, error = %e, "store write failed after the response left; ending the session");
                return refuse(ctx, 503, "the server could not store the last step".into());
            }
        },
        None => {
            let (card, sid) = (ctx.identity.clone(), ctx.session_id.clone());
            // A card resuming after a restart with the results of the script its old session
            // had in flight: they are stored like results in a live session (and committed
            // before the answer acknowledges them), not dropped.
            let restart_results =
                (fresh && request.is_resume() && request.script_status().is_some())
                    .then(|| (request.clone(), config.clone()));
            let durable = restart_results.is_some();
            let job = move |tx: &rusqlite::Transaction<'_>, jctx: &crate::store::JobCtx<'_>| {
                if let Some((request, config)) = &restart_results {
                    if let Some(settled) = settle_restart_results(tx, &card, request, config)? {
                        jctx.audit(tx, vec![to_audit_event(settled)])?;
                    }
                }
                if fresh {
                    let r = db::recover_in_flight(tx, &card)?;
                    if let Some(record) =
                        audit::scripts_recovered(&card, &sid, &r.requeued, &r.unknown)
                    {
                        jctx.audit(tx, vec![to_audit_event(record)])?;
                    }
                }
                db::next_pending(tx, &card)
            };
            // Otherwise reads, and settling what a lost session left: a crash before this
            // commits settles the same scripts again next time, so the answer need not wait.
            let read = if durable {
                s.store.call(job).await
            } else {
                s.store.call_before_commit(job).await
            };
            match read {
                Ok(p) => p,
                Err(e) => return refuse(ctx, 503, report(&e)),
            }
        }
    };
    let queued = match pending.as_ref().map(to_queued).transpose() {
        // While stopping, the session is finished (204) instead of given a new script.
        Ok(_) if s.stopping.load(Ordering::Relaxed) => None,
        Ok(q) => q,
        Err(e) => {
            tracing::error!(card = %ctx.identity, error = %Report(&e), "cannot deliver a queued script");
            return refuse(ctx, 500, report(&e));
        }
    };
    let plan = match slot
        .state
        .step(turn, &conn, &request, queued.as_ref(), Instant::now())
    {
        Ok(plan) => plan,
        Err(refusal) => {
            slot.next = Some(NextScript::Read(pending));
            return refused(ctx, &refusal);
        }
    };
    let Plan {
        durability,
        writes,
        audit,
        after,
    } = plan;
    let card = ctx.identity.clone();
    let job = move |tx: &rusqlite::Transaction<'_>, jctx: &crate::store::JobCtx<'_>| {
        apply_step(tx, jctx, &card, writes, audit)
    };
    let next = match durability {
        Durability::BeforeResponse => s.store.call(job).await.map(NextScript::Read),
        Durability::AfterResponse => s.store.submit_before_commit(job).map(NextScript::Coming),
    };
    match next {
        Ok(next) => slot.next = Some(next),
        Err(StoreFailure(e)) => {
            // Nothing was stored: the plan is dropped, the session stays where it was.
            drop(after);
            slot.next = None;
            tracing::error!(session_id = %ctx.session_id, error = %e, "store write failed; request refused");
            return refuse(ctx, 503, "the server could not store the step".into());
        }
    }
    let done = slot
        .state
        .commit(after, &mut ctx.counters(), Instant::now());
    let response = emit_committed(ctx, done);
    build_response(&response)
}

/// After the commit: metrics, operator warnings, the connection's life cycle, events; returns
/// the response to send.
fn emit_committed(ctx: &ConnCtx, done: Committed) -> AdminResponse {
    let s = &ctx.s;
    let m = &done.metrics;
    s.metrics.scripts_delivered.inc_by(m.scripts_delivered);
    s.metrics.apdus_exchanged.inc_by(m.apdus_exchanged);
    for result in &m.scripts_completed {
        s.metrics
            .scripts_completed
            .get_or_create(&crate::metrics::StatusLabel {
                status: (*result).into(),
            })
            .inc();
    }
    for n in &done.notices {
        tracing::warn!(card = %ctx.identity, script = n.script(), "{}", n.message());
    }
    if let Some(activation) = &done.activation {
        let mut lc = ctx.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = lc.take() {
            let (l, first) = l.activate(&activation.agent);
            if first {
                s.events
                    .emit(activation.event(&ctx.session_id, &ctx.identity));
            }
            *lc = Some(l);
        }
    }
    for event in done.events {
        s.events.emit(event);
    }
    let mut live = s.live.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = live.get_mut(&ctx.conn_id) {
        l.state = SessionState::Active;
        l.requests += 1;
    }
    done.response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ErrorPolicy;

    /// Seed 003's error-rate monitor: `high_error_rate` once the share of failed connections in
    /// the window reaches the threshold, not before the minimum number of connections, and not
    /// again until a window has passed.
    /// Verifies: O47, O82
    #[test]
    fn the_error_rate_alarm_fires_at_the_threshold_once_per_window() {
        let cfg = ErrorPolicy {
            error_rate_threshold: 0.5,
            error_rate_window: Duration::from_secs(60),
            error_rate_min_connections: 4,
            ..ErrorPolicy::default()
        };
        let epoch = Instant::now();
        let at = |secs: u64| epoch + Duration::from_secs(secs);
        let mut rate = ErrorRate::default();
        // Two successes, then failures: 1 of 3 and 2 of 4 connections failed.
        assert_eq!(rate.record(false, at(0), epoch, &cfg), None);
        assert_eq!(rate.record(false, at(1), epoch, &cfg), None);
        assert_eq!(
            rate.record(true, at(2), epoch, &cfg),
            None,
            "below the minimum"
        );
        assert_eq!(rate.record(true, at(3), epoch, &cfg), Some((0.5, 4)));
        // Within the same window the alarm stays quiet.
        assert_eq!(rate.record(true, at(4), epoch, &cfg), None);
        // A window later, the old outcomes have left it: 4 failures of 4.
        for s in 70..73 {
            assert_eq!(rate.record(true, at(s), epoch, &cfg), None, "{s}");
        }
        assert_eq!(rate.record(true, at(73), epoch, &cfg), Some((1.0, 4)));
        // Below the threshold: 1 failure in 4.
        let mut rate = ErrorRate::default();
        for s in 0..3 {
            rate.record(false, at(s), epoch, &cfg);
        }
        assert_eq!(rate.record(true, at(3), epoch, &cfg), None);
    }

    /// PSK mismatches are counted per source address within the window, with the identities.
    /// Verifies: O45
    #[test]
    fn psk_mismatches_are_counted_per_source_within_the_window() {
        let window = Duration::from_secs(60);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut tracker = MismatchTracker::default();
        assert_eq!(tracker.record(a, "card-2", t0, window).0, 1);
        assert_eq!(tracker.record(b, "card-1", t0, window).0, 1);
        let (count, ids) = tracker.record(a, "card-1", t0 + Duration::from_secs(30), window);
        assert_eq!(
            (count, ids),
            (2, vec!["card-1".to_string(), "card-2".to_string()])
        );
        // The first mismatch from `a` has left the window.
        let (count, ids) = tracker.record(a, "card-1", t0 + Duration::from_secs(61), window);
        assert_eq!((count, ids), (2, vec!["card-1".to_string()]));
    }
}
