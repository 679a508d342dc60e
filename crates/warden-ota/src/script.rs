//! The ETSI TS 102 226 §5.2 "expanded" remote command and response format: the bodies of
//! GlobalPlatform Amendment B requests and responses.
//!
//! A command script is a Command Scripting template — tag `AA` with a definite length, or `AE`
//! with the indefinite length `80 … 00 00` — holding C-APDU TLVs (`22`) and the optional
//! Immediate Action (`81`), Error Action (`82`) and Script Chaining (`83`) TLVs. The card answers
//! with a Response Scripting template — `AB` (definite) or `AF` (indefinite) — holding the number
//! of executed command TLVs (`80`), R-APDU TLVs (`23`), and possibly Bad Format (`90`),
//! Immediate Action Response (`81`) or Script Chaining Response (`83`) TLVs.
//!
//! Items keep their order and their values, so decoding and encoding round-trip exactly. The
//! `AB` form must start with the executed-commands count; the `AF` form may carry it anywhere or
//! not at all (a card trace in the field answers `AF 80 23 02 6A 88 00 00`, with no count).

use crate::apdu::{ApduError, CommandApdu, ResponseApdu, ResponseError};
use crate::tlv::{self, Length, RawTlv, Reader, Tag, TlvError};

/// `AA`: Command Scripting template, definite length coding (TS 101 220 table 7.18).
pub const TAG_COMMAND_SCRIPT: Tag = Tag::known(0xAA);
/// `AE`: Command Scripting template, indefinite length coding.
pub const TAG_COMMAND_SCRIPT_INDEFINITE: Tag = Tag::known(0xAE);
/// `AB`: Response Scripting template, definite length coding.
pub const TAG_RESPONSE_SCRIPT: Tag = Tag::known(0xAB);
/// `AF`: Response Scripting template, indefinite length coding.
pub const TAG_RESPONSE_SCRIPT_INDEFINITE: Tag = Tag::known(0xAF);
/// `22`: C-APDU (COMPREHENSION-TLV tag with CR = 0, TS 102 223 §8.35).
pub const TAG_C_APDU: Tag = Tag::known(0x22);
/// `23`: R-APDU (TS 102 223 §8.36).
pub const TAG_R_APDU: Tag = Tag::known(0x23);
/// `81`: Immediate Action in a command script, Immediate Action Response in a response script.
pub const TAG_IMMEDIATE_ACTION: Tag = Tag::known(0x81);
/// `82`: Error Action.
pub const TAG_ERROR_ACTION: Tag = Tag::known(0x82);
/// `83`: Script Chaining in a command script, Script Chaining Response in a response script.
pub const TAG_SCRIPT_CHAINING: Tag = Tag::known(0x83);
/// `80`: number of executed command TLV objects.
pub const TAG_EXECUTED_COUNT: Tag = Tag::known(0x80);
/// `90`: Bad Format.
pub const TAG_BAD_FORMAT: Tag = Tag::known(0x90);

/// Definite (`AA`/`AB`) or indefinite (`AE`/`AF`) length coding of the outer template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LengthCoding {
    Definite,
    Indefinite,
}

impl std::fmt::Display for LengthCoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Definite => "definite",
            Self::Indefinite => "indefinite",
        })
    }
}

/// Bounds on a script body, on top of the BER-TLV checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Largest body accepted, in bytes.
    pub max_size: usize,
    /// Most TLVs inside one template.
    pub max_items: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            max_size: 1 << 20,
            max_items: 4096,
        }
    }
}

/// Why a script body was refused. Offsets count bytes from the start of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error(transparent)]
    Tlv(#[from] TlvError),
    #[error("empty body: a scripting template was expected")]
    Empty,
    #[error("body of {size} bytes exceeds the script limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("more than {limit} TLVs in the template (at offset {offset})")]
    TooManyItems { offset: usize, limit: usize },
    #[error("unexpected tag {tag} at offset {offset}: expected {expected}")]
    UnexpectedTag {
        offset: usize,
        tag: Tag,
        expected: &'static str,
    },
    #[error("template {tag} at offset {offset} must use {expected} length coding")]
    WrongLengthCoding {
        offset: usize,
        tag: Tag,
        expected: LengthCoding,
    },
    #[error("C-APDU at offset {offset}")]
    BadCommandApdu { offset: usize, source: ApduError },
    #[error("R-APDU at offset {offset}")]
    BadResponseApdu {
        offset: usize,
        source: ResponseError,
    },
    #[error("definite-length response script does not start with the number of executed commands (tag 80) at offset {offset}")]
    MissingExecutedCount { offset: usize },
    #[error("second number-of-executed-commands TLV at offset {offset}")]
    DuplicateExecutedCount { offset: usize },
    #[error("number of executed commands at offset {offset} has {len} byte(s); 1 to 4 expected")]
    BadExecutedCount { offset: usize, len: usize },
    #[error("bad-format TLV at offset {offset} has {len} byte(s); exactly 1 expected")]
    BadFormatLength { offset: usize, len: usize },
}

