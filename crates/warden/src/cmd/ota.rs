//! `warden ota …`: the SCP81 admin server, its script queue and key store, GlobalPlatform
//! command helpers, the UICC simulator and the load generator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use warden_core::audit::Outcome;
use warden_core::keyring::Purpose;
use warden_core::rbac::Permission;
use warden_core::sealed_config::{self, Form, Plain};
use warden_ota::admin::{Redelivery, ScriptStatus};
use warden_ota::apdu::{status_text, to_hex, CommandApdu, ResponseApdu};
use warden_ota::config::ServerConfig;
use warden_ota::events::EventBus;
use warden_ota::gp::{self, Aid, InstallForInstall, Occurrence, Privileges};
use warden_ota::keys::{read_key_file, KeyCache, Psk};
use warden_ota::ops;
use warden_ota::script::CommandScript;
use warden_ota::scriptfile::{self, PlannedScript};
use warden_ota::server::Server;
use warden_ota::simulator::{self, CardConfig, Cut, GpCard};
use warden_ota::store::StoreHandle;
use warden_ota::tls::ClientTlsOptions;
use warden_store::audit::AuditLog;
use warden_store::identity::Service;
use warden_store::ota as db;
use zeroize::Zeroizing;

use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum OtaCommand {
    /// Run the PSK-TLS admin server (GlobalPlatform Amendment B, RAM over HTTP).
    Serve(ServeArgs),
    /// Queue a script of C-APDUs for a card. Needs `ota.script.push` (operator, administrator).
    Push(PushArgs),
    /// Show a card's scripts: each C-APDU with its R-APDU, status word and timing. Needs
    /// `ota.results.view`.
    Results(ResultsArgs),
    /// Recent admin sessions (from the database). Needs `ota.results.view`.
    Sessions(SessionsArgs),
    /// Manage card PSKs in the database. Needs `ota.key.manage` (administrator).
    Keys(KeysArgs),
    /// Build GlobalPlatform commands (printed as hex) and decode GET STATUS responses.
    #[command(subcommand)]
    Gp(GpCommand),
    /// Act as a UICC: connect over PSK-TLS and run the admin session with a simulated card.
    SimulateCard(SimulateArgs),
    /// Load generator: sessions, APDU round trips, idle sessions, handshakes.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The server configuration (see docs/ota.md), sealed with `warden config seal`.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Accept a configuration that is not sealed (logged as a warning).
    #[arg(long)]
    pub allow_plain_config: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RedeliveryArg {
    Allowed,
    Forbidden,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["apdu", "script"])))]
