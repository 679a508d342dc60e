//! The `warden._warden` native module: warden for Python applications (seed 002's device team).
//!
//! It translates, and decides nothing: every rule — roles, PHI sealing, versions, audit events,
//! signatures — is enforced by `warden-records` and `warden-store`, exactly as for the CLI.
//! JSON crosses the boundary as text (the pure-Python layer in `python/warden` converts), and
//! errors become the exception classes of `warden.errors`, one per cause
//! ([`warden_records::Category`]). Secrets handed in (passphrase, passwords, codes) are moved
//! into warden's zeroizing types at once.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::{json, Value};
use warden_core::audit::Outcome;
use warden_core::datadir::{DataDir, DataDirError, KeyFormat};
use warden_core::keyring::Purpose;
use warden_core::keyslots::{KeyRing, NotCarried};
use warden_core::password::Password;
use warden_core::rbac::Permission;
use warden_core::report::report;
use warden_core::sealed_config::ConfigSealer;
use warden_core::secret::Passphrase;
use warden_records::ops::SignRequest;
use warden_records::recording::{RecordingReader, RecordingWriter};
use warden_records::{Category, Meaning, RecordsError};
use warden_store::audit::{ExportFormat, VerifyFrom};
use warden_store::identity::{SignInChannel, UnixMs};
use warden_store::keys::{self, KeyOpError, SlotSignIn};
use warden_store::Store;

/// An error on its way to Python: the `warden.errors` class and the message.
struct Failure {
    class: &'static str,
    message: String,
}

impl Failure {
    fn new(class: &'static str, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

fn class_of(category: Category) -> &'static str {
    match category {
        Category::Authentication => "AuthenticationError",
        Category::AccessDenied => "AccessDenied",
        Category::NotFound => "NotFound",
        Category::InvalidInput => "InvalidInput",
        Category::Integrity => "IntegrityError",
        Category::Storage => "StorageError",
    }
}

impl From<RecordsError> for Failure {
    fn from(err: RecordsError) -> Self {
        Self::new(class_of(err.category()), report(&err))
    }
}

impl From<warden_store::identity::AuthError> for Failure {
    fn from(err: warden_store::identity::AuthError) -> Self {
        Self::new(class_of(warden_records::auth_category(&err)), report(&err))
    }
}

impl From<warden_store::StoreError> for Failure {
    fn from(err: warden_store::StoreError) -> Self {
        RecordsError::from(err).into()
    }
}

impl From<warden_core::keyring::KeyringError> for Failure {
    fn from(err: warden_core::keyring::KeyringError) -> Self {
        let class = match err {
            warden_core::keyring::KeyringError::WrongPassphrase(_) => "WrongPassphrase",
            _ => "StorageError",
        };
        Self::new(class, report(&err))
    }
}

impl From<Failure> for PyErr {
    fn from(failure: Failure) -> PyErr {
        Python::attach(|py| {
            let made = py
                .import("warden.errors")
                .and_then(|m| m.getattr(failure.class))
                .and_then(|class| class.call1((failure.message.clone(),)));
            match made {
                Ok(exception) => PyErr::from_value(exception),
                Err(err) => err,
            }
        })
    }
}

fn storage(what: &str, err: impl std::error::Error + 'static) -> Failure {
    Failure::new("StorageError", format!("{what}: {}", report(&err)))
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new("InvalidInput", message)
}

fn parse_json(text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))
}

fn format_of(name: &str) -> Result<ExportFormat, Failure> {
    match name {
        "csv" => Ok(ExportFormat::Csv),
        "jsonl" => Ok(ExportFormat::Jsonl),
        other => Err(invalid(format!("format {other:?}: expected csv or jsonl"))),
    }
}