/// One TLV of a command script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandItem {
    /// `22`: a command for the card to run.
    Apdu(CommandApdu),
    /// `81`: Immediate Action (TS 102 226 §5.2.1.2), value kept as sent.
    ImmediateAction(Vec<u8>),
    /// `82`: Error Action (TS 102 226 §5.2.1.3), value kept as sent.
    ErrorAction(Vec<u8>),
    /// `83`: Script Chaining (TS 102 226 §5.2.1.4), value kept as sent.
    ScriptChaining(Vec<u8>),
}

/// A Command Scripting template: what the server sends the card in one HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandScript {
    pub coding: LengthCoding,
    pub items: Vec<CommandItem>,
}

impl CommandScript {
    /// A definite-length (`AA`) script of the given commands.
    pub fn new(apdus: impl IntoIterator<Item = CommandApdu>) -> Self {
        Self {
            coding: LengthCoding::Definite,
            items: apdus.into_iter().map(CommandItem::Apdu).collect(),
        }
    }

    pub fn with_coding(mut self, coding: LengthCoding) -> Self {
        self.coding = coding;
        self
    }

    /// The C-APDUs in order.
    pub fn apdus(&self) -> impl Iterator<Item = &CommandApdu> {
        self.items.iter().filter_map(|i| match i {
            CommandItem::Apdu(a) => Some(a),
            _ => None,
        })
    }

    pub fn command_count(&self) -> usize {
        self.apdus().count()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut content = Vec::new();
        for item in &self.items {
            match item {
                CommandItem::Apdu(a) => tlv::write_tlv(&mut content, TAG_C_APDU, &a.to_bytes()),
                CommandItem::ImmediateAction(v) => {
                    tlv::write_tlv(&mut content, TAG_IMMEDIATE_ACTION, v)
                }
                CommandItem::ErrorAction(v) => tlv::write_tlv(&mut content, TAG_ERROR_ACTION, v),
                CommandItem::ScriptChaining(v) => {
                    tlv::write_tlv(&mut content, TAG_SCRIPT_CHAINING, v)
                }
            }
        }
        wrap(
            self.coding,
            TAG_COMMAND_SCRIPT,
            TAG_COMMAND_SCRIPT_INDEFINITE,
            content,
        )
    }

    pub fn decode(body: &[u8]) -> Result<Self, ScriptError> {
        Self::decode_with_limits(body, &ScriptLimits::default())
    }

    pub fn decode_with_limits(body: &[u8], limits: &ScriptLimits) -> Result<Self, ScriptError> {
        let mut items = Vec::new();
        let coding = read_template(
            body,
            limits,
            TAG_COMMAND_SCRIPT,
            TAG_COMMAND_SCRIPT_INDEFINITE,
            "a Command Scripting template (AA or AE)",
            |t| {
                let item = match t.tag {
                    TAG_C_APDU => CommandItem::Apdu(CommandApdu::parse(t.value).map_err(
                        |source| ScriptError::BadCommandApdu {
                            offset: t.value_offset,
                            source,
                        },
                    )?),
                    TAG_IMMEDIATE_ACTION => CommandItem::ImmediateAction(t.value.to_vec()),
                    TAG_ERROR_ACTION => CommandItem::ErrorAction(t.value.to_vec()),
                    TAG_SCRIPT_CHAINING => CommandItem::ScriptChaining(t.value.to_vec()),
                    tag => {
                        return Err(ScriptError::UnexpectedTag {
                            offset: t.offset,
                            tag,
                            expected: "C-APDU (22), Immediate Action (81), Error Action (82) or Script Chaining (83)",
                        })
                    }
                };
                items.push(item);
                Ok(())
            },
        )?;
        Ok(Self { coding, items })
    }
}

/// The number of executed command TLVs, as an unsigned big-endian integer of 1 to 4 bytes.
///
/// Encoders use the fewest bytes; a decoded count keeps the width it was sent with (some
/// encoders write a BER INTEGER, `00 C8` for 200), so it encodes back to the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExecutedCount {
    value: u32,
    width: u8,
}

impl ExecutedCount {
    pub fn new(value: u32) -> Self {
        let width = (4 - value.leading_zeros() / 8).max(1) as u8;
        Self { value, width }
    }

    pub fn value(self) -> u32 {
        self.value
    }

    fn to_bytes(self) -> Vec<u8> {
        self.value.to_be_bytes()[4 - usize::from(self.width)..].to_vec()
    }

