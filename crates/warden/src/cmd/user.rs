//! `warden user …`: users, roles, passwords, TOTP enrollment and lockouts; the sign-in every
//! privileged command starts with ([`sign_in`], [`Session::authorize`]); and `warden init`'s
//! first administrator ([`FirstAdmin`]).
//!
//! Passwords come from a file (`--password-file`, 0600 and ours, like the passphrase file),
//! `$WARDEN_PASSWORD` (tests only), or a prompt without echo; a one-time code from `--totp` or
//! a prompt. Output fits a terminal; `--json` gives the same facts to scripts.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use warden_core::fsx;
use warden_core::keyring::Purpose;
use warden_core::password::Password;
use warden_core::rbac::{Permission, Role};
use warden_core::secret::Key32;
use warden_core::totp::{Digits, KeyUri, Period, TotpParams};
use warden_store::identity::{
    AuthError, AuthenticatedUser, Authorized, Identity, IdentityPolicy, NewUser, PortId, Principal,
    UnixMs, UserInfo, Username,
};
use warden_store::Database;

use crate::cli::{
    ActorArgs, EnrollOutput, GlobalArgs, IdentityInitArgs, TotpChoice, UserArgs, UserCommand,
};
use crate::keys::Unlocker;

pub const ENV_PASSWORD: &str = "WARDEN_PASSWORD";
pub const ENV_NEW_PASSWORD: &str = "WARDEN_NEW_PASSWORD";
const MAX_PASSWORD_BYTES: u64 = 4096;
const MAX_POLICY_BYTES: u64 = 64 * 1024;

// ------------------------------------------------------------------------------ sign-in

/// A signed-in person with the open database and the identity service.
pub struct Session {
    pub db: Database,
    pub identity: Identity,
    pub user: AuthenticatedUser,
}

impl Session {
    /// Allows one permission for `action` (e.g. `audit.export`), or records the denial in the
    /// audit chain and fails (exit code 5).
    pub fn authorize(&mut self, permission: Permission, action: &str) -> Result<Authorized> {
        Ok(self
            .identity
            .require(&mut self.db, &self.user, permission, action, UnixMs::now())?)
    }
}

/// Opens the database and the identity service (database and audit keys from the passphrase).
pub fn open_identity(unlocker: &mut Unlocker) -> Result<(Database, Identity)> {
    let database_key = unlocker.key(Purpose::Database)?;
    let audit_key = unlocker.key(Purpose::Audit)?;
    let db = Database::open(
        &unlocker.dir.root().join(warden_store::DB_FILE),
        &database_key,
    )?;
    let identity = Identity::load(&db, database_key, audit_key)?;
    Ok((db, identity))
}

/// Signs in the person named by `--as` / `$WARDEN_USER`: password, then a one-time code when
/// they have TOTP enrolled. Every attempt is audited; refusals exit with code 5.
pub fn sign_in(global: &GlobalArgs, actor: &ActorArgs) -> Result<Session> {
    sign_in_with(&mut Unlocker::open(global)?, actor)
}

