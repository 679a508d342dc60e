//! `warden init`: create a data directory — layout, security.json, the encrypted database, and
//! the audit chain, whose initial key is exported once, sealed for the auditor.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;
use warden_core::audit::{AuditKey, ChainId, EpochPolicy, NewEvent, Outcome};
use warden_core::auditor_key::AuditorKeyFile;
use warden_core::datadir::{DataDir, DataDirError, SECURITY_FILE};
use warden_core::kdf::KdfParams;
use warden_core::keyring::{Purpose, PurposeKeys, SecurityFile};
use warden_core::secret::Passphrase;
use warden_store::audit::{timestamp_now, AuditLog, AuditPolicy};
use warden_store::Database;

use crate::cli::{GlobalArgs, InitArgs, KdfChoice};
use crate::keys::PassphraseSource;

pub fn kdf_from_args(args: &InitArgs) -> KdfParams {
    match args.kdf {
        KdfChoice::Pbkdf2 => KdfParams::Pbkdf2Sha256 {
            iterations: args
                .kdf_iterations
                .unwrap_or(KdfParams::PBKDF2_DEFAULT_ITERATIONS),
        },
        KdfChoice::Argon2id => {
            let KdfParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } = KdfParams::default_argon2id()
            else {
                unreachable!("default_argon2id is Argon2id")
            };
            KdfParams::Argon2id {
                memory_kib: args.argon2_memory_kib.unwrap_or(memory_kib),
                iterations: args.kdf_iterations.unwrap_or(iterations),
                parallelism,
            }
        }
    }
}

fn audit_policy(args: &InitArgs) -> AuditPolicy {
    let nonzero = |v: u64| (v > 0).then_some(v);
    AuditPolicy {
        epoch: EpochPolicy {
            max_events: nonzero(args.audit_epoch_events),
            max_age_secs: nonzero(args.audit_epoch_seconds),
        },
        checkpoint_every: args.audit_checkpoint_every.max(1),
    }
}

/// What `provision` made, for the caller to report on.
pub struct Provisioned {
    pub dir: DataDir,
    pub keys: PurposeKeys,
    pub db: Database,
    pub chain_id: ChainId,
}

/// Creates everything a data directory holds. Shared by `init` and `demo`.
pub fn provision(
    root: &Path,
    passphrase: &Passphrase,
    auditor_passphrase: &Passphrase,
    auditor_key_out: &Path,
    kdf: &KdfParams,
    policy: AuditPolicy,
) -> Result<Provisioned> {
    if root.join(SECURITY_FILE).exists() {
        bail!(DataDirError::AlreadyInitialized(root.to_path_buf()));
    }
    if auditor_key_out.symlink_metadata().is_ok() {
        bail!(
            "{} already exists; refusing to overwrite an auditor key",
            auditor_key_out.display()
        );
    }
    if warden_core::mac::ct_eq(
        passphrase.expose_secret().as_bytes(),
        auditor_passphrase.expose_secret().as_bytes(),
    ) {
        bail!("the auditor passphrase must differ from the master passphrase (the auditor verifies what the box cannot rewrite)");
    }
    // Everything that can fail on input is computed before anything is written.
    let (security, keys) = SecurityFile::create(passphrase, kdf, warden_store::now_rfc3339())?;
    let k0 = AuditKey::random();
    let chain_id = ChainId::random();
    let auditor_file = AuditorKeyFile::seal(&k0, &chain_id, auditor_passphrase, kdf)?;

    let dir = DataDir::create(root, security)?;
    let mut out = warden_core::fsx::create_private_new(auditor_key_out)?;
    out.write_all(auditor_file.to_json().as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("cannot write {}", auditor_key_out.display()))?;
    let mut db = Database::open(
        &dir.root().join(warden_store::DB_FILE),
        keys.get(Purpose::Database),
    )?;
    let audit = AuditLog::forwarding_to_siem(keys.get(Purpose::Audit).clone());
    audit.create(&mut db, k0, chain_id, policy)?;
    let event = NewEvent::new(
        timestamp_now(),
        "warden",
        "warden.init",
        root.display().to_string(),
        Outcome::Success,
    )
    .with_details(json!({
        "kdf": kdf.describe(),
        "chain_id": chain_id.to_string(),
        "auditor_key_id": auditor_file.key_id,
        "audit_epoch_max_events": policy.epoch.max_events,
        "audit_epoch_max_secs": policy.epoch.max_age_secs,
        "audit_checkpoint_every": policy.checkpoint_every,
    }));
    audit.append(&mut db, vec![event])?;
    Ok(Provisioned {
        dir,
        keys,
        db,
        chain_id,
    })
}

pub fn run(args: &InitArgs, global: &GlobalArgs) -> Result<()> {
    let kdf = kdf_from_args(args);
    kdf.validate()?;
    if kdf.is_weaker_than_recommended() {
        tracing::warn!(kdf = %kdf.describe(), "KDF parameters are below the recommended strength; use them for tests only");
    }
    let root = &global.data_dir;
    if root.join(SECURITY_FILE).exists() {
        bail!(DataDirError::AlreadyInitialized(root.clone()));
    }
    let auditor_key_out = args
        .auditor_key_out
        .clone()
        .unwrap_or_else(|| root.join("auditor-key.json"));
    let passphrase = PassphraseSource::from_args(global).read(
        &format!(
            "New master passphrase for {} (at least 16 characters): ",
            root.display()
        ),
        true,
    )?;
    // The first administrator, asked for (and checked) before anything is written.
    let first_admin = crate::cmd::user::FirstAdmin::from_args(&args.identity)?;
    let auditor_passphrase = PassphraseSource::for_auditor(global)
        .read(
            "Auditor passphrase (protects the exported initial audit key; at least 16 characters): ",
            true,
        )
        .context("the auditor passphrase")?;
    let mut made = provision(
        root,
        &passphrase,
        &auditor_passphrase,
        &auditor_key_out,
        &kdf,
        audit_policy(args),
    )?;
    first_admin.create(
        &mut made.db,
        made.keys.get(Purpose::Database),
        made.keys.get(Purpose::Audit),
    )?;
    report(&made, &kdf, &auditor_key_out)
}

fn report(made: &Provisioned, kdf: &KdfParams, auditor_key_out: &Path) -> Result<()> {
    eprintln!("initialized {}", made.dir.root().display());
    eprintln!(
        "  keys: database, recordings, config, audit ({})",
        kdf.describe()
    );
    eprintln!("  layout: security.json, sessions/, heartbeats/, alerts/, state/ (0700 / 0600)");
    eprintln!(
        "  database: {} (SQLCipher {}, schema version {})",
        made.db.path().display(),
        made.db.cipher_version()?,
        made.db.schema_version()?
    );
    eprintln!("  audit chain {} started", made.chain_id);
    eprintln!(
        "  auditor key: {} — move it off this box and give it to the auditor; it is the only copy",
        auditor_key_out.display()
    );
    Ok(())
}
