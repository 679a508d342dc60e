//! The daemon's host over the store: technicians are checked by the identity layer (TOTP,
//! replay, lockout of user and port), every transition, session, alert and reset goes into the
//! audit chain — and from there into the SIEM spool in the same transaction — heartbeats go to
//! the spool, and the emergency stop is persisted with the event that set it.
//!
//! The daemon acts as its service principal (`service:shim:ID`): that name is the actor of its
//! own events; sessions are recorded under the technician who signed in at the port.

use std::path::Path;

use serde_json::json;
use warden_core::audit::{NewEvent, Outcome};
use warden_core::datadir::DataDir;
use warden_core::lockout::LockoutPolicy;
use warden_core::rbac::Permission;
use warden_core::report::report;
use warden_core::sealed_config::ConfigSealer;
use warden_core::secret::Key32;
use warden_store::identity::{AuthOutcome, Authorized, PortId, Service, UnixMs};
use warden_store::spool::{Spool, SpoolKind, SpoolLimits, SpoolPayload};
use warden_store::{Database, Store, StoreError};

use crate::config::ShimConfig;
use crate::daemon::control::{self, ControlError, ControlReply, ControlRequest};
use crate::daemon::{Daemon, DaemonPaths, HostError, ResetDecision, ShimEvent, ShimHost};
use crate::machine::{AuthDecision, StateName};