pub struct PushArgs {
    /// The card (its PSK identity); repeat for several cards.
    #[arg(long, required = true)]
    pub card: Vec<String>,
    /// A C-APDU in hex; repeat for a script of several commands.
    #[arg(long, value_name = "HEX", conflicts_with = "script")]
    pub apdu: Vec<String>,
    /// A script file (YAML; see docs/ota.md).
    #[arg(long, value_name = "FILE.yaml")]
    pub script: Option<PathBuf>,
    /// Whether the script may be sent again when a resume leaves its outcome unknown
    /// (default: allowed only for reads).
    #[arg(long, value_enum)]
    pub redelivery: Option<RedeliveryArg>,
    /// Sent as X-Admin-Targeted-Application (AID in hex).
    #[arg(long, value_name = "AID")]
    pub target: Option<String>,
    #[arg(long)]
    pub label: Option<String>,
    /// Queue the script this many times per card (load tests); at least 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[arg(long)]
    pub card: String,
    /// Only the most recent N scripts.
    #[arg(long)]
    pub last: Option<u64>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Only this card's sessions (its PSK identity).
    #[arg(long)]
    pub card: Option<String>,
    /// At most this many sessions, the most recent first.
    #[arg(long, default_value_t = 20)]
    pub limit: u64,
    /// The sessions as a JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a card's PSK (hex on standard input with --key-stdin, or --key HEX).
    Add {
        #[arg(long)]
        identity: String,
        /// The key in hex. Visible in the process list: prefer --key-stdin.
        #[arg(long, value_name = "HEX", conflicts_with = "key_stdin")]
        key: Option<String>,
        /// Read the hex key from standard input.
        #[arg(long)]
        key_stdin: bool,
        /// Replace an existing key.
        #[arg(long)]
        replace: bool,
    },
    /// List cards (never keys).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a card's key.
    Remove { identity: String },
    /// Import a key file in the seed's format (`keys: - identity, key`).
    Import {
        file: PathBuf,
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GpCommand {
    /// SELECT by AID.
    Select { aid: String },
    /// GET STATUS (TLV format): isd, applications, load_files, load_files_and_modules.
    GetStatus {
        #[arg(default_value = "applications")]
        subset: String,
        /// AID prefix to match.
        #[arg(long)]
        aid: Option<String>,
    },
    /// GET DATA for a tag (e.g. 9F7F, 66, 42, 45, E0).
    GetData { tag: String },
    /// INSTALL [for install and make selectable].
    Install {
        #[arg(long)]
        load_file: String,
        #[arg(long)]
        module: String,
        #[arg(long)]
        application: String,
        /// Privileges, 1 or 3 bytes hex.
        #[arg(long, default_value = "000000")]
        privileges: String,
        /// Install parameters field, hex (default C900).
        #[arg(long)]
        parameters: Option<String>,
    },
    /// DELETE an application or load file.
    Delete {
        aid: String,
        /// Also delete related objects (a load file's applications).
        #[arg(long)]
        related: bool,
    },
    /// Decode a GET STATUS response (data and SW, hex).
    DecodeStatus {
        response: String,
        #[arg(long, default_value = "applications")]
        subset: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct CardArgs {
    /// The server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// The card's PSK identity (with --cards N, the prefix: ID0, ID1, …).
    #[arg(long)]
    pub identity: String,
    /// The PSK in hex. Visible in the process list: prefer --key-file.
    #[arg(long, value_name = "HEX", conflicts_with = "key_file")]
    pub key: Option<String>,
    /// A file holding the hex PSK (one line).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// TLS version: 1.0, 1.1, 1.2 or 1.3 (default: best).
    #[arg(long)]
    pub tls_version: Option<String>,
    /// TLS 1.2 cipher suites to offer (OpenSSL names, colon-separated).
    #[arg(long)]
    pub cipher: Option<String>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub card: CardArgs,
    /// The admin URI path configured on the card.
    #[arg(long, default_value = "/admin")]
    pub admin_path: String,
    /// The Host header the card sends (by default the server's address), e.g. the name a
    /// server with `expected_host` requires.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Send response scripts chunked, N bytes per chunk.
    #[arg(long, value_name = "N")]
    pub chunked: Option<usize>,
    /// Simulate a lost answer once and resume: `script:N` (the N-th script is lost) or
    /// `results:N` (the answer to the N-th script's results is lost).
    #[arg(long, value_name = "WHAT:N", value_parser = parse_cut)]
    pub cut: Option<Cut>,
    /// Report this X-Admin-Script-Status instead of running scripts.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<ScriptStatus>,
    /// Run this many cards (identities ID0…ID<N-1>) in parallel, one session each.
    #[arg(long, default_value_t = 1)]
    pub cards: usize,
    /// Print each script's commands and responses.
    #[arg(long)]
    pub verbose_apdus: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Full sessions per second (identities PREFIX0…; queue scripts first with `push --count`).
    Sessions {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long, default_value_t = 100)]
        cards: usize,
        #[arg(long, default_value_t = 2000)]
        sessions: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// A campaign: every card `PREFIX0…` runs one full session (queue its scripts first),
    /// CONCURRENCY at a time; with --server-pid, the server's own CPU per session (from /proc).
    Campaign {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long, default_value_t = 2000)]
        cards: usize,
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
        /// The server's process id, to measure its CPU time around the campaign.
        #[arg(long, value_name = "PID")]
        server_pid: Option<u32>,
    },
    /// APDU round trips per second within one session (queue scripts first).
    Apdus {
        #[command(flatten)]
        card: CardArgs,
    },
    /// PSK-TLS handshakes (connect, handshake, close): latency and rate.
    Handshakes {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
    },
    /// Concurrent idle sessions held (identities PREFIX0…).
    Idle {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long, default_value_t = 100)]
        cards: usize,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold them.
        #[arg(long, default_value_t = 10)]
        hold: u64,
        /// Print this process's RSS of the server (pid) while held.
        #[arg(long, value_name = "PID")]
        server_pid: Option<u32>,
    },
}

