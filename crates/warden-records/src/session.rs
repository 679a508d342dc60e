//! A signed-in person's records session: the one path the CLI and the Python package take.
//!
//! Each request names a collection; the session looks up the collection's class, asks the
//! identity service for the permission that class needs (`Identity::require`: a refusal is
//! audited), and calls the operation in [`crate::ops`] with the resulting `Authorized`. The
//! `phi` key is held only after `records.phi` was allowed ([`Session::unlock_phi`]).

use std::io::Write;

use serde_json::{Map, Value};
use warden_core::audit::Outcome;
use warden_core::rbac::{authorize, Permission};
use warden_core::secret::Key32;
use warden_store::audit::{ExportFormat, VerifyFrom};
use warden_store::identity::{AuthenticatedUser, Authorized, UnixMs};
use warden_store::Store;

use crate::ops::{self, Listed, SchemaApplied, SignRequest, Signed, Version, Written};
use crate::phi::PhiKey;
use crate::verify::{self, Exported, RecordsVerdict};
use crate::RecordsError;

/// A person signed in for records work.
pub struct Session {
    user: AuthenticatedUser,
    phi: Option<PhiKey>,
}

impl Session {
    pub fn new(user: AuthenticatedUser) -> Self {
        Self { user, phi: None }
    }

    pub fn user(&self) -> &AuthenticatedUser {
        &self.user
    }

    /// Whether the user's role grants `permission` (to decide what to offer; the operations
    /// check again, and audit a refusal).
    pub fn may(&self, permission: Permission) -> bool {
        !self.user.password_expired() && authorize(self.user.role(), permission).is_allowed()
    }

    /// Asks for `permission` for `action`; a refusal is audited.
    pub fn require(
        &self,
        store: &mut Store,
        permission: Permission,
        action: &str,
    ) -> Result<Authorized, RecordsError> {
        store
            .identity
            .require(&mut store.db, &self.user, permission, action, UnixMs::now())
            .map_err(RecordsError::Denied)
    }

    /// Takes the `phi` key, after `records.phi` is allowed (a refusal is audited and the key
    /// dropped).
    pub fn unlock_phi(&mut self, store: &mut Store, key: Key32) -> Result<(), RecordsError> {
        let by = self.require(store, Permission::RecordsPhi, "records.phi")?;
        self.phi = Some(PhiKey::new(&by, key)?);
        Ok(())
    }

    pub fn has_phi(&self) -> bool {
        self.phi.is_some()
    }

    fn for_collection(
        &self,
        store: &mut Store,
        collection: &str,
        write: bool,
        action: &str,
    ) -> Result<Authorized, RecordsError> {
        let (_, found) = ops::collection(&store.db, collection)?;
        let permission = if write {
            found.class.write_permission()
        } else {
            found.class.read_permission()
        };
        self.require(store, permission, action)
    }

    pub fn apply_schema(
        &self,
        store: &mut Store,
        text: &str,
        source: &str,
    ) -> Result<SchemaApplied, RecordsError> {
        let by = self.require(store, Permission::RecordsSchema, "records.schema")?;
        ops::apply_schema(store, &by, text, source)
    }

    pub fn put(
        &self,
        store: &mut Store,
        collection: &str,
        record_id: &str,
        changes: &Map<String, Value>,
    ) -> Result<Written, RecordsError> {
        let by = self.for_collection(store, collection, true, "record.put")?;
        ops::put(
            store,
            &by,
            self.phi.as_ref(),
            collection,
            record_id,
            changes,
        )
    }

    pub fn delete(
        &self,
        store: &mut Store,
        collection: &str,
        record_id: &str,
        reason: &str,
    ) -> Result<Written, RecordsError> {
        let by = self.for_collection(store, collection, true, "record.delete")?;
        ops::delete(store, &by, collection, record_id, reason)
    }

    pub fn get(
        &self,
        store: &mut Store,
        collection: &str,
        record_id: &str,
        version: Option<u64>,
    ) -> Result<Version, RecordsError> {
        let by = self.for_collection(store, collection, false, "record.get")?;
        ops::get(
            store,
            &by,
            self.phi.as_ref(),
            collection,
            record_id,
            version,
        )
    }

    pub fn history(
        &self,
        store: &mut Store,
        collection: &str,
        record_id: &str,
    ) -> Result<Vec<Version>, RecordsError> {
        let by = self.for_collection(store, collection, false, "record.history")?;
        ops::history(store, &by, self.phi.as_ref(), collection, record_id)
    }

    pub fn list(&self, store: &mut Store, collection: &str) -> Result<Vec<Listed>, RecordsError> {
        let by = self.for_collection(store, collection, false, "record.list")?;
        ops::list(store, &by, collection)
    }

    pub fn sign(
        &self,
        store: &mut Store,
        request: &SignRequest<'_>,
    ) -> Result<Signed, RecordsError> {
        let by = self.for_collection(store, request.collection, true, "record.sign")?;
        ops::sign(store, &by, request)
    }

    pub fn set_printed_name(
        &self,
        store: &mut Store,
        username: &str,
        printed_name: &str,
    ) -> Result<(), RecordsError> {
        let by = self.require(store, Permission::UserManage, "records.signer")?;
        ops::set_printed_name(store, &by, username, printed_name)
    }

    /// Appends an application event `app.ACTION`; returns its seq.
    pub fn event(
        &self,
        store: &mut Store,
        action: &str,
        subject: &str,
        outcome: Outcome,
        details: Value,
    ) -> Result<u64, RecordsError> {
        let by = self.require(store, Permission::AppEvent, "app.event")?;
        ops::app_event(store, &by, action, subject, outcome, details)
    }

    pub fn verify(
        &self,
        store: &mut Store,
        from: VerifyFrom,
    ) -> Result<RecordsVerdict, RecordsError> {
        let by = self.require(store, Permission::AuditVerify, "records.verify")?;
        verify::verify(store, &by, from)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn export(
        &self,
        store: &mut Store,
        from: VerifyFrom,
        collection: Option<&str>,
        format: ExportFormat,
        destination: &str,
        out: &mut dyn Write,
    ) -> Result<Exported, RecordsError> {
        let by = self.require(store, Permission::AuditExport, "records.export")?;
        verify::export(
            store,
            &by,
            self.phi.as_ref(),
            from,
            collection,
            format,
            destination,
            out,
        )
    }
}
