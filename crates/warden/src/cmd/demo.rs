//! `warden demo`: every capability, end to end, in a throwaway data directory.
//!
//! It uses the same functions as the real subcommands, on real files, and says what each step
//! proved. Later capabilities add their steps here.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use warden_core::audit::EpochPolicy;
use warden_core::auditor_key::AuditorKeyFile;
use warden_core::kdf::KdfParams;
use warden_core::keyring::Purpose;
use warden_core::keyslots::KeyRing;
use warden_core::password::Password;
use warden_core::rbac::{Permission, Role};
use warden_core::sealed_config::ConfigSealer;
use warden_core::secret::Passphrase;
use warden_store::audit::{AuditPolicy, VerifyFrom};
use warden_store::identity::{
    AuthenticatedUser, Authorized, IdentityPolicy, NewUser, UnixMs, Username,
};
use warden_store::provision::{provision, Provision, Provisioned};
use warden_store::vault::{self, Opened};
use warden_store::Store;

use crate::cli::DemoArgs;

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
    let admin_password = demo_password();
    let started = Instant::now();
    let made = provision(Provision {
        root: &root,
        passphrase: &passphrase,
        auditor_passphrase: &auditor_passphrase,
        auditor_key_out: &auditor_key,
        kdf: &KdfParams::default_pbkdf2(),
        audit_policy: AuditPolicy {
            epoch: EpochPolicy {
                max_events: Some(25),
                max_age_secs: None,
            },
            checkpoint_every: 10,
        },
        identity_policy: &IdentityPolicy::default(),
        admin: &Username::parse("root")?,
        admin_password: &admin_password,
        admin_totp: None,
    })?;
    let Provisioned {
        dir,
        keys,
        mut store,
        chain_id,
        ..
    } = made;
    ok(format!(
        "keyslots.json written: {} random keys ({}) wrapped for the master passphrase (PBKDF2-HMAC-SHA256 x 600,000) and for root's password, {:.2} s",
        Purpose::IN_SLOTS.len(),
        Purpose::IN_SLOTS.map(Purpose::name).join(", "),
        started.elapsed().as_secs_f64()
    ));
    ok("layout sessions/ heartbeats/ alerts/ state/ created 0700; no key is stored in the clear");
    ok(format!(
        "SQLCipher {} database keyed with the raw database key; audit chain {chain_id} started",
        store.db.cipher_version()?
    ));
    ok(format!(
        "initial audit key sealed for the auditor -> {}",
        auditor_key.display()
    ));
    ok("first administrator root created; there is no default account");
    let wrong = Passphrase::new("not the passphrase at all".into());
    match dir.unlock_master(&wrong) {
        Err(err) => ok(format!(
            "a wrong passphrase is refused before any data is touched: {err}"
        )),
        Ok(_) => anyhow::bail!("a wrong passphrase was accepted"),
    }
    let key = keys.get(Purpose::Recordings).clone();
    let people = People::enroll(&mut store, &admin_password)?;

    step("2. Seal and open a large file (segmented AES-256-GCM)");
    let work = root.join("demo-files");
    warden_core::fsx::create_private_dir(&work)?;
    let video = work.join("treatment-video.mp4");
    write_sample(&video, 32 * 1024 * 1024)?;
    let sealed = work.join("treatment-video.mp4.sealed");
    let started = Instant::now();
    let seal = people.as_operator(&mut store, Permission::VaultSeal, "vault.seal")?;
    let summary = vault::seal(
        &mut store,
        &seal,
        &key,
        &video,
        &sealed,
        false,
        &mut |_, _| {},
    )?
    .summary;
    let secs = started.elapsed().as_secs_f64();
    ok(format!(
        "sealed 32 MiB in {} segments at {:.0} MiB/s (fresh data key, wrapped under the recordings key)",
        summary.segments,
        mib_per_s(summary.plaintext_bytes, secs)
    ));
    let opened = work.join("treatment-video.opened.mp4");
    let started = Instant::now();
    let open = people.as_operator(&mut store, Permission::VaultOpen, "vault.open")?;
    vault::open(
        &mut store,
        &open,
        std::slice::from_ref(&key),
        &sealed,
        &opened,
        false,
        false,
        &mut |_, _| {},
    )?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        std::fs::read(&video)? == std::fs::read(&opened)?,
        "round trip differs"
    );
    ok(format!(
        "opened and verified at {:.0} MiB/s; identical to the original; both acts are in the audit chain under olga with the file's SHA-256",
        mib_per_s(summary.plaintext_bytes, secs)
    ));

    step("3. Damage is detected and named");
    let bytes = std::fs::read(&sealed)?;
    let damaged = work.join("modified.sealed");
    let mut copy = bytes.clone();
    copy[bytes.len() / 2] ^= 0x01;
    std::fs::write(&damaged, &copy)?;
    let verify = people.as_operator(&mut store, Permission::VaultVerify, "vault.verify")?;
    report_refusal(
        vault::verify(&mut store, &verify, std::slice::from_ref(&key), &damaged).err(),
        "one flipped bit",
    )?;
    let cut = work.join("truncated.sealed");
    std::fs::write(&cut, &bytes[..bytes.len() * 3 / 4])?;
    report_refusal(
        vault::verify(&mut store, &verify, std::slice::from_ref(&key), &cut).err(),
        "a file cut short (power loss)",
    )?;
    let recovered = work.join("recovered.mp4");
    if let Opened::Recovered {
        plaintext_bytes, ..
    } = vault::open(
        &mut store,
        &open,
        std::slice::from_ref(&key),
        &cut,
        &recovered,
        true,
        false,
        &mut |_, _| {},
    )? {
        ok(format!(
            "--recover kept the verified prefix: {plaintext_bytes} bytes"
        ));
    }

    step("4. Seal a configuration file (Fernet under the config key)");
    let yaml = work.join("siem.yaml");
    std::fs::write(
        &yaml,
        b"siem:\n  host: siem.hospital.example\n  client_key: /etc/warden/siem.key\n",
    )?;
    let sealed_yaml = work.join("siem.yaml.sealed");
    let sealer = ConfigSealer::new(keys.get(Purpose::Config));
    let by = people.as_admin(&mut store, Permission::ConfigSeal, "config.seal")?;
    let written = warden_store::config::seal(&mut store, &by, &sealer, &yaml, &sealed_yaml, false)?;
    let reopened = work.join("siem.reopened.yaml");
    let by = people.as_admin(&mut store, Permission::ConfigOpen, "config.open")?;
    warden_store::config::open(&mut store, &by, &sealer, &sealed_yaml, &reopened, false)?;
    ensure!(
        std::fs::read(&yaml)? == std::fs::read(&reopened)?,
        "config round trip differs"
    );
    ok(format!(
        "root sealed siem.yaml into a Fernet token (sha256 {}…) and opened it again; a plain file given to `config open` is refused",
        &hex::encode(written.sha256)[..16]
    ));
    let by = people.as_operator(&mut store, Permission::ConfigOpen, "config.open");
    ensure!(
        by.is_err(),
        "an operator was allowed to open a sealed configuration"
    );
    ok("olga (operator) asked to open it: refused, and the refusal is in the audit chain as config.open.denied");

    identity_steps(&mut store, &people.root)?;

    step("6. The serial MFA shim between a technician's laptop and a device (real PTYs)");
    shim_step(&dir, &keys, &admin_password)?;

    step("7. OTA: PSK-TLS admin server (GlobalPlatform Amendment B) and a simulated UICC");
    ota_step(&mut store, &people, &keys)?;

    records_step(&mut store, &people, &keys, &work)?;

    step("9. The forward-secure audit chain");
    let by = people.as_auditor(&mut store, Permission::AuditVerify, "audit.verify")?;
    let head = store.identity.audit_log().head(&mut store.db)?;
    ok(format!(
        "every act above is in one chain: {} records, epoch {} (the key evolved and old keys were erased), a checkpoint every 10",
        head.next_seq - 1,
        head.epoch
    ));
    let local = warden_store::audit::verify(&mut store, &by, VerifyFrom::CurrentEpoch, None)?;
    let report = local.report()?;
    ok(format!(
        "audra (auditor) verified the current epoch on the box: {} records OK, the stored head and {} checkpoint(s) matched",
        report.records, report.checkpoints_matched
    ));
    let (k0, _) =
        AuditorKeyFile::parse(&std::fs::read(&auditor_key)?)?.open(&auditor_passphrase)?;
    let full = warden_store::audit::verify(&mut store, &by, VerifyFrom::Genesis(k0), None)?;
    let report = full.report()?;
    ok(format!(
        "and from genesis with the exported key: {} records, epochs {}..{} OK",
        report.records, report.first_epoch, report.last_epoch
    ));
    let rows = warden_store::audit::read_rows(&store.db, 1, None)?;
    let vault_rows = rows
        .iter()
        .filter(|r| r.action.starts_with("vault."))
        .count();
    let denied = rows
        .iter()
        .filter(|r| r.action.ends_with(".denied"))
        .count();
    ok(format!(
        "{vault_rows} vault events (each with a file SHA-256), {denied} refusal(s), every actor a signed-in user or a service"
    ));
    let last = head.next_seq - 1;
    store
        .db
        .conn()
        .execute("DELETE FROM audit_events WHERE seq > ?1", [last as i64 - 3])?;
    match warden_store::audit::verify(&mut store, &by, VerifyFrom::CurrentEpoch, None)?.result {
        Err(damage) => ok(format!(
            "someone deleted the last 3 rows: seen on the box — damaged at seq {}: {} ({})",
            damage.seq,
            damage.kind.as_str(),
            warden_store::audit::explain(damage.kind)
        )),
        Ok(_) => anyhow::bail!("a cut-off tail went unnoticed"),
    }
    store.db.conn().execute(
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3",
        [],
    )?;
    let (k0, _) =
        AuditorKeyFile::parse(&std::fs::read(&auditor_key)?)?.open(&auditor_passphrase)?;
    match store
        .identity
        .audit_log()
        .verify(&mut store.db, VerifyFrom::Genesis(k0), None)?
        .result
    {
        Err(damage) => ok(format!(
            "someone rewrote the actor of event 3: detected — damaged at seq {}: {} ({})",
            damage.seq,
            damage.kind.as_str(),
            warden_store::audit::explain(damage.kind)
        )),
        Ok(_) => anyhow::bail!("a rewritten audit row went unnoticed"),
    }

    println!("\nAll steps passed. Files are in {}", root.display());
    if args.keep.is_none() {
        println!("(a temporary directory, removed now; pass --keep DIR to keep it)");
    }
    Ok(())
}

