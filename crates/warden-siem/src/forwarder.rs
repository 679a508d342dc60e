//! The forwarder: one Tokio task that keeps a mutual-TLS connection to the SIEM and moves the
//! spool onto it — in delivery order, confirming (removing) messages once the connection has
//! outlived them by `confirm_after`, and reconnecting with backoff when anything goes wrong.
//!
//! ```text
//!   ┌────────────► connect (TLS, verified) ──fail──► backoff (exp. + jitter, capped) ─┐
//!   │                   │ ok                                                           │
//!   │                   ▼                                                              │
//!   │   ┌─► confirm due messages (DELETE) ─► fetch next batch after the cursor ─► write + flush
//!   │   │                                                                           │
//!   │   └── wake: confirm deadline / poll / notify() / server closed or alerted ◄───┘
//!   └──────────────────────────── on close, error or store failure ◄────────────────┘
//! ```
//!
//! The SQLite work is synchronous and runs on Tokio's blocking pool, with the forwarder's own
//! database connection; callers never wait for the forwarder. After a reconnect the cursor
//! starts again from the spool's beginning, so every unconfirmed message is written again, with
//! the same bytes (see [`crate::message`]); the receiver drops repeats by `warden_seq`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use warden_store::spool::{now_ms, DeliveryCursor, Spool, SpoolError};
use warden_store::Database;

use crate::config::{BackoffPolicy, DeliveryTuning, MessageIdentity, SiemSettings};
use crate::delivery::{Backoff, InFlight};
use crate::message::frame_row;
use crate::tls::{
    classify_close, CloseEvent, FailureKind, LinkError, Stage, TlsClient, TlsConnection,
};
use warden_core::report::{report, Report};

/// What the forwarder has done so far; read with [`ForwarderHandle::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwarderStatus {
    /// A verified TLS connection is up.
    pub connected: bool,
    /// Completed handshakes.
    pub connections: u64,
    /// Messages written, re-sends included.
    pub written: u64,
    /// Messages confirmed and removed from the spool.
    pub confirmed: u64,
    /// Failed connection attempts and dropped connections.
    pub failures: u64,
    /// The most recent connection failure.
    pub last_error: Option<(FailureKind, String)>,
    /// The most recent spool (database) failure.
    pub last_store_error: Option<String>,
}

/// The running forwarder. Dropping the handle stops the task at once (messages not yet
/// confirmed stay in the spool); [`ForwarderHandle::shutdown`] stops it gracefully.
pub struct ForwarderHandle {
    notify: Arc<Notify>,
    stop: watch::Sender<bool>,
    status: Arc<Mutex<ForwarderStatus>>,
    task: Option<JoinHandle<()>>,
}

impl ForwarderHandle {
    /// Wakes the forwarder after the caller committed new spool rows (otherwise it looks every
    /// `delivery.poll_ms`).
    pub fn notify(&self) {
        self.notify.notify_one();
    }

