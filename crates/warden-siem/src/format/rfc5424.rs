//! The RFC 5424 syslog envelope around every SIEM message.
//!
//! ```text
//! SYSLOG-MSG = "<" PRIVAL ">" "1" SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
//!              SP STRUCTURED-DATA [SP MSG]
//! ```
//!
//! Every header field is a typed value checked once, when it is made ("parse, don't validate"):
//! [`Hostname`] (≤ 255), [`AppName`] (≤ 48), [`ProcId`] (≤ 128) and [`MsgId`] (≤ 32) hold 1 or more
//! PRINTUSASCII characters (`%d33-126`); an absent field is written as the NILVALUE `-`.
//! [`Timestamp`] is always written in UTC with microseconds (`2026-04-15T09:22:03.123456Z`).
//! [`SdId`] and [`SdParamName`] follow `SD-NAME` (1–32 PRINTUSASCII except `=`, SP, `]`, `"`);
//! an SD-ID without `@` must be one registered with IANA, others must be `name@<enterprise number>`.
//! PARAM-VALUE escapes `"`, `\` and `]` with a backslash.
//!
//! MSG is UTF-8 and, by default, written **without** the BOM. RFC 5424 allows both (`MSG-ANY` and
//! `MSG-UTF8`); rsyslog accepts both, but several CEF consumers look for `CEF:` at the very start
//! of MSG and do not skip a BOM, so warden leaves it out unless [`SyslogMessage::with_bom`] asks.

use std::borrow::Cow;
use std::fmt;

use time::{OffsetDateTime, UtcOffset};

/// Why a syslog field was refused. The refused value itself is never echoed (it may be hostile).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    #[error("{field} is empty (use None for the NILVALUE)")]
    Empty { field: &'static str },
    #[error("{field} is {len} bytes long; RFC 5424 allows at most {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} has a forbidden character at byte {position}")]
    BadCharacter {
        field: &'static str,
        position: usize,
    },
    #[error("SD-ID without '@' must be registered with IANA (timeQuality, origin, meta); use name@<enterprise number>")]
    UnregisteredSdId,
    #[error("SD-ID after '@' must be a private enterprise number (digits and dots)")]
    BadEnterpriseNumber,
    #[error("SD-ID appears twice in one message")]
    DuplicateSdId,
    #[error("timestamp year {0} is outside 0000..=9999")]
    YearOutOfRange(i32),
}

/// Syslog facility (RFC 5424 table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Facility {
    Kern = 0,
    User = 1,
    Mail = 2,
    Daemon = 3,
    Auth = 4,
    Syslog = 5,
    Lpr = 6,
    News = 7,
    Uucp = 8,
    Cron = 9,
    AuthPriv = 10,
    Ftp = 11,
    Ntp = 12,
    LogAudit = 13,
    LogAlert = 14,
    Clock = 15,
    Local0 = 16,
    Local1 = 17,
    Local2 = 18,
    Local3 = 19,
    Local4 = 20,
    Local5 = 21,
    Local6 = 22,
    Local7 = 23,
}

/// Syslog severity (RFC 5424 table 2); lower is more severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Severity {
    Emergency = 0,
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Informational = 6,
    Debug = 7,
}

/// Facility and severity; PRIVAL = facility × 8 + severity (0..=191).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Priority {
    pub facility: Facility,
    pub severity: Severity,
}

impl Priority {
    pub const fn new(facility: Facility, severity: Severity) -> Self {
        Self { facility, severity }
    }

    /// The PRIVAL written between `<` and `>`.
    pub const fn value(self) -> u8 {
        self.facility as u8 * 8 + self.severity as u8
    }
}

/// True if `s` is 1..=max PRINTUSASCII characters (usable in const context).
const fn is_printusascii(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > max {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] < 33 || b[i] > 126 {
            return false;
        }
        i += 1;
    }
    true
}

/// True if `s` is a valid SD-NAME: 1..=32 PRINTUSASCII except `=`, SP, `]`, `"`.
const fn is_sd_name(s: &str) -> bool {
    if !is_printusascii(s, 32) {
        return false;
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if matches!(b[i], b'=' | b']' | b'"') {
            return false;
        }
        i += 1;
    }
    true
}

