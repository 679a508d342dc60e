//! ArcSight Common Event Format (CEF) payloads.
//!
//! ```text
//! CEF:0|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension
//! ```
//!
//! Escaping follows the CEF implementation standard, which treats the header and the extension
//! differently:
//!
//! - header fields: `\` becomes `\\` and the pipe becomes backslash-pipe; `=` is left alone;
//!   CR, LF and every other control character are refused (multi-line text is only allowed in
//!   extension values), when the field is made;
//! - extension values: `\` becomes `\\`, `=` becomes `\=`, LF becomes `\n`, CR becomes `\r`;
//!   pipes and spaces are left alone;
//! - extension keys: ASCII letters and digits only, starting with a letter, at most 63 bytes;
//!   anything else is refused.
//!
//! Extension values are never refused, so an event is never lost to formatting: control
//! characters that CEF has no escape for (C0 except TAB, LF and CR; DEL; C1) are replaced with
//! U+FFFD, so a hostile user name cannot smuggle terminal escapes into an analyst's console.
//! Values that must survive byte for byte are hex-encoded by the caller.
//!
//! # warden's extension mapping
//!
//! | key | CEF name | warden meaning |
//! |---|---|---|
//! | `rt` | receiptTime | when warden recorded the event, milliseconds since the Unix epoch (UTC) |
//! | `dvchost` | deviceHostName | the shim's (or OTA server's) host name |
//! | `deviceExternalId` | deviceExternalId | the shim id from configuration |
//! | `suser` | sourceUserName | the technician or operator who acted |
//! | `act` | deviceAction | what happened, e.g. `login`, `session.open`, `tamper.case_open` |
//! | `outcome` | eventOutcome | `success` or `failure` |
//! | `reason` | reason | why a failure happened, e.g. `bad_code`, `locked_out` |
//! | `msg` | message | free text for the analyst |
//! | `cn1` + `cn1Label=warden_seq` | deviceCustomNumber1 | the spool sequence number: one per message, strictly increasing per shim, so the receiver can spot gaps and duplicates |
//! | `cn2` + `cn2Label=audit_seq` | deviceCustomNumber2 | the audit-chain sequence number the message reports |
//! | `cs1` + `cs1Label=session_id` | deviceCustomString1 | the session UUID |
//! | `cs2` + `cs2Label=chain_mac` | deviceCustomString2 | the audit-chain MAC (hex) at `audit_seq` (checkpoints) |
//! | `cs3` + `cs3Label=tamper_source` | deviceCustomString3 | the sensor that raised a tamper alert |
//! | `cs4` + `cs4Label=recording_sha256` | deviceCustomString4 | the hash of a closed recording (hex) |
//! | `cn3` + `cn3Label=<what>` | deviceCustomNumber3 | a labelled count: `heartbeat_counter` (heartbeats), `dropped_heartbeats` (`spool-overflow`) |
//!
//! `cn1` is a signed 64-bit field in CEF; warden sequence numbers start at 0 and stay far below
//! 2^63. The signature ID, name and default severity of each message kind are in
//! [`crate::format::MessageKind`].
//!
//! Implements: S48

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use crate::format::kind::MessageKind;

/// Why a CEF field was refused. The refused value itself is never echoed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CefError {
    #[error("CEF header field {field} has a control character at byte {position} (multi-line text is only allowed in extension values)")]
    HeaderControlCharacter {
        field: &'static str,
        position: usize,
    },
    #[error("CEF header field {field} is empty")]
    EmptyHeaderField { field: &'static str },
    #[error(
        "CEF extension key has a character other than an ASCII letter or digit at byte {position}"
    )]
    BadKeyCharacter { position: usize },
    #[error("CEF extension key must start with a letter")]
    KeyStartsWithDigit,
    #[error("CEF extension key is empty")]
    EmptyKey,
    #[error("CEF extension key is {len} bytes long; at most {max} allowed")]
    KeyTooLong { len: usize, max: usize },
    #[error("CEF severity {0} is outside 0..=10")]
    SeverityOutOfRange(u8),
}

