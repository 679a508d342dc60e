//! What operators do to the OTA store from the command line: card keys, the script queue,
//! results and sessions. Each operation takes the [`Authorized`] value for its permission
//! (`ota.key.manage`, `ota.script.push`, `ota.results.view`) and commits its change together
//! with its audit event, whose actor is the signed-in user. Keys never appear in an event or a
//! message; reads of results and sessions are audited too.

use serde_json::json;
use warden_core::audit::Outcome;
use warden_core::rbac::Permission;
use warden_core::secret::Key32;
use warden_store::identity::{Authorized, WrongAuthorization};
use warden_store::ota::{self as db, OtaStoreError};
use warden_store::{Store, StoreError};

use crate::admin::Redelivery;
use crate::keys::Psk;
use crate::scriptfile::PlannedScript;

#[derive(Debug, thiserror::Error)]
pub enum OtaOpError {
    #[error(transparent)]
    Authorization(#[from] WrongAuthorization),
    #[error(transparent)]
    Ota(#[from] OtaStoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for OtaOpError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Store(err.into())
    }
}

fn card_subject(identity: &str) -> String {
    format!("card:{identity}")
}

/// Stores (or, with `replace`, replaces) a card's PSK, sealed under the `database` key.
pub fn add_key(
    store: &mut Store,
    by: &Authorized,
    db_key: &Key32,
    identity: &str,
    psk: &Psk,
    replace: bool,
) -> Result<(), OtaOpError> {
    by.check(Permission::OtaKeyManage)?;
    let event = by
        .event("ota.key.add", card_subject(identity), Outcome::Success)
        .with_details(json!({ "replace": replace, "key_bytes": psk.len() }));
    store.transact(|tx| {
        db::add_key(tx, db_key, identity, psk.expose_secret(), replace)?;
        tx.audit_one(event)?;
        Ok(())
    })
}

/// Removes a card's PSK.
pub fn remove_key(store: &mut Store, by: &Authorized, identity: &str) -> Result<(), OtaOpError> {
    by.check(Permission::OtaKeyManage)?;
    let event = by.event("ota.key.remove", card_subject(identity), Outcome::Success);
    store.transact(|tx| {
        db::remove_key(tx, identity)?;
        tx.audit_one(event)?;
        Ok(())
    })
}

/// Imports keys (e.g. from the seed's key file `source`), all or none.
pub fn import_keys(
    store: &mut Store,
    by: &Authorized,
    db_key: &Key32,
    keys: &[(String, Psk)],
    source: &str,
    replace: bool,
) -> Result<(), OtaOpError> {
    by.check(Permission::OtaKeyManage)?;
    let identities: Vec<&str> = keys.iter().map(|(id, _)| id.as_str()).collect();
    let event = by
        .event("ota.key.import", source, Outcome::Success)
        .with_details(json!({ "identities": identities, "replace": replace }));
    store.transact(|tx| {
        for (identity, psk) in keys {
            db::add_key(tx, db_key, identity, psk.expose_secret(), replace)?;
        }
        tx.audit_one(event)?;
        Ok(())
    })
}

/// The cards with keys (never the keys).
pub fn list_cards(store: &mut Store, by: &Authorized) -> Result<Vec<db::CardRow>, OtaOpError> {
    by.check(Permission::OtaKeyManage)?;
    let cards = db::list_cards(store.db.conn())?;
    let event = by
        .event("ota.key.list", "cards", Outcome::Success)
        .with_details(json!({ "cards": cards.len() }));
    store.append(vec![event])?;
    Ok(cards)
}

/// Queues `planned` `count` times for each card; returns (card, script id) for each. One event
/// per queued script, or one for the whole batch when `count` > 1 (load tests).
pub fn push(
    store: &mut Store,
    by: &Authorized,
    cards: &[String],
    planned: &PlannedScript,
    count: u32,
) -> Result<Vec<(String, u64)>, OtaOpError> {
    by.check(Permission::OtaScriptPush)?;
    for card in cards {
        db::check_identity(card)?;
    }
    let body = planned.script.encode();
    let commands: Vec<String> = planned.script.apdus().map(|a| a.to_hex()).collect();
    let redelivery = match planned.redelivery {
        Redelivery::Allowed => db::StoredRedelivery::Allowed,
        Redelivery::Forbidden => db::StoredRedelivery::Forbidden,
    };
    store.transact(|tx| {
        let mut ids = Vec::new();
        for card in cards {
            for _ in 0..count.max(1) {
                let id = db::push_script(
                    tx,
                    &db::NewScript {
                        card: card.clone(),
                        label: planned.label.clone(),
                        body: body.clone(),
                        targeted_application: planned.targeted_application.clone(),
                        redelivery,
                    },
                )?;
                if count <= 1 {
                    tx.audit_one(
                        by.event("ota.script.queue", card_subject(card), Outcome::Success)
                            .with_details(json!({
                                "script": id,
                                "commands": commands,
                                "redelivery": format!("{:?}", planned.redelivery).to_lowercase(),
                            })),
                    )?;
                }
                ids.push((card.clone(), id));
            }
        }
        if count > 1 {
            tx.audit_one(
                by.event("ota.script.queue", "cards", Outcome::Success)
                    .with_details(json!({ "cards": cards, "count": count, "commands": commands })),
            )?;
        }
        Ok(ids)
    })
}

/// A card's scripts with each C-APDU, R-APDU, status word and timing (the last `last`).
pub fn results(
    store: &mut Store,
    by: &Authorized,
    card: &str,
    last: Option<u64>,
) -> Result<Vec<db::ScriptReport>, OtaOpError> {
    by.check(Permission::OtaResultsView)?;
    let reports = db::script_reports(store.db.conn(), card, last)?;
    let event = by
        .event("ota.results.view", card_subject(card), Outcome::Success)
        .with_details(json!({ "scripts": reports.len() }));
    store.append(vec![event])?;
    Ok(reports)
}

/// Recent admin sessions, of one card or all.
pub fn sessions(
    store: &mut Store,
    by: &Authorized,
    card: Option<&str>,
    limit: u64,
) -> Result<Vec<db::SessionRow>, OtaOpError> {
    by.check(Permission::OtaResultsView)?;
    let rows = db::recent_sessions(store.db.conn(), card, limit)?;
    let event = by
        .event(
            "ota.sessions.view",
            card.map_or_else(|| "cards".to_owned(), card_subject),
            Outcome::Success,
        )
        .with_details(json!({ "sessions": rows.len() }));
    store.append(vec![event])?;
    Ok(rows)
}
