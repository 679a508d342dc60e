//! `warden demo`: every capability, end to end, in a throwaway data directory.
//!
//! It uses the same functions as the real subcommands, on real files, and says what each step
//! proved. Later capabilities add their steps here.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use warden_core::audit::{EpochPolicy, NewEvent, Outcome};
use warden_core::auditor_key::AuditorKeyFile;
use warden_core::kdf::KdfParams;
use warden_core::keyring::Purpose;
use warden_core::sealed_config::ConfigSealer;
use warden_core::secret::Passphrase;
use warden_store::audit::{timestamp_now, AuditLog, AuditPolicy, VerifyFrom};
use warden_store::spool::{Spool, SpoolLimits};

use crate::cli::DemoArgs;
use crate::cmd::init::{provision, Provisioned};
use crate::cmd::vault::{self, Opened};

fn step(title: &str) {
    println!("\n== {title}");
}

fn ok(text: impl AsRef<str>) {
    println!("  ✓ {}", text.as_ref());
}

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9)
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let temp;
    let root = match &args.keep {
        Some(path) => path.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("warden-data")
        }
    };
    println!("warden demo — data directory {}", root.display());

    step("1. Initialize a data directory");
    let passphrase = Passphrase::new(format!(
        "demo-{}",
        hex::encode(warden_core::rand::array::<12>())
    ));
    let auditor_passphrase = Passphrase::new(format!(
        "auditor-{}",
        hex::encode(warden_core::rand::array::<12>())
    ));
    let auditor_key = root.with_file_name("auditor-key.json");
    let started = Instant::now();
    let made = provision(
        &root,
        &passphrase,
        &auditor_passphrase,
        &auditor_key,
        &KdfParams::default_pbkdf2(),
        AuditPolicy {
            epoch: EpochPolicy {
                max_events: Some(4),
                max_age_secs: None,
            },
            checkpoint_every: 5,
        },
    )?;
    let Provisioned {
        dir,
        keys,
        mut db,
        chain_id,
    } = made;
    ok(format!(
        "security.json written: 4 purpose keys (database, recordings, config, audit), PBKDF2-HMAC-SHA256 x 600,000, {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    ok("layout sessions/ heartbeats/ alerts/ state/ created 0700; no key is stored anywhere");
    ok(format!(
        "SQLCipher {} database keyed with the raw database key; audit chain {chain_id} started",
        db.cipher_version()?
    ));
    ok(format!(
        "initial audit key sealed for the auditor -> {}",
        auditor_key.display()
    ));
    let wrong = Passphrase::new("not the passphrase at all".into());
    match dir.security().unlock(&wrong, Purpose::Recordings) {
        Err(err) => ok(format!(
            "a wrong passphrase is refused before any data is touched: {err}"
        )),
        Ok(_) => anyhow::bail!("a wrong passphrase was accepted"),
    }
    let key = keys.get(Purpose::Recordings).clone();

    step("2. Seal and open a large file (segmented AES-256-GCM)");
    let work = root.join("demo-files");
    warden_core::fsx::create_private_dir(&work)?;
    let video = work.join("treatment-video.mp4");
    write_sample(&video, 32 * 1024 * 1024)?;
    let sealed = work.join("treatment-video.mp4.sealed");
    let started = Instant::now();
    let summary = vault::seal_file(&key, &video, &sealed, false)?;
    let secs = started.elapsed().as_secs_f64();
    ok(format!(
        "sealed 32 MiB in {} segments at {:.0} MiB/s (fresh data key, wrapped under the recordings key)",
        summary.segments,
        mib_per_s(summary.plaintext_bytes, secs)
    ));
    let opened = work.join("treatment-video.opened.mp4");
    let started = Instant::now();
    vault::open_file(&key, &sealed, &opened, false, false)?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        std::fs::read(&video)? == std::fs::read(&opened)?,
        "round trip differs"
    );
    ok(format!(
        "opened and verified at {:.0} MiB/s; identical to the original",
        mib_per_s(summary.plaintext_bytes, secs)
    ));

    step("3. Damage is detected and named");
    let bytes = std::fs::read(&sealed)?;
    let damaged = work.join("modified.sealed");
    let mut copy = bytes.clone();
    copy[bytes.len() / 2] ^= 0x01;
    std::fs::write(&damaged, &copy)?;
    report_refusal(vault::verify_file(&key, &damaged).err(), "one flipped bit")?;
    let cut = work.join("truncated.sealed");
    std::fs::write(&cut, &bytes[..bytes.len() * 3 / 4])?;
    report_refusal(
        vault::verify_file(&key, &cut).err(),
        "a file cut short (power loss)",
    )?;
    let recovered = work.join("recovered.mp4");
    if let Opened::Recovered {
        plaintext_bytes, ..
    } = vault::open_file(&key, &cut, &recovered, true, false)?
    {
        ok(format!(
            "--recover kept the verified prefix: {plaintext_bytes} bytes"
        ));
    }

    step("4. Seal a configuration file (Fernet under the config key)");
    let sealer = ConfigSealer::new(keys.get(Purpose::Config));
    let yaml = b"siem:\n  host: siem.hospital.example\n  client_key: /etc/warden/siem.key\n";
    let token = sealer.seal(yaml);
    ensure!(
        sealer.open(token.as_bytes())?.expose_secret() == yaml,
        "config round trip differs"
    );
    ok(format!(
        "sealed {} bytes of YAML into a {}-character Fernet token and opened it again",
        yaml.len(),
        token.len()
    ));

    step("5. The forward-secure audit chain");
    let audit = AuditLog::new(keys.get(Purpose::Audit).clone())
        .with_siem_spool(Spool::new(SpoolLimits::default()));
    let events: Vec<NewEvent> = [
        "vault.seal",
        "vault.open",
        "vault.verify",
        "config.seal",
        "user.login",
        "session.open",
        "session.close",
    ]
    .iter()
    .map(|action| {
        NewEvent::new(
            timestamp_now(),
            "demo",
            *action,
            "treatment-video.mp4",
            Outcome::Success,
        )
    })
    .collect();
    let appended = audit.append(&mut db, events)?;
    let head = audit.head(&mut db)?;
    ok(format!(
        "{} events appended; the key evolved to epoch {} (old keys erased), a checkpoint every 5 events",
        appended.records.len(),
        head.epoch
    ));
    let local = audit.verify(&mut db, VerifyFrom::CurrentEpoch, None)?;
    let report = local
        .result
        .map_err(|d| anyhow::anyhow!("chain damaged at {}", d.seq))?;
    ok(format!(
        "on-box verification of the current epoch: {} records OK",
        report.records
    ));
    let (k0, _) =
        AuditorKeyFile::parse(&std::fs::read(&auditor_key)?)?.open(&auditor_passphrase)?;
    let checkpoint = AuditLog::latest_checkpoint(&db)?;
    let full = audit.verify(&mut db, VerifyFrom::Genesis(k0), checkpoint)?;
    let report = full
        .result
        .map_err(|d| anyhow::anyhow!("chain damaged at {}", d.seq))?;
    ok(format!(
        "auditor verification from genesis with the exported key: {} records, epochs {}..{} OK",
        report.records, report.first_epoch, report.last_epoch
    ));
    db.conn().execute(
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3",
        [],
    )?;
    let (k0, _) =
        AuditorKeyFile::parse(&std::fs::read(&auditor_key)?)?.open(&auditor_passphrase)?;
    match audit.verify(&mut db, VerifyFrom::Genesis(k0), None)?.result {
        Err(damage) => ok(format!(
            "someone rewrote the actor of event 3: detected — damaged at seq {}: {} ({})",
            damage.seq,
            damage.kind.as_str(),
            crate::cmd::audit::explain(damage.kind)
        )),
        Ok(_) => anyhow::bail!("a rewritten audit row went unnoticed"),
    }

    println!("\nAll steps passed. Files are in {}", root.display());
    if args.keep.is_none() {
        println!("(a temporary directory, removed now; pass --keep DIR to keep it)");
    }
    Ok(())
}

fn report_refusal(err: Option<anyhow::Error>, what: &str) -> Result<()> {
    let err = err.with_context(|| format!("{what} was not detected"))?;
    ok(format!("{what}: refused — {}", err.root_cause()));
    Ok(())
}

fn write_sample(path: &Path, len: usize) -> Result<()> {
    let mut file = std::io::BufWriter::new(warden_core::fsx::create_private_new(path)?);
    let mut block = vec![0u8; 1024 * 1024];
    for i in 0..len / block.len() {
        block
            .iter_mut()
            .enumerate()
            .for_each(|(j, b)| *b = (i * 31 + j * 7) as u8);
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}