pub fn run(cmd: &OtaCommand, ctx: &mut Context<'_>) -> Result<()> {
    match cmd {
        OtaCommand::Serve(a) => serve(a, ctx),
        OtaCommand::Push(a) => push(a, ctx),
        OtaCommand::Results(a) => results(a, ctx),
        OtaCommand::Sessions(a) => sessions(a, ctx),
        OtaCommand::Keys(k) => keys(k, ctx),
        OtaCommand::Gp(g) => gp_helper(g),
        OtaCommand::SimulateCard(a) => simulate(a),
        OtaCommand::Bench(b) => bench(b),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

// Implements: O75
fn serve(args: &ServeArgs, ctx: &mut Context<'_>) -> Result<()> {
    ctx.use_service(warden_core::rbac::ServiceKind::OtaServer)?;
    let sealer = ctx.config_sealer()?;
    let plain = if args.allow_plain_config {
        Plain::Allow
    } else {
        Plain::Refuse
    };
    let (text, form, config_sha256) = sealed_config::read_config(&args.config, &sealer, plain)?;
    if form == Form::Plain {
        tracing::warn!(config = %args.config.display(), "reading a configuration that is not sealed (--allow-plain-config)");
    }
    let text = std::str::from_utf8(text.expose_secret())
        .with_context(|| format!("{} is not UTF-8", args.config.display()))?;
    let config = ServerConfig::parse(&args.config, text)?;
    let db_key = ctx.key(Purpose::Database)?;
    let audit_key = ctx.key(Purpose::Audit)?;
    let signing = ctx.key(Purpose::Signing).ok();
    let mut store = ctx.store()?;
    // How this process appends to the chain: checkpoints signed with the slot's `signing` key;
    // with a `siem:` section every record is also queued for the SIEM in its transaction and a
    // forwarder on its own connection drains the queue; without one nothing is queued.
    let audit_log = || {
        let mut audit = AuditLog::new(audit_key.clone());
        if let Some(seed) = &signing {
            audit = audit.with_signer(warden_core::signing::CheckpointSigner::from_seed(seed));
        }
        match &config.siem {
            Some(settings) => {
                audit.with_siem_spool(warden_store::spool::Spool::new(settings.spool))
            }
            None => audit,
        }
    };
    // The dashboard's own connection: people sign in and push there, off the server's
    // database thread.
    // Its records go to the SIEM exactly as the server's do (below).
    let operators = match &config.dashboard {
        Some(d) if d.sign_in => {
            let mut operators = ctx.store()?;
            operators.identity.set_audit_log(audit_log());
            Some(warden_ota::dashboard::OperatorStore::new(operators))
        }
        _ => None,
    };
    // The server acts as its service principal; which configuration it runs is on the record.
    store.append(vec![warden_ota::store::audit_event(
        &Service::Ota.name(),
        "ota.config.load",
        &warden_ota::audit::listener_subject(&config.listen.to_string()),
        Outcome::Success,
    )
    .with_details(
        serde_json::json!({ "config_sha256": hex::encode(config_sha256) }),
    )])?;
    let audit = audit_log();
    let siem = match &config.siem {
        Some(settings) => Some((
            settings.clone(),
            warden_siem::TlsClient::from_settings(settings, Some(&sealer))
                .context("the siem: section")?,
            warden_store::Database::open(&ctx.dir()?.root().join(warden_store::DB_FILE), &db_key)?,
        )),
        None => None,
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let forwarder =
            siem.map(|(settings, client, db)| warden_siem::spawn(db, &settings, client));
        let store = StoreHandle::start_with(store.db, db_key, audit);
        let events = EventBus::default();
        if let Some(path) = &config.events_jsonl {
            events
                .spawn_jsonl_writer(path)
                .with_context(|| format!("cannot open the events file {}", path.display()))?;
        }
        let listen = config.listen;
        let dashboard = config.dashboard.clone();
        let server = Server::new(config, KeyCache::new(), store, events)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        // Keys and the dashboard first: "listening" means the server can take cards and the
        // dashboard can serve.
        server.prepare().await?;
        let dashboard = match dashboard {
            Some(d) => {
                let (addr, scheme) = (d.listen, if d.tls.is_some() { "https" } else { "http" });
                let dash = warden_ota::dashboard::Dashboard::new(server.clone(), d, operators)
                    .context("the dashboard")?;
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (dashboard)"))?;
                Some((dash, l, scheme))
            }
            None => None,
        };
        eprintln!("warden ota: listening on {}", listener.local_addr()?);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // A dashboard that stops with an error stops the server: it was asked for.
        let (dash_failed_tx, dash_failed) = tokio::sync::oneshot::channel::<()>();
        let dashboard = dashboard.map(|(dash, l, scheme)| {
            eprintln!(
                "warden ota: dashboard on {scheme}://{}/",
                l.local_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string())
            );
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let r = dash
                    .serve(l, async move {
                        let _ = rx.changed().await;
                    })
                    .await;
                if r.is_err() {
                    let _ = dash_failed_tx.send(());
                }
                r
            })
        });
        let shutdown = async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                Ok(()) = dash_failed => {}
            }
            eprintln!("warden ota: stopping (finishing open requests)");
            let _ = stop_tx.send(true);
        };
        // The accept loop runs on a worker thread, not on this one: a new connection's task
        // then starts on the worker that accepted it instead of waking one (a cross-thread
        // wake-up per connection, and a third busy thread on two cores).
        tokio::spawn(async move { server.run(listener, shutdown).await })
            .await
            .context("the server task")??;
        drop(stop_rx);
        let dashboard = match dashboard {
            Some(task) => tokio::time::timeout(std::time::Duration::from_secs(5), task)
                .await
                .unwrap_or(Ok(Ok(()))),
            None => Ok(Ok(())),
        };
        if let Some(forwarder) = forwarder {
            // What is still queued stays queued: the next start sends it.
            forwarder.shutdown(std::time::Duration::from_secs(5)).await;
        }
        dashboard
            .context("the dashboard task")?
            .context("the dashboard stopped, so did the server")
    })
}

