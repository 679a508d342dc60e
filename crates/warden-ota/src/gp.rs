//! GlobalPlatform card content management: the commands operators queue for a card and the
//! decoding of what it answers.
//!
//! Builders cover SELECT by AID, GET STATUS (TLV response format), GET DATA, INSTALL [for install
//! (and make selectable)] and DELETE [card content] (GP Card Specification v2.3 §11). The GET
//! STATUS decoder turns the `E3` registry entries into [`RegistryEntry`] values with a readable
//! life cycle state and privilege list. [`Aid`] also reads and writes the
//! `X-Admin-Targeted-Application` header form `//aid/<RID>/<PIX>` (Amendment B §3.4).

use std::fmt;
use std::str::FromStr;

use crate::apdu::{parse_hex, status_text, to_hex, CommandApdu, HexError, ResponseApdu};
use crate::tlv::{self, Reader, Tag, TlvError};

/// GlobalPlatform proprietary class byte.
pub const CLA_GP: u8 = 0x80;
/// ISO class byte.
pub const CLA_ISO: u8 = 0x00;
pub const INS_SELECT: u8 = 0xA4;
pub const INS_GET_STATUS: u8 = 0xF2;
pub const INS_GET_DATA: u8 = 0xCA;
pub const INS_INSTALL: u8 = 0xE6;
pub const INS_DELETE: u8 = 0xE4;

/// `4F`: AID.
pub const TAG_AID: Tag = Tag::known(0x4F);
/// `E3`: GlobalPlatform Registry related data (one GET STATUS entry).
pub const TAG_REGISTRY_ENTRY: Tag = Tag::known(0xE3);
/// `9F70`: life cycle state.
pub const TAG_LIFE_CYCLE: Tag = Tag::known(0x9F70);
/// `C5`: privileges.
pub const TAG_PRIVILEGES: Tag = Tag::known(0xC5);
/// `CF`: implicit selection parameter.
pub const TAG_IMPLICIT_SELECTION: Tag = Tag::known(0xCF);
/// `C4`: the application's Executable Load File AID.
pub const TAG_LOAD_FILE_AID: Tag = Tag::known(0xC4);
/// `CE`: Executable Load File version number.
pub const TAG_LOAD_FILE_VERSION: Tag = Tag::known(0xCE);
/// `84`: Executable Module AID.
pub const TAG_MODULE_AID: Tag = Tag::known(0x84);
/// `CC`: associated Security Domain AID.
pub const TAG_SECURITY_DOMAIN_AID: Tag = Tag::known(0xCC);
/// `C9`: application specific install parameters.
pub const TAG_APP_PARAMETERS: Tag = Tag::known(0xC9);