    fn parse(t: &RawTlv<'_>) -> Result<Self, ScriptError> {
        let len = t.value.len();
        if !(1..=4).contains(&len) {
            return Err(ScriptError::BadExecutedCount {
                offset: t.offset,
                len,
            });
        }
        let value = t.value.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b));
        Ok(Self {
            value,
            width: len as u8,
        })
    }
}

/// The error type of a Bad Format TLV (`90`, TS 102 226 §5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BadFormat(pub u8);

impl BadFormat {
    pub const UNKNOWN_TAG: Self = Self(0x01);
    pub const WRONG_LENGTH: Self = Self(0x02);
    pub const LENGTH_NOT_FOUND: Self = Self(0x03);

    pub fn describe(self) -> &'static str {
        match self.0 {
            0x01 => "unknown tag found",
            0x02 => "wrong length found",
            0x03 => "length not found",
            _ => "reserved error type",
        }
    }
}

/// An error TLV in a response script (TS 102 226 §5.2.2): the card could not run the command
/// script as sent. Bad Format (`90`, table 5.12), Immediate Action Response (`81`, table 5.14)
/// and Script Chaining Response (`83`, table 5.16) each carry a one-byte error type; a value of
/// another length is kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScriptFault {
    BadFormat(BadFormat),
    ImmediateActionResponse(Vec<u8>),
    ScriptChainingResponse(Vec<u8>),
}

impl ScriptFault {
    /// The TLV's tag.
    pub fn tag(&self) -> u8 {
        match self {
            Self::BadFormat(_) => TAG_BAD_FORMAT.value() as u8,
            Self::ImmediateActionResponse(_) => TAG_IMMEDIATE_ACTION.value() as u8,
            Self::ScriptChainingResponse(_) => TAG_SCRIPT_CHAINING.value() as u8,
        }
    }

    /// The script's result as it is stored: `bad-format`, `immediate-action-error`,
    /// `script-chaining-error`.
    pub fn result_name(&self) -> &'static str {
        match self {
            Self::BadFormat(_) => "bad-format",
            Self::ImmediateActionResponse(_) => "immediate-action-error",
            Self::ScriptChainingResponse(_) => "script-chaining-error",
        }
    }

    /// The error type byte, when the value is the one byte the tables define.
    pub fn code(&self) -> Option<u8> {
        match self {
            Self::BadFormat(b) => Some(b.0),
            Self::ImmediateActionResponse(v) | Self::ScriptChainingResponse(v) => match v[..] {
                [code] => Some(code),
                _ => None,
            },
        }
    }

    /// What the error type means.
    pub fn describe(&self) -> &'static str {
        match (self, self.code()) {
            (Self::BadFormat(b), _) => b.describe(),
            (Self::ImmediateActionResponse(_), Some(0x01)) => "suspension error",
            (Self::ScriptChainingResponse(_), Some(0x01)) => {
                "script chaining: no previous script to chain to"
            }
            (Self::ScriptChainingResponse(_), Some(0x02)) => "script chaining not supported",
            (Self::ScriptChainingResponse(_), Some(0x03)) => "unable to process script chaining",
            (_, Some(_)) => "reserved error type",
            (_, None) => "error value of unexpected length",
        }
    }
}

/// One TLV of a response script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseItem {
    /// `80`: how many command TLVs the card executed.
    ExecutedCount(ExecutedCount),
    /// `23`: the response to one C-APDU.
    Response(ResponseApdu),
    /// `90`: the card could not parse the command script.
    BadFormat(BadFormat),
    /// `81`: Immediate Action Response, value kept as sent.
    ImmediateActionResponse(Vec<u8>),
    /// `83`: Script Chaining Response, value kept as sent.
    ScriptChainingResponse(Vec<u8>),
}

/// A Response Scripting template: what the card POSTs back after running a command script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseScript {
    coding: LengthCoding,
    items: Vec<ResponseItem>,
}

impl ResponseScript {
    /// Checks the structural rules: at most one count; in the definite form, the count first.
    pub fn new(coding: LengthCoding, items: Vec<ResponseItem>) -> Result<Self, ScriptError> {
        let mut seen_count = false;
        for (i, item) in items.iter().enumerate() {
            if let ResponseItem::ExecutedCount(_) = item {
                if seen_count {
                    return Err(ScriptError::DuplicateExecutedCount { offset: 0 });
                }
                seen_count = true;
            } else if i == 0 && coding == LengthCoding::Definite {
                return Err(ScriptError::MissingExecutedCount { offset: 0 });
            }
        }
        if coding == LengthCoding::Definite && items.is_empty() {
            return Err(ScriptError::MissingExecutedCount { offset: 0 });
        }
        Ok(Self { coding, items })
    }