/// An opened store and its data directory. Shared by the sessions a vault opened with its
/// master passphrase; each session signed in with a password alone has its own.
struct State {
    dir: DataDir,
    store: Store,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl From<KeyOpError> for Failure {
    fn from(err: KeyOpError) -> Self {
        use warden_core::keyslots::KeySlotError;
        if let KeyOpError::Store(inner) = err {
            return inner.into();
        }
        let class = match &err {
            KeyOpError::DataDir(DataDirError::Slots {
                source: KeySlotError::WrongSecret(_),
                ..
            })
            | KeyOpError::Slots(KeySlotError::WrongSecret(_)) => "WrongPassphrase",
            KeyOpError::DataDir(DataDirError::Security {
                source: warden_core::keyring::KeyringError::WrongPassphrase(_),
                ..
            }) => "WrongPassphrase",
            KeyOpError::NotCarried(_) => "AccessDenied",
            KeyOpError::UsersTableChanged { .. } | KeyOpError::DatabaseDoesNotOpen(_) => {
                "IntegrityError"
            }
            KeyOpError::Slots(e) | KeyOpError::DataDir(DataDirError::Slots { source: e, .. })
                if e.is_damage() =>
            {
                "IntegrityError"
            }
            KeyOpError::Authorization(_) | KeyOpError::Slots(KeySlotError::NotCarried(_)) => {
                "AccessDenied"
            }
            KeyOpError::Identity(_) => "AuthenticationError",
            _ => "StorageError",
        };
        Self::new(class, report(&err))
    }
}

impl From<NotCarried> for Failure {
    fn from(err: NotCarried) -> Self {
        Self::new("AccessDenied", report(&err))
    }
}

/// A data directory: opened with its master passphrase (an application that holds it; people
/// then sign in against the stored password hashes and get their role's keys from it), or
/// without (people sign in with their passwords, which open their own key slots).
#[pyclass(module = "warden._warden")]
struct Vault {
    dir: DataDir,
    /// The master's keys and the store they opened.
    master: Option<(KeyRing, Shared)>,
}

#[pymethods]
impl Vault {
    /// Opens `data_dir`, with the master passphrase or the first line of `passphrase_file`
    /// (0600) if given. A format-1 directory (derived keys) is converted to key slots then.
    #[staticmethod]
    #[pyo3(signature = (data_dir, passphrase=None, passphrase_file=None))]
    fn open(
        data_dir: PathBuf,
        passphrase: Option<String>,
        passphrase_file: Option<PathBuf>,
    ) -> Result<Self, Failure> {
        let passphrase = match (passphrase, passphrase_file) {
            (Some(text), None) => Some(Passphrase::new(text)),
            (None, Some(path)) => {
                let bytes = warden_core::fsx::read_private(&path, 4096)
                    .map_err(|e| storage("the passphrase file", e))?;
                let text = Passphrase::new(
                    String::from_utf8(bytes)
                        .map_err(|_| invalid("the passphrase file is not UTF-8"))?,
                );
                let line = text.expose_secret().split(['\n', '\r']).next();
                Some(Passphrase::new(line.unwrap_or("").to_string()))
            }
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "give at most one of passphrase and passphrase_file",
                ))
            }
        };
        let mut dir = DataDir::open(&data_dir).map_err(|e| storage("the data directory", e))?;
        let Some(passphrase) = passphrase else {
            if dir.format() == KeyFormat::Derived {
                return Err(invalid(format!(
                    "{} keeps its keys derived from the master passphrase (format 1): open it once with the passphrase to convert it to key slots",
                    data_dir.display()
                )));
            }
            return Ok(Self { dir, master: None });
        };
        if dir.format() == KeyFormat::Derived {
            dir = keys::convert(&dir, &passphrase)?.0;
        }
        let master = dir
            .unlock_master(&passphrase)
            .map_err(KeyOpError::from)?
            .keys;
        let (store, master) = keys::open_store(&dir, master)?;
        let state = Arc::new(Mutex::new(State {
            dir: dir.clone(),
            store,
        }));
        Ok(Self {
            dir,
            master: Some((master, state)),
        })
    }

    /// Signs a person in (password, and the one-time code when enrolled; technicians: an empty
    /// password and their code, with a vault opened with the master passphrase). Audited as
    /// `login.cli`. The session holds the keys of the person's role, and no other.
    #[pyo3(signature = (username, password, totp=None))]
    fn sign_in(
        &self,
        username: &str,
        password: String,
        totp: Option<String>,
    ) -> Result<Session, Failure> {
        let password = Password::new(password);
        let totp = totp.map(warden_core::secret::SecretString::new);
        let code = totp.as_ref().map(|t| t.expose_secret());
        let (state, user, keys) = match &self.master {
            Some((master, shared)) => {
                let mut state = lock(shared);
                let State { store, dir } = &mut *state;
                let user = store.identity.authenticate_operator(
                    &mut store.db,
                    username,
                    &password,
                    code,
                    UnixMs::now(),
                )?;
                let keys = keys::ensure_user_slot(store, dir, &user, master, &password)?;
                drop(state);
                (shared.clone(), user, keys)
            }
            None => {
                let signed_in =
                    keys::sign_in_with_slot(&self.dir, username, &password, |store, proof| {
                        store
                            .identity
                            .authenticate_operator_with(
                                &mut store.db,
                                SignInChannel::Cli,
                                username,
                                proof,
                                code,
                                UnixMs::now(),
                            )
                            .map_err(Failure::from)
                    })?;
                let (store, user, keys) = match signed_in {
                    SlotSignIn::SignedIn { store, user, keys } => (store, user, keys),
                    SlotSignIn::NoSlot => {
                        return Err(keys::refuse_sign_in(&self.dir, username, "no_key_slot")?.into())
                    }
                    SlotSignIn::Refused => {
                        return Err(
                            keys::refuse_sign_in(&self.dir, username, "bad_password")?.into()
                        )
                    }
                };
                let state = Arc::new(Mutex::new(State {
                    dir: self.dir.clone(),
                    store,
                }));
                (state, user, keys)
            }
        };
        let mut session = warden_records::Session::new(user);
        if session.may(Permission::RecordsPhi) {
            let key = keys.require(Purpose::Phi)?.clone();
            session.unlock_phi(&mut lock(&state).store, key)?;
        }
        Ok(Session {
            state,
            keys,
            session,
        })
    }
}

