//! `warden shim`: run the serial MFA shim daemon, and reset or query it over its local socket.
//!
//! The daemon's host ([`StoreHost`]) keeps everything in the store: technicians are checked by
//! the identity layer (TOTP, replay, lockout of user and port), every transition, session,
//! alert and reset goes into the audit chain — and from there into the SIEM spool in the same
//! transaction — heartbeats go to the spool, and the emergency stop is persisted.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use warden_core::audit::{NewEvent, Outcome};
use warden_core::keyring::Purpose;
use warden_core::lockout::LockoutPolicy;
use warden_core::rbac::Permission;
use warden_core::sealed_config::ConfigSealer;
use warden_shim::config::ShimConfig;
use warden_shim::daemon::control::{self, ControlRequest};
use warden_shim::daemon::{Daemon, DaemonPaths, HostError, ShimEvent, ShimHost};
use warden_shim::machine::{AuthDecision, StateName};
use warden_store::audit::{timestamp_now, AuditLog};
use warden_store::identity::{AuthOutcome, Identity, PortId, Principal, UnixMs};
use warden_store::spool::{Spool, SpoolKind, SpoolLimits, SpoolPayload};
use warden_store::{Database, StoreError};

use crate::cli::{ActorArgs, GlobalArgs};
use crate::keys::Unlocker;

#[derive(Debug, Subcommand)]
pub enum ShimCommand {
    /// Run the shim daemon (foreground) with this configuration (plain or sealed YAML).
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show the daemon's state.
    Status {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Measure latency and throughput through a throwaway shim on PTYs, next to socat.
    Bench {
        /// One-byte round trips to time.
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
        /// MiB sent one way for the throughput figure.
        #[arg(long, default_value_t = 16)]
        mib: usize,
    },
    /// Return a LOCKED or EMERGENCY_STOP shim to IDLE (an administrator signs in).
    Reset {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        actor: ActorArgs,
    },
}

pub fn run(cmd: &ShimCommand, global: &GlobalArgs) -> Result<()> {
    match cmd {
        ShimCommand::Run { config } => run_daemon(config, global),
        ShimCommand::Bench { rounds, mib } => crate::cmd::shim_bench::run(*rounds, *mib),
        ShimCommand::Status { config } => {
            let (config, _) = load_config(config, global)?;
            let reply = control::request(&config.control_socket, &ControlRequest::Status)?;
            println!("{} {}: {}", config.shim_id, reply.state, reply.message);
            Ok(())
        }
        ShimCommand::Reset { config, actor } => {
            let (config, _) = load_config(config, global)?;
            let (mut session, authorized) =
                crate::cmd::user::sign_in_for(global, actor, Permission::ShimReset, "shim.reset")?;
            // Lift the persisted port lock first (audited by the identity layer), then tell the
            // daemon, which returns to IDLE and records the reset.
            let port = PortId::parse(&config.shim_id)?;
            session.identity.unlock(
                &mut session.db,
                &authorized,
                &Principal::Port(port),
                UnixMs::now(),
            )?;
            warden_store::shim::set_emergency_stop(
                &session.db,
                &config.shim_id,
                false,
                &format!("reset by {}", authorized.actor_name()),
            )?;
            let reply = control::request(
                &config.control_socket,
                &ControlRequest::Reset {
                    admin: authorized.actor_name().to_string(),
                },
            )?;
            if !reply.ok {
                bail!("the shim refused the reset: {}", reply.message);
            }
            println!("{}: {}", config.shim_id, reply.message);
            Ok(())
        }
    }
}

/// Reads the configuration (sealed with `warden config seal` or plain) and parses it once.
pub fn load_config(path: &Path, global: &GlobalArgs) -> Result<(ShimConfig, Vec<u8>)> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = if ConfigSealer::looks_sealed(&raw) {
        let mut unlocker = Unlocker::open(global)?;
        let sealer = ConfigSealer::new(&unlocker.key(Purpose::Config)?);
        sealer.open(&raw)?.expose_secret().to_vec()
    } else {
        raw
    };
    let text = std::str::from_utf8(&bytes).context("the configuration is not UTF-8")?;
    let config = ShimConfig::parse(text)
        .with_context(|| format!("invalid configuration {}", path.display()))?;
    Ok((config, bytes))
}

