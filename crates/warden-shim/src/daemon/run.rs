//! The forwarding loop: one thread polls both serial ports, feeds the state machine, and
//! performs its actions. Nothing on this path waits for the disk: the recorder, the tamper
//! sources and the control socket run on their own threads and wake the loop through a channel.
//!
//! Everything that must be kept (transitions, sessions, alerts, heartbeats, port locks) goes
//! to the [`ShimHost`] — [`crate::host::StoreHost`] writes it to the audit chain and the SIEM
//! spool. If the host cannot store something, that counts as storage exhausted. A reset is
//! the host's decision too: it settles the administrator's stored request, refusing while a
//! tamper source still reports tamper.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;
use warden_core::report::{report, Report};
use warden_core::secret::Key32;

use super::control::{self, ControlReply, ControlRequest, Pending};
use super::recorder::{ClosedRecording, Recorder, RecorderLimits, RecorderReport};
use super::tamper;
use crate::config::ShimConfig;
use crate::machine::{Action, AuthDecision, EndReason, Input, MachineConfig, Shim, StateName};
use crate::recording::{Direction, RecordingMetadata};
use crate::serial::Port;

const TECH: Token = Token(0);
const DEVICE: Token = Token(1);
const WAKE: Token = Token(2);
/// How often a lost port is tried again (USB serial adapters unplugged and plugged back).
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);
/// How often DCD is sampled on ports configured to end sessions on carrier loss.
const CARRIER_POLL: Duration = Duration::from_millis(200);
/// How long a stopping daemon waits for the recorder to close the session file.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What the daemon reports for keeping (audit chain, SIEM spool).
#[derive(Debug)]
pub enum ShimEvent<'a> {
    Started {
        config_sha256: &'a str,
    },
    Transition {
        from: StateName,
        to: StateName,
        reason: &'a str,
    },
    SessionOpened {
        session_id: Uuid,
        technician_id: &'a str,
        file: &'a Path,
    },
    SessionClosed {
        session_id: Uuid,
        technician_id: &'a str,
        recording: &'a ClosedRecording,
        reason: &'a str,
    },
    Alert {
        source: &'a str,
        file: &'a Path,
    },
    /// An optional tamper source (`tamper.gpio.optional`) could not be set up at start.
    TamperUnavailable {
        source: &'a str,
        reason: &'a str,
    },
    Heartbeat {
        counter: u64,
        state: StateName,
    },
    PortLock {
        locked: bool,
    },
    PortLost {
        port: &'a str,
        error: &'a str,
    },
    Stopping,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The audit trail or spool cannot take more: the shim stops forwarding.
    #[error("storage exhausted: {0}")]
    StorageExhausted(String),
    #[error("{0}")]
    Failed(String),
}

