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
                "sealed {} bytes in {} segments -> {} (sha256 {})",
                sealed.summary.plaintext_bytes,
                sealed.summary.segments,
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
                    "opened and verified {} bytes in {} segments -> {}",
                    summary.plaintext_bytes,
                    summary.segments,
                    output.display()
                ),
                Opened::Recovered {
                    segments,
                    plaintext_bytes,
                    unverified_bytes,
                    ..
                } => eprintln!(
                    "warning: {} was truncated (its final segment is missing).\n\
                     recovered the verified prefix: {plaintext_bytes} bytes in {segments} segments -> {}\n\
                     lost: everything after that; {unverified_bytes} bytes at the end of the file could not be verified",
                    input.display(),
                    output.display()
                ),
            }
        }
        VaultCommand::Verify { file } => {
            let (mut store, by) = ctx.sign_in_for(Permission::VaultVerify, "vault.verify")?;
            let keys = ctx.key_candidates(Purpose::Recordings)?;
            let verified = vault::verify(&mut store, &by, &keys, file)?;
            println!(
                "OK {}: {} bytes in {} segments, all authentic, file id {}, sha256 {}",
                file.display(),
                verified.summary.plaintext_bytes,
                verified.summary.segments,
                hex::encode(verified.summary.file_id),
                hex::encode(verified.sha256)
            );
        }
    }
    Ok(())
}
