//! The load generator behind `warden ota bench`: full sessions, APDU round trips in one
//! session, concurrent idle sessions, and handshake latency (also against `openssl s_server`).
//!
//! Every run is bounded in count and time and talks only to the address it is given (use a
//! loopback address). Results are plain numbers; `docs/BENCHMARKS.md` records them with the
//! exact commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::keys::Psk;
use crate::simulator::{
    connect, run_many, run_session, CardConfig, GpCard, SessionReport, SimError, TlsConn,
};
use crate::tls::ClientTlsOptions;
use warden_core::report::report;

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
        Self {
            count: samples.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: ms(*samples.last().expect("not empty")),
            mean_ms: samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64,
        }
    }
}

/// Result of a full-session run.
#[derive(Debug, Clone, Serialize)]
pub struct SessionsResult {
    pub sessions_ok: usize,
    pub sessions_failed: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub sessions_per_sec: f64,
    pub scripts: usize,
    pub apdus: usize,
    pub session_latency: Latency,
    pub handshake_latency: Latency,
    /// Requests carrying a script's results, sent to answered (next script or 204).
    pub round_trip_latency: Option<Latency>,
}

/// `sessions` full sessions over `cards` identities `<prefix><i>`, `concurrency` at a time, one
/// session per card at a time (so at most `min(concurrency, cards)` run at once; give at least
/// as many cards as the concurrency you want).
pub async fn sessions(
    server: SocketAddr,
    prefix: &str,
    cards: usize,
    psk: Arc<Psk>,
    sessions: usize,
    concurrency: usize,
    tls: ClientTlsOptions,
) -> SessionsResult {
    let identities: Vec<(String, Arc<Psk>)> = (0..cards.max(1))
        .map(|i| (format!("{prefix}{i}"), psk.clone()))
        .collect();
    let mut base = CardConfig::new(server, identities[0].0.clone(), psk);
    base.tls = tls;
    let started = Instant::now();
    let results = run_many(base, identities, sessions, concurrency).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut ok = Vec::new();
    let mut failed = 0;
    let mut first_error = None;
    for r in results {
        match r {
            Ok(r) => ok.push(r),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| report(&e));
            }
        }
    }
    SessionsResult {
        sessions_ok: ok.len(),
        sessions_failed: failed,
        first_error,
        seconds,
        sessions_per_sec: ok.len() as f64 / seconds.max(1e-9),
        scripts: ok.iter().map(|r| r.scripts.len()).sum(),
        apdus: ok.iter().map(|r| r.apdus()).sum(),
        session_latency: Latency::of(ok.iter().map(|r| r.duration).collect()),
        handshake_latency: Latency::of(ok.iter().map(|r| r.handshake).collect()),
        round_trip_latency: round_trips(ok.iter()),
    }
}

fn round_trips<'a>(reports: impl Iterator<Item = &'a SessionReport>) -> Option<Latency> {
    let samples: Vec<Duration> = reports
        .flat_map(|r| r.result_round_trips.iter().copied())
        .collect();
    (!samples.is_empty()).then(|| Latency::of(samples))
}

/// CPU time (user + system, all threads) a process has used so far, from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| std::io::Error::other("unexpected /proc stat format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| -> std::io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| std::io::Error::other("unexpected /proc stat format"))
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
        .unwrap_or(100) as u64;
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_micros(total * 1_000_000 / hz))
}

/// Result of a campaign: every card one full session, and what it cost the server.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignResult {
    pub cards: usize,
    pub concurrency: usize,
    pub sessions: SessionsResult,
    /// CPU time the server process used during the campaign (all threads), when its pid was
    /// given.
    pub server_cpu_seconds: Option<f64>,
    /// Server CPU per full session, in milliseconds.
    pub server_cpu_ms_per_session: Option<f64>,
    /// Server CPU time / wall time: the share of one core the server used.
    pub server_cpu_share: Option<f64>,
    /// This process's CPU (the load generator).
    pub client_cpu_seconds: Option<f64>,
}

/// A campaign: `cards` identities `<prefix><i>`, each running one full session (whatever is
/// queued for it, e.g. three one-APDU scripts), `concurrency` at a time. With `server_pid`, the
/// server's CPU time is read from `/proc` before and after, so the figure excludes this load
/// generator's own cost.
pub async fn campaign(
    server: SocketAddr,
    prefix: &str,
    cards: usize,
    psk: Arc<Psk>,
    concurrency: usize,
    tls: ClientTlsOptions,
    server_pid: Option<u32>,
) -> CampaignResult {
    let me = std::process::id();
    let before = server_pid.and_then(|pid| process_cpu(pid).ok());
    let client_before = process_cpu(me).ok();
    let sessions = sessions(server, prefix, cards, psk, cards, concurrency, tls).await;
    let after = server_pid.and_then(|pid| process_cpu(pid).ok());
    let client_after = process_cpu(me).ok();
    let server_cpu = before
        .zip(after)
        .map(|(b, a)| a.saturating_sub(b).as_secs_f64());
    CampaignResult {
        cards,
        concurrency,
        server_cpu_seconds: server_cpu,
        server_cpu_ms_per_session: server_cpu
            .map(|cpu| cpu * 1000.0 / sessions.sessions_ok.max(1) as f64),
        server_cpu_share: server_cpu.map(|cpu| cpu / sessions.seconds.max(1e-9)),
        client_cpu_seconds: client_before
            .zip(client_after)
            .map(|(b, a)| a.saturating_sub(b).as_secs_f64()),
        sessions,
    }
}

