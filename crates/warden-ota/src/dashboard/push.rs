//! A push from the dashboard, parsed at the edge and without I/O: which cards (a list, or every
//! known card whose identity starts with a prefix), and the script — C-APDUs in hex, one per
//! line, or the YAML script format of [`crate::scriptfile`] — checked before anything is
//! queued, with errors that say which line or command is wrong. Also the GlobalPlatform
//! command templates the page offers, built by [`crate::gp`] so they are what the CLI builds.

use serde::{Deserialize, Serialize};
use warden_core::report::report;
use warden_store::ota as db;

use crate::admin::Redelivery;
use crate::apdu::CommandApdu;
use crate::gp::{self, data_object, Aid, InstallForInstall, Occurrence, StatusSubset};
use crate::script::CommandScript;
use crate::scriptfile::{self, PlannedScript, ScriptFileError};

/// The most cards one push may address.
pub const MAX_CARDS: usize = 1000;
/// The most script text accepted.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// The most C-APDUs in one script.
pub const MAX_COMMANDS: usize = 255;

/// The request body of `POST /api/push`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// Card identities separated by new lines or commas, or `prefix:TEXT`.
    pub cards: String,
    pub format: ScriptFormat,
    pub script: String,
    #[serde(default)]
    pub label: Option<String>,
    /// Check only: answer what would be queued, queue nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptFormat {
    Hex,
    Yaml,
}

/// Which cards a push is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    Cards(Vec<String>),
    Prefix(String),
}

/// Why a push was refused before anything was queued (HTTP 422, the message shown as is).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("name at least one card (one per line), or prefix:TEXT for every card whose identity starts with TEXT")]
    NoCards,
    #[error("card {card:?}: {reason}")]
    BadCard { card: String, reason: String },
    #[error("card {0:?} is not known to this server (no key, script or session)")]
    UnknownCard(String),
    #[error("no known card's identity starts with {0:?}")]
    NoMatch(String),
    #[error("{0} cards: one push addresses at most {MAX_CARDS}")]
    TooManyCards(usize),
    #[error("the script is empty: give one C-APDU in hex per line")]
    NoCommands,
    #[error("line {line}: {reason}")]
    Hex { line: usize, reason: String },
    #[error("{0} commands: a script holds at most {MAX_COMMANDS}")]
    TooManyCommands(usize),
    #[error("the script is larger than {MAX_SCRIPT_BYTES} bytes")]
    TooLarge,
    #[error("label: at most 100 printable characters")]
    BadLabel,
    #[error("YAML script")]
    Yaml(#[from] ScriptFileError),
}

/// Parses the cards field.
pub fn parse_targets(text: &str) -> Result<Targets, PushError> {
    let text = text.trim();
    if let Some(prefix) = text.strip_prefix("prefix:") {
        let prefix = prefix.trim();
        if prefix.is_empty() {
            return Err(PushError::NoCards);
        }
        return Ok(Targets::Prefix(prefix.to_string()));
    }
    let mut cards: Vec<String> = Vec::new();
    for card in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        db::check_identity(card).map_err(|e| PushError::BadCard {
            card: card.chars().take(80).collect(),
            reason: report(&e),
        })?;
        if !cards.iter().any(|c| c == card) {
            cards.push(card.to_string());
        }
        if cards.len() > MAX_CARDS {
            return Err(PushError::TooManyCards(cards.len()));
        }
    }
    if cards.is_empty() {
        return Err(PushError::NoCards);
    }
    Ok(Targets::Cards(cards))
}

impl Targets {
    /// The cards, checked against the identities the server knows (sorted).
    pub fn resolve(&self, known: &[String]) -> Result<Vec<String>, PushError> {
        match self {
            Self::Cards(cards) => {
                for c in cards {
                    if !known.iter().any(|k| k == c) {
                        return Err(PushError::UnknownCard(c.chars().take(80).collect()));
                    }
                }
                Ok(cards.clone())
            }
            Self::Prefix(prefix) => {
                let cards: Vec<String> = known
                    .iter()
                    .filter(|k| k.starts_with(prefix.as_str()))
                    .cloned()
                    .collect();
                match cards.len() {
                    0 => Err(PushError::NoMatch(prefix.chars().take(80).collect())),
                    n if n > MAX_CARDS => Err(PushError::TooManyCards(n)),
                    _ => Ok(cards),
                }
            }
        }
    }
}