/// What the daemon needs from the rest of warden: authentication and a place to keep events.
pub trait ShimHost {
    /// The persisted state at start: (port locked, emergency stop in force).
    fn persisted_state(&mut self) -> Result<(bool, bool), HostError>;
    /// Checks a technician's code (TOTP, replay, lockout) and keeps the outcome.
    fn authenticate(&mut self, technician_id: &str, code: &str) -> Result<AuthDecision, HostError>;
    /// Keeps an event.
    fn record(&mut self, event: ShimEvent<'_>) -> Result<(), HostError>;
    /// Settles reset request `request` (stored by an administrator) in state `from`, with the
    /// tamper sources that still report tamper; the persisted state and the event are kept
    /// together. Only `Done` returns the shim to IDLE.
    fn reset(
        &mut self,
        request: u64,
        from: StateName,
        tamper_active: &[String],
    ) -> Result<ResetDecision, HostError>;
}

pub use warden_store::shim::ResetDecision;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Port(#[from] crate::serial::PortError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Tamper(#[from] tamper::TamperSetupError),
    #[error("poll")]
    Poll(#[source] std::io::Error),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Where the daemon keeps its files (seed 000's storage layout).
#[derive(Debug, Clone)]
pub struct DaemonPaths {
    pub sessions: PathBuf,
    pub heartbeats: PathBuf,
    pub alerts: PathBuf,
}

/// Cross-thread wake-ups.
enum Wake {
    Tamper(String),
    Recorder(RecorderReport),
    Control(Pending),
    Shutdown,
}

/// Stops a running daemon from another thread (tests, the demo, benchmarks): the session is
/// closed cleanly, as on SIGTERM.
#[derive(Clone)]
pub struct ShutdownHandle {
    tx: Sender<Wake>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.tx.send(Wake::Shutdown);
        let _ = self.waker.wake();
    }
}

/// Inputs the loop produces for itself while performing actions.
enum Followup {
    Auth(AuthDecision),
    StorageExhausted(String),
    RecordingClosed,
}

struct Session {
    id: Uuid,
    technician_id: String,
}

// Implements: S21
/// A started daemon's state.
pub struct Daemon<H: ShimHost> {
    config: ShimConfig,
    machine: MachineConfig,
    config_sha256: String,
    paths: DaemonPaths,
    recordings_key: Key32,
    host: H,
    shim: Option<Shim>,
    epoch: Instant,
    tech: Option<Port>,
    device: Option<Port>,
    tech_out: VecDeque<u8>,
    device_out: VecDeque<u8>,
    /// Whether writable events are asked for on a port: only while its output queue is not
    /// empty, so a write does not wake the loop again for nothing.
    tech_waiting_to_write: bool,
    device_waiting_to_write: bool,
    recorder: Option<Recorder>,
    session: Option<Session>,
    close_reason: Option<EndReason>,
    followups: VecDeque<Followup>,
    wake_tx: Sender<Wake>,
    wake_rx: Receiver<Wake>,
    waker: Arc<Waker>,
    poll: Poll,
    heartbeat_counter: u64,
    carrier: Option<bool>,
    tamper: tamper::TamperLevels,
}

impl<H: ShimHost> Daemon<H> {
    /// Opens both ports and sets up polling. `config_bytes` are the configuration file's bytes
    /// (hashed into every recording's metadata).
    pub fn new(
        config: ShimConfig,
        config_bytes: &[u8],
        paths: DaemonPaths,
        recordings_key: Key32,
        host: H,
    ) -> Result<Self, DaemonError> {
        let tech = Port::open(
            &config.technician_port.path,
            &config.technician_port.line_settings(),
        )?;
        let device = Port::open(
            &config.device_port.path,
            &config.device_port.line_settings(),
        )?;
        let poll = Poll::new().map_err(DaemonError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(DaemonError::Poll)?);
        let (wake_tx, wake_rx) = mpsc::channel();
        let mut daemon = Self {
            machine: config.machine(),
            config_sha256: hex::encode(openssl::sha::sha256(config_bytes)),
            config,
            paths,
            recordings_key,
            host,
            shim: None,
            epoch: Instant::now(),
            tech: None,
            device: None,
            tech_out: VecDeque::new(),
            device_out: VecDeque::new(),
            tech_waiting_to_write: false,
            device_waiting_to_write: false,
            recorder: None,
            session: None,
            close_reason: None,
            followups: VecDeque::new(),
            wake_tx,
            wake_rx,
            waker,
            poll,
            heartbeat_counter: 0,
            carrier: None,
            tamper: tamper::TamperLevels::default(),
        };
        daemon.attach(TECH, tech)?;
        daemon.attach(DEVICE, device)?;
        Ok(daemon)
    }

    fn attach(&mut self, token: Token, mut port: Port) -> Result<(), DaemonError> {
        let fd = port.raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
            .map_err(DaemonError::Poll)?;
        if token == TECH {
            self.tech_waiting_to_write = false;
            self.carrier = port.carrier_detect();
            self.tech = Some(port);
        } else {
            self.device_waiting_to_write = false;
            self.device = Some(port);
        }
        Ok(())
    }

    fn detach(&mut self, token: Token) {
        let port = if token == TECH {
            self.tech.take()
        } else {
            self.device.take()
        };
        if let Some(port) = port {
            let fd = port.raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    /// A handle that stops this daemon once it runs.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            tx: self.wake_tx.clone(),
            waker: Arc::clone(&self.waker),
        }
    }

    fn notifier(&self) -> impl Fn(Wake) + Send + Clone + 'static {
        let tx = self.wake_tx.clone();
        let waker = Arc::clone(&self.waker);
        move |wake| {
            let _ = tx.send(wake);
            let _ = waker.wake();
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn state(&self) -> StateName {
        self.shim.as_ref().map_or(StateName::Idle, Shim::name)
    }

    /// Runs until SIGTERM / SIGINT (`handle_signals`) or the shutdown flag from a test.
    pub fn run(mut self, handle_signals: bool) -> Result<(), DaemonError> {
        let notify = self.notifier();
        let tamper_sources = tamper::from_config(&self.config.tamper)?;
        for source in tamper_sources.running {
            let notify = notify.clone();
            self.tamper
                .spawn(source, Box::new(move |what| notify(Wake::Tamper(what))))
                .map_err(DaemonError::Poll)?;
        }
        {
            let notify = notify.clone();
            control::serve(&self.config.control_socket, move |pending| {
                notify(Wake::Control(pending))
            })?;
        }
        if handle_signals {
            // SIGUSR1 / SIGUSR2 that are not the configured tamper signal would end the process
            // by default: take them, log them, and go on.
            let tamper_signal = self.config.tamper.signal.map(|s| match s {
                crate::config::TamperSignal::Usr1 => signal_hook::consts::SIGUSR1,
                crate::config::TamperSignal::Usr2 => signal_hook::consts::SIGUSR2,
            });
            let stray: Vec<i32> = [signal_hook::consts::SIGUSR1, signal_hook::consts::SIGUSR2]
                .into_iter()
                .filter(|s| Some(*s) != tamper_signal)
                .collect();
            let mut strays =
                signal_hook::iterator::Signals::new(&stray).map_err(DaemonError::Poll)?;
            std::thread::Builder::new()
                .name("stray-signals".into())
                .spawn(move || {
                    for signal in strays.forever() {
                        tracing::warn!(
                            signal,
                            "ignored a signal that is not configured as a tamper signal"
                        );
                    }
                })
                .map_err(DaemonError::Poll)?;
            let mut signals = signal_hook::iterator::Signals::new([
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGINT,
            ])
            .map_err(DaemonError::Poll)?;
            let notify = notify.clone();
            std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || {
                    if signals.forever().next().is_some() {
                        notify(Wake::Shutdown);
                    }
                })
                .map_err(DaemonError::Poll)?;
        }
        let (locked, emergency) = self.host.persisted_state()?;
        self.shim = Some(Shim::start(locked, emergency));
        let sha = self.config_sha256.clone();
        self.keep(ShimEvent::Started {
            config_sha256: &sha,
        });
        for (source, reason) in &tamper_sources.unavailable {
            tracing::warn!(
                source,
                reason,
                "optional tamper source unavailable; running without it"
            );
            self.keep(ShimEvent::TamperUnavailable { source, reason });
        }
        tracing::info!(state = %self.state(), shim = %self.config.shim_id, "shim started");

        let heartbeat_every = self.config.heartbeat.interval_secs.duration();
        let mut next_heartbeat = Instant::now() + heartbeat_every;
        let mut next_carrier = Instant::now() + CARRIER_POLL;
        let mut next_reopen = Instant::now() + REOPEN_INTERVAL;
        let mut events = Events::with_capacity(16);
        let mut stopping: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut deadline = next_heartbeat.min(next_reopen);
            if self.config.technician_port.disconnect_on_carrier_loss {
                deadline = deadline.min(next_carrier);
            }
            if let Some(at) = self
                .shim
                .as_ref()
                .and_then(|s| s.next_deadline_ms(&self.machine))
            {
                deadline = deadline.min(self.epoch + Duration::from_millis(at));
            }
            if let Some(since) = stopping {
                deadline = deadline.min(since + CLOSE_GRACE);
            }
            let timeout = deadline.saturating_duration_since(now);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DaemonError::Poll(e)),
            }
            for event in events.iter() {
                match event.token() {
                    TECH if event.is_readable() || event.is_read_closed() || event.is_error() => {
                        self.read_port(TECH)
                    }
                    DEVICE if event.is_readable() || event.is_read_closed() || event.is_error() => {
                        self.read_port(DEVICE)
                    }
                    _ => {}
                }
            }
            while let Ok(wake) = self.wake_rx.try_recv() {
                match wake {
                    Wake::Tamper(what) => {
                        tracing::error!(source = %what, "TAMPER");
                        self.feed(Input::Tamper(what));
                    }
                    Wake::Recorder(RecorderReport::Exhausted { detail }) => {
                        self.feed(Input::StorageExhausted(detail))
                    }
                    Wake::Recorder(RecorderReport::Closed(closed)) => self.recording_closed(closed),
                    Wake::Control(pending) => self.control(pending),
                    Wake::Shutdown => {
                        if stopping.is_none() {
                            tracing::info!("stopping");
                            stopping = Some(Instant::now());
                            self.feed(Input::Shutdown);
                        }
                    }
                }
            }
            let now = Instant::now();
            self.feed(Input::Tick);
            if now >= next_heartbeat {
                next_heartbeat = now + heartbeat_every;
                self.heartbeat();
            }
            if self.config.technician_port.disconnect_on_carrier_loss && now >= next_carrier {
                next_carrier = now + CARRIER_POLL;
                self.sample_carrier();
            }
            if now >= next_reopen {
                next_reopen = now + REOPEN_INTERVAL;
                self.reopen_lost_ports();
            }
            self.flush(TECH);
            self.flush(DEVICE);
            if let Some(since) = stopping {
                if self.recorder.is_none() && self.session.is_none()
                    || since.elapsed() >= CLOSE_GRACE
                {
                    self.keep(ShimEvent::Stopping);
                    let _ = std::fs::remove_file(&self.config.control_socket);
                    return Ok(());
                }
            }
        }
    }

    /// Reads everything available on a port and feeds it to the machine.
    fn read_port(&mut self, token: Token) {
        // Larger than a tty's 4 KiB input buffer, so a full read is also a short one.
        let mut buf = [0u8; 16 * 1024];
        loop {
            let port = if token == TECH {
                self.tech.as_ref()
            } else {
                self.device.as_ref()
            };
            let Some(port) = port else { return };
            match port.read_available(&mut buf) {
                Ok(Some(n)) => {
                    let bytes = &buf[..n];
                    if token == TECH {
                        self.feed(Input::Tech(bytes));
                    } else {
                        self.feed(Input::Device(bytes));
                    }
                    if n < buf.len() {
                        // A short read emptied the port: whatever arrives next raises a new
                        // readable edge (epoll(7) on stream-oriented files), so no extra
                        // read that would only answer EAGAIN.
                        return;
                    }
                }
                Ok(None) => return,
                Err(err) => {
                    let name = if token == TECH {
                        "technician"
                    } else {
                        "device"
                    };
                    tracing::warn!(port = name, error = %Report(&err), "serial port lost; will reopen");
                    let text = report(&err);
                    self.keep(ShimEvent::PortLost {
                        port: name,
                        error: &text,
                    });
                    self.detach(token);
                    if token == TECH {
                        self.feed(Input::TechDisconnected);
                    }
                    return;
                }
            }
        }
    }

    fn reopen_lost_ports(&mut self) {
        if self.tech.is_none() {
            if let Ok(port) = Port::open(
                &self.config.technician_port.path,
                &self.config.technician_port.line_settings(),
            ) {
                let _ = self.attach(TECH, port);
            }
        }
        if self.device.is_none() {
            if let Ok(port) = Port::open(
                &self.config.device_port.path,
                &self.config.device_port.line_settings(),
            ) {
                let _ = self.attach(DEVICE, port);
            }
        }
    }

    fn sample_carrier(&mut self) {
        let Some(port) = self.tech.as_mut() else {
            return;
        };
        let now = port.carrier_detect();
        if self.carrier == Some(true) && now == Some(false) {
            self.feed(Input::TechDisconnected);
        }
        self.carrier = now;
    }

    /// Writes what the port accepts now; the rest waits for the next writable event, which is
    /// asked for only while something waits.
    fn flush(&mut self, token: Token) {
        let (port, queue, waiting) = if token == TECH {
            (
                self.tech.as_mut(),
                &mut self.tech_out,
                &mut self.tech_waiting_to_write,
            )
        } else {
            (
                self.device.as_mut(),
                &mut self.device_out,
                &mut self.device_waiting_to_write,
            )
        };
        let Some(port) = port else { return };
        while !queue.is_empty() {
            let (front, _) = queue.as_slices();
            match port.write_available(front) {
                Ok(0) => break,
                Ok(n) => {
                    queue.drain(..n);
                }
                Err(err) => {
                    tracing::warn!(error = %Report(&err), "write to serial port failed");
                    queue.clear();
                    break;
                }
            }
        }
        let wait = !queue.is_empty();
        if wait != *waiting {
            let interest = if wait {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let fd = port.raw_fd();
            match self
                .poll
                .registry()
                .reregister(&mut SourceFd(&fd), token, interest)
            {
                Ok(()) => *waiting = wait,
                Err(err) => {
                    tracing::warn!(error = %Report(&err), "cannot change serial port events")
                }
            }
        }
    }

    /// Feeds one input and everything it leads to.
    fn feed(&mut self, input: Input<'_>) {
        self.step(input);
        while let Some(next) = self.followups.pop_front() {
            match next {
                Followup::Auth(decision) => self.step(Input::AuthDecided(decision)),
                Followup::StorageExhausted(detail) => self.step(Input::StorageExhausted(detail)),
                Followup::RecordingClosed => self.step(Input::RecordingClosed),
            }
        }
    }

    fn step(&mut self, input: Input<'_>) {
        let now = self.now_ms();
        let shim = self
            .shim
            .take()
            .expect("the machine is always present between steps");
        let (next, actions) = shim.handle(input, now, &self.machine);
        self.shim = Some(next);
        for action in actions {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::ToTech(bytes) => self.tech_out.extend(bytes),
            Action::ForwardToDevice(bytes) => {
                self.copy_to_recorder(Direction::TechToDevice, &bytes);
                self.device_out.extend(bytes);
                // Forward at once: the loop's end-of-iteration flush would add latency.
                self.flush(DEVICE);
            }
            Action::ForwardToTech(bytes) => {
                self.copy_to_recorder(Direction::DeviceToTech, &bytes);
                self.tech_out.extend(bytes);
                self.flush(TECH);
            }
            Action::Authenticate(answer) => {
                let started = Instant::now();
                let decision = match self.host.authenticate(&answer.technician_id, &answer.code) {
                    Ok(decision) => decision,
                    Err(err) => {
                        tracing::error!(error = %Report(&err), "authentication could not be recorded");
                        self.followups
                            .push_back(Followup::StorageExhausted(report(&err)));
                        AuthDecision::Rejected {
                            retry_after_ms: 1000,
                        }
                    }
                };
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "authentication decided"
                );
                self.followups.push_back(Followup::Auth(decision));
            }
            Action::OpenSession { technician_id } => self.open_session(technician_id),
            Action::RecordEvent(label) => {
                if let Some(recorder) = self.recorder.as_mut() {
                    recorder.event(&label);
                }
            }
            Action::CloseSession(reason) => {
                if let Some(recorder) = self.recorder.take() {
                    self.close_reason = Some(reason);
                    recorder.close();
                } else {
                    self.followups.push_back(Followup::RecordingClosed);
                }
                if let Some(EndReason::Tamper(_) | EndReason::StorageExhausted(_)) =
                    self.close_reason.as_ref()
                {
                    // Forwarding is cut: nothing queued for the device goes out any more.
                    self.device_out.clear();
                }
            }
            Action::Transition { from, to, reason } => {
                tracing::info!(%from, %to, %reason, "transition");
                self.keep(ShimEvent::Transition {
                    from,
                    to,
                    reason: &reason,
                });
            }
            Action::Alert { source } => {
                self.device_out.clear();
                let file = self.write_alert(&source);
                self.keep(ShimEvent::Alert {
                    source: &source,
                    file: &file,
                });
            }
            Action::PersistPortLock { locked } => self.keep(ShimEvent::PortLock { locked }),
        }
    }

    /// Keeps an event with the host; a host that cannot keep it means storage is exhausted.
    fn keep(&mut self, event: ShimEvent<'_>) {
        match self.host.record(event) {
            Ok(()) => {}
            Err(err) => {
                tracing::error!(error = %Report(&err), "event could not be kept");
                self.followups
                    .push_back(Followup::StorageExhausted(report(&err)));
            }
        }
    }

    // Implements: S8
    fn copy_to_recorder(&mut self, direction: Direction, bytes: &[u8]) {
        if let Some(recorder) = self.recorder.as_mut() {
            if !recorder.chunk(direction, bytes) {
                self.followups.push_back(Followup::StorageExhausted(
                    "the recorder fell too far behind the data path".into(),
                ));
            }
        }
    }

    fn open_session(&mut self, technician_id: String) {
        let id = uuid::Builder::from_random_bytes(warden_core::rand::array()).into_uuid();
        let started = OffsetDateTime::now_utc();
        let path = session_path(
            &self.paths.sessions,
            started,
            &self.config.device_name,
            &technician_id,
        );
        let used = dir_size(&self.paths.sessions);
        let budget = self.config.recording.budget_bytes.saturating_sub(used);
        let limits = RecorderLimits {
            flush_interval: Duration::from_millis(self.config.recording.flush_interval_ms),
            max_backlog_bytes: self.config.recording.max_backlog_bytes,
            file_budget_bytes: budget,
        };
        let config_hash: [u8; 32] = hex::decode(&self.config_sha256)
            .ok()
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 32]);
        let started_recorder = RecordingMetadata::new(
            id,
            &technician_id,
            &self.config.device_name,
            &self.config.shim_id,
            started,
            config_hash,
        )
        .map_err(|e| report(&e))
        .and_then(|metadata| {
            let notify = self.notifier();
            let (tx, rx) = mpsc::channel::<RecorderReport>();
            // Forward the recorder's reports into the wake channel.
            let forward = notify.clone();
            std::thread::spawn(move || {
                for report in rx {
                    forward(Wake::Recorder(report));
                }
            });
            Recorder::start(&path, &self.recordings_key, &metadata, limits, tx, || {})
                .map_err(|e| report(&e))
        });
        match started_recorder {
            Ok(recorder) => {
                self.recorder = Some(recorder);
                self.session = Some(Session {
                    id,
                    technician_id: technician_id.clone(),
                });
                self.keep(ShimEvent::SessionOpened {
                    session_id: id,
                    technician_id: &technician_id,
                    file: &path,
                });
            }
            Err(detail) => {
                self.session = Some(Session { id, technician_id });
                self.followups.push_back(Followup::StorageExhausted(format!(
                    "cannot start the session recording: {detail}"
                )));
            }
        }
    }

    fn recording_closed(&mut self, closed: ClosedRecording) {
        let reason = self
            .close_reason
            .take()
            .map_or_else(|| "closed".to_string(), |r| r.to_string());
        if let Some(session) = self.session.take() {
            self.keep(ShimEvent::SessionClosed {
                session_id: session.id,
                technician_id: &session.technician_id,
                recording: &closed,
                reason: &reason,
            });
        }
        self.feed(Input::RecordingClosed);
    }

    fn control(&mut self, pending: Pending) {
        let reply = match pending.request {
            ControlRequest::Status => ControlReply {
                ok: true,
                state: self.state().to_string(),
                message: match &self.session {
                    Some(s) => format!("session {} of {}", s.id, s.technician_id),
                    None => "no session".into(),
                },
            },
            ControlRequest::Reset { request } => {
                let from = self.state();
                let active = self.tamper.active();
                match self.host.reset(request, from, &active) {
                    Ok(ResetDecision::Done { requested_by }) => {
                        self.feed(Input::Reset {
                            admin: requested_by.clone(),
                        });
                        let state = self.state();
                        ControlReply {
                            ok: true,
                            state: state.to_string(),
                            message: format!(
                                "reset requested by {requested_by}: {from} -> {state}"
                            ),
                        }
                    }
                    Ok(ResetDecision::Refused { reason }) => ControlReply {
                        ok: false,
                        state: from.to_string(),
                        message: reason,
                    },
                    Err(err) => {
                        tracing::error!(error = %Report(&err), "a reset could not be settled");
                        self.followups
                            .push_back(Followup::StorageExhausted(report(&err)));
                        ControlReply {
                            ok: false,
                            state: from.to_string(),
                            message: format!("the reset could not be recorded: {}", Report(&err)),
                        }
                    }
                }
            }
        };
        let _ = pending.reply.send(reply);
    }

    // Implements: S11, S12, S44
    fn heartbeat(&mut self) {
        self.heartbeat_counter += 1;
        let now = OffsetDateTime::now_utc();
        let line = json!({
            "time": rfc3339(now),
            "shim_id": self.config.shim_id,
            "counter": self.heartbeat_counter,
            "state": self.state().as_str(),
            "uptime_s": self.epoch.elapsed().as_secs(),
        });
        let file = self
            .paths
            .heartbeats
            .join(format!("{}.log", &rfc3339(now)[..10]));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&file)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(err) = written {
            self.followups.push_back(Followup::StorageExhausted(format!(
                "heartbeat log {}: {err}",
                file.display()
            )));
        }
        let state = self.state();
        self.keep(ShimEvent::Heartbeat {
            counter: self.heartbeat_counter,
            state,
        });
    }

    // Implements: S20, S45
    fn write_alert(&mut self, source: &str) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let stamp = rfc3339(now)[..19].replace(':', "-");
        let alert = json!({
            "time": rfc3339(now),
            "shim_id": self.config.shim_id,
            "device": self.config.device_name,
            "source": source,
            "state": self.state().as_str(),
            "session_id": self.session.as_ref().map(|s| s.id.to_string()),
        });
        let mut path = self.paths.alerts.join(format!("{stamp}.tamper.json"));
        let mut n = 1;
        while path.symlink_metadata().is_ok() {
            n += 1;
            path = self.paths.alerts.join(format!("{stamp}-{n}.tamper.json"));
        }
        let written = warden_core::fsx::write_new_private(&path, format!("{alert:#}\n").as_bytes())
            .map_err(|e| report(&e));
        if let Err(err) = written {
            tracing::error!(error = %err, "cannot write the alert file");
        }
        path
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&format).unwrap_or_default()
}

// Implements: S43
/// `sessions/2026-04-15T09-22-03.<device>-<technician>.session` (seed 000), made unique.
fn session_path(dir: &Path, started: OffsetDateTime, device: &str, technician: &str) -> PathBuf {
    let safe: String = technician
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stamp = rfc3339(started)[..19].replace(':', "-");
    let mut path = dir.join(format!("{stamp}.{device}-{safe}.session"));
    let mut n = 1;
    while path.symlink_metadata().is_ok() {
        n += 1;
        path = dir.join(format!("{stamp}.{device}-{safe}-{n}.session"));
    }
    path
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
