//! `warden records`: clinical records (operations in `warden_records`; see docs/records.md).
//! Each command signs the person in, opens a records session (which asks for the permission
//! the collection's class needs and audits a refusal), calls one operation and prints.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use warden_core::audit::Outcome;
use warden_core::keyring::Purpose;
use warden_core::rbac::Permission;
use warden_records::ops::SignRequest;
use warden_records::{Meaning, Session};
use warden_store::audit::VerifyFrom;
use warden_store::Store;

use crate::cli::ExportFormat;
use crate::context::{self, Context};

#[derive(Debug, Subcommand)]
pub enum RecordsCommand {
    /// The collection schema. `apply FILE` installs or extends it (needs `records.schema`,
    /// administrator); `show` prints the schema in force.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Set the printed name shown with USER's electronic signatures. Needs `user.manage`.
    Signer {
        user: String,
        #[arg(long, value_name = "NAME")]
        printed_name: String,
    },
    /// Create a record or write its next version (fields merged over the latest; JSON null
    /// removes one). Needs the collection's write permission, and records.phi for PHI fields.
    Put(PutArgs),
    /// Show a record's latest version (or --at N) with its signatures.
    Get {
        collection: String,
        id: String,
        /// The version to show.
        #[arg(long, value_name = "VERSION")]
        at: Option<u64>,
    },
    /// Show every version of a record, oldest first, with signatures.
    History { collection: String, id: String },
    /// List a collection's records (latest version of each; no field values).
    List { collection: String },
    /// Delete a record: a tombstone version with a reason; earlier versions stay.
    Delete {
        collection: String,
        id: String,
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Sign one version with a meaning. Asks for the password and a fresh one-time code
    /// again (21 CFR Part 11 §11.200), even right after signing in.
    Sign {
        collection: String,
        id: String,
        /// The version to sign.
        #[arg(long, value_name = "VERSION")]
        at: u64,
        /// performed, reviewed or approved.
        #[arg(long)]
        meaning: String,
        /// The one-time code for the signature (else a prompt). Must be newer than the one
        /// used to sign in.
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
    /// Append an application event `app.ACTION` to the audit chain. Needs `app.event`.
    Event {
        action: String,
        #[arg(long, default_value = "")]
        subject: String,
        /// A JSON object.
        #[arg(long, default_value = "{}")]
        details: String,
        #[arg(long)]
        failure: bool,
    },
    /// Verify the audit chain and every record version and signature against it. Needs
    /// `audit.verify`. Exit code 3 when anything is damaged.
    Verify {
        /// The auditor's key file (`warden init --auditor-key-out`): verify from genesis, so
        /// records of earlier epochs are authenticated too (asks for the auditor's passphrase).
        #[arg(long, value_name = "FILE")]
        auditor_key: Option<PathBuf>,
    },
    /// Export every version with signatures and the verification result. Needs
    /// `audit.export` (auditor); PHI in clear with records.phi, unless --sealed-phi.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Write here (created complete or not at all) instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[arg(long)]
        collection: Option<String>,
        /// Leave PHI fields sealed in the export.
        #[arg(long)]
        sealed_phi: bool,
    },
}

/// `records verify` found damage (the findings are printed above); exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("records or the audit chain are DAMAGED (see the findings above)")]
pub struct RecordsDamaged;

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    Apply { file: PathBuf },
    Show,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    pub collection: String,
    pub id: String,
    /// Fields as one JSON object, e.g. '{"energy_j": 1.5}'.
    #[arg(long, value_name = "OBJECT")]
    pub json: Option<String>,
    /// A text field, FIELD=TEXT (repeatable).
    #[arg(long = "set", value_name = "FIELD=TEXT")]
    pub set: Vec<String>,
}