    /// A definite-length (`AB`) response: the count followed by R-APDUs.
    pub fn with_responses(
        executed: u32,
        responses: impl IntoIterator<Item = ResponseApdu>,
    ) -> Self {
        let mut items = vec![ResponseItem::ExecutedCount(ExecutedCount::new(executed))];
        items.extend(responses.into_iter().map(ResponseItem::Response));
        Self {
            coding: LengthCoding::Definite,
            items,
        }
    }

    pub fn coding(&self) -> LengthCoding {
        self.coding
    }

    pub fn items(&self) -> &[ResponseItem] {
        &self.items
    }

    pub fn executed_count(&self) -> Option<u32> {
        self.items.iter().find_map(|i| match i {
            ResponseItem::ExecutedCount(c) => Some(c.value()),
            _ => None,
        })
    }

    /// The R-APDUs in order.
    pub fn responses(&self) -> impl Iterator<Item = &ResponseApdu> {
        self.items.iter().filter_map(|i| match i {
            ResponseItem::Response(r) => Some(r),
            _ => None,
        })
    }

    pub fn last_response(&self) -> Option<&ResponseApdu> {
        self.responses().last()
    }

    pub fn bad_format(&self) -> Option<BadFormat> {
        self.items.iter().find_map(|i| match i {
            ResponseItem::BadFormat(b) => Some(*b),
            _ => None,
        })
    }