/// Why a GlobalPlatform value, command or response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpError {
    #[error("an AID has 5 to 16 bytes; got {len}")]
    AidLength { len: usize },
    #[error("AID")]
    Hex(#[from] HexError),
    #[error("bad X-Admin-Targeted-Application value {value:?}: {reason}")]
    TargetedApplication { value: String, reason: &'static str },
    #[error("{what} of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error(transparent)]
    Tlv(#[from] TlvError),
    #[error("unexpected tag {tag} at offset {offset}: expected {expected}")]
    UnexpectedTag {
        offset: usize,
        tag: Tag,
        expected: &'static str,
    },
    #[error("GET STATUS entry at offset {offset} has no AID (tag 4F)")]
    MissingAid { offset: usize },
    #[error("tag {tag} appears twice in the entry (second at offset {offset})")]
    DuplicateTag { offset: usize, tag: Tag },
    #[error("{what} at offset {offset} has {len} byte(s), which is not a valid length")]
    BadLength {
        offset: usize,
        what: &'static str,
        len: usize,
    },
    #[error("card answered {sw:04X}: {text}")]
    Status { sw: u16, text: &'static str },
}

/// An application identifier (ISO/IEC 7816-4): 5 to 16 bytes, the first 5 being the registered
/// application provider identifier (RID), the rest the proprietary extension (PIX).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aid(Vec<u8>);

impl Aid {
    pub const MIN_LEN: usize = 5;
    pub const MAX_LEN: usize = 16;
    const TARGET_PREFIX: &'static str = "//aid/";

    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, GpError> {
        let bytes = bytes.into();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len()) {
            return Err(GpError::AidLength { len: bytes.len() });
        }
        Ok(Self(bytes))
    }

    pub fn from_hex(input: &str) -> Result<Self, GpError> {
        Self::new(parse_hex(input)?)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The registered application provider identifier: the first 5 bytes.
    pub fn rid(&self) -> &[u8] {
        &self.0[..5]
    }

    /// The proprietary application identifier extension: 0 to 11 bytes.
    pub fn pix(&self) -> &[u8] {
        &self.0[5..]
    }

    /// The `X-Admin-Targeted-Application` form: `//aid/<RID as 10 hex>/<PIX as 0–22 hex>`.
    pub fn to_targeted_application(&self) -> String {
        format!(
            "{}{}/{}",
            Self::TARGET_PREFIX,
            to_hex(self.rid()),
            to_hex(self.pix())
        )
    }

    /// Parses the `X-Admin-Targeted-Application` form; hex digits in either case. A missing final
    /// `/` is accepted when the PIX is empty.
    pub fn parse_targeted_application(value: &str) -> Result<Self, GpError> {
        let bad = |reason| GpError::TargetedApplication {
            value: value.chars().take(80).collect(),
            reason,
        };
        let rest = value
            .strip_prefix(Self::TARGET_PREFIX)
            .ok_or_else(|| bad("must start with //aid/"))?;
        let (rid, pix) = match rest.split_once('/') {
            Some((rid, pix)) => (rid, pix),
            None => (rest, ""),
        };
        let hex_only = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        if rid.len() != 10 || !hex_only(rid) {
            return Err(bad("the RID must be exactly 10 hex digits"));
        }
        if pix.len() > 22 || pix.len() % 2 != 0 || !hex_only(pix) {
            return Err(bad("the PIX must be 0 to 22 hex digits, an even number"));
        }
        let mut bytes = parse_hex(rid)?;
        bytes.extend(parse_hex(pix)?);
        Self::new(bytes)
    }
}

impl fmt::Debug for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aid({})", to_hex(&self.0))
    }
}

impl fmt::Display for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl FromStr for Aid {
    type Err = GpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// GlobalPlatform privileges (GP Card Specification v2.3 §11.1.2), three bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Privileges(u32);

impl Privileges {
    pub const SECURITY_DOMAIN: Self = Self(0x80_0000);
    pub const DAP_VERIFICATION: Self = Self(0x40_0000);
    pub const DELEGATED_MANAGEMENT: Self = Self(0x20_0000);
    pub const CARD_LOCK: Self = Self(0x10_0000);
    pub const CARD_TERMINATE: Self = Self(0x08_0000);
    pub const CARD_RESET: Self = Self(0x04_0000);
    pub const CVM_MANAGEMENT: Self = Self(0x02_0000);
    pub const MANDATED_DAP_VERIFICATION: Self = Self(0x01_0000);
    pub const TRUSTED_PATH: Self = Self(0x00_8000);
    pub const AUTHORIZED_MANAGEMENT: Self = Self(0x00_4000);
    pub const TOKEN_VERIFICATION: Self = Self(0x00_2000);
    pub const GLOBAL_DELETE: Self = Self(0x00_1000);
    pub const GLOBAL_LOCK: Self = Self(0x00_0800);
    pub const GLOBAL_REGISTRY: Self = Self(0x00_0400);
    pub const FINAL_APPLICATION: Self = Self(0x00_0200);
    pub const GLOBAL_SERVICE: Self = Self(0x00_0100);
    pub const RECEIPT_GENERATION: Self = Self(0x00_0080);
    pub const CIPHERED_LOAD_FILE_DATA_BLOCK: Self = Self(0x00_0040);
    pub const CONTACTLESS_ACTIVATION: Self = Self(0x00_0020);
    pub const CONTACTLESS_SELF_ACTIVATION: Self = Self(0x00_0010);

    const NAMES: [(Self, &'static str); 20] = [
        (Self::SECURITY_DOMAIN, "Security Domain"),
        (Self::DAP_VERIFICATION, "DAP Verification"),
        (Self::DELEGATED_MANAGEMENT, "Delegated Management"),
        (Self::CARD_LOCK, "Card Lock"),
        (Self::CARD_TERMINATE, "Card Terminate"),
        (Self::CARD_RESET, "Card Reset"),
        (Self::CVM_MANAGEMENT, "CVM Management"),
        (Self::MANDATED_DAP_VERIFICATION, "Mandated DAP Verification"),
        (Self::TRUSTED_PATH, "Trusted Path"),
        (Self::AUTHORIZED_MANAGEMENT, "Authorized Management"),
        (Self::TOKEN_VERIFICATION, "Token Verification"),
        (Self::GLOBAL_DELETE, "Global Delete"),
        (Self::GLOBAL_LOCK, "Global Lock"),
        (Self::GLOBAL_REGISTRY, "Global Registry"),
        (Self::FINAL_APPLICATION, "Final Application"),
        (Self::GLOBAL_SERVICE, "Global Service"),
        (Self::RECEIPT_GENERATION, "Receipt Generation"),
        (
            Self::CIPHERED_LOAD_FILE_DATA_BLOCK,
            "Ciphered Load File Data Block",
        ),
        (Self::CONTACTLESS_ACTIVATION, "Contactless Activation"),
        (
            Self::CONTACTLESS_SELF_ACTIVATION,
            "Contactless Self-Activation",
        ),
    ];

    pub const NONE: Self = Self(0);

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// From the 1-byte (GP 2.1.1) or 3-byte (GP 2.2 and later) encoding.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [a] => Some(Self(u32::from(*a) << 16)),
            [a, b, c] => Some(Self(u32::from_be_bytes([0, *a, *b, *c]))),
            _ => None,
        }
    }

    pub fn to_bytes(self) -> [u8; 3] {
        let b = self.0.to_be_bytes();
        [b[1], b[2], b[3]]
    }

    /// Names of the privileges set, in the specification's bit order; unknown bits as hex.
    pub fn names(self) -> Vec<String> {
        let mut out: Vec<String> = Self::NAMES
            .iter()
            .filter(|(p, _)| self.contains(*p))
            .map(|(_, n)| (*n).to_string())
            .collect();
        let known = Self::NAMES.iter().fold(0, |acc, (p, _)| acc | p.0);
        let unknown = self.0 & !known;
        if unknown != 0 {
            out.push(format!("RFU bits {unknown:06X}"));
        }
        out
    }
}

impl std::ops::BitOr for Privileges {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The registry subset a GET STATUS asks for (P1, GP Card Specification v2.3 §11.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusSubset {
    /// `80`: the Issuer Security Domain only.
    IssuerSecurityDomain,
    /// `40`: Applications, including Security Domains.
    Applications,
    /// `20`: Executable Load Files only.
    LoadFiles,
    /// `10`: Executable Load Files and their Executable Modules.
    LoadFilesAndModules,
}

impl StatusSubset {
    pub fn p1(self) -> u8 {
        match self {
            Self::IssuerSecurityDomain => 0x80,
            Self::Applications => 0x40,
            Self::LoadFiles => 0x20,
            Self::LoadFilesAndModules => 0x10,
        }
    }
}

/// Whether GET STATUS starts over or continues after a `63 10` ("more data").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Occurrence {
    FirstOrAll,
    Next,
}

/// `00 A4 04 00 Lc <AID> 00`: SELECT by AID, first or only occurrence, FCI expected.
pub fn select_by_aid(aid: &Aid) -> CommandApdu {
    CommandApdu::new(CLA_ISO, INS_SELECT, 0x04, 0x00)
        .with_data(aid.as_bytes())
        .and_then(|c| c.with_ne(256))
        .expect("an AID always fits a short APDU")
}

/// `80 F2 <subset> <02|03> Lc 4F <len> <AID prefix> 00`: GET STATUS asking for the TLV response
/// format (P2 b2). An empty prefix matches every entry; P2 b1 asks for the next occurrences.
pub fn get_status(
    subset: StatusSubset,
    occurrence: Occurrence,
    aid_prefix: &[u8],
) -> Result<CommandApdu, GpError> {
    if aid_prefix.len() > Aid::MAX_LEN {
        return Err(GpError::TooLong {
            what: "AID search criterion",
            len: aid_prefix.len(),
            max: Aid::MAX_LEN,
        });
    }
    let p2 = match occurrence {
        Occurrence::FirstOrAll => 0x02,
        Occurrence::Next => 0x03,
    };
    let mut data = Vec::with_capacity(2 + aid_prefix.len());
    tlv::write_tlv(&mut data, TAG_AID, aid_prefix);
    Ok(CommandApdu::new(CLA_GP, INS_GET_STATUS, subset.p1(), p2)
        .with_data(data)
        .and_then(|c| c.with_ne(256))
        .expect("at most 18 data bytes"))
}

/// Data objects commonly read with GET DATA.
pub mod data_object {
    /// `0066`: Card Data (card recognition data).
    pub const CARD_DATA: u16 = 0x0066;
    /// `00E0`: Key Information Template.
    pub const KEY_INFORMATION: u16 = 0x00E0;
    /// `9F7F`: Card Production Life Cycle data (CPLC).
    pub const CPLC: u16 = 0x9F7F;
    /// `0042`: Issuer Identification Number.
    pub const IIN: u16 = 0x0042;
    /// `0045`: Card Image Number.
    pub const CIN: u16 = 0x0045;
    /// `FF21`: Extended Card Resources Information (ETSI TS 102 226).
    pub const EXTENDED_CARD_RESOURCES: u16 = 0xFF21;
}

/// `80 CA <tag> 00`: GET DATA for a one- or two-byte tag.
pub fn get_data(tag: u16) -> CommandApdu {
    let [p1, p2] = tag.to_be_bytes();
    CommandApdu::new(CLA_GP, INS_GET_DATA, p1, p2)
        .with_ne(256)
        .expect("256 is a valid Ne")
}

/// Application specific install parameters: `C9 <len> <bytes>` (GP v2.3 table 11-49). The
/// install parameters field of INSTALL [for install] must contain this TLV, possibly empty.
pub fn app_parameters(app_specific: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(app_specific.len() + 4);
    tlv::write_tlv(&mut out, TAG_APP_PARAMETERS, app_specific);
    out
}

/// INSTALL [for install] and, optionally, [for make selectable] in the same command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallForInstall {
    pub load_file: Aid,
    pub module: Aid,
    pub application: Aid,
    pub privileges: Privileges,
    /// The whole install parameters field; by default `C9 00`.
    pub parameters: Vec<u8>,
    /// Install token (delegated management); empty for none.
    pub token: Vec<u8>,
    pub make_selectable: bool,
}

impl InstallForInstall {
    /// Longest install parameters or token field this builder writes. Lengths up to 127 are
    /// encoded the same whether a card reads them as one byte or as a BER length.
    pub const MAX_FIELD: usize = 127;

    pub fn new(load_file: Aid, module: Aid, application: Aid) -> Self {
        Self {
            load_file,
            module,
            application,
            privileges: Privileges::NONE,
            parameters: app_parameters(&[]),
            token: Vec::new(),
            make_selectable: true,
        }
    }

    /// `80 E6 <04|0C> 00 Lc <fields> 00`.
    pub fn to_apdu(&self) -> Result<CommandApdu, GpError> {
        for (what, field) in [
            ("install parameters field", &self.parameters),
            ("install token", &self.token),
        ] {
            if field.len() > Self::MAX_FIELD {
                return Err(GpError::TooLong {
                    what,
                    len: field.len(),
                    max: Self::MAX_FIELD,
                });
            }
        }
        let mut data = Vec::new();
        for field in [
            self.load_file.as_bytes(),
            self.module.as_bytes(),
            self.application.as_bytes(),
            &self.privileges.to_bytes()[..],
            &self.parameters,
            &self.token,
        ] {
            data.push(field.len() as u8);
            data.extend_from_slice(field);
        }
        if data.len() > 255 {
            return Err(GpError::TooLong {
                what: "INSTALL command data",
                len: data.len(),
                max: 255,
            });
        }
        let p1 = if self.make_selectable { 0x0C } else { 0x04 };
        Ok(CommandApdu::new(CLA_GP, INS_INSTALL, p1, 0x00)
            .with_data(data)
            .and_then(|c| c.with_ne(256))
            .expect("checked: at most 255 data bytes"))
    }
}

/// `80 E4 00 <00|80> Lc 4F <len> <AID> 00`: DELETE [card content]; with `related`, P2 b8 asks the
/// card to delete the object and its related objects (a load file and its applications).
pub fn delete(aid: &Aid, related: bool) -> CommandApdu {
    let mut data = Vec::with_capacity(2 + aid.as_bytes().len());
    tlv::write_tlv(&mut data, TAG_AID, aid.as_bytes());
    CommandApdu::new(CLA_GP, INS_DELETE, 0x00, if related { 0x80 } else { 0x00 })
        .with_data(data)
        .and_then(|c| c.with_ne(256))
        .expect("at most 18 data bytes")
}

/// A life cycle state byte (GP Card Specification v2.3 §11.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LifeCycle(pub u8);

impl LifeCycle {
    /// The card life cycle, as reported for the Issuer Security Domain.
    pub fn card_state(self) -> String {
        match self.0 {
            0x01 => "OP_READY".into(),
            0x07 => "INITIALIZED".into(),
            0x0F => "SECURED".into(),
            0x7F => "CARD_LOCKED".into(),
            0xFF => "TERMINATED".into(),
            v => format!("unknown card state {v:02X}"),
        }
    }

    /// An application or Security Domain life cycle.
    pub fn application_state(self, security_domain: bool) -> String {
        let v = self.0;
        let base = v & 0x7F;
        let state = match base {
            0x03 => "INSTALLED".to_string(),
            0x07 => "SELECTABLE".to_string(),
            0x0F if security_domain => "PERSONALIZED".to_string(),
            b if b & 0x07 == 0x07 && !security_domain => {
                format!("SELECTABLE, application specific state {b:02X}")
            }
            b => format!("unknown state {b:02X}"),
        };
        if v & 0x80 != 0 {
            format!("LOCKED (from {state})")
        } else {
            state
        }
    }

    /// An Executable Load File life cycle.
    pub fn load_file_state(self) -> String {
        match self.0 {
            0x01 => "LOADED".into(),
            v => format!("unknown load file state {v:02X}"),
        }
    }
}

/// One entry of a GET STATUS response (`E3`, GP Card Specification v2.3 table 11-36).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub aid: Aid,
    pub life_cycle: Option<LifeCycle>,
    pub privileges: Option<Privileges>,
    /// Implicit selection parameters (`CF`), one byte each.
    pub implicit_selection: Vec<u8>,
    pub load_file: Option<Aid>,
    pub load_file_version: Option<Vec<u8>>,
    pub modules: Vec<Aid>,
    pub security_domain: Option<Aid>,
    /// Tags this decoder does not interpret, kept as sent.
    pub other: Vec<(Tag, Vec<u8>)>,
}

