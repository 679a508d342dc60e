//! `warden user …`: users, roles, passwords, TOTP enrollment and lockouts (operations in
//! `warden_store::identity`, each taking the signed-in administrator's authorization).
//!
//! Passwords come from a file (`--password-file`, 0600 and ours, like the passphrase file),
//! `$WARDEN_PASSWORD` (tests only), or a prompt without echo; a one-time code from `--totp` or
//! a prompt. Output fits a terminal; `--json` gives the same facts to scripts.

use anyhow::{bail, Result};
use serde_json::json;
use warden_core::rbac::{Permission, Role};
use warden_core::totp::{Digits, Period, TotpParams};
use warden_store::identity::{
    AuthError, IdentityPolicy, NewUser, Principal, UnixMs, UserInfo, Username,
};

use crate::cli::{TotpChoice, UserArgs, UserCommand};
use crate::context::{read_new_password, Context};
use crate::enroll::{enrollment_json, show_enrollment, write_qr_png};

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

// ------------------------------------------------------------------------------ commands

pub fn run(args: &UserArgs, ctx: &mut Context<'_>) -> Result<()> {
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
            let (mut s, by) = ctx.sign_in_for(Permission::UserManage, "user.add")?;
            let params = totp_params(choice, s.identity.policy())?;
            let enroll = *enroll_totp || params.is_some();
            let policy_totp = s.identity.policy().totp;
            let ring = ctx.ring()?;
            let dir = ctx.dir_owned()?;
            let enrollment = warden_store::keys::add_user(
                &mut s,
                &dir,
                &by,
                &ring,
                NewUser {
                    username: &username,
                    role: *role,
                    password: password.as_ref(),
                    totp: if enroll {
                        Some(params.unwrap_or(policy_totp))
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
            let (mut s, by) = ctx.sign_in_for(Permission::UserManage, "user.list")?;
            let (users, locks) = s.identity.list_users(&mut s.db, &by, UnixMs::now())?;
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
                        "locked: {} since {} (the shim daemon lifts it: warden shim reset, for {})",
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
            let (mut s, by) = ctx.sign_in_for(Permission::UserManage, "user.show")?;
            let info = s
                .identity
                .user_info(&mut s.db, &by, &username, UnixMs::now())?;
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
            let (mut s, by) = ctx.sign_in_for(Permission::UserManage, action)?;
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
            let (mut s, user) = ctx.sign_in(Permission::UserManage, "user.passwd")?;
            let is_self = target
                .as_ref()
                .is_none_or(|t| t.as_str() == user.username());
            let whose = target
                .as_ref()
                .map_or_else(|| user.username().to_owned(), |t| t.to_string());
            let ring = ctx.ring()?;
            let dir = ctx.dir_owned()?;
            if is_self {
                let password = read_new_password(new_password_file.as_deref(), &whose)?;
                warden_store::keys::change_own_password(
                    &mut s,
                    &dir,
                    &user,
                    &ring,
                    &password,
                    UnixMs::now(),
                )?;
            } else {
                let by = s.identity.require(
                    &mut s.db,
                    &user,
                    Permission::UserManage,
                    "user.passwd",
                    UnixMs::now(),
                )?;
                let password = read_new_password(new_password_file.as_deref(), &whose)?;
                let target = target.expect("not self, so named");
                warden_store::keys::reset_password(
                    &mut s,
                    &dir,
                    &by,
                    &ring,
                    &target,
                    &password,
                    UnixMs::now(),
                )?;
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
            let (mut s, user) = ctx.sign_in(Permission::UserManage, "user.enroll-totp")?;
            let params = totp_params(choice, s.identity.policy())?;
            let is_self = target
                .as_ref()
                .is_none_or(|t| t.as_str() == user.username());
            let uri = if is_self {
                if user.password_expired() {
                    return Err(AuthError::PasswordExpired {
                        username: user.username().to_owned(),
                    }
                    .into());
                }
                s.identity
                    .enroll_own_totp(&mut s.db, &user, params, UnixMs::now())?
            } else {
                let by = s.identity.require(
                    &mut s.db,
                    &user,
                    Permission::UserManage,
                    "user.enroll-totp",
                    UnixMs::now(),
                )?;
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
        UserCommand::Remove { username } => {
            let username = Username::parse(username)?;
            let (mut s, by) = ctx.sign_in_for(Permission::UserManage, "user.remove")?;
            let dir = ctx.dir_owned()?;
            let role =
                warden_store::keys::remove_user(&mut s, &dir, &by, &username, UnixMs::now())?;
            println!("removed {username} ({role}) and their key slot");
            let carried = warden_core::rbac::role_key_purposes(role);
            let rotatable: Vec<&str> = carried
                .iter()
                .filter(|p| **p != warden_core::keyring::Purpose::Phi)
                .map(|p| p.name())
                .collect();
            if !rotatable.is_empty() {
                eprintln!(
                    "note: {username} could have copied the keys their slot carried ({}); \
                     to take them back, rotate them: `warden keys rotate PURPOSE`",
                    rotatable.join(", ")
                );
            }
            if carried.contains(&warden_core::keyring::Purpose::Phi) {
                eprintln!(
                    "note: {username} could also have copied the `phi` key, which is not \
                     rotated (docs/records.md, \"Limits\"): PHI they could read stays readable \
                     to that copy"
                );
            }
            Ok(())
        }
        UserCommand::Unlock { username } => {
            let principal = Principal::User(Username::parse(username)?);
            let (mut s, by) = ctx.sign_in_for(Permission::UserManage, "lockout.unlock")?;
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
            let (mut s, by) = ctx.sign_in_for(Permission::UserManage, "user.policy")?;
            let policy = &s.identity.show_policy(&mut s.db, &by, UnixMs::now())?;
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

/// `warden break-glass`: see [`crate::cli::BreakGlassArgs`].
pub fn break_glass(args: &crate::cli::BreakGlassArgs, ctx: &mut Context<'_>) -> Result<()> {
    let username = Username::parse(&args.admin)?;
    if args.reason.trim().is_empty() {
        bail!("break-glass needs a reason (--reason TEXT); it is kept in the audit trail");
    }
    let password = read_new_password(args.new_password_file.as_deref(), username.as_str())?;
    let master = ctx.master()?.clone();
    let proof =
        warden_store::identity::BreakGlass::present(&master).expect("the master or recovery slot");
    let mut store = ctx.store()?;
    let dir = ctx.dir_owned()?;
    warden_store::keys::break_glass(
        &mut store,
        &dir,
        &proof,
        &master.keys,
        &username,
        &password,
        args.reason.trim(),
        UnixMs::now(),
    )?;
    println!(
        "{username}: re-enabled, unlocked, new password and key slot set, TOTP enrollment removed \
         (enroll again with `warden user enroll-totp`); recorded as breakglass.recover"
    );
    Ok(())
}