#[derive(Debug, thiserror::Error)]
pub enum ShimOpError {
    #[error(transparent)]
    Authorization(#[from] warden_store::identity::WrongAuthorization),
    #[error(transparent)]
    Reset(#[from] warden_store::shim::ResetError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The daemon could not be reached; nothing was changed (the reason is audited).
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// The running daemon's state, asked over its control socket. Needs `shim.status`; audited.
pub fn status(
    store: &mut Store,
    by: &Authorized,
    socket: &Path,
    subject: &str,
) -> Result<ControlReply, ShimOpError> {
    by.check(Permission::ShimStatus)?;
    let reply = control::request(socket, &ControlRequest::Status);
    let event = match &reply {
        Ok(reply) => by
            .event("shim.status", subject, Outcome::Success)
            .with_details(json!({ "state": reply.state })),
        Err(err) => by
            .event("shim.status", subject, Outcome::Error)
            .with_details(json!({ "error": report(err) })),
    };
    store.append(vec![event])?;
    Ok(reply?)
}

/// An administrator asks the running daemon of `port` to reset (needs `shim.reset`). The
/// request is stored with its own event; the daemon settles it (done, or refused while tamper
/// persists) and records `shim.reset`. With the daemon down, or gone before it answered, the
/// request is settled as refused and the `shim.reset` failure says why: nothing changes until
/// the daemon itself carries out a reset.
pub fn reset(
    store: &mut Store,
    by: &Authorized,
    port: &PortId,
    socket: &std::path::Path,
) -> Result<ControlReply, ShimOpError> {
    by.check(Permission::ShimReset)?;
    if let Err(err) = control::request(socket, &ControlRequest::Status) {
        warden_store::shim::abandon_reset(
            store,
            by,
            port,
            None,
            &format!("the daemon is not running: {err}"),
            UnixMs::now().0,
        )?;
        return Err(err.into());
    }
    let request = warden_store::shim::request_reset(store, by, port, UnixMs::now().0)?;
    match control::request(socket, &ControlRequest::Reset { request }) {
        Ok(reply) => Ok(reply),
        Err(err) => {
            warden_store::shim::abandon_reset(
                store,
                by,
                port,
                Some(request),
                &format!("the daemon did not answer: {err}"),
                UnixMs::now().0,
            )?;
            Err(err.into())
        }
    }
}

/// The purpose keys the daemon needs.
pub struct DaemonKeys {
    pub database: Key32,
    pub audit: Key32,
    pub recordings: Key32,
    /// The `config` key, as the sealer that opens sealed key files (with its clock skew).
    pub config: ConfigSealer,
    /// The `signing` key, when the daemon's slot carries it: audit checkpoints are signed.
    pub signing: Option<Key32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Identity(#[from] warden_store::identity::IdentityError),
    #[error(transparent)]
    Auth(#[from] warden_store::identity::AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lockout(#[from] warden_core::lockout::LockoutConfigError),
    #[error(transparent)]
    Totp(#[from] warden_core::totp::TotpParamsError),
    #[error("the siem section: {0}")]
    Siem(String),
    #[error("cannot start the SIEM forwarder's runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
}

// Implements: S42, S47
/// Opens the ports and the store and builds the daemon (not yet running). The returned runtime
/// carries the SIEM forwarder, when one is configured; keep it alive while the daemon runs.
pub fn build_daemon(
    config: ShimConfig,
    bytes: &[u8],
    dir: &DataDir,
    keys: DaemonKeys,
) -> Result<(Daemon<StoreHost>, tokio::runtime::Runtime), SetupError> {
    let db_path = dir.root().join(warden_store::DB_FILE);
    let mut store = Store::open(dir, keys.database.clone(), keys.audit.clone())?;
    if let Some(seed) = &keys.signing {
        store.set_checkpoint_signer(warden_core::signing::CheckpointSigner::from_seed(seed));
    }
    // The shim's own lockout thresholds; attempt spacing stays as the identity policy says.
    let backoff = store.identity.policy().backoff;
    store.identity.set_lockout_policy(
        LockoutPolicy::new(config.lockout.max_failures, config.lockout.window_secs.0)?,
        backoff,
    );
    store
        .identity
        .set_totp_window(warden_core::totp::Window::new(
            config.totp.window,
            config.totp.window,
        )?);
    let port = PortId::parse(&config.shim_id)?;
    let service = Service::Shim(port.clone());
    let reset = store.identity.service(
        &mut store.db,
        &service,
        Permission::ShimReset,
        "shim.reset",
        UnixMs::now(),
    )?;

    // SIEM forwarding, when configured: a forwarder task on its own connection drains the spool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(SetupError::Runtime)?;
    // With a `siem:` section its spool limits hold for everything this daemon queues (audit
    // records and heartbeats); without one, the defaults every command uses.
    let mut limits = SpoolLimits::default();
    let forwarder = match &config.siem {
        None => None,
        Some(_) => {
            let settings = warden_siem::SiemConfig::from_yaml_document(bytes)
                .and_then(|c| c.validate())
                .map_err(|e| SetupError::Siem(report(&e)))?;
            limits = settings.spool;
            store.set_siem_limits(limits);
            let client = warden_siem::TlsClient::from_settings(&settings, Some(&keys.config))
                .map_err(|e| SetupError::Siem(report(&e)))?;
            let forwarder_db = Database::open(&db_path, &keys.database)?;
            let _guard = runtime.enter();
            Some(warden_siem::spawn(forwarder_db, &settings, client))
        }
    };
    let paths = DaemonPaths {
        sessions: dir.sessions(),
        heartbeats: dir.heartbeats(),
        alerts: dir.alerts(),
    };
    let host = StoreHost {
        store,
        actor: service.name(),
        reset,
        spool: Spool::new(limits),
        port,
        forwarder,
    };
    // Sessions are sealed under their own key, derived from the recordings purpose key.
    let session_key = crate::recording::session_key(&keys.recordings);
    let daemon = Daemon::new(config, bytes, paths, session_key, host)?;
    Ok((daemon, runtime))
}

/// The daemon's host: identity, audit chain, SIEM spool, persisted emergency stop.
pub struct StoreHost {
    store: Store,
    /// The service principal's name, the actor of the daemon's own events.
    actor: String,
    /// The service principal's `shim.reset`, used to settle administrators' requests.
    reset: Authorized,
    spool: Spool,
    port: PortId,
    forwarder: Option<warden_siem::ForwarderHandle>,
}

fn exhausted(err: StoreError) -> HostError {
    // Whatever stops the store from keeping an event stops the shim from forwarding.
    HostError::StorageExhausted(report(&err))
}

impl StoreHost {
    fn event(
        &self,
        actor: &str,
        action: &str,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> NewEvent {
        NewEvent::new(
            warden_store::audit::timestamp_now(),
            actor,
            action,
            self.port.as_str(),
            outcome,
        )
        .with_details(details)
    }

    /// Keeps `event`, and runs `also` in the same transaction.
    fn keep(
        &mut self,
        event: NewEvent,
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<(), HostError> {
        self.store
            .transact(|tx| {
                also(tx)?;
                tx.audit_one(event)
            })
            .map_err(exhausted)?;
        self.wake_forwarder();
        Ok(())
    }

    fn own(
        &mut self,
        action: &str,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<(), HostError> {
        let event = self.event(&self.actor.clone(), action, outcome, details);
        self.keep(event, |_| Ok(()))
    }

    fn wake_forwarder(&self) {
        if let Some(forwarder) = &self.forwarder {
            forwarder.notify();
        }
    }
}

impl ShimHost for StoreHost {
    /// The box's persisted state: a port lock or an emergency stop set under any shim id counts
    /// (a daemon restarted under another id must not open a stopped box).
    fn persisted_state(&mut self) -> Result<(bool, bool), HostError> {
        let locked = self
            .store
            .identity
            .any_port_locked(&self.store.db)
            .map_err(exhausted)?;
        let stop = warden_store::shim::emergency_stop(&self.store.db).map_err(exhausted)?;
        if let Some(other) = stop.as_ref().filter(|id| *id != self.port.as_str()) {
            tracing::warn!(stopped_by = %other, "this box is in emergency stop (set under another shim id)");
        }
        Ok((locked, stop.is_some()))
    }

    fn authenticate(&mut self, technician_id: &str, code: &str) -> Result<AuthDecision, HostError> {
        let outcome = self
            .store
            .identity
            .authenticate_technician(
                &mut self.store.db,
                technician_id,
                code.as_bytes(),
                UnixMs::now(),
                &self.port,
            )
            .map_err(exhausted)?;
        self.wake_forwarder();
        Ok(match outcome {
            AuthOutcome::Accepted { username, .. } => AuthDecision::Accepted {
                technician_id: username,
            },
            AuthOutcome::Rejected { retry_after_ms } => AuthDecision::Rejected { retry_after_ms },
            AuthOutcome::LockedOut => AuthDecision::LockedOut,
        })
    }

    // Implements: S10, S12, S20
    fn record(&mut self, event: ShimEvent<'_>) -> Result<(), HostError> {
        match event {
            ShimEvent::Started { config_sha256 } => self.own(
                "shim.start",
                Outcome::Success,
                json!({ "config_sha256": config_sha256 }),
            ),
            ShimEvent::Stopping => self.own("shim.stop", Outcome::Success, json!({})),
            ShimEvent::TamperUnavailable { source, reason } => self.own(
                "shim.tamper.unavailable",
                Outcome::Failure,
                json!({ "source": source, "reason": reason }),
            ),
            ShimEvent::Transition { from, to, reason } => {
                let event = self.event(
                    &self.actor,
                    "shim.transition",
                    Outcome::Success,
                    json!({ "from": from.as_str(), "to": to.as_str(), "reason": reason }),
                );
                let shim = self.port.as_str().to_owned();
                let reason = reason.to_owned();
                // The persisted stop and the event that says why commit together.
                self.keep(event, move |tx| {
                    if to == StateName::EmergencyStop {
                        warden_store::shim::set_emergency_stop(tx, &shim, true, &reason)?;
                    }
                    Ok(())
                })
            }
            ShimEvent::SessionOpened {
                session_id,
                technician_id,
                file,
            } => {
                let event = self.event(
                    technician_id,
                    "session.open",
                    Outcome::Success,
                    json!({ "session_id": session_id.to_string(), "file": file.display().to_string() }),
                );
                self.keep(event, |_| Ok(()))
            }
            ShimEvent::SessionClosed {
                session_id,
                technician_id,
                recording,
                reason,
            } => {
                let event = self.event(
                    technician_id,
                    "session.close",
                    if recording.complete {
                        Outcome::Success
                    } else {
                        Outcome::Error
                    },
                    json!({
                        "session_id": session_id.to_string(),
                        "file": recording.path.display().to_string(),
                        "sha256": hex::encode(recording.sha256),
                        "file_bytes": recording.file_bytes,
                        "chunks": recording.chunks,
                        "complete": recording.complete,
                        "reason": reason,
                    }),
                );
                self.keep(event, |_| Ok(()))
            }
            ShimEvent::Alert { source, file } => {
                // The alert jumps the SIEM queue (tamper class) and is in the chain too.
                let payload = SpoolPayload {
                    action: Some("tamper".into()),
                    tamper_source: Some(source.to_string()),
                    message: Some(format!("{}: {source}", self.port.as_str())),
                    ..SpoolPayload::default()
                };
                let event = self.event(
                    &self.actor,
                    "shim.tamper",
                    Outcome::Failure,
                    json!({ "source": source, "alert_file": file.display().to_string() }),
                );
                let spool = self.spool;
                self.keep(event, move |tx| {
                    spool
                        .enqueue(
                            tx,
                            SpoolKind::TamperAlert,
                            warden_store::spool::now_ms(),
                            &payload,
                        )
                        .map(drop)
                        .map_err(StoreError::from)
                })
            }
            ShimEvent::Heartbeat { counter, .. } => {
                // Heartbeats go to the SIEM only (lowest priority), not into the audit chain.
                let _ = self
                    .spool
                    .enqueue_heartbeat(self.store.db.conn(), counter, warden_store::spool::now_ms())
                    .map_err(|e| exhausted(e.into()))?;
                self.wake_forwarder();
                Ok(())
            }
            ShimEvent::PortLock { locked } => self.own(
                "shim.port_lock",
                Outcome::Success,
                json!({ "locked": locked }),
            ),
            ShimEvent::PortLost { port, error } => self.own(
                "shim.port_lost",
                Outcome::Error,
                json!({ "port": port, "error": error }),
            ),
        }
    }

    fn reset(
        &mut self,
        request: u64,
        from: StateName,
        tamper_active: &[String],
    ) -> Result<ResetDecision, HostError> {
        let decision = warden_store::shim::perform_reset(
            &mut self.store,
            &self.reset,
            &self.port,
            request,
            from.as_str(),
            tamper_active,
            UnixMs::now().0,
        )
        .map_err(|e| HostError::StorageExhausted(report(&e)))?;
        self.wake_forwarder();
        Ok(decision)
    }
}
