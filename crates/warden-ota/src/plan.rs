//! One admin request, decided without I/O: which admin session it belongs to, and what the
//! step means for the store, the audit chain, the events and the metrics.
//!
//! The HTTP adapter ([`crate::server`]) keeps one [`CardState`] per card, across connections,
//! and for each request:
//!
//! 1. [`CardState::begin`] decides whether the request starts a fresh session, continues its
//!    connection's session, resumes the card's session on a new connection, or is refused (a
//!    second session of the card while one is in progress on another connection: `409`);
//! 2. on [`Begin::Fresh`] the adapter settles scripts a lost session left in flight
//!    ([`crate::audit::scripts_recovered`] says what to audit) and reads the card's queue;
//! 3. [`CardState::step`] runs the admin state machine ([`crate::admin`]) on the request and the
//!    next queued script and returns a [`Plan`]: the [`StoreWrite`]s and [`AuditRecord`]s of one
//!    transaction, and an [`AfterCommit`] with everything else;
//! 4. the adapter applies the writes and the audit records in one store transaction;
//! 5. only after the commit does [`CardState::commit`] move the session on and hand out the
//!    HTTP response, the events and the metric updates. If the store fails, the adapter drops
//!    the plan: the session stays where it was and the card gets `503`, so nothing is
//!    acknowledged that was not stored.
//!
//! Time is a value here: callers pass `now`.
//!
//! One session per card at a time: a card's session belongs to the connection that opened (or
//! resumed) it. A new connection that opens without `X-Admin-Resume` while that session has a
//! script out on another live connection gets `409` ([`AdminError::SessionInProgress`]); a new
//! connection that resumes takes the session over (the card says its old connection broke), and
//! a later request on the old connection gets `409` ([`AdminError::SessionTakenOver`]). A
//! connection gives the session up ([`CardState::release`]) when it answers with
//! `Connection: close` or ends.

use std::collections::HashMap;
use std::time::Instant;

use warden_core::audit::Outcome;

use crate::admin::{
    AdminError, AdminRequest, AdminResponse, Effect, Leniency, QueuedScript, Redelivery, ScriptId,
    ScriptStatus, Session, SessionConfig,
};
use crate::apdu::{to_hex, ResponseApdu};
use crate::audit::{self, AuditRecord};
use crate::events::Event;
use crate::gp::{Aid, GpError};
use crate::script::{CommandScript, ResponseScript, ScriptError, ScriptFault};

/// The connection a request came on, as the adapter knows it.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub conn_id: u64,
    /// The connection's session id (one per TLS connection; in Next-URIs and records).
    pub session_id: &'a str,
    /// The card's PSK identity, as the handshake proved it.
    pub card: &'a str,
    pub peer: &'a str,
    /// The first admin request on this connection.
    pub first_request: bool,
}

/// Which session a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// A new admin session: settle what a lost session left in flight, then read the queue.
    Fresh,
    /// The next request of this connection's session.
    Continue,
    /// The first request of a new connection, resuming the card's session (`X-Admin-Resume`).
    Resumed,
}

/// A request admitted to the card's session by [`CardState::begin`]; [`CardState::step`]
/// consumes it.
#[must_use]
#[derive(Debug)]
pub struct Turn {
    begin: Begin,
    session: Session,
}

impl Turn {
    pub fn begin(&self) -> Begin {
        self.begin
    }
}

/// A request refused before anything was stored: answer it, report it, store nothing.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: AdminError,
    pub response: AdminResponse,
}

impl Refusal {
    fn new(error: AdminError) -> Self {
        Self {
            response: AdminResponse::refusal(&error),
            error,
        }
    }

    /// The `request_refused` event.
    pub fn event(&self, session_id: &str) -> Event {
        Event::RequestRefused {
            session_id: session_id.to_string(),
            status: self.error.status(),
            reason: self.error.to_string(),
        }
    }
}

/// A script sent to the card and not yet answered.
#[derive(Debug, Clone)]
struct Sent {
    script: CommandScript,
    at: Instant,
    redelivery: Redelivery,
}

// Implements: O32, O73
/// One card's admin state across connections: its session, which connection holds it, and the
/// scripts out (to pair C-APDUs with the R-APDUs that come back, and time the round trip).
#[derive(Debug, Default)]
pub struct CardState {
    session: Option<Session>,
    owner: Option<u64>,
    in_flight: HashMap<ScriptId, Sent>,
}

/// One C-APDU of a script and what the card answered (`None`: it did not run it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub command: Vec<u8>,
    /// The R-APDU: data followed by SW1 SW2.
    pub response: Option<Vec<u8>>,
    pub sw: Option<u16>,
}

