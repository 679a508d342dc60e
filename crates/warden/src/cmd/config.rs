//! `warden config`: seal and open configuration files with Fernet under the `config` key
//! (operations in `warden_store::config`; each signs the person in and is audited).

use std::path::PathBuf;

use anyhow::Result;
use warden_core::rbac::Permission;

use crate::cli::ConfigCommand;
use crate::context::Context;

pub fn run(cmd: &ConfigCommand, ctx: &mut Context<'_>) -> Result<()> {
    match cmd {
        ConfigCommand::Seal {
            file,
            output,
            force,
        } => {
            let (mut store, by) = ctx.sign_in_for(Permission::ConfigSeal, "config.seal")?;
            let sealer = ctx.config_sealer()?;
            let output = output.clone().unwrap_or_else(|| {
                let mut name = file.as_os_str().to_owned();
                name.push(".sealed");
                PathBuf::from(name)
            });
            warden_store::config::seal(&mut store, &by, &sealer, file, &output, *force)?;
            if output.as_os_str() != "-" {
                eprintln!(
                    "sealed {} -> {}\nthe plaintext is still at {}; remove it once you no longer need it",
                    file.display(),
                    output.display(),
                    file.display()
                );
            }
        }
        ConfigCommand::Open {
            file,
            output,
            force,
        } => {
            let (mut store, by) = ctx.sign_in_for(Permission::ConfigOpen, "config.open")?;
            let sealer = ctx.config_sealer()?;
            let output = output.clone().unwrap_or_else(|| PathBuf::from("-"));
            warden_store::config::open(&mut store, &by, &sealer, file, &output, *force)?;
        }
    }
    Ok(())
}