/// `--cut script:N` or `results:N`.
fn parse_cut(s: &str) -> Result<Cut, String> {
    let wrong = || format!("{s:?}: give script:N or results:N");
    let (what, n) = s.split_once(':').ok_or_else(wrong)?;
    let n: usize = n.parse().map_err(|_| wrong())?;
    match what {
        "script" => Ok(Cut::ScriptLost(n)),
        "results" => Ok(Cut::AnswerToResultsLost(n)),
        _ => Err(wrong()),
    }
}

/// `--status`: an X-Admin-Script-Status value.
fn parse_status(s: &str) -> Result<ScriptStatus, String> {
    ScriptStatus::parse(s).ok_or_else(|| {
        format!("{s:?}: ok, unknown-application, not-a-security-domain or security-error")
    })
}

fn planned_from_args(args: &PushArgs) -> Result<PlannedScript> {
    let mut planned = if let Some(path) = &args.script {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        scriptfile::parse(&text).with_context(|| format!("script file {}", path.display()))?
    } else {
        let mut apdus = Vec::new();
        for (i, hex) in args.apdu.iter().enumerate() {
            apdus.push(
                CommandApdu::from_hex(hex).with_context(|| format!("--apdu number {}", i + 1))?,
            );
        }
        let script = CommandScript::new(apdus);
        PlannedScript {
            label: None,
            redelivery: scriptfile::default_redelivery(&script),
            script,
            targeted_application: None,
        }
    };
    if let Some(r) = args.redelivery {
        planned.redelivery = match r {
            RedeliveryArg::Allowed => Redelivery::Allowed,
            RedeliveryArg::Forbidden => Redelivery::Forbidden,
        };
    }
    if let Some(t) = &args.target {
        planned.targeted_application = Some(
            Aid::from_hex(t)
                .context("--target")?
                .to_targeted_application(),
        );
    }
    if args.label.is_some() {
        planned.label = args.label.clone();
    }
    Ok(planned)
}