impl RegistryEntry {
    pub fn is_security_domain(&self) -> bool {
        self.privileges
            .is_some_and(|p| p.contains(Privileges::SECURITY_DOMAIN))
    }

    /// The life cycle state in words, read as the given GET STATUS subset defines it.
    pub fn life_cycle_text(&self, subset: StatusSubset) -> String {
        let Some(lc) = self.life_cycle else {
            return "not reported".into();
        };
        match subset {
            StatusSubset::IssuerSecurityDomain => lc.card_state(),
            StatusSubset::Applications => lc.application_state(self.is_security_domain()),
            StatusSubset::LoadFiles | StatusSubset::LoadFilesAndModules => lc.load_file_state(),
        }
    }

    /// One line for logs and the dashboard.
    pub fn describe(&self, subset: StatusSubset) -> String {
        let mut s = format!("{} {}", self.aid, self.life_cycle_text(subset));
        if let Some(p) = self.privileges {
            let names = p.names();
            if !names.is_empty() {
                s.push_str(&format!(" [{}]", names.join(", ")));
            }
        }
        if let Some(lf) = &self.load_file {
            s.push_str(&format!(" load file {lf}"));
        }
        if !self.modules.is_empty() {
            let m: Vec<String> = self.modules.iter().map(Aid::to_string).collect();
            s.push_str(&format!(" modules {}", m.join(" ")));
        }
        if let Some(sd) = &self.security_domain {
            s.push_str(&format!(" SD {sd}"));
        }
        s
    }
}