fn run_daemon(path: &Path, global: &GlobalArgs) -> Result<()> {
    let (config, bytes) = load_config(path, global)?;
    let mut unlocker = Unlocker::open(global)?;
    let keys = DaemonKeys {
        database: unlocker.key(Purpose::Database)?,
        audit: unlocker.key(Purpose::Audit)?,
        recordings: unlocker.key(Purpose::Recordings)?,
        config: unlocker.key(Purpose::Config)?,
    };
    eprintln!(
        "warden shim {}: technician {} <-> device {} ({}); control socket {}",
        config.shim_id,
        config.technician_port.path.display(),
        config.device_port.path.display(),
        config.device_name,
        config.control_socket.display()
    );
    let (daemon, _runtime) = build_daemon(config, &bytes, &unlocker.dir, keys)?;
    daemon.run(true)?;
    Ok(())
}

/// The purpose keys a daemon needs.
pub struct DaemonKeys {
    pub database: warden_core::secret::Key32,
    pub audit: warden_core::secret::Key32,
    pub recordings: warden_core::secret::Key32,
    pub config: warden_core::secret::Key32,
}

/// Opens the ports and the store and builds the daemon (not yet running). The returned runtime
/// carries the SIEM forwarder, when one is configured; keep it alive while the daemon runs.
pub fn build_daemon(
    config: ShimConfig,
    bytes: &[u8],
    dir: &warden_core::datadir::DataDir,
    keys: DaemonKeys,
) -> Result<(Daemon<StoreHost>, tokio::runtime::Runtime)> {
    let db_path = dir.root().join(warden_store::DB_FILE);
    let db = Database::open(&db_path, &keys.database)?;
    let mut identity = Identity::load(&db, keys.database.clone(), keys.audit.clone())?;
    // The shim's own lockout thresholds; attempt spacing stays as the identity policy says.
    let backoff = identity.policy().backoff;
    identity.set_lockout_policy(
        LockoutPolicy::new(config.lockout.max_failures, config.lockout.window_secs.0)?,
        backoff,
    );
    identity.set_totp_window(warden_core::totp::Window::new(
        config.totp.window,
        config.totp.window,
    )?);

    // SIEM forwarding, when configured: a forwarder task on its own connection drains the spool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let forwarder = match &config.siem {
        None => None,
        Some(_) => {
            let settings = warden_siem::SiemConfig::from_yaml_document(bytes)?.validate()?;
            let sealer = ConfigSealer::new(&keys.config);
            let client = warden_siem::TlsClient::from_settings(&settings, Some(&sealer))?;
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
        db,
        identity,
        audit: AuditLog::forwarding_to_siem(keys.audit),
        spool: Spool::new(SpoolLimits::default()),
        port: PortId::parse(&config.shim_id)?,
        shim_id: config.shim_id.clone(),
        forwarder,
    };
    let daemon = Daemon::new(config, bytes, paths, keys.recordings, host)?;
    Ok((daemon, runtime))
}

/// The daemon's host: identity, audit chain, SIEM spool, persisted emergency stop.
pub struct StoreHost {
    db: Database,
    identity: Identity,
    audit: AuditLog,
    spool: Spool,
    port: PortId,
    shim_id: String,
    forwarder: Option<warden_siem::ForwarderHandle>,
}

fn exhausted(err: StoreError) -> HostError {
    // Whatever stops the store from keeping an event stops the shim from forwarding.
    HostError::StorageExhausted(err.to_string())
}

impl StoreHost {
    fn audit(
        &mut self,
        actor: &str,
        action: &str,
        subject: &str,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<(), HostError> {
        let event =
            NewEvent::new(timestamp_now(), actor, action, subject, outcome).with_details(details);
        self.audit
            .append(&mut self.db, vec![event])
            .map_err(exhausted)?;
        self.wake_forwarder();
        Ok(())
    }

    fn wake_forwarder(&self) {
        if let Some(forwarder) = &self.forwarder {
            forwarder.notify();
        }
    }
}

impl ShimHost for StoreHost {
    fn persisted_state(&mut self) -> Result<(bool, bool), HostError> {
        let lock = self
            .identity
            .lock_state(&self.db, &Principal::Port(self.port.clone()), UnixMs::now())
            .map_err(|e| HostError::Failed(e.to_string()))?;
        let stop =
            warden_store::shim::emergency_stop(&self.db, &self.shim_id).map_err(exhausted)?;
        Ok((lock.locked, stop))
    }