/// [`sign_in`] with an unlocker the caller keeps, for commands that need other purpose keys
/// after the sign-in (the passphrase is read only once).
pub fn sign_in_with(unlocker: &mut Unlocker, actor: &ActorArgs) -> Result<Session> {
    let username = actor.acting_user.clone().ok_or_else(|| {
        anyhow!("this command needs to know who you are: pass --as USER (or set WARDEN_USER)")
    })?;
    let (mut db, mut identity) = open_identity(unlocker)?;
    let password = read_password(actor.password_file.as_deref(), &username)?;
    let mut code = actor.totp.clone().map(zeroize::Zeroizing::new);
    loop {
        let result = identity.authenticate_operator(
            &mut db,
            &username,
            &password,
            code.as_deref().map(String::as_str),
            UnixMs::now(),
        );
        match result {
            Ok(user) => {
                if user.password_expired() {
                    eprintln!(
                        "warning: the password of {} has expired; change it with `warden user passwd`",
                        user.username()
                    );
                }
                return Ok(Session { db, identity, user });
            }
            Err(AuthError::TotpRequired { .. }) if code.is_none() && on_terminal() => {
                code = Some(zeroize::Zeroizing::new(rpassword::prompt_password(
                    "One-time code: ",
                )?));
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// [`sign_in`] then [`Session::authorize`]: the one call a privileged command makes.
pub fn sign_in_for(
    global: &GlobalArgs,
    actor: &ActorArgs,
    permission: Permission,
    action: &str,
) -> Result<(Session, Authorized)> {
    sign_in_for_with(&mut Unlocker::open(global)?, actor, permission, action)
}

/// [`sign_in_for`] with an unlocker the caller keeps (see [`sign_in_with`]).
pub fn sign_in_for_with(
    unlocker: &mut Unlocker,
    actor: &ActorArgs,
    permission: Permission,
    action: &str,
) -> Result<(Session, Authorized)> {
    let mut session = sign_in_with(unlocker, actor)?;
    let authorized = session.authorize(permission, action)?;
    Ok((session, authorized))
}

fn on_terminal() -> bool {
    std::io::stdin().is_terminal() || std::io::stderr().is_terminal()
}

/// The first line of a file that must be private (0600, ours, not a symlink).
fn read_secret_file(path: &Path, what: &str) -> Result<Password> {
    let bytes = zeroize::Zeroizing::new(
        fsx::read_private(path, MAX_PASSWORD_BYTES)
            .with_context(|| format!("cannot use the {what} file"))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow!("{what} file {} is not valid UTF-8", path.display()))?;
    let line = text.split(['\n', '\r']).next().unwrap_or("");
    if line.is_empty() {
        bail!("{what} file {} is empty", path.display());
    }
    Ok(Password::new(line.to_owned()))
}

fn read_env(var: &str) -> Result<Option<Password>> {
    match std::env::var(var) {
        Ok(value) => {
            tracing::warn!("reading a password from {var}: for tests only, not for production");
            Ok(Some(Password::new(value)))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{var} is not valid UTF-8"),
    }
}

/// The acting person's password: `--password-file`, `$WARDEN_PASSWORD`, or a prompt.
fn read_password(file: Option<&Path>, username: &str) -> Result<Password> {
    if let Some(path) = file {
        return read_secret_file(path, "password");
    }
    if let Some(password) = read_env(ENV_PASSWORD)? {
        return Ok(password);
    }
    if !on_terminal() {
        bail!(
            "no password source: not on a terminal, and neither --password-file nor {ENV_PASSWORD} is set"
        );
    }
    Ok(Password::new(rpassword::prompt_password(format!(
        "Password for {username}: "
    ))?))
}

/// A new password: a file, `$WARDEN_NEW_PASSWORD`, or a prompt asked twice.
fn read_new_password(file: Option<&Path>, whose: &str) -> Result<Password> {
    if let Some(path) = file {
        return read_secret_file(path, "new password");
    }
    if let Some(password) = read_env(ENV_NEW_PASSWORD)? {
        return Ok(password);
    }
    if !on_terminal() {
        bail!(
            "no source for the new password of {whose}: not on a terminal, and neither a password \
             file option nor {ENV_NEW_PASSWORD} is given"
        );
    }
    let first = Password::new(rpassword::prompt_password(format!(
        "New password for {whose} (at least 16 characters, upper and lower case, a digit and a special character): "
    ))?);
    let again = Password::new(rpassword::prompt_password("Repeat the new password: ")?);
    if !warden_core::mac::ct_eq(
        first.expose_secret().as_bytes(),
        again.expose_secret().as_bytes(),
    ) {
        bail!("the two passwords differ");
    }
    Ok(first)
}

fn totp_params(choice: &TotpChoice, policy: &IdentityPolicy) -> Result<Option<TotpParams>> {
    if choice.algorithm.is_none() && choice.digits.is_none() && choice.period.is_none() {
        return Ok(None);
    }
    let mut params = policy.totp;
    if let Some(algorithm) = &choice.algorithm {
        params.algorithm = algorithm.parse()?;
    }
    if let Some(digits) = choice.digits {
        params.digits = Digits::try_from(digits)?;
    }
    if let Some(period) = choice.period {
        params.period_secs = Period::from_secs(period)?;
    }
    Ok(Some(params))
}

// ------------------------------------------------------------------------------ init

/// The first administrator, gathered (and the password checked against the policy) before
/// `warden init` writes anything.
pub struct FirstAdmin {
    username: Username,
    password: Password,
    policy: IdentityPolicy,
    totp: bool,
    qr_png: Option<PathBuf>,
}

impl FirstAdmin {
    pub fn from_args(args: &IdentityInitArgs) -> Result<Self> {
        let policy = match &args.identity_policy {
            Some(path) => {
                let bytes = fsx::read_limited(
                    std::fs::File::open(path)
                        .with_context(|| format!("cannot open {}", path.display()))?,
                    path,
                    MAX_POLICY_BYTES,
                )?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| anyhow!("{} is not valid UTF-8", path.display()))?;
                IdentityPolicy::from_json(&text)
                    .with_context(|| format!("in {}", path.display()))?
            }
            None => IdentityPolicy::default(),
        };
        let name = match &args.admin {
            Some(name) => name.clone(),
            None if on_terminal() => {
                eprint!("First administrator's user name: ");
                std::io::stderr().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim().to_owned()
            }
            None => bail!(
                "warden init creates the first administrator (there is no default account): pass \
                 --admin NAME and --admin-password-file FILE, or run it on a terminal"
            ),
        };
        let username = Username::parse(&name)?;
        let password = read_new_password(args.admin_password_file.as_deref(), &name)?;
        policy.password.check_new_password(&password, &[])?;
        Ok(Self {
            username,
            password,
            policy,
            totp: args.admin_totp,
            qr_png: args.admin_qr_png.clone(),
        })
    }

    /// Stores the policy and creates the administrator (audited as `user.create` by `warden`).
    pub fn create(self, db: &mut Database, database_key: &Key32, audit_key: &Key32) -> Result<()> {
        Identity::init(db, &self.policy)?;
        let mut identity = Identity::load(db, database_key.clone(), audit_key.clone())?;
        let totp = self.totp.then_some(self.policy.totp);
        let enrollment =
            identity.create_first_admin(db, &self.username, &self.password, totp, UnixMs::now())?;
        eprintln!(
            "  first administrator: {} ({})",
            self.username,
            if enrollment.is_some() {
                "password and TOTP"
            } else {
                "password; enroll TOTP with `warden user enroll-totp`"
            }
        );
        if let Some(uri) = enrollment {
            let output = EnrollOutput {
                qr_png: self.qr_png,
                no_qr: false,
            };
            show_enrollment(&uri, &output, false)?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------ commands

pub fn run(args: &UserArgs, global: &GlobalArgs) -> Result<()> {
    match &args.command {
        UserCommand::Add {
            username,
            role,
            new_password_file,
            enroll_totp,
            totp_params: choice,
            output,
            json,
        } => {
            let username = Username::parse(username)?;
            // The new user's password is read before signing in, so a prompt for it does not
            // come between the administrator's password and their code.
            let password = if *role == Role::Technician {
                if new_password_file.is_some() {
                    bail!("technicians sign in with TOTP only and have no password");
                }
                None
            } else {
                Some(read_new_password(
                    new_password_file.as_deref(),
                    username.as_str(),
                )?)
            };
            let (mut s, by) = sign_in_for(global, &args.actor, Permission::UserManage, "user.add")?;
            let params = totp_params(choice, s.identity.policy())?;
            let enroll = *enroll_totp || params.is_some();
            let enrollment = s.identity.add_user(
                &mut s.db,
                &by,
                NewUser {
                    username: &username,
                    role: *role,
                    password: password.as_ref(),
                    totp: if enroll {
                        Some(params.unwrap_or(s.identity.policy().totp))
                    } else {
                        None
                    },
                },
                UnixMs::now(),
            )?;
            if *json {
                let mut out = json!({ "username": username.as_str(), "role": role.name() });
                if let Some(uri) = &enrollment {
                    out["totp"] = enrollment_json(uri);
                }
                write_qr_png(enrollment.as_ref(), output)?;
                println!("{out}");
            } else {
                println!("added {} ({})", username, role);
                if let Some(uri) = &enrollment {
                    show_enrollment(uri, output, false)?;
                }
            }
            Ok(())
        }
        UserCommand::List { json } => {
            let (s, _) = sign_in_for(global, &args.actor, Permission::UserManage, "user.list")?;
            let now = UnixMs::now();
            let users = s.identity.list_users(&s.db, now)?;
            let locks = s.identity.locked(&s.db, now)?;
            let ports: Vec<_> = locks
                .iter()
                .filter(|l| l.principal.starts_with("port:"))
                .collect();
            if *json {
                println!("{}", json!({ "users": users, "locked_ports": ports }));
            } else {
                print_table(&users);
                for port in ports {
                    println!(
                        "locked: {} since {} (warden user unlock --port {})",
                        port.principal,
                        date(port.locked_at),
                        port.principal.trim_start_matches("port:")
                    );
                }
            }
            Ok(())
        }
        UserCommand::Show { username, json } => {
            let username = Username::parse(username)?;
            let (s, _) = sign_in_for(global, &args.actor, Permission::UserManage, "user.show")?;
            let info = s.identity.user_info(&s.db, &username, UnixMs::now())?;
            if *json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                print_user(&info);
            }
            Ok(())
        }
        UserCommand::Disable { username } | UserCommand::Enable { username } => {
            let disable = matches!(args.command, UserCommand::Disable { .. });
            let username = Username::parse(username)?;
            let action = if disable {
                "user.disable"
            } else {
                "user.enable"
            };
            let (mut s, by) = sign_in_for(global, &args.actor, Permission::UserManage, action)?;
            let changed =
                s.identity
                    .set_disabled(&mut s.db, &by, &username, disable, UnixMs::now())?;
            let state = if disable { "disabled" } else { "enabled" };
            if changed {
                println!("{username} is now {state}");
            } else {
                println!("{username} was already {state}");
            }
            Ok(())
        }
        UserCommand::Passwd {
            username,
            new_password_file,
        } => {
            let target = username.as_deref().map(Username::parse).transpose()?;
            let mut s = sign_in(global, &args.actor)?;
            let is_self = target
                .as_ref()
                .is_none_or(|t| t.as_str() == s.user.username());
            let whose = target
                .as_ref()
                .map_or_else(|| s.user.username().to_owned(), |t| t.to_string());
            if is_self {
                let password = read_new_password(new_password_file.as_deref(), &whose)?;
                let user = s.user.clone();
                s.identity
                    .change_own_password(&mut s.db, &user, &password, UnixMs::now())?;
            } else {
                let by = s.authorize(Permission::UserManage, "user.passwd")?;
                let password = read_new_password(new_password_file.as_deref(), &whose)?;
                let target = target.expect("not self, so named");
                s.identity
                    .reset_password(&mut s.db, &by, &target, &password, UnixMs::now())?;
            }
            println!("password of {whose} changed");
            Ok(())
        }
        UserCommand::EnrollTotp {
            username,
            totp_params: choice,
            output,
            json,
        } => {
            let target = username.as_deref().map(Username::parse).transpose()?;
            let mut s = sign_in(global, &args.actor)?;
            let params = totp_params(choice, s.identity.policy())?;
            let is_self = target
                .as_ref()
                .is_none_or(|t| t.as_str() == s.user.username());
            let uri = if is_self {
                if s.user.password_expired() {
                    return Err(AuthError::PasswordExpired {
                        username: s.user.username().to_owned(),
                    }
                    .into());
                }
                let user = s.user.clone();
                s.identity
                    .enroll_own_totp(&mut s.db, &user, params, UnixMs::now())?
            } else {
                let by = s.authorize(Permission::UserManage, "user.enroll-totp")?;
                let target = target.expect("not self, so named");
                s.identity
                    .enroll_totp_for(&mut s.db, &by, &target, params, UnixMs::now())?
            };
            if *json {
                write_qr_png(Some(&uri), output)?;
                println!("{}", enrollment_json(&uri));
            } else {
                show_enrollment(&uri, output, true)?;
            }
            Ok(())
        }
        UserCommand::Unlock { username, port } => {
            let (principal, permission) = match (username, port) {
                (Some(name), None) => (
                    Principal::User(Username::parse(name)?),
                    Permission::UserManage,
                ),
                (None, Some(port)) => {
                    (Principal::Port(PortId::parse(port)?), Permission::ShimReset)
                }
                _ => bail!("name a user or a --port, not both"),
            };
            let (mut s, by) = sign_in_for(global, &args.actor, permission, "lockout.unlock")?;
            let was_locked = s
                .identity
                .unlock(&mut s.db, &by, &principal, UnixMs::now())?;
            let key = principal.key();
            if was_locked {
                println!("unlocked {key}");
            } else {
                println!("{key} was not locked; its failure count is reset");
            }
            Ok(())
        }
        UserCommand::Policy { json } => {
            let (s, _) = sign_in_for(global, &args.actor, Permission::UserManage, "user.policy")?;
            let policy = s.identity.policy();
            if *json {
                println!("{}", serde_json::to_string(policy)?);
            } else {
                println!("{}", serde_json::to_string_pretty(policy)?);
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------------------------------ output

fn enrollment_json(uri: &KeyUri) -> serde_json::Value {
    let params = uri.params();
    json!({
        "uri": uri.to_uri().expose_secret(),
        "issuer": uri.issuer(),
        "account": uri.account(),
        "algorithm": params.algorithm.name(),
        "digits": params.digits.count(),
        "period_secs": params.period_secs.secs(),
    })
}

/// The URI (and a QR code unless `--no-qr`) on standard output: shown once, then only the
/// authenticator app has it.
fn show_enrollment(uri: &KeyUri, output: &EnrollOutput, heading: bool) -> Result<()> {
    let text = uri.to_uri();
    let params = uri.params();
    let mut out = std::io::stdout().lock();
    if heading {
        writeln!(out, "TOTP enrolled for {}", uri.account())?;
    }
    writeln!(
        out,
        "Scan the QR code or enter the URI in an authenticator app ({}, {} digits, {} s). \
         It is shown only now.",
        params.algorithm,
        params.digits.count(),
        params.period_secs.secs()
    )?;
    writeln!(out, "{}", text.expose_secret())?;
    if !output.no_qr {
        writeln!(out, "{}", qr_terminal(text.expose_secret())?)?;
    }
    drop(out);
    write_qr_png(Some(uri), output)
}

/// The QR code in Unicode half blocks, two modules per character cell (light on dark, as most
/// terminals are; scanners read both).
fn qr_terminal(text: &str) -> Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).context("cannot draw the QR code")?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

fn write_qr_png(uri: Option<&KeyUri>, output: &EnrollOutput) -> Result<()> {
    let (Some(uri), Some(path)) = (uri, &output.qr_png) else {
        return Ok(());
    };
    let text = uri.to_uri();
    let png = qr_png(text.expose_secret())?;
    let mut file = fsx::create_private_new(path)?;
    file.write_all(&png)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("QR code written to {} (0600)", path.display());
    Ok(())
}

/// A black-on-white grayscale PNG, 8 pixels per module, with the 4-module quiet zone.
pub fn qr_png(text: &str) -> Result<Vec<u8>> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let code = qrcode::QrCode::new(text.as_bytes()).context("cannot draw the QR code")?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (index % modules, index / modules);
        for dy in 0..SCALE {
            let row = (my + QUIET) * SCALE + dy;
            let start = row * side + (mx + QUIET) * SCALE;
            pixels[start..start + SCALE].fill(0);
        }
    }
    let side32 = u32::try_from(side).context("QR code too large")?;
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, side32, side32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("PNG header")?;
    writer.write_image_data(&pixels).context("PNG data")?;
    writer.finish().context("PNG end")?;
    Ok(png)
}

fn date(unix: Option<u64>) -> String {
    let Some(unix) = unix else {
        return "-".into();
    };
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(0)) else {
        return "?".into();
    };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    at.format(&format).unwrap_or_else(|_| "?".into())
}

fn status(user: &UserInfo) -> String {
    let mut parts = Vec::new();
    parts.push(if user.disabled { "disabled" } else { "enabled" });
    if user.lock.locked {
        parts.push("LOCKED");
    }
    if user.password_expired {
        parts.push("password expired");
    }
    parts.join(", ")
}

fn totp_summary(user: &UserInfo) -> String {
    match &user.totp {
        Some(t) => format!("{}/{}/{}s", t.algorithm, t.digits, t.period_secs),
        None => "-".into(),
    }
}

fn password_summary(user: &UserInfo) -> String {
    match (
        user.has_password,
        user.password_expires,
        user.password_expired,
    ) {
        (false, _, _) => "none".into(),
        (true, Some(at), true) => format!("expired {}", date(Some(at))),
        (true, Some(at), false) => format!("until {}", date(Some(at))),
        (true, None, _) => "no expiry".into(),
    }
}

fn print_table(users: &[UserInfo]) {
    let rows: Vec<[String; 5]> = users
        .iter()
        .map(|u| {
            [
                u.username.clone(),
                u.role.to_string(),
                status(u),
                totp_summary(u),
                password_summary(u),
            ]
        })
        .collect();
    let header = ["USER", "ROLE", "STATUS", "TOTP", "PASSWORD"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text
    };
    println!("{}", line(header));
    for row in &rows {
        println!("{}", line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
}

fn print_user(user: &UserInfo) {
    let permissions: Vec<&str> = user.role.permissions().map(Permission::name).collect();
    println!("user:        {}", user.username);
    println!("role:        {} ({})", user.role, permissions.join(", "));
    println!("status:      {}", status(user));
    println!(
        "created:     {} by {}",
        date(Some(user.created)),
        user.created_by
    );
    println!(
        "password:    {}{}",
        password_summary(user),
        user.password_changed
            .map(|c| format!(", changed {}", date(Some(c))))
            .unwrap_or_default()
    );
    match &user.totp {
        Some(t) => println!(
            "totp:        {} {} digits {} s, enrolled {}, last accepted step {}",
            t.algorithm,
            t.digits,
            t.period_secs,
            date(t.enrolled),
            t.last_accepted_step
                .map_or_else(|| "none".into(), |s| s.to_string())
        ),
        None => println!("totp:        not enrolled"),
    }
    println!(
        "lockout:     {}{} recent failure(s)",
        if user.lock.locked {
            format!("LOCKED since {}, ", date(user.lock.locked_at))
        } else {
            String::new()
        },
        user.lock.recent_failures
    );
}
