//! Script files for `warden ota push --script FILE.yaml`: GlobalPlatform commands by name or
//! raw APDUs, parsed once into a [`PlannedScript`].
//!
//! ```yaml
//! label: inventory                  # optional, shown in results
//! redelivery: allowed               # allowed | forbidden (default: allowed only if every
//!                                   # command is a read: SELECT, GET STATUS, GET DATA)
//! targeted_application: A000000151000000   # optional: X-Admin-Targeted-Application
//! coding: definite                  # definite (AA) | indefinite (AE)
//! commands:
//!   - select: A000000151000000
//!   - get_status: applications      # isd | applications | load_files | load_files_and_modules
//!   - get_data: 9F7F
//!   - install: {load_file: A0000005591010, module: A000000559101001,
//!               application: A00000055910100102, privileges: "000000", selectable: true}
//!   - delete: A00000055910100102    # or {aid: …, related: true}
//!   - apdu: 80CA006600
//! ```

use serde::Deserialize;

use crate::admin::Redelivery;
use crate::apdu::{parse_hex, CommandApdu};
use crate::gp::{self, Aid, InstallForInstall, Occurrence, Privileges, StatusSubset};
use crate::script::{CommandScript, LengthCoding};
use warden_core::report::report;

/// Why a script file was refused; says which command and why.
#[derive(Debug, thiserror::Error)]
pub enum ScriptFileError {
    #[error("{key}: {message}")]
    Yaml { key: String, message: String },
    #[error("command {index}: {message}")]
    Command { index: usize, message: String },
    #[error("the script has no commands")]
    Empty,
    #[error("targeted_application: {0}")]
    Target(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    redelivery: Option<RawRedelivery>,
    #[serde(default)]
    targeted_application: Option<String>,
    #[serde(default)]
    coding: Option<RawCoding>,
    commands: Vec<std::collections::BTreeMap<String, serde_yaml_ng::Value>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawRedelivery {
    Allowed,
    Forbidden,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawCoding {
    Definite,
    Indefinite,
}

/// One command: a map with a single key naming it (`select: AID`, `install: {…}`).
enum RawCommand {
    Select(String),
    GetStatus(String),
    GetData(String),
    Install(RawInstall),
    Delete(RawDelete),
    Apdu(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstall {
    load_file: String,
    module: String,
    application: String,
    #[serde(default)]
    privileges: Option<String>,
    /// The whole install parameters field, hex (default `C900`).
    #[serde(default)]
    parameters: Option<String>,
    #[serde(default = "yes")]
    selectable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDelete {
    Aid(String),
    Full {
        aid: String,
        #[serde(default)]
        related: bool,
    },
}

/// A script ready to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedScript {
    pub label: Option<String>,
    pub script: CommandScript,
    pub redelivery: Redelivery,
    /// `//aid/<RID>/<PIX>` form.
    pub targeted_application: Option<String>,
}

/// Reads are safe to run twice; anything else is not.
pub fn default_redelivery(script: &CommandScript) -> Redelivery {
    let all_reads = script.apdus().all(|a| {
        matches!(
            a.ins(),
            gp::INS_SELECT | gp::INS_GET_STATUS | gp::INS_GET_DATA | 0xCB
        )
    });
    if all_reads {
        Redelivery::Allowed
    } else {
        Redelivery::Forbidden
    }
}

/// Parses a GET STATUS subset name.
pub fn parse_subset(name: &str) -> Result<StatusSubset, String> {
    match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "isd" | "issuer_security_domain" => Ok(StatusSubset::IssuerSecurityDomain),
        "applications" | "apps" => Ok(StatusSubset::Applications),
        "load_files" => Ok(StatusSubset::LoadFiles),
        "load_files_and_modules" | "modules" => Ok(StatusSubset::LoadFilesAndModules),
        other => Err(format!(
            "unknown GET STATUS subset {other:?}: isd, applications, load_files or load_files_and_modules"
        )),
    }
}

/// Parses a GET DATA tag (`9F7F`, `66`).
pub fn parse_data_tag(text: &str) -> Result<u16, String> {
    let bytes = parse_hex(text).map_err(|e| report(&e))?;
    match bytes.as_slice() {
        [a] => Ok(u16::from(*a)),
        [a, b] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err("a GET DATA tag has one or two bytes".into()),
    }
}

fn aid(field: &str, text: &str) -> Result<Aid, String> {
    Aid::from_hex(text).map_err(|e| format!("{field}: {}", report(&e)))
}

fn raw_command(
    map: std::collections::BTreeMap<String, serde_yaml_ng::Value>,
) -> Result<RawCommand, String> {
    let mut it = map.into_iter();
    let (Some((name, value)), None) = (it.next(), it.next()) else {
        return Err(
            "each command is one key: select, get_status, get_data, install, delete or apdu".into(),
        );
    };
    fn text(name: &str, v: serde_yaml_ng::Value) -> Result<String, String> {
        match v {
            serde_yaml_ng::Value::String(s) => Ok(s),
            serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
            _ => Err(format!("{name}: a hex string is expected")),
        }
    }
    Ok(match name.as_str() {
        "select" => RawCommand::Select(text(&name, value)?),
        "get_status" => RawCommand::GetStatus(text(&name, value)?),
        "get_data" => RawCommand::GetData(text(&name, value)?),
        "apdu" => RawCommand::Apdu(text(&name, value)?),
        "install" => RawCommand::Install(
            serde_yaml_ng::from_value(value).map_err(|e| format!("install: {e}"))?,
        ),
        "delete" => RawCommand::Delete(
            serde_yaml_ng::from_value(value).map_err(|e| format!("delete: {e}"))?,
        ),
        other => {
            return Err(format!(
                "unknown command {other:?}: select, get_status, get_data, install, delete or apdu"
            ))
        }
    })
}

fn command(raw: RawCommand) -> Result<CommandApdu, String> {
    Ok(match raw {
        RawCommand::Select(a) => gp::select_by_aid(&aid("select", &a)?),
        RawCommand::GetStatus(s) => gp::get_status(parse_subset(&s)?, Occurrence::FirstOrAll, &[])
            .map_err(|e| report(&e))?,
        RawCommand::GetData(t) => gp::get_data(parse_data_tag(&t)?),
        RawCommand::Install(i) => {
            let mut inst = InstallForInstall::new(
                aid("load_file", &i.load_file)?,
                aid("module", &i.module)?,
                aid("application", &i.application)?,
            );
            if let Some(p) = i.privileges {
                let bytes = parse_hex(&p).map_err(|e| format!("privileges: {e}"))?;
                inst.privileges =
                    Privileges::from_bytes(&bytes).ok_or("privileges: 1 or 3 bytes expected")?;
            }
            if let Some(p) = i.parameters {
                inst.parameters = parse_hex(&p).map_err(|e| format!("parameters: {e}"))?;
            }
            inst.make_selectable = i.selectable;
            inst.to_apdu().map_err(|e| report(&e))?
        }
        RawCommand::Delete(RawDelete::Aid(a)) => gp::delete(&aid("delete", &a)?, false),
        RawCommand::Delete(RawDelete::Full { aid: a, related }) => {
            gp::delete(&aid("delete", &a)?, related)
        }
        RawCommand::Apdu(hex) => CommandApdu::from_hex(&hex).map_err(|e| report(&e))?,
    })
}

/// Parses a script file's text.
pub fn parse(text: &str) -> Result<PlannedScript, ScriptFileError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let (key, message) = crate::config::yaml_error(&e);
        ScriptFileError::Yaml { key, message }
    })?;
    if raw.commands.is_empty() {
        return Err(ScriptFileError::Empty);
    }
    let mut apdus = Vec::with_capacity(raw.commands.len());
    for (i, c) in raw.commands.into_iter().enumerate() {
        apdus.push(raw_command(c).and_then(command).map_err(|message| {
            ScriptFileError::Command {
                index: i + 1,
                message,
            }
        })?);
    }
    let mut script = CommandScript::new(apdus);
    if let Some(RawCoding::Indefinite) = raw.coding {
        script = script.with_coding(LengthCoding::Indefinite);
    }
    let redelivery = match raw.redelivery {
        Some(RawRedelivery::Allowed) => Redelivery::Allowed,
        Some(RawRedelivery::Forbidden) => Redelivery::Forbidden,
        None => default_redelivery(&script),
    };
    let targeted_application = raw
        .targeted_application
        .map(|t| {
            Aid::from_hex(&t)
                .or_else(|_| Aid::parse_targeted_application(&t))
                .map(|a| a.to_targeted_application())
                .map_err(|e| ScriptFileError::Target(report(&e)))
        })
        .transpose()?;
    Ok(PlannedScript {
        label: raw.label,
        script,
        redelivery,
        targeted_application,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_kind() {
        let p = parse(
            "label: inv\ncommands:\n  - select: A000000151000000\n  - get_status: applications\n  - get_data: 9F7F\n",
        )
        .unwrap();
        assert_eq!(p.script.command_count(), 3);
        assert_eq!(p.redelivery, Redelivery::Allowed);
        let p = parse(
            "targeted_application: A000000151000000\ncoding: indefinite\ncommands:\n  - install: {load_file: A0000005591010, module: A000000559101001, application: A00000055910100102, privileges: \"000000\"}\n  - delete: {aid: A00000055910100102, related: true}\n  - delete: A00000055910100102\n  - apdu: 80CA006600\n",
        )
        .unwrap();
        assert_eq!(p.redelivery, Redelivery::Forbidden);
        assert_eq!(
            p.targeted_application.as_deref(),
            Some("//aid/A000000151/000000")
        );
        assert_eq!(p.script.coding, LengthCoding::Indefinite);
        assert_eq!(p.script.apdus().nth(1).unwrap().p2(), 0x80);
    }

    #[test]
    fn errors_say_where() {
        let e = parse("commands:\n  - select: A0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("command 1: select"), "{e}");
        let e = parse("commands:\n  - get_status: everything\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown GET STATUS subset"), "{e}");
        let e = parse("commands:\n  - sel: A000000151000000\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("command 1") && e.contains("\"sel\""), "{e}");
        assert!(matches!(
            parse("commands: []\n"),
            Err(ScriptFileError::Empty)
        ));
        let e = parse("redelivery: maybe\ncommands:\n  - apdu: 00A4040000\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("redelivery"), "{e}");
    }
}
