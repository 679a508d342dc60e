//! `warden shim`: run the serial MFA shim daemon (as its service principal), ask it for its
//! state, or ask it to reset. The daemon and its store host live in `warden_shim`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use warden_core::keyring::Purpose;
use warden_core::rbac::Permission;
use warden_core::sealed_config::{self, Form, Plain};
use warden_shim::config::ShimConfig;
use warden_shim::host::{build_daemon, DaemonKeys};
use warden_store::identity::PortId;

use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum ShimCommand {
    /// Run the shim daemon (foreground) with this configuration (sealed YAML; a plain one
    /// only with --allow-plain-config). It acts as the service principal `service:shim:ID`.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Accept a configuration that is not sealed (logged as a warning).
        #[arg(long)]
        allow_plain_config: bool,
    },
    /// Show the daemon's state. Needs `shim.status`. The daemon is found through its
    /// configuration (a sealed one needs the `config` key, which operators' and auditors' slots
    /// do not carry) or directly by its control socket.
    Status {
        #[arg(long, value_name = "FILE", required_unless_present = "socket")]
        config: Option<PathBuf>,
        #[arg(long)]
        allow_plain_config: bool,
        /// The daemon's `control_socket`, instead of its configuration.
        #[arg(long, value_name = "PATH", conflicts_with_all = ["config", "allow_plain_config"])]
        socket: Option<PathBuf>,
    },
    /// Measure latency and throughput through a throwaway shim on PTYs, next to socat.
    Bench {
        /// One-byte round trips to time.
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
        /// MiB sent one way for the throughput figure.
        #[arg(long, default_value_t = 16)]
        mib: usize,
    },
    /// Ask the running daemon to return from LOCKED or EMERGENCY_STOP to IDLE. Needs
    /// `shim.reset` (administrator). The daemon carries it out and records it, or refuses
    /// while a tamper source still reports tamper; with the daemon down nothing changes.
    Reset {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        allow_plain_config: bool,
    },
}

pub fn run(cmd: &ShimCommand, ctx: &mut Context<'_>) -> Result<()> {
    match cmd {
        ShimCommand::Run {
            config,
            allow_plain_config,
        } => run_daemon(config, *allow_plain_config, ctx),
        ShimCommand::Bench { rounds, mib } => crate::shim_bench::run(*rounds, *mib),
        ShimCommand::Status {
            config,
            allow_plain_config,
            socket,
        } => {
            let (mut store, by) = ctx.sign_in_for(Permission::ShimStatus, "shim.status")?;
            let (socket, name) = match (config, socket) {
                (_, Some(socket)) => (socket.clone(), socket.display().to_string()),
                (Some(config), None) => {
                    let (config, _) = load_config(config, *allow_plain_config, ctx)?;
                    (config.control_socket, config.shim_id)
                }
                (None, None) => bail!("give --config FILE or --socket PATH"),
            };
            let reply = warden_shim::host::status(&mut store, &by, &socket, &name)?;
            println!("{name} {}: {}", reply.state, reply.message);
            Ok(())
        }
        ShimCommand::Reset {
            config,
            allow_plain_config,
        } => {
            let (mut store, by) = ctx.sign_in_for(Permission::ShimReset, "shim.reset")?;
            let (config, _) = load_config(config, *allow_plain_config, ctx)?;
            let port = PortId::parse(&config.shim_id)?;
            let reply = warden_shim::host::reset(&mut store, &by, &port, &config.control_socket)?;
            if !reply.ok {
                bail!("the shim refused the reset: {}", reply.message);
            }
            println!("{}: {}", config.shim_id, reply.message);
            Ok(())
        }
    }
}

/// Reads the configuration (sealed with `warden config seal`, or plain when allowed) and
/// parses it once.
fn load_config(
    path: &Path,
    allow_plain: bool,
    ctx: &mut Context<'_>,
) -> Result<(ShimConfig, Vec<u8>)> {
    let plain = if allow_plain {
        Plain::Allow
    } else {
        Plain::Refuse
    };
    let (bytes, form) = if ctx.carries(Purpose::Config)? {
        let sealer = ctx.config_sealer()?;
        let (bytes, form, _) = sealed_config::read_config(path, &sealer, plain)?;
        (bytes, form)
    } else {
        // A role without the config key reads only a plain configuration (when allowed).
        let (bytes, _) = sealed_config::read_file(path)?;
        if warden_core::sealed_config::ConfigSealer::looks_sealed(&bytes) || !allow_plain {
            ctx.key(Purpose::Config)?;
        }
        (warden_core::secret::SecretBytes::new(bytes), Form::Plain)
    };
    if form == Form::Plain {
        tracing::warn!(config = %path.display(), "reading a configuration that is not sealed (--allow-plain-config)");
    }
    let bytes = bytes.expose_secret().to_vec();
    let text = std::str::from_utf8(&bytes).context("the configuration is not UTF-8")?;
    let config = ShimConfig::parse(text)
        .with_context(|| format!("invalid configuration {}", path.display()))?;
    Ok((config, bytes))
}

fn run_daemon(path: &Path, allow_plain: bool, ctx: &mut Context<'_>) -> Result<()> {
    ctx.use_service(warden_core::rbac::ServiceKind::ShimDaemon)?;
    let (config, bytes) = load_config(path, allow_plain, ctx)?;
    let keys = DaemonKeys {
        database: ctx.key(Purpose::Database)?,
        audit: ctx.key(Purpose::Audit)?,
        recordings: ctx.key(Purpose::Recordings)?,
        config: ctx.config_sealer()?,
        signing: ctx.key(Purpose::Signing).ok(),
    };
    eprintln!(
        "warden shim {}: technician {} <-> device {} ({}); control socket {}",
        config.shim_id,
        config.technician_port.path.display(),
        config.device_port.path.display(),
        config.device_name,
        config.control_socket.display()
    );
    let (daemon, _runtime) = build_daemon(config, &bytes, ctx.dir()?, keys)?;
    daemon.run(true)?;
    Ok(())
}