/// A signed-in person. Every method is one audited operation under their name.
#[pyclass(module = "warden._warden")]
struct Session {
    state: Shared,
    /// The keys of the person's role.
    keys: KeyRing,
    session: warden_records::Session,
}

fn written_json(w: &warden_records::Written) -> String {
    json!({
        "collection": w.collection, "id": w.record_id, "version": w.version,
        "kind": w.kind.name(), "hash": hex::encode(w.hash), "audit_seq": w.audit_seq,
    })
    .to_string()
}

#[pymethods]
impl Session {
    #[getter]
    fn username(&self) -> String {
        self.session.user().username().to_owned()
    }

    #[getter]
    fn role(&self) -> String {
        self.session.user().role().name().to_owned()
    }

    #[getter]
    fn has_phi(&self) -> bool {
        self.session.has_phi()
    }

    fn apply_schema(&self, text: &str, source: &str) -> Result<String, Failure> {
        let mut state = lock(&self.state);
        let applied = self.session.apply_schema(&mut state.store, text, source)?;
        Ok(
            json!({"version": applied.version, "sha256": hex::encode(applied.sha256),
                  "collections": applied.collections, "changed": applied.changed})
            .to_string(),
        )
    }

    fn set_printed_name(&self, username: &str, printed_name: &str) -> Result<(), Failure> {
        let mut state = lock(&self.state);
        Ok(self
            .session
            .set_printed_name(&mut state.store, username, printed_name)?)
    }

    fn put(&self, collection: &str, record_id: &str, fields: &str) -> Result<String, Failure> {
        let Value::Object(fields) = parse_json(fields)? else {
            return Err(invalid("fields must be a JSON object"));
        };
        let mut state = lock(&self.state);
        let written = self
            .session
            .put(&mut state.store, collection, record_id, &fields)?;
        Ok(written_json(&written))
    }

    fn delete(&self, collection: &str, record_id: &str, reason: &str) -> Result<String, Failure> {
        let mut state = lock(&self.state);
        let written = self
            .session
            .delete(&mut state.store, collection, record_id, reason)?;
        Ok(written_json(&written))
    }

