//! What people do through the dashboard, on the dashboard's own connection to the database
//! (not the server's database thread, so Argon2id and operators' reads never hold up a card):
//! sign in, read a card's history, push a script, sign out.
//!
//! Each act goes through the same gate as the CLI: `warden_store::identity` signs the person
//! in (failures count toward their lockout and are audited as `anonymous`), `Identity::require`
//! turns the signed-in user into an `Authorized` for one permission or records the denial
//! (`ACTION.denied`), and the `warden_ota::ops` operation commits its change with its audit
//! event under that user. Before every privileged act the user is read again
//! (`Identity::recheck`), so disabling someone ends what their open session can do.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use warden_core::audit::Outcome;
use warden_core::password::Password;
use warden_core::rbac::Permission;
use warden_store::identity::{AuthError, AuthenticatedUser, SignInChannel, UnixMs};
use warden_store::ota::{self as db, OtaStoreError};
use warden_store::{Store, StoreError};

use crate::ops::{self, OtaOpError};
use crate::script::CommandScript;
use crate::scriptfile::PlannedScript;
use crate::store::audit_event;

use super::push::{PushError, PushPreview, Targets};

/// The audit action of opening the dashboard (its denial is `ota.dashboard.denied`).
pub const DASHBOARD_ACTION: &str = "ota.dashboard";