impl Exchange {
    /// Success for a normal or warning status word (`9000`, `61xx`, `62xx`, `63xx`), failure
    /// for an error status word or a command the card did not run.
    pub fn outcome(&self) -> Outcome {
        let ok = self.sw.is_some_and(|sw| {
            let r = ResponseApdu::new(Vec::new(), sw);
            r.is_success() || r.is_warning()
        });
        if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

/// Pairs the script's C-APDUs with the R-APDUs in order; commands past the last R-APDU did not
/// run, R-APDUs past the last command (a confused card) are kept with an empty command.
pub fn pair_exchanges(
    commands: Option<&CommandScript>,
    responses: Option<&ResponseScript>,
) -> Vec<Exchange> {
    let cmds: Vec<Vec<u8>> = commands
        .map(|c| c.apdus().map(|a| a.to_bytes()).collect())
        .unwrap_or_default();
    let resps: Vec<&ResponseApdu> = responses
        .map(|r| r.responses().collect())
        .unwrap_or_default();
    (0..cmds.len().max(resps.len()))
        .map(|i| Exchange {
            command: cmds.get(i).cloned().unwrap_or_default(),
            response: resps.get(i).map(|r| r.to_bytes()),
            sw: resps.get(i).map(|r| r.sw()),
        })
        .collect()
}

/// The session id a resumed request names in its target (`…?session=ID&seq=N`).
pub fn resumed_session(request: &AdminRequest) -> Option<&str> {
    query_param(request, "session").filter(|id| !id.is_empty())
}

/// One parameter of the request target's query.
fn query_param<'a>(request: &'a AdminRequest, name: &str) -> Option<&'a str> {
    let (_, query) = request.target.split_once('?')?;
    query.split('&').find_map(|pair| {
        pair.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// What the store says a session that is gone had in flight.
pub struct SentScript<'a> {
    pub id: ScriptId,
    pub commands: &'a CommandScript,
    /// The `seq` of the Next-URI it went out with (`None`: stored by a build that did not
    /// record it).
    pub seq: Option<u32>,
}

/// Results a card resumes with after the server restarted, when nothing of its session is left
/// in memory: the store says which script that session had in flight (`sent`). What to store
/// and audit, as for results in a live session (the record says `after_restart`), or `None`
/// when the request carries no usable results or they do not answer that script — posted to
/// another Next-URI than the one it went out with, or more responses than it had commands (the
/// session then starts over and the script is settled as any script a lost session left in
/// flight).
pub fn results_after_restart(
    card: &str,
    request: &AdminRequest,
    config: &SessionConfig,
    sent: SentScript<'_>,
) -> Option<(StoreWrite, AuditRecord)> {
    let session_id = resumed_session(request)?;
    let posted_to: u32 = query_param(request, "seq")?.parse().ok()?;
    if sent.seq != Some(posted_to) {
        return None;
    }
    let status = request.script_status()?;
    let responses = if request.body.is_empty() {
        None
    } else if status == ScriptStatus::Ok {
        Some(ResponseScript::decode_with_limits(&request.body, &config.script_limits).ok()?)
    } else {
        return None;
    };
    let (script, commands) = (sent.id, sent.commands);
    if let Some(r) = &responses {
        let count = commands.apdus().count();
        if r.responses().count() > count || r.executed_count().unwrap_or(0) as usize > count {
            return None;
        }
    }
    let exchanges = pair_exchanges(Some(commands), responses.as_ref());
    let result = ScriptResult::of(status, responses.as_ref());
    let mut record = audit::script_completed(
        card,
        session_id,
        &audit::Completion {
            script: script.0,
            script_status: status.as_str(),
            result: result.as_str(),
            executed: responses.as_ref().and_then(ResponseScript::executed_count),
            exchanges: &exchanges,
            round_trip_us: None,
            fault: result.fault(),
        },
    );
    record.details["after_restart"] = true.into();
    let write = StoreWrite::Results {
        script,
        result: result.as_str(),
        body: (!request.body.is_empty()).then(|| request.body.clone()),
        exchanges,
        round_trip_us: None,
    };
    Some((write, record))
}

/// How a script ended: the card's `X-Admin-Script-Status`, and for `ok` any error TLV in its
/// response script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptResult {
    /// `ok`, and the response script reports no error.
    Ran,
    /// `unknown-application`, `not-a-security-domain` or `security-error`.
    Refused(ScriptStatus),
    /// `ok`, but the response script carries an error TLV (`90`, `81`, `83`).
    Fault(ScriptFault),
}

impl ScriptResult {
    pub fn of(status: ScriptStatus, responses: Option<&ResponseScript>) -> Self {
        match (status, responses.and_then(ResponseScript::fault)) {
            (ScriptStatus::Ok, None) => Self::Ran,
            (ScriptStatus::Ok, Some(f)) => Self::Fault(f),
            (other, _) => Self::Refused(other),
        }
    }

    /// As stored and shown: the status name, or the error TLV's (`bad-format`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ran => ScriptStatus::Ok.as_str(),
            Self::Refused(s) => s.as_str(),
            Self::Fault(f) => f.result_name(),
        }
    }

    pub fn fault(&self) -> Option<&ScriptFault> {
        match self {
            Self::Fault(f) => Some(f),
            _ => None,
        }
    }
}

/// A store write of one step, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreWrite {
    /// The connection's session row becomes ACTIVE with the card's agent id.
    SessionActive { session_id: String, agent: String },
    /// The script is in flight (first delivery or redelivery), its results due at the Next-URI
    /// with this `seq`.
    Delivered {
        script: ScriptId,
        session_id: String,
        seq: u32,
    },
    /// The script is done with this result and these exchanges.
    Results {
        script: ScriptId,
        result: &'static str,
        body: Option<Vec<u8>>,
        exchanges: Vec<Exchange>,
        round_trip_us: Option<u64>,
    },
    /// A resume left it unknown whether the card ran the script.
    OutcomeUnknown { script: ScriptId },
}

/// Metric updates of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsDelta {
    pub scripts_delivered: u64,
    pub apdus_exchanged: u64,
    /// One entry per completed script: its result.
    pub scripts_completed: Vec<&'static str>,
}

/// Something for the operator log (warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A resume left it unknown whether the card ran this script; it was not sent again.
    OutcomeUnknown { script: u64 },
    /// A resumed request repeated results for a script, with different content.
    DuplicateDiffers { script: u64 },
}

impl Notice {
    pub fn script(&self) -> u64 {
        match self {
            Self::OutcomeUnknown { script } | Self::DuplicateDiffers { script } => *script,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Self::OutcomeUnknown { .. } => "a resume left it unknown whether the card ran this script; it was not sent again (check the card, e.g. with GET STATUS)",
            Self::DuplicateDiffers { .. } => "a resumed request repeated results for a script, with different content; the first results are kept",
        }
    }
}

/// The connection's session became active (CONNECTED → ACTIVE) with this agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub agent: String,
    /// The connection resumed the card's session.
    pub resumed: bool,
    /// Departures from Amendment B accepted on the opening request.
    pub lenient: Vec<&'static str>,
}

impl Activation {
    /// The `session_active` event (sent once per connection).
    pub fn event(&self, session_id: &str, card: &str) -> Event {
        Event::SessionActive {
            session_id: session_id.to_string(),
            psk_identity: card.to_string(),
            agent: self.agent.clone(),
            resumed: self.resumed,
            lenient: self.lenient.clone(),
        }
    }
}

/// What one connection did, for `connection_interrupted`, `session_ended` and its record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnTally {
    pub requests: u64,
    /// Scripts delivered (redeliveries not counted again).
    pub scripts: u64,
    /// C-APDUs answered.
    pub apdus: u64,
    pub last_command: Option<String>,
    pub in_flight: Option<u64>,
    /// The admin session ended with `204`.
    pub finished: bool,
    /// A request was refused (the connection closes).
    pub refused_close: bool,
    pub agent: Option<String>,
    /// The last script's result.
    pub last_status: Option<String>,
}