    #[pyo3(signature = (collection, record_id, version=None))]
    fn get(
        &self,
        collection: &str,
        record_id: &str,
        version: Option<u64>,
    ) -> Result<String, Failure> {
        let mut state = lock(&self.state);
        let v = self
            .session
            .get(&mut state.store, collection, record_id, version)?;
        Ok(v.to_json().to_string())
    }

    fn history(&self, collection: &str, record_id: &str) -> Result<String, Failure> {
        let mut state = lock(&self.state);
        let versions = self
            .session
            .history(&mut state.store, collection, record_id)?;
        Ok(Value::Array(versions.iter().map(|v| v.to_json()).collect()).to_string())
    }

    fn list(&self, collection: &str) -> Result<String, Failure> {
        let mut state = lock(&self.state);
        let listed = self.session.list(&mut state.store, collection)?;
        let items: Vec<Value> = listed
            .iter()
            .map(|r| {
                json!({"id": r.record_id, "version": r.version, "kind": r.kind,
                       "timestamp_utc": r.timestamp, "actor": r.actor, "signatures": r.signatures})
            })
            .collect();
        Ok(Value::Array(items).to_string())
    }

    #[allow(clippy::too_many_arguments)]
    fn sign(
        &self,
        collection: &str,
        record_id: &str,
        version: u64,
        meaning: &str,
        password: String,
        totp: String,
    ) -> Result<String, Failure> {
        let meaning: Meaning = meaning.parse().map_err(|e| invalid(report(&e)))?;
        let password = Password::new(password);
        let totp = warden_core::secret::SecretString::new(totp);
        let mut state = lock(&self.state);
        let signed = self.session.sign(
            &mut state.store,
            &SignRequest {
                collection,
                record_id,
                version,
                meaning,
                password: &password,
                totp_code: totp.expose_secret(),
            },
        )?;
        let mut value = signed.signature.to_json();
        value["manifestation"] = json!(signed.signature.manifestation());
        value["audit_seq"] = json!(signed.audit_seq);
        Ok(value.to_string())
    }

