//! The shim's state machine (seed 000): IDLE → CHALLENGE → OPEN → FLUSHED → IDLE, with LOCKED
//! and EMERGENCY_STOP. Pure: inputs are bytes and events with a monotonic time in milliseconds,
//! outputs are actions for the driver (forward, prompt, authenticate, record, audit). Each state
//! is its own type and a transition consumes the old state, so e.g. forwarding outside OPEN
//! cannot be expressed.
//!
//! Departures from the seed, per the shim issue: an idle timeout ends the session normally
//! (OPEN → FLUSHED → IDLE), only tamper and storage exhaustion lead to EMERGENCY_STOP; and the
//! lockout counting lives in the identity layer (persisted), which answers `LockedOut`.

use std::fmt;

use crate::prompt::{Answer, Prompt, PromptLimits};

/// Names of the states as the seed and the audit trail spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateName {
    Idle,
    Challenge,
    Open,
    Flushed,
    Locked,
    EmergencyStop,
}

impl StateName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "IDLE",
            Self::Challenge => "CHALLENGE",
            Self::Open => "OPEN",
            Self::Flushed => "FLUSHED",
            Self::Locked => "LOCKED",
            Self::EmergencyStop => "EMERGENCY_STOP",
        }
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Timing and limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct MachineConfig {
    pub prompt: PromptLimits,
    /// A challenge not answered within this time is abandoned.
    pub challenge_timeout_ms: u64,
    /// An OPEN session with no traffic either way for this long ends.
    pub idle_timeout_ms: u64,
    /// `~.` at the start of a line ends the session (`~~` sends one `~`).
    pub escape_enabled: bool,
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            prompt: PromptLimits::default(),
            challenge_timeout_ms: 60_000,
            idle_timeout_ms: 15 * 60_000,
            escape_enabled: true,
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    Disconnected,
    EscapeSequence,
    IdleTimeout,
    Tamper(String),
    StorageExhausted(String),
    /// The daemon is stopping (SIGTERM): the session is closed cleanly first.
    Shutdown,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected => f.write_str("technician disconnected"),
            Self::EscapeSequence => f.write_str("technician ended the session (~.)"),
            Self::IdleTimeout => f.write_str("idle timeout"),
            Self::Tamper(source) => write!(f, "tamper detected: {source}"),
            Self::StorageExhausted(detail) => write!(f, "storage exhausted: {detail}"),
            Self::Shutdown => f.write_str("the shim is shutting down"),
        }
    }
}

/// The identity layer's answer to [`Action::Authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Accepted {
        technician_id: String,
    },
    /// Refused (unknown id, wrong or replayed code, disabled user: the technician is not told
    /// which). The next attempt is allowed after `retry_after_ms`.
    Rejected {
        retry_after_ms: u64,
    },
    /// The failure threshold was reached: the port is locked until an administrator resets it.
    LockedOut,
}

/// Everything that can happen to the shim.
pub enum Input<'a> {
    Tech(&'a [u8]),
    Device(&'a [u8]),
    TechDisconnected,
    Tick,
    AuthDecided(AuthDecision),
    /// The recorder closed the session file (after [`Action::CloseSession`]).
    RecordingClosed,
    Tamper(String),
    StorageExhausted(String),
    /// `warden shim reset` by an authenticated administrator.
    Reset {
        admin: String,
    },
    /// The daemon is stopping: end an open session cleanly.
    Shutdown,
}

/// What the driver must do, in order.
pub enum Action {
    /// Prompts and messages to the technician (not part of the session recording).
    ToTech(Vec<u8>),
    /// OPEN only: forward to the device, and record as technician→device.
    ForwardToDevice(Vec<u8>),
    /// OPEN only: forward to the technician, and record as device→technician.
    ForwardToTech(Vec<u8>),
    /// Check the answer (TOTP, replay, lockout) and feed back [`Input::AuthDecided`].
    Authenticate(Answer),
    /// Start recording a session for this technician.
    OpenSession { technician_id: String },
    /// Write an event marker into the recording.
    RecordEvent(String),
    /// Stop forwarding, close the recording (hash into the audit chain), then feed back
    /// [`Input::RecordingClosed`].
    CloseSession(EndReason),
    /// Every transition, for the audit chain.
    Transition {
        from: StateName,
        to: StateName,
        reason: String,
    },
    /// Tamper or storage alert: `alerts/`, spool at highest priority.
    Alert { source: String },
    /// Persist that the port is locked (or unlocked), so a restart keeps it.
    PersistPortLock { locked: bool },
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ToTech(b) => write!(f, "ToTech({:?})", String::from_utf8_lossy(b)),
            Self::ForwardToDevice(b) => write!(f, "ForwardToDevice({} bytes)", b.len()),
            Self::ForwardToTech(b) => write!(f, "ForwardToTech({} bytes)", b.len()),
            Self::Authenticate(a) => write!(f, "Authenticate({}, <code>)", a.technician_id),
            Self::OpenSession { technician_id } => write!(f, "OpenSession({technician_id})"),
            Self::RecordEvent(e) => write!(f, "RecordEvent({e})"),
            Self::CloseSession(r) => write!(f, "CloseSession({r})"),
            Self::Transition { from, to, reason } => {
                write!(f, "Transition({from} -> {to}: {reason})")
            }
            Self::Alert { source } => write!(f, "Alert({source})"),
            Self::PersistPortLock { locked } => write!(f, "PersistPortLock({locked})"),
        }
    }
}

