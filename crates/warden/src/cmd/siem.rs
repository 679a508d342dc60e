//! `warden siem test`: one test event to the SIEM named in a configuration's `siem:` section,
//! with the exact cause when it fails (refused, timeout, address, untrusted server certificate,
//! name mismatch, client certificate rejected, TLS protocol, I/O) and a hint on what to fix.
//! Needs `siem.test`; the attempt and its outcome are audited.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use warden_core::rbac::Permission;
use warden_core::sealed_config::{self, ConfigSealer, Form, Plain};
use warden_siem::check::audited_test;
use warden_siem::{SiemConfig, TlsClient};

use crate::cli::SiemCommand;
use crate::context::Context;

pub fn run(cmd: &SiemCommand, ctx: &mut Context<'_>) -> Result<()> {
    match cmd {
        SiemCommand::Test {
            config,
            watch_ms,
            allow_plain_config,
        } => {
            let (mut store, by) = ctx.sign_in_for(Permission::SiemTest, "siem.test")?;
            let sealer = ctx.config_sealer()?;
            test(
                &mut store,
                &by,
                config,
                *watch_ms,
                *allow_plain_config,
                &sealer,
            )
        }
    }
}

fn test(
    store: &mut warden_store::Store,
    by: &warden_store::identity::Authorized,
    path: &Path,
    watch_ms: Option<u64>,
    allow_plain: bool,
    sealer: &ConfigSealer,
) -> Result<()> {
    let plain = if allow_plain {
        Plain::Allow
    } else {
        Plain::Refuse
    };
    let (text, form, _) = sealed_config::read_config(path, sealer, plain)?;
    if form == Form::Plain {
        tracing::warn!(config = %path.display(), "reading a configuration that is not sealed (--allow-plain-config)");
    }
    let settings = SiemConfig::from_yaml_document(text.expose_secret())
        .and_then(|c| c.validate())
        .with_context(|| format!("invalid configuration {}", path.display()))?;
    let client = TlsClient::from_settings(&settings, Some(sealer))
        .context("cannot set up the TLS client")?;
    let watch = watch_ms.map_or(settings.delivery.confirm_after, Duration::from_millis);
    let report = audited_test(store, by, &settings, &client, watch)?;
    let endpoint = &settings.endpoint;
    println!(
        "ok: test event delivered to {}:{} (server name {})",
        endpoint.host, endpoint.port, endpoint.server_name
    );
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