/// CEF severity, 0 (lowest) to 10 (highest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CefSeverity(u8);

impl CefSeverity {
    pub const MAX: u8 = 10;

    pub fn new(value: u8) -> Result<Self, CefError> {
        if value > Self::MAX {
            return Err(CefError::SeverityOutOfRange(value));
        }
        Ok(Self(value))
    }

    /// A compile-time constant; values above 10 fail the build when used in a `const`.
    pub const fn from_static(value: u8) -> Self {
        assert!(value <= Self::MAX, "CEF severity above 10");
        Self(value)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// The longest extension key warden accepts (the dictionary's longest names are ~30 bytes).
pub const MAX_KEY_LEN: usize = 63;

const fn is_valid_key(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_KEY_LEN || !b[0].is_ascii_alphabetic() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            return false;
        }
        i += 1;
    }
    true
}

/// An extension key: ASCII letters and digits, starting with a letter (CEF: "a single word,
/// alphanumeric"). Custom keys should be named `VendorProductKeyName`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtKey(Cow<'static, str>);

impl ExtKey {
    pub fn new(key: impl Into<Cow<'static, str>>) -> Result<Self, CefError> {
        let key = key.into();
        if key.is_empty() {
            return Err(CefError::EmptyKey);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(CefError::KeyTooLong {
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
        if let Some(position) = key.bytes().position(|b| !b.is_ascii_alphanumeric()) {
            return Err(CefError::BadKeyCharacter { position });
        }
        if !key.as_bytes()[0].is_ascii_alphabetic() {
            return Err(CefError::KeyStartsWithDigit);
        }
        Ok(Self(key))
    }

    /// A compile-time constant; an invalid literal fails the build when used in a `const`.
    pub const fn from_static(key: &'static str) -> Self {
        assert!(is_valid_key(key), "invalid CEF extension key");
        Self(Cow::Borrowed(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The standard keys warden uses (see the module documentation for their meaning).
pub mod keys {
    use super::ExtKey;

    pub const RECEIPT_TIME: ExtKey = ExtKey::from_static("rt");
    pub const DEVICE_HOST: ExtKey = ExtKey::from_static("dvchost");
    pub const DEVICE_EXTERNAL_ID: ExtKey = ExtKey::from_static("deviceExternalId");
    pub const SOURCE_USER: ExtKey = ExtKey::from_static("suser");
    pub const ACTION: ExtKey = ExtKey::from_static("act");
    pub const OUTCOME: ExtKey = ExtKey::from_static("outcome");
    pub const REASON: ExtKey = ExtKey::from_static("reason");
    pub const MESSAGE: ExtKey = ExtKey::from_static("msg");
    pub const CN1: ExtKey = ExtKey::from_static("cn1");
    pub const CN1_LABEL: ExtKey = ExtKey::from_static("cn1Label");
    pub const CN2: ExtKey = ExtKey::from_static("cn2");
    pub const CN2_LABEL: ExtKey = ExtKey::from_static("cn2Label");
    pub const CS1: ExtKey = ExtKey::from_static("cs1");
    pub const CS1_LABEL: ExtKey = ExtKey::from_static("cs1Label");
    pub const CS2: ExtKey = ExtKey::from_static("cs2");
    pub const CS2_LABEL: ExtKey = ExtKey::from_static("cs2Label");
    pub const CS3: ExtKey = ExtKey::from_static("cs3");
    pub const CS3_LABEL: ExtKey = ExtKey::from_static("cs3Label");
    pub const CS4: ExtKey = ExtKey::from_static("cs4");
    pub const CS4_LABEL: ExtKey = ExtKey::from_static("cs4Label");
    pub const CN3: ExtKey = ExtKey::from_static("cn3");
    pub const CN3_LABEL: ExtKey = ExtKey::from_static("cn3Label");
}

fn check_header_field(field: &'static str, value: &str) -> Result<(), CefError> {
    if value.is_empty() {
        return Err(CefError::EmptyHeaderField { field });
    }
    match value.char_indices().find(|(_, c)| c.is_control()) {
        Some((position, _)) => Err(CefError::HeaderControlCharacter { field, position }),
        None => Ok(()),
    }
}

/// Header escaping: `\` → `\\` and `|` → `\|`. Control characters are refused earlier, when the
/// field is made, so this function never sees them.
pub fn escape_header(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '|']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '\\' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Extension-value escaping: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r`; other control
/// characters (C0 but TAB, DEL, C1) become U+FFFD. Pipes and spaces stay as they are.
pub fn escape_extension_value(value: &str) -> Cow<'_, str> {
    let needs_work = value
        .chars()
        .any(|c| matches!(c, '\\' | '=') || (c.is_control() && c != '\t'));
    if !needs_work {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Who sends the events: the first three header fields, set once from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefDevice {
    vendor: String,
    product: String,
    version: String,
}

impl CefDevice {
    pub fn new(
        vendor: impl Into<String>,
        product: impl Into<String>,
        version: impl Into<String>,
    ) -> Result<Self, CefError> {
        let (vendor, product, version) = (vendor.into(), product.into(), version.into());
        check_header_field("Device Vendor", &vendor)?;
        check_header_field("Device Product", &product)?;
        check_header_field("Device Version", &version)?;
        Ok(Self {
            vendor,
            product,
            version,
        })
    }

    /// `warden|warden|<crate version>`.
    pub fn warden() -> Self {
        Self {
            vendor: "warden".into(),
            product: "warden".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// One CEF event: header fields and extension pairs in the order they were added. Setting a key
/// that is already present replaces its value in place (CEF has no defined meaning for repeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefEvent {
    signature_id: String,
    name: String,
    severity: CefSeverity,
    extensions: Vec<(ExtKey, String)>,
}

impl CefEvent {
    /// An event with explicit header fields (no control characters, not empty).
    pub fn new(
        signature_id: impl Into<String>,
        name: impl Into<String>,
        severity: CefSeverity,
    ) -> Result<Self, CefError> {
        let (signature_id, name) = (signature_id.into(), name.into());
        check_header_field("Signature ID", &signature_id)?;
        check_header_field("Name", &name)?;
        Ok(Self {
            signature_id,
            name,
            severity,
            extensions: Vec::new(),
        })
    }

    /// An event with the signature ID, name and default severity of `kind`.
    pub fn for_kind(kind: MessageKind) -> Self {
        Self {
            signature_id: kind.cef_signature_id().to_owned(),
            name: kind.cef_name().to_owned(),
            severity: kind.cef_severity(),
            extensions: Vec::new(),
        }
    }

    /// Overrides the severity (e.g. a failed login is more severe than a successful one).
    pub fn severity(mut self, severity: CefSeverity) -> Self {
        self.severity = severity;
        self
    }

    /// Sets any extension pair; the value is escaped when written.
    pub fn extension(mut self, key: ExtKey, value: impl Into<String>) -> Self {
        let value = value.into();
        match self.extensions.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.extensions.push((key, value)),
        }
        self
    }

    /// `rt`: receipt time in milliseconds since the Unix epoch.
    pub fn receipt_time_ms(self, ms: u64) -> Self {
        self.extension(keys::RECEIPT_TIME, ms.to_string())
    }

    /// `cn1` + `cn1Label=warden_seq`: the per-shim message sequence number.
    pub fn sequence(self, seq: u64) -> Self {
        self.extension(keys::CN1, seq.to_string())
            .extension(keys::CN1_LABEL, "warden_seq")
    }

    /// `dvchost`: the sending host.
    pub fn device_host(self, host: impl Into<String>) -> Self {
        self.extension(keys::DEVICE_HOST, host)
    }

    /// `deviceExternalId`: the shim id.
    pub fn device_external_id(self, id: impl Into<String>) -> Self {
        self.extension(keys::DEVICE_EXTERNAL_ID, id)
    }

    /// `suser`: the technician or operator.
    pub fn source_user(self, user: impl Into<String>) -> Self {
        self.extension(keys::SOURCE_USER, user)
    }

    /// `act`: what happened.
    pub fn action(self, action: impl Into<String>) -> Self {
        self.extension(keys::ACTION, action)
    }

    /// `outcome`: `success` or `failure`.
    pub fn outcome(self, success: bool) -> Self {
        self.extension(keys::OUTCOME, if success { "success" } else { "failure" })
    }

    /// `reason`: why it failed.
    pub fn reason(self, reason: impl Into<String>) -> Self {
        self.extension(keys::REASON, reason)
    }

    /// `msg`: free text.
    pub fn message(self, msg: impl Into<String>) -> Self {
        self.extension(keys::MESSAGE, msg)
    }

    /// `cs1` + `cs1Label=session_id`.
    pub fn session_id(self, id: impl Into<String>) -> Self {
        self.extension(keys::CS1, id)
            .extension(keys::CS1_LABEL, "session_id")
    }

    /// `cn2` + `cn2Label=audit_seq` and `cs2` + `cs2Label=chain_mac`: an audit-chain position.
    pub fn audit_chain(self, audit_seq: u64, mac_hex: impl Into<String>) -> Self {
        self.extension(keys::CN2, audit_seq.to_string())
            .extension(keys::CN2_LABEL, "audit_seq")
            .extension(keys::CS2, mac_hex)
            .extension(keys::CS2_LABEL, "chain_mac")
    }

    /// `cs3` + `cs3Label=tamper_source`.
    pub fn tamper_source(self, source: impl Into<String>) -> Self {
        self.extension(keys::CS3, source)
            .extension(keys::CS3_LABEL, "tamper_source")
    }

    /// `cs4` + `cs4Label=recording_sha256`.
    pub fn recording_hash(self, sha256_hex: impl Into<String>) -> Self {
        self.extension(keys::CS4, sha256_hex)
            .extension(keys::CS4_LABEL, "recording_sha256")
    }

    pub fn extensions(&self) -> &[(ExtKey, String)] {
        &self.extensions
    }

    /// The CEF text for `device`.
    pub fn encode(&self, device: &CefDevice) -> String {
        let mut out = String::with_capacity(128);
        // Writing to a String cannot fail.
        let _ = self.write(device, &mut out);
        out
    }

    fn write(&self, device: &CefDevice, out: &mut String) -> fmt::Result {
        write!(
            out,
            "CEF:0|{}|{}|{}|{}|{}|{}|",
            escape_header(&device.vendor),
            escape_header(&device.product),
            escape_header(&device.version),
            escape_header(&self.signature_id),
            escape_header(&self.name),
            self.severity.0
        )?;
        for (i, (key, value)) in self.extensions.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            write!(out, "{}={}", key.as_str(), escape_extension_value(value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_escapes_backslash_and_pipe_only() {
        assert_eq!(escape_header("plain"), "plain");
        assert_eq!(escape_header(r"a|b\c=d"), r"a\|b\\c=d");
        assert_eq!(escape_header(r"\|"), r"\\\|");
        assert_eq!(escape_header("sp ace"), "sp ace");
    }

    #[test]
    fn header_refuses_newlines_and_controls() {
        for (bad, position) in [("a\nb", 1), ("\rb", 0), ("ab\u{1b}[", 2), ("a\0", 1)] {
            assert_eq!(
                CefEvent::new("id", bad, CefSeverity::from_static(1)),
                Err(CefError::HeaderControlCharacter {
                    field: "Name",
                    position
                })
            );
        }
        assert_eq!(
            CefDevice::new("v", "", "1"),
            Err(CefError::EmptyHeaderField {
                field: "Device Product"
            })
        );
        assert!(CefEvent::new("id|x", "na=me\\", CefSeverity::from_static(1)).is_ok());
    }

    #[test]
    fn extension_value_escapes_every_special_character() {
        assert_eq!(
            escape_extension_value("plain text | pipe"),
            "plain text | pipe"
        );
        assert_eq!(escape_extension_value(r"a\b"), r"a\\b");
        assert_eq!(escape_extension_value("a=b"), r"a\=b");
        assert_eq!(escape_extension_value("a\nb"), r"a\nb");
        assert_eq!(escape_extension_value("a\rb"), r"a\rb");
        assert_eq!(escape_extension_value("a\r\nb"), r"a\r\nb");
        assert_eq!(escape_extension_value("tab\there"), "tab\there");
        assert_eq!(escape_extension_value(r"\=\n"), r"\\\=\\n");
        assert_eq!(
            escape_extension_value("esc\u{1b}[31m nul\0 del\u{7f} csi\u{9b}"),
            "esc\u{FFFD}[31m nul\u{FFFD} del\u{FFFD} csi\u{FFFD}"
        );
        assert_eq!(escape_extension_value("ünï"), "ünï");
    }

    #[test]
    fn extension_keys_are_alphanumeric_words() {
        assert!(ExtKey::new("cs1Label").is_ok());
        assert!(ExtKey::new("WardenShimTamperSource").is_ok());
        assert_eq!(ExtKey::new(""), Err(CefError::EmptyKey));
        assert_eq!(ExtKey::new("1abc"), Err(CefError::KeyStartsWithDigit));
        for (bad, position) in [("a b", 1), ("a=b", 1), ("a_b", 1), ("a.b", 1), ("ké", 1)] {
            assert_eq!(
                ExtKey::new(bad),
                Err(CefError::BadKeyCharacter { position }),
                "{bad}"
            );
        }
        assert!(ExtKey::new("a".repeat(MAX_KEY_LEN)).is_ok());
        assert!(ExtKey::new("a".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn severity_range() {
        assert!(CefSeverity::new(0).is_ok());
        assert!(CefSeverity::new(10).is_ok());
        assert_eq!(CefSeverity::new(11), Err(CefError::SeverityOutOfRange(11)));
    }

    #[test]
    fn repeated_key_replaces_in_place() {
        let e = CefEvent::for_kind(MessageKind::AuditEvent)
            .action("a")
            .outcome(true)
            .action("b");
        let keys: Vec<_> = e.extensions().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["act", "outcome"]);
        assert_eq!(e.extensions()[0].1, "b");
    }

    #[test]
    fn full_event_golden() {
        let device = CefDevice::new("Acme|Med", r"Shim\Gate", "1.0").unwrap();
        let e = CefEvent::for_kind(MessageKind::AuditEvent)
            .severity(CefSeverity::from_static(7))
            .receipt_time_ms(1_776_244_923_500)
            .sequence(42)
            .device_host("shim-12")
            .device_external_id("shim-a")
            .source_user("tech=001\\x")
            .action("login")
            .outcome(false)
            .reason("bad_code")
            .session_id("6f9619ff-8b86-d011-b42d-00c04fc964ff")
            .message("line1\r\nline2 | still msg");
        assert_eq!(
            e.encode(&device),
            concat!(
                r"CEF:0|Acme\|Med|Shim\\Gate|1.0|audit-event|Audit event|7|",
                "rt=1776244923500 cn1=42 cn1Label=warden_seq dvchost=shim-12 ",
                r"deviceExternalId=shim-a suser=tech\=001\\x act=login outcome=failure ",
                "reason=bad_code cs1=6f9619ff-8b86-d011-b42d-00c04fc964ff cs1Label=session_id ",
                r"msg=line1\r\nline2 | still msg"
            )
        );
    }

    #[test]
    fn event_without_extensions_ends_with_a_pipe() {
        let e = CefEvent::for_kind(MessageKind::Heartbeat);
        assert!(e
            .encode(&CefDevice::warden())
            .ends_with("|heartbeat|Heartbeat|1|"));
    }
}