fn check_printusascii(field: &'static str, value: &str, max: usize) -> Result<(), SyslogError> {
    if value.is_empty() {
        return Err(SyslogError::Empty { field });
    }
    if value.len() > max {
        return Err(SyslogError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    match value.bytes().position(|b| !(33..=126).contains(&b)) {
        Some(position) => Err(SyslogError::BadCharacter { field, position }),
        None => Ok(()),
    }
}

fn check_sd_name(field: &'static str, value: &str) -> Result<(), SyslogError> {
    check_printusascii(field, value, 32)?;
    match value.bytes().position(|b| matches!(b, b'=' | b']' | b'"')) {
        Some(position) => Err(SyslogError::BadCharacter { field, position }),
        None => Ok(()),
    }
}

macro_rules! header_field {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(Cow<'static, str>);

        impl $name {
            /// The longest value RFC 5424 allows, in characters (all ASCII, so also bytes).
            pub const MAX_LEN: usize = $max;

            /// Checks `value`: 1..=MAX_LEN PRINTUSASCII characters.
            pub fn new(value: impl Into<Cow<'static, str>>) -> Result<Self, SyslogError> {
                let value = value.into();
                check_printusascii($field, &value, $max)?;
                Ok(Self(value))
            }

            /// A compile-time constant; an invalid literal fails the build when used in a `const`.
            pub const fn from_static(value: &'static str) -> Self {
                assert!(is_printusascii(value, $max), concat!("invalid ", $field));
                Self(Cow::Borrowed(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

header_field!(
    /// HOSTNAME: the shim's FQDN, hostname or IP address.
    Hostname,
    "HOSTNAME",
    255
);
header_field!(
    /// APP-NAME: the program that sent the message (`warden`).
    AppName,
    "APP-NAME",
    48
);
header_field!(
    /// PROCID: process id or another id that groups messages of one process run.
    ProcId,
    "PROCID",
    128
);
header_field!(
    /// MSGID: the type of message (see [`crate::format::MessageKind::msgid`]).
    MsgId,
    "MSGID",
    32
);

/// TIMESTAMP: a UTC instant in year 0000..=9999, written `YYYY-MM-DDThh:mm:ss.ffffffZ`.
/// Leap seconds cannot occur (`time` does not represent them), as RFC 5424 requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Converts `at` to UTC and checks the year fits four digits.
    pub fn new(at: OffsetDateTime) -> Result<Self, SyslogError> {
        let at = at.to_offset(UtcOffset::UTC);
        if !(0..=9999).contains(&at.year()) {
            return Err(SyslogError::YearOutOfRange(at.year()));
        }
        Ok(Self(at))
    }

    pub fn get(self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
}

/// SD-IDs registered with IANA (RFC 5424 section 7); all others need `@<enterprise number>`.
const IANA_SD_IDS: [&str; 3] = ["timeQuality", "origin", "meta"];

/// SD-ID: the name of one structured-data element, such as `warden@32473`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SdId(Cow<'static, str>);

impl SdId {
    pub fn new(value: impl Into<Cow<'static, str>>) -> Result<Self, SyslogError> {
        let value = value.into();
        check_sd_name("SD-ID", &value)?;
        match value.split_once('@') {
            None if IANA_SD_IDS.contains(&value.as_ref()) => {}
            None => return Err(SyslogError::UnregisteredSdId),
            Some((name, number)) => {
                let number_ok = number.starts_with(|c: char| c.is_ascii_digit())
                    && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                    && !number.ends_with('.');
                if name.is_empty() {
                    return Err(SyslogError::BadCharacter {
                        field: "SD-ID",
                        position: 0,
                    });
                }
                if !number_ok {
                    return Err(SyslogError::BadEnterpriseNumber);
                }
            }
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// PARAM-NAME inside a structured-data element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SdParamName(Cow<'static, str>);

impl SdParamName {
    pub fn new(value: impl Into<Cow<'static, str>>) -> Result<Self, SyslogError> {
        let value = value.into();
        check_sd_name("PARAM-NAME", &value)?;
        Ok(Self(value))
    }

    /// A compile-time constant; an invalid literal fails the build when used in a `const`.
    pub const fn from_static(value: &'static str) -> Self {
        assert!(is_sd_name(value), "invalid PARAM-NAME");
        Self(Cow::Borrowed(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One SD-ELEMENT: `[SD-ID *(SP PARAM-NAME="PARAM-VALUE")]`. Parameters keep their order and may
/// repeat (RFC 5424 allows a PARAM-NAME more than once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    id: SdId,
    params: Vec<(SdParamName, String)>,
}

impl SdElement {
    pub fn new(id: SdId) -> Self {
        Self {
            id,
            params: Vec::new(),
        }
    }

    /// Appends `name="value"`; the value is escaped when written.
    pub fn param(mut self, name: SdParamName, value: impl Into<String>) -> Self {
        self.params.push((name, value.into()));
        self
    }

    pub fn id(&self) -> &SdId {
        &self.id
    }

    pub fn params(&self) -> &[(SdParamName, String)] {
        &self.params
    }
}

impl fmt::Display for SdElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}", self.id.as_str())?;
        for (name, value) in &self.params {
            write!(f, " {}=\"", name.as_str())?;
            write_param_value(f, value)?;
            f.write_str("\"")?;
        }
        f.write_str("]")
    }
}

fn write_param_value(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.write_char('\\')?;
        }
        out.write_char(c)?;
    }
    Ok(())
}

/// PARAM-VALUE escaping: a backslash before each `"`, `\` and `]`.
pub fn escape_param_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['"', '\\', ']']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    // Writing to a String cannot fail.
    let _ = write_param_value(&mut out, value);
    Cow::Owned(out)
}

/// One RFC 5424 message, built field by field; absent fields are written as `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage {
    priority: Priority,
    timestamp: Option<Timestamp>,
    hostname: Option<Hostname>,
    app_name: Option<AppName>,
    procid: Option<ProcId>,
    msgid: Option<MsgId>,
    structured_data: Vec<SdElement>,
    msg: Option<String>,
    bom: bool,
}

impl SyslogMessage {
    pub fn new(priority: Priority) -> Self {
        Self {
            priority,
            timestamp: None,
            hostname: None,
            app_name: None,
            procid: None,
            msgid: None,
            structured_data: Vec::new(),
            msg: None,
            bom: false,
        }
    }

    pub fn timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    pub fn hostname(mut self, hostname: Hostname) -> Self {
        self.hostname = Some(hostname);
        self
    }

    pub fn app_name(mut self, app_name: AppName) -> Self {
        self.app_name = Some(app_name);
        self
    }

    pub fn procid(mut self, procid: ProcId) -> Self {
        self.procid = Some(procid);
        self
    }

    pub fn msgid(mut self, msgid: MsgId) -> Self {
        self.msgid = Some(msgid);
        self
    }

    /// Adds an SD-ELEMENT; an SD-ID may appear only once per message.
    pub fn structured_data(mut self, element: SdElement) -> Result<Self, SyslogError> {
        if self.structured_data.iter().any(|e| e.id == element.id) {
            return Err(SyslogError::DuplicateSdId);
        }
        self.structured_data.push(element);
        Ok(self)
    }

    /// The free-form MSG part (for warden: the CEF text).
    pub fn msg(mut self, msg: impl Into<String>) -> Self {
        self.msg = Some(msg.into());
        self
    }

    /// Writes the UTF-8 BOM before MSG (`MSG-UTF8`) instead of plain `MSG-ANY`. Off by default.
    pub fn with_bom(mut self, bom: bool) -> Self {
        self.bom = bom;
        self
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The message as bytes, ready for [`crate::format::framing::encode_frame`].
    pub fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

fn nil_or(f: &mut fmt::Formatter<'_>, value: Option<&str>) -> fmt::Result {
    f.write_str(value.unwrap_or("-"))
}

impl fmt::Display for SyslogMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>1 ", self.priority.value())?;
        match &self.timestamp {
            Some(t) => write!(f, "{t}")?,
            None => f.write_str("-")?,
        }
        f.write_str(" ")?;
        nil_or(f, self.hostname.as_ref().map(Hostname::as_str))?;
        f.write_str(" ")?;
        nil_or(f, self.app_name.as_ref().map(AppName::as_str))?;
        f.write_str(" ")?;
        nil_or(f, self.procid.as_ref().map(ProcId::as_str))?;
        f.write_str(" ")?;
        nil_or(f, self.msgid.as_ref().map(MsgId::as_str))?;
        f.write_str(" ")?;
        if self.structured_data.is_empty() {
            f.write_str("-")?;
        }
        for element in &self.structured_data {
            write!(f, "{element}")?;
        }
        let msg = self.msg.as_deref().unwrap_or("");
        if !msg.is_empty() || self.bom {
            f.write_str(" ")?;
            if self.bom {
                f.write_str("\u{FEFF}")?;
            }
            f.write_str(msg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn prival_is_facility_times_eight_plus_severity() {
        assert_eq!(
            Priority::new(Facility::Kern, Severity::Emergency).value(),
            0
        );
        assert_eq!(
            Priority::new(Facility::LogAudit, Severity::Notice).value(),
            109
        );
        assert_eq!(
            Priority::new(Facility::Local7, Severity::Debug).value(),
            191
        );
        assert_eq!(
            Priority::new(Facility::Auth, Severity::Critical).value(),
            34
        );
    }

    #[test]
    fn header_fields_enforce_length_and_printusascii() {
        assert!(Hostname::new("a".repeat(255)).is_ok());
        assert_eq!(
            Hostname::new("a".repeat(256)),
            Err(SyslogError::TooLong {
                field: "HOSTNAME",
                len: 256,
                max: 255
            })
        );
        assert!(AppName::new("a".repeat(48)).is_ok());
        assert!(AppName::new("a".repeat(49)).is_err());
        assert!(ProcId::new("1".repeat(128)).is_ok());
        assert!(ProcId::new("1".repeat(129)).is_err());
        assert!(MsgId::new("M".repeat(32)).is_ok());
        assert!(MsgId::new("M".repeat(33)).is_err());
        assert_eq!(MsgId::new(""), Err(SyslogError::Empty { field: "MSGID" }));
        assert_eq!(
            Hostname::new("shim 12"),
            Err(SyslogError::BadCharacter {
                field: "HOSTNAME",
                position: 4
            })
        );
        for bad in ["a\nb", "a\tb", "é", "a\u{7f}"] {
            assert!(AppName::new(bad.to_string()).is_err(), "{bad:?}");
        }
        assert!(AppName::new("!~").is_ok());
    }

    #[test]
    fn sd_ids_must_be_registered_or_carry_an_enterprise_number() {
        assert!(SdId::new("timeQuality").is_ok());
        assert!(SdId::new("warden@32473").is_ok());
        assert!(SdId::new("warden@32473.1.2").is_ok());
        assert_eq!(SdId::new("warden"), Err(SyslogError::UnregisteredSdId));
        assert_eq!(SdId::new("warden@"), Err(SyslogError::BadEnterpriseNumber));
        assert_eq!(
            SdId::new("warden@x1"),
            Err(SyslogError::BadEnterpriseNumber)
        );
        assert_eq!(
            SdId::new("warden@1."),
            Err(SyslogError::BadEnterpriseNumber)
        );
        assert!(SdId::new("@32473").is_err());
        for bad in ["a=b@1", "a]b@1", "a\"b@1", "a b@1"] {
            assert!(SdId::new(bad).is_err(), "{bad}");
        }
        assert!(SdId::new(format!("{}@1", "x".repeat(30))).is_ok());
        assert!(SdId::new(format!("{}@1", "x".repeat(31))).is_err());
        assert!(SdParamName::new("seq").is_ok());
        assert!(SdParamName::new("se=q").is_err());
        assert!(SdParamName::new("").is_err());
    }

    #[test]
    fn param_values_escape_quote_backslash_and_bracket() {
        assert_eq!(escape_param_value("plain"), "plain");
        assert_eq!(escape_param_value(r#"a"b\c]d[e=f"#), r#"a\"b\\c\]d[e=f"#);
        assert_eq!(escape_param_value("\\\\"), "\\\\\\\\");
        assert_eq!(escape_param_value("ünïcödé"), "ünïcödé");
    }

    #[test]
    fn timestamp_is_utc_with_microseconds() {
        let t = Timestamp::new(datetime!(2026-04-15 11:22:03.123456789 +02:00)).unwrap();
        assert_eq!(t.to_string(), "2026-04-15T09:22:03.123456Z");
        let t = Timestamp::new(datetime!(0001-01-01 00:00:00 UTC)).unwrap();
        assert_eq!(t.to_string(), "0001-01-01T00:00:00.000000Z");
        assert_eq!(
            Timestamp::new(datetime!(-0001-12-31 23:00:00 UTC)),
            Err(SyslogError::YearOutOfRange(-1))
        );
    }

    #[test]
    fn all_nil_message() {
        let m = SyslogMessage::new(Priority::new(Facility::User, Severity::Notice));
        assert_eq!(m.to_string(), "<13>1 - - - - - -");
        let m = m.with_bom(true);
        assert_eq!(m.encode(), b"<13>1 - - - - - - \xEF\xBB\xBF");
    }

    #[test]
    fn full_message_golden() {
        let sd = SdElement::new(SdId::new("warden@32473").unwrap())
            .param(SdParamName::from_static("seq"), "42")
            .param(SdParamName::from_static("note"), r#"say "hi" \ [x]"#);
        let origin = SdElement::new(SdId::new("origin").unwrap())
            .param(SdParamName::from_static("software"), "warden");
        let m = SyslogMessage::new(Priority::new(Facility::LogAudit, Severity::Notice))
            .timestamp(Timestamp::new(datetime!(2026-04-15 09:22:03.5 UTC)).unwrap())
            .hostname(Hostname::new("shim-12.example.org").unwrap())
            .app_name(AppName::from_static("warden"))
            .procid(ProcId::new("4242").unwrap())
            .msgid(MsgId::from_static("AUDIT"))
            .structured_data(sd)
            .unwrap()
            .structured_data(origin)
            .unwrap()
            .msg("CEF:0|x|y|1|a|b|5|");
        assert_eq!(
            m.to_string(),
            concat!(
                "<109>1 2026-04-15T09:22:03.500000Z shim-12.example.org warden 4242 AUDIT ",
                r#"[warden@32473 seq="42" note="say \"hi\" \\ [x\]"][origin software="warden"] "#,
                "CEF:0|x|y|1|a|b|5|"
            )
        );
        let dup = SdElement::new(SdId::new("origin").unwrap());
        assert_eq!(m.structured_data(dup), Err(SyslogError::DuplicateSdId));
    }
}