    pub fn status(&self) -> ForwarderStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops fetching, waits up to `timeout` for written messages to be confirmed, closes the
    /// TLS session cleanly, and ends the task.
    pub async fn shutdown(mut self, timeout: Duration) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(timeout, task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Stops the task immediately, like a crash would (for tests of restarts).
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for ForwarderHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

enum Exit {
    Stopped,
    Link(LinkError),
    Store(SpoolError),
}

/// Starts the forwarder on the current Tokio runtime. `db` is a connection of its own to the
/// warden database (the producers keep theirs).
pub fn spawn(db: Database, settings: &SiemSettings, client: TlsClient) -> ForwarderHandle {
    spawn_with(
        db,
        Spool::new(settings.spool),
        client,
        settings.identity.clone(),
        settings.delivery,
        settings.backoff,
    )
}

/// [`spawn`] with each part given separately.
pub fn spawn_with(
    db: Database,
    spool: Spool,
    client: TlsClient,
    identity: MessageIdentity,
    tuning: DeliveryTuning,
    backoff: BackoffPolicy,
) -> ForwarderHandle {
    let notify = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let status = Arc::new(Mutex::new(ForwarderStatus::default()));
    let forwarder = Forwarder {
        db: Arc::new(Mutex::new(db)),
        spool,
        client,
        identity,
        tuning,
        backoff,
        notify: notify.clone(),
        stop: stop_rx,
        status: status.clone(),
    };
    let task = tokio::spawn(forwarder.run());
    ForwarderHandle {
        notify,
        stop: stop_tx,
        status,
        task: Some(task),
    }
}

struct Forwarder {
    db: Arc<Mutex<Database>>,
    spool: Spool,
    client: TlsClient,
    identity: MessageIdentity,
    tuning: DeliveryTuning,
    backoff: BackoffPolicy,
    notify: Arc<Notify>,
    stop: watch::Receiver<bool>,
    status: Arc<Mutex<ForwarderStatus>>,
}

fn random_u64() -> u64 {
    u64::from_le_bytes(warden_core::rand::array::<8>())
}

impl Forwarder {
    fn update(&self, f: impl FnOnce(&mut ForwarderStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Spool, &Connection) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let db = self.db.clone();
        let spool = self.spool;
        tokio::task::spawn_blocking(move || {
            let guard = db.lock().map_err(|_| {
                SpoolError::Corrupt("the spool connection lock was poisoned".into())
            })?;
            f(&spool, guard.conn())
        })
        .await
        .map_err(|e| SpoolError::Corrupt(format!("the spool task failed: {e}")))?
    }

    async fn run(mut self) {
        let mut backoff = Backoff::new(self.backoff);
        loop {
            if *self.stop.borrow() {
                return;
            }
            let connected = tokio::select! {
                r = self.client.connect() => r,
                _ = self.stop.changed() => return,
            };
            match connected {
                Ok(stream) => {
                    self.update(|s| {
                        s.connected = true;
                        s.connections += 1;
                    });
                    tracing::info!(host = %self.client.endpoint().host, "SIEM connection up");
                    let exit = self.serve(stream, &mut backoff).await;
                    self.update(|s| s.connected = false);
                    match exit {
                        Exit::Stopped => return,
                        Exit::Link(err) => self.failed(&err),
                        Exit::Store(err) => {
                            tracing::warn!(error = %Report(&err), "SIEM spool error; reconnecting");
                            self.update(|s| s.last_store_error = Some(report(&err)));
                        }
                    }
                }
                Err(err) => self.failed(&err),
            }
            let delay = backoff.next_delay(random_u64());
            tracing::debug!(
                ?delay,
                attempt = backoff.attempt(),
                "SIEM reconnect backoff"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.changed() => return,
            }
        }
    }

    fn failed(&self, err: &LinkError) {
        tracing::warn!(error = %Report(err), hint = err.hint(), "SIEM connection failed");
        self.update(|s| {
            s.failures += 1;
            s.last_error = Some((err.kind(), report(err)));
        });
    }

    async fn serve(&mut self, stream: TlsConnection, backoff: &mut Backoff) -> Exit {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let handshake_at = Instant::now();
        let tuning = self.tuning;
        let write_timeout = self.client.timeouts().write;
        let mut window = InFlight::new(tuning.confirm_after);
        let mut cursor = DeliveryCursor::default();
        let mut confirmed_any = false;
        let mut draining = *self.stop.borrow();
        let mut rbuf = [0u8; 512];
        let mut next_overflow_check = Instant::now();
        loop {
            if window.next_deadline().is_some_and(|d| d <= Instant::now()) {
                // "The server has not closed the connection" must hold now, not just when we
                // last looked: one read attempt that does not wait.
                let soon = handshake_at.elapsed() < tuning.confirm_after;
                match tokio::time::timeout(Duration::ZERO, rd.read(&mut rbuf)).await {
                    Ok(Ok(0)) => {
                        return Exit::Link(classify_close(CloseEvent::Eof, soon, confirmed_any))
                    }
                    Ok(Err(e)) => {
                        return Exit::Link(classify_close(
                            CloseEvent::Error(e),
                            soon,
                            confirmed_any,
                        ))
                    }
                    Ok(Ok(n)) => tracing::debug!(bytes = n, "ignoring data sent by the SIEM"),
                    Err(_) => {}
                }
            }
            let due = window.take_confirmed(Instant::now());
            if !due.is_empty() {
                let n = due.len() as u64;
                if let Err(e) = self.with_db(move |s, c| s.confirm(c, &due)).await {
                    return Exit::Store(e);
                }
                confirmed_any = true;
                backoff.reset();
                self.update(|s| s.confirmed += n);
            }
            if draining && window.is_empty() {
                let _ = tokio::time::timeout(write_timeout, wr.shutdown()).await;
                return Exit::Stopped;
            }
            if !draining && window.len() < tuning.max_in_flight {
                let limit = tuning.batch.min(tuning.max_in_flight - window.len());
                let check_overflow = Instant::now() >= next_overflow_check;
                if check_overflow {
                    next_overflow_check = Instant::now() + tuning.poll;
                }
                let after = cursor;
                let rows = match self
                    .with_db(move |s, c| {
                        if check_overflow {
                            match s.take_overflow_report(c, now_ms()) {
                                Ok(Some(r)) => tracing::warn!(
                                    dropped = r.dropped,
                                    first = r.first_seq,
                                    last = r.last_seq,
                                    "SIEM spool dropped heartbeats"
                                ),
                                Ok(None) => {}
                                // Delivery goes on; the report is tried again next time.
                                Err(e) => tracing::warn!(error = %Report(&e), "cannot queue the spool-overflow report"),
                            }
                        }
                        s.next_batch(c, &after, limit)
                    })
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => return Exit::Store(e),
                };
                if !rows.is_empty() {
                    let mut buf = Vec::with_capacity(rows.len() * 400);
                    let mut seqs = Vec::with_capacity(rows.len());
                    for row in &rows {
                        buf.extend_from_slice(&frame_row(
                            row,
                            &self.identity,
                            tuning.max_message_bytes,
                        ));
                        cursor.advance(row.kind, row.seq);
                        seqs.push(row.seq);
                    }
                    let written = tokio::time::timeout(write_timeout, async {
                        wr.write_all(&buf).await?;
                        wr.flush().await
                    })
                    .await;
                    match written {
                        Err(_) => {
                            return Exit::Link(LinkError::Timeout {
                                stage: Stage::Write,
                                after: write_timeout,
                            })
                        }
                        Ok(Err(e)) => {
                            // An alert or close explains a failed write better than EPIPE does.
                            let soon = handshake_at.elapsed() < tuning.confirm_after;
                            let read = tokio::time::timeout(
                                Duration::from_millis(500),
                                rd.read(&mut rbuf),
                            )
                            .await;
                            return Exit::Link(match read {
                                Ok(Ok(0)) => classify_close(CloseEvent::Eof, soon, confirmed_any),
                                Ok(Err(re)) => {
                                    classify_close(CloseEvent::Error(re), soon, confirmed_any)
                                }
                                _ => classify_close(CloseEvent::Error(e), soon, confirmed_any),
                            });
                        }
                        Ok(Ok(())) => {}
                    }
                    let n = seqs.len() as u64;
                    window.written(seqs.iter().copied(), Instant::now());
                    self.update(|s| s.written += n);
                    if let Err(e) = self
                        .with_db(move |s, c| s.mark_sent(c, &seqs, now_ms()))
                        .await
                    {
                        return Exit::Store(e);
                    }
                    continue;
                }
            }
            let far = Instant::now() + tuning.poll;
            let wake = window.next_deadline().map_or(far, |d| d.min(far));
            tokio::select! {
                biased;
                r = rd.read(&mut rbuf) => {
                    let soon = handshake_at.elapsed() < tuning.confirm_after;
                    match r {
                        Ok(0) => return Exit::Link(classify_close(CloseEvent::Eof, soon, confirmed_any)),
                        Ok(n) => tracing::debug!(bytes = n, "ignoring data sent by the SIEM"),
                        Err(e) => return Exit::Link(classify_close(CloseEvent::Error(e), soon, confirmed_any)),
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = self.notify.notified(), if !draining => {}
                _ = self.stop.changed(), if !draining => draining = true,
            }
        }
    }
}