#[derive(Debug, Clone)]
enum InFlightChange {
    Insert(ScriptId, CommandScript, Redelivery),
    Touch(ScriptId),
    Remove(ScriptId),
}

#[derive(Debug, Clone)]
enum TallyChange {
    Delivered {
        script: u64,
        last_command: Option<String>,
        redelivery: bool,
    },
    Completed {
        answered: u64,
        result: &'static str,
    },
    Finished,
    Agent(String),
}

/// When a step's transaction must be on disk, relative to its response.
///
/// A script that must not run twice (`Redelivery::Forbidden`) is marked delivered on disk before
/// it leaves, and its results are on disk before the response that acknowledges them: a crash
/// can then never send it again, nor forget what it did. For a script that may run twice, the
/// response leaves first and the step commits with the next group commit (within the store's
/// deferral window): a crash in between forgets the delivery and the results, and the script is
/// delivered again in the card's next session — which is what `Allowed` permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Commit, then respond.
    BeforeResponse,
    /// Respond at once; the step runs in the open transaction and commits shortly after (the
    /// card's next request waits for it to have run, so it never sees the step undone).
    AfterResponse,
}

/// What one step stores and audits (one transaction), and what follows the commit.
#[must_use]
#[derive(Debug)]
pub struct Plan {
    /// Whether the response may leave before the transaction commits.
    pub durability: Durability,
    pub writes: Vec<StoreWrite>,
    pub audit: Vec<AuditRecord>,
    pub after: AfterCommit,
}

/// The part of a [`Plan`] that happens only after its transaction committed
/// ([`CardState::commit`]). Dropping it leaves the card's state as it was.
#[must_use]
#[derive(Debug)]
pub struct AfterCommit {
    session: Session,
    in_flight: Vec<InFlightChange>,
    tally: Vec<TallyChange>,
    response: AdminResponse,
    events: Vec<Event>,
    metrics: MetricsDelta,
    notices: Vec<Notice>,
    activation: Option<Activation>,
}

/// What the adapter sends and emits once the step is stored.
#[derive(Debug)]
pub struct Committed {
    pub response: AdminResponse,
    pub events: Vec<Event>,
    pub metrics: MetricsDelta,
    pub notices: Vec<Notice>,
    pub activation: Option<Activation>,
}

/// Why a queued script cannot be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queued script {id} does not decode")]
    Body {
        id: u64,
        #[source]
        source: ScriptError,
    },
    #[error("queued script {id}: targeted application")]
    TargetedApplication {
        id: u64,
        #[source]
        source: GpError,
    },
}

/// A queued script as stored (body, `X-Admin-Targeted-Application` value) made ready to send.
pub fn queued_script(
    id: u64,
    body: &[u8],
    targeted_application: Option<&str>,
    redelivery: Redelivery,
) -> Result<QueuedScript, QueueError> {
    let script = CommandScript::decode(body).map_err(|source| QueueError::Body { id, source })?;
    let targeted_application = targeted_application
        .map(Aid::parse_targeted_application)
        .transpose()
        .map_err(|source| QueueError::TargetedApplication { id, source })?;
    Ok(QueuedScript {
        id: ScriptId(id),
        script,
        targeted_application,
        redelivery,
    })
}

impl CardState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The card's session, if any.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The connection holding the session.
    pub fn owner(&self) -> Option<u64> {
        self.owner
    }

    /// Scripts out and not answered.
    pub fn in_flight(&self) -> impl Iterator<Item = ScriptId> + '_ {
        self.in_flight.keys().copied()
    }

    /// Decides which session `conn`'s request belongs to (see the module notes). On
    /// [`Begin::Fresh`] the card's session starts over with `config`.
    pub fn begin(
        &mut self,
        conn: &Connection<'_>,
        resume: bool,
        config: &SessionConfig,
    ) -> Result<Turn, Refusal> {
        let begin = match (&self.session, self.owner) {
            // A new connection resuming the card's session takes it over.
            (Some(_), _) if conn.first_request && resume => Begin::Resumed,
            // A second session while the first has a script out on another connection.
            (Some(Session::AwaitingResults(_)), Some(owner))
                if conn.first_request && owner != conn.conn_id =>
            {
                return Err(Refusal::new(AdminError::SessionInProgress));
            }
            (_, _) if conn.first_request => Begin::Fresh,
            // Later requests: the session moved to another connection meanwhile.
            (_, Some(owner)) if owner != conn.conn_id => {
                return Err(Refusal::new(AdminError::SessionTakenOver));
            }
            (Some(_), _) => Begin::Continue,
            // The session expired (resume window) while the connection stayed open.
            (None, _) => Begin::Fresh,
        };
        if begin == Begin::Fresh {
            self.session = Some(Session::new(config.clone()));
            self.in_flight.clear();
        }
        self.owner = Some(conn.conn_id);
        let session = self
            .session
            .clone()
            .unwrap_or_else(|| Session::new(config.clone()));
        Ok(Turn { begin, session })
    }

    /// `conn` serves no more admin requests (it answered with `Connection: close`, or ended):
    /// another connection of the card may open a session.
    pub fn release(&mut self, conn_id: u64) {
        if self.owner == Some(conn_id) {
            self.owner = None;
        }
    }

    /// Runs the admin state machine on `request` with `next` (the first pending script, peeked)
    /// and plans what the step stores, audits and emits. A refused request changes nothing.
    pub fn step(
        &self,
        turn: Turn,
        conn: &Connection<'_>,
        request: &AdminRequest,
        next: Option<&QueuedScript>,
        now: Instant,
    ) -> Result<Plan, Refusal> {
        let step = turn.session.handle(request, next);
        if let Some(error) = step.error {
            return Err(Refusal {
                error,
                response: step.response,
            });
        }
        let mut p = Planner {
            conn,
            state: self,
            now,
            writes: Vec::new(),
            audit: Vec::new(),
            in_flight: Vec::new(),
            tally: Vec::new(),
            events: Vec::new(),
            metrics: MetricsDelta::default(),
            notices: Vec::new(),
            durability: Durability::AfterResponse,
        };
        let resumed_without_state = step
            .effects
            .iter()
            .any(|e| matches!(e, Effect::ResumeWithoutState { .. }));
        let mut activation = None;
        for effect in &step.effects {
            match effect {
                Effect::SessionOpened { agent, lenient } => {
                    let lenient: Vec<&'static str> =
                        lenient.iter().map(|l| Leniency::as_str(*l)).collect();
                    p.opened(agent, resumed_without_state, &lenient);
                    activation = Some(Activation {
                        agent: agent.clone(),
                        resumed: turn.begin == Begin::Resumed,
                        lenient,
                    });
                }
                Effect::Delivered { script, seq } => p.delivered(*script, *seq, next, false),
                Effect::Redelivered { script, seq } => p.delivered(*script, *seq, next, true),
                Effect::Results {
                    script,
                    status,
                    responses,
                } => p.results(*script, *status, responses.as_ref(), &request.body),
                Effect::DuplicateResults { script, identical } => p.duplicate(*script, *identical),
                Effect::OutcomeUnknown { script } => p.outcome_unknown(*script),
                Effect::ResumeWithoutState { .. } => {}
                Effect::Finished => p.finished(),
            }
        }
        if activation.is_none() && turn.begin == Begin::Resumed {
            activation = Some(Activation {
                agent: step.session.agent().unwrap_or_default().to_string(),
                resumed: true,
                lenient: Vec::new(),
            });
        }
        Ok(Plan {
            durability: p.durability,
            writes: p.writes,
            audit: p.audit,
            after: AfterCommit {
                session: step.session,
                in_flight: p.in_flight,
                tally: p.tally,
                response: step.response,
                events: p.events,
                metrics: p.metrics,
                notices: p.notices,
                activation,
            },
        })
    }

    /// The plan's transaction committed: the session moves on, `tally` counts the step, and the
    /// response and events go out. `now` is when scripts delivered by the step left.
    pub fn commit(&mut self, after: AfterCommit, tally: &mut ConnTally, now: Instant) -> Committed {
        self.session = Some(after.session);
        for change in after.in_flight {
            match change {
                InFlightChange::Insert(id, script, redelivery) => {
                    self.in_flight.insert(
                        id,
                        Sent {
                            script,
                            at: now,
                            redelivery,
                        },
                    );
                }
                InFlightChange::Touch(id) => {
                    if let Some(sent) = self.in_flight.get_mut(&id) {
                        sent.at = now;
                    }
                }
                InFlightChange::Remove(id) => {
                    self.in_flight.remove(&id);
                }
            }
        }
        for change in after.tally {
            match change {
                TallyChange::Delivered {
                    script,
                    last_command,
                    redelivery,
                } => {
                    tally.in_flight = Some(script);
                    tally.last_command = last_command;
                    if !redelivery {
                        tally.scripts += 1;
                    }
                }
                TallyChange::Completed { answered, result } => {
                    tally.apdus += answered;
                    tally.in_flight = None;
                    tally.last_status = Some(result.to_string());
                }
                TallyChange::Finished => tally.finished = true,
                TallyChange::Agent(agent) => tally.agent = Some(agent),
            }
        }
        Committed {
            response: after.response,
            events: after.events,
            metrics: after.metrics,
            notices: after.notices,
            activation: after.activation,
        }
    }
}