const MSG_DENIED: &[u8] = b"\r\nwarden: access denied\r\n";
const MSG_LOCKED: &[u8] =
    b"\r\nwarden: this port is locked after repeated failures; an administrator must reset it\r\n";
const MSG_STOPPED: &[u8] = b"\r\nwarden: EMERGENCY STOP - forwarding is disabled until an administrator resets the shim\r\n";
const MSG_TIMEOUT: &[u8] = b"\r\nwarden: no answer, challenge abandoned\r\n";
const MSG_OPEN: &[u8] = b"\r\nwarden: access granted; this session is recorded. Type ~. at the start of a line to end it.\r\n";
const MSG_BANNER: &[u8] =
    b"\r\nwarden: authorized service access only; sessions are recorded and audited.";
/// How often LOCKED / EMERGENCY_STOP repeat their notice when the technician keeps typing.
const NOTICE_INTERVAL_MS: u64 = 5_000;

pub struct Idle;

pub struct Challenge {
    prompt: Prompt,
    started_ms: u64,
    /// After a failure, input is ignored until then (rate limiting).
    not_before_ms: u64,
}

pub struct Authenticating {
    started_ms: u64,
}

pub struct Open {
    technician_id: String,
    last_activity_ms: u64,
    /// At the start of a line in technician→device traffic (where `~.` is recognised).
    at_line_start: bool,
    /// A `~` at line start is held back until the next byte says what it means.
    tilde_pending: bool,
}

pub struct Flushed {
    next: AfterFlush,
}

/// Where FLUSHED goes once the recording is closed.
enum AfterFlush {
    Idle,
    EmergencyStop,
}

pub struct Locked {
    last_notice_ms: Option<u64>,
}

pub struct EmergencyStop {
    last_notice_ms: Option<u64>,
}

// Implements: S22, S23, S24, S25, S28, S29, S33, S35
/// The machine: one of the states.
pub enum Shim {
    Idle(Idle),
    Challenge(Challenge),
    Authenticating(Authenticating),
    Open(Open),
    Flushed(Flushed),
    Locked(Locked),
    EmergencyStop(EmergencyStop),
}

impl Shim {
    // Implements: S27, S33, S46
    /// The state after a (re)start, from what was persisted: an emergency stop survives a
    /// restart (power-cycling the box must not lift it), then the port lock.
    pub fn start(port_locked: bool, emergency_stop: bool) -> Self {
        if emergency_stop {
            Self::EmergencyStop(EmergencyStop {
                last_notice_ms: None,
            })
        } else if port_locked {
            Self::Locked(Locked {
                last_notice_ms: None,
            })
        } else {
            Self::Idle(Idle)
        }
    }

    pub fn name(&self) -> StateName {
        match self {
            Self::Idle(_) => StateName::Idle,
            Self::Challenge(_) | Self::Authenticating(_) => StateName::Challenge,
            Self::Open(_) => StateName::Open,
            Self::Flushed(_) => StateName::Flushed,
            Self::Locked(_) => StateName::Locked,
            Self::EmergencyStop(_) => StateName::EmergencyStop,
        }
    }