fn push(args: &PushArgs, ctx: &mut Context<'_>) -> Result<()> {
    let planned = planned_from_args(args)?;
    for card in &args.card {
        db::check_identity(card).with_context(|| format!("--card {card:?}"))?;
    }
    let (mut store, by) = ctx.sign_in_for(Permission::OtaScriptPush, "ota.script.push")?;
    let ids = ops::push(&mut store, &by, &args.card, &planned, args.count)?;
    // Queued all the same: the key may be in a key file only `ota serve` reads.
    let known: std::collections::BTreeSet<String> = db::list_cards(store.db.conn())?
        .into_iter()
        .map(|c| c.identity)
        .collect();
    let unknown: Vec<&str> = args
        .card
        .iter()
        .filter(|c| !known.contains(*c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let named = match unknown.len() {
            1 => unknown[0].to_string(),
            n if n <= 5 => unknown.join(", "),
            n => format!("{n} cards ({}, …)", unknown[..3].join(", ")),
        };
        eprintln!(
            "note: no key in this database for {named}: the scripts wait until the card connects to a server that has its key (e.g. in a key file)"
        );
    }
    let n = planned.script.command_count();
    if ids.len() <= 10 {
        for (card, id) in &ids {
            println!(
                "queued script {id} for {card}: {n} command(s), redelivery {}",
                match planned.redelivery {
                    warden_ota::admin::Redelivery::Allowed => "allowed",
                    warden_ota::admin::Redelivery::Forbidden => "forbidden",
                }
            );
        }
    } else {
        println!(
            "queued {} scripts ({n} command(s) each) for {} card(s)",
            ids.len(),
            args.card.len()
        );
    }
    Ok(())
}

fn results(args: &ResultsArgs, ctx: &mut Context<'_>) -> Result<()> {
    let (mut store, by) = ctx.sign_in_for(Permission::OtaResultsView, "ota.results.view")?;
    let reports = ops::results(&mut store, &by, &args.card, args.last)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    if reports.is_empty() {
        println!("no scripts for card {}", args.card);
    }
    for r in &reports {
        let rtt = r.round_trip_us.map_or(String::new(), |us| {
            format!(", round trip {:.1} ms", us as f64 / 1000.0)
        });
        println!(
            "script {} [{}]{}: {}{}{}",
            r.id,
            r.state,
            r.label
                .as_deref()
                .map_or(String::new(), |l| format!(" {}", super::printable(l))),
            r.script_status.as_deref().unwrap_or("-"),
            rtt,
            r.completed
                .as_deref()
                .map_or(String::new(), |c| format!(", completed {c}"))
        );
        if r.exchanges.is_empty() {
            if let Ok(script) = CommandScript::decode(&r.body) {
                for c in script.apdus() {
                    println!("    > {}", c.to_hex());
                }
            }
        }
        for e in &r.exchanges {
            println!("    > {}", to_hex(&e.command));
            match (&e.response, e.sw) {
                (Some(resp), Some(sw)) => {
                    println!("    < {}  ({sw:04X} {})", to_hex(resp), status_text(sw));
                    if let (Ok(cmd), Ok(rapdu)) =
                        (CommandApdu::parse(&e.command), ResponseApdu::parse(resp))
                    {
                        if cmd.ins() == gp::INS_GET_STATUS && rapdu.sw() == 0x9000 {
                            let subset = subset_of(cmd.p1());
                            if let Ok(page) = gp::decode_get_status_response(&rapdu) {
                                for entry in page.entries {
                                    println!("        {}", entry.describe(subset));
                                }
                            }
                        }
                    }
                }
                _ => println!("    < (not run)"),
            }
        }
    }
    Ok(())
}

fn subset_of(p1: u8) -> gp::StatusSubset {
    match p1 {
        0x80 => gp::StatusSubset::IssuerSecurityDomain,
        0x20 => gp::StatusSubset::LoadFiles,
        0x10 => gp::StatusSubset::LoadFilesAndModules,
        _ => gp::StatusSubset::Applications,
    }
}

fn sessions(args: &SessionsArgs, ctx: &mut Context<'_>) -> Result<()> {
    let (mut store, by) = ctx.sign_in_for(Permission::OtaResultsView, "ota.sessions.view")?;
    let rows = ops::sessions(&mut store, &by, args.card.as_deref(), args.limit)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for s in rows {
        println!(
            "{} {} card={} peer={} {} {} state={} reason={} scripts={} apdus={}",
            s.started,
            s.id,
            s.card.as_deref().unwrap_or("-"),
            s.peer,
            s.tls_version.as_deref().unwrap_or("-"),
            s.cipher.as_deref().unwrap_or("-"),
            s.state,
            s.close_reason.as_deref().unwrap_or("-"),
            s.scripts,
            s.apdus
        );
    }
    Ok(())
}

fn read_key_hex(key: &Option<String>, stdin: bool) -> Result<Psk> {
    let text = match (key, stdin) {
        (Some(k), _) => Zeroizing::new(k.clone()),
        (None, true) => {
            let mut s = Zeroizing::new(String::new());
            std::io::stdin().read_line(&mut s)?;
            s
        }
        (None, false) => bail!("give the key with --key-stdin (or --key HEX)"),
    };
    Ok(Psk::from_hex(text.trim())?)
}

fn keys(args: &KeysArgs, ctx: &mut Context<'_>) -> Result<()> {
    let action = match &args.command {
        KeysCommand::Add { .. } => "ota.key.add",
        KeysCommand::List { .. } => "ota.key.list",
        KeysCommand::Remove { .. } => "ota.key.remove",
        KeysCommand::Import { .. } => "ota.key.import",
    };
    // Read what the command needs from standard input or files before signing in.
    let psk = match &args.command {
        KeysCommand::Add { key, key_stdin, .. } => Some(read_key_hex(key, *key_stdin)?),
        _ => None,
    };
    let imported = match &args.command {
        KeysCommand::Import { file, .. } => {
            Some(read_key_file(file).with_context(|| format!("{}", file.display()))?)
        }
        _ => None,
    };
    let (mut store, by) = ctx.sign_in_for(Permission::OtaKeyManage, action)?;
    let db_key = ctx.key(Purpose::Database)?;
    match &args.command {
        KeysCommand::Add {
            identity, replace, ..
        } => {
            let psk = psk.expect("read above");
            ops::add_key(&mut store, &by, &db_key, identity, &psk, *replace)?;
            println!("key for {identity} stored ({} bytes, sealed)", psk.len());
        }
        KeysCommand::List { json } => {
            let cards = ops::list_cards(&mut store, &by)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&cards)?);
            } else {
                for c in cards {
                    println!(
                        "{}  (added {}, {} pending script(s))",
                        c.identity, c.created, c.pending_scripts
                    );
                }
            }
        }
        KeysCommand::Remove { identity } => {
            ops::remove_key(&mut store, &by, identity)?;
            println!("key for {identity} removed");
        }
        KeysCommand::Import { file, replace } => {
            let keys = imported.expect("read above");
            ops::import_keys(
                &mut store,
                &by,
                &db_key,
                &keys,
                &file.display().to_string(),
                *replace,
            )?;
            println!("imported {} key(s) from {}", keys.len(), file.display());
        }
    }
    Ok(())
}