    fn event(
        &self,
        action: &str,
        subject: &str,
        details: &str,
        failure: bool,
    ) -> Result<u64, Failure> {
        let details = parse_json(details)?;
        let outcome = if failure {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let mut state = lock(&self.state);
        Ok(self
            .session
            .event(&mut state.store, action, subject, outcome, details)?)
    }

    /// Starts a recording sealed as it is written at `path`.
    fn record(&self, path: PathBuf, force: bool) -> Result<Recording, Failure> {
        let mut state = lock(&self.state);
        let by = self
            .session
            .require(&mut state.store, Permission::VaultSeal, "vault.seal")?;
        let key = self.keys.require(Purpose::Recordings)?.clone();
        let writer = RecordingWriter::create(&by, &key, &path, force)?;
        Ok(Recording {
            state: self.state.clone(),
            writer: Some(writer),
        })
    }

    /// Opens a sealed recording for playback.
    fn play(&self, path: PathBuf) -> Result<Playback, Failure> {
        let mut state = lock(&self.state);
        let by = self
            .session
            .require(&mut state.store, Permission::VaultOpen, "vault.open")?;
        let key = self.keys.require(Purpose::Recordings)?.clone();
        let reader = RecordingReader::open(&mut state.store, &by, &key, &path)?;
        Ok(Playback {
            reader: Some(reader),
        })
    }

    /// Seals configuration bytes into a Fernet token file at `path` (needs `config.seal`).
    fn seal_config(&self, plaintext: &[u8], path: PathBuf) -> Result<String, Failure> {
        let mut state = lock(&self.state);
        let by = self
            .session
            .require(&mut state.store, Permission::ConfigSeal, "config.seal")?;
        let sealer = ConfigSealer::new(self.keys.require(Purpose::Config)?);
        let mut token = sealer.seal(plaintext);
        token.push('\n');
        let sha256 = warden_core::mac::sha256(token.as_bytes());
        let mut pending = warden_core::fsx::PendingFile::create(&path)
            .map_err(|e| storage("the sealed configuration", e))?;
        std::io::Write::write_all(&mut pending, token.as_bytes())
            .map_err(|e| storage("the sealed configuration", e))?;
        let event = by
            .event(
                "config.seal",
                warden_store::audit::path_text(&path),
                Outcome::Success,
            )
            .with_details(json!({ "input": "application bytes", "sha256": hex::encode(sha256) }));
        state.store.transact(|tx| {
            tx.audit_one(event)?;
            pending
                .commit()
                .map_err(|e| storage("the sealed configuration", e))
        })?;
        Ok(hex::encode(sha256))
    }

    /// Opens a sealed configuration file (needs `config.open`); audited as `config.open`.
    fn open_config<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
    ) -> Result<Bound<'py, PyBytes>, Failure> {
        let mut state = lock(&self.state);
        let by = self
            .session
            .require(&mut state.store, Permission::ConfigOpen, "config.open")?;
        let sealer = ConfigSealer::new(self.keys.require(Purpose::Config)?);
        let opened = warden_core::sealed_config::read_config(
            &path,
            &sealer,
            warden_core::sealed_config::Plain::Refuse,
        );
        let subject = warden_store::audit::path_text(&path);
        let (outcome, details) = match &opened {
            Ok((_, _, sha256)) => (
                Outcome::Success,
                json!({"output": "application", "sha256": hex::encode(sha256)}),
            ),
            Err(e) => (
                Outcome::Failure,
                json!({"output": "application", "error": report(e)}),
            ),
        };
        state.store.append(vec![by
            .event("config.open", subject, outcome)
            .with_details(details)])?;
        let (text, _, _) = opened.map_err(|e| Failure::new("IntegrityError", report(&e)))?;
        Ok(PyBytes::new(py, text.expose_secret()))
    }

    /// Verifies the audit chain (needs `audit.verify`).
    fn audit_verify(&self) -> Result<String, Failure> {
        let mut state = lock(&self.state);
        let by = self
            .session
            .require(&mut state.store, Permission::AuditVerify, "audit.verify")?;
        let verdict =
            warden_store::audit::verify(&mut state.store, &by, VerifyFrom::CurrentEpoch, None)
                .map_err(|e| storage("audit verify", e))?;
        Ok(json!({"ok": verdict.result.is_ok(), "summary": verdict.summary()}).to_string())
    }

    /// Exports the audit trail with its verification result (needs `audit.export`).
    fn audit_export(&self, path: PathBuf, format: &str) -> Result<String, Failure> {
        let format = format_of(format)?;
        let mut state = lock(&self.state);
        let by = self
            .session
            .require(&mut state.store, Permission::AuditExport, "audit.export")?;
        let mut out = std::io::BufWriter::new(
            warden_core::fsx::PendingFile::create(&path).map_err(|e| storage("the export", e))?,
        );
        let destination = warden_store::audit::path_text(&path);
        let exported = warden_store::audit::export(
            &mut state.store,
            &by,
            VerifyFrom::CurrentEpoch,
            None,
            format,
            &destination,
            &mut out,
        )
        .map_err(|e| storage("audit export", e))?;
        out.into_inner()
            .map_err(|e| storage("the export", e.into_error()))?
            .commit()
            .map_err(|e| storage("the export", e))?;
        Ok(
            json!({"records": exported.records, "ok": exported.verdict.result.is_ok(),
                  "summary": exported.verdict.summary()})
            .to_string(),
        )
    }

    /// Verifies every record version and signature against the audit chain.
    fn records_verify(&self) -> Result<String, Failure> {
        let mut state = lock(&self.state);
        let verdict = self
            .session
            .verify(&mut state.store, VerifyFrom::CurrentEpoch)?;
        Ok(verdict_json(&verdict).to_string())
    }

    /// Exports every record version with signatures and the verification result.
    #[pyo3(signature = (path, format, collection=None))]
    fn records_export(
        &self,
        path: PathBuf,
        format: &str,
        collection: Option<String>,
    ) -> Result<String, Failure> {
        let format = format_of(format)?;
        let mut state = lock(&self.state);
        let mut out = std::io::BufWriter::new(
            warden_core::fsx::PendingFile::create(&path).map_err(|e| storage("the export", e))?,
        );
        let destination = warden_store::audit::path_text(&path);
        let exported = self.session.export(
            &mut state.store,
            VerifyFrom::CurrentEpoch,
            collection.as_deref(),
            format,
            &destination,
            &mut out,
        )?;
        out.into_inner()
            .map_err(|e| storage("the export", e.into_error()))?
            .commit()
            .map_err(|e| storage("the export", e))?;
        let mut value = verdict_json(&exported.verdict);
        value["versions"] = json!(exported.versions);
        Ok(value.to_string())
    }
}

