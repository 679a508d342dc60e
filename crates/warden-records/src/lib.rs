//! warden-records: the clinical records of seed 002 (patients, treatments, calibration,
//! configuration) on top of warden's store and audit chain.
//!
//! How data flows: an administrator applies a collection [`schema`] (YAML). A signed-in user's
//! [`session::Session`] turns each request into an [`Authorized`](warden_store::identity::Authorized)
//! for the permission the collection's class needs (denials audited), and calls an operation in
//! [`ops`]: every create, update and delete writes a new row of `record_versions` — never an
//! update in place — whose PHI fields are sealed under the `phi` key ([`phi`]) with the record id
//! and version bound in, and whose [`version`] hash is carried by the audit event committed in
//! the same transaction. Reads that open PHI are audited. A signature ([`ops::sign`]) needs the
//! signer's password and one-time code again and binds printed name, UTC time and meaning to the
//! version hash. [`verify`] checks every stored version and signature against the audit chain
//! and names what was changed, inserted or removed; [`verify::export`] writes CSV or JSON Lines
//! with that result. [`ops::app_event`] lets an application append its own events, and
//! [`recording`] seals a stream (treatment video) as it is written.
#![forbid(unsafe_code)]

pub mod ops;
pub mod phi;
pub mod recording;
pub mod schema;
pub mod session;
pub mod verify;
pub mod version;

pub use ops::{PhiView, Signature, SignatureStatus, Version, Written};
pub use phi::PhiKey;
pub use schema::{Class, InputError, Schema, SchemaError};
pub use session::Session;
pub use version::{Kind, Meaning};

use warden_store::identity::{AuthError, WrongAuthorization};
use warden_store::StoreError;

/// Why a records operation failed, sorted by cause. The binary maps each group to an exit code
/// and the Python package to an exception class (see [`RecordsError::category`]).
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    // Who may do what.
    #[error(transparent)]
    Authorization(#[from] WrongAuthorization),
    #[error(transparent)]
    Denied(AuthError),
    #[error("{collection} holds PHI: this needs the phi key, which only a role granted records.phi obtains")]
    PhiKeyRequired { collection: String },
    #[error("signing needs a person, not a service")]
    SignerNotAPerson,
    #[error("re-authentication for the signature failed")]
    Reauthentication(#[source] AuthError),
    #[error("the re-authenticated user is not the signed-in user")]
    SignerMismatch,
    #[error("an electronic signature needs both components, a password and a one-time code (enroll TOTP; technicians have no password and cannot sign)")]
    NeedsBothComponents,

    // What the caller asked for does not exist or cannot be done.
    #[error("no records schema has been applied (an administrator runs `warden records schema apply FILE`)")]
    NoSchema,
    #[error("no collection named {0:?} in the records schema")]
    UnknownCollection(String),
    #[error("no record {collection}/{record_id}")]
    NotFound {
        collection: String,
        record_id: String,
    },
    #[error("record {collection}/{record_id} has no version {version}")]
    VersionNotFound {
        collection: String,
        record_id: String,
        version: u64,
    },
    #[error(
        "record {collection}/{record_id} is deleted; its history stays, and its id is not reused"
    )]
    Deleted {
        collection: String,
        record_id: String,
    },
    #[error("this version is already signed by this user with the meaning {meaning}")]
    AlreadySigned { meaning: Meaning },
    #[error("{0} has no printed name for signatures (an administrator sets it with `warden records signer`)")]
    NoPrintedName(String),
    #[error("no user named {0}")]
    UnknownUser(String),

    // The caller's input is malformed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("an application action is 1-64 characters of a-z 0-9 . _ -, starting with a letter (it is recorded as app.ACTION)")]
    BadAction,
    #[error("a printed name is 1-128 characters without control characters")]
    BadPrintedName,

    // Stored data is not what was written.
    #[error("the PHI of {collection}/{record_id} version {version} does not open (changed, moved, or sealed under another key)")]
    PhiUnreadable {
        collection: String,
        record_id: String,
        version: u64,
    },
    #[error("{collection}/{record_id} version {version} does not match the hash its audit event recorded: refusing to sign a changed version (run `warden records verify`)")]
    VersionDamaged {
        collection: String,
        record_id: String,
        version: u64,
    },

    // Everything below the records layer.
    #[error("writing {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Stream(#[from] warden_core::stream::StreamError),
    #[error(transparent)]
    File(#[from] warden_core::fsx::FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The broad cause of an error, for callers that answer per cause (exit codes, Python
/// exception classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Sign-in or re-authentication failed.
    Authentication,
    /// The actor's role does not allow it, or a needed key is not theirs.
    AccessDenied,
    /// The thing asked for does not exist, or is in a state that forbids the act.
    NotFound,
    /// The caller's input is malformed.
    InvalidInput,
    /// Stored or sealed data is damaged or was changed.
    Integrity,
    /// Storage, files, the system.
    Storage,
}

impl RecordsError {
    pub fn category(&self) -> Category {
        use RecordsError::*;
        match self {
            Authorization(_)
            | PhiKeyRequired { .. }
            | SignerNotAPerson
            | SignerMismatch
            | NeedsBothComponents => Category::AccessDenied,
            Denied(err) | Reauthentication(err) => auth_category(err),
            NoSchema
            | UnknownCollection(_)
            | NotFound { .. }
            | VersionNotFound { .. }
            | Deleted { .. }
            | AlreadySigned { .. }
            | NoPrintedName(_)
            | UnknownUser(_) => Category::NotFound,
            Schema(_) | Input(_) | BadAction | BadPrintedName => Category::InvalidInput,
            PhiUnreadable { .. } | VersionDamaged { .. } => Category::Integrity,
            Stream(err) if err.is_damage() => Category::Integrity,
            Store(StoreError::AuditEvent(_)) => Category::InvalidInput,
            Store(StoreError::ChainDamaged(_) | StoreError::Lost(_)) => Category::Integrity,
            Io { .. } | Stream(_) | File(_) | Store(_) => Category::Storage,
        }
    }
}

/// The category of a sign-in or authorization refusal.
pub fn auth_category(err: &AuthError) -> Category {
    match err {
        AuthError::Denied { .. }
        | AuthError::NotSignedIn { .. }
        | AuthError::ServiceDenied(_)
        | AuthError::PasswordExpired { .. } => Category::AccessDenied,
        AuthError::Store(_) => Category::Storage,
        _ => Category::Authentication,
    }
}
