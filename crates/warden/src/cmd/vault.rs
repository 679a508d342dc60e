//! `warden vault`: seal, open and verify files as sealed streams under the `recordings` key
//! (operations in `warden_store::vault`; each signs the person in and is audited).

use anyhow::Result;
use warden_core::keyring::Purpose;
use warden_core::rbac::Permission;
use warden_store::vault::{self, Opened};

use crate::cli::VaultCommand;
use crate::context::Context;

pub fn run(cmd: &VaultCommand, ctx: &mut Context<'_>) -> Result<()> {
    match cmd {
        VaultCommand::Seal {
            input,
            output,
            force,
        } => {
            let (mut store, by) = ctx.sign_in_for(Permission::VaultSeal, "vault.seal")?;
            let key = ctx.key(Purpose::Recordings)?;
            let mut bar = crate::progress::Bar::new("sealing");
            let sealed = vault::seal(&mut store, &by, &key, input, output, *force, &mut |n, t| {
                bar.set(n, t)
            })?;
            bar.clear();
            eprintln!(
                "sealed {} in {} -> {} (sha256 {})",
                count(sealed.summary.plaintext_bytes, "byte"),
                count(sealed.summary.segments, "segment"),
                output.display(),
                hex::encode(sealed.sha256)
            );
        }
        VaultCommand::Open {
            input,
            output,
            recover,
            force,
        } => {
            let (mut store, by) = ctx.sign_in_for(Permission::VaultOpen, "vault.open")?;
            let keys = ctx.key_candidates(Purpose::Recordings)?;
            let mut bar = crate::progress::Bar::new("opening");
            let opened = vault::open(
                &mut store,
                &by,
                &keys,
                input,
                output,
                *recover,
                *force,
                &mut |n, t| bar.set(n, t),
            );
            bar.clear();
            match opened? {
                Opened::Complete { summary, .. } => eprintln!(
                    "opened and verified {} in {} -> {}",
                    count(summary.plaintext_bytes, "byte"),
                    count(summary.segments, "segment"),
                    output.display()
                ),
                Opened::Recovered {
                    segments,
                    plaintext_bytes,
                    unverified_bytes,
                    ..
                } => eprintln!(
                    "warning: {} was truncated (its final segment is missing).\n\
                     recovered the verified prefix: {} in {} -> {}\n\
                     lost: everything after that; {} at the end of the file could not be verified",
                    input.display(),
                    count(plaintext_bytes, "byte"),
                    count(segments, "segment"),
                    output.display(),
                    count(unverified_bytes, "byte"),
                ),
            }
        }
        VaultCommand::Verify { file } => {
            let (mut store, by) = ctx.sign_in_for(Permission::VaultVerify, "vault.verify")?;
            let keys = ctx.key_candidates(Purpose::Recordings)?;
            let verified = vault::verify(&mut store, &by, &keys, file)?;
            println!(
                "OK {}: {} in {}, all authentic, file id {}, sha256 {}",
                file.display(),
                count(verified.summary.plaintext_bytes, "byte"),
                count(verified.summary.segments, "segment"),
                hex::encode(verified.summary.file_id),
                hex::encode(verified.sha256)
            );
        }
    }
    Ok(())
}

/// `1 byte`, `2 bytes`.
fn count(n: impl Into<u64>, what: &str) -> String {
    match n.into() {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}