    /// The earliest time a `Tick` can change anything (for the driver's poll timeout).
    pub fn next_deadline_ms(&self, config: &MachineConfig) -> Option<u64> {
        match self {
            Self::Challenge(c) => Some(c.started_ms + config.challenge_timeout_ms),
            Self::Authenticating(a) => Some(a.started_ms + config.challenge_timeout_ms),
            Self::Open(o) => Some(o.last_activity_ms + config.idle_timeout_ms),
            _ => None,
        }
    }

    /// Applies one input at `now_ms`; returns the next state and the actions to perform.
    pub fn handle(
        self,
        input: Input<'_>,
        now_ms: u64,
        config: &MachineConfig,
    ) -> (Self, Vec<Action>) {
        let mut actions = Vec::new();
        let from = self.name();
        let (next, reason) = self.step(input, now_ms, config, &mut actions);
        let to = next.name();
        if let Some(reason) = reason {
            actions.push(Action::Transition { from, to, reason });
        }
        (next, actions)
    }

    /// The transition function. Returns the next state and, when the state changes (or must be
    /// audited anyway), the reason.
    fn step(
        self,
        input: Input<'_>,
        now: u64,
        config: &MachineConfig,
        out: &mut Vec<Action>,
    ) -> (Self, Option<String>) {
        // Tamper wins everywhere: cut forwarding first, then record and alert.
        if let Input::Tamper(source) = input {
            return self.emergency_stop(EndReason::Tamper(source.clone()), source, out);
        }
        // Storage exhausted (recording, audit trail or spool cannot take more): nothing may
        // happen that cannot be recorded, so forwarding stops everywhere (seed 000).
        if let Input::StorageExhausted(detail) = input {
            // Already stopped (or stopping): nothing more to stop, and recording the stop again
            // would fail the same way and loop.
            if matches!(
                &self,
                Self::EmergencyStop(_)
                    | Self::Flushed(Flushed {
                        next: AfterFlush::EmergencyStop
                    })
            ) {
                return (self, None);
            }
            let source = format!("storage exhausted: {detail}");
            return self.emergency_stop(EndReason::StorageExhausted(detail), source, out);
        }
        match (self, input) {
            // ---- IDLE
            (Self::Idle(_), Input::Tech(_)) => {
                let (prompt, first) = Prompt::start(config.prompt);
                out.push(Action::ToTech([MSG_BANNER, &first].concat()));
                let challenge = Challenge {
                    prompt,
                    started_ms: now,
                    not_before_ms: now,
                };
                (
                    Self::Challenge(challenge),
                    Some("technician activity".into()),
                )
            }
            (state @ Self::Idle(_), _) => (state, None),

            // ---- CHALLENGE
            (Self::Challenge(mut c), Input::Tech(bytes)) => {
                if now < c.not_before_ms {
                    let wait = (c.not_before_ms - now).div_ceil(1000);
                    out.push(Action::ToTech(
                        format!("\r\nwarden: please wait {wait} s before trying again")
                            .into_bytes(),
                    ));
                    return (Self::Challenge(c), None);
                }
                let typed = c.prompt.feed(bytes);
                out.push(Action::ToTech(typed.echo));
                if typed.cancelled {
                    return (
                        Self::Idle(Idle),
                        Some("challenge cancelled by the technician".into()),
                    );
                }
                match typed.answer {
                    Some(answer) => {
                        out.push(Action::Authenticate(answer));
                        (
                            Self::Authenticating(Authenticating { started_ms: now }),
                            None,
                        )
                    }
                    None => (Self::Challenge(c), None),
                }
            }
            (Self::Challenge(c), Input::Tick)
                if now >= c.started_ms + config.challenge_timeout_ms =>
            {
                out.push(Action::ToTech(MSG_TIMEOUT.to_vec()));
                (Self::Idle(Idle), Some("challenge timed out".into()))
            }
            (Self::Challenge(_), Input::TechDisconnected) => (
                Self::Idle(Idle),
                Some("technician disconnected during the challenge".into()),
            ),
            (Self::Challenge(_), Input::Reset { admin }) => {
                (Self::Idle(Idle), Some(format!("reset by {admin}")))
            }
            (state @ Self::Challenge(_), _) => (state, None),

            // ---- CHALLENGE, waiting for the identity layer (typed bytes are dropped)
            (Self::Authenticating(_), Input::AuthDecided(decision)) => match decision {
                AuthDecision::Accepted { technician_id } => {
                    out.push(Action::OpenSession {
                        technician_id: technician_id.clone(),
                    });
                    out.push(Action::ToTech(MSG_OPEN.to_vec()));
                    let open = Open {
                        technician_id: technician_id.clone(),
                        last_activity_ms: now,
                        at_line_start: true,
                        tilde_pending: false,
                    };
                    (
                        Self::Open(open),
                        Some(format!("technician {technician_id} authenticated")),
                    )
                }
                AuthDecision::Rejected { retry_after_ms } => {
                    out.push(Action::ToTech(MSG_DENIED.to_vec()));
                    let (prompt, first) = Prompt::start(config.prompt);
                    out.push(Action::ToTech(first));
                    let challenge = Challenge {
                        prompt,
                        started_ms: now,
                        not_before_ms: now + retry_after_ms,
                    };
                    (
                        Self::Challenge(challenge),
                        Some("authentication failed".into()),
                    )
                }
                AuthDecision::LockedOut => {
                    out.push(Action::ToTech(MSG_LOCKED.to_vec()));
                    out.push(Action::PersistPortLock { locked: true });
                    let locked = Locked {
                        last_notice_ms: Some(now),
                    };
                    (
                        Self::Locked(locked),
                        Some("too many failed attempts: port locked".into()),
                    )
                }
            },
            (Self::Authenticating(a), Input::Tick)
                if now >= a.started_ms + config.challenge_timeout_ms =>
            {
                out.push(Action::ToTech(MSG_TIMEOUT.to_vec()));
                (
                    Self::Idle(Idle),
                    Some("authentication did not complete in time".into()),
                )
            }
            (state @ Self::Authenticating(_), _) => (state, None),

            // ---- OPEN
            (Self::Open(mut o), Input::Tech(bytes)) => {
                o.last_activity_ms = now;
                let (forward, escaped) = o.scan_escape(bytes, config.escape_enabled);
                if !forward.is_empty() {
                    out.push(Action::ForwardToDevice(forward));
                }
                if escaped {
                    return o.end(EndReason::EscapeSequence, out);
                }
                (Self::Open(o), None)
            }
            (Self::Open(mut o), Input::Device(bytes)) => {
                o.last_activity_ms = now;
                out.push(Action::ForwardToTech(bytes.to_vec()));
                (Self::Open(o), None)
            }
            (Self::Open(o), Input::TechDisconnected) => o.end(EndReason::Disconnected, out),
            (Self::Open(o), Input::Tick) if now >= o.last_activity_ms + config.idle_timeout_ms => {
                out.push(Action::ToTech(
                    b"\r\nwarden: session ended after inactivity\r\n".to_vec(),
                ));
                o.end(EndReason::IdleTimeout, out)
            }
            (Self::Open(o), Input::Shutdown) => o.end(EndReason::Shutdown, out),
            (state @ Self::Open(_), _) => (state, None),

            // ---- FLUSHED: waiting for the recorder to close the file
            (Self::Flushed(f), Input::RecordingClosed) => match f.next {
                AfterFlush::Idle => (Self::Idle(Idle), Some("recording closed".into())),
                AfterFlush::EmergencyStop => (
                    Self::EmergencyStop(EmergencyStop {
                        last_notice_ms: Some(now),
                    }),
                    Some("recording closed after emergency stop".into()),
                ),
            },
            (state @ Self::Flushed(_), _) => (state, None),

            // ---- LOCKED
            (Self::Locked(_), Input::Reset { admin }) => {
                out.push(Action::PersistPortLock { locked: false });
                (
                    Self::Idle(Idle),
                    Some(format!("port lock reset by {admin}")),
                )
            }
            (Self::Locked(mut l), Input::Tech(_)) => {
                if l.last_notice_ms
                    .is_none_or(|t| now >= t + NOTICE_INTERVAL_MS)
                {
                    out.push(Action::ToTech(MSG_LOCKED.to_vec()));
                    l.last_notice_ms = Some(now);
                }
                (Self::Locked(l), None)
            }
            (state @ Self::Locked(_), _) => (state, None),

            // ---- EMERGENCY_STOP: nothing passes until an administrator resets
            (Self::EmergencyStop(_), Input::Reset { admin }) => (
                Self::Idle(Idle),
                Some(format!("emergency stop reset by {admin}")),
            ),
            (Self::EmergencyStop(mut e), Input::Tech(_)) => {
                if e.last_notice_ms
                    .is_none_or(|t| now >= t + NOTICE_INTERVAL_MS)
                {
                    out.push(Action::ToTech(MSG_STOPPED.to_vec()));
                    e.last_notice_ms = Some(now);
                }
                (Self::EmergencyStop(e), None)
            }
            (state @ Self::EmergencyStop(_), _) => (state, None),
        }
    }