/// Parses the script field into a script ready to queue.
pub fn parse_script(
    format: ScriptFormat,
    text: &str,
    label: Option<&str>,
) -> Result<PlannedScript, PushError> {
    if text.len() > MAX_SCRIPT_BYTES {
        return Err(PushError::TooLarge);
    }
    let label = match label.map(str::trim).filter(|l| !l.is_empty()) {
        Some(l) if l.chars().count() > 100 || l.chars().any(char::is_control) => {
            return Err(PushError::BadLabel)
        }
        l => l.map(str::to_string),
    };
    let mut planned = match format {
        ScriptFormat::Yaml => scriptfile::parse(text)?,
        ScriptFormat::Hex => {
            let mut apdus = Vec::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                apdus.push(CommandApdu::from_hex(line).map_err(|e| PushError::Hex {
                    line: i + 1,
                    reason: report(&e),
                })?);
            }
            if apdus.is_empty() {
                return Err(PushError::NoCommands);
            }
            let script = CommandScript::new(apdus);
            PlannedScript {
                label: None,
                redelivery: scriptfile::default_redelivery(&script),
                script,
                targeted_application: None,
            }
        }
    };
    if planned.script.command_count() > MAX_COMMANDS {
        return Err(PushError::TooManyCommands(planned.script.command_count()));
    }
    if label.is_some() {
        planned.label = label;
    }
    Ok(planned)
}

/// What a checked push would queue, shown before (dry run) and after queueing.
#[derive(Debug, Clone, Serialize)]
pub struct PushPreview {
    pub cards: Vec<String>,
    pub commands: Vec<String>,
    pub redelivery: &'static str,
    pub label: Option<String>,
}

impl PushPreview {
    pub fn new(cards: &[String], planned: &PlannedScript) -> Self {
        Self {
            cards: cards.to_vec(),
            commands: planned.script.apdus().map(|a| a.to_hex()).collect(),
            redelivery: match planned.redelivery {
                Redelivery::Allowed => "allowed",
                Redelivery::Forbidden => "forbidden",
            },
            label: planned.label.clone(),
        }
    }
}

/// A GlobalPlatform command the page offers, in both script forms.
#[derive(Debug, Clone, Serialize)]
pub struct Template {
    pub name: &'static str,
    pub hex: String,
    pub yaml: String,
}

/// The ISD (GlobalPlatform's default AID), and the example load file, module and application
/// of the simulator's card (`crate::simulator`), so the templates run there as they are.
const ISD: &str = "A000000151000000";
const LOAD_FILE: &str = "A0000005591010";
const MODULE: &str = "A000000559101001";
const APPLICATION: &str = "A00000055910100102";