/// One GET STATUS answer: its entries, and whether the card has more (`63 10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetStatusPage {
    pub entries: Vec<RegistryEntry>,
    pub more: bool,
}

/// Decodes a GET STATUS response (`90 00` or `63 10`); other status words are errors.
pub fn decode_get_status_response(response: &ResponseApdu) -> Result<GetStatusPage, GpError> {
    let more = match response.sw() {
        0x9000 => false,
        0x6310 => true,
        sw => {
            return Err(GpError::Status {
                sw,
                text: status_text(sw),
            })
        }
    };
    Ok(GetStatusPage {
        entries: decode_get_status(response.data())?,
        more,
    })
}

/// Decodes the data field of a GET STATUS response in the TLV format: a sequence of `E3`.
pub fn decode_get_status(data: &[u8]) -> Result<Vec<RegistryEntry>, GpError> {
    let limits = tlv::Limits::default();
    if data.len() > limits.max_input {
        return Err(TlvError::TooLarge {
            size: data.len(),
            limit: limits.max_input,
        }
        .into());
    }
    let mut reader = Reader::new(data);
    let mut entries = Vec::new();
    while !reader.is_empty() {
        let entry = reader.read_definite()?;
        if entry.tag != TAG_REGISTRY_ENTRY {
            return Err(GpError::UnexpectedTag {
                offset: entry.offset,
                tag: entry.tag,
                expected: "a registry entry (E3)",
            });
        }
        entries.push(decode_entry(entry.value, entry.value_offset, entry.offset)?);
    }
    Ok(entries)
}

