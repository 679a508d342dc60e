//! `warden siem test`: one test event to the SIEM named in a configuration's `siem:` section,
//! with the exact cause when it fails (refused, timeout, address, untrusted server certificate,
//! name mismatch, client certificate rejected, TLS protocol, I/O) and a hint on what to fix.
//!
//! A plain configuration needs no data directory. A sealed configuration, or a sealed client
//! key, is opened with the `config` purpose key (so the passphrase is asked for only then).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use warden_core::fsx;
use warden_core::keyring::Purpose;
use warden_core::sealed_config::ConfigSealer;
use warden_siem::check::send_test_event;
use warden_siem::{SiemConfig, TlsClient, TlsSetupError};

use crate::cli::{GlobalArgs, SiemCommand};
use crate::cmd::config::{read_config, MAX_CONFIG_BYTES};
use crate::keys::Unlocker;

pub fn run(cmd: &SiemCommand, global: &GlobalArgs) -> Result<()> {
    match cmd {
        SiemCommand::Test { config, watch_ms } => test(config, *watch_ms, global),
    }
}

fn sealer(global: &GlobalArgs) -> Result<ConfigSealer> {
    let mut unlocker = Unlocker::open(global)?;
    Ok(ConfigSealer::new(&unlocker.key(Purpose::Config)?))
}

fn test(path: &Path, watch_ms: Option<u64>, global: &GlobalArgs) -> Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let raw = fsx::read_limited(file, path, MAX_CONFIG_BYTES)?;
    let text = if ConfigSealer::looks_sealed(&raw) {
        read_config(path, &mut Unlocker::open(global)?)?
    } else {
        warden_core::secret::SecretBytes::new(raw)
    };
    let settings = SiemConfig::from_yaml_document(text.expose_secret())
        .and_then(|c| c.validate())
        .with_context(|| format!("invalid configuration {}", path.display()))?;
    let client = match TlsClient::from_settings(&settings, None) {
        Err(TlsSetupError::SealedKeyNeedsConfigKey { .. }) => {
            TlsClient::from_settings(&settings, Some(&sealer(global)?))
        }
        other => other,
    }
    .context("cannot set up the TLS client")?;
    let watch = watch_ms.map_or(settings.delivery.confirm_after, Duration::from_millis);
    let endpoint = &settings.endpoint;
    let target = format!(
        "{}:{} (server name {})",
        endpoint.host, endpoint.port, endpoint.server_name
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime
        .block_on(send_test_event(
            &client,
            &settings.identity,
            watch,
            settings.delivery.max_message_bytes,
        ))
        .with_context(|| format!("SIEM test to {target} failed"))?;
    println!("ok: test event delivered to {target}");
    if let Some(peer) = report.peer {
        println!("  peer:        {peer}");
    }
    println!("  TLS:         {} {}", report.tls_version, report.cipher);
    println!("  server cert: {}", report.server_subject);
    println!(
        "  the server kept the connection open for {:?} after the write; RFC 5425 has no \
         acknowledgement, so look for CEF signature `siem-test` at the SIEM",
        report.watched
    );
    println!("  sent:        {}", String::from_utf8_lossy(&report.frame));
    Ok(())
}