/// Why an operator's act did not happen, by cause; each maps to one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Signing in or re-checking the user failed, or a permission was denied (audited).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The dashboard asks for a one-time code and this user has none enrolled.
    #[error("{0} has no one-time code enrolled; the dashboard needs one (enroll with `warden user enroll-totp`)")]
    TotpNotEnrolled(String),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Op(#[from] OtaOpError),
    #[error(transparent)]
    Ota(#[from] OtaStoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the dashboard's database worker failed")]
    Worker,
}

/// The dashboard's connection, identity service and audit chain (one act at a time).
#[derive(Clone)]
pub struct OperatorStore {
    store: Arc<Mutex<Store>>,
}

impl OperatorStore {
    pub fn new(store: Store) -> Self {
        Self {
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// Runs `f` on a blocking thread with the store.
    pub async fn run<T, F>(&self, f: F) -> Result<T, OperatorError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, OperatorError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|_| OperatorError::Worker)?
    }
}

/// Signs a person in: password and one-time code (`login.dashboard`, counted toward the
/// lockout), a code enrollment when `require_totp`, and `ota.results.view` (denial audited as
/// `ota.dashboard.denied`).
pub fn sign_in(
    store: &mut Store,
    username: &str,
    password: &Password,
    code: Option<&str>,
    require_totp: bool,
) -> Result<AuthenticatedUser, OperatorError> {
    let now = UnixMs::now();
    let user = store.identity.authenticate_operator_at(
        &mut store.db,
        SignInChannel::Dashboard,
        username,
        password,
        code,
        now,
    )?;
    if require_totp && user.totp_step().is_none() {
        store.append(vec![audit_event(
            user.username(),
            &format!("{DASHBOARD_ACTION}.denied"),
            &format!("user:{}", user.username()),
            Outcome::Denied,
        )
        .with_details(serde_json::json!({
            "reason": "totp_not_enrolled",
            "role": user.role().name(),
        }))])?;
        return Err(OperatorError::TotpNotEnrolled(user.username().to_owned()));
    }
    // Opening the dashboard is the check itself; each read later asks again.
    let _may_view = store.identity.require(
        &mut store.db,
        &user,
        Permission::OtaResultsView,
        DASHBOARD_ACTION,
        now,
    )?;
    Ok(user)
}

/// Records the end of a dashboard session: a sign-out by the user, or an expiry by the
/// server (`service:ota`).
pub fn session_ended(
    store: &mut Store,
    user: &AuthenticatedUser,
    why: Option<super::auth::Expiry>,
) -> Result<(), OperatorError> {
    let subject = format!("user:{}", user.username());
    let event = match why {
        None => audit_event(
            user.username(),
            "ota.dashboard.signout",
            &subject,
            Outcome::Success,
        ),
        Some(why) => audit_event(
            warden_store::identity::OTA_SERVICE,
            "ota.dashboard.expire",
            &subject,
            Outcome::Success,
        )
        .with_details(serde_json::json!({ "reason": why.as_str() })),
    };
    store.append(vec![event])?;
    Ok(())
}

/// Every card identity the server knows: stored keys, scripts, sessions, and the key cache
/// (`keys`, which includes the key file), with what the dashboard lists. Telemetry for a
/// signed-in viewer; not audited per read.
pub fn cards(
    store: &Store,
    keys: &[String],
    search: &str,
) -> Result<Vec<db::CardOverview>, OperatorError> {
    let mut cards = db::card_overview(store.db.conn())?;
    for k in keys {
        if !cards.iter().any(|c| &c.identity == k) {
            cards.push(db::CardOverview {
                identity: k.clone(),
                ..Default::default()
            });
        }
    }
    cards.sort_by(|a, b| a.identity.cmp(&b.identity));
    let needle = search.trim().to_lowercase();
    if !needle.is_empty() {
        cards.retain(|c| c.identity.to_lowercase().contains(&needle));
    }
    Ok(cards)
}

/// A script of a card's history, with its commands (also for scripts not yet run).
#[derive(Debug, Serialize)]
pub struct HistoryScript {
    #[serde(flatten)]
    pub report: db::ScriptReport,
    pub commands: Vec<String>,
}

/// A card's scripts (each C-APDU, R-APDU, SW and the round trip) and sessions.
#[derive(Debug, Serialize)]
pub struct CardHistory {
    pub card: String,
    pub scripts: Vec<HistoryScript>,
    pub sessions: Vec<db::SessionRow>,
}

/// Reads a card's history through `ops::results` and `ops::sessions` (audited as
/// `ota.results.view` / `ota.sessions.view` under the user).
pub fn history(
    store: &mut Store,
    user: &AuthenticatedUser,
    card: &str,
) -> Result<(AuthenticatedUser, CardHistory), OperatorError> {
    let now = UnixMs::now();
    let user = store.identity.recheck(&store.db, user, now)?;
    let by = store.identity.require(
        &mut store.db,
        &user,
        Permission::OtaResultsView,
        "ota.results.view",
        now,
    )?;
    let reports = ops::results(store, &by, card, Some(50))?;
    let sessions = ops::sessions(store, &by, Some(card), 20)?;
    let scripts = reports
        .into_iter()
        .map(|report| {
            let commands = CommandScript::decode(&report.body)
                .map(|s| s.apdus().map(|a| a.to_hex()).collect())
                .unwrap_or_default();
            HistoryScript { report, commands }
        })
        .collect();
    Ok((
        user,
        CardHistory {
            card: card.to_owned(),
            scripts,
            sessions,
        },
    ))
}

/// A push as it was queued: (card, script id) for each card.
#[derive(Debug, Serialize)]
pub struct Queued {
    pub card: String,
    pub script: u64,
}

/// Checks the user may push (`ota.script.push`; a denial is audited as
/// `ota.script.push.denied`), resolves the cards, and unless `dry_run` queues the script
/// through `ops::push` (one `ota.script.queue` event per card, under the user).
pub fn push(
    store: &mut Store,
    user: &AuthenticatedUser,
    keys: &[String],
    targets: &Targets,
    planned: &PlannedScript,
    dry_run: bool,
) -> Result<(AuthenticatedUser, PushPreview, Vec<Queued>), OperatorError> {
    let now = UnixMs::now();
    let user = store.identity.recheck(&store.db, user, now)?;
    let by = store.identity.require(
        &mut store.db,
        &user,
        Permission::OtaScriptPush,
        "ota.script.push",
        now,
    )?;
    let known: Vec<String> = cards(store, keys, "")?
        .into_iter()
        .map(|c| c.identity)
        .collect();
    let cards = targets.resolve(&known)?;
    let preview = PushPreview::new(&cards, planned);
    if dry_run {
        return Ok((user, preview, Vec::new()));
    }
    let queued = ops::push(store, &by, &cards, planned, 1)?
        .into_iter()
        .map(|(card, script)| Queued { card, script })
        .collect();
    Ok((user, preview, queued))
}