/// Builds a [`Plan`] effect by effect.
struct Planner<'a> {
    conn: &'a Connection<'a>,
    state: &'a CardState,
    now: Instant,
    writes: Vec<StoreWrite>,
    audit: Vec<AuditRecord>,
    in_flight: Vec<InFlightChange>,
    tally: Vec<TallyChange>,
    events: Vec<Event>,
    metrics: MetricsDelta,
    notices: Vec<Notice>,
    durability: Durability,
}

impl Planner<'_> {
    /// A step that delivers, or takes the results of, a script that must not run twice (or
    /// one whose policy is not known here) is durable before its response leaves.
    fn needs_durability(&mut self, policy: Option<Redelivery>) {
        if policy != Some(Redelivery::Allowed) {
            self.durability = Durability::BeforeResponse;
        }
    }

    fn opened(&mut self, agent: &str, resumed_without_state: bool, lenient: &[&'static str]) {
        let c = self.conn;
        self.writes.push(StoreWrite::SessionActive {
            session_id: c.session_id.to_string(),
            agent: agent.to_string(),
        });
        self.audit.push(audit::session_opened(
            c.card,
            c.session_id,
            c.peer,
            agent,
            resumed_without_state,
            lenient,
        ));
        self.tally.push(TallyChange::Agent(agent.to_string()));
    }

    fn delivered(
        &mut self,
        script: ScriptId,
        seq: u32,
        next: Option<&QueuedScript>,
        redelivery: bool,
    ) {
        let c = self.conn;
        // A first delivery sends the peeked script; a redelivery the one in flight.
        let peeked = next.filter(|q| q.id == script);
        let policy = peeked
            .map(|q| q.redelivery)
            .or_else(|| self.state.in_flight.get(&script).map(|s| s.redelivery));
        self.needs_durability(policy);
        let queued = peeked.map(|q| &q.script);
        let commands_of = queued.or_else(|| self.state.in_flight.get(&script).map(|s| &s.script));
        let commands: Vec<String> = commands_of
            .map(|s| s.apdus().map(|a| a.to_hex()).collect())
            .unwrap_or_default();
        self.writes.push(StoreWrite::Delivered {
            script,
            session_id: c.session_id.to_string(),
            seq,
        });
        self.audit.push(audit::script_delivered(
            c.card,
            c.session_id,
            script.0,
            redelivery,
            &commands,
        ));
        self.in_flight.push(match queued {
            Some(s) if !redelivery => {
                InFlightChange::Insert(script, s.clone(), policy.unwrap_or(Redelivery::Forbidden))
            }
            _ => InFlightChange::Touch(script),
        });
        self.metrics.scripts_delivered += 1;
        self.events.push(Event::ScriptDelivered {
            session_id: c.session_id.to_string(),
            card: c.card.to_string(),
            script_id: script.0,
            commands: commands.len(),
            redelivery,
        });
        for (index, command_hex) in commands.iter().enumerate() {
            self.events.push(Event::ApduReceived {
                session_id: c.session_id.to_string(),
                script_id: script.0,
                index,
                command_hex: command_hex.clone(),
            });
        }
        self.tally.push(TallyChange::Delivered {
            script: script.0,
            last_command: commands.last().cloned(),
            redelivery,
        });
    }

    fn results(
        &mut self,
        script: ScriptId,
        status: ScriptStatus,
        responses: Option<&ResponseScript>,
        body: &[u8],
    ) {
        let c = self.conn;
        let sent = self.state.in_flight.get(&script);
        self.needs_durability(sent.map(|s| s.redelivery));
        let exchanges = pair_exchanges(sent.map(|s| &s.script), responses);
        let round_trip = sent.map(|s| self.now.saturating_duration_since(s.at));
        let round_trip_us = round_trip.map(|d| d.as_micros() as u64);
        let result = ScriptResult::of(status, responses);
        let executed = responses.and_then(ResponseScript::executed_count);
        // One record per script: every C-APDU with its R-APDU, status word and outcome.
        self.audit.push(audit::script_completed(
            c.card,
            c.session_id,
            &audit::Completion {
                script: script.0,
                script_status: status.as_str(),
                result: result.as_str(),
                executed,
                exchanges: &exchanges,
                round_trip_us,
                fault: result.fault(),
            },
        ));
        let answered = exchanges.iter().filter(|e| e.sw.is_some()).count() as u64;
        let timing_ms = round_trip.map(|d| d.as_secs_f64() * 1000.0);
        for (index, e) in exchanges.iter().enumerate() {
            if let (Some(resp), Some(sw)) = (&e.response, e.sw) {
                self.events.push(Event::ApduSent {
                    session_id: c.session_id.to_string(),
                    script_id: script.0,
                    index,
                    command_hex: to_hex(&e.command),
                    response_hex: to_hex(resp),
                    sw: format!("{sw:04X}"),
                    timing_ms,
                });
            }
        }
        self.events.push(Event::ScriptCompleted {
            session_id: c.session_id.to_string(),
            card: c.card.to_string(),
            script_id: script.0,
            status: result.as_str(),
            error: result
                .fault()
                .map(|f| format!("TLV {:02X}: {}", f.tag(), f.describe())),
            executed,
            round_trip_ms: timing_ms,
        });
        self.writes.push(StoreWrite::Results {
            script,
            result: result.as_str(),
            body: (!body.is_empty()).then(|| body.to_vec()),
            exchanges,
            round_trip_us,
        });
        self.in_flight.push(InFlightChange::Remove(script));
        self.metrics.apdus_exchanged += answered;
        self.metrics.scripts_completed.push(result.as_str());
        self.tally.push(TallyChange::Completed {
            answered,
            result: result.as_str(),
        });
    }

    fn duplicate(&mut self, script: ScriptId, identical: bool) {
        let c = self.conn;
        self.audit.push(audit::duplicate_results(
            c.card,
            c.session_id,
            script.0,
            identical,
        ));
        if !identical {
            self.notices
                .push(Notice::DuplicateDiffers { script: script.0 });
        }
    }

    fn outcome_unknown(&mut self, script: ScriptId) {
        let c = self.conn;
        self.durability = Durability::BeforeResponse;
        self.writes.push(StoreWrite::OutcomeUnknown { script });
        self.audit
            .push(audit::outcome_unknown(c.card, c.session_id, script.0));
        self.in_flight.push(InFlightChange::Remove(script));
        self.events.push(Event::ScriptOutcomeUnknown {
            session_id: c.session_id.to_string(),
            card: c.card.to_string(),
            script_id: script.0,
        });
        self.notices
            .push(Notice::OutcomeUnknown { script: script.0 });
    }

    fn finished(&mut self) {
        let c = self.conn;
        self.audit
            .push(audit::session_finished(c.card, c.session_id, c.peer));
        self.tally.push(TallyChange::Finished);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::admin::{header, ADMIN_PROTOCOL, CONTENT_TYPE_RESPONSE};
    use crate::apdu::{parse_hex, CommandApdu};
    use crate::gp;

    const CARD: &str = "card-7";
    const AGENT: &str = "//se-id/iccid/7";

    fn config(session_id: &str) -> SessionConfig {
        SessionConfig::new("/admin", session_id).unwrap()
    }

    fn conn(conn_id: u64, first_request: bool) -> Connection<'static> {
        Connection {
            conn_id,
            session_id: if conn_id == 1 { "s1" } else { "s2" },
            card: CARD,
            peer: "127.0.0.1:4000",
            first_request,
        }
    }

    fn queued(id: u64, redelivery: Redelivery) -> QueuedScript {
        QueuedScript {
            id: ScriptId(id),
            script: CommandScript::new([
                gp::get_data(gp::data_object::IIN),
                gp::get_data(gp::data_object::CIN),
                CommandApdu::new(0x80, 0x99, 0, 0),
            ]),
            targeted_application: None,
            redelivery,
        }
    }

    fn opening() -> AdminRequest {
        AdminRequest::post("/admin")
            .with_header("Host", "ota.test")
            .with_header(header::X_ADMIN_PROTOCOL, ADMIN_PROTOCOL)
            .with_header(header::X_ADMIN_FROM, AGENT)
    }

    fn results(target: &str, status: &str, body: &[u8]) -> AdminRequest {
        opening()
            .with_header(header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE)
            .with_header(header::X_ADMIN_SCRIPT_STATUS, status)
            .with_body(body)
            .retarget(target)
    }

    trait Retarget {
        fn retarget(self, target: &str) -> Self;
    }

    impl Retarget for AdminRequest {
        fn retarget(mut self, target: &str) -> Self {
            self.target = target.to_string();
            self
        }
    }

    fn resumed(req: AdminRequest) -> AdminRequest {
        req.with_header(header::X_ADMIN_RESUME, "true")
    }

    /// One request through begin, step and commit, as the adapter does with a store that
    /// always commits.
    fn run(
        state: &mut CardState,
        tally: &mut ConnTally,
        c: &Connection<'_>,
        req: &AdminRequest,
        next: Option<&QueuedScript>,
        now: Instant,
    ) -> (Vec<StoreWrite>, Vec<AuditRecord>, Committed) {
        let turn = state
            .begin(c, req.is_resume(), &config(c.session_id))
            .unwrap();
        let plan = state.step(turn, c, req, next, now).unwrap();
        let done = state.commit(plan.after, tally, now);
        (plan.writes, plan.audit, done)
    }

    fn actions(audit: &[AuditRecord]) -> Vec<&'static str> {
        audit.iter().map(|r| r.action).collect()
    }

    #[test]
    fn fresh_continue_resume_and_one_session_per_card() {
        let s1 = queued(1, Redelivery::Allowed);
        let mut state = CardState::new();
        let t0 = Instant::now();
        // First request on connection 1: a fresh session.
        let turn = state.begin(&conn(1, true), false, &config("s1")).unwrap();
        assert_eq!(turn.begin(), Begin::Fresh);
        let plan = state
            .step(turn, &conn(1, true), &opening(), Some(&s1), t0)
            .unwrap();
        state.commit(plan.after, &mut ConnTally::default(), t0);
        assert_eq!(state.owner(), Some(1));
        // Its next request continues it.
        let turn = state.begin(&conn(1, false), false, &config("s1")).unwrap();
        assert_eq!(turn.begin(), Begin::Continue);
        // A second connection of the card opening while script 1 is out: 409.
        let refusal = state
            .begin(&conn(2, true), false, &config("s2"))
            .unwrap_err();
        assert_eq!(refusal.error, AdminError::SessionInProgress);
        assert_eq!(
            (refusal.response.status, refusal.response.close),
            (409, true)
        );
        assert!(matches!(
            refusal.event("s2"),
            Event::RequestRefused { status: 409, .. }
        ));
        assert_eq!(state.owner(), Some(1), "the first session keeps the card");
        // A second connection that resumes takes it over; the first is then refused.
        let turn = state.begin(&conn(2, true), true, &config("s2")).unwrap();
        assert_eq!(turn.begin(), Begin::Resumed);
        assert_eq!(state.owner(), Some(2));
        assert_eq!(
            state
                .begin(&conn(1, false), false, &config("s1"))
                .unwrap_err()
                .error,
            AdminError::SessionTakenOver
        );
        // Once connection 2 is gone, a new opening starts over and forgets what was out.
        state.release(1);
        assert_eq!(state.owner(), Some(2), "only the holder releases");
        state.release(2);
        let turn = state.begin(&conn(3, true), false, &config("s3")).unwrap();
        assert_eq!(turn.begin(), Begin::Fresh);
        assert_eq!(state.in_flight().count(), 0);
        assert!(matches!(state.session(), Some(Session::Opening(_))));
    }

    #[test]
    fn an_opening_or_finished_session_does_not_block_a_new_connection() {
        let mut state = CardState::new();
        let turn = state.begin(&conn(1, true), false, &config("s1")).unwrap();
        // The opening is refused (wrong path): the session stays in Opening.
        let refusal = state
            .step(
                turn,
                &conn(1, true),
                &opening().retarget("/x"),
                None,
                Instant::now(),
            )
            .unwrap_err();
        assert_eq!(refusal.error.status(), 404);
        let turn = state.begin(&conn(2, true), false, &config("s2")).unwrap();
        assert_eq!(turn.begin(), Begin::Fresh);
    }

    #[test]
    fn opening_and_delivery_are_planned_then_committed() {
        let s1 = queued(1, Redelivery::Forbidden);
        let mut state = CardState::new();
        let c = conn(1, true);
        let t0 = Instant::now();
        let turn = state.begin(&c, false, &config("s1")).unwrap();
        let plan = state.step(turn, &c, &opening(), Some(&s1), t0).unwrap();
        assert_eq!(
            plan.writes,
            vec![
                StoreWrite::SessionActive {
                    session_id: "s1".into(),
                    agent: AGENT.into()
                },
                StoreWrite::Delivered {
                    script: ScriptId(1),
                    session_id: "s1".into(),
                    seq: 1,
                }
            ]
        );
        assert_eq!(
            actions(&plan.audit),
            ["ota.session.open", "ota.script.deliver"]
        );
        for r in &plan.audit {
            assert_eq!(
                (r.actor(), r.subject.as_str()),
                ("service:ota", "card:card-7")
            );
            assert_eq!(r.details["session_id"], "s1");
        }
        assert_eq!(plan.audit[1].details["script"], 1);
        assert_eq!(
            plan.audit[1].details["commands"].as_array().unwrap().len(),
            3
        );
        // Nothing moved before the commit.
        assert!(matches!(state.session(), Some(Session::Opening(_))));
        assert_eq!(state.in_flight().count(), 0);
        let mut tally = ConnTally::default();
        let done = state.commit(plan.after, &mut tally, t0);
        assert_eq!(done.response.status, 200);
        assert_eq!(state.session().unwrap().in_flight(), Some(ScriptId(1)));
        assert_eq!(state.in_flight().collect::<Vec<_>>(), vec![ScriptId(1)]);
        assert_eq!(
            (tally.scripts, tally.in_flight, tally.agent.as_deref()),
            (1, Some(1), Some(AGENT))
        );
        assert_eq!(tally.last_command.as_deref(), Some("80990000"));
        assert_eq!(done.metrics.scripts_delivered, 1);
        let names: Vec<&str> = done.events.iter().map(Event::name).collect();
        assert_eq!(
            names,
            [
                "script_delivered",
                "apdu_received",
                "apdu_received",
                "apdu_received"
            ]
        );
        let a = done.activation.unwrap();
        assert_eq!((a.agent.as_str(), a.resumed), (AGENT, false));
        assert!(matches!(
            a.event("s1", CARD),
            Event::SessionActive { resumed: false, .. }
        ));
    }

    /// What may leave before the commit: the steps of scripts that may run twice. Delivering a
    /// script that must not, and taking its results, wait for the commit.
    #[test]
    fn only_steps_of_scripts_that_may_run_twice_answer_before_the_commit() {
        let body = ResponseScript::with_responses(1, [ResponseApdu::new(vec![], 0x9000)]).encode();
        for (policy, expected) in [
            (Redelivery::Allowed, Durability::AfterResponse),
            (Redelivery::Forbidden, Durability::BeforeResponse),
        ] {
            let s1 = queued(1, policy);
            let s2 = queued(2, Redelivery::Allowed);
            let mut state = CardState::new();
            let mut tally = ConnTally::default();
            let t0 = Instant::now();
            let c = conn(1, true);
            // The opening delivers script 1.
            let turn = state.begin(&c, false, &config("s1")).unwrap();
            let plan = state.step(turn, &c, &opening(), Some(&s1), t0).unwrap();
            assert_eq!(plan.durability, expected, "{policy:?} delivery");
            state.commit(plan.after, &mut tally, t0);
            // Its results come back, and allowed script 2 goes out in the same answer.
            let c = conn(1, false);
            let turn = state.begin(&c, false, &config("s1")).unwrap();
            let req = results("/admin?session=s1&seq=1", "ok", &body);
            let plan = state.step(turn, &c, &req, Some(&s2), t0).unwrap();
            assert_eq!(plan.durability, expected, "{policy:?} results");
            state.commit(plan.after, &mut tally, t0);
        }
    }

    #[test]
    fn a_dropped_plan_leaves_the_session_where_it_was() {
        // The store failed: the adapter drops the plan; the same request is planned again.
        let s1 = queued(1, Redelivery::Allowed);
        let mut state = CardState::new();
        let c = conn(1, true);
        let t0 = Instant::now();
        let turn = state.begin(&c, false, &config("s1")).unwrap();
        let first = state.step(turn, &c, &opening(), Some(&s1), t0).unwrap();
        drop(first.after);
        assert!(matches!(state.session(), Some(Session::Opening(_))));
        let turn = state.begin(&conn(1, false), false, &config("s1")).unwrap();
        let again = state.step(turn, &c, &opening(), Some(&s1), t0).unwrap();
        assert_eq!(again.writes, first.writes);
    }

    /// Verifies: O21, O32
    #[test]
    fn results_pair_commands_with_responses_and_take_the_outcome_from_the_sw() {
        let s1 = queued(1, Redelivery::Allowed);
        let mut state = CardState::new();
        let mut tally = ConnTally::default();
        let t0 = Instant::now();
        run(
            &mut state,
            &mut tally,
            &conn(1, true),
            &opening(),
            Some(&s1),
            t0,
        );
        // The card ran two of three commands: 9000, then 6A82 and stopped.
        let body = ResponseScript::with_responses(
            2,
            [
                ResponseApdu::new(vec![0x42], 0x9000),
                ResponseApdu::new(vec![], 0x6A82),
            ],
        )
        .encode();
        let req = results("/admin?session=s1&seq=1", "ok", &body);
        let later = t0 + Duration::from_millis(7);
        let (writes, audit, done) = run(&mut state, &mut tally, &conn(1, false), &req, None, later);
        let StoreWrite::Results {
            script,
            result,
            body: stored,
            exchanges,
            round_trip_us,
        } = &writes[0]
        else {
            panic!("{writes:?}")
        };
        assert_eq!((*script, *result), (ScriptId(1), "ok"));
        assert_eq!(stored.as_deref(), Some(&body[..]));
        assert_eq!(*round_trip_us, Some(7000));
        assert_eq!(
            exchanges.iter().map(|e| e.sw).collect::<Vec<_>>(),
            [Some(0x9000), Some(0x6A82), None]
        );
        assert_eq!(
            exchanges[0].command,
            s1.script.apdus().next().unwrap().to_bytes()
        );
        assert_eq!(
            exchanges[0].response.as_deref(),
            Some(&[0x42, 0x90, 0x00][..])
        );
        assert_eq!(
            actions(&audit),
            ["ota.script.complete", "ota.session.finish"]
        );
        // Every exchange is in the completion record, with the outcome its SW means.
        let outcomes: Vec<&str> = audit[0].details["exchanges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["success", "failure", "failure"]);
        assert_eq!(audit[0].details["exchanges"][1]["sw"], "6A82");
        assert!(audit[0].details["exchanges"][2]["sw"].is_null());
        assert_eq!(audit[0].outcome, Outcome::Success);
        assert_eq!(audit[0].details["executed"], 2);
        assert_eq!(done.response.status, 204);
        assert_eq!(done.metrics.apdus_exchanged, 2);
        assert_eq!(done.metrics.scripts_completed, ["ok"]);
        assert_eq!(
            (tally.apdus, tally.in_flight, tally.finished),
            (2, None, true)
        );
        assert_eq!(state.in_flight().count(), 0);
        let sent: Vec<&Event> = done
            .events
            .iter()
            .filter(|e| e.name() == "apdu_sent")
            .collect();
        assert_eq!(
            sent.len(),
            2,
            "commands that did not run are not reported as sent"
        );
    }

    #[test]
    fn apdu_outcome_from_the_status_word() {
        let e = |sw: Option<u16>| Exchange {
            command: vec![0, 0xA4, 4, 0],
            response: sw.map(|sw| sw.to_be_bytes().to_vec()),
            sw,
        };
        assert_eq!(e(Some(0x9000)).outcome(), Outcome::Success);
        assert_eq!(e(Some(0x6112)).outcome(), Outcome::Success);
        assert_eq!(e(Some(0x6283)).outcome(), Outcome::Success, "warning");
        assert_eq!(e(Some(0x6A82)).outcome(), Outcome::Failure);
        assert_eq!(e(Some(0x6D00)).outcome(), Outcome::Failure);
        assert_eq!(e(None).outcome(), Outcome::Failure, "not run");
    }

    #[test]
    fn error_statuses_and_error_tlvs_are_the_scripts_result() {
        assert_eq!(ScriptResult::of(ScriptStatus::Ok, None).as_str(), "ok");
        assert_eq!(
            ScriptResult::of(ScriptStatus::SecurityError, None).as_str(),
            "security-error"
        );
        for (hex, name) in [
            ("ab06800101900101", "bad-format"),
            ("ab06800101810101", "immediate-action-error"),
            ("ab06800101830101", "script-chaining-error"),
        ] {
            let s1 = queued(1, Redelivery::Allowed);
            let mut state = CardState::new();
            let mut tally = ConnTally::default();
            let t0 = Instant::now();
            run(
                &mut state,
                &mut tally,
                &conn(1, true),
                &opening(),
                Some(&s1),
                t0,
            );
            let body = parse_hex(hex).unwrap();
            let req = results("/admin?session=s1&seq=1", "ok", &body);
            let (writes, audit, done) =
                run(&mut state, &mut tally, &conn(1, false), &req, None, t0);
            assert!(
                matches!(&writes[0], StoreWrite::Results { result, .. } if *result == name),
                "{hex}: {writes:?}"
            );
            let complete = audit
                .iter()
                .find(|r| r.action == "ota.script.complete")
                .unwrap();
            assert_eq!(complete.outcome, Outcome::Failure, "{hex}");
            assert_eq!(complete.details["result"], name);
            assert_eq!(complete.details["script_status"], "ok");
            assert_eq!(complete.details["executed"], 1);
            assert_eq!(
                complete.details["error"]["tlv"],
                hex[10..12].to_ascii_uppercase()
            );
            assert!(done.events.iter().any(|e| matches!(
                e,
                Event::ScriptCompleted { status, error: Some(_), .. } if *status == name
            )));
            assert_eq!(tally.last_status.as_deref(), Some(name));
        }
    }

    #[test]
    fn a_status_only_report_is_the_result_and_nothing_is_paired() {
        let s1 = queued(1, Redelivery::Allowed);
        let mut state = CardState::new();
        let mut tally = ConnTally::default();
        let t0 = Instant::now();
        run(
            &mut state,
            &mut tally,
            &conn(1, true),
            &opening(),
            Some(&s1),
            t0,
        );
        let mut req = results("/admin?session=s1&seq=1", "security-error", &[]);
        req.headers.retain(|(n, _)| n != header::CONTENT_TYPE);
        let (writes, audit, _) = run(&mut state, &mut tally, &conn(1, false), &req, None, t0);
        match &writes[0] {
            StoreWrite::Results {
                result,
                body,
                exchanges,
                ..
            } => {
                assert_eq!((*result, body), ("security-error", &None));
                assert!(exchanges.iter().all(|e| e.sw.is_none()));
            }
            other => panic!("{other:?}"),
        }
        let complete = audit
            .iter()
            .find(|r| r.action == "ota.script.complete")
            .unwrap();
        assert_eq!(complete.outcome, Outcome::Failure);
    }

    #[test]
    fn duplicates_are_audited_not_stored_and_redelivery_reuses_the_script() {
        let s1 = queued(1, Redelivery::Allowed);
        let s2 = queued(2, Redelivery::Allowed);
        let mut state = CardState::new();
        let mut tally = ConnTally::default();
        let t0 = Instant::now();
        run(
            &mut state,
            &mut tally,
            &conn(1, true),
            &opening(),
            Some(&s1),
            t0,
        );
        let body = ResponseScript::with_responses(1, [ResponseApdu::new(vec![], 0x9000)]).encode();
        let req = results("/admin?session=s1&seq=1", "ok", &body);
        run(&mut state, &mut tally, &conn(1, false), &req, Some(&s2), t0);
        // Our answer (script 2) was lost: the card resumes with the same results on
        // connection 2.
        state.release(1);
        let c2 = conn(2, true);
        let mut tally2 = ConnTally::default();
        let (writes, audit, done) = run(
            &mut state,
            &mut tally2,
            &c2,
            &resumed(req.clone()),
            None,
            t0,
        );
        assert_eq!(
            writes,
            vec![StoreWrite::Delivered {
                script: ScriptId(2),
                session_id: "s2".into(),
                seq: 2,
            }],
            "the results are not stored again; script 2 goes out again"
        );
        assert_eq!(
            actions(&audit),
            ["ota.script.duplicate_results", "ota.script.deliver"]
        );
        assert_eq!(audit[0].details["identical"], true);
        assert_eq!(audit[1].details["redelivery"], true);
        assert_eq!(audit[1].details["commands"].as_array().unwrap().len(), 3);
        assert!(done.notices.is_empty());
        assert!(done.activation.unwrap().resumed);
        assert_eq!((tally2.scripts, tally2.in_flight), (0, Some(2)));
        // A differing repeat is flagged for the operator.
        let other = ResponseScript::with_responses(1, [ResponseApdu::new(vec![], 0x6A82)]).encode();
        let req = resumed(results("/admin?session=s1&seq=1", "ok", &other));
        let (writes, _, done) = run(&mut state, &mut tally2, &conn(2, false), &req, None, t0);
        assert!(!writes
            .iter()
            .any(|w| matches!(w, StoreWrite::Results { .. })));
        assert_eq!(done.notices, vec![Notice::DuplicateDiffers { script: 1 }]);
    }

    #[test]
    fn an_unsafe_script_lost_on_resume_becomes_outcome_unknown() {
        let install = queued(1, Redelivery::Forbidden);
        let mut state = CardState::new();
        let mut tally = ConnTally::default();
        let t0 = Instant::now();
        run(
            &mut state,
            &mut tally,
            &conn(1, true),
            &opening(),
            Some(&install),
            t0,
        );
        state.release(1);
        let (writes, audit, done) = run(
            &mut state,
            &mut ConnTally::default(),
            &conn(2, true),
            &resumed(opening()),
            None,
            t0,
        );
        assert_eq!(
            writes,
            vec![StoreWrite::OutcomeUnknown {
                script: ScriptId(1)
            }]
        );
        assert_eq!(
            actions(&audit),
            ["ota.script.outcome_unknown", "ota.session.finish"]
        );
        assert_eq!(audit[0].outcome, Outcome::Error);
        assert_eq!(done.notices, vec![Notice::OutcomeUnknown { script: 1 }]);
        assert!(done
            .events
            .iter()
            .any(|e| e.name() == "script_outcome_unknown"));
        assert_eq!(done.response.status, 204);
        assert_eq!(state.in_flight().count(), 0);
    }

    #[test]
    fn lenient_opening_is_reported_with_the_activation() {
        let mut state = CardState::new();
        let req = opening().with_header(header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE);
        let (_, audit, done) = run(
            &mut state,
            &mut ConnTally::default(),
            &conn(1, true),
            &req,
            None,
            Instant::now(),
        );
        assert_eq!(
            done.activation.unwrap().lenient,
            vec!["content_type_on_opening"]
        );
        assert_eq!(audit[0].details["lenient"][0], "content_type_on_opening");
        assert_eq!(done.response.status, 204);
    }

    #[test]
    fn queued_scripts_are_checked_before_they_are_sent() {
        let body = CommandScript::new([gp::get_data(gp::data_object::IIN)]).encode();
        let q = queued_script(
            4,
            &body,
            Some("//aid/A000000151/000000"),
            Redelivery::Allowed,
        )
        .unwrap();
        assert_eq!(q.id, ScriptId(4));
        assert!(q.targeted_application.is_some());
        assert!(matches!(
            queued_script(5, &[0xAA], None, Redelivery::Allowed),
            Err(QueueError::Body { id: 5, .. })
        ));
        assert!(matches!(
            queued_script(6, &body, Some("//aid/zz"), Redelivery::Allowed),
            Err(QueueError::TargetedApplication { id: 6, .. })
        ));
    }
}