    fn authenticate(&mut self, technician_id: &str, code: &str) -> Result<AuthDecision, HostError> {
        let outcome = self
            .identity
            .authenticate_technician(
                &mut self.db,
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

    fn record(&mut self, event: ShimEvent<'_>) -> Result<(), HostError> {
        let shim = self.shim_id.clone();
        match event {
            ShimEvent::Started { config_sha256 } => self.audit(
                "warden",
                "shim.start",
                &shim,
                Outcome::Success,
                json!({ "config_sha256": config_sha256 }),
            ),
            ShimEvent::Stopping => {
                self.audit("warden", "shim.stop", &shim, Outcome::Success, json!({}))
            }
            ShimEvent::Transition { from, to, reason } => {
                if to == StateName::EmergencyStop {
                    warden_store::shim::set_emergency_stop(&self.db, &shim, true, reason)
                        .map_err(exhausted)?;
                }
                self.audit(
                    "warden",
                    "shim.transition",
                    &shim,
                    Outcome::Success,
                    json!({ "from": from.as_str(), "to": to.as_str(), "reason": reason }),
                )
            }
            ShimEvent::SessionOpened {
                session_id,
                technician_id,
                file,
            } => self.audit(
                technician_id,
                "session.open",
                &shim,
                Outcome::Success,
                json!({ "session_id": session_id.to_string(), "file": file.display().to_string() }),
            ),
            ShimEvent::SessionClosed {
                session_id,
                technician_id,
                recording,
                reason,
            } => self.audit(
                technician_id,
                "session.close",
                &shim,
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
            ),
            ShimEvent::Alert { source, file } => {
                // The alert jumps the SIEM queue (tamper class) and is in the chain too.
                let tx = self
                    .db
                    .conn_mut()
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| exhausted(e.into()))?;
                let payload = SpoolPayload {
                    action: Some("tamper".into()),
                    tamper_source: Some(source.to_string()),
                    message: Some(format!("{shim}: {source}")),
                    ..SpoolPayload::default()
                };
                let _ = self
                    .spool
                    .enqueue(
                        &tx,
                        SpoolKind::TamperAlert,
                        warden_store::spool::now_ms(),
                        &payload,
                    )
                    .map_err(|e| exhausted(e.into()))?;
                let event = NewEvent::new(
                    timestamp_now(),
                    "warden",
                    "shim.tamper",
                    &shim,
                    Outcome::Failure,
                )
                .with_details(
                    json!({ "source": source, "alert_file": file.display().to_string() }),
                );
                let appended = self.audit.append_in(&tx, vec![event]).map_err(exhausted)?;
                tx.commit().map_err(|e| exhausted(e.into()))?;
                if appended.evolved {
                    AuditLog::erase_old_keys(&self.db).map_err(exhausted)?;
                }
                self.wake_forwarder();
                Ok(())
            }
            ShimEvent::Heartbeat { counter, .. } => {
                // Heartbeats go to the SIEM only (lowest priority), not into the audit chain.
                let _ = self
                    .spool
                    .enqueue_heartbeat(self.db.conn(), counter, warden_store::spool::now_ms())
                    .map_err(|e| exhausted(e.into()))?;
                self.wake_forwarder();
                Ok(())
            }
            ShimEvent::PortLock { locked } => self.audit(
                "warden",
                "shim.port_lock",
                &shim,
                Outcome::Success,
                json!({ "locked": locked }),
            ),
            ShimEvent::Reset { admin, from } => {
                warden_store::shim::set_emergency_stop(
                    &self.db,
                    &shim,
                    false,
                    &format!("reset by {admin}"),
                )
                .map_err(exhausted)?;
                self.audit(
                    admin,
                    "shim.reset",
                    &shim,
                    Outcome::Success,
                    json!({ "from": from.as_str() }),
                )
            }
            ShimEvent::PortLost { port, error } => self.audit(
                "warden",
                "shim.port_lost",
                &shim,
                Outcome::Error,
                json!({ "port": port, "error": error }),
            ),
        }
    }
}