/// Signs in for `permission` (named in a refusal without `--as`) and opens a session; the phi
/// key is taken when `phi` and the role has records.phi.
fn session(
    ctx: &mut Context<'_>,
    permission: Permission,
    action: &str,
    phi: bool,
) -> Result<(Store, Session)> {
    let (mut store, user) = ctx.sign_in(permission, action)?;
    let mut session = Session::new(user);
    if phi && session.may(Permission::RecordsPhi) {
        let key = ctx.key(Purpose::Phi).context(
            "the phi key (a data directory made before clinical records has none; see docs/records.md)",
        )?;
        session.unlock_phi(&mut store, key)?;
    }
    Ok((store, session))
}

fn print_json(value: &Value) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

fn changes(args: &PutArgs) -> Result<Map<String, Value>> {
    let mut map = match &args.json {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => bail!("--json must be a JSON object"),
        },
        None => Map::new(),
    };
    for pair in &args.set {
        let (field, text) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--set takes FIELD=TEXT"))?;
        map.insert(field.to_string(), Value::String(text.to_string()));
    }
    if map.is_empty() {
        bail!("no fields given: pass --json OBJECT and/or --set FIELD=TEXT");
    }
    Ok(map)
}

pub fn run(cmd: &RecordsCommand, ctx: &mut Context<'_>) -> Result<()> {
    use Permission::*;
    match cmd {
        RecordsCommand::Schema(SchemaCommand::Apply { file }) => {
            let (mut store, s) = session(ctx, RecordsSchema, "records.schema", false)?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let source = warden_store::audit::path_text(file);
            let applied = s.apply_schema(&mut store, &text, &source)?;
            if applied.changed {
                println!(
                    "schema version {} applied: {} (sha256 {})",
                    applied.version,
                    applied.collections.join(", "),
                    hex::encode(applied.sha256)
                );
            } else {
                println!("schema version {} is already in force", applied.version);
            }
        }
        RecordsCommand::Schema(SchemaCommand::Show) => {
            let store = ctx.store()?;
            match warden_records::ops::current_schema(&store.db)? {
                Some((version, schema)) => {
                    println!("# schema version {version}");
                    print_json(&serde_json::to_value(&schema)?)?;
                }
                None => println!("no records schema has been applied"),
            }
        }
        RecordsCommand::Signer { user, printed_name } => {
            let (mut store, s) = session(ctx, UserManage, "records.signer", false)?;
            s.set_printed_name(&mut store, user, printed_name)?;
            println!("{user} signs as {printed_name:?}");
        }
        RecordsCommand::Put(args) => {
            let fields = changes(args)?;
            let (mut store, s) = session(ctx, RecordsTreatmentWrite, "record.put", true)?;
            let w = s.put(&mut store, &args.collection, &args.id, &fields)?;
            println!(
                "{}/{} version {} ({}), hash {}, audit seq {}",
                w.collection,
                w.record_id,
                w.version,
                w.kind.name(),
                hex::encode(w.hash),
                w.audit_seq
            );
        }
        RecordsCommand::Get { collection, id, at } => {
            let (mut store, s) = session(ctx, RecordsTreatmentRead, "record.get", true)?;
            let v = s.get(&mut store, collection, id, *at)?;
            print_json(&v.to_json())?;
        }
        RecordsCommand::History { collection, id } => {
            let (mut store, s) = session(ctx, RecordsTreatmentRead, "record.history", true)?;
            let versions = s.history(&mut store, collection, id)?;
            print_json(&Value::Array(
                versions.iter().map(|v| v.to_json()).collect(),
            ))?;
        }
        RecordsCommand::List { collection } => {
            let (mut store, s) = session(ctx, RecordsTreatmentRead, "record.list", false)?;
            for r in s.list(&mut store, collection)? {
                println!(
                    "{}\tversion {}\t{}\t{}\t{}\t{} signature(s)",
                    r.record_id, r.version, r.kind, r.timestamp, r.actor, r.signatures
                );
            }
        }
        RecordsCommand::Delete {
            collection,
            id,
            reason,
        } => {
            let (mut store, s) = session(ctx, RecordsTreatmentWrite, "record.delete", false)?;
            let w = s.delete(&mut store, collection, id, reason)?;
            println!(
                "{}/{} deleted as version {} (earlier versions kept)",
                w.collection, w.record_id, w.version
            );
        }
        RecordsCommand::Sign {
            collection,
            id,
            at: version,
            meaning,
            code,
        } => {
            let meaning: Meaning = meaning.parse()?;
            let (mut store, s) = session(ctx, RecordsTreatmentWrite, "record.sign", false)?;
            eprintln!("Signing {collection}/{id} version {version} as {meaning}: re-enter both components.");
            let password = context::read_password(
                ctx.global.actor.password_file.as_deref(),
                s.user().username(),
            )?;
            let code = match code {
                Some(code) => zeroize::Zeroizing::new(code.clone()),
                None if context::on_terminal() => zeroize::Zeroizing::new(
                    rpassword::prompt_password("One-time code for the signature: ")?,
                ),
                None => bail!("no one-time code for the signature: pass --code CODE"),
            };
            let signed = s.sign(
                &mut store,
                &SignRequest {
                    collection,
                    record_id: id,
                    version: *version,
                    meaning,
                    password: &password,
                    totp_code: &code,
                },
            )?;
            println!("signed: {}", signed.signature.manifestation());
        }
        RecordsCommand::Event {
            action,
            subject,
            details,
            failure,
        } => {
            let details: Value =
                serde_json::from_str(details).context("--details must be a JSON object")?;
            let (mut store, s) = session(ctx, AppEvent, "app.event", false)?;
            let outcome = if *failure {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            let seq = s.event(&mut store, action, subject, outcome, details)?;
            // `app.x` and `x` name the same event (the store adds the prefix once).
            let name = action.strip_prefix("app.").unwrap_or(action);
            println!("app.{name} recorded at audit seq {seq}");
        }
        RecordsCommand::Verify { auditor_key } => {
            let (mut store, s) = session(ctx, AuditVerify, "records.verify", false)?;
            let from = super::audit::verify_start(&mut store, auditor_key.as_deref(), ctx)?;
            let verdict = s.verify(&mut store, from)?;
            print!("{}", verdict.summary());
            if !verdict.is_ok() {
                return Err(RecordsDamaged.into());
            }
        }
        RecordsCommand::Export {
            format,
            output,
            collection,
            sealed_phi,
        } => {
            let (mut store, s) = session(ctx, AuditExport, "records.export", !sealed_phi)?;
            let format = (*format).into();
            let exported = match output {
                Some(path) => {
                    if path.symlink_metadata().is_ok() {
                        bail!("{} exists; refusing to overwrite it", path.display());
                    }
                    let mut out = io::BufWriter::new(warden_core::fsx::PendingFile::create(path)?);
                    let destination = warden_store::audit::path_text(path);
                    let exported = s.export(
                        &mut store,
                        VerifyFrom::CurrentEpoch,
                        collection.as_deref(),
                        format,
                        &destination,
                        &mut out,
                    )?;
                    out.into_inner()
                        .map_err(|e| e.into_error())
                        .with_context(|| format!("cannot write {destination}"))?
                        .commit()?;
                    exported
                }
                None => {
                    let mut out = io::BufWriter::new(io::stdout().lock());
                    let exported = s.export(
                        &mut store,
                        VerifyFrom::CurrentEpoch,
                        collection.as_deref(),
                        format,
                        "stdout",
                        &mut out,
                    )?;
                    out.flush().context("cannot write to standard output")?;
                    exported
                }
            };
            // Not `eprint!`: a full or closed standard error must not hide the exit code.
            let _ = write!(
                io::stderr(),
                "exported {} versions\n{}",
                exported.versions,
                exported.verdict.summary()
            );
            if !exported.verdict.is_ok() {
                return Err(RecordsDamaged.into());
            }
        }
    }
    Ok(())
}
