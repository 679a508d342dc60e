//! `warden init`: create a data directory and its security.json.

use anyhow::Result;
use warden_core::datadir::DataDir;
use warden_core::kdf::KdfParams;
use warden_core::keyring::{Purpose, SecurityFile};

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

pub fn run(args: &InitArgs, global: &GlobalArgs) -> Result<()> {
    let kdf = kdf_from_args(args);
    kdf.validate()?;
    if kdf.is_weaker_than_recommended() {
        tracing::warn!(kdf = %kdf.describe(), "KDF parameters are below the recommended strength; use them for tests only");
    }
    let root = &global.data_dir;
    if root.join(warden_core::datadir::SECURITY_FILE).exists() {
        anyhow::bail!(warden_core::datadir::DataDirError::AlreadyInitialized(
            root.clone()
        ));
    }
    let passphrase = PassphraseSource::from_args(global).read(
        &format!(
            "New master passphrase for {} (at least 16 characters): ",
            root.display()
        ),
        true,
    )?;
    let (security, keys) = SecurityFile::create(&passphrase, &kdf, crate::now_rfc3339())?;
    // Identity: the first administrator, asked for (and checked) before anything is written.
    let first_admin = crate::cmd::user::FirstAdmin::from_args(&args.identity)?;
    let dir = DataDir::create(root, security)?;
    let mut db = warden_store::Database::open(
        &dir.root().join(warden_store::DB_FILE),
        keys.get(Purpose::Database),
    )?;
    eprintln!("initialized {}", dir.root().display());
    eprintln!(
        "  keys: database, recordings, config, audit ({})",
        kdf.describe()
    );
    eprintln!("  layout: security.json, sessions/, heartbeats/, alerts/, state/ (0700 / 0600)");
    eprintln!(
        "  database: {} (SQLCipher {}, schema version {})",
        db.path().display(),
        db.cipher_version()?,
        db.schema_version()?
    );
    // Identity (placeholder chain start until the audit init lands; then the first admin).
    crate::cmd::user::ensure_audit_chain(&mut db, keys.get(Purpose::Audit))?;
    first_admin.create(
        &mut db,
        keys.get(Purpose::Database),
        keys.get(Purpose::Audit),
    )?;
    Ok(())
}