/// The templates: SELECT ISD, GET STATUS (each subset), GET DATA (CPLC, card data, key
/// information, IIN, CIN), INSTALL [for install and make selectable], DELETE.
pub fn templates() -> Vec<Template> {
    let aid = |hex: &str| Aid::from_hex(hex).expect("built-in AID");
    let one = |name, apdu: CommandApdu, yaml: String| Template {
        name,
        hex: apdu.to_hex(),
        yaml: format!("label: {name}\ncommands:\n  - {yaml}\n"),
    };
    let status = |name, subset: StatusSubset, key: &str| {
        one(
            name,
            gp::get_status(subset, Occurrence::FirstOrAll, &[]).expect("empty prefix"),
            format!("get_status: {key}"),
        )
    };
    let data = |name, tag: u16| {
        one(
            name,
            gp::get_data(tag),
            // Quoted: YAML would read 0066 or 00E0 as a number.
            format!("get_data: \"{}\"", crate::apdu::to_hex(&tag.to_be_bytes())),
        )
    };
    let install = InstallForInstall::new(aid(LOAD_FILE), aid(MODULE), aid(APPLICATION));
    vec![
        one(
            "SELECT ISD",
            gp::select_by_aid(&aid(ISD)),
            format!("select: {ISD}"),
        ),
        status(
            "GET STATUS applications",
            StatusSubset::Applications,
            "applications",
        ),
        status("GET STATUS ISD", StatusSubset::IssuerSecurityDomain, "isd"),
        status(
            "GET STATUS load files",
            StatusSubset::LoadFiles,
            "load_files",
        ),
        status(
            "GET STATUS load files and modules",
            StatusSubset::LoadFilesAndModules,
            "load_files_and_modules",
        ),
        data("GET DATA CPLC", data_object::CPLC),
        data("GET DATA card data", data_object::CARD_DATA),
        data("GET DATA key information", data_object::KEY_INFORMATION),
        data("GET DATA IIN", data_object::IIN),
        data("GET DATA CIN", data_object::CIN),
        one(
            "INSTALL [for install and make selectable]",
            install.to_apdu().expect("built-in AIDs fit"),
            format!(
                "install: {{load_file: {LOAD_FILE}, module: {MODULE}, application: {APPLICATION}}}"
            ),
        ),
        one(
            "DELETE application",
            gp::delete(&aid(APPLICATION), false),
            format!("delete: {APPLICATION}"),
        ),
        one(
            "DELETE load file and its applications",
            gp::delete(&aid(LOAD_FILE), true),
            format!("delete: {{aid: {LOAD_FILE}, related: true}}"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_lists_or_a_prefix() {
        assert_eq!(
            parse_targets("card-1\n card-2 ,card-1\n\n").unwrap(),
            Targets::Cards(vec!["card-1".into(), "card-2".into()])
        );
        assert_eq!(
            parse_targets("prefix: UICC_").unwrap(),
            Targets::Prefix("UICC_".into())
        );
        assert!(matches!(parse_targets(" \n"), Err(PushError::NoCards)));
        assert!(matches!(parse_targets("prefix:"), Err(PushError::NoCards)));
        assert!(matches!(
            parse_targets("bad\u{7}card"),
            Err(PushError::BadCard { .. })
        ));
        let known = vec!["UICC_1".to_string(), "UICC_2".into(), "other".into()];
        assert_eq!(
            Targets::Prefix("UICC_".into()).resolve(&known).unwrap(),
            vec!["UICC_1", "UICC_2"]
        );
        assert!(matches!(
            Targets::Prefix("X".into()).resolve(&known),
            Err(PushError::NoMatch(_))
        ));
        let e = Targets::Cards(vec!["<script>".into()])
            .resolve(&known)
            .unwrap_err();
        assert!(matches!(e, PushError::UnknownCard(_)));
    }

    #[test]
    fn hex_scripts_say_which_line_is_wrong() {
        let p = parse_script(
            ScriptFormat::Hex,
            "# inventory\n00A4040008A000000151000000\n\n80 F2 40 02 02 4F 00 00  # GET STATUS\n",
            Some("inv"),
        )
        .unwrap();
        assert_eq!(p.script.command_count(), 2);
        assert_eq!(p.label.as_deref(), Some("inv"));
        assert_eq!(p.redelivery, Redelivery::Allowed);
        let e = parse_script(ScriptFormat::Hex, "00A40400\n00A4Z\n", None).unwrap_err();
        assert!(e.to_string().starts_with("line 2: "), "{e}");
        assert!(matches!(
            parse_script(ScriptFormat::Hex, "# nothing\n", None),
            Err(PushError::NoCommands)
        ));
        let e = parse_script(ScriptFormat::Yaml, "commands:\n  - select: A0\n", None).unwrap_err();
        let message = report(&e);
        assert_eq!(message.matches("command 1").count(), 1, "{message}");
        assert!(matches!(
            parse_script(ScriptFormat::Hex, &"00A40400\n".repeat(256), None),
            Err(PushError::TooManyCommands(256))
        ));
    }

    #[test]
    fn every_template_parses_in_both_forms_to_the_same_command() {
        for t in templates() {
            let from_hex = parse_script(ScriptFormat::Hex, &t.hex, None).unwrap();
            let from_yaml = parse_script(ScriptFormat::Yaml, &t.yaml, None).unwrap();
            assert_eq!(
                from_hex.script.encode(),
                from_yaml.script.encode(),
                "{}",
                t.name
            );
        }
    }
}