fn verdict_json(verdict: &warden_records::verify::RecordsVerdict) -> Value {
    json!({
        "ok": verdict.is_ok(),
        "versions": verdict.versions,
        "signatures": verdict.signatures,
        "earlier_epochs": verdict.earlier_epochs,
        "summary": verdict.summary(),
        "damage": verdict.damage.iter().map(|d| json!({
            "collection": d.collection, "id": d.record_id, "version": d.version,
            "kind": d.kind.name(), "text": d.to_string(),
        })).collect::<Vec<_>>(),
    })
}

/// A recording being sealed as it is written.
#[pyclass(module = "warden._warden")]
struct Recording {
    state: Shared,
    writer: Option<RecordingWriter>,
}

#[pymethods]
impl Recording {
    fn write(&mut self, data: &[u8]) -> Result<usize, Failure> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| invalid("the recording is closed"))?;
        writer.write(data)?;
        Ok(data.len())
    }

    /// Seals what is buffered, so it survives a crash.
    fn checkpoint(&mut self) -> Result<(), Failure> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| invalid("the recording is closed"))?;
        Ok(writer.checkpoint()?)
    }

    /// Finishes the file; it appears at its path with its `vault.seal` event. Returns JSON.
    fn close(&mut self) -> Result<String, Failure> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| invalid("the recording is closed"))?;
        let mut state = lock(&self.state);
        let sealed = writer.finish(&mut state.store)?;
        Ok(json!({
            "path": sealed.path, "sha256": hex::encode(sealed.sha256),
            "plaintext_bytes": sealed.summary.plaintext_bytes, "segments": sealed.summary.segments,
        })
        .to_string())
    }

    /// Gives up: nothing appears at the path; audited as a failed `vault.seal`.
    fn abandon(&mut self, why: &str) -> Result<(), Failure> {
        if let Some(writer) = self.writer.take() {
            let mut state = lock(&self.state);
            writer.abandon(&mut state.store, why)?;
        }
        Ok(())
    }

    #[getter]
    fn closed(&self) -> bool {
        self.writer.is_none()
    }
}

/// A sealed recording played back, every segment verified before it is returned.
#[pyclass(module = "warden._warden")]
struct Playback {
    reader: Option<RecordingReader>,
}

#[pymethods]
impl Playback {
    /// Up to `size` verified bytes (all that remain when negative); empty at the end.
    fn read<'py>(&mut self, py: Python<'py>, size: i64) -> Result<Bound<'py, PyBytes>, Failure> {
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| invalid("the playback is closed"))?;
        let mut out = Vec::new();
        let result = if size < 0 {
            reader.read_to_end(&mut out).map(|_| ())
        } else {
            // At most 16 MiB per call (a read may return less): a huge size is not an
            // allocation that aborts the process.
            out.resize((size as usize).min(16 << 20), 0);
            let mut filled = 0;
            loop {
                match reader.read(&mut out[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == out.len() {
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e),
                }
            }
            .map(|()| out.truncate(filled))
        };
        result.map_err(|e| {
            Failure::new("IntegrityError", format!("the recording: {}", report(&e)))
        })?;
        Ok(PyBytes::new(py, &out))
    }

    fn close(&mut self) {
        self.reader = None;
    }
}

#[pymodule]
fn _warden(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Vault>()?;
    m.add_class::<Session>()?;
    m.add_class::<Recording>()?;
    m.add_class::<Playback>()?;
    Ok(())
}