fn gp_helper(cmd: &GpCommand) -> Result<()> {
    let apdu = match cmd {
        GpCommand::Select { aid } => gp::select_by_aid(&Aid::from_hex(aid)?),
        GpCommand::GetStatus { subset, aid } => {
            let prefix = match aid {
                Some(a) => warden_ota::apdu::parse_hex(a)?,
                None => Vec::new(),
            };
            gp::get_status(
                scriptfile::parse_subset(subset).map_err(anyhow::Error::msg)?,
                Occurrence::FirstOrAll,
                &prefix,
            )?
        }
        GpCommand::GetData { tag } => {
            gp::get_data(scriptfile::parse_data_tag(tag).map_err(anyhow::Error::msg)?)
        }
        GpCommand::Install {
            load_file,
            module,
            application,
            privileges,
            parameters,
        } => {
            let mut i = InstallForInstall::new(
                Aid::from_hex(load_file).context("--load-file")?,
                Aid::from_hex(module).context("--module")?,
                Aid::from_hex(application).context("--application")?,
            );
            i.privileges = Privileges::from_bytes(&warden_ota::apdu::parse_hex(privileges)?)
                .context("--privileges: 1 or 3 bytes")?;
            if let Some(p) = parameters {
                i.parameters = warden_ota::apdu::parse_hex(p)?;
            }
            i.to_apdu()?
        }
        GpCommand::Delete { aid, related } => gp::delete(&Aid::from_hex(aid)?, *related),
        GpCommand::DecodeStatus { response, subset } => {
            let r = ResponseApdu::from_hex(response)?;
            let subset = scriptfile::parse_subset(subset).map_err(anyhow::Error::msg)?;
            let page = gp::decode_get_status_response(&r)?;
            for e in &page.entries {
                println!("{}", e.describe(subset));
            }
            if page.more {
                println!("(more entries: send GET STATUS with P2 = next occurrence)");
            }
            return Ok(());
        }
    };
    println!("{}", apdu.to_hex());
    Ok(())
}