/// Result of one long session.
#[derive(Debug, Clone, Serialize)]
pub struct ApdusResult {
    pub scripts: usize,
    pub apdus: usize,
    pub seconds: f64,
    pub scripts_per_sec: f64,
    pub apdus_per_sec: f64,
    pub round_trip_latency: Option<Latency>,
}

/// One session that runs whatever is queued for `identity` (queue the scripts first).
pub async fn apdus(cfg: CardConfig) -> Result<ApdusResult, SimError> {
    let mut card = GpCard::new();
    let r = run_session(&cfg, &mut card).await?;
    let seconds = r.duration.as_secs_f64();
    Ok(ApdusResult {
        scripts: r.scripts.len(),
        apdus: r.apdus(),
        seconds,
        scripts_per_sec: r.scripts.len() as f64 / seconds.max(1e-9),
        apdus_per_sec: r.apdus() as f64 / seconds.max(1e-9),
        round_trip_latency: round_trips(std::iter::once(&r)),
    })
}

/// Result of the handshake run.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeResult {
    pub ok: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub handshakes_per_sec: f64,
    pub latency: Latency,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
}

/// `count` connections that complete a PSK-TLS handshake and close, `concurrency` at a time.
pub async fn handshakes(
    server: SocketAddr,
    identity: &str,
    psk: Arc<Psk>,
    count: usize,
    concurrency: usize,
    tls: ClientTlsOptions,
) -> HandshakeResult {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..count {
        let permit = sem.clone().acquire_owned().await.expect("open");
        let (identity, psk, tls) = (identity.to_string(), psk.clone(), tls.clone());
        set.spawn(async move {
            let _permit = permit;
            let r = tokio::time::timeout(
                Duration::from_secs(30),
                connect(server, &identity, psk, &tls),
            )
            .await
            .map_err(|_| SimError::Timeout(Duration::from_secs(30)))
            .and_then(|r| r);
            r.map(|c: TlsConn| {
                let out = (c.handshake, c.version.clone(), c.cipher.clone());
                drop(c);
                out
            })
        });
    }
    let mut samples = Vec::new();
    let mut failed = 0;
    let mut first_error = None;
    let mut info = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok((d, v, c))) => {
                samples.push(d);
                info.get_or_insert((v, c));
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| report(&e));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| report(&e));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    HandshakeResult {
        ok: samples.len(),
        failed,
        first_error,
        seconds,
        handshakes_per_sec: samples.len() as f64 / seconds.max(1e-9),
        latency: Latency::of(samples),
        tls_version: info.as_ref().map(|i| i.0.clone()),
        cipher: info.map(|i| i.1),
    }
}

/// Result of the idle run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub requested: usize,
    pub established: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub connect_seconds: f64,
    pub still_open_after_hold: usize,
    pub hold_seconds: f64,
}

/// Opens `count` PSK-TLS sessions (identities `<prefix><i>`), holds them idle for `hold`,
/// checks they are still open, then closes them. `on_held` runs while they are held (the
/// caller measures the server's memory there).
#[allow(clippy::too_many_arguments)]
pub async fn idle(
    server: SocketAddr,
    prefix: &str,
    cards: usize,
    psk: Arc<Psk>,
    count: usize,
    concurrency: usize,
    hold: Duration,
    on_held: impl std::future::Future<Output = ()>,
) -> IdleResult {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let started = Instant::now();
    let tls = ClientTlsOptions::default();
    for i in 0..count {
        let permit = sem.clone().acquire_owned().await.expect("open");
        let identity = format!("{prefix}{}", i % cards.max(1));
        let (psk, tls) = (psk.clone(), tls.clone());
        set.spawn(async move {
            let _permit = permit;
            tokio::time::timeout(
                Duration::from_secs(60),
                connect(server, &identity, psk, &tls),
            )
            .await
            .map_err(|_| SimError::Timeout(Duration::from_secs(60)))
            .and_then(|r| r)
        });
    }
    let mut conns = Vec::with_capacity(count);
    let mut failed = 0;
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| report(&e));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| report(&e));
            }
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let established = conns.len();
    tokio::time::sleep(hold).await;
    on_held.await;
    // A connection the server closed reads EOF at once; an open one would block.
    let mut still_open = 0;
    for c in &mut conns {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(1), c.stream.read(&mut b))
            .await
            .is_err()
        {
            still_open += 1;
        }
    }
    drop(conns);
    IdleResult {
        requested: count,
        established,
        failed,
        first_error,
        connect_seconds,
        still_open_after_hold: still_open,
        hold_seconds: hold.as_secs_f64(),
    }
}
