//! `warden keys …`: the key slots (operations in `warden_store::keys`, each signed in, authorized
//! and audited; docs/formats/keyslots.md).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Subcommand, ValueEnum};
use warden_core::kdf::KdfParams;
use warden_core::keyring::Purpose;
use warden_core::keyslots::{RecoveryKey, ServiceKey};
use warden_core::rbac::{Permission, ServiceKind};
use warden_core::secret::Passphrase;
use warden_store::keys;

use crate::context::{Context, PassphraseSource};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Check that the master passphrase (or --recovery-key-file) opens its slot, e.g. the
    /// recovery key kept in a safe. Reads nothing else and changes nothing.
    Check,
    /// Every key slot: whose it is, which keys it carries, how it is unlocked. Needs
    /// `key.rotate`.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change the master passphrase: its slot is re-wrapped (instant, no data is touched) and
    /// the old passphrase opens nothing. Needs `key.rotate` and the current master passphrase
    /// (or `--recovery-key-file`, when the passphrase is lost).
    Passphrase {
        /// Read the new passphrase from this file (0600). Otherwise $WARDEN_NEW_PASSPHRASE
        /// (tests only), or a prompt asked twice.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// PBKDF2 iterations for the new slot (default: as the current slot).
        #[arg(long, value_name = "N")]
        kdf_iterations: Option<u32>,
    },
    /// Make a new recovery key (shown once, or written to --out) whose slot replaces the old
    /// one. Needs `key.export`.
    Recovery {
        /// Write the recovery key to this new file (0600) instead of showing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Rotate a purpose key: a new random key for every slot that carries it, and the data
    /// re-keyed — database (`PRAGMA rekey`), audit (a new epoch), recordings (every file in
    /// DATA_DIR/sessions and the files named: re-wrapped, or re-encrypted), config (the files
    /// named), signing. Needs `key.rotate`, and no daemon running. Killed half-way, it is run
    /// again to finish.
    Rotate {
        purpose: PurposeName,
        /// recordings: give every file a new data key (re-encrypt) instead of re-wrapping its
        /// header — after a suspected compromise of the old key.
        #[arg(long)]
        reencrypt: bool,
        /// recordings: vault files outside DATA_DIR/sessions; config: sealed configuration
        /// files. Files not named stay under the old key, which is gone afterwards. A rotation
        /// run again to finish re-keys the files its first run was given, too.
        #[arg(long = "file", value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Service slots: keys of their own for the daemons (`shim run`, `ota serve`).
    #[command(subcommand)]
    Service(ServiceCommand),
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Make (or replace) the daemon's slot and write its key to FILE (0600, new; `-` for
    /// standard output, e.g. into `systemd-creds encrypt`). Needs `key.rotate`.
    Add {
        service: ServiceName,
        #[arg(long, value_name = "FILE")]
        key_out: PathBuf,
    },
    /// Remove the daemon's slot: its key opens nothing afterwards. Needs `key.rotate`.
    Remove { service: ServiceName },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PurposeName {
    Database,
    Recordings,
    Config,
    Audit,
    Signing,
    /// Refused, with the reason (docs/records.md): record hashes in the chain cover sealed PHI.
    Phi,
}

impl From<PurposeName> for Purpose {
    fn from(name: PurposeName) -> Self {
        match name {
            PurposeName::Database => Purpose::Database,
            PurposeName::Recordings => Purpose::Recordings,
            PurposeName::Config => Purpose::Config,
            PurposeName::Audit => Purpose::Audit,
            PurposeName::Signing => Purpose::Signing,
            PurposeName::Phi => Purpose::Phi,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ServiceName {
    Shim,
    Ota,
}

impl From<ServiceName> for ServiceKind {
    fn from(name: ServiceName) -> Self {
        match name {
            ServiceName::Shim => ServiceKind::ShimDaemon,
            ServiceName::Ota => ServiceKind::OtaServer,
        }
    }
}

const ENV_NEW_PASSPHRASE: &str = "WARDEN_NEW_PASSPHRASE";

pub fn run(cmd: &KeysCommand, ctx: &mut Context<'_>) -> Result<()> {
    match cmd {
        KeysCommand::Check => {
            let master = ctx.master()?;
            let keys: Vec<String> = master
                .keys
                .versions()
                .map(|(purpose, version)| format!("{purpose} v{version}"))
                .collect();
            println!(
                "the {} opens its slot {} ({})",
                master.owner.secret_name(),
                master.slot_id,
                keys.join(", ")
            );
            Ok(())
        }
        KeysCommand::List { json } => list(ctx, *json),
        KeysCommand::Passphrase {
            new_passphrase_file,
            kdf_iterations,
        } => {
            let new = match new_passphrase_file {
                Some(path) => PassphraseSource::File(path.clone()),
                None if std::env::var_os(ENV_NEW_PASSPHRASE).is_some() => {
                    PassphraseSource::Env(ENV_NEW_PASSPHRASE)
                }
                None => PassphraseSource::Prompt {
                    alternatives: "--new-passphrase-file or $WARDEN_NEW_PASSPHRASE (tests only)",
                },
            }
            .read("New master passphrase (at least 16 characters): ", true)
            .context("the new master passphrase")?;
            let (mut store, by) = ctx.sign_in_for(Permission::KeyRotate, "keys.passphrase")?;
            let master = ctx.master()?;
            if Passphrase::MIN_CHARS > new.char_count() {
                bail!(
                    "the new passphrase has {} characters; at least {} are required",
                    new.char_count(),
                    Passphrase::MIN_CHARS
                );
            }
            let kdf = kdf_iterations.map(|iterations| KdfParams::Pbkdf2Sha256 { iterations });
            let master = master.clone();
            let dir = ctx.dir_owned()?;
            keys::change_passphrase(&mut store, &dir, &by, &master, &new, kdf.as_ref())?;
            eprintln!(
                "master key slot re-wrapped for the new secret; the old one opens nothing any more"
            );
            Ok(())
        }
        KeysCommand::Recovery { out } => {
            if let Some(path) = out {
                if path.symlink_metadata().is_ok() {
                    bail!("{} exists; refusing to overwrite it", path.display());
                }
            }
            let (mut store, by) = ctx.sign_in_for(Permission::KeyExport, "keys.recovery")?;
            let ring = ctx.ring()?;
            let dir = ctx.dir_owned()?;
            // The key is shown (or written) before its slot commits: a crash in between leaves
            // a key that opens nothing and the old one still working, never a slot whose key
            // nobody has.
            let key = RecoveryKey::generate();
            let text = key.to_text();
            match out {
                Some(path) => warden_core::fsx::write_atomic_private(
                    path,
                    format!("{}\n", text.expose_secret()).as_bytes(),
                )?,
                None => println!(
                    "RECOVERY KEY (shown once; keep it in a safe or with an escrow):\n{}",
                    text.expose_secret()
                ),
            }
            keys::new_recovery_key(&mut store, &dir, &by, &ring, &key)?;
            if let Some(path) = out {
                eprintln!(
                    "new recovery key written to {}; the old one opens nothing any more",
                    path.display()
                );
            }
            Ok(())
        }
        KeysCommand::Rotate {
            purpose,
            reencrypt,
            files,
        } => {
            let purpose = Purpose::from(*purpose);
            let (mut store, by) = ctx.sign_in_for(Permission::KeyRotate, "keys.rotate")?;
            let mut ring = ctx.ring()?;
            let dir = ctx.dir_owned()?;
            let options = keys::RotateOptions {
                reencrypt: *reencrypt,
                files: files.clone(),
            };
            let mut bar = crate::progress::Bar::new("rotating");
            let rotated = keys::rotate(
                &mut store,
                &dir,
                &by,
                &mut ring,
                purpose,
                &options,
                &mut |n| bar.set(n, None),
            );
            bar.clear();
            let rotated = rotated?;
            eprintln!(
                "`{purpose}` key rotated: version {} -> {}{}; {} re-wrapped, {} re-encrypted, {} re-sealed, {} already done",
                rotated.from_version,
                rotated.to_version,
                if rotated.resumed { " (resumed)" } else { "" },
                rotated.rewrapped,
                rotated.reencrypted,
                rotated.resealed,
                rotated.already
            );
            if purpose == Purpose::Signing {
                eprintln!(
                    "give auditors and the SIEM the new checkpoint key: `warden audit public-key`"
                );
            }
            Ok(())
        }
        KeysCommand::Service(ServiceCommand::Add { service, key_out }) => {
            let kind = ServiceKind::from(*service);
            let key = ServiceKey::generate();
            let (mut store, by) = ctx.sign_in_for(Permission::KeyRotate, "keys.service.add")?;
            let ring = ctx.ring()?;
            // The key file first: a slot whose key was never written would open nothing.
            if key_out.as_os_str() == "-" {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(key.to_file_text().expose_secret().as_bytes())?;
                stdout.flush()?;
            } else {
                if key_out.symlink_metadata().is_ok() {
                    bail!("{} exists; refusing to overwrite it", key_out.display());
                }
                warden_core::fsx::write_atomic_private(
                    key_out,
                    key.to_file_text().expose_secret().as_bytes(),
                )?;
            }
            let dir = ctx.dir_owned()?;
            keys::add_service(&mut store, &dir, &by, &ring, kind, &key)?;
            eprintln!(
                "service slot for `{}` made; start it with --service-key-file {} (or as the systemd credential warden-{}-key)",
                kind.slot_name(),
                key_out.display(),
                kind.slot_name()
            );
            Ok(())
        }
        KeysCommand::Service(ServiceCommand::Remove { service }) => {
            let kind = ServiceKind::from(*service);
            let (mut store, by) = ctx.sign_in_for(Permission::KeyRotate, "keys.service.remove")?;
            let dir = ctx.dir_owned()?;
            let removed = keys::remove_service(&mut store, &dir, &by, kind)?;
            eprintln!("removed {removed} slot(s) of `{}`", kind.slot_name());
            Ok(())
        }
    }
}

fn list(ctx: &mut Context<'_>, json: bool) -> Result<()> {
    let (mut store, by) = ctx.sign_in_for(Permission::KeyRotate, "keys.list")?;
    let dir = ctx.dir_owned()?;
    let (slots, file) = keys::list_slots(&mut store, &dir, &by)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "generation": file.generation,
                "pending": file.pending.as_ref().map(|p| &p.action),
                "slots": slots,
            }))?
        );
        return Ok(());
    }
    println!(
        "{:<18} {:<26} {:<14} {:<36} KEYS",
        "SLOT", "OWNER", "HOLDER", "UNLOCKED BY"
    );
    for slot in &slots {
        println!(
            "{:<18} {:<26} {:<14} {:<36} {}{}",
            slot.id,
            slot.owner,
            slot.holder,
            slot.kdf,
            slot.keys.join(", "),
            if slot.pending { "  (pending)" } else { "" }
        );
    }
    Ok(())
}