fn decode_entry(value: &[u8], base: usize, entry_offset: usize) -> Result<RegistryEntry, GpError> {
    let mut reader = Reader::with_base(value, base);
    let mut aid = None;
    let mut e = RegistryEntry {
        aid: Aid(Vec::new()),
        life_cycle: None,
        privileges: None,
        implicit_selection: Vec::new(),
        load_file: None,
        load_file_version: None,
        modules: Vec::new(),
        security_domain: None,
        other: Vec::new(),
    };
    let aid_at = |offset: usize, v: &[u8]| {
        Aid::new(v).map_err(|_| GpError::BadLength {
            offset,
            what: "AID",
            len: v.len(),
        })
    };
    fn once<T>(slot: &mut Option<T>, v: T, offset: usize, tag: Tag) -> Result<(), GpError> {
        if slot.is_some() {
            return Err(GpError::DuplicateTag { offset, tag });
        }
        *slot = Some(v);
        Ok(())
    }
    while !reader.is_empty() {
        let t = reader.read_definite()?;
        let (o, v) = (t.offset, t.value);
        match t.tag {
            TAG_AID => once(&mut aid, aid_at(o, v)?, o, t.tag)?,
            TAG_LIFE_CYCLE => match v {
                [b] => once(&mut e.life_cycle, LifeCycle(*b), o, t.tag)?,
                _ => {
                    return Err(GpError::BadLength {
                        offset: o,
                        what: "life cycle state (9F70)",
                        len: v.len(),
                    })
                }
            },
            TAG_PRIVILEGES => {
                let p = Privileges::from_bytes(v).ok_or(GpError::BadLength {
                    offset: o,
                    what: "privileges (C5)",
                    len: v.len(),
                })?;
                once(&mut e.privileges, p, o, t.tag)?
            }
            TAG_IMPLICIT_SELECTION => match v {
                [b] => e.implicit_selection.push(*b),
                _ => {
                    return Err(GpError::BadLength {
                        offset: o,
                        what: "implicit selection parameter (CF)",
                        len: v.len(),
                    })
                }
            },
            TAG_LOAD_FILE_AID => once(&mut e.load_file, aid_at(o, v)?, o, t.tag)?,
            TAG_LOAD_FILE_VERSION => once(&mut e.load_file_version, v.to_vec(), o, t.tag)?,
            TAG_MODULE_AID => e.modules.push(aid_at(o, v)?),
            TAG_SECURITY_DOMAIN_AID => once(&mut e.security_domain, aid_at(o, v)?, o, t.tag)?,
            tag => e.other.push((tag, v.to_vec())),
        }
    }
    e.aid = aid.ok_or(GpError::MissingAid {
        offset: entry_offset,
    })?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn aid(s: &str) -> Aid {
        Aid::from_hex(s).unwrap()
    }

    #[test]
    fn aid_rid_pix_and_header_form() {
        let isd = aid("A000000003000000");
        assert_eq!(isd.rid(), &[0xA0, 0, 0, 0, 0x03]);
        assert_eq!(isd.pix(), &[0, 0, 0]);
        assert_eq!(isd.to_targeted_application(), "//aid/A000000003/000000");
        assert_eq!(
            Aid::parse_targeted_application("//aid/a000000003/000000").unwrap(),
            isd
        );
        let rid_only = aid("A000000151");
        assert_eq!(rid_only.to_targeted_application(), "//aid/A000000151/");
        assert_eq!(
            Aid::parse_targeted_application("//aid/A000000151").unwrap(),
            rid_only
        );
        assert_eq!(
            Aid::parse_targeted_application("//aid/A000000151/").unwrap(),
            rid_only
        );
        for bad in [
            "",
            "aid/A000000003/00",
            "//aid/A0000000/0000",
            "//aid/A00000000300/00",
            "//aid/A000000003/0",
            "//aid/A000000003/00 00",
            "//aid/A000000003/000102030405060708090A0B",
            "//aid/G000000003/00",
            "//aid/A000000003/00/01",
        ] {
            assert!(
                matches!(
                    Aid::parse_targeted_application(bad),
                    Err(GpError::TargetedApplication { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert_eq!(Aid::new(vec![1; 4]), Err(GpError::AidLength { len: 4 }));
        assert_eq!(Aid::new(vec![1; 17]), Err(GpError::AidLength { len: 17 }));
        assert!("A0000000030000".parse::<Aid>().is_ok());
    }

    #[test]
    fn command_encodings() {
        let isd = aid("A000000003000000");
        assert_eq!(select_by_aid(&isd).to_hex(), "00A4040008A00000000300000000");
        assert_eq!(
            get_status(StatusSubset::Applications, Occurrence::FirstOrAll, &[])
                .unwrap()
                .to_hex(),
            "80F24002024F0000"
        );
        assert_eq!(
            get_status(
                StatusSubset::IssuerSecurityDomain,
                Occurrence::Next,
                &[0xA0]
            )
            .unwrap()
            .to_hex(),
            "80F28003034F01A000"
        );
        assert_eq!(
            get_status(
                StatusSubset::LoadFilesAndModules,
                Occurrence::FirstOrAll,
                &[]
            )
            .unwrap()
            .p1(),
            0x10
        );
        assert!(get_status(StatusSubset::LoadFiles, Occurrence::FirstOrAll, &[0; 17]).is_err());
        assert_eq!(get_data(data_object::CPLC).to_hex(), "80CA9F7F00");
        assert_eq!(get_data(data_object::CARD_DATA).to_hex(), "80CA006600");
        assert_eq!(
            get_data(data_object::KEY_INFORMATION).to_hex(),
            "80CA00E000"
        );
        assert_eq!(
            delete(&aid("A0000001515350"), true).to_hex(),
            "80E40080094F07A000000151535000"
        );
        assert_eq!(
            delete(&aid("A0000001515350"), false).to_hex(),
            "80E40000094F07A000000151535000"
        );
    }

    #[test]
    fn install_for_install_and_make_selectable() {
        let mut inst = InstallForInstall::new(
            aid("A0000001515350"),
            aid("A000000151535041"),
            aid("A000000151535041"),
        );
        inst.privileges = Privileges::SECURITY_DOMAIN | Privileges::TRUSTED_PATH;
        let apdu = inst.to_apdu().unwrap();
        assert_eq!(
            apdu.to_hex(),
            concat!(
                "80E60C00",
                "22",
                "07A0000001515350",
                "08A000000151535041",
                "08A000000151535041",
                "03808000",
                "02C900",
                "00",
                "00"
            )
        );
        inst.make_selectable = false;
        inst.parameters = app_parameters(&[0x01, 0x02]);
        let apdu = inst.to_apdu().unwrap();
        assert_eq!(apdu.p1(), 0x04);
        assert!(apdu.to_hex().contains("04C9020102"));
        inst.parameters = vec![0; 128];
        assert!(matches!(inst.to_apdu(), Err(GpError::TooLong { .. })));
    }

    #[test]
    fn get_status_known_answer() {
        // ISD entry and an application entry, as GP 2.2+ cards answer P2=02.
        let data = parse_hex(concat!(
            "E3 12 4F08A000000003000000 9F70010F C503 9EFE80",
            "E3 1B 4F07A0000001515350 9F700107 C503000000 C407A0000001515350 CC08A000000003000000",
        ))
        .unwrap();
        // First entry length: 4F(10) + 9F70(4) + C5(5) = 19 = 0x13.
        assert!(decode_get_status(&data).is_err());
        let data = parse_hex(concat!(
            "E3 13 4F08A000000003000000 9F70010F C5039EFE80",
            "E3 25 4F07A0000001515350 9F700107 C503000000 C407A0000001515350 CC08A000000003000000",
        ))
        .unwrap();
        let entries = decode_get_status(&data).unwrap();
        assert_eq!(entries.len(), 2);
        let isd = &entries[0];
        assert_eq!(isd.aid, aid("A000000003000000"));
        assert_eq!(
            isd.life_cycle_text(StatusSubset::IssuerSecurityDomain),
            "SECURED"
        );
        let names = isd.privileges.unwrap().names();
        assert_eq!(names[0], "Security Domain");
        assert!(names.contains(&"Card Terminate".to_string()));
        assert!(names.contains(&"Receipt Generation".to_string()));
        let app = &entries[1];
        assert_eq!(
            app.life_cycle_text(StatusSubset::Applications),
            "SELECTABLE"
        );
        assert_eq!(app.load_file, Some(aid("A0000001515350")));
        assert_eq!(app.security_domain, Some(aid("A000000003000000")));
        assert_eq!(
            app.describe(StatusSubset::Applications),
            "A0000001515350 SELECTABLE load file A0000001515350 SD A000000003000000"
        );

        let page = decode_get_status_response(&ResponseApdu::new(data.clone(), 0x6310)).unwrap();
        assert!(page.more);
        assert_eq!(
            decode_get_status_response(&ResponseApdu::new(vec![], 0x6A88)),
            Err(GpError::Status {
                sw: 0x6A88,
                text: "referenced data not found"
            })
        );
        assert!(decode_get_status(&[]).unwrap().is_empty());
    }

    #[test]
    fn load_files_with_modules_and_unknown_tags() {
        let data = parse_hex(
            "E3 26 4F07A0000001515350 9F700101 CE020100 8408A000000151535041 84 06A00000015101 DF0100",
        )
        .unwrap();
        let e = &decode_get_status(&data).unwrap()[0];
        assert_eq!(
            e.life_cycle_text(StatusSubset::LoadFilesAndModules),
            "LOADED"
        );
        assert_eq!(e.modules.len(), 2);
        assert_eq!(e.load_file_version, Some(vec![1, 0]));
        assert_eq!(e.other, vec![(Tag::new(0xDF01).unwrap(), vec![])]);
    }

    #[test]
    fn life_cycles_in_words() {
        assert_eq!(LifeCycle(0x03).application_state(false), "INSTALLED");
        assert_eq!(LifeCycle(0x0F).application_state(true), "PERSONALIZED");
        assert_eq!(
            LifeCycle(0x0F).application_state(false),
            "SELECTABLE, application specific state 0F"
        );
        assert_eq!(
            LifeCycle(0x83).application_state(false),
            "LOCKED (from INSTALLED)"
        );
        assert_eq!(
            LifeCycle(0x8F).application_state(true),
            "LOCKED (from PERSONALIZED)"
        );
        assert_eq!(LifeCycle(0x7F).card_state(), "CARD_LOCKED");
        assert_eq!(LifeCycle(0x01).card_state(), "OP_READY");
        assert_eq!(LifeCycle(0x42).card_state(), "unknown card state 42");
        assert_eq!(
            Privileges::from_bytes(&[0x80]),
            Some(Privileges::SECURITY_DOMAIN)
        );
        assert_eq!(Privileges::from_bytes(&[0x80, 0x00]), None);
        assert_eq!(
            Privileges(0x00_0001).names(),
            vec!["RFU bits 000001".to_string()]
        );
    }

    #[test]
    fn malformed_get_status_names_the_offset() {
        let err = |s: &str| decode_get_status(&parse_hex(s).unwrap()).unwrap_err();
        assert_eq!(err("E3 04 9F700107"), GpError::MissingAid { offset: 0 });
        assert_eq!(
            err("E3 07 4F05A000000003 E3"),
            TlvError::Truncated {
                offset: 10,
                what: "a length"
            }
            .into()
        );
        assert_eq!(
            err("61 00"),
            GpError::UnexpectedTag {
                offset: 0,
                tag: Tag::new(0x61).unwrap(),
                expected: "a registry entry (E3)"
            }
        );
        assert_eq!(
            err("E3 0E 4F05A000000003 4F05A000000003"),
            GpError::DuplicateTag {
                offset: 9,
                tag: TAG_AID
            }
        );
        assert_eq!(
            err("E3 06 4F04A0000000"),
            GpError::BadLength {
                offset: 2,
                what: "AID",
                len: 4
            }
        );
        assert_eq!(
            err("E3 0C 4F05A000000003 9F700207 00"),
            GpError::BadLength {
                offset: 9,
                what: "life cycle state (9F70)",
                len: 2
            }
        );
        assert_eq!(
            err("E3 0B 4F05A000000003 C5020000"),
            GpError::BadLength {
                offset: 9,
                what: "privileges (C5)",
                len: 2
            }
        );
    }

    proptest! {
        #[test]
        fn targeted_application_roundtrip(bytes in prop::collection::vec(any::<u8>(), 5..=16)) {
            let a = Aid::new(bytes).unwrap();
            prop_assert_eq!(Aid::parse_targeted_application(&a.to_targeted_application()).unwrap(), a);
        }

        #[test]
        fn get_status_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_get_status(&bytes);
        }

        #[test]
        fn targeted_application_parser_never_panics(s in ".{0,60}") {
            let _ = Aid::parse_targeted_application(&s);
        }
    }
}
