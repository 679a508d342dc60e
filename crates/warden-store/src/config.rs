//! Sealed configuration files: `config seal` and `config open`, each authorized and audited
//! with the file's name and the SHA-256 of the sealed token.

use std::io::Write;
use std::path::Path;

use serde_json::json;
use warden_core::audit::Outcome;
use warden_core::fsx::{FsError, PendingFile};
use warden_core::rbac::Permission;
use warden_core::report::report;
use warden_core::sealed_config::{self, ConfigFileError, ConfigSealer, Plain};
use warden_core::secret::SecretBytes;

use crate::identity::{Authorized, WrongAuthorization};
use crate::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Authorization(#[from] WrongAuthorization),
    #[error("{0} is already sealed")]
    AlreadySealed(String),
    #[error("{0} exists; pass --force to replace it")]
    Exists(String),
    #[error(transparent)]
    Read(#[from] ConfigFileError),
    #[error(transparent)]
    File(#[from] FsError),
    #[error("cannot write to standard output")]
    Stdout(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What was written where.
pub struct Written {
    /// SHA-256 of the sealed token file.
    pub sha256: [u8; 32],
}

fn write_output(
    path: &Path,
    content: &[u8],
    force: bool,
) -> Result<Option<PendingFile>, ConfigError> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(content)
            .and_then(|()| out.flush())
            .map_err(ConfigError::Stdout)?;
        return Ok(None);
    }
    if !force && path.symlink_metadata().is_ok() {
        return Err(ConfigError::Exists(path.display().to_string()));
    }
    let mut pending = PendingFile::create(path)?;
    pending
        .write_all(content)
        .map_err(|e| FsError::io(path, e))?;
    Ok(Some(pending))
}

fn shown(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "stdout".into()
    } else {
        crate::audit::path_text(path)
    }
}

/// Seals `file` into a Fernet token at `output` (`-` for standard output). Needs
/// `config.seal`; audited as `config.seal` with the token's SHA-256.
pub fn seal(
    store: &mut Store,
    by: &Authorized,
    sealer: &ConfigSealer,
    file: &Path,
    output: &Path,
    force: bool,
) -> Result<Written, ConfigError> {
    by.check(Permission::ConfigSeal)?;
    let attempt = (|| {
        let (plaintext, _) = sealed_config::read_file(file)?;
        if ConfigSealer::looks_sealed(&plaintext) {
            return Err(ConfigError::AlreadySealed(crate::audit::path_text(file)));
        }
        let mut token = sealer.seal(&plaintext);
        token.push('\n');
        let sha256 = warden_core::mac::sha256(token.as_bytes());
        Ok((write_output(output, token.as_bytes(), force)?, sha256))
    })();
    match attempt {
        Ok((pending, sha256)) => {
            let event = by
                .event("config.seal", shown(output), Outcome::Success)
                .with_details(
                    json!({ "input": crate::audit::path_text(file), "sha256": hex::encode(sha256) }),
                );
            store.transact(|tx| {
                tx.audit_one(event)?;
                if let Some(pending) = pending {
                    pending.commit()?;
                }
                Ok::<_, ConfigError>(())
            })?;
            Ok(Written { sha256 })
        }
        Err(err) => {
            let event = by
                .event("config.seal", shown(output), Outcome::Failure)
                .with_details(
                    json!({ "input": crate::audit::path_text(file), "error": report(&err) }),
                );
            store.append(vec![event])?;
            Err(err)
        }
    }
}

/// Opens the sealed configuration `file` (a plain file is refused) and writes the plaintext
/// to `output` (`-` for standard output). Needs `config.open`; audited as `config.open` with
/// the token's SHA-256.
pub fn open(
    store: &mut Store,
    by: &Authorized,
    sealer: &ConfigSealer,
    file: &Path,
    output: &Path,
    force: bool,
) -> Result<Written, ConfigError> {
    by.check(Permission::ConfigOpen)?;
    let attempt = (|| -> Result<(SecretBytes, [u8; 32]), ConfigError> {
        let (text, _, sha256) = sealed_config::read_config(file, sealer, Plain::Refuse)?;
        Ok((text, sha256))
    })();
    let (text, sha256) = match attempt {
        Ok(opened) => opened,
        Err(err) => {
            let event = by
                .event(
                    "config.open",
                    crate::audit::path_text(file),
                    Outcome::Failure,
                )
                .with_details(json!({ "output": shown(output), "error": report(&err) }));
            store.append(vec![event])?;
            return Err(err);
        }
    };
    let event = by
        .event(
            "config.open",
            crate::audit::path_text(file),
            Outcome::Success,
        )
        .with_details(json!({ "output": shown(output), "sha256": hex::encode(sha256) }));
    // The plaintext leaves only once its reading is on the record: a file output appears in
    // the transaction that records it, standard output right after it committed.
    let to_stdout = output.as_os_str() == "-";
    store.transact(|tx| {
        tx.audit_one(event)?;
        if !to_stdout {
            if let Some(pending) = write_output(output, text.expose_secret(), force)? {
                pending.commit()?;
            }
        }
        Ok::<_, ConfigError>(())
    })?;
    if to_stdout {
        write_output(output, text.expose_secret(), force)?;
    }
    Ok(Written { sha256 })
}