fn report_refusal(err: Option<vault::VaultError>, what: &str) -> Result<()> {
    let err = err.with_context(|| format!("{what} was not detected"))?;
    let cause = err
        .stream()
        .map_or_else(|| err.to_string(), ToString::to_string);
    ok(format!("{what}: refused — {cause}"));
    Ok(())
}

fn demo_password() -> Password {
    Password::new(format!(
        "Demo-{}!",
        hex::encode(warden_core::rand::array::<8>())
    ))
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

/// The demo's people: root (administrator), olga (operator), audra (auditor), each signed in
/// once with a password, as a person at the CLI is; every act checks its permission.
struct People {
    root: AuthenticatedUser,
    olga: AuthenticatedUser,
    audra: AuthenticatedUser,
}

impl People {
    fn enroll(store: &mut Store, root_password: &Password) -> Result<Self> {
        let root = Self::sign_in(store, "root", root_password)?;
        let by = store.identity.require(
            &mut store.db,
            &root,
            Permission::UserManage,
            "user.add",
            UnixMs::now(),
        )?;
        let (olga, audra) = (demo_password(), demo_password());
        for (name, role, password) in [
            ("olga", Role::Operator, &olga),
            ("audra", Role::Auditor, &audra),
        ] {
            store.identity.add_user(
                &mut store.db,
                &by,
                NewUser {
                    username: &Username::parse(name)?,
                    role,
                    password: Some(password),
                    totp: None,
                },
                UnixMs::now(),
            )?;
        }
        let people = Self {
            root,
            olga: Self::sign_in(store, "olga", &olga)?,
            audra: Self::sign_in(store, "audra", &audra)?,
        };
        ok("root added olga (operator) and audra (auditor); each act below checks the permission of whoever does it");
        Ok(people)
    }

    fn sign_in(store: &mut Store, name: &str, password: &Password) -> Result<AuthenticatedUser> {
        Ok(store.identity.authenticate_operator(
            &mut store.db,
            name,
            password,
            None,
            UnixMs::now(),
        )?)
    }

    fn allow(
        store: &mut Store,
        user: &AuthenticatedUser,
        permission: Permission,
        action: &str,
    ) -> Result<Authorized> {
        Ok(store
            .identity
            .require(&mut store.db, user, permission, action, UnixMs::now())?)
    }

    fn as_admin(
        &self,
        store: &mut Store,
        permission: Permission,
        action: &str,
    ) -> Result<Authorized> {
        Self::allow(store, &self.root, permission, action)
    }

    fn as_operator(
        &self,
        store: &mut Store,
        permission: Permission,
        action: &str,
    ) -> Result<Authorized> {
        Self::allow(store, &self.olga, permission, action)
    }

    fn as_auditor(
        &self,
        store: &mut Store,
        permission: Permission,
        action: &str,
    ) -> Result<Authorized> {
        Self::allow(store, &self.audra, permission, action)
    }
}

/// The collections of the treatment step: patients (PHI), treatments (parameters in clear, the
/// outcome and notes PHI), as seed 002's laser application keeps them.
const DEMO_SCHEMA: &str = "
format: warden-records-schema
collections:
  patients:
    class: phi
    fields:
      mrn: { type: text, required: true }
      name: { type: text }
      dob: { type: date }
  treatments:
    class: treatment
    fields:
      patient: { type: text, required: true }
      wavelength_nm: { type: integer }
      energy_j: { type: number }
      parameters: { type: json }
      outcome: { type: text, phi: true }
";

/// Seed 002's treatment: an operator signs in with password and one-time code, records a
/// patient and a treatment (PHI sealed per version under the `phi` key), logs the device's
/// events, seals the video as it is written, and signs the result (re-authenticating); the
/// administrator, who may not read PHI, is refused; the auditor verifies and exports.
fn records_step(store: &mut Store, people: &People, keys: &KeyRing, work: &Path) -> Result<()> {
    use serde_json::json;
    use warden_core::audit::Outcome;
    use warden_records::ops::SignRequest;
    use warden_records::recording::RecordingWriter;
    use warden_records::{Meaning, PhiView, Session};

    step("8. Clinical records: a laser treatment, its video and its signature (seed 002)");
    let root = Session::new(people.root.clone());
    let applied = root.apply_schema(store, DEMO_SCHEMA, "demo")?;
    let by = people.as_admin(store, Permission::UserManage, "user.add")?;
    let name = Username::parse("dr-olsen")?;
    let password = demo_password();
    let now = UnixMs::now();
    let uri = store
        .identity
        .add_user(
            &mut store.db,
            &by,
            NewUser {
                username: &name,
                role: Role::Operator,
                password: Some(&password),
                totp: Some(store.identity.policy().totp),
            },
            now,
        )?
        .context("TOTP was asked for")?;
    root.set_printed_name(store, "dr-olsen", "Dr. Ingrid Olsen")?;
    ok(format!(
        "root applied the records schema (version {}) and added dr-olsen (operator, password + TOTP, printed name for signatures)",
        applied.version
    ));
    let earlier = uri
        .params()
        .code_at(uri.secret(), now.secs().saturating_sub(30));
    let user = store.identity.authenticate_operator(
        &mut store.db,
        "dr-olsen",
        &password,
        Some(earlier.expose_secret()),
        now,
    )?;
    let mut olsen = Session::new(user);
    olsen.unlock_phi(store, keys.get(Purpose::Phi).clone())?;
    let fields = |value: serde_json::Value| value.as_object().cloned().unwrap_or_default();
    olsen.put(
        store,
        "patients",
        "p-0001",
        &fields(json!({"mrn": "MRN-42", "name": "Jane Roe", "dob": "1961-07-04"})),
    )?;
    let first = olsen.put(
        store,
        "treatments",
        "t-0001",
        &fields(
            json!({"patient": "p-0001", "wavelength_nm": 1064, "energy_j": 1.5,
                       "parameters": {"pulses": 3, "spot_mm": 2.0}}),
        ),
    )?;
    ok(format!(
        "dr-olsen signed in (password + code) and wrote patient p-0001 (all PHI, sealed under the phi key) and treatment t-0001 v1 (hash {}…, audit seq {})",
        &hex::encode(first.hash)[..16],
        first.audit_seq
    ));
    olsen.event(
        store,
        "laser.armed",
        "laser-7",
        Outcome::Success,
        json!({"treatment": "t-0001"}),
    )?;
    let by = olsen.require(store, Permission::VaultSeal, "vault.seal")?;
    let video = work.join("t-0001-video.sealed");
    let mut writer = RecordingWriter::create(&by, keys.get(Purpose::Recordings), &video, false)?;
    for pulse in 1..=3u8 {
        olsen.event(
            store,
            "pulse.delivered",
            "laser-7",
            Outcome::Success,
            json!({"treatment": "t-0001", "pulse": pulse, "energy_j": 1.5}),
        )?;
        writer.write(&vec![pulse; 256 * 1024])?;
    }
    let sealed = writer.finish(store)?;
    ok(format!(
        "device events app.laser.armed and 3 x app.pulse.delivered in the chain; the video was sealed as it was written ({} bytes, sha256 {}… in its vault.seal event)",
        sealed.summary.plaintext_bytes,
        &hex::encode(sealed.sha256)[..16]
    ));
    let second = olsen.put(
        store,
        "treatments",
        "t-0001",
        &fields(json!({"outcome": "no adverse events"})),
    )?;
    // Attempts by one person are spaced out (the backoff policy): a real signature comes
    // minutes after the sign-in; here we wait the minimum gap.
    let gap = store.identity.policy().backoff.required_gap_ms(0);
    std::thread::sleep(std::time::Duration::from_millis(gap));
    let code = uri.params().code_at(uri.secret(), UnixMs::now().secs());
    let signed = olsen.sign(
        store,
        &SignRequest {
            collection: "treatments",
            record_id: "t-0001",
            version: second.version,
            meaning: Meaning::Performed,
            password: &password,
            totp_code: code.expose_secret(),
        },
    )?;
    ok(format!(
        "t-0001 v{} (outcome, PHI) signed: {}",
        second.version,
        signed.signature.manifestation()
    ));
    ensure!(
        root.get(store, "patients", "p-0001", None).is_err(),
        "an administrator read a patient record"
    );
    ok("root (administrator) asked for the patient: refused (record.get.denied in the chain)");
    let mut audra = Session::new(people.audra.clone());
    audra.unlock_phi(store, keys.get(Purpose::Phi).clone())?;
    let read = audra.get(store, "treatments", "t-0001", None)?;
    ensure!(
        matches!(&read.phi, PhiView::Open(phi) if phi.get("outcome") == Some(&json!("no adverse events"))),
        "the auditor could not read the outcome"
    );
    let verdict = audra.verify(store, VerifyFrom::CurrentEpoch)?;
    ensure!(verdict.is_ok(), "records verify: {}", verdict.summary());
    let export = work.join("records-export.jsonl");
    let mut out = std::fs::File::create(&export)?;
    let exported = audra.export(
        store,
        VerifyFrom::CurrentEpoch,
        None,
        warden_store::audit::ExportFormat::Jsonl,
        &export.display().to_string(),
        &mut out,
    )?;
    ok(format!(
        "audra (auditor) read the outcome (the read is audited), verified {} versions and {} signature(s) against the chain, and exported {} versions with signatures -> {}",
        verdict.versions,
        verdict.signatures,
        exported.versions,
        export.display()
    ));
    Ok(())
}

/// Users, TOTP with replay protection, lockout and unlock, each in the audit chain.
fn identity_steps(store: &mut Store, admin: &AuthenticatedUser) -> Result<()> {
    use warden_store::identity::{AuthOutcome, PortId, Principal};

    step("5. Users, TOTP and lockout (identity in the SQLCipher store)");
    let t0 = UnixMs::now();
    let (identity, db) = (&mut store.identity, &mut store.db);
    let by = identity.require(db, admin, Permission::UserManage, "user.add", t0)?;
    let tess = Username::parse("tess")?;
    let uri = identity
        .add_user(
            db,
            &by,
            NewUser {
                username: &tess,
                role: Role::Technician,
                password: None,
                totp: None,
            },
            t0,
        )?
        .context("technicians are enrolled at once")?;
    ok("technician tess added and enrolled: otpauth://totp/warden:tess?secret=… (160-bit secret, sealed in the store)");
    let port = PortId::parse("demo-shim")?;
    let code = uri.params().code_at(uri.secret(), t0.secs());
    let outcome =
        identity.authenticate_technician(db, "tess", code.expose_secret().as_bytes(), t0, &port)?;
    ensure!(
        matches!(outcome, AuthOutcome::Accepted { .. }),
        "a fresh code was refused: {outcome:?}"
    );
    ok(format!("a fresh code is accepted: {outcome:?}"));
    let later = UnixMs(t0.0 + 2_000);
    let again = identity.authenticate_technician(
        db,
        "tess",
        code.expose_secret().as_bytes(),
        later,
        &port,
    )?;
    ensure!(
        !matches!(again, AuthOutcome::Accepted { .. }),
        "a replayed code was accepted"
    );
    ok(format!(
        "the same code again is a replay and refused: {again:?}"
    ));
    let mut at = later;
    let mut outcome = again;
    while !matches!(outcome, AuthOutcome::LockedOut) {
        if let AuthOutcome::Rejected { retry_after_ms } = outcome {
            at = UnixMs(at.0 + retry_after_ms);
        }
        outcome = identity.authenticate_technician(db, "tess", b"000000", at, &port)?;
    }
    ok("the 5th failure within 60 s locks tess and the port (spacing 1, 2, 4, 8 s in between)");
    let code = uri.params().code_at(uri.secret(), at.secs() + 30);
    let refused = identity.authenticate_technician(
        db,
        "tess",
        code.expose_secret().as_bytes(),
        UnixMs(at.0 + 30_000),
        &port,
    )?;
    ensure!(
        refused == AuthOutcome::LockedOut,
        "a locked port let someone in"
    );
    ok("while locked, even a correct code is refused");
    let reset = identity.require(db, admin, Permission::ShimReset, "shim.reset", at)?;
    let manage = identity.require(db, admin, Permission::UserManage, "user.unlock", at)?;
    identity.unlock(db, &reset, &Principal::Port(port.clone()), at)?;
    identity.unlock(db, &manage, &Principal::User(tess), at)?;
    let when = UnixMs(at.0 + 60_000);
    let code = uri.params().code_at(uri.secret(), when.secs());
    let outcome = identity.authenticate_technician(
        db,
        "tess",
        code.expose_secret().as_bytes(),
        when,
        &port,
    )?;
    ensure!(
        matches!(outcome, AuthOutcome::Accepted { .. }),
        "unlock did not work: {outcome:?}"
    );
    ok("an administrator unlocked user and port; tess signs in again");
    let rows = warden_store::audit::read_rows(db, 1, None)?;
    let count = |action: &str| rows.iter().filter(|r| r.action == action).count();
    ok(format!(
        "audit chain: {} events ({} login.totp, {} lockout.lock, {} lockout.unlock, {} user.create)",
        rows.len(),
        count("login.totp"),
        count("lockout.lock"),
        count("lockout.unlock"),
        count("user.create")
    ));
    Ok(())
}

/// The OTA step: a server on 127.0.0.1 (port chosen by the OS), a card with a PSK in the
/// database, two queued scripts, a simulated card that runs them, and a card with a wrong key.
fn ota_step(store: &mut Store, people: &People, keys: &KeyRing) -> Result<()> {
    use std::sync::Arc;
    use warden_ota::admin::Redelivery;
    use warden_ota::gp::{self, Aid, InstallForInstall, Occurrence, StatusSubset};
    use warden_ota::keys::{KeyCache, Psk};
    use warden_ota::ops;
    use warden_ota::script::CommandScript;
    use warden_ota::scriptfile::PlannedScript;
    use warden_ota::simulator::{self, CardConfig, GpCard};
    use warden_store::ota as db;

    let db_key = keys.get(Purpose::Database).clone();
    let audit_key = keys.get(Purpose::Audit).clone();
    let psk = Psk::new(warden_core::rand::array::<16>().to_vec())?;
    let by = people.as_admin(store, Permission::OtaKeyManage, "ota.key.add")?;
    ops::add_key(store, &by, &db_key, "demo-card", &psk, false)?;
    let psk = Arc::new(psk);
    ok("root stored card demo-card's 16-byte PSK, sealed under the database key");
    let isd = Aid::from_hex("A000000151000000")?;
    let inventory = CommandScript::new([
        gp::select_by_aid(&isd),
        gp::get_status(StatusSubset::Applications, Occurrence::FirstOrAll, &[])?,
        gp::get_data(gp::data_object::CPLC),
    ]);
    let new_app = Aid::from_hex("A00000055910100102")?;
    let install = CommandScript::new([
        InstallForInstall::new(
            Aid::from_hex("A0000005591010")?,
            Aid::from_hex("A000000559101001")?,
            new_app.clone(),
        )
        .to_apdu()?,
        gp::get_status(StatusSubset::Applications, Occurrence::FirstOrAll, &[])?,
    ]);
    let by = people.as_operator(store, Permission::OtaScriptPush, "ota.script.push")?;
    for (script, redelivery) in [
        (inventory, Redelivery::Allowed),
        (install, Redelivery::Forbidden),
    ] {
        let planned = PlannedScript {
            label: None,
            redelivery,
            script,
            targeted_application: None,
        };
        ops::push(store, &by, &["demo-card".to_owned()], &planned, 1)?;
    }
    ok("olga queued an inventory script (SELECT ISD, GET STATUS, GET DATA CPLC) and an INSTALL");
    let database = warden_store::Database::open(store.db.path(), &db_key)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let handle = warden_ota::store::StoreHandle::start(database, db_key, audit_key);
        let config = warden_ota::config::ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            ..Default::default()
        };
        let events = warden_ota::events::EventBus::default();
        let server = warden_ota::server::Server::new(config, KeyCache::new(), handle.clone(), events.clone())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = server.clone();
        let task = tokio::spawn(async move { s.run(listener, async { let _ = stopped.await; }).await });
        while !events.recent().iter().any(|e| e.event.name() == "server_started") {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        ok(format!("server listening on {addr} (PSK-TLS 1.2 and 1.3, NULL suites off)"));

        let mut card = GpCard::new();
        let report = simulator::run_session(&CardConfig::new(addr, "demo-card", psk.clone()), &mut card).await?;
        ok(format!(
            "simulated card: {} {} handshake in {:.1} ms, {} scripts, {} APDUs, {} HTTP requests on one connection, ended with 204",
            report.tls_version, report.cipher, report.handshake.as_secs_f64() * 1000.0,
            report.scripts.len(), report.apdus(), report.requests
        ));
        for r in handle.call(|tx, _| db::script_reports(tx, "demo-card", None)).await? {
            println!("    script {} [{}] status {}", r.id, r.state, r.script_status.as_deref().unwrap_or("-"));
            for e in &r.exchanges {
                let sw = e.sw.map_or("-".to_string(), |sw| format!("{sw:04X}"));
                println!("      > {}  < SW {sw}", warden_ota::apdu::to_hex(&e.command));
            }
        }
        ensure!(card.apps.iter().any(|a| a.aid == new_app), "the INSTALL did not reach the card");
        ok("the card's registry now holds the new application; results are in the database");

        let wrong = Arc::new(Psk::new(vec![0x55; 16])?);
        match simulator::connect(addr, "demo-card", wrong, &Default::default()).await {
            Err(e) => ok(format!("a card with the wrong key is refused: {e}")),
            Ok(_) => anyhow::bail!("a wrong key was accepted"),
        }
        let _ = stop.send(());
        task.await??;
        let audited: i64 = store
            .db
            .conn()
            .query_row("SELECT count(*) FROM audit_events WHERE action LIKE 'ota.%'", [], |r| r.get(0))?;
        ok(format!("{audited} OTA audit events in the chain (sessions, scripts, every APDU exchange, the mismatch)"));
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

/// A real shim on two PTY pairs: a technician logs in with a fresh code, talks to a simulated
/// infusion pump, ends the session with `~.`; the recording is then read back.
fn shim_step(
    dir: &warden_core::datadir::DataDir,
    keys: &KeyRing,
    admin_password: &warden_core::password::Password,
) -> Result<()> {
    use crate::live_shim::{add_technician, current_code, read_until, LiveShim};
    use std::io::Read;

    let uri = add_technician(dir, keys, "root", admin_password, "tara")?;
    ok("technician tara enrolled (TOTP, no password)");
    let work = dir.root().join("shim-run");
    warden_core::fsx::create_private_dir(&work)?;
    let mut shim = LiveShim::start(dir, keys, &work, "ward3-shim")?;
    ok(format!(
        "shim running: technician side {} <-> device side {}; no network listener, control socket {}",
        shim.tech.path.display(),
        shim.device.path.display(),
        shim.control_socket.display()
    ));
    // The simulated device: an infusion pump's service console.
    let mut device = shim.device.endpoint.try_clone()?;
    let pump = std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while Instant::now() < deadline {
            match device.read(&mut buf) {
                Ok(n) if n > 0 => {
                    line.extend_from_slice(&buf[..n]);
                    if line.ends_with(b"\r") {
                        let answer: &[u8] = if line.starts_with(b"status") {
                            b"PUMP OK  rate=5.0 ml/h  volume=42.7 ml  battery=88%\r\npump> "
                        } else {
                            b"?\r\npump> "
                        };
                        let _ = device.write_all(answer);
                        if line.starts_with(b"quit") {
                            return;
                        }
                        line.clear();
                    }
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        }
    });
    shim.type_tech(b"status\r")?;
    let login = shim.login("tara", &current_code(&uri))?;
    ok(format!("tara typed a fresh one-time code: OPEN after {:.1} ms (what was typed before never reached the pump)", login.as_secs_f64() * 1000.0));
    shim.type_tech(b"status\r")?;
    let reply = read_until(&mut shim.tech.endpoint, b"pump> ")?;
    ok(format!(
        "pump answered through the shim: {}",
        String::from_utf8_lossy(&reply)
            .lines()
            .find(|l| l.contains("PUMP"))
            .unwrap_or("")
            .trim()
    ));
    shim.type_tech(b"quit\r")?;
    read_until(&mut shim.tech.endpoint, b"pump> ")?;
    shim.type_tech(b"~.")?;
    shim.wait_state("IDLE")?;
    ok("~. ended the session: OPEN -> FLUSHED -> IDLE, recording closed and its SHA-256 put in the audit chain");
    shim.stop()?;
    let _ = pump.join();

    let session = std::fs::read_dir(dir.sessions())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("tara"))
        .context("no session file")?;
    let file = std::fs::File::open(&session)?;
    let sealed = warden_core::stream::SealedReader::new(
        file,
        Purpose::Recordings,
        &warden_shim::recording::session_key(keys.get(Purpose::Recordings)),
    )?;
    let reader = warden_shim::recording::RecordReader::new(sealed)?;
    let metadata = reader.metadata().clone();
    let mut dump = Vec::new();
    warden_shim::recording::write_dump(&metadata, reader, &mut dump)?;
    ok(format!(
        "played back {} ({} bytes sealed); the text dump:",
        session.file_name().unwrap_or_default().to_string_lossy(),
        std::fs::metadata(&session)?.len()
    ));
    for line in String::from_utf8_lossy(&dump).lines().take(12) {
        println!("      {line}");
    }
    Ok(())
}