fn resolve_server(s: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .with_context(|| format!("--server {s:?}"))?
        .next()
        .with_context(|| format!("--server {s:?} resolves to nothing"))
}

fn card_psk(card: &CardArgs) -> Result<Arc<Psk>> {
    let text = match (&card.key, &card.key_file) {
        (Some(k), _) => Zeroizing::new(k.clone()),
        (None, Some(path)) => Zeroizing::new(
            String::from_utf8(warden_core::fsx::read_private(path, 4096)?)
                .context("key file is not text")?,
        ),
        (None, None) => bail!("give --key-file FILE (or --key HEX)"),
    };
    Ok(Arc::new(Psk::from_hex(text.trim())?))
}

fn tls_options(card: &CardArgs) -> ClientTlsOptions {
    ClientTlsOptions {
        version: card.tls_version.as_deref().map(|v| match v {
            "1" | "1.0" => "TLSv1".to_string(),
            "1.1" => "TLSv1.1".into(),
            "1.3" => "TLSv1.3".into(),
            _ => "TLSv1.2".into(),
        }),
        ciphers: card.cipher.clone(),
        ciphersuites: None,
    }
}

fn simulate(args: &SimulateArgs) -> Result<()> {
    let server = resolve_server(&args.card.server)?;
    let psk = card_psk(&args.card)?;
    let mut cfg = CardConfig::new(server, args.card.identity.clone(), psk.clone());
    cfg.admin_path = args.admin_path.clone();
    if let Some(host) = &args.host {
        cfg.host = host.clone();
    }
    cfg.tls = tls_options(&args.card);
    cfg.chunked = args.chunked;
    cfg.cut = args.cut;
    cfg.force_status = args.status;
    let rt = runtime()?;
    rt.block_on(async {
        if args.cards > 1 {
            let ids = (0..args.cards)
                .map(|i| (format!("{}{i}", args.card.identity), psk.clone()))
                .collect();
            let started = std::time::Instant::now();
            let results = simulator::run_many(cfg, ids, args.cards, args.cards.min(256)).await;
            let ok = results.iter().filter(|r| r.is_ok()).count();
            println!(
                "{ok}/{} card sessions completed in {:.2} s",
                args.cards,
                started.elapsed().as_secs_f64()
            );
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                bail!("a card session failed: {e}");
            }
            return Ok(());
        }
        let mut card = GpCard::new();
        let r = simulator::run_session(&cfg, &mut card).await?;
        println!(
            "session complete: {} over {} ({:.1} ms handshake), {} script(s), {} APDU(s), {} request(s), {} resume(s), {:.1} ms",
            r.tls_version,
            r.cipher,
            r.handshake.as_secs_f64() * 1000.0,
            r.scripts.len(),
            r.apdus(),
            r.requests,
            r.resumes,
            r.duration.as_secs_f64() * 1000.0
        );
        for (i, s) in r.scripts.iter().enumerate() {
            println!("script {} → {} ({})", i + 1, s.next_uri, s.status);
            if args.verbose_apdus {
                for (j, c) in s.commands.iter().enumerate() {
                    println!("    > {}", c.to_hex());
                    if let Some(resp) = s.responses.get(j) {
                        println!("    < {} ({:04X})", resp.to_hex(), resp.sw());
                    }
                }
            }
        }
        Ok(())
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn bench(cmd: &BenchCommand) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        match cmd {
            BenchCommand::Sessions {
                card,
                cards,
                sessions,
                concurrency,
            } => {
                let r = warden_ota::bench::sessions(
                    resolve_server(&card.server)?,
                    &card.identity,
                    *cards,
                    card_psk(card)?,
                    *sessions,
                    *concurrency,
                    tls_options(card),
                )
                .await;
                print_json(&r)
            }
            BenchCommand::Campaign {
                card,
                cards,
                concurrency,
                server_pid,
            } => {
                let r = warden_ota::bench::campaign(
                    resolve_server(&card.server)?,
                    &card.identity,
                    *cards,
                    card_psk(card)?,
                    *concurrency,
                    tls_options(card),
                    *server_pid,
                )
                .await;
                print_json(&r)
            }
            BenchCommand::Apdus { card } => {
                let mut cfg = CardConfig::new(
                    resolve_server(&card.server)?,
                    card.identity.clone(),
                    card_psk(card)?,
                );
                cfg.tls = tls_options(card);
                cfg.timeout = Duration::from_secs(120);
                print_json(&warden_ota::bench::apdus(cfg).await?)
            }
            BenchCommand::Handshakes {
                card,
                count,
                concurrency,
            } => {
                let r = warden_ota::bench::handshakes(
                    resolve_server(&card.server)?,
                    &card.identity,
                    card_psk(card)?,
                    *count,
                    *concurrency,
                    tls_options(card),
                )
                .await;
                print_json(&r)
            }
            BenchCommand::Idle {
                card,
                cards,
                count,
                concurrency,
                hold,
                server_pid,
            } => {
                let pid = *server_pid;
                let before = pid.and_then(rss_kib);
                let held = Arc::new(std::sync::Mutex::new(None));
                let held_w = held.clone();
                let r = warden_ota::bench::idle(
                    resolve_server(&card.server)?,
                    &card.identity,
                    *cards,
                    card_psk(card)?,
                    *count,
                    *concurrency,
                    Duration::from_secs(*hold),
                    async move {
                        if let Some(pid) = pid {
                            *held_w.lock().unwrap_or_else(|e| e.into_inner()) = rss_kib(pid);
                        }
                    },
                )
                .await;
                let after = pid.and_then(rss_kib);
                let held = *held.lock().unwrap_or_else(|e| e.into_inner());
                let per_session = match (before, held) {
                    (Some(b), Some(h)) if r.established > 0 => {
                        Some((h.saturating_sub(b)) as f64 / r.established as f64)
                    }
                    _ => None,
                };
                print_json(
                    &serde_json::json!({"result": r, "server_rss_kib_before": before,
                    "server_rss_kib_held": held, "server_rss_kib_after_close": after,
                    "server_kib_per_session": per_session}),
                )
            }
        }
    })
}
