//! `warden init`: gathers what a new data directory needs — the master and auditor passphrases,
//! KDF and audit parameters, the identity policy and the first administrator — checks it all,
//! then calls `warden_store::provision` and reports what was made.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use warden_core::audit::EpochPolicy;
use warden_core::kdf::KdfParams;
use warden_store::audit::AuditPolicy;
use warden_store::identity::{IdentityPolicy, Username};
use warden_store::provision::{provision, Provision, Provisioned};

use crate::cli::{EnrollOutput, InitArgs, KdfChoice};
use crate::context::{on_terminal, read_new_password, Context};

const MAX_POLICY_BYTES: u64 = 64 * 1024;

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

fn identity_policy(path: Option<&Path>) -> Result<IdentityPolicy> {
    let Some(path) = path else {
        return Ok(IdentityPolicy::default());
    };
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bytes = warden_core::fsx::read_limited(file, path, MAX_POLICY_BYTES)?;
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow!("{} is not valid UTF-8", path.display()))?;
    IdentityPolicy::from_json(&text).with_context(|| format!("in {}", path.display()))
}

fn admin_name(given: Option<&str>) -> Result<Username> {
    let name = match given {
        Some(name) => name.to_owned(),
        None if on_terminal() => {
            eprint!("First administrator's user name: ");
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_owned()
        }
        None => bail!(
            "warden init creates the first administrator (there is no default account): pass \
             --admin NAME and --admin-password-file FILE, or run it on a terminal"
        ),
    };
    Ok(Username::parse(&name)?)
}

pub fn run(args: &InitArgs, ctx: &mut Context<'_>) -> Result<()> {
    let kdf = kdf_from_args(args);
    kdf.validate()?;
    if kdf.is_weaker_than_recommended() {
        tracing::warn!(kdf = %kdf.describe(), "KDF parameters are below the recommended strength; use them for tests only");
    }
    let root = ctx.global.data_dir.clone();
    if root.join(warden_core::datadir::SECURITY_FILE).exists()
        || root.join(warden_core::datadir::KEYSLOTS_FILE).exists()
    {
        bail!(warden_core::datadir::DataDirError::AlreadyInitialized(root));
    }
    if let Some(path) = &args.recovery_key_out {
        if path.symlink_metadata().is_ok() {
            bail!("{} exists; refusing to overwrite it", path.display());
        }
    }
    let auditor_key_out = args
        .auditor_key_out
        .clone()
        .unwrap_or_else(|| root.join("auditor-key.json"));
    let passphrase = ctx
        .passphrase(
            &format!(
                "New master passphrase for {} (at least 16 characters): ",
                root.display()
            ),
            true,
        )?
        .clone();
    // The first administrator, asked for (and checked) before anything is written.
    let policy = identity_policy(args.identity.identity_policy.as_deref())?;
    let admin = admin_name(args.identity.admin.as_deref())?;
    let admin_password =
        read_new_password(args.identity.admin_password_file.as_deref(), admin.as_str())?;
    policy
        .password
        .check_new_password(&admin_password, &[])
        .context("the first administrator's password")?;
    let auditor_passphrase = ctx
        .auditor_passphrase(
            "Auditor passphrase (protects the exported initial audit key; at least 16 characters): ",
            true,
        )?
        .clone();
    let made = provision(Provision {
        root: &root,
        passphrase: &passphrase,
        auditor_passphrase: &auditor_passphrase,
        auditor_key_out: &auditor_key_out,
        kdf: &kdf,
        audit_policy: audit_policy(args),
        identity_policy: &policy,
        admin: &admin,
        admin_password: &admin_password,
        admin_totp: args.identity.admin_totp.then_some(policy.totp),
    })?;
    if let Some(path) = &args.recovery_key_out {
        let mut file = warden_core::fsx::create_private_new(path)?;
        writeln!(file, "{}", made.recovery_key.to_text().expose_secret())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write the recovery key to {}", path.display()))?;
    }
    report(
        &made,
        &kdf,
        &auditor_key_out,
        &admin,
        args.recovery_key_out.as_deref(),
    )?;
    if args.recovery_key_out.is_none() {
        println!(
            "RECOVERY KEY (shown once; it opens every key, like the master passphrase — keep it in a safe or with an escrow):\n{}",
            made.recovery_key.to_text().expose_secret()
        );
    }
    if let Some(uri) = &made.admin_enrollment {
        let output = EnrollOutput {
            qr_png: args.identity.admin_qr_png.clone(),
            no_qr: false,
        };
        crate::enroll::show_enrollment(uri, &output, false)?;
    }
    Ok(())
}

fn report(
    made: &Provisioned,
    kdf: &KdfParams,
    auditor_key_out: &Path,
    admin: &Username,
    recovery_key_out: Option<&Path>,
) -> Result<()> {
    eprintln!("initialized {}", made.dir.root().display());
    eprintln!("  keys: database, recordings, config, audit, signing, phi — random, stored only wrapped in key slots");
    eprintln!(
        "  key slots: master passphrase ({}), recovery key, {admin} (administrator)",
        kdf.describe()
    );
    if let Some(path) = recovery_key_out {
        eprintln!(
            "  recovery key: written to {} — move it to a safe; it is the only copy",
            path.display()
        );
    }
    eprintln!("  layout: keyslots.json, sessions/, heartbeats/, alerts/, state/ (0700 / 0600)");
    eprintln!(
        "  database: {} (SQLCipher {}, schema version {})",
        made.store.db.path().display(),
        made.store.db.cipher_version()?,
        made.store.db.schema_version()?
    );
    eprintln!("  audit chain {} started", made.chain_id);
    eprintln!(
        "  first administrator: {} ({})",
        admin,
        if made.admin_enrollment.is_some() {
            "password and TOTP"
        } else {
            "password; enroll TOTP with `warden user enroll-totp`"
        }
    );
    eprintln!(
        "  auditor key: {} — move it off this box and give it to the auditor; it is the only copy",
        auditor_key_out.display()
    );
    Ok(())
}