    /// The first error TLV (`90`, `81` or `83`), if the card reported one.
    pub fn fault(&self) -> Option<ScriptFault> {
        self.items.iter().find_map(|i| match i {
            ResponseItem::BadFormat(b) => Some(ScriptFault::BadFormat(*b)),
            ResponseItem::ImmediateActionResponse(v) => {
                Some(ScriptFault::ImmediateActionResponse(v.clone()))
            }
            ResponseItem::ScriptChainingResponse(v) => {
                Some(ScriptFault::ScriptChainingResponse(v.clone()))
            }
            _ => None,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut content = Vec::new();
        for item in &self.items {
            match item {
                ResponseItem::ExecutedCount(c) => {
                    tlv::write_tlv(&mut content, TAG_EXECUTED_COUNT, &c.to_bytes())
                }
                ResponseItem::Response(r) => {
                    tlv::write_tlv(&mut content, TAG_R_APDU, &r.to_bytes())
                }
                ResponseItem::BadFormat(b) => tlv::write_tlv(&mut content, TAG_BAD_FORMAT, &[b.0]),
                ResponseItem::ImmediateActionResponse(v) => {
                    tlv::write_tlv(&mut content, TAG_IMMEDIATE_ACTION, v)
                }
                ResponseItem::ScriptChainingResponse(v) => {
                    tlv::write_tlv(&mut content, TAG_SCRIPT_CHAINING, v)
                }
            }
        }
        wrap(
            self.coding,
            TAG_RESPONSE_SCRIPT,
            TAG_RESPONSE_SCRIPT_INDEFINITE,
            content,
        )
    }

    pub fn decode(body: &[u8]) -> Result<Self, ScriptError> {
        Self::decode_with_limits(body, &ScriptLimits::default())
    }

    pub fn decode_with_limits(body: &[u8], limits: &ScriptLimits) -> Result<Self, ScriptError> {
        let mut items = Vec::new();
        let mut count_seen = false;
        let mut definite_first_checked = false;
        let mut is_definite = None;
        let coding = read_template(
            body,
            limits,
            TAG_RESPONSE_SCRIPT,
            TAG_RESPONSE_SCRIPT_INDEFINITE,
            "a Response Scripting template (AB or AF)",
            |t| {
                let definite = *is_definite.get_or_insert(body.first() == Some(&0xAB));
                let item = match t.tag {
                    TAG_EXECUTED_COUNT => {
                        if count_seen {
                            return Err(ScriptError::DuplicateExecutedCount { offset: t.offset });
                        }
                        count_seen = true;
                        ResponseItem::ExecutedCount(ExecutedCount::parse(&t)?)
                    }
                    TAG_R_APDU => ResponseItem::Response(ResponseApdu::parse(t.value).map_err(
                        |source| ScriptError::BadResponseApdu {
                            offset: t.value_offset,
                            source,
                        },
                    )?),
                    TAG_BAD_FORMAT => {
                        if t.value.len() != 1 {
                            return Err(ScriptError::BadFormatLength {
                                offset: t.offset,
                                len: t.value.len(),
                            });
                        }
                        ResponseItem::BadFormat(BadFormat(t.value[0]))
                    }
                    TAG_IMMEDIATE_ACTION => ResponseItem::ImmediateActionResponse(t.value.to_vec()),
                    TAG_SCRIPT_CHAINING => ResponseItem::ScriptChainingResponse(t.value.to_vec()),
                    tag => {
                        return Err(ScriptError::UnexpectedTag {
                            offset: t.offset,
                            tag,
                            expected: "executed count (80), R-APDU (23), Bad Format (90), Immediate Action Response (81) or Script Chaining Response (83)",
                        })
                    }
                };
                if definite && !definite_first_checked {
                    definite_first_checked = true;
                    if !matches!(item, ResponseItem::ExecutedCount(_)) {
                        return Err(ScriptError::MissingExecutedCount { offset: t.offset });
                    }
                }
                items.push(item);
                Ok(())
            },
        )?;
        if coding == LengthCoding::Definite && items.is_empty() {
            // `AB 00`: the count is mandatory. Point just past the template header.
            return Err(ScriptError::MissingExecutedCount { offset: body.len() });
        }
        Ok(Self { coding, items })
    }
}

fn wrap(coding: LengthCoding, definite: Tag, indefinite: Tag, content: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 8);
    match coding {
        LengthCoding::Definite => tlv::write_tlv(&mut out, definite, &content),
        LengthCoding::Indefinite => {
            out.extend_from_slice(&indefinite.to_bytes());
            out.push(0x80);
            out.extend_from_slice(&content);
            out.extend_from_slice(&[0, 0]);
        }
    }
    out
}

/// Opens the outer template, checks its tag and length coding, and hands each inner TLV (all of
/// definite length) to `item`. Returns the coding used.
fn read_template<'a>(
    body: &'a [u8],
    limits: &ScriptLimits,
    definite: Tag,
    indefinite: Tag,
    expected: &'static str,
    mut item: impl FnMut(RawTlv<'a>) -> Result<(), ScriptError>,
) -> Result<LengthCoding, ScriptError> {
    if body.is_empty() {
        return Err(ScriptError::Empty);
    }
    if body.len() > limits.max_size {
        return Err(ScriptError::TooLarge {
            size: body.len(),
            limit: limits.max_size,
        });
    }
    let mut outer = Reader::new(body);
    let header = outer.read_header()?;
    let coding = if header.tag == definite {
        LengthCoding::Definite
    } else if header.tag == indefinite {
        LengthCoding::Indefinite
    } else {
        return Err(ScriptError::UnexpectedTag {
            offset: header.offset,
            tag: header.tag,
            expected,
        });
    };
    let mut count = 0usize;
    let mut counted = |offset: usize| {
        count += 1;
        if count > limits.max_items {
            Err(ScriptError::TooManyItems {
                offset,
                limit: limits.max_items,
            })
        } else {
            Ok(())
        }
    };
    match (coding, header.length) {
        (LengthCoding::Definite, Length::Definite(n)) => {
            let value = outer.read_value(n)?;
            let mut inner = Reader::with_base(value, header.value_offset);
            while !inner.is_empty() {
                counted(inner.offset())?;
                item(inner.read_definite()?)?;
            }
        }
        (LengthCoding::Indefinite, Length::Indefinite) => loop {
            if outer.is_empty() || (outer.remaining() == 1 && body[outer.offset()] == 0) {
                return Err(TlvError::MissingEndOfContents {
                    offset: header.value_offset - 1,
                }
                .into());
            }
            if outer.at_end_of_contents() {
                outer.skip_end_of_contents();
                break;
            }
            counted(outer.offset())?;
            item(outer.read_definite()?)?;
        },
        (expected, _) => {
            return Err(ScriptError::WrongLengthCoding {
                offset: header.offset,
                tag: header.tag,
                expected,
            })
        }
    }
    if !outer.is_empty() {
        return Err(TlvError::TrailingData {
            offset: outer.offset(),
            count: outer.remaining(),
        }
        .into());
    }
    Ok(coding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apdu::parse_hex;
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        parse_hex(s).unwrap()
    }

    #[test]
    fn tag_constants_are_well_formed() {
        for t in [
            TAG_COMMAND_SCRIPT,
            TAG_COMMAND_SCRIPT_INDEFINITE,
            TAG_RESPONSE_SCRIPT,
            TAG_RESPONSE_SCRIPT_INDEFINITE,
            TAG_C_APDU,
            TAG_R_APDU,
            TAG_IMMEDIATE_ACTION,
            TAG_ERROR_ACTION,
            TAG_SCRIPT_CHAINING,
            TAG_EXECUTED_COUNT,
            TAG_BAD_FORMAT,
            crate::gp::TAG_AID,
            crate::gp::TAG_REGISTRY_ENTRY,
            crate::gp::TAG_LIFE_CYCLE,
            crate::gp::TAG_PRIVILEGES,
            crate::gp::TAG_IMPLICIT_SELECTION,
            crate::gp::TAG_LOAD_FILE_AID,
            crate::gp::TAG_LOAD_FILE_VERSION,
            crate::gp::TAG_MODULE_AID,
            crate::gp::TAG_SECURITY_DOMAIN_AID,
            crate::gp::TAG_APP_PARAMETERS,
        ] {
            assert_eq!(Tag::new(t.value()), Ok(t));
        }
    }

    #[test]
    fn command_script_known_answers() {
        // GET DATA 0085 in the indefinite form, as a reference admin server sends it.
        let body = h("AE80 2205 80CA008500 0000");
        let s = CommandScript::decode(&body).unwrap();
        assert_eq!(s.coding, LengthCoding::Indefinite);
        assert_eq!(s.command_count(), 1);
        assert_eq!(s.apdus().next().unwrap().to_hex(), "80CA008500");
        assert_eq!(s.encode(), body);

        let def = CommandScript::new([
            CommandApdu::from_hex("00A4040008A000000003000000").unwrap(),
            CommandApdu::from_hex("80F28002024F0000").unwrap(),
        ]);
        let bytes = def.encode();
        assert_eq!(
            bytes,
            h("AA19 220D 00A4040008A000000003000000 2208 80F28002024F0000")
        );
        assert_eq!(CommandScript::decode(&bytes).unwrap(), def);
    }

    #[test]
    fn actions_are_preserved_in_order() {
        let body = h("AA0E 8101 01 8200 2204 80CA0066 8301 01");
        let s = CommandScript::decode(&body).unwrap();
        assert_eq!(
            s.items,
            vec![
                CommandItem::ImmediateAction(vec![1]),
                CommandItem::ErrorAction(vec![]),
                CommandItem::Apdu(CommandApdu::from_hex("80CA0066").unwrap()),
                CommandItem::ScriptChaining(vec![1]),
            ]
        );
        assert_eq!(s.encode(), body);
    }

    #[test]
    fn long_apdu_uses_long_form_length() {
        let load = CommandApdu::new(0x80, 0xE8, 0x00, 0x00)
            .with_data(vec![0xC4; 245])
            .unwrap();
        let bytes = CommandScript::new([load])
            .with_coding(LengthCoding::Indefinite)
            .encode();
        // 22 81 FA: BER long form for the 250-byte C-APDU.
        assert_eq!(&bytes[..5], &[0xAE, 0x80, 0x22, 0x81, 0xFA]);
        assert_eq!(CommandScript::decode(&bytes).unwrap().command_count(), 1);
    }

    #[test]
    fn response_script_known_answers() {
        // Indefinite, no count: what a card in the field sent for SW 6A88.
        let r = ResponseScript::decode(&h("AF80 2302 6A88 0000")).unwrap();
        assert_eq!(r.coding(), LengthCoding::Indefinite);
        assert_eq!(r.executed_count(), None);
        assert_eq!(r.last_response().unwrap().sw(), 0x6A88);

        let r = ResponseScript::decode(&h("AF80 800101 2304 01029000 0000")).unwrap();
        assert_eq!(r.executed_count(), Some(1));
        assert_eq!(r.last_response().unwrap().data(), &[1, 2]);

        let body = h("AB0C 800102 2302 9000 2303 AA6A82");
        let r = ResponseScript::decode(&body).unwrap();
        assert_eq!(r.executed_count(), Some(2));
        let sws: Vec<u16> = r.responses().map(|r| r.sw()).collect();
        assert_eq!(sws, vec![0x9000, 0x6A82]);
        assert_eq!(r.encode(), body);
        assert_eq!(
            ResponseScript::with_responses(2, r.responses().cloned()).encode(),
            body
        );

        let bad = ResponseScript::decode(&h("AB06 800100 900101")).unwrap();
        assert_eq!(bad.bad_format(), Some(BadFormat::UNKNOWN_TAG));
        assert_eq!(bad.bad_format().unwrap().describe(), "unknown tag found");

        // A two-byte BER INTEGER count survives the round trip.
        let wide = h("AB04 80020080");
        let r = ResponseScript::decode(&wide).unwrap();
        assert_eq!(r.executed_count(), Some(128));
        assert_eq!(r.encode(), wide);
    }

    /// Known answers from outside testing: one command executed, then an error TLV. These were
    /// stored as a plain `ok` before.
    #[test]
    fn error_tlvs_known_answers() {
        let cases = [
            ("ab06800101900101", 0x90, "bad-format", "unknown tag found"),
            (
                "ab06800101810101",
                0x81,
                "immediate-action-error",
                "suspension error",
            ),
            (
                "ab06800101830101",
                0x83,
                "script-chaining-error",
                "script chaining: no previous script to chain to",
            ),
        ];
        for (hex, tag, name, meaning) in cases {
            let body = h(hex);
            let r = ResponseScript::decode(&body).unwrap();
            assert_eq!(r.executed_count(), Some(1), "{hex}");
            assert_eq!(r.responses().count(), 0);
            let fault = r.fault().expect(hex);
            assert_eq!(
                (
                    fault.tag(),
                    fault.result_name(),
                    fault.code(),
                    fault.describe()
                ),
                (tag, name, Some(1), meaning)
            );
            assert_eq!(r.encode(), body);
        }
        assert_eq!(
            ResponseScript::decode(&h("AB07 800101 2302 9000"))
                .unwrap()
                .fault(),
            None
        );
        let odd = ScriptFault::ScriptChainingResponse(vec![1, 2]);
        assert_eq!(
            (odd.code(), odd.describe()),
            (None, "error value of unexpected length")
        );
        assert_eq!(
            ScriptFault::ImmediateActionResponse(vec![9]).describe(),
            "reserved error type"
        );
    }

    #[test]
    fn malformed_bodies_name_the_offset() {
        let err = |s: &str| CommandScript::decode(&h(s)).unwrap_err();
        assert_eq!(CommandScript::decode(&[]), Err(ScriptError::Empty));
        assert_eq!(
            err("AB00"),
            ScriptError::UnexpectedTag {
                offset: 0,
                tag: TAG_RESPONSE_SCRIPT,
                expected: "a Command Scripting template (AA or AE)"
            }
        );
        // Truncated: C-APDU length runs past the template.
        assert_eq!(
            err("AA04 2205 80CA"),
            TlvError::LengthOverflow {
                offset: 3,
                length: 5,
                available: 2
            }
            .into()
        );
        // Outer length larger than the body.
        assert_eq!(
            err("AA10 2202 8000"),
            TlvError::LengthOverflow {
                offset: 1,
                length: 16,
                available: 4
            }
            .into()
        );
        // Trailing garbage.
        assert_eq!(
            err("AA00 FF"),
            TlvError::TrailingData {
                offset: 2,
                count: 1
            }
            .into()
        );
        assert_eq!(
            err("AE80 2204 80CA0066 0000 00"),
            TlvError::TrailingData {
                offset: 10,
                count: 1
            }
            .into()
        );
        // Missing end-of-contents.
        assert_eq!(
            err("AE80 2204 80CA0066"),
            TlvError::MissingEndOfContents { offset: 1 }.into()
        );
        assert_eq!(
            err("AE80 2204 80CA0066 00"),
            TlvError::MissingEndOfContents { offset: 1 }.into()
        );
        // Unexpected tag inside.
        assert_eq!(
            err("AA03 2301 00"),
            ScriptError::UnexpectedTag {
                offset: 2,
                tag: TAG_R_APDU,
                expected:
                    "C-APDU (22), Immediate Action (81), Error Action (82) or Script Chaining (83)"
            }
        );
        // Wrong length coding for the tag.
        assert_eq!(
            err("AA80 0000"),
            ScriptError::WrongLengthCoding {
                offset: 0,
                tag: TAG_COMMAND_SCRIPT,
                expected: LengthCoding::Definite
            }
        );
        assert_eq!(
            err("AE00"),
            ScriptError::WrongLengthCoding {
                offset: 0,
                tag: TAG_COMMAND_SCRIPT_INDEFINITE,
                expected: LengthCoding::Indefinite
            }
        );
        // Nested indefinite length is refused.
        assert_eq!(
            err("AE80 2280 0000 0000"),
            TlvError::UnexpectedIndefinite { offset: 3 }.into()
        );
        // A C-APDU whose own Lc is inconsistent.
        assert!(matches!(
            err("AA08 2206 80CA00000201"),
            ScriptError::BadCommandApdu { offset: 4, .. }
        ));
        // Non-minimal length.
        assert_eq!(
            err("AA8104 2202 8000"),
            TlvError::NonMinimalLength { offset: 1 }.into()
        );
    }

    #[test]
    fn malformed_responses() {
        let err = |s: &str| ResponseScript::decode(&h(s)).unwrap_err();
        assert_eq!(
            err("AB04 2302 9000"),
            ScriptError::MissingExecutedCount { offset: 2 }
        );
        assert_eq!(err("AB00"), ScriptError::MissingExecutedCount { offset: 2 });
        assert_eq!(
            err("AB06 800101 800101"),
            ScriptError::DuplicateExecutedCount { offset: 5 }
        );
        assert_eq!(
            err("AB02 8000"),
            ScriptError::BadExecutedCount { offset: 2, len: 0 }
        );
        assert_eq!(
            err("AB05 800101 2301 90"),
            TlvError::LengthOverflow {
                offset: 6,
                length: 1,
                available: 0
            }
            .into()
        );
        assert!(matches!(
            err("AB06 800101 230190"),
            ScriptError::BadResponseApdu { offset: 7, .. }
        ));
        assert_eq!(
            err("AB05 800101 9001"),
            TlvError::LengthOverflow {
                offset: 6,
                length: 1,
                available: 0
            }
            .into()
        );
        assert_eq!(
            err("AB07 800101 90020101"),
            ScriptError::BadFormatLength { offset: 5, len: 2 }
        );
        assert!(matches!(
            err("AB05 800101 2200"),
            ScriptError::UnexpectedTag { offset: 5, .. }
        ));
        assert!(ResponseScript::new(LengthCoding::Definite, vec![]).is_err());
        assert!(ResponseScript::new(
            LengthCoding::Indefinite,
            vec![
                ResponseItem::ExecutedCount(ExecutedCount::new(1)),
                ResponseItem::ExecutedCount(ExecutedCount::new(1))
            ]
        )
        .is_err());
    }

    #[test]
    fn limits() {
        let tight = ScriptLimits {
            max_size: 8,
            max_items: 2,
        };
        assert_eq!(
            CommandScript::decode_with_limits(&[0xAA; 9], &tight),
            Err(ScriptError::TooLarge { size: 9, limit: 8 })
        );
        assert_eq!(
            CommandScript::decode_with_limits(&h("AA06 8100 8100 8100"), &tight),
            Err(ScriptError::TooManyItems {
                offset: 6,
                limit: 2
            })
        );
    }

    fn arb_command_apdu() -> impl Strategy<Value = CommandApdu> {
        (
            any::<[u8; 4]>(),
            prop::collection::vec(any::<u8>(), 0..300),
            prop::option::of(1u32..=65_536),
        )
            .prop_map(|(hd, data, ne)| {
                let c = CommandApdu::new(hd[0], hd[1], hd[2], hd[3])
                    .with_data(data)
                    .unwrap();
                match ne {
                    Some(ne) => c.with_ne(ne).unwrap(),
                    None => c,
                }
            })
    }

    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..4)
    }

    fn arb_coding() -> impl Strategy<Value = LengthCoding> {
        prop_oneof![Just(LengthCoding::Definite), Just(LengthCoding::Indefinite)]
    }

    fn arb_command_script() -> impl Strategy<Value = CommandScript> {
        let item = prop_oneof![
            4 => arb_command_apdu().prop_map(CommandItem::Apdu),
            1 => arb_bytes().prop_map(CommandItem::ImmediateAction),
            1 => arb_bytes().prop_map(CommandItem::ErrorAction),
            1 => arb_bytes().prop_map(CommandItem::ScriptChaining),
        ];
        (arb_coding(), prop::collection::vec(item, 0..6))
            .prop_map(|(coding, items)| CommandScript { coding, items })
    }

    fn arb_response_script() -> impl Strategy<Value = ResponseScript> {
        let item = prop_oneof![
            4 => (prop::collection::vec(any::<u8>(), 0..300), any::<u16>())
                .prop_map(|(d, sw)| ResponseItem::Response(ResponseApdu::new(d, sw))),
            1 => any::<u8>().prop_map(|b| ResponseItem::BadFormat(BadFormat(b))),
            1 => arb_bytes().prop_map(ResponseItem::ImmediateActionResponse),
            1 => arb_bytes().prop_map(ResponseItem::ScriptChainingResponse),
        ];
        (
            arb_coding(),
            prop::option::of(any::<u32>()),
            prop::collection::vec(item, 0..6),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(coding, count, mut items, at)| {
                let count = match (coding, count) {
                    (LengthCoding::Definite, None) => Some(0),
                    (_, c) => c,
                };
                if let Some(c) = count {
                    let pos = match coding {
                        LengthCoding::Definite => 0,
                        LengthCoding::Indefinite => at.index(items.len() + 1),
                    };
                    items.insert(pos, ResponseItem::ExecutedCount(ExecutedCount::new(c)));
                }
                ResponseScript::new(coding, items).unwrap()
            })
    }

    proptest! {
        #[test]
        fn command_script_roundtrip(s in arb_command_script()) {
            let bytes = s.encode();
            let back = CommandScript::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert_eq!(back.encode(), bytes);
        }

        #[test]
        fn response_script_roundtrip(s in arb_response_script()) {
            let bytes = s.encode();
            let back = ResponseScript::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert_eq!(back.encode(), bytes);
        }

        #[test]
        fn truncation_is_always_an_error(s in arb_command_script(), cut in any::<prop::sample::Index>()) {
            let bytes = s.encode();
            let cut = cut.index(bytes.len());
            prop_assert!(CommandScript::decode(&bytes[..cut]).is_err());
        }
    }
}
