//! `warden config`: seal and open configuration files with Fernet under the `config` key.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use warden_core::fsx::{self, PendingFile};
use warden_core::keyring::Purpose;
use warden_core::sealed_config::ConfigSealer;
use warden_core::secret::SecretBytes;

use crate::cli::{ConfigCommand, GlobalArgs};
use crate::keys::Unlocker;

/// Configuration files are small; anything larger is a mistake (or an attack).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

pub fn run(cmd: &ConfigCommand, global: &GlobalArgs) -> Result<()> {
    let mut unlocker = Unlocker::open(global)?;
    match cmd {
        ConfigCommand::Seal {
            file,
            output,
            force,
        } => {
            let plaintext = read_limited(file)?;
            if ConfigSealer::looks_sealed(&plaintext) {
                bail!("{} is already sealed", file.display());
            }
            let sealer = ConfigSealer::new(&unlocker.key(Purpose::Config)?);
            let mut token = sealer.seal(&plaintext);
            token.push('\n');
            let output = output.clone().unwrap_or_else(|| sealed_name(file));
            write_output(&output, token.as_bytes(), *force)?;
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
            let plaintext = read_config(file, &mut unlocker)?;
            let output = output.clone().unwrap_or_else(|| PathBuf::from("-"));
            write_output(&output, plaintext.expose_secret(), *force)?;
        }
    }
    Ok(())
}

fn sealed_name(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sealed");
    PathBuf::from(name)
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(fsx::read_limited(file, path, MAX_CONFIG_BYTES)?)
}

fn write_output(path: &Path, content: &[u8], force: bool) -> Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(content)?;
        out.flush()?;
        return Ok(());
    }
    if !force && path.symlink_metadata().is_ok() {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    let mut pending = PendingFile::create(path)?;
    pending.write_all(content)?;
    pending.commit()?;
    Ok(())
}

/// Reads a configuration file that is either plain or a Fernet token under the `config` key.
/// This is how daemons load configuration that carries secrets.
pub fn read_config(path: &Path, unlocker: &mut Unlocker) -> Result<SecretBytes> {
    let bytes = read_limited(path)?;
    if !ConfigSealer::looks_sealed(&bytes) {
        return Ok(SecretBytes::new(bytes));
    }
    let sealer = ConfigSealer::new(&unlocker.key(Purpose::Config)?);
    sealer
        .open(&bytes)
        .with_context(|| format!("cannot open sealed configuration {}", path.display()))
}
