//! `warden audit`: verify the chain, export a human-readable copy, follow new events, print the
//! latest checkpoint (operations in `warden_store::audit`; each signs the person in and is
//! itself audited).

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use warden_core::audit::signed::PublicVerdict;
use warden_core::audit::{ChainMac, Checkpoint};
use warden_core::auditor_key::{AuditorKeyError, AuditorKeyFile};
use warden_core::rbac::Permission;
use warden_store::audit::{self, StoredRow, VerifyFrom};
use warden_store::Store;

use crate::cli::{AuditCommand, VerifyArgs};
use crate::context::Context;

pub fn run(cmd: &AuditCommand, ctx: &mut Context<'_>) -> Result<()> {
    match cmd {
        AuditCommand::Verify { verify } => {
            let (mut store, by) = ctx.sign_in_for(Permission::AuditVerify, "audit.verify")?;
            let (from, checkpoint) = verify_from(&mut store, verify, ctx)?;
            let verdict = audit::verify(&mut store, &by, from, checkpoint)?;
            let report = verdict.report()?;
            let scope = if verdict.from_seq <= 1 {
                "from genesis".to_string()
            } else {
                format!(
                    "from the current epoch (seq {} on; earlier epochs need --auditor-key)",
                    verdict.from_seq
                )
            };
            println!(
                "audit chain {} OK: {} records verified {scope}; epochs {}..{}; last seq {} mac {}; \
                 the stored head and {} checkpoint(s) matched",
                verdict.head.chain_id,
                report.records,
                report.first_epoch,
                report.last_epoch,
                report.last_seq,
                report.last_mac,
                report.checkpoints_matched,
            );
            // The chain's rows are not all of the file: a page of any table that fails its
            // authentication is damage too.
            let damaged = store.db.damaged_pages()?;
            if let Some(first) = damaged.first() {
                println!("database file: DAMAGED: {}", damaged.join("; "));
                return Err(warden_store::StoreError::Corrupt(format!(
                    "{} page(s) of the database file fail their authentication ({first}); restore it from a backup",
                    damaged.len()
                ))
                .into());
            }
            println!("database file: every page authenticates");
            if let Some(given) = checkpoint {
                println!(
                    "checkpoint {}: {}",
                    given.seq,
                    if given.seq >= verdict.from_seq {
                        "matched"
                    } else {
                        "not checked (before the verified range)"
                    }
                );
            }
            if !verify.public_key.is_empty() {
                let keys = verify
                    .public_key
                    .iter()
                    .map(|path| read_public_key(path))
                    .collect::<Result<Vec<_>>>()?;
                match audit::verify_public(&mut store, &by, keys)? {
                    PublicVerdict::Verified {
                        covered,
                        checkpoints,
                    } => println!(
                        "signed checkpoints OK: {checkpoints} verified with the public key(s); \
                         rows 1..{covered} are the rows the box signed"
                    ),
                    PublicVerdict::Failed { seq, reason } => {
                        println!("signed checkpoint at seq {seq}: DAMAGED: {reason}");
                        return Err(warden_store::audit::ChainDamaged {
                            seq,
                            kind: "signed_checkpoint",
                            explanation: reason,
                        }
                        .into());
                    }
                }
            }
        }
        AuditCommand::Export {
            verify,
            format,
            output,
        } => {
            let (mut store, by) = ctx.sign_in_for(Permission::AuditExport, "audit.export")?;
            let (from, checkpoint) = verify_from(&mut store, verify, ctx)?;
            // A file output has no name until the export is complete (see fsx::PendingFile):
            // an export that fails or is killed leaves nothing behind.
            let exported = match output {
                Some(path) => {
                    if path.symlink_metadata().is_ok() {
                        bail!("{} exists; refusing to overwrite it", path.display());
                    }
                    let mut out = io::BufWriter::new(warden_core::fsx::PendingFile::create(path)?);
                    let destination = warden_store::audit::path_text(path);
                    let exported = audit::export(
                        &mut store,
                        &by,
                        from,
                        checkpoint,
                        (*format).into(),
                        &destination,
                        &mut out,
                    )?;
                    let pending = out
                        .into_inner()
                        .map_err(|e| e.into_error())
                        .with_context(|| format!("cannot write {destination}"))?;
                    pending.commit()?;
                    exported
                }
                None => {
                    let mut out = io::BufWriter::new(io::stdout().lock());
                    let exported = audit::export(
                        &mut store,
                        &by,
                        from,
                        checkpoint,
                        (*format).into(),
                        "stdout",
                        &mut out,
                    )?;
                    out.flush().context("cannot write to standard output")?;
                    exported
                }
            };
            eprintln!(
                "exported {} records; verification: {}",
                exported.records,
                exported.verdict.summary()
            );
            exported.verdict.report()?;
        }
        AuditCommand::Tail {
            lines,
            follow,
            json,
        } => {
            let (mut store, by) = ctx.sign_in_for(Permission::AuditTail, "audit.tail")?;
            let mut tail = audit::tail(&mut store, &by, *lines, *follow)?;
            loop {
                for row in tail.next_rows(&store)? {
                    print_row(&row, *json)?;
                }
                if !follow {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        AuditCommand::Checkpoint { json } => {
            let (mut store, by) =
                ctx.sign_in_for(Permission::AuditCheckpoint, "audit.checkpoint")?;
            let latest = audit::checkpoint(&mut store, &by)?;
            if *json {
                let signed = warden_store::audit::AuditLog::signed_checkpoints(&store.db)?;
                println!(
                    "{}",
                    serde_json::json!({
                        "chain_id": warden_store::audit::AuditLog::stored_chain_id(&store.db)?.to_string(),
                        "checkpoint": latest.map(|c| format!("{}:{}", c.seq, c.mac)),
                        "signed": signed.last(),
                    })
                );
                return Ok(());
            }
            match latest {
                Some(c) => println!("{}:{}", c.seq, c.mac),
                None => println!("no checkpoint yet"),
            }
        }
        AuditCommand::PublicKey => {
            let dir = ctx.dir()?;
            let slots = dir.read_slots()?;
            for key in slots.signing_public_keys() {
                println!(
                    "{}  (key id {})",
                    hex::encode(key),
                    hex::encode(warden_core::signing::key_id(&key))
                );
            }
        }
    }
    Ok(())
}

/// A public checkpoint key from a file: 64 hex digits (what `audit public-key` prints first).
fn read_public_key(path: &Path) -> Result<warden_core::signing::CheckpointKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the public key {}", path.display()))?;
    let hex_text = text.split_whitespace().next().unwrap_or("");
    let bytes = hex::decode(hex_text)
        .map_err(|_| anyhow::anyhow!("{} does not hold a hex public key", path.display()))?;
    Ok(warden_core::signing::CheckpointKey::from_bytes(&bytes)?)
}

fn parse_checkpoint(text: &str) -> Result<Checkpoint> {
    let (seq, mac) = text.split_once(':').context("a checkpoint is SEQ:MAC")?;
    Ok(Checkpoint {
        seq: seq.parse().context("checkpoint SEQ is not a number")?,
        mac: ChainMac::from_hex(mac).context("checkpoint MAC is not 64 hex digits")?,
    })
}

/// Where verification starts (genesis with the auditor's key, else the current epoch) and the
/// trusted checkpoint, from the arguments.
fn verify_from(
    store: &mut Store,
    args: &VerifyArgs,
    ctx: &mut Context<'_>,
) -> Result<(VerifyFrom, Option<Checkpoint>)> {
    let checkpoint = args
        .checkpoint
        .as_deref()
        .map(parse_checkpoint)
        .transpose()?;
    let from = verify_start(store, args.auditor_key.as_deref(), ctx)?;
    Ok((from, checkpoint))
}

/// Genesis with the auditor's key in `auditor_key` (opened with the auditor's passphrase),
/// else the current epoch.
pub fn verify_start(
    store: &mut Store,
    auditor_key: Option<&Path>,
    ctx: &mut Context<'_>,
) -> Result<VerifyFrom> {
    let Some(path) = auditor_key else {
        return Ok(VerifyFrom::CurrentEpoch);
    };
    let file = read_auditor_key(path)?;
    let head = store.identity.audit_log().head(&mut store.db)?;
    if file.chain_id()? != head.chain_id {
        bail!(AuditorKeyError::OtherChain {
            file: file.chain_id.clone(),
            db: head.chain_id.to_string()
        });
    }
    let passphrase = ctx.auditor_passphrase("Auditor passphrase: ", false)?;
    let (k0, _) = file.open(passphrase)?;
    Ok(VerifyFrom::Genesis(k0))
}

fn read_auditor_key(path: &Path) -> Result<AuditorKeyFile> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bytes = warden_core::fsx::read_limited(file, path, 64 * 1024)?;
    Ok(AuditorKeyFile::parse(&bytes)?)
}

fn print_row(row: &StoredRow, json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(row)?)?;
    } else {
        writeln!(
            out,
            "{:>6}  {}  {:<12} {:<22} {:<24} {:<8} {}",
            row.seq, row.timestamp, row.actor, row.action, row.subject, row.outcome, row.details
        )?;
    }
    out.flush()?;
    Ok(())
}