    // Implements: S20, S30, S32
    /// Cuts forwarding at once. In OPEN the recording is closed first (FLUSHED, then
    /// EMERGENCY_STOP when the recorder reports back); elsewhere straight to EMERGENCY_STOP.
    fn emergency_stop(
        self,
        reason: EndReason,
        source: String,
        out: &mut Vec<Action>,
    ) -> (Self, Option<String>) {
        out.push(Action::Alert {
            source: source.clone(),
        });
        out.push(Action::ToTech(MSG_STOPPED.to_vec()));
        let text = reason.to_string();
        match self {
            Self::Open(_) => {
                out.push(Action::RecordEvent(format!("emergency stop: {text}")));
                out.push(Action::CloseSession(reason));
                (
                    Self::Flushed(Flushed {
                        next: AfterFlush::EmergencyStop,
                    }),
                    Some(text),
                )
            }
            Self::Flushed(_) => (
                Self::Flushed(Flushed {
                    next: AfterFlush::EmergencyStop,
                }),
                Some(text),
            ),
            _ => (
                Self::EmergencyStop(EmergencyStop {
                    last_notice_ms: None,
                }),
                Some(text),
            ),
        }
    }
}

impl Open {
    /// Scans technician input for `~.` at the start of a line. Returns the bytes to forward and
    /// whether the escape was typed (bytes after it are dropped).
    fn scan_escape(&mut self, bytes: &[u8], enabled: bool) -> (Vec<u8>, bool) {
        if !enabled {
            return (bytes.to_vec(), false);
        }
        if !self.tilde_pending && !self.has_line_start_tilde(bytes) {
            // The common case on the data path: nothing to interpret, the chunk goes as is.
            if let Some(&last) = bytes.last() {
                self.at_line_start = last == b'\r' || last == b'\n';
            }
            return (bytes.to_vec(), false);
        }
        let mut forward = Vec::with_capacity(bytes.len() + 1);
        for &byte in bytes {
            if self.tilde_pending {
                self.tilde_pending = false;
                match byte {
                    b'.' => return (forward, true),
                    b'~' => {
                        forward.push(b'~');
                        self.at_line_start = false;
                        continue;
                    }
                    _ => forward.push(b'~'),
                }
            } else if byte == b'~' && self.at_line_start {
                self.tilde_pending = true;
                continue;
            }
            forward.push(byte);
            self.at_line_start = byte == b'\r' || byte == b'\n';
        }
        (forward, false)
    }

    /// Whether a `~` in `bytes` stands at the start of a line (so may begin an escape).
    fn has_line_start_tilde(&self, bytes: &[u8]) -> bool {
        memchr::memchr_iter(b'~', bytes).any(|i| match i {
            0 => self.at_line_start,
            _ => matches!(bytes[i - 1], b'\r' | b'\n'),
        })
    }

    // Implements: S29, S31
    fn end(self, reason: EndReason, out: &mut Vec<Action>) -> (Shim, Option<String>) {
        let text = format!("session of {} ended: {reason}", self.technician_id);
        out.push(Action::RecordEvent(reason.to_string()));
        out.push(Action::CloseSession(reason));
        (
            Shim::Flushed(Flushed {
                next: AfterFlush::Idle,
            }),
            Some(text),
        )
    }
}
